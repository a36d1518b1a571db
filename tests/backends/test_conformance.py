"""Every protocol operation on every backend, checked against plain NumPy in float64.

Inputs are drawn on the host with ``numpy.random.default_rng(seed)``. The reference is computed
from the inputs *as the backend holds them* (rounded to its dtype, then widened to float64), so
the comparison measures the operation's own rounding, not the rounding of the inputs.
Tolerance is ``tolerance(be)`` from conftest: 1e-10 relative in float64 (rounding is ~1e-16 per
op; the margin covers different summation orders and libm implementations) and 1e-5 in float32
(~6e-8 per op, times short op chains and sums of a few terms). The same number is used as an
absolute floor, since every input here is O(1) and results near zero have no relative scale.

Plain framework code on backend arrays (Python operators, indexing, a function called outside
``be.jit``) runs inside ``with be.scope():``, the protocol's way to keep the backend's
precision there (JAX computes float64 only inside ``jax.enable_x64``; elsewhere it is a no-op).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from numpy.typing import ArrayLike

import gradbridge as gb
from gradbridge.core.backend import Backend

Array = Any

# Every backend x dtype runs each property, and on JAX each new shape costs a compilation:
# keep examples few and shapes small. (The fixture is a cached backend: safe to share.)
PROPERTY = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(PROPERTY, max_examples=12)  # the fixed-shape reduction test covers every axis


# ----------------------------------------------------------------------------- helpers


def as_seen_by(be: Backend, x: np.ndarray) -> np.ndarray:
    """``x`` rounded to the backend's dtype and widened back: the reference's exact input."""
    return np.asarray(x).astype(be.dtype).astype(np.float64)


def host(be: Backend, x: Array) -> np.ndarray:
    """A backend array as a host numpy array (dtype preserved)."""
    out = be.to_numpy(x)
    assert isinstance(out, np.ndarray), f"to_numpy returned {type(out).__name__}"
    return out


def assert_matches(be: Backend, actual: Array, expected: ArrayLike, what: str = "",
                   scale: float = 1.0) -> None:
    """Shape, float dtype and values (at tolerance(be), see the module docstring) of a result."""
    got = host(be, actual)
    reference = np.asarray(expected, dtype=np.float64)
    assert got.shape == reference.shape, f"{what}: shape {got.shape} != {reference.shape}"
    assert str(got.dtype) == be.dtype, f"{what}: dtype {got.dtype} != backend dtype {be.dtype}"
    tol = tolerance(be)
    np.testing.assert_allclose(got.astype(np.float64), reference, rtol=tol, atol=tol * scale,
                               err_msg=what)


def draw(be: Backend, seed: int, shape: tuple[int, ...], low: float | None = None,
         high: float | None = None) -> tuple[Array, np.ndarray]:
    """A backend array and its float64 reference: standard normal, or uniform in [low, high)."""
    rng = np.random.default_rng(seed)
    if low is None or high is None:
        values = rng.standard_normal(shape)
    else:
        values = rng.uniform(low, high, shape)
    return be.from_host(values), as_seen_by(be, values)


def away_from_zero(be: Backend, seed: int, shape: tuple[int, ...]) -> tuple[Array, np.ndarray]:
    """Values with |x| in [0.5, 2) and random sign: safe divisors, no kinks of abs nearby."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return be.from_host(values), as_seen_by(be, values)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast result's gradient back onto an input's shape (the analytic reduction)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def stable_logsumexp(x: np.ndarray, axis: int | tuple[int, ...] | None,
                     keepdims: bool) -> np.ndarray:
    """Reference log-sum-exp, shifted by the max by hand so that large inputs cannot overflow."""
    shift = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return out if keepdims else np.squeeze(out, axis=axis)


# --------------------------------------------------------------------- identity, creation


def test_identity_and_capabilities(backend: Backend) -> None:
    assert backend.name in ("numpy", "jax", "torch")
    assert backend.device == "cpu" or backend.device.startswith("cuda:")
    assert backend.dtype in ("float32", "float64")
    assert isinstance(backend, gb.Backend)  # runtime-checkable protocol: every name is there
    caps = backend.capabilities
    assert isinstance(caps, gb.Capabilities)
    assert "cpu" in caps.devices
    assert backend.device in caps.devices
    assert backend.dtype in caps.dtypes
    assert isinstance(caps.version, str) and caps.version
    assert isinstance(caps.has_jit, bool)


