"""Every differentiable function of core/ops.py, on every backend in float64, driven by op_cases.

Each case is reduced to a scalar by a random linear functional of its outputs,
``sum_k sum(out_k * c_k)`` with fixed random ``c_k``, so every output element weighs in. Its
gradient is checked against central finite differences along random directions, against the
other backends, and (on all three) its Hessian-vector product against finite differences
of gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import make_backend
from op_cases import CASES, OpCase, differentiable_ops, outputs

import gradbridge as gb
from gradbridge.core import ops

Array = Any

# Central differences in float64 with step H: truncation ~H**2/6 |f'''| and rounding
# ~1e-16 |f| / H are both ~1e-11 for these O(1) functions on their smooth domains; FD_RTOL
# leaves two to three orders for larger third derivatives, while a wrong rule is off by O(1).
H = 1e-5
FD_RTOL = 1e-7
# Same float64 inputs, different frameworks and LAPACK calls: only rounding order differs,
# ~1e-14 relative times the condition numbers (<= ~10 here); 1e-10 as DESIGN section 6 says.
BACKEND_RTOL = 1e-10

IDS = [c.id for c in CASES]


def backend(name: str) -> Any:
    """The backend in float64 (get_backend keeps one per name and dtype; skipped, or failed in
    CI, where not installed)."""
    return make_backend(name, "float64")


NUMPY_REFUSES = {
    "imag-of_complex": "complex values are forward only in gradbridge's NumPy autodiff",
    "real-of_complex": "complex values are forward only in gradbridge's NumPy autodiff",
    "linalg.svd-tall_full": "NumPy's svd gradient needs full_matrices=False (or a square input)",
    "linalg.svd-wide_full": "NumPy's svd gradient needs full_matrices=False (or a square input)",
}
"""Cases JAX and torch differentiate and the NumPy autodiff refuses with NotDifferentiable (a
test below holds it to that; README, "Backends, and where they differ")."""


def marked(name: str, case: OpCase) -> Any:
    """The (case, backend) parameter, with its id."""
    return pytest.param(case, name, id=f"{case.id}-{name}")


def every(names: tuple[str, ...]) -> list[Any]:
    """Every case on every named backend that differentiates it."""
    return [marked(n, c) for c in CASES for n in names
            if not (n == "numpy" and c.id in NUMPY_REFUSES)]


@pytest.mark.parametrize("case_id", sorted(NUMPY_REFUSES))
def test_numpy_refuses_what_it_does_not_differentiate(case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    be = backend("numpy")
    with pytest.raises(gb.NotDifferentiable):
        be.grad(loss_of(be, case))(on(be, inputs_of(case)))


def loss_of(be: Any, case: OpCase) -> Any:
    """The case's scalar: a fixed random linear functional of all its outputs."""
    def loss(xs: list[Array]) -> Array:
        rng = np.random.default_rng(7)
        total = None
        for out in outputs(case.call(be, *xs)):
            term = be.sum(out * be.from_host(rng.standard_normal(tuple(out.shape))))
            total = term if total is None else total + term
        return total

    return loss


def on(be: Any, arrays: list[np.ndarray]) -> list[Array]:
    return [be.from_host(a) for a in arrays]


def host(be: Any, tree: list[Array]) -> list[np.ndarray]:
    return [np.asarray(be.to_numpy(a), dtype=np.float64) for a in tree]


