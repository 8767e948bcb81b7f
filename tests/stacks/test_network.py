"""`network.mode`: public (the default in both environments) synthesizes no network resource and
leaves the data plane as it was; private gives each region a VNet with an app subnet (delegated
to App Service) and an endpoint subnet, integrates the web app and its slot with all outbound
routed through the VNet, and puts a Table and a vault private endpoint in the endpoint subnet,
registered in that region's own private DNS zones, which are linked to that region's VNet only;
the Cosmos DB account's public access is off and the Key Vault's firewall denies by default.
Also: the address plan's validation, the permissions of the new types, and the network diagram
in docs/deploy.md."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import permissions
from stacks.config import (
    PROJECT_ROOT,
    ConfigError,
    load_environment,
    load_environments,
    read_toml,
)
from tests.stacks.synthesized import ENVIRONMENTS, blocks, only, ref
from tools.delivery import diagram

BASELINE = Path(__file__).parent / "data" / "public_mode_blocks.json"
# The data-plane resources private mode changes; public mode must write them as before issue 17.
TOUCHED = ("azurerm_cosmosdb_account", "azurerm_key_vault", "azurerm_linux_web_app",
           "azurerm_linux_web_app_slot")
NETWORK_TYPES = ("azurerm_virtual_network", "azurerm_subnet", "azurerm_private_endpoint",
                 "azurerm_private_dns_zone", "azurerm_private_dns_zone_virtual_network_link")
DEFAULT_TOPOLOGIES = {"dev": "single", "prod": "multi-region"}
SITES = ("azurerm_linux_web_app", "azurerm_linux_web_app_slot")
VNET, SUBNET, ENDPOINT = "azurerm_virtual_network", "azurerm_subnet", "azurerm_private_endpoint"
ZONE, LINK = "azurerm_private_dns_zone", "azurerm_private_dns_zone_virtual_network_link"
ZONES = {"Table": "privatelink.table.cosmos.azure.com", "vault": "privatelink.vaultcore.azure.net"}
DOCS_BEGIN = ("<!-- network diagram: python main.py --set network.mode=private; python -m "
              "tools.delivery.diagram --view network cdktf.out/stacks/todo-api-prod/cdk.tf.json -->\n")
DOCS_END = "<!-- end -->"


def region_of(block: dict) -> str:
    """A block's region: its location, or that of the regional group it is in."""
    location = block.get("location")
    if location and "${" not in location:
        return location
    return re.fullmatch(r"\$\{azurerm_resource_group\.group-([a-z0-9]+)\.name\}",
                        block["resource_group_name"])[1]


def by_region(stack: dict, resource_type: str) -> dict[str, list[tuple[str, dict]]]:
    found: dict[str, list[tuple[str, dict]]] = {}
    for logical_id, block in sorted(blocks(stack, resource_type).items()):
        found.setdefault(region_of(block), []).append((logical_id, block))
    return found


def slot_region(stack: dict, slot: dict) -> str:
    parent = slot["app_service_id"].split(".")[1]
    return region_of(blocks(stack, "azurerm_linux_web_app")[parent])


def subnets(stack: dict, region: str) -> dict[str, tuple[str, dict]]:
    """{subnet name: (logical id, block)} of the region's VNet."""
    [(vnet_id, _)] = by_region(stack, VNET)[region]
    return {block["name"]: (logical_id, block) for logical_id, block in blocks(stack, SUBNET).items()
            if block["virtual_network_name"] == ref(VNET, vnet_id, "name")}


def strip(block: dict) -> dict:
    return {key: value for key, value in block.items() if key != "//"}


@pytest.fixture(params=ENVIRONMENTS)
def env(request) -> str:
    return request.param


@pytest.fixture
def stack(env, private_stacks) -> dict:
    return private_stacks[env]


@pytest.fixture
def config(env):
    return load_environment(env, {"network.mode": "private"})


# Public mode ----------------------------------------------------------------------------------


def test_prod_ships_private_and_dev_public():
    """Prod's data plane is private; dev stays public for cost (docs/deploy.md, "Cost")."""
    assert [c.network.mode for c in load_environments()] == ["public", "private"]
    prod, _ = read_toml(PROJECT_ROOT / "config" / "prod.toml")
    assert prod["network"] == {"mode": "private"}  # explicit, with why: flipping it is one line


def test_public_mode_synthesizes_no_network_resource(public_stacks, synthesized_stacks):
    assert set(public_stacks["prod"]["resource"]) & set(NETWORK_TYPES) == set()
    for (env, _), stack in synthesized_stacks.items():
        if env == "dev":
            assert set(stack["resource"]) & set(NETWORK_TYPES) == set()


