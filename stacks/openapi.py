"""The app's OpenAPI document, read as a file (stacks never import app/)."""

import json
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
