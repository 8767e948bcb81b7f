"""The delivery's permission model: who may obtain which Azure token, and what it may do there.

One source, read by four things: the bootstrap stack (stacks/bootstrap_stack.py) creates exactly
these identities, federated credentials, roles, state containers and GitHub environments; the
docs' identity table is rendered from it (`python -m stacks.permissions`, docs/delivery.md);
the rehearsal's fakes refuse what it does not grant (tests/github); and the custom plan roles
are built from `RESOURCE_ACTIONS`, the same table the fakes read to decide what refreshing,
creating or deleting each resource type needs. The custom fault roles (`FAULT_PERMISSIONS`) are
what each Chaos Studio experiment's identity holds on its one target (stacks/drills.py).

The rule it encodes: a token that pull-request code can obtain reads nothing of prod. Pull
requests plan dev only, with `plan-dev`. Prod is planned only in the GitHub environment
`prod-plan` (deployments from `main` only), and applied only in `prod` (main only, a reviewer
team, admins cannot bypass). Each identity's roles sit in its own environment's subscription;
the state account lives in a third subscription where no deploy identity has any role but
blob data on its own container.

Standard library only: the bootstrap stack, the tests and the docs renderer import it.
"""

from __future__ import annotations

import fnmatch
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

ENVIRONMENTS = ("dev", "prod")
OIDC_ISSUER = "https://token.actions.githubusercontent.com"
OIDC_AUDIENCE = "api://AzureADTokenExchange"
DEPLOY_BRANCH = "main"
STATE_CONTAINER = "tfstate-{environment}"
BOOTSTRAP_CONTAINER = "tfstate-bootstrap"


# -- What each resource type needs -----------------------------------------------------------


@dataclass(frozen=True)
class ResourceActions:
    """The ARM actions one azurerm resource type calls, by operation.

    `refresh` and `refresh_data` are what its Read function calls beyond a GET: Reader cannot
    plan a stack that holds such a resource once it exists in state. `source` names the
    provider file (hashicorp/terraform-provider-azurerm, internal/services/...) whose Read
    makes those calls, or the documentation that says so.
    """

    arm_type: str
    refresh: tuple[str, ...] = ()
    refresh_data: tuple[str, ...] = ()
    source: str = ""
    why_harmless: str = ""
    # Created, changed and deleted through the data plane (Key Vault objects): those actions
    # are data actions that the environment stack grants its deploy identity itself (Key Vault
    # Administrator, key_vault.administrator_object_ids), not roles of the bootstrap.
    data_plane: bool = False

    @property
    def namespace(self) -> str:
        """The resource provider that must be registered for this type."""
        return self.arm_type.split("/", 1)[0]

    @property
    def read(self) -> tuple[str, ...]:
        return (f"{self.arm_type}/read", *self.refresh)

    @property
    def write(self) -> tuple[str, ...]:
        return (f"{self.arm_type}/write",)

    @property
    def delete(self) -> tuple[str, ...]:
        return (f"{self.arm_type}/delete",)


