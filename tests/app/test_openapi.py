"""The OpenAPI document, the deploy requirements, and Swagger UI (development only)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from swagger_ui_bundle import swagger_ui_path

from app.contract import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENT_REPLAYED_HEADER,
    MAX_BODY_BYTES,
    MAX_NAME_LENGTH,
    OPENAPI_PATH,
    READ_PERMISSION,
    SUBSCRIPTION_KEY_HEADER,
    WRITE_PERMISSION,
)
from app.openapi import OPENAPI_FILE
from app.settings import load_settings
from tests.app.servers import REPO

REQUIREMENTS = REPO / "app" / "requirements.txt"
EXPORT = [
    str(REPO / ".venv" / "bin" / "uv"),
    "export",
    "--frozen",
    "--no-dev",
    "--no-hashes",
    "--no-emit-project",
    "--no-header",
    "--format",
    "requirements-txt",
]


@pytest.fixture
def served(client):
    return client.get(OPENAPI_PATH)


def test_checked_in_file_equals_the_served_document(served):
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert json.loads(OPENAPI_FILE.read_text()) == served.json()


def test_document_is_openapi_3(served):
    assert served.json()["openapi"].startswith("3.")


def test_document_declares_the_subscription_key_header(served):
    schemes = served.json()["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": SUBSCRIPTION_KEY_HEADER} in schemes.values()


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/TodoItem", "get", {"200"}),
        ("/api/TodoItem", "post", {"201", "400", "409", "413", "415", "422"}),
        ("/api/TodoItem/{id}", "get", {"200", "404"}),
        ("/api/TodoItem/{id}", "put", {"200", "400", "404", "409", "413", "415", "422"}),
        ("/api/TodoItem/{id}", "delete", {"204", "400", "404", "409", "422"}),
    ],
)
def test_document_lists_every_response_code(served, path, method, codes):
    every = {"401", "403", "500", "503"}  # token, certificate or permission, defect, outage
    assert set(served.json()["paths"][path][method]["responses"]) == codes | every


OPERATIONS = [
    ("/api/TodoItem", "get", READ_PERMISSION),
    ("/api/TodoItem/{id}", "get", READ_PERMISSION),
    ("/api/TodoItem", "post", WRITE_PERMISSION),
    ("/api/TodoItem/{id}", "put", WRITE_PERMISSION),
    ("/api/TodoItem/{id}", "delete", WRITE_PERMISSION),
]


def test_document_declares_the_oauth2_scopes_and_the_bearer_scheme(served):
    schemes = served.json()["components"]["securitySchemes"]
    (oauth2,) = [s for s in schemes.values() if s["type"] == "oauth2"]
    for flow in oauth2["flows"].values():
        assert set(flow["scopes"]) == {READ_PERMISSION, WRITE_PERMISSION}
    (bearer,) = [s for s in schemes.values() if s["type"] == "http"]
    assert (bearer["scheme"], bearer["bearerFormat"]) == ("bearer", "JWT")


@pytest.mark.parametrize(("path", "method", "permission"), OPERATIONS)
def test_every_operation_requires_its_permission_and_the_subscription_key(
    served, path, method, permission
):
    document = served.json()
    schemes = document["components"]["securitySchemes"]
    requirements = document["paths"][path][method]["security"]
    for requirement in requirements:
        assert "apiKeyHeader" in requirement
        for name, scopes in requirement.items():
            assert scopes == ([permission] if schemes[name]["type"] == "oauth2" else [])
    assert {schemes[name]["type"] for r in requirements for name in r} == {
        "apiKey", "oauth2", "http"
    }


WRITES = [
    ("/api/TodoItem", "post"),
    ("/api/TodoItem/{id}", "put"),
    ("/api/TodoItem/{id}", "delete"),
]


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


@pytest.mark.parametrize(("path", "method"), WRITES)
def test_writes_declare_the_idempotency_key_and_the_replay_marker(served, path, method):
    document = served.json()
    operation = document["paths"][path][method]
    parameters = [_resolve(document, p) for p in operation["parameters"]]
    [key] = [p for p in parameters if p["name"] == IDEMPOTENCY_KEY_HEADER]
    assert key["in"] == "header" and key["required"] is False
    assert key["schema"]["pattern"] and "409" in operation["responses"]
    [success] = [code for code in operation["responses"] if code.startswith("2")]
    assert IDEMPOTENT_REPLAYED_HEADER in operation["responses"][success]["headers"]


def test_reads_take_no_idempotency_key(served):
    paths = served.json()["paths"]
    assert "parameters" not in paths["/api/TodoItem"]["get"]
    assert "parameters" not in paths["/api/TodoItem/{id}"]["get"]


def test_document_states_the_limits(served):
    text = served.text
    assert f'"maxLength":{MAX_NAME_LENGTH}' in text
    assert f"{MAX_BODY_BYTES} bytes" in text


def test_health_is_not_part_of_the_api_document(served):
    assert not any(path.lower().startswith("/health") for path in served.json()["paths"])


def test_requirements_are_in_step_with_the_lock():
    exported = subprocess.run(EXPORT, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert REQUIREMENTS.read_text() == exported


def test_requirements_hold_no_tooling():
    text = REQUIREMENTS.read_text()
    for tool in ("pytest", "cdktf", "locust", "schemathesis", "ruff"):
        assert f"\n{tool}==" not in f"\n{text}"


@pytest.fixture
def development(make_client, environment, cert_header):
    return make_client(load_settings({**environment, "APP_ENV": "development"}), cert_header)


def test_swagger_ui_is_served_at_root_in_development(development):
    page = development.get("/")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text
    assert "//" not in page.text.replace("<!DOCTYPE", "")  # no CDN, no absolute URLs
    initializer = development.get("/swagger-ui-init.js")
    assert OPENAPI_PATH in initializer.text


def test_swagger_ui_assets_come_from_the_package(development):
    asset = development.get("/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.content == (Path(swagger_ui_path) / "swagger-ui-bundle.js").read_bytes()


def test_swagger_ui_is_absent_in_production(client):
    assert client.get("/").status_code == 404
    assert client.get("/swagger-ui/swagger-ui-bundle.js").status_code == 404
