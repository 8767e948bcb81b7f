"""The private data plane, locally (issue 17): the store reachable from the app's network only.

On Azure (docs/deploy.md, "Private data plane") each region's web app reaches the Cosmos DB
account through a private endpoint in the region's VNet, and the account's public access is
off: the app reaches the store, a load generator on the internet does not. Locally:

    VNet               a network namespace of its own (`ip netns`), no route out
    private endpoint   Azurite on the namespace's own 127.0.0.1: only processes in the
                       namespace can connect to it
    app's inbound      the app (app/startup.sh) on the namespace's end of a veth pair, a /30
                       from 10.217.0.0/16; the host (the load generator's namespace) has the
                       other end and reaches the app, never the store

    with PrivateDataPlane.start(certs_dir, workdir) as plane:
        plane.app_url                  # from this process: through the app, items work
        plane.store_port               # from this process: refused on every address
        plane.network.inside(action)   # run `action` in this process, but in the VNet

`PrivateNetwork` alone is the namespace and its veth pair: `run_in` starts a process inside
(`ip netns exec`), `inside` runs Python code of this process inside (a thread that joined the
namespace: the sockets it opens and the processes it starts belong to it). Leaving it stops
every process in the namespace (those it tracks by process group, then any other), deletes the
veth pair and the namespace, on an exception too. Namespaces left by a killed run (its creator
pid is in the name) are deleted by the next one. Where namespaces cannot be made (no `ip`, not
root or without CAP_NET_ADMIN / CAP_SYS_ADMIN) it raises NamespacesUnavailable, one line.
"""

from __future__ import annotations

import base64
import ctypes
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.contract import AUTH_NONE, CLIENT_CERT_HEADER, PRODUCTION_SLOT
from loadtests.azurite import Azurite
from loadtests.processes import (
    POLL_SECONDS,
    STOP_TIMEOUT_SECONDS,
    ManagedProcess,
    TopologyError,
    free_ports,
)
from loadtests.topology import PRIMARY_SITE, ROOT, TopologyConfig, app_environment

T = TypeVar("T")

IP = "ip"
NAMESPACE_PREFIX = "todo-vnet-"
NAMESPACES = Path("/run/netns")  # where `ip netns add` keeps a namespace (a bind mount)
# The /30s of the veth pairs come from here (RFC 1918), one not overlapping any address or route
# of the host; the search starts at a block chosen by pid, so concurrent runs rarely meet.
ADDRESS_POOL = ipaddress.ip_network("10.217.0.0/16")
CLONE_NEWNET = 0x40000000  # <sched.h>; os.setns and os.CLONE_NEWNET exist from Python 3.12
HTTP_TIMEOUT_SECONDS = 2.0


class NamespacesUnavailable(TopologyError):
    """Network namespaces cannot be made here (the message is one line, saying why)."""


class Stoppable(Protocol):
    def stop(self) -> object: ...


