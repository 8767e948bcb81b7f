"""The durable TodoItem store: one Cosmos DB for Table account per environment, its table, the
sites' (web apps' and slots') data-plane role, diagnostics.

Secure defaults live here: Strong consistency with one write region (the primary, failover
priority 0) and service-managed failover, so a region outage loses no acknowledged write;
continuous backup; no keys (local authentication off, key-based metadata writes off); TLS 1.2;
the firewall admits only the sites' possible outbound IPs (`network.mode = "public"`), or public
network access is off and the apps come through each region's private endpoint (`"private"`:
stacks/network.py; no IP list then).

The callers are `sites`, every site that runs the app (`RegionalApp.sites`): each region's web
app and its staging slot, whose system identity needs the table as much as production's (a swap
does not move identities). A slot runs on its web app's plan, so its outbound addresses are the
web app's; they are listed anyway (`ip_range_filter` is a set, duplicates collapse).

azurerm 4.55 has no resource for Table data-plane role assignments, so each site's identity
gets "Cosmos DB Built-in Data Contributor" through an inline ARM template
(`azurerm_resource_group_template_deployment`), one `tableRoleAssignments` child per principal
with a name derived by `guid()` from the account, role and principal (stable across applies).
"""

import json
from collections.abc import Sequence

from cdktf import Fn, Token
from cdktf_cdktf_provider_azurerm.cosmosdb_account import (
    CosmosdbAccount,
    CosmosdbAccountBackup,
    CosmosdbAccountCapabilities,
    CosmosdbAccountConsistencyPolicy,
    CosmosdbAccountGeoLocation,
)
from cdktf_cdktf_provider_azurerm.cosmosdb_table import (
    CosmosdbTable,
    CosmosdbTableAutoscaleSettings,
)
from cdktf_cdktf_provider_azurerm.linux_web_app import LinuxWebApp
from cdktf_cdktf_provider_azurerm.linux_web_app_slot import LinuxWebAppSlot
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.resource_group_template_deployment import (
    ResourceGroupTemplateDeployment,
)
from constructs import Construct

from stacks.config import DataStore as DataStoreConfig
from stacks.monitoring import send_diagnostics

TABLE_CAPABILITY = "EnableTable"
CONSISTENCY = "Strong"
BACKUP_TYPE = "Continuous"
MINIMAL_TLS_VERSION = "Tls12"
# Cosmos DB's built-in Table data-plane role "Cosmos DB Built-in Data Contributor".
DATA_CONTRIBUTOR_ROLE = "00000000-0000-0000-0000-000000000002"
ROLE_ASSIGNMENT_TYPE = "Microsoft.DocumentDB/databaseAccounts/tableRoleAssignments"
# The first ARM API version that documents tableRoleAssignments (learn.microsoft.com template
# reference); later versions are previews too. Not verifiable offline: docs/deploy.md.
ROLE_ASSIGNMENT_API_VERSION = "2024-12-01-preview"
DEPLOYMENT_TEMPLATE_SCHEMA = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
)
# App settings the app reads to reach the table (app/settings.py names them too).
STORE_KIND = "table"


def table_endpoint(account_name: str) -> str:
    """The account's Table API endpoint (public Azure cloud). azurerm exposes only the SQL
    `endpoint`, so it is built from the account name, which is fixed by config."""
    return f"https://{account_name}.table.cosmos.azure.com:443/"


def store_app_settings(account_name: str, table_name: str) -> dict[str, str]:
    """What each web app needs to reach the table with its managed identity (no keys)."""
    return {
        "STORE": STORE_KIND,
        "TABLE_ENDPOINT": table_endpoint(account_name),
        "TABLE_NAME": table_name,
    }


