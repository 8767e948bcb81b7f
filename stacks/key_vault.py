"""Key Vault (RBAC, purge protection) with the health-check key and the client certificate.

No resource here reads the vault's data plane when Terraform refreshes it, so a plan (the
read-only plan identity, a GitHub-hosted runner) never needs the vault's firewall or a Key
Vault data role (docs/deploy.md, "Deploy-time access in private mode"):

- the secrets (the health key; the drills' gateway subscription key) are ARM template
  deployments of `Microsoft.KeyVault/vaults/secrets` with the value as a `securestring`
  parameter (`add_secret`: a control-plane write, the value never returned);
- the certificate is generated inside Key Vault (issuer `Self`, EKU clientAuth, exportable so
  API Management can present it) by the delivery's tool during the apply (`ClientCertificate`:
  a `terraform_data` with a local-exec), so no private key ever exists in the repository, in
  `cdktf.out/`, in the state or on a build machine. Optionally an existing PFX (`python -m
  tools.development.certs generate`) is imported instead; its password comes from a sensitive
  Terraform variable. The tool also writes the certificate's public part to a secret, which
  the apps pin by Key Vault reference.

First apply in one go (role assignments take minutes to propagate): every assignment to a managed
identity says `principal_type = "ServicePrincipal"` (no PrincipalNotFound on a fresh identity),
and what uses an assignment waits for it with a `time_sleep` of `ROLE_PROPAGATION`: the
certificate's tool waits for Key Vault Administrator, API Management's certificate
fetch for its Secrets User, and the web apps, created only after it, resolve their Key Vault
references with `reference_identity`, a user-assigned identity that can read secrets before
any web app exists (Microsoft's documented way for references at creation time).

Key Vault Administrator goes to `key_vault.administrator_object_ids` (the deploy identities,
an admin group), one assignment per object id, or, when that list is empty, to whoever runs
Terraform (`data.azurerm_client_config`): right for a laptop deploy, but a plan run by another
identity (the CI plan identity) would then show that assignment as a replacement.

The firewall (`private_network`, `network.mode = "private"`): default Deny with no IP rule, so
the data plane answers only each region's private endpoint (stacks/network.py) and trusted Azure
services (`AzureServices`: API Management, outside any VNet, fetches its client certificate that
way). Public network access itself stays enabled, because an IP rule, even a temporary one,
needs it (disabled, Key Vault ignores the rules): the delivery's tool adds the runner's address
for the time of its data-plane calls and removes it again, so Terraform ignores `ip_rules`
(docs/deploy.md, "Private data plane"). "Off" here means default Deny with no IP rule. Public mode keeps the firewall open
(default Allow), access by RBAC only.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from cdktf import (
    DataResource,
    Fn,
    LocalExecProvisioner,
    TerraformResourceLifecycle,
    TerraformStack,
    TerraformVariable,
)
from cdktf_cdktf_provider_azurerm.data_azurerm_client_config import DataAzurermClientConfig
from cdktf_cdktf_provider_azurerm.key_vault import KeyVault, KeyVaultNetworkAcls
from cdktf_cdktf_provider_azurerm.resource_group_template_deployment import (
    ResourceGroupTemplateDeployment,
)
from cdktf_cdktf_provider_azurerm.role_assignment import RoleAssignment
from cdktf_cdktf_provider_azurerm.user_assigned_identity import UserAssignedIdentity
from cdktf_cdktf_provider_random.password import Password
from cdktf_cdktf_provider_time.sleep import Sleep
from constructs import Construct

from stacks.config import Certificate
from stacks.config import KeyVault as KeyVaultConfig
from stacks.naming import Names

CLIENT_AUTH_EKU = "1.3.6.1.5.5.7.3.2"
PFX_CONTENT_TYPE = "application/x-pkcs12"
# The PFX secret Key Vault keeps for the certificate (same name), and the public part the apps
# pin (a text secret the delivery writes beside it: App Service references only secrets).
CLIENT_CERTIFICATE = "apim-client-certificate"
CLIENT_CERTIFICATE_PUBLIC = "apim-client-certificate-public"
HEALTH_KEY_SECRET = "health-check-key"
SECRETS_API_VERSION = "2023-07-01"
# Run by Terraform (local-exec) from the project root, as whoever applies: the delivery's tool
# that makes the certificate on the data plane (tools/delivery/key_vault.py), through the
# temporary opening a private vault needs. TODO_API_PYTHON picks another interpreter (`$${`:
# a literal `${` for Terraform, which would otherwise parse the shell's default as its own).
CERTIFICATE_TOOL = '"$${TODO_API_PYTHON:-.venv/bin/python}" -m tools.delivery.key_vault'
PROJECT_ROOT_FROM_STACK = "../../.."  # Terraform runs in cdktf.out/stacks/<stack>
# What the stack managed before data-plane objects left it (Terraform state addresses): an
# existing environment forgets them once (`terraform state rm`, docs/deploy.md "Upgrading an
# existing environment") instead of deleting the certificate and the secrets. Not `removed`
# blocks: checkov's terraform_json parser refuses a top-level list it does not know.
RETIRED_ADDRESSES = (
    "azurerm_key_vault_certificate.secrets_client-certificate_A952C1DA",
    "azurerm_key_vault_secret.secrets_health-key-secret_F597EE58",
    "azurerm_key_vault_secret.secrets_gateway-subscription-key-secret_CDF7C973",
)
SECRET_READER_ROLE = "Key Vault Secrets User"
ADMINISTRATOR_ROLE = "Key Vault Administrator"
HEALTH_KEY_LENGTH = 40
PFX_PASSWORD_VARIABLE = "client_certificate_password"
MANAGED_IDENTITY = "ServicePrincipal"
# Azure RBAC: "it can take up to 10 minutes for changes to take effect" (troubleshooting);
# new assignments usually work within a minute or two. Waited once, when the assignment is made.
ROLE_PROPAGATION = "120s"
# The private-mode firewall's IP rules: only the delivery's temporary rule for its runner ever
# lands there, so Terraform neither adds nor removes any.
RUNNER_RULES = "network_acls[0].ip_rules"


def propagation_wait(scope: Construct, id_: str, assignments: list[RoleAssignment]) -> Sleep:
    """A `time_sleep` that ends ROLE_PROPAGATION after the assignments were created (again
    only when one of them is replaced: the triggers are their ids)."""
    return Sleep(
        scope,
        id_,
        create_duration=ROLE_PROPAGATION,
        triggers={f"assignment_{i}": a.id for i, a in enumerate(assignments)},
        depends_on=assignments,
    )


class SecretStore(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        location: str,
        resource_group_name: str,
        certificate: Certificate,
        tags: dict[str, str],
        key_vault: KeyVaultConfig | None = None,
        private_network: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        self.client = DataAzurermClientConfig(self, "deployer")
        self.vault = KeyVault(
            self,
            "vault",
            name=names.key_vault,
            location=location,
            resource_group_name=resource_group_name,
            tenant_id=self.client.tenant_id,
            sku_name="standard",
            rbac_authorization_enabled=True,
            purge_protection_enabled=True,
            soft_delete_retention_days=90,
            public_network_access_enabled=True,
            **_firewall(private_network),
            tags=tags,
        )
        # The deploy identities (`deployers`, {construct id part: object id}) administer the vault.
        self.deployers: dict[str, str] = {}
        self.administrator_access = self._administrators(key_vault or KeyVaultConfig())
        self.administrator_propagated = propagation_wait(
            self, "administrator-propagation", self.administrator_access
        )
        self.reference_identity = UserAssignedIdentity(
            self,
            "reference-identity",
            name=names.global_("kv-references-id"),
            location=location,
            resource_group_name=resource_group_name,
            tags=tags,
        )
        self.reference_access = self.grant_secret_read(
            self, "reference-identity-reads", self.reference_identity.principal_id
        )
        self.reference_propagated = propagation_wait(
            self, "reference-identity-propagation", [self.reference_access]
        )
        self.tags = tags
        self.vault_name = names.key_vault
        self.health_key = Password(self, "health-key", length=HEALTH_KEY_LENGTH, special=False)
        self.health_key_secret = self.add_secret(
            "health-key-secret",
            name=HEALTH_KEY_SECRET,
            value=self.health_key.result,
        )
        self.certificate = ClientCertificate(self, "client-certificate", self, certificate)

    def add_secret(self, id_: str, *, name: str, value: str) -> VaultSecret:
        """A text secret in the vault, written through ARM (stacks/key_vault.py docstring).

        The value is a `securestring` parameter: ARM never returns it, so the provider's refresh
        sees none and `parameters_content` is ignored after the create (an update would send the
        refreshed, value-less parameters). Every change replaces the deployment instead: a
        `terraform_data` revision holds what the secret depends on (the vault, the name, the
        tags, a hash of the value, sensitive) and its update triggers the replacement. Deleting the old deployment leaves the secret (the
        provider's `delete_nested_items_during_deletion` is off), the new one writes a new
        version."""
        revision = DataResource(
            self,
            f"{id_}-revision",
            input={
                "vault_id": self.vault.id,
                "name": name,
                "tags": self.tags,
                "value_sha256": Fn.sensitive(Fn.sha256(value)),
            },
        )
        writer = ResourceGroupTemplateDeployment(
            self,
            id_,
            name=f"{self.vault_name}-secret-{name}",
            resource_group_name=self.vault.resource_group_name,
            deployment_mode="Incremental",
            template_content=json.dumps(secret_template(self.vault.name, name, self.tags)),
            parameters_content=Fn.sensitive(Fn.jsonencode({"value": {"value": value}})),
            tags=self.tags,
            lifecycle=TerraformResourceLifecycle(
                # A bare reference: cdktf writes a construct as "${...}", which Terraform refuses
                # here ("Invalid expression"; tests/stacks/test_key_vault_secrets.py).
                ignore_changes="all",
                replace_triggered_by=[f"terraform_data.{revision.friendly_unique_id}"],
            ),
            depends_on=[self.vault],
        )
        return VaultSecret(name, f"{self.vault.vault_uri}secrets/{name}", writer)

    @property
    def health_key_reference(self) -> str:
        """App Service resolves this app setting from Key Vault with the app's identity."""
        return self.health_key_secret.reference

    def _administrators(self, config: KeyVaultConfig) -> list[RoleAssignment]:
        """Key Vault Administrator for the configured object ids, else for the caller."""
        if not config.administrators:
            self.deployers = {"deployer": self.client.object_id}
            # Same address as before the setting existed: existing states keep their assignment.
            return [self._administrator("deployer-access", self.client.object_id)]
        self.deployers = {object_id: object_id for object_id in config.administrators}
        return [
            self._administrator(f"administrator-{object_id}", object_id)
            for object_id in config.administrators
        ]

    def _administrator(self, id_: str, principal_id: str) -> RoleAssignment:
        return RoleAssignment(
            self,
            id_,
            scope=self.vault.id,
            role_definition_name=ADMINISTRATOR_ROLE,
            principal_id=principal_id,
        )

    def grant_secret_read(self, scope: Construct, id_: str, principal_id: str) -> RoleAssignment:
        """Secrets User for a managed identity (wait for it with `propagation_wait`)."""
        return RoleAssignment(
            scope,
            id_,
            scope=self.vault.id,
            role_definition_name=SECRET_READER_ROLE,
            principal_id=principal_id,
            principal_type=MANAGED_IDENTITY,
        )


@dataclass(frozen=True)
class VaultSecret:
    """A secret the stack writes through ARM: its name, its versionless URI and the deployment
    that writes it (what needs the secret depends on `writer`)."""

    name: str
    versionless_id: str
    writer: ResourceGroupTemplateDeployment

    @property
    def reference(self) -> str:
        """An App Service Key Vault reference to the secret's current version."""
        return f"@Microsoft.KeyVault(SecretUri={self.versionless_id})"


def secret_template(vault_name: str, secret_name: str, tags: dict[str, str]) -> dict:
    """ARM template of one Key Vault secret whose value is the `securestring` parameter
    `value` (Microsoft.KeyVault/vaults/secrets: a control-plane write, which the vault's
    firewall does not filter)."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"value": {"type": "securestring"}},
        "resources": [
            {
                "type": "Microsoft.KeyVault/vaults/secrets",
                "apiVersion": SECRETS_API_VERSION,
                "name": f"{vault_name}/{secret_name}",
                "tags": tags,
                "properties": {"value": "[parameters('value')]", "contentType": "text/plain"},
            }
        ],
    }


class ClientCertificate(Construct):
    """The client certificate API Management presents, made on the vault's data plane by the
    delivery's tool (`tools.delivery.key_vault ensure-certificate`), not by a Terraform
    resource: a resource's refresh would read the data plane in every plan, which a private
    vault refuses to GitHub-hosted runners and the plan identity must not open.

    A `terraform_data` runs the tool once when created and again when what it makes changes
    (`triggers_replace`: the vault, the names, the subject, the validity, the PFX's hash), as
    whoever applies (the deploy identity, Key Vault Administrator), after that role has
    propagated. The tool opens a private vault's firewall to the runner for the call and closes
    it again (docs/deploy.md, "Deploy-time access"). It keeps a certificate that already
    matches, makes a new version otherwise (a renewal keeps the key: `reuse_key`), and writes
    the certificate's public part (base64 DER) to the secret `apim-client-certificate-public`,
    which the apps pin by Key Vault reference."""

    def __init__(self, scope: Construct, id_: str, store: SecretStore, config: Certificate):
        super().__init__(scope, id_)
        vault = store.vault
        arguments = [
            "--vault", '"$KEY_VAULT_NAME"',
            "--name", CLIENT_CERTIFICATE,
            "--public-secret", CLIENT_CERTIFICATE_PUBLIC,
            "--subject", shlex.quote(config.subject),
            "--validity-months", str(config.validity_months),
            "--runner-ip", "auto",
        ]
        environment = {"KEY_VAULT_NAME": vault.name}
        triggers = {
            "vault_id": vault.id,
            "name": CLIENT_CERTIFICATE,
            "public_secret": CLIENT_CERTIFICATE_PUBLIC,
            "subject": config.subject,
            "validity_months": str(config.validity_months),
        }
        if config.pfx_file:
            password = TerraformVariable(  # at stack level: TF_VAR_client_certificate_password
                TerraformStack.of(self),
                PFX_PASSWORD_VARIABLE,
                type="string",
                sensitive=True,
                description="Password of the client certificate PFX (apim-client.pfx.password)",
            )
            arguments += ["--pfx", shlex.quote(config.pfx_file)]
            environment["CLIENT_CERTIFICATE_PASSWORD"] = password.string_value
            triggers["pfx_sha256"] = Fn.filesha256(config.pfx_file)
        self.ensured = DataResource(
            self,
            "ensured",
            triggers_replace=triggers,
            provisioners=[
                LocalExecProvisioner(
                    type="local-exec",
                    command=" ".join([CERTIFICATE_TOOL, "ensure-certificate", *arguments]),
                    working_dir=PROJECT_ROOT_FROM_STACK,
                    environment=environment,
                )
            ],
            depends_on=[store.administrator_propagated],
        )
        self.name = CLIENT_CERTIFICATE
        # API Management takes the versionless secret id and follows renewals itself.
        self.versionless_secret_id = f"{vault.vault_uri}secrets/{CLIENT_CERTIFICATE}"
        self.public_reference = (
            f"@Microsoft.KeyVault(SecretUri={vault.vault_uri}secrets/{CLIENT_CERTIFICATE_PUBLIC})"
        )


def _firewall(private_network: bool) -> dict:
    """The vault's network ACLs (and, private, the lifecycle that leaves the deploy's temporary
    runner rule to the delivery)."""
    if not private_network:
        return {"network_acls": KeyVaultNetworkAcls(bypass="AzureServices", default_action="Allow")}
    return {
        "network_acls": KeyVaultNetworkAcls(
            bypass="AzureServices", default_action="Deny", ip_rules=[]
        ),
        "lifecycle": TerraformResourceLifecycle(ignore_changes=[RUNNER_RULES]),
    }
