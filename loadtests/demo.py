"""`make demo`: certificates, the synthesized stacks, then the drills under load on the local
two-region stand-in (apps sharing one Azurite table account), in both fidelity profiles
(loadtests.fidelity), each drill with its own results table and reports. Unattended; exit 0
when every goal holds.

- `local`: the fast stand-in (the best case). `azure`: API Management's retry rules, Traffic
  Manager's probes and DNS TTL read from the synthesized dev stack, and App Service's 503 for a
  dead app.

1. region failover: the primary app is SIGKILLed while it serves requests, and restarted, several
   times in one run; users send every write with an Idempotency-Key.
2. store fault: the shared table store (Azurite) is stopped and started a few seconds later;
   callers get 503 + Retry-After meanwhile, never anything else, and each keyed write sent again
   after the store returns makes exactly one item.

3. release (local profile): three releases under load through the release driver the workflow
   uses (tools.delivery.release, with the stand-in's staging slots: loadtests.slots): a good version
   goes through region by region with no failed request; a version failing its smoke test
   stops on the first region's staging slot; a version answering 5xx after its swap is swapped
   back by the bake and the rollout stops (loadtests.release_drill).

After each drill the items are reconciled against the table itself (loadtests.reconciliation):
any item missing, duplicated, orphaned, stale or resurrected fails the drill.

Every drill runs with bearer tokens (the topology's local issuer; the gateway and the apps check
them): each user is a caller of its own, and any list or read answered with another caller's
item (a cross-owner read) fails the drill.

    python -m loadtests.demo [--profile local|azure] [--fault app|frontend|store] [--faults 3]
        [--users 10] [--store table|memory]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from app.contract import MEMORY_STORE, TABLE_STORE
from loadtests import release_drill
from loadtests.analysis import item_threshold
from loadtests.fidelity import AZURE, LOCAL, PROFILES, Profile, ProfileError, profile
from loadtests.processes import TopologyError
from loadtests.reconciliation import DEFECTS
from loadtests.run import RunError, RunSpec, conclude, run_scenario
from loadtests.topology import DEFAULT_CERTS, ROOT, Topology, TopologyConfig
from tools.cli import CliError
from tools.development import certs

STACKS_DIR = ROOT / "cdktf.out" / "stacks"
# What each fault takes away, how it comes back, and what it hits (a region or the store).
FAULTS = {
    "app": ("kill_app", "restore_app", "region"),
    "frontend": ("stop_frontend", "restore_frontend", "region"),
    "store": ("stop_store", "restore_store", "store"),
}
# A kill waits (at most this long) for the app to be serving a request: the fault cuts requests
# in flight, and the drill requires at least one in flight at every fault.
MID_REQUEST_WITHIN_SECONDS = 5.0
# The goals, applied as thresholds: a run that misses one exits non-zero. Reconciliation: no
# item missing, duplicated, orphaned, stale or resurrected; each create sent again with its key
# has one item; a deliberate replay is answered with its create's item.
ITEMS_RECONCILED = {
    **{item_threshold(figure): 0 for figure in DEFECTS},
    "max_items_retried_creates_not_single": 0,
    "max_items_replays_other_item": 0,
}
# Every kill cuts a request the frozen app held (its front end's count; the callers' view of
# requests in flight at the kill is reported beside it).
REGION_GOALS = {"max_failures": 0, "min_app_serving_at_kill": 1, **ITEMS_RECONCILED}
# No user ever reads another's item (each user its own caller: topology with AUTH_MODE=entra).
OWNERS_APART = {"max_cross_owner_reads": 0}
GOALS = {
    (LOCAL, "region"): {**REGION_GOALS, "max_sustained_recovery_seconds": 2.0},
    # No failed request of any kind: API Management's retry covers Traffic Manager's delay.
    (AZURE, "region"): {**REGION_GOALS, "max_sustained_recovery_seconds": 2.0},
    (LOCAL, "store"): {"max_store_failures": 0, **ITEMS_RECONCILED},
    (AZURE, "store"): {"max_store_failures": 0, **ITEMS_RECONCILED},
}
RAMP_SECONDS = 5.0
RELEASE_SECONDS = 80.0  # three releases (about 45 s here: two regions, 12 s bakes) fit, with room
# The store drill: one fault, the store away for a few seconds.
STORE_DRILL = {"duration": 30.0, "schedule": [(10.0, 15.0)]}
# A region fault cycle: the fault lasts `hold` seconds, then `settle` seconds until the next.
# Azure's hold outlasts Traffic Manager's failover, its settle the failback (a probe and a TTL).
FIRST_FAULT_AT = 10.0
DESCRIBE = {
    "app": "primary app SIGKILLed (mid-request)",
    "frontend": "primary front end SIGKILLed",
    "store": "table store (Azurite) stopped",
}


def region_schedule(profile: Profile, faults: int) -> tuple[float, list[tuple[float, float]]]:
    """(duration, schedule) of a region drill of `faults` fault cycles in this profile."""
    if profile.routing is None:
        hold, settle = 8.0, 8.0
    else:
        routing = profile.routing
        hold = routing.failover_s + 10.0
        settle = routing.probe_interval_s + routing.dns_ttl_s + 10.0
    schedule, at = [], FIRST_FAULT_AT
    for _ in range(faults):
        schedule.append((at, at + hold))
        at += hold + settle
    return at, schedule


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def ensure_certificates(directory: Path) -> None:
    if (directory / "client.json").exists():
        print(f"reusing the certificates in {directory}/")
        print(certs.show(directory))
        return
    certs.generate(directory)
    print(f"generated certificates into {directory}/")
    print(certs.show(directory))


def resource_counts(stack_file: Path) -> Counter:
    resources = json.loads(stack_file.read_text()).get("resource", {})
    return Counter({kind: len(items) for kind, items in resources.items()})


def synthesize() -> None:
    """`python main.py` as a subprocess (never import cdktf next to locust), then summarise."""
    if not (ROOT / "main.py").exists():
        raise RunError("main.py is missing: the stacks cannot be synthesized")
    env = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise RunError(f"python main.py failed: {' | '.join(lines[-3:])}")
    for stack_file in sorted(STACKS_DIR.glob("*/cdk.tf.json")):
        counts = resource_counts(stack_file)
        print(
            f"stack {stack_file.parent.name}: {sum(counts.values())} resources, "
            f"Terraform in {stack_file.relative_to(ROOT)}"
        )
        for kind, count in sorted(counts.items()):
            print(f"    {count:3d}  {kind}")


def load_spec(topology: Topology, args: argparse.Namespace, report_dir: Path, **run) -> RunSpec:
    """The demo's load (the failover scenario's users, ramped up, 10 requests/s each) against
    the topology, reconciled against its store; `run`: the drill's own settings."""
    return RunSpec(
        scenario="failover",
        host=topology.gateway_url,
        key=topology.config.subscription_key,
        report_dir=report_dir,
        users=args.users,
        spawn_rate=args.users / RAMP_SECONDS,
        user_rate=10.0,
        profile=topology.config.profile.name,
        items_source=topology.items_source(),
        token_issuer=str(topology.issuer_config_path) if topology.issuer_config else "",
        **run,
    )


