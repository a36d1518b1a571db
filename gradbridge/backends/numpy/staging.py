"""``jit`` for the NumPy backend: trace a function once, then replay the NumPy calls it made.

NumPy has no compiler, but at small sizes a training step spends most of its time in Python
around the arithmetic: autodiff bookkeeping, dispatch, walking dicts of parameters. None of it
depends on the numbers. :func:`jit` therefore runs the function once per argument signature
(the nesting of the arguments, each array's type, shape, dtype and strides, each Python
number's type, each bool's value) on :class:`Symbol` and :class:`Number` stand-ins that compute
the real values and write down every NumPy call and operator they take part in, as a line of
Python; those lines compile into a straight-line function that later calls run instead: the
same NumPy calls in the same order, so the same bits, without the Python around them.
``staged.source`` shows the program (it reads like hand-written NumPy).

The contract is JAX's ``jit``: the function is pure. Python side effects happen while tracing
only, and random numbers drawn inside it are drawn once (pass them in as arguments instead).
Python ints, floats and complex numbers among the arguments are inputs of the program, like
arrays (a learning-rate sweep traces once); bools are part of the signature by value, so they
may steer control flow. A number that steers Python all the same (``if lr > 0``,
``math.exp(lr)``, a shape or an axis) makes the numbers of that signature part of it by value:
one program per value, as for bools. Only calls known to be shape-static are recorded
(:data:`SHAPE_STATIC`).

What a replay could not repeat faithfully stops the trace: control flow on traced values
(``bool``, ``float``, ``if x > 0``), turning a traced value into a plain array, writing in place
into the arguments or into arrays made outside the NumPy calls traced, calls not known to be
shape-static (``nonzero``, ``unique``, boolean masks, a traced number as a shape or an axis),
results of types it does not know. The stand-ins carry their values, so the call in progress
goes on eagerly from there: the function's body runs once per call either way. That signature
then runs eagerly on later calls, with the same results; ``reason`` says why.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import operator
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat.numpy
import numpy as np

from gradbridge.backends.numpy.autodiff import Tracer
from gradbridge.core import ops

PROGRAMS_KEPT = 8
"""Traces kept per function (argument signatures), the oldest dropped first; as many
signatures that run eagerly are remembered."""

NUMBERS = (int, float, complex)
"""Python argument types that are inputs of a trace (``bool`` is not one of them)."""

STATIC_TYPES = (bool, str, type(None))
"""Argument leaves that are constants of a trace, part of its signature by value."""

ALL = 1 << 16
"""An operand count meaning: every positional argument."""

VALUE_SHAPED: frozenset[str] = frozenset({
    "nonzero", "unique_all", "unique_counts", "unique_inverse", "unique_values", "from_dlpack",
})
"""Functions of core/ops.py whose result's shape depends on the values of their operands."""


def from_ops() -> dict[Any, int]:
    """The allowlist's part that core/ops.py gives: every function of the namespace, linalg and
    fft whose result has a shape and dtype fixed by its operands' (all but VALUE_SHAPED, and
    the creation functions, which take no array), with its number of leading operands
    (``arrays``; a list of arrays, as ``concat`` takes, is one)."""
    allowed: dict[Any, int] = {}
    for table, module in ((ops.MAIN, np), (ops.LINALG, np.linalg), (ops.FFT, np.fft)):
        for op in table:
            function = getattr(module, op.name, None)
            if op.name in VALUE_SHAPED or function is None or isinstance(function, np.ufunc):
                continue  # ufuncs are allowed by method (UFUNC_METHODS)
            if op.arrays or op.category == "manipulation":
                allowed[function] = ALL if op.name == "broadcast_arrays" else max(op.arrays, 1)
    return allowed


