"""Bearer tokens (issue 20, "The app checks again"): what the app admits and refuses with
AUTH_MODE=entra, against a local OpenID issuer on 127.0.0.1 (tests/app/issuer.py) over real HTTP.

Every attack is sent as each TodoItem call (list, read, create, replace, delete). Each must be
refused with its status, its WWW-Authenticate challenge and a problem+json body, change nothing
in the store, and leave no part of the token in the logs or the answer. Time is the app's `clock`,
a fake here: tokens are minted relative to it, and the issuer's rate limit goes by it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import warnings
from dataclasses import dataclass

import httpx
import jwt
import pytest

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2; httpx is what the lock pins
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from app import access_tokens
from app.access_tokens import (
    BAD_ALGORITHM,
    BAD_OBJECT_ID,
    BAD_SIGNATURE,
    BAD_TIMES,
    CLIENT_NOT_ALLOWED,
    CLOCK_SKEW_SECONDS,
    EXPIRED,
    MALFORMED,
    NO_KEY_ID,
    NO_TOKEN,
    NOT_YET_VALID,
    REPEATED,
    UNKNOWN_KEY,
    WRONG_AUDIENCE,
    WRONG_ISSUER,
    WRONG_TENANT,
    AccessTokenPolicy,
    caller_of,
    lacks,
    missing_claim,
    too_large,
)
from app.application import create_app
from app.contract import CERTIFICATE_REJECTED, MAX_AUTHORIZATION_BYTES, OPENAPI_PATH
from app.middleware import BearerTokenMiddleware
from app.settings import AuthSettings, load_settings
from app.signing_keys import (
    MAX_DOCUMENT_BYTES,
    MAX_KEY_AGE_SECONDS,
    REFRESH_INTERVAL_SECONDS,
    IssuerUnavailable,
    SigningKeys,
)
from app.store import ANONYMOUS_OWNER, InMemoryTodoStore, todo_item
from tests.app import servers
from tests.app.conftest import HEALTH_KEY
from tests.app.fake_ingestion import EXPORTER_QUIET, FakeIngestion
from tests.app.issuer import (
    AUDIENCE,
    CALLER_ID,
    CLIENT_ID,
    JWKS,
    METADATA,
    OTHER_CLIENT_ID,
    OTHER_TENANT_ID,
    TENANT_ID,
    Fault,
    LocalIssuer,
    hs256_with_public_key,
    new_signing_key,
)

ITEM_ID = "0123456789abcdef0123456789abcdef"
READ = ["Todo.Read"]
WRITE = ["Todo.Write"]
STRANGER_KID = "key-nobody-publishes"
ANOTHER_OID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"  # another caller (and another token)


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def keys_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("issuer-keys")


@pytest.fixture(scope="session")
def signing_key(keys_folder):
    return new_signing_key(keys_folder, "key-1")


@pytest.fixture(scope="session")
def rotated_key(keys_folder):
    return new_signing_key(keys_folder, "key-2")


@pytest.fixture(scope="session")
def stranger_key(keys_folder):
    """A key the issuer never publishes."""
    return new_signing_key(keys_folder, STRANGER_KID)


@pytest.fixture
def issuer(signing_key):
    with LocalIssuer(signing_key) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(int(time.time())))


@pytest.fixture
def auth_environment(environment, issuer) -> dict[str, str]:
    return {**environment, **issuer.app_settings()}


@pytest.fixture
def store() -> InMemoryTodoStore:
    store = InMemoryTodoStore()
    asyncio.run(store.add(CALLER_ID, todo_item(ITEM_ID, "seeded")))
    return store


@pytest.fixture
def make_api(store, clock, cert_header):
    """A TestClient over the app built from `environment`; requests carry the certificate."""

    def make(environment: dict[str, str]) -> TestClient:
        app = create_app(load_settings(environment), store=store, clock=clock)
        return TestClient(app, headers=dict(cert_header), raise_server_exceptions=False)

    return make


@pytest.fixture
def api(make_api, auth_environment) -> TestClient:
    return make_api(auth_environment)


@pytest.fixture
def logs(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CALLS = [
    ("GET", "/api/TodoItem", None),
    ("GET", f"/api/TodoItem/{ITEM_ID}", None),
    ("POST", "/api/TodoItem", {"name": "planted"}),
    ("PUT", f"/api/TodoItem/{ITEM_ID}", {"id": ITEM_ID, "name": "changed"}),
    ("DELETE", f"/api/TodoItem/{ITEM_ID}", None),
]


def send_every_call(api: TestClient, headers: dict[str, str]) -> list[httpx.Response]:
    return [api.request(method, path, json=body, headers=headers) for method, path, body in CALLS]


def contents(store: InMemoryTodoStore) -> list:
    return asyncio.run(store.list(CALLER_ID))


def assert_challenge(response, status: int, error: str | None, description: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": {401: "Unauthorized", 403: "Forbidden"}[status],
        "status": status,
        "detail": description,
    }
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="todo-api"')
    if error is None:  # RFC 6750 3.1: no error code when no bearer token came at all
        assert "error" not in challenge
    else:
        assert f'error="{error}", error_description="{description}"' in challenge


def pieces(token: str) -> list[str]:
    """What must never be echoed: every segment of a JWT longer than a few characters."""
    found = [piece for piece in re.split(r"[.\s]", token) if len(piece) >= 8]
    return found or ([token] if token else [])


def assert_nothing_leaked(token: str, logs, responses) -> None:
    seen = logs.text + "".join(r.text + str(r.headers) for r in responses)
    for piece in pieces(token):
        assert piece not in seen


# -- the attacks: refused, nothing changed, nothing leaked -------------------------------------


def _tampered(issuer, clock, signing_key, stranger_key) -> str:
    header, _, signature = issuer.token(clock.now).split(".")
    payload = jwt.utils.base64url_encode(
        json.dumps(issuer.claims(clock.now, oid=ANOTHER_OID)).encode()
    ).decode()
    return f"{header}.{payload}.{signature}"


def _alg_none(issuer, clock, signing_key, stranger_key) -> str:
    return jwt.encode(issuer.claims(clock.now), None, "none", {"kid": signing_key.kid})


def _hs256(issuer, clock, signing_key, stranger_key) -> str:
    return hs256_with_public_key(signing_key, issuer.claims(clock.now))


def _minted(**changes):
    def mint(issuer, clock, signing_key, stranger_key) -> str:
        return issuer.token(clock.now, **changes)

    return mint


def _no_kid(issuer, clock, signing_key, stranger_key) -> str:
    return jwt.encode(issuer.claims(clock.now), signing_key.private_key, "RS256")


def _signed_by_stranger(kid: str | None):
    def mint(issuer, clock, signing_key, stranger_key) -> str:
        return issuer.token(clock.now, key=stranger_key, kid=kid or signing_key.kid)

    return mint


def _relative(**offsets):
    """Times relative to the clock: _relative(exp=-61) is exp = now - 61."""

    def mint(issuer, clock, signing_key, stranger_key) -> str:
        return issuer.token(clock.now, **{k: int(clock.now) + v for k, v in offsets.items()})

    return mint


def _literal(value: str):
    return lambda *_: value


SKEW = CLOCK_SKEW_SECONDS
ATTACKS = [
    pytest.param(_literal("not-a-jwt"), MALFORMED, id="malformed: not a JWT"),
    pytest.param(_literal("a.b.c"), MALFORMED, id="malformed: three segments of nothing"),
    pytest.param(_literal("eyJhbGciOiJSUzI1NiJ9.e30"), MALFORMED, id="malformed: no signature"),
    pytest.param(_literal("two tokens"), MALFORMED, id="malformed: not a b64token"),
    pytest.param(_literal(""), MALFORMED, id="malformed: Bearer without a token"),
    pytest.param(_relative(exp=-SKEW - 1), EXPIRED, id="expired"),
    pytest.param(_relative(nbf=SKEW + 1), NOT_YET_VALID, id="not yet valid"),
    pytest.param(_minted(aud="api://another-api"), WRONG_AUDIENCE, id="wrong audience"),
    pytest.param(_minted(aud=None), missing_claim("aud"), id="no audience"),
    pytest.param(
        _minted(iss=f"https://login.microsoftonline.com/{OTHER_TENANT_ID}/v2.0"),
        WRONG_ISSUER,
        id="wrong issuer",
    ),
    pytest.param(_minted(tid=OTHER_TENANT_ID), WRONG_TENANT, id="wrong tenant"),
    pytest.param(_minted(tid=None), missing_claim("tid"), id="no tenant"),
    pytest.param(_signed_by_stranger(None), BAD_SIGNATURE, id="bad signature: another key"),
    pytest.param(_tampered, BAD_SIGNATURE, id="bad signature: claims changed after signing"),
    pytest.param(_alg_none, BAD_ALGORITHM, id="alg none"),
    pytest.param(_hs256, BAD_ALGORITHM, id="HS256 with the public key as the secret"),
    pytest.param(_signed_by_stranger(STRANGER_KID), UNKNOWN_KEY, id="unknown kid"),
    pytest.param(_no_kid, NO_KEY_ID, id="no kid"),
    pytest.param(_minted(azp=OTHER_CLIENT_ID), CLIENT_NOT_ALLOWED, id="another client application"),
    pytest.param(
        _minted(azp=None, appid=OTHER_CLIENT_ID, ver="1.0"),
        CLIENT_NOT_ALLOWED,
        id="another client application (v1.0 appid)",
    ),
    pytest.param(_minted(azp=None), CLIENT_NOT_ALLOWED, id="no client application"),
    pytest.param(_minted(oid=None), missing_claim("oid"), id="no oid"),
    pytest.param(_minted(exp=None), missing_claim("exp"), id="no exp"),
    pytest.param(_minted(nbf=None), missing_claim("nbf"), id="no nbf"),
    pytest.param(_minted(exp="9999999999"), BAD_TIMES, id="exp not a number"),
    pytest.param(
        _literal("A" * MAX_AUTHORIZATION_BYTES),
        too_large(MAX_AUTHORIZATION_BYTES),
        id="oversized Authorization header",
    ),
]


@pytest.mark.parametrize(("mint", "description"), ATTACKS)
def test_an_invalid_token_is_refused_with_401_and_changes_nothing(
    api, store, issuer, clock, signing_key, stranger_key, logs, mint, description
):
    token = mint(issuer, clock, signing_key, stranger_key)
    before = contents(store)
    responses = send_every_call(api, bearer(token))
    for response in responses:
        assert_challenge(response, 401, "invalid_token", description)
    assert contents(store) == before
    assert_nothing_leaked(token, logs, responses)
    refusals = [r for r in logs.records if r.name == "app.access_tokens"]
    assert len(refusals) == len(CALLS) and all(r.levelname == "WARNING" for r in refusals)
    assert all(description in r.getMessage() for r in refusals)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no Authorization header"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, id="another scheme"),
    ],
)
def test_a_request_without_a_bearer_token_is_challenged_without_an_error_code(
    api, store, logs, headers
):
    before = contents(store)
    responses = send_every_call(api, headers)
    for response in responses:
        assert_challenge(response, 401, None, NO_TOKEN)
    assert contents(store) == before
    assert_nothing_leaked("dXNlcjpwYXNzd29yZA==", logs, responses)


def test_a_repeated_authorization_header_is_refused(api, store, issuer, clock, logs):
    token = issuer.token(clock.now)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = api.get("/api/TodoItem", headers=headers)
    assert_challenge(response, 401, "invalid_token", REPEATED)
    assert_nothing_leaked(token, logs, [response])


def test_a_token_in_the_query_or_the_body_is_not_taken(api, store, issuer, clock):
    token = issuer.token(clock.now)
    assert_challenge(api.get(f"/api/TodoItem?access_token={token}"), 401, None, NO_TOKEN)
    before = contents(store)
    response = api.post(
        "/api/TodoItem",
        content=f"access_token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_challenge(response, 401, None, NO_TOKEN)
    assert contents(store) == before


# -- permissions: reads need Todo.Read, writes Todo.Write, as a role or a scope -----------------


def _expected(method: str, grants: set[str]) -> str | None:
    """The permission a call lacks under `grants`, or None when it is admitted."""
    needed = "Todo.Read" if method == "GET" else "Todo.Write"
    return None if needed in grants else needed


@pytest.mark.parametrize(
    ("claims", "grants"),
    [
        pytest.param({"roles": None}, set(), id="no role and no scope"),
        pytest.param({"roles": READ}, {"Todo.Read"}, id="read-only application writing"),
        pytest.param({"roles": None, "scp": "Todo.Read"}, {"Todo.Read"}, id="read-only user"),
        pytest.param({"roles": WRITE}, {"Todo.Write"}, id="write-only application reading"),
        pytest.param({"roles": ["Todo.ReadWrite"], "scp": "todo.read"}, set(), id="near misses"),
    ],
)
def test_a_call_without_its_permission_is_403_insufficient_scope(
    api, store, issuer, clock, logs, claims, grants
):
    token = issuer.token(clock.now, **claims)
    before = contents(store)
    for (method, path, body), response in zip(CALLS, send_every_call(api, bearer(token)),
                                              strict=True):
        lacking = _expected(method, grants)
        if lacking is None:
            assert response.status_code < 300, (method, path, response.text)
            continue
        assert_challenge(response, 403, "insufficient_scope", lacks(lacking))
        assert response.headers["www-authenticate"].endswith(f', scope="{lacking}"')
    if "Todo.Write" not in grants:
        assert contents(store) == before
    assert_nothing_leaked(token, logs, [])


def test_head_needs_the_read_permission(api, issuer, clock):
    assert api.head("/api/TodoItem", headers=bearer(issuer.token(clock.now, roles=WRITE))
                    ).status_code == 403
    assert api.head("/api/TodoItem", headers=bearer(issuer.token(clock.now, roles=READ))
                    ).status_code == 200


# -- valid tokens -----------------------------------------------------------------------------


def assert_every_call_succeeds(api, headers) -> None:
    statuses = [response.status_code for response in send_every_call(api, headers)]
    assert statuses == [200, 200, 201, 200, 204]


def test_a_valid_application_token_with_both_roles_passes(api, issuer, clock, logs):
    token = issuer.token(clock.now)
    assert_every_call_succeeds(api, bearer(token))
    assert_nothing_leaked(token, logs, [])


def test_a_valid_user_token_with_both_scopes_passes(api, issuer, clock):
    token = issuer.token(clock.now, roles=None, scp="openid Todo.Read Todo.Write")
    assert_every_call_succeeds(api, bearer(token))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_scheme_is_case_insensitive(api, issuer, clock, scheme):
    token = issuer.token(clock.now)
    assert api.get("/api/TodoItem", headers={"Authorization": f"{scheme} {token}"}
                   ).status_code == 200


def test_a_v1_token_names_its_client_in_appid(api, issuer, clock):
    token = issuer.token(clock.now, azp=None, appid=CLIENT_ID, ver="1.0", aud=CLIENT_ID)
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == 200


def test_any_configured_audience_is_accepted_in_a_list(api, issuer, clock):
    token = issuer.token(clock.now, aud=["api://another-api", AUDIENCE])
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == 200


def test_without_allowed_clients_any_client_of_the_tenant_passes(make_api, auth_environment,
                                                                  issuer, clock):
    api = make_api({**auth_environment, "AUTH_ALLOWED_CLIENT_IDS": ""})
    token = issuer.token(clock.now, azp=OTHER_CLIENT_ID)
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("offsets", "status"),
    [
        pytest.param({"exp": -59}, 200, id="expired 59 s ago"),
        pytest.param({"exp": -60}, 401, id="expired 60 s ago"),
        pytest.param({"nbf": 60}, 200, id="valid in 60 s"),
        pytest.param({"nbf": 61}, 401, id="valid in 61 s"),
    ],
)
def test_the_clock_skew_tolerated_is_60_seconds(api, issuer, clock, offsets, status):
    token = issuer.token(clock.now, **{k: int(clock.now) + v for k, v in offsets.items()})
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == status


def test_the_caller_is_the_tokens_oid_on_request_state(auth_environment, issuer, clock):
    async def whoami(scope, receive, send):
        caller = caller_of(Request(scope))
        await PlainTextResponse(f"{caller.object_id} {caller.client_id}")(scope, receive, send)

    auth = load_settings(auth_environment).auth
    policy = AccessTokenPolicy(auth, clock)
    client = TestClient(BearerTokenMiddleware(whoami, policy))
    answer = client.get("/anything", headers=bearer(issuer.token(clock.now)))
    assert answer.text == f"{CALLER_ID} {CLIENT_ID}"


def test_the_caller_is_none_without_bearer_tokens():
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    assert caller_of(Request(scope)) is None


# -- items belong to their caller (the token's oid) ------------------------------------------


def test_a_caller_sees_and_changes_only_its_own_items(api, issuer, clock, store):
    mine, theirs = bearer(issuer.token(clock.now)), bearer(issuer.token(clock.now, oid=ANOTHER_OID))
    created = api.post("/api/TodoItem", json={"name": "theirs"}, headers=theirs).json()
    assert [item["id"] for item in api.get("/api/TodoItem", headers=theirs).json()] == [
        created["id"]
    ]
    listed = api.get("/api/TodoItem", headers=mine).json()
    assert listed == [{"id": ITEM_ID, "name": "seeded", "isCompleted": False}]  # not theirs
    # Their item, reached by id, answers exactly as an id nobody has: 404, nothing told.
    path, unknown = f"/api/TodoItem/{created['id']}", f"/api/TodoItem/{'f' * 32}"
    body = {"id": created["id"], "name": "taken over"}
    for method, json_body in (("GET", None), ("PUT", body), ("DELETE", None)):
        answer = api.request(method, path, json=json_body, headers=mine)
        stranger = api.request(
            method, unknown, json=json_body and {**json_body, "id": "f" * 32}, headers=mine
        )
        assert (answer.status_code, answer.json()) == (404, stranger.json()), method
    assert api.get(path, headers=theirs).json() == created  # unchanged, still theirs
    assert asyncio.run(store.list(ANOTHER_OID)) == [todo_item(created["id"], "theirs")]


def test_a_callers_idempotency_key_never_replays_another_callers_answer(api, issuer, clock):
    mine, theirs = bearer(issuer.token(clock.now)), bearer(issuer.token(clock.now, oid=ANOTHER_OID))
    keyed = {"Idempotency-Key": "the-same-key"}
    first = api.post("/api/TodoItem", json={"name": "x"}, headers={**theirs, **keyed})
    second = api.post("/api/TodoItem", json={"name": "x"}, headers={**mine, **keyed})
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers  # a new item of its own, not a replay
    assert first.json()["id"] != second.json()["id"]
    assert api.get(f"/api/TodoItem/{second.json()['id']}", headers=theirs).status_code == 404


def test_an_oid_that_is_not_a_guid_is_refused(api, issuer, clock, store):
    before = contents(store)
    for oid in ("anonymous", "a/b", "x" * 40):
        response = api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now, oid=oid)))
        assert_challenge(response, 401, "invalid_token", BAD_OBJECT_ID)
    assert contents(store) == before


# -- what stays open, and the certificate first --------------------------------------------------


def test_health_and_the_openapi_document_need_no_token(api):
    assert api.get(f"/health/{HEALTH_KEY}").status_code == 200
    assert api.get(OPENAPI_PATH).status_code == 200


def test_swagger_ui_needs_no_token_in_development(make_api, auth_environment):
    api = make_api({**auth_environment, "APP_ENV": "development"})
    assert api.get("/").status_code == 200
    assert api.get("/swagger-ui-init.js").status_code == 200
    assert api.get("/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_a_path_that_leaves_the_swagger_ui_assets_is_not_open(make_api, auth_environment):
    api = make_api({**auth_environment, "APP_ENV": "development"})
    assert_challenge(api.get("/swagger-ui/..%2F..%2Fapi%2FTodoItem"), 401, None, NO_TOKEN)


def test_an_unknown_path_needs_a_token_too(api):
    assert_challenge(api.get("/api/NoSuchThing"), 401, None, NO_TOKEN)


@pytest.mark.parametrize("with_token", [True, False])
def test_the_client_certificate_is_checked_first(auth_environment, store, issuer, clock,
                                                 with_token):
    app = create_app(load_settings(auth_environment), store=store, clock=clock)
    anonymous = TestClient(app, raise_server_exceptions=False)  # no certificate header
    headers = bearer(issuer.token(clock.now)) if with_token else {}
    response = anonymous.get("/api/TodoItem", headers=headers)
    assert response.status_code == 403
    assert response.json()["detail"] == CERTIFICATE_REJECTED
    assert issuer.fetches() == (0, 0)


def test_auth_mode_none_keeps_todays_behaviour(make_api, environment, store):
    asyncio.run(store.add(ANONYMOUS_OWNER, todo_item(ITEM_ID, "seeded")))  # every caller's item
    api = make_api({**environment, "AUTH_ISSUER": "not read with none"})
    assert_every_call_succeeds(api, {})
    assert api.get("/api/TodoItem", headers=bearer("anything")).status_code == 200
    assert "www-authenticate" not in api.get("/api/TodoItem").headers


# -- the verified-token cache -------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts PyJWT signature verifications (one per token the app verifies)."""
    calls: list[int] = []
    decode = jwt.decode

    def counting(*args, **kwargs):
        calls.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(access_tokens.jwt, "decode", counting)
    return calls


