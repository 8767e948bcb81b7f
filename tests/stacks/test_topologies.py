"""The synthesized Terraform for every environment x topology: counts, critical settings and
the cross-references that make the request path work."""

import json
import re
from pathlib import Path

import pytest

from stacks import drills
from stacks.config import load_environment
from tests.stacks.synthesized import (
    ENVIRONMENTS,
    TOPOLOGIES,
    blocks,
    client_certificate,
    only,
    ref,
)
from tools.delivery import stack_outputs

TEMPLATE = "azurerm_resource_group_template_deployment"
ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
GATEWAYS = {"single": 1, "multi-region": 1, "dual": 2}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def case(request, synthesized_stacks):
    environment, topology = request.param
    return environment, topology, synthesized_stacks[(environment, topology)]


def drills_enabled(environment: str) -> bool:
    """prod's file turns the drills on, dev's leaves them off (tests/stacks/test_drills.py)."""
    return load_environment(environment).drills.enabled


def entra(environment: str) -> bool:
    """prod's file takes Entra ID tokens, dev's does not (tests/stacks/test_api_identity.py)."""
    return load_environment(environment).auth.entra


def identity_counts(drills: bool) -> dict[str, int]:
    """What `auth.mode = "entra"` adds (no auth.client_ids here): the API and the example client
    with their principals, the identifier URI, the client's federated credential, both app
    roles to the client and, with drills, to the load test engines' identity."""
    callers = 1 + drills
    return {
        "azuread_application": 2,
        "azuread_application_identifier_uri": 1,
        "azuread_service_principal": 2,
        "azuread_application_federated_identity_credential": 1,
        "azuread_app_role_assignment": 2 * callers,
        "azurerm_user_assigned_identity": int(drills),
    }


def drill_counts(regions: int = 2) -> dict[str, int]:
    """What `drills.enabled` adds: the load testing resource with its secret (an ARM deployment
    and its revision), its identity's
    Secrets User, the deployer's Load Test Contributor and its logs; a target, capability,
    experiment and role assignment per fault (each region's web app, the account, the vault)."""
    faults = regions + 2
    return {
        "azurerm_load_test": 1,
        "azurerm_resource_group_template_deployment": 1,
        "terraform_data": 1,
        "azurerm_role_assignment": 2 + faults,
        "azurerm_monitor_diagnostic_setting": 1,
        "azurerm_chaos_studio_target": faults,
        "azurerm_chaos_studio_capability": faults,
        "azurerm_chaos_studio_experiment": faults,
    }