def test_synchronize_returns_none(backend: Backend) -> None:
    backend.exp(backend.ones(3))
    synchronize: Callable[[], object] = backend.synchronize  # typed -> None; check it is
    assert synchronize() is None


def test_from_host_takes_the_backend_float_dtype(backend: Backend) -> None:
    values = np.random.default_rng(0).standard_normal((2, 3))
    for source in (values, values.astype(np.float32), values.tolist()):
        expected = as_seen_by(backend, np.asarray(source, dtype=np.float64))
        assert_matches(backend, backend.from_host(source), expected,
                       f"from_host of {type(source).__name__} {np.asarray(source).dtype}")
    assert_matches(backend, backend.from_host(2.5), 2.5, "from_host of a Python float")


def test_from_host_keeps_integers_integer(backend: Backend) -> None:
    for source in (np.array([1, 2, 3]), [1, 2, 3]):
        got = host(backend, backend.from_host(source))
        assert got.dtype.kind in "iu", f"from_host({source!r}) became {got.dtype}"
        np.testing.assert_array_equal(got, [1, 2, 3])


def test_from_host_of_a_backend_array_is_the_same_values(backend: Backend) -> None:
    x, ref = draw(backend, 1, (4,))
    assert_matches(backend, backend.from_host(x), ref, "from_host(backend array)")


def test_to_numpy_round_trip_is_exact(backend: Backend) -> None:
    values = np.random.default_rng(2).standard_normal((3, 2)).astype(backend.dtype)
    x = backend.from_host(values)
    back = host(backend, x)
    assert back.dtype == values.dtype
    np.testing.assert_array_equal(back, values)  # exact: no arithmetic happened


def test_to_numpy_is_a_copy(backend: Backend) -> None:
    """The protocol promises a copy: editing the host array must not edit the backend's array."""
    x = backend.from_host([1.0, 2.0, 3.0])
    back = host(backend, x)
    with contextlib.suppress(ValueError):  # a read-only host array is fine: nothing can leak
        back[0] = 123.0
    np.testing.assert_array_equal(host(backend, x), [1.0, 2.0, 3.0])


def test_to_numpy_of_a_python_number(backend: Backend) -> None:
    out = np.asarray(backend.to_numpy(1.5))
    assert out.shape == () and float(out) == 1.5


@pytest.mark.parametrize("shape", [3, (2, 3), (2, 1, 4), ()])
def test_zeros_ones_full(backend: Backend, shape: int | tuple[int, ...]) -> None:
    expected_shape = (shape,) if isinstance(shape, int) else shape
    assert_matches(backend, backend.zeros(shape), np.zeros(expected_shape), "zeros")
    assert_matches(backend, backend.ones(shape), np.ones(expected_shape), "ones")
    assert_matches(backend, backend.full(shape, -1.25), np.full(expected_shape, -1.25), "full")


# --------------------------------------------------------------------------- elementwise

UNARY: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[float, float] | None]] = {
    # name: (numpy reference, input domain (uniform low, high) or None for standard normal)
    "negative": (np.negative, None),
    "abs": (np.abs, None),
    "sqrt": (np.sqrt, (0.01, 4.0)),
    "exp": (np.exp, None),
    "log": (np.log, (0.01, 4.0)),
    "log1p": (np.log1p, (0.0, 4.0)),
    "tanh": (np.tanh, None),
}


@pytest.mark.parametrize("op", list(UNARY))
def test_unary_ops(backend: Backend, op: str) -> None:
    reference, domain = UNARY[op]
    x, ref = draw(backend, 3, (3, 4), *(domain or (None, None)))
    assert_matches(backend, getattr(backend, op)(x), reference(ref), op)


