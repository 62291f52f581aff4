"""Whether a process is still running: for marks and locks a process leaves behind (a build's
hold on a model, a background Prefect server) that must not outlive it."""

from __future__ import annotations

import contextlib
import os


def running(pid: int) -> bool:
    """True while `pid` runs (a child of this process is reaped first, so a finished child
    does not count as running)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's process: it exists
    return True
