"""``jit`` for the NumPy backend: trace a function once, then replay the NumPy calls it made.

NumPy has no compiler, but at small sizes a training step spends most of its time in Python
around the arithmetic: autodiff bookkeeping, dispatch, walking dicts of parameters. None of it
depends on the numbers. :func:`jit` therefore runs the function once per argument signature
(the nesting of the arguments and each array's type, shape, dtype and strides) on
:class:`Symbol` stand-ins that write down every NumPy call they take part in, as a line of
Python, and compiles those lines into a straight-line function that later calls run instead:
the same NumPy calls in the same order, so the same bits, without the Python around them.
``staged.source`` shows the program (it reads like hand-written NumPy).

The contract is JAX's ``jit``: the function is pure. Python side effects happen while tracing
only, random numbers drawn inside it are drawn once (pass them in as arguments instead), and
Python numbers among the arguments are constants of a trace (another value traces again).
What a replay could not repeat faithfully makes the function run eagerly from then on, with the
same results: control flow on array values (``bool``, ``float``, ``if x > 0``), turning a
traced value into a plain array, writing in place into the arguments or into arrays made
outside the NumPy calls traced, results whose shape depends on the values (boolean masks,
``nonzero``), argument or result types it does not know. ``reason`` says which one happened.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from gradbridge.backends.numpy.autodiff import Tracer

PROGRAMS_KEPT = 8
"""Traces kept per function (argument signatures), the oldest dropped first."""

STATIC_TYPES = (bool, int, float, complex, str, type(None))
"""Argument leaves that become constants of a trace, compared by value."""

ATTRIBUTES = frozenset({"shape", "ndim", "size", "dtype", "strides", "flags", "itemsize",
                        "nbytes"})
"""What a traced value answers from the traced call's value: fixed by the signature."""

METHODS = frozenset({
    "all", "any", "argmax", "argmin", "astype", "clip", "conj", "copy", "cumsum", "dot",
    "flatten", "max", "mean", "min", "prod", "ravel", "repeat", "reshape", "round", "squeeze",
    "std", "sum", "swapaxes", "take", "transpose", "var",
})
"""ndarray methods a traced value records (they return arrays)."""

OPERATORS: dict[str, str] = {
    "add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%",
    "pow": "**", "matmul": "@", "and": "&", "or": "|", "xor": "^",
    "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=",
}
"""Python's binary operators, by the name of their dunder method."""

UFUNC_OPERATORS: dict[Any, str] = {np.add: "+", np.subtract: "-", np.multiply: "*",
                                   np.divide: "/", np.power: "**"}
"""Ufuncs recorded as operators: the same NumPy call, which may reuse a temporary operand."""

VALUE_SHAPED = frozenset({np.nonzero, np.flatnonzero, np.argwhere, np.unique, np.extract,
                          np.compress, np.trim_zeros})
"""Functions whose result's shape depends on the values: a trace would fix that shape."""

MARK = "\x00"
"""Brackets a variable's name in recorded code until the program is written out (a NUL
cannot occur in the repr of a constant, so only variables are ever replaced)."""


class Unstageable(BaseException):
    """Raised while tracing when the function does what a replay could not repeat.

    A BaseException, so that ``except Exception`` in the traced code does not swallow it.
    """


# ----------------------------------------------------------------------- traced values


