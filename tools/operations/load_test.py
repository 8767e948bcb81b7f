"""Run the Locust scenarios headless against a deployed stack, optionally with a failover drill.

    python -m tools.operations.load_test outputs.json --users 50 --duration 300 [--failover] \
        [--report-dir reports/load]
    python -m tools.operations.load_test outputs.json --users 50 --duration 300 --database-failover
    python -m tools.operations.load_test outputs.json --restore   # start the primary web app (idempotent)

Reads the gateway URL, API path, subscription key and primary web app from the stack outputs,
then runs `python -m loadtests.run throughput|failover ...` (the key goes through
$LOCUST_SUBSCRIPTION_KEY, not the command line). When the stack takes Entra ID tokens (output
`api_identifier_uri`), the job's identity asks for one (tools.delivery.access_token, as the
smoke checks do) and every Locust user sends it ($LOCUST_ACCESS_TOKEN): one caller. The failover drill stops the
primary web app (`az webapp stop`) a third of the way in and starts it again two thirds of the
way in; whatever happens (thresholds broken, Locust crashed, run cancelled), the primary is
started again before this program exits. Exits with the load test's exit code.

`--database-failover` moves the Cosmos DB write region to the secondary a third of the way in
and back two thirds in (tools.operations.db_failover move / back; `back` again whatever happens), then
reports items lost and seconds without a successful write (tools.operations.db_failover report) and fails
when an item was lost (writes are expected to pause while the region moves: no failure-ratio
threshold for this drill).

`--restore` only starts the primary web app (`az webapp start` of a running app is a no-op).
The load-test workflow runs it in a step of its own under `if: always()`: when a run is
cancelled, the runner signals this program and kills it a few seconds later, which may be
before its own restart finished; the always-step runs after the cancellation, whatever
happened before.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.delivery.access_token import access_token
from tools.delivery.stack_outputs import StackOutputs, WebApp, load

SUBSCRIPTION_KEY_ENV = "LOCUST_SUBSCRIPTION_KEY"  # read by loadtests.run
ACCESS_TOKEN_ENV = "LOCUST_ACCESS_TOKEN"  # read by loadtests/locust_support.py
MAX_FAILURE_RATIO = "0.01"  # throughput: at most 1 % failed requests
DRILL_MAX_FAILURE_RATIO = "0.05"  # failover: requests in flight when the region stops may fail
MAX_RECOVERY_SECONDS = "120"  # Traffic Manager probe interval x tolerated failures + DNS TTL
# loadtests.run's threshold flags: a plain load test, and a region failing over under load
THROUGHPUT_THRESHOLDS = ("--max-failure-ratio", MAX_FAILURE_RATIO)
FAILOVER_THRESHOLDS = ("--max-failure-ratio", DRILL_MAX_FAILURE_RATIO,
                       "--max-recovery-seconds", MAX_RECOVERY_SECONDS)


def az_webapp(verb: str, app: WebApp) -> list[str]:
    return ["az", "webapp", verb, "--name", app.name, "--resource-group", app.resource_group,
            "--only-show-errors"]


def db_failover_command(outputs_path: Path, verb: str, window: int | None = None) -> list[str]:
    """`window`: seconds the move may take (until the move back starts), polled 5+ times."""
    command = [sys.executable, "-m", "tools.operations.db_failover", str(outputs_path), verb]
    if window:
        command += ["--timeout", str(window), "--poll-seconds", str(max(1, min(10, window // 5)))]
    return command


def load_test_command(outputs: StackOutputs, users: int, duration: int, failover: bool,
                      report_dir: Path, database_failover: Path | None = None) -> list[str]:
    """`database_failover`: the outputs file, for a database failover drill."""
    drill = failover or database_failover is not None
    command = [
        sys.executable, "-m", "loadtests.run", "failover" if drill else "throughput",
        "--host", outputs.gateway_urls[0].rstrip("/"),
        "--api-path", "/" + outputs.api_path.strip("/"),
        "--users", str(users),
        "--duration", str(duration),
        "--report-dir", str(report_dir),
        "--profile", "deployed",
    ]
    if not drill:
        return command + list(THROUGHPUT_THRESHOLDS)
    if database_failover is not None:
        # The move must be over before the move back starts: bounded by the gap between them.
        window = 2 * duration // 3 - duration // 3
        return command + [
            "--fault-at", str(duration // 3),
            "--fault-command", shlex.join(db_failover_command(database_failover, "move", window)),
            "--restore-at", str(2 * duration // 3),
            "--restore-command", shlex.join(db_failover_command(database_failover, "back")),
            # Writes pause while the write region moves: no failure-ratio threshold; the verdict
            # is items lost (database_verdict), the pause is reported.
        ]
    primary = outputs.web_apps[0]
    return command + [
        "--fault-at", str(duration // 3),
        "--fault-command", shlex.join(az_webapp("stop", primary)),
        "--restore-at", str(2 * duration // 3),
        "--restore-command", shlex.join(az_webapp("start", primary)),
        *FAILOVER_THRESHOLDS,
    ]


def caller_environment(outputs: StackOutputs) -> dict[str, str]:
    """Who the load calls as, for loadtests.run's environment (never its command line): the
    subscription key and, for an API that takes Entra ID tokens, the job identity's token."""
    env = {SUBSCRIPTION_KEY_ENV: outputs.subscription_key}
    token = access_token(outputs)
    if token is not None:
        env[ACCESS_TOKEN_ENV] = token
    return env