SHAPE_STATIC: dict[Any, int] = {
    # The allowlist: core/ops.py's functions (from_ops), and NumPy's own names and functions
    # beyond the standard, listed here. A function is listed when the shape and dtype of its
    # result follow from the shapes and dtypes of its operands and from its other parameters
    # (axis, shape, subscripts, counts), never from values. The number is how many leading
    # positional arguments are operands, which a replay may change; a traced value anywhere
    # else (and outside OPERAND_KEYWORDS) stops the trace, as does every function not listed.
    # Ufuncs are listed by method in UFUNC_METHODS. Not listed, for instance: nonzero,
    # argwhere, unique, intersect1d, compress, extract, trim_zeros, linalg.lstsq (residuals'
    # shape), linalg.eig (real or complex by value), real_if_close.
    **from_ops(),
    **dict.fromkeys([
        np.amax, np.amin, np.cumsum, np.cumprod, np.nansum, np.nanprod, np.nanmean,
        np.nanstd, np.nanvar, np.nanmax, np.nanmin, np.nanargmax, np.nanargmin, np.nancumsum,
        np.nancumprod, np.median, np.nanmedian, np.ptp, np.average, np.trace, np.transpose,
        np.swapaxes, np.rollaxis, np.ravel, np.fliplr, np.flipud, np.rot90, np.diagonal,
        np.diag, np.partition, np.argpartition, np.copy, np.around, np.angle, np.nan_to_num,
        np.isreal, np.iscomplex, np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit,
        np.concatenate, np.vstack, np.hstack, np.dstack, np.column_stack, np.block,
        np.linalg.norm, np.linalg.multi_dot, np.linalg.tensorinv, np.linalg.cond,
    ], 1),
    **dict.fromkeys([
        np.dot, np.vdot, np.inner, np.outer, np.kron, np.cross, np.isclose, np.percentile,
        np.quantile, np.linalg.tensorsolve, np.full_like,
    ], 2),
    **dict.fromkeys([np.einsum, np.atleast_1d, np.atleast_2d, np.atleast_3d, np.meshgrid], ALL),
}

UFUNC_METHODS = {"__call__": ALL, "reduce": 1, "accumulate": 1, "outer": 2, "at": 3}
"""Ufunc methods on the allowlist, with their operand counts (``reduceat`` is not on it)."""

VALUE_SHAPED_FORMS = {np.where: 1}
"""Listed functions that are not shape-static with this many arguments: ``where(c)`` is
``nonzero(c)``."""

OPERAND_KEYWORDS = frozenset({"out", "where", "weights", "initial", "min", "max", "a_min",
                              "a_max"})
"""Keyword arguments that are operands (values, masks, outputs) wherever they occur."""

ATTRIBUTES = frozenset({"shape", "ndim", "size", "dtype", "strides", "flags", "itemsize",
                        "nbytes"})
"""What a traced value answers from the traced call's value: fixed by the signature."""

METHODS: dict[str, int] = {
    **dict.fromkeys([
        "all", "any", "argmax", "argmin", "astype", "conj", "copy", "cumsum", "flatten",
        "max", "mean", "min", "prod", "ravel", "repeat", "reshape", "round", "squeeze", "std",
        "sum", "swapaxes", "transpose", "var",
    ], 1),
    "dot": 2, "take": 2, "clip": 3,
}
"""ndarray methods a traced value records (they return arrays), with operand counts as in
SHAPE_STATIC (the array itself is the first)."""

OPERATORS: dict[str, str] = {
    "add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%",
    "pow": "**", "matmul": "@", "and": "&", "or": "|", "xor": "^",
    "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=",
}
"""Python's binary operators, by the name of their dunder method."""

UFUNC_OPERATORS: dict[Any, str] = {np.add: "+", np.subtract: "-", np.multiply: "*",
                                   np.divide: "/", np.power: "**"}
"""Ufuncs recorded as operators: the same NumPy call, which may reuse a temporary operand."""

MARK = "\x00"
"""Brackets a variable's name in recorded code until the program is written out (a NUL
cannot occur in the repr of a constant, so only variables are ever replaced)."""


