"""Configuration of the bootstrap stack (config/bootstrap.toml): the repository, the three
subscriptions (dev, prod, and the one that holds state and identities), names.

Validated like the environment files: any problem is one ConfigError line naming the file and
the field. The embedded file holds placeholders (all-zero subscription ids, contoso/todo-api):
synth works on them, `cdktf deploy todo-api-bootstrap` refuses them (stacks/bootstrap_stack.py
checks at plan time; docs/delivery.md "Bootstrap").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from stacks.config import (
    CONFIG_DIR,
    PROJECT_ROOT,
    ConfigError,
    _Model,
    _one_line,
    _set_dotted,
    read_toml,
)
from stacks.regions import REGIONS

GUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
PLACEHOLDER_SUBSCRIPTIONS = {
    "dev": "00000000-0000-0000-0000-00000000000d",
    "prod": "00000000-0000-0000-0000-00000000000f",
    "state": "00000000-0000-0000-0000-00000000000a",
}


class Subscriptions(_Model):
    dev: str = Field(PLACEHOLDER_SUBSCRIPTIONS["dev"], pattern=GUID)
    prod: str = Field(PLACEHOLDER_SUBSCRIPTIONS["prod"], pattern=GUID)
    # State and the deploy identities live here: neither deploy identity has a role in it.
    state: str = Field(PLACEHOLDER_SUBSCRIPTIONS["state"], pattern=GUID)

    @model_validator(mode="after")
    def _distinct(self) -> Subscriptions:
        seen: dict[str, str] = {}
        for name in ("dev", "prod", "state"):
            value = getattr(self, name)
            if value in seen:
                raise ValueError(
                    f"{name}: same subscription as {seen[value]}: the subscription is the"
                    " boundary between dev, prod and the state (docs/delivery.md)")
            seen[value] = name
        return self


class BootstrapConfig(_Model):
    repository: str = Field("contoso/todo-api", pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    tenant_id: str = Field("00000000-0000-0000-0000-000000000000", pattern=GUID)
    location: str = "australiaeast"
    subscriptions: Subscriptions = Field(default_factory=Subscriptions)
    state_resource_group: str = Field("todo-api-tfstate", pattern=r"^[A-Za-z0-9._()-]{1,90}$")
    state_storage_account: str = Field("todoapitfstate42", pattern=r"^[a-z0-9]{3,24}$")
    identity_resource_group: str = Field("todo-api-identities",
                                         pattern=r"^[A-Za-z0-9._()-]{1,90}$")
    # GitHub team (slug) whose members approve prod deploys; a team, not one person.
    prod_reviewers_team: str = Field("todo-api-prod-approvers", pattern=r"^[a-z0-9][a-z0-9-]*$")
    # Status checks the `main` ruleset requires (job names as GitHub shows them).
    required_checks: tuple[str, ...] = ("make test", "synth, checkov, diagram")
    # Optional Entra group made Key Vault Administrator beside the deploy identity.
    key_vault_admin_group: str | None = Field(None, pattern=GUID)
    # Where this stack keeps its own state: "local" for the first deploy, "azurerm" once it
    # moved into the account it made (docs/delivery.md "Bootstrap", step 2).
    state_backend: Literal["local", "azurerm"] = "local"
    # The Terraform version of the empty states it writes (.github/versions/terraform).
    terraform_version: str = Field(
        default_factory=lambda: (PROJECT_ROOT / ".github" / "versions" / "terraform")
        .read_text().strip(), pattern=r"^\d+\.\d+\.\d+$")

    @model_validator(mode="after")
    def _known_region(self) -> BootstrapConfig:
        if self.location not in REGIONS:
            raise ValueError(f"location: unknown region {self.location!r}")
        return self

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    @property
    def uses_placeholders(self) -> bool:
        return self.subscriptions.model_dump() == PLACEHOLDER_SUBSCRIPTIONS


def load_bootstrap(path: Path = CONFIG_DIR / "bootstrap.toml",
                   overrides: dict[str, Any] | None = None) -> BootstrapConfig:
    data, where = read_toml(path)
    for dotted, value in (overrides or {}).items():
        if dotted.startswith("bootstrap."):
            _set_dotted(data, dotted.removeprefix("bootstrap."), value)
    try:
        return BootstrapConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{where}: {_one_line(error)}") from None
