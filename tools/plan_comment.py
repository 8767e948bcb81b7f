"""Render one pull-request comment per stack from `terraform show -json` plan output.

    python -m tools.plan_comment --stack todo-api-dev --plan-json plan.json \
        [--plan-text plan.txt] [--synth cdktf.out/stacks/todo-api-dev/cdk.tf.json] \
        [--artifact-url URL] --out comment.md [--summary-out "$GITHUB_STEP_SUMMARY"]

    python -m tools.plan_comment --stack todo-api-dev --failed [--run-url URL] --out comment.md
    ... [--label-out label.txt]   # the PR label for the kind of change (see `label`)

The comment starts with a hidden marker (`<!-- todo-api-plan:<stack> -->`) so the workflow
finds and updates it in place, then: a summary table, a loud warning when anything is destroyed
or replaced, a warning when resources are forgotten (removed from the state, not destroyed),
the imports and moves (state-only changes, which Terraform's own summary counts apart), the
output changes (names only: values may be sensitive), the changed resources by address and
action, the topology diagram and the full plan text in a collapsed section cut (head and tail
kept) to fit GitHub's 65,536-character limit. `--failed` renders the comment of a plan that
did not finish, so it replaces the previous (now stale) plan of the same stack.

Plan format: https://developer.hashicorp.com/terraform/internals/json-format
(`resource_changes[].change.actions`).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tools import diagram
from tools.cli import CliError, read_json, run_cli, write_atomic

MAX_COMMENT_CHARS = 65_536
MARKER_PREFIX = "todo-api-plan"
MAX_LISTED_RESOURCES = 300
MAX_CALLED_OUT = 50  # destroys/replaces named in the warning

# `change.actions` as documented, mapped to one word each.
ACTIONS = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("delete",): "delete",
    ("forget",): "forget",  # `removed { lifecycle { destroy = false } }`: leaves the object
    ("create", "forget"): "create-forget",  # a replacement that forgets the old object
}
ACTION_SYMBOLS = {
    "create": "+ create",
    "update": "~ update",
    "replace": "-/+ replace",
    "delete": "- destroy",
    "read": "<= read",
    "forget": ". forget",
    "create-forget": "+/. create, forget old",
    "import": "<- import",
    "move": "-> move",
}
OUTPUT_ACTIONS = {
    ("create",): "create",
    ("update",): "update",
    ("delete",): "delete",
    ("no-op",): "no-op",
}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # a value of ACTIONS, or "import" / "move" for a state-only change
    replace_paths: tuple[str, ...] = ()
    importing: bool = False
    previous_address: str | None = None


@dataclass(frozen=True)
class Counts:
    add: int
    change: int
    replace: int
    destroy: int
    forget: int = 0
    imports: int = 0
    moves: int = 0
    outputs: int = 0

    @property
    def has_changes(self) -> bool:
        return any((self.add, self.change, self.replace, self.destroy, self.forget,
                    self.imports, self.moves, self.outputs))

    @property
    def dangerous(self) -> bool:
        return bool(self.replace or self.destroy)


def marker(stack: str) -> str:
    return f"<!-- {MARKER_PREFIX}:{stack} -->"


def classify(actions: list[str]) -> str:
    try:
        return ACTIONS[tuple(actions)]
    except KeyError:
        raise CliError(f"unknown change.actions {actions!r} in plan JSON") from None


def resource_changes(plan: dict) -> list[ResourceChange]:
    """The changes that do something (no-op dropped), in plan order."""
    if not isinstance(plan, dict) or "format_version" not in plan:
        raise CliError("plan JSON has no format_version: is it `terraform show -json <planfile>`?")
    changes = []
    for entry in plan.get("resource_changes") or []:
        action = classify(entry["change"]["actions"])
        importing = bool(entry["change"].get("importing"))
        previous = entry.get("previous_address")
        if action == "no-op":
            if not (importing or previous):
                continue
            action = "import" if importing else "move"
        paths = tuple(_path_text(p) for p in entry["change"].get("replace_paths") or [])
        changes.append(ResourceChange(entry["address"], action, paths, importing, previous))
    return changes


def output_changes(plan: dict) -> list[tuple[str, str]]:
    """(output name, action) of the outputs the plan changes (no-op dropped)."""
    changed = []
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        actions = tuple(change.get("actions") or ())
        action = OUTPUT_ACTIONS.get(actions, "update" if actions else "no-op")
        if action != "no-op":
            changed.append((name, action))
    return changed


def _path_text(path: list) -> str:
    return ".".join(str(step) for step in path)


def count(changes: list[ResourceChange], outputs: int = 0) -> Counts:
    actions = [c.action for c in changes]
    return Counts(
        add=actions.count("create") + actions.count("create-forget"),
        change=actions.count("update"),
        replace=actions.count("replace"),
        destroy=actions.count("delete"),
        forget=actions.count("forget") + actions.count("create-forget"),
        imports=sum(c.importing for c in changes),
        moves=sum(c.previous_address is not None for c in changes),
        outputs=outputs,
    )


def summary_table(stack: str, counts: Counts) -> str:
    replace = f"**{counts.replace}** :warning:" if counts.replace else "0"
    destroy = f"**{counts.destroy}** :x:" if counts.destroy else "0"
    return "\n".join(
        [
            "| stack | to add | to change | to replace | to destroy |",
            "|---|---:|---:|---:|---:|",
            f"| `{stack}` | {counts.add} | {counts.change} | {replace} | {destroy} |",
        ]
    )


def warning(changes: list[ResourceChange], counts: Counts) -> str:
    if not counts.dangerous:
        return ""
    lines = [
        "> [!CAUTION]",
        (
            f"> **This plan destroys {counts.destroy} and replaces {counts.replace} resource(s).**"
            " Check that this is intended: a replaced resource is deleted and created again"
            " (new identity and keys, possible downtime)."
        ),
    ]
    risky = [c for c in changes if c.action in ("delete", "replace")]
    for change in risky[:MAX_CALLED_OUT]:
        lines.append(f"> - `{change.address}`: {ACTION_SYMBOLS[change.action]}")
    if len(risky) > MAX_CALLED_OUT:
        lines.append(f"> - ... and {len(risky) - MAX_CALLED_OUT} more")
    return "\n".join(lines)


def state_only(changes: list[ResourceChange], counts: Counts) -> str:
    """Imports, moves and forgets: what the table's columns do not show."""
    lines = []
    if counts.forget:
        lines += ["> [!WARNING]",
                  (f"> **{counts.forget} resource(s) will be forgotten**: removed from the Terraform"
                  " state and left running, unmanaged (a `removed` block with `destroy = false`).")]
        lines += [f"> - `{c.address}`" for c in changes
                  if c.action in ("forget", "create-forget")][:MAX_CALLED_OUT]
    also = [f"{counts.imports} to import" if counts.imports else "",
            f"{counts.moves} moved" if counts.moves else ""]
    if any(also):
        lines.append(("\n" if lines else "") + "State only: " + ", ".join(a for a in also if a)
                     + " (listed below).")
    return "\n".join(lines)


