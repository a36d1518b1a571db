"""Differentiation rules of elementwise functions: arithmetic, exponentials and logarithms,
trigonometric and hyperbolic functions, choices (``maximum``, ``where``, ``clip``), casts,
and the functions whose results carry no gradient.

Each :func:`~.autodiff.primitive` computes its NumPy result from plain values (or an outer
grad's tracers) and returns one VJP per argument, written in NumPy calls so that a second grad
differentiates it again; :func:`~.autodiff.composite` functions are compositions of them. The
fast paths (``_times``'s inner product, ``_power_grad_fused``) run only on plain NumPy values,
where no outer grad records, beside the textbook rule.

Subgradients where the derivative is undefined (the same in every gradbridge backend):
``maximum``/``minimum`` give the whole gradient to the first argument at ties; ``clip`` passes
the gradient where ``min <= x <= max``, boundaries included; ``abs`` has gradient 0 at 0;
piecewise-constant functions (``floor``, ``round``, ``sign``...) have gradient 0. Complex
values are forward only.
"""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from gradbridge.backends.numpy.autodiff import (
    VJP,
    composite,
    constant,
    identity,
    plain,
    primitive,
    repeated_value,
    shape_of,
)

# ------------------------------------------------------------------ elementwise arithmetic


@primitive("add", np.add)
def add(x1: Any, x2: Any) -> Any:
    return x1 + x2, (identity, identity)


@primitive("subtract", np.subtract)
def subtract(x1: Any, x2: Any) -> Any:
    return x1 - x2, (identity, np.negative)


@primitive("multiply", np.multiply)
def multiply(x1: Any, x2: Any) -> Any:
    # each VJP keeps the other operand and only the shape of its own (values stay freeable)
    return x1 * x2, (_times(x2, getattr(x1, "shape", ())), _times(x1, getattr(x2, "shape", ())))


def _times(other: Any, shape: tuple[int, ...]) -> VJP:
    """The VJP of ``x * other`` for an ``x`` of ``shape``: ``g * other`` (summed back later).

    Fast path: for a scalar ``x`` (a weight, a bias) times an array, that sum is one inner
    product, which skips an array-sized temporary (the main cost of a step at large N).
    """

    def vjp(g: Any) -> Any:
        if (shape == () and plain(g, other) and g.ndim
                and getattr(other, "shape", None) == g.shape):
            return inner(g, other)
        return g * other

    return vjp


def inner(a: Any, b: Any) -> Any:
    """``sum(a * b)`` over all elements of two same-shaped plain arrays, with no temporary.

    BLAS's dot where both are contiguous (what a hand-written NumPy loop calls); einsum for
    strided or broadcast views, which it walks in place where ``vdot`` would copy them.
    """
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return np.vdot(a, b)
    axes = string.ascii_letters[:a.ndim]
    return np.einsum(f"{axes},{axes}->", a, b)


@primitive("divide", np.divide)
def divide(x1: Any, x2: Any) -> Any:
    out = x1 / x2
    return out, (lambda g: g / x2, lambda g: -g * out / x2)


@primitive("negative", np.negative)
def negative(x: Any) -> Any:
    return -x, (np.negative,)


@primitive("positive", np.positive)
def positive(x: Any) -> Any:
    return x, (identity,)


@primitive("pow", np.power)
def power(x1: Any, x2: Any) -> Any:
    """``x1 ** x2``; the exponent gets a gradient too when it is traced (0 where ``x1 == 0``,
    as JAX and PyTorch have it)."""
    square = type(x2) in (int, float) and x2 == 2  # the commonest case, with one temporary
    out = np.square(x1) if square else x1**x2

    def grad_base(g: Any) -> Any:
        if plain(g, x1, x2):
            return _power_grad_fused(g, x1, x2, square)
        return g * (x1 * 2 if square else x2 * x1 ** (x2 - 1))

    def grad_exponent(g: Any) -> Any:
        return g * out * np.log(np.where(x1 == 0, 1, x1))

    return out, (grad_base, grad_exponent)


def _power_grad_fused(g: Any, a: Any, b: Any, square: bool) -> Any:
    """``g * b * a**(b-1)`` in one fresh array at the output's shape; a ``g`` that repeats one
    number (as a mean's does) joins the constant, a pass less."""
    scale, repeated = (2.0 if square else b), repeated_value(g)
    if repeated is not None:
        scale, g = scale * repeated, None
    slope = a * scale if square else a ** (b - 1) * scale
    if g is not None:
        slope *= g  # in place: slope is new and already at the output's shape
    return slope