def test_a_repeated_token_is_verified_once(api, issuer, clock, decodes):
    headers = bearer(issuer.token(clock.now))
    for _ in range(3):
        assert api.get("/api/TodoItem", headers=headers).status_code == 200
    assert len(decodes) == 1


def test_a_cached_token_is_refused_once_it_expires(api, issuer, clock):
    headers = bearer(issuer.token(clock.now, exp=int(clock.now) + 100))
    assert api.get("/api/TodoItem", headers=headers).status_code == 200
    clock.advance(100 + SKEW - 1)
    assert api.get("/api/TodoItem", headers=headers).status_code == 200
    clock.advance(1)
    assert_challenge(api.get("/api/TodoItem", headers=headers), 401, "invalid_token", EXPIRED)


def test_the_cache_is_bounded_least_recently_used_first(auth_environment, issuer, clock, decodes):
    auth = load_settings(auth_environment).auth
    policy = AccessTokenPolicy(auth, clock, cache_size=2)
    a, b, c = (issuer.token(clock.now, oid=f"00000000-0000-4000-8000-00000000000{n}").encode()
               for n in range(3))

    async def admit(*tokens):
        for token in tokens:
            await policy.caller(token)

    asyncio.run(admit(a, b, c))  # a is evicted
    assert len(decodes) == 3
    asyncio.run(admit(c, a))  # c from the cache; a verified again (b evicted)
    assert len(decodes) == 4
    asyncio.run(admit(b))
    assert len(decodes) == 5


