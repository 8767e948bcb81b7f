"""Policy aspects: each one fails synth, naming the resource, on a deliberately broken construct."""

import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import load_environment
from stacks.synth import SynthError, build_app, synth_app

REPO = Path(__file__).resolve().parents[2]
WEB_APP = "todo-api-dev/app-australiaeast/web-app"


@pytest.fixture
def dev_stack(tmp_path):
    """A fresh App holding the real dev stack; tests break one thing, then synth."""
    app = build_app([load_environment("dev")], tmp_path / "out")
    (stack,) = [c for c in app.node.children if c.node.id == "todo-api-dev"]
    return app, stack


def find(stack, path: str):
    return stack.node.find_child(path.split("/")[0]).node.find_child(path.split("/")[1])


def synth_error(app) -> str:
    with pytest.raises(SynthError) as raised:
        synth_app(app)
    return str(raised.value)


def test_the_real_stack_passes_every_policy(dev_stack):
    app, _ = dev_stack
    synth_app(app)


def test_web_app_without_https_only_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "app-australiaeast/web-app").add_override("https_only", False)
    assert synth_error(app) == f"[{WEB_APP}] linux web app: https_only must be True, got False"


def test_web_app_with_http2_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "app-australiaeast/web-app").add_override("site_config.http2_enabled", True)
    assert f"[{WEB_APP}] linux web app: site_config.http2_enabled must be False" in synth_error(app)


def test_web_app_open_by_default_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "app-australiaeast/web-app").add_override(
        "site_config.ip_restriction_default_action", "Allow"
    )
    assert "site_config.ip_restriction_default_action must be 'Deny'" in synth_error(app)


def test_web_app_without_traffic_manager_tag_fails_naming_it(dev_stack):
    app, stack = dev_stack
    from cdktf_cdktf_provider_azurerm.linux_web_app import LinuxWebAppSiteConfigIpRestriction

    find(stack, "app-australiaeast/web-app").site_config.put_ip_restriction(
        [LinuxWebAppSiteConfigIpRestriction(name="x", ip_address="10.0.0.1/32", action="Allow")]
    )
    assert synth_error(app) == (
        f"[{WEB_APP}] linux web app: site_config.ip_restriction must allow AzureTrafficManager"
    )


def test_traffic_manager_probe_without_the_key_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "app-traffic/profile").add_override("monitor_config.path", "/health")
    assert synth_error(app) == (
        "[todo-api-dev/app-traffic/profile] traffic manager profile: "
        "monitor_config.path '/health' lacks the health key"
    )


def test_cosmos_account_with_keys_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "store/account").add_override("local_authentication_disabled", False)
    assert synth_error(app) == (
        "[todo-api-dev/store/account] cosmos db account: local_authentication_disabled "
        "must be True, got False"
    )


def test_cosmos_account_writing_in_several_regions_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "store/account").add_override("multiple_write_locations_enabled", True)
    assert "cosmos db account: multiple_write_locations_enabled must be False" in synth_error(app)


def test_cosmos_account_without_firewall_rules_fails_naming_it(dev_stack):
    app, stack = dev_stack
    find(stack, "store/account").reset_ip_range_filter()
    assert synth_error(app) == (
        "[todo-api-dev/store/account] cosmos db account: public network access needs "
        "ip_range_filter or virtual_network_rule (an empty filter admits every network)"
    )


def test_resource_without_required_tags_fails_naming_it(dev_stack):
    from cdktf_cdktf_provider_azurerm.resource_group import ResourceGroup

    app, stack = dev_stack
    ResourceGroup(stack, "untagged", name="x", location="australiaeast", tags={"project": "p"})
    assert synth_error(app) == (
        "[todo-api-dev/untagged] azurerm_resource_group: missing required tags "
        "environment, managed-by"
    )


def test_policy_failure_in_main_exits_1_and_writes_nothing(tmp_path):
    outdir = tmp_path / "cdktf.out"
    result = subprocess.run(
        [sys.executable, "main.py", "--outdir", str(outdir), "--set", 'tags.project=""'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: synth stopped:\n[todo-api-dev/")
    assert "missing required tags project" in result.stderr
    assert "Traceback" not in result.stderr
    assert not outdir.exists() and list(tmp_path.iterdir()) == []
