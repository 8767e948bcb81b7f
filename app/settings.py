"""App settings: environment variables (App Service app settings), parsed once into a typed object.

A bad or missing value raises SettingsError naming the variable; `python -m app.settings` checks
the environment and prints that one line (startup.sh runs it before starting the server).
"""

from __future__ import annotations

import binascii
import os
import re
import sys
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.certificates import (
    ClientCertificateRules,
    load_ca_certificates,
    parse_name,
    parse_pinned_key,
    parse_thumbprint,
)
from app.contract import (
    AUTH_ENTRA,
    AUTH_NONE,
    DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS,
    DEFAULT_TABLE_NAME,
    MEMORY_STORE,
    TABLE_STORE,
    slot_site_name,
)
from app.contract import CLIENT_CERT_HEADER as APP_SERVICE_CLIENT_CERT_HEADER
from app.key_vault import KeyVaultReference, is_reference, parse_reference

APP_ENV = "APP_ENV"
WEBSITE_SITE_NAME = "WEBSITE_SITE_NAME"
WEBSITE_SLOT_NAME = "WEBSITE_SLOT_NAME"  # App Service sets both (app.contract.slot_site_name)
HEALTH_CHECK_KEY = "HEALTH_CHECK_KEY"
CLIENT_CERT_HEADER = "CLIENT_CERT_HEADER"
CLIENT_CERT_SUBJECT = "CLIENT_CERT_SUBJECT"
CLIENT_CERT_ISSUER = "CLIENT_CERT_ISSUER"
CLIENT_CERT_THUMBPRINTS = "CLIENT_CERT_THUMBPRINTS"
CLIENT_CERT_CA = "CLIENT_CERT_CA"
CLIENT_CERT_PINNED_KEYS = "CLIENT_CERT_PINNED_KEYS"
CLIENT_CERT_VALIDATION = "CLIENT_CERT_VALIDATION"
PORT = "PORT"
HOST = "HOST"
WEB_CONCURRENCY = "WEB_CONCURRENCY"
# Telemetry (app/telemetry.py): on when a connection string or a local exporter is set.
APPLICATIONINSIGHTS_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
TELEMETRY_SAMPLING_RATIO = "TELEMETRY_SAMPLING_RATIO"
TELEMETRY_TRACES_PER_SECOND = "TELEMETRY_TRACES_PER_SECOND"
TELEMETRY_EXPORTER = "TELEMETRY_EXPORTER"
STORE = "STORE"
TABLE_ENDPOINT = "TABLE_ENDPOINT"
TABLE_NAME = "TABLE_NAME"
TABLE_CONNECTION_STRING = "TABLE_CONNECTION_STRING"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
IDEMPOTENCY_KEY_EXPIRY_SECONDS = "IDEMPOTENCY_KEY_EXPIRY_SECONDS"
# Bearer tokens (app/access_tokens.py): read only with AUTH_MODE=entra.
AUTH_MODE = "AUTH_MODE"
AUTH_ISSUER = "AUTH_ISSUER"
AUTH_AUDIENCE = "AUTH_AUDIENCE"
AUTH_OPENID_CONFIG_URL = "AUTH_OPENID_CONFIG_URL"
AUTH_TENANT_ID = "AUTH_TENANT_ID"
AUTH_ALLOWED_CLIENT_IDS = "AUTH_ALLOWED_CLIENT_IDS"

