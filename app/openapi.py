"""The OpenAPI 3 document API Management imports; `python -m app.openapi` writes app/openapi.json.

The document is built here from the contract's constants and served by the app; a test keeps the
checked-in file identical to what the app serves.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from app.contract import (
    AUTHORIZATION_HEADER,
    BEARER_REALM,
    DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS,
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENT_REPLAYED_HEADER,
    JSON_MEDIA_TYPE,
    MAX_BODY_BYTES,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_NAME_LENGTH,
    NON_BLANK_PATTERN,
    PROBLEM_MEDIA_TYPE,
    READ_PERMISSION,
    SITE_NAME_HEADER,
    SUBSCRIPTION_KEY_HEADER,
    TODO_ITEM_PATH,
    TODO_PATH,
    WRITE_PERMISSION,
)

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
ITEM_ID_PATTERN = "^[0-9a-f]{32}$"

_SCHEMA_REF = "#/components/schemas/"
_RESPONSE_REF = "#/components/responses/"
_PARAMETER_REF = "#/components/parameters/"
_HEADER_REF = "#/components/headers/"
# The document is the same for every tenant: `organizations` routes a user's sign-in to their home
# tenant; an application asks its own tenant's token endpoint (the scheme's description says so).
_ENTRA_ENDPOINTS = "https://login.microsoftonline.com/organizations/oauth2/v2.0/"


def _ref(kind: str, name: str) -> dict:
    return {"$ref": kind + name}


def _site_header() -> dict:
    return {SITE_NAME_HEADER: _ref(_HEADER_REF, "SiteName")}


def _replayed_header() -> dict:
    return {IDEMPOTENT_REPLAYED_HEADER: _ref(_HEADER_REF, "IdempotentReplayed")}


def _json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    return {
        "description": description,
        "headers": {**_site_header(), **(headers or {})},
        "content": {JSON_MEDIA_TYPE: {"schema": schema}},
    }


def _problem(description: str, headers: dict | None = None) -> dict:
    return {
        "description": description,
        "headers": {**_site_header(), **(headers or {})},
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref(_SCHEMA_REF, "ProblemDetails")}},
    }


def _schemas() -> dict:
    item_id = {
        "type": "string",
        "pattern": ITEM_ID_PATTERN,
        "description": "32 lowercase hex digits",
    }
    name = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_LENGTH,
        "pattern": NON_BLANK_PATTERN,
        "description": f"Not blank; at most {MAX_NAME_LENGTH} characters.",
    }
    completed = {"type": "boolean", "default": False}
    return {
        "TodoItem": {
            "type": "object",
            "required": ["id", "name", "isCompleted"],
            "properties": {
                "id": item_id,
                "name": {"type": "string"},
                "isCompleted": {"type": "boolean"},
            },
        },
        "NewTodoItem": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "id": {
                    "type": "string",
                    "nullable": True,
                    "description": "Ignored: the server assigns the id.",
                },
                "name": name,
                "isCompleted": completed,
            },
        },
        "TodoItemUpdate": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {**item_id, "description": "Must equal the id in the path."},
                "name": name,
                "isCompleted": completed,
            },
        },
        "ProblemDetails": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
            },
        },
    }


def _responses() -> dict:
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before retrying (a request in progress).",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    challenge = {"WWW-Authenticate": _ref(_HEADER_REF, "WWWAuthenticate")}
    return {
        "BadRequest": _problem(
            "The body is missing, not a JSON object, has a blank or too long name, a field of the "
            "wrong type, or (PUT) an id that differs from the path; or the "
            f"{IDEMPOTENCY_KEY_HEADER} header is malformed or repeated."
        ),
        "Conflict": _problem(
            f"A request with the same {IDEMPOTENCY_KEY_HEADER} is still in progress (retry after "
            "Retry-After seconds), or (PUT) the item was changed by another request meanwhile.",
            retry_after,
        ),
        "KeyReused": _problem(
            f"The {IDEMPOTENCY_KEY_HEADER} was already used for a different request (method, "
            "path or body)."
        ),
        "Unauthorized": _problem(
            f"No bearer token in {AUTHORIZATION_HEADER}, or one that is not valid (signature, "
            "issuer, audience, tenant, client application, expiry, size); with bearer-token "
            "validation on.",
            challenge,
        ),
        "Forbidden": _problem(
            "The client certificate was rejected; or the token does not grant the operation's "
            f"permission ({READ_PERMISSION} to read, {WRITE_PERMISSION} to write), with "
            'WWW-Authenticate error="insufficient_scope".',
            challenge,
        ),
        "ServiceUnavailable": _problem(
            "The item store, or the token issuer's signing keys, cannot be reached right now; "
            "retry after Retry-After seconds.",
            {"Retry-After": _ref(_HEADER_REF, "RetryAfter")},
        ),
        "NotFound": _problem("No TodoItem has this id."),
        "PayloadTooLarge": _problem(f"The request body is larger than {MAX_BODY_BYTES} bytes."),
        "UnsupportedMediaType": _problem(f"The request body is not {JSON_MEDIA_TYPE}."),
        "ServerError": _problem("The server could not complete the request."),
    }


def _errors(*names: str) -> dict:
    codes = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "PayloadTooLarge": "413",
        "UnsupportedMediaType": "415",
        "KeyReused": "422",
        "ServerError": "500",
        "ServiceUnavailable": "503",
    }
    every = ("Unauthorized", "Forbidden", "ServerError", "ServiceUnavailable")
    return {codes[name]: _ref(_RESPONSE_REF, name) for name in (*names, *every)}


def _body(schema_name: str) -> dict:
    return {
        "required": True,
        "description": f"At most {MAX_BODY_BYTES} bytes of {JSON_MEDIA_TYPE}.",
        "content": {JSON_MEDIA_TYPE: {"schema": _ref(_SCHEMA_REF, schema_name)}},
    }


def _operation(
    operation_id: str, summary: str, responses: dict, permission: str, **extra
) -> dict:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["TodoItem"],
        "security": _security(permission),
        **extra,
        "responses": responses,
    }


def _security(permission: str) -> list[dict]:
    """The subscription key (API Management's) and an Entra ID token granting `permission`:
    obtained through the OAuth 2.0 scheme, or pasted as a bearer token."""
    return [
        {"apiKeyHeader": [], "entraId": [permission]},
        {"apiKeyHeader": [], "bearerToken": []},
    ]


def _security_schemes() -> dict:
    permissions = {
        READ_PERMISSION: "Read TodoItems (GET).",
        WRITE_PERMISSION: "Create, replace and delete TodoItems (POST, PUT, DELETE).",
    }
    return {
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": SUBSCRIPTION_KEY_HEADER},
        "entraId": {
            "type": "oauth2",
            "description": (
                "Microsoft Entra ID access tokens for this API. Users sign in and consent to the "
                f"delegated scopes {READ_PERMISSION} / {WRITE_PERMISSION} (the token's scp "
                "claim); applications are assigned the app roles of the same names (roles "
                "claim) and use client credentials at their own tenant's endpoint, "
                "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token, with the scope "
                "<application ID URI>/.default."
            ),
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": _ENTRA_ENDPOINTS + "authorize",
                    "tokenUrl": _ENTRA_ENDPOINTS + "token",
                    "scopes": permissions,
                },
                "clientCredentials": {
                    "tokenUrl": _ENTRA_ENDPOINTS + "token",
                    "scopes": permissions,
                },
            },
        },
        "bearerToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An Entra ID access token, sent as is. It must grant the operation's permission "
                "(its entraId requirement) as an app role or a delegated scope."
            ),
        },
    }


def _idempotency_key_parameter() -> dict:
    expiry_hours = DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS // 3600
    return {
        "name": IDEMPOTENCY_KEY_HEADER,
        "in": "header",
        "required": False,
        "description": (
            "Makes the write safe to retry (IETF draft-ietf-httpapi-idempotency-key-header). "
            f'1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters other than " and \\, '
            "bare or in double quotes (both name the same key); a fresh UUID per write is best. "
            "The same key with the same request (method, path, body) replays the first answer "
            f"with {IDEMPOTENT_REPLAYED_HEADER}: true; with another request it is 422; while the "
            f"first is in progress, 409. Keys are remembered for {expiry_hours} h by default. "
            "Refused requests (4xx, 503) store nothing: retry them with the same key."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH + 2,
            "pattern": IDEMPOTENCY_KEY_PATTERN,
        },
    }


def _keyed(responses: dict) -> dict:
    """A keyed write's answers: the success may be a replay; 409 and 422 come with the key."""
    keyed = {**responses, **_errors("BadRequest", "Conflict", "KeyReused")}
    for code, response in keyed.items():
        if code.startswith("2"):
            response["headers"] = {**response["headers"], **_replayed_header()}
    return keyed


def _paths() -> dict:
    item = _ref(_SCHEMA_REF, "TodoItem")
    key_parameter = [_ref(_PARAMETER_REF, "IdempotencyKey")]
    location = {
        "Location": {"description": "Path of the created item.", "schema": {"type": "string"}}
    }
    id_parameter = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ITEM_ID_PATTERN},
    }
    return {
        TODO_PATH: {
            "get": _operation(
                "GetTodoItems",
                "List all items.",
                {
                    "200": _json_response("All items.", {"type": "array", "items": item}),
                    **_errors(),
                },
                READ_PERMISSION,
            ),
            "post": _operation(
                "PostTodoItem",
                "Create an item; the server assigns its id.",
                _keyed(
                    {
                        "201": _json_response("The created item.", item, location),
                        **_errors("BadRequest", "PayloadTooLarge", "UnsupportedMediaType"),
                    }
                ),
                WRITE_PERMISSION,
                parameters=key_parameter,
                requestBody=_body("NewTodoItem"),
            ),
        },
        TODO_ITEM_PATH: {
            "parameters": [id_parameter],
            "get": _operation(
                "GetTodoItem",
                "Get one item.",
                {"200": _json_response("The item.", item), **_errors("NotFound")},
                READ_PERMISSION,
            ),
            "put": _operation(
                "PutTodoItem",
                "Replace an item; the body's id must equal the path's.",
                _keyed(
                    {
                        "200": _json_response("The updated item.", item),
                        **_errors(
                            "BadRequest", "NotFound", "PayloadTooLarge", "UnsupportedMediaType"
                        ),
                    }
                ),
                WRITE_PERMISSION,
                parameters=key_parameter,
                requestBody=_body("TodoItemUpdate"),
            ),
            "delete": _operation(
                "DeleteTodoItem",
                "Delete an item.",
                _keyed(
                    {
                        "204": {"description": "Deleted.", "headers": _site_header()},
                        **_errors("NotFound"),
                    }
                ),
                WRITE_PERMISSION,
                parameters=key_parameter,
            ),
        },
    }