def test_resource_counts_follow_the_topology(case):
    environment, topology, stack = case
    gateways = GATEWAYS[topology]
    expected = {
        "azurerm_resource_group": 3,
        "azurerm_service_plan": 2,
        "azurerm_linux_web_app": 2,
        "azurerm_linux_web_app_slot": 2,  # staging, one per web app (tests/stacks/test_slots.py)
        "azurerm_application_insights": 2,
        "azurerm_log_analytics_workspace": 1,
        "azurerm_key_vault": 1,
        # the health key's secret (through ARM) and its revision; the certificate's tool
        "terraform_data": 1 + 1,
        "random_password": 2,
        "azurerm_traffic_manager_profile": 1 + (gateways == 2),
        "azurerm_traffic_manager_azure_endpoint": 2,
        "azurerm_traffic_manager_external_endpoint": 2 if gateways == 2 else 0,
        "azurerm_api_management": gateways,
        "azurerm_api_management_certificate": gateways,
        "azurerm_api_management_backend": 3 * gateways,
        "azurerm_api_management_api": gateways,
        "azurerm_api_management_api_policy": gateways,
        "azurerm_api_management_product": gateways,
        "azurerm_api_management_product_api": gateways,
        "azurerm_api_management_subscription": gateways,
        "azurerm_api_management_logger": gateways,
        "azurerm_api_management_api_diagnostic": gateways,
        # deployer + the Key Vault reference identity + one per web app and slot + one per gateway
        "azurerm_role_assignment": 1 + 1 + 2 + 2 + gateways,
        "azurerm_user_assigned_identity": 1,
        # waits for role propagation: administrators, reference identity, each gateway
        "time_sleep": 1 + 1 + gateways,
        "azurerm_cosmosdb_account": 1,
        "azurerm_cosmosdb_table": 1,
        # the web apps' Cosmos DB Table data-plane role (no azurerm resource for it)
        # and the health key's Key Vault secret (stacks/key_vault.py add_secret)
        "azurerm_resource_group_template_deployment": 1 + 1,
        # web apps, slots, Key Vault, each Traffic Manager, each gateway, the Cosmos DB account
        "azurerm_monitor_diagnostic_setting": 2 + 2 + 1 + (1 + (gateways == 2)) + gateways + 1,
        "azurerm_monitor_action_group": 1,
        # each Traffic Manager, each gateway, each web app (docs/operations.md)
        "azurerm_monitor_metric_alert": (1 + (gateways == 2)) + gateways + 2 + 2,
        "azurerm_application_insights_workbook": 1,
    }
    for kind, count in drill_counts().items():
        expected[kind] = expected.get(kind, 0) + (count if drills_enabled(environment) else 0)
    if entra(environment):
        for kind, count in identity_counts(drills_enabled(environment)).items():
            expected[kind] = expected.get(kind, 0) + count
    if load_environment(environment).private_network:
        # per region: a VNet with two subnets, endpoints for the table and the vault, each in
        # its own DNS zone linked to that VNet (tests/stacks/test_network.py)
        expected.update({
            "azurerm_virtual_network": 2, "azurerm_subnet": 4, "azurerm_private_endpoint": 4,
            "azurerm_private_dns_zone": 4, "azurerm_private_dns_zone_virtual_network_link": 4,
        })
    counts = {kind: len(blocks(stack, kind)) for kind in expected}
    assert counts == expected
    assert set(stack["resource"]) <= set(expected)


def test_web_apps_carry_every_security_setting(case):
    _, _, stack = case
    for app in blocks(stack, "azurerm_linux_web_app").values():
        site = app["site_config"]
        assert (app["https_only"], app["client_affinity_enabled"]) == (True, False)
        assert app["client_certificate_enabled"] is True
        assert app["client_certificate_mode"] == "Required"
        assert app["client_certificate_exclusion_paths"] == "/health"
        assert app["ftp_publish_basic_authentication_enabled"] is False
        assert app["webdeploy_publish_basic_authentication_enabled"] is False
        assert app["identity"]["type"] == "SystemAssigned, UserAssigned"
        assert (site["minimum_tls_version"], site["http2_enabled"]) == ("1.2", False)
        assert (site["ftps_state"], site["always_on"]) == ("Disabled", True)
        assert site["ip_restriction_default_action"] == "Deny"
        assert site["scm_ip_restriction_default_action"] == "Deny"
        assert site["scm_use_main_ip_restriction"] is False
        assert site["application_stack"] == {"python_version": "3.12"}
        assert site["app_command_line"] == "bash app/startup.sh"
        assert site["health_check_eviction_time_in_min"] == 2


def test_health_check_and_probe_use_the_keyed_path(case):
    _, _, stack = case
    key_id, _ = next(
        (i, b) for i, b in blocks(stack, "random_password").items() if "health-key" in i
    )
    keyed = f"/health/{ref('random_password', key_id, 'result')}"
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["site_config"]["health_check_path"] == keyed
    app_profile = _app_profile(stack)
    assert app_profile["monitor_config"]["path"] == keyed


def test_traffic_manager_probe_settings_give_a_30_second_failover(case):
    _, _, stack = case
    profile = _app_profile(stack)
    assert profile["traffic_routing_method"] == "Performance"
    assert profile["dns_config"]["ttl"] == 10
    assert profile["monitor_config"] == {
        **profile["monitor_config"],
        "protocol": "HTTPS",
        "port": 443,
        "interval_in_seconds": 10,
        "timeout_in_seconds": 5,
        "tolerated_number_of_failures": 1,
        "expected_status_code_ranges": ["200-299"],
    }


