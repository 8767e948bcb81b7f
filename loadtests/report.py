"""Reports of a run: the results table (text) and the timeline plot (PNG, matplotlib Agg)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from loadtests.analysis import SUSTAIN_SECONDS, SUSTAINED_SUCCESS_RATIO


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
    faults = summary.get("faults")
    if faults:
        rows += fault_rows(faults)
    if store:
        rows += [
            (
                "503s with Retry-After while the store was away",
                _number(store["unavailable_responses"]),
            ),
            ("503 window (first -> last)", _number(store["unavailable_window_s"], " s", 3)),
            ("failures (anything but 503 + Retry-After)", _number(store["failures"])),
            ("503s without Retry-After", _number(store["unavailable_without_retry_after"])),
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
    writes = summary.get("writes")
    if writes:
        rows.append(
            (
                "writes retried (409 / 503) / replayed (unasked)",
                (
                    f"{writes['retried']} ({writes.get('retried_after_409', '-')} / "
                    f"{writes.get('retried_after_503', '-')}) / {writes['replayed']} "
                    f"({writes.get('replayed_unasked', '-')})"
                ),
            )
        )
    cross = summary.get("cross_owner")
    if cross:
        checked = f"of {cross['checked']} lists and reads checked"
        found = f"{cross['items']} items of other callers"
        rows.append(("cross-owner reads", f"{cross['reads']} ({checked}; {found})"))
    items = summary.get("items")
    if items:
        rows += reconciliation_rows(items)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def fault_rows(faults: dict) -> list[tuple[str, str]]:
    """The rows of several faults (analysis.fault_cycles): the spread, the worst, each fault."""
    spread = faults["failures"]
    per_fault = ", ".join(str(n) for n in faults["failures_per_fault"]) or "-"
    sustained = f"{SUSTAINED_SUCCESS_RATIO:.0%} for {SUSTAIN_SECONDS:g} s"
    rows = [
        ("faults", _number(faults["count"])),
        (
            "failures per fault (min / median / max)",
            f"{per_fault} ({' / '.join(_number(spread[k]) for k in ('min', 'median', 'max'))})",
        ),
        ("in flight at each fault", ", ".join(map(str, faults["in_flight_per_fault"])) or "-"),
        (
            "worst recovery (fault -> 1st success elsewhere)",
            _number(faults["worst_recovery_s"], " s", 3),
        ),
        (
            f"worst sustained recovery ({sustained})",
            _number(faults["worst_sustained_recovery_s"], " s", 3),
        ),
        ("worst time without a successful write", _number(faults["worst_write_gap_s"], " s", 3)),
        ("writes retried / replayed in the faults", f"{faults['retried']} / {faults['replayed']}"),
    ]
    for n, cycle in enumerate(faults["faults"], 1):
        rows.append((f"fault {n} at {_number(cycle['at_s'], ' s')}", _cycle_text(cycle)))
    return rows


def _cycle_text(cycle: dict) -> str:
    latency = ", ".join(
        f"{phase} {_number(figures['p50'], '', 0)}/{_number(figures['p99'], '', 0)} ms"
        for phase, figures in cycle["latency_ms"].items()
    )
    return (
        f"in flight {cycle['in_flight']}, failures {cycle['failures']}, "
        f"recovery {_number(cycle['recovery_s'], ' s', 3)}, "
        f"sustained {_number(cycle['sustained_recovery_s'], ' s', 3)}, "
        f"write gap {_number(cycle['write_gap_s'], ' s', 3)}, p50/p99 {latency}, "
        f"failback {_number(cycle['failback_s'], ' s', 3)}"
        + (
            f", app serving {cycle['app_serving_at_kill']} at the kill"
            if "app_serving_at_kill" in cycle
            else ""
        )
        + (
            f", traffic moved by Traffic Manager after {_number(cycle['traffic_moved_s'], ' s')}"
            f" and back {_number(cycle.get('traffic_back_s'), ' s')} after the restore"
            if "traffic_moved_s" in cycle
            else ""
        )
    )


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
    if "retried_creates" in items:
        rows += [
            (
                "creates sent again after 409/503 + Retry-After",
                (
                    f"{items['retried_creates']}, of which {items['retried_creates_not_single']} "
                    "without exactly one item (none once deleted)"
                ),
            ),
            (
                "deliberate replays: same item / another item",
                (
                    f"{items['deliberate_replays']}: {items['replays_same_item']} / "
                    f"{items['replays_other_item']}"
                ),
            ),
        ]
    return rows


# The timeline of a release run (summary.json `rollout`, loadtests.release_drill): a line where
# each release starts and at each step that changes what callers may see, a red one at each
# failed step, each labelled; the bakes shaded.
CALLER_VISIBLE_STEPS = ("swap", "swap back")
FAILED_COLOR = "tab:red"
STEP_STYLE = {  # kind: (colour, legend label)
    "release": ("tab:gray", "release starts"),
    "swap": ("tab:purple", "swap / swap back"),
    "failed": (FAILED_COLOR, "step failed"),
}
BAKE_STYLE = {False: ("tab:green", "bake"), True: (FAILED_COLOR, "bake failed")}
STEP_GID, BAKE_GID = "release step", "bake"  # the artists' ids (a test finds them by these)
LABEL_GAP_S = 2.0  # closer marks get their labels on either side of their lines


@dataclass(frozen=True)
class StepMark:
    """A release step's line: `x` in seconds since the first request (the plot's x axis)."""

    x: float
    label: str
    kind: str  # a key of STEP_STYLE


@dataclass(frozen=True)
class BakeWindow:
    start: float
    end: float
    failed: bool


def release_marks(rollouts: dict) -> list[StepMark]:
    """Per release (name -> Rollout.as_dict(origin) figures): where it starts, each swap and
    swap back where it starts (callers may get the other version from then on), each failed
    step where it failed (its end: the driver stops or swaps back from there)."""
    marks = []
    for name, figures in rollouts.items():
        steps = figures["steps"]
        if steps:
            marks.append(StepMark(steps[0]["started_at_s"], f"{name}: release starts", "release"))
        for step in steps:
            what = f"{name}: {step['step']} {step['region']}"
            if step["ok"] is False:
                marks.append(StepMark(_ended(step), f"{what} FAILED", "failed"))
            elif step["step"] in CALLER_VISIBLE_STEPS:
                marks.append(StepMark(step["started_at_s"], what, "swap"))
    return sorted(marks, key=lambda mark: mark.x)


def bake_windows(rollouts: dict) -> list[BakeWindow]:
    return [
        BakeWindow(step["started_at_s"], _ended(step), step["ok"] is False)
        for figures in rollouts.values()
        for step in figures["steps"]
        if step["step"] == "bake"
    ]


def _ended(step: dict) -> float:
    """A step's end (its start while it had not ended when the figures were taken)."""
    return step["started_at_s"] if step["ended_at_s"] is None else step["ended_at_s"]


