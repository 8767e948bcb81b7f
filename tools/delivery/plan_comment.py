"""Render one pull-request comment per stack from `terraform show -json` plan output.

    python -m tools.delivery.plan_comment --stack todo-api-dev --plan-json plan.json \
        [--plan-text plan.txt] [--synth cdktf.out/stacks/todo-api-dev/cdk.tf.json] \
        [--artifact-url URL] --out comment.md [--summary-out "$GITHUB_STEP_SUMMARY"] \
        [--redacted-text-out plan-redacted.txt] \
        [--refuse-stateful-changes [--allow-stateful-changes]]

    python -m tools.delivery.plan_comment --stack todo-api-dev --failed [--run-url URL] --out comment.md
    ... [--label-out label.txt]   # the PR label for the kind of change (see `label`)

The comment starts with a hidden marker (`<!-- todo-api-plan:<stack> -->`) so the workflow
finds and updates it in place, then: the heading, the deletions and replacements of stateful
resources (STATEFUL_TYPES: their data goes with them), a summary table, a loud warning when
anything is destroyed or replaced (a deposed object is named as such), a warning when resources
are forgotten (removed from the state, not destroyed), the imports and moves (state-only
changes, which Terraform's own summary counts apart), the output changes (names only: values
may be sensitive), the changed resources by address and action, the topology diagram and the
full plan text in a collapsed section cut (head and tail kept, with the SHA-256 of the whole)
to fit GitHub's 65,536-character limit. `--summary-out` appends the same to the job summary,
cut to stay under GitHub's 1 MiB cap (MAX_SUMMARY_BYTES, counting what the file already holds).
`--failed` renders the comment of a plan that did not finish, so it replaces the previous (now
stale) plan of the same stack.

Sensitive values: Terraform's text can print a value that the plan JSON marks sensitive (an
attribute that copies a sensitive input without the mark, hashicorp/terraform#35609). Every
value the JSON marks sensitive is replaced by `(sensitive value)` in everything written here:
the comment, the job summary and `--redacted-text-out` (the plan text to publish instead of
Terraform's own).

`--refuse-stateful-changes` exits 3, after writing everything, when stateful resources are
deleted or replaced; `--allow-stateful-changes` overrides it (they are listed as allowed).

Plan format: https://developer.hashicorp.com/terraform/internals/json-format
(`resource_changes[].change.actions`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.cli import CliError, read_json, run_cli, write_atomic
from tools.delivery import diagram

MAX_COMMENT_CHARS = 65_536
MAX_SUMMARY_BYTES = 1_000_000  # GitHub caps one step's job summary at 1 MiB: stay under it
MARKER_PREFIX = "todo-api-plan"
MAX_LISTED_RESOURCES = 300
MAX_CALLED_OUT = 50  # destroys/replaces named in the warning
MAX_NAMED_IN_ERROR = 3  # stateful addresses named in the one-line refusal
EXIT_STATEFUL = 3  # --refuse-stateful-changes and the plan deletes or replaces one

# Resources whose deletion takes data with it (a replacement is a deletion too).
STATEFUL_TYPES = frozenset(
    {
        "azurerm_cosmosdb_account",
        "azurerm_cosmosdb_table",
        "azurerm_key_vault",
        "azurerm_key_vault_certificate",  # (secrets are regenerated or soft-deleted: not listed)
        "azurerm_api_management",
        "azurerm_storage_account",
        "azurerm_storage_container",
        "azurerm_storage_blob",
        "azurerm_resource_group",
    }
)
DATA_LOSING_ACTIONS = ("delete", "replace", "create-forget")

SENSITIVE = "(sensitive value)"
MIN_BARE_SECRET = 4  # shorter sensitive values are redacted only where quoted ("abc")

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
# `module.NAME[KEY].` prefixes, `data.`, then the resource type of an address.
ADDRESS_TYPE = re.compile(
    r'^(?:module\.[^.\[]+(?:\[(?:"(?:[^"\\]|\\.)*"|\d+)\])?\.)*(?:data\.)?([^.\[]+)\.'
)


@dataclass(frozen=True)
class ResourceChange:
    address: str
    action: str  # a value of ACTIONS, or "import" / "move" for a state-only change
    replace_paths: tuple[str, ...] = ()
    importing: bool = False
    previous_address: str | None = None
    deposed: str | None = None  # key of a deposed object (left by a failed replacement)
    type: str = ""  # resource type: azurerm_key_vault

    @property
    def label(self) -> str:
        """The action as the comment shows it: `- destroy (deposed object 1a2b3c4d)`."""
        symbol = ACTION_SYMBOLS[self.action]
        return f"{symbol} (deposed object {self.deposed})" if self.deposed else symbol


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
        return any(
            (
                self.add,
                self.change,
                self.replace,
                self.destroy,
                self.forget,
                self.imports,
                self.moves,
                self.outputs,
            )
        )

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
        changes.append(
            ResourceChange(
                entry["address"],
                action,
                paths,
                importing,
                previous,
                entry.get("deposed"),
                _resource_type(entry),
            )
        )
    return changes


def _resource_type(entry: dict) -> str:
    match = ADDRESS_TYPE.match(entry["address"])
    return entry.get("type") or (match[1] if match else "")


def loses_data(change: ResourceChange) -> bool:
    """A stateful resource (STATEFUL_TYPES) deleted or replaced: its data goes with it."""
    return change.type in STATEFUL_TYPES and change.action in DATA_LOSING_ACTIONS


def stateful_changes(plan: dict) -> list[tuple[str, str]]:
    """(address, action) of the stateful resources that the plan deletes or replaces, in plan
    order; a deposed object's action reads `delete (deposed object KEY)`."""
    return [
        (c.address, c.action + (f" (deposed object {c.deposed})" if c.deposed else ""))
        for c in resource_changes(plan)
        if loses_data(c)
    ]


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