def test_traffic_manager_endpoints_target_both_web_apps(case):
    _, _, stack = case
    profile_id = _app_profile_id(stack)
    targets = {
        e["target_resource_id"]
        for e in blocks(stack, "azurerm_traffic_manager_azure_endpoint").values()
        if e["profile_id"] == ref("azurerm_traffic_manager_profile", profile_id, "id")
    }
    web_apps = {
        ref("azurerm_linux_web_app", i, "id") for i in blocks(stack, "azurerm_linux_web_app")
    }
    assert targets == web_apps


def test_apim_backend_url_is_the_traffic_manager_fqdn(case):
    _, _, stack = case
    fqdn = ref("azurerm_traffic_manager_profile", _app_profile_id(stack), "fqdn")
    backends = [
        b
        for b in blocks(stack, "azurerm_api_management_backend").values()
        if b["name"] == "traffic-manager"
    ]
    assert backends and all(b["url"] == f"https://{fqdn}" for b in backends)
    # chain-only validation: the TM name is not on the *.azurewebsites.net certificate
    assert all(
        b["tls"] == {"validate_certificate_chain": True, "validate_certificate_name": False}
        for b in backends
    )


def test_no_backend_pins_the_client_certificate_by_thumbprint(case):
    """A thumbprint names one certificate version: it breaks at the first Key Vault renewal.
    The policy presents the certificate by id instead (tests/stacks/test_gateway_policy.py)."""
    _, _, stack = case
    for backend in blocks(stack, "azurerm_api_management_backend").values():
        assert "credentials" not in backend


def test_every_apim_public_ip_is_in_every_web_app_allow_list(case):
    _, topology, stack = case
    apim_ips = set()
    for apim_id, apim in blocks(stack, "azurerm_api_management").items():
        apim_ips.add(f"${{element(azurerm_api_management.{apim_id}.public_ip_addresses, 0)}}/32")
        for i, _ in enumerate(apim.get("additional_location", [])):
            apim_ips.add(
                f"${{element(azurerm_api_management.{apim_id}.additional_location[{i}]"
                ".public_ip_addresses, 0)}/32"
            )
    assert len(apim_ips) == (1 if topology == "single" else 2)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        rules = app["site_config"]["ip_restriction"]
        allowed = {r["ip_address"] for r in rules if r.get("ip_address")}
        assert allowed == apim_ips
        assert {"AzureTrafficManager"} == {r["service_tag"] for r in rules if r.get("service_tag")}
        assert all(r["action"] == "Allow" for r in rules)


