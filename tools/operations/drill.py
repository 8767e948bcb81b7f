"""One drill, both engines: load from the runner's Locust or from Azure Load Testing, the fault
from Chaos Studio, the same report.

    python -m tools.operations.drill outputs.json --fault FAULT --users 50 --duration 1200 \
        [--engine runner|azure-load-testing] [--engines 1] [--warm-up 60] [--report-dir reports/load]

FAULT is a key of the stack output `chaos_experiments` (tools.operations.chaos), or `none` with
`--engine azure-load-testing`: a plain load test (the throughput scenario) on its engines, whose
results go through the same analysis as a runner's. The load runs
`--warm-up` seconds before the experiment starts (steady by then), the experiment runs its own
duration (Chaos Studio ends the fault itself, also when this machine is gone), and the load runs
on for at least TAIL_SECONDS after it, so recovery is measured. `--duration` must cover all
three.

- `runner`: `python -m loadtests.run failover` on this machine, with `tools.operations.chaos
  start` as the fault command and `chaos finish` as the restore command.
- `azure-load-testing`: the test definition (tools.operations.azure_load_testing definition) is
  created or updated on the stack's load test resource, a test run starts, and once it is
  EXECUTING and `--warm-up` has passed the experiment starts; when the run is DONE its results
  are downloaded and analysed by the same code as a runner's records (loadtests.analyse), with
  the fault window marked. An API that takes Entra ID tokens is called as the stack's engine
  identity (output load_test_engine_identity; each engine fetches its token from IMDS); a stack
  without one is refused before anything starts.

Whatever happens (a failure, Ctrl-C, SIGTERM from a cancelled job), the experiment is cancelled
and a test run still going is stopped before this program exits; for a runner that died
outright, the workflow cancels the experiment again in an `always()` step, and stops the test
run (`--stop-run`: the run id is kept in the report folder, RUN_FILE, before the run starts).

Verdicts per fault (the same limits as tools.operations.load_test): a region outage may fail
DRILL_MAX_FAILURE_RATIO of the requests and must recover within MAX_RECOVERY_SECONDS; a
database failover must lose no item; a vault outage must not be seen by callers
(MAX_FAILURE_RATIO: the app caches what it read from Key Vault).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tools.cli import CliError, interrupt_on_sigterm, poll_until, read_json, run_cli, write_atomic
from tools.delivery.stack_outputs import StackOutputs, parse
from tools.operations import chaos
from tools.operations.azure_cli import az
from tools.operations.azure_load_testing import engine_identity
from tools.operations.load_test import (
    FAILOVER_THRESHOLDS,
    THROUGHPUT_THRESHOLDS,
    caller_environment,
    database_verdict,
)

ENGINES = ("runner", "azure-load-testing")
NO_FAULT = "none"  # a load test without a fault (on Azure Load Testing: its throughput run)
TAIL_SECONDS = 60  # load after the fault ended: failback is measured
MAX_DURATION = 3000  # a drill ends within the load-test job's 90 minutes, provisioning included
START_TIMEOUT = 600  # a Chaos Studio start (queued, then Running)
FINISH_GRACE = 180  # after the experiment's own duration, before it is cancelled
POLL_SECONDS = 10
# Azure Load Testing test run statuses (REST TestRunStatus; learn.microsoft.com, Azure.Developer.
# LoadTesting TestRunStatus).
EXECUTING = "EXECUTING"
RUN_ENDED = {"DONE", "FAILED", "CANCELLED", "VALIDATION_FAILURE"}
PROVISIONING_TIMEOUT = 1800  # engines provisioned and the script validated
LOAD_TEST_OUTPUTS = ("load_test_name", "load_test_resource_group_name")
RUN_FILE = "azure-load-testing-run.json"  # in the report folder: the run the drill started


def thresholds(fault: str) -> list[str]:
    """The drill's verdict on our analysis (NO_FAULT: a plain load test's)."""
    if fault.startswith("region-outage"):
        return list(FAILOVER_THRESHOLDS)
    if fault == "database-failover":
        return []  # writes pause while the region moves; the verdict is items lost
    return list(THROUGHPUT_THRESHOLDS)


@dataclass(frozen=True)
class Schedule:
    fault_at: int  # seconds after the load started (steady)
    fault_seconds: int  # the experiment's own duration
    duration: int

    @property
    def restore_at(self) -> int:
        return self.fault_at + self.fault_seconds


def schedule(experiment: chaos.Experiment, duration: int, warm_up: int) -> Schedule:
    needed = warm_up + experiment.duration_seconds + TAIL_SECONDS
    if duration < needed:
        raise CliError(f"--duration {duration} s is too short for {experiment.key}: warm-up"
                       f" {warm_up} s + fault {experiment.duration_seconds} s + {TAIL_SECONDS} s"
                       f" after it = {needed} s at least")
    return Schedule(warm_up, experiment.duration_seconds, duration)


def chaos_command(outputs_path: Path, verb: str, fault: str) -> list[str]:
    command = [sys.executable, "-m", "tools.operations.chaos", str(outputs_path), verb, fault,
               "--poll-seconds", str(POLL_SECONDS)]
    return command + (["--grace", str(FINISH_GRACE)] if verb == "finish"
                      else ["--timeout", str(START_TIMEOUT)])


def runner_command(outputs: StackOutputs, outputs_path: Path, fault: str, plan: Schedule,
                   users: int, report_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "loadtests.run", "failover",
        "--host", outputs.gateway_urls[0].rstrip("/"),
        "--api-path", "/" + outputs.api_path.strip("/"),
        "--users", str(users),
        "--duration", str(plan.duration),
        "--report-dir", str(report_dir),
        "--profile", "deployed",
        "--fault-at", str(plan.fault_at),
        "--fault-command", shlex.join(chaos_command(outputs_path, "start", fault)),
        "--restore-at", str(plan.restore_at),
        "--restore-command", shlex.join(chaos_command(outputs_path, "finish", fault)),
        *thresholds(fault),
    ]


# -- Azure Load Testing --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadTestResource:
    name: str
    resource_group: str

    @classmethod
    def from_outputs(cls, raw: dict) -> LoadTestResource:
        values = [(raw.get(name) or {}).get("value") for name in LOAD_TEST_OUTPUTS]
        if not all(isinstance(v, str) and v for v in values):
            raise CliError("outputs load_test_name and load_test_resource_group_name missing:"
                           " the stack has no Azure Load Testing resource (set [drills] enabled"
                           " = true in the environment's config)")
        return cls(*values)

    def _az(self, *args: str) -> str:
        return az("load", *args, "--load-test-resource", self.name,
                  "--resource-group", self.resource_group)

    def put_test(self, test_id: str, config: Path) -> None:
        """Create the test, or update it when it exists (the files are uploaded again)."""
        try:
            self._az("test", "show", "--test-id", test_id)
        except CliError:
            verb = "create"
        else:
            verb = "update"
        self._az("test", verb, "--test-id", test_id, "--load-test-config-file", str(config))

    def start_run(self, test_id: str, run_id: str, description: str) -> None:
        self._az("test-run", "create", "--test-id", test_id, "--test-run-id", run_id,
                 "--description", description)

    def run(self, run_id: str) -> dict:
        text = self._az("test-run", "show", "--test-run-id", run_id)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise CliError(f"test run {run_id}: az printed no JSON") from None

    def stop_if_running(self, run_id: str) -> str:
        """Stop the run unless it ended; its status before (RUN_ENDED: nothing was done)."""
        status = str(self.run(run_id).get("status", "")).upper()
        if status not in RUN_ENDED:
            self._az("test-run", "stop", "--test-run-id", run_id)
        return status

    def download_results(self, run_id: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._az("test-run", "download-files", "--test-run-id", run_id, "--path", str(folder),
                 "--result", "--force")


def wait_for_run(resource: LoadTestResource, run_id: str, wanted, what: str, timeout: float,
                 sleep=time.sleep, clock=time.monotonic) -> dict:
    """Poll the test run until `wanted(status)`; a run that ended otherwise is an error."""
    def probe() -> dict | None:
        run = resource.run(run_id)
        status = str(run.get("status", "")).upper()
        if wanted(status):
            return run
        if status in RUN_ENDED:
            raise CliError(f"test run {run_id} ended {status} before {what}:"
                           f" {run.get('errorDetails') or 'no details'}")
        return None

    return poll_until(probe, f"test run {run_id}: {what}", timeout, POLL_SECONDS, sleep, clock)


def scenario_of(fault: str) -> str:
    return "throughput" if fault == NO_FAULT else "failover"


def definition_command(outputs_path: Path, fault: str, plan: Schedule, users: int, engines: int,
                       test_id: str, folder: Path) -> list[str]:
    """tools.operations.azure_load_testing definition: the scenario, every user within about
    ten seconds, ALT's own failure criterion at the drill's failure ratio."""
    limit = thresholds(fault)
    ratio = limit[limit.index("--max-failure-ratio") + 1] if "--max-failure-ratio" in limit else None
    return [
        sys.executable, "-m", "tools.operations.azure_load_testing", "definition",
        str(outputs_path), "--scenario", scenario_of(fault), "--users", str(users),
        "--spawn-rate", str(max(1, users // 10)), "--duration", str(plan.duration),
        "--engines", str(engines), "--test-id", test_id, "--out", str(folder),
        *(["--max-failure-ratio", ratio] if ratio else []),
    ]


def azure_load_testing_drill(outputs_path: Path, raw: dict, experiment: chaos.Experiment | None,
                             plan: Schedule, users: int, engines: int, report_dir: Path,
                             sleep=time.sleep, clock=time.monotonic) -> dict:
    """Run the load on Azure Load Testing, with the fault (`experiment`; None: none); return
    the run's id, its verdict and the fault window (epoch s)."""
    resource = LoadTestResource.from_outputs(raw)
    fault = experiment.key if experiment else NO_FAULT
    test_id = f"drill-{fault}"[:50] if experiment else "load-throughput"
    run_id = f"{test_id[:30]}-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="alt-") as folder:
        definition = Path(folder) / "definition"
        made = subprocess.run(definition_command(outputs_path, fault, plan, users, engines,
                                                 test_id, definition), check=False)
        if made.returncode != 0:
            raise CliError("the Azure Load Testing test definition could not be written"
                           " (its error above)")
        resource.put_test(test_id, definition / "test.yaml")
    # Where the workflow's always-step finds the run to stop when this machine is gone.
    write_atomic(report_dir / RUN_FILE, json.dumps({"run_id": run_id}))
    resource.start_run(test_id, run_id, f"drill {fault}" if experiment else "load test")
    print(f"test run {run_id} started on {resource.name} ({engines} engine(s))", flush=True)
    window = {"run_id": run_id}
    try:
        wait_for_run(resource, run_id, lambda s: s == EXECUTING, "executing",
                     PROVISIONING_TIMEOUT, sleep, clock)
        print(f"test run {run_id} executing"
              + (f"; fault in {plan.fault_at} s" if experiment else ""), flush=True)
        if experiment:
            sleep(plan.fault_at)
            # The window is the execution's own (Chaos Studio's clock, as are the engines'),
            # not when this machine asked or noticed: a start is queued first, polls are 10 s
            # apart.
            started = chaos.start(experiment, START_TIMEOUT, POLL_SECONDS, sleep=sleep,
                                  clock=clock)
            window["fault_time"] = started.started
            ended = chaos.finish(experiment, plan.fault_seconds + FINISH_GRACE, POLL_SECONDS,
                                 sleep=sleep, clock=clock)
            window["restore_time"] = ended.stopped
        run = wait_for_run(resource, run_id, lambda s: s == "DONE", "done",
                           plan.duration + PROVISIONING_TIMEOUT, sleep, clock)
        window["test_result"] = run.get("testResult")
    except BaseException:
        _stop_quietly(resource, run_id)
        raise
    resource.download_results(run_id, report_dir / "azure-load-testing")
    return window


