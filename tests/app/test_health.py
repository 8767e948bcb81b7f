"""GET /health/{key}: keyed, needs no client certificate; the exemption covers nothing else.

The boundary is decided on the decoded path the router matches, with dot segments and encoded
slashes never exempt. The boundary tests go through a real server (http.client sends the path
byte for byte; httpx would normalise `..` away before the app could see it).
"""

from __future__ import annotations

import pytest

from app.contract import CERTIFICATE_REJECTED, HEALTH_OK_TEXT
from app.middleware import is_health_path
from tests.app.conftest import HEALTH_KEY


@pytest.mark.parametrize("prefix", ["/health", "/Health", "/HEALTH"])
def test_health_with_the_key_is_ok_without_a_certificate(anonymous, prefix):
    response = anonymous.get(f"{prefix}/{HEALTH_KEY}")
    assert response.status_code == 200
    assert response.text == HEALTH_OK_TEXT


def test_health_with_a_wrong_key_is_403(anonymous):
    response = anonymous.get("/health/wrong-key-wrong-key-0000")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] != CERTIFICATE_REJECTED


def test_health_with_a_key_prefix_is_403(anonymous):
    assert anonymous.get(f"/health/{HEALTH_KEY[:-1]}").status_code == 403


def test_health_without_a_configured_key_is_403(make_client, environment):
    from app.settings import load_settings

    development = {**environment, "APP_ENV": "development", "HEALTH_CHECK_KEY": ""}
    assert make_client(load_settings(development)).get(f"/health/{HEALTH_KEY}").status_code == 403


def test_health_carries_the_site_name(anonymous, settings):
    response = anonymous.get(f"/health/{HEALTH_KEY}")
    assert response.headers["app-service-site-name"] == settings.site_name


@pytest.mark.parametrize(
    ("path", "raw_path", "exempt"),
    [
        ("/health", b"/health", True),
        ("/health/key", b"/health/key", True),
        ("/Health/x", b"/Health/x", True),
        ("/HEALTH/x/y", b"/HEALTH/x/y", True),
        ("/healthz", b"/healthz", False),
        ("/healthz/key", b"/healthz/key", False),
        ("/health/../api/TodoItem", b"/health/../api/TodoItem", False),
        ("/health/./x", b"/health/./x", False),
        ("/health/../api/TodoItem", b"/health/%2E%2E/api/TodoItem", False),
        ("/health/x", b"/health%2Fx", False),
        ("/health/x", b"/health%2fx", False),
        ("/health/../api", b"/health/..%2Fapi", False),
        ("/health/x\\..\\api", b"/health/x%5C..%5Capi", False),
        ("/api/TodoItem/../../health/x", b"/api/TodoItem/../../health/x", False),
        ("/api/TodoItem/../../health", b"/api/TodoItem%2F..%2F..%2Fhealth", False),
        ("//health/x", b"//health/x", False),
        ("/", b"/", False),
    ],
)
def test_health_exemption_boundary(path, raw_path, exempt):
    assert is_health_path(path, raw_path) is exempt


def certificate_rejected(status: int, body: bytes) -> bool:
    return status == 403 and CERTIFICATE_REJECTED.encode() in body


@pytest.mark.parametrize("path", [f"/health/{HEALTH_KEY}", f"/Health/{HEALTH_KEY}"])
def test_real_server_health_needs_no_certificate(production_server, path):
    status, _, body = production_server.request("GET", path)
    assert (status, body) == (200, HEALTH_OK_TEXT.encode())


def test_real_server_bare_health_is_exempt_but_not_a_route(production_server):
    status, _, body = production_server.request("GET", "/health")
    assert status == 404 and not certificate_rejected(status, body)


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        f"/healthz/{HEALTH_KEY}",
        "/health/../api/TodoItem",
        "/Health/../api/TodoItem",
        "/health/%2E%2E/api/TodoItem",
        "/health/..%2Fapi%2FTodoItem",
        f"/health%2F{HEALTH_KEY}",
        "/api/TodoItem%2F..%2F..%2Fhealth",
        f"/api/TodoItem/../../health/{HEALTH_KEY}",
        "/api/TodoItem",
    ],
)
def test_real_server_paths_outside_health_need_the_certificate(production_server, path):
    status, _, body = production_server.request("GET", path)
    assert certificate_rejected(status, body), (status, body)
