"""The training dataset's .npy formats: read either, build either.

A training dataset is a sequence of ``(x, y)`` pairs: ``x`` of shape
(steps, dims), a sequence of points, and ``y`` of shape (dims,). Two layouts
of ``training_dataset.npy`` are understood:

``"seed"``
    The platform's own: an object-dtype array of shape (n, 2) whose rows hold
    the two arrays. NumPy can only load it with ``allow_pickle=True``, which
    unpickles, and so can run code chosen by whoever wrote the file.
``"safe"``
    A structured array with fields ``x`` and ``y`` (float32), see
    `safe_dtype`. It loads with ``allow_pickle=False``, and since each element
    indexes as ``item[0]``/``item[1]``, code written for the seed layout
    reads it unchanged.

numpy is imported when a function is called, not when this module is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatasetError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FORMATS", "load_training_dataset", "pack_training_dataset", "safe_dtype"]

logger = logging.getLogger(__name__)

FORMATS = ("seed", "safe")


def safe_dtype(steps: int = 100, dims: int = 3) -> np.dtype:
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


def load_training_dataset(npy_path: str | Path, *, allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load a ``training_dataset.npy``; return ``(x, y)`` as float32 arrays.

    The file is first loaded with ``allow_pickle=False``, which reads the
    ``"safe"`` layout and can run nothing. The ``"seed"`` layout (object
    dtype) needs unpickling, which runs code from the file: it is loaded only
    if the caller passes ``allow_pickle=True``, declaring that the file comes
    from a source it trusts as it trusts its own code (the platform the step
    downloaded it from with its own credentials, for instance). Without that,
    such a file raises `DatasetError`. Anything else that is not a dataset of
    ``(x, y)`` pairs raises `DatasetError` too.
    """
    import numpy as np

    path = Path(npy_path)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if not _holds_objects(path):
            raise DatasetError(f"{path} is not a NumPy .npy array: {exc}") from exc
        if not allow_pickle:
            raise DatasetError(
                f"{path} holds Python objects (the platform's object-dtype layout); loading it "
                "unpickles, which runs code from the file. Pass allow_pickle=True only for a file "
                "from a trusted source, or store the dataset in the 'safe' layout."
            ) from exc
        logger.warning("%s: loading an object-dtype array with allow_pickle=True (trusted source)", path)
        data = np.load(path, allow_pickle=True)
    if not isinstance(data, np.ndarray):
        close = getattr(data, "close", None)
        if close is not None:
            close()
        raise DatasetError(f"{path} is not a .npy array (an .npz archive?)")
    x, y = _split(path, data)
    logger.info("%s: %d samples, x %s, y %s", path, len(x), x.shape[1:], y.shape[1:])
    return x, y


def _holds_objects(path: Path) -> bool:
    """Whether `path` is a .npy file whose header declares a dtype holding Python objects."""
    import numpy as np

    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    try:
        with open(path, "rb") as f:
            reader = readers.get(fmt.read_magic(f))
            if reader is None:
                return False
            _, _, dtype = reader(f)
    except (ValueError, OSError):
        return False
    return bool(dtype.hasobject)


def _split(path: Path, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    names = data.dtype.names
    if names is not None:
        if "x" not in names or "y" not in names:
            raise DatasetError(f"{path}: structured array with fields {names}, expected 'x' and 'y'")
        x, y = data["x"], data["y"]
    elif data.dtype.hasobject:
        if data.ndim == 0 or len(data) == 0:
            raise DatasetError(f"{path}: no (x, y) pairs in an object array of shape {data.shape}")
        try:
            x = np.stack([np.asarray(item[0], dtype=np.float32) for item in data])
            y = np.stack([np.asarray(item[1], dtype=np.float32) for item in data])
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read (x, y) pairs: {exc}") from exc
    else:
        raise DatasetError(
            f"{path}: a {data.dtype} array of shape {data.shape} is not a dataset of (x, y) pairs "
            "(expected the 'safe' structured layout or the platform's object layout)"
        )
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim != 3 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise DatasetError(
            f"{path}: expected x of shape (n, steps, dims) and y of shape (n, dims), got {x.shape} and {y.shape}"
        )
    return x, y
