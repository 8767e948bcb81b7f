"""The Cosmos DB for Table store as synthesized, in every environment x topology: the account
(one write region, Strong, failover, backup, no keys, firewall), the table, the web apps' data
role (an inline ARM template, parsed here), the app settings that point the apps at the table,
diagnostics and outputs."""

import json

import pytest

from tests.stacks.synthesized import (
    ENVIRONMENTS,
    TOPOLOGIES,
    blocks,
    only,
    ref,
    table_role_deployment,
)

ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
REGIONS = ["australiaeast", "australiasoutheast"]
DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def stack(request, synthesized_stacks):
    return synthesized_stacks[request.param]


def account(stack: dict) -> tuple[str, dict]:
    return only(stack, "azurerm_cosmosdb_account")


SITE_TYPES = ("azurerm_linux_web_app", "azurerm_linux_web_app_slot")


def site_refs(stack: dict, attribute: str) -> list[str]:
    """`attribute` of every site that runs the app, region by region (primary first: logical ids
    sort that way), the web app before its staging slot."""
    sites = [
        (i.split("_")[0], n, kind, i)
        for n, kind in enumerate(SITE_TYPES)
        for i in blocks(stack, kind)
    ]
    return [ref(kind, i, attribute) for *_, kind, i in sorted(sites)]


def test_account_is_a_table_account_writing_in_the_primary_with_strong_consistency(stack):
    _, cosmos = account(stack)
    assert cosmos["kind"] == "GlobalDocumentDB"
    assert cosmos["capabilities"] == [{"name": "EnableTable"}]
    assert cosmos["consistency_policy"] == {"consistency_level": "Strong"}
    assert cosmos["location"] == "australiaeast"
    assert [(g["location"], g["failover_priority"]) for g in cosmos["geo_location"]] == [
        ("australiaeast", 0),
        ("australiasoutheast", 1),
    ]


def test_account_fails_over_by_itself_and_never_writes_in_two_regions(stack):
    _, cosmos = account(stack)
    assert cosmos["automatic_failover_enabled"] is True
    assert cosmos["multiple_write_locations_enabled"] is False


def test_account_has_continuous_backup(stack):
    _, cosmos = account(stack)
    assert cosmos["backup"]["type"] == "Continuous"


def test_backup_window_and_zones_follow_the_environment(synthesized_stacks):
    dev = account(synthesized_stacks[("dev", "single")])[1]
    prod = account(synthesized_stacks[("prod", "multi-region")])[1]
    assert dev["backup"]["tier"] == "Continuous7Days"
    assert prod["backup"]["tier"] == "Continuous30Days"
    assert [g["zone_redundant"] for g in dev["geo_location"]] == [False, False]
    assert [g["zone_redundant"] for g in prod["geo_location"]] == [True, False]


def test_account_accepts_no_keys(stack):
    _, cosmos = account(stack)
    assert cosmos["local_authentication_disabled"] is True
    assert cosmos["access_key_metadata_writes_enabled"] is False
    assert cosmos["minimal_tls_version"] == "Tls12"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_account_firewall_admits_only_the_web_apps_outbound_addresses(env, public_stacks):
    """Public mode: both web apps' and their staging slots' (the same plan's, so the same
    addresses). Private mode (prod ships it) has no public endpoint: tests/stacks/test_network.py."""
    stack = public_stacks[env]
    _, cosmos = account(stack)
    lists = ", ".join(
        site[2:-1] for site in site_refs(stack, "possible_outbound_ip_address_list")
    )  # the references without their ${...}
    assert len(site_refs(stack, "id")) == 4
    assert cosmos["ip_range_filter"] == f"${{concat({lists})}}"
    assert cosmos["public_network_access_enabled"] is True
    assert cosmos["is_virtual_network_filter_enabled"] is True
    assert cosmos["network_acl_bypass_for_azure_services"] is False
    assert "virtual_network_rule" not in cosmos
    assert "0.0.0.0" not in json.dumps(cosmos)  # the "all Azure datacenters" switch


def test_table_is_created_by_terraform_in_the_account(stack):
    account_id, cosmos = account(stack)
    _, table = only(stack, "azurerm_cosmosdb_table")
    assert table["name"] == "TodoItems"
    assert table["account_name"] == ref("azurerm_cosmosdb_account", account_id, "name")
    assert table["resource_group_name"] == cosmos["resource_group_name"]


