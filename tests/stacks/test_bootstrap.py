"""The bootstrap stack is the permission model, synthesized: identities and their federated
subjects, roles and scopes, the state account, provider registrations, GitHub environments, the
`main` ruleset; and the model's own rule (nothing a pull request can obtain reaches prod)."""

from __future__ import annotations

import json
import re

import pytest

from stacks import permissions
from stacks.bootstrap_config import PLACEHOLDER_SUBSCRIPTIONS, BootstrapConfig, load_bootstrap
from stacks.config import ConfigError, load_environments
from stacks.permissions import PermissionModel, Subject
from tests.stacks.synthesized import blocks

DEV, PROD, STATE = (PLACEHOLDER_SUBSCRIPTIONS[k] for k in ("dev", "prod", "state"))
REPOSITORY = "contoso/todo-api"


@pytest.fixture(scope="module")
def bootstrap(synthesized_bootstrap_file) -> dict:
    return json.loads(synthesized_bootstrap_file.read_text())


@pytest.fixture(scope="module")
def model(synthesized_stacks) -> PermissionModel:
    by_environment: dict[str, set[str]] = {}
    for (environment, _), stack in synthesized_stacks.items():
        by_environment.setdefault(environment, set()).update(stack["resource"])
    return PermissionModel.of_environments(by_environment)


def identities(bootstrap) -> dict[str, str]:
    """{logical id: identity name}"""
    return {k: v["name"] for k, v in blocks(bootstrap, "azurerm_user_assigned_identity").items()}


def subjects_by_identity(bootstrap) -> dict[str, set[str]]:
    names = identities(bootstrap)
    found: dict[str, set[str]] = {name: set() for name in names.values()}
    for block in blocks(bootstrap, "azurerm_federated_identity_credential").values():
        logical_id = re.match(r"\$\{azurerm_user_assigned_identity\.([^.]+)\.id\}",
                              block["parent_id"])[1]
        found[names[logical_id]].add(block["subject"])
    return found


def grants_by_identity(bootstrap) -> dict[str, list[dict]]:
    names = identities(bootstrap)
    found: dict[str, list[dict]] = {name: [] for name in names.values()}
    for block in blocks(bootstrap, "azurerm_role_assignment").values():
        match = re.match(r"\$\{azurerm_user_assigned_identity\.([^.]+)\.principal_id\}",
                         block["principal_id"])
        if match:
            found[names[match[1]]].append(block)
    return found


# The rule ------------------------------------------------------------------------------------


def test_the_bootstrap_federates_exactly_the_models_subjects(bootstrap, model):
    expected = {i.name: {s.claim(REPOSITORY) for s in i.subjects} for i in model.identities}
    assert subjects_by_identity(bootstrap) == expected


def test_nothing_a_pull_request_can_obtain_reaches_prod(bootstrap):
    """No role in prod's subscription, no read on prod's state, for any identity federated to
    the pull_request subject."""
    grants = grants_by_identity(bootstrap)
    for name, subjects in subjects_by_identity(bootstrap).items():
        if f"repo:{REPOSITORY}:pull_request" not in subjects:
            continue
        for grant in grants[name]:
            assert PROD not in grant["scope"] and "tfstate-prod" not in grant["scope"], (name, grant)
            assert grant["provider"] != "azurerm.prod", (name, grant)


def test_only_devs_plan_identity_accepts_pull_requests(model):
    assert [i.key for i in model.identities if Subject("pull_request") in i.subjects] == [
        "plan-dev"]


def test_each_identity_holds_roles_in_its_own_subscription_and_container_only(bootstrap, model):
    for identity in model.identities:
        other = PROD if identity.environment == "dev" else DEV
        other_env = "prod" if identity.environment == "dev" else "dev"
        for grant in grants_by_identity(bootstrap)[identity.name]:
            assert other not in grant["scope"] and f"tfstate-{other_env}" not in grant["scope"]
            assert grant["provider"] != f"azurerm.{other_env}"


def test_no_deploy_identity_can_change_the_state_account(bootstrap):
    """In the state subscription an identity holds blob data on its own container, nothing on
    the account: it cannot turn shared keys back on or delete the account."""
    for name, grants in grants_by_identity(bootstrap).items():
        for grant in grants:
            if grant["provider"] == "azurerm.state":
                assert grant["scope"].startswith("${azurerm_storage_container."), (name, grant)
                assert grant["role_definition_name"].startswith("Storage Blob Data "), grant


