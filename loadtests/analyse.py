"""Analyse records gathered by hand, for example from Locust workers on several machines
(master/workers): put every records-*.jsonl into REPORT_DIR/records/, then

    python -m loadtests.analyse REPORT_DIR [--fault-time EPOCH [--restore-time EPOCH]]
        [--profile local] [--scenario NAME] [--alt-results DIR_OR_ZIP]
        [--max-failure-ratio X] [--max-recovery-seconds S] ...

`--alt-results`: Azure Load Testing's results of a Locust run (a folder, or the zip
`az load test-run download-files --result` saved; loadtests.alt_results) are converted into
REPORT_DIR/records/records-alt-<n>.jsonl first (one per results CSV, that is per engine).

Writes summary.json and timeline.png into REPORT_DIR, prints the results table, and exits 1
when a threshold breaks. (Reconciling the items needs the store, before and after the run:
`loadtests.run` does it; this command does not.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtests import alt_results, analysis
from loadtests.run import (
    LOCAL_PROFILE,
    PROFILES,
    SCENARIOS,
    RunError,
    RunSpec,
    add_threshold_flags,
    conclude,
    summarise,
)
from tools.cli import write_atomic

CONVERTED = "records-alt-"


def convert_alt_results(source: Path, records_dir: Path) -> int:
    """Azure Load Testing's results under `source` as records files in `records_dir` (earlier
    conversions replaced); how many records. Refuses a folder holding records of another run."""
    try:
        found = alt_results.load(source)
    except (alt_results.AltResultsError, OSError, UnicodeDecodeError) as error:
        raise RunError(f"--alt-results: {error}") from None
    records_dir.mkdir(parents=True, exist_ok=True)
    others = sorted(p.name for p in records_dir.glob("records-*.jsonl")
                    if not p.name.startswith(CONVERTED))
    if others:
        raise RunError(f"--alt-results: {records_dir} already holds records of another run"
                       f" ({', '.join(others)}): use a report dir of its own")
    for stale in records_dir.glob(f"{CONVERTED}*.jsonl"):
        stale.unlink()
    for number, rows in enumerate(found.values(), 1):
        lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        write_atomic(records_dir / f"{CONVERTED}{number}.jsonl", lines)
    return sum(len(rows) for rows in found.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.analyse", description=__doc__)
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("--fault-time", type=float, default=None, help="epoch seconds")
    parser.add_argument("--restore-time", type=float, default=None, help="epoch seconds")
    parser.add_argument("--profile", choices=PROFILES, default=LOCAL_PROFILE)
    parser.add_argument("--scenario", choices=SCENARIOS, default="records",
                        help="the scenario the records come from, for the summary")
    parser.add_argument("--alt-results", type=Path, default=None, metavar="DIR_OR_ZIP",
                        help="Azure Load Testing's results of a Locust run, converted first")
    add_threshold_flags(parser)
    args = parser.parse_args(argv)
    spec = RunSpec(
        scenario=args.scenario,
        host="",
        key="",
        report_dir=args.report_dir,
        profile=args.profile,
        thresholds={name: getattr(args, name) for name in analysis.THRESHOLDS},
    )
    try:
        if args.alt_results is not None:
            count = convert_alt_results(args.alt_results, args.report_dir / "records")
            print(f"{count} requests from Azure Load Testing's results in {args.alt_results}")
        faults = (
            [{"fault_time": args.fault_time, "restore_time": args.restore_time}]
            if args.fault_time is not None
            else []
        )
        summary = summarise(spec, faults)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return conclude(summary, args.report_dir)


if __name__ == "__main__":
    sys.exit(main())