def drill(
    topology: Topology, args: argparse.Namespace, fault: str, report_dir: Path
) -> tuple[int, dict]:
    profile = topology.config.profile
    take, bring_back, target = FAULTS[fault]
    if target == "store":
        timing = STORE_DRILL
    else:
        duration, schedule = region_schedule(profile, args.faults)
        timing = {"duration": duration, "schedule": schedule}
    moments = ", ".join(f"{a:g}-{b:g}" for a, b in timing["schedule"])
    step(
        f"{profile.name} profile, {fault} fault under load: {args.users} users, "
        f"{timing['duration']:g} s, {DESCRIBE[fault]} and back at {moments} s"
    )
    thresholds = dict(GOALS[profile.name, target]) | owners_apart(topology)
    if args.store == MEMORY_STORE:  # shown on purpose: the in-memory store loses the items
        thresholds = {k: v for k, v in thresholds.items() if k not in ITEMS_RECONCILED}
    take_away = getattr(topology, take)
    if fault == "app":
        take_away = functools.partial(take_away, mid_request_within=MID_REQUEST_WITHIN_SECONDS)
    model = topology.traffic_manager
    spec = load_spec(
        topology,
        args,
        report_dir,
        fault_target=target,
        thresholds=thresholds,
        events=model.recent_events if model else None,
        **timing,
    )
    summary = run_scenario(spec, take_away, getattr(topology, bring_back))
    step(f"results: {profile.name} profile, {fault} fault")
    return conclude(summary, report_dir), summary


