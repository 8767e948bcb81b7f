"""Pure functions over per-request records (the JSON lines the locustfiles write).

A record: t (start, epoch seconds), method, name, status (0: no answer), ms (latency), site
(APP-SERVICE-SITE-NAME or None), outcome ("ok"; "fail"; "lost": a 404 on an item the user
created earlier, answered, not failed; "retried": a 409 or 503 with Retry-After after which the
user sent the same keyed write again, neither a success nor a failure), item (the item id, when
there is one), user, token (the item's logical-create identity, loadtests.item_identity), for a
create or update content (name and isCompleted: as answered once acknowledged, as sent
otherwise), and when true replayed (the app answered from a stored Idempotency-Key answer) and
retry_after (the answer carried Retry-After), and on a read checked for other callers' items
(users with identities of their own) cross_owner: how many such items the answer held. Loss is judged by loadtests.reconciliation against
the store, not here.
"""

from __future__ import annotations

import json
import math
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import accumulate, pairwise
from pathlib import Path

from loadtests.reconciliation import DEFECTS

Record = dict


def load_records(directory: Path) -> list[Record]:
    """Every record of every process (records-*.jsonl), sorted by start time."""
    records = []
    for path in sorted(Path(directory).glob("records-*.jsonl")):
        with open(path) as file:
            records.extend(json.loads(line) for line in file if line.strip())
    return sorted(records, key=lambda r: r["t"])


def load_sent_tokens(directory: Path) -> set[str]:
    """The tokens of every create sent (sent-*.txt: written before each POST goes out)."""
    tokens: set[str] = set()
    for path in Path(directory).glob("sent-*.txt"):
        tokens.update(line for line in path.read_text().split() if line)
    return tokens


def end_time(record: Record) -> float:
    return record["t"] + record["ms"] / 1000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
SUSTAIN_SECONDS = 5.0
SUSTAINED_SUCCESS_RATIO = 0.99


def failed(record: Record) -> bool:
    return record["outcome"] == "fail"


def answered(record: Record) -> bool:
    """A final answer: a success, a loss or a failure; not an answer the user retried."""
    return record["outcome"] != "retried"


def succeeded(record: Record) -> bool:
    """Ok, or a 404 on the user's own item (answered; the loss is reconciliation's business)."""
    return record["outcome"] in ("ok", "lost")


def main_site(records: Iterable[Record]) -> str | None:
    """The site that served most successful requests (the primary, when given records before
    the fault)."""
    counts = Counter(r["site"] for r in records if r["outcome"] == "ok" and r["site"])
    return counts.most_common(1)[0][0] if counts else None


def request_stats(records: list[Record]) -> dict:
    if not records:
        return {
            "server_errors": 0,
            "requests": 0,
            "rps": 0.0,
            "p50_ms": None,
            "p95_ms": None,
            "p99_ms": None,
            "failures": 0,
            "failure_ratio": 0.0,
            "get_requests": 0,
            "failed_gets": 0,
            "duration_s": 0.0,
        }
    latencies = [r["ms"] for r in records]
    duration = max(end_time(r) for r in records) - records[0]["t"]
    failures = sum(failed(r) for r in records)
    answers = sum(answered(r) for r in records)
    gets = [r for r in records if r["method"] == "GET"]
    return {
        "requests": len(records),
        "duration_s": round(duration, 3),
        "rps": round(len(records) / duration, 1) if duration > 0 else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "failures": failures,
        "failure_ratio": failures / answers if answers else 0.0,
        "get_requests": len(gets),
        "failed_gets": sum(failed(r) for r in gets),
        "server_errors": sum(r["status"] == 500 for r in records),
    }


def cross_owner_reads(records: list[Record]) -> dict | None:
    """Reads (lists and gets) answered with an item of another caller: `reads` of `checked`,
    holding `items` such items in all; None when no read was checked (users without identities
    of their own)."""
    checked = [r["cross_owner"] for r in records if "cross_owner" in r]
    if not checked:
        return None
    return {
        "reads": sum(n > 0 for n in checked),
        "checked": len(checked),
        "items": sum(checked),
    }


def error_window(records: list[Record], since: float) -> dict:
    """First and last failure at or after `since`, and the span between them (seconds)."""
    return _failure_window([r for r in records if failed(r) and end_time(r) >= since], since)


def _failure_window(failures: list[Record], since: float) -> dict:
    if not failures:
        return {"first_failure_s": None, "last_failure_s": None, "error_window_s": 0.0}
    first, last = min(r["t"] for r in failures), max(end_time(r) for r in failures)
    return {
        "first_failure_s": round(first - since, 3),
        "last_failure_s": round(last - since, 3),
        "error_window_s": round(last - first, 3),
    }


