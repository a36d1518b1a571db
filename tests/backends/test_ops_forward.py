"""Every function of ``core/ops.py`` on every backend x dtype, against NumPy's Array API namespace.

Inputs are drawn on the host by hypothesis (``hypothesis.extra.array_api`` strategies over
``array_api_compat.numpy``) in the backend's float dtype, handed to the backend with
``be.asarray`` (dtype kept) and to the reference unchanged, so both sides see the same bits.
Tolerance: exact for integer, boolean and shape results; float64 1e-10 relative (rounding is
~1e-16 per operation, the margin covers other summation orders and libm implementations);
float32 1e-5 relative (~6e-8 per operation, times the few operations and sums each function
does); the same number as an absolute floor, since inputs are O(1). The result's dtype must
equal the reference's. Functions whose results are defined only up to sign or order (eigh,
qr, svd, unique_*) are compared on what the standard fixes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conftest import tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.array_api import make_strategies_namespace

from gradbridge.core import ops
from gradbridge.core.backend import Backend

xps = make_strategies_namespace(xp)
EXAMPLES = settings(max_examples=4, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

ANY, UNIT, POS, ABOVE_ONE = (-3.0, 3.0), (-0.875, 0.875), (0.125, 5.0), (1.125, 5.0)
"""Bounds exact in float32 (hypothesis draws in the backend's dtype)."""
DOMAINS = {"acos": UNIT, "asin": UNIT, "atanh": UNIT, "acosh": ABOVE_ONE, "log": POS,
           "log1p": POS, "log2": POS, "log10": POS, "sqrt": POS, "reciprocal": POS}
"""Where each one-array elementwise function is drawn, when not on ANY."""
BINARY_DOMAINS = {"divide": (ANY, POS), "pow": (POS, ANY), "atan2": (ANY, POS)}

Case = Callable[[st.DataObject, str], tuple[tuple[Any, ...], dict[str, Any]]]
"""Draws (positional arguments, keywords) for one function, as NumPy values, in a float dtype."""


@dataclass(frozen=True)
class DType:
    """A dtype by name in a case: the backend's dtype object on its side, NumPy's on the other."""

    name: str


def floats(data: st.DataObject, dtype: str, shape: Any = None,
           bounds: tuple[float, float] = ANY) -> np.ndarray:
    """A float array of the backend's dtype with values in ``bounds``."""
    shape = shape if shape is not None else data.draw(xps.array_shapes(max_dims=3, max_side=4))
    return data.draw(xps.arrays(getattr(xp, dtype), shape, elements={
        "min_value": bounds[0], "max_value": bounds[1], "allow_nan": False,
        "allow_subnormal": False}))  # XLA on CPU flushes float32 subnormals to zero


def complexes(data: st.DataObject, dtype: str) -> np.ndarray:
    """A complex array of the width that goes with the float dtype (real and imag parts drawn)."""
    shape = data.draw(xps.array_shapes(max_dims=2, max_side=4))
    return floats(data, dtype, shape) + 1j * floats(data, dtype, shape)


def ints(data: st.DataObject, shape: Any = None, low: int = -50, high: int = 50) -> np.ndarray:
    shape = shape if shape is not None else data.draw(xps.array_shapes(max_dims=3, max_side=4))
    return data.draw(xps.arrays(xp.int64, shape, elements={"min_value": low, "max_value": high}))


def bools(data: st.DataObject, shape: Any = None) -> np.ndarray:
    shape = shape if shape is not None else data.draw(xps.array_shapes(max_dims=3, max_side=4))
    return data.draw(xps.arrays(xp.bool, shape))


def pair_shapes(data: st.DataObject) -> tuple[Any, Any]:
    shapes = data.draw(xps.mutually_broadcastable_shapes(2, max_dims=3, max_side=3)).input_shapes
    return shapes[0], shapes[1]


def matrix(data: st.DataObject, dtype: str, n: int = 3, spd: bool = False) -> np.ndarray:
    """A well-conditioned n x n matrix (symmetric positive definite with ``spd``)."""
    a = floats(data, dtype, (n, n), (-1.0, 1.0))
    a = a @ a.T if spd else a
    return (a + n * np.eye(n, dtype=dtype)).astype(dtype)


def each(names: str) -> list[str]:
    """The function names in a space-separated string."""
    return names.split()


def one(bounds: tuple[float, float] = ANY, **kw: Any) -> Case:
    return lambda d, t: ((floats(d, t, None, bounds),), kw)


def two(first: tuple[float, float] = ANY, second: tuple[float, float] = ANY) -> Case:
    def case(d: st.DataObject, t: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        s1, s2 = pair_shapes(d)
        return (floats(d, t, s1, first), floats(d, t, s2, second)), {}
    return case


def reduction(name: str) -> Case:
    def case(d: st.DataObject, t: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        side = 2 if name in ("std", "var") else 1  # correction=1 needs two values
        x = floats(d, t, d.draw(xps.array_shapes(min_dims=1, max_dims=3, min_side=side,
                                                 max_side=4)),
                   (0.5, 1.5) if name == "prod" else ANY)
        kw: dict[str, Any] = {"axis": d.draw(st.none() | st.integers(-x.ndim, x.ndim - 1))}
        if name.startswith("cumulative"):
            kw["axis"] = kw["axis"] if x.ndim > 1 and kw["axis"] is not None else (
                None if x.ndim == 1 else 0)
            kw["include_initial"] = d.draw(st.booleans())
        elif name not in ("argmax", "argmin") or kw["axis"] is not None:
            kw["keepdims"] = d.draw(st.booleans())
        if name in ("std", "var"):
            kw["correction"] = d.draw(st.sampled_from([0, 1]))
        return (x,), kw
    return case


def manipulation(name: str) -> Case:
    def case(d: st.DataObject, t: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        x = floats(d, t, (2, 3, 4))
        return {
            "broadcast_arrays": ((x, floats(d, t, (3, 1))), {}),
            "broadcast_to": ((floats(d, t, (3, 1)), (2, 3, 4)), {}),
            "concat": (([x, floats(d, t, (2, 1, 4))],), {"axis": 1}),
            "stack": (([x, x + 1],), {"axis": d.draw(st.integers(-4, 3))}),
            "expand_dims": ((x,), {"axis": d.draw(st.integers(-4, 3))}),
            "flip": ((x,), {"axis": d.draw(st.none() | st.integers(-3, 2))}),
            "moveaxis": ((x, 0, -1), {}),
            "permute_dims": ((x, (2, 0, 1)), {}),
            "repeat": ((x, 2), {"axis": d.draw(st.none() | st.integers(0, 2))}),
            "reshape": ((x, (4, -1)), {}),
            "roll": ((x, d.draw(st.integers(-5, 5))), {"axis": d.draw(st.none() | st.just(1))}),
            "squeeze": ((floats(d, t, (2, 1, 3)), 1), {}),
            "tile": ((x, (2, 1, 1)), {}),
            "unstack": ((x,), {"axis": d.draw(st.integers(0, 2))}),
        }[name]
    return case


def distinct(d: st.DataObject, t: str, n: int = 6) -> np.ndarray:
    """n distinct values in random order (sorting results have no ties to order)."""
    order = d.draw(st.permutations(range(n)))
    return (np.asarray(order, dtype=t) - 2.5) / 3


def creation(name: str) -> Case:
    def case(d: st.DataObject, t: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        x = floats(d, t, (3, 4))
        dtype = DType(t)
        return {
            "arange": ((0.5, d.draw(st.floats(2.0, 6.0)), 0.5), {"dtype": dtype}),
            "eye": ((3, 4), {"k": d.draw(st.integers(-2, 2)), "dtype": dtype}),
            "full": (((2, 3), d.draw(st.floats(-2, 2))), {"dtype": dtype}),
            "full_like": ((x, 2.5), {}),
            "linspace": ((-1.0, 2.0, 7), {"endpoint": d.draw(st.booleans()), "dtype": dtype}),
            "meshgrid": ((floats(d, t, (3,)), floats(d, t, (2,))),
                         {"indexing": d.draw(st.sampled_from(["xy", "ij"]))}),
            "ones": (((2, 3),), {"dtype": dtype}),
            "ones_like": ((x,), {}),
            "zeros": (((2, 3),), {"dtype": dtype}),
            "zeros_like": ((x,), {}),
            "asarray": ((x,), {}),
            "tril": ((x,), {"k": d.draw(st.integers(-2, 2))}),
            "triu": ((x,), {"k": d.draw(st.integers(-2, 2))}),
        }[name]
    return case


def linalg(name: str) -> Case:
    def case(d: st.DataObject, t: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        a, s = matrix(d, t), matrix(d, t, spd=True)
        v = floats(d, t, (3,))
        return {
            "cholesky": ((s,), {}), "det": ((a,), {}), "inv": ((a,), {}), "slogdet": ((a,), {}),
            "diagonal": ((floats(d, t, (2, 3, 4)),), {"offset": d.draw(st.integers(-2, 2))}),
            "trace": ((floats(d, t, (2, 3, 3)),), {"offset": d.draw(st.integers(-1, 1))}),
            "eigvalsh": ((s,), {}), "svdvals": ((a,), {}), "pinv": ((floats(d, t, (3, 2)),), {}),
            "matrix_norm": ((a,), {"ord": d.draw(st.sampled_from(["fro", "nuc", 1, 2, xp.inf]))}),
            "vector_norm": ((floats(d, t, (2, 3)),), {
                "ord": d.draw(st.sampled_from([1, 2, xp.inf])),
                "axis": d.draw(st.none() | st.just(-1))}),
            "matrix_power": ((a, d.draw(st.integers(-2, 3))), {}),
            "matrix_rank": ((floats(d, t, (3, 2)) @ floats(d, t, (2, 4)),), {}),
            "matrix_transpose": ((floats(d, t, (2, 3, 4)),), {}),
            "cross": ((floats(d, t, (2, 3)), floats(d, t, (2, 3))), {}),
            "matmul": ((floats(d, t, (2, 3, 4)), floats(d, t, (4, 2))), {}),
            "outer": ((v, floats(d, t, (2,))), {}),
            "solve": ((a, floats(d, t, (3, 2))), {}),
            "tensordot": ((floats(d, t, (2, 3, 4)), floats(d, t, (3, 4, 2))), {"axes": 2}),
            "vecdot": ((floats(d, t, (2, 3)), v), {}),
            "eigh": ((s,), {}), "qr": ((floats(d, t, (4, 3)),), {}), "svd": ((a,), {}),
        }[name]
    return case


CASES: dict[str, Case] = {
    **{o.name: one(DOMAINS.get(o.name, ANY)) for o in ops.MAIN
       if o.category == "elementwise" and o.differentiable == ops.UNARY and o.name != "clip"},
    **{n: one() for n in each("ceil floor round sign trunc isfinite isinf isnan signbit")},
    **{n: two(*BINARY_DOMAINS.get(n, (ANY, ANY))) for n in each(
        "add atan2 divide hypot logaddexp multiply pow subtract maximum minimum copysign "
        "nextafter equal not_equal greater greater_equal less less_equal")},
    "clip": lambda d, t: ((floats(d, t),), {"min": -1.0, "max": d.draw(st.floats(0.0, 2.0))}),
    **{n: lambda d, t: (lambda s: ((ints(d, s[0]), ints(d, s[1], low=1)), {}))(pair_shapes(d))
       for n in ("floor_divide", "remainder")},
    **{n: lambda d, t: ((ints(d, (3, 4)), ints(d, (4,))), {})
       for n in ("bitwise_and", "bitwise_or", "bitwise_xor")},
    **{n: lambda d, t: ((ints(d, (3, 4)), ints(d, (4,), 0, 8)), {})
       for n in ("bitwise_left_shift", "bitwise_right_shift")},
    "bitwise_invert": lambda d, t: ((ints(d),), {}),
    "logical_not": lambda d, t: ((bools(d),), {}),
    **{n: lambda d, t: ((bools(d, (3, 4)), bools(d, (4,))), {})
       for n in ("logical_and", "logical_or", "logical_xor")},
    **{n: reduction(n) for n in each("sum prod mean std var max min cumulative_sum cumulative_prod "
                                "argmax argmin")},
    "count_nonzero": lambda d, t: ((ints(d, (3, 4), -1, 1),),
                                   {"axis": d.draw(st.none() | st.just(1))}),
    **{n: lambda d, t: ((bools(d, (3, 4)),), {"axis": d.draw(st.none() | st.just(0))})
       for n in ("all", "any")},
    "nonzero": lambda d, t: ((ints(d, (3, 4), -1, 1),), {}),
    "searchsorted": lambda d, t: ((np.sort(distinct(d, t)), floats(d, t, (5,))),
                                  {"side": d.draw(st.sampled_from(["left", "right"]))}),
    "where": lambda d, t: ((bools(d, (3, 1)), floats(d, t, (3, 4)), floats(d, t, (4,))), {}),
    "take": lambda d, t: ((floats(d, t, (3, 4)), ints(d, (5,), 0, 3)), {"axis": 1}),
    "take_along_axis": lambda d, t: ((floats(d, t, (3, 4)), ints(d, (3, 2), 0, 3)), {"axis": 1}),
    "sort": lambda d, t: ((distinct(d, t),), {"descending": d.draw(st.booleans())}),
    "argsort": lambda d, t: ((distinct(d, t),), {"descending": d.draw(st.booleans())}),
    "diff": lambda d, t: ((floats(d, t, (3, 5)),), {"n": d.draw(st.integers(1, 2)),
                                                    "axis": d.draw(st.sampled_from([0, -1]))}),
    **{n: lambda d, t: ((ints(d, (12,), 0, 4),), {}) for n in
       ("unique_values", "unique_counts", "unique_inverse", "unique_all")},
    **{n: manipulation(n) for n in each(
        "broadcast_arrays broadcast_to concat stack expand_dims flip moveaxis permute_dims "
        "repeat reshape roll squeeze tile unstack")},
    "astype": lambda d, t: ((floats(d, t), DType(d.draw(st.sampled_from(["int32", "float64"])))),
                            {}),
    **{n: lambda d, t: ((complexes(d, t),), {}) for n in ("conj", "real", "imag")},
    **{n: creation(n) for n in each(
        "arange eye full full_like linspace meshgrid ones ones_like zeros zeros_like asarray "
        "tril triu")},
    **{o.name: linalg(o.name) for o in ops.LINALG},
}
"""How each function is called. The remaining names are checked in ``DEFINED_ELSEWHERE``."""

DEFINED_ELSEWHERE = {
    "empty": "values undefined: shape and dtype in test_creation_shapes_and_dtypes",
    "empty_like": "values undefined: shape and dtype in test_creation_shapes_and_dtypes",
    "from_dlpack": "test_from_dlpack_round_trip",
    "can_cast": "test_dtype_functions", "finfo": "test_dtype_functions",
    "iinfo": "test_dtype_functions", "isdtype": "test_dtype_functions",
    "result_type": "test_dtype_functions",
    "__array_namespace_info__": "tests/backends/test_namespace.py (defaults are the policy's)",
}
LINALG_ONLY = set(ops.names(ops.LINALG)) - set(ops.names(ops.MAIN))
UP_TO_SIGN_OR_ORDER = {"eigh", "qr", "svd", "unique_values", "unique_counts", "unique_inverse",
                       "unique_all"}


def test_every_function_of_the_table_has_a_case() -> None:
    """The table here cannot fall behind core/ops.py: every name is called or said where."""
    missing = {o.name for o in (*ops.MAIN, *ops.LINALG)} - CASES.keys() - DEFINED_ELSEWHERE.keys()
    assert not missing, f"no forward case for {sorted(missing)}"


def on_host(to_numpy: Callable[[Any], Any], result: Any) -> Any:
    """A result as NumPy arrays, through tuples and named tuples (as lists)."""
    if isinstance(result, (tuple, list)):
        return [on_host(to_numpy, r) for r in result]
    return np.asarray(to_numpy(result))


def assert_same(be: Backend, name: str, actual: Any, expected: Any) -> None:
    """Same structure, shape, dtype and values (exact unless floating: module docstring)."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, list) and len(actual) == len(expected), name
        for a, e in zip(actual, expected, strict=True):
            assert_same(be, name, a, e)
        return
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    if expected.dtype.kind in "fc":
        tol = tolerance(be)
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=name)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def canonical(name: str, host: Any) -> Any:
    """What the standard fixes of results defined up to sign or order."""
    if name == "eigh":
        values, vectors = host
        return [values, (vectors * values) @ vectors.T]     # A = V diag(w) V^T
    if name == "qr":
        q, r = host
        return [q @ r, np.abs(np.diagonal(r)), q.T @ q]
    if name == "svd":
        u, s, vh = host
        return [s, (u * s) @ vh]
    if name == "unique_values":
        return [np.sort(host)]
    order = np.argsort(host[0])
    if name == "unique_inverse":
        return [host[0][order], host[0][host[1]]]           # values[inverse] rebuilds x
    if name == "unique_counts":
        return [host[0][order], host[1][order]]
    values, first, inverse, counts = host                   # unique_all
    return [values[order], first[order], values[inverse], counts[order]]


@pytest.mark.parametrize("name", sorted(CASES))
@EXAMPLES
@given(data=st.data())
def test_function_matches_numpy(backend: Backend, name: str, data: st.DataObject) -> None:
    args, kwargs = CASES[name](data, backend.dtype)
    linalg = name in LINALG_ONLY
    namespace, reference = (backend.linalg, xp.linalg) if linalg else (backend, xp)
    def call(on: Any, be: Backend | None) -> Any:
        return getattr(on, name)(*(to_backend(be, a) for a in args),
                                 **{k: to_backend(be, v) for k, v in kwargs.items()})

    actual = on_host(backend.to_numpy, call(namespace, backend))
    expected = on_host(np.asarray, call(reference, None))
    if name in UP_TO_SIGN_OR_ORDER:
        actual, expected = canonical(name, actual), canonical(name, expected)
    assert_same(backend, name, actual, expected)


def to_backend(be: Backend | None, value: Any) -> Any:
    """NumPy arrays (also inside lists) as the backend's arrays, dtype kept, and dtype names as
    its dtypes; with ``be=None``, the same values for NumPy's namespace."""
    if isinstance(value, DType):
        return getattr(be if be is not None else xp, value.name)
    if isinstance(value, np.ndarray):
        return value if be is None else be.asarray(value)
    if isinstance(value, list):
        return [to_backend(be, v) for v in value]
    return value


@pytest.mark.parametrize("name", ["empty", "empty_like"])
def test_creation_shapes_and_dtypes(backend: Backend, name: str) -> None:
    """Uninitialised creation: the shape asked for, the policy's float dtype by default."""
    out = backend.empty((2, 3)) if name == "empty" else backend.empty_like(
        backend.asarray(np.zeros((2, 3), dtype=np.int32)))
    host = backend.to_numpy(out)
    assert host.shape == (2, 3)
    assert host.dtype == (np.dtype(backend.dtype) if name == "empty" else np.int32)


def test_from_dlpack_round_trip(backend: Backend) -> None:
    """A backend array through DLPack is the same values, shape and dtype."""
    x = backend.asarray(np.arange(6.0, dtype=backend.dtype).reshape(2, 3))
    np.testing.assert_array_equal(backend.to_numpy(backend.from_dlpack(x)), backend.to_numpy(x))


def test_dtype_functions(backend: Backend) -> None:
    """can_cast, result_type, isdtype, finfo, iinfo agree with NumPy's namespace, over the pairs
    the standard's promotion lattice defines (no mixed kinds; torch has no unsigned promotion
    beyond uint8: conformance/xfails.txt)."""
    unsupported = {"uint16", "uint32", "uint64"} if backend.name == "torch" else set()
    for a, b in STANDARD_PAIRS:
        if {a, b} & unsupported:
            continue
        da, db = getattr(backend, a), getattr(backend, b)
        assert backend.can_cast(da, db) == xp.can_cast(getattr(xp, a), getattr(xp, b)), (a, b)
        expected = np.dtype(xp.result_type(getattr(xp, a), getattr(xp, b))).name
        assert str(backend.result_type(da, db)).split(".")[-1].strip("'<>") == expected, (a, b)
    for a in ops.DTYPES:
        for kind in ("bool", "signed integer", "unsigned integer", "integral", "real floating",
                     "complex floating", "numeric"):
            assert backend.isdtype(getattr(backend, a), kind) == xp.isdtype(getattr(xp, a), kind)
    for f in ("float32", "float64"):
        assert backend.finfo(getattr(backend, f)).eps == xp.finfo(getattr(xp, f)).eps
    for i in ("int8", "int32", "uint8", "int64"):
        assert backend.iinfo(getattr(backend, i)).max == xp.iinfo(getattr(xp, i)).max


KINDS = {"bool": ["bool"], "int": ["int8", "int16", "int32", "int64"],
         "uint": ["uint8", "uint16", "uint32", "uint64"],
         "inexact": ["float32", "float64", "complex64", "complex128"]}
STANDARD_PAIRS = [(a, b) for group in (["bool"], KINDS["int"] + KINDS["uint"], KINDS["inexact"])
                  for a in group for b in group
                  if not ({a, b} & {"uint64"} and {a, b} & set(KINDS["int"]))]
"""Dtype pairs whose promotion the standard defines (int with uint64 it does not)."""
