"""The rehearsal: every job of ci, plan, deploy, load test and drift runs under `act` on this
host, against recording fakes of terraform, az and the GitHub API (see rehearsal.py).

Run it alone with `.venv/bin/pytest -m rehearsal`. Each workflow runs once per scenario in a
module fixture; the tests read what the fakes recorded.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from stacks.bootstrap_config import PLACEHOLDER_SUBSCRIPTIONS, load_bootstrap
from stacks.config import load_environment
from tests.app.issuer import LocalIssuer, new_signing_key
from tests.github.bootstrap_world import client_id, write_world
from tests.github.fake_azure import RUNNER_IP, Gateway
from tests.github.rehearsal import Rehearsal, Run, prepare_source
from tests.tools.conftest import FakeGitHub, serving
from tests.tools.stack_outputs_data import COSMOS_OUTPUTS, WORKBOOK_OUTPUTS, raw_outputs

pytestmark = pytest.mark.rehearsal

PLANS = Path(__file__).resolve().parents[1] / "tools" / "data" / "plans"
STACKS = ("todo-api-dev", "todo-api-prod")
SUBSCRIPTION_KEY = "sub-key-0123"
WEB_APPS = [{"name": "app-weu", "resource_group": "rg-weu"},
            {"name": "app-neu", "resource_group": "rg-neu"}]
PR = {"pull_request": {"number": 7, "head": {"repo": {"full_name": "contoso/todo-api"}},
                       "user": {"login": "alice"}}}
# The identities of the bootstrap stack, by the client ids the rehearsal's "apply" gives them.
PLAN_DEV, PLAN_PROD = client_id("todo-api-github-plan-dev"), client_id("todo-api-github-plan-prod")
DEPLOY_DEV = client_id("todo-api-github-deploy-dev")
PROD_SUBSCRIPTION = PLACEHOLDER_SUBSCRIPTIONS["prod"]
DEV_SUBSCRIPTION = PLACEHOLDER_SUBSCRIPTIONS["dev"]
DEPLOY_PROD = client_id("todo-api-github-deploy-prod")


def plan(name: str) -> dict:
    return json.loads((PLANS / f"{name}.json").read_text())


KEY_VAULT = {"name": "kv-todo-dev", "certificate": "apim-client-certificate"}


def client_certificate_pfx() -> str:
    """A throwaway self-signed client certificate as Key Vault hands it out (PFX, base64)."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "rehearsal client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return base64.b64encode(
        pkcs12.serialize_key_and_certificates(None, key, cert, None, NoEncryption())).decode()


@dataclass
class World:
    rehearsal: Rehearsal
    github: FakeGitHub
    gateway: Gateway
    pfx: str

    def scenario(self, plan_name: str = "mixed", exitcode: int = 2, gateway: Gateway | None = None,
                 **stack_overrides) -> dict:
        gateway = gateway or self.gateway
        names = [a["name"] for a in WEB_APPS]
        outputs = raw_outputs(
            gateway_urls=[gateway.url],
            web_app_hostnames=[gateway.site_url(n) for n in names],
            web_app_staging_hostnames=[gateway.site_url(n, "staging") for n in names],
            key_vault_name=KEY_VAULT["name"],
            client_certificate_name=KEY_VAULT["certificate"],
            release_bake_seconds=2,
            subscription_key=SUBSCRIPTION_KEY,
            **COSMOS_OUTPUTS,
            **WORKBOOK_OUTPUTS,
        )
        stack = {"plan": plan(plan_name), "exitcode": exitcode, "outputs": outputs,
                 "refresh_only_plan": plan("no_changes"), "refresh_only_exitcode": 0,
                 **stack_overrides}
        # Each stack's outputs name its own vault, the one its apply makes (the fake terraform
        # gives it the firewall the stack declares: dev's open, prod's default Deny) and fills
        # through the certificate tool; the rollout reads the certificate from there.
        stacks = {name: {**stack, "outputs": {
            **outputs, "key_vault_name": {**outputs["key_vault_name"], "value": f"{name}-kv"}}}
            for name in STACKS}
        return {"web_apps": WEB_APPS, "stacks": stacks,
                "key_vault": {**KEY_VAULT, "pfx_base64": self.pfx},
                "cosmos": {"name": COSMOS_OUTPUTS["cosmos_account_name"],
                           "resource_group": COSMOS_OUTPUTS["cosmos_resource_group_name"],
                           "regions": COSMOS_OUTPUTS["cosmos_regions"]}}


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthesized_bootstrap_file):
    workdir = tmp_path_factory.mktemp("rehearsal")
    write_world(synthesized_bootstrap_file, workdir / "world.json")
    source = prepare_source(workdir / "src")
    github = FakeGitHub()
    gateway = Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
    try:
        with serving(github) as github_url:
            yield World(Rehearsal(source, workdir, github_url, gateway, workdir / "world.json"),
                        github, gateway, client_certificate_pfx())
    finally:
        gateway.close()


def terraform_calls(run: Run, command: str) -> list[dict]:
    return [c for c in run.calls("terraform") if c["args"][0] == command]


# ci ------------------------------------------------------------------------------------------


def test_ci_job_gets_as_far_as_make_test_in_a_prepared_workspace(world):
    run = world.rehearsal.run("ci", "pull_request", world.scenario(), payload=PR)
    run.assert_green()
    [make] = run.calls("make")
    assert make["args"] == ["test"] and make["env"]["GITHUB_JOB"] == "test"
    assert [c["args"] for c in run.calls("actions/setup-python")] == [["python-version=3.11"]]


# plan ----------------------------------------------------------------------------------------


FORK_PR = {"pull_request": {"number": 8, "head": {"repo": {"full_name": "mallory/todo-api"}},
                            "user": {"login": "mallory"}}}
DEPENDABOT_PR = {"pull_request": {"number": 9, "head": {"repo": {"full_name": "contoso/todo-api"}},
                                  "user": {"login": "dependabot[bot]"}}}


def comments_by_stack(world, number: int = 7) -> dict[str, str]:
    return {c["body"].split("\n", 1)[0].split(":")[1].split(" ")[0]: c["body"]
            for c in world.github.comments.get(number, [])}