def test_log1p_is_accurate_near_zero(backend: Backend) -> None:
    tiny = np.array([1e-12, -1e-9, 1e-7])
    # log(1 + x) would lose every digit here; log1p keeps them (relative tolerance only).
    got = host(backend, backend.log1p(backend.from_host(tiny))).astype(np.float64)
    np.testing.assert_allclose(got, np.log1p(as_seen_by(backend, tiny)), rtol=tolerance(backend))


BINARY: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "maximum": np.maximum, "minimum": np.minimum,
}


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_ops_with_broadcasting(backend: Backend, op: str) -> None:
    a, ref_a = draw(backend, 4, (3, 4))
    b, ref_b = away_from_zero(backend, 5, (4,))
    fn, reference = getattr(backend, op), BINARY[op]
    assert_matches(backend, fn(a, b), reference(ref_a, ref_b), f"{op} (3,4) with (4,)")
    assert_matches(backend, fn(b, a), reference(ref_b, ref_a), f"{op} (4,) with (3,4)")
    column, ref_column = away_from_zero(backend, 6, (3, 1))
    assert_matches(backend, fn(a, column), reference(ref_a, ref_column), f"{op} with (3,1)")


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_with_a_python_scalar(backend: Backend, op: str) -> None:
    x, ref = draw(backend, 7, (5,))
    assert_matches(backend, getattr(backend, op)(x, 0.25), BINARY[op](ref, 0.25), op)


def test_pow(backend: Backend) -> None:
    base, ref_base = draw(backend, 8, (3, 4), 0.5, 2.0)
    exponent, ref_exponent = draw(backend, 9, (3, 4), -2.0, 2.0)
    assert_matches(backend, backend.pow(base, exponent), ref_base ** ref_exponent, "array**array")
    assert_matches(backend, backend.pow(base, 3.0), ref_base ** 3.0, "array**3.0")
    assert_matches(backend, backend.pow(base, 0.5), np.sqrt(ref_base), "array**0.5")
    x, ref = draw(backend, 10, (4,))
    assert_matches(backend, backend.pow(x, 2.0), ref * ref, "negative base ** 2.0")


def test_where(backend: Backend) -> None:
    x, ref_x = draw(backend, 11, (3, 4))
    y, ref_y = draw(backend, 12, (3, 4))
    row, ref_row = draw(backend, 13, (4,))
    with backend.scope():  # the comparisons are plain operators
        positive, greater = x > 0, x > y
    assert_matches(backend, backend.where(positive, x, y), np.where(ref_x > 0, ref_x, ref_y),
                   "where(x > 0, x, y)")
    assert_matches(backend, backend.where(greater, row, x),
                   np.where(ref_x > ref_y, ref_row, ref_x), "where with a broadcast branch")


@pytest.mark.parametrize(("low", "high"), [(-0.5, 0.5), (None, 0.3), (-0.3, None), (None, None)])
def test_clip(backend: Backend, low: float | None, high: float | None) -> None:
    x, ref = draw(backend, 14, (3, 4))
    expected = ref if low is None and high is None else np.clip(ref, low, high)
    assert_matches(backend, backend.clip(x, low, high), expected, f"clip({low}, {high})")
    assert_matches(backend, backend.clip(x, min=low, max=high), expected, "clip by keyword")


# ----------------------------------------------------------------------- linear algebra

MATMUL_SHAPES = [((3, 4), (4, 2)), ((3, 4), (4,)), ((4,), (4, 2)), ((4,), (4,)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5))]


@pytest.mark.parametrize(("shape_a", "shape_b"), MATMUL_SHAPES,
                         ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul(backend: Backend, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    a, ref_a = draw(backend, 15, shape_a)
    b, ref_b = draw(backend, 16, shape_b)
    expected = ref_a @ ref_b
    # A sum of k products can cancel: scale the absolute floor by sum |a||b|, not by the result.
    scale = float(np.max(np.abs(ref_a) @ np.abs(ref_b)))
    assert_matches(backend, backend.matmul(a, b), expected, "matmul", scale)
    with backend.scope():
        product = a @ b
    assert_matches(backend, product, expected, "operator @", scale)


def test_matmul_mismatch_raises(backend: Backend) -> None:
    a, _ = draw(backend, 17, (3, 4))
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        backend.to_numpy(backend.matmul(a, a))


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (3, 3)])
def test_matrix_transpose(backend: Backend, shape: tuple[int, ...]) -> None:
    x, ref = draw(backend, 18, shape)
    assert_matches(backend, backend.matrix_transpose(x), np.swapaxes(ref, -1, -2), "transpose")


