"""The results table and the timeline plot of a run (made-up summaries)."""

from __future__ import annotations

from matplotlib.axes import Axes

from loadtests import report

RUN = {
    "requests": 1000,
    "rps": 20.0,
    "p50_ms": 10.0,
    "p95_ms": 20.0,
    "p99_ms": 30.0,
    "failures": 16,
    "failure_ratio": 0.016,
    "failed_gets": 12,
    "get_requests": 900,
}


def cycle(at_s, failures, recovery_s, failback_s=None):
    phase = {"p50": 10.0, "p99": 25.0, "requests": 100}
    return {
        "at_s": at_s,
        "in_flight": 3,
        "failures": failures,
        "first_failure_s": 0.0,
        "last_failure_s": 1.0,
        "error_window_s": 1.0,
        "write_gap_s": 1.51,
        "latency_ms": {"before": phase, "during": {**phase, "p99": 900.0}, "after": phase},
        "recovery_s": recovery_s,
        "sustained_recovery_s": 2.11,
        "failback_s": failback_s,
        "retried": 2,
        "replayed": 1,
    }


FAULTS = {
    "count": 2,
    "primary_site": "region-a",
    "failures_per_fault": [6, 10],
    "failures": {"min": 6, "median": 8.0, "max": 10},
    "in_flight_per_fault": [3, 4],
    "min_in_flight": 3,
    "worst_recovery_s": None,
    "worst_sustained_recovery_s": 2.11,
    "worst_write_gap_s": 1.51,
    "retried": 4,
    "replayed": 2,
    "faults": [cycle(10.0, 6, 0.51, failback_s=0.01), cycle(30.0, 10, None)],
}

STORE = {
    "unavailable_responses": 30,
    "first_503_s": 0.0,
    "unavailable_window_s": 2.91,
    "failures": 2,
    "unavailable_without_retry_after": 1,
    "recovery_after_restore_s": 0.51,
    "last_failure_after_restore_s": 0.21,
}


def rows(table: str) -> dict[str, str]:
    """label -> value of each row (two spaces or more between them)."""
    return dict(line.strip().split("  ", 1) for line in table.splitlines())


def row(table: str, label: str) -> str:
    return rows(table)[label].strip()


def test_several_faults_show_the_spread_and_the_worst_of_them():
    table = report.results_table({**RUN, "faults": FAULTS})
    assert row(table, "faults") == "2"
    assert row(table, "failures per fault (min / median / max)") == "6, 10 (6 / 8.0 / 10)"
    assert row(table, "in flight at each fault") == "3, 4"
    assert row(table, "worst recovery (fault -> 1st success elsewhere)") == "-"
    assert row(table, "worst sustained recovery (99% for 5 s)") == "2.110 s"
    assert row(table, "worst time without a successful write") == "1.510 s"
    assert row(table, "writes retried / replayed in the faults") == "4 / 2"


def test_each_fault_has_one_compact_row():
    table = report.results_table({**RUN, "faults": FAULTS})
    assert row(table, "fault 1 at 10.0 s") == (
        "in flight 3, failures 6, recovery 0.510 s, sustained 2.110 s, write gap 1.510 s, "
        "p50/p99 before 10/25 ms, during 10/900 ms, after 10/25 ms, failback 0.010 s"
    )
    second = row(table, "fault 2 at 30.0 s")
    assert "recovery -," in second and second.endswith("failback -")


def test_a_run_without_several_faults_has_no_fault_rows():
    assert "fault 1 at" not in report.results_table(RUN)
    assert "worst sustained recovery" not in report.results_table(RUN)


def test_a_store_drill_counts_anything_but_a_503_with_retry_after_as_failures():
    table = report.results_table({**RUN, "store_fault": STORE})
    assert row(table, "failures (anything but 503 + Retry-After)") == "2"
    assert row(table, "503s without Retry-After") == "1"
    assert row(table, "503s with Retry-After while the store was away") == "30"


def test_retried_and_replayed_writes_have_a_row_when_the_runner_counts_them():
    writes = {"retried": 5, "retried_after_409": 4, "retried_after_503": 1, "replayed": 3,
              "replayed_unasked": 2}
    table = report.results_table({**RUN, "writes": writes})
    label = "writes retried (409 / 503) / replayed (unasked)"
    assert row(table, label) == "5 (4 / 1) / 3 (2)"
    assert label not in report.results_table(RUN)


SECONDS = [{"second": s, "requests": 10, "failures": s % 2, "sites": {"a": 10}} for s in range(60)]


def drawn_lines(monkeypatch) -> list[tuple[float, str | None]]:
    """Records every vertical line the plot draws: (x, legend label)."""
    lines = []
    axvline = Axes.axvline

    def recording(axis, x, *args, **kwargs):
        lines.append((x, kwargs.get("label")))
        return axvline(axis, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvline", recording)
    return lines


def test_the_timeline_marks_every_fault_and_restore_naming_each_once(tmp_path, monkeypatch):
    lines = drawn_lines(monkeypatch)
    path = tmp_path / "timeline.png"
    report.timeline_png(path, SECONDS, marks=[(10.0, 20.0), (30.0, None), (40.0, 50.0)])
    per_axis = [(10.0, "fault"), (20.0, "restore"), (30.0, None), (40.0, None), (50.0, None)]
    assert lines == per_axis * 2  # top and bottom
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_timeline_still_takes_one_fault_and_restore(tmp_path, monkeypatch):
    lines = drawn_lines(monkeypatch)
    report.timeline_png(tmp_path / "timeline.png", SECONDS, 10.0, 20.0)
    assert lines == [(10.0, "fault"), (20.0, "restore")] * 2