def first_success_from(records: list[Record], since: float, site_test) -> float | None:
    """Seconds from `since` to the first successful response (by end time) whose site passes."""
    ends = [
        end_time(r)
        for r in records
        if r["outcome"] == "ok" and r["t"] >= since and site_test(r["site"])
    ]
    return round(min(ends) - since, 3) if ends else None


def share_by_site(records: Iterable[Record]) -> dict[str, float]:
    counts = Counter(r["site"] or "none" for r in records if r["outcome"] != "fail")
    total = sum(counts.values())
    return {site: round(n / total, 4) for site, n in sorted(counts.items())} if total else {}


def per_second(records: list[Record], start: float) -> list[dict]:
    """One row a second: requests, failures, and responses per site."""
    buckets: dict[int, dict] = defaultdict(
        lambda: {"requests": 0, "failures": 0, "sites": Counter()}
    )
    for record in records:
        bucket = buckets[int(end_time(record) - start)]
        bucket["requests"] += 1
        bucket["failures"] += failed(record)
        if record["outcome"] != "fail" and record["site"]:
            bucket["sites"][record["site"]] += 1
    return [
        {
            "second": s,
            "requests": b["requests"],
            "failures": b["failures"],
            "sites": dict(b["sites"]),
        }
        for s, b in sorted(buckets.items())
    ]


def failover_summary(
    records: list[Record], fault_at: float, restore_at: float | None = None
) -> dict:
    """Recovery facts of a run with a fault at `fault_at` (and a restore at `restore_at`)."""
    before = [r for r in records if end_time(r) < fault_at]
    primary = main_site(before)
    phases = {"before_fault": before}
    if restore_at is None:
        phases["after_fault"] = [r for r in records if end_time(r) >= fault_at]
    else:
        phases["during_fault"] = [r for r in records if fault_at <= end_time(r) < restore_at]
        phases["after_restore"] = [r for r in records if end_time(r) >= restore_at]
    summary = {
        "primary_site": primary,
        "recovery_s": first_success_from(records, fault_at, lambda s: s and s != primary),
        **error_window(records, fault_at),
        "share_by_phase": {name: share_by_site(rs) for name, rs in phases.items()},
        "failures_after_fault": sum(failed(r) for r in records if end_time(r) >= fault_at),
        "failback_s": None,
    }
    if restore_at is not None:
        summary["failback_s"] = first_success_from(records, restore_at, lambda s: s == primary)
    return summary


def fault_cycles(records: list[Record], faults: list[dict]) -> dict:
    """Per fault (a dict of fault_time and restore_time, epoch seconds, restore_time None when
    there was none; the faults in time order) the facts of its cycle, from the fault to the next
    fault or the end of the run, and the worst of them over the faults. A request belongs to
    the phase its end time falls in: before (from the previous restore, or the first record's
    start), during (from the fault to the restore, or to the cycle's end) and after (from the
    restore to the cycle's end). The primary is the main site before the first fault."""
    _check_order(faults)
    timeline = _Timeline(records)
    first_fault = faults[0]["fault_time"] if faults else math.inf
    primary = main_site(timeline.ending(-math.inf, first_fault))
    start = min((r["t"] for r in records), default=first_fault)
    cycles, before_from = [], start
    for i, fault in enumerate(faults):
        at, restore = fault["fault_time"], fault["restore_time"]
        until = faults[i + 1]["fault_time"] if i + 1 < len(faults) else math.inf
        cycle = _cycle(timeline, primary, at, restore, before_from, until)
        cycles.append({"at_s": round(at - start, 3), **cycle})
        before_from = until if restore is None else restore
    failures = [c["failures"] for c in cycles]
    in_flight = [c["in_flight"] for c in cycles]
    return {
        "count": len(cycles),
        "primary_site": primary,
        "failures_per_fault": failures,
        "failures": {
            "min": min(failures, default=None),
            "median": statistics.median(failures) if failures else None,
            "max": max(failures, default=None),
        },
        "in_flight_per_fault": in_flight,
        "min_in_flight": min(in_flight, default=None),
        "worst_recovery_s": _worst(c["recovery_s"] for c in cycles),
        "worst_sustained_recovery_s": _worst(c["sustained_recovery_s"] for c in cycles),
        "worst_write_gap_s": _worst(c["write_gap_s"] for c in cycles),
        "retried": sum(c["retried"] for c in cycles),
        "replayed": sum(c["replayed"] for c in cycles),
        "faults": cycles,
    }


