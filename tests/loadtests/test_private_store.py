"""The private data plane, locally (loadtests/private_network.py; docs/loadtests.md, "Private data
plane, locally"): Azurite answers only inside the app's network namespace (the VNet), the app
listens on the namespace's veth address; this process, in the host namespace, is the load
generator. It reaches the items through the app and the store on no address at all.

Real processes: Azurite (npm) and app/startup.sh in a namespace of their own. Skipped, with the
reason, only where network namespaces cannot be made (not root, no CAP_NET_ADMIN, no `ip`).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableClient

from app.contract import SITE_NAME_HEADER, TODO_PATH
from loadtests.item_sources import TableItems
from loadtests.private_network import (
    NAMESPACES,
    NamespacesUnavailable,
    PrivateDataPlane,
    PrivateNetwork,
    http_status,
)
from loadtests.processes import HOST, TopologyError, group_alive
from loadtests.topology import PRIMARY_SITE
from tests.waiting import wait_until

# The store's one answer to a caller in the VNet: a listing of its tables.
TABLES_PATH = "/todoapi/Tables"


@pytest.fixture(scope="module")
def plane(certs_dir, tmp_path_factory):
    try:
        running = PrivateDataPlane.start(certs_dir, tmp_path_factory.mktemp("private-store"))
    except NamespacesUnavailable as error:
        pytest.skip(str(error))
    yield running
    running.stop()


def network_or_skip() -> PrivateNetwork:
    network = PrivateNetwork()
    try:
        network.create()
    except NamespacesUnavailable as error:
        pytest.skip(str(error))
    return network


def send(plane: PrivateDataPlane, method: str, path: str, body: dict | None = None):
    """(status, site name, JSON body) of a call from the load generator's namespace."""
    connection = http.client.HTTPConnection(plane.network.vnet_address, plane.app_port, timeout=10)
    headers = {**plane.front_end_headers(), "Content-Type": "application/json"}
    try:
        connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, response.getheader(SITE_NAME_HEADER), json.loads(data or "null")
    finally:
        connection.close()


def every_address(plane: PrivateDataPlane) -> list[str]:
    """Where the load generator could look for the store: the VNet's veth address, its own end
    of the pair and its own loopback."""
    return [plane.network.vnet_address, plane.network.host_address, HOST]


def http_answer(address: str, port: int) -> str:
    """What an HTTP client gets for GET TABLES_PATH: the status, or the error's class."""
    try:
        return str(httpx.get(f"http://{address}:{port}{TABLES_PATH}", timeout=2).status_code)
    except httpx.HTTPError as error:
        return type(error).__name__


def network_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def processes_in(namespace: str) -> list[int]:
    """Every process whose network namespace is `namespace` (`net:[inode]`)."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if network_namespace(pid) == namespace]


def test_the_load_generator_creates_and_reads_items_through_the_app(plane):
    status, site, created = send(plane, "POST", TODO_PATH, {"name": "through the VNet"})
    assert (status, site) == (201, PRIMARY_SITE)
    status, _, read = send(plane, "GET", f"{TODO_PATH}/{created['id']}")
    assert (status, read) == (200, created)


def test_the_items_the_app_writes_are_in_the_private_store(plane):
    _, _, created = send(plane, "POST", TODO_PATH, {"name": "stored privately"})
    table = TableItems(plane.store.connection_string, plane.config.table_name)
    stored = {item.id: item.name for item in plane.network.inside(table.read)}
    assert stored[created["id"]] == "stored privately"


def test_inside_the_vnet_the_store_answers(plane):
    # What makes the refusals below mean something: the store runs and answers, in the VNet
    # (403 is Azurite's answer to a call without the account key; with it, the table lists).
    assert plane.network.inside(lambda: http_answer(HOST, plane.store_port)) == "403"
    assert plane.network.inside(lambda: read_table(plane)) == "read"


def read_table(plane: PrivateDataPlane) -> str:
    """Read the table with the app's own connection string: "read", or the error, one line."""
    with TableClient.from_connection_string(
        plane.store.connection_string, plane.config.table_name, connection_timeout=2, retry_total=0
    ) as table:
        try:
            next(iter(table.list_entities()), None)
        except ServiceRequestError as error:
            return f"{type(error).__name__}: {error.message.splitlines()[0]}"
    return "read"