def test_public_mode_writes_the_data_plane_as_before(public_stacks):
    """The Cosmos DB account, the Key Vault, the web apps and slots of both environments in
    public mode equal the baseline (tests/stacks/data/public_mode_blocks.json; rewrite it with
    `python -m tests.stacks.test_network` only for a deliberate change)."""
    assert public_blocks(public_stacks) == json.loads(BASELINE.read_text())


def public_blocks(stacks: dict[str, dict]) -> dict:
    """The touched blocks of `{environment: stack}` (each at its default topology)."""
    return {env: {t: {i: strip(b) for i, b in blocks(stacks[env], t).items()} for t in TOUCHED}
            for env in DEFAULT_TOPOLOGIES}


# Private mode: per region --------------------------------------------------------------------


def test_main_synthesizes_both_environments_in_private_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "main.py", "--set", "network.mode=private", "--outdir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    written = sorted(p.parent.name for p in tmp_path.rglob("cdk.tf.json"))
    assert written == ["todo-api-bootstrap", "todo-api-dev", "todo-api-prod"]


def test_each_region_has_one_vnet_with_the_configured_space(stack, config):
    vnets = by_region(stack, VNET)
    assert sorted(vnets) == sorted(config.regions.both)
    for region, [(_, vnet)] in vnets.items():
        assert vnet["address_space"] == [str(config.region_network(region).address_space)]
        assert vnet["resource_group_name"] == ref("azurerm_resource_group", f"group-{region}",
                                                  "name")


def test_each_vnet_has_the_app_subnet_delegated_to_app_service_and_the_endpoint_subnet(
        stack, config):
    for region in config.regions.both:
        plan = config.region_network(region)
        found = subnets(stack, region)
        assert sorted(found) == ["app-integration", "private-endpoints"]
        app, endpoints = found["app-integration"][1], found["private-endpoints"][1]
        assert app["address_prefixes"] == [str(plan.app_subnet)]
        assert endpoints["address_prefixes"] == [str(plan.endpoint_subnet)]
        [delegation] = app["delegation"]
        assert delegation["service_delegation"]["name"] == "Microsoft.Web/serverFarms"
        assert "delegation" not in endpoints


def test_web_app_and_slot_route_all_outbound_through_their_regions_app_subnet(stack, config):
    sites = [(region_of(b), b) for b in blocks(stack, "azurerm_linux_web_app").values()]
    sites += [(slot_region(stack, b), b) for b in blocks(stack, "azurerm_linux_web_app_slot").values()]
    assert sorted(region for region, _ in sites) == sorted(config.regions.both * 2)
    for region, site in sites:
        app_subnet, _ = subnets(stack, region)["app-integration"]
        assert site["virtual_network_subnet_id"] == ref(SUBNET, app_subnet, "id")
        assert site["site_config"]["vnet_route_all_enabled"] is True


def test_sites_start_after_their_regions_vault_endpoint_and_its_dns(stack):
    """Key Vault references resolve at creation only through the endpoint (the vault denies the
    rest)."""
    endpoints = by_region(stack, ENDPOINT)
    for kind in SITES:
        for site in blocks(stack, kind).values():
            region = region_of(site) if kind == SITES[0] else slot_region(stack, site)
            [vault] = [i for i, b in endpoints[region]
                       if b["private_service_connection"]["subresource_names"] == ["vault"]]
            assert f"{ENDPOINT}.{vault}" in site["depends_on"]
            assert any(d.startswith(f"{LINK}.") for d in site["depends_on"])


def test_each_region_has_a_table_and_a_vault_endpoint_in_its_endpoint_subnet(stack, config):
    account_id, _ = only(stack, "azurerm_cosmosdb_account")
    vault_id, _ = only(stack, "azurerm_key_vault")
    targets = {"Table": ref("azurerm_cosmosdb_account", account_id, "id"),
               "vault": ref("azurerm_key_vault", vault_id, "id")}
    endpoints = by_region(stack, ENDPOINT)
    assert sorted(endpoints) == sorted(config.regions.both)
    for region, found in endpoints.items():
        endpoint_subnet, _ = subnets(stack, region)["private-endpoints"]
        connections = {b["private_service_connection"]["subresource_names"][0]:
                       (b["private_service_connection"], b) for _, b in found}
        assert sorted(connections) == ["Table", "vault"]
        for subresource, (connection, block) in connections.items():
            assert connection["private_connection_resource_id"] == targets[subresource]
            assert connection["is_manual_connection"] is False
            assert block["subnet_id"] == ref(SUBNET, endpoint_subnet, "id")


