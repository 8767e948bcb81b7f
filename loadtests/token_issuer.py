"""The local stand-in for Microsoft Entra ID as a token issuer: Entra-shaped OpenID metadata and a
JWKS served on 127.0.0.1, and access tokens minted for the topology's callers.

    python -m loadtests.token_issuer serve --config .local/topology/issuer.json
    python -m loadtests.token_issuer token --config .local/topology/issuer.json [--read-only]
        [--oid GUID]    print a token for curl (Authorization: Bearer <token>)

Its signing key is RSA 2048, made with `cryptography` into the certificates folder (git-ignored,
0600, reused when present: KEY_FILE; the public half PUBLIC_KEY_FILE is what the gateway's
`jwt_verify` reads). The topology writes an IssuerConfig (CONFIG_FILE in its workdir: the port,
the key's path, never the key) that the issuer process and Locust read; Locust mints each of its
users a token with an `oid` of its own from the key file (in the Locust process, so the minting
needs no round trip; PyJWT is imported only then).

Entra's shapes: issuer `<base>/<tenant>/v2.0`, metadata at `<issuer>/.well-known/openid-configuration`
(what the app derives from AUTH_ISSUER), keys at `<base>/<tenant>/discovery/v2.0/keys`; a v2.0
application token carries iss, aud, tid, oid, sub, azp, roles, iat, nbf, exp, ver.

The same server stands in for the Instance Metadata Service of an Azure Load Testing engine that
holds the test's engine identity (a user-assigned managed identity: ENGINE_CLIENT_ID, its service
principal ENGINE_OBJECT_ID, an allowed client with both roles, as the stack makes it):
`GET IMDS_TOKEN_PATH?api-version=...&resource=...[&client_id=...]` with `Metadata: true` answers
IMDS's JSON (access_token, expires_on, expires_in, resource, token_type, client_id); 400 without
the header or the api-version, for a client id that is not the engine's ("Identity not found")
and for a resource that is not one of the API's audiences. Point Locust's LOCUST_IMDS_ENDPOINT
at it (loadtests/locust_support.py).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from app.contract import AUTH_ENTRA, READ_PERMISSION, WRITE_PERMISSION

# The stand-in's directory: a tenant, the API's registration (its identifier URI and client id
# are both accepted audiences, as Entra issues either), the load tests' client registration and
# another client application of the same tenant (not allowed to call the API).
TENANT_ID = "7d5f6a0e-3c1b-4f29-9e84-2b6d0c1a5f37"
API_CLIENT_ID = "c4a1e9d2-6b3f-4d8a-a1e7-5f20b9c3d6e4"
AUDIENCE = "api://todo-api-local"
LOAD_TEST_CLIENT_ID = "1e8b3f6c-9a2d-4c7e-b5f1-0d4a6e2c8b93"
OTHER_CLIENT_ID = "a9c27e41-5d08-4b6f-8e3a-c1f4b7d2e605"
# Azure Load Testing's engine identity (the stack's output load_test_engine_identity): the
# user-assigned identity's client id, and its service principal's object id (its tokens' oid).
ENGINE_CLIENT_ID = "5b0c7e2d-8f41-4a93-b6d2-9e1f3c7a0d58"
ENGINE_OBJECT_ID = "e2a7f9c1-4d3b-4b6e-8c0a-7f5d2e1b9c46"
IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"
TOKEN_LIFETIME_SECONDS = 3600
SIGNING_ALGORITHM = "RS256"
KEY_FILE = "issuer.key"
PUBLIC_KEY_FILE = "issuer-public.pem"
CONFIG_FILE = "issuer.json"
WELL_KNOWN = "/.well-known/openid-configuration"
ALL_PERMISSIONS = (READ_PERMISSION, WRITE_PERMISSION)


@dataclass(frozen=True)
class IssuerConfig:
    """One running issuer: where it listens and which key it publishes."""

    port: int
    key_file: str  # the private key (PEM); the public half beside it (PUBLIC_KEY_FILE)
    kid: str
    tenant_id: str = TENANT_ID
    audiences: tuple[str, ...] = (AUDIENCE, API_CLIENT_ID)
    client_id: str = LOAD_TEST_CLIENT_ID
    # The load tests' client and the engine identity (the stack allows both on Azure).
    allowed_clients: tuple[str, ...] = field(default=(LOAD_TEST_CLIENT_ID, ENGINE_CLIENT_ID))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/v2.0"

    @property
    def metadata_path(self) -> str:
        return f"/{self.tenant_id}/v2.0{WELL_KNOWN}"

    @property
    def jwks_path(self) -> str:
        return f"/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def public_key_file(self) -> str:
        return str(Path(self.key_file).with_name(PUBLIC_KEY_FILE))

    def app_settings(self) -> dict[str, str]:
        """The app's AUTH_* settings (app/settings.py; the same names as on Azure). The OpenID
        metadata URL is left to the app to derive from the issuer, as on Azure."""
        return {
            "AUTH_MODE": AUTH_ENTRA,
            "AUTH_ISSUER": self.issuer,
            "AUTH_AUDIENCE": ",".join(self.audiences),
            "AUTH_TENANT_ID": self.tenant_id,
            "AUTH_ALLOWED_CLIENT_IDS": ",".join(self.allowed_clients),
        }

    def write(self, path: Path) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> IssuerConfig:
        try:
            values = json.loads(Path(path).read_text())
            return cls(
                **{
                    **values,
                    "audiences": tuple(values["audiences"]),
                    "allowed_clients": tuple(values["allowed_clients"]),
                }
            )
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise IssuerError(f"issuer config {path}: {type(error).__name__}: {error}") from None


class IssuerError(Exception):
    """The issuer's key or config cannot be used (one line)."""


