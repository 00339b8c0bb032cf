"""The push's temporary folder: one per run, removed at the end, and by the next run if this one was killed.

skopeo spools the engine's export of an image there (TMPDIR), and the
authfile it reads lives in a private folder inside it (`private_folder`). A run holds an exclusive lock on the
folder's `.lock` for its lifetime; a folder whose lock can be taken belongs to
a run that is gone (killed, the machine rebooted) and is removed at the start
of the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import PushError

log = logging.getLogger(__name__)

PREFIX = "buildtool-push-"
_LOCK = ".lock"
_UNLOCKED_GRACE = 60.0  # seconds a folder may lack its lock file: the moment between mkdtemp and the lock


def clean_stale(root: Path | None = None) -> list[Path]:
    """Remove the push folders under `root` (the temporary folder) that no live run holds; return them."""
    removed = []
    for folder in sorted((root or Path(tempfile.gettempdir())).glob(PREFIX + "*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            fd = os.open(folder / _LOCK, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            if time.time() - folder.stat().st_mtime < _UNLOCKED_GRACE:
                continue  # being created right now
        except OSError:
            continue
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run holds it
            finally:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a run that did not finish", folder)
        removed.append(folder)
    return removed


def private_folder(path: Path) -> Path:
    """`path` as a folder only this user can enter (0700), created if missing; refused if anyone else could."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PushError(f"{path} is not a private folder of this user (0700): remove it and run again")
    return path


@contextlib.contextmanager
def work_folder(root: Path | None = None) -> Iterator[Path]:
    """A fresh, locked folder for this build's push files; removed when the block ends, however it ends."""
    clean_stale(root)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