_SVC = "internal/services"
# What `.../config/list/action` returns for the web apps and their staging slots (the same
# settings, stacks/regional_app.py).
_WEB_APP_SETTINGS_HARMLESS = (
    "app settings hold Key Vault references and names, not secret values (docs/app.md), the key"
    " itself stays in Key Vault; the publishing credentials it also returns open nothing, FTP"
    " and WebDeploy basic auth being off"
)
RESOURCE_ACTIONS: dict[str, ResourceActions] = {
    "azurerm_resource_group": ResourceActions("Microsoft.Resources/subscriptions/resourceGroups"),
    "azurerm_resource_group_template_deployment": ResourceActions(
        "Microsoft.Resources/deployments",
        refresh=("Microsoft.Resources/deployments/exportTemplate/action",),
        source=f"{_SVC}/resource/resource_group_template_deployment_resource.go: Read calls"
        " ExportTemplate to fill template_content",
        why_harmless="returns the template the stack itself wrote (table role assignments, Key"
        " Vault secrets whose value is a securestring parameter, which ARM never returns; no"
        " secret in it)",
    ),
    "azurerm_user_assigned_identity": ResourceActions(
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    ),
    "azurerm_role_assignment": ResourceActions("Microsoft.Authorization/roleAssignments"),
    "azurerm_service_plan": ResourceActions("Microsoft.Web/serverfarms"),
    "azurerm_linux_web_app": ResourceActions(
        "Microsoft.Web/sites",
        refresh=("Microsoft.Web/sites/config/list/action",),
        source=f"{_SVC}/appservice/linux_web_app_resource.go: Read calls"
        " ListApplicationSettings, ListConnectionStrings, ListAzureStorageAccounts,"
        " ListPublishingCredentials, GetAuthSettings and GetBackupConfiguration (POST"
        " .../config/*/list); its ListSlotConfigurationNames (sticky_settings) is a GET",
        why_harmless=_WEB_APP_SETTINGS_HARMLESS,
    ),
    "azurerm_linux_web_app_slot": ResourceActions(
        "Microsoft.Web/sites/slots",
        refresh=("Microsoft.Web/sites/slots/config/list/action",),
        source=f"{_SVC}/appservice/linux_web_app_slot_resource.go: Read calls"
        " ListApplicationSettingsSlot, ListConnectionStringsSlot, ListAzureStorageAccountsSlot,"
        " ListPublishingCredentialsSlot, GetAuthSettingsSlot and GetBackupConfigurationSlot"
        " (POST .../slots/<slot>/config/*/list); the parent web app it reads is a GET",
        why_harmless=_WEB_APP_SETTINGS_HARMLESS,
    ),
    "azurerm_api_management": ResourceActions(
        "Microsoft.ApiManagement/service",
        refresh=(
            "Microsoft.ApiManagement/service/portalsettings/listSecrets/action",
            "Microsoft.ApiManagement/service/tenant/listSecrets/action",
        ),
        source=f"{_SVC}/apimanagement/api_management_resource.go: Read calls"
        " delegationClient.ListSecrets and tenantAccessClient.ListSecrets (every SKU but"
        " Consumption)",
        why_harmless="the developer portal's delegation validation key and the tenant access"
        " keys; this stack enables neither delegation nor tenant access (azurerm defaults)",
    ),
    "azurerm_api_management_api": ResourceActions("Microsoft.ApiManagement/service/apis"),
    "azurerm_api_management_api_diagnostic": ResourceActions(
        "Microsoft.ApiManagement/service/apis/diagnostics"
    ),
    "azurerm_api_management_api_policy": ResourceActions(
        "Microsoft.ApiManagement/service/apis/policies"
    ),
    "azurerm_api_management_backend": ResourceActions("Microsoft.ApiManagement/service/backends"),
    "azurerm_api_management_certificate": ResourceActions(
        "Microsoft.ApiManagement/service/certificates"
    ),
    "azurerm_api_management_logger": ResourceActions("Microsoft.ApiManagement/service/loggers"),
    "azurerm_api_management_product": ResourceActions("Microsoft.ApiManagement/service/products"),
    "azurerm_api_management_product_api": ResourceActions(
        "Microsoft.ApiManagement/service/products/apis"
    ),
    "azurerm_api_management_subscription": ResourceActions(
        "Microsoft.ApiManagement/service/subscriptions",
        refresh=("Microsoft.ApiManagement/service/subscriptions/listSecrets/action",),
        source=f"{_SVC}/apimanagement/api_management_subscription_resource.go: Read calls"
        " ListSecrets for primary_key and secondary_key",
        why_harmless="NOT harmless: the key calls the environment's API. This is why no"
        " pull-request token may hold it for prod",
    ),
    "azurerm_application_insights": ResourceActions("Microsoft.Insights/components"),
    "azurerm_application_insights_workbook": ResourceActions("Microsoft.Insights/workbooks"),
    "azurerm_log_analytics_workspace": ResourceActions(
        "Microsoft.OperationalInsights/workspaces",
        refresh=("Microsoft.OperationalInsights/workspaces/sharedKeys/action",),
        source=f"{_SVC}/loganalytics/log_analytics_workspace_resource.go: Read calls"
        " SharedKeysGetSharedKeys for primary_shared_key",
        why_harmless="NOT harmless: the shared key writes logs into the workspace",
    ),
    "azurerm_monitor_action_group": ResourceActions("Microsoft.Insights/actionGroups"),
    "azurerm_monitor_diagnostic_setting": ResourceActions("Microsoft.Insights/diagnosticSettings"),
    "azurerm_monitor_metric_alert": ResourceActions("Microsoft.Insights/metricAlerts"),
    "azurerm_traffic_manager_profile": ResourceActions("Microsoft.Network/trafficManagerProfiles"),
    "azurerm_traffic_manager_azure_endpoint": ResourceActions(
        "Microsoft.Network/trafficManagerProfiles/azureEndpoints"
    ),
    "azurerm_traffic_manager_external_endpoint": ResourceActions(
        "Microsoft.Network/trafficManagerProfiles/externalEndpoints"
    ),
    # The private data plane (network.mode = "private", stacks/network.py): each Read is GETs
    # only, all under Microsoft.Network/*/read, which the plan role already holds for Traffic
    # Manager, so a switch to private needs no change to the bootstrap's roles.
    "azurerm_virtual_network": ResourceActions(
        "Microsoft.Network/virtualNetworks",
        source=f"{_SVC}/network/virtual_network_resource.go: Read is one GET"
        " (VirtualNetworks.Get)",
    ),
    "azurerm_subnet": ResourceActions(
        "Microsoft.Network/virtualNetworks/subnets",
        source=f"{_SVC}/network/subnet_resource.go: Read is one GET (Subnets.Get)",
    ),
    "azurerm_private_endpoint": ResourceActions(
        "Microsoft.Network/privateEndpoints",
        source=f"{_SVC}/network/private_endpoint_resource.go: Read is GETs only:"
        " PrivateEndpoints.Get, PrivateDnsZoneGroups.List and .Get per group, and"
        " NetworkInterfaces.Get for the private IP (errors ignored)",
    ),
    "azurerm_private_dns_zone": ResourceActions(
        "Microsoft.Network/privateDnsZones",
        source=f"{_SVC}/privatedns/private_dns_zone_resource.go: Read is GETs only:"
        " PrivateZones.Get and RecordSetsGet of the zone's SOA record",
    ),
    "azurerm_private_dns_zone_virtual_network_link": ResourceActions(
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        source=f"{_SVC}/privatedns/private_dns_zone_virtual_network_link_resource.go: Read is"
        " one GET (VirtualNetworkLinks.Get)",
    ),
    # Drills (drills.enabled, stacks/drills.py): each Read is one GET, under the namespace's
    # */read the plan role holds once a stack has the type.
    "azurerm_load_test": ResourceActions(
        "Microsoft.LoadTestService/loadtests",
        source=f"{_SVC}/loadtestservice/load_test_resource.go: Read is one GET (LoadTests.Get)",
    ),
    "azurerm_chaos_studio_target": ResourceActions(
        "Microsoft.Chaos/targets",
        source=f"{_SVC}/chaosstudio/chaos_studio_target_resource_gen.go: Read is one GET"
        " (Targets.Get); Create also lists the region's target types, a GET",
    ),
    "azurerm_chaos_studio_capability": ResourceActions(
        "Microsoft.Chaos/targets/capabilities",
        source=f"{_SVC}/chaosstudio/chaos_studio_capability_resource.go: Read is one GET"
        " (Capabilities.Get); Create also GETs the target and lists its capability types",
    ),
    "azurerm_chaos_studio_experiment": ResourceActions(
        "Microsoft.Chaos/experiments",
        source=f"{_SVC}/chaosstudio/chaos_studio_experiment_resource.go: Read is one GET"
        " (Experiments.Get)",
    ),
    "azurerm_cosmosdb_account": ResourceActions(
        "Microsoft.DocumentDB/databaseAccounts",
        refresh=(
            "Microsoft.DocumentDB/databaseAccounts/listKeys/action",
            "Microsoft.DocumentDB/databaseAccounts/readonlykeys/action",
            "Microsoft.DocumentDB/databaseAccounts/listConnectionStrings/action",
        ),
        source=f"{_SVC}/cosmos/cosmosdb_account_resource.go: Read calls"
        " DatabaseAccountsListKeys, DatabaseAccountsListReadOnlyKeys and"
        " DatabaseAccountsListConnectionStrings and fails on anything but 404",
        why_harmless="harmless only because local (key) auth is off on the account"
        " (local_authentication_disabled, stacks/data_store.py): the keys open nothing",
    ),
    "azurerm_cosmosdb_table": ResourceActions("Microsoft.DocumentDB/databaseAccounts/tables"),
    "azurerm_key_vault": ResourceActions(
        "Microsoft.KeyVault/vaults",
        source=f"{_SVC}/keyvault/key_vault_resource.go: Read also asks the data plane for"
        " certificate contacts and ignores 403, so no data action is needed",
    ),
    "azurerm_key_vault_certificate": ResourceActions(
        "Microsoft.KeyVault/vaults/certificates",
        refresh_data=("Microsoft.KeyVault/vaults/certificates/read",),
        data_plane=True,
        source=f"{_SVC}/keyvault/key_vault_certificate_resource.go: Read calls GetCertificate"
        " (data plane)",
        why_harmless="the certificate's public part and policy; the private key is a secret"
        " this action does not read",
    ),
    "azurerm_key_vault_secret": ResourceActions(
        "Microsoft.KeyVault/vaults/secrets",
        refresh_data=("Microsoft.KeyVault/vaults/secrets/getSecret/action",),
        data_plane=True,
        source=f"{_SVC}/keyvault/key_vault_secret_resource.go: Read calls GetSecret (data"
        " plane, returns the value)",
        why_harmless="NOT harmless: the health key and, with drills, the gateway subscription"
        " key (which listSecrets on the subscription reads already); prod's are read only in"
        " prod-plan, on main",
    ),
}
# Types of other providers (random, time) and Terraform's own `terraform_data` (its local-exec
# runs the delivery's certificate tool at apply, as the applying identity; a refresh calls
# nothing): no Azure call of Terraform's, nothing to grant.
LOCAL_TYPES = frozenset({"random_password", "time_sleep", "terraform_data"})


