"""The API policy: forward to the Traffic Manager backend; when the first region fails, send the
request once, at once, to the App Service of the *other* region directly.

Traffic Manager needs up to (failures + 1) x interval + TTL to move clients; the second attempt
covers that window. Two ways a region fails, handled in two places (Microsoft's policy reference,
api-management-error-handling-policies and forward-request-policy):

- It answers 502 or 503 (App Service's answer for a stopped or dead app): `forward-request`
  returns a response, so the `retry` in `backend` sees it and forwards again to the other
  region's backend. Retry-safe requests only: reads, and writes that carry an
  `Idempotency-Key` (the app replays a completed keyed write rather than applying it twice); a
  keyless write answered 502/503 may have been applied. A 500 is the app's own bug: not retried.
- It does not answer (the connection fails, or no response headers within the timeout):
  `forward-request` raises an error and processing jumps to `on-error`; a `retry` never sees it.
  `on-error` may not `forward-request`, so it replays the request through the gateway: a
  `send-request mode="copy"` (headers and the buffered body) to the URL the caller used, with a
  header naming the other region's backend (Microsoft's "Replay request on error" snippet,
  Azure/api-management-policy-snippets). The replay's `inbound` presents the client certificate
  and `forward-request`s to that backend (the other web app's URL and Host); `on-error` returns
  the replay's response. After `Timeout` only retry-safe requests go again (the first region may
  still apply a POST); after `BackendConnectionFailure` every method does (no connection, no
  request). Anything else, or a second failure, is a problem+json 502/504 that says whether the
  request may have been applied.

The client certificate is presented once, by certificate id, in `inbound`, never by
thumbprint, so a Key Vault renewal reaches every call without a deploy: the authentication-
certificate policy documents `certificate-id` for `inbound`, while the send-request reference
lists its `authentication-certificate` child with `thumbprint` only (learn.microsoft.com,
authentication-certificate-policy and send-request-policy). Hence the replay through `inbound`
rather than a `send-request` straight to the other web app.

"Other" is relative to the gateway that runs the policy (`context.Deployment.Region`), so one
policy serves every topology; the replay names its backend, so it may land on any gateway of the
API. The inbound section also drops any `X-ARR-ClientCert` a caller sent (only the App Service
front end may set it) and refuses bodies over the API's limit. A caller that sends the replay
header itself only pins its own request to one region's web app, without the second attempt.

With `auth.mode = "entra"` (`TokenCheck`), the very first thing in `inbound` is
`validate-azure-ad-token` (tenant, audiences, client application ids; learn.microsoft.com,
validate-azure-ad-token-policy: elements in its documented order); a token that fails it raises
an error whose `context.LastError.Source` is the policy's name, answered in `on-error` with 401
problem+json and `WWW-Authenticate: Bearer` (RFC 6750 section 3). Then the operation's
permission (app/openapi.json's `entraId` requirement, by method and URL template) must be in
the token's `roles` (applications) or `scp` (users), or the answer is 403 problem+json with
`error="insufficient_scope"`. The Authorization header goes on to the app, which validates the
token again (a replay from `on-error` copies it, so the replay is validated as well).
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass

# Sent again after the request may have reached the first region (a timeout, a 502 or 503):
# reads, and writes that carry an Idempotency-Key (the app replays a completed one instead of
# applying it twice; app/openapi.json declares the header, a test keeps the name in step).
# A write without a key goes again only when it cannot have arrived (no connection).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
RETRY_STATUSES = (502, 503)  # the region's front end or app is down, not an app bug (500)
RETRY_COUNT = 1
FORWARD_TIMEOUT_SECONDS = 20
# The replay waits for its own forward-request plus the round trip through the gateway.
REPLAY_TIMEOUT_SECONDS = FORWARD_TIMEOUT_SECONDS + 5
REPLAY_HEADER = "X-Fallback-Backend"  # on a replay: the backend id to forward to
CLIENT_CERT_HEADER = "X-ARR-ClientCert"
# LastError.Reason of a forward-request that got no response (error-handling reference).
CONNECTION_FAILURE = "BackendConnectionFailure"
TIMEOUT = "Timeout"
FALLBACK_RESPONSE = "fallback-response"
PROBLEM_MEDIA_TYPE = "application/problem+json"
TOKEN_POLICY = "validate-azure-ad-token"  # also context.LastError.Source of its failures
TOKEN_VARIABLE = "token"  # the validated Jwt (output-token-variable-name)
AUTHORIZATION_HEADER = "Authorization"
BEARER_REALM = "todo-api"  # the app's realm too (app/contract.py BEARER_REALM; a test compares)
INVALID_TOKEN = "A valid Microsoft Entra ID access token for this API is required."
NEITHER_ANSWERED = "Neither region answered. Read before you send a POST again."


@dataclass(frozen=True)
class Fallback:
    """Where a gateway in `region` (display name) sends a request its first region failed."""

    region: str
    backend_id: str  # the API Management backend whose URL is the other region's web app
    base_url: str  # https://<other region's app>.azurewebsites.net (that backend's URL)


@dataclass(frozen=True)
class TokenCheck:
    """What API Management checks of the bearer token (stacks/api_identity.py makes it)."""

    tenant_id: str
    audiences: tuple[str, ...]
    client_ids: tuple[str, ...]
    operations: tuple  # of stacks.openapi.OperationPermission


def _var(name: str, type_: str = "string") -> str:
    return f'context.Variables.GetValueOrDefault<{type_}>("{name}")'


def api_policy(
    *,
    primary_backend_id: str,
    fallbacks: list[Fallback],
    certificate_id: str,
    max_body_bytes: int,
    token_check: TokenCheck | None = None,
) -> str:
    """The first fallback is also the one used when the gateway's region is none of them."""
    methods = ", ".join(f'"{m}"' for m in SAFE_METHODS)
    policies = ET.Element("policies")
    inbound = ET.SubElement(policies, "inbound")
    if token_check is not None:
        _validate_token(inbound, token_check)
    ET.SubElement(inbound, "base")
    if token_check is not None:
        _require_permissions(inbound, token_check)
    ET.SubElement(inbound, "set-header", name=CLIENT_CERT_HEADER, **{"exists-action": "delete"})
    # By certificate id: API Management follows the Key Vault certificate's renewals (a
    # thumbprint names one version and breaks at the first renewal).
    ET.SubElement(inbound, "authentication-certificate", {"certificate-id": certificate_id})
    _body_limit(inbound, max_body_bytes)
    ET.SubElement(
        inbound,
        "set-variable",
        name="retry-safe",
        value=f"@(new [] {{ {methods} }}.Contains(context.Request.Method)"
        f' || context.Request.Headers.ContainsKey("{IDEMPOTENCY_KEY_HEADER}"))',
    )
    _choose_fallback(inbound, fallbacks)
    ET.SubElement(inbound, "set-backend-service", {"backend-id": primary_backend_id})
    _replayed(inbound, fallbacks)

    backend = ET.SubElement(policies, "backend")
    retry = ET.SubElement(
        backend,
        "retry",
        {
            "condition": f"@({_var('retry-safe', 'bool')} && !{_var('fell-back', 'bool')}"
            " && context.Response != null && ("
            + " || ".join(f"context.Response.StatusCode == {s}" for s in RETRY_STATUSES) + "))",
            "count": str(RETRY_COUNT),
            "interval": "0",
            "first-fast-retry": "true",
        },
    )
    retrying = ET.SubElement(ET.SubElement(retry, "choose"), "when")
    retrying.set("condition", "@(context.Response != null)")
    ET.SubElement(retrying, "set-variable", name="fell-back", value="@(true)")
    ET.SubElement(retrying, "set-backend-service", {"backend-id": f"@({_var('fallback-backend')})"})
    ET.SubElement(
        retry,
        "forward-request",
        {
            "buffer-request-body": "true",
            "timeout": str(FORWARD_TIMEOUT_SECONDS),
            # HTTP/1.1 only: the web apps' client-certificate exclusion path means TLS
            # renegotiation, which HTTP/2 cannot do (docs/deploy.md, "Client-certificate mode").
            "http-version": "1",
        },
    )
    ET.SubElement(ET.SubElement(policies, "outbound"), "base")
    _on_error(ET.SubElement(policies, "on-error"), token_check is not None)
    ET.indent(policies)
    return ET.tostring(policies, encoding="unicode")


