"""The Azure CLI as the operations tools call it: one command, its output, a one-line error."""

from __future__ import annotations

import subprocess

from tools.cli import CliError


def az(*args: str) -> str:
    """`az ARGS --only-show-errors`; its standard output, stripped. A failure is a CliError
    naming the command and the last line az printed on standard error."""
    command = ["az", *args, "--only-show-errors"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CliError("Azure CLI `az` not found on PATH") from None
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no message"]
        raise CliError(f"az {' '.join(args[:2])} failed (exit {result.returncode}): {detail[0]}")
    return result.stdout.strip()