# -- the issuer's keys: fetched once, rate-limited, rotated, bounded ---------------------------


def concurrently(app, cert_header, tokens: list[str]) -> list[httpx.Response]:
    """All requests in flight at once on one event loop, as a worker serves them."""

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app",
                                     headers=cert_header) as client:
            return await asyncio.gather(
                *(client.get("/api/TodoItem", headers=bearer(t)) for t in tokens)
            )

    return asyncio.run(run())


@pytest.fixture
def app(auth_environment, store, clock):
    return create_app(load_settings(auth_environment), store=store, clock=clock)


def test_a_flood_of_unknown_kids_costs_the_issuer_one_fetch_per_interval(
    app, cert_header, issuer, clock, signing_key
):
    def flood() -> set[int]:
        tokens = [issuer.token(clock.now, kid=f"made-up-{n}") for n in range(40)]
        return {r.status_code for r in concurrently(app, cert_header, tokens)}

    assert flood() == {401}
    assert issuer.fetches() == (1, 1)
    assert flood() == {401}
    clock.advance(REFRESH_INTERVAL_SECONDS - 1)
    assert flood() == {401}
    assert issuer.fetches() == (1, 1)
    clock.advance(1)
    assert flood() == {401}
    assert issuer.fetches() == (2, 2)


def test_requests_missing_a_key_while_it_is_fetched_wait_for_that_one_fetch(
    app, cert_header, issuer, clock
):
    tokens = [issuer.token(clock.now, oid=f"00000000-0000-4000-8000-0000000000{n:02}")
              for n in range(20)]
    assert {r.status_code for r in concurrently(app, cert_header, tokens)} == {200}
    assert issuer.fetches() == (1, 1)


