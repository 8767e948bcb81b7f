"""Test certificates made with `cryptography`: a CA, and client certificates varied one way each."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_SUBJECT = "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU"
CA_SUBJECT = "CN=Contoso Test CA,O=Contoso,C=AU"
_UTC = datetime.UTC


def _name(common_name: str) -> x509.Name:
    # Built in the order people write it (CN first), as tools like New-SelfSignedCertificate do.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "AU"),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def new_key() -> ec.EllipticCurvePrivateKey:
    return _key()


def make_authority(common_name: str = "Contoso Test CA") -> Authority:
    key = _key()
    name = _name(common_name)
    now = datetime.datetime.now(_UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def make_client(
    authority: Authority,
    *,
    common_name: str = "cloudauth-apim.azure-api.net",
    not_before: datetime.timedelta = datetime.timedelta(days=-1),
    not_after: datetime.timedelta = datetime.timedelta(days=30),
    client_auth: bool | None = True,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A client certificate signed by the authority; validity is relative to now.

    client_auth: True for the clientAuth usage, False for serverAuth only, None for no EKU at all.
    key: the certificate's key (a renewal that reuses it); a new one by default.
    """
    key = key or _key()
    now = datetime.datetime.now(_UTC)
    issuer_ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    )
    if client_auth is not None:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(authority.key, hashes.SHA256())


def header_value(certificate: x509.Certificate) -> str:
    """The certificate as App Service forwards it: base64 of the DER bytes."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def sha1(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA1()).hex()


def sha256(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()
