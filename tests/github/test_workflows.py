"""Offline checks of the delivery workflows: linters with zero findings, and the standards
the workflows promise (pinned actions, least privilege, no untrusted input in shell)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    return on if isinstance(on, dict) else {name: None for name in ([on] if isinstance(on, str)
                                                                     else on)}


def jobs():
    for path in WORKFLOWS:
        for job_id, job in load(path)["jobs"].items():
            yield path.name, job_id, job


def steps():
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            yield from ((path.name, s) for s in job.get("steps", []))
    for path in ACTIONS:
        yield from ((path.parent.name, s) for s in load(path)["runs"]["steps"])


def uses_lines():
    for path in WORKFLOWS + ACTIONS:
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:- )?uses:\s*(.+)$", line)
            if match:
                yield path.name, match.group(1).strip()


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_the_five_workflows_exist():
    assert {p.stem for p in WORKFLOWS} >= {"ci", "plan", "deploy", "load-test", "drift"}


def test_actionlint_finds_nothing():
    result = run(str(BIN / "actionlint"), "-no-color")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing():
    result = run(str(BIN / "zizmor"), "--offline", "--no-progress", "--persona", "pedantic",
                 ".github/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_workflows_match_the_github_workflow_schema():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                 *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_matches_its_schema():
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.dependabot",
                 str(GITHUB / "dependabot.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_to_a_commit_sha_with_its_version():
    unpinned = [(f, u) for f, u in uses_lines() if not u.startswith("$/") and not PINNED.match(u)]
    assert unpinned == []


def test_each_action_is_pinned_to_one_sha_everywhere():
    pins: dict[str, set[str]] = {}
    for _, uses in uses_lines():
        if not uses.startswith("$/"):
            name, rest = uses.split("@", 1)
            pins.setdefault(name, set()).add(rest)
    assert {name: sha for name, sha in pins.items() if len(sha) > 1} == {}


def test_workflows_grant_no_permissions_at_the_top_level():
    assert {p.name: load(p).get("permissions") for p in WORKFLOWS} == {
        p.name: {} for p in WORKFLOWS
    }


def test_every_job_declares_its_own_permissions():
    assert [(f, j) for f, j, job in jobs() if "permissions" not in job] == []


def test_no_workflow_runs_on_pull_request_target():
    assert [p.name for p in WORKFLOWS if "pull_request_target" in triggers(load(p))] == []


def test_shell_steps_never_expand_expressions():
    """Untrusted values (titles, branch names, inputs) reach shell only through env vars."""
    expanded = [(where, s.get("name", s["run"][:40])) for where, s in steps()
                if "run" in s and "${{" in s["run"]]
    assert expanded == []


def test_only_jobs_that_talk_to_azure_get_an_id_token():
    for workflow, job_id, job in jobs():
        wants_token = job["permissions"].get("id-token") == "write"
        talks_to_azure = job.get("env", {}).get("ARM_USE_OIDC") == "true"
        assert wants_token == talks_to_azure, f"{workflow}: {job_id}"


def test_fork_pull_requests_get_no_azure_token_and_no_write_token():
    plan = load(GITHUB / "workflows" / "plan.yml")["jobs"]
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    privileged = [job_id for job_id, job in plan.items()
                  if set(job["permissions"]) - {"contents"}]
    assert privileged == ["plan", "comment"]
    assert all(same_repo in plan[job_id]["if"] for job_id in privileged)


def test_deploys_queue_and_never_cancel_a_running_apply():
    deploy = load(GITHUB / "workflows" / "deploy.yml")
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["concurrency"]["group"] == (
        "todo-api-${{ github.event_name == 'push' && 'dev' || inputs.environment }}")


def test_deploys_and_drills_of_one_environment_share_a_concurrency_group():
    drill = load(GITHUB / "workflows" / "load-test.yml")["jobs"]["load-test"]["concurrency"]
    assert drill == {"group": "todo-api-${{ inputs.environment }}", "cancel-in-progress": False}


def test_apply_and_rollout_target_the_protected_github_environment():
    jobs = load(GITHUB / "workflows" / "deploy.yml")["jobs"]
    for name in ("apply", "rollout"):
        assert jobs[name]["environment"] == (
            "${{ github.event_name == 'push' && 'dev' || inputs.environment }}"), name


def test_the_rollout_is_a_job_of_its_own_that_applies_nothing():
    """A failed rollout can be re-run alone: it needs the apply, and holds no plan to apply."""
    jobs = load(GITHUB / "workflows" / "deploy.yml")["jobs"]
    rollout = jobs["rollout"]
    commands = "\n".join(s.get("run", "") for s in rollout["steps"])
    assert set(rollout["needs"]) == {"package", "apply"}
    assert "terraform apply" not in commands and "plan-bundle" not in yaml.safe_dump(rollout)
    assert "python -m tools.delivery.release" in commands
    assert rollout["permissions"] == {"contents": "read", "id-token": "write",
                                      "deployments": "write"}
    # the apply job runs no delivery tool but the plan's unpacking and the Key Vault cleanup
    # (the certificate's tool runs inside the apply, from the stack's local-exec)
    assert "tools.delivery" not in "\n".join(
        s.get("run", "") for s in jobs["apply"]["steps"]
        if "plan_bundle" not in s.get("run", "") and "key_vault close" not in s.get("run", ""))


def test_deploy_applies_exactly_the_saved_plan_after_the_approval_gate():
    jobs = load(GITHUB / "workflows" / "deploy.yml")["jobs"]
    def commands(job):
        return "\n".join(s.get("run", "") for s in jobs[job]["steps"])
    assert "terraform plan -input=false -lock=false -out=tfplan" in commands("plan")
    # the plan is made (and shown) before the gate, in the ungated <env>-plan environment
    assert jobs["plan"]["environment"].endswith("}-plan")
    assert "plan" in jobs["apply"]["needs"] and "-plan" not in jobs["apply"]["environment"]
    assert "terraform apply -input=false -lock-timeout=10m tfplan" in commands("apply")
    assert "terraform plan" not in commands("apply") and "-auto-approve" not in commands("apply")


def test_the_plan_travels_encrypted_never_as_a_plain_artifact():
    jobs = load(GITHUB / "workflows" / "deploy.yml")["jobs"]
    uploads = [s["with"]["path"] for s in jobs["plan"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploads == ["${{ runner.temp }}/plan-bundle/plan.bundle"]


def test_deploy_job_outlasts_api_managements_create_timeout():
    hours = re.search(r'APIM_TIMEOUT = "(\d+)h"', (ROOT / "stacks" / "gateway.py").read_text())
    job = load(GITHUB / "workflows" / "deploy.yml")["jobs"]["apply"]
    assert job["timeout-minutes"] >= int(hours[1]) * 60 + 30


@pytest.mark.parametrize(("tool", "pattern"), [
    ("python", r"3\.\d+"), ("node", r"(22|24)\.\d+\.\d+"), ("terraform", r"\d+\.\d+\.\d+"),
])
def test_toolchain_versions_are_pinned_in_one_place(tool, pattern):
    assert re.fullmatch(pattern, (GITHUB / "versions" / tool).read_text().strip())


def test_terraform_wrapper_is_off_so_exit_codes_are_real():
    action = load(GITHUB / "actions" / "setup-toolchain" / "action.yml")
    [setup] = [s for s in action["runs"]["steps"] if "setup-terraform" in s.get("uses", "")]
    assert setup["with"]["terraform_wrapper"] is False


def test_dependabot_proposes_updates_for_actions_python_lock_and_npm_lock():
    updates = load(GITHUB / "dependabot.yml")["updates"]
    assert {u["package-ecosystem"] for u in updates} == {"github-actions", "uv", "npm"}


# The permission model's variables and secrets (stacks/permissions.py) ---------------------------


def referenced(job: dict, kind: str) -> set[str]:
    return set(re.findall(rf"\b{kind}\.([A-Z0-9_]+)", yaml.safe_dump(job)))


def test_environment_variables_and_secrets_are_read_only_by_jobs_that_name_an_environment():
    """GitHub gives a job an environment's variables and secrets only when the job names that
    environment; a job that reads them without naming one would silently get empty values (or,
    were they repository-level, hand them to every pull request)."""
    from stacks.permissions import ENVIRONMENT_SECRETS, ENVIRONMENT_VARIABLES

    offenders = [
        f"{workflow} {job_id}: {name}"
        for workflow, job_id, job in jobs() if "environment" not in job
        for name in sorted((referenced(job, "vars") & set(ENVIRONMENT_VARIABLES))
                           | (referenced(job, "secrets") & set(ENVIRONMENT_SECRETS)))]
    assert offenders == []


def test_every_variable_and_secret_the_workflows_read_is_one_the_bootstrap_creates():
    from stacks.permissions import ENVIRONMENT_SECRETS, ENVIRONMENT_VARIABLES, REPOSITORY_VARIABLES

    used_vars = set().union(*(referenced(job, "vars") for _, _, job in jobs()))
    used_secrets = set().union(*(referenced(job, "secrets") for _, _, job in jobs()))
    assert used_vars - set(REPOSITORY_VARIABLES) - set(ENVIRONMENT_VARIABLES) == set()
    assert used_secrets - set(ENVIRONMENT_SECRETS) == set()


def test_no_pull_request_job_names_a_prod_environment_or_reads_prod():
    """Whatever a pull request's token reaches, any writer can read: nothing of prod. (The
    prod deploy identity's object id, which synth needs for the Key Vault role assignment, is
    an identifier, not a credential.)"""
    for path in WORKFLOWS:
        workflow = load(path)
        if "pull_request" not in triggers(workflow):
            continue
        for job_id, job in workflow["jobs"].items():
            text = yaml.safe_dump(job)
            assert "prod" not in str(job.get("environment", "")), (path.name, job_id)
            text = text.replace("vars.AZURE_DEPLOYER_OBJECT_IDS_PROD", "")
            assert not re.search(r"vars\.[A-Z_]*PROD", text), (path.name, job_id)
