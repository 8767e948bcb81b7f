"""HAProxy's runtime API on a Unix socket (`stats socket ... level admin`): what the local
topology asks of its running HAProxies (the Traffic Manager model moving traffic, the slots'
swaps, a kill waiting for a request in flight, a bake's counters)."""

from __future__ import annotations

import socket

from loadtests.processes import TopologyError

ADMIN_TIMEOUT_SECONDS = 2.0


class HAProxyAdmin:
    """HAProxy's runtime API on a Unix socket (`stats socket ... level admin`)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def command(self, text: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(ADMIN_TIMEOUT_SECONDS)
                sock.connect(self.path)
                sock.sendall(text.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise TopologyError(f"HAProxy runtime API {self.path}: {error}") from None
        return b"".join(chunks).decode()

    def set_ready(self, backend: str, server: str, ready: bool) -> None:
        state = "ready" if ready else "maint"
        answer = self.command(f"set server {backend}/{server} state {state}").strip()
        if answer:  # silent on success
            raise TopologyError(f"HAProxy: set server {backend}/{server} state {state}: {answer}")

    def set_address(self, backend: str, server: str, port: int, host: str = "127.0.0.1") -> None:
        """Point a server at another address: new requests go there, those in flight finish."""
        answer = self.command(f"set server {backend}/{server} addr {host} port {port}").strip()
        if "changed" not in answer and answer:
            raise TopologyError(f"HAProxy: set server {backend}/{server} addr: {answer}")

    def responses(self, backend: str) -> tuple[int, int]:
        """(responses, 5xx responses) the backend has given since the start."""
        row = self._stat(backend, "BACKEND")
        counts = [int(row.get(f"hrsp_{kind}") or 0) for kind in ("1xx", "2xx", "3xx", "4xx", "5xx")]
        return sum(counts), counts[-1]

    def _stat(self, backend: str, server: str) -> dict[str, str]:
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise TopologyError(f"HAProxy runtime API {self.path}: no statistics")
        columns = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") == server:
                return row
        raise TopologyError(f"HAProxy: no server {backend}/{server}")

    def current_sessions(self, backend: str, server: str) -> int:
        """Requests the server is serving now (`scur` of `show stat`)."""
        return int(self._stat(backend, server)["scur"] or 0)
