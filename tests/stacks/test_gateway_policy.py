"""The API policy API Management runs, read back from the synthesized Terraform as XML: what it
does when the first region answers 5xx, does not answer, or a caller sends what only the App
Service front end may send."""

import re
import xml.etree.ElementTree as ET

import pytest

from tests.stacks.synthesized import ENVIRONMENTS, TOPOLOGIES, blocks, ref

ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
REPLAY_HEADER = "X-Fallback-Backend"
FALLBACK_BACKEND = '@(context.Variables.GetValueOrDefault<string>("fallback-backend"))'


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def policies(request, synthesized_stacks):
    stack = synthesized_stacks[request.param]
    found = [
        ET.fromstring(p["xml_content"])
        for p in blocks(stack, "azurerm_api_management_api_policy").values()
    ]
    assert found
    return stack, found


def _certificate_names(stack: dict) -> set[str]:
    """What `certificate-id` must name: the gateways' API Management certificates."""
    return {
        ref("azurerm_api_management_certificate", i, "name")
        for i in blocks(stack, "azurerm_api_management_certificate")
    }


def _when(section: ET.Element, text: str) -> ET.Element:
    (when,) = [w for w in section.iter("when") if text in w.get("condition", "")]
    return when


def _replay(policy: ET.Element) -> ET.Element:
    """The `on-error` branch that sends the request a second time."""
    on_error = policy.find("on-error")
    (again,) = [w for w in on_error.iter("when") if w.find("send-request") is not None]
    return again


def test_a_502_or_503_is_retried_once_against_the_other_region_if_retry_safe(policies):
    _, found = policies
    for policy in found:
        (retry,) = policy.find("backend").iter("retry")
        condition = retry.get("condition")
        assert 'GetValueOrDefault<bool>("retry-safe")' in condition
        assert '!context.Variables.GetValueOrDefault<bool>("fell-back")' in condition
        assert ("context.Response != null && (context.Response.StatusCode == 502"
                " || context.Response.StatusCode == 503)") in condition
        assert ">= 500" not in condition  # a 500 is the app's bug, not a dead region
        assert (retry.get("count"), retry.get("interval")) == ("1", "0")
        switch = retry.find("choose/when/set-backend-service")
        assert switch.get("backend-id") == FALLBACK_BACKEND
        forward = retry.find("forward-request")
        assert forward.get("buffer-request-body") == "true"


def test_retry_safe_means_a_read_or_a_write_with_an_idempotency_key(policies):
    """A keyless write (POST, PUT or DELETE) is never sent twice once it may have arrived."""
    _, found = policies
    for policy in found:
        (variable,) = [
            v for v in policy.find("inbound").iter("set-variable") if v.get("name") == "retry-safe"
        ]
        value = variable.get("value")
        assert '"GET"' in value and '"HEAD"' in value
        assert not [m for m in ('"POST"', '"PUT"', '"DELETE"') if m in value]
        assert 'context.Request.Headers.ContainsKey("Idempotency-Key")' in value


def test_the_key_the_gateway_trusts_is_the_header_the_api_declares():
    """The app's OpenAPI document declares Idempotency-Key on every write the policy retries."""
    import json

    from stacks.gateway_policy import IDEMPOTENCY_KEY_HEADER
    from stacks.openapi import OPENAPI_PATH

    document = json.loads(OPENAPI_PATH.read_text())
    for path, operations in document["paths"].items():
        for method in ("post", "put", "delete"):
            if method in operations:
                parameters = [p if "$ref" not in p else _resolve(document, p["$ref"])
                              for p in operations[method].get("parameters", [])]
                assert [p for p in parameters if p["in"] == "header"
                        and p["name"] == IDEMPOTENCY_KEY_HEADER], (method, path)


