"""Fidelity profiles of the local stand-in: how close its gateway, routing and front ends are to
what the stacks deploy (docs/loadtests.md, "Fidelity profiles").

- `local`: the fast stand-in, kept as the best case. HAProxy health-checks the primary every
  250 ms and takes it out at its first error, retries up to 6 times, and a front end whose app
  is dead refuses connections (the easiest failure to retry).
- `azure`: the rules are read from the synthesized Terraform of an environment stack
  (cdktf.out/stacks/<stack>/cdk.tf.json), so changing the stack changes the drill:
  - API Management's policy: how many times a request goes again (`retry count`), after which
    statuses (the retry condition), which requests are retry-safe (the `retry-safe`
    variable: methods and the Idempotency-Key header), the forward timeout;
  - Traffic Manager: probe path, interval, timeout, tolerated failures, expected statuses and
    the DNS TTL; nothing moves traffic but its probes (no request-level health);
  - App Service's front end: a dead app is answered 503, never a refused connection.

Read from the synthesized JSON, not imported from stacks/: load tests reach the rest of the
product only through files and HTTP (tests/test_boundaries.py).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

LOCAL = "local"
AZURE = "azure"
PROFILES = (LOCAL, AZURE)
DEFAULT_STACK = "todo-api-dev"
# App Service's front end gives up on a request after 230 s (learn.microsoft.com, App Service
# FAQ "request timeout"); the gateway's forward timeout is far shorter.
APP_SERVICE_REQUEST_TIMEOUT_SECONDS = 230


class ProfileError(Exception):
    """The profile cannot be built (one line, names the file and what is missing)."""


@dataclass(frozen=True)
class GatewayRules:
    """What the gateway does with a request its first region did not serve."""

    retries: int  # attempts after the first
    retry_statuses: tuple[int, ...]
    # The retry applies to retry-safe requests only (its condition asks for "retry-safe"), or
    # to every request (then keyless writes are sent again after those statuses too).
    retry_only_retry_safe: bool
    retry_safe_methods: tuple[str, ...]
    idempotency_header: str  # a write carrying it is retry-safe
    forward_timeout_s: float
    # `on-error`: sent again after no connection (every method: it cannot have arrived), and
    # after a timeout: "retry-safe" requests only, "all" or "none".
    again_after_connection_failure: bool
    again_after_timeout: str


@dataclass(frozen=True)
class RoutingRules:
    """Traffic Manager: which region the gateway's first attempt goes to."""

    probe_interval_s: float
    probe_timeout_s: float
    tolerated_failures: int
    dns_ttl_s: float
    expected_statuses: tuple[tuple[int, int], ...]  # inclusive ranges

    @property
    def failover_s(self) -> float:
        """Worst case from the fault to the gateway's first attempt moving."""
        return (self.tolerated_failures + 1) * self.probe_interval_s + self.dns_ttl_s

    def expected(self, status: int | None) -> bool:
        return status is not None and any(
            low <= status <= high for low, high in self.expected_statuses
        )


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # where the rules come from
    gateway: GatewayRules | None  # None: the local gateway's own rules (gateway-local.cfg)
    routing: RoutingRules | None  # None: HAProxy's own health checks

    def describe(self) -> dict:
        return asdict(self)


def local_profile() -> Profile:
    return Profile(LOCAL, "loadtests/templates (fast timings, the best case)", None, None)


def azure_profile(stack_file: Path) -> Profile:
    """The `azure` profile from a synthesized environment stack (cdk.tf.json)."""
    try:
        stack = json.loads(Path(stack_file).read_text())
    except OSError as error:
        raise ProfileError(
            f"azure profile: cannot read {stack_file} ({error.strerror}); run `python main.py`"
        ) from None
    except ValueError:
        raise ProfileError(f"azure profile: {stack_file} is not JSON") from None
    resources = stack.get("resource") if isinstance(stack, dict) else None
    if not isinstance(resources, dict):
        raise ProfileError(f"azure profile: {stack_file} is not a synthesized stack (no resources)")
    policy = _only(resources, "azurerm_api_management_api_policy", stack_file)
    routing = _only(resources, "azurerm_traffic_manager_profile", stack_file)
    try:
        return Profile(AZURE, str(stack_file), _gateway_rules(policy), _routing_rules(routing))
    except ProfileError as error:
        raise ProfileError(f"azure profile: {stack_file}: {error}") from None


