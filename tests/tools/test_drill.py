"""One drill, both engines (tools.operations.drill): the schedule covers warm-up, fault and
recovery; on the runner the experiment is loadtests.run's fault and restore command and must
have happened; on Azure Load Testing the test is put, the run started, the experiment started
once the run executes, and a run still going is stopped when anything fails."""

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.tools.stack_outputs_data import ENGINE_IDENTITY, ENTRA_OUTPUTS, raw_outputs
from tests.tools.test_chaos import EXPERIMENTS, FakeChaosStudio, no_wait
from tools.cli import CliError
from tools.operations import chaos, drill
from tools.operations.load_test import DRILL_MAX_FAILURE_RATIO

LOAD_TEST = {"load_test_name": "lt-todo-dev", "load_test_resource_group_name": "rg-global",
             "load_test_secrets": {"LOCUST_SUBSCRIPTION_KEY":
                                   "https://kv-todo-dev.vault.azure.net/secrets/gateway-subscription-key"}}
RAW = raw_outputs(chaos_experiments=EXPERIMENTS, **LOAD_TEST)


def primary(seconds=600):
    return chaos.Experiment("region-outage-primary", EXPERIMENTS["region-outage-primary"]["id"],
                            "todo-dev-outage-aue", seconds)


class FakeAzure:
    """`az load ...` (Azure Load Testing: one test, its runs) and `az rest` (Chaos Studio):
    a run is ACCEPTED, PROVISIONING, then EXECUTING for `executing` polls, then DONE; or ends
    `ends_as` while provisioning."""

    def __init__(self, executing=3, ends_as=None, test_exists=False):
        self.studio = FakeChaosStudio()
        self.executing, self.ends_as, self.test_exists = executing, ends_as, test_exists
        self.calls, self.shows, self.status = [], 0, None

    def __call__(self, *args):
        if args[0] == "rest":
            answer = self.studio(*args)
            self.calls.append(("chaos",) + self.studio.calls[-1])
            return answer
        assert args[0] == "load"
        assert args[args.index("--load-test-resource") + 1] == "lt-todo-dev"
        assert args[args.index("--resource-group") + 1] == "rg-global"
        self.calls.append(args[1:3])
        if args[1:3] == ("test", "show"):
            if not self.test_exists:
                raise CliError("az load test failed (exit 3): (ResourceNotFound)")
            return "{}"
        if args[1:3] in (("test", "create"), ("test", "update")):
            config = args[args.index("--load-test-config-file") + 1]
            self.config = Path(config).read_text()
            return "{}"
        if args[1:3] == ("test-run", "create"):
            self.status = "ACCEPTED"
            return "{}"
        if args[1:3] == ("test-run", "show"):
            self.shows += 1
            if self.status == "ACCEPTED":
                self.status = "PROVISIONING"
            elif self.status == "PROVISIONING":
                self.status = self.ends_as or "EXECUTING"
                self.executed = 0
            elif self.status == "EXECUTING":
                self.executed += 1
                if self.executed > self.executing:
                    self.status = "DONE"
            return json.dumps({"status": self.status, "testResult": "PASSED"})
        if args[1:3] == ("test-run", "stop"):
            self.status = "CANCELLED"
            return "{}"
        if args[1:3] == ("test-run", "download-files"):
            return ""
        raise AssertionError(args)


@pytest.fixture
def azure(monkeypatch):
    fake = FakeAzure()
    monkeypatch.setattr(drill, "az", fake)
    monkeypatch.setattr(chaos, "az", fake)
    return fake


def outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(RAW))
    return path


def run_alt(tmp_path, experiment=None, **clock):
    experiment = experiment or primary()
    plan = drill.schedule(experiment, 900, 60)
    return drill.azure_load_testing_drill(outputs_file(tmp_path), RAW, experiment, plan,
                                          users=20, engines=2, report_dir=tmp_path / "report",
                                          **(clock or no_wait()))


def test_the_duration_must_cover_warm_up_fault_and_recovery():
    with pytest.raises(CliError, match=r"--duration 700 s is too short for region-outage-primary:"
                                       r" warm-up 60 s \+ fault 600 s \+ 60 s after it = 720 s"):
        drill.schedule(primary(), 700, 60)