def test_each_endpoint_registers_in_its_own_regions_zone(stack):
    zones = {(region, block["name"]): ref(ZONE, i, "id")
             for region, found in by_region(stack, ZONE).items() for i, block in found}
    assert len(zones) == 4
    for region, found in by_region(stack, ENDPOINT).items():
        for _, block in found:
            subresource = block["private_service_connection"]["subresource_names"][0]
            group = block["private_dns_zone_group"]
            assert group["private_dns_zone_ids"] == [zones[(region, ZONES[subresource])]]


def test_each_zone_is_linked_to_its_own_regions_vnet_only(stack):
    vnets = {region: ref(VNET, i, "id") for region, [(i, _)] in by_region(stack, VNET).items()}
    links = blocks(stack, LINK).values()
    for region, found in by_region(stack, ZONE).items():
        for zone_id, _ in found:
            linked = [link for link in links
                      if link["private_dns_zone_name"] == ref(ZONE, zone_id, "name")]
            assert [link["virtual_network_id"] for link in linked] == [vnets[region]]
            assert linked[0]["registration_enabled"] is False


def test_no_vnet_peering(stack):
    assert "azurerm_virtual_network_peering" not in stack["resource"]


# Private mode: the data plane's public side ----------------------------------------------------


def test_cosmos_account_turns_public_access_off_and_lists_no_addresses(stack):
    _, account = only(stack, "azurerm_cosmosdb_account")
    assert account["public_network_access_enabled"] is False
    assert "ip_range_filter" not in account
    assert account["network_acl_bypass_for_azure_services"] is False


def test_key_vault_denies_by_default_lets_trusted_services_in_and_ignores_runner_rules(stack):
    _, vault = only(stack, "azurerm_key_vault")
    assert vault["network_acls"] == {"bypass": "AzureServices", "default_action": "Deny",
                                     "ip_rules": []}
    assert vault["public_network_access_enabled"] is True  # the firewall needs it
    assert vault["lifecycle"]["ignore_changes"] == ["network_acls[0].ip_rules"]
    assert vault["lifecycle"]["prevent_destroy"] is True


def test_inbound_stays_public_behind_the_access_rules(stack):
    for kind in SITES:
        for site in blocks(stack, kind).values():
            assert site["public_network_access_enabled"] is True
            assert site["site_config"]["ip_restriction_default_action"] == "Deny"


# Permissions -----------------------------------------------------------------------------------


def test_every_private_type_has_its_actions_decided(private_stacks):
    types = set().union(*(s["resource"] for s in private_stacks.values()))
    assert set(NETWORK_TYPES) <= types
    for resource_type in NETWORK_TYPES:
        row = permissions.actions_for({resource_type})[resource_type]
        assert row.refresh == row.refresh_data == ()  # GETs only, the source says so
        assert "internal/services/" in row.source and "GET" in row.source


def test_the_bootstrap_of_today_covers_a_switch_to_private(private_stacks, synthesized_stacks):
    """Same plan role actions and provider registrations: the bootstrap, deployed once from the
    public stacks, needs no change when prod flips to private."""
    public = set().union(*(s["resource"] for s in synthesized_stacks.values()))
    private = set().union(*(s["resource"] for s in private_stacks.values()))
    for environment in ENVIRONMENTS:
        assert (permissions.plan_role(environment, public | private).actions
                == permissions.plan_role(environment, public).actions)
    assert permissions.provider_namespaces(public | private) == permissions.provider_namespaces(
        public)


# The network diagram ---------------------------------------------------------------------------


def test_the_docs_network_diagram_is_rendered_from_the_private_prod_stack(private_stacks):
    docs = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    assert DOCS_BEGIN in docs, "docs/deploy.md has no network diagram"
    block = docs.split(DOCS_BEGIN, 1)[1].split(DOCS_END, 1)[0]
    assert block == diagram.network_markdown(private_stacks["prod"]) + "\n"


def test_diagram_places_sites_and_endpoints_in_their_regions_subnets(stack, config):
    view = diagram.build_network(stack)
    for kind, subnet in ((SITES[0], "app-integration"), (SITES[1], "app-integration"),
                         (ENDPOINT, "private-endpoints")):
        for logical_id, block in blocks(stack, kind).items():
            vnet, placed = view.where(f"{kind}.{logical_id}")
            region = slot_region(stack, block) if kind == SITES[1] else region_of(block)
            assert (vnet.region, placed.label.split("<br/>")[0]) == (region, f"subnet {subnet}")
            assert str(config.region_network(region).address_space) in vnet.label


