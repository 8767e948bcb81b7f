"""What every recording fake shares: where the rehearsal keeps its state, and the call log.

The rehearsal (tests/github/rehearsal.py) sets REHEARSAL_DIR for act; each fake appends one
JSON line per call to $REHEARSAL_DIR/calls.jsonl and reads the scenario (what to answer) from
$REHEARSAL_DIR/scenario.json. Fakes use the standard library only (they run on the runner's
python3, whatever job calls them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["REHEARSAL_DIR"])
JOB_ENV = ("GITHUB_WORKFLOW", "GITHUB_JOB", "STACK", "ARM_CLIENT_ID", "ARM_SUBSCRIPTION_ID",
           "ARM_USE_OIDC")


def scenario() -> dict:
    return json.loads((STATE / "scenario.json").read_text())


def record(tool: str, args: list[str], **extra) -> None:
    entry = {"tool": tool, "args": args, "cwd": os.getcwd(),
             "env": {name: os.environ.get(name) for name in JOB_ENV}, **extra}
    with (STATE / "calls.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def fail(tool: str, args: list[str], message: str, code: int = 1):
    """Record the refused call, say why on stderr (like the real tool), exit non-zero."""
    record(tool, args, refused=message)
    print(f"{tool} (rehearsal fake): {message}", file=sys.stderr)
    sys.exit(code)


def option(args: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` (None when absent)."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def load_state(name: str, default):
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save_state(name: str, value) -> None:
    tmp = STATE / f".{name}.tmp.{os.getpid()}"
    tmp.write_text(json.dumps(value))
    tmp.replace(STATE / name)


# -- Who is calling, and may it? (the permission model, as the bootstrap stack made it) -------
#
# $REHEARSAL_WORLD is tests/github/bootstrap_world.py's reading of the synthesized bootstrap
# stack; $REHEARSAL_JOB_ENVIRONMENT is the job's own `environment:`, evaluated by act (the
# rehearsal copies it into the job's env); GITHUB_EVENT_NAME, GITHUB_REF, GITHUB_ACTOR and the
# event payload are act's.

ENV_SCOPED = "env-scoped:"


def world() -> dict:
    return json.loads(Path(os.environ["REHEARSAL_WORLD"]).read_text())


def job_environment() -> str | None:
    return os.environ.get("REHEARSAL_JOB_ENVIRONMENT") or None


def variable(value: str | None) -> str:
    """A `vars.X` value as GitHub would give it to this job: an environment's variable only to
    a job that names that environment, empty otherwise."""
    if not value or not value.startswith(ENV_SCOPED):
        return value or ""
    environment = world()["environments"].get(job_environment() or "", {})
    return environment.get("variables", {}).get(value.removeprefix(ENV_SCOPED), "")


def event() -> dict:
    path = os.environ.get("GITHUB_EVENT_PATH")
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def oidc_subject(tool: str, args: list[str]) -> str:
    """The `sub` claim GitHub would put in this job's OIDC token, or fail as the job would when
    it gets no token or may not run in its environment."""
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    payload = event()
    name = os.environ.get("GITHUB_EVENT_NAME", "")
    if name == "pull_request":
        head = payload.get("pull_request", {}).get("head", {}).get("repo", {})
        if head.get("full_name") != repository:
            fail(tool, args, "Error: Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable"
                 " (a pull request from a fork gets no OIDC token)")
        if os.environ.get("GITHUB_ACTOR") == "dependabot[bot]":
            fail(tool, args, "Error: Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable"
                 " (Dependabot's runs get no OIDC token)")
    environment = job_environment()
    if environment:
        rules = world()["environments"].get(environment)
        if rules is None:
            fail(tool, args, f"environment {environment} does not exist (the bootstrap stack"
                 " makes every environment the workflows name)")
        ref = os.environ.get("GITHUB_REF", "")
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        if rules["branches"] and branch not in rules["branches"]:
            fail(tool, args, f'Branch "{ref}" is not allowed to deploy to {environment} due to'
                 " environment protection rules.")
        return f"repo:{repository}:environment:{environment}"
    if name == "pull_request":
        return f"repo:{repository}:pull_request"
    return f"repo:{repository}:ref:{os.environ.get('GITHUB_REF', '')}"


def identity_for(tool: str, args: list[str], client: str | None) -> dict:
    """The identity this job's token exchanges into, or fail with Entra ID's words."""
    client = variable(client)
    if not client:
        fail(tool, args, "Error: client-id is empty (a variable this job cannot see?)")
    subject = oidc_subject(tool, args)
    identity = next((i for i in world()["identities"] if i["client_id"] == client), None)
    if identity is None:
        fail(tool, args, f"AADSTS700016: Application with identifier '{client}' was not found")
    if subject not in identity["subjects"]:
        fail(tool, args, "AADSTS700213: No matching federated identity record found for"
             f" presented assertion subject '{subject}' ({identity['name']} accepts:"
             f" {', '.join(identity['subjects']) or 'none'})")
    return identity


def _matches(pattern: str, action: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def allowed(identity: dict, action: str, scope: str, data: bool = False) -> bool:
    """Azure RBAC: a grant at `scope` or any parent scope whose role allows `action`."""
    for grant in identity["grants"]:
        if not (scope == grant["scope"] or scope.startswith(grant["scope"].rstrip("/") + "/")):
            continue
        role = grant["role"]
        if data:
            if any(_matches(p, action) for p in role["data_actions"]):
                return True
        elif (any(_matches(p, action) for p in role["actions"])
              and not any(_matches(p, action) for p in role["not_actions"])):
            return True
    return False


def authorize(tool: str, args: list[str], identity: dict, action: str, scope: str,
              data: bool = False) -> None:
    if not allowed(identity, action, scope, data):
        code = "AuthorizationPermissionMismatch" if data else "AuthorizationFailed"
        fail(tool, args, f"Error: {code}: The client '{identity['client_id']}' with object id"
             f" '{identity['principal_id']}' does not have authorization to perform"
             f" {'data action' if data else 'action'} '{action}' over scope '{scope}' or the"
             " scope is invalid.")


def authorize_graph(tool: str, args: list[str], identity: dict, permissions: list[str]) -> None:
    """Microsoft Graph: the identity holds every one of `permissions` (application permissions,
    consented by an admin: the bootstrap's output graph_consent)."""
    missing = [p for p in permissions if p not in identity.get("graph", [])]
    if missing:
        fail(tool, args, "Error: Authorization_RequestDenied: Insufficient privileges to"
             f" complete the operation ({identity['name']} lacks the Microsoft Graph application"
             f" permission(s) {', '.join(missing)})")


def subscription_scope(subscription: str | None) -> str:
    return f"/subscriptions/{variable(subscription)}"
