"""Helpers to read a parsed cdk.tf.json."""

import json
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


def table_role_deployment(stack: dict) -> tuple[str, dict[str, Any]]:
    """The template deployment of the table's data role assignments (the others write Key
    Vault secrets, stacks/key_vault.py)."""
    (item,) = [(i, b) for i, b in blocks(stack, "azurerm_resource_group_template_deployment").items()
               if b["name"].endswith("-table-data-contributors")]
    return item


def client_certificate(stack: dict) -> tuple[str, dict[str, Any]]:
    """The `terraform_data` whose local-exec makes the client certificate in Key Vault."""
    (item,) = [(i, b) for i, b in blocks(stack, "terraform_data").items()
               if "ensure-certificate" in json.dumps(b.get("provisioner", []))]
    return item


def vault_secrets(stack: dict) -> dict[str, tuple[str, dict[str, Any]]]:
    """{secret name: (logical id, block)} of the template deployments that write Key Vault
    secrets (stacks/key_vault.py add_secret), read from their templates."""
    found = {}
    for logical_id, block in blocks(stack, "azurerm_resource_group_template_deployment").items():
        for resource in json.loads(block["template_content"])["resources"]:
            if resource["type"] == "Microsoft.KeyVault/vaults/secrets":
                found[resource["name"].rsplit("/", 1)[1]] = (logical_id, block)
    return found
