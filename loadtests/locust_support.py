"""What the locustfiles share: command-line options, TLS set-up, the TodoItem user behaviour and
the per-request record writer. Imported by the locustfiles only (Locust puts this folder on
sys.path); never imported by pytest or the rest of the package (gevent monkey-patches).

Options (each also from an environment variable, for the GitHub workflow):
  --subscription-key  LOCUST_SUBSCRIPTION_KEY   Ocp-Apim-Subscription-Key sent to the gateway
  --api-path          LOCUST_API_PATH           path prefix of the API (Azure APIM: /todo)
  --client-cert/-key  LOCUST_CLIENT_CERT/_KEY   client certificate to present (optional)
  --ca-bundle         LOCUST_CA_BUNDLE          CA file to verify HTTPS servers (local: .certs/ca.pem)
  --user-rate         LOCUST_USER_RATE          requests/s per user (0: as fast as possible)
  --records-dir       LOCUST_RECORDS_DIR        write one JSON line per request here
  --frontend-urls     LOCUST_FRONTEND_URLS      security: regional front ends, comma-separated
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
import uuid
from pathlib import Path

import gevent.ssl
from locust import FastHttpUser, constant_throughput, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
from app.contract import SITE_NAME_HEADER, SUBSCRIPTION_KEY_HEADER, TODO_PATH
from app.settings import DEFAULT_CLIENT_CERT_HEADER as CLIENT_CERT_HEADER  # noqa: F401 (re-exported)

ITEMS_PER_USER = 5
FLUSH_SECONDS = 1.0


@events.init_command_line_parser.add_listener
def add_options(parser):
    group = parser.add_argument_group("TodoItem API")
    group.add_argument("--subscription-key", env_var="LOCUST_SUBSCRIPTION_KEY", default="")
    group.add_argument("--api-path", env_var="LOCUST_API_PATH", default="")
    group.add_argument("--client-cert", env_var="LOCUST_CLIENT_CERT", default="")
    group.add_argument("--client-key", env_var="LOCUST_CLIENT_KEY", default="")
    group.add_argument("--ca-bundle", env_var="LOCUST_CA_BUNDLE", default="")
    group.add_argument("--user-rate", env_var="LOCUST_USER_RATE", type=float, default=0.0)
    group.add_argument("--records-dir", env_var="LOCUST_RECORDS_DIR", default="")
    group.add_argument("--frontend-urls", env_var="LOCUST_FRONTEND_URLS", default="")


_OPTIONS: dict = {"value": None}


@events.init.add_listener
def remember_options(environment, **_):
    _OPTIONS["value"] = environment.parsed_options


def ssl_context(with_client_cert: bool):
    opts = _OPTIONS["value"]
    context = gevent.ssl.create_default_context(cafile=(opts.ca_bundle or None) if opts else None)
    if with_client_cert and opts and opts.client_cert:
        context.load_cert_chain(opts.client_cert, opts.client_key or None)
    return context


# -- per-request records ------------------------------------------------------------------------


class RecordWriter:
    """One JSON-lines file per process (works under --processes and master/workers)."""

    def __init__(self) -> None:
        self.file = None
        self.pid = None
        self.flushed = 0.0

    def write(self, record: dict) -> None:
        opts = _OPTIONS["value"]
        if not opts or not opts.records_dir:
            return
        if self.file is None or self.pid != os.getpid():
            self.pid = os.getpid()
            path = Path(opts.records_dir) / f"records-{socket.gethostname()}-{self.pid}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", buffering=1 << 16)  # noqa: SIM115 (open for the run)
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        now = time.time()
        if now - self.flushed > FLUSH_SECONDS:
            self.file.flush()
            self.flushed = now

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


WRITER = RecordWriter()


@events.request.add_listener
def record_request(
    request_type, name, response_time, response, exception, context=None, start_time=None, **_
):
    context = context or {}
    status = getattr(response, "status_code", 0) or 0
    headers = getattr(response, "headers", None) or {}
    outcome = context.get("outcome") or ("fail" if exception else "ok")
    WRITER.write(
        {
            "t": start_time or (time.time() - response_time / 1000),
            "method": request_type,
            "name": name,
            "status": status,
            "ms": round(response_time or 0, 3),
            "site": headers.get(SITE_NAME_HEADER),
            "outcome": outcome,
            "item": context.get("item"),
            "user": context.get("user"),
        }
    )


@events.test_stop.add_listener
def flush_records(**_):
    if WRITER.file is not None:
        WRITER.file.flush()


@events.quitting.add_listener
def close_records(**_):
    WRITER.close()


# -- the TodoItem user --------------------------------------------------------------------------


class TodoUser(FastHttpUser):
    """A realistic TodoItem mix: list, create, read, update, delete (own items, at most 5 kept).

    A 404 on a read or update of an item this user created earlier means the item was lost
    (for example across a failover with the in-memory store): the request is recorded with
    outcome "lost", counted apart from availability failures, and the item is forgotten.
    """

    abstract = True

    def __init__(self, environment) -> None:
        self.ssl_context_factory = lambda: ssl_context(with_client_cert=True)
        super().__init__(environment)
        opts = environment.parsed_options
        self.prefix = (opts.api_path or "").rstrip("/")
        self.headers = {SUBSCRIPTION_KEY_HEADER: opts.subscription_key}
        self.items: list[str] = []
        self.user_id = uuid.uuid4().hex[:8]

    def wait_time(self):
        rate = self.environment.parsed_options.user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0

    def _url(self, item: str | None = None) -> str:
        return f"{self.prefix}{TODO_PATH}" + (f"/{item}" if item else "")

    def _forget(self, item: str) -> None:
        if item in self.items:
            self.items.remove(item)

    def _call(self, method: str, item: str | None, expected: int, **kwargs) -> bool:
        """One request; True when it got the expected status."""
        name = f"{self.prefix}{TODO_PATH}" + ("/[id]" if item else "")
        context = {"item": item, "user": self.user_id}
        with self.client.request(
            method,
            self._url(item),
            name=name,
            headers=self.headers,
            context=context,
            catch_response=True,
            **kwargs,
        ) as response:
            if response.status_code == expected:
                response.success()
                return True
            if item is not None and response.status_code == 404 and method == "DELETE":
                # Gone already: a delete the gateway retried after its first attempt landed
                # (or a lost item: reads and updates, not deletes, are what detect loss).
                response.success()
                self._forget(item)
            elif item is not None and response.status_code == 404:
                response.request_meta["context"]["outcome"] = "lost"
                response.success()
                self._forget(item)
            else:
                response.failure(f"expected {expected}, got {response.status_code}")
            return False

    @task(1)
    def list_items(self) -> None:
        self._call("GET", None, 200)

    @task(3)
    def create_item(self) -> None:
        body = {"name": f"load test item {random.randint(0, 1_000_000)}", "isCompleted": False}
        with self.client.request(
            "POST",
            self._url(),
            name=f"{self.prefix}{TODO_PATH}",
            headers=self.headers,
            json=body,
            context={"user": self.user_id},
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                item = response.json()["id"]
                response.request_meta["context"]["item"] = item
                self.items.append(item)
            else:
                response.failure(f"expected 201, got {response.status_code}")
        if len(self.items) > ITEMS_PER_USER:
            self.delete_item()

    @task(5)
    def read_item(self) -> None:
        if self.items:
            self._call("GET", random.choice(self.items), 200)

    @task(2)
    def update_item(self) -> None:
        if self.items:
            item = random.choice(self.items)
            body = {"id": item, "name": "updated by the load test", "isCompleted": True}
            self._call("PUT", item, 200, json=body)

    @task(1)
    def delete_item(self) -> None:
        if self.items:
            item = self.items[0]
            if self._call("DELETE", item, 204):
                self._forget(item)
