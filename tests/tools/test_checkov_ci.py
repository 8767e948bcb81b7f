"""The CI checkov command skips exactly the stacks' checked-in list."""

from pathlib import Path

import pytest
import yaml

from tools.cli import CliError
from tools.development import checkov_ci


def test_command_skips_every_listed_check_and_nothing_else():
    listed = sorted(yaml.safe_load(checkov_ci.SKIPS.read_text()))
    command = checkov_ci.checkov_command(Path("cdktf.out/stacks"), checkov_ci.skipped_checks())
    assert command[command.index("--skip-check") + 1].split(",") == listed
    assert command[command.index("--framework") + 1] == "terraform_json"


def test_skip_list_that_is_not_a_mapping_is_a_clear_error(tmp_path):
    bad = tmp_path / "skips.yaml"
    bad.write_text("- CKV_AZURE_18\n")
    with pytest.raises(CliError, match="must map check ids to reasons"):
        checkov_ci.skipped_checks(bad)


def test_synthesized_stacks_pass_checkov_in_ci(synthesized_stack_files):
    """The same command the plan workflow runs, over the synthesized dual topology."""
    stacks_dir = synthesized_stack_files[("prod", "dual")].parent.parent
    assert checkov_ci.main([str(stacks_dir)]) == 0
