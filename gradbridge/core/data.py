"""Host-side data: seeded generation, CSV loading and validation, in NumPy.

Data and mini-batch orders are made on the host by a seeded ``numpy.random.Generator`` and only
then moved to a backend, so every backend trains on exactly the same numbers and batches.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from gradbridge.core.backend import InvalidArgument, invalid

BYTES_PER_VALUE = 24
"""Host memory one data value costs while training, estimated: the float64 original, its copy
in the backend's dtype and the loss's and gradient's temporaries (16 measured for the tutorial)."""

CSV_MEMORY_FACTOR = 12
"""Peak host memory of load_csv per byte of file (11.3 measured: text, lines, Python floats)."""

LARGE_DATA = 1e3
"""Data beyond this magnitude get 'scale the columns' as the divergence hint, not 'lower lr'."""

# ------------------------------------------------------------------------ generation


def make_linear(n: int, w: Sequence[float], b: float, *, noise: float = 0.5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape (n, len(w)) from a standard normal and ``y = x @ w + b + noise * N(0, 1)``."""
    rng = np.random.default_rng(check_seed(seed))
    check_sample_memory("n", check_count("n", n), len(w) + 1)
    x = rng.standard_normal((n, len(w)))
    y = x @ np.asarray(w, dtype=np.float64) + b + noise * rng.standard_normal(n)
    return x, y


def make_binary(n: int, w: Sequence[float], b: float, *,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-regression data: ``x`` standard normal, labels 0.0/1.0 drawn with
    P(1) = sigmoid(x @ w + b)."""
    rng = np.random.default_rng(check_seed(seed))
    check_sample_memory("n", check_count("n", n), len(w) + 1)
    x = rng.standard_normal((n, len(w)))
    p = 1.0 / (1.0 + np.exp(-(x @ np.asarray(w, dtype=np.float64) + b)))
    return x, (rng.random(n) < p).astype(np.float64)


def one_hot(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Rows of the identity: the targets softmax cross-entropy expects, shape (n, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgument(f"one_hot needs a 1-D array of integer labels, got {labels.dtype} "
                              f"with shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise invalid("labels", f"values in [{labels.min()}, {labels.max()}]",
                      f"integers from 0 to {num_classes - 1}")
    return np.eye(num_classes, dtype=np.float64)[labels]


HOST_ALIGNMENT = 64
"""Bytes to which host buffers meant for a backend are aligned: XLA's CPU client wraps such a
buffer without copying it."""

SHUFFLE_IN_PLACE_MIN = 1 << 17
"""From this many samples an epoch order is shuffled in its own aligned int32 buffer. Below it
NumPy's int64 ``permutation`` is drawn and narrowed: twice as fast there (NumPy shuffles 8-byte
items on a fast path), its int64 temporary is at most 1 MiB, and so small an order costs
nothing to copy."""


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one mini-batch epoch: the permutation ``default_rng([seed,
    epoch]).permutation(n)`` in :func:`index_dtype`.

    Each epoch's order depends only on (seed, epoch), so every backend sees the same batches and
    any epoch can be replayed without replaying the ones before it. int32 (for n < 2**31) halves
    the order's memory, as large as the data for one-feature float32 data; a large order starts
    on a HOST_ALIGNMENT boundary, so that JAX's CPU client uses it in place instead of copying it.
    """
    rng = np.random.default_rng([check_seed(seed), epoch])
    if n < SHUFFLE_IN_PLACE_MIN:
        return rng.permutation(n).astype(index_dtype(n))
    order = aligned_empty(n, index_dtype(n))
    step = SHUFFLE_IN_PLACE_MIN  # filled in slices: no int64 temporary the size of the data
    for begin in range(0, n, step):
        order[begin:begin + step] = np.arange(begin, min(n, begin + step))
    rng.shuffle(order)  # the same draws as permutation(n): shuffling is Fisher-Yates either way
    return order


def index_dtype(n: int) -> np.dtype:
    """The smallest of int32 and int64 that indexes ``n`` samples."""
    return _INT32 if n <= _INT32_MAX else _INT64


_INT32, _INT64, _INT32_MAX = np.dtype(np.int32), np.dtype(np.int64), 2**31 - 1


def aligned_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous host array whose data start at a multiple of
    HOST_ALIGNMENT bytes."""
    dtype = np.dtype(dtype)
    nbytes = math.prod((shape,) if isinstance(shape, int) else shape) * dtype.itemsize
    raw = np.empty(nbytes + HOST_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % HOST_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


# ------------------------------------------------------------------------ validation


def check_seed(seed: int) -> int:
    """Seeds are non-negative integers (what ``numpy.random.default_rng`` accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise invalid("seed", seed, "a non-negative integer")
    return int(seed)


def check_count(argument: str, value: int, minimum: int = 1) -> int:
    """An integer count such as n or epochs, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise invalid(argument, value, f"an integer >= {minimum}")
    return int(value)


def check_positive(argument: str, value: float, accepted: str = "a finite number > 0", *,
                   allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``), such as a rate or a variance."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        raise invalid(argument, value, accepted)
    return float(value)


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (``os.sysconf``), or None where it cannot say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse up front what cannot fit in physical memory, instead of a MemoryError later;
    ``what`` names the value and where it came from, ``fix`` says what to do instead."""
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise InvalidArgument(f"{what} needs about {_size(nbytes)} of memory, more than this "
                              f"machine's {_size(limit)} of physical memory; {fix}")


def check_sample_memory(argument: str, n: int, columns: int) -> None:
    """Refuse ``n`` samples of ``columns`` values (features and target) too many for memory."""
    check_memory(float(n) * columns * BYTES_PER_VALUE, f"{argument}={n} samples",
                 f"choose a smaller {argument}")


def _size(nbytes: float) -> str:
    """A byte count in B, KiB, MiB, GiB, TiB or PiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024:
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"


def largest_magnitude(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The largest absolute value in the data and where it is: ``x[:, j]``, ``x`` or ``y``."""
    found = [(0.0, "x")]
    for name, array in (("x", x), ("y", y)):
        rows = array.reshape(array.shape[0], -1)
        if not rows.size:  # no feature columns (a model of the intercept alone)
            continue
        peaks = np.maximum(rows.max(axis=0), -rows.min(axis=0))
        j = int(np.argmax(peaks))
        found.append((float(peaks[j]), f"{name}[:, {j}]" if array.ndim == 2 else name))
    return max(found)


def check_batch_size(batch_size: int | None, n: int) -> int | None:
    """``None`` (the full batch) or an integer from 1 to the number of samples."""
    if batch_size is None:
        return None
    if (isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer)
            or not 1 <= batch_size <= n):
        raise invalid("batch_size", batch_size,
                      f"an integer from 1 to {n} (the number of samples), or None for all")
    return int(batch_size)


def as_float_array(name: str, values: Any, dtype: str = "float64") -> np.ndarray:
    """``values`` as a host array of float ``dtype`` with at least one row, only finite numbers.

    An array that already has ``dtype`` is returned as it is, not copied; anything else is
    converted once. Give the dtype the data will be used in (a backend's ``dtype``), so that
    large data is neither widened on the host nor copied twice on its way to a backend.
    """
    try:
        with np.errstate(over="ignore"):  # a value too large for dtype is reported below
            array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} must be numbers in a rectangular array: {exc}") from exc
    if array.ndim == 0 or array.shape[0] == 0:
        raise InvalidArgument(f"{name} is empty (shape {array.shape}); give at least one sample")
    # min and max propagate NaN and are infinite exactly when an inf is present: a check with
    # no temporary the size of the data (a freed mask can stay resident in the C heap)
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):
        _raise_not_finite(name, array, values)
    return array


def _raise_not_finite(name: str, array: np.ndarray, values: Any) -> NoReturn:
    """Say where the first NaN or inf of ``array`` is and how many there are, or that the
    value there was finite but too large for the array's dtype."""
    bad = np.argwhere(~np.isfinite(array))
    where = tuple(int(i) for i in bad[0])
    place = where[0] if len(where) == 1 else where
    given = np.asarray(values)[where]
    if np.isfinite(given):
        raise InvalidArgument(
            f"{name} has {given} at index {place}, beyond the range of {array.dtype}; "
            "rescale the data or train in float64"
        )
    raise InvalidArgument(
        f"{name} contains {given} at index {place} ({len(bad)} non-finite value(s) in all); "
        "remove or impute NaN and inf first"
    )


def check_xy(x: Any, y: Any, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Features and targets as finite float arrays of ``dtype`` with the same number of
    samples; arrays that already have ``dtype`` are not copied (see :func:`as_float_array`)."""
    x_array, y_array = as_float_array("x", x, dtype), as_float_array("y", y, dtype)
    if x_array.shape[0] != y_array.shape[0]:
        raise InvalidArgument(
            f"x and y need the same number of samples (first axis): x has shape "
            f"{x_array.shape}, y has shape {y_array.shape}"
        )
    return x_array, y_array


# ------------------------------------------------------------------------ CSV


def load_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) and target (n,) from a CSV whose last column is the target.

    A first row made only of non-numbers is a header and is skipped; blank lines are ignored.
    Ragged rows, text in a numeric column, NaN/inf and files without data each raise
    InvalidArgument naming the line (and column).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        check_memory(size * CSV_MEMORY_FACTOR, f"{path} ({_size(size)} of CSV)",
                     "train on a smaller file (fewer rows or columns)")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path} is not a UTF-8 text file: {exc}") from exc

    reader = csv.reader(text.splitlines())
    names: list[str] | None = None
    rows: list[list[float]] = []
    for fields in reader:
        fields = [field.strip() for field in fields]
        if not any(fields):
            continue
        if names is None:
            if len(fields) < 2:
                raise InvalidArgument(
                    f"{path}, line {reader.line_num}: found 1 column; a CSV for training needs "
                    "at least one feature column and the target as the last column"
                )
            is_header = not any(map(_is_number, fields))
            names = fields if is_header else [""] * len(fields)
            if is_header:
                continue
        rows.append(_parse_row(path, reader.line_num, fields, names))
    if not rows:
        raise InvalidArgument(f"{path} has no data rows; expected numeric rows such as 'x,y'")
    table = np.asarray(rows, dtype=np.float64)
    return table[:, :-1], table[:, -1]


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _parse_row(path: Path, line: int, fields: list[str], names: list[str]) -> list[float]:
    if len(fields) != len(names):
        raise InvalidArgument(
            f"{path}, line {line}: found {len(fields)} column(s), expected {len(names)} "
            "like the first row; every row needs the same number of columns"
        )
    values = []
    for i, (field, name) in enumerate(zip(fields, names, strict=True)):
        column = f"column {i + 1}" + (f" ({name})" if name else "")
        try:
            value = float(field)
        except ValueError:
            raise InvalidArgument(
                f"{path}, line {line}, {column}: {field!r} is not a number"
            ) from None
        if not math.isfinite(value):
            raise InvalidArgument(
                f"{path}, line {line}, {column}: {field!r} is not a finite number; "
                "remove or impute NaN and inf first"
            )
        values.append(value)
    return values
