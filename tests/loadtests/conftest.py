"""The local topology for the load-test tests: real apps (app/startup.sh), real HAProxy, a
certificate set generated per session into a tmp dir. Started once per session; the
destructive tests start their own."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.processes import signal_group
from loadtests.topology import ROOT, STATE_FILE, Topology, TopologyConfig
from tests.waiting import wait_until
from tools.development import certs

CLI_STOP_SECONDS = 30


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    certs.generate(directory)
    return directory


@pytest.fixture(scope="session")
def topology(certs_dir, tmp_path_factory):
    config = TopologyConfig(certs_dir=certs_dir, workdir=tmp_path_factory.mktemp("topology"))
    with Topology.start(config) as running:
        yield running


@pytest.fixture
def start_topology(certs_dir, tmp_path):
    """Start a topology of the test's own (stopped at the end of the test)."""
    started: list[Topology] = []

    def start(**options) -> Topology:
        config = TopologyConfig(certs_dir=certs_dir, workdir=tmp_path / "topology", **options)
        started.append(Topology.start(config))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def tls_context(certs_dir: Path, with_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.pem"))
    if with_client_cert:
        context.load_cert_chain(certs_dir / "client.pem", certs_dir / "client.key")
    return context


def call(url: str, path: str, headers: dict | None = None, context=None):
    """(status, APP-SERVICE-SITE-NAME) of a GET."""
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.partition(":")
    if scheme == "https":
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("APP-SERVICE-SITE-NAME")
    finally:
        connection.close()


@contextlib.contextmanager
def topology_cli_up(certs_dir: Path, workdir: Path) -> Iterator[subprocess.Popen]:
    """`python -m loadtests.topology up` as a subprocess (stdout piped), yielded once it has
    written its state; on every path, it and every process it started are stopped."""
    up = subprocess.Popen(
        [sys.executable, "-m", "loadtests.topology", "up", "--certs", str(certs_dir)]
        + ["--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            (workdir / STATE_FILE).exists,
            "`topology up` wrote its state (the topology is up)",
            give_up=lambda: None if up.poll() is None else f"up exited with {up.returncode}",
        )
        yield up
    finally:
        _stop_cli_topology(up, workdir)


def _stop_cli_topology(up: subprocess.Popen, workdir: Path) -> None:
    """SIGTERM `up` (it stops its topology), SIGKILL it if it lingers; then SIGKILL any group
    its state still lists (an owner killed before it stopped them: they run in sessions of
    their own, so killing the owner leaves them)."""
    if up.poll() is None:
        up.terminate()
        try:
            up.wait(CLI_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    with contextlib.suppress(OSError, ValueError):
        for group in json.loads((workdir / STATE_FILE).read_text())["process_groups"].values():
            signal_group(group, signal.SIGKILL)
