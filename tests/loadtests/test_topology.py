"""The local two-region stand-in: real apps behind real HAProxy front ends and gateway."""

from __future__ import annotations

import base64
import json
import shutil
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from loadtests.processes import TopologyError, group_alive
from loadtests.topology import Topology, TopologyConfig
from tests.loadtests.conftest import call, tls_context, topology_cli_up
from tests.waiting import wait_until

TODO = "/api/TodoItem"
KEY_HEADER = "Ocp-Apim-Subscription-Key"


def key(topology) -> dict[str, str]:
    """A caller's headers: the subscription key and a bearer token of the topology's issuer."""
    return topology.caller_headers()


def test_gateway_refuses_a_request_without_subscription_key_with_401(topology):
    assert call(topology.gateway_url, TODO)[0] == 401


def test_gateway_refuses_a_wrong_subscription_key_with_401(topology):
    assert call(topology.gateway_url, TODO, {KEY_HEADER: "0" * 32})[0] == 401


def test_gateway_serves_from_the_primary_region(topology):
    assert call(topology.gateway_url, TODO, key(topology)) == (200, topology.config.primary_site)


def test_front_end_refuses_a_call_without_client_certificate_with_403(topology, certs_dir):
    context = tls_context(certs_dir, with_client_cert=False)
    assert call(topology.frontend_url("primary"), TODO, context=context)[0] == 403


def test_front_end_admits_a_call_with_the_client_certificate(topology, certs_dir):
    context = tls_context(certs_dir, with_client_cert=True)
    bearer = {"Authorization": f"Bearer {topology.token()}"}
    status, site = call(topology.frontend_url("secondary"), TODO, bearer, context=context)
    assert (status, site) == (200, topology.config.secondary_site)


def test_forged_client_cert_header_without_a_tls_certificate_is_not_trusted(topology, certs_dir):
    pem = (certs_dir / "client.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    forged = {"X-ARR-ClientCert": base64.b64encode(der).decode()}
    context = tls_context(certs_dir, with_client_cert=False)
    assert call(topology.frontend_url("primary"), TODO, forged, context)[0] == 403


def test_health_path_needs_no_client_certificate(topology, certs_dir):
    context = tls_context(certs_dir, with_client_cert=False)
    path = f"/health/{topology.config.health_key}"
    assert call(topology.frontend_url("primary"), path, context=context)[0] == 200


def test_after_sigkill_of_the_primary_app_requests_succeed_from_the_secondary(start_topology):
    topology = start_topology()
    topology.kill_app("primary")
    results = [call(topology.gateway_url, TODO, key(topology)) for _ in range(20)]
    assert results == [(200, topology.config.secondary_site)] * 20


def test_after_sigkill_of_the_primary_app_a_keyed_post_is_created_on_the_secondary(
        start_topology):
    import http.client

    topology = start_topology()
    # kill_app returns once no worker of the app runs. The primary's front end then refuses the
    # connection or, until its own check notices, answers 503: a keyed write is sent again
    # after either (a keyless one only after the first: docs/loadtests.md).
    topology.kill_app("primary")
    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=10)
    headers = {**key(topology), "Content-Type": "application/json",
               "Idempotency-Key": "after-the-fault"}
    connection.request("POST", TODO, body=b'{"name": "after the fault"}', headers=headers)
    response = connection.getresponse()
    connection.close()
    result = (response.status, response.getheader("APP-SERVICE-SITE-NAME"))
    assert result == (201, topology.config.secondary_site), topology.gateway.log.read_text()


def test_after_the_primary_is_restored_traffic_fails_back(start_topology):
    topology = start_topology()
    topology.kill_app("primary")
    call(topology.gateway_url, TODO, key(topology))
    topology.restore_app("primary")
    wait_until(
        lambda: topology.serving_site() == topology.config.primary_site,
        "the gateway serves from the restored primary",
        details=topology.gateway.log.read_text,
    )
    result = call(topology.gateway_url, TODO, key(topology))
    assert result == (200, topology.config.primary_site), topology.gateway.log.read_text()


def test_stopping_leaves_no_process_running(start_topology):
    topology = start_topology()
    groups = [process.pid for process in topology.processes]
    assert len(groups) == 7 and all(group_alive(g) for g in groups)  # the issuer too
    topology.stop()
    assert [g for g in groups if group_alive(g)] == []


def test_a_taken_gateway_port_is_named_and_nothing_is_started(start_topology):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            TopologyError, match=f"gateway: port 127.0.0.1:{port} is already in use"
        ):
            start_topology(gateway_port=port)


