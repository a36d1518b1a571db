"""The NumPy autodiff's registry, nested grad (second order, no perturbation confusion) and its
fast paths, each fast path against the textbook rule it stands for.

References: closed-form second derivatives, and central differences of first-order gradients
(step H = 1e-5 on O(1) inputs: truncation ~H**2 * |f''''| ~ 1e-10, rounding ~1e-16 / H ~ 1e-11,
so 1e-6 relative leaves room and a wrong rule is off by O(1)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.backends.numpy import array_rules, autodiff, elementwise_rules
from gradbridge.core import ops
from gradbridge.core.backend import Backend

be: Backend = gb.get_backend("numpy", device="cpu", dtype="float64")
H = 1e-5
RTOL = 1e-6
ATOL = 1e-8


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_every_differentiable_function_has_a_vjp() -> None:
    """core/ops.py's differentiable functions of the main namespace and linalg all have one."""
    wanted = {op.name for op in (*ops.MAIN, *ops.LINALG) if op.differentiable}
    assert wanted - autodiff.differentiable_names() == set()
    assert autodiff.differentiable_names() <= {op.name for op in (*ops.MAIN, *ops.LINALG)}


def test_functions_without_gradient_run_forward_inside_grad() -> None:
    """Integer, boolean and piecewise-constant results are computed on the values; the
    exceptions: full_like (a traced fill value keeps its gradient), nextafter (its gradient
    is not computed here: NotDifferentiable), from_dlpack (leaves the graph)."""
    no_gradient = {op.name for op in ops.MAIN if not op.differentiable and op.arrays}
    assert no_gradient - autodiff.CONSTANT == {"from_dlpack", "full_like", "nextafter"}


# ----------------------------------------------------------------------- second order


SECOND: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "cube": (lambda x: x**3, lambda x: 6 * x),
    "sin": (be.sin, lambda x: -np.sin(x)),
    "exp": (be.exp, np.exp),
    "tanh": (be.tanh, lambda x: -2 * np.tanh(x) / np.cosh(x) ** 2),
    "log cosh + 0.1 x^2": (lambda x: be.log(be.cosh(x)) + 0.1 * x**2,
                           lambda x: 1 / np.cosh(x) ** 2 + 0.2),
    "1 / x": (lambda x: 1 / x, lambda x: 2 / x**3),
    "sqrt": (be.sqrt, lambda x: -0.25 * x**-1.5),
}


@pytest.mark.parametrize("name", list(SECOND))
def test_grad_of_grad_is_the_second_derivative(name: str) -> None:
    f, second = SECOND[name]
    x = np.float64(1.3)
    # closed forms evaluated in float64: a few ulps apart from the autodiff's arithmetic
    np.testing.assert_allclose(be.grad(be.grad(f))(x), second(x), rtol=1e-13)


def test_third_order() -> None:
    """d^3/dx^3 sin(x) = -cos(x): three nested tapes."""
    x = np.float64(0.7)
    np.testing.assert_allclose(be.grad(be.grad(be.grad(be.sin)))(x), -np.cos(x), rtol=1e-13)


def test_no_perturbation_confusion() -> None:
    """d/dx [x * d/dy (x * y)] = d/dx x**2 = 2x, and d/dx [d/dy (x + y)] at y = 1 is 0 (a
    confused implementation, taking x for y, gets 4x and 1)."""
    x = np.float64(1.5)

    def inner_product(x: Any) -> Any:
        return x * be.grad(lambda y: x * y)(np.float64(2.0))

    np.testing.assert_allclose(be.grad(inner_product)(x), 2 * x, rtol=1e-15)
    assert be.grad(lambda x: be.grad(lambda y: x + y)(np.float64(1.0)))(x) == 0.0
    # the inner grad differentiates with respect to y only, at y = x: d/dx [2 x] = 2
    np.testing.assert_allclose(be.grad(lambda x: be.grad(lambda y: x * y * y)(x))(x),
                               2 * x + 2 * x, rtol=1e-15)


def test_values_of_an_outer_grad_are_constants_inside() -> None:
    """The inner gradient of sum(x * y) with respect to y is x itself, still differentiable."""
    x = normal(3)
    jac_sum = be.grad(lambda x: be.sum(be.grad(lambda y: be.sum(x * y))(normal(3, seed=1))
                                       * normal(3, seed=2)))(x)
    np.testing.assert_allclose(jac_sum, normal(3, seed=2), rtol=1e-15)


def hvp(f: Callable[[Any], Any], x: np.ndarray, v: np.ndarray) -> Any:
    """The Hessian of ``f`` at ``x`` times ``v``, by the gradient of grad(f) . v."""
    return be.grad(lambda x: be.sum(be.grad(f)(x) * v))(x)


def finite_difference_hvp(f: Callable[[Any], Any], x: np.ndarray, v: np.ndarray) -> Any:
    grad = be.grad(f)
    return (grad(x + H * v) - grad(x - H * v)) / (2 * H)


