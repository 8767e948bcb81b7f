"""Security: every call here must be refused, and a request is a failure when it is not.

- direct front-end calls without a client certificate (with and without a forged
  X-ARR-ClientCert header): 403 (--frontend-urls);
- gateway calls without a subscription key, or with a wrong one: 401;
- the health path with a wrong key: 403, asked of each front end directly (the health path
  needs no certificate there; API Management does not publish it, so through APIM it would be
  a 404), or of the gateway when no --frontend-urls are given.

    locust -f loadtests/locustfile_security.py --headless -u 2 -r 2 -t 10s --host GATEWAY \\
        --subscription-key KEY --frontend-urls https://127.0.0.1:P1,https://127.0.0.1:P2 \\
        --ca-bundle .certs/ca.pem --client-cert .certs/client.pem
"""

import base64
import secrets
import ssl

from locust import FastHttpUser, constant_throughput, task
from locust_support import (
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

    def expect(self, expected: int, url: str, name: str, headers: dict) -> None:
        with self.client.get(url, name=name, headers=headers, catch_response=True) as response:
            if response.status_code == expected:
                response.success()
            else:
                response.failure(f"expected {expected}, got {response.status_code}")

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
    def health_with_wrong_key(self) -> None:
        wrong = f"/health/{secrets.token_urlsafe(24)}"
        if not self.frontends:
            headers = {SUBSCRIPTION_KEY_HEADER: self.key}
            self.expect(403, f"{self.prefix}{wrong}", "gateway, health with a wrong key", headers)
        for url in self.frontends:
            self.expect(403, f"{url}{wrong}", "front end, health with a wrong key", {})
