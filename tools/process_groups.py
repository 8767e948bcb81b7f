"""Signals to a whole process group (a child started with `start_new_session=True` leads one):
shared by the tools that stop what they started and by loadtests' managed processes."""

from __future__ import annotations

import contextlib
import os


def signal_group(pgid: int, signum: int) -> None:
    """Send `signum` to every process of the group; a group already gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
