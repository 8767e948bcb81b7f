"""Azure Load Testing: the test definition, read back as the service reads it, run from the flat
folder the service makes of it, and its results read back into our analysis.

The service is not reachable here. What stands in: the documented YAML keys and failure
criteria grammar (parsed below), a flat folder like the one the service fills (every uploaded
file beside the test plan), Locust started there with the definition's environment, and a
stand-in gateway that answers like a bad day (failures, a region change, held keys, lost
items), so the results carry every kind of request."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from app.contract import IDEMPOTENCY_KEY_HEADER, SITE_NAME_HEADER
from loadtests.analysis import THRESHOLDS
from tests.github.fake_azure import Gateway, Server, reply
from tests.tools.stack_outputs_data import ENGINE_IDENTITY, ENTRA_OUTPUTS, raw_outputs
from tools.operations import azure_load_testing as alt

ROOT = Path(__file__).resolve().parents[2]
KEY = "sub-key-0123"  # raw_outputs()'s subscription key: it must appear in no file written
SECRET_URI = "https://kv-todo-dev.vault.azure.net/secrets/gateway-subscription-key"
LOCUST_SECONDS = 60

# The documented failure criteria (reference-test-config-yaml.md, how-to-define-test-criteria.md):
# `[Request: ]aggregate(client_metric) condition threshold`, per metric its aggregates,
# conditions and threshold kind.
PERCENTILES = {f"p{n}" for n in (50, 75, 90, 95, 96, 97, 98, 99, 999, 9999)}
METRICS = {
    "response_time_ms": ({"avg", "min", "max"} | PERCENTILES, {">", "<"}, "integer"),
    "latency": ({"avg", "min", "max", "p50", "p90", "p95", "p99"}, {">", "<"}, "integer"),
    "error": ({"percentage"}, {">"}, "percentage"),
    "requests_per_sec": ({"avg"}, {">", "<"}, "two decimals"),
    "requests": ({"count"}, {">", "<"}, "integer"),
}
CRITERION = re.compile(r"(?:(?P<request>[^:]+):\s*)?(?P<aggregate>\w+)\((?P<metric>\w+)\)"
                       r"\s*(?P<condition>[<>])\s*(?P<threshold>\S+)")


def parse_criterion(text: str) -> tuple[str, str, str, float]:
    match = CRITERION.fullmatch(text)
    assert match, f"not aggregate(metric) condition threshold: {text!r}"
    aggregates, conditions, kind = METRICS[match["metric"]]
    assert match["aggregate"] in aggregates and match["condition"] in conditions, text
    threshold = match["threshold"]
    if kind == "integer":
        assert threshold.isdigit(), text
    elif kind == "two decimals":
        assert re.fullmatch(r"\d+(\.\d{1,2})?", threshold), text
    else:
        assert re.fullmatch(r"\d+(\.\d+)?", threshold) and 0 <= float(threshold) <= 100, text
    return match["aggregate"], match["metric"], match["condition"], float(threshold)


def outputs_file(tmp_path: Path, secrets: dict | None = None, **overrides) -> Path:
    raw = raw_outputs(**overrides)
    if secrets is not False:
        secrets = secrets or {"LOCUST_SUBSCRIPTION_KEY": SECRET_URI}
        raw["load_test_secrets"] = {"sensitive": False, "type": ["map", "string"],
                                    "value": secrets}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.operations.azure_load_testing", *args],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)


def define(tmp_path: Path, *options: str, outputs: Path | None = None,
           out: Path | None = None) -> subprocess.CompletedProcess:
    load = {"--scenario": "throughput", "--users": "100", "--spawn-rate": "10",
            "--duration": "1800", "--engines": "2"}
    given = dict(zip(options[::2], options[1::2], strict=True))
    flags = [x for pair in {**load, **given}.items() for x in pair]
    return cli("definition", str(outputs or outputs_file(tmp_path)), *flags,
               "--out", str(out or tmp_path / "alt"))


def config(directory: Path) -> dict:
    return yaml.safe_load((directory / alt.TEST_CONFIG).read_text())


def env_of(test: dict) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in test["env"]}


def referenced(test: dict) -> list[str]:
    return [test["testPlan"], *test.get("configurationFiles", []), *test.get("zipArtifacts", [])]


# -- the definition -----------------------------------------------------------------------------


def test_the_definition_is_a_locust_test_of_v0_1_that_names_only_files_beside_it(tmp_path):
    result = define(tmp_path)
    assert result.returncode == 0, result.stderr
    test = config(tmp_path / "alt")
    assert {"version", "testId", "testPlan", "testType", "engineInstances"} <= set(test)
    assert (test["version"], test["testType"], test["engineInstances"]) == ("v0.1", "Locust", 2)
    assert re.fullmatch(r"[a-z0-9_-]{2,50}", test["testId"]) and len(test["description"]) <= 100
    assert test["testPlan"] == "locustfile_throughput.py"
    # The service puts every file beside the plan: names only, each one there, nothing else.
    assert all("/" not in name for name in referenced(test))
    assert sorted(p.name for p in (tmp_path / "alt").iterdir()) == sorted(
        [alt.TEST_CONFIG, *referenced(test)])
    assert (tmp_path / "alt" / test["testPlan"]).read_bytes() == (
        ROOT / "loadtests" / test["testPlan"]).read_bytes()


def test_the_load_and_the_gateway_come_from_the_options_and_the_outputs(tmp_path):
    result = define(tmp_path, "--users", "1000", "--spawn-rate", "12.5", "--duration", "1800",
                    "--engines", "4")
    assert result.returncode == 0, result.stderr
    test = config(tmp_path / "alt")
    assert test["engineInstances"] == 4
    assert env_of(test) == {
        "LOCUST_HOST": "https://apim-todo-dev.azure-api.net",
        "LOCUST_API_PATH": "/todo",
        "LOCUST_USERS": "1000",  # in all: the service shares them out over the engines
        "LOCUST_SPAWN_RATE": "12.5",
        "LOCUST_RUN_TIME": "1800s",
        "LOCUST_DETAILED_LABELS": "true",
    }


def test_locust_reads_the_run_time_as_written(tmp_path):
    assert define(tmp_path).returncode == 0
    run_time = env_of(config(tmp_path / "alt"))["LOCUST_RUN_TIME"]
    code = "import sys; from locust.util.timespan import parse_timespan as p; print(p(sys.argv[1]))"
    parsed = subprocess.run(  # Locust's own parser, in a process of its own (gevent)
        [sys.executable, "-c", code, run_time], capture_output=True, text=True, check=True,
        timeout=60)
    assert parsed.stdout.strip() == "1800"


def test_the_subscription_key_goes_as_a_key_vault_reference_never_as_its_value(tmp_path):
    assert define(tmp_path).returncode == 0
    test = config(tmp_path / "alt")
    assert test["secrets"] == [{"name": "LOCUST_SUBSCRIPTION_KEY", "value": SECRET_URI}]
    assert "keyVaultReferenceIdentity" not in test  # the resource's system-assigned identity
    for path in (tmp_path / "alt").iterdir():
        assert KEY.encode() not in path.read_bytes(), path.name
    with zipfile.ZipFile(tmp_path / "alt" / test["zipArtifacts"][0]) as archive:
        assert all(KEY.encode() not in archive.read(name) for name in archive.namelist())


KEY_VAULT_IDENTITY = ("/subscriptions/0000/resourceGroups/rg-global/providers/"
                      "Microsoft.ManagedIdentity/userAssignedIdentities/id-load-test")
ENGINE = {"kind": "Engine", "type": "UserAssigned", "value": ENGINE_IDENTITY["id"]}
JWT_START = b"eyJ"  # base64url of '{"': how every JWT begins


def test_a_user_assigned_identity_can_read_the_secrets(tmp_path):
    assert define(tmp_path, "--key-vault-identity", KEY_VAULT_IDENTITY).returncode == 0
    test = config(tmp_path / "alt")
    assert test["keyVaultReferenceIdentity"] == KEY_VAULT_IDENTITY
    assert "referenceIdentities" not in test  # an API without tokens: as before


def test_an_api_that_takes_tokens_is_called_as_the_stacks_engine_identity(tmp_path):
    """The engines get the identity (referenceIdentities, kind Engine) and Locust is told what
    to ask IMDS for, in plain env: identifiers only, no token anywhere."""
    result = define(tmp_path, outputs=outputs_file(tmp_path, **ENTRA_OUTPUTS))
    assert result.returncode == 0, result.stderr
    assert "region only" in result.stderr  # no load distribution with managed identities
    test = config(tmp_path / "alt")
    assert test["referenceIdentities"] == [ENGINE]
    assert "keyVaultReferenceIdentity" not in test  # the secrets: the system-assigned identity
    env = env_of(test)
    assert env["LOCUST_TOKEN_RESOURCE"] == ENTRA_OUTPUTS["api_identifier_uri"]
    assert env["LOCUST_TOKEN_CLIENT_ID"] == ENGINE_IDENTITY["client_id"]
    assert "LOCUST_ACCESS_TOKEN" not in env and test["secrets"] == [
        {"name": "LOCUST_SUBSCRIPTION_KEY", "value": SECRET_URI}]
    for path in (tmp_path / "alt").iterdir():
        assert JWT_START not in path.read_bytes(), path.name


def test_with_an_engine_identity_the_key_vault_identity_joins_it_in_one_list(tmp_path):
    result = define(tmp_path, "--key-vault-identity", KEY_VAULT_IDENTITY,
                    outputs=outputs_file(tmp_path, **ENTRA_OUTPUTS))
    assert result.returncode == 0, result.stderr
    test = config(tmp_path / "alt")
    assert test["referenceIdentities"] == [
        {"kind": "KeyVault", "type": "UserAssigned", "value": KEY_VAULT_IDENTITY}, ENGINE]
    assert "keyVaultReferenceIdentity" not in test  # never both: one list


@pytest.mark.parametrize(("scenario", "options", "expected", "auto_stop"), [
    ("throughput", (), [("percentage", "error", ">", 1.0)],
     {"errorPercentage": 90, "timeWindow": 60}),
    ("failover", (), [("percentage", "error", ">", 5.0)], "disable"),
    ("throughput", ("--max-failure-ratio", "0.002", "--max-p95-ms", "800", "--min-rps", "50.25"),
     [("percentage", "error", ">", 0.2), ("p95", "response_time_ms", ">", 800.0),
      ("avg", "requests_per_sec", "<", 50.25)], {"errorPercentage": 90, "timeWindow": 60}),
])
def test_our_thresholds_become_failure_criteria_of_the_documented_grammar(
        tmp_path, scenario, options, expected, auto_stop):
    assert define(tmp_path, "--scenario", scenario, *options).returncode == 0
    test = config(tmp_path / "alt")
    assert [parse_criterion(text) for text in test["failureCriteria"]] == expected
    assert test["autoStop"] == auto_stop  # a failover's burst of errors must not stop the run


def test_every_threshold_of_ours_has_a_criterion_or_is_listed_without_one(tmp_path):
    assert set(alt.CRITERIA) | set(alt.WITHOUT_CRITERION) == set(THRESHOLDS)
    assert not set(alt.CRITERIA) & set(alt.WITHOUT_CRITERION)
    assert define(tmp_path).returncode == 0
    comments = (tmp_path / "alt" / alt.TEST_CONFIG).read_text().split("version:")[0]
    assert all(f"#   {name}\n" in comments for name in alt.WITHOUT_CRITERION)


def test_the_support_zip_holds_the_modules_the_locustfiles_import(tmp_path):
    assert define(tmp_path, "--scenario", "failover").returncode == 0
    test = config(tmp_path / "alt")
    assert test["configurationFiles"] == ["locust_support.py"]
    with zipfile.ZipFile(tmp_path / "alt" / test["zipArtifacts"][0]) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    modules = (
        "app/contract.py",
        "loadtests/alt_results.py",
        "loadtests/item_identity.py",
        "loadtests/token_issuer.py",
    )
    assert set(members) == {*modules, "app/__init__.py", "loadtests/__init__.py"}
    assert all(members[name] == (ROOT / name).read_bytes() for name in modules)


def one_line_error(result: subprocess.CompletedProcess, *says: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert all(text in result.stderr for text in says), result.stderr


@pytest.mark.parametrize(("options", "outputs", "says"), [
    ((), {"api_path": None}, ["output 'api_path' missing"]),
    ((), {"secrets": False}, ["output 'load_test_secrets' missing"]),
    ((), {"secrets": {"LOCUST_SUBSCRIPTION_KEY": KEY}}, ["must be a Key Vault secret URI"]),
    ((), {"secrets": {"OTHER": SECRET_URI}}, ["has no LOCUST_SUBSCRIPTION_KEY"]),
    (("--engines", "0"), {}, ["--engines must be 1 to 400"]),
    (("--engines", "401", "--users", "401"), {}, ["--engines must be 1 to 400"]),
    (("--users", "10", "--engines", "4"), {}, ["does not split evenly", "multiple of 4"]),
    (("--users", "2", "--engines", "4"), {}, ["does not split evenly"]),
    (("--users", "1002", "--engines", "2"), {}, ["501 an engine", "use 3 engines"]),
    (("--duration", "29"), {}, ["--duration must be 30 to 86400"]),
    (("--spawn-rate", "0"), {}, ["--spawn-rate must be above 0"]),
    (("--test-id", "Todo API"), {}, ["--test-id must be"]),
    (("--max-failure-ratio", "2"), {}, ["--max-failure-ratio must be 0 to 1"]),
    (("--min-rps", "1.234"), {}, ["at most two decimals"]),
    (("--scenario", "security"), {}, ["invalid choice: 'security'"]),
    (("--users", "many"), {}, ["invalid int value"]),
    ((), {"api_identifier_uri": ENTRA_OUTPUTS["api_identifier_uri"]},
     ["no engine identity for Azure Load Testing", "[drills] enabled = true"]),
    ((), {**ENTRA_OUTPUTS, "load_test_engine_identity": {"id": ENGINE_IDENTITY["id"]}},
     ["output 'load_test_engine_identity' must be"]),
])
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path, options, outputs, says):
    result = define(tmp_path, *options, outputs=outputs_file(tmp_path, **outputs))
    one_line_error(result, *says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.json"]  # no DIR, no temp


def test_a_folder_with_files_in_it_is_never_overwritten(tmp_path):
    (tmp_path / "alt").mkdir()
    (tmp_path / "alt" / "mine.txt").write_text("keep")
    one_line_error(define(tmp_path), "already exists")
    assert [p.name for p in (tmp_path / "alt").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alt", "outputs.json"]


# -- a run from the definition, and its results -------------------------------------------------


class BadDay(Gateway):
    """The gateway as a test run may meet it: region-a answers the first 150 calls, region-b
    the rest; every 10th call a 500; for every third keyed write, the first attempt 409 +
    Retry-After 0 (the user sends it again with its key); every 20th read of an item a 404
    (the user's item is lost)."""

    def __init__(self):
        super().__init__("todo", KEY)
        self.web_app_names = ["region-a"]
        self.count = 0
        self.held: set[str] = set()

    def answer(self, request, path):
        with self.lock:
            self.count += 1
            number = self.count
            if number > 150:
                self.web_app_names = ["region-b"]
            site = {SITE_NAME_HEADER: self.web_app_names[0]}
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        hold = key is not None and key not in self.held and number % 3 == 0
        item_read = request.command == "GET" and path.count("/") == 4
        if number % 10 == 0 or hold or (item_read and number % 20 == 1):
            request.rfile.read(int(request.headers.get("Content-Length") or 0))
            if hold:
                self.held.add(key)
                reply(request, 409, {"status": 409}, {**site, "Retry-After": "0"})
                return 409
            status = 500 if number % 10 == 0 else 404
            reply(request, status, {"status": status}, site)
            return status
        return super().answer(request, path)


@pytest.fixture
def bad_day():
    gateway = BadDay()
    yield gateway
    gateway.close()


def locust_in(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`locust -f <plan>` run in `folder` as the service runs it (headless, LocalRunner), its
    options from `env` only; in a session of its own, killed on a timeout."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("LOCUST_") and k != "PYTHONPATH"}
    # Failures are the point here (exit 0 with them): the service judges by its criteria.
    command = [sys.executable, "-m", "locust", "-f", env.pop("PLAN"), "--headless",
               "--only-summary", "--exit-code-on-error", "0"]
    with subprocess.Popen(command, cwd=folder, env={**clean, **env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=LOCUST_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(f"never happened: Locust finished\n{output}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def engine_folder(tmp_path: Path, gateway_url: str, layout: str, key: str = KEY,
                  **outputs) -> tuple[Path, dict]:
    """A definition for `gateway_url` (and `outputs`), its files flat in a folder outside the
    repository as the service keeps them (the support zip as uploaded, or unpacked beside the
    plan, or into a folder of its own), and the environment the service gives Locust (the
    secret resolved to `key`)."""
    outputs = outputs_file(tmp_path, gateway_urls=[gateway_url], **outputs)
    made = define(tmp_path, "--users", "2", "--spawn-rate", "2", "--engines", "1",
                  outputs=outputs, out=tmp_path / "definition")
    assert made.returncode == 0, made.stderr
    test = config(tmp_path / "definition")
    folder = tmp_path / "engine" / "plan"
    folder.mkdir(parents=True)
    for name in referenced(test):
        (folder / name).write_bytes((tmp_path / "definition" / name).read_bytes())
    support = folder / test["zipArtifacts"][0]
    if layout != "zip":
        with zipfile.ZipFile(support) as archive:
            archive.extractall(folder if layout == "unpacked" else folder / support.stem)
        support.unlink()
    env = {**env_of(test), **{s["name"]: key for s in test["secrets"]},  # from the Key Vault
           "LOCUST_RUN_TIME": "3s", "PLAN": test["testPlan"]}  # short, for the test
    return folder, env


@pytest.mark.parametrize("layout", ["unpacked", "unpacked into a folder"])
def test_the_definition_runs_however_the_service_keeps_the_support_zip(tmp_path, bad_day, layout):
    folder, env = engine_folder(tmp_path, bad_day.url, layout)
    ran = locust_in(folder, env)
    assert ran.returncode == 0, ran.stdout
    assert len(bad_day.calls) > 0


# -- the engine's token from IMDS (loadtests/locust_support.py ManagedIdentityCaller) ----------


IDENTITY_NOT_FOUND = (400, {"error": "invalid_request", "error_description": "Identity not found"})


class Imds(Server):
    """The Instance Metadata Service as an engine meets it, scripted: the n-th token request
    gets the n-th of `answers` ((status, JSON); the last one again after that), `latency`
    seconds late; each request's query and Metadata header are kept."""

    def __init__(self, answers: list[tuple[int, dict]], latency: float = 0.0):
        self.answers, self.latency = answers, latency
        self.asked: list[tuple[dict, str | None]] = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, request):
        with self.lock:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
            self.asked.append((query, request.headers.get("Metadata")))
            status, body = self.answers[min(len(self.asked), len(self.answers)) - 1]
        time.sleep(self.latency)  # a slow answer (the server's), not a wait of the test
        reply(request, status, body)


def imds_token(lifetime: int = 3600) -> tuple[int, dict]:
    now = int(time.time())
    return 200, {"access_token": "engine-token", "client_id": ENGINE_IDENTITY["client_id"],
                 "expires_in": str(lifetime), "expires_on": str(now + lifetime),
                 "resource": ENTRA_OUTPUTS["api_identifier_uri"], "token_type": "Bearer"}


def engine_imds(test: dict, identity_id: str, holding: str, without: str) -> str:
    """The IMDS an engine of `test` reaches: `holding` (it answers for the identity) when the
    test gives its engines that identity (referenceIdentities, kind Engine), as the service
    assigns it; `without` (an IMDS that knows no such identity) otherwise."""
    engine = [i.get("value") for i in test.get("referenceIdentities", [])
              if i.get("kind") == "Engine" and i.get("type") == "UserAssigned"]
    return holding if identity_id in engine else without


def test_an_engine_fetches_one_token_for_all_its_users_and_tries_again_after_a_5xx(
        tmp_path, bad_day):
    """Five users start within 0.1 s while IMDS takes 0.5 s to answer: one of them asks (once
    more after the 503), the others wait for its token."""
    folder, env = engine_folder(tmp_path, bad_day.url, "zip", **ENTRA_OUTPUTS)
    imds = Imds([(503, {"error": "busy"}), imds_token()], latency=0.5)
    try:
        env |= {"LOCUST_USERS": "5", "LOCUST_SPAWN_RATE": "50", "LOCUST_IMDS_ENDPOINT": imds.url}
        ran = locust_in(folder, env)
    finally:
        imds.close()
    assert ran.returncode == 0, ran.stdout
    assert len(bad_day.calls) > 0
    expected = {"api-version": "2018-02-01", "resource": ENTRA_OUTPUTS["api_identifier_uri"],
                "client_id": ENGINE_IDENTITY["client_id"]}
    assert imds.asked == [(expected, "true")] * 2, ran.stdout
    assert "engine-token" not in ran.stdout


def test_an_engine_without_a_token_ends_the_run_in_one_line_and_sends_nothing(
        tmp_path, bad_day):
    """IMDS refuses (the engine does not hold the identity): Locust exits 2 with one line
    naming IMDS, the resource and the answer, no traceback, and no request went out."""
    folder, env = engine_folder(tmp_path, bad_day.url, "zip", **ENTRA_OUTPUTS)
    imds = Imds([IDENTITY_NOT_FOUND])
    try:
        ran = locust_in(folder, {**env, "LOCUST_IMDS_ENDPOINT": imds.url})
    finally:
        imds.close()
    assert ran.returncode == 2, ran.stdout
    assert bad_day.calls == []
    errors = [line for line in ran.stdout.splitlines() if "/ERROR/" in line]
    assert len(errors) == 1, ran.stdout
    assert errors[0].endswith(
        f"no token from IMDS ({imds.url}) for resource {ENTRA_OUTPUTS['api_identifier_uri']}"
        f" as client id {ENGINE_IDENTITY['client_id']}: 400 invalid_request: Identity not found")
    assert "Traceback" not in ran.stdout and len(imds.asked) == 1  # a 400 is final


def test_the_results_of_a_run_give_the_summary_of_its_own_records(tmp_path, bad_day):
    """The whole way: definition, a run from the flat folder (the support zip kept as uploaded)
    writing the service's results and our records, then `results` against our own analysis."""
    folder, env = engine_folder(tmp_path, bad_day.url, "zip")
    env |= {"LOCUST_ALT_RESULTS_DIR": str(tmp_path / "alt-results"),
            "LOCUST_RECORDS_DIR": str(tmp_path / "ours" / "records")}
    ran = locust_in(folder, env)
    assert ran.returncode == 0, ran.stdout
    ours = subprocess.run([sys.executable, "-m", "loadtests.analyse", str(tmp_path / "ours"),
                           "--max-failure-ratio", "0.5"], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    theirs = cli("results", str(tmp_path / "alt-results"), "--scenario", "throughput",
                 "--report-dir", str(tmp_path / "theirs"), "--max-failure-ratio", "0.5")
    assert (ours.returncode, theirs.returncode) == (0, 0), ours.stderr + theirs.stderr
    mine, service = (json.loads((tmp_path / d / "summary.json").read_text())
                     for d in ("ours", "theirs"))
    assert mine["failures"] > 0 and mine["server_errors"] > 0
    assert mine["writes"]["retried_after_409"] > 0
    for name in ("requests", "failures", "failure_ratio", "get_requests", "failed_gets",
                 "server_errors", "writes"):
        assert service[name] == mine[name], name
    sites = [{s: sum(second["sites"].get(s, 0) for second in summary["per_second"])
              for s in ("region-a", "region-b")} for summary in (mine, service)]
    assert sites[0] == sites[1] and all(sites[0].values())
    assert (service["scenario"], service["profile"]) == ("throughput", "deployed")
    assert (tmp_path / "theirs" / "timeline.png").stat().st_size > 0


def test_results_apply_the_runners_threshold_unless_told_otherwise(tmp_path, bad_day):
    folder, env = engine_folder(tmp_path, bad_day.url, "zip")
    env["LOCUST_ALT_RESULTS_DIR"] = str(tmp_path / "alt-results")
    assert locust_in(folder, env).returncode == 0
    broken = cli("results", str(tmp_path / "alt-results"), "--scenario", "throughput",
                 "--report-dir", str(tmp_path / "report"))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "THRESHOLD BROKEN: max-failure-ratio 0.01" in broken.stdout  # load_test's limit
    held = cli("results", str(tmp_path / "alt-results"), "--scenario", "throughput",
               "--report-dir", str(tmp_path / "report"), "--max-failure-ratio", "0.5")
    assert held.returncode == 0, held.stdout + held.stderr


def test_the_drill_command_adds_the_recovery_limit_once_a_fault_time_is_given(tmp_path):
    args = alt._parser().parse_args(["results", str(tmp_path), "--scenario", "failover",
                                     "--fault-time", "1000.5"])
    command = alt.analyse_command(args, ["--max-p95-ms", "900"])
    flags = dict(zip(command[4::2], command[5::2], strict=False))
    assert flags["--max-failure-ratio"] == "0.05" and flags["--max-recovery-seconds"] == "120"
    assert flags["--fault-time"] == "1000.5" and command[-2:] == ["--max-p95-ms", "900"]


@pytest.mark.parametrize(("args", "says"), [
    (["results", "/nonexistent/results.zip", "--scenario", "throughput"], ["no such results"]),
    (["results", ".", "--scenario", "throughput", "--restore-time", "5"], ["needs --fault-time"]),
    (["results", ".", "--scenario", "throughput", "--users", "3"], ["threshold flags only"]),
    (["definition", "outputs.json", "--bogus"], ["required"]),
])
def test_a_bad_results_command_is_one_line(args, says):
    one_line_error(cli(*args), *says)

