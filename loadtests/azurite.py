"""Azurite's Table service (npm `azurite`, pinned in package-lock.json): in the local stand-in it is
the one global Cosmos DB for Table account that both regional apps share.

- Data on disk under the work folder (`--location`): a restart keeps every item.
- The account name and key are made at each start (AZURITE_ACCOUNTS), never Azurite's
  well-known development key; the connection string is handed to the apps only.
- Azurite keeps its tables in LokiJS, which saves to disk every 5 s and when the process gets
  SIGINT. So it is always stopped with SIGINT: a SIGKILL would lose up to 5 s of acknowledged
  writes, a property of Azurite, not of Cosmos DB (whose writes are durable on acknowledgement).
  The store-fault scenario stops it the same way: the store disappears, nothing acknowledged is
  lost, as with the real account.
- The table is created here, standing in for Terraform; the apps never create it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.processes import (
    HOST,
    ManagedProcess,
    TopologyError,
    ensure_port_free,
    free_ports,
    port_open,
)

ROOT = Path(__file__).resolve().parent.parent
AZURITE_TABLE = ROOT / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "todoapi"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Azurite:
    """One Azurite Table service on 127.0.0.1; `start()` it, `stop()` it (nothing left running)."""

    workdir: Path
    port: int = 0  # 0: a free port
    key: str = field(default_factory=_new_key, repr=False)
    process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        # 127.0.0.1, never "localhost": azure-data-tables treats localhost:<not 10002> as Cosmos.
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={self.key};"
            f"TableEndpoint={self.endpoint};"
        )

    def start(self) -> None:
        if not AZURITE_TABLE.exists() or shutil.which("node") is None:
            raise TopologyError(
                f"azurite: {AZURITE_TABLE.relative_to(ROOT)} or node is missing; run: make setup"
            )
        self.port = self.port or free_ports(1)[0]
        ensure_port_free(self.port, "azurite (the table store)")
        data = self.workdir / "azurite"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(AZURITE_TABLE),
            "--tableHost",
            HOST,
            "--tablePort",
            str(self.port),
            "--location",
            str(data),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--silent",
        ]
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{self.key}"}
        self.process = ManagedProcess(
            f"azurite (table store on {HOST}:{self.port})",
            argv,
            self.workdir / "azurite.log",
            env,
            stop_signal=signal.SIGINT,
        )
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port))

    def restart(self) -> None:
        """Start again on the same port, folder and key (after stop())."""
        assert self.process is not None, "start() first"
        if not self.process.alive():
            ensure_port_free(self.port, "azurite (the table store)")
            self.process.start()
            self.process.wait_ready(lambda: port_open(self.port))

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def create_table(self, name: str) -> None:
        """Create the table if it is missing (what Terraform does on Azure)."""
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(self.connection_string) as service:
            service.create_table_if_not_exists(name)
