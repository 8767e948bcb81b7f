"""What every tool CLI here shares: one-line errors, JSON input, atomic output files."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def interrupt_on_sigterm() -> None:
    """SIGTERM (what `timeout`, CI runners and `kill` send) raises KeyboardInterrupt("stopped by
    signal SIGTERM") as Ctrl-C does, so `finally` blocks and fixtures stop what they started;
    by default the process would end on the spot."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def run_cli(main: Callable[[], int]) -> int:
    try:
        return main()
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def poll_until(probe: Callable[[], T | None], what: str, timeout: float, every: float,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> T:
    """Call `probe` until it returns something (not None), `every` seconds; a CliError saying
    that `what` did not happen within `timeout` seconds otherwise. `probe` may raise to stop."""
    started = clock()
    while True:
        found = probe()
        if found is not None:
            return found
        if clock() - started >= timeout:
            raise CliError(f"{what} did not happen within {timeout:.0f} s")
        sleep(every)


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise CliError(f"{what} {path} is not JSON: {error.msg} (line {error.lineno})") from None


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file next to `path`, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
