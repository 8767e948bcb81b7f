"""TodoItem storage behind a small async interface, and the in-memory backend.

Backends: InMemoryTodoStore (development and tests) and app.table_store.TableTodoStore (Cosmos DB
for Table on Azure, Azurite locally). Each in-memory operation runs without an await inside, so
on one event loop it is atomic: no lock is needed and concurrent requests never see a half-made
change. The in-memory store lives in one process: with several workers each would have its own,
so the settings allow it only with one worker.

Items belong to their owner: every operation names one (the caller's token `oid`, or
ANONYMOUS_OWNER with AUTH_MODE=none) and sees that owner's items only. Another owner's item reads
as missing, so the API answers 404 for it and never tells that it exists. In the table store an
owner is one partition, so a list is one partition query.

Idempotency keys (app/idempotency.py) are rows beside the items: a KeyRecord lives under a key id
in a logical partition (an item id) of its owner. A keyed write (add, replace or delete with
`key=`) writes the item and the key row of the item's partition together or not at all; the
table store does it in one entity group transaction, the in-memory store in one step without an
await.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, NamedTuple, Protocol

# The owner of every item when callers have no identity (AUTH_MODE=none). Entra object ids are
# GUIDs, so no caller's `oid` is ever this name.
ANONYMOUS_OWNER = "anonymous"


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


class KeyTaken(Exception):
    """A key row's condition failed: the row exists (insert) or changed since it was read."""


class KeyRecord(NamedTuple):
    """What the store keeps under one idempotency key in one partition.

    A claim (status 0) marks a request in flight until `lease_until` and names the partition it
    writes (`target`); a stored answer (status > 0) is the response to replay. Either counts as
    absent from `expires_at` on (epoch seconds). `version` is set by the store when it reads or
    writes the row: what a conditional write or release compares.
    """

    fingerprint: str
    expires_at: float
    target: str
    lease_until: float = 0.0
    status: int = 0
    body: bytes = b""
    location: str = ""
    version: Any = None


class KeyWrite(NamedTuple):
    """A key row to write: inserted when `replacing` is None, else replacing the row of that
    version (an expired record, or a claim being taken over)."""

    key_id: str
    record: KeyRecord
    replacing: Any = None


class TodoStore(Protocol):
    """Every operation acts on one owner's items and key rows; other owners' are not there."""

    async def list(self, owner: str) -> list[TodoItem]: ...

    async def get(self, owner: str, item_id: str) -> TodoItem | None: ...

    async def add(self, owner: str, item: TodoItem, key: KeyWrite | None = None) -> TodoItem:
        """Store a new item. Adding the very same item again succeeds (a retried create);
        another item with a taken id raises KeyError.

        With `key`, the key row is written in the item's partition with the item, or neither:
        KeyTaken (checked first) or KeyError (any item under the id) and nothing is written."""

    async def replace(
        self, owner: str, item: TodoItem, key: KeyWrite | None = None
    ) -> TodoItem | None:
        """Replace the stored item with the same id; None if there is none.

        Raises ConcurrentUpdate when another writer changed the item meanwhile. With `key`: the
        key row too, or nothing (KeyTaken)."""

    async def delete(self, owner: str, item_id: str, key: KeyWrite | None = None) -> bool:
        """Delete the item; False if there was none. With `key`: the key row too, or nothing."""

    async def read_key(self, owner: str, partition: str, key_id: str) -> KeyRecord | None:
        """The key row in this partition (expired or not), with its version; None if none."""

    async def write_key(self, owner: str, partition: str, write: KeyWrite) -> Any:
        """Write a key row alone (a claim); its new version. KeyTaken if the condition fails."""

    async def release_key(self, owner: str, partition: str, key_id: str, version: Any) -> None:
        """Delete the key row if it still has this version; otherwise leave it."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""


class InMemoryTodoStore:
    """Items kept as plain tuples, by owner: the garbage collector untracks those (not TodoItem,
    a tuple subclass), so a large store adds nothing to the cost of later collections."""

    def __init__(self) -> None:
        self._owners: dict[str, dict[str, tuple]] = {}
        self._keys: dict[tuple[str, str, str], KeyRecord] = {}
        self._versions = itertools.count(1)

    def _items(self, owner: str) -> dict[str, tuple]:
        """The owner's items; a fresh empty dict for an owner with none (only add keeps it)."""
        return self._owners.get(owner) or {}

    async def list(self, owner: str) -> list[TodoItem]:
        return [TodoItem._make(fields) for fields in self._items(owner).values()]

    async def get(self, owner: str, item_id: str) -> TodoItem | None:
        fields = self._items(owner).get(item_id)
        return None if fields is None else TodoItem._make(fields)

    async def add(self, owner: str, item: TodoItem, key: KeyWrite | None = None) -> TodoItem:
        items = self._items(owner)
        existing = items.get(item.id)
        if key is not None:  # checked in the table store's order: the key row, then the item
            self._check_key(owner, item.id, key)
            if existing is not None:
                raise KeyError(item.id)
        elif existing is not None and existing != tuple(item):  # the same item again: a retry
            raise KeyError(item.id)
        self._owners.setdefault(owner, items)[item.id] = tuple(item)
        if key is not None:
            self._put_key(owner, item.id, key)
        return item

    async def replace(
        self, owner: str, item: TodoItem, key: KeyWrite | None = None
    ) -> TodoItem | None:
        items = self._items(owner)
        if item.id not in items:
            return None
        if key is not None:
            self._check_key(owner, item.id, key)
            self._put_key(owner, item.id, key)
        items[item.id] = tuple(item)
        return item

    async def delete(self, owner: str, item_id: str, key: KeyWrite | None = None) -> bool:
        items = self._items(owner)
        if item_id not in items:
            return False
        if key is not None:
            self._check_key(owner, item_id, key)
            self._put_key(owner, item_id, key)
        del items[item_id]
        return True

    async def read_key(self, owner: str, partition: str, key_id: str) -> KeyRecord | None:
        return self._keys.get((owner, partition, key_id))

    async def write_key(self, owner: str, partition: str, write: KeyWrite) -> Any:
        self._check_key(owner, partition, write)
        return self._put_key(owner, partition, write)

    async def release_key(self, owner: str, partition: str, key_id: str, version: Any) -> None:
        row = self._keys.get((owner, partition, key_id))
        if row is not None and row.version == version:
            del self._keys[(owner, partition, key_id)]

    def _check_key(self, owner: str, partition: str, write: KeyWrite) -> None:
        """An insert needs no row, a replace the row of that version (as If-Match does)."""
        row = self._keys.get((owner, partition, write.key_id))
        if (None if row is None else row.version) != write.replacing:
            raise KeyTaken(write.key_id)

    def _put_key(self, owner: str, partition: str, write: KeyWrite) -> Any:
        version = next(self._versions)
        self._keys[(owner, partition, write.key_id)] = write.record._replace(version=version)
        return version

    async def close(self) -> None:
        pass
