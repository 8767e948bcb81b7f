"""TodoItems in Azure Cosmos DB for Table (Azure) or Azurite (locally), on azure-data-tables' async
client. One client per process, opened on first use and closed at shutdown.

Entities: PartitionKey = the owner (the caller's Entra object id, or ANONYMOUS_OWNER), so an
owner's list is one partition query and no query ever reaches another owner's rows; RowKey =
ITEM_ROW_PREFIX + the item id; Name, IsCompleted. Idempotency keys (app/idempotency.py) are rows
beside them in the owner's partition: RowKey = KEY_ROW_PREFIX + the key's logical partition (an
item id) + "-" + the key id, written with the item in one entity group transaction (same
partition) or alone (a claim). Listing reads only the item rows (a RowKey range). The table is
created by Terraform (Azure) or by the local topology (Azurite), never here.

A logical partition (Cosmos DB) holds at most 20 GB: an owner's items and live keys, far below it
for a to-do list. Rows written before items had owners (PartitionKey = the item id, RowKey
"item") are not read: docs/app.md says how to move them to an owner.

Failures have two outcomes the API can name:
- StoreUnavailable: the store did not answer in time, refused the connection, throttled (429),
  failed (5xx), refused our identity (401/403, e.g. a role assignment still propagating) or has
  no such table. The route answers 503 + Retry-After; every write is one entity operation or one
  transaction, so nothing is ever half-written.
- ConcurrentUpdate: a replace lost an ETag race against another writer (the route answers 409).

Every operation, retries included, runs under one deadline (OPERATION_DEADLINE_SECONDS), well
inside API Management's forward timeout (20 s) and the local gateway's (10 s).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableErrorCode, UpdateMode
from azure.data.tables.aio import TableClient

from app import table_transaction
from app.settings import StoreSettings
from app.store import (
    ConcurrentUpdate,
    KeyRecord,
    KeyTaken,
    KeyWrite,
    StoreUnavailable,
    TodoItem,
    todo_item,
)
from app.table_transaction import Delete, Failure, Insert, Replace

logger = logging.getLogger("app.store")

ITEM_ROW_PREFIX = "item-"
NAME = "Name"
IS_COMPLETED = "IsCompleted"
SELECT = ["RowKey", NAME, IS_COMPLETED]
# An owner's item rows: its partition, RowKeys from "item-" up to (not including) "item." ("." is
# the character after "-"), so idempotency key rows beside them are never read as items.
ITEMS_OF_OWNER = "PartitionKey eq @owner and RowKey ge @first and RowKey lt @after"
ITEM_ROWS = {"first": ITEM_ROW_PREFIX, "after": ITEM_ROW_PREFIX[:-1] + "."}
KEY_ROW_PREFIX = "idempotency-"
FINGERPRINT = "Fingerprint"
EXPIRES_AT = "ExpiresAt"  # epoch seconds as Edm.Double (an epoch in ms would overflow Int32)
TARGET = "Target"
LEASE_UNTIL = "LeaseUntil"
STATUS = "Status"
BODY = "Body"
LOCATION = "Location"
# The operation of a keyed transaction that writes the key row (the item's comes after it).
KEY_OPERATION = 0

# Bounds of one store operation. The SDK's defaults (300 s read timeout, 3 retries backing off
# up to 2 minutes) would outlive any gateway: a caller would see a gateway timeout instead of a
# clear 503 it can retry.
OPERATION_DEADLINE_SECONDS = 5.0
CONNECTION_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 3
RETRY_TOTAL = 2
RETRY_BACKOFF_FACTOR = 0.2
RETRY_BACKOFF_MAX_SECONDS = 1
DEFAULT_RETRY_AFTER_SECONDS = 1
PAGE_SIZE = 1000  # the service's maximum; the pager follows continuation tokens past it

CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
    "read_timeout": READ_TIMEOUT_SECONDS,
    "retry_total": RETRY_TOTAL,
    "retry_backoff_factor": RETRY_BACKOFF_FACTOR,
    "retry_backoff_max": RETRY_BACKOFF_MAX_SECONDS,
}

# Characters a PartitionKey or RowKey may not hold: an id with one of them names no stored item.
_FORBIDDEN_IN_KEYS = frozenset("/\\#?") | frozenset(map(chr, range(0x20))) | {"\x7f"}
_MAX_KEY_BYTES = 1024
# An item id's longest form: room for a key row's RowKey in its partition (prefix, id, "-", key id).
_MAX_ITEM_ID_BYTES = _MAX_KEY_BYTES - len(KEY_ROW_PREFIX) - 1 - 64
# Status codes that mean "not now" rather than "never": throttling, timeouts, server faults,
# and an identity the service does not (yet) accept.
_UNAVAILABLE_STATUSES = frozenset({401, 403, 408, 429, 500, 502, 503, 504})

T = TypeVar("T")
_ERROR_CODE = re.compile(r'"code"\s*:\s*"(\w+)"')


def _storable_key(key: str, limit: int = _MAX_KEY_BYTES) -> bool:
    return bool(key) and len(key.encode()) <= limit and _FORBIDDEN_IN_KEYS.isdisjoint(key)


def _storable_item(item_id: str) -> bool:
    """Whether an id can name a stored item: its row key, and the key rows of its partition."""
    return _storable_key(item_id, _MAX_ITEM_ID_BYTES)


def _check_owner(owner: str) -> None:
    # Owners come from validated tokens (a GUID) or ANONYMOUS_OWNER, never from a request's path.
    if not _storable_key(owner):
        raise ValueError(f"owner {owner!r} cannot name a table partition")


def _row_key(item_id: str) -> str:
    return ITEM_ROW_PREFIX + item_id


def _key_row_key(partition: str, key_id: str) -> str:
    return f"{KEY_ROW_PREFIX}{partition}-{key_id}"


def _entity(owner: str, item: TodoItem) -> dict[str, Any]:
    return {
        "PartitionKey": owner,
        "RowKey": _row_key(item.id),
        NAME: item.name,
        IS_COMPLETED: item.is_completed,
    }


def _item(entity: dict[str, Any]) -> TodoItem:
    item_id = entity["RowKey"][len(ITEM_ROW_PREFIX) :]
    return todo_item(item_id, entity[NAME], bool(entity.get(IS_COMPLETED, False)))


def _key_entity(owner: str, partition: str, write: KeyWrite) -> dict[str, Any]:
    record = write.record
    return {
        "PartitionKey": owner,
        "RowKey": _key_row_key(partition, write.key_id),
        FINGERPRINT: record.fingerprint,
        EXPIRES_AT: float(record.expires_at),
        TARGET: record.target,
        LEASE_UNTIL: float(record.lease_until),
        STATUS: record.status,
        BODY: record.body.decode(),  # JSON bodies: UTF-8 text
        LOCATION: record.location,
    }


def _key_record(entity: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        fingerprint=entity[FINGERPRINT],
        expires_at=float(entity[EXPIRES_AT]),
        target=entity[TARGET],
        lease_until=float(entity.get(LEASE_UNTIL, 0.0)),
        status=int(entity.get(STATUS, 0)),
        body=entity.get(BODY, "").encode(),
        location=entity.get(LOCATION, ""),
        version=entity.metadata["etag"],
    )


def _key_operation(owner: str, partition: str, write: KeyWrite) -> Insert | Replace:
    """The key row's part of a transaction: insert, or replace the version read (If-Match)."""
    entity = _key_entity(owner, partition, write)
    return Insert(entity) if write.replacing is None else Replace(entity, write.replacing)


