"""The plan-comment renderer on real Terraform plans: tests/tools/data/real_plans/, written by
make_plans.py there with the real terraform binary, offline (terraform_data resources, moved,
removed and import blocks). Terraform's own text of each plan is the oracle."""

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.tools.data.real_plans import make_plans
from tools.delivery import plan_comment
from tools.delivery.plan_comment import render_comment, render_summary, stateful_changes

REAL = Path(make_plans.__file__).parent
NAMES = list(make_plans.SCENARIOS)
STACK = "todo-api-dev"
ARTIFACT = "https://example.invalid/artifacts/7"
MD = MarkdownIt("commonmark").enable("table")  # GitHub's table rules (GFM)

# Terraform's resource headers: "# <address> [(deposed object K)] <what happens>".
HEADER = re.compile(
    r"^ *# (?P<address>.+?)(?: \(deposed object (?P<deposed>\w+)\))?"
    r" (?P<what>will be created|will be updated in-place|must be replaced"
    r"|is tainted, so must be replaced|will be destroyed|will no longer be managed by Terraform"
    r"|will be imported|has moved to (?P<to>.+))$")
SYMBOLS = {
    "will be created": "+ create", "will be updated in-place": "~ update",
    "must be replaced": "-/+ replace", "is tainted, so must be replaced": "-/+ replace",
    "will be destroyed": "- destroy", "will no longer be managed by Terraform": ". forget",
    "will be imported": "<- import",
}
PLAN_LINE = re.compile(r"^Plan: (?:(\d+) to import, )?(\d+) to add, (\d+) to change, "
                       r"(\d+) to destroy(?:, (\d+) to forget)?\.$", re.MULTILINE)


def real(name: str) -> tuple[dict, str]:
    return (json.loads((REAL / f"{name}.json").read_text()),
            (REAL / f"{name}.txt").read_text())


def terraform_rows(text: str) -> list[tuple[str, str]]:
    """(action, address) of every resource header in Terraform's plan text."""
    rows = []
    for line in text.splitlines():
        match = HEADER.match(line.replace(", but will not be destroyed", ""))
        if not match:
            continue
        if match["to"]:
            rows.append(("-> move", match["to"]))
        elif match["deposed"]:
            rows.append((f"- destroy (deposed object {match['deposed']})", match["address"]))
        else:
            rows.append((SYMBOLS[match["what"]], match["address"]))
    return rows


def tables(markdown: str) -> list[list[list]]:
    """Every table in `markdown` as GitHub parses it: rows (header first) of cells, each cell
    the inline token, so tests read both its text and its code spans."""
    found, row = [], None
    for token in MD.parse(markdown):
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            row = []
            found[-1].append(row)
        elif token.type == "inline" and row is not None:
            row.append(token)
        elif token.type == "table_close":
            row = None
    return found


def text_of(cell) -> str:
    return "".join(child.content for child in cell.children)


def code_of(cell) -> str:
    return next(child.content for child in cell.children if child.type == "code_inline")


def changes_table(markdown: str) -> list[tuple[str, str]]:
    """(action cell text, address) of the changed-resources table; the header must match."""
    table = next(t for t in tables(markdown) if [text_of(c) for c in t[0]] == ["action", "address"])
    for row in table:
        assert len(row) == 2, [text_of(c) for c in row]
    return [(text_of(row[0]), code_of(row[1])) for row in table[1:]]


def counts_row(markdown: str) -> dict[str, int]:
    table = tables(markdown)[0]
    assert [text_of(c) for c in table[0]] == [
        "stack", "to add", "to change", "to replace", "to destroy"]
    cells = [text_of(c) for c in table[1]]
    return dict(zip(["add", "change", "replace", "destroy"],
                    (int(re.match(r"\d+", c)[0]) for c in cells[1:]), strict=True))


