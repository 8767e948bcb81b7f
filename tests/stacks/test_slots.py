"""The staging slots, as synthesized in every environment x topology: one slot `staging` per web
app that is production but for its name and parent (settings, identities, access rules,
certificate settings, site config), the swap warm-up and the settings that stick, the slot
identities' grants, diagnostics, the output; `app_service.staging_slot = false`, the plan SKUs
that cannot have slots, the policy aspect and the plan role's refresh action."""

import json
from typing import get_args

import pytest

from stacks import permissions
from stacks.config import ConfigError, PlanSku, load_environment
from stacks.synth import SynthError, build_app, synth_app, synthesize
from tests.stacks.synthesized import (
    ENVIRONMENTS,
    TOPOLOGIES,
    blocks,
    client_certificate,
    only,
    ref,
    table_role_deployment,
)

ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
WEB_APP, SLOT = "azurerm_linux_web_app", "azurerm_linux_web_app_slot"
WARMUP_SETTINGS = ["WEBSITE_SWAP_WARMUP_PING_PATH", "WEBSITE_SWAP_WARMUP_PING_STATUSES"]
# What only production has: where it runs (a slot runs on its web app's plan, in its group and
# region) and which settings stick (a property of the site, set once for all its slots).
PRODUCTION_ONLY = {"location", "resource_group_name", "service_plan_id", "sticky_settings"}
SLOT_ONLY = {"app_service_id"}
DIFFERENT = {"//", "name"}  # construct metadata, and "staging" vs the site name


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def stack(request, synthesized_stacks):
    return synthesized_stacks[request.param]


def slots_by_web_app(stack: dict) -> list[tuple[str, dict, str, dict]]:
    """(web app id, web app, slot id, slot) for each web app, primary region first."""
    parent = {slot["app_service_id"]: (i, slot) for i, slot in blocks(stack, SLOT).items()}
    return [
        (app_id, app, *parent[ref(WEB_APP, app_id, "id")])
        for app_id, app in sorted(blocks(stack, WEB_APP).items())
    ]


def principal(kind: str, logical_id: str) -> str:
    return ref(kind, logical_id, "identity[0].principal_id")


def test_each_web_app_has_one_slot_named_staging(stack):
    pairs = slots_by_web_app(stack)
    assert len(pairs) == len(blocks(stack, WEB_APP)) == len(blocks(stack, SLOT)) == 2
    assert [slot["name"] for *_, slot in pairs] == ["staging", "staging"]


def test_slot_is_production_but_for_its_name_and_parent(stack):
    """Same app settings (store settings included), identities, Key Vault reference identity,
    HTTPS only, client certificate mode and exclusion path, basic auth off, public access, logs,
    tags and site config: access rules, SCM rules, TLS, HTTP/2, health check, always on, command
    line, Python version."""
    for _, app, _, slot in slots_by_web_app(stack):
        assert set(app) - set(slot) == PRODUCTION_ONLY
        assert set(slot) - set(app) == SLOT_ONLY
        shared = set(app) - PRODUCTION_ONLY - DIFFERENT
        assert {key: slot[key] for key in shared} == {key: app[key] for key in shared}
        assert len(shared) >= 15  # the comparison covers the blocks that matter


def test_slot_keeps_the_access_rules_and_certificate_settings(stack):
    """The parts a release smokes through, named (the test above compares everything)."""
    for _, app, _, slot in slots_by_web_app(stack):
        for key in (
            "ip_restriction",
            "ip_restriction_default_action",
            "scm_ip_restriction_default_action",
        ):
            assert slot["site_config"][key] == app["site_config"][key], key
        assert slot["site_config"]["ip_restriction_default_action"] == "Deny"
        assert {r.get("service_tag") for r in slot["site_config"]["ip_restriction"]} >= {
            "AzureTrafficManager"
        }
        assert (slot["client_certificate_mode"], slot["client_certificate_exclusion_paths"]) == (
            "Required",
            "/health",
        )


