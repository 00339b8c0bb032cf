"""Images on the engine: built, inspected, pulled, tagged and pushed.

The SDK reports build and push failures inside its streams (with HTTP 200), so
every chunk is read and `error`/`errorDetail` turns into an exception here.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from docker.auth import get_config_header, resolve_repository_name
from docker.errors import ImageNotFound, NotFound

from .. import reference
from ..errors import BuildError, EngineError, PushError
from ..interrupt import Token
from ..util.progress import Progress
from .build_context import BuildSources, context_tar
from .connection import Connection
from .layers import LayerInfo, layer_sizes
from .streams import TRANSPORT_ERRORS, cut, no_progress, stream_error

log = logging.getLogger(__name__)

_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
TAIL_LINES = 25  # lines of a failed build's log shown in its error
_HEARTBEAT = 15.0  # seconds between progress lines during one long Dockerfile step


class _BuildLog:
    """A classic build's stream as it is read: the step reached, the log's tail, progress lines, the image ID."""

    def __init__(self, tag: str, progress: Progress) -> None:
        self.tag, self.progress = tag, progress
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.step = "(before the first step)"
        self.image_id: str | None = None
        self.started = self.last_report = time.monotonic()

    def read(self, chunk: Mapping[str, Any]) -> None:
        detail = stream_error(chunk)
        if detail is not None:
            log_tail = "\n".join(self.tail)
            raise BuildError(
                f"build of {self.tag} failed at {self.step}: {detail}\n--- last lines of the build log ---\n{log_tail}"
            )
        for line in chunk.get("stream", "").splitlines():
            line = line.rstrip()
            if line:
                self._line(line)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = aux["ID"]

    def _line(self, line: str) -> None:
        self.tail.append(line)
        match = _STEP.match(line)
        now = time.monotonic()
        if match:
            self.step = f"step {match[1]} ({match[2]})"
            self.progress(f"step {match[1]}: {match[2][:100]}  [{now - self.started:.0f}s]")
            self.last_report = now
        elif now - self.last_report >= _HEARTBEAT:
            # A long RUN step: show that it moves, with its latest output line.
            self.progress(f"  ... {line[:100]}  [{now - self.started:.0f}s]")
            self.last_report = now


class ImageMethods(Connection):
    """The engine's images: `build` (the classic builder), inspection, `pull`, tags and `push`."""

    def build(
        self,
        context: BuildSources,
        tag: str,
        build_args: Mapping[str, str],
        *,
        platform: str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: list[str] | None = None,
        progress: Progress = no_progress,
    ) -> str:
        """Build `context` as `tag`; return the image ID. BuildError names the failing step and shows the log's tail."""
        build_log = _BuildLog(tag, progress)
        try:
            stream = self.api.build(
                fileobj=context_tar(context),
                custom_context=True,
                dockerfile=context.dockerfile,
                tag=tag,
                buildargs=dict(build_args),
                platform=platform,
                labels=dict(labels or {}),
                cache_from=cache_from or None,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                build_log.read(chunk)
        except TRANSPORT_ERRORS as exc:
            raise BuildError(f"build of {tag} failed at {build_log.step}: {exc.__class__.__name__}: {exc}") from None
        # Older engines announce the ID only in the stream: fall back to what the tag points at.
        image_id = build_log.image_id or self.image_id(tag)
        if not image_id:
            raise BuildError(f"build of {tag} ended without an image; last lines:\n" + "\n".join(build_log.tail))
        return image_id

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self.api.inspect_image(ref)["Id"])
        except ImageNotFound:
            return None
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {ref}: {exc.__class__.__name__}: {exc}") from None

    def pull(self, ref: str, *, progress: Progress = no_progress) -> None:
        """Pull `ref` (a pinned `repo[:tag]@sha256:...` is pulled by its digest); EngineError on any error chunk."""
        parsed = reference.parse(ref)
        started = time.monotonic()
        try:
            for chunk in self.api.pull(
                parsed.repository, tag=parsed.digest or parsed.tag or "latest", stream=True, decode=True
            ):
                detail = stream_error(chunk)
                if detail is not None:
                    raise EngineError(f"pull of {ref} failed: {detail}")
                if chunk.get("status") == "Pull complete":
                    progress(f"pull: layer {chunk.get('id', '')} done  [{time.monotonic() - started:.0f}s]")
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"pull of {ref} failed: {exc.__class__.__name__}: {exc}") from None

    def size(self, image: str) -> int:
        """Bytes of the image's layers, uncompressed (its own and its base's)."""
        try:
            return int(self.api.inspect_image(image)["Size"])
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {image}: {exc.__class__.__name__}: {exc}") from None

    def layers(self, image: str) -> LayerInfo:
        """The image's layers (diff IDs, in order), their sizes where the history tells them apart, and the
        registry references the engine pushed or pulled it under (it keeps their layers' digests there)."""
        try:
            inspected = self.api.inspect_image(image)
            history = self.api.history(image)
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {image}: {exc.__class__.__name__}: {exc}") from None
        diff_ids = [str(d) for d in (inspected.get("RootFS") or {}).get("Layers") or []]
        return LayerInfo(
            tuple(diff_ids),
            layer_sizes(diff_ids, list(reversed(history))),
            tuple(str(r) for r in inspected.get("RepoDigests") or []),
            int(inspected.get("Size") or 0),
        )

    def tag(self, image: str, repository: str, tag: str) -> None:
        try:
            self.api.tag(image, repository, tag)
        except TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"the engine could not tag {image} as {repository}:{tag}: {exc.__class__.__name__}: {exc}"
            ) from None

    def untag(self, ref: str) -> None:
        """Remove the tag `ref` (never another tag, nor an image a running container uses).

        Forced: when another build moved the image's other tag away meanwhile, `ref` is its last one and the
        engine refuses a plain removal while a container (the image's check) uses it, which left the tag.
        """
        try:
            self.api.remove_image(ref, force=True, noprune=False)
        except NotFound:
            pass
        except TRANSPORT_ERRORS as exc:
            log.warning("could not remove the tag %s from the engine: %s", ref, exc)

    def push(self, repository: str, tag: str, *, token: Token, progress: Progress = no_progress) -> str:
        """Push `repository:tag`; return the manifest digest the registry reported. PushError on any error chunk.

        A cancel of `token` cuts the stream: the engine stops the push when its client goes away.
        """
        digest: str | None = None
        layers_done, started = 0, time.monotonic()
        registry, _ = resolve_repository_name(repository)
        headers = {}
        header = get_config_header(self.api, registry)
        if header:
            headers["X-Registry-Auth"] = header
        url = self.api._url("/images/{0}/push", repository)
        try:
            response = self.api._post_json(url, None, headers=headers, stream=True, params={"tag": tag})
            with token.stopping(lambda: cut(response)):
                self.api._raise_for_status(response)
                for chunk in self.api._stream_helper(response, decode=True):
                    detail = stream_error(chunk)
                    if detail is not None:
                        raise PushError(
                            f"push of {repository}:{tag} failed: {detail}; "
                            "is the registry running and are you logged in (docker login)?"
                        )
                    status = chunk.get("status", "")
                    if status in ("Pushed", "Layer already exists") or status.startswith("Mounted from"):
                        layers_done += 1
                        progress(
                            f"push: {layers_done} layer(s) done ({status.lower()} {chunk.get('id', '')})"
                            f"  [{time.monotonic() - started:.0f}s]"
                        )
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = str(aux["Digest"])
        except TRANSPORT_ERRORS as exc:
            token.raise_if_cancelled()
            # Includes a stream the engine cut mid-way (urllib3's IncompleteRead/ProtocolError).
            raise PushError(f"push of {repository}:{tag} failed: {exc.__class__.__name__}: {exc}") from None
        except (ValueError, AttributeError):
            # The cancel closed the response under the reading thread: http.client fails mid-chunk, not cleanly.
            token.raise_if_cancelled()
            raise
        token.raise_if_cancelled()
        if not digest:
            raise PushError(f"push of {repository}:{tag} ended without a digest from the registry")
        return digest
