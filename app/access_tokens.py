"""Who is calling: Entra ID access tokens (OAuth 2.0 bearer tokens, RFC 6750), checked again in
the app (API Management checks them first, in a later slice; defence in depth).

A token is admitted when it is a JWS signed with RS256 (the only algorithm accepted: never
`none`, never HS256 with the public key as the secret) by a key the issuer publishes
(app/signing_keys.py), with the configured `iss`, one of the configured audiences in `aud`,
`exp` and `nbf` holding within CLOCK_SKEW_SECONDS, the configured tenant in `tid`, an allowed
client application in `azp` (v2.0) or `appid` (v1.0) when clients are restricted, and an `oid`
(the caller). PyJWT checks the signature, `iss`, `aud` and that the required claims are there;
this module checks the times against its own clock (the one the cache uses) and the rest.

Then the method's permission: reads (GET, HEAD) need READ_PERMISSION, anything else
WRITE_PERMISSION, as an app role (`roles`) or a delegated scope (`scp`, space-separated).

Verified tokens are remembered by their SHA-256 until `exp` (TOKEN_CACHE_SIZE entries, least
recently used evicted first), so a repeated token costs one hash and one lookup. Refused tokens
are not remembered. Nothing of a token is ever logged or answered: every refusal carries one of
the fixed descriptions below.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from starlette.requests import Request

from app.contract import READ_PERMISSION, WRITE_PERMISSION
from app.settings import GUID_PATTERN, AuthSettings
from app.signing_keys import SIGNING_ALGORITHM, Clock, SigningKeys, UnknownSigningKey

ALGORITHMS = (SIGNING_ALGORITHM,)
CLOCK_SKEW_SECONDS = 60
TOKEN_CACHE_SIZE = 4096
READ_METHODS = frozenset({"GET", "HEAD"})
_PERMISSIONS = dict.fromkeys(READ_METHODS, READ_PERMISSION)  # any other method: WRITE_PERMISSION
CALLER_STATE = "caller"  # request.state.caller: the admitted Caller (app.access_tokens.caller_of)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf")  # and `oid`, a GUID (_caller)

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_BEARER = b"bearer"
_BEARER_SP = _BEARER + b" "
_SCHEME_LENGTH = len(_BEARER_SP)

# What a refused caller is told (problem detail and WWW-Authenticate error_description): fixed
# texts, never anything taken from the token. RFC 6750 allows no '"' or '\' in them.
NO_TOKEN = "This API needs an OAuth 2.0 bearer token in the Authorization header."
MALFORMED = "The access token is not a well-formed JWT."
REPEATED = "The Authorization header appears more than once."
BAD_ALGORITHM = "The access token is not signed with RS256."
NO_KEY_ID = "The access token names no signing key (kid)."
UNKNOWN_KEY = "The access token is signed with a key the issuer does not publish."
BAD_SIGNATURE = "The access token's signature is not valid."
WRONG_ISSUER = "The access token is from another issuer."
WRONG_AUDIENCE = "The access token is for another audience."
EXPIRED = "The access token has expired."
NOT_YET_VALID = "The access token is not valid yet."
BAD_TIMES = "The access token's exp and nbf must be numbers."
WRONG_TENANT = "The access token is from another tenant."
CLIENT_NOT_ALLOWED = "The access token was issued to a client application this API does not accept."
# The caller's object id owns its items (a table partition): Entra's are GUIDs, nothing else is.
BAD_OBJECT_ID = "The access token's oid claim must be a GUID."


def missing_claim(claim: str) -> str:
    return f"The access token has no {claim} claim."


def too_large(limit: int) -> str:
    return f"The Authorization header is larger than {limit} bytes."


def lacks(permission: str) -> str:
    return f"The access token does not grant {permission} (app role or scope)."


class TokenMissing(Exception):
    """No bearer token: no Authorization header, or another scheme (RFC 6750 3.1: no error code)."""


class TokenRejected(Exception):
    """The token is not admitted; `description` is one of the fixed texts above."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class PermissionMissing(Exception):
    """The token is valid but grants neither the role nor the scope `permission`."""

    def __init__(self, permission: str) -> None:
        super().__init__(lacks(permission))
        self.permission = permission
        self.description = lacks(permission)


@dataclass(frozen=True, slots=True)
class Caller:
    """The admitted caller: `object_id` is the token's `oid` (the user or client application)."""

    object_id: str
    tenant_id: str | None
    client_id: str | None
    roles: frozenset[str]
    scopes: frozenset[str]
    expires_at: float  # the token's exp, epoch seconds
    grants: frozenset[str]  # roles | scopes: where a permission is looked up, per request


def caller_of(request: Request) -> Caller | None:
    """The request's admitted caller; None with AUTH_MODE=none."""
    return getattr(request.state, CALLER_STATE, None)


