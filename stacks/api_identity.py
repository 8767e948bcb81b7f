"""Who may call the API, as code (`auth.mode = "entra"`): the API's Entra ID app registration
and an example client for the load tests, per environment.

- The API (`api`): single tenant (`AzureADMyOrg`), v2 access tokens, one app role (allowed to
  applications) and one delegated scope (users) per permission of app/openapi.json's `entraId`
  scheme. Entra requires an app role and a scope with the same value to share its id, display
  name, description and enabled flag (the provider checks it: applications.go
  applicationValidateRolesScopes), so each permission's id is fixed here and its texts shared.
  Its identifier URI is `api://<client id>`, the form tenants' default app management policy
  accepts, set by its own resource so the application need not name itself (no cycle).
- Its service principal requires an app role assignment: Entra issues tokens for the API only
  to callers (applications, or users and groups) assigned to it.
- The example client: no secret, a federated identity credential for this repository's GitHub
  environment of the same name (the load-test workflow's OIDC token), assigned every app role.
- Every other allowed caller (`auth.client_ids`: the deploy identity, whose smoke tests call
  the API) is looked up by client id and assigned every app role too.
- Managed identities of the stack itself that call the API (`managed_callers`: Azure Load
  Testing's engine identity, stacks/drills.py) are known by client id and object id already:
  assigned every app role and allowed, without a lookup. Made in the same apply: the
  assignment's create retries while Graph does not know the new principal yet (404, "Not a
  valid reference update": azuread internal/services/approleassignments/
  app_role_assignment_resource.go), so no wait of ours.

The app settings the web apps get (`app_settings`) and what API Management checks
(`token_check`) come from here, so the gateway and the app accept the same tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_azuread.app_role_assignment import AppRoleAssignment
from cdktf_cdktf_provider_azuread.application import (
    Application,
    ApplicationApi,
    ApplicationApiOauth2PermissionScope,
    ApplicationAppRole,
)
from cdktf_cdktf_provider_azuread.application_federated_identity_credential import (
    ApplicationFederatedIdentityCredential,
)
from cdktf_cdktf_provider_azuread.application_identifier_uri import ApplicationIdentifierUri
from cdktf_cdktf_provider_azuread.data_azuread_service_principal import (
    DataAzureadServicePrincipal,
)
from cdktf_cdktf_provider_azuread.service_principal import ServicePrincipal
from constructs import Construct

from stacks.config import Auth
from stacks.gateway_policy import TokenCheck
from stacks.naming import Names
from stacks.openapi import operation_permissions, permissions
from stacks.permissions import OIDC_AUDIENCE, OIDC_ISSUER, Subject

SIGN_IN_AUDIENCE = "AzureADMyOrg"  # this tenant only
ACCESS_TOKEN_VERSION = 2  # v2 tokens: iss https://login.microsoftonline.com/<tid>/v2.0
AUTH_NONE = {"AUTH_MODE": "none"}


def permission_id(permission: str) -> str:
    """The fixed id of a permission's app role and of its scope (one id for both: Entra's rule)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"todo-api:permission:{permission}"))


def issuer(tenant_id: str) -> str:
    """The `iss` of the tenant's v2.0 access tokens."""
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


@dataclass(frozen=True)
class ManagedCaller:
    """A managed identity of the stack that calls the API (its client id and object id)."""

    client_id: str
    object_id: str