def test_an_http_client_in_the_load_generator_s_namespace_reaches_the_store_on_no_address(plane):
    answers = {address: http_answer(address, plane.store_port) for address in every_address(plane)}
    assert answers == dict.fromkeys(every_address(plane), "ConnectError")


def test_even_the_app_s_own_connection_string_reaches_nothing_from_the_load_generator(plane):
    # The account key is no way in: the store is not on the load generator's network.
    assert "Connection refused" in read_table(plane)


def namespace_of(network: PrivateNetwork) -> str:
    """The network's namespace as /proc/<pid>/ns/net of its processes reads: `net:[inode]`."""
    return f"net:[{(NAMESPACES / network.name).stat().st_ino}]"


def assert_nothing_left(network: PrivateNetwork, namespace: str, groups: list[int]) -> None:
    assert [group for group in groups if group_alive(group)] == []
    assert processes_in(namespace) == []
    assert not (NAMESPACES / network.name).exists()
    assert not Path("/sys/class/net", network.host_interface).exists()  # the veth pair


def test_leaving_the_data_plane_on_an_exception_leaves_no_namespace_veth_or_process(
    certs_dir, tmp_path
):
    try:
        plane = PrivateDataPlane.start(certs_dir, tmp_path)
    except NamespacesUnavailable as error:
        pytest.skip(str(error))
    namespace = namespace_of(plane.network)
    groups = [plane.store.process.pid, plane.app.pid]  # each leads its process group
    assert sorted(processes_in(namespace)) == sorted(plane.network.pids())
    assert set(groups) <= set(processes_in(namespace))
    with pytest.raises(RuntimeError, match="planted"), plane:
        raise RuntimeError("planted")
    assert_nothing_left(plane.network, namespace, groups)


def test_the_removal_also_stops_processes_nobody_tracked(tmp_path):
    network = network_or_skip()
    namespace = namespace_of(network)
    with network:
        # The namespace is new: any port is free in it.
        server = network.run_in(
            "http.server",
            [sys.executable, "-m", "http.server", "8000", "--bind", network.vnet_address],
            tmp_path / "server.log",
        )
        wait_until(
            lambda: http_status(network.vnet_address, 8000, "/") == 200,
            "the server in the namespace answered the host",
            give_up=lambda: None if server.alive() else "the server exited",
        )
        # Started by code running inside the VNet, in a group of its own, tracked by nobody.
        untracked = network.inside(
            lambda: subprocess.Popen(["sleep", "600"], start_new_session=True)
        )
        assert sorted(processes_in(namespace)) == sorted([server.pid, untracked.pid])
    assert untracked.poll() is not None
    assert_nothing_left(network, namespace, [server.pid, untracked.pid])


def test_without_ip_it_is_a_one_line_error_and_nothing_is_made(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    network = PrivateNetwork()
    with pytest.raises(NamespacesUnavailable) as raised:
        network.create()
    assert str(raised.value) == "network namespaces: `ip` (iproute2) is not on PATH"
    assert not (NAMESPACES / network.name).exists()


def test_a_failure_while_wiring_removes_the_namespace(monkeypatch):
    network_or_skip().remove()  # namespaces can be made here

    def no_subnet():
        raise TopologyError("private network: no free /30 left in 10.217.0.0/16")

    monkeypatch.setattr("loadtests.private_network.free_subnet", no_subnet)
    network = PrivateNetwork()
    with pytest.raises(TopologyError, match="no free /30 left"):
        network.create()
    assert not (NAMESPACES / network.name).exists()


def test_a_namespace_left_by_a_killed_run_is_deleted_by_the_next():
    network_or_skip().remove()  # namespaces can be made here
    creator = subprocess.Popen(["true"])  # a run that no longer exists
    creator.wait()
    abandoned = f"todo-vnet-{creator.pid}-000000"
    subprocess.run(["ip", "netns", "add", abandoned], check=True)
    try:
        with PrivateNetwork():
            assert not (NAMESPACES / abandoned).exists()
    finally:
        subprocess.run(["ip", "netns", "del", abandoned], check=False, capture_output=True)
