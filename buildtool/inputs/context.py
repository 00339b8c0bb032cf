"""What a build sends to the engine: the context's files after `.dockerignore`.

Uses docker-py's own exclusion matcher (through the engine package, the SDK's one door; its answer for a tree is
remembered by kept_paths.py) and reads `.dockerignore` the way docker-py's `build()` does, so the files hashed
here are exactly the files the engine receives.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .kept_paths import cache_path, kept_paths

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ContextEntry:
    """One path the build context sends: `kind` is file, dir or link."""

    path: str
    kind: str
    executable: bool = False
    sha256: str = ""  # file bytes, or the link target


@dataclass(frozen=True)
class BuildContext:
    root: Path
    dockerfile: str
    excludes: tuple[str, ...]
    entries: tuple[ContextEntry, ...]


def read_dockerignore(root: Path) -> list[str]:
    """Patterns of `root/.dockerignore`, filtered exactly as docker-py's build() does."""
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line != "" and line[0] != "#"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan(root: Path, dockerfile: str = "Dockerfile") -> BuildContext:
    """List and hash every path the engine would receive for a build of `root`."""
    excludes = read_dockerignore(root)
    kept = kept_paths(root, excludes, dockerfile, cache_path())
    entries = []
    for rel in sorted(kept):
        full = root / rel
        info = os.lstat(full)
        posix = Path(rel).as_posix()
        if stat.S_ISLNK(info.st_mode):
            entries.append(ContextEntry(posix, "link", sha256=sha256_text(os.readlink(full))))
        elif stat.S_ISDIR(info.st_mode):
            entries.append(ContextEntry(posix, "dir"))
        else:
            entries.append(ContextEntry(posix, "file", bool(info.st_mode & 0o111), file_sha256(full)))
    return BuildContext(root=root, dockerfile=dockerfile, excludes=tuple(excludes), entries=tuple(entries))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["BuildContext", "ContextEntry", "file_sha256", "read_dockerignore", "scan", "sha256_text"]
