"""Deploy the app package to every regional web app of a stack, one region at a time.

    python -m tools.deploy_app outputs.json dist/todo-api-app.zip

Runs `az webapp deploy --type zip` (Azure CLI, logged in by azure/login) per web app, the
secondary regions first and the primary last, so a region always serves while another restarts.
Stops at the first failure, naming the web app.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.stack_outputs import WebApp, load


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("package", type=Path, help="zip built by tools.package_app")
    args = parser.parse_args(argv)
    if not args.package.is_file():
        raise CliError(f"package {args.package} not found: build it with `make package`")
    for app in deploy_order(load(args.outputs).web_apps):
        print(f"deploying {args.package} to {app.name} ({app.resource_group})", flush=True)
        try:
            result = subprocess.run(az_deploy_command(app, args.package), check=False)
        except FileNotFoundError:
            raise CliError("Azure CLI `az` not found on PATH") from None
        if result.returncode != 0:
            raise CliError(f"deploy to {app.name} failed (az exit code {result.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