def _error_code(error: HttpResponseError) -> str:
    """The service's error code (TableNotFound, ...): the SDK sets it on some errors only."""
    code = getattr(error, "error_code", None)
    if code is None:
        found = _ERROR_CODE.search(str(error.message))
        code = found.group(1) if found else "unknown"
    return str(getattr(code, "value", code))


def _retry_after(error: HttpResponseError) -> int:
    """Seconds a caller should wait, from the service's hint (Cosmos sends milliseconds)."""
    headers = error.response.headers if error.response is not None else {}
    milliseconds = headers.get("x-ms-retry-after-ms")
    seconds = headers.get("Retry-After")
    try:
        if milliseconds is not None:
            return max(1, -(-int(float(milliseconds)) // 1000))
        if seconds is not None:
            return max(1, int(seconds))
    except ValueError:
        pass
    return DEFAULT_RETRY_AFTER_SECONDS


class TableTodoStore:
    """The TodoStore interface over one TableClient (one per process, opened on first use)."""

    def __init__(
        self,
        client_factory: Callable[[], TableClient],
        table_name: str,
        page_size: int = PAGE_SIZE,
        deadline: float = OPERATION_DEADLINE_SECONDS,
        credential: AsyncTokenCredential | None = None,
        traced: Callable[[], bool] | None = None,
    ) -> None:
        self._client_factory = client_factory
        # With telemetry on, azure-core traces every SDK call; inside a request the telemetry
        # does not trace, it would still build (and drop) a span and its HTTP attributes per
        # call, about 0.1 ms. `traced` says whether the current request is traced.
        self._traced = traced
        self._client: TableClient | None = None
        self._credential = credential
        self.table_name = table_name
        self.page_size = page_size
        self.deadline = deadline

    def _call_options(self) -> dict[str, Any]:
        if self._traced is None:
            return {}
        return {"tracing_options": {"enabled": self._traced()}}

    @property
    def client(self) -> TableClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._credential is not None:
            await self._credential.close()

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation under the deadline; map outages to StoreUnavailable."""
        try:
            async with asyncio.timeout(self.deadline):
                return await call()
        except TimeoutError:
            raise self._unavailable(operation, f"no answer within {self.deadline:g} s") from None
        except ClientAuthenticationError as error:  # before its base, HttpResponseError
            raise self._unavailable(operation, f"{type(error).__name__}: {error.message}") from None
        except HttpResponseError as error:
            if error.status_code == 404:
                # Entity-level 404s are handled inside the calls; this one is the table itself
                # (TableNotFound, from a single operation or from a transaction).
                raise self._unavailable(
                    operation, f"table {self.table_name!r}: {_error_code(error)}"
                ) from None
            if error.status_code in _UNAVAILABLE_STATUSES:
                raise self._unavailable(
                    operation, f"HTTP {error.status_code} {_error_code(error)}", _retry_after(error)
                ) from None
            raise
        except AzureError as error:  # connection failures, read timeouts, other transport errors
            raise self._unavailable(operation, f"{type(error).__name__}: {error.message}") from None

    def _unavailable(
        self, operation: str, reason: str, retry_after: int = DEFAULT_RETRY_AFTER_SECONDS
    ) -> StoreUnavailable:
        logger.warning("store unavailable during %s: %s", operation, reason)
        return StoreUnavailable(retry_after)

    # -- the TodoStore interface ----------------------------------------------------------------

    async def list(self, owner: str) -> list[TodoItem]:
        _check_owner(owner)

        async def call() -> list[TodoItem]:
            entities = self.client.query_entities(
                ITEMS_OF_OWNER,
                parameters={"owner": owner, **ITEM_ROWS},
                select=SELECT,
                results_per_page=self.page_size,
                **self._call_options(),
            )
            return [_item(entity) async for entity in entities]

        return await self._run("list", call)

    async def _read(self, owner: str, item_id: str):
        try:
            return await self.client.get_entity(
                owner, _row_key(item_id), select=SELECT, **self._call_options()
            )
        except ResourceNotFoundError as error:
            if _error_code(error) == TableErrorCode.RESOURCE_NOT_FOUND:
                return None
            raise

    async def get(self, owner: str, item_id: str) -> TodoItem | None:
        _check_owner(owner)
        if not _storable_item(item_id):
            return None

        async def call() -> TodoItem | None:
            entity = await self._read(owner, item_id)
            return None if entity is None else _item(entity)

        return await self._run("get", call)

    async def add(self, owner: str, item: TodoItem, key: KeyWrite | None = None) -> TodoItem:
        _check_owner(owner)
        if key is not None:
            return await self._run("add", lambda: self._add_with_key(owner, item, key))

        async def call() -> TodoItem:
            try:
                await self.client.create_entity(_entity(owner, item), **self._call_options())
            except ResourceExistsError:
                # The SDK retries a create whose answer was lost; if the first attempt was
                # applied, the retry meets our own item: that is success, not a conflict.
                existing = await self._read(owner, item.id)
                if existing is None or _item(existing) != item:
                    raise KeyError(item.id) from None
            return item

        return await self._run("add", call)

    async def _add_with_key(self, owner: str, item: TodoItem, key: KeyWrite) -> TodoItem:
        # A retried transaction whose first attempt landed meets its own key row: KeyTaken, and
        # the caller replays what that row holds.
        operations = [_key_operation(owner, item.id, key), Insert(_entity(owner, item))]
        failed = await self._transact(operations)
        if failed is not None:
            raise KeyTaken(key.key_id) if failed.index == KEY_OPERATION else KeyError(item.id)
        return item

    async def replace(
        self, owner: str, item: TodoItem, key: KeyWrite | None = None
    ) -> TodoItem | None:
        _check_owner(owner)
        if not _storable_item(item.id):
            return None

        async def call() -> TodoItem | None:
            current = await self._read(owner, item.id)
            if current is None:
                return None
            etag = current.metadata["etag"]
            if key is not None:
                return await self._replace_with_key(owner, item, key, etag)
            try:
                await self.client.update_entity(
                    _entity(owner, item),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    **self._call_options(),
                )
            except ResourceModifiedError:
                raise ConcurrentUpdate(item.id) from None
            except ResourceNotFoundError as error:
                if _error_code(error) == TableErrorCode.RESOURCE_NOT_FOUND:  # deleted meanwhile
                    return None
                raise
            return item

        return await self._run("replace", call)

    async def _replace_with_key(
        self, owner: str, item: TodoItem, key: KeyWrite, etag: str
    ) -> TodoItem | None:
        # The If-Match inside the transaction is what refuses a racing writer: Azurite 3.37
        # honours it (Azurite#1233 reported older releases ignoring it; a test guards it).
        update = Replace(_entity(owner, item), etag)
        failed = await self._transact([_key_operation(owner, item.id, key), update])
        if failed is None:
            return item
        if failed.index == KEY_OPERATION:
            raise KeyTaken(key.key_id)
        if failed.status == 412:
            raise ConcurrentUpdate(item.id)
        return None  # 404: deleted meanwhile

    async def delete(self, owner: str, item_id: str, key: KeyWrite | None = None) -> bool:
        _check_owner(owner)
        if not _storable_item(item_id):
            return False

        async def call() -> bool:
            # The SDK's delete_entity does not report a missing entity: read first. Two
            # concurrent deletes of one item may therefore both succeed (DELETE is idempotent).
            if await self._read(owner, item_id) is None:
                return False
            if key is not None:
                return await self._delete_with_key(owner, item_id, key)
            await self.client.delete_entity(owner, _row_key(item_id), **self._call_options())
            return True

        return await self._run("delete", call)

    async def _delete_with_key(self, owner: str, item_id: str, key: KeyWrite) -> bool:
        # Inside a transaction a missing entity is reported (404), unlike delete_entity alone.
        remove = Delete(owner, _row_key(item_id))
        failed = await self._transact([_key_operation(owner, item_id, key), remove])
        if failed is not None and failed.index == KEY_OPERATION:
            raise KeyTaken(key.key_id)
        return failed is None

    async def _transact(self, operations: list) -> Failure | None:
        """Run one entity group transaction: all its operations or none. The Failure of an
        operation whose condition failed (409 exists, 412 changed, 404 no such entity) is
        returned, with its index; any other refusal raises, for _run to map."""
        failed = await table_transaction.submit(self.client, operations, **self._call_options())
        if failed is None or failed.status in (409, 412):
            return failed
        if failed.status == 404 and failed.code == TableErrorCode.RESOURCE_NOT_FOUND:
            return failed
        error = HttpResponseError(message=f"transaction refused: {failed.status} {failed.code}")
        error.status_code, error.error_code = failed.status, failed.code
        raise error

    # -- idempotency key rows alone (claims) -----------------------------------------------------

    async def read_key(self, owner: str, partition: str, key_id: str) -> KeyRecord | None:
        _check_owner(owner)

        async def call() -> KeyRecord | None:
            try:
                entity = await self.client.get_entity(
                    owner, _key_row_key(partition, key_id), **self._call_options()
                )
            except ResourceNotFoundError as error:
                if _error_code(error) == TableErrorCode.RESOURCE_NOT_FOUND:
                    return None
                raise
            return _key_record(entity)

        return await self._run("read key", call)

    async def write_key(self, owner: str, partition: str, write: KeyWrite) -> Any:
        _check_owner(owner)

        async def call() -> Any:
            entity = _key_entity(owner, partition, write)
            try:
                if write.replacing is None:
                    answer = await self.client.create_entity(entity, **self._call_options())
                else:
                    answer = await self.client.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=write.replacing,
                        match_condition=MatchConditions.IfNotModified,
                        **self._call_options(),
                    )
            except (ResourceExistsError, ResourceModifiedError):
                raise KeyTaken(write.key_id) from None
            except ResourceNotFoundError as error:  # the row read was deleted meanwhile
                if _error_code(error) == TableErrorCode.RESOURCE_NOT_FOUND:
                    raise KeyTaken(write.key_id) from None
                raise
            return answer["etag"]

        return await self._run("write key", call)

    async def release_key(self, owner: str, partition: str, key_id: str, version: Any) -> None:
        _check_owner(owner)

        async def call() -> None:
            try:
                await self.client.delete_entity(
                    owner,
                    _key_row_key(partition, key_id),
                    etag=version,
                    match_condition=MatchConditions.IfNotModified,
                    **self._call_options(),
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                pass  # taken over or gone already: not ours to delete

        await self._run("release key", call)


def table_store(settings: StoreSettings, **options: Any) -> TableTodoStore:
    """The store the settings name: by connection string (Azurite, key-based accounts) or by
    endpoint with the process's Entra identity (DefaultAzureCredential: the managed identity on
    App Service, `AZURE_CLIENT_ID` choosing a user-assigned one; `az login` on a laptop)."""
    name = settings.table_name
    if settings.connection_string is not None:
        connection_string = settings.connection_string

        def by_connection_string() -> TableClient:
            return TableClient.from_connection_string(connection_string, name, **CLIENT_OPTIONS)

        return TableTodoStore(by_connection_string, name, **options)

    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    endpoint = settings.endpoint

    def by_identity() -> TableClient:
        return TableClient(endpoint, name, credential=credential, **CLIENT_OPTIONS)

    return TableTodoStore(by_identity, name, credential=credential, **options)