@dataclass(frozen=True)
class GraphPermissions:
    """The Microsoft Graph application permissions (app roles of Microsoft Graph, granted by
    admin consent, tenant-wide) one azuread resource type needs: `read` to refresh it, `write`
    to create, change and delete it. `source` is the provider's documentation (its "API
    Permissions" section, hashicorp/terraform-provider-azuread docs/resources/*.md, v3.7.0)."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    source: str
    why: str = ""


MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Graph's app role ids (learn.microsoft.com, "Microsoft Graph permissions reference"): what the
# consent command assigns (docs/deploy.md, "Consent: the deploy identities' Graph permissions").
GRAPH_APP_ROLE_IDS = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
}
_AZUREAD_DOCS = "terraform-provider-azuread docs/resources/"
_OWNED = (
    "read: Application.Read.All, the only application permission that reads applications and"
    " service principals (tenant-wide, no secret values: Graph never returns them); write:"
    " Application.ReadWrite.OwnedBy, which manages only what the identity owns"
    " (auth.owner_object_ids must name it)"
)
GRAPH_PERMISSIONS: dict[str, GraphPermissions] = {
    resource_type: GraphPermissions(
        ("Application.Read.All",),
        ("Application.ReadWrite.OwnedBy",),
        f"{_AZUREAD_DOCS}{resource_type.removeprefix('azuread_')}.md: Application.ReadWrite.OwnedBy"
        " or Application.ReadWrite.All; with OwnedBy the caller must own it",
        _OWNED,
    )
    for resource_type in (
        "azuread_application",
        "azuread_application_identifier_uri",
        "azuread_application_federated_identity_credential",
        "azuread_service_principal",
    )
} | {
    "azuread_app_role_assignment": GraphPermissions(
        ("Application.Read.All",),
        ("AppRoleAssignment.ReadWrite.All", "Application.Read.All"),
        f"{_AZUREAD_DOCS}app_role_assignment.md: AppRoleAssignment.ReadWrite.All and"
        " Application.Read.All (or Directory.Read.All), or Application.ReadWrite.All; Graph's"
        " appRoleAssignedTo lists no narrower permission (OwnedBy does not cover assignments)",
        "NOT harmless: AppRoleAssignment.ReadWrite.All can assign any app role of any API in the"
        " tenant, Microsoft Graph's included, so its holder can raise its own permissions. Only"
        " the deploy identities get it, only while an environment has auth.mode = \"entra\","
        " and they are reachable only from their GitHub environments (main, prod reviewed)",
    ),
}


def graph_permissions(resource_types, operation: Literal["read", "write"]) -> tuple[str, ...]:
    """The Graph application permissions refreshing (`read`) or applying (`write`, which also
    refreshes) the azuread types among `resource_types` needs; none without any."""
    rows = [GRAPH_PERMISSIONS[t] for t in sorted(resource_types) if t in GRAPH_PERMISSIONS]
    wanted = {p for row in rows for p in row.read}
    if operation == "write":
        wanted |= {p for row in rows for p in row.write}
    return tuple(sorted(wanted))
# Namespaces every subscription has registered (Azure registers them itself).
ALWAYS_REGISTERED = frozenset({"Microsoft.Resources", "Microsoft.Authorization"})


class UnknownResourceType(ValueError):
    pass


def actions_for(resource_types: set[str] | list[str]) -> dict[str, ResourceActions]:
    """The table rows of `resource_types`; an azurerm type missing from it is an error (a
    stack grew a type nobody decided the permissions of)."""
    known = RESOURCE_ACTIONS.keys() | GRAPH_PERMISSIONS.keys() | LOCAL_TYPES
    unknown = sorted(t for t in resource_types if t not in known)
    if unknown:
        raise UnknownResourceType(
            f"no permissions decided for {', '.join(unknown)}: add them to"
            " stacks/permissions.py RESOURCE_ACTIONS or GRAPH_PERMISSIONS (read the provider's"
            " Read function first)"
        )
    return {t: RESOURCE_ACTIONS[t] for t in sorted(resource_types) if t in RESOURCE_ACTIONS}


def provider_namespaces(resource_types) -> list[str]:
    """Resource providers the environment stacks need registered (derived, not hand-kept)."""
    return sorted({a.namespace for a in actions_for(resource_types).values()} - ALWAYS_REGISTERED)


# -- Roles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    builtin_id: str | None = None  # a built-in role's definition GUID; None: custom
    assignable_roles: tuple[str, ...] = ()  # RBAC administrator: the only roles it may assign
    # A custom role's definition GUID, fixed here (custom_role_id) so that an environment stack
    # can assign the role the bootstrap made without looking it up; None: Azure picks one.
    custom_id: str | None = None

    @property
    def definition_id(self) -> str | None:
        """The role definition's GUID, where it is known before Azure has the role."""
        return self.builtin_id or self.custom_id

    def allows(self, action: str, data: bool = False) -> bool:
        if data:
            return any(matches(p, action) for p in self.data_actions)
        return any(matches(p, action) for p in self.actions) and not any(
            matches(p, action) for p in self.not_actions
        )


