"""Smoke checks against real servers on 127.0.0.1: the packaged app (started with its own
app/startup.sh) behind a key-checking stand-in gateway, and a misconfigured deployment."""

from __future__ import annotations

import base64
import datetime
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.app import servers
from tests.tools.stack_outputs_data import raw_outputs
from tools.delivery import package_app, smoke
from tools.delivery.stack_outputs import parse

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
PYTHON = str(Path(sys.executable))
SUBSCRIPTION_KEY = "subscription-key-0123456789"
HEALTH_KEY = "health-key-0123456789abcdef"
API_PATH = "todo"
SUBJECT = "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU"


def client_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "AU"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso"),
        x509.NameAttribute(NameOID.COMMON_NAME, "cloudauth-apim.azure-api.net"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    """The deploy package, unzipped: the smoke tests run what App Service would run."""
    folder = tmp_path_factory.mktemp("package")
    zipfile.ZipFile(io.BytesIO(package_app.build(ROOT / "app"))).extractall(folder)
    return folder


@pytest.fixture(scope="module")
def deployments(package_dir, tmp_path_factory):
    """(good outputs, bad outputs) of two local 'deployments'."""
    certificate = client_certificate()
    cert_b64 = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()
    app_env = {
        "PYTHON": PYTHON, "APP_ENV": "production", "STORE": "memory", "HEALTH_CHECK_KEY": HEALTH_KEY,
        "CLIENT_CERT_SUBJECT": SUBJECT, "CLIENT_CERT_ISSUER": SUBJECT,
        "CLIENT_CERT_THUMBPRINTS": certificate.fingerprint(hashes.SHA1()).hex(),
    }
    startup = ["bash", "app/startup.sh"]
    logs = tmp_path_factory.mktemp("smoke-servers")
    started: list[servers.Server] = []

    def start(command: list[str], env: dict[str, str], cwd: Path) -> str:
        """Start a server and return its URL once it answers (any status)."""
        port = servers.free_port()
        command = [c.replace("{port}", str(port)) for c in command]
        log = logs / f"{len(started)}.log"
        started.append(servers.start(command, env, log, "/health/x", port, cwd))
        return f"http://127.0.0.1:{port}"

    try:
        primary = start(startup, {**app_env, "WEBSITE_SITE_NAME": "app-weu"}, package_dir)
        secondary = start(startup, {**app_env, "WEBSITE_SITE_NAME": "app-neu"}, package_dir)
        # misconfigured: certificate validation switched off
        open_app = start(startup, {**app_env, "APP_ENV": "development",
                                   "CLIENT_CERT_VALIDATION": "off"}, package_dir)
        gateway_command = [PYTHON, "-m", "uvicorn", "fake_gateway:app", "--host", "127.0.0.1",
                           "--port", "{port}"]
        gateway_env = {"API_PATH": API_PATH, "SUBSCRIPTION_KEY": SUBSCRIPTION_KEY,
                       "CLIENT_CERT_B64": cert_b64}
        good_gateway = start(gateway_command, {**gateway_env, "BACKEND_URL": primary}, DATA)
        bad_gateway = start(gateway_command, {**gateway_env, "BACKEND_URL": open_app,
                                              "CHECK_KEY": "off"}, DATA)
        yield outputs([good_gateway], [primary, secondary]), outputs([bad_gateway], [open_app])
    finally:
        for server in started:
            server.stop()


def outputs(gateways: list[str], web_apps: list[str]):
    def out(value, sensitive=False):
        return {"sensitive": sensitive, "type": "dynamic", "value": value}
    return parse({
        "gateway_urls": out(gateways),
        "traffic_manager_fqdns": out(["todo-dev.trafficmanager.net"]),
        "web_app_names": out([f"app-{i}" for i in range(len(web_apps))]),
        "web_app_hostnames": out(web_apps),
        "resource_group_names": out(["rg-global"] + [f"rg-{i}" for i in range(len(web_apps))]),
        "web_app_resource_group_names": out([f"rg-{i}" for i in range(len(web_apps))]),
        "subscription_key": out(SUBSCRIPTION_KEY, True),
        "health_check_key": out(HEALTH_KEY, True),
        "api_path": out(API_PATH),
    })


def test_healthy_deployment_passes_every_check(deployments):
    good, _ = deployments
    assert smoke.run(good) == []


def test_checks_cover_gateway_health_and_every_web_app(deployments):
    good, _ = deployments
    names = [check.name for check in smoke.checks(good)]
    assert len(names) == 4 + 2
    assert sum("without client certificate" in n for n in names) == 2


def test_gateway_that_lets_requests_without_key_through_fails(deployments):
    _, bad = deployments
    failures = smoke.run(bad)
    assert any(f.startswith("FAIL gateway") and "without key" in f
               and f.endswith("expected 401, got 200") for f in failures)


def test_web_app_answering_without_certificate_fails(deployments):
    _, bad = deployments
    failures = smoke.run(bad)
    assert any("web app app-0 without client certificate" in f
               and f.endswith("expected 403, got 200") for f in failures)


def test_the_health_key_never_leaves_the_runner(deployments):
    """API Management does not publish the health path and the web apps admit only APIM and
    Traffic Manager: no check can use the key, so none sends it."""
    good, _ = deployments
    assert not any(HEALTH_KEY in check.url or HEALTH_KEY in str(check.headers)
                   for check in smoke.checks(good))


def test_gateway_health_path_must_be_unpublished(deployments):
    good, _ = deployments
    [check] = [c for c in smoke.checks(good) if "health" in c.name]
    assert (check.expect_status, check.url.endswith("/health/" + smoke.WRONG_HEALTH_KEY)) == (
        404, True)


def test_gateway_without_an_api_fails_every_gateway_check(deployments):
    good, _ = deployments
    failures = smoke.run(parse_with(good, api_path="missing"))
    assert any("item round trip" in f and f.endswith("expected 201, got 404") for f in failures)
    assert any("with key" in f and f.endswith("expected 200, got 404") for f in failures)


def test_unreachable_web_app_is_one_failure_line(deployments):
    good, _ = deployments
    broken = parse_with(good, web_app_hostnames=["http://127.0.0.1:9", good.web_app_hostnames[1]])
    [failure] = smoke.run(broken)
    assert failure.startswith("FAIL web app app-0 without client certificate: GET http://127.0.0.1:9")
    assert "ConnectError" in failure


def test_cli_exits_1_and_counts_failures(deployments, tmp_path, capsys):
    _, bad = deployments
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(as_terraform_json(bad)))
    assert smoke.main([str(path)]) == 1
    assert "smoke check(s) failed" in capsys.readouterr().err