def _resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_a_region_that_does_not_answer_is_replayed_through_the_gateway_to_the_other(policies):
    """`on-error` may not forward: it sends a copy (headers, buffered body) to the URL the caller
    used, so the copied Host and the URL agree, naming the other region's backend."""
    _, found = policies
    for policy in found:
        again = _replay(policy)
        condition = again.get("condition")
        assert 'context.LastError.Section == "backend"' in condition
        assert '!context.Variables.GetValueOrDefault<bool>("fell-back")' in condition
        assert "BackendConnectionFailure" in condition
        send = again.find("send-request")
        assert (send.get("mode"), send.get("ignore-error")) == ("copy", "true")
        assert send.find("set-url").text == "@(context.Request.OriginalUrl.ToString())"
        (named,) = send.findall("set-header")
        assert (named.get("name"), named.get("exists-action")) == (REPLAY_HEADER, "override")
        assert named.find("value").text == FALLBACK_BACKEND
        returned = again.find("choose/when/return-response")
        assert returned.get("response-variable-name") == send.get("response-variable-name")


def test_a_replay_is_forwarded_once_with_the_certificate_to_the_backend_it_names(policies):
    """The replay's own `inbound`: certificate by id (as for every request), then the named
    fallback backend instead of Traffic Manager, marked as fallen back (no retry, no replay)."""
    _, found = policies
    for policy in found:
        inbound = list(policy.find("inbound"))
        tags = [child.tag for child in inbound]
        replayed = _when(policy.find("inbound"), REPLAY_HEADER)
        backends = {v.get("value") for v in _fallback_choice(policy).iter("set-variable")}
        assert set(re.findall(r'"(app-[a-z0-9]+)"', replayed.get("condition"))) == backends
        named = f'@(context.Request.Headers.GetValueOrDefault("{REPLAY_HEADER}", ""))'
        assert [(c.tag, dict(c.attrib)) for c in replayed] == [
            ("set-variable", {"name": "fell-back", "value": "@(true)"}),
            ("set-backend-service", {"backend-id": named}),
            ("set-header", {"name": REPLAY_HEADER, "exists-action": "delete"}),
        ]
        choose = next(c for c in inbound if c.find("when") is replayed)
        assert tags.index("authentication-certificate") < inbound.index(choose)
        assert tags.index("set-backend-service") < inbound.index(choose)  # overrides the default


def test_a_second_region_that_cannot_be_reached_gets_a_502(policies):
    _, found = policies
    for policy in found:
        (refused,) = [
            w
            for w in policy.find("on-error").iter("when")
            if w.get("condition")
            == '@(context.LastError.Section == "backend"'
            ' && context.LastError.Reason == "BackendConnectionFailure")'
        ]
        response = refused.find("return-response")
        assert response.find("set-status").get("code") == "502"
        assert "Neither region answered" in response.find("set-body").text


def test_after_a_timeout_only_retry_safe_requests_go_again(policies):
    """A keyless write that timed out may still be applied by the first region: no second
    attempt."""
    _, found = policies
    for policy in found:
        condition = _replay(policy).get("condition")
        assert (
            '(context.LastError.Reason == "Timeout" && '
            'context.Variables.GetValueOrDefault<bool>("retry-safe"))'
        ) in condition


def test_a_post_that_timed_out_gets_a_504_that_says_it_may_have_been_applied(policies):
    _, found = policies
    for policy in found:
        timed_out = [
            w
            for w in policy.find("on-error").iter("when")
            if w.get("condition")
            == '@(context.LastError.Section == "backend" && context.LastError.Reason == "Timeout")'
        ]
        (response,) = [w.find("return-response") for w in timed_out]
        assert response.find("set-status").get("code") == "504"
        assert "may have been applied" in response.find("set-body").text


def _variables(parent: ET.Element) -> dict[str, str]:
    return {v.get("name"): v.get("value") for v in parent.iter("set-variable")}


def _fallback_choice(policy: ET.Element) -> ET.Element:
    """The `choose` that sets `fallback-backend` by the gateway's region (with auth.mode entra
    the token's permission check is a `choose` before it)."""
    [choose] = [c for c in policy.findall("inbound/choose")
                if "fallback-backend" in _variables(c)]
    return choose


