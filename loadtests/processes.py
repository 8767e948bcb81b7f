"""Child processes of the local topology: start in their own process group, wait until ready,
stop the whole group (nothing left running), and free 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from tools.process_groups import signal_group

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05


class TopologyError(Exception):
    """The topology cannot start or act; the message names the part at fault."""


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (the sockets stay open until all are picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def ensure_port_free(port: int, owner: str) -> None:
    """Fail, naming the owner, when something listens on the port. Connections left in
    TIME_WAIT by an earlier run of the same server do not count (servers bind with
    SO_REUSEADDR, so they do not stop a restart)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            raise TopologyError(f"{owner}: port {HOST}:{port} is already in use") from None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def http_status(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    timeout: float = 2.0,
) -> int | None:
    """Status of a GET on 127.0.0.1 (HTTPS with `tls`), or None when nothing answers within
    `timeout` seconds."""
    if tls is None:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=tls)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class ManagedProcess:
    """One child process in its own session (process group), logging into a file: the local
    topology's processes and the app servers the tests start (tests/app/servers.py)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.cwd = cwd
        self.stop_signal = stop_signal  # the signal that makes the program shut down cleanly
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                status = self.process.returncode if self.process else "?"
                raise TopologyError(
                    f"{self.name} exited with status {status} at start: {tail(self.log)}"
                )
            if ready():
                return
            time.sleep(POLL_SECONDS)
        raise TopologyError(f"{self.name} was not ready after {timeout:.0f} s: {tail(self.log)}")

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            signal_group(self.process.pid, signum)

    def pause(self) -> None:
        """SIGSTOP the whole group (the hang fault): its sockets still accept, nothing answers.
        Returns once every member is stopped (a signal is delivered, not obeyed, by kill)."""
        self.signal_group(signal.SIGSTOP)
        self.paused = True
        if self.process is not None:
            pgid = self.process.pid

            def stopped() -> bool:
                # Sent again while one still runs: a member that joined the group after the
                # signal (a worker the master started just then) never got it. CI once saw a
                # member still running 10 s after one SIGSTOP.
                running = _running(pgid)
                if running:
                    self.signal_group(signal.SIGSTOP)
                return not running

            self.wait_for(stopped, "every process stopped (SIGSTOP)",
                          detail=lambda: _describe(_running(pgid)))

    def wait_for(self, condition: Callable[[], bool], what: str,
                 detail: Callable[[], str] | None = None) -> None:
        """Wait (bounded) until `condition()` holds for this process; fail naming `what` (and
        `detail()`, what still stands in its way)."""
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while not condition():
            if time.monotonic() >= deadline:
                said = f": {detail()}" if detail else ""
                raise TopologyError(
                    f"{self.name}: not {what} {STOP_TIMEOUT_SECONDS:.0f} s on{said}")
            time.sleep(POLL_SECONDS)

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL the whole group (the fault): no graceful shutdown, in-flight requests cut.
        Returns once no member runs (so none holds its sockets: its ports refuse)."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
            self.wait_group_gone()

    def wait_group_gone(self) -> None:
        """Wait until no member of the group runs: reaping the leader is not enough, its
        children (gunicorn workers, HAProxy workers) are killed too but may still be exiting."""
        assert self.process is not None
        pgid = self.process.pid
        self.wait_for(lambda: not group_alive(pgid), "every process gone after SIGKILL")

    def exit_code(self) -> int | None:
        """The leader's exit status, None while it runs (or before it started)."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """Send the stop signal to the group, SIGKILL it if it lingers, and reap the child.
        Returns the leader's exit status (None if it never started)."""
        if self.process is None:
            return None
        self.signal_group(self.stop_signal)
        self.resume()  # a stopped (paused) group handles the stop signal only once continued
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever the leader did, no member of its group may outlive it.
        self.signal_group(signal.SIGKILL)
        code = self.process.wait()
        self.wait_group_gone()
        return code


def group_alive(pgid: int) -> bool:
    """True while any process of the group still runs. A member that has exited but is not
    yet reaped (a zombie: an orphaned worker waits for init, which may take a second or two)
    runs no more and holds no socket, so it does not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = [stat.state for stat in _process_table() if stat.pgrp == pgid]
    return any(state != "Z" for state in members)


def _running(pgid: int) -> list[ProcessStat]:
    """The live members of the group that are not stopped (state T; Z: exited)."""
    return [stat for stat in _process_table() if stat.pgrp == pgid and stat.state not in "TZ"]


def _describe(stats: list[ProcessStat]) -> str:
    """Each process as `pid state command line` (what a failure message shows)."""
    described = []
    for stat in stats:
        try:
            command = Path(f"/proc/{stat.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            command = b"(exited)"
        described.append(f"{stat.pid} {stat.state} {command.decode(errors='replace')[:80]}")
    return "; ".join(described) or "none left"


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process it started that is still its descendant: for a
    child left in its parent's process group (so that a group kill from above reaches it),
    which `killpg` of its own cannot target. The descendants are listed first (psutil), then
    all are killed: parent first, so it starts no more."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            member.kill()


@dataclass
class ProcessStat:
    pid: int
    state: str  # R, S, D, T, Z (zombie: exited, not yet reaped) ...
    ppid: int
    pgrp: int


def _process_table() -> list[ProcessStat]:
    """Every process, from /proc/<pid>/stat (Linux)."""
    table = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = path.read_text()
        except OSError:  # exited meanwhile
            continue
        state, ppid, pgrp = _stat_fields(text)[:3]
        if state == "Z" and _threads_running(path.parent):
            state = "R"  # its main thread has exited, another still runs (and holds its files)
        table.append(ProcessStat(int(path.parent.name), state, int(ppid), int(pgrp)))
    return table


def _stat_fields(text: str) -> list[str]:
    """The fields after `pid (comm)` of a /proc stat line (comm may hold spaces and ")")."""
    return text[text.rindex(")") + 2 :].split()


def _threads_running(process: Path) -> bool:
    """True while any thread of the process has not exited: a process shows Z as soon as its
    main thread exits, but its sockets stay open until the last thread has."""
    for stat in process.glob("task/[0-9]*/stat"):
        try:
            if _stat_fields(stat.read_text())[0] not in "ZX":
                return True
        except OSError:
            continue
    return False