def matches(pattern: str, action: str) -> bool:
    """Azure RBAC action matching: case-insensitive, `*` matches any characters."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# learn.microsoft.com, Azure built-in roles, DevOps: "View, create, update, delete and execute
# load tests" (data actions Microsoft.LoadTestService/loadtests/*).
LOAD_TEST_CONTRIBUTOR = "749a398d-560b-491b-bb21-08924219302e"
# The built-in roles the environment stacks assign (by name), with their definition GUIDs: the
# only built-in roles their deploy identity's RBAC administrator condition lets through.
STACK_ASSIGNED_ROLES = {
    "Key Vault Administrator": KEY_VAULT_ADMINISTRATOR,
    "Key Vault Secrets User": KEY_VAULT_SECRETS_USER,
    "Load Test Contributor": LOAD_TEST_CONTRIBUTOR,
}
BLOB = "Microsoft.Storage/storageAccounts/blobServices/containers"
DELEGATION_KEY = "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"
BUILTIN_ROLES = {
    role.name: role
    for role in (
        Role(
            "Contributor",
            "everything but access management (built-in)",
            actions=("*",),
            not_actions=(
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ),
            builtin_id="b24988ac-6180-42a0-ab88-20f7382dd24c",
        ),
        Role(
            "Role Based Access Control Administrator",
            "assign roles, limited by a condition to the roles listed (built-in)",
            actions=(
                "Microsoft.Authorization/roleAssignments/write",
                "Microsoft.Authorization/roleAssignments/delete",
                "*/read",
                "Microsoft.Support/*",
            ),
            builtin_id="f58310d9-a9f6-439a-9e8d-f62e7b41a168",
            # and each environment's fault roles (PermissionModel.assignable_role_ids)
            assignable_roles=tuple(STACK_ASSIGNED_ROLES.values()),
        ),
        Role(
            "Storage Blob Data Reader",
            "read blobs (built-in)",
            actions=(f"{BLOB}/read", DELEGATION_KEY),
            data_actions=(f"{BLOB}/blobs/read",),
            builtin_id="2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        ),
        Role(
            "Storage Blob Data Contributor",
            "read, write and lease blobs (built-in)",
            actions=(f"{BLOB}/delete", f"{BLOB}/read", f"{BLOB}/write", DELEGATION_KEY),
            data_actions=(
                f"{BLOB}/blobs/delete",
                f"{BLOB}/blobs/read",
                f"{BLOB}/blobs/write",
                f"{BLOB}/blobs/move/action",
                f"{BLOB}/blobs/add/action",
            ),
            builtin_id="ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        ),
    )
}
STATE_READ = f"{BLOB}/blobs/read"
STATE_WRITE = f"{BLOB}/blobs/write"


def custom_role_id(name: str) -> str:
    """The definition GUID of the custom role `name`: the bootstrap creates the role with it,
    the environment stack assigns it by it (no lookup, no read permission, no name race). Role
    names are unique in a tenant, and so are these GUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"todo-api:role-definition:{name}"))


