"""`drills.enabled`: off in dev, nothing of it synthesized; on in prod, the Azure Load Testing
resource (system identity reading the vault's secrets, the gateway subscription key as a secret,
Load Test Contributor for the deploy identities, logs) and per fault a Chaos Studio target,
capability and experiment whose identity holds exactly that fault's custom role on that one
resource; the outputs the drill tools read; the fault roles and the RBAC condition in the
bootstrap stack; the configuration's validation."""

import json
import re

import pytest

from stacks import permissions
from stacks.config import PROJECT_ROOT, ConfigError, Drills, load_environment, read_toml
from stacks.synth import synthesize
from tests.stacks.synthesized import TOPOLOGIES, blocks, only, ref, vault_secrets

LOAD_TEST, TARGET = "azurerm_load_test", "azurerm_chaos_studio_target"
CAPABILITY, EXPERIMENT = "azurerm_chaos_studio_capability", "azurerm_chaos_studio_experiment"
ASSIGNMENT = "azurerm_role_assignment"
DRILL_TYPES = (LOAD_TEST, TARGET, CAPABILITY, EXPERIMENT)
DRILL_OUTPUTS = {"load_test_name", "load_test_resource_group_name", "load_test_secrets",
                 "chaos_experiments"}
WEB_APP = "azurerm_linux_web_app"
# fault key -> (target type, capability, URN, fault role) with the default regions
FAULTS = {
    "region-outage-primary": ("Microsoft-AppService", "Stop-1.0",
                          "urn:csci:microsoft:appService:stop/1.0", "app-service-stop"),
    "region-outage-secondary": ("Microsoft-AppService", "Stop-1.0",
                           "urn:csci:microsoft:appService:stop/1.0", "app-service-stop"),
    "database-failover": ("Microsoft-CosmosDB", "Failover-1.0",
                          "urn:csci:microsoft:cosmosDB:failover/1.0", "cosmos-db-failover"),
    "vault-deny": ("Microsoft-KeyVault", "DenyAccess-1.0",
                   "urn:csci:microsoft:keyVault:denyAccess/1.0", "key-vault-deny-access"),
}
DEPLOYER = "3f1c2a9e-0b7d-4c55-9d2e-6a8b1c0d4e5f"
ADMIN_GROUP = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"


@pytest.fixture(params=TOPOLOGIES)
def prod(request, synthesized_stacks) -> dict:
    return synthesized_stacks[("prod", request.param)]


@pytest.fixture(scope="module")
def prod_default(synthesized_stacks) -> dict:
    return synthesized_stacks[("prod", "multi-region")]


@pytest.fixture(scope="module")
def bootstrap(synthesized_bootstrap_file) -> dict:
    return json.loads(synthesized_bootstrap_file.read_text())


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> dict[str, dict]:
    """One synth: prod with 3-minute faults and two configured administrators, dev with drills
    turned on."""
    configs = [
        load_environment("dev", {"drills.enabled": True}),
        load_environment("prod", {"drills.fault_minutes": 3,
                                  "key_vault.administrator_object_ids": [DEPLOYER, ADMIN_GROUP]}),
    ]
    written = synthesize(configs, tmp_path_factory.mktemp("drills"))
    return {p.parent.name.removeprefix("todo-api-"): json.loads(p.read_text()) for p in written}


def experiments_by_key(stack: dict) -> dict[str, tuple[str, dict]]:
    """{fault key: (logical id, experiment)}, keyed as the output names them."""
    found = {}
    for logical_id, block in blocks(stack, EXPERIMENT).items():
        key = re.fullmatch(r"todo-api-[a-z]+-chaos-(.+)", block["name"])[1]
        found[key] = (logical_id, block)
    return found


def target_of(stack: dict, experiment: dict) -> tuple[str, dict]:
    [selector] = experiment["selectors"]
    [target_ref] = selector["chaos_studio_target_ids"]
    logical_id = target_ref.split(".")[1]
    return logical_id, blocks(stack, TARGET)[logical_id]