def test_a_rotated_key_is_fetched_and_a_dropped_one_forgotten(
    api, issuer, clock, signing_key, rotated_key
):
    assert api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now))).status_code == 200
    issuer.published = [rotated_key]
    clock.advance(REFRESH_INTERVAL_SECONDS)
    new = issuer.token(clock.now, key=rotated_key)
    assert api.get("/api/TodoItem", headers=bearer(new)).status_code == 200
    assert issuer.fetches() == (2, 2)
    old = issuer.token(clock.now, key=signing_key, oid=ANOTHER_OID)  # not cached
    assert_challenge(api.get("/api/TodoItem", headers=bearer(old)), 401, "invalid_token",
                     UNKNOWN_KEY)


def test_keys_older_than_a_day_are_fetched_again(api, issuer, clock, rotated_key):
    assert api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now))).status_code == 200
    clock.advance(MAX_KEY_AGE_SECONDS + 1)
    issuer.published.append(rotated_key)
    assert api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now))).status_code == 200
    assert issuer.fetches() == (2, 2)


def test_known_keys_keep_working_while_the_issuer_is_down(api, issuer, clock):
    assert api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now))).status_code == 200
    issuer.fault = Fault(document=METADATA, status=500)
    clock.advance(MAX_KEY_AGE_SECONDS + 1)  # stale: a refresh is tried, fails, the key stays
    token = issuer.token(clock.now, oid=ANOTHER_OID)
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == 200
    assert issuer.fetches() == (2, 1)


