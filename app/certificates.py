"""Client-certificate policy: what App Service forwards in X-ARR-ClientCert, and whether to admit it.

The header holds the caller's certificate as base64 DER. A certificate is admitted when it parses,
carries the configured subject and issuer, has one of the configured thumbprints or one of the
pinned public keys, is inside its validity window and, when a CA is configured, chains to that
CA with the clientAuth usage. A pinned public key (the SubjectPublicKeyInfo of a given
certificate) admits every certificate for that key: Key Vault renews the client certificate with
the same key (`reuse_key`), so a renewal needs no new setting (docs/deploy.md, "Certificate
renewal").
Admitted header values are cached (bounded, never past the certificate's expiry).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

# Attribute types people write in RFC 4514 names (and the Azure portal's variants), by OID.
_ATTRIBUTE_TYPES = {
    "cn": NameOID.COMMON_NAME,
    "o": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "c": NameOID.COUNTRY_NAME,
    "l": NameOID.LOCALITY_NAME,
    "st": NameOID.STATE_OR_PROVINCE_NAME,
    "s": NameOID.STATE_OR_PROVINCE_NAME,
    "street": NameOID.STREET_ADDRESS,
    "dc": NameOID.DOMAIN_COMPONENT,
    "uid": NameOID.USER_ID,
    "e": NameOID.EMAIL_ADDRESS,
    "emailaddress": NameOID.EMAIL_ADDRESS,
    "serialnumber": NameOID.SERIAL_NUMBER,
}
_DOTTED_OID = re.compile(r"^(?:oid\.)?([0-2](?:\.\d+)+)$", re.IGNORECASE)
_HEX_PAIR = re.compile(r"[0-9a-fA-F]{2}")
_THUMBPRINT_LENGTHS = (40, 64)  # SHA-1 (as the Azure portal shows it) or SHA-256, in hex

CACHE_SIZE = 256

# A distinguished name compared structurally: sorted (attribute OID, normalised value) pairs.
NameKey = tuple[tuple[str, str], ...]


class CertificateRejected(Exception):
    """The forwarded certificate is not admitted; the message is the reason (logged, never sent)."""


def _normalise_value(value: str) -> str:
    return " ".join(value.split()).casefold()


def _split_unescaped(text: str, separators: str) -> list[str]:
    """Split on separators that are neither backslash-escaped nor inside double quotes."""
    parts, current, index, quoted = [], [], 0, False
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    out, index = bytearray(), 0
    while index < len(value):
        char = value[index]
        if char == "\\" and _HEX_PAIR.fullmatch(value[index + 1 : index + 3]):
            out.append(int(value[index + 1 : index + 3], 16))
            index += 3
        elif char == "\\" and index + 1 < len(value):
            out += value[index + 1].encode()
            index += 2
        else:
            out += char.encode()
            index += 1
    return out.decode("utf-8", errors="strict")


def _attribute_oid(attribute_type: str) -> str:
    key = attribute_type.strip().casefold()
    if key in _ATTRIBUTE_TYPES:
        return _ATTRIBUTE_TYPES[key].dotted_string
    dotted = _DOTTED_OID.match(key)
    if dotted:
        return dotted.group(1)
    raise ValueError(f"unknown attribute type {attribute_type.strip()!r}")


def parse_name(text: str) -> NameKey:
    """Parse an RFC 4514 name (as people write it: any order, any case of types, spaces) to a key."""
    pairs = []
    for rdn in _split_unescaped(text, ",;"):
        for attribute in _split_unescaped(rdn, "+"):
            attribute_type, sep, value = attribute.partition("=")
            if not sep or not attribute_type.strip() or not value.strip():
                raise ValueError(f"{attribute.strip()!r} is not TYPE=value")
            pairs.append((_attribute_oid(attribute_type), _normalise_value(_unescape(value))))
    return tuple(sorted(pairs))


def name_key(name: x509.Name) -> NameKey:
    return tuple(
        sorted(
            (attribute.oid.dotted_string, _normalise_value(str(attribute.value)))
            for attribute in name
        )
    )


def parse_thumbprint(text: str) -> str:
    """Normalise a SHA-1 or SHA-256 thumbprint: lowercase hex, colons and spaces removed."""
    digits = re.sub(r"[\s:]", "", text).lower()
    if len(digits) not in _THUMBPRINT_LENGTHS or not re.fullmatch(r"[0-9a-f]+", digits):
        raise ValueError(f"{text.strip()!r} is not a SHA-1 (40 hex) or SHA-256 (64 hex) thumbprint")
    return digits


def public_key_info(certificate: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo, DER: what a public-key pin compares."""
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_pinned_key(text: str) -> bytes:
    """A base64 DER certificate (as Key Vault's certificate_data_base64) or SubjectPublicKeyInfo
    -> the SubjectPublicKeyInfo DER."""
    try:
        der = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (a DER certificate or public key)") from None
    try:
        return public_key_info(x509.load_der_x509_certificate(der))
    except ValueError:
        pass
    try:
        serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise ValueError("is neither a DER certificate nor a DER public key") from None
    return der