# Every variable the app reads (the stacks set these as app settings).
APP_SETTING_NAMES = (
    APP_ENV,
    WEBSITE_SITE_NAME,
    WEBSITE_SLOT_NAME,
    HEALTH_CHECK_KEY,
    CLIENT_CERT_HEADER,
    CLIENT_CERT_SUBJECT,
    CLIENT_CERT_ISSUER,
    CLIENT_CERT_THUMBPRINTS,
    CLIENT_CERT_CA,
    CLIENT_CERT_PINNED_KEYS,
    CLIENT_CERT_VALIDATION,
    PORT,
    HOST,
    WEB_CONCURRENCY,
    APPLICATIONINSIGHTS_CONNECTION_STRING,
    TELEMETRY_SAMPLING_RATIO,
    TELEMETRY_TRACES_PER_SECOND,
    TELEMETRY_EXPORTER,
    STORE,
    TABLE_ENDPOINT,
    TABLE_NAME,
    TABLE_CONNECTION_STRING,
    AZURE_CLIENT_ID,
    IDEMPOTENCY_KEY_EXPIRY_SECONDS,
    AUTH_MODE,
    AUTH_ISSUER,
    AUTH_AUDIENCE,
    AUTH_OPENID_CONFIG_URL,
    AUTH_TENANT_ID,
    AUTH_ALLOWED_CLIENT_IDS,
)