def _oversized(chunked: bool):
    """The real JWKS, padded past MAX_DOCUMENT_BYTES: only the size limit refuses it."""

    def fault(key) -> Fault:
        padded = {"keys": [key.jwk()], "padding": "x" * MAX_DOCUMENT_BYTES}
        return Fault(body=json.dumps(padded).encode(), chunked=chunked)

    return fault


def _fault(**fields):
    return lambda key: Fault(**fields)


OUTAGES = [
    pytest.param(_fault(status=500), id="JWKS answers 500"),
    pytest.param(_fault(document=METADATA, status=503), id="metadata answers 503"),
    pytest.param(_fault(body=b"<html>not json</html>"), id="JWKS not JSON"),
    pytest.param(_fault(body=b"[1, 2]"), id="JWKS not an object"),
    pytest.param(_fault(body=b'{"keys": [{"kty": "EC", "kid": "key-1"}]}'), id="no RSA key"),
    pytest.param(_oversized(chunked=False), id="JWKS too large"),
    pytest.param(_oversized(chunked=True), id="JWKS too large, no Content-Length"),
    pytest.param(_fault(document=METADATA, status=302, headers=(("Location", "/elsewhere"),)),
                 id="metadata redirects"),
    pytest.param(_fault(document=METADATA, body=b"{}"), id="metadata without an issuer"),
]


