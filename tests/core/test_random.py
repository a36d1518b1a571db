"""gb.random: the same seed gives every backend NumPy's own numbers (rounded in float32)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.core.backend import Backend


@pytest.mark.parametrize("draw", ["normal", "uniform"])
def test_floating_draws_are_numpys_numbers_in_the_backend_dtype(backend: Backend,
                                                                 draw: str) -> None:
    be: Any = backend
    got = be.to_numpy(getattr(gb.random, draw)(be, 7, (3, 4)))
    expected = getattr(np.random.default_rng(7), draw)(size=(3, 4))
    assert got.dtype == np.dtype(be.dtype)
    np.testing.assert_array_equal(got, expected.astype(be.dtype))  # exactly, after rounding


def test_integer_draws_and_permutations_are_int64(backend: Backend) -> None:
    be: Any = backend
    ints = be.to_numpy(gb.random.integers(be, 3, 0, 10, 5))
    order = be.to_numpy(gb.random.permutation(be, 3, 6))
    np.testing.assert_array_equal(ints, np.random.default_rng(3).integers(0, 10, 5))
    np.testing.assert_array_equal(order, np.random.default_rng(3).permutation(6))
    assert ints.dtype == np.int64 and order.dtype == np.int64


def test_a_generator_advances_like_numpys(backend: Backend) -> None:
    be: Any = backend
    rng, reference = np.random.default_rng(11), np.random.default_rng(11)
    first, second = gb.random.normal(be, rng, 2), gb.random.normal(be, rng, 2)
    np.testing.assert_array_equal(be.to_numpy(first), reference.normal(size=2).astype(be.dtype))
    np.testing.assert_array_equal(be.to_numpy(second), reference.normal(size=2).astype(be.dtype))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "seed"])
def test_a_bad_seed_is_invalid_argument(bad: Any) -> None:
    with pytest.raises(gb.InvalidArgument, match="rng="):
        gb.random.generator(bad)