def test_plan_identities_write_nothing(bootstrap, model):
    for role in blocks(bootstrap, "azurerm_role_definition").values():
        if not role["name"].startswith("todo-api plan "):
            continue  # the fault roles: tests/stacks/test_drills.py
        actions = role["permissions"][0]["actions"]
        assert not [a for a in actions if a.endswith(("/write", "/delete")) or a == "*"], actions
    for identity in model.identities:
        if identity.key.startswith("plan-"):
            roles = {g.role for g in identity.grants}
            assert roles == {f"todo-api plan {identity.environment}", "Storage Blob Data Reader"}


def test_the_rbac_administrator_may_assign_only_the_roles_its_stack_assigns(bootstrap):
    """Key Vault Administrator and Secrets User, Load Test Contributor, and its own
    environment's fault roles (the drills, tests/stacks/test_drills.py): nothing else."""
    conditioned = {b["provider"]: b for b in blocks(bootstrap, "azurerm_role_assignment").values()
                   if b.get("role_definition_name") == "Role Based Access Control Administrator"}
    assert set(conditioned) == {"azurerm.dev", "azurerm.prod"}
    for provider, block in conditioned.items():
        environment = provider.removeprefix("azurerm.")
        assert block["condition_version"] == "2.0"
        ids = set(re.findall(r"[0-9a-f-]{36}", block["condition"]))
        faults = {permissions.fault_role(f, environment).custom_id
                  for f in permissions.FAULT_PERMISSIONS}
        assert ids == {permissions.KEY_VAULT_ADMINISTRATOR, permissions.KEY_VAULT_SECRETS_USER,
                       permissions.LOAD_TEST_CONTRIBUTOR} | faults


# Plan roles from the resource types -------------------------------------------------------------


def test_the_plan_role_holds_each_refresh_action_of_the_stacks_resource_types(bootstrap):
    [dev_role] = [r for r in blocks(bootstrap, "azurerm_role_definition").values()
                  if r["name"] == "todo-api plan dev"]
    granted = dev_role["permissions"][0]
    for action in ("Microsoft.DocumentDB/databaseAccounts/listKeys/action",
                   "Microsoft.DocumentDB/databaseAccounts/readonlykeys/action",
                   "Microsoft.DocumentDB/databaseAccounts/listConnectionStrings/action",
                   "Microsoft.Resources/deployments/exportTemplate/action"):
        assert action in granted["actions"]
    # No Key Vault data action: secrets go through ARM deployments and the certificate through
    # the apply's tool, so no plan reads the vault's data plane (which a private vault refuses
    # to GitHub-hosted runners; docs/deploy.md, "Deploy-time access").
    assert not granted.get("data_actions")


def test_every_resource_type_of_every_topology_has_its_actions_decided(synthesized_stacks):
    types = set().union(*(s["resource"] for s in synthesized_stacks.values()))
    permissions.actions_for(types)  # raises on a type nobody decided


def test_a_stack_with_an_undecided_type_stops_synth_with_one_line(monkeypatch, tmp_path):
    from stacks.synth import SynthError, synthesize

    monkeypatch.delitem(permissions.RESOURCE_ACTIONS, "azurerm_cosmosdb_table")
    with pytest.raises(SynthError) as raised:
        synthesize(load_environments(), tmp_path, bootstrap=BootstrapConfig())
    assert str(raised.value).count("\n") == 0
    assert "no permissions decided for azurerm_cosmosdb_table" in str(raised.value)
    assert not list(tmp_path.rglob("cdk.tf.json"))


def test_refresh_actions_name_their_source_and_why_they_are_granted():
    for resource_type, row in permissions.RESOURCE_ACTIONS.items():
        if row.refresh or row.refresh_data:
            assert "internal/services/" in row.source, resource_type
            assert len(row.why_harmless.split()) >= 6, resource_type


def test_rbac_wildcards_match_as_azure_does():
    assert permissions.matches("Microsoft.Web/*/read", "Microsoft.Web/sites/config/read")
    assert permissions.matches("*", "Microsoft.Web/sites/write")
    assert not permissions.matches("Microsoft.Web/*/read", "Microsoft.Web/sites/write")
    contributor = permissions.BUILTIN_ROLES["Contributor"]
    assert contributor.allows("Microsoft.Web/sites/write")
    assert not contributor.allows("Microsoft.Authorization/roleAssignments/write")


