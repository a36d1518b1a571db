"""The NumPy backend's own reverse-mode autodiff: each primitive's VJP, broadcasting, the engine.

References are central finite differences in float64 and closed forms; the cross-backend
conformance suite lives in test_conformance.py / test_gradients.py. Finite differences use a
step H = 1e-6 on O(1) inputs: truncation error ~H**2 * |f'''| ~ 1e-12 and rounding error
~1e-16 * |f| / H ~ 1e-10, so gradients must agree to FD_RTOL = 1e-6 relative (FD_ATOL = 1e-8
absolute for entries near zero); a wrong VJP is off by O(1).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import finite_difference

import gradbridge as gb
from gradbridge.backends.numpy import NumpyBackend
from gradbridge.backends.numpy.autodiff import Tracer
from gradbridge.core.backend import Backend, DeviceNotAvailable, InvalidArgument, NotDifferentiable

FD_RTOL = 1e-6
FD_ATOL = 1e-8

# Typed as the protocol, as users hold backends (get_backend returns a Backend)
be: Backend = gb.get_backend("numpy", device="cpu", dtype="float64")
be32: Backend = gb.get_backend("numpy", device="cpu", dtype="float32")


def check_against_finite_differences(op: Callable[..., Any], args: list[np.ndarray]) -> None:
    """Differentiate ``sum(op(*args) * c)`` for a fixed random ``c``: every output entry counts."""
    weights = np.random.default_rng(7).uniform(0.5, 1.5, np.shape(op(*args)))

    def scalar(*xs: Any) -> Any:
        return be.sum(op(*xs) * weights)

    value, grads = be.value_and_grad(scalar, argnums=tuple(range(len(args))))(*args)
    np.testing.assert_allclose(value, scalar(*args), rtol=1e-12)  # same forward arithmetic
    for i, grad in enumerate(grads):
        assert grad.shape == np.shape(args[i]) and grad.dtype == np.float64
        np.testing.assert_allclose(grad, finite_difference(scalar, args, i),
                                   rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"argument {i}")


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def positive(*shape: int, seed: int = 1) -> np.ndarray:
    """Values in [0.5, 2): inside the domain of log/sqrt/pow and safe as divisors."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# Inputs avoid kinks by construction: continuous random draws never tie or sit within H of 0