def test_the_fallback_is_the_other_regions_web_app_by_gateway_region(policies):
    """The fallback backends' URLs (hence the Host the web app sees) are the web apps' own names,
    with the certificate chain and name validated."""
    stack, found = policies
    hosts = {
        i: f"https://{ref('azurerm_linux_web_app', i, 'default_hostname')}"
        for i in blocks(stack, "azurerm_linux_web_app")
    }
    backends = blocks(stack, "azurerm_api_management_backend").values()
    urls = {b["name"]: b["url"] for b in backends if b["name"].startswith("app-")}
    for backend in backends:
        assert backend["url"] == urls.get(backend["name"], backend["url"])  # same in every gateway
        assert backend["tls"]["validate_certificate_chain"] is True
    assert {b["name"] for b in backends if b["tls"]["validate_certificate_name"]} >= set(urls)
    for policy in found:
        choose = _fallback_choice(policy)
        (when,) = choose.findall("when")
        assert when.get("condition") == '@(context.Deployment.Region == "Australia Southeast")'
        in_southeast, otherwise = _variables(when), _variables(choose.find("otherwise"))
        assert in_southeast == {"fallback-backend": "app-aue"}
        assert otherwise == {"fallback-backend": "app-ause"}
        assert set(urls.values()) == set(hosts.values())
        assert "australiaeast" in next(i for i, h in hosts.items() if h == urls["app-aue"])
        assert "australiasoutheast" in next(i for i, h in hosts.items() if h == urls["app-ause"])


def test_a_callers_own_client_certificate_header_is_dropped(policies):
    _, found = policies
    for policy in found:
        inbound = policy.find("inbound")
        dropped = [
            h.attrib for h in inbound.findall("set-header") if h.get("name") == "X-ARR-ClientCert"
        ]
        assert dropped == [{"name": "X-ARR-ClientCert", "exists-action": "delete"}]


def test_a_body_over_the_apps_limit_is_refused_with_413_before_any_backend(policies):
    _, found = policies
    for policy in found:
        limit = _when(policy.find("inbound"), "Content-Length")
        assert limit.get("condition").endswith("> 16384)")
        assert limit.find("return-response/set-status").get("code") == "413"


def test_the_client_certificate_is_presented_by_id_for_every_forward(policies):
    """Once, in `inbound`, where the authentication-certificate policy documents `certificate-id`
    (replays pass through it too). `send-request` documents its `authentication-certificate`
    child with `thumbprint` only, which breaks at a Key Vault renewal: none there."""
    stack, found = policies
    certificates = _certificate_names(stack)
    for policy in found:
        (presented,) = policy.find("inbound").findall("authentication-certificate")
        assert list(presented.attrib) == ["certificate-id"]
        assert presented.get("certificate-id") in certificates
        assert list(policy.iter("authentication-certificate")) == [presented]
        assert not [e for e in policy.iter() if "thumbprint" in e.attrib]


def test_backends_are_called_over_http_1_1(policies):
    """HTTP/2 cannot renegotiate, which the web apps' exclusion path needs."""
    _, found = policies
    for policy in found:
        (forward,) = policy.iter("forward-request")
        assert forward.get("http-version") == "1"


def test_api_management_speaks_tls_1_2_to_backends_and_nothing_older(policies):
    """Backend TLS 1.3 is opt-in in API Management (Manage protocols and ciphers) and azurerm
    4.55 has no argument that opts in; TLS 1.0, 1.1 and SSL 3 are off."""
    stack, _ = policies
    for service in blocks(stack, "azurerm_api_management").values():
        security = service["security"]
        assert {k: v for k, v in security.items() if k.startswith("backend_")} == {
            "backend_ssl30_enabled": False,
            "backend_tls10_enabled": False,
            "backend_tls11_enabled": False,
        }
