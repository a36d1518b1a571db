"""One gradient case (or more) for every differentiable function of ``core/ops.py``.

A case names the op (``"sin"``, ``"linalg.solve"``), draws its differentiable arrays on the host
in float64 from a domain where the function is smooth (positive for ``log``, (-1, 1) for
``acos``, SPD for ``cholesky``, well-separated spectra for ``eigh``/``svd``, distinct values
for ``sort`` and ``max``), and calls it through the namespace with any non-differentiable
arguments (index arrays, conditions, shapes) built inside ``call``. Decompositions whose outputs
are defined only up to signs return quantities the signs cancel out of, so that every backend
and finite differences see the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradbridge.core import ops

Array = Any
Draw = Callable[[np.random.Generator], np.ndarray]
Call = Callable[..., Any]


def finite_difference(fn: Callable[..., Any], args: list[np.ndarray], i: int,
                      h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``fn(*args)`` with respect to ``args[i]``, entrywise
    (step ``h``: truncation ~h**2 and rounding ~1e-16 / h balance near 1e-10 in float64)."""
    x = np.array(args[i], dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = []
        for step in (h, -h):
            moved = x.copy()
            moved[index] += step
            shifted.append(float(fn(*args[:i], moved, *args[i + 1:])))
        grad[index] = (shifted[0] - shifted[1]) / (2 * h)
    return grad


# ------------------------------------------------------------------------- input domains


def normal(*shape: int) -> Draw:
    return lambda rng: rng.standard_normal(shape)


def uniform(low: float, high: float, *shape: int) -> Draw:
    return lambda rng: rng.uniform(low, high, shape)


def away_from_zero(*shape: int) -> Draw:
    """|x| in [0.5, 2) with random sign: safe divisors, no kink of abs or a norm nearby."""
    return lambda rng: rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def distinct(*shape: int) -> Draw:
    """A shuffle of values at least 0.3 apart: sort and max/min have no ties within a step."""
    size = int(np.prod(shape))
    return lambda rng: rng.permutation(np.linspace(-2.0, 2.0, size)).reshape(shape)


def well_conditioned(n: int) -> Draw:
    """An n x n matrix 3 I + N(0, 0.3): condition number about 2, determinant positive."""
    return lambda rng: 3.0 * np.eye(n) + 0.3 * rng.standard_normal((n, n))


def with_singular_values(rows: int, values: Sequence[float]) -> Draw:
    """A (rows, len(values)) matrix U diag(values) V^T plus little noise: separated spectrum."""
    def draw(rng: np.random.Generator) -> np.ndarray:
        u = np.linalg.qr(rng.standard_normal((rows, len(values))))[0]
        v = np.linalg.qr(rng.standard_normal((len(values), len(values))))[0]
        noise = 0.02 * rng.standard_normal((rows, len(values)))
        return u @ np.diag(values) @ v.T + noise
    return draw


def symmetric(be: Any, m: Array) -> Array:
    """The symmetric part of ``m``: eigh/cholesky read one triangle or symmetrize themselves,
    and which one differs between frameworks, so the cases differentiate through this."""
    return (m + be.matrix_transpose(m)) / 2.0


def host(be: Any, values: Any) -> Array:
    """A constant (index array, condition, weights) on the backend: integers and bools as they
    are, real and complex numbers in the backend's precision."""
    return be.from_host(np.asarray(values))


# ---------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class OpCase:
    """``call(be, *arrays)`` evaluates ``op``; ``inputs`` draw the arrays it differentiates."""

    op: str
    inputs: tuple[Draw, ...]
    call: Call
    label: str = ""
    eager: bool = False
    """The output's shape depends on values (a boolean mask): JAX cannot compile it."""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.label}" if self.label else self.op

    def draw(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.inputs]


def words(text: str) -> tuple[str, ...]:
    """The whitespace-separated names in ``text``."""
    return tuple(text.split())


def namespace_function(be: Any, op: str) -> Callable[..., Any]:
    """``be.sin`` for "sin", ``be.linalg.solve`` for "linalg.solve"."""
    owner, _, name = op.rpartition(".")
    return getattr(be.linalg if owner == "linalg" else be, name)


