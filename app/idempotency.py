"""Retry-safe writes: the Idempotency-Key request header on POST, PUT and DELETE.

IETF draft-ietf-httpapi-idempotency-key-header, behaving as Stripe does. A write sent with a key
and retried with the same key and the same request (method, path, body: the fingerprint) gets
the first answer again, marked `Idempotent-Replayed: true`, instead of a second effect. The same
key with another request is 422; while the first request is still in progress, 409. Keys expire
(IDEMPOTENCY_KEY_EXPIRY_SECONDS, 24 h by default); after that the key is free for a new request.
Only answers that change the store are kept (201, 200, 204); a refused request (400, 404, 409,
413, 415, 503) stores nothing and may be retried with its key. docs/app.md has the whole story.

Where a key lives (rows of app/store.py's KeyRecord, in the items' own table, among its owner's
items: a partition below is a logical one, inside the owner's):
- key id: SHA-256 of (owner, key), 64 hex; the key's rows are named by it.
- home: the first 32 hex of the key id, a partition of its own. A POST's first use creates its
  item there (the item id is the home), so item and stored answer are one transaction in one
  partition, with nothing written before: a POST with a key costs one store call.
- Any other keyed write (PUT, DELETE, a POST reusing an expired key) first claims the home row
  (a lease of IN_FLIGHT_LEASE_SECONDS naming the partition it will write), then writes the item
  and its answer (a key row in the item's partition) in one transaction. The home row keeps a
  key unique across paths and items, and tells another process that the request is in flight.

What is in flight: in this process, a set of key ids (409 at once). In other processes and
regions, a claim whose lease has not run out (409 with Retry-After). A POST's first use has no
claim, so there a duplicate racing in another process is settled by the transaction: one lands,
the other finds its row and replays it. A claim whose lease ran out (its request died) is taken
over with the same target partition, so at most one of the two ever lands there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.access_tokens import caller_of
from app.contract import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENT_REPLAYED_HEADER,
    JSON_MEDIA_TYPE,
    MAX_IDEMPOTENCY_KEY_LENGTH,
)
from app.problems import Problem
from app.store import (
    ANONYMOUS_OWNER,
    KeyRecord,
    KeyTaken,
    KeyWrite,
    StoreUnavailable,
    TodoStore,
    new_item_id,
)

# How long a claim marks its request in flight. A keyed PUT or DELETE makes at most four store
# calls, each under the table store's 5 s deadline, but almost always ends in well under a second;
# a claim older than this is taken to be a dead request's, and its retry may go ahead (safe: the
# answer's key row is written with the item, so only one of two racing attempts lands).
IN_FLIGHT_LEASE_SECONDS = 10.0
# Rounds of read-and-write on one key row before giving up with 409 (other requests keep winning).
ATTEMPTS = 3

MALFORMED_KEY = (
    f"The {IDEMPOTENCY_KEY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible "
    'ASCII characters other than " and \\, bare or in double quotes.'
)
REPEATED_KEY = f"The {IDEMPOTENCY_KEY_HEADER} header must appear at most once."
KEY_REUSED = (
    f"This {IDEMPOTENCY_KEY_HEADER} was used for a different request (method, path or body); "
    "send a new key with a new request."
)
KEY_IN_FLIGHT = (
    f"A request with this {IDEMPOTENCY_KEY_HEADER} is still in progress; "
    "retry after Retry-After seconds."
)

_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_HEADER = IDEMPOTENCY_KEY_HEADER.lower()


class RequestKey(NamedTuple):
    owner: str  # whose key: its rows live among the owner's items (app/store.py)
    key_id: str  # 64 hex: names the key's rows
    home: str  # 32 hex: the key's home partition, and the id of the item its first POST creates


def owner_of(request: Request) -> str:
    """Who owns what the request reads and writes: the token's `oid` (app/access_tokens.py), or
    ANONYMOUS_OWNER with AUTH_MODE=none. It scopes items and keys (one caller's key never meets
    another's) and enters the fingerprint."""
    caller = caller_of(request)
    return ANONYMOUS_OWNER if caller is None else caller.object_id


def request_key(request: Request) -> RequestKey | None:
    """The request's key, or None without the header; 400 when it is malformed or repeated."""
    values = request.headers.getlist(_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise Problem(400, REPEATED_KEY)
    (text,) = values
    if not _KEY.fullmatch(text):
        raise Problem(400, MALFORMED_KEY)
    key = text[1:-1] if text.startswith('"') else text  # the draft's sf-string names the same key
    owner = owner_of(request)
    digest = hashlib.sha256(f"idempotency-key\0{owner}\0{key}".encode()).hexdigest()
    return RequestKey(owner, digest, digest[:32])


def fingerprint(request: Request, path: str, document: dict | None = None) -> str:
    """What makes two requests the same: owner, method, the canonical path and the digest of the
    JSON body in canonical form (keys sorted, no spaces), so a retry that encodes the same object
    another way still matches; a DELETE has no body."""
    body = b""
    if document is not None:
        body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    parts = [owner_of(request), request.method, path, hashlib.sha256(body).hexdigest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def stored_response(record: KeyRecord, replayed: bool = False) -> Response:
    """The answer a key row holds: status, body, Location; the same bytes the first time and on
    every replay (then marked)."""
    headers = {"Location": record.location} if record.location else {}
    if replayed:
        headers[IDEMPOTENT_REPLAYED_HEADER] = "true"
    if record.status == 204:
        return Response(status_code=204, headers=headers)
    return Response(
        record.body, status_code=record.status, headers=headers, media_type=JSON_MEDIA_TYPE
    )


def _in_flight(seconds: float) -> Problem:
    return Problem(409, KEY_IN_FLIGHT, {"Retry-After": str(max(1, math.ceil(seconds)))})


def _reused() -> Problem:
    return Problem(422, KEY_REUSED)


class Attempt(NamedTuple):
    """One try at a keyed write into partition `item_id`; `answer()` makes the key row that
    stores the response, for the endpoint to hand to the store with its item write."""

    item_id: str
    key_id: str
    fingerprint: str
    expires_at: float
    replacing: Any

    def answer(self, status: int, body: bytes = b"", location: str = "") -> KeyWrite:
        record = KeyRecord(
            self.fingerprint, self.expires_at, self.item_id, 0.0, status, body, location
        )
        return KeyWrite(self.key_id, record, self.replacing)


# The endpoint's write: the item write with attempt.answer(...) as its key row; it raises a
# Problem when nothing was written (404, 409), KeyTaken when the key row's condition failed.
Perform = Callable[[Attempt], Awaitable[KeyWrite]]


class IdempotentWrites:
    """Runs keyed writes over one store; one per process (it holds the in-process in-flight set)."""

    def __init__(
        self,
        store: TodoStore,
        expiry_seconds: float,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = IN_FLIGHT_LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.expiry_seconds = expiry_seconds
        self.clock = clock
        self.lease_seconds = lease_seconds
        self._in_flight: set[str] = set()

    async def run(
        self, key: RequestKey, fingerprint: str, target: str | None, perform: Perform
    ) -> Response:
        """`target`: the item a PUT or DELETE writes; None for a POST (the key picks the id)."""
        if key.key_id in self._in_flight:
            raise _in_flight(1)
        self._in_flight.add(key.key_id)
        try:
            return await self._run(key, fingerprint, target, perform)
        finally:
            self._in_flight.discard(key.key_id)

    async def _run(
        self, key: RequestKey, fingerprint: str, target: str | None, perform: Perform
    ) -> Response:
        now = self.clock()
        if target is None:  # a POST: its first use is one transaction at the key's home
            first = Attempt(key.home, key.key_id, fingerprint, now + self.expiry_seconds, None)
            try:
                return stored_response((await perform(first)).record)
            except (KeyTaken, KeyError):
                pass  # the key was used before, or is in use elsewhere: its home row says how
        claimed = await self._claim(key, fingerprint, target, now)
        if isinstance(claimed, Response):
            return claimed
        return await self._perform_claimed(key, fingerprint, claimed, perform)

    async def _claim(
        self, key: RequestKey, fingerprint: str, target: str | None, now: float
    ) -> KeyRecord | Response:
        """Claim the home row for this request (the claim, with its version), or decide from it:
        the stored answer (replayed), 422 (another request's key) or 409 (in flight)."""
        for _ in range(ATTEMPTS):
            row = await self.store.read_key(key.owner, key.home, key.key_id)
            if row is None or row.expires_at <= now:  # unused, or expired: a new request
                claim = KeyRecord(
                    fingerprint,
                    now + self.expiry_seconds,
                    target or new_item_id(),
                    now + self.lease_seconds,
                )
            else:
                if row.fingerprint != fingerprint:
                    raise _reused()
                if row.status:  # a POST's answer, kept at home with its item
                    return stored_response(row, replayed=True)
                answer = await self._answer(key, row, now)
                if answer is not None:
                    return stored_response(answer, replayed=True)
                if row.lease_until > now:
                    raise _in_flight(row.lease_until - now)
                # Its request died before writing: take over, same target and expiry.
                claim = row._replace(lease_until=now + self.lease_seconds)
            try:
                replacing = None if row is None else row.version
                version = await self.store.write_key(
                    key.owner, key.home, KeyWrite(key.key_id, claim, replacing)
                )
            except KeyTaken:
                continue  # another request wrote the row meanwhile: look again
            return claim._replace(version=version)
        raise _in_flight(1)

    async def _answer(self, key: RequestKey, claim: KeyRecord, now: float) -> KeyRecord | None:
        """The live answer stored in the claim's target partition, if its request wrote it."""
        answer = await self.store.read_key(key.owner, claim.target, key.key_id)
        if answer is None or not answer.status or answer.expires_at <= now:
            return None
        if answer.fingerprint != claim.fingerprint:
            raise _reused()
        return answer

    async def _perform_claimed(
        self, key: RequestKey, fingerprint: str, claim: KeyRecord, perform: Perform
    ) -> Response:
        # The answer's key row is inserted in the target partition; at home it replaces the claim.
        replacing = claim.version if claim.target == key.home else None
        for _ in range(ATTEMPTS):
            attempt = Attempt(claim.target, key.key_id, fingerprint, claim.expires_at, replacing)
            try:
                return stored_response((await perform(attempt)).record)
            except KeyTaken:
                # A row is there: this request's own answer, written by an attempt whose claim
                # ran out (replay it), or an expired one of an earlier use (replace it).
                found = await self.store.read_key(key.owner, claim.target, key.key_id)
                if found is not None and found.status and found.expires_at > self.clock():
                    if found.fingerprint != fingerprint:
                        raise _reused() from None
                    return stored_response(found, replayed=True)
                replacing = None if found is None else found.version
            except HTTPException:
                await self._release(key, claim)  # nothing was written: the key is free at once
                raise
        raise _in_flight(1)

    async def _release(self, key: RequestKey, claim: KeyRecord) -> None:
        try:
            await self.store.release_key(key.owner, key.home, key.key_id, claim.version)
        except StoreUnavailable:
            pass  # the claim's lease runs out instead
