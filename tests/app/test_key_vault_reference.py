"""HEALTH_CHECK_KEY still holding the literal `@Microsoft.KeyVault(...)` (App Service could not
resolve it yet): the app starts, says so in one log line, answers health 503 (kept out of
rotation) and answers normally once it has read the secret itself, without a redeploy."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading

import pytest
from starlette.testclient import TestClient

from app.application import create_app
from app.key_vault import KeyVaultReference, PendingSetting, resolve_pending
from app.settings import SettingsError, load_settings
from tests.app.conftest import HEALTH_KEY
from tests.waiting import wait_until

SECRET_URI = "https://todo-api-dev-kv.vault.azure.net/secrets/health-check-key/"
REFERENCE = f"@Microsoft.KeyVault(SecretUri={SECRET_URI})"


@pytest.fixture
def unresolved(environment) -> dict[str, str]:
    return {**environment, "HEALTH_CHECK_KEY": REFERENCE}


def test_an_unresolved_reference_is_not_a_configuration_error(unresolved):
    settings = load_settings(unresolved)
    assert settings.health_check_key is None
    assert settings.health_check_key_reference == KeyVaultReference("HEALTH_CHECK_KEY", SECRET_URI)


def test_the_vault_name_form_is_understood(environment):
    value = "@Microsoft.KeyVault(VaultName=todo-kv;SecretName=health-check-key)"
    settings = load_settings({**environment, "HEALTH_CHECK_KEY": value})
    assert settings.health_check_key_reference.secret_uri == (
        "https://todo-kv.vault.azure.net/secrets/health-check-key/"
    )


def test_a_malformed_reference_is_refused_in_one_line_naming_the_setting(environment):
    with pytest.raises(SettingsError) as error:
        load_settings({**environment, "HEALTH_CHECK_KEY": "@Microsoft.KeyVault(Secret=x)"})
    assert str(error.value) == (
        "HEALTH_CHECK_KEY: is a Key Vault reference without SecretUri or VaultName and SecretName"
    )


def test_a_bad_plain_key_is_still_refused(environment):
    with pytest.raises(SettingsError, match="^HEALTH_CHECK_KEY: must be 16 to 256"):
        load_settings({**environment, "HEALTH_CHECK_KEY": "short"})


def test_the_startup_check_lets_an_unresolved_reference_through(unresolved):
    check = subprocess.run(
        [sys.executable, "-m", "app.settings"],
        env=unresolved,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (check.returncode, check.stderr) == (0, "")


def test_health_is_503_until_the_secret_is_read_then_ok(unresolved, caplog):
    caplog.set_level(logging.INFO, logger="app.key_vault")
    released = threading.Event()
    asked: list[KeyVaultReference] = []

    async def read(reference: KeyVaultReference) -> str:
        asked.append(reference)
        while not released.is_set():  # Key Vault still refuses: the role is propagating
            await asyncio.sleep(0.01)
        return HEALTH_KEY

    app = create_app(load_settings(unresolved), read_secret=read)
    with TestClient(app, raise_server_exceptions=False) as client:
        pending = client.get(f"/health/{HEALTH_KEY}")
        assert pending.status_code == 503
        assert pending.json()["detail"] == (
            "The health check key is not resolved from Key Vault yet."
        )
        released.set()
        wait_until(
            lambda: client.get(f"/health/{HEALTH_KEY}").status_code == 200,
            "health answered 200 after the secret came",
        )
        assert client.get("/health/wrong-key-wrong-key-0000").status_code == 403
    assert asked == [KeyVaultReference("HEALTH_CHECK_KEY", SECRET_URI)]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Key Vault reference not resolved by App Service" in m for m in messages)
    assert "HEALTH_CHECK_KEY: read from Key Vault; health answers normally" in messages


def test_failed_reads_are_retried_and_each_distinct_failure_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="app.key_vault")
    answers = [PermissionError("403 Forbidden"), PermissionError("403 Forbidden"), HEALTH_KEY]

    async def read(reference: KeyVaultReference) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    setting = PendingSetting(None, KeyVaultReference("HEALTH_CHECK_KEY", SECRET_URI))
    asyncio.run(resolve_pending(setting, read, retry_seconds=0))
    assert setting.value == HEALTH_KEY and answers == []
    failures = [r for r in caplog.records if "cannot read it from Key Vault yet" in r.getMessage()]
    assert len(failures) == 1


def test_a_secret_the_app_would_refuse_is_not_taken(caplog):
    from app.settings import check_health_check_key

    answers = ["short", HEALTH_KEY]

    async def read(reference: KeyVaultReference) -> str:
        return answers.pop(0)

    setting = PendingSetting(
        None, KeyVaultReference("HEALTH_CHECK_KEY", SECRET_URI), check_health_check_key
    )
    asyncio.run(resolve_pending(setting, read, retry_seconds=0))
    assert setting.value == HEALTH_KEY