@pytest.fixture(scope="module")
def plan_runs(world) -> list[tuple[Run, dict[str, str]]]:
    """Three pushes to PR 7 (a branch of this repository): a plan, a plan with one update, a
    plan that fails; with PR 7's comments after each."""
    runs = []
    for plan_name, fails in (("mixed", False), ("update", False), ("update", True)):
        scenario = world.scenario(plan_name)
        scenario["stacks"] = {name: {**stack, "plan_fails": fails}
                              for name, stack in scenario["stacks"].items()}
        run = world.rehearsal.run("plan", "pull_request", scenario, payload=PR)
        runs.append((run, comments_by_stack(world)))
    return runs


def test_every_plan_job_succeeds(plan_runs):
    for run, _ in plan_runs[:2]:
        run.assert_green()


def test_pull_requests_plan_dev_only_with_devs_plan_identity(plan_runs):
    """Whatever a pull request's token reaches, any writer can read: dev only."""
    run, _ = plan_runs[0]
    [plan] = terraform_calls(run, "plan")
    assert plan["stack"] == "todo-api-dev" and plan["cwd"].endswith("cdktf.out/stacks/todo-api-dev")
    assert "-lock=false" in plan["args"]
    assert {(c["identity"], c["subscription"]) for c in run.calls("terraform")} == {
        (PLAN_DEV, DEV_SUBSCRIPTION)}


def test_plan_comment_is_posted_once_and_updated_in_place(world, plan_runs):
    comment_calls = [m for m, path in world.github.calls
                     if "/issues/7/" in path + "/" and "/labels" not in path
                     or "/issues/comments/" in path]
    assert comment_calls == ["POST", "PATCH", "PATCH"]
    assert "| 0 | 1 | 0 | 0 |" in plan_runs[1][1]["todo-api-dev"]  # the second plan
    assert sorted(plan_runs[0][1]) == ["todo-api-dev"]


def test_the_pr_is_labelled_with_the_latest_kind_of_change(world, plan_runs):
    assert sorted(world.github.labels[7]) == ["plan/todo-api-dev: failed"]


def test_a_failed_plan_replaces_the_stale_comment(world, plan_runs):
    run, comments = plan_runs[2]
    assert [f.split(": ")[:2] for f in run.steps_failed()] == [
        ["plan/plan todo-api-dev", "Main terraform plan"]]
    assert ":x: failed" in comments["todo-api-dev"]


def test_plan_artifacts_never_hold_the_json_plan(plan_runs):
    artifacts = plan_runs[0][0].state / "artifacts"
    assert sorted(p.name for p in (artifacts / "plan-todo-api-dev").iterdir()) == ["plan.txt"]


