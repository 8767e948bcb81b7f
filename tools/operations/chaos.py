"""Chaos Studio experiments of a stack: start one, wait for its fault to end, cancel it.

    python -m tools.operations.chaos outputs.json list
    python -m tools.operations.chaos outputs.json start FAULT [--timeout 600] [--poll-seconds 10]
    python -m tools.operations.chaos outputs.json finish FAULT [--grace 180] [--poll-seconds 10]
    python -m tools.operations.chaos outputs.json cancel FAULT [--timeout 600] [--poll-seconds 10]

FAULT is a key of the stack output `chaos_experiments` (stacks/drills.py): `region-outage-primary`,
`region-outage-secondary`, `database-failover`, `vault-deny`. Each experiment carries its own
duration: Chaos Studio ends the fault itself when it has run that long, also when the machine
that started it is gone.

`start` asks ARM to start the experiment (POST .../start) and waits, bounded, until a new
execution of it is Running, then prints `FAULT_TIME=<its startedAt, epoch s>` (`finish` prints
`RESTORE_TIME=<its stoppedAt>`): loadtests.run, which runs them as fault and restore commands,
takes those as the fault window (a start that fails, e.g. a missing role of the experiment's
identity, ends as Failed: the error names it). `finish` waits for the running execution to end
by itself, `--grace` seconds at most, then cancels it; it fails unless the execution ended
`Success`. `cancel` cancels the running execution and waits until it has stopped; with none
running it only says so (the workflow runs it in an `always()` step: idempotent).

Chaos Studio REST API 2024-01-01 (learn.microsoft.com/rest/api/chaosstudio: Experiments - Start,
Cancel, List All Executions); through `az rest`, which signs in as the workflow's identity.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tools.cli import CliError, poll_until, read_json, run_cli
from tools.operations.azure_cli import az

API_VERSION = "2024-01-01"
ARM = "https://management.azure.com"
OUTPUT = "chaos_experiments"
# Execution statuses (the API documents a free string; seen: Running, Success, Failed,
# Cancelled, Cancelling, and queued states before Running). Compared case-insensitively.
RUNNING = "running"
# What `start` and `finish` print for loadtests.run, which takes them as the fault window.
FAULT_TIME, RESTORE_TIME = "FAULT_TIME", "RESTORE_TIME"
ENDED = {"success", "failed", "cancelled"}


@dataclass(frozen=True)
class Experiment:
    key: str
    id: str
    name: str
    duration_seconds: int


@dataclass(frozen=True)
class Execution:
    name: str
    status: str  # lower case
    started_at: str
    stopped_at: str | None

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def started(self) -> float:
        """startedAt as epoch seconds (Chaos Studio writes ISO 8601, UTC)."""
        return datetime.fromisoformat(self.started_at).timestamp()

    @property
    def stopped(self) -> float | None:
        return datetime.fromisoformat(self.stopped_at).timestamp() if self.stopped_at else None


def experiments(raw: dict) -> dict[str, Experiment]:
    """The stack output `chaos_experiments` (absent or null: the stack has no drills)."""
    value = (raw.get(OUTPUT) or {}).get("value") if isinstance(raw, dict) else None
    if not value:
        raise CliError(f"output {OUTPUT!r} missing: the stack has no Chaos Studio experiments"
                       " (set [drills] enabled = true in the environment's config)")
    found = {}
    for key, entry in value.items():
        try:
            found[key] = Experiment(key, str(entry["id"]), str(entry["name"]),
                                    int(entry["duration_seconds"]))
        except (KeyError, TypeError, ValueError):
            raise CliError(f"output {OUTPUT!r}: entry {key!r} needs id, name and"
                           " duration_seconds") from None
    return found


def experiment(raw: dict, key: str) -> Experiment:
    found = experiments(raw)
    if key not in found:
        raise CliError(f"no experiment {key!r} in the stack (it has: {', '.join(sorted(found))})")
    return found[key]


def _url(experiment: Experiment, verb: str = "") -> str:
    return f"{ARM}{experiment.id}{verb}?api-version={API_VERSION}"


def executions(experiment: Experiment) -> list[Execution]:
    """Every execution of the experiment, oldest first."""
    text = az("rest", "--method", "get", "--url", _url(experiment, "/executions"))
    try:
        rows = json.loads(text or "{}").get("value", [])
    except (json.JSONDecodeError, AttributeError):
        raise CliError(f"executions of {experiment.name}: not the JSON ARM returns") from None
    found = [
        Execution(row["name"], str(row["properties"].get("status", "")).lower(),
                  row["properties"].get("startedAt", ""), row["properties"].get("stoppedAt"))
        for row in rows
    ]
    return sorted(found, key=lambda e: e.started_at)


def latest(experiment: Experiment) -> Execution | None:
    found = executions(experiment)
    return found[-1] if found else None


def _wait(experiment: Experiment, done, what: str, timeout: float, poll: float,
          **clock) -> Execution:
    """Poll the executions until `done(executions)` returns one (bounded by `timeout`)."""
    return poll_until(lambda: done(executions(experiment)), f"{experiment.name}: {what}",
                      timeout, poll, **clock)


def start(experiment: Experiment, timeout: float, poll: float, **clock) -> Execution:
    """Start the experiment; return its new execution once it runs."""
    found = executions(experiment)
    before = {e.name for e in found}
    current = next((e for e in found if not e.ended), None)
    if current is not None:
        raise CliError(f"{experiment.name} is already running (execution {current.name},"
                       f" since {current.started_at}): cancel it first")
    az("rest", "--method", "post", "--url", _url(experiment, "/start"))

    def running(found: list[Execution]) -> Execution | None:
        new = [e for e in found if e.name not in before]
        if new and new[-1].ended and new[-1].status != "success":
            raise CliError(f"{experiment.name} did not start: its execution {new[-1].name}"
                           f" ended {new[-1].status} (check the experiment identity's role)")
        # Success already: a short fault ran and ended between two polls
        return new[-1] if new and new[-1].status in (RUNNING, "success") else None

    execution = _wait(experiment, running, "a running execution", timeout, poll, **clock)
    print(f"{experiment.key}: {experiment.name} running since {execution.started_at}"
          f" (ends by itself after {experiment.duration_seconds} s)", flush=True)
    # For loadtests.run (its fault command): the fault's own start, not when it was asked for.
    print(f"{FAULT_TIME}={execution.started:.3f}", flush=True)
    return execution


def cancel(experiment: Experiment, timeout: float, poll: float, **clock) -> Execution | None:
    """Cancel the running execution, wait until it stopped; None when nothing ran."""
    current = latest(experiment)
    if current is None or current.ended:
        print(f"{experiment.key}: nothing running, nothing to cancel", flush=True)
        return None
    az("rest", "--method", "post", "--url", _url(experiment, "/cancel"))
    stopped = _wait(experiment, lambda found: _ended(found, current.name), "the cancellation",
                    timeout, poll, **clock)
    print(f"{experiment.key}: execution {stopped.name} {stopped.status} at {stopped.stopped_at}",
          flush=True)
    return stopped


def finish(experiment: Experiment, grace: float, poll: float, **clock) -> Execution:
    """Wait (at most `grace` s) for the running execution to end by itself, else cancel it."""
    current = latest(experiment)
    if current is None:
        raise CliError(f"{experiment.name} has never run")
    try:
        ended = _wait(experiment, lambda found: _ended(found, current.name),
                      "the end of the fault", grace, poll, **clock)
    except CliError:
        cancel(experiment, grace, poll, **clock)
        raise CliError(f"{experiment.name} was still running {grace:.0f} s after its fault"
                       " should have ended: cancelled") from None
    if ended.status != "success":
        raise CliError(f"{experiment.name}: execution {ended.name} ended {ended.status}")
    print(f"{experiment.key}: fault over at {ended.stopped_at} ({ended.status})", flush=True)
    print(f"{RESTORE_TIME}={ended.stopped:.3f}", flush=True)  # for loadtests.run
    return ended


def _ended(found: list[Execution], name: str) -> Execution | None:
    return next((e for e in found if e.name == name and e.ended), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("command", choices=["list", "start", "finish", "cancel"])
    parser.add_argument("fault", nargs="?", help="a key of the output chaos_experiments")
    parser.add_argument("--timeout", type=float, default=600, help="seconds (start, cancel)")
    parser.add_argument("--grace", type=float, default=180,
                        help="seconds to wait for the fault to end by itself (finish)")
    parser.add_argument("--poll-seconds", type=float, default=10)
    args = parser.parse_args(argv)
    raw = read_json(args.outputs, "stack outputs")
    if args.command == "list":
        for found in experiments(raw).values():
            print(f"{found.key}: {found.name} ({found.duration_seconds} s)")
        return 0
    if not args.fault:
        raise CliError(f"{args.command} needs the fault (a key of the output {OUTPUT})")
    if min(args.timeout, args.grace) <= 0 or args.poll_seconds <= 0:
        raise CliError("--timeout, --grace and --poll-seconds must be positive")
    chosen = experiment(raw, args.fault)
    if args.command == "start":
        start(chosen, args.timeout, args.poll_seconds)
    elif args.command == "finish":
        finish(chosen, args.grace, args.poll_seconds)
    else:
        cancel(chosen, args.timeout, args.poll_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