def sensitive_values(plan: dict) -> set[str]:
    """Every value the plan JSON marks sensitive, as text: values under the
    `before_sensitive`/`after_sensitive` masks of resource changes, drift and output changes,
    under `sensitive_values` of the prior state and the planned values, sensitive outputs,
    and the values and defaults of the variables the root module declares sensitive."""
    found: set[str] = set()
    for entry in (plan.get("resource_changes") or []) + (plan.get("resource_drift") or []):
        _masked_change(entry.get("change") or {}, found)
    for change in (plan.get("output_changes") or {}).values():
        _masked_change(change, found)
    for values in ((plan.get("prior_state") or {}).get("values"), plan.get("planned_values")):
        for resource in _state_resources((values or {}).get("root_module")):
            _masked(resource.get("values"), resource.get("sensitive_values"), found)
        for output in ((values or {}).get("outputs") or {}).values():
            _masked(output.get("value"), bool(output.get("sensitive")), found)
    declared = ((plan.get("configuration") or {}).get("root_module") or {}).get("variables")
    for name, variable in (declared or {}).items():
        if variable.get("sensitive"):
            _masked(variable.get("default"), True, found)
            _masked(((plan.get("variables") or {}).get(name) or {}).get("value"), True, found)
    return {value for value in found if value}


def _masked_change(change: dict, found: set[str]) -> None:
    for side in ("before", "after"):
        _masked(change.get(side), change.get(f"{side}_sensitive"), found)


def _state_resources(module: dict | None) -> Iterator[dict]:
    if module:
        yield from module.get("resources") or []
        for child in module.get("child_modules") or []:
            yield from _state_resources(child)


def _masked(value, mask, found: set[str]) -> None:
    """Add the leaves of `value` that `mask` (true, or a structure of the value's shape)
    marks sensitive."""
    if mask is True:
        _leaves(value, found)
    elif isinstance(mask, dict) and isinstance(value, dict):
        for key, inner in mask.items():
            _masked(value.get(key), inner, found)
    elif isinstance(mask, list) and isinstance(value, list):
        for item, inner in zip(value, mask, strict=False):
            _masked(item, inner, found)


