"""The first `cdktf deploy` succeeds in one go: every role assignment to a managed identity
names its principal type, and whatever uses an assignment waits for it to propagate."""

import pytest

from tests.stacks.synthesized import ENVIRONMENTS, TOPOLOGIES, blocks, ref

ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
PROPAGATION = "120s"


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def stack(request, synthesized_stacks):
    return synthesized_stacks[request.param]


def _waits_for(stack: dict, assignment_ids: list[str]) -> str:
    """The time_sleep that depends on exactly these role assignments, as a depends_on entry."""
    expected = sorted(f"azurerm_role_assignment.{i}" for i in assignment_ids)
    (found,) = [
        i for i, w in blocks(stack, "time_sleep").items() if sorted(w["depends_on"]) == expected
    ]
    assert blocks(stack, "time_sleep")[found]["create_duration"] == PROPAGATION
    return f"time_sleep.{found}"


def _assignments(stack: dict, principal: str) -> list[str]:
    return [
        i
        for i, a in blocks(stack, "azurerm_role_assignment").items()
        if a["principal_id"] == principal
    ]


def test_every_assignment_to_a_managed_identity_says_service_principal(stack):
    for assignment in blocks(stack, "azurerm_role_assignment").values():
        managed = "identity" in assignment["principal_id"]  # a system or user identity
        if managed:
            assert assignment["principal_type"] == "ServicePrincipal", assignment["principal_id"]
        else:  # the deploy identities: a user, a group or a service principal
            assert "principal_type" not in assignment


def test_the_time_provider_is_registered_and_pinned(stack):
    assert stack["provider"]["time"] == [{}]
    assert stack["terraform"]["required_providers"]["time"] == {
        "source": "hashicorp/time",
        "version": "0.13.1",
    }


def test_api_management_fetches_the_certificate_after_its_role_propagated(stack):
    for apim_id in blocks(stack, "azurerm_api_management"):
        principal = ref("azurerm_api_management", apim_id, "identity[0].principal_id")
        wait = _waits_for(stack, _assignments(stack, principal))
        fetching = [
            c
            for c in blocks(stack, "azurerm_api_management_certificate").values()
            if c["api_management_name"] == ref("azurerm_api_management", apim_id, "name")
        ]
        # and after the apply's tool made the certificate (tests/stacks/test_topologies.py)
        assert [c["depends_on"][0] for c in fetching] == [wait]


def test_web_apps_resolve_key_vault_references_with_an_identity_authorised_beforehand(stack):
    # the Key Vault reference identity (with auth.mode entra and drills, the load test engines'
    # identity is another one: tests/stacks/test_drills.py)
    ((identity_id, _),) = [(i, b) for i, b in blocks(stack, "azurerm_user_assigned_identity").items()
                           if b["name"].endswith("-kv-references-id")]
    identity = ref("azurerm_user_assigned_identity", identity_id, "id")
    principal = ref("azurerm_user_assigned_identity", identity_id, "principal_id")
    wait = _waits_for(stack, _assignments(stack, principal))
    for app in blocks(stack, "azurerm_linux_web_app").values():
        assert app["key_vault_reference_identity_id"] == identity
        assert app["identity"]["identity_ids"] == [identity]
        assert wait in app["depends_on"]
        assert app["app_settings"]["HEALTH_CHECK_KEY"].startswith("@Microsoft.KeyVault(SecretUri=")
