"""Certificate policy units: RFC 4514 names compared structurally, and the admission cache."""

from __future__ import annotations

import datetime

import pytest

from app.certificates import (
    CertificateRejected,
    ClientCertificatePolicy,
    ClientCertificateRules,
    name_key,
    parse_name,
)
from tests.app import certs


def rules_for(certificate, ca_certificates=()) -> ClientCertificateRules:
    return ClientCertificateRules(
        subject=name_key(certificate.subject),
        issuer=name_key(certificate.issuer),
        thumbprints=frozenset({certs.sha1(certificate)}),
        ca_certificates=ca_certificates,
    )


def test_parsed_name_equals_the_certificate_name_whatever_the_order(client_certificate):
    written = parse_name("CN=cloudauth-apim.azure-api.net, O=Contoso, C=AU")
    reversed_order = parse_name(client_certificate.subject.rfc4514_string())
    assert written == reversed_order == name_key(client_certificate.subject)


def test_name_values_keep_escaped_separators():
    assert parse_name(r"CN=a\,b,O=x") == parse_name('CN="a,b",O=x')
    assert parse_name(r"CN=a\,b,O=x") != parse_name("CN=a,CN=b,O=x")


def test_name_values_with_hex_escapes():
    assert parse_name(r"CN=caf\C3\A9") == parse_name("CN=café")


@pytest.mark.parametrize("text", ["", "CN", "CN=", "=x", "FOO=bar"])
def test_malformed_names_are_refused(text):
    with pytest.raises(ValueError):
        parse_name(text)


def test_admitted_header_is_cached_and_not_parsed_again(client_certificate, monkeypatch):
    policy = ClientCertificatePolicy(rules_for(client_certificate))
    value = certs.header_value(client_certificate)
    policy.check(value)
    calls = []
    monkeypatch.setattr("app.certificates.decode_header", lambda v: calls.append(v))
    policy.check(value)
    assert calls == []


def test_rejected_header_is_not_cached(authority, client_certificate):
    policy = ClientCertificatePolicy(rules_for(client_certificate))
    stranger = certs.header_value(certs.make_client(authority))
    for _ in range(2):
        with pytest.raises(CertificateRejected):
            policy.check(stranger)
    assert len(policy._admitted) == 0


def test_cache_is_bounded(authority):
    many = [certs.make_client(authority) for _ in range(5)]
    rules = ClientCertificateRules(
        subject=name_key(many[0].subject),
        issuer=name_key(many[0].issuer),
        thumbprints=frozenset(certs.sha1(c) for c in many),
    )
    policy = ClientCertificatePolicy(rules, cache_size=3)
    for certificate in many:
        policy.check(certs.header_value(certificate))
    assert len(policy._admitted) == 3
    assert certs.header_value(many[-1]) in policy._admitted
    assert certs.header_value(many[0]) not in policy._admitted


def test_cache_entry_never_outlives_the_certificate(authority, monkeypatch):
    short_lived = certs.make_client(authority, not_after=datetime.timedelta(hours=1))
    policy = ClientCertificatePolicy(rules_for(short_lived))
    value = certs.header_value(short_lived)
    policy.check(value)
    assert policy._admitted[value] == short_lived.not_valid_after_utc.timestamp()
    # Two hours on, the cached admission has lapsed and the full check rejects the expired certificate.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    monkeypatch.setattr("app.certificates.time.time", later.timestamp)
    monkeypatch.setattr("app.certificates._now", lambda: later)
    with pytest.raises(CertificateRejected, match="expired"):
        policy.check(value)
    assert value not in policy._admitted