PRODUCTION = "production"
DEVELOPMENT = "development"
DEFAULT_SITE_NAME = "localhost"
DEFAULT_CLIENT_CERT_HEADER = APP_SERVICE_CLIENT_CERT_HEADER
DEFAULT_PORT = 8000
DEFAULT_HOST = "0.0.0.0"
DEFAULT_WEB_CONCURRENCY = 1  # the stacks set more with the table store
# Azure Table / Cosmos DB for Table: a letter, then letters and digits, 3-63 in all.
TABLE_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HEALTH_CHECK_KEY_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token
HEADER_VALUE_PATTERN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # visible ASCII, inner spaces
# Sampling: by default at most 5 traced requests per second and process (the distro's
# rate-limited sampler), whatever the load: exporting one request costs ~0.6 ms of CPU, so a
# fixed ratio costs more the busier the app is (docs/operations.md has the measurements). Each
# kept request carries how many it stands for (itemCount), so counts stay right.
DEFAULT_TELEMETRY_TRACES_PER_SECOND = 5.0
MAX_TELEMETRY_TRACES_PER_SECOND = 1000.0
CONSOLE_EXPORTER = "console"
FILE_EXPORTER_PREFIX = "file:"
# How long an Idempotency-Key is remembered: 1 minute to 30 days, 24 h by default (app/contract.py).
MIN_IDEMPOTENCY_KEY_EXPIRY_SECONDS = 60
MAX_IDEMPOTENCY_KEY_EXPIRY_SECONDS = 30 * 24 * 60 * 60
# Bearer tokens: off by default in this slice, in every environment (docs/app.md, "Who is calling").
DEFAULT_AUTH_MODE = AUTH_NONE
OPENID_CONFIGURATION_SUFFIX = "/.well-known/openid-configuration"
GUID_PATTERN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
# Entra ID's issuers name their tenant: v2.0 tokens `https://login.microsoftonline.com/<tid>/v2.0`,
# v1.0 tokens `https://sts.windows.net/<tid>/`. From these AUTH_TENANT_ID defaults to <tid>.
ENTRA_ISSUER_PATTERN = re.compile(
    rf"https://(?:login\.microsoftonline\.com/(?P<v2>{GUID_PATTERN.pattern})/v2\.0"
    rf"|sts\.windows\.net/(?P<v1>{GUID_PATTERN.pattern})/)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TelemetrySettings:
    """Off unless a connection string (Azure Monitor) or a local exporter is set."""

    connection_string: str | None = field(default=None, repr=False)
    sampling_ratio: float | None = None  # a fixed ratio; None: rate-limited (below)
    traces_per_second: float = DEFAULT_TELEMETRY_TRACES_PER_SECOND
    exporter: str | None = None  # "console" or "file:<path>": local copy of the same telemetry

    @property
    def enabled(self) -> bool:
        return self.connection_string is not None or self.exporter is not None


@dataclass(frozen=True)
class AuthSettings:
    """Bearer-token validation (app/access_tokens.py); `none` admits every caller the client
    certificate admits. Tenant and client ids are lowercase; an empty client set admits any
    client application of the tenant."""

    mode: str = DEFAULT_AUTH_MODE
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    openid_config_url: str = ""
    tenant_id: str | None = None  # None: `tid` is not checked (an issuer that names no tenant)
    allowed_client_ids: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return self.mode == AUTH_ENTRA


class SettingsError(ValueError):
    """A setting is missing or malformed; the message starts with the variable's name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True)
class StoreSettings:
    """Where the items live. `table` reaches the account by `endpoint` with the process's Entra
    identity (managed identity on Azure; `client_id` picks a user-assigned one), or by a
    `connection_string` (Azurite, key-based accounts), which never appears in a repr or log."""

    kind: str = MEMORY_STORE
    table_name: str = DEFAULT_TABLE_NAME
    endpoint: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    environment: str = PRODUCTION
    site_name: str = DEFAULT_SITE_NAME
    telemetry: TelemetrySettings = TelemetrySettings()
    health_check_key: str | None = None
    # Set when App Service has not resolved HEALTH_CHECK_KEY from Key Vault yet (app/key_vault.py).
    health_check_key_reference: KeyVaultReference | None = None
    client_cert_header: str = DEFAULT_CLIENT_CERT_HEADER
    client_certificate: ClientCertificateRules | None = None  # None: validation off (development)
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    web_concurrency: int = DEFAULT_WEB_CONCURRENCY
    store: StoreSettings = StoreSettings()
    idempotency_key_expiry_seconds: int = DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS
    auth: AuthSettings = AuthSettings()

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT


def _value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (_value(environ, name) or default).lower()
    if value not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _value(environ, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise SettingsError(name, f"must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _number(environ: Mapping[str, str], name: str, default, high: float):
    """A number from 0 to `high` (decimal point allowed), or `default` when unset."""
    value = _value(environ, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= high:  # NaN fails too
        raise SettingsError(name, f"must be a number from 0 to {high:g}, got {value!r}")
    return number


def _required(environ: Mapping[str, str], name: str, why: str) -> str:
    value = _value(environ, name)
    if value is None:
        raise SettingsError(name, f"is required {why}")
    return value


def _parsed(name: str, parse, text: str):
    try:
        return parse(text)
    except ValueError as error:
        raise SettingsError(name, str(error) or "is malformed") from None


def _ca_certificates(environ: Mapping[str, str]) -> tuple:
    path = _value(environ, CLIENT_CERT_CA)
    if path is None:
        return ()
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as error:
        raise SettingsError(CLIENT_CERT_CA, f"cannot read {path}: {error.strerror}") from None
    return _parsed(CLIENT_CERT_CA, load_ca_certificates, pem)


def _client_certificate_rules(environ: Mapping[str, str]) -> ClientCertificateRules:
    why = "while client-certificate validation is on"
    subject = _required(environ, CLIENT_CERT_SUBJECT, why)
    issuer = _required(environ, CLIENT_CERT_ISSUER, why)
    thumbprints = _list(environ, CLIENT_CERT_THUMBPRINTS)
    pinned_keys = _list(environ, CLIENT_CERT_PINNED_KEYS)
    if not thumbprints and not pinned_keys:
        raise SettingsError(
            CLIENT_CERT_THUMBPRINTS, f"is required {why} (or {CLIENT_CERT_PINNED_KEYS})"
        )
    return ClientCertificateRules(
        subject=_parsed(CLIENT_CERT_SUBJECT, parse_name, subject),
        issuer=_parsed(CLIENT_CERT_ISSUER, parse_name, issuer),
        thumbprints=frozenset(
            _parsed(CLIENT_CERT_THUMBPRINTS, parse_thumbprint, t) for t in thumbprints
        ),
        ca_certificates=_ca_certificates(environ),
        public_keys=frozenset(
            _parsed(CLIENT_CERT_PINNED_KEYS, parse_pinned_key, k) for k in pinned_keys
        ),
    )


def _list(environ: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated setting's non-blank items."""
    return [item.strip() for item in (_value(environ, name) or "").split(",") if item.strip()]


def check_health_check_key(key: str) -> None:
    if not HEALTH_CHECK_KEY_PATTERN.fullmatch(key):
        raise ValueError("must be 16 to 256 of A-Z a-z 0-9 . _ ~ -")


def _health_check_key(environ: Mapping[str, str], environment: str) -> str | None:
    key = _value(environ, HEALTH_CHECK_KEY)
    if key is None and environment == PRODUCTION:
        raise SettingsError(HEALTH_CHECK_KEY, "is required in production")
    if key is not None:
        _parsed(HEALTH_CHECK_KEY, check_health_check_key, key)
    return key


def _health_check_key_reference(environ: Mapping[str, str]) -> KeyVaultReference | None:
    """The literal reference App Service leaves when it could not resolve it (not an error)."""
    key = _value(environ, HEALTH_CHECK_KEY)
    if key is None or not is_reference(key):
        return None
    return _parsed(HEALTH_CHECK_KEY, lambda text: parse_reference(HEALTH_CHECK_KEY, text), key)


def _header_value(environ: Mapping[str, str], name: str) -> str | None:
    value = _value(environ, name)
    if value is not None and not HEADER_VALUE_PATTERN.fullmatch(value):
        raise SettingsError(name, "must be visible ASCII (it is sent as a header value)")
    return value


def _site_name(environ: Mapping[str, str]) -> str:
    """The web app's name, or `<name>-<slot>` in a slot other than production (as App Service
    names the slot's host), so that answers say which slot gave them."""
    site = _header_value(environ, WEBSITE_SITE_NAME) or DEFAULT_SITE_NAME
    return slot_site_name(site, _header_value(environ, WEBSITE_SLOT_NAME))


def _client_cert_header(environ: Mapping[str, str]) -> str:
    header = _value(environ, CLIENT_CERT_HEADER) or DEFAULT_CLIENT_CERT_HEADER
    if not HEADER_NAME_PATTERN.fullmatch(header):
        raise SettingsError(CLIENT_CERT_HEADER, f"{header!r} is not an HTTP header name")
    return header


def _telemetry(environ: Mapping[str, str]) -> TelemetrySettings:
    connection_string = _value(environ, APPLICATIONINSIGHTS_CONNECTION_STRING)
    if connection_string is not None and "instrumentationkey=" not in connection_string.lower():
        raise SettingsError(
            APPLICATIONINSIGHTS_CONNECTION_STRING, "must hold InstrumentationKey=..."
        )
    sampling_ratio = _number(environ, TELEMETRY_SAMPLING_RATIO, None, 1.0)
    traces_per_second = _number(
        environ,
        TELEMETRY_TRACES_PER_SECOND,
        DEFAULT_TELEMETRY_TRACES_PER_SECOND,
        MAX_TELEMETRY_TRACES_PER_SECOND,
    )
    if sampling_ratio is not None and _value(environ, TELEMETRY_TRACES_PER_SECOND) is not None:
        raise SettingsError(
            TELEMETRY_SAMPLING_RATIO, f"set it or {TELEMETRY_TRACES_PER_SECOND}, not both"
        )
    exporter = _value(environ, TELEMETRY_EXPORTER)
    if (
        exporter is not None
        and exporter != CONSOLE_EXPORTER
        and not (
            exporter.startswith(FILE_EXPORTER_PREFIX)
            and exporter.removeprefix(FILE_EXPORTER_PREFIX)
        )
    ):
        raise SettingsError(
            TELEMETRY_EXPORTER,
            f"must be {CONSOLE_EXPORTER} or {FILE_EXPORTER_PREFIX}<path>, got {exporter!r}",
        )
    if exporter is not None and exporter.startswith(FILE_EXPORTER_PREFIX):
        folder = os.path.dirname(exporter.removeprefix(FILE_EXPORTER_PREFIX)) or "."
        if not os.path.isdir(folder):
            raise SettingsError(TELEMETRY_EXPORTER, f"folder {folder} does not exist")
    return TelemetrySettings(connection_string, sampling_ratio, traces_per_second, exporter)


def check_web_url(text: str, what: str, query: bool = False) -> None:
    """An https:// URL (http:// only on loopback) with a host, no fragment, and a query only
    where `query` allows one; ValueError saying it is not `what` otherwise."""
    url = urlsplit(text)
    loopback = url.hostname in LOOPBACK_HOSTS
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValueError("must be an https:// URL (http only on loopback)")
    if not url.hostname or url.fragment or (url.query and not query):
        raise ValueError(f"{text!r} is not {what}")


def _table_endpoint(environ: Mapping[str, str]) -> str | None:
    endpoint = _value(environ, TABLE_ENDPOINT)
    if endpoint is not None:
        _parsed(TABLE_ENDPOINT, lambda text: check_web_url(text, "a table endpoint URL"), endpoint)
    return endpoint


def _connection_string(environ: Mapping[str, str]) -> str | None:
    """Checked for shape only; the message names the part at fault, never a value."""
    text = _value(environ, TABLE_CONNECTION_STRING)
    if text is None:
        return None
    parts: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(";"))):
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise SettingsError(TABLE_CONNECTION_STRING, "must be Name=value pairs joined by ';'")
        parts[name.strip().lower()] = value.strip()
    if not parts.get("accountname"):
        raise SettingsError(TABLE_CONNECTION_STRING, "has no AccountName")
    key = parts.get("accountkey")
    if not key and not parts.get("sharedaccesssignature"):
        raise SettingsError(TABLE_CONNECTION_STRING, "has no AccountKey or SharedAccessSignature")
    if key:
        try:
            b64decode(key, validate=True)
        except binascii.Error:
            raise SettingsError(TABLE_CONNECTION_STRING, "AccountKey is not base64") from None
    return text


