"""Flake hunt: run the whole suite several times while the machine is loaded on purpose.

Usage: python -m tools.development.flake_hunt [--runs 5] [--load stress|none] [--run-timeout 1800]
                                  [--report-dir reports/flake-hunt] [-- PYTEST ARGS...]

Each run is a fresh `pytest` process (the same one `make test` runs), started right after the
previous one ended, so a run also checks that the run before it left no process, port or state
file behind. With `--load stress` (the default) one `stress-ng --cpu 1` worker keeps one of the
two cores busy for the whole hunt: a test that only passes with a core to spare fails here.

Every failing test is printed with its id and run number as the run ends, and once more in a
summary (which tests failed in which runs); the summary is also written to
REPORT_DIR/summary.md, each run's full output to REPORT_DIR/run-N.log (and run-N.xml, JUnit).

Exit status: 0 when every run passed, 1 when any test failed or any run did not finish, 2 for
bad arguments, 130 when the hunt was interrupted (Ctrl-C, SIGTERM): the run in progress is
stopped too (SIGTERM first, so its fixtures stop their servers), as it runs in a session of
its own that Ctrl-C does not reach.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from tools.cli import interrupt_on_sigterm
from tools.process_groups import signal_group

REPO = Path(__file__).resolve().parents[2]
# pytest's short test summary (-ra): "FAILED tests/x.py::test_y[p] - message" / "ERROR ...".
SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+?)(?: - (.*))?$")
# The last line pytest prints: "==== 3 failed, 1040 passed, 2 skipped in 301.12s (0:05:01) ===="
STOP_SECONDS = 60.0  # for an interrupted run's fixtures to stop their servers
FINAL_LINE = re.compile(r"^=+ (.*\bin [0-9.]+s\b.*) =+$")


@dataclass
class Run:
    number: int
    returncode: int | None  # None: killed at the run timeout
    seconds: float
    outcome: str  # pytest's final line, or why there is none
    failures: list[tuple[str, str]] = field(default_factory=list)  # (test id, first line)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.failures


def parse_output(text: str, junit: Path) -> tuple[list[tuple[str, str]], str]:
    """The failing tests (id, message) and pytest's final line, from one run's output; the
    messages come from the JUnit XML report (the terminal's are cut to its width)."""
    messages = junit_messages(junit)
    failures = []
    outcome = "no pytest summary line (the run was killed or crashed)"
    for line in text.splitlines():
        if match := SUMMARY_LINE.match(line):
            test = match[2]
            message = messages.get(test.rpartition("::")[2]) or (match[3] or "").strip()
            failures.append((f"{match[1]} {test}", message))
        elif match := FINAL_LINE.match(line):
            outcome = match[1]
    return failures, outcome


def junit_messages(path: Path) -> dict[str, str]:
    """{test name: first line of its failure or error}, for names that occur once."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    found: dict[str, list[str]] = {}
    for case in root.iter("testcase"):
        for problem in (*case.iter("failure"), *case.iter("error")):
            message = (problem.get("message") or "").strip().splitlines()
            found.setdefault(case.get("name", ""), []).append(message[0] if message else "")
    return {name: lines[0] for name, lines in found.items() if len(lines) == 1}


@contextlib.contextmanager
def load(kind: str) -> Iterator[str]:
    """Keep one core busy for the hunt (`stress`), or not (`none`); yields a description."""
    if kind == "none":
        yield "no added load"
        return
    stress = shutil.which("stress-ng")
    if stress is None:
        raise SystemExit("flake hunt: stress-ng not found: run `make flake-hunt` (installs it)")
    process = subprocess.Popen(
        [stress, "--cpu", "1", "--cpu-load", "100", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # "finished prematurely" when stopped: it is meant to be
        start_new_session=True,
    )
    try:
        yield f"stress-ng --cpu 1 (pid {process.pid}) keeps one core busy"
    finally:
        signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()


def run_suite(number: int, pytest_args: list[str], timeout: float, log: Path) -> Run:
    junit = log.with_suffix(".xml")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}",
               *pytest_args]
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The suite's own per-test timeout should make this impossible; if it happens, the
            # whole process group goes (pytest and everything it started) and the run counts.
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
        except BaseException:  # the hunt itself interrupted (Ctrl-C, SIGTERM): stop the run
            stop_run(process)
            raise
    seconds = time.monotonic() - started
    failures, outcome = parse_output(log.read_text(encoding="utf-8", errors="replace"), junit)
    if returncode is None:
        outcome = f"killed after {timeout:.0f} s without finishing"
    elif returncode != 0 and not failures:
        failures.append((f"pytest exit {returncode}", outcome))
    return Run(number, returncode, seconds, outcome, failures)


def stop_run(process: subprocess.Popen) -> None:
    """SIGTERM the run's pytest (its fixtures then stop their servers), SIGKILL its group
    if it is not gone in time. It runs in a session of its own, so Ctrl-C does not reach it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    signal_group(process.pid, signal.SIGKILL)
    process.wait()


def summary(runs: list[Run], load_description: str, total: int) -> str:
    lines = [
        "# Flake hunt",
        "",
        f"{len(runs)} of {total} runs, load: {load_description}.",
        "",
        "| run | result | seconds | pytest |",
        "|---|---|---|---|",
    ]
    for run in runs:
        result = "pass" if run.passed else f"{len(run.failures)} failing"
        lines.append(f"| {run.number} | {result} | {run.seconds:.0f} | {run.outcome} |")
    by_test: dict[str, list[tuple[int, str]]] = {}
    for run in runs:
        for test, message in run.failures:
            by_test.setdefault(test, []).append((run.number, message))
    lines += ["", f"Failing tests: {len(by_test)}; failures: {sum(map(len, by_test.values()))}."]
    for test, seen in sorted(by_test.items()):
        lines.append(f"- `{test}`: runs {', '.join(str(n) for n, _ in seen)}")
        lines += [f"  - run {n}: {message[:300]}" for n, message in seen if message]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.development.flake_hunt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="suite runs (default 5)")
    parser.add_argument("--load", choices=["stress", "none"], default="stress")
    parser.add_argument("--run-timeout", type=float, default=1800.0,
                        help="seconds one whole suite run may take before it is killed")
    parser.add_argument("--report-dir", type=Path, default=REPO / "reports" / "flake-hunt")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs: must be at least 1, got {args.runs}")
    if args.run_timeout <= 0:
        parser.error(f"--run-timeout: must be positive, got {args.run_timeout}")

    args.report_dir.mkdir(parents=True, exist_ok=True)
    interrupt_on_sigterm()
    runs: list[Run] = []
    try:
        return hunt(args, runs)
    except KeyboardInterrupt as stop:
        print(f"flake hunt: {stop or 'interrupted'} during run {len(runs) + 1}; that run was"
              " stopped, nothing of it is left running", file=sys.stderr)
        return 130


def hunt(args: argparse.Namespace, runs: list[Run]) -> int:
    with load(args.load) as load_description:
        print(f"flake hunt: {args.runs} runs, {load_description}", flush=True)
        for number in range(1, args.runs + 1):
            run = run_suite(number, args.pytest_args, args.run_timeout,
                            args.report_dir / f"run-{number}.log")
            runs.append(run)
            status = "passed" if run.passed else f"{len(run.failures)} failing"
            print(f"run {number}/{args.runs}: {status} in {run.seconds:.0f} s: {run.outcome}",
                  flush=True)
            for test, message in run.failures:
                print(f"  run {number}: {test}" + (f" - {message[:200]}" if message else ""),
                      flush=True)
            (args.report_dir / "summary.md").write_text(
                summary(runs, load_description, args.runs), encoding="utf-8")
    print(summary(runs, load_description, args.runs), end="")
    print(f"(written to {args.report_dir / 'summary.md'})")
    return 0 if all(run.passed for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
