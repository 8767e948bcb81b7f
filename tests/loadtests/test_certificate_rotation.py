"""Renewing the client certificate the gateway presents, under load: the gateway reloads with the
renewed certificate (same key, as Key Vault renews it) and the apps admit it by its pinned key,
with no failed request and no app restart."""

from __future__ import annotations

import http.client
import shutil
import threading
import time

from loadtests.topology import Topology, TopologyConfig
from tools import certs

TODO = "/api/TodoItem"
WORKERS = 4
BEFORE, AFTER = 200, 400  # requests completed before the renewal, and after the reload


def _load(topology: Topology, results: list, stop: threading.Event) -> None:
    """One client on a kept-alive connection, as a load tool does; every error counts."""
    headers = {"Ocp-Apim-Subscription-Key": topology.config.subscription_key}
    connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=30)
    while not stop.is_set():
        try:
            connection.request("GET", TODO, headers=headers)
            response = connection.getresponse()
            response.read()
            results.append(response.status)
        except OSError as error:  # includes a kept-alive connection closed under the client
            results.append(type(error).__name__)
            connection.close()
    connection.close()


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.05)


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
            _wait_for(lambda: len(results) >= BEFORE, f"{BEFORE} requests before the renewal")
            renewed = certs.renew(own)
            topology.reload_gateway()
            reloaded_at = len(results)
            _wait_for(lambda: len(results) >= reloaded_at + AFTER, f"{AFTER} requests after")
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert topology.presented_serial() == format(renewed.serial_number, "X")
        assert first != topology.presented_serial()
        assert [r.app.pid for r in topology.regions.values()] == app_pids  # no app restart
    failed = [r for r in results if r != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
