"""The Markdown link to the failover workbook for a drill's time window."""

import json
import subprocess
import sys

import pytest

from tests.tools.stack_outputs_data import raw_outputs
from tools.cli import CliError
from tools.operations import workbook_link

URL = "https://portal.azure.com/#@/resource/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/workbooks/w/workbook"
FAULT, RESTORE = 1_795_000_000.0, 1_795_000_600.0  # 2026-11-18 11:06:40 and 11:16:40 UTC


@pytest.fixture
def outputs(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw_outputs(workbook_id="/w", workbook_url=URL)))
    return path


def test_drill_summary_gives_the_window_around_fault_and_restore(outputs, tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"fault_time": FAULT, "restore_time": RESTORE}))
    assert workbook_link.main([str(outputs), "--summary", str(summary)]) == 0
    line = capsys.readouterr().out.strip()
    assert f"]({URL})" in line
    assert "2026-11-18 11:04:40 - 11:18:40 UTC" in line  # two minutes either side


def test_explicit_window_in_iso_or_epoch(outputs, capsys):
    workbook_link.main([str(outputs), "--start", "2026-11-26T14:02:00Z", "--end", "1795704000"])
    assert "2026-11-26 14:02:00 - 14:40:00 UTC" in capsys.readouterr().out


def test_throughput_summary_without_a_fault_asks_for_a_window(outputs, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"scenario": "throughput"}))
    with pytest.raises(CliError, match="not a failover drill"):
        workbook_link.main([str(outputs), "--summary", str(summary)])


def test_outputs_without_the_workbook_are_a_clear_error(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw_outputs()))
    with pytest.raises(CliError, match="output 'workbook_url' missing"):
        workbook_link.main([str(path), "--start", "2026-11-26T14:02:00Z"])


@pytest.mark.parametrize("bad", ["yesterday", "2026-11-26T14:02:00"])
def test_times_need_a_zone_and_a_format(outputs, bad):
    with pytest.raises(CliError, match="time"):
        workbook_link.main([str(outputs), "--start", bad])


def test_window_must_not_end_before_it_starts(outputs):
    with pytest.raises(CliError, match="ends before it starts"):
        workbook_link.main(
            [str(outputs), "--start", "2026-11-26T14:02:00Z", "--end", "2026-11-26T14:00:00Z"]
        )


def test_cli_prints_one_line_for_the_job_summary(outputs):
    result = subprocess.run(
        [sys.executable, "-m", "tools.operations.workbook_link", str(outputs), "--start", "1795000000",
         "--end", "1795000600"],
        capture_output=True, text=True, check=True,
    )
    assert len(result.stdout.strip().splitlines()) == 1 and result.stdout.startswith("**")