def faulted_resources(stack: dict) -> dict[str, str]:
    """{fault key: the Terraform reference of the resource it faults}."""
    apps = {block["location"]: ref(WEB_APP, i, "id") for i, block in blocks(stack, WEB_APP).items()}
    account, _ = only(stack, "azurerm_cosmosdb_account")
    vault, _ = only(stack, "azurerm_key_vault")
    return {"region-outage-primary": apps["australiaeast"],
            "region-outage-secondary": apps["australiasoutheast"],
            "database-failover": ref("azurerm_cosmosdb_account", account, "id"),
            "vault-deny": ref("azurerm_key_vault", vault, "id")}


def load_test(stack: dict) -> tuple[str, dict]:
    return only(stack, LOAD_TEST)


# Configuration --------------------------------------------------------------------------------


def test_prod_turns_drills_on_and_dev_off_each_in_its_file():
    for environment, enabled in (("dev", False), ("prod", True)):
        data, _ = read_toml(PROJECT_ROOT / "config" / f"{environment}.toml")
        assert data["drills"]["enabled"] is enabled  # explicit, not left to the default
        assert load_environment(environment).drills.enabled is enabled


def test_drills_are_off_and_faults_last_ten_minutes_by_default():
    assert (Drills().enabled, Drills().fault_minutes) == (False, 10)


@pytest.mark.parametrize(("value", "reason"), [
    (0, "Input should be greater than or equal to 1 (got 0)"),
    (61, "Input should be less than or equal to 60 (got 61)"),
    ("ten", "Input should be a valid integer, unable to parse string as an integer (got 'ten')"),
])
def test_fault_minutes_out_of_range_is_one_line_naming_the_field(value, reason):
    with pytest.raises(ConfigError) as raised:
        load_environment("prod", {"drills.fault_minutes": value})
    assert str(raised.value) == f"config/prod.toml: drills.fault_minutes: {reason}"


def test_an_unknown_drills_key_is_one_line_naming_it():
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", {"drills.engines": 4})
    assert str(raised.value) == "config/dev.toml: drills.engines: unknown key"


def test_enabled_takes_a_boolean_only():
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", {"drills.enabled": "sometimes"})
    assert "drills.enabled: Input should be a valid boolean" in str(raised.value)
    assert "\n" not in str(raised.value)


# Off ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_dev_synthesizes_nothing_of_the_drills(synthesized_stacks, topology):
    stack = synthesized_stacks[("dev", topology)]
    assert set(stack["resource"]) & set(DRILL_TYPES) == set()
    assert set(stack["output"]) & DRILL_OUTPUTS == set()
    assert list(vault_secrets(stack)) == ["health-check-key"]
    assert "Load Test Contributor" not in json.dumps(stack["resource"])


# The load testing resource --------------------------------------------------------------------


def test_the_load_test_lives_in_the_global_group_with_a_system_identity(prod):
    _, block = load_test(prod)
    assert block["name"] == "todo-api-prod-lt"
    assert block["resource_group_name"] == "${azurerm_resource_group.global-group.name}"
    assert block["location"] == "australiaeast"
    # its system identity reads the secrets; with auth.mode entra (prod's file) it also holds
    # the engines' identity (below)
    assert block["identity"]["type"] in ("SystemAssigned", "SystemAssigned, UserAssigned")
    assert {"project", "environment", "managed-by"} <= set(block["tags"])


def test_with_entra_the_engines_call_the_api_as_a_user_assigned_identity_of_the_stack(
        entra_stacks):
    """Azure Load Testing gives its engines the identity the test's `referenceIdentities` name;
    the load test holds it beside its system identity, and the drill tools read it from the
    outputs (its client id and object id are allowed and assigned: tests/stacks/
    test_api_identity.py)."""
    prod = entra_stacks["prod"]
    engine = prod["resource"]["azurerm_user_assigned_identity"]["load-test-engine-identity"]
    assert engine["name"] == "todo-api-prod-lt-engine-id"
    assert engine["resource_group_name"] == "${azurerm_resource_group.global-group.name}"
    _, block = load_test(prod)
    engine_ref = "azurerm_user_assigned_identity.load-test-engine-identity"
    assert block["identity"] == {"type": "SystemAssigned, UserAssigned",
                                 "identity_ids": [f"${{{engine_ref}.id}}"]}
    output = prod["output"]["load_test_engine_identity"]
    assert output["value"] == {"id": f"${{{engine_ref}.id}}",
                               "client_id": f"${{{engine_ref}.client_id}}"}
    assert not output.get("sensitive")


