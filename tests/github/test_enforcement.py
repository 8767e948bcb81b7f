"""The rehearsal's fakes enforce the permission model: each refusal shown on its own, without
act, by running the azure/login stand-in, fake terraform and fake az as the workflows' steps
do, with the environment a job would have. Where a refusal guards a fix, the defect it guards
against is planted in a copy of the synthesized bootstrap stack and shown to get through.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.bootstrap_config import PLACEHOLDER_SUBSCRIPTIONS
from tests.github.bootstrap_world import ENV_SCOPED, client_id, resolve

HERE = Path(__file__).resolve().parent
TERRAFORM = HERE / "fakes" / "terraform" / "terraform"
AZ = HERE / "fakes" / "bin" / "az"
LOGIN = HERE / "actions" / "login.py"
REPOSITORY = "contoso/todo-api"
PLAN_DEV, PLAN_PROD = client_id("todo-api-github-plan-dev"), client_id("todo-api-github-plan-prod")
DEPLOY_DEV = client_id("todo-api-github-deploy-dev")
DEV, PROD, STATE = (PLACEHOLDER_SUBSCRIPTIONS[k] for k in ("dev", "prod", "state"))
PULL_REQUEST = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/7/merge"}
ON_MAIN = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}


@pytest.fixture(scope="module")
def bootstrap(synthesized_bootstrap_file) -> dict:
    return json.loads(synthesized_bootstrap_file.read_text())


class Job:
    """One job's steps: a state folder for the fakes, a workspace with the dev stack."""

    def __init__(self, root: Path, stack_json: dict, world: dict, env: dict, stack: str,
                 holds_resources: bool = False):
        self.state = root / "state"
        self.state.mkdir(parents=True)
        self.folder = root / "workspace" / "cdktf.out" / "stacks" / stack
        self.folder.mkdir(parents=True)
        (self.folder / "cdk.tf.json").write_text(json.dumps(stack_json))
        (self.folder / "backend_override.tf.json").write_text("{}")
        (self.state / "world.json").write_text(json.dumps(world))
        payload = {"pull_request": {"head": {"repo": {"full_name": env.pop(
            "head_repository", REPOSITORY)}}}}
        (self.state / "event.json").write_text(json.dumps(payload))
        (self.state / "scenario.json").write_text(json.dumps({
            "web_apps": [{"name": "app-weu", "resource_group": "rg-weu"}],
            "stacks": {stack: {"plan": {"resource_changes": []}, "outputs": {},
                               "state_holds_resources": holds_resources}}}))
        self.env = {"PATH": os.environ["PATH"], "REHEARSAL_DIR": str(self.state),
                    "REHEARSAL_WORLD": str(self.state / "world.json"),
                    "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_ACTOR": "alice",
                    "GITHUB_EVENT_PATH": str(self.state / "event.json"), **env}
        self.stack = stack

    def run(self, program: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(program), *args], cwd=self.folder,
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)

    def init(self, environment: str) -> subprocess.CompletedProcess:
        return self.run(TERRAFORM, "init", f"-backend-config=subscription_id={STATE}",
                        "-backend-config=resource_group_name=todo-api-tfstate",
                        "-backend-config=storage_account_name=todoapitfstate42",
                        f"-backend-config=container_name=tfstate-{environment}",
                        f"-backend-config=key={self.stack}.tfstate")

    def plan(self) -> subprocess.CompletedProcess:
        return self.run(TERRAFORM, "plan", "-input=false", "-lock=false", "-out=tfplan")


@pytest.fixture
def job(tmp_path, bootstrap, synthesized_stacks):
    def make(env: dict, *, stack: str = "todo-api-dev", world: dict | None = None,
             stack_json: dict | None = None, holds_resources: bool = False) -> Job:
        environment = stack.rsplit("-", 1)[1]
        return Job(tmp_path / f"job-{len(list(tmp_path.iterdir()))}",
                   stack_json or synthesized_stacks[(environment, "single")],
                   world or resolve(bootstrap), dict(env), stack, holds_resources)
    return make


def with_federated_subject(bootstrap: dict, identity: str, subject: str) -> dict:
    """The bootstrap stack with one more federated credential (a planted defect)."""
    planted = copy.deepcopy(bootstrap)
    [logical_id] = [k for k, v in planted["resource"]["azurerm_user_assigned_identity"].items()
                    if v["name"] == identity]
    planted["resource"]["azurerm_federated_identity_credential"]["planted"] = {
        "name": "planted", "issuer": "https://token.actions.githubusercontent.com",
        "audience": ["api://AzureADTokenExchange"], "subject": subject,
        "parent_id": f"${{azurerm_user_assigned_identity.{logical_id}.id}}"}
    return planted


# Who may obtain which token --------------------------------------------------------------------


def test_a_pull_request_token_cannot_become_prods_plan_identity(job, bootstrap):
    result = job(PULL_REQUEST).run(LOGIN, PLAN_PROD, PROD)
    assert result.returncode == 1
    assert "AADSTS700213" in result.stderr
    assert f"'repo:{REPOSITORY}:pull_request'" in result.stderr


