"""Key Vault's data plane is out of every plan (issue 17): the secrets are written through ARM
template deployments (a `securestring` value ARM never returns), the client certificate by the
apply's tool; no resource type whose refresh reads the vault's data plane is left, so no plan
role holds a Key Vault data action and a private vault's plan runs from a GitHub-hosted runner.

The lifecycle that makes a secret deployment safe is checked with the real Terraform binary,
offline, on a copy whose Azure parts are `terraform_data` stand-ins with the stack's own
lifecycle blocks: a changed value replaces the deployment; anything else leaves it alone."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stacks import permissions
from stacks.key_vault import RETIRED_ADDRESSES
from tests.stacks.synthesized import blocks, client_certificate, only, ref, vault_secrets

TEMPLATE = "azurerm_resource_group_template_deployment"
DATA_PLANE_TYPES = {t for t, a in permissions.RESOURCE_ACTIONS.items() if a.data_plane}


@pytest.fixture(params=["dev", "prod"])
def stack(request, synthesized_stacks, private_stacks):
    """dev as shipped (public) and prod in private mode."""
    return synthesized_stacks[(request.param, "single")] if request.param == "dev" else (
        private_stacks["prod"])


def test_no_resource_reads_the_vaults_data_plane(synthesized_stacks, private_stacks):
    for stack in [*synthesized_stacks.values(), *private_stacks.values()]:
        assert set(stack["resource"]) & DATA_PLANE_TYPES == set()


def test_no_plan_role_holds_a_key_vault_data_action(synthesized_stacks):
    types = {env: set(stack["resource"]) for (env, _), stack in synthesized_stacks.items()}
    for environment, resource_types in types.items():
        role = permissions.plan_role(environment, resource_types)
        assert not [a for a in role.data_actions if a.startswith("Microsoft.KeyVault/")]


def test_each_secret_is_an_arm_deployment_with_a_securestring_value(stack):
    vault_id, vault = only(stack, "azurerm_key_vault")
    for name, (_, deployment) in vault_secrets(stack).items():
        template = json.loads(deployment["template_content"])
        assert template["parameters"] == {"value": {"type": "securestring"}}
        (secret,) = template["resources"]
        assert secret["name"] == f"{ref('azurerm_key_vault', vault_id, 'name')}/{name}"
        assert secret["properties"] == {"value": "[parameters('value')]",
                                        "contentType": "text/plain"}
        assert secret["tags"] == vault["tags"]
        # the value only in the sensitive parameters, never in the template
        assert deployment["parameters_content"].startswith("${sensitive(jsonencode(")
        assert deployment["resource_group_name"] == ref("azurerm_key_vault", vault_id,
                                                        "resource_group_name")
        assert deployment["deployment_mode"] == "Incremental"


def test_a_secret_deployment_is_replaced_by_its_revision_and_never_updated(stack):
    for name, (_, deployment) in vault_secrets(stack).items():
        lifecycle = deployment["lifecycle"]
        assert lifecycle["ignore_changes"] == "all"
        (trigger,) = lifecycle["replace_triggered_by"]
        assert re.fullmatch(r"terraform_data\.[\w-]+", trigger), trigger  # a bare reference
        revision = blocks(stack, "terraform_data")[trigger.split(".", 1)[1]]
        assert set(revision["input"]) == {"vault_id", "name", "tags", "value_sha256"}
        assert revision["input"]["name"] == name
        assert revision["input"]["value_sha256"].startswith("${sensitive(sha256(")


def test_replacing_a_deployment_leaves_the_secret_it_wrote(stack):
    (features,) = stack["provider"]["azurerm"][0]["features"]
    assert features["template_deployment"] == [{"delete_nested_items_during_deletion": False}]


def test_the_retired_data_plane_resources_are_the_ones_the_stack_used_to_write(stack):
    """docs/deploy.md's `terraform state rm` lines name exactly these addresses."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    for address in RETIRED_ADDRESSES:
        assert f"'{address}'" in docs
    assert all(a.split(".")[0] in DATA_PLANE_TYPES for a in RETIRED_ADDRESSES)


