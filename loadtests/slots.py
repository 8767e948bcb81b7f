"""Deployment slots on the local stand-in: the release driver's local backend
(tools.delivery.release.Backend), so `make demo` rehearses a release with the code the workflow runs.

Each region's front end has a production listener (backend `app`) and a staging listener
(backend `staging`, the slot's own address). A deploy starts the package's app/startup.sh on the
staging slot's port with the staging slot's settings. A swap does what App Service's does:

1. the staging slot's app is restarted with production's settings (WEBSITE_SLOT_NAME, so the
   site name it reports: app.contract.slot_site_name) and warmed up, while production keeps
   serving;
2. the front end's `app` (and health) server is pointed at it and `staging` at the old
   production app, through HAProxy's runtime API: no listener closes, requests in flight
   finish where they are;
3. the old production app is stopped gracefully (gunicorn finishes what it serves) and started
   again with the staging slot's settings.

A swap back is the same swap again.
"""

from __future__ import annotations

import hashlib
import io
import ssl
import zipfile
from pathlib import Path

import httpx

from app.contract import AUTHORIZATION_HEADER, PRODUCTION_SLOT
from loadtests.haproxy_admin import HAProxyAdmin
from loadtests.processes import TopologyError, http_status
from loadtests.topology import STAGING_SLOT, Region, Topology
from tools.delivery.release import ReleaseError, health_path

ROLLOUT_ORDER = ("secondary", "primary")  # the region that serves least goes first
RELEASE_CALLER = "5a3d9c1e-7b2f-4e8d-9a6c-0f1e2d3c4b5a"  # the `oid` of the smoke tests' token


class LocalSlots:
    """tools.delivery.release.Backend over a running Topology (regions named by role)."""

    def __init__(self, topology: Topology, order: tuple[str, ...] = ROLLOUT_ORDER) -> None:
        self.topology = topology
        self.order = order
        self.packages = topology.workdir / "packages"

    # -- what the driver asks -----------------------------------------------------------------

    def regions(self) -> list[str]:
        return list(self.order)

    def health_path(self) -> str:
        return health_path(self.topology.config.health_key)

    def deploy(self, role: str, package: Path) -> None:
        region = self._region(role)
        root = self._unpack(package)
        if region.staging_app is not None:
            region.staging_app.stop()
        region.staging_package = root
        region.staging_app = self._start(role, STAGING_SLOT, root, region.staging_app_port)

    def warm_up(self, role: str) -> None:
        region = self._region(role)
        if region.staging_app is None:
            raise ReleaseError("nothing deployed to the staging slot")
        try:
            region.staging_app.wait_ready(lambda: self._healthy(region.staging_app_port))
        except TopologyError as error:
            raise ReleaseError(
                f"the staging slot never answered its health path: {error}"
            ) from None

    def client(self, role: str, slot: str) -> tuple[httpx.Client, str, str]:
        region = self._region(role)
        certs = self.topology.config.certs_dir
        tls = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        tls.load_cert_chain(certs / "client.pem", certs / "client.key")
        port = region.frontend_port if slot == PRODUCTION_SLOT else region.staging_frontend_port
        # With tokens on, the release's own caller (the app checks the token: no gateway here).
        headers = {}
        if self.topology.issuer_config is not None:
            headers[AUTHORIZATION_HEADER] = f"Bearer {self.topology.token(RELEASE_CALLER)}"
        return (
            httpx.Client(verify=tls, timeout=10, headers=headers),
            f"https://127.0.0.1:{port}",
            region.slot_site(slot),
        )

    def swap(self, role: str) -> None:
        region = self._region(role)
        if region.staging_app is None or region.staging_package is None:
            raise ReleaseError("nothing deployed to the staging slot: nothing to swap")
        # 1. the staging slot's instances get production's settings, and warm up
        region.staging_app.stop()
        incoming = self._start(
            role, PRODUCTION_SLOT, region.staging_package, region.staging_app_port
        )
        # 2. the front end's routing switches: production -> the warmed-up app
        admin = HAProxyAdmin(region.admin_socket)
        for backend in ("app", "app_health"):
            admin.set_address(backend, "app", region.staging_app_port)
        admin.set_address("staging", "app", region.app_port)
        # 3. the old production app becomes the staging slot, with the staging settings
        outgoing, outgoing_package, outgoing_port = region.app, region.package, region.app_port
        outgoing.stop()
        region.app, region.app_port, region.package = (
            incoming,
            region.staging_app_port,
            (region.staging_package),
        )
        region.staging_app_port, region.staging_package = outgoing_port, outgoing_package
        region.staging_app = self._start(role, STAGING_SLOT, outgoing_package, outgoing_port)

    def served(self, role: str) -> tuple[int, int]:
        """(answers, 5xx answers) of the region's production backend: the front end's counters
        (the local stand-in for App Service's Requests and Http5xx metrics)."""
        return HAProxyAdmin(self._region(role).admin_socket).responses("app")

    # -- helpers ------------------------------------------------------------------------------

    def _region(self, role: str) -> Region:
        try:
            return self.topology.regions[role]
        except KeyError:
            raise ReleaseError(f"no region {role!r} in this topology") from None

    def _healthy(self, port: int) -> bool:
        return http_status(port, self.health_path()) == 200

    def _start(self, role: str, slot: str, package: Path, port: int):
        process = self.topology.app_process(role, slot, self._region(role).site, port, package)
        process.start()
        try:
            process.wait_ready(lambda: self._healthy(port))
        except TopologyError as error:
            process.stop()
            raise ReleaseError(f"the {slot} slot's app did not start: {error}") from None
        return process

    def _unpack(self, package: Path) -> Path:
        """The package zip (tools.delivery.package_app) unpacked once, under its digest."""
        try:
            data = Path(package).read_bytes()
        except OSError as error:
            raise ReleaseError(f"package {package}: {error.strerror}") from None
        root = self.packages / hashlib.sha256(data).hexdigest()[:16]
        if not (root / "app" / "startup.sh").is_file():
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(root)
            except zipfile.BadZipFile:
                raise ReleaseError(f"package {package}: not a zip file") from None
            (root / "app" / "startup.sh").chmod(0o755)
        return root