def test_table_throughput_follows_the_environment(synthesized_stacks):
    _, dev = only(synthesized_stacks[("dev", "single")], "azurerm_cosmosdb_table")
    _, prod = only(synthesized_stacks[("prod", "multi-region")], "azurerm_cosmosdb_table")
    assert (dev["throughput"], "autoscale_settings" in dev) == (400, False)
    assert (prod["autoscale_settings"], "throughput" in prod) == ({"max_throughput": 4000}, False)


def role_deployment(stack: dict) -> tuple[dict, dict, dict]:
    """(the template deployment block, its parsed template, its parsed parameters)."""
    _, deployment = table_role_deployment(stack)
    return (
        deployment,
        json.loads(deployment["template_content"]),
        json.loads(deployment["parameters_content"]),
    )


def test_role_template_assigns_the_table_data_contributor_role_on_the_account(stack):
    deployment, template, _ = role_deployment(stack)
    (resource,) = template["resources"]
    assert resource["type"] == "Microsoft.DocumentDB/databaseAccounts/tableRoleAssignments"
    assert resource["apiVersion"] == "2024-12-01-preview"
    role = f"format('{{0}}/tableRoleDefinitions/{DATA_CONTRIBUTOR}', parameters('accountId'))"
    assert resource["properties"] == {
        "roleDefinitionId": f"[{role}]",
        "principalId": "[parameters('principalIds')[copyIndex()]]",
        "scope": "[parameters('accountId')]",
    }
    assert resource["copy"]["count"] == "[length(parameters('principalIds'))]"
    assert deployment["deployment_mode"] == "Incremental"
    assert set(template["parameters"]) == {"accountName", "accountId", "principalIds"}


def test_role_assignment_names_are_derived_not_random(stack):
    _, template, _ = role_deployment(stack)
    (resource,) = template["resources"]
    # a child of the account, named by guid(account, role, principal): the same on every apply
    assert resource["name"].startswith("[format('{0}/{1}', parameters('accountName'), guid(")
    assert "parameters('principalIds')[copyIndex()]))]" in resource["name"]


def test_role_template_parameters_are_the_account_and_the_web_apps_and_slots_identities(stack):
    account_id, cosmos = account(stack)
    deployment, _, parameters = role_deployment(stack)
    assert parameters == {
        "accountName": {"value": ref("azurerm_cosmosdb_account", account_id, "name")},
        "accountId": {"value": ref("azurerm_cosmosdb_account", account_id, "id")},
        "principalIds": {"value": site_refs(stack, "identity[0].principal_id")},
    }
    assert deployment["resource_group_name"] == cosmos["resource_group_name"]


def test_web_apps_reach_the_table_by_endpoint_and_identity(stack):
    _, cosmos = account(stack)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        settings = app["app_settings"]
        assert settings["STORE"] == "table"
        assert settings["TABLE_ENDPOINT"] == (
            f"https://{cosmos['name']}.table.cosmos.azure.com:443/"
        )
        assert settings["TABLE_NAME"] == "TodoItems"
        assert "TABLE_CONNECTION_STRING" not in settings  # managed identity, no keys


def test_web_apps_run_several_instances_and_workers(stack):
    for plan in blocks(stack, "azurerm_service_plan").values():
        assert (plan["sku_name"], plan["worker_count"]) == ("S1", 2)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["app_settings"]["WEB_CONCURRENCY"] == "2"  # 2 per vCPU, S1 has 1


def test_account_logs_go_to_the_workspace(stack):
    account_id, _ = account(stack)
    (setting,) = [
        s
        for s in blocks(stack, "azurerm_monitor_diagnostic_setting").values()
        if s["target_resource_id"] == ref("azurerm_cosmosdb_account", account_id, "id")
    ]
    workspace_id, _ = only(stack, "azurerm_log_analytics_workspace")
    assert setting["log_analytics_workspace_id"] == ref(
        "azurerm_log_analytics_workspace", workspace_id, "id"
    )


def test_outputs_name_the_account_its_group_regions_and_table(stack):
    account_id, cosmos = account(stack)
    table_id, _ = only(stack, "azurerm_cosmosdb_table")
    outputs = stack["output"]
    assert outputs["cosmos_account_name"]["value"] == ref(
        "azurerm_cosmosdb_account", account_id, "name"
    )
    assert outputs["cosmos_resource_group_name"]["value"] == cosmos["resource_group_name"]
    assert outputs["cosmos_regions"]["value"] == REGIONS  # write region first
    assert outputs["table_name"]["value"] == ref("azurerm_cosmosdb_table", table_id, "name")
    assert not any(outputs[n].get("sensitive") for n in ("cosmos_account_name", "table_name"))