def _check_order(faults: list[dict]) -> None:
    moments = []
    for fault in faults:
        moments.append(fault["fault_time"])
        if fault["restore_time"] is not None:
            moments.append(fault["restore_time"])
    if moments != sorted(moments):
        raise ValueError(f"faults: fault_time and restore_time out of time order: {faults}")


class _Timeline:
    """The records in end-time order, and the running count of successes among the answers."""

    def __init__(self, records: list[Record]) -> None:
        self.records = sorted(records, key=end_time)
        self.ends = [end_time(r) for r in self.records]
        self.end = self.ends[-1] if self.ends else -math.inf
        answers = [r for r in self.records if answered(r)]
        self.answer_ends = [end_time(r) for r in answers]
        self.successes = list(accumulate(map(succeeded, answers), initial=0))

    def ending(self, since: float, until: float) -> list[Record]:
        """The records ending in [since, until)."""
        return self.records[bisect_left(self.ends, since) : bisect_left(self.ends, until)]

    def in_flight(self, moment: float) -> int:
        """Requests started at or before `moment` and ending after it."""
        return sum(r["t"] <= moment for r in self.records[bisect_right(self.ends, moment) :])

    def sustained_from(self, moment: float) -> bool:
        """The answers ending in [moment, moment + SUSTAIN_SECONDS), inside the run, are at
        least one and at least SUSTAINED_SUCCESS_RATIO successes."""
        until = moment + SUSTAIN_SECONDS
        if until > self.end:
            return False
        low, high = bisect_left(self.answer_ends, moment), bisect_left(self.answer_ends, until)
        successes = self.successes[high] - self.successes[low]
        return high > low and successes / (high - low) >= SUSTAINED_SUCCESS_RATIO


def _cycle(
    timeline: _Timeline,
    primary: str | None,
    at: float,
    restore: float | None,
    before_from: float,
    until: float,
) -> dict:
    """One fault at `at`: its cycle is [at, until), the fault lasts [at, restore or until)."""
    cycle = timeline.ending(at, until)
    fault_end = until if restore is None else restore
    phases = {
        "before": timeline.ending(before_from, at),
        "during": timeline.ending(at, fault_end),
        "after": [] if restore is None else timeline.ending(restore, until),
    }
    failures = [r for r in cycle if failed(r)]
    oks = [r for r in cycle if r["outcome"] == "ok"]
    write_ends = [end_time(r) for r in oks if r["method"] in WRITE_METHODS]
    recovered = (end_time(r) for r in oks if r["site"] and r["site"] != primary)
    candidates = [at, *(end_time(r) for r in cycle if succeeded(r))]
    failed_back = (
        end_time(r)
        for r in oks
        if restore is not None and end_time(r) >= restore and primary and r["site"] == primary
    )
    return {
        "in_flight": timeline.in_flight(at),
        "failures": len(failures),
        **_failure_window(failures, at),
        "write_gap_s": _write_gap(write_ends, at, min(fault_end, timeline.end)),
        # The restore may pause writes too (a store's write region moving back).
        "write_gap_after_s": (
            None if restore is None else _write_gap(write_ends, restore, min(until, timeline.end))
        ),
        "latency_ms": {phase: _latency(rs) for phase, rs in phases.items()},
        "recovery_s": _since(at, next(recovered, None)),
        "sustained_recovery_s": _since(at, next(filter(timeline.sustained_from, candidates), None)),
        "failback_s": _since(restore, next(failed_back, None)),
        "retried": sum(r["outcome"] == "retried" for r in cycle),
        "replayed": sum(bool(r.get("replayed")) for r in cycle),
    }


def _write_gap(write_ends: list[float], since: float, until: float) -> float:
    """The longest time in [since, until] (until bounded below by since) without one of the
    successful writes' end times."""
    until = max(since, until)
    points = [since, *(t for t in write_ends if since <= t <= until), until]
    return round(max(b - a for a, b in pairwise(points)), 3)


def _latency(records: list[Record]) -> dict:
    """p50 and p99 (ms) of the answers among the records, and how many there are."""
    latencies = [r["ms"] for r in records if answered(r)]
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "requests": len(latencies),
    }


def _since(origin: float | None, moment: float | None) -> float | None:
    return None if origin is None or moment is None else round(moment - origin, 3)


def _worst(values: Iterable[float | None]) -> float | None:
    """The largest value; None when there is none or one is None (it never happened)."""
    values = list(values)
    return None if not values or None in values else max(values)


