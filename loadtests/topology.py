"""The local two-region stand-in, built from real processes on 127.0.0.1 (DESIGN.md section 2):

    client -> HAProxy gateway (subscription key, only the operations of app/openapi.json,
              health-checked failover, mTLS to the regions)
           -> HAProxy front end per region (TLS, client certificate, X-ARR-ClientCert)
           -> app/startup.sh per region (gunicorn + uvicorn, WEBSITE_SITE_NAME = the region's
              site, WEBSITE_SLOT_NAME = production, as App Service sets them)
           -> Azurite, the one table account both regions share (data on disk in the workdir)

    python -m loadtests.topology up        start, print the URLs and keys, run until Ctrl-C
        [--profile local|azure]  azure: API Management's retry rules, Traffic Manager's probes
                                 and TTL, App Service's 503, from cdktf.out/stacks/todo-api-dev
                                 (loadtests.fidelity; `make synth` first)
    python -m loadtests.topology down      stop the running one (state in .local/topology/)
    python -m loadtests.topology fault     SIGKILL the primary app of the running one
    python -m loadtests.topology fault-hang  SIGSTOP the primary app: it accepts, never answers
    python -m loadtests.topology restore   continue or start the primary app again (failback)
    python -m loadtests.topology fault-frontend / restore-frontend   the same for its front end
    python -m loadtests.topology fault-store / restore-store         stop / start Azurite
    python -m loadtests.topology reload-gateway   present the renewed client certificate
                                                  (after python -m tools.development.certs renew)

From Python: `with Topology.start(TopologyConfig(...)) as topology: ...`.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.contract import (
    AUTH_ENTRA,
    AUTH_NONE,
    AUTHORIZATION_HEADER,
    BEARER_REALM,
    CLIENT_CERT_HEADER,
    DEFAULT_TABLE_NAME,
    HEALTH_PATH,
    IDEMPOTENCY_KEY_HEADER,
    MAX_AUTHORIZATION_BYTES,
    MAX_BODY_BYTES,
    MEMORY_STORE,
    PRODUCTION_SLOT,
    READ_PERMISSION,
    SITE_NAME_HEADER,
    SUBSCRIPTION_KEY_HEADER,
    TABLE_STORE,
    TODO_PATH,
    WRITE_PERMISSION,
    slot_site_name,
)
from loadtests import fidelity
from loadtests.azurite import Azurite
from loadtests.fidelity import APP_SERVICE_REQUEST_TIMEOUT_SECONDS, AZURE, Profile, local_profile
from loadtests.haproxy_admin import HAProxyAdmin
from loadtests.item_sources import ApiItems, ItemSource, TableItems
from loadtests.processes import (
    HOST,
    ManagedProcess,
    TopologyError,
    ensure_port_free,
    free_ports,
    group_alive,
    http_status,
    port_open,
    signal_group,
)
from loadtests.token_issuer import CONFIG_FILE, IssuerConfig, Minter, ensure_signing_key, key_id
from loadtests.traffic_manager import Endpoint, TrafficManagerModel

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_WORKDIR = ROOT / ".local" / "topology"
DEFAULT_CERTS = ROOT / ".certs"
STATE_FILE = "state.json"
PRIMARY_SITE = "todo-api-australiaeast"
SECONDARY_SITE = "todo-api-australiasoutheast"
CHECK_INTERVAL_MS = 250
DOWN_TIMEOUT_SECONDS = 20.0
START_ATTEMPTS = 3
PORT_TAKEN_WORDS = ("Address already in use", "EADDRINUSE", "Connection in use")
HAPROXY = "haproxy"
OPENAPI_FILE = ROOT / "app" / "openapi.json"
# Asked through the gateway to learn which region serves: a published operation that reads one
# item (404 for this id) and writes nothing.
PROBE_PATH = f"{TODO_PATH}/serving-region-probe"
# What a reconciliation of the in-memory store can see (loadtests.item_sources.ApiItems).
MEMORY_LIST_NOTE = (
    "in-memory store, no table to read: only the items of the region answering the list"
)
# Stand-in only: the front ends report the serial of the client certificate they were shown,
# so a certificate rotation can be observed through the gateway.
CLIENT_CERT_SERIAL_HEADER = "X-Client-Cert-Serial"
STAGING_SLOT = "staging"
# After freezing an app, how long its front end may take to pass on an answer already written.
FREEZE_SETTLE_SECONDS = 0.02
# The caller the topology's own calls through the gateway go as (PROBE_PATH, the serial check).
PROBE_OWNER = "0b7e4c2a-9f13-4d6b-8a5e-3c2f1d0e9b74"
AUTH_MODES = (AUTH_ENTRA, AUTH_NONE)


@dataclass
class TopologyConfig:
    certs_dir: Path = DEFAULT_CERTS
    workdir: Path = DEFAULT_WORKDIR
    primary_site: str = PRIMARY_SITE
    secondary_site: str = SECONDARY_SITE
    gateway_port: int | None = None  # None: a free port
    subscription_key: str = field(default_factory=lambda: secrets.token_hex(16))
    health_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    check_interval_ms: int = CHECK_INTERVAL_MS
    store: str = TABLE_STORE  # or MEMORY_STORE: each app keeps its own items (lost on failover)
    table_name: str = DEFAULT_TABLE_NAME  # the apps' TABLE_NAME; reconciliation reads it too
    workers: int = 1  # per region; more than 1 needs the table store
    # How the gateway, routing and front ends behave when a region fails (loadtests.fidelity).
    profile: Profile = field(default_factory=local_profile)
    # entra: the local token issuer runs, the gateway and the apps require its bearer tokens
    # (the apps' AUTH_MODE; loadtests.token_issuer); none: the subscription key is all there is.
    auth: str = AUTH_ENTRA

    @property
    def health_path(self) -> str:
        """The apps' keyed health path (app/contract.py HEALTH_PATH with this key)."""
        return HEALTH_PATH.replace("{key}", self.health_key)


