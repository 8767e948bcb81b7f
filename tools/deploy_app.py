"""Deploy the app package to every regional web app of a stack, one region at a time.

    python -m tools.deploy_app outputs.json dist/todo-api-app.zip [--runner-ip auto|IP]

Runs `az webapp deploy --type zip` (Azure CLI, logged in by azure/login) per web app, the
secondary regions first and the primary last, so a region always serves while another restarts.
Stops at the first failure, naming the web app.

The stacks deny the deployment (SCM/Kudu) site to everyone by default, and GitHub-hosted runners
have no fixed address: with `--runner-ip`, an Allow rule for that one address (`auto`: looked up
at $RUNNER_IP_URL, default https://api.ipify.org) is added to the web app's SCM access restrictions just for its deploy and
removed afterwards, whatever happens, so the managed configuration (and the next plan) is
unchanged.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.stack_outputs import WebApp, load

DEFAULT_RUNNER_IP_URL = "https://api.ipify.org"
SCM_RULE = "github-actions-deploy"
SCM_RULE_PRIORITY = "50"


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


def access_rule_command(verb: str, app: WebApp, ip: str) -> list[str]:
    command = ["az", "webapp", "config", "access-restriction", verb,
               "--resource-group", app.resource_group, "--name", app.name,
               "--rule-name", SCM_RULE, "--scm-site", "true", "--only-show-errors"]
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


@contextmanager
def scm_opened_for(app: WebApp, ip: str | None):
    if ip is None:
        yield
        return
    az(access_rule_command("add", app, ip), f"opening the SCM site of {app.name} to {ip}")
    try:
        yield
    finally:
        az(access_rule_command("remove", app, ip), f"closing the SCM site of {app.name}")


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
    parser.add_argument("package", type=Path, help="zip built by tools.package_app")
    parser.add_argument("--runner-ip", help="open the SCM site to this address (or 'auto')")
    args = parser.parse_args(argv)
    if not args.package.is_file():
        raise CliError(f"package {args.package} not found: build it with `make package`")
    web_apps = load(args.outputs).web_apps
    ip = runner_ip(args.runner_ip)
    for app in deploy_order(web_apps):
        print(f"deploying {args.package} to {app.name} ({app.resource_group})", flush=True)
        with scm_opened_for(app, ip):
            az(az_deploy_command(app, args.package), f"deploy to {app.name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