def _store(environ: Mapping[str, str], environment: str, workers: int) -> StoreSettings:
    if _value(environ, STORE) is None and environment == PRODUCTION:
        raise SettingsError(STORE, f"is required in production ({TABLE_STORE} or {MEMORY_STORE})")
    kind = _choice(environ, STORE, (MEMORY_STORE, TABLE_STORE), MEMORY_STORE)
    if kind == MEMORY_STORE:
        if workers > 1:
            raise SettingsError(
                WEB_CONCURRENCY,
                f"must be 1 with {STORE}={MEMORY_STORE} (each worker would keep its own items)",
            )
        return StoreSettings()
    table_name = _value(environ, TABLE_NAME) or DEFAULT_TABLE_NAME
    if not TABLE_NAME_PATTERN.fullmatch(table_name) or table_name.lower() == "tables":
        raise SettingsError(
            TABLE_NAME, "must be 3-63 letters and digits, starting with a letter (not 'tables')"
        )
    endpoint = _table_endpoint(environ)
    connection_string = _connection_string(environ)
    if endpoint is None and connection_string is None:
        raise SettingsError(
            TABLE_ENDPOINT,
            f"is required with {STORE}={TABLE_STORE} "
            f"(or {TABLE_CONNECTION_STRING} for Azurite or a key-based account)",
        )
    if endpoint is not None and connection_string is not None:
        raise SettingsError(
            TABLE_CONNECTION_STRING, f"must not be set together with {TABLE_ENDPOINT}"
        )
    return StoreSettings(
        kind=kind,
        table_name=table_name,
        endpoint=endpoint,
        connection_string=connection_string,
        client_id=_value(environ, AZURE_CLIENT_ID),
    )


