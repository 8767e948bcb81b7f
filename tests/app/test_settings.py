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


def test_setting_names_list_every_variable_the_module_reads():
    source = Path(app_settings.__file__).read_text()
    constants = {
        name
        for name, value in vars(app_settings).items()
        if isinstance(value, str) and name == value and name.isupper()
    }
    assert set(app_settings.APP_SETTING_NAMES) == constants
    assert len(app_settings.APP_SETTING_NAMES) == 16  # 12 + 4 telemetry (test_telemetry.py)
    for name in app_settings.APP_SETTING_NAMES:
        assert f'"{name}"' in source