# or of a clip bound for these fixed seeds.
PRIMITIVES: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    "add": (be.add, [normal(2, 3), normal(2, 3, seed=1)]),
    "subtract": (be.subtract, [normal(2, 3), normal(2, 3, seed=1)]),
    "multiply": (be.multiply, [normal(2, 3), normal(2, 3, seed=1)]),
    "divide": (be.divide, [normal(2, 3), positive(2, 3)]),
    "negative": (be.negative, [normal(4)]),
    "pow array exponent": (be.pow, [positive(2, 3), normal(2, 3)]),
    "pow scalar 3": (lambda x: x**3.0, [normal(4)]),
    "pow scalar 2": (lambda x: be.pow(x, 2), [normal(4)]),
    "pow scalar 0.5": (lambda x: x**0.5, [positive(4)]),
    "rpow": (lambda x: 2.0**x, [normal(4)]),
    "abs": (be.abs, [normal(5)]),
    "sqrt": (be.sqrt, [positive(5)]),
    "exp": (be.exp, [normal(5)]),
    "log": (be.log, [positive(5)]),
    "log1p": (be.log1p, [positive(5) - 0.4]),
    "tanh": (be.tanh, [normal(5)]),
    "maximum": (be.maximum, [normal(6), normal(6, seed=1)]),
    "minimum": (be.minimum, [normal(6), normal(6, seed=1)]),
    "maximum with scalar": (lambda x: be.maximum(x, 0.0), [normal(6)]),
    "where": (lambda x, y: be.where(np.array([True, False, True]), x, y),
              [normal(3), normal(3, seed=1)]),
    "clip": (lambda x: be.clip(x, -0.5, 0.5), [normal(8)]),
    "clip min only": (lambda x: be.clip(x, min=0.0), [normal(8)]),
    "matmul 1-D 1-D": (be.matmul, [normal(3), normal(3, seed=1)]),
    "matmul 2-D 1-D": (be.matmul, [normal(2, 3), normal(3, seed=1)]),
    "matmul 1-D 2-D": (be.matmul, [normal(3), normal(3, 4, seed=1)]),
    "matmul 2-D 2-D": (be.matmul, [normal(2, 3), normal(3, 4, seed=1)]),
    "matmul batched": (be.matmul, [normal(5, 2, 3), normal(3, 4, seed=1)]),
    "matmul batched 1-D": (be.matmul, [normal(5, 2, 3), normal(3, seed=1)]),
    "matmul 1-D batched": (be.matmul, [normal(3), normal(5, 3, 4, seed=1)]),
    "matmul broadcast batch": (be.matmul, [normal(2, 1, 2, 3), normal(5, 3, 2, seed=1)]),
    "matrix_transpose": (be.matrix_transpose, [normal(4, 2, 3)]),
    ".T": (lambda x: x.T, [normal(2, 3, 4)]),
    "sum all": (be.sum, [normal(2, 3)]),
    "sum axis 0": (lambda x: be.sum(x, axis=0), [normal(2, 3)]),
    "sum axes keepdims": (lambda x: be.sum(x, axis=(0, 2), keepdims=True), [normal(2, 3, 4)]),
    "mean axis -1": (lambda x: be.mean(x, axis=-1), [normal(2, 3)]),
    "mean keepdims": (lambda x: be.mean(x, axis=1, keepdims=True), [normal(2, 3)]),
    "max all": (be.max, [normal(2, 3)]),
    "max axis keepdims": (lambda x: be.max(x, axis=1, keepdims=True), [normal(2, 3)]),
    "min axis 0": (lambda x: be.min(x, axis=0), [normal(2, 3)]),
    "logsumexp all": (be.logsumexp, [normal(2, 3)]),
    "logsumexp axis 1": (lambda x: be.logsumexp(x, axis=1), [normal(2, 3)]),
    "logsumexp keepdims": (lambda x: be.logsumexp(x, axis=0, keepdims=True), [normal(2, 3)]),
    "reshape": (lambda x: be.reshape(x, (3, 2)), [normal(2, 3)]),
    "expand_dims": (lambda x: be.expand_dims(x, -1), [normal(2, 3)]),
    "concat axis 0": (lambda x, y: be.concat([x, y], axis=0), [normal(2, 3), normal(1, 3)]),
    "concat axis -1": (lambda x, y: be.concat([x, y, x], axis=-1), [normal(2, 3), normal(2, 2)]),
    "concat flattened": (lambda x, y: np.concatenate([x, y], axis=None), [normal(2, 3), normal(2)]),
    "stack axis 1": (lambda x, y: be.stack([x, y], axis=1), [normal(2, 3), normal(2, 3)]),
    "index int": (lambda x: x[1], [normal(3, 4)]),
    "index column": (lambda x: x[:, 0], [normal(3, 4)]),
    "index slice step": (lambda x: x[::-2, 1:3], [normal(5, 4)]),
    "index newaxis ellipsis": (lambda x: x[..., None, 1], [normal(2, 3)]),
    "index repeated": (lambda x: x[np.array([0, 2, 0, 0])], [normal(3, 2)]),
    "operators": (lambda x, y: ((x + y) * x - y / 2.0 - 1.0 / y + 3.0 - x) ** 2 @ -y,
                  [normal(3), positive(3)]),
    # a mean's gradient repeats one number: power and a scalar's unbroadcast take a short path
    "mean of square": (lambda x: be.mean(x**2), [normal(2, 3)]),
    "mean of cube": (lambda x: be.mean(x**3.0), [normal(5)]),
    "mean of scalar plus array": (lambda w: be.mean(w + normal(4, seed=2)), [normal()]),
    "mean_squared_error": (be.mean_squared_error, [normal(2, 3), normal(2, 3, seed=1)]),
    "mean_squared_error 0-D": (be.mean_squared_error, [normal(), normal(seed=1)]),
    "mean_squared_error constant target": (lambda p: be.mean_squared_error(p, normal(4, seed=2)),
                                           [normal(4)]),
}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_gradient_matches_finite_differences(name: str) -> None:
    op, args = PRIMITIVES[name]
    check_against_finite_differences(op, args)