def _validate_token(inbound: ET.Element, check: TokenCheck) -> None:
    """The token from the Authorization header: this tenant, one of the audiences, one of the
    client applications; on failure an error `on-error` answers (`_token_refused`)."""
    validate = ET.SubElement(
        inbound,
        TOKEN_POLICY,
        {
            "tenant-id": check.tenant_id,
            "header-name": AUTHORIZATION_HEADER,
            "output-token-variable-name": TOKEN_VARIABLE,
        },
    )
    clients = ET.SubElement(validate, "client-application-ids")
    for client_id in check.client_ids:
        ET.SubElement(clients, "application-id").text = client_id
    audiences = ET.SubElement(validate, "audiences")
    for audience in check.audiences:
        ET.SubElement(audiences, "audience").text = audience


def granted(permission: str) -> str:
    """Policy expression: the validated token carries `permission` as an app role (`roles`, one
    value per role) or a delegated scope (`scp`, space-separated). `Jwt.Claims` maps a claim to
    its values (string[]); API Management's GetValueOrDefault(name, default) gives them joined
    by commas (learn.microsoft.com, api-management-policy-expressions)."""
    claims = f'((Jwt)context.Variables["{TOKEN_VARIABLE}"]).Claims'
    return (
        f'({claims}.GetValueOrDefault("roles", "").Split(\',\').Contains("{permission}")'
        f' || {claims}.GetValueOrDefault("scp", "").Split(\' \').Contains("{permission}"))'
    )


