"""Pure ASGI middleware: the client-certificate gate and the site-name response header."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.certificates import CertificateRejected, ClientCertificatePolicy
from app.contract import CERTIFICATE_REJECTED, HEALTH_PREFIX, SITE_NAME_HEADER
from app.problems import problem_response

logger = logging.getLogger("app.client_certificate")

_ENCODED_SEPARATORS = (b"%2f", b"%5c")


def is_health_path(path: str, raw_path: bytes | None) -> bool:
    """True for exactly /health and /health/... in any case, and nothing that could leave it.

    The router matches the decoded path, so the decision is made on the decoded path too; a path
    with dot segments (which a normalising proxy would resolve elsewhere) or with an encoded slash
    or backslash in the raw path is never exempt.
    """
    lowered = path.lower()
    if lowered != HEALTH_PREFIX and not lowered.startswith(HEALTH_PREFIX + "/"):
        return False
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
                scope["path"],
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
