"""Entity group transactions (the Table service's `$batch`), written and read here as text.

azure-data-tables 12.7 builds and parses a transaction's multipart/mixed body with Python's
email package: about 3 ms of CPU for a two-entity transaction here, more than a whole single
insert (about 2 ms). On the keyed POST path that alone cut throughput by 60 %
(benchmarks/idempotency.py). The wire format is small and documented (Table service REST API,
"Performing entity group transactions"; the request is the one the SDK sends, less the per-part
dates and with `Prefer: return-no-content` on inserts), so it is written here and sent through
the TableClient's own pipeline: its credential (shared key or Entra token), retry policy, timeouts and tracing apply as
to any SDK call. Only what the store needs: insert, replace (If-Match) and delete (If-Match).

The service runs the operations in order, all or none; on the first that fails it stops and
answers with that one error, its message prefixed by the operation's index ("1:The specified
entity already exists."), which is what `Failure.index` reads (as the SDK's
TableTransactionError.index does; 0 when the service names none).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, NamedTuple
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables.aio import TableClient

API_VERSION = "2019-02-02"  # what azure-data-tables 12.7 sends
_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_CODE = re.compile(rb'"code"\s*:\s*"(\w+)"')
_INDEX = re.compile(rb'"value"\s*:\s*"(\d+):')


class Insert(NamedTuple):
    entity: dict[str, Any]


class Replace(NamedTuple):
    entity: dict[str, Any]
    etag: str  # If-Match


class Delete(NamedTuple):
    partition_key: str
    row_key: str
    etag: str = "*"  # If-Match; "*": whatever version is there, but it must be there


Operation = Insert | Replace | Delete


class Failure(NamedTuple):
    """The operation whose condition failed, and how (409 exists, 412 changed, 404 missing)."""

    index: int
    status: int
    code: str


def _entity_json(entity: dict[str, Any]) -> bytes:
    """The entity as the Table service's JSON: strings and doubles typed as the SDK types them."""
    typed: dict[str, Any] = {}
    for name, value in entity.items():
        typed[name] = value
        if isinstance(value, str):
            typed[f"{name}@odata.type"] = "Edm.String"
        elif isinstance(value, float):
            typed[f"{name}@odata.type"] = "Edm.Double"
        elif not isinstance(value, bool | int) or not -(2**31) <= value < 2**31:
            raise TypeError(f"{name}: only str, float, bool and Int32 values are written here")
    return json.dumps(typed).encode()


def _entity_url(table_url: str, partition_key: str, row_key: str) -> str:
    def key(value: str) -> str:
        return quote(value.replace("'", "''"), safe="")

    return f"{table_url}(PartitionKey='{key(partition_key)}',RowKey='{key(row_key)}')"


def _part(index: int, operation: Operation, table_url: str) -> bytes:
    body = b""
    if isinstance(operation, Insert):
        head = [f"POST {table_url} HTTP/1.1", "Prefer: return-no-content"]
        body = _entity_json(operation.entity)
    elif isinstance(operation, Replace):
        entity = operation.entity
        url = _entity_url(table_url, entity["PartitionKey"], entity["RowKey"])
        head = [f"PUT {url} HTTP/1.1", f"If-Match: {operation.etag}"]
        body = _entity_json(entity)
    else:
        url = _entity_url(table_url, operation.partition_key, operation.row_key)
        head = [f"DELETE {url} HTTP/1.1", f"If-Match: {operation.etag}"]
    head += [
        f"x-ms-version: {API_VERSION}",
        "DataServiceVersion: 3.0",
        "Accept: application/json;odata=minimalmetadata",
    ]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    envelope = [
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        f"Content-ID: {index}",
        "",
        *head,
        "",
        "",
    ]
    return "\r\n".join(envelope).encode() + body


def encode(base_url: str, table: str, operations: list[Operation]) -> tuple[str, bytes]:
    """The transaction's Content-Type and body: one changeset holding every operation."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    table_url = f"{base_url}/{table}"
    parts = b"".join(
        b"--%s\r\n%s\r\n" % (changeset.encode(), _part(n, operation, table_url))
        for n, operation in enumerate(operations)
    )
    body = (
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()
        + parts
        + f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode()
    )
    return f"multipart/mixed; boundary={batch}", body


def read_failure(body: bytes) -> Failure | None:
    """None when every operation succeeded; else the one the service names as failed."""
    statuses = [int(status) for status in _STATUS.findall(body)]
    if not statuses:
        raise ValueError("not a transaction response: no operation status in it")
    failed = [status for status in statuses if not 200 <= status < 300]
    if not failed:
        return None
    code, index = _CODE.search(body), _INDEX.search(body)
    return Failure(
        index=int(index.group(1)) if index else 0,
        status=failed[0],
        code=code.group(1).decode() if code else "unknown",
    )


async def submit(
    client: TableClient, operations: list[Operation], **options: Any
) -> Failure | None:
    """Run the operations as one transaction in the client's table, through its pipeline.

    Returns None when all were applied, the Failure when none was (a condition failed). A
    transaction the service refuses as a whole (auth, throttling, 5xx, ...) raises
    HttpResponseError with its status, as any SDK call does."""
    base_url = client.url.split("?", 1)[0].rstrip("/")
    content_type, body = encode(base_url, client.table_name, operations)
    request = HttpRequest(
        "POST",
        f"{base_url}/$batch",
        headers={
            "x-ms-version": API_VERSION,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": content_type,
            "Accept": "application/json",
        },
        content=body,
    )
    # `_client` is the SDK's generated AzureTable client; send_request is its documented way to
    # run a request through the pipeline (it is what TableClient.submit_transaction calls).
    response = await client._client.send_request(request, stream=True, **options)
    content = await response.read()
    if response.status_code != 202:
        raise HttpResponseError(response=response)
    return read_failure(content)
