"""Settings: parsed once into a frozen object; a bad value names its variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app import settings as app_settings
from app.settings import SettingsError, load_settings
from tests.app import certs


def error_for(environment: dict[str, str], **changes: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings({**environment, **changes})
    return caught.value


def test_settings_are_frozen(settings):
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.site_name = "elsewhere"


def test_defaults(environment):
    loaded = load_settings(environment)
    assert loaded.environment == "production"
    assert loaded.client_cert_header == "X-ARR-ClientCert"
    assert (loaded.host, loaded.port, loaded.web_concurrency) == ("0.0.0.0", 8000, 1)


def test_production_is_the_default_environment(environment):
    without = {k: v for k, v in environment.items() if k != "APP_ENV"}
    assert load_settings(without).environment == "production"


@pytest.mark.parametrize(
    "variable",
    ["HEALTH_CHECK_KEY", "CLIENT_CERT_SUBJECT", "CLIENT_CERT_ISSUER", "CLIENT_CERT_THUMBPRINTS"],
)
def test_production_refuses_a_missing_required_setting(environment, variable):
    without = {k: v for k, v in environment.items() if k != variable}
    assert error_for(without).name == variable


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_ENV", "staging"),
        ("WEBSITE_SITE_NAME", "région-est"),
        ("WEBSITE_SITE_NAME", "two\nlines"),
        ("WEBSITE_SLOT_NAME", "créneau"),
        ("WEBSITE_SLOT_NAME", "two\nlines"),
        ("CLIENT_CERT_VALIDATION", "maybe"),
        ("CLIENT_CERT_VALIDATION", "off"),
        ("HEALTH_CHECK_KEY", "short"),
        ("HEALTH_CHECK_KEY", "has/a/slash/in/it/0123"),
        ("CLIENT_CERT_HEADER", "X Bad Header"),
        ("CLIENT_CERT_SUBJECT", "CN"),
        ("CLIENT_CERT_SUBJECT", "XYZ=unknown type"),
        ("CLIENT_CERT_ISSUER", "=Contoso"),
        ("CLIENT_CERT_THUMBPRINTS", "abc"),
        ("CLIENT_CERT_THUMBPRINTS", "g" * 40),
        ("CLIENT_CERT_THUMBPRINTS", ","),
        ("CLIENT_CERT_CA", "/nonexistent/ca.pem"),
        ("PORT", "0"),
        ("PORT", "http"),
        ("PORT", "70000"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "-1"),
    ],
)
def test_a_bad_value_names_its_variable(environment, variable, value):
    error = error_for(environment, **{variable: value})
    assert error.name == variable
    assert str(error).startswith(f"{variable}: ")


def test_ca_file_that_is_not_pem_names_the_variable(environment, tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    assert error_for(environment, CLIENT_CERT_CA=str(not_pem)).name == "CLIENT_CERT_CA"


def test_validation_off_is_allowed_only_in_development(environment):
    loaded = load_settings(
        {**environment, "APP_ENV": "development", "CLIENT_CERT_VALIDATION": "off"}
    )
    assert loaded.client_certificate is None


def test_development_without_certificate_settings_needs_validation_off(environment):
    bare = {"APP_ENV": "development"}
    assert error_for(bare).name == "CLIENT_CERT_SUBJECT"
    assert load_settings({**bare, "CLIENT_CERT_VALIDATION": "off"}).health_check_key is None


def test_thumbprints_are_normalised_and_several_allowed(environment, client_certificate):
    sha1 = certs.sha1(client_certificate)
    sha256 = certs.sha256(client_certificate)
    spaced = " ".join(sha1[i : i + 2] for i in range(0, 40, 2)).upper()
    loaded = load_settings({**environment, "CLIENT_CERT_THUMBPRINTS": f"{spaced} , {sha256},"})
    assert loaded.client_certificate.thumbprints == {sha1, sha256}


def test_values_are_trimmed(environment):
    loaded = load_settings({**environment, "WEBSITE_SITE_NAME": "  todo-api-eastus  "})
    assert loaded.site_name == "todo-api-eastus"


@pytest.mark.parametrize(
    ("slot", "site_name"),
    [
        (None, "todo-api-eastus"),
        ("", "todo-api-eastus"),
        ("Production", "todo-api-eastus"),  # what App Service sets in the production slot
        ("PRODUCTION", "todo-api-eastus"),
        ("staging", "todo-api-eastus-staging"),
        ("Staging", "todo-api-eastus-staging"),  # as the slot's host name: lowercase
        (" blue ", "todo-api-eastus-blue"),
    ],
)
def test_a_slot_other_than_production_adds_its_name_to_the_site_name(environment, slot, site_name):
    environment = {**environment, "WEBSITE_SITE_NAME": "todo-api-eastus"}
    if slot is not None:
        environment["WEBSITE_SLOT_NAME"] = slot
    assert load_settings(environment).site_name == site_name


def test_a_slot_without_a_site_name_follows_the_default(environment):
    without = {k: v for k, v in environment.items() if k != "WEBSITE_SITE_NAME"}
    assert load_settings({**without, "WEBSITE_SLOT_NAME": "staging"}).site_name == (
        "localhost-staging"
    )


def test_setting_names_list_every_variable_the_module_reads():
    source = Path(app_settings.__file__).read_text()
    constants = {
        name
        for name, value in vars(app_settings).items()
        if isinstance(value, str) and name == value and name.isupper()
    }
    assert set(app_settings.APP_SETTING_NAMES) == constants
    assert len(app_settings.APP_SETTING_NAMES) == 30  # 20 + 4 telemetry + 6 bearer tokens
    for name in app_settings.APP_SETTING_NAMES:
        assert f'"{name}"' in source


def test_idempotency_keys_are_kept_a_day_unless_set(environment):
    assert load_settings(environment).idempotency_key_expiry_seconds == 24 * 60 * 60
    week = load_settings({**environment, "IDEMPOTENCY_KEY_EXPIRY_SECONDS": "604800"})
    assert week.idempotency_key_expiry_seconds == 604800


@pytest.mark.parametrize("value", ["59", "2592001", "1.5", "a day", "-60"])
def test_an_idempotency_key_expiry_out_of_range_is_refused(environment, value):
    with pytest.raises(SettingsError, match="^IDEMPOTENCY_KEY_EXPIRY_SECONDS: must be a whole"):
        load_settings({**environment, "IDEMPOTENCY_KEY_EXPIRY_SECONDS": value})


# -- the store -----------------------------------------------------------------------------------

SECRET_KEY = "c2VjcmV0LWtleS1uZXZlci1pbi1hLWxvZw=="
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=todoapi;"
    f"AccountKey={SECRET_KEY};TableEndpoint=http://127.0.0.1:10002/todoapi;"
)


def test_production_refuses_to_start_without_an_explicit_store(environment):
    without = {k: v for k, v in environment.items() if k != "STORE"}
    error = error_for(without)
    assert str(error) == "STORE: is required in production (table or memory)"


def test_development_defaults_to_the_memory_store():
    loaded = load_settings({"APP_ENV": "development", "CLIENT_CERT_VALIDATION": "off"})
    assert loaded.store.kind == "memory"


def test_table_store_by_endpoint_uses_the_default_table_name(environment):
    endpoint = "https://todo-dev-cosmos.table.cosmos.azure.com:443/"
    loaded = load_settings(
        {**environment, "STORE": "table", "TABLE_ENDPOINT": endpoint, "AZURE_CLIENT_ID": "abc"}
    )
    assert loaded.store == app_settings.StoreSettings(
        kind="table", table_name="TodoItems", endpoint=endpoint, client_id="abc"
    )


def test_table_store_without_a_way_to_the_account_names_the_endpoint(environment):
    error = error_for(environment, STORE="table")
    assert error.name == "TABLE_ENDPOINT"
    assert "TABLE_CONNECTION_STRING" in str(error)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TABLE_ENDPOINT", "http://todo.table.cosmos.azure.com/"),
        ("TABLE_ENDPOINT", "todo.table.cosmos.azure.com"),
        ("TABLE_ENDPOINT", "https:///no-host"),
        ("TABLE_NAME", "to"),
        ("TABLE_NAME", "1Todo"),
        ("TABLE_NAME", "Todo-Items"),
        ("TABLE_NAME", "tables"),
        ("TABLE_NAME", "T" * 64),
    ],
)
def test_a_bad_table_setting_names_its_variable(environment, variable, value):
    changes = {"STORE": "table", "TABLE_ENDPOINT": "https://a.table.cosmos.azure.com/"}
    error = error_for(environment, **{**changes, variable: value})
    assert error.name == variable


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("just-a-key", "must be Name=value pairs joined by ';'"),
        (f"AccountKey={SECRET_KEY}", "has no AccountName"),
        ("AccountName=todoapi;TableEndpoint=http://127.0.0.1:1/x", "has no AccountKey"),
        ("AccountName=todoapi;AccountKey=not base64!", "AccountKey is not base64"),
    ],
)
def test_a_bad_connection_string_is_named_and_never_echoed(environment, text, problem):
    error = error_for(environment, STORE="table", TABLE_CONNECTION_STRING=text)
    assert error.name == "TABLE_CONNECTION_STRING"
    assert problem in str(error)
    assert "todoapi" not in str(error) and SECRET_KEY not in str(error)


def test_endpoint_and_connection_string_together_are_refused(environment):
    error = error_for(
        environment,
        STORE="table",
        TABLE_ENDPOINT="https://a.table.cosmos.azure.com/",
        TABLE_CONNECTION_STRING=CONNECTION_STRING,
    )
    assert error.name == "TABLE_CONNECTION_STRING"


def test_the_connection_string_never_appears_in_the_settings_repr(environment):
    loaded = load_settings(
        {**environment, "STORE": "table", "TABLE_CONNECTION_STRING": CONNECTION_STRING}
    )
    assert loaded.store.connection_string == CONNECTION_STRING
    assert SECRET_KEY not in repr(loaded)


def test_the_memory_store_refuses_more_than_one_worker(environment):
    error = error_for(environment, STORE="memory", WEB_CONCURRENCY="2")
    assert error.name == "WEB_CONCURRENCY"
    assert "STORE=memory" in str(error)
    assert (
        load_settings(
            {
                **environment,
                "STORE": "table",
                "TABLE_CONNECTION_STRING": CONNECTION_STRING,
                "WEB_CONCURRENCY": "4",
            }
        ).web_concurrency
        == 4
    )


# -- bearer tokens -------------------------------------------------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "5d2c7b1a-8e4f-4c3d-9b2a-1f0e6d5c4b3a"
V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
ENTRA = {
    "AUTH_MODE": "entra",
    "AUTH_ISSUER": V2_ISSUER,
    "AUTH_AUDIENCE": f"api://todo-api, {CLIENT}",
}


@pytest.mark.parametrize("app_env", ["production", "development"])
def test_bearer_tokens_are_off_by_default_in_every_environment(environment, app_env):
    auth = load_settings({**environment, "APP_ENV": app_env}).auth
    assert auth == app_settings.AuthSettings() and auth.mode == "none" and not auth.enabled


def test_auth_mode_none_reads_no_other_auth_setting(environment):
    leftovers = {"AUTH_ISSUER": "not a URL", "AUTH_TENANT_ID": "not a GUID", "AUTH_MODE": "None"}
    assert load_settings({**environment, **leftovers}).auth == app_settings.AuthSettings()


def test_an_entra_v2_issuer_gives_the_tenant_and_the_openid_configuration_url(environment):
    auth = load_settings({**environment, **ENTRA}).auth
    assert auth.enabled
    assert auth.audiences == ("api://todo-api", CLIENT)
    assert auth.openid_config_url == f"{V2_ISSUER}/.well-known/openid-configuration"
    assert auth.tenant_id == TENANT
    assert auth.allowed_client_ids == frozenset()


def test_an_entra_v1_issuer_names_its_tenant_too(environment):
    v1 = {
        **ENTRA,
        "AUTH_ISSUER": f"https://sts.windows.net/{TENANT.upper()}/",
        "AUTH_OPENID_CONFIG_URL": (
            f"https://login.microsoftonline.com/{TENANT}/.well-known/openid-configuration"
        ),
    }
    auth = load_settings({**environment, **v1}).auth
    assert auth.tenant_id == TENANT
    assert auth.openid_config_url == v1["AUTH_OPENID_CONFIG_URL"]


def test_an_issuer_naming_no_tenant_checks_the_tenant_only_when_set(environment):
    other = {**ENTRA, "AUTH_ISSUER": "https://issuer.example/tenant-a"}
    assert load_settings({**environment, **other}).auth.tenant_id is None
    named = {**other, "AUTH_TENANT_ID": TENANT.upper()}
    assert load_settings({**environment, **named}).auth.tenant_id == TENANT


def test_allowed_client_ids_are_kept_in_lowercase(environment):
    clients = {**ENTRA, "AUTH_ALLOWED_CLIENT_IDS": f" {CLIENT.upper()} ,,{TENANT}"}
    assert load_settings({**environment, **clients}).auth.allowed_client_ids == {CLIENT, TENANT}


def test_a_loopback_issuer_may_be_plain_http(environment):
    local = {**ENTRA, "AUTH_ISSUER": "http://127.0.0.1:8400/local/v2.0"}
    auth = load_settings({**environment, **local}).auth
    assert auth.openid_config_url == (
        "http://127.0.0.1:8400/local/v2.0/.well-known/openid-configuration"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTH_MODE", "oauth"),
        ("AUTH_ISSUER", ""),
        ("AUTH_ISSUER", "login.microsoftonline.com/tenant/v2.0"),
        ("AUTH_ISSUER", "http://login.microsoftonline.com/tenant/v2.0"),
        ("AUTH_ISSUER", "https://issuer.example/v2.0?tenant=a"),
        ("AUTH_ISSUER", "https:///v2.0"),
        ("AUTH_AUDIENCE", ""),
        ("AUTH_AUDIENCE", " , ,"),
        ("AUTH_OPENID_CONFIG_URL", "ftp://login.microsoftonline.com/x"),
        ("AUTH_OPENID_CONFIG_URL", "http://login.example/.well-known/openid-configuration"),
        ("AUTH_OPENID_CONFIG_URL", "https://login.example/config#fragment"),
        ("AUTH_TENANT_ID", "contoso.onmicrosoft.com"),
        ("AUTH_TENANT_ID", "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"),  # not the issuer's tenant
        ("AUTH_ALLOWED_CLIENT_IDS", "todo-client"),
        ("AUTH_ALLOWED_CLIENT_IDS", f"{CLIENT}, 1234"),
    ],
)
def test_a_bad_auth_value_names_its_variable(environment, variable, value):
    error = error_for({**environment, **ENTRA}, **{variable: value})
    assert error.name == variable
    assert str(error).startswith(f"{variable}: ")


def test_a_tenant_that_contradicts_the_issuer_says_which_tenant_the_issuer_names(environment):
    other = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    error = error_for({**environment, **ENTRA}, AUTH_TENANT_ID=other)
    assert str(error) == f"AUTH_TENANT_ID: differs from the tenant in AUTH_ISSUER ({TENANT})"


def test_entra_without_an_issuer_says_what_is_missing(environment):
    error = error_for({**environment, "AUTH_MODE": "Entra"})
    assert str(error) == "AUTH_ISSUER: is required with AUTH_MODE=entra"
