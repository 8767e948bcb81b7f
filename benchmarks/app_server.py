"""Benchmark: the production app (full middleware, validation, store) vs a bare Starlette app that
does the same work, side by side in one run. Goal: ratio >= 0.90 on every case.

Both run under app/startup.sh (gunicorn + uvicorn, one worker, the same flags), pinned to CPU 0
(`taskset -c 0`); wrk runs pinned to CPU 1, and so does Azurite for the table store: on 2 cores
an unpinned load generator takes CPU from the server and hides overhead. Each case warms up
both apps, then runs baseline and app in turn for --rounds rounds (who goes first alternates);
every round is printed, and the ratio is taken of the medians.

Stores (--store):
- memory: the app's in-memory store vs a bare route answering the same payload from a list;
- table: the app on Azurite (STORE=table) vs a bare route making the same azure-data-tables
  calls (get_entity, list_entities, create_entity) against the same Azurite table.

    python -m benchmarks.app_server [--store memory|table|both] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
SERVER_CPU, LOAD_CPU = "0", "1"
TABLE = "BenchmarkItems"
BASELINES = {"memory": "benchmarks.app_server:baseline", "table": "benchmarks.app_server:table"}

# -- the bare baselines: same paths and payloads, no middleware, no validation ---------------------

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


def _routes(list_, item, create) -> list[Route]:
    return [
        Route("/api/TodoItem", list_, methods=["GET"]),
        Route("/api/TodoItem", create, methods=["POST"]),
        Route("/api/TodoItem/{id}", item, methods=["GET"]),
        Route("/health/{key}", _list, methods=["GET"]),
    ]


baseline = Starlette(routes=_routes(_list, _item, _create))


def _table_baseline() -> Starlette:
    """The same SDK calls the table store makes, with nothing around them."""
    from azure.data.tables.aio import TableClient

    from app.store import ANONYMOUS_OWNER
    from app.table_store import ITEM_ROW_PREFIX, ITEM_ROWS, ITEMS_OF_OWNER, PAGE_SIZE, SELECT

    client: list[TableClient] = []

    def table() -> TableClient:
        if not client:
            client.append(
                TableClient.from_connection_string(
                    os.environ["TABLE_CONNECTION_STRING"], os.environ["TABLE_NAME"]
                )
            )
        return client[0]

    def as_item(entity) -> dict:
        return {
            "id": entity["RowKey"][len(ITEM_ROW_PREFIX) :],
            "name": entity["Name"],
            "isCompleted": entity["IsCompleted"],
        }

    async def list_(request: Request) -> JSONResponse:
        entities = table().query_entities(
            ITEMS_OF_OWNER,
            parameters={"owner": ANONYMOUS_OWNER, **ITEM_ROWS},
            select=SELECT,
            results_per_page=PAGE_SIZE,
        )
        return JSONResponse([as_item(e) async for e in entities])

    async def item(request: Request) -> JSONResponse:
        row = ITEM_ROW_PREFIX + request.path_params["id"]
        entity = await table().get_entity(ANONYMOUS_OWNER, row, select=SELECT)
        return JSONResponse(as_item(entity))

    async def create(request: Request) -> JSONResponse:
        data = json.loads(await request.body())
        item_id = uuid.uuid4().hex
        entity = {
            "PartitionKey": ANONYMOUS_OWNER,
            "RowKey": ITEM_ROW_PREFIX + item_id,
            "Name": data["name"],
            "IsCompleted": data["isCompleted"],
        }
        await table().create_entity(entity)
        return JSONResponse(
            as_item(entity), status_code=201, headers={"Location": f"/api/TodoItem/{item_id}"}
        )

    return Starlette(routes=_routes(list_, item, create))


table = _table_baseline()


# -- the run ------------------------------------------------------------------------------------


def _settings(work: Path) -> tuple[dict[str, str], str]:
    from tests.app import certs  # test-certificate factory (cryptography), shared with the suite

    authority = certs.make_authority()
    client = certs.make_client(authority)
    (work / "ca.pem").write_bytes(authority.pem)
    settings = {
        "APP_ENV": "production",
        "WEBSITE_SITE_NAME": "benchmark",
        "HEALTH_CHECK_KEY": HEALTH_KEY,
        "CLIENT_CERT_SUBJECT": certs.CLIENT_SUBJECT,
        "CLIENT_CERT_ISSUER": certs.CA_SUBJECT,
        "CLIENT_CERT_THUMBPRINTS": certs.sha1(client),
        "CLIENT_CERT_CA": str(work / "ca.pem"),
    }
    return settings, f"X-ARR-ClientCert: {certs.header_value(client)}"


def _seed(server, header: str, extra: dict[str, str] | None = None) -> list[dict]:
    """LIST_SIZE items, POSTed with the certificate `header` (and `extra` headers)."""
    name, value = header.split(": ", 1)
    headers = {name: value, "Content-Type": "application/json", **(extra or {})}
    created = []
    for n in range(LIST_SIZE):
        body = json.dumps({"name": f"item {n}", "isCompleted": n % 2 == 0}).encode()
        status, _, answer = server.request("POST", "/api/TodoItem", body, headers)
        assert status == 201, (status, answer)
        created.append(json.loads(answer))
    return created


def write_post_script(work: Path) -> Path:
    """A wrk script that POSTs POST_BODY as JSON (benchmarks/telemetry.py uses it too)."""
    script = work / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(POST_BODY)}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


def _start(servers, settings: dict[str, str], log: Path, app_path: str | None = None):
    ready = "/health/" + HEALTH_KEY
    return servers.start_production(settings, log, ready, app_path, cpus=SERVER_CPU)


def _wrk(url: str, header: str, seconds: float, args, script: Path | None) -> Result:
    name, value = header.split(": ", 1)
    return wrk.run(
        url,
        seconds=seconds,
        threads=args.threads,
        connections=args.connections,
        headers={name: value},
        script=script,
        cpus=LOAD_CPU,
    )


@contextlib.contextmanager
def _store(kind: str, work: Path):
    """The store settings for both apps (and Azurite, pinned to the load generator's CPU)."""
    if kind == "memory":
        yield {"STORE": "memory"}
        return
    from loadtests.azurite import Azurite

    azurite = Azurite(work / "azurite")
    azurite.start()
    try:
        os.sched_setaffinity(azurite.process.pid, {int(LOAD_CPU)})
        azurite.create_table(TABLE)
        yield {
            "STORE": "table",
            "TABLE_NAME": TABLE,
            "TABLE_CONNECTION_STRING": azurite.connection_string,
        }
    finally:
        azurite.stop()


def measure(kind: str, args, work: Path) -> list[tuple[str, list[Result], list[Result]]]:
    from tests.app import servers

    settings, header = _settings(work)
    post_script = write_post_script(work)
    rows = []
    with _store(kind, work) as store:
        settings = {**settings, **store}
        candidate = _start(servers, settings, work / f"{kind}-app.log")
        bare = _start(servers, settings, work / f"{kind}-baseline.log", BASELINES[kind])
        try:
            items = _seed(candidate, header)
            # The memory baseline answers its own list; the table baseline reads the seeded one.
            base_item = _ITEMS[0]["id"] if kind == "memory" else items[0]["id"]
            cases = [
                (f"GET list ({LIST_SIZE} items)", "/api/TodoItem", "/api/TodoItem", None),
                ("GET item", f"/api/TodoItem/{items[0]['id']}", f"/api/TodoItem/{base_item}", None),
                ("POST", "/api/TodoItem", "/api/TodoItem", post_script),
            ]
            for label, app_path, base_path, script in cases:
                base_url = f"http://127.0.0.1:{bare.port}{base_path}"
                app_url = f"http://127.0.0.1:{candidate.port}{app_path}"
                _wrk(base_url, header, WARM_UP_SECONDS, args, script)
                _wrk(app_url, header, WARM_UP_SECONDS, args, script)
                base, full = [], []
                for n in range(args.rounds):
                    # Who goes first alternates: a POST round grows the table the next one reads.
                    order = [(base, base_url), (full, app_url)]
                    for results, url in order if n % 2 == 0 else reversed(order):
                        results.append(_wrk(url, header, args.duration, args, script))
                rows.append((label, base, full))
        finally:
            candidate.stop()
            bare.stop()
    return rows


def report(kind: str, rows, args) -> bool:
    print(
        f"\nstore={kind}: app/startup.sh, 1 worker each, server on CPU {SERVER_CPU}, wrk "
        f"-t{args.threads} -c{args.connections} -d{args.duration}s on CPU {LOAD_CPU}"
        + (", Azurite on CPU 1" if kind == "table" else "")
        + f"; {args.rounds} alternating rounds"
    )
    print(
        f"{'case':<20} {'round':>5} {'baseline req/s':>15} {'app req/s':>10} {'ratio':>6} "
        f"{'base p99':>9} {'app p99':>9}"
    )
    met = True
    for label, base, full in rows:
        for n, (b, f) in enumerate(zip(base, full, strict=True), 1):
            print(
                f"{label:<20} {n:>5} {b.requests_per_second:>15.0f} {f.requests_per_second:>10.0f} "
                f"{f.requests_per_second / b.requests_per_second:>6.2f} {b.p99_ms:>7.2f}ms "
                f"{f.p99_ms:>7.2f}ms"
            )
        ratio = wrk.median_rps(full) / wrk.median_rps(base)
        verdict = "met" if ratio >= GOAL else f"MISSED (< {GOAL:.2f})"
        met = met and ratio >= GOAL
        print(
            f"{label:<20} {'median':>5} {wrk.median_rps(base):>15.0f} {wrk.median_rps(full):>10.0f} "
            f"{ratio:>6.2f}  goal {verdict}"
        )
    return met


def machine_problem() -> str | None:
    """Why this machine cannot run a pinned side-by-side benchmark (None: it can)."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if len(os.sched_getaffinity(0)) < 2:
        return "needs 2 CPUs (server and load generator apart)"
    return None


def refuse_unfit_machine() -> None:
    """Exit with status 2 and the reason when this machine cannot run the benchmark."""
    problem = machine_problem()
    if problem:
        print(f"benchmark: {problem}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("memory", "table", "both"), default="both")
    wrk.add_load_arguments(parser, rounds=3, rounds_help="alternating rounds per case")
    args = parser.parse_args(argv)
    refuse_unfit_machine()
    kinds = ["memory", "table"] if args.store == "both" else [args.store]
    met = True
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        for kind in kinds:
            work = Path(tmp) / kind
            work.mkdir()
            met = report(kind, measure(kind, args, work), args) and met
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