def role_assignment_template() -> dict:
    """ARM template: one Table data-plane role assignment per principal id, scope the account."""
    account_id = "parameters('accountId')"
    role_id = f"format('{{0}}/tableRoleDefinitions/{DATA_CONTRIBUTOR_ROLE}', {account_id})"
    principal = "parameters('principalIds')[copyIndex()]"
    return {
        "$schema": DEPLOYMENT_TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "accountName": {"type": "string"},
            "accountId": {"type": "string"},
            "principalIds": {"type": "array"},
        },
        "resources": [
            {
                "type": ROLE_ASSIGNMENT_TYPE,
                "apiVersion": ROLE_ASSIGNMENT_API_VERSION,
                "name": (
                    f"[format('{{0}}/{{1}}', parameters('accountName'), "
                    f"guid({account_id}, {role_id}, {principal}))]"
                ),
                "copy": {"name": "assignments", "count": "[length(parameters('principalIds'))]"},
                "properties": {
                    "roleDefinitionId": f"[{role_id}]",
                    "principalId": f"[{principal}]",
                    "scope": f"[{account_id}]",
                },
            }
        ],
    }


class TableStore(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        account_name: str,
        regions: Sequence[str],
        resource_group_name: str,
        settings: DataStoreConfig,
        sites: Sequence[LinuxWebApp | LinuxWebAppSlot],
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
        private_network: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        self.regions = tuple(regions)
        self.table_name = settings.table_name
        self.table_endpoint = table_endpoint(account_name)
        outbound_ips = [site.possible_outbound_ip_address_list for site in sites]
        # Private: only the private endpoints reach the data plane ("publicNetworkAccess:
        # Disabled ... takes precedence over any IP or virtual network rule").
        ip_range_filter = None if private_network else Token.as_list(Fn.concat(outbound_ips))
        self.account = CosmosdbAccount(
            self,
            "account",
            name=account_name,
            location=self.regions[0],
            resource_group_name=resource_group_name,
            offer_type="Standard",
            kind="GlobalDocumentDB",
            capabilities=[CosmosdbAccountCapabilities(name=TABLE_CAPABILITY)],
            consistency_policy=CosmosdbAccountConsistencyPolicy(consistency_level=CONSISTENCY),
            geo_location=[
                CosmosdbAccountGeoLocation(
                    location=region,
                    failover_priority=priority,
                    zone_redundant=region in settings.zone_redundant_regions,
                )
                for priority, region in enumerate(self.regions)
            ],
            automatic_failover_enabled=True,
            multiple_write_locations_enabled=False,
            backup=CosmosdbAccountBackup(type=BACKUP_TYPE, tier=settings.backup_tier),
            local_authentication_disabled=True,
            access_key_metadata_writes_enabled=False,
            minimal_tls_version=MINIMAL_TLS_VERSION,
            public_network_access_enabled=not private_network,
            # "Selected networks": the IP rules below admit; there are no VNet rules.
            is_virtual_network_filter_enabled=True,
            network_acl_bypass_for_azure_services=False,
            ip_range_filter=ip_range_filter,
            tags=tags,
        )
        autoscale = settings.throughput_mode == "autoscale"
        self.table = CosmosdbTable(
            self,
            "table",
            name=settings.table_name,
            account_name=self.account.name,
            resource_group_name=resource_group_name,
            throughput=None if autoscale else settings.throughput,
            autoscale_settings=(
                CosmosdbTableAutoscaleSettings(max_throughput=settings.throughput)
                if autoscale
                else None
            ),
        )
        self.data_access = ResourceGroupTemplateDeployment(
            self,
            "data-contributors",
            name=f"{account_name}-table-data-contributors",
            resource_group_name=resource_group_name,
            deployment_mode="Incremental",
            template_content=json.dumps(role_assignment_template(), indent=2),
            parameters_content=json.dumps(
                {
                    "accountName": {"value": self.account.name},
                    "accountId": {"value": self.account.id},
                    "principalIds": {"value": [site.identity.principal_id for site in sites]},
                }
            ),
            tags=tags,
        )
        self.diagnostics = send_diagnostics(
            self, "diagnostics", target_resource_id=self.account.id, workspace=workspace
        )
