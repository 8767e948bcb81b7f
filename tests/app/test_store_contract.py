"""The TodoStore contract, the same cases against the in-memory store and a real Azurite table.

Each table case gets a fresh table in the session's Azurite (tests/conftest.py; `make_store` in
tests/app/conftest.py). Store calls run on one event loop per case, as in a server worker.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import pytest
from azure.data.tables.aio import TableClient

from app.store import (
    ConcurrentUpdate,
    KeyRecord,
    KeyTaken,
    KeyWrite,
    new_item_id,
    todo_item,
)
from app.table_store import TableTodoStore

# Two callers' object ids (Entra `oid`s): every case acts as OWNER, the ownership cases as both.
OWNER = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
OTHER_OWNER = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def run(store, scenario):
    """Run `scenario(store)` on a fresh event loop, closing the store's client at the end."""

    async def main():
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_an_added_item_reads_back_whole(make_store):
    item = todo_item(new_item_id(), "write the report ✓", True)

    async def scenario(store):
        await store.add(OWNER, item)
        return await store.get(OWNER, item.id)

    assert run(make_store(), scenario) == item


def test_an_unknown_id_reads_as_none(make_store):
    async def scenario(store):
        return [await store.get(OWNER, item_id) for item_id in (new_item_id(), "a/b", "x#y", "?", "")]

    assert run(make_store(), scenario) == [None] * 5


def test_list_follows_every_page(make_store):
    items = [todo_item(new_item_id(), f"item {n}") for n in range(7)]

    async def scenario(store):
        for item in items:
            await store.add(OWNER, item)
        return await store.list(OWNER)

    # Three items a page: the table store must follow two continuation tokens to see all seven.
    listed = run(make_store(page_size=3), scenario)
    assert sorted(listed) == sorted(items)


def test_replace_changes_the_stored_item(make_store):
    item = todo_item(new_item_id(), "draft")
    changed = todo_item(item.id, "final", True)

    async def scenario(store):
        await store.add(OWNER, item)
        replaced = await store.replace(OWNER, changed)
        return replaced, await store.get(OWNER, item.id)

    assert run(make_store(), scenario) == (changed, changed)


def test_replace_of_an_unknown_item_is_none(make_store):
    async def scenario(store):
        return await store.replace(OWNER, todo_item(new_item_id(), "ghost"))

    assert run(make_store(), scenario) is None


def test_delete_removes_the_item_once(make_store):
    item = todo_item(new_item_id(), "short-lived")

    async def scenario(store):
        await store.add(OWNER, item)
        first = await store.delete(OWNER, item.id)
        return first, await store.delete(OWNER, item.id), await store.get(OWNER, item.id)

    assert run(make_store(), scenario) == (True, False, None)


def test_a_retried_create_of_the_same_item_succeeds_once(make_store):
    item = todo_item(new_item_id(), "sent twice")

    async def scenario(store):
        await store.add(OWNER, item)
        again = await store.add(OWNER, item)  # what the SDK's retry meets when the first try landed
        return again, await store.list(OWNER)

    assert run(make_store(), scenario) == (item, [item])


def test_another_item_under_a_taken_id_is_refused(make_store):
    item = todo_item(new_item_id(), "first")

    async def scenario(store):
        await store.add(OWNER, item)
        with pytest.raises(KeyError):
            await store.add(OWNER, todo_item(item.id, "second"))
        return await store.get(OWNER, item.id)

    assert run(make_store(), scenario) == item


class InterleavingTableStore(TableTodoStore):
    """Runs `between` once, right after the next read: another writer acting at that moment."""

    between = None

    async def _read(self, owner, item_id):
        entity = await super()._read(owner, item_id)
        between, self.between = self.between, None
        if between is not None:
            await between()
        return entity


def test_a_replace_racing_another_writer_is_refused_not_lost(make_table_store, azurite):
    store = make_table_store()
    store.__class__ = InterleavingTableStore
    other = make_table_store(table=store.table_name)
    item = todo_item(new_item_id(), "start")
    theirs = todo_item(item.id, "theirs")
    ours = todo_item(item.id, "ours", True)

    async def scenario(store):
        await store.add(OWNER, item)
        try:
            store.between = lambda: other.replace(OWNER, theirs)
            with pytest.raises(ConcurrentUpdate):
                await store.replace(OWNER, ours)  # read before theirs was written, written after it
        finally:
            await other.close()
        return await store.get(OWNER, item.id)

    assert run(store, scenario) == theirs


def test_a_keyed_replace_racing_another_writer_is_refused_and_stores_no_answer(
    make_table_store, azurite
):
    # The transaction's If-Match is what refuses the racing writer (Azurite#1233 reported older
    # Azurite releases ignoring If-Match inside a batch; this one honours it, as Cosmos DB does).
    store = make_table_store()
    store.__class__ = InterleavingTableStore
    other = make_table_store(table=store.table_name)
    item = todo_item(new_item_id(), "start")
    theirs = todo_item(item.id, "theirs")
    ours = todo_item(item.id, "ours", True)

    async def scenario(store):
        await store.add(OWNER, item)
        try:
            store.between = lambda: other.replace(OWNER, theirs)
            with pytest.raises(ConcurrentUpdate):
                await store.replace(OWNER, ours, answer(item.id, 200))
        finally:
            await other.close()
        return await store.get(OWNER, item.id), await store.read_key(OWNER, item.id, KEY_ID)

    assert run(store, scenario) == (theirs, None)