def profile(name: str, stacks_dir: Path, stack: str = DEFAULT_STACK) -> Profile:
    if name == LOCAL:
        return local_profile()
    if name == AZURE:
        return azure_profile(Path(stacks_dir) / stack / "cdk.tf.json")
    raise ProfileError(f"profile: unknown {name!r} (one of {', '.join(PROFILES)})")


def _only(resources: dict, kind: str, stack_file: Path) -> dict:
    found = list(resources.get(kind, {}).values())
    if len(found) != 1:
        raise ProfileError(
            f"azure profile: {stack_file} has {len(found)} {kind}, expected 1 (the profile "
            "reads a stack of the single gateway topology)"
        )
    return found[0]


def _routing_rules(profile: dict) -> RoutingRules:
    monitor, dns = profile.get("monitor_config", {}), profile.get("dns_config", {})
    try:
        ranges = tuple(
            tuple(int(part) for part in text.split("-", 1)) if "-" in text else (int(text),) * 2
            for text in monitor.get("expected_status_code_ranges") or ["200-200"]
        )
        return RoutingRules(
            probe_interval_s=float(monitor["interval_in_seconds"]),
            probe_timeout_s=float(monitor["timeout_in_seconds"]),
            tolerated_failures=int(monitor["tolerated_number_of_failures"]),
            dns_ttl_s=float(dns["ttl"]),
            expected_statuses=ranges,
        )
    except KeyError as error:
        raise ProfileError(f"the Traffic Manager profile lacks {error}") from None
    except (TypeError, ValueError) as error:
        raise ProfileError(
            f"the Traffic Manager profile has a value that is no number ({error})"
        ) from None


def _gateway_rules(policy: dict) -> GatewayRules:
    try:
        root = ET.fromstring(policy["xml_content"])
    except (KeyError, TypeError, ET.ParseError) as error:
        raise ProfileError(f"the API policy is not XML ({error})") from None
    retry = root.find("./backend/retry")
    forward = root.find("./backend/retry/forward-request")
    safe = root.find("./inbound/set-variable[@name='retry-safe']")
    if retry is None or forward is None or safe is None:
        raise ProfileError(
            "the API policy lacks a backend <retry> with a <forward-request>, or the "
            "retry-safe variable: the gateway's rules cannot be derived"
        )
    statuses = tuple(
        int(s) for s in re.findall(r"StatusCode\s*==\s*(\d+)", retry.get("condition", ""))
    )
    methods = tuple(re.findall(r'"([A-Z]+)"', safe.get("value", "").split("}")[0]))
    header = re.search(r'Headers\.ContainsKey\("([^"]+)"\)', safe.get("value", ""))
    if not statuses or not methods or header is None:
        raise ProfileError(
            "the API policy's retry condition or retry-safe rule is not in the form "
            "loadtests.fidelity reads (StatusCode == N; methods; Headers.ContainsKey)"
        )
    on_error = " ".join(
        when.get("condition", "") for when in root.findall("./on-error/choose/when")[:1]
    )
    if re.search(r'Reason == "Timeout" && [^|)]*"retry-safe"', on_error):
        after_timeout = "retry-safe"
    else:
        after_timeout = "all" if '"Timeout"' in on_error else "none"
    return GatewayRules(
        again_after_connection_failure='"BackendConnectionFailure"' in on_error,
        again_after_timeout=after_timeout,
        retries=int(retry.get("count", "0")),
        retry_only_retry_safe='"retry-safe"' in retry.get("condition", ""),
        retry_statuses=statuses,
        retry_safe_methods=methods,
        idempotency_header=header.group(1),
        forward_timeout_s=float(forward.get("timeout", "300")),
    )