# -- the signing key ------------------------------------------------------------------------------


def ensure_signing_key(folder: Path) -> Path:
    """The issuer's private key in `folder` (made on first use, kept afterwards), with its public
    half beside it; returns the private key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path, public = folder / KEY_FILE, folder / PUBLIC_KEY_FILE
    made = not path.exists()
    if made:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
    if made or not public.exists():  # a new key's public half, never an older key's
        public.write_bytes(
            _private_key(path)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return path


def _write_private(path: Path, data: bytes) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _private_key(path: str | Path):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise IssuerError(f"issuer key {path}: {type(error).__name__}: {error}") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key_file: str | Path) -> dict:
    """The public key as a JWK (RFC 7517), without `kid`."""
    numbers = _private_key(key_file).public_key().public_numbers()

    def octets(n: int) -> str:
        return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "n": octets(numbers.n), "e": octets(numbers.e)}


def key_id(key_file: str | Path) -> str:
    """The key's RFC 7638 thumbprint: a new key gets a new `kid`, as in Entra's rollovers."""
    jwk = public_jwk(key_file)
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


# -- tokens -----------------------------------------------------------------------------------------


def claims(config: IssuerConfig, now: float, oid: str | None, **changes) -> dict:
    """A v2.0 application token's claims for `oid` with both app roles; a change to None
    removes the claim."""
    values = {
        "iss": config.issuer,
        "aud": config.audiences[0],
        "tid": config.tenant_id,
        "oid": oid,
        "sub": oid,
        "azp": config.client_id,
        "roles": list(ALL_PERMISSIONS),
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + TOKEN_LIFETIME_SECONDS,
        "ver": "2.0",
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


class Minter:
    """Signs tokens with the issuer's key (loaded once)."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self._key = _private_key(config.key_file)

    def token(
        self, oid: str | None, now: float | None = None, kid: str | None = None, **changes
    ) -> str:
        """A token for the caller `oid` (None: a token without `oid`), signed now."""
        import jwt  # only where tokens are minted

        payload = claims(self.config, time.time() if now is None else now, oid, **changes)
        return jwt.encode(payload, self._key, SIGNING_ALGORITHM, {"kid": kid or self.config.kid})


# -- the server -------------------------------------------------------------------------------------