def _require_permissions(inbound: ET.Element, check: TokenCheck) -> None:
    """403 unless the token grants the operation's permission; an operation the document does
    not list (none reaches here: API Management serves only imported operations) is refused."""
    choose = ET.SubElement(inbound, "choose")
    by_permission: dict[str, list[str]] = {}
    for operation in check.operations:
        by_permission.setdefault(operation.permission, []).append(
            f'(context.Operation.Method == "{operation.method}"'
            f' && context.Operation.UrlTemplate == "{operation.url_template}")'
        )
    for permission, operations in by_permission.items():
        when = ET.SubElement(
            choose,
            "when",
            condition=f"@(({' || '.join(operations)}) && !{granted(permission)})",
        )
        _problem(
            when,
            403,
            f"The token does not grant {permission} (an app role or a delegated scope).",
            challenge=f'Bearer realm="{BEARER_REALM}", error="insufficient_scope",'
            f' scope="{permission}"',
        )
    known = " || ".join(o for ops in by_permission.values() for o in ops)
    _problem(
        ET.SubElement(choose, "when", condition=f"@(!({known}))"),
        403,
        "The operation requires a permission this gateway does not know.",
    )


def _token_refused(choose: ET.Element) -> None:
    """401 for a missing or invalid token (RFC 6750: no error code when none was sent)."""
    refused = ET.SubElement(
        choose, "when", condition=f'@(context.LastError.Source == "{TOKEN_POLICY}")'
    )
    sent = ET.SubElement(ET.SubElement(refused, "choose"), "when")
    sent.set("condition", f'@(context.Request.Headers.ContainsKey("{AUTHORIZATION_HEADER}"))')
    _problem(sent, 401, INVALID_TOKEN,
             challenge=f'Bearer realm="{BEARER_REALM}", error="invalid_token"')
    _problem(refused, 401, INVALID_TOKEN, challenge=f'Bearer realm="{BEARER_REALM}"')


def _body_limit(inbound: ET.Element, max_body_bytes: int) -> None:
    """413 before any backend is called; the app refuses the same limit itself (and chunked
    bodies, which carry no Content-Length, are counted there)."""
    when = ET.SubElement(ET.SubElement(inbound, "choose"), "when")
    when.set(
        "condition",
        '@(long.Parse(context.Request.Headers.GetValueOrDefault("Content-Length", "0"))'
        f" > {max_body_bytes})",
    )
    _problem(when, 413, f"The request body must be at most {max_body_bytes} bytes.")


def _choose_fallback(parent: ET.Element, fallbacks: list[Fallback]) -> None:
    choose = ET.SubElement(parent, "choose")
    for fallback in fallbacks[1:]:
        when = ET.SubElement(
            choose, "when", condition=f'@(context.Deployment.Region == "{fallback.region}")'
        )
        _set_fallback(when, fallback)
    _set_fallback(ET.SubElement(choose, "otherwise"), fallbacks[0])


