"""Telemetry: off and not even imported without settings; on, the real server sends request
spans named by route template, with the region, correlated logs, and no secret or item content,
through the real Azure Monitor exporter (to a stand-in ingestion endpoint) or a local file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.settings import SettingsError, load_settings
from tests.app import servers
from tests.app.conftest import HEALTH_KEY
from tests.app.fake_ingestion import EXPORTER_QUIET, FakeIngestion

SITE = "todo-api-test-region"  # WEBSITE_SITE_NAME in tests/app/conftest.py
ITEM_CONTENT = "item content that must stay out of telemetry 7f3a"
SUBSCRIPTION_KEY = "subscription-key-that-must-stay-out-0123"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}


# -- settings -------------------------------------------------------------------------------


def test_telemetry_is_off_by_default(environment):
    assert load_settings(environment).telemetry.enabled is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TELEMETRY_SAMPLING_RATIO", "1.5"),
        ("TELEMETRY_SAMPLING_RATIO", "-0.1"),
        ("TELEMETRY_SAMPLING_RATIO", "nan"),
        ("TELEMETRY_SAMPLING_RATIO", "ten percent"),
        ("TELEMETRY_EXPORTER", "otlp"),
        ("TELEMETRY_EXPORTER", "file:"),
        ("TELEMETRY_EXPORTER", "file:/no/such/folder/telemetry.jsonl"),
        ("TELEMETRY_SAMPLING_RATIO", "0.5"),  # with TELEMETRY_TRACES_PER_SECOND below
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "IngestionEndpoint=https://example/"),
    ],
)
def test_bad_telemetry_setting_names_the_variable(environment, variable, value):
    both = {"TELEMETRY_TRACES_PER_SECOND": "5"} if value == "0.5" else {}
    with pytest.raises(SettingsError) as raised:
        load_settings({**environment, **both, variable: value})
    assert raised.value.name == variable
    assert "\n" not in str(raised.value)


def test_bad_sampling_ratio_stops_the_server_with_one_line(environment):
    result = servers.run_to_exit(
        ["bash", str(servers.STARTUP_SCRIPT)], {**environment, "TELEMETRY_SAMPLING_RATIO": "2"}
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 and len(output) == 1
    assert output[0].startswith("configuration error: TELEMETRY_SAMPLING_RATIO")


def test_sampling_ratio_and_local_exporter_are_read(environment):
    telemetry = load_settings(
        {**environment, "TELEMETRY_SAMPLING_RATIO": "0.25", "TELEMETRY_EXPORTER": "console"}
    ).telemetry
    assert (telemetry.enabled, telemetry.sampling_ratio, telemetry.exporter) == (
        True, 0.25, "console",
    )


def test_telemetry_off_imports_no_opentelemetry(environment):
    """The app as the server loads it, without telemetry settings: nothing of OpenTelemetry or
    the distro is imported, so the request path cannot pay for it."""
    probe = (
        "import sys, app.main; "
        "print(sorted({m.split('.')[0] for m in sys.modules "
        "if m.startswith(('opentelemetry', 'azure'))}))"
    )
    env = servers.server_environment(environment, servers.free_port())
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=servers.REPO, env=env, capture_output=True, text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# -- the real server, exporting to a stand-in Application Insights -------------------------


@pytest.fixture(scope="module")
def ingestion():
    with FakeIngestion() as fake:
        yield fake


@pytest.fixture(scope="module")
def traced_server(environment, ingestion, tmp_path_factory):
    settings = {
        **environment,
        **EXPORTER_QUIET,
        **FAST_EXPORT,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
        "TELEMETRY_SAMPLING_RATIO": "1",
    }
    log = tmp_path_factory.mktemp("traced") / "server.log"
    server = servers.start_production(settings, log, f"/health/{HEALTH_KEY}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exchange(traced_server, ingestion, cert_header_value):
    """One of each request a caller makes, then the telemetry the server sent about them."""
    headers = {
        "X-ARR-ClientCert": cert_header_value,
        "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
        "Content-Type": "application/json",
    }
    body = json.dumps({"name": ITEM_CONTENT}).encode()
    status, _, created = traced_server.request("POST", "/api/TodoItem?code=q", body, headers)
    assert status == 201
    item_id = json.loads(created)["id"]
    parent = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    assert traced_server.request("GET", f"/api/TodoItem/{item_id}", None,
                                 {**headers, **parent})[0] == 200
    assert traced_server.request("GET", f"/health/{HEALTH_KEY}")[0] == 200
    assert traced_server.request("GET", "/api/TodoItem")[0] == 403  # no certificate: logged
    wanted = {"POST /api/TodoItem", "GET /api/TodoItem/{id}", "GET /health/{key}"}

    def arrived(envelopes):
        names = {e["data"]["baseData"].get("name") for e in envelopes
                 if e["data"]["baseType"] == "RequestData"}
        codes = {e["data"]["baseData"].get("responseCode") for e in envelopes
                 if e["data"]["baseType"] == "RequestData"}
        rejected = [e for e in envelopes if e["data"]["baseType"] == "MessageData"
                    and "rejected" in e["data"]["baseData"]["message"]]
        return wanted <= names and "403" in codes and rejected

    ingestion.wait_for("the four requests and the rejection log", arrived)
    return item_id


@pytest.fixture(scope="module")
def cert_header_value(client_certificate):
    from tests.app import certs

    return certs.header_value(client_certificate)


def _requests(ingestion) -> dict[str, dict]:
    return {e["data"]["baseData"]["name"]: e for e in ingestion.of_type("RequestData")}


def test_requests_are_named_by_route_template_never_the_id(exchange, ingestion):
    requests = _requests(ingestion)
    item = requests["GET /api/TodoItem/{id}"]
    assert item["tags"]["ai.operation.name"] == "GET /api/TodoItem/{id}"
    assert item["data"]["baseData"]["responseCode"] == "200"
    assert item["data"]["baseData"]["success"] is True
    assert requests["POST /api/TodoItem"]["data"]["baseData"]["responseCode"] == "201"
    assert all(exchange not in name for name in requests)


def test_every_request_carries_the_region_as_cloud_role_instance(exchange, ingestion):
    for envelope in ingestion.of_type("RequestData"):
        assert envelope["tags"]["ai.cloud.roleInstance"] == SITE
        assert envelope["tags"]["ai.cloud.role"] == "todo-api"


def test_the_callers_trace_is_continued(exchange, ingestion):
    item = _requests(ingestion)["GET /api/TodoItem/{id}"]
    assert item["tags"]["ai.operation.id"] == TRACE_ID
    assert item["tags"]["ai.operation.parentId"] == "00f067aa0ba902b7"


def test_logs_are_correlated_with_their_request(exchange, ingestion):
    (rejection,) = [e for e in ingestion.of_type("MessageData")
                    if "rejected" in e["data"]["baseData"]["message"]]
    rejected_request = [e for e in ingestion.of_type("RequestData")
                        if e["data"]["baseData"]["responseCode"] == "403"]
    assert rejection["tags"]["ai.operation.id"] in {
        e["tags"]["ai.operation.id"] for e in rejected_request
    }
    assert rejection["tags"]["ai.cloud.roleInstance"] == SITE


def test_health_key_is_neither_in_the_name_nor_in_the_url(exchange, ingestion):
    health = _requests(ingestion)["GET /health/{key}"]
    assert health["data"]["baseData"]["url"].endswith("/health/{key}")


def test_no_secret_or_item_content_reaches_ingestion(exchange, ingestion, cert_header_value):
    sent = ingestion.all_bytes()
    for secret in (HEALTH_KEY, SUBSCRIPTION_KEY, cert_header_value[:40], ITEM_CONTENT, "code=q"):
        assert secret.encode() not in sent, secret


# -- the same telemetry to a local file ----------------------------------------------------


def _spans(path, wanted: set[str]) -> dict[str, dict]:
    """The server's spans by name, read once it has stopped (the exporter flushes at exit)."""
    lines = path.read_text().splitlines() if path.exists() else []
    spans = {s["name"]: s for s in map(json.loads, lines) if "kind" in s}
    assert wanted <= set(spans), f"spans {wanted - set(spans)} not written; got {sorted(spans)}"
    return spans