def test_an_app_dying_at_start_is_named(certs_dir, tmp_path):
    broken = tmp_path / "certs"
    shutil.copytree(certs_dir, broken)
    summary = json.loads((broken / "client.json").read_text())
    (broken / "client.json").write_text(json.dumps({**summary, "sha256": "not-a-thumbprint"}))
    config = TopologyConfig(certs_dir=broken, workdir=tmp_path / "topology")
    with pytest.raises(TopologyError, match=r"primary app \(todo-api-australiaeast\) exited"):
        Topology.start(config)


def test_a_failed_start_stops_what_it_had_started(certs_dir, tmp_path):
    started: list[int] = []

    class GatewayFailing(Topology):
        def _start_gateway(self) -> None:
            started.extend(process.pid for process in self.processes)
            raise TopologyError("gateway: failed on purpose")

    config = TopologyConfig(certs_dir=certs_dir, workdir=tmp_path / "topology")
    with pytest.raises(TopologyError, match="gateway: failed on purpose"):
        GatewayFailing.start(config)
    assert len(started) == 6  # Azurite, the issuer, two apps, two front ends
    assert [g for g in started if group_alive(g)] == []


def test_topology_cli_up_then_down_stops_everything(certs_dir, tmp_path):
    import subprocess
    import sys

    from loadtests.topology import ROOT, read_state

    workdir = tmp_path / "cli"
    with topology_cli_up(certs_dir, workdir) as up:
        groups = list(read_state(workdir)["process_groups"].values())
        down = subprocess.run(
            [sys.executable, "-m", "loadtests.topology", "down", "--workdir", str(workdir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=30) == 0
    assert "stopped: nothing left running" in up.stdout.read()
    assert [g for g in groups if group_alive(g)] == []


def test_gateway_publishes_only_the_openapi_operations(topology):
    headers = key(topology)
    health = f"/health/{topology.config.health_key}"
    for path in (health, "/swagger/v1/swagger.json", "/", "/api/TodoItem/a/b"):
        assert call(topology.gateway_url, path, headers) == (404, None), path
    assert call(topology.gateway_url, "/api/todoitem", headers) == (
        200,
        topology.config.primary_site,
    )


def test_gateway_refuses_a_method_the_openapi_does_not_list(topology):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=10)
    try:
        connection.request("PATCH", TODO, body=b"{}", headers=key(topology))
        response = connection.getresponse()
        assert (response.status, response.getheader("APP-SERVICE-SITE-NAME")) == (404, None)
    finally:
        connection.close()


def test_published_operations_follow_the_openapi_document():
    from loadtests.topology import published_operations

    openapi = {
        "paths": {
            "/api/TodoItem": {"get": {}, "post": {}},
            "/api/TodoItem/{id}": {"get": {}, "delete": {}, "parameters": []},
        }
    }
    assert published_operations(openapi) == (
        "{ path_reg -i ^/api/TodoItem$ } { method GET POST } || "
        "{ path_reg -i ^/api/TodoItem/[^/]+$ } { method GET DELETE }"
    )


def post(url: str, name: str, headers: dict, context=None) -> tuple[int, dict, str | None]:
    import http.client

    host, port = url.partition("://")[2].split(":")
    if context is None:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    headers = {**headers, "Content-Type": "application/json"}
    try:
        connection.request("POST", TODO, body=json.dumps({"name": name}), headers=headers)
        response = connection.getresponse()
        site = response.getheader("APP-SERVICE-SITE-NAME")
        return response.status, json.loads(response.read()), site
    finally:
        connection.close()


def test_an_item_created_in_the_primary_is_read_through_the_secondary(start_topology, certs_dir):
    topology = start_topology()
    context = tls_context(certs_dir, with_client_cert=True)
    bearer = {"Authorization": f"Bearer {topology.token()}"}
    status, item, site = post(topology.frontend_url("primary"), "survives", bearer, context)
    assert (status, site) == (201, topology.config.primary_site)
    topology.kill_app("primary")
    # The gateway can reach only the secondary now; it reads what the primary wrote.
    path = f"{TODO}/{item['id']}"
    assert call(topology.gateway_url, path, key(topology)) == (
        200,
        topology.config.secondary_site,
    )


def test_with_the_store_stopped_the_gateway_answers_503_and_nothing_is_lost(start_topology):
    import http.client

    topology = start_topology()
    status, item, _ = post(topology.gateway_url, "written before the outage", key(topology))
    assert status == 201
    topology.stop_store()
    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=10)
    try:
        connection.request("GET", TODO, headers=key(topology))
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 503
    assert response.getheader("Content-Type") == "application/problem+json"
    assert int(response.getheader("Retry-After")) >= 1, body
    topology.restore_store()
    assert call(topology.gateway_url, f"{TODO}/{item['id']}", key(topology))[0] == 200