MAX_BODY_EXTENSION = "x-max-body-bytes"


def build_openapi() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "TodoItem API",
            "version": "v1",
            "description": (
                "TodoItem API behind Azure API Management. Every response carries "
                f"{SITE_NAME_HEADER}, the App Service site (region) that answered. Callers "
                f"present a Microsoft Entra ID access token ({AUTHORIZATION_HEADER}: Bearer) "
                f"granting {READ_PERMISSION} to read and {WRITE_PERMISSION} to write, as an app "
                "role or a delegated scope."
            ),
        },
        "security": [{"apiKeyHeader": []}],
        # The body limit as a number, for API Management's policy (stacks/ read this file).
        MAX_BODY_EXTENSION: MAX_BODY_BYTES,
        "paths": _paths(),
        "components": {
            "securitySchemes": _security_schemes(),
            "headers": {
                "SiteName": {
                    "description": "The App Service site (region) that answered.",
                    "schema": {"type": "string"},
                },
                "WWWAuthenticate": {
                    "description": (
                        f'RFC 6750 challenge: Bearer realm="{BEARER_REALM}", with error '
                        '"invalid_token" (401) or "insufficient_scope" and the scope needed '
                        "(403), and an error_description; no error when no token was sent."
                    ),
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "IdempotentReplayed": {
                    "description": (
                        f"true: this is the stored answer to an earlier request with the same "
                        f"{IDEMPOTENCY_KEY_HEADER}, replayed; absent on a first answer."
                    ),
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
            "parameters": {"IdempotencyKey": _idempotency_key_parameter()},
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }


def render_openapi() -> str:
    return json.dumps(build_openapi(), indent=2) + "\n"


def write_openapi(path: Path = OPENAPI_FILE) -> None:
    """Write the document atomically (temp file, then rename)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as file:
        file.write(render_openapi())
    os.replace(file.name, path)


if __name__ == "__main__":
    write_openapi(Path(sys.argv[1]) if len(sys.argv) > 1 else OPENAPI_FILE)
