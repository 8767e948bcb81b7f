"""Analysis of per-request records (pure functions, fed with made-up records)."""

from __future__ import annotations

import json

from loadtests import analysis
from loadtests.reconciliation import DEFECTS

PRIMARY, SECONDARY = "region-a", "region-b"


def record(t, method="GET", status=200, site=PRIMARY, outcome="ok", ms=10.0, item=None):
    return {
        "t": t,
        "method": method,
        "name": "/api/TodoItem",
        "status": status,
        "ms": ms,
        "site": site,
        "outcome": outcome,
        "item": item,
    }


def failover_records():
    """Primary until 10 s, fault at 10 s, two failures, secondary from 10.5 s, primary again
    from 20.3 s (restore at 20 s)."""
    records = [record(t / 10) for t in range(100)]
    records += [
        record(10.0, status=503, site=None, outcome="fail"),
        record(10.2, method="POST", status=503, site=None, outcome="fail"),
    ]
    records += [record(10.5 + t / 10, site=SECONDARY) for t in range(95)]
    records += [record(20.3 + t / 10) for t in range(50)]
    return records


def test_load_records_merges_every_process_file_in_time_order(tmp_path):
    (tmp_path / "records-host-1.jsonl").write_text(json.dumps(record(2.0)) + "\n")
    (tmp_path / "records-host-2.jsonl").write_text(
        json.dumps(record(1.0)) + "\n" + json.dumps(record(3.0)) + "\n"
    )
    assert [r["t"] for r in analysis.load_records(tmp_path)] == [1.0, 2.0, 3.0]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [analysis.percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]


def test_request_stats_count_failures_and_failed_gets():
    stats = analysis.request_stats(failover_records())
    assert (stats["requests"], stats["failures"], stats["failed_gets"]) == (247, 2, 1)
    assert stats["failure_ratio"] == 2 / 247


def test_request_stats_rps_is_requests_over_the_span():
    stats = analysis.request_stats([record(0.0, ms=0), record(1.0, ms=0), record(2.0, ms=0)])
    assert stats["rps"] == 1.5


def test_recovery_is_fault_to_first_success_from_the_other_region():
    summary = analysis.failover_summary(failover_records(), fault_at=10.0)
    assert summary["primary_site"] == PRIMARY
    assert summary["recovery_s"] == 0.51  # starts at 10.5, ends 10 ms later


def test_error_window_spans_the_failures_after_the_fault():
    window = analysis.error_window(failover_records(), since=10.0)
    assert window == {"first_failure_s": 0.0, "last_failure_s": 0.21, "error_window_s": 0.21}


def test_no_failures_means_an_empty_error_window():
    assert analysis.error_window([record(1.0)], since=0.0)["error_window_s"] == 0.0


def test_failback_is_restore_to_first_success_from_the_primary():
    summary = analysis.failover_summary(failover_records(), fault_at=10.0, restore_at=20.0)
    assert summary["failback_s"] == 0.31


def test_share_by_phase_shows_the_serving_region_moving():
    shares = analysis.failover_summary(failover_records(), 10.0, 20.0)["share_by_phase"]
    assert shares["before_fault"] == {PRIMARY: 1.0}
    assert shares["during_fault"] == {SECONDARY: 1.0}
    assert shares["after_restore"] == {PRIMARY: 1.0}


def test_no_success_from_another_region_means_no_recovery():
    records = [record(t) for t in range(5)] + [record(6, status=503, site=None, outcome="fail")]
    assert analysis.failover_summary(records, fault_at=5.5)["recovery_s"] is None


def test_per_second_counts_requests_failures_and_sites():
    rows = analysis.per_second(failover_records(), start=0.0)
    ten = next(row for row in rows if row["second"] == 10)
    assert ten["failures"] == 2 and ten["sites"] == {SECONDARY: 5}


def test_breaches_name_the_broken_threshold():
    summary = {"failure_ratio": 0.01, "recovery_s": 1.0, "failed_gets": 0}
    thresholds = {"max_failure_ratio": 0.001, "max_recovery_seconds": 2.0, "max_failed_gets": 0}
    assert analysis.breaches(summary, thresholds) == [
        "max-failure-ratio 0.001 broken: failure_ratio = 0.01"
    ]


def test_a_missing_recovery_breaks_the_recovery_threshold():
    assert analysis.breaches({"recovery_s": None}, {"max_recovery_seconds": 2.0})


def test_a_store_fault_reports_the_503_window_and_the_recovery_after_restart():
    records = [record(t / 10) for t in range(100)]
    records += [record(10.0 + t / 10, status=503, outcome="fail") for t in range(30)]
    records += [record(12.5, method="POST", status=0, site=None, outcome="fail")]
    records += [record(13.5 + t / 10) for t in range(20)]
    records += [record(13.2, status=500, outcome="fail")]
    summary = analysis.store_fault_summary(records, fault_at=10.0, restore_at=13.0)
    assert summary == {
        "unavailable_responses": 30,
        "first_503_s": 0.0,
        "unavailable_window_s": 2.91,
        "other_failures": 2,
        "recovery_after_restore_s": 0.51,
        "last_failure_after_restore_s": 0.21,
    }
    assert analysis.request_stats(records)["server_errors"] == 1


def test_each_reconciliation_defect_is_a_threshold_on_the_items_figures():
    thresholds = {analysis.item_threshold(name): 0 for name in DEFECTS}
    clean = {"items": {name: 0 for name in DEFECTS}}
    assert analysis.breaches(clean, thresholds) == []
    for name in DEFECTS:
        summary = {"items": {**clean["items"], name: 1}}
        assert analysis.breaches(summary, thresholds) == [
            f"{analysis.item_threshold(name).replace('_', '-')} 0 broken: items.{name} = 1"
        ]


def test_no_reconciliation_breaks_the_item_thresholds():
    """A run whose items were not reconciled cannot claim that nothing was lost."""
    assert analysis.breaches({}, {"max_items_missing": 0}) == [
        "max-items-missing 0 broken: items.missing = None"
    ]


def test_server_errors_are_a_threshold():
    assert analysis.breaches({"server_errors": 1}, {"max_server_errors": 0}) == [
        "max-server-errors 0 broken: server_errors = 1"
    ]