class ApiIdentity(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: Names,
        environment: str,
        repository: str,
        tenant_id: str,
        settings: Auth,
        openapi_json: str,
        managed_callers: Mapping[str, ManagedCaller] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.tenant_id = tenant_id
        self.settings = settings
        self.managed_callers = dict(managed_callers or {})
        self.openapi_json = openapi_json
        self.permissions = permissions(openapi_json)
        owners = list(settings.owners) or None
        self.api = Application(
            self,
            "api",
            display_name=names.global_("api"),
            sign_in_audience=SIGN_IN_AUDIENCE,
            owners=owners,
            app_role=[
                ApplicationAppRole(
                    id=permission_id(value),
                    value=value,
                    display_name=value,
                    description=description,
                    allowed_member_types=["Application"],
                    enabled=True,
                )
                for value, description in self.permissions.items()
            ],
            api=ApplicationApi(
                requested_access_token_version=ACCESS_TOKEN_VERSION,
                oauth2_permission_scope=[
                    ApplicationApiOauth2PermissionScope(
                        id=permission_id(value),
                        value=value,
                        admin_consent_display_name=value,
                        admin_consent_description=description,
                        user_consent_display_name=value,
                        user_consent_description=description,
                        type="User",
                        enabled=True,
                    )
                    for value, description in self.permissions.items()
                ],
            ),
            # Set by azuread_application_identifier_uri below (it names the client id).
            lifecycle=TerraformResourceLifecycle(ignore_changes=["identifier_uris"]),
        )
        self.identifier_uri = f"api://{self.api.client_id}"
        self.api_uri = ApplicationIdentifierUri(
            self, "api-identifier-uri", application_id=self.api.id,
            identifier_uri=self.identifier_uri,
        )
        self.api_principal = ServicePrincipal(
            self, "api-principal", client_id=self.api.client_id, owners=owners,
            app_role_assignment_required=True,
        )
        self.example_client = Application(
            self, "example-client", display_name=names.global_("api-client"),
            sign_in_audience=SIGN_IN_AUDIENCE, owners=owners,
        )
        self.example_client_principal = ServicePrincipal(
            self, "example-client-principal", client_id=self.example_client.client_id,
            owners=owners,
        )
        subject = Subject("environment", environment)
        self.example_client_credential = ApplicationFederatedIdentityCredential(
            self, "example-client-github", application_id=self.example_client.id,
            display_name=f"github-{subject.label.replace(':', '-')}",
            description=f"GitHub Actions jobs of {repository} in its {environment} environment",
            issuer=OIDC_ISSUER, audiences=[OIDC_AUDIENCE], subject=subject.claim(repository),
        )
        self.example_client_roles = self._assign_roles(
            "example-client", self.example_client_principal.object_id
        )
        # The other callers (auth.client_ids, e.g. the deploy identity whose smoke tests call
        # the API): looked up by client id, assigned the same roles (the API requires it).
        self.caller_roles = {
            client_id: self._assign_roles(
                f"caller-{client_id}",
                DataAzureadServicePrincipal(
                    self, f"caller-{client_id}", client_id=client_id
                ).object_id,
            )
            for client_id in settings.clients
        }
        self.managed_caller_roles = {
            key: self._assign_roles(f"caller-{key}", caller.object_id)
            for key, caller in self.managed_callers.items()
        }

    def _assign_roles(self, id_prefix: str, principal_object_id: str) -> list[AppRoleAssignment]:
        """Every app role of the API to one service principal."""
        return [
            AppRoleAssignment(
                self, f"{id_prefix}-{value.lower().replace('.', '-')}",
                app_role_id=permission_id(value),
                principal_object_id=principal_object_id,
                resource_object_id=self.api_principal.object_id,
            )
            for value in self.permissions
        ]

    @property
    def client_ids(self) -> list[str]:
        """Client applications allowed to call: the example client, `auth.client_ids`, then the
        stack's own managed callers."""
        return [
            self.example_client.client_id,
            *self.settings.clients,
            *(caller.client_id for caller in self.managed_callers.values()),
        ]

    @property
    def audiences(self) -> list[str]:
        """What `aud` may hold: v2 tokens carry the client id; the identifier URI as well."""
        return [self.api.client_id, self.identifier_uri]

    @property
    def app_settings(self) -> Mapping[str, str]:
        """What the app reads (app/settings.py): the same tenant, audiences and clients."""
        return {
            "AUTH_MODE": "entra",
            "AUTH_ISSUER": issuer(self.tenant_id),
            "AUTH_AUDIENCE": ",".join(self.audiences),
            "AUTH_ALLOWED_CLIENT_IDS": ",".join(self.client_ids),
        }

    @property
    def token_check(self) -> TokenCheck:
        """What API Management checks before anything else (stacks/gateway_policy.py)."""
        return TokenCheck(
            tenant_id=self.tenant_id,
            audiences=tuple(self.audiences),
            client_ids=tuple(self.client_ids),
            operations=tuple(operation_permissions(self.openapi_json)),
        )

    @property
    def outputs(self) -> dict[str, str]:
        return {
            "api_client_id": self.api.client_id,
            "api_identifier_uri": self.identifier_uri,
            "example_client_id": self.example_client.client_id,
            "tenant_id": self.tenant_id,
        }
