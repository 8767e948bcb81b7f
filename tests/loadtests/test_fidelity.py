"""The `azure` fidelity profile read from a synthesized environment stack (loadtests.fidelity):
the values the stack deploys, a changed stack changing the profile, and one-line errors."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.fidelity import (
    AZURE,
    DEFAULT_STACK,
    LOCAL,
    ProfileError,
    RoutingRules,
    azure_profile,
    local_profile,
    profile,
)

# config/dev.toml's topology: what `python main.py` writes to cdktf.out/stacks/todo-api-dev.
DEV_STACK = ("dev", "single")
POLICY = "azurerm_api_management_api_policy"
TRAFFIC_MANAGER = "azurerm_traffic_manager_profile"


@pytest.fixture(scope="module")
def stack_file(synthesized_stack_files) -> Path:
    return synthesized_stack_files[DEV_STACK]


@pytest.fixture(scope="module")
def stack(stack_file) -> dict:
    return json.loads(stack_file.read_text(encoding="utf-8"))


@pytest.fixture
def write_stack(stack, tmp_path) -> Callable[[Callable[[dict], None]], Path]:
    """Write a changed copy of the stack (as stacks/todo-api-dev/cdk.tf.json under tmp_path)."""

    def write(change: Callable[[dict], None]) -> Path:
        changed = copy.deepcopy(stack)
        change(changed)
        path = tmp_path / "stacks" / DEFAULT_STACK / "cdk.tf.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(changed), encoding="utf-8")
        return path

    return write


def only_block(stack: dict, kind: str) -> dict:
    (block,) = stack["resource"][kind].values()
    return block


def edit_policy(stack: dict, old: str, new: str) -> None:
    """Replace `old` (present exactly once) in the API policy's XML."""
    policy = only_block(stack, POLICY)
    assert policy["xml_content"].count(old) == 1, old
    policy["xml_content"] = policy["xml_content"].replace(old, new)


def sub_policy(pattern: str, replacement: str):
    """A stack change: the API policy's XML with `pattern` (a regex, across lines) replaced."""

    def change(stack: dict) -> None:
        policy = only_block(stack, POLICY)
        policy["xml_content"] = re.sub(pattern, replacement, policy["xml_content"], flags=re.DOTALL)

    return change


def profile_error(path: Path) -> str:
    with pytest.raises(ProfileError) as raised:
        azure_profile(path)
    message = str(raised.value)
    assert "\n" not in message, message
    return message


# -- the stack as synthesized -----------------------------------------------------------------


def test_the_gateway_rules_are_the_api_policy_of_the_stack(stack_file):
    gateway = azure_profile(stack_file).gateway
    assert gateway.retries == 1
    assert gateway.retry_statuses == (502, 503)
    assert gateway.retry_safe_methods == ("GET", "HEAD", "OPTIONS")
    assert gateway.idempotency_header == "Idempotency-Key"
    assert gateway.forward_timeout_s == 20
    assert gateway.again_after_connection_failure is True
    assert gateway.again_after_timeout == "retry-safe"


def test_the_routing_rules_are_the_traffic_manager_profile_of_the_stack(stack_file):
    routing = azure_profile(stack_file).routing
    assert routing == RoutingRules(
        probe_interval_s=10,
        probe_timeout_s=5,
        tolerated_failures=1,
        dns_ttl_s=10,
        expected_statuses=((200, 299),),
    )
    assert routing.failover_s == 30


def test_the_profile_names_its_source_and_describes_itself_as_plain_data(stack_file):
    azure = azure_profile(stack_file)
    assert (azure.name, azure.source) == (AZURE, str(stack_file))
    described = json.loads(json.dumps(azure.describe()))
    assert described["gateway"]["retry_statuses"] == [502, 503]
    assert described["routing"]["dns_ttl_s"] == 10


def test_profile_by_name_reads_the_default_stack_under_the_stacks_dir(stack_file):
    assert DEFAULT_STACK == stack_file.parent.name
    assert profile(AZURE, stack_file.parent.parent) == azure_profile(stack_file)


# -- a changed stack --------------------------------------------------------------------------


def test_changing_the_stack_changes_the_profile(write_stack):
    def change(stack: dict) -> None:
        traffic_manager = only_block(stack, TRAFFIC_MANAGER)
        traffic_manager["monitor_config"]["tolerated_number_of_failures"] = 3
        traffic_manager["dns_config"]["ttl"] = 60
        edit_policy(stack, 'count="1"', 'count="2"')
        edit_policy(stack, 'timeout="20"', 'timeout="7"')
        edit_policy(
            stack,
            "StatusCode == 503)",
            "StatusCode == 503 || context.Response.StatusCode == 504)",
        )

    changed = azure_profile(write_stack(change))
    assert changed.routing.tolerated_failures == 3
    assert changed.routing.dns_ttl_s == 60
    assert changed.routing.failover_s == (3 + 1) * 10 + 60
    assert changed.gateway.retries == 2
    assert changed.gateway.forward_timeout_s == 7
    assert changed.gateway.retry_statuses == (502, 503, 504)


