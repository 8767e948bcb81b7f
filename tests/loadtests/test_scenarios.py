"""The Locust scenarios, run by `python -m loadtests.run` as real subprocesses (short runs)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys

from app.contract import AUTH_NONE, MEMORY_STORE, TODO_PATH
from loadtests.analysis import load_records
from loadtests.item_identity import token_of
from loadtests.reconciliation import DEFECTS
from loadtests.run import STORE_CONNECTION_STRING_ENV
from loadtests.token_attacks import ATTACKS
from loadtests.topology import ROOT

RUN_TIMEOUT_SECONDS = 120


def run(topology, *arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        *arguments,
        "--host",
        topology.gateway_url,
        "--key",
        topology.config.subscription_key,
    ]
    issuer = getattr(topology, "issuer_config", None)
    if issuer is not None:  # each user a caller of its own, with a token of the topology's issuer
        command += ["--token-issuer", str(topology.issuer_config_path)]
    # A session of its own: on a timeout, the run and the Locust it started are killed.
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"never happened: loadtests.run finished (not within {RUN_TIMEOUT_SECONDS} s)\n"
                + stdout
                + stderr
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@contextlib.contextmanager
def unscoped_stand_in(topology):
    """A stand-in API (/todo, key "load-test-key") that checks the subscription key only: no
    token, and one list of items for every caller; the users mint tokens of the topology's
    issuer all the same."""
    from types import SimpleNamespace

    from tests.github.fake_azure import Gateway

    api = Gateway("todo", "load-test-key")
    api.web_app_names = ["todo-api-stand-in"]  # it serves the API
    try:
        yield SimpleNamespace(
            gateway_url=api.url,
            config=SimpleNamespace(subscription_key="load-test-key"),
            issuer_config=topology.issuer_config,
            issuer_config_path=topology.issuer_config_path,
        )
    finally:
        api.close()


def test_a_short_throughput_run_writes_its_summary_and_exits_0(topology, tmp_path):
    result = run(
        topology, "throughput", "--users", "4", "--duration", "3", "--report-dir", str(tmp_path),
        "--max-cross-owner-reads", "0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    # Each user a caller of its own (a token of the topology's issuer): none saw another's item.
    cross = summary["cross_owner"]
    assert cross["reads"] == 0 and cross["items"] == 0 and cross["checked"] > 0
    assert "cross-owner reads" in result.stdout


def test_one_access_token_for_every_user_is_sent_as_it_is_and_reads_are_not_checked(
    topology, tmp_path
):
    """LOCUST_ACCESS_TOKEN (Azure with auth.mode = "entra": one client credentials token): all
    users are that one caller; without it the gateway refuses every call (the planted case)."""
    from types import SimpleNamespace

    tokenless = SimpleNamespace(gateway_url=topology.gateway_url, config=topology.config)
    token = topology.token("5c1d9e7a-3b2f-4a68-9d0e-1f2a3b4c5d6e")
    arguments = ("throughput", "--users", "3", "--duration", "3", "--max-failure-ratio", "0")
    result = run(tokenless, *arguments, "--report-dir", str(tmp_path / "token"),
                 env={"LOCUST_ACCESS_TOKEN": token})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "token" / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    assert summary["cross_owner"] is None  # one caller: nothing to tell apart, nothing checked
    assert token not in result.stdout + result.stderr
    result = run(tokenless, *arguments, "--report-dir", str(tmp_path / "none"),
                 env={"LOCUST_ACCESS_TOKEN": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert summary["failures"] == summary["requests"] > 0


def test_a_read_answered_with_another_callers_item_is_counted_and_fails_the_run(
    topology, tmp_path
):
    """Planted: a stand-in API that keeps one list for every caller (no owners) answers each
    user's list with the other users' items too."""
    with unscoped_stand_in(topology) as stand_in:
        result = run(stand_in, "throughput", "--users", "3", "--duration", "3", "--api-path",
                     "/todo", "--max-cross-owner-reads", "0", "--report-dir", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    cross = summary["cross_owner"]
    assert cross["reads"] > 0 and cross["items"] >= cross["reads"]
    foreign = [r for r in load_records(tmp_path / "records") if r.get("cross_owner")]
    assert len(foreign) == cross["reads"] and all(r["outcome"] == "fail" for r in foreign)
    assert "THRESHOLD BROKEN: max-cross-owner-reads 0 broken: cross_owner.reads" in result.stdout
    assert {"locust.html", "locust_stats.csv", "timeline.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_a_broken_threshold_exits_non_zero_and_says_which(topology, tmp_path):
    result = run(
        topology,
        "throughput",
        "--users",
        "2",
        "--duration",
        "2",
        "--min-rps",
        "1000000000",
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "THRESHOLD BROKEN: min-rps" in result.stdout


def test_the_security_scenario_passes(topology, certs_dir, tmp_path):
    before = stored(topology)
    frontends = ",".join(topology.frontend_url(role) for role in ("primary", "secondary"))
    result = run(
        topology,
        "security",
        "--users",
        "2",
        "--duration",
        "3",
        "--frontend-urls",
        frontends,
        "--ca-bundle",
        str(certs_dir / "ca.pem"),
        "--cert",
        str(certs_dir / "client.pem"),
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    # Every token attack was made (and refused), and none changed anything.
    names = (tmp_path / "locust_stats.csv").read_text()
    assert all(f"gateway, {attack.name}" in names for attack in ATTACKS)
    assert "another caller's item, DELETE" in names
    assert stored(topology) == before


def stored(topology) -> set:
    return {(i.id, i.name, i.is_completed) for i in topology.items_source().read()}


def test_the_security_scenario_fails_when_the_gateway_admits_a_bad_token(topology, tmp_path):
    """Planted: a stand-in gateway that checks the subscription key only, not the token."""
    with unscoped_stand_in(topology) as stand_in:
        result = run(stand_in, "security", "--users", "1", "--duration", "2", "--api-path",
                     "/todo", "--report-dir", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert "gateway, alg none" in failures and "gateway, expired token" in failures


def test_the_security_scenario_fails_when_a_front_end_admits_a_call(topology, certs_dir, tmp_path):
    """A "front end" that answers 401 instead of 403 (here: the gateway) breaks the run."""
    result = run(
        topology,
        "security",
        "--users",
        "1",
        "--duration",
        "2",
        "--frontend-urls",
        topology.gateway_url,
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 1


def test_a_failover_run_reconciles_every_item_against_the_table(topology, tmp_path):
    """Load without a fault: every item the users were told about is in the table, as told."""
    result = run(
        topology,
        "failover",
        "--users",
        "4",
        "--duration",
        "4",
        "--store-table",
        topology.config.table_name,
        *[arg for name in DEFECTS for arg in (f"--max-items-{name.replace('_', '-')}", "0")],
        "--report-dir",
        str(tmp_path),
        env={STORE_CONNECTION_STRING_ENV: topology.store.connection_string},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    items = summary["items"]
    assert items["read_from"] == f"store: table {topology.config.table_name}"
    assert items["acknowledged"] > 0 and items["creates_attempted"] >= items["acknowledged"]
    assert {name: items[name] for name in DEFECTS} == dict.fromkeys(DEFECTS, 0)
    assert summary["profile"] == "local"
    # Each create's identity is in its item's name, in the records and in the table alike.
    posts = [r for r in load_records(tmp_path / "records") if r["method"] == "POST"]
    assert posts and all(token_of(r["content"]["name"]) == r["token"] for r in posts)
    in_table = {item.id: item for item in topology.items_source().read()}
    kept = [r for r in posts if r["item"] in in_table]
    assert kept and all(token_of(in_table[r["item"]].name) == r["token"] for r in kept)
    assert "items missing (acknowledged, not deleted, not in the store)  0" in result.stdout


def test_a_store_table_without_its_connection_string_is_a_one_line_error(topology, tmp_path):
    result = run(
        topology,
        "failover",
        "--store-table",
        "TodoItems",
        "--report-dir",
        str(tmp_path),
        env={STORE_CONNECTION_STRING_ENV: ""},
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: --store-table needs ${STORE_CONNECTION_STRING_ENV} (its connection string)\n"
    )


def test_a_table_that_cannot_be_read_stops_the_run_before_it_starts(topology, tmp_path):
    result = run(
        topology,
        "failover",
        "--store-table",
        "NoSuchTable",
        "--report-dir",
        str(tmp_path),
        env={STORE_CONNECTION_STRING_ENV: topology.store.connection_string},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: items before the run: reading table 'NoSuchTable' failed: ResourceNotFoundError"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "records").exists()  # no load was sent


def test_without_a_table_a_failover_run_reconciles_through_the_api_and_says_so(
    start_topology, tmp_path
):
    """Only without tokens: with them each caller lists only its own items."""
    topology = start_topology(auth=AUTH_NONE, store=MEMORY_STORE)
    result = run(
        topology, "failover", "--users", "2", "--duration", "3", "--report-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    items = json.loads((tmp_path / "summary.json").read_text())["items"]
    url = f"{topology.gateway_url}{TODO_PATH}"
    assert items["read_from"] == f"api: GET {url} (the API's list, not the store)"
    assert items["acknowledged"] > 0 and items["missing"] == 0


def test_a_write_answered_409_in_flight_is_sent_again_with_its_key(tmp_path):
    """The app answers 409 + Retry-After while another attempt holds the key (a region that
    died mid-write): the user waits and sends the same write with the same key again; the 409
    is recorded as retried, not failed. Here a stand-in API answers every key's first write
    with that 409."""
    from types import SimpleNamespace

    from app.contract import IDEMPOTENCY_KEY_HEADER
    from tests.github.fake_azure import Gateway, reply

    class HeldKeys(Gateway):
        def __init__(self):
            super().__init__("todo", "load-test-key")
            self.web_app_names = ["todo-api-stand-in"]
            self.keys: list[str] = []

        def answer(self, request, path):
            key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
            if key is not None and key not in self.keys:
                self.keys.append(key)
                request.rfile.read(int(request.headers.get("Content-Length") or 0))
                reply(request, 409, {"status": 409}, {"Retry-After": "0"})
                return 409
            return super().answer(request, path)

    api = HeldKeys()
    try:
        stand_in = SimpleNamespace(gateway_url=api.url,
                                   config=SimpleNamespace(subscription_key="load-test-key"))
        result = run(stand_in, "throughput", "--users", "2", "--duration", "3", "--api-path",
                     "/todo", "--report-dir", str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        records = load_records(tmp_path / "records")
        retried = [r for r in records if r["outcome"] == "retried"]
        writes = [r for r in records if r["method"] in ("POST", "PUT", "DELETE")]
        assert retried and all(r["status"] == 409 for r in retried)
        assert not [r for r in records if r["outcome"] == "fail"]
        # every key was held once (409) and its write then sent again and served; the users'
        # deliberate replays and copies are served at once (their key is known by then)
        held = [c for c in api.calls if c[0] in ("POST", "PUT", "DELETE") and c[2] == 409]
        served = [c for c in api.calls if c[0] in ("POST", "PUT", "DELETE") and c[2] != 409]
        assert len(held) == len(retried) == len(api.keys)
        assert len(served) == len(writes) - len(retried) >= len(held)
    finally:
        api.close()


def test_write_retries_tell_the_users_retries_from_the_apps_replays():
    from loadtests.run import write_retries

    records = [
        {"outcome": "retried", "status": 409},
        {"outcome": "retried", "status": 503, "retry_after": True},
        {"outcome": "retried", "status": 503, "retry_after": True},
        {"outcome": "ok", "status": 201, "replayed": True},
        {"outcome": "ok", "status": 201, "replayed": True, "deliberate_replay": True},
        {"outcome": "ok", "status": 201},
    ]
    assert write_retries(records) == {
        "retried": 3, "retried_after_409": 1, "retried_after_503": 2,
        "replayed": 2, "replayed_unasked": 1,
    }


def test_a_fault_command_that_fails_stops_the_run_without_a_verdict(topology, tmp_path):
    """No fault, no drill: a run whose fault never happened must not pass as a drill."""
    result = run(
        topology, "failover", "--users", "2", "--duration", "60", "--report-dir", str(tmp_path),
        "--fault-at", "1", "--fault-command", "exit 3",
        "--restore-at", "50", "--restore-command", "true",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the fault command failed: `exit 3` exited with status 3" in result.stderr
    assert not (tmp_path / "summary.json").exists()


def test_a_fault_command_may_report_when_its_fault_really_began_and_ended(topology, tmp_path):
    """A Chaos Studio start returns once its queued execution runs: the window is the times the
    commands report (FAULT_TIME= / RESTORE_TIME=), not when they were launched."""
    def reporting(name: str, shift: float) -> str:
        said = tmp_path / f"{name}.txt"
        code = (f"import time; t = round(time.time() - {shift}, 3);"
                f" open({str(said)!r}, 'w').write(str(t)); print(f'{name}={{t}}')")
        return f"{sys.executable} -c {shlex.quote(code)}"

    result = run(
        topology, "failover", "--users", "2", "--duration", "8", "--report-dir", str(tmp_path),
        "--fault-at", "3", "--fault-command", reporting("FAULT_TIME", 1.5),
        "--restore-at", "5", "--restore-command", reporting("RESTORE_TIME", 0.5),
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fault_time"] == float((tmp_path / "FAULT_TIME.txt").read_text())
    assert summary["restore_time"] == float((tmp_path / "RESTORE_TIME.txt").read_text())


def test_a_token_issuer_config_that_cannot_be_read_is_a_one_line_error(tmp_path):
    from types import SimpleNamespace

    nowhere = SimpleNamespace(gateway_url="http://127.0.0.1:9", config=SimpleNamespace(
        subscription_key="key"))
    missing = tmp_path / "issuer.json"
    result = run(nowhere, "throughput", "--token-issuer", str(missing), "--report-dir",
                 str(tmp_path / "report"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --token-issuer: issuer config {missing}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()  # no load was sent