def _set_fallback(parent: ET.Element, fallback: Fallback) -> None:
    ET.SubElement(parent, "set-variable", name="fallback-backend", value=fallback.backend_id)


def _replayed(inbound: ET.Element, fallbacks: list[Fallback]) -> None:
    """A replay from `on-error` names one of the fallback backends: forward it there, once."""
    named = f'context.Request.Headers.GetValueOrDefault("{REPLAY_HEADER}", "")'
    known = ", ".join(f'"{f.backend_id}"' for f in fallbacks)
    when = ET.SubElement(ET.SubElement(inbound, "choose"), "when")
    when.set("condition", f"@(new [] {{ {known} }}.Contains({named}))")
    ET.SubElement(when, "set-variable", name="fell-back", value="@(true)")
    ET.SubElement(when, "set-backend-service", {"backend-id": f"@({named})"})
    ET.SubElement(when, "set-header", name=REPLAY_HEADER, **{"exists-action": "delete"})


def _on_error(on_error: ET.Element, token_checked: bool) -> None:
    ET.SubElement(on_error, "base")
    choose = ET.SubElement(on_error, "choose")
    if token_checked:
        _token_refused(choose)
    no_answer = (
        '@(context.LastError.Section == "backend"'
        f" && !{_var('fell-back', 'bool')}"
        f' && (context.LastError.Reason == "{CONNECTION_FAILURE}"'
        f' || (context.LastError.Reason == "{TIMEOUT}" && {_var("retry-safe", "bool")})))'
    )
    again = ET.SubElement(choose, "when", condition=no_answer)
    # Through the gateway again (the replay's inbound presents the certificate by id): the URL
    # the caller used, so the copied Host header and the URL agree.
    send = ET.SubElement(
        again,
        "send-request",
        {
            "mode": "copy",
            "response-variable-name": FALLBACK_RESPONSE,
            "timeout": str(REPLAY_TIMEOUT_SECONDS),
            "ignore-error": "true",
        },
    )
    ET.SubElement(send, "set-url").text = "@(context.Request.OriginalUrl.ToString())"
    replay = ET.SubElement(send, "set-header", name=REPLAY_HEADER, **{"exists-action": "override"})
    ET.SubElement(replay, "value").text = f"@({_var('fallback-backend')})"
    answered = ET.SubElement(ET.SubElement(again, "choose"), "when")
    answered.set("condition", f"@({_var(FALLBACK_RESPONSE, 'IResponse')} != null)")
    ET.SubElement(answered, "return-response", {"response-variable-name": FALLBACK_RESPONSE})
    _problem(again, 502, NEITHER_ANSWERED)
    timed_out = ET.SubElement(
        choose,
        "when",
        condition=f'@(context.LastError.Section == "backend"'
        f' && context.LastError.Reason == "{TIMEOUT}")',
    )
    _problem(
        timed_out,
        504,
        "The region did not answer in time; the request may have been applied. "
        "Read before you send it again.",
    )
    # The second region (a replay, or the 5xx retry) could not be reached either.
    refused = ET.SubElement(
        choose,
        "when",
        condition=f'@(context.LastError.Section == "backend"'
        f' && context.LastError.Reason == "{CONNECTION_FAILURE}")',
    )
    _problem(refused, 502, NEITHER_ANSWERED)


def _problem(parent: ET.Element, status: int, detail: str, challenge: str | None = None) -> None:
    """A problem+json answer; `challenge`: its WWW-Authenticate header (401, 403)."""
    response = ET.SubElement(parent, "return-response")
    ET.SubElement(response, "set-status", code=str(status))
    headers = {"Content-Type": PROBLEM_MEDIA_TYPE}
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    for name, value in headers.items():
        header = ET.SubElement(response, "set-header", name=name, **{"exists-action": "override"})
        ET.SubElement(header, "value").text = value
    body = f'{{"status": {status}, "title": "{_TITLES[status]}", "detail": "{detail}"}}'
    ET.SubElement(response, "set-body").text = body


_TITLES = {
    401: "Unauthorized",
    403: "Forbidden",
    413: "Payload Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
