"""Push an image the engine built, compressing its new layers on every core.

`docker push` gzips each layer on one core; for the training image that is
most of a cold build. Here the engine only exports the image (`docker save`),
buildtool compresses the layers the registry lacks (compress.py), uploads them
as blobs, and writes the manifest last:

- plan_layers: which layers the registry already holds, by diff ID, from the
  base image's manifest and config (mounted across repositories, never
  re-sent, so a base's layers are stored once);
- stage: export, compress and upload the other layers and the config. Blobs
  alone are no image: nothing can pull them by tag yet, so staging runs while
  the image is still being checked;
- publish: only once the check passed, the manifest goes up under the tag.

The manifest is a Docker schema 2 manifest, as the engine's own push writes.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping

from . import compress
from ..engine import Engine
from ..errors import BuildtoolError, PushError, RegistryError
from ..reference import Reference
from .registry import DOCKER_MANIFEST, Registry

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Layer blobs a Docker schema 2 manifest can list as they are (the OCI name is the same gzip bytes).
_GZIP_LAYER_TYPES = {LAYER_GZIP: LAYER_GZIP, "application/vnd.oci.image.layer.v1.tar+gzip": LAYER_GZIP}

Progress = Callable[[str], None]
_HASH_FIRST = 512 << 20  # layers up to this size are identified before being compressed
_SPOOL_IN_MEMORY = 64 << 20  # beyond this, such a layer waits in a temporary file


class Cancelled(BuildtoolError):
    """Staging stopped because the image failed its check."""


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str = LAYER_GZIP


@dataclass(frozen=True)
class KnownLayer:
    """A layer the registry holds already: its blob, and a repository (same registry) that has it."""

    blob: Blob
    source: Reference


@dataclass(frozen=True)
class Staged:
    """Everything of an image uploaded except its manifest."""

    target: Reference  # repository and tag
    manifest: bytes
    digest: str  # sha256 of `manifest`: what the registry must answer
    compressed: int  # layers compressed and uploaded by this push
    reused: int  # layers the registry had


# -- plan: pure ---------------------------------------------------------------------------------------------------


def known_from(manifest: Mapping[str, Any], config: Mapping[str, Any], source: Reference) -> dict[str, KnownLayer]:
    """diff ID -> blob, from an image's manifest and config (gzip layers only; others are re-compressed)."""
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layers = manifest.get("layers", [])
    if len(diff_ids) != len(layers):
        return {}
    known: dict[str, KnownLayer] = {}
    for diff_id, layer in zip(diff_ids, layers):
        media_type = _GZIP_LAYER_TYPES.get(layer.get("mediaType", ""))
        if media_type and not layer.get("urls"):  # foreign layers are not in this registry
            known[diff_id] = KnownLayer(Blob(layer["digest"], int(layer["size"]), media_type), source)
    return known


def make_manifest(config: Blob, layers: Iterable[Blob]) -> bytes:
    """A Docker schema 2 image manifest (indented like the engine's)."""
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "size": config.size, "digest": config.digest},
        "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in layers],
    }
    return json.dumps(document, indent=3).encode()


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# -- execute ------------------------------------------------------------------------------------------------------


def known_layers(registry: Registry, base: Reference | None, target: Reference, platform: str) -> dict[str, KnownLayer]:
    """The layers of `base` (pinned), when it lives on the target's registry: those need no upload."""
    if base is None or base.api_host != target.api_host:
        return {}
    manifest = registry.platform_manifest(base, platform)
    config = json.loads(registry.blob(base, manifest["config"]["digest"]))
    return known_from(manifest, config, base)


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(1 << 20):
        digest.update(chunk)
        target.write(chunk)
    return f"sha256:{digest.hexdigest()}"


class _Cancellable:
    """A reader that stops, between chunks, once `cancel` is set."""

    def __init__(self, source: IO[bytes], cancel: threading.Event) -> None:
        self._source, self._cancel = source, cancel

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled("staging cancelled")
        return self._source.read(size)


@dataclass(frozen=True)
class LayerPlan:
    """An image's layers, and which of them its repository holds already (found there, or mounted)."""

    image_id: str
    target: Reference  # repository and tag
    diff_ids: tuple[str, ...]
    present: Mapping[str, Blob]

    @property
    def missing(self) -> frozenset[str]:
        return frozenset(self.diff_ids) - set(self.present)


