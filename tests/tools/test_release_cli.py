"""The rollout's evidence (GitHub Deployments, against the fake GitHub API) and its command
line's bad inputs. The rollout itself, with the Azure backend, runs in the rehearsal
(tests/github/test_rehearsal.py); with the local backend in tests/loadtests/test_slots.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.conftest import REPO
from tests.tools.stack_outputs_data import raw_outputs
from tools.cli import CliError
from tools.delivery.deployments import TASK, Deployments
from tools.delivery.stack_outputs import parse

ROOT = Path(__file__).resolve().parents[2]
SHA, OTHER_SHA = "a" * 40, "b" * 40
DIGEST, OTHER_DIGEST = "1" * 64, "2" * 64


@pytest.fixture
def deployments(github):
    state, api = github
    return state, Deployments(api)


def test_a_commit_is_green_only_with_its_own_package_and_a_success(deployments):
    state, found = deployments
    failed = found.start("dev", SHA, OTHER_DIGEST, "run/1")
    found.status(failed, "failure", "stopped", "run/1")
    assert found.green_in("dev", SHA, DIGEST) is None
    assert found.green_in("dev", SHA, OTHER_DIGEST) is None  # it failed
    green = found.start("dev", SHA, DIGEST, "run/2")
    found.status(green, "success", "rolled out", "run/2", "https://gateway")
    assert found.green_in("dev", SHA, DIGEST).id == green
    assert found.green_in("dev", SHA, "3" * 64) is None  # this commit, another package
    assert found.green_in("dev", OTHER_SHA, DIGEST) is None
    assert found.green_in("prod", SHA, DIGEST) is None
    # the status GitHub needs: in progress, then success with the environment URL
    [(_, _, states)] = [d for d in state.deployment_statuses("dev") if d[1] == DIGEST]
    assert states == ["in_progress", "success"]


def test_a_later_deployment_does_not_take_the_evidence_away(deployments):
    """GitHub marks an environment's earlier successful deployment inactive: it went green."""
    state, found = deployments
    first = found.start("dev", SHA, DIGEST, "run/1")
    found.status(first, "success", "rolled out", "run/1")
    second = found.start("dev", OTHER_SHA, OTHER_DIGEST, "run/2")
    found.status(second, "success", "rolled out", "run/2")
    assert state.deployment_statuses("dev")[0][2][-1] == "inactive"
    assert found.green_in("dev", SHA, DIGEST).id == first
    assert found.current("dev").package_sha256 == OTHER_DIGEST


def test_what_an_environment_runs_is_its_newest_success(deployments):
    _, found = deployments
    assert found.current("dev") is None
    ok = found.start("dev", SHA, DIGEST, "run/1")
    found.status(ok, "success", "rolled out", "run/1")
    broken = found.start("dev", OTHER_SHA, OTHER_DIGEST, "run/2")
    found.status(broken, "failure", "swapped back", "run/2")
    assert found.current("dev").package_sha256 == DIGEST  # the failed one was swapped back


def test_githubs_own_deployments_of_a_job_are_not_evidence(deployments):
    """A job naming `environment: dev` makes GitHub record a deployment (task `deploy`, no
    package): it proves nothing about a package."""
    state, found = deployments
    state.deployments.append({"id": 1, "sha": SHA, "ref": SHA, "task": "deploy",
                              "environment": "dev", "payload": {"package_sha256": DIGEST},
                              "statuses": [{"state": "success"}]})
    assert found.green_in("dev", SHA, DIGEST) is None and found.current("dev") is None
    assert TASK != "deploy"


def test_staging_hostnames_must_pair_with_the_web_apps():
    with pytest.raises(CliError, match="one slot per web app"):
        parse(raw_outputs(web_app_staging_hostnames=["only-one.azurewebsites.net"]))
    outputs = parse(raw_outputs(web_app_staging_hostnames=["a-staging.net", "b-staging.net"]))
    assert outputs.staging_urls == {"app-weu": "https://a-staging.net",
                                    "app-neu": "https://b-staging.net"}
    assert parse(raw_outputs()).staging_urls == {}


@pytest.mark.parametrize("bake", [-1, "300", True])
def test_the_bake_output_must_be_seconds(bake):
    with pytest.raises(CliError, match="release_bake_seconds"):
        parse(raw_outputs(release_bake_seconds=bake))


def release(tmp_path, *args, env=None):
    (tmp_path / "outputs.json").write_text(json.dumps(raw_outputs()))
    return subprocess.run(
        [sys.executable, "-m", "tools.delivery.release", str(tmp_path / "outputs.json"), *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "GITHUB_REPOSITORY": REPO, "GITHUB_TOKEN": "t", **(env or {})})


@pytest.mark.parametrize(("args", "env", "message"), [
    (["missing.zip", "--environment", "dev"], {"GITHUB_SHA": SHA},
     "package missing.zip not found: build it with `make package`"),
    (["PACKAGE", "--environment", "dev"], {"GITHUB_SHA": ""},
     "GITHUB_SHA is not set: the rollout records the commit it deploys"),
    (["PACKAGE", "--environment", "dev", "--bake-seconds", "-5"], {"GITHUB_SHA": SHA},
     "--bake-seconds must be >= 0, --metrics-every and --warm-up-seconds > 0"),
])
def test_bad_input_is_one_line_and_starts_nothing(tmp_path, args, env, message):
    package = tmp_path / "app.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    result = release(tmp_path, *[str(package) if a == "PACKAGE" else a for a in args], env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {message}"
    assert result.stdout == ""
