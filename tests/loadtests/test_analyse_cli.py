"""`python -m loadtests.analyse`: records gathered by hand (distributed workers) -> reports."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtests.topology import ROOT


def write_records(directory, outcomes: list[str]) -> None:
    records = directory / "records"
    records.mkdir()
    for worker in (1, 2):  # two worker files, merged by the analysis
        lines = [
            json.dumps(
                {
                    "t": 1000.0 + i / 10 + worker / 100,
                    "method": "GET",
                    "name": "/api/TodoItem",
                    "status": 200 if outcome == "ok" else 503,
                    "ms": 5.0,
                    "site": "region-a",
                    "outcome": outcome,
                    "item": None,
                }
            )
            for i, outcome in enumerate(outcomes)
        ]
        (records / f"records-host-{worker}.jsonl").write_text("\n".join(lines) + "\n")


def analyse(directory, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "loadtests.analyse", str(directory), *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_merged_worker_records_give_a_summary_and_a_timeline(tmp_path):
    write_records(tmp_path, ["ok"] * 10)
    result = analyse(tmp_path, "--max-failure-ratio", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["requests"] == 20
    assert (tmp_path / "timeline.png").stat().st_size > 0


def test_a_failure_over_the_threshold_exits_1(tmp_path):
    write_records(tmp_path, ["ok"] * 9 + ["fail"])
    result = analyse(tmp_path, "--max-failure-ratio", "0")
    assert result.returncode == 1
    assert "THRESHOLD BROKEN: max-failure-ratio" in result.stdout


def test_no_records_is_a_one_line_error(tmp_path):
    result = analyse(tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no request records in")
    assert len(result.stderr.strip().splitlines()) == 1