def bearer_token(headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """What follows `Bearer ` (the scheme in any case) in the one Authorization header of an
    ASGI header list. Its syntax is checked only when it is not a token admitted before
    (AccessTokenPolicy). This runs on every request: one pass, no split."""
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        raise TokenMissing
    authorization = values[0]
    if len(values) > 1:
        raise TokenRejected(REPEATED)
    if len(authorization) > limit:  # before anything else looks at it
        raise TokenRejected(too_large(limit))
    if authorization[:_SCHEME_LENGTH].lower() == _BEARER_SP:
        return authorization[_SCHEME_LENGTH:].strip(b" ")
    if authorization.lower() == _BEARER:
        return b""  # the scheme without a token: refused as malformed
    raise TokenMissing  # another scheme (RFC 6750 3.1: as if there were no token)


def _alive(expires_at: float, now: float) -> bool:
    """The expiry rule, with the skew; AccessTokenPolicy.admitted applies it inline."""
    return expires_at > now - CLOCK_SKEW_SECONDS


def _number(claims: dict, name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejected(BAD_TIMES)
    return float(value)


def _lower_string(value) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _strings(value) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class AccessTokenPolicy:
    """Admits or refuses bearer tokens under `settings`; remembers admitted ones until `exp`.

    `clock` is epoch seconds (tests pass a fake); the issuer's signing keys go by it too.
    """

    def __init__(
        self, settings: AuthSettings, clock: Clock = time.time, cache_size: int = TOKEN_CACHE_SIZE
    ) -> None:
        self.keys, self.clock, self.cache_size = SigningKeys(settings, clock), clock, cache_size
        self.issuer, self.audiences = settings.issuer, list(settings.audiences)
        self.tenant_id, self.allowed_clients = settings.tenant_id, settings.allowed_client_ids
        required = [*REQUIRED_CLAIMS, *(["tid"] if settings.tenant_id else [])]
        self._options = {
            "require": required,
            # Times are checked below against self.clock, the clock the cache goes by.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        self._admitted: OrderedDict[bytes, Caller] = OrderedDict()

    async def caller(self, token: bytes) -> Caller:
        """The caller the token stands for, or TokenRejected (IssuerUnavailable when the key is
        unknown and the issuer cannot be asked)."""
        return self.admitted(token) or await self.admit(token)

    def admitted(self, token: bytes) -> Caller | None:
        """The caller of a token admitted before and not expired since: one SHA-256, one lookup
        (the hot path: no coroutine, no further call of ours)."""
        digest = hashlib.sha256(token).digest()
        caller = self._admitted.get(digest)
        if caller is None:
            return None
        if caller.expires_at <= self.clock() - CLOCK_SKEW_SECONDS:  # not _alive (see there)
            del self._admitted[digest]
            return None
        self._admitted.move_to_end(digest)
        return caller

    async def admit(self, token: bytes) -> Caller:
        """Verify the token and remember its caller."""
        caller = await self._verify(token, self.clock())
        self._admitted[hashlib.sha256(token).digest()] = caller
        if len(self._admitted) > self.cache_size:
            self._admitted.popitem(last=False)  # least recently used
        return caller

    async def _verify(self, token: bytes, now: float) -> Caller:
        if not _B64TOKEN.fullmatch(token):
            raise TokenRejected(MALFORMED)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected(MALFORMED) from None
        if header.get("alg") not in ALGORITHMS:  # before any key is looked up or fetched
            raise TokenRejected(BAD_ALGORITHM)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected(NO_KEY_ID)
        try:
            key = await self.keys.key(kid)
        except UnknownSigningKey:
            raise TokenRejected(UNKNOWN_KEY) from None
        claims = self._decode(token, key)
        if not _alive(_number(claims, "exp"), now):
            raise TokenRejected(EXPIRED)
        if _number(claims, "nbf") > now + CLOCK_SKEW_SECONDS:
            raise TokenRejected(NOT_YET_VALID)
        return self._caller(claims)

    def _decode(self, token: bytes, key) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audiences,
                issuer=self.issuer,
                options=self._options,
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(BAD_SIGNATURE) from None
        except jwt.MissingRequiredClaimError as error:  # error.claim: one of ours, by name
            raise TokenRejected(missing_claim(error.claim)) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected(WRONG_ISSUER) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(WRONG_AUDIENCE) from None
        except jwt.PyJWTError:
            raise TokenRejected(MALFORMED) from None

    def _caller(self, claims: dict) -> Caller:
        tenant = _lower_string(claims.get("tid"))
        if self.tenant_id is not None and tenant != self.tenant_id:
            raise TokenRejected(WRONG_TENANT)
        client = _lower_string(claims.get("azp") or claims.get("appid"))
        if self.allowed_clients and client not in self.allowed_clients:
            raise TokenRejected(CLIENT_NOT_ALLOWED)
        object_id = claims.get("oid")
        if not isinstance(object_id, str) or not object_id:
            raise TokenRejected(missing_claim("oid"))
        if not GUID_PATTERN.fullmatch(object_id):
            raise TokenRejected(BAD_OBJECT_ID)
        roles, scopes = _strings(claims.get("roles")), _strings(claims.get("scp"))
        return Caller(
            object_id=object_id.lower(),
            tenant_id=tenant,
            client_id=client,
            roles=roles,
            scopes=scopes,
            expires_at=float(claims["exp"]),
            grants=roles | scopes,
        )

    def authorize(self, caller: Caller, method: str) -> None:
        permission = _PERMISSIONS.get(method, WRITE_PERMISSION)
        if permission not in caller.grants:
            raise PermissionMissing(permission)