def _ip(*args: str) -> str:
    """Run `ip args...`; its output, or TopologyError with the command and ip's first line."""
    done = subprocess.run([IP, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise TopologyError(f"`ip {' '.join(args)}`: {said.splitlines()[0]}")
    return done.stdout


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 networks: of its addresses and of its routes (a VPN's 10/8, say)."""
    taken = []
    for link in json.loads(_ip("-j", "addr", "show") or "[]"):
        for address in link.get("addr_info", []):
            if address.get("family") == "inet":
                interface = ipaddress.ip_interface(f"{address['local']}/{address['prefixlen']}")
                taken.append(interface.network)
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        destination = route.get("dst", "default")
        if destination != "default" and ":" not in destination:
            taken.append(ipaddress.ip_network(destination, strict=False))
    return taken


def free_subnet() -> ipaddress.IPv4Network:
    """A /30 of ADDRESS_POOL that overlaps none of the host's networks."""
    taken = _taken_networks()
    blocks = ADDRESS_POOL.num_addresses // 4
    first = os.getpid() % blocks
    for step in range(blocks):
        start = int(ADDRESS_POOL.network_address) + 4 * ((first + step) % blocks)
        candidate = ipaddress.ip_network((start, 30))
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise TopologyError(f"private network: no free /30 left in {ADDRESS_POOL}")


def _join_namespace(path: Path) -> None:
    """Move the calling thread (only it) into the network namespace at `path`."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(descriptor, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(descriptor)


def remove_abandoned_namespaces() -> list[str]:
    """Delete the namespaces of runs that no longer exist (killed before they could clean up):
    ours by name, their creator gone, no process left in them. Their veth pairs go with them."""
    removed = []
    for path in NAMESPACES.glob(f"{NAMESPACE_PREFIX}*"):
        creator = path.name.removeprefix(NAMESPACE_PREFIX).split("-")[0]
        if not creator.isdigit() or psutil.pid_exists(int(creator)):
            continue
        if _ip("netns", "pids", path.name).split():
            continue
        _ip("netns", "del", path.name)
        removed.append(path.name)
    return removed


class PrivateNetwork:
    """A network namespace (the VNet) with its loopback up and a veth pair to the host: the
    namespace's end `vnet_address`, the host's `host_address` (a /30 of ADDRESS_POOL)."""

    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.name = f"{NAMESPACE_PREFIX}{os.getpid()}-{token}"
        self.host_interface = f"tv{token}h"  # interface names: 15 characters at most
        self.vnet_interface = f"tv{token}v"
        self.subnet: ipaddress.IPv4Network | None = None
        self.tracked: list[Stoppable] = []
        self.created = False

    def __enter__(self) -> Self:
        if not self.created:
            self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def path(self) -> Path:
        return NAMESPACES / self.name

    @property
    def host_address(self) -> str:
        assert self.subnet is not None, "create() first"
        return str(self.subnet[1])

    @property
    def vnet_address(self) -> str:
        assert self.subnet is not None, "create() first"
        return str(self.subnet[2])

    def create(self) -> None:
        if shutil.which(IP) is None:
            raise NamespacesUnavailable("network namespaces: `ip` (iproute2) is not on PATH")
        try:
            _ip("netns", "add", self.name)
        except TopologyError as error:
            raise NamespacesUnavailable(
                f"network namespaces are unavailable here: {error}"
            ) from None
        self.created = True
        try:
            remove_abandoned_namespaces()
            self._wire()
        except BaseException:
            self.remove()
            raise

    def _wire(self) -> None:
        self.subnet = free_subnet()
        prefix = f"/{self.subnet.prefixlen}"
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            self.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            self.vnet_interface,
            "netns",
            self.name,
        )
        _ip("addr", "add", self.host_address + prefix, "dev", self.host_interface)
        _ip("link", "set", self.host_interface, "up")
        _ip("-n", self.name, "addr", "add", self.vnet_address + prefix, "dev", self.vnet_interface)
        _ip("-n", self.name, "link", "set", self.vnet_interface, "up")

    def run_in(
        self,
        name: str,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start `argv` inside the namespace (`ip netns exec` execs it: same pid, its own
        process group); stopped with the group when the network is removed."""
        process = ManagedProcess(
            f"{name} (in {self.name})",
            [IP, "netns", "exec", self.name, *argv],
            log,
            env,
            stop_signal=stop_signal,
            cwd=cwd,
        )
        self.tracked.append(process)
        process.start()
        return process

    def track(self, stoppable: Stoppable) -> None:
        """Stop `stoppable` (first of all, the last tracked first) when the network is removed."""
        self.tracked.append(stoppable)

    def inside(self, action: Callable[[], T]) -> T:
        """`action()`'s result, run in a thread of this process that joined the namespace: the
        sockets it opens and the processes it starts are in the VNet. Its exception is raised."""
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                _join_namespace(self.path)
                outcome["value"] = action()
            except BaseException as error:  # noqa: BLE001 - raised again in the caller
                outcome["error"] = error

        thread = threading.Thread(target=run, name=f"inside {self.name}")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    def pids(self) -> list[int]:
        """Every process in the namespace now."""
        return [int(pid) for pid in _ip("netns", "pids", self.name).split()]

    def remove(self) -> None:
        """Stop every process in the namespace, delete the veth pair and the namespace. Tries
        every step; raises the first failure after that."""
        if not self.created:
            return
        errors: list[TopologyError] = []
        for stoppable in reversed(self.tracked):
            try:
                stoppable.stop()
            except TopologyError as error:
                errors.append(error)
        self.tracked.clear()
        for step in (self._kill_the_rest, self._delete_veth, self._delete_namespace):
            try:
                step()
            except TopologyError as error:
                errors.append(error)
        self.created = False
        if errors:
            raise errors[0]

    def _kill_the_rest(self) -> None:
        """SIGKILL whatever still runs in the namespace (started by a tracked process and left
        in a group of its own, or started by `inside` code); wait until none is left."""
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while pids := self.pids():
            if time.monotonic() >= deadline:
                raise TopologyError(f"private network {self.name}: processes {pids} outlived it")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                try:  # our own child (started by `inside` code): reap it
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(POLL_SECONDS)

    def _delete_veth(self) -> None:
        if _link_exists(self.host_interface):
            _ip("link", "del", self.host_interface)  # both ends go

    def _delete_namespace(self) -> None:
        if self.path.exists():
            _ip("netns", "del", self.name)


def _link_exists(interface: str) -> bool:
    return Path("/sys/class/net", interface).exists()


def http_status(
    host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> int | None:
    """Status of a GET on host:port, or None when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


class PrivateDataPlane:
    """One region's data plane made private: Azurite on the VNet's loopback (the private
    endpoint), the app (app/startup.sh, STORE=table on that Azurite, AUTH_MODE=none, the
    client-certificate settings of the local topology) on the VNet's veth address."""

    def __init__(self, certs_dir: Path, workdir: Path) -> None:
        self.config = TopologyConfig(certs_dir=certs_dir, workdir=workdir, auth=AUTH_NONE)
        self.network = PrivateNetwork()
        self.store = Azurite(workdir)
        self.app: ManagedProcess | None = None
        self.app_port = 0

    @classmethod
    def start(cls, certs_dir: Path, workdir: Path) -> PrivateDataPlane:
        plane = cls(certs_dir, workdir)
        plane.network.create()
        try:
            plane._start()
        except BaseException:
            plane.stop()
            raise
        return plane

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.network.remove()

    @property
    def store_port(self) -> int:
        return self.store.port

    @property
    def app_url(self) -> str:
        return f"http://{self.network.vnet_address}:{self.app_port}"

    @property
    def health_path(self) -> str:
        return self.config.health_path

    def front_end_headers(self) -> dict[str, str]:
        """What App Service's front end adds to a call that presented the client certificate
        (X-ARR-ClientCert, base64 DER): the app checks it; no front end runs here."""
        pem = (self.config.certs_dir / "client.pem").read_bytes()
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        return {CLIENT_CERT_HEADER: base64.b64encode(der).decode()}

    def _start(self) -> None:
        # Free on the host too: a probe from the host of these ports then finds nothing of its
        # own there (the namespace is new: everything is free in it).
        self.store.port, self.app_port = free_ports(2)
        self.network.track(self.store)
        # Azurite's start (its port check, the process, its readiness probe) and the table
        # (Terraform's part on Azure) happen in the VNet: its 127.0.0.1 is the VNet's own.
        self.network.inside(self.store.start)
        self.network.inside(lambda: self.store.create_table(self.config.table_name))
        env = app_environment(
            self.config,
            PRIMARY_SITE,
            PRODUCTION_SLOT,
            self.app_port,
            self.store,
            {"AUTH_MODE": AUTH_NONE},
        )
        env["HOST"] = self.network.vnet_address
        self.app = self.network.run_in(
            f"app ({PRIMARY_SITE})",
            ["bash", str(ROOT / "app" / "startup.sh")],
            self.config.workdir / "app.log",
            env,
        )
        self.app.wait_ready(
            lambda: http_status(self.network.vnet_address, self.app_port, self.health_path) == 200
        )
