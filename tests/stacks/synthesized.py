"""Helpers to read a parsed cdk.tf.json."""

from typing import Any

ENVIRONMENTS = ("dev", "prod")
TOPOLOGIES = ("single", "multi-region", "dual")


def topology_overrides(environment: str, topology: str) -> dict[str, str]:
    """Overrides that turn an environment's file into `topology` (multi-region needs Premium)."""
    from stacks.config import load_environment

    overrides = {"gateway.topology": topology}
    if topology == "multi-region" and load_environment(environment).gateway.tier != "Premium":
        overrides["gateway.sku"] = "Premium_1"
    return overrides


def blocks(stack: dict, resource_type: str) -> dict[str, dict[str, Any]]:
    """{logical id: resource block} for one resource type (empty if none)."""
    return stack.get("resource", {}).get(resource_type, {})


def only(stack: dict, resource_type: str) -> tuple[str, dict[str, Any]]:
    (item,) = blocks(stack, resource_type).items()
    return item


def ref(resource_type: str, logical_id: str, attribute: str) -> str:
    """The Terraform expression a reference to `attribute` synthesizes to."""
    return f"${{{resource_type}.{logical_id}.{attribute}}}"