def plan_layers(engine: Engine, registry: Registry, image_id: str, target: Reference, base: Reference | None, *,
                platform: str) -> LayerPlan:
    """Find which layers of engine image `image_id` the registry has; mount the base's into `target`'s repository."""
    try:
        diff_ids = tuple(engine.layers(image_id))
        present: dict[str, Blob] = {}
        for diff_id, known in known_layers(registry, base, target, platform).items():
            if diff_id in diff_ids and (registry.has_blob(target, known.blob.digest)
                                        or registry.mount_blob(target, known.blob.digest, known.source.path)):
                present[diff_id] = known.blob
    except RegistryError as exc:
        raise PushError(f"push of {target} failed: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:  # a base manifest or config not shaped as the spec says
        raise PushError(f"push of {target} failed: cannot read the layers of base {base}: "
                        f"{exc.__class__.__name__}: {exc}") from None
    return LayerPlan(image_id, target, diff_ids, present)


def stage(engine: Engine, registry: Registry, plan: LayerPlan, *, level: int, cancel: threading.Event,
          progress: Progress) -> Staged:
    """Upload every blob of the planned image the registry lacks; return the manifest to publish."""
    try:
        return _stage(engine, registry, plan, level=level, cancel=cancel, progress=progress)
    except RegistryError as exc:
        raise PushError(f"push of {plan.target} failed: {exc}") from None
    except (OSError, tarfile.TarError, compress.CompressError) as exc:  # a truncated export, a full temporary folder
        raise PushError(f"push of {plan.target} failed while reading the engine's export: "
                        f"{exc.__class__.__name__}: {exc}") from None


def _layer_name(member: tarfile.TarInfo) -> str | None:
    """The diff ID a member of the export names, if its name says: `blobs/sha256/<hex>` (engines from 25 on,
    an OCI layout whose layers are stored uncompressed under their diff ID). Older exports use
    `<id>/layer.tar`, whose diff ID is known only once read."""
    if member.name.startswith("blobs/sha256/"):
        return "sha256:" + member.name.removeprefix("blobs/sha256/")
    return None


def _stage(engine: Engine, registry: Registry, plan: LayerPlan, *, level: int, cancel: threading.Event,
           progress: Progress) -> Staged:
    started = time.monotonic()
    image_id, target, diff_ids = plan.image_id, plan.target, plan.diff_ids
    blobs = dict(plan.present)
    reused = len(blobs)
    wanted = set(plan.missing)
    progress(f"push: {reused} layer(s) already in the registry, {len(wanted)} to compress "
             f"(level {level}, {compress.cpu_threads()} threads)")
    config = _read_export(engine, registry, plan, blobs, wanted, level, cancel, progress)
    if config is None:
        raise PushError(f"push of {target} failed: the engine's export of {image_id} holds no config for it")
    if sha256(config) != image_id:
        raise PushError(f"push of {target} failed: the exported config of {image_id} hashes to {sha256(config)}")
    missing = [d for d in diff_ids if d not in blobs]
    if missing:
        raise PushError(f"push of {target} failed: the engine's export of {image_id} lacks layer(s) {', '.join(missing)}")
    config_blob = Blob(image_id, len(config), CONFIG_TYPE)
    if not registry.has_blob(target, image_id):
        with tempfile.NamedTemporaryFile(prefix="buildtool-config-") as file:
            file.write(config)
            file.flush()
            registry.upload_blob(target, Path(file.name), image_id)
    manifest = make_manifest(config_blob, [blobs[d] for d in diff_ids])
    progress(f"push: blobs uploaded ({len(wanted)} layer(s) compressed, {reused} reused) "
             f"in {time.monotonic() - started:.0f}s")
    return Staged(target, manifest, sha256(manifest), len(wanted), reused)


def _read_export(engine: Engine, registry: Registry, plan: LayerPlan, blobs: dict[str, Blob], wanted: set[str],
                 level: int, cancel: threading.Event, progress: Progress) -> bytes | None:
    """Read the engine's export once: keep the config, compress the wanted layers (adding them to `blobs`) and
    upload each while the next is compressed. Returns the config, None if the export has none."""
    image_hex = plan.image_id.removeprefix("sha256:")
    config_names = {image_hex + ".json", "blobs/sha256/" + image_hex}
    config: bytes | None = None
    uploads: list[Future[None]] = []
    with tempfile.TemporaryDirectory(prefix="buildtool-push-") as name:
        folder = Path(name)
        uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        try:
            with engine.export(plan.image_id) as exported, tarfile.open(fileobj=exported, mode="r|") as tar:
                for member in tar:
                    if cancel.is_set():
                        raise Cancelled("staging cancelled")
                    for done in [u for u in uploads if u.done()]:
                        done.result()  # an upload that failed stops the push now, not after every layer
                    named = _layer_name(member)
                    if member.name in config_names:
                        config = tar.extractfile(member).read()  # type: ignore[union-attr]
                    elif (member.isfile() and (named or member.name.endswith("/layer.tar")) and wanted - set(blobs)
                          and not (named and (named not in wanted or named in blobs))):
                        layer = _compress(tar, member, named, wanted, blobs, folder, level, cancel, progress)
                        if layer is not None:
                            blobs[layer.diff_id] = Blob(layer.digest, layer.size)
                            uploads.append(uploader.submit(_upload, registry, plan.target, layer, cancel, progress))
                    # Other members: a layer the registry has, a duplicate layer (a symlink), the engine's manifests.
                    if config is not None and not wanted - set(blobs):
                        break  # all that is needed is read: closing the export stops the engine's work
            for upload in uploads:
                upload.result()
        except BaseException:
            cancel.set()  # queued uploads stop; the temporary folder goes only once no upload reads it
            raise
        finally:
            uploader.shutdown(wait=True, cancel_futures=True)
    return config


def _compress(tar: tarfile.TarFile, member: tarfile.TarInfo, named: str | None, wanted: set[str],
              blobs: Mapping[str, Blob], folder: Path, level: int, cancel: threading.Event,
              progress: Progress) -> compress.CompressedLayer | None:
    """Gzip one layer of the export; None if it turns out to be one the registry has."""
    source: IO[bytes] = _Cancellable(tar.extractfile(member), cancel)  # type: ignore[arg-type]
    began = time.monotonic()
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, dir=folder) as spool:
        if named is None and member.size <= _HASH_FIRST:
            # An old-style member says which layer it is only once read: hash it before compressing.
            diff_id = _copy_hashing(source, spool)
            if diff_id not in wanted or diff_id in blobs:
                return None
            spool.seek(0)
            source = spool  # type: ignore[assignment]
        layer = compress.gzip_layer(source, folder, level=level, progress=progress,
                                    label=f"{member.size / 1e6:.0f} MB layer")
    if named is not None and layer.diff_id != named:
        layer.path.unlink()
        raise PushError(f"push failed: the engine's export holds {member.name}, whose content hashes to {layer.diff_id}")
    if layer.diff_id not in wanted or layer.diff_id in blobs:
        layer.path.unlink()  # a large layer the registry has
        return None
    progress(f"push: compressed {layer.diff_id[7:19]} {member.size / 1e6:.1f} MB -> "
             f"{layer.size / 1e6:.1f} MB in {time.monotonic() - began:.0f}s")
    return layer


def _upload(registry: Registry, target: Reference, layer: compress.CompressedLayer, cancel: threading.Event,
            progress: Progress) -> None:
    began = time.monotonic()
    try:
        if cancel.is_set():
            raise Cancelled("staging cancelled")
        if not registry.has_blob(target, layer.digest):
            registry.upload_blob(target, layer.path, layer.digest)
    finally:
        layer.path.unlink(missing_ok=True)
    progress(f"push: uploaded {layer.digest[7:19]} ({layer.size / 1e6:.1f} MB) in {time.monotonic() - began:.0f}s")


def publish(registry: Registry, staged: Staged) -> str:
    """Store the manifest under its tag: from here on the image exists. Returns its digest."""
    try:
        digest = registry.put_manifest(staged.target, staged.manifest)
    except RegistryError as exc:
        raise PushError(f"push of {staged.target} failed: {exc}") from None
    if digest is not None and digest != staged.digest:
        raise PushError(f"push of {staged.target}: the registry stored the manifest as {digest}, not {staged.digest}")
    return staged.digest  # build.py checks, with a HEAD, that the registry serves it under the tag
