"""Stopping a child process that buildtool started (skopeo, the BuildKit CLI) when a signal or a failure ends
the work: SIGTERM first, SIGKILL shortly after."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

KILL_AFTER = 1.0  # seconds between SIGTERM and SIGKILL


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM now, SIGKILL after KILL_AFTER if it is still there; never blocks (it runs in a signal handler)."""
    if process.poll() is None:
        process.terminate()
        timer = threading.Timer(KILL_AFTER, process.kill)
        timer.daemon = True
        timer.start()
