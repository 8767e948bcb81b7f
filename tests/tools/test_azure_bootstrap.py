"""tools/azure-bootstrap.sh against recording fakes of az and gh: environment isolation as the
workflows need it (each deploy identity in its own subscription and state container, main only,
no self-review of prod)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = r'''
import json, os, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if "--input" in args else None
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps({"tool": os.path.basename(sys.argv[0]), "args": args, "stdin": stdin}) + "\n")
line = " ".join(args)
answers = [
    ("account show --query tenantId", "tenant-0"),
    ("ad signed-in-user show", "me-0"),
    ("ad app list", ""),
    ("ad app create --display-name", "appid-" + (args[args.index("--display-name") + 1] if "--display-name" in args else "")),
    ("ad sp show --id", "sp-" + (args[args.index("--id") + 1] if "--id" in args else "")),
    ("storage account show", "/subscriptions/sub-state/resourceGroups/todo-api-tfstate/providers/Microsoft.Storage/storageAccounts/acct"),
    ("storage blob exists", "false"),
    ("api users/", "42"),
]
if line.startswith("ad app federated-credential show"):
    sys.exit(1)
for prefix, answer in answers:
    if line.startswith(prefix):
        if "--output none" not in line and answer:
            print(answer)
        break
'''


def bootstrap(tmp_path, **env) -> tuple[subprocess.CompletedProcess, list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("az", "gh"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{FAKE}")
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
        "GITHUB_REPO": "contoso/todo-api", "STATE_ACCOUNT": "todoapitfstate42",
        "PROD_REVIEWER": "alice", "DEV_SUBSCRIPTION_ID": "sub-dev",
        "PROD_SUBSCRIPTION_ID": "sub-prod", "ROLE_PROPAGATION_SECONDS": "0", **env,
    }
    result = subprocess.run(["bash", str(ROOT / "tools" / "azure-bootstrap.sh")], env=full_env,
                            capture_output=True, text=True, timeout=60, check=False)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result, [json.loads(line) for line in lines]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    result, recorded = bootstrap(tmp_path_factory.mktemp("bootstrap"))
    assert result.returncode == 0, result.stderr
    return recorded


def role_assignments(calls, assignee: str) -> list[tuple[str, str]]:
    return [(option(c["args"], "--role"), option(c["args"], "--scope")) for c in calls
            if c["args"][:3] == ["role", "assignment", "create"]
            and c["args"][c["args"].index("--assignee" if "--assignee" in c["args"]
                                          else "--assignee-object-id") + 1] == assignee]


@pytest.mark.parametrize(("env", "other"), [("dev", "prod"), ("prod", "dev")])
def test_each_deploy_identity_holds_roles_in_its_own_environment_only(calls, env, other):
    assigned = role_assignments(calls, f"appid-todo-api-github-{env}")
    assert assigned, "no role assignments"
    for role, scope in assigned:
        assert scope.startswith(f"/subscriptions/sub-{env}") or scope.endswith(
            f"/containers/tfstate-{env}"), (role, scope)
        assert f"sub-{other}" not in scope and f"tfstate-{other}" not in scope


def test_both_environments_deploy_from_main_only_and_prod_needs_another_reviewer(calls):
    puts = {c["args"][3].rsplit("/", 1)[1]: json.loads(c["stdin"]) for c in calls
            if c["tool"] == "gh" and c["args"][:3] == ["api", "--method", "PUT"]}
    assert set(puts) == {"dev", "prod"}
    for body in puts.values():
        assert body["deployment_branch_policy"]["custom_branch_policies"] is True
    assert puts["prod"]["prevent_self_review"] is True and puts["prod"]["reviewers"]
    branch_policies = [c["args"] for c in calls if c["tool"] == "gh" and "POST" in c["args"]
                       and c["args"][3].endswith("/deployment-branch-policies")]
    assert len(branch_policies) == 2 and all("name=main" in a for a in branch_policies)


def test_each_stack_gets_an_empty_state_for_the_first_run(calls):
    uploads = [option(c["args"], "--name") for c in calls if c["args"][:3] == [
        "storage", "blob", "upload"]]
    assert uploads == ["todo-api-dev.tfstate", "todo-api-prod.tfstate"]


def test_one_subscription_for_both_environments_is_refused(tmp_path):
    result, recorded = bootstrap(tmp_path, PROD_SUBSCRIPTION_ID="sub-dev")
    assert result.returncode == 2 and recorded == []
    assert "must differ" in result.stderr
