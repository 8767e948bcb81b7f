"""Traffic Manager, modelled (loadtests.traffic_manager): probes controlled by the tests, tiny
timings, a route callback that records what the gateway was told; and HAProxyAdmin against a
real HAProxy started per test."""

from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from loadtests.fidelity import RoutingRules
from loadtests.haproxy_admin import HAProxyAdmin
from loadtests.processes import TopologyError
from loadtests.traffic_manager import Endpoint, TrafficManagerModel
from tests.waiting import wait_until

INTERVAL = 0.05
TIMEOUT = 0.05
TTL = 0.1
# "dns answer" is stamped a few statements after its due time is computed; the gap to
# "gateway follows" may come short of the TTL by that much (microseconds, unless preempted).
STAMP_SLACK = 0.01
HAPROXY_STOP_SECONDS = 10


def rules(tolerated_failures: int = 1, ttl: float = TTL) -> RoutingRules:
    return RoutingRules(
        probe_interval_s=INTERVAL,
        probe_timeout_s=TIMEOUT,
        tolerated_failures=tolerated_failures,
        dns_ttl_s=ttl,
        expected_statuses=((200, 299),),
    )


class Probe:
    """Answers `script` first, then `status`; records every call (time, timeout)."""

    def __init__(self, status: int | None = 200, script: Iterable[int | None] = ()) -> None:
        self.status = status
        self._script = list(script)
        self._lock = threading.Lock()
        self.calls: list[tuple[float, float]] = []

    def __call__(self, timeout: float) -> int | None:
        with self._lock:
            self.calls.append((time.time(), timeout))
            return self._script.pop(0) if self._script else self.status

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def count_until(self, t: float) -> int:
        with self._lock:
            return sum(1 for called, _ in self.calls if called <= t)