def _leaves(value, found: set[str]) -> None:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            _leaves(item, found)
    elif isinstance(value, str):
        found.add(value)
        if value[:1] in ("{", "["):  # a JSON document (jsonencode): Terraform shows its parts
            try:
                _leaves(json.loads(value), found)
            except ValueError:
                pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found.add(str(value))


def redact(text: str, secrets: set[str]) -> str:
    """`text` with every occurrence of each secret replaced by `(sensitive value)`: as Terraform
    quotes it (`"..."`, escaped), bare, JSON-escaped, and line by line for multi-line values.
    A value shorter than MIN_BARE_SECRET characters is replaced only where quoted."""
    if not secrets:
        return text
    quoted, bare = set(), set()
    for secret in secrets:
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1]  # "pa\"ss" as Terraform quotes
        quoted.add(f'"{escaped}"')
        if len(secret) >= MIN_BARE_SECRET:
            bare |= {secret, escaped}
            bare |= {
                line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_BARE_SECRET
            }
    # Only the forms present (a fast search each), the longest first: it wins where they overlap.
    forms = sorted((form for form in quoted | bare if form in text), key=len, reverse=True)
    if not forms:
        return text
    return re.sub("|".join(re.escape(form) for form in forms), SENSITIVE, text)


def redacted_text(plan_text: str, plan: dict) -> str:
    """The plan text to publish: colours stripped, every sensitive value of `plan` redacted."""
    return redact(ANSI_ESCAPE.sub("", plan_text), sensitive_values(plan))


def code(text: str, in_table: bool = False) -> str:
    """`text` as a Markdown code span whatever it holds: a fence longer than any backtick run in
    it (padded), and in a table cell `|` escaped as `\\|` (GFM unescapes it in code spans)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    body = f" {text} " if longest else text
    if in_table:
        body = body.replace("|", "\\|")
    return f"{fence}{body}{fence}"


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
            f"| {code(stack, True)} | {counts.add} | {counts.change} | {replace} | {destroy} |",
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
        lines.append(f"> - {code(change.address)}: {change.label}")
    if len(risky) > MAX_CALLED_OUT:
        lines.append(f"> - ... and {len(risky) - MAX_CALLED_OUT} more")
    return "\n".join(lines)


def state_only(changes: list[ResourceChange], counts: Counts) -> str:
    """Imports, moves and forgets: what the table's columns do not show."""
    lines = []
    if counts.forget:
        lines += [
            "> [!WARNING]",
            (
                f"> **{counts.forget} resource(s) will be forgotten**: removed from the Terraform"
                " state and left running, unmanaged (a `removed` block with `destroy = false`)."
            ),
        ]
        lines += [
            f"> - {code(c.address)}" for c in changes if c.action in ("forget", "create-forget")
        ][:MAX_CALLED_OUT]
    also = [
        f"{counts.imports} to import" if counts.imports else "",
        f"{counts.moves} moved" if counts.moves else "",
    ]
    if any(also):
        lines.append(
            ("\n" if lines else "")
            + "State only: "
            + ", ".join(a for a in also if a)
            + " (listed below)."
        )
    return "\n".join(lines)


def outputs_section(plan: dict) -> str:
    changed = output_changes(plan)
    if not changed:
        return ""
    names = ", ".join(
        f"{code(name)} ({ACTION_SYMBOLS.get(action, action)})" for name, action in changed
    )
    return f"Outputs changing: {names}."


