"""Typed configuration: embedded defaults, one TOML file per environment, `--set` overrides.

`load_environments()` reads `config/<env>.toml` for every environment, applies the
environment variable `TODO_API_KEY_VAULT_ADMINISTRATOR_OBJECT_IDS_<ENV>` (CI sets it from a
repository variable), then dotted overrides (`gateway.topology=dual`), and validates everything
before any construct exists.
Any problem raises `ConfigError` whose message is one line naming the file, the field and
the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stacks.regions import REGIONS, distance_km

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # where cdktf.json is
CONFIG_DIR = PROJECT_ROOT / "config"
STACK_PREFIX = "todo-api"
ENVIRONMENTS = ("dev", "prod")
TOPOLOGIES = ("single", "multi-region", "dual")
Topology = Literal["single", "multi-region", "dual"]
# Standard or above only: Traffic Manager endpoints and deployment slots (the staging slots,
# `AppService.staging_slot`) need it, so Free and Basic plans are refused here, whatever the slot
# setting (tests/stacks/test_slots.py keeps the two facts together).
PlanSku = Literal["S1", "S2", "S3", "P0v3", "P1v3", "P2v3", "P3v3"]
# vCPUs per instance of each plan SKU (App Service pricing page); sizes the default worker count.
PLAN_CORES = {"S1": 1, "S2": 2, "S3": 4, "P0v3": 1, "P1v3": 2, "P2v3": 4, "P3v3": 8}
WORKERS_PER_CORE = 2
REQUIRED_TAGS = ("project", "environment", "managed-by")
# Per environment, e.g. TODO_API_KEY_VAULT_ADMINISTRATOR_OBJECT_IDS_DEV="<guid>,<guid>".
KEY_VAULT_ADMINISTRATORS_ENV = "TODO_API_KEY_VAULT_ADMINISTRATOR_OBJECT_IDS_{}"
# Per environment, the object id(s) that own the API's app registrations (auth.owner_object_ids).
AUTH_OWNERS_ENV = "TODO_API_AUTH_OWNER_OBJECT_IDS_{}"
# Extra client applications allowed to call the API (auth.client_ids), e.g. the deploy identity.
AUTH_CLIENTS_ENV = "TODO_API_AUTH_CLIENT_IDS_{}"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# API Management tiers that have a static public IP per region (needed for the web apps'
# allow lists) and the capacity range of each. Consumption and the v2 tiers have neither.
GATEWAY_CAPACITY = {"Developer": (1, 1), "Basic": (1, 2), "Standard": (1, 4), "Premium": (1, 31)}


class ConfigError(Exception):
    """A configuration problem; str() is the one line shown to the user."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Regions(_Model):
    primary: str = "australiaeast"
    secondary: str = "australiasoutheast"

    @model_validator(mode="after")
    def _paired(self) -> Regions:
        for field in ("primary", "secondary"):
            if getattr(self, field) not in REGIONS:
                raise ValueError(f"{field}: unknown region {getattr(self, field)!r}")
        if self.primary == self.secondary:
            raise ValueError(f"secondary: same region twice ({self.primary!r})")
        pair = REGIONS[self.primary].pair
        if self.secondary != pair:
            raise ValueError(
                f"secondary: {self.primary} is paired with {pair}, not {self.secondary}"
            )
        return self

    @property
    def both(self) -> tuple[str, str]:
        return (self.primary, self.secondary)


