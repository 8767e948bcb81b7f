"""Benchmark: POST with an Idempotency-Key (candidate) vs POST without one (baseline), on the table
store (Azurite), in the same run. Goal: candidate/baseline >= 0.80.

One production server (app/startup.sh, full middleware, one worker) pinned to CPU 0
(`taskset -c 0`); wrk pinned to CPU 1, and Azurite with it. Both cases POST the same body to the
same server over the same table, and both wrk scripts build every request in Lua with one
per-request header, so the load generator does the same work for each: the candidate sends a new
`Idempotency-Key` per request (a key's first use: one transaction, item and stored answer), the
baseline an `X-Benchmark-Request` header the app ignores (one insert). Each round runs baseline
and candidate in turn (who goes first alternates), each on a fresh table with a fresh server,
warmed up, and the table is dropped afterwards: Azurite keeps every table in one LokiJS database
that it writes to disk whole every few seconds, so rows left by one case would slow the next (and
the candidate writes two rows per POST, which is its real extra cost, measured within its own
case). Every round is printed, and the ratio of the medians.

    python -m benchmarks.idempotency [--duration 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

from benchmarks import wrk
from benchmarks.app_server import (  # one place for the certificates, Azurite and server setup
    LOAD_CPU,
    POST_BODY,
    SERVER_CPU,
    WARM_UP_SECONDS,
    _settings,
    _start,
    _store,
    _wrk,
    refuse_unfit_machine,
)
from benchmarks.wrk import Result

GOAL = 0.80
CANDIDATE_HEADER = "Idempotency-Key"  # app/contract.py IDEMPOTENCY_KEY_HEADER
BASELINE_HEADER = "X-Benchmark-Request"  # ignored by the app: the same Lua work, no key


def write_script(work: Path, header: str) -> Path:
    """A wrk script POSTing POST_BODY with `header` set to a value never sent before (a fresh
    prefix per script, then thread number and request counter)."""
    prefix = uuid.uuid4().hex
    script = work / f"post-{header.lower()}-{prefix[:8]}.lua"
    script.write_text(
        f"""wrk.method = "POST"
wrk.body = {json.dumps(POST_BODY)}
wrk.headers["Content-Type"] = "application/json"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
local counter = 0
function request()
  counter = counter + 1
  wrk.headers["{header}"] = "{prefix}-" .. thread_number .. "-" .. counter
  return wrk.format()
end
"""
    )
    return script


def _table(connection_string: str, name: str, create: bool) -> None:
    from azure.data.tables import TableServiceClient

    with TableServiceClient.from_connection_string(connection_string) as service:
        if create:
            service.create_table(name)
        else:
            service.delete_table(name)


def _case(args, work: Path, settings: dict, cert: str, header: str, name: str) -> Result:
    """One measured case: a fresh table and server, a warm-up, the run; the table dropped."""
    from tests.app import servers

    connection_string = settings["TABLE_CONNECTION_STRING"]
    _table(connection_string, name, create=True)
    server = _start(servers, {**settings, "TABLE_NAME": name}, work / f"{name}.log")
    url = f"http://127.0.0.1:{server.port}/api/TodoItem"
    try:
        _wrk(url, cert, WARM_UP_SECONDS, args, write_script(work, header))
        return _wrk(url, cert, args.duration, args, write_script(work, header))
    finally:
        server.stop()
        _table(connection_string, name, create=False)


def measure(args, work: Path) -> tuple[list[Result], list[Result]]:
    settings, cert = _settings(work)
    baseline, candidate = [], []
    with _store("table", work) as store:
        for n in range(args.rounds):
            order = [(baseline, BASELINE_HEADER, "NoKey"), (candidate, CANDIDATE_HEADER, "Key")]
            for results, header, tag in order if n % 2 == 0 else reversed(order):
                name = f"Bench{tag}{n}"
                results.append(_case(args, work, {**settings, **store}, cert, header, name))
    return baseline, candidate


def report(baseline: list[Result], candidate: list[Result], args) -> bool:
    print(
        f"\nPOST /api/TodoItem, store=table (Azurite on CPU {LOAD_CPU}): app/startup.sh, 1 worker, "
        f"server on CPU {SERVER_CPU}, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s on CPU {LOAD_CPU}; {args.rounds} alternating rounds"
    )
    print(
        f"{'round':>6} {'no key req/s':>13} {'with key req/s':>15} {'ratio':>6} "
        f"{'no key p99':>11} {'with key p99':>13}"
    )
    for n, (b, c) in enumerate(zip(baseline, candidate, strict=True), 1):
        print(
            f"{n:>6} {b.requests_per_second:>13.0f} {c.requests_per_second:>15.0f} "
            f"{c.requests_per_second / b.requests_per_second:>6.2f} {b.p99_ms:>9.2f}ms "
            f"{c.p99_ms:>11.2f}ms"
        )
    ratio = wrk.median_rps(candidate) / wrk.median_rps(baseline)
    met = ratio >= GOAL
    verdict = "met" if met else f"MISSED (< {GOAL:.2f})"
    print(
        f"{'median':>6} {wrk.median_rps(baseline):>13.0f} {wrk.median_rps(candidate):>15.0f} {ratio:>6.2f}  "
        f"goal {verdict}"
    )
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    wrk.add_load_arguments(parser, rounds=5, rounds_help="alternating rounds (default 5)")
    args = parser.parse_args(argv)
    refuse_unfit_machine()
    with tempfile.TemporaryDirectory(prefix="bench-idempotency-") as tmp:
        baseline, candidate = measure(args, Path(tmp))
    return 0 if report(baseline, candidate, args) else 1


if __name__ == "__main__":
    sys.exit(main())
