"""Reports of a run: the results table (text) and the timeline plot (PNG, matplotlib Agg)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _number(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def results_table(summary: dict) -> str:
    rows = [
        ("fidelity profile", summary.get("profile") or "-"),
        ("requests", _number(summary["requests"])),
        ("requests/s", _number(summary["rps"])),
        (
            "latency p50 / p95 / p99",
            " / ".join(_number(summary[k], " ms") for k in ("p50_ms", "p95_ms", "p99_ms")),
        ),
        ("failed requests", f"{summary['failures']} ({summary['failure_ratio']:.3%})"),
        ("failed GETs", f"{summary['failed_gets']} of {summary['get_requests']}"),
    ]
    store = summary.get("store_fault")
    failover = summary.get("failover")
    if failover and not store:
        rows += [
            ("primary region", failover["primary_site"] or "-"),
            (
                "time to recover (fault -> 1st success from secondary)",
                _number(failover["recovery_s"], " s", 3),
            ),
            ("error window", _number(failover["error_window_s"], " s", 3)),
            ("failures after the fault", _number(failover["failures_after_fault"])),
        ]
        for phase, shares in failover["share_by_phase"].items():
            text = ", ".join(f"{site} {share:.1%}" for site, share in shares.items()) or "-"
            rows.append((f"share per region, {phase.replace('_', ' ')}", text))
        if failover.get("failback_s") is not None or "after_restore" in failover["share_by_phase"]:
            rows.append(
                (
                    "failback (restore -> 1st success from primary)",
                    _number(failover["failback_s"], " s", 3),
                )
            )
    if store:
        rows += [
            ("503s while the store was away", _number(store["unavailable_responses"])),
            ("503 window (first -> last)", _number(store["unavailable_window_s"], " s", 3)),
            ("failures other than 503", _number(store["other_failures"])),
            (
                "store restart took (until it listens)",
                _number(summary.get("restore_took_s"), " s", 3),
            ),
            (
                "store restart -> 1st success",
                _number(store["recovery_after_restore_s"], " s", 3),
            ),
            (
                "store restart -> last failure",
                _number(store["last_failure_after_restore_s"], " s", 3),
            ),
        ]
    rows.append(("500s (server errors)", _number(summary.get("server_errors", 0))))
    items = summary.get("items")
    if items:
        rows += reconciliation_rows(items)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


# (figure, label) of the reconciliation rows; the defects first, then what is not an error.
ITEM_ROWS = (
    ("missing", "items missing (acknowledged, not deleted, not in the store)"),
    ("duplicates", "items duplicated (one create stored twice)"),
    ("orphans", "orphan items (in the store, created by no client)"),
    ("stale_content", "items with stale content (not the last acknowledged)"),
    ("resurrected", "items resurrected (deleted with 204, still in the store)"),
    ("unacknowledged_present", "creates without an answer, present (not an error)"),
    ("unacknowledged_update_applied", "updates without an answer, applied (not an error)"),
    ("unacknowledged_delete_applied", "deletes without an answer, applied (not an error)"),
    ("not_found_responses", "404s on items users had created (client view)"),
)


def reconciliation_rows(items: dict) -> list[tuple[str, str]]:
    creates = (
        f"{items['acknowledged']} / {items['creates_attempted']} "
        f"({items['acknowledged_deleted']} deleted since; {items['preexisting']} items before)"
    )
    rows = [
        ("items reconciled against", items["read_from"]),
        ("creates acknowledged (201) / attempted", creates),
        ("items expected / found there", f"{items['expected_in_store']} / {items['in_store']}"),
    ]
    for figure, label in ITEM_ROWS:
        shown = ", ".join(entry["id"] for entry in items["examples"].get(figure, []))
        rows.append((label, f"{items[figure]}" + (f"  (e.g. {shown})" if shown else "")))
    return rows


def timeline_png(
    path: Path, seconds: list[dict], fault_s: float | None, restore_s: float | None
) -> None:
    """Requests/s and failures/s (top), responses/s per serving region (bottom), fault marker."""
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    xs = [row["second"] for row in seconds]
    top.plot(xs, [row["requests"] for row in seconds], label="requests/s")
    top.bar(xs, [row["failures"] for row in seconds], color="tab:red", label="failures/s")
    top.set_ylabel("per second")
    sites = sorted({site for row in seconds for site in row["sites"]})
    for site in sites:
        bottom.plot(xs, [row["sites"].get(site, 0) for row in seconds], label=site)
    bottom.set_ylabel("responses/s by region")
    bottom.set_xlabel("seconds since the first request")
    for axis in (top, bottom):
        if fault_s is not None:
            axis.axvline(fault_s, color="black", linestyle="--", label="fault")
        if restore_s is not None:
            axis.axvline(restore_s, color="green", linestyle=":", label="restore")
        axis.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".timeline.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        Path(tmp).unlink(missing_ok=True)