class AppService(_Model):
    plan_sku: PlanSku = "S1"
    # Items live in Cosmos DB, not in the process: two instances per region so one instance's
    # restart or platform maintenance does not take the region out of Traffic Manager.
    instances: int = Field(2, ge=1, le=30)
    zone_balancing: bool = False
    # gunicorn workers per instance; unset: WORKERS_PER_CORE x the plan's vCPUs (see `workers`).
    web_concurrency: int | None = Field(None, ge=1, le=32)
    health_check_eviction_minutes: int = Field(2, ge=2, le=10)
    scm_allowed_cidrs: tuple[IPv4Network, ...] = ()
    # A deployment slot `staging` per region with production's settings: releases deploy to it,
    # smoke it and swap it in (docs/deploy.md, "Staging slots"). Needs a Standard or higher
    # plan, which is every `PlanSku`.
    staging_slot: bool = True
    # How long a release watches each region after its swap (health, 5xx ratio) before it moves
    # on; a failure in that time swaps back (tools/delivery/release.py). Azure's metrics lag a
    # minute or more, so a bake under ~3 minutes judges mostly the health path.
    release_bake_seconds: int = Field(300, ge=0, le=3600)

    @model_validator(mode="after")
    def _zones(self) -> AppService:
        if self.zone_balancing and not self.plan_sku.startswith("P"):
            raise ValueError(f"zone_balancing: needs a Premium v3 plan, got {self.plan_sku}")
        if self.zone_balancing and self.instances < 2:
            raise ValueError("instances: zone balancing needs at least 2 instances")
        return self

    @property
    def workers(self) -> int:
        """`web_concurrency`, or two async workers per vCPU: requests mostly wait on Cosmos DB."""
        return self.web_concurrency or WORKERS_PER_CORE * PLAN_CORES[self.plan_sku]


class Gateway(_Model):
    topology: Topology = "single"
    sku: str = "Developer_1"
    publisher_name: str = Field("Contoso", min_length=1, max_length=100)
    publisher_email: EmailStr = "api-admin@contoso.com"
    api_path: str = Field("todo", pattern=r"^[a-z][a-z0-9-]{0,63}$")
    backend_custom_domain: str | None = Field(
        None, pattern=r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
    )
    # dual only: the name clients use for the gateways' Traffic Manager (a CNAME to it, bound
    # with its certificate on both API Management instances; not generated). Without it the
    # Traffic Manager name would present *.azure-api.net and fail hostname validation, so it is
    # not offered as a URL.
    public_custom_domain: str | None = Field(
        None, pattern=r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
    )

    @model_validator(mode="after")
    def _sku_fits_topology(self) -> Gateway:
        tier, _, capacity = self.sku.partition("_")
        if tier not in GATEWAY_CAPACITY or not capacity.isdigit():
            known = ", ".join(f"{t}_N" for t in GATEWAY_CAPACITY)
            raise ValueError(f"sku: unknown SKU {self.sku!r} (expected one of {known})")
        low, high = GATEWAY_CAPACITY[tier]
        if not low <= int(capacity) <= high:
            raise ValueError(f"sku: {tier} capacity must be {low}-{high}, got {capacity}")
        if self.topology == "multi-region" and tier != "Premium":
            raise ValueError(f"sku: topology multi-region needs a Premium SKU, got {self.sku}")
        if self.public_custom_domain and self.topology != "dual":
            raise ValueError(
                f"public_custom_domain: only used with topology dual, got {self.topology}"
            )
        return self

    @property
    def tier(self) -> str:
        return self.sku.partition("_")[0]


class TrafficManager(_Model):
    probe_interval_seconds: Literal[10, 30] = 10
    probe_timeout_seconds: int = Field(5, ge=5, le=10)
    tolerated_failures: int = Field(1, ge=0, le=9)
    dns_ttl_seconds: int = Field(10, ge=0, le=2_147_483_647)

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> TrafficManager:
        if self.probe_timeout_seconds >= self.probe_interval_seconds:
            raise ValueError(
                f"probe_timeout_seconds: must be below the interval "
                f"({self.probe_interval_seconds} s), got {self.probe_timeout_seconds}"
            )
        return self

    @property
    def failover_seconds(self) -> int:
        """Worst-case time until clients move: (failures + 1) x interval + DNS TTL."""
        return (self.tolerated_failures + 1) * self.probe_interval_seconds + self.dns_ttl_seconds


