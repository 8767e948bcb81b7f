"""The app's OpenAPI document, read as a file (stacks never import app/)."""

import json
from dataclasses import dataclass
from pathlib import Path

from stacks.config import ConfigError

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "app" / "openapi.json"


def read_openapi(path: Path = OPENAPI_PATH) -> str:
    """The document's text, exactly as API Management will import it (openapi+json)."""
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: OpenAPI document not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON OpenAPI document: {error}") from None
    if not isinstance(document, dict) or "openapi" not in document:
        raise ConfigError(f"{path}: not an OpenAPI document (no 'openapi' field)")
    return text


MAX_BODY_EXTENSION = "x-max-body-bytes"


def max_body_bytes(openapi_json: str) -> int:
    """The request body limit the app enforces, as its document states it."""
    value = json.loads(openapi_json).get(MAX_BODY_EXTENSION)
    if not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{OPENAPI_PATH}: {MAX_BODY_EXTENSION}: missing or not a positive integer"
        )
    return value


# The OAuth 2.0 scheme whose scopes are the API's permissions (app roles for applications,
# delegated scopes for users: the same names, the `roles` or the `scp` claim).
ENTRA_SCHEME = "entraId"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class OperationPermission:
    """One operation (as API Management imports it: method and URL template) and the permission
    its `entraId` security requirement names."""

    method: str  # upper case, as context.Operation.Method
    url_template: str
    permission: str


def permissions(openapi_json: str) -> dict[str, str]:
    """{permission: description}: the scopes of the document's `entraId` OAuth 2.0 scheme."""
    scheme = json.loads(openapi_json).get("components", {}).get("securitySchemes", {})
    flows = scheme.get(ENTRA_SCHEME, {}).get("flows", {})
    found: dict[str, str] = {}
    for flow in flows.values():
        found.update(flow.get("scopes", {}))
    if not found:
        raise ConfigError(
            f"{OPENAPI_PATH}: components.securitySchemes.{ENTRA_SCHEME}: no OAuth 2.0 scopes"
        )
    return found


def operation_permissions(openapi_json: str) -> list[OperationPermission]:
    """Every operation with the one permission it needs; an operation naming none or several,
    or one the scheme does not define, stops the synth (the gateway would not know what to ask)."""
    document = json.loads(openapi_json)
    known = permissions(openapi_json)
    found = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            named = {
                scope
                for requirement in operation.get("security", document.get("security", []))
                for scope in requirement.get(ENTRA_SCHEME, ())
            }
            if len(named) != 1 or not named <= set(known):
                raise ConfigError(
                    f"{OPENAPI_PATH}: {method.upper()} {path}: needs exactly one {ENTRA_SCHEME}"
                    f" scope of {sorted(known)}, got {sorted(named)}"
                )
            found.append(OperationPermission(method.upper(), path, named.pop()))
    return found
