"""Renewing the client certificate the gateway presents, under load: the gateway reloads with the
renewed certificate (same key, as Key Vault renews it) and the apps admit it by its pinned key,
with no failed request and no app restart."""

from __future__ import annotations

import http.client
import shutil
import threading

from loadtests.token_issuer import IssuerConfig
from loadtests.topology import Topology, TopologyConfig
from tests.waiting import wait_until
from tools.development import certs

TODO = "/api/TodoItem"
WORKERS = 4
BEFORE, AFTER = 200, 400  # requests completed before the renewal, and after the reload


def _load(topology: Topology, results: list, stop: threading.Event) -> None:
    """One client on a kept-alive connection, as a load tool does; every error counts."""
    headers = topology.caller_headers()  # one token for the whole run (it lasts an hour)
    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=30)
    while not stop.is_set():
        try:
            connection.request("GET", TODO, headers=headers)
            response = connection.getresponse()
            response.read()
            results.append(response.status)
        # OSError includes a kept-alive connection closed under the client; HTTPException a
        # malformed or cut answer (it would otherwise end this client unseen)
        except (OSError, http.client.HTTPException) as error:
            results.append(type(error).__name__)
            connection.close()
    connection.close()


def test_renewing_the_client_certificate_under_load_fails_no_request(certs_dir, tmp_path):
    own = tmp_path / "certs"
    shutil.copytree(certs_dir, own)
    with Topology.start(TopologyConfig(certs_dir=own, workdir=tmp_path / "topology")) as topology:
        app_pids = [r.app.pid for r in topology.regions.values()]
        first = topology.presented_serial()
        results: list = []
        stop = threading.Event()
        clients = [
            threading.Thread(target=_load, args=(topology, results, stop)) for _ in range(WORKERS)
        ]
        for client in clients:
            client.start()
        try:
            wait_until(lambda: len(results) >= BEFORE, f"{BEFORE} requests before the renewal")
            renewed = certs.renew(own)
            topology.reload_gateway()
            reloaded_at = len(results)
            wait_until(
                lambda: len(results) >= reloaded_at + AFTER, f"{AFTER} requests after the reload"
            )
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert topology.presented_serial() == format(renewed.serial_number, "X")
        assert first != topology.presented_serial()
        assert [r.app.pid for r in topology.regions.values()] == app_pids  # no app restart
    failed = [r for r in results if r != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"


def test_the_documented_commands_renew_and_reload_a_running_topology(certs_dir, tmp_path):
    """`python -m tools.development.certs renew` then `python -m loadtests.topology reload-gateway`."""
    import subprocess
    import sys

    from loadtests.topology import ROOT, read_state
    from tests.loadtests.conftest import call, topology_cli_up

    own, workdir = tmp_path / "certs", tmp_path / "cli"
    shutil.copytree(certs_dir, own)

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
        )

    with topology_cli_up(own, workdir) as up:
        state = read_state(workdir)
        renew = run("tools.development.certs", "renew", "--out", str(own))
        assert renew.returncode == 0, renew.stderr
        reload = run("loadtests.topology", "reload-gateway", "--workdir", str(workdir))
        assert reload.returncode == 0, reload.stderr
        serial = format(certs.load_certificate(own / "client.pem").serial_number, "X")
        probe = Topology(TopologyConfig(certs_dir=own, workdir=workdir))
        probe.gateway_port = int(state["gateway_url"].rsplit(":", 1)[1])
        probe.config.subscription_key = state["subscription_key"]
        probe.attach_issuer(IssuerConfig.read(state["auth"]["config"]))
        wait_until(
            lambda: probe.presented_serial() == serial,
            "the gateway presents the renewed certificate",
            details=lambda: (workdir / "gateway.log").read_text(errors="replace"),
        )
        assert call(state["gateway_url"], TODO, probe.caller_headers())[0] == 200
        assert run("loadtests.topology", "down", "--workdir", str(workdir)).returncode == 0
        assert up.wait(timeout=30) == 0
    assert "gateway reloaded" in up.stdout.read()