def test_dot(backend: Backend) -> None:
    v, ref_v = draw(backend, 19, (4,))
    w, ref_w = draw(backend, 20, (4,))
    m, ref_m = draw(backend, 21, (3, 4))
    scale = float(np.abs(ref_v) @ np.abs(ref_w))
    assert_matches(backend, backend.dot(v, w), np.dot(ref_v, ref_w), "1-D . 1-D", scale)
    assert_matches(backend, backend.dot(m, w), ref_m @ ref_w, "2-D . 1-D",
                   float(np.max(np.abs(ref_m) @ np.abs(ref_w))))


@pytest.mark.parametrize(("shape_a", "shape_b"), [((3,), (4,)), ((2, 3), (2, 3)),
                                                  ((2, 3), (2,)), ((2, 2, 3), (3,)), ((), (3,))])
def test_dot_bad_shapes_name_both(backend: Backend, shape_a: tuple[int, ...],
                                  shape_b: tuple[int, ...]) -> None:
    a, b = backend.ones(shape_a), backend.ones(shape_b)
    with pytest.raises(gb.InvalidArgument) as info:
        backend.dot(a, b)
    assert str(shape_a) in str(info.value) and str(shape_b) in str(info.value)


# ------------------------------------------------------------------------ reductions

REDUCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
}
AXES: list[int | tuple[int, ...] | None] = [None, 0, 1, -1, 2, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("op", list(REDUCTIONS))
def test_reductions(backend: Backend, op: str) -> None:
    x, ref = draw(backend, 22, (2, 3, 4))
    for axis in AXES:
        for keepdims in (False, True):
            expected = REDUCTIONS[op](ref, axis=axis, keepdims=keepdims)
            got = getattr(backend, op)(x, axis=axis, keepdims=keepdims)
            # A sum of 24 normals: absolute floor scaled by the number of terms summed.
            assert_matches(backend, got, expected, f"{op}(axis={axis}, keepdims={keepdims})",
                           scale=ref.size)


@pytest.mark.parametrize("op", list(REDUCTIONS))
def test_reductions_take_axis_by_keyword_only(backend: Backend, op: str) -> None:
    """The standard's signature ``op(x, /, *, axis=None, keepdims=False)``."""
    x, ref = draw(backend, 23, (3, 4))
    assert_matches(backend, getattr(backend, op)(x), REDUCTIONS[op](ref), f"{op}(x)", 12)
    assert_matches(backend, getattr(backend, op)(x, axis=0), REDUCTIONS[op](ref, 0),
                   f"{op}(x, axis=0)", 12)
    with pytest.raises(TypeError):
        getattr(backend, op)(x, 0)


LSE_AXES: list[int | tuple[int, ...] | None] = [None, 0, -1, (0, 1)]


def test_logsumexp(backend: Backend) -> None:
    x, ref = draw(backend, 24, (3, 4))
    for axis in LSE_AXES:
        for keepdims in (False, True):
            assert_matches(backend, backend.logsumexp(x, axis=axis, keepdims=keepdims),
                           stable_logsumexp(ref, axis, keepdims),
                           f"logsumexp(axis={axis}, keepdims={keepdims})")


@pytest.mark.parametrize("values", [[1000.0, 1000.5], [-1000.0, -1000.5], [800.0, -800.0]])
def test_logsumexp_is_stable_for_large_inputs(backend: Backend, values: list[float]) -> None:
    x = backend.from_host(values)
    top = max(values)
    expected = top + math.log(sum(math.exp(v - top) for v in values))  # exact for these numbers
    got = host(backend, backend.logsumexp(x))
    assert np.isfinite(got), f"logsumexp({values}) overflowed to {got}"
    assert_matches(backend, backend.logsumexp(x), expected, f"logsumexp({values})")
    rows = backend.from_host([values, [0.0, 0.0]])
    assert_matches(backend, backend.logsumexp(rows, axis=1), [expected, math.log(2.0)],
                   "row-wise logsumexp with a large row")


# ------------------------------------------------------------------------- shape

RESHAPES: list[int | tuple[int, ...]] = [(6, 4), (4, 6), (24,), 24, (-1,), (2, -1), (2, 3, 2, 2)]


def test_reshape(backend: Backend) -> None:
    x, ref = draw(backend, 25, (2, 3, 4))
    for shape in RESHAPES:
        assert_matches(backend, backend.reshape(x, shape), ref.reshape(shape), f"reshape {shape}")


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_expand_dims(backend: Backend, axis: int) -> None:
    x, ref = draw(backend, 26, (3, 4))
    assert_matches(backend, backend.expand_dims(x, axis), np.expand_dims(ref, axis),
                   f"expand_dims axis={axis}")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(backend: Backend, axis: int) -> None:
    a, ref_a = draw(backend, 27, (2, 3))
    b, ref_b = draw(backend, 28, (2, 3))
    c, ref_c = draw(backend, 29, (2, 3))
    assert_matches(backend, backend.concat([a, b, c], axis=axis),
                   np.concatenate([ref_a, ref_b, ref_c], axis=axis), f"concat axis={axis}")
    assert_matches(backend, backend.concat((a, b), axis), np.concatenate([ref_a, ref_b], axis),
                   "concat of a tuple, axis by position")


def test_concat_defaults_to_axis_0(backend: Backend) -> None:
    a, ref_a = draw(backend, 30, (2, 3))
    b, ref_b = draw(backend, 31, (1, 3))
    assert_matches(backend, backend.concat([a, b]), np.concatenate([ref_a, ref_b]), "concat")


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(backend: Backend, axis: int) -> None:
    a, ref_a = draw(backend, 32, (2, 3))
    b, ref_b = draw(backend, 33, (2, 3))
    assert_matches(backend, backend.stack([a, b], axis=axis), np.stack([ref_a, ref_b], axis=axis),
                   f"stack axis={axis}")


# --------------------------------------------------------------- operators and indexing


def test_python_operators(backend: Backend) -> None:
    a, ra = draw(backend, 34, (3, 4))
    b, rb = away_from_zero(backend, 35, (3, 4))
    p, rp = draw(backend, 36, (3, 4), 0.5, 2.0)
    with backend.scope():
        cases = {
            "a + b": (a + b, ra + rb), "a - b": (a - b, ra - rb), "a * b": (a * b, ra * rb),
            "a / b": (a / b, ra / rb), "-a": (-a, -ra), "a ** 2": (a**2, ra**2),
            "p ** b": (p**b, rp**rb), "a @ b.T": (a @ backend.matrix_transpose(b), ra @ rb.T),
            "2.0 * a": (2.0 * a, 2.0 * ra), "a * 2.0": (a * 2.0, ra * 2.0),
            "1.0 + a": (1.0 + a, 1.0 + ra), "a - 1.0": (a - 1.0, ra - 1.0),
            "1.0 - a": (1.0 - a, 1.0 - ra), "1.0 / b": (1.0 / b, 1.0 / rb),
            "b / 2.0": (b / 2.0, rb / 2),
            "2.0 ** a": (2.0**a, 2.0**ra),
        }
    for what, (got, expected) in cases.items():
        assert_matches(backend, got, expected, what, scale=4.0)


def test_use_backend_block_keeps_the_backend_precision(backend: Backend) -> None:
    """``use_backend`` enters ``scope()``: plain operators in its block need nothing more."""
    a, ra = draw(backend, 47, (3, 4))
    b, rb = draw(backend, 48, (4,))
    with gb.use_backend(backend.name, device=backend.device, dtype=backend.dtype) as be:
        assert be is backend
        got = 2.0 * (a @ b) - 1.0
    assert_matches(backend, got, 2.0 * (ra @ rb) - 1.0, "operators in use_backend", 8.0)


def test_comparison_operators(backend: Backend) -> None:
    a, ra = draw(backend, 37, (3, 4))
    b, rb = draw(backend, 38, (3, 4))
    with backend.scope():
        cases = [("a > b", a > b, ra > rb), ("a < b", a < b, ra < rb),
                 ("a >= 0", a >= 0, ra >= 0), ("a <= 0.5", a <= 0.5, ra <= 0.5)]
    for what, got, expected in cases:
        np.testing.assert_array_equal(host(backend, got).astype(bool), expected, err_msg=what)


def test_indexing(backend: Backend) -> None:
    x, ref = draw(backend, 39, (4, 3))
    with backend.scope():
        cases = {
            "x[:, 0]": (x[:, 0], ref[:, 0]), "x[1:3]": (x[1:3], ref[1:3]), "x[1]": (x[1], ref[1]),
            "x[-1]": (x[-1], ref[-1]), "x[1, 2]": (x[1, 2], ref[1, 2]),
            "x[::2, 1:]": (x[::2, 1:], ref[::2, 1:]), "x[..., -1]": (x[..., -1], ref[..., -1]),
            "x[None]": (x[None], ref[None]),
        }
    for what, (got, expected) in cases.items():
        assert_matches(backend, got, expected, what)


# ----------------------------------------------------------------------- jit and scan


def test_jit_gives_the_same_result(backend: Backend) -> None:
    x, rx = draw(backend, 40, (3, 4))
    w, rw = draw(backend, 41, (4,))

    def model(x: Array, w: Array) -> Array:
        return backend.mean(backend.tanh(x @ w) ** 2)

    compiled = backend.jit(model)
    expected = np.mean(np.tanh(rx @ rw) ** 2)
    with backend.scope():
        plain = model(x, w)
    assert_matches(backend, plain, expected, "plain call")
    for attempt in range(2):  # the second call reuses whatever the first one compiled
        assert_matches(backend, compiled(x, w), expected, f"jitted call {attempt}")
    x2, rx2 = draw(backend, 42, (3, 4))
    assert_matches(backend, compiled(x2, w), np.mean(np.tanh(rx2 @ rw) ** 2), "new inputs")


def test_jit_of_a_gradient(backend: Backend) -> None:
    x, rx = draw(backend, 43, (4,))
    step = backend.jit(backend.grad(lambda v: backend.sum(v * v * v)))
    assert_matches(backend, step(x), 3 * rx**2, "jit(grad(sum(x**3)))")


def test_scan_accumulates_carry_and_stacks_outputs(backend: Backend) -> None:
    increment, ref_increment = draw(backend, 44, (3,))

    def step(total: Array) -> tuple[Array, Array]:
        total = total + increment
        return total, total * 2.0

    length = 5
    final, ys = backend.scan(step, backend.zeros(3), length)
    counts = np.arange(1, length + 1)[:, None]
    assert_matches(backend, final, length * ref_increment, "final carry", scale=length)
    assert_matches(backend, ys, 2.0 * counts * ref_increment, "stacked ys", scale=length)


def test_scan_with_tuple_carry(backend: Backend) -> None:
    def fibonacci(carry: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array]:
        a, b = carry
        return (b, a + b), a

    (a, b), ys = backend.scan(fibonacci, (backend.from_host(0.0), backend.from_host(1.0)), 10)
    assert_matches(backend, a, 55.0, "fib(10)")
    assert_matches(backend, b, 89.0, "fib(11)")
    assert_matches(backend, ys, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34], "fib(0..9)")


