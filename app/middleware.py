"""Pure ASGI middleware: the client-certificate gate, the bearer-token gate and the site-name
response header; and the one rule for how a path may appear in logs and telemetry."""

from __future__ import annotations

import logging
import posixpath
import re
from urllib.parse import unquote

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access_tokens import (
    CALLER_STATE,
    MALFORMED,
    NO_TOKEN,
    AccessTokenPolicy,
    PermissionMissing,
    TokenMissing,
    TokenRejected,
    bearer_token,
)
from app.certificates import CertificateRejected, ClientCertificatePolicy
from app.contract import (
    BEARER_REALM,
    CERTIFICATE_REJECTED,
    HEALTH_PATH,
    HEALTH_PREFIX,
    MAX_AUTHORIZATION_BYTES,
    OPENAPI_PATH,
    SITE_NAME_HEADER,
    SWAGGER_INITIALIZER_PATH,
    SWAGGER_UI_PATH,
    TODO_ITEM_PATH,
    TODO_PATH,
)
from app.problems import problem_response
from app.signing_keys import IssuerUnavailable

logger = logging.getLogger("app.client_certificate")
token_logger = logging.getLogger("app.access_tokens")

_ENCODED_SEPARATORS = (b"%2f", b"%5c")

# -- paths in logs and telemetry: a route template or one fixed name, never the raw path ------

UNMATCHED_PATH = "/{unmatched}"  # any path that is no route's: one name, whatever it held
_TEMPLATES = tuple(
    (template, re.compile(compile_path(template)[0].pattern, re.IGNORECASE))
    for template in (TODO_PATH, TODO_ITEM_PATH, OPENAPI_PATH, SWAGGER_UI_PATH,
                     SWAGGER_INITIALIZER_PATH)
)
_SLASHES = re.compile(r"/+")


def request_path(scope: Scope) -> str:
    """The request's path as logs and telemetry may show it: the template of the route that
    matched, else `reported_path` (the gates log before routing; refused requests never route)."""
    template = getattr(scope.get("route"), "path", None)
    return template or reported_path(scope["path"], scope.get("raw_path"))


def reported_path(path: str, raw_path: bytes | None = None) -> str:
    """`/health/{key}` for anything that decodes (percent-decoding, again and again, `\\`, dot
    segments, case) to /health or below it; else the route template the path matches (the
    routes' patterns, case-insensitive); else UNMATCHED_PATH. Never any of the path itself: the
    health key, an item id or a token a careless client put there stay out."""
    if _under_health(path) or (raw_path and _under_health(raw_path.decode("latin-1"))):
        return HEALTH_PATH
    for template, pattern in _TEMPLATES:
        if pattern.match(path):
            return template
    return UNMATCHED_PATH


def _under_health(text: str) -> bool:
    for _ in range(5):  # "%2568" is "%68" is "h": decode until nothing changes (or give up)
        if "%" not in text or (decoded := unquote(text)) == text:
            break
        text = decoded
    text = posixpath.normpath(_SLASHES.sub("/", "/" + text.replace("\\", "/").lower()))
    return text == HEALTH_PREFIX or text.startswith(HEALTH_PREFIX + "/")


class AccessLogPaths(logging.Filter):
    """uvicorn's access line (`<client> - "GET <path>?<query> HTTP/1.1" 200`) with the path as
    `reported_path` shows it and no query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, target, version, status = record.args
            path = unquote(str(target).partition("?")[0])  # uvicorn logs quote(path)?query
            record.args = (client, method, reported_path(path), version, status)
        return True


_ACCESS_LOG_PATHS = AccessLogPaths()


def filter_access_log() -> None:
    """AccessLogPaths on uvicorn's access logger (once: a filter is added only once)."""
    logging.getLogger("uvicorn.access").addFilter(_ACCESS_LOG_PATHS)


def gunicorn_logger(cfg):
    """gunicorn's own logger (app/startup.sh: `--logger-class app.middleware.gunicorn_logger`),
    with AccessLogPaths on uvicorn's access logger, whose lines gunicorn's handlers write (the
    uvicorn worker logs its own access line: gunicorn's --access-logformat does not apply)."""
    from gunicorn.glogging import Logger

    filter_access_log()
    return Logger(cfg)


def is_health_path(path: str, raw_path: bytes | None) -> bool:
    """True for exactly /health and /health/... in any case, and nothing that could leave it.

    The router matches the decoded path, so the decision is made on the decoded path too; a path
    with dot segments (which a normalising proxy would resolve elsewhere) or with an encoded slash
    or backslash in the raw path is never exempt.
    """
    lowered = path.lower()
    if lowered != HEALTH_PREFIX and not lowered.startswith(HEALTH_PREFIX + "/"):
        return False
    return stays_in_place(path, raw_path)


