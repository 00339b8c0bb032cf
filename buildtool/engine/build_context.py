"""A build context as the engine receives it, by docker-py's own `.dockerignore` matcher and tar writer."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Protocol

from docker.utils.build import exclude_paths, tar


class BuildSources(Protocol):
    """What a build sends: inputs.context.BuildContext has these fields. (Named here, not imported: inputs/context.py
    calls this package for docker-py's `.dockerignore` matcher.)"""

    @property
    def root(self) -> Path: ...

    @property
    def dockerfile(self) -> str: ...

    @property
    def excludes(self) -> tuple[str, ...]: ...


def context_paths(root: Path, excludes: list[str], dockerfile: str) -> set[str]:
    """The paths below `root` that a build sends, by docker-py's own `.dockerignore` matcher (no engine call)."""
    # exclude_paths appends to the list it is given: hand it a copy.
    kept: set[str] = exclude_paths(str(root), list(excludes), dockerfile=dockerfile)
    return kept


def context_tar(context: BuildSources) -> IO[bytes]:
    """The context as docker-py sends it (a temp file, rewound): the same files `context_paths` listed."""
    fileobj: IO[bytes] = tar(str(context.root), exclude=list(context.excludes), dockerfile=(context.dockerfile, None))
    fileobj.seek(0)
    return fileobj
