"""Log Analytics workspace, one workspace-based Application Insights per region, and the
diagnostic-settings helper every other construct uses to send its logs to the workspace."""

from cdktf_cdktf_provider_azurerm.application_insights import ApplicationInsights
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.monitor_diagnostic_setting import (
    MonitorDiagnosticSetting,
    MonitorDiagnosticSettingEnabledLog,
    MonitorDiagnosticSettingEnabledMetric,
)
from constructs import Construct

from stacks.naming import Names

LOG_RETENTION_DAYS = 30


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        location: str,
        resource_group_name: str,
        regional_resource_groups: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.workspace = LogAnalyticsWorkspace(
            self,
            "workspace",
            name=names.global_("log"),
            location=location,
            resource_group_name=resource_group_name,
            sku="PerGB2018",
            retention_in_days=LOG_RETENTION_DAYS,
            tags=tags,
        )
        self.app_insights: dict[str, ApplicationInsights] = {
            region: ApplicationInsights(
                self,
                f"insights-{region}",
                name=names.regional(region, "appi"),
                location=region,
                resource_group_name=group,
                application_type="web",
                workspace_id=self.workspace.id,
                local_authentication_disabled=False,
                tags=tags,
            )
            for region, group in regional_resource_groups.items()
        }


def send_diagnostics(
    scope: Construct,
    id_: str,
    *,
    target_resource_id: str,
    workspace: LogAnalyticsWorkspace,
    metrics: bool = True,
    log_categories: tuple[str, ...] | None = None,
) -> MonitorDiagnosticSetting:
    """All logs (or only `log_categories`) and (unless the type exports none: `metrics=False`)
    all metrics of one resource to the workspace."""
    exported = [MonitorDiagnosticSettingEnabledMetric(category="AllMetrics")] if metrics else None
    logs = (
        [MonitorDiagnosticSettingEnabledLog(category=c) for c in log_categories]
        if log_categories
        else [MonitorDiagnosticSettingEnabledLog(category_group="allLogs")]
    )
    return MonitorDiagnosticSetting(
        scope,
        id_,
        name="to-log-analytics",
        target_resource_id=target_resource_id,
        log_analytics_workspace_id=workspace.id,
        enabled_log=logs,
        enabled_metric=exported,
    )
