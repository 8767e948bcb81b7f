"""`cdktf synth` (the CLI users know) runs `python main.py` from cdktf.json and gets both stacks."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CDKTF = REPO / "node_modules" / ".bin" / "cdktf"


@pytest.mark.skipif(not CDKTF.exists(), reason="cdktf CLI not installed (make setup)")
def test_cdktf_synth_writes_every_environment_stack_and_the_bootstrap(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "CHECKPOINT_DISABLE": "1",  # no version check / telemetry call
        "CI": "1",
    }
    result = subprocess.run(
        [str(CDKTF), "synth", "--output", str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("Generated Terraform code for the stacks: todo-api-bootstrap, todo-api-dev,"
            in result.stdout)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["stacks"]) == ["todo-api-bootstrap", "todo-api-dev", "todo-api-prod"]
    assert "end-of-life" not in result.stdout + result.stderr