_HEALTH_PREFIX_LENGTH = len(HEALTH_PREFIX)


def stays_in_place(path: str, raw_path: bytes | None) -> bool:
    """False for a path with dot segments or an encoded slash or backslash in the raw path."""
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    raw = (raw_path or b"").lower()
    return not any(encoded in raw for encoded in _ENCODED_SEPARATORS)


class ClientCertificateMiddleware:
    """Admits a request only with a certificate header the policy accepts (health paths exempt)."""

    def __init__(self, app: ASGIApp, policy: ClientCertificatePolicy, header_name: str) -> None:
        self.app = app
        self.policy = policy
        self.header_name = header_name.lower().encode("latin-1")
        self.rejected = problem_response(403, CERTIFICATE_REJECTED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_health_path(scope["path"], scope.get("raw_path")):
            await self.app(scope, receive, send)
            return
        try:
            self.policy.check(self._header_value(scope))
        except CertificateRejected as rejection:
            logger.warning(
                "client certificate rejected on %s %s: %s",
                scope["method"],
                request_path(scope),
                rejection,
            )
            await self.rejected(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _header_value(self, scope: Scope) -> str:
        values = [value for name, value in scope["headers"] if name == self.header_name]
        if not values:
            raise CertificateRejected("certificate header is missing")
        if len(values) > 1:
            raise CertificateRejected("certificate header appears more than once")
        return values[0].decode("latin-1")


def _challenge(status: int, description: str, error: str | None, scope: str | None = None):
    """A problem response with RFC 6750's WWW-Authenticate challenge (no error code when the
    request carried no bearer token at all, 3.1)."""
    parameters = [f'realm="{BEARER_REALM}"']
    if error is not None:
        parameters += [f'error="{error}"', f'error_description="{description}"']
    if scope is not None:
        parameters.append(f'scope="{scope}"')
    challenge = "Bearer " + ", ".join(parameters)
    return problem_response(status, description, {"WWW-Authenticate": challenge})


class BearerTokenMiddleware:
    """Admits a request only with an `Authorization: Bearer` token the policy admits and that
    grants the method's permission; the caller lands in `request.state.caller`.

    Open: the health paths (their own key), and `open_paths` / `open_prefixes` (the OpenAPI
    document, Swagger UI in development). Runs after the client-certificate gate. Answers 401
    (no, or an invalid, token), 403 (insufficient_scope) or 503 + Retry-After (the signing key is
    unknown and the issuer cannot be reached), never 500; logs the fixed reason and the method,
    never the token, nor the path (which a careless client might have put a token in).
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: AccessTokenPolicy,
        open_paths: frozenset[str] = frozenset(),
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.policy = policy
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes
        self.missing = _challenge(401, NO_TOKEN, None)

    def _open(self, scope: Scope) -> bool:
        path = scope["path"]
        if path in self.open_paths:
            return True
        if path[:_HEALTH_PREFIX_LENGTH].lower() == HEALTH_PREFIX:  # is_health_path decides
            return is_health_path(path, scope.get("raw_path"))
        if self.open_prefixes and path.startswith(self.open_prefixes):
            return stays_in_place(path, scope.get("raw_path"))
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        try:
            token = bearer_token(scope["headers"], MAX_AUTHORIZATION_BYTES)
            caller = self.policy.admitted(token) or await self.policy.admit(token)
            self.policy.authorize(caller, method)
        except TokenMissing:
            refusal = self.missing
            reason = "no bearer token"
        except TokenRejected as rejection:
            refusal = _challenge(401, rejection.description, "invalid_token")
            reason = rejection.description
        except PermissionMissing as missing:
            refusal = _challenge(403, missing.description, "insufficient_scope", missing.permission)
            reason = missing.description
        except IssuerUnavailable as outage:
            refusal = problem_response(
                503,
                "The token issuer's signing keys cannot be read right now; retry after "
                "Retry-After seconds.",
                {"Retry-After": str(outage.retry_after)},
            )
            reason = "the signing key is unknown and the issuer cannot be reached"
        except Exception as error:  # noqa: BLE001 - a defect here must refuse, not crash (500)
            refusal = _challenge(401, MALFORMED, "invalid_token")
            reason = f"unexpected {type(error).__name__} (its message may quote the token)"
        else:
            scope.setdefault("state", {})[CALLER_STATE] = caller
            await self.app(scope, receive, send)
            return
        token_logger.warning("bearer token refused on %s: %s", method, reason)
        await refusal(scope, receive, send)


class ResponseHeadersMiddleware:
    """Adds fixed headers (APP-SERVICE-SITE-NAME, nosniff) to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp, site_name: str) -> None:
        self.app = app
        self.headers = [
            (SITE_NAME_HEADER.lower().encode("latin-1"), site_name.encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
