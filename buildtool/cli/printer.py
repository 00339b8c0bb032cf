"""How the CLI renders the progress events library code reports (util/progress.py)."""

from __future__ import annotations

import sys
import threading
import time


class Printer:
    """Thread-safe progress lines on stderr, stamped with the time since start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def __call__(self, image: str, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self._start:6.1f}s] {image:<9} {message}", file=sys.stderr, flush=True)