def test_file_exporter_writes_the_same_spans_locally(environment, tmp_path, cert_header_value):
    path = tmp_path / "telemetry.jsonl"
    settings = {
        **environment, **FAST_EXPORT,
        "TELEMETRY_EXPORTER": f"file:{path}",
        "TELEMETRY_SAMPLING_RATIO": "1",
    }
    server = servers.start_production(settings, tmp_path / "server.log", f"/health/{HEALTH_KEY}")
    try:
        headers = {"X-ARR-ClientCert": cert_header_value}
        assert server.request("GET", "/api/TodoItem/0123", None, headers)[0] == 404
    finally:
        server.stop()
    spans = _spans(path, {"GET /api/TodoItem/{id}", "GET /health/{key}"})
    item = spans["GET /api/TodoItem/{id}"]
    assert item["kind"] == "SpanKind.SERVER"
    assert item["attributes"]["http.route"] == "/api/TodoItem/{id}"
    assert item["attributes"]["http.response.status_code"] == 404
    assert item["resource"]["attributes"]["service.instance.id"] == SITE
    assert HEALTH_KEY not in path.read_text()


def test_sampling_ratio_zero_sends_no_request_spans(environment, tmp_path):
    path = tmp_path / "telemetry.jsonl"
    settings = {**environment, **FAST_EXPORT, "TELEMETRY_EXPORTER": f"file:{path}",
                "TELEMETRY_SAMPLING_RATIO": "0"}
    server = servers.start_production(settings, tmp_path / "server.log", f"/health/{HEALTH_KEY}")
    try:
        for _ in range(20):
            assert server.request("GET", f"/health/{HEALTH_KEY}")[0] == 200
    finally:
        exit_code = server.stop()
    assert exit_code == 0  # the exporter flushes at exit: whatever was kept is written
    spans = [line for line in path.read_text().splitlines() if '"kind"' in line]
    assert spans == []