def documents(config: IssuerConfig) -> dict[str, bytes]:
    metadata = {
        "issuer": config.issuer,
        "jwks_uri": f"http://127.0.0.1:{config.port}{config.jwks_path}",
        "token_endpoint": f"{config.base}/oauth2/v2.0/token",
        "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
    }
    jwk = {**public_jwk(config.key_file), "kid": config.kid, "use": "sig", "alg": SIGNING_ALGORITHM}
    return {
        config.metadata_path: json.dumps(metadata).encode(),
        config.jwks_path: json.dumps({"keys": [jwk]}).encode(),
    }


def imds_answer(
    query: str,
    metadata: str | None,
    tokens: Mapping[str, Callable[[str, int], str]],
    audiences: Iterable[str],
    tenant_id: str,
    default: str | None = None,
) -> tuple[int, dict]:
    """(status, JSON) as IMDS answers a machine's token request (query: the request's query
    string; metadata: its Metadata header). `tokens`: each identity the machine holds, by client
    id (lower case), and what signs its token for (resource, now); `default`: the client id a
    request without one gets (None: such a request names no identity). Also the rehearsal's
    fake engines' IMDS (tests/github/fakes/imds.py)."""
    asked = {name: values[-1] for name, values in parse_qs(query).items()}
    resource, client_id = asked.get("resource", ""), asked.get("client_id", default)
    if (metadata or "").lower() != "true":
        return 400, {"error": "invalid_request",
                     "error_description": "Required metadata header not specified"}
    if not asked.get("api-version"):
        return 400, {"error": "invalid_request",
                     "error_description": "Required query variable 'api-version' is missing"}
    client_id = (client_id or "").lower()
    if client_id not in tokens:
        return 400, {"error": "invalid_request", "error_description": "Identity not found"}
    if resource not in audiences:
        return 400, {"error": "invalid_resource", "error_description":
                     f"AADSTS500011: The resource principal named {resource} was not found"
                     f" in the tenant named {tenant_id}."}
    now = int(time.time())
    return 200, {
        "access_token": tokens[client_id](resource, now),
        "client_id": client_id,
        "expires_in": str(TOKEN_LIFETIME_SECONDS),
        "expires_on": str(now + TOKEN_LIFETIME_SECONDS),
        "ext_expires_in": str(TOKEN_LIFETIME_SECONDS),
        "not_before": str(now),
        "resource": resource,
        "token_type": "Bearer",
    }


def server(config: IssuerConfig) -> ThreadingHTTPServer:
    served = documents(config)
    minter = Minter(config)
    # The engine identity: an engine holding it asks without a client id too (its only one).
    engine = {ENGINE_CLIENT_ID: lambda resource, now: minter.token(
        ENGINE_OBJECT_ID, now=now, aud=resource, azp=ENGINE_CLIENT_ID)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # a silent client does not hold a thread for ever

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == IMDS_TOKEN_PATH:
                status, answer = imds_answer(url.query, self.headers.get("Metadata"), engine,
                                             config.audiences, config.tenant_id, ENGINE_CLIENT_ID)
                body = json.dumps(answer).encode()
            else:
                body = served.get(self.path)
                status = 200 if body is not None else 404
                body = body if body is not None else b'{"error": "not_found"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_request(self, code="-", size="-") -> None:  # one line per answer, no query
            sys.stdout.write(f"{self.command} {self.path.split('?')[0]} {code}\n")
            sys.stdout.flush()

        def log_message(self, format, *args) -> None:  # errors: quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", config.port), Handler)
    httpd.daemon_threads = True
    return httpd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.token_issuer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("serve", "token"))
    parser.add_argument("--config", type=Path, required=True, help="the topology's issuer.json")
    parser.add_argument("--oid", default=None, help="token: the caller's object id (default: new)")
    parser.add_argument("--read-only", action="store_true", help="token: Todo.Read only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = IssuerConfig.read(args.config)
        if args.command == "token":
            roles = [READ_PERMISSION] if args.read_only else list(ALL_PERMISSIONS)
            print(Minter(config).token(args.oid or str(uuid.uuid4()), roles=roles))
            return 0
        httpd = server(config)
    except (IssuerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"issuer {config.issuer} serving on 127.0.0.1:{config.port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
