"""Operations in the synthesized stacks: the action group, the metric alerts (what each watches,
its threshold and what its description says to look at first), the store's alerts on a
stand-in account id, and the failover workbook with its outputs."""

import json
import uuid

import pytest

from stacks.config import ConfigError, load_environment
from tests.stacks.synthesized import ENVIRONMENTS, TOPOLOGIES, blocks, only, ref

ALL = [(env, topology) for env in ENVIRONMENTS for topology in TOPOLOGIES]
STAND_IN_ACCOUNT = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.DocumentDB/databaseAccounts/stand-in"
)


@pytest.fixture(params=ALL, ids=[f"{e}-{t}" for e, t in ALL])
def case(request, synthesized_stacks):
    environment, topology = request.param
    return topology, synthesized_stacks[(environment, topology)]


def _alerts(stack) -> dict[str, dict]:
    """{metric name + scope resource type: alert block}, e.g. 'HealthCheckStatus@linux_web_app'."""
    found = {}
    for alert in blocks(stack, "azurerm_monitor_metric_alert").values():
        (criteria,) = alert["criteria"]
        (scope,) = alert["scopes"]
        kind = scope.split(".")[0].removeprefix("${azurerm_")
        found.setdefault(f"{criteria['metric_name']}@{kind}", []).append(alert)
    return found


def test_one_action_group_without_receivers_by_default(case):
    _, stack = case
    _, group = only(stack, "azurerm_monitor_action_group")
    assert len(group["short_name"]) <= 12
    assert "email_receiver" not in group


def test_every_alert_notifies_the_action_group_and_says_what_to_look_at(case):
    _, stack = case
    group_id, _ = only(stack, "azurerm_monitor_action_group")
    for alert in blocks(stack, "azurerm_monitor_metric_alert").values():
        assert alert["action"] == [
            {"action_group_id": ref("azurerm_monitor_action_group", group_id, "id")}
        ]
        assert "Look first at:" in alert["description"]
        assert alert["auto_mitigate"] is True
        # Cosmos DB computes ServiceAvailability hourly: that alert looks at one hour, every 5 min.
        hourly = alert["criteria"][0]["metric_name"] == "ServiceAvailability"
        expected = ("PT1H", "PT5M") if hourly else ("PT5M", "PT1M")
        assert (alert["window_size"], alert["frequency"]) == expected


def test_alerts_cover_traffic_manager_gateways_and_each_region(case):
    topology, stack = case
    gateways = 2 if topology == "dual" else 1
    alerts = _alerts(stack)
    assert {name: len(found) for name, found in alerts.items()} == {
        "ProbeAgentCurrentEndpointStateByProfileResourceId@traffic_manager_profile": 1
        + (topology == "dual"),
        "Requests@api_management": gateways,
        "HealthCheckStatus@linux_web_app": 2,
        "ServiceAvailability@cosmosdb_account": 1,
        "TotalRequests@cosmosdb_account": 1,
    }


# Aggregations Microsoft documents for Traffic Manager's metrics: Maximum (the supported-metrics
# table, "Supported metrics for Microsoft.Network/trafficManagerProfiles") and Average
# ("Traffic Manager metrics and alerts"). Minimum is documented for neither.
TRAFFIC_MANAGER_AGGREGATIONS = ("Average", "Maximum")


def _traffic_manager_alerts(stack) -> list[dict]:
    return _alerts(stack)[
        "ProbeAgentCurrentEndpointStateByProfileResourceId@traffic_manager_profile"
    ]


def test_traffic_manager_alert_uses_an_aggregation_the_metric_documents(case):
    _, stack = case
    for alert in _traffic_manager_alerts(stack):
        (criteria,) = alert["criteria"]
        assert criteria["aggregation"] in TRAFFIC_MANAGER_AGGREGATIONS


def test_traffic_manager_alert_fires_per_endpoint_when_most_probes_say_down(case):
    """Microsoft's rule for this metric: alert when the average falls below 0.5, i.e. more than
    half of the probe results in the window were down (one probe location failing is not an
    outage)."""
    _, stack = case
    for alert in _traffic_manager_alerts(stack):
        (criteria,) = alert["criteria"]
        assert criteria["metric_namespace"] == "Microsoft.Network/trafficManagerProfiles"
        assert (criteria["aggregation"], criteria["operator"], criteria["threshold"]) == (
            "Average", "LessThan", 0.5,
        )
        assert criteria["dimension"] == [{"name": "EndpointName", "operator": "Include",
                                          "values": ["*"]}]


def test_gateway_alert_counts_5xx_answers(case):
    _, stack = case
    for alert in _alerts(stack)["Requests@api_management"]:
        (criteria,) = alert["criteria"]
        assert criteria["metric_namespace"] == "Microsoft.ApiManagement/service"
        assert (criteria["aggregation"], criteria["operator"], criteria["threshold"]) == (
            "Total", "GreaterThan", 10,
        )
        assert criteria["dimension"] == [
            {"name": "GatewayResponseCodeCategory", "operator": "Include", "values": ["5xx"]}
        ]


def test_health_check_alert_per_web_app(case):
    _, stack = case
    scopes = set()
    for alert in _alerts(stack)["HealthCheckStatus@linux_web_app"]:
        (criteria,) = alert["criteria"]
        assert criteria["metric_namespace"] == "Microsoft.Web/sites"
        assert (criteria["operator"], criteria["threshold"]) == ("LessThan", 100)
        scopes.update(alert["scopes"])
    assert scopes == {ref("azurerm_linux_web_app", i, "id")
                      for i in blocks(stack, "azurerm_linux_web_app")}