def stateful_section(changes: list[ResourceChange], gate: str | None = None) -> str:
    """The deletions and replacements of STATEFUL_TYPES resources. `gate`: None, "refused"
    (--refuse-stateful-changes) or "allowed" (--allow-stateful-changes)."""
    risky = [c for c in changes if loses_data(c)]
    if not risky:
        return ""
    note = {
        "refused": " This plan is refused (`--refuse-stateful-changes`): rerun with"
        " `--allow-stateful-changes` once the loss is intended.",
        "allowed": " These changes are allowed by override (`--allow-stateful-changes`).",
    }.get(gate or "", "")
    headline = (
        f"> **Stateful resources deleted or replaced ({len(risky)}): their data goes"
        f" with them** (databases, secrets, certificates, storage).{note}"
    )
    lines = ["> [!CAUTION]", headline]
    lines += [f"> - {code(c.address)}: {c.label}" for c in risky[:MAX_CALLED_OUT]]
    if len(risky) > MAX_CALLED_OUT:
        lines.append(f"> - ... and {len(risky) - MAX_CALLED_OUT} more")
    return "\n".join(lines)


def summary(stack: str, plan: dict, stateful_gate: str | None = None) -> str:
    """The part that goes to both the comment and the job summary: stateful deletions first."""
    changes = resource_changes(plan)
    counts = count(changes, len(output_changes(plan)))
    parts = [
        f"### Terraform plan: {code(stack)}",
        stateful_section(changes, stateful_gate),
        summary_table(stack, counts),
    ]
    if plan.get("errored"):
        parts.append(
            "> [!WARNING]\n> Terraform reported an error while planning: see the plan text."
        )
    if not counts.has_changes:
        parts.append("No changes. Infrastructure matches the configuration.")
    parts += [warning(changes, counts), state_only(changes, counts), outputs_section(plan)]
    return "\n\n".join(part for part in parts if part)


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
        kind = (
            "destroys"
            if counts.dangerous or counts.forget
            else "changes"
            if counts.has_changes
            else "no changes"
        )
    return label_prefix(stack) + kind


def failed_comment(stack: str, run_url: str | None) -> str:
    """Replaces the stack's previous plan comment when a new plan did not finish."""
    where = f"[the workflow run]({run_url})" if run_url else "the workflow run"
    return (
        "\n\n".join(
            [
                marker(stack),
                f"### Terraform plan: `{stack}` :x: failed",
                (
                    "> [!CAUTION]\n> The plan of the latest commit did not finish, so there is no"
                    " plan to review: the plan shown here before was for an older commit."
                    f" See {where} for the error."
                ),
            ]
        )
        + "\n"
    )


def skipped_comment(stack: str, reason: str) -> str:
    """Replaces the stack's plan comment when this pull request gets no plan, and says why."""
    return (
        "\n\n".join(
            [
                marker(stack),
                f"### Terraform plan: `{stack}` skipped",
                f"> [!NOTE]\n> No plan for this pull request: {reason}",
            ]
        )
        + "\n"
    )


def changes_list(changes: list[ResourceChange], budget: int) -> str:
    if not changes:
        return ""
    header = "<details open><summary>Changed resources</summary>\n\n| action | address |\n|---|---|"
    rows = []
    used = len(header) + 40
    for change in changes[:MAX_LISTED_RESOURCES]:
        row = f"| {change.label} | {code(change.address, True)}"
        if change.replace_paths:
            row += f" (forced by {', '.join(code(p, True) for p in change.replace_paths)})"
        if change.previous_address:
            row += f" (moved from {code(change.previous_address, True)})"
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


def fit_text(text: str, budget: int, artifact_url: str | None, digest: str | None = None) -> str:
    """Keep the head and the tail of `text` within `budget` characters, saying what was cut,
    where the full text is and (`digest`) its SHA-256."""
    if len(text) <= budget:
        return text
    where = (
        f"the full plan is in the [plan artifact]({artifact_url})"
        if artifact_url
        else ("the full plan is in the workflow run's artifacts")
    )
    if digest:
        where += f" (SHA-256 of the full plan text, sensitive values redacted: {digest})"
    note_room = 200 + len(where)
    keep = max(budget - note_room, 0)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
    cut = len(text) - len(head) - len(tail)
    cut_lines = text.count("\n", len(head), len(text) - len(tail))
    note = f"\n\n... {cut:,} characters ({cut_lines:,} lines) cut here: {where} ...\n\n"
    return head + note + tail


