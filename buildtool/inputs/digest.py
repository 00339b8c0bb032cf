"""Inputs digest: sha256 over a canonical encoding of everything that decides an image.

Inputs are the context's files (after `.dockerignore`, with the executable bit),
the build args, the target platform and the base image's digest. The registry
and repository names are not inputs: the same sources give the same tag anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..reference import content_digest
from .context import BuildContext, sha256_text

ENCODING_VERSION = "buildtool-inputs/1"
TAG_PREFIX = "in-"
# The image config label that records the inputs digest an image was built from: what ties its bytes to its tag.
LABEL_INPUTS = "buildtool.inputs-digest"
_SHORT = 16


@dataclass(frozen=True)
class Inputs:
    """An image's inputs digest and, per input, a short fingerprint used to explain changes."""

    digest: str  # "sha256:<64 hex>"
    items: Mapping[str, str]

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.digest.removeprefix("sha256:")[:_SHORT]


def compute(
    context: BuildContext,
    build_args: Mapping[str, str],
    platform: str,
    base_digest: str,
    step_imports: list[str] | None = None,
) -> Inputs:
    """Digest of one image's inputs.

    `base_digest` is the base image's digest (or, for a project image, its inputs digest).

    `step_imports`, for an image serving a step, are the modules the step's function imports: the
    image is checked against them before its push, so a new import makes a new tag (and a new check).
    """
    items: dict[str, str] = {"platform": platform, "base": base_digest}
    if step_imports is not None:
        items["imports"] = ",".join(sorted(step_imports))
    for entry in context.entries:
        if entry.kind == "file":
            items[f"file:{entry.path}"] = ("x:" if entry.executable else "") + entry.sha256
        elif entry.kind == "link":
            items[f"link:{entry.path}"] = entry.sha256
        else:
            items[f"dir:{entry.path}"] = ""
    for name, value in build_args.items():
        items[f"arg:{name}"] = sha256_text(value)
    # Sorted keys, no whitespace, ASCII only: one byte string per set of inputs.
    encoded = json.dumps(
        {"encoding": ENCODING_VERSION, "dockerfile": context.dockerfile, "inputs": items},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()
    return Inputs(digest=content_digest(encoded), items=_shorten(items))


def _shorten(items: Mapping[str, str]) -> dict[str, str]:
    """Fingerprints short enough for a readable lock file; the full digest decides, these explain."""
    out = {}
    for key, value in sorted(items.items()):
        if key in ("platform", "base", "imports") or not value:
            out[key] = value
        else:
            prefix = "x:" if value.startswith("x:") else ""
            out[key] = prefix + value.removeprefix("x:")[:_SHORT]
    return out


def explain(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Human-readable differences between two input fingerprints, e.g. 'file requirements.txt changed'."""
    reasons = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        kind, _, name = key.partition(":")
        label = {"file": "file", "link": "link", "dir": "folder", "arg": "build arg"}.get(kind, kind)
        subject = f"{label} {name}" if name else label
        if key == "base":
            reasons.append(f"base image changed ({before} -> {after})")
        elif key == "imports":
            reasons.append(f"modules the step imports changed ({before or '-'} -> {after or '-'})")
        elif key == "platform":
            reasons.append(f"platform changed ({before} -> {after})")
        elif before is None:
            reasons.append(f"{subject} added")
        elif after is None:
            reasons.append(f"{subject} removed")
        elif kind == "file" and before.removeprefix("x:") == after.removeprefix("x:"):
            reasons.append(f"{subject} executable bit changed")
        else:
            reasons.append(f"{subject} changed")
    return reasons