EAGER: contextvars.ContextVar[bool] = contextvars.ContextVar("gradbridge_numpy_eager",
                                                            default=False)
"""True inside :func:`eager`: jitted functions call ``fn`` itself, neither tracing nor
replaying."""


class Unstageable(Exception):
    """Raised by :func:`signature` for an argument a trace cannot take."""


# ----------------------------------------------------------------------- traced values


def _reading(convert: Callable[..., Any],
             reason: str = "Python control flow or a number depends on a traced value") -> Any:
    """A method handing the value to ``convert`` (``float``, ``str``...): it stops the trace."""

    def method(self: Traced, *args: Any) -> Any:
        self.trace.stop(reason, self)
        return convert(self.value, *args)

    return method


class Traced:
    """A value of the traced call, standing for variable ``name`` of the replayed program.

    NumPy calls and operators record a line and return new traced values; anything that would
    let the value itself steer Python (``bool``, ``float``, ``np.asarray``, ``str``) stops the
    trace and answers from the value, so the call goes on eagerly.
    """

    __slots__ = ("name", "trace", "value")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: Any, name: str, trace: Trace) -> None:
        self.value = value
        self.name = name
        self.trace = trace

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        func = ufunc if method == "__call__" else getattr(ufunc, method)
        return self.trace.call(func, inputs, kwargs, UFUNC_METHODS.get(method))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return self.trace.call(func, args, kwargs, SHAPE_STATIC.get(func))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        self.trace.stop("a traced value was turned into a plain array", self)
        return np.array(self.value, dtype, copy=copy)

    __bool__ = _reading(bool)
    __float__ = _reading(float)
    __int__ = _reading(int)
    __complex__ = _reading(complex)
    __index__ = _reading(operator.index)
    __round__ = _reading(round)
    __str__ = __format__ = _reading(format, "a traced value was formatted as text")

    def __neg__(self) -> Any:
        return self.trace.emit(operator.neg, (self,), {}, "-{0}")

    def __pos__(self) -> Any:
        return self.trace.emit(operator.pos, (self,), {}, "+{0}")

    def __abs__(self) -> Any:
        return self.trace.emit(operator.abs, (self,), {}, "abs({0})")

    def __invert__(self) -> Any:
        return self.trace.emit(operator.invert, (self,), {}, "~{0}")


class Symbol(Traced):
    """A traced array (or NumPy scalar): indexing and the methods in METHODS record too, and
    shape-like attributes answer from the value."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name in ATTRIBUTES:
            return getattr(self.value, name)
        if name in METHODS:
            return functools.partial(self.trace.method, self, name)
        if name == "T":
            return self.trace.call(np.transpose, (self,), {}, 1)
        if name.startswith("__"):  # NumPy probes optional protocols this way
            raise AttributeError(name)
        found = getattr(self.value, name)
        self.trace.stop(f"attribute {name!r} of a traced value is not recorded")
        return found

    def __array_namespace__(self, api_version: str | None = None) -> Any:
        return array_api_compat.numpy  # (array-api-compat's wrappers ask for it)

    def __getitem__(self, key: Any) -> Any:
        masks = [s for s in _symbols(key) if _is_boolean(s.value)]
        if masks:
            self.trace.stop("a boolean mask selects a number of elements that depends on the "
                            "values", masks[0])
        return self.trace.emit(operator.getitem, (self, key), {}, "{0}[{1}]")

    def __setitem__(self, key: Any, item: Any) -> None:
        self.trace.emit(operator.setitem, (self, key, item), {}, "{0}[{1}] = {2}",
                        writes=self)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Symbol({self.name}: {getattr(self.value, 'shape', ())} {self.value.dtype})"


class Number(Traced):
    """A traced Python number (an argument, or Python arithmetic on one): a replay passes the
    new value to the same operators and NumPy calls, which keeps NumPy's weak-scalar rules."""

    __slots__ = ()
    __hash__ = _reading(hash)  # as a dict key or a set member, the value steers Python

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.value, name)  # what the number lacks, it lacks here too
        self.trace.stop(f"attribute {name!r} of a traced Python number is not recorded", self)
        return found

    def __repr__(self) -> str:
        return f"Number({self.name}: {type(self.value).__name__})"


