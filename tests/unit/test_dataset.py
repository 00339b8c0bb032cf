"""The synthetic training dataset and the loader of its two layouts."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from platform_client.archive import safe_extract
from platform_client.dataset import load_training_dataset, pack_training_dataset
from platform_client.errors import DatasetError

from buildtool.dev.dataset import (
    DATASET_MEMBER,
    make_training_arrays,
    write_training_dataset,
)


def _extract(zip_path: Path, dest: Path) -> Path:
    (npy,) = safe_extract(zip_path, dest)
    assert npy.name == DATASET_MEMBER
    return npy


@pytest.mark.parametrize("fmt", ["seed", "safe"])
def test_same_seed_same_bytes(tmp_path, fmt):
    one = write_training_dataset(tmp_path / "one.zip", samples=30, seed=3, format=fmt).read_bytes()
    two = write_training_dataset(tmp_path / "two.zip", samples=30, seed=3, format=fmt).read_bytes()
    other = write_training_dataset(tmp_path / "other.zip", samples=30, seed=4, format=fmt).read_bytes()

    assert one == two
    assert one != other


def test_the_zip_holds_only_the_npy(tmp_path):
    with zipfile.ZipFile(write_training_dataset(tmp_path / "d.zip", samples=5)) as archive:
        assert archive.namelist() == [DATASET_MEMBER]


def test_seed_layout_is_object_pairs_and_needs_an_explicit_allow_pickle(tmp_path):
    npy = _extract(write_training_dataset(tmp_path / "d.zip", samples=12, seed=1), tmp_path / "out")

    raw = np.load(npy, allow_pickle=True)
    assert raw.dtype == object and raw.shape == (12, 2)
    assert raw[0][0].shape == (100, 3) and raw[0][1].shape == (3,)

    with pytest.raises(DatasetError, match="allow_pickle=True only for a file from a trusted source"):
        load_training_dataset(npy)
    x, y = load_training_dataset(npy, allow_pickle=True)
    assert x.shape == (12, 100, 3) and y.shape == (12, 3)
    assert x.dtype == np.float32 and y.dtype == np.float32


def test_safe_layout_loads_without_pickle(tmp_path):
    npy = _extract(write_training_dataset(tmp_path / "d.zip", samples=12, seed=1, format="safe"), tmp_path / "out")

    x, y = load_training_dataset(npy)
    expected_x, expected_y = make_training_arrays(12, seed=1)

    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
    assert np.load(npy, allow_pickle=False).dtype.names == ("x", "y")


@pytest.mark.parametrize("fmt", ["seed", "safe"])
def test_the_seed_training_code_reads_both_layouts(tmp_path, fmt):
    npy = _extract(write_training_dataset(tmp_path / "d.zip", samples=120, seed=2, format=fmt), tmp_path / "out")

    # As the reference pipeline's training step reads it.
    training_dataset = np.load(npy, allow_pickle=True)
    x = np.array([item[0] for item in training_dataset[:100]])
    y = np.array([item[1] for item in training_dataset[:100]])

    assert x.shape == (100, 100, 3) and y.shape == (100, 3)
    expected_x, expected_y = make_training_arrays(120, seed=2)
    np.testing.assert_array_equal(x, expected_x[:100])
    np.testing.assert_array_equal(y, expected_y[:100])


def test_the_signal_is_learnable():
    x, y = make_training_arrays(200, seed=0)
    features = np.concatenate([x[:, -1, :], x[:, -2, :], np.ones((len(x), 1), np.float32)], axis=1)
    train, test = slice(0, 150), slice(150, 200)

    weights, *_ = np.linalg.lstsq(features[train], y[train], rcond=None)
    model_mse = float(np.mean((features[test] @ weights - y[test]) ** 2))
    mean_mse = float(np.mean((y[train].mean(axis=0) - y[test]) ** 2))

    assert model_mse < 0.1 * mean_mse


def test_loader_never_unpickles_a_file_that_is_not_npy(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "training_dataset.npy"
    evil.write_bytes(pickle.dumps(_TouchOnUnpickle(marker)))

    with pytest.raises(DatasetError, match="not a NumPy .npy array"):
        load_training_dataset(evil, allow_pickle=True)

    assert not marker.exists()


class _TouchOnUnpickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 101, 3), np.float32), "is not a dataset of"),
        (np.zeros(4, dtype=[("a", "<f4")]), "expected 'x' and 'y'"),
    ],
)
def test_loader_refuses_other_arrays(tmp_path, array, match):
    path = tmp_path / "d.npy"
    np.save(path, array)
    with pytest.raises(DatasetError, match=match):
        load_training_dataset(path)


def test_pack_refuses_an_unknown_format():
    x, y = make_training_arrays(2)
    with pytest.raises(ValueError, match="unknown dataset format 'npz'; valid: seed, safe"):
        pack_training_dataset(x, y, format="npz")


def test_samples_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        make_training_arrays(0)