# -- sampling ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_sampling_traces_at_most_the_limit_per_second_and_says_at_what_rate():
    from app.telemetry import RequestSampler

    clock = Clock()
    sampler = RequestSampler(None, 5.0, clock)
    first_second = [sampler.sample() for _ in range(1000)]
    assert sum(rate is not None for rate in first_second) == 5  # a burst: the limit holds
    clock.now += 1
    rates = [sampler.sample() for _ in range(1000)]
    kept = [rate for rate in rates if rate is not None]
    assert set(kept) == {5 / 1000}  # last second's 1000 requests: each kept one stands for 200
    assert 0 < len(kept) <= 5


def test_fixed_ratio_sampling_keeps_its_ratio():
    from app.telemetry import RequestSampler

    assert {RequestSampler(1.0, 5.0).sample() for _ in range(100)} == {1.0}
    assert {RequestSampler(0.0, 5.0).sample() for _ in range(100)} == {None}


def test_spans_carry_their_sample_rate_and_children_follow_the_request(
    settings, make_client, cert_header
):
    """In process: the middleware over the real app, its spans in memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app.application import create_app
    from app.telemetry import (
        SAMPLE_RATE_ATTRIBUTE,
        FollowTheRequestSampler,
        RequestSampler,
        RequestTelemetryMiddleware,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=FollowTheRequestSampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("store")

    async def store_call(scope, receive, send):  # stands for a store call inside the request
        with tracer.start_as_current_span("TableClient.get_entity"):
            await app(scope, receive, send)

    app = create_app(settings)
    traced = RequestTelemetryMiddleware(store_call, RequestSampler(0.5, 5.0), provider)
    from starlette.testclient import TestClient

    client = TestClient(traced, headers=cert_header)
    for _ in range(40):
        assert client.get("/api/TodoItem").status_code == 200
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.name == "GET /api/TodoItem"]
    children = [s for s in spans if s.name == "TableClient.get_entity"]
    assert 0 < len(requests) < 40 and len(children) == len(requests)
    assert {s.attributes[SAMPLE_RATE_ATTRIBUTE] for s in requests + children} == {50.0}
    assert {c.parent.span_id for c in children} == {r.context.span_id for r in requests}


def test_azure_sdk_calls_become_dependencies_of_the_request(environment, tmp_path, ingestion):
    """The store (azure-data-tables) calls through azure-core; with telemetry on, each call is
    a CLIENT span under the request's span. Checked with azure-core itself against the
    stand-in endpoint (the table store is not on this branch)."""
    path = tmp_path / "telemetry.jsonl"
    script = f"""
