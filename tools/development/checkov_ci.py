"""checkov over the synthesized stacks in CI, with the stacks' checked-in skip list.

    python -m tools.development.checkov_ci cdktf.out/stacks

The skip list (stacks/checkov-skips.yaml: check id -> design reason) is owned by the stacks and
guarded by tests/stacks/test_checkov.py; this runs the same checks on a pull request, so a new
failure shows up in the PR. Exits with checkov's exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from tools.cli import CliError, run_cli

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
SKIPS = ROOT / "stacks" / "checkov-skips.yaml"


def skipped_checks(path: Path = SKIPS) -> list[str]:
    try:
        skips = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    if not isinstance(skips, dict):
        raise CliError(f"{path} must map check ids to reasons")
    return sorted(skips)


def checkov_command(directory: Path, skips: list[str]) -> list[str]:
    command = [str(CHECKOV), "--directory", str(directory), "--framework", "terraform_json",
               "--skip-download", "--compact", "--quiet"]
    return command + (["--skip-check", ",".join(skips)] if skips else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="cdktf.out/stacks")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        raise CliError(f"{args.directory} not found: run `make synth` first")
    return subprocess.run(checkov_command(args.directory, skipped_checks()), check=False).returncode


if __name__ == "__main__":
    sys.exit(run_cli(main))
