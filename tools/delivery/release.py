"""The release driver: roll a package out region by region through a staging slot, with a smoke
test before and after each swap, a bake, and an automatic swap back on any failure.

Per region, in the backend's order (the region that serves least first):

1. deploy    the package to the region's staging slot (production keeps serving);
2. warm up   until the staging slot answers its health path;
3. smoke     the staging slot through its own address, with the client certificate: health,
             list, create, read, update, delete, and every answer's APP-SERVICE-SITE-NAME must be
             the staging slot's site name;
4. swap      staging and production (the slot's instances get production's settings first);
5. smoke     production of that region the same way (its own site name);
6. bake      for `bake_seconds`: production's health must stay 200 and its 5xx ratio at most
             MAX_BAKE_5XX_RATIO;

and only then the next region. A failure before the swap stops the rollout and leaves
production alone; a failure after it swaps back, then stops. The other regions are untouched.

Backends: loadtests.slots (the local stand-in, `make demo`) and, for Azure, `az` (to come, with
the workflow's rollout job). Both call `roll_out`, so the workflow and the rehearsal share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from app.contract import HEALTH_PATH, SITE_NAME_HEADER, TODO_PATH

MAX_BAKE_5XX_RATIO = 0.01
BAKE_POLL_SECONDS = 0.5
SMOKE_ITEM = {"name": "release smoke check (deleted right away)", "isCompleted": False}
SMOKE_API_CALLS = 5  # what smoke() asks besides health: list, create, read, update, delete


class Backend(Protocol):
    """Where a release happens: the slots of each region and how to reach them."""

    def regions(self) -> list[str]:
        """The regions in rollout order."""

    def deploy(self, region: str, package: Path) -> None:
        """Put the package on the region's staging slot (production keeps serving)."""

    def warm_up(self, region: str) -> None:
        """Return once the staging slot answers its health path; raise ReleaseError if never."""

    def client(self, region: str, slot: str) -> tuple[httpx.Client, str, str]:
        """(an HTTP client that reaches the slot with the client certificate, its base URL, the
        site name its answers must carry)."""

    def health_path(self) -> str:
        """The keyed health path (/health/<key>)."""

    def swap(self, region: str) -> None:
        """Swap the region's staging and production slots (either way: a swap back is a swap)."""

    def served(self, region: str) -> tuple[int, int]:
        """(answers, 5xx answers) production of the region has given so far (a counter)."""


class ReleaseError(Exception):
    """A release step failed; the message says which and why (one line)."""


@dataclass
class Step:
    region: str
    name: str
    started: float
    ended: float | None = None
    ok: bool | None = None
    detail: str = ""


@dataclass
class Rollout:
    package: str
    steps: list[Step] = field(default_factory=list)
    rolled_back: bool = False
    stopped_in: str | None = None  # the region where it stopped, None when it went through
    reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.stopped_in is None

    def swaps(self, region: str) -> list[Step]:
        return [s for s in self.steps if s.region == region and s.name in ("swap", "swap back")]

    def as_dict(self, origin: float = 0.0) -> dict:
        """For summary.json: times relative to `origin` (epoch seconds)."""
        return {
            "package": self.package,
            "succeeded": self.succeeded,
            "rolled_back": self.rolled_back,
            "stopped_in": self.stopped_in,
            "reason": self.reason,
            "steps": [
                {
                    "region": s.region,
                    "step": s.name,
                    "started_at_s": round(s.started - origin, 3),
                    "ended_at_s": None if s.ended is None else round(s.ended - origin, 3),
                    "ok": s.ok,
                    "detail": s.detail,
                }
                for s in self.steps
            ],
        }


