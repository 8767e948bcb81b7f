"""Callers as code (auth.mode, stacks/api_identity.py): with "entra" the API's app registration,
its roles and scopes, its service principal, the example client with its federated credential
and role assignments, the app settings, and API Management's token check; with "none" (both
environments' files today) none of it, and the app told AUTH_MODE=none."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app import contract
from stacks import gateway_policy
from stacks.api_identity import issuer, permission_id
from stacks.config import ConfigError, load_environment
from stacks.openapi import operation_permissions, read_openapi
from stacks.permissions import GRAPH_PERMISSIONS, PermissionModel, UnknownResourceType, actions_for
from tests.stacks.conftest import ENTRA, EXTRA_CLIENT, OWNER
from tests.stacks.synthesized import ENVIRONMENTS, blocks, ref

PERMISSIONS = (contract.READ_PERMISSION, contract.WRITE_PERMISSION)
SITES = ("azurerm_linux_web_app", "azurerm_linux_web_app_slot")
AUTH_SETTINGS = ("AUTH_MODE", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_ALLOWED_CLIENT_IDS")
OUTPUTS = ("api_client_id", "api_identifier_uri", "example_client_id", "tenant_id")
ROOT = Path(__file__).resolve().parents[2]
ENGINE_IDENTITY, ENGINE_ID = "azurerm_user_assigned_identity", "load-test-engine-identity"


def drills_on(environment: str) -> bool:
    """Whether the environment's own file turns drills on (prod), so that its load testing
    resource's engines call the API as an identity of the stack."""
    return load_environment(environment, ENTRA[environment]).drills.enabled


@pytest.fixture(params=ENVIRONMENTS)
def entra(request, entra_stacks):
    """(environment, its stack) of the entra synth."""
    return request.param, entra_stacks[request.param]


def by_name(stack: dict, resource_type: str) -> dict[str, tuple[str, dict]]:
    """{display name: (logical id, block)} of the applications."""
    return {b["display_name"]: (i, b) for i, b in blocks(stack, resource_type).items()}


def apps(environment: str, stack: dict) -> tuple[tuple[str, dict], tuple[str, dict]]:
    named = by_name(stack, "azuread_application")
    assert set(named) == {f"todo-api-{environment}-api", f"todo-api-{environment}-api-client"}
    return named[f"todo-api-{environment}-api"], named[f"todo-api-{environment}-api-client"]


def principal_of(stack: dict, app_id: str) -> str:
    [(logical_id, _)] = [(i, b) for i, b in blocks(stack, "azuread_service_principal").items()
                         if b["client_id"] == ref("azuread_application", app_id, "client_id")]
    return logical_id


def policy(stack: dict) -> ET.Element:
    [block] = blocks(stack, "azurerm_api_management_api_policy").values()
    return ET.fromstring(block["xml_content"])


def test_the_api_has_an_app_role_and_a_delegated_scope_per_permission(entra):
    environment, stack = entra
    (_, api), _ = apps(environment, stack)
    roles = {r["value"]: r for r in api["app_role"]}
    scopes = {s["value"]: s for s in api["api"]["oauth2_permission_scope"]}
    assert set(roles) == set(scopes) == set(PERMISSIONS)
    for value in PERMISSIONS:
        role, scope = roles[value], scopes[value]
        assert role["allowed_member_types"] == ["Application"]
        assert scope["type"] == "User" and role["enabled"] is scope["enabled"] is True
        # Entra: a role and a scope of the same value share id, display name and description.
        assert role["id"] == scope["id"] == permission_id(value)
        assert role["display_name"] == scope["admin_consent_display_name"]
        assert role["description"] == scope["admin_consent_description"]
    assert api["api"]["requested_access_token_version"] == 2
    assert api["sign_in_audience"] == "AzureADMyOrg"
    assert api["owners"] == [OWNER]


def test_the_identifier_uri_is_api_colon_client_id_set_by_its_own_resource(entra):
    environment, stack = entra
    (api_id, api), _ = apps(environment, stack)
    [uri] = blocks(stack, "azuread_application_identifier_uri").values()
    assert uri["application_id"] == ref("azuread_application", api_id, "id")
    assert uri["identifier_uri"] == f"api://{ref('azuread_application', api_id, 'client_id')}"
    assert api["lifecycle"] == {"ignore_changes": ["identifier_uris"]}
    assert "identifier_uris" not in api


