"""gb.nn against NumPy closed forms in float64 (large inputs included, where a naive formula
overflows), across backends, and gradients against central finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import tolerance

import gradbridge as gb
from gradbridge.core.backend import Backend

X = np.array([[-800.0, -30.0, -3.0, -1e-3, 0.0], [1e-3, 2.0, 30.0, 80.0, 800.0]])


def _reference(name: str, x: np.ndarray) -> np.ndarray:
    """Closed forms, evaluated in a way that is exact for these inputs (longdouble where a
    float64 intermediate would overflow)."""
    wide = x.astype(np.longdouble)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return (1 / (1 + np.exp(-wide))).astype(np.float64)
    if name == "softplus":
        return np.logaddexp(0.0, x)
    shifted = x - x.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return log_softmax if name == "log_softmax" else np.exp(log_softmax)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "softplus", "log_softmax", "softmax"])
def test_activations_match_closed_forms_without_overflow(backend: Backend, name: str) -> None:
    be: Any = backend
    x = X.astype(np.float32) if be.dtype == "float32" else X
    got = be.to_numpy(getattr(gb.nn, name)(be, be.from_host(x)))
    assert np.all(np.isfinite(got)), f"{name} overflowed: {got}"
    np.testing.assert_allclose(got, _reference(name, x.astype(np.float64)),
                               rtol=tolerance(be), atol=1e-30)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "log_softmax"])
def test_gradients_match_finite_differences(backend64: Backend, name: str) -> None:
    be: Any = backend64
    x = np.array([[-2.0, -0.5, 0.3, 1.7], [0.9, -1.1, 2.5, 0.1]])
    weights = np.random.default_rng(0).standard_normal(x.shape)

    def loss(v: Any) -> Any:
        return be.sum(getattr(gb.nn, name)(be, v) * be.from_host(weights))

    got = be.to_numpy(be.grad(loss)(be.from_host(x)))
    step, expected = 1e-6, np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        expected[index] = (float(be.to_numpy(loss(be.from_host(up))))
                           - float(be.to_numpy(loss(be.from_host(down))))) / (2 * step)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)  # central differences


def test_relu_gradient_at_zero_is_zero(backend: Backend) -> None:
    be: Any = backend
    g = be.grad(lambda v: be.sum(gb.nn.relu(be, v)))(be.from_host([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(be.to_numpy(g), [0.0, 0.0, 1.0])


def test_one_hot_is_rows_of_the_identity(backend: Backend) -> None:
    be: Any = backend
    labels = be.from_host(np.array([[2, 0], [1, 2]]))
    got = gb.nn.one_hot(be, labels, 3)
    assert str(got.dtype).endswith(be.dtype)
    np.testing.assert_array_equal(be.to_numpy(got), np.eye(3)[[[2, 0], [1, 2]]])
    with pytest.raises(gb.InvalidArgument, match="integer class labels"):
        gb.nn.one_hot(be, be.from_host([0.5]), 3)
    with pytest.raises(gb.InvalidArgument, match="num_classes=0"):
        gb.nn.one_hot(be, labels, 0)