def store_fault_summary(records: list[Record], fault_at: float, restore_at: float | None) -> dict:
    """What callers saw while the shared store was away. The one acceptable answer is a 503
    with Retry-After (the store is unavailable, retry later); every other non-2xx answer or
    connection error is a failure. Also the time from the store's restart to the first success
    and to the last failed request (503 + Retry-After included)."""
    after = [r for r in records if end_time(r) >= fault_at]
    unavailable = [r for r in after if _unavailable(r) and r["outcome"] in ("fail", "retried")]
    summary = {
        "unavailable_responses": len(unavailable),
        "first_503_s": (
            round(min(r["t"] for r in unavailable) - fault_at, 3) if unavailable else None
        ),
        "unavailable_window_s": _failure_window(unavailable, fault_at)["error_window_s"],
        "failures": sum(failed(r) and not _unavailable(r) for r in after),
        "unavailable_without_retry_after": sum(
            r["status"] == 503 and not r.get("retry_after") for r in after
        ),
        "recovery_after_restore_s": None,
        "last_failure_after_restore_s": None,
    }
    if restore_at is not None:
        summary["recovery_after_restore_s"] = first_success_from(
            records, restore_at, lambda site: True
        )
        summary["last_failure_after_restore_s"] = error_window(records, restore_at)[
            "last_failure_s"
        ]
    return summary


def _unavailable(record: Record) -> bool:
    """A 503 with Retry-After: the store is away, retry later."""
    return record["status"] == 503 and bool(record.get("retry_after"))


def _above(value, limit) -> bool:
    return value is not None and value > limit


def _missing_or_above(value, limit) -> bool:
    return value is None or value > limit


def _missing_or_below(value, limit) -> bool:
    return value is None or value < limit


def item_threshold(figure: str) -> str:
    """The threshold on one reconciliation figure (a DEFECTS name)."""
    return f"max_items_{figure}"


# Threshold name -> (summary field, dotted for nested ones, number type, broken(value, limit)).
# The run CLI offers each as a flag (--max-failure-ratio ...).
THRESHOLDS = {
    "max_failure_ratio": ("failure_ratio", float, _above),
    "max_failed_gets": ("failed_gets", int, _above),
    "max_p95_ms": ("p95_ms", float, _above),
    "min_rps": ("rps", float, lambda value, limit: value < limit),
    "max_recovery_seconds": ("recovery_s", float, _missing_or_above),
    "max_failback_seconds": ("failback_s", float, _missing_or_above),
    "max_server_errors": ("server_errors", int, _above),
    "max_failures": ("failures", int, _above),
    "max_store_failures": ("store_fault.failures", int, _missing_or_above),
    # Several faults in one run (fault_cycles, the summary's "faults").
    "max_sustained_recovery_seconds": (
        "faults.worst_sustained_recovery_s",
        float,
        _missing_or_above,
    ),
    "max_write_gap_seconds": ("faults.worst_write_gap_s", float, _missing_or_above),
    "min_in_flight_at_fault": ("faults.min_in_flight", int, _missing_or_below),
    # A kill's own count: the requests the frozen app held when it was killed (Topology.kill_app).
    "min_app_serving_at_kill": ("faults.min_app_serving_at_kill", int, _missing_or_below),
    # Reconciliation against the store: max_items_missing, ..._duplicates, ..._orphans,
    # ..._stale_content, ..._resurrected. Broken too when no reconciliation was made.
    **{item_threshold(name): (f"items.{name}", int, _missing_or_above) for name in DEFECTS},
    # Keyed writes sent again: each retried create has one item; a deliberate replay is answered
    # with its create's item, never another.
    "max_items_retried_creates_not_single": (
        "items.retried_creates_not_single",
        int,
        _missing_or_above,
    ),
    "max_items_replays_other_item": ("items.replays_other_item", int, _missing_or_above),
    # Reads answered with another caller's item (users with identities of their own); broken
    # too when no read was checked.
    "max_cross_owner_reads": ("cross_owner.reads", int, _missing_or_above),
}


def field_value(summary: dict, field: str):
    """A summary field by dotted path ("items.missing"); None when absent."""
    value = summary
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def breaches(summary: dict, thresholds: dict[str, float | None]) -> list[str]:
    """Threshold checks: one line per breach (empty when the run passes)."""
    lines = []
    for name, limit in thresholds.items():
        if limit is None:
            continue
        field, _, broken = THRESHOLDS[name]
        value = field_value(summary, field)
        if broken(value, limit):
            lines.append(f"{name.replace('_', '-')} {limit} broken: {field} = {value}")
    return lines
