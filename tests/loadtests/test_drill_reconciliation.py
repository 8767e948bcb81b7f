"""A drill's verdict comes from the store: a short real run (Locust as a subprocess, the session
topology's apps and Azurite), then each kind of defect is planted into the table itself before the
reconciliation reads it, and each must be caught and fail the run."""

from __future__ import annotations

from dataclasses import dataclass

from azure.data.tables import TableClient

from loadtests.analysis import item_threshold, load_records
from loadtests.item_identity import item_name, new_token
from loadtests.item_sources import NAME, ROW_KEY_PREFIX, TableItems
from loadtests.reconciliation import DEFECTS, StoredItem
from loadtests.run import RunSpec, conclude, run_scenario


@dataclass
class PlantingTable:
    """The topology's table; its second read (after the run) first plants one of each defect."""

    table: TableItems
    records_dir: object
    kind: str = "store"
    reads: int = 0

    def describe(self) -> str:
        return self.table.describe()

    def read(self) -> list[StoredItem]:
        self.reads += 1
        if self.reads == 2:
            self.plant()
        return self.table.read()

    def plant(self) -> None:
        records = load_records(self.records_dir)
        mine = {r["item"] for r in records if r["method"] == "POST" and r["status"] == 201}
        deleted = next(r for r in records if r["method"] == "DELETE" and r["status"] == 204)
        lost, altered, copied = [i for i in self.table.read() if i.id in mine][:3]
        with TableClient.from_connection_string(
            self.table.connection_string, self.table.table_name
        ) as table:
            table.delete_entity(lost.owner, ROW_KEY_PREFIX + lost.id)  # missing
            owner = altered.owner  # planted among the items of a caller of the run
            table.upsert_entity(entity(owner, altered.id, altered.name + " (planted)"))  # stale
            table.create_entity(entity(owner, "copy-" + copied.id, copied.name))  # duplicate
            table.create_entity(entity(owner, "orphan", item_name(new_token(), "planted")))
            table.create_entity(entity(owner, deleted["item"], item_name(deleted["token"], "x")))
        self.planted = {"missing": lost.id, "stale_content": altered.id}
        self.planted |= {"duplicates": "copy-" + copied.id, "orphans": "orphan"}
        self.planted |= {"resurrected": deleted["item"]}


def entity(owner: str, item_id: str, name: str) -> dict:
    row = ROW_KEY_PREFIX + item_id
    return {"PartitionKey": owner, "RowKey": row, NAME: name, "IsCompleted": False}


def test_each_defect_planted_in_the_store_is_caught_and_fails_the_drill(topology, tmp_path, capsys):
    source = PlantingTable(topology.items_source(), tmp_path / "records")
    spec = RunSpec(
        scenario="failover",
        host=topology.gateway_url,
        key=topology.config.subscription_key,
        report_dir=tmp_path,
        users=4,
        duration=4,
        user_rate=10.0,
        thresholds={item_threshold(name): 0 for name in DEFECTS},
        items_source=source,
        token_issuer=str(topology.issuer_config_path),
    )
    summary = run_scenario(spec, say=lambda line: None)

    items = summary["items"]
    assert {name: items[name] for name in DEFECTS} == dict.fromkeys(DEFECTS, 1)
    for figure, item_id in source.planted.items():
        assert [entry["id"] for entry in items["examples"][figure]] == [item_id], figure
    assert len(summary["breaches"]) == len(DEFECTS)
    assert conclude(summary, tmp_path) == 1
    printed = capsys.readouterr().out
    assert "THRESHOLD BROKEN: max-items-resurrected 0 broken: items.resurrected = 1" in printed
    [row] = [line for line in printed.splitlines() if "items resurrected" in line]
    assert row.endswith(f" 1  (e.g. {source.planted['resurrected']})")