def test_the_refusal_guards_the_fix_prods_plan_identity_federated_for_pull_requests(job,
                                                                                  bootstrap):
    """The defect of issue 16: plan identity federated for pull_request with prod reach."""
    planted = with_federated_subject(bootstrap, "todo-api-github-plan-prod",
                                     f"repo:{REPOSITORY}:pull_request")
    assert job(PULL_REQUEST, world=resolve(planted)).run(LOGIN, PLAN_PROD, PROD).returncode == 0


def test_a_pull_request_token_becomes_devs_plan_identity(job):
    result = job(PULL_REQUEST).run(LOGIN, PLAN_DEV, DEV)
    assert result.returncode == 0, result.stderr


def test_a_pull_request_cannot_take_a_deploy_identity(job):
    assert "AADSTS700213" in job(PULL_REQUEST).run(LOGIN, DEPLOY_DEV, DEV).stderr


@pytest.mark.parametrize(("case", "env", "message"), [
    ("fork", {**PULL_REQUEST, "head_repository": "mallory/todo-api"}, "from a fork"),
    ("dependabot", {**PULL_REQUEST, "GITHUB_ACTOR": "dependabot[bot]"}, "Dependabot"),
])
def test_forks_and_dependabot_get_no_token(job, case, env, message):
    result = job(env).run(LOGIN, PLAN_DEV, DEV)
    assert result.returncode == 1 and "ACTIONS_ID_TOKEN_REQUEST_URL" in result.stderr
    assert message in result.stderr


def test_an_environment_allows_only_its_branch(job):
    env = {"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/feature",
           "REHEARSAL_JOB_ENVIRONMENT": "prod-plan"}
    result = job(env).run(LOGIN, ENV_SCOPED + "AZURE_CLIENT_ID", ENV_SCOPED + "AZURE_SUBSCRIPTION_ID")
    assert result.returncode == 1
    assert 'Branch "refs/heads/feature" is not allowed to deploy to prod-plan' in result.stderr


def test_environment_variables_reach_only_jobs_that_name_the_environment(job):
    named = job({**ON_MAIN, "REHEARSAL_JOB_ENVIRONMENT": "prod-plan"}).run(
        LOGIN, ENV_SCOPED + "AZURE_CLIENT_ID", ENV_SCOPED + "AZURE_SUBSCRIPTION_ID")
    assert named.returncode == 0, named.stderr
    unnamed = job(ON_MAIN).run(LOGIN, ENV_SCOPED + "AZURE_CLIENT_ID",
                               ENV_SCOPED + "AZURE_SUBSCRIPTION_ID")
    assert unnamed.returncode == 1 and "client-id is empty" in unnamed.stderr


def test_main_without_an_environment_gets_no_identity(job):
    """Subject ref:refs/heads/main is federated to nobody: plans run in <env>-plan."""
    assert "AADSTS700213" in job(ON_MAIN).run(LOGIN, PLAN_DEV, DEV).stderr


# What each identity may do ---------------------------------------------------------------------


def test_devs_plan_identity_cannot_read_prods_state(job):
    prod_job = job({**PULL_REQUEST, "ARM_CLIENT_ID": PLAN_DEV, "ARM_SUBSCRIPTION_ID": PROD},
                   stack="todo-api-prod")
    result = prod_job.init("prod")
    assert result.returncode == 1
    assert "AuthorizationPermissionMismatch" in result.stderr and "tfstate-prod" in result.stderr


def plan_env(client: str = PLAN_DEV) -> dict:
    return {**PULL_REQUEST, "ARM_CLIENT_ID": client, "ARM_SUBSCRIPTION_ID": DEV}


def test_a_plan_after_an_apply_refreshes_every_resource_type(job):
    dev = job(plan_env(), holds_resources=True)
    assert dev.init("dev").returncode == 0
    result = dev.plan()
    assert result.returncode == 0, result.stderr


def without_action(bootstrap: dict, action: str) -> dict:
    """The bootstrap stack with `action` missing from the plan roles (a planted defect)."""
    planted = copy.deepcopy(bootstrap)
    for role in planted["resource"]["azurerm_role_definition"].values():
        actions = role["permissions"][0]["actions"]
        if action in actions:  # the plan roles; the drills' fault roles hold no refresh action
            actions.remove(action)
    return planted


@pytest.mark.parametrize("action", [
    "Microsoft.DocumentDB/databaseAccounts/listKeys/action",
    "Microsoft.Resources/deployments/exportTemplate/action",
])
def test_without_a_refresh_action_only_the_second_plan_fails(job, bootstrap, action):
    """Issue 16's blocker 2: the first plan (empty state) passes, every later one fails."""
    world = resolve(without_action(bootstrap, action))
    first = job(plan_env(), world=world)
    assert first.init("dev").returncode == 0 and first.plan().returncode == 0
    second = job(plan_env(), world=world, holds_resources=True)
    assert second.init("dev").returncode == 0
    result = second.plan()
    assert result.returncode == 1 and f"'{action}'" in result.stderr
    assert "AuthorizationFailed" in result.stderr