def test_numpy_functions_on_traced_values_are_differentiated() -> None:
    """np.add / np.exp (NEP 13) and np.sum / np.stack (NEP 18) route to the primitives."""
    check_against_finite_differences(
        lambda x, y: np.stack([np.exp(np.add(x, y))[0], np.sum(np.multiply(y, x), axis=0)]),
        [normal(2, 3), normal(2, 3, seed=1)],
    )


@pytest.mark.parametrize(("shape_a", "shape_b"), [((3, 1), (4,)), ((2, 3), (3,)), ((), (2, 2)),
                                                  ((2, 1, 3), (4, 1))])
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide", "maximum"])
def test_broadcasting_gradients(op: str, shape_a: tuple[int, ...],
                                shape_b: tuple[int, ...]) -> None:
    check_against_finite_differences(getattr(be, op), [normal(*shape_a), positive(*shape_b)])


@settings(max_examples=30, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       op=st.sampled_from(["add", "subtract", "multiply", "divide", "maximum", "pow"]))
def test_broadcasting_gradients_for_generated_shapes(shapes: Any, op: str) -> None:
    shape_a, shape_b = shapes.input_shapes
    check_against_finite_differences(getattr(be, op), [positive(*shape_a, seed=3),
                                                       positive(*shape_b, seed=4)])


def test_scalar_times_array_gradient_is_the_dot_product() -> None:
    """The fused path for a scalar weight: d/dw sum(w * x * c) = x . c (closed form)."""
    x, c = normal(1000), normal(1000, seed=1)
    grad = be.grad(lambda w: be.sum(w * x * c))(np.float64(0.3))
    np.testing.assert_allclose(grad, np.dot(x, c), rtol=1e-12)  # same sum, another order


# ------------------------------------------------------------- the fused mean squared error


@pytest.mark.parametrize(("shape_p", "shape_t"), [((5,), (5,)), ((3, 1), (4,)), ((), (2, 3)),
                                                  ((2, 3), ())])
@pytest.mark.parametrize("traced", [(0,), (1,), (0, 1)])
def test_mean_squared_error_broadcasts_like_subtraction(shape_p: tuple[int, ...],
                                                        shape_t: tuple[int, ...],
                                                        traced: tuple[int, ...]) -> None:
    """The mean over the broadcast (p - t) ** 2, as be.mean((p - t) ** 2) computes it; gradients
    of either or both arguments (in-place and shared residual paths) against central differences.
    """
    p, t = normal(*shape_p, seed=5), normal(*shape_t, seed=6)
    np.testing.assert_allclose(be.mean_squared_error(p, t), np.mean((p - t) ** 2), rtol=1e-13)

    def loss(a: Any, b: Any) -> Any:
        return be.mean_squared_error(a, b)

    value, grads = be.value_and_grad(loss, argnums=traced)(p, t)
    np.testing.assert_allclose(value, np.mean((p - t) ** 2), rtol=1e-13)
    for i, grad in zip(traced, grads, strict=True):
        assert np.shape(grad) == np.shape((p, t)[i])
        np.testing.assert_allclose(grad, finite_difference(loss, [p, t], i),
                                   rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"argument {i}")


