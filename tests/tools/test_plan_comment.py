"""The plan-comment renderer on `terraform show -json` plans (documented JSON format)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.delivery import plan_comment
from tools.delivery.plan_comment import MAX_COMMENT_CHARS, github_length, render_comment, summary

ROOT = Path(__file__).resolve().parents[2]
PLANS = Path(__file__).parent / "data" / "plans"
STACK = Path(__file__).parent / "data" / "stacks" / "dual.cdk.tf.json"


def load(name: str) -> dict:
    return json.loads((PLANS / name).read_text())


def table_row(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| `todo-api-dev`"))


def test_comment_starts_with_the_hidden_marker_of_its_stack():
    comment = render_comment("todo-api-dev", load("create.json"))
    assert comment.startswith("<!-- todo-api-plan:todo-api-dev -->\n")


def test_create_counts_as_add():
    assert table_row(summary("todo-api-dev", load("create.json"))) == (
        "| `todo-api-dev` | 2 | 0 | 0 | 0 |"
    )


def test_update_counts_as_change():
    assert table_row(summary("todo-api-dev", load("update.json"))) == (
        "| `todo-api-dev` | 0 | 1 | 0 | 0 |"
    )


def test_both_replace_orders_count_as_replace_and_are_called_out():
    text = summary("todo-api-dev", load("replace.json"))
    assert table_row(text) == "| `todo-api-dev` | 0 | 0 | **2** :warning: | 0 |"
    assert "[!CAUTION]" in text
    assert "`azurerm_traffic_manager_profile.tm`: -/+ replace" in text
    assert "`azurerm_api_management_backend.backend`: -/+ replace" in text


def test_replace_names_the_attribute_that_forces_it():
    comment = render_comment("todo-api-dev", load("replace.json"))
    assert "`azurerm_traffic_manager_profile.tm` (forced by `name`)" in comment


def test_delete_counts_as_destroy_and_is_called_out():
    text = summary("todo-api-dev", load("delete.json"))
    assert table_row(text) == "| `todo-api-dev` | 0 | 0 | 0 | **1** :x: |"
    assert "This plan destroys 1 and replaces 0 resource(s)" in text


def test_no_op_changes_are_not_listed():
    comment = render_comment("todo-api-dev", load("noop.json"))
    assert "No changes." in comment
    assert "azurerm_resource_group.rg_weu" not in comment


def test_plan_without_resource_changes_says_no_changes():
    text = summary("todo-api-dev", load("no_changes.json"))
    assert table_row(text) == "| `todo-api-dev` | 0 | 0 | 0 | 0 |"
    assert "No changes. Infrastructure matches the configuration." in text
    assert "[!CAUTION]" not in text


def test_changed_resources_are_listed_by_address_and_action():
    comment = render_comment("todo-api-dev", load("mixed.json"))
    assert "| + create | `azurerm_linux_web_app.app_neu` |" in comment
    assert "| ~ update | `azurerm_linux_web_app.app_weu` |" in comment
    assert "| - destroy | `azurerm_key_vault_secret.old_key` |" in comment
    assert "`azurerm_resource_group.rg_weu`" not in comment


def test_plan_text_goes_in_a_collapsed_section():
    comment = render_comment("todo-api-dev", load("create.json"), plan_text="Plan: 2 to add")
    assert "<details><summary>Full plan text</summary>" in comment
    assert "Plan: 2 to add" in comment


def test_comment_holds_the_topology_diagram_of_the_stack():
    synth = json.loads(STACK.read_text())
    comment = render_comment("todo-api-dev", load("create.json"), synth=synth)
    assert "```mermaid\nflowchart LR" in comment


def test_unknown_action_is_a_clear_error():
    plan = load("create.json")
    plan["resource_changes"][0]["change"]["actions"] = ["explode"]
    with pytest.raises(plan_comment.CliError, match="unknown change.actions"):
        summary("todo-api-dev", plan)


@pytest.fixture(scope="module")
def oversized(tmp_path_factory) -> tuple[Path, Path]:
    """A plan with 5,000 created resources and 2 MB of plan text."""
    changes = [
        {
            "address": f"azurerm_key_vault_secret.s{i}",
            "mode": "managed",
            "type": "azurerm_key_vault_secret",
            "name": f"s{i}",
            "change": {"actions": ["create"], "before": None, "after": {"name": f"s{i}"}},
        }
        for i in range(5_000)
    ]
    changes.append({**changes[0], "address": "azurerm_key_vault.kv",
                    "change": {"actions": ["delete"], "before": {}, "after": None}})
    plan = {"format_version": "1.2", "terraform_version": "1.13.4", "resource_changes": changes}
    folder = tmp_path_factory.mktemp("oversized")
    (folder / "plan.json").write_text(json.dumps(plan))
    lines = [f'  # azurerm_key_vault_secret.s{i} will be created {"x" * 380}' for i in range(5_000)]
    text = "Terraform will perform the following actions:\n" + "\n".join(lines)
    (folder / "plan.txt").write_text(text + "\nPlan: 5000 to add, 0 to change, 1 to destroy.\n")
    return folder / "plan.json", folder / "plan.txt"


def render_oversized(oversized, tmp_path) -> str:
    plan_json, plan_text = oversized
    out = tmp_path / "comment.md"
    code = plan_comment.main([
        "--stack", "todo-api-dev", "--plan-json", str(plan_json), "--plan-text", str(plan_text),
        "--synth", str(STACK), "--artifact-url", "https://example.invalid/artifacts/1",
        "--out", str(out),
    ])
    assert code == 0
    return out.read_text()


def test_oversized_plan_fits_github_comment_limit(oversized, tmp_path):
    assert len(render_oversized(oversized, tmp_path)) <= MAX_COMMENT_CHARS


def test_oversized_plan_keeps_the_summary_intact(oversized, tmp_path):
    comment = render_oversized(oversized, tmp_path)
    assert "| `todo-api-dev` | 5000 | 0 | 0 | **1** :x: |" in comment
    assert "`azurerm_key_vault.kv`: - destroy" in comment


def test_oversized_plan_text_keeps_head_and_tail_and_says_what_was_cut(oversized, tmp_path):
    comment = render_oversized(oversized, tmp_path)
    assert "Terraform will perform the following actions:" in comment
    assert "Plan: 5000 to add, 0 to change, 1 to destroy." in comment
    assert "lines) cut here: the full plan is in the [plan artifact]" in comment
    assert "(https://example.invalid/artifacts/1)" in comment


def test_oversized_resource_list_says_how_many_were_left_out(oversized, tmp_path):
    comment = render_oversized(oversized, tmp_path)
    assert "more (see the plan text)." in comment


def test_summary_is_appended_to_the_job_summary(tmp_path):
    step_summary = tmp_path / "summary.md"
    step_summary.write_text("earlier step\n")
    plan_comment.main([
        "--stack", "todo-api-dev", "--plan-json", str(PLANS / "delete.json"),
        "--out", str(tmp_path / "c.md"), "--summary-out", str(step_summary),
    ])
    text = step_summary.read_text()
    assert text.startswith("earlier step\n")
    assert "| `todo-api-dev` | 0 | 0 | 0 | **1** :x: |" in text


def test_cli_rejects_a_file_that_is_not_a_plan_in_one_line(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"hello": 1}')
    out = tmp_path / "comment.md"
    result = subprocess.run(
        [sys.executable, "-m", "tools.delivery.plan_comment", "--stack", "s", "--plan-json", str(bad),
         "--out", str(out)],
        check=False, cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: plan JSON has no format_version: is it `terraform show -json <planfile>`?"
    ]
    assert not out.exists()


def test_plan_destroying_everything_still_fits_with_its_summary():
    changes = [
        {"address": f"azurerm_key_vault_secret.{'n' * 200}{i}",
         "change": {"actions": ["delete"], "before": {}, "after": None}}
        for i in range(3_000)
    ]
    plan = {"format_version": "1.2", "resource_changes": changes}
    comment = render_comment("todo-api-dev", plan, plan_text="x\n" * 100_000)
    assert len(comment) <= MAX_COMMENT_CHARS
    assert "| `todo-api-dev` | 0 | 0 | 0 | **3000** :x: |" in comment
    assert "> - ... and 2950 more" in comment


def test_plan_text_of_wide_characters_fits_as_github_counts_them():
    comment = render_comment("todo-api-dev", load("create.json"), plan_text="\U0001F642" * 60_000)
    assert github_length(comment) <= MAX_COMMENT_CHARS
    assert "| `todo-api-dev` | 2 | 0 | 0 | 0 |" in comment


def plan_of(*entries, outputs=None) -> dict:
    return {"format_version": "1.2", "resource_changes": list(entries),
            "output_changes": outputs or {}}


def entry(address, actions, **extra) -> dict:
    change = {"actions": actions, **extra.pop("change", {})}
    return {"address": address, "change": change, **extra}


def test_forget_is_shown_with_a_warning_and_does_not_block():
    text = summary("todo-api-dev", plan_of(entry("azurerm_key_vault.old", ["forget"])))
    assert "**1 resource(s) will be forgotten**" in text and "`azurerm_key_vault.old`" in text
    assert "No changes" not in text


def test_create_forget_counts_as_add_and_forget():
    text = summary("todo-api-dev", plan_of(entry("azurerm_key_vault.kv", ["create", "forget"])))
    assert table_row(text) == "| `todo-api-dev` | 1 | 0 | 0 | 0 |"
    assert "will be forgotten" in text


def test_an_import_only_plan_is_not_no_changes():
    imported = entry("azurerm_resource_group.rg", ["no-op"], change={"importing": {"id": "/x"}})
    plan = plan_of(imported)
    text = summary("todo-api-dev", plan)
    assert "No changes" not in text and "1 to import" in text
    assert "| <- import | `azurerm_resource_group.rg` |" in render_comment("todo-api-dev", plan)


def test_a_move_names_the_old_address():
    moved = entry("azurerm_linux_web_app.primary", ["no-op"],
                  previous_address="azurerm_linux_web_app.app_weu")
    comment = render_comment("todo-api-dev", plan_of(moved))
    assert "1 moved" in comment
    assert "`azurerm_linux_web_app.primary` (moved from `azurerm_linux_web_app.app_weu`)" in comment


def test_output_changes_are_named_without_values():
    plan = plan_of(outputs={"gateway_urls": {"actions": ["update"], "after": ["https://x"]},
                            "api_path": {"actions": ["no-op"]}})
    text = summary("todo-api-dev", plan)
    assert "Outputs changing: `gateway_urls` (~ update)." in text
    assert "https://x" not in text and "No changes" not in text


def test_a_failed_plan_replaces_the_stale_comment_of_its_stack(tmp_path):
    out = tmp_path / "comment.md"
    assert plan_comment.main(["--stack", "todo-api-prod", "--failed", "--run-url", "https://run",
                              "--out", str(out)]) == 0
    body = out.read_text()
    assert body.startswith("<!-- todo-api-plan:todo-api-prod -->\n")
    assert ":x: failed" in body and "(https://run)" in body


def test_a_pull_request_without_a_plan_says_why_and_is_labelled_skipped(tmp_path):
    out, label_file = tmp_path / "comment.md", tmp_path / "label.txt"
    assert plan_comment.main(["--stack", "todo-api-dev", "--skipped", "Dependabot gets no token",
                              "--out", str(out), "--label-out", str(label_file)]) == 0
    body = out.read_text()
    assert body.startswith("<!-- todo-api-plan:todo-api-dev -->\n")
    assert "skipped" in body and "Dependabot gets no token" in body
    assert label_file.read_text() == "plan/todo-api-dev: skipped\n"


@pytest.mark.parametrize(("plan", "kind"), [
    ("no_changes.json", "no changes"), ("update.json", "changes"), ("delete.json", "destroys"),
    ("replace.json", "destroys"), (None, "failed"),
])
def test_the_pr_label_names_the_kind_of_change(plan, kind):
    assert plan_comment.label("todo-api-dev", load(plan) if plan else None) == (
        f"plan/todo-api-dev: {kind}")


def test_forgetting_is_labelled_destroys():
    assert plan_comment.label("todo-api-dev", plan_of(entry("x.y", ["forget"]))).endswith(
        "destroys")


# --- sensitive values (hashicorp/terraform#35609: Terraform's text can print them) ---------

SECRET = "hunter2-Secret-value"


@pytest.mark.parametrize("source", [
    "after_sensitive", "before_sensitive", "output_change", "prior_state_module",
    "planned_output", "variable_value", "variable_default",
])
def test_each_sensitive_mark_of_the_plan_json_is_a_value_to_redact(source):
    """One source at a time: the value is found only through that mark."""
    plan = plan_of()
    if source == "after_sensitive":
        plan["resource_changes"] = [entry("x.a", ["create"], change={
            "after": {"conn": {"user": "u", "password": SECRET}},
            "after_sensitive": {"conn": {"password": True}}})]
    elif source == "before_sensitive":
        plan["resource_changes"] = [entry("x.a", ["delete"], change={
            "before": {"keys": ["k1", SECRET]}, "before_sensitive": {"keys": [False, True]}})]
    elif source == "output_change":
        plan["output_changes"] = {"token": {"actions": ["create"], "after": {"v": SECRET},
                                            "after_sensitive": True}}
    elif source == "prior_state_module":
        plan["prior_state"] = {"values": {"root_module": {"child_modules": [{"resources": [
            {"address": "module.m.x.a", "values": {"input": SECRET},
             "sensitive_values": {"input": True}}]}]}}}
    elif source == "planned_output":
        plan["planned_values"] = {"outputs": {"token": {"sensitive": True, "value": SECRET}}}
    else:
        declared = {"sensitive": True}
        if source == "variable_default":
            declared["default"] = SECRET
        else:
            plan["variables"] = {"secret": {"value": SECRET}}
        plan["configuration"] = {"root_module": {"variables": {"secret": declared}}}
    assert SECRET in plan_comment.sensitive_values(plan)


def test_values_not_marked_sensitive_are_not_redacted():
    plan = plan_of(entry("x.a", ["create"], change={
        "after": {"user": "admin", "password": SECRET}, "after_sensitive": {"password": True}}))
    plan["variables"] = {"region": {"value": "westeurope"}}
    plan["configuration"] = {"root_module": {"variables": {"region": {}}}}
    assert plan_comment.sensitive_values(plan) == {SECRET}


# How Terraform 1.11 prints these values in plan text (checked with `terraform show`).
TERRAFORM_RENDERING = r"""      + input  = [
          + "pa\"ss-word",
          + "back\\slash",
          + <<-EOT
                multi
                line-secret
            EOT,
          + jsonencode(
                {
                  + pw = "js\"on-pw"
                }
            ),
          + "https://u:hunter2-Secret-value@h",
          + "user=admin;pw=pa\"ss-word;",
          + "abc",
          + "abcd",
        ]
