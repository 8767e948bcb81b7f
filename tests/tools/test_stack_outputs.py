"""Reading `terraform output -json` of a deployed stack."""

import json

import pytest

from tests.tools.stack_outputs_data import ENGINE_IDENTITY
from tests.tools.stack_outputs_data import raw_outputs as raw
from tools.cli import CliError
from tools.delivery import stack_outputs


def test_web_apps_pair_name_group_and_https_url_primary_first():
    apps = stack_outputs.parse(raw()).web_apps
    assert [(a.name, a.resource_group, a.url) for a in apps] == [
        ("app-weu", "rg-weu", "https://app-weu.azurewebsites.net"),
        ("app-neu", "rg-neu", "https://app-neu.azurewebsites.net"),
    ]


def test_api_base_joins_gateway_and_api_path():
    outputs = stack_outputs.parse(raw())
    assert outputs.api_base("https://gw.example/") == "https://gw.example/todo"


def test_missing_output_is_named():
    broken = raw()
    del broken["api_path"]
    with pytest.raises(CliError, match="output 'api_path' missing"):
        stack_outputs.parse(broken)


def test_lists_that_do_not_pair_up_are_rejected():
    with pytest.raises(CliError, match="must pair up"):
        stack_outputs.parse(raw(web_app_resource_group_names=["rg-weu"]))


def test_web_apps_take_their_own_resource_groups_whatever_the_order_of_all_groups():
    apps = stack_outputs.parse(raw(resource_group_names=["rg-neu", "rg-weu", "rg-global"])).web_apps
    assert [a.resource_group for a in apps] == ["rg-weu", "rg-neu"]


def test_the_engine_identity_is_read_when_the_stack_names_it():
    outputs = stack_outputs.parse(raw(load_test_engine_identity=ENGINE_IDENTITY))
    assert outputs.load_test_engine_identity == stack_outputs.EngineIdentity(
        ENGINE_IDENTITY["id"], ENGINE_IDENTITY["client_id"])
    assert stack_outputs.parse(raw()).load_test_engine_identity is None
    assert stack_outputs.parse(raw(load_test_engine_identity=None)).load_test_engine_identity is None


@pytest.mark.parametrize("value", [
    "id-todo-dev-load-engines",
    {"id": ENGINE_IDENTITY["id"]},
    {**ENGINE_IDENTITY, "client_id": "not-a-guid"},
    {**ENGINE_IDENTITY, "id": "/subscriptions/0000/resourceGroups/rg/providers/"
     "Microsoft.LoadTestService/loadTests/lt-todo-dev"},
])
def test_a_malformed_engine_identity_is_one_line(value):
    with pytest.raises(CliError, match="output 'load_test_engine_identity' must be") as caught:
        stack_outputs.parse(raw(load_test_engine_identity=value))
    assert "\n" not in str(caught.value)


def test_github_env_masks_the_secrets_and_exports_the_primary(tmp_path, capsys):
    path, env_file = tmp_path / "outputs.json", tmp_path / "github_env"
    path.write_text(json.dumps(raw()))
    assert stack_outputs.main([str(path), "github-env", "--env-file", str(env_file)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "::add-mask::sub-key-0123", "::add-mask::health-key-0123456789",
    ]
    lines = env_file.read_text().splitlines()
    assert "PRIMARY_WEB_APP=app-weu" in lines and "PRIMARY_RESOURCE_GROUP=rg-weu" in lines
    assert "GATEWAY_URL=https://apim-todo-dev.azure-api.net" in lines
