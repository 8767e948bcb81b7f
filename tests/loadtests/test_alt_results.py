"""Azure Load Testing's Locust results, read by our analysis (`loadtests.analyse --alt-results`,
loadtests.alt_results), tested on a real result set: one short Locust run against the local
topology writes every request twice, as our records and as the service's engines write their
results CSV (locust_support's LOCUST_ALT_RESULTS_DIR stand-in), and the two analyses agree."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loadtests.topology import ROOT
from tests.loadtests.test_scenarios import run

# The header of the sample results file in Microsoft Learn, "Export test results from Azure Load
# Testing for use in third-party tools" (azure-docs articles/app-testing/load-testing/
# how-to-export-test-results.md): one such CSV per engine instance.
DOCUMENTED_HEADER = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,"
    "failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
)
# The figures both formats must give alike (the results carry no item ids: no reconciliation).
SAME = ("requests", "failures", "failure_ratio", "get_requests", "failed_gets", "server_errors",
        "writes")


@pytest.fixture(scope="module")
def one_run(topology, tmp_path_factory) -> tuple[Path, Path]:
    """(the runner's report dir, the folder of the service-format results) of one real run."""
    report = tmp_path_factory.mktemp("runner")
    results = tmp_path_factory.mktemp("alt") / "results"
    ran = run(topology, "throughput", "--users", "4", "--duration", "4", "--report-dir",
              str(report), env={"LOCUST_DETAILED_LABELS": "true",
                                "LOCUST_ALT_RESULTS_DIR": str(results)})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return report, results


def analyse(report_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadtests.analyse", str(report_dir), *flags],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)


def summary(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


def site_totals(result: dict) -> dict[str, int]:
    totals: dict[str, int] = {}
    for second in result["per_second"]:
        for site, count in second["sites"].items():
            totals[site] = totals.get(site, 0) + count
    return totals


def rewritten(results: Path, target: Path, change) -> Path:
    """A copy of the results with `change(header, rows) -> (header, rows)` applied to each CSV."""
    target.mkdir()
    for path in results.glob("*.csv"):
        with open(path, newline="") as file:
            header, *rows = list(csv.reader(file))
        header, rows = change(header, rows)
        with open(target / path.name, "w", newline="") as file:
            csv.writer(file).writerows([header, *rows])
    return target


def test_the_results_are_one_csv_per_process_with_the_documented_columns(one_run):
    _, results = one_run
    files = list(results.glob("*.csv"))
    assert len(files) == 1  # one Locust process: one engine's file
    with open(files[0], newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header == DOCUMENTED_HEADER.split(",")
    assert rows and all(len(row) == len(header) for row in rows)


def test_the_analysis_of_the_results_agrees_with_the_runner_records(one_run, tmp_path):
    report, results = one_run
    converted = analyse(tmp_path, "--alt-results", str(results), "--scenario", "throughput",
                        "--profile", "deployed")
    assert converted.returncode == 0, converted.stdout + converted.stderr
    ours, theirs = summary(report), summary(tmp_path)
    assert ours["requests"] > 0
    assert {k: theirs[k] for k in SAME} == {k: ours[k] for k in SAME}
    assert site_totals(theirs) == site_totals(ours) and len(site_totals(ours)) == 1
    # The service's results hold whole milliseconds: latencies agree to the millisecond.
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        assert abs(theirs[name] - ours[name]) <= 1.0, name
    assert abs(theirs["duration_s"] - ours["duration_s"]) <= 0.01
    assert (theirs["scenario"], theirs["profile"]) == ("throughput", "deployed")
    assert (tmp_path / "timeline.png").stat().st_size > 0


def test_the_downloaded_zip_reads_as_the_folder(one_run, tmp_path):
    report, results = one_run
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in results.glob("*.csv"):
            out.write(path, f"engine1/{path.name}")
    converted = analyse(tmp_path / "report", "--alt-results", str(archive))
    assert converted.returncode == 0, converted.stderr
    assert summary(tmp_path / "report")["requests"] == summary(report)["requests"]


def test_a_second_conversion_replaces_the_first_and_other_records_are_refused(one_run, tmp_path):
    report, results = one_run
    for _ in range(2):
        assert analyse(tmp_path, "--alt-results", str(results)).returncode == 0
    assert summary(tmp_path)["requests"] == summary(report)["requests"]
    refused = analyse(report, "--alt-results", str(results))  # holds the runner's records
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: --alt-results: {report / 'records'} already holds")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_results_without_a_column_the_records_need_are_a_one_line_error(one_run, tmp_path):
    _, results = one_run

    def drop_success(header, rows):
        at = header.index("success")
        return header[:at] + header[at + 1:], [row[:at] + row[at + 1:] for row in rows]

    broken = rewritten(results, tmp_path / "results", drop_success)
    refused = analyse(tmp_path / "report", "--alt-results", str(broken))
    assert refused.returncode == 2
    assert "no column success" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_labels_without_method_and_region_are_refused_and_say_why(one_run, tmp_path):
    """A run without LOCUST_DETAILED_LABELS names requests by path only: the method and the
    region cannot be told, so the results are refused rather than guessed at."""
    _, results = one_run

    def plain_names(header, rows):
        at = header.index("label")
        return header, [[*row[:at], row[at].split()[1], *row[at + 1:]] for row in rows]

    plain = rewritten(results, tmp_path / "results", plain_names)
    refused = analyse(tmp_path / "report", "--alt-results", str(plain))
    assert refused.returncode == 2
    assert "LOCUST_DETAILED_LABELS=1" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_path_that_holds_no_results_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for path, says in ((tmp_path / "empty", "no results CSV"), (tmp_path / "absent", "neither")):
        refused = analyse(tmp_path / "report", "--alt-results", str(path))
        assert refused.returncode == 2 and says in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
