"""A traced value inside NumPy grad is a full Array API array for forward use: operators,
comparisons, indexing, attributes, ``__array_namespace__``, and NumPy's array methods. Every
forward result is checked against the same expression on the plain NumPy array (exactly: the
same NumPy calls), and gradients against closed forms; what cannot be differentiated is one
NotDifferentiable, never a wrong value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.backends.numpy.autodiff import Tracer, detached
from gradbridge.core.backend import Backend, NotDifferentiable

be: Backend = gb.get_backend("numpy", device="cpu", dtype="float64")
X = np.random.default_rng(0).standard_normal((3, 4))
MASK = X > 0

FORWARD: dict[str, Callable[[Any], Any]] = {
    "+ - * / ** @": lambda t: ((t + 1.0) * t - t / 2.0 - 3.0 / (t * t + 1.0)) ** 2 @ t.T,
    "reflected": lambda t: 2.0 - t + 2.0 * t + 1.0 / (1.0 + t * t) + 2.0 ** t,
    "// and %": lambda t: [t // 0.5, t % 0.5, 1.0 % (t + 2.0)],
    "unary": lambda t: -t + (+t) + abs(t),
    "comparisons": lambda t: [t < 0, t <= 0, t > 0, t >= 0, t == t, t != 0],
    "getitem int": lambda t: t[1],
    "getitem slices": lambda t: t[::-1, 1:3],
    "getitem ellipsis newaxis": lambda t: t[..., None, 2],
    "getitem integer arrays": lambda t: t[np.array([2, 0, 2]), np.array([1, 1, 3])],
    "getitem mask": lambda t: t[MASK],
    "getitem row mask": lambda t: t[np.array([True, False, True])],
    ".T .mT": lambda t: [t.T, t.mT],
    "methods": lambda t: [t.sum(), t.sum(axis=0), t.mean(axis=1, keepdims=True), t.prod(),
                          t.std(ddof=1), t.var(), t.max(axis=0), t.min(), t.cumsum(axis=1),
                          t.cumprod(axis=0), t.reshape(4, 3), t.reshape((2, 6)),
                          t.transpose(), t.transpose(1, 0), t.swapaxes(0, 1), t.flatten(),
                          t.ravel(), t.clip(-0.5, 0.5), t.dot(t.T), t.take([0, 2], axis=1),
                          t.repeat(2, axis=0), t.astype(np.float32), t.conj(), t.squeeze(),
                          t.diagonal(), t.trace(), t.real, t.imag],
    "integer methods": lambda t: [t.argmax(), t.argmin(axis=0), t.argsort(axis=1), t.all(),
                                  t.any(axis=1), t.round(), t.astype(np.int64),
                                  t.nonzero()[0]],
}


@pytest.mark.parametrize("name", list(FORWARD))
def test_traced_values_compute_like_arrays(name: str) -> None:
    """Inside grad, each expression gives the plain array's values (compared exactly)."""
    expression, seen = FORWARD[name], []

    def fn(t: Any) -> Any:
        seen.append(expression(t))
        return be.sum(t)

    be.grad(fn)(X)
    results = seen[0] if isinstance(seen[0], list) else [seen[0]]
    expected = expression(X)
    for got, want in zip(results, expected if isinstance(expected, list) else [expected],
                         strict=True):
        np.testing.assert_array_equal(detached(got), want)
        assert detached(got).dtype == np.asarray(want).dtype


def test_what_an_array_answers_about_itself() -> None:
    def fn(t: Any) -> Any:
        assert isinstance(t, Tracer)
        assert t.shape == (3, 4) and t.ndim == 2 and t.size == 12 and t.dtype == np.float64
        assert t.device == "cpu" and t.to_device("cpu") is t and len(t) == 3
        namespace = t.__array_namespace__()  # the NumPy backend of the grad's dtype
        assert namespace.name == "numpy" and namespace.dtype == "float64"
        assert t.__array_namespace__().linalg.matrix_norm(t) is not None
        assert all(type(r) is np.ndarray for r in (t > 0, t == t, np.isnan(t)))
        assert f"{be.sum(t):.6f}" == f"{np.sum(X):.6f}"  # printing does not leave the graph
        return be.sum(t[0] * t[1])

    expected = np.zeros_like(X)
    expected[0], expected[1] = X[1], X[0]
    np.testing.assert_array_equal(be.grad(fn)(X), expected)


def test_gradients_through_methods_and_masks() -> None:
    """d/dx [sum(x.mean(axis=0)) + sum(x[x > 0] ** 2) + x.T.sum()] = 1/3 + 2 x (x > 0) + 1."""
    grad = be.grad(lambda t: t.mean(axis=0).sum() + (t[t > 0] ** 2).sum() + t.T.sum())(X)
    np.testing.assert_allclose(grad, 1 / 3 + 2 * X * MASK + 1, rtol=1e-15)


LEAVES: dict[str, Callable[[Any], Any]] = {
    "float": lambda t: float(t[0, 0]),
    "bool": lambda t: bool(t.sum()),
    "item": lambda t: t.item(),
    "np.asarray": np.asarray,
    "in place": lambda t: t.__setitem__(0, 1.0),
    "nextafter": lambda t: np.nextafter(t, 2.0),
    "an unknown NumPy function": lambda t: np.fmod(t, 2.0),
    "ufunc with out=": lambda t: np.exp(t, out=np.empty_like(X)),
    "dlpack": lambda t: t.__dlpack__(),
    "complex values": lambda t: be.abs(t * 1j),
}


@pytest.mark.parametrize("name", list(LEAVES))
def test_what_cannot_be_differentiated_says_so(name: str) -> None:
    with pytest.raises(NotDifferentiable):
        be.grad(lambda t: be.sum(LEAVES[name](t)))(X)