def test_mean_squared_error_matches_the_unfused_default() -> None:
    """BackendBase's default (mean of the squared difference, what JAX and PyTorch run) and the
    fused primitive agree in value and gradient, here both differentiated by NumPy's autodiff.
    Same arithmetic up to summation order: 1e-13 relative in float64."""
    from gradbridge.core.backend import BackendBase

    x, y = normal(50), normal(50, seed=1)
    numpy_backend = NumpyBackend(dtype="float64")

    def loss(p: Any, fused: bool) -> Any:
        prediction = p["w"] * x + p["b"]
        if fused:
            return be.mean_squared_error(prediction, y)
        return BackendBase.mean_squared_error(numpy_backend, prediction, y)

    params = {"w": np.float64(0.7), "b": np.float64(-0.2)}
    fused_value, fused = be.value_and_grad(loss)(params, True)
    plain_value, plain = be.value_and_grad(loss)(params, False)
    np.testing.assert_allclose(fused_value, plain_value, rtol=1e-13)
    for name in params:
        np.testing.assert_allclose(fused[name], plain[name], rtol=1e-13)
    residual = params["w"] * x + params["b"] - y  # closed form: 2 mean(r x) and 2 mean(r)
    np.testing.assert_allclose(fused["w"], 2 * np.mean(residual * x), rtol=1e-13)
    np.testing.assert_allclose(fused["b"], 2 * np.mean(residual), rtol=1e-13)


def test_mean_squared_error_residual_reuse_is_invisible() -> None:
    """The VJP scales its residual in place: the prediction used again elsewhere, the prediction
    itself differentiated, and repeated calls all keep their own values."""
    t = normal(6, seed=1)

    def loss(p: Any) -> Any:
        return be.mean_squared_error(p, t) + be.sum(p * p)  # d/dp = 2 (p - t) / 6 + 2 p

    value_and_grad = be.value_and_grad(loss)
    p = normal(6)
    first_value, first = value_and_grad(p)
    expected = 2 * (p - t) / 6 + 2 * p
    np.testing.assert_allclose(first, expected, rtol=1e-13)
    first *= 0.0  # the caller owns the gradient: it aliases no buffer of the next call
    second_value, second = value_and_grad(p)
    np.testing.assert_allclose(second, expected, rtol=1e-13)
    assert first_value == second_value
    same = be.value_and_grad(lambda q: be.mean_squared_error(q, q))(p)
    assert same[0] == 0.0 and not np.any(same[1])


def test_mean_squared_error_keeps_float32() -> None:
    p, t = be32.from_host(normal(100)), be32.from_host(normal(100, seed=1))
    value, grad = be32.value_and_grad(be32.mean_squared_error)(p, t)
    assert value.dtype == np.float32 and grad.dtype == np.float32
    reference = np.mean((p.astype(np.float64) - t) ** 2)
    # float32 rounding ~6e-8 per operation, over a 100-term dot product: 1e-5 relative is ample
    np.testing.assert_allclose(value, reference, rtol=1e-5)
    np.testing.assert_allclose(grad, 2 * (p.astype(np.float64) - t) / 100, rtol=1e-5)


# ------------------------------------------------------------------------------ the engine


def test_value_used_twice_accumulates() -> None:
    """d/dx sum(x*x + x) = 2x + 1: both uses of x (and both operands of x*x) add up."""
    x = normal(4)
    np.testing.assert_allclose(be.grad(lambda t: be.sum(t * t + t))(x), 2 * x + 1, rtol=1e-15)


def test_long_chain_does_not_hit_the_recursion_limit() -> None:
    """10,000 recorded ops, deeper than sys.getrecursionlimit(): the sort is iterative."""
    steps, rate = 5000, 0.999
    assert steps * 2 > sys.getrecursionlimit()

    def chain(x: Any) -> Any:
        y = x
        for _ in range(steps):
            y = y * rate + x
        return y

    # y_k = rate * y_(k-1) + x with y_0 = x, so dy/dx = sum_{j=0..steps} rate**j
    expected = (1 - rate ** (steps + 1)) / (1 - rate)
    np.testing.assert_allclose(be.grad(chain)(np.float64(2.0)), expected, rtol=1e-10)


