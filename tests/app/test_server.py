"""The production server (app/startup.sh) and `uvicorn app.main:app`, as real processes."""

from __future__ import annotations

import json
import os
import re
import socket
import sys

import pytest

from tests.app import servers
from tests.app.conftest import HEALTH_KEY

STARTUP = ["bash", str(servers.STARTUP_SCRIPT)]
UVICORN = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]


@pytest.mark.parametrize("command", [STARTUP, UVICORN], ids=["startup.sh", "uvicorn"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLIENT_CERT_SUBJECT", ""),
        ("HEALTH_CHECK_KEY", ""),
        ("CLIENT_CERT_THUMBPRINTS", "not-hex"),
        ("CLIENT_CERT_VALIDATION", "off"),
        ("STORE", ""),
        ("WEBSITE_SLOT_NAME", "créneau"),
    ],
)
def test_bad_setting_stops_the_start_with_one_line(environment, command, variable, value):
    result = servers.run_to_exit(command, {**environment, variable: value})
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith(f"configuration error: {variable}")
    assert "Traceback" not in output[0]


def test_an_incomplete_table_store_is_named_in_the_one_line_start_error(environment):
    result = servers.run_to_exit(STARTUP, {**environment, "STORE": "table"})
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0
    expected = (
        "configuration error: TABLE_ENDPOINT: is required with STORE=table "
        "(or TABLE_CONNECTION_STRING for Azurite or a key-based account)"
    )
    assert output == [expected]


@pytest.mark.parametrize("variable", ["PORT", "WEB_CONCURRENCY"])
def test_bad_server_setting_stops_startup_sh_with_one_line(environment, variable):
    result = servers.run_to_exit(STARTUP, {**environment, variable: "many"})
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 and len(output) == 1
    assert output[0].startswith(f"configuration error: {variable}")


def test_startup_sh_serves_the_api_with_access_log_on_stdout(production_server, cert_header):
    access_line = '"GET /api/TodoItem HTTP/1.1" 200'
    earlier = production_server.output().count(access_line)  # the server is shared
    status, _, body = production_server.request("GET", "/api/TodoItem", headers=cert_header)
    assert status == 200 and isinstance(json.loads(body), list)
    production_server.wait_for_output(access_line, times=earlier + 1)


def table_settings(environment, azurite, table: str) -> dict[str, str]:
    azurite.create_table(table)
    return {
        **environment,
        "STORE": "table",
        "TABLE_NAME": table,
        "TABLE_CONNECTION_STRING": azurite.connection_string,
    }


def started_workers(output: str) -> set[str]:
    """Pids of the gunicorn workers that booted and then completed application startup."""
    booted = re.findall(r"Booting worker with pid: (\d+)", output)
    return {pid for pid in booted if f"[{pid}] [INFO] Application startup complete" in output}


def test_startup_sh_runs_the_configured_worker_count_over_one_table(
    environment, azurite, tmp_path, cert_header
):
    settings = table_settings(environment, azurite, "WorkerCount")
    server = servers.start_production(
        {**settings, "WEB_CONCURRENCY": "2"}, tmp_path / "log", f"/health/{HEALTH_KEY}"
    )
    try:
        server.wait_for(
            lambda: len(started_workers(server.output())) >= 2, "two workers booted and started"
        )
        assert len(re.findall("Booting worker", server.output())) == 2
        headers = {**cert_header, "Content-Type": "application/json"}
        created = [
            json.loads(server.request("POST", "/api/TodoItem", b'{"name": "n"}', headers)[2])
            for _ in range(6)
        ]
        # Whichever worker answers, every item is there: the store is outside the process.
        for _ in range(4):
            status, _, body = server.request("GET", "/api/TodoItem", headers=cert_header)
            assert status == 200
            assert sorted(i["id"] for i in json.loads(body)) == sorted(i["id"] for i in created)
    finally:
        assert server.stop() == 0


def test_uvicorn_app_main_starts_locally(environment, tmp_path, cert_header):
    server = servers.start_uvicorn(environment, tmp_path / "log", f"/health/{HEALTH_KEY}")
    try:
        assert server.request("GET", "/api/todoitem", headers=cert_header)[0] == 200
        assert server.request("GET", f"/api/TodoItem/{'a' * 32}", headers=cert_header)[0] == 404
        # Its access log shows paths as telemetry does: the health key and item ids never.
        output = server.wait_for_output('"GET /api/TodoItem/{id} HTTP/1.1" 404')
        assert HEALTH_KEY not in output and "a" * 32 not in output
        assert '"GET /health/{key} HTTP/1.1" 200' in output
    finally:
        server.stop()


def test_sigterm_lets_the_in_flight_request_finish(environment, tmp_path, cert_header):
    body = b'{"name": "finished during shutdown"}'
    head = (
        "POST /api/TodoItem HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-ARR-ClientCert: {cert_header['X-ARR-ClientCert']}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    server = servers.start_production(environment, tmp_path / "log", f"/health/{HEALTH_KEY}")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            connection.sendall(head.encode())
            # 100 Continue comes once the app reads the body: the request is in flight in the app.
            assert connection.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            os.kill(server.process.pid, 15)
            server.wait_for_output("Shutting down")
            connection.sendall(body)
            response = connection.makefile("rb").read()
    finally:
        exit_code = server.stop()
    assert response.startswith(b"HTTP/1.1 201 Created")
    assert b"finished during shutdown" in response
    assert exit_code == 0
