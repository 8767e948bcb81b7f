"""One environment's whole topology: two regions, Traffic Manager, API Management, Key Vault,
the Cosmos DB table store, monitoring, outputs, policy aspects, with `network.mode = "private"`
each region's VNet, private endpoints and private DNS zones, and with `drills.enabled` the Azure
Load Testing resource and the Chaos Studio experiments. Wiring only: each piece is a construct
of its own."""

from cdktf import Aspects, AzurermBackend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_azuread.provider import AzureadProvider
from cdktf_cdktf_provider_azurerm.provider import (
    AzurermProvider,
    AzurermProviderFeatures,
    AzurermProviderFeaturesApiManagement,
    AzurermProviderFeaturesKeyVault,
    AzurermProviderFeaturesTemplateDeployment,
)
from cdktf_cdktf_provider_azurerm.resource_group import ResourceGroup
from cdktf_cdktf_provider_random.password import Password
from cdktf_cdktf_provider_random.provider import RandomProvider
from cdktf_cdktf_provider_time.provider import TimeProvider
from constructs import Construct

from stacks.alerts import OperationsAlerts
from stacks.api_identity import AUTH_NONE, ApiIdentity, ManagedCaller
from stacks.aspects import (
    CosmosAccountPolicy,
    PreventDestroyStateful,
    RequiredTagsPolicy,
    TrafficManagerProbePolicy,
    WebAppSecurityPolicy,
)
from stacks.config import EnvironmentConfig
from stacks.data_store import TableStore, store_app_settings
from stacks.drills import (
    APP_SERVICE_STOP,
    COSMOS_DB_FAILOVER,
    KEY_VAULT_DENY_ACCESS,
    FaultExperiment,
    LoadTesting,
    engine_identity,
    region_outage,
)
from stacks.gateway import APIM_STATUS_PATH, GatewayInstance, PublishedApi
from stacks.key_vault import SecretStore
from stacks.monitoring import Monitoring, send_diagnostics
from stacks.naming import Names
from stacks.network import TABLE, VAULT, RegionalNetwork
from stacks.regional_app import RegionalApp, health_check_path
from stacks.regions import REGIONS
from stacks.traffic_manager import TrafficManager
from stacks.workbook import FailoverWorkbook

SUBSCRIPTION_KEY_LENGTH = 32


