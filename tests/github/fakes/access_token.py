"""What the fake `az account get-access-token --resource <uri>` answers: Entra ID's access token
for the logged-in identity, signed by the rehearsal's local issuer (tests/app/issuer.py, whose
key the fake gateway and web apps trust, as the app trusts Entra's).

Like Entra: `aud` is the resource asked for, `azp` the identity's client id, `oid` its principal,
`roles` the API's app roles the identity is assigned, and nothing else. Assigned means what the
job's synthesized stack says (cdktf.out/stacks/todo-api-<env>/cdk.tf.json, the real synth of
`make synth`): an `azuread_app_role_assignment` whose principal is the service principal looked
up by the identity's client id (auth.client_ids). A stack that forgot the identity gets a token
without roles, which the gateway answers with 403, as API Management would.

Run with the repository's .venv Python (PyJWT): the fake az's own Python may have none.
    python access_token.py <scenario auth JSON> <client id> <principal id> <resource> <stack file>
"""

import json
import sys
import time
from pathlib import Path

import jwt


def assigned_roles(stack_file: Path, client_id: str, identity_name: str | None = None) -> list[str]:
    """The app roles the stack assigns to the caller: looked up by its client id
    (auth.client_ids), or, for a managed identity of the stack itself (the load test engines'),
    that identity found by its resource name."""
    if not stack_file.is_file():
        return []
    stack = json.loads(stack_file.read_text())
    lookups = {f"${{data.azuread_service_principal.{key}.object_id}}"
               for key, block in stack.get("data", {}).get("azuread_service_principal", {}).items()
               if block.get("client_id") == client_id}
    lookups |= {f"${{azurerm_user_assigned_identity.{key}.principal_id}}"
                for key, block in stack.get("resource", {}).get(
                    "azurerm_user_assigned_identity", {}).items()
                if identity_name and block.get("name") == identity_name}
    role_values = {role["id"]: role["value"]
                   for app in stack.get("resource", {}).get("azuread_application", {}).values()
                   for role in app.get("app_role", [])}
    return sorted({role_values[block["app_role_id"]]
                   for block in stack.get("resource", {}).get(
                       "azuread_app_role_assignment", {}).values()
                   if block["principal_object_id"] in lookups})


def main(auth: dict, client_id: str, principal_id: str, resource: str, stack_file: Path,
         identity_name: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": auth["issuer"], "aud": resource, "tid": auth["tenant_id"],
              "oid": principal_id, "sub": principal_id, "azp": client_id, "ver": "2.0",
              "iat": now, "nbf": now, "exp": now + 3600}
    roles = assigned_roles(stack_file, client_id, identity_name)
    if roles:
        claims["roles"] = roles
    key = Path(auth["key_file"]).read_bytes()
    return jwt.encode(claims, key, "RS256", {"kid": auth["kid"]})


if __name__ == "__main__":
    auth_json, client, principal, resource, stack = sys.argv[1:6]
    print(main(json.loads(auth_json), client, principal, resource, Path(stack)))
