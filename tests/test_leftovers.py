"""The suite's own guarantees (tests/leftovers.py, pytest-timeout), checked on real pytest runs.

Each test runs an inner pytest session in a subprocess, with this repository's plugin and a
small test file of its own, and real processes (`python -m http.server`) standing in for the
servers the suite starts: a killed run leaves nothing for the next, a hanging test fails with
a message and its processes stopped, SIGTERM tears fixtures down, and a leak fails the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 180.0  # a hang guard for the inner run

# Starts real processes, reports them in started.json, then does what the test asks.
INNER_HELPERS = '''
import json, os, re, subprocess, sys, threading, time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


SERVER = f"{sys.executable} -u -m http.server 0 --bind 127.0.0.1"


def wait_for(pattern, log, process):
    deadline = time.monotonic() + 60
    while not (match := re.search(pattern, log.read_text())):
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()
        time.sleep(0.05)
    return int(match[1])


def serve(new_session=True):
    """python -m http.server on a free port; returns (process, port) once it listens."""
    log = HERE / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(SERVER.split(), stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=new_session, cwd=HERE)
    return process, wait_for(r"port (\\d+)", log, process)


def serve_with_child():
    """A server leading its own group with a second process in it, as gunicorn's master and
    workers, or HAProxy's, are; returns (leader, the other pid, port). The other process runs
    with an empty environment: only its group ties it to the test run."""
    log = HERE / "group.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["bash", "-c", f"env -i sleep 3600 & echo child $!; exec {SERVER}"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=HERE,
        )
    return process, wait_for(r"child (\\d+)", log, process), wait_for(r"port (\\d+)", log, process)


def report(**started):
    (HERE / "started.tmp").write_text(json.dumps(started))
    (HERE / "started.tmp").rename(HERE / "started.json")


@pytest.fixture
def server():
    process, port = serve()
    yield process, port
    process.terminate()
    process.wait()
'''


def inner_run(folder: Path, body: str, *options: str) -> subprocess.Popen:
    """Start `pytest test_inner.py` in `folder` with tests.leftovers and pytest-timeout."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_inner.py").write_text(INNER_HELPERS + textwrap.dedent(body))
    command = [sys.executable, "-m", "pytest", "-p", "tests.leftovers", "-p", "no:cacheprovider",
               "-q", *options, "test_inner.py"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(run: subprocess.Popen) -> tuple[int, str]:
    output, _ = run.communicate(timeout=RUN_TIMEOUT)
    return run.returncode, output


def started(folder: Path) -> dict:
    path = folder / "started.json"
    wait_until(path.exists, "the inner test reported the processes it started")
    return json.loads(path.read_text())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def answers(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def kill_all(pids) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_run_after_a_killed_one_starts_with_its_processes_stopped(tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    run = inner_run(killed, """
        def test_starts_servers_then_hangs():
            leader, grandchild, port = serve_with_child()
            in_pytest_group, _ = serve(new_session=False)
            report(pids=[leader.pid, grandchild, in_pytest_group.pid], port=port)
            threading.Event().wait()
    """)
    left = started(killed)
    try:
        os.kill(run.pid, signal.SIGKILL)  # as an OOM kill or a cancelled CI job would
        run.communicate(timeout=RUN_TIMEOUT)
        # What a killed run leaves: its processes run on, the port is taken.
        assert all(alive(pid) for pid in left["pids"])
        assert answers(left["port"])

        after = tmp_path / "after"
        after.mkdir()
        status, output = finish(inner_run(after, "def test_nothing():\n    pass\n"))
        assert status == 0, output
        assert "stopped 2 processes left by an earlier test run that was killed" in output
        leader, _grandchild, in_pytest_group = left["pids"]
        assert f"pid {leader}: " in output and f"pid {in_pytest_group}: " in output
        for pid in left["pids"]:
            assert not alive(pid), f"pid {pid} survived the next run's start"
        assert not answers(left["port"])
    finally:
        kill_all(left["pids"])


def test_a_hanging_test_fails_with_a_timeout_and_its_server_is_stopped(tmp_path):
    status, output = finish(inner_run(tmp_path, """
        def test_hangs(server):
            report(pids=[server[0].pid], port=server[1])
            threading.Event().wait()
    """, "--timeout=5", "-o", "timeout_func_only=true"))  # the server's start may take its time
    left = started(tmp_path)
    assert status == 1, output
    assert "Timeout (>5.0s) from pytest-timeout" in output
    assert "FAILED test_inner.py::test_hangs" in output
    assert not alive(left["pids"][0])
    assert "left running" not in output


def test_sigterm_stops_the_run_after_its_fixtures_stop_their_servers(tmp_path):
    run = inner_run(tmp_path, """
        def test_serves_until_stopped(server):
            report(pids=[server[0].pid], port=server[1])
            threading.Event().wait()
    """)
    left = started(tmp_path)
    try:
        os.kill(run.pid, signal.SIGTERM)
        status, output = finish(run)
        assert status == pytest.ExitCode.INTERRUPTED, output
        assert "stopped by signal SIGTERM" in output
        assert not alive(left["pids"][0])
        assert not answers(left["port"])
    finally:
        kill_all(left["pids"])


def test_a_process_a_test_leaves_running_fails_the_run_and_is_stopped(tmp_path):
    status, output = finish(inner_run(tmp_path, """
        def test_forgets_its_server():
            process, port = serve()
            report(pids=[process.pid], port=port)
    """))
    left = started(tmp_path)
    assert status == 1, output
    assert "1 passed" in output
    assert "processes left running by tests (stopped now): 1" in output
    assert f"pid {left['pids'][0]}: " in output and "http.server" in output
    assert not alive(left["pids"][0])
