"""Fixtures for the TodoItem service: test certificates, settings and in-process clients."""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable

import pytest

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2; httpx is what the lock pins
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from app.application import create_app
from app.settings import Settings, StoreSettings, load_settings
from app.store import InMemoryTodoStore
from app.table_store import TableTodoStore, table_store
from tests.app import certs, servers

HEALTH_KEY = "test-health-key-0123456789"


@pytest.fixture(scope="session")
def authority() -> certs.Authority:
    return certs.make_authority()


@pytest.fixture(scope="session")
def client_certificate(authority):
    return certs.make_client(authority)


@pytest.fixture(scope="session")
def ca_file(authority, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(authority.pem)
    return str(path)


@pytest.fixture(scope="session")
def environment(client_certificate, ca_file) -> dict[str, str]:
    """App settings admitting `client_certificate`, as the stacks would set them."""
    return {
        "APP_ENV": "production",
        "STORE": "memory",
        "WEBSITE_SITE_NAME": "todo-api-test-region",
        "HEALTH_CHECK_KEY": HEALTH_KEY,
        "CLIENT_CERT_SUBJECT": certs.CLIENT_SUBJECT,
        "CLIENT_CERT_ISSUER": certs.CA_SUBJECT,
        "CLIENT_CERT_THUMBPRINTS": certs.sha1(client_certificate),
        "CLIENT_CERT_CA": ca_file,
    }


@pytest.fixture(scope="session")
def settings(environment) -> Settings:
    return load_settings(environment)


@pytest.fixture
def cert_header(client_certificate) -> dict[str, str]:
    """A fresh dict each time: Starlette's TestClient adds its user-agent to the dict it is given."""
    return {"X-ARR-ClientCert": certs.header_value(client_certificate)}


@pytest.fixture
def make_client() -> Callable[..., TestClient]:
    """A TestClient over a fresh app built from the given settings (no server errors raised)."""

    def make(settings: Settings, headers: dict[str, str] | None = None, store=None) -> TestClient:
        return TestClient(
            create_app(settings, store=store), headers=headers, raise_server_exceptions=False
        )

    return make


@pytest.fixture
def client(make_client, settings, cert_header) -> TestClient:
    """A client whose requests carry the valid certificate header."""
    return make_client(settings, cert_header)


@pytest.fixture
def anonymous(make_client, settings) -> TestClient:
    """A client whose requests carry no certificate header."""
    return make_client(settings)


@pytest.fixture
def rejection_log(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="app.client_certificate")
    return caplog


@pytest.fixture(scope="session")
def production_server(environment, tmp_path_factory):
    """app/startup.sh on 127.0.0.1 with the test settings; shared by the tests that only read it."""
    log = tmp_path_factory.mktemp("server") / "production.log"
    server = servers.start_production(environment, log, f"/health/{HEALTH_KEY}")
    yield server
    server.stop()


BACKENDS = ("memory", "table")


@pytest.fixture
def make_table_store(azurite):
    """A TableTodoStore over a fresh table; extra keyword arguments go to TableTodoStore.
    `make(table=name)` opens another client (another process, say) on a table made before."""

    def make(table: str | None = None, **options) -> TableTodoStore:
        name = table or "t" + uuid.uuid4().hex[:16]
        if table is None:
            azurite.create_table(name)
        settings = StoreSettings(
            kind="table", table_name=name, connection_string=azurite.connection_string
        )
        return table_store(settings, **options)

    return make


@pytest.fixture(params=BACKENDS)
def make_store(request, make_table_store):
    """Each test using it runs twice: over the in-memory store and over a fresh Azurite table."""
    if request.param == "memory":
        return lambda **options: InMemoryTodoStore()
    return make_table_store
