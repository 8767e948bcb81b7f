"""Pure functions over per-request records (the JSON lines the locustfiles write).

A record: t (start, epoch seconds), method, name, status, ms (latency), site
(APP-SERVICE-SITE-NAME or None), outcome ("ok", "fail", or "lost": a 404 on an item the user
created earlier), item (the item id, when there is one), user, token (the item's logical-create
identity, loadtests.item_identity) and, for a create or update, content (name and isCompleted:
as answered once acknowledged, as sent otherwise). Loss is judged by loadtests.reconciliation
against the store, not here.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
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


def end_time(record: Record) -> float:
    return record["t"] + record["ms"] / 1000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def failed(record: Record) -> bool:
    return record["outcome"] == "fail"


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
    gets = [r for r in records if r["method"] == "GET"]
    return {
        "requests": len(records),
        "duration_s": round(duration, 3),
        "rps": round(len(records) / duration, 1) if duration > 0 else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "failures": failures,
        "failure_ratio": failures / len(records),
        "get_requests": len(gets),
        "failed_gets": sum(failed(r) for r in gets),
        "server_errors": sum(r["status"] == 500 for r in records),
    }


def error_window(records: list[Record], since: float) -> dict:
    """First and last failure at or after `since`, and the span between them (seconds)."""
    failures = [r for r in records if failed(r) and end_time(r) >= since]
    if not failures:
        return {"first_failure_s": None, "last_failure_s": None, "error_window_s": 0.0}
    first, last = failures[0]["t"], max(end_time(r) for r in failures)
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


def store_fault_summary(records: list[Record], fault_at: float, restore_at: float | None) -> dict:
    """What callers saw while the shared store was away: the window of 503s (the store is
    unavailable, retry later), 500s (never acceptable), and the time from the store's restart
    to the first success and to the last failure."""
    after = [r for r in records if end_time(r) >= fault_at]
    unavailable = [r for r in after if r["status"] == 503]
    summary = {
        "unavailable_responses": len(unavailable),
        "first_503_s": round(unavailable[0]["t"] - fault_at, 3) if unavailable else None,
        "unavailable_window_s": (
            round(max(end_time(r) for r in unavailable) - unavailable[0]["t"], 3)
            if unavailable
            else 0.0
        ),
        "other_failures": sum(failed(r) and r["status"] != 503 for r in after),
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


def _above(value, limit) -> bool:
    return value is not None and value > limit


def _missing_or_above(value, limit) -> bool:
    return value is None or value > limit


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
    # Reconciliation against the store: max_items_missing, ..._duplicates, ..._orphans,
    # ..._stale_content, ..._resurrected. Broken too when no reconciliation was made.
    **{item_threshold(name): (f"items.{name}", int, _missing_or_above) for name in DEFECTS},
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
