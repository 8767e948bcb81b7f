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

Backends: loadtests.slots (the local stand-in, `make demo`) and
tools.delivery.app_service_slots (Azure, through `az`). Both go through `roll_out`, so the
workflow, its rehearsal and the demo run the same driver. On Azure:

    python -m tools.delivery.release outputs.json dist/todo-api-app.zip --environment dev \
        [--require-green-in dev] [--bake-seconds 300] [--runner-ip auto] [--summary-out FILE]

reads the client certificate from Key Vault (a private vault opened to `--runner-ip` for that
read only: tools.delivery.key_vault.opened_vault, recorded in $TODO_API_VAULT_RECORD for the
workflow's `tools.delivery.key_vault close` step), records the rollout as a GitHub Deployment
(tools.delivery.deployments: commit, package SHA-256, status, environment URL), refuses with
`--require-green-in dev` a package that did not go green in dev for this very commit, restarts
nothing when the environment already runs this package, and exits 1 when the rollout stopped
(saying where and whether it swapped back).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from app.contract import HEALTH_PATH, SITE_NAME_HEADER, TODO_PATH
from tools.cli import CliError, interrupt_on_sigterm, run_cli
from tools.delivery.deploy_app import az_json, runner_ip
from tools.delivery.deployments import Deployments
from tools.delivery.github_api import GitHubApi
from tools.delivery.key_vault import opened_vault, record_path
from tools.delivery.stack_outputs import load

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


# -- the workflow's rollout (Azure) -------------------------------------------------------------

EXIT_STOPPED = 1
DEFAULT_BAKE_SECONDS = 300.0


def package_digest(package: Path) -> str:
    return hashlib.sha256(package.read_bytes()).hexdigest()


@contextmanager
def certificate_files(pfx_base64: str | None) -> Iterator[tuple[str, str] | None]:
    """The client certificate (Key Vault's PFX, base64) as PEM files in a private temporary
    folder, removed on the way out: what httpx needs to present it."""
    if pfx_base64 is None:
        yield None
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(pfx_base64), None)
    except ValueError as error:
        raise CliError(f"the client certificate from Key Vault is not a PFX: {error}") from None
    if key is None or cert is None:
        raise CliError("the client certificate from Key Vault holds no key or no certificate")
    with tempfile.TemporaryDirectory(prefix="release-cert-") as folder:
        cert_path, key_path = Path(folder, "client.crt"), Path(folder, "client.key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        yield str(cert_path), str(key_path)


def key_vault_certificate(vault: str | None, name: str | None, ip: str | None = None,
                          record: Path | None = None) -> str | None:
    """The client certificate's PFX (base64) from Key Vault, or None when the stack names none.
    A private vault is opened to `ip` for the read only (tools.delivery.key_vault.opened_vault,
    its opening recorded in `record`, default $TODO_API_VAULT_RECORD)."""
    if not (vault and name):
        return None
    with opened_vault(vault, ip, record or record_path()):
        value = az_json(["az", "keyvault", "secret", "show", "--vault-name", vault, "--name",
                         name, "--query", "value", "--only-show-errors"],
                        f"reading the client certificate {name} from Key Vault {vault}")
    if not isinstance(value, str) or not value:
        raise CliError(f"Key Vault {vault} returned no value for the certificate {name}")
    return value


def rollout_markdown(rollout: Rollout, origin: float) -> str:
    lines = ["| region | step | at (s) | took (s) | result |", "|---|---|---|---|---|"]
    for s in rollout.steps:
        took = "" if s.ended is None else f"{s.ended - s.started:.1f}"
        result = "ok" if s.ok else f"FAILED: {s.detail}".replace("|", "\\|")
        lines.append(f"| {s.region} | {s.name} | {s.started - origin:.1f} | {took} | {result} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tools.delivery.app_service_slots import AppServiceSlots  # it imports this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("package", type=Path, help="zip built by tools.delivery.package_app")
    parser.add_argument("--environment", required=True, help="GitHub environment (dev, prod)")
    parser.add_argument("--require-green-in", metavar="ENVIRONMENT",
                        help="refuse a package that did not go green there for this commit")
    parser.add_argument("--bake-seconds", type=float,
                        help="per region (default: the stack's output release_bake_seconds, else"
                        f" {DEFAULT_BAKE_SECONDS:g})")
    parser.add_argument("--metrics-every", type=float, default=60.0,
                        help="seconds between two reads of the web app's metrics in a bake")
    parser.add_argument("--warm-up-seconds", type=float, default=600.0)
    parser.add_argument("--runner-ip", help="open the slots to this address (or 'auto')")
    parser.add_argument("--summary-out", type=Path, help="append the report here (job summary)")
    parser.add_argument("--force", action="store_true",
                        help="roll out even when the environment already runs this package (its"
                        " web apps were replaced or changed outside a rollout)")
    args = parser.parse_args(argv)
    if (args.bake_seconds or 0) < 0 or args.metrics_every <= 0 or args.warm_up_seconds <= 0:
        raise CliError("--bake-seconds must be >= 0, --metrics-every and --warm-up-seconds > 0")
    if not args.package.is_file():
        raise CliError(f"package {args.package} not found: build it with `make package`")
    outputs = load(args.outputs)
    bake_seconds = next(b for b in (args.bake_seconds, outputs.release_bake_seconds,
                                    DEFAULT_BAKE_SECONDS) if b is not None)
    digest = package_digest(args.package)
    sha = os.environ.get("GITHUB_SHA") or ""
    if not sha:
        raise CliError("GITHUB_SHA is not set: the rollout records the commit it deploys")
    run_url = "{}/{}/actions/runs/{}".format(
        os.environ.get("GITHUB_SERVER_URL", "https://github.com"),
        os.environ.get("GITHUB_REPOSITORY", ""), os.environ.get("GITHUB_RUN_ID", ""))
    deployments = Deployments(GitHubApi.from_environment())
    report: list[str] = [f"### App rollout to {args.environment}", "",
                         f"Commit `{sha}`, package SHA-256 `{digest}`.", ""]

    def summary(*lines: str) -> None:
        report.extend(lines)
        print("\n".join(lines), flush=True)
        if args.summary_out:
            with args.summary_out.open("a", encoding="utf-8") as out:
                out.write("\n".join(report) + "\n\n")
            report.clear()

    if args.require_green_in:
        green = deployments.green_in(args.require_green_in, sha, digest)
        if green is None:
            summary(f"**Refused**: this commit's package never went green in "
                    f"{args.require_green_in}.")
            raise CliError(
                f"commit {sha[:12]} with package sha256 {digest[:12]} never went green in "
                f"{args.require_green_in}: deploy it to {args.require_green_in} first")
        summary(f"Promotion: this exact package went green in {args.require_green_in} "
                f"(deployment {green.id}).")
    current = deployments.current(args.environment)
    environment_url = outputs.gateway_urls[0]
    if current is not None and current.package_sha256 == digest and not args.force:
        deployment = deployments.start(args.environment, sha, digest, run_url)
        deployments.status(deployment, "success", "package unchanged: nothing restarted",
                           run_url, environment_url)
        summary(f"{args.environment} already runs this package (deployment {current.id}, "
                f"commit {current.sha[:12]}): nothing restarted.")
        return 0
    deployment = deployments.start(args.environment, sha, digest, run_url)
    interrupt_on_sigterm()  # a cancelled job: the backend still removes its access rules
    origin = time.time()
    try:
        ip = runner_ip(args.runner_ip)
        pfx = key_vault_certificate(outputs.key_vault_name, outputs.client_certificate_name, ip,
                                    record_path())
        with certificate_files(pfx) as certificate, AppServiceSlots(
            outputs, ip, certificate, args.metrics_every, args.warm_up_seconds,
        ) as backend:
            rollout = roll_out(backend, args.package, bake_seconds)
    except (CliError, ReleaseError) as error:
        deployments.status(deployment, "error", str(error), run_url)
        raise CliError(str(error)) from None
    except BaseException:
        deployments.status(deployment, "error", "the rollout was interrupted", run_url)
        raise
    summary(rollout_markdown(rollout, origin), "")
    if rollout.succeeded:
        deployments.status(deployment, "success", "rolled out to every region", run_url,
                           environment_url)
        summary("Rolled out to every region.")
        return 0
    verdict = "swapped back" if rollout.rolled_back else "production untouched"
    deployments.status(deployment, "failure", f"stopped in {rollout.stopped_in}: {verdict}",
                       run_url)
    summary(f"**Stopped** in {rollout.stopped_in} ({verdict}): {rollout.reason}")
    print(f"error: rollout stopped in {rollout.stopped_in} ({verdict}): {rollout.reason}",
          file=sys.stderr)
    return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(run_cli(main))