def test_swaps_warm_up_on_the_keyed_health_path_and_accept_only_200(stack):
    for _, app, _, slot in slots_by_web_app(stack):
        for site in (app, slot):
            settings = site["app_settings"]
            assert (
                settings["WEBSITE_SWAP_WARMUP_PING_PATH"]
                == (site["site_config"]["health_check_path"])
            )
            assert settings["WEBSITE_SWAP_WARMUP_PING_PATH"].startswith(
                "/health/${random_password."
            )
            assert settings["WEBSITE_SWAP_WARMUP_PING_STATUSES"] == "200"


def test_only_the_warm_up_settings_stick_to_their_slot(stack):
    for _, app, _, _ in slots_by_web_app(stack):
        assert app["sticky_settings"] == {"app_setting_names": WARMUP_SETTINGS}
        assert set(WARMUP_SETTINGS) <= set(app["app_settings"])


def test_slot_identity_reads_the_health_key_like_production(stack):
    vault_id, _ = only(stack, "azurerm_key_vault")
    readers = {
        a["principal_id"]: a
        for a in blocks(stack, "azurerm_role_assignment").values()
        if a.get("role_definition_name") == "Key Vault Secrets User"
    }
    for app_id, _, slot_id, _ in slots_by_web_app(stack):
        production, staging = readers[principal(WEB_APP, app_id)], readers[principal(SLOT, slot_id)]
        assert staging["scope"] == production["scope"] == ref("azurerm_key_vault", vault_id, "id")
        assert staging["principal_type"] == "ServicePrincipal"


def test_slot_identity_gets_the_table_data_role_like_production(stack):
    _, deployment = table_role_deployment(stack)
    principals = json.loads(deployment["parameters_content"])["principalIds"]["value"]
    for app_id, _, slot_id, _ in slots_by_web_app(stack):
        assert principal(WEB_APP, app_id) in principals
        assert principal(SLOT, slot_id) in principals
    assert len(principals) == 4


def test_slot_logs_go_to_the_workspace(stack):
    workspace_id, _ = only(stack, "azurerm_log_analytics_workspace")
    targets = {
        s["target_resource_id"]: s["log_analytics_workspace_id"]
        for s in blocks(stack, "azurerm_monitor_diagnostic_setting").values()
    }
    for _, _, slot_id, _ in slots_by_web_app(stack):
        assert targets[ref(SLOT, slot_id, "id")] == ref(
            "azurerm_log_analytics_workspace", workspace_id, "id"
        )


def test_output_lists_the_slots_host_names_in_web_app_order(stack):
    outputs = stack["output"]
    expected = [
        ref(SLOT, slot_id, "default_hostname") for _, _, slot_id, _ in slots_by_web_app(stack)
    ]
    assert outputs["web_app_staging_hostnames"]["value"] == expected
    assert expected[0].startswith(f"${{{SLOT}.app-australiaeast_")  # primary first
    assert [n.split(".")[1].split("_")[0] for n in outputs["web_app_names"]["value"]] == [
        h.split(".")[1].split("_")[0] for h in expected
    ]
    assert not outputs["web_app_staging_hostnames"].get("sensitive")


def test_the_release_finds_its_bake_time_and_client_certificate_in_the_outputs(stack):
    outputs = stack["output"]
    (vault_id, _) = only(stack, "azurerm_key_vault")
    (_, ensured) = client_certificate(stack)
    assert outputs["key_vault_name"]["value"] == ref("azurerm_key_vault", vault_id, "name")
    # The certificate the apply's tool makes (stacks/key_vault.py ClientCertificate).
    assert outputs["client_certificate_name"]["value"] == ensured["triggers_replace"]["name"]
    assert "--name apim-client-certificate " in ensured["provisioner"][0]["local-exec"]["command"]
    assert outputs["release_bake_seconds"]["value"] == 300


def test_the_bake_time_comes_from_the_config(tmp_path):
    config = load_environment("dev", {"app_service.release_bake_seconds": 90})
    (path,) = synthesize([config], tmp_path)
    assert json.loads(path.read_text())["output"]["release_bake_seconds"]["value"] == 90
    with pytest.raises(ConfigError, match="release_bake_seconds"):
        load_environment("dev", {"app_service.release_bake_seconds": -1})


