"""Reconciliation: what the clients were told (the per-request records) against the items the store
holds after the run. A pure function; loadtests.item_sources reads the items.

Every logical create carries a token in its name (loadtests.item_identity). From the records:

- a create is *acknowledged* when its POST got 201; its item is the id in that answer;
- an item is *deleted* when a DELETE of it got 204. A 404 is no deletion: it is the service
  saying the item is gone, and the item then has to be in the store like any other;
- its *expected content* is the content of its last acknowledged write (the 201 or a 200 to a
  PUT, as answered). A later PUT that got no answer (connection failure or 5xx: the service may
  have applied it) makes its content acceptable too; a PUT refused with a 4xx was not applied.

Against the items in the store (and the ones it held before the run, `baseline`):

- missing: acknowledged, not deleted, not in the store (or in the baseline and gone);
- duplicates: a further item for a create that already has its item (same token, another id);
- orphans: an item whose token no client sent (or that has no token), not in the baseline;
- stale_content: the item is there, with content other than the expected (or, for a baseline
  item, changed);
- resurrected: deleted (204) and still in the store.

Writes sent again with their Idempotency-Key, counted apart: `retried_creates` (logical creates
answered 409 or 503 with Retry-After at least once, then acknowledged) and how many of them
have exactly one item in the store (`retried_creates_single`; `retried_creates_not_single`:
those with another count than one, or than none once deleted with 204); `deliberate_replays` (creates a
client sent again on purpose with an earlier create's key and body: the same logical create),
those answered with that create's item (`replays_same_item`) and
those answered with another (`replays_other_item`: the key failed to deduplicate).

Not errors, counted apart: unacknowledged_present (a create that got no 201 but whose item is
there: one per token, further ones are duplicates), unacknowledged_update_applied (the store
holds the content of a PUT that got no answer), unacknowledged_delete_applied (an item is gone
after a DELETE that got no answer).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from loadtests.item_identity import token_of

EXAMPLES = 5  # entries listed per figure, for debugging
CREATED, UPDATED, DELETED, NOT_FOUND = 201, 200, 204, 404
# The figures that are defects: any of them above 0 fails a drill.
DEFECTS = ("missing", "duplicates", "orphans", "stale_content", "resurrected")
UNACKNOWLEDGED = (
    "unacknowledged_present",
    "unacknowledged_update_applied",
    "unacknowledged_delete_applied",
)


@dataclass(frozen=True)
class StoredItem:
    """One item as the store (or the API's list) holds it."""

    id: str
    name: object = None
    is_completed: object = None
    owner: str = ""  # the table's partition (its caller's object id); "" from the API's list

    def content(self) -> dict:
        return {"name": self.name, "isCompleted": self.is_completed}


class ReconciliationError(ValueError):
    """The records cannot be reconciled (the message is one line)."""


def unanswered(record: dict) -> bool:
    """No answer from the service: a connection failure (status 0) or a 5xx. A write that got
    one may or may not have been applied."""
    return record["status"] == 0 or record["status"] >= 500


@dataclass
class _Write:
    t: float
    content: dict
    acknowledged: bool  # False: unanswered (maybe applied); refused writes are not kept


@dataclass
class _History:
    """What the clients were told about one acknowledged item."""

    token: str
    writes: list[_Write] = field(default_factory=list)  # the create first
    deleted: bool = False  # a DELETE got 204
    delete_unanswered: bool = False  # a DELETE got no answer (maybe applied)

    def expected(self) -> tuple[dict, list[dict]]:
        """(content of the last acknowledged write, contents of later unanswered writes)."""
        writes = sorted(self.writes, key=lambda w: w.t)
        last = max(i for i, w in enumerate(writes) if w.acknowledged)
        return writes[last].content, [w.content for w in writes[last + 1 :]]


def _content(record: dict) -> dict:
    if "content" not in record:
        raise ReconciliationError(
            f"a {record['method']} record at t={record['t']} has no content: records from a "
            "locustfile without item identity cannot be reconciled"
        )
    return record["content"]


def ledger(records: Iterable[dict]) -> tuple[dict[str, int], dict[str, str], dict[str, _History]]:
    """(POST attempts per token, the acknowledged item of each token, each item's history)."""
    ordered = sorted(records, key=lambda r: r["t"])
    attempts: Counter[str] = Counter()
    item_of: dict[str, str] = {}
    histories: dict[str, _History] = {}
    for record in ordered:
        if record["method"] != "POST":
            continue
        token = record.get("token")
        if not token:
            raise ReconciliationError(
                f"a POST record at t={record['t']} has no token: records from a locustfile "
                "without item identity cannot be reconciled"
            )
        attempts[token] += 1
        if record["status"] == CREATED and not record.get("item"):
            # The client was told which item it made: a record without it is a recording
            # defect, and would silently turn an acknowledged create into an unanswered one.
            raise ReconciliationError(
                f"a POST answered 201 at t={record['t']} has no item id in its record: the"
                " records are incomplete"
            )
        if record["status"] == CREATED and token not in item_of:
            item_of[token] = record["item"]
            histories[record["item"]] = _History(
                token, [_Write(record["t"], _content(record), True)]
            )
    for record in ordered:
        history = histories.get(record.get("item"))
        if history is None or record["method"] not in ("PUT", "DELETE"):
            continue
        if record["method"] == "PUT" and (record["status"] == UPDATED or unanswered(record)):
            history.writes.append(
                _Write(record["t"], _content(record), record["status"] == UPDATED)
            )
        elif record["method"] == "DELETE" and record["status"] == DELETED:
            history.deleted = True
        elif record["method"] == "DELETE" and unanswered(record):
            history.delete_unanswered = True
    return dict(attempts), item_of, histories


def _entry(item: StoredItem | None, item_id: str, token: str | None, **more) -> dict:
    entry = {"id": item_id, "token": token}
    if item is not None and token is None:
        entry["name"] = item.name
    return {**entry, **more}


def reconcile(
    records: list[dict],
    stored: Iterable[StoredItem],
    baseline: Iterable[StoredItem] = (),
    read_from: str = "",
    sent: Iterable[str] = (),
) -> dict:
    """The figures of one run (see the module docstring), with the first few entries of each in
    `examples`. `read_from` says where `stored` was read (shown in the report). `sent`: the
    tokens of every create the clients sent, answered or not (a request cut when the run
    stopped its users leaves no record, but was sent: its item is no orphan)."""
    attempts, item_of, histories = ledger(records)
    for token in sent:
        attempts.setdefault(token, 0)
    stored = sorted(stored, key=lambda item: item.id)
    before = {item.id: item for item in baseline}
    found: dict[str, list[dict]] = {name: [] for name in DEFECTS + UNACKNOWLEDGED}
    in_store: dict[str, StoredItem] = {}
    unacknowledged: dict[str, list[StoredItem]] = defaultdict(list)
    for item in stored:
        token = token_of(item.name)
        if item.id in in_store:  # the same id listed twice (only an API list can do that)
            found["duplicates"].append(_entry(item, item.id, token))
            continue
        in_store[item.id] = item
        if item.id in histories:
            continue  # an acknowledged item: checked below
        if item.id in before:
            was = before[item.id].content()
            if item.content() != was:
                entry = _entry(item, item.id, token, expected=was, found=item.content())
                found["stale_content"].append({**entry, "preexisting": True})
        elif token is None or token not in attempts:
            found["orphans"].append(_entry(item, item.id, None))
        elif token in item_of:  # that create has its item already: this one is a copy
            found["duplicates"].append(_entry(item, item.id, token))
        else:
            unacknowledged[token].append(item)
    for token, items in unacknowledged.items():
        first, *copies = items
        found["unacknowledged_present"].append(_entry(first, first.id, token))
        found["duplicates"] += [_entry(copy, copy.id, token) for copy in copies]
    for item_id, history in histories.items():
        item = in_store.get(item_id)
        if history.deleted:
            if item is not None:
                found["resurrected"].append(_entry(item, item_id, history.token))
        elif item is None:
            figure = "unacknowledged_delete_applied" if history.delete_unanswered else "missing"
            found[figure].append(_entry(None, item_id, history.token))
        else:
            last, maybe = history.expected()
            if item.content() == last:
                continue
            if item.content() in maybe:
                found["unacknowledged_update_applied"].append(_entry(item, item_id, history.token))
            else:
                found["stale_content"].append(
                    _entry(item, item_id, history.token, expected=last, found=item.content())
                )
    for item_id in sorted(before.keys() - in_store.keys()):
        found["missing"].append(
            _entry(None, item_id, token_of(before[item_id].name), preexisting=True)
        )
    deleted = sum(history.deleted for history in histories.values())
    items_per_token = Counter(token_of(item.name) for item in in_store.values())
    retried = {
        r["token"] for r in records if r["method"] == "POST" and r["outcome"] == "retried"
    } & item_of.keys()
    replays = [
        r
        for r in records
        if r.get("deliberate_replay") and r["method"] == "POST" and r["status"] == CREATED
    ]
    return {
        "read_from": read_from,
        "creates_attempted": len(attempts),
        "acknowledged": len(histories),
        "acknowledged_deleted": deleted,
        "preexisting": len(before),
        "expected_in_store": len(histories) - deleted + len(before),
        "in_store": len(stored),
        **{name: len(entries) for name, entries in found.items()},
        "not_found_responses": sum(r["outcome"] == "lost" for r in records),
        "retried_creates": len(retried),
        "retried_creates_single": sum(items_per_token[token] == 1 for token in retried),
        # One item each, none once deleted with 204.
        "retried_creates_not_single": sum(
            items_per_token[token] != (0 if histories[item_of[token]].deleted else 1)
            for token in retried
        ),
        "deliberate_replays": sum(
            bool(r.get("deliberate_replay")) and r["outcome"] != "retried" for r in records
        ),
        "replays_same_item": sum(item_of.get(r["token"]) == r["item"] for r in replays),
        "replays_other_item": sum(
            r["token"] in item_of and item_of[r["token"]] != r["item"] for r in replays
        ),
        "examples": {name: entries[:EXAMPLES] for name, entries in found.items() if entries},
    }
