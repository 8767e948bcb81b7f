"""Benchmark: the production server with the full middleware vs a bare Starlette app, side by side.

Both run under app/startup.sh (gunicorn + uvicorn workers, the same worker count and flags); wrk
drives GET list (10 items), GET item and POST against each in turn, on 127.0.0.1 only. Prints
requests/s and p99 latency for both and their ratio per case. Goal: ratio >= 0.90 on each.

The machine is shared, so each case alternates baseline and app for --rounds rounds and keeps
each app's best round (highest requests/s, and its p99): noise only ever slows a round down.
A short unmeasured warm-up precedes each case.

    python -m benchmarks.app_server [--duration 10] [--rounds 2] [--threads 2] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks import wrk
from benchmarks.wrk import Result

GOAL = 0.90
WARM_UP_SECONDS = 2  # per case and app, not measured
LIST_SIZE = 10
HEALTH_KEY = "benchmark-health-key-0123456789"
POST_BODY = '{"name": "benchmark item", "isCompleted": false}'
BASELINE_APP = "benchmarks.app_server:baseline"

# The bare baseline: same paths, same payloads, no middleware, no validation, no store.
_ITEMS = [
    {"id": uuid.UUID(int=n).hex, "name": f"item {n}", "isCompleted": n % 2 == 0}
    for n in range(LIST_SIZE)
]


async def _list(request: Request) -> JSONResponse:
    return JSONResponse(_ITEMS)


async def _item(request: Request) -> JSONResponse:
    return JSONResponse(_ITEMS[0])


async def _create(request: Request) -> JSONResponse:
    data = json.loads(await request.body())
    item = {"id": uuid.uuid4().hex, "name": data["name"], "isCompleted": data["isCompleted"]}
    return JSONResponse(item, status_code=201, headers={"Location": f"/api/TodoItem/{item['id']}"})


baseline = Starlette(
    routes=[
        Route("/api/TodoItem", _list, methods=["GET"]),
        Route("/api/TodoItem", _create, methods=["POST"]),
        Route("/api/TodoItem/{id}", _item, methods=["GET"]),
        Route("/health/{key}", _list, methods=["GET"]),
    ]
)


def run_wrk(url: str, header: str, args: argparse.Namespace, script: Path | None) -> Result:
    name, value = header.split(": ", 1)
    return wrk.run(
        url,
        seconds=args.duration,
        threads=args.threads,
        connections=args.connections,
        headers={name: value},
        script=script,
    )


def _best(results: list[Result]) -> Result:
    return max(results, key=lambda result: result.requests_per_second)


def _environment(work: Path) -> tuple[dict[str, str], str]:
    from tests.app import certs  # test-certificate factory (cryptography), shared with the suite

    authority = certs.make_authority()
    client = certs.make_client(authority)
    (work / "ca.pem").write_bytes(authority.pem)
    settings = {
        "APP_ENV": "production",
        "STORE": "memory",
        "WEBSITE_SITE_NAME": "benchmark",
        "HEALTH_CHECK_KEY": HEALTH_KEY,
        "CLIENT_CERT_SUBJECT": certs.CLIENT_SUBJECT,
        "CLIENT_CERT_ISSUER": certs.CA_SUBJECT,
        "CLIENT_CERT_THUMBPRINTS": certs.sha1(client),
        "CLIENT_CERT_CA": str(work / "ca.pem"),
    }
    return settings, f"X-ARR-ClientCert: {certs.header_value(client)}"


def _seed(server, header: str) -> str:
    name, value = header.split(": ", 1)
    item_id = ""
    for n in range(LIST_SIZE):
        body = json.dumps({"name": f"item {n}", "isCompleted": n % 2 == 0}).encode()
        status, _, created = server.request(
            "POST", "/api/TodoItem", body, {name: value, "Content-Type": "application/json"}
        )
        assert status == 201, (status, created)
        item_id = item_id or json.loads(created)["id"]
    return item_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round (default 10)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds per case (default 2)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmark: wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2

    from tests.app import servers

    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        work = Path(tmp)
        settings, header = _environment(work)
        post_script = work / "post.lua"
        post_script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(POST_BODY)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        ready = f"/health/{HEALTH_KEY}"
        candidate = servers.start_production(settings, work / "candidate.log", ready)
        bare = servers.start_production(settings, work / "baseline.log", ready, BASELINE_APP)
        try:
            item_id = _seed(candidate, header)
            cases = [
                (f"GET list ({LIST_SIZE} items)", "/api/TodoItem", None, "/api/TodoItem"),
                ("GET item", f"/api/TodoItem/{item_id}", None, f"/api/TodoItem/{_ITEMS[0]['id']}"),
                ("POST", "/api/TodoItem", post_script, "/api/TodoItem"),
            ]
            rows = []
            for label, candidate_path, script, baseline_path in cases:
                base_url = f"http://127.0.0.1:{bare.port}{baseline_path}"
                full_url = f"http://127.0.0.1:{candidate.port}{candidate_path}"
                warm_up = argparse.Namespace(**{**vars(args), "duration": WARM_UP_SECONDS})
                run_wrk(base_url, header, warm_up, script)
                run_wrk(full_url, header, warm_up, script)
                base, full = [], []
                for _ in range(args.rounds):
                    base.append(run_wrk(base_url, header, args, script))
                    full.append(run_wrk(full_url, header, args, script))
                rows.append((label, _best(base), _best(full)))
        finally:
            candidate.stop()
            bare.stop()
    _print_table(rows, args)
    return 0


def _print_table(rows, args: argparse.Namespace) -> None:
    print(
        f"app/startup.sh, 1 worker each; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"best of {args.rounds} alternating rounds, 127.0.0.1; baseline = bare Starlette, same payloads"
    )
    print(
        f"{'case':<20} {'baseline req/s':>15} {'app req/s':>11} {'ratio':>6} {'baseline p99':>13} {'app p99':>9}  goal"
    )
    for label, base, full in rows:
        ratio = full.requests_per_second / base.requests_per_second
        verdict = "met" if ratio >= GOAL else f"missed (< {GOAL:.2f})"
        print(
            f"{label:<20} {base.requests_per_second:>15.0f} {full.requests_per_second:>11.0f} {ratio:>6.2f} "
            f"{base.p99_ms:>11.2f}ms {full.p99_ms:>7.2f}ms  {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
