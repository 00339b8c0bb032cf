"""A synthetic training dataset in the platform's format, for development and tests.

Each sample is a sequence of 100 three-dimensional points: per dimension a
sinusoid with its own amplitude, frequency, phase, offset and linear trend,
plus a little noise. Its target ``y`` is the next, noise-free point of the
sequence, so a model that reads the sequence beats predicting the mean (a
linear fit on the last two points already does).

The zip holds ``training_dataset.npy``. By default (``format="seed"``, also
the default of ``buildtool platform seed``) it has the platform's layout, an
object-dtype array of (x, y) pairs, so that local runs read the same kind of
file the platform serves, through the restricted unpickler the training step
loads it with by default. ``format="safe"`` writes the structured layout that
loads with ``allow_pickle=False`` and that the seed's training code also reads
unchanged; see `platform_client.dataset`.

Output is deterministic: the same seed, sizes and format give the same bytes
(with the same NumPy version), as the zip is written by
`platform_client.archive.make_zip`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from platform_client.archive import make_zip
from platform_client.dataset import pack_training_dataset

from . import DEFAULT_SAMPLES

__all__ = ["DATASET_MEMBER", "STEPS", "DIMS", "make_training_arrays", "write_training_dataset"]

logger = logging.getLogger(__name__)

DATASET_MEMBER = "training_dataset.npy"
STEPS = 100
DIMS = 3
_NOISE = 0.05


def make_training_arrays(samples: int = DEFAULT_SAMPLES, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape (samples, 100, 3) and ``y`` of shape (samples, 3), float32."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    rng = np.random.default_rng(seed)
    shape = (samples, 1, DIMS)
    amplitude = rng.uniform(0.5, 1.5, shape)
    frequency = rng.uniform(0.05, 0.25, shape)  # radians per step: periods of 25 to 125 steps
    phase = rng.uniform(0.0, 2 * np.pi, shape)
    offset = rng.normal(0.0, 1.0, shape)
    trend = rng.normal(0.0, 0.005, shape)
    t = np.arange(STEPS + 1, dtype=np.float64).reshape(1, -1, 1)
    clean = offset + trend * t + amplitude * np.sin(frequency * t + phase)
    x = clean[:, :STEPS, :] + rng.normal(0.0, _NOISE, (samples, STEPS, DIMS))
    y = clean[:, STEPS, :]
    return x.astype(np.float32), y.astype(np.float32)


def write_training_dataset(
    path: Path | str, *, samples: int = DEFAULT_SAMPLES, seed: int = 0, format: str = "seed"
) -> Path:
    """Write a zip holding ``training_dataset.npy`` to `path`; return `path`.

    `format` is ``"seed"`` (the platform's object-dtype layout) or ``"safe"``
    (a structured array that loads without pickle).
    """
    x, y = make_training_arrays(samples, seed=seed)
    array = pack_training_dataset(x, y, format=format)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="training-dataset-") as staging:
        np.save(Path(staging) / DATASET_MEMBER, array, allow_pickle=format == "seed")
        make_zip(staging, path)
    logger.info("wrote %s: %d samples, format %s, seed %d", path, samples, format, seed)
    return path
