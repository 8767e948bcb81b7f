"""One region's App Service: Linux plan + Linux web app (Python 3.12) + diagnostics.

Secure defaults live here, not in the caller: HTTPS only, TLS 1.2 minimum with HTTP/2 off
(a client-certificate exclusion path forces TLS renegotiation), client certificate Required
except under /health, FTP/WebDeploy basic auth off, FTPS disabled, default-Deny access
restrictions that allow only the API Management gateways and Traffic Manager's probes, an SCM
site that is Deny by default, and a system identity that reads the health key from Key Vault
(and, granted by stacks/data_store.py, the TodoItem table: `store_settings` tell the app where).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from cdktf_cdktf_provider_azurerm.application_insights import ApplicationInsights
from cdktf_cdktf_provider_azurerm.linux_web_app import (
    LinuxWebApp,
    LinuxWebAppIdentity,
    LinuxWebAppLogs,
    LinuxWebAppLogsHttpLogs,
    LinuxWebAppLogsHttpLogsFileSystem,
    LinuxWebAppSiteConfig,
    LinuxWebAppSiteConfigApplicationStack,
    LinuxWebAppSiteConfigIpRestriction,
    LinuxWebAppSiteConfigScmIpRestriction,
)
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.service_plan import ServicePlan
from constructs import Construct

from stacks.config import AppService, Certificate
from stacks.key_vault import SecretStore
from stacks.monitoring import send_diagnostics
from stacks.naming import Names

PYTHON_VERSION = "3.12"
STARTUP_COMMAND = "bash app/startup.sh"
HEALTH_PATH_PREFIX = "/health"
TRAFFIC_MANAGER_SERVICE_TAG = "AzureTrafficManager"
IDENTITY_TYPE = "SystemAssigned, UserAssigned"
# App settings the platform reads (build, monitoring); everything else is read by app/settings.py.
PLATFORM_SETTINGS = {
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "true",
    "ENABLE_ORYX_BUILD": "true",
    # The app sends its own telemetry (app/telemetry.py, the Azure Monitor distro); App
    # Service's auto-instrumentation on top would send every request twice.
    "ApplicationInsightsAgent_EXTENSION_VERSION": "disabled",
}


@dataclass(frozen=True)
class GatewayAddress:
    """One API Management gateway's public IP (a token until apply), named for the allow list."""

    name: str
    ip_address: str


class RegionalApp(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        region: str,
        resource_group_name: str,
        app_service: AppService,
        certificate: Certificate,
        secrets: SecretStore,
        gateway_addresses: list[GatewayAddress],
        store_settings: Mapping[str, str],
        app_insights: ApplicationInsights,
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.region = region
        self.plan = ServicePlan(
            self,
            "plan",
            name=names.regional(region, "plan"),
            location=region,
            resource_group_name=resource_group_name,
            os_type="Linux",
            sku_name=app_service.plan_sku,
            worker_count=app_service.instances,
            zone_balancing_enabled=app_service.zone_balancing,
            tags=tags,
        )
        self.web_app = LinuxWebApp(
            self,
            "web-app",
            name=names.regional(region, "app"),
            location=region,
            resource_group_name=resource_group_name,
            service_plan_id=self.plan.id,
            https_only=True,
            client_affinity_enabled=False,
            client_certificate_enabled=True,
            client_certificate_mode="Required",
            client_certificate_exclusion_paths=HEALTH_PATH_PREFIX,
            ftp_publish_basic_authentication_enabled=False,
            webdeploy_publish_basic_authentication_enabled=False,
            public_network_access_enabled=True,
            # System: the app's own identity (table data, its own Key Vault reads). User: the
            # platform resolves Key Vault references with it, authorised before the app exists.
            identity=LinuxWebAppIdentity(
                type=IDENTITY_TYPE, identity_ids=[secrets.reference_identity.id]
            ),
            key_vault_reference_identity_id=secrets.reference_identity.id,
            app_settings={
                **_app_settings(app_service, certificate, secrets, app_insights),
                **store_settings,
            },
            site_config=_site_config(app_service, secrets, gateway_addresses),
            logs=LinuxWebAppLogs(
                detailed_error_messages=True,
                failed_request_tracing=True,
                http_logs=LinuxWebAppLogsHttpLogs(
                    file_system=LinuxWebAppLogsHttpLogsFileSystem(
                        retention_in_days=7, retention_in_mb=35
                    )
                ),
            ),
            tags=tags,
            depends_on=[secrets.reference_propagated],
        )
        self.secret_access = secrets.grant_secret_read(
            self, "reads-health-key", self.web_app.identity.principal_id
        )
        self.diagnostics = send_diagnostics(
            self, "diagnostics", target_resource_id=self.web_app.id, workspace=workspace
        )


def health_check_path(secrets: SecretStore) -> str:
    return f"{HEALTH_PATH_PREFIX}/{secrets.health_key.result}"


def _app_settings(
    app_service: AppService,
    certificate: Certificate,
    secrets: SecretStore,
    app_insights: ApplicationInsights,
) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "HEALTH_CHECK_KEY": secrets.health_key_reference,
        "CLIENT_CERT_SUBJECT": certificate.subject,
        "CLIENT_CERT_ISSUER": certificate.expected_issuer,
        # The certificate (public part) whose key the app pins: renewals reuse the key.
        "CLIENT_CERT_PINNED_KEYS": secrets.certificate.certificate_data_base64,
        "WEB_CONCURRENCY": str(app_service.workers),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": app_insights.connection_string,
        **PLATFORM_SETTINGS,
    }


def _site_config(
    app_service: AppService, secrets: SecretStore, gateway_addresses: list[GatewayAddress]
) -> LinuxWebAppSiteConfig:
    allow = [
        LinuxWebAppSiteConfigIpRestriction(
            name=address.name,
            ip_address=f"{address.ip_address}/32",
            action="Allow",
            priority=100 + i,
        )
        for i, address in enumerate(gateway_addresses)
    ]
    allow.append(
        LinuxWebAppSiteConfigIpRestriction(
            name="traffic-manager-probes",
            service_tag=TRAFFIC_MANAGER_SERVICE_TAG,
            action="Allow",
            priority=200,
        )
    )
    scm_allow = [
        LinuxWebAppSiteConfigScmIpRestriction(
            name=f"deploy-{i}", ip_address=str(cidr), action="Allow", priority=100 + i
        )
        for i, cidr in enumerate(app_service.scm_allowed_cidrs)
    ]
    return LinuxWebAppSiteConfig(
        always_on=True,
        app_command_line=STARTUP_COMMAND,
        application_stack=LinuxWebAppSiteConfigApplicationStack(python_version=PYTHON_VERSION),
        ftps_state="Disabled",
        http2_enabled=False,
        minimum_tls_version="1.2",
        scm_minimum_tls_version="1.2",
        remote_debugging_enabled=False,
        health_check_path=health_check_path(secrets),
        health_check_eviction_time_in_min=app_service.health_check_eviction_minutes,
        ip_restriction_default_action="Deny",
        ip_restriction=allow,
        scm_use_main_ip_restriction=False,
        scm_ip_restriction_default_action="Deny",
        scm_ip_restriction=scm_allow or None,
    )