def run(name: str, tmp_path: Path, *flags: str, text: str | None = None) -> tuple[int, dict]:
    """The CLI on a real plan, with every output it can write: (exit status, path -> text)."""
    plan_text = tmp_path / "plan.txt"
    plan_text.write_text(text if text is not None else real(name)[1])
    outs = {flag: tmp_path / f"{flag.strip('-')}.out" for flag in (
        "--out", "--summary-out", "--label-out", "--redacted-text-out")}
    code = plan_comment.main([
        "--stack", STACK, "--plan-json", str(REAL / f"{name}.json"), "--plan-text",
        str(plan_text), "--artifact-url", ARTIFACT,
        *[arg for flag, path in outs.items() for arg in (flag, str(path))], *flags])
    return code, {flag: path.read_text() for flag, path in outs.items() if path.exists()}


@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_terraforms_own_plan_line(name):
    plan, text = real(name)
    counts = counts_row(summary := plan_comment.summary(STACK, plan))
    line = PLAN_LINE.search(text)
    imports, add, change, destroy, _ = (int(n or 0) for n in line.groups()) if line else (
        0, 0, 0, 0, 0)
    assert line or "Changes to Outputs:" in text or "No changes." in text
    assert (counts["add"] + counts["replace"], counts["change"]) == (add, change)
    assert counts["destroy"] + counts["replace"] == destroy
    assert (f"{imports} to import" in summary) == bool(imports)


@pytest.mark.parametrize("name", NAMES)
def test_state_only_changes_are_counted_apart_as_terraform_does(name):
    plan, text = real(name)
    summary = plan_comment.summary(STACK, plan)
    forgotten = text.count("will no longer be managed by Terraform")
    moved = len(re.findall(r"has moved to |# \(moved from ", text))
    assert (f"**{forgotten} resource(s) will be forgotten**" in summary) == bool(forgotten)
    assert (f"{moved} moved" in summary) == bool(moved)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "many"])
def test_every_change_in_terraforms_text_is_a_row_of_the_table(name):
    plan, text = real(name)
    expected = terraform_rows(text)
    comment = render_comment(STACK, plan, text)
    if not expected:
        assert "Changed resources" not in comment
        return
    assert sorted(changes_table(comment)) == sorted(expected)


def test_a_large_plan_lists_what_fits_and_says_how_many_more():
    plan, text = real("many")
    rows = changes_table(render_comment(STACK, plan, text))
    assert 0 < len(rows) < 400 and set(rows) <= set(terraform_rows(text))
    assert f"... and {400 - len(rows)} more (see the plan text)." in render_comment(
        STACK, plan, text)


def test_the_deposed_object_reads_as_deposed_not_as_a_plain_destroy():
    plan, text = real("deposed")
    comment = render_comment(STACK, plan, text)
    key = next(rc["deposed"] for rc in plan["resource_changes"] if rc.get("deposed"))
    assert f"(deposed object {key}) will be destroyed" in text
    assert ("- destroy (deposed object " + key + ")", "terraform_data.db") in changes_table(comment)
    assert f"> - `terraform_data.db`: - destroy (deposed object {key})" in comment


def test_output_changes_are_those_of_terraforms_text():
    plan, text = real("outputs")
    section = text.split("Changes to Outputs:")[1].split("\n\n")[0]
    named = re.findall(r"^  ([+~-]) (\w+) +=", section, re.MULTILINE)
    summary = plan_comment.summary(STACK, plan)
    for sign, name in named:
        word = {"+": "+ create", "~": "~ update", "-": "- destroy"}[sign]
        assert f"`{name}` ({word})" in summary
    assert len(named) == 4


def test_addresses_with_pipes_and_backticks_keep_the_table_whole():
    plan, text = real("odd_keys")
    addresses = [rc["address"] for rc in plan["resource_changes"]]
    assert any("|" in a for a in addresses) and any("`" in a for a in addresses)
    for markdown in (render_comment(STACK, plan, text), render_summary(STACK, plan, text)):
        assert sorted(a for _, a in changes_table(markdown)) == sorted(addresses)


