"""Read a deployed stack's outputs (`terraform output -json`) for the deploy helpers.

    terraform output -json > outputs.json
    python -m tools.delivery.stack_outputs outputs.json show
    python -m tools.delivery.stack_outputs outputs.json github-env --env-file "$GITHUB_ENV"

`github-env` masks the sensitive values in the Actions log (`::add-mask::`) and writes
GATEWAY_URL (the first gateway), API_PATH, PRIMARY_WEB_APP, PRIMARY_RESOURCE_GROUP,
SUBSCRIPTION_KEY and HEALTH_CHECK_KEY for the following steps of the same job.
The output names are fixed by the stacks (see stacks/): one fact, one place.
`web_app_resource_group_names` pairs each web app with its resource group, in the order of
`web_app_names` (primary first). The Cosmos DB outputs (`cosmos_account_name`,
`cosmos_resource_group_name`, `cosmos_regions`: write region first, `table_name`) are optional:
only the database failover drill needs them (`StackOutputs.cosmos` is None without them).
`load_test_engine_identity` (`{"id": <user-assigned identity resource id>, "client_id": <GUID>}`)
is optional too: stacks with drills and Entra ID tokens name the identity Azure Load Testing's
engines call the API as (tools.operations.azure_load_testing puts it in the test definition).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.cli import CliError, read_json, run_cli

LIST_OUTPUTS = (
    "gateway_urls",
    "traffic_manager_fqdns",
    "web_app_names",
    "web_app_hostnames",
    "resource_group_names",
    "web_app_resource_group_names",
)
TEXT_OUTPUTS = ("subscription_key", "health_check_key", "api_path")
# Optional: stacks with staging slots (the release driver, tools.delivery.release, reads it:
# the slots' hostnames in the order of web_app_names).
STAGING_OUTPUT = "web_app_staging_hostnames"
# Optional: where the release's smoke tests find the client certificate (Key Vault, PFX secret).
CERTIFICATE_OUTPUTS = ("key_vault_name", "client_certificate_name")
# Optional: stacks whose API takes Entra ID tokens (auth.mode = "entra"): the token's audience
# (tools/delivery/access_token.py asks for a token for it).
IDENTIFIER_URI_OUTPUT = "api_identifier_uri"
# Optional: stacks with drills and Entra ID tokens: the user-assigned identity the load test
# resource hands its engines, an allowed caller of the API (both app roles).
ENGINE_IDENTITY_OUTPUT = "load_test_engine_identity"
USER_ASSIGNED_IDENTITY_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity"
    r"/userAssignedIdentities/[^/]+", re.IGNORECASE)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# Optional: how long a release watches each region after its swap (config
# app_service.release_bake_seconds).
BAKE_OUTPUT = "release_bake_seconds"
# Optional: stacks with a Cosmos DB account (the database failover drill reads them).
OPTIONAL_LIST_OUTPUTS = ("cosmos_regions",)
OPTIONAL_TEXT_OUTPUTS = ("cosmos_account_name", "cosmos_resource_group_name", "table_name")
SENSITIVE_OUTPUTS = ("subscription_key", "health_check_key")
# Read by tools/operations/workbook_link.py (the failover workbook), not needed by the deploy helpers.
WORKBOOK_ID_OUTPUT, WORKBOOK_URL_OUTPUT = "workbook_id", "workbook_url"
WORKBOOK_OUTPUTS = (WORKBOOK_ID_OUTPUT, WORKBOOK_URL_OUTPUT)


@dataclass(frozen=True)
class WebApp:
    name: str
    resource_group: str
    url: str


@dataclass(frozen=True)
class CosmosAccount:
    name: str
    resource_group: str
    regions: list[str]  # write region first
    table_name: str


@dataclass(frozen=True)
class EngineIdentity:
    id: str  # the user-assigned identity's ARM resource id
    client_id: str


@dataclass(frozen=True)
class StackOutputs:
    gateway_urls: list[str]
    traffic_manager_fqdns: list[str]
    web_app_names: list[str]
    web_app_hostnames: list[str]
    resource_group_names: list[str]
    web_app_resource_group_names: list[str]
    subscription_key: str
    health_check_key: str
    api_path: str
    cosmos: CosmosAccount | None = None
    web_app_staging_hostnames: list[str] | None = None
    key_vault_name: str | None = None
    client_certificate_name: str | None = None
    release_bake_seconds: float | None = None
    api_identifier_uri: str | None = None
    load_test_engine_identity: EngineIdentity | None = None

    @property
    def staging_urls(self) -> dict[str, str]:
        """Each web app's staging slot base URL, by web app name (empty: no slots)."""
        hosts = self.web_app_staging_hostnames or []
        return {name: _url(host) for name, host in zip(self.web_app_names, hosts)}

    @property
    def web_apps(self) -> list[WebApp]:
        """The regional web apps, primary first, each with its resource group and base URL."""
        return [
            WebApp(name, group, _url(host))
            for name, group, host in zip(
                self.web_app_names,
                self.web_app_resource_group_names,
                self.web_app_hostnames,
                strict=True,
            )
        ]

    def api_base(self, gateway_url: str) -> str:
        return f"{gateway_url.rstrip('/')}/{self.api_path.strip('/')}".rstrip("/")


def _url(host: str) -> str:
    return host.rstrip("/") if "://" in host else f"https://{host}"


