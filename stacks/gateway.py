"""API Management: one instance (`GatewayInstance`) and what it publishes.

Every topology is built from this one construct: `single` makes one, `multi-region` makes one
Premium instance with an additional location, `dual` makes one per region (same class, same
arguments but the region) so the two cannot drift.

Certificate-name validation (the decision, docs/deploy.md): the backend is the Traffic Manager
FQDN, but what answers is `*.azurewebsites.net`, so APIM validates the certificate chain and
not the name. With `gateway.backend_custom_domain` (a CNAME to the Traffic Manager FQDN whose
certificate is bound on both web apps) the backend uses that name and validates both. The
direct fallback backends (`<app>.azurewebsites.net`) always validate chain and name.
"""

from dataclasses import dataclass

from cdktf import Fn
from cdktf_cdktf_provider_azurerm.api_management import (
    ApiManagement,
    ApiManagementAdditionalLocation,
    ApiManagementIdentity,
    ApiManagementSecurity,
    ApiManagementTimeouts,
)
from cdktf_cdktf_provider_azurerm.api_management_api import ApiManagementApi, ApiManagementApiImport
from cdktf_cdktf_provider_azurerm.api_management_api_diagnostic import ApiManagementApiDiagnostic
from cdktf_cdktf_provider_azurerm.api_management_api_policy import ApiManagementApiPolicy
from cdktf_cdktf_provider_azurerm.api_management_backend import (
    ApiManagementBackend,
    ApiManagementBackendTls,
)
from cdktf_cdktf_provider_azurerm.api_management_certificate import ApiManagementCertificateA
from cdktf_cdktf_provider_azurerm.api_management_logger import (
    ApiManagementLogger,
    ApiManagementLoggerApplicationInsights,
)
from cdktf_cdktf_provider_azurerm.api_management_product import ApiManagementProduct
from cdktf_cdktf_provider_azurerm.api_management_product_api import ApiManagementProductApi
from cdktf_cdktf_provider_azurerm.api_management_subscription import ApiManagementSubscription
from cdktf_cdktf_provider_azurerm.application_insights import ApplicationInsights
from cdktf_cdktf_provider_azurerm.linux_web_app import LinuxWebApp
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from constructs import Construct

from stacks.config import Gateway
from stacks.gateway_policy import Fallback, TokenCheck, api_policy
from stacks.key_vault import SecretStore, propagation_wait
from stacks.monitoring import send_diagnostics
from stacks.openapi import max_body_bytes
from stacks.regional_app import GatewayAddress
from stacks.regions import REGIONS

TRAFFIC_MANAGER_BACKEND = "traffic-manager"
# APIM's built-in gateway health endpoint (what a Traffic Manager in front of gateways probes).
APIM_STATUS_PATH = "/status-0123456789abcdef"
# APIM creation takes 30-90 minutes, a Premium additional location about as long again.
APIM_TIMEOUT = "3h"


@dataclass(frozen=True)
class PublishedApi:
    """What every gateway instance publishes, identical across instances."""

    traffic_manager_fqdn: str
    web_apps: dict[str, LinuxWebApp]  # region -> web app
    subscription_key: str
    openapi_json: str
    # auth.subscription_required: the product (and the API) ask for the key; without it the
    # product is open and has no subscription (the token is then the only check).
    subscription_required: bool = True
    token_check: TokenCheck | None = None  # auth.mode = "entra": the token, checked first


def backend_id(region: str) -> str:
    return f"app-{REGIONS[region].short}"


