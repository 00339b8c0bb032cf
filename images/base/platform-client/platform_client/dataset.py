"""The training dataset's .npy formats: read either, build either.

A training dataset is a sequence of ``(x, y)`` pairs: ``x`` of shape
(100, 3), a sequence of 100 three-dimensional points, and ``y`` of shape
(3,). Two layouts of ``training_dataset.npy`` are understood:

``"seed"``
    The platform's own: an object-dtype array of shape (n, 2) whose rows hold
    the two arrays. NumPy stores it as a pickle. `load_training_dataset`
    reads it with a restricted unpickler that resolves only the globals NumPy
    needs to rebuild numeric arrays, so nothing in the file can run code.
``"safe"``
    A structured array with fields ``x`` and ``y`` (float32), see
    `safe_dtype`. It loads with ``allow_pickle=False``, and since each element
    indexes as ``item[0]``/``item[1]``, code written for the seed layout
    reads it unchanged.

Before anything is allocated, the header's shape and dtype are checked against
the bytes that follow it, so a header claiming 10^11 floats is refused, not
allocated.

numpy is imported when a function is called, not when this module is.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from .errors import DatasetError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DIMS", "FORMATS", "STEPS", "load_training_dataset", "pack_training_dataset", "safe_dtype"]

logger = logging.getLogger(__name__)

FORMATS = ("seed", "safe")
#: The shapes the pipeline's model reads: x (STEPS, DIMS), y (DIMS,).
STEPS = 100
DIMS = 3
# dtype kinds a dataset array may hold: bool, signed and unsigned integers, floats.
_NUMERIC_KINDS = "biuf"


def safe_dtype(steps: int = STEPS, dims: int = DIMS) -> np.dtype:
    """The structured dtype of the ``"safe"`` layout: fields ``x`` (steps, dims) and ``y`` (dims,)."""
    import numpy as np

    return np.dtype([("x", "<f4", (steps, dims)), ("y", "<f4", (dims,))])


def pack_training_dataset(x: np.ndarray, y: np.ndarray, *, format: str = "seed") -> np.ndarray:
    """Arrange `x` (n, steps, dims) and `y` (n, dims) as the array `format` stores."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim != 3 or y.ndim != 2 or len(x) != len(y) or x.shape[2] != y.shape[1]:
        raise ValueError(f"need x of shape (n, steps, dims) and y of shape (n, dims), got {x.shape} and {y.shape}")
    if format == "safe":
        packed = np.empty(len(x), dtype=safe_dtype(x.shape[1], x.shape[2]))
        packed["x"] = x
        packed["y"] = y
        return packed
    if format == "seed":
        pairs = np.empty((len(x), 2), dtype=object)
        for i in range(len(x)):
            pairs[i, 0] = x[i]
            pairs[i, 1] = y[i]
        return pairs
    raise ValueError(f"unknown dataset format {format!r}; valid: {', '.join(FORMATS)}")