def test_diagram_links_each_zone_to_its_regions_vnet_and_draws_inbound_as_public(stack):
    view = diagram.build_network(stack)
    assert len(view.links) == 4
    assert all(view.zones[zone] == view.vnets[vnet].region for zone, vnet in view.links)
    assert view.inbound and all(label.startswith("public") for label in view.inbound.values())


# Validation ------------------------------------------------------------------------------------

# case: (overrides, the setting the line names, the reason it gives)
BAD_PLANS = {
    "unknown mode": ({"network.mode": "hybrid"}, "network.mode",
                     "Input should be 'public' or 'private' (got 'hybrid')"),
    "subnet outside its VNet": (
        {"network.primary.app_subnet": "10.30.0.0/26"}, "network.primary.app_subnet",
        "10.30.0.0/26 is not inside network.primary.address_space 10.10.0.0/16"),
    "subnets overlapping each other": (
        {"network.secondary.endpoint_subnet": "10.20.0.32/27"},
        "network.secondary.endpoint_subnet",
        "10.20.0.32/27 overlaps network.secondary.app_subnet 10.20.0.0/26"),
    "VNets overlapping across regions": (
        {"network.secondary.address_space": "10.10.128.0/17",
         "network.secondary.app_subnet": "10.10.128.0/26",
         "network.secondary.endpoint_subnet": "10.10.129.0/27"},
        "network.secondary.address_space",
        "10.10.128.0/17 overlaps network.primary.address_space 10.10.0.0/16"),
    "app subnet below App Service's minimum": (
        {"network.primary.app_subnet": "10.10.0.0/29"}, "network.primary.app_subnet",
        "App Service VNet integration needs at least a /28 (a /26 is recommended), got "
        + "10.10.0.0/29"),
    "endpoint subnet too small": (
        {"network.secondary.endpoint_subnet": "10.20.1.0/29"},
        "network.secondary.endpoint_subnet",
        "10.20.1.0/29 has 3 usable addresses (8 minus the 5 Azure reserves), the private "
        + "endpoints need 4 (Cosmos DB: one per account region and one for the global endpoint; "
        + "Key Vault: 1)"),
    "not a network": ({"network.primary.endpoint_subnet": "10.10.1.1/27"},
                      "network.primary.endpoint_subnet",
                      "Input is not a valid IPv4 network (got '10.10.1.1/27')"),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_a_bad_address_plan_is_one_line_naming_the_setting(case):
    overrides, setting, reason = BAD_PLANS[case]
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", {"network.mode": "private", **overrides})
    assert str(raised.value).endswith(f"dev.toml: {setting}: {reason}")
    assert "\n" not in str(raised.value)


def test_a_third_account_region_needs_one_more_endpoint_address():
    """Cosmos DB: one address per account region and one for the global endpoint; the vault 1."""
    third = {"data_store.third_region": "southeastasia"}
    assert load_environment("dev").private_endpoint_addresses == 4
    assert load_environment("dev", third).private_endpoint_addresses == 5
    with pytest.raises(ConfigError, match=r"10\.10\.1\.0/29 has 3 usable .* need 5 "):
        load_environment("dev", {**third, "network.primary.endpoint_subnet": "10.10.1.0/29"})


def test_the_address_plan_is_checked_in_public_mode_too():
    with pytest.raises(ConfigError, match="network.primary.app_subnet: 10.30.0.0/26 is not"):
        load_environment("dev", {"network.primary.app_subnet": "10.30.0.0/26"})


def test_a_partial_plan_keeps_the_other_defaults():
    config = load_environment("dev", {"network.secondary.address_space": "10.21.0.0/16",
                                      "network.secondary.app_subnet": "10.21.0.0/26",
                                      "network.secondary.endpoint_subnet": "10.21.1.0/27"})
    assert str(config.network.primary.address_space) == "10.10.0.0/16"
    assert str(config.region_network("australiasoutheast").address_space) == "10.21.0.0/16"


def write_baseline() -> None:
    """Rewrite the public-mode baseline, after a deliberate change to the touched resources."""
    from tempfile import TemporaryDirectory

    from stacks.synth import synthesize

    with TemporaryDirectory() as out:
        written = synthesize(load_environments({"network.mode": "public"}), Path(out))
        stacks = {path.parent.name.removeprefix("todo-api-"): json.loads(path.read_text())
                  for path in written}
    BASELINE.write_text(json.dumps(public_blocks(stacks), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_baseline()