def test_no_alert_carries_the_health_key(case):
    _, stack = case
    alerts = json.dumps(blocks(stack, "azurerm_monitor_metric_alert"))
    assert "random_password" not in alerts and "/health/{key}" in alerts


def test_workbook_shows_each_region_and_the_endpoint_status(case):
    topology, stack = case
    _, workbook = only(stack, "azurerm_application_insights_workbook")
    uuid.UUID(workbook["name"])  # workbook names are UUIDs
    document = json.loads(workbook["data_json"])
    assert document["version"] == "Notebook/1.0"
    items = {item["name"]: item["content"] for item in document["items"]}
    (time_range,) = items["parameters"]["parameters"]
    assert time_range["name"] == "TimeRange" and time_range["typeSettings"]["allowCustom"]
    for name in ("requests", "failures", "latency"):
        assert "by bin(TimeGenerated, {TimeRange:grain}), Region = AppRoleInstance" in (
            items[name]["query"]
        )
    apps = {ref("azurerm_linux_web_app", i, "id") for i in blocks(stack, "azurerm_linux_web_app")}
    assert set(items["platform-requests"]["resourceIds"]) == apps
    profiles = blocks(stack, "azurerm_traffic_manager_profile")
    endpoint_items = [content for name, content in items.items() if name.startswith("endpoints")]
    assert len(endpoint_items) == len(profiles) == 1 + (topology == "dual")
    for content in endpoint_items:
        (metric,) = content["metrics"]
        assert metric["metric"].endswith("--ProbeAgentCurrentEndpointStateByProfileResourceId")
        assert metric["splitBy"] == "EndpointName"


def test_outputs_name_the_workbook_and_its_portal_link(case):
    _, stack = case
    workbook_id, _ = only(stack, "azurerm_application_insights_workbook")
    outputs = stack["output"]
    expected = ref("azurerm_application_insights_workbook", workbook_id, "id")
    assert outputs["workbook_id"]["value"] == expected
    assert outputs["workbook_url"]["value"] == (
        f"https://portal.azure.com/#@/resource{expected}/workbook"
    )


def test_receivers_come_from_configuration(tmp_path):
    from stacks.synth import synthesize

    config = load_environment(
        "dev", {"alerts.email_receivers": "ops@contoso.com, oncall@contoso.com"}
    )
    (path,) = synthesize([config], tmp_path / "out")
    _, group = only(json.loads(path.read_text()), "azurerm_monitor_action_group")
    assert [r["email_address"] for r in group["email_receiver"]] == [
        "ops@contoso.com", "oncall@contoso.com",
    ]
    assert all(r["use_common_alert_schema"] for r in group["email_receiver"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"alerts.email_receivers": "not-an-address"}, "alerts.email_receivers.0"),
        ({"alerts.email_receivers": "a@contoso.com,A@contoso.com"}, "listed twice"),
        ({"alerts.window_minutes": 7}, "alerts.window_minutes"),
        ({"alerts.health_check_percent": 0}, "alerts.health_check_percent"),
        ({"alerts.store_availability_percent": 101}, "alerts.store_availability_percent"),
    ],
)
def test_bad_alert_settings_are_one_line_naming_the_field(override, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_environment("dev", override)
    assert "\n" not in str(raised.value)


def test_store_alerts_on_a_stand_in_account():
    """The store's Cosmos DB account is not in these stacks yet: the alerts are built against a
    resource id given as a token (a variable here), as the stack will pass the account's id."""
    from cdktf import App, TerraformStack, TerraformVariable
    from cdktf_cdktf_provider_azurerm.provider import AzurermProvider

    from stacks.alerts import OperationsAlerts
    from stacks.naming import Names

    app = App(stack_traces=False)
    stack = TerraformStack(app, "store-alerts")
    AzurermProvider(stack, "azurerm", features=[{}])
    account = TerraformVariable(stack, "account_id", type="string", default=STAND_IN_ACCOUNT)
    alerts = OperationsAlerts(
        stack, "alerts", names=Names("todo-api", "dev"), resource_group_name="rg",
        settings=load_environment("dev").alerts, tags={"environment": "dev"},
    )
    alerts.store(account.string_value)
    from cdktf import Testing

    synthesized = json.loads(Testing.synth(stack))
    found = {
        alert["criteria"][0]["metric_name"]: alert
        for alert in blocks(synthesized, "azurerm_monitor_metric_alert").values()
    }
    assert set(found) == {"ServiceAvailability", "TotalRequests"}
    availability, throttled = found["ServiceAvailability"], found["TotalRequests"]
    assert availability["scopes"] == throttled["scopes"] == ["${var.account_id}"]
    for alert in found.values():
        assert alert["criteria"][0]["metric_namespace"] == "Microsoft.DocumentDB/databaseAccounts"
        assert "Look first at:" in alert["description"]
    assert availability["window_size"] == "PT1H"  # the metric's grain
    assert (availability["criteria"][0]["operator"], availability["criteria"][0]["threshold"]) == (
        "LessThan", 99.9,
    )
    assert throttled["criteria"][0]["dimension"] == [
        {"name": "StatusCode", "operator": "Include", "values": ["429"]}
    ]
    assert throttled["criteria"][0]["threshold"] == 10
