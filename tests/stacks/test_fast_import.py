"""`python main.py` on the bare-parent provider import writes exactly what the plain import
path writes, prints no Node end-of-life banner, and really skips the 1,500-module __init__.
(Speed itself is measured by `python -m benchmarks.synth`, not asserted here.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.synth import differences, run_synth, snapshot_openapi

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fast-import")
    openapi = snapshot_openapi(workdir)
    return {path: run_synth(path, workdir / path, openapi) for path in ("fast", "plain")}


def test_both_import_paths_write_byte_identical_output(both_paths):
    fast, plain = both_paths["fast"].outdir, both_paths["plain"].outdir
    assert sorted(p.name for p in fast.rglob("cdk.tf.json")) == ["cdk.tf.json"] * 3
    assert differences(fast, plain) == []


def test_main_reports_each_stack_it_wrote(both_paths):
    lines = both_paths["fast"].stdout.splitlines()
    assert [line.split("/stacks/")[-1] for line in lines] == [
        "todo-api-bootstrap/cdk.tf.json",
        "todo-api-dev/cdk.tf.json",
        "todo-api-prod/cdk.tf.json",
    ]
    assert all(line.startswith("wrote ") for line in lines)


def test_synth_prints_no_node_end_of_life_banner(both_paths):
    for run in both_paths.values():
        assert "end-of-life" not in run.stderr
        assert run.stderr == ""


def test_stack_modules_import_only_the_provider_modules_they_use():
    code = (
        "import sys, stacks.todo_api_stack\n"
        "print(sum(m.startswith('cdktf_cdktf_provider_azurerm.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert int(result.stdout) < 100  # the package has ~1,500