"""


def test_redaction_covers_the_forms_terraform_prints():
    secrets = {'pa"ss-word', "back\\slash", "multi\nline-secret\n", '{"pw":"js\\"on-pw"}',
               SECRET, "abc"}
    redacted = plan_comment.redact(TERRAFORM_RENDERING, plan_comment.sensitive_values(
        plan_of(entry("x.a", ["create"], change={"after": sorted(secrets),
                                                  "after_sensitive": True}))))
    for part in ("ss-word", "slash", "line-secret", "on-pw", SECRET):
        assert part not in redacted
    assert redacted.count("+ (sensitive value),") == 3  # Terraform's quoted forms
    assert '"https://u:(sensitive value)@h"' in redacted
    assert '"user=admin;pw=(sensitive value);"' in redacted  # escaped as Terraform quotes it
    assert '+ (sensitive value),\n          + "abcd",' in redacted  # "abc" only where quoted


def test_a_secret_that_terraform_prints_never_reaches_the_comment(tmp_path):
    """Regression (hashicorp/terraform#35609): an attribute copies a sensitive input without
    the mark, so Terraform's own text shows the value; the JSON still marks the source."""
    plan = plan_of(
        entry("terraform_data.marked", ["no-op"], change={
            "before": {"input": SECRET, "output": SECRET},
            "after": {"input": SECRET, "output": SECRET},
            "before_sensitive": {"input": True}, "after_sensitive": {"input": True}}),
        entry("terraform_data.copy", ["create"], change={
            "after": {"input": SECRET}, "after_sensitive": {}}))
    text = f'  # terraform_data.copy will be created\n      + input  = "{SECRET}"\n'
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "plan.txt").write_text(text)
    outs = [tmp_path / name for name in ("c.md", "s.md", "redacted.txt")]
    assert plan_comment.main([
        "--stack", "todo-api-dev", "--plan-json", str(tmp_path / "plan.json"),
        "--plan-text", str(tmp_path / "plan.txt"), "--out", str(outs[0]),
        "--summary-out", str(outs[1]), "--redacted-text-out", str(outs[2])]) == 0
    for out in outs:
        assert SECRET not in out.read_text()
        assert "+ input  = (sensitive value)" in out.read_text()


