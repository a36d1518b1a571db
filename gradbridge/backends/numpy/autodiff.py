"""Reverse-mode automatic differentiation of NumPy code: the engine, read in one sitting.

Inside :func:`value_and_grad` the differentiated inputs become :class:`Tracer` objects: arrays
that remember how they were computed. NumPy calls and Python operators on tracers reach the
*primitives* (``elementwise_rules.py``, ``array_rules.py``, ``linalg_rules.py``), each a
forward computation with, right beside it, one vector-Jacobian product (VJP) per input,
registered by :func:`primitive` under its ``core/ops.py`` name. Every call records on a
:class:`Tape` in the order it runs, which is already a topological order, so :func:`backward`
walks the tape in reverse without sorting, sums each VJP over the axes broadcasting stretched
(:func:`unbroadcast`), and adds them up.

VJPs are written in NumPy calls, so they are differentiable themselves: ``grad(grad(f))``
works. Each ``value_and_grad`` call has its own tape at its own nesting *level*; a primitive
records on the innermost tape among its inputs and computes on their values one level down,
which are the outer grad's tracers, so the outer tape records the inner backward pass. A value
of an outer grad is a constant to an inner one (no perturbation confusion).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradbridge.core import ops
from gradbridge.core.backend import (
    PYTHON_NUMBERS,
    Argnums,
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

Rule = Callable[..., tuple[Any, Sequence[Any]]]
"""A primitive's forward on plain values: ``(output, VJPs)``, one VJP per positional argument
(a list of them for a list of arrays; None where it is not differentiable, or the
NotDifferentiable error that says why)."""

PRIMITIVES: dict[str, Callable[..., Any]] = {}
"""Differentiable functions by name (``core/ops.py``'s, or a backend extra such as
``logsumexp``)."""

CONSTANT: set[str] = set()
"""Names whose results carry no gradient: integer or boolean outputs, piecewise constants."""

DISPATCH: dict[Any, Callable[..., Any]] = {}
"""NumPy ufuncs and array functions on tracers -> the primitive (or constant) they run."""

_levels = itertools.count(1)


# ------------------------------------------------------------------------------- the graph


class Tape:
    """The operations of one :func:`value_and_grad` call, in the order they ran.

    Entry ``i`` is the ``i``-th value recorded (an :data:`Entry`); the traced inputs are
    entries with no parents. Entries hold what the VJPs need and nothing else (not the values
    themselves), so intermediate values that no VJP uses are freed during the forward pass.
    ``level`` orders nested grads: a later (inner) call has a higher one.
    """

    __slots__ = ("dtype", "entries", "level")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.entries: list[Entry | None] = []  # None: consumed by the backward pass
        self.level = next(_levels)

    def push(self, out: Any, parents: list[tuple[int, VJP]]) -> Tracer:
        """Record ``out``, computed from ``parents``, and return it as a tracer on this tape."""
        if out.dtype.kind == "c":
            raise NotDifferentiable("complex values are forward only in the numpy backend's "
                                    "grad; compute them outside grad, or use jax or torch")
        self.entries.append((out.shape, parents))
        return Tracer(out, self, len(self.entries) - 1)

    def leaf(self, x: Any) -> Tracer:
        """Start tracing ``x`` (a differentiated input) as an array of the tape's dtype."""
        return self.push(cast(x, self.dtype), [])


def value(x: Any) -> Any:
    """The value under a tracer (one level down); anything else unchanged."""
    return x.value if type(x) is Tracer else x


def detached(x: Any) -> Any:
    """The plain value under every level of tracing (for quantities without gradient)."""
    while type(x) is Tracer:
        x = x.value
    return x


def identity(g: Any) -> Any:
    """The VJP of an input that reaches the output unchanged."""
    return g


def shape_of(x: Any) -> tuple[int, ...]:
    """The shape of an array, tracer, jit value or Python number (which has none)."""
    return getattr(x, "shape", ())


