"""One region's App Service: Linux plan + Linux web app (Python 3.12) + diagnostics.

Secure defaults live here, not in the caller: HTTPS only, TLS 1.2 minimum with HTTP/2 off
(a client-certificate exclusion path forces TLS renegotiation), client certificate Required
except under /health, FTP/WebDeploy basic auth off, FTPS disabled, default-Deny access
restrictions that allow only the API Management gateways and Traffic Manager's probes, an SCM
site that is Deny by default, and a system identity that reads the health key from Key Vault
(and, granted by stacks/data_store.py, the TodoItem table: `store_settings` tell the app where).
`auth_settings` say whom the app accepts (AUTH_*, stacks/api_identity.py): the same on production
and the slot, so a swap never changes who may call.

The staging slot (`app_service.staging_slot`, on by default) is a second live site named
`staging` on the same plan: releases deploy to it, smoke it through its own host name and swap it
into production. It is built from the same arguments as production (`_site_arguments`), so its
app settings, identities, access rules, certificate settings and site config cannot drift; only
its name and parent differ. Its system identity gets production's grants (the Key Vault secret
here, the table in stacks/data_store.py, which reads `RegionalApp.sites`).

With `network.mode = "private"` (`integration`), both sites join the region's app subnet (VNet
integration) and route all outbound traffic through it (`vnet_route_all_enabled`): the Key Vault
references and the table are then reached through the region's private endpoints. Inbound stays
public behind the access rules (Traffic Manager probes and API Management call from outside).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    LinuxWebAppStickySettings,
)
from cdktf_cdktf_provider_azurerm.linux_web_app_slot import (
    LinuxWebAppSlot,
    LinuxWebAppSlotIdentity,
    LinuxWebAppSlotLogs,
    LinuxWebAppSlotLogsHttpLogs,
    LinuxWebAppSlotLogsHttpLogsFileSystem,
    LinuxWebAppSlotSiteConfig,
    LinuxWebAppSlotSiteConfigApplicationStack,
    LinuxWebAppSlotSiteConfigIpRestriction,
    LinuxWebAppSlotSiteConfigScmIpRestriction,
)
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.service_plan import ServicePlan
from constructs import Construct

from stacks.config import AppService, Certificate
from stacks.key_vault import SecretStore
from stacks.monitoring import send_diagnostics
from stacks.naming import Names
from stacks.network import VnetIntegration

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
SLOT_NAME = "staging"  # the release driver deploys to this slot and swaps it with production
# App Service's swap warm-up (learn.microsoft.com, "Set up staging environments", "Specify custom
# warm-up"): a swap pings this path on every instance of the source slot, after applying the
# target's slot settings to it, and stops unless each answer's status is listed. Set on
# production and on the slot alike. Without them a swap completes on any answer of `/`.
SWAP_WARMUP_PATH_SETTING = "WEBSITE_SWAP_WARMUP_PING_PATH"
SWAP_WARMUP_STATUSES_SETTING = "WEBSITE_SWAP_WARMUP_PING_STATUSES"
SWAP_WARMUP_STATUSES = "200"  # /health/<key>: 200 once the app holds the key, else 503
SWAP_WARMUP_SETTINGS = (SWAP_WARMUP_PATH_SETTING, SWAP_WARMUP_STATUSES_SETTING)
# Slot settings (`sticky_settings`): stay with their slot across a swap instead of moving with
# the content. No setting of today differs between production and the slot: both run the same
# package against the same table, Key Vault and Application Insights (a slot-only value would
# also mean the swap restarts the slot onto production's value, so what was smoked would not be
# what runs). Only the warm-up settings stick, deliberately: a swap applies the target's slot
# settings to the source before it warms up, so a swap into production is gated by production's
# own warm-up rule, not by whatever the incoming slot carries (Microsoft: "Apply the following
# settings from the target slot ... to all instances of the source slot: slot-specific app
# settings"; docs/deploy.md, "Staging slots").
STICKY_APP_SETTINGS = SWAP_WARMUP_SETTINGS
# The web apps' and slots' log categories sent to the workspace: every one of a Linux web app
# (learn.microsoft.com, "Supported logs for Microsoft.Web/sites") but AppServiceHTTPLogs, the
# front end's request log, which records each request's path: Traffic Manager's and App
# Service's probes of /health/<key> would put the key in the workspace every few seconds. What
# it would show is in the metrics (Http5xx, Requests, HealthCheckStatus) and the app's own
# telemetry, whose paths are templates (app.middleware.reported_path).
WEB_APP_LOGS = (
    "AppServiceAppLogs",
    "AppServiceAuditLogs",
    "AppServiceConsoleLogs",
    "AppServiceIPSecAuditLogs",
    "AppServicePlatformLogs",
)


@dataclass(frozen=True)
class SiteClasses:
    """The provider classes one kind of site is built from: azurerm has one set for a web app and
    another, with the same fields, for its slots."""

    site_config: type
    application_stack: type
    ip_restriction: type
    scm_ip_restriction: type
    identity: type
    logs: type
    http_logs: type
    http_logs_file_system: type


WEB_APP_CLASSES = SiteClasses(
    LinuxWebAppSiteConfig,
    LinuxWebAppSiteConfigApplicationStack,
    LinuxWebAppSiteConfigIpRestriction,
    LinuxWebAppSiteConfigScmIpRestriction,
    LinuxWebAppIdentity,
    LinuxWebAppLogs,
    LinuxWebAppLogsHttpLogs,
    LinuxWebAppLogsHttpLogsFileSystem,
)
SLOT_CLASSES = SiteClasses(
    LinuxWebAppSlotSiteConfig,
    LinuxWebAppSlotSiteConfigApplicationStack,
    LinuxWebAppSlotSiteConfigIpRestriction,
    LinuxWebAppSlotSiteConfigScmIpRestriction,
    LinuxWebAppSlotIdentity,
    LinuxWebAppSlotLogs,
    LinuxWebAppSlotLogsHttpLogs,
    LinuxWebAppSlotLogsHttpLogsFileSystem,
)


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
        auth_settings: Mapping[str, str],
        app_insights: ApplicationInsights,
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
        integration: VnetIntegration | None = None,
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
        site = {
            "app_service": app_service,
            "secrets": secrets,
            "gateway_addresses": gateway_addresses,
            "app_settings": {
                **_app_settings(app_service, certificate, secrets, app_insights),
                **store_settings,
                **auth_settings,
            },
            "integration": integration,
            "tags": tags,
        }
        self.web_app = LinuxWebApp(
            self,
            "web-app",
            name=names.regional(region, "app"),
            location=region,
            resource_group_name=resource_group_name,
            service_plan_id=self.plan.id,
            sticky_settings=LinuxWebAppStickySettings(app_setting_names=list(STICKY_APP_SETTINGS)),
            **_site_arguments(WEB_APP_CLASSES, **site),
        )
        self.secret_access = secrets.grant_secret_read(
            self, "reads-health-key", self.web_app.identity.principal_id
        )
        self.diagnostics = send_diagnostics(
            self,
            "diagnostics",
            target_resource_id=self.web_app.id,
            workspace=workspace,
            log_categories=WEB_APP_LOGS,
        )
        self.staging_slot: LinuxWebAppSlot | None = None
        if app_service.staging_slot:
            # On the web app's plan (no service_plan_id): slots cost nothing extra.
            self.staging_slot = LinuxWebAppSlot(
                self,
                "staging-slot",
                name=SLOT_NAME,
                app_service_id=self.web_app.id,
                **_site_arguments(SLOT_CLASSES, **site),
            )
            self.staging_secret_access = secrets.grant_secret_read(
                self, "staging-reads-health-key", self.staging_slot.identity.principal_id
            )
            self.staging_diagnostics = send_diagnostics(
                self,
                "staging-diagnostics",
                target_resource_id=self.staging_slot.id,
                workspace=workspace,
                log_categories=WEB_APP_LOGS,
            )

    @property
    def sites(self) -> tuple[LinuxWebApp | LinuxWebAppSlot, ...]:
        """Every site that runs the app: production, then the staging slot if there is one."""
        return (self.web_app,) if self.staging_slot is None else (self.web_app, self.staging_slot)


def health_check_path(secrets: SecretStore) -> str:
    return f"{HEALTH_PATH_PREFIX}/{secrets.health_key.result}"


def _swap_warmup_settings(secrets: SecretStore) -> dict[str, str]:
    """A swap completes only once every instance of the incoming slot answers its health path."""
    return {
        SWAP_WARMUP_PATH_SETTING: health_check_path(secrets),
        SWAP_WARMUP_STATUSES_SETTING: SWAP_WARMUP_STATUSES,
    }


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
        "CLIENT_CERT_PINNED_KEYS": secrets.certificate.public_reference,
        "WEB_CONCURRENCY": str(app_service.workers),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": app_insights.connection_string,
        **PLATFORM_SETTINGS,
        **_swap_warmup_settings(secrets),
    }


def _site_arguments(
    classes: SiteClasses,
    *,
    app_service: AppService,
    secrets: SecretStore,
    gateway_addresses: list[GatewayAddress],
    app_settings: dict[str, str],
    integration: VnetIntegration | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    """What production and the staging slot share: keyword arguments of LinuxWebApp and
    LinuxWebAppSlot alike, built from `classes`."""
    return {
        "https_only": True,
        "client_affinity_enabled": False,
        "client_certificate_enabled": True,
        "client_certificate_mode": "Required",
        "client_certificate_exclusion_paths": HEALTH_PATH_PREFIX,
        "ftp_publish_basic_authentication_enabled": False,
        "webdeploy_publish_basic_authentication_enabled": False,
        "public_network_access_enabled": True,
        # System: the app's own identity (table data, its own Key Vault reads). User: the
        # platform resolves Key Vault references with it, authorised before the app exists.
        "identity": classes.identity(
            type=IDENTITY_TYPE, identity_ids=[secrets.reference_identity.id]
        ),
        "key_vault_reference_identity_id": secrets.reference_identity.id,
        "virtual_network_subnet_id": integration.subnet_id if integration else None,
        "app_settings": app_settings,
        "site_config": _site_config(
            classes, app_service, secrets, gateway_addresses, route_all=integration is not None
        ),
        "logs": classes.logs(
            detailed_error_messages=True,
            failed_request_tracing=True,
            http_logs=classes.http_logs(
                file_system=classes.http_logs_file_system(retention_in_days=7, retention_in_mb=35)
            ),
        ),
        "tags": tags,
        # The secrets its Key Vault references name exist before the app resolves them.
        "depends_on": [
            secrets.reference_propagated,
            secrets.health_key_secret.writer,
            secrets.certificate.ensured,
            *(integration.ready if integration else ()),
        ],
    }


def _site_config(
    classes: SiteClasses,
    app_service: AppService,
    secrets: SecretStore,
    gateway_addresses: list[GatewayAddress],
    route_all: bool,
) -> Any:
    """`route_all`: every outbound call goes through the VNet integration (Key Vault references
    included), so the private endpoints' DNS answers; unset (not false) without integration."""
    scm_allow = [classes.scm_ip_restriction(**rule) for rule in _scm_rules(app_service)]
    return classes.site_config(
        always_on=True,
        app_command_line=STARTUP_COMMAND,
        application_stack=classes.application_stack(python_version=PYTHON_VERSION),
        ftps_state="Disabled",
        http2_enabled=False,
        minimum_tls_version="1.2",
        scm_minimum_tls_version="1.2",
        remote_debugging_enabled=False,
        health_check_path=health_check_path(secrets),
        health_check_eviction_time_in_min=app_service.health_check_eviction_minutes,
        ip_restriction_default_action="Deny",
        ip_restriction=[
            classes.ip_restriction(**rule) for rule in _access_rules(gateway_addresses)
        ],
        scm_use_main_ip_restriction=False,
        scm_ip_restriction_default_action="Deny",
        scm_ip_restriction=scm_allow or None,
        vnet_route_all_enabled=True if route_all else None,
    )


def _access_rules(gateway_addresses: list[GatewayAddress]) -> list[dict[str, Any]]:
    """The main site's allow rules (default Deny): each API Management gateway's IP, then
    Traffic Manager's probes."""
    rules: list[dict[str, Any]] = [
        {
            "name": address.name,
            "ip_address": f"{address.ip_address}/32",
            "action": "Allow",
            "priority": 100 + i,
        }
        for i, address in enumerate(gateway_addresses)
    ]
    rules.append(
        {
            "name": "traffic-manager-probes",
            "service_tag": TRAFFIC_MANAGER_SERVICE_TAG,
            "action": "Allow",
            "priority": 200,
        }
    )
    return rules


def _scm_rules(app_service: AppService) -> list[dict[str, Any]]:
    """The SCM (Kudu) site's allow rules (default Deny): the configured deploy ranges."""
    return [
        {"name": f"deploy-{i}", "ip_address": str(cidr), "action": "Allow", "priority": 100 + i}
        for i, cidr in enumerate(app_service.scm_allowed_cidrs)
    ]
