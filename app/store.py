"""TodoItem storage behind a small async interface; the in-memory store is the first backend.

Each in-memory operation runs without an await inside, so on one event loop it is atomic: no
lock is needed and concurrent requests never see a half-made change. The store lives in one
process: with several workers each has its own (a durable backend replaces it later).
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TodoItem:
    id: str
    name: str
    is_completed: bool = False

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "isCompleted": self.is_completed}

    @functools.cached_property
    def json(self) -> bytes:
        """The item as compact UTF-8 JSON, encoded once (items never change; updates replace them)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def new_item_id() -> str:
    return uuid.uuid4().hex


class TodoStore(Protocol):
    async def list(self) -> list[TodoItem]: ...

    async def get(self, item_id: str) -> TodoItem | None: ...

    async def add(self, item: TodoItem) -> TodoItem: ...

    async def replace(self, item: TodoItem) -> TodoItem | None:
        """Replace the stored item with the same id; None if there is none."""

    async def delete(self, item_id: str) -> bool:
        """Delete the item; False if there was none."""


class InMemoryTodoStore:
    def __init__(self) -> None:
        self._items: dict[str, TodoItem] = {}

    async def list(self) -> list[TodoItem]:
        return list(self._items.values())

    async def get(self, item_id: str) -> TodoItem | None:
        return self._items.get(item_id)

    async def add(self, item: TodoItem) -> TodoItem:
        if item.id in self._items:
            raise KeyError(item.id)
        self._items[item.id] = item
        return item

    async def replace(self, item: TodoItem) -> TodoItem | None:
        if item.id not in self._items:
            return None
        self._items[item.id] = item
        return item

    async def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None
