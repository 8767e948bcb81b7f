"""Post-deploy smoke checks; exits 1 with one line per failed check.

    python -m tools.delivery.smoke outputs.json [--wait-seconds 600]

Only what API Management publishes is asked for through a gateway: the operations of
app/openapi.json. Through every gateway: the TodoItem list with the subscription key (and, when
the stack takes Entra ID tokens, the deploy identity's bearer token: tools/delivery/
access_token.py) 200 and `APP-SERVICE-SITE-NAME` present; without the key, with a wrong key, and
with the key but no token, 401; the app's health
path 404 (API Management does not publish it: health stays between Traffic Manager and the web
apps); and one item created, read back and deleted (the data path, 201/200/204). Straight to
each regional web app without a client certificate: 403 (the access restrictions admit only API
Management and Traffic Manager, so the runner can never reach `/health/<key>` there, and the
smoke checks do not try). `--wait-seconds` first waits (bounded) until the gateway answers 200,
for a freshly deployed app that is still starting.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.contract import HEALTH_PATH, SITE_NAME_HEADER, SUBSCRIPTION_KEY_HEADER, TODO_PATH
from tools.cli import run_cli
from tools.delivery.access_token import bearer_headers
from tools.delivery.stack_outputs import StackOutputs, load

WRONG_HEALTH_KEY = "not-the-health-check-key-0000"
WRONG_SUBSCRIPTION_KEY = "not-the-subscription-key-0000"
SMOKE_ITEM = {"name": "smoke check (deleted right away)", "isCompleted": False}
POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    url: str
    expect_status: int
    headers: dict[str, str] = field(default_factory=dict)
    expect_header: str | None = None


def checks(outputs: StackOutputs, bearer: dict[str, str] | None = None) -> list[Check]:
    """`bearer`: the Authorization header of a stack that takes tokens (empty: it does not)."""
    key = {SUBSCRIPTION_KEY_HEADER: outputs.subscription_key}
    caller = {**key, **(bearer or {})}
    wrong_key = {SUBSCRIPTION_KEY_HEADER: WRONG_SUBSCRIPTION_KEY}
    health = HEALTH_PATH.replace("{key}", WRONG_HEALTH_KEY)
    found = []
    for gateway in outputs.gateway_urls:
        base = outputs.api_base(gateway)
        found += [
            Check(f"gateway {gateway} with key", base + TODO_PATH, 200, caller, SITE_NAME_HEADER),
            Check(f"gateway {gateway} without key", base + TODO_PATH, 401),
            Check(f"gateway {gateway} with a wrong key", base + TODO_PATH, 401, wrong_key),
            Check(f"gateway {gateway} does not publish the health path", base + health, 404,
                  caller),
        ]
        if bearer:
            found.append(Check(f"gateway {gateway} with key, without token", base + TODO_PATH,
                               401, key))
    for app in outputs.web_apps:
        found.append(Check(f"web app {app.name} without client certificate",
                           app.url + TODO_PATH, 403))
    return found


def failure(check: Check, client: httpx.Client) -> str | None:
    """None when the check passes, else one line saying what happened."""
    where = f"{check.name}: GET {check.url}"
    try:
        response = client.get(check.url, headers=check.headers)
    except httpx.HTTPError as error:
        return f"FAIL {where}: {type(error).__name__}: {error}"
    if response.status_code != check.expect_status:
        return f"FAIL {where}: expected {check.expect_status}, got {response.status_code}"
    if check.expect_header and check.expect_header not in response.headers:
        return f"FAIL {where}: response has no {check.expect_header} header"
    return None


def round_trip(outputs: StackOutputs, gateway: str, client: httpx.Client,
               bearer: dict[str, str] | None = None) -> str | None:
    """Create an item, read it back, delete it: None when all three work, else one line."""
    key = {SUBSCRIPTION_KEY_HEADER: outputs.subscription_key, **(bearer or {})}
    url = outputs.api_base(gateway) + TODO_PATH
    where = f"gateway {gateway} item round trip"
    try:
        created = client.post(url, json=SMOKE_ITEM, headers=key)
        if created.status_code != 201:
            return f"FAIL {where}: POST {url}: expected 201, got {created.status_code}"
        item = f"{url}/{created.json()['id']}"
        for method, expected in (("GET", 200), ("DELETE", 204)):
            answer = client.request(method, item, headers=key)
            if answer.status_code != expected:
                return f"FAIL {where}: {method} {item}: expected {expected}, got {answer.status_code}"
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        return f"FAIL {where}: {type(error).__name__}: {error}"
    return None


# Answers that time will not change: the smoke checks' own key or token is refused, so waiting
# for a starting app would only delay the failure (the checks then report it).
REFUSED = (401, 403)


def wait_until_up(first: Check, client: httpx.Client, seconds: float) -> None:
    """Until `first` gets its status, at most `seconds`; at once when it is refused."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status = client.get(first.url, headers=first.headers).status_code
        except httpx.HTTPError:
            status = None
        if status == first.expect_status or status in REFUSED:
            return
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def run(outputs: StackOutputs, wait_seconds: float = 0, timeout: float = 30) -> list[str]:
    """The failure lines (empty when every check passed)."""
    bearer = bearer_headers(outputs)
    planned = checks(outputs, bearer)
    # verify=True: the gateway and *.azurewebsites.net serve publicly trusted certificates.
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        if wait_seconds:
            wait_until_up(planned[0], client, wait_seconds)
        results = [(check.name, failure(check, client)) for check in planned]
        results += [(f"gateway {gateway} item round trip",
                     round_trip(outputs, gateway, client, bearer))
                    for gateway in outputs.gateway_urls]
    for name, problem in results:
        print(problem or f"ok   {name}")
    return [problem for _, problem in results if problem]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("--wait-seconds", type=float, default=0)
    parser.add_argument("--timeout", type=float, default=30, help="per request, seconds")
    args = parser.parse_args(argv)
    failures = run(load(args.outputs), args.wait_seconds, args.timeout)
    if failures:
        print(f"{len(failures)} smoke check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
