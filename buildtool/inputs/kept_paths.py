"""Which paths of a build context its `.dockerignore` keeps, remembered between runs.

docker-py's matcher decides (`engine.context_paths`), and loading the docker SDK for it costs more than all the
registry reads of a build that has nothing to build. Its answer depends on nothing but the context's tree (every
path, and whether it is a folder the matcher walks into), the patterns, the Dockerfile's name and docker-py's
version, so the answer is kept under a digest of exactly those, in a small file beside the pip check cache.
A kept answer is used only when it names paths of the tree; anything else about the file (missing, not ours,
too large, not JSON) means asking the matcher again. The files' bytes are hashed on every run either way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from ..check.pip_check_cache import MAX_BYTES, default_path, read_own_file
from ..util.fsutil import write_atomic

FILE_NAME = "context-paths.json"
KEPT = 16  # contexts remembered, the most recently asked last


def cache_path() -> Path | None:
    found = default_path()
    return found.parent / FILE_NAME if found is not None else None


def _tree(root: Path, prefix: str = "") -> list[tuple[str, bool]]:
    """Every path below `root` as docker-py's walk sees it: the path, and whether the walk may go into it (a
    folder, not a link to one)."""
    found = []
    for name in sorted(os.listdir(root / prefix if prefix else root)):
        path = prefix + name
        full = root / path
        descends = full.is_dir() and not full.is_symlink()
        found.append((path, descends))
        if descends:
            found += _tree(root, path + "/")
    return found


def _key(tree: list[tuple[str, bool]], excludes: list[str], dockerfile: str) -> str:
    try:
        version = importlib.metadata.version("docker")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    document = {"docker": version, "dockerfile": dockerfile, "excludes": excludes, "tree": tree}
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


def _read(path: Path) -> list[list[object]]:
    """The kept answers, oldest first: [key, [path, ...]] each."""
    try:
        document = json.loads(read_own_file(path).decode("utf-8"))
    except (OSError, ValueError):  # missing, not ours, too large, not JSON
        return []
    entries = document.get("contexts") if isinstance(document, dict) else None
    return [e for e in entries if isinstance(e, list) and len(e) == 2] if isinstance(entries, list) else []


def _remember(path: Path, entries: list[list[object]]) -> None:
    entries = entries[-KEPT:]
    text = json.dumps({"contexts": entries}, separators=(",", ":")) + "\n"
    while len(text.encode()) > MAX_BYTES and entries:  # the oldest go first; a too large answer is not kept
        entries = entries[1:]
        text = json.dumps({"contexts": entries}, separators=(",", ":")) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError:
        pass  # it only saves the next run the matcher


def kept_paths(root: Path, excludes: list[str], dockerfile: str, cache: Path | None) -> set[str]:
    """The paths below `root` that a build sends: docker-py's answer, from `cache` when it was asked before."""
    try:
        tree = _tree(root)
    except OSError:
        tree = None  # the matcher meets the same error and says it as it always did
    key = _key(tree, excludes, dockerfile) if tree is not None and cache is not None else None
    entries = _read(cache) if cache is not None and key is not None else []
    known = {path for path, _ in tree or []}
    for entry_key, paths in entries:
        if entry_key == key and isinstance(paths, list) and all(isinstance(p, str) and p in known for p in paths):
            return set(paths)
    from ..engine import context_paths  # the docker SDK loads only when the answer is not known

    kept = context_paths(root, excludes, dockerfile)
    if cache is not None and key is not None:
        _remember(cache, [e for e in entries if e[0] != key] + [[key, sorted(kept)]])
    return kept