def test_operations_after_the_output_do_not_count() -> None:
    """The tape holds everything fn computed; only what the output depends on is walked."""
    def fn(x: Any) -> Any:
        loss = be.sum(x * x)
        be.exp(x * 3.0)  # recorded after the output, not part of it
        return loss

    x = normal(4)
    np.testing.assert_allclose(be.grad(fn)(x), 2 * x, rtol=1e-15)


def test_nested_dict_params_keep_their_structure() -> None:
    params: dict[str, Any] = {"layer": {"W": normal(2, 3), "b": normal(3, seed=1)},
                              "scales": [normal(3, seed=2)]}
    x = normal(4, 2, seed=3)

    def loss(p: Any) -> Any:
        hidden = be.tanh(x @ p["layer"]["W"] + p["layer"]["b"])
        return be.mean((hidden * p["scales"][0]) ** 2)

    value, grads = be.value_and_grad(loss)(params)
    assert list(grads) == ["layer", "scales"] and list(grads["layer"]) == ["W", "b"]
    assert isinstance(grads["scales"], list) and len(grads["scales"]) == 1
    leaves = [("W", lambda p, v: {**p, "layer": {**p["layer"], "W": v}}, grads["layer"]["W"]),
              ("b", lambda p, v: {**p, "layer": {**p["layer"], "b": v}}, grads["layer"]["b"]),
              ("s", lambda p, v: {**p, "scales": [v]}, grads["scales"][0])]
    for name, put, grad in leaves:
        leaf = {"W": params["layer"]["W"], "b": params["layer"]["b"], "s": params["scales"][0]}
        numeric = finite_difference(lambda v, put=put: loss(put(params, v)), [leaf[name]], 0)
        np.testing.assert_allclose(grad, numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)
    np.testing.assert_allclose(value, loss(params), rtol=1e-12)


def test_argnums_tuple_and_untouched_other_arguments() -> None:
    settings_object = {"scale": 3.0}
    seen = []

    def fn(a: Any, config: dict[str, float], b: Any) -> Any:
        seen.append(config)
        return be.sum(a * b) * config["scale"]

    a, b = normal(3), normal(3, seed=1)
    value, grads = be.value_and_grad(fn, argnums=(0, 2))(a, settings_object, b)
    assert seen[0] is settings_object  # passed through as is, not traced or copied
    assert isinstance(grads, tuple) and len(grads) == 2
    np.testing.assert_allclose(grads[0], 3.0 * b, rtol=1e-15)
    np.testing.assert_allclose(grads[1], 3.0 * a, rtol=1e-15)
    np.testing.assert_allclose(value, 3.0 * np.dot(a, b), rtol=1e-12)


def test_inputs_the_output_ignores_get_zero_gradients() -> None:
    params = {"used": normal(3), "unused": normal(2, 2)}
    _, grads = be.value_and_grad(lambda p: be.sum(p["used"]))(params)
    np.testing.assert_array_equal(grads["unused"], np.zeros((2, 2)))
    _, grads = be.value_and_grad(lambda p: np.float64(4.0))(params)  # nothing traced at all
    np.testing.assert_array_equal(grads["used"], np.zeros(3))


@pytest.mark.parametrize("output", [lambda x: x * 2, lambda x: (be.sum(x), be.sum(x))])
def test_non_scalar_output_is_an_error(output: Callable[[Any], Any]) -> None:
    with pytest.raises(InvalidArgument, match="scalar"):
        be.value_and_grad(output)(normal(3))


def test_one_element_output_counts_as_scalar_and_value_is_0d() -> None:
    value, grad = be.value_and_grad(lambda x: be.sum(x, axis=0, keepdims=True))(normal(3))
    assert type(value) is np.ndarray and value.shape == () and value.dtype == np.float64
    np.testing.assert_array_equal(grad, np.ones(3))