def test_a_secret_in_an_address_is_redacted_everywhere():
    """`for_each = toset(nonsensitive(var.names))` puts a sensitive value in the address."""
    plan = plan_of(entry(f'azurerm_key_vault_secret.s["{SECRET}"]', ["delete"]))
    plan["variables"] = {"names": {"value": [SECRET]}}
    plan["configuration"] = {"root_module": {"variables": {"names": {"sensitive": True}}}}
    for text in (render_comment("todo-api-dev", plan),
                 plan_comment.render_summary("todo-api-dev", plan)):
        assert SECRET not in text
        assert '| - destroy | `azurerm_key_vault_secret.s[(sensitive value)]` |' in text
        assert '> - `azurerm_key_vault_secret.s[(sensitive value)]`: - destroy' in text


def test_redacted_text_needs_the_plan_text(tmp_path):
    with pytest.raises(plan_comment.CliError, match="--redacted-text-out needs --plan-text"):
        plan_comment.main(["--stack", "s", "--plan-json", str(PLANS / "create.json"),
                           "--out", str(tmp_path / "c.md"),
                           "--redacted-text-out", str(tmp_path / "t.txt")])


# --- addresses that Markdown would misread ---------------------------------------------------

def rendered_rows(markdown: str) -> list[list[str]]:
    """The changed-resources table as GitHub parses it (GFM tables): cells' text per row."""
    from markdown_it import MarkdownIt

    rows, row, inside = [], None, False
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            inside = True
        elif token.type == "tr_open" and inside:
            row = []
            rows.append(row)
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children))
        elif token.type == "table_close":
            inside, row = False, None
    return [r for r in rows if len(r) != 5]  # the counts table has 5 columns


