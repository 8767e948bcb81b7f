"""`make demo`: certificates, the synthesized stacks, then two drills under load on the local
two-region stand-in (apps sharing one Azurite table account), each with a results table and
reports. Unattended; exit 0 when every goal holds.

1. region failover: the primary app is SIGKILLed and restarted; nothing created is lost.
2. store fault: the shared table store (Azurite) is stopped and started a few seconds later;
   callers get 503 + Retry-After meanwhile, never a 500, and nothing is lost.

After each drill the items are reconciled against the table itself (loadtests.reconciliation):
any item missing, duplicated, orphaned, stale or resurrected fails the drill.

    python -m loadtests.demo [--duration 60] [--fault-at 20] [--restore-at 40] [--users 20]
        [--fault app|frontend|store] [--store table|memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from app.settings import MEMORY_STORE, TABLE_STORE
from loadtests.analysis import item_threshold
from loadtests.processes import TopologyError
from loadtests.reconciliation import DEFECTS
from loadtests.run import LOCAL_PROFILE, RunError, RunSpec, conclude, run_scenario
from loadtests.topology import DEFAULT_CERTS, ROOT, Topology, TopologyConfig
from tools import certs
from tools.cli import CliError

STACKS_DIR = ROOT / "cdktf.out" / "stacks"
# What each fault takes away, how it comes back, and what it hits (a region or the store).
FAULTS = {
    "app": ("kill_app", "restore_app", "region"),
    "frontend": ("stop_frontend", "restore_frontend", "region"),
    "store": ("stop_store", "restore_store", "store"),
}
# The goals, applied as thresholds: a run that misses one exits non-zero. The reconciliation
# goals: no item missing, duplicated, orphaned, stale or resurrected.
ITEMS_RECONCILED = {item_threshold(figure): 0 for figure in DEFECTS}
GOALS = {
    "region": {"max_recovery_seconds": 2.0, "max_failure_ratio": 0.001, **ITEMS_RECONCILED},
    "store": {"max_server_errors": 0, **ITEMS_RECONCILED},
}
# The store drill: short, the store away for a few seconds.
STORE_DRILL = {"duration": 30.0, "fault_at": 10.0, "restore_at": 15.0}
DESCRIBE = {
    "app": "primary app SIGKILLed",
    "frontend": "primary front end SIGKILLed",
    "store": "table store (Azurite) stopped",
}


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


def drill(topology: Topology, args: argparse.Namespace, fault: str, report_dir: Path) -> int:
    timing = (
        {"duration": args.duration, "fault_at": args.fault_at, "restore_at": args.restore_at}
        if fault != "store" or args.fault == "store"
        else STORE_DRILL
    )
    step(
        f"{fault} fault under load: {args.users} users, {timing['duration']:g} s, "
        f"{DESCRIBE[fault]} at {timing['fault_at']:g} s, back at {timing['restore_at']:g} s"
    )
    take, bring_back, target = FAULTS[fault]
    thresholds = dict(GOALS[target])
    if args.store == MEMORY_STORE:  # shown on purpose: the in-memory store loses the items
        thresholds = {k: v for k, v in thresholds.items() if k not in ITEMS_RECONCILED}
    spec = RunSpec(
        scenario="failover",
        host=topology.gateway_url,
        key=topology.config.subscription_key,
        report_dir=report_dir,
        users=args.users,
        user_rate=10.0,
        fault_target=target,
        thresholds=thresholds,
        profile=LOCAL_PROFILE,
        items_source=topology.items_source(),
        **timing,
    )
    summary = run_scenario(spec, getattr(topology, take), getattr(topology, bring_back))
    step(f"results: {fault} fault")
    return conclude(summary, report_dir)


def drills(args: argparse.Namespace, report_root: Path) -> int:
    faults = (
        [args.fault] if args.fault else (["app", "store"] if args.store == TABLE_STORE else ["app"])
    )
    config = TopologyConfig(certs_dir=args.certs, store=args.store)
    with Topology.start(config) as topology:
        state = topology.state()
        print(f"gateway {state['gateway_url']}")
        for role, region in state["regions"].items():
            print(f"{role:<9} {region['site']}  front end {region['frontend_url']}")
        store = state["store"]
        print(
            f"store     {store['kind']}"
            + (
                f"  Azurite {store['endpoint']}, table {store['table']}"
                if "endpoint" in store
                else ""
            )
        )
        codes = [
            drill(topology, args, fault, report_root / fault if len(faults) > 1 else report_root)
            for fault in faults
        ]
        step("stopping the topology")
    print("stopped: nothing left running")
    return max(codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--fault-at", type=float, default=20.0)
    parser.add_argument("--restore-at", type=float, default=40.0)
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
        step("starting the local two-region topology (HAProxy gateway, front ends, apps, store)")
        return drills(args, report_dir)
    except (CliError, TopologyError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