def drills(args: argparse.Namespace, report_root: Path) -> int:
    faults = (
        [args.fault] if args.fault else (["app", "store"] if args.store == TABLE_STORE else ["app"])
    )
    profiles = [args.profile] if args.profile else list(PROFILES)
    codes, results = [], {}
    for name in profiles:
        step(f"starting the local two-region topology, {name} profile")
        config = TopologyConfig(
            certs_dir=args.certs, store=args.store, profile=profile(name, STACKS_DIR)
        )
        with Topology.start(config) as topology:
            describe_topology(topology)
            for fault in faults:
                code, summary = drill(topology, args, fault, report_root / name / fault)
                codes.append(code)
                results[name, fault] = summary
            if name == LOCAL and not args.fault and args.store == TABLE_STORE:
                code, summary = release(topology, args, report_root / name / "release")
                codes.append(code)
                results[name, "release"] = summary
            step(f"stopping the {name} topology")
    step("both profiles side by side")
    print(comparison(results))
    print("stopped: nothing left running")
    return max(codes)


def owners_apart(topology: Topology) -> dict:
    """The cross-owner goal, where users are callers of their own (tokens on)."""
    return dict(OWNERS_APART) if topology.issuer_config else {}


def release(topology: Topology, args: argparse.Namespace, report_dir: Path) -> tuple[int, dict]:
    """Three releases under load through the release driver (loadtests.release_drill)."""
    step(
        f"release under load: {args.users} users; a good version, one failing its smoke test, "
        "one answering 5xx once it passed its smoke tests "
        f"(bake {release_drill.BAKE_SECONDS:g} s per region)"
    )
    releases = release_drill.ReleaseDrill(topology)
    spec = load_spec(
        topology,
        args,
        report_dir,
        duration=RELEASE_SECONDS,
        thresholds=dict(ITEMS_RECONCILED) | owners_apart(topology),
        background=releases,
        background_at=RAMP_SECONDS,
    )
    summary = run_scenario(spec)
    if releases.error is not None:
        raise RunError(f"release drill: {type(releases.error).__name__}: {releases.error}")
    releases.report(summary, report_dir)
    step("results: release under load")
    print(rollout_table(summary["rollout"]))
    return conclude(summary, report_dir), summary


def rollout_table(rollouts: dict) -> str:
    lines = []
    for name, figures in rollouts.items():
        verdict = (
            "went through"
            if figures["succeeded"]
            else f"stopped in {figures['stopped_in']}"
            + (", swapped back" if figures["rolled_back"] else ", production untouched")
        )
        served = figures["broken_version_served"]
        lines.append(
            f"  {name:<20} {verdict}; callers' requests {figures['requests']}, failed "
            f"{figures['failed_requests']}"
            + ("" if served is None else f", answered by this version {served}")
        )
        if figures["reason"]:
            lines.append(f"  {'':<20} why: {figures['reason']}")
        for s in figures["steps"]:
            lines.append(
                f"  {'':<20} {s['started_at_s']:7.1f} s  {s['region']:<9} {s['step']:<16} "
                f"{'ok' if s['ok'] else 'FAILED'}"
            )
    return "\n".join(lines)