class GatewayInstance(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        location: str,
        additional_locations: tuple[str, ...],
        resource_group_name: str,
        settings: Gateway,
        secrets: SecretStore,
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        self.location = location
        self.settings = settings
        self.service = ApiManagement(
            self,
            "service",
            name=name,
            location=location,
            resource_group_name=resource_group_name,
            publisher_name=settings.publisher_name,
            publisher_email=settings.publisher_email,
            sku_name=settings.sku,
            identity=ApiManagementIdentity(type="SystemAssigned"),
            additional_location=[
                ApiManagementAdditionalLocation(location=extra) for extra in additional_locations
            ]
            or None,
            min_api_version="2021-08-01",
            security=ApiManagementSecurity(
                backend_ssl30_enabled=False,
                backend_tls10_enabled=False,
                backend_tls11_enabled=False,
                frontend_ssl30_enabled=False,
                frontend_tls10_enabled=False,
                frontend_tls11_enabled=False,
            ),
            timeouts=ApiManagementTimeouts(
                create=APIM_TIMEOUT, update=APIM_TIMEOUT, delete=APIM_TIMEOUT
            ),
            tags=tags,
        )
        self.additional_locations = additional_locations
        self.secret_access = secrets.grant_secret_read(
            self, "reads-certificate", self.service.identity.principal_id
        )
        self.secret_propagated = propagation_wait(
            self, "reads-certificate-propagation", [self.secret_access]
        )
        self.client_certificate = ApiManagementCertificateA(
            self,
            "client-certificate",
            name="backend-client-certificate",
            api_management_name=self.service.name,
            resource_group_name=resource_group_name,
            key_vault_secret_id=secrets.certificate.versionless_secret_id,
            depends_on=[self.secret_propagated, secrets.certificate.ensured],
        )
        self.diagnostics = send_diagnostics(
            self, "diagnostics", target_resource_id=self.service.id, workspace=workspace
        )
        self._resource_group_name = resource_group_name

    @property
    def addresses(self) -> list[GatewayAddress]:
        """The public IP of every region this instance has a gateway in."""
        short = REGIONS[self.location].short
        found = [GatewayAddress(f"apim-{short}", Fn.element(self.service.public_ip_addresses, 0))]
        for i, extra in enumerate(self.additional_locations):
            ips = self.service.additional_location.get(i).public_ip_addresses
            found.append(GatewayAddress(f"apim-{REGIONS[extra].short}", Fn.element(ips, 0)))
        return found

    @property
    def gateway_urls(self) -> list[str]:
        """The instance's URL first; with additional locations, then each region's own URL."""
        urls = [self.service.gateway_url]
        if self.additional_locations:
            urls.append(self.service.gateway_regional_url)
        for i, _ in enumerate(self.additional_locations):
            urls.append(self.service.additional_location.get(i).gateway_regional_url)
        return urls

    @property
    def gateway_host(self) -> str:
        return Fn.replace(self.service.gateway_url, "https://", "")

    def publish(self, api: PublishedApi, app_insights: ApplicationInsights) -> None:
        """Backends, the API from app/openapi.json, its policy, product, subscription, logging."""
        common = {
            "api_management_name": self.service.name,
            "resource_group_name": self._resource_group_name,
        }
        self._backends(api, common)
        self.api = ApiManagementApi(
            self,
            "api",
            name=self.settings.api_path,
            display_name="TodoItem API",
            revision="1",
            path=self.settings.api_path,
            protocols=["https"],
            subscription_required=api.subscription_required,
            import_=ApiManagementApiImport(
                content_format="openapi+json", content_value=api.openapi_json
            ),
            **common,
        )
        first, second = api.web_apps
        self.policy = ApiManagementApiPolicy(
            self,
            "api-policy",
            api_name=self.api.name,
            xml_content=api_policy(
                primary_backend_id=TRAFFIC_MANAGER_BACKEND,
                fallbacks=[
                    _fallback(first, second, api.web_apps[second]),
                    _fallback(second, first, api.web_apps[first]),
                ],
                certificate_id=self.client_certificate.name,
                max_body_bytes=max_body_bytes(api.openapi_json),
                token_check=api.token_check,
            ),
            depends_on=[*self.backends, self.client_certificate],
            **common,
        )
        self.product = ApiManagementProduct(
            self,
            "product",
            product_id=self.settings.api_path,
            display_name="TodoItem API",
            published=True,
            subscription_required=api.subscription_required,
            approval_required=False,
            **common,
        )
        ApiManagementProductApi(
            self,
            "product-api",
            api_name=self.api.name,
            product_id=self.product.product_id,
            **common,
        )
        self.subscription = None
        if api.subscription_required:
            self.subscription = ApiManagementSubscription(
                self,
                "subscription",
                display_name="TodoItem API clients",
                product_id=self.product.id,
                state="active",
                allow_tracing=False,
                primary_key=api.subscription_key,
                **common,
            )
        logger = ApiManagementLogger(
            self,
            "logger",
            name="application-insights",
            resource_id=app_insights.id,
            application_insights=ApiManagementLoggerApplicationInsights(
                connection_string=app_insights.connection_string
            ),
            **common,
        )
        ApiManagementApiDiagnostic(
            self,
            "api-diagnostic",
            identifier="applicationinsights",
            api_name=self.api.name,
            api_management_logger_id=logger.id,
            sampling_percentage=100,
            always_log_errors=True,
            log_client_ip=True,
            verbosity="information",
            **common,
        )

    def _backends(self, api: PublishedApi, common: dict) -> None:
        # No credentials.certificate (a thumbprint, pinned to one certificate version): the
        # policy presents the certificate by id (authentication-certificate certificate-id).
        custom = self.settings.backend_custom_domain
        self.backends = [
            ApiManagementBackend(
                self,
                "backend-traffic-manager",
                name=TRAFFIC_MANAGER_BACKEND,
                protocol="http",
                url=f"https://{custom or api.traffic_manager_fqdn}",
                tls=ApiManagementBackendTls(
                    validate_certificate_chain=True, validate_certificate_name=bool(custom)
                ),
                **common,
            )
        ]
        for region, web_app in api.web_apps.items():
            self.backends.append(
                ApiManagementBackend(
                    self,
                    f"backend-{backend_id(region)}",
                    name=backend_id(region),
                    protocol="http",
                    url=f"https://{web_app.default_hostname}",
                    tls=ApiManagementBackendTls(
                        validate_certificate_chain=True, validate_certificate_name=True
                    ),
                    **common,
                )
            )


def _fallback(gateway_region: str, other: str, other_app: LinuxWebApp) -> Fallback:
    """A gateway in `gateway_region` falls back to the web app of the other region."""
    return Fallback(
        region=REGIONS[gateway_region].display_name,
        backend_id=backend_id(other),
        base_url=f"https://{other_app.default_hostname}",
    )
