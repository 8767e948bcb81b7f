"""What every recording fake shares: where the rehearsal keeps its state, and the call log.

The rehearsal (tests/github/rehearsal.py) sets REHEARSAL_DIR for act; each fake appends one
JSON line per call to $REHEARSAL_DIR/calls.jsonl and reads the scenario (what to answer) from
$REHEARSAL_DIR/scenario.json. Fakes use the standard library only (they run on the runner's
python3, whatever job calls them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["REHEARSAL_DIR"])
JOB_ENV = ("GITHUB_WORKFLOW", "GITHUB_JOB", "STACK", "ARM_CLIENT_ID", "ARM_SUBSCRIPTION_ID",
           "ARM_USE_OIDC")


def scenario() -> dict:
    return json.loads((STATE / "scenario.json").read_text())


def record(tool: str, args: list[str], **extra) -> None:
    entry = {"tool": tool, "args": args, "cwd": os.getcwd(),
             "env": {name: os.environ.get(name) for name in JOB_ENV}, **extra}
    with (STATE / "calls.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def fail(tool: str, args: list[str], message: str, code: int = 1):
    """Record the refused call, say why on stderr (like the real tool), exit non-zero."""
    record(tool, args, refused=message)
    print(f"{tool} (rehearsal fake): {message}", file=sys.stderr)
    sys.exit(code)


def option(args: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` (None when absent)."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def load_state(name: str, default):
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save_state(name: str, value) -> None:
    tmp = STATE / f".{name}.tmp.{os.getpid()}"
    tmp.write_text(json.dumps(value))
    tmp.replace(STATE / name)
