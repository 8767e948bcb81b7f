"""What the synthesized bootstrap stack would leave behind once applied, as the rehearsal's fakes
read it: the Azure side (identities, the OIDC subjects federated to each, their role
assignments with each role's actions, the state containers) and the GitHub side (repository
and environment variables, environments' branch policies).

The input is the real `cdk.tf.json` of todo-api-bootstrap (python main.py), not the model: a
federated credential or a role assignment the stack forgets is missing here too. Values that
only exist after an apply (client ids, principal ids, resource ids) get stable fake values.
The resource-type action table (stacks/permissions.py RESOURCE_ACTIONS) goes in as it is: it
is the same data the custom roles are built from; so does the Graph permission table
(GRAPH_PERMISSIONS). Each identity's Microsoft Graph permissions are the bootstrap's output
`graph_consent`, taken as consented (an admin's manual step, docs/deploy.md).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from stacks.permissions import (
    BUILTIN_ROLES,
    GRAPH_PERMISSIONS,
    RESOURCE_ACTIONS,
    STACK_ASSIGNED_ROLES,
)

REFERENCE = re.compile(r"^\$\{([a-z_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}$")
ENV_SCOPED = "env-scoped:"  # act gives every job every variable: the fakes resolve these


def client_id(identity_name: str) -> str:
    """The application (client) id Azure would give the identity: a GUID, stable per name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rehearsal:client:{identity_name}"))


