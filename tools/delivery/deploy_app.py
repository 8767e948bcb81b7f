"""Deploy the app package straight to every regional web app (stacks without staging slots),
and open and close the delivery's access rules for the runner.

    python -m tools.delivery.deploy_app outputs.json dist/todo-api-app.zip [--runner-ip auto|IP]

Runs `az webapp deploy --type zip` (Azure CLI, logged in by azure/login) per web app, the
secondary regions first and the primary last, so a region always serves while another restarts.
Stops at the first failure, naming the web app.

The stacks deny the deployment (SCM/Kudu) site to everyone by default, and GitHub-hosted runners
have no fixed address: with `--runner-ip`, an Allow rule for that one address (`auto`: looked up
at $RUNNER_IP_URL, default https://api.ipify.org) is added to the web app's SCM access restrictions just for its deploy and
removed afterwards, whatever happens (a cancelled job's SIGTERM included), so the managed
configuration (and the next plan) is unchanged. The release driver (tools.delivery.release) opens
the slots' SCM and main sites the same way (`opened_for`). `--close-scm [--slot staging]` only
removes the delivery's rules from every site that still has one: the deploy workflow runs it in an
`always()` step, for the case where the runner killed the program before its own cleanup ran.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.delivery.stack_outputs import WebApp, load

DEFAULT_RUNNER_IP_URL = "https://api.ipify.org"
SCM_RULE = "github-actions-deploy"
SCM_RULE_PRIORITY = "50"
RELEASE_RULE = "github-actions-release"  # the release's smoke tests and bake (tools.delivery.release)


def deploy_order(web_apps: list[WebApp]) -> list[WebApp]:
    """Secondary regions first, the primary (first in the outputs) last."""
    return web_apps[1:] + web_apps[:1]


def az_deploy_command(app: WebApp, package: Path) -> list[str]:
    return [
        "az", "webapp", "deploy",
        "--resource-group", app.resource_group,
        "--name", app.name,
        "--src-path", str(package),
        "--type", "zip",
        "--restart", "true",
        "--only-show-errors",
    ]


def access_rule_command(verb: str, app: WebApp, ip: str, *, slot: str | None = None,
                        scm: bool = True, rule: str = SCM_RULE) -> list[str]:
    """Add or remove the delivery's Allow rule for `ip` on the SCM site (`scm`) or the main
    site of the web app or of one of its slots."""
    command = ["az", "webapp", "config", "access-restriction", verb,
               "--resource-group", app.resource_group, "--name", app.name,
               "--rule-name", rule, "--only-show-errors"]
    if slot:
        command += ["--slot", slot]
    if scm:
        command += ["--scm-site", "true"]
    if verb == "add":
        command += ["--action", "Allow", "--ip-address", f"{ip}/32",
                    "--priority", SCM_RULE_PRIORITY]
    return command


def az(command: list[str], what: str) -> None:
    try:
        code = subprocess.run(command, check=False).returncode
    except FileNotFoundError:
        raise CliError("Azure CLI `az` not found on PATH") from None
    if code != 0:
        raise CliError(f"{what} failed (az exit code {code})")


def az_json(command: list[str], what: str):
    """Run an `az` command that prints JSON; its answer."""
    try:
        result = subprocess.run(command + ["--output", "json"], capture_output=True, text=True,
                                check=False)
    except FileNotFoundError:
        raise CliError("Azure CLI `az` not found on PATH") from None
    if result.returncode != 0:
        raise CliError(f"{what} failed (az exit code {result.returncode})")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise CliError(f"unexpected answer from az for {what}") from None


def _where(app: WebApp, slot: str | None, scm: bool) -> str:
    return f"the {'SCM' if scm else 'main'} site of {app.name}" + (f"/{slot}" if slot else "")


@contextmanager
def opened_for(app: WebApp, ip: str | None, *, slot: str | None = None, scm: bool = True,
               rule: str = SCM_RULE):
    """The site's access restrictions allow `ip` inside the block, and never after it."""
    if ip is None:
        yield
        return
    where = _where(app, slot, scm)
    az(access_rule_command("add", app, ip, slot=slot, scm=scm, rule=rule),
       f"opening {where} to {ip}")
    try:
        yield
    finally:
        az(access_rule_command("remove", app, ip, slot=slot, scm=scm, rule=rule),
           f"closing {where}")


# (rule name, the key of `az webapp config access-restriction show` that lists it, scm site)
DELIVERY_RULES = ((SCM_RULE, "scmIpSecurityRestrictions", True),
                  (RELEASE_RULE, "ipSecurityRestrictions", False))


def close_delivery_rules(web_apps: list[WebApp], slots: tuple[str | None, ...] = (None,)
                         ) -> list[str]:
    """Remove the delivery's rules (tools.delivery.deploy_app's SCM rule, tools.delivery.release's
    main-site rule) wherever they are still present; the sites closed."""
    closed = []
    for app in web_apps:
        for slot in slots:
            command = ["az", "webapp", "config", "access-restriction", "show",
                       "--resource-group", app.resource_group, "--name", app.name,
                       "--only-show-errors", *(["--slot", slot] if slot else [])]
            answer = az_json(command, f"reading the access restrictions of {app.name}")
            if not isinstance(answer, dict):
                raise CliError(f"unexpected answer from az for {app.name}'s access restrictions")
            for rule, key, scm in DELIVERY_RULES:
                if any(r.get("name") == rule for r in answer.get(key) or []):
                    az(access_rule_command("remove", app, "", slot=slot, scm=scm, rule=rule),
                       f"closing {_where(app, slot, scm)}")
                    closed.append(_where(app, slot, scm).removeprefix("the "))
    return closed


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def runner_ip(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "auto":
        url = os.environ.get("RUNNER_IP_URL") or DEFAULT_RUNNER_IP_URL
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                value = response.read().decode().strip()
        except OSError as error:
            raise CliError(f"cannot look up the runner's address at {url}: {error}") from None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise CliError(f"--runner-ip: not an IPv4 address: {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("package", type=Path, nargs="?", help="zip built by tools.delivery.package_app")
    parser.add_argument("--runner-ip", help="open the SCM site to this address (or 'auto')")
    parser.add_argument("--close-scm", action="store_true",
                        help="only remove the delivery's rules (deploy and release) from every"
                        " site and slot that still has one")
    parser.add_argument("--slot", action="append", default=[],
                        help="with --close-scm: also look at this slot (repeatable)")
    args = parser.parse_args(argv)
    if args.close_scm:
        closed = close_delivery_rules(load(args.outputs).web_apps, (None, *args.slot))
        print(f"closed: {', '.join(closed) or 'none was open'}")
        return 0
    if args.package is None:
        raise CliError("the package is required (or --close-scm)")
    if not args.package.is_file():
        raise CliError(f"package {args.package} not found: build it with `make package`")
    web_apps = load(args.outputs).web_apps
    ip = runner_ip(args.runner_ip)
    # A cancelled job gets SIGTERM: turn it into an exception so the SCM rule is removed.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    for app in deploy_order(web_apps):
        print(f"deploying {args.package} to {app.name} ({app.resource_group})", flush=True)
        with opened_for(app, ip):
            az(az_deploy_command(app, args.package), f"deploy to {app.name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
