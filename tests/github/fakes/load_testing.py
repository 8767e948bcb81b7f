"""Azure Load Testing as the rehearsal models it (the fake `az load`): tests and test runs of
one load testing resource, whose engines are real Locust processes.

- `test create|update --load-test-config-file F`: the test configuration is read as ALT reads it
  (version v0.1, testType Locust, the test id the command names, every file it references
  beside it) and its files are kept under $REHEARSAL_DIR/alt/tests/<test id>/.
- `test-run create`: a run ACCEPTED; each `test-run show` moves it on: PROVISIONING, then its
  engines start (EXECUTING), then DONE once they exited (or the scenario's `alt_run_fails`
  status at the second show, e.g. VALIDATION_FAILURE: no engine starts).
- An engine: `locust -f <testPlan> --headless` in a folder of its own holding the test's files
  flat (the support zip as uploaded), with the test's `env`, each secret resolved from the
  rehearsal's vault (only the gateway subscription key's URI resolves), and
  LOCUST_ALT_RESULTS_DIR: loadtests.locust_support then writes the results CSV in the columns
  ALT's engines write (tests/loadtests/test_alt_results.py checks that writer against the
  documented format).
- The engines' identity: the resource holds one (the scenario's `load_test.engine_identity`);
  the engines get it only when the test's `referenceIdentities` names it (kind Engine,
  UserAssigned). With the scenario's `auth` (an API that takes tokens) each run gets an
  Instance Metadata Service of its own (fakes/imds.py, LOCUST_IMDS_ENDPOINT) that answers for
  the identities the engines got, and for no other ("Identity not found").
- `testResult`: the test's failure criteria of the form `percentage(error) > N` judged on those
  CSVs (PASSED / FAILED), as ALT judges client-side criteria.
- `test-run stop`: the engines are killed, the run CANCELLED. `test-run download-files
  --result --path DIR`: a zip of the engines' CSVs in DIR.

The YAML is read with the repository's virtualenv Python (PyYAML), the rest is standard library.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

ENDED = {"DONE", "FAILED", "CANCELLED", "VALIDATION_FAILURE"}


class Refused(Exception):
    """What ALT would answer with an error (the message az prints)."""


def venv_python() -> str:
    return str(Path(os.environ["REHEARSAL_SOURCE"]) / ".venv" / "bin" / "python")


def read_config(path: Path) -> dict:
    text = subprocess.run(
        [venv_python(), "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        input=path.read_text(), capture_output=True, text=True, check=False)
    if text.returncode != 0:
        raise Refused(f"(InvalidConfiguration) the test configuration is not YAML: {text.stderr[-200:]}")
    return json.loads(text.stdout)


def referenced(config: dict) -> list[str]:
    return [config["testPlan"], *config.get("configurationFiles", []),
            *config.get("zipArtifacts", [])]


def put_test(state: Path, test_id: str, config_file: Path) -> dict:
    config = read_config(config_file)
    if config.get("version") != "v0.1" or config.get("testType") != "Locust":
        raise Refused("(InvalidConfiguration) version must be v0.1 and testType Locust here")
    if config.get("testId") != test_id:
        raise Refused(f"(InvalidConfiguration) testId {config.get('testId')!r} is not {test_id!r}")
    folder = state / "alt" / "tests" / test_id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in referenced(config):
        source = config_file.parent / name
        if not source.is_file():
            raise Refused(f"(FileNotFound) {name} (referenced by the configuration)")
        shutil.copyfile(source, folder / name)
    (folder / "config.json").write_text(json.dumps(config))
    return config


def test_config(state: Path, test_id: str) -> dict | None:
    path = state / "alt" / "tests" / test_id / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def secret_value(uri: str, vault: dict) -> str:
    """A versionless secret URI of the rehearsal's vault, resolved (as the resource's identity
    does when a run starts)."""
    prefix = f"https://{vault['name']}.vault.azure.net/secrets/"
    name = uri.rstrip("/").removeprefix(prefix)
    if not uri.startswith(prefix) or name not in vault.get("secrets", {}):
        raise Refused(f"(KeyVaultSecretNotFound) {uri}")
    return vault["secrets"][name]


def engine_identities(config: dict, held: dict | None) -> dict:
    """{client id: {principal_id, name}} of the identity the resource holds, if the test names
    it for its engines (referenceIdentities, kind Engine, UserAssigned); else {}."""
    named = {str(i.get("value", "")).lower() for i in config.get("referenceIdentities", [])
             if i.get("kind") == "Engine" and i.get("type") == "UserAssigned"}
    if not held or held["id"].lower() not in named:
        return {}
    return {held["client_id"]: {"principal_id": held["principal_id"],
                                "name": held["id"].rsplit("/", 1)[1]}}


def start_imds(run_dir: Path, auth: dict, identities: dict) -> tuple[int, str]:
    """(pid, endpoint) of the run's Instance Metadata Service (fakes/imds.py), once it listens."""
    port_file, log_file = run_dir / "imds.port", run_dir / "imds.log"
    stack = Path.cwd() / "cdktf.out" / "stacks" / f"todo-api-{auth['environment']}" / "cdk.tf.json"
    process = subprocess.Popen(
        [venv_python(), str(Path(__file__).resolve().parent / "imds.py"), json.dumps(auth),
         json.dumps(identities), str(stack), str(port_file), str(log_file)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not port_file.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            raise Refused("(EngineProvisioningFailed) the engines' metadata service never"
                          " started listening")
        time.sleep(0.05)
    return process.pid, f"http://127.0.0.1:{port_file.read_text()}"


def start_engines(state: Path, run: dict, vault: dict, held_identity: dict | None = None,
                  auth: dict | None = None) -> None:
    config = test_config(state, run["test_id"])
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("LOCUST_") and k != "PYTHONPATH"}
    environment.update({e["name"]: str(e["value"]) for e in config.get("env", [])})
    for secret in config.get("secrets", []):
        environment[secret["name"]] = secret_value(secret["value"], vault)
    run_dir = state / "alt" / "runs" / run["id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if auth:
        run["imds"], environment["LOCUST_IMDS_ENDPOINT"] = start_imds(
            run_dir, auth, engine_identities(config, held_identity))
    run["engines"] = []
    for engine in range(int(config.get("engineInstances", 1))):
        folder = run_dir / f"engine-{engine}"
        shutil.copytree(state / "alt" / "tests" / run["test_id"], folder)
        results = run_dir / "results"
        results.mkdir(parents=True, exist_ok=True)
        command = [venv_python(), "-m", "locust", "-f", config["testPlan"], "--headless",
                   "--only-summary", "--exit-code-on-error", "0"]
        with open(folder / "engine.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=folder, env={**environment, "LOCUST_ALT_RESULTS_DIR": str(results)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        run["engines"].append(process.pid)


def engines_running(run: dict) -> bool:
    for pid in run.get("engines", []):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in "ZX":
            return True
    return False


def stop_engines(run: dict) -> None:
    for pid in [*run.get("engines", []), *([run["imds"]] if run.get("imds") else [])]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def results_csvs(state: Path, run: dict) -> list[Path]:
    return sorted((state / "alt" / "runs" / run["id"] / "results").glob("*.csv"))


def verdict(state: Path, run: dict) -> str:
    """Client-side criteria `percentage(error) > N` on the engines' CSVs."""
    rows = [row for path in results_csvs(state, run) for row in csv.DictReader(path.open())]
    if not rows:
        return "FAILED"
    errors = 100 * sum(row["success"] != "true" for row in rows) / len(rows)
    for criterion in test_config(state, run["test_id"]).get("failureCriteria", []):
        match = re.fullmatch(r"percentage\(error\)\s*>\s*([0-9.]+)", str(criterion).strip())
        if match and errors > float(match.group(1)):
            return "FAILED"
    return "PASSED"


def advance(state: Path, run: dict, fails_as: str | None, vault: dict,
            held_identity: dict | None = None, auth: dict | None = None) -> None:
    """One `test-run show`: the run's next state (see the module's docstring)."""
    status = run["status"]
    if status in ENDED:
        return
    run["shows"] = run.get("shows", 0) + 1
    if status == "ACCEPTED":
        run["status"] = "PROVISIONING"
    elif status == "PROVISIONING":
        if fails_as:
            run["status"] = fails_as
            return
        start_engines(state, run, vault, held_identity, auth)
        run["status"] = "EXECUTING"
    elif status == "EXECUTING" and not engines_running(run):
        stop_engines(run)  # the metadata service goes with the engines
        run["status"] = "DONE"
        run["testResult"] = verdict(state, run)


def download(state: Path, run: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{run['id']}_results.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in results_csvs(state, run):
            out.write(path, f"{path.parent.parent.name}-{path.name}")
    return archive
