"""azure/login for the rehearsal: exchange the job's OIDC token (its real subject: event, ref,
environment) for the identity of `client-id`, as Entra ID would, and mark the fake az as
logged in to `subscription-id`. Refuses like the real exchange: no token (forks, Dependabot),
an environment the branch may not deploy to, a subject no federated credential of that
identity names (AADSTS700213), a subscription the identity has no role in.

    python3 login.py CLIENT_ID SUBSCRIPTION_ID
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from recording import fail, identity_for, load_state, save_state, subscription_scope, variable

TOOL = "azure/login"
args = sys.argv[1:3]
identity = identity_for(TOOL, args, args[0])
subscription = subscription_scope(args[1])
if not any(g["scope"].startswith(subscription) for g in identity["grants"]):
    fail(TOOL, args, f"Error: No subscriptions found for {identity['client_id']}"
         f" ({subscription}: {identity['name']} has no role there)")
save_state("azure.json", {**load_state("azure.json", {}), "logged_in": identity["client_id"],
                          "identity": identity["name"], "subscription": variable(args[1])})
