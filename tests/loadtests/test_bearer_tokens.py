"""Bearer tokens on the local topology's real path (the session topology: its token issuer, HAProxy
gateway and front ends, the apps with AUTH_MODE=entra): the gateway refuses what API Management's
validate-azure-ad-token refuses before any region sees it and forwards what it admits; the app
checks again, whatever path a request took; each caller sees only its own items. And Azure Load
Testing's engine path: the issuer's IMDS stand-in answers as IMDS does, and an engine run from
the test definition calls as the engine identity."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from urllib.parse import urlencode

import jwt
import pytest

from app.contract import (
    PROBLEM_MEDIA_TYPE,
    READ_PERMISSION,
    SITE_NAME_HEADER,
    TODO_PATH,
    WRITE_PERMISSION,
)
from loadtests.analysis import load_records
from loadtests.haproxy_admin import HAProxyAdmin
from loadtests.token_attacks import ATTACKS
from loadtests.token_issuer import (
    AUDIENCE,
    ENGINE_CLIENT_ID,
    ENGINE_OBJECT_ID,
    IMDS_TOKEN_PATH,
    OTHER_CLIENT_ID,
)
from tests.loadtests.conftest import tls_context
from tests.tools.test_azure_load_testing import (
    IDENTITY_NOT_FOUND,
    Imds,
    config,
    engine_folder,
    engine_imds,
    locust_in,
)
from tests.waiting import wait_until

OWNER = "3b9f2d6e-1c4a-4e7b-9d05-6a8c2f1e4b73"
ANOTHER = "8e4a1c7f-2b6d-4f93-a0c5-d7e3b9f1a246"


def apps(topology) -> tuple[str, str]:
    """The two regions' site names: an answer naming one came from an app, not the gateway."""
    return topology.config.primary_site, topology.config.secondary_site


def send(topology, method: str, path: str, headers: dict, body=None, context=None):
    """(status, headers, JSON answer or None) through the gateway, or straight to the primary's
    front end with `context` (the client certificate: the path API Management takes)."""
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", topology.gateway_port, timeout=30)
    else:
        port = topology.regions["primary"].frontend_port
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    data = None if body is None else json.dumps(body).encode()
    headers = {**headers, "Content-Type": "application/json"} if data else headers
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read()
        return response.status, response.headers, json.loads(text) if text else None
    finally:
        connection.close()


def attack_headers(topology, attack, key: bool = True) -> dict:
    headers = {"Ocp-Apim-Subscription-Key": topology.config.subscription_key} if key else {}
    authorization = attack.authorization(topology.minter)
    return {**headers, **({"Authorization": authorization} if authorization else {})}


def app_answers(topology) -> int:
    """Answers the apps of both regions gave (their front ends' `app` backends count them)."""
    return sum(HAProxyAdmin(r.admin_socket).responses("app")[0] for r in topology.regions.values())