def case(op: str, *inputs: Draw, label: str = "", **kwargs: Any) -> OpCase:
    """The op called on its arrays with fixed keyword arguments."""
    return OpCase(op, inputs, lambda be, *xs: namespace_function(be, op)(*xs, **kwargs), label)


def called(op: str, call: Call, *inputs: Draw, label: str = "", eager: bool = False) -> OpCase:
    """The op called by hand: extra array arguments, or outputs made sign-invariant."""
    return OpCase(op, inputs, call, label, eager)


UNARY_DOMAINS: dict[str, Draw] = {
    **{name: normal(3, 4) for name in words(
        "asinh atan cos cosh exp expm1 negative positive sin sinh square tanh conj real")},
    **{name: uniform(-0.8, 0.8, 3, 4) for name in ("acos", "asin", "atanh", "tan")},
    **{name: uniform(0.5, 2.0, 3, 4) for name in ("log", "log2", "log10", "sqrt")},
    "acosh": uniform(1.5, 3.0, 3, 4),
    "log1p": uniform(-0.5, 2.0, 3, 4),
    "abs": away_from_zero(3, 4),
    "reciprocal": away_from_zero(3, 4),
}

SIGNS = np.array([[1.0, -1.0, 2.0, -0.5]] * 3)
WHERE = np.array([[True, False, True, False], [False, False, True, True], [True] * 4])
LOWER = np.array([-0.9, -0.3, -0.75, -0.6])
"""An array bound for clip, away from the inputs' values within a step."""
WEIGHTS = np.array([0.5, 1.0, 2.0, 3.5])
"""Fixed weights that are distinct, so a sign-invariant sum still sees every column."""


def _eigh(be: Any, m: Array) -> tuple[Array, Array]:
    values, vectors = be.linalg.eigh(symmetric(be, m))
    return values, (vectors * host(be, WEIGHTS)) @ be.matrix_transpose(vectors)


def _qr(be: Any, m: Array) -> tuple[Array, Array]:
    q, r = be.linalg.qr(m)
    signs = be.sign(be.linalg.diagonal(r))  # the QR whose R has a positive diagonal
    return q * signs, be.expand_dims(signs, axis=1) * r


def _svd(be: Any, m: Array, full_matrices: bool = False) -> tuple[Array, Array]:
    u, s, vh = be.linalg.svd(m, full_matrices=full_matrices)
    k = s.shape[-1]
    return s, (u[..., :k] * host(be, WEIGHTS[:k])) @ vh[..., :k, :]


