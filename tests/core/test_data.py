"""Host-side data: CSV loading (and each way a CSV can be wrong), validation, seeded draws."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradbridge.core import data
from gradbridge.core.backend import InvalidArgument


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", ["x1,x2,target\n", ""], ids=["header", "no-header"])
def test_load_csv(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, header + "1,2,3\n\n4.5, -5e-1 ,6\n7,8,9\n")
    x, y = data.load_csv(path)
    np.testing.assert_array_equal(x, [[1, 2], [4.5, -0.5], [7, 8]])
    np.testing.assert_array_equal(y, [3, 6, 9])
    assert x.dtype == y.dtype == np.float64


@pytest.mark.parametrize(("text", "message"), [
    ("a,b,y\n1,2,3\n4,5\n", "line 3: found 2 column(s), expected 3"),
    ("1,2,3\n4,5,6,7\n", "line 2: found 4 column(s), expected 3"),
    ("a,b,y\n1,2,3\n4,five,6\n", "line 3, column 2 (b): 'five' is not a number"),
    ("1,2\n3,x\n", "line 2, column 2: 'x' is not a number"),
    ("a,b,y\n1,nan,3\n", "line 2, column 2 (b): 'nan' is not a finite number"),
    ("1,2\n3,inf\n", "line 2, column 2: 'inf' is not a finite number"),
    ("", "has no data rows"),
    ("x,y\n", "has no data rows"),
    ("1\n2\n", "line 1: found 1 column"),
])
def test_bad_csv_names_the_place(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        data.load_csv(write(tmp_path, text))


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot read .*missing\.csv"):
        data.load_csv(tmp_path / "missing.csv")


def test_check_xy() -> None:
    x, y = data.check_xy([[1, 2], [3, 4]], [5, 6])
    assert x.dtype == np.float64 and y.shape == (2,)
    with pytest.raises(InvalidArgument, match=re.escape("x has shape (3, 2), y has shape (2,)")):
        data.check_xy(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(InvalidArgument, match=re.escape("y contains inf at index 1")):
        data.check_xy([1.0, 2.0], [0.0, np.inf])
    with pytest.raises(InvalidArgument, match="x contains nan at index \\(1, 0\\)"):
        data.check_xy([[1.0], [np.nan]], [0.0, 1.0])
    with pytest.raises(InvalidArgument, match="rectangular"):
        data.check_xy([[1.0], [2.0, 3.0]], [0.0, 1.0])
    with pytest.raises(InvalidArgument, match="empty"):
        data.check_xy(np.zeros((0, 2)), np.zeros(0))


def test_check_xy_converts_to_the_dtype_asked_once() -> None:
    """Arrays already in the dtype asked for come back as they are (no copy); others are
    converted straight to it (float32 data are never widened to float64 on the way)."""
    x32, y32 = np.arange(6, dtype=np.float32).reshape(3, 2), np.ones(3, dtype=np.float32)
    x, y = data.check_xy(x32, y32, dtype="float32")
    assert x is x32 and y is y32
    x, y = data.check_xy(x32, [1, 2, 3], dtype="float64")
    assert x.dtype == y.dtype == np.float64
    np.testing.assert_array_equal(x, x32)  # float32 -> float64 is exact
    x, _ = data.check_xy(np.array([0.1, 1e-3]), [0.0, 1.0], dtype="float32")
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.array([0.1, 1e-3]).astype(np.float32))
    # NaN is found in float32 data too, with its position; and so is an overflow to inf.
    with pytest.raises(InvalidArgument, match=re.escape("x contains nan at index 1 (2 non-")):
        data.check_xy(np.array([1.0, np.nan, np.nan], dtype=np.float32), [0, 0, 0],
                      dtype="float32")
    with pytest.raises(InvalidArgument,
                       match=re.escape("y has 1e+300 at index 0, beyond the range of float32")):
        data.check_xy([1.0], [1e300], dtype="float32")


@pytest.mark.parametrize("size", [0, -1, 11, 2.5, True])
def test_batch_size_bounds(size: object) -> None:
    with pytest.raises(InvalidArgument, match=re.escape("from 1 to 10")):
        data.check_batch_size(size, 10)  # type: ignore[arg-type]


def test_batch_size_accepts_none_and_range() -> None:
    assert data.check_batch_size(None, 10) is None
    assert [data.check_batch_size(k, 10) for k in (1, 10)] == [1, 10]


def test_epoch_order_is_a_seeded_permutation() -> None:
    order = data.epoch_order(20, seed=3, epoch=4)
    assert sorted(order.tolist()) == list(range(20))
    np.testing.assert_array_equal(order, np.random.default_rng([3, 4]).permutation(20))
    assert not np.array_equal(order, data.epoch_order(20, seed=3, epoch=5))


def test_generators_are_seeded() -> None:
    x, y = data.make_linear(500, [2.0, -1.0], 0.5, noise=0.1, seed=1)
    x_again, _ = data.make_linear(500, [2.0, -1.0], 0.5, noise=0.1, seed=1)
    np.testing.assert_array_equal(x, x_again)
    # The noise is small, so least squares recovers the parameters the data were made with.
    solution = np.linalg.lstsq(np.column_stack([x, np.ones(500)]), y, rcond=None)[0]
    np.testing.assert_allclose(solution, [2.0, -1.0, 0.5], atol=0.03)
    x, labels = data.make_binary(400, [3.0], 0.0, seed=2)
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert np.mean((x[:, 0] > 0) == (labels == 1)) > 0.75


def test_one_hot() -> None:
    np.testing.assert_array_equal(data.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(InvalidArgument, match="integers from 0 to 2"):
        data.one_hot([3], 3)
    with pytest.raises(InvalidArgument, match="integer labels"):
        data.one_hot(np.array([0.5]), 3)


@pytest.mark.parametrize("n", [1, 20, data.SHUFFLE_IN_PLACE_MIN - 1, data.SHUFFLE_IN_PLACE_MIN,
                               data.SHUFFLE_IN_PLACE_MIN + 12_345])
def test_epoch_order_is_numpys_permutation_in_aligned_int32(n: int) -> None:
    """Below and above the size where the order is shuffled in place, the same permutation as
    NumPy's own, in int32; from that size on it starts on a HOST_ALIGNMENT boundary."""
    order = data.epoch_order(n, seed=5, epoch=2)
    np.testing.assert_array_equal(order, np.random.default_rng([5, 2]).permutation(n))
    assert order.dtype == np.int32 and order.flags.c_contiguous
    if n >= data.SHUFFLE_IN_PLACE_MIN:
        assert order.ctypes.data % data.HOST_ALIGNMENT == 0


def test_index_dtype_widens_past_int32() -> None:
    assert data.index_dtype(2**31 - 1) == np.int32
    assert data.index_dtype(2**31) == np.int64


@pytest.mark.parametrize(("shape", "dtype"), [(1, "int32"), (7, "float32"), ((3, 5), "float64")])
def test_aligned_empty_has_the_shape_dtype_and_alignment(shape: Any, dtype: str) -> None:
    array = data.aligned_empty(shape, dtype)
    assert array.shape == ((shape,) if isinstance(shape, int) else shape)
    assert array.dtype == np.dtype(dtype) and array.flags.c_contiguous and array.flags.writeable
    assert array.ctypes.data % data.HOST_ALIGNMENT == 0
