"""Chaos Studio experiments from the drill's side: a start waits until the fault runs and names a
failed start, `finish` lets the fault end by itself (bounded, else cancels), `cancel` is
idempotent, and bad input is one line."""

import json
import uuid
from datetime import datetime

import pytest

from tests.tools.stack_outputs_data import raw_outputs
from tools.cli import CliError
from tools.operations import chaos

GROUP = "/subscriptions/0000/resourceGroups/rg-global/providers/Microsoft.Chaos/experiments"
EXPERIMENTS = {
    "region-outage-primary": {"id": f"{GROUP}/todo-dev-outage-aue", "name": "todo-dev-outage-aue",
                              "duration_seconds": 600},
    "vault-deny": {"id": f"{GROUP}/todo-dev-vault-deny", "name": "todo-dev-vault-deny",
                   "duration_seconds": 300},
}
RAW = raw_outputs(chaos_experiments=EXPERIMENTS)


class FakeChaosStudio:
    """`az rest` against Chaos Studio for one experiment: a started execution is queued for
    `queued` polls, runs for `runs` polls, then ends `ends_as`; a cancel makes it Cancelling for
    one poll, then Cancelled."""

    def __init__(self, queued=1, runs=2, ends_as="Success", history=()):
        self.queued, self.runs, self.ends_as = queued, runs, ends_as
        self.executions = [dict(row) for row in history]
        self.calls = []
        self.polls = 0

    def __call__(self, *args):
        method, url = args[args.index("--method") + 1], args[args.index("--url") + 1]
        assert url.startswith(chaos.ARM + EXPERIMENTS["region-outage-primary"]["id"])
        assert url.endswith(f"?api-version={chaos.API_VERSION}")
        verb = url.split("?")[0].rsplit("/", 1)[-1]
        self.calls.append((method, verb))
        if method == "post" and verb == "start":
            self.executions.append({"name": str(uuid.uuid4()), "status": "PreProcessingQueued",
                                    "startedAt": f"2026-12-07T06:{len(self.executions):02d}:00Z",
                                    "age": 0})
            return ""
        if method == "post" and verb == "cancel":
            self.executions[-1].update(status="Cancelling", age=-1)
            return ""
        assert (method, verb) == ("get", "executions")
        self.polls += 1
        for row in self.executions:
            self._advance(row)
        return json.dumps({"value": [
            {"name": r["name"], "type": "Microsoft.Chaos/experiments/executions",
             "properties": {"status": r["status"], "startedAt": r["startedAt"],
                            "stoppedAt": r.get("stoppedAt")}}
            for r in reversed(self.executions)  # ARM promises no order
        ]})

    def _advance(self, row):
        if row["status"] in ("Success", "Failed", "Cancelled", "failed"):
            return
        if row["status"] == "Cancelling":
            row.update(status="Cancelled", stoppedAt="2026-12-07T07:00:00Z")
            return
        row["age"] += 1
        if row["age"] > self.queued:
            row["status"] = "Running"
        if row["age"] > self.queued + self.runs:
            row.update(status=self.ends_as, stoppedAt="2026-12-07T06:59:00Z")


def no_wait():
    return {"sleep": lambda seconds: None, "clock": iter(range(0, 100_000, 10)).__next__}


@pytest.fixture
def studio(monkeypatch):
    fake = FakeChaosStudio()
    monkeypatch.setattr(chaos, "az", fake)
    return fake


def primary():
    return chaos.experiment(RAW, "region-outage-primary")


def test_start_waits_until_the_new_execution_runs(studio, capsys):
    execution = chaos.start(primary(), timeout=600, poll=10, **no_wait())
    assert execution.status == "running"
    assert studio.calls[:3] == [("get", "executions"), ("post", "start"), ("get", "executions")]
    # the fault window for loadtests.run: the execution's own start, as epoch seconds
    started = datetime.fromisoformat(studio.executions[-1]["startedAt"]).timestamp()
    assert f"FAULT_TIME={started:.3f}" in capsys.readouterr().out.splitlines()


