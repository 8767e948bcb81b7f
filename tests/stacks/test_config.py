"""Configuration: defaults, per-environment files, overrides, and bad input stopping synth with
one line that names the field, exit 1, no traceback, nothing written."""

import subprocess
import sys
from math import degrees, pi
from pathlib import Path

import pytest

from stacks.config import ConfigError, load_environment, load_environments, parse_overrides
from stacks.regions import EARTH_RADIUS_KM, REGIONS, Region, distance_km

REPO = Path(__file__).resolve().parents[2]
DEPLOYER_ID = "11111111-2222-3333-4444-555555555555"

BAD_SETTINGS = {
    "unknown key": (["gateway.colour=blue"], "gateway.colour: unknown key"),
    "wrong type": (
        ["app_service.instances=two"],
        "app_service.instances: Input should be a valid integer",
    ),
    "same region twice": (
        ["regions.secondary=australiaeast"],
        "regions.secondary: same region twice",
    ),
    "unpaired regions": (
        ["regions.secondary=westeurope"],
        "regions.secondary: australiaeast is paired with australiasoutheast, not westeurope",
    ),
    "unknown region": (["regions.primary=atlantis"], "regions.primary: unknown region 'atlantis'"),
    "unknown SKU": (["gateway.sku=Consumption_0"], "gateway.sku: unknown SKU 'Consumption_0'"),
    "topology/SKU mismatch": (
        ["gateway.topology=multi-region", "gateway.sku=Standard_1"],
        "gateway.sku: topology multi-region needs a Premium SKU, got Standard_1",
    ),
    "malformed email": (
        ["gateway.publisher_email=not-an-email"],
        "gateway.publisher_email: value is not a valid email address",
    ),
    "unknown plan": (["app_service.plan_sku=F1"], "app_service.plan_sku: Input should be"),
    "zones on Standard": (
        ["app_service.zone_balancing=true"],
        "app_service.zone_balancing: needs a Premium v3 plan",
    ),
    "probe timeout": (
        ["traffic_manager.probe_timeout_seconds=10"],
        "traffic_manager.probe_timeout_seconds: must be below the interval",
    ),
    "remote state incomplete": (
        ["state.backend=azurerm"],
        "state.resource_group_name: required with backend = 'azurerm'",
    ),
    "malformed Key Vault administrator": (
        ["key_vault.administrator_object_ids=1111-2222"],
        "key_vault.administrator_object_ids: not an Entra object id (GUID): '1111-2222'",
    ),
    "Key Vault administrator twice": (
        ["key_vault.administrator_object_ids=" + ",".join([DEPLOYER_ID] * 2)],
        "key_vault.administrator_object_ids: listed twice",
    ),
    "malformed --set": (["gateway.topology"], "--set gateway.topology: expected KEY=VALUE"),
    "public custom domain outside dual": (
        ['gateway.public_custom_domain="api.contoso.com"'],
        "gateway.public_custom_domain: only used with topology dual, got single",
    ),
    "throughput below the minimum": (
        ['data_store.throughput_mode="provisioned"', "data_store.throughput=300"],
        "data_store.throughput: provisioned needs 400-1,000,000 RU/s in steps of 100, got 300",
    ),
    "autoscale throughput off its step": (
        ['data_store.throughput_mode="autoscale"', "data_store.throughput=1500"],
        "data_store.throughput: autoscale needs 1,000-1,000,000 RU/s in steps of 1,000, got 1500",
    ),
    "third region equal to the primary": (
        ["data_store.third_region=australiaeast"],
        "data_store.third_region: australiaeast is already regions.primary",
    ),
    "third region equal to the secondary": (
        ["data_store.third_region=australiasoutheast"],
        "data_store.third_region: australiasoutheast is already regions.secondary",
    ),
    "unknown third region": (
        ["data_store.third_region=atlantis"],
        "data_store.third_region: unknown region 'atlantis'",
    ),
    "table name with a dash": (
        ["data_store.table_name=todo-items"],
        "data_store.table_name: must be 3-63 letters and digits starting with a letter",
    ),
    "table name starting with a digit": (
        ["data_store.table_name=1Todo"],
        "starting with a letter, got '1Todo'",
    ),
    "reserved table name": (
        ["data_store.table_name=Tables"],
        "data_store.table_name: 'Tables' is reserved",
    ),
    "Strong consistency across more than 8,000 km": (
        ["regions.primary=brazilsouth", "regions.secondary=southcentralus"],
        (
            "regions.secondary: Cosmos DB refuses Strong consistency for regions more than "
            "8,000 km apart: brazilsouth and southcentralus are 8,087 km apart"
        ),
    ),
    "third region too far for Strong consistency": (
        ["data_store.third_region=brazilsouth"],
        (
            "data_store.third_region: Cosmos DB refuses Strong consistency for regions more than "
            "8,000 km apart: australiaeast and brazilsouth are 13,358 km apart"
        ),
    ),
    "zones in a region the account is not in": (
        ['data_store.zone_redundant_regions=["westeurope"]'],
        "data_store.zone_redundant_regions: 'westeurope' is not one of the account's regions (",
    ),
}