@primitive("abs", np.absolute)
def absolute(x: Any) -> Any:
    return np.abs(x), (lambda g: g * np.sign(x),)


@primitive("sqrt", np.sqrt)
def sqrt(x: Any) -> Any:
    out = np.sqrt(x)
    return out, (lambda g: g / (2 * out),)


@primitive("exp", np.exp)
def exp(x: Any) -> Any:
    out = np.exp(x)
    return out, (lambda g: g * out,)


@primitive("expm1", np.expm1)
def expm1(x: Any) -> Any:
    out = np.expm1(x)
    return out, (lambda g: g * (out + 1),)


@primitive("log", np.log)
def log(x: Any) -> Any:
    return np.log(x), (lambda g: g / x,)


@primitive("log1p", np.log1p)
def log1p(x: Any) -> Any:
    return np.log1p(x), (lambda g: g / (1 + x),)


@primitive("log2", np.log2)
def log2(x: Any) -> Any:
    return np.log2(x), (lambda g: g / (x * math.log(2)),)


@primitive("log10", np.log10)
def log10(x: Any) -> Any:
    return np.log10(x), (lambda g: g / (x * math.log(10)),)


@primitive("square", np.square)
def square(x: Any) -> Any:
    return np.square(x), (lambda g: g * (2 * x),)


@primitive("reciprocal", np.reciprocal)
def reciprocal(x: Any) -> Any:
    out = np.reciprocal(x)
    return out, (lambda g: -g * out * out,)


@primitive("sin", np.sin)
def sin(x: Any) -> Any:
    return np.sin(x), (lambda g: g * np.cos(x),)


@primitive("cos", np.cos)
def cos(x: Any) -> Any:
    return np.cos(x), (lambda g: -g * np.sin(x),)


@primitive("tan", np.tan)
def tan(x: Any) -> Any:
    out = np.tan(x)
    return out, (lambda g: g * (1 + out * out),)


@primitive("asin", np.arcsin)
def asin(x: Any) -> Any:
    return np.arcsin(x), (lambda g: g / np.sqrt(1 - x * x),)


@primitive("acos", np.arccos)
def acos(x: Any) -> Any:
    return np.arccos(x), (lambda g: -g / np.sqrt(1 - x * x),)


@primitive("atan", np.arctan)
def atan(x: Any) -> Any:
    return np.arctan(x), (lambda g: g / (1 + x * x),)


@primitive("sinh", np.sinh)
def sinh(x: Any) -> Any:
    return np.sinh(x), (lambda g: g * np.cosh(x),)


@primitive("cosh", np.cosh)
def cosh(x: Any) -> Any:
    return np.cosh(x), (lambda g: g * np.sinh(x),)


@primitive("tanh", np.tanh)
def tanh(x: Any) -> Any:
    out = np.tanh(x)
    return out, (lambda g: g * (1 - out * out),)


@primitive("asinh", np.arcsinh)
def asinh(x: Any) -> Any:
    return np.arcsinh(x), (lambda g: g / np.sqrt(x * x + 1),)


@primitive("acosh", np.arccosh)
def acosh(x: Any) -> Any:
    return np.arccosh(x), (lambda g: g / np.sqrt(x * x - 1),)


@primitive("atanh", np.arctanh)
def atanh(x: Any) -> Any:
    return np.arctanh(x), (lambda g: g / (1 - x * x),)


@primitive("atan2", np.arctan2)
def atan2(x1: Any, x2: Any) -> Any:
    """The angle of the point ``(x2, x1)``; d/dx1 = x2 / r**2, d/dx2 = -x1 / r**2."""
    def radius2() -> Any:
        return x1 * x1 + x2 * x2

    return np.arctan2(x1, x2), (lambda g: g * x2 / radius2(), lambda g: -g * x1 / radius2())


@primitive("hypot", np.hypot)
def hypot(x1: Any, x2: Any) -> Any:
    out = np.hypot(x1, x2)
    return out, (lambda g: g * x1 / out, lambda g: g * x2 / out)


@primitive("logaddexp", np.logaddexp)
def logaddexp(x1: Any, x2: Any) -> Any:
    out = np.logaddexp(x1, x2)
    return out, (lambda g: g * np.exp(x1 - out), lambda g: g * np.exp(x2 - out))


@primitive("remainder", np.remainder)
def remainder(x1: Any, x2: Any) -> Any:
    """``x1 - floor(x1 / x2) * x2``: gradient 1 in x1 and ``-floor(x1 / x2)`` in x2 (as JAX
    and PyTorch have it)."""
    return np.remainder(x1, x2), (identity, lambda g: -g * np.floor_divide(x1, x2))