@dataclass(frozen=True)
class FaultPermissions:
    """What one Chaos Studio fault does to its target, as ARM actions, and where that is said."""

    actions: tuple[str, ...]
    source: str


# One custom role per fault, assigned to that fault's experiment identity on its one target
# resource (stacks/drills.py). Chaos Studio's capability types list each fault's actions
# (GET .../providers/Microsoft.Chaos/locations/<region>/targetTypes/<type>/capabilityTypes/
# <capability>, properties.azureRbacActions; learn.microsoft.com chaos-studio-fault-providers).
_CHAOS_DOCS = "learn.microsoft.com/azure/chaos-studio/"
FAULT_PERMISSIONS: dict[str, FaultPermissions] = {
    "app-service-stop": FaultPermissions(
        ("Microsoft.Web/sites/read", "Microsoft.Web/sites/stop/action",
         "Microsoft.Web/sites/start/action"),
        f"{_CHAOS_DOCS}chaos-studio-fault-library, App Service Stop (Stop-1.0): stops the site"
        " and starts it again when the duration ends; azureRbacActions not published there,"
        " unverified against the capability type",
    ),
    "cosmos-db-failover": FaultPermissions(
        ("Microsoft.DocumentDB/databaseAccounts/read",
         "Microsoft.DocumentDB/databaseAccounts/failoverPriorityChange/action"),
        f"{_CHAOS_DOCS}chaos-studio-fault-providers, custom role operations: the"
        " azureRbacActions of Microsoft-CosmosDB Failover-1.0, quoted in full",
    ),
    "key-vault-deny-access": FaultPermissions(
        ("Microsoft.KeyVault/vaults/read", "Microsoft.KeyVault/vaults/write"),
        f"{_CHAOS_DOCS}chaos-studio-fault-library, Key Vault Deny Access (DenyAccess-1.0):"
        " rewrites the vault's network rules and restores them at the end; azureRbacActions not"
        " published there, unverified against the capability type",
    ),
}


