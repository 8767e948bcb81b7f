"""tools.development.certs: the local CA, the client certificate API Management presents, the front ends'
server certificate and the PFX, as files the app's settings and the stacks read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.certificates import check_certificate
from app.settings import load_settings
from tools.development import certs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    certs.generate(out)
    return out


def cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.development.certs", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def load(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def test_generate_writes_every_file(generated):
    assert sorted(p.name for p in generated.iterdir()) == sorted(certs.ALL_FILES)


def test_private_material_is_readable_by_the_owner_only(generated):
    for name in (
        "ca.key",
        "client.key",
        "server.key",
        "apim-client.pfx",
        "apim-client.pfx.password",
    ):
        assert (generated / name).stat().st_mode & 0o077 == 0, name


def test_client_certificate_is_for_client_auth_and_signed_by_the_ca(generated):
    client, ca = load(generated, "client.pem"), load(generated, "ca.pem")
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    client.verify_directly_issued_by(ca)
    assert certs.name_text(client.subject) == "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU"


def test_server_certificate_names_localhost_and_127_0_0_1(generated):
    server = load(generated, "server.pem")
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_pfx_opens_with_its_password_and_holds_the_client_certificate(generated):
    password = (generated / "apim-client.pfx.password").read_text().strip().encode()
    key, certificate, chain = pkcs12.load_key_and_certificates(
        (generated / "apim-client.pfx").read_bytes(), password
    )
    assert key is not None and certificate == load(generated, "client.pem")
    assert chain == [load(generated, "ca.pem")]


def test_client_json_lets_the_app_admit_the_client_certificate(generated):
    summary = json.loads((generated / "client.json").read_text())
    settings = load_settings(
        {
            "STORE": "memory",
            "HEALTH_CHECK_KEY": "a-health-check-key-0123",
            "CLIENT_CERT_SUBJECT": summary["subject"],
            "CLIENT_CERT_ISSUER": summary["issuer"],
            "CLIENT_CERT_THUMBPRINTS": f"{summary['sha1']},{summary['sha256']}",
            "CLIENT_CERT_CA": str(generated / "ca.pem"),
        }
    )
    check_certificate(load(generated, "client.pem"), settings.client_certificate)


def test_generate_refuses_to_overwrite_and_changes_nothing(generated):
    before = (generated / "client.pem").read_bytes()
    result = cli("generate", "--out", str(generated))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (generated / "client.pem").read_bytes() == before


def test_generate_with_force_replaces_the_set(tmp_path):
    certs.generate(tmp_path)
    before = (tmp_path / "client.pem").read_bytes()
    result = cli("generate", "--out", str(tmp_path), "--force")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "client.pem").read_bytes() != before


def test_generate_prints_subject_issuer_thumbprints_and_expiry(tmp_path):
    result = cli("generate", "--out", str(tmp_path / "new"))
    summary = json.loads((tmp_path / "new" / "client.json").read_text())
    for value in (
        summary["subject"],
        summary["issuer"],
        summary["sha1"],
        summary["sha256"],
        summary["not_after"],
    ):
        assert value in result.stdout


def test_show_without_certificates_says_how_to_make_them(tmp_path):
    result = cli("show", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path}/ca.pem is missing; run: python -m tools.development.certs generate"
    )
