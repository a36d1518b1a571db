"""The tutorial's linear-algebra section on every backend: a dot product, a batch, transposes.

References are the tutorial's hand arithmetic (1*0.5 + 2*0.3 + 3*0.2 = 1.7, and the same for
each row of the dataset) and NumPy's ``.T``. Tolerances: 1e-12 relative in float64 (three
products and two sums, each rounded to ~1e-16) and 1e-6 in float32 (~6e-8 per operation, and
0.3, 0.2 are not exact in binary).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradbridge.core.backend import Backend

FEATURES = [1.0, 2.0, 3.0]
WEIGHTS = [0.5, 0.3, 0.2]
DATASET = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]


def rtol(be: Backend) -> float:
    return 1e-12 if be.dtype == "float64" else 1e-6


def test_dot_product_of_the_tutorial_vectors(backend: Backend) -> None:
    out = backend.dot(backend.from_host(FEATURES), backend.from_host(WEIGHTS))
    got = np.asarray(backend.to_numpy(out))
    assert got.shape == ()
    assert str(got.dtype) == backend.dtype
    expected = 1 * 0.5 + 2 * 0.3 + 3 * 0.2
    assert float(got) == pytest.approx(expected, rel=rtol(backend))
    assert float(got) == pytest.approx(1.7, rel=rtol(backend))


def test_dataset_times_weights(backend: Backend) -> None:
    dataset, weights = backend.from_host(DATASET), backend.from_host(WEIGHTS)
    expected = [sum(x * w for x, w in zip(row, WEIGHTS, strict=True)) for row in DATASET]
    np.testing.assert_allclose(expected, [1.7, 4.7, 7.7], rtol=1e-12)  # the tutorial's numbers
    with backend.scope():  # plain operators keep the backend's precision (JAX float64)
        product = dataset @ weights
    for what, out in [("dataset @ weights", product),
                      ("matmul", backend.matmul(dataset, weights)),
                      ("dot", backend.dot(dataset, weights))]:
        got = np.asarray(backend.to_numpy(out))
        assert got.shape == (3,), what
        np.testing.assert_allclose(got, expected, rtol=rtol(backend), err_msg=what)


@pytest.mark.parametrize("rows", [DATASET, DATASET[:2]], ids=["3x3", "2x3"])
def test_transpose(backend: Backend, rows: list[list[float]]) -> None:
    reference = np.asarray(rows).T
    got = np.asarray(backend.to_numpy(backend.matrix_transpose(backend.from_host(rows))))
    assert got.shape == reference.shape  # (3, 3) -> (3, 3); (2, 3) -> (3, 2)
    np.testing.assert_array_equal(got, reference)  # moving numbers: exact in any dtype