def timeline_figure(
    seconds: list[dict],
    marks: list[tuple[float | None, float | None]] = (),
    rollouts: dict | None = None,
) -> Figure:
    """Requests/s and failures/s (top), responses/s per serving region (bottom); a marker per
    fault and restore (`marks`: (fault_s, restore_s) pairs) and the release steps of
    `rollouts` (release_marks, bake_windows). Every x is in seconds since the first request, the
    origin of analysis.per_second (whose row `second` s counts the answers of [s, s+1): drawn
    mid-way, at s + 0.5)."""
    # The top plot is the taller: it holds the steps' labels.
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), height_ratios=(3, 2))
    xs = [row["second"] + 0.5 for row in seconds]
    top.plot(xs, [row["requests"] for row in seconds], label="requests/s")
    top.bar(xs, [row["failures"] for row in seconds], color="tab:red", label="failures/s")
    top.set_ylabel("per second")
    sites = sorted({site for row in seconds for site in row["sites"]})
    for site in sites:
        bottom.plot(xs, [row["sites"].get(site, 0) for row in seconds], label=site)
    bottom.set_ylabel("responses/s by region")
    bottom.set_xlabel("seconds since the first request")
    steps, bakes = release_marks(rollouts or {}), bake_windows(rollouts or {})
    for axis in (top, bottom):
        _mark_faults(axis, marks)
        _mark_release(axis, steps, bakes)
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside it
    _label_steps(top, steps)
    figure.tight_layout()
    return figure


def timeline_png(
    path: Path,
    seconds: list[dict],
    fault_s: float | None = None,
    restore_s: float | None = None,
    marks: list[tuple[float, float | None]] | None = None,
    rollouts: dict | None = None,
) -> None:
    """timeline_figure written to `path` atomically; `marks`, or else the one fault_s and
    restore_s."""
    figure = timeline_figure(
        seconds, marks if marks is not None else [(fault_s, restore_s)], rollouts
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".timeline.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        Path(tmp).unlink(missing_ok=True)


def _mark_faults(axis, marks: list[tuple[float | None, float | None]]) -> None:
    """A dashed line per fault, a dotted one per restore; each named once in the legend."""
    labels = {"fault": "fault", "restore": "restore"}
    for fault, restore in marks:
        if fault is not None:
            axis.axvline(fault, color="black", linestyle="--", label=labels.pop("fault", None))
        if restore is not None:
            axis.axvline(restore, color="green", linestyle=":", label=labels.pop("restore", None))


def _mark_release(axis, steps: list[StepMark], bakes: list[BakeWindow]) -> None:
    """A line per step, a shaded span per bake; each kind named once in the legend."""
    named: set = set()
    for bake in bakes:
        color, label = BAKE_STYLE[bake.failed]
        axis.axvspan(
            bake.start, bake.end, color=color, alpha=0.12, label=_once(named, label), gid=BAKE_GID
        )
    for step in steps:
        color, label = STEP_STYLE[step.kind]
        axis.axvline(step.x, color=color, linewidth=1.2, label=_once(named, label), gid=STEP_GID)


def _once(named: set, label: str) -> str | None:
    if label in named:
        return None
    named.add(label)
    return label


def _label_steps(axis, steps: list[StepMark]) -> None:
    """Each step's text beside its line, near the top; a mark close after another gets its
    text on the other side, so the two do not overlap."""
    align, previous = "right", None  # "right": the text ends at its line, on the left of it
    for step in steps:
        close = previous is not None and step.x - previous < LABEL_GAP_S
        align = ("left" if align == "right" else "right") if close else "right"
        axis.text(
            step.x,
            0.98,
            f" {step.label} ",
            transform=axis.get_xaxis_transform(),
            rotation=90,
            ha=align,
            va="top",
            fontsize=7,
            color=STEP_STYLE[step.kind][0],
            gid=STEP_GID,
        )
        previous = step.x
