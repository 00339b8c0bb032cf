"""How a built image reaches the registry: a Pusher, chosen once per image, and the checked promotion.

- `pusher_for` picks the way: skopeo for images with large new layers (it
  compresses on every core), the engine's own push for small ones (it sends
  just the new layers, with no export of the whole image) and as the fallback.
- `publish_checked` pushes the image under a staging reference while the
  image is checked; only once the check passed is the manifest copied under
  its content tag (`in-<hex>`), the digest the registry serves for that tag
  verified, and the staging manifest deleted. A failed check, an error or a
  signal deletes the staging manifest and never writes the content tag.
- Every error of the stages is rewrapped here, once, as a PushError naming
  the image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Protocol

from ..config import Config
from ..engine import Engine
from ..errors import BuildtoolError, EngineError, Interrupted, PushError, RegistryError
from . import skopeo
from .engine_push import EnginePusher
from .job import PushJob, staging_reference
from .registry import Manifest, Registry
from .skopeo import SkopeoPusher

__all__ = ["LayerCount", "Pusher", "PushJob", "count_layers", "pusher_for", "publish_checked", "staging_reference",
           "SKOPEO_FROM_BYTES"]

log = logging.getLogger(__name__)

# New (uncompressed) layer bytes from which skopeo beats the engine's push. Below it, skopeo's fixed cost (it
# exports the whole image from the engine, base included, before sending anything) outweighs its faster
# compression: the engine was as fast or faster up to 600 MB, skopeo 2.6 times faster on the 1.36 GB training
# layer. Measured on this project's machine: bench/README.md, "Which pusher".
SKOPEO_FROM_BYTES = 1000 * 1000 * 1000
_STOP_WAIT = 1.5  # seconds a stopped push gets to end before its staging manifest is removed


class Pusher(Protocol):
    """Pushes `job.local` to `job.staging` and returns the manifest digest the registry stored."""

    name: str

    def push(self, job: PushJob) -> str: ...


@dataclass(frozen=True)
class LayerCount:
    """What one image's push must send: counted against the layers the registry already holds."""

    layers: int  # layers of the image
    lacking: int  # of them, layers the registry lacks
    new_bytes: int  # uncompressed bytes of the lacking layers
    engine_bytes: int  # what the engine's push would send: the lacking layers, and held ones it has no digest for

    def describe(self) -> str:
        held = self.layers - self.lacking
        return (f"{self.new_bytes / 1e6:.0f} MB in {self.lacking} layer(s) the registry lacks; it holds the other "
                f"{held}")


def count_layers(diff_ids: tuple[str, ...], sizes: Mapping[str, int] | None, total: int, base_bytes: int,
                 held: Set[str], engine_knows: Set[str]) -> LayerCount:
    """Count what a push sends. `held`: diff IDs the registry holds (read from images it serves); `engine_knows`:
    those of them the engine pushed or pulled itself, so that its push skips them (it keeps their digests).

    Without per-layer sizes (a history that does not match the layers), every byte above the base counts."""
    lacking = [d for d in diff_ids if d not in held]
    if sizes is None:
        new = max(total - base_bytes, 0)
        return LayerCount(len(diff_ids), len(lacking), new, new)
    new = sum(sizes.get(d, 0) for d in set(lacking))
    unknown = sum(sizes.get(d, 0) for d in set(diff_ids) if d in held and d not in engine_knows)
    return LayerCount(len(diff_ids), len(lacking), new, new + unknown)