# The lifecycle under the real Terraform --------------------------------------------------------


def stand_in(stack: dict, value_hash: str) -> dict:
    """The health key's deployment and revision as terraform_data, with the stack's lifecycle;
    every reference to an Azure resource replaced by a literal."""
    ((deployment_id, deployment),) = [
        (i, d) for i, d in vault_secrets(stack).values()
        if d["name"].endswith("-secret-health-check-key")]
    trigger = deployment["lifecycle"]["replace_triggered_by"][0]
    revision_id = trigger.split(".", 1)[1]
    revision = blocks(stack, "terraform_data")[revision_id]
    literal = json.loads(re.sub(r"\$\{[^}]*\}", "literal", json.dumps(revision["input"])))
    literal["value_sha256"] = f'${{sensitive("{value_hash}")}}'
    return {"resource": {"terraform_data": {
        revision_id: {"input": literal},
        deployment_id: {"input": "deployment", "lifecycle": deployment["lifecycle"]},
    }}}, deployment_id


def terraform(directory: Path, *args: str) -> str:
    result = subprocess.run(["terraform", *args, "-no-color", "-input=false"], cwd=directory,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs the terraform binary")
def test_terraform_replaces_the_deployment_when_the_value_changes_and_only_then(
        tmp_path, private_stacks):
    stack = private_stacks["prod"]
    config, deployment_id = stand_in(stack, "a" * 64)
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    terraform(tmp_path, "init")
    terraform(tmp_path, "apply", "-auto-approve")
    assert "No changes." in terraform(tmp_path, "plan")
    config, _ = stand_in(stack, "b" * 64)  # a new value (random_password replaced, key rotated)
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    plan = terraform(tmp_path, "plan")
    assert (f"terraform_data.{deployment_id} will be replaced due to changes in "
            "replace_triggered_by") in plan


@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs the terraform binary")
def test_terraform_runs_the_stacks_certificate_command_from_the_project_root(tmp_path,
                                                                             private_stacks):
    """The stack's own local-exec block, under the real Terraform: it parses (a shell's
    `${X:-y}` must be written `$${`), runs in the project root (working_dir from
    cdktf.out/stacks/<stack>) and hands the tool the vault's name and the policy's inputs."""
    stack = private_stacks["prod"]
    cert_id, ensured = client_certificate(stack)
    block = json.loads(json.dumps(ensured))
    block.pop("depends_on")
    block["triggers_replace"] = {"vault_id": "literal"}
    step = block["provisioner"][0]["local-exec"]
    step["environment"] = {"KEY_VAULT_NAME": "todo-api-prod-kv"}
    stack_dir = tmp_path / "cdktf.out" / "stacks" / "todo-api-prod"
    stack_dir.mkdir(parents=True)
    (stack_dir / "main.tf.json").write_text(json.dumps(
        {"resource": {"terraform_data": {cert_id: block}}}))
    recorder = tmp_path / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" "$@" > "$RECORDED"\n')
    recorder.chmod(0o755)
    env = {**os.environ, "TODO_API_PYTHON": str(recorder), "RECORDED": str(tmp_path / "args")}
    for args in (["init"], ["apply", "-auto-approve"]):
        result = subprocess.run(["terraform", *args, "-no-color", "-input=false"], cwd=stack_dir,
                                env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
    cwd, *argv = (tmp_path / "args").read_text().splitlines()
    assert Path(cwd) == tmp_path  # the project root
    assert argv == ["-m", "tools.delivery.key_vault", "ensure-certificate",
                    "--vault", "todo-api-prod-kv", "--name", "apim-client-certificate",
                    "--public-secret", "apim-client-certificate-public",
                    "--subject", "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU",
                    "--validity-months", "12", "--runner-ip", "auto"]