def test_without_entra_or_without_drills_there_is_no_engine_identity(
        configured, synthesized_stacks, entra_stacks):
    dev_drills = configured["dev"]  # auth.mode none, drills on
    dev_entra = entra_stacks["dev"]  # entra, drills off
    assert not load_environment("dev").auth.entra
    assert load_test(dev_drills)[1]["identity"] == {"type": "SystemAssigned"}
    stacks = [dev_drills, dev_entra,
              *(s for (env, _), s in synthesized_stacks.items() if env == "dev")]
    for stack in stacks:
        identities = stack["resource"].get("azurerm_user_assigned_identity", {})
        assert "load-test-engine-identity" not in identities
        assert "load_test_engine_identity" not in stack["output"]


def test_the_gateway_subscription_key_is_a_vault_secret_written_through_arm(prod):
    """Like the health key (tests/stacks/test_key_vault_secrets.py): the key as a securestring
    parameter of an ARM deployment in the vault's group."""
    secrets = vault_secrets(prod)
    _, secret = secrets["gateway-subscription-key"]
    _, health = secrets["health-check-key"]
    key = ref("random_password", "subscription-key", "result")[2:-1]
    assert secret["parameters_content"] == (
        f'${{sensitive(jsonencode({{"value" = {{"value" = {key}}}}}))}}')
    assert secret["resource_group_name"] == health["resource_group_name"]
    assert secret["depends_on"] == health["depends_on"]
    assert secret["tags"] == health["tags"]


def test_the_load_test_identity_reads_the_vaults_secrets(prod):
    load_test_id, _ = load_test(prod)
    vault_id, _ = only(prod, "azurerm_key_vault")
    principal = ref(LOAD_TEST, load_test_id, "identity[0].principal_id")
    [grant] = [a for a in blocks(prod, ASSIGNMENT).values() if a["principal_id"] == principal]
    assert grant["role_definition_name"] == "Key Vault Secrets User"
    assert grant["scope"] == ref("azurerm_key_vault", vault_id, "id")
    assert grant["principal_type"] == "ServicePrincipal"


def test_whoever_runs_terraform_may_create_and_run_tests_on_the_load_test_only(prod):
    load_test_id, _ = load_test(prod)
    [grant] = [a for a in blocks(prod, ASSIGNMENT).values()
               if a.get("role_definition_name") == "Load Test Contributor"]
    assert grant["scope"] == ref(LOAD_TEST, load_test_id, "id")
    assert re.fullmatch(r"\$\{data\.azurerm_client_config\.[^.]+\.object_id\}",
                        grant["principal_id"])
    assert "principal_type" not in grant  # a user, a group or a service principal


def test_each_configured_deploy_identity_may_create_and_run_tests(configured):
    grants = [a for a in blocks(configured["prod"], ASSIGNMENT).values()
              if a.get("role_definition_name") == "Load Test Contributor"]
    assert sorted(a["principal_id"] for a in grants) == sorted([DEPLOYER, ADMIN_GROUP])


def test_the_load_tests_operation_logs_go_to_the_workspace(prod):
    load_test_id, _ = load_test(prod)
    workspace_id, _ = only(prod, "azurerm_log_analytics_workspace")
    [setting] = [s for s in blocks(prod, "azurerm_monitor_diagnostic_setting").values()
                 if s["target_resource_id"] == ref(LOAD_TEST, load_test_id, "id")]
    assert setting["log_analytics_workspace_id"] == ref(
        "azurerm_log_analytics_workspace", workspace_id, "id")
    assert setting["enabled_log"] == [{"category_group": "allLogs"}]
    assert "enabled_metric" not in setting  # the type exports no platform metrics


# Chaos Studio ---------------------------------------------------------------------------------


def test_prod_has_one_experiment_per_fault_and_region(prod):
    assert set(experiments_by_key(prod)) == set(FAULTS)
    assert len(blocks(prod, TARGET)) == len(blocks(prod, CAPABILITY)) == len(FAULTS)