def test_on_the_runner_the_experiment_is_the_fault_and_restore_command(tmp_path):
    outputs = drill.parse(RAW)
    command = drill.runner_command(outputs, tmp_path / "o.json", "region-outage-primary",
                                   drill.schedule(primary(), 900, 60), 20, tmp_path)
    options = dict(zip(command[4::2], command[5::2], strict=False))
    assert options["--fault-at"] == "60" and options["--restore-at"] == "660"
    assert " start region-outage-primary " in options["--fault-command"]
    assert " finish region-outage-primary " in options["--restore-command"]
    assert options["--max-failure-ratio"] == DRILL_MAX_FAILURE_RATIO


DRILL_STARTED = datetime.fromisoformat("2026-12-07T06:00:00Z").timestamp()


def test_a_fault_that_never_ran_fails_the_drill(monkeypatch):
    failed = {"name": "x", "status": "failed", "startedAt": "2026-12-07T06:00:05Z",
              "stoppedAt": "2026-12-07T06:00:06Z"}
    monkeypatch.setattr(chaos, "az", FakeChaosStudio(history=[failed]))
    with pytest.raises(CliError, match="did not happen as planned: .* x failed"):
        drill.verify_fault(primary(), DRILL_STARTED)


def test_a_fault_that_ran_before_the_drill_does_not_count(monkeypatch):
    earlier = {"name": "x", "status": "Success", "startedAt": "2026-12-07T05:00:00Z",
               "stoppedAt": "2026-12-07T05:10:00Z"}
    monkeypatch.setattr(chaos, "az", FakeChaosStudio(history=[earlier]))
    with pytest.raises(CliError, match="during the drill: none"):
        drill.verify_fault(primary(), DRILL_STARTED)


def test_on_azure_load_testing_the_fault_starts_once_the_run_executes(azure, tmp_path):
    window = run_alt(tmp_path)
    order = [c[:2] if c[0] != "chaos" else c for c in azure.calls]
    assert order[:3] == [("test", "show"), ("test", "create"), ("test-run", "create")]
    first_start = order.index(("chaos", "post", "start"))
    shows_before = [c for c in order[:first_start] if c == ("test-run", "show")]
    assert len(shows_before) == 2  # provisioning, then executing
    assert order[-1] == ("test-run", "download-files")
    assert window["fault_time"] <= window["restore_time"] and window["test_result"] == "PASSED"
    assert "testType: Locust" in azure.config


def test_an_existing_test_is_updated_not_created(monkeypatch, tmp_path):
    fake = FakeAzure(test_exists=True)
    monkeypatch.setattr(drill, "az", fake)
    monkeypatch.setattr(chaos, "az", fake)
    run_alt(tmp_path)
    assert ("test", "update") in fake.calls and ("test", "create") not in fake.calls


def test_a_run_that_fails_while_provisioning_starts_no_fault(monkeypatch, tmp_path):
    fake = FakeAzure(ends_as="FAILED")
    monkeypatch.setattr(drill, "az", fake)
    monkeypatch.setattr(chaos, "az", fake)
    with pytest.raises(CliError, match="ended FAILED before executing"):
        run_alt(tmp_path)
    assert not [c for c in fake.calls if c[0] == "chaos" and c[1] == "post"]
    assert ("test-run", "stop") not in fake.calls  # it had ended already


def test_an_interrupted_drill_stops_its_test_run(azure, tmp_path):
    clock = iter(range(0, 100_000, 10)).__next__

    def sleep(seconds):
        if ("chaos", "post", "start") in azure.calls:
            raise KeyboardInterrupt  # Ctrl-C, or the job's SIGTERM, mid-fault

    with pytest.raises(KeyboardInterrupt):
        run_alt(tmp_path, sleep=sleep, clock=clock)
    assert azure.calls[-1] == ("test-run", "stop") and azure.status == "CANCELLED"
    drill.cancel_quietly(primary())
    assert azure.studio.executions[-1]["status"] == "Cancelled"


