"""Optional configuration, synthesized once with every option on: remote state, an imported
PFX, a backend custom domain (name validation on), zone-balanced Premium v3 plans, a third
Cosmos DB region with zones, provisioned throughput and another table name."""

import json
from pathlib import Path

import pytest

from stacks.config import load_environment
from stacks.synth import synthesize
from tests.stacks.synthesized import blocks, client_certificate, only

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {
    "state.backend": "azurerm",
    "state.resource_group_name": "todo-api-tfstate-rg",
    "state.storage_account_name": "todoapitfstate",
    "certificate.pfx_path": ".certs/apim-client.pfx",
    "certificate.issuer": "CN=Todo API Test CA,O=Contoso,C=AU",
    "gateway.backend_custom_domain": "api-origin.contoso.com",
    "app_service.plan_sku": "P1v3",
    "app_service.instances": 2,
    "app_service.zone_balancing": True,
    "app_service.scm_allowed_cidrs": ["203.0.113.0/24"],
    "data_store.third_region": "southeastasia",
    "data_store.zone_redundant_regions": ["australiaeast", "southeastasia"],
    "data_store.throughput_mode": "provisioned",
    "data_store.throughput": 1200,
    "data_store.table_name": "Todos2",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = load_environment("prod", OPTIONS)
    (path,) = synthesize([config], tmp_path_factory.mktemp("options"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_remote_state_uses_the_azurerm_backend_with_oidc(stack):
    assert stack["terraform"]["backend"] == {
        "azurerm": {
            "container_name": "tfstate",
            "key": "todo-api-prod.tfstate",
            "resource_group_name": "todo-api-tfstate-rg",
            "storage_account_name": "todoapitfstate",
            "use_azuread_auth": True,
            "use_oidc": True,
        }
    }


def test_imported_pfx_is_read_at_apply_time_with_a_sensitive_password(stack):
    """The apply's tool imports it; the password reaches it in its environment, from a
    sensitive variable (Terraform hides a provisioner's output that could show it)."""
    _, ensured = client_certificate(stack)
    assert stack["variable"]["client_certificate_password"]["sensitive"] is True
    # absolute, from the project root: Terraform runs in cdktf.out/stacks/<stack>
    pfx = REPO / ".certs" / "apim-client.pfx"
    step = ensured["provisioner"][0]["local-exec"]
    assert f" --pfx {pfx} " in step["command"] or step["command"].endswith(f" --pfx {pfx}")
    assert step["environment"]["CLIENT_CERTIFICATE_PASSWORD"] == (
        "${var.client_certificate_password}")
    # a new PFX makes the tool run again
    assert ensured["triggers_replace"]["pfx_sha256"] == f'${{filesha256("{pfx}")}}'


def test_imported_pfx_issuer_reaches_the_app_settings(stack):
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["app_settings"]["CLIENT_CERT_ISSUER"] == "CN=Todo API Test CA,O=Contoso,C=AU"


def test_custom_domain_backend_validates_the_certificate_name(stack):
    (backend,) = [
        b
        for b in blocks(stack, "azurerm_api_management_backend").values()
        if b["name"] == "traffic-manager"
    ]
    assert backend["url"] == "https://api-origin.contoso.com"
    assert backend["tls"] == {"validate_certificate_chain": True, "validate_certificate_name": True}


def test_premium_plans_balance_across_zones(stack):
    for plan in blocks(stack, "azurerm_service_plan").values():
        assert (plan["sku_name"], plan["worker_count"]) == ("P1v3", 2)
        assert plan["zone_balancing_enabled"] is True
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["app_settings"]["WEB_CONCURRENCY"] == "4"  # 2 per vCPU


def test_scm_site_allows_only_the_configured_deploy_ranges(stack):
    for app in blocks(stack, "azurerm_linux_web_app").values():
        rules = app["site_config"]["scm_ip_restriction"]
        assert [(r["ip_address"], r["action"]) for r in rules] == [("203.0.113.0/24", "Allow")]


def test_third_region_is_the_last_failover_target(stack):
    _, cosmos = only(stack, "azurerm_cosmosdb_account")
    assert [
        (g["location"], g["failover_priority"], g["zone_redundant"]) for g in cosmos["geo_location"]
    ] == [
        ("australiaeast", 0, True),
        ("australiasoutheast", 1, False),
        ("southeastasia", 2, True),
    ]
    assert stack["output"]["cosmos_regions"]["value"] == [
        "australiaeast",
        "australiasoutheast",
        "southeastasia",
    ]


def test_configured_table_name_and_throughput_reach_the_table_and_the_apps(stack):
    _, table = only(stack, "azurerm_cosmosdb_table")
    assert (table["name"], table["throughput"]) == ("Todos2", 1200)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["app_settings"]["TABLE_NAME"] == "Todos2"


def test_an_absolute_pfx_path_is_kept_and_relative_ones_do_not_depend_on_the_cwd(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    relative = load_environment("prod", OPTIONS).certificate
    assert relative.pfx_file == str(REPO / ".certs" / "apim-client.pfx")
    absolute = load_environment("prod", {**OPTIONS, "certificate.pfx_path": "/srv/pfx/c.pfx"})
    assert absolute.certificate.pfx_file == "/srv/pfx/c.pfx"


def test_dual_with_a_public_custom_domain_offers_it_as_the_first_url(tmp_path_factory):
    config = load_environment(
        "dev", {"gateway.topology": "dual", "gateway.public_custom_domain": "api.contoso.com"}
    )
    (path,) = synthesize([config], tmp_path_factory.mktemp("dual-domain"))
    urls = json.loads(path.read_text(encoding="utf-8"))["output"]["gateway_urls"]["value"]
    assert urls[0] == "https://api.contoso.com"
    assert len(urls) == 3  # then each instance's own URL
