"""Idempotency-Key through the whole app (app/idempotency.py), over the in-memory store and a real
Azurite table alike: every test that takes `make_store` runs once per store.

Requests run on one event loop per test through httpx's ASGI transport, so that a request can be
held inside the store (a Gate) while others run. "Another process" is a second app over the same
store: the same object for the in-memory store, a second client on the same table for Azurite.
Time is a Clock the test moves: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from app.application import create_app
from app.contract import IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, PROBLEM_MEDIA_TYPE
from app.idempotency import IN_FLIGHT_LEASE_SECONDS
from app.settings import load_settings
from app.store import InMemoryTodoStore, StoreUnavailable
from app.table_store import KEY_ROW_PREFIX, TableTodoStore

KEY = "5f0c6d3e-8a1b-4c2d-9e7f-0a1b2c3d4e5f"
DAY = 24 * 60 * 60  # the default expiry


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Gate:
    """Holds the `hold`-th item write that reaches it (the first by default) until opened: a
    request in flight. Every other write passes at once."""

    def __init__(self, hold: int = 1) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self.hold = hold
        self.writes = 0

    async def pass_through(self) -> None:
        self.writes += 1
        if self.writes == self.hold:
            self.entered.set()
            await self.opened.wait()


class GatedStore:
    """A store whose item writes wait at the gate first (after any claim, before the write)."""

    def __init__(self, store, gate: Gate) -> None:
        self._store = store
        self.gate = gate

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def add(self, owner, item, key=None):
        await self.gate.pass_through()
        return await self._store.add(owner, item, key)

    async def replace(self, owner, item, key=None):
        await self.gate.pass_through()
        return await self._store.replace(owner, item, key)

    async def delete(self, owner, item_id, key=None):
        await self.gate.pass_through()
        return await self._store.delete(owner, item_id, key)


class AnswerLostStore:
    """The next keyed add lands in the store, and then its answer is lost (503 to the caller)."""

    def __init__(self, store) -> None:
        self._store = store
        self.lose_next = True

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def add(self, owner, item, key=None):
        added = await self._store.add(owner, item, key)
        if self.lose_next:
            self.lose_next = False
            raise StoreUnavailable(1)
        return added


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(settings, cert_header, clock):
    """`async with serve(store) as client:` an HTTP client over a new app (one process)."""

    @contextlib.asynccontextmanager
    async def open_app(store, app_settings=None):
        app = create_app(app_settings or settings, store=store, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=cert_header
        ) as client:
            yield client

    return open_app


@pytest.fixture
def another_process(make_table_store):
    """`another_process(store)`: the same store as another process sees it (close it after)."""

    def open_again(store):
        if isinstance(store, TableTodoStore):
            return make_table_store(table=store.table_name)
        return store

    return open_again


def run(make_store, scenario):
    """`scenario(store)` on one event loop over a fresh store, closed at the end."""

    async def main():
        store = make_store()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def keyed(key: str = KEY) -> dict[str, str]:
    return {IDEMPOTENCY_KEY_HEADER: key}


async def post(client, name: str = "write the report", key: str | None = KEY):
    headers = keyed(key) if key is not None else {}
    return await client.post("/api/TodoItem", json={"name": name}, headers=headers)


async def put(client, item_id: str, name: str, key: str | None = KEY):
    headers = keyed(key) if key is not None else {}
    body = {"id": item_id, "name": name}
    return await client.put(f"/api/TodoItem/{item_id}", json=body, headers=headers)


async def delete(client, item_id: str, key: str | None = KEY):
    headers = keyed(key) if key is not None else {}
    return await client.delete(f"/api/TodoItem/{item_id}", headers=headers)


async def listed(client) -> list[dict]:
    return (await client.get("/api/TodoItem")).json()


async def key_rows(store) -> list:
    if isinstance(store, InMemoryTodoStore):
        return list(store._keys)
    entities = store.client.list_entities()
    return [e["RowKey"] async for e in entities if e["RowKey"].startswith(KEY_ROW_PREFIX)]


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem = response.json()
    assert problem["status"] == status
    for word in words:
        assert word in problem["detail"]
    return problem


def assert_replay_of(replay, first) -> None:
    assert replay.headers[IDEMPOTENT_REPLAYED_HEADER] == "true"
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay.headers.get("location") == first.headers.get("location")
    assert replay.headers.get("content-type") == first.headers.get("content-type")


# -- replay -------------------------------------------------------------------------------------


def test_a_retried_post_replays_the_first_answer_and_creates_nothing(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            first, again = await post(client), await post(client)
            return first, again, await listed(client)

    first, again, items = run(make_store, scenario)
    assert first.status_code == 201
    assert IDEMPOTENT_REPLAYED_HEADER not in first.headers
    assert_replay_of(again, first)
    assert items == [first.json()]


def test_a_retried_put_replays_its_answer_and_writes_nothing(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, "draft", key=None)).json()
            first = await put(client, item["id"], "final")
            later = await put(client, item["id"], "changed by someone else", key=None)
            again = await put(client, item["id"], "final")
            return first, later, again, await listed(client)

    first, later, again, items = run(make_store, scenario)
    assert first.status_code == 200 and later.status_code == 200
    assert_replay_of(again, first)
    assert [item["name"] for item in items] == ["changed by someone else"]


def test_a_retried_delete_replays_204_where_a_plain_retry_gets_404(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, key=None)).json()
            first = await delete(client, item["id"])
            again = await delete(client, item["id"])
            plain = await delete(client, item["id"], key=None)
            return first, again, plain

    first, again, plain = run(make_store, scenario)
    assert first.status_code == 204
    assert_replay_of(again, first)
    assert plain.status_code == 404


def test_the_draft_quoted_form_names_the_same_key(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            return await post(client, key=KEY), await post(client, key=f'"{KEY}"')

    first, again = run(make_store, scenario)
    assert_replay_of(again, first)


def test_the_same_object_encoded_another_way_is_the_same_request(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            headers = {**keyed(), "content-type": "application/json"}
            compact = b'{"name":"x","isCompleted":true}'
            spaced = b'{ "isCompleted": true,\n  "name": "x" }'
            return [
                await client.post("/api/TodoItem", content=body, headers=headers)
                for body in (compact, spaced)
            ]

    first, again = run(make_store, scenario)
    assert first.status_code == 201
    assert_replay_of(again, first)


# -- the same key for another request: 422 ------------------------------------------------------


def test_the_same_key_with_another_body_is_422_and_writes_nothing(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            first = await post(client, "first")
            other = await post(client, "second")
            return first, other, await listed(client)

    first, other, items = run(make_store, scenario)
    assert_problem(other, 422, IDEMPOTENCY_KEY_HEADER, "different request")
    assert items == [first.json()]


def test_a_key_reused_on_another_item_or_path_is_422(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            one = (await post(client, "one", key=None)).json()
            two = (await post(client, "two", key=None)).json()
            used = await put(client, one["id"], "one, done")
            answers = [
                await put(client, two["id"], "one, done"),  # another item
                await delete(client, one["id"]),  # another method, same item
                await delete(client, two["id"]),
                await post(client, "one, done"),  # another path
            ]
            return used, answers, await listed(client)

    used, answers, items = run(make_store, scenario)
    assert used.status_code == 200
    for answer in answers:
        assert_problem(answer, 422, IDEMPOTENCY_KEY_HEADER)
    assert sorted(item["name"] for item in items) == ["one, done", "two"]


def test_a_key_reused_with_the_same_body_on_another_item_or_method_is_422(make_store, serve):
    # Same body, so only the method or the path tells these requests apart.
    async def scenario(store):
        async with serve(store) as client:
            one = (await post(client, "one", key=None)).json()
            two = (await post(client, "two", key=None)).json()
            deleted = await delete(client, one["id"], key="k-delete")
            other_item = await delete(client, two["id"], key="k-delete")
            body = {"id": two["id"], "name": "same body"}
            put_first = await client.put(
                f"/api/TodoItem/{two['id']}", json=body, headers=keyed("k-put")
            )
            posted = await client.post("/api/TodoItem", json=body, headers=keyed("k-put"))
            return deleted, other_item, put_first, posted, await listed(client)

    deleted, other_item, put_first, posted, items = run(make_store, scenario)
    assert deleted.status_code == 204 and put_first.status_code == 200
    assert_problem(other_item, 422, IDEMPOTENCY_KEY_HEADER)
    assert_problem(posted, 422, IDEMPOTENCY_KEY_HEADER)
    assert [item["name"] for item in items] == ["same body"]


def test_a_key_first_used_by_a_post_is_422_on_the_created_item(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            created = (await post(client, "made")).json()
            changed = await put(client, created["id"], "made")
            deleted = await delete(client, created["id"])
            return created, changed, deleted, await listed(client)

    created, changed, deleted, items = run(make_store, scenario)
    assert_problem(changed, 422)
    assert_problem(deleted, 422)
    assert items == [created]


# -- in flight: 409 -----------------------------------------------------------------------------


def test_the_same_key_while_the_first_is_in_flight_here_is_409(make_store, serve):
    async def scenario(store):
        gate = Gate()
        async with serve(GatedStore(store, gate)) as client:
            first = asyncio.create_task(post(client))
            await gate.entered.wait()
            second = await post(client)
            gate.opened.set()
            first = await first
            return first, second, await post(client), await listed(client)

    first, second, third, items = run(make_store, scenario)
    assert_problem(second, 409, "in progress")
    assert int(second.headers["retry-after"]) >= 1
    assert first.status_code == 201
    assert_replay_of(third, first)
    assert items == [first.json()]


def test_the_same_key_while_the_first_is_in_flight_in_another_process_is_409(
    make_store, serve, another_process
):
    async def scenario(store):
        gate = Gate()
        other = another_process(store)
        try:
            async with serve(GatedStore(store, gate)) as one, serve(other) as two:
                item = (await post(two, "draft", key=None)).json()
                first = asyncio.create_task(put(one, item["id"], "final"))
                await gate.entered.wait()  # claimed, writing
                second = await put(two, item["id"], "final")
                gate.opened.set()
                first = await first
                return first, second, await put(two, item["id"], "final")
        finally:
            if other is not store:
                await other.close()

    first, second, third = run(make_store, scenario)
    assert_problem(second, 409, "in progress")
    assert 1 <= int(second.headers["retry-after"]) <= IN_FLIGHT_LEASE_SECONDS
    assert first.status_code == 200
    assert_replay_of(third, first)


def test_a_dead_requests_claim_is_taken_over_once_its_lease_runs_out(
    make_store, serve, clock, another_process
):
    async def scenario(store):
        gate = Gate()
        other = another_process(store)
        try:
            async with serve(GatedStore(store, gate)) as dying, serve(other) as client:
                item = (await post(client, "draft", key=None)).json()
                doomed = asyncio.create_task(delete(dying, item["id"]))
                await gate.entered.wait()  # claimed; the process dies before writing
                doomed.cancel()
                during = await delete(client, item["id"])
                clock.advance(IN_FLIGHT_LEASE_SECONDS)
                after = await delete(client, item["id"])
                return during, after, await listed(client)
        finally:
            if other is not store:
                await other.close()

    during, after, items = run(make_store, scenario)
    assert_problem(during, 409)
    assert after.status_code == 204
    assert IDEMPOTENT_REPLAYED_HEADER not in after.headers
    assert items == []


def test_a_slow_request_whose_claim_was_taken_over_replays_instead_of_writing_again(
    make_store, serve, clock, another_process
):
    # A POST reusing an expired key is claimed (its item id is new, not the key's home); if it
    # stalls past its lease, its retry takes over with the same item id, and the first, when it
    # finally writes, meets the retry's answer there and replays it: one item, not two.
    async def scenario(store):
        gate = Gate(hold=2)  # its first write (at the key's home) fails; the claimed one stalls
        other = another_process(store)
        try:
            async with serve(other) as fast:
                expired = await post(fast)
                clock.advance(DAY)
                async with serve(GatedStore(store, gate)) as slow:
                    stalled = asyncio.create_task(post(slow))
                    await gate.entered.wait()
                    clock.advance(IN_FLIGHT_LEASE_SECONDS)
                    retry = await post(fast)
                    gate.opened.set()
                    return expired, await stalled, retry, await listed(fast)
        finally:
            if other is not store:
                await other.close()

    expired, stalled, retry, items = run(make_store, scenario)
    assert retry.status_code == 201 and IDEMPOTENT_REPLAYED_HEADER not in retry.headers
    assert_replay_of(stalled, retry)
    assert sorted(item["id"] for item in items) == sorted(
        [expired.json()["id"], retry.json()["id"]]
    )


def test_a_post_racing_its_retry_in_another_process_lands_once(make_store, serve, another_process):
    async def scenario(store):
        gate = Gate()
        other = another_process(store)
        try:
            async with serve(GatedStore(store, gate)) as one, serve(other) as two:
                first = asyncio.create_task(post(one))
                await gate.entered.wait()  # about to write
                retry = await post(two)  # lands first
                gate.opened.set()
                return await first, retry, await listed(two)
        finally:
            if other is not store:
                await other.close()

    first, retry, items = run(make_store, scenario)
    assert retry.status_code == 201
    assert_replay_of(first, retry)
    assert items == [retry.json()]


# -- expiry -------------------------------------------------------------------------------------


def test_a_key_is_remembered_until_it_expires_then_free_for_a_new_request(make_store, serve, clock):
    async def scenario(store):
        async with serve(store) as client:
            first = await post(client)
            clock.advance(DAY - 1)
            replayed = await post(client)
            clock.advance(1)
            anew = await post(client)
            reused = await post(client, "another body")  # the new use is live now
            return first, replayed, anew, reused, await listed(client)

    first, replayed, anew, reused, items = run(make_store, scenario)
    assert_replay_of(replayed, first)
    assert anew.status_code == 201
    assert IDEMPOTENT_REPLAYED_HEADER not in anew.headers
    assert anew.json()["id"] != first.json()["id"]
    assert_problem(reused, 422)
    assert sorted(item["id"] for item in items) == sorted([first.json()["id"], anew.json()["id"]])


def test_an_expired_key_may_be_used_on_another_path(make_store, serve, clock):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, "kept")).json()
            clock.advance(DAY)
            changed = await put(client, item["id"], "changed")
            again = await put(client, item["id"], "changed")
            return changed, again

    changed, again = run(make_store, scenario)
    assert changed.status_code == 200
    assert_replay_of(again, changed)


def test_an_expired_key_on_the_same_item_overwrites_its_old_answer(make_store, serve, clock):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, "v0", key=None)).json()
            first = await put(client, item["id"], "v1")
            clock.advance(DAY)
            second = await put(client, item["id"], "v2")  # the old answer row is still there
            again = await put(client, item["id"], "v2")
            return first, second, again, await listed(client)

    first, second, again, items = run(make_store, scenario)
    assert first.status_code == second.status_code == 200
    assert IDEMPOTENT_REPLAYED_HEADER not in second.headers
    assert_replay_of(again, second)
    assert [item["name"] for item in items] == ["v2"]


def test_the_expiry_is_a_setting(make_store, serve, clock, environment):
    short = load_settings({**environment, "IDEMPOTENCY_KEY_EXPIRY_SECONDS": "60"})

    async def scenario(store):
        async with serve(store, short) as client:
            first = await post(client)
            clock.advance(59)
            replayed = await post(client)
            clock.advance(1)
            return first, replayed, await post(client)

    first, replayed, anew = run(make_store, scenario)
    assert_replay_of(replayed, first)
    assert anew.status_code == 201 and IDEMPOTENT_REPLAYED_HEADER not in anew.headers


# -- malformed keys: 400 ------------------------------------------------------------------------

MALFORMED = {
    "empty": b"",
    "oversized": b"k" * 256,
    "oversized in quotes": b'"' + b"k" * 256 + b'"',
    "empty quotes": b'""',
    "unbalanced quote": b'"abc',
    "space inside": b"two words",
    "quote inside": b'ab"c',
    "backslash": b"a\\b",
    "not ASCII": "clé-ü".encode(),
    "control character": b"a\x7fb",
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_malformed_or_oversized_key_is_one_clear_400(make_store, serve, method, value):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, "kept", key=None)).json()
            path = "/api/TodoItem" + ("" if method == "POST" else f"/{item['id']}")
            body = None if method == "DELETE" else json.dumps({"id": item["id"], "name": "x"})
            headers = {IDEMPOTENCY_KEY_HEADER: value, "content-type": "application/json"}
            answer = await client.request(method, path, content=body, headers=headers)
            return item, answer, await listed(client), await key_rows(store)

    item, answer, items, rows = run(make_store, scenario)
    problem = assert_problem(answer, 400, IDEMPOTENCY_KEY_HEADER, "255")
    assert problem["title"] == "Bad Request"
    assert items == [item]
    assert rows == []


def test_a_repeated_key_header_is_400(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            headers = [(IDEMPOTENCY_KEY_HEADER, "a"), (IDEMPOTENCY_KEY_HEADER, "b")]
            return await client.post("/api/TodoItem", json={"name": "x"}, headers=headers)

    assert_problem(run(make_store, scenario), 400, IDEMPOTENCY_KEY_HEADER, "at most once")


def test_the_longest_key_is_accepted(make_store, serve):
    longest = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\') * 3

    async def scenario(store):
        async with serve(store) as client:
            return await post(client, key=longest[:255]), await post(client, key=longest[:255])

    first, again = run(make_store, scenario)
    assert first.status_code == 201
    assert_replay_of(again, first)


# -- a crash between the write and the reply ----------------------------------------------------


def test_an_answer_lost_after_the_write_is_replayed_on_retry(make_store, serve):
    async def scenario(store):
        async with serve(AnswerLostStore(store)) as client:
            lost = await post(client)
            retry = await post(client)
            return lost, retry, await listed(client)

    lost, retry, items = run(make_store, scenario)
    assert_problem(lost, 503)
    assert retry.status_code == 201
    assert retry.headers[IDEMPOTENT_REPLAYED_HEADER] == "true"
    assert items == [retry.json()]


async def post_and_die(app, cert_header: dict[str, str]) -> None:
    """POST with KEY straight into the ASGI app; the process dies when it starts the reply."""
    body = json.dumps({"name": "write the report"}).encode()
    headers = {**cert_header, **keyed(), "content-type": "application/json", "host": "test"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/TodoItem",
        "raw_path": b"/api/TodoItem",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            raise ConnectionResetError("the process died before its reply left")

    with pytest.raises(ConnectionResetError):
        await app(scope, receive, send)


def test_a_crash_between_the_write_and_the_reply_is_replayed_after_a_restart(
    make_store, serve, settings, cert_header, clock, another_process
):
    async def scenario(store):
        await post_and_die(create_app(settings, store=store, clock=clock), cert_header)
        restarted = another_process(store)
        try:
            async with serve(restarted) as client:
                return await post(client), await listed(client), await key_rows(restarted)
        finally:
            if restarted is not store:
                await restarted.close()

    retry, items, rows = run(make_store, scenario)
    assert retry.status_code == 201
    assert retry.headers[IDEMPOTENT_REPLAYED_HEADER] == "true"
    assert retry.json()["name"] == "write the report"
    assert items == [retry.json()]
    assert len(rows) == 1  # the key's one row, beside its item


# -- what stores nothing ------------------------------------------------------------------------


def test_a_refused_request_stores_nothing_and_its_key_stays_usable(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            invalid = await post(client, "   ")
            created = await post(client)
            missing = "0" * 32
            gone = [await put(client, missing, "x", key="k2"), await delete(client, missing, "k2")]
            again = await put(client, missing, "x", key="k2")
            item = created.json()
            used = await put(client, item["id"], "renamed", key="k2")
            return invalid, created, gone, again, used

    invalid, created, gone, again, used = run(make_store, scenario)
    assert_problem(invalid, 400, "name")
    assert created.status_code == 201
    assert IDEMPOTENT_REPLAYED_HEADER not in created.headers
    # 404s store nothing and free their claim at once: no 409, no 422 afterwards.
    for answer in [*gone, again]:
        assert_problem(answer, 404)
    assert used.status_code == 200 and IDEMPOTENT_REPLAYED_HEADER not in used.headers


def test_requests_without_the_header_are_unchanged(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            first = await post(client, key=None)
            second = await post(client, key=None)
            item = first.json()
            deleted = await delete(client, item["id"], key=None)
            again = await delete(client, item["id"], key=None)
            return first, second, deleted, again, await key_rows(store)

    first, second, deleted, again, rows = run(make_store, scenario)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert all(IDEMPOTENT_REPLAYED_HEADER not in r.headers for r in (first, second))
    assert (deleted.status_code, again.status_code) == (204, 404)
    assert rows == []


def test_reads_ignore_the_header(make_store, serve):
    async def scenario(store):
        async with serve(store) as client:
            item = (await post(client, key=None)).json()
            headers = {IDEMPOTENCY_KEY_HEADER: "not a valid key"}
            return [
                await client.get("/api/TodoItem", headers=headers),
                await client.get(f"/api/TodoItem/{item['id']}", headers=headers),
            ]

    assert [answer.status_code for answer in run(make_store, scenario)] == [200, 200]