def body_of(attack) -> dict | None:
    return {"name": "must never be stored"} if attack.method == "POST" else None


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_the_gateway_refuses_each_token_attack_before_any_region(topology, attack):
    before = app_answers(topology)
    status, headers, problem = send(
        topology, attack.method, TODO_PATH, attack_headers(topology, attack), body_of(attack)
    )
    assert status == attack.status
    assert headers["Content-Type"] == PROBLEM_MEDIA_TYPE and problem["status"] == status
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="todo-api"')
    if status == 403:
        assert 'error="insufficient_scope"' in challenge
    assert headers[SITE_NAME_HEADER] is None  # no app answered it
    # A valid call after it reaches an app: the apps' count moves by that one call only.
    assert send(topology, "GET", TODO_PATH, topology.caller_headers())[0] == 200
    counted = wait_until(
        lambda: (n := app_answers(topology)) > before and n,
        "the apps' front ends counted the valid call",
    )
    assert counted == before + 1


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_the_app_refuses_each_token_attack_on_a_path_around_the_gateway(
    topology, certs_dir, attack
):
    """Defence in depth: straight to a region's front end with API Management's client
    certificate (no gateway on the way), the app itself refuses the same token."""
    context = tls_context(certs_dir, with_client_cert=True)
    headers = attack_headers(topology, attack, key=False)
    status, answered, problem = send(
        topology, attack.method, TODO_PATH, headers, body_of(attack), context
    )
    assert (status, answered[SITE_NAME_HEADER]) == (attack.status, topology.config.primary_site)
    assert answered["Content-Type"] == PROBLEM_MEDIA_TYPE and problem["status"] == status
    assert answered["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("missing", ["oid", "nbf"])
def test_a_token_the_gateway_admits_is_still_refused_by_the_app(topology, missing):
    """API Management does not require `oid` or `nbf`; the app does: the gateway forwards such
    a token and the app answers 401 (its site name shows it answered: either region's, as
    Traffic Manager's model routes at that moment; a probe that timed out on a busy machine
    sends the call to the secondary)."""
    token = topology.token(**{missing: None})
    headers = {**topology.caller_headers(), "Authorization": f"Bearer {token}"}
    status, answered, problem = send(topology, "GET", TODO_PATH, headers)
    assert status == 401 and answered[SITE_NAME_HEADER] in apps(topology)
    assert 'error="invalid_token"' in answered["WWW-Authenticate"]
    assert problem["status"] == 401


def test_a_valid_token_is_forwarded_with_its_authorization_header(topology, certs_dir):
    """The gateway forwards the token: the app answers as the caller it names (its own items)."""
    created = send(topology, "POST", TODO_PATH, topology.caller_headers(OWNER), {"name": "mine"})
    assert created[0] == 201 and created[1][SITE_NAME_HEADER] in apps(topology)
    listed = send(topology, "GET", TODO_PATH, topology.caller_headers(OWNER))[2]
    assert created[2]["id"] in [item["id"] for item in listed]


def test_another_caller_neither_lists_nor_reads_nor_changes_an_item(topology):
    owner, another = topology.caller_headers(OWNER), topology.caller_headers(ANOTHER)
    status, _, item = send(topology, "POST", TODO_PATH, owner, {"name": "not yours"})
    assert status == 201
    path = f"{TODO_PATH}/{item['id']}"
    assert item["id"] not in [i["id"] for i in send(topology, "GET", TODO_PATH, another)[2]]
    changed = {**item, "name": "changed by another caller"}
    for method, body in (("GET", None), ("PUT", changed), ("DELETE", None)):
        assert send(topology, method, path, another, body)[0] == 404, method
    assert send(topology, "GET", path, owner)[2] == item  # unchanged, still there


# -- Azure Load Testing's engine identity: IMDS, and a run as the service runs it ----------------


ENGINE_RESOURCE_ID = ("/subscriptions/0000/resourceGroups/rg-local/providers/"
                      "Microsoft.ManagedIdentity/userAssignedIdentities/id-load-engines")
IMDS_ANSWERED = f"GET {IMDS_TOKEN_PATH} 200"  # the issuer's log line (the path, no query)


def ask_imds(topology, query: dict, metadata: bool = True) -> tuple[int, dict]:
    """(status, JSON) of the issuer's IMDS stand-in for a token request."""
    connection = http.client.HTTPConnection("127.0.0.1", topology.issuer_config.port, timeout=30)
    try:
        connection.request("GET", f"{IMDS_TOKEN_PATH}?{urlencode(query)}",
                           headers={"Metadata": "true"} if metadata else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def imds_answers(topology) -> int:
    """Tokens the issuer's IMDS stand-in handed out so far (its log)."""
    return (topology.workdir / "issuer.log").read_text().splitlines().count(IMDS_ANSWERED)


ASKED = {"api-version": "2018-02-01", "resource": AUDIENCE, "client_id": ENGINE_CLIENT_ID}


@pytest.mark.parametrize(("query", "metadata", "says"), [
    (ASKED, False, "invalid_request: Required metadata header not specified"),
    ({**ASKED, "client_id": OTHER_CLIENT_ID}, True, "invalid_request: Identity not found"),
    ({**ASKED, "resource": "api://another-api"}, True, "invalid_resource: AADSTS500011"),
    ({"resource": AUDIENCE}, True, "invalid_request: Required query variable 'api-version'"),
], ids=["no Metadata header", "another identity", "another resource", "no api-version"])
def test_the_imds_stand_in_refuses_what_imds_refuses(topology, query, metadata, says):
    before = imds_answers(topology)
    status, answer = ask_imds(topology, query, metadata)
    assert status == 400 and f"{answer['error']}: {answer['error_description']}".startswith(says)
    assert "access_token" not in answer and imds_answers(topology) == before


def test_the_imds_stand_in_gives_the_engine_identity_a_token_gateway_and_app_admit(
    topology, certs_dir
):
    status, answer = ask_imds(topology, ASKED)
    assert status == 200, answer
    assert (answer["token_type"], answer["resource"], answer["client_id"]) == (
        "Bearer", AUDIENCE, ENGINE_CLIENT_ID)
    expires_in = int(answer["expires_in"])
    assert abs(int(answer["expires_on"]) - expires_in - time.time()) < 60
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert (claims["oid"], claims["sub"], claims["azp"], claims["aud"]) == (
        ENGINE_OBJECT_ID, ENGINE_OBJECT_ID, ENGINE_CLIENT_ID, AUDIENCE)
    assert sorted(claims["roles"]) == sorted([READ_PERMISSION, WRITE_PERMISSION])
    bearer = {"Authorization": f"Bearer {answer['access_token']}"}
    key = {"Ocp-Apim-Subscription-Key": topology.config.subscription_key}
    created = send(topology, "POST", TODO_PATH, {**key, **bearer}, {"name": "the engine's"})
    assert created[0] == 201, created  # through the gateway's checks and the app's
    around = send(topology, "GET", f"{TODO_PATH}/{created[2]['id']}", bearer,
                  context=tls_context(certs_dir, with_client_cert=True))
    assert around[0] == 200 and around[2]["name"] == "the engine's"  # the app's own check


def test_an_azure_load_testing_engine_calls_the_api_as_its_engine_identity(topology, tmp_path):
    """The engine path rehearsed: the definition made from a stack's outputs on auth.mode =
    "entra", its files flat in a folder outside the repository with the environment the service
    gives Locust (the subscription key resolved), and the engine's IMDS the issuer's stand-in
    when the definition gives the engines the identity (an IMDS that knows no identity
    otherwise). Every call went through the gateway's and the app's token checks; the engine
    asked IMDS once for all its users."""
    identity = {"id": ENGINE_RESOURCE_ID, "client_id": ENGINE_CLIENT_ID}
    folder, env = engine_folder(
        tmp_path, topology.gateway_url, "zip", topology.config.subscription_key, api_path="",
        api_identifier_uri=AUDIENCE, load_test_engine_identity=identity)
    test = config(tmp_path / "definition")
    issuer_imds = f"http://127.0.0.1:{topology.issuer_config.port}"
    before = imds_answers(topology)
    nobody = Imds([IDENTITY_NOT_FOUND])
    try:
        env |= {"LOCUST_IMDS_ENDPOINT": engine_imds(test, identity["id"], issuer_imds, nobody.url),
                "LOCUST_RECORDS_DIR": str(tmp_path / "records")}
        ran = locust_in(folder, env)
    finally:
        nobody.close()
    assert ran.returncode == 0, ran.stdout
    records = load_records(tmp_path / "records")
    statuses = Counter(r["status"] for r in records)
    assert statuses[401] + statuses[403] == 0 and statuses[200] and statuses[201], statuses
    # Anything else only as a create sent twice at once met its copy (409, sent again).
    assert {r["status"] for r in records if r["outcome"] != "retried"} <= {200, 201, 204}, statuses
    wait_until(lambda: imds_answers(topology) == before + 1,
               "the engine's one token came from the issuer's IMDS stand-in",
               details=lambda: f"tokens handed out: {imds_answers(topology) - before}")


@pytest.mark.parametrize("kid", ["-vBTvqyEllSv5cs8-Zj2qeq23Q2sQ1rBxS8hxf2-KA8", "plain-kid"])
def test_the_gateways_token_checks_parse_whatever_the_key_id_begins_with(tmp_path, kid):
    """A key id is base64url of the key's hash and may begin with "-", which HAProxy took for an
    ACL flag (a fresh clone's topology refused to start): `haproxy -c` accepts the rules."""
    import subprocess

    from loadtests.token_issuer import IssuerConfig, ensure_signing_key
    from loadtests.topology import HAPROXY, token_rules

    issuer = IssuerConfig(port=1, key_file=str(ensure_signing_key(tmp_path)), kid=kid)
    config = tmp_path / "gateway.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n"
        "    timeout server 1s\nfrontend gateway\n    bind 127.0.0.1:65000\n"
        f"{token_rules(issuer)}\n")
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], check=False, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
