"""Secrets and names in telemetry: the real server (app/startup.sh) with bearer tokens and the
table store on, exporting through the real Azure Monitor exporter to the ingestion stand-in.

Requests that no route matched, or that a gate refused before routing, are named by a route
template or one fixed name; paths near the health check are its template; `success` is what
docs/operations.md says; and no secret is in what ingestion received nor in the server's log
(the access log included)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from app.middleware import UNMATCHED_PATH, reported_path
from tests.app import servers
from tests.app.conftest import HEALTH_KEY
from tests.app.fake_ingestion import EXPORTER_QUIET, FakeIngestion
from tests.app.issuer import LocalIssuer, new_signing_key

SITE = "todo-api-test-region"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}
RANDOM_ID = uuid.uuid4().hex
RANDOM_SEGMENT = uuid.uuid4().hex
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    with LocalIssuer(new_signing_key(tmp_path_factory.mktemp("keys"), "key-1")) as running:
        yield running


@pytest.fixture(scope="module")
def cert_header_value(client_certificate):
    from tests.app import certs

    return certs.header_value(client_certificate)


@pytest.fixture(scope="module")
def secrets_run(environment, azurite, issuer, cert_header_value, tmp_path_factory):
    """Every request kind once; then (what ingestion received, the server's log, the token)."""
    settings = {
        **environment, **EXPORTER_QUIET, **FAST_EXPORT, **issuer.app_settings(),
        "STORE": "table",
        "TABLE_NAME": "NeverCreatedForTelemetry",  # every store call: 503, the one 5xx at hand
        "TABLE_CONNECTION_STRING": azurite.connection_string,
        "TELEMETRY_SAMPLING_RATIO": "1",
    }
    with FakeIngestion() as ingestion:
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = ingestion.connection_string
        log = tmp_path_factory.mktemp("secrets") / "server.log"
        server = servers.start_production(settings, log, f"/health/{HEALTH_KEY}")
        token = issuer.token(time.time())
        cert = {"X-ARR-ClientCert": cert_header_value}
        authorized = {**cert, "Authorization": f"Bearer {token}"}
        try:
            expected = [
                (f"/health/{HEALTH_KEY}", {}, 200),
                (f"/health/{HEALTH_KEY}/..", {}, 403),  # not exempt: refused, and logged
                (f"/health%2F{HEALTH_KEY}", {}, 403),
                (f"/HEALTH/{HEALTH_KEY}/./", {}, 403),
                (f"/api/TodoItem/{RANDOM_ID}", {}, 403),  # no certificate
                (f"/api/TodoItem/{token}", cert, 401),  # a careless client's token in the path
                ("/api/TodoItem", {**cert, "Authorization": f"Bearer {token}x"}, 401),
                (f"/api/NoSuchThing/{RANDOM_SEGMENT}", authorized, 404),
                ("/api/TodoItem", authorized, 503),  # the table does not exist
            ]
            for path, headers, status in expected:
                assert server.request("GET", path, None, headers)[0] == status, path

            def arrived(envelopes):
                requests = [e for e in envelopes if e["data"]["baseType"] == "RequestData"]
                return len(requests) >= len(expected) + 1  # + the readiness probe
        finally:
            exit_code = server.stop()
        assert exit_code == 0
        ingestion.wait_for("every request", arrived)
        yield ingestion, server.output(), token


def _requests(ingestion) -> list[dict]:
    return ingestion.of_type("RequestData")


def test_requests_that_match_no_route_have_bounded_names(secrets_run):
    ingestion, _, _ = secrets_run
    names = {e["data"]["baseData"]["name"] for e in _requests(ingestion)}
    assert names == {
        "GET /health/{key}",
        "GET /api/TodoItem/{id}",
        "GET /api/TodoItem",
        f"GET {UNMATCHED_PATH}",
    }
    for envelope in _requests(ingestion):
        assert envelope["tags"]["ai.operation.name"] == envelope["data"]["baseData"]["name"]
        assert envelope["tags"]["ai.cloud.role"] == "todo-api"
        assert envelope["tags"]["ai.cloud.roleInstance"] == SITE
    sent = ingestion.all_bytes()
    for value in (RANDOM_ID, RANDOM_SEGMENT, "NoSuchThing"):
        assert value.encode() not in sent, value


def _by_code(ingestion) -> dict[str, set]:
    found: dict[str, set] = {}
    for envelope in _requests(ingestion):
        data = envelope["data"]["baseData"]
        found.setdefault(data["responseCode"], set()).add(data["success"])
    return found


def test_success_is_what_the_operations_guide_says(secrets_run):
    """The exporter sets `success` false for every 4xx and for a span with status ERROR (the app
    sets it for 5xx): Failures in the portal counts 401/403/404 too. The guide says so."""
    ingestion, _, _ = secrets_run
    assert _by_code(ingestion) == {
        "200": {True}, "401": {False}, "403": {False}, "404": {False}, "503": {False},
    }
    guide = OPERATIONS.read_text()
    telemetry = guide[guide.index("## Telemetry from the app"):guide.index("### Settings")]
    assert "count as successful" not in telemetry
    assert "`success` is false for every 4xx" in " ".join(telemetry.split())


def test_no_secret_reaches_ingestion_or_the_server_log(
    secrets_run, azurite, cert_header_value
):
    ingestion, output, token = secrets_run
    secrets = {
        "health key": HEALTH_KEY,
        "certificate header": cert_header_value[:40],
        "bearer token": token.split(".")[2],  # its signature: a valid token's secret part
        "token payload": token.split(".")[1],
        "store account key": azurite.key,
        "store connection string": azurite.connection_string,
    }
    sent = ingestion.all_bytes().decode("utf-8", "replace")
    for what, secret in secrets.items():
        assert secret not in sent, f"{what} reached ingestion"
        assert secret not in output, f"{what} is in the server's log"
    rejections = [e["data"]["baseData"]["message"] for e in ingestion.of_type("MessageData")
                  if "certificate rejected" in e["data"]["baseData"]["message"]]
    assert len(rejections) == 4
    assert sum("/health/{key}" in message for message in rejections) == 3


def test_the_access_log_shows_paths_as_telemetry_does(secrets_run):
    _, output, _ = secrets_run
    access = re.findall(r'"GET (\S+) HTTP/1.1" (\d+)', output)
    assert ("/health/{key}", "200") in access and ("/api/TodoItem", "503") in access
    assert {path for path, _ in access} == {
        "/health/{key}", "/api/TodoItem/{id}", "/api/TodoItem", UNMATCHED_PATH,
    }


@pytest.mark.parametrize(
    ("path", "raw", "shown"),
    [
        ("/api/TodoItem", None, "/api/TodoItem"),
        ("/API/todoitem/abc", None, "/api/TodoItem/{id}"),
        ("/api/TodoItem/a/b", None, UNMATCHED_PATH),
        ("/health/k", None, "/health/{key}"),
        ("/health/k/..", None, "/health/{key}"),
        ("/health/k", b"/health%2Fk", "/health/{key}"),
        ("/%68ealth/k", b"/%2568ealth/k", "/health/{key}"),
        ("/x/../HEALTH/k", None, "/health/{key}"),
        ("/health\\k", None, "/health/{key}"),
        ("/nothing/secret", None, UNMATCHED_PATH),
        ("/swagger/v1/swagger.json", None, "/swagger/v1/swagger.json"),
    ],
)
def test_reported_path(path, raw, shown):
    assert reported_path(path, raw) == shown