class Certificate(_Model):
    subject: str = "CN=cloudauth-apim.azure-api.net,O=Contoso,C=AU"
    issuer: str | None = None
    validity_months: int = Field(12, ge=1, le=120)
    pfx_path: str | None = None

    @model_validator(mode="after")
    def _names(self) -> Certificate:
        for field in ("subject", "issuer"):
            value = getattr(self, field)
            if value is not None and not _is_rfc4514(value):
                raise ValueError(f"{field}: not an RFC 4514 name: {value!r}")
        if self.pfx_path and not self.issuer:
            raise ValueError("issuer: required with pfx_path (the PFX is not self-signed)")
        return self

    @property
    def pfx_file(self) -> str | None:
        """`pfx_path` made absolute at synth time (relative paths from the project root):
        Terraform runs in cdktf.out/stacks/<stack>, where a relative path would not resolve."""
        if not self.pfx_path:
            return None
        path = Path(self.pfx_path).expanduser()
        return str(path if path.is_absolute() else (PROJECT_ROOT / path).resolve())

    @property
    def expected_issuer(self) -> str:
        """Key Vault's `Self` issuer signs the certificate with its own key."""
        return self.issuer or self.subject


def _split_guids(value: Any) -> Any:
    """A string is a comma- or space-separated list (environment variables, `--set`)."""
    return tuple(re.split(r"[\s,]+", value.strip())) if isinstance(value, str) else value


def _checked_guids(field: str, values: tuple[str, ...], what: str) -> tuple[str, ...]:
    """`values` lowercase (as Entra returns them, so plans stay quiet); each a GUID, once."""
    seen: list[str] = []
    for value in values:
        if not GUID.fullmatch(value.lower()):
            raise ValueError(f"{field}: not an Entra {what} (GUID): {value!r}")
        if value.lower() in seen:
            raise ValueError(f"{field}: listed twice: {value!r}")
        seen.append(value.lower())
    return tuple(seen)


class KeyVault(_Model):
    # Entra object ids that get Key Vault Administrator on the vault: the deploy identities and
    # optionally an admin group. Empty: whoever runs Terraform (fine on a laptop; CI must set
    # it, or every plan run by another identity shows the assignment as a replacement).
    administrator_object_ids: tuple[str, ...] = ()

    _split = field_validator("administrator_object_ids", mode="before")(_split_guids)

    @model_validator(mode="after")
    def _guids(self) -> KeyVault:
        _checked_guids("administrator_object_ids", self.administrator_object_ids, "object id")
        return self

    @property
    def administrators(self) -> tuple[str, ...]:
        """The object ids, lowercase (as Azure returns them, so plans stay quiet)."""
        return _checked_guids("administrator_object_ids", self.administrator_object_ids, "object id")


class Auth(_Model):
    """Who may call the API (docs/deploy.md, "Callers: Entra ID tokens").

    `mode = "entra"`: an Entra ID app registration for the API (app roles and delegated scopes
    Todo.Read / Todo.Write, from app/openapi.json), an example client for the load tests, API
    Management validating every token first (stacks/gateway_policy.py) and the app again
    (AUTH_* app settings). `"none"`: none of it; the app runs AUTH_MODE=none and the subscription
    key is the only check. The subscription key is per product (`subscription_required`), not
    the identity: with entra it may be turned off.
    """

    mode: Literal["none", "entra"] = "none"
    subscription_required: bool = True
    # Object ids (users or service principals, not groups) that own the app registrations. The
    # deploy identity must be one in CI: with Microsoft Graph's Application.ReadWrite.OwnedBy it
    # may change only what it owns, and the provider drops the caller as owner unless listed.
    # Empty: nobody but admins (fine on a laptop run by an Application Administrator).
    owner_object_ids: tuple[str, ...] = ()
    # Client ids (appId) of other applications allowed to call, beside the example client: the
    # gateway's client-application-ids and the app's AUTH_ALLOWED_CLIENT_IDS.
    client_ids: tuple[str, ...] = ()

    _split = field_validator("owner_object_ids", "client_ids", mode="before")(_split_guids)

    @model_validator(mode="after")
    def _checked(self) -> Auth:
        _checked_guids("owner_object_ids", self.owner_object_ids, "object id")
        _checked_guids("client_ids", self.client_ids, "client id")
        if not self.subscription_required and self.mode == "none":
            raise ValueError(
                "subscription_required: false needs mode = 'entra' (with neither a key nor a"
                " token anyone could call the API)"
            )
        return self

    @property
    def entra(self) -> bool:
        return self.mode == "entra"

    @property
    def owners(self) -> tuple[str, ...]:
        return _checked_guids("owner_object_ids", self.owner_object_ids, "object id")

    @property
    def clients(self) -> tuple[str, ...]:
        return _checked_guids("client_ids", self.client_ids, "client id")