def run(command: list[str], caller: dict[str, str], restore: list[str] | None) -> int:
    """Run the load test as `caller` (caller_environment); always run `restore` afterwards
    (when given)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # a cancelled job sends SIGTERM
    try:
        env = {**os.environ, **caller}
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        signal.signal(signal.SIGTERM, previous)
        if restore:
            print(f"restoring: {shlex.join(restore)}", flush=True)
            if subprocess.run(restore, check=False).returncode != 0:
                print("error: restoring the primary web app failed: start it by hand",
                      file=sys.stderr)


def start_primary(outputs: StackOutputs) -> int:
    command = az_webapp("start", outputs.web_apps[0])
    print(f"restoring: {shlex.join(command)}", flush=True)
    try:
        code = subprocess.run(command, check=False).returncode
    except FileNotFoundError:
        raise CliError("Azure CLI `az` not found on PATH") from None
    if code != 0:
        raise CliError(f"starting {outputs.web_apps[0].name} failed (az exit code {code}):"
                       " start it by hand")
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("--users", type=int)
    parser.add_argument("--duration", type=int, help="seconds")
    parser.add_argument("--failover", action="store_true", help="stop the primary mid-run")
    parser.add_argument("--database-failover", action="store_true",
                        help="move the Cosmos DB write region to the secondary mid-run and back")
    parser.add_argument("--report-dir", type=Path, default=Path("reports/load"))
    parser.add_argument("--restore", action="store_true",
                        help="only start the primary web app again (after a drill)")
    args = parser.parse_args(argv)
    if args.restore:
        return start_primary(load(args.outputs))
    if args.users is None or args.duration is None:
        raise CliError("--users and --duration are required (or --restore)")
    if args.users < 1 or args.duration < 30:
        raise CliError("--users must be at least 1 and --duration at least 30 seconds")
    if args.failover and args.database_failover:
        raise CliError("one drill per run: --failover or --database-failover")
    outputs = load(args.outputs)
    if args.database_failover and outputs.cosmos is None:
        raise CliError("--database-failover needs the Cosmos DB stack outputs (cosmos_*)")
    command = load_test_command(outputs, args.users, args.duration, args.failover,
                                args.report_dir,
                                args.outputs if args.database_failover else None)
    if args.database_failover:
        back = db_failover_command(args.outputs, "back")
        code = run(command, caller_environment(outputs), back)
        return database_verdict(code, args.report_dir)
    restore = az_webapp("start", outputs.web_apps[0]) if args.failover else None
    return run(command, caller_environment(outputs), restore)


def database_verdict(code: int, report_dir: Path) -> int:
    """The load test's exit code, or 1 when the database failover lost, duplicated, orphaned or
    changed an item (or nothing was reconciled: no figure is not a zero)."""
    from tools.operations import (
        db_failover,  # reads loadtests' records: imported only for this drill
    )

    if not (report_dir / "summary.json").is_file():
        return code or 1
    result = db_failover.report(report_dir)
    print(f"database failover: {result['items_lost']} item(s) lost,"
          f" {result['items_duplicated']} duplicated, {result['items_orphaned']} orphaned,"
          f" {result['items_stale']} stale (goal 0 each),"
          f" {result['seconds_without_successful_writes']} s without a successful write")
    defects = [name for name in ("items_lost", "items_duplicated", "items_orphaned", "items_stale")
               if result[name] is None or result[name] > 0]
    if defects:
        print(f"error: the database failover left {', '.join(defects)} (reconciled against"
              " the items the load test wrote)", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(run_cli(main))
