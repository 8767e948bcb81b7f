"""A small OpenID issuer on 127.0.0.1 for the tests and the benchmark: Entra-shaped metadata and a
JWKS over real HTTP, served from a thread, counting what it is asked; tokens minted with PyJWT.

    with LocalIssuer(new_signing_key(tmp_path, "key-1")) as issuer:
        settings = {**environment, **issuer.app_settings()}
        token = issuer.token(now, roles=["Todo.Read"])

Keys are RSA 2048 made with `cryptography`, their private halves written to the given folder.
`fault` makes the JWKS (or the metadata) answer badly, for the outage tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from app.contract import READ_PERMISSION, WRITE_PERMISSION
from tests.app.local_server import LocalHTTPServer

TENANT_ID = "3f1c6a4e-2b7d-4e8a-9c15-7d2e0b9a4f61"
OTHER_TENANT_ID = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
AUDIENCE = "api://todo-api-test"
CLIENT_ID = "5d2c7b1a-8e4f-4c3d-9b2a-1f0e6d5c4b3a"
OTHER_CLIENT_ID = "0e1d2c3b-4a59-4867-b5a4-c3d2e1f0a9b8"
CALLER_ID = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
TOKEN_LIFETIME_SECONDS = 3600
METADATA = "metadata"
JWKS = "jwks"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def jwk(self) -> dict:
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_signing_key(folder: Path, kid: str) -> SigningKey:
    """A fresh RSA 2048 key; its private half is written to `folder/<kid>.pem`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / f"{kid}.pem").write_bytes(pem)
    return SigningKey(kid, key)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(key: SigningKey, claims: dict) -> str:
    """The classic confusion attack: HS256 with the issuer's public key (PEM) as the secret.
    Built by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    header = _segment(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = _segment(json.dumps(claims).encode())
    signature = hmac.new(key.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_segment(signature)}"


@dataclass
class Fault:
    """What the issuer answers instead, at `document` (METADATA or JWKS)."""

    document: str = JWKS
    status: int = 200
    body: bytes = b"{}"
    chunked: bool = False  # no Content-Length: the body's size shows only while it is read
    headers: tuple[tuple[str, str], ...] = ()


class LocalIssuer(LocalHTTPServer):
    """Serves `/<tenant>/v2.0/.well-known/openid-configuration` and `/<tenant>/discovery/v2.0/keys`
    on 127.0.0.1 with the keys in `published`."""

    def __init__(self, *published: SigningKey, tenant_id: str = TENANT_ID) -> None:
        self.published = list(published)
        self.tenant_id = tenant_id
        self.fault: Fault | None = None
        self.metadata_issuer: str | None = None  # another issuer named in the metadata
        self.jwks_uri: str | None = None  # another jwks_uri named in the metadata
        self.asked: Counter[str] = Counter()  # METADATA / JWKS -> requests served
        self._lock = threading.Lock()
        super().__init__(self._handler())
        # Entra's shapes: https://login.microsoftonline.com/<tenant>/v2.0 and so on.
        self.base = f"http://127.0.0.1:{self.port}/{tenant_id}"
        self.issuer = f"{self.base}/v2.0"
        self.openid_config_url = f"{self.issuer}/.well-known/openid-configuration"
        self.jwks_url = f"{self.base}/discovery/v2.0/keys"

    # -- the app's settings -------------------------------------------------------------------

    def app_settings(self) -> dict[str, str]:
        """The app's AUTH_* settings for this issuer (the OpenID URL derived from the issuer)."""
        return {
            "AUTH_MODE": "entra",
            "AUTH_ISSUER": self.issuer,
            "AUTH_AUDIENCE": f"{AUDIENCE},{CLIENT_ID}",
            "AUTH_TENANT_ID": self.tenant_id,
            "AUTH_ALLOWED_CLIENT_IDS": CLIENT_ID,
        }

    def fetches(self) -> tuple[int, int]:
        """(metadata requests, JWKS requests) served so far."""
        with self._lock:
            return self.asked[METADATA], self.asked[JWKS]

    # -- tokens -----------------------------------------------------------------------------

    def claims(self, now: float, **changes) -> dict:
        """An Entra v2.0 application token's claims for CALLER_ID with both app roles; a change
        to None removes the claim."""
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "tid": self.tenant_id,
            "oid": CALLER_ID,
            "sub": CALLER_ID,
            "azp": CLIENT_ID,
            "roles": [READ_PERMISSION, WRITE_PERMISSION],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + TOKEN_LIFETIME_SECONDS,
            "ver": "2.0",
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, now: float, key: SigningKey | None = None, kid: str | None = None,
              **changes) -> str:
        """A token signed by `key` (the first published by default), naming `kid` (the key's)."""
        key = key or self.published[0]
        headers = {"kid": kid or key.kid}
        return jwt.encode(self.claims(now, **changes), key.private_key, "RS256", headers)

    # -- the server ---------------------------------------------------------------------------

    def _documents(self) -> dict[str, tuple[str, bytes]]:
        metadata = {
            "issuer": self.metadata_issuer or self.issuer,
            "jwks_uri": self.jwks_uri or self.jwks_url,
            "token_endpoint": f"{self.base}/oauth2/v2.0/token",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        jwks = {"keys": [key.jwk() for key in self.published]}
        path = f"/{self.tenant_id}"
        return {
            f"{path}/v2.0/.well-known/openid-configuration": (
                METADATA,
                json.dumps(metadata).encode(),
            ),
            f"{path}/discovery/v2.0/keys": (JWKS, json.dumps(jwks).encode()),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                found = issuer._documents().get(self.path)
                if found is None:
                    self._answer(404, b"{}")
                    return
                document, body = found
                with issuer._lock:
                    issuer.asked[document] += 1
                    fault = issuer.fault
                if fault is not None and fault.document == document:
                    self._answer(fault.status, fault.body, fault.chunked, fault.headers)
                else:
                    self._answer(200, body)

            def _answer(self, status, body, chunked=False, headers=()) -> None:
                try:
                    self._send(status, body, chunked, headers)
                except (BrokenPipeError, ConnectionResetError):  # the app stopped reading
                    self.close_connection = True

            def _send(self, status, body, chunked, headers) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers:
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 16 * 1024):
                        chunk = body[start : start + 16 * 1024]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # quiet
                pass

        return Handler
