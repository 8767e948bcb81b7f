"""Gateway path vs a direct call to one app, side by side in one run (bounded load, 127.0.0.1).

    python -m benchmarks.gateway [--seconds 5] [--connections 16] [--rounds 2]

Starts the local topology (throw-away certificates), then runs wrk against
  gateway:  client -> HAProxy gateway (key and bearer token checks) -> HAProxy front end
            (mTLS) -> app
  direct:   client -> app (plain HTTP, carrying the X-ARR-ClientCert header a front end
            would set and the same bearer token, so the app's certificate and token checks run
            as on the gateway path)
for GET /api/TodoItem, alternating the two (rounds), and prints requests/s of each round and
the ratio gateway/direct of the medians. The topology's processes (HAProxy, the apps, the
issuer) are pinned to CPU 0 once started (every thread of every process under this one); wrk,
this process and Azurite (the store: Cosmos DB's stand-in, outside the path measured) to CPU 1:
on 2 cores an unpinned wrk takes CPU from the servers.
Both paths use the same wrk settings; the machine is shared, so compare the ratio, not the
absolute numbers.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.contract import AUTHORIZATION_HEADER, CLIENT_CERT_HEADER
from app.contract import TODO_PATH as PATH
from benchmarks import wrk
from benchmarks.app_server import LOAD_CPU, SERVER_CPU, refuse_unfit_machine
from loadtests.topology import Topology, TopologyConfig
from tools.development import certs


def certificate_header(config: TopologyConfig) -> dict[str, str]:
    pem = (config.certs_dir / "client.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return {CLIENT_CERT_HEADER: base64.b64encode(der).decode()}


def is_azurite(process: psutil.Process) -> bool:
    try:
        return any("azurite" in part for part in process.cmdline())
    except psutil.Error:  # gone meanwhile
        return False


def pin(processes: list[psutil.Process], cpu: int) -> int:
    """Every thread of `processes` onto `cpu` (sched_setaffinity acts on one thread); how many
    threads were pinned."""
    pinned = 0
    for process in processes:
        try:
            threads = process.threads()
        except psutil.Error:  # gone meanwhile
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread.id, {cpu})
                pinned += 1
            except OSError:  # ended meanwhile
                pass
    return pinned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    refuse_unfit_machine()
    if shutil.which("wrk") is None:
        print("error: wrk is not on PATH (Debian package wrk; make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        certs.generate(Path(tmp) / "certs")
        config = TopologyConfig(certs_dir=Path(tmp) / "certs", workdir=Path(tmp) / "topology")
        with Topology.start(config) as topology:
            processes = psutil.Process().children(recursive=True)
            store = [process for process in processes if is_azurite(process)]
            servers = [process for process in processes if process not in store]
            threads = pin(servers, int(SERVER_CPU))
            pin(store, int(LOAD_CPU))  # the store is Cosmos DB's stand-in: outside, like wrk
            os.sched_setaffinity(0, {int(LOAD_CPU)})  # this process: with wrk, off the servers
            print(f"{len(servers)} topology processes ({threads} threads) on CPU {SERVER_CPU};"
                  f" wrk and Azurite (pids {[process.pid for process in store]}) on CPU {LOAD_CPU}", flush=True)
            caller = topology.caller_headers()  # the subscription key and a bearer token
            token = {AUTHORIZATION_HEADER: caller[AUTHORIZATION_HEADER]}
            paths = {
                "gateway": (topology.gateway_url + PATH, caller),
                "direct": (
                    topology.app_url("primary") + PATH,
                    {**certificate_header(config), **token},
                ),
            }
            results: dict[str, list[float]] = {name: [] for name in paths}
            for round_number in range(1, args.rounds + 1):
                for name, (url, headers) in paths.items():
                    rps = wrk.run(
                        url,
                        seconds=args.seconds,
                        threads=1,
                        connections=args.connections,
                        headers=headers,
                        cpus=LOAD_CPU,
                    ).requests_per_second
                    results[name].append(rps)
                    print(f"round {round_number}  {name:<8} {rps:9.0f} req/s", flush=True)
    gateway, direct = (statistics.median(results[name]) for name in ("gateway", "direct"))
    print(
        f"\nGET {PATH}, {args.connections} connections, {args.seconds:g} s x {args.rounds} rounds"
        f" each (median); servers on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}"
    )
    print(f"  gateway path (gateway -> front end mTLS -> app)  {gateway:9.0f} req/s")
    print(f"  direct to one app                                {direct:9.0f} req/s")
    print(f"  ratio gateway/direct                             {gateway / direct:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
