"""Azure Monitor metric alerts and the action group that carries them to people.

One `OperationsAlerts` per stack: an action group (e-mail receivers from `alerts.email_receivers`,
none by default) and one metric alert per thing that needs a person:

- a Traffic Manager endpoint degraded (per profile, one alert instance per endpoint),
- API Management answering 5xx (per instance),
- an App Service health check failing (per web app, so per region),
- the store (a Cosmos DB account): availability and throttling (429), via `store()`.

Every alert's description says what it means and what to look at first (docs/operations.md has
the same, longer). Metric names and namespaces: Azure Monitor "supported metrics" tables.
"""

from cdktf_cdktf_provider_azurerm.monitor_action_group import (
    MonitorActionGroup,
    MonitorActionGroupEmailReceiver,
)
from cdktf_cdktf_provider_azurerm.monitor_metric_alert import (
    MonitorMetricAlert,
    MonitorMetricAlertAction,
    MonitorMetricAlertCriteria,
    MonitorMetricAlertCriteriaDimension,
)
from constructs import Construct

from stacks.config import Alerts as AlertSettings
from stacks.naming import Names

ACTION_GROUP_SHORT_NAME = "todo-api"  # at most 12 characters; shown in e-mails and SMS
EVALUATION_FREQUENCY = "PT1M"
STORE_AVAILABILITY_WINDOW = "PT1H"  # ServiceAvailability has a one-hour grain
STORE_AVAILABILITY_FREQUENCY = "PT5M"
# Traffic Manager reports endpoint status per probe result (1 up, 0 down) from several probe
# locations. Microsoft documents Maximum (supported-metrics table) and Average ("Traffic Manager
# metrics and alerts") for it, not Minimum, and recommends alerting when the average falls
# below 0.5: more than half of the probe results in the window said down, which is Traffic
# Manager's own rule for Degraded (a majority of probes). One probe location failing alone is
# not an outage and does not fire; an endpoint Degraded for about half the window or more does.
ENDPOINT_DOWN_AVERAGE = 0.5
CRITICAL, ERROR, WARNING = 0, 1, 2  # Azure Monitor severities (0 highest)