def test_scan_with_dict_outputs(backend: Backend) -> None:
    params, ref_params = draw(backend, 45, (2,))

    def halve(carry: dict[str, Array]) -> tuple[dict[str, Array], dict[str, Array]]:
        new = {"w": carry["w"] * 0.5, "count": carry["count"] + 1.0}
        return new, {"w": new["w"], "norm": backend.sum(new["w"] * new["w"])}

    final, ys = backend.scan(halve, {"w": params, "count": backend.from_host(0.0)}, 4)
    assert set(final) == {"w", "count"} and set(ys) == {"w", "norm"}
    factors = 0.5 ** np.arange(1, 5)
    assert_matches(backend, final["w"], ref_params / 16, "final w")
    assert_matches(backend, final["count"], 4.0, "count")
    assert_matches(backend, ys["w"], factors[:, None] * ref_params, "stacked w")
    assert_matches(backend, ys["norm"], factors**2 * np.sum(ref_params**2), "stacked norm")


def test_scan_without_outputs(backend: Backend) -> None:
    final, ys = backend.scan(lambda c: (c * 3.0, None), backend.ones(2), 3)
    assert ys is None
    assert_matches(backend, final, [27.0, 27.0], "carry after 3 steps")


def test_scan_inside_jit(backend: Backend) -> None:
    def power(x: Array) -> Array:
        return backend.scan(lambda c: (c * x, None), backend.ones(3), 4)[0]

    x, rx = draw(backend, 46, (3,))
    assert_matches(backend, backend.jit(power)(x), rx**4, "jit(scan)")