def plan_text_section(
    text: str, budget: int, artifact_url: str | None, digest: str | None = None
) -> str:
    """`text` (already redacted) in a collapsed code block of at most `budget` characters."""
    text = text.replace("```", "'''")
    opening = "<details><summary>Full plan text</summary>\n\n```terraform\n"
    closing = "\n```\n\n</details>"
    link = f"\n\nPlan artifact: {artifact_url}" if artifact_url else ""
    room = budget - len(opening) - len(closing) - len(link)
    if room < 500:
        return f"Plan text left out (no room in the comment){link}"
    return opening + fit_text(text, room, artifact_url, digest) + closing + link


def diagram_section(synth: dict | None) -> str:
    if synth is None:
        return ""
    return "<details><summary>Topology</summary>\n\n" + diagram.markdown(synth) + "\n\n</details>"


def github_length(text: str) -> int:
    """Length as GitHub counts it (UTF-16 code units: an emoji counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def utf8_length(text: str) -> int:
    """Length as the job summary's cap counts it (bytes)."""
    return len(text.encode("utf-8"))


def render_comment(
    stack: str,
    plan: dict,
    plan_text: str | None = None,
    synth: dict | None = None,
    artifact_url: str | None = None,
    limit: int = MAX_COMMENT_CHARS,
    stateful_gate: str | None = None,
) -> str:
    """The whole comment, never longer than `limit` characters as GitHub counts them, with
    every sensitive value of `plan` redacted (in the plan text too)."""
    secrets = sensitive_values(plan)
    head = marker(stack) + "\n" + redact(summary(stack, plan, stateful_gate), secrets)
    text = _published(plan_text, secrets)

    def render(budget: int) -> str:
        return _body(head, resource_changes(plan), text, synth, artifact_url, budget, secrets)

    return _fit(render, limit, github_length, head + "\n")


def render_summary(
    stack: str,
    plan: dict,
    plan_text: str | None = None,
    synth: dict | None = None,
    artifact_url: str | None = None,
    limit: int = MAX_SUMMARY_BYTES,
    stateful_gate: str | None = None,
) -> str:
    """What `--summary-out` appends: the summary, the changed resources, the topology and the
    plan text (redacted), within `limit` bytes; "" when not even the summary fits."""
    secrets = sensitive_values(plan)
    head = redact(summary(stack, plan, stateful_gate), secrets)
    text = _published(plan_text, secrets)

    def render(budget: int) -> str:
        return _body(head, resource_changes(plan), text, synth, artifact_url, budget, secrets)

    fallback = head + "\n" if utf8_length(head) < limit else ""
    return _fit(render, limit, utf8_length, fallback)


def _published(plan_text: str | None, secrets: set[str]) -> str | None:
    return None if plan_text is None else redact(ANSI_ESCAPE.sub("", plan_text), secrets)


def _fit(
    render: Callable[[int], str], limit: int, measure: Callable[[str], int], fallback: str
) -> str:
    """`render(budget)`, the budget shrunk until `measure` of it is within `limit`."""
    budget = limit
    for _ in range(4):
        body = render(budget)
        over = measure(body) - limit
        if over <= 0:
            return body
        budget -= over + 100
    return fallback


