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
  --detailed-labels   LOCUST_DETAILED_LABELS    name each request "<METHOD> <path> @<site> [tags]"
                                                (loadtests.alt_results.label): Azure Load Testing's
                                                results carry the name only
  --alt-results-dir   LOCUST_ALT_RESULTS_DIR    also write the requests as Azure Load Testing's
                                                engines do (a results CSV per process), here:
                                                a stand-in for the service, for the tests
  --token-issuer      LOCUST_TOKEN_ISSUER       the local topology's issuer config (issuer.json):
                                                each user mints a bearer token of its own, with
                                                an `oid` of its own (loadtests.token_issuer)
  (environment only)  LOCUST_ACCESS_TOKEN       one bearer token every user sends (an API on
                                                Azure with auth.mode = "entra": a client
                                                credentials token, one caller for all users);
                                                never an option, so it stays out of `ps`
  (environment only)  LOCUST_TOKEN_RESOURCE     the API's identifier URI: every user sends one
                                                token of the machine's managed identity for it,
                                                fetched from IMDS (Azure Load Testing's engines:
                                                the test's engine identity; tools.operations.
                                                azure_load_testing writes it into the test)
  (environment only)  LOCUST_TOKEN_CLIENT_ID    which user-assigned identity (its client id)
  (environment only)  LOCUST_IMDS_ENDPOINT      IMDS's address (default http://169.254.169.254;
                                                the tests: the local issuer's stand-in)

