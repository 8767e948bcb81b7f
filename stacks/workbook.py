"""The failover workbook: per region over time, requests, failures, latency and the Traffic
Manager endpoint status, so a drill can be watched live and read afterwards.

An Azure Monitor workbook (`azurerm_application_insights_workbook`) whose `data_json` is built
here (the portal's "Notebook/1.0" gallery format). Two sources, side by side:

- the app's own telemetry (Application Insights, in the shared Log Analytics workspace as
  `AppRequests`): one series per region (cloud role instance = the site name), counts corrected
  for sampling (`sum(ItemCount)`), failures = 5xx, latency p50/p95;
- platform metrics, unsampled: App Service `Requests`, `Http5xx`, `HttpResponseTime` per web app
  (one web app per region) and Traffic Manager `ProbeAgentCurrentEndpointStateByProfileResourceId`
  per endpoint (1 = up, 0 = degraded).

The time range is the workbook's `TimeRange` parameter (default: the last hour, auto-refresh in
the portal for a live drill; pick the drill's window afterwards, tools/operations/workbook_link.py prints it).
"""

import json
import uuid

from cdktf_cdktf_provider_azurerm.application_insights_workbook import ApplicationInsightsWorkbook
from constructs import Construct

from stacks.naming import Names

WORKBOOK_NAMESPACE = uuid.UUID("0f7c1a52-5d0e-4c1e-9a47-2b1f6f0d8e11")  # names are UUIDs
DEFAULT_RANGE_MS = 60 * 60 * 1000
PORTAL = "https://portal.azure.com/#@/resource"
SCHEMA = (
    "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json"
)
# Workbook metric aggregations (MetricsItem/2.0): 1 sum, 2 minimum, 3 maximum, 4 average.
SUM, MINIMUM, AVERAGE = 1, 2, 4
LINE_CHART = 2


class FailoverWorkbook(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        location: str,
        resource_group_name: str,
        workspace_id: str,
        web_app_ids: dict[str, str],
        traffic_manager_ids: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.workbook = ApplicationInsightsWorkbook(
            self,
            "workbook",
            name=str(uuid.uuid5(WORKBOOK_NAMESPACE, names.base)),
            display_name=f"{names.base} failover drill",
            description="Per region: requests, failures, latency; Traffic Manager endpoint status",
            location=location,
            resource_group_name=resource_group_name,
            category="workbook",
            data_json=workbook_json(workspace_id, web_app_ids, traffic_manager_ids),
            tags=tags,
        )

    @property
    def id(self) -> str:
        return self.workbook.id

    @property
    def portal_url(self) -> str:
        return f"{PORTAL}{self.workbook.id}/workbook"


def workbook_json(
    workspace_id: str, web_app_ids: dict[str, str], traffic_manager_ids: dict[str, str]
) -> str:
    """The workbook document; ids may be Terraform tokens (they land inside JSON strings)."""
    apps = list(web_app_ids.values())
    items = [
        _text(
            "## Failover drill\n"
            "Per region (the app's cloud role instance is its site name, one web app per "
            "region). Application Insights counts are corrected for sampling; platform metrics "
            "are unsampled. Traffic Manager endpoint status: 1 = online, 0 = degraded."
        ),
        _time_range(),
        _logs("requests", "Requests per region (Application Insights)", workspace_id,
              "summarize Requests = sum(ItemCount)"),
        _logs("failures", "Failed requests (5xx) per region (Application Insights)",
              workspace_id, "summarize Failed = sumif(ItemCount, toint(ResultCode) >= 500)"),
        _logs("latency", "Latency p95 per region, ms (Application Insights)", workspace_id,
              "summarize p95 = percentile(DurationMs, 95)"),
        _metric("platform-requests", "Requests per web app (App Service, unsampled)",
                "microsoft.web/sites", apps, "Requests", SUM),
        _metric("platform-5xx", "HTTP 5xx per web app (App Service, unsampled)",
                "microsoft.web/sites", apps, "Http5xx", SUM),
        _metric("platform-latency", "Response time per web app, s (App Service)",
                "microsoft.web/sites", apps, "HttpResponseTime", AVERAGE),
        _metric("health-check", "Health check status per web app, % healthy (App Service)",
                "microsoft.web/sites", apps, "HealthCheckStatus", AVERAGE),
    ]
    for key, profile_id in traffic_manager_ids.items():
        items.append(
            _metric(f"endpoints-{key}", f"Traffic Manager endpoint status ({key})",
                    "microsoft.network/trafficmanagerprofiles", [profile_id],
                    "ProbeAgentCurrentEndpointStateByProfileResourceId", MINIMUM,
                    split_by="EndpointName")
        )
    document = {
        "version": "Notebook/1.0",
        "items": items,
        "fallbackResourceIds": ["Azure Monitor"],
        "$schema": SCHEMA,
    }
    return json.dumps(document, separators=(",", ":"))


def _text(markdown: str) -> dict:
    return {"type": 1, "name": "title", "content": {"json": markdown}}


def _time_range() -> dict:
    return {
        "type": 9,
        "name": "parameters",
        "content": {
            "version": "KqlParameterItem/1.0",
            "parameters": [
                {
                    "id": "time-range",
                    "version": "KqlParameterItem/1.0",
                    "name": "TimeRange",
                    "label": "Time range",
                    "type": 4,
                    "isRequired": True,
                    "value": {"durationMs": DEFAULT_RANGE_MS},
                    "typeSettings": {
                        "selectableValues": [
                            {"durationMs": minutes * 60 * 1000}
                            for minutes in (15, 30, 60, 240, 720, 1440)
                        ],
                        "allowCustom": True,
                    },
                }
            ],
            "style": "pills",
            "queryType": 0,
            "resourceType": "microsoft.operationalinsights/workspaces",
        },
    }


def _logs(name: str, title: str, workspace_id: str, summarize: str) -> dict:
    query = (
        "AppRequests\n| where TimeGenerated {TimeRange}\n"
        f"| {summarize} by bin(TimeGenerated, {{TimeRange:grain}}), Region = AppRoleInstance\n"
        "| render timechart"
    )
    return {
        "type": 3,
        "name": name,
        "content": {
            "version": "KqlItem/1.0",
            "title": title,
            "query": query,
            "size": 0,
            "timeContextFromParameter": "TimeRange",
            "queryType": 0,
            "resourceType": "microsoft.operationalinsights/workspaces",
            "crossComponentResources": [workspace_id],
            "visualization": "timechart",
        },
    }


def _metric(
    name: str,
    title: str,
    resource_type: str,
    resource_ids: list[str],
    metric: str,
    aggregation: int,
    split_by: str | None = None,
) -> dict:
    return {
        "type": 10,
        "name": name,
        "content": {
            "chartId": f"workbook-{name}",
            "version": "MetricsItem/2.0",
            "title": title,
            "size": 0,
            "chartType": LINE_CHART,
            "resourceType": resource_type,
            "metricScope": 0,
            "resourceIds": resource_ids,
            "timeContextFromParameter": "TimeRange",
            "timeContext": {"durationMs": DEFAULT_RANGE_MS},
            "metrics": [
                {
                    "namespace": resource_type,
                    "metric": f"{resource_type}--{metric}",
                    "aggregation": aggregation,
                    **({"splitBy": split_by} if split_by else {}),
                }
            ],
            "gridSettings": {"rowLimit": 10000},
        },
    }
