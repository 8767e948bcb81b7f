"""The release driver's Azure backend: each region's web app and its `staging` slot, through the
Azure CLI (logged in by azure/login) and HTTPS.

- deploy:  `az webapp deploy --slot staging`, the slot's SCM site opened to this runner only for
           the upload (tools.delivery.deploy_app.opened_for); then the main sites of production
           and staging are opened to this runner (rule RELEASE_RULE) for the smoke tests and the
           bake, until `close()` (the CLI always calls it; the workflow's always() step removes
           what a killed runner left).
- warm up: the staging slot's keyed health path, through its own hostname, until 200.
- client:  httpx with the client certificate (PEM files made from Key Vault's PFX by the CLI),
           `https://<slot hostname>`, and the site name App Service gives that slot's instances
           (`<app>` in production, `<app>-staging` in the slot: app/settings.py).
- swap:    `az webapp deployment slot swap --slot staging --target-slot production` (a swap back
           is the same command).
- served:  the web app's `Requests` and `Http5xx` metrics (Azure Monitor, totals since the
           backend was made), asked at most every `metrics_every` seconds: Azure's metrics lag
           by a minute or more, so a bake shorter than a few minutes sees mostly the health path
           and its own reads (docs/delivery.md).
"""

from __future__ import annotations

import datetime
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Self

import httpx

from app.contract import slot_site_name
from tools.cli import CliError
from tools.delivery.access_token import bearer_headers
from tools.delivery.deploy_app import RELEASE_RULE, az, az_json, deploy_order, opened_for
from tools.delivery.release import ReleaseError, health_path
from tools.delivery.stack_outputs import StackOutputs, WebApp

STAGING = "staging"
PRODUCTION = "production"
WARM_UP_SECONDS = 600.0
WARM_UP_POLL_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0


class AppServiceSlots:
    """tools.delivery.release.Backend for a deployed stack; regions are named by web app."""

    def __init__(
        self,
        outputs: StackOutputs,
        runner_ip: str | None,
        certificate: tuple[str, str] | None,
        metrics_every: float = 60.0,
        warm_up_seconds: float = WARM_UP_SECONDS,
        warm_up_poll: float = WARM_UP_POLL_SECONDS,
    ) -> None:
        if not outputs.staging_urls:
            raise ReleaseError(
                "the stack has no staging slots (output web_app_staging_hostnames): enable"
                " app_service.staging_slot, or deploy with tools.delivery.deploy_app"
            )
        self.outputs = outputs
        self.apps = {app.name: app for app in outputs.web_apps}
        self.ip = runner_ip
        self.certificate = certificate
        self.metrics_every = metrics_every
        self.warm_up_seconds = warm_up_seconds
        self.warm_up_poll = warm_up_poll
        self.since = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self._opened = ExitStack()
        self._main_open: set[str] = set()
        self._metrics: dict[str, tuple[float, tuple[int, int]]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every rule this backend added (in reverse order)."""
        self._opened.close()

    # -- what the driver asks -----------------------------------------------------------------

    def regions(self) -> list[str]:
        return [app.name for app in deploy_order(self.outputs.web_apps)]

    def health_path(self) -> str:
        return health_path(self.outputs.health_check_key)

    def deploy(self, region: str, package: Path) -> None:
        app = self.apps[region]
        command = [
            "az", "webapp", "deploy", "--resource-group", app.resource_group,
            "--name", app.name, "--slot", STAGING, "--src-path", str(package),
            "--type", "zip", "--restart", "true", "--only-show-errors",
        ]  # fmt: skip
        try:
            with opened_for(app, self.ip, slot=STAGING):
                az(command, f"deploy to {app.name}/{STAGING}")
        except CliError as error:  # az failed: a failed step, in one line
            raise ReleaseError(str(error)) from None
        self._open_main_sites(app)

    def warm_up(self, region: str) -> None:
        client, base, _ = self.client(region, STAGING)
        deadline = time.monotonic() + self.warm_up_seconds
        last = "no answer"
        with client:
            while True:
                try:
                    status = client.get(base + self.health_path()).status_code
                    if status == 200:
                        return
                    last = f"HTTP {status}"
                except httpx.HTTPError as error:
                    last = f"{type(error).__name__}: {error}"
                if time.monotonic() >= deadline:
                    raise ReleaseError(
                        f"{region}/{STAGING} not healthy after {self.warm_up_seconds:g} s ({last})"
                    )
                time.sleep(self.warm_up_poll)

    def client(self, region: str, slot: str) -> tuple[httpx.Client, str, str]:
        app = self.apps[region]
        base = app.url if slot == PRODUCTION else self.outputs.staging_urls[region]
        # With Entra ID tokens the app checks the caller's token too (defence in depth).
        client = httpx.Client(
            cert=self.certificate, timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False,
            headers=bearer_headers(self.outputs),
        )
        return client, base, slot_site_name(app.name, slot)

    def swap(self, region: str) -> None:
        app = self.apps[region]
        command = [
            "az", "webapp", "deployment", "slot", "swap", "--resource-group", app.resource_group,
            "--name", app.name, "--slot", STAGING, "--target-slot", PRODUCTION,
            "--only-show-errors",
        ]  # fmt: skip
        try:
            az(command, f"swap of {app.name}")
        except CliError as error:
            raise ReleaseError(str(error)) from None

    def served(self, region: str) -> tuple[int, int]:
        fetched = self._metrics.get(region)
        if fetched is None or time.monotonic() - fetched[0] >= self.metrics_every:
            fetched = (time.monotonic(), self._fetch_metrics(self.apps[region]))
            self._metrics[region] = fetched
        return fetched[1]

    # -- Azure ------------------------------------------------------------------------------

    def _open_main_sites(self, app: WebApp) -> None:
        """Let this runner reach production and staging of `app` for the smoke tests and bake."""
        if self.ip is None or app.name in self._main_open:
            return
        for slot in (None, STAGING):
            self._opened.enter_context(
                opened_for(app, self.ip, slot=slot, scm=False, rule=RELEASE_RULE)
            )
        self._main_open.add(app.name)

    def _fetch_metrics(self, app: WebApp) -> tuple[int, int]:
        command = [
            "az", "monitor", "metrics", "list", "--resource", app.name,
            "--resource-group", app.resource_group, "--resource-type", "Microsoft.Web/sites",
            "--metric", "Requests", "Http5xx", "--aggregation", "Total", "--interval", "PT1M",
            "--start-time", self.since.isoformat(), "--only-show-errors",
        ]  # fmt: skip
        try:
            answer = az_json(command, f"metrics of {app.name}")
        except CliError as error:
            raise ReleaseError(str(error)) from None
        totals = {"Requests": 0, "Http5xx": 0}
        for metric in (answer or {}).get("value") or []:
            name = (metric.get("name") or {}).get("value")
            if name in totals:
                totals[name] = int(
                    sum(point.get("total") or 0 for series in metric.get("timeseries") or []
                        for point in series.get("data") or [])
                )  # fmt: skip
        return totals["Requests"], totals["Http5xx"]