def ndim_of(x: Any) -> int:
    """The number of axes of an array, tracer, jit value or Python number."""
    return len(shape_of(x))


def plain(*values: Any) -> bool:
    """Whether ``values`` are NumPy's own (no outer grad records them): fast paths may run."""
    return Tracer not in map(type, values)


def cast(x: Any, dtype: np.dtype) -> Any:
    """``x`` as an array or NumPy scalar of ``dtype``, converted only if it is not one already.

    Through ``astype`` rather than ``np.asarray``, so that traced values (an outer grad's, or
    those of a ``jit`` trace, :mod:`.staging`) stay traced.
    """
    current = getattr(x, "dtype", None)
    if current is not None and current == dtype:  # (np.dtype(None) is float64, so not None)
        return x
    return x.astype(dtype) if hasattr(x, "astype") else np.asarray(x, dtype=dtype)


def innermost(args: Sequence[Any]) -> Tape | None:
    """The tape of the innermost grad among the tracers in ``args`` (and in lists among them)."""
    tape = None
    for a in args:
        kind = type(a)
        if kind is Tracer:
            if tape is None or a.tape.level > tape.level:
                tape = a.tape
        elif kind is list or kind is tuple:
            inner = innermost(a)
            if inner is not None and (tape is None or inner.level > tape.level):
                tape = inner
    return tape


def _down(x: Any, tape: Tape) -> Any:
    """``x`` one level below ``tape``: its tracers' values (in lists too), other values as they
    are (an outer grad's tracer is a constant here)."""
    kind = type(x)
    if kind is Tracer:
        return x.value if x.tape is tape else x
    if kind is list or kind is tuple:
        return kind(_down(item, tape) for item in x)
    return x


def primitive(name: str, *functions: Any, outputs: bool = False) -> Callable[[Rule], Any]:
    """Register ``rule`` as the differentiable ``name``, also run by NumPy's ``functions``
    (ufuncs or array functions) on tracers.

    ``rule`` gets plain values (one level down) and returns ``(output, VJPs)``; with
    ``outputs``, a tuple of outputs and one such VJP sequence per output (None for an output
    without gradient), each output recorded on its own (VJPs are linear in the cotangents).
    """

    def register(rule: Rule) -> Callable[..., Any]:
        @functools.wraps(rule)
        def call(*args: Any, **kwargs: Any) -> Any:
            tape = innermost(args)
            if tape is None:
                if kwargs and innermost(tuple(kwargs.values())) is not None:
                    raise NotDifferentiable(f"{name}: pass traced values as positional arguments")
                return rule(*args, **kwargs)[0]
            if kwargs and any(type(v) is Tracer and v.tape is tape for v in kwargs.values()):
                raise NotDifferentiable(f"{name}: pass traced values as positional arguments")
            out, vjps = rule(*[a.value if type(a) is Tracer and a.tape is tape
                               else _down(a, tape) for a in args], **kwargs)
            if not outputs:
                return tape.push(out, _parents(name, tape, args, vjps))
            pushed = [o if v is None else tape.push(o, _parents(name, tape, args, v))
                      for o, v in zip(out, vjps, strict=True)]
            return type(out)(*pushed) if hasattr(out, "_fields") else type(out)(pushed)

        PRIMITIVES[name] = call
        for f in functions:
            DISPATCH[f] = call
        return call

    return register


def _parents(name: str, tape: Tape, args: Sequence[Any],
             vjps: Sequence[Any]) -> list[tuple[int, VJP]]:
    """(entry, VJP) for each of ``args``' tracers on ``tape``; a traced argument without a VJP
    is an error, never a silent zero."""
    parents = []
    for i, a in enumerate(args):
        vjp = vjps[i] if i < len(vjps) else None
        if type(a) is Tracer:
            if a.tape is not tape:
                continue
            parents.append((a.index, _checked(vjp, name, i)))
        elif type(a) in (list, tuple):
            for j, item in enumerate(a):
                if type(item) is Tracer and item.tape is tape:
                    parents.append((item.index, _checked(vjp, name, i)[j]))
    return parents


