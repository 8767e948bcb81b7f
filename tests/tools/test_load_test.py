"""The load-test launcher: the right loadtests.run command, and the primary always restarted."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.stack_outputs_data import raw_outputs
from tools.delivery.stack_outputs import parse
from tools.operations import load_test

ROOT = Path(__file__).resolve().parents[2]
RAW = raw_outputs(gateway_urls=["https://apim.example"], subscription_key="sub-key")


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_throughput_run_targets_the_gateway_api_with_the_key():
    command = load_test.load_test_command(parse(RAW), 20, 120, False, Path("r"))
    assert command[1:4] == ["-m", "loadtests.run", "throughput"]
    assert option(command, "--host") == "https://apim.example"
    assert option(command, "--api-path") == "/todo"
    assert "sub-key" not in command  # passed in the environment
    assert "--fault-command" not in command
    assert option(command, "--profile") == "deployed"  # the report says: Azure itself


def test_the_profile_label_of_a_deployed_run_is_one_loadtests_run_accepts():
    from loadtests.run import PROFILES

    command = load_test.load_test_command(parse(RAW), 20, 120, True, Path("r"))
    assert option(command, "--profile") in PROFILES


def test_failover_drill_stops_and_starts_the_primary_mid_run():
    command = load_test.load_test_command(parse(RAW), 20, 300, True, Path("r"))
    assert command[3] == "failover"
    assert (option(command, "--fault-at"), option(command, "--restore-at")) == ("100", "200")
    stop = shlex.split(option(command, "--fault-command"))
    assert stop[:3] == ["az", "webapp", "stop"] and option(stop, "--name") == "app-weu"
    assert option(stop, "--resource-group") == "rg-weu"
    assert shlex.split(option(command, "--restore-command"))[:3] == ["az", "webapp", "start"]


def launch(tmp_path, raw: dict, run_py: str, *arguments: str, az_answer: str = ""):
    """A real run of the CLI in `tmp_path` with a stand-in `az` (it logs its arguments to
    az.log and prints `az_answer` for `az account get-access-token`) and a stand-in
    `loadtests.run` (`run_py`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(
        '#!/usr/bin/env bash\necho "$*" >> "$AZ_LOG"\n'
        f'if [[ "$1 $2" == "account get-access-token" ]]; then echo \'{az_answer}\'; fi\n')
    (bin_dir / "az").chmod(0o755)
    (tmp_path / "outputs.json").write_text(json.dumps(raw))
    fake_loadtests = tmp_path / "loadtests"
    fake_loadtests.mkdir()
    (fake_loadtests / "__init__.py").write_text("")
    (fake_loadtests / "run.py").write_text(run_py)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "AZ_LOG": str(tmp_path / "az.log"), "PYTHONPATH": str(ROOT)}
    env.pop("LOCUST_ACCESS_TOKEN", None)
    return subprocess.run(  # cwd first on sys.path: the stand-in loadtests package wins
        [sys.executable, "-m", "tools.operations.load_test", str(tmp_path / "outputs.json"),
         "--users", "5", "--duration", "60", *arguments],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)


def test_primary_is_started_again_when_the_load_test_fails(tmp_path):
    """A load test that crashes: the primary is started again all the same."""
    result = launch(tmp_path, RAW,
                    "import os, pathlib\n"
                    "pathlib.Path('key.txt').write_text(os.environ['LOCUST_SUBSCRIPTION_KEY'])\n"
                    "raise SystemExit(3)\n", "--failover")
    assert result.returncode == 3
    assert (tmp_path / "key.txt").read_text() == "sub-key"
    assert (tmp_path / "az.log").read_text().split()[:3] == ["webapp", "start", "--name"]
    assert "app-weu" in (tmp_path / "az.log").read_text()