@pytest.mark.parametrize("fault", OUTAGES)
def test_an_issuer_that_cannot_be_used_is_503_with_retry_after(api, store, issuer, clock, logs,
                                                               signing_key, fault):
    issuer.fault = fault(signing_key)
    token = issuer.token(clock.now)
    before = contents(store)
    response = api.post("/api/TodoItem", json={"name": "x"}, headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(int(REFRESH_INTERVAL_SECONDS))
    clock.advance(20)
    again = api.get("/api/TodoItem", headers=bearer(token))
    assert (again.status_code, again.headers["retry-after"]) == (503, "40")
    warned = [r for r in logs.records if r.name == "app.signing_keys"]
    assert len(warned) == 1 and "not refreshed" in warned[0].getMessage()
    assert sum(issuer.fetches()) <= 2  # one attempt (metadata, and the JWKS if it got that far)
    assert contents(store) == before
    issuer.fault = None
    clock.advance(REFRESH_INTERVAL_SECONDS - 20)
    assert api.get("/api/TodoItem", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("metadata_issuer", "https://login.microsoftonline.com/common/v2.0", "another issuer"),
        ("jwks_uri", "ftp://127.0.0.1/keys", "jwks_uri must be an https:// URL"),
        ("jwks_uri", "http://keys.example/keys", "jwks_uri must be an https:// URL"),
        ("jwks_uri", None, "no jwks_uri"),
    ],
)
def test_metadata_that_cannot_be_trusted_is_not_followed(api, issuer, clock, logs, field, value,
                                                         reason):
    setattr(issuer, field, value)
    if field == "jwks_uri" and value is None:
        issuer.fault = Fault(document=METADATA, body=json.dumps({"issuer": issuer.issuer}).encode())
    response = api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now)))
    assert response.status_code == 503
    assert issuer.fetches() == (1, 0)
    (warning,) = [r.getMessage() for r in logs.records if r.name == "app.signing_keys"]
    assert reason in warning


