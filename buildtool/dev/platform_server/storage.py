"""Where the server keeps what it is sent: ``<data>/<file_type>/<uid>`` and ``<data>/model_metadata/<uid>.json``.

A uid is a single safe file name; a file appears only once it is complete (written beside its destination,
then renamed).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeGuard

from ...errors import PlatformError
from ...util import fsutil

logger = logging.getLogger(__name__)

# file_type -> {Kind}, written out from the protocol page on its own (not taken
# from the client), so that a mistake in either table shows in the tests.
FILE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "original_dataset": "OriginalDataset",
        "training_dataset": "TrainingDataset",
        "preprocessing_pipeline": "PreprocessingPipeline",
        "preprocessing_logs": "PreprocessingLogs",
        "preprocessing_image": "PreprocessingImage",
        "training_pipeline": "TrainingPipeline",
        "training_logs": "TrainingLogs",
        "training_image": "TrainingImage",
        "model": "Model",
    }
)
FILE_TYPES: Mapping[str, str] = MappingProxyType({kind: file_type for file_type, kind in FILE_KINDS.items()})

# Matched with fullmatch: `$` would let a trailing newline through.
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
UID_RULE = "1 to 200 letters, digits, '.', '_' and '-', starting with a letter or digit"
METADATA_DIR = "model_metadata"
MAX_SEED_SAMPLES = 100_000  # ~120 MB of float32: a dev dataset, not a memory bomb
CHUNK_BYTES = 256 * 1024


def stored_path(data_dir: Path, file_type: str, uid: str) -> Path:
    """Where the server keeps file `uid` of `file_type` under `data_dir`."""
    if file_type not in FILE_KINDS:
        raise PlatformError(f"unknown file_type {file_type!r}; valid: {', '.join(FILE_KINDS)}")
    if not is_valid_uid(uid):
        raise PlatformError(f"uid {uid!r} is not valid: use {UID_RULE}")
    return Path(data_dir) / file_type / uid


def is_valid_uid(uid: object) -> TypeGuard[str]:
    """True for a uid the server stores: a single safe file name."""
    return isinstance(uid, str) and _UID.fullmatch(uid) is not None


def write_accuracy(data_dir: Path, uid: str, value: float) -> None:
    """Record model `uid`'s accuracy (replacing an earlier one, atomically)."""
    path = data_dir / METADATA_DIR / f"{uid}.json"
    record = json.dumps({"model_uid": uid, "model_accuracy": value}, sort_keys=True) + "\n"
    with fsutil.atomic_file(path) as out:
        out.write(record.encode())


def seed_dataset(data_dir: Path | str, uid: str, zip_path: Path | str) -> Path:
    """Store the training dataset `zip_path` as uid `uid`; return where it went."""
    dest = stored_path(Path(data_dir), "training_dataset", uid)
    try:
        with fsutil.atomic_file(dest) as out, Path(zip_path).open("rb") as source:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
    except OSError as exc:
        raise PlatformError(f"cannot store training dataset {uid!r} in {dest}: {exc.strerror or exc}") from exc
    logger.info("seeded training_dataset %r from %s", uid, zip_path)
    return dest


def seed_generated_dataset(data_dir: Path | str, uid: str, *, samples: int, format: str) -> Path:  # noqa: A002
    """Generate a learnable training dataset of `samples` samples and store it as `uid`."""
    from .. import dataset

    stored_path(Path(data_dir), "training_dataset", uid)  # refuse a bad uid before generating anything
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SEED_SAMPLES:
        raise PlatformError(f"--samples {samples!r}: give a whole number from 1 to {MAX_SEED_SAMPLES}")
    with tempfile.TemporaryDirectory() as tmp:
        zipped = dataset.write_training_dataset(Path(tmp) / "training_dataset.zip", samples=samples, format=format)
        return seed_dataset(data_dir, uid, zipped)