def parse_with(outputs_, **changes):
    raw = as_terraform_json(outputs_)
    for name, value in changes.items():
        raw[name]["value"] = value
    return parse(raw)


def as_terraform_json(outputs_) -> dict:
    return {name: {"sensitive": False, "value": value} for name, value in vars(outputs_).items()}


def test_a_refused_key_fails_at_once_instead_of_waiting_for_the_app(deployments):
    """401/403 will not turn into 200 by waiting: --wait-seconds stops at the first refusal."""
    import dataclasses
    import time

    good, _ = deployments
    wrong = dataclasses.replace(good, subscription_key="not-the-key-0000")
    started = time.monotonic()
    failures = smoke.run(wrong, wait_seconds=600)
    assert time.monotonic() - started < 30
    assert any("with key" in f and f.endswith("expected 200, got 401") for f in failures)


def test_with_entra_tokens_every_positive_check_carries_the_token_and_one_goes_without():
    outputs = parse(raw_outputs(api_identifier_uri="api://6f0d3c2a-1b4e-4d5f-8a9b-0c1d2e3f4a5b"))
    assert outputs.api_identifier_uri == "api://6f0d3c2a-1b4e-4d5f-8a9b-0c1d2e3f4a5b"
    assert parse(raw_outputs()).api_identifier_uri is None
    bearer = {"Authorization": "Bearer header.claims.signature"}
    planned = {check.name: check for check in smoke.checks(outputs, bearer)}
    gateway = outputs.gateway_urls[0]
    assert planned[f"gateway {gateway} with key"].headers["Authorization"] == bearer["Authorization"]
    without = planned[f"gateway {gateway} with key, without token"]
    assert (without.expect_status, "Authorization" in without.headers) == (401, False)
    assert "Authorization" not in planned[f"gateway {gateway} without key"].headers
    assert not any("without token" in name for name in
                   (c.name for c in smoke.checks(outputs, {})))