def load_training_dataset(npy_path: str | Path, *, allow_pickle: bool = False, steps: int = STEPS,
                          dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """Load a ``training_dataset.npy``; return ``(x, y)`` as float32 arrays of shapes (n, steps, dims), (n, dims).

    Both layouts load by default and nothing in the file runs: the ``"safe"``
    layout with ``allow_pickle=False``, the platform's ``"seed"`` layout with a
    restricted unpickler (any global other than NumPy's array, dtype and scalar
    rebuilders raises `DatasetError` naming it). ``allow_pickle=True`` is full
    unpickling, for a source you trust: it also reads object arrays the
    restricted unpickler refuses, and runs whatever code the file carries.
    Anything that is not a dataset of (x, y) pairs of the expected shapes
    raises `DatasetError`.
    """
    import numpy as np

    path = Path(npy_path)
    with open(path, "rb") as handle:
        dtype, shape = _read_header(path, handle)
        if dtype.hasobject and not allow_pickle:
            data = _restricted_load(path, handle)
        else:
            if dtype.hasobject:
                logger.warning("%s: full unpickling of an object-dtype array (allow_pickle: a trusted source)", path)
            try:
                data = np.load(path, allow_pickle=dtype.hasobject)
            except (ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
                raise DatasetError(f"{path}: cannot read the array: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, np.ndarray):
        raise DatasetError(f"{path} holds a {type(data).__name__}, not a NumPy array")
    if data.shape != shape:
        raise DatasetError(f"{path}: the header says shape {shape} but the data has shape {data.shape}")
    x, y = _split(path, data, steps, dims)
    logger.info("%s: %d samples, x %s, y %s", path, len(x), x.shape[1:], y.shape[1:])
    return x, y


def _read_header(path: Path, handle: IO[bytes]) -> tuple[np.dtype, tuple[int, ...]]:
    """The header's dtype and shape, once the bytes after it can hold what it claims."""
    import numpy as np

    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    try:
        version = fmt.read_magic(handle)
        reader = readers.get(version)
        if reader is None:
            raise DatasetError(f"{path}: .npy format version {version} is not read here (1.0 and 2.0 are)")
        shape, _, dtype = reader(handle)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise DatasetError(f"{path} is not a NumPy .npy array: {exc}") from None
    count = math.prod(shape)
    header_end = handle.tell()
    left = path.stat().st_size - header_end
    handle.seek(header_end)
    # Each stored element takes at least one byte of the file (object arrays: of pickle), so a
    # header claiming more than the file holds is refused before NumPy allocates for it.
    needed = count if dtype.hasobject else count * dtype.itemsize
    if needed > left:
        raise DatasetError(f"{path}: the header claims {count} elements of {dtype} (shape {shape}), "
                           f"but only {left} bytes follow it; the file is truncated or forged")
    return dtype, shape


# -- the restricted unpickler ---------------------------------------------------------------------------------------


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: `_reconstruct` takes it, nothing can call it or set its state."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What NumPy 1.x and 2.x pickles of numeric and object arrays name, each as a checked wrapper.

    As ``torch.load(weights_only=True)`` does, names are looked up in this table and never
    imported; unlike a plain name allowlist, each callable also checks its arguments, so an
    allowed name cannot be used to allocate or build anything but what NumPy's own pickles do.
    """
    import numpy as np

    # The real rebuilders, taken from NumPy's own pickling rather than from a module path that moved.
    reconstruct = cast("Callable[..., np.ndarray]", np.empty(0).__reduce__()[0])
    scalar = cast("Callable[..., Any]", np.float64(0).__reduce__()[0])

    def rebuild_array(subtype: object, shape: object, code: object) -> np.ndarray:
        # NumPy pickles an array as _reconstruct(ndarray, (0,), b'b') and then sets its
        # state (shape, dtype, data), which checks the data against the shape.
        if subtype is not _NDARRAY or shape != (0,) or code != b"b":
            raise DatasetError(f"unexpected array reconstruction arguments ({subtype!r}, {shape!r}, {code!r})")
        return reconstruct(np.ndarray, (0,), b"b")

    def rebuild_dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
        if not isinstance(spec, str) or not isinstance(align, bool) or not isinstance(copy, bool):
            raise DatasetError(f"unexpected dtype arguments ({spec!r}, {align!r}, {copy!r})")
        try:
            dtype = np.dtype(spec, align, copy)
        except TypeError as exc:
            raise DatasetError(f"dtype {spec!r}: {exc}") from None
        if dtype.kind not in _NUMERIC_KINDS + "O":
            raise DatasetError(f"dtype {spec!r} is neither numeric nor object")
        return dtype

    def rebuild_scalar(dtype: object, *data: object) -> Any:
        if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
            raise DatasetError(f"scalar of dtype {dtype!r}: only numeric scalars are read")
        return scalar(dtype, *data)

    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): rebuild_dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # NumPy 1.x, 2.x
        allowed[(module, "_reconstruct")] = rebuild_array
        allowed[(module, "scalar")] = rebuild_scalar
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(file, encoding="ASCII")  # as numpy.load
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise DatasetError(f"refers to {module}.{name}, which an array of numbers never needs; "
                               "the file may carry code")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError("uses a persistent id, which an array of numbers never needs")


def _restricted_load(path: Path, handle: IO[bytes]) -> Any:
    """Unpickle the object array that follows the header, resolving only NumPy's array rebuilders."""
    unpickler = _RestrictedUnpickler(handle, _allowed_globals())
    try:
        return unpickler.load()
    except DatasetError as exc:
        raise DatasetError(f"{path}: refused: the object array {exc}; load it with allow_pickle "
                           "(full unpickling) only if it comes from a source you trust") from None
    except Exception as exc:  # a hostile file can make unpickling raise almost anything
        raise DatasetError(f"{path}: cannot read the object array: {type(exc).__name__}: {exc}") from None


# -- (x, y) pairs ------------------------------------------------------------------------------------------------


def _split(path: Path, data: np.ndarray, steps: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    x_shape, y_shape = (steps, dims), (dims,)
    names = data.dtype.names
    if names is not None:
        if "x" not in names or "y" not in names:
            raise DatasetError(f"{path}: structured array with fields {names}, expected 'x' and 'y'")
        if data.ndim != 1:
            raise DatasetError(f"{path}: structured array of shape {data.shape}, expected (n,)")
        x, y = data["x"], data["y"]
        if x.dtype.kind not in _NUMERIC_KINDS or y.dtype.kind not in _NUMERIC_KINDS:
            raise DatasetError(f"{path}: fields x and y are of dtypes {x.dtype} and {y.dtype}, expected numbers")
        if x.shape[1:] != x_shape or y.shape[1:] != y_shape:
            raise DatasetError(f"{path}: field x has shape {x.shape[1:]} and y {y.shape[1:]}, "
                               f"expected {x_shape} and {y_shape}")
    elif data.dtype.hasobject:
        if data.ndim != 2 or data.shape[1] != 2:
            raise DatasetError(f"{path}: object array of shape {data.shape}, expected (n, 2): (x, y) pairs")
        for i, (x_i, y_i) in enumerate(data):
            for name, value, expected in (("x", x_i, x_shape), ("y", y_i, y_shape)):
                if not isinstance(value, np.ndarray) or value.dtype.kind not in _NUMERIC_KINDS:
                    kind = f"dtype {value.dtype}" if isinstance(value, np.ndarray) else f"type {type(value).__name__}"
                    raise DatasetError(f"{path}: pair {i}: {name} is of {kind}, expected a numeric array")
                if value.shape != expected:
                    raise DatasetError(f"{path}: pair {i}: {name} has shape {value.shape}, expected {expected}")
        x = np.stack([pair[0] for pair in data])
        y = np.stack([pair[1] for pair in data])
    else:
        raise DatasetError(
            f"{path}: a {data.dtype} array of shape {data.shape} is not a dataset of (x, y) pairs "
            "(expected the 'safe' structured layout or the platform's object layout)"
        )
    if len(x) == 0:
        raise DatasetError(f"{path}: no (x, y) pairs")
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