# --- sensitive values -------------------------------------------------------------------------

LEAKED_BY_TERRAFORM = ("s3cr3t-Hunter2-value", "old-R0tated-secret", "api-K3y-nonsensitive",
                       "M1IIbogus-Key-Material")


def test_terraform_itself_prints_the_secrets_of_the_fixture():
    """The leak the renderer must stop is real (hashicorp/terraform#35609): Terraform's text
    and the JSON values hold secrets that the JSON's sensitive marks point at."""
    plan, text = real("sensitive")
    for secret in LEAKED_BY_TERRAFORM:
        assert secret in text and secret in json.dumps(plan["resource_changes"])


@pytest.mark.parametrize("name", NAMES)
def test_no_sensitive_value_reaches_any_output(name, tmp_path):
    code, outputs = run(name, tmp_path)
    assert code == 0 and set(outputs) == {
        "--out", "--summary-out", "--label-out", "--redacted-text-out"}
    for flag, written in outputs.items():
        for secret in make_plans.SECRETS:
            assert secret not in written, (flag, secret)


def test_leaked_secrets_read_as_sensitive_value_in_the_plan_text(tmp_path):
    _, outputs = run("sensitive", tmp_path)
    redacted = outputs["--redacted-text-out"]
    assert '+ input  = (sensitive value)' in redacted  # terraform_data.copy
    assert '+ leaked = (sensitive value)' in redacted
    assert "-----BEGIN TEST KEY-----" not in redacted  # each line of the heredoc
    # 6 one-line leaks (5 in resources, 1 in an output) and the 3 lines of the heredoc
    assert redacted.count("(sensitive value)") == real("sensitive")[1].count(
        "(sensitive value)") + 9
    assert redacted.strip() in outputs["--out"]


# --- stateful resources -----------------------------------------------------------------------

def as_type(plan: dict, resource_type: str) -> dict:
    """`plan` with every resource's type rewritten (Azure types cannot be planned offline)."""
    plan = copy.deepcopy(plan)
    for change in plan["resource_changes"]:
        change["type"] = resource_type
    return plan


def test_stateful_deletes_and_replaces_are_found_by_type():
    assert stateful_changes(real("deposed")[0]) == []
    plan = as_type(real("deposed")[0], "azurerm_cosmosdb_account")
    key = plan["resource_changes"][1]["deposed"]
    assert stateful_changes(plan) == [("terraform_data.db", "replace"),
                                      ("terraform_data.db", f"delete (deposed object {key})")]
    assert stateful_changes(as_type(real("create")[0], "azurerm_cosmosdb_account")) == []
    assert stateful_changes(as_type(real("update")[0], "azurerm_key_vault")) == []


def test_stateful_changes_come_first_in_comment_and_summary():
    plan = as_type(real("destroy")[0], "azurerm_storage_account")
    for markdown in (render_comment(STACK, plan), render_summary(STACK, plan)):
        body = markdown.split("\n\n", 2)
        assert body[1].startswith("> [!CAUTION]\n> **Stateful resources")
        assert "`terraform_data.app`: - destroy" in body[1]


def write_typed(tmp_path: Path, name: str, resource_type: str) -> Path:
    path = tmp_path / f"{name}-typed.json"
    path.write_text(json.dumps(as_type(real(name)[0], resource_type)))
    return path


def test_refusing_stateful_changes_exits_3_after_writing_comment_and_summary(tmp_path, capsys):
    plan = write_typed(tmp_path, "destroy", "azurerm_key_vault_certificate")
    out, summary = tmp_path / "c.md", tmp_path / "s.md"
    code = plan_comment.run_cli(lambda: plan_comment.main([
        "--stack", STACK, "--plan-json", str(plan), "--out", str(out), "--summary-out",
        str(summary), "--refuse-stateful-changes"]))
    assert code == 3
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "terraform_data.app (delete)" in error[0]
    assert "--allow-stateful-changes" in error[0]
    assert "Stateful resources" in out.read_text() and "Stateful resources" in summary.read_text()


