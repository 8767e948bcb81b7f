"""The local topology for the load-test tests: real apps (app/startup.sh), real HAProxy, a
certificate set generated per session into a tmp dir. Started once per session; the
destructive tests start their own."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

import pytest

from loadtests.topology import Topology, TopologyConfig
from tools import certs


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
