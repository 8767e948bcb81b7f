"""Key Vault (RBAC, purge protection) with the health-check key and the client certificate.

The certificate is generated inside Key Vault (issuer `Self`, EKU clientAuth, exportable so
API Management can present it), so no private key ever exists in the repository, in
`cdktf.out/` or on a build machine. Optionally an existing PFX (`python -m tools.development.certs
generate`) is imported instead; its password comes from a sensitive Terraform variable.

First apply in one go (role assignments take minutes to propagate): every assignment to a managed
identity says `principal_type = "ServicePrincipal"` (no PrincipalNotFound on a fresh identity),
and what uses an assignment waits for it with a `time_sleep` of `ROLE_PROPAGATION`: the
secret and certificate writes wait for Key Vault Administrator, API Management's certificate
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
needs it (disabled, Key Vault ignores the rules): the delivery adds the runner's address for the
time of a deploy and removes it again, so Terraform ignores `ip_rules` (docs/deploy.md, "Private
data plane"). "Off" here means default Deny with no IP rule. Public mode keeps the firewall open
(default Allow), access by RBAC only.
"""

from cdktf import Fn, TerraformResourceLifecycle, TerraformStack, TerraformVariable
from cdktf_cdktf_provider_azurerm.data_azurerm_client_config import DataAzurermClientConfig
from cdktf_cdktf_provider_azurerm.key_vault import KeyVault, KeyVaultNetworkAcls
from cdktf_cdktf_provider_azurerm.key_vault_certificate import (
    KeyVaultCertificate,
    KeyVaultCertificateCertificate,
    KeyVaultCertificateCertificatePolicy,
    KeyVaultCertificateCertificatePolicyIssuerParameters,
    KeyVaultCertificateCertificatePolicyKeyProperties,
    KeyVaultCertificateCertificatePolicyLifetimeAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionAction,
    KeyVaultCertificateCertificatePolicyLifetimeActionTrigger,
    KeyVaultCertificateCertificatePolicySecretProperties,
    KeyVaultCertificateCertificatePolicyX509CertificateProperties,
)
from cdktf_cdktf_provider_azurerm.key_vault_secret import KeyVaultSecret
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
        self.health_key = Password(self, "health-key", length=HEALTH_KEY_LENGTH, special=False)
        self.health_key_secret = self.add_secret(
            "health-key-secret", name="health-check-key", value=self.health_key.result
        )
        self.certificate = self._client_certificate(certificate, tags)

    def add_secret(self, id_: str, *, name: str, value: str) -> KeyVaultSecret:
        """A text secret in the vault, written once Key Vault Administrator has propagated."""
        return KeyVaultSecret(
            self,
            id_,
            name=name,
            key_vault_id=self.vault.id,
            value=value,
            content_type="text/plain",
            tags=self.tags,
            depends_on=[self.administrator_propagated],
        )

    @property
    def health_key_reference(self) -> str:
        """App Service resolves this app setting from Key Vault with the app's identity."""
        return f"@Microsoft.KeyVault(SecretUri={self.health_key_secret.versionless_id})"

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

    def _client_certificate(self, config: Certificate, tags: dict[str, str]) -> KeyVaultCertificate:
        common = {
            "name": "apim-client-certificate",
            "key_vault_id": self.vault.id,
            "tags": tags,
            "depends_on": [self.administrator_propagated],
        }
        if config.pfx_path:
            password = TerraformVariable(  # at stack level: TF_VAR_client_certificate_password
                TerraformStack.of(self),
                PFX_PASSWORD_VARIABLE,
                type="string",
                sensitive=True,
                description="Password of the client certificate PFX (apim-client.pfx.password)",
            )
            return KeyVaultCertificate(
                self,
                "client-certificate",
                certificate=KeyVaultCertificateCertificate(
                    contents=Fn.filebase64(config.pfx_file), password=password.string_value
                ),
                certificate_policy=_policy(config, issuer="Unknown"),
                **common,
            )
        return KeyVaultCertificate(
            self, "client-certificate", certificate_policy=_policy(config, issuer="Self"), **common
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


def _policy(config: Certificate, *, issuer: str) -> KeyVaultCertificateCertificatePolicy:
    return KeyVaultCertificateCertificatePolicy(
        issuer_parameters=KeyVaultCertificateCertificatePolicyIssuerParameters(name=issuer),
        key_properties=KeyVaultCertificateCertificatePolicyKeyProperties(
            exportable=True,
            key_type="RSA",
            key_size=2048,
            # A renewal keeps the key: the apps pin the public key, not the certificate
            # (docs/deploy.md, "Certificate renewal").
            reuse_key=True,
        ),
        secret_properties=KeyVaultCertificateCertificatePolicySecretProperties(
            content_type=PFX_CONTENT_TYPE
        ),
        x509_certificate_properties=KeyVaultCertificateCertificatePolicyX509CertificateProperties(
            subject=config.subject,
            validity_in_months=config.validity_months,
            key_usage=["digitalSignature", "keyEncipherment"],
            extended_key_usage=[CLIENT_AUTH_EKU],
        ),
        lifetime_action=[
            KeyVaultCertificateCertificatePolicyLifetimeAction(
                action=KeyVaultCertificateCertificatePolicyLifetimeActionAction(
                    action_type="AutoRenew" if issuer == "Self" else "EmailContacts"
                ),
                trigger=KeyVaultCertificateCertificatePolicyLifetimeActionTrigger(
                    days_before_expiry=30
                ),
            )
        ],
    )
