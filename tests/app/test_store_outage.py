"""The API over the table store when the store fails: a clear 503 (never a 500 or a traceback),
nothing lost, and service again as soon as the store is back. Each test owns its Azurite."""

from __future__ import annotations

import json
import logging
import os
import signal
import warnings
from pathlib import Path

import pytest

from app.application import create_app
from app.contract import IDEMPOTENCY_KEY_HEADER
from app.settings import StoreSettings
from app.table_store import table_store
from loadtests.azurite import Azurite
from tests.app.test_store_contract import InterleavingTableStore
from tests.waiting import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TABLE = "TodoItems"
KEYED = {IDEMPOTENCY_KEY_HEADER: "4b1d0c9e-outage"}


@pytest.fixture
def own_azurite(tmp_path):
    server = Azurite(tmp_path / "azurite")
    server.start()
    server.create_table(TABLE)
    yield server
    if server.process is not None:
        server.process.signal_group(signal.SIGCONT)
    server.stop()


def api(settings, cert_header, store) -> TestClient:
    """A client over the app; `with` it, so that one event loop serves every request."""
    return TestClient(
        create_app(settings, store=store), headers=cert_header, raise_server_exceptions=False
    )


def store_for(azurite: Azurite, table: str = TABLE, **options):
    settings = StoreSettings(
        kind="table", table_name=table, connection_string=azurite.connection_string
    )
    return table_store(settings, **options)


