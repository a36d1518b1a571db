"""The tutorial's three experiments on any backend: linear algebra, regression by gradient
descent, and the medical-test posterior.

The regression data keep the tutorial's legacy ``np.random.seed(42)`` draws so that its printed
numbers reproduce; they are drawn from a private ``RandomState`` so NumPy's global random state
is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradbridge.core import data, losses, models, probability
from gradbridge.core.backend import Backend
from gradbridge.core.callbacks import CallbackLike
from gradbridge.core.history import History
from gradbridge.core.train import fit

SEED: dict[str, Any] = dict(lr=0.1, epochs=50, w0=0.0, b0=0.0, log_every=10)
"""The tutorial's training settings: learning rate, epochs, starting w and b, print interval."""

TRUE_W, TRUE_B, NOISE = 3.0, 2.0, 0.5
"""The line the tutorial's data are drawn around, and the noise's standard deviation."""


def tutorial_data(n: int = 100, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``x ~ N(0, 1)`` and ``y = 3x + 2 + 0.5 * N(0, 1)``, n points each, host float64.

    ``RandomState(seed)`` draws the same numbers as ``np.random.seed(seed)`` followed by
    ``np.random.randn``: x first, then the noise, as in the tutorial.
    """
    legacy = np.random.RandomState(data.check_seed(seed))
    x = legacy.randn(data.check_count("n", n))
    y = TRUE_W * x + TRUE_B + legacy.randn(n) * NOISE
    return x, y


def run_regression(be: Backend, *, epochs: int = 50, lr: float = 0.1, n: int = 100,
                   seed: int = 42, batch_size: int | None = None,
                   callbacks: Sequence[CallbackLike] = (),
                   parallel: str | None = None) -> History:
    """Fit the tutorial's line ``w * x + b`` from w = b = 0 by gradient descent on its data."""
    x, y = tutorial_data(n, seed)
    start = {"w": float(SEED["w0"]), "b": float(SEED["b0"])}
    return fit(models.linear1d, losses.mse, start, x, y, backend=be, optimizer="sgd", lr=lr,
               epochs=epochs, batch_size=batch_size, seed=seed, callbacks=callbacks,
               parallel=parallel)


def linear_algebra(be: Backend) -> dict[str, Any]:
    """The tutorial's neuron (a dot product), its batch of three samples, and a transpose."""
    features = be.asarray([1.0, 2.0, 3.0])
    weights = be.asarray([0.5, 0.3, 0.2])
    dataset = be.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    transpose = _host(be, be.matrix_transpose(dataset))
    return {
        "dot": np.float64(_host(be, be.dot(features, weights))),
        "batch": _host(be, be.matmul(dataset, weights)),
        "transpose": transpose,
        "transpose_shape": transpose.shape,
    }


def medical_test(be: Backend) -> float:
    """P(disease | positive test) for 1% prevalence, 95% sensitivity, 5% false positives."""
    return float(_host(be, probability.posterior(be, 0.01, 0.95, 0.05)))


def _host(be: Backend, value: Any) -> np.ndarray:
    return np.asarray(be.to_numpy(value), dtype=np.float64)