CASES: tuple[OpCase, ...] = (
    # creation and data type
    called("asarray", lambda be, x: be.asarray(x), normal(3, 4)),
    case("tril", normal(4, 4), k=-1),
    case("triu", normal(4, 4), k=1),
    called("astype", lambda be, x: be.astype(x, be.float64), normal(3, 4)),
    # elementwise, one array
    *(case(name, draw) for name, draw in UNARY_DOMAINS.items()),
    called("imag", lambda be, x: be.imag(x * host(be, 0.5 + 2.0j)), normal(3, 4),
           label="of_complex"),
    called("real", lambda be, x: be.real(x * host(be, 0.5 + 2.0j)), normal(3, 4),
           label="of_complex"),
    case("clip", normal(3, 4), min=-0.5, max=0.5),
    called("clip", lambda be, x: be.clip(x, host(be, LOWER), 0.5), normal(3, 4),
           label="array_min"),
    called("copysign", lambda be, x: be.copysign(x, host(be, SIGNS)), normal(3, 4)),
    # elementwise, two arrays (broadcasting between them)
    case("remainder", normal(3, 4), uniform(0.7, 1.9, 4)),  # jumps: x1/x2 an integer, not here
    called("meshgrid", lambda be, x, y: be.meshgrid(x, y, indexing="ij"), normal(3), normal(4)),
    case("add", normal(3, 4), normal(4)),
    case("subtract", normal(3, 4), normal(3, 1)),
    case("multiply", normal(3, 4), normal(4)),
    case("divide", normal(3, 4), away_from_zero(4)),
    case("atan2", away_from_zero(3, 4), normal(3, 4)),
    case("hypot", away_from_zero(3, 4), away_from_zero(4)),
    case("logaddexp", normal(3, 4), normal(3, 4)),
    case("pow", uniform(0.5, 2.0, 3, 4), uniform(-1.5, 1.5, 3, 4)),
    case("maximum", normal(3, 4), normal(4)),
    called("maximum", lambda be, x: be.maximum(0.2, x), normal(3, 4), label="scalar_x1"),
    case("minimum", normal(3, 4), normal(3, 4)),
    # indexing
    called("take", lambda be, x: be.take(x, host(be, [4, 0, 4, 2]), axis=1), normal(3, 5)),
    called("take_along_axis",
           lambda be, x: be.take_along_axis(x, host(be, [[0, 2], [1, 1], [3, 0]]), axis=1),
           normal(3, 4)),
    called("where", lambda be, a, b: be.where(host(be, WHERE), a, b), normal(3, 4), normal(4)),
    # indexing an array (DESIGN section 2: integers, slices, integer arrays and masks)
    called("__getitem__", lambda be, x: x[1:, ::2], normal(3, 5), label="slices"),
    called("__getitem__", lambda be, x: x[None, ..., -1], normal(3, 4), label="none_ellipsis"),
    called("__getitem__", lambda be, x: x[host(be, [2, 0, 2])], normal(4, 3),
           label="integer_array"),
    called("__getitem__", lambda be, x: x[host(be, [0, 2]), host(be, [1, 1])], normal(3, 3),
           label="integer_arrays"),
    called("__getitem__", lambda be, x: x[host(be, WHERE)], normal(3, 4), label="mask",
           eager=True),
    # linear algebra
    case("matmul", normal(2, 3, 4), normal(4, 2)),
    case("tensordot", normal(3, 4, 5), normal(4, 5, 2), axes=2),
    case("tensordot", normal(3, 4), normal(2, 3), axes=([0], [1]), label="pairs"),
    case("vecdot", normal(3, 4), normal(4)),
    case("matrix_transpose", normal(2, 3, 4)),
    # manipulation
    called("broadcast_arrays", lambda be, a, b: be.broadcast_arrays(a, b),
           normal(3, 1), normal(1, 4)),
    called("concat", lambda be, a, b: be.concat([a, b], axis=0), normal(2, 3), normal(1, 3)),
    called("stack", lambda be, a, b: be.stack([a, b], axis=1), normal(2, 3), normal(2, 3)),
    case("broadcast_to", normal(3, 1), shape=(2, 3, 4)),
    case("expand_dims", normal(3, 4), axis=1),
    case("flip", normal(3, 4), axis=0),
    called("moveaxis", lambda be, x: be.moveaxis(x, 0, -1), normal(2, 3, 4)),
    case("permute_dims", normal(2, 3, 4), axes=(2, 0, 1)),
    called("repeat", lambda be, x: be.repeat(x, 2, axis=1), normal(2, 3)),
    case("reshape", normal(3, 4), shape=(2, 6)),
    case("roll", normal(3, 4), shift=(1, -1), axis=(0, 1)),
    case("squeeze", normal(3, 1, 4), axis=1),
    called("tile", lambda be, x: be.tile(x, (2, 1)), normal(2, 3)),
    case("unstack", normal(3, 4), axis=1),
    # sorting and statistics
    case("sort", distinct(3, 5), axis=-1),
    case("sort", distinct(3, 5), axis=0, descending=True, label="descending"),
    case("cumulative_sum", normal(3, 4), axis=1),
    case("cumulative_sum", normal(3, 4), axis=0, include_initial=True, label="initial"),
    case("cumulative_prod", uniform(0.5, 1.5, 3, 4), axis=1),
    case("mean", normal(2, 3, 4), axis=(0, 2), keepdims=True),
    case("prod", away_from_zero(3, 4), axis=1),
    case("std", normal(3, 4), axis=0, correction=1),
    case("std", normal(3, 4), correction=1.5, keepdims=True, label="fractional"),
    case("sum", normal(2, 3, 4), axis=(0, 2)),
    case("var", normal(3, 4), axis=1, correction=0),
    case("max", distinct(3, 4), axis=1),
    case("min", distinct(3, 4)),
    case("diff", normal(3, 5), axis=-1, n=2),
    # the linalg extension
    called("linalg.cholesky",
           lambda be, m: be.linalg.cholesky(symmetric(be, m) + 3.0 * be.eye(3)), normal(3, 3)),
    case("linalg.det", well_conditioned(3)),
    case("linalg.diagonal", normal(4, 4), offset=1),
    called("linalg.eigvalsh", lambda be, m: be.linalg.eigvalsh(symmetric(be, m)),
           with_singular_values(4, [1.0, 2.0, 4.0, 7.0])),
    case("linalg.inv", well_conditioned(3)),
    case("linalg.matrix_norm", normal(3, 4)),
    case("linalg.matrix_norm", with_singular_values(4, [3.0, 2.0, 1.0]), ord="nuc",
         label="nuclear"),
    case("linalg.matrix_norm", with_singular_values(4, [3.0, 2.0, 1.0]), ord=2,
         label="spectral"),
    called("linalg.matrix_power", lambda be, m: be.linalg.matrix_power(m, 3),
           well_conditioned(3)),
    called("linalg.matrix_power", lambda be, m: be.linalg.matrix_power(m, -2),
           well_conditioned(3), label="negative"),
    case("linalg.matrix_transpose", normal(2, 3, 4)),
    case("linalg.pinv", with_singular_values(4, [3.0, 2.0, 1.0])),
    case("linalg.slogdet", well_conditioned(3)),
    case("linalg.svdvals", with_singular_values(4, [3.0, 2.0, 1.0])),
    case("linalg.trace", normal(3, 3), offset=1),
    case("linalg.vector_norm", normal(3, 4), axis=1),
    case("linalg.vector_norm", away_from_zero(3, 4), ord=1, label="ord1"),
    case("linalg.vector_norm", normal(3, 4), ord=3, axis=0, label="ord3"),
    case("linalg.cross", normal(4, 3), normal(4, 3)),
    case("linalg.matmul", normal(3, 4), normal(4, 2)),
    case("linalg.outer", normal(3), normal(4)),
    case("linalg.solve", well_conditioned(3), normal(3, 2)),
    case("linalg.tensordot", normal(3, 4), normal(4, 2), axes=1),
    case("linalg.vecdot", normal(3, 4), normal(3, 4), axis=0),
    called("linalg.eigh", _eigh, with_singular_values(4, [1.0, 2.0, 4.0, 7.0])),
    called("linalg.qr", _qr, normal(4, 3)),
    called("linalg.svd", _svd, with_singular_values(4, [3.0, 2.0, 1.0])),
    called("linalg.svd", lambda be, m: _svd(be, m, full_matrices=True),
           with_singular_values(3, [3.0, 2.0, 1.0]), label="square_full"),
    called("linalg.svd", lambda be, m: _svd(be, m, full_matrices=True),
           with_singular_values(4, [3.0, 2.0, 1.0]), label="tall_full"),
    called("linalg.svd", lambda be, m: _svd(be, be.matrix_transpose(m), full_matrices=True),
           with_singular_values(4, [3.0, 2.0, 1.0]), label="wide_full"),
)


OPERATORS = ("__getitem__",)
"""Array methods that DESIGN section 2 makes differentiable besides the namespace functions."""


def differentiable_ops() -> set[str]:
    """Every differentiable function of core/ops.py, the linalg ones as "linalg.<name>", and
    the differentiable array methods."""
    return ({op.name for op in ops.MAIN if op.differentiable}
            | {f"linalg.{op.name}" for op in ops.LINALG if op.differentiable} | set(OPERATORS))


def outputs(result: Any) -> list[Array]:
    """An op's result as a list of arrays (eigh, qr, slogdet, unstack give several)."""
    return list(result) if isinstance(result, tuple | list) else [result]
