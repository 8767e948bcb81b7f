"""Traffic Manager, modelled for the `azure` profile (loadtests.fidelity); it moves the gateway's
first attempt through HAProxy's runtime API (loadtests.haproxy_admin).

Traffic Manager routes by DNS: it probes every endpoint every `interval` seconds (a probe that
takes longer than `timeout` or answers outside the expected statuses fails); an endpoint is
Degraded after more than `tolerated_failures` failures in a row and Online again at its first
good probe. The DNS answer is the first Online endpoint in priority order (the primary region,
the nearer one for this API's callers under Performance routing), or all of them when every
endpoint is Degraded (Traffic Manager then fails open). A caller (API Management) that resolved
the name keeps the old answer until its TTL runs out: the model applies a changed answer to the
gateway a full TTL later (the worst case; a resolver's cached copy may be younger).

Only the primary's place in rotation changes: API Management's retry goes to the other region's
web app directly, whatever Traffic Manager says, so the secondary always stays in rotation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from loadtests.fidelity import RoutingRules
from loadtests.processes import TopologyError

RETRY_SECONDS = 0.2


@dataclass
class Endpoint:
    name: str
    probe: Callable[[float], int | None]  # timeout -> HTTP status, None when no answer
    failures: int = 0
    online: bool = True


@dataclass
class TrafficManagerModel:
    """Probes `endpoints` (priority order) by `rules`; calls `route(primary_in_rotation)` a TTL
    after the DNS answer changes. Events (state changes) are kept for the reports."""

    rules: RoutingRules
    endpoints: list[Endpoint]
    route: Callable[[bool], None]
    events: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: deque[tuple[float, bool]] = deque()  # (due, primary in rotation)
        self.answer = True  # the DNS answer holds the primary
        self.applied = True  # what the gateway follows

    def start(self) -> None:
        self.route(True)
        self._thread = threading.Thread(target=self._run, name="traffic-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.rules.probe_timeout_s + 5)

    def _event(self, what: str, **details) -> None:
        with self._lock:
            self.events.append({"t": time.time(), "event": what, **details})

    def recent_events(self, since: float) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self.events if e["t"] >= since]

    def _run(self) -> None:
        next_probe = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(self.endpoints)) as pool:
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_probe:
                        next_probe += self.rules.probe_interval_s
                        self._probe_all(pool)
                        self._reassert()
                    self._apply_due()
                except TopologyError as error:  # the gateway is reloading: try again shortly
                    self._event("gateway unreachable", error=str(error))
                    self._stop.wait(RETRY_SECONDS)
                    continue
                due = self._pending[0][0] if self._pending else next_probe
                self._stop.wait(max(0.0, min(next_probe, due) - time.monotonic()))

    def _probe(self, endpoint: Endpoint) -> int | None:
        """One probe; any error (no answer, not HTTP) is a failed probe, as for Traffic Manager."""
        try:
            return endpoint.probe(self.rules.probe_timeout_s)
        except Exception:  # noqa: BLE001 (whatever the probe raised, the probe failed)
            return None

    def _probe_all(self, pool: ThreadPoolExecutor) -> None:
        """Probe every endpoint at once; changes that fall due meanwhile are applied on time."""
        probes = [pool.submit(self._probe, endpoint) for endpoint in self.endpoints]
        while not all(probe.done() for probe in probes):
            due = self._pending[0][0] if self._pending else None
            wait(probes, None if due is None else max(0.0, due - time.monotonic()))
            self._apply_due()
        statuses = [probe.result() for probe in probes]
        for endpoint, status in zip(self.endpoints, statuses, strict=True):
            if self.rules.expected(status):
                endpoint.failures = 0
                if not endpoint.online:
                    endpoint.online = True
                    self._event("online", endpoint=endpoint.name)
                continue
            endpoint.failures += 1
            if endpoint.online and endpoint.failures > self.rules.tolerated_failures:
                endpoint.online = False
                self._event("degraded", endpoint=endpoint.name, status=status)
        primary_online = self.endpoints[0].online
        answer = primary_online or not any(e.online for e in self.endpoints)  # fail open
        if answer != self.answer:
            self.answer = answer
            due = time.monotonic() + self.rules.dns_ttl_s
            self._pending.append((due, answer))
            self._event("dns answer", primary=answer)

    def _apply_due(self) -> None:
        while self._pending and self._pending[0][0] <= time.monotonic():
            _, answer = self._pending[0]
            self.route(answer)
            self._pending.popleft()
            self.applied = answer
            self._event("gateway follows", primary=answer)

    def _reassert(self) -> None:
        """A gateway reload (certificate renewal) starts with every server ready: say it again."""
        self.route(self.applied)