import asyncio
from azure.core import PipelineClient
from azure.core.pipeline.policies import DistributedTracingPolicy
from azure.core.rest import HttpRequest
from opentelemetry import trace
from app.settings import load_settings
from app.telemetry import RequestTelemetryMiddleware, configure_telemetry, request_sampler

settings = load_settings()
configure_telemetry(settings)
client = PipelineClient("http://127.0.0.1", policies=[DistributedTracingPolicy()])

async def endpoint(scope, receive, send):
    request = HttpRequest("POST", "{ingestion.connection_string.split('=')[-1]}v2.1/track", json=[])
    assert client.send_request(request).status_code == 200
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b""}})

async def main():
    app = RequestTelemetryMiddleware(endpoint, request_sampler(settings.telemetry))
    scope = {{"type": "http", "method": "GET", "path": "/api/TodoItem", "headers": []}}
    async def receive():
        return {{"type": "http.request", "body": b""}}
    async def send(message):
        pass
    await app(scope, receive, send)

asyncio.run(main())
trace.get_tracer_provider().force_flush()
"""
    env = servers.server_environment(
        {**environment, "TELEMETRY_EXPORTER": f"file:{path}", "TELEMETRY_SAMPLING_RATIO": "1"},
        servers.free_port(),
    )
    subprocess.run([sys.executable, "-c", script], cwd=servers.REPO, env=env, check=True,
                   timeout=servers.READY_TIMEOUT)
    spans = [s for s in map(json.loads, path.read_text().splitlines()) if "kind" in s]
    (request,) = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    (dependency,) = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    assert dependency["parent_id"] == request["context"]["span_id"]
    assert dependency["context"]["trace_id"] == request["context"]["trace_id"]


def test_table_store_calls_are_dependencies_of_their_request(
    environment, azurite, tmp_path, cert_header_value
):
    """The durable store (azure-data-tables on a real Azurite): each of its calls is a CLIENT
    span under the request that made it, and the item's content is in none of them."""
    azurite.create_table("TelemetryItems")
    path = tmp_path / "telemetry.jsonl"
    settings = {
        **environment, **FAST_EXPORT,
        "STORE": "table",
        "TABLE_NAME": "TelemetryItems",
        "TABLE_CONNECTION_STRING": azurite.connection_string,
        "TELEMETRY_EXPORTER": f"file:{path}",
        "TELEMETRY_SAMPLING_RATIO": "1",
    }
    server = servers.start_production(settings, tmp_path / "server.log", f"/health/{HEALTH_KEY}")
    try:
        headers = {"X-ARR-ClientCert": cert_header_value, "Content-Type": "application/json"}
        body = json.dumps({"name": ITEM_CONTENT}).encode()
        status, _, created = server.request("POST", "/api/TodoItem", body, headers)
        assert status == 201
        item_id = json.loads(created)["id"]
        assert server.request("GET", f"/api/TodoItem/{item_id}", None, headers)[0] == 200
    finally:
        server.stop()
    spans = _spans(path, {"POST /api/TodoItem", "GET /api/TodoItem/{id}"})
    everything = [s for s in map(json.loads, path.read_text().splitlines()) if "kind" in s]
    for name in ("POST /api/TodoItem", "GET /api/TodoItem/{id}"):
        request = spans[name]
        dependencies = [
            s for s in everything
            if s["kind"] == "SpanKind.CLIENT"
            and s["context"]["trace_id"] == request["context"]["trace_id"]
        ]
        assert dependencies, f"no store call under {name}"
    assert ITEM_CONTENT not in path.read_text()
