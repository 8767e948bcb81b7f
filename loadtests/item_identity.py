"""The client-side identity of a logical create, carried inside the item's name.

The server assigns item ids, so an id cannot tell two store items made by one create (a gateway
re-sent the POST) from an item no client made. The load-test user therefore gives every logical
create a token of its own and writes it at the start of the item's name, in the create and in
every update of that item:

    lt:0f3c9a...e1 load test item

A user that retried a create itself would send the same token again (the users never do: each
POST is its own logical create). Reconciliation (loadtests.reconciliation) reads the token back
from the items in the store. Imported by the locustfiles (through locust_support) and by the
reconciliation: the format is defined here only.
"""

from __future__ import annotations

import re
import uuid

TOKEN_PREFIX = "lt:"
_TOKEN = re.compile(rf"^{re.escape(TOKEN_PREFIX)}([0-9a-f]{{32}})(?: |$)")


def new_token() -> str:
    """A token for one logical create: 32 lowercase hex characters, 122 random bits."""
    return uuid.uuid4().hex


def item_name(token: str, text: str) -> str:
    """The name to send: the token, a space, then the text."""
    return f"{TOKEN_PREFIX}{token} {text}"


def token_of(name: object) -> str | None:
    """The token at the start of a name, or None when there is none."""
    if not isinstance(name, str):
        return None
    found = _TOKEN.match(name)
    return found.group(1) if found else None


def content(item: dict) -> dict:
    """The fields reconciliation compares: what a create or update sent or was answered."""
    return {"name": item.get("name"), "isCompleted": item.get("isCompleted")}