def test_tokens_for_the_api_are_issued_only_to_assigned_callers(entra):
    environment, stack = entra
    (api_id, _), (client_id, _) = apps(environment, stack)
    principals = blocks(stack, "azuread_service_principal")
    assert principals[principal_of(stack, api_id)]["app_role_assignment_required"] is True
    assert principals[principal_of(stack, client_id)].get("owners") == [OWNER]


def test_the_example_client_has_no_secret_and_trusts_the_environments_github_jobs(entra):
    environment, stack = entra
    _, (client_id, client) = apps(environment, stack)
    assert "password" not in client and not blocks(stack, "azuread_application_password")
    [credential] = blocks(stack, "azuread_application_federated_identity_credential").values()
    assert credential["application_id"] == ref("azuread_application", client_id, "id")
    assert credential["issuer"] == "https://token.actions.githubusercontent.com"
    assert credential["audiences"] == ["api://AzureADTokenExchange"]
    assert credential["subject"] == f"repo:contoso/todo-api:environment:{environment}"


def test_the_example_client_and_the_other_callers_get_every_app_role_of_the_api(entra):
    environment, stack = entra
    (api_id, _), (client_id, _) = apps(environment, stack)
    assigned = {
        (b["app_role_id"], b["principal_object_id"], b["resource_object_id"])
        for b in blocks(stack, "azuread_app_role_assignment").values()
    }
    client = ref("azuread_service_principal", principal_of(stack, client_id), "object_id")
    api = ref("azuread_service_principal", principal_of(stack, api_id), "object_id")
    callers = [client]
    if "auth.client_ids" in ENTRA[environment]:  # looked up by client id, assigned the same
        [(lookup, block)] = stack["data"]["azuread_service_principal"].items()
        assert block["client_id"] == EXTRA_CLIENT
        callers.append(f"${{data.azuread_service_principal.{lookup}.object_id}}")
    else:
        assert "azuread_service_principal" not in stack.get("data", {})
    if drills_on(environment):  # Azure Load Testing's engines: the stack's own identity
        callers.append(ref(ENGINE_IDENTITY, ENGINE_ID, "principal_id"))
    assert assigned == {(permission_id(p), c, api) for p in PERMISSIONS for c in callers}


def test_every_site_accepts_exactly_the_gateways_tokens(entra):
    environment, stack = entra
    (api_id, _), (client_id, _) = apps(environment, stack)
    api_client = ref("azuread_application", api_id, "client_id")
    clients = [ref("azuread_application", client_id, "client_id")]
    clients += [EXTRA_CLIENT] if "auth.client_ids" in ENTRA[environment] else []
    clients += [ref(ENGINE_IDENTITY, ENGINE_ID, "client_id")] if drills_on(environment) else []
    tenant = ref_tenant(stack)["tenant_id"]
    expected = {
        "AUTH_MODE": "entra",
        "AUTH_ISSUER": issuer(tenant),
        "AUTH_AUDIENCE": f"{api_client},api://{api_client}",
        "AUTH_ALLOWED_CLIENT_IDS": ",".join(clients),
    }
    sites = [b for kind in SITES for b in blocks(stack, kind).values()]
    assert len(sites) == 4
    for site in sites:
        assert {k: site["app_settings"][k] for k in AUTH_SETTINGS} == expected
    validate = policy(stack).find("inbound/validate-azure-ad-token")
    assert validate.get("tenant-id") == tenant
    assert [e.text for e in validate.find("audiences")] == expected["AUTH_AUDIENCE"].split(",")
    assert [e.text for e in validate.find("client-application-ids")] == clients


def ref_tenant(stack: dict) -> dict:
    [(logical_id, _)] = stack["data"]["azurerm_client_config"].items()
    return {"tenant_id": f"${{data.azurerm_client_config.{logical_id}.tenant_id}}"}


def test_the_gateway_validates_the_token_before_anything_else(entra):
    _, stack = entra
    root = policy(stack)
    inbound = list(root.find("inbound"))
    assert inbound[0].tag == "validate-azure-ad-token"
    validate = inbound[0]
    assert validate.get("header-name") == contract.AUTHORIZATION_HEADER
    assert validate.get("output-token-variable-name") == gateway_policy.TOKEN_VARIABLE
    # the documented element order: client-application-ids, (backend-...), audiences
    assert [child.tag for child in validate] == ["client-application-ids", "audiences"]
    # the token goes on to the app, which validates it again
    for header in root.iter("set-header"):
        assert header.get("name").lower() != contract.AUTHORIZATION_HEADER.lower()