def direction(inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One random direction per case: a wrong gradient entry shows in <grad, v> almost surely."""
    rng = np.random.default_rng(99)
    return [rng.standard_normal(x.shape) for x in inputs]


@dataclass(frozen=True)
class Evaluated:
    """One case on one backend: the loss and its gradient at x, x + H v and x - H v."""

    values: tuple[float, float, float]
    grads: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]


EVALUATED: dict[tuple[str, str], Evaluated] = {}
"""Each (case, backend) evaluated once, for the three checks below."""


def evaluated(case: OpCase, name: str) -> Evaluated:
    key = (case.id, name)
    if key not in EVALUATED:
        be, inputs = backend(name), inputs_of(case)
        value_and_grad = compiled(be, case, be.value_and_grad(loss_of(be, case)))
        values, grads = [], []
        for step in (0.0, H, -H):
            value, grad = value_and_grad(on(be, shifted(inputs, step)))
            for g, x in zip(grad, inputs, strict=True):
                assert tuple(g.shape) == x.shape and str(g.dtype).endswith("float64"), g
            values.append(float(be.to_numpy(value)))
            grads.append(host(be, grad))
        EVALUATED[key] = Evaluated((values[0], values[1], values[2]),
                                   (grads[0], grads[1], grads[2]))
    return EVALUATED[key]


def compiled(be: Any, case: OpCase, fn: Any) -> Any:
    """``be.jit(fn)`` on JAX, whose eager mode compiles every primitive of every case on its
    own (measured: 1.6 times the CPU time of one compilation per function); eager elsewhere
    and for cases whose shapes depend on values."""
    return be.jit(fn) if be.name == "jax" and not case.eager else fn


def inputs_of(case: OpCase) -> list[np.ndarray]:
    return case.draw(seed=IDS.index(case.id))


def shifted(inputs: list[np.ndarray], step: float) -> list[np.ndarray]:
    """The inputs moved by ``step`` along the case's direction."""
    return [x + step * d for x, d in zip(inputs, direction(inputs), strict=True)]


def test_every_differentiable_op_has_a_case() -> None:
    assert sorted(differentiable_ops() - {c.op for c in CASES}) == []
    assert sorted({c.op for c in CASES} - differentiable_ops()) == []
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize(("case", "name"),
                         every(("numpy", "jax", "torch")))
def test_gradient_matches_finite_differences(case: OpCase,
                                             name: str) -> None:
    result = evaluated(case, name)
    _, upper, lower = result.values
    expected = (upper - lower) / (2 * H)
    v = direction(inputs_of(case))
    got = sum(float(np.sum(g * d)) for g, d in zip(result.grads[0], v, strict=True))
    scale = sum(float(np.sum(np.abs(g * d))) for g, d in zip(result.grads[0], v, strict=True))
    assert abs(got - expected) <= FD_RTOL * max(1.0, scale), (got, expected)


@pytest.mark.parametrize(("case", "name"),
                         every(("numpy", "torch")))
def test_gradient_agrees_with_jax(case: OpCase, name: str) -> None:
    expected = evaluated(case, "jax").grads[0]
    for g, e in zip(evaluated(case, name).grads[0], expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=BACKEND_RTOL,
                                   atol=BACKEND_RTOL * max(1.0, float(np.max(np.abs(e)))))


@pytest.mark.parametrize(("case", "name"),
                         every(("numpy", "jax", "torch")))
def test_hessian_vector_product_matches_finite_differences(case: OpCase, name: str) -> None:
    be, inputs = backend(name), inputs_of(case)
    hvp = compiled(be, case, gb.hvp(be, loss_of(be, case)))
    product = hvp(on(be, inputs), on(be, direction(inputs)))
    _, upper, lower = evaluated(case, name).grads
    for p, hi, lo in zip(host(be, product), upper, lower, strict=True):
        expected = (hi - lo) / (2 * H)
        # Differences of gradients: the same ~1e-10 truncation and rounding as above, now
        # elementwise, so the tolerance is taken against the largest entry of the product.
        np.testing.assert_allclose(p, expected, rtol=1e-6,
                                   atol=1e-6 * max(1.0, float(np.max(np.abs(expected)))))


# ----------------------------------------------------------------------------------- kinks

TIED = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
KINKS = [
    # (id, scalar function of x, x, the gradient DESIGN section 2 documents)
    ("abs_at_zero", lambda be, x: be.sum(be.abs(x)), [0.0, -0.0, 1.5, -2.0], [0.0, 0.0, 1, -1]),
    ("clip_on_its_bounds", lambda be, x: be.sum(be.clip(x, -1.0, 1.0)),
     [-1.0, 1.0, 0.0, 2.0, -3.0], [1.0, 1.0, 1.0, 0.0, 0.0]),
    ("maximum_tie_to_x1", lambda be, x: be.sum(be.maximum(x[:2], x[2:]) * be.asarray([1.0, 2.0])),
     [1.0, 5.0, 1.0, 3.0], [1.0, 2.0, 0.0, 0.0]),
    ("minimum_tie_to_x1", lambda be, x: be.sum(be.minimum(x[:2], x[2:]) * be.asarray([1.0, 2.0])),
     [1.0, 5.0, 1.0, 3.0], [1.0, 0.0, 0.0, 2.0]),
    ("maximum_tie_to_a_scalar_x1", lambda be, x: be.sum(be.maximum(1.0, x)),
     [1.0, 0.0, 2.0], [0.0, 0.0, 1.0]),
    ("max_ties_split", lambda be, x: be.sum(be.max(x, axis=1) * be.asarray([1.0, 3.0])),
     TIED, [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]]),
    ("max_all_ties_split", lambda be, x: be.max(x), TIED, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]]),
    ("min_ties_split_keepdims", lambda be, x: be.sum(be.min(x, axis=0, keepdims=True)),
     TIED, [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
    ("min_all_ties_split", lambda be, x: be.min(-x), TIED, [[0.0, -0.5, -0.5], [0.0, 0.0, 0.0]]),
]


@pytest.mark.parametrize("name", ["numpy", "jax", "torch"])
@pytest.mark.parametrize(("fn", "x", "expected"), [k[1:] for k in KINKS],
                         ids=[k[0] for k in KINKS])
def test_kinks_have_the_documented_subgradient(name: str, fn: Any,
                                               x: Any, expected: Any) -> None:
    be = backend(name)
    got = be.grad(lambda v: fn(be, v))(be.from_host(np.asarray(x)))
    # Weights 0, 1/k or whole numbers: equal to rounding (1e-15), zeros exactly (atol=0).
    np.testing.assert_allclose(np.asarray(be.to_numpy(got)), np.asarray(expected), rtol=1e-15,
                               atol=0)


PIECEWISE_CONSTANT = [op.name for op in ops.MAIN
                      if not op.differentiable and op.note.startswith("piecewise constant")]


@pytest.mark.parametrize("name", ["numpy", "jax", "torch"])
@pytest.mark.parametrize("op", [*PIECEWISE_CONSTANT, "floor_divide"])
def test_piecewise_constant_functions_have_zero_gradient(name: str,
                                                         op: str) -> None:
    be = backend(name)
    fn = getattr(be, op)
    step = (lambda v: fn(v, 0.75)) if op == "floor_divide" else fn
    x = be.from_host([-1.3, -0.2, 0.4, 2.6])
    # d/dx [step(x) * x] = step(x) where step is locally constant: exact values, no rounding.
    got = be.grad(lambda v: be.sum(step(v) * v))(x)
    np.testing.assert_array_equal(np.asarray(be.to_numpy(got)), np.asarray(be.to_numpy(step(x))))