@pytest.mark.parametrize("key", ["a|b", "tick`key", "``x|`", "back\\|slash", "*em* _u_"])
def test_an_address_with_pipes_or_backticks_is_one_cell_of_the_table(key):
    address = f'azurerm_key_vault_secret.s["{key}"]'
    moved = entry(address, ["update"], previous_address=f'azurerm_key_vault_secret.t["{key}"]')
    rows = rendered_rows(render_comment("todo-api-dev", plan_of(moved)))
    assert rows == [["action", "address"], [
        "~ update", f'{address} (moved from azurerm_key_vault_secret.t["{key}"])']]


def test_an_address_with_a_backtick_stays_a_code_span_in_the_warning():
    text = summary("todo-api-dev", plan_of(entry('x.y["a`b"]', ["delete"])))
    assert '> - `` x.y["a`b"] ``: - destroy' in text


# --- deposed objects --------------------------------------------------------------------------

def test_a_deposed_object_is_named_as_such_in_table_and_warning():
    plan = plan_of(entry("azurerm_linux_web_app.app", ["create", "delete"]),
                   entry("azurerm_linux_web_app.app", ["delete"], deposed="1a2b3c4d"))
    comment = render_comment("todo-api-dev", plan)
    assert "| - destroy (deposed object 1a2b3c4d) | `azurerm_linux_web_app.app` |" in comment
    assert "> - `azurerm_linux_web_app.app`: - destroy (deposed object 1a2b3c4d)" in comment
    assert table_row(comment) == "| `todo-api-dev` | 0 | 0 | **1** :warning: | **1** :x: |"


