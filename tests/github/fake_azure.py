"""What the runner reaches over HTTP in the rehearsal, on 127.0.0.1 (real HTTP, in threads):

- `Gateway`: API Management as the workflows meet it. It publishes only the operations of
  app/openapi.json under the API path (anything else: 404, as APIM answers for an operation it
  does not have), checks the subscription key (401), and answers the TodoItem operations from
  an in-memory store with `APP-SERVICE-SITE-NAME` set to the first regional web app that the
  fake az has not stopped (503 when none runs). A Cosmos DB write region that is moving
  (fake az `cosmosdb failover-priority-change`) is seen by the writes only.
- `/sites/<app>` and `/sites/<app>-staging` on the gateway's port: each regional web app's
  production and staging slot from the runner's side. Their access restrictions (default Deny,
  only APIM and Traffic Manager) answer 403, unless the fake az added the release's rule for
  the runner to that slot's main site. Then a slot answers the health path (the outputs' key)
  and the TodoItem operations with its own site name (`<app>` or `<app>-staging`, as App
  Service's instances do), from what the fake az deployed to it and swapped (azure.json
  `slots`): the scenario's `new_package_fails` makes any package but the original one answer a
  create with 500, in every slot (`"smoke"`) or only in production (`"after_swap"`).
  Production's answers are counted in metrics.json, which the fake `az monitor metrics list`
  reads.
- `/ip` on the gateway port answers the runner's "public address" for `--runner-ip auto`.
- With the scenario's `auth` (a stack on auth.mode = "entra"), the gateway and every slot also
  want a bearer token, checked by the app's own AccessTokenPolicy against the rehearsal's local
  issuer (the fake `az account get-access-token` signs with its key): none or an invalid one
  401, one without the operation's permission 403 (the gateway after the subscription key, as
  API Management's key check comes before its policy).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.access_tokens import AccessTokenPolicy, PermissionMissing
from app.contract import (
    AUTH_ENTRA,
    AUTHORIZATION_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENT_REPLAYED_HEADER,
    SITE_NAME_HEADER,
    SUBSCRIPTION_KEY_HEADER,
)
from app.settings import AuthSettings
from tests.github.fakes.chaos_studio import stopped_apps

ROOT = Path(__file__).resolve().parents[2]
RUNNER_IP = "203.0.113.7"


def published_operations() -> list[tuple[str, re.Pattern]]:
    """(method, path pattern) of every operation in app/openapi.json."""
    document = json.loads((ROOT / "app" / "openapi.json").read_text())
    found = []
    for path, operations in document["paths"].items():
        pattern = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        found += [(method.upper(), pattern) for method in operations
                  if method in ("get", "post", "put", "delete", "patch")]
    return found


class TokenCheck:
    """The bearer token check of API Management and the app, as the app makes it
    (app/access_tokens.py) for the scenario's `auth`: its issuer, the API's audience, the
    allowed clients."""

    def __init__(self, auth: dict) -> None:
        settings = AuthSettings(AUTH_ENTRA, auth["issuer"], (auth["audience"],),
                                auth["openid_config_url"], auth["tenant_id"],
                                frozenset(auth["clients"]))
        self.policy = AccessTokenPolicy(settings)
        self.lock = threading.Lock()  # one event loop at a time over the policy's key cache

    def refusal(self, request) -> int | None:
        """401 or 403 for the request's token, None when it may go on."""
        scheme, _, token = (request.headers.get(AUTHORIZATION_HEADER) or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 401
        try:
            with self.lock:
                caller = asyncio.run(self.policy.caller(token.encode()))
            self.policy.authorize(caller, request.command)
        except PermissionMissing:
            return 403
        except Exception:  # noqa: BLE001 - any refusal of the token is a 401 here
            return 401
        return None


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 with a handler bound to this object."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                owner.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


def reply(request, status: int, body=None, headers: dict | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


RELEASE_RULE = "github-actions-release"  # tools.delivery.deploy_app.RELEASE_RULE
HEALTH_KEY = "health-key-0123456789"  # tests.tools.stack_outputs_data.raw_outputs()


class Gateway(Server):
    def __init__(self, api_path: str, key: str):
        self.api_path = "/" + api_path.strip("/")
        self.key = key
        self.operations = published_operations()
        self.items: dict[str, dict] = {}
        # As the app: a keyed write's first answer, replayed to the same key (no fingerprint
        # check and no in-flight 409 here: app/idempotency.py and its tests hold those).
        self.answers: dict[str, tuple[int, dict | None]] = {}
        self.lock = threading.RLock()  # answer() holds it around todo()
        self.state_dir: Path | None = None  # the running rehearsal's REHEARSAL_DIR
        self.web_app_names: list[str] = []
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status)
        self.scenario: dict = {}
        self.token_check: TokenCheck | None = None  # set with a scenario that has `auth`
        self.metrics: dict[str, dict[str, int]] = {}  # production answers per web app
        super().__init__()

    def site_url(self, name: str, slot: str = "production") -> str:
        return f"{self.url}/sites/{name}" + ("" if slot == "production" else f"-{slot}")

    def azure(self) -> dict:
        path = self.state_dir / "azure.json" if self.state_dir else None
        try:
            return json.loads(path.read_text()) if path else {}
        except (OSError, ValueError):
            return {}

    def handle(self, request):
        path = request.path.split("?", 1)[0]
        if path == "/ip":
            data = RUNNER_IP.encode()
            request.send_response(200)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
            return
        status = self.site(request, path) if path.startswith("/sites/") else self.answer(
            request, path)
        with self.lock:
            self.calls.append((request.command, path, status))

    def site(self, request, path: str) -> int:
        """One web app slot, as the runner reaches it through its own hostname."""
        site, _, operation = path.removeprefix("/sites/").partition("/")
        operation = "/" + operation
        name, slot = (site.removesuffix("-staging"), "staging") if site.endswith("-staging") else (
            site, "production")
        azure = self.azure()
        key = name if slot == "production" else f"{name}/{slot}"
        if name not in self.web_app_names or RELEASE_RULE not in azure.get(
                "access_rules", {}).get(key, []):
            reply(request, 403, {"message": "Ip Forbidden"})
            return 403
        # the app checks the token again (defence in depth), on everything but its health path
        refused = (self.token_check and operation != f"/health/{HEALTH_KEY}"
                   and self.token_check.refusal(request))
        if refused:
            reply(request, refused, {"status": refused}, {SITE_NAME_HEADER: site})
            return refused
        content = azure.get("slots", {}).get(name, {"production": "initial"}).get(slot)
        failing = self.scenario.get("new_package_fails")
        broken = content not in (None, "initial") and (
            failing == "smoke" or (failing == "after_swap" and slot == "production"))
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        headers = {SITE_NAME_HEADER: site}
        if content is None:
            status, payload = 404, {"message": "no content deployed to this slot"}
        elif operation == f"/health/{HEALTH_KEY}":
            status, payload = 200, {"status": "healthy"}
        elif operation.startswith("/api/TodoItem") and not (broken and request.command == "POST"):
            status, payload = self.todo(request.command, operation, body)
        elif broken:
            status, payload = 500, {"message": "the new package fails"}
        else:
            status, payload = 404, {"message": "Not Found"}
        reply(request, status, payload, headers)
        if slot == "production":
            with self.lock:
                counts = self.metrics.setdefault(name, {"Requests": 0, "Http5xx": 0})
                counts["Requests"] += 1
                counts["Http5xx"] += status >= 500
                if self.state_dir is not None:
                    target = self.state_dir / "metrics.json"
                    target.with_suffix(".tmp").write_text(json.dumps(self.metrics))
                    target.with_suffix(".tmp").replace(target)
        return status

    def answer(self, request, path: str) -> int:
        operation = path.removeprefix(self.api_path) if path.startswith(self.api_path) else None
        if operation is None or not any(
                m == request.command and p.match(operation) for m, p in self.operations):
            reply(request, 404, {"statusCode": 404, "message": "Resource not found"})
            return 404
        if request.headers.get(SUBSCRIPTION_KEY_HEADER) != self.key:
            reply(request, 401, {"statusCode": 401, "message": "Access denied"})
            return 401
        refused = self.token_check and self.token_check.refusal(request)
        if refused:
            reply(request, refused, {"status": refused})
            return refused
        azure = self.azure()
        stopped = set(azure.get("stopped", [])) | stopped_apps(azure)  # az webapp stop, chaos
        running = [n for n in self.web_app_names if n not in stopped]
        if not running:
            reply(request, 503, {"message": "Service Unavailable"})
            return 503
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        if request.command != "GET" and azure.get("cosmos_moving"):
            reply(request, 503, {"message": "write region moving"})
            return 503
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        with self.lock:
            replayed = key in self.answers
            if not replayed:
                answer = self.todo(request.command, operation, body)
                if key is not None and request.command != "GET":
                    self.answers[key] = answer
            status, payload = self.answers[key] if replayed else answer
        headers = {SITE_NAME_HEADER: running[0]}
        if replayed:
            headers[IDEMPOTENT_REPLAYED_HEADER] = "true"
        reply(request, status, payload, headers)
        return status

    def todo(self, method: str, operation: str, body):
        item_id = operation.rsplit("/", 1)[1] if operation.count("/") == 3 else None
        with self.lock:
            if item_id is None and method == "GET":
                return 200, list(self.items.values())
            if item_id is None:  # POST
                item = {"id": uuid.uuid4().hex, "name": body.get("name"),
                        "isCompleted": bool(body.get("isCompleted"))}
                self.items[item["id"]] = item
                return 201, item
            if item_id not in self.items:
                return 404, {"status": 404}
            if method == "GET":
                return 200, self.items[item_id]
            if method == "PUT":
                self.items[item_id].update(name=body.get("name"),
                                           isCompleted=bool(body.get("isCompleted")))
                return 200, self.items[item_id]
            del self.items[item_id]
            return 204, None
