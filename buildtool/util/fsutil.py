"""File-system mechanics shared by every module that writes a result: atomic replacement."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _process_umask() -> int:
    """The umask, read without changing it: os.umask() would toggle it process-wide, racing other threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def readable_mode() -> int:
    """0644 less the umask: what a plain `open()` gives (mkstemp's 0600 would hide the file from others)."""
    return 0o644 & ~_process_umask()


@contextlib.contextmanager
def atomic_output(path: Path, *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temp path beside `path`; on a clean exit it replaces `path` (fsync, then rename).

    On any exception, KeyboardInterrupt included, the temp file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, readable_mode())
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """An open temp file that replaces `path` atomically when the block ends without an error."""
    with atomic_output(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_atomic(path: Path, text: str) -> bool:
    """Replace `path` with `text` atomically; False, and no write, if it already holds exactly that."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    with atomic_file(path, "w") as handle:
        handle.write(text)
    return True