def test_an_unreachable_issuer_is_503_never_500(make_api, auth_environment, issuer, clock):
    nowhere = f"http://127.0.0.1:{servers.free_port()}/.well-known/openid-configuration"
    api = make_api({**auth_environment, "AUTH_OPENID_CONFIG_URL": nowhere})
    response = api.get("/api/TodoItem", headers=bearer(issuer.token(clock.now)))
    assert response.status_code == 503 and response.headers["retry-after"] == "60"


def test_an_issuer_that_never_answers_is_given_up_on_after_the_timeout(issuer, clock):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/openid-configuration"
        auth = AuthSettings(issuer=issuer.issuer, openid_config_url=url)
        keys = SigningKeys(auth, clock, timeout=0.2)
        started = time.monotonic()
        with pytest.raises(IssuerUnavailable):
            asyncio.run(keys.key("key-1"))
        assert time.monotonic() - started < 10  # a hang guard: the timeout is 0.2 s


def test_the_jwks_fetch_is_the_one_its_metadata_names(issuer, clock, signing_key):
    auth = AuthSettings(issuer=issuer.issuer, openid_config_url=issuer.openid_config_url)
    keys = SigningKeys(auth, clock)
    assert asyncio.run(keys.key(signing_key.kid)) is not None
    assert issuer.fetches() == (1, 1)
    assert JWKS in issuer.asked


# -- refusals are well-formed ---------------------------------------------------------------


def test_every_error_description_is_allowed_in_a_challenge():
    """RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash)."""
    texts = [v for k, v in vars(access_tokens).items() if k.isupper() and isinstance(v, str)
             and v.endswith(".")]
    texts += [missing_claim("oid"), too_large(MAX_AUTHORIZATION_BYTES), lacks("Todo.Write")]
    assert len(texts) >= 15
    for text in texts:
        assert re.fullmatch(r"[\x20\x21\x23-\x5b\x5d-\x7e]+", text), text


# -- the real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_issuer(tmp_path_factory):
    with LocalIssuer(new_signing_key(tmp_path_factory.mktemp("server-keys"), "key-s")) as running:
        yield running


