"""How a built image reaches the registry: a Pusher, chosen once per image, and the checked promotion.

- `pusher_for` picks the way: skopeo for images with large new layers (it
  compresses on every core), the engine's own push for small ones (it sends
  just the new layers, with no export of the whole image) and as the fallback.
- `publish_checked` pushes the image under a staging reference while the
  image is checked; only once the check passed is the manifest copied under
  its digest tag (`sha256-<hex>`, which keeps the pin safe from garbage
  collection) and its content tag (`in-<hex>`), and the staging manifest
  deleted (`promote`: another runner's build of the same inputs is adopted). A failed check, an error or a
  signal deletes the staging manifest and never writes the content tag.
- Every error of the stages is rewrapped here, once, as a PushError naming
  the image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..config import Config
from ..errors import BuildtoolError, EngineError, Interrupted, PushError, RegistryError
from ..inputs.digest import LABEL_INPUTS
from ..reference import Reference, hold_tag
from . import skopeo
from .engine_push import EnginePusher
from .job import PushJob, staging_reference
from .registry import Manifest, Registry
from .skopeo import SkopeoPusher

if TYPE_CHECKING:  # the engine's SDK loads only when an image is built
    from ..engine import Engine

__all__ = [
    "LayerCount",
    "Pusher",
    "PushJob",
    "count_layers",
    "pusher_for",
    "publish_checked",
    "staging_reference",
    "SKOPEO_FROM_BYTES",
]

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
        return f"{self.new_bytes / 1e6:.0f} MB in {self.lacking} layer(s) the registry lacks; it holds the other {held}"


def count_layers(
    diff_ids: tuple[str, ...],
    sizes: Mapping[str, int] | None,
    total: int,
    base_bytes: int,
    held: Set[str],
    engine_knows: Set[str],
) -> LayerCount:
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
    source = engine.endpoint.skopeo_source()
    if config.push_with == "skopeo":
        if executable is None:
            raise PushError(
                f'{config.path}: push_with = "skopeo" but skopeo is not installed; install it '
                '(apt-get install skopeo) or set push_with = "auto"'
            )
        if source is None:
            raise PushError(
                f'{config.path}: push_with = "skopeo" but skopeo cannot read the engine at '
                f"{engine.endpoint.url} (it needs unix://, or tcp:// with DOCKER_TLS_VERIFY and "
                'DOCKER_CERT_PATH); set push_with = "auto" to let the engine push'
            )
        return SkopeoPusher(executable, source)
    if executable is not None and source is not None and max(new_bytes, engine_bytes) >= SKOPEO_FROM_BYTES:
        return SkopeoPusher(executable, source)
    if source is None and max(new_bytes, engine_bytes) >= SKOPEO_FROM_BYTES:
        log.info("skopeo cannot read the engine at %s: the engine pushes", engine.endpoint.url)
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
            pinned = promote(registry, job, staged.digest, staged.manifest)
    except BaseException as exc:
        raise _rewrap(exc, job) from None
    finally:
        _discard(registry, job, staged.digest)
    return pinned


def _same_inputs(registry: Registry, theirs: Reference, ours: Reference) -> bool:
    """Whether two images carry the same inputs-digest label (two builds of the same inputs)."""
    label = registry.labels(ours).get(LABEL_INPUTS)
    return label is not None and registry.labels(theirs).get(LABEL_INPUTS) == label


def promote(registry: Registry, job: PushJob, digest: str, manifest: Manifest) -> str:
    """Make the checked image `digest` pullable under its content tag; return the digest the map is to pin.

    Its digest-named tag (`sha256-<hex>`) is written first: whatever later happens to the content tag, the pinned
    manifest stays tagged, so a registry's garbage collection keeps it. When the content tag already serves another
    build of the same inputs (another runner got there first), that image is adopted and the tag stays; when it
    serves other inputs (moved by hand or by an attacker), it is replaced. After the write the tag is read again: a
    runner that wrote it meanwhile wins the tag, and this image stays pinned under its own digest tag.
    """
    ours = job.target.with_digest(digest)
    registry.copy(job.staging.with_digest(digest), Reference(ours.domain, ours.path, hold_tag(digest)), manifest)
    current = registry.digest(job.target)
    if current is not None and current != digest:
        theirs = job.target.with_digest(current)
        if _same_inputs(registry, theirs, ours):
            registry.add_tag(theirs, hold_tag(current))
            job.progress(
                f"adopt {theirs}: the registry already holds a build of the same inputs under "
                f"{job.target.tag}; this build stays under {hold_tag(digest)[:19]}…"
            )
            return current
        job.progress(f"replace {current} under {job.target.tag}: it was built from other inputs")
    registry.put_manifest(job.target, manifest)
    served = registry.digest(job.target)
    if served is None:
        raise PushError(f"push of {job.target} stored {digest} but the registry serves nothing under the tag")
    if served != digest:
        try:
            same = _same_inputs(registry, job.target.with_digest(served), ours)
        except RegistryError:  # not even readable: nothing to compare
            same = False
        if not same:
            raise PushError(
                f"push of {job.target} reported {digest} but the registry serves {served}, not an image "
                "of the same inputs: someone else moves this tag"
            )
        job.progress(
            f"{job.target.tag} now serves {served}, written by another build meanwhile; this map pins "
            f"{digest}, kept under its tag {hold_tag(digest)[:19]}…"
        )
    return digest