def _stop_quietly(resource: LoadTestResource, run_id: str) -> None:
    try:
        if resource.stop_if_running(run_id) not in RUN_ENDED:
            print(f"test run {run_id} stopped", flush=True)
    except CliError as error:
        print(f"error: stopping test run {run_id}: {error}", file=sys.stderr)


def verify_fault(experiment: chaos.Experiment, since: float) -> None:
    """The fault happened as planned: one execution started during the drill, ended Success.
    (On the runner the start and finish run as loadtests.run's fault and restore commands,
    whose failures do not end the load: without this a drill whose fault never happened would
    pass.)"""
    runs = [e for e in chaos.executions(experiment) if e.started >= since]
    if len(runs) != 1 or runs[0].status != "success":
        seen = ", ".join(f"{e.name} {e.status}" for e in runs) or "none"
        raise CliError(f"the fault did not happen as planned: executions of {experiment.name}"
                       f" during the drill: {seen} (wanted one, ended success)")
    print(f"{experiment.key}: fault {runs[0].started_at} to {runs[0].stopped_at}", flush=True)


def cancel_quietly(experiment: chaos.Experiment) -> None:
    try:
        chaos.cancel(experiment, START_TIMEOUT, POLL_SECONDS)
    except CliError as error:
        print(f"error: cancel {experiment.name} by hand: {error}", file=sys.stderr)


