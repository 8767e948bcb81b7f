"""Policy as code: Aspects that fail synth, naming the resource, when a guarantee is missing.

Each aspect reads the resource's own Terraform configuration (resolved by its stack), so it
checks what will actually be deployed, whoever built the resource. A violation becomes an
error annotation: `cdktf synth` and `python main.py` stop and print `[<construct path>] ...`.
"""

from typing import Any

import jsii
from cdktf import (
    Annotations,
    DefaultTokenResolver,
    IAspect,
    StringConcat,
    TerraformResource,
    Tokenization,
)
from cdktf_cdktf_provider_azurerm.cosmosdb_account import CosmosdbAccount
from cdktf_cdktf_provider_azurerm.linux_web_app import LinuxWebApp
from cdktf_cdktf_provider_azurerm.linux_web_app_slot import LinuxWebAppSlot
from cdktf_cdktf_provider_azurerm.traffic_manager_profile import TrafficManagerProfile
from constructs import IConstruct

from stacks.config import REQUIRED_TAGS
from stacks.data_store import BACKUP_TYPE, CONSISTENCY
from stacks.regional_app import HEALTH_PATH_PREFIX, IDENTITY_TYPE, TRAFFIC_MANAGER_SERVICE_TAG

# (path in the resource's Terraform config, required value)
WEB_APP_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("https_only", True),
    ("client_affinity_enabled", False),
    ("client_certificate_enabled", True),
    ("client_certificate_mode", "Required"),
    ("client_certificate_exclusion_paths", HEALTH_PATH_PREFIX),
    ("ftp_publish_basic_authentication_enabled", False),
    ("webdeploy_publish_basic_authentication_enabled", False),
    ("identity.type", IDENTITY_TYPE),
    ("site_config.always_on", True),
    ("site_config.ftps_state", "Disabled"),
    ("site_config.http2_enabled", False),
    ("site_config.minimum_tls_version", "1.2"),
    ("site_config.scm_minimum_tls_version", "1.2"),
    ("site_config.ip_restriction_default_action", "Deny"),
    ("site_config.scm_ip_restriction_default_action", "Deny"),
    ("site_config.scm_use_main_ip_restriction", False),
)

# RPO 0 on a region outage: one write region, Strong, failover on; no keys; restorable.
COSMOS_ACCOUNT_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("consistency_policy.consistency_level", CONSISTENCY),
    ("multiple_write_locations_enabled", False),
    ("automatic_failover_enabled", True),
    ("local_authentication_disabled", True),
    ("access_key_metadata_writes_enabled", False),
    ("backup.type", BACKUP_TYPE),
)


# Resources whose data goes with them: Terraform refuses to destroy or replace them
# (`lifecycle.prevent_destroy`) unless the environment's config sets
# protect_stateful_resources = false (docs/deploy.md, "Stateful resources"). The plan renderer
# lists the same types first and refuses their deletion without an override (tools/delivery/plan_comment.py).
STATEFUL_RESOURCE_TYPES = (
    "azurerm_cosmosdb_account",
    "azurerm_cosmosdb_table",
    "azurerm_key_vault",
    "azurerm_key_vault_certificate",
    "azurerm_api_management",
)


@jsii.implements(IAspect)
class PreventDestroyStateful:
    """`lifecycle.prevent_destroy` on every stateful resource (STATEFUL_RESOURCE_TYPES)."""

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, TerraformResource) and (
            node.terraform_resource_type in STATEFUL_RESOURCE_TYPES
        ):
            node.add_override("lifecycle.prevent_destroy", True)


def resolve(value: Any, scope: IConstruct) -> Any:
    """Tokens -> Terraform expressions, as synth writes them."""
    return Tokenization.resolve(
        value, scope=scope, resolver=DefaultTokenResolver(StringConcat()), preparing=False
    )