def assert_unavailable(response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    problem = response.json()
    assert problem["status"] == 503 and "unavailable" in problem["detail"]
    assert "Traceback" not in response.text


def test_a_stopped_store_gets_503_then_everything_is_back(settings, cert_header, own_azurite):
    with api(settings, cert_header, store_for(own_azurite)) as client:
        item = client.post("/api/TodoItem", json={"name": "kept"}).json()
        own_azurite.stop()
        for response in (
            client.get(f"/api/TodoItem/{item['id']}"),
            client.get("/api/TodoItem"),
            client.post("/api/TodoItem", json={"name": "refused"}),
            client.post("/api/TodoItem", json={"name": "refused"}, headers=KEYED),
            client.put(f"/api/TodoItem/{item['id']}", json={"id": item["id"], "name": "x"}),
            client.delete(f"/api/TodoItem/{item['id']}"),
            client.delete(f"/api/TodoItem/{item['id']}", headers=KEYED),
        ):
            assert_unavailable(response)
        own_azurite.restart()
        assert client.get("/api/TodoItem").json() == [item]


def test_a_hung_store_gets_503_within_the_deadline(settings, cert_header, own_azurite):
    # The item is written with the default deadline: only the hung call is meant to run out of
    # its (short) deadline, not a call that a busy machine makes slow.
    with api(settings, cert_header, store_for(own_azurite)) as writer:
        created = writer.post("/api/TodoItem", json={"name": "before the hang"})
        assert created.status_code == 201
    # SIGSTOP: the store still accepts connections (the kernel does) but never answers.
    with api(settings, cert_header, store_for(own_azurite, deadline=1.0)) as client:
        own_azurite.process.signal_group(signal.SIGSTOP)
        try:
            assert_unavailable(client.get("/api/TodoItem"))
        finally:
            own_azurite.process.signal_group(signal.SIGCONT)
        listed = wait_until(
            lambda: (response := client.get("/api/TodoItem")).status_code == 200 and response,
            "the same client listed the items again once the store was resumed",
        )
        assert listed.json() == [created.json()]


def test_a_missing_table_is_a_503_that_names_the_table(settings, cert_header, own_azurite, caplog):
    caplog.set_level(logging.WARNING, logger="app.store")
    with api(settings, cert_header, store_for(own_azurite, table="NeverCreated")) as client:
        assert_unavailable(client.get("/api/TodoItem"))
        assert_unavailable(client.post("/api/TodoItem", json={"name": "nowhere"}))
        # A keyed POST is a transaction: the service names the missing table inside its answer.
        assert_unavailable(client.post("/api/TodoItem", json={"name": "nowhere"}, headers=KEYED))
    assert "table 'NeverCreated': TableNotFound" in caplog.text
    assert "during add: table 'NeverCreated'" in caplog.text


def test_a_wrong_account_key_is_a_503_not_a_500(settings, cert_header, own_azurite):
    wrong = Azurite(own_azurite.workdir, port=own_azurite.port)  # same account, another key
    with api(settings, cert_header, store_for(wrong)) as client:
        assert_unavailable(client.get("/api/TodoItem"))
        assert_unavailable(client.post("/api/TodoItem", json={"name": "x"}, headers=KEYED))


def test_a_put_that_races_another_writer_gets_409_and_theirs_is_kept(
    settings, cert_header, own_azurite
):
    store = store_for(own_azurite)
    store.__class__ = InterleavingTableStore
    with (
        api(settings, cert_header, store) as client,
        api(settings, cert_header, store_for(own_azurite)) as other_region,
    ):
        item = client.post("/api/TodoItem", json={"name": "start"}).json()
        path = f"/api/TodoItem/{item['id']}"
        theirs = {"id": item["id"], "name": "theirs", "isCompleted": False}

        async def other_writer():
            # The other region's PUT lands between our read and our conditional write.
            response = await other_region_put()
            assert response.status_code == 200

        async def other_region_put():
            import anyio.to_thread

            return await anyio.to_thread.run_sync(lambda: other_region.put(path, json=theirs))

        store.between = other_writer
        response = client.put(path, json={"id": item["id"], "name": "ours"})
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert json.loads(response.text)["detail"].startswith("The item was changed")
        assert client.get(path).json() == theirs


def test_process_has_no_azurite_left_after_stop(own_azurite):
    pid = own_azurite.process.pid
    own_azurite.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


class ThrottlingAccount:
    """A local HTTP server that answers every call as a throttled Cosmos DB account does: 429
    with `x-ms-retry-after-ms` (Cosmos DB does not run here; Azurite never throttles)."""

    def __init__(self, retry_after_ms: int) -> None:
        import http.server
        import threading

        retry_after = str(retry_after_ms)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _throttle(self) -> None:
                self.server.calls += 1  # before answering: the caller may look once it has read
                body = b'{"odata.error":{"code":"TooManyRequests","message":{"value":"429"}}}'
                self.send_response(429)
                self.send_header("x-ms-retry-after-ms", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _throttle

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.calls = 0
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_throttled_store_is_a_503_with_the_service_retry_hint(settings, cert_header):
    account = ThrottlingAccount(retry_after_ms=1500)
    try:
        throttled = Azurite(Path("."), port=account.port)  # only its connection string is used
        # The SDK sleeps the 1.5 s hint before each of its two retries: 3 s of the default 5 s
        # deadline, which a busy machine can use up (then the answer is the deadline's 503).
        # The deadline is not what this test is about: a hang guard only.
        store = store_for(throttled, deadline=60)
        with api(settings, cert_header, store) as client:
            response = client.get("/api/TodoItem")
        assert_unavailable(response)
        assert response.headers["retry-after"] == "2"  # 1.5 s, rounded up
        assert account.server.calls == 3  # the first try and the SDK's two retries
    finally:
        account.close()


def test_the_server_log_carries_no_per_request_sdk_lines(
    environment, azurite, tmp_path, cert_header
):
    from tests.app import servers
    from tests.app.conftest import HEALTH_KEY

    azurite.create_table("QuietLog")
    settings = {
        **environment,
        "STORE": "table",
        "TABLE_NAME": "QuietLog",
        "TABLE_CONNECTION_STRING": azurite.connection_string,
    }
    server = servers.start_production(settings, tmp_path / "log", f"/health/{HEALTH_KEY}")
    try:
        for _ in range(3):
            assert server.request("GET", "/api/TodoItem", headers=cert_header)[0] == 200
        output = server.wait_for_output('"GET /api/TodoItem HTTP/1.1" 200', times=3)
    finally:
        server.stop()
    assert "http_logging_policy" not in output and "Request URL" not in output
    assert azurite.key not in output