@pytest.fixture(scope="module")
def other_pr_runs(world) -> dict[str, Run]:
    """A pull request from a fork, and one from Dependabot, side by side."""
    cases = {"fork": (FORK_PR, None), "dependabot": (DEPENDABOT_PR, "dependabot[bot]")}
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {name: pool.submit(world.rehearsal.run, "plan", "pull_request",
                                     world.scenario(), payload=payload, actor=actor)
                   for name, (payload, actor) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def test_a_fork_pull_request_stops_after_synth_with_no_token_and_no_comment(world,
                                                                            other_pr_runs):
    run = other_pr_runs["fork"]
    run.assert_green()
    assert run.job_succeeded("synth, checkov, diagram")
    assert run.calls("terraform") == [] and run.calls("azure/login") == []
    assert 8 not in world.github.comments


def test_a_dependabot_pull_request_gets_a_clear_skipped_comment_not_a_red_plan(world,
                                                                              other_pr_runs):
    run = other_pr_runs["dependabot"]
    run.assert_green()
    assert run.calls("terraform") == []
    [comment] = world.github.comments[9]
    assert "skipped" in comment["body"] and "Dependabot pull requests get no Azure token" in (
        comment["body"])
    assert world.github.labels[9] == ["plan/todo-api-dev: skipped"]


# deploy --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deploy_run(world) -> Run:
    return world.rehearsal.run("deploy", "push", world.scenario("mixed"))


def test_every_deploy_job_succeeds(deploy_run):
    deploy_run.assert_green()


def test_deploy_applies_exactly_the_plan_it_made_from_the_stack_folder(deploy_run):
    [made] = terraform_calls(deploy_run, "plan")
    [applied] = terraform_calls(deploy_run, "apply")
    assert applied["plan_id"] == made["plan_id"]
    assert (made["env"]["GITHUB_JOB"], applied["env"]["GITHUB_JOB"]) == ("plan", "apply")
    for call in (made, applied):
        assert call["cwd"].endswith("cdktf.out/stacks/todo-api-dev")
    # planned read-only before the gate, applied by the environment's deploy identity after it
    assert (made["identity"], applied["identity"]) == (PLAN_DEV, DEPLOY_DEV)


def test_deploy_hands_the_plan_on_encrypted(deploy_run):
    [bundle] = (deploy_run.state / "artifacts" / "plan-bundle").iterdir()
    assert b"rehearsal_plan" not in bundle.read_bytes()


@pytest.fixture(scope="module")
def other_deploy_runs(world, deploy_run) -> dict[str, Run]:
    """Side by side, each against its own gateway, after `deploy_run` put this commit's package
    on dev: prod by hand, a dev deploy whose state another apply changed between its plan and
    its apply, stateful deletions refused and allowed (the allowed one finds dev already running
    this package), a run from a branch, a dev release whose new package fails its smoke test in
    production after the swap, and prod by hand in a repository where dev never ran this commit
    (its own fake GitHub API)."""
    def stale(scenario):
        for stack in scenario["stacks"].values():
            stack["applied_elsewhere_after_plan"] = True
        return scenario
    def deletes_the_store(scenario):
        for stack in scenario["stacks"].values():
            stack["plan"]["resource_changes"].append(COSMOS_DELETE)
        return scenario
    cases = {
        "prod": (lambda s: s, "workflow_dispatch", {"environment": "prod"}, None),
        "stale": (stale, "push", None, None),
        # A plan that destroys the Cosmos DB account: refused on a push, applied only when the
        # run was started by hand with allow-stateful-changes.
        "stateful": (deletes_the_store, "push", None, None),
        "stateful allowed": (deletes_the_store, "workflow_dispatch",
                             {"environment": "dev", "allow-stateful-changes": "true"}, None),
        # Run workflow from a branch other than main: prod-plan's branch policy refuses it.
        "branch": (lambda s: s, "workflow_dispatch", {"environment": "prod"},
                   {"ref": "refs/heads/feature"}),
        "fails after swap": (lambda s: {**s, "new_package_fails": "after_swap"},
                             "workflow_dispatch", {"environment": "dev"}, None),
        "prod not green in dev": (lambda s: s, "workflow_dispatch", {"environment": "prod"}, None),
        "redeploy": (lambda s: s, "workflow_dispatch",
                     {"environment": "dev", "redeploy-app": "true"}, None),
        # The apply's certificate tool dies (SIGKILL: a cancelled job) with prod's private
        # vault open to the runner, before its own cleanup.
        "prod killed mid-certificate": (
            lambda s: {**s, "key_vault": {**s["key_vault"], "kills_tool_at": "certificate create"}},
            "workflow_dispatch", {"environment": "prod"}, None),
    }
    fresh = FakeGitHub()  # a repository whose dev environment never ran anything
    gateways = {name: Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
                for name in cases}
    try:
        with serving(fresh) as fresh_url, ThreadPoolExecutor(len(cases)) as pool:
            futures = {
                name: pool.submit(world.rehearsal.run, "deploy", event,
                                  change(world.scenario("mixed", gateway=gateways[name])),
                                  inputs=inputs, payload=payload,
                                  gateway=gateways[name],
                                  github_url=fresh_url if name in FRESH_REPOSITORY else None)
                for name, (change, event, inputs, payload) in cases.items()}
            return {name: future.result() for name, future in futures.items()}
    finally:
        for gateway in gateways.values():
            gateway.close()


def test_prod_is_planned_and_applied_in_prods_subscription_and_state(other_deploy_runs):
    run = other_deploy_runs["prod"]
    run.assert_green()
    inits = {c["env"]["GITHUB_JOB"]: c for c in terraform_calls(run, "init")}
    assert sorted(inits) == ["apply", "plan", "rollout"]
    [made], [applied] = terraform_calls(run, "plan"), terraform_calls(run, "apply")
    assert made["plan_id"] == applied["plan_id"] and applied["stack"] == "todo-api-prod"
    assert (made["identity"], applied["identity"]) == (PLAN_PROD, DEPLOY_PROD)
    for call in (*inits.values(), made, applied):
        assert call["subscription"] == PROD_SUBSCRIPTION
    for job in ("apply", "rollout"):
        assert "-backend-config=container_name=tfstate-prod" in inits[job]["args"]


def vault_calls(run: Run, vault: str) -> list[tuple[str, str, str]]:
    """(job, command, verb) of every `az keyvault` call on `vault`, in order."""
    return [(c["env"]["GITHUB_JOB"], c["args"][1], c["args"][2]) for c in run.calls("az")
            if c["args"][0] == "keyvault" and c.get("vault") == vault]


def final_vault(run: Run, vault: str) -> dict:
    return json.loads((run.state / "azure.json").read_text())["key_vaults"][vault]


def test_prods_private_vault_is_opened_only_by_the_deploy_identity_and_always_closed(
        other_deploy_runs):
    """Prod ships network.mode private: its vault denies every address. The plan job (read-only
    identity) never touches the vault; the apply's certificate tool and the rollout's release
    each open it to the runner for their own calls, as the deploy identity, and close it."""
    run = other_deploy_runs["prod"]
    run.assert_green()
    vault = "todo-api-prod-kv"
    calls = vault_calls(run, vault)
    assert {job for job, *_ in calls} == {"apply", "rollout"}  # the plan job: none
    for job in ("apply", "rollout"):
        verbs = [(command, verb) for j, command, verb in calls if j == job]
        rules = [verb for command, verb in verbs if command == "network-rule"]
        assert rules == ["add", "remove"], (job, verbs)
        opened, closed = verbs.index(("network-rule", "add")), verbs.index(("network-rule", "remove"))
        data_plane = [i for i, (command, _) in enumerate(verbs)
                      if command in ("certificate", "secret")]
        assert data_plane and opened < min(data_plane) and max(data_plane) < closed, verbs
    openings = [c for c in run.calls("az") if c["args"][:3] == ["keyvault", "network-rule", "add"]]
    assert {c["identity"] for c in openings} == {DEPLOY_PROD}
    assert {c["args"][c["args"].index("--ip-address") + 1] for c in openings} == {
        f"{RUNNER_IP}/32"}
    state = final_vault(run, vault)
    assert state["default_action"] == "Deny" and state["ip_rules"] == []
    assert set(state["certificates"]) == {"apim-client-certificate"}
    assert "apim-client-certificate-public" in state["secrets"]
    assert "nothing to close" in run.log  # the always-steps found the tool had closed it


def test_a_cancelled_apply_leaves_prods_vault_closed_by_the_always_step(other_deploy_runs):
    """The tool is killed (SIGKILL) while the vault is open to the runner: its own cleanup never
    runs; the apply fails, and the job's always-step removes the rule from the tool's record."""
    run = other_deploy_runs["prod killed mid-certificate"]
    failed = run.steps_failed()
    assert failed and all("apply" in f for f in failed), failed
    assert "terraform apply" in " ".join(failed)
    calls = vault_calls(run, "todo-api-prod-kv")
    rules = [(job, verb) for job, command, verb in calls if command == "network-rule"]
    assert rules == [("apply", "add"), ("apply", "remove")]
    assert "Success - Main Close the Key Vault opened to this runner (always)" in run.log
    assert final_vault(run, "todo-api-prod-kv")["ip_rules"] == []
    assert not [c for c in run.calls("az") if c["env"]["GITHUB_JOB"] == "rollout"]


def test_prod_cannot_be_planned_from_a_branch(other_deploy_runs):
    """workflow_dispatch from a branch: the prod-plan environment allows main only, so the
    job gets no prod token, reads no prod state and plans nothing."""
    run = other_deploy_runs["branch"]
    failures = run.steps_failed()
    assert failures and 'Branch "refs/heads/feature" is not allowed to deploy to prod-plan' in (
        failures[0])
    assert terraform_calls(run, "plan") == [] and terraform_calls(run, "apply") == []
    assert not run.job_succeeded("apply prod")


# Runs against a repository where dev never ran this commit: the failing release must not find
# dev already running its package, and prod must find no evidence.
FRESH_REPOSITORY = ("fails after swap", "prod not green in dev")

COSMOS_DELETE = {
    "address": "azurerm_cosmosdb_account.data_store_account",
    "type": "azurerm_cosmosdb_account",
    "name": "data_store_account",
    "mode": "managed",
    "change": {"actions": ["delete"], "before": {"name": "todo-api-dev-cosmos"}, "after": None},
}


def test_a_plan_deleting_a_stateful_resource_is_refused_without_the_override(other_deploy_runs):
    run = other_deploy_runs["stateful"]
    [failure] = run.steps_failed()
    assert "Plan summary (what the reviewer approves)" in failure
    assert "azurerm_cosmosdb_account.data_store_account" in failure
    assert terraform_calls(run, "apply") == []
    assert not [c for c in run.calls("az") if c["args"][:2] == ["webapp", "deploy"]]


def test_the_override_input_lets_a_stateful_deletion_through(other_deploy_runs):
    run = other_deploy_runs["stateful allowed"]
    run.assert_green()
    [applied] = terraform_calls(run, "apply")
    assert applied["stack"] == "todo-api-dev"


def test_a_stale_plan_is_refused_and_nothing_is_deployed(other_deploy_runs):
    run = other_deploy_runs["stale"]
    [failure] = run.steps_failed()
    assert "Main terraform apply (exactly the saved plan)" in failure
    assert "Saved plan is stale" in failure
    assert not [c for c in run.calls("az") if c["args"][:2] == ["webapp", "deploy"]]


def package_digest(run: Run) -> str:
    package = run.state / "artifacts" / "app-package" / "todo-api-app.zip"
    return hashlib.sha256(package.read_bytes()).hexdigest()


def release_steps(run: Run) -> list[tuple[str, str]]:
    """(what, web app) of each slot deploy and swap, in order."""
    steps = []
    for call in run.calls("az"):
        if call["args"][:2] == ["webapp", "deploy"]:
            steps.append((f"deploy to {call['slot'] or 'production'}", call["app"]))
        elif call["args"][:4] == ["webapp", "deployment", "slot", "swap"]:
            steps.append(("swap", call["app"]))
    return steps


def slots(run: Run) -> dict:
    return json.loads((run.state / "azure.json").read_text())["slots"]


def test_dev_rolls_out_region_by_region_through_the_staging_slots(deploy_run):
    assert release_steps(deploy_run) == [
        ("deploy to staging", "app-neu"), ("swap", "app-neu"),
        ("deploy to staging", "app-weu"), ("swap", "app-weu")]
    digest = package_digest(deploy_run)
    assert {app: s["production"] for app, s in slots(deploy_run).items()} == {
        "app-neu": digest, "app-weu": digest}
    assert "| app-neu | smoke staging |" in deploy_run.log
    assert "| app-weu | bake |" in deploy_run.log and "Rolled out to every region." in deploy_run.log


def test_the_rollout_job_is_a_job_of_its_own_after_the_apply(deploy_run):
    [applied] = terraform_calls(deploy_run, "apply")
    outputs = [c for c in terraform_calls(deploy_run, "output")]
    assert applied["env"]["GITHUB_JOB"] == "apply"
    assert outputs and {c["env"]["GITHUB_JOB"] for c in outputs} == {"rollout"}
    assert {c["identity"] for c in outputs} == {DEPLOY_DEV}


def test_the_rollout_smokes_each_slot_through_its_own_address(world, deploy_run):
    """Each slot of each region: health, then a created item read, updated and deleted; the
    driver checks every answer's site name (a slot answering as another fails the smoke)."""
    secret_reads = [c for c in deploy_run.calls("az") if c["args"][:3] == ["keyvault", "secret",
                                                                           "show"]
                    and c["env"]["GITHUB_JOB"] == "rollout"]
    assert [(c["identity"], c["vault"]) for c in secret_reads] == [(DEPLOY_DEV, "todo-api-dev-kv")]
    for site in ("app-neu-staging", "app-neu", "app-weu-staging", "app-weu"):
        seen = {(m, p.split("/")[-1] if m != "POST" else "", s) for m, p, s in world.gateway.calls
                if p.startswith(f"/sites/{site}/")}
        assert ("GET", "health-key-0123456789", 200) in seen, site
        assert ("POST", "", 201) in seen and any(m == "DELETE" and s == 204 for m, _, s in seen)


def test_deploy_runs_the_smoke_checks_through_the_gateway(world, deploy_run):
    assert "ok   gateway" in deploy_run.log
    todo = f"/{raw_outputs()['api_path']['value']}/api/TodoItem"
    assert {(m, p, s) for m, p, s in world.gateway.calls if p == todo} >= {
        ("GET", todo, 200), ("GET", todo, 401)}


def test_the_rollout_closes_every_site_it_opened(deploy_run):
    azure = json.loads((deploy_run.state / "azure.json").read_text())
    assert set(azure["scm_rules"]) == {"app-neu/staging", "app-weu/staging"}
    assert all(rules == [] for rules in azure["scm_rules"].values())
    assert set(azure["access_rules"]) == {"app-neu", "app-neu/staging", "app-weu",
                                          "app-weu/staging"}
    assert all(rules == [] for rules in azure["access_rules"].values())


def test_the_rollout_is_recorded_as_a_github_deployment(world, deploy_run):
    digest = package_digest(deploy_run)
    [(sha, recorded, states)] = [d for d in world.github.deployment_statuses("dev")
                                 if d[1] == digest][:1]
    assert recorded == digest and len(sha) == 40
    assert states[:2] == ["in_progress", "success"]


def test_a_package_failing_after_the_swap_is_swapped_back_and_the_rollout_stops(
        other_deploy_runs):
    run = other_deploy_runs["fails after swap"]
    [failure] = run.steps_failed()
    assert "Roll the app out" in failure
    # the first region swapped and swapped back; the second region never touched
    assert release_steps(run) == [("deploy to staging", "app-neu"), ("swap", "app-neu"),
                                  ("swap", "app-neu")]
    assert {app: s["production"] for app, s in slots(run).items()} == {"app-neu": "initial"}
    assert "Stopped** in app-neu (swapped back)" in run.log
    assert "POST /api/TodoItem: expected 201, got 500" in run.log
    azure = json.loads((run.state / "azure.json").read_text())
    assert all(rules == [] for rules in azure["access_rules"].values())


def test_prod_refuses_a_commit_whose_package_never_went_green_in_dev(other_deploy_runs):
    run = other_deploy_runs["prod not green in dev"]
    [failure] = run.steps_failed()
    assert "never went green in dev: deploy it to dev first" in failure
    assert release_steps(run) == []
    assert terraform_calls(run, "apply")  # the infrastructure went ahead; the app did not


def test_prod_takes_the_package_that_went_green_in_dev_and_says_so(world, other_deploy_runs):
    run = other_deploy_runs["prod"]
    assert "Promotion: this exact package went green in dev" in run.log
    assert [s for s, _ in release_steps(run)] == ["deploy to staging", "swap"] * 2
    [(_, digest, states)] = world.github.deployment_statuses("prod")
    assert digest == package_digest(run) and states[-1] == "success"


def test_a_rollout_of_the_package_the_environment_runs_restarts_nothing(other_deploy_runs):
    run = other_deploy_runs["stateful allowed"]  # dev, after deploy_run put this package there
    assert "dev already runs this package" in run.log and "nothing restarted" in run.log
    assert release_steps(run) == []


def test_redeploy_app_rolls_the_same_package_out_again(other_deploy_runs):
    run = other_deploy_runs["redeploy"]
    run.assert_green()
    assert "already runs this package" not in run.log
    assert [s for s, _ in release_steps(run)] == ["deploy to staging", "swap"] * 2


# drift ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drift_runs(world) -> list[tuple[Run, list[dict]]]:
    """Three nights: drift, still drift, in sync; the open drift issues after each."""
    nights = []
    for exitcode in (2, 2, 0):
        # A nightly plan refreshes a state that holds every resource (a plan after an apply).
        scenario = world.scenario("update", exitcode, state_holds_resources=True)
        run = world.rehearsal.run("drift", "schedule", scenario)
        nights.append((run, [dict(i) for i in world.github.issues]))
    return nights


def test_every_drift_job_succeeds(drift_runs):
    for run, _ in drift_runs:
        run.assert_green()


def test_drift_opens_updates_and_closes_one_issue(drift_runs):
    states = [[(i["number"], i["state"]) for i in issues] for _, issues in drift_runs]
    [(number, _)] = states[0]
    assert states == [[(number, "open")], [(number, "open")], [(number, "closed")]]


def test_drift_plans_each_stack_read_only(drift_runs):
    run, _ = drift_runs[0]
    plans = terraform_calls(run, "plan")
    assert sorted(c["stack"] for c in plans) == sorted(STACKS)
    assert all("-detailed-exitcode" in c["args"] and "-lock=false" in c["args"]
               and c["identity"] == {"todo-api-dev": PLAN_DEV, "todo-api-prod": PLAN_PROD}[c["stack"]]
               for c in plans)


# load test -----------------------------------------------------------------------------------

LOAD = {"environment": "dev", "users": "2", "duration": "30", "failover": "true",
        "database_failover": "false"}
DATABASE_LOAD = {**LOAD, "failover": "false", "database_failover": "true"}
# A Chaos Studio drill on the runner: 30 s warm-up (the least), the experiment's 10 s, 60 s
# after it.
CHAOS_LOAD = {**LOAD, "failover": "false", "fault": "region-outage-primary", "engine": "runner",
              "warm_up": "30", "duration": "100"}
EXPERIMENTS = f"/subscriptions/{DEV_SUBSCRIPTION}/resourceGroups/rg-global/providers/Microsoft.Chaos/experiments"
CHAOS_EXPERIMENTS = {
    "region-outage-primary": {"id": f"{EXPERIMENTS}/todo-dev-outage-weu",
                              "name": "todo-dev-outage-weu", "duration_seconds": 10},
    "vault-deny": {"id": f"{EXPERIMENTS}/todo-dev-vault-deny", "name": "todo-dev-vault-deny",
                   "duration_seconds": 10},
}


ALT_LOAD = {**CHAOS_LOAD, "engine": "azure-load-testing", "engines": "1"}
LOAD_TEST = {"name": "todo-dev-lt", "resource_group": "rg-global"}
KEY_SECRET = "gateway-subscription-key"


def chaos_scenario(world, gateway, fault_seconds=10, alt_run_fails=None, **chaos) -> dict:
    """The stack with its experiments (the region outage stops the primary web app) and its
    Azure Load Testing resource, whose tests read the subscription key from the vault."""
    scenario = world.scenario(gateway=gateway)
    outputs = {key: {**value, "duration_seconds": fault_seconds}
               for key, value in CHAOS_EXPERIMENTS.items()}
    extra = {
        "chaos_experiments": outputs,
        "load_test_name": LOAD_TEST["name"],
        "load_test_resource_group_name": LOAD_TEST["resource_group"],
        "load_test_secrets": {"LOCUST_SUBSCRIPTION_KEY":
                              f"https://{KEY_VAULT['name']}.vault.azure.net/secrets/{KEY_SECRET}"},
    }
    for stack in scenario["stacks"].values():
        stack["outputs"] = {**stack["outputs"], **{
            name: {"sensitive": False, "type": "x", "value": value}
            for name, value in extra.items()}}
    experiments = {key: dict(value) for key, value in outputs.items()}
    experiments["region-outage-primary"]["stops"] = WEB_APPS[0]["name"]
    return {**scenario, "chaos": {"experiments": experiments, **chaos},
            "load_test": {**LOAD_TEST, "alt_run_fails": alt_run_fails},
            "key_vault": {**scenario["key_vault"], "secrets": {KEY_SECRET: SUBSCRIPTION_KEY}}}


def app_events(run: Run) -> list[tuple[str, str]]:
    return [(c["args"][1], c["app"]) for c in run.calls("az")
            if c["args"][:2] in (["webapp", "stop"], ["webapp", "start"])]


@pytest.fixture(scope="module")
def load_runs(world) -> dict[str, Run]:
    """Three load-test runs side by side (Locust mostly waits), each against its own gateway:
    the web app drill, the same drill whose load test dies (SIGKILL) the moment the primary
    stops, and the database failover drill."""
    cases = {
        "drill": ({}, LOAD),
        "crashed drill": ({"crash_load_test_on_stop": True}, LOAD),
        "database drill": ({}, DATABASE_LOAD),
        "chaos drill": ({"chaos": {}}, CHAOS_LOAD),
        "chaos start fails": ({"chaos": {"fails_to_start": True}}, CHAOS_LOAD),
        # a fault long enough that only a cancel ends it before the always-step looks
        "runner dies mid-fault": ({"chaos": {"kill_drill_on_start": True, "fault_seconds": 120}},
                                  {**CHAOS_LOAD, "duration": "300"}),
        "azure load testing drill": ({"chaos": {}}, ALT_LOAD),
        "azure load testing run fails": ({"chaos": {"alt_run_fails": "VALIDATION_FAILURE"}},
                                         ALT_LOAD),
        "runner dies mid-fault on azure load testing": (
            {"chaos": {"kill_drill_on_start": True, "fault_seconds": 120}},
            {**ALT_LOAD, "duration": "300"}),
    }
    gateways = {name: Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
                for name in cases}

    def scenario(name, extra):
        if "chaos" in extra:
            return chaos_scenario(world, gateways[name], **extra["chaos"])
        return {**world.scenario(gateway=gateways[name]), **extra}

    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {
                name: pool.submit(world.rehearsal.run, "load-test", "workflow_dispatch",
                                  scenario(name, extra), inputs=inputs, gateway=gateways[name])
                for name, (extra, inputs) in cases.items()}
            return {name: future.result() for name, future in futures.items()}
    finally:
        for gateway in gateways.values():
            gateway.close()


def reports(run: Run) -> Path:
    return next((run.state / "artifacts").glob("load-test-dev-*"))


def test_failover_drill_succeeds_and_uploads_the_reports(load_runs):
    run = load_runs["drill"]
    run.assert_green()
    report = json.loads((reports(run) / "summary.json").read_text())
    assert report["scenario"] == "failover" and report["failover"]["recovery_s"] is not None


def test_failover_drill_restarts_what_it_stopped(load_runs):
    run = load_runs["drill"]
    events = app_events(run)
    assert events[0] == ("stop", "app-weu") and events[-1] == ("start", "app-weu")
    assert json.loads((run.state / "azure.json").read_text())["stopped"] == []


def test_failover_drill_restarts_the_primary_when_the_load_test_fails(load_runs):
    run = load_runs["crashed drill"]
    assert [f.split(": ")[1] for f in run.steps_failed()] == ["Main Run the load test"]
    assert app_events(run)[0] == ("stop", "app-weu")
    # restarted twice: by tools.operations.load_test itself, then by the always-step
    assert app_events(run)[1:] == [("start", "app-weu"), ("start", "app-weu")]
    assert json.loads((run.state / "azure.json").read_text())["stopped"] == []


def cosmos_calls(run: Run) -> list[tuple[str, ...]]:
    return [tuple(a for a in c["args"][:2] + [x for x in c["args"] if "=" in x])
            + ((c["args"][c["args"].index("--enable-automatic-failover") + 1],)
               if "--enable-automatic-failover" in c["args"] else ())
            for c in run.calls("az") if c["args"][0] == "cosmosdb" and c["args"][1] != "show"]


def test_database_drill_moves_the_write_region_and_back(load_runs):
    run = load_runs["database drill"]
    run.assert_green()
    primary, secondary = COSMOS_OUTPUTS["cosmos_regions"]
    assert cosmos_calls(run)[:5] == [
        ("cosmosdb", "update", "false"),
        ("cosmosdb", "failover-priority-change", f"{secondary}=0", f"{primary}=1"),
        ("cosmosdb", "failover-priority-change", f"{primary}=0", f"{secondary}=1"),
        ("cosmosdb", "update", "true"),
        ("cosmosdb", "update", "true"),  # the always-step found it home and confirmed
    ]
    cosmos = json.loads((run.state / "azure.json").read_text())["cosmos"]
    assert (cosmos["write"], cosmos["automatic_failover"]) == (primary, True)


def test_database_drill_reports_items_lost_and_the_write_pause(load_runs):
    result = json.loads((reports(load_runs["database drill"]) / "database-failover.json").read_text())
    assert result["items_lost"] == 0
    assert result["seconds_without_successful_writes"] > 0  # writes paused while it moved


def test_each_drill_links_the_failover_workbook_for_its_window(load_runs):
    for name in ("drill", "database drill"):
        run = load_runs[name]
        assert "Success - Main Link the failover workbook (drills only)" in run.log, name
    # A drill that died before its summary has no window to link: the step is skipped.
    assert "Main Link the failover workbook" not in load_runs["crashed drill"].log


def chaos_calls(run: Run) -> list[str]:
    return [c["chaos"] for c in run.calls("az") if c.get("chaos") in ("start", "cancel")]


def test_a_chaos_drill_stops_the_primary_for_the_experiments_duration_and_measures_it(load_runs):
    run = load_runs["chaos drill"]
    run.assert_green()
    report = json.loads((reports(run) / "summary.json").read_text())
    assert report["scenario"] == "failover" and report["failover"]["recovery_s"] is not None
    # after the warm-up: 30 s from Locust's start, whose first requests come a few seconds later
    assert report["fault_at_s"] > 20
    # the experiment ended by itself: nothing to cancel in the always-step
    assert chaos_calls(run) == ["start"]
    assert "nothing running, nothing to cancel" in run.log
    starts = [c for c in run.calls("az") if c.get("chaos") == "start"]
    assert [c["identity"] for c in starts] == [DEPLOY_DEV]


def test_a_chaos_start_that_fails_fails_the_drill_and_names_it(load_runs):
    run = load_runs["chaos start fails"]
    [failure] = run.steps_failed()
    assert "Main Run the load test" in failure
    assert "did not start" in run.log and "ended failed" in run.log
    assert "the fault did not happen as planned" in run.log


def test_when_the_runner_dies_mid_fault_the_always_step_cancels_the_experiment(load_runs):
    run = load_runs["runner dies mid-fault"]
    assert [f.split(": ")[1] for f in run.steps_failed()] == ["Main Run the load test"]
    assert chaos_calls(run) == ["start", "cancel"]
    assert "Success - Main Cancel the Chaos Studio experiment" in run.log
    # the relogin ran before it: a long drill outlives its OIDC login
    log = run.log
    assert log.index("Log in to Azure again") < log.index("Cancel the Chaos Studio experiment")


def load_calls(run: Run) -> list[str]:
    return [" ".join(c["load"]) for c in run.calls("az") if c.get("load")]


def test_a_drill_on_azure_load_testing_runs_our_locustfile_on_its_engines(load_runs):
    run = load_runs["azure load testing drill"]
    run.assert_green()
    calls = load_calls(run)
    assert calls[:3] == ["test create", "test-run create", "test-run show"]
    # the results downloaded; then the always-step finds the run over
    assert calls[-2:] == ["test-run download-files", "test-run show"]
    assert "already ended (DONE): nothing to stop" in run.log
    # the engine ran the uploaded files (the locustfile and its support zip), outside the
    # repository, with the key resolved from the vault: its requests reached the gateway
    engine = next(run.state.glob("alt/runs/*/engine-0"))
    assert (engine / "locustfile_failover.py").is_file() and "support" in " ".join(
        p.name for p in engine.iterdir())
    report = json.loads((reports(run) / "summary.json").read_text())
    assert report["requests"] > 0 and report["failover"]["recovery_s"] is not None
    assert report["fault_at_s"] > 20  # once executing, after the warm-up
    assert "verdict on its failure criteria: PASSED" in run.log
    assert chaos_calls(run) == ["start"]
    assert {c["identity"] for c in run.calls("az") if c.get("load")} == {DEPLOY_DEV}


def test_a_test_run_that_fails_validation_starts_no_fault(load_runs):
    run = load_runs["azure load testing run fails"]
    [failure] = run.steps_failed()
    assert "Main Run the load test" in failure
    assert "ended VALIDATION_FAILURE before executing" in run.log
    assert chaos_calls(run) == []


def test_when_the_runner_dies_the_always_steps_stop_the_engines_and_cancel_the_fault(load_runs):
    run = load_runs["runner dies mid-fault on azure load testing"]
    assert [f.split(": ")[1] for f in run.steps_failed()] == ["Main Run the load test"]
    assert chaos_calls(run) == ["start", "cancel"]
    assert "Success - Main Stop the Azure Load Testing run" in run.log
    assert load_calls(run)[-2:] == ["test-run show", "test-run stop"]
    assert "stopped (it was EXECUTING)" in run.log
    [state] = json.loads((run.state / "azure.json").read_text())["alt_runs"].values()
    assert state["status"] == "CANCELLED"


# prod on auth.mode = "entra" -----------------------------------------------------------------
# config/prod.toml ships "entra". The runs above take their outputs from the scenario, which
# names no identifier URI, so their smoke checks and load send no token; this is the delivery
# with the token path whole: a copy of the repository (a commit of its own), a bootstrap
# synthesized from the shipped files (its graph_consent taken as consented), outputs naming the
# API's identifier URI, and a local issuer standing for Entra ID whose key the fake az signs
# with and the fake gateway and slots trust.

API_URI = "api://6f0d3c2a-1b4e-4d5f-8a9b-0c1d2e3f4a5b"
ENTRA_LOAD = {**LOAD, "environment": "prod", "failover": "false"}  # a throughput run
# ... and on Azure Load Testing: its engines call the API as the stack's engine identity
ENTRA_ALT_LOAD = {**ENTRA_LOAD, "engine": "azure-load-testing", "engines": "1", "fault": "none"}
ENGINE_IDENTITY = {
    "id": f"/subscriptions/{PROD_SUBSCRIPTION}/resourceGroups/rg-global/providers"
          "/Microsoft.ManagedIdentity/userAssignedIdentities/todo-api-prod-lt-engine-id",
    "client_id": "5b2e9c47-8d1a-4f63-b0e5-7c3a9d2f1e86",
    "principal_id": "0c7f3a91-6e2d-4b58-9a14-e8d5c2b7f039"}


@pytest.fixture(scope="module")
def entra_prod_run(world, deploy_run, tmp_path_factory):
    """prod deployed by hand from the copy; its GitHub API (a repository of its own) says the
    copy's commit went green in dev with the package `deploy_run` built (the same app/, so the
    same package: the dev deploy itself is rehearsed above). Beside it, side by side, a load
    test of prod from the copy against a gateway of its own (its outputs name the API's
    identifier URI), and one on Azure Load Testing (the resource holding the stack's engine
    identity, its outputs naming it). {"deploy" | "load" | "alt": (run, its gateway)}."""
    import subprocess

    from stacks.synth import synthesize
    from tools.delivery import deployments

    workdir = tmp_path_factory.mktemp("rehearsal-entra")
    configs = [load_environment("dev"), load_environment("prod")]
    assert configs[1].auth.entra  # prod's own file
    written = synthesize(configs, workdir / "synth", bootstrap=load_bootstrap())
    [bootstrap] = [p for p in written if p.parent.name == "todo-api-bootstrap"]
    world_json = write_world(bootstrap, workdir / "world.json")
    source = prepare_source(workdir / "src")
    key = new_signing_key(workdir, "rehearsal-entra")
    gateway = Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
    load_gateway = Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
    alt_gateway = Gateway(raw_outputs()["api_path"]["value"], SUBSCRIPTION_KEY)
    with LocalIssuer(key) as issuer:
        deploy_prod = next(i for i in world_json["identities"]
                           if i["name"] == "todo-api-github-deploy-prod")

        def entra_scenario(gateway: Gateway) -> dict:
            scenario = world.scenario("mixed", gateway=gateway)
            prod = json.loads(json.dumps(scenario["stacks"]["todo-api-prod"]))
            prod["outputs"]["api_identifier_uri"] = {"sensitive": False, "type": "string",
                                                     "value": API_URI}
            scenario["stacks"]["todo-api-prod"] = prod
            scenario["auth"] = {
                "environment": "prod", "issuer": issuer.issuer, "tenant_id": issuer.tenant_id,
                "openid_config_url": issuer.openid_config_url, "audience": API_URI,
                "clients": [deploy_prod["client_id"]],
                "key_file": str(workdir / "rehearsal-entra.pem"), "kid": key.kid}
            return scenario

        def alt_scenario(gateway: Gateway) -> dict:
            """prod's Azure Load Testing resource holding the engine identity, which the
            gateway admits (as the stack lists its client id)."""
            scenario = entra_scenario(gateway)
            secret = f"https://{scenario['key_vault']['name']}.vault.azure.net/secrets/{KEY_SECRET}"
            extra = {"load_test_name": LOAD_TEST["name"],
                     "load_test_resource_group_name": LOAD_TEST["resource_group"],
                     "load_test_secrets": {"LOCUST_SUBSCRIPTION_KEY": secret},
                     "load_test_engine_identity": {k: ENGINE_IDENTITY[k]
                                                   for k in ("id", "client_id")}}
            prod = scenario["stacks"]["todo-api-prod"]
            prod["outputs"] = {**prod["outputs"], **{
                name: {"sensitive": False, "type": "x", "value": value}
                for name, value in extra.items()}}
            scenario["auth"]["clients"].append(ENGINE_IDENTITY["client_id"])
            return {**scenario, "load_test": {**LOAD_TEST, "engine_identity": ENGINE_IDENTITY},
                    "key_vault": {**scenario["key_vault"],
                                  "secrets": {KEY_SECRET: SUBSCRIPTION_KEY}}}

        scenario = entra_scenario(gateway)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, check=True,
                                capture_output=True, text=True).stdout.strip()
        github = FakeGitHub()
        github.deployments.append({
            "id": github.new_id(), "sha": commit, "ref": commit, "task": deployments.TASK,
            "environment": "dev", "payload": {"package_sha256": package_digest(deploy_run)},
            "statuses": [{"state": "success"}]})
        try:
            with serving(github) as github_url, ThreadPoolExecutor(3) as pool:
                rehearsal = Rehearsal(source, workdir, github_url, gateway, workdir / "world.json")
                deploy = pool.submit(rehearsal.run, "deploy", "workflow_dispatch", scenario,
                                     gateway=gateway, inputs={"environment": "prod"})
                load = pool.submit(rehearsal.run, "load-test", "workflow_dispatch",
                                   entra_scenario(load_gateway), gateway=load_gateway,
                                   inputs=ENTRA_LOAD)
                alt = pool.submit(rehearsal.run, "load-test", "workflow_dispatch",
                                  alt_scenario(alt_gateway), gateway=alt_gateway,
                                  inputs=ENTRA_ALT_LOAD)
                yield {"deploy": (deploy.result(), gateway), "load": (load.result(), load_gateway),
                       "alt": (alt.result(), alt_gateway)}
        finally:
            gateway.close()
            load_gateway.close()
            alt_gateway.close()


