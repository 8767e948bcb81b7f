"""The plan bundle: the apply job gets exactly the plan the plan job made, and nobody else can
read or change it on the way."""

import base64
import os

import pytest

from tools.cli import CliError
from tools.delivery import plan_bundle

KEY = os.urandom(32)


@pytest.fixture
def stack_dir(tmp_path):
    folder = tmp_path / "plan" / "todo-api-prod"
    folder.mkdir(parents=True)
    (folder / "cdk.tf.json").write_text('{"resource": {}}')
    (folder / "backend_override.tf.json").write_text('{"terraform": {}}')
    (folder / "tfplan").write_bytes(b"PK\x03\x04 secret-value-in-plan")
    return folder


def test_round_trip_gives_back_the_same_plan(stack_dir, tmp_path):
    bundle = plan_bundle.pack(stack_dir, KEY)
    target = tmp_path / "apply" / "todo-api-prod"
    names = plan_bundle.unpack(bundle, target, KEY)
    assert sorted(names) == ["backend_override.tf.json", "cdk.tf.json", "tfplan"]
    assert (target / "tfplan").read_bytes() == (stack_dir / "tfplan").read_bytes()


def test_the_bundle_does_not_show_the_plan(stack_dir):
    assert b"secret-value-in-plan" not in plan_bundle.pack(stack_dir, KEY)


def test_another_key_is_refused(stack_dir, tmp_path):
    bundle = plan_bundle.pack(stack_dir, KEY)
    with pytest.raises(CliError, match="does not open with this key"):
        plan_bundle.unpack(bundle, tmp_path / "todo-api-prod", os.urandom(32))


def test_a_changed_bundle_is_refused(stack_dir, tmp_path):
    bundle = bytearray(plan_bundle.pack(stack_dir, KEY))
    bundle[-1] ^= 1
    with pytest.raises(CliError, match="does not open"):
        plan_bundle.unpack(bytes(bundle), tmp_path / "todo-api-prod", KEY)


def test_a_dev_bundle_cannot_be_applied_to_prod(tmp_path, stack_dir):
    dev = stack_dir.parent / "todo-api-dev"
    stack_dir.rename(dev)
    bundle = plan_bundle.pack(dev, KEY)
    with pytest.raises(CliError, match="other key, stack"):
        plan_bundle.unpack(bundle, tmp_path / "todo-api-prod", KEY)


def test_a_folder_without_a_plan_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAN_BUNDLE_KEY", base64.b64encode(KEY).decode())
    (tmp_path / "todo-api-dev").mkdir()
    argv = ["pack", "--stack-dir", str(tmp_path / "todo-api-dev"), "--out", str(tmp_path / "b")]
    assert plan_bundle.run_cli(lambda: plan_bundle.main(argv)) == 2
    assert "missing cdk.tf.json, tfplan" in capsys.readouterr().err


def test_a_missing_or_short_key_is_one_line_and_exit_2(stack_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAN_BUNDLE_KEY", "c2hvcnQ=")
    argv = ["pack", "--stack-dir", str(stack_dir), "--out", str(tmp_path / "b")]
    assert plan_bundle.run_cli(lambda: plan_bundle.main(argv)) == 2
    assert "PLAN_BUNDLE_KEY must hold 32 random bytes" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["GITHUB_SHA", "GITHUB_RUN_ID"])
def test_a_bundle_of_another_commit_or_run_is_refused(stack_dir, tmp_path, monkeypatch,
                                                      variable):
    """An approved plan of an older run (or commit) cannot be replayed into a later apply."""
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.setenv("GITHUB_RUN_ID", "1001")
    bundle = plan_bundle.pack(stack_dir, KEY)
    assert plan_bundle.unpack(bundle, tmp_path / "same" / "todo-api-prod", KEY)
    monkeypatch.setenv(variable, "b" * 40 if variable == "GITHUB_SHA" else "1002")
    with pytest.raises(CliError, match="at this commit and run"):
        plan_bundle.unpack(bundle, tmp_path / "other" / "todo-api-prod", KEY)