# --- stateful resources -----------------------------------------------------------------------

def with_a_certificate(name: str) -> dict:
    """The hand-written plan with its Key Vault secret made a certificate (stateful: a secret
    is regenerated or soft-deleted and is not listed)."""
    return json.loads((PLANS / name).read_text().replace("azurerm_key_vault_secret",
                                                         "azurerm_key_vault_certificate"))


def test_a_key_vault_secret_is_not_a_stateful_resource():
    assert plan_comment.stateful_changes(load("mixed.json")) == []


@pytest.mark.parametrize(("plan", "expected"), [
    ("delete.json", [("azurerm_key_vault_certificate.old_key", "delete")]),
    ("mixed.json", [("azurerm_key_vault_certificate.old_key", "delete")]),
    ("replace.json", []),  # azurerm_api_management_backend is not azurerm_api_management
    ("create.json", []),
    ("no_changes.json", []),
])
def test_stateful_changes_of_the_hand_written_plans(plan, expected):
    assert plan_comment.stateful_changes(with_a_certificate(plan)) == expected


def test_stateful_type_comes_from_the_address_when_the_entry_has_none():
    plan = plan_of(entry('module.db["a.b"].azurerm_cosmosdb_account.acct', ["delete", "create"]),
                   entry("data.azurerm_key_vault.kv", ["read"]),
                   entry("azurerm_storage_blob.state", ["create", "forget"]))
    assert plan_comment.stateful_changes(plan) == [
        ('module.db["a.b"].azurerm_cosmosdb_account.acct', "replace"),
        ("azurerm_storage_blob.state", "create-forget")]


