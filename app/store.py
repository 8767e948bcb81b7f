"""TodoItem storage behind a small async interface, and the in-memory backend.

Backends: InMemoryTodoStore (development and tests) and app.table_store.TableTodoStore (Cosmos DB
for Table on Azure, Azurite locally). Each in-memory operation runs without an await inside, so
on one event loop it is atomic: no lock is needed and concurrent requests never see a half-made
change. The in-memory store lives in one process: with several workers each would have its own,
so the settings allow it only with one worker.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple, Protocol


class TodoItem(NamedTuple):
    """One item, with its JSON encoded once (items never change; an update replaces the item).

    Make one with todo_item().
    """

    id: str
    name: str
    is_completed: bool
    json: bytes

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "isCompleted": self.is_completed}


_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def todo_item(item_id: str, name: str, is_completed: bool = False) -> TodoItem:
    # The same bytes as json.dumps(fields, ensure_ascii=False, separators=(",", ":")), built
    # field by field: a third of the cost on the POST path.
    completed = "true" if is_completed else "false"
    encoded = f'{{"id":{_encode_string(item_id)},"name":{_encode_string(name)},"isCompleted":{completed}}}'
    return TodoItem(item_id, name, is_completed, encoded.encode())


def new_item_id() -> str:
    """32 lowercase hex characters, 128 random bits."""
    return os.urandom(16).hex()


class StoreUnavailable(Exception):
    """The store cannot serve now (down, throttled, too slow); the caller may retry later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"store unavailable; retry after {retry_after} s")
        self.retry_after = retry_after


class ConcurrentUpdate(Exception):
    """A replace met a change made by another writer since the item was read."""


class TodoStore(Protocol):
    async def list(self) -> list[TodoItem]: ...

    async def get(self, item_id: str) -> TodoItem | None: ...

    async def add(self, item: TodoItem) -> TodoItem:
        """Store a new item. Adding the very same item again succeeds (a retried create);
        another item with a taken id raises KeyError."""

    async def replace(self, item: TodoItem) -> TodoItem | None:
        """Replace the stored item with the same id; None if there is none.

        Raises ConcurrentUpdate when another writer changed the item meanwhile."""

    async def delete(self, item_id: str) -> bool:
        """Delete the item; False if there was none."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""


class InMemoryTodoStore:
    """Items kept as plain tuples: the garbage collector untracks those (not TodoItem, a tuple
    subclass), so a large store adds nothing to the cost of later collections."""

    def __init__(self) -> None:
        self._items: dict[str, tuple] = {}

    async def list(self) -> list[TodoItem]:
        return [TodoItem._make(fields) for fields in self._items.values()]

    async def get(self, item_id: str) -> TodoItem | None:
        fields = self._items.get(item_id)
        return None if fields is None else TodoItem._make(fields)

    async def add(self, item: TodoItem) -> TodoItem:
        existing = self._items.get(item.id)
        if existing is not None and existing != tuple(item):  # the same item again: a retry
            raise KeyError(item.id)
        self._items[item.id] = tuple(item)
        return item

    async def replace(self, item: TodoItem) -> TodoItem | None:
        if item.id not in self._items:
            return None
        self._items[item.id] = tuple(item)
        return item

    async def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    async def close(self) -> None:
        pass
