"""Azure resource names, defined once: `<prefix>-<env>[-<region short>]-<kind>`."""

from dataclasses import dataclass

from stacks.regions import REGIONS


@dataclass(frozen=True)
class Names:
    prefix: str
    environment: str

    @property
    def base(self) -> str:
        return f"{self.prefix}-{self.environment}"

    def global_(self, kind: str) -> str:
        return f"{self.base}-{kind}"

    def regional(self, region: str, kind: str) -> str:
        return f"{self.base}-{REGIONS[region].short}-{kind}"

    @property
    def key_vault(self) -> str:
        """Key Vault names are 3-24 characters (config limits prefix and environment)."""
        return f"{self.base}-kv"

    @property
    def cosmos_account(self) -> str:
        """Cosmos DB account names are global, 3-44 lowercase letters, digits and hyphens."""
        return self.global_("cosmos")
