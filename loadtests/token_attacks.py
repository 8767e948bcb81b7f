"""The bearer-token attacks the gateway (and behind it the app) must refuse, defined once for the
security locustfile and the tests: each is a request (method, Authorization header) and the
status it must get, 401 or 403, never anything else.

Tokens are made with the local issuer's own key where the attack is a well-signed token with a
bad claim (expired, wrong audience, ...), with another key for a bad signature, and by hand where
PyJWT refuses to make them (`alg: none`, HS256 with the issuer's public key as the secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.contract import MAX_AUTHORIZATION_BYTES, READ_PERMISSION
from loadtests.token_issuer import SIGNING_ALGORITHM, Minter

OTHER_TENANT_ID = "2c9e7b14-6a3f-4d58-b0e1-8f7a6c5d4e3b"
OTHER_AUDIENCE = "api://another-api"
ALLOWED_SKEW_SECONDS = 60  # the app's CLOCK_SKEW_SECONDS: the attacks lie well beyond it


@dataclass(frozen=True)
class Attack:
    name: str
    method: str  # GET (a list) or POST (a create)
    status: int  # what it must get: 401 or 403
    authorization: Callable[[Minter], str | None]  # the header's value; None: no header


def _segment(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(minter: Minter, **changes) -> dict:
    from loadtests.token_issuer import claims

    return claims(minter.config, time.time(), str(uuid.uuid4()), **changes)


def _signed(minter: Minter, **changes) -> str:
    return f"Bearer {minter.token(str(uuid.uuid4()), **changes)}"


def _alg_none(minter: Minter) -> str:
    header = _segment({"alg": "none", "typ": "JWT", "kid": minter.config.kid})
    return f"Bearer {header}.{_segment(_claims(minter))}."


def _hs256_with_public_key(minter: Minter) -> str:
    """The classic key confusion: HMAC-SHA256 keyed with the issuer's public key (PEM)."""
    public_pem = Path(minter.config.public_key_file).read_bytes()
    header = _segment({"alg": "HS256", "typ": "JWT", "kid": minter.config.kid})
    signed = f"{header}.{_segment(_claims(minter))}"
    signature = hmac.new(public_pem, signed.encode(), hashlib.sha256).digest()
    return f"Bearer {signed}.{_segment(signature)}"


def _signed_by_another_key(minter: Minter) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(minter), other, SIGNING_ALGORITHM, {"kid": minter.config.kid})
    return f"Bearer {token}"


def _oversized(minter: Minter) -> str:
    """A well-signed token over the size limit (a claim padded out)."""
    return _signed(minter, pad="x" * MAX_AUTHORIZATION_BYTES)


def _now() -> int:
    return int(time.time())


ATTACKS = (
    Attack("no token", "GET", 401, lambda m: None),
    Attack("malformed token", "GET", 401, lambda m: "Bearer not-a.jwt"),
    Attack(
        "expired token", "GET", 401,
        lambda m: _signed(m, exp=_now() - 10 * ALLOWED_SKEW_SECONDS,
                          nbf=_now() - 70 * ALLOWED_SKEW_SECONDS),
    ),
    Attack(
        "token not yet valid", "GET", 401,
        lambda m: _signed(m, nbf=_now() + 60 * ALLOWED_SKEW_SECONDS,
                          exp=_now() + 120 * ALLOWED_SKEW_SECONDS),
    ),
    Attack("wrong audience", "GET", 401, lambda m: _signed(m, aud=OTHER_AUDIENCE)),
    Attack(
        "wrong issuer", "GET", 401,
        lambda m: _signed(m, iss=f"https://login.microsoftonline.com/{m.config.tenant_id}/v2.0"),
    ),
    Attack("wrong tenant", "GET", 401, lambda m: _signed(m, tid=OTHER_TENANT_ID)),
    Attack("bad signature", "GET", 401, _signed_by_another_key),
    Attack("alg none", "GET", 401, _alg_none),
    Attack("HS256 signed with the public key", "GET", 401, _hs256_with_public_key),
    Attack(
        "unknown kid", "GET", 401,
        lambda m: f"Bearer {m.token(str(uuid.uuid4()), kid=f'unknown-{uuid.uuid4().hex}')}",
    ),
    Attack(
        "another client application", "GET", 401,
        lambda m: _signed(m, azp="a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"),
    ),
    Attack("oversized token", "GET", 401, _oversized),
    Attack("no role or scope", "GET", 403, lambda m: _signed(m, roles=None)),
    Attack("read-only caller writing", "POST", 403, lambda m: _signed(m, roles=[READ_PERMISSION])),
)
BY_NAME = {attack.name: attack for attack in ATTACKS}
