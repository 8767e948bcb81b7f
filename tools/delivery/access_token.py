"""The bearer token the delivery's own calls to the API send when the stack takes Entra ID tokens
(output `api_identifier_uri`, auth.mode = "entra"; docs/deploy.md "Callers: Entra ID tokens").

The job is logged in as its environment's deploy identity (`azure/login`, OIDC); the Azure CLI
asks Entra for a token for the API (`az account get-access-token --resource <identifier URI>`).
The deploy identity is one of the API's callers (auth.client_ids: allowed, assigned the app
roles), so the token carries Todo.Read and Todo.Write in `roles`. Asked afresh for every client:
the CLI caches and renews it; the token itself is never printed.
"""

from __future__ import annotations

from app.contract import AUTHORIZATION_HEADER
from tools.delivery.deploy_app import az_json
from tools.delivery.stack_outputs import StackOutputs


def access_token(outputs: StackOutputs) -> str | None:
    """A token for the stack's API as the logged-in identity; None when it takes no tokens."""
    if not outputs.api_identifier_uri:
        return None
    answer = az_json(
        ["az", "account", "get-access-token", "--resource", outputs.api_identifier_uri],
        f"an access token for {outputs.api_identifier_uri}",
    )
    return answer["accessToken"]


def bearer_headers(outputs: StackOutputs) -> dict[str, str]:
    """{Authorization: Bearer <token>} for a stack whose API takes tokens, else {}."""
    token = access_token(outputs)
    return {} if token is None else {AUTHORIZATION_HEADER: f"Bearer {token}"}