def test_each_faulted_resource_is_a_target_with_the_faults_capability(prod):
    resources = faulted_resources(prod)
    for key, (_, experiment) in experiments_by_key(prod).items():
        target_id, target = target_of(prod, experiment)
        target_type, capability, _, _ = FAULTS[key]
        assert (target["target_resource_id"], target["target_type"]) == (
            resources[key], target_type)
        [enabled] = [c for c in blocks(prod, CAPABILITY).values()
                     if c["chaos_studio_target_id"] == ref(TARGET, target_id, "id")]
        assert enabled["capability_type"] == capability


def test_a_target_lives_in_its_resources_region(prod):
    experiments = experiments_by_key(prod)
    regions = {key: target_of(prod, experiments[key][1])[1]["location"] for key in FAULTS}
    assert regions == {"region-outage-primary": "australiaeast",
                       "region-outage-secondary": "australiasoutheast",
                       "database-failover": "australiaeast", "vault-deny": "australiaeast"}


def test_each_experiment_is_one_continuous_fault_of_ten_minutes_on_its_target(prod):
    for key, (_, experiment) in experiments_by_key(prod).items():
        [step] = experiment["steps"]
        [branch] = step["branch"]
        [action] = branch["actions"]
        [selector] = experiment["selectors"]
        assert (action["action_type"], action["urn"]) == ("continuous", FAULTS[key][2])
        assert action["duration"] == "PT10M"
        assert action["selector_name"] == selector["name"]
        assert experiment["resource_group_name"] == "${azurerm_resource_group.global-group.name}"
        assert experiment["identity"] == {"type": "SystemAssigned"}


def test_an_experiment_is_created_after_its_targets_capability(prod):
    for _, experiment in experiments_by_key(prod).values():
        target_id, _ = target_of(prod, experiment)
        [capability_id] = [i for i, c in blocks(prod, CAPABILITY).items()
                           if c["chaos_studio_target_id"] == ref(TARGET, target_id, "id")]
        assert experiment["depends_on"] == [f"{CAPABILITY}.{capability_id}"]


def test_the_database_failover_promotes_the_secondary_region_by_display_name(prod):
    _, experiment = experiments_by_key(prod)["database-failover"]
    [action] = experiment["steps"][0]["branch"][0]["actions"]
    assert action["parameters"] == {"readRegion": "Australia Southeast"}


def test_stopping_a_web_app_and_denying_the_vault_take_no_parameters(prod):
    for key in ("region-outage-primary", "region-outage-secondary", "vault-deny"):
        _, experiment = experiments_by_key(prod)[key]
        assert "parameters" not in experiment["steps"][0]["branch"][0]["actions"][0]


def test_each_experiment_identity_holds_its_faults_role_on_its_one_target_only(prod):
    resources = faulted_resources(prod)
    for key, (logical_id, _) in experiments_by_key(prod).items():
        principal = ref(EXPERIMENT, logical_id, "identity[0].principal_id")
        [grant] = [a for a in blocks(prod, ASSIGNMENT).values() if a["principal_id"] == principal]
        role = permissions.fault_role(FAULTS[key][3], "prod")
        assert grant["scope"] == resources[key]
        assert re.fullmatch(
            r"/subscriptions/\$\{data\.azurerm_client_config\.[^.]+\.subscription_id\}"
            rf"/providers/Microsoft\.Authorization/roleDefinitions/{role.custom_id}",
            grant["role_definition_id"])
        assert grant["principal_type"] == "ServicePrincipal"


def test_each_fault_role_has_exactly_the_actions_of_its_fault():
    expected = {
        "app-service-stop": {"Microsoft.Web/sites/read", "Microsoft.Web/sites/stop/action",
                             "Microsoft.Web/sites/start/action"},
        "cosmos-db-failover": {
            "Microsoft.DocumentDB/databaseAccounts/read",
            "Microsoft.DocumentDB/databaseAccounts/failoverPriorityChange/action",
        },
        "key-vault-deny-access": {"Microsoft.KeyVault/vaults/read",
                                  "Microsoft.KeyVault/vaults/write"},
    }
    for environment in permissions.ENVIRONMENTS:
        for fault, actions in expected.items():
            role = permissions.fault_role(fault, environment)
            assert set(role.actions) == actions and len(role.actions) == len(actions)
            assert (role.not_actions, role.data_actions) == ((), ())


