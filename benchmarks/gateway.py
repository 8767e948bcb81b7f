"""Gateway path vs a direct call to one app, side by side in one run (bounded load, 127.0.0.1).

    python -m benchmarks.gateway [--seconds 5] [--connections 16] [--rounds 2]

Starts the local topology (throw-away certificates), then runs wrk against
  gateway:  client -> HAProxy gateway (key and bearer token checks) -> HAProxy front end
            (mTLS) -> app
  direct:   client -> app (plain HTTP, carrying the X-ARR-ClientCert header a front end
            would set and the same bearer token, so the app's certificate and token checks run
            as on the gateway path)
for GET /api/TodoItem, alternating the two (rounds), and prints requests/s of each and the
ratio gateway/direct. Both runs use the same wrk settings; the machine is shared, so compare
the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.contract import AUTHORIZATION_HEADER, CLIENT_CERT_HEADER
from app.contract import TODO_PATH as PATH
from benchmarks import wrk
from loadtests.topology import Topology, TopologyConfig
from tools.development import certs


def certificate_header(config: TopologyConfig) -> dict[str, str]:
    pem = (config.certs_dir / "client.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return {CLIENT_CERT_HEADER: base64.b64encode(der).decode()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not on PATH (Debian package wrk; make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        certs.generate(Path(tmp) / "certs")
        config = TopologyConfig(certs_dir=Path(tmp) / "certs", workdir=Path(tmp) / "topology")
        with Topology.start(config) as topology:
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
                    ).requests_per_second
                    results[name].append(rps)
                    print(f"round {round_number}  {name:<8} {rps:9.0f} req/s", flush=True)
    gateway, direct = (statistics.median(results[name]) for name in ("gateway", "direct"))
    print(
        f"\nGET {PATH}, {args.connections} connections, {args.seconds:g} s x {args.rounds} rounds"
        f" each (median)"
    )
    print(f"  gateway path (gateway -> front end mTLS -> app)  {gateway:9.0f} req/s")
    print(f"  direct to one app                                {direct:9.0f} req/s")
    print(f"  ratio gateway/direct                             {gateway / direct:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