def smoke(client: httpx.Client, base: str, site: str, health_path: str) -> list[str]:
    """The release smoke test of one slot: every problem, one line each (empty: it passed)."""
    problems: list[str] = []

    def call(method: str, path: str, expected: int, **options) -> httpx.Response | None:
        try:
            response = client.request(method, base + path, **options)
        except httpx.HTTPError as error:
            problems.append(f"{method} {path}: {type(error).__name__}: {error}")
            return None
        if response.status_code != expected:
            problems.append(f"{method} {path}: expected {expected}, got {response.status_code}")
            return None
        answered = response.headers.get(SITE_NAME_HEADER)
        if answered != site:
            problems.append(f"{method} {path}: answered by {answered!r}, not {site!r}")
            return None
        return response

    call("GET", health_path, 200)
    call("GET", TODO_PATH, 200)
    created = call("POST", TODO_PATH, 201, json=SMOKE_ITEM)
    if created is not None:
        item = f"{TODO_PATH}/{created.json()['id']}"
        call("GET", item, 200)
        call("PUT", item, 200, json={**SMOKE_ITEM, "id": created.json()["id"], "isCompleted": True})
        call("DELETE", item, 204)
    return problems


def roll_out(
    backend: Backend,
    package: Path,
    bake_seconds: float,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.time,
) -> Rollout:
    """Roll `package` out region by region (the module docstring); never raises for a failed
    step: the returned Rollout says where it stopped, why, and whether it swapped back."""
    rollout = Rollout(str(package))

    def run(region: str, name: str, action: Callable[[], str | None]) -> bool:
        step = Step(region, name, clock())
        rollout.steps.append(step)
        try:
            problem = action()
        except ReleaseError as error:
            problem = str(error)
        step.ended, step.ok, step.detail = clock(), problem is None, problem or ""
        say(f"  {region}: {name} {'ok' if step.ok else 'FAILED: ' + step.detail}")
        if not step.ok:
            rollout.stopped_in, rollout.reason = region, f"{name}: {step.detail}"
        return step.ok

    for region in backend.regions():
        before_swap = [
            ("deploy", lambda r=region: backend.deploy(r, package)),
            ("warm up", lambda r=region: backend.warm_up(r)),
            ("smoke staging", lambda r=region: _smoked(backend, r, "staging")),
        ]
        if not all(run(region, name, action) for name, action in before_swap):
            return rollout  # production untouched
        if not run(region, "swap", lambda r=region: backend.swap(r)):
            return rollout  # the swap itself failed: nothing to swap back
        after_swap = [
            ("smoke production", lambda r=region: _smoked(backend, r, "production")),
            ("bake", lambda r=region: _bake(backend, r, bake_seconds)),
        ]
        if not all(run(region, name, action) for name, action in after_swap):
            reason = rollout.reason
            rollout.rolled_back = run(region, "swap back", lambda r=region: backend.swap(r))
            rollout.reason = reason
            return rollout
    return rollout


def _smoked(backend: Backend, region: str, slot: str) -> str | None:
    client, base, site = backend.client(region, slot)
    with client:
        problems = smoke(client, base, site, backend.health_path())
    return "; ".join(problems[:3]) if problems else None


def _bake(backend: Backend, region: str, seconds: float) -> str | None:
    """Watch production of the region for `seconds`: its health, and the 5xx ratio of all it
    answers (callers', and a read the bake sends itself each round, so that a region that
    serves nobody, the secondary, is still exercised)."""
    client, base, _ = backend.client(region, "production")
    with client:
        return _watch(backend, region, client, base, time.monotonic() + seconds)


def _watch(
    backend: Backend, region: str, client: httpx.Client, base: str, deadline: float
) -> str | None:
    answers, errors = backend.served(region)
    while True:
        try:
            status = client.get(base + backend.health_path()).status_code
            client.get(base + TODO_PATH)  # counted by backend.served
        except httpx.HTTPError as error:
            return f"health: {type(error).__name__}: {error}"
        if status != 200:
            return f"health: {status}"
        now_answers, now_errors = backend.served(region)
        served, failed = now_answers - answers, now_errors - errors
        if served and failed / served > MAX_BAKE_5XX_RATIO:
            return f"{failed} of {served} answers were 5xx (more than {MAX_BAKE_5XX_RATIO:.0%})"
        if time.monotonic() >= deadline:
            return None
        time.sleep(BAKE_POLL_SECONDS)


def health_path(key: str) -> str:
    return HEALTH_PATH.replace("{key}", key)