Who is calling, the first that applies: --token-issuer (every user its own caller, below);
LOCUST_ACCESS_TOKEN (a token given: all users one caller); LOCUST_TOKEN_RESOURCE (a token
fetched: all users one caller, the identity's); else no Authorization header. With one caller
there is nothing to check between users. With --token-issuer every user is its own caller
(owner). It remembers the ids it created and the identities (tokens in the names) of every
create it sent, and checks each list and each read it gets answered: an item that is not its
own is a cross-owner read, recorded (`cross_owner`: how many foreign items the answer held; 0 on
a checked read) and failed.

On Azure Load Testing every uploaded file lands beside the locustfile, and the packages this
module imports (app.contract, loadtests.*) come in SUPPORT_ZIP (tools.operations.azure_load_testing
builds it): importable from the zip itself, or from its contents if the service unpacked it
(beside the locustfile, or into a folder named after it). Which of the three it is, is not
documented; each is on sys.path.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http import HTTPStatus
from pathlib import Path

import gevent
import gevent.event
import gevent.lock
import gevent.ssl
from locust import FastHttpUser, events, task

HERE = Path(__file__).resolve().parent
SUPPORT_ZIP = "loadtests_support.zip"
# The repository root; on Azure Load Testing the packages' folder, or the zip (searched first).
for entry in (HERE.parent, HERE / SUPPORT_ZIP.removesuffix(".zip"), HERE / SUPPORT_ZIP):
    sys.path.insert(0, str(entry))
from app.contract import (  # CLIENT_CERT_HEADER: re-exported to the security locustfile
    AUTHORIZATION_HEADER,
    CLIENT_CERT_HEADER,  # noqa: F401
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_METHODS,
    IDEMPOTENT_REPLAYED_HEADER,
    SITE_NAME_HEADER,
    SUBSCRIPTION_KEY_HEADER,
    TODO_PATH,
)
from loadtests import alt_results
from loadtests.item_identity import content, item_name, new_token, token_of

ITEMS_PER_USER = 5
FLUSH_SECONDS = 1.0
# A user's token is minted again this long before it expires (a run longer than its lifetime).
TOKEN_RENEW_SECONDS = 300
ACCESS_TOKEN_VARIABLE = "LOCUST_ACCESS_TOKEN"
LOG = logging.getLogger(__name__)


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
    group.add_argument("--detailed-labels", env_var="LOCUST_DETAILED_LABELS", action="store_true")
    group.add_argument("--alt-results-dir", env_var="LOCUST_ALT_RESULTS_DIR", default="")
    group.add_argument("--token-issuer", env_var="LOCUST_TOKEN_ISSUER", default="")


_OPTIONS: dict = {"value": None, "environment": None}


@events.init.add_listener
def remember_options(environment, **_):
    _OPTIONS["value"] = environment.parsed_options
    _OPTIONS["environment"] = environment


def ssl_context(with_client_cert: bool):
    opts = _OPTIONS["value"]
    context = gevent.ssl.create_default_context(cafile=(opts.ca_bundle or None) if opts else None)
    if with_client_cert and opts and opts.client_cert:
        context.load_cert_chain(opts.client_cert, opts.client_key or None)
    return context


# -- per-request records ------------------------------------------------------------------------


class RecordWriter:
    """One file per process (works under --processes and master/workers) in the folder of the
    option `directory`; JSON lines unless given text lines (and a header line for a new file)."""

    def __init__(
        self, kind: str = "records", suffix: str = "jsonl", directory: str = "records_dir",
        header: str | None = None,
    ) -> None:
        self.kind, self.suffix, self.directory, self.header = kind, suffix, directory, header
        self.file = None
        self.pid = None
        self.flushed = 0.0

    def write(self, record: dict | str) -> None:
        opts = _OPTIONS["value"]
        if not opts or not getattr(opts, self.directory):
            return
        if self.file is None or self.pid != os.getpid():
            self.pid = os.getpid()
            name = f"{self.kind}-{socket.gethostname()}-{self.pid}.{self.suffix}"
            path = Path(getattr(opts, self.directory)) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", buffering=1 << 16)  # noqa: SIM115 (open for the run)
            if self.header is not None:
                self.file.write(self.header + "\n")
        line = record if isinstance(record, str) else json.dumps(record, separators=(",", ":"))
        self.file.write(line + "\n")
        now = time.time()
        if now - self.flushed > FLUSH_SECONDS:
            self.file.flush()
            self.flushed = now

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


WRITER = RecordWriter()
# The token of every create, written before it is sent: a request cut when the run stops its
# users leaves no record, but its item must not then count as an orphan (reconciliation).
SENT = RecordWriter("sent", "txt")
# Azure Load Testing's results format (loadtests.alt_results), as its engines write it.
ALT_RESULTS = RecordWriter("results", "csv", "alt_results_dir", alt_results.header())


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
            "name": alt_results.name_of(name),  # without what --detailed-labels added
            "status": status,
            "ms": round(response_time or 0, 3),
            "site": headers.get(SITE_NAME_HEADER),
            "outcome": outcome,
            "item": context.get("item"),
            "user": context.get("user"),
            "token": context.get("token"),
            # The app answered from a stored Idempotency-Key answer (the write was a retry that
            # the gateway sent again, or the first had already been applied).
            **({"replayed": True} if headers.get(IDEMPOTENT_REPLAYED_HEADER) == "true" else {}),
            **({"retry_after": True} if headers.get("Retry-After") is not None else {}),
            # A create this user sent again on purpose, with the key of an earlier one.
            **({"deliberate_replay": True} if context.get("deliberate_replay") else {}),
            **({"content": context["content"]} if "content" in context else {}),
            # A read checked for other callers' items: how many it was answered (0: none).
            **({"cross_owner": context["cross_owner"]} if "cross_owner" in context else {}),
        }
    )


@events.request.add_listener
def write_alt_results_row(
    name, response_time, response_length, response, exception, context=None, start_time=None,
    url=None, **_,
):
    """The row an Azure Load Testing engine writes for the request (--alt-results-dir only):
    the documented columns, filled from what Locust reports (Locust measures no time to first
    byte or connect time: Latency is the elapsed time, Connect and IdleTime 0)."""
    opts = _OPTIONS["value"]
    if not opts or not opts.alt_results_dir:
        return
    status = getattr(response, "status_code", 0) or 0
    started = start_time or (time.time() - response_time / 1000)
    environment = _OPTIONS["environment"]
    users = getattr(getattr(environment, "runner", None), "user_count", 0)
    elapsed = round(response_time or 0)
    ALT_RESULTS.write(alt_results.csv_row({
        "timeStamp": round(started * 1000),
        "elapsed": elapsed,
        "label": name,
        "responseCode": status,
        "responseMessage": _reason(status),
        "threadName": f"{socket.gethostname()}-{(context or {}).get('user') or 'user'}",
        "dataType": "text",
        "success": "false" if exception else "true",
        "failureMessage": str(exception) if exception else "",
        "bytes": response_length or 0,
        "sentBytes": 0,
        "grpThreads": users,
        "allThreads": users,
        "URL": url or "",
        "Latency": elapsed,
        "IdleTime": 0,
        "Connect": 0,
    }))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # no answer (0), or a status HTTP does not name
        return ""