class Gateway:
    """The route callback: records (time, primary in rotation); `refuse` calls raise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[float, bool]] = []
        self.refuse = 0  # how many of the next route(False) calls raise TopologyError
        self.refused = 0
        self.callers: list[threading.Thread] = []

    def __call__(self, primary_in_rotation: bool) -> None:
        with self._lock:
            if not primary_in_rotation and self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                raise TopologyError("gateway: reloading (planted by the test)")
            self.calls.append((time.time(), primary_in_rotation))
            self.callers.append(threading.current_thread())

    def values(self) -> list[bool]:
        with self._lock:
            return [value for _, value in self.calls]

    def first(self, value: bool, after: float = 0.0) -> float | None:
        with self._lock:
            return next((t for t, v in self.calls if v == value and t >= after), None)


# id(model) -> the thread its start() started (a waiting test gives up once it has ended)
THREADS: dict[int, threading.Thread] = {}


@pytest.fixture
def start_model():
    """Start a model (stopped at the end of the test, whatever happens)."""
    started: list[TrafficManagerModel] = []

    def start(primary, secondary, gateway: Gateway, **options) -> TrafficManagerModel:
        model = TrafficManagerModel(
            rules(**options),
            [Endpoint("primary", primary), Endpoint("secondary", secondary)],
            gateway,
        )
        started.append(model)
        before = set(threading.enumerate())
        model.start()
        [THREADS[id(model)]] = [
            t for t in set(threading.enumerate()) - before if t.name == "traffic-manager"
        ]
        return model

    yield start
    for model in started:
        model.stop()
        THREADS.pop(id(model), None)


def model_ended(model: TrafficManagerModel) -> str | None:
    thread = THREADS.get(id(model))
    return "the model's thread ended" if thread is not None and not thread.is_alive() else None


def events(model: TrafficManagerModel, *names: str) -> list[dict]:
    return [e for e in model.recent_events(0.0) if not names or e["event"] in names]


def wait_event(model: TrafficManagerModel, name: str, after: float = 0.0, **details) -> dict:
    def found() -> dict | None:
        return next(
            (
                e
                for e in model.recent_events(after)
                if e["event"] == name and all(e.get(k) == v for k, v in details.items())
            ),
            None,
        )

    return wait_until(
        found,
        f"the model's event {name!r} {details}",
        details=lambda: f"events: {model.recent_events(0.0)}",
        give_up=lambda: model_ended(model),
    )


def wait_probes(probe: Probe, count: int) -> None:
    wait_until(lambda: probe.count >= count, f"{count} probes", details=lambda: f"{probe.count}")


# -- Traffic Manager, modelled ----------------------------------------------------------------


def test_starts_routing_to_the_primary_and_probes_with_the_timeout(start_model):
    primary, secondary, gateway = Probe(), Probe(), Gateway()
    model = start_model(primary, secondary, gateway)
    assert gateway.values()[:1] == [True]
    assert gateway.callers[0] is threading.current_thread()  # start() itself, not the thread
    wait_probes(primary, 3)
    wait_probes(secondary, 3)
    assert {timeout for _, timeout in primary.calls} == {TIMEOUT}
    assert set(gateway.values()) == {True}
    assert (model.answer, model.applied) == (True, True)
    assert events(model) == []


def test_one_failed_probe_is_tolerated(start_model):
    primary, secondary, gateway = Probe(script=[None]), Probe(), Gateway()
    model = start_model(primary, secondary, gateway, tolerated_failures=1)
    wait_probes(primary, 4)  # the failure and two good probes after it were handled
    assert events(model) == []
    assert set(gateway.values()) == {True}


def test_failures_that_are_not_in_a_row_are_tolerated(start_model):
    primary, gateway = Probe(script=[None, 200, 503, 200, None, 200, 500]), Gateway()
    model = start_model(primary, Probe(), gateway, tolerated_failures=1)
    wait_probes(primary, 8)
    assert events(model) == []
    assert set(gateway.values()) == {True}


def test_the_second_failure_in_a_row_degrades_the_primary(start_model):
    primary, gateway = Probe(status=503), Gateway()
    model = start_model(primary, Probe(), gateway, tolerated_failures=1)
    degraded = wait_event(model, "degraded", endpoint="primary")
    assert degraded["status"] == 503  # an answer outside the expected statuses fails too
    assert primary.count_until(degraded["t"]) == 2


def test_tolerated_failures_come_from_the_rules(start_model):
    primary, gateway = Probe(status=None), Gateway()
    model = start_model(primary, Probe(), gateway, tolerated_failures=3)
    degraded = wait_event(model, "degraded", endpoint="primary")
    assert primary.count_until(degraded["t"]) == 4


def test_the_gateway_follows_a_changed_answer_a_ttl_later(start_model):
    primary, gateway = Probe(status=None), Gateway()
    model = start_model(primary, Probe(), gateway, ttl=TTL)
    follows = wait_event(model, "gateway follows", primary=False)
    [degraded] = events(model, "degraded")
    [answer] = events(model, "dns answer")
    assert (degraded["endpoint"], answer["primary"]) == ("primary", False)
    assert degraded["t"] <= answer["t"]
    assert follows["t"] - answer["t"] >= TTL - STAMP_SLACK
    first_false = gateway.first(False)
    assert first_false is not None and first_false - answer["t"] >= TTL - STAMP_SLACK
    assert (model.answer, model.applied) == (False, False)


def test_a_good_probe_brings_the_primary_back_a_ttl_later(start_model):
    primary, gateway = Probe(status=None), Gateway()
    model = start_model(primary, Probe(), gateway, ttl=TTL)
    away = wait_event(model, "gateway follows", primary=False)
    primary.status = 200
    online = wait_event(model, "online", after=away["t"], endpoint="primary")
    back = wait_event(model, "gateway follows", after=away["t"], primary=True)
    [answer] = [e for e in events(model, "dns answer") if e["primary"]]
    assert online["t"] <= answer["t"]
    assert back["t"] - answer["t"] >= TTL - STAMP_SLACK
    returned = gateway.first(True, after=away["t"])
    assert returned is not None and returned - answer["t"] >= TTL - STAMP_SLACK
    assert (model.answer, model.applied) == (True, True)


def test_every_endpoint_degraded_fails_open_to_the_primary(start_model):
    primary, secondary, gateway = Probe(status=None), Probe(status=None), Gateway()
    model = start_model(primary, secondary, gateway)
    wait_until(lambda: len(events(model, "degraded")) == 2, "both endpoints degraded")
    seen = primary.count
    wait_probes(primary, seen + 3)  # rounds after both were degraded were handled
    assert events(model, "dns answer", "gateway follows") == []
    assert set(gateway.values()) == {True}
    assert model.answer is True


def test_the_answer_fails_open_when_the_secondary_degrades_too(start_model):
    primary, secondary, gateway = Probe(status=None), Probe(), Gateway()
    model = start_model(primary, secondary, gateway)
    away = wait_event(model, "gateway follows", primary=False)
    secondary.status = None
    wait_event(model, "degraded", endpoint="secondary")
    back = wait_event(model, "gateway follows", after=away["t"], primary=True)
    assert [e["primary"] for e in events(model, "dns answer")] == [False, True]
    assert gateway.first(True, after=away["t"]) is not None
    assert back["t"] > away["t"]
    assert not model.endpoints[0].online and not model.endpoints[1].online


def test_a_gateway_that_cannot_be_reached_is_told_again(start_model):
    primary, gateway = Probe(status=None), Gateway()
    gateway.refuse = 2
    model = start_model(primary, Probe(), gateway)
    follows = wait_event(model, "gateway follows", primary=False)
    unreachable = events(model, "gateway unreachable")
    assert gateway.refused == 2
    assert len(unreachable) == 2
    assert "reloading" in unreachable[0]["error"]
    assert all(e["t"] <= follows["t"] for e in unreachable)
    assert model.applied is False
    seen = primary.count
    wait_probes(primary, seen + 2)  # still probing


def test_a_probe_that_raises_counts_as_a_failure_and_the_model_keeps_going(start_model):
    """An exception from a probe (a front end answering something that is not HTTP:
    http.client.BadStatusLine) is a failed probe, as for Traffic Manager; the model goes on."""
    script = iter([http.client.BadStatusLine("garbage"), None])

    def primary(timeout: float) -> int | None:
        answer = next(script, None)
        if isinstance(answer, Exception):
            raise answer
        return answer

    model = start_model(primary, Probe(), Gateway())
    wait_event(model, "degraded", endpoint="primary")
    wait_event(model, "gateway follows", primary=False)


def test_stop_ends_the_thread_and_its_probes(start_model):
    before = set(threading.enumerate())
    primary = Probe()
    model = start_model(primary, Probe(), Gateway())
    started = set(threading.enumerate()) - before
    assert "traffic-manager" in {thread.name for thread in started}
    wait_probes(primary, 2)
    model.stop()
    assert [t for t in set(threading.enumerate()) - before if t.is_alive()] == []


# -- HAProxy's runtime API --------------------------------------------------------------------


HAPROXY_CONFIG = """\
global
    stats socket {admin} mode 600 level admin
