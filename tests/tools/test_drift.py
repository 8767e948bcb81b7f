"""Drift: one issue, opened on drift, updated while it lasts, closed when it is gone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.delivery import drift

PLANS = Path(__file__).parent / "data" / "plans"
ROOT = Path(__file__).resolve().parents[2]
# A stand-in terraform: `plan` exits with $TF_PLAN_EXIT, `show -json` prints $TF_SHOW_FILE.
FAKE_TERRAFORM = """#!/usr/bin/env bash
case "$2" in
  plan) exit "$TF_PLAN_EXIT" ;;
  show) cat "$TF_SHOW_FILE" ;;
esac
"""


def results(tmp_path: Path, **exit_codes: int) -> Path:
    folder = tmp_path / "results"
    for stack, code in exit_codes.items():
        name = stack.replace("_", "-")
        stack_dir = folder / f"drift-{name}"
        stack_dir.mkdir(parents=True)
        (stack_dir / "stack").write_text(name + "\n")
        (stack_dir / "exitcode").write_text(f"{code}\n")
        if code in (0, 2):
            plan = json.loads((PLANS / ("mixed.json" if code == 2 else "no_changes.json")).read_text())
            if code == 2:
                plan["resource_drift"] = [{"address": "azurerm_linux_web_app.app_weu"}]
            (stack_dir / "plan.json").write_text(json.dumps(plan))
    return folder


@pytest.mark.parametrize(
    ("open_issue", "drifted", "action"),
    [(None, True, "open"), ({"number": 1}, True, "update"),
     ({"number": 1}, False, "close"), (None, False, "none")],
)
def test_decide(open_issue, drifted, action):
    assert drift.decide(open_issue, drifted) == action


def test_drift_opens_one_labelled_issue(github, tmp_path):
    state, api = github
    loaded = drift.load_results(results(tmp_path, todo_api_dev=2, todo_api_prod=0))
    assert drift.sync_issue(api, loaded, "https://run/1") == "open"
    [issue] = state.issues
    assert issue["title"] == drift.TITLE and issue["labels"] == ["drift"]
    assert issue["body"].startswith(drift.MARKER)


def test_issue_body_names_what_changed_outside_terraform(tmp_path):
    loaded = drift.load_results(results(tmp_path, todo_api_dev=2, todo_api_prod=0))
    body = drift.render_body(loaded, None)
    assert "**Changed outside Terraform**" in body
    assert "another tool):\n\n- `azurerm_linux_web_app.app_weu`" in body
    assert "### Planned changes: `todo-api-dev`" in body
    assert "### `todo-api-prod`: in sync" in body


def test_a_change_outside_terraform_that_the_plan_ignores_is_still_drift(tmp_path):
    folder = results(tmp_path, todo_api_dev=0)
    plan_file = next(folder.glob("*/plan.json"))
    plan = json.loads(plan_file.read_text())
    plan["resource_drift"] = [{"address": "azurerm_key_vault.kv"}]
    plan_file.write_text(json.dumps(plan))
    [result] = drift.load_results(folder)
    assert drift.drifted(result) and not drift.planned(result)
    body = drift.render_body([result], None)
    assert "### `todo-api-dev`: no planned changes" in body and "`azurerm_key_vault.kv`" in body


def test_drift_that_lasts_updates_the_same_issue(github, tmp_path):
    state, api = github
    loaded = drift.load_results(results(tmp_path, todo_api_dev=2))
    drift.sync_issue(api, loaded, "https://run/1")
    assert drift.sync_issue(api, loaded, "https://run/2") == "update"
    assert len(state.issues) == 1 and "https://run/2" in state.issues[0]["body"]


def test_drift_gone_closes_the_issue_with_a_comment(github, tmp_path):
    state, api = github
    drift.sync_issue(api, drift.load_results(results(tmp_path / "a", todo_api_dev=2)), None)
    clean = drift.load_results(results(tmp_path / "b", todo_api_dev=0))
    assert drift.sync_issue(api, clean, "https://run/3") == "close"
    [issue] = state.issues
    assert issue["state"] == "closed"
    assert "No drift any more" in state.comments[issue["number"]][0]["body"]


def test_no_drift_and_no_issue_does_nothing(github, tmp_path):
    state, api = github
    assert drift.sync_issue(api, drift.load_results(results(tmp_path, todo_api_dev=0)), None) == "none"
    assert state.calls == []


def test_failed_plan_exits_1_and_leaves_the_issue_alone(tmp_path, capsys):
    folder = results(tmp_path, todo_api_dev=1, todo_api_prod=2)
    assert drift.main(["report", "--results", str(folder)]) == 1
    assert "terraform plan failed for todo-api-dev" in capsys.readouterr().err


def plan_with_fake_terraform(tmp_path, exit_code: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "terraform").write_text(FAKE_TERRAFORM)
    (bin_dir / "terraform").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "TF_PLAN_EXIT": str(exit_code), "TF_SHOW_FILE": str(PLANS / "mixed.json")}
    out = tmp_path / "results" / "drift-todo-api-dev"
    subprocess.run(
        [sys.executable, "-m", "tools.delivery.drift", "plan", "--stack", "todo-api-dev",
         "--dir", str(tmp_path), "--out", str(out)], cwd=ROOT, env=env, check=True)
    return out


def test_plan_records_changes_with_the_plan_json(tmp_path):
    out = plan_with_fake_terraform(tmp_path, 2)
    assert (out / "exitcode").read_text() == "2\n"
    assert json.loads((out / "plan.json").read_text())["format_version"] == "1.2"
    [result] = drift.load_results(out.parent)
    assert (result.stack, result.exit_code) == ("todo-api-dev", 2)


def test_plan_records_a_failed_plan_without_plan_json(tmp_path):
    out = plan_with_fake_terraform(tmp_path, 1)
    assert (out / "exitcode").read_text() == "1\n"
    assert not (out / "plan.json").exists()


def test_recorded_plan_keeps_no_attribute_values(tmp_path):
    out = plan_with_fake_terraform(tmp_path, 2)
    recorded = (out / "plan.json").read_text()
    assert "app-todo-dev-weu" not in recorded  # a value in the full plan's before/after
    assert "azurerm_linux_web_app.app_weu" in recorded