@dataclass
class Region:
    site: str
    app_port: int  # the production slot's app (swaps exchange it with the staging slot's)
    frontend_port: int
    app: ManagedProcess
    frontend: ManagedProcess
    admin_socket: str  # the front end's runtime API
    # The staging slot: its own front-end listener (the slot's own hostname) and app port. Its
    # app runs once a release deployed to it (loadtests.slots); until then it answers 503.
    staging_frontend_port: int = 0
    staging_app_port: int = 0
    staging_app: ManagedProcess | None = None
    package: Path = ROOT  # the package root production runs (app/ inside)
    staging_package: Path | None = None

    def slot_site(self, slot: str) -> str:
        """The site name the region's `slot` reports (app.contract.slot_site_name)."""
        return slot_site_name(self.site, slot)

    @property
    def staging_site(self) -> str:
        return self.slot_site(STAGING_SLOT)


def _port_taken_meanwhile(error: TopologyError) -> bool:
    """A process failed to bind its port (gunicorn, HAProxy, Node each say it their way)."""
    return any(words in str(error) for words in PORT_TAKEN_WORDS)


def _store_environment(config: TopologyConfig, store: Azurite | None) -> dict[str, str]:
    if store is None:
        return {"STORE": MEMORY_STORE}
    return {
        "STORE": TABLE_STORE,
        "TABLE_NAME": config.table_name,
        "TABLE_CONNECTION_STRING": store.connection_string,
    }