def test_stateful_section_comes_right_after_the_heading():
    text = summary("todo-api-dev", with_a_certificate("mixed.json"))
    heading, stateful, table = text.split("\n\n")[:3]
    assert heading == "### Terraform plan: `todo-api-dev`"
    assert stateful.startswith("> [!CAUTION]\n> **Stateful resources deleted or replaced (1)")
    assert stateful.endswith("> - `azurerm_key_vault_certificate.old_key`: - destroy")
    assert table.startswith("| stack |")


def test_the_refusal_names_the_first_few_addresses_in_one_line():
    stateful = [(f"azurerm_key_vault.kv{i}", "delete") for i in range(5)]
    message = plan_comment.refusal(stateful)
    assert "\n" not in message
    assert "azurerm_key_vault.kv2 (delete) and 2 more" in message
    assert "azurerm_key_vault.kv3" not in message


def test_refusing_is_a_no_op_without_stateful_changes(tmp_path):
    assert plan_comment.main(["--stack", "todo-api-dev", "--plan-json", str(PLANS / "replace.json"),
                              "--out", str(tmp_path / "c.md"),
                              "--refuse-stateful-changes"]) == 0


def test_refusing_a_hand_written_plan_exits_3_from_the_command_line(tmp_path):
    out = tmp_path / "comment.md"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(with_a_certificate("mixed.json")))
    result = subprocess.run(
        [sys.executable, "-m", "tools.delivery.plan_comment", "--stack", "todo-api-dev", "--plan-json",
         str(plan), "--out", str(out), "--refuse-stateful-changes"],
        check=False, cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: " + plan_comment.refusal([("azurerm_key_vault_certificate.old_key", "delete")])]
    assert "This plan is refused" in out.read_text()


# --- the job summary's size -------------------------------------------------------------------

def test_the_job_summary_file_stays_under_its_cap_with_what_came_before(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_comment, "MAX_SUMMARY_BYTES", 30_000)
    step_summary = tmp_path / "summary.md"
    step_summary.write_text("x" * 10_000 + "\n")
    (tmp_path / "plan.txt").write_text("\n".join(f"line {i} \u00e9\u00e9" for i in range(20_000)))
    assert plan_comment.main([
        "--stack", "todo-api-dev", "--plan-json", str(PLANS / "mixed.json"), "--plan-text",
        str(tmp_path / "plan.txt"), "--out", str(tmp_path / "c.md"),
        "--summary-out", str(step_summary)]) == 0
    written = step_summary.read_bytes()
    assert 25_000 < len(written) < 30_000
    assert b"cut here: the full plan is in the workflow run's artifacts (SHA-256" in written


def test_a_full_job_summary_gets_nothing_more(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan_comment, "MAX_SUMMARY_BYTES", 1_000)
    step_summary = tmp_path / "summary.md"
    step_summary.write_text("x" * 990)
    assert plan_comment.main(["--stack", "todo-api-dev", "--plan-json", str(PLANS / "mixed.json"),
                              "--out", str(tmp_path / "c.md"),
                              "--summary-out", str(step_summary)]) == 0
    assert step_summary.read_text() == "x" * 990
    assert "no room left in the job summary" in capsys.readouterr().err
