"""Gzip on every core: how buildtool compresses layers before it uploads them.

The engine's own push compresses each layer on one core, which for a
TensorFlow layer (about 1.3 GB) is most of a push. python-zlib-ng's threaded
writer compresses independent blocks in parallel into one standard gzip
member (like pigz): any gzip reader, the engine's and containerd's included,
reads it. The output is deterministic (gzip mtime 0), so the same layer gives
the same blob digest every time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from zlib_ng import gzip_ng_threaded, zlib_ng

DEFAULT_LEVEL = 6  # the engine's level: blobs as small as its own push makes them
_CHUNK = 1 << 20
_REPORT_EVERY = 15.0  # seconds between progress reports on one long layer

Progress = Callable[[str], None]
CompressError = zlib_ng.error  # what the compressor raises when it fails


@dataclass(frozen=True)
class CompressedLayer:
    diff_id: str  # sha256 of the uncompressed tar, as the image config lists it
    digest: str  # sha256 of the gzip blob, as the manifest lists it
    size: int  # bytes of the gzip blob
    path: Path


class _HashingFile:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()

    def close(self) -> None:  # the caller closes the target
        pass


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gzip_layer(source: IO[bytes], folder: Path, *, level: int = DEFAULT_LEVEL, threads: int | None = None,
               label: str = "layer", progress: Progress | None = None) -> CompressedLayer:
    """Compress the tar read from `source` into a new file in `folder`, hashing both sides on the way."""
    diff = hashlib.sha256()
    fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tar.gz", dir=folder)
    started = last = time.monotonic()
    read = 0
    with os.fdopen(fd, "wb") as raw:
        counted = _HashingFile(raw)
        with gzip_ng_threaded.open(counted, "wb", compresslevel=level, threads=threads or cpu_threads()) as gz:
            while chunk := source.read(_CHUNK):
                diff.update(chunk)
                gz.write(chunk)
                read += len(chunk)
                now = time.monotonic()
                if progress and now - last >= _REPORT_EVERY:
                    progress(f"  ... compressing {label}: {read / 1e6:.0f} MB read  [{now - started:.0f}s]")
                    last = now
    return CompressedLayer(f"sha256:{diff.hexdigest()}", f"sha256:{counted.sha256.hexdigest()}", counted.size,
                           Path(name))
