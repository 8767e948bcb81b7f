"""The folders' import rules ([tool.importlinter] in pyproject.toml), checked with import-linter:
app stands alone, load tests and tools share only app/contract.py with it, arrows point one way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "stacks", "loadtests", "tools", "benchmarks")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
        check=False, timeout=120, env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root)})


def test_the_repository_keeps_every_import_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout


@pytest.fixture
def copy(tmp_path) -> Path:
    """The packages' Python files and the contracts, in a folder of their own."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=lambda _, names: [n for n in names if n == "__pycache__"
                                                 or (n.endswith(".json") and n != "openapi.json")])
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("loadtests/analysis.py", "from app import settings", "share only app.contract"),
    ("tools/delivery/smoke.py", "import loadtests.run", "tools never import load tests"),
    ("app/contract.py", "import tools.cli", "app stands alone"),
    ("stacks/naming.py", "from app import contract", "stacks stand alone"),
    ("tools/delivery/smoke.py", "import tools.operations.load_test", "tools by audience"),
    ("tools/operations/load_test.py", "import tools.development.certs", "tools by audience"),
])
def test_a_planted_import_across_a_boundary_is_caught_and_named(copy, module, planted, contract):
    path = copy / module
    path.write_text(path.read_text() + f"\n{planted}  # planted\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
    assert "Contracts: 5 kept, 1 broken." in result.stdout
