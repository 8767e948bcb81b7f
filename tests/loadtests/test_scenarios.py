"""The Locust scenarios, run by `python -m loadtests.run` as real subprocesses (short runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from loadtests.topology import ROOT

RUN_TIMEOUT_SECONDS = 120


def run(topology, *arguments: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        *arguments,
        "--host",
        topology.gateway_url,
        "--key",
        topology.config.subscription_key,
    ]
    # A session of its own: on a timeout, the run and the Locust it started are killed.
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"never happened: loadtests.run finished (not within {RUN_TIMEOUT_SECONDS} s)\n"
                + stdout
                + stderr
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_a_short_throughput_run_writes_its_summary_and_exits_0(topology, tmp_path):
    result = run(
        topology, "throughput", "--users", "4", "--duration", "3", "--report-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    assert {"locust.html", "locust_stats.csv", "timeline.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_a_broken_threshold_exits_non_zero_and_says_which(topology, tmp_path):
    result = run(
        topology,
        "throughput",
        "--users",
        "2",
        "--duration",
        "2",
        "--min-rps",
        "1000000000",
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "THRESHOLD BROKEN: min-rps" in result.stdout


def test_the_security_scenario_passes(topology, certs_dir, tmp_path):
    frontends = ",".join(topology.frontend_url(role) for role in ("primary", "secondary"))
    result = run(
        topology,
        "security",
        "--users",
        "2",
        "--duration",
        "3",
        "--frontend-urls",
        frontends,
        "--ca-bundle",
        str(certs_dir / "ca.pem"),
        "--cert",
        str(certs_dir / "client.pem"),
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0


def test_the_security_scenario_fails_when_a_front_end_admits_a_call(topology, certs_dir, tmp_path):
    """A "front end" that answers 401 instead of 403 (here: the gateway) breaks the run."""
    result = run(
        topology,
        "security",
        "--users",
        "1",
        "--duration",
        "2",
        "--frontend-urls",
        topology.gateway_url,
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
