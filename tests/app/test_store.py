"""The in-memory store under concurrent requests (through the whole app, on one event loop)."""

from __future__ import annotations

import asyncio
import gc
import json

import httpx

from app.application import create_app
from app.store import ANONYMOUS_OWNER, InMemoryTodoStore, todo_item

CONCURRENCY = 200


def run_concurrently(settings, cert_header, make_requests):
    async def main():
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=cert_header
        ) as client:
            return await make_requests(client)

    return asyncio.run(main())


def test_concurrent_creates_are_all_kept_with_distinct_ids(settings, cert_header):
    async def requests(client):
        posts = [
            client.post("/api/TodoItem", json={"name": f"item {n}"}) for n in range(CONCURRENCY)
        ]
        created = await asyncio.gather(*posts)
        return created, (await client.get("/api/TodoItem")).json()

    created, listed = run_concurrently(settings, cert_header, requests)
    assert all(response.status_code == 201 for response in created)
    assert len({response.json()["id"] for response in created}) == CONCURRENCY
    assert sorted(item["name"] for item in listed) == sorted(
        f"item {n}" for n in range(CONCURRENCY)
    )


def test_concurrent_deletes_of_one_item_succeed_exactly_once(settings, cert_header):
    async def requests(client):
        item = (await client.post("/api/TodoItem", json={"name": "once"})).json()
        deletes = [client.delete(f"/api/TodoItem/{item['id']}") for _ in range(CONCURRENCY)]
        return [response.status_code for response in await asyncio.gather(*deletes)]

    statuses = run_concurrently(settings, cert_header, requests)
    assert statuses.count(204) == 1
    assert statuses.count(404) == CONCURRENCY - 1


def test_concurrent_updates_leave_one_whole_update(settings, cert_header):
    async def requests(client):
        item = (await client.post("/api/TodoItem", json={"name": "start"})).json()
        path = f"/api/TodoItem/{item['id']}"
        updates = [
            client.put(path, json={"id": item["id"], "name": f"v{n}", "isCompleted": n % 2 == 1})
            for n in range(CONCURRENCY)
        ]
        statuses = [response.status_code for response in await asyncio.gather(*updates)]
        return statuses, (await client.get(path)).json()

    statuses, final = run_concurrently(settings, cert_header, requests)
    assert set(statuses) == {200}
    version = int(final["name"][1:])
    assert final["isCompleted"] is (version % 2 == 1)  # name and flag come from the same update


def test_store_refuses_a_duplicate_id():
    store = InMemoryTodoStore()

    async def main():
        await store.add(ANONYMOUS_OWNER, todo_item("a" * 32, "first"))
        try:
            await store.add(ANONYMOUS_OWNER, todo_item("a" * 32, "second"))
        except KeyError:
            return (await store.get(ANONYMOUS_OWNER, "a" * 32)).name
        return None

    assert asyncio.run(main()) == "first"


def test_stored_items_cost_the_garbage_collector_nothing():
    store = InMemoryTodoStore()

    async def fill():
        for n in range(1000):
            await store.add(ANONYMOUS_OWNER, todo_item(f"{n:032x}", f"item {n}"))

    asyncio.run(fill())
    gc.collect()
    assert not any(gc.is_tracked(fields) for fields in store._items(ANONYMOUS_OWNER).values())


def test_an_item_carries_exactly_the_json_of_its_fields():
    for name in ('plain', 'quote " and \\ backslash', "ünïcode ✓ \u2028", "\x00 control"):
        for done in (True, False):
            item = todo_item("0123abcd", name, done)
            expected = {"id": "0123abcd", "name": name, "isCompleted": done}
            assert json.loads(item.json) == expected
            assert item.json == json.dumps(
                expected, ensure_ascii=False, separators=(",", ":")
            ).encode()