class TodoApiStack(TerraformStack):
    def __init__(
        self, scope: Construct, config: EnvironmentConfig, openapi_json: str, repository: str
    ) -> None:
        """`repository`: owner/name on GitHub (config/bootstrap.toml), whose environment of the
        same name the example client trusts (auth.mode = "entra")."""
        super().__init__(scope, config.stack_name)
        self.config = config
        names = Names(config.name_prefix, config.environment)
        tags = config.resource_tags
        primary, secondary = config.regions.both
        self._providers()
        self._state_backend()

        self.global_group = ResourceGroup(
            self, "global-group", name=names.global_("rg"), location=primary, tags=tags
        )
        self.regional_groups = {
            region: ResourceGroup(
                self,
                f"group-{region}",
                name=names.regional(region, "rg"),
                location=region,
                tags=tags,
            )
            for region in config.regions.both
        }
        self.monitoring = Monitoring(
            self,
            "monitoring",
            names=names,
            location=primary,
            resource_group_name=self.global_group.name,
            regional_resource_groups={r: g.name for r, g in self.regional_groups.items()},
            tags=tags,
        )
        workspace = self.monitoring.workspace
        self.secrets = SecretStore(
            self,
            "secrets",
            names=names,
            location=primary,
            resource_group_name=self.global_group.name,
            certificate=config.certificate,
            key_vault=config.key_vault,
            private_network=config.private_network,
            tags=tags,
        )
        send_diagnostics(
            self.secrets,
            "diagnostics",
            target_resource_id=self.secrets.vault.id,
            workspace=workspace,
        )
        self.subscription_key = Password(
            self, "subscription-key", length=SUBSCRIPTION_KEY_LENGTH, special=False
        )
        # Azure Load Testing's engines call an Entra ID API as an identity of their own.
        self.engine_identity = (
            engine_identity(
                self, "load-test-engine-identity", name=names.global_("lt-engine-id"),
                location=config.regions.both[0], resource_group_name=self.global_group.name,
                tags=tags,
            )
            if config.auth.entra and config.drills.enabled
            else None
        )
        self.identity = (
            ApiIdentity(
                self,
                "identity",
                names=names,
                environment=config.environment,
                repository=repository,
                tenant_id=self.secrets.client.tenant_id,
                settings=config.auth,
                openapi_json=openapi_json,
                managed_callers=(
                    {"load-test-engine": ManagedCaller(self.engine_identity.client_id,
                                                       self.engine_identity.principal_id)}
                    if self.engine_identity else None
                ),
            )
            if config.auth.entra
            else None
        )
        auth_settings = self.identity.app_settings if self.identity else AUTH_NONE
        self.gateways = self._gateways(names, tags)
        self.networks = self._networks(names, tags) if config.private_network else {}
        # The apps get the store's endpoint from the account's configured name, not from the
        # account resource: the account's firewall needs the apps' outbound IPs (no cycle).
        store_settings = store_app_settings(names.cosmos_account, config.data_store.table_name)
        self.apps = {
            region: RegionalApp(
                self,
                f"app-{region}",
                names=names,
                region=region,
                resource_group_name=self.regional_groups[region].name,
                app_service=config.app_service,
                certificate=config.certificate,
                secrets=self.secrets,
                gateway_addresses=[a for g in self.gateways for a in g.addresses],
                store_settings=store_settings,
                auth_settings=auth_settings,
                app_insights=self.monitoring.app_insights[region],
                workspace=workspace,
                tags=tags,
                integration=self.networks[region].integration() if self.networks else None,
            )
            for region in config.regions.both
        }
        self.store = TableStore(
            self,
            "store",
            account_name=names.cosmos_account,
            regions=config.data_store_regions,
            resource_group_name=self.global_group.name,
            settings=config.data_store,
            sites=[site for app in self.apps.values() for site in app.sites],
            workspace=workspace,
            tags=tags,
            private_network=config.private_network,
        )
        for network in self.networks.values():
            network.connect(TABLE, self.store.account.id)
        self.app_traffic = TrafficManager(
            self,
            "app-traffic",
            name=names.global_("tm"),
            resource_group_name=self.global_group.name,
            probe_path=health_check_path(self.secrets),
            settings=config.traffic_manager,
            workspace=workspace,
            tags=tags,
        )
        for region, app in self.apps.items():
            self.app_traffic.add_azure_endpoint(REGIONS[region].short, app.web_app.id)
        published = PublishedApi(
            traffic_manager_fqdn=self.app_traffic.fqdn,
            web_apps={region: app.web_app for region, app in self.apps.items()},
            subscription_key=self.subscription_key.result,
            openapi_json=openapi_json,
            subscription_required=config.auth.subscription_required,
            token_check=self.identity.token_check if self.identity else None,
        )
        for gateway in self.gateways:
            gateway.publish(published, self.monitoring.app_insights[gateway.location])
        self.gateway_traffic = (
            self._gateway_traffic(names, tags) if len(self.gateways) > 1 else None
        )
        self.alerts, self.workbook = self._operations(names, tags)
        self.load_testing, self.experiments = (
            self._drills(names, tags) if config.drills.enabled else (None, {})
        )

        Aspects.of(self).add(WebAppSecurityPolicy())
        Aspects.of(self).add(CosmosAccountPolicy())
        Aspects.of(self).add(
            TrafficManagerProbePolicy([health_check_path(self.secrets), APIM_STATUS_PATH])
        )
        Aspects.of(self).add(RequiredTagsPolicy())
        if config.protect_stateful_resources:
            Aspects.of(self).add(PreventDestroyStateful())
        self._outputs(primary, secondary)

    def _providers(self) -> None:
        AzurermProvider(
            self,
            "azurerm",
            # Never register resource providers at plan time: the plan identities may not
            # (`*/register/action`), and azurerm 4.x would try in a fresh subscription
            # (azurerm#10853). The bootstrap stack registers exactly the namespaces these
            # stacks use (stacks/permissions.py provider_namespaces).
            resource_provider_registrations="none",
            features=[
                AzurermProviderFeatures(
                    api_management=[
                        AzurermProviderFeaturesApiManagement(
                            purge_soft_delete_on_destroy=True, recover_soft_deleted=True
                        )
                    ],
                    key_vault=[
                        AzurermProviderFeaturesKeyVault(
                            purge_soft_delete_on_destroy=False,
                            recover_soft_deleted_key_vaults=True,
                        )
                    ],
                    # Replacing the deployment that writes a Key Vault secret (stacks/key_vault.py
                    # add_secret) must not delete the secret it wrote.
                    template_deployment=[
                        AzurermProviderFeaturesTemplateDeployment(
                            delete_nested_items_during_deletion=False
                        )
                    ],
                )
            ],
        )
        RandomProvider(self, "random")
        TimeProvider(self, "time")  # time_sleep: waits for role assignments to propagate
        if self.config.auth.entra:
            # Microsoft Graph: the API's app registrations (stacks/api_identity.py); the deploy
            # identity's Graph permissions are in stacks/permissions.py GRAPH_PERMISSIONS.
            AzureadProvider(self, "azuread")

    def _state_backend(self) -> None:
        state = self.config.state
        if state.backend == "azurerm":
            AzurermBackend(
                self,
                resource_group_name=state.resource_group_name,
                storage_account_name=state.storage_account_name,
                container_name=state.container_name,
                key=state.key or f"{self.config.stack_name}.tfstate",
                use_oidc=state.use_oidc,
                use_azuread_auth=True,
            )
        # otherwise cdktf's default local backend: terraform.<stack>.tfstate in the project root

    def _networks(self, names: Names, tags: dict[str, str]) -> dict[str, RegionalNetwork]:
        """Per region a VNet, its private DNS zones and the vault's private endpoint (before the
        web apps, whose Key Vault references need it); the table's endpoint follows the store."""
        networks = {}
        for region in self.config.regions.both:
            networks[region] = RegionalNetwork(
                self,
                f"network-{region}",
                names=names,
                region=region,
                resource_group_name=self.regional_groups[region].name,
                plan=self.config.region_network(region),
                tags=tags,
            )
            networks[region].connect(VAULT, self.secrets.vault.id)
        return networks

    def _gateways(self, names: Names, tags: dict[str, str]) -> list[GatewayInstance]:
        settings = self.config.gateway
        primary, secondary = self.config.regions.both
        common = {
            "settings": settings,
            "secrets": self.secrets,
            "workspace": self.monitoring.workspace,
            "tags": tags,
        }
        if settings.topology == "dual":
            return [
                GatewayInstance(
                    self,
                    f"gateway-{region}",
                    name=names.regional(region, "apim"),
                    location=region,
                    additional_locations=(),
                    resource_group_name=self.regional_groups[region].name,
                    **common,
                )
                for region in (primary, secondary)
            ]
        extra = (secondary,) if settings.topology == "multi-region" else ()
        return [
            GatewayInstance(
                self,
                "gateway",
                name=names.global_("apim"),
                location=primary,
                additional_locations=extra,
                resource_group_name=self.global_group.name,
                **common,
            )
        ]

    def _gateway_traffic(self, names: Names, tags: dict[str, str]) -> TrafficManager:
        traffic = TrafficManager(
            self,
            "gateway-traffic",
            name=names.global_("apim-tm"),
            resource_group_name=self.global_group.name,
            probe_path=APIM_STATUS_PATH,
            settings=self.config.traffic_manager,
            workspace=self.monitoring.workspace,
            tags=tags,
        )
        for gateway in self.gateways:
            traffic.add_external_endpoint(
                REGIONS[gateway.location].short, gateway.gateway_host, gateway.location
            )
        return traffic

    def _operations(self, names: Names, tags: dict[str, str]):
        """Alerts (docs/operations.md) and the failover workbook over what the stack made."""
        alerts = OperationsAlerts(
            self,
            "alerts",
            names=names,
            resource_group_name=self.global_group.name,
            settings=self.config.alerts,
            tags=tags,
        )
        profiles = {"apps": self.app_traffic}
        if self.gateway_traffic is not None:
            profiles["gateways"] = self.gateway_traffic
        probed = {"apps": "the web apps' /health/{key}", "gateways": "the gateways' status path"}
        for key, profile in profiles.items():
            alerts.traffic_manager_endpoints(key, profile.profile.id, probed[key])
        for gateway in self.gateways:
            alerts.gateway_failures(REGIONS[gateway.location].short, gateway.service.id)
        for region, app in self.apps.items():
            alerts.web_app_health(REGIONS[region].short, app.web_app.id)
        alerts.store(self.store.account.id)
        workbook = FailoverWorkbook(
            self,
            "workbook",
            names=names,
            location=self.global_group.location,
            resource_group_name=self.global_group.name,
            workspace_id=self.monitoring.workspace.id,
            web_app_ids={REGIONS[r].short: app.web_app.id for r, app in self.apps.items()},
            traffic_manager_ids={key: p.profile.id for key, p in profiles.items()},
            tags=tags,
        )
        return alerts, workbook

    def _drills(
        self, names: Names, tags: dict[str, str]
    ) -> tuple[LoadTesting, dict[str, FaultExperiment]]:
        """The load testing resource, and one experiment per fault: each region's web app
        stopped, the database failed over to the secondary region, the vault denied."""
        primary, secondary = self.config.regions.both
        load_testing = LoadTesting(
            self,
            "load-testing",
            name=names.global_("lt"),
            location=primary,
            resource_group_name=self.global_group.name,
            secrets=self.secrets,
            subscription_key=self.subscription_key.result,
            workspace=self.monitoring.workspace,
            tags=tags,
            engine=self.engine_identity,
        )
        faults = {
            region_outage(role): (APP_SERVICE_STOP, self.apps[region].web_app.id, region, None)
            for role, region in (("primary", primary), ("secondary", secondary))
        }
        faults["database-failover"] = (
            COSMOS_DB_FAILOVER,
            self.store.account.id,
            primary,
            {"readRegion": REGIONS[secondary].display_name},
        )
        faults["vault-deny"] = (KEY_VAULT_DENY_ACCESS, self.secrets.vault.id, primary, None)
        experiments = {
            key: FaultExperiment(
                self,
                f"chaos-{key}",
                fault=fault,
                environment=self.config.environment,
                name=names.global_(f"chaos-{key}"),
                location=primary,
                resource_group_name=self.global_group.name,
                target_resource_id=target,
                target_location=location,
                subscription_id=self.secrets.client.subscription_id,
                minutes=self.config.drills.fault_minutes,
                parameters=parameters,
            )
            for key, (fault, target, location, parameters) in faults.items()
        }
        return load_testing, experiments

    def _drill_outputs(self) -> dict:
        """What the drill tools read (tools/operations), none without `drills.enabled`."""
        if self.load_testing is None:
            return {}
        return {
            "load_test_name": self.load_testing.load_test.name,
            "load_test_resource_group_name": self.global_group.name,
            "load_test_secrets": self.load_testing.secrets,
            "chaos_experiments": {k: e.summary for k, e in self.experiments.items()},
            **self.load_testing.outputs,
        }

    def _staging_outputs(self, primary: str, secondary: str) -> dict:
        """What the release driver (tools/delivery/release.py) reads, none without
        `app_service.staging_slot`: the slots' host names, primary first (it smokes each slot
        there before it swaps), the bake time, and where the client certificate it presents is
        (the Key Vault and the certificate's name: its PFX is the certificate's secret)."""
        slots = [self.apps[region].staging_slot for region in (primary, secondary)]
        if None in slots:
            return {}
        return {
            "web_app_staging_hostnames": [slot.default_hostname for slot in slots],
            "release_bake_seconds": self.config.app_service.release_bake_seconds,
            "key_vault_name": self.secrets.vault.name,
            "client_certificate_name": self.secrets.certificate.name,
        }

    def _outputs(self, primary: str, secondary: str) -> None:
        gateway_urls = [url for g in self.gateways for url in g.gateway_urls]
        fqdns = [self.app_traffic.fqdn]
        if self.gateway_traffic is not None:
            fqdns.append(self.gateway_traffic.fqdn)
            # The Traffic Manager name itself presents *.azure-api.net: only a custom domain
            # bound on both instances makes it a URL clients can use (docs/deploy.md).
            custom = self.config.gateway.public_custom_domain
            if custom:
                gateway_urls.insert(0, f"https://{custom}")
        apps = [self.apps[primary].web_app, self.apps[secondary].web_app]
        groups = [self.global_group.name] + [
            self.regional_groups[r].name for r in (primary, secondary)
        ]
        values = {
            "gateway_urls": gateway_urls,
            "traffic_manager_fqdns": fqdns,
            "web_app_names": [app.name for app in apps],
            "web_app_hostnames": [app.default_hostname for app in apps],
            **self._staging_outputs(primary, secondary),
            "resource_group_names": groups,
            "web_app_resource_group_names": groups[1:],
            "api_path": self.config.gateway.api_path,
            "workbook_id": self.workbook.id,
            "workbook_url": self.workbook.portal_url,
            "cosmos_account_name": self.store.account.name,
            "cosmos_resource_group_name": self.global_group.name,
            "cosmos_regions": list(self.store.regions),
            "table_name": self.store.table.name,
            **self._drill_outputs(),
            **(self.identity.outputs if self.identity else {}),
        }
        for name, value in values.items():
            TerraformOutput(self, name, value=value)
        TerraformOutput(
            self, "subscription_key", value=self.subscription_key.result, sensitive=True
        )
        TerraformOutput(
            self, "health_check_key", value=self.secrets.health_key.result, sensitive=True
        )