def test_app_settings_are_what_the_app_reads(case):
    from app.settings import APP_SETTING_NAMES
    from stacks.regional_app import PLATFORM_SETTINGS, SWAP_WARMUP_SETTINGS

    environment, _, stack = case
    app_owned = {
        "APP_ENV",
        "HEALTH_CHECK_KEY",
        "CLIENT_CERT_SUBJECT",
        "CLIENT_CERT_ISSUER",
        "CLIENT_CERT_PINNED_KEYS",
        "WEB_CONCURRENCY",
        "STORE",
        "TABLE_ENDPOINT",
        "TABLE_NAME",
        "AUTH_MODE",  # the other AUTH_* with "entra" (tests/stacks/test_api_identity.py)
    }
    if entra(environment):
        app_owned |= {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_ALLOWED_CLIENT_IDS"}
    # the swap warm-up settings are the platform's too (tests/stacks/test_slots.py)
    platform = set(PLATFORM_SETTINGS) | {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    platform |= set(SWAP_WARMUP_SETTINGS)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        settings = app["app_settings"]
        assert app_owned <= set(APP_SETTING_NAMES)
        assert set(settings) - platform == app_owned
        assert settings["APP_ENV"] == "production"
        assert settings["SCM_DO_BUILD_DURING_DEPLOYMENT"] == "true"


def test_health_key_and_pinned_key_come_from_key_vault(case):
    _, _, stack = case
    vault_id, _ = only(stack, "azurerm_key_vault")
    uri = ref("azurerm_key_vault", vault_id, "vault_uri")
    (writer,) = [i for i, d in blocks(stack, TEMPLATE).items()
                 if d["name"].endswith("-secret-health-check-key")]
    cert_id, _ = client_certificate(stack)
    for app in blocks(stack, "azurerm_linux_web_app").values():
        settings = app["app_settings"]
        assert settings["HEALTH_CHECK_KEY"] == (
            f"@Microsoft.KeyVault(SecretUri={uri}secrets/health-check-key)"
        )
        # the certificate's public part (a secret the tool writes): the app pins its key,
        # which renewals keep
        assert settings["CLIENT_CERT_PINNED_KEYS"] == (
            f"@Microsoft.KeyVault(SecretUri={uri}secrets/apim-client-certificate-public)"
        )
        # both exist before the app resolves them
        assert f"{TEMPLATE}.{writer}" in app["depends_on"]
        assert f"terraform_data.{cert_id}" in app["depends_on"]
        assert "CLIENT_CERT_THUMBPRINTS" not in settings
        assert settings["CLIENT_CERT_ISSUER"] == settings["CLIENT_CERT_SUBJECT"]  # Self-signed


def test_client_certificate_is_generated_in_key_vault_by_the_apply(case):
    """The apply's tool makes it on the data plane (its policy: tests/tools/test_key_vault.py);
    no Terraform resource refreshes it, so plans never read the vault's data plane."""
    _, _, stack = case
    vault_id, _ = only(stack, "azurerm_key_vault")
    cert_id, ensured = client_certificate(stack)
    (step,) = ensured["provisioner"]
    command = step["local-exec"]["command"]
    assert command.startswith('"$${TODO_API_PYTHON:-.venv/bin/python}" -m tools.delivery.key_vault'
                              " ensure-certificate ")
    assert "--pfx" not in command  # nothing imported: no key material anywhere
    assert step["local-exec"]["working_dir"] == "../../.."  # the project root
    assert step["local-exec"]["environment"] == {
        "KEY_VAULT_NAME": ref("azurerm_key_vault", vault_id, "name")}
    # made again when the vault or the policy's inputs change
    assert ensured["triggers_replace"]["vault_id"] == ref("azurerm_key_vault", vault_id, "id")
    # after Key Vault Administrator has propagated to whoever applies
    (wait,) = ensured["depends_on"]
    assert wait.startswith("time_sleep.secrets_administrator-propagation")
    assert not blocks(stack, "azurerm_key_vault_certificate")
    assert not blocks(stack, "azurerm_key_vault_secret")
    for apim_cert in blocks(stack, "azurerm_api_management_certificate").values():
        assert apim_cert["key_vault_secret_id"] == (
            f"{ref('azurerm_key_vault', vault_id, 'vault_uri')}secrets/apim-client-certificate")
        assert f"terraform_data.{cert_id}" in apim_cert["depends_on"]


def test_key_vault_uses_rbac_with_purge_protection(case):
    _, _, stack = case
    _, vault = only(stack, "azurerm_key_vault")
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert "access_policy" not in vault


def test_every_identity_that_reads_key_vault_has_a_role(case):
    _, _, stack = case
    principals = {
        a["principal_id"]
        for a in blocks(stack, "azurerm_role_assignment").values()
        if a.get("role_definition_name") == "Key Vault Secrets User"
    }
    expected = {
        ref(kind, i, "identity[0].principal_id")
        for kind in ("azurerm_linux_web_app", "azurerm_linux_web_app_slot")
        for i in blocks(stack, kind)
    }
    expected |= {
        ref("azurerm_api_management", i, "identity[0].principal_id")
        for i in blocks(stack, "azurerm_api_management")
    }
    expected |= {  # the Key Vault reference identity; not the load test engines' (no secret)
        ref("azurerm_user_assigned_identity", i, "principal_id")
        for i in blocks(stack, "azurerm_user_assigned_identity")
        if i != "load-test-engine-identity"
    }
    # drills: the load test resolves its secret reference (tests/stacks/test_drills.py)
    expected |= {
        ref("azurerm_load_test", i, "identity[0].principal_id")
        for i in blocks(stack, "azurerm_load_test")
    }
    assert principals == expected


def test_subscriptions_are_active_and_share_one_key(case):
    _, _, stack = case
    subscriptions = blocks(stack, "azurerm_api_management_subscription").values()
    assert {s["state"] for s in subscriptions} == {"active"}
    assert {s["primary_key"] for s in subscriptions} == {
        ref("random_password", "subscription-key", "result")
    }


def test_api_is_imported_from_the_openapi_file_and_requires_a_key(case):
    _, _, stack = case
    document = json.loads((REPO / "app" / "openapi.json").read_text(encoding="utf-8"))
    for api in blocks(stack, "azurerm_api_management_api").values():
        assert api["import"]["content_format"] == "openapi+json"
        assert (
            json.loads(api["import"]["content_value"])["paths"].keys() == document["paths"].keys()
        )
        assert (api["path"], api["subscription_required"]) == ("todo", True)
        assert api["protocols"] == ["https"]


def test_api_policy_retries_retry_safe_requests_against_the_other_region(case):
    _, _, stack = case
    backends = {b["name"] for b in blocks(stack, "azurerm_api_management_backend").values()}
    assert backends == {"traffic-manager", "app-aue", "app-ause"}
    for policy in blocks(stack, "azurerm_api_management_api_policy").values():
        xml = policy["xml_content"]
        assert '<set-backend-service backend-id="traffic-manager" />' in xml
        assert "<retry " in xml and "context.Response.StatusCode == 503" in xml
        [retry_safe] = re.findall(r'<set-variable name="retry-safe" value="([^"]*)"', xml)
        assert "&quot;POST&quot;" not in retry_safe and "&quot;GET&quot;" in retry_safe
        assert "ContainsKey(&quot;Idempotency-Key&quot;)" in xml
        assert "context.Deployment.Region == &quot;Australia Southeast&quot;" in xml
        assert '<set-variable name="fallback-backend" value="app-aue" />' in xml
        assert '<set-variable name="fallback-backend" value="app-ause" />' in xml


def test_gateway_shape_follows_the_topology(case):
    _, topology, stack = case
    services = list(blocks(stack, "azurerm_api_management").values())
    locations = [s.get("additional_location", []) for s in services]
    if topology == "multi-region":
        assert locations == [[{"location": "australiasoutheast"}]]
        assert services[0]["sku_name"].startswith("Premium_")
    elif topology == "dual":
        assert sorted(s["location"] for s in services) == ["australiaeast", "australiasoutheast"]
        assert locations == [[], []]
        # one construct, two instances: identical but for names and places
        strip = {"name", "location", "resource_group_name", "//"}
        a, b = ({k: v for k, v in s.items() if k not in strip} for s in services)
        assert a == b
    else:
        assert locations == [[]]
    assert all(s["timeouts"]["create"] == "3h" for s in services)


def test_dual_puts_a_second_traffic_manager_in_front_of_both_gateways(synthesized_stacks):
    stack = synthesized_stacks[("prod", "dual")]
    endpoints = blocks(stack, "azurerm_traffic_manager_external_endpoint").values()
    assert sorted(e["endpoint_location"] for e in endpoints) == [
        "australiaeast",
        "australiasoutheast",
    ]
    gateway_profiles = [
        p
        for p in blocks(stack, "azurerm_traffic_manager_profile").values()
        if p["monitor_config"]["path"] == "/status-0123456789abcdef"
    ]
    assert len(gateway_profiles) == 1
    # The gateways' Traffic Manager name presents *.azure-api.net: not offered as a URL
    # without gateway.public_custom_domain; the instances' own URLs work.
    urls = stack["output"]["gateway_urls"]["value"]
    assert not [u for u in urls if "azurerm_traffic_manager" in u]
    assert urls[0].startswith("${azurerm_api_management.gateway-australiaeast_")


def test_default_topologies_are_single_for_dev_and_multi_region_for_prod():
    from stacks.config import load_environments

    dev, prod = load_environments()
    assert (dev.gateway.topology, dev.gateway.sku) == ("single", "Developer_1")
    assert (prod.gateway.topology, prod.gateway.sku) == ("multi-region", "Premium_1")


def test_provider_purges_and_recovers_soft_deleted_apim(case):
    _, _, stack = case
    (azurerm,) = stack["provider"]["azurerm"]
    assert azurerm["features"][0]["api_management"] == [
        {"purge_soft_delete_on_destroy": True, "recover_soft_deleted": True}
    ]
    assert stack["terraform"]["required_providers"]["azurerm"]["version"] == "4.55.0"
    assert stack["terraform"]["required_providers"]["random"]["version"] == "3.7.2"


def test_outputs_have_the_fixed_names(case):
    environment, topology, stack = case
    outputs = stack["output"]
    # exactly the outputs the deploy helpers read (tools/delivery/stack_outputs.py), secrets sensitive
    known = {
        *stack_outputs.LIST_OUTPUTS,
        *stack_outputs.TEXT_OUTPUTS,
        *stack_outputs.OPTIONAL_LIST_OUTPUTS,
        *stack_outputs.OPTIONAL_TEXT_OUTPUTS,
        *stack_outputs.WORKBOOK_OUTPUTS,
    }
    # ... and the staging slots' host names, the bake time and the client certificate's place,
    # read by the release driver only
    # (optional there: absent with app_service.staging_slot = false; tests/stacks/test_slots.py)
    # ... and, with drills.enabled, what the drill tools read (tests/stacks/test_drills.py)
    drill_outputs = set(drills.OUTPUTS) if drills_enabled(environment) else set()
    # ... and, with auth.mode entra, what a client needs for a token (tests/stacks/
    # test_api_identity.py) and, with drills too, the load test engines' identity
    if entra(environment):
        drill_outputs |= {"api_client_id", "api_identifier_uri", "example_client_id", "tenant_id"}
        if drills_enabled(environment):
            drill_outputs.add(drills.ENGINE_IDENTITY_OUTPUT)
    assert set(outputs) == known | drill_outputs | {
        stack_outputs.STAGING_OUTPUT, stack_outputs.BAKE_OUTPUT, *stack_outputs.CERTIFICATE_OUTPUTS}
    sensitive = {name for name, o in outputs.items() if o.get("sensitive")}
    assert sensitive == set(stack_outputs.SENSITIVE_OUTPUTS)
    assert outputs["web_app_names"]["value"][0].startswith(
        "${azurerm_linux_web_app.app-australiaeast_"
    )  # primary first
    assert [g.split(".")[1] for g in outputs["web_app_resource_group_names"]["value"]] == [
        "group-australiaeast",
        "group-australiasoutheast",
    ]  # each web app's own group, in web_app_names order
    assert outputs["api_path"]["value"] == "todo"
    urls = {"single": 1, "multi-region": 3, "dual": 2}[topology]
    assert len(outputs["gateway_urls"]["value"]) == urls


def test_state_is_local_by_default(case):
    _, _, stack = case
    assert list(stack["terraform"]["backend"]) == ["local"]


def _app_profile_id(stack: dict) -> str:
    (profile_id,) = [
        i
        for i, p in blocks(stack, "azurerm_traffic_manager_profile").items()
        if p["monitor_config"]["path"].startswith("/health/")
    ]
    return profile_id


def _app_profile(stack: dict) -> dict:
    return blocks(stack, "azurerm_traffic_manager_profile")[_app_profile_id(stack)]


def test_generated_health_key_fits_what_the_app_accepts(case):
    from app.settings import HEALTH_CHECK_KEY_PATTERN

    _, _, stack = case
    (key,) = [b for i, b in blocks(stack, "random_password").items() if "health-key" in i]
    assert key["special"] is False  # letters and digits only: URL-safe in /health/<key>
    assert HEALTH_CHECK_KEY_PATTERN.fullmatch("a" * key["length"])
