"""One region's private data plane (`network.mode = "private"`): a virtual network with a subnet
for App Service's VNet integration and one for private endpoints, the private DNS zones of the
Cosmos DB (Table) account and the Key Vault, linked to this VNet only, and the private endpoints
that register in them.

The zones are per region on purpose (docs/deploy.md, "Private data plane"): a private DNS zone
holds one A record per name, so two regions' endpoints of the same account cannot share one zone
(Microsoft, "Failover considerations for Azure Cosmos DB accounts with private endpoints").
Each region's app resolves the account's global and regional names, and the vault's name, to its
own region's endpoints, and needs nothing of the other region: no peering.
"""

from dataclasses import dataclass

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_azurerm.private_dns_zone import PrivateDnsZone
from cdktf_cdktf_provider_azurerm.private_dns_zone_virtual_network_link import (
    PrivateDnsZoneVirtualNetworkLink,
)
from cdktf_cdktf_provider_azurerm.private_endpoint import (
    PrivateEndpoint,
    PrivateEndpointPrivateDnsZoneGroup,
    PrivateEndpointPrivateServiceConnection,
)
from cdktf_cdktf_provider_azurerm.subnet import (
    Subnet,
    SubnetDelegation,
    SubnetDelegationServiceDelegation,
)
from cdktf_cdktf_provider_azurerm.virtual_network import VirtualNetwork
from constructs import Construct

from stacks.config import RegionNetwork
from stacks.naming import Names

APP_SERVICE_DELEGATION = "Microsoft.Web/serverFarms"
APP_SUBNET_NAME = "app-integration"
ENDPOINT_SUBNET_NAME = "private-endpoints"


@dataclass(frozen=True)
class PrivateService:
    """A service the apps reach through a private endpoint: the endpoint's sub-resource (group
    id) and the private DNS zone its records go into (learn.microsoft.com, "Azure Private
    Endpoint private DNS zone values")."""

    short: str  # in resource names
    subresource: str
    zone: str


TABLE = PrivateService("cosmos", "Table", "privatelink.table.cosmos.azure.com")
VAULT = PrivateService("kv", "vault", "privatelink.vaultcore.azure.net")
PRIVATE_SERVICES = (TABLE, VAULT)


@dataclass(frozen=True)
class VnetIntegration:
    """What a region's sites (web app and slot) need in private mode: the subnet they route all
    outbound traffic through, and what must exist before they start (the vault's private endpoint
    and DNS, or their Key Vault references cannot resolve)."""

    subnet_id: str
    ready: tuple[ITerraformDependable, ...]


class RegionalNetwork(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        region: str,
        plan: RegionNetwork,
        names: Names,
        resource_group_name: str,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.region = region
        self._names = names
        # Every resource here: in the region's group, tagged; those with a location in the region.
        self._common = {"resource_group_name": resource_group_name, "tags": tags}
        self._placed = {**self._common, "location": region}
        self.vnet = VirtualNetwork(
            self, "vnet", name=names.regional(region, "vnet"),
            address_space=[str(plan.address_space)], **self._placed,
        )
        delegation = SubnetDelegation(
            name="app-service",
            service_delegation=SubnetDelegationServiceDelegation(
                name=APP_SERVICE_DELEGATION,
                actions=["Microsoft.Network/virtualNetworks/subnets/action"],
            ),
        )
        self.app_subnet = self._subnet("app-subnet", APP_SUBNET_NAME, plan.app_subnet,
                                       delegation=[delegation])
        self.endpoint_subnet = self._subnet("endpoint-subnet", ENDPOINT_SUBNET_NAME,
                                            plan.endpoint_subnet)
        # One zone of each name per region, in this region's group, linked to this VNet only.
        self.zones = {
            service.short: PrivateDnsZone(self, f"{service.short}-zone", name=service.zone,
                                          **self._common)
            for service in PRIVATE_SERVICES
        }
        self.zone_links = {
            short: PrivateDnsZoneVirtualNetworkLink(
                self, f"{short}-zone-link", name=names.regional(region, f"{short}-dns-link"),
                private_dns_zone_name=zone.name, virtual_network_id=self.vnet.id,
                registration_enabled=False, **self._common,
            )
            for short, zone in self.zones.items()
        }
        self.private_endpoints: dict[str, PrivateEndpoint] = {}

    def _subnet(self, id_: str, name: str, prefix, **options) -> Subnet:
        """A subnet of this VNet (subnets take no tags)."""
        return Subnet(
            self, id_, name=name, virtual_network_name=self.vnet.name,
            resource_group_name=self._common["resource_group_name"],
            address_prefixes=[str(prefix)], **options,
        )

    def connect(self, service: PrivateService, target_resource_id: str) -> PrivateEndpoint:
        """A private endpoint in the endpoint subnet to `target_resource_id`, whose DNS records go
        into this region's zone of `service` (a zone group: Azure keeps them in step with the
        endpoint, a Cosmos DB region added or removed included)."""
        name = self._names.regional(self.region, f"{service.short}-pe")
        endpoint = PrivateEndpoint(
            self, f"{service.short}-endpoint", name=name, subnet_id=self.endpoint_subnet.id,
            private_service_connection=PrivateEndpointPrivateServiceConnection(
                name=self._names.regional(self.region, f"{service.short}-psc"),
                private_connection_resource_id=target_resource_id,
                subresource_names=[service.subresource],
                is_manual_connection=False,
            ),
            private_dns_zone_group=PrivateEndpointPrivateDnsZoneGroup(
                name=service.short, private_dns_zone_ids=[self.zones[service.short].id]
            ),
            **self._placed,
        )
        self.private_endpoints[service.short] = endpoint
        return endpoint

    def integration(self) -> VnetIntegration:
        """The sites' VNet integration; call after `connect(VAULT, ...)`."""
        vault = self.private_endpoints[VAULT.short]
        return VnetIntegration(self.app_subnet.id, (vault, self.zone_links[VAULT.short]))
