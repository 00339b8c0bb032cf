"""The local record of distribution fingerprints that passed `pip check` (see import_probe.fingerprint).

One small JSON file, `$XDG_CACHE_HOME/buildtool/pip-check.json` (or `~/.cache/buildtool/...`):
`{"version": 1, "fingerprints": [hex, ...]}`, oldest first, at most MAX_ENTRIES. It only ever lets a check skip
`pip check` for a fingerprint it lists: a file that is missing, too large, not ours, writable by others, a
symlink or in any way malformed is ignored whole, and pip check runs. Failing to write it never fails a build.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from ..util import fsutil

log = logging.getLogger(__name__)

FILE_NAME = "pip-check.json"
VERSION = 1
MAX_ENTRIES = 256
MAX_BYTES = 64 * 1024  # 256 entries take about 17 KB
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


def default_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the cache lives; None (no cache, pip check always runs) when there is no home to put it in."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return Path(xdg) / "buildtool" / FILE_NAME
    try:
        home = Path.home()
    except (KeyError, RuntimeError):
        return None
    return home / ".cache" / "buildtool" / FILE_NAME


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and FINGERPRINT_RE.fullmatch(value) is not None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; ValueError if it is not a regular file of ours that only we can write, or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_uid != os.geteuid():
            raise ValueError("owned by another user")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError("writable by others")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return data


read_own_file = _read_bytes  # for the other small caches of the same folder (builders.py)


def parse(data: bytes) -> list[str]:
    """The fingerprints of a cache file's bytes, oldest first; ValueError if anything in it is off."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or set(document) != {"version", "fingerprints"}:
        raise ValueError('not an object with exactly "version" and "fingerprints"')
    if document["version"] != VERSION or isinstance(document["version"], bool):
        raise ValueError(f"version is not {VERSION}")
    entries = document["fingerprints"]
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise ValueError(f"fingerprints is not a list of at most {MAX_ENTRIES}")
    if not all(is_fingerprint(entry) for entry in entries) or len(set(entries)) != len(entries):
        raise ValueError("fingerprints are not distinct 64-digit lowercase hex strings")
    return list(entries)


def render(entries: list[str]) -> str:
    return json.dumps({"version": VERSION, "fingerprints": entries[-MAX_ENTRIES:]}, indent=1) + "\n"


class PipCheckCache:
    """Fingerprints known to pass `pip check`, read anew on every question (another run may have added some)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()  # images are checked in parallel threads; keep their writes apart
        self._warned = False

    @classmethod
    def default(cls) -> PipCheckCache:
        """The user's cache (default_path)."""
        return cls(default_path())

    def _entries(self) -> list[str]:
        if self.path is None:
            return []
        try:
            return parse(_read_bytes(self.path))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            if not self._warned:  # once per run, not once per image
                self._warned = True
                log.warning(
                    "ignoring the pip check cache %s (%s): pip check runs in every image; a successful "
                    "check rewrites it",
                    self.path,
                    exc,
                )
            return []

    def known(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._entries())

    def record(self, fingerprint: str) -> None:
        """Add a fingerprint that just passed `pip check`; the oldest entries go beyond MAX_ENTRIES."""
        if self.path is None or not is_fingerprint(fingerprint):
            return
        with self._lock:
            entries = self._entries()
            if fingerprint in entries:
                return
            try:
                fsutil.write_atomic(self.path, render([*entries, fingerprint]))
            except OSError as exc:  # the cache only saves time: the build goes on without it
                log.warning("cannot write the pip check cache %s: %s", self.path, exc)