def _guid(name: str, text: str) -> str:
    if not GUID_PATTERN.fullmatch(text):
        raise SettingsError(name, f"{text!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text.lower()


def _tenant_id(environ: Mapping[str, str], issuer: str) -> str | None:
    """AUTH_TENANT_ID, or the tenant an Entra issuer names; both must agree when both are set."""
    entra = ENTRA_ISSUER_PATTERN.fullmatch(issuer)
    named = (entra.group("v2") or entra.group("v1")).lower() if entra else None
    value = _value(environ, AUTH_TENANT_ID)
    if value is None:
        return named
    tenant = _guid(AUTH_TENANT_ID, value)
    if named is not None and tenant != named:
        raise SettingsError(AUTH_TENANT_ID, f"differs from the tenant in {AUTH_ISSUER} ({named})")
    return tenant


def _auth(environ: Mapping[str, str]) -> AuthSettings:
    mode = _choice(environ, AUTH_MODE, (AUTH_NONE, AUTH_ENTRA), DEFAULT_AUTH_MODE)
    if mode == AUTH_NONE:
        return AuthSettings()  # the other AUTH_* settings are not read
    why = f"with {AUTH_MODE}={AUTH_ENTRA}"
    issuer = _required(environ, AUTH_ISSUER, why)
    _parsed(AUTH_ISSUER, lambda text: check_web_url(text, "an issuer URL"), issuer)
    audiences = tuple(_list(environ, AUTH_AUDIENCE))
    if not audiences:
        raise SettingsError(AUTH_AUDIENCE, f"is required {why} (comma-separated audiences)")
    config_url = _value(environ, AUTH_OPENID_CONFIG_URL)
    if config_url is None:
        config_url = issuer.rstrip("/") + OPENID_CONFIGURATION_SUFFIX
    what = "an OpenID configuration URL"
    _parsed(AUTH_OPENID_CONFIG_URL, lambda text: check_web_url(text, what, query=True), config_url)
    listed = _list(environ, AUTH_ALLOWED_CLIENT_IDS)
    clients = frozenset(_guid(AUTH_ALLOWED_CLIENT_IDS, client) for client in listed)
    return AuthSettings(mode, issuer, audiences, config_url, _tenant_id(environ, issuer), clients)


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    environment = _choice(environ, APP_ENV, (PRODUCTION, DEVELOPMENT), PRODUCTION)
    validation = _choice(environ, CLIENT_CERT_VALIDATION, ("on", "off"), "on")
    if validation == "off" and environment != DEVELOPMENT:
        raise SettingsError(CLIENT_CERT_VALIDATION, "may be off only with APP_ENV=development")
    web_concurrency = _integer(environ, WEB_CONCURRENCY, DEFAULT_WEB_CONCURRENCY, 1, 64)
    reference = _health_check_key_reference(environ)
    return Settings(
        environment=environment,
        site_name=_site_name(environ),
        telemetry=_telemetry(environ),
        health_check_key=None if reference else _health_check_key(environ, environment),
        health_check_key_reference=reference,
        client_cert_header=_client_cert_header(environ),
        client_certificate=_client_certificate_rules(environ) if validation == "on" else None,
        port=_integer(environ, PORT, DEFAULT_PORT, 1, 65535),
        host=_value(environ, HOST) or DEFAULT_HOST,
        web_concurrency=web_concurrency,
        store=_store(environ, environment, web_concurrency),
        idempotency_key_expiry_seconds=_integer(
            environ,
            IDEMPOTENCY_KEY_EXPIRY_SECONDS,
            DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS,
            MIN_IDEMPOTENCY_KEY_EXPIRY_SECONDS,
            MAX_IDEMPOTENCY_KEY_EXPIRY_SECONDS,
        ),
        auth=_auth(environ),
    )


def load_settings_or_exit(environ: Mapping[str, str] = os.environ) -> Settings:
    """Load the settings, or stop the process with one line naming the bad variable."""
    try:
        return load_settings(environ)
    except SettingsError as error:
        raise SystemExit(f"configuration error: {error}") from None


if __name__ == "__main__":
    load_settings_or_exit()
    sys.exit(0)
