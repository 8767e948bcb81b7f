"""todo-api-bootstrap: everything the delivery needs before its first run, from the permission
model (stacks/permissions.py) and config/bootstrap.toml. Deployed once, by hand, by someone who
owns the three subscriptions and administers the repository (docs/delivery.md "Bootstrap").

Azure (azurerm, one provider alias per subscription):
- in the state subscription: the state account (Entra ID auth only, versioned, soft delete,
  reads and writes audited) with one container per environment plus one for this stack, an
  empty state per environment stack, and the user-assigned identities with their federated
  credentials. No deploy identity has a role in this subscription, only blob data on its own
  container: it cannot turn shared keys back on, read the other environment's state or delete
  the account; the state's resource group carries a CanNotDelete lock;
- in dev and prod: the custom plan role, the custom fault roles of the Chaos Studio experiments
  (fixed GUIDs, which the environment stack assigns by), each identity's role assignments (the
  RBAC administrator limited by a condition to the roles the environment stack assigns), and
  the resource providers the environment stacks use (derived from their synthesized resource
  types; the environment stacks set `resource_provider_registrations = "none"`).

GitHub (the github provider): the environments (branch policy main; prod: a reviewer team, no
self-review; nobody bypasses, admins included), the `main` ruleset (no deletion, no force push,
pull requests with a review and the required checks), variables and secrets where the model
puts them, the labels the workflows set.
"""

from __future__ import annotations

import json
import uuid

from cdktf import AzurermBackend, TerraformOutput, TerraformStack, Token
from cdktf_cdktf_provider_azurerm.data_azurerm_client_config import DataAzurermClientConfig
from cdktf_cdktf_provider_azurerm.federated_identity_credential import FederatedIdentityCredential
from cdktf_cdktf_provider_azurerm.log_analytics_workspace import LogAnalyticsWorkspace
from cdktf_cdktf_provider_azurerm.management_lock import ManagementLock
from cdktf_cdktf_provider_azurerm.monitor_diagnostic_setting import (
    MonitorDiagnosticSetting,
    MonitorDiagnosticSettingEnabledLog,
)
from cdktf_cdktf_provider_azurerm.provider import AzurermProvider, AzurermProviderFeatures
from cdktf_cdktf_provider_azurerm.resource_group import ResourceGroup
from cdktf_cdktf_provider_azurerm.resource_provider_registration import (
    ResourceProviderRegistration,
)
from cdktf_cdktf_provider_azurerm.role_assignment import RoleAssignment
from cdktf_cdktf_provider_azurerm.role_definition import RoleDefinition, RoleDefinitionPermissions
from cdktf_cdktf_provider_azurerm.storage_account import (
    StorageAccount,
    StorageAccountBlobProperties,
    StorageAccountBlobPropertiesContainerDeleteRetentionPolicy,
    StorageAccountBlobPropertiesDeleteRetentionPolicy,
)
from cdktf_cdktf_provider_azurerm.storage_blob import StorageBlob
from cdktf_cdktf_provider_azurerm.storage_container import StorageContainer
from cdktf_cdktf_provider_azurerm.user_assigned_identity import UserAssignedIdentity
from cdktf_cdktf_provider_github.actions_environment_secret import ActionsEnvironmentSecret
from cdktf_cdktf_provider_github.actions_environment_variable import ActionsEnvironmentVariable
from cdktf_cdktf_provider_github.actions_variable import ActionsVariable
from cdktf_cdktf_provider_github.data_github_team import DataGithubTeam
from cdktf_cdktf_provider_github.issue_label import IssueLabel
from cdktf_cdktf_provider_github.provider import GithubProvider
from cdktf_cdktf_provider_github.repository_environment import (
    RepositoryEnvironment,
    RepositoryEnvironmentDeploymentBranchPolicy,
    RepositoryEnvironmentReviewers,
)
from cdktf_cdktf_provider_github.repository_environment_deployment_policy import (
    RepositoryEnvironmentDeploymentPolicy,
)
from cdktf_cdktf_provider_github.repository_ruleset import (
    RepositoryRuleset,
    RepositoryRulesetConditions,
    RepositoryRulesetConditionsRefName,
    RepositoryRulesetRules,
    RepositoryRulesetRulesPullRequest,
    RepositoryRulesetRulesRequiredStatusChecks,
    RepositoryRulesetRulesRequiredStatusChecksRequiredCheck,
)
from cdktf_cdktf_provider_random.password import Password
from cdktf_cdktf_provider_random.provider import RandomProvider
from cdktf_cdktf_provider_time.provider import TimeProvider
from constructs import Construct