def load_ca_certificates(pem: bytes) -> tuple[x509.Certificate, ...]:
    certificates = tuple(x509.load_pem_x509_certificates(pem))
    if not certificates:
        raise ValueError("no certificate in the PEM file")
    return certificates


@dataclass(frozen=True)
class ClientCertificateRules:
    """What a forwarded client certificate must satisfy (parsed once from the settings)."""

    subject: NameKey
    issuer: NameKey
    thumbprints: frozenset[str]
    ca_certificates: tuple[x509.Certificate, ...] = ()
    public_keys: frozenset[bytes] = frozenset()  # SubjectPublicKeyInfo DER


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def decode_header(value: str) -> x509.Certificate:
    text = value.strip()
    if not text:
        raise CertificateRejected("certificate header is empty")
    if text.startswith("-----BEGIN"):
        raise CertificateRejected("certificate header holds PEM armour, expected base64 DER")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateRejected("certificate header is not base64") from None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise CertificateRejected("certificate header is not a DER X.509 certificate") from None


def _verify_chain(certificate: x509.Certificate, rules: ClientCertificateRules) -> None:
    now = _now()
    verifier = (
        PolicyBuilder().store(Store(list(rules.ca_certificates))).time(now).build_client_verifier()
    )
    try:
        verifier.verify(certificate, [])
    except VerificationError as error:
        raise CertificateRejected(
            f"certificate does not chain to the configured CA: {error}"
        ) from None
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = ()
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateRejected("certificate lacks the clientAuth extended key usage")


def check_certificate(certificate: x509.Certificate, rules: ClientCertificateRules) -> None:
    """Raise CertificateRejected with the reason unless the certificate satisfies the rules."""
    if name_key(certificate.subject) != rules.subject:
        raise CertificateRejected(
            f"subject {certificate.subject.rfc4514_string()!r} is not configured"
        )
    if name_key(certificate.issuer) != rules.issuer:
        raise CertificateRejected(
            f"issuer {certificate.issuer.rfc4514_string()!r} is not configured"
        )
    sha1 = certificate.fingerprint(hashes.SHA1()).hex()
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    pinned = bool(rules.public_keys) and public_key_info(certificate) in rules.public_keys
    if sha1 not in rules.thumbprints and sha256 not in rules.thumbprints and not pinned:
        raise CertificateRejected(
            f"thumbprint {sha1} (SHA-1) is not configured and the public key is not pinned"
        )
    now = _now()
    if now < certificate.not_valid_before_utc:
        raise CertificateRejected(
            f"certificate is not valid before {certificate.not_valid_before_utc}"
        )
    if now >= certificate.not_valid_after_utc:
        raise CertificateRejected(f"certificate expired at {certificate.not_valid_after_utc}")
    if rules.ca_certificates:
        _verify_chain(certificate, rules)


class ClientCertificatePolicy:
    """Admits or rejects header values; remembers admitted values until their certificate expires."""

    def __init__(self, rules: ClientCertificateRules, cache_size: int = CACHE_SIZE) -> None:
        self.rules = rules
        self.cache_size = cache_size
        self._admitted: dict[str, float] = {}  # header value -> certificate expiry (epoch seconds)

    def check(self, header_value: str) -> None:
        """Return if the header value is admitted, else raise CertificateRejected."""
        expiry = self._admitted.get(header_value)
        if expiry is not None and time.time() < expiry:
            return
        self._admitted.pop(header_value, None)
        certificate = decode_header(header_value)
        check_certificate(certificate, self.rules)
        self._remember(header_value, certificate.not_valid_after_utc.timestamp())

    def _remember(self, header_value: str, expiry: float) -> None:
        while len(self._admitted) >= self.cache_size:
            del self._admitted[next(iter(self._admitted))]  # oldest first
        self._admitted[header_value] = expiry
