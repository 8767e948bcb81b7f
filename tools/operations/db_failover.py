"""Database failover drill: move the Cosmos DB write region to the secondary and back.

    python -m tools.operations.db_failover outputs.json move [--timeout 900] [--poll-seconds 10]
    python -m tools.operations.db_failover outputs.json back [--timeout 900] [--poll-seconds 10]
    python -m tools.operations.db_failover outputs.json report --report-dir reports/load

`move`: `az cosmosdb update --enable-automatic-failover false` (a service-managed failover must
not fight the drill), then `az cosmosdb failover-priority-change --failover-policies
<secondary>=0 <primary>=1`, then waits (bounded) until `az cosmosdb show` reports the secondary
as `writeLocations[0]`. `back` does the reverse and turns automatic failover on again; it is
idempotent (a write region already home is only confirmed), so the load-test workflow runs it in
an `always()` step too, also after a failure or a cancellation.

`report` reads the load test's `summary.json` (written by loadtests.run: the reconciliation of
the items against the store, and the fault's figures) and writes `database-failover.json`:
items lost, duplicated, orphaned, stale (goal 0 each) and the longest time without a
successful write while the region moved or moved back.

The regions come from the stack output `cosmos_regions` (write region first, as deployed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tools.cli import CliError, read_json, run_cli, write_atomic
from tools.delivery.stack_outputs import CosmosAccount, load
from tools.operations.azure_cli import az

REPORT_FILE = "database-failover.json"


def same_region(a: str, b: str) -> bool:
    """`australiaeast` (ARM name) and `Australia East` (display name) are the same region."""
    return a.replace(" ", "").lower() == b.replace(" ", "").lower()


def account(cosmos: CosmosAccount) -> tuple[str, ...]:
    return ("--name", cosmos.name, "--resource-group", cosmos.resource_group)


def write_region(cosmos: CosmosAccount) -> str:
    return az("cosmosdb", "show", *account(cosmos), "--query",
              "writeLocations[0].locationName", "--output", "tsv")


def wait_for_write_region(cosmos: CosmosAccount, region: str, timeout: float, poll: float,
                          sleep=time.sleep, clock=time.monotonic) -> float:
    """Seconds until `az cosmosdb show` names `region` as the write region (bounded)."""
    started = clock()
    while True:
        current = write_region(cosmos)
        if same_region(current, region):
            return clock() - started
        if clock() - started >= timeout:
            raise CliError(f"the write region of {cosmos.name} is still {current!r} after"
                           f" {timeout:.0f} s (wanted {region}); check the account in the portal")
        sleep(poll)


def set_priorities(cosmos: CosmosAccount, first: str, second: str) -> None:
    az("cosmosdb", "failover-priority-change", *account(cosmos),
       "--failover-policies", f"{first}=0", f"{second}=1")


def move(cosmos: CosmosAccount, timeout: float, poll: float, **waiting) -> float:
    primary, secondary = cosmos.regions[0], cosmos.regions[1]
    az("cosmosdb", "update", *account(cosmos), "--enable-automatic-failover", "false")
    set_priorities(cosmos, secondary, primary)
    return wait_for_write_region(cosmos, secondary, timeout, poll, **waiting)


def back(cosmos: CosmosAccount, timeout: float, poll: float, **waiting) -> float:
    primary, secondary = cosmos.regions[0], cosmos.regions[1]
    took = 0.0
    if not same_region(write_region(cosmos), primary):
        set_priorities(cosmos, primary, secondary)
        took = wait_for_write_region(cosmos, primary, timeout, poll, **waiting)
    az("cosmosdb", "update", *account(cosmos), "--enable-automatic-failover", "true")
    return took


def report(report_dir: Path) -> dict:
    summary = read_json(report_dir / "summary.json", "load test summary")
    try:
        [move] = summary["faults"]["faults"]
    except (KeyError, TypeError, ValueError):
        raise CliError(
            f"{report_dir}/summary.json has not exactly one fault: was it a database failover run?"
        ) from None
    items = summary.get("items") or {}
    # Writes pause while the write region moves, and again while it moves back.
    gaps = [move.get("write_gap_s"), move.get("write_gap_after_s")]
    result = {
        # Reconciled against the store after the drill (loadtests.reconciliation): every
        # acknowledged create, before, during and after the move.
        "items_lost": items.get("missing"),
        "items_duplicated": items.get("duplicates"),
        "items_orphaned": items.get("orphans"),
        "items_stale": items.get("stale_content"),
        "items_acknowledged": items.get("acknowledged"),
        "seconds_without_successful_writes": max((g for g in gaps if g is not None), default=None),
        "move_started_at_s": summary.get("fault_at_s"),
        "move_back_started_at_s": summary.get("restore_at_s"),
    }
    write_atomic(report_dir / REPORT_FILE, json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="file written by `terraform output -json`")
    parser.add_argument("command", choices=["move", "back", "report"])
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait, at most")
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--report-dir", type=Path, default=Path("reports/load"))
    args = parser.parse_args(argv)
    if args.command == "report":
        result = report(args.report_dir)
        print(f"database failover: {result['items_lost']} item(s) lost,"
              f" {result['seconds_without_successful_writes']} s without a successful write")
        return 0
    cosmos = load(args.outputs).cosmos
    if cosmos is None:
        raise CliError("the stack outputs have no Cosmos DB account (cosmos_account_name,"
                       " cosmos_resource_group_name, cosmos_regions, table_name)")
    if args.timeout <= 0 or args.poll_seconds <= 0:
        raise CliError("--timeout and --poll-seconds must be positive")
    took = (move if args.command == "move" else back)(cosmos, args.timeout, args.poll_seconds)
    home = cosmos.regions[1] if args.command == "move" else cosmos.regions[0]
    print(f"{cosmos.name}: write region {home} after {took:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