def request(url: str, method: str, path: str, headers: dict, body: bytes | None = None):
    """(status, APP-SERVICE-SITE-NAME, body) with a client timeout above the gateway's own
    (timeout server 10 s, then one retry), so the caller sees what the gateway decided."""
    import http.client

    host, port = url.partition("://")[2].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("APP-SERVICE-SITE-NAME"), response.read()
    finally:
        connection.close()


def test_while_the_primary_app_hangs_reads_succeed_from_the_secondary(start_topology):
    topology = start_topology()
    topology.hang_app("primary")
    # The first read may reach the hung app: it waits for the gateway's timeout and is retried.
    results = [request(topology.gateway_url, "GET", TODO, key(topology))[:2] for _ in range(5)]
    assert results == [(200, topology.config.secondary_site)] * 5


def test_a_hung_primary_is_taken_out_of_rotation_by_the_health_check(start_topology):
    topology = start_topology()
    topology.hang_app("primary")
    wait_until(
        lambda: topology.serving_site() == topology.config.secondary_site,
        "the gateway serves from the secondary while the primary hangs",
        details=topology.gateway.log.read_text,
    )
    status, site, _ = request(topology.gateway_url, "GET", TODO, key(topology))
    assert (status, site) == (200, topology.config.secondary_site)


def test_a_post_in_flight_to_a_hung_primary_gets_a_504_and_is_never_duplicated(start_topology):
    # Health checks slowed to one a minute, so the POST surely reaches the hung primary (with
    # the default 250 ms checks the gateway takes it out of rotation within about 3.25 s).
    topology = start_topology(check_interval_ms=60_000)
    topology.hang_app("primary")
    name = "sent while the primary hangs"
    headers = {**key(topology), "Content-Type": "application/json"}
    body = json.dumps({"name": name}).encode()
    status, _, answer = request(topology.gateway_url, "POST", TODO, headers, body)
    assert status == 504
    assert "may have been applied" in json.loads(answer)["detail"]
    topology.restore_app("primary")

    def names() -> list[str]:
        _, _, listed = request(topology.gateway_url, "GET", TODO, key(topology))
        return [item["name"] for item in json.loads(listed)]

    # The primary applies the request it held once it runs again; the gateway never resent it.
    # Waited for: the primary's answer to it (its access log), not the item's first sight,
    # after which a resent copy could still be on its way.
    app_log = topology.regions["primary"].app.log
    wait_until(
        lambda: '"POST /api/TodoItem HTTP/1.1" 201' in app_log.read_text(),
        "the primary answered the POST it held",
        details=lambda: app_log.read_text()[-2000:],
    )
    assert names().count(name) == 1


def _body_of(size: int) -> bytes:
    """A valid create request of exactly `size` bytes (JSON whitespace pads it)."""
    head, tail = b'{"name": "at the limit"', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_a_body_at_the_limit_is_created_through_the_gateway(topology):
    from app.contract import MAX_BODY_BYTES

    headers = {**key(topology), "Content-Type": "application/json"}
    status, site, _ = request(topology.gateway_url, "POST", TODO, headers, _body_of(MAX_BODY_BYTES))
    assert (status, site) == (201, topology.config.primary_site)


def test_a_body_over_the_limit_gets_a_clear_413_from_the_gateway(topology):
    from app.contract import MAX_BODY_BYTES

    headers = {**key(topology), "Content-Type": "application/json"}
    status, site, body = request(
        topology.gateway_url, "POST", TODO, headers, _body_of(MAX_BODY_BYTES + 1)
    )
    assert (status, site) == (413, None)  # refused before any region, as by the APIM policy
    assert json.loads(body)["detail"] == f"The request body must be at most {MAX_BODY_BYTES} bytes."


def test_a_chunked_body_over_the_limit_gets_413_from_the_app(topology):
    from app.contract import MAX_BODY_BYTES

    headers = {**key(topology), "Content-Type": "application/json"}
    oversized = iter([_body_of(MAX_BODY_BYTES + 1)])  # an iterable: sent chunked
    status, site, body = request(topology.gateway_url, "POST", TODO, headers, oversized)
    assert (status, site) == (413, topology.config.primary_site)
    assert json.loads(body)["detail"] == f"The request body must be at most {MAX_BODY_BYTES} bytes."

