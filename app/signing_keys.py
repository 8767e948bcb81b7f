"""The token issuer's signing keys: OpenID metadata -> `jwks_uri` -> JWKS, cached by `kid`.

`SigningKeys.key(kid)` answers from memory. An unknown `kid` (a key the issuer has just rotated
in), or keys older than MAX_KEY_AGE_SECONDS, make it fetch the metadata and the JWKS again:

- at most one fetch per REFRESH_INTERVAL_SECONDS (per worker process), however many unknown
  `kid`s arrive: a flood of made-up `kid`s costs the issuer one fetch a minute, not one a request;
- never more than one in flight: requests that miss while a fetch runs wait for that fetch;
- bounded: FETCH_TIMEOUT_SECONDS for metadata and JWKS together, at most MAX_DOCUMENT_BYTES
  each (read as they arrive, uncompressed), no redirects; on the event loop (aiohttp), never
  blocking it.

The metadata must name the configured issuer (OpenID Connect Discovery 1.0, 4.3); only RSA keys
for signatures of at least MIN_KEY_BITS are kept. A refresh replaces the key set (a key the issuer
dropped is dropped); a failed one keeps the keys there were and is logged. A `kid` still unknown
after a successful fetch is `UnknownSigningKey`; after a failed one `IssuerUnavailable`, with the
seconds until the next fetch may run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import InvalidKeyError
from jwt.algorithms import RSAAlgorithm

from app.settings import AuthSettings, check_web_url

if TYPE_CHECKING:
    import aiohttp

REFRESH_INTERVAL_SECONDS = 60.0
MAX_KEY_AGE_SECONDS = 24 * 60 * 60.0  # Entra rolls its keys over weeks; a day bounds a stale set
FETCH_TIMEOUT_SECONDS = 5.0  # SigningKeys' default timeout
MAX_DOCUMENT_BYTES = 256 * 1024  # Entra's JWKS is ~10 KB
MIN_KEY_BITS = 2048
SIGNING_ALGORITHM = "RS256"

logger = logging.getLogger("app.signing_keys")

Clock = Callable[[], float]  # epoch seconds


class UnknownSigningKey(Exception):
    """The issuer publishes no key with this `kid` (checked just now, or within the interval)."""


class IssuerUnavailable(Exception):
    """The key is unknown and the issuer could not be asked: retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the issuer's keys cannot be read; retry after {retry_after} s")
        self.retry_after = retry_after


class FetchFailed(Exception):
    """The metadata or the JWKS could not be used; the message says why (it is logged)."""


class SigningKeys:
    """The RSA signing keys of the issuer `auth` names, by `kid`; `clock` is epoch seconds (tests
    pass a fake)."""

    def __init__(
        self, auth: AuthSettings, clock: Clock = time.time, timeout: float = FETCH_TIMEOUT_SECONDS
    ) -> None:
        self.issuer, self.openid_config_url = auth.issuer, auth.openid_config_url
        self.clock, self.timeout = clock, timeout
        self._keys: dict[str, RSAPublicKey] = {}
        self._loaded_at: float | None = None
        self._last_fetch: float | None = None
        self._failed = False
        self._fetching: asyncio.Future | None = None

    async def key(self, kid: str) -> RSAPublicKey:
        key = self._keys.get(kid)
        if key is None or self._stale():
            await self._refresh()
            key = self._keys.get(kid)  # a stale key stays usable while the issuer is away
        if key is not None:
            return key
        if self._failed:
            raise IssuerUnavailable(self._retry_after())
        raise UnknownSigningKey(kid)

    def _stale(self) -> bool:
        return self._loaded_at is not None and self.clock() - self._loaded_at > MAX_KEY_AGE_SECONDS

    def _may_fetch(self) -> bool:
        if self._last_fetch is None:
            return True
        elapsed = self.clock() - self._last_fetch
        return not 0 <= elapsed < REFRESH_INTERVAL_SECONDS  # a clock set back does not block it

    def _retry_after(self) -> int:
        left = (self._last_fetch or 0.0) + REFRESH_INTERVAL_SECONDS - self.clock()
        return max(1, math.ceil(min(left, REFRESH_INTERVAL_SECONDS)))

    async def _refresh(self) -> None:
        if self._fetching is None:
            if not self._may_fetch():
                return
            self._last_fetch = self.clock()
            self._fetching = asyncio.ensure_future(self._load())
        # Shielded: a caller that goes away does not cancel the fetch the others wait for.
        await asyncio.shield(self._fetching)

    async def _load(self) -> None:
        """Fetch and swap in the key set; never raises (a failure is logged and remembered)."""
        try:
            async with asyncio.timeout(self.timeout):
                keys = await self._fetch()
        except Exception as error:  # noqa: BLE001 - whatever happened, requests get 503, not 500
            reason = "timed out" if isinstance(error, TimeoutError) else str(error)
            logger.warning(
                "signing keys not refreshed from %s: %s: %s; next attempt in %g s at the earliest",
                self.openid_config_url,
                type(error).__name__,
                reason,
                REFRESH_INTERVAL_SECONDS,
            )
            self._failed = True
        else:
            self._keys, self._loaded_at, self._failed = keys, self.clock(), False
        finally:
            self._fetching = None

    async def _fetch(self) -> dict[str, RSAPublicKey]:
        import aiohttp  # here: a process with AUTH_MODE=none never loads it

        # No compression: the size limit is then the size read, and nothing inflates after it.
        async with aiohttp.ClientSession(
            headers={"Accept": "application/json", "Accept-Encoding": "identity"},
            auto_decompress=False,
        ) as session:
            metadata = await _document(session, self.openid_config_url)
            if metadata.get("issuer") != self.issuer:
                raise FetchFailed("the metadata names another issuer than AUTH_ISSUER")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise FetchFailed("the metadata has no jwks_uri")
            try:
                check_web_url(jwks_uri, "a JWKS URL", query=True)
            except ValueError as error:
                raise FetchFailed(f"jwks_uri {error}") from None
            keys = rsa_signing_keys(await _document(session, jwks_uri))
        if not keys:
            raise FetchFailed(f"the JWKS at {jwks_uri} has no {SIGNING_ALGORITHM} signing key")
        return keys


async def _document(session: aiohttp.ClientSession, url: str) -> dict:
    """A JSON object from `url`: 200, at most MAX_DOCUMENT_BYTES, no redirects."""
    async with session.get(url, allow_redirects=False) as response:
        if response.status != 200:
            raise FetchFailed(f"{url} answered {response.status}")
        if (response.content_length or 0) > MAX_DOCUMENT_BYTES:
            raise FetchFailed(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise FetchFailed(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchFailed(f"{url} is not JSON") from None
    if not isinstance(document, dict):
        raise FetchFailed(f"{url} is not a JSON object")
    return document


def rsa_signing_keys(jwks: dict) -> dict[str, RSAPublicKey]:
    """The JWKS's RSA public keys for RS256 signatures by `kid`; any other entry is skipped."""
    keys: dict[str, RSAPublicKey] = {}
    entries = jwks.get("keys")
    for jwk in entries if isinstance(entries, list) else ():
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg", SIGNING_ALGORITHM) != SIGNING_ALGORITHM:
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError):  # a malformed entry: not a key
            continue
        if isinstance(key, RSAPublicKey) and key.key_size >= MIN_KEY_BITS:  # never a private key
            keys[jwk["kid"]] = key
    return keys