@primitive("copysign", np.copysign)
def copysign(x1: Any, x2: Any) -> Any:
    """``|x1|`` with the sign of ``x2``: piecewise constant (gradient 0) in ``x2``."""
    out = np.copysign(x1, x2)
    return out, (lambda g: g * np.sign(x1) * np.where(np.signbit(x2), -1.0, 1.0),
                 lambda g: g * 0)


@primitive("maximum", np.maximum)
def maximum(x1: Any, x2: Any) -> Any:
    """Elementwise max; where ``x1 == x2`` the whole gradient goes to ``x1``."""
    first = (x1 >= x2) | np.isnan(x1)  # ties and NaN in x1 take x1's gradient
    return np.maximum(x1, x2), (lambda g: np.where(first, g, 0), lambda g: np.where(first, 0, g))


@primitive("minimum", np.minimum)
def minimum(x1: Any, x2: Any) -> Any:
    """Elementwise min; where ``x1 == x2`` the whole gradient goes to ``x1``."""
    first = (x1 <= x2) | np.isnan(x1)
    return np.minimum(x1, x2), (lambda g: np.where(first, g, 0), lambda g: np.where(first, 0, g))


@primitive("real", np.real)
def real(x: Any) -> Any:
    return np.real(x), (identity,)


@primitive("conj", np.conjugate)
def conj(x: Any) -> Any:
    return np.conj(x), (identity,)


@primitive("imag", np.imag)
def imag(x: Any) -> Any:
    return np.imag(x), (lambda g: g * 0,)  # a real input's imaginary part is 0


@primitive("astype")
def astype(x: Any, dtype: np.dtype) -> Any:
    """A floating cast; the gradient is cast back to the input's dtype."""
    kind = x.dtype
    return x.astype(dtype), (lambda g: g.astype(kind),)


@composite("asarray")
def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> Any:
    """A traced value stays traced (the backend's asarray), cast when a dtype is given."""
    return obj if dtype is None else obj.astype(dtype)


@primitive("where", np.where)
def where(condition: Any, x1: Any, x2: Any) -> Any:
    """``x1`` where ``condition`` holds, else ``x2``; each gets the gradient where it was chosen
    (the condition, boolean, has none)."""
    return np.where(condition, x1, x2), (None, lambda g: np.where(condition, g, 0),
                                         lambda g: np.where(condition, 0, g))


@composite("clip", np.clip)
def clip(x: Any, min: Any = None, max: Any = None) -> Any:
    """``x`` limited to ``[min, max]``: gradient 1 inside, bounds included (maximum and minimum
    give ties to ``x``); traced bounds get the gradient where they bind."""
    if min is not None:
        x = np.maximum(x, min)
    if max is not None:
        x = np.minimum(x, max)
    return x


constant("ceil floor round sign trunc floor_divide isfinite isinf isnan signbit equal "
         "not_equal less less_equal greater greater_equal logical_and logical_or logical_xor "
         "logical_not bitwise_and bitwise_or bitwise_xor bitwise_invert bitwise_left_shift "
         "bitwise_right_shift",
         np.ceil, np.floor, np.round, np.around, np.rint, np.sign, np.trunc, np.floor_divide,
         np.isfinite, np.isinf, np.isnan, np.signbit, np.equal, np.not_equal, np.less,
         np.less_equal, np.greater, np.greater_equal, np.logical_and, np.logical_or,
         np.logical_xor, np.logical_not, np.bitwise_and, np.bitwise_or, np.bitwise_xor,
         np.invert, np.left_shift, np.right_shift)
constant("argmax argmin argsort nonzero searchsorted count_nonzero all any unique_all "
         "unique_counts unique_inverse unique_values zeros_like ones_like empty_like",
         np.argmax, np.argmin, np.argsort, np.nonzero, np.searchsorted, np.count_nonzero,
         np.all, np.any, np.unique_all, np.unique_counts, np.unique_inverse, np.unique_values,
         np.unique, np.zeros_like, np.ones_like, np.empty_like, np.isclose, np.allclose,
         np.array_equal, np.shape, np.ndim, np.size, np.result_type, np.can_cast)


@composite("full_like", np.full_like)
def full_like(x: Any, fill_value: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """A traced fill value keeps its gradient (the shape of ``x`` is all that is used of it)."""
    zeros = np.zeros(shape_of(x), dtype=dtype or x.dtype)
    return zeros + fill_value
