"""TodoItem endpoints (the source's TodoItemController) and the keyed health check."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from app.contract import (
    HEALTH_OK_TEXT,
    HEALTH_PATH,
    JSON_MEDIA_TYPE,
    MAX_BODY_BYTES,
    MAX_NAME_LENGTH,
    NON_BLANK_PATTERN,
    TODO_ITEM_PATH,
    TODO_PATH,
)
from app.idempotency import Attempt, IdempotentWrites, fingerprint, owner_of, request_key
from app.key_vault import PendingSetting
from app.problems import Problem
from app.store import ConcurrentUpdate, KeyWrite, TodoItem, TodoStore, new_item_id, todo_item

Endpoint = Callable[[Request], Awaitable[Response]]

_NON_BLANK = re.compile(NON_BLANK_PATTERN)


class CaseInsensitiveRoute(Route):
    """A route whose path matches in any case, as ASP.NET routes do (/api/todoitem works)."""

    def __init__(self, path: str, endpoint, **kwargs) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


_TOO_LARGE = f"The request body must be at most {MAX_BODY_BYTES} bytes."


async def _read_body(request: Request) -> bytes:
    """The request body, refusing (413) more than MAX_BODY_BYTES and (415) anything but JSON."""
    headers = request.headers
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Problem(413, _TOO_LARGE)
    body = b""
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "The client disconnected before sending the whole body.")
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_BODY_BYTES:
            raise Problem(413, _TOO_LARGE)
    if not body:
        raise Problem(400, "The request body is missing.")
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise Problem(415, f"The request body must be {JSON_MEDIA_TYPE}.")
    return body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN and Infinity are not JSON


def _decode_object(body: bytes) -> dict:
    try:
        data = _DECODER.decode(body.decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError: JSON bodies are UTF-8 (RFC 8259)
        raise Problem(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Problem(400, "The request body must be a JSON object.")
    return data


def _name(data: dict) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not _NON_BLANK.search(name):
        raise Problem(400, "The field 'name' must be a non-blank string.")
    if len(name) > MAX_NAME_LENGTH:
        raise Problem(400, f"The field 'name' must be at most {MAX_NAME_LENGTH} characters.")
    return name


def _is_completed(data: dict) -> bool:
    value = data.get("isCompleted", False)
    if type(value) is not bool:
        raise Problem(400, "The field 'isCompleted' must be true or false.")
    return value


def _body_id(data: dict) -> str | None:
    value = data.get("id")
    if value is not None and not isinstance(value, str):
        raise Problem(400, "The field 'id' must be a string.")
    return value


def _not_found() -> Problem:
    # Also another caller's item: its existence is not told (the store does not see it).
    return Problem(404, "No TodoItem has this id.")


def _item_path(item_id: str) -> str:
    return f"{TODO_PATH}/{item_id}"


def _json(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


class TodoItemsApi:
    """The TodoItem endpoints over one store; items carry their JSON, encoded once.

    Each request acts on its caller's items only (owner_of: the token's `oid`); another
    caller's id answers 404 as an unknown one does. POST, PUT and DELETE with an
    Idempotency-Key header go through `keys` (app/idempotency.py): the item write and its stored
    answer land together. Without the header nothing changes."""

    def __init__(self, store: TodoStore, keys: IdempotentWrites) -> None:
        self.store = store
        self.keys = keys

    async def list(self, request: Request) -> Response:
        items = await self.store.list(owner_of(request))
        return _json(b"[" + b",".join(item.json for item in items) + b"]")

    async def create(self, request: Request) -> Response:
        key = request_key(request)
        data = _decode_object(await _read_body(request))
        _body_id(data)  # validated, then ignored: the server assigns ids
        name, is_completed = _name(data), _is_completed(data)
        if key is None:
            item = todo_item(new_item_id(), name, is_completed)
            await self.store.add(owner_of(request), item)
            return _json(item.json, 201, {"Location": _item_path(item.id)})

        async def perform(attempt: Attempt) -> KeyWrite:
            item = todo_item(attempt.item_id, name, is_completed)
            answer = attempt.answer(201, item.json, _item_path(item.id))
            await self.store.add(key.owner, item, answer)
            return answer

        return await self.keys.run(key, fingerprint(request, TODO_PATH, data), None, perform)

    async def get(self, request: Request) -> Response:
        item = await self.store.get(owner_of(request), request.path_params["id"])
        if item is None:
            raise _not_found()
        return _json(item.json)

    async def replace(self, request: Request) -> Response:
        item_id = request.path_params["id"]
        key = request_key(request)
        data = _decode_object(await _read_body(request))
        if _body_id(data) != item_id:
            raise Problem(400, "The field 'id' must equal the id in the path.")
        item = todo_item(item_id, _name(data), _is_completed(data))
        if key is None:
            await self._replace(owner_of(request), item)
            return _json(item.json)

        async def perform(attempt: Attempt) -> KeyWrite:
            answer = attempt.answer(200, item.json)
            await self._replace(key.owner, item, answer)
            return answer

        path = _item_path(item_id)
        return await self.keys.run(key, fingerprint(request, path, data), item_id, perform)

    async def _replace(self, owner: str, item: TodoItem, key: KeyWrite | None = None) -> None:
        try:
            replaced = await self.store.replace(owner, item, key)
        except ConcurrentUpdate:
            raise Problem(
                409, "The item was changed by another request meanwhile; read it and try again."
            ) from None
        if replaced is None:
            raise _not_found()

    async def delete(self, request: Request) -> Response:
        item_id = request.path_params["id"]
        key = request_key(request)
        if key is None:
            if not await self.store.delete(owner_of(request), item_id):
                raise _not_found()
            return Response(status_code=204)

        async def perform(attempt: Attempt) -> KeyWrite:
            answer = attempt.answer(204)
            if not await self.store.delete(key.owner, item_id, answer):
                raise _not_found()
            return answer

        path = _item_path(item_id)
        return await self.keys.run(key, fingerprint(request, path), item_id, perform)


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    """One endpoint per path, so a 405 lists every allowed method in Allow."""
    handlers = {**handlers, "HEAD": handlers["GET"]}

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return dispatch


def _health(key: PendingSetting) -> Endpoint:
    async def health(request: Request) -> Response:
        if key.pending:
            raise Problem(503, "The health check key is not resolved from Key Vault yet.")
        given = request.path_params["key"].encode()
        if key.value is None or not hmac.compare_digest(given, key.value.encode()):
            raise Problem(403, "The health check key was rejected.")
        return PlainTextResponse(HEALTH_OK_TEXT)

    return health


def api_routes(
    store: TodoStore, health_check_key: PendingSetting, keys: IdempotentWrites
) -> list[Route]:
    api = TodoItemsApi(store, keys)
    items = {"GET": api.list, "POST": api.create}
    item = {"GET": api.get, "PUT": api.replace, "DELETE": api.delete}
    return [
        CaseInsensitiveRoute(TODO_PATH, _by_method(items), methods=list(items)),
        CaseInsensitiveRoute(TODO_ITEM_PATH, _by_method(item), methods=list(item)),
        CaseInsensitiveRoute(HEALTH_PATH, _health(health_check_key), methods=["GET"]),
    ]