def test_registering_providers_at_plan_time_is_refused(job, synthesized_stacks):
    stack = copy.deepcopy(synthesized_stacks[("dev", "single")])
    del stack["provider"]["azurerm"][0]["resource_provider_registrations"]
    dev = job(plan_env(), stack_json=stack)
    assert dev.init("dev").returncode == 0
    result = dev.plan()
    assert result.returncode == 1 and "register/action" in result.stderr


def test_the_environment_stacks_register_no_providers(synthesized_stacks):
    for key, stack in synthesized_stacks.items():
        assert stack["provider"]["azurerm"][0]["resource_provider_registrations"] == "none", key


def deploy_env() -> dict:
    return {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main",
            "REHEARSAL_JOB_ENVIRONMENT": "dev", "ARM_CLIENT_ID": ENV_SCOPED + "AZURE_CLIENT_ID",
            "ARM_SUBSCRIPTION_ID": ENV_SCOPED + "AZURE_SUBSCRIPTION_ID"}


def test_the_deploy_identity_applies_the_stack(job):
    """Its apply also runs the stack's local-exec: the certificate tool, with az logged in as
    the same identity (the apply job's azure/login), making the certificate in dev's vault."""
    dev = job(deploy_env())
    assert dev.run(LOGIN, ENV_SCOPED + "AZURE_CLIENT_ID",
                   ENV_SCOPED + "AZURE_SUBSCRIPTION_ID").returncode == 0
    dev.env.update(PATH=f"{AZ.parent}{os.pathsep}{dev.env['PATH']}",
                   TODO_API_PYTHON=sys.executable, PYTHONPATH=str(HERE.parents[1]))
    assert dev.init("dev").returncode == 0 and dev.plan().returncode == 0
    result = dev.run(TERRAFORM, "apply", "-input=false", "tfplan")
    assert result.returncode == 0, result.stderr
    assert "certificate apim-client-certificate: created" in result.stdout
    vault = json.loads((dev.state / "azure.json").read_text())["key_vaults"]["todo-api-dev-kv"]
    assert set(vault["certificates"]) == {"apim-client-certificate"}
    assert "apim-client-certificate-public" in vault["secrets"]
    assert vault["ip_rules"] == []  # a public vault: nothing opened


def test_the_deploy_identity_may_assign_no_role_but_the_key_vault_ones(job, synthesized_stacks):
    stack = copy.deepcopy(synthesized_stacks[("dev", "single")])
    [(_, assignment)] = list(stack["resource"]["azurerm_role_assignment"].items())[:1]
    stack["resource"]["azurerm_role_assignment"]["planted"] = {**assignment,
                                                              "role_definition_name": "Owner"}
    dev = job(deploy_env(), stack_json=stack)
    assert dev.init("dev").returncode == 0 and dev.plan().returncode == 0
    result = dev.run(TERRAFORM, "apply", "-input=false", "tfplan")
    assert result.returncode == 1 and "'Owner'" in result.stderr


def test_a_plan_identity_cannot_stop_a_web_app(job):
    dev = job(PULL_REQUEST)
    assert dev.run(LOGIN, PLAN_DEV, DEV).returncode == 0
    result = dev.run(AZ, "webapp", "stop", "--resource-group", "rg-weu", "--name", "app-weu")
    assert result.returncode == 1
    assert "AuthorizationFailed" in result.stderr and "Microsoft.Web/sites/stop/Action" in (
        result.stderr)


def test_the_deploy_identity_can_stop_a_web_app(job):
    dev = job(deploy_env())
    assert dev.run(LOGIN, ENV_SCOPED + "AZURE_CLIENT_ID",
                   ENV_SCOPED + "AZURE_SUBSCRIPTION_ID").returncode == 0
    result = dev.run(AZ, "webapp", "stop", "--resource-group", "rg-weu", "--name", "app-weu")
    assert result.returncode == 0, result.stderr


def test_an_environment_secret_reads_empty_in_a_job_that_names_no_environment():
    """The rehearsal copy does what GitHub does and act does not (act hands every job every
    secret): the plan job without its environment gets no bundle key."""
    from tests.github.rehearsal import with_job_environment_variable

    workflow = (HERE.parents[1] / ".github" / "workflows" / "deploy.yml").read_text()
    planted = workflow.replace(
        "    environment: ${{ github.event_name == 'push' && 'dev' || inputs.environment }}-plan\n",
        "", 1)
    assert planted != workflow
    jobs = yaml.safe_load(with_job_environment_variable(planted))["jobs"]
    assert "secrets.PLAN_BUNDLE_KEY" not in yaml.safe_dump(jobs["plan"])
    assert "secrets.PLAN_BUNDLE_KEY" in yaml.safe_dump(jobs["apply"])
    kept = yaml.safe_load(with_job_environment_variable(workflow))["jobs"]
    assert "secrets.PLAN_BUNDLE_KEY" in yaml.safe_dump(kept["plan"])