def describe_topology(topology: Topology) -> None:
    state = topology.state()
    profile_ = topology.config.profile
    print(f"profile   {profile_.name}: rules from {profile_.source}")
    if profile_.routing is not None:
        routing, gateway = profile_.routing, profile_.gateway
        print(
            f"          Traffic Manager probes every {routing.probe_interval_s:g} s "
            f"(timeout {routing.probe_timeout_s:g} s, {routing.tolerated_failures} failure(s) "
            f"tolerated, TTL {routing.dns_ttl_s:g} s): traffic moves within "
            f"{routing.failover_s:g} s"
        )
        print(
            f"          API Management sends a request again {gateway.retries} time(s) to the "
            f"other region after {'/'.join(map(str, gateway.retry_statuses))}, no connection, "
            f"or {gateway.forward_timeout_s:g} s without an answer (retry-safe requests: "
            f"{'/'.join(gateway.retry_safe_methods)} or {gateway.idempotency_header})"
        )
    print(f"gateway   {state['gateway_url']}")
    for role, region in state["regions"].items():
        print(f"{role:<9} {region['site']}  front end {region['frontend_url']}")
    store = state["store"]
    where = f"  Azurite {store['endpoint']}, table {store['table']}" if "endpoint" in store else ""
    print(f"store     {store['kind']}{where}")


def comparison(results: dict) -> str:
    """One line per drill: the figures a reader compares across the profiles."""
    header = (
        f"  {'profile':<7} {'drill':<6} {'requests':>8} {'failed':>6} {'per fault':>10} "
        f"{'in flight':>9} {'retried':>7} {'replayed':>8} {'sustained':>9} {'item defects':>12}"
        f" {'cross-owner':>11}"
    )
    lines = [header]
    for (name, fault), summary in results.items():
        faults = summary.get("faults") or {}
        items = summary.get("items") or {}
        defects = sum(items.get(figure, 0) for figure in DEFECTS) if items else "-"
        sustained = faults.get("worst_sustained_recovery_s")
        cross = (summary.get("cross_owner") or {}).get("reads", "-")
        lines.append(
            f"  {name:<7} {fault:<6} {summary['requests']:>8} {summary['failures']:>6} "
            f"{','.join(map(str, faults.get('failures_per_fault', []))) or '-':>10} "
            f"{','.join(map(str, faults.get('in_flight_per_fault', []))) or '-':>9} "
            f"{summary['writes']['retried']:>7} {summary['writes']['replayed']:>8} "
            f"{'-' if sustained is None else f'{sustained:.2f} s':>9} {defects:>12} {cross:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.demo", description=__doc__)
    parser.add_argument(
        "--profile", choices=PROFILES, default=None, help="one profile only (default: both)"
    )
    parser.add_argument("--faults", type=int, default=3, help="region faults per drill")
    # 10 users x 10 requests/s: the shared Azurite (one Node process) and both apps fit on 2 cores.
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument(
        "--fault", choices=FAULTS, default=None, help="one drill only (default: app, then store)"
    )
    parser.add_argument(
        "--store",
        choices=(TABLE_STORE, MEMORY_STORE),
        default=TABLE_STORE,
        help="memory: each app keeps its own items, to see what a failover loses without a store",
    )
    parser.add_argument("--certs", type=Path, default=DEFAULT_CERTS)
    parser.add_argument("--skip-synth", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    report_dir = ROOT / "reports" / time.strftime("%Y%m%d-%H%M%S")
    try:
        step("certificates")
        ensure_certificates(args.certs)
        if not args.skip_synth:
            step("synthesizing the stacks (python main.py)")
            synthesize()
        if args.fault == "store" and args.store == MEMORY_STORE:
            raise RunError("--fault store needs --store table")
        if args.faults < 1:
            raise RunError(f"--faults: at least 1, got {args.faults}")
        return drills(args, report_dir)
    except (CliError, TopologyError, RunError, ProfileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
