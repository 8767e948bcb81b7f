"""Where reconciliation reads the items after (and before) a run.

- TableItems: the table itself (Azurite locally, the one account both regions share), read with
  azure-data-tables, not through the API: what the store holds, whatever the app would answer.
- ApiItems: `GET /api/TodoItem` through the gateway. For the in-memory store, which has no table
  to read: it shows only the items of the region that answers the list, and only as the app
  chooses to list them; labelled as such in every report.

The app's entity layout (app/table_store.py: PartitionKey = the owner, RowKey = "item-" + the item
id, Name, IsCompleted) is restated here, not imported: loadtests share only app/contract.py with
the app. Every owner's items are read: reconciliation follows items by id, whoever owns them.
tests/loadtests/test_item_sources.py writes items through the app's own store and reads them back
with TableItems, so the two cannot drift apart unnoticed. Only item rows are read, as the app's
own list does: other rows of a partition (for example idempotency-key rows) are not items.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

import httpx

from app.contract import SUBSCRIPTION_KEY_HEADER, TODO_PATH
from loadtests.reconciliation import StoredItem

ROW_KEY_PREFIX = "item-"
NAME = "Name"
IS_COMPLETED = "IsCompleted"
# Bounds of one read (the SDK's own defaults wait up to 300 s).
CONNECTION_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
RETRY_TOTAL = 2
API_TIMEOUT_SECONDS = 30


class ItemSourceError(Exception):
    """The items could not be read (the message is one line)."""


class ItemSource(Protocol):
    kind: str  # "store" or "api"

    def describe(self) -> str: ...

    def read(self) -> list[StoredItem]: ...


def _one_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no message'}"


# RowKeys from "item-" up to, not including, "item." ("." follows "-"): item rows only.
ITEM_ROWS = f"RowKey ge '{ROW_KEY_PREFIX}' and RowKey lt '{ROW_KEY_PREFIX[:-1]}.'"


def stored_item(entity: dict) -> StoredItem:
    item_id = entity["RowKey"][len(ROW_KEY_PREFIX) :]
    return StoredItem(item_id, entity.get(NAME), entity.get(IS_COMPLETED), entity["PartitionKey"])


@dataclass
class TableItems:
    """Every entity of one table, by connection string (Azurite: http://127.0.0.1:<port>)."""

    connection_string: str
    table_name: str
    where: str = ""  # for the report, e.g. "Azurite http://127.0.0.1:40157/todoapi"
    kind: str = "store"

    def describe(self) -> str:
        return f"store: table {self.table_name}" + (f" ({self.where})" if self.where else "")

    def read(self) -> list[StoredItem]:
        from azure.core.exceptions import AzureError
        from azure.data.tables import TableClient

        try:
            with TableClient.from_connection_string(
                self.connection_string,
                self.table_name,
                connection_timeout=CONNECTION_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                retry_total=RETRY_TOTAL,
            ) as table:
                return [stored_item(entity) for entity in table.query_entities(ITEM_ROWS)]
        except (AzureError, ValueError) as error:
            raise ItemSourceError(
                f"reading table {self.table_name!r} failed: {_one_line(error)}"
            ) from None


@dataclass
class ApiItems:
    """The API's list, through the same gateway, key and certificate as the load."""

    host: str
    key: str
    api_path: str = ""
    ca_bundle: str = ""
    cert: str = ""
    cert_key: str = ""
    note: str = "the API's list, not the store"
    kind: str = "api"

    @property
    def url(self) -> str:
        return f"{self.host.rstrip('/')}{self.api_path.rstrip('/')}{TODO_PATH}"

    def describe(self) -> str:
        return f"api: GET {self.url} ({self.note})"

    def read(self) -> list[StoredItem]:
        verify = ssl.create_default_context(cafile=self.ca_bundle or None)
        if self.cert:
            verify.load_cert_chain(self.cert, self.cert_key or None)
        try:
            response = httpx.get(
                self.url,
                headers={SUBSCRIPTION_KEY_HEADER: self.key},
                verify=verify,
                timeout=API_TIMEOUT_SECONDS,
            )
            response.raise_for_status()
            items = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ItemSourceError(f"listing the items failed: {_one_line(error)}") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ItemSourceError(f"listing the items failed: {self.url} did not answer a list")
        return [StoredItem(i.get("id"), i.get("name"), i.get("isCompleted")) for i in items]