class Alerts(_Model):
    """Azure Monitor alerts and who hears of them (docs/operations.md explains each alert).

    Thresholds are per evaluation window (`window_minutes`, evaluated every minute).
    """

    email_receivers: tuple[EmailStr, ...] = ()  # none by default: alerts show in the portal only
    window_minutes: Literal[5, 15, 30, 60] = 5
    gateway_failed_requests: int = Field(10, ge=1, le=1_000_000)  # APIM 5xx answers per window
    health_check_percent: int = Field(100, ge=1, le=100)  # alert below this share healthy
    store_availability_percent: float = Field(99.9, ge=90.0, le=100.0)  # per hour (its grain)
    store_throttled_requests: int = Field(10, ge=1, le=1_000_000)  # 429 answers per window

    @field_validator("email_receivers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """A string is a comma- or space-separated list (`--set alerts.email_receivers=...`)."""
        if isinstance(value, str):
            return tuple(v for v in re.split(r"[\s,]+", value.strip()) if v)
        return value

    @model_validator(mode="after")
    def _unique(self) -> Alerts:
        seen: set[str] = set()
        for address in self.email_receivers:
            if address.lower() in seen:
                raise ValueError(f"email_receivers: listed twice: {address!r}")
            seen.add(address.lower())
        return self


# Cosmos DB for Table: throughput per table in RU/s, (lowest, highest, step) per mode; billed in
# every region of the account. Autoscale scales between 10 % of its maximum and the maximum.
THROUGHPUT_LIMITS = {"provisioned": (400, 1_000_000, 100), "autoscale": (1_000, 1_000_000, 1_000)}
# Table names as the Table service protocol defines them (Cosmos DB for Table and Azurite alike):
# 3-63 letters and digits, starting with a letter; `tables` is reserved.
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
RESERVED_TABLE_NAMES = ("tables",)
# The account always uses Strong consistency (stacks/data_store.py), which Cosmos DB refuses for
# accounts whose regions span more than 5,000 miles / 8,000 km (learn.microsoft.com, "Consistency
# levels in Azure Cosmos DB"; lifting it needs a support request).
STRONG_CONSISTENCY_MAX_KM = 8_000


class DataStore(_Model):
    """The Cosmos DB for Table account: write region = regions.primary (failover priority 0),
    regions.secondary next, then the optional third region."""

    table_name: str = "TodoItems"
    throughput_mode: Literal["provisioned", "autoscale"] = "autoscale"
    throughput: int = 1_000
    third_region: str | None = None
    zone_redundant_regions: tuple[str, ...] = ()
    backup_tier: Literal["Continuous7Days", "Continuous30Days"] = "Continuous7Days"

    @model_validator(mode="after")
    def _checked(self) -> DataStore:
        if not TABLE_NAME.fullmatch(self.table_name):
            raise ValueError(
                f"table_name: must be 3-63 letters and digits starting with a letter, "
                f"got {self.table_name!r}"
            )
        if self.table_name.lower() in RESERVED_TABLE_NAMES:
            raise ValueError(f"table_name: {self.table_name!r} is reserved")
        low, high, step = THROUGHPUT_LIMITS[self.throughput_mode]
        if not low <= self.throughput <= high or self.throughput % step:
            raise ValueError(
                f"throughput: {self.throughput_mode} needs {low:,}-{high:,} RU/s in steps of "
                f"{step:,}, got {self.throughput}"
            )
        if self.third_region is not None and self.third_region not in REGIONS:
            raise ValueError(f"third_region: unknown region {self.third_region!r}")
        return self


# The private data plane (docs/deploy.md, "Private data plane (network.mode)"): per region a VNet
# with a subnet for App Service's VNet integration and one for the private endpoints.
NetworkMode = Literal["public", "private"]
# Azure keeps the first four addresses and the last of every subnet.
AZURE_RESERVED_ADDRESSES = 5
# App Service VNet integration: the subnet must be at least a /28; Microsoft recommends a /26 (64
# addresses) so the plan can scale out fully (each instance takes an address, a scale or swap
# briefly takes more).
APP_SUBNET_MAX_PREFIX = 28
# A Cosmos DB private endpoint takes one address per account region plus one for the account's
# global endpoint; a Key Vault private endpoint takes one.
KEY_VAULT_ENDPOINT_ADDRESSES = 1


def cosmos_endpoint_addresses(account_regions: int) -> int:
    """Addresses of one Cosmos DB private endpoint: each account region's, and the global one."""
    return account_regions + 1


DEFAULT_ADDRESS_PLAN = {
    "primary": {
        "address_space": "10.10.0.0/16",
        "app_subnet": "10.10.0.0/26",
        "endpoint_subnet": "10.10.1.0/27",
    },
    "secondary": {
        "address_space": "10.20.0.0/16",
        "app_subnet": "10.20.0.0/26",
        "endpoint_subnet": "10.20.1.0/27",
    },
}


class RegionNetwork(_Model):
    """One region's address plan: the VNet's space and its two subnets."""

    address_space: IPv4Network
    app_subnet: IPv4Network  # delegated to Microsoft.Web/serverFarms (VNet integration)
    endpoint_subnet: IPv4Network  # the private endpoints of the account and the vault

    def ranges(self, role: str) -> dict[str, IPv4Network]:
        return {f"{role}.{field}": getattr(self, field) for field in type(self).model_fields}


class Network(_Model):
    """`public`: the data plane's public endpoints behind their firewalls (no VNet). `private`:
    per region a VNet, VNet integration of the web apps and their slots, private endpoints for
    the Cosmos DB account and the Key Vault, private DNS zones of that region. The address plan
    is checked in both modes, so switching the mode never meets a bad plan."""

    mode: NetworkMode = "public"
    # Per region role (regions.primary / regions.secondary); a field left out takes its default
    # below. No two ranges overlap, so the two VNets could be peered, though nothing needs it.
    primary: RegionNetwork
    secondary: RegionNetwork

    @model_validator(mode="before")
    @classmethod
    def _default_plans(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for role, default in DEFAULT_ADDRESS_PLAN.items():
            given = data.get(role, {})
            data[role] = {**default, **given} if isinstance(given, dict) else given
        return data

    @model_validator(mode="after")
    def _address_plan(self) -> Network:
        for role in ("primary", "secondary"):
            plan = self.plan(role)
            for field in ("app_subnet", "endpoint_subnet"):
                subnet = getattr(plan, field)
                if not subnet.subnet_of(plan.address_space):
                    raise ValueError(
                        f"{role}.{field}: {subnet} is not inside network.{role}.address_space "
                        f"{plan.address_space}"
                    )
            if plan.app_subnet.prefixlen > APP_SUBNET_MAX_PREFIX:
                raise ValueError(
                    f"{role}.app_subnet: App Service VNet integration needs at least a "
                    f"/{APP_SUBNET_MAX_PREFIX} (a /26 is recommended), got {plan.app_subnet}"
                )
        ranges = {**self.primary.ranges("primary"), **self.secondary.ranges("secondary")}
        names = list(ranges)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if not _own_subnet(first, second) and ranges[first].overlaps(ranges[second]):
                    raise ValueError(
                        f"{second}: {ranges[second]} overlaps network.{first} {ranges[first]}"
                    )
        return self

    def plan(self, role: str) -> RegionNetwork:
        return getattr(self, role)


def _own_subnet(first: str, second: str) -> bool:
    """`second` is a subnet of the VNet `first` (they are meant to overlap)."""
    role_a, field_a = first.split(".")
    role_b, _ = second.split(".")
    return role_a == role_b and field_a == "address_space"


# Drills on Azure's own engines (docs/deploy.md, "Drills on Azure's engines"): an Azure Load
# Testing resource and Chaos Studio experiments (stacks/drills.py). Each fault ends after
# `fault_minutes` by the experiment's own duration, whatever happens to the run that started it.
FAULT_MINUTES = (1, 60)


class Drills(_Model):
    """Off unless the environment's file turns it on (config/prod.toml does): the resources
    cost nothing idle, but each experiment can stop a region, fail the database over or lock
    the vault."""

    enabled: bool = False
    fault_minutes: int = Field(10, ge=FAULT_MINUTES[0], le=FAULT_MINUTES[1])


class State(_Model):
    backend: Literal["local", "azurerm"] = "local"
    resource_group_name: str | None = None
    storage_account_name: str | None = Field(None, pattern=r"^[a-z0-9]{3,24}$")
    container_name: str = "tfstate"
    key: str | None = None
    use_oidc: bool = True

    @model_validator(mode="after")
    def _complete(self) -> State:
        if self.backend == "azurerm":
            for field in ("resource_group_name", "storage_account_name"):
                if not getattr(self, field):
                    raise ValueError(f"{field}: required with backend = 'azurerm'")
        return self


class EnvironmentConfig(_Model):
    environment: str = Field(pattern=r"^[a-z][a-z0-9]{1,5}$")
    name_prefix: str = Field("todo-api", pattern=r"^[a-z][a-z0-9-]{1,12}[a-z0-9]$")
    regions: Regions = Field(default_factory=Regions)
    app_service: AppService = Field(default_factory=AppService)
    gateway: Gateway = Field(default_factory=Gateway)
    traffic_manager: TrafficManager = Field(default_factory=TrafficManager)
    certificate: Certificate = Field(default_factory=Certificate)
    key_vault: KeyVault = Field(default_factory=KeyVault)
    alerts: Alerts = Field(default_factory=Alerts)
    data_store: DataStore = Field(default_factory=DataStore)
    tags: dict[str, str] = Field(
        default_factory=lambda: {"project": "todo-api", "managed-by": "cdktf"}
    )
    network: Network = Field(default_factory=Network)
    drills: Drills = Field(default_factory=Drills)
    auth: Auth = Field(default_factory=Auth)
    state: State = Field(default_factory=State)
    # Terraform refuses to destroy or replace the stateful resources (stacks/aspects.py); set
    # false, deliberately and for one apply, to delete one (docs/deploy.md).
    protect_stateful_resources: bool = True

    @model_validator(mode="after")
    def _data_store_regions(self) -> EnvironmentConfig:
        third = self.data_store.third_region
        for field in ("primary", "secondary"):
            if third == getattr(self.regions, field):
                raise ValueError(f"data_store.third_region: {third} is already regions.{field}")
        _within_strong_consistency_span(self.regions.primary, self.regions.secondary, third)
        for region in self.data_store.zone_redundant_regions:
            if region not in self.data_store_regions:
                raise ValueError(
                    f"data_store.zone_redundant_regions: {region!r} is not one of the "
                    f"account's regions ({', '.join(self.data_store_regions)})"
                )
        self._endpoint_subnets_hold_the_endpoints()
        return self

    def _endpoint_subnets_hold_the_endpoints(self) -> None:
        needed = self.private_endpoint_addresses
        for role in ("primary", "secondary"):
            subnet = self.network.plan(role).endpoint_subnet
            usable = subnet.num_addresses - AZURE_RESERVED_ADDRESSES
            if usable < needed:
                raise ValueError(
                    f"network.{role}.endpoint_subnet: {subnet} has {max(usable, 0)} usable "
                    f"addresses ({subnet.num_addresses} minus the {AZURE_RESERVED_ADDRESSES} Azure "
                    f"reserves), the private endpoints need {needed} (Cosmos DB: one per account "
                    f"region and one for the global endpoint; Key Vault: "
                    f"{KEY_VAULT_ENDPOINT_ADDRESSES})"
                )

    @property
    def private_endpoint_addresses(self) -> int:
        """Addresses one region's endpoint subnet gives its private endpoints."""
        cosmos = cosmos_endpoint_addresses(len(self.data_store_regions))
        return cosmos + KEY_VAULT_ENDPOINT_ADDRESSES

    @property
    def private_network(self) -> bool:
        return self.network.mode == "private"

    def region_network(self, region: str) -> RegionNetwork:
        """The address plan of `region` (regions.primary or regions.secondary)."""
        role = "primary" if region == self.regions.primary else "secondary"
        return self.network.plan(role)

    @property
    def data_store_regions(self) -> tuple[str, ...]:
        """The Cosmos DB account's regions in failover priority order: the write region first."""
        third = self.data_store.third_region
        return self.regions.both + ((third,) if third else ())

    @property
    def stack_name(self) -> str:
        return f"{STACK_PREFIX}-{self.environment}"

    @property
    def resource_tags(self) -> dict[str, str]:
        return {**self.tags, "environment": self.environment}


def _within_strong_consistency_span(primary: str, secondary: str, third: str | None) -> None:
    """Every pair of the account's regions within STRONG_CONSISTENCY_MAX_KM (great circle)."""
    pairs = [("regions.secondary", primary, secondary)]
    if third:
        pairs += [("data_store.third_region", region, third) for region in (primary, secondary)]
    for field, a, b in pairs:
        km = distance_km(a, b)
        if km > STRONG_CONSISTENCY_MAX_KM:
            raise ValueError(
                f"{field}: Cosmos DB refuses Strong consistency for regions more than "
                f"{STRONG_CONSISTENCY_MAX_KM:,} km apart: {a} and {b} are {km:,.0f} km apart"
            )


# Settings CI fills from repository variables, per environment: (variable template, dotted key).
ENVIRONMENT_SETTINGS = (
    (KEY_VAULT_ADMINISTRATORS_ENV, "key_vault.administrator_object_ids"),
    (AUTH_OWNERS_ENV, "auth.owner_object_ids"),
    (AUTH_CLIENTS_ENV, "auth.client_ids"),
)


def load_environments(
    overrides: Mapping[str, Any] | None = None,
    config_dir: Path = CONFIG_DIR,
    environments: tuple[str, ...] = ENVIRONMENTS,
) -> list[EnvironmentConfig]:
    """Validate every environment's file plus overrides; raise ConfigError on the first problem."""
    return [load_environment(env, overrides, config_dir) for env in environments]


def load_environment(
    environment: str,
    overrides: Mapping[str, Any] | None = None,
    config_dir: Path = CONFIG_DIR,
    environ: Mapping[str, str] | None = None,
) -> EnvironmentConfig:
    """File, then each of ENVIRONMENT_SETTINGS' variables if not empty, then overrides."""
    path = config_dir / f"{environment}.toml"
    data, where = read_toml(path)
    if "environment" in data:
        raise ConfigError(f"{where}: environment: set by the file name, not in the file")
    for template, dotted in ENVIRONMENT_SETTINGS:
        variable = template.format(environment.upper())
        from_environ = (os.environ if environ is None else environ).get(variable, "").strip()
        if from_environ:
            where = f"{where} (with ${variable})"
            _set_dotted(data, dotted, from_environ)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return EnvironmentConfig.model_validate({**data, "environment": environment})
    except ValidationError as error:
        raise ConfigError(f"{where}: {_one_line(error)}") from None


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """A configuration file's table and how to name it in an error (ConfigError if unreadable)."""
    where = _display(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), where
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: invalid TOML: {error}") from None


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """`['gateway.topology=dual', 'app_service.instances=2']` -> typed dotted overrides."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", key):
            raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. gateway.topology=dual")
        overrides[key] = _toml_value(raw)
    return overrides


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a table")
        node = child
    node[leaf] = value


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    message = first["msg"].removeprefix("Value error, ")
    inner, sep, reason = message.partition(": ")
    if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", inner):
        field, message = f"{field}.{inner}" if field else inner, reason
    if first["type"] not in ("value_error",) and "input" in first and _short(first["input"]):
        message = f"{message} (got {first['input']!r})"
    return f"{field}: {message}".replace("\n", " ")


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 60


def _is_rfc4514(name: str) -> bool:
    from cryptography import x509

    try:
        return bool(x509.Name.from_rfc4514_string(name).rdns)
    except ValueError:
        return False


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
