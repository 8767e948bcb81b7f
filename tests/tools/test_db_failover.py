"""The database failover drill: the write region moves to the secondary and back, waits are
bounded, automatic failover ends up on again, and the report counts lost items and write gaps."""

import json

import pytest

from tests.tools.stack_outputs_data import COSMOS_OUTPUTS, raw_outputs
from tools.cli import CliError
from tools.delivery.stack_outputs import parse
from tools.operations import db_failover

COSMOS = parse(raw_outputs(**COSMOS_OUTPUTS)).cosmos


class FakeAccount:
    """`az cosmosdb` against one account; the write region changes `lag` shows after a
    priority change."""

    def __init__(self, write="Australia East", lag=1):
        self.write, self.lag, self.pending, self.calls = write, lag, None, []

    def __call__(self, *args):
        self.calls.append(args[:2] + tuple(a for a in args if "=" in a or a in ("true", "false")))
        if args[1] == "failover-priority-change":
            first = next(a for a in args if a.endswith("=0")).split("=")[0]
            self.pending, self.shows = first, 0
        if args[1] == "show":
            if self.pending and self.shows >= self.lag:
                self.write, self.pending = self.pending, None
            self.shows = getattr(self, "shows", 0) + 1
            return self.write
        return ""


@pytest.fixture
def account(monkeypatch):
    fake = FakeAccount()
    monkeypatch.setattr(db_failover, "az", fake)
    return fake


def no_wait(account):
    return {"sleep": lambda seconds: None, "clock": iter(range(0, 10_000, 10)).__next__}


def test_stack_outputs_without_cosmos_have_no_account():
    assert parse(raw_outputs()).cosmos is None


def test_incomplete_cosmos_outputs_are_one_clear_error():
    with pytest.raises(CliError, match="Cosmos DB outputs incomplete: table_name missing"):
        parse(raw_outputs(**{**COSMOS_OUTPUTS, "table_name": None}))


def test_move_turns_automatic_failover_off_and_waits_for_the_secondary(account):
    db_failover.move(COSMOS, timeout=60, poll=10, **no_wait(account))
    assert account.calls[0] == ("cosmosdb", "update", "false")
    assert account.calls[1] == ("cosmosdb", "failover-priority-change",
                                "australiasoutheast=0", "australiaeast=1")
    assert db_failover.same_region(account.write, "australiasoutheast")


def test_back_restores_the_primary_and_automatic_failover(account):
    account.write = "Australia Southeast"
    db_failover.back(COSMOS, timeout=60, poll=10, **no_wait(account))
    assert ("cosmosdb", "failover-priority-change", "australiaeast=0",
            "australiasoutheast=1") in account.calls
    assert account.calls[-1] == ("cosmosdb", "update", "true")
    assert account.write == "australiaeast"


def test_back_when_already_home_only_turns_automatic_failover_on(account):
    db_failover.back(COSMOS, timeout=60, poll=10, **no_wait(account))
    assert [c[1] for c in account.calls] == ["show", "update"]


def test_a_write_region_that_never_moves_fails_after_the_timeout(account):
    account.lag = 10_000
    with pytest.raises(CliError, match="still 'Australia East' after 30 s"):
        db_failover.move(COSMOS, timeout=30, poll=10, **no_wait(account))


def summary(**move) -> dict:
    return {"fault_time": 100.0, "fault_at_s": 1.0, "restore_at_s": 2.0,
            "faults": {"faults": [{"write_gap_s": 3.0, "write_gap_after_s": 1.5, **move}]},
            "items": {"acknowledged": 2, "missing": 1, "duplicates": 0, "orphans": 0,
                      "stale_content": 0}}


def test_report_counts_items_lost_and_the_longest_write_gap(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(summary()))
    result = db_failover.report(tmp_path)
    assert (result["items_lost"], result["seconds_without_successful_writes"]) == (1, 3.0)
    assert (result["items_duplicated"], result["items_acknowledged"]) == (0, 2)
    assert json.loads((tmp_path / "database-failover.json").read_text()) == result


def test_the_move_back_pausing_writes_longer_is_the_figure(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(summary(write_gap_after_s=8.25)))
    assert db_failover.report(tmp_path)["seconds_without_successful_writes"] == 8.25


def test_a_summary_without_one_fault_is_a_one_line_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"items": {}}))
    with pytest.raises(CliError, match="not exactly one fault"):
        db_failover.report(tmp_path)


def test_cli_without_cosmos_outputs_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "outputs.json").write_text(json.dumps(raw_outputs()))
    code = db_failover.run_cli(lambda: db_failover.main([str(tmp_path / "outputs.json"), "move"]))
    assert code == 2 and "no Cosmos DB account" in capsys.readouterr().err
