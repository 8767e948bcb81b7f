"""The results table and the timeline plot of a run (made-up summaries)."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb

from loadtests import release_drill, report, run
from loadtests.run import RunSpec
from tests.loadtests.records import request
from tools.delivery.release import Rollout, Step

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


def test_cross_owner_reads_have_a_row_when_the_users_had_identities_of_their_own():
    cross = {"reads": 2, "checked": 40, "items": 3}
    table = report.results_table({**RUN, "cross_owner": cross})
    assert row(table, "cross-owner reads") == (
        "2 (of 40 lists and reads checked; 3 items of other callers)"
    )
    assert "cross-owner reads" not in report.results_table({**RUN, "cross_owner": None})


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


# -- the release run's timeline: each release's steps marked -------------------------------------


def step(region, name, started, ended, ok=True):
    """One step of summary.json `rollout` (Rollout.as_dict): seconds since the first request."""
    return {"region": region, "step": name, "started_at_s": started, "ended_at_s": ended,
            "ok": ok, "detail": ""}


SWAPPED_BACK = {  # swapped in, failed its bake, swapped back
    "5xx after the swap": {"steps": [
        step("secondary", "deploy", 40.0, 41.0),
        step("secondary", "warm up", 41.0, 42.0),
        step("secondary", "smoke staging", 42.0, 42.5),
        step("secondary", "swap", 42.5, 45.0),
        step("secondary", "smoke production", 45.0, 45.5),
        step("secondary", "bake", 45.5, 57.5, ok=False),
        step("secondary", "swap back", 57.6, 60.0),
    ]},
}
FAILED_SMOKE = {  # stopped before any swap
    "fails its smoke": {"steps": [
        step("secondary", "deploy", 10.0, 11.0),
        step("secondary", "warm up", 11.0, 12.0),
        step("secondary", "smoke staging", 12.0, 13.0, ok=False),
    ]},
}


def step_lines(axis) -> dict[float, str]:
    """x -> colour of the release steps' lines."""
    return {line.get_xdata()[0]: line.get_color() for line in axis.lines
            if line.get_gid() == report.STEP_GID}


def step_labels(axis) -> dict[float, tuple[str, str]]:
    """x -> (text, colour) of the release steps' labels."""
    return {text.get_position()[0]: (text.get_text().strip(), text.get_color())
            for text in axis.texts if text.get_gid() == report.STEP_GID}


def bakes(axis) -> list[tuple[float, float]]:
    return [(p.get_x(), p.get_x() + p.get_width()) for p in axis.patches
            if p.get_gid() == report.BAKE_GID]


def is_red(color) -> bool:
    red, green, blue = to_rgb(color)
    return red > 0.6 and green < 0.3 and blue < 0.3


def test_a_release_is_marked_where_it_starts_swaps_fails_and_swaps_back():
    figure = report.timeline_figure(SECONDS, rollouts=SWAPPED_BACK)
    top, bottom = figure.axes
    name = "5xx after the swap"
    assert {x: text for x, (text, _) in step_labels(top).items()} == {
        40.0: f"{name}: release starts",
        42.5: f"{name}: swap secondary",  # from its start: callers may get the new version
        57.5: f"{name}: bake secondary FAILED",  # where it failed: the driver swaps back
        57.6: f"{name}: swap back secondary",
    }
    for axis in (top, bottom):
        assert sorted(step_lines(axis)) == [40.0, 42.5, 57.5, 57.6]
        assert bakes(axis) == [(45.5, 57.5)]
    plt.close(figure)


def test_a_failed_step_is_drawn_red_and_the_others_are_not():
    figure = report.timeline_figure(SECONDS, rollouts={**FAILED_SMOKE, **SWAPPED_BACK})
    top = figure.axes[0]
    failed = {13.0, 57.5}  # smoke staging of the first release, bake of the second
    assert {x for x, color in step_lines(top).items() if is_red(color)} == failed
    assert {x for x, (_, color) in step_labels(top).items() if is_red(color)} == failed
    assert step_labels(top)[13.0][0] == "fails its smoke: smoke staging secondary FAILED"
    plt.close(figure)


def test_a_seconds_counts_are_drawn_mid_way_through_that_second():
    figure = report.timeline_figure(SECONDS[:3])
    requests = figure.axes[0].lines[0]
    assert list(requests.get_xdata()) == [0.5, 1.5, 2.5]  # row `second` s counts [s, s+1)
    plt.close(figure)


def test_the_release_steps_are_marked_on_the_runs_own_time_axis(tmp_path, monkeypatch):
    """The marks (release_drill.add_to_report) and the plotted seconds (run.summarise) count
    from the same origin: the swap's line falls in the second the new site starts answering."""
    first = 1_700_000_000.0
    swap_at = first + 12.25
    (tmp_path / "records").mkdir()
    records = [
        {**request(first + n / 20, "GET", 200), "site": "old" if n / 20 < 12.25 else "new"}
        for n in range(20 * 30)
    ]
    (tmp_path / "records" / "records-1.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in records))
    rollout = Rollout("good.zip", [
        Step("secondary", "deploy", first + 9.0, first + 10.0, True),
        Step("secondary", "swap", swap_at, first + 14.0, True),
        Step("secondary", "bake", first + 14.5, first + 20.0, True),
    ])
    drawn, figure_of = [], report.timeline_figure

    def recording(*args, **kwargs):
        drawn.append(figure_of(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(report, "timeline_figure", recording)
    summary = run.summarise(RunSpec("records", "", "", tmp_path))  # writes its own timeline
    release_drill.add_to_report(summary, tmp_path, {"good": rollout}, {"secondary": "new"})

    assert json.loads((tmp_path / "summary.json").read_text())["rollout"]["good"]["steps"][1][
        "started_at_s"] == 12.25
    top = drawn[-1].axes[0]
    swap_x = next(x for x, (text, _) in step_labels(top).items() if "swap" in text)
    assert swap_x == 12.25
    first_new = next(row["second"] for row in summary["per_second"] if "new" in row["sites"])
    assert int(swap_x) == first_new == 12