def test_a_token_that_fails_validation_gets_a_401_problem_with_a_bearer_challenge(entra):
    _, stack = entra
    first = policy(stack).find("on-error/choose/when")
    assert first.get("condition") == '@(context.LastError.Source == "validate-azure-ad-token")'
    answers = list(first.iter("return-response"))
    assert len(answers) == 2  # a token that was sent (invalid_token), none at all (no error code)
    challenges = []
    for answer in answers:
        assert answer.find("set-status").get("code") == "401"
        headers = {h.get("name"): h.find("value").text for h in answer.findall("set-header")}
        assert headers["Content-Type"] == contract.PROBLEM_MEDIA_TYPE
        challenges.append(headers["WWW-Authenticate"])
    realm = f'Bearer realm="{contract.BEARER_REALM}"'
    assert challenges == [f'{realm}, error="invalid_token"', realm]


def test_each_operation_needs_its_permission_in_roles_or_scp_or_gets_a_403(entra):
    _, stack = entra
    choose = list(policy(stack).find("inbound"))[2]
    assert choose.tag == "choose"
    whens = choose.findall("when")
    operations = operation_permissions(read_openapi())
    for permission in PERMISSIONS:
        [when] = [w for w in whens if f'.Contains("{permission}")' in w.get("condition")]
        condition = when.get("condition")
        # an app role (`roles`, one value each) or a delegated scope (`scp`, space-separated)
        claims = '((Jwt)context.Variables["token"]).Claims'
        assert (f'!({claims}.GetValueOrDefault("roles", "").Split(\',\').Contains("{permission}")'
                f' || {claims}.GetValueOrDefault("scp", "").Split(\' \').Contains("{permission}"))'
                ) in condition
        for operation in operations:
            named = (f'context.Operation.Method == "{operation.method}" && '
                     f'context.Operation.UrlTemplate == "{operation.url_template}"')
            assert (named in condition) == (operation.permission == permission), operation
        headers = {h.get("name"): h.find("value").text for h in when.iter("set-header")}
        assert when.find("return-response/set-status").get("code") == "403"
        assert headers["WWW-Authenticate"] == (
            f'Bearer realm="{contract.BEARER_REALM}", error="insufficient_scope",'
            f' scope="{permission}"')
    assert whens[-1].get("condition").startswith("@(!(")  # an unknown operation: refused


def test_the_subscription_key_follows_subscription_required(entra):
    environment, stack = entra
    required = ENTRA[environment].get("auth.subscription_required", True)
    [api] = blocks(stack, "azurerm_api_management_api").values()
    [product] = blocks(stack, "azurerm_api_management_product").values()
    assert api["subscription_required"] is product["subscription_required"] is required
    assert len(blocks(stack, "azurerm_api_management_subscription")) == int(required)


def test_the_stack_outputs_what_a_client_needs_to_get_a_token(entra):
    environment, stack = entra
    (api_id, _), (client_id, _) = apps(environment, stack)
    outputs = {name: stack["output"][name]["value"] for name in OUTPUTS}
    assert outputs == {
        "api_client_id": ref("azuread_application", api_id, "client_id"),
        "api_identifier_uri": f"api://{ref('azuread_application', api_id, 'client_id')}",
        "example_client_id": ref("azuread_application", client_id, "client_id"),
        "tenant_id": ref_tenant(stack)["tenant_id"],
    }
    assert "azuread" in stack["provider"]


def test_mode_none_creates_no_identity_and_tells_the_app_so(synthesized_stacks):
    none = [stack for (environment, _), stack in synthesized_stacks.items()
            if load_environment(environment).auth.mode == "none"]
    assert none  # dev's file
    for stack in none:
        assert not [t for t in stack["resource"] if t.startswith("azuread_")]
        assert "azuread" not in stack["provider"]
        assert not set(OUTPUTS) & set(stack["output"])
        for kind in SITES:
            for site in blocks(stack, kind).values():
                settings = site["app_settings"]
                assert settings["AUTH_MODE"] == contract.AUTH_NONE
                assert not set(AUTH_SETTINGS[1:]) & set(settings)
        for block in blocks(stack, "azurerm_api_management_api_policy").values():
            assert "validate-azure-ad-token" not in block["xml_content"]