def fault_role(fault: str, environment: str) -> Role:
    """The custom role of one fault in one environment's subscription (exactly its actions)."""
    name = f"todo-api fault {fault} {environment}"
    return Role(
        name,
        f"Chaos Studio experiment identity of todo-api-{environment}: the {fault} fault on its"
        " one target, nothing else (stacks/permissions.py)",
        actions=FAULT_PERMISSIONS[fault].actions,
        custom_id=custom_role_id(name),
    )


def plan_role(environment: str, resource_types) -> Role:
    """`terraform plan` of one environment: GETs of the namespaces its stack uses, plus exactly
    the secret-bearing actions its resource types' Read functions call (RESOURCE_ACTIONS).
    Writes nothing."""
    rows = actions_for(resource_types).values()
    namespaces = sorted({a.namespace for a in rows} | {"Microsoft.Resources"})
    reads = [f"{ns}/*/read" for ns in namespaces]
    extras = sorted({x for a in rows for x in a.refresh})
    data = sorted({x for a in rows for x in a.refresh_data})
    return Role(
        f"todo-api plan {environment}",
        f"terraform plan of todo-api-{environment}: read what its refresh reads,"
        " write nothing (stacks/permissions.py)",
        actions=tuple(reads + extras),
        data_actions=tuple(data),
    )