def published_operations(openapi: dict) -> str:
    """An HAProxy condition true for exactly the operations of the OpenAPI document (as API
    Management publishes them): `{ path_reg ... } { method ... } || ...`."""
    terms = []
    for path, operations in openapi["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"
        methods = " ".join(m.upper() for m in operations if m.upper() in HTTP_METHODS)
        terms.append(f"{{ path_reg -i {pattern} }} {{ method {methods} }}")
    return " || ".join(terms)


HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")


def app_environment(
    config: TopologyConfig,
    site: str,
    slot: str,
    port: int,
    store: Azurite | None,
    auth: dict[str, str],
) -> dict[str, str]:
    """A slot's app settings: as on App Service, WEBSITE_SITE_NAME is the web app's (region's)
    name in every slot and WEBSITE_SLOT_NAME the slot's."""
    summary_path = config.certs_dir / "client.json"
    try:
        client = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        raise TopologyError(
            f"certificates: {summary_path} is missing or unreadable; "
            "run: python -m tools.development.certs generate"
        ) from None
    der = x509.load_pem_x509_certificate(
        (config.certs_dir / "client.pem").read_bytes()
    ).public_bytes(serialization.Encoding.DER)
    return {
        **os.environ,
        "APP_ENV": "production",
        "WEBSITE_SITE_NAME": site,
        "WEBSITE_SLOT_NAME": slot,
        "HEALTH_CHECK_KEY": config.health_key,
        "CLIENT_CERT_HEADER": CLIENT_CERT_HEADER,
        "CLIENT_CERT_SUBJECT": client["subject"],
        "CLIENT_CERT_ISSUER": client["issuer"],
        "CLIENT_CERT_THUMBPRINTS": client["sha256"],
        # as on Azure: the key is pinned, so a renewal (same key) is admitted without a restart
        "CLIENT_CERT_PINNED_KEYS": base64.b64encode(der).decode(),
        "CLIENT_CERT_CA": str(config.certs_dir / "ca.pem"),
        "HOST": HOST,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(config.workers),
        "PYTHON": sys.executable,
        **_store_environment(config, store),
        **auth,
    }


def _bundle(workdir: Path, certs_dir: Path, name: str) -> Path:
    """HAProxy wants certificate and key in one PEM file (kept private in the workdir)."""
    path = workdir / f"{name}-bundle.pem"
    data = (certs_dir / f"{name}.pem").read_bytes() + (certs_dir / f"{name}.key").read_bytes()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def render(template: str, path: Path, **values) -> Path:
    text = Template((TEMPLATES / template).read_text()).substitute(
        {key: str(value) for key, value in values.items()}
    )
    path.write_text(text)
    return path


def _haproxy(name: str, config_path: Path, master_worker: bool = False) -> ManagedProcess:
    """`master_worker`: `-W`, so SIGUSR2 to the master reloads the configuration and the
    certificates without dropping connections (the old worker finishes its requests)."""
    log = config_path.with_suffix(".log")
    mode = ["-W"] if master_worker else []
    return ManagedProcess(name, [HAPROXY, *mode, "-db", "-f", str(config_path)], log)


def token_rules(issuer: IssuerConfig) -> str:
    """The gateway's token checks for `issuer` (templates/gateway-tokens.cfg)."""

    def grant(permission: str) -> str:
        name = re.escape(permission)
        # single-quoted for HAProxy: an app role in `roles`, or a delegated scope in `scp`
        return "'" + rf'"roles":\s*\[[^]]*"{name}"|"scp":\s*"([^"]* )?{name}[ "]' + "'"

    values = {
        "authorization_header": AUTHORIZATION_HEADER,
        "max_authorization_bytes": MAX_AUTHORIZATION_BYTES,
        "kid": issuer.kid,
        "public_key": issuer.public_key_file,
        "issuer": issuer.issuer,
        "audiences": " ".join(issuer.audiences),
        "tenant_id": issuer.tenant_id,
        "allowed_clients": " ".join(issuer.allowed_clients),
        "read_grant": grant(READ_PERMISSION),
        "write_grant": grant(WRITE_PERMISSION),
        "read_permission": READ_PERMISSION,
        "write_permission": WRITE_PERMISSION,
        "realm": BEARER_REALM,
    }
    template = (TEMPLATES / "gateway-tokens.cfg").read_text()
    return Template(template).substitute({k: str(v) for k, v in values.items()})


class Topology:
    """Two regions and a gateway; every process is stopped by `stop()` (or leaving the with)."""

    def __init__(self, config: TopologyConfig) -> None:
        self.config = config
        self.workdir = config.workdir
        self.regions: dict[str, Region] = {}
        self.gateway: ManagedProcess | None = None
        self.gateway_port = 0
        self.store: Azurite | None = None
        self.traffic_manager: TrafficManagerModel | None = None
        self.issuer: ManagedProcess | None = None
        self.issuer_config: IssuerConfig | None = None
        self.minter: Minter | None = None
        # The runtime API sockets: a short private folder (a Unix socket path has at most 107
        # bytes, and a test's workdir may be longer).
        self.admin_dir = Path(tempfile.mkdtemp(prefix="topology-"))

    # -- facts the clients need -------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    def frontend_url(self, role: str) -> str:
        return f"https://{HOST}:{self.regions[role].frontend_port}"

    def app_url(self, role: str) -> str:
        return f"http://{HOST}:{self.regions[role].app_port}"

    def items_source(self) -> ItemSource | None:
        """Where reconciliation reads this topology's items: the shared table itself or, with
        the in-memory store (no table), the gateway's list, labelled as such; None with the
        in-memory store and tokens on (each caller lists only its own items)."""
        if self.store is not None:
            where = f"Azurite {self.store.endpoint}"
            return TableItems(self.store.connection_string, self.config.table_name, where)
        if self.config.auth == AUTH_ENTRA:
            return None
        return ApiItems(self.gateway_url, self.config.subscription_key, note=MEMORY_LIST_NOTE)

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every process, in start order (stop() goes in reverse: the store last)."""
        store = [self.store.process] if self.store and self.store.process else []
        store += [self.issuer] if self.issuer else []
        parts = [
            p
            for r in self.regions.values()
            for p in (r.app, r.staging_app, r.frontend)
            if p is not None
        ]
        return store + parts + ([self.gateway] if self.gateway else [])

    def state(self) -> dict:
        return {
            "owner_pid": os.getpid(),
            "profile": self.config.profile.name,
            "gateway_url": self.gateway_url,
            "subscription_key": self.config.subscription_key,
            "health_key": self.config.health_key,
            "certs_dir": str(self.config.certs_dir),
            "store": (
                {
                    "kind": TABLE_STORE,
                    "endpoint": self.store.endpoint,
                    "table": self.config.table_name,
                }
                if self.store
                else {"kind": MEMORY_STORE}
            ),
            "regions": {
                role: {
                    "site": r.site,
                    "app_url": self.app_url(role),
                    "frontend_url": self.frontend_url(role),
                }
                for role, r in self.regions.items()
            },
            "auth": (
                {
                    "mode": AUTH_ENTRA,
                    "issuer": self.issuer_config.issuer,
                    "config": str(self.issuer_config_path),
                }
                if self.issuer_config
                else {"mode": AUTH_NONE}
            ),
            "process_groups": {p.name: p.pid for p in self.processes if p.pid},
        }

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def start(cls, config: TopologyConfig | None = None) -> Topology:
        """Start every part, or stop what was started and raise. The free ports are picked
        before the processes bind them, so another program may take one meanwhile: then the
        start is made again on other ports (START_ATTEMPTS in all)."""
        config = config or TopologyConfig()
        for attempt in range(1, START_ATTEMPTS + 1):
            topology = cls(config)
            try:
                topology._start()
                return topology
            except TopologyError as error:
                topology.stop()
                if attempt == START_ATTEMPTS or not _port_taken_meanwhile(error):
                    raise
            except BaseException:
                topology.stop()
                raise
        raise AssertionError("unreachable")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        if self.config.auth not in AUTH_MODES:
            raise TopologyError(f"auth: {self.config.auth!r} is not one of {', '.join(AUTH_MODES)}")
        if shutil.which(HAPROXY) is None:
            raise TopologyError("haproxy: not on PATH; install the Debian package (make setup)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # All picked at once: ports picked one call after another could repeat a port the
        # first call had just released.
        ports = free_ports(11)
        self.gateway_port = self.config.gateway_port or ports[4]
        ensure_port_free(self.gateway_port, "gateway")
        if self.config.store == TABLE_STORE:
            self.store = Azurite(self.workdir, port=ports[5])
            self.store.start()
            self.store.create_table(self.config.table_name)  # Terraform's part on Azure
        if self.config.auth == AUTH_ENTRA:
            self._start_issuer(ports[10])
        roles = (("primary", self.config.primary_site), ("secondary", self.config.secondary_site))
        for (role, site), app_port, frontend_port, staging in zip(
            roles, ports[0:4:2], ports[1:4:2], (ports[6:8], ports[8:10]), strict=True
        ):
            self.regions[role] = self._region(role, site, app_port, frontend_port, staging)
        for role in self.regions:
            self._start_app(role)
        for region in self.regions.values():
            region.frontend.start()
        for region in self.regions.values():
            region.frontend.wait_ready(lambda r=region: self._frontend_serves(r))
        self._start_gateway()
        self._write_state()

    def _dead_app_rules(self) -> dict[str, str]:
        """How a region's front end answers while its app is dead: `local` refuses the
        connection (the easiest failure to retry), `azure` answers 503 as App Service does."""
        if self.config.profile.name == AZURE:
            return {
                "app_down": "    # As App Service: a dead app is answered 503 (no server to connect to).\n",
                "app_server_options": "",
                "app_timeout": f"{APP_SERVICE_REQUEST_TIMEOUT_SECONDS}s",
            }
        interval = self.config.check_interval_ms
        return {
            "app_down": (
                "    # While the app is down, refuse at the connection (the gateway sees a connection\n"
                "    # failure, which it may retry on the other region for any method) and close\n"
                "    # kept-alive connections.\n"
                "    tcp-request connection reject if { nbsrv(app) eq 0 }\n"
                "    http-request reject if { nbsrv(app) eq 0 }\n"
            ),
            "app_server_options": (
                f" check inter {interval} fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down"
            ),
            "app_timeout": "30s",
        }

    def app_process(
        self, role: str, slot: str, site: str, port: int, package: Path
    ) -> ManagedProcess:
        """The app of one slot of the region whose site name is `site`: `package`'s
        app/startup.sh with the slot's settings (the site and slot names, its port), as App
        Service runs a slot."""
        production = slot == PRODUCTION_SLOT
        reports = slot_site_name(site, slot)
        return ManagedProcess(
            f"{role} app ({reports})" if production else f"{role} app, {slot} slot ({reports})",
            ["bash", str(package / "app" / "startup.sh")],
            self.workdir / (f"app-{role}.log" if production else f"app-{role}-{slot}.log"),
            app_environment(self.config, site, slot, port, self.store, self.auth_settings()),
        )

    def _region(
        self, role: str, site: str, app_port: int, frontend_port: int, staging: list[int]
    ) -> Region:
        admin_socket = str(self.admin_dir / f"frontend-{role}.sock")
        app = self.app_process(role, PRODUCTION_SLOT, site, app_port, ROOT)
        staging_frontend_port, staging_app_port = staging
        config_path = render(
            "frontend.cfg",
            self.workdir / f"frontend-{role}.cfg",
            region=site,
            name=f"frontend_{role}",
            port=frontend_port,
            app_port=app_port,
            server_bundle=_bundle(self.workdir, self.config.certs_dir, "server"),
            ca_file=self.config.certs_dir / "ca.pem",
            cert_header=CLIENT_CERT_HEADER,
            serial_header=CLIENT_CERT_SERIAL_HEADER,
            check_interval_ms=self.config.check_interval_ms,
            admin_socket=admin_socket,
            staging_port=staging_frontend_port,
            staging_app_port=staging_app_port,
            **self._dead_app_rules(),
        )
        frontend = _haproxy(f"{role} front end (HAProxy on {HOST}:{frontend_port})", config_path)
        return Region(
            site,
            app_port,
            frontend_port,
            app,
            frontend,
            admin_socket,
            staging_frontend_port,
            staging_app_port,
        )

    # -- who is calling (AUTH_MODE=entra) ----------------------------------------------------

    @property
    def issuer_config_path(self) -> Path:
        """The running issuer's IssuerConfig (Locust mints its users' tokens from it)."""
        return self.workdir / CONFIG_FILE

    def _start_issuer(self, port: int) -> None:
        key_file = ensure_signing_key(self.config.certs_dir)
        self.attach_issuer(IssuerConfig(port=port, key_file=str(key_file), kid=key_id(key_file)))
        self.issuer_config.write(self.issuer_config_path)
        self.issuer = ManagedProcess(
            f"token issuer (on {HOST}:{port})",
            [sys.executable, "-m", "loadtests.token_issuer", "serve"]
            + ["--config", str(self.issuer_config_path)],
            self.workdir / "issuer.log",
            cwd=ROOT,
        )
        self.issuer.start()
        metadata = self.issuer_config.metadata_path
        self.issuer.wait_ready(lambda: http_status(port, metadata) == 200)

    def attach_issuer(self, config: IssuerConfig) -> None:
        """Mint tokens of this issuer (one this topology started, or a running topology's, as
        its state names it: state()["auth"]["config"])."""
        self.issuer_config, self.minter = config, Minter(config)

    def auth_settings(self) -> dict[str, str]:
        """The apps' AUTH_* settings."""
        if self.issuer_config is None:
            return {"AUTH_MODE": AUTH_NONE}
        return self.issuer_config.app_settings()

    def token(self, oid: str | None = PROBE_OWNER, **changes) -> str:
        """An access token of the topology's issuer for `oid` (both roles unless `roles=`
        says otherwise; a claim changed to None is left out)."""
        if self.minter is None:
            raise TopologyError(f"this topology runs with AUTH_MODE={self.config.auth}")
        return self.minter.token(oid, **changes)

    def caller_headers(self, oid: str = PROBE_OWNER) -> dict[str, str]:
        """What a caller of the gateway sends: the subscription key and, with tokens on, a
        bearer token for `oid`."""
        headers = {SUBSCRIPTION_KEY_HEADER: self.config.subscription_key}
        if self.minter is not None:
            headers[AUTHORIZATION_HEADER] = f"Bearer {self.token(oid)}"
        return headers

    def _token_rules(self) -> str:
        """The gateway's token checks (gateway-tokens.cfg); none with AUTH_MODE=none."""
        return "" if self.issuer_config is None else token_rules(self.issuer_config)

    def _start_app(self, role: str) -> None:
        region = self.regions[role]
        region.app.start()
        health = self.config.health_path
        region.app.wait_ready(lambda: http_status(region.app_port, health) == 200)

    def _frontend_serves(self, region: Region) -> bool:
        """The region's front end answers its app's health: this one, not merely something on
        its port (a foreign listener fails the TLS verification or the key)."""
        tls = ssl.create_default_context(cafile=str(self.config.certs_dir / "ca.pem"))
        health = self.config.health_path
        return http_status(region.frontend_port, health, tls=tls) == 200

    def _gateway_backends(self, server_tls: str) -> str:
        """The gateway's backends by the fidelity profile (gateway-backends-<profile>.cfg)."""
        profile = self.config.profile
        primary, secondary = self.regions["primary"], self.regions["secondary"]
        values = {
            "primary": primary.site,
            "primary_port": primary.frontend_port,
            "secondary": secondary.site,
            "secondary_port": secondary.frontend_port,
            "server_tls": server_tls,
            "health_key": self.config.health_key,
            "check_interval_ms": self.config.check_interval_ms,
        }
        if profile.name == AZURE:
            gateway, routing = profile.gateway, profile.routing
            statuses = " ".join(str(s) for s in gateway.retry_statuses)
            connection = "conn-failure" if gateway.again_after_connection_failure else ""
            after_timeout = gateway.again_after_timeout in ("retry-safe", "all")
            safe = f"{connection} {'response-timeout ' if after_timeout else ''}{statuses}"
            keyless = (
                f"{connection} {'response-timeout' if gateway.again_after_timeout == 'all' else ''}"
                f" {'' if gateway.retry_only_retry_safe else statuses}"
            )
            values |= {
                "source": profile.source,
                "admin_socket": self.gateway_admin_socket,
                "retries": gateway.retries,
                "retry_statuses": statuses,
                "retry_safe_methods": " ".join(gateway.retry_safe_methods),
                "idempotency_key_header": gateway.idempotency_header,
                "forward_timeout_s": f"{gateway.forward_timeout_s:g}",
                "retry_on_safe": " ".join(safe.split()) or "none",
                "retry_on_keyless": " ".join(keyless.split()) or "none",
                "probe_interval_s": f"{routing.probe_interval_s:g}",
                "probe_timeout_s": f"{routing.probe_timeout_s:g}",
                "tolerated_failures": routing.tolerated_failures,
                "dns_ttl_s": f"{routing.dns_ttl_s:g}",
            }
        template = (TEMPLATES / f"gateway-backends-{profile.name}.cfg").read_text()
        return Template(template).substitute({k: str(v) for k, v in values.items()})

    @property
    def gateway_admin_socket(self) -> str:
        return str(self.admin_dir / "gateway.sock")

    def _retry_safe_methods(self) -> str:
        gateway = self.config.profile.gateway
        return " ".join(gateway.retry_safe_methods) if gateway else "GET HEAD OPTIONS"

    def _start_gateway(self) -> None:
        server_tls = (
            f"ssl verify required ca-file {self.config.certs_dir / 'ca.pem'} "
            f"crt {_bundle(self.workdir, self.config.certs_dir, 'client')} "
            "sni str(localhost) check-sni localhost"
        )
        config_path = render(
            "gateway.cfg",
            self.workdir / "gateway.cfg",
            port=self.gateway_port,
            admin_socket=self.gateway_admin_socket,
            retry_safe_methods=self._retry_safe_methods(),
            backends=self._gateway_backends(server_tls),
            key_header=SUBSCRIPTION_KEY_HEADER,
            idempotency_key_header=IDEMPOTENCY_KEY_HEADER,
            subscription_key=self.config.subscription_key,
            token_rules=self._token_rules(),
            published=published_operations(json.loads(OPENAPI_FILE.read_text())),
            max_body_bytes=MAX_BODY_BYTES,
        )
        self.gateway = _haproxy(
            f"gateway (HAProxy on {HOST}:{self.gateway_port})", config_path, master_worker=True
        )
        self.gateway.start()
        self.gateway.wait_ready(self._gateway_serves_primary)
        if self.config.profile.routing is not None:
            self._start_traffic_manager()

    def _start_traffic_manager(self) -> None:
        admin = HAProxyAdmin(self.gateway_admin_socket)
        primary = self.regions["primary"].site

        def route(primary_in_rotation: bool) -> None:
            for backend in ("regions", "regions_keyless_write"):
                admin.set_ready(backend, primary, primary_in_rotation)

        endpoints = [
            Endpoint(region.site, lambda timeout, r=region: self._probe(r, timeout))
            for region in self.regions.values()
        ]
        self.traffic_manager = TrafficManagerModel(self.config.profile.routing, endpoints, route)
        self.traffic_manager.start()

    def _probe(self, region: Region, timeout: float) -> int | None:
        """Traffic Manager's probe: HTTPS GET of /health/<key> on the region's front end."""
        tls = ssl.create_default_context(cafile=str(self.config.certs_dir / "ca.pem"))
        health = self.config.health_path
        return http_status(region.frontend_port, health, tls=tls, timeout=timeout)

    def _gateway_serves_primary(self) -> bool:
        return self.serving_site() == self.config.primary_site

    def serving_site(self) -> str | None:
        """The region whose app answers through the gateway now (None if none does)."""
        connection = http.client.HTTPConnection(HOST, self.gateway_port, timeout=2)
        try:
            connection.request("GET", PROBE_PATH, headers=self.caller_headers())
            response = connection.getresponse()
            answered = response.status in (200, 404)
            return response.getheader(SITE_NAME_HEADER) if answered else None
        except OSError:
            return None
        finally:
            connection.close()

    def _write_state(self) -> None:
        path = self.workdir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.state(), out, indent=2)
        os.replace(tmp, path)

    def stop(self) -> None:
        if self.traffic_manager is not None:
            self.traffic_manager.stop()
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except TopologyError as error:  # stop the others all the same
                errors.append(error)
        state = self.workdir / STATE_FILE
        if state.exists() and json.loads(state.read_text()).get("owner_pid") == os.getpid():
            state.unlink()
        shutil.rmtree(self.admin_dir, ignore_errors=True)
        if errors:
            raise errors[0]

    # -- faults -------------------------------------------------------------------------------

    def serving_now(self, role: str = "primary") -> int:
        """Requests the region's app is serving now, as its front end counts them (`scur` of
        its `app` server; health probes have a backend of their own)."""
        return HAProxyAdmin(self.regions[role].admin_socket).current_sessions("app", "app")

    def kill_app(self, role: str = "primary", mid_request_within: float = 0.0) -> dict:
        """SIGKILL the region's app (gunicorn master and workers). With `mid_request_within`,
        first make sure the kill cuts a caller's request (for up to that many seconds): freeze
        the app (SIGSTOP), let any answer it had already written leave the front end, and kill
        it only if the front end still waits on it for a request; otherwise let it run again
        and try anew. Returns {"fault_time": when the kill was sent (epoch), "app_serving": the
        requests the frozen app held (its front end's count; 0 when it never held one)}, once
        its port refuses connections: until then a dying worker's socket still takes one."""
        region = self.regions[role]
        serving = 0
        deadline = time.monotonic() + mid_request_within
        while mid_request_within > 0:
            region.app.pause()
            time.sleep(FREEZE_SETTLE_SECONDS)  # an answer already written reaches its caller
            serving = self.serving_now(role)
            if serving or time.monotonic() >= deadline:
                break
            region.app.resume()
            time.sleep(FREEZE_SETTLE_SECONDS)  # requests arrive
        killed = {"fault_time": time.time(), "app_serving": serving}
        region.app.kill()
        region.app.paused = False
        port = region.app_port
        region.app.wait_for(lambda: not port_open(port), f"refusing connections on port {port}")
        return killed

    def hang_app(self, role: str = "primary") -> None:
        """SIGSTOP the region's app: connections are still accepted (by the kernel) but nothing
        answers, as when a region stops responding without refusing."""
        self.regions[role].app.pause()

    def restore_app(self, role: str = "primary") -> None:
        """Continue a hung app, or start a killed one again on its port (its in-memory store
        starts empty)."""
        region = self.regions[role]
        if region.app.paused:
            region.app.resume()
            return
        if region.app.alive():
            return
        self._start_app(role)

    def reload_gateway(self) -> None:
        """Present the client certificate now in certs_dir (after `python -m tools.development.certs renew`):
        rewrite the gateway's bundle and reload it gracefully (SIGUSR2 to the HAProxy master).
        Returns once a call through the gateway is made with the new certificate."""
        if self.gateway is None or self.gateway.pid is None:
            raise TopologyError("gateway: not running")
        serial = format(
            x509.load_pem_x509_certificate(
                (self.config.certs_dir / "client.pem").read_bytes()
            ).serial_number,
            "X",
        )
        _bundle(self.workdir, self.config.certs_dir, "client")
        os.kill(self.gateway.pid, signal.SIGUSR2)
        self.gateway.wait_ready(lambda: self.presented_serial() == serial)

    def presented_serial(self) -> str | None:
        """The serial (hex) of the client certificate the gateway presents to the regions, as
        the front end reports it (CLIENT_CERT_SERIAL_HEADER), or None if no answer."""
        connection = http.client.HTTPConnection(HOST, self.gateway_port, timeout=2)
        try:
            connection.request("GET", PROBE_PATH, headers=self.caller_headers())
            response = connection.getresponse()
            response.read()
            serial = response.getheader(CLIENT_CERT_SERIAL_HEADER)
            return serial.upper().lstrip("0") if serial else None
        except OSError:
            return None
        finally:
            connection.close()

    def stop_frontend(self, role: str = "primary") -> None:
        self.regions[role].frontend.kill()

    def restore_frontend(self, role: str = "primary") -> None:
        region = self.regions[role]
        if not region.frontend.alive():
            region.frontend.start()
            # Its port, not its health: the app behind it may be down too (then it refuses).
            region.frontend.wait_ready(lambda: port_open(region.frontend_port))

    def stop_store(self) -> None:
        """Take the shared table store away (both regions lose it; acknowledged writes stay)."""
        if self.store is None:
            raise TopologyError(f"store: this topology runs with STORE={MEMORY_STORE}")
        self.store.stop()

    def restore_store(self) -> None:
        if self.store is None:
            raise TopologyError(f"store: this topology runs with STORE={MEMORY_STORE}")
        self.store.restart()


