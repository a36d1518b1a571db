"""gb.jacobian, gb.hessian and gb.hvp on every backend, against closed forms, finite
differences and numpy.linalg.lstsq (Newton's method on the tutorial's regression)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import make_backend

import gradbridge as gb

ALL = ["numpy", "jax", "torch"]
SECOND_ORDER = ["numpy", "jax", "torch"]
# Closed forms in float64 through a handful of operations: rounding ~1e-15 relative, so 1e-12
# leaves room for the frameworks' different summation orders and still catches a wrong entry.
RTOL = 1e-12

RNG = np.random.default_rng(3)
A = RNG.standard_normal((4, 3))
B = RNG.standard_normal((3, 2))
X = RNG.standard_normal(3)
V = RNG.standard_normal(3)


def get(name: str) -> Any:
    """The backend in float64 (get_backend keeps one per name and dtype)."""
    return make_backend(name, "float64")


def host(be: Any, x: Any) -> np.ndarray:
    return np.asarray(be.to_numpy(x), dtype=np.float64)


@pytest.mark.parametrize("name", ALL)
def test_jacobian_of_a_vector_function_is_the_closed_form(name: str) -> None:
    be = get(name)
    jac = gb.jacobian(be, lambda x: be.tanh(be.matmul(be.from_host(A), x)) + x[0] * 2.0)
    got = host(be, jac(be.from_host(X)))
    # d/dx [tanh(A x) + 2 x_0] = diag(1 - tanh(A x)^2) A + 2 e_0^T in every row.
    expected = (1 - np.tanh(A @ X) ** 2)[:, None] * A + 2.0 * np.eye(3)[0]
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", ALL)
def test_jacobian_of_a_matrix_function_has_both_shapes(name: str) -> None:
    be = get(name)
    m = RNG.standard_normal((2, 3))
    got = host(be, gb.jacobian(be, lambda x, b: be.matmul(x, b))(be.from_host(m),
                                                                  be.from_host(B)))
    # (X B)[i, j] = sum_k X[i, k] B[k, j], so d/dX[p, q] = [i == p] B[q, j]; exact products.
    expected = np.einsum("ip,qj->ijpq", np.eye(2), B)
    assert got.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", ALL)
def test_jacobian_of_a_scalar_function_is_its_gradient(name: str) -> None:
    be = get(name)
    fn = lambda x: be.sum(be.exp(x) * x)  # noqa: E731
    got = host(be, gb.jacobian(be, fn)(be.from_host(X)))
    # d/dx sum(e^x x) = e^x (1 + x)
    np.testing.assert_allclose(got, np.exp(X) * (1 + X), rtol=RTOL)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hessian_of_log_cosh_is_the_closed_form(name: str) -> None:
    be = get(name)
    hess = gb.hessian(be, lambda x: be.log(be.cosh(x)) + 0.1 * x ** 2)(be.asarray(3.0))
    # d2/dx2 [log cosh x + 0.1 x^2] = 1 - tanh(x)^2 + 0.2
    assert tuple(hess.shape) == ()
    np.testing.assert_allclose(host(be, hess), 1 - np.tanh(3.0) ** 2 + 0.2, rtol=RTOL)


def _softmax_energy(be: Any, x: Any) -> Any:
    """logsumexp(A x) + sum(x^4) / 4: a non-quadratic function with a dense Hessian."""
    return be.logsumexp(be.matmul(be.from_host(A), x)) + be.sum(x ** 4) / 4.0


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hessian_matches_the_closed_form(name: str) -> None:
    be = get(name)
    got = host(be, gb.hessian(be, lambda x: _softmax_energy(be, x))(be.from_host(X)))
    # With p = softmax(A x): H = A^T (diag(p) - p p^T) A + diag(3 x^2).
    z = A @ X
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected = A.T @ (np.diag(p) - np.outer(p, p)) @ A + np.diag(3 * X ** 2)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hessian_compiles_and_keeps_float32(name: str) -> None:
    be = make_backend(name, "float32")
    hess = be.jit(gb.hessian(be, lambda x: _softmax_energy(be, x)))(be.from_host(X))
    assert str(hess.dtype).endswith("float32")
    z = A @ X
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected = A.T @ (np.diag(p) - np.outer(p, p)) @ A + np.diag(3 * X ** 2)
    # float32 through a few operations: ~1e-6 relative (DESIGN section 6 says 1e-5).
    np.testing.assert_allclose(host(be, hess), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hessian_matches_finite_differences_of_the_gradient(name: str) -> None:
    be = get(name)
    fn = lambda x: be.sum(be.sin(x) * be.roll(x, 1)) + be.sum(x) ** 3  # noqa: E731
    got = host(be, gb.hessian(be, fn)(be.from_host(X)))
    gradient, h = be.grad(fn), 1e-5
    columns = [(host(be, gradient(be.from_host(X + h * e)))
                - host(be, gradient(be.from_host(X - h * e)))) / (2 * h) for e in np.eye(3)]
    # Central differences of an exact gradient: truncation ~h^2 |f''''| ~1e-10, rounding
    # ~1e-16 |g| / h ~1e-10; 1e-7 relative to the largest entry is safely above both.
    np.testing.assert_allclose(got, np.stack(columns, axis=1), rtol=1e-7,
                               atol=1e-7 * np.max(np.abs(got)))


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hvp_is_the_hessian_times_the_vector(name: str) -> None:
    be = get(name)
    fn = lambda x: _softmax_energy(be, x)  # noqa: E731
    x, v = be.from_host(X), be.from_host(V)
    product = host(be, gb.hvp(be, fn)(x, v))
    hessian = host(be, gb.hessian(be, fn)(x))
    # The same second derivatives, summed in a different order: rounding only.
    np.testing.assert_allclose(product, hessian @ V, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_hvp_over_a_dict_of_parameters(name: str) -> None:
    be = get(name)

    def fn(p: dict[str, Any], c: Any) -> Any:
        return be.sum(p["w"] ** 2 * p["b"]) + c * p["b"] ** 3

    params = {"w": be.from_host(X), "b": be.from_host(0.7)}
    direction = {"w": be.from_host(V), "b": be.from_host(-1.3)}
    got = gb.hvp(be, fn)(params, direction, 2.0)
    # f = b sum(w^2) + c b^3: H_ww = 2 b I, H_wb = 2 w, H_bb = 6 c b.
    expected_w = 2 * 0.7 * V + 2 * X * -1.3
    expected_b = 2 * X @ V + 6 * 2.0 * 0.7 * -1.3
    np.testing.assert_allclose(host(be, got["w"]), expected_w, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(host(be, got["b"]), expected_b, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_newton_on_the_tutorial_regression_converges_in_one_step(name: str) -> None:
    """The mean squared error is quadratic in (w, b), so one exact Newton step from zero lands
    on the least-squares solution."""
    be = get(name)
    rng = np.random.default_rng(42)
    x = rng.uniform(-1.0, 1.0, 100)
    y = 3.0 * x + 2.0 + 0.1 * rng.standard_normal(100)
    data = (be.from_host(x), be.from_host(y))

    def loss(theta: Any, xs: Any, ys: Any) -> Any:
        return be.mean((theta[0] * xs + theta[1] - ys) ** 2)

    theta = be.zeros(2)
    step = be.linalg.solve(gb.hessian(be, loss)(theta, *data), be.grad(loss)(theta, *data))
    theta = theta - step
    expected = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)[0]
    # Both solve the same 2 x 2 normal equations (condition ~3) in float64: ~1e-15 apart.
    np.testing.assert_allclose(host(be, theta), expected, rtol=1e-10)
    assert abs(expected[0] - 3.0) < 0.05 and abs(expected[1] - 2.0) < 0.05  # the tutorial's fit


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ALL)
def test_jacobian_of_a_dict_says_to_use_grad(name: str) -> None:
    be = get(name)
    with pytest.raises(gb.InvalidArgument, match=r"jacobian differentiates one array.*dict"):
        gb.jacobian(be, lambda p: p["w"] * 2.0)({"w": be.from_host(X)})


@pytest.mark.parametrize("name", ALL)
def test_hessian_of_an_integer_array_says_to_convert_it(name: str) -> None:
    be = get(name)
    with pytest.raises(gb.InvalidArgument, match=r"real floating array.*int64.*astype"):
        gb.hessian(be, lambda x: be.sum(x * x))(be.asarray([1, 2, 3]))


@pytest.mark.parametrize("name", ALL)
def test_jacobian_of_a_python_number_is_not_differentiable(name: str) -> None:
    be = get(name)
    with pytest.raises(gb.NotDifferentiable):
        gb.jacobian(be, lambda x: 2.0)(be.from_host(X))