def _binary(op: str, symbol: str, reflected: bool = False, inplace: bool = False) -> Any:
    """The dunder method for ``symbol`` (e.g. ``*``): records ``a * b`` with a traced value.

    An in-place operator is recorded as ``operator.imul(a, b)``: it writes into an array (and
    the line keeps its name) but makes a new NumPy scalar (and the line names the result).
    """
    name = f"i{op}" if inplace else op + ("_" if op in ("and", "or") else "")
    func = getattr(operator, name)
    template = f"operator.{name}({{0}}, {{1}})" if inplace else f"{{0}} {symbol} {{1}}"

    def method(self: Traced, other: Any) -> Any:
        if _defers(other):
            return NotImplemented
        args = (other, self) if reflected else (self, other)
        return self.trace.emit(func, args, {}, template, writes=self if inplace else None)

    return method


def _defers(other: Any) -> bool:
    """A tape tracer (autodiff) wraps traced values, so its own operators must run first."""
    return type(other) is Tracer


def _is_boolean(value: Any) -> bool:
    """Whether ``value`` as an index would be a mask (``x[True]`` too has a value's shape)."""
    return type(value) is bool or getattr(value, "dtype", None) == np.bool_


for _op, _symbol in OPERATORS.items():
    setattr(Traced, f"__{_op}__", _binary(_op, _symbol))
    if _op not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(Traced, f"__r{_op}__", _binary(_op, _symbol, reflected=True))
        setattr(Traced, f"__i{_op}__", _binary(_op, _symbol, inplace=True))


# ---------------------------------------------------------------------------- tracing


