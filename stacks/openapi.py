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
