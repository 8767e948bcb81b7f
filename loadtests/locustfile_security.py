"""Security: every call here must be refused, and a request is a failure when it is not.

- direct front-end calls without a client certificate (with and without a forged
  X-ARR-ClientCert header): 403 (--frontend-urls);
- gateway calls without a subscription key, or with a wrong one: 401;
- the health path with a wrong key: 403, asked of each front end directly (the health path
  needs no certificate there; API Management does not publish it, so through APIM it would be
  a 404), or of the gateway when no --frontend-urls are given;
- with --token-issuer (the local topology's issuer.json), the bearer-token attacks of
  loadtests.token_attacks through the gateway with the right subscription key: no token,
  malformed, expired, not yet valid, wrong audience, issuer or tenant, a bad signature, `alg:
  none`, HS256 keyed with the issuer's public key, an unknown `kid`, another client application,
  an oversized token (401), no role, a read-only caller writing (403); and a caller reading,
  updating or deleting another caller's item (404), after which the owner reads it unchanged.

    locust -f loadtests/locustfile_security.py --headless -u 2 -r 2 -t 10s --host GATEWAY \\
        --subscription-key KEY --frontend-urls https://127.0.0.1:P1,https://127.0.0.1:P2 \\
        --ca-bundle .certs/ca.pem --client-cert .certs/client.pem
"""

import base64
import random
import secrets
import ssl
import uuid

from locust import FastHttpUser, constant_throughput, task
from locust_support import (
    AUTHORIZATION_HEADER,
    CLIENT_CERT_HEADER,
    SUBSCRIPTION_KEY_HEADER,
    TODO_PATH,
    ssl_context,
)


def forged_header(cert_path: str) -> str:
    """The real client certificate's base64 DER (the copy an attacker could send), or junk."""
    if cert_path:
        with open(cert_path) as file:
            return base64.b64encode(ssl.PEM_cert_to_DER_cert(file.read())).decode()
    return base64.b64encode(secrets.token_bytes(64)).decode()


class SecurityUser(FastHttpUser):
    wait_time = constant_throughput(20)

    def __init__(self, environment) -> None:
        self.ssl_context_factory = lambda: ssl_context(with_client_cert=False)
        super().__init__(environment)
        opts = environment.parsed_options
        self.prefix = (opts.api_path or "").rstrip("/")
        self.key = opts.subscription_key
        self.frontends = [u.strip().rstrip("/") for u in opts.frontend_urls.split(",") if u.strip()]
        self.forged = forged_header(opts.client_cert)
        self.minter = None
        if opts.token_issuer:
            from loadtests.token_issuer import IssuerConfig, Minter

            self.minter = Minter(IssuerConfig.read(opts.token_issuer))

    def on_start(self) -> None:
        """Every kind of call once before the random mix: a run too short (or a machine too
        busy) for the mix to reach one still checks it, instead of passing without it."""
        for check in (
            self.frontend_without_certificate,
            self.frontend_with_forged_header,
            self.gateway_without_key,
            self.gateway_with_wrong_key,
            self.health_with_wrong_key,
        ):
            check()
        if self.minter is not None:
            from loadtests.token_attacks import ATTACKS

            for attack in ATTACKS:
                self.token_attack(attack)
            self.another_callers_item()

    def expect_status(
        self, expected: int, method: str, url: str, name: str, headers: dict, body=None
    ):
        """The response when it got `expected`, else None (and a failure)."""
        options = {"json": body} if body is not None else {}
        with self.client.request(
            method, url, name=name, headers=headers, catch_response=True, **options
        ) as response:
            if response.status_code == expected:
                response.success()
                return response
            response.failure(f"expected {expected}, got {response.status_code}")
            return None

    def token_attack(self, attack) -> None:
        headers = {SUBSCRIPTION_KEY_HEADER: self.key}
        authorization = attack.authorization(self.minter)
        if authorization is not None:
            headers[AUTHORIZATION_HEADER] = authorization
        body = {"name": "must never be stored"} if attack.method == "POST" else None
        url = f"{self.prefix}{TODO_PATH}"
        self.expect_status(attack.status, attack.method, url, f"gateway, {attack.name}", headers, body)

    def caller(self) -> dict:
        token = self.minter.token(str(uuid.uuid4()))
        return {SUBSCRIPTION_KEY_HEADER: self.key, AUTHORIZATION_HEADER: f"Bearer {token}"}

    def another_callers_item(self) -> None:
        owner, intruder = self.caller(), self.caller()
        url = f"{self.prefix}{TODO_PATH}"
        body = {"name": "owned by one caller", "isCompleted": False}
        created = self.expect_status(201, "POST", url, "owner creates an item", owner, body)
        if created is None:
            return
        item = created.json()
        own = f"{url}/{item['id']}"
        changed = {**body, "id": item["id"], "name": "changed by another caller"}
        for method, sent in (("GET", None), ("PUT", changed), ("DELETE", None)):
            name = f"another caller's item, {method}"
            self.expect_status(404, method, own, name, intruder, sent)
        name = "owner reads its item unchanged"
        with self.client.get(own, name=name, headers=owner, catch_response=True) as kept:
            if kept.status_code != 200 or kept.json() != item:
                kept.failure(f"expected it unchanged, got {kept.status_code} {kept.text[:200]}")
            else:
                kept.success()
        self.expect_status(204, "DELETE", own, "owner deletes its item", owner)

    def expect(self, expected: int, url: str, name: str, headers: dict) -> None:
        self.expect_status(expected, "GET", url, name, headers)

    @task
    def frontend_without_certificate(self) -> None:
        for url in self.frontends:
            self.expect(403, f"{url}{TODO_PATH}", "front end, no certificate", {})

    @task
    def frontend_with_forged_header(self) -> None:
        for url in self.frontends:
            headers = {CLIENT_CERT_HEADER: self.forged}
            self.expect(403, f"{url}{TODO_PATH}", "front end, forged X-ARR-ClientCert", headers)

    @task
    def gateway_without_key(self) -> None:
        self.expect(401, f"{self.prefix}{TODO_PATH}", "gateway, no subscription key", {})

    @task
    def gateway_with_wrong_key(self) -> None:
        headers = {SUBSCRIPTION_KEY_HEADER: secrets.token_hex(16)}
        self.expect(401, f"{self.prefix}{TODO_PATH}", "gateway, wrong subscription key", headers)

    @task
    def a_token_attack(self) -> None:
        if self.minter is not None:
            from loadtests.token_attacks import ATTACKS

            self.token_attack(random.choice(ATTACKS))

    @task
    def health_with_wrong_key(self) -> None:
        wrong = f"/health/{secrets.token_urlsafe(24)}"
        if not self.frontends:
            headers = {SUBSCRIPTION_KEY_HEADER: self.key}
            self.expect(403, f"{self.prefix}{wrong}", "gateway, health with a wrong key", headers)
        for url in self.frontends:
            self.expect(403, f"{url}{wrong}", "front end, health with a wrong key", {})