# -- idempotency key rows (app/idempotency.py builds on these) ------------------------------------

KEY_ID = "ab" * 32


def answer(partition: str, status: int = 201, replacing=None, fingerprint="f") -> KeyWrite:
    """A key row holding an answer (status > 0) or a claim (status 0) in `partition`."""
    body = b"" if status in (0, 204) else '{"stored":"answer ✓"}'.encode()
    record = KeyRecord(fingerprint, 2e9, partition, 0.0 if status else 1.9e9, status, body, "/x")
    return KeyWrite(KEY_ID, record, replacing)


def test_a_keyed_add_writes_the_item_and_its_key_row_together(make_store):
    item = todo_item(new_item_id(), "keyed")

    async def scenario(store):
        await store.add(OWNER, item, answer(item.id))
        return await store.get(OWNER, item.id), await store.read_key(OWNER, item.id, KEY_ID)

    stored, row = run(make_store(), scenario)
    assert stored == item
    assert row.version is not None
    assert row._replace(version=None) == answer(item.id).record


def test_a_keyed_add_whose_key_row_is_taken_writes_no_item(make_store):
    item = todo_item(new_item_id(), "never")

    async def scenario(store):
        await store.write_key(OWNER, item.id, answer(item.id, status=0))
        with pytest.raises(KeyTaken):
            await store.add(OWNER, item, answer(item.id))
        return await store.get(OWNER, item.id), (await store.read_key(OWNER, item.id, KEY_ID)).status

    assert run(make_store(), scenario) == (None, 0)


def test_a_keyed_add_over_a_taken_id_writes_no_key_row(make_store):
    item = todo_item(new_item_id(), "first")

    async def scenario(store):
        await store.add(OWNER, item)
        with pytest.raises(KeyError):
            await store.add(OWNER, todo_item(item.id, "second"), answer(item.id))
        return await store.get(OWNER, item.id), await store.read_key(OWNER, item.id, KEY_ID)

    assert run(make_store(), scenario) == (item, None)


def test_a_keyed_replace_or_delete_whose_key_row_is_taken_changes_nothing(make_store):
    item = todo_item(new_item_id(), "kept")

    async def scenario(store):
        await store.add(OWNER, item)
        await store.write_key(OWNER, item.id, answer(item.id, status=0))
        with pytest.raises(KeyTaken):
            await store.replace(OWNER, todo_item(item.id, "changed"), answer(item.id, 200))
        with pytest.raises(KeyTaken):
            await store.delete(OWNER, item.id, answer(item.id, 204))
        return await store.get(OWNER, item.id), (await store.read_key(OWNER, item.id, KEY_ID)).status

    assert run(make_store(), scenario) == (item, 0)


def test_keyed_replace_and_delete_store_their_answer_with_the_write(make_store):
    item = todo_item(new_item_id(), "draft")
    final = todo_item(item.id, "final", True)

    async def scenario(store):
        await store.add(OWNER, item)
        replaced = await store.replace(OWNER, final, answer(item.id, 200))
        after_replace = await store.get(OWNER, item.id), await store.read_key(OWNER, item.id, KEY_ID)
        row = after_replace[1]
        deleted = await store.delete(OWNER, item.id, answer(item.id, 204, replacing=row.version))
        after_delete = await store.get(OWNER, item.id), await store.read_key(OWNER, item.id, KEY_ID)
        return replaced, after_replace, deleted, after_delete, await store.list(OWNER)

    replaced, (stored, row), deleted, (gone, last_row), listed = run(make_store(), scenario)
    assert replaced == stored == final and row.status == 200
    assert deleted is True and gone is None and last_row.status == 204
    assert listed == []  # key rows are not items


def test_a_keyed_write_of_a_missing_item_writes_no_key_row(make_store):
    missing = new_item_id()

    async def scenario(store):
        replaced = await store.replace(OWNER, todo_item(missing, "ghost"), answer(missing, 200))
        deleted = await store.delete(OWNER, missing, answer(missing, 204))
        return replaced, deleted, await store.read_key(OWNER, missing, KEY_ID)

    assert run(make_store(), scenario) == (None, False, None)


def test_lists_hold_items_only_never_key_rows(make_store):
    item = todo_item(new_item_id(), "listed")
    elsewhere = new_item_id()

    async def scenario(store):
        await store.add(OWNER, item, answer(item.id))
        await store.write_key(OWNER, elsewhere, answer(elsewhere, status=0))
        return await store.list(OWNER)

    assert run(make_store(page_size=1), scenario) == [item]