def outputs_section(plan: dict) -> str:
    changed = output_changes(plan)
    if not changed:
        return ""
    names = ", ".join(f"`{name}` ({ACTION_SYMBOLS.get(action, action)})" for name, action in changed)
    return f"Outputs changing: {names}."


def summary(stack: str, plan: dict) -> str:
    """The part that goes to both the comment and the job summary."""
    changes = resource_changes(plan)
    counts = count(changes, len(output_changes(plan)))
    parts = [f"### Terraform plan: `{stack}`", summary_table(stack, counts)]
    if plan.get("errored"):
        parts.append("> [!WARNING]\n> Terraform reported an error while planning: see the plan text.")
    if not counts.has_changes:
        parts.append("No changes. Infrastructure matches the configuration.")
    for part in (warning(changes, counts), state_only(changes, counts), outputs_section(plan)):
        if part:
            parts.append(part)
    return "\n\n".join(parts)


LABEL_KINDS = ("no changes", "changes", "destroys", "failed", "skipped")


def label_prefix(stack: str) -> str:
    return f"plan/{stack}: "


def label(stack: str, plan: dict | None) -> str:
    """The pull request's label for this stack's plan: `plan/<stack>: no changes`, `changes`,
    `destroys` (anything destroyed, replaced or forgotten) or `failed` (no plan)."""
    if plan is None:
        kind = "failed"
    else:
        counts = count(resource_changes(plan), len(output_changes(plan)))
        kind = ("destroys" if counts.dangerous or counts.forget
                else "changes" if counts.has_changes else "no changes")
    return label_prefix(stack) + kind


def failed_comment(stack: str, run_url: str | None) -> str:
    """Replaces the stack's previous plan comment when a new plan did not finish."""
    where = f"[the workflow run]({run_url})" if run_url else "the workflow run"
    return "\n\n".join([
        marker(stack),
        f"### Terraform plan: `{stack}` :x: failed",
        ("> [!CAUTION]\n> The plan of the latest commit did not finish, so there is no plan to"
        f" review: the plan shown here before was for an older commit. See {where} for the error."),
    ]) + "\n"


def skipped_comment(stack: str, reason: str) -> str:
    """Replaces the stack's plan comment when this pull request gets no plan, and says why."""
    return "\n\n".join([
        marker(stack),
        f"### Terraform plan: `{stack}` skipped",
        f"> [!NOTE]\n> No plan for this pull request: {reason}",
    ]) + "\n"


def changes_list(changes: list[ResourceChange], budget: int) -> str:
    if not changes:
        return ""
    header = "<details open><summary>Changed resources</summary>\n\n| action | address |\n|---|---|"
    rows = []
    used = len(header) + 40
    for index, change in enumerate(changes[:MAX_LISTED_RESOURCES]):
        forced = f" (forced by {', '.join(f'`{p}`' for p in change.replace_paths)})"
        row = f"| {ACTION_SYMBOLS[change.action]} | `{change.address}`"
        row += (forced if change.replace_paths else "")
        if change.previous_address:
            row += f" (moved from `{change.previous_address}`)"
        if change.importing and change.action != "import":
            row += " (imported)"
        row += " |"
        if used + len(row) + 1 > budget:
            break
        rows.append(row)
        used += len(row) + 1
    left_out = len(changes) - len(rows)
    tail = f"\n\n... and {left_out} more (see the plan text).\n" if left_out else "\n"
    return header + "\n" + "\n".join(rows) + tail + "\n</details>"