# Provider registrations ---------------------------------------------------------------------------


def test_registrations_are_derived_from_the_synthesized_types(bootstrap, synthesized_stacks):
    types = set().union(*(s["resource"] for s in synthesized_stacks.values()))
    namespaces = {a.namespace for a in permissions.actions_for(types).values()}
    for env, subscription in (("dev", DEV), ("prod", PROD)):
        registered = {b["name"] for b in blocks(bootstrap, "azurerm_resource_provider_registration").values()
                      if b["provider"] == f"azurerm.{env}"}
        assert registered == namespaces - permissions.ALWAYS_REGISTERED
        assert "Microsoft.DocumentDB" in registered and "Microsoft.ApiManagement" in registered


def test_no_stack_registers_providers_at_plan_time(bootstrap, synthesized_stacks):
    for stack in [bootstrap, *synthesized_stacks.values()]:
        for provider in stack["provider"]["azurerm"]:
            assert provider["resource_provider_registrations"] == "none"


# The state account -------------------------------------------------------------------------------


def test_state_lives_in_its_own_subscription_entra_only_and_locked(bootstrap):
    [(_, account)] = blocks(bootstrap, "azurerm_storage_account").items()
    assert account["provider"] == "azurerm.state"
    assert account["shared_access_key_enabled"] is False
    assert account["blob_properties"]["versioning_enabled"] is True
    providers = {p["alias"]: p["subscription_id"] for p in bootstrap["provider"]["azurerm"]}
    assert providers["state"] == STATE and len(set(providers.values())) == 3
    locks = blocks(bootstrap, "azurerm_management_lock").values()
    assert {lock["lock_level"] for lock in locks} == {"CanNotDelete"}
    assert {lock["scope"] for lock in locks} == {"${azurerm_resource_group.state-group.id}"}


def test_empty_states_are_written_once_and_never_destroyed(bootstrap):
    blobs = blocks(bootstrap, "azurerm_storage_blob")
    assert sorted(b["name"] for b in blobs.values()) == ["todo-api-dev.tfstate",
                                                         "todo-api-prod.tfstate"]
    for blob in blobs.values():
        assert blob["lifecycle"] == {"ignore_changes": "all", "prevent_destroy": True}
        assert json.loads(blob["source_content"])["serial"] == 0


def test_the_placeholders_stop_a_plan_with_a_message(bootstrap):
    group = blocks(bootstrap, "azurerm_resource_group")["state-group"]
    [precondition] = group["lifecycle"]["precondition"]
    assert precondition["condition"] == "${false}"
    assert "placeholder subscription ids" in precondition["error_message"]


def test_the_bootstraps_own_state_moves_into_the_account(tmp_path):
    from stacks.synth import synthesize

    config = BootstrapConfig(state_backend="azurerm")
    written = synthesize(load_environments(), tmp_path, bootstrap=config)
    [path] = [p for p in written if p.parent.name == "todo-api-bootstrap"]
    backend = json.loads(path.read_text())["terraform"]["backend"]["azurerm"]
    assert backend == {"subscription_id": STATE, "resource_group_name": "todo-api-tfstate",
                       "storage_account_name": "todoapitfstate42",
                       "container_name": "tfstate-bootstrap",
                       "key": "todo-api-bootstrap.tfstate", "use_azuread_auth": True}


# GitHub --------------------------------------------------------------------------------------------


def test_environments_allow_main_only_and_nobody_bypasses(bootstrap, model):
    environments = {b["environment"]: b for b in
                    blocks(bootstrap, "github_repository_environment").values()}
    assert sorted(environments) == sorted(e.name for e in model.environments)
    for block in environments.values():
        assert block["can_admins_bypass"] is False
        assert block["deployment_branch_policy"] == {"custom_branch_policies": True,
                                                     "protected_branches": False}
    policies = blocks(bootstrap, "github_repository_environment_deployment_policy").values()
    assert sorted(p["branch_pattern"] for p in policies) == ["main"] * len(environments)