def parse(raw: dict) -> StackOutputs:
    if not isinstance(raw, dict):
        raise CliError("outputs must be the JSON object printed by `terraform output -json`")
    values = {name: _value(raw, name, name in LIST_OUTPUTS) for name in LIST_OUTPUTS + TEXT_OUTPUTS}
    optional = OPTIONAL_LIST_OUTPUTS + OPTIONAL_TEXT_OUTPUTS
    present = [name for name in optional if name in raw]
    if present and len(present) != len(optional):
        missing = ", ".join(name for name in optional if name not in raw)
        raise CliError(f"Cosmos DB outputs incomplete: {missing} missing")
    if present:
        cosmos = {name: _value(raw, name, name in OPTIONAL_LIST_OUTPUTS) for name in optional}
        if len(cosmos["cosmos_regions"]) < 2:
            raise CliError("output 'cosmos_regions' must list at least two regions (write first)")
        values["cosmos"] = CosmosAccount(cosmos["cosmos_account_name"],
                                         cosmos["cosmos_resource_group_name"],
                                         cosmos["cosmos_regions"], cosmos["table_name"])
    for name in (STAGING_OUTPUT, *CERTIFICATE_OUTPUTS, IDENTIFIER_URI_OUTPUT):
        if (raw.get(name) or {}).get("value") is not None:  # optional: absent or null
            values[name] = _value(raw, name, name == STAGING_OUTPUT)
    bake = (raw.get(BAKE_OUTPUT) or {}).get("value")
    if bake is not None:
        if isinstance(bake, bool) or not isinstance(bake, int | float) or bake < 0:
            raise CliError(f"output {BAKE_OUTPUT!r} must be a number of seconds >= 0, got {bake!r}")
        values[BAKE_OUTPUT] = float(bake)
    engine = (raw.get(ENGINE_IDENTITY_OUTPUT) or {}).get("value")
    if engine is not None:
        values[ENGINE_IDENTITY_OUTPUT] = _engine_identity(engine)
    outputs = StackOutputs(**values)
    apps = len(outputs.web_app_names)
    if len(outputs.web_app_hostnames) != apps or len(outputs.web_app_resource_group_names) != apps:
        raise CliError(
            "outputs web_app_names, web_app_hostnames and web_app_resource_group_names must pair"
            " up (one web app per region, primary first)"
        )
    if outputs.web_app_staging_hostnames is not None and len(
            outputs.web_app_staging_hostnames) != apps:
        raise CliError(f"output {STAGING_OUTPUT!r} must list one slot per web app"
                       " (in the order of web_app_names)")
    return outputs


def _value(raw: dict, name: str, is_list: bool):
    if name not in raw or not isinstance(raw[name], dict) or "value" not in raw[name]:
        raise CliError(f"output {name!r} missing: is this `terraform output -json` of a stack?")
    value = raw[name]["value"]
    wanted = list if is_list else str
    if not isinstance(value, wanted) or (wanted is list and not value):
        kind = "a non-empty list" if wanted is list else "a string"
        raise CliError(f"output {name!r} must be {kind}, got {value!r:.60}")
    return value


def _engine_identity(value) -> EngineIdentity:
    identity = value if isinstance(value, dict) else {}
    resource_id, client_id = identity.get("id"), identity.get("client_id")
    if not (isinstance(resource_id, str) and USER_ASSIGNED_IDENTITY_ID.fullmatch(resource_id)
            and isinstance(client_id, str) and GUID.fullmatch(client_id)):
        raise CliError(f"output {ENGINE_IDENTITY_OUTPUT!r} must be {{\"id\": <user-assigned"
                       f" identity resource id>, \"client_id\": <GUID>}}, got {value!r:.80}")
    return EngineIdentity(resource_id, client_id)


def load(path: Path) -> StackOutputs:
    return parse(read_json(path, "stack outputs"))


def github_env(outputs: StackOutputs) -> tuple[list[str], list[str]]:
    """(workflow commands to print, NAME=value lines for $GITHUB_ENV)."""
    masks = [f"::add-mask::{getattr(outputs, name)}" for name in SENSITIVE_OUTPUTS]
    primary = outputs.web_apps[0]
    env = {
        "GATEWAY_URL": outputs.gateway_urls[0],
        "API_PATH": outputs.api_path,
        "PRIMARY_WEB_APP": primary.name,
        "PRIMARY_RESOURCE_GROUP": primary.resource_group,
        "SUBSCRIPTION_KEY": outputs.subscription_key,
        "HEALTH_CHECK_KEY": outputs.health_check_key,
    }
    for name, value in env.items():
        if "\n" in value:
            raise CliError(f"{name} holds a line break; refusing to write it to GITHUB_ENV")
    return masks, [f"{name}={value}" for name, value in env.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("command", choices=["show", "github-env"])
    parser.add_argument("--env-file", type=Path, help="$GITHUB_ENV (github-env only)")
    args = parser.parse_args(argv)
    outputs = load(args.outputs)
    if args.command == "show":
        print(f"gateways:  {', '.join(outputs.gateway_urls)} (API path /{outputs.api_path})")
        print(f"traffic manager: {', '.join(outputs.traffic_manager_fqdns)}")
        for app in outputs.web_apps:
            print(f"web app:   {app.name} ({app.resource_group}) {app.url}")
        if outputs.cosmos:
            print(f"cosmos db: {outputs.cosmos.name} ({outputs.cosmos.resource_group}),"
                  f" regions {', '.join(outputs.cosmos.regions)} (write first)")
        return 0
    if args.env_file is None:
        raise CliError("github-env needs --env-file (the $GITHUB_ENV file)")
    masks, lines = github_env(outputs)
    print("\n".join(masks))
    with args.env_file.open("a", encoding="utf-8") as env_file:
        env_file.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
