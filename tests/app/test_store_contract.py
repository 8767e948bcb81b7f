"""The TodoStore contract, the same cases against the in-memory store and a real Azurite table.

Each table case gets a fresh table in the session's Azurite (tests/conftest.py). Store calls run
on one event loop per case, as in a server worker.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.settings import StoreSettings
from app.store import ConcurrentUpdate, InMemoryTodoStore, new_item_id, todo_item
from app.table_store import TableTodoStore, table_store

BACKENDS = ("memory", "table")


@pytest.fixture
def make_table_store(azurite):
    """A TableTodoStore over a fresh table; extra keyword arguments go to TableTodoStore."""

    def make(**options) -> TableTodoStore:
        name = "t" + uuid.uuid4().hex[:16]
        azurite.create_table(name)
        settings = StoreSettings(
            kind="table", table_name=name, connection_string=azurite.connection_string
        )
        return table_store(settings, **options)

    return make


@pytest.fixture(params=BACKENDS)
def make_store(request, make_table_store):
    if request.param == "memory":
        return lambda **options: InMemoryTodoStore()
    return make_table_store


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
        await store.add(item)
        return await store.get(item.id)

    assert run(make_store(), scenario) == item


def test_an_unknown_id_reads_as_none(make_store):
    async def scenario(store):
        return [await store.get(item_id) for item_id in (new_item_id(), "a/b", "x#y", "?", "")]

    assert run(make_store(), scenario) == [None] * 5


def test_list_follows_every_page(make_store):
    items = [todo_item(new_item_id(), f"item {n}") for n in range(7)]

    async def scenario(store):
        for item in items:
            await store.add(item)
        return await store.list()

    # Three items a page: the table store must follow two continuation tokens to see all seven.
    listed = run(make_store(page_size=3), scenario)
    assert sorted(listed) == sorted(items)


def test_replace_changes_the_stored_item(make_store):
    item = todo_item(new_item_id(), "draft")
    changed = todo_item(item.id, "final", True)

    async def scenario(store):
        await store.add(item)
        replaced = await store.replace(changed)
        return replaced, await store.get(item.id)

    assert run(make_store(), scenario) == (changed, changed)


def test_replace_of_an_unknown_item_is_none(make_store):
    async def scenario(store):
        return await store.replace(todo_item(new_item_id(), "ghost"))

    assert run(make_store(), scenario) is None


def test_delete_removes_the_item_once(make_store):
    item = todo_item(new_item_id(), "short-lived")

    async def scenario(store):
        await store.add(item)
        first = await store.delete(item.id)
        return first, await store.delete(item.id), await store.get(item.id)

    assert run(make_store(), scenario) == (True, False, None)


def test_a_retried_create_of_the_same_item_succeeds_once(make_store):
    item = todo_item(new_item_id(), "sent twice")

    async def scenario(store):
        await store.add(item)
        again = await store.add(item)  # what the SDK's retry meets when the first try landed
        return again, await store.list()

    assert run(make_store(), scenario) == (item, [item])


def test_another_item_under_a_taken_id_is_refused(make_store):
    item = todo_item(new_item_id(), "first")

    async def scenario(store):
        await store.add(item)
        with pytest.raises(KeyError):
            await store.add(todo_item(item.id, "second"))
        return await store.get(item.id)

    assert run(make_store(), scenario) == item


class InterleavingTableStore(TableTodoStore):
    """Runs `between` once, right after the next read: another writer acting at that moment."""

    between = None

    async def _read(self, item_id):
        entity = await super()._read(item_id)
        between, self.between = self.between, None
        if between is not None:
            await between()
        return entity


def test_a_replace_racing_another_writer_is_refused_not_lost(make_table_store, azurite):
    store = make_table_store()
    store.__class__ = InterleavingTableStore
    other = table_store(
        StoreSettings(
            kind="table", table_name=store.table_name, connection_string=azurite.connection_string
        )
    )
    item = todo_item(new_item_id(), "start")
    theirs = todo_item(item.id, "theirs")
    ours = todo_item(item.id, "ours", True)

    async def scenario(store):
        await store.add(item)
        try:
            store.between = lambda: other.replace(theirs)
            with pytest.raises(ConcurrentUpdate):
                await store.replace(ours)  # read before theirs was written, written after it
        finally:
            await other.close()
        return await store.get(item.id)

    assert run(store, scenario) == theirs
