"""The synthetic training dataset and the loader of its two layouts."""

from __future__ import annotations

import builtins
import copyreg
import functools
import importlib
import importlib.util
import io
import os
import pickle
import re
import shlex
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from buildtool import cli
from buildtool.dev.dataset import (
    DATASET_MEMBER,
    make_training_arrays,
    write_training_dataset,
)
from buildtool.dev.platform_server import stored_path
from platform_client.archive import safe_extract
from platform_client.dataset import load_training_dataset, pack_training_dataset
from platform_client.errors import DatasetError


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


def test_seed_layout_is_object_pairs_and_loads_by_default(tmp_path):
    npy = _extract(write_training_dataset(tmp_path / "d.zip", samples=12, seed=1), tmp_path / "out")

    raw = np.load(npy, allow_pickle=True)
    assert raw.dtype == object and raw.shape == (12, 2)
    assert raw[0][0].shape == (100, 3) and raw[0][1].shape == (3,)

    expected_x, expected_y = make_training_arrays(12, seed=1)
    for allow_pickle in (False, True):  # restricted unpickler, then full unpickling
        x, y = load_training_dataset(npy, allow_pickle=allow_pickle)
        assert x.dtype == np.float32 and y.dtype == np.float32
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)


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


# -- the platform's layout, written by NumPy 1.x and 2.x (tests/fixtures/make_seed_layout.py) ---------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture_arrays() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.spec_from_file_location("make_seed_layout", FIXTURES / "make_seed_layout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expected_arrays()


@pytest.mark.parametrize(("major", "rebuilder"), [(1, b"numpy.core.multiarray"), (2, b"numpy._core.multiarray")])
def test_numpy_1_and_2_pickles_of_the_platform_layout_load(major, rebuilder):
    path = FIXTURES / f"seed_layout_numpy{major}.npy"
    assert rebuilder in path.read_bytes()  # the file really names that NumPy's module path

    x, y = load_training_dataset(path)

    expected_x, expected_y = _fixture_arrays()
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y.astype(np.float32))


# -- hostile files: refused by the restricted unpickler, and nothing runs ----------------------------------------


class _Payload:
    """An element whose pickle is `reduce` (a callable and its arguments), as a forged dataset would carry."""

    def __init__(self, reduce: tuple) -> None:
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


class _CallablePayload(_Payload):
    """A callable whose pickle is a reduce: the callable of an outer reduce, so the two nest."""

    def __call__(self, *args: object) -> None:
        raise AssertionError("never called when pickling")


def _touch_command(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _os_system(marker: Path) -> tuple:
    return (os.system, (_touch_command(marker),))


def _popen(marker: Path) -> tuple:
    return (subprocess.Popen, (["touch", str(marker)],))


def _eval(marker: Path) -> tuple:
    return (builtins.eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",))


def _partial(marker: Path) -> tuple:
    return (functools.partial(os.system, _touch_command(marker)), ())


def _nested(marker: Path) -> tuple:
    # getattr(import_module("os"), "system")(command): a reduce whose callable is itself a reduce.
    inner = _CallablePayload((getattr, (_Payload((importlib.import_module, ("os",))), "system")))
    return (inner, (_touch_command(marker),))


def _in_dtype(marker: Path) -> tuple:
    # NumPy's own allowed rebuilder, with a payload hidden in its arguments.
    return (np.empty(0).__reduce__()[0], (np.ndarray, (0,), _Payload(_os_system(marker))))


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (_os_system, "posix.system"),
        (_popen, "subprocess.Popen"),
        (_eval, "builtins.eval"),
        (_partial, "functools.partial"),
        (_nested, "builtins.getattr"),
        (_in_dtype, "posix.system"),
    ],
    ids=["os.system", "subprocess.Popen", "builtins.eval", "functools.partial", "nested reduce", "in an argument"],
)
@pytest.mark.parametrize("where", ["x", "y"])
def test_seed_layout_carrying_code_is_refused_and_nothing_runs(tmp_path, payload, named, where):
    marker = tmp_path / "ran"
    pairs = pack_training_dataset(*make_training_arrays(4), format="seed")
    pairs[2, 0 if where == "x" else 1] = _Payload(payload(marker))
    path = tmp_path / "training_dataset.npy"
    np.save(path, pairs, allow_pickle=True)
    before = path.read_bytes()

    with pytest.raises(DatasetError) as caught:
        load_training_dataset(path)

    message = str(caught.value)
    assert f"refers to {named}, which an array of numbers never needs" in message, message
    assert message.startswith(f"{path}: refused: the object array") and "\n" not in message
    assert not marker.exists()
    assert path.read_bytes() == before