def fit_text(text: str, budget: int, artifact_url: str | None) -> str:
    """Keep the head and the tail of `text` within `budget` characters, saying what was cut."""
    if len(text) <= budget:
        return text
    where = f"the full plan is in the [plan artifact]({artifact_url})" if artifact_url else (
        "the full plan is in the workflow run's artifacts"
    )
    note_room = 200 + len(where)
    keep = max(budget - note_room, 0)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
    cut = len(text) - len(head) - len(tail)
    cut_lines = text.count("\n", len(head), len(text) - len(tail))
    note = f"\n\n... {cut:,} characters ({cut_lines:,} lines) cut here: {where} ...\n\n"
    return head + note + tail


def plan_text_section(text: str, budget: int, artifact_url: str | None) -> str:
    text = ANSI_ESCAPE.sub("", text).replace("```", "'''")
    opening = "<details><summary>Full plan text</summary>\n\n```terraform\n"
    closing = "\n```\n\n</details>"
    link = f"\n\nPlan artifact: {artifact_url}" if artifact_url else ""
    room = budget - len(opening) - len(closing) - len(link)
    if room < 500:
        return f"Plan text left out (no room in the comment){link}"
    return opening + fit_text(text, room, artifact_url) + closing + link


def diagram_section(synth: dict | None) -> str:
    if synth is None:
        return ""
    return "<details><summary>Topology</summary>\n\n" + diagram.markdown(synth) + "\n\n</details>"


def github_length(text: str) -> int:
    """Length as GitHub counts it (UTF-16 code units: an emoji counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def render_comment(
    stack: str,
    plan: dict,
    plan_text: str | None = None,
    synth: dict | None = None,
    artifact_url: str | None = None,
    limit: int = MAX_COMMENT_CHARS,
) -> str:
    """The whole comment, never longer than `limit` characters as GitHub counts them."""
    budget = limit
    for _ in range(4):
        body = _render(stack, plan, plan_text, synth, artifact_url, budget)
        over = github_length(body) - limit
        if over <= 0:
            return body
        budget -= over + 100
    return marker(stack) + "\n" + summary(stack, plan) + "\n"


def _render(stack, plan, plan_text, synth, artifact_url, limit) -> str:
    head = marker(stack) + "\n" + summary(stack, plan)
    topology = diagram_section(synth)
    budget = limit - len(head) - len(topology) - 8
    listed = changes_list(resource_changes(plan), budget // 3 if plan_text else budget)
    parts = [head, listed, topology]
    if plan_text is not None:
        used = sum(len(p) + 2 for p in parts)
        parts.append(plan_text_section(plan_text, limit - used - 2, artifact_url))
    body = "\n\n".join(p for p in parts if p) + "\n"
    if len(body) > limit:  # only a pathological diagram gets here: keep the summary
        body = head + "\n"
    return body


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--plan-json", type=Path)
    parser.add_argument("--failed", action="store_true",
                        help="render the comment of a plan that did not finish")
    parser.add_argument("--run-url", help="link to the run (with --failed)")
    parser.add_argument("--skipped", metavar="REASON",
                        help="render the comment of a pull request that gets no plan, and why")
    parser.add_argument("--plan-text", type=Path)
    parser.add_argument("--synth", type=Path, help="cdk.tf.json of the stack, for the diagram")
    parser.add_argument("--artifact-url")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary-out", type=Path, help="append the summary here")
    parser.add_argument("--label-out", type=Path, help="write the PR label for this plan here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.failed:
        write_atomic(args.out, failed_comment(args.stack, args.run_url))
        if args.label_out:
            write_atomic(args.label_out, label(args.stack, None) + "\n")
        print(f"{args.out}: failed-plan comment for {args.stack}")
        return 0
    if args.skipped:
        write_atomic(args.out, skipped_comment(args.stack, args.skipped))
        if args.label_out:
            write_atomic(args.label_out, label_prefix(args.stack) + "skipped\n")
        print(f"{args.out}: skipped-plan comment for {args.stack}")
        return 0
    if args.plan_json is None:
        raise CliError("--plan-json is required (or --failed, --skipped)")
    plan = read_json(args.plan_json, "plan JSON")
    synth = read_json(args.synth, "synthesized stack") if args.synth else None
    text = _read_text(args.plan_text) if args.plan_text else None
    comment = render_comment(args.stack, plan, text, synth, args.artifact_url)
    write_atomic(args.out, comment)
    if args.label_out:
        write_atomic(args.label_out, label(args.stack, plan) + "\n")
    if args.summary_out:
        with args.summary_out.open("a", encoding="utf-8") as out:
            out.write(summary(args.stack, plan) + "\n\n" + diagram_section(synth) + "\n")
    print(f"{args.out}: {len(comment):,} characters")
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CliError(f"cannot read plan text {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