def test_prod_ships_with_entra_and_dev_with_none():
    """Production takes Entra ID tokens (after the admin consent above); dev keeps the source's
    Postman collection working with the subscription key alone."""
    assert {e: load_environment(e).auth.mode for e in ENVIRONMENTS} == {
        "dev": "none", "prod": "entra"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"auth.mode": "oauth"}, ("config/dev.toml: auth.mode: Input should be 'none' or 'entra'"
                                 " (got 'oauth')")),
        ({"auth.subscription_required": False},
         ("config/dev.toml: auth.subscription_required: false needs mode = 'entra' (with neither"
         " a key nor a token anyone could call the API)")),
        ({"auth.client_ids": "not-a-guid"},
         "config/dev.toml: auth.client_ids: not an Entra client id (GUID): 'not-a-guid'"),
        ({"auth.owner_object_ids": f"{OWNER},{OWNER.upper()}"},
         f"config/dev.toml: auth.owner_object_ids: listed twice: '{OWNER.upper()}'"),
    ],
)
def test_bad_auth_settings_are_one_line_naming_the_setting(overrides, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError) as error:
        load_environment("dev", overrides)
    assert str(error.value) == message


def test_owners_and_clients_come_from_the_environment_in_ci(monkeypatch):
    environ = {"TODO_API_AUTH_OWNER_OBJECT_IDS_PROD": OWNER.upper(),
               "TODO_API_AUTH_CLIENT_IDS_PROD": f"{EXTRA_CLIENT} "}
    auth = load_environment("prod", environ=environ).auth
    assert (auth.owners, auth.clients) == ((OWNER,), (EXTRA_CLIENT,))


def test_the_gateway_and_the_app_share_names():
    from app.settings import APP_SETTING_NAMES

    assert set(AUTH_SETTINGS) <= set(APP_SETTING_NAMES)
    assert gateway_policy.BEARER_REALM == contract.BEARER_REALM
    assert gateway_policy.AUTHORIZATION_HEADER == contract.AUTHORIZATION_HEADER
    assert {o.permission for o in operation_permissions(read_openapi())} == set(PERMISSIONS)


def test_graph_permissions_are_derived_from_the_azuread_types_the_stacks_hold(entra_stacks):
    types = frozenset(t for env in ENVIRONMENTS for t in entra_stacks[env]["resource"])
    assert {t for t in types if t.startswith("azuread_")} == set(GRAPH_PERMISSIONS)
    model = PermissionModel(types)
    granted = {i.key: model.graph_permissions(i) for i in model.identities}
    assert granted == {
        "plan-dev": ("Application.Read.All",),
        "plan-prod": ("Application.Read.All",),
        "deploy-dev": ("AppRoleAssignment.ReadWrite.All", "Application.Read.All",
                       "Application.ReadWrite.OwnedBy"),
        "deploy-prod": ("AppRoleAssignment.ReadWrite.All", "Application.Read.All",
                        "Application.ReadWrite.OwnedBy"),
    }
    # without an azuread type nobody gets a Graph permission
    none = PermissionModel(types - GRAPH_PERMISSIONS.keys())
    assert {none.graph_permissions(i) for i in none.identities} == {()}
    with pytest.raises(UnknownResourceType):
        actions_for({"azuread_group"})



def test_the_bootstrap_names_whose_graph_permissions_an_admin_consents(entra_stacks,
                                                                         synthesized_bootstrap_file):
    import json

    consent = entra_stacks["bootstrap"]["output"]["graph_consent"]["value"]
    identities = entra_stacks["bootstrap"]["resource"]["azurerm_user_assigned_identity"]
    principal = {b["name"]: ref("azurerm_user_assigned_identity", i, "principal_id")
                 for i, b in identities.items()}
    assert consent == {
        f"todo-api-github-{key}-{env}": {
            "principal_id": principal[f"todo-api-github-{key}-{env}"],
            "permissions": list(permissions)}
        for env in ENVIRONMENTS
        for key, permissions in (
            ("plan", ("Application.Read.All",)),
            ("deploy", ("AppRoleAssignment.ReadWrite.All", "Application.Read.All",
                        "Application.ReadWrite.OwnedBy")))}
    # the shipped files: prod's identities only (dev's mode none needs no Graph permission)
    shipped = json.loads(synthesized_bootstrap_file.read_text(encoding="utf-8"))
    assert set(shipped["output"]["graph_consent"]["value"]) == {
        "todo-api-github-plan-prod", "todo-api-github-deploy-prod"}
