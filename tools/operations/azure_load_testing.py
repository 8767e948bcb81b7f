"""Azure Load Testing runs our Locust files: the test definition, and its results back into our
analysis (the same summary, report and timeline as a `loadtests.run` run).

    python -m tools.operations.azure_load_testing definition OUTPUTS_JSON \
        --scenario throughput|failover --users N --spawn-rate R --duration SECONDS --engines E \
        --out DIR [--test-id ID] [--max-failure-ratio X] [--max-p95-ms MS] [--min-rps R] \
        [--key-vault-identity RESOURCE_ID]
    python -m tools.operations.azure_load_testing results RESULTS_DIR_OR_ZIP \
        --scenario throughput|failover [--report-dir reports/load] \
        [--fault-time EPOCH [--restore-time EPOCH]] [threshold flags of loadtests.analyse]

`definition` writes DIR/test.yaml (the service's test configuration, v0.1, testType Locust) and
every file it names: the scenario's locustfile (the test plan), the modules beside it that it
imports (configuration files: the service puts them beside the plan) and a zip of the packages
they import (app.contract, loadtests.*; how locust_support finds them there: its docstring).
The gateway URL and API path come from the stack outputs, the subscription key as a Key Vault
secret reference from the output `load_test_secrets` (environment variable name -> secret URI;
the service hands each secret to Locust as that environment variable), never its value. An API
that takes Entra ID tokens (output `api_identifier_uri`) is called as the stack's engine identity
(output `load_test_engine_identity`): the definition names it in `referenceIdentities` (kind
Engine: the service assigns it to the engines) and tells Locust, in plain `env`, the token's
resource and the identity's client id (LOCUST_TOKEN_RESOURCE, LOCUST_TOKEN_CLIENT_ID), so each
engine fetches its own token from the Instance Metadata Service (loadtests/locust_support.py);
no token is ever written. DIR is written whole or not at all. Create and run it with
`az load test create --load-test-config-file DIR/test.yaml ...` and `az load test-run create ...`.

`results` reads what `az load test-run download-files --result` saved (the results zip, or a
folder of the per-engine CSVs) through `python -m loadtests.analyse --alt-results`
(loadtests.alt_results converts them; tools never import loadtests) and applies the thresholds
tools.operations.load_test applies to a run from the runner: exit 0 when they hold, 1 when one
breaks, 2 when the results cannot be read.

What the service documents, and where (Microsoft Learn, azure-docs repository,
articles/app-testing/load-testing/, read 2026-12-07):
- reference-test-config-yaml.md: the keys below; `version` v0.1 only; testId 2-50 of
  [a-z0-9_-]; `configurationFiles` are uploaded into the test plan's folder; `zipArtifacts` at
  most 5, for JMX and Locust tests; `secrets` name + Key Vault secret URI; `failureCriteria`
  `[Request: ]aggregate(client_metric) condition threshold`; `autoStop` errorPercentage (default
  90) and timeWindow (60 s), or `disable`.
- how-to-parameterize-load-tests.md: for Locust, secrets and `env` are environment variables.
- how-to-high-scale-load.md: Locust users and spawn rate are totals over all engines, set by
  LOCUST_USERS / LOCUST_SPAWN_RATE (/ LOCUST_RUN_TIME) in `env`; up to 500 users an engine.
- quickstart-create-run-load-test-with-locust.md: each engine runs the script in LocalRunner mode.
- resource-limits-quotas-capacity.md: at most 400 engine instances per test run, 24 h a test.
- how-to-export-test-results.md: one results CSV per engine (JMeter CSV format: see
  loadtests.alt_results); no results file to download above 45 engines or 3 hours.
- how-to-test-secured-endpoints.md, "Authenticate with a managed identity": the test's engine
  identity is assigned to the engine instances, the script asks IMDS for a token; no load
  distribution across regions with managed identities. reference-test-config-yaml.md:
  `referenceIdentities` items {kind: KeyVault|Metrics|Engine, type: UserAssigned|SystemAssigned,
  value: resource id}. Whether the older `keyVaultReferenceIdentity` may stand beside it is not
  documented (the service's GitHub action refuses a KeyVault item beside it): with an engine
  identity the Key Vault identity goes into the same list.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.cli import CliError, read_json, run_cli
from tools.delivery.stack_outputs import (
    ENGINE_IDENTITY_OUTPUT,
    IDENTIFIER_URI_OUTPUT,
    USER_ASSIGNED_IDENTITY_ID,
    EngineIdentity,
    StackOutputs,
    parse,
)
from tools.operations.load_test import (
    DRILL_MAX_FAILURE_RATIO,
    MAX_FAILURE_RATIO,
    MAX_RECOVERY_SECONDS,
    SUBSCRIPTION_KEY_ENV,
)

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"  # read as files, never imported
SUPPORT_MODULE = LOADTESTS / "locust_support.py"  # names the support zip (SUPPORT_ZIP)
PACKAGES = ("app", "loadtests")  # what a locustfile may import from the repository
SCENARIOS = ("throughput", "failover")
TEST_CONFIG = "test.yaml"
SECRETS_OUTPUT = "load_test_secrets"

MAX_ENGINES = 400  # engine instances per test run
USERS_PER_ENGINE = 500  # the documented recommendation for Locust
DOWNLOADABLE_ENGINES, DOWNLOADABLE_SECONDS = 45, 3 * 3600  # above either: no results file
MIN_SECONDS, MAX_SECONDS = 30, 24 * 3600
# Throughput: the documented defaults, written out. Failover: the drill expects a burst of
# errors while the region goes; the service must not stop the run for it.
AUTO_STOP = {"throughput": {"errorPercentage": 90, "timeWindow": 60}, "failover": "disable"}

TEST_ID = re.compile(r"[a-z0-9_-]{2,50}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_VAULT_SECRET_URI = re.compile(
    r"https://[A-Za-z0-9-]{3,24}\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)"
    r"/secrets/[A-Za-z0-9-]{1,127}(/[0-9a-f]{32})?/?"
)
# Read by loadtests/locust_support.py: the engines ask IMDS for a token for this resource as
# this user-assigned identity (its client id). Identifiers, not secrets.
TOKEN_RESOURCE_ENV, TOKEN_CLIENT_ID_ENV = "LOCUST_TOKEN_RESOURCE", "LOCUST_TOKEN_CLIENT_ID"

# Our thresholds (loadtests.analysis.THRESHOLDS) that have a client-metric failure criterion.
# The service's error percentage counts every request; ours leaves out the writes a user sent
# again after a 409 or 503 (neither success nor failure): its ratio can be a little lower.
CRITERIA = {
    "max_failure_ratio": lambda ratio: f"percentage(error) > {ratio * 100:g}",
    "max_p95_ms": lambda ms: f"p95(response_time_ms) > {ms}",
    "min_rps": lambda rps: f"avg(requests_per_sec) < {rps:g}",
}
# No criterion on the service: counts (it has percentages and totals only; per-request criteria
# need a request's exact name, and ours carry the serving region), anything timed from a fault
# or a region (it knows neither), and the items (they need the store). `results` checks these on
# the downloaded results.
WITHOUT_CRITERION = (
    "max_failed_gets", "max_server_errors", "max_failures", "max_store_failures",
    "max_recovery_seconds", "max_failback_seconds", "max_sustained_recovery_seconds",
    "max_write_gap_seconds", "min_in_flight_at_fault", "min_app_serving_at_kill",
    "max_items_missing", "max_items_duplicates", "max_items_orphans", "max_items_stale_content",
    "max_items_resurrected", "max_items_retried_creates_not_single",
    "max_items_replays_other_item", "max_cross_owner_reads",
)


@dataclass(frozen=True)
class Load:
    scenario: str
    users: int
    spawn_rate: float
    duration: int
    engines: int

    def check(self) -> None:
        if not 1 <= self.engines <= MAX_ENGINES:
            raise CliError(f"--engines must be 1 to {MAX_ENGINES} (the service's engine instances"
                           f" per test run), got {self.engines}")
        if self.users < 1 or self.users % self.engines:
            raise CliError(f"--users {self.users} does not split evenly over {self.engines}"
                           f" engine(s): give a multiple of {self.engines}")
        if self.users // self.engines > USERS_PER_ENGINE:
            need = -(-self.users // USERS_PER_ENGINE)
            raise CliError(f"--users {self.users} on {self.engines} engine(s) is"
                           f" {self.users // self.engines} an engine; the service recommends at"
                           f" most {USERS_PER_ENGINE}: use {need} engines or more")
        if not self.spawn_rate > 0:
            raise CliError(f"--spawn-rate must be above 0 users/s, got {self.spawn_rate:g}")
        if not MIN_SECONDS <= self.duration <= MAX_SECONDS:
            raise CliError(f"--duration must be {MIN_SECONDS} to {MAX_SECONDS} seconds,"
                           f" got {self.duration}")


def secret_references(raw: dict) -> dict[str, str]:
    """The output `load_test_secrets`: environment variable name -> Key Vault secret URI."""
    output = raw.get(SECRETS_OUTPUT)
    if not isinstance(output, dict) or not isinstance(output.get("value"), dict):
        raise CliError(f"output {SECRETS_OUTPUT!r} missing: a map of environment variable name"
                       " -> Key Vault secret URI")
    secrets = output["value"]
    if SUBSCRIPTION_KEY_ENV not in secrets:
        raise CliError(f"output {SECRETS_OUTPUT!r} has no {SUBSCRIPTION_KEY_ENV}"
                       " (the gateway's subscription key)")
    for name, uri in secrets.items():
        if not ENV_NAME.fullmatch(name):
            raise CliError(f"output {SECRETS_OUTPUT!r}: {name!r} is no environment variable name")
        if not isinstance(uri, str) or not KEY_VAULT_SECRET_URI.fullmatch(uri):
            raise CliError(f"output {SECRETS_OUTPUT!r}: {name} must be a Key Vault secret URI"
                           " (https://<vault>.vault.azure.net/secrets/<name>[/<version>])")
    return dict(secrets)


def engine_identity(outputs: StackOutputs) -> EngineIdentity | None:
    """The identity the engines fetch their token as; None when the API takes no tokens."""
    if not outputs.api_identifier_uri:
        return None
    if outputs.load_test_engine_identity is None:
        raise CliError(f"the API takes Entra ID tokens (output {IDENTIFIER_URI_OUTPUT!r}) but the"
                       " stack has no engine identity for Azure Load Testing (output"
                       f" {ENGINE_IDENTITY_OUTPUT!r}): deploy it with [drills] enabled = true")
    return outputs.load_test_engine_identity


def criteria(scenario: str, max_failure_ratio: float | None, max_p95_ms: int | None,
             min_rps: float | None) -> list[str]:
    ratio = max_failure_ratio
    if ratio is None:
        ratio = float(MAX_FAILURE_RATIO if scenario == "throughput" else DRILL_MAX_FAILURE_RATIO)
    if not 0 <= ratio <= 1:
        raise CliError(f"--max-failure-ratio must be 0 to 1, got {ratio:g}")
    found = [CRITERIA["max_failure_ratio"](ratio)]
    if max_p95_ms is not None:
        if max_p95_ms < 1:
            raise CliError(f"--max-p95-ms must be at least 1, got {max_p95_ms}")
        found.append(CRITERIA["max_p95_ms"](max_p95_ms))
    if min_rps is not None:
        if min_rps <= 0 or round(min_rps, 2) != min_rps:
            raise CliError(f"--min-rps must be above 0 with at most two decimals, got {min_rps:g}")
        found.append(CRITERIA["min_rps"](min_rps))
    return found


# -- the files a locustfile needs ---------------------------------------------------------------


def imported_names(path: Path) -> list[str]:
    """Every module name a file imports (absolute imports; `from a import b` gives a and a.b)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def support_files(plan: Path) -> tuple[list[Path], list[str]]:
    """(the modules beside `plan` it needs, imported by plain name; the repository modules it
    needs, dotted), following the imports of each; third-party and standard modules left out."""
    beside: list[Path] = []
    packaged: list[str] = []
    todo = [plan]
    while todo:
        for name in imported_names(todo.pop()):
            flat = LOADTESTS / f"{name}.py"
            module = ROOT / (name.replace(".", "/") + ".py")
            if "." not in name and flat.is_file() and flat not in beside and flat != plan:
                beside.append(flat)
                todo.append(flat)
            elif name.split(".")[0] in PACKAGES and module.is_file() and name not in packaged:
                packaged.append(name)
                todo.append(module)
    return beside, sorted(packaged)


