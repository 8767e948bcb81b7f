"""Made-up per-request records and stored items, as the locustfiles and the store give them."""

from __future__ import annotations

from loadtests.item_identity import item_name
from loadtests.reconciliation import StoredItem

A, B, C = "a" * 32, "b" * 32, "c" * 32  # tokens


def request(t, method, status, item=None, token=None, content=None, outcome="ok"):
    record = {
        "t": t,
        "method": method,
        "name": "/api/TodoItem",
        "status": status,
        "ms": 5.0,
        "site": "region-a",
        "outcome": outcome,
        "item": item,
        "user": "u1",
        "token": token,
    }
    if content is not None:
        record["content"] = content
    return record


def content(token, text="load test item", done=False):
    return {"name": item_name(token, text), "isCompleted": done}


def create(t, token, item=None, status=201):
    return request(t, "POST", status, item if status == 201 else None, token, content(token))


def update(t, item, token, text, done=True, status=200):
    return request(t, "PUT", status, item, token, content(token, text, done))


def delete(t, item, token, status=204):
    outcome = "lost" if status == 404 else "ok"
    return request(t, "DELETE", status, item, token, outcome=outcome)


def stored(item, token, text="load test item", done=False):
    return StoredItem(item, item_name(token, text), done)