def _npy_with_pickle(body: bytes, shape: tuple[int, ...] = (1, 2)) -> bytes:
    """A .npy file: a valid object-array header, then `body` as its pickle."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + body


def _reduce_ndarray(shape: tuple) -> bytes:
    """A pickle calling numpy.ndarray(shape) directly: an allowed name used as a callable."""
    return b"\x80\x02cnumpy\nndarray\nq\x00" + pickle.dumps(shape, protocol=2)[2:-1] + b"\x85R."


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        # Allowed names used for other things than NumPy's own pickles use them for.
        (_npy_with_pickle(_reduce_ndarray((10**11,))), "TypeError: '_NdarrayType' object is not callable"),
        (
            _npy_with_pickle(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\ndtype\nK\x00K\x00tR."),
            "unexpected array reconstruction arguments",
        ),
        (_npy_with_pickle(b"\x80\x02cnumpy\ndtype\n(X\x01\x00\x00\x00VK\x00\x88tR."), "unexpected dtype arguments"),
        (_npy_with_pickle(b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R."), "neither numeric nor object"),
        (
            _npy_with_pickle(
                b"\x80\x02cnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87RK\x01\x86R."
            ),
            "only numeric scalars are read",
        ),
        (_npy_with_pickle(b"\x80\x02X\x01\x00\x00\x00xQ."), "uses a persistent id"),
        # BUILD (set state) on the ndarray stand-in: it has no state to set.
        (
            _npy_with_pickle(b"\x80\x02cnumpy\nndarray\n}X\x01\x00\x00\x00aK\x01sb."),
            "AttributeError: '_NdarrayType' object has no attribute '__dict__'",
        ),
        (_npy_with_pickle(b"\x80\x02\x82\x01."), "refers to copyreg._reconstructor"),  # EXT1 code 1, if registered
        # Not an array, or not pairs.
        (_npy_with_pickle(pickle.dumps([1, 2], protocol=2)), "holds a list, not a NumPy array"),
        (_npy_with_pickle(b"\x80\x02(", shape=(0,)), "cannot read the object array"),
    ],
    ids=[
        "ndarray called",
        "reconstruct args",
        "dtype args",
        "void dtype",
        "object scalar",
        "persistent id",
        "state of ndarray",
        "extension code",
        "a list",
        "truncated pickle",
    ],
)
def test_restricted_unpickler_refuses_what_numpy_never_writes(tmp_path, data, fragment):
    if b"\x82\x01" in data and 1 not in copyreg._inverted_registry:
        copyreg.add_extension("copyreg", "_reconstructor", 1)
        registered = True
    else:
        registered = False
    path = tmp_path / "training_dataset.npy"
    path.write_bytes(data)
    try:
        with pytest.raises(DatasetError, match=re.escape(fragment)):
            load_training_dataset(path)
    finally:
        if registered:
            copyreg.remove_extension("copyreg", "_reconstructor", 1)


def _npy_header(descr: str, shape: tuple[int, ...], version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    write(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            _npy_header("<f8", (10**11,)) + b"\0" * 64,
            "claims 100000000000 elements of float64 (shape (100000000000,)), but only 64 bytes follow it",
        ),
        (_npy_header("<f4", (10**5, 10**6), (2, 0)) + b"\0" * 64, "claims 100000000000 elements of float32"),
        (_npy_header("|O", (10**11, 2)) + b"\x80\x02.", "claims 200000000000 elements of object"),
        (_npy_header("<f4", (-1, 100, 3)) + b"\0" * 1200, "cannot read the array: ValueError"),
        (b"\x93NUMPY\x03\x00" + _npy_header("<f4", (1,))[8:], ".npy format version (3, 0) is not read here"),
        (b"PK\x03\x04" + b"\0" * 100, "is not a NumPy .npy array"),
    ],
    ids=["1e11 floats", "1e11 floats, v2 header", "1e11 objects", "negative dimension", "version 3", "a zip"],
)
def test_headers_that_the_file_cannot_back_are_refused_before_allocating(tmp_path, data, fragment):
    path = tmp_path / "training_dataset.npy"
    path.write_bytes(data)
    started = time.monotonic()
    for allow_pickle in (False, True):
        with pytest.raises(DatasetError, match=re.escape(fragment)):
            load_training_dataset(path, allow_pickle=allow_pickle)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("x", "y", "fragment"),
    [
        (np.zeros((50, 3)), np.zeros(3), "pair 1: x has shape (50, 3), expected (100, 3)"),
        (np.zeros((100, 3)), np.zeros(4), "pair 1: y has shape (4,), expected (3,)"),
        (np.zeros((100, 3)), [0.0, 0.0, 0.0], "pair 1: y is of type list, expected a numeric array"),
        (np.array([["a"] * 3] * 100), np.zeros(3), "dtype 'U1' is neither numeric nor object"),
    ],
)
def test_seed_layout_pairs_of_other_shapes_are_refused_naming_the_pair(tmp_path, x, y, fragment):
    pairs = pack_training_dataset(*make_training_arrays(3), format="seed")
    pairs[1, 0], pairs[1, 1] = x, y
    path = tmp_path / "training_dataset.npy"
    np.save(path, pairs, allow_pickle=True)
    with pytest.raises(DatasetError, match=re.escape(fragment)):
        load_training_dataset(path)


def test_object_arrays_not_of_pairs_are_refused(tmp_path):
    path = tmp_path / "training_dataset.npy"
    np.save(path, np.empty((4, 3), dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=re.escape("object array of shape (4, 3), expected (n, 2)")):
        load_training_dataset(path)


def test_safe_layout_of_other_shapes_is_refused(tmp_path):
    path = tmp_path / "training_dataset.npy"
    np.save(path, pack_training_dataset(np.zeros((2, 50, 3)), np.zeros((2, 3)), format="safe"))
    with pytest.raises(DatasetError, match=re.escape("field x has shape (50, 3) and y (3,), expected (100, 3)")):
        load_training_dataset(path)


def test_full_unpickling_does_run_the_payload_so_the_marker_proves_something(tmp_path):
    # allow_pickle=True is full unpickling, for a source you trust: the same file runs its code.
    marker = tmp_path / "ran"
    pairs = pack_training_dataset(*make_training_arrays(2), format="seed")
    pairs[1, 1] = _Payload(_os_system(marker))
    path = tmp_path / "training_dataset.npy"
    np.save(path, pairs, allow_pickle=True)

    with pytest.raises(DatasetError, match=re.escape("pair 1: y is of type int, expected a numeric array")):
        load_training_dataset(path, allow_pickle=True)
    assert marker.exists()


def test_platform_seed_writes_the_platform_layout_by_default(tmp_path, capsys):
    assert cli.main(["platform", "seed", "ds-default", "--data", str(tmp_path / "data"), "--samples", "7"]) == 0
    assert "(7 samples, seed format)" in capsys.readouterr().out
    npy = _extract(stored_path(tmp_path / "data", "training_dataset", "ds-default"), tmp_path / "out")

    assert np.load(npy, allow_pickle=True).dtype == object  # the platform's object array of pairs
    x, y = load_training_dataset(npy)  # read by the restricted unpickler, no allow_pickle
    np.testing.assert_array_equal(x, make_training_arrays(7)[0])


def test_safe_layout_of_objects_is_refused(tmp_path):
    path = tmp_path / "training_dataset.npy"
    array = np.empty(2, dtype=[("x", "O", (100, 3)), ("y", "O", (3,))])
    array["x"], array["y"] = 0.0, 0.0
    np.save(path, array, allow_pickle=True)
    with pytest.raises(DatasetError, match=re.escape("dtype 'V2424' is neither numeric nor object")):
        load_training_dataset(path)
    with pytest.raises(DatasetError, match=re.escape("fields x and y are of dtypes object and object, expected numb")):
        load_training_dataset(path, allow_pickle=True)
