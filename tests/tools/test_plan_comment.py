"""The plan-comment renderer on `terraform show -json` plans (documented JSON format)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import plan_comment
from tools.plan_comment import MAX_COMMENT_CHARS, github_length, render_comment, summary

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
        [sys.executable, "-m", "tools.plan_comment", "--stack", "s", "--plan-json", str(bad),
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
