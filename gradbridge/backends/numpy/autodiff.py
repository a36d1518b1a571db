"""Reverse-mode automatic differentiation of NumPy code, small enough to read in one sitting.

Inside :func:`value_and_grad` the differentiated inputs become :class:`Tracer` objects: arrays
that remember how they were computed. Each primitive below computes its NumPy result and, right
beside it, one vector-Jacobian product (VJP) per input: given the gradient ``g`` of the output,
the gradient of that input, still at the output's broadcast shape. Every call records its
operations on a :class:`Tape` in the order they run, which is already a topological order, so
:func:`backward` walks the tape in reverse without sorting anything, sums each VJP over the axes
that broadcasting stretched (:func:`unbroadcast`) and adds up contributions.

Tracers send both Python operators (``t * x``) and NumPy calls (``np.multiply(t, x)``,
``np.sum(t)``, through NEP 13 ``__array_ufunc__`` and NEP 18 ``__array_function__``) to these
primitives, so the backend's methods can be the NumPy functions themselves and plain arrays
never meet a wrapper. Gradients are first order: VJPs compute with plain NumPy.

Subgradients where the derivative is undefined (the same in every gradbridge backend):
``maximum``/``minimum`` give the whole gradient to the first argument at ties; ``clip`` passes
the gradient where ``min <= x <= max``, boundaries included; the ``max``/``min`` reductions
split it equally among tied extremes (as ``jax.numpy.max`` and ``torch.amax`` do); ``abs``
has gradient 0 at 0 (``sign(0)``, as in PyTorch; JAX gives 1).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import numpy as np

from gradbridge.core.backend import (
    PYTHON_NUMBERS,
    Argnums,
    Axis,
    InvalidArgument,
    NotDifferentiable,
    check_argnums,
    check_scalar_output,
    left_the_graph,
    returned_a_number,
    tree_map,
)

VJP = Callable[[Any], Any]
"""Output gradient -> one input's gradient, at the output's shape (broadcasting is undone later)."""

Entry = tuple[tuple[int, ...], list[tuple[int, VJP]]]
"""One recorded value on a tape: its shape and, per traced input, (input's entry index, VJP)."""


# ------------------------------------------------------------------------------- the graph


class Tape:
    """The operations of one :func:`value_and_grad` call, in the order they ran.

    Entry ``i`` is the ``i``-th value recorded (an :data:`Entry`); the traced inputs are
    entries with no parents. An operation runs after its inputs, so this order is already
    topological. Entries hold what the VJPs need and nothing else (not the values themselves),
    so intermediate values that no VJP uses are freed during the forward pass.
    """

    __slots__ = ("dtype", "entries")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.entries: list[Entry | None] = []  # None: consumed by the backward pass

    def push(self, out: Any, parents: list[tuple[int, VJP]]) -> Tracer:
        """Record ``out``, computed from ``parents``, and return it as a tracer on this tape."""
        self.entries.append((out.shape, parents))
        return Tracer(out, self, len(self.entries) - 1)

    def leaf(self, x: Any) -> Tracer:
        """Start tracing ``x`` (a differentiated input) as an array of the tape's dtype."""
        if isinstance(x, Tracer):
            raise NotDifferentiable("grad cannot be nested: the NumPy backend's gradients are "
                                    "first order")
        return self.push(cast(x, self.dtype), [])


class Tracer:
    """An array being differentiated: its NumPy value and where the tape recorded it."""

    __slots__ = ("index", "tape", "value")

    def __init__(self, value: Any, tape: Tape, index: int) -> None:
        self.value = value
        self.tape = tape
        self.index = index

    # What NumPy sees: ufuncs and array functions on tracers run the primitives below.
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method == "__call__" and not kwargs:
            if ufunc in UFUNC_PRIMITIVES:
                return UFUNC_PRIMITIVES[ufunc](*inputs)
            if ufunc in BOOLEAN_UFUNCS:  # piecewise constant: a plain result, no gradient
                return ufunc(*(value(x) for x in inputs))
        call = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        raise NotDifferentiable(
            f"{call}{' with ' + ', '.join(kwargs) if kwargs else ''} is not differentiable here; "
            f"traced values support {', '.join(sorted(u.__name__ for u in UFUNC_PRIMITIVES))}, "
            "called without out=/where=/dtype= arguments"
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        primitive = FUNCTION_PRIMITIVES.get(func)
        if primitive is None:
            raise NotDifferentiable(
                f"numpy.{func.__name__} is not differentiable here; traced values support "
                f"{', '.join(sorted({f.__name__ for f in FUNCTION_PRIMITIVES}))}"
            )
        return primitive(*args, **kwargs)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise left_the_graph("converting a traced value to a NumPy array (np.asarray, "
                             "be.to_numpy)")

    def __setitem__(self, key: Any, item: Any) -> None:
        raise NotDifferentiable(
            "arrays are not modified in place inside grad; build a new one instead, e.g. with "
            "be.where(...) or be.concat(...)"
        )

    # Python operators
    def __add__(self, other: Any) -> Any:
        return add(self, other)

    def __radd__(self, other: Any) -> Any:
        return add(other, self)

    def __sub__(self, other: Any) -> Any:
        return subtract(self, other)

    def __rsub__(self, other: Any) -> Any:
        return subtract(other, self)

    def __mul__(self, other: Any) -> Any:
        return multiply(self, other)

    def __rmul__(self, other: Any) -> Any:
        return multiply(other, self)

    def __truediv__(self, other: Any) -> Any:
        return divide(self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return divide(other, self)

    def __pow__(self, other: Any) -> Any:
        return power(self, other)

    def __rpow__(self, other: Any) -> Any:
        return power(other, self)

    def __matmul__(self, other: Any) -> Any:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return matmul(other, self)

    def __neg__(self) -> Any:
        return negative(self)

    def __pos__(self) -> Tracer:
        return self

    def __abs__(self) -> Any:
        return absolute(self)

    def __getitem__(self, key: Any) -> Any:
        return getitem(self, key)

    # Comparisons give plain boolean arrays: they are piecewise constant, so no gradient.
    def __lt__(self, other: Any) -> Any:
        return self.value < value(other)

    def __le__(self, other: Any) -> Any:
        return self.value <= value(other)

    def __gt__(self, other: Any) -> Any:
        return self.value > value(other)

    def __ge__(self, other: Any) -> Any:
        return self.value >= value(other)

    def __eq__(self, other: Any) -> Any:
        return self.value == value(other)

    def __ne__(self, other: Any) -> Any:
        return self.value != value(other)

    __hash__ = None  # type: ignore[assignment]

    # What an array answers about itself
    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def T(self) -> Any:
        return transpose(self)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    # Leaving the graph: a number or host copy of a traced value would carry no gradient.
    def __float__(self) -> float:
        raise left_the_graph("float(x)")

    def __int__(self) -> int:
        raise left_the_graph("int(x)")

    def __index__(self) -> int:
        raise left_the_graph("using a traced value as an index")

    def __complex__(self) -> complex:
        raise left_the_graph("complex(x)")

    def __bool__(self) -> bool:
        raise left_the_graph("bool(x) (an if or while on a traced value)")

    def item(self) -> Any:
        raise left_the_graph("x.item()")

    def tolist(self) -> Any:
        raise left_the_graph("x.tolist()")

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return f"Tracer({self.value!r})"


def value(x: Any) -> Any:
    """The NumPy value of a tracer; anything else unchanged."""
    return x.value if isinstance(x, Tracer) else x


def cast(x: Any, dtype: np.dtype) -> Any:
    """``x`` as an array or NumPy scalar of ``dtype``, converted only if it is not one already.

    Through ``astype`` rather than ``np.asarray``, so that values a ``jit`` trace stands in for
    (:mod:`.staging`) stay traced.
    """
    current = getattr(x, "dtype", None)
    if current is not None and current == dtype:  # (np.dtype(None) is float64, so not None)
        return x
    return x.astype(dtype) if hasattr(x, "astype") else np.asarray(x, dtype=dtype)


def record(out: Any, *inputs: tuple[Any, VJP]) -> Any:
    """Return ``out`` as a tracer linked to the traced ones among ``inputs`` (plain if none)."""
    tape, parents = None, []
    for x, vjp in inputs:
        if isinstance(x, Tracer):
            if tape is not None and x.tape is not tape:
                raise NotDifferentiable(
                    "values traced by two different grad calls meet here; the NumPy backend's "
                    "gradients are first order, so grad cannot be nested"
                )
            tape = x.tape
            parents.append((x.index, vjp))
    return out if tape is None else tape.push(out, parents)


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving it ``shape`` again."""
    if g.shape == shape:
        return g
    if not shape:  # a scalar's gradient: the sum of everything
        repeated = repeated_value(g)
        return np.add.reduce(g, axis=None) if repeated is None else repeated * g.size
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return np.add.reduce(g, axis=tuple(range(lead)) + stretched).reshape(shape)


def repeated_value(g: Any) -> Any:
    """The one number a zero-stride broadcast ``g`` repeats (a reduction's gradient is one),
    as a 0-D value; None when ``g`` is an ordinary array."""
    if g.ndim and g.size and not any(g.strides):
        return g.reshape(-1)[0]
    return None


# ---------------------------------------------------------------------- the backward pass


def backward(tape: Tape, root: int, seed: Any) -> list[Any]:
    """Gradients of the tape's entry ``root`` with respect to every entry (None: unreached).

    Walks the tape backwards from ``root``; each entry's VJPs run once, after every later use
    of it has added its contribution. The tape is consumed as it goes: an entry's VJPs (and the
    values they hold) and its gradient are dropped once they have run, so memory is released
    during the walk. The leaves' gradients stay for the caller.
    """
    entries = tape.entries
    grads: list[Any] = [None] * len(entries)
    grads[root] = seed
    for i in range(root, -1, -1):
        g, entry = grads[i], entries[i]
        if g is None or entry is None or not entry[1]:  # unreached, or a leaf
            continue
        grads[i] = entries[i] = None
        for parent, vjp in entry[1]:
            contribution = vjp(g)
            shape = entries[parent][0]  # type: ignore[index]  # parents precede, unconsumed
            if contribution.shape != shape:
                contribution = unbroadcast(contribution, shape)
            previous = grads[parent]
            grads[parent] = contribution if previous is None else previous + contribution
    return grads


def value_and_grad(fn: Callable[..., Any], argnums: Argnums, dtype: str) -> Callable[..., Any]:
    """``fn`` returning ``(fn(*args), gradient)``, both plain NumPy values of ``dtype``.

    The arguments at ``argnums`` (arrays, numbers, or nested dicts/lists/tuples of them) are
    traced; the gradient has their structure (a tuple of structures for a tuple ``argnums``).
    Inputs the output does not depend on get zero gradients. The value is a 0-D array; 0-D
    gradients are NumPy scalars (immutable, and cheaper to update), others fresh arrays.
    """
    float_dtype = np.dtype(dtype)
    to_dtype = float_dtype.type
    checked: dict[int, tuple[int, ...]] = {}  # argnums, validated once per number of arguments

    def value_and_grad_fn(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if len(args) not in checked:
            checked[len(args)] = check_argnums(argnums, len(args))
        nums = checked[len(args)]
        tape = Tape(float_dtype)
        inputs = list(args)
        for i in nums:
            inputs[i] = tree_map(tape.leaf, args[i])
        out = fn(*inputs, **kwargs)
        if type(out) in PYTHON_NUMBERS:
            raise returned_a_number(out)
        if isinstance(out, (tuple, list, dict)):
            raise InvalidArgument(
                f"grad needs fn to return one scalar array, but it returned a {type(out).__name__}"
            )
        result = value(out)
        check_scalar_output(getattr(result, "shape", ()))  # NumPy values, or a Python number
        grads: list[Any] = [None] * len(tape.entries)
        if isinstance(out, Tracer) and out.tape is tape:
            seed = np.ones(result.shape, result.dtype) if result.shape else result.dtype.type(1)
            grads = backward(tape, out.index, seed)  # d out / d out = 1
        del out

        def gradient(leaf: Tracer) -> Any:
            g = grads[leaf.index]
            if leaf.value.shape:
                return (np.zeros(leaf.value.shape, float_dtype) if g is None
                        else g.astype(float_dtype))  # a fresh copy: it aliases nothing
            return to_dtype(0) if g is None else cast(g, float_dtype)[()]  # a NumPy scalar

        wrt = tuple(tree_map(gradient, inputs[i]) for i in nums)
        loss = np.copy(np.reshape(cast(result, float_dtype), ()))  # a 0-D array
        return loss, wrt[0] if isinstance(argnums, int) else wrt

    return value_and_grad_fn


# ------------------------------------------------------------------ elementwise primitives
# Each returns NumPy's result, recorded with one VJP per input. VJPs capture only the values
# they use, so the tape keeps no intermediate that its backward pass does not need.


def identity(g: Any) -> Any:
    """The VJP of an input that reaches the output unchanged."""
    return g


def add(x1: Any, x2: Any) -> Any:
    return record(value(x1) + value(x2), (x1, identity), (x2, identity))


def subtract(x1: Any, x2: Any) -> Any:
    return record(value(x1) - value(x2), (x1, identity), (x2, np.negative))


def multiply(x1: Any, x2: Any) -> Any:
    a, b = value(x1), value(x2)
    # only a traced input's VJP ever runs, and its value has a shape (an array or NumPy scalar)
    shape_a, shape_b = getattr(a, "shape", ()), getattr(b, "shape", ())
    return record(a * b, (x1, _times(b, shape_a)), (x2, _times(a, shape_b)))


def _times(other: Any, shape: tuple[int, ...]) -> VJP:
    """The VJP of ``x * other`` for an ``x`` of ``shape``: ``g * other`` (summed back later).

    For a scalar ``x`` (a weight, a bias) times an array, that sum is one inner product, which
    skips an array-sized temporary: fresh large temporaries are the main cost of a step at
    large N.
    """
    def vjp(g: Any) -> Any:
        if shape == () and g.ndim and getattr(other, "shape", None) == g.shape:
            return inner(g, other)
        return g * other

    return vjp


def inner(a: Any, b: Any) -> Any:
    """``sum(a * b)`` over all elements of two same-shaped arrays, with no temporary.

    BLAS's dot where both are contiguous (the usual case, and what a hand-written NumPy loop
    calls: 2-3x faster than einsum single-threaded; for large arrays OpenBLAS may use threads,
    which a machine shared with other busy processes can make slower); einsum for strided or
    broadcast views, which it walks in place where ``vdot`` would copy them.
    """
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return np.vdot(a, b)
    axes = string.ascii_letters[:a.ndim]
    return np.einsum(f"{axes},{axes}->", a, b)


def divide(x1: Any, x2: Any) -> Any:
    a, b = value(x1), value(x2)
    out = a / b
    return record(out, (x1, lambda g: g / b), (x2, lambda g: -g * out / b))


def negative(x: Any) -> Any:
    return record(-value(x), (x, np.negative))


def power(x1: Any, x2: Any) -> Any:
    """``x1 ** x2``; the exponent gets a gradient too when it is traced."""
    a, b = value(x1), value(x2)
    square = isinstance(b, int | float) and b == 2  # the commonest case, with one temporary
    out = np.square(a) if square else a**b

    def grad_base(g: Any) -> Any:
        # d/da a**b = b * a**(b-1), times g, in one fresh array at the output's shape; a
        # gradient that repeats one number (as a mean's does) joins the constant: a pass less
        scale, repeated = (2.0 if square else b), repeated_value(g)
        if repeated is not None:
            scale, g = scale * repeated, None
        slope = a * scale if square else a ** (b - 1) * scale
        if g is not None:
            slope *= g  # in place: slope is new and already at the output's shape
        return slope

    # d/db a**b = a**b * log(a), taken as 0 where a == 0 (as JAX and PyTorch do)
    return record(out, (x1, grad_base),
                  (x2, lambda g: g * out * np.log(np.where(a == 0, 1, a))))


def absolute(x: Any) -> Any:
    """``|x|``, with gradient ``sign(x)``: 0 at 0."""
    a = value(x)
    return record(np.abs(a), (x, lambda g: g * np.sign(a)))


def sqrt(x: Any) -> Any:
    out = np.sqrt(value(x))
    return record(out, (x, lambda g: g / (2 * out)))


def exp(x: Any) -> Any:
    out = np.exp(value(x))
    return record(out, (x, lambda g: g * out))


def log(x: Any) -> Any:
    a = value(x)
    return record(np.log(a), (x, lambda g: g / a))


def log1p(x: Any) -> Any:
    a = value(x)
    return record(np.log1p(a), (x, lambda g: g / (1 + a)))


def tanh(x: Any) -> Any:
    out = np.tanh(value(x))
    return record(out, (x, lambda g: g * (1 - out * out)))


def maximum(x1: Any, x2: Any) -> Any:
    """Elementwise max; where ``x1 == x2`` the whole gradient goes to ``x1``."""
    a, b = value(x1), value(x2)
    first = (a >= b) | np.isnan(a)  # ties and NaN in x1 take x1's gradient
    return record(np.maximum(a, b), (x1, lambda g: np.where(first, g, 0)),
                  (x2, lambda g: np.where(first, 0, g)))


def minimum(x1: Any, x2: Any) -> Any:
    """Elementwise min; where ``x1 == x2`` the whole gradient goes to ``x1``."""
    a, b = value(x1), value(x2)
    first = (a <= b) | np.isnan(a)
    return record(np.minimum(a, b), (x1, lambda g: np.where(first, g, 0)),
                  (x2, lambda g: np.where(first, 0, g)))


def where(condition: Any, x1: Any, x2: Any) -> Any:
    """``x1`` where ``condition`` holds, else ``x2``; each gets the gradient where it was chosen."""
    c = value(condition)
    return record(np.where(c, value(x1), value(x2)), (x1, lambda g: np.where(c, g, 0)),
                  (x2, lambda g: np.where(c, 0, g)))


def clip(x: Any, min: Any = None, max: Any = None) -> Any:
    """``x`` limited to ``[min, max]`` (constant bounds); gradient 1 inside, bounds included."""
    a, low, high = value(x), value(min), value(max)
    inside: Any = True
    if low is not None:
        inside = a >= low
    if high is not None:
        inside = inside & (a <= high)
    return record(np.clip(a, low, high), (x, lambda g: np.where(inside, g, 0)))


# ------------------------------------------------------------------------- linear algebra


def matmul(x1: Any, x2: Any) -> Any:
    """``x1 @ x2`` for 1-D, 2-D and batched operands; batch broadcasting is summed back."""
    a, b = value(x1), value(x2)

    def as_matrices(g: Any) -> tuple[Any, Any, Any]:
        """View 1-D operands as matmul does (a row (1, n), a column (n, 1)), and g to match."""
        a2, b2 = a, b
        if b.ndim == 1:
            b2, g = b[:, None], g[..., None]
        if a.ndim == 1:
            a2, g = a[None, :], np.expand_dims(g, -2)
        return a2, b2, g

    def grad_a(g: Any) -> Any:
        _, b2, g2 = as_matrices(g)
        ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
        return ga[..., 0, :] if a.ndim == 1 else ga

    def grad_b(g: Any) -> Any:
        a2, _, g2 = as_matrices(g)
        gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
        return gb[..., 0] if b.ndim == 1 else gb

    return record(np.matmul(a, b), (x1, grad_a), (x2, grad_b))


def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    a = value(x)
    inverse = None if axes is None else tuple(np.argsort([ax % a.ndim for ax in axes]))
    return record(np.transpose(a, axes), (x, lambda g: np.transpose(g, inverse)))


def swapaxes(x: Any, axis1: int, axis2: int) -> Any:
    return record(np.swapaxes(value(x), axis1, axis2),
                  (x, lambda g: np.swapaxes(g, axis1, axis2)))


def matrix_transpose(x: Any) -> Any:
    return swapaxes(x, -1, -2)


# ----------------------------------------------------------------------------- reductions


def _reduced(shape: tuple[int, ...], axis: Axis) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes a reduction removes (normalized) and the shape it leaves with keepdims."""
    if axis is None:
        return tuple(range(len(shape))), (1,) * len(shape)
    axes = tuple(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis))
    return axes, tuple(1 if i in axes else n for i, n in enumerate(shape))


def expand(g: Any, kept: tuple[int, ...], shape: tuple[int, ...]) -> Any:
    """``g`` (a reduction's gradient, shaped ``kept``) repeated along the reduced axes to ``shape``.

    A read-only view with zero strides, as ``np.broadcast_to`` returns, but built directly:
    that halves the cost of a reduction's VJP, which matters in small, fast steps.
    """
    if not isinstance(g, np.ndarray | np.generic):  # traced by jit (.staging): the same view
        return np.broadcast_to(np.reshape(g, kept), shape)
    g = np.ascontiguousarray(g).reshape(kept)
    strides = tuple(0 if k != n else s for k, n, s in zip(kept, shape, g.strides, strict=True))
    view = np.ndarray(shape, g.dtype, g, strides=strides)
    view.flags.writeable = False
    return view


def sum(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """Sum over ``axis``; every summed element gets the gradient of its sum."""
    a = value(x)
    shape, (_, kept) = a.shape, _reduced(a.shape, axis)
    return record(np.add.reduce(a, axis, keepdims=keepdims),  # type: ignore[call-overload]
                  (x, lambda g: expand(g, kept, shape)))


def mean(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """Mean over ``axis``: the sum's gradient divided by the number of elements averaged."""
    a = value(x)
    shape, (axes, kept) = a.shape, _reduced(a.shape, axis)
    count = math.prod(shape[i] for i in axes)
    total = np.add.reduce(a, axis, keepdims=keepdims)  # type: ignore[call-overload]
    return record(total / count,
                  (x, lambda g: expand(g / count, kept, shape)))


def _extremum(reduce: Callable[..., Any]) -> Callable[..., Any]:
    """max or min over ``axis``; the gradient is shared equally among tied extremes."""

    def extremum(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        a = value(x)
        axes, kept = _reduced(a.shape, axis)
        out = reduce(a, axis, keepdims=keepdims)

        def grad(g: Any) -> Any:
            hit = a == np.reshape(out, kept)
            share = np.reshape(g, kept) / np.sum(hit, axis=axes, keepdims=True, dtype=g.dtype)
            return np.where(hit, share, 0)

        return record(out, (x, grad))

    return extremum


max = _extremum(np.maximum.reduce)
min = _extremum(np.minimum.reduce)


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) shifted by the maximum so it cannot overflow; its VJP is softmax * g."""
    a = value(x)
    axes, kept = _reduced(a.shape, axis)
    shift = np.max(a, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0)  # rows that are all -inf (or hold +inf)
    shifted = np.subtract(a, shift)
    total_exp = np.sum(np.exp(shifted, out=shifted), axis=axis, keepdims=True)
    total = np.log(total_exp) + shift
    del shifted

    def grad(g: Any) -> Any:
        softmax = np.subtract(a, shift)  # exp(a - shift) / total_exp, one array-sized temporary
        np.exp(softmax, out=softmax)
        softmax *= np.reshape(g, kept) / total_exp
        return softmax

    out = total if keepdims else np.reshape(total, [n for i, n in enumerate(a.shape)
                                                    if i not in axes])
    return record(out, (x, grad))


def mean_squared_error(prediction: Any, target: Any) -> Any:
    """The mean over all elements of ``(prediction - target) ** 2``, as one recorded operation.

    The residual ``r`` is computed once; the loss is its inner product with itself over its
    size ``n``, and the VJP ``2 g r / n`` scales that same residual in place (only this
    operation holds it) instead of building the square's and the mean's temporaries.
    """
    residual = np.subtract(value(prediction), value(target))
    count = residual.size
    shared = isinstance(target, Tracer)  # then the target's VJP needs the residual as well

    def grad_prediction(g: Any) -> Any:
        factor = 2 * g / count
        if shared or not residual.ndim:
            return residual * factor
        return np.multiply(residual, factor, out=residual)

    return record(inner(residual, residual) / count, (prediction, grad_prediction),
                  (target, lambda g: residual * (-2 * g / count)))


# ---------------------------------------------------------------------- shape and indexing


def reshape(x: Any, shape: int | tuple[int, ...]) -> Any:
    a = value(x)
    old = a.shape
    return record(np.reshape(a, shape), (x, lambda g: np.reshape(g, old)))


def expand_dims(x: Any, axis: int) -> Any:
    a = value(x)
    old = a.shape
    return record(np.expand_dims(a, axis), (x, lambda g: np.reshape(g, old)))


def concat(arrays: Sequence[Any], axis: int | None = 0) -> Any:
    """Join along ``axis`` (``None``: flatten first); each input gets its slice of the gradient."""
    if axis is None:
        return concat([reshape(x, (-1,)) for x in arrays], 0)
    values = [value(x) for x in arrays]
    out = np.concatenate(values, axis=axis)
    ax = axis % out.ndim

    def piece(start: int, stop: int) -> VJP:
        index = (slice(None),) * ax + (slice(start, stop),)
        return lambda g: g[index]

    stops = list(accumulate(v.shape[ax] for v in values))
    return record(out, *((x, piece(stop - v.shape[ax], stop))
                         for x, v, stop in zip(arrays, values, stops, strict=True)))


def stack(arrays: Sequence[Any], axis: int = 0) -> Any:
    """Stack along a new ``axis``; each input gets its slice of the gradient."""
    out = np.stack([value(x) for x in arrays], axis=axis)
    ax = axis % out.ndim

    def piece(i: int) -> VJP:
        index = (slice(None),) * ax + (i,)
        return lambda g: g[index]

    return record(out, *((x, piece(i)) for i, x in enumerate(arrays)))


def _is_basic_index(key: Any) -> bool:
    """Integers, slices, None and Ellipsis select each element at most once."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, int | np.integer | slice | type(None) | type(Ellipsis))
               and not isinstance(k, bool) for k in parts)


def getitem(x: Any, key: Any) -> Any:
    """``x[key]``; the VJP scatters the gradient into zeros shaped like ``x``."""
    a = value(x)
    shape = a.shape
    key = tuple(value(k) for k in key) if isinstance(key, tuple) else value(key)

    def scatter(g: Any) -> Any:
        full = np.zeros_like(g, shape=shape)
        if _is_basic_index(key):
            full[key] = g
        else:  # integer-array or boolean indices may repeat an element: add them all up
            np.add.at(full, key, g)
        return full

    return record(a[key], (x, scatter))


# ------------------------------------------------------------------------- NumPy dispatch

UFUNC_PRIMITIVES: dict[np.ufunc, Callable[..., Any]] = {
    np.add: add, np.subtract: subtract, np.multiply: multiply, np.divide: divide,
    np.negative: negative, np.power: power, np.absolute: absolute, np.sqrt: sqrt,
    np.exp: exp, np.log: log, np.log1p: log1p, np.tanh: tanh, np.maximum: maximum,
    np.minimum: minimum, np.matmul: matmul,
}
"""NumPy ufuncs on tracers, called without ``out=``/``where=``, run these primitives."""

BOOLEAN_UFUNCS: frozenset[np.ufunc] = frozenset({
    np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal,
    np.isnan, np.isinf, np.isfinite, np.signbit,
    np.logical_and, np.logical_or, np.logical_xor, np.logical_not,
})
"""Ufuncs whose results are booleans: on tracers they compute on the values, with no gradient."""

FUNCTION_PRIMITIVES: dict[Any, Callable[..., Any]] = {
    np.where: where, np.clip: clip, np.transpose: transpose, np.swapaxes: swapaxes,
    np.sum: sum, np.mean: mean, np.max: max, np.amax: max, np.min: min, np.amin: min,
    np.reshape: reshape, np.expand_dims: expand_dims, np.concatenate: concat, np.stack: stack,
}
"""NumPy array functions (NEP 18) on tracers run these primitives (Array API arguments)."""
if hasattr(np, "matrix_transpose"):  # NumPy >= 2.0
    FUNCTION_PRIMITIVES[np.matrix_transpose] = matrix_transpose
