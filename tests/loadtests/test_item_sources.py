"""Reading the items for reconciliation: the table itself (a real Azurite, written by the app's own
store, so loadtests' copy of the entity layout is checked against the app's), and the API."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from azure.data.tables import TableClient

from app.settings import StoreSettings
from app.store import todo_item
from app.table_store import table_store

OWNER = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"  # the caller the items belong to
from loadtests.item_identity import item_name, new_token
from loadtests.item_sources import ApiItems, ItemSourceError, TableItems
from loadtests.reconciliation import DEFECTS, reconcile
from tests.loadtests.records import content, create, delete, update


@pytest.fixture
def table(azurite) -> TableItems:
    """A fresh table in the session's Azurite, as TableItems reads it."""
    name = "recon" + uuid.uuid4().hex[:12]
    azurite.create_table(name)
    return TableItems(azurite.connection_string, name, "Azurite (test)")


def write_as_the_app(source: TableItems, items, replaced=()) -> None:
    """Add `items`, then replace with `replaced`, through the app's TableTodoStore."""
    settings = StoreSettings(
        kind="table", table_name=source.table_name, connection_string=source.connection_string
    )

    async def main():
        store = table_store(settings)
        try:
            for item in items:
                await store.add(OWNER, item)
            for item in replaced:
                await store.replace(OWNER, item)
        finally:
            await store.close()

    asyncio.run(main())


def item(item_id: str, token: str, text: str = "load test item", done: bool = False):
    return todo_item(item_id, item_name(token, text), done)


def test_the_table_as_the_app_wrote_it_reads_back_item_for_item(table):
    token = new_token()
    write_as_the_app(table, [item("id-1", token)], [item("id-1", token, "v1", True)])
    [stored] = table.read()
    assert stored.id == "id-1"
    assert stored.content() == content(token, "v1", True)


def test_reconciling_a_real_table_catches_every_planted_defect(table, azurite):
    kept, lost, doubled, stale, deleted_404, unanswered = (new_token() for _ in range(6))
    records = [
        create(1.0, kept, "id-kept"),
        update(2.0, "id-kept", kept, "v1", done=True),
        create(3.0, lost, "id-lost"),  # acknowledged, never stored: missing
        create(4.0, doubled, "id-doubled"),
        create(5.0, stale, "id-stale"),
        update(6.0, "id-stale", stale, "v1", done=True),  # acknowledged, not stored: stale
        create(7.0, deleted_404, "id-404"),
        delete(8.0, "id-404", deleted_404, status=404),  # not proof of survival: missing
        create(9.0, unanswered, status=504),  # no answer, but stored: not an error
    ]
    write_as_the_app(
        table,
        [
            item("id-kept", kept),
            item("id-doubled", doubled),
            item("id-doubled-again", doubled),  # a re-sent POST: duplicate
            item("id-stale", stale),
            item("id-orphan", new_token()),  # a token no client sent: orphan
            item("id-unanswered", unanswered),
        ],
        [item("id-kept", kept, "v1", True)],
    )
    with TableClient.from_connection_string(azurite.connection_string, table.table_name) as raw:
        # a row beside an item that is not an item (as the app's idempotency-key rows): not read
        raw.create_entity({"PartitionKey": "id-kept", "RowKey": "idempotency-0", "Name": "x"})

    result = reconcile(records, table.read(), read_from=table.describe())

    assert {name: result[name] for name in DEFECTS} == {
        "missing": 2,
        "duplicates": 1,
        "orphans": 1,
        "stale_content": 1,
        "resurrected": 0,
    }
    examples = result["examples"]
    assert {e["id"] for e in examples["missing"]} == {"id-lost", "id-404"}
    assert [e["id"] for e in examples["duplicates"]] == ["id-doubled-again"]
    assert [e["id"] for e in examples["orphans"]] == ["id-orphan"]
    assert [e["id"] for e in examples["stale_content"]] == ["id-stale"]
    assert [e["id"] for e in examples["unacknowledged_present"]] == ["id-unanswered"]
    assert result["read_from"].startswith(f"store: table {table.table_name}")


def test_a_table_that_does_not_exist_is_a_one_line_error(azurite):
    missing = TableItems(azurite.connection_string, "NoSuchTable")
    with pytest.raises(ItemSourceError, match="reading table 'NoSuchTable' failed") as caught:
        missing.read()
    assert "\n" not in str(caught.value)


def test_an_api_that_does_not_answer_is_a_one_line_error():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    source = ApiItems(f"http://127.0.0.1:{port}", "key")
    with pytest.raises(ItemSourceError, match="listing the items failed: ConnectError") as caught:
        source.read()
    assert "\n" not in str(caught.value)
