"""Print a Markdown link to the stack's failover workbook for a time window (a drill's).

    python -m tools.operations.workbook_link outputs.json --summary reports/load/summary.json
    python -m tools.operations.workbook_link outputs.json --start 2026-11-26T14:02:00Z [--end ...]

The window comes from a load run's summary.json (a failover drill records fault_time and
restore_time: the window is from MARGIN before the fault to MARGIN after the restore) or from
--start/--end (ISO 8601 or epoch seconds; --end defaults to now). The link opens the workbook
(output `workbook_url`); the line states the window in UTC to set as the workbook's Time range.
Meant for $GITHUB_STEP_SUMMARY; prints nothing secret.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tools.cli import CliError, read_json, run_cli
from tools.delivery.stack_outputs import WORKBOOK_URL_OUTPUT

MARGIN = timedelta(minutes=2)


def parse_time(text: str) -> datetime:
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"not a time (ISO 8601 or epoch seconds): {text!r}") from None
    if moment.tzinfo is None:
        raise CliError(f"give a time zone (e.g. Z for UTC): {text!r}")
    return moment.astimezone(UTC)


def window_from_summary(summary: dict) -> tuple[datetime, datetime]:
    fault, restore = summary.get("fault_time"), summary.get("restore_time")
    if not isinstance(fault, (int, float)):
        raise CliError("summary has no fault_time: not a failover drill (give --start/--end)")
    end = restore if isinstance(restore, (int, float)) else fault
    return (
        datetime.fromtimestamp(fault, UTC) - MARGIN,
        datetime.fromtimestamp(end, UTC) + MARGIN,
    )


def workbook_url(outputs: dict) -> str:
    value = outputs.get(WORKBOOK_URL_OUTPUT, {})
    url = value.get("value") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url.startswith("https://"):
        raise CliError(f"output {WORKBOOK_URL_OUTPUT!r} missing: deploy the stack with it first")
    return url


def markdown(url: str, start: datetime, end: datetime) -> str:
    if end <= start:
        raise CliError(f"the window ends before it starts ({start:%H:%M:%S} - {end:%H:%M:%S})")
    same_day = start.date() == end.date()
    until = f"{end:%H:%M:%S}" if same_day else f"{end:%Y-%m-%d %H:%M:%S}"
    window = f"{start:%Y-%m-%d %H:%M:%S} - {until} UTC"
    return (
        f"**Failover workbook**: [open it in the Azure portal]({url}) and set its time range to "
        f"{window} (requests, failures, latency per region, Traffic Manager endpoint status)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("--summary", type=Path, help="summary.json of a failover drill")
    parser.add_argument("--start", help="window start (ISO 8601 with zone, or epoch seconds)")
    parser.add_argument("--end", help="window end (default: now)")
    args = parser.parse_args(argv)
    url = workbook_url(read_json(args.outputs, "stack outputs"))
    if args.summary is not None:
        start, end = window_from_summary(read_json(args.summary, "load test summary"))
    elif args.start is not None:
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else datetime.now(UTC)
    else:
        raise CliError("give --summary or --start")
    print(markdown(url, start, end))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
