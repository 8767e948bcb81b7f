"""Builds the ASGI app from settings: routes, middleware, error handlers, store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app.access_tokens import AccessTokenPolicy
from app.certificates import ClientCertificatePolicy
from app.contract import (
    JSON_MEDIA_TYPE,
    OPENAPI_PATH,
    SWAGGER_ASSETS_PATH,
    SWAGGER_INITIALIZER_PATH,
    SWAGGER_UI_PATH,
)
from app.idempotency import IdempotentWrites
from app.key_vault import (
    PendingSetting,
    SecretReader,
    read_with_managed_identity,
    resolve_pending,
)
from app.middleware import (
    BearerTokenMiddleware,
    ClientCertificateMiddleware,
    ResponseHeadersMiddleware,
)
from app.openapi import build_openapi
from app.problems import http_exception, server_error, store_unavailable
from app.routes import api_routes
from app.settings import (
    AUTH_MODE,
    CLIENT_CERT_VALIDATION,
    TABLE_STORE,
    Settings,
    check_health_check_key,
)
from app.store import InMemoryTodoStore, StoreUnavailable, TodoStore
from app.swagger_ui import swagger_ui_routes

logger = logging.getLogger("app")


def _openapi_route() -> Route:
    document = json.dumps(build_openapi(), separators=(",", ":")).encode()

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON_MEDIA_TYPE)

    return Route(OPENAPI_PATH, openapi, methods=["GET"])


def _middleware(settings: Settings, clock: Callable[[], float]) -> list[Middleware]:
    """The client-certificate gate (API Management's identity) first, then the bearer token."""
    return [*_certificate_gate(settings), *_token_gate(settings, clock)]


def _certificate_gate(settings: Settings) -> list[Middleware]:
    if settings.client_certificate is None:
        logger.warning(
            "!!! CLIENT CERTIFICATE VALIDATION IS OFF (%s=off, development): "
            "any caller is admitted. Never run like this in production. !!!",
            CLIENT_CERT_VALIDATION,
        )
        return []
    policy = ClientCertificatePolicy(settings.client_certificate)
    return [
        Middleware(
            ClientCertificateMiddleware, policy=policy, header_name=settings.client_cert_header
        )
    ]


def _token_gate(settings: Settings, clock: Callable[[], float]) -> list[Middleware]:
    auth = settings.auth
    if not auth.enabled:  # the default in this slice: API Management's certificate only
        return []
    logger.info(
        "bearer tokens required (%s=%s): issuer %s, audiences %s",
        AUTH_MODE,
        auth.mode,
        auth.issuer,
        ", ".join(auth.audiences),
    )
    open_paths, open_prefixes = {OPENAPI_PATH}, ()
    if settings.development:  # Swagger UI is served only then
        open_paths |= {SWAGGER_UI_PATH, SWAGGER_INITIALIZER_PATH}
        open_prefixes = (SWAGGER_ASSETS_PATH + "/",)
    return [
        Middleware(
            BearerTokenMiddleware,
            policy=AccessTokenPolicy(auth, clock),
            open_paths=frozenset(open_paths),
            open_prefixes=open_prefixes,
        )
    ]


def open_store(settings: Settings) -> TodoStore:
    """The store the settings name; the table client is imported only when it is used."""
    if settings.store.kind == TABLE_STORE:
        from app.table_store import table_store

        if settings.telemetry.enabled:  # store calls are traced only inside traced requests
            from app.telemetry import in_traced_request

            return table_store(settings.store, traced=in_traced_request)
        return table_store(settings.store)
    return InMemoryTodoStore()


def create_app(
    settings: Settings,
    store: TodoStore | None = None,
    read_secret: SecretReader = read_with_managed_identity,
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """`read_secret` reads a Key Vault secret App Service left unresolved (tests pass a fake);
    `clock` (epoch seconds) decides when idempotency keys and access tokens expire, and when the
    issuer's keys may be fetched again (tests pass a fake)."""
    store = store if store is not None else open_store(settings)
    health_key = PendingSetting(
        settings.health_check_key, settings.health_check_key_reference, check_health_check_key
    )
    keys = IdempotentWrites(store, settings.idempotency_key_expiry_seconds, clock)
    routes = [*api_routes(store, health_key, keys), _openapi_route()]
    if settings.development:
        routes += swagger_ui_routes()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        resolving = (
            asyncio.create_task(resolve_pending(health_key, read_secret))
            if health_key.pending
            else None
        )
        yield
        if resolving is not None:
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resolving
        await store.close()

    starlette = Starlette(
        routes=routes,
        middleware=_middleware(settings, clock),
        exception_handlers={
            HTTPException: http_exception,
            StoreUnavailable: store_unavailable,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    starlette.router.redirect_slashes = False
    # Outermost, so that 500s made by Starlette's error middleware carry the headers too.
    app = ResponseHeadersMiddleware(starlette, settings.site_name)
    if settings.telemetry.enabled:  # imported only then: telemetry off costs nothing
        from app.telemetry import RequestTelemetryMiddleware, request_sampler

        app = RequestTelemetryMiddleware(app, request_sampler(settings.telemetry))
    return app