# -- Identities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """An OIDC subject GitHub issues: `repo:O/R:pull_request`, `...:environment:E`,
    `...:ref:refs/heads/B` (GitHub OIDC docs)."""

    kind: Literal["pull_request", "environment", "ref"]
    value: str = ""

    def claim(self, repository: str) -> str:
        if self.kind == "pull_request":
            return f"repo:{repository}:pull_request"
        return f"repo:{repository}:{self.kind}:{self.value}"

    @property
    def label(self) -> str:
        return self.kind if self.kind == "pull_request" else f"{self.kind}:{self.value}"


Scope = Literal["subscription", "state"]


@dataclass(frozen=True)
class Grant:
    role: str  # a key of BUILTIN_ROLES or a custom role's name
    scope: Scope  # the identity's environment's subscription, or its state container
    why: str


@dataclass(frozen=True)
class Identity:
    key: str  # plan-dev, deploy-prod, ...
    environment: str
    purpose: str
    subjects: tuple[Subject, ...]
    grants: tuple[Grant, ...]
    github_environment: str | None  # where its client id is an environment variable

    @property
    def name(self) -> str:
        return f"todo-api-github-{self.key}"


@dataclass(frozen=True)
class GithubEnvironment:
    name: str
    identity: str  # key of the identity whose client id it holds as AZURE_CLIENT_ID
    reviewers: bool  # a required reviewer team, no self-review
    plan_bundle_key: str  # which key it holds as PLAN_BUNDLE_KEY (its environment's)
    branches: tuple[str, ...] = (DEPLOY_BRANCH,)


def _identities() -> tuple[Identity, ...]:
    found = []
    for env in ENVIRONMENTS:
        plan_subjects = [Subject("environment", f"{env}-plan")]
        if env == "dev":
            # Pull requests plan dev only: whatever a PR's token reaches, any writer can read.
            plan_subjects.insert(0, Subject("pull_request"))
        found.append(
            Identity(
                f"plan-{env}",
                env,
                f"terraform plan of {env}"
                + (
                    ": pull requests, and the deploy and drift workflows' plan jobs"
                    if env == "dev"
                    else ": deploy and drift plan jobs on main, never a pull request"
                ),
                tuple(plan_subjects),
                (
                    Grant(
                        f"todo-api plan {env}",
                        "subscription",
                        "refresh every resource of the stack, write nothing",
                    ),
                    Grant(
                        "Storage Blob Data Reader",
                        "state",
                        "read the state (plans run with -lock=false)",
                    ),
                ),
                f"{env}-plan",
            )
        )
        found.append(
            Identity(
                f"deploy-{env}",
                env,
                f"apply the reviewed plan of {env}, deploy the app, run load tests and drills",
                (Subject("environment", env),),
                (
                    Grant("Contributor", "subscription", "create and change the stack's resources"),
                    Grant(
                        "Role Based Access Control Administrator",
                        "subscription",
                        "assign Key Vault Administrator, Key Vault Secrets User, Load Test"
                        " Contributor and the environment's fault roles, nothing else"
                        " (condition)",
                    ),
                    Grant("Storage Blob Data Contributor", "state", "write and lease its state"),
                ),
                env,
            )
        )
    return tuple(found)


def _environments() -> tuple[GithubEnvironment, ...]:
    found = []
    for env in ENVIRONMENTS:
        found.append(GithubEnvironment(f"{env}-plan", f"plan-{env}", False, env))
        found.append(GithubEnvironment(env, f"deploy-{env}", env == "prod", env))
    return tuple(found)


def fault_roles(environment: str) -> tuple[Role, ...]:
    """Every fault's role in `environment`, made there whether drills are on or not: turning
    them on then needs no bootstrap run."""
    return tuple(fault_role(fault, environment) for fault in FAULT_PERMISSIONS)


@dataclass(frozen=True)
class PermissionModel:
    """The identities and environments (fixed), with the roles the stacks' resource types need."""

    resource_types: frozenset[str]
    # Each environment's own types, where known (the synth): Graph permissions are tenant-wide,
    # so an identity gets only those its own environment's stack needs (dev on auth.mode none
    # needs none while prod takes tokens). Without them: every type.
    environment_types: Mapping[str, frozenset[str]] = field(
        default_factory=dict, compare=False, hash=False)
    identities: ClassVar[tuple[Identity, ...]] = _identities()
    environments: ClassVar[tuple[GithubEnvironment, ...]] = _environments()

    @classmethod
    def of_environments(cls, types: Mapping[str, Iterable[str]]) -> PermissionModel:
        """The model of environment stacks given as {environment: its resource types}."""
        by_environment = {e: frozenset(t) for e, t in types.items()}
        return cls(frozenset().union(*by_environment.values()), by_environment)

    def roles(self) -> dict[str, Role]:
        custom = {r.name: r for r in (plan_role(e, self.resource_types) for e in ENVIRONMENTS)}
        faults = {r.name: r for e in ENVIRONMENTS for r in fault_roles(e)}
        return {**BUILTIN_ROLES, **custom, **faults}

    @staticmethod
    def assignable_role_ids(environment: str) -> tuple[str, ...]:
        """What the RBAC administrator of `environment` may assign and unassign (its condition):
        the built-in roles the stack grants, and that environment's fault roles."""
        administrator = BUILTIN_ROLES["Role Based Access Control Administrator"]
        return administrator.assignable_roles + tuple(
            r.custom_id for r in fault_roles(environment))

    def identity(self, key: str) -> Identity:
        return next(i for i in self.identities if i.key == key)

    def graph_permissions(self, identity: Identity) -> tuple[str, ...]:
        """The Microsoft Graph application permissions `identity` needs (admin consent, tenant-
        wide: docs/deploy.md): plan identities refresh, deploy identities apply."""
        operation = "write" if identity.key.startswith("deploy-") else "read"
        types = self.environment_types.get(identity.environment, self.resource_types)
        return graph_permissions(types, operation)

    def namespaces(self) -> list[str]:
        return provider_namespaces(self.resource_types)


# Repository-level variables the workflows read (no secrets: client ids are not secrets, the
# federated credentials are what protect an identity). Everything else is per environment.
REPOSITORY_VARIABLES = (
    "AZURE_TENANT_ID",
    "AZURE_PLAN_CLIENT_ID_DEV",
    "AZURE_SUBSCRIPTION_ID_DEV",
    "TFSTATE_SUBSCRIPTION_ID",
    "TFSTATE_RESOURCE_GROUP",
    "TFSTATE_STORAGE_ACCOUNT",
    "AZURE_DEPLOYER_OBJECT_IDS_DEV",
    "AZURE_DEPLOYER_OBJECT_IDS_PROD",
    # The deploy identities as callers of their environment's API (auth.mode = "entra"): the
    # synth of every job needs them, plan jobs included, whose environment holds the plan
    # identity's client id (TODO_API_AUTH_OWNER_OBJECT_IDS_<ENV>, TODO_API_AUTH_CLIENT_IDS_<ENV>).
    "AZURE_DEPLOY_PRINCIPAL_ID_DEV",
    "AZURE_DEPLOY_PRINCIPAL_ID_PROD",
    "AZURE_DEPLOY_CLIENT_ID_DEV",
    "AZURE_DEPLOY_CLIENT_ID_PROD",
)
ENVIRONMENT_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_SUBSCRIPTION_ID")
ENVIRONMENT_SECRETS = ("PLAN_BUNDLE_KEY",)


