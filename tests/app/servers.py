"""Real server processes for the tests: app/startup.sh (gunicorn + uvicorn workers) or uvicorn."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtests.processes import ManagedProcess
from tests.leftovers import MARKER
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STARTUP_SCRIPT = REPO / "app" / "startup.sh"
READY_TIMEOUT = 60.0  # a hang guard only: the loop ends as soon as the server answers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(app_settings: dict[str, str], port: int) -> dict[str, str]:
    """What the server needs, then the app settings, and nothing else from this process."""
    inherited = ("PATH", "HOME", "LANG", MARKER)  # MARKER: stopped if this run is killed
    base = {key: os.environ[key] for key in inherited if key in os.environ}
    server = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
    }
    return {**base, **server, **app_settings}


def run_to_exit(command: list[str], app_settings: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command that should exit by itself; kill its whole process group if it does not."""
    env = server_environment(app_settings, free_port())
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass
class Server:
    process: ManagedProcess  # the topology's process manager: one for the whole repository
    port: int
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def output(self) -> str:
        return self.log.read_text()

    def listens(self) -> bool:
        """Whether this server's own process listens on its port (free_port() only found a free
        port: another process may have taken it since, and would answer in this server's stead)."""
        try:
            sockets = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, TypeError):  # TypeError: never started (no pid)
            return False
        return any(s.status == psutil.CONN_LISTEN and s.laddr.port == self.port for s in sockets)

    def answers(self, path: str) -> bool:
        """Whether the server answers GET `path` with any HTTP status."""
        try:
            self.request("GET", path)
        except OSError:
            return False
        return True

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Wait until `condition()` holds; fail saying `what` never happened, with the output."""

        def exited() -> str | None:  # the condition is checked once more: the output is final
            code = self.process.exit_code()
            return None if code is None or condition() else f"the server exited with {code}"

        wait_until(condition, what, READY_TIMEOUT, details=self.output, give_up=exited)

    def wait_for_output(self, text: str, times: int = 1) -> str:
        """Wait until the output holds `text` at least `times` times; return the output then."""
        what = f"the server printed {text!r}" + (f" {times} times" if times > 1 else "")
        self.wait_for(lambda: self.output().count(text) >= times, what)
        return self.output()

    def stop(self) -> int:
        """SIGTERM to the server's process group (gunicorn's master and workers shut down
        gracefully), SIGKILL after READY_TIMEOUT; returns the server's exit status."""
        return self.process.stop(timeout=READY_TIMEOUT)


def start(
    command: list[str],
    app_settings: dict[str, str],
    log: Path,
    ready_path: str,
    port: int | None = None,
    cwd: Path = REPO,
) -> Server:
    """Start the server and return once it answers `ready_path` (any HTTP status)."""
    port = port or free_port()
    log.unlink(missing_ok=True)  # this server's output only
    process = ManagedProcess(
        f"server on port {port}", command, log, server_environment(app_settings, port), cwd=cwd
    )
    process.start()
    server = Server(process, port, log)
    try:
        server.wait_for(
            lambda: server.listens() and server.answers(ready_path),
            f"the server listened on port {port} and answered GET {ready_path}",
        )
    except BaseException:
        server.stop()
        raise
    return server


def start_production(
    app_settings: dict[str, str],
    log: Path,
    ready_path: str,
    app_path: str | None = None,
    cpus: str | None = None,
) -> Server:
    """app/startup.sh, as App Service runs it (HOST/PORT from the environment).

    app_path serves another ASGI app with the same server settings (the benchmark's baseline);
    cpus pins the server and its workers (`taskset -c`, the benchmarks).
    """
    command = ["bash", str(STARTUP_SCRIPT), *([app_path] if app_path else [])]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    return start(command, app_settings, log, ready_path)


def start_uvicorn(app_settings: dict[str, str], log: Path, ready_path: str) -> Server:
    """`uvicorn app.main:app`, the local development command."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return start(command, app_settings, log, ready_path, port)