def test_the_retry_safe_rule_is_read_from_the_policy(write_stack):
    def change(stack: dict) -> None:
        edit_policy(stack, "&quot;HEAD&quot;, &quot;OPTIONS&quot;", "&quot;PUT&quot;")
        edit_policy(
            stack, "ContainsKey(&quot;Idempotency-Key&quot;)", "ContainsKey(&quot;X-Op&quot;)"
        )

    gateway = azure_profile(write_stack(change)).gateway
    assert (gateway.retry_safe_methods, gateway.idempotency_header) == (("GET", "PUT"), "X-Op")


def test_a_retry_condition_that_no_longer_asks_for_retry_safe_changes_the_profile(
    stack_file, write_stack
):
    """A stack whose retry applies to every method (keyless writes too) yields another profile:
    the drill then sends keyless writes again after those statuses too."""
    retry_safe_and = (
        "context.Variables.GetValueOrDefault&lt;bool&gt;(&quot;retry-safe&quot;) &amp;&amp; !"
    )

    def change(stack: dict) -> None:
        edit_policy(stack, retry_safe_and, "!")

    assert azure_profile(stack_file).gateway.retry_only_retry_safe is True
    assert azure_profile(write_stack(change)).gateway.retry_only_retry_safe is False


def test_a_timeout_sent_again_whatever_the_method_reads_as_all(write_stack):
    retry_safe_timeout = (
        "(context.LastError.Reason == &quot;Timeout&quot; &amp;&amp; "
        "context.Variables.GetValueOrDefault&lt;bool&gt;(&quot;retry-safe&quot;))"
    )

    def change(stack: dict) -> None:
        edit_policy(stack, retry_safe_timeout, "context.LastError.Reason == &quot;Timeout&quot;")

    assert azure_profile(write_stack(change)).gateway.again_after_timeout == "all"


def test_an_on_error_without_a_fallback_sends_nothing_again(write_stack):
    change = sub_policy(r"<on-error>.*</on-error>", "<on-error><base /></on-error>")
    gateway = azure_profile(write_stack(change)).gateway
    assert gateway.again_after_connection_failure is False
    assert gateway.again_after_timeout == "none"


def test_expected_statuses_honour_ranges_and_single_codes(write_stack):
    def change(stack: dict) -> None:
        monitor = only_block(stack, TRAFFIC_MANAGER)["monitor_config"]
        monitor["expected_status_code_ranges"] = ["200-299", "301"]

    routing = azure_profile(write_stack(change)).routing
    assert routing.expected_statuses == ((200, 299), (301, 301))
    assert [routing.expected(s) for s in (200, 250, 299, 301)] == [True] * 4
    assert [routing.expected(s) for s in (199, 300, 302, 404, 503, None)] == [False] * 6


# -- inputs the profile cannot be built from --------------------------------------------------


def test_a_missing_stack_file_names_the_file(tmp_path):
    missing = tmp_path / "stacks" / DEFAULT_STACK / "cdk.tf.json"
    message = profile_error(missing)
    assert str(missing) in message
    assert "python main.py" in message


def test_a_stack_file_that_is_not_json_names_the_file(tmp_path):
    broken = tmp_path / "cdk.tf.json"
    broken.write_text('{"resource": {', encoding="utf-8")
    message = profile_error(broken)
    assert str(broken) in message
    assert "not JSON" in message


def test_a_stack_file_whose_json_is_not_an_object_is_a_profile_error(tmp_path):
    """JSON that is no object (here a list) is a one-line ProfileError naming the file."""
    odd = tmp_path / "cdk.tf.json"
    odd.write_text("[]", encoding="utf-8")
    assert str(odd) in profile_error(odd)


def test_a_stack_without_a_traffic_manager_profile_says_so(write_stack):
    path = write_stack(lambda stack: stack["resource"].pop(TRAFFIC_MANAGER))
    message = profile_error(path)
    assert str(path) in message
    assert f"0 {TRAFFIC_MANAGER}" in message


def test_a_stack_with_two_api_policies_says_so(write_stack):
    def change(stack: dict) -> None:
        policies = stack["resource"][POLICY]
        policies["second-policy"] = copy.deepcopy(next(iter(policies.values())))

    path = write_stack(change)
    message = profile_error(path)
    assert str(path) in message
    assert f"2 {POLICY}" in message


def test_a_policy_without_a_retry_says_what_is_missing(write_stack):
    change = sub_policy(r"<retry .*</retry>", '<forward-request timeout="20" />')
    message = profile_error(write_stack(change))
    assert "<retry>" in message


def test_a_policy_that_is_not_xml_says_so(write_stack):
    message = profile_error(write_stack(lambda stack: edit_policy(stack, "</backend>", "")))
    assert "not XML" in message


def test_a_traffic_manager_profile_without_a_ttl_says_what_is_missing(write_stack):
    path = write_stack(lambda stack: only_block(stack, TRAFFIC_MANAGER)["dns_config"].pop("ttl"))
    message = profile_error(path)
    assert "Traffic Manager" in message
    assert "ttl" in message


# -- profiles by name -------------------------------------------------------------------------


def test_the_local_profile_needs_no_stack_file(tmp_path):
    local = profile(LOCAL, tmp_path / "no-stacks-here")
    assert local == local_profile()
    assert (local.name, local.gateway, local.routing) == (LOCAL, None, None)


def test_an_unknown_profile_name_is_an_error_naming_it(tmp_path):
    with pytest.raises(ProfileError) as raised:
        profile("gcp", tmp_path)
    message = str(raised.value)
    assert "'gcp'" in message
    assert LOCAL in message and AZURE in message