def run_main(*args: str, outdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", "--outdir", str(outdir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_configuration_stops_with_one_line_and_writes_nothing(case, tmp_path):
    assignments, expected = BAD_SETTINGS[case]
    outdir = tmp_path / "cdktf.out"
    result = run_main(*(a for s in assignments for a in ("--set", s)), outdir=outdir)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not outdir.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_configuration_leaves_an_existing_output_untouched(tmp_path):
    outdir = tmp_path / "cdktf.out"
    outdir.mkdir()
    (outdir / "manifest.json").write_text("previous")
    result = run_main("--set", "gateway.sku=Premium_99", outdir=outdir)
    assert result.returncode == 1
    assert (outdir / "manifest.json").read_text() == "previous"


def test_error_names_the_file_that_holds_the_bad_value(tmp_path):
    (tmp_path / "dev.toml").write_text('[gateway]\nsku = "Gold_1"\n')
    with pytest.raises(ConfigError, match=r"dev\.toml: gateway\.sku: unknown SKU 'Gold_1'"):
        load_environment("dev", config_dir=tmp_path)


def test_unknown_key_in_a_file_is_rejected(tmp_path):
    (tmp_path / "prod.toml").write_text("[traffic_manager]\nprobe_interval = 10\n")
    with pytest.raises(ConfigError, match=r"traffic_manager\.probe_interval: unknown key"):
        load_environment("prod", config_dir=tmp_path)


def test_invalid_toml_is_one_line(tmp_path):
    (tmp_path / "dev.toml").write_text("[gateway\n")
    with pytest.raises(ConfigError, match=r"dev\.toml: invalid TOML") as raised:
        load_environment("dev", config_dir=tmp_path)
    assert "\n" not in str(raised.value)


def test_empty_file_takes_every_default(tmp_path):
    (tmp_path / "dev.toml").write_text("")
    config = load_environment("dev", config_dir=tmp_path)
    assert config.regions.both == ("australiaeast", "australiasoutheast")
    assert (config.app_service.plan_sku, config.gateway.topology) == ("S1", "single")
    assert config.traffic_manager.failover_seconds == 30
    assert config.state.backend == "local"
    assert config.stack_name == "todo-api-dev"


def test_every_environment_has_a_file_and_its_own_stack():
    assert [c.stack_name for c in load_environments()] == ["todo-api-dev", "todo-api-prod"]


def test_override_changes_one_value_in_every_environment():
    dev, prod = load_environments({"gateway.topology": "dual"})
    assert dev.gateway.topology == prod.gateway.topology == "dual"
    assert prod.gateway.sku == "Premium_1"  # the rest of the file still applies


def test_overrides_are_parsed_as_toml_values():
    assert parse_overrides(
        ["app_service.instances=3", "app_service.zone_balancing=true", "gateway.topology=dual"]
    ) == {
        "app_service.instances": 3,
        "app_service.zone_balancing": True,
        "gateway.topology": "dual",
    }


def test_required_tags_always_include_the_environment():
    assert load_environment("prod").resource_tags["environment"] == "prod"


def test_workers_default_to_two_per_vcpu_of_the_plan():
    assert load_environment("prod").app_service.workers == 2  # S1: 1 vCPU
    assert load_environment("prod", {"app_service.plan_sku": "P1v3"}).app_service.workers == 4
    explicit = {"app_service.plan_sku": "P1v3", "app_service.web_concurrency": 3}
    assert load_environment("prod", explicit).app_service.workers == 3


def test_data_store_regions_put_the_write_region_first():
    config = load_environment("prod", {"data_store.third_region": "southeastasia"})
    assert config.data_store_regions == ("australiaeast", "australiasoutheast", "southeastasia")
    assert load_environment("dev").data_store_regions == ("australiaeast", "australiasoutheast")


def test_close_paired_regions_keep_strong_consistency():
    config = load_environment("dev", {"regions.primary": "westeurope",
                                      "regions.secondary": "northeurope"})
    assert config.data_store_regions == ("westeurope", "northeurope")
    assert round(distance_km("westeurope", "northeurope")) == 756


def test_distance_is_the_great_circle_between_the_coordinates(monkeypatch):
    """Pole to equator is a quarter of a great circle."""
    monkeypatch.setitem(REGIONS, "north-pole", Region("np", "North Pole", "equator", 90.0, 0.0))
    monkeypatch.setitem(REGIONS, "equator", Region("eq", "Equator", "north-pole", 0.0, 0.0))
    assert distance_km("north-pole", "equator") == pytest.approx(pi / 2 * EARTH_RADIUS_KM)
    assert distance_km("australiaeast", "australiaeast") == 0


@pytest.mark.parametrize(("km", "accepted"), [(7_999, True), (8_001, False)])
def test_strong_consistency_boundary_is_8000_km(monkeypatch, km, accepted):
    """Two made-up paired regions on the equator, `km` apart."""
    east = degrees(km / EARTH_RADIUS_KM)
    monkeypatch.setitem(REGIONS, "testwest", Region("tw", "Test West", "testeast", 0.0, 0.0))
    monkeypatch.setitem(REGIONS, "testeast", Region("te", "Test East", "testwest", 0.0, east))
    overrides = {"regions.primary": "testwest", "regions.secondary": "testeast"}
    if accepted:
        assert load_environment("dev", overrides).regions.both == ("testwest", "testeast")
        return
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", overrides)
    assert str(raised.value) == (
        "config/dev.toml: regions.secondary: Cosmos DB refuses Strong consistency for regions "
        "more than 8,000 km apart: testwest and testeast are 8,001 km apart"
    )