def pusher_for(config: Config, engine: Engine, new_bytes: int, engine_bytes: int | None = None) -> Pusher:
    """The way one image is pushed, given how many bytes its new layers hold (uncompressed).

    `engine_bytes` is what the engine's push would send (default `new_bytes`): more when the registry holds
    layers the engine has no digest for (skopeo pushed them), which the engine would compress and send again."""
    engine_bytes = new_bytes if engine_bytes is None else engine_bytes
    if config.push_with == "engine" or engine.stores_images_in_containerd():
        # Asked for, or an engine keeping compressed layers (containerd image store): it pushes them as they are.
        return EnginePusher(engine)
    executable = skopeo.find()
    if config.push_with == "skopeo":
        if executable is None:
            raise PushError(f"{config.path}: push_with = \"skopeo\" but skopeo is not installed; install it "
                            "(apt-get install skopeo, or scripts/infra-up.sh) or set push_with = \"auto\"")
        return SkopeoPusher(executable)
    if executable is not None and max(new_bytes, engine_bytes) >= SKOPEO_FROM_BYTES:
        return SkopeoPusher(executable)
    if executable is None and engine_bytes >= SKOPEO_FROM_BYTES:
        log.info("skopeo is not installed: the engine pushes %s MB of layers on one core", engine_bytes // 10**6)
    return EnginePusher(engine)


def _rewrap(exc: BaseException, job: PushJob) -> BaseException:
    """The one place a stage's error becomes the push's: a PushError naming the image (a signal stays one)."""
    if isinstance(exc, (Interrupted, PushError)):
        return exc
    if isinstance(exc, (RegistryError, EngineError)):
        return PushError(f"push of {job.target} failed: {exc}")
    if isinstance(exc, BuildtoolError):
        return exc
    if isinstance(exc, OSError):
        return PushError(f"push of {job.target} failed: {exc.__class__.__name__}: {exc}")
    return exc


def _discard(registry: Registry, job: PushJob, digest: str | None) -> None:
    """Delete the staging manifest (and so its tag); a failure here is logged, never raised over the real one.

    The digest the pusher reported goes first; then whatever the staging tag still serves (a pusher that
    reported another digest than the one the registry stored must not leave the unchecked image behind).
    """
    try:
        if digest:
            registry.delete_manifest(job.staging.with_digest(digest))
        left = registry.digest(job.staging)
        if left:
            registry.delete_manifest(job.staging.with_digest(left))
    except BuildtoolError as exc:
        log.warning("could not delete the staging image %s: %s", job.staging, exc)


@dataclass
class _Staged:
    """What the push thread hands back: the digest and manifest it stored under the staging tag, or its error."""

    digest: str | None = None
    manifest: Manifest | None = None
    error: BaseException | None = None


def publish_checked(job: PushJob, pusher: Pusher, registry: Registry, check: Callable[[], None]) -> str:
    """Push while `check` runs; tag the content tag only if it passed. Returns the digest the registry serves."""
    staged = _Staged()

    def stage() -> None:
        try:
            staged.digest = pusher.push(job)
            # Read back now: another run may delete a staging manifest of the same digest before the check ends.
            staged.manifest = registry.raw_manifest(job.staging.with_digest(staged.digest))
        except BaseException as exc:  # handed to the thread that waits for it
            staged.error = exc

    worker = threading.Thread(target=stage, name=f"push-{job.name}", daemon=True)
    worker.start()
    try:
        check()
    except BaseException:
        job.token.cancel()  # stops this image's push: nothing of it may become pullable
        worker.join(_STOP_WAIT)
        _discard(registry, job, staged.digest)
        raise
    while worker.is_alive():
        worker.join(0.2)
    try:
        if staged.error is not None:
            raise _rewrap(staged.error, job)
        if staged.digest is None or staged.manifest is None:
            raise PushError(f"push of {job.target} by {pusher.name} ended without a digest")
        with job.token.publishing():  # no content tag after a signal
            registry.copy(job.staging.with_digest(staged.digest), job.target, manifest=staged.manifest)
        served = registry.digest(job.target)
        if served != staged.digest:
            raise PushError(f"push of {job.target} reported {staged.digest} but the registry serves {served}")
    except BaseException as exc:
        raise _rewrap(exc, job) from None
    finally:
        _discard(registry, job, staged.digest)
    return staged.digest