class OperationsAlerts(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        resource_group_name: str,
        settings: AlertSettings,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self._names = names
        self._resource_group_name = resource_group_name
        self._settings = settings
        self._tags = tags
        self.action_group = MonitorActionGroup(
            self,
            "action-group",
            name=names.global_("alerts"),
            resource_group_name=resource_group_name,
            short_name=ACTION_GROUP_SHORT_NAME,
            email_receiver=[
                MonitorActionGroupEmailReceiver(
                    name=f"email-{i}", email_address=address, use_common_alert_schema=True
                )
                for i, address in enumerate(settings.email_receivers)
            ]
            or None,
            tags=tags,
        )
        self.alerts: dict[str, MonitorMetricAlert] = {}

    @property
    def _window(self) -> str:
        return f"PT{self._settings.window_minutes}M"

    def traffic_manager_endpoints(self, key: str, profile_id: str, probed: str) -> None:
        """An endpoint of this profile failed its probes. `probed` names what the probes ask
        for in words (never the probe path itself: the web apps' path holds the health key)."""
        self._alert(
            f"tm-endpoint-degraded-{key}",
            scope=profile_id,
            severity=ERROR,
            description=(
                f"A Traffic Manager endpoint ({key}) is Degraded: most of its probes of {probed} "
                f"failed in the last {self._settings.window_minutes} minutes, so Traffic Manager "
                "sends clients to the other region (the alert names the "
                "endpoint). Look first at: that endpoint's health check (App Service > Health "
                "check, or the probe path by hand) and the failover workbook. If every endpoint "
                "is Degraded, Traffic Manager returns all of them and failover has stopped."
            ),
            criteria=MonitorMetricAlertCriteria(
                metric_namespace="Microsoft.Network/trafficManagerProfiles",
                metric_name="ProbeAgentCurrentEndpointStateByProfileResourceId",
                aggregation="Average",
                operator="LessThan",
                threshold=ENDPOINT_DOWN_AVERAGE,
                dimension=[_dimension("EndpointName", "*")],  # one alert instance per endpoint
            ),
        )

    def gateway_failures(self, key: str, api_management_id: str) -> None:
        self._alert(
            f"gateway-5xx-{key}",
            scope=api_management_id,
            severity=ERROR,
            description=(
                f"API Management ({key}) answered more than "
                f"{self._settings.gateway_failed_requests} requests with 5xx in "
                f"{self._settings.window_minutes} minutes: callers see failures. Look first at: "
                "the failover workbook (which region fails, since when), then the web apps' "
                "health checks and the gateway's backend errors (Application Insights, "
                "failures, by backend)."
            ),
            criteria=MonitorMetricAlertCriteria(
                metric_namespace="Microsoft.ApiManagement/service",
                metric_name="Requests",
                aggregation="Total",
                operator="GreaterThan",
                threshold=self._settings.gateway_failed_requests,
                dimension=[_dimension("GatewayResponseCodeCategory", "5xx")],
            ),
        )

    def web_app_health(self, region: str, web_app_id: str) -> None:
        self._alert(
            f"health-check-{region}",
            scope=web_app_id,
            severity=ERROR,
            description=(
                f"The web app in {region} fails App Service's health check (below "
                f"{self._settings.health_check_percent} % healthy instances): App Service "
                "evicts unhealthy instances and Traffic Manager will take the region out. Look "
                "first at: the app's log stream and Application Insights failures for that "
                "region (cloud role instance = the site name), then its settings (a bad one "
                "stops the start with one line naming it)."
            ),
            criteria=MonitorMetricAlertCriteria(
                metric_namespace="Microsoft.Web/sites",
                metric_name="HealthCheckStatus",
                aggregation="Average",
                operator="LessThan",
                threshold=self._settings.health_check_percent,
            ),
        )

    def store(self, account_id: str) -> None:
        """Availability and throttling of the store's Cosmos DB account (a resource id token)."""
        settings = self._settings
        self._alert(
            "store-availability",
            scope=account_id,
            severity=CRITICAL,
            window=STORE_AVAILABILITY_WINDOW,
            frequency=STORE_AVAILABILITY_FREQUENCY,
            description=(
                "The store's Cosmos DB account served fewer than "
                f"{settings.store_availability_percent} % of requests successfully in the last "
                "hour: writes or reads fail in every region. Look first at: Azure Service "
                "Health for Cosmos DB in the write region, the account's Insights > "
                "Availability and the app's dependency failures; a regional outage of the write "
                "region needs a (forced) failover of the account (docs/operations.md)."
            ),
            criteria=MonitorMetricAlertCriteria(
                metric_namespace="Microsoft.DocumentDB/databaseAccounts",
                metric_name="ServiceAvailability",
                aggregation="Average",
                operator="LessThan",
                threshold=settings.store_availability_percent,
            ),
        )
        self._alert(
            "store-throttled",
            scope=account_id,
            severity=WARNING,
            description=(
                f"The store's Cosmos DB account throttled (429) more than "
                f"{settings.store_throttled_requests} requests in {settings.window_minutes} "
                "minutes: the app retries, so callers see latency before errors. Look first at: "
                "the account's Insights > Throughput (normalized RU consumption per partition) "
                "and raise the throughput or autoscale maximum."
            ),
            criteria=MonitorMetricAlertCriteria(
                metric_namespace="Microsoft.DocumentDB/databaseAccounts",
                metric_name="TotalRequests",
                aggregation="Count",
                operator="GreaterThan",
                threshold=settings.store_throttled_requests,
                dimension=[_dimension("StatusCode", "429")],
            ),
        )

    def _alert(
        self,
        key: str,
        *,
        scope: str,
        severity: int,
        description: str,
        criteria: MonitorMetricAlertCriteria,
        window: str | None = None,
        frequency: str = EVALUATION_FREQUENCY,
    ) -> None:
        if key in self.alerts:
            raise ValueError(f"alert {key!r} made twice")
        self.alerts[key] = MonitorMetricAlert(
            self,
            key,
            name=self._names.global_(f"alert-{key}"),
            resource_group_name=self._resource_group_name,
            scopes=[scope],
            description=description,
            severity=severity,
            frequency=frequency,
            window_size=window or self._window,
            auto_mitigate=True,
            criteria=[criteria],
            action=[MonitorMetricAlertAction(action_group_id=self.action_group.id)],
            tags=self._tags,
        )


def _dimension(name: str, value: str) -> MonitorMetricAlertCriteriaDimension:
    return MonitorMetricAlertCriteriaDimension(name=name, operator="Include", values=[value])
