"""The `azure` fidelity profile on real processes: API Management's retry rules in the gateway,
Traffic Manager's probes and TTL through the model, App Service's 503 for a dead app, all read
from a synthesized stack. Timings are shrunk by editing a copy of the synthesized stack (which is
also the proof that changing the stack changes the drill)."""

from __future__ import annotations

import http.client
import json
import threading
import uuid

import pytest

from loadtests.fidelity import azure_profile
from tests.waiting import wait_until

TODO = "/api/TodoItem"


def stack_copy(source, tmp_path, *, interval=10, timeout=5, tolerated=1, ttl=10,
               forward_timeout=20, retry_count=1):
    """The synthesized dev stack, with Traffic Manager's and the policy's timings replaced."""
    stack = json.loads(source.read_text())
    [profile] = stack["resource"]["azurerm_traffic_manager_profile"].values()
    profile["monitor_config"].update(interval_in_seconds=interval, timeout_in_seconds=timeout,
                                     tolerated_number_of_failures=tolerated)
    profile["dns_config"]["ttl"] = ttl
    [policy] = stack["resource"]["azurerm_api_management_api_policy"].values()
    xml = policy["xml_content"]
    assert 'timeout="20"' in xml and 'count="1"' in xml
    policy["xml_content"] = xml.replace('timeout="20"', f'timeout="{forward_timeout}"').replace(
        'count="1"', f'count="{retry_count}"')
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(stack))
    return azure_profile(path)


@pytest.fixture
def dev_stack(synthesized_stack_files):
    return synthesized_stack_files[("dev", "single")]


def send(topology, method, path=TODO, keyed=True, body=None, timeout=60):
    """(status, serving site, JSON answer or None) of one call through the gateway."""
    headers = {**topology.caller_headers(), "Content-Type": "application/json"}
    if keyed and method != "GET":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    payload = None if body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=timeout)
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read()
        json_answer = "json" in (response.getheader("Content-Type") or "")
        answer = json.loads(text) if text and json_answer else None
        return response.status, response.getheader("APP-SERVICE-SITE-NAME"), answer
    finally:
        connection.close()


def names(topology) -> list[str]:
    return [item["name"] for item in send(topology, "GET")[2]]


def test_a_dead_app_is_answered_503_and_only_retry_safe_requests_go_to_the_other_region(
        start_topology, dev_stack, tmp_path):
    # The stack's own Traffic Manager timings: it moves nothing for 20 s after the kill.
    topology = start_topology(profile=stack_copy(dev_stack, tmp_path))
    secondary = topology.config.secondary_site
    topology.kill_app("primary")
    # As App Service: the front end answers 503 for its dead app (never a refused connection).
    health = f"/health/{topology.config.health_key}"
    assert topology._probe(topology.regions["primary"], 5) == 503, health
    assert send(topology, "GET")[:2] == (200, secondary)
    created = send(topology, "POST", body={"name": "keyed, after the kill"})
    assert created[:2] == (201, secondary)
    # Without a key the write may have been applied by the first region: no second attempt.
    assert send(topology, "POST", keyed=False, body={"name": "keyless"})[0] == 503
    assert "keyless" not in names(topology)
    assert topology.traffic_manager.applied is True  # Traffic Manager has not moved yet


def test_traffic_manager_moves_keyless_writes_after_its_probes_and_ttl_then_back(
        start_topology, dev_stack, tmp_path):
    topology = start_topology(profile=stack_copy(dev_stack, tmp_path, interval=1, timeout=0.5,
                                                 tolerated=1, ttl=2))
    primary, secondary = topology.config.primary_site, topology.config.secondary_site
    model = topology.traffic_manager
    topology.kill_app("primary")
    wait_until(lambda: send(topology, "POST", keyed=False, body={"name": "n"})[:2]
               == (201, secondary), "a keyless write served by the secondary (Traffic Manager moved)",
               details=lambda: str(model.events))
    kinds = [e["event"] for e in model.events]
    assert kinds[:3] == ["degraded", "dns answer", "gateway follows"], kinds
    answer, follows = model.events[1]["t"], model.events[2]["t"]
    assert follows - answer >= 2  # the TTL: callers keep the old answer that long
    topology.restore_app("primary")
    wait_until(lambda: send(topology, "GET")[1] == primary,
               "reads served by the primary again (failback)", details=lambda: str(model.events))
    assert [e["event"] for e in model.events][3:] == ["online", "dns answer", "gateway follows"]
    assert model.events[-1]["primary"] is True


def test_a_keyed_write_to_a_hung_app_goes_to_the_other_region_after_the_forward_timeout_once(
        start_topology, dev_stack, tmp_path):
    # Traffic Manager never moves here (30 s probes, 9 failures tolerated); the gateway's
    # forward timeout is 2 s.
    topology = start_topology(profile=stack_copy(dev_stack, tmp_path, interval=30, timeout=10,
                                                 tolerated=9, forward_timeout=2))
    secondary = topology.config.secondary_site
    topology.hang_app("primary")
    keyed = send(topology, "POST", body={"name": "keyed, to a hung app"})
    assert keyed[:2] == (201, secondary)
    keyless = send(topology, "POST", keyed=False, body={"name": "keyless, to a hung app"})
    assert keyless[0] == 504 and "may have been applied" in keyless[2]["detail"]
    topology.restore_app("primary")
    # The primary now serves both requests it held: the keyed one finds its key completed by
    # the secondary and replays; the keyless one is applied (its caller was told it may be).
    app_log = topology.regions["primary"].app.log
    wait_until(lambda: app_log.read_text().count('"POST /api/TodoItem HTTP/1.1" 201') == 2,
               "the primary answered both POSTs it held", details=lambda: app_log.read_text())
    listed = names(topology)
    assert listed.count("keyed, to a hung app") == 1
    assert listed.count("keyless, to a hung app") == 1


def test_the_gateway_follows_the_stacks_retry_count_and_statuses(start_topology, dev_stack,
                                                                 tmp_path):
    topology = start_topology(profile=stack_copy(dev_stack, tmp_path, retry_count=2))
    config = (topology.workdir / "gateway.cfg").read_text()
    assert "    retries 2\n" in config
    assert "retry-on conn-failure response-timeout 502 503\n" in config  # retry-safe requests
    assert "retry-on conn-failure\n" in config  # keyless writes: only when never arrived


def test_a_kill_waits_for_a_request_in_flight_and_says_how_many_it_cut(start_topology):
    topology = start_topology()
    assert topology.kill_app("primary", mid_request_within=0.2)["app_serving"] == 0  # idle
    topology.restore_app("primary")
    stop = threading.Event()

    def load():
        while not stop.is_set():
            send(topology, "GET")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        killed = topology.kill_app("primary", mid_request_within=30)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert killed["app_serving"] >= 1


def test_topology_up_in_the_azure_profile_without_a_synthesized_stack_is_a_one_line_error(
        tmp_path):
    import subprocess
    import sys

    from loadtests.topology import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "loadtests.topology", "up", "--profile", "azure",
         "--stacks", str(tmp_path), "--workdir", str(tmp_path / "w")],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot read" in result.stderr
    assert "todo-api-dev/cdk.tf.json" in result.stderr and "Traceback" not in result.stderr