def test_an_override_lists_stateful_changes_and_exits_0(tmp_path):
    plan = write_typed(tmp_path, "replace", "azurerm_resource_group")
    out = tmp_path / "c.md"
    assert plan_comment.main(["--stack", STACK, "--plan-json", str(plan), "--out", str(out),
                              "--refuse-stateful-changes", "--allow-stateful-changes"]) == 0
    assert "allowed by override" in out.read_text()
    assert "`terraform_data.app`: -/+ replace" in out.read_text()


# --- job summary size -------------------------------------------------------------------------

def test_summary_of_a_large_plan_is_cut_to_the_limit_with_hash_and_link():
    plan, text = real("many")
    summary = render_summary(STACK, plan, text, artifact_url=ARTIFACT, limit=20_000)
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert len(summary.encode()) <= 20_000
    assert digest in summary and f"({ARTIFACT})" in summary
    assert "Plan: 400 to add, 0 to change, 0 to destroy." in summary  # the tail is kept
    assert "| `todo-api-dev` | 400 | 0 | 0 | 0 |" in summary


def test_summary_of_a_real_text_over_one_mebibyte_stays_under_the_cap(tmp_path):
    text = real("many")[1] * 14
    assert len(text.encode()) > 1_000_000
    step_summary = tmp_path / "summary-out.out"
    step_summary.write_text("earlier step\n")
    code, outputs = run("many", tmp_path, text=text)
    written = outputs["--summary-out"]
    assert code == 0 and written.startswith("earlier step\n")
    assert len(written.encode()) < plan_comment.MAX_SUMMARY_BYTES <= 1_000_000
    assert hashlib.sha256(outputs["--redacted-text-out"].encode()).hexdigest() in written


def test_summary_keeps_a_small_plan_text_whole():
    plan, text = real("update")
    summary = render_summary(STACK, plan, text)
    assert text.strip() in summary and "SHA-256" not in summary


# --- the fixtures are still what Terraform writes ---------------------------------------------

def essentials(plan: dict) -> dict:
    """What the renderer reads of a plan, without fields a newer Terraform may add."""
    changes = [{**{key: rc.get(key) for key in ("address", "mode", "type", "name", "deposed")},
                **{key: rc["change"].get(key) for key in (
                    "actions", "before", "after", "after_unknown", "before_sensitive",
                    "after_sensitive", "importing")}}
               for rc in plan["resource_changes"]]
    return {"format": plan["format_version"].split(".")[0], "changes": changes,
            "outputs": plan.get("output_changes")}


def test_terraform_still_writes_the_create_fixture(tmp_path):
    """One scenario regenerated with the real binary: the fixtures are what Terraform writes
    (byte for byte with the version that made them, in substance with another)."""
    terraform = shutil.which("terraform")
    assert terraform, "terraform is needed on PATH (the CI toolchain installs it)"
    plan_json, plan_text = make_plans.plan_scenario("create", tmp_path, terraform)
    fresh, (plan, text) = json.loads(plan_json), real("create")
    assert essentials(fresh) == essentials(plan)
    assert terraform_rows(plan_text) == terraform_rows(text)
    assert PLAN_LINE.search(plan_text)[0] == PLAN_LINE.search(text)[0]
    if fresh["terraform_version"] == plan["terraform_version"]:
        assert (plan_json, plan_text) == (
            (REAL / "create.json").read_text(), (REAL / "create.txt").read_text())
    comment = render_comment(STACK, fresh, plan_text)
    assert sorted(changes_table(comment)) == sorted(terraform_rows(plan_text))
    assert counts_row(comment) == {"add": 2, "change": 0, "replace": 0, "destroy": 0}