# -- command line -----------------------------------------------------------------------------


def read_state(workdir: Path = DEFAULT_WORKDIR) -> dict:
    path = workdir / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TopologyError(f"no running topology ({path} is missing)") from None


# Actions the running `up` process performs when another command signals it.
ACTIONS = {
    "fault": (signal.SIGUSR1, "kill_app", "primary app SIGKILLed"),
    "restore": (signal.SIGUSR2, "restore_app", "primary app continued or started again"),
    "fault-hang": (signal.SIGRTMIN + 4, "hang_app", "primary app SIGSTOPped (hangs)"),
    "reload-gateway": (
        signal.SIGRTMIN + 5,
        "reload_gateway",
        "gateway reloaded: it presents the client certificate now in the certs folder",
    ),
    "fault-frontend": (signal.SIGRTMIN, "stop_frontend", "primary front end SIGKILLed"),
    "restore-frontend": (signal.SIGRTMIN + 1, "restore_frontend", "primary front end started"),
    "fault-store": (signal.SIGRTMIN + 2, "stop_store", "table store (Azurite) stopped"),
    "restore-store": (signal.SIGRTMIN + 3, "restore_store", "table store (Azurite) started"),
}


def _up(args: argparse.Namespace) -> int:
    config = TopologyConfig(
        gateway_port=args.gateway_port,
        certs_dir=args.certs,
        workdir=args.workdir,
        store=args.store,
        workers=args.workers,
        profile=fidelity.profile(args.profile, args.stacks, args.stack),
        auth=args.auth,
    )
    requests: list[str] = []
    for name, (signum, _, _) in ACTIONS.items():
        signal.signal(signum, lambda *_, name=name: requests.append(name))
    signal.signal(signal.SIGTERM, lambda *_: requests.append("stop"))
    with Topology.start(config) as topology:
        print(describe(topology.state()), flush=True)
        try:
            while "stop" not in requests:
                while requests and requests[0] != "stop":
                    _, method, done = ACTIONS[requests.pop(0)]
                    getattr(topology, method)()
                    print(done, flush=True)
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        print("stopping ...", flush=True)
    print("stopped: nothing left running")
    return 0