def test_prod_on_entra_deploys_and_smokes_with_the_deploy_identitys_token(entra_prod_run):
    run, _ = entra_prod_run["deploy"]
    run.assert_green()
    tokens = [c for c in run.calls("az") if c["args"][:2] == ["account", "get-access-token"]]
    assert tokens and {(c["identity"], c["resource"]) for c in tokens} == {(DEPLOY_PROD, API_URI)}
    assert "ok   gateway" in run.log and "with key, without token" in run.log
    # the registrations were created by prod's deploy identity with its Graph permissions
    [applied] = terraform_calls(run, "apply")
    assert applied["identity"] == DEPLOY_PROD


def test_prod_on_entra_refuses_calls_without_a_token_at_the_gateway_and_the_slots(
        entra_prod_run):
    run, gateway = entra_prod_run["deploy"]
    gateway_calls = gateway.calls
    todo = f"/{raw_outputs()['api_path']['value']}/api/TodoItem"
    assert ("GET", todo, 401) in gateway_calls and ("GET", todo, 200) in gateway_calls
    for site in ("app-neu-staging", "app-neu", "app-weu-staging", "app-weu"):
        assert ("POST", 201) in {(m, s) for m, p, s in gateway_calls
                                 if p.startswith(f"/sites/{site}/")}, site
    assert "eyJ" not in run.log  # no token (a JWT's base64url header) in the job's log