from stacks.bootstrap_config import BootstrapConfig
from stacks.key_vault import propagation_wait
from stacks.permissions import (
    BOOTSTRAP_CONTAINER,
    DEPLOY_BRANCH,
    ENVIRONMENTS,
    OIDC_AUDIENCE,
    OIDC_ISSUER,
    STATE_CONTAINER,
    PermissionModel,
)

STACK_NAME = "todo-api-bootstrap"
# The labels tools/delivery/plan_comment.py puts on pull requests (LABEL_KINDS; a test keeps them equal).
PLAN_LABEL_KINDS = {"no changes": "0E8A16", "changes": "FBCA04", "destroys": "B60205",
                    "failed": "5319E7", "skipped": "C5DEF5"}


def assignment_condition(role_ids: tuple[str, ...]) -> str:
    """ABAC condition that limits an RBAC administrator to assigning and removing `role_ids`."""
    ids = ", ".join(role_ids)
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR"
        f" (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
        f" ForAnyOfAnyValues:GuidEquals {{{ids}}})) AND"
        " ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR"
        f" (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]"
        f" ForAnyOfAnyValues:GuidEquals {{{ids}}}))"
    )


class BootstrapStack(TerraformStack):
    def __init__(self, scope: Construct, config: BootstrapConfig, model: PermissionModel):
        super().__init__(scope, STACK_NAME)
        self.config = config
        self.model = model
        subscriptions = config.subscriptions
        self.providers = {
            name: AzurermProvider(
                self, f"azurerm-{name}", alias=name, subscription_id=subscription,
                tenant_id=config.tenant_id, resource_provider_registrations="none",
                storage_use_azuread=True, features=[AzurermProviderFeatures()])
            for name, subscription in (("state", subscriptions.state), ("dev", subscriptions.dev),
                                       ("prod", subscriptions.prod))
        }
        GithubProvider(self, "github", owner=config.owner)
        RandomProvider(self, "random")
        TimeProvider(self, "time")
        if config.state_backend == "azurerm":
            # Second step of the bootstrap (docs/delivery.md): this stack's own state moves into
            # the account it made (`make bootstrap-move-state`).
            AzurermBackend(self, subscription_id=subscriptions.state,
                           resource_group_name=config.state_resource_group,
                           storage_account_name=config.state_storage_account,
                           container_name=BOOTSTRAP_CONTAINER, key=f"{STACK_NAME}.tfstate",
                           use_azuread_auth=True)
        self._state()
        self._identities()
        self._roles()
        self._registrations()
        self._github()

    # -- Azure -----------------------------------------------------------------------------

    def _group(self, construct_id: str, name: str, locked: bool) -> ResourceGroup:
        group = ResourceGroup(self, construct_id, provider=self.providers["state"], name=name,
                              location=self.config.location, tags={"project": "todo-api"})
        if self.config.uses_placeholders:
            # Synth works on the placeholders; a plan of them stops here with this message.
            group.add_override("lifecycle.precondition", [{
                "condition": "${false}",
                "error_message": "config/bootstrap.toml still holds the placeholder"
                                 " subscription ids: set yours (docs/delivery.md Bootstrap)"}])
        if locked:
            ManagementLock(self, f"{construct_id}-lock", provider=self.providers["state"],
                           name="do-not-delete", scope=group.id, lock_level="CanNotDelete",
                           notes="todo-api Terraform state (stacks/bootstrap_stack.py)")
        return group

    def _state(self) -> None:
        group = self._group("state-group", self.config.state_resource_group, locked=True)
        self.state_account = StorageAccount(
            self, "state-account", provider=self.providers["state"],
            name=self.config.state_storage_account, resource_group_name=group.name,
            # Geo-zone-redundant: the state outlives a zone and a region.
            location=group.location, account_tier="Standard", account_replication_type="GZRS",
            account_kind="StorageV2", min_tls_version="TLS1_2", https_traffic_only_enabled=True,
            shared_access_key_enabled=False, allow_nested_items_to_be_public=False,
            default_to_oauth_authentication=True,
            blob_properties=StorageAccountBlobProperties(
                versioning_enabled=True,
                delete_retention_policy=StorageAccountBlobPropertiesDeleteRetentionPolicy(days=30),
                container_delete_retention_policy=(
                    StorageAccountBlobPropertiesContainerDeleteRetentionPolicy(days=30))),
            tags={"project": "todo-api"})
        # Who read or wrote which state, and when: blob reads and writes to a workspace of the
        # state subscription (storage insights would need the shared keys, which are off).
        audit = LogAnalyticsWorkspace(
            self, "state-audit", provider=self.providers["state"], name="todo-api-tfstate-audit",
            resource_group_name=group.name, location=group.location, sku="PerGB2018",
            retention_in_days=365, tags={"project": "todo-api"})
        MonitorDiagnosticSetting(
            self, "state-audit-blobs", provider=self.providers["state"], name="state-access",
            target_resource_id=f"{self.state_account.id}/blobServices/default",
            log_analytics_workspace_id=audit.id,
            enabled_log=[MonitorDiagnosticSettingEnabledLog(category=c)
                         for c in ("StorageRead", "StorageWrite", "StorageDelete")])
        self.containers = {
            name: StorageContainer(self, f"container-{name}", provider=self.providers["state"],
                                   name=name, storage_account_id=self.state_account.id,
                                   container_access_type="private")
            for name in [STATE_CONTAINER.format(environment=e) for e in ENVIRONMENTS]
            + [BOOTSTRAP_CONTAINER]
        }
        # Shared keys are off: whoever runs this stack writes blobs (the empty states below, and
        # this stack's own state once moved) through a data role of their own.
        operator = RoleAssignment(
            self, "operator-state-access", provider=self.providers["state"],
            scope=self.state_account.id, role_definition_name="Storage Blob Data Contributor",
            principal_id=DataAzurermClientConfig(
                self, "operator", provider=self.providers["state"]).object_id,
            description="the person who runs the bootstrap stack: empty states, its own state")
        ready = propagation_wait(self, "operator-state-access-wait", [operator])
        # An empty state (serial 0) per environment stack, so the read-only plan identities can
        # plan before the first apply (the azurerm backend would otherwise create the blob, a
        # write they do not have). Written once: never updated, never destroyed with this stack.
        for env in ENVIRONMENTS:
            blob = StorageBlob(
                self, f"empty-state-{env}", provider=self.providers["state"],
                name=f"todo-api-{env}.tfstate", type="Block", content_type="application/json",
                storage_account_name=self.state_account.name,
                storage_container_name=self.containers[STATE_CONTAINER.format(environment=env)].name,
                source_content=json.dumps({
                    "version": 4, "terraform_version": self.config.terraform_version,
                    "serial": 0, "lineage": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                           f"todo-api-{env}.tfstate")),
                    "outputs": {}, "resources": [], "check_results": None}),
                depends_on=[ready])
            blob.add_override("lifecycle.ignore_changes", "all")
            blob.add_override("lifecycle.prevent_destroy", True)

    def _identities(self) -> None:
        # Not locked: a CanNotDelete lock covers child resources, so no federated credential
        # could ever be removed (ScopeLocked). Losing an identity costs a redeploy, not data.
        group = self._group("identity-group", self.config.identity_resource_group, locked=False)
        self.identities = {}
        for identity in self.model.identities:
            managed = UserAssignedIdentity(
                self, f"identity-{identity.key}", provider=self.providers["state"],
                name=identity.name, resource_group_name=group.name, location=group.location,
                tags={"project": "todo-api", "purpose": identity.purpose[:256]})
            self.identities[identity.key] = managed
            for subject in identity.subjects:
                FederatedIdentityCredential(
                    self, f"federated-{identity.key}-{subject.label.replace(':', '-')}",
                    provider=self.providers["state"],
                    name=f"github-{subject.label.replace(':', '-')}",
                    resource_group_name=group.name, parent_id=managed.id,
                    issuer=OIDC_ISSUER, audience=[OIDC_AUDIENCE],
                    subject=subject.claim(self.config.repository))

    def _roles(self) -> None:
        roles = self.model.roles()
        self.role_definitions = {}
        for env in ENVIRONMENTS:
            scope = f"/subscriptions/{getattr(self.config.subscriptions, env)}"
            for role in roles.values():
                if role.builtin_id is None and role.name.endswith(f" {env}"):
                    # A fault role's GUID is fixed: the environment stack assigns it by it.
                    fixed = {"role_definition_id": role.custom_id} if role.custom_id else {}
                    self.role_definitions[role.name] = RoleDefinition(
                        self, f"role-{role.name.replace(' ', '-')}", provider=self.providers[env],
                        name=role.name, scope=scope, description=role.description,
                        assignable_scopes=[scope], **fixed,
                        permissions=[RoleDefinitionPermissions(
                            actions=list(role.actions), data_actions=list(role.data_actions),
                            not_actions=list(role.not_actions))])
        for identity in self.model.identities:
            principal = self.identities[identity.key].principal_id
            for grant in identity.grants:
                role = roles[grant.role]
                if grant.scope == "state":
                    provider = self.providers["state"]
                    scope = self.containers[STATE_CONTAINER.format(
                        environment=identity.environment)].id
                else:
                    provider = self.providers[identity.environment]
                    scope = f"/subscriptions/{getattr(self.config.subscriptions, identity.environment)}"
                extra = {}
                if role.builtin_id:
                    extra["role_definition_name"] = role.name
                else:
                    extra["role_definition_id"] = self.role_definitions[role.name].role_definition_resource_id
                if role.assignable_roles:
                    allowed = self.model.assignable_role_ids(identity.environment)
                    extra |= {"condition": assignment_condition(allowed),
                              "condition_version": "2.0"}
                RoleAssignment(
                    self, f"grant-{identity.key}-{grant.role.replace(' ', '-')}-{grant.scope}",
                    provider=provider, scope=scope, principal_id=principal,
                    principal_type="ServicePrincipal", description=grant.why, **extra)

    def _registrations(self) -> None:
        for env in ENVIRONMENTS:
            for namespace in self.model.namespaces():
                ResourceProviderRegistration(
                    self, f"register-{env}-{namespace}", provider=self.providers[env],
                    name=namespace)

    # -- GitHub ----------------------------------------------------------------------------

    def _github(self) -> None:
        repository = self.config.name
        team = DataGithubTeam(self, "prod-reviewers", slug=self.config.prod_reviewers_team)
        bundle_keys = {env: Password(self, f"plan-bundle-key-{env}", length=32, special=True)
                       for env in ENVIRONMENTS}
        for environment in self.model.environments:
            identity = self.model.identity(environment.identity)
            reviewers = {}
            if environment.reviewers:
                reviewers = {"reviewers": [RepositoryEnvironmentReviewers(
                    teams=[Token.as_number(team.id)])], "prevent_self_review": True}
            github_environment = RepositoryEnvironment(
                self, f"environment-{environment.name}", repository=repository,
                environment=environment.name, can_admins_bypass=False,
                deployment_branch_policy=RepositoryEnvironmentDeploymentBranchPolicy(
                    protected_branches=False, custom_branch_policies=True),
                **reviewers)
            for branch in environment.branches:
                RepositoryEnvironmentDeploymentPolicy(
                    self, f"environment-{environment.name}-{branch}", repository=repository,
                    environment=github_environment.environment, branch_pattern=branch)
            values = {
                "AZURE_CLIENT_ID": self.identities[identity.key].client_id,
                "AZURE_SUBSCRIPTION_ID": getattr(self.config.subscriptions,
                                                 identity.environment),
            }
            for name, value in values.items():
                ActionsEnvironmentVariable(
                    self, f"variable-{environment.name}-{name}", repository=repository,
                    environment=github_environment.environment, variable_name=name, value=value)
            # tools/delivery/plan_bundle.py wants 32 bytes, base64: the 32 random characters, encoded.
            # One key per environment, shared by its plan and deploy environments only.
            ActionsEnvironmentSecret(
                self, f"secret-{environment.name}-PLAN_BUNDLE_KEY", repository=repository,
                environment=github_environment.environment, secret_name="PLAN_BUNDLE_KEY",
                plaintext_value=f"${{base64encode({bundle_keys[environment.plan_bundle_key].fqn}.result)}}")
        deployers = {env: self.identities[f"deploy-{env}"].principal_id for env in ENVIRONMENTS}
        admin_group = self.config.key_vault_admin_group
        repository_values = {
            "AZURE_TENANT_ID": self.config.tenant_id,
            "AZURE_PLAN_CLIENT_ID_DEV": self.identities["plan-dev"].client_id,
            "AZURE_SUBSCRIPTION_ID_DEV": self.config.subscriptions.dev,
            "TFSTATE_SUBSCRIPTION_ID": self.config.subscriptions.state,
            "TFSTATE_RESOURCE_GROUP": self.config.state_resource_group,
            "TFSTATE_STORAGE_ACCOUNT": self.config.state_storage_account,
            **{f"AZURE_DEPLOYER_OBJECT_IDS_{env.upper()}":
               deployers[env] + (f",{admin_group}" if admin_group else "")
               for env in ENVIRONMENTS},
            # The deploy identity alone (an app registration's owner cannot be a group), and its
            # client id (allowed to call the API): auth.owner_object_ids / auth.client_ids.
            **{f"AZURE_DEPLOY_PRINCIPAL_ID_{env.upper()}": deployers[env]
               for env in ENVIRONMENTS},
            **{f"AZURE_DEPLOY_CLIENT_ID_{env.upper()}": self.identities[f"deploy-{env}"].client_id
               for env in ENVIRONMENTS},
        }
        for name, value in repository_values.items():
            ActionsVariable(self, f"variable-{name}", repository=repository, variable_name=name,
                            value=value)
        RepositoryRuleset(
            self, "main-ruleset", name="protect main", repository=repository, target="branch",
            enforcement="active",
            conditions=RepositoryRulesetConditions(ref_name=RepositoryRulesetConditionsRefName(
                include=[f"refs/heads/{DEPLOY_BRANCH}"], exclude=[])),
            rules=RepositoryRulesetRules(
                deletion=True, non_fast_forward=True,
                pull_request=RepositoryRulesetRulesPullRequest(
                    required_approving_review_count=1, dismiss_stale_reviews_on_push=True,
                    require_last_push_approval=True, required_review_thread_resolution=True),
                required_status_checks=RepositoryRulesetRulesRequiredStatusChecks(
                    strict_required_status_checks_policy=True,
                    required_check=[RepositoryRulesetRulesRequiredStatusChecksRequiredCheck(
                        context=check) for check in self.config.required_checks])))
        IssueLabel(self, "label-drift", repository=repository, name="drift", color="D93F0B",
                   description="Infrastructure drift found by the nightly terraform plan")
        for env in ENVIRONMENTS:
            for kind, color in PLAN_LABEL_KINDS.items():
                IssueLabel(self, f"label-plan-{env}-{kind.replace(' ', '-')}",
                           repository=repository, name=f"plan/todo-api-{env}: {kind}",
                           color=color, description=f"Latest terraform plan of todo-api-{env}")
        TerraformOutput(self, "state_account_id", value=self.state_account.id)
        self._graph_consent()

    def _graph_consent(self) -> None:
        """The Microsoft Graph application permissions each identity needs (derived from the
        azuread types of the environment stacks; none while every environment has auth.mode =
        "none"), with the principal an admin consents for: a managed identity has no app
        registration to request them on, so the consent is a manual step (docs/deploy.md,
        "Consent: the deploy identities' Graph permissions")."""
        consent = {
            identity.name: {"principal_id": self.identities[identity.key].principal_id,
                            "permissions": list(permissions)}
            for identity in self.model.identities
            if (permissions := self.model.graph_permissions(identity))
        }
        if consent:
            TerraformOutput(self, "graph_consent", value=consent)