def describe(state: dict) -> str:
    key = state["subscription_key"]
    lines = [
        f"profile      {state['profile']}",
        f"gateway      {state['gateway_url']}   ({SUBSCRIPTION_KEY_HEADER}: {key})",
    ]
    for role, region in state["regions"].items():
        lines.append(
            f"{role:<12} {region['site']}: front end {region['frontend_url']}, "
            f"app {region['app_url']}"
        )
    store = state["store"]
    lines.append(
        f"store        {store['kind']}"
        + (f" (Azurite, {store['endpoint']})" if "endpoint" in store else "")
    )
    auth = state.get("auth", {"mode": AUTH_NONE})
    bearer = ""
    if auth["mode"] == AUTH_ENTRA:
        lines.append(f"issuer       {auth['issuer']}   (AUTH_MODE={AUTH_ENTRA})")
        lines.append(
            f"token:       TOKEN=$(python -m loadtests.token_issuer token --config {auth['config']})"
        )
        bearer = f"-H \"{AUTHORIZATION_HEADER}: Bearer $TOKEN\" "
    lines += [
        f"health key   {state['health_key']}",
        (
            f"try:         curl -s -i -H '{SUBSCRIPTION_KEY_HEADER}: {key}' {bearer}"
            f"{state['gateway_url']}{TODO_PATH}"
        ),
        "stop:        Ctrl-C, or python -m loadtests.topology down",
    ]
    return "\n".join(lines)