def test_prod_on_entra_load_tests_with_the_job_identitys_token(entra_prod_run):
    """tools.operations.load_test asks az for the job identity's token (the deploy identity of
    prod, a caller of the API) and Locust's users send it: every call the gateway answered
    carried a valid token (a token-less one would be 401), and the load went through."""
    run, gateway = entra_prod_run["load"]
    run.assert_green()
    tokens = [c for c in run.calls("az") if c["args"][:2] == ["account", "get-access-token"]]
    assert tokens and {(c["identity"], c["resource"]) for c in tokens} == {(DEPLOY_PROD, API_URI)}
    todo = f"/{raw_outputs()['api_path']['value']}/api/TodoItem"
    answered = [status for method, path, status in gateway.calls if path.startswith(todo)]
    assert len(answered) > 10 and 401 not in answered and 403 not in answered
    assert "eyJ" not in run.log


def test_prod_on_entra_load_tests_on_azure_load_testing_as_the_engine_identity(entra_prod_run):
    """The test the drill puts names the resource's engine identity for its engines
    (referenceIdentities, kind Engine) and the token's resource; each engine asks its metadata
    service (fakes/imds.py), which answers for that identity only, with the app roles the job's
    synthesized stack assigns to it: every call the gateway answered carried its token. No token
    in the test, none asked of az, none in the log."""
    run, gateway = entra_prod_run["alt"]
    run.assert_green()
    [config_file] = run.state.glob("alt/tests/*/config.json")
    config = json.loads(config_file.read_text())
    assert {"kind": "Engine", "type": "UserAssigned",
            "value": ENGINE_IDENTITY["id"]} in config["referenceIdentities"]
    assert {"name": "LOCUST_TOKEN_RESOURCE", "value": API_URI} in config["env"]
    assert "eyJ" not in config_file.read_text()
    [imds_log] = run.state.glob("alt/runs/*/imds.log")
    assert imds_log.read_text().splitlines() == [f"200 {ENGINE_IDENTITY['client_id']}"]
    assert not [c for c in run.calls("az") if c["args"][:2] == ["account", "get-access-token"]]
    todo = f"/{raw_outputs()['api_path']['value']}/api/TodoItem"
    answered = [status for method, path, status in gateway.calls if path.startswith(todo)]
    assert len(answered) > 10 and 401 not in answered and 403 not in answered
    assert "eyJ" not in run.log
