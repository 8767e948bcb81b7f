"""Run a Locust scenario headless, inject a fault (and a restore) at set times, analyse the
per-request records, write the reports and apply the thresholds.

    python -m loadtests.run {throughput,failover,security} --host URL --key KEY
        [--cert PEM --cert-key KEY] [--ca-bundle PEM] [--api-path /todo] [--frontend-urls URLS]
        [--users N] [--spawn-rate R] [--duration SECONDS] [--user-rate RPS] [--processes N]
        [--fault-at SECONDS --fault-command CMD] [--restore-at SECONDS --restore-command CMD]
        (--fault-at and --restore-at may be repeated: several faults in one run)
        [--report-dir DIR] [--max-failure-ratio X] [--max-failed-gets N]
        [--max-recovery-seconds S] [--max-failback-seconds S] [--max-p95-ms MS] [--min-rps R]
        [--profile local|azure] [--store-table NAME] [--max-items-missing N] ...
        [--token-issuer ISSUER_JSON] [--max-cross-owner-reads N]

Items are reconciled (loadtests.reconciliation) against the store with --store-table (the
connection string from $LOADTESTS_STORE_CONNECTION_STRING), otherwise, for a failover run,
against the API's list (labelled: not the store).

Exit status: 0 when every threshold holds, 1 when one breaks, 2 when the run itself failed.
Writes into the report dir: locust.html, locust_*.csv, locust.log, records/, summary.json,
timeline.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from loadtests import analysis, fidelity, report
from loadtests.item_sources import ApiItems, ItemSource, ItemSourceError, TableItems
from loadtests.processes import kill_tree
from loadtests.reconciliation import ReconciliationError, StoredItem, reconcile
from loadtests.token_issuer import IssuerConfig, IssuerError
from tools.cli import write_atomic

HERE = Path(__file__).resolve().parent
SCENARIOS = ("throughput", "failover", "security")
PROGRESS_SECONDS = 5.0
GRACE_SECONDS = 30.0
# The report's label of what was under load: a fidelity profile of the local stand-in
# (loadtests.fidelity: how close it is to what is deployed), or "deployed" (Azure itself).
LOCAL_PROFILE, DEPLOYED = fidelity.LOCAL, "deployed"
PROFILES = (*fidelity.PROFILES, DEPLOYED)
STORE_CONNECTION_STRING_ENV = "LOADTESTS_STORE_CONNECTION_STRING"
REPORTED_TIMES = ("FAULT_TIME", "RESTORE_TIME")  # ShellCommand


class RunError(Exception):
    """The run could not be made (not a threshold breach)."""


@dataclass
class RunSpec:
    scenario: str
    host: str
    key: str
    report_dir: Path
    users: int = 20
    spawn_rate: float | None = None
    duration: float = 60.0
    user_rate: float = 0.0
    processes: int | None = None
    cert: str = ""
    cert_key: str = ""
    ca_bundle: str = ""
    api_path: str = ""
    frontend_urls: str = ""
    # The local topology's issuer config (loadtests.token_issuer): each user its own caller.
    token_issuer: str = ""
    # Faults: (seconds after the start, seconds of its restore or None), in time order.
    schedule: list[tuple[float, float | None]] = field(default_factory=list)
    fault_target: str = "region"  # or "store": the shared table store is what fails
    thresholds: dict[str, float | None] = field(default_factory=dict)
    profile: str = LOCAL_PROFILE
    # Where the items are read before and after the run to reconcile them (None: not at all).
    items_source: ItemSource | None = None
    # Events of the run's environment for the report (the Traffic Manager model's), since a time.
    events: Callable[[float], list[dict]] | None = None
    # Work done under the load (a release: loadtests.demo), started this many seconds in, in a
    # thread of its own; the run waits for it before it ends.
    background: Callable[[], None] | None = None
    background_at: float = 0.0


def locust_command(spec: RunSpec) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / f"locustfile_{spec.scenario}.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(spec.users),
        "-r",
        f"{spec.spawn_rate or spec.users:g}",
        "-t",
        f"{spec.duration:g}s",
        "--stop-timeout",
        "5",
        "--host",
        spec.host,
        "--csv",
        str(spec.report_dir / "locust"),
        "--html",
        str(spec.report_dir / "locust.html"),
        "--exit-code-on-error",
        "0",
    ]
    if spec.processes:
        command += ["--processes", str(spec.processes)]
    return command


def locust_environment(spec: RunSpec) -> dict[str, str]:
    """The scenario's options as environment variables (keeps the key out of `ps`)."""
    values = {
        "LOCUST_SUBSCRIPTION_KEY": spec.key,
        "LOCUST_API_PATH": spec.api_path,
        "LOCUST_CLIENT_CERT": spec.cert,
        "LOCUST_CLIENT_KEY": spec.cert_key,
        "LOCUST_CA_BUNDLE": spec.ca_bundle,
        "LOCUST_USER_RATE": str(spec.user_rate),
        "LOCUST_RECORDS_DIR": str(spec.report_dir / "records"),
        "LOCUST_FRONTEND_URLS": spec.frontend_urls,
        "LOCUST_TOKEN_ISSUER": spec.token_issuer,
    }
    return {**os.environ, **values}


