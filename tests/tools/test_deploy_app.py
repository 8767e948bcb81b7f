"""Deploying the package: every regional web app, secondary first, stop at the first failure.
A stand-in `az` script on PATH records its arguments (no Azure here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tools.stack_outputs_data import raw_outputs

ROOT = Path(__file__).resolve().parents[2]
FAKE_AZ = """#!/usr/bin/env bash
echo "$*" >> "$AZ_LOG"
[[ "$1 $2" != "webapp deploy" || "$*" != *"--name $AZ_FAIL_FOR "* ]]
"""


def run(tmp_path, fail_for="nobody", *extra):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    outputs = raw_outputs()
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    (tmp_path / "app.zip").write_bytes(b"PK")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "AZ_LOG": str(tmp_path / "az.log"), "AZ_FAIL_FOR": fail_for}
    result = subprocess.run(
        [sys.executable, "-m", "tools.delivery.deploy_app", str(tmp_path / "outputs.json"),
         str(tmp_path / "app.zip"), *extra], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    log = (tmp_path / "az.log").read_text().splitlines() if (tmp_path / "az.log").exists() else []
    return result, log


def test_deploys_to_every_web_app_secondary_first(tmp_path):
    result, log = run(tmp_path)
    assert result.returncode == 0
    assert [line.split("--name ")[1].split()[0] for line in log] == ["app-neu", "app-weu"]
    assert all(f"--src-path {tmp_path / 'app.zip'} --type zip" in line for line in log)


def test_first_failure_stops_and_names_the_web_app(tmp_path):
    result, log = run(tmp_path, fail_for="app-neu")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: deploy to app-neu failed (az exit code 1)"
    assert len(log) == 1


def test_scm_site_is_opened_to_the_runner_only_around_each_deploy(tmp_path):
    result, log = run(tmp_path, "nobody", "--runner-ip", "203.0.113.7")
    assert result.returncode == 0
    steps = [" ".join(line.split()[:4]) + " " + line.split("--name ")[1].split()[0] for line in log]
    assert steps == [
        "webapp config access-restriction add app-neu", "webapp deploy --resource-group rg-neu app-neu",
        "webapp config access-restriction remove app-neu",
        "webapp config access-restriction add app-weu", "webapp deploy --resource-group rg-weu app-weu",
        "webapp config access-restriction remove app-weu",
    ]
    assert "--ip-address 203.0.113.7/32" in log[0] and "--scm-site true" in log[0]


def test_scm_site_is_closed_again_when_the_deploy_fails(tmp_path):
    result, log = run(tmp_path, "app-neu", "--runner-ip", "203.0.113.7")
    assert result.returncode == 2
    assert [line.split()[:4] for line in log][-1] == ["webapp", "config", "access-restriction",
                                                      "remove"]


def test_runner_ip_must_be_an_address(tmp_path):
    result, log = run(tmp_path, "nobody", "--runner-ip", "203.0.113.7; rm -rf /")
    assert result.returncode == 2 and log == []
    assert "not an IPv4 address" in result.stderr


def test_close_removes_each_delivery_rule_only_where_it_is_still_present(monkeypatch):
    """The SCM rule left on app-weu's production, the release rule on app-neu's staging slot."""
    from tools.delivery import deploy_app
    from tools.delivery.stack_outputs import parse

    calls = []
    left = {("app-weu", None): ("scmIpSecurityRestrictions", deploy_app.SCM_RULE),
            ("app-neu", "staging"): ("ipSecurityRestrictions", deploy_app.RELEASE_RULE)}

    def fake_run(command, check=False, capture_output=False, text=False):
        calls.append(command)
        app = command[command.index("--name") + 1]
        slot = command[command.index("--slot") + 1] if "--slot" in command else None
        answer = {"ipSecurityRestrictions": [{"name": "apim"}], "scmIpSecurityRestrictions": []}
        if (app, slot) in left:
            key, rule = left[app, slot]
            answer[key] = answer[key] + [{"name": rule}]
        return subprocess.CompletedProcess(command, 0, json.dumps(answer), "")

    monkeypatch.setattr(deploy_app.subprocess, "run", fake_run)
    closed = deploy_app.close_delivery_rules(parse(raw_outputs()).web_apps, (None, "staging"))
    assert closed == ["SCM site of app-weu", "main site of app-neu/staging"]
    removes = [c for c in calls if "remove" in c]
    assert len(removes) == 2
    assert "--scm-site" in removes[0] and "--slot" not in removes[0]
    assert removes[1][removes[1].index("--rule-name") + 1] == deploy_app.RELEASE_RULE
    assert "--scm-site" not in removes[1] and "staging" in removes[1]


def test_close_scm_without_a_package_is_allowed_and_a_deploy_without_one_is_not(tmp_path):
    (tmp_path / "outputs.json").write_text(json.dumps(raw_outputs()))
    result = subprocess.run([sys.executable, "-m", "tools.delivery.deploy_app", str(tmp_path / "outputs.json")],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "the package is required (or --close-scm)" in result.stderr
