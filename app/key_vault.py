"""App settings that App Service has not resolved from Key Vault yet.

App Service resolves `@Microsoft.KeyVault(...)` app settings when it starts the app; when it
cannot (the identity's role is still propagating, the secret is missing) the variable holds the
literal reference (Microsoft: "Use Key Vault references", Troubleshooting). It caches values
and re-fetches every 24 hours or on a configuration change, and documents no restart when a
failed reference later resolves. So the app does not wait for one: it starts, answers health
with 503 (App Service's health check and Traffic Manager keep the instance out of rotation),
and reads the secret itself from Key Vault with its own managed identity until it gets it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger("app.key_vault")

_REFERENCE = re.compile(r"@Microsoft\.KeyVault\((?P<body>.*)\)", re.DOTALL)
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
KEY_VAULT_API_VERSION = "7.4"
RETRY_SECONDS = 30.0

SecretReader = Callable[["KeyVaultReference"], Awaitable[str]]


@dataclass(frozen=True)
class KeyVaultReference:
    """An unresolved reference: the setting it stands in and the secret's URI."""

    setting: str
    secret_uri: str


def is_reference(value: str) -> bool:
    return value.startswith("@Microsoft.KeyVault(")


def parse_reference(setting: str, value: str) -> KeyVaultReference:
    """`SecretUri=https://...` or `VaultName=v;SecretName=s[;SecretVersion=x]`; ValueError else."""
    match = _REFERENCE.fullmatch(value.strip())
    if match is None:
        raise ValueError("is a malformed Key Vault reference (expected @Microsoft.KeyVault(...))")
    parts = {}
    for pair in match.group("body").split(";"):
        name, _, part = pair.partition("=")
        parts[name.strip().lower()] = part.strip()
    uri = parts.get("secreturi")
    if not uri and parts.get("vaultname") and parts.get("secretname"):
        version = parts.get("secretversion", "")
        uri = (
            f"https://{parts['vaultname']}.vault.azure.net/secrets/{parts['secretname']}/{version}"
        )
    if not uri or not re.fullmatch(r"https://[^/\s]+/secrets/[^/\s]+(/[^/\s]*)?", uri):
        raise ValueError("is a Key Vault reference without SecretUri or VaultName and SecretName")
    return KeyVaultReference(setting, uri)


class PendingSetting:
    """A setting's value, or the Key Vault reference it is still waiting for."""

    def __init__(
        self,
        value: str | None,
        reference: KeyVaultReference | None = None,
        check: Callable[[str], None] = lambda value: None,
    ) -> None:
        self.value = value
        self.reference = reference
        self.check = check  # raises ValueError for a value the app would refuse at start

    @property
    def pending(self) -> bool:
        return self.value is None and self.reference is not None

    def resolve(self, value: str) -> None:
        self.check(value)
        self.value = value


async def resolve_pending(
    setting: PendingSetting, read: SecretReader, retry_seconds: float = RETRY_SECONDS
) -> None:
    """Read the secret until it arrives (every `retry_seconds`); log each state change once."""
    reference = setting.reference
    assert reference is not None
    logger.warning(
        "%s: Key Vault reference not resolved by App Service (%s); health answers 503 and the "
        "app reads the secret itself every %.0f s until it gets it",
        reference.setting,
        reference.secret_uri,
        retry_seconds,
    )
    last_error = None
    while setting.pending:
        try:
            setting.resolve(await read(reference))
        except Exception as error:  # noqa: BLE001 - any failure means: try again later
            reason = f"{type(error).__name__}: {error}"
            if reason != last_error:
                logger.warning(
                    "%s: cannot read it from Key Vault yet: %s", reference.setting, reason
                )
                last_error = reason
            await asyncio.sleep(retry_seconds)
    logger.info("%s: read from Key Vault; health answers normally", reference.setting)


async def read_with_managed_identity(reference: KeyVaultReference) -> str:
    """GET the secret with the process's Entra identity (the web app's system identity)."""
    import aiohttp
    from azure.identity.aio import DefaultAzureCredential

    async with DefaultAzureCredential() as credential:
        token = await credential.get_token(KEY_VAULT_SCOPE)
    url = f"{reference.secret_uri.rstrip('/')}?api-version={KEY_VAULT_API_VERSION}"
    headers = {"Authorization": f"Bearer {token.token}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, headers=headers) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"Key Vault answered {response.status}")
        return (await response.json())["value"]
