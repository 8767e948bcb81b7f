"""tools/development/flake_hunt.py: repeated real pytest runs of a small suite that fails on purpose."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

# Fails in the second run only (a counter file survives between runs), and records whether a
# stress-ng worker was running while it ran.
FLAKY_SUITE = '''
from pathlib import Path

HERE = Path(__file__).parent


def stress_pids():
    pids = []
    for process in Path("/proc").iterdir():
        try:
            if process.name.isdigit() and b"stress-ng" in (process / "cmdline").read_bytes():
                pids.append(process.name)
        except OSError:
            pass
    return " ".join(pids)


def test_steady():
    pass


def test_fails_in_the_second_run():
    runs = HERE / "runs"
    count = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(count))
    (HERE / f"stress-{count}").write_text(stress_pids())
    assert count != 2, "the second run"
'''


def hunt(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_flaky.py").write_text(textwrap.dedent(FLAKY_SUITE))
    command = [sys.executable, "-m", "tools.development.flake_hunt", "--report-dir", str(tmp_path / "report"),
               *options, "--", str(suite / "test_flaky.py")]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)


def test_every_failing_test_is_reported_with_the_runs_it_failed_in(tmp_path):
    result = hunt(tmp_path, "--runs", "3", "--load", "none")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run 1/3: passed" in result.stdout
    assert "run 2/3: 1 failing" in result.stdout
    assert "run 3/3: passed" in result.stdout
    failing = "test_flaky.py::test_fails_in_the_second_run"
    assert "run 2: FAILED " in result.stdout and failing in result.stdout
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Failing tests: 1; failures: 1." in summary
    assert f"{failing}`: runs 2" in summary
    assert "AssertionError: the second run" in summary
    assert (tmp_path / "report" / "run-2.log").read_text().count("1 failed, 1 passed") == 1


def test_the_stress_load_runs_during_every_run_and_ends_with_the_hunt(tmp_path):
    result = hunt(tmp_path, "--runs", "1", "--load", "stress")
    assert result.returncode == 0, result.stdout + result.stderr
    stress = re.search(r"stress-ng --cpu 1 \(pid (\d+)\) keeps one core busy", result.stdout)
    assert stress, result.stdout
    assert stress[1] in (tmp_path / "suite" / "stress-1").read_text().split()
    with pytest.raises(ProcessLookupError):  # the stress-ng group is gone, workers included
        os.killpg(int(stress[1]), 0)


def test_bad_arguments_get_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.development.flake_hunt", "--runs", "0"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--runs: must be at least 1, got 0")


HANGING_SUITE = '''
import subprocess, sys, threading
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def server():
    process = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    process.terminate()
    process.wait()


def test_hangs(server):
    (HERE / "server.tmp").write_text(f"{server.pid} {Path('/proc/self/stat').read_text().split()[0]}")
    (HERE / "server.tmp").rename(HERE / "server")
    threading.Event().wait()
'''


def test_an_interrupted_hunt_stops_its_run_and_the_run_stops_its_servers(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_hangs.py").write_text(HANGING_SUITE)
    command = [sys.executable, "-m", "tools.development.flake_hunt", "--runs", "2", "--load", "stress",
               "--report-dir", str(tmp_path / "report"), "--", str(suite / "test_hangs.py")]
    hunt = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    started = suite / "server"
    wait_until(started.exists, "the hunt's run started the test's server")
    server, pytest_pid = (int(pid) for pid in started.read_text().split())
    hunt.send_signal(signal.SIGTERM)
    stdout, stderr = hunt.communicate(timeout=300)
    assert hunt.returncode == 130, stdout + stderr
    assert stderr.strip() == ("flake hunt: stopped by signal SIGTERM during run 1; that run was"
                              " stopped, nothing of it is left running")
    stress = int(re.search(r"\(pid (\d+)\)", stdout)[1])
    for pid in (server, pytest_pid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    with pytest.raises(ProcessLookupError):
        os.killpg(stress, 0)
