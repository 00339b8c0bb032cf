"""An image's layers as the engine describes them: diff IDs, paired with the sizes its history reports."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # an empty tar
# History entries that never make a layer: the classic builder's "#(nop)" instructions but COPY/ADD, and
# BuildKit's metadata instructions.
_METADATA = re.compile(
    r"#\(nop\)\s+(?!COPY|ADD)|^(?:ENV|LABEL|ARG|CMD|ENTRYPOINT|WORKDIR|USER|EXPOSE|VOLUME|"
    r"STOPSIGNAL|HEALTHCHECK|SHELL|ONBUILD|MAINTAINER)\b"
)


def layer_sizes(diff_ids: list[str], history: list[Mapping[str, Any]]) -> dict[str, int] | None:
    """Diff ID -> bytes, pairing the layers with the history (oldest first), which the engine reports without
    saying which entries made a layer. Pairs the entries that may make one (not metadata), or else those with
    bytes; None when neither count matches the layers."""
    size = [int(entry.get("Size") or 0) for entry in history]
    maybe = [n for n, entry in enumerate(history) if size[n] > 0 or not _METADATA.search(str(entry.get("CreatedBy")))]
    if len(maybe) == len(diff_ids):
        return {d: size[n] for d, n in zip(diff_ids, maybe, strict=True)}
    with_bytes = [n for n in range(len(history)) if size[n] > 0]
    for layers in (diff_ids, [d for d in diff_ids if d != EMPTY_LAYER]):
        if len(with_bytes) == len(layers):
            found = dict.fromkeys(diff_ids, 0)
            found.update({d: size[n] for d, n in zip(layers, with_bytes, strict=True)})
            return found
    return None


@dataclass(frozen=True)
class LayerInfo:
    diff_ids: tuple[str, ...]
    sizes: dict[str, int] | None  # diff ID -> uncompressed bytes; None when the history cannot be matched
    repo_digests: tuple[str, ...]
    size: int
