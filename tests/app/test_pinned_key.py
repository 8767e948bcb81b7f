"""CLIENT_CERT_PINNED_KEYS: a pinned public key admits the renewed certificate (Key Vault renews
with the same key), so a renewal needs no new setting; another key is still rejected."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography.hazmat.primitives import serialization

from app.certificates import CertificateRejected, ClientCertificatePolicy
from app.settings import SettingsError, load_settings
from tests.app import certs


def _der(certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture
def key():
    return certs.new_key()


@pytest.fixture
def pinned(environment, authority, key):
    """Settings that pin the key of today's certificate (as the stacks pass it: base64 DER)."""
    today = certs.make_client(authority, key=key)
    return {
        **environment,
        "CLIENT_CERT_THUMBPRINTS": "",
        "CLIENT_CERT_PINNED_KEYS": _der(today),
    }


def policy(environ) -> ClientCertificatePolicy:
    return ClientCertificatePolicy(load_settings(environ).client_certificate)


def test_the_renewed_certificate_with_the_same_key_is_admitted(pinned, authority, key):
    renewed = certs.make_client(authority, key=key, not_after=datetime.timedelta(days=400))
    policy(pinned).check(certs.header_value(renewed))


def test_a_certificate_with_another_key_is_rejected(pinned, authority):
    other = certs.make_client(authority)  # same subject and issuer, new key
    with pytest.raises(CertificateRejected, match="public key is not pinned"):
        policy(pinned).check(certs.header_value(other))


def test_a_pinned_key_can_be_given_as_subject_public_key_info(environment, authority, key):
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    environ = {
        **environment,
        "CLIENT_CERT_THUMBPRINTS": "",
        "CLIENT_CERT_PINNED_KEYS": base64.b64encode(spki).decode(),
    }
    policy(environ).check(certs.header_value(certs.make_client(authority, key=key)))


def test_an_expired_certificate_is_rejected_even_with_the_pinned_key(pinned, authority, key):

    expired = certs.make_client(
        authority,
        key=key,
        not_before=datetime.timedelta(days=-30),
        not_after=datetime.timedelta(days=-1),
    )
    with pytest.raises(CertificateRejected, match="expired"):
        policy(pinned).check(certs.header_value(expired))


def test_a_malformed_pin_is_refused_in_one_line(environment):
    with pytest.raises(SettingsError) as error:
        load_settings({**environment, "CLIENT_CERT_PINNED_KEYS": "not base64!"})
    assert str(error.value) == (
        "CLIENT_CERT_PINNED_KEYS: is not base64 (a DER certificate or public key)"
    )


def test_neither_thumbprints_nor_pins_is_refused(environment):
    with pytest.raises(
        SettingsError, match="^CLIENT_CERT_THUMBPRINTS: is required .* CLIENT_CERT_PINNED_KEYS"
    ):
        load_settings({**environment, "CLIENT_CERT_THUMBPRINTS": ""})