def test_finish_reports_when_the_fault_ended(studio, capsys):
    chaos.start(primary(), timeout=600, poll=10, **no_wait())
    chaos.finish(primary(), grace=180, poll=10, **no_wait())
    stopped = datetime.fromisoformat(studio.executions[-1]["stoppedAt"]).timestamp()
    assert f"RESTORE_TIME={stopped:.3f}" in capsys.readouterr().out.splitlines()


def test_a_start_whose_execution_fails_names_the_failure(monkeypatch):
    monkeypatch.setattr(chaos, "az", FakeChaosStudio(queued=1, runs=-1, ends_as="failed"))
    with pytest.raises(CliError, match=r"did not start: its execution .* ended failed \(check"):
        chaos.start(primary(), timeout=600, poll=10, **no_wait())


def test_start_refuses_while_an_execution_still_runs(monkeypatch):
    running = {"name": "old", "status": "Running", "startedAt": "2026-12-07T05:00:00Z", "age": 1}
    fake = FakeChaosStudio(runs=10_000, history=[running])
    monkeypatch.setattr(chaos, "az", fake)
    with pytest.raises(CliError, match="already running .*cancel it first"):
        chaos.start(primary(), timeout=600, poll=10, **no_wait())
    assert ("post", "start") not in fake.calls


def test_a_start_that_never_runs_is_bounded(monkeypatch):
    monkeypatch.setattr(chaos, "az", FakeChaosStudio(queued=10_000))
    with pytest.raises(CliError, match="a running execution did not happen within 60 s"):
        chaos.start(primary(), timeout=60, poll=10, **no_wait())


def test_finish_waits_for_the_fault_to_end_by_itself(studio):
    chaos.start(primary(), timeout=600, poll=10, **no_wait())
    ended = chaos.finish(primary(), grace=180, poll=10, **no_wait())
    assert ended.status == "success" and ("post", "cancel") not in studio.calls


def test_finish_cancels_a_fault_that_outlives_its_grace(monkeypatch):
    fake = FakeChaosStudio(runs=10_000)
    monkeypatch.setattr(chaos, "az", fake)
    chaos.start(primary(), timeout=600, poll=10, **no_wait())
    with pytest.raises(CliError, match="still running 60 s after .*: cancelled"):
        chaos.finish(primary(), grace=60, poll=10, **no_wait())
    assert fake.calls[-2:] == [("post", "cancel"), ("get", "executions")]
    assert fake.executions[-1]["status"] == "Cancelled"


def test_cancel_stops_the_running_execution(monkeypatch):
    fake = FakeChaosStudio(runs=10_000)
    monkeypatch.setattr(chaos, "az", fake)
    chaos.start(primary(), timeout=600, poll=10, **no_wait())
    stopped = chaos.cancel(primary(), timeout=600, poll=10, **no_wait())
    assert stopped.status == "cancelled"


def test_cancel_with_nothing_running_only_says_so(studio, capsys):
    assert chaos.cancel(primary(), timeout=600, poll=10, **no_wait()) is None
    assert studio.calls == [("get", "executions")]
    assert "nothing running" in capsys.readouterr().out


def test_an_unknown_fault_names_the_ones_the_stack_has():
    with pytest.raises(CliError, match=r"no experiment 'db' in the stack \(it has:"
                                       r" region-outage-primary, vault-deny\)"):
        chaos.experiment(RAW, "db")


def test_a_stack_without_drills_says_how_to_get_them():
    with pytest.raises(CliError, match=r"\[drills\] enabled = true"):
        chaos.experiments(raw_outputs())


def test_the_cli_gives_one_line_errors(tmp_path, capsys):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(RAW))
    assert chaos.run_cli(lambda: chaos.main([str(outputs), "start"])) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert chaos.run_cli(lambda: chaos.main([str(outputs), "list"])) == 0
    assert "vault-deny: todo-dev-vault-deny (300 s)" in capsys.readouterr().out


def test_cancel_after_the_fault_ended_posts_nothing(monkeypatch):
    ended = {"name": "old", "status": "Success", "startedAt": "2026-12-07T05:00:00Z",
             "stoppedAt": "2026-12-07T05:10:00Z"}
    fake = FakeChaosStudio(history=[ended])
    monkeypatch.setattr(chaos, "az", fake)
    assert chaos.cancel(primary(), timeout=600, poll=10, **no_wait()) is None
    assert ("post", "cancel") not in fake.calls
