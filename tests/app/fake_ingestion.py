"""A stand-in for Application Insights' ingestion endpoint on 127.0.0.1, for the real exporter.

The Azure Monitor exporter POSTs batches of envelopes (JSON, maybe gzip) to
`<IngestionEndpoint>/v2.1/track`; this server keeps them and answers as the service does.
`connection_string` points a process at it; the environment in `EXPORTER_QUIET` keeps the
exporter from calling anything else (statsbeat, the configuration control plane).
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler

from tests.app.local_server import LocalHTTPServer
from tests.waiting import wait_until

INSTRUMENTATION_KEY = "00000000-0000-4000-8000-000000000000"
EXPORTER_QUIET = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
}
WAIT_TIMEOUT = 60.0  # a hang guard only: waits end as soon as the condition holds


class FakeIngestion(LocalHTTPServer):
    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def connection_string(self) -> str:
        endpoint = f"http://127.0.0.1:{self.port}/"
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={endpoint}"

    def _handler(self):
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                envelopes = json.loads(body) if self.path.endswith("/track") else []
                with ingestion._lock:
                    ingestion.raw.append(body)
                    ingestion.envelopes.extend(envelopes)
                reply = json.dumps(
                    {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:  # quiet
                pass

        return Handler

    def of_type(self, base_type: str) -> list[dict]:
        with self._lock:
            return [e for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]

    def wait_for(self, describe: str, condition) -> list[dict]:
        """Wait until condition(envelopes) is truthy; return the envelopes then."""

        def envelopes_if_done() -> list[dict] | None:
            envelopes = self.received()
            return envelopes if condition(envelopes) else None

        return wait_until(
            envelopes_if_done,
            f"ingestion received {describe}",
            WAIT_TIMEOUT,
            details=lambda: f"got {sorted({request_name(e) for e in self.received()})}",
        )

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.envelopes)

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"\n".join(self.raw)


def request_name(envelope: dict) -> str:
    data = envelope.get("data", {})
    return f"{data.get('baseType')}:{data.get('baseData', {}).get('name', '')}"
