"""The Mermaid topology diagram, derived from the references in a synthesized stack."""

import copy
import json
from pathlib import Path

import pytest

from tools.cli import CliError
from tools.delivery import diagram

DUAL = json.loads((Path(__file__).parent / "data" / "stacks" / "dual.cdk.tf.json").read_text())


def multi_region() -> dict:
    """The dual stack turned into one Premium gateway with an additional location."""
    stack = copy.deepcopy(DUAL)
    res = stack["resource"]
    del res["azurerm_api_management"]["apim_neu"]
    del res["azurerm_api_management_backend"]["backend_neu"]
    del res["azurerm_api_management_logger"]["logger_neu"]
    del res["azurerm_traffic_manager_profile"]["tm_gateway"]
    del res["azurerm_traffic_manager_external_endpoint"]
    res["azurerm_api_management"]["apim_weu"]["additional_location"] = [
        {"location": "${azurerm_resource_group.rg_secondary.location}"}
    ]
    for app in res["azurerm_linux_web_app"].values():
        app["site_config"]["ip_restriction"][0]["ip_address"] = (
            "${azurerm_api_management.apim_weu.public_ip_addresses[0]}/32"
        )
    return stack


def edges(stack: dict) -> set[tuple[str, str]]:
    return set(diagram.build(stack).edges)


def test_client_enters_through_the_gateway_traffic_manager_in_the_dual_topology():
    entries = [n.key for n in diagram.build(DUAL).entry_points()]
    assert entries == ["azurerm_traffic_manager_profile.tm_gateway"]


def test_client_enters_through_api_management_when_there_is_one_gateway():
    entries = [n.key for n in diagram.build(multi_region()).entry_points()]
    assert entries == ["azurerm_api_management.apim_weu"]


def test_traffic_manager_endpoints_link_the_profile_to_each_web_app():
    assert {
        ("azurerm_traffic_manager_profile.tm_app", "azurerm_linux_web_app.app_weu"),
        ("azurerm_traffic_manager_profile.tm_app", "azurerm_linux_web_app.app_neu"),
    } <= edges(DUAL)


def test_api_management_backends_link_each_gateway_to_the_app_traffic_manager():
    assert {
        ("azurerm_api_management.apim_weu", "azurerm_traffic_manager_profile.tm_app"),
        ("azurerm_api_management.apim_neu", "azurerm_traffic_manager_profile.tm_app"),
    } <= edges(DUAL)


def test_web_apps_link_to_key_vault_through_their_secret_references():
    assert ("azurerm_linux_web_app.app_weu", "azurerm_key_vault.kv") in edges(DUAL)


def test_ip_allow_rules_are_not_drawn_as_calls_from_the_web_app():
    assert not {e for e in edges(DUAL) if e[0].startswith("azurerm_linux_web_app")
                and e[1].startswith("azurerm_api_management")}


def test_monitoring_edges_follow_the_references():
    assert {
        ("azurerm_linux_web_app.app_neu", "azurerm_application_insights.ai"),
        ("azurerm_api_management.apim_weu", "azurerm_application_insights.ai"),
        ("azurerm_application_insights.ai", "azurerm_log_analytics_workspace.law"),
    } <= edges(DUAL)


def test_regions_come_from_the_resource_group_locations():
    text = diagram.mermaid(DUAL)
    assert 'subgraph region_westeurope["westeurope"]' in text
    assert 'subgraph region_northeurope["northeurope"]' in text
    neu = text.split('subgraph region_northeurope["northeurope"]')[1].split("  end")[0]
    assert "app-todo-dev-neu" in neu and "app-todo-dev-weu" not in neu


def test_multi_region_gateway_is_drawn_once_with_all_its_regions():
    text = diagram.mermaid(multi_region())
    assert text.count('["API Management<br/>') == 1
    assert "apim-todo-dev-weu<br/>(westeurope, northeurope)" in text


def test_traffic_manager_is_global():
    assert "tm-todo-dev-app<br/>(global)" in diagram.mermaid(DUAL)


def test_markdown_is_a_mermaid_code_block():
    text = diagram.markdown(DUAL)
    assert text.startswith("```mermaid\nflowchart LR\n") and text.endswith("\n```")


def test_label_falls_back_to_the_construct_path_when_the_name_is_computed():
    stack = copy.deepcopy(DUAL)
    stack["resource"]["azurerm_api_management"]["apim_weu"]["name"] = "${random_pet.x.id}"
    assert "API Management<br/>weu/gateway" in diagram.mermaid(stack)


def test_input_without_resources_is_a_clear_error():
    with pytest.raises(CliError, match="no 'resource' section"):
        diagram.mermaid({"output": {}})


def test_cli_appends_one_titled_diagram_per_stack(tmp_path):
    for stack in ("todo-api-dev", "todo-api-prod"):
        (tmp_path / stack).mkdir()
        (tmp_path / stack / "cdk.tf.json").write_text(json.dumps(DUAL))
    summary = tmp_path / "summary.md"
    summary.write_text("# synth\n")
    diagram.main([str(tmp_path / s / "cdk.tf.json") for s in ("todo-api-dev", "todo-api-prod")]
                 + ["--append", str(summary)])
    text = summary.read_text()
    assert text.startswith("# synth\n### Topology: `todo-api-dev`\n\n```mermaid\n")
    assert "### Topology: `todo-api-prod`" in text and text.count("```mermaid") == 2