def resolved_config(resource: TerraformResource) -> dict[str, Any]:
    """The resource's own block as it will be written to cdk.tf.json."""
    synthesized = resolve(resource.to_terraform(), resource)
    (block,) = synthesized["resource"][resource.terraform_resource_type].values()
    return block


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fail(node: IConstruct, message: str) -> None:
    Annotations.of(node).add_error(message)


def _require(
    node: IConstruct, config: dict[str, Any], kind: str, settings: tuple[tuple[str, Any], ...]
) -> None:
    """One error per (path, required value) the resource's configuration does not have."""
    for path, required in settings:
        actual = _lookup(config, path)
        if actual != required:
            _fail(node, f"{kind}: {path} must be {required!r}, got {actual!r}")


@jsii.implements(IAspect)
class WebAppSecurityPolicy:
    """Every Linux web app, and every slot of one, has the security settings the design requires
    (a slot is a live site of its own: swapped in, it serves production)."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, (LinuxWebApp, LinuxWebAppSlot)):
            return
        kind = "linux web app slot" if isinstance(node, LinuxWebAppSlot) else "linux web app"
        config = resolved_config(node)
        _require(node, config, kind, WEB_APP_SETTINGS)
        health = _lookup(config, "site_config.health_check_path") or ""
        if not health.startswith(f"{HEALTH_PATH_PREFIX}/") or health == f"{HEALTH_PATH_PREFIX}/":
            _fail(
                node,
                f"{kind}: site_config.health_check_path must be /health/<key>, got {health!r}",
            )
        restrictions = _lookup(config, "site_config.ip_restriction") or []
        if TRAFFIC_MANAGER_SERVICE_TAG not in [rule.get("service_tag") for rule in restrictions]:
            _fail(
                node, f"{kind}: site_config.ip_restriction must allow {TRAFFIC_MANAGER_SERVICE_TAG}"
            )


@jsii.implements(IAspect)
class CosmosAccountPolicy:
    """Every Cosmos DB account keeps acknowledged writes through a region outage and takes no
    keys, and its firewall is on (public access off, or an IP or VNet rule list)."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CosmosdbAccount):
            return
        config = resolved_config(node)
        _require(node, config, "cosmos db account", COSMOS_ACCOUNT_SETTINGS)
        public = config.get("public_network_access_enabled", True)
        if public and not (config.get("ip_range_filter") or config.get("virtual_network_rule")):
            _fail(
                node,
                "cosmos db account: public network access needs ip_range_filter or "
                "virtual_network_rule (an empty filter admits every network)",
            )


@jsii.implements(IAspect)
class TrafficManagerProbePolicy:
    """Traffic Manager probes only paths in `allowed_paths` (the keyed health path, and APIM's
    status path for a profile in front of gateways): a probe of /health without the key gets
    404, every endpoint turns Degraded and Traffic Manager silently stops failing over."""

    def __init__(self, allowed_paths: list[str]) -> None:
        self.allowed_paths = allowed_paths

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, TrafficManagerProfile):
            return
        allowed = [resolve(path, node) for path in self.allowed_paths]
        path = _lookup(resolved_config(node), "monitor_config.path")
        if path not in allowed:
            _fail(
                node, f"traffic manager profile: monitor_config.path {path!r} lacks the health key"
            )


@jsii.implements(IAspect)
class RequiredTagsPolicy:
    """Every Azure resource that takes tags carries the required ones. Entra ID objects (azuread)
    have no key-value tags: their `tags` are a set of strings that switch Entra behaviours
    ("not provided for use by practitioners", the provider's docs); their display names carry
    the environment instead (stacks/api_identity.py)."""

    def __init__(self, required: tuple[str, ...] = REQUIRED_TAGS) -> None:
        self.required = required

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, TerraformResource) or not hasattr(type(node), "tags_input"):
            return
        if not node.terraform_resource_type.startswith("azurerm_"):
            return
        tags = resolved_config(node).get("tags") or {}
        missing = [key for key in self.required if not tags.get(key)]
        if missing:
            _fail(
                node, f"{node.terraform_resource_type}: missing required tags {', '.join(missing)}"
            )
