"""gradbridge.testing's assertions: tolerances from the dtype, and messages that locate the worst
element. References are hand-made NumPy arrays whose differences are known exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.testing import assert_backends_agree, assert_close


def test_float64_tolerance_is_1e10_and_float32_1e5() -> None:
    one = np.array([1.0, 2.0])
    assert_close(one * (1 + 5e-11), one)  # within 1e-10 relative
    with pytest.raises(AssertionError, match=r"beyond rtol=1e-10"):
        assert_close(one * (1 + 5e-10), one)
    single = one.astype(np.float32)
    assert_close(single * np.float32(1 + 4e-6), single)
    with pytest.raises(AssertionError, match=r"beyond rtol=1e-05"):
        assert_close(single * np.float32(1 + 4e-5), single)


def test_message_names_the_worst_element_both_values_and_the_count() -> None:
    desired = np.zeros((2, 3))
    actual = desired.copy()
    actual[1, 2], actual[0, 0] = 0.5, 0.1
    with pytest.raises(AssertionError) as caught:
        assert_close(actual, desired, atol=0.01)
    message = str(caught.value)
    assert "2 of 6 elements differ" in message and "worst at index (1, 2)" in message
    assert "actual np.float64(0.5), desired np.float64(0.0)" in message


def test_shape_dtype_and_integers_are_exact() -> None:
    with pytest.raises(AssertionError, match=r"shapes differ: actual \(3,\), desired \(1, 3\)"):
        assert_close(np.zeros(3), np.zeros((1, 3)))
    with pytest.raises(AssertionError, match="dtypes differ: actual float32, desired float64"):
        assert_close(np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(AssertionError, match="1 of 3 elements differ"):
        assert_close(np.array([1, 2, 3]), np.array([1, 2, 4]))


def test_nan_matches_nan_and_inf_matches_inf() -> None:
    assert_close(np.array([np.nan, np.inf, -np.inf]), np.array([np.nan, np.inf, -np.inf]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan]), np.array([1.0]))


def test_arrays_of_every_backend_compare_with_numpy(backend64: Any) -> None:
    got = backend64.exp(backend64.from_host([0.0, 1.0]))
    assert_close(got, np.exp(np.array([0.0, 1.0])))


def _tutorial_step(be: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """One gradient-descent step of the tutorial's regression: loss and gradients."""
    xs, ys = be.from_host(x), be.from_host(y)
    loss = lambda p: be.mean((p["w"] * xs + p["b"] - ys) ** 2)  # noqa: E731
    value, grads = be.value_and_grad(loss)({"w": be.from_host(0.5), "b": be.from_host(0.0)})
    return {"loss": value, "grads": grads}


def test_backends_agree_on_the_tutorial_step() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20)
    y = 3 * x + 2
    results = assert_backends_agree(_tutorial_step, x, y, backends=["numpy", "jax", "torch"])
    residual = 0.5 * x - y  # closed form of the gradient, in float64
    np.testing.assert_allclose(results["numpy"]["grads"]["w"], np.mean(2 * residual * x),
                               rtol=1e-12)


def test_disagreement_names_the_backend_and_the_output() -> None:
    def step(be: Any) -> dict[str, Any]:
        bias = 1e-6 if be.name == "torch" else 0.0
        return {"value": be.from_host([1.0, 2.0]) + bias}

    with pytest.raises(AssertionError, match=r"torch differs from numpy in output 'value': "
                                             r"2 of 2 elements differ beyond rtol=1e-10"):
        assert_backends_agree(step, backends=["numpy", "torch"])
    with pytest.raises(AssertionError, match="needs two backends or more"):
        assert_backends_agree(step, backends=["numpy"])


def test_is_exported_as_gb_testing() -> None:
    import subprocess
    import sys

    code = "import gradbridge as gb; print(gb.testing.assert_close.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.stdout.strip() == "gradbridge.testing.assertions", done.stderr
    assert gb.testing.assert_close is assert_close
