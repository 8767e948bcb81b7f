"""make preflight against the rehearsal's fake az: a tenant ready for the first deploy gives no
finding; each way a real tenant is not ready gives one line naming the fix, and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.regions import REGIONS
from tests.github.bootstrap_world import resolve

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "github" / "fakes"


@pytest.fixture(scope="module")
def stacks(synthesized_bootstrap_file) -> Path:
    return synthesized_bootstrap_file.parent.parent


@pytest.fixture(scope="module")
def world(synthesized_bootstrap_file) -> dict:
    return resolve(json.loads(synthesized_bootstrap_file.read_text()))


def ready_tenant(stacks: Path, world: dict) -> dict:
    """What Azure looks like once the bootstrap stack is applied: everything in order."""
    bootstrap = json.loads((stacks / "todo-api-bootstrap" / "cdk.tf.json").read_text())
    registered: dict[str, list[str]] = {}
    aliases = world["subscriptions"]
    for block in bootstrap["resource"]["azurerm_resource_provider_registration"].values():
        registered.setdefault(aliases[block["provider"].split(".")[1]], []).append(block["name"])
    skus = set()
    for env in ("dev", "prod"):
        stack = json.loads((stacks / f"todo-api-{env}" / "cdk.tf.json").read_text())
        skus |= {b["sku_name"] for b in stack["resource"]["azurerm_service_plan"].values()}
    everywhere = [r.display_name for r in REGIONS.values()]
    return {
        "tenant": "00000000-0000-0000-0000-000000000000",
        "subscriptions": list(aliases.values()), "registered": registered,
        "app_service_locations": {sku: everywhere for sku in skus},
        "apim_locations": everywhere, "taken": {}, "deleted": {},
        "own_storage": ["todoapitfstate42"],
        "identities": {i["name"]: i for i in world["identities"]},
    }


def preflight(tmp_path: Path, stacks: Path, world: dict, tenant: dict):
    (tmp_path / "scenario.json").write_text(json.dumps({"web_apps": [], "stacks": {},
                                                        "preflight": tenant}))
    (tmp_path / "world.json").write_text(json.dumps(world))
    (tmp_path / "azure.json").write_text(json.dumps({"logged_in": "you@contoso.example"}))
    env = {**os.environ, "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "REHEARSAL_DIR": str(tmp_path), "REHEARSAL_WORLD": str(tmp_path / "world.json")}
    return subprocess.run([sys.executable, "-m", "tools.operations.preflight", str(stacks)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line)["args"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_a_ready_tenant_has_no_finding_and_preflight_only_reads(tmp_path, stacks, world):
    result = preflight(tmp_path, stacks, world, ready_tenant(stacks, world))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("preflight: nothing found")
    verbs = {tuple(a[:3]) for a in calls(tmp_path)}
    assert verbs and not [v for v in verbs if {"create", "delete", "update", "register", "purge",
                                               "recover", "set"} & set(v)]
    assert all(a[a.index("--method") + 1] == "post" and "checkNameAvailability" in
               a[a.index("--url") + 1] for a in calls(tmp_path) if a[0] == "rest")


def break_tenant(tenant: dict, world: dict, case: str) -> None:
    dev, prod = world["subscriptions"]["dev"], world["subscriptions"]["prod"]
    plan_dev = tenant["identities"]["todo-api-github-plan-dev"]
    if case == "unreachable":
        tenant["subscriptions"].remove(prod)
    elif case == "provider":
        tenant["registered"][dev].remove("Microsoft.DocumentDB")
    elif case == "sku":
        tenant["app_service_locations"] = {s: ["West Europe"] for s in tenant["app_service_locations"]}
    elif case == "apim region":
        tenant["apim_locations"] = ["West Europe"]
    elif case == "deleted vault":
        tenant["deleted"]["keyvault"] = ["todo-api-dev-kv"]
    elif case == "deleted apim":
        tenant["deleted"]["apim"] = ["todo-api-prod-apim"]
    elif case == "taken cosmos":
        tenant["taken"]["cosmos"] = ["todo-api-dev-cosmos"]
    elif case == "taken web app":
        tenant["taken"]["webapp"] = ["todo-api-dev-aue-app"]
    elif case == "state account":
        tenant["own_storage"] = []
        tenant["taken"]["storage"] = ["todoapitfstate42"]
    elif case == "no identity":
        del tenant["identities"]["todo-api-github-deploy-prod"]
    elif case == "extra subject":
        deploy_dev = tenant["identities"]["todo-api-github-deploy-dev"]
        deploy_dev["subjects"] = [*deploy_dev["subjects"], "repo:contoso/todo-api:pull_request"]
    elif case == "missing subject":
        plan_dev["subjects"] = [s for s in plan_dev["subjects"] if not s.endswith(":pull_request")]
    elif case == "extra role":
        plan_dev["grants"] = [*plan_dev["grants"], {"role_name": "Contributor",
                                                    "scope": f"/subscriptions/{prod}"}]


CASES = {
    "unreachable": "subscription prod (",
    "provider": "Microsoft.DocumentDB is NotRegistered in dev: az provider register",
    "sku": "is not offered in australiaeast (dev): set app_service.plan_sku",
    "apim region": "API Management is not offered in",
    "deleted vault": "Key Vault todo-api-dev-kv is soft-deleted in dev and blocks the name: az keyvault recover",
    "deleted apim": "is soft-deleted in prod and blocks the name: az apim deletedservice purge",
    "taken cosmos": "Cosmos DB account name todo-api-dev-cosmos (dev) is taken",
    "taken web app": "web app name todo-api-dev-aue-app (dev) is taken",
    "state account": "state account name todoapitfstate42 is taken",
    "no identity": "identity todo-api-github-deploy-prod does not exist: cdktf deploy todo-api-bootstrap",
    "extra subject": "todo-api-github-deploy-dev trusts repo:contoso/todo-api:pull_request, which the model does not",
    "missing subject": "todo-api-github-plan-dev lacks the federated subject repo:contoso/todo-api:pull_request",
    "extra role": "todo-api-github-plan-dev holds Contributor on /subscriptions/",
}


def test_each_problem_is_one_line_with_its_fix_and_exit_1(tmp_path, stacks, world):
    """Every problem at once (each finding is independent of the others): one line each."""
    tenant = ready_tenant(stacks, world)
    for case in CASES:
        if case != "unreachable":
            break_tenant(tenant, world, case)
    result = preflight(tmp_path, stacks, world, tenant)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    missing = [case for case, text in CASES.items()
               if case != "unreachable" and not [line for line in lines if text in line]]
    assert missing == [], lines
    assert result.stderr == f"preflight: {len(lines)} finding(s)\n"


def test_an_unreachable_subscription_is_a_finding_not_a_crash(tmp_path, stacks, world):
    tenant = ready_tenant(stacks, world)
    break_tenant(tenant, world, "unreachable")
    result = preflight(tmp_path, stacks, world, tenant)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if CASES["unreachable"] in line]
    assert "az login --tenant" in result.stdout and "Traceback" not in result.stderr


def test_without_synthesized_stacks_it_says_so_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.operations.preflight", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "run `python main.py` first" in result.stderr
