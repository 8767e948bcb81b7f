"""No process outlives the test run that started it (a pytest plugin, loaded by tests/conftest.py).

Every process the suite starts carries `TODO_API_TEST_SESSION=<pytest pid>:<its start time>` in
its environment: it is set in pytest's own environment before the first test, so children,
grandchildren and the process groups they lead inherit it (tests/app/servers.py passes it on
explicitly, as it builds the server's environment from scratch).

- At the start of a run, processes marked by a run that no longer exists (pytest was killed:
  SIGKILL, an OOM kill, a CI job cancelled) are stopped, with their process groups, and listed
  on the terminal. A second run right after a killed one starts clean.
- At the end of a run, after every fixture's teardown, a process still marked by this run is a
  leak: it is stopped and listed, and the run fails (exit status 1).
- SIGTERM (what `timeout`, CI runners and `kill` send) interrupts the run like Ctrl-C does, so
  fixtures tear down and stop what they started; by default it would end pytest on the spot.

A hung test is pytest-timeout's job (`timeout` in pyproject.toml): it fails the test with a
message and a stack dump, and the test's fixtures then stop its processes as on any failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil
import pytest

from tools.cli import interrupt_on_sigterm

MARKER = "TODO_API_TEST_SESSION"
# jsii's node kernel lives as long as the Python process that started it (stopped at exit).
OUTLIVES_THE_SESSION = ("jsii-runtime",)
STOP_TIMEOUT_SECONDS = 10.0
FIELDS = ["pid", "ppid", "environ", "cmdline", "status"]


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    session: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid}: {self.command[:160]}"


def session_of(pid: int) -> str | None:
    """`pid:start time` of a running process (a pid alone could be reused), None once gone."""
    try:
        return f"{pid}:{psutil.Process(pid).create_time()}"
    except psutil.Error:
        return None


def session_alive(session: str) -> bool:
    pid, _, _ = session.partition(":")
    return pid.isdigit() and session_of(int(pid)) == session


def marked_processes() -> list[Process]:
    """Every other live process whose environment carries a test-run marker."""
    found = []
    for process in psutil.process_iter(FIELDS, ad_value=None):
        info = process.info
        session = (info["environ"] or {}).get(MARKER)
        if not session or info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            pgid = os.getpgid(info["pid"])
        except ProcessLookupError:
            continue
        command = " ".join(info["cmdline"] or [])
        found.append(Process(info["pid"], info["ppid"], pgid, session, command))
    return found


def stop(processes: list[Process]) -> None:
    """SIGKILL each process, and the whole group of those that lead one; return once none of
    them exists any more (our own children reaped)."""
    own_group = os.getpgrp()
    handles = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            handles.append(psutil.Process(process.pid))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if process.pgid == process.pid and process.pgid != own_group:
                os.killpg(process.pgid, signal.SIGKILL)
            else:
                os.kill(process.pid, signal.SIGKILL)
    _, remaining = psutil.wait_procs(handles, timeout=STOP_TIMEOUT_SECONDS)
    if remaining:
        listed = "; ".join(f"pid {p.pid}" for p in remaining)
        raise RuntimeError(f"could not stop processes left by tests: {listed}")


def left_by_ended_runs() -> list[Process]:
    return [p for p in marked_processes() if not session_alive(p.session)]


def leaked_by_this_run(session: str) -> list[Process]:
    """This run's processes, but for those that end with pytest itself (and their children)."""
    mine = {p.pid: p for p in marked_processes() if p.session == session}
    expected = {p.pid for p in mine.values() if any(n in p.command for n in OUTLIVES_THE_SESSION)}
    while grown := {p.pid for p in mine.values() if p.ppid in expected} - expected:
        expected |= grown
    return [p for p in mine.values() if p.pid not in expected]


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # pragma: no cover - no xdist here, but never twice
        return
    leftovers = left_by_ended_runs()
    stop(leftovers)
    config.stash[_cleaned] = leftovers
    config.stash[_session] = session_of(os.getpid())
    os.environ[MARKER] = config.stash[_session]
    interrupt_on_sigterm()


def pytest_sessionstart(session: pytest.Session) -> None:
    leftovers = session.config.stash.get(_cleaned, [])
    if leftovers:
        lines = [f"stopped {len(leftovers)} processes left by an earlier test run that was killed:"]
        write(session, [*lines, *(f"  {p.describe()}" for p in leftovers)])


def write(session: pytest.Session, lines: list[str], **markup: bool) -> None:
    """To the terminal, -q or not."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if reporter._tw.width_of_current_line:  # after -q's progress dots
        reporter.write("\n")
    for line in lines:
        reporter.write_line(line, **markup)


@pytest.hookimpl(trylast=True)  # after the fixtures' teardown (runner's pytest_sessionfinish)
def pytest_sessionfinish(session: pytest.Session) -> None:
    leaked = leaked_by_this_run(session.config.stash.get(_session, ""))
    if not leaked:
        return
    stop(leaked)
    lines = [f"processes left running by tests (stopped now): {len(leaked)}"]
    write(session, [*lines, *(f"  {p.describe()}" for p in leaked)], red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_cleaned = pytest.StashKey[list]()
_session = pytest.StashKey[str]()