def test_a_key_row_changes_only_at_the_version_read(make_store):
    partition = new_item_id()

    async def scenario(store):
        first = await store.write_key(OWNER, partition, answer(partition, status=0))
        with pytest.raises(KeyTaken):  # an insert meets the row
            await store.write_key(OWNER, partition, answer(partition, status=0))
        second = await store.write_key(OWNER, partition, answer(partition, 0, replacing=first))
        with pytest.raises(KeyTaken):  # a replace of a version gone
            await store.write_key(OWNER, partition, answer(partition, 0, replacing=first))
        with pytest.raises(KeyTaken):  # a keyed write too
            await store.add(OWNER, todo_item(partition, "x"), answer(partition, replacing=first))
        await store.release_key(OWNER, partition, KEY_ID, first)  # not that version: kept
        kept = await store.read_key(OWNER, partition, KEY_ID)
        await store.release_key(OWNER, partition, KEY_ID, second)
        return first != second, kept.version == second, await store.read_key(OWNER, partition, KEY_ID)

    assert run(make_store(), scenario) == (True, True, None)


def test_a_keyed_add_may_replace_a_key_row_at_its_version(make_store):
    item = todo_item(new_item_id(), "over an expired answer")

    async def scenario(store):
        old = await store.write_key(OWNER, item.id, answer(item.id, status=0, fingerprint="old"))
        await store.add(OWNER, item, answer(item.id, replacing=old))
        return await store.get(OWNER, item.id), (await store.read_key(OWNER, item.id, KEY_ID)).fingerprint

    assert run(make_store(), scenario) == (item, "f")


def test_keyed_writes_reach_ids_that_need_escaping(make_store):
    # Ids come from the path: a quote, a space or a percent sign must reach the right entity.
    item = todo_item("o'neil 100% done", "odd id")
    final = todo_item(item.id, "still odd", True)

    async def scenario(store):
        await store.add(OWNER, item)
        replaced = await store.replace(OWNER, final, answer(item.id, 200))
        got = await store.get(OWNER, item.id)
        row = await store.read_key(OWNER, item.id, KEY_ID)
        deleted = await store.delete(OWNER, item.id, answer(item.id, 204, replacing=row.version))
        return replaced, got, deleted, await store.get(OWNER, item.id)

    assert run(make_store(), scenario) == (final, final, True, None)


# -- items belong to their owner ----------------------------------------------------------------


def test_an_owner_sees_and_changes_only_its_own_items_and_keys(make_store):
    item, theirs = todo_item(new_item_id(), "mine"), todo_item(new_item_id(), "theirs")

    async def scenario(store):
        await store.add(OWNER, item, answer(item.id))
        await store.add(OTHER_OWNER, theirs)
        seen_by_other = (
            await store.list(OTHER_OWNER),
            await store.get(OTHER_OWNER, item.id),
            await store.replace(OTHER_OWNER, todo_item(item.id, "taken over")),
            await store.delete(OTHER_OWNER, item.id),
            await store.read_key(OTHER_OWNER, item.id, KEY_ID),
        )
        return seen_by_other, await store.list(OWNER)

    seen_by_other, listed = run(make_store(), scenario)
    assert seen_by_other == ([theirs], None, None, False, None)
    assert listed == [item]


def test_the_same_id_under_two_owners_is_two_items(make_store):
    item_id = new_item_id()

    async def scenario(store):
        await store.add(OWNER, todo_item(item_id, "mine"))
        await store.add(OTHER_OWNER, todo_item(item_id, "theirs"))
        await store.delete(OTHER_OWNER, item_id)
        return await store.get(OWNER, item_id), await store.list(OTHER_OWNER)

    assert run(make_store(), scenario) == (todo_item(item_id, "mine"), [])


def test_an_owners_list_is_one_partition_query_of_item_rows(azurite):
    """What reaches the service: each list request filters on the owner's PartitionKey (one
    partition on Cosmos DB), and every row written is in its owner's partition."""
    table_name = "owners" + new_item_id()[:12]
    azurite.create_table(table_name)
    sent: list[str] = []

    def hook(request):
        sent.append(unquote(request.http_request.url))

    def client():
        return TableClient.from_connection_string(
            azurite.connection_string, table_name, raw_request_hook=hook
        )

    items = [todo_item(new_item_id(), f"item {n}") for n in range(5)]

    async def scenario(store):
        for item in items:
            await store.add(OWNER, item, answer(item.id) if item is items[0] else None)
        await store.add(OTHER_OWNER, todo_item(new_item_id(), "theirs"))
        sent.clear()
        listed = await store.list(OWNER)
        raw = [entity async for entity in store.client.list_entities()]
        return listed, raw

    listed, raw = run(TableTodoStore(client, table_name, page_size=2), scenario)
    assert sorted(listed) == sorted(items)
    queries = [url for url in sent if "$filter" in url]
    assert len(queries) == 3  # five items, two a page: every page of the same one-partition query
    assert all(f"$filter=PartitionKey eq '{OWNER}' and RowKey ge 'item-'" in q for q in queries)
    assert {(e["PartitionKey"], e["RowKey"].split("-")[0]) for e in raw} == {
        (OWNER, "item"),
        (OWNER, "idempotency"),
        (OTHER_OWNER, "item"),
    }
