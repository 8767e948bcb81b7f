"""Stateful resources: Terraform refuses to destroy or replace them unless the environment says
so (stacks/aspects.PreventDestroyStateful), and the plan renderer lists the same types."""

from __future__ import annotations

import json

import pytest

from stacks.aspects import STATEFUL_RESOURCE_TYPES
from tests.stacks.synthesized import ENVIRONMENTS, TOPOLOGIES


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_stateful_resource_and_only_those_prevent_their_destruction(
        synthesized_stacks, environment, topology):
    resources = synthesized_stacks[(environment, topology)]["resource"]
    protected = {(kind, name) for kind, blocks in resources.items() for name, block in blocks.items()
                 if (block.get("lifecycle") or {}).get("prevent_destroy")}
    stateful = {(kind, name) for kind in STATEFUL_RESOURCE_TYPES
                for name in resources.get(kind, {})}
    assert {kind for kind, _ in stateful} >= {"azurerm_cosmosdb_account", "azurerm_cosmosdb_table",
                                             "azurerm_key_vault", "azurerm_api_management"}
    assert protected == stateful


def test_an_environment_may_lift_the_protection_for_a_deliberate_deletion(tmp_path):
    from stacks.config import load_environment
    from stacks.synth import synthesize

    config = load_environment("dev", {"protect_stateful_resources": False})
    [path] = synthesize([config], tmp_path)
    resources = json.loads(path.read_text())["resource"]
    assert not [name for blocks in resources.values() for name, block in blocks.items()
                if (block.get("lifecycle") or {}).get("prevent_destroy")]


def test_the_plan_renderer_lists_every_type_the_stacks_protect():
    from tools.delivery.plan_comment import STATEFUL_TYPES

    assert set(STATEFUL_RESOURCE_TYPES) <= STATEFUL_TYPES