def test_dev_with_drills_assigns_devs_fault_roles(configured):
    dev_roles = {permissions.fault_role(f, "dev").custom_id for f in permissions.FAULT_PERMISSIONS}
    assigned = {a["role_definition_id"].rsplit("/", 1)[1]
                for a in blocks(configured["dev"], ASSIGNMENT).values()
                if "role_definition_id" in a}
    assert assigned == dev_roles


def test_fault_minutes_sets_every_experiments_duration_and_its_output(configured):
    stack = configured["prod"]
    for _, experiment in experiments_by_key(stack).values():
        assert experiment["steps"][0]["branch"][0]["actions"][0]["duration"] == "PT3M"
    summaries = stack["output"]["chaos_experiments"]["value"]
    assert {s["duration_seconds"] for s in summaries.values()} == {180}


# Outputs ----------------------------------------------------------------------------------------


def test_the_load_test_outputs_name_it_and_its_group(prod):
    load_test_id, _ = load_test(prod)
    outputs = prod["output"]
    assert outputs["load_test_name"]["value"] == ref(LOAD_TEST, load_test_id, "name")
    assert outputs["load_test_resource_group_name"]["value"] == (
        "${azurerm_resource_group.global-group.name}")


def test_load_test_secrets_map_the_variable_to_the_keys_versionless_uri(prod):
    vault_id, _ = only(prod, "azurerm_key_vault")
    assert "gateway-subscription-key" in vault_secrets(prod)
    assert prod["output"]["load_test_secrets"]["value"] == {
        "LOCUST_SUBSCRIPTION_KEY":
            f"{ref('azurerm_key_vault', vault_id, 'vault_uri')}secrets/gateway-subscription-key"}


def test_chaos_experiments_give_each_faults_id_name_and_duration(prod):
    experiments = experiments_by_key(prod)
    value = prod["output"]["chaos_experiments"]["value"]
    assert value == {
        key: {"id": ref(EXPERIMENT, logical_id, "id"), "name": ref(EXPERIMENT, logical_id, "name"),
              "duration_seconds": 600}
        for key, (logical_id, _) in experiments.items()
    }
    assert set(value) == set(FAULTS)


def test_no_drill_output_is_sensitive(prod):
    assert not any(prod["output"][name].get("sensitive") for name in DRILL_OUTPUTS)


# Permissions and the bootstrap stack ----------------------------------------------------------


def test_planning_a_drill_resource_reads_only():
    for resource_type, namespace in ((LOAD_TEST, "Microsoft.LoadTestService"),
                                     (TARGET, "Microsoft.Chaos"), (CAPABILITY, "Microsoft.Chaos"),
                                     (EXPERIMENT, "Microsoft.Chaos")):
        row = permissions.RESOURCE_ACTIONS[resource_type]
        assert (row.refresh, row.refresh_data, row.namespace) == ((), (), namespace)
        assert "Read is one GET" in row.source and "internal/services/" in row.source


def test_the_bootstrap_makes_each_fault_role_with_its_fixed_id_in_its_subscription(bootstrap):
    made = {b["name"]: b for b in blocks(bootstrap, "azurerm_role_definition").values()}
    for environment in permissions.ENVIRONMENTS:
        for role in permissions.fault_roles(environment):
            block = made[role.name]
            assert block["role_definition_id"] == role.custom_id
            assert block["provider"] == f"azurerm.{environment}"
            assert block["assignable_scopes"] == [block["scope"]]
            assert block["scope"].startswith("/subscriptions/")
            assert block["permissions"] == [{"actions": list(role.actions), "data_actions": [],
                                             "not_actions": []}]


def test_fault_role_ids_are_stable_and_differ_per_environment():
    ids = [r.custom_id for e in permissions.ENVIRONMENTS for r in permissions.fault_roles(e)]
    assert len(set(ids)) == len(ids) == 2 * len(permissions.FAULT_PERMISSIONS)
    assert permissions.fault_role("cosmos-db-failover", "prod").custom_id == (
        permissions.custom_role_id("todo-api fault cosmos-db-failover prod"))


def test_the_bootstrap_registers_the_drills_resource_providers(bootstrap):
    for environment in permissions.ENVIRONMENTS:
        registered = {b["name"] for b in
                      blocks(bootstrap, "azurerm_resource_provider_registration").values()
                      if b["provider"] == f"azurerm.{environment}"}
        assert {"Microsoft.Chaos", "Microsoft.LoadTestService"} <= registered