def test_0d_gradients_are_numpy_scalars_of_the_backend_dtype() -> None:
    """Immutable, so they alias nothing; as NumPy returns 0-D results, and cheaper to update."""
    grads = be32.grad(lambda p: p["w"] * p["b"] + be32.sum(p["v"]))(
        {"w": 2.0, "b": np.float64(3.0), "v": np.zeros(2)})
    assert type(grads["w"]) is np.float32 and grads["w"] == 3.0
    assert type(grads["b"]) is np.float32 and grads["b"] == 2.0
    assert type(grads["v"]) is np.ndarray and grads["v"].dtype == np.float32


def test_no_state_leaks_between_calls() -> None:
    """The same call twice gives the same gradient; returned gradients alias nothing."""
    value_and_grad = be.value_and_grad(lambda p: be.sum(p["a"] * p["a"] + p["b"]))
    params = {"a": normal(3), "b": normal(3, seed=1)}
    first = value_and_grad(params)
    first[1]["a"] *= 100.0  # the caller owns what it got back
    first[1]["b"][:] = -1.0
    second = value_and_grad(params)
    np.testing.assert_array_equal(second[1]["a"], 2 * params["a"])
    np.testing.assert_array_equal(second[1]["b"], np.ones(3))
    np.testing.assert_array_equal(first[0], second[0])


def test_the_graph_is_released_after_backward() -> None:
    """Values captured by VJPs (here exp's output) are freed once the call returns."""
    captured: list[weakref.ref[np.ndarray]] = []

    def fn(x: Any) -> Any:
        y = be.exp(x)
        captured.append(weakref.ref(y.value))
        return be.sum(y)

    be.grad(fn)(normal(1000))
    assert captured[0]() is None


def test_inputs_are_not_modified() -> None:
    x = normal(3)
    before = x.copy()
    be.grad(lambda t: be.sum(t**2))(x)
    np.testing.assert_array_equal(x, before)


# ------------------------------------------------------- documented subgradients at kinks