# -- The docs' table --------------------------------------------------------------------------


def markdown(model: PermissionModel) -> str:
    """The identity table of docs/delivery.md (a test keeps the two equal)."""
    roles = model.roles()
    lines = [
        "| identity | OIDC subjects (repo:OWNER/REPO:...) | roles, scope | state |",
        "|---|---|---|---|",
    ]
    for identity in model.identities:
        subjects = ", ".join(f"`{s.label}`" for s in identity.subjects)
        azure = "; ".join(
            f"{g.role} on the {identity.environment} subscription"
            for g in identity.grants
            if g.scope == "subscription"
        )
        state = "; ".join(
            f"{g.role} on `{STATE_CONTAINER.format(environment=identity.environment)}`"
            for g in identity.grants
            if g.scope == "state"
        )
        lines.append(f"| `{identity.name}` | {subjects} | {azure} | {state} |")
    lines += ["", "| custom role | actions | data actions |", "|---|---|---|"]
    for role in roles.values():
        if role.builtin_id is None:
            lines.append(
                f"| {role.name} | {', '.join(f'`{a}`' for a in role.actions)} | "
                f"{', '.join(f'`{a}`' for a in role.data_actions) or '-'} |"
            )
    by_id = {r.definition_id: r.name for r in roles.values() if r.definition_id}
    by_id |= {role_id: name for name, role_id in STACK_ASSIGNED_ROLES.items()}
    lines += ["", "| RBAC administrator | may assign (its condition) | role definition id |",
              "|---|---|---|"]
    for identity in model.identities:
        if any(roles[g.role].assignable_roles for g in identity.grants):
            for role_id in model.assignable_role_ids(identity.environment):
                lines.append(f"| `{identity.name}` | {by_id[role_id]} | `{role_id}` |")
    lines += ["", "| fault role (per environment) | actions | source |", "|---|---|---|"]
    for fault, permissions in FAULT_PERMISSIONS.items():
        actions = ", ".join(f"`{a}`" for a in permissions.actions)
        lines.append(f"| todo-api fault {fault} <env> | {actions} | {permissions.source} |")
    graph = [(i, model.graph_permissions(i)) for i in model.identities]
    if any(permissions for _, permissions in graph):
        lines += ["", "| identity | Microsoft Graph application permissions (admin consent) |",
                  "|---|---|"]
        lines += [f"| `{i.name}` | {', '.join(f'`{p}`' for p in ps) or '-'} |" for i, ps in graph]
        lines += ["", "| Graph resource type | refresh | apply | why | provider source |",
                  "|---|---|---|---|---|"]
        for resource_type in sorted(model.resource_types & GRAPH_PERMISSIONS.keys()):
            row = GRAPH_PERMISSIONS[resource_type]
            lines.append(f"| `{resource_type}` | {', '.join(row.read)} | {', '.join(row.write)}"
                         f" | {row.why} | {row.source} |")
    lines += [
        "",
        "| action beyond GET | resource type | why granted | provider source |",
        "|---|---|---|---|",
    ]
    for resource_type, row in actions_for(model.resource_types).items():
        for action in (*row.refresh, *row.refresh_data):
            lines.append(f"| `{action}` | `{resource_type}` | {row.why_harmless} | {row.source} |")
    return "\n".join(lines) + "\n"


def synthesized_model(stack_files) -> PermissionModel:
    """The model of the synthesized environment stacks (.../todo-api-<env>/cdk.tf.json files):
    every resource type, and each environment's own."""
    import json
    from pathlib import Path

    found: dict[str, set[str]] = {}
    for path in map(Path, stack_files):
        environment = path.parent.name.removeprefix("todo-api-")
        types = json.loads(path.read_text(encoding="utf-8")).get("resource", {})
        found.setdefault(environment, set()).update(types)
    return PermissionModel.of_environments(found)


if __name__ == "__main__":
    # python -m stacks.permissions cdktf.out/stacks/todo-api-*/cdk.tf.json: the docs' table
    print(markdown(synthesized_model(sys.argv[1:])), end="")