@events.test_stop.add_listener
def flush_records(**_):
    for writer in (WRITER, SENT, ALT_RESULTS):
        if writer.file is not None:
            writer.file.flush()


@events.quitting.add_listener
def close_records(**_):
    for writer in (WRITER, SENT, ALT_RESULTS):
        writer.close()


# -- the TodoItem user --------------------------------------------------------------------------


# A keyed write answered 409 (its key is held by an attempt in flight) or 503 (the store is
# away), with Retry-After, is sent again with the same key after Retry-After seconds (each wait
# capped at MAX_RETRY_AFTER_S) while the waits add up to at most RETRY_BUDGET_S.
MAX_RETRY_AFTER_S = 10.0
RETRY_BUDGET_S = 30.0
RETRYABLE_WITH_KEY = (409, 503)
# Creates remembered for deliberate replays (per user); the oldest are replayed first, so most
# replays come after a fault and restart the original create had preceded.
REMEMBERED_CREATES = 20


def retry_after(response) -> float | None:
    """Seconds the answer's Retry-After asks for (capped), None without a usable one."""
    try:
        return min(float(response.headers.get("Retry-After")), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        return None


_MINTERS: dict = {}  # issuer config path -> Minter (the key file is read once per process)


class SharedCaller:
    """The one identity of every user (LOCUST_ACCESS_TOKEN): a token obtained outside Locust,
    sent as it is. Users share its items, so no read is checked for other callers' items."""

    alone = False

    def __init__(self, token: str) -> None:
        self._authorization = f"Bearer {token}"

    def authorization(self) -> str:
        return self._authorization


class Caller:
    """One user's identity: an `oid` of its own and a bearer token of the topology's issuer
    for it (--token-issuer), minted again TOKEN_RENEW_SECONDS before it expires."""

    alone = True  # its items are its own: every read is checked for other callers' items

    def __init__(self, issuer_config: str) -> None:
        from loadtests.token_issuer import TOKEN_LIFETIME_SECONDS, IssuerConfig, Minter

        if issuer_config not in _MINTERS:
            _MINTERS[issuer_config] = Minter(IssuerConfig.read(issuer_config))
        self.minter = _MINTERS[issuer_config]
        self.lifetime = TOKEN_LIFETIME_SECONDS
        self.oid = str(uuid.uuid4())
        self._token, self._renew_at = "", 0.0

    def authorization(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = self.minter.token(self.oid, now=now)
            self._renew_at = now + self.lifetime - TOKEN_RENEW_SECONDS
        return f"Bearer {self._token}"


# -- the machine's managed identity (Azure Load Testing's engines) ------------------------------
#
# Azure Load Testing assigns the test's engine identity (test.yaml referenceIdentities, kind
# Engine) to its engine instances, and a script asks the Instance Metadata Service for that
# identity's token (Microsoft Learn, "Load test secured endpoints", "Authenticate with a managed
# identity"). Plain HTTP with the standard library (cooperative under Locust's gevent), not
# azure-identity: nothing documented puts it on the engines, which run Locust and what it
# depends on (the repository's own modules come in SUPPORT_ZIP, docs/loadtests.md), and a
# module they lack would fail the test at its first line.
TOKEN_RESOURCE_VARIABLE = "LOCUST_TOKEN_RESOURCE"
TOKEN_CLIENT_ID_VARIABLE = "LOCUST_TOKEN_CLIENT_ID"
IMDS_ENDPOINT_VARIABLE = "LOCUST_IMDS_ENDPOINT"
IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"
IMDS_API_VERSION = "2018-02-01"
IMDS_TIMEOUT_SECONDS = 5.0  # each attempt
# Tried again after these pauses: no answer, 404 (the identity not assigned yet), 410 (IMDS
# being updated), 429 (IMDS throttles), 5xx. Any other answer (400: an unknown identity or
# resource) is final.
IMDS_RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0)
IMDS_RETRY_STATUSES = (404, 410, 429)
# A renewal that failed while the token still holds is tried again this much later.
RENEWAL_RETRY_SECONDS = 30.0
NO_TOKEN_EXIT_CODE = 2  # Locust's own: 1 when requests failed


class NoToken(Exception):
    """IMDS gave no token: one line naming IMDS, the resource and the status or error (never a
    token)."""


def imds_token(endpoint: str, resource: str, client_id: str) -> tuple[str, float]:
    """(access token, expires_on in epoch seconds) from IMDS, tried again as above."""
    query = {"api-version": IMDS_API_VERSION, "resource": resource}
    if client_id:
        query["client_id"] = client_id
    url = f"{endpoint.rstrip('/')}{IMDS_TOKEN_PATH}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={"Metadata": "true"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS: never a proxy
    what = f"no token from IMDS ({endpoint}) for resource {resource}" + (
        f" as client id {client_id}" if client_id else "")
    attempt = 0
    while True:
        attempt += 1
        try:
            with opener.open(request, timeout=IMDS_TIMEOUT_SECONDS) as response:
                return _token_of(response.read(), what)
        except urllib.error.HTTPError as error:
            problem = f"{error.code} {_imds_error(error)}".strip()
            again = error.code in IMDS_RETRY_STATUSES or error.code >= 500
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
            reason = getattr(error, "reason", None) or error
            problem, again = f"no answer ({type(reason).__name__}: {reason})", True
        if not again or attempt > len(IMDS_RETRY_PAUSES):
            tries = f" ({attempt} attempts)" if attempt > 1 else ""
            raise NoToken(" ".join(f"{what}: {problem}{tries}".split()))
        time.sleep(IMDS_RETRY_PAUSES[attempt - 1])  # gevent's, under Locust


def _imds_error(error: urllib.error.HTTPError) -> str:
    """IMDS's `error: error_description`, when its answer says so."""
    try:
        answer = json.loads(error.read() or b"{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(answer, dict):
        return ""
    return ": ".join(str(answer[k])[:200] for k in ("error", "error_description") if answer.get(k))


def _token_of(body: bytes, what: str) -> tuple[str, float]:
    try:
        answer = json.loads(body)
        token, expires_on = answer["access_token"], float(answer["expires_on"])
    except (ValueError, TypeError, KeyError):
        raise NoToken(f"{what}: 200 without access_token and expires_on") from None
    if not isinstance(token, str) or not token:
        raise NoToken(f"{what}: 200 without access_token")
    return token, expires_on


# Never set: a user that finds no token waits on it until the run's end kills it. (A user that
# ended itself instead, StopUser, can make Locust log an error while it stops the others.)
_RUN_ENDING = gevent.event.Event()


def _end_the_run(message: str) -> None:
    """Log `message` (one line), stop Locust with NO_TOKEN_EXIT_CODE, and wait (for ever) to be
    stopped with the other users."""
    LOG.error(message)
    environment = _OPTIONS["environment"]
    environment.process_exit_code = NO_TOKEN_EXIT_CODE
    gevent.spawn(environment.runner.quit)
    _RUN_ENDING.wait()


class ManagedIdentityCaller:
    """The machine's managed identity (LOCUST_TOKEN_RESOURCE; on Azure Load Testing, the
    test's engine identity): one token per Locust process, from IMDS, sent by every user (one
    identity, so no read is checked for other callers' items), fetched again
    TOKEN_RENEW_SECONDS before it expires. One fetch at a time: users starting together wait
    for the first one's token instead of each asking IMDS.

    No token, no requests: the run ends (one line naming IMDS, the resource and the answer;
    exit NO_TOKEN_EXIT_CODE) rather than send calls without Authorization. A renewal that
    fails while the token still holds keeps it and tries again RENEWAL_RETRY_SECONDS later."""

    alone = False

    def __init__(self, endpoint: str, resource: str, client_id: str) -> None:
        self.endpoint, self.resource, self.client_id = endpoint, resource, client_id
        self._lock = gevent.lock.Semaphore()
        self._token, self._expires_on, self._renew_at = "", 0.0, 0.0
        self._failed = False

    def authorization(self) -> str:
        if time.time() >= self._renew_at:
            with self._lock:
                if self._failed:
                    _RUN_ENDING.wait()
                if time.time() >= self._renew_at:  # not renewed while this user waited
                    self._renew()
        return f"Bearer {self._token}"

    def _renew(self) -> None:
        try:
            token, expires_on = imds_token(self.endpoint, self.resource, self.client_id)
        except NoToken as error:
            now = time.time()
            if now < self._expires_on - RENEWAL_RETRY_SECONDS:
                LOG.warning("%s; the current token holds until %s: trying again in %g s", error,
                            time.strftime("%H:%M:%S", time.gmtime(self._expires_on)),
                            RENEWAL_RETRY_SECONDS)
                self._renew_at = now + RENEWAL_RETRY_SECONDS
                return
            self._failed = True
            _end_the_run(str(error))  # never returns
        now = time.time()
        self._token, self._expires_on = token, expires_on
        # Before it expires; a token shorter-lived than that (IMDS hands out cached ones):
        # halfway to its expiry, at least a few seconds on.
        self._renew_at = max(expires_on - TOKEN_RENEW_SECONDS, now + max((expires_on - now) / 2, 5))


_MANAGED: dict = {}  # (endpoint, resource, client id) -> its caller: one token per process


def _caller(token_issuer: str) -> Caller | SharedCaller | ManagedIdentityCaller | None:
    """Who the user calls as: the first of --token-issuer, LOCUST_ACCESS_TOKEN and
    LOCUST_TOKEN_RESOURCE that is set (module docstring); None: no Authorization header."""
    if token_issuer:
        return Caller(token_issuer)
    shared = os.environ.get(ACCESS_TOKEN_VARIABLE, "").strip()
    if shared:
        return SharedCaller(shared)
    resource = os.environ.get(TOKEN_RESOURCE_VARIABLE, "").strip()
    if not resource:
        return None
    key = (os.environ.get(IMDS_ENDPOINT_VARIABLE, "").strip() or IMDS_ENDPOINT, resource,
           os.environ.get(TOKEN_CLIENT_ID_VARIABLE, "").strip())
    if key not in _MANAGED:
        _MANAGED[key] = ManagedIdentityCaller(*key)
    return _MANAGED[key]


def detailed_label(method: str, name: str, response, context: dict) -> str:
    """The request's name with what its record says (loadtests.alt_results.label)."""
    headers = getattr(response, "headers", None) or {}
    tags = [
        context.get("outcome"),
        "replayed" if headers.get(IDEMPOTENT_REPLAYED_HEADER) == "true" else None,
        "deliberate" if context.get("deliberate_replay") else None,
    ]
    return alt_results.label(method, name, headers.get(SITE_NAME_HEADER), filter(None, tags))


class TodoUser(FastHttpUser):
    """A realistic TodoItem mix: list, create, read, update, delete (own items, at most 5 kept).

    Every logical create gets a token of its own (loadtests.item_identity), written at the start
    of the item's name by the create and by every update, and recorded with every request about
    the item; creates and updates also record the content (as answered once acknowledged, as
    sent otherwise). The run's reconciliation checks the store against these records. The user
    never retries a create: each POST is a logical create of its own.

    A 404 on a read, update or delete of an item this user created earlier is recorded with
    outcome "lost" (counted apart from availability failures) and the item is forgotten; whether
    it is really gone is for the reconciliation to say.
    """

    abstract = True

    def __init__(self, environment) -> None:
        self.ssl_context_factory = lambda: ssl_context(with_client_cert=True)
        super().__init__(environment)
        opts = environment.parsed_options
        self.prefix = (opts.api_path or "").rstrip("/")
        self.headers = {SUBSCRIPTION_KEY_HEADER: opts.subscription_key}
        self.caller = _caller(opts.token_issuer)
        # What this user owns: the ids it was answered and the identity of every create it sent
        # (an unanswered create's item is its own too); never forgotten.
        self.owned: set[str] = set()
        self.sent_tokens: set[str] = set()
        self.items: list[str] = []
        self.tokens: dict[str, str] = {}  # item id -> token of its create
        self.updates = 0
        self.user_id = uuid.uuid4().hex[:8]
        self.creates: list[tuple[str, str, dict, str]] = []  # (key, token, body, item) answered 201

    def wait_time(self):
        """Poisson arrivals at --user-rate per user (exponential gaps): users never fall into
        lockstep, so a fault lands among requests at any stage, not between synchronized
        bursts. (Fixed pacing made every user send at the same instants.)"""
        rate = self.environment.parsed_options.user_rate
        return random.expovariate(rate) if rate > 0 else 0

    def _url(self, item: str | None = None) -> str:
        return f"{self.prefix}{TODO_PATH}" + (f"/{item}" if item else "")

    def _headers(self) -> dict[str, str]:
        if self.caller is None:
            return self.headers
        return {**self.headers, AUTHORIZATION_HEADER: self.caller.authorization()}

    def _owns(self, item: object) -> bool:
        if not isinstance(item, dict):
            return False
        return item.get("id") in self.owned or token_of(item.get("name")) in self.sent_tokens

    def _foreign(self, response, item: str | None) -> int | None:
        """How many items of other callers a 200 list (item None) or read held; None when the
        answer is not the JSON it must be."""
        try:
            answer = response.json()
        except (ValueError, AttributeError):
            return None
        if item is None:
            return sum(not self._owns(i) for i in answer) if isinstance(answer, list) else None
        if not isinstance(answer, dict):
            return None
        return int(answer.get("id") != item or not self._owns(answer))

    def _forget(self, item: str) -> None:
        if item in self.items:
            self.items.remove(item)
        self.tokens.pop(item, None)

    def _call(
        self,
        method: str,
        item: str | None,
        expected: int,
        token: str,
        body: dict | None = None,
        key: str | None = None,
        replay: bool = False,
    ) -> dict | None:
        """One request; the answer's JSON object (or {}) when it got the expected status.

        A write carries an Idempotency-Key: a fresh one per logical write, or `key` (a replay).
        When the app answers 409 (the key is held by an attempt still in flight: typically one
        a dead region claimed before the gateway sent the write again to the other) or 503
        (the store is away) with Retry-After, the user sends the same request with the same key
        again after Retry-After (RETRY_BUDGET_S in all): those answers are recorded with outcome
        "retried", neither a success nor a failure."""
        name = f"{self.prefix}{TODO_PATH}" + ("/[id]" if item else "")
        options = {"json": body} if body is not None else {}
        headers = self._headers()
        if method in IDEMPOTENCY_KEY_METHODS:
            # The same key on this user's own retries and on the gateway's, so the app replays
            # instead of applying twice.
            headers = {**headers, IDEMPOTENCY_KEY_HEADER: key or uuid.uuid4().hex}
        if method == "POST" and token:
            SENT.write(token)
            self.sent_tokens.add(token)
        waited = 0.0
        while True:
            context = {"item": item, "user": self.user_id, "token": token}
            if replay:
                context["deliberate_replay"] = True
            if body is not None:
                context["content"] = content(body)
            with self.client.request(
                method,
                self._url(item),
                name=name,
                headers=headers,
                context=context,
                catch_response=True,
                **options,
            ) as response:
                # Locust records its own copy of the context: mark that one.
                context = response.request_meta["context"]
                wait = retry_after(response) if IDEMPOTENCY_KEY_HEADER in headers else None
                retry = (
                    response.status_code in RETRYABLE_WITH_KEY
                    and wait is not None
                    and waited + wait <= RETRY_BUDGET_S
                )
                if retry:
                    context["outcome"] = "retried"
                    response.success()
                else:
                    answer = self._answer(response, context, method, item, expected, body)
                if self.environment.parsed_options.detailed_labels:
                    response.request_meta["name"] = detailed_label(method, name, response, context)
                if not retry:
                    return answer
            time.sleep(wait)  # gevent's, under Locust
            waited += wait
            if self.caller is not None:  # the same request, with a token still valid
                headers = {**headers, AUTHORIZATION_HEADER: self.caller.authorization()}

    def _answer(
        self, response, context: dict, method: str, item, expected: int, body
    ) -> dict | None:
        if response.status_code == expected:
            answer = {}
            if method == "GET" and self.caller is not None and self.caller.alone:
                foreign = self._foreign(response, item)
                if foreign is None:
                    response.failure(f"{expected} without the JSON of a list or an item")
                    return None
                context["cross_owner"] = foreign
                if foreign:
                    response.failure(f"cross-owner read: {foreign} item(s) of another caller")
                    return None
            if body is not None:
                try:
                    answer = response.json()
                    context["content"] = content(answer)
                except (ValueError, AttributeError):
                    response.failure(f"{expected} without a JSON item")
                    return None
                if item is None:  # a create: its record names the item it made
                    context["item"] = answer.get("id")
                    self.owned.add(answer.get("id"))
            response.success()
            return answer
        if item is not None and response.status_code == 404:
            context["outcome"] = "lost"
            response.success()
            self._forget(item)
        else:
            response.failure(f"expected {expected}, got {response.status_code}")
        return None

    @task(1)
    def list_items(self) -> None:
        self._call("GET", None, 200, None)

    @task(3)
    def create_item(self) -> None:
        token, key = new_token(), uuid.uuid4().hex
        body = {"name": item_name(token, "load test item"), "isCompleted": False}
        answer = self._call("POST", None, 201, token, body, key=key)
        self._created(answer, key, token, body)

    def _created(self, answer: dict | None, key: str, token: str, body: dict) -> None:
        item = answer.get("id") if answer else None
        if isinstance(item, str):
            self.items.append(item)
            self.tokens[item] = token
            self.creates = [*self.creates[-(REMEMBERED_CREATES - 1) :], (key, token, body, item)]
        if len(self.items) > ITEMS_PER_USER:
            self.delete_item()

    @task(1)
    def create_item_sent_twice_at_once(self) -> None:
        """A create and its copy (same key, same body) sent at the same moment, as a client
        that timed out and retried, or a gateway's retry, can: one item must come of it."""
        token, key = new_token(), uuid.uuid4().hex
        body = {"name": item_name(token, "load test item (sent twice)"), "isCompleted": False}
        first = gevent.spawn(self._call, "POST", None, 201, token, body, key)
        copy = gevent.spawn(self._call, "POST", None, 201, token, body, key, True)
        gevent.joinall([first, copy])
        self._created(first.value, key, token, body)

    @task(1)
    def replay_an_earlier_create(self) -> None:
        """Send the oldest remembered create again with its key (often from before a fault and
        a restart): the app must replay its answer (the same item), never make another."""
        if self.creates:
            key, token, body, _ = self.creates.pop(0)
            self._call("POST", None, 201, token, body, key=key, replay=True)

    @task(5)
    def read_item(self) -> None:
        if self.items:
            item = random.choice(self.items)
            self._call("GET", item, 200, self.tokens[item])

    @task(2)
    def update_item(self) -> None:
        if self.items:
            item = random.choice(self.items)
            token = self.tokens[item]
            self.updates += 1  # every update sends content of its own
            body = {
                "id": item,
                "name": item_name(token, f"updated by the load test #{self.updates}"),
                "isCompleted": self.updates % 2 == 1,
            }
            self._call("PUT", item, 200, token, body)

    @task(1)
    def delete_item(self) -> None:
        if self.items:
            item = self.items[0]
            if self._call("DELETE", item, 204, self.tokens[item]) is not None:
                self._forget(item)
