"""Analyse records gathered by hand, for example from Locust workers on several machines
(master/workers): put every records-*.jsonl into REPORT_DIR/records/, then

    python -m loadtests.analyse REPORT_DIR [--fault-time EPOCH [--restore-time EPOCH]]
        [--profile local] [--max-failure-ratio X] [--max-recovery-seconds S] ...

Writes summary.json and timeline.png into REPORT_DIR, prints the results table, and exits 1
when a threshold breaks. (Reconciling the items needs the store, before and after the run:
`loadtests.run` does it; this command does not.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtests import analysis
from loadtests.run import (
    LOCAL_PROFILE,
    PROFILES,
    RunError,
    RunSpec,
    add_threshold_flags,
    conclude,
    summarise,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.analyse", description=__doc__)
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("--fault-time", type=float, default=None, help="epoch seconds")
    parser.add_argument("--restore-time", type=float, default=None, help="epoch seconds")
    parser.add_argument("--profile", choices=PROFILES, default=LOCAL_PROFILE)
    add_threshold_flags(parser)
    args = parser.parse_args(argv)
    spec = RunSpec(
        scenario="records",
        host="",
        key="",
        report_dir=args.report_dir,
        profile=args.profile,
        thresholds={name: getattr(args, name) for name in analysis.THRESHOLDS},
    )
    try:
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