def test_a_database_failover_needs_the_runner_whose_items_are_reconciled(tmp_path, capsys):
    raw = raw_outputs(chaos_experiments={**EXPERIMENTS, "database-failover": {
        **EXPERIMENTS["vault-deny"], "name": "db"}}, **LOAD_TEST)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw))
    code = drill.run_cli(lambda: drill.main([
        str(path), "--fault", "database-failover", "--engine", "azure-load-testing",
        "--users", "10", "--duration", "900"]))
    assert code == 2 and "use --engine runner" in capsys.readouterr().err


def test_an_api_that_takes_tokens_is_drilled_on_azure_load_testing_as_the_engine_identity(
        azure, monkeypatch, tmp_path):
    """The drill runs (no refusal) and the test it puts gives the engines the stack's engine
    identity and tells Locust what to ask IMDS for; no token goes anywhere."""
    raw = raw_outputs(chaos_experiments=EXPERIMENTS, **ENTRA_OUTPUTS, **LOAD_TEST)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw))
    real = drill.azure_load_testing_drill
    monkeypatch.setattr(drill, "azure_load_testing_drill",
                        lambda *args, **kwargs: real(*args, **kwargs, **no_wait()))
    monkeypatch.setattr(drill, "analyse_azure_results", lambda *args: 0)
    monkeypatch.setattr(drill, "interrupt_on_sigterm", lambda: None)
    code = drill.run_cli(lambda: drill.main([
        str(path), "--fault", "none", "--engine", "azure-load-testing", "--users", "10",
        "--duration", "300", "--report-dir", str(tmp_path / "report")]))
    assert code == 0 and azure.calls[-1] == ("test-run", "download-files")
    test = yaml.safe_load(azure.config)
    assert test["referenceIdentities"] == [
        {"kind": "Engine", "type": "UserAssigned", "value": ENGINE_IDENTITY["id"]}]
    env = {entry["name"]: entry["value"] for entry in test["env"]}
    assert env["LOCUST_TOKEN_RESOURCE"] == ENTRA_OUTPUTS["api_identifier_uri"]
    assert env["LOCUST_TOKEN_CLIENT_ID"] == ENGINE_IDENTITY["client_id"]


def test_an_api_that_takes_tokens_without_an_engine_identity_is_refused_before_anything(
        azure, tmp_path, capsys):
    raw = raw_outputs(chaos_experiments=EXPERIMENTS, api_identifier_uri="api://x", **LOAD_TEST)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw))
    code = drill.run_cli(lambda: drill.main([
        str(path), "--fault", "region-outage-primary", "--engine", "azure-load-testing",
        "--users", "10", "--duration", "900"]))
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1, error
    assert "no engine identity for Azure Load Testing" in error and "[drills] enabled" in error
    assert azure.calls == []  # no test put, no run, no fault


def test_a_drill_has_a_maximum_duration(tmp_path, capsys):
    code = drill.run_cli(lambda: drill.main([
        str(outputs_file(tmp_path)), "--fault", "region-outage-primary", "--users", "10",
        "--duration", str(drill.MAX_DURATION + 1)]))
    assert code == 2 and "over a drill's maximum" in capsys.readouterr().err


def test_without_a_fault_azure_load_testing_runs_the_throughput_scenario(azure, tmp_path):
    plan = drill.Schedule(0, 0, 300)
    window = drill.azure_load_testing_drill(outputs_file(tmp_path), RAW, None, plan, users=20,
                                            engines=2, report_dir=tmp_path / "report",
                                            **no_wait())
    assert "fault_time" not in window and not [c for c in azure.calls if c[0] == "chaos"]
    assert "testId: load-throughput" in azure.config and "locustfile_throughput.py" in azure.config
    assert azure.calls[-1] == ("test-run", "download-files")


def test_without_a_fault_the_runner_is_the_plain_load_test(tmp_path, capsys):
    code = drill.run_cli(lambda: drill.main([
        str(outputs_file(tmp_path)), "--fault", "none", "--users", "10", "--duration", "300"]))
    assert code == 2 and "tools.operations.load_test" in capsys.readouterr().err
