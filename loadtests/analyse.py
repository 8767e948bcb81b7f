"""Analyse records gathered by hand, for example from Locust workers on several machines
(master/workers): put every records-*.jsonl into REPORT_DIR/records/, then

    python -m loadtests.analyse REPORT_DIR [--fault-time EPOCH [--restore-time EPOCH]]
        [--max-failure-ratio X] [--max-recovery-seconds S] ...

Writes summary.json and timeline.png into REPORT_DIR, prints the results table, and exits 1
when a threshold breaks. (Items lost across the fault need the API: `loadtests.run` checks
them; this command does not.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtests import analysis
from loadtests.run import RunError, RunSpec, add_threshold_flags, conclude, summarise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.analyse", description=__doc__)
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("--fault-time", type=float, default=None, help="epoch seconds")
    parser.add_argument("--restore-time", type=float, default=None, help="epoch seconds")
    add_threshold_flags(parser)
    args = parser.parse_args(argv)
    spec = RunSpec(
        scenario="records",
        host="",
        key="",
        report_dir=args.report_dir,
        thresholds={name: getattr(args, name) for name in analysis.THRESHOLDS},
    )
    try:
        summary = summarise(spec, args.fault_time, args.restore_time)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return conclude(summary, args.report_dir)


if __name__ == "__main__":
    sys.exit(main())