def support_zip_name() -> str:
    """SUPPORT_ZIP as locust_support.py defines it (the one place the name is written)."""
    for node in ast.parse(SUPPORT_MODULE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "SUPPORT_ZIP" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{SUPPORT_MODULE} defines no SUPPORT_ZIP")


def write_support_zip(path: Path, modules: list[str]) -> None:
    """The modules and their packages' (empty) __init__.py, with fixed times: the same bytes
    for the same sources."""
    members = {}
    for module in modules:
        parts = module.split(".")
        for depth in range(1, len(parts)):
            members["/".join(parts[:depth]) + "/__init__.py"] = b""
        members["/".join(parts) + ".py"] = (ROOT / ("/".join(parts) + ".py")).read_bytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            member = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            member.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
            archive.writestr(member, members[name])


# -- the definition -----------------------------------------------------------------------------


def config_for(outputs: StackOutputs, secrets: dict[str, str], load: Load, test_id: str,
                failure_criteria: list[str], configuration_files: list[str], support_zip: str,
                identity: str | None) -> dict:
    env = {
        "LOCUST_HOST": outputs.gateway_urls[0].rstrip("/"),
        "LOCUST_API_PATH": "/" + outputs.api_path.strip("/"),
        "LOCUST_USERS": str(load.users),  # over all engines
        "LOCUST_SPAWN_RATE": f"{load.spawn_rate:g}",  # over all engines
        "LOCUST_RUN_TIME": f"{load.duration}s",
        "LOCUST_DETAILED_LABELS": "true",  # the results name method, region, outcome
    }
    engine = engine_identity(outputs)
    if engine:
        env[TOKEN_RESOURCE_ENV] = outputs.api_identifier_uri
        env[TOKEN_CLIENT_ID_ENV] = engine.client_id
    clash = sorted(set(env) & set(secrets))
    if clash:
        raise CliError(f"output {SECRETS_OUTPUT!r} names {', '.join(clash)}, which the"
                       " definition sets itself")
    config = {
        "version": "v0.1",
        "testId": test_id,
        "displayName": f"TodoItem API {load.scenario}",
        "description": (f"{load.users} Locust users on {load.engines} engine(s) for"
                        f" {load.duration} s")[:100],
        "testPlan": f"locustfile_{load.scenario}.py",
        "testType": "Locust",
        "engineInstances": load.engines,
        "configurationFiles": configuration_files,
        "zipArtifacts": [support_zip],
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "secrets": [{"name": name, "value": uri} for name, uri in sorted(secrets.items())],
        "failureCriteria": failure_criteria,
        "autoStop": AUTO_STOP[load.scenario],
    }
    if engine:  # one list for every identity: no keyVaultReferenceIdentity beside it
        key_vault = [{"kind": "KeyVault", "type": "UserAssigned", "value": identity}]
        config["referenceIdentities"] = [
            *(key_vault if identity else []),
            {"kind": "Engine", "type": "UserAssigned", "value": engine.id},
        ]
    elif identity:
        config["keyVaultReferenceIdentity"] = identity
    return config


def header(argv: list[str]) -> str:
    lines = [
        "Azure Load Testing test configuration (v0.1), written by",
        "  python -m tools.operations.azure_load_testing " + " ".join(argv),
        "Thresholds of ours without a failure criterion here; checked on the downloaded results",
        "by `python -m tools.operations.azure_load_testing results`:",
        *(f"  {name}" for name in WITHOUT_CRITERION),
    ]
    return "".join(f"# {line}\n" for line in lines)


def write_definition(out: Path, config: dict, plan: Path, beside: list[Path],
                     packaged: list[str], header_text: str) -> None:
    """Everything into a temporary folder beside `out`, then renamed to `out`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} already exists and is not an empty folder: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        shutil.copyfile(plan, staging / config["testPlan"])
        for path in beside:
            shutil.copyfile(path, staging / path.name)
        write_support_zip(staging / config["zipArtifacts"][0], packaged)
        text = header_text + yaml.safe_dump(config, sort_keys=False, width=100)
        (staging / TEST_CONFIG).write_text(text, encoding="utf-8")
        staging.chmod(0o777 & ~_umask())  # mkdtemp made it private
        os.replace(staging, out)  # an empty `out` is replaced, an absent one created
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def definition(args: argparse.Namespace, argv: list[str]) -> int:
    load = Load(args.scenario, args.users, args.spawn_rate, args.duration, args.engines)
    load.check()
    test_id = args.test_id or f"todo-api-{args.scenario}"
    if not TEST_ID.fullmatch(test_id):
        raise CliError(f"--test-id must be 2 to 50 of a-z, 0-9, _ and -, got {test_id!r}")
    if args.key_vault_identity and not USER_ASSIGNED_IDENTITY_ID.fullmatch(args.key_vault_identity):
        raise CliError("--key-vault-identity must be a user-assigned identity's resource id")
    raw = read_json(args.outputs, "stack outputs")
    outputs = parse(raw)
    secrets = secret_references(raw)
    failure_criteria = criteria(args.scenario, args.max_failure_ratio, args.max_p95_ms,
                                args.min_rps)
    plan = LOADTESTS / f"locustfile_{args.scenario}.py"
    beside, packaged = support_files(plan)
    config = config_for(outputs, secrets, load, test_id, failure_criteria,
                         [path.name for path in beside], support_zip_name(),
                         args.key_vault_identity)
    write_definition(args.out, config, plan, beside, packaged, header(argv))
    print(f"{args.out}/{TEST_CONFIG}: {config['testPlan']} on {load.engines} engine(s),"
          f" {load.users} users, {load.duration} s; criteria: {'; '.join(failure_criteria)}")
    if load.engines > DOWNLOADABLE_ENGINES or load.duration > DOWNLOADABLE_SECONDS:
        print(f"note: above {DOWNLOADABLE_ENGINES} engines or {DOWNLOADABLE_SECONDS // 3600} h"
              " the service offers no results file: copy the per-engine CSVs from the run's"
              " storage container (az load test-run get-artifacts-url) into a folder for"
              " `results`", file=sys.stderr)
    if "referenceIdentities" in config:
        print("note: the engines call the API as the stack's engine identity (a managed"
              " identity): the service runs them in the load test resource's region only",
              file=sys.stderr)
    return 0


# -- the results --------------------------------------------------------------------------------


def given_flags(extra: list[str]) -> set[str]:
    return {token.split("=", 1)[0] for token in extra if token.startswith("--")}


def analyse_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """`python -m loadtests.analyse` on the results, with the runner's thresholds for the
    scenario unless given (`extra`: threshold flags, passed on as they are)."""
    command = [sys.executable, "-m", "loadtests.analyse", str(args.report_dir.resolve()),
               "--alt-results", str(args.results.resolve()), "--scenario", args.scenario,
               "--profile", "deployed"]
    if args.fault_time is not None:
        command += ["--fault-time", repr(args.fault_time)]
    if args.restore_time is not None:
        command += ["--restore-time", repr(args.restore_time)]
    drill = args.scenario == "failover"
    defaults = {"--max-failure-ratio": DRILL_MAX_FAILURE_RATIO if drill else MAX_FAILURE_RATIO}
    if drill and args.fault_time is not None:
        defaults["--max-recovery-seconds"] = MAX_RECOVERY_SECONDS
    for flag, value in defaults.items():
        if flag not in given_flags(extra):
            command += [flag, value]
    return command + extra


def results(args: argparse.Namespace, extra: list[str]) -> int:
    if not args.results.exists():
        raise CliError(f"{args.results}: no such results folder or zip")
    if args.restore_time is not None and args.fault_time is None:
        raise CliError("--restore-time needs --fault-time")
    if any(not token.startswith("--max-") and not token.startswith("--min-")
           for token in extra if token.startswith("-")):
        raise CliError(f"unknown arguments: {' '.join(extra)} (threshold flags only)")
    return subprocess.run(analyse_command(args, extra), cwd=ROOT, check=False).returncode


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise CliError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.operations.azure_load_testing",
                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    define = commands.add_parser("definition", help="write the test configuration and its files")
    define.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    define.add_argument("--scenario", choices=SCENARIOS, required=True)
    define.add_argument("--users", type=int, required=True, help="over all engines")
    define.add_argument("--spawn-rate", type=float, required=True, help="users/s, all engines")
    define.add_argument("--duration", type=int, required=True, help="seconds")
    define.add_argument("--engines", type=int, required=True)
    define.add_argument("--out", type=Path, required=True, help="a folder that does not exist")
    define.add_argument("--test-id", default=None, help="default: todo-api-<scenario>")
    define.add_argument("--max-failure-ratio", type=float, default=None,
                        help=f"default: {MAX_FAILURE_RATIO} (failover {DRILL_MAX_FAILURE_RATIO})")
    define.add_argument("--max-p95-ms", type=int, default=None)
    define.add_argument("--min-rps", type=float, default=None)
    define.add_argument("--key-vault-identity", default=None,
                        help="user-assigned identity reading the secrets (default: the"
                        " resource's system-assigned one)")
    read = commands.add_parser("results", help="analyse a run's downloaded results")
    read.add_argument("results", type=Path, help="the results zip, or a folder of results CSVs")
    read.add_argument("--scenario", choices=SCENARIOS, required=True)
    read.add_argument("--report-dir", type=Path, default=Path("reports/load"))
    read.add_argument("--fault-time", type=float, default=None, help="epoch seconds")
    read.add_argument("--restore-time", type=float, default=None, help="epoch seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser().parse_known_args(argv)
    if args.command == "results":
        return results(args, extra)
    if extra:
        raise CliError(f"unknown arguments: {' '.join(extra)}")
    return definition(args, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
