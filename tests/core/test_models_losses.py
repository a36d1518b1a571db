"""Models and losses: values against NumPy closed forms, gradients against central finite
differences (float64), and the shape rules.

Finite differences use h = 1e-6 on a float64 function: truncation error ~h^2 and rounding
~1e-16/h leave ~1e-9 relative error, so gradients are compared at rtol 1e-6 (atol 1e-8).
Values against NumPy use ``tolerance(be)``: 1e-10 relative in float64, 1e-5 in float32.
Functions are evaluated through ``be.jit`` so JAX's float64 runs in its x64 scope.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import make_backend, tolerance

from gradbridge.core import data, losses, models, tree
from gradbridge.core.backend import Backend, InvalidArgument

RNG = np.random.default_rng(11)
X = RNG.standard_normal((6, 3))
LOGITS = np.array([-800.0, -3.0, -0.5, 0.0, 0.0, 0.7, 4.0, 800.0])
LABELS = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0])


def numerical_grad(f: Callable[[dict], float], params: dict, h: float = 1e-6) -> dict:
    """Central differences of a scalar function of a dict of float64 arrays."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            up, down = ({**params, name: value.copy()} for _ in range(2))
            up[name][index] += h
            down[name][index] -= h
            g[index] = (f(up) - f(down)) / (2 * h)
        grads[name] = g
    return grads


def check_gradient(be: Backend, objective: Callable, params: dict, *args: np.ndarray) -> None:
    """be.grad of ``objective(params, *args)`` equals central finite differences."""
    on_backend = [be.from_host(a) for a in args]
    value = be.jit(objective)
    gradient = be.jit(be.grad(objective))

    def f(p: dict) -> float:
        return float(be.to_numpy(value(tree.to_backend(be, p), *on_backend)))

    analytic = tree.to_numpy(be, gradient(tree.to_backend(be, params), *on_backend))
    expected = numerical_grad(f, params)
    for name in params:
        np.testing.assert_allclose(analytic[name], expected[name], rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------ losses


def test_mse_value(backend: Backend) -> None:
    pred, target = RNG.standard_normal(7), RNG.standard_normal(7)
    got = be_call(backend, losses.mse, pred, target)
    assert got == pytest.approx(np.mean((pred - target) ** 2), rel=tolerance(backend))


def test_binary_cross_entropy_value_is_stable(backend: Backend) -> None:
    """Against the textbook -y log p - (1-y) log(1-p), computed in log space by np.logaddexp
    (log(1 + e^z) without overflow), including |z| = 800 where exp overflows float64."""
    got = be_call(backend, losses.binary_cross_entropy, LOGITS, LABELS)
    per_sample = np.logaddexp(0.0, LOGITS) - LOGITS * LABELS
    assert np.isfinite(got)
    assert got == pytest.approx(np.mean(per_sample), rel=tolerance(backend))


def test_softmax_cross_entropy_value(backend: Backend) -> None:
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0], [0.5, 0.5, 0.5]])
    target = data.one_hot([2, 1, 0], 3)
    got = be_call(backend, losses.softmax_cross_entropy, logits, target)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert got == pytest.approx(-np.mean(np.sum(target * log_softmax, axis=1)),
                                rel=tolerance(backend))


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_loss_gradients_match_finite_differences(backend64: Backend, loss: str) -> None:
    logits = np.array([-3.0, -0.5, 0.0, 0.0, 0.7, 4.0])  # includes z = 0 exactly
    target = LABELS[1:7]
    check_gradient(backend64, lambda p, t: losses.get(loss)(backend64, p["z"], t),
                   {"z": logits}, target)


def test_bce_gradient_at_zero_logits_is_half_minus_label(backend64: Backend) -> None:
    """At z = 0 the gradient is (sigmoid(0) - y) / n exactly: where logistic regression starts."""
    target = np.array([0.0, 1.0, 1.0, 0.0])
    grad = backend64.jit(backend64.grad(
        lambda z, t: losses.binary_cross_entropy(backend64, z, t)))
    got = backend64.to_numpy(grad(backend64.from_host(np.zeros(4)), backend64.from_host(target)))
    np.testing.assert_allclose(got, (0.5 - target) / 4, rtol=1e-12)


def test_softmax_cross_entropy_gradient(backend64: Backend) -> None:
    target = data.one_hot([0, 2, 1, 1], 3)
    check_gradient(backend64, lambda p, t: losses.softmax_cross_entropy(backend64, p["z"], t),
                   {"z": RNG.standard_normal((4, 3))}, target)