def test_prod_is_approved_by_a_team_not_by_whoever_started_the_run(bootstrap):
    prod = blocks(bootstrap, "github_repository_environment")["environment-prod"]
    assert prod["prevent_self_review"] is True
    [reviewers] = prod["reviewers"]
    assert reviewers["teams"] == ["${data.github_team.prod-reviewers.id}"]
    others = [b for k, b in blocks(bootstrap, "github_repository_environment").items()
              if k != "environment-prod"]
    assert all("reviewers" not in b for b in others)


def test_main_is_protected_by_a_ruleset(bootstrap):
    [(_, ruleset)] = blocks(bootstrap, "github_repository_ruleset").items()
    assert ruleset["enforcement"] == "active" and "bypass_actors" not in ruleset
    assert ruleset["conditions"]["ref_name"]["include"] == ["refs/heads/main"]
    rules = ruleset["rules"]
    assert rules["deletion"] is True and rules["non_fast_forward"] is True
    assert rules["pull_request"]["required_approving_review_count"] == 1
    checks = {c["context"] for c in rules["required_status_checks"]["required_check"]}
    assert checks == {"make test", "synth, checkov, diagram"}


def test_required_checks_are_jobs_the_workflows_run():
    import yaml

    from stacks.config import PROJECT_ROOT

    names = set()
    for path in (PROJECT_ROOT / ".github" / "workflows").glob("*.yml"):
        names |= {job.get("name") for job in yaml.safe_load(path.read_text())["jobs"].values()}
    assert set(BootstrapConfig().required_checks) <= names


def test_variables_and_secrets_are_where_the_model_puts_them(bootstrap, model):
    repository = {b["variable_name"] for b in blocks(bootstrap, "github_actions_variable").values()}
    assert repository == set(permissions.REPOSITORY_VARIABLES)
    per_environment = {}
    for block in blocks(bootstrap, "github_actions_environment_variable").values():
        per_environment.setdefault(block["environment"], set()).add(block["variable_name"])
    assert len(per_environment) == len(model.environments)
    assert all(v == set(permissions.ENVIRONMENT_VARIABLES) for v in per_environment.values())
    secrets = [b for b in blocks(bootstrap, "github_actions_environment_secret").values()]
    assert {b["secret_name"] for b in secrets} == set(permissions.ENVIRONMENT_SECRETS)
    assert not blocks(bootstrap, "github_actions_secret")  # no repository-level secret


def test_an_environments_plan_bundle_key_is_shared_with_its_plan_environment_only(bootstrap):
    keys = {re.search(r"random_password\.([\w-]+)\.", b["plaintext_value"])[1]:
            set() for b in blocks(bootstrap, "github_actions_environment_secret").values()}
    for block in blocks(bootstrap, "github_actions_environment_secret").values():
        key = re.search(r"random_password\.([\w-]+)\.", block["plaintext_value"])[1]
        keys[key].add(re.search(r"environment-([\w-]+)\.", block["environment"])[1])
    assert keys == {"plan-bundle-key-dev": {"dev", "dev-plan"},
                    "plan-bundle-key-prod": {"prod", "prod-plan"}}


def test_the_plan_labels_are_the_ones_the_comment_tool_sets(bootstrap):
    from tools.delivery.plan_comment import LABEL_KINDS

    labels = {b["name"] for b in blocks(bootstrap, "github_issue_label").values()}
    assert labels == {"drift"} | {f"plan/todo-api-{env}: {kind}" for env in ("dev", "prod")
                                  for kind in LABEL_KINDS}


# Configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('repository = "no-slash"', "repository: String should match pattern"),
    ('[subscriptions]\ndev = "00000000-0000-0000-0000-00000000000f"',
     "subscriptions.prod: same subscription as dev"),
    ('location = "mars"', "location: unknown region 'mars'"),
    ('reviewer = "alice"', "reviewer: unknown key"),
])
def test_bad_bootstrap_configuration_is_one_line_naming_the_field(tmp_path, text, message):
    path = tmp_path / "bootstrap.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_bootstrap(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_docs_identity_table_is_rendered_from_the_model(model):
    from stacks.config import PROJECT_ROOT

    docs = (PROJECT_ROOT / "docs" / "delivery.md").read_text()
    begin, end = "<!-- identity table: python -m stacks.permissions -->\n", "<!-- end -->"
    assert begin in docs, "docs/delivery.md has no identity table"
    table = docs.split(begin, 1)[1].split(end, 1)[0]
    assert table == permissions.markdown(model)
