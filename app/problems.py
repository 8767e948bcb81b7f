"""RFC 9457 problem details: every error the app sends is application/problem+json."""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.contract import PROBLEM_MEDIA_TYPE
from app.store import StoreUnavailable


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


class Problem(HTTPException):
    """Raised by an endpoint to answer with a problem response."""


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc, Problem) else _generic_detail(exc.status_code)
    return problem_response(exc.status_code, detail, exc.headers)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    return problem_response(
        503,
        "The item store is unavailable right now; retry after Retry-After seconds.",
        {"Retry-After": str(exc.retry_after)},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server logs the traceback.
    return problem_response(500, "The server could not complete the request.")


def _generic_detail(status: int) -> str:
    if status == 404:
        return "No resource at this path."
    if status == 405:
        return "This method is not allowed on this path."
    return HTTPStatus(status).description