@pytest.fixture(scope="module")
def auth_server(environment, server_issuer, tmp_path_factory):
    log = tmp_path_factory.mktemp("auth-server") / "server.log"
    server = servers.start_production({**environment, **server_issuer.app_settings()}, log,
                                      f"/health/{HEALTH_KEY}")
    yield server
    server.stop()


def test_the_production_server_admits_a_valid_token(auth_server, server_issuer, cert_header):
    token = server_issuer.token(time.time())
    status, _, body = auth_server.request("GET", "/api/TodoItem",
                                          headers={**cert_header, **bearer(token)})
    assert status == 200 and json.loads(body) == []


@pytest.mark.parametrize("size", [MAX_AUTHORIZATION_BYTES + 1, 64 * 1024, 1024 * 1024])
def test_the_production_server_refuses_an_oversized_header_with_401(auth_server, cert_header,
                                                                    size):
    value = "Bearer " + "A" * (size - len("Bearer "))
    status, _, body = auth_server.request("GET", "/api/TodoItem",
                                                headers={**cert_header, "Authorization": value})
    assert status == 401
    assert json.loads(body)["detail"] == too_large(MAX_AUTHORIZATION_BYTES)


def test_the_production_server_logs_refusals_without_the_token(auth_server, server_issuer,
                                                              cert_header):
    token = server_issuer.token(time.time(), aud="api://another-api")
    status, _, _ = auth_server.request("GET", "/api/TodoItem",
                                       headers={**cert_header, **bearer(token)})
    assert status == 401
    output = auth_server.wait_for_output(f"bearer token refused on GET: {WRONG_AUDIENCE}")
    for piece in pieces(token):
        assert piece not in output


def test_no_piece_of_a_token_reaches_telemetry(environment, server_issuer, cert_header,
                                                tmp_path):
    """The production server with telemetry on (every request traced) exports the requests and
    the refusal's log record to a stand-in ingestion endpoint: no piece of either token in it."""
    accepted = server_issuer.token(time.time())
    refused = server_issuer.token(time.time(), aud="api://another-api")
    with FakeIngestion() as ingestion:
        settings = {
            **environment,
            **server_issuer.app_settings(),
            **EXPORTER_QUIET,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            "TELEMETRY_SAMPLING_RATIO": "1",
        }
        log = tmp_path / "server.log"
        server = servers.start_production(settings, log, f"/health/{HEALTH_KEY}")
        try:
            for token, status in ((accepted, 200), (refused, 401)):
                answer = server.request("GET", "/api/TodoItem",
                                        headers={**cert_header, **bearer(token)})
                assert answer[0] == status

            def arrived(envelopes) -> bool:
                codes = {e["data"]["baseData"].get("responseCode") for e in envelopes
                         if e["data"]["baseType"] == "RequestData"}
                logged = [e for e in envelopes if e["data"]["baseType"] == "MessageData"
                          and WRONG_AUDIENCE in e["data"]["baseData"]["message"]]
                return {"200", "401"} <= codes and bool(logged)

            ingestion.wait_for("both requests and the refusal's log record", arrived)
        finally:
            server.stop()
        sent = ingestion.all_bytes()
    for piece in pieces(accepted) + pieces(refused):
        assert piece.encode() not in sent


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"AUTH_MODE": "oauth"}, "AUTH_MODE"),
        ({"AUTH_ISSUER": None}, "AUTH_ISSUER"),
        ({"AUTH_ISSUER": "login.microsoftonline.com/tenant/v2.0"}, "AUTH_ISSUER"),
        ({"AUTH_AUDIENCE": " , "}, "AUTH_AUDIENCE"),
        ({"AUTH_OPENID_CONFIG_URL": "http://login.example/.well-known/openid-configuration"},
         "AUTH_OPENID_CONFIG_URL"),
        ({"AUTH_TENANT_ID": "contoso"}, "AUTH_TENANT_ID"),
        ({"AUTH_ALLOWED_CLIENT_IDS": "todo-client"}, "AUTH_ALLOWED_CLIENT_IDS"),
    ],
)
def test_a_misconfiguration_stops_the_start_with_one_line(environment, changes, variable):
    entra = {
        "AUTH_MODE": "entra",
        "AUTH_ISSUER": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
        "AUTH_AUDIENCE": "api://todo-api",
    }
    settings = {k: v for k, v in {**environment, **entra, **changes}.items() if v is not None}
    result = servers.run_to_exit(["bash", str(servers.STARTUP_SCRIPT)], settings)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0
    assert len(output) == 1, output
    assert output[0].startswith(f"configuration error: {variable}: ")