class Trace:
    """The program being written by one traced call: its lines and the names they use."""

    def __init__(self) -> None:
        self.lines: list[tuple[str | None, str]] = []  # (the one name it defines, code)
        self.namespace: dict[str, Any] = {"np": np, "operator": operator}
        self.constants: dict[int, str] = {}
        self.inputs: list[Traced] = []
        self.guarded: list[Any] = []  # memory that in-place writes must not touch
        self.stopped: str | None = None  # why not, once the rest of the call runs eagerly
        self.by_number = False  # whether a traced Python number stopped it
        self.count = 0

    def stop(self, reason: str, by: Traced | None = None) -> None:
        """Give up the program (the first reason is kept, and whether the value ``by`` that
        caused it is a Python number); the call goes on with the values."""
        if self.stopped is None:
            self.stopped, self.by_number = reason, isinstance(by, Number)

    def symbol(self, value: Any) -> Traced:
        """A new variable of the program, holding ``value`` in the traced call."""
        self.count += 1
        kind = Number if type(value) in (bool, *NUMBERS) else Symbol
        return kind(value, f"v{self.count - 1}", self)

    def input(self, value: Any) -> Traced:
        symbol = self.symbol(value)
        self.inputs.append(symbol)
        if isinstance(value, np.ndarray):
            self.guarded.append(value)
        return symbol

    # recording

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             operands: int | None) -> Any:
        """Record a NumPy function or ufunc (method) with ``operands`` (None: not allowed)."""
        if any(_defers(a) for a in args) or any(_defers(v) for v in kwargs.values()):
            return NotImplemented
        if not self.stopped:
            self._check_shape_static(func, args, kwargs, operands)
        out = kwargs.get("out")
        writes = out if out is not None else (args[0] if getattr(func, "__name__", "") == "at"
                                              else None)
        return self.emit(func, args, kwargs, None, writes=writes)

    def method(self, symbol: Symbol, name: str, *args: Any, **kwargs: Any) -> Any:
        """Record ``symbol.name(*args, **kwargs)`` (one of METHODS)."""
        fixed = [] if self.stopped else _fixed_traced((symbol, *args), kwargs, METHODS[name])
        if fixed:
            self.stop(f"ndarray.{name} got a traced value as a shape, an axis or a count",
                      fixed[0])
        placeholders = [f"{{{i + 1}}}" for i in range(len(args))] + [f"{k}={{{k}}}" for k in kwargs]
        template = f"{{0}}.{name}({', '.join(placeholders)})"
        return self.emit(lambda obj, *a, **k: getattr(obj, name)(*a, **k), (symbol, *args),
                         kwargs, template, writes=kwargs.get("out"))

    def emit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             template: str | None, writes: Any = None) -> Any:
        """Run ``func`` on the values and record it as a line; return the traced result.

        ``template`` formats the line from the rendered arguments (positional ``{0}``, keyword
        ``{name}``); without one the line is a call of ``func``. ``writes``: what the call
        writes into, checked before it runs. Once the trace has stopped, this only runs
        ``func`` on the values and returns its plain result: the call goes on eagerly.
        """
        if writes is not None and not self.stopped:
            self._check_writable(writes)
        result = func(*_values(args), **_values(kwargs))
        if self.stopped:
            return result
        rendered = [self.render(a) for a in args]
        named = {k: self.render(v) for k, v in kwargs.items()}
        if template is None and not kwargs and len(args) == 2 and func in UFUNC_OPERATORS:
            line = f"{rendered[0]} {UFUNC_OPERATORS[func]} {rendered[1]}"  # lets NumPy elide
        elif template is None:
            keywords = [f"{k}={v}" for k, v in named.items()]
            line = f"{self.function_name(func)}({', '.join(rendered + keywords)})"
        else:
            line = template.format(*rendered, **named)
        return self.bind(result, line, args, kwargs)

    def bind(self, result: Any, line: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        """Give the result of ``line`` a name (or names), or none when it returns nothing."""
        if self.stopped:  # rendering the line stopped the trace
            return result
        if result is None:
            self.lines.append((None, line))
            return None
        if isinstance(result, np.ndarray):  # an argument written in place and returned (out=)
            for candidate in _symbols((args, kwargs)):
                if candidate.value is result:
                    self.lines.append((None, line))
                    return candidate
        if isinstance(result, np.ndarray | np.generic) or type(result) in (bool, *NUMBERS):
            symbol = self.symbol(result)
            self.lines.append((symbol.name, line))
            return symbol
        if (type(result) in (tuple, list) or hasattr(result, "_fields")) and result and all(
                isinstance(r, np.ndarray | np.generic) for r in result):
            symbols = [self.symbol(r) for r in result]
            names = "".join(f"{MARK}{s.name}{MARK}, " for s in symbols)
            self.lines.append((None, f"{names}= {line}"))
            return _rebuilt(result, symbols)
        self.stop(f"a recorded call returned a {type(result).__name__}")
        return result

    def _check_shape_static(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                            operands: int | None) -> None:
        """Stop unless ``func`` is on the allowlist and takes traced values as operands only."""
        if operands is None or VALUE_SHAPED_FORMS.get(func) == len(args):
            self.stop(f"{_qualified(func)} is not known to be shape-static (the shape of its "
                      "result may depend on the values)")
        elif fixed := _fixed_traced(args, kwargs, operands):
            self.stop(f"{_qualified(func)} got a traced value as a shape, an axis or a count",
                      fixed[0])

    def _check_writable(self, target: Any) -> None:
        targets = target if isinstance(target, tuple) else (target,)
        for t in targets:
            if not isinstance(t, Traced) or t.trace is not self:
                self.stop("an in-place write into an array made outside the trace")
            elif any(np.may_share_memory(t.value, g) for g in self.guarded):
                self.stop("an in-place write into an argument or a constant")

    # rendering

    def render(self, obj: Any) -> str:
        """Python source for ``obj`` in a line: a variable, a literal, or a constant's name."""
        if isinstance(obj, Traced):
            if obj.trace is not self:
                self.stop("a value traced by another jit call was used here")
            return f"{MARK}{obj.name}{MARK}"
        if type(obj) is tuple:
            return "(" + "".join(self.render(o) + ", " for o in obj) + ")"
        if type(obj) is list:
            return "[" + ", ".join(self.render(o) for o in obj) + "]"
        if type(obj) is dict:
            return "{" + ", ".join(f"{self.render(k)}: {self.render(v)}"
                                   for k, v in obj.items()) + "}"
        if type(obj) is slice:
            parts = (obj.start, obj.stop, obj.step)
            return f"slice({', '.join(self.render(p) for p in parts)})"
        if _defers(obj):
            self.stop("a tape tracer reached a recorded call")
        if obj is None or type(obj) in (bool, int, str) or (
                type(obj) is float and math.isfinite(obj)):
            return repr(obj)
        return self.constant(obj)

    def constant(self, obj: Any) -> str:
        """The name of a constant of the program (kept by reference, never copied)."""
        key = id(obj)
        if key not in self.constants:
            self.constants[key] = name = f"c{len(self.constants)}"
            self.namespace[name] = obj
            if isinstance(obj, np.ndarray):
                self.guarded.append(obj)
        return self.constants[key]

    def function_name(self, func: Any) -> str:
        """``np.name`` (or ``np.ufunc.method``) for NumPy's own functions, else a constant."""
        name: str = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        ufunc: str = getattr(owner, "__name__", "") if isinstance(owner, np.ufunc) else ""
        if ufunc and getattr(np, ufunc, None) is owner:
            return f"np.{ufunc}.{name}"
        if name and getattr(np, name, None) is func:
            return f"np.{name}"
        if name and getattr(np.linalg, name, None) is func:
            return f"np.linalg.{name}"
        return self.constant(func)

    # the program

    def finish(self, out: Any) -> Callable[..., Any] | None:
        """Compile the recorded lines into ``replay(v0, v1, ...)`` returning ``out``'s tree
        (None if the trace stopped)."""
        result = self.render_output(out)
        if self.stopped:
            return None
        parameters = ", ".join(s.name for s in self.inputs)
        lines = inline_single_uses([*self.lines, (None, f"return {result}")])
        body = "".join(f"    {line}\n" for line in lines)
        source = f"def replay({parameters}):\n{body}"
        exec(compile(source, "<gradbridge replay>", "exec"), self.namespace)
        replay: Callable[..., Any] = self.namespace["replay"]
        replay.source = source  # type: ignore[attr-defined]
        return replay

    def render_output(self, out: Any) -> str:
        """Source for the returned tree; arrays made without traced values are copied."""
        kind = type(out)
        if kind is dict:
            return "{" + ", ".join(f"{self.render(k)}: {self.render_output(v)}"
                                   for k, v in out.items()) + "}"
        if kind is tuple:
            return "(" + "".join(self.render_output(v) + ", " for v in out) + ")"
        if kind is list:
            return "[" + ", ".join(self.render_output(v) for v in out) + "]"
        if isinstance(out, (Traced, np.generic, *STATIC_TYPES, *NUMBERS)):
            return self.render(out)
        if isinstance(out, np.ndarray):  # made without traced values: a fresh copy per call
            return f"{self.constant(out)}.copy()"
        self.stop(f"the function returned a {kind.__name__}")
        return ""


def inline_single_uses(lines: list[tuple[str | None, str]]) -> list[str]:
    """The lines as source, each value used once, by the very next line, written into it.

    ``v5 = v0 * v2`` followed by ``v6 = v5 + v1`` becomes ``v6 = (v0 * v2) + v1``: the
    product is then a temporary NumPy may overwrite (its temporary elision), so a chain of
    elementwise operations on large arrays allocates one array instead of one per step, as in
    hand-written NumPy. Only the next line may absorb a value, so nothing runs out of order.
    """
    uses = Counter(re.findall(f"{MARK}(v\\d+){MARK}", "".join(code for _, code in lines)))
    merged: list[tuple[str | None, str]] = []
    for name, code in lines:
        if merged:
            previous, previous_code = merged[-1]
            marker = f"{MARK}{previous}{MARK}"
            if previous is not None and uses[previous] == 1 and marker in code:
                merged.pop()
                code = code.replace(marker, f"({previous_code})")
        merged.append((name, code))
    return [(f"{name} = " if name else "") + code.replace(MARK, "") for name, code in merged]


def _values(obj: Any) -> Any:
    """``obj`` with every traced value replaced by its value (through tuples, named tuples,
    lists and dicts)."""
    if isinstance(obj, Traced):
        return obj.value
    kind = type(obj)
    if kind is tuple or kind is list:
        return kind(_values(o) for o in obj)
    if kind is dict:
        return {k: _values(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return _rebuilt(obj, [_values(o) for o in obj])
    return obj


def _rebuilt(like: tuple[Any, ...] | list[Any], items: list[Any]) -> Any:
    """``items`` in a sequence of ``like``'s type (a named tuple takes them one by one)."""
    return type(like)(*items) if hasattr(like, "_fields") else type(like)(items)


def _symbols(obj: Any) -> list[Traced]:
    """The traced values in ``obj`` (through tuples, lists and dicts)."""
    if isinstance(obj, Traced):
        return [obj]
    if type(obj) in (tuple, list):
        return [s for o in obj for s in _symbols(o)]
    if type(obj) is dict:
        return [s for o in obj.values() for s in _symbols(o)]
    return []


def _fixed_traced(args: tuple[Any, ...], kwargs: dict[str, Any], operands: int) -> list[Traced]:
    """Traced values past the first ``operands`` arguments and outside OPERAND_KEYWORDS: a
    shape, an axis, a count, which a replay could not change."""
    return _symbols((args[operands:], [v for k, v in kwargs.items() if k not in OPERAND_KEYWORDS]))


def _qualified(func: Any) -> str:
    """``numpy.unique``, ``numpy.add.reduceat``: how a reason names a function."""
    owner = getattr(func, "__self__", None)
    if isinstance(owner, np.ufunc):
        return f"numpy.{owner.__name__}.{func.__name__}"
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__name__', func)}"


# ------------------------------------------------------------------------------ jit


def signature(tree: Any, leaves: list[Any]) -> Any:
    """A hashable description of ``tree`` that decides whether a trace can replay it; the
    leaves it meets that are inputs (arrays, Python numbers) are appended to ``leaves`` (the
    replay's arguments, in order).

    Called on every call of a jitted function, so containers look at their items directly.
    """
    kind = type(tree)
    if kind is dict:
        parts: list[Any] = [dict, *tree]
        items: Any = tree.values()
    elif kind is tuple or kind is list:
        parts, items = [kind], tree
    else:
        return leaf_signature(tree, leaves)
    for item in items:
        if type(item) is np.ndarray:
            leaves.append(item)
            parts.append((item.shape, item.dtype, item.strides))
        elif type(item) in (dict, tuple, list):
            parts.append(signature(item, leaves))
        else:
            parts.append(leaf_signature(item, leaves))
    parts.append(len(parts))  # where the dict keys end
    return tuple(parts)


def leaf_signature(leaf: Any, leaves: list[Any]) -> Any:
    """The signature of one argument that is not a dict, list or tuple."""
    kind = type(leaf)
    if kind is np.ndarray:
        leaves.append(leaf)
        return (leaf.shape, leaf.dtype, leaf.strides)
    if isinstance(leaf, np.generic) or kind in NUMBERS:
        leaves.append(leaf)
        return kind
    if kind in STATIC_TYPES:
        return (kind, leaf)
    raise Unstageable(f"arguments of type {kind.__name__} are not traced")


def symbolize(tree: Any, trace: Trace, inputs: tuple[type, ...] = NUMBERS) -> Any:
    """``tree`` with its arrays and its Python numbers of the types ``inputs`` replaced by the
    trace's inputs, in signature order."""
    kind = type(tree)
    if kind is np.ndarray or isinstance(tree, np.generic) or kind in inputs:
        return trace.input(tree)
    if kind is dict:
        return {k: symbolize(v, trace, inputs) for k, v in tree.items()}
    if kind is tuple or kind is list:
        return kind(symbolize(t, trace, inputs) for t in tree)
    return tree


def number_key(leaf: Any) -> Any:
    """A Python number by value, for a signature whose numbers steer Python (-0.0 is not 0.0)."""
    return (float, leaf.hex()) if type(leaf) is float else (type(leaf), repr(leaf))


class Staged:
    """``fn`` traced once per argument signature and replayed (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.programs: OrderedDict[Any, Callable[..., Any]] = OrderedDict()
        self.eager: OrderedDict[Any, bool] = OrderedDict()  # failed signatures: numbers' fault?
        self.reason: str | None = None  # why the signature that stopped last runs eagerly
        self.source: str | None = None  # the program traced last

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or EAGER.get():
            return self.fn(*args, **kwargs)
        leaves: list[Any] = []
        try:
            key = signature(args, leaves)
        except Unstageable:
            return self.fn(*args)
        program = self.programs.get(key)
        if program is None:
            return self.untraced(key, args, leaves)
        return program(*leaves)

    def untraced(self, key: Any, args: tuple[Any, ...], leaves: list[Any]) -> Any:
        """A call of a signature without a program: trace it, or run it as it ran before.

        Where a Python number steered Python (``if lr > 0``, a shape), the numbers become part
        of the signature by value, as constants of one program per value.
        """
        numbers_steer = self.eager.get(key)
        if numbers_steer is None:
            return self.trace(key, args, leaves, NUMBERS)
        if not numbers_steer:
            return self.fn(*args)
        arrays = [leaf for leaf in leaves if type(leaf) not in NUMBERS]
        by_value = (key, *[number_key(leaf) for leaf in leaves if type(leaf) in NUMBERS])
        program = self.programs.get(by_value)
        if program is not None:
            return program(*arrays)
        return self.fn(*args) if by_value in self.eager else self.trace(by_value, args, arrays, ())

    def trace(self, key: Any, args: tuple[Any, ...], leaves: list[Any],
              inputs: tuple[type, ...]) -> Any:
        """Run ``fn`` on traced values and keep the program; return this call's results.

        ``inputs``: the Python number types traced (the others are constants). If the trace
        stops, the call has gone on eagerly: its results are the values.
        """
        trace = Trace()
        out = self.fn(*symbolize(args, trace, inputs))
        program = trace.finish(out)
        if program is None:
            self.reason = trace.stopped
            _keep(self.eager, key, trace.by_number)
            return _values(out)
        _keep(self.programs, key, program)
        self.source = program.source  # type: ignore[attr-defined]
        return program(*leaves)  # not the traced values: constants come back as fresh copies


def _keep(kept: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Add ``key`` to ``kept``, dropping the oldest beyond PROGRAMS_KEPT."""
    kept[key] = value
    while len(kept) > PROGRAMS_KEPT:  # another thread may be here too
        with contextlib.suppress(KeyError):
            kept.popitem(last=False)


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """A block in which jitted functions run ``fn`` on every call (its Python runs as written)."""
    token = EAGER.set(True)
    try:
        yield
    finally:
        EAGER.reset(token)


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` traced once per argument signature, then replayed as plain NumPy calls."""
    return fn if isinstance(fn, Staged) else Staged(fn)