def _signal_owner(signum: int, workdir: Path) -> int:
    state = read_state(workdir)
    try:
        os.kill(state["owner_pid"], signum)
    except ProcessLookupError:
        raise TopologyError(f"the topology owner (pid {state['owner_pid']}) is gone") from None
    return state["owner_pid"]


def _down(args: argparse.Namespace) -> int:
    state = read_state(args.workdir)
    _signal_owner(signal.SIGTERM, args.workdir)
    groups = list(state["process_groups"].values())
    if not _groups_gone(groups, DOWN_TIMEOUT_SECONDS):  # the owner did not finish: finish it
        for group in groups:
            signal_group(group, signal.SIGKILL)
        if not _groups_gone(groups, DOWN_TIMEOUT_SECONDS):
            raise TopologyError(f"process groups {groups} still run after SIGKILL")
    print("stopped")
    return 0


def _groups_gone(groups: list[int], timeout: float) -> bool:
    """Wait until no process of the groups runs; False if some still does at the deadline."""
    deadline = time.monotonic() + timeout
    while any(group_alive(g) for g in groups):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.topology", description=__doc__)
    parser.add_argument("command", choices=("up", "down", *ACTIONS))
    parser.add_argument("--gateway-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--certs", type=Path, default=DEFAULT_CERTS, help="default: .certs")
    parser.add_argument(
        "--store",
        choices=(TABLE_STORE, MEMORY_STORE),
        default=TABLE_STORE,
        help="table: one Azurite both regions share (default); memory: each app its own",
    )
    parser.add_argument("--workers", type=int, default=1, help="app workers per region")
    parser.add_argument(
        "--profile",
        choices=fidelity.PROFILES,
        default=fidelity.LOCAL,
        help="fidelity profile (loadtests.fidelity): local (default, the best case) or azure",
    )
    parser.add_argument(
        "--stack", default=fidelity.DEFAULT_STACK, help="azure profile: the stack to read"
    )
    parser.add_argument(
        "--auth",
        choices=AUTH_MODES,
        default=AUTH_ENTRA,
        help="entra (default): the local token issuer runs, gateway and apps require its tokens",
    )
    parser.add_argument(
        "--stacks", type=Path, default=ROOT / "cdktf.out" / "stacks", help=argparse.SUPPRESS
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up(args)
        if args.command == "down":
            return _down(args)
        owner = _signal_owner(ACTIONS[args.command][0], args.workdir)
        print(f"{args.command}: signalled the topology (pid {owner})")
        return 0
    except (TopologyError, fidelity.ProfileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting: Topology.start has stopped its part
        print("interrupted: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
