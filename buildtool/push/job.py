"""What the stages of one image's push share: one object, handed to the pusher and to the promotion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from ..interrupt import Token
from ..reference import Reference
from ..util.progress import Progress

STAGING = "staging"  # the last path component of the repository an image waits in while it is checked


@dataclass(frozen=True)
class PushJob:
    name: str  # the image's name in the configuration
    local: str  # the engine's reference of the built image (repository:in-<hex>)
    image_id: str
    target: Reference  # repository and content tag: what becomes pullable once the check passed
    staging: Reference  # repository and tag the image is pushed to while the check runs
    workdir: Path  # the run's temporary folder (push/workdir.py)
    level: int  # gzip level of new layers
    token: Token  # this image's: cancelled on a signal, or when its check fails
    progress: Progress


def staging_reference(target: Reference) -> Reference:
    """Where an image waits for its check: a repository of its own beside the target's, under an unguessable tag.

    The registry cannot delete a tag alone (only a manifest, with every tag of its repository pointing at it),
    so the staging tag lives in another repository than the content tag, and goes with its manifest.
    """
    tag = f"unchecked-{(target.tag or 'image').removeprefix('in-')[:16]}-{uuid.uuid4().hex[:8]}"
    return Reference(target.domain, f"{target.path}/{STAGING}", tag)
