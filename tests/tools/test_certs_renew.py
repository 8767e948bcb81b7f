"""`python -m tools.development.certs renew`: a new client certificate for the same key, as Key Vault renews
with reuse_key, so a public-key pin keeps admitting it."""

import json

from cryptography.hazmat.primitives import serialization

from tools.development import certs


def _spki(certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_renew_keeps_the_key_and_replaces_the_certificate(tmp_path):
    certs.generate(tmp_path)
    before = certs.load_certificate(tmp_path / "client.pem")
    key = (tmp_path / "client.key").read_bytes()
    assert certs.main(["renew", "--out", str(tmp_path)]) == 0
    after = certs.load_certificate(tmp_path / "client.pem")
    assert after.serial_number != before.serial_number
    assert _spki(after) == _spki(before)
    assert (tmp_path / "client.key").read_bytes() == key
    assert (
        json.loads((tmp_path / "client.json").read_text())["sha256"]
        == certs.summary(after)["sha256"]
    )
    after.verify_directly_issued_by(certs.load_certificate(tmp_path / "ca.pem"))
