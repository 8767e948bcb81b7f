"""Benchmark: the production server with bearer tokens checked (AUTH_MODE=entra, one valid token)
vs the same server without (AUTH_MODE=none), GET list, side by side in one run. Goal: >= 0.90.

Both servers run app/startup.sh with the same settings (client certificate, LIST_SIZE items in
the memory store, or with --store table in one Azurite table) and one worker, pinned to CPU 0
(`taskset -c 0`); wrk is pinned to CPU 1 and so is this process, which serves the local OpenID
issuer (tests/app/issuer.py: metadata and JWKS on 127.0.0.1) that the candidate fetches its
signing key from, once. wrk sends the same headers to
both (certificate and `Authorization: Bearer <token>`; the baseline ignores the token), so the
difference is the app's work: the first request verifies the token (RS256, PyJWT), every other
one finds it in the verified-token cache by its SHA-256. Before measuring, the candidate must
refuse a request without the token (401) and the issuer must have been asked exactly once.

Each round measures both servers, who goes first alternating; every round is printed (requests/s,
p99, and the server's CPU time per request from /proc, which other processes on the machine do
not inflate), then the ratio of the medians.

    python -m benchmarks.auth [--store memory|table] [--duration 10] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import app_server as bench
from benchmarks import wrk
from benchmarks.app_server import GOAL, LIST_SIZE, LOAD_CPU, SERVER_CPU
from benchmarks.telemetry import cpu_seconds

PATH = "/api/TodoItem"
SERVERS = ("none", "entra")  # baseline, candidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", choices=("memory", "table"), default="memory",
        help="memory (default: the cheapest request, the overhead at its largest) or table "
        "(Azurite, pinned to CPU 1 like wrk: the store production uses)",
    )
    wrk.add_load_arguments(parser, rounds=5, rounds_help="alternating rounds (default 5)")
    args = parser.parse_args(argv)
    bench.refuse_unfit_machine()
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the issuer thread stays off the server's core

    from tests.app import servers as processes
    from tests.app.issuer import LocalIssuer, new_signing_key

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-auth-")))
        issuer = stack.enter_context(LocalIssuer(new_signing_key(work, "benchmark-key")))
        settings, certificate = bench._settings(work)
        settings.update(stack.enter_context(bench._store(args.store, work)))
        token = issuer.token(time.time())
        name, value = certificate.split(": ", 1)
        headers = {name: value, "Authorization": f"Bearer {token}"}
        started = {}
        for mode in SERVERS:
            server_settings = {**settings, **(issuer.app_settings() if mode == "entra" else {})}
            started[mode] = stack.enter_context(_running(processes, server_settings, work, mode))
            if mode == "entra" or args.store == "memory":  # one table serves both
                bench._seed(started[mode], certificate, {"Authorization": headers["Authorization"]})
        _check(started["entra"], {name: value}, issuer)
        print(
            f"GET {PATH} ({LIST_SIZE} items, store={args.store}): app/startup.sh, 1 worker each, "
            "taskset -c "
            f"{SERVER_CPU}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
            f"taskset -c {LOAD_CPU}; candidate AUTH_MODE=entra with one valid RS256 token "
            f"({len(token)} bytes), baseline AUTH_MODE=none; {args.rounds} alternating rounds",
            flush=True,
        )
        rps, cpu = _measure(started, headers, args)
    return _report(rps, cpu)


@contextlib.contextmanager
def _running(processes, settings: dict[str, str], work: Path, mode: str):
    server = bench._start(processes, settings, work / f"{mode}.log")
    try:
        yield server
    finally:
        server.stop()


def _check(candidate, certificate: dict[str, str], issuer) -> None:
    """The candidate really checks tokens: no token is 401, and the key was fetched once."""
    status, _, _ = candidate.request("GET", PATH, headers=certificate)
    if status != 401:
        raise SystemExit(f"benchmark: the candidate answered {status} without a token, not 401")
    if issuer.fetches() != (1, 1):
        raise SystemExit(f"benchmark: the issuer was asked {issuer.fetches()}, not once each")


def _measure(started, headers, args) -> tuple[dict, dict]:
    def run(mode: str, seconds: float) -> tuple[wrk.Result, float]:
        server = started[mode]
        before = cpu_seconds(server.process.pid)
        result = wrk.run(
            f"http://127.0.0.1:{server.port}{PATH}",
            seconds=seconds,
            threads=args.threads,
            connections=args.connections,
            headers=headers,
            cpus=LOAD_CPU,
        )
        used = cpu_seconds(server.process.pid) - before
        return result, used / (result.requests_per_second * seconds) * 1e6

    for mode in SERVERS:
        run(mode, bench.WARM_UP_SECONDS)
    rps: dict[str, list[float]] = {mode: [] for mode in SERVERS}
    cpu: dict[str, list[float]] = {mode: [] for mode in SERVERS}
    print(f"{'round':>5} {'mode':<6} {'req/s':>8} {'p99':>9} {'CPU us/req':>10}")
    for number in range(1, args.rounds + 1):
        for mode in SERVERS if number % 2 else reversed(SERVERS):
            result, micros = run(mode, args.duration)
            rps[mode].append(result.requests_per_second)
            cpu[mode].append(micros)
            print(f"{number:>5} {mode:<6} {result.requests_per_second:>8.0f} "
                  f"{result.p99_ms:>7.2f}ms {micros:>10.1f}", flush=True)
        print(f"{number:>5} ratio  {rps['entra'][-1] / rps['none'][-1]:>8.2f} (req/s entra/none)"
              f"  CPU per request none/entra {cpu['none'][-1] / cpu['entra'][-1]:.2f}", flush=True)
    return rps, cpu


def _report(rps: dict, cpu: dict) -> int:
    median = statistics.median
    ratio = median(rps["entra"]) / median(rps["none"])
    cpu_ratio = median(cpu["none"]) / median(cpu["entra"])
    met = ratio >= GOAL
    print(
        f"median: none {median(rps['none']):.0f} req/s ({median(cpu['none']):.1f} us CPU), "
        f"entra {median(rps['entra']):.0f} req/s ({median(cpu['entra']):.1f} us CPU); "
        f"ratio {ratio:.2f} (CPU per request {cpu_ratio:.2f}); goal >= {GOAL:.2f} "
        + ("met" if met else "MISSED")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
