"""Pushing through the engine (`docker push`): for images whose new layers are small.

The engine knows which layers the registry already holds (it pushed or pulled
them) and sends only the new ones, without exporting the image first. It
compresses on one core, which only matters for large layers (push/skopeo.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import PushError
from .job import PushJob

if TYPE_CHECKING:  # the engine's SDK loads only when an image is built
    from ..engine import Engine


# A registry's passing failure, as the engine words it: a 5xx or 429 answer. The registry can answer 500 to two
# pushes committing the same layer at once (two runners building the same inputs); a push sent again finds the
# layers already there. skopeo retries such answers itself (--retry-times).
_PASSING = re.compile(r"unexpected HTTP status: (?:429|5\d\d)\b")
WAITS = (0.5, 1.0, 2.0)  # seconds before each push sent again


class EnginePusher:
    name = "engine"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def push(self, job: PushJob) -> str:
        for wait in WAITS:
            try:
                return self._push_once(job)
            except PushError as exc:
                if not _PASSING.search(str(exc)):
                    raise
                job.progress(f"push: the registry failed for now ({exc}); sending it again in {wait:.1f}s")
                job.token.pause(wait)
        return self._push_once(job)

    def _push_once(self, job: PushJob) -> str:
        # The engine pushes a local name: the staging one, removed again once pushed (the image stays).
        self.engine.tag(job.image_id, job.staging.repository, str(job.staging.tag))
        try:
            return self.engine.push(
                job.staging.repository, str(job.staging.tag), token=job.token, progress=job.progress
            )
        finally:
            self.engine.untag(f"{job.staging.repository}:{job.staging.tag}")
