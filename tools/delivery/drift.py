"""Nightly drift detection: plan each stack, then open, update or close one GitHub issue.

    python -m tools.delivery.drift plan --stack todo-api-dev --dir cdktf.out/stacks/todo-api-dev \
        --out results/todo-api-dev
    python -m tools.delivery.drift report --results results/ [--run-url URL] [--dry-run]

`plan` runs `terraform plan -detailed-exitcode` (0 in sync, 1 error, 2 changes) in an
initialised stack folder and records `stack`, `exitcode` and, when the plan ran, `plan.json`
(`terraform show -json`) in its output folder; it exits 0 even on a failed plan, so every
stack gets a result. `report` reads one such folder per stack (the downloaded artifacts).

Two kinds of difference, told apart in the issue, per stack:
- changed outside Terraform: the plan's refresh found Azure differing from the state
  (`resource_drift`, what `terraform plan -refresh-only` shows), also when the configuration
  ignores the difference and the plan itself is empty (exit code 0);
- planned changes: the code on main differs from Azure (`resource_changes`, exit code 2): not
  deployed yet (prod waiting for approval), or what the next apply would revert.

Either kind: open the issue, or update the open one (found by its hidden marker). Neither: close
the open issue with a comment. A failed plan (exit code 1) touches nothing and exits 1, so the
run shows red.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.cli import CliError, read_json, run_cli, write_atomic
from tools.delivery import plan_comment
from tools.delivery.github_api import GitHubApi, find_marked

MARKER = "<!-- todo-api-drift -->"
TITLE = "Infrastructure drift detected"
LABEL = "drift"
EXIT_IN_SYNC, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


@dataclass(frozen=True)
class StackResult:
    stack: str
    exit_code: int
    plan: dict | None


def load_results(folder: Path) -> list[StackResult]:
    results = []
    for stack_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        try:
            stack = (stack_dir / "stack").read_text().strip()
            exit_code = int((stack_dir / "exitcode").read_text().strip())
        except (OSError, ValueError) as error:
            raise CliError(f"{stack_dir}: needs files 'stack' and 'exitcode' ({error})") from None
        plan_file = stack_dir / "plan.json"
        plan = read_json(plan_file, "plan JSON") if plan_file.exists() else None
        results.append(StackResult(stack, exit_code, plan))
    if not results:
        raise CliError(f"no stack results in {folder}")
    return results


def outside_changes(result: StackResult) -> list[str]:
    """Addresses changed outside Terraform (the refresh part of the plan)."""
    return [entry["address"] for entry in (result.plan or {}).get("resource_drift") or []]


def planned(result: StackResult) -> bool:
    return result.exit_code == EXIT_CHANGES


def drifted(result: StackResult) -> bool:
    return planned(result) or bool(outside_changes(result))


def decide(open_issue: dict | None, drifted: bool) -> str:
    """'open' | 'update' | 'close' | 'none'."""
    if drifted:
        return "update" if open_issue else "open"
    return "close" if open_issue else "none"


def drift_list(addresses: list[str]) -> str:
    if not addresses:
        return ""
    lines = [f"- `{address}`" for address in addresses[: plan_comment.MAX_CALLED_OUT]]
    if len(addresses) > plan_comment.MAX_CALLED_OUT:
        lines.append(f"- ... and {len(addresses) - plan_comment.MAX_CALLED_OUT} more")
    return ("**Changed outside Terraform** (Azure differs from the state: someone or something"
            " changed these by hand, the portal or another tool):\n\n" + "\n".join(lines))


def stack_section(result: StackResult) -> list[str]:
    if not drifted(result) or result.plan is None:
        return [f"### `{result.stack}`: in sync"]
    parts = []
    if planned(result):
        parts.append(plan_comment.summary(result.stack, result.plan).replace(
            "### Terraform plan:", "### Planned changes:", 1))
        parts.append("The code on main differs from Azure: changes not deployed yet (for prod,"
                     " a deploy waiting for approval), or what the next apply would revert.")
    else:
        parts.append(f"### `{result.stack}`: no planned changes")
    parts.append(drift_list(outside_changes(result)))
    return parts


def render_body(results: list[StackResult], run_url: str | None) -> str:
    parts = [
        MARKER,
        "## Infrastructure drift",
        "The nightly `terraform plan -detailed-exitcode` found differences between the code on"
        " main and what runs in Azure. Per stack: what was **changed outside Terraform** (the"
        " plan's refresh) and the **planned changes** (what an apply of main would do)."
        + (f" Run: {run_url}" if run_url else ""),
    ]
    for result in results:
        parts += stack_section(result)
    return "\n\n".join(p for p in parts if p) + "\n"


def sync_issue(api: GitHubApi, results: list[StackResult], run_url: str | None) -> str:
    issues = [i for i in api.list(f"/issues?state=open&labels={LABEL}") if "pull_request" not in i]
    issue = find_marked(issues, MARKER)
    action = decide(issue, any(drifted(r) for r in results))
    body = render_body(results, run_url)
    if action == "open":
        api.request("POST", "/issues", {"title": TITLE, "body": body, "labels": [LABEL]})
    elif action == "update":
        api.request("PATCH", f"/issues/{issue['number']}", {"body": body})
    elif action == "close":
        note = "No drift any more" + (f" (run: {run_url})" if run_url else "") + ": closing."
        api.request("POST", f"/issues/{issue['number']}/comments", {"body": note})
        api.request("PATCH", f"/issues/{issue['number']}", {"state": "closed"})
    return action


def redact(plan: dict) -> dict:
    """Addresses and actions only: `terraform show -json` holds sensitive values in clear, and
    the result is uploaded as an artifact."""
    def changes(entries):
        return [
            {"address": e["address"],
             "change": {"actions": e["change"]["actions"],
                        "replace_paths": e["change"].get("replace_paths") or []}}
            for e in entries or []
        ]
    return {
        "format_version": plan.get("format_version"),
        "errored": plan.get("errored", False),
        "resource_changes": changes(plan.get("resource_changes")),
        "resource_drift": changes(plan.get("resource_drift")),
    }


def terraform(directory: Path, *args: str, stdout=None) -> int:
    command = ["terraform", f"-chdir={directory}", *args]
    try:
        return subprocess.run(command, stdout=stdout, check=False).returncode
    except FileNotFoundError:
        raise CliError("terraform not found on PATH") from None


def plan_stack(stack: str, directory: Path, out: Path) -> int:
    """Record the plan result of one stack; the exit code of `terraform plan`."""
    code = terraform(directory, "plan", "-input=false", "-lock=false", "-detailed-exitcode",
                     "-out=drift.tfplan")
    out.mkdir(parents=True, exist_ok=True)
    if code in (EXIT_IN_SYNC, EXIT_CHANGES):
        shown = out / ".plan.json.tmp"
        with shown.open("wb") as plan_json:
            failed = terraform(directory, "show", "-json", "drift.tfplan", stdout=plan_json)
        if failed:
            code = EXIT_ERROR
        else:
            write_atomic(out / "plan.json", json.dumps(redact(read_json(shown, "plan JSON"))))
        shown.unlink()
    write_atomic(out / "stack", stack + "\n")
    write_atomic(out / "exitcode", f"{code}\n")
    print(f"{stack}: terraform plan exit code {code}")
    return code


def report(results_dir: Path, run_url: str | None, dry_run: bool) -> int:
    results = load_results(results_dir)
    failed = [r.stack for r in results if r.exit_code not in (EXIT_IN_SYNC, EXIT_CHANGES)]
    if failed:
        print(f"error: terraform plan failed for {', '.join(failed)}: issue left as is",
              file=sys.stderr)
        return 1
    if dry_run:
        print(render_body(results, run_url))
        return 0
    action = sync_issue(GitHubApi.from_environment(), results, run_url)
    print(f"drift issue: {action}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="plan one stack and record the result")
    plan.add_argument("--stack", required=True)
    plan.add_argument("--dir", type=Path, required=True, help="initialised stack folder")
    plan.add_argument("--out", type=Path, required=True)
    sync = commands.add_parser("report", help="open, update or close the drift issue")
    sync.add_argument("--results", type=Path, required=True)
    sync.add_argument("--run-url")
    sync.add_argument("--dry-run", action="store_true", help="print the issue body only")
    args = parser.parse_args(argv)
    if args.command == "plan":
        plan_stack(args.stack, args.dir, args.out)
        return 0
    return report(args.results, args.run_url, args.dry_run)


if __name__ == "__main__":
    sys.exit(run_cli(main))