class Progress:
    """Reads the records as they are written and prints a line every few seconds."""

    def __init__(self, directory: Path, say: Callable[[str], None]) -> None:
        self.directory = directory
        self.say = say
        self.offsets: dict[Path, int] = {}
        self.requests = self.failures = 0
        self.sites: dict[str, int] = {}

    def _read_new(self) -> list[dict]:
        records = []
        for path in self.directory.glob("records-*.jsonl"):
            with open(path) as file:
                file.seek(self.offsets.get(path, 0))
                text = file.read()
            complete = text[: text.rfind("\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            records += [json.loads(line) for line in complete.splitlines() if line]
        return records

    def report(self, elapsed: float) -> None:
        new = self._read_new()
        failures = sum(analysis.failed(r) for r in new)
        self.requests += len(new)
        self.failures += failures
        serving = analysis.main_site(new) or "-"
        self.say(
            f"  {elapsed:5.0f} s  {len(new) / PROGRESS_SECONDS:7.1f} req/s  "
            f"failures +{failures:<4} (total {self.failures})  serving {serving}"
        )


class ShellCommand:
    """A fault or restore command, run in the background (it may take a while: `az`); once it
    exited non-zero, `failure` says so. A command that knows better than its own start when its
    fault began or ended (a Chaos Studio experiment: queued first) prints `FAULT_TIME=<epoch>`
    or `RESTORE_TIME=<epoch>` on a line of its own: `reported` holds those of its last call."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.failure: str | None = None
        self.reported: dict[str, float] = {}

    def __call__(self) -> None:
        self.reported = {}
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with subprocess.Popen(self.command, shell=True, stdout=subprocess.PIPE, text=True) as child:
            for line in child.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                name, _, value = line.strip().partition("=")
                if name in REPORTED_TIMES:
                    try:
                        self.reported[name] = float(value)
                    except ValueError:
                        pass
        if child.returncode != 0:
            self.failure = f"`{self.command}` exited with status {child.returncode}"


def read_items(source: ItemSource, when: str) -> list[StoredItem]:
    try:
        return source.read()
    except ItemSourceError as error:
        raise RunError(f"items {when}: {error}") from None


def reconciled(spec: RunSpec, records: list[dict], baseline: list[StoredItem] | None) -> dict:
    """The reconciliation figures of the run (loadtests.reconciliation)."""
    source = spec.items_source
    stored = read_items(source, "after the run")
    try:
        sent = analysis.load_sent_tokens(spec.report_dir / "records")
        items = reconcile(records, stored, baseline or [], read_from=source.describe(), sent=sent)
    except ReconciliationError as error:
        raise RunError(f"reconciliation: {error}") from None
    return items


def drive(
    spec: RunSpec,
    fault: Callable[[], object] | None,
    restore: Callable[[], None] | None,
    say: Callable[[str], None],
) -> tuple[int, list[dict]]:
    """Run Locust; call `fault` and `restore` at the times of spec.schedule.

    Returns (exit code, one dict per fault fired: fault_time, restore_time (epoch), how long
    the restore call took, and what a fault call returns as a dict: a kill says when exactly it
    struck (fault_time) and how many requests the app was serving (app_serving))."""
    (spec.report_dir / "records").mkdir(parents=True, exist_ok=True)
    progress = Progress(spec.report_dir / "records", say)
    schedule = list(spec.schedule) if fault else []
    fired: list[dict] = []
    with open(spec.report_dir / "locust.log", "wb") as log:
        # In this process's group (a group kill from above, a CI job's cancel or a test's
        # timeout, reaches it); its workers (`--processes`) are its children: kill_tree.
        process = subprocess.Popen(
            locust_command(spec), env=locust_environment(spec), stdout=log, stderr=subprocess.STDOUT
        )
        started = time.time()
        next_progress = PROGRESS_SECONDS
        worker = threading.Thread(target=spec.background or (lambda: None), name="background")
        try:
            while process.poll() is None:
                elapsed = time.time() - started
                if spec.background and not worker.ident and elapsed >= spec.background_at:
                    worker.start()
                if len(fired) < len(schedule) and elapsed >= schedule[len(fired)][0]:
                    fired.append({"fault_time": time.time(), "restore_time": None})
                    said = fault()
                    if isinstance(said, dict):  # a kill: when exactly, and what it cut
                        fired[-1].update(said)
                    say(f"  {elapsed:5.0f} s  fault {len(fired)} injected")
                if getattr(fault, "failure", None):  # no fault, no drill: stop the load
                    raise RunError(f"the fault command failed: {fault.failure}")
                if fired:  # the times a fault or restore command reported (ShellCommand)
                    reported = getattr(fault, "reported", {})
                    if "FAULT_TIME" in reported:
                        fired[-1]["fault_time"] = reported["FAULT_TIME"]
                    if fired[-1]["restore_time"] and "RESTORE_TIME" in getattr(restore, "reported", {}):
                        fired[-1]["restore_time"] = restore.reported["RESTORE_TIME"]
                restore_at = schedule[len(fired) - 1][1] if fired else None
                due = restore_at is not None and elapsed >= restore_at
                if restore and due and fired[-1]["restore_time"] is None:
                    fired[-1]["restore_time"] = time.time()
                    restore()
                    took = fired[-1]["restore_took_s"] = round(
                        time.time() - fired[-1]["restore_time"], 3
                    )
                    say(f"  {elapsed:5.0f} s  restored ({took:.1f} s)")
                if elapsed >= next_progress:
                    progress.report(elapsed)
                    next_progress += PROGRESS_SECONDS
                if elapsed > spec.duration + GRACE_SECONDS:
                    kill_tree(process.pid)
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                kill_tree(process.pid)
            process.wait()
            if worker.ident:
                worker.join()
    return process.returncode, fired


def summarise(
    spec: RunSpec,
    faults: list[dict] | None = None,
    baseline: list[StoredItem] | None = None,
) -> dict:
    """`faults`: the faults fired (drive()); `baseline`: the items the store held before the
    run (read from spec.items_source)."""
    records = analysis.load_records(spec.report_dir / "records")
    if not records:
        raise RunError(f"no request records in {spec.report_dir / 'records'}/ (see locust.log)")
    summary = {
        "scenario": spec.scenario,
        "host": spec.host,
        "profile": spec.profile,
        **analysis.request_stats(records),
        "writes": write_retries(records),
        "cross_owner": analysis.cross_owner_reads(records),
    }
    start = records[0]["t"]
    if faults:
        # The first fault's figures under the names a single-fault run always had.
        first = faults[0]
        fault_time, restore_time = first["fault_time"], first["restore_time"]
        summary["fault_time"], summary["restore_time"] = fault_time, restore_time
        summary["fault_at_s"] = round(fault_time - start, 3)
        summary["restore_at_s"] = round(restore_time - start, 3) if restore_time else None
        if "restore_took_s" in first:
            summary["restore_took_s"] = first["restore_took_s"]
        summary["failover"] = analysis.failover_summary(records, fault_time, restore_time)
        if spec.fault_target == "store":
            summary["store_fault"] = analysis.store_fault_summary(records, fault_time, restore_time)
        summary["recovery_s"] = summary["failover"]["recovery_s"]
        summary["failback_s"] = summary["failover"]["failback_s"]
        cycles = analysis.fault_cycles(records, faults)
        for cycle, fault in zip(cycles["faults"], faults, strict=True):
            if "app_serving" in fault:  # a kill: what the app was serving (its front end's count)
                cycle["app_serving_at_kill"] = fault["app_serving"]
            cycle["restore_took_s"] = fault.get("restore_took_s")
        serving = [c["app_serving_at_kill"] for c in cycles["faults"] if "app_serving_at_kill" in c]
        cycles["min_app_serving_at_kill"] = min(serving) if len(serving) == len(faults) else None
        summary["faults"] = cycles
    if spec.events is not None:
        events = spec.events(start)
        summary["events"] = [{**event, "at_s": round(event["t"] - start, 3)} for event in events]
        for cycle, fault in zip(summary.get("faults", {}).get("faults", []), faults, strict=True):
            cycle |= traffic_moves(events, fault)
    if spec.items_source is not None:
        summary["items"] = reconciled(spec, records, baseline)
    summary["per_second"] = analysis.per_second(records, start)
    summary["breaches"] = analysis.breaches(summary, spec.thresholds)
    write_atomic(spec.report_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    marks = [
        (f["fault_time"] - start, f["restore_time"] - start if f["restore_time"] else None)
        for f in faults or []
    ]
    report.timeline_png(spec.report_dir / "timeline.png", summary["per_second"], marks=marks)
    return summary


def write_retries(records: list[dict]) -> dict:
    """Keyed writes sent again: by the users after a 409 (key in flight) or a 503 (store away),
    and answers the app replayed; `replayed_unasked`: replays no user asked for on purpose
    (a gateway's retry, or a user's own retry, found the write already applied)."""
    retried = Counter(r["status"] for r in records if r["outcome"] == "retried")
    replayed = [r for r in records if r.get("replayed")]
    return {
        "retried": sum(retried.values()),
        "retried_after_409": retried[409],
        "retried_after_503": retried[503],
        "replayed": len(replayed),
        "replayed_unasked": sum(not r.get("deliberate_replay") for r in replayed),
    }


def traffic_moves(events: list[dict], fault: dict) -> dict:
    """When the gateway followed Traffic Manager away from the primary after the fault, and back
    after the restore (seconds), from the model's events; {} when it never moved."""
    follows = [e for e in events if e["event"] == "gateway follows"]
    away = next(
        (e["t"] for e in follows if not e["primary"] and e["t"] >= fault["fault_time"]), None
    )
    if away is None:
        return {}
    restore = fault["restore_time"]
    back = next((e["t"] for e in follows if e["primary"] and restore and e["t"] >= restore), None)
    return {
        "traffic_moved_s": round(away - fault["fault_time"], 3),
        "traffic_back_s": round(back - restore, 3) if back is not None else None,
    }


def run_scenario(
    spec: RunSpec,
    fault: Callable[[], object] | None = None,
    restore: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    spec.report_dir.mkdir(parents=True, exist_ok=True)
    source = spec.items_source
    baseline = read_items(source, "before the run") if source is not None else None
    code, faults = drive(spec, fault, restore, say)
    if code != 0:
        raise RunError(f"Locust exited with status {code}; see {spec.report_dir / 'locust.log'}")
    return summarise(spec, faults, baseline)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument(
        "--host", required=True, help="gateway URL (Azure: https://<apim>.azure-api.net)"
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("LOCUST_SUBSCRIPTION_KEY", ""),
        help="subscription key (default: $LOCUST_SUBSCRIPTION_KEY)",
    )
    parser.add_argument("--cert", default="", help="client certificate PEM to present")
    parser.add_argument("--cert-key", default="", help="its private key")
    parser.add_argument("--ca-bundle", default="", help="CA to verify HTTPS servers")
    parser.add_argument("--api-path", default="", help="API path prefix (Azure: /todo)")
    parser.add_argument("--frontend-urls", default="", help="security: regional front ends")
    parser.add_argument(
        "--token-issuer",
        default="",
        metavar="ISSUER_JSON",
        help="the local topology's issuer.json: every user gets a bearer token of its own",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=None, help="default: all at once")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--user-rate", type=float, default=0.0, help="requests/s per user")
    parser.add_argument("--processes", type=int, default=None, help="Locust worker processes")
    parser.add_argument(
        "--fault-at",
        type=float,
        action="append",
        default=None,
        help="seconds after the start (repeat for several faults)",
    )
    parser.add_argument("--fault-command", default=None, help="shell command injecting the fault")
    parser.add_argument(
        "--restore-at", type=float, action="append", default=None, help="one per --fault-at"
    )
    parser.add_argument("--restore-command", default=None)
    parser.add_argument(
        "--fault-target",
        choices=("region", "store"),
        default="region",
        help="what the fault takes away: a region (default) or the shared store (adds the "
        "503 window and the recovery after the restart to the report)",
    )
    parser.add_argument("--report-dir", type=Path, default=None, help="default: reports/<time>")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=LOCAL_PROFILE,
        help="what is under load, for the report: a stand-in profile, or deployed (Azure)",
    )
    parser.add_argument(
        "--store-table",
        default=None,
        metavar="NAME",
        help=f"reconcile the items against this table (connection string from "
        f"${STORE_CONNECTION_STRING_ENV}); default for failover: the API's list",
    )
    add_threshold_flags(parser)
    return parser


def add_threshold_flags(parser: argparse.ArgumentParser) -> None:
    for name, (_, kind, _) in analysis.THRESHOLDS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    if not args.key:
        raise RunError("--key (or $LOCUST_SUBSCRIPTION_KEY) is required")
    if args.token_issuer:
        try:
            IssuerConfig.read(args.token_issuer)
        except IssuerError as error:
            raise RunError(f"--token-issuer: {error}") from None
    if (args.fault_at is None) != (args.fault_command is None):
        raise RunError("--fault-at and --fault-command go together")
    if (args.restore_at is None) != (args.restore_command is None):
        raise RunError("--restore-at and --restore-command go together")
    faults, restores = args.fault_at or [], args.restore_at or []
    if restores and len(restores) != len(faults):
        raise RunError(f"--restore-at: one per --fault-at ({len(faults)}), got {len(restores)}")
    schedule = list(zip(faults, restores or [None] * len(faults), strict=True))
    moments = [m for pair in schedule for m in pair if m is not None]
    if moments != sorted(moments) or len(set(moments)) != len(moments):
        raise RunError("--fault-at/--restore-at: each restore after its fault, before the next")
    thresholds = {name: getattr(args, name) for name in analysis.THRESHOLDS}
    if args.scenario == "security" and thresholds["max_failure_ratio"] is None:
        thresholds["max_failure_ratio"] = 0.0  # every refused call must be refused
    report_dir = args.report_dir or Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    given = {f.name: getattr(args, f.name) for f in fields(RunSpec) if hasattr(args, f.name)}
    spec = RunSpec(
        **{**given, "report_dir": report_dir, "thresholds": thresholds, "schedule": schedule}
    )
    spec.items_source = items_source(args, spec)
    return spec


def items_source(args: argparse.Namespace, spec: RunSpec) -> ItemSource | None:
    """The table named by --store-table; else, for a failover run, the API's list, unless the
    users are callers of their own (--token-issuer): each would list only its own items."""
    if args.store_table is not None:
        connection_string = os.environ.get(STORE_CONNECTION_STRING_ENV, "")
        if not connection_string:
            raise RunError(
                f"--store-table needs ${STORE_CONNECTION_STRING_ENV} (its connection string)"
            )
        return TableItems(connection_string, args.store_table)
    if spec.scenario == "failover" and not spec.token_issuer:
        return ApiItems(
            spec.host, spec.key, spec.api_path, spec.ca_bundle, spec.cert, spec.cert_key
        )
    return None


def conclude(summary: dict, report_dir: Path) -> int:
    print(report.results_table(summary))
    print(f"reports: {report_dir}/ (locust.html, locust_stats.csv, summary.json, timeline.png)")
    for line in summary["breaches"]:
        print(f"THRESHOLD BROKEN: {line}")
    return 1 if summary["breaches"] else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Stopped from outside (a CI step cancelled, a test's timeout): unwind, so Locust stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        spec = spec_from_args(args)
        fault = ShellCommand(args.fault_command) if args.fault_command else None
        restore = ShellCommand(args.restore_command) if args.restore_command else None
        print(f"{spec.scenario}: {spec.users} users for {spec.duration:g} s against {spec.host}")
        summary = run_scenario(spec, fault, restore)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return conclude(summary, spec.report_dir)


if __name__ == "__main__":
    sys.exit(main())
