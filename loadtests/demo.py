"""`make demo`: certificates, the synthesized stacks, then failover under load on the local
two-region stand-in, with a results table and reports. Unattended; exit 0 when it all works.

    python -m loadtests.demo [--duration 60] [--fault-at 20] [--restore-at 40] [--users 20]
        [--fault app|frontend]
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

from loadtests.processes import TopologyError
from loadtests.run import RunError, RunSpec, conclude, run_scenario
from loadtests.topology import DEFAULT_CERTS, ROOT, Topology, TopologyConfig
from tools import certs
from tools.cli import CliError

STACKS_DIR = ROOT / "cdktf.out" / "stacks"
# The goals, applied as thresholds: a run that misses one exits non-zero.
# What the fault kills in the primary region, and how it comes back.
FAULTS = {"app": ("kill_app", "restore_app"), "frontend": ("stop_frontend", "restore_frontend")}
GOALS = {"max_recovery_seconds": 2.0, "max_failure_ratio": 0.001}


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


def failover_run(args: argparse.Namespace, report_dir: Path) -> int:
    with Topology.start(TopologyConfig(certs_dir=args.certs)) as topology:
        state = topology.state()
        print(f"gateway {state['gateway_url']}")
        for role, region in state["regions"].items():
            print(f"{role:<9} {region['site']}  front end {region['frontend_url']}")
        step(
            f"failover under load: {args.users} users, {args.duration:g} s, primary "
            f"{args.fault} SIGKILLed at {args.fault_at:g} s, restarted at {args.restore_at:g} s"
        )
        spec = RunSpec(
            scenario="failover",
            host=topology.gateway_url,
            key=topology.config.subscription_key,
            report_dir=report_dir,
            users=args.users,
            duration=args.duration,
            user_rate=10.0,
            fault_at=args.fault_at,
            restore_at=args.restore_at,
            thresholds=dict(GOALS),
        )
        fault, restore = FAULTS[args.fault]
        summary = run_scenario(spec, getattr(topology, fault), getattr(topology, restore))
        step("results")
        code = conclude(summary, report_dir)
        step("stopping the topology")
    print("stopped: nothing left running")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--fault-at", type=float, default=20.0)
    parser.add_argument("--restore-at", type=float, default=40.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--fault", choices=FAULTS, default="app", help="what to SIGKILL")
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
        step("starting the local two-region topology (HAProxy gateway, front ends, apps)")
        return failover_run(args, report_dir)
    except (CliError, TopologyError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
