"""Drills on Azure's own engines (`drills.enabled`): the Azure Load Testing resource the load runs
on, and per fault a Chaos Studio target, capability and experiment whose identity may do exactly
that fault to that one resource (docs/deploy.md, "Drills on Azure's engines").

- `LoadTesting`: `azurerm_load_test` in the global group with a system identity, which reads the
  vault's secrets (Key Vault Secrets User): a test names the gateway subscription key as a Key
  Vault secret reference (`secrets`, stored as `gateway-subscription-key`), and Azure Load
  Testing resolves it with that identity when a run starts. The deploy identities get Load Test
  Contributor on it: tests and test runs are data-plane operations, which Contributor lacks.
- `engine_identity`: with `auth.mode = "entra"`, the user-assigned identity Azure Load Testing
  gives its engines (the test's `referenceIdentities` item of kind `Engine`): the Locust script
  asks the engine's instance metadata endpoint for its token (Azure Load Testing, "Load test
  secured endpoints", "Authenticate with a managed identity"). User-assigned, not the resource's
  system identity: the API must list the caller's client id among its allowed client
  applications, and `azurerm_load_test` exports no client id for its system identity; a
  user-assigned one also outlives a replaced load testing resource, and with it its app roles
  (stacks/api_identity.py assigns them).
- `FaultExperiment`: one fault against one resource: the Chaos Studio target on the resource and
  the fault's capability on the target; the experiment, one continuous action of
  `drills.fault_minutes`, whose own duration ends the fault even when whatever started it is
  gone; the experiment's system identity with the fault's custom role (stacks/permissions.py,
  made by the bootstrap stack) on that resource and nowhere else.

Fault names, URNs and parameters: Chaos Studio fault library (learn.microsoft.com/azure/
chaos-studio/chaos-studio-fault-library); arguments: azurerm 4.55 internal/services/chaosstudio
and loadtestservice.
"""

from dataclasses import dataclass

from cdktf_cdktf_provider_azurerm.chaos_studio_capability import ChaosStudioCapability
from cdktf_cdktf_provider_azurerm.chaos_studio_experiment import (
    ChaosStudioExperiment,
    ChaosStudioExperimentIdentity,
    ChaosStudioExperimentSelectors,
    ChaosStudioExperimentSteps,
    ChaosStudioExperimentStepsBranch,
    ChaosStudioExperimentStepsBranchActions,
)
from cdktf_cdktf_provider_azurerm.chaos_studio_target import ChaosStudioTarget
from cdktf_cdktf_provider_azurerm.load_test import LoadTest, LoadTestIdentity
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.role_assignment import RoleAssignment
from cdktf_cdktf_provider_azurerm.user_assigned_identity import UserAssignedIdentity
from constructs import Construct

from stacks.key_vault import MANAGED_IDENTITY, SecretStore, VaultSecret
from stacks.monitoring import send_diagnostics
from stacks.permissions import fault_role

SYSTEM_IDENTITY = "SystemAssigned"
SYSTEM_AND_USER_IDENTITIES = "SystemAssigned, UserAssigned"
LOAD_TEST_CONTRIBUTOR_ROLE = "Load Test Contributor"
SUBSCRIPTION_KEY_SECRET = "gateway-subscription-key"
# The environment variable the load test gets the subscription key in (loadtests read it).
SUBSCRIPTION_KEY_VARIABLE = "LOCUST_SUBSCRIPTION_KEY"
CONTINUOUS = "continuous"
SELECTOR = "target"


@dataclass(frozen=True)
class Fault:
    """A Chaos Studio service-direct fault: where it applies and what it needs."""

    target_type: str  # the target's name on the resource, Microsoft-<type>
    capability: str  # the capability's name on the target
    urn: str  # the experiment action's name
    role: str  # its permissions: a key of stacks.permissions.FAULT_PERMISSIONS


# Chaos Studio fault library: "App Service Stop" (stops the site, starts it again at the end),
# "Azure Cosmos DB failover" (promotes `readRegion`, a display name such as "East US 2", to write
# region; back at the end), "Key Vault Deny Access" (blocks all network access by rewriting the
# network rules; restored at the end). All three are continuous faults.
APP_SERVICE_STOP = Fault(
    "Microsoft-AppService", "Stop-1.0", "urn:csci:microsoft:appService:stop/1.0", "app-service-stop"
)
COSMOS_DB_FAILOVER = Fault(
    "Microsoft-CosmosDB",
    "Failover-1.0",
    "urn:csci:microsoft:cosmosDB:failover/1.0",
    "cosmos-db-failover",
)
KEY_VAULT_DENY_ACCESS = Fault(
    "Microsoft-KeyVault",
    "DenyAccess-1.0",
    "urn:csci:microsoft:keyVault:denyAccess/1.0",
    "key-vault-deny-access",
)
# The stack outputs the drill tools read (tools/operations), present with drills.enabled only.
OUTPUTS = ("load_test_name", "load_test_resource_group_name", "load_test_secrets",
           "chaos_experiments")
# ... and with auth.mode = "entra": {"id", "client_id"} of the engines' identity.
ENGINE_IDENTITY_OUTPUT = "load_test_engine_identity"