class Symbol:
    """A value of the traced call, standing for variable ``name`` of the replayed program.

    NumPy calls, operators, indexing and the methods in METHODS record a line and return new
    symbols; shape-like attributes answer from the value; anything that would let the value
    itself steer Python (``bool``, ``float``, ``np.asarray``) stops the trace.
    """

    __slots__ = ("name", "trace", "value")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: Any, name: str, trace: Trace) -> None:
        self.value = value
        self.name = name
        self.trace = trace

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        func = ufunc if method == "__call__" else getattr(ufunc, method)
        return self.trace.call(func, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return self.trace.call(func, args, kwargs)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.trace.stop("a traced value was turned into a plain array")

    def __getattr__(self, name: str) -> Any:
        if name in ATTRIBUTES:
            return getattr(self.value, name)
        if name in METHODS:
            return functools.partial(self.trace.method, self, name)
        if name == "T":
            return self.trace.call(np.transpose, (self,), {})
        if name.startswith("__"):  # NumPy probes optional protocols this way
            raise AttributeError(name)
        raise self.trace.stop(f"attribute {name!r} of a traced value is not recorded")

    def __getitem__(self, key: Any) -> Any:
        if any(s.value.dtype == bool for s in _symbols(key)):
            raise self.trace.stop("a boolean mask selects a number of elements that depends "
                                  "on the values")
        return self.trace.emit(operator.getitem, (self, key), {}, "{0}[{1}]")

    def __setitem__(self, key: Any, item: Any) -> None:
        self.trace.emit(operator.setitem, (self, key, item), {}, "{0}[{1}] = {2}",
                        writes=self)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    def __neg__(self) -> Any:
        return self.trace.emit(operator.neg, (self,), {}, "-{0}")

    def __pos__(self) -> Any:
        return self.trace.emit(operator.pos, (self,), {}, "+{0}")

    def __abs__(self) -> Any:
        return self.trace.emit(operator.abs, (self,), {}, "abs({0})")

    def __invert__(self) -> Any:
        return self.trace.emit(operator.invert, (self,), {}, "~{0}")

    def _value_stop(self, *args: Any) -> Any:
        raise self.trace.stop("Python control flow or a number depends on a traced value")

    __bool__ = __float__ = __int__ = __index__ = __complex__ = _value_stop
    item = tolist = tobytes = _value_stop

    def __repr__(self) -> str:
        return f"Symbol({self.name}: {getattr(self.value, 'shape', ())} {self.value.dtype})"


def _binary(op: str, symbol: str, reflected: bool = False, inplace: bool = False) -> Any:
    """The dunder method for ``symbol`` (e.g. ``*``): records ``a * b`` with a traced value.

    An in-place operator is recorded as ``operator.imul(a, b)``: it writes into an array (and
    the line keeps its name) but makes a new NumPy scalar (and the line names the result).
    """
    name = f"i{op}" if inplace else op + ("_" if op in ("and", "or") else "")
    func = getattr(operator, name)
    template = f"operator.{name}({{0}}, {{1}})" if inplace else f"{{0}} {symbol} {{1}}"

    def method(self: Symbol, other: Any) -> Any:
        if _defers(other):
            return NotImplemented
        args = (other, self) if reflected else (self, other)
        return self.trace.emit(func, args, {}, template, writes=self if inplace else None)

    return method


def _defers(other: Any) -> bool:
    """A tape tracer (autodiff) wraps traced values, so its own operators must run first."""
    return type(other) is Tracer


for _op, _symbol in OPERATORS.items():
    setattr(Symbol, f"__{_op}__", _binary(_op, _symbol))
    if _op not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(Symbol, f"__r{_op}__", _binary(_op, _symbol, reflected=True))
        setattr(Symbol, f"__i{_op}__", _binary(_op, _symbol, inplace=True))


# ---------------------------------------------------------------------------- tracing


class Trace:
    """The program being written by one traced call: its lines and the names they use."""

    def __init__(self) -> None:
        self.lines: list[tuple[str | None, str]] = []  # (the one name it defines, code)
        self.namespace: dict[str, Any] = {"np": np, "operator": operator}
        self.constants: dict[int, str] = {}
        self.inputs: list[Symbol] = []
        self.guarded: list[Any] = []  # memory that in-place writes must not touch
        self.stopped: str | None = None
        self.count = 0

    def stop(self, reason: str) -> Unstageable:
        """Mark this trace failed (even if the exception is caught later) and say why."""
        self.stopped = self.stopped or reason
        return Unstageable(reason)

    def symbol(self, value: Any) -> Symbol:
        """A new variable of the program, holding ``value`` in the traced call."""
        self.count += 1
        return Symbol(value, f"v{self.count - 1}", self)

    def input(self, value: Any) -> Symbol:
        symbol = self.symbol(value)
        self.inputs.append(symbol)
        if isinstance(value, np.ndarray):
            self.guarded.append(value)
        return symbol

    # recording

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Record a NumPy function or ufunc (method) applied to traced values."""
        if any(_defers(a) for a in args) or any(_defers(v) for v in kwargs.values()):
            return NotImplemented
        if func in VALUE_SHAPED or (func is np.where and len(args) == 1):
            raise self.stop(f"the shape numpy.{func.__name__} returns depends on the values")
        out = kwargs.get("out")
        writes = out if out is not None else (args[0] if getattr(func, "__name__", "") == "at"
                                              else None)
        return self.emit(func, args, kwargs, None, writes=writes)

    def method(self, symbol: Symbol, name: str, *args: Any, **kwargs: Any) -> Any:
        """Record ``symbol.name(*args, **kwargs)`` (one of METHODS)."""
        placeholders = [f"{{{i + 1}}}" for i in range(len(args))] + [f"{k}={{{k}}}" for k in kwargs]
        template = f"{{0}}.{name}({', '.join(placeholders)})"
        return self.emit(lambda obj, *a, **k: getattr(obj, name)(*a, **k), (symbol, *args),
                         kwargs, template, writes=kwargs.get("out"))

    def emit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             template: str | None, writes: Any = None) -> Any:
        """Run ``func`` on the values and record it as a line; return the traced result.

        ``template`` formats the line from the rendered arguments (positional ``{0}``, keyword
        ``{name}``); without one the line is a call of ``func``. ``writes``: what the call
        writes into, checked before it runs so that a stopped trace has changed nothing.
        """
        if self.stopped:
            raise Unstageable(self.stopped)
        if writes is not None:
            self._check_writable(writes)
        result = func(*_values(args), **{k: _values(v) for k, v in kwargs.items()})
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
        if result is None:
            self.lines.append((None, line))
            return None
        if isinstance(result, np.ndarray):  # an argument written in place and returned (out=)
            for candidate in _symbols((args, kwargs)):
                if candidate.value is result:
                    self.lines.append((None, line))
                    return candidate
        if isinstance(result, np.ndarray | np.generic):
            symbol = self.symbol(result)
            self.lines.append((symbol.name, line))
            return symbol
        if type(result) in (tuple, list) and result and all(
                isinstance(r, np.ndarray | np.generic) for r in result):
            symbols = [self.symbol(r) for r in result]
            names = "".join(f"{MARK}{s.name}{MARK}, " for s in symbols)
            self.lines.append((None, f"{names}= {line}"))
            return type(result)(symbols)
        raise self.stop(f"a recorded call returned a {type(result).__name__}")

    def _check_writable(self, target: Any) -> None:
        targets = target if isinstance(target, tuple) else (target,)
        for t in targets:
            if not isinstance(t, Symbol) or t.trace is not self:
                raise self.stop("an in-place write into an array made outside the trace")
            if any(np.may_share_memory(t.value, g) for g in self.guarded):
                raise self.stop("an in-place write into an argument or a constant")

    # rendering

    def render(self, obj: Any) -> str:
        """Python source for ``obj`` in a line: a variable, a literal, or a constant's name."""
        if isinstance(obj, Symbol):
            if obj.trace is not self:
                raise self.stop("a value traced by another jit call was used here")
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
            raise self.stop("a tape tracer reached a recorded call")
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
        return self.constant(func)

    # the program

    def finish(self, out: Any) -> Callable[..., Any]:
        """Compile the recorded lines into ``replay(v0, v1, ...)`` returning ``out``'s tree."""
        result = self.render_output(out)
        if self.stopped:
            raise Unstageable(self.stopped)
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
        if isinstance(out, (Symbol, np.generic, *STATIC_TYPES)):
            return self.render(out)
        if isinstance(out, np.ndarray):  # made without traced values: a fresh copy per call
            return f"{self.constant(out)}.copy()"
        raise self.stop(f"the function returned a {kind.__name__}")


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
    """``obj`` with every symbol replaced by its value (through tuples, lists and dicts)."""
    if isinstance(obj, Symbol):
        return obj.value
    kind = type(obj)
    if kind is tuple or kind is list:
        return kind(_values(o) for o in obj)
    if kind is dict:
        return {k: _values(v) for k, v in obj.items()}
    return obj


def _symbols(obj: Any) -> list[Symbol]:
    """The symbols in ``obj`` (through tuples, lists and dicts)."""
    if isinstance(obj, Symbol):
        return [obj]
    if type(obj) in (tuple, list):
        return [s for o in obj for s in _symbols(o)]
    if type(obj) is dict:
        return [s for o in obj.values() for s in _symbols(o)]
    return []


# ------------------------------------------------------------------------------ jit


def signature(tree: Any, leaves: list[Any]) -> Any:
    """A hashable description of ``tree`` that decides whether a trace can replay it; the
    array leaves it meets are appended to ``leaves`` (the replay's arguments, in order).

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
    if isinstance(leaf, np.generic):
        leaves.append(leaf)
        return kind
    if kind is float:  # by bits: 0.0 and -0.0 are equal but not interchangeable
        return (float, leaf.hex())
    if kind in STATIC_TYPES:
        return (kind, leaf)
    raise Unstageable(f"arguments of type {kind.__name__} are not traced")


def symbolize(tree: Any, trace: Trace) -> Any:
    """``tree`` with its array leaves replaced by the trace's inputs, in signature order."""
    kind = type(tree)
    if kind is np.ndarray or isinstance(tree, np.generic):
        return trace.input(tree)
    if kind is dict:
        return {k: symbolize(v, trace) for k, v in tree.items()}
    if kind is tuple or kind is list:
        return kind(symbolize(t, trace) for t in tree)
    return tree


class Staged:
    """``fn`` traced once per argument signature and replayed (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.programs: OrderedDict[Any, Callable[..., Any]] = OrderedDict()
        self.reason: str | None = None  # why fn runs eagerly, once it does
        self.source: str | None = None  # the program traced last

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.reason is not None or kwargs:
            return self.fn(*args, **kwargs)
        leaves: list[Any] = []
        try:
            key = signature(args, leaves)
        except Unstageable:
            return self.fn(*args)
        program = self.programs.get(key)
        if program is None:
            return self.trace(key, args, leaves)
        return program(*leaves)

    def trace(self, key: Any, args: tuple[Any, ...], leaves: list[Any]) -> Any:
        """Run ``fn`` on symbols, keep the program, and return this call's results."""
        trace = Trace()
        try:
            out = self.fn(*symbolize(args, trace))
            program = trace.finish(out)
        except Unstageable as stop:
            self.reason = trace.stopped or str(stop)
            return self.fn(*args)
        self.programs[key] = program
        while len(self.programs) > PROGRAMS_KEPT:  # oldest first; another thread may be here too
            with contextlib.suppress(KeyError):
                self.programs.popitem(last=False)
        self.source = program.source  # type: ignore[attr-defined]
        return program(*leaves)  # not the traced values: constants come back as fresh copies


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` traced once per argument signature, then replayed as plain NumPy calls."""
    return fn if isinstance(fn, Staged) else Staged(fn)