def _checked(vjp: Any, name: str, i: int) -> Any:
    """``vjp``, unless there is none for argument ``i`` of ``name``: then NotDifferentiable."""
    if isinstance(vjp, NotDifferentiable):
        raise vjp
    if vjp is None:
        raise NotDifferentiable(f"{name} is not differentiable in argument {i}")
    return vjp


def composite(name: str, *functions: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register ``fn``, written in differentiable NumPy calls, as the differentiable ``name``
    (also run by NumPy's ``functions`` on tracers): its gradient is that of its parts."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        PRIMITIVES[name] = fn
        for f in functions:
            DISPATCH[f] = fn
        return fn

    return register


def constant(names: str, *functions: Any) -> None:
    """Register NumPy ``functions`` (those of core/ops.py's ``names``) whose results carry no
    gradient (integer or boolean outputs, piecewise constants): on tracers they compute on the
    values, every level down."""

    def make(function: Any) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            tape = innermost((*args, *kwargs.values()))
            if tape is None:
                return function(*args, **kwargs)
            return call(*(_down(a, tape) for a in args),
                        **{k: _down(v, tape) for k, v in kwargs.items()})

        return call

    CONSTANT.update(names.split())
    for function in functions:
        DISPATCH[function] = make(function)


def differentiable_names() -> frozenset[str]:
    """The ``core/ops.py`` names (main namespace and linalg) that have a vector-Jacobian
    product here, as a rule of their own or as a composition of rules."""
    return frozenset(PRIMITIVES) & {op.name for op in (*ops.MAIN, *ops.LINALG)}


# ------------------------------------------------------------------------------ the tracer


def _operator(function: Any, reflected: bool = False) -> Callable[..., Any]:
    """The dunder method for a binary operator: the rule NumPy's ``function`` reaches, called
    directly (NumPy's dispatch to ``__array_ufunc__`` would cost as much as the rule); without
    one, NumPy's function, which says it is not differentiable."""
    if reflected:
        return lambda self, other: DISPATCH.get(function, function)(other, self)
    return lambda self, other: DISPATCH.get(function, function)(self, other)


class Tracer:
    """An array being differentiated: its value (one level down) and where a tape recorded it.

    A full Array API array for forward use: operators, comparisons, indexing, attributes and
    NumPy's array methods; what would leave the graph (``float(x)``) is NotDifferentiable.
    """

    __slots__ = ("index", "tape", "value")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: Any, tape: Tape, index: int) -> None:
        self.value = value
        self.tape = tape
        self.index = index

    # What NumPy sees: ufuncs and array functions on tracers run the primitives.
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        rule = DISPATCH.get(ufunc) if method == "__call__" else None
        if rule is None or kwargs.keys() - {"axis", "axes"}:  # (vecdot takes an axis)
            call = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
            raise NotDifferentiable(
                f"{call}{' with ' + ', '.join(kwargs) if kwargs else ''} is not differentiable "
                "here; traced values support the namespace's functions, called without "
                "out=/where=/dtype= arguments")
        return rule(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        rule = DISPATCH.get(func)
        if rule is None:
            raise NotDifferentiable(
                f"numpy.{func.__name__} is not differentiable here; traced values support the "
                "namespace's functions (gradbridge.backends.numpy.autodiff."
                "differentiable_names() lists those with gradients)")
        return rule(*args, **kwargs)

    def __array_namespace__(self, api_version: str | None = None) -> Any:
        return _namespace(self.tape.dtype.name)

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        raise left_the_graph("exporting a traced value through DLPack")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise left_the_graph("converting a traced value to a NumPy array (np.asarray, "
                             "be.to_numpy)")

    def __setitem__(self, key: Any, item: Any) -> None:
        raise NotDifferentiable(
            "arrays are not modified in place inside grad; build a new one instead, e.g. with "
            "be.where(...) or be.concat(...)")

    # Python operators (comparisons give plain boolean arrays: no gradient)
    __add__, __radd__ = _operator(np.add), _operator(np.add, True)
    __sub__, __rsub__ = _operator(np.subtract), _operator(np.subtract, True)
    __mul__, __rmul__ = _operator(np.multiply), _operator(np.multiply, True)
    __truediv__, __rtruediv__ = _operator(np.divide), _operator(np.divide, True)
    __floordiv__, __rfloordiv__ = _operator(np.floor_divide), _operator(np.floor_divide, True)
    __mod__, __rmod__ = _operator(np.remainder), _operator(np.remainder, True)
    __pow__, __rpow__ = _operator(np.power), _operator(np.power, True)
    __matmul__, __rmatmul__ = _operator(np.matmul), _operator(np.matmul, True)
    __and__, __rand__ = _operator(np.bitwise_and), _operator(np.bitwise_and, True)
    __or__, __ror__ = _operator(np.bitwise_or), _operator(np.bitwise_or, True)
    __xor__, __rxor__ = _operator(np.bitwise_xor), _operator(np.bitwise_xor, True)
    __lshift__, __rlshift__ = _operator(np.left_shift), _operator(np.left_shift, True)
    __rshift__, __rrshift__ = _operator(np.right_shift), _operator(np.right_shift, True)
    __lt__, __le__ = _operator(np.less), _operator(np.less_equal)
    __gt__, __ge__ = _operator(np.greater), _operator(np.greater_equal)
    __eq__, __ne__ = _operator(np.equal), _operator(np.not_equal)

    def __neg__(self) -> Any:
        return DISPATCH[np.negative](self)

    def __pos__(self) -> Any:
        return DISPATCH[np.positive](self)

    def __abs__(self) -> Any:
        return DISPATCH[np.absolute](self)

    def __invert__(self) -> Any:
        return DISPATCH[np.invert](self)

    def __getitem__(self, key: Any) -> Any:
        return PRIMITIVES["__getitem__"](self, key)

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
    def device(self) -> str:
        return "cpu"

    @property
    def itemsize(self) -> int:
        return self.value.itemsize

    @property
    def real(self) -> Any:
        return np.real(self)

    @property
    def imag(self) -> Any:
        return np.imag(self)

    @property
    def T(self) -> Any:
        return np.transpose(self)

    @property
    def mT(self) -> Any:
        return np.matrix_transpose(self)

    def to_device(self, device: Any, /, *, stream: Any = None) -> Tracer:
        if device != "cpu":
            raise InvalidArgument(f"the numpy backend has only the device 'cpu', not {device!r}")
        return self

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    # NumPy's array methods
    def astype(self, dtype: Any, copy: bool = True) -> Any:
        dtype = np.dtype(dtype)
        if dtype.kind != "f":  # integers, booleans (and complex): forward only
            return detached(self).astype(dtype)
        return PRIMITIVES["astype"](self, dtype)

    def sum(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.mean(self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.prod(self, axis=axis, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: float = 0, keepdims: bool = False) -> Any:
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def var(self, axis: Any = None, ddof: float = 0, keepdims: bool = False) -> Any:
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.argmin(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Any:
        return np.cumsum(self, axis=axis)

    def cumprod(self, axis: Any = None) -> Any:
        return np.cumprod(self, axis=axis)

    def all(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.all(self, axis=axis, keepdims=keepdims)

    def any(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.any(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Any:
        return np.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes: Any) -> Any:
        return np.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)

    def swapaxes(self, axis1: int, axis2: int) -> Any:
        return np.swapaxes(self, axis1, axis2)

    def squeeze(self, axis: Any = None) -> Any:
        return np.squeeze(self, axis)

    def flatten(self) -> Any:
        return np.reshape(self, -1)

    ravel = flatten

    def clip(self, min: Any = None, max: Any = None) -> Any:
        return np.clip(self, min, max)

    def dot(self, other: Any) -> Any:
        return np.matmul(self, other)

    def take(self, indices: Any, axis: Any = None) -> Any:
        return np.take(self, indices, axis=axis)

    def repeat(self, repeats: Any, axis: Any = None) -> Any:
        return np.repeat(self, repeats, axis=axis)

    def argsort(self, axis: Any = -1, kind: Any = None) -> Any:
        return np.argsort(self, axis=axis, kind=kind)

    def nonzero(self) -> Any:
        return np.nonzero(self)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.diagonal(self, offset, axis1, axis2)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.trace(self, offset, axis1, axis2)

    def round(self, decimals: int = 0) -> Any:
        return np.round(self, decimals)

    def conj(self) -> Any:
        return np.conj(self)

    def copy(self) -> Tracer:
        return self  # values inside grad are never written in place

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


@functools.cache
def _namespace(dtype: str) -> Any:
    """The NumPy backend of a tape's dtype: what a traced value's ``__array_namespace__`` is."""
    from gradbridge.backends.numpy import NumpyBackend  # (it imports this module)

    return NumpyBackend(dtype=dtype)


# ---------------------------------------------------------------------- the backward pass


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving it ``shape`` again."""
    if g.shape == shape:
        return g
    total = np.sum if type(g) is Tracer else np.add.reduce  # (the ufunc method: less overhead)
    if not shape:  # a scalar's gradient: the sum of everything
        repeated = repeated_value(g)
        return total(g, axis=None) if repeated is None else repeated * g.size
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return total(g, axis=tuple(range(lead)) + stretched).reshape(shape)


def repeated_value(g: Any) -> Any:
    """The one number a zero-stride broadcast ``g`` repeats (a reduction's gradient is one),
    as a 0-D value; None when ``g`` is an ordinary array (or traced)."""
    if type(g) is np.ndarray and g.ndim and g.size and not any(g.strides):
        return g.reshape(-1)[0]
    return None


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
    """``fn`` returning ``(fn(*args), gradient)``, both values of ``dtype``.

    The arguments at ``argnums`` (arrays, numbers, or nested dicts/lists/tuples of them) are
    traced; the gradient has their structure (a tuple of structures for a tuple ``argnums``).
    Inputs the output does not depend on get zero gradients. Called on an outer grad's tracers,
    the results are that grad's tracers; otherwise the value is a 0-D array, 0-D gradients are
    NumPy scalars (immutable, and cheaper to update), others fresh arrays.
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
        ours = type(out) is Tracer and out.tape is tape
        result = out.value if ours else out
        check_scalar_output(getattr(result, "shape", ()))  # arrays, or a Python number
        grads: list[Any] = [None] * len(tape.entries)
        if ours:
            seed = np.ones(result.shape, result.dtype) if result.shape else result.dtype.type(1)
            grads = backward(tape, out.index, seed)  # d out / d out = 1
        del out

        def gradient(leaf: Tracer) -> Any:
            g = grads[leaf.index]
            if type(g) is Tracer:  # a nested grad: the outer grad differentiates this one
                return cast(g, float_dtype)
            if leaf.value.shape:
                return (np.zeros(leaf.value.shape, float_dtype) if g is None
                        else g.astype(float_dtype))  # a fresh copy: it aliases nothing
            return to_dtype(0) if g is None else cast(g, float_dtype)[()]  # a NumPy scalar

        wrt = tuple(tree_map(gradient, inputs[i]) for i in nums)
        loss = np.reshape(cast(result, float_dtype), ())
        if type(loss) is not Tracer:
            loss = np.copy(loss)  # a 0-D array of its own
        return loss, wrt[0] if isinstance(argnums, int) else wrt

    return value_and_grad_fn
