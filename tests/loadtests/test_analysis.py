"""Analysis of per-request records (pure functions, fed with made-up records)."""

from __future__ import annotations

import json

import pytest

from loadtests import analysis
from loadtests.reconciliation import DEFECTS

PRIMARY, SECONDARY = "region-a", "region-b"


def record(t, method="GET", status=200, site=PRIMARY, outcome="ok", ms=10.0, item=None, **flags):
    """One request; flags: retry_after=True, replayed=True."""
    return {
        "t": t,
        "method": method,
        "name": "/api/TodoItem",
        "status": status,
        "ms": ms,
        "site": site,
        "outcome": outcome,
        "item": item,
        **flags,
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
    records += [
        record(10.0 + t / 10, status=503, outcome="fail", retry_after=True) for t in range(30)
    ]
    records += [record(12.5, method="POST", status=0, site=None, outcome="fail")]
    records += [record(13.5 + t / 10) for t in range(20)]
    records += [record(13.2, status=500, outcome="fail")]
    summary = analysis.store_fault_summary(records, fault_at=10.0, restore_at=13.0)
    assert summary == {
        "unavailable_responses": 30,
        "first_503_s": 0.0,
        "unavailable_window_s": 2.91,
        "failures": 2,
        "unavailable_without_retry_after": 0,
        "recovery_after_restore_s": 0.51,
        "last_failure_after_restore_s": 0.21,
    }
    assert analysis.request_stats(records)["server_errors"] == 1


def test_in_a_store_drill_anything_but_a_503_with_retry_after_is_a_failure():
    records = [record(t / 10) for t in range(100)]
    records += [
        record(10.0, status=503, outcome="fail", retry_after=True),
        record(10.1, method="POST", status=503, outcome="retried", retry_after=True),
        record(10.2, status=503, outcome="fail"),
        record(10.3, status=502, site=None, outcome="fail"),
        record(10.4, method="PUT", status=0, site=None, outcome="fail"),
        record(10.5, status=504, site=None, outcome="fail"),
    ]
    summary = analysis.store_fault_summary(records, fault_at=10.0, restore_at=None)
    assert summary["failures"] == 4
    assert summary["unavailable_responses"] == 2
    assert summary["unavailable_without_retry_after"] == 1


def test_failures_before_the_store_fault_are_not_the_drill_s():
    records = [record(5.0, status=502, outcome="fail"), record(10.0, status=0, outcome="fail")]
    assert analysis.store_fault_summary(records, fault_at=8.0, restore_at=None)["failures"] == 1


def test_a_retried_answer_is_neither_a_success_nor_a_failure_in_the_request_stats():
    records = [record(0.0), record(0.1, status=409, outcome="retried", retry_after=True)]
    records += [record(0.2, status=500, outcome="fail")]
    stats = analysis.request_stats(records)
    assert (stats["requests"], stats["failures"], stats["failure_ratio"]) == (3, 1, 0.5)


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


# -- several faults in one run (fault_cycles) ---------------------------------------------------


def fault(at, restore=None):
    return {"fault_time": at, "restore_time": restore}


def two_fault_drill():
    """A request every 0.1 s for 50 s (a POST at every x.5 s), 10 ms each. Fault 1 at 10 s:
    failures for 0.5 s, the secondary from 10.5 s (with one more failure at 12 s), the primary
    again from the restore at 20 s. Fault 2 at 30 s: failures for 1 s, the secondary from 31 s,
    the primary again from the restore at 40 s."""
    records = []
    for k in range(500):
        failing = 100 <= k < 105 or k == 120 or 300 <= k < 310
        site = SECONDARY if 105 <= k < 200 or 310 <= k < 400 else PRIMARY
        records.append(
            record(
                k / 10,
                method="POST" if k % 10 == 5 else "GET",
                status=0 if failing else 200,
                site=None if failing else site,
                outcome="fail" if failing else "ok",
            )
        )
    return records


TWO_FAULTS = [fault(10.0, 20.0), fault(30.0, 40.0)]


def test_each_fault_has_its_own_failures_recovery_and_failback():
    first, second = analysis.fault_cycles(two_fault_drill(), TWO_FAULTS)["faults"]
    assert {key: first[key] for key in ("at_s", "failures", "recovery_s", "failback_s")} == {
        "at_s": 10.0,
        "failures": 6,
        "recovery_s": 0.51,
        "failback_s": 0.01,
    }
    assert (first["first_failure_s"], first["last_failure_s"], first["error_window_s"]) == (
        0.0,
        2.01,
        2.01,
    )
    assert (second["at_s"], second["failures"], second["recovery_s"]) == (30.0, 10, 1.01)
    assert second["error_window_s"] == 0.91


def test_the_faults_aggregate_gives_the_spread_and_the_worst_of_the_faults():
    cycles = analysis.fault_cycles(two_fault_drill(), TWO_FAULTS)
    assert cycles["count"] == 2 and cycles["primary_site"] == PRIMARY
    assert cycles["failures_per_fault"] == [6, 10]
    assert cycles["failures"] == {"min": 6, "median": 8.0, "max": 10}
    assert (cycles["in_flight_per_fault"], cycles["min_in_flight"]) == ([1, 1], 1)
    assert cycles["worst_recovery_s"] == 1.01
    assert cycles["worst_sustained_recovery_s"] == 2.11
    assert cycles["worst_write_gap_s"] == 1.51


def test_phases_are_cut_at_the_previous_restore_the_fault_and_the_restore():
    second = analysis.fault_cycles(two_fault_drill(), TWO_FAULTS)["faults"][1]
    counts = {phase: figures["requests"] for phase, figures in second["latency_ms"].items()}
    assert counts == {"before": 100, "during": 100, "after": 100}


def test_latency_per_phase_is_p50_and_p99_of_the_answers_ending_in_it():
    records = [record(t / 10, ms=10.0) for t in range(100)]
    records += [record(10.0 + t / 10, ms=100.0) for t in range(9)] + [record(11.0, ms=1000.0)]
    records += [record(10.5, status=409, outcome="retried", ms=9000.0, retry_after=True)]
    records += [record(20.0 + t / 10, ms=20.0) for t in range(10)]
    latency = analysis.fault_cycles(records, [fault(10.0, 15.0)])["faults"][0]["latency_ms"]
    assert latency == {
        "before": {"p50": 10.0, "p99": 10.0, "requests": 100},
        "during": {"p50": 100.0, "p99": 1000.0, "requests": 10},
        "after": {"p50": 20.0, "p99": 20.0, "requests": 10},
    }


def test_an_empty_phase_has_no_latency():
    records = [record(t) for t in range(10)]
    latency = analysis.fault_cycles(records, [fault(20.0)])["faults"][0]["latency_ms"]
    assert latency["during"] == {"p50": None, "p99": None, "requests": 0}
    assert latency["after"]["requests"] == 0


def test_in_flight_counts_only_the_requests_spanning_the_fault_instant():
    records = [
        record(5.0),  # over long before
        record(9.0, ms=2000.0),  # 9 s -> 11 s: in flight
        record(9.5, ms=500.0),  # ends at the fault instant: over
        record(10.0, status=0, site=None, outcome="fail", ms=3000.0),  # starts at it: in flight
        record(10.001, ms=5000.0),  # starts after it
    ]
    assert analysis.fault_cycles(records, [fault(10.0)])["faults"][0]["in_flight"] == 2


def test_min_in_flight_is_the_fewest_requests_in_flight_at_any_fault():
    records = [record(t / 10, ms=150.0) for t in range(200)]  # two in flight at any instant
    records += [record(14.95, ms=500.0)]
    cycles = analysis.fault_cycles(records, [fault(5.0, 8.0), fault(15.0)])
    assert (cycles["in_flight_per_fault"], cycles["min_in_flight"]) == ([2, 3], 2)


def test_without_a_successful_write_during_the_fault_the_write_gap_is_the_whole_fault():
    records = [record(t / 10, method="POST") for t in range(100)]
    records += [record(10.0 + t / 10) for t in range(40)]  # reads only
    records += [record(10.5, method="PUT", status=0, site=None, outcome="fail")]
    records += [record(20.0 + t / 10, method="POST") for t in range(10)]
    cycle = analysis.fault_cycles(records, [fault(10.0, 14.0)])["faults"][0]
    assert cycle["write_gap_s"] == 4.0


def test_the_write_gap_is_the_longest_time_between_successful_writes_in_the_fault():
    records = [record(9.0, method="POST")]
    records += [record(t, method=m) for t, m in ((11.0, "POST"), (11.5, "DELETE"), (12.0, "GET"))]
    records += [record(20.0, method="PATCH")]
    cycle = analysis.fault_cycles(records, [fault(10.0, 14.0)])["faults"][0]
    assert cycle["write_gap_s"] == 2.49  # last write ends at 11.51, restore at 14


def test_the_write_gap_after_the_restore_is_measured_apart():
    """A store's write region moving back pauses writes after the restore too."""
    records = [record(9.0, method="POST"), record(12.0, method="POST")]
    records += [record(15.0, method="PUT"), record(21.0, method="POST"), record(22.0)]
    cycle = analysis.fault_cycles(records, [fault(10.0, 14.0)])["faults"][0]
    assert cycle["write_gap_s"] == 2.01  # 10 -> 12.01 (the POST ends); 12.01 -> 14 is 1.99
    assert cycle["write_gap_after_s"] == 6.0  # the PUT ends at 15.01, the next at 21.01
    unrestored = analysis.fault_cycles(records, [fault(10.0)])["faults"][0]
    assert unrestored["write_gap_after_s"] is None


def test_a_fault_never_restored_measures_the_write_gap_to_the_end_of_the_run():
    records = [record(t, method="POST") for t in range(10)] + [record(15.0)]
    cycle = analysis.fault_cycles(records, [fault(9.5)])["faults"][0]
    assert cycle["write_gap_s"] == 5.51  # the last write ends at 9.01, the run at 15.01


def test_sustained_recovery_is_the_first_moment_of_five_seconds_at_99_percent():
    """Fault 1: failures until 10.5 s, one more at 12 s: sustained from the success after it."""
    first = analysis.fault_cycles(two_fault_drill(), TWO_FAULTS)["faults"][0]
    assert (first["recovery_s"], first["sustained_recovery_s"]) == (0.51, 2.11)


def test_a_fault_without_effect_is_sustained_at_once():
    records = [record(t / 10) for t in range(200)]
    cycle = analysis.fault_cycles(records, [fault(10.0, 12.0)])["faults"][0]
    assert (cycle["sustained_recovery_s"], cycle["failures"]) == (0.0, 0)


def test_failures_every_second_never_make_a_sustained_recovery():
    records = [record(t / 10) for t in range(100)]
    records += [
        record(10.0 + k / 10, status=502, site=None, outcome="fail")
        if k % 10 == 0
        else record(10.0 + k / 10, site=SECONDARY)
        for k in range(300)
    ]
    cycle = analysis.fault_cycles(records, [fault(10.0)])["faults"][0]
    assert cycle["recovery_s"] == 0.11
    assert cycle["sustained_recovery_s"] is None


def test_a_sustained_recovery_needs_five_seconds_of_run_left():
    records = [record(t / 10) for t in range(100)]
    records += [record(10.0, status=0, site=None, outcome="fail")]
    records += [record(10.1 + t / 10, site=SECONDARY) for t in range(40)]  # run ends at 14.01
    cycle = analysis.fault_cycles(records, [fault(10.0)])["faults"][0]
    assert cycle["recovery_s"] == 0.11
    assert cycle["sustained_recovery_s"] is None


def test_retried_answers_neither_succeed_nor_fail():
    """Only 409 + Retry-After answers for 6 s after the fault: no failure, and not sustained
    (retried answers are no success); then successes, with more retried answers among them
    (they lower no success ratio): sustained from the first success."""
    records = [record(t / 10) for t in range(100)]
    records += [retried(10.0 + t / 10) for t in range(60)]
    records += [record(16.0 + t / 10, site=SECONDARY) for t in range(100)]
    records += [retried(16.05 + t / 2) for t in range(20)]
    cycle = analysis.fault_cycles(records, [fault(10.0)])["faults"][0]
    assert (cycle["failures"], cycle["error_window_s"], cycle["retried"]) == (0, 0.0, 80)
    assert cycle["sustained_recovery_s"] == 6.01
    assert cycle["latency_ms"]["during"]["requests"] == 100


def retried(t):
    return record(t, "POST", 409, outcome="retried", ms=3000.0, retry_after=True)


def test_replayed_answers_are_counted_per_fault():
    records = [record(t) for t in range(5)]
    records += [record(6.0, "POST", 201, replayed=True), record(7.0, "PUT", replayed=True)]
    records += [record(9.0, "POST", 201, replayed=True)]
    cycles = analysis.fault_cycles(records, [fault(5.5, 6.5), fault(8.0)])
    assert [c["replayed"] for c in cycles["faults"]] == [2, 1]
    assert (cycles["replayed"], cycles["retried"]) == (3, 0)


def test_one_fault_without_recovery_makes_the_worst_recovery_none():
    records = [record(t / 10) for t in range(100)]
    records += [record(10.0 + t / 10, site=SECONDARY) for t in range(100)]
    records += [record(20.0 + t / 10, status=0, site=None, outcome="fail") for t in range(100)]
    cycles = analysis.fault_cycles(records, [fault(10.0), fault(20.0)])
    assert [c["recovery_s"] for c in cycles["faults"]] == [0.01, None]
    assert cycles["worst_recovery_s"] is None
    assert cycles["worst_sustained_recovery_s"] is None


def test_a_fault_never_restored_runs_until_the_next_fault_and_has_no_failback():
    records = [record(t / 10) for t in range(300)]
    first, second = analysis.fault_cycles(records, [fault(10.0), fault(20.0, 25.0)])["faults"]
    assert first["latency_ms"]["during"]["requests"] == 100
    assert first["latency_ms"]["after"]["requests"] == 0
    assert first["failback_s"] is None
    assert second["latency_ms"]["before"]["requests"] == 0


def test_no_fault_makes_an_empty_aggregate():
    cycles = analysis.fault_cycles([record(t) for t in range(5)], [])
    assert cycles["count"] == 0 and cycles["faults"] == []
    assert cycles["failures"] == {"min": None, "median": None, "max": None}
    assert (cycles["min_in_flight"], cycles["worst_write_gap_s"]) == (None, None)


def test_faults_out_of_time_order_are_refused():
    with pytest.raises(ValueError, match="faults"):
        analysis.fault_cycles([record(0.0)], [fault(10.0, 20.0), fault(15.0)])


def test_min_in_flight_and_sustained_recovery_thresholds_break_with_a_readable_line():
    summary = {"faults": {"min_in_flight": 0, "worst_sustained_recovery_s": 7.5}}
    thresholds = {"min_in_flight_at_fault": 1, "max_sustained_recovery_seconds": 5.0}
    assert analysis.breaches(summary, thresholds) == [
        "min-in-flight-at-fault 1 broken: faults.min_in_flight = 0",
        "max-sustained-recovery-seconds 5.0 broken: faults.worst_sustained_recovery_s = 7.5",
    ]
    passing = {"faults": {"min_in_flight": 1, "worst_sustained_recovery_s": 5.0}}
    assert analysis.breaches(passing, thresholds) == []


def test_a_run_without_faults_breaks_the_fault_thresholds():
    thresholds = {"min_in_flight_at_fault": 1, "max_write_gap_seconds": 10.0}
    assert analysis.breaches({}, thresholds) == [
        "min-in-flight-at-fault 1 broken: faults.min_in_flight = None",
        "max-write-gap-seconds 10.0 broken: faults.worst_write_gap_s = None",
    ]


def test_the_fault_thresholds_read_the_fault_cycles():
    summary = {"faults": analysis.fault_cycles(two_fault_drill(), TWO_FAULTS)}
    thresholds = {"max_sustained_recovery_seconds": 2.0, "max_write_gap_seconds": 1.5}
    assert analysis.breaches(summary, thresholds) == [
        "max-sustained-recovery-seconds 2.0 broken: faults.worst_sustained_recovery_s = 2.11",
        "max-write-gap-seconds 1.5 broken: faults.worst_write_gap_s = 1.51",
    ]


def test_failures_and_store_failures_are_thresholds():
    summary = {"failures": 3, "store_fault": {"failures": 1}}
    thresholds = {"max_failures": 2, "max_store_failures": 0}
    assert analysis.breaches(summary, thresholds) == [
        "max-failures 2 broken: failures = 3",
        "max-store-failures 0 broken: store_fault.failures = 1",
    ]
    assert analysis.breaches({"failures": 3}, {"max_store_failures": 0}) == [
        "max-store-failures 0 broken: store_fault.failures = None"
    ]


def test_the_sent_tokens_of_every_process_are_read(tmp_path):
    (tmp_path / "sent-host-1.txt").write_text("a" * 32 + "\n" + "b" * 32 + "\n")
    (tmp_path / "sent-host-2.txt").write_text("b" * 32 + "\n")
    (tmp_path / "records-host-1.jsonl").write_text("")
    assert analysis.load_sent_tokens(tmp_path) == {"a" * 32, "b" * 32}


def test_cross_owner_reads_count_the_checked_reads_that_held_another_callers_item():
    records = [
        record(0, cross_owner=0),
        record(1, cross_owner=2, outcome="fail"),
        record(2, cross_owner=1, outcome="fail"),
        record(3, method="POST", status=201),  # a write: not a checked read
    ]
    assert analysis.cross_owner_reads(records) == {"reads": 2, "checked": 3, "items": 3}
    assert analysis.breaches({"cross_owner": analysis.cross_owner_reads(records)},
                             {"max_cross_owner_reads": 0}) == [
        "max-cross-owner-reads 0 broken: cross_owner.reads = 2"
    ]


def test_a_run_that_checked_no_read_for_owners_breaks_the_cross_owner_goal():
    """Users without identities of their own check nothing: no figure, and the goal is not met."""
    summary = {"cross_owner": analysis.cross_owner_reads([record(0), record(1)])}
    assert summary["cross_owner"] is None
    assert analysis.breaches(summary, {"max_cross_owner_reads": 0}) == [
        "max-cross-owner-reads 0 broken: cross_owner.reads = None"
    ]