def test_cond_runs_the_chosen_branch_eagerly_and_inside_scan(backend: Backend) -> None:
    """Odd steps double the carry and even ones add one: cond picks by a traced counter inside
    a jitted scan, and by a plain predicate outside."""
    def step(state: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array]:
        value, count = state
        value = backend.cond(count % 2 == 1, lambda v: v * 2.0, lambda v: v + 1.0, value)
        return (value, count + 1), value

    def run(start: Array) -> Array:
        (final, _), _ = backend.scan(step, (start, backend.from_host(0)), 5)
        return final

    start = backend.ones(2)
    # 1 -> +1 = 2 -> *2 = 4 -> +1 = 5 -> *2 = 10 -> +1 = 11, exactly in any float dtype
    assert_matches(backend, backend.jit(run)(start), [11.0, 11.0], "jit(scan(cond))")
    assert_matches(backend, backend.cond(backend.from_host(False), lambda v: v * 2.0,
                                         lambda v: v - 1.0, start), [0.0, 0.0], "cond")


# ------------------------------------------------------------------ property tests

BROADCAST_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add, "multiply": np.multiply, "maximum": np.maximum,
}


def analytic_gradients(op: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of sum(op(a, b)) by hand: elementwise derivative, summed back over broadcasts."""
    a_b, b_b = np.broadcast_arrays(a, b)
    if op == "add":
        da, db = np.ones_like(a_b), np.ones_like(b_b)
    elif op == "multiply":
        da, db = b_b, a_b
    else:  # maximum: the derivative goes to the larger input (ties to the first; none here)
        da = (a_b >= b_b).astype(np.float64)
        db = 1.0 - da
    return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


@pytest.mark.parametrize("op", list(BROADCAST_OPS))
@PROPERTY
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**16))
def test_broadcasting_values_and_gradients(backend: Backend, op: str, shapes: Any,
                                           seed: int) -> None:
    shape_a, shape_b = shapes.input_shapes
    a, ref_a = draw(backend, seed, shape_a)
    b, ref_b = draw(backend, seed + 1, shape_b)
    fn = getattr(backend, op)
    assert_matches(backend, fn(a, b), BROADCAST_OPS[op](ref_a, ref_b), f"{op} {shapes}")

    # jit(grad): one compilation per shape on JAX instead of one per primitive (eager grads are
    # covered shape by shape in test_gradients); jit is the identity on the other backends.
    gradient = backend.jit(backend.grad(lambda x, y: backend.sum(fn(x, y)), argnums=(0, 1)))
    grad_a, grad_b = gradient(a, b)
    expected_a, expected_b = analytic_gradients(op, ref_a, ref_b)
    count = max(1, math.prod(shapes.result_shape))  # the gradient sums up to this many terms
    assert_matches(backend, grad_a, expected_a, f"d/da {op} {shapes}", scale=count)
    assert_matches(backend, grad_b, expected_b, f"d/db {op} {shapes}", scale=count)


@pytest.mark.parametrize("op", list(REDUCTIONS))
@FEW
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_reductions_over_random_axes(backend: Backend, op: str, data: st.DataObject,
                                     seed: int) -> None:
    shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), "shape")
    ndim = len(shape)
    one_axis = st.integers(-ndim, ndim - 1)
    axis = data.draw(st.none() | one_axis | st.lists(st.integers(0, ndim - 1), min_size=1,
                                                     max_size=ndim, unique=True).map(tuple),
                     "axis")
    keepdims = data.draw(st.booleans(), "keepdims")
    x, ref = draw(backend, seed, shape)
    expected = REDUCTIONS[op](ref, axis=axis, keepdims=keepdims)
    got = getattr(backend, op)(x, axis=axis, keepdims=keepdims)
    assert_matches(backend, got, expected, f"{op}{shape} axis={axis} keepdims={keepdims}",
                   scale=ref.size)


# ------------------------------------------------------------- one framework per call

FOREIGN_MAKERS = {
    "numpy": lambda: np.ones(3, np.float32),
    "jax": lambda: pytest.importorskip("jax.numpy").ones(3),
    "torch": lambda: pytest.importorskip("torch").ones(3),
}
MIXED_CALLS = {
    "add": lambda be, mine, other: be.add(mine, other),
    "add_reversed": lambda be, mine, other: be.add(other, mine),
    "dot": lambda be, mine, other: be.dot(mine, other),
    "matmul": lambda be, mine, other: be.matmul(other, mine),
    "exp": lambda be, mine, other: be.exp(other),
    "sum": lambda be, mine, other: be.sum(other),
    "concat": lambda be, mine, other: be.concat([mine, other]),
    "where": lambda be, mine, other: be.where(mine > 0, mine, other),
}


@pytest.mark.parametrize("other", list(FOREIGN_MAKERS))
@pytest.mark.parametrize("call", list(MIXED_CALLS))
def test_another_frameworks_array_is_refused_naming_both(backend: Backend, other: str,
                                                         call: str) -> None:
    """NumPy used to convert silently (dot(ndarray, tensor) was a tensor); torch and JAX
    answered with their own TypeErrors. JAX takes host NumPy arrays as data, as jnp does."""
    if other == backend.name:
        return  # the same framework: nothing to refuse
    mine = backend.from_host([1.0, 2.0, 3.0])
    if (backend.name, other) == ("jax", "numpy"):
        result = MIXED_CALLS[call](backend, mine, FOREIGN_MAKERS[other]())
        assert type(result).__module__.startswith("jax")
        return
    with pytest.raises(gb.InvalidArgument) as caught:
        MIXED_CALLS[call](backend, mine, FOREIGN_MAKERS[other]())
    assert f"{backend.name} backend" in str(caught.value)
    assert f"{other} array" in str(caught.value)


@pytest.mark.parametrize(("shape1", "shape2", "problem"), [
    ((2, 3), (2, 3), "the last axis of the first (3) must equal the second-to-last axis"),
    ((3,), (4,), "must equal the only axis of the second (4)"),
    ((), (3,), "both need at least one axis"),
    ((2, 3, 4), (5, 4, 2), "batch axes (2,) and (5,) do not broadcast"),
])
def test_matmul_shape_errors_are_one_message_naming_both_shapes(
        backend: Backend, shape1: tuple[int, ...], shape2: tuple[int, ...], problem: str) -> None:
    """Each framework words its own error differently; NumPy's is the reference for *whether*
    the shapes fail, gradbridge's message is the same on every backend."""
    with pytest.raises(ValueError):
        np.matmul(np.zeros(shape1), np.zeros(shape2))
    with pytest.raises(gb.InvalidArgument) as caught:
        backend.matmul(backend.zeros(shape1), backend.zeros(shape2))
    assert str(caught.value).startswith(f"matmul cannot multiply shapes {shape1} and {shape2}: ")
    assert problem in str(caught.value)


def test_matmul_shape_errors_inside_grad(backend: Backend) -> None:
    a, b = backend.zeros((2, 3)), backend.zeros((2, 3))
    with pytest.raises(gb.InvalidArgument, match=r"cannot multiply shapes \(2, 3\) and \(2, 3\)"):
        backend.grad(lambda u: backend.sum(backend.matmul(u, b)))(a)
