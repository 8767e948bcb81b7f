"""A Traffic Manager profile (Performance routing, HTTPS probes) and its endpoints.

Used twice at most: in front of the regional web apps (probe `/health/<key>`) and, in the
`dual` topology, in front of the two API Management gateways (probe APIM's status path).
Failover budget: (tolerated failures + 1) x interval + DNS TTL (TrafficManager.failover_seconds).
"""

from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.traffic_manager_azure_endpoint import (
    TrafficManagerAzureEndpoint,
)
from cdktf_cdktf_provider_azurerm.traffic_manager_external_endpoint import (
    TrafficManagerExternalEndpoint,
)
from cdktf_cdktf_provider_azurerm.traffic_manager_profile import (
    TrafficManagerProfile,
    TrafficManagerProfileDnsConfig,
    TrafficManagerProfileMonitorConfig,
)
from constructs import Construct

from stacks.config import TrafficManager as ProbeSettings
from stacks.monitoring import send_diagnostics

EXPECTED_STATUS = "200-299"


class TrafficManager(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        resource_group_name: str,
        probe_path: str,
        settings: ProbeSettings,
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.profile = TrafficManagerProfile(
            self,
            "profile",
            name=name,
            resource_group_name=resource_group_name,
            traffic_routing_method="Performance",
            dns_config=TrafficManagerProfileDnsConfig(
                relative_name=name, ttl=settings.dns_ttl_seconds
            ),
            monitor_config=TrafficManagerProfileMonitorConfig(
                protocol="HTTPS",
                port=443,
                path=probe_path,
                interval_in_seconds=settings.probe_interval_seconds,
                timeout_in_seconds=settings.probe_timeout_seconds,
                tolerated_number_of_failures=settings.tolerated_failures,
                expected_status_code_ranges=[EXPECTED_STATUS],
            ),
            tags=tags,
        )
        self.diagnostics = send_diagnostics(
            self, "diagnostics", target_resource_id=self.profile.id, workspace=workspace
        )
        self.endpoints: list[TrafficManagerAzureEndpoint | TrafficManagerExternalEndpoint] = []

    @property
    def fqdn(self) -> str:
        return self.profile.fqdn

    def add_azure_endpoint(self, name: str, target_resource_id: str) -> None:
        self.endpoints.append(
            TrafficManagerAzureEndpoint(
                self,
                f"endpoint-{name}",
                name=name,
                profile_id=self.profile.id,
                target_resource_id=target_resource_id,
            )
        )

    def add_external_endpoint(self, name: str, target: str, location: str) -> None:
        self.endpoints.append(
            TrafficManagerExternalEndpoint(
                self,
                f"endpoint-{name}",
                name=name,
                profile_id=self.profile.id,
                target=target,
                endpoint_location=location,
            )
        )
