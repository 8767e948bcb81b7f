"""The client-certificate middleware: what App Service forwards in X-ARR-ClientCert, admitted or not.

Each rejection case configures the certificate's own thumbprint (unless the thumbprint is the
point), so that exactly one check fails.
"""

from __future__ import annotations

import base64
import datetime
import logging

import pytest
from cryptography.hazmat.primitives import serialization

from app.contract import CERTIFICATE_REJECTED
from app.settings import load_settings
from tests.app import certs

DAY = datetime.timedelta(days=1)


@pytest.fixture
def gate(make_client, environment):
    """Send one request with the given header value under settings admitting `admit`."""

    def send(header_value: str | None, admit=None, header_name="X-ARR-ClientCert", **env):
        overrides = {"CLIENT_CERT_THUMBPRINTS": certs.sha1(admit)} if admit is not None else {}
        client = make_client(load_settings({**environment, **overrides, **env}))
        headers = {header_name: header_value} if header_value is not None else {}
        return client.get("/api/TodoItem", headers=headers)

    return send


def assert_rejected(response, log, reason: str) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == CERTIFICATE_REJECTED
    warnings = [r for r in log.records if r.name == "app.client_certificate"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert reason in warnings[0].getMessage()


def test_valid_certificate_is_admitted(gate, client_certificate):
    assert gate(certs.header_value(client_certificate)).status_code == 200


def test_missing_header_is_rejected(gate, rejection_log):
    assert_rejected(gate(None), rejection_log, "missing")


def test_empty_header_is_rejected(gate, rejection_log):
    assert_rejected(gate(""), rejection_log, "empty")


def test_header_that_is_not_base64_is_rejected(gate, rejection_log):
    assert_rejected(gate("not*base64!"), rejection_log, "not base64")


def test_header_that_is_not_der_is_rejected(gate, rejection_log):
    garbage = base64.b64encode(b"definitely not a certificate").decode()
    assert_rejected(gate(garbage), rejection_log, "not a DER")


def test_header_with_pem_armour_is_rejected(gate, client_certificate, rejection_log):
    pem = client_certificate.public_bytes(serialization.Encoding.PEM).decode().replace("\n", " ")
    assert_rejected(gate(pem), rejection_log, "PEM armour")


def test_expired_certificate_is_rejected(gate, authority, rejection_log):
    expired = certs.make_client(authority, not_before=-30 * DAY, not_after=-DAY)
    assert_rejected(gate(certs.header_value(expired), admit=expired), rejection_log, "expired")


def test_not_yet_valid_certificate_is_rejected(gate, authority, rejection_log):
    future = certs.make_client(authority, not_before=DAY, not_after=30 * DAY)
    assert_rejected(
        gate(certs.header_value(future), admit=future), rejection_log, "not valid before"
    )


def test_wrong_subject_is_rejected(gate, authority, rejection_log):
    other = certs.make_client(authority, common_name="someone-else.example")
    assert_rejected(gate(certs.header_value(other), admit=other), rejection_log, "subject")


def test_wrong_issuer_is_rejected(gate, rejection_log):
    other_ca = certs.make_authority("Other CA")
    other = certs.make_client(other_ca)
    assert_rejected(gate(certs.header_value(other), admit=other), rejection_log, "issuer")


def test_unknown_thumbprint_is_rejected(gate, authority, rejection_log):
    sibling = certs.make_client(authority)  # same names, same CA, different key
    assert_rejected(gate(certs.header_value(sibling)), rejection_log, "thumbprint")


def test_certificate_from_a_different_ca_with_the_same_name_is_rejected(gate, rejection_log):
    impostor_ca = certs.make_authority()  # same name as the configured CA, different key
    impostor = certs.make_client(impostor_ca)
    assert_rejected(gate(certs.header_value(impostor), admit=impostor), rejection_log, "chain")


def test_certificate_without_client_auth_usage_is_rejected(gate, authority, rejection_log):
    server_only = certs.make_client(authority, client_auth=False)
    response = gate(certs.header_value(server_only), admit=server_only)
    assert_rejected(response, rejection_log, "EKU")


def test_certificate_without_any_extended_key_usage_is_rejected(gate, authority, rejection_log):
    no_usage = certs.make_client(authority, client_auth=None)
    response = gate(certs.header_value(no_usage), admit=no_usage)
    assert_rejected(response, rejection_log, "clientAuth")


def test_without_a_configured_ca_the_chain_is_not_checked(gate, environment):
    impostor = certs.make_client(certs.make_authority())
    response = gate(certs.header_value(impostor), admit=impostor, CLIENT_CERT_CA="")
    assert response.status_code == 200


def test_duplicated_header_is_rejected(make_client, settings, client_certificate, rejection_log):
    value = certs.header_value(client_certificate)
    client = make_client(settings)
    headers = [("X-ARR-ClientCert", value), ("X-ARR-ClientCert", value)]
    response = client.get("/api/TodoItem", headers=headers)
    assert_rejected(response, rejection_log, "more than once")


def test_header_name_is_configurable(gate, client_certificate):
    value = certs.header_value(client_certificate)
    assert (
        gate(value, header_name="X-Client-Cert", CLIENT_CERT_HEADER="X-Client-Cert").status_code
        == 200
    )
    assert gate(value, CLIENT_CERT_HEADER="X-Client-Cert").status_code == 403


@pytest.mark.parametrize(
    "thumbprint",
    [
        pytest.param(lambda c: certs.sha1(c).upper(), id="sha1-uppercase"),
        pytest.param(
            lambda c: ":".join(certs.sha1(c)[i : i + 2] for i in range(0, 40, 2)), id="sha1-colons"
        ),
        pytest.param(
            lambda c: " ".join(certs.sha1(c)[i : i + 4] for i in range(0, 40, 4)), id="sha1-spaces"
        ),
        pytest.param(lambda c: certs.sha256(c), id="sha256"),
        pytest.param(lambda c: certs.sha256(c).upper(), id="sha256-uppercase"),
    ],
)
def test_thumbprint_forms_are_accepted(gate, client_certificate, thumbprint):
    value = certs.header_value(client_certificate)
    assert gate(value, CLIENT_CERT_THUMBPRINTS=thumbprint(client_certificate)).status_code == 200


def test_any_of_several_thumbprints_is_accepted(gate, authority, client_certificate):
    next_certificate = certs.make_client(authority)
    both = f"{certs.sha1(client_certificate)}, {certs.sha256(next_certificate)}"
    for certificate in (client_certificate, next_certificate):
        assert (
            gate(certs.header_value(certificate), CLIENT_CERT_THUMBPRINTS=both).status_code == 200
        )


@pytest.mark.parametrize(
    "subject",
    [
        "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU",
        "C=AU,O=Contoso,CN=cloudauth-apim.azure-api.net",
        "cn=cloudauth-apim.azure-api.net, o=Contoso, c=AU",
        "  CN = cloudauth-apim.azure-api.net ;O=contoso;C=au ",
        "CN=cloudauth-apim.azure-api.net+O=Contoso,C=AU",
        "2.5.4.3=cloudauth-apim.azure-api.net,O=Contoso,C=AU",
    ],
)
def test_subject_is_compared_after_normalising(gate, client_certificate, subject):
    assert (
        gate(certs.header_value(client_certificate), CLIENT_CERT_SUBJECT=subject).status_code == 200
    )


def test_subject_with_an_extra_attribute_is_not_the_same(gate, client_certificate):
    subject = certs.CLIENT_SUBJECT + ",OU=Ops"
    assert (
        gate(certs.header_value(client_certificate), CLIENT_CERT_SUBJECT=subject).status_code == 403
    )


def test_issuer_is_compared_after_normalising(gate, client_certificate):
    issuer = "c=AU, o=CONTOSO, cn=contoso  test ca"
    assert (
        gate(certs.header_value(client_certificate), CLIENT_CERT_ISSUER=issuer).status_code == 200
    )


def test_surrounding_whitespace_in_the_header_is_tolerated(gate, client_certificate):
    assert gate(f" {certs.header_value(client_certificate)} ").status_code == 200


def test_development_may_turn_validation_off(make_client, environment, caplog):
    caplog.set_level(logging.WARNING, logger="app")
    env = {**environment, "APP_ENV": "development", "CLIENT_CERT_VALIDATION": "off"}
    client = make_client(load_settings(env))
    assert client.get("/api/TodoItem").status_code == 200
    assert "CLIENT CERTIFICATE VALIDATION IS OFF" in caplog.text
