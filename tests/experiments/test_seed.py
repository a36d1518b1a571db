"""The tutorial reproduced on every backend: its data, its training loop, its linear algebra
and its medical test, each against a reference written here from the tutorial's text.

Tolerances: ``tolerance(be)``, 1e-10 relative in float64 (same arithmetic, other summation
order) and 1e-5 in float32 (float32 data and arithmetic over 50 epochs against float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import tolerance

from gradbridge.core.backend import Backend
from gradbridge.experiments import seed


def tutorial_loop() -> dict:
    """The tutorial's program as it is written: global legacy seed 42, its loop, float64."""
    saved = np.random.get_state()
    try:
        np.random.seed(42)
        X = np.random.randn(100)
        y = 3 * X + 2 + np.random.randn(100) * 0.5
    finally:
        np.random.set_state(saved)
    w: Any = 0.0
    b: Any = 0.0
    lr = 0.1
    losses = []
    for _ in range(50):
        y_pred = w * X + b
        losses.append(np.mean((y_pred - y) ** 2))
        dw = np.mean(2 * (y_pred - y) * X)
        db = np.mean(2 * (y_pred - y))
        w -= lr * dw
        b -= lr * db
    return {"X": X, "y": y, "losses": np.array(losses), "w": w, "b": b}


REFERENCE = tutorial_loop()


def test_tutorial_data_are_the_legacy_draws_and_leave_global_state_alone() -> None:
    state: Any = np.random.get_state()
    before = state[1].copy()
    x, y = seed.tutorial_data()
    np.testing.assert_array_equal(x, REFERENCE["X"])  # bit-for-bit: same generator, same ops
    np.testing.assert_array_equal(y, REFERENCE["y"])
    after: Any = np.random.get_state()
    np.testing.assert_array_equal(after[1], before)
    assert seed.SEED == {"lr": 0.1, "epochs": 50, "w0": 0.0, "b0": 0.0, "log_every": 10}


def test_regression_reproduces_the_tutorial(backend: Backend) -> None:
    history = seed.run_regression(backend)
    tol = tolerance(backend)
    np.testing.assert_allclose(history.losses, REFERENCE["losses"], rtol=tol)
    assert float(history.params["w"]) == pytest.approx(REFERENCE["w"], rel=tol)
    assert float(history.params["b"]) == pytest.approx(REFERENCE["b"], rel=tol)
    # The design card's check: the line the data were drawn from is recovered.
    assert abs(history.params["w"] - 3) < 0.1 and abs(history.params["b"] - 2) < 0.1


def test_linear_algebra(backend: Backend) -> None:
    values = seed.linear_algebra(backend)
    tol = tolerance(backend)
    # By hand: 1*0.5 + 2*0.3 + 3*0.2 = 1.7; rows 4..6 and 7..9 give 4.7 and 7.7.
    assert values["dot"] == pytest.approx(1.7, rel=tol)
    np.testing.assert_allclose(values["batch"], [1.7, 4.7, 7.7], rtol=tol)
    np.testing.assert_array_equal(values["transpose"], np.arange(1.0, 10.0).reshape(3, 3).T)
    assert values["transpose_shape"] == (3, 3)


def test_medical_test(backend: Backend) -> None:
    evidence = 0.95 * 0.01 + 0.05 * (1 - 0.01)
    expected = 0.95 * 0.01 / evidence  # 0.16101694915254236
    # float64: a few roundings of a 4-operation formula; float32: ~1e-7 per operation.
    tol = 1e-12 if backend.dtype == "float64" else 1e-6
    assert seed.medical_test(backend) == pytest.approx(expected, rel=tol)
