"""One bounded wrk run on 127.0.0.1 and what it measured: requests/s and p99 latency.

Shared by the benchmarks. A run with any non-2xx/3xx answer is refused: it would measure the
wrong thing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P99 = re.compile(r"^\s+99%\s+(\S+)", re.MULTILINE)
_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p99_ms: float


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS_MS[unit]


def parse(output: str, url: str) -> Result:
    rps, p99, errors = _RPS.search(output), _P99.search(output), _ERRORS.search(output)
    if not rps or not p99:
        raise SystemExit(f"benchmark: could not read wrk output for {url}:\n{output}")
    if errors:
        raise SystemExit(f"benchmark: {errors.group(1)} error responses from {url}: run not valid")
    return Result(float(rps.group(1)), _milliseconds(p99.group(1)))


def run(
    url: str,
    *,
    seconds: float,
    threads: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None = None,
    cpus: str | None = None,
) -> Result:
    """`cpus` pins wrk (taskset -c): on 2 cores an unpinned wrk takes CPU from the server."""
    command = ["taskset", "-c", cpus] if cpus else []
    command += ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command += [*(["-s", str(script)] if script else []), url]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse(output, url)


def median_rps(results: list[Result]) -> float:
    """The median requests/s of a case's rounds."""
    return statistics.median(r.requests_per_second for r in results)


def add_load_arguments(parser: argparse.ArgumentParser, rounds: int, rounds_help: str) -> None:
    """wrk's load options, shared by the benchmarks: seconds per round, rounds, threads,
    connections."""
    parser.add_argument("--duration", type=int, default=10, help="seconds per round (default 10)")
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
