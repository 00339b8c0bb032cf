"""A compiled workflow read from its file: size-capped, strictly (no aliases, no duplicate keys), an Argo Workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import VerifyError
from ...util import yaml_io


def read_pipeline(path: Path) -> bytes:
    """The bytes of a compiled workflow (size-capped, a regular file), read once."""
    try:
        return yaml_io.read_bytes(path)
    except FileNotFoundError:
        raise VerifyError(f"{path}: not found; compile it with `buildtool compile`") from None
    except yaml_io.YamlProblem as exc:
        raise VerifyError(f"{path}: {exc}; compile it again with `buildtool compile`") from None


def load_workflow(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Read a compiled workflow strictly (yaml_io: size-capped, no aliases, no duplicate keys).

    `data`: the file's bytes when the caller already read them (submit uploads exactly what was checked).
    """
    try:
        raw = read_pipeline(path) if data is None else data
        if len(raw) > yaml_io.MAX_BYTES:
            raise yaml_io.YamlProblem(f"{len(raw)} bytes, more than the {yaml_io.MAX_BYTES} accepted")
        parsed = yaml_io.parse(yaml_io.decode(raw))
    except yaml_io.YamlProblem as exc:
        raise VerifyError(f"{path}: {exc}; compile it again with `buildtool compile`") from None
    if not isinstance(parsed, dict) or parsed.get("kind") != "Workflow":
        raise VerifyError(f"{path}: not an Argo Workflow (kind: Workflow); compile it with `buildtool compile`")
    return parsed