A = normal(4, 4, seed=3)
MODELS: dict[str, Callable[[Any], Any]] = {
    "quadratic form": lambda x: be.sum(x * (A @ x)),
    "mlp-like": lambda x: be.sum(be.tanh(A @ x) ** 2) + be.logsumexp(x * 2.0),
    "softmax cross-entropy": lambda x: -gb.nn.log_softmax(be, A @ x)[1],
    "mean squared error": lambda x: be.mean_squared_error(A @ x, normal(4, seed=4)),
    "reductions": lambda x: be.max(x * x) + be.mean(be.exp(x)) + be.prod(x + 3.0),
    "indexing": lambda x: be.sum(x[np.array([0, 2, 2])] ** 3) + be.sum(x[1:] * x[:-1]),
    "shape": lambda x: be.sum(be.reshape(be.concat([x, x**2]), (2, 4)) ** 2),
    "power": lambda x: be.sum(be.pow(x * x + 1.0, 1.5)) + be.mean(x**2),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_hessian_vector_products_match_differences_of_gradients(name: str) -> None:
    f, x, v = MODELS[name], normal(4, seed=5), normal(4, seed=6)
    np.testing.assert_allclose(hvp(f, x, v), finite_difference_hvp(f, x, v),
                               rtol=RTOL, atol=ATOL)


def test_newton_on_a_quadratic_converges_in_one_step() -> None:
    """Least squares is quadratic: one Newton step with the exact Hessian solves it
    (np.linalg.lstsq is the reference; 1e-10 for a well-conditioned 3x3 solve)."""
    design, target = normal(20, 3, seed=7), normal(20, seed=8)

    def loss(w: Any) -> Any:
        return be.mean((design @ w - target) ** 2)

    w = np.zeros(3)
    hessian = np.stack([hvp(loss, w, e) for e in np.eye(3)])
    w = w - np.linalg.solve(hessian, be.grad(loss)(w))
    np.testing.assert_allclose(w, np.linalg.lstsq(design, target, rcond=None)[0], rtol=1e-10)


# ----------------------------------------------------------- fast paths vs textbook rules


def inner_gradient(f: Callable[[Any], Any], x: np.ndarray) -> Any:
    """The gradient of ``f`` at ``x`` computed inside an outer grad: every VJP then meets the
    outer grad's tracers, so it takes the textbook rule, never the fast path."""
    seen = []

    def outer(x: Any) -> Any:
        g = be.grad(f)(x)
        seen.append(autodiff.detached(g))
        return be.sum(g)

    be.grad(outer)(x)
    return seen[0]


FAST: dict[str, tuple[Callable[[Any], Any], np.ndarray]] = {
    "scalar weight times array (inner product)": (
        lambda w: be.sum(w * normal(50, seed=1) * normal(50, seed=2)), np.float64(0.3)),
    "mean of a square (power, repeated gradient)": (lambda x: be.mean(x**2), normal(50)),
    "power 3 (power)": (lambda x: be.sum(x**3.0), normal(50)),
    "mean squared error (in place)": (
        lambda x: be.mean_squared_error(x * 2.0, normal(50, seed=1)), normal(50)),
    "mean squared error, both traced": (lambda x: be.mean_squared_error(x * 2.0, x**2),
                                        normal(50)),
    "logsumexp (in place softmax)": (lambda x: be.logsumexp(be.reshape(x, (5, 10)), axis=1)
                                     @ normal(5, seed=3), normal(50)),
    "reduction's broadcast view": (lambda x: be.sum(be.sum(x * x, axis=0)), normal(50)),
}


@pytest.mark.parametrize("name", list(FAST))
def test_fast_paths_equal_the_textbook_rule(name: str) -> None:
    """Same formula, different temporaries: equal to 1e-13 relative (rounding order only)."""
    f, x = FAST[name]
    np.testing.assert_allclose(be.grad(f)(x), inner_gradient(f, x), rtol=1e-13)


def test_fused_helpers_equal_their_formulas() -> None:
    """Each fused helper against the expression it replaces (1e-14: same operations)."""
    g, a = normal(7), normal(7, seed=1)
    np.testing.assert_allclose(elementwise_rules.inner(g, a), np.sum(g * a), rtol=1e-14)
    repeated = np.broadcast_to(np.float64(0.25), (7,))
    np.testing.assert_allclose(elementwise_rules._power_grad_fused(repeated, a, 3.0, False),
                               repeated * 3.0 * a**2, rtol=1e-14)
    np.testing.assert_allclose(elementwise_rules._power_grad_fused(g, a, 2, True), g * 2 * a,
                               rtol=1e-14)
    residual = a.copy()
    np.testing.assert_allclose(array_rules._mse_grad_fused(np.float64(1.0), residual, 7),
                               a * 2 / 7, rtol=1e-14)
    x = normal(2, 3)
    shift = np.max(x, axis=1, keepdims=True)
    total = np.sum(np.exp(x - shift), axis=1, keepdims=True)
    gk = normal(2, 1, seed=2)
    np.testing.assert_allclose(array_rules._softmax_times_fused(gk, x, shift, total, (2, 1)),
                               np.exp(x - shift) / total * gk, rtol=1e-14)