def _body(
    head: str,
    changes: list[ResourceChange],
    text: str | None,
    synth: dict | None,
    artifact_url: str | None,
    limit: int,
    secrets: set[str],
) -> str:
    """`head`, the changed resources, the topology and `text` within `limit` characters."""
    topology = redact(diagram_section(synth), secrets)
    budget = limit - len(head) - len(topology) - 8
    listed = redact(changes_list(changes, budget // 3 if text else budget), secrets)
    parts = [head, listed, topology]
    if text is not None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        used = sum(len(p) + 2 for p in parts)
        parts.append(plan_text_section(text, limit - used - 2, artifact_url, digest))
    body = "\n\n".join(p for p in parts if p) + "\n"
    if len(body) > limit:  # only a pathological diagram gets here: keep the summary
        body = head + "\n"
    return body


def refusal(stateful: list[tuple[str, str]]) -> str:
    """The one-line error of --refuse-stateful-changes, naming the first few addresses."""
    named = ", ".join(f"{address} ({action})" for address, action in stateful[:MAX_NAMED_IN_ERROR])
    more = (
        f" and {len(stateful) - MAX_NAMED_IN_ERROR} more"
        if len(stateful) > MAX_NAMED_IN_ERROR
        else ""
    )
    return (
        f"the plan deletes or replaces {len(stateful)} stateful resource(s): {named}{more};"
        " rerun with --allow-stateful-changes if that is intended"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--plan-json", type=Path)
    parser.add_argument(
        "--failed", action="store_true", help="render the comment of a plan that did not finish"
    )
    parser.add_argument("--run-url", help="link to the run (with --failed)")
    parser.add_argument(
        "--skipped",
        metavar="REASON",
        help="render the comment of a pull request that gets no plan, and why",
    )
    parser.add_argument("--plan-text", type=Path)
    parser.add_argument("--synth", type=Path, help="cdk.tf.json of the stack, for the diagram")
    parser.add_argument("--artifact-url")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--summary-out",
        type=Path,
        help=f"append the summary here (kept under {MAX_SUMMARY_BYTES:,} bytes)",
    )
    parser.add_argument("--label-out", type=Path, help="write the PR label for this plan here")
    parser.add_argument(
        "--redacted-text-out",
        type=Path,
        help="write the plan text with sensitive values redacted (to publish)",
    )
    parser.add_argument(
        "--refuse-stateful-changes",
        action="store_true",
        help=f"exit {EXIT_STATEFUL} (after writing everything) when the plan"
        " deletes or replaces a stateful resource",
    )
    parser.add_argument(
        "--allow-stateful-changes",
        action="store_true",
        help="override --refuse-stateful-changes: list them as allowed",
    )
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
    if args.redacted_text_out and not args.plan_text:
        raise CliError("--redacted-text-out needs --plan-text")
    plan = read_json(args.plan_json, "plan JSON")
    synth = read_json(args.synth, "synthesized stack") if args.synth else None
    text = _read_text(args.plan_text) if args.plan_text else None
    stateful = stateful_changes(plan)
    gate = None
    if stateful and (args.refuse_stateful_changes or args.allow_stateful_changes):
        gate = "allowed" if args.allow_stateful_changes else "refused"
    comment = render_comment(args.stack, plan, text, synth, args.artifact_url, stateful_gate=gate)
    write_atomic(args.out, comment)
    if args.label_out:
        write_atomic(args.label_out, label(args.stack, plan) + "\n")
    if args.redacted_text_out:
        write_atomic(args.redacted_text_out, redacted_text(text, plan))
    if args.summary_out:
        _append_summary(args.summary_out, args.stack, plan, text, synth, args.artifact_url, gate)
    print(f"{args.out}: {len(comment):,} characters")
    if gate == "refused":
        print(f"error: {refusal(stateful)}", file=sys.stderr)
        return EXIT_STATEFUL
    return 0


def _append_summary(
    path: Path,
    stack: str,
    plan: dict,
    text: str | None,
    synth: dict | None,
    artifact_url: str | None,
    gate: str | None,
) -> None:
    """Append the summary, keeping the whole file under MAX_SUMMARY_BYTES."""
    used = path.stat().st_size if path.exists() else 0
    body = render_summary(
        stack, plan, text, synth, artifact_url, MAX_SUMMARY_BYTES - used - 2, gate
    )
    if not body:
        print(f"{path}: no room left in the job summary, summary left out", file=sys.stderr)
        return
    with path.open("a", encoding="utf-8") as out:
        out.write(body + "\n")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CliError(f"cannot read plan text {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
