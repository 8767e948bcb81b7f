"""First contact: a read-only check of Azure, with your own `az login`, before the first deploy.

    make preflight                  # python main.py, then:
    python -m tools.operations.preflight cdktf.out/stacks

Reads what the synthesized stacks will need (the bootstrap stack: subscriptions, identities,
federated credentials, role assignments, provider registrations; the environment stacks:
regions, SKUs and globally unique names) and asks Azure, read-only, whether it is so:

- the dev, prod and state subscriptions are reachable with your login and are three;
- every resource provider the stacks use is registered in dev and prod;
- each App Service plan SKU and API Management is offered in its regions (offered, not quota:
  see docs/delivery.md "Preflight");
- the names are free: Key Vault and API Management (soft-deleted ones included, which block a
  name for up to 90 and 48 days), Cosmos DB, the web apps, the state account (or it is already
  yours);
- the identities exist with exactly the federated subjects and role assignments the bootstrap
  stack declares: nothing missing, nothing more.

One line per finding, each with the command that fixes it; exit 1 on any finding, 0 when
there is none. Nothing is changed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.cli import CliError, run_cli

BOOTSTRAP = "todo-api-bootstrap"
ARM = "https://management.azure.com"
REFERENCE = re.compile(r"^\$\{([a-z_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}$")


@dataclass
class Identity:
    name: str
    subjects: set[str] = field(default_factory=set)
    grants: set[tuple[str, str]] = field(default_factory=set)  # (role, scope)


@dataclass
class Plan:
    """What the synthesized stacks need of Azure."""

    tenant: str
    subscriptions: dict[str, str]  # dev, prod, state -> id
    identity_group: str
    identities: dict[str, Identity]
    registrations: dict[str, set[str]]  # subscription alias -> namespaces
    state_account: tuple[str, str]  # (resource group, name)
    environments: dict[str, dict]  # env -> {"vaults", "apims", "cosmos", "web_apps", "plans"}


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
                       " (run `python main.py` first)") from None


def read_plan(stacks: Path) -> Plan:
    bootstrap = _load(stacks / BOOTSTRAP / "cdk.tf.json")
    resources = bootstrap.get("resource", {})
    providers = {p["alias"]: p for p in bootstrap["provider"]["azurerm"]}
    subscriptions = {alias: p["subscription_id"] for alias, p in providers.items()}
    identity_blocks = resources["azurerm_user_assigned_identity"]

    def literal(expression: str, attribute: str = "name") -> str:
        match = REFERENCE.match(expression)
        if not match:
            return expression
        return resources[match[1]][match[2]][attribute]

    by_logical = {k: Identity(v["name"]) for k, v in identity_blocks.items()}
    [(_, account)] = resources["azurerm_storage_account"].items()
    account_group = literal(account["resource_group_name"])
    for block in resources.get("azurerm_federated_identity_credential", {}).values():
        by_logical[REFERENCE.match(block["parent_id"])[2]].subjects.add(block["subject"])
    for block in resources.get("azurerm_role_assignment", {}).values():
        match = REFERENCE.match(block["principal_id"])
        if not match or match[1] != "azurerm_user_assigned_identity":
            continue  # the operator's own blob role
        role = block.get("role_definition_name") or literal(block["role_definition_id"])
        scope = block["scope"]
        container = REFERENCE.match(scope)
        if container and container[1] == "azurerm_storage_container":
            scope = (f"/subscriptions/{subscriptions['state']}/resourceGroups/{account_group}"
                     f"/providers/Microsoft.Storage/storageAccounts/{account['name']}"
                     f"/blobServices/default/containers/{literal(scope)}")
        by_logical[match[2]].grants.add((role, scope))
    registrations: dict[str, set[str]] = {}
    for block in resources.get("azurerm_resource_provider_registration", {}).values():
        registrations.setdefault(block["provider"].split(".", 1)[1], set()).add(block["name"])
    [identity_group] = {literal(b["resource_group_name"]) for b in identity_blocks.values()}
    environments = {}
    for env in ("dev", "prod"):
        stack = _load(stacks / f"todo-api-{env}" / "cdk.tf.json").get("resource", {})
        environments[env] = {
            "vaults": [(b["name"], b["location"]) for b in
                       stack.get("azurerm_key_vault", {}).values()],
            "apims": [(b["name"], [b["location"]] + [a["location"] for a in
                                                     b.get("additional_location", [])])
                      for b in stack.get("azurerm_api_management", {}).values()],
            "cosmos": [b["name"] for b in stack.get("azurerm_cosmosdb_account", {}).values()],
            "web_apps": [b["name"] for b in stack.get("azurerm_linux_web_app", {}).values()],
            "plans": sorted({(b["sku_name"], b["location"]) for b in
                             stack.get("azurerm_service_plan", {}).values()}),
        }
    return Plan(providers["state"]["tenant_id"], subscriptions, identity_group,
                {i.name: i for i in by_logical.values()}, registrations,
                (account_group, account["name"]), environments)


class Azure:
    """`az ... -o json`, read-only; None when az says the thing does not exist."""

    def __call__(self, *args: str, missing_ok: bool = False):
        result = subprocess.run(["az", *args, "--output", "json"], capture_output=True,
                                text=True, check=False, timeout=120)
        if result.returncode != 0:
            if missing_ok and ("not found" in result.stderr.lower() or result.returncode == 3):
                return None
            first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
            raise CliError(f"az {' '.join(args[:3])}: {first}")
        return json.loads(result.stdout) if result.stdout.strip() else None


def region_key(name: str) -> str:
    """'Australia East' and 'australiaeast' name the same region."""
    return name.replace(" ", "").lower()


def check(plan: Plan, az: Azure) -> list[str]:
    findings: list[str] = []
    subs = plan.subscriptions
    reachable = {}
    for alias, subscription in subs.items():
        account = az("account", "show", "--subscription", subscription, missing_ok=True)
        reachable[alias] = account is not None
        if account is None:
            findings.append(f"subscription {alias} ({subscription}) is not reachable with your"
                            f" login: az login --tenant {plan.tenant}")
    if len(set(subs.values())) != len(subs):
        findings.append("dev, prod and state must be three subscriptions: set"
                        " [subscriptions] in config/bootstrap.toml")
    for alias, namespaces in sorted(plan.registrations.items()):
        if not reachable.get(alias):
            continue
        for namespace in sorted(namespaces):
            state = az("provider", "show", "--namespace", namespace, "--subscription", subs[alias])
            if state.get("registrationState") != "Registered":
                findings.append(
                    f"{namespace} is {state.get('registrationState', 'not registered')} in {alias}:"
                    f" az provider register --namespace {namespace} --subscription {subs[alias]}")
    findings += _offered(plan, az)
    findings += _names(plan, az, reachable)
    if reachable.get("state"):
        findings += _identities(plan, az, reachable)
    return findings


def _offered(plan: Plan, az: Azure) -> list[str]:
    findings = []
    skus = {sku for env in plan.environments.values() for sku, _ in env["plans"]}
    for sku in sorted(skus):
        offered = {region_key(r["name"]) for r in az("appservice", "list-locations", "--sku", sku)}
        for env, wanted in plan.environments.items():
            for plan_sku, region in wanted["plans"]:
                if plan_sku == sku and region_key(region) not in offered:
                    findings.append(f"App Service {sku} is not offered in {region} ({env}): set"
                                    f" app_service.plan_sku in config/{env}.toml")
    if any(env["apims"] for env in plan.environments.values()):
        provider = az("provider", "show", "--namespace", "Microsoft.ApiManagement",
                      "--subscription", plan.subscriptions["dev"])
        [service] = [t for t in provider["resourceTypes"] if t["resourceType"] == "service"]
        offered = {region_key(r) for r in service["locations"]}
        for env, wanted in plan.environments.items():
            for name, regions in wanted["apims"]:
                for region in regions:
                    if region_key(region) not in offered:
                        findings.append(f"API Management is not offered in {region} ({name},"
                                        f" {env}): choose other regions in config/{env}.toml")
    return findings


def _names(plan: Plan, az: Azure, reachable: dict[str, bool]) -> list[str]:
    findings = []
    for env, wanted in plan.environments.items():
        subscription = plan.subscriptions[env]
        if not reachable.get(env):
            continue
        deleted_vaults = {v["name"]: v for v in az("keyvault", "list-deleted", "--resource-type",
                                                   "vault", "--subscription", subscription)}
        for name, location in wanted["vaults"]:
            if name in deleted_vaults:
                findings.append(f"Key Vault {name} is soft-deleted in {env} and blocks the name:"
                                f" az keyvault recover --name {name} --subscription {subscription}"
                                f" (or purge: az keyvault purge --name {name} --location {location})")
            elif not _available(az, subscription, "Microsoft.KeyVault", "Microsoft.KeyVault/vaults",
                                name, "2023-07-01"):
                findings.append(f"Key Vault name {name} ({env}) is taken: set name_prefix in"
                                f" config/{env}.toml")
        deleted_apims = {s["name"]: s for s in az("apim", "deletedservice", "list",
                                                  "--subscription", subscription)}
        for name, regions in wanted["apims"]:
            if name in deleted_apims:
                findings.append(f"API Management {name} is soft-deleted in {env} and blocks the"
                                f" name: az apim deletedservice purge --service-name {name}"
                                f" --location {regions[0]} --subscription {subscription}")
            elif not az("apim", "check-name", "--name", name,
                        "--subscription", subscription)["nameAvailable"]:
                findings.append(f"API Management name {name} ({env}) is taken: set name_prefix"
                                f" in config/{env}.toml")
        for name in wanted["cosmos"]:
            if az("cosmosdb", "check-name-exists", "--name", name, "--subscription", subscription):
                findings.append(f"Cosmos DB account name {name} ({env}) is taken: set"
                                f" name_prefix in config/{env}.toml")
        for name in wanted["web_apps"]:
            if not _available(az, subscription, "Microsoft.Web", "Microsoft.Web/sites", name,
                              "2022-03-01"):
                findings.append(f"web app name {name} ({env}) is taken: set name_prefix in"
                                f" config/{env}.toml")
    group, account = plan.state_account
    if reachable.get("state"):
        ours = az("storage", "account", "show", "--name", account, "--resource-group", group,
                  "--subscription", plan.subscriptions["state"], missing_ok=True)
        if ours is None and not az("storage", "account", "check-name", "--name", account,
                                   "--subscription", plan.subscriptions["state"])["nameAvailable"]:
            findings.append(f"state account name {account} is taken: set state_storage_account in"
                            " config/bootstrap.toml")
    return findings


def _available(az: Azure, subscription: str, namespace: str, resource_type: str, name: str,
               version: str) -> bool:
    url = (f"{ARM}/subscriptions/{subscription}/providers/{namespace}/checkNameAvailability"
           f"?api-version={version}")
    body = json.dumps({"name": name, "type": resource_type})
    return bool(az("rest", "--method", "post", "--url", url, "--body", body)["nameAvailable"])


def _identities(plan: Plan, az: Azure, reachable: dict[str, bool]) -> list[str]:
    findings = []
    state = plan.subscriptions["state"]
    deploy = "cdktf deploy todo-api-bootstrap"
    for name, wanted in sorted(plan.identities.items()):
        found = az("identity", "show", "--name", name, "--resource-group", plan.identity_group,
                   "--subscription", state, missing_ok=True)
        if found is None:
            findings.append(f"identity {name} does not exist: {deploy}")
            continue
        subjects = {c["subject"] for c in az(
            "identity", "federated-credential", "list", "--identity-name", name,
            "--resource-group", plan.identity_group, "--subscription", state)}
        for subject in sorted(wanted.subjects - subjects):
            findings.append(f"{name} lacks the federated subject {subject}: {deploy}")
        for subject in sorted(subjects - wanted.subjects):
            findings.append(f"{name} trusts {subject}, which the model does not: az identity"
                            f" federated-credential list --identity-name {name} --resource-group"
                            f" {plan.identity_group} (then delete it, or {deploy})")
        granted = set()
        readable = {s for alias, s in plan.subscriptions.items() if reachable.get(alias)}
        for subscription in sorted(readable):
            for assignment in az("role", "assignment", "list", "--assignee-object-id",
                                 found["principalId"], "--all", "--subscription", subscription):
                granted.add((assignment["roleDefinitionName"], assignment["scope"]))
        for role, scope in sorted(wanted.grants - granted):
            if not any(scope.startswith(f"/subscriptions/{s}") for s in readable):
                continue  # that subscription is a finding of its own
            findings.append(f"{name} lacks {role} on {scope}: {deploy}")
        for role, scope in sorted(granted - wanted.grants):
            findings.append(f"{name} holds {role} on {scope}, which the model does not grant:"
                            f" az role assignment delete --assignee {found['principalId']}"
                            f" --role \"{role}\" --scope {scope}")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="cdktf.out/stacks (after python main.py)")
    args = parser.parse_args(argv)
    findings = check(read_plan(args.stacks), Azure())
    for finding in findings:
        print(finding)
    if findings:
        print(f"preflight: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    print("preflight: nothing found: the subscriptions, providers, regions, names and"
          " identities are as the stacks need them")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