def stop_run(raw: dict, report_dir: Path) -> int:
    """`--stop-run`: stop the drill's Azure Load Testing run if one is still going (the
    workflow's always-step: a runner that died mid-drill leaves the engines running until the
    run's own end). No run file: no run was started."""
    path = report_dir / RUN_FILE
    if not path.is_file():
        print("no Azure Load Testing run was started: nothing to stop")
        return 0
    run_id = read_json(path, "the drill's run file").get("run_id")
    status = LoadTestResource.from_outputs(raw).stop_if_running(run_id)
    if status in RUN_ENDED:
        print(f"test run {run_id} already ended ({status}): nothing to stop")
    else:
        print(f"test run {run_id} stopped (it was {status})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("--stop-run", action="store_true",
                        help="only stop the drill's Azure Load Testing run if still going")
    parser.add_argument("--fault", help="a key of the output chaos_experiments")
    parser.add_argument("--engine", choices=ENGINES, default="runner")
    parser.add_argument("--users", type=int)
    parser.add_argument("--duration", type=int, help="seconds")
    parser.add_argument("--engines", type=int, default=1, help="Azure Load Testing engines")
    parser.add_argument("--warm-up", type=int, default=60, help="seconds before the fault")
    parser.add_argument("--report-dir", type=Path, default=Path("reports/load"))
    args = parser.parse_args(argv)
    if args.stop_run:
        return stop_run(read_json(args.outputs, "stack outputs"), args.report_dir)
    if not args.fault or args.users is None or args.duration is None:
        raise CliError("--fault, --users and --duration are required (or --stop-run)")
    if args.fault == NO_FAULT and args.engine == "runner":
        raise CliError("--fault none on the runner is a plain load test: python -m"
                       " tools.operations.load_test")
    if args.users < 1 or args.warm_up < 30 or not 1 <= args.engines <= 400:
        raise CliError("--users must be at least 1, --warm-up at least 30 seconds and --engines"
                       " 1 to 400 (Azure Load Testing's range)")
    if args.duration > MAX_DURATION:
        raise CliError(f"--duration {args.duration} s is over a drill's maximum of {MAX_DURATION} s")
    raw = read_json(args.outputs, "stack outputs")
    outputs = parse(raw)
    experiment = None if args.fault == NO_FAULT else chaos.experiment(raw, args.fault)
    if args.engine == "azure-load-testing":
        # An API that takes tokens: the engines fetch their own as the stack's engine identity
        # (refused here, before anything starts, when the stack has none).
        engine_identity(outputs)
    if args.engine == "azure-load-testing" and args.fault == "database-failover":
        raise CliError("a database failover drill reconciles the items the load wrote, which"
                       " Azure Load Testing's results do not carry: use --engine runner")
    if not experiment and args.duration < 30:
        raise CliError("--duration must be at least 30 seconds")
    plan = (schedule(experiment, args.duration, args.warm_up) if experiment
            else Schedule(0, 0, args.duration))
    interrupt_on_sigterm()
    try:
        if args.engine == "runner":
            command = runner_command(outputs, args.outputs, args.fault, plan, args.users,
                                     args.report_dir)
            caller = caller_environment(outputs)
            since = time.time()
            code = subprocess.run(command, env={**os.environ, **caller}, check=False).returncode
            verify_fault(experiment, since)
        else:
            window = azure_load_testing_drill(args.outputs, raw, experiment, plan, args.users,
                                              args.engines, args.report_dir)
            code = analyse_azure_results(args.report_dir, args.fault, window)
    finally:
        if experiment:
            cancel_quietly(experiment)
    return database_verdict(code, args.report_dir) if args.fault == "database-failover" else code


def analyse_azure_results(report_dir: Path, fault: str, window: dict) -> int:
    """The downloaded results through the same analysis and thresholds as a runner's records
    (tools.operations.azure_load_testing results), the fault window marked; Azure Load
    Testing's own verdict on its failure criteria counts too."""
    marks = [f"--{name.replace('_', '-')}={window[name]}" for name in ("fault_time", "restore_time")
             if window.get(name) is not None]
    code = subprocess.run([
        sys.executable, "-m", "tools.operations.azure_load_testing", "results",
        str(report_dir / "azure-load-testing"), "--scenario", scenario_of(fault),
        "--report-dir", str(report_dir), *marks, *thresholds(fault),
    ], check=False).returncode
    result = window.get("test_result")
    print(f"Azure Load Testing's verdict on its failure criteria: {result or 'none'}", flush=True)
    return code or (1 if result == "FAILED" else 0)


if __name__ == "__main__":
    sys.exit(run_cli(main))
