"""Key Vault Administrator: the configured object ids (the deploy identities), never the
identity that happens to run Terraform, so plans run by the read-only plan identity stay quiet;
the caller only when nothing is configured (a laptop `cdktf deploy`)."""

import json

import pytest

from stacks.config import ConfigError, load_environment
from tests.stacks.synthesized import blocks, client_certificate

DEPLOYER = "11111111-2222-3333-4444-555555555555"
ADMIN_GROUP = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
VARIABLE = "TODO_API_KEY_VAULT_ADMINISTRATOR_OBJECT_IDS_DEV"


def administrator_assignments(stack: dict) -> dict[str, dict]:
    return {
        logical_id: block
        for logical_id, block in blocks(stack, "azurerm_role_assignment").items()
        if block["role_definition_name"] == "Key Vault Administrator"
    }


@pytest.fixture(scope="module")
def configured_stack(tmp_path_factory) -> dict:
    from stacks.synth import synthesize

    config = load_environment(
        "dev", {"key_vault.administrator_object_ids": [DEPLOYER, ADMIN_GROUP]}, environ={}
    )
    (path,) = synthesize([config], tmp_path_factory.mktemp("kv-admins"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_configured_object_ids_are_exactly_the_administrators(configured_stack):
    principals = [a["principal_id"] for a in administrator_assignments(configured_stack).values()]
    assert sorted(principals) == sorted([DEPLOYER, ADMIN_GROUP.lower()])


def test_no_role_assignment_depends_on_who_runs_terraform(configured_stack):
    for block in blocks(configured_stack, "azurerm_role_assignment").values():
        assert "azurerm_client_config" not in block["principal_id"]


def test_secret_and_certificate_wait_for_the_configured_administrators(configured_stack):
    expected = sorted(
        f"azurerm_role_assignment.{logical_id}"
        for logical_id in administrator_assignments(configured_stack)
    )
    waits = {
        logical_id: block
        for logical_id, block in blocks(configured_stack, "time_sleep").items()
        if sorted(block["depends_on"]) == expected
    }
    ((wait_id, wait),) = waits.items()
    assert wait["create_duration"] == "120s"
    # the certificate's tool works on the data plane as whoever applies (secrets go through
    # ARM, which Contributor may write: tests/stacks/test_key_vault_secrets.py)
    _, ensured = client_certificate(configured_stack)
    assert ensured["depends_on"] == [f"time_sleep.{wait_id}"]


def test_without_object_ids_the_caller_is_the_administrator(synthesized_stacks):
    stack = synthesized_stacks[("dev", "single")]
    ((logical_id, assignment),) = administrator_assignments(stack).items()
    assert assignment["principal_id"].startswith("${data.azurerm_client_config.")
    assert assignment["principal_id"].endswith(".object_id}")
    _, ensured = client_certificate(stack)
    (wait_id,) = [
        i
        for i, w in blocks(stack, "time_sleep").items()
        if w["depends_on"] == [f"azurerm_role_assignment.{logical_id}"]
    ]
    assert ensured["depends_on"] == [f"time_sleep.{wait_id}"]


def test_environment_variable_sets_the_object_ids_per_environment():
    environ = {VARIABLE: f" {DEPLOYER}, {ADMIN_GROUP} "}
    dev = load_environment("dev", environ=environ)
    prod = load_environment("prod", environ=environ)
    assert dev.key_vault.administrators == (DEPLOYER, ADMIN_GROUP.lower())
    assert prod.key_vault.administrators == ()


def test_empty_environment_variable_keeps_the_file_value():
    # GitHub expands an unset repository variable to "".
    assert load_environment("dev", environ={VARIABLE: ""}).key_vault.administrators == ()


def test_override_wins_over_the_environment_variable():
    config = load_environment(
        "dev", {"key_vault.administrator_object_ids": [DEPLOYER]}, environ={VARIABLE: ADMIN_GROUP}
    )
    assert config.key_vault.administrators == (DEPLOYER,)


def test_malformed_object_id_from_the_environment_names_field_and_variable():
    with pytest.raises(ConfigError) as raised:
        load_environment("dev", environ={VARIABLE: f"{DEPLOYER},not-a-guid"})
    message = str(raised.value)
    assert "\n" not in message
    assert VARIABLE in message
    assert "key_vault.administrator_object_ids: not an Entra object id (GUID): 'not-a-guid'" in (
        message
    )