def test_losses_refuse_mismatched_shapes() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match=r"prediction has shape \(4, 1\), target has "
                                              r"shape \(4,\)"):
        losses.mse(be, np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(InvalidArgument, match=r"logits of shape \(n, classes\)"):
        losses.softmax_cross_entropy(be, np.zeros(4), np.zeros(4))


def test_unknown_loss_lists_the_known_ones() -> None:
    with pytest.raises(InvalidArgument,
                       match="known losses: mse, binary_cross_entropy, softmax_cross_entropy"):
        losses.get("l1")


# ------------------------------------------------------------------------ models


def test_model_values_against_numpy(backend: Backend) -> None:
    params = models.init_mlp([3, 4, 2], seed=2)
    expected = np.tanh(X @ params["W0"] + params["b0"]) @ params["W1"] + params["b1"]
    got = be_model(backend, models.mlp("tanh"), params, X)
    np.testing.assert_allclose(got, expected, rtol=tolerance(backend), atol=tolerance(backend))
    w, b = np.array([0.5, -1.0, 2.0]), np.array(0.25)
    got = be_model(backend, models.linear, {"w": w, "b": b}, X)
    np.testing.assert_allclose(got, X @ w + b, rtol=tolerance(backend), atol=tolerance(backend))
    got = be_model(backend, models.linear1d, {"w": np.array(3.0), "b": np.array(2.0)}, X[:, 0])
    np.testing.assert_allclose(got, 3 * X[:, 0] + 2, rtol=tolerance(backend))


@pytest.mark.parametrize("name", ["linear1d", "linear", "logistic", "mlp_tanh", "mlp_relu"])
def test_model_gradients_match_finite_differences(backend64: Backend, name: str) -> None:
    y = RNG.standard_normal(6)
    model: Callable
    if name == "linear1d":
        model, params, x = models.linear1d, {"w": np.array(0.3), "b": np.array(-0.2)}, X[:, 0]
    elif name in ("linear", "logistic"):
        model = getattr(models, name)
        params, x = {"w": np.array([0.1, -0.4, 0.3]), "b": np.array(0.2)}, X
    else:
        model, x = models.mlp(name.removeprefix("mlp_")), X
        params = models.init_mlp([3, 5, 1], seed=3)
        params["b0"] = params["b0"] + 0.1  # keep relu's kinks away from the probes
    check_gradient(backend64, lambda p, xs, ys: losses.mse(backend64, model(backend64, p, xs),
                                                           ys), params, x, y)


def test_mlp_shapes_and_validation() -> None:
    be = make_backend("numpy", "float64")
    params = models.init_mlp([3, 8, 8, 1], seed=0)
    assert {k: v.shape for k, v in params.items()} == {
        "W0": (3, 8), "b0": (8,), "W1": (8, 8), "b1": (8,), "W2": (8, 1), "b2": (1,)}
    assert np.asarray(models.mlp("relu")(be, params, X)).shape == (6,)  # width-1 output is 1-D
    assert np.asarray(models.mlp()(be, models.init_mlp([3, 2]), X)).shape == (6, 2)
    with pytest.raises(InvalidArgument, match="tanh, relu"):
        models.mlp("sigmoid")
    with pytest.raises(InvalidArgument, match="W0, b0, W1, b1"):
        models.mlp()(be, {"W0": np.zeros((3, 1))}, X)
    with pytest.raises(InvalidArgument, match="sizes"):
        models.init_mlp([3])
    # Same seed, same start: initial parameters are drawn on the host.
    again = models.init_mlp([3, 8, 8, 1], seed=0)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert {k: v.shape for k, v in models.init_linear(4).items()} == {"w": (4,), "b": ()}


def be_call(be: Backend, loss: Callable, *arrays: np.ndarray) -> float:
    """A loss evaluated on ``be`` (through jit), returned as a host float."""
    fn = be.jit(lambda *a: loss(be, *a))
    return float(be.to_numpy(fn(*[be.from_host(a) for a in arrays])))


def be_model(be: Backend, model: Callable, params: dict, x: np.ndarray) -> np.ndarray:
    fn = be.jit(lambda p, xs: model(be, p, xs))
    return np.asarray(be.to_numpy(fn(tree.to_backend(be, params), be.from_host(x))))