def region_outage(role: str) -> str:
    """The fault key of stopping the web app of the primary or the secondary region (by role,
    not by region: the drill workflow's list of faults is the same for every environment)."""
    return f"region-outage-{role}"


def iso_minutes(minutes: int) -> str:
    """An ISO 8601 duration, as Chaos Studio actions take it (PT10M)."""
    return f"PT{minutes}M"


def engine_identity(
    scope: Construct, id_: str, *, name: str, location: str, resource_group_name: str,
    tags: dict[str, str],
) -> UserAssignedIdentity:
    """The identity Azure Load Testing's engines call the API as (an Entra ID API only)."""
    return UserAssignedIdentity(
        scope, id_, name=name, location=location, resource_group_name=resource_group_name,
        tags=tags,
    )


class LoadTesting(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        location: str,
        resource_group_name: str,
        secrets: SecretStore,
        subscription_key: str,
        workspace: LogAnalyticsWorkspace,
        tags: dict[str, str],
        engine: UserAssignedIdentity | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.engine = engine
        self.load_test = LoadTest(
            self,
            "load-test",
            name=name,
            location=location,
            resource_group_name=resource_group_name,
            description="todo-api load and failover drills (stacks/drills.py)",
            identity=(
                LoadTestIdentity(type=SYSTEM_AND_USER_IDENTITIES, identity_ids=[engine.id])
                if engine else LoadTestIdentity(type=SYSTEM_IDENTITY)
            ),
            tags=tags,
        )
        self.subscription_key_secret: VaultSecret = secrets.add_secret(
            "gateway-subscription-key-secret", name=SUBSCRIPTION_KEY_SECRET, value=subscription_key
        )
        self.secret_access = secrets.grant_secret_read(
            self, "reads-secrets", self.load_test.identity.principal_id
        )
        self.test_writers = [
            RoleAssignment(
                self,
                f"test-writer-{key}",
                scope=self.load_test.id,
                role_definition_name=LOAD_TEST_CONTRIBUTOR_ROLE,
                principal_id=principal_id,
                description="create tests and run them (the drills)",
            )
            for key, principal_id in secrets.deployers.items()
        ]
        # Operation logs only: the resource exports no platform metrics (Azure Monitor lists
        # OperationLogs for microsoft.loadtestservice/loadtests).
        self.diagnostics = send_diagnostics(
            self, "diagnostics", target_resource_id=self.load_test.id, workspace=workspace,
            metrics=False,
        )

    @property
    def secrets(self) -> dict[str, str]:
        """Environment variable -> versionless Key Vault secret URI, for the test's definition."""
        return {SUBSCRIPTION_KEY_VARIABLE: self.subscription_key_secret.versionless_id}

    @property
    def outputs(self) -> dict:
        """The engines' identity, for the test's definition (tools.operations.azure_load_testing)."""
        if self.engine is None:
            return {}
        return {ENGINE_IDENTITY_OUTPUT: {"id": self.engine.id, "client_id": self.engine.client_id}}


class FaultExperiment(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        fault: Fault,
        environment: str,
        name: str,
        location: str,
        resource_group_name: str,
        target_resource_id: str,
        target_location: str,
        subscription_id: str,
        minutes: int,
        parameters: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.fault = fault
        self.duration_seconds = minutes * 60
        self.target = ChaosStudioTarget(
            self,
            "target",
            location=target_location,
            target_resource_id=target_resource_id,
            target_type=fault.target_type,
        )
        self.capability = ChaosStudioCapability(
            self, "capability", chaos_studio_target_id=self.target.id,
            capability_type=fault.capability,
        )
        action = ChaosStudioExperimentStepsBranchActions(
            action_type=CONTINUOUS,
            urn=fault.urn,
            selector_name=SELECTOR,
            duration=iso_minutes(minutes),
            parameters=parameters,
        )
        self.experiment = ChaosStudioExperiment(
            self,
            "experiment",
            name=name,
            location=location,
            resource_group_name=resource_group_name,
            identity=ChaosStudioExperimentIdentity(type=SYSTEM_IDENTITY),
            selectors=[
                ChaosStudioExperimentSelectors(
                    name=SELECTOR, chaos_studio_target_ids=[self.target.id]
                )
            ],
            steps=[
                ChaosStudioExperimentSteps(
                    name="fault",
                    branch=[ChaosStudioExperimentStepsBranch(name="fault", actions=[action])],
                )
            ],
            # Chaos Studio refuses a fault whose capability the target has not enabled.
            depends_on=[self.capability],
        )
        role = fault_role(fault.role, environment)
        self.access = RoleAssignment(
            self,
            "may-inject",
            scope=target_resource_id,
            # The bootstrap stack made the role with this GUID in this subscription.
            role_definition_id=(
                f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{role.custom_id}"
            ),
            principal_id=self.experiment.identity.principal_id,
            principal_type=MANAGED_IDENTITY,
            description=f"Chaos Studio experiment {name}: {fault.role} on this resource only",
        )

    @property
    def summary(self) -> dict:
        """What the drill tools read of it (output `chaos_experiments`)."""
        return {
            "id": self.experiment.id,
            "name": self.experiment.name,
            "duration_seconds": self.duration_seconds,
        }
