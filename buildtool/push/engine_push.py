"""Pushing through the engine (`docker push`): for images whose new layers are small.

The engine knows which layers the registry already holds (it pushed or pulled
them) and sends only the new ones, without exporting the image first. It
compresses on one core, which only matters for large layers (push/skopeo.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .job import PushJob

if TYPE_CHECKING:  # the engine's SDK loads only when an image is built
    from ..engine import Engine


class EnginePusher:
    name = "engine"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def push(self, job: PushJob) -> str:
        # The engine pushes a local name: the staging one, removed again once pushed (the image stays).
        self.engine.tag(job.image_id, job.staging.repository, str(job.staging.tag))
        try:
            return self.engine.push(
                job.staging.repository, str(job.staging.tag), token=job.token, progress=job.progress
            )
        finally:
            self.engine.untag(f"{job.staging.repository}:{job.staging.tag}")