# Without slots --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def without_slots(tmp_path_factory) -> dict:
    config = load_environment("prod", {"app_service.staging_slot": False})
    (path,) = synthesize([config], tmp_path_factory.mktemp("no-slots"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_staging_slot_false_removes_the_slots_their_grants_logs_and_output(without_slots):
    assert blocks(without_slots, SLOT) == {}
    for name in ("web_app_staging_hostnames", "release_bake_seconds", "key_vault_name"):
        assert name not in without_slots["output"]
    assert SLOT not in json.dumps(without_slots["resource"])  # no grant or setting names one
    _, deployment = table_role_deployment(without_slots)
    principals = json.loads(deployment["parameters_content"])["principalIds"]["value"]
    assert principals == [principal(WEB_APP, i) for i in sorted(blocks(without_slots, WEB_APP))]


def test_staging_slot_is_on_by_default():
    assert all(load_environment(env).app_service.staging_slot for env in ENVIRONMENTS)


# Configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["B1", "B3", "F1"])
def test_a_plan_without_slots_is_refused_in_one_line(sku):
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", {"app_service.plan_sku": sku, "app_service.staging_slot": True})
    message = str(raised.value)
    accepted = "'S1', 'S2', 'S3', 'P0v3', 'P1v3', 'P2v3' or 'P3v3'"  # all have slots (below)
    assert message.endswith(f": app_service.plan_sku: Input should be {accepted} (got '{sku}')")
    assert "\n" not in message


def test_every_accepted_plan_sku_has_slots():
    """Standard (S*) and Premium v3 (P*v3) have deployment slots; Free and Basic do not, and
    Traffic Manager refuses them anyway. Adding one of those to PlanSku must fail here first."""
    assert all(sku[0] in "SP" for sku in get_args(PlanSku))


def test_staging_slot_takes_a_boolean_only():
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", {"app_service.staging_slot": "sometimes"})
    assert "app_service.staging_slot: Input should be a valid boolean" in str(raised.value)


# Policy and permissions -------------------------------------------------------------------------


def test_a_slot_without_https_only_fails_synth_naming_it(tmp_path):
    app = build_app([load_environment("dev")], tmp_path / "out")
    (stack,) = [c for c in app.node.children if c.node.id == "todo-api-dev"]
    stack.node.find_child("app-australiaeast").node.find_child("staging-slot").add_override(
        "https_only", False
    )
    with pytest.raises(SynthError) as raised:
        synth_app(app)
    assert str(raised.value) == (
        "[todo-api-dev/app-australiaeast/staging-slot] linux web app slot: "
        "https_only must be True, got False"
    )


def test_planning_a_slot_may_list_its_configuration_like_the_web_app():
    row = permissions.RESOURCE_ACTIONS[SLOT]
    assert row.read == (
        "Microsoft.Web/sites/slots/read",
        "Microsoft.Web/sites/slots/config/list/action",
    )
    assert "linux_web_app_slot_resource.go" in row.source
    role = permissions.plan_role("dev", {WEB_APP, SLOT})
    assert "Microsoft.Web/sites/slots/config/list/action" in role.actions
    assert role.allows("Microsoft.Web/sites/slots/config/list/action")


def test_no_web_app_or_slot_sends_its_front_ends_request_log(stack):
    """AppServiceHTTPLogs records each path: the probes' /health/<key> would reach the
    workspace (issue 20, telemetry). The other categories still go."""
    settings = [s for s in stack["resource"]["azurerm_monitor_diagnostic_setting"].values()
                if "linux_web_app" in s["target_resource_id"]]
    assert len(settings) == 4  # each region's web app and its staging slot
    for setting in settings:
        categories = [log.get("category") for log in setting["enabled_log"]]
        assert "AppServiceHTTPLogs" not in categories and None not in categories
        assert "AppServiceConsoleLogs" in categories and "AppServiceAppLogs" in categories