def test_for_an_api_that_takes_tokens_the_load_sends_the_job_identitys_token(tmp_path):
    """`az account get-access-token` for the API's identifier URI gives the token Locust's
    users send ($LOCUST_ACCESS_TOKEN, never on a command line)."""
    raw = raw_outputs(gateway_urls=["https://apim.example"], subscription_key="sub-key",
                      api_identifier_uri="api://11111111-2222-3333-4444-555555555555")
    result = launch(tmp_path, raw,
                    "import os, pathlib, sys\n"
                    "pathlib.Path('caller.txt').write_text(os.environ['LOCUST_SUBSCRIPTION_KEY']"
                    " + ' ' + os.environ['LOCUST_ACCESS_TOKEN'])\n"
                    "pathlib.Path('argv.txt').write_text(' '.join(sys.argv))\n",
                    az_answer='{"accessToken": "tok-42"}')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "caller.txt").read_text() == "sub-key tok-42"
    assert "tok-42" not in (tmp_path / "argv.txt").read_text() + result.stdout + result.stderr
    assert (tmp_path / "az.log").read_text().split()[:4] == [
        "account", "get-access-token", "--resource", "api://11111111-2222-3333-4444-555555555555"]


def test_too_short_duration_is_rejected_in_one_line(tmp_path):
    (tmp_path / "outputs.json").write_text(json.dumps(RAW))
    result = subprocess.run(
        [sys.executable, "-m", "tools.operations.load_test", str(tmp_path / "outputs.json"),
         "--users", "5", "--duration", "5"], cwd=ROOT, capture_output=True, text=True,
        check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --users must be at least 1 and --duration at least 30 seconds"
    )


def test_restore_starts_the_primary_web_app(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(load_test.subprocess, "run",
                        lambda command, check: calls.append(command) or
                        subprocess.CompletedProcess(command, 0))
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(RAW))
    assert load_test.main([str(path), "--restore"]) == 0
    assert calls == [load_test.az_webapp("start", parse(RAW).web_apps[0])]


def test_restore_failure_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(load_test.subprocess, "run",
                        lambda command, check: subprocess.CompletedProcess(command, 3))
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(RAW))
    assert load_test.run_cli(lambda: load_test.main([str(path), "--restore"])) == 2
    assert "start it by hand" in capsys.readouterr().err


def test_a_load_run_needs_users_and_duration(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(RAW))
    assert load_test.run_cli(lambda: load_test.main([str(path)])) == 2
    assert "--users and --duration are required" in capsys.readouterr().err


def test_database_drill_moves_the_write_region_mid_run_and_back():
    command = load_test.load_test_command(parse(RAW), 20, 300, False, Path("r"),
                                          database_failover=Path("out.json"))
    assert command[3] == "failover" and "--max-failure-ratio" not in command
    move = shlex.split(option(command, "--fault-command"))
    assert move[2:5] == ["tools.operations.db_failover", "out.json", "move"]
    assert (option(move, "--timeout"), option(move, "--poll-seconds")) == ("100", "10")
    assert shlex.split(option(command, "--restore-command"))[-1] == "back"


def test_one_drill_per_run(tmp_path, capsys):
    (tmp_path / "outputs.json").write_text(json.dumps(RAW))
    argv = [str(tmp_path / "outputs.json"), "--users", "2", "--duration", "30", "--failover",
            "--database-failover"]
    assert load_test.run_cli(lambda: load_test.main(argv)) == 2
    assert "one drill per run" in capsys.readouterr().err


@pytest.mark.parametrize(("items", "verdict"), [
    ({"acknowledged": 3, "missing": 0, "duplicates": 0, "orphans": 0, "stale_content": 0}, 0),
    ({"acknowledged": 3, "missing": 0, "duplicates": 1, "orphans": 0, "stale_content": 0}, 1),
    ({"acknowledged": 3, "missing": 0, "duplicates": 0, "orphans": 0, "stale_content": 2}, 1),
    ({}, 1),  # nothing reconciled is not a pass
])
def test_the_database_drill_fails_on_any_reconciliation_defect(tmp_path, items, verdict):
    from tools.operations.load_test import database_verdict

    move = {"write_gap_s": 2.0, "write_gap_after_s": 1.0}
    (tmp_path / "summary.json").write_text(json.dumps(
        {"fault_time": 100.0, "fault_at_s": 1.0, "restore_at_s": 2.0,
         "faults": {"faults": [move]}, "items": items}))
    assert database_verdict(0, tmp_path) == verdict
