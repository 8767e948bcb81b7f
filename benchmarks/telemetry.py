"""Benchmark: the production server with telemetry on (default sampling) vs off, side by side.

Both servers run app/startup.sh with the same settings and one worker, pinned to core 0
(`taskset -c 0`); wrk is pinned to core 1 (`taskset -c 1`) and so is this process, which also
serves the stand-in Application Insights ingestion endpoint (127.0.0.1) that the "on" server's
real Azure Monitor exporter sends to. Each round measures off then on, then on then off, so
drift on the shared machine hits both; every round is printed, then the ratio of the medians
(on / off) per case. Goal: >= 0.90.

Two measures per run: requests/s (wall clock: on a machine shared with other work, whatever
else runs on core 0 slows either server) and the server's CPU time per request (user + system
of gunicorn and its worker, from /proc, divided by the requests wrk completed), which other
processes do not inflate; its ratio is off/on (the share of the throughput a CPU-bound server
keeps with telemetry on).

    python -m benchmarks.telemetry [--duration 10] [--rounds 4] [--connections 32]
        [--sampling-ratio R]   (default: the app's default sampling, rate-limited)
        [--store memory|table] (table: Azurite, pinned to core 1 like wrk)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from app.settings import DEFAULT_TELEMETRY_TRACES_PER_SECOND
from benchmarks import wrk
from benchmarks.app_server import (
    GOAL,
    LIST_SIZE,
    LOAD_CPU,
    SERVER_CPU,
    WARM_UP_SECONDS,
    _seed,
    _settings,
    _start,
    _store,
    write_post_script,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per case (default 4)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sampling-ratio", help="a fixed ratio instead of the default")
    parser.add_argument(
        "--store", choices=("memory", "table"), default="memory",
        help="the app's store (table: on Azurite, its calls traced as dependencies)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("benchmark: needs wrk (Debian package wrk) and taskset", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("benchmark: needs 2 cores (server on core 0, load on core 1)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    from tests.app import servers as processes
    from tests.app.fake_ingestion import EXPORTER_QUIET, FakeIngestion

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-telemetry-")))
        fake = stack.enter_context(FakeIngestion())
        settings, header = _settings(work)
        settings.update(stack.enter_context(_store(args.store, work)))
        traced = {
            **settings,
            **EXPORTER_QUIET,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": fake.connection_string,
        }
        if args.sampling_ratio is not None:
            traced["TELEMETRY_SAMPLING_RATIO"] = args.sampling_ratio
        sampling = (
            f"ratio {args.sampling_ratio}"
            if args.sampling_ratio is not None
            else f"default (at most {DEFAULT_TELEMETRY_TRACES_PER_SECOND:g} traces/s per process)"
        )
        post = write_post_script(work)
        servers = {
            "off": _start(processes, settings, work / "off.log"),
            "on": _start(processes, traced, work / "on.log"),
        }
        try:
            # The memory store is per server; a table is shared by both (seed it once).
            seeded = servers if args.store == "memory" else {"off": servers["off"]}
            ids = {name: _seed(server, header)[0]["id"] for name, server in seeded.items()}
            ids.setdefault("on", ids["off"])
            cases = [
                (f"GET list ({LIST_SIZE} items)", lambda name: "/api/TodoItem", None),
                ("GET item", lambda name: f"/api/TodoItem/{ids[name]}", None),
                ("POST", lambda name: "/api/TodoItem", post),
            ]
            print(
                f"store={args.store}; app/startup.sh, 1 worker each, taskset -c {SERVER_CPU}; "
                f"wrk -t1 -c{args.connections} -d{args.duration}s, taskset -c {LOAD_CPU}; "
                f"telemetry on = Azure Monitor exporter to a local ingestion stand-in, "
                f"sampling {sampling}",
                flush=True,
            )
            summary = [_case(label, path, script, servers, header, args)
                       for label, path, script in cases]
        finally:
            for server in servers.values():
                server.stop()
        requests = len(fake.of_type("RequestData"))
    print(f"\nmedians of the rounds; goal: ratio >= {GOAL:.2f}")
    print(f"{'case':<20} {'off req/s':>10} {'on req/s':>10} {'ratio':>6}   "
          f"{'off CPU us':>10} {'on CPU us':>10} {'ratio':>6}")
    for label, off, on, cpu_off, cpu_on in summary:
        print(f"{label:<20} {off:>10.0f} {on:>10.0f} {on / off:>6.2f}   "
              f"{cpu_off:>10.1f} {cpu_on:>10.1f} {cpu_off / cpu_on:>6.2f}")
    print(f"request telemetry items received by the ingestion stand-in: {requests}")
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (gunicorn's workers), in seconds."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _case(label, path, script, servers, header, args) -> tuple:
    name, value = header.split(": ", 1)

    def run(which: str, seconds: float) -> tuple[wrk.Result, float]:
        url = f"http://127.0.0.1:{servers[which].port}{path(which)}"
        before = cpu_seconds(servers[which].process.pid)
        result = wrk.run(url, seconds=seconds, threads=1, connections=args.connections,
                         headers={name: value}, script=script, cpus=LOAD_CPU)
        used = cpu_seconds(servers[which].process.pid) - before
        return result, used / (result.requests_per_second * seconds) * 1e6

    for which in servers:
        run(which, WARM_UP_SECONDS)
    rps: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for round_number in range(1, args.rounds + 1):
        order = ("off", "on") if round_number % 2 else ("on", "off")
        for which in order:
            result, micros = run(which, args.duration)
            rps[which].append(result.requests_per_second)
            cpu[which].append(micros)
            print(f"{label:<20} round {round_number}  {which:<3} "
                  f"{result.requests_per_second:9.0f} req/s  p99 {result.p99_ms:6.2f} ms  "
                  f"CPU {micros:6.1f} us/request", flush=True)
        print(f"{label:<20} round {round_number}  ratio on/off: req/s "
              f"{rps['on'][-1] / rps['off'][-1]:.2f}, CPU per request (off/on) "
              f"{cpu['off'][-1] / cpu['on'][-1]:.2f}", flush=True)
    median = statistics.median
    return label, median(rps["off"]), median(rps["on"]), median(cpu["off"]), median(cpu["on"])


if __name__ == "__main__":
    sys.exit(main())
