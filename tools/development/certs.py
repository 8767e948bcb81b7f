"""Certificates for the client-certificate path: a local CA, the client certificate API Management
presents, server certificates for the local front ends, and a password-protected PFX.

    python -m tools.development.certs generate [--out .certs] [--force]
    python -m tools.development.certs renew [--out .certs]    a new client certificate for the same key
    python -m tools.development.certs show [--out .certs]

`generate` refuses to overwrite existing material unless --force; every file is written
atomically. `client.json` (subject, issuer, sha1, sha256, not_after) feeds the app's settings
(CLIENT_CERT_SUBJECT / _ISSUER / _THUMBPRINTS) and the stacks' configuration.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.cli import CliError, run_cli, write_atomic

DEFAULT_OUT = Path(".certs")
ORGANIZATION = "Contoso"
COUNTRY = "AU"
CA_COMMON_NAME = "Contoso Local Test CA"
CLIENT_COMMON_NAME = "cloudauth-apim.azure-api.net"
SERVER_COMMON_NAME = "localhost"
SERVER_DNS_NAMES = ("localhost",)
SERVER_IP_ADDRESSES = ("127.0.0.1",)
CA_DAYS = 825
LEAF_DAYS = 365
RSA_BITS = 2048  # RSA: what API Management and Key Vault import without surprises

CA_CERT, CA_KEY = "ca.pem", "ca.key"
CLIENT_CERT, CLIENT_KEY = "client.pem", "client.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
PFX, PFX_PASSWORD = "apim-client.pfx", "apim-client.pfx.password"
SUMMARY = "client.json"
ALL_FILES = (
    CA_CERT,
    CA_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
    SERVER_CERT,
    SERVER_KEY,
    PFX,
    PFX_PASSWORD,
    SUMMARY,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
        ]
    )


def name_text(name: x509.Name) -> str:
    """RFC 4514 text in the order the name was built (CN first), as the Azure portal shows it."""
    return ",".join(rdn.rfc4514_string() for rdn in name.rdns)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


def _key_usage(*, cert_sign: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca() -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = _name(CA_COMMON_NAME)
    certificate = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True, key_encipherment=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _leaf(
    ca: Issued,
    common_name: str,
    usage,
    alt_names: list[x509.GeneralName],
    key: rsa.RSAPrivateKey | None = None,
) -> Issued:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    builder = (
        _builder(_name(common_name), ca.certificate.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_client(ca: Issued, key: rsa.RSAPrivateKey | None = None) -> Issued:
    # A subjectAltName too: RFC 5280 path validation (cryptography's verifier) requires one.
    alt_names = [x509.DNSName(CLIENT_COMMON_NAME)]
    return _leaf(ca, CLIENT_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, alt_names, key)


def make_server(ca: Issued) -> Issued:
    alt_names = [x509.DNSName(name) for name in SERVER_DNS_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in SERVER_IP_ADDRESSES
    ]
    return _leaf(ca, SERVER_COMMON_NAME, ExtendedKeyUsageOID.SERVER_AUTH, alt_names)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pfx_bytes(client: Issued, ca: Issued, password: str) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"apim-client",
        client.key,
        client.certificate,
        [ca.certificate],
        serialization.BestAvailableEncryption(password.encode()),
    )


def summary(certificate: x509.Certificate) -> dict[str, str]:
    """What the app settings and the stacks need to admit this certificate."""
    return {
        "subject": name_text(certificate.subject),
        "issuer": name_text(certificate.issuer),
        "sha1": certificate.fingerprint(hashes.SHA1()).hex().upper(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex().upper(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }


def material(ca: Issued, client: Issued, server: Issued, password: str) -> dict[str, bytes]:
    """Every file `generate` writes, by name."""
    return {
        CA_CERT: certificate_pem(ca.certificate),
        CA_KEY: key_pem(ca.key),
        CLIENT_CERT: certificate_pem(client.certificate),
        CLIENT_KEY: key_pem(client.key),
        SERVER_CERT: certificate_pem(server.certificate),
        SERVER_KEY: key_pem(server.key),
        PFX: pfx_bytes(client, ca, password),
        PFX_PASSWORD: (password + "\n").encode(),
        SUMMARY: (json.dumps(summary(client.certificate), indent=2) + "\n").encode(),
    }


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data)
    os.chmod(path, 0o600)


def generate(out: Path, force: bool = False) -> dict[str, Path]:
    """Write the full set into `out`; refuse when any of it exists unless `force`."""
    existing = [name for name in ALL_FILES if (out / name).exists()]
    if existing and not force:
        raise CliError(
            f"{out} already holds {', '.join(existing)}; pass --force to replace the certificates"
        )
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    ca = make_ca()
    files = material(ca, make_client(ca), make_server(ca), secrets.token_urlsafe(24))
    for name, data in files.items():
        _write_private(out / name, data)
    return {name: out / name for name in files}


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CliError(f"{path} is missing; run: python -m tools.development.certs generate") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CliError(f"{path} is not an RSA private key")
    return key


def renew(out: Path) -> x509.Certificate:
    """A new client certificate (new serial and validity) for the same key, as Key Vault renews
    with `reuse_key`: client.pem, the PFX and client.json are replaced, client.key is kept."""
    ca = Issued(load_certificate(out / CA_CERT), _load_key(out / CA_KEY))
    client = make_client(ca, _load_key(out / CLIENT_KEY))
    password = (out / PFX_PASSWORD).read_text().strip()
    _write_private(out / PFX, pfx_bytes(client, ca, password))
    _write_private(
        out / SUMMARY, (json.dumps(summary(client.certificate), indent=2) + "\n").encode()
    )
    _write_private(out / CLIENT_CERT, certificate_pem(client.certificate))
    return client.certificate


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CliError(f"{path} is missing; run: python -m tools.development.certs generate") from None
    except ValueError:
        raise CliError(f"{path} is not a PEM certificate") from None


def describe(label: str, certificate: x509.Certificate) -> str:
    facts = summary(certificate)
    return "\n".join(
        [
            f"{label}:",
            f"  subject  {facts['subject']}",
            f"  issuer   {facts['issuer']}",
            f"  SHA-1    {facts['sha1']}",
            f"  SHA-256  {facts['sha256']}",
            f"  expires  {facts['not_after']}",
        ]
    )


def show(out: Path) -> str:
    labels = (("CA", CA_CERT), ("client (API Management)", CLIENT_CERT), ("server", SERVER_CERT))
    return "\n".join(describe(label, load_certificate(out / name)) for label, name in labels)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.development.certs", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("generate", "write a new set"),
        ("renew", "a new client certificate for the same key (as Key Vault renews)"),
        ("show", "print the current set"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder (default .certs)")
        if command == "generate":
            sub.add_argument("--force", action="store_true", help="replace existing material")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def command() -> int:
        if args.command == "generate":
            generate(args.out, args.force)
            print(f"wrote {', '.join(ALL_FILES)} into {args.out}/")
        if args.command == "renew":
            renew(args.out)
            print(f"renewed {CLIENT_CERT}, {PFX} and {SUMMARY} in {args.out}/ (same {CLIENT_KEY})")
        print(show(args.out))
        return 0

    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
