"""Every differentiable function of the namespace, differentiated by the NumPy autodiff through
the backend (``be.sin``, ``be.linalg.svd``...), against central finite differences in float64,
first order and, through nested grad, second order (Hessian-vector products).

Tolerances: first order as in test_numpy_autodiff.py (H = 1e-6: truncation ~1e-12, rounding
~1e-10, so 1e-6 relative, 1e-8 absolute; a wrong VJP is off by O(1)); second order compares
the nested gradient with central differences of first-order gradients (H2 = 1e-5, errors
~1e-10 of O(1) values: 1e-5 relative, 1e-6 absolute for the decompositions' larger terms).
Inputs stay away from kinks, domain edges and close eigenvalues by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import finite_difference

import gradbridge as gb
from gradbridge.core import ops
from gradbridge.core.backend import Backend, NotDifferentiable

be: Backend = gb.get_backend("numpy", device="cpu", dtype="float64")
la = be.linalg
H2 = 1e-5  # second order; first order uses op_cases.finite_difference (H = 1e-6)


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def uniform(low: float, high: float, *shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape)


def spd(n: int, seed: int = 2) -> np.ndarray:
    """Symmetric positive definite with well-separated eigenvalues (1..n plus a small tilt)."""
    q = np.linalg.qr(normal(n, n, seed=seed))[0]
    return q @ np.diag(np.arange(1.0, n + 1) * 1.5) @ q.T


def sym(m: Any) -> Any:
    """The symmetric part: finite differences of a function of a symmetric matrix."""
    return (m + be.matrix_transpose(m)) / 2


def separated(rows: int, cols: int, seed: int = 3) -> np.ndarray:
    """A matrix with singular values 1, 2, 3... (distinct, nonzero)."""
    k = min(rows, cols)
    u = np.linalg.qr(normal(rows, k, seed=seed))[0]
    v = np.linalg.qr(normal(cols, k, seed=seed + 1))[0]
    return u @ np.diag(np.arange(1.0, k + 1)) @ v.T


BOOL = np.array([True, False, True, True, False, False])

CASES: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    # elementwise, one argument
    "abs": (be.abs, [normal(6)]),
    "acos": (be.acos, [uniform(-0.8, 0.8, 6)]),
    "acosh": (be.acosh, [uniform(1.2, 3.0, 6)]),
    "asin": (be.asin, [uniform(-0.8, 0.8, 6)]),
    "asinh": (be.asinh, [normal(6)]),
    "atan": (be.atan, [normal(6)]),
    "atanh": (be.atanh, [uniform(-0.8, 0.8, 6)]),
    "cos": (be.cos, [normal(6)]),
    "cosh": (be.cosh, [normal(6)]),
    "exp": (be.exp, [normal(6)]),
    "expm1": (be.expm1, [normal(6)]),
    "log": (be.log, [uniform(0.5, 2, 6)]),
    "log1p": (be.log1p, [uniform(-0.5, 2, 6)]),
    "log2": (be.log2, [uniform(0.5, 2, 6)]),
    "log10": (be.log10, [uniform(0.5, 2, 6)]),
    "negative": (be.negative, [normal(6)]),
    "positive": (be.positive, [normal(6)]),
    "reciprocal": (be.reciprocal, [uniform(0.5, 2, 6)]),
    "sin": (be.sin, [normal(6)]),
    "sinh": (be.sinh, [normal(6)]),
    "sqrt": (be.sqrt, [uniform(0.5, 2, 6)]),
    "square": (be.square, [normal(6)]),
    "tan": (be.tan, [uniform(-1, 1, 6)]),
    "tanh": (be.tanh, [normal(6)]),
    "conj": (be.conj, [normal(6)]),
    "real": (be.real, [normal(6)]),
    "imag": (lambda x: be.imag(x) + x, [normal(6)]),  # imag of a real array: 0, no gradient
    # elementwise, two arguments (broadcasting included)
    "add": (be.add, [normal(2, 3), normal(3, seed=1)]),
    "atan2": (be.atan2, [normal(6), normal(6, seed=1)]),
    "divide": (be.divide, [normal(2, 3), uniform(0.5, 2, 2, 1)]),
    "hypot": (be.hypot, [normal(6), normal(6, seed=1)]),
    "logaddexp": (be.logaddexp, [normal(6), normal(6, seed=1)]),
    "multiply": (be.multiply, [normal(2, 3), normal(2, 3, seed=1)]),
    "pow": (be.pow, [uniform(0.5, 2, 6), normal(6, seed=1)]),
    "subtract": (be.subtract, [normal(3, 1), normal(4, seed=1)]),
    "maximum": (be.maximum, [normal(6), normal(6, seed=1)]),
    "minimum": (be.minimum, [normal(6), normal(6, seed=1)]),
    "copysign": (be.copysign, [normal(6), normal(6, seed=1)]),
    "remainder": (be.remainder, [normal(6) * 3, uniform(0.5, 2, 6) * np.array([1, -1] * 3)]),
    "clip": (lambda x, lo: be.clip(x, lo, 0.5), [normal(8), np.full(8, -0.5) + 0.1 * normal(8)]),
    "where": (lambda x, y: be.where(BOOL, x, y), [normal(6), normal(6, seed=1)]),
    # creation and data type
    "asarray": (lambda x: be.asarray(x) * 2.0, [normal(4)]),
    "astype": (lambda x: be.astype(x, be.float64) ** 2, [normal(4)]),
    "tril": (lambda x: be.tril(x, k=-1), [normal(3, 3)]),
    "triu": (be.triu, [normal(3, 4)]),
    # indexing
    "take": (lambda x: be.take(x, np.array([2, 0, 2]), axis=1), [normal(2, 3)]),
    "take_along_axis": (lambda x: be.take_along_axis(x, np.array([[1, 0, 1], [2, 2, 0]]),
                                                     axis=1), [normal(2, 3)]),
    "getitem mask": (lambda x: x[x > 0], [normal(3, 4)]),
    "getitem integer arrays": (lambda x: x[np.array([0, 2, 0]), np.array([1, 1, 3])],
                               [normal(3, 4)]),
    "getitem mixed": (lambda x: x[1:, np.array([3, 0])], [normal(3, 4)]),
    # manipulation
    "broadcast_arrays": (lambda x, y: be.broadcast_arrays(x, y)[0] * be.broadcast_arrays(x, y)[1],
                         [normal(3, 1), normal(4, seed=1)]),
    "broadcast_to": (lambda x: be.broadcast_to(x, (2, 3, 4)), [normal(3, 1)]),
    "meshgrid": (lambda x, y: be.meshgrid(x, y)[0] * be.meshgrid(x, y, indexing="ij")[1].T,
                 [normal(3), normal(4, seed=1)]),
    "concat": (lambda x, y: be.concat([x, y, x], axis=1), [normal(2, 3), normal(2, 1)]),
    "stack": (lambda x, y: be.stack([x, y], axis=-1), [normal(2, 3), normal(2, 3, seed=1)]),
    "expand_dims": (lambda x: be.expand_dims(x, axis=1), [normal(2, 3)]),
    "flip": (lambda x: be.flip(x, axis=0), [normal(2, 3)]),
    "moveaxis": (lambda x: be.moveaxis(x, 0, -1), [normal(2, 3, 4)]),
    "permute_dims": (lambda x: be.permute_dims(x, (2, 0, 1)), [normal(2, 3, 4)]),
    "repeat": (lambda x: be.repeat(x, 3, axis=1), [normal(2, 3)]),
    "repeat array": (lambda x: be.repeat(x, np.array([2, 0, 1]), axis=1), [normal(2, 3)]),
    "reshape": (lambda x: be.reshape(x, (3, 2)), [normal(2, 3)]),
    "roll": (lambda x: be.roll(x, shift=(1, -1), axis=(0, 1)), [normal(2, 3)]),
    "squeeze": (lambda x: be.squeeze(x, axis=1), [normal(2, 1, 3)]),
    "tile": (lambda x: be.tile(x, (2, 1, 3)), [normal(2, 3)]),
    "unstack": (lambda x: be.unstack(x, axis=1)[2] * be.unstack(x, axis=1)[0], [normal(2, 3)]),
    # sorting, statistics, utility
    "sort": (lambda x: be.sort(x, axis=0, descending=True), [normal(4, 3)]),
    "cumulative_sum": (lambda x: be.cumulative_sum(x, axis=1, include_initial=True),
                       [normal(2, 3)]),
    "cumulative_prod": (lambda x: be.cumulative_prod(x, axis=0), [normal(3, 2)]),
    "mean": (lambda x: be.mean(x, axis=0), [normal(3, 2)]),
    "sum": (lambda x: be.sum(x, axis=(0, 2), keepdims=True), [normal(2, 3, 2)]),
    "prod": (lambda x: be.prod(x, axis=1), [normal(2, 4)]),
    "prod with a zero": (lambda x: be.prod(x * np.array([1.0, 0.0, 1.0])), [normal(3)]),
    "std": (lambda x: be.std(x, axis=1, correction=1), [normal(2, 5)]),
    "var": (lambda x: be.var(x, correction=0.5), [normal(2, 5)]),
    "max": (lambda x: be.max(x, axis=1), [normal(2, 5)]),
    "min": (lambda x: be.min(x, axis=0, keepdims=True), [normal(2, 5)]),
    "diff": (lambda x: be.diff(x, n=2, axis=0), [normal(5, 2)]),
    # linear algebra
    "matmul": (be.matmul, [normal(2, 3, 4), normal(4, 2, seed=1)]),
    "tensordot": (lambda x, y: be.tensordot(x, y, axes=([0, 2], [1, 0])),
                  [normal(2, 3, 4), normal(4, 2, 5, seed=1)]),
    "vecdot": (lambda x, y: be.vecdot(x, y, axis=0), [normal(3, 2), normal(3, 2, seed=1)]),
    "matrix_transpose": (be.matrix_transpose, [normal(2, 3, 4)]),
    "outer": (la.outer, [normal(3), normal(4, seed=1)]),
    "cross": (la.cross, [normal(2, 3), normal(2, 3, seed=1)]),
    "inv": (la.inv, [spd(3) + normal(3, 3) * 0.1]),
    "solve vector": (la.solve, [spd(3) + normal(3, 3) * 0.1, normal(3, seed=1)]),
    "solve matrices": (la.solve, [spd(3) + normal(3, 3) * 0.1, normal(3, 2, seed=1)]),
    "det": (la.det, [spd(3) + normal(3, 3) * 0.1]),
    "slogdet": (lambda x: la.slogdet(x)[1] * la.slogdet(x)[0], [normal(3, 3)]),
    "cholesky": (lambda x: la.cholesky(sym(x)), [spd(3)]),
    "cholesky upper": (lambda x: la.cholesky(sym(x), upper=True), [spd(3)]),
    "eigh": (lambda x: (lambda r: be.concat([r.eigenvalues, be.reshape(r.eigenvectors ** 2,
                                                                        (-1,))]))(la.eigh(sym(x))),
             [spd(3)]),
    "eigvalsh": (lambda x: la.eigvalsh(sym(x)), [spd(3)]),
    "qr": (lambda x: be.concat([be.reshape(r, (-1,)) for r in la.qr(x)]), [normal(4, 3)]),
    "svd": (lambda x: (lambda r: be.concat([r.S, be.reshape(r.U ** 2, (-1,)),
                                            be.reshape(r.Vh ** 2, (-1,))]))(
        la.svd(x, full_matrices=False)), [separated(4, 3)]),
    "svdvals": (la.svdvals, [separated(3, 4)]),
    "pinv": (la.pinv, [separated(4, 3)]),
    "matrix_power": (lambda x: la.matrix_power(x, 3), [normal(3, 3)]),
    "matrix_power negative": (lambda x: la.matrix_power(x, -2), [spd(3)]),
    "trace": (lambda x: la.trace(x, offset=1), [normal(2, 3, 3)]),
    "diagonal": (lambda x: la.diagonal(x, offset=-1), [normal(3, 4)]),
    "vector_norm": (lambda x: la.vector_norm(x, axis=1), [normal(2, 3)]),
    "vector_norm ord 3": (lambda x: la.vector_norm(x, ord=3), [normal(2, 3)]),
    "vector_norm ord inf": (lambda x: la.vector_norm(x, ord=np.inf, keepdims=True),
                            [normal(2, 3)]),
    "matrix_norm": (la.matrix_norm, [normal(2, 3, 3)]),
    "matrix_norm nuc": (lambda x: la.matrix_norm(x, ord="nuc"), [separated(3, 3)]),
    "matrix_norm 2": (lambda x: la.matrix_norm(x, ord=2), [separated(3, 3)]),
    "matrix_norm 1": (lambda x: la.matrix_norm(x, ord=1), [normal(3, 3)]),
    "matrix_norm inf": (lambda x: la.matrix_norm(x, ord=np.inf, keepdims=True), [normal(3, 3)]),
}

PIECEWISE_CONSTANT = ["ceil", "floor", "round", "sign", "trunc"]


def weighted_sum(op: Callable[..., Any], args: list[np.ndarray]) -> Callable[..., Any]:
    """``sum(op(*xs) * c)`` for a fixed random ``c``: every output entry counts."""
    weights = np.random.default_rng(7).uniform(0.5, 1.5, np.shape(op(*args)))
    return lambda *xs: be.sum(op(*xs) * weights)


def test_every_differentiable_function_has_a_case() -> None:
    """The table above is complete: each core/ops.py function with differentiable arguments."""
    named = {name.split(" ")[0] for name in CASES}
    wanted = {op.name for op in (*ops.MAIN, *ops.LINALG) if op.differentiable}
    assert wanted - named == set()


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_finite_differences(name: str) -> None:
    op, args = CASES[name]
    scalar = weighted_sum(op, args)
    argnums = tuple(range(len(args)))
    value, grads = be.value_and_grad(scalar, argnums=argnums)(*args)
    np.testing.assert_allclose(value, scalar(*args), rtol=1e-12)  # same forward arithmetic
    for i, grad in enumerate(grads):
        assert np.shape(grad) == np.shape(args[i])
        np.testing.assert_allclose(grad, finite_difference(scalar, args, i),
                                   rtol=1e-6, atol=1e-8, err_msg=f"argument {i}")


@pytest.mark.parametrize("name", list(CASES))
def test_second_order_matches_differences_of_gradients(name: str) -> None:
    """The Hessian of the weighted sum (all arguments together) times a random direction."""
    op, args = CASES[name]
    scalar = weighted_sum(op, args)
    argnums = tuple(range(len(args)))
    grad = be.grad(scalar, argnums=argnums)
    directions = [normal(*np.shape(a), seed=11 + i) for i, a in enumerate(args)]

    def along(*xs: Any) -> Any:
        return sum(be.sum(g * d) for g, d in zip(grad(*xs), directions, strict=True))

    nested = be.grad(along, argnums=argnums)(*args)
    ahead = grad(*(a + H2 * d for a, d in zip(args, directions, strict=True)))
    behind = grad(*(a - H2 * d for a, d in zip(args, directions, strict=True)))
    for i, hv in enumerate(nested):
        np.testing.assert_allclose(hv, (ahead[i] - behind[i]) / (2 * H2), rtol=1e-5, atol=1e-6,
                                   err_msg=f"argument {i}")


@pytest.mark.parametrize("name", PIECEWISE_CONSTANT)
def test_piecewise_constant_functions_have_zero_gradient(name: str) -> None:
    x = normal(5) * 3
    grad = be.grad(lambda x: be.sum(getattr(be, name)(x) * x))(x)
    np.testing.assert_array_equal(grad, getattr(np, name)(x))  # d/dx [c(x) x] = c(x)


def test_subgradients_at_kinks() -> None:
    """DESIGN section 2: maximum/minimum ties to x1, clip 1 on its bounds, max/min reductions
    split ties, abs'(0) = 0; exact values."""
    one = np.float64(1.0)
    assert be.grad(be.maximum, argnums=(0, 1))(one, one) == (1.0, 0.0)
    assert be.grad(be.minimum, argnums=(0, 1))(one, one) == (1.0, 0.0)
    bounds = np.array([-1.0, 1.0, 2.0])
    np.testing.assert_array_equal(be.grad(lambda x: be.sum(be.clip(x, -1.0, 1.0)))(bounds),
                                  [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(be.grad(lambda x: be.max(x, axis=1))(np.array([[2.0, 2.0]])),
                                  [[0.5, 0.5]])
    np.testing.assert_array_equal(be.grad(be.min)(np.array([1.0, 1.0, 3.0, 1.0])),
                                  [1 / 3, 1 / 3, 0.0, 1 / 3])
    assert be.grad(be.abs)(np.float64(0.0)) == 0.0
    assert be.grad(lambda x: be.sum(be.abs(x)))(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_integer_and_boolean_results_are_forward_only() -> None:
    """argmax, comparisons, argsort, nonzero on traced values give plain results."""

    def fn(x: Any) -> Any:
        i = be.argmax(x)
        assert type(i) in (np.intp, np.int64) and type(x > 0) is np.ndarray
        assert type(be.argsort(x)) is np.ndarray and type(be.nonzero(x > 0)[0]) is np.ndarray
        assert type(be.astype(x, be.int64)) is np.ndarray
        return x[i] * be.sum(be.astype(x > 0, be.float64) * x)

    x = np.array([0.5, -1.0, 2.0])
    # f = x[2] * (x0 + x2) here: df/dx = (x2, 0, x0 + 2 x2)
    np.testing.assert_array_equal(be.grad(fn)(x), [2.0, 0.0, 4.5])


def check_both_orders(scalar: Callable[..., Any], args: list[np.ndarray]) -> None:
    """First order against central differences, second order against differences of grads."""
    argnums = tuple(range(len(args)))
    grads = be.grad(scalar, argnums=argnums)(*args)
    for i, grad in enumerate(grads):
        np.testing.assert_allclose(grad, finite_difference(scalar, args, i), rtol=1e-6,
                                   atol=1e-8)
    directions = [normal(*np.shape(a), seed=21 + i) for i, a in enumerate(args)]
    grad = be.grad(scalar, argnums=argnums)
    nested = be.grad(lambda *xs: sum(be.sum(g * d) for g, d in zip(grad(*xs), directions,
                                                                   strict=True)),
                     argnums=argnums)(*args)
    ahead = grad(*(a + H2 * d for a, d in zip(args, directions, strict=True)))
    behind = grad(*(a - H2 * d for a, d in zip(args, directions, strict=True)))
    for i, hv in enumerate(nested):
        np.testing.assert_allclose(hv, (ahead[i] - behind[i]) / (2 * H2), rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       name=st.sampled_from(["multiply", "divide", "atan2", "hypot", "logaddexp", "pow"]))
def test_broadcasting_binary_functions_for_generated_shapes(shapes: Any, name: str) -> None:
    a, b = (uniform(0.5, 2.0, *shape, seed=5 + i) for i, shape in enumerate(shapes.input_shapes))
    function = getattr(be, name)
    check_both_orders(lambda x, y: be.sum(function(x, y) ** 2), [a, b])


@settings(max_examples=25, deadline=None)
@given(indices=hnp.arrays(np.intp, st.integers(1, 6), elements=st.integers(0, 3)),
       mask=hnp.arrays(np.bool_, (4, 3)), axis=st.sampled_from([0, 1]))
def test_gathers_and_masks_for_generated_indices(indices: np.ndarray, mask: np.ndarray,
                                                 axis: int) -> None:
    """Repeated integer indices add up; masks select any subset (empty included)."""
    x = normal(4, 3, seed=9)
    take = indices if axis == 0 else indices % 3

    def scalar(x: Any) -> Any:
        return (be.sum(be.take(x, take, axis=axis) ** 3) + be.sum(be.sin(x[mask]))
                + be.sum(x[take % 4, take % 3] ** 2))

    check_both_orders(scalar, [x])


def test_decompositions_outside_their_differentiable_modes_say_so() -> None:
    """svd with full matrices of a non-square input and complete qr run forward (in a jit
    trace too) but have no gradient here: one NotDifferentiable naming the fix."""
    x = separated(4, 3)
    staged = be.jit(lambda a: la.svd(a).U @ be.ones((4, 1)) + be.sum(la.qr(a, mode="complete").Q))
    expected = np.linalg.svd(x).U @ np.ones((4, 1)) + np.sum(np.linalg.qr(x, "complete").Q)
    for _ in range(2):  # the trace, then its replay: the same NumPy calls, the same bits
        np.testing.assert_array_equal(staged(x), expected)
    assert staged.reason is None
    with pytest.raises(NotDifferentiable, match="full_matrices=False"):
        be.grad(lambda a: be.sum(la.svd(a).U))(x)
    with pytest.raises(NotDifferentiable, match="mode='reduced'"):
        be.grad(lambda a: be.sum(la.qr(a, mode="complete").R))(x)
    np.testing.assert_allclose(be.grad(lambda a: be.sum(np.linalg.svd(a, compute_uv=False)))(x),
                               be.grad(lambda a: be.sum(la.svdvals(a)))(x), rtol=1e-15)