def test_subgradient_conventions() -> None:
    """maximum/minimum ties go to x1; clip passes the gradient at its bounds; max/min
    reductions split ties equally; abs has gradient 0 at 0 (module docstring)."""
    one = np.float64(1.0)
    np.testing.assert_array_equal(
        be.grad(lambda a, b: be.maximum(a, b), argnums=(0, 1))(one, one), (1.0, 0.0))
    np.testing.assert_array_equal(
        be.grad(lambda a, b: be.minimum(a, b), argnums=(0, 1))(one, one), (1.0, 0.0))
    bounds = np.array([-1.0, 1.0, 2.0])
    np.testing.assert_array_equal(be.grad(lambda x: be.sum(be.clip(x, -1.0, 1.0)))(bounds),
                                  [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(be.grad(be.max)(np.array([3.0, 1.0, 3.0])), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(be.grad(be.min)(np.array([1.0, 1.0, 1.0, 2.0])),
                                  [1 / 3, 1 / 3, 1 / 3, 0.0])
    assert be.grad(be.abs)(np.float64(0.0)) == 0.0


def test_logsumexp_is_stable_and_its_gradient_is_softmax() -> None:
    x = np.array([1000.0, 1000.0, 999.0])
    value, grad = be.value_and_grad(be.logsumexp)(x)
    softmax = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    np.testing.assert_allclose(value, 1000.0 + np.log(1 + 1 + np.exp(-1.0)), rtol=1e-15)
    np.testing.assert_allclose(grad, softmax, rtol=1e-14)


# ---------------------------------------------------------------- traced values as arrays


def test_traced_values_behave_like_arrays() -> None:
    def fn(x: Any) -> Any:
        assert isinstance(x, Tracer)
        assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == np.float64 and len(x) == 2
        mask = x > 0
        assert type(mask) is np.ndarray and mask.dtype == np.bool_
        assert type(np.isfinite(x)) is np.ndarray  # boolean ufuncs: plain result
        assert type(x == x) is np.ndarray
        rows = list(x)
        assert f"{be.sum(x):.6f}" == f"{np.sum(x.value):.6f}"  # printing does not leave the graph
        return be.sum(be.where(mask, x, 0.0)) + be.sum(rows[0] * rows[1])

    x = normal(2, 3)
    expected = (x > 0) + np.stack([x[1], x[0]])  # relu's gradient plus the row product's
    np.testing.assert_allclose(be.grad(fn)(x), expected, rtol=1e-15)


def test_unsupported_operations_say_so() -> None:
    with pytest.raises(NotDifferentiable, match="fmod"):
        be.grad(lambda x: be.sum(np.fmod(x, 2.0)))(normal(3))
    with pytest.raises(NotDifferentiable, match="in place"):
        be.grad(lambda x: x.__setitem__(0, 1.0))(normal(3))
    with pytest.raises(NotDifferentiable, match="out"):
        be.grad(lambda x: be.sum(np.exp(x, out=np.empty(3))))(normal(3))


# -------------------------------------------------------------------------- outside grad


def test_outside_grad_results_are_plain_numpy_arrays() -> None:
    x, y = normal(2, 3), positive(2, 3)
    results = [be.add(x, y), x * y, be.exp(x), be.matmul(x, y.T), be.sum(x, axis=0),
               be.mean(x, axis=1), be.max(x, axis=0), be.logsumexp(x, axis=1),
               be.reshape(x, (3, 2)), be.concat([x, y]), be.stack([x, y]), be.clip(x, 0.0, 1.0),
               be.where(x > 0, x, y), be.matrix_transpose(x), be.pow(y, 2.5)]
    assert all(type(r) is np.ndarray for r in results)
    assert be.add.__wrapped__ is np.add and be.sum(x).shape == ()  # NumPy's, checked


def test_float32_stays_float32() -> None:
    x = be32.from_host(normal(2, 3))
    assert x.dtype == np.float32
    for result in [x * 2.0, be32.exp(x), be32.sum(x), be32.mean(x, axis=0), x @ x.T,
                   be32.logsumexp(x, axis=1), be32.maximum(x, 0.0), be32.clip(x, -1.0, 1.0),
                   be32.zeros(3), be32.ones((2, 2)), be32.full(2, 3.0)]:
        assert result.dtype == np.float32
    params = {"w": np.float64(0.5), "b": 0.0}  # host float64 and a Python number
    value, grads = be32.value_and_grad(lambda p: be32.mean((p["w"] * x + p["b"]) ** 2))(params)
    assert value.dtype == np.float32 and value.shape == ()
    assert grads["w"].dtype == np.float32 and grads["b"].dtype == np.float32
    reference = be.grad(lambda p: be.mean((p["w"] * x.astype(np.float64) + p["b"]) ** 2))(params)
    # float32 rounding is ~6e-8 per op; over this short chain 1e-5 relative is ample
    np.testing.assert_allclose(grads["w"], reference["w"], rtol=1e-5)


def test_asarray_casts_floats_and_keeps_integers() -> None:
    assert be32.from_host([1.0, 2.0]).dtype == np.float32
    assert be32.from_host(np.arange(3)).dtype == np.arange(3).dtype
    assert be32.from_host(np.array([True])).dtype == np.bool_
    x = be.from_host(normal(3))
    assert be.from_host(x) is x  # already right: no copy


def test_identity_devices_and_version() -> None:
    assert type(be) is NumpyBackend
    assert be.name == "numpy" and be.device == "cpu" and be.dtype == "float64"
    assert NumpyBackend.available_devices() == ["cpu"]
    assert NumpyBackend.framework_version() == np.__version__ == be.capabilities.version
    with pytest.raises(DeviceNotAvailable, match="cpu"):
        NumpyBackend(device="cuda")


@pytest.mark.parametrize("name", ["nextafter"])
def test_a_namespace_function_the_autodiff_lacks_is_not_differentiable(name: str) -> None:
    """Never a wrong value or a foreign TypeError: one NotDifferentiable naming the function."""
    with pytest.raises(NotDifferentiable, match=name):
        be.grad(lambda v: be.sum(getattr(be, name)(v, 0.3)))(np.array([0.5, 1.0]))