def principal_id(identity_name: str) -> str:
    """Its service principal's object id (a GUID: synth validates object ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rehearsal:principal:{identity_name}"))


def resolve(stack: dict) -> dict:
    resources = stack["resource"]
    config = {name: block for name, block in resources.items()}
    providers = {f"azurerm.{p['alias']}": p["subscription_id"] for p in stack["provider"]["azurerm"]}

    def value(expression, attribute_of=None):
        match = REFERENCE.match(expression) if isinstance(expression, str) else None
        if not match:
            return expression
        resource_type, logical_id, attribute = match.groups()
        block = config[resource_type][logical_id]
        if resource_type == "azurerm_user_assigned_identity":
            return {"client_id": client_id, "principal_id": principal_id,
                    "id": lambda n: f"identity:{n}"}[attribute](block["name"])
        if resource_type == "azurerm_storage_container" and attribute == "id":
            account = config["azurerm_storage_account"]
            [(_, account_block)] = account.items()
            group = value(account_block["resource_group_name"])
            subscription = providers[account_block["provider"]]
            return (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
                    f"Microsoft.Storage/storageAccounts/{account_block['name']}/blobServices/"
                    f"default/containers/{block['name']}")
        if resource_type == "azurerm_resource_group" and attribute in ("name", "location"):
            return block[attribute]
        if resource_type == "azurerm_role_definition":
            return f"role:{block['name']}"
        if resource_type == "random_password":
            return f"rehearsal-password-{logical_id}"
        raise AssertionError(f"the rehearsal cannot resolve {expression}")

    custom_roles = {
        f"role:{block['name']}": {
            "actions": block["permissions"][0].get("actions", []),
            "not_actions": block["permissions"][0].get("not_actions", []),
            "data_actions": block["permissions"][0].get("data_actions", []),
            "assignable_roles": []}
        for block in resources.get("azurerm_role_definition", {}).values()}
    builtin = {name: {"actions": list(r.actions), "not_actions": list(r.not_actions),
                      "data_actions": list(r.data_actions),
                      "assignable_roles": list(r.assignable_roles)}
               for name, r in BUILTIN_ROLES.items()}

    identities = {}
    for block in resources["azurerm_user_assigned_identity"].values():
        identities[f"identity:{block['name']}"] = {
            "name": block["name"], "client_id": client_id(block["name"]),
            "principal_id": principal_id(block["name"]), "subjects": [], "grants": [],
            "graph": []}
    for block in resources.get("azurerm_federated_identity_credential", {}).values():
        identity = identities[value(block["parent_id"])]
        assert block["issuer"] == "https://token.actions.githubusercontent.com", block
        assert block["audience"] == ["api://AzureADTokenExchange"], block
        identity["subjects"].append(block["subject"])
    by_principal = {i["principal_id"]: i for i in identities.values()}
    consent = stack.get("output", {}).get("graph_consent", {}).get("value", {})
    for entry in consent.values():
        by_principal[value(entry["principal_id"])]["graph"] = list(entry["permissions"])
    for block in resources.get("azurerm_role_assignment", {}).values():
        identity = by_principal.get(value(block["principal_id"]))
        if identity is None:  # the person who runs the bootstrap (azurerm_client_config)
            assert block["principal_id"].startswith("${data.azurerm_client_config."), block
            continue
        role = (builtin[block["role_definition_name"]] if "role_definition_name" in block
                else custom_roles[value(block["role_definition_id"])])
        if role["assignable_roles"]:  # an RBAC administrator must be limited by a condition
            for role_id in role["assignable_roles"]:
                assert role_id in block.get("condition", ""), block
            # what the condition lets through is what Azure enforces: the built-in roles above
            # and the environment's fault roles (stacks/permissions.py assignable_role_ids)
            guid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
            role = {**role, "assignable_roles": re.findall(guid, block["condition"])}
        identity["grants"].append({"scope": value(block["scope"]), "role": role,
                                   "role_name": block.get("role_definition_name")
                                   or value(block["role_definition_id"]).removeprefix("role:")})

    repository_variables = {b["variable_name"]: value(b["value"])
                            for b in resources.get("github_actions_variable", {}).values()}
    environments: dict[str, dict] = {}
    for block in resources.get("github_repository_environment", {}).values():
        environments[block["environment"]] = {
            "branches": [], "variables": {}, "secrets": [],
            "reviewers": bool(block.get("reviewers")),
            "can_admins_bypass": block.get("can_admins_bypass", True)}

    def environment_of(block):
        reference = REFERENCE.match(block["environment"])
        if reference:
            return config["github_repository_environment"][reference.group(2)]["environment"]
        return block["environment"]

    for block in resources.get("github_repository_environment_deployment_policy", {}).values():
        environments[environment_of(block)]["branches"].append(block["branch_pattern"])
    for block in resources.get("github_actions_environment_variable", {}).values():
        environments[environment_of(block)]["variables"][block["variable_name"]] = value(
            block["value"])
    for block in resources.get("github_actions_environment_secret", {}).values():
        environments[environment_of(block)]["secrets"].append(block["secret_name"])

    subscriptions = {alias.split(".", 1)[1]: sub for alias, sub in providers.items()}
    return {
        "subscriptions": subscriptions,
        "identities": list(identities.values()),
        "repository_variables": repository_variables,
        "environments": environments,
        "assignable_role_ids": dict(STACK_ASSIGNED_ROLES),
        "resource_actions": {
            resource_type: {"read": list(row.read), "read_data": list(row.refresh_data),
                            "write": list(row.write), "delete": list(row.delete),
                            "data_plane": row.data_plane}
            for resource_type, row in RESOURCE_ACTIONS.items()},
        "graph_permissions": {
            resource_type: {"read": list(row.read), "write": list(row.write)}
            for resource_type, row in GRAPH_PERMISSIONS.items()},
    }


def act_variables(world: dict) -> dict[str, str]:
    """What the rehearsal hands act as `vars`: the repository's real values, and a marker for
    each environment variable that the fakes resolve for the job's own environment (act itself
    would give every job the same value)."""
    names = {n for e in world["environments"].values() for n in e["variables"]}
    return {**world["repository_variables"], **{n: ENV_SCOPED + n for n in sorted(names)}}


def write_world(bootstrap_stack: Path, target: Path) -> dict:
    world = resolve(json.loads(bootstrap_stack.read_text()))
    target.write_text(json.dumps(world, indent=1))
    return world