defaults
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend held
    mode tcp
    bind unix@{frontend}
    default_backend held
backend held
    mode tcp
    server slow 127.0.0.1:{held_port}
backend app
    mode http
    server one 127.0.0.1:9
    server two 127.0.0.1:9
"""


class HAProxy:
    def __init__(self, directory: Path, log: Path, listener: socket.socket) -> None:
        self.admin_path = str(directory / "admin.sock")
        self.frontend_path = str(directory / "frontend.sock")
        self.log = log
        self.listener = listener  # the `held` backend's server: accepts, never answers
        self.process: subprocess.Popen | None = None

    @property
    def admin(self) -> HAProxyAdmin:
        return HAProxyAdmin(self.admin_path)

    def status(self, backend: str, server: str) -> str:
        lines = self.admin.command("show stat").splitlines()
        columns = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if (row.get("pxname"), row.get("svname")) == (backend, server):
                return row["status"]
        raise AssertionError(f"no {backend}/{server} in show stat:\n{lines}")


def _answers(admin: HAProxyAdmin) -> bool:
    try:
        return admin.command("show info").startswith("Name: HAProxy")
    except TopologyError:
        return False


@pytest.fixture
def short_dir():
    """A folder for Unix sockets (a socket path has at most 107 bytes; tmp_path may be longer)."""
    directory = Path(tempfile.mkdtemp(prefix="ha-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def haproxy(tmp_path, short_dir):
    directory = short_dir
    listener = socket.create_server(("127.0.0.1", 0))
    server = HAProxy(directory, tmp_path / "haproxy.log", listener)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            admin=server.admin_path,
            frontend=server.frontend_path,
            held_port=listener.getsockname()[1],
        )
    )
    try:
        with server.log.open("w") as log:
            server.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        process = server.process
        wait_until(
            lambda: _answers(server.admin),
            "HAProxy answers on its runtime API",
            details=lambda: server.log.read_text(),
            give_up=lambda: None if process.poll() is None else f"exited {process.returncode}",
        )
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(HAPROXY_STOP_SECONDS)
        listener.close()


def test_set_ready_false_puts_the_server_into_maintenance_and_true_takes_it_out(haproxy):
    assert haproxy.status("app", "one") == "no check"
    haproxy.admin.set_ready("app", "one", False)
    assert haproxy.status("app", "one") == "MAINT"
    assert haproxy.status("app", "two") == "no check"  # only the server named
    haproxy.admin.set_ready("app", "one", True)
    assert haproxy.status("app", "one") == "no check"


def test_current_sessions_counts_the_requests_being_served(haproxy):
    assert haproxy.admin.current_sessions("app", "one") == 0
    assert haproxy.admin.current_sessions("held", "slow") == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(haproxy.frontend_path)
        wait_until(
            lambda: haproxy.admin.current_sessions("held", "slow") == 1,
            "HAProxy counts the held connection as the server's session",
            details=lambda: haproxy.admin.command("show stat"),
        )


@pytest.mark.parametrize("backend, server", [("app", "three"), ("nowhere", "one")])
def test_an_unknown_server_is_a_topology_error(haproxy, backend, server):
    with pytest.raises(TopologyError, match="[Nn]o such"):
        haproxy.admin.set_ready(backend, server, False)
    with pytest.raises(TopologyError, match=f"no server {backend}/{server}"):
        haproxy.admin.current_sessions(backend, server)


def test_a_socket_that_does_not_exist_is_a_topology_error_naming_it(short_dir):
    path = str(short_dir / "no-haproxy.sock")
    for call in (
        lambda admin: admin.set_ready("app", "one", False),
        lambda admin: admin.current_sessions("app", "one"),
    ):
        with pytest.raises(TopologyError) as raised:
            call(HAProxyAdmin(path))
        assert path in str(raised.value)


def test_a_socket_nobody_listens_on_is_a_topology_error_naming_it(short_dir):
    path = str(short_dir / "stale.sock")
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as stale:
        stale.bind(path)  # bound, never listening: what a dead HAProxy leaves behind
    with pytest.raises(TopologyError, match=re.escape(path)):
        HAProxyAdmin(path).command("show info")
