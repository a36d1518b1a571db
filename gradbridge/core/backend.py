"""What a backend is: the protocol every framework adapter implements, its capabilities, the errors.

This is the one page a reader needs to write a backend. The operations use the Python Array
API standard's names and semantics (broadcasting, ``axis``, ``keepdims``). Logic that is the
same for every framework (device and dtype resolution, ``dot``'s shape rules, ``grad`` from
``value_and_grad``, a Python ``scan``) is written once here, in :class:`BackendBase`.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import numpy as np

from gradbridge.core import ops

Array: TypeAlias = Any
"""An array of the backend's framework (``numpy.ndarray``, ``jax.Array``, ``torch.Tensor``)."""

Shape: TypeAlias = tuple[int, ...]
Axis: TypeAlias = int | tuple[int, ...] | None
Argnums: TypeAlias = int | tuple[int, ...]

DTYPES: tuple[str, ...] = ("float32", "float64")
DEVICE_ALIASES: dict[str, str] = {"gpu": "cuda", "cuda": "cuda:0"}


# --------------------------------------------------------------------------- errors


class GradbridgeError(Exception):
    """Base of every error gradbridge raises on purpose."""


class BackendNotFound(GradbridgeError, LookupError):
    """A backend name that no built-in backend or plugin provides."""


class BackendNotInstalled(GradbridgeError, ImportError):
    """A known backend whose framework is not importable; the message gives the pip line."""


class DeviceNotAvailable(GradbridgeError):
    """A device that this backend cannot reach here; the message lists the devices that exist."""


class NotDifferentiable(GradbridgeError, TypeError):
    """An operation inside ``grad`` that the backend cannot differentiate, or one that leaves
    the graph (``float(x)``, ``x.item()``, ``bool(x)``, a NumPy copy), losing a gradient."""


def left_the_graph(what: str) -> NotDifferentiable:
    """The error for a traced value turned into a number or a host array inside ``grad``."""
    return NotDifferentiable(
        f"{what} inside grad turns a value being differentiated into a constant, so its "
        "gradient would silently be 0; keep it an array and use the backend's operations "
        "(be.where for a branch), or compute the number outside the function and pass it in"
    )


PYTHON_NUMBERS = (bool, int, float, complex)
"""Exact types (NumPy scalars, which subclass float, are arrays here) that carry no gradient."""


def returned_a_number(result: object) -> NotDifferentiable:
    """The error for a function under ``grad`` that returns a Python number, not an array."""
    return NotDifferentiable(
        f"the function given to grad returned a Python {type(result).__name__} ({result!r}), "
        "which carries no gradient; return the backend array itself (e.g. be.sum(...)), "
        "without float() or .item()"
    )


class InvalidArgument(GradbridgeError, ValueError):
    """A value outside what is accepted; the message names the argument, the value and the range."""


class TrainingDiverged(GradbridgeError, ArithmeticError):
    """Training produced a non-finite or exploding loss; nothing computed so far is lost."""

    def __init__(self, message: str, *, epoch: int, last_finite_loss: float | None,
                 history: Any, hint: str) -> None:
        super().__init__(f"{message} (hint: {hint})")
        self.epoch = epoch
        self.last_finite_loss = last_finite_loss
        self.history = history
        self.hint = hint


def invalid(argument: str, value: object, accepted: str) -> InvalidArgument:
    """Build the standard bad-value error: what was given, for which argument, what is accepted."""
    return InvalidArgument(f"{argument}={value!r} is not valid; expected {accepted}")


# ------------------------------------------------------------- one framework per call

FRAMEWORK_OF_MODULE: dict[str, str] = {"numpy": "numpy", "torch": "torch", "jax": "jax",
                                       "jaxlib": "jax", "cupy": "cupy", "tensorflow": "tensorflow"}
"""Top-level module of an array type -> the framework it belongs to (read from the type, so
asking never imports a framework)."""


def mixed_frameworks(backend: str, foreign: str, operation: str) -> InvalidArgument:
    """The error for an operation of one backend given another framework's array."""
    return InvalidArgument(
        f"{operation} of the {backend} backend was given a {foreign} array; one call works on "
        f"one framework's arrays, and gradbridge never converts them silently: move it first "
        f"with be.asarray({foreign}_backend.to_numpy(x)), or use the {foreign} backend"
    )


_LOOKED_INTO = (list, tuple)


class _Missing:
    """The type of ``_NOTHING`` alone, so that it never passes a check as a native type."""


_NOTHING: Any = _Missing()
"""Marks an argument that was not given (a guard's fixed signatures take no ``*args``)."""


@dataclass(frozen=True)
class OneFramework:
    """Wraps a backend's operations so that they refuse other frameworks' arrays first (NumPy
    would convert them silently, or return theirs; torch and JAX raise errors of their own).

    An argument whose type is the framework's ``array_type`` or in ``native`` passes at the
    cost of one identity test or one set lookup; any other is looked at once (lists and tuples
    looked into) and, if harmless (no framework's, or this one's, or an ``accepted`` one's:
    NumPy host data for JAX), its type joins ``native``, so dtypes, strings and the like cost a
    set lookup from then on. The wrappers have fixed signatures where they can (forwarding
    ``*args``/``**kwargs`` costs more than the check) and no work on the path of a call that
    passes beyond the checks (a ``try`` is free in CPython 3.11).
    """

    backend: str
    array_type: type
    native: set[type]
    accepted: tuple[str, ...] = ()
    traced: type | None = None
    """The type of values inside ``grad`` (NumPy's Tracer): a TypeError from a function given
    one means the autodiff does not know that function, and says so. Never cached as native."""

    def refuse(self, name: str, args: Sequence[Any]) -> None:
        """Raise the mixed-frameworks error if another framework's array is among ``args``;
        remember the harmless types met."""
        for value in args:
            for item in value if isinstance(value, _LOOKED_INTO) else (value,):
                cls = type(item)
                if cls is self.array_type or cls in self.native:
                    continue
                framework = FRAMEWORK_OF_MODULE.get(cls.__module__.partition(".")[0])
                if (framework is not None and framework != self.backend
                        and framework not in self.accepted):
                    raise mixed_frameworks(self.backend, framework, name)
                if cls is not self.traced and not isinstance(item, _LOOKED_INTO):
                    self.native.add(cls)

    def untraceable(self, name: str, error: TypeError,
                    args: Sequence[Any]) -> NotDifferentiable | None:
        """The NotDifferentiable for a TypeError of ``name`` given a traced value (the autodiff
        lacks it), or None: then the error is the caller's own and stands as it is."""
        traced = self.traced
        if (traced is None or isinstance(error, NotDifferentiable)
                or not any(isinstance(arg, traced) for arg in args)):
            return None
        return NotDifferentiable(
            f"{name} is not differentiable by the {self.backend} backend's autodiff yet "
            f"({error}); compute it outside grad, or use the jax or torch backend for its "
            "gradient")

    def elementwise(self, fn: Callable[..., Any], name: str = "") -> Callable[..., Any]:
        """An elementwise function of one or two positional arrays (``sin``, ``equal``): each
        checked, and the call made as it came, without ``*args``."""
        array_type, native, refuse, untraceable = (self.array_type, self.native, self.refuse,
                                                   self.untraceable)
        name = name or fn.__name__

        @functools.wraps(fn)
        def one_or_two(x1: Any, x2: Any = _NOTHING, /) -> Any:
            try:
                if x2 is _NOTHING:
                    if x1.__class__ is not array_type and x1.__class__ not in native:
                        refuse(name, (x1,))
                    return fn(x1)
                if ((x1.__class__ is not array_type and x1.__class__ not in native)
                        or (x2.__class__ is not array_type and x2.__class__ not in native)):
                    refuse(name, (x1, x2))
                return fn(x1, x2)
            except TypeError as exc:
                error = untraceable(name, exc, (x1, x2))
                if error is None:
                    raise
                raise error from exc

        return one_or_two

    def op(self, fn: Callable[..., Any], name: str = "") -> Callable[..., Any]:
        """Any function or method: every positional argument is checked (lists and tuples
        looked into); calls of one or two positional arguments, the commonest, are made
        without forwarding ``*args``."""
        array_type, native, refuse, untraceable = (self.array_type, self.native, self.refuse,
                                                   self.untraceable)
        name = name or fn.__name__

        def passes(value: Any) -> bool:
            """Whether ``value`` (or each item of a list or tuple) passes at once."""
            cls = value.__class__
            if cls is array_type or cls in native:
                return True
            if cls is list or cls is tuple:
                for item in value:
                    if item.__class__ is not array_type and item.__class__ not in native:
                        return False
                return True
            return False

        @functools.wraps(fn)
        def operation(x: Any = _NOTHING, y: Any = _NOTHING, /, *rest: Any, **kwargs: Any) -> Any:
            try:
                if y is _NOTHING:
                    if (x.__class__ is not array_type and x.__class__ not in native
                            and not passes(x)):
                        if x is _NOTHING:
                            return fn(**kwargs)
                        refuse(name, (x,))
                    return fn(x, **kwargs) if kwargs else fn(x)
                if rest:
                    for arg in (x, y, *rest):
                        if (arg.__class__ is not array_type and arg.__class__ not in native
                                and not passes(arg)):
                            refuse(name, (x, y, *rest))
                            break
                    return fn(x, y, *rest, **kwargs)
                if ((x.__class__ is not array_type and x.__class__ not in native
                     and not passes(x))
                        or (y.__class__ is not array_type and y.__class__ not in native
                            and not passes(y))):
                    refuse(name, (x, y))
                return fn(x, y, **kwargs) if kwargs else fn(x, y)
            except TypeError as exc:
                error = untraceable(name, exc, (x, y, *rest))
                if error is None:
                    raise
                raise error from exc

        return operation

    def binary(self, fn: Callable[..., Any],
               explain: Callable[[Any, Any], InvalidArgument | None] | None = None,
               ) -> Callable[..., Any]:
        """A function of exactly two positional arrays (add, matmul): a loop-free check, and
        ``explain(x1, x2)`` may turn the framework's own error into one gradbridge message."""
        array_type, native, refuse = self.array_type, self.native, self.refuse
        name = fn.__name__

        @functools.wraps(fn)
        def two_arrays(x1: Any, x2: Any, /) -> Any:
            if ((x1.__class__ is not array_type and x1.__class__ not in native)
                    or (x2.__class__ is not array_type and x2.__class__ not in native)):
                refuse(name, (x1, x2))
            try:
                return fn(x1, x2)
            except (ValueError, TypeError, RuntimeError) as exc:
                error = explain(x1, x2) if explain is not None else None
                if error is None:
                    raise
                raise error from exc

        return two_arrays

    def method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """A backend method of one array (``be.sum(x, axis)``): only ``x`` is checked, the
        other arguments being axes, shapes and flags."""
        array_type, native, refuse = self.array_type, self.native, self.refuse
        name = method.__name__

        @functools.wraps(method)
        def checked(backend: Any, x: Any, /, *args: Any, **kwargs: Any) -> Any:
            if x.__class__ is not array_type and x.__class__ not in native:
                refuse(name, (x,))
            if kwargs:
                return method(backend, x, *args, **kwargs)
            return method(backend, x, *args) if args else method(backend, x)

        return checked


def matmul_shape_error(x1: Any, x2: Any) -> InvalidArgument | None:
    """The one message for shapes that the Array API's matmul cannot multiply (None if it can:
    then the framework's error was about something else)."""
    s1, s2 = tuple(getattr(x1, "shape", ())), tuple(getattr(x2, "shape", ()))
    if not s1 or not s2:
        problem = "both need at least one axis (use multiply for a scalar)"
    elif s1[-1] != (s2[-2] if len(s2) > 1 else s2[0]):
        which = "second-to-last" if len(s2) > 1 else "only"
        problem = (f"the last axis of the first ({s1[-1]}) must equal the {which} axis of the "
                   f"second ({s2[-2] if len(s2) > 1 else s2[0]})")
    elif any(a != b and 1 not in (a, b) for a, b in zip(s1[-3::-1], s2[-3::-1], strict=False)):
        problem = f"their batch axes {s1[:-2]} and {s2[:-2]} do not broadcast"
    else:
        return None
    return InvalidArgument(f"matmul cannot multiply shapes {s1} and {s2}: {problem}")


# ----------------------------------------------------------------- devices and dtypes


def normalize_dtype(dtype: object) -> str:
    """Return 'float32' or 'float64' for a string or dtype-like object, or raise InvalidArgument."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].lower()
    if name not in DTYPES:
        raise invalid("dtype", dtype, f"one of {', '.join(DTYPES)}")
    return name


def normalize_device(device: str) -> str:
    """Spell a device the canonical way: 'cpu', 'cuda:N', or 'auto' (aliases 'gpu', 'cuda')."""
    name = str(device).strip().lower()
    while name in DEVICE_ALIASES:
        name = DEVICE_ALIASES[name]
    if name in ("cpu", "auto"):
        return name
    if name.startswith("cuda:") and name[5:].isdigit():
        return f"cuda:{int(name[5:])}"
    raise invalid("device", device, "'cpu', 'cuda', 'cuda:N', 'gpu' or 'auto'")


def resolve_device(requested: str, available: Sequence[str], backend: str) -> str:
    """Pick the device to run on; 'auto' prefers a GPU; an absent one is DeviceNotAvailable."""
    device = normalize_device(requested)
    if device == "auto":
        return next((d for d in available if d.startswith("cuda")), "cpu")
    if device not in available:
        raise DeviceNotAvailable(
            f"device {requested!r} is not available to the {backend} backend on this machine; "
            f"devices that exist: {', '.join(available)}"
            + ("" if any(d.startswith("cuda") for d in available)
               else " (no CUDA GPU was found: use device='cpu' or 'auto')")
        )
    return device


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do here, asked at run time instead of guessed from its name."""

    devices: tuple[str, ...]
    dtypes: tuple[str, ...] = DTYPES
    has_jit: bool = False
    compiled_scan: bool = False
    """``jit`` of a function calling ``scan`` compiles the whole loop into one program (JAX's
    lax.scan); elsewhere ``scan`` is a Python loop that a compiler would unroll."""
    jit_needs_warm_up: bool = False
    """The first call of a ``jit``-ed function per signature traces or compiles (JAX, NumPy's
    trace-and-replay, torch.compile), so timed code calls it once beforehand."""
    data_parallel: bool = False
    """``fit(..., parallel="data")`` works: the backend builds a data-parallel engine
    (``data_parallel_engine()``, see core/parallel.py) on its framework's distributed engine."""
    supports_float64: bool = True
    version: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Backend(Protocol):
    """The operations gradbridge's core is written against. Names are fixed: add, never rename."""

    name: ClassVar[str]
    device: str
    dtype: str

    @property
    def capabilities(self) -> Capabilities: ...

    # creation and conversion (the rest of the Array API namespace: core/ops.py)
    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None,
                copy: bool | None = None) -> Array:
        """The Array API's asarray: input with a dtype keeps it, Python numbers and sequences
        take the backend's default dtypes, on the backend's device."""
    def from_host(self, obj: Any) -> Array:
        """Host data (NumPy arrays, lists, numbers) moved to the backend in its policy dtype:
        floating -> the backend's dtype, integers and booleans kept. ``fit`` and the
        experiments move data with this."""
    def to_numpy(self, x: Array) -> Any:
        """Copy an array (or a Python number) to a host ``numpy.ndarray``."""
    def zeros(self, shape: int | Shape, *, dtype: Any = None, device: Any = None) -> Array:
        """Zeros in ``dtype`` (default: the backend's float dtype) on ``device`` (its device)."""
    def ones(self, shape: int | Shape, *, dtype: Any = None, device: Any = None) -> Array: ...
    def full(self, shape: int | Shape, fill_value: Any, *, dtype: Any = None,
             device: Any = None) -> Array: ...

    # elementwise arithmetic
    def add(self, x1: Array, x2: Array) -> Array: ...
    def subtract(self, x1: Array, x2: Array) -> Array: ...
    def multiply(self, x1: Array, x2: Array) -> Array: ...
    def divide(self, x1: Array, x2: Array) -> Array: ...
    def negative(self, x: Array) -> Array: ...
    def pow(self, x1: Array, x2: Array | float) -> Array: ...
    def abs(self, x: Array) -> Array: ...
    def sqrt(self, x: Array) -> Array: ...
    def exp(self, x: Array) -> Array: ...
    def log(self, x: Array) -> Array: ...
    def log1p(self, x: Array) -> Array: ...
    def tanh(self, x: Array) -> Array: ...
    def maximum(self, x1: Array, x2: Array | float) -> Array:
        """Elementwise max; at ties the gradient goes to ``x1`` (documented subgradient)."""
    def minimum(self, x1: Array, x2: Array | float) -> Array:
        """Elementwise min; at ties the gradient goes to ``x1``."""
    def where(self, condition: Array, x1: Array, x2: Array) -> Array: ...
    def clip(self, x: Array, /, min: Any = None, max: Any = None) -> Array: ...

    # linear algebra
    def matmul(self, x1: Array, x2: Array) -> Array: ...
    def matrix_transpose(self, x: Array) -> Array: ...
    def dot(self, x1: Array, x2: Array) -> Array:
        """The tutorial's dot product: 1-D·1-D -> 0-D, 2-D·1-D -> 1-D."""

    # reductions and shape
    def sum(self, x: Array, /, *, axis: Axis = None, dtype: Any = None,
            keepdims: bool = False) -> Array: ...
    def mean(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array: ...
    def max(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array: ...
    def min(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array: ...
    def logsumexp(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        """log(sum(exp(x))) computed without overflow for large inputs."""
    def mean_squared_error(self, prediction: Array, target: Array) -> Array:
        """The mean over all elements of ``(prediction - target) ** 2``, broadcasting the two
        as subtraction does; one fused operation where the backend has one."""
    def reshape(self, x: Array, /, shape: int | Shape, *, copy: bool | None = None) -> Array: ...
    def expand_dims(self, x: Array, /, axis: int = 0) -> Array: ...
    def concat(self, arrays: Sequence[Array], /, axis: int | None = 0) -> Array: ...
    def stack(self, arrays: Sequence[Array], /, axis: int = 0) -> Array: ...

    # autodiff, compilation, loops, timing
    def grad(self, fn: Callable[..., Array], argnums: Argnums = 0) -> Callable[..., Any]:
        """Gradient of a scalar-valued ``fn``, in the structure of the chosen arguments."""
    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        """``(fn(*args), grad)``; gradients are detached and on the backend's device."""
    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Compile ``fn`` where the framework can; otherwise return it unchanged."""
    def scan(self, step: Callable[[Any], tuple[Any, Any]], carry: Any,
             length: int) -> tuple[Any, Any]:
        """Run ``carry, y = step(carry)`` ``length`` times; return the carry and the stacked ys."""
    def cond(self, predicate: Array, if_true: Callable[[Any], Any], if_false: Callable[[Any], Any],
             operand: Any) -> Any:
        """``if_true(operand)`` where the 0-D boolean ``predicate`` holds, else
        ``if_false(operand)``; inside ``jit`` or ``scan`` only the chosen one runs, and both
        must return the same structure, shapes and dtypes."""
    def synchronize(self) -> None:
        """Block until queued device work is done, so that clocks read honest times."""
    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which the framework's own code (operators included) keeps this backend's
        precision; only JAX in float64 under GRADBRIDGE_JAX_X64=scoped needs one
        (``jax.enable_x64``), elsewhere it does nothing.
        ``use_backend`` enters it for its block."""
    def eager(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which functions from ``jit`` run their Python on every call, as written
        (JAX without jit, NumPy without replay, torch without compile): what ``explain`` traces."""


# ----------------------------------------------------------------- shared behaviour


_SEQUENCES = (list, tuple)
_CONTAINERS = (dict, list, tuple)


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` to the leaves of (nested) dicts, lists and tuples, keeping their structure."""
    if isinstance(tree, dict):
        if not rest:
            return {key: fn(value) if not isinstance(value, _CONTAINERS) and value is not None
                    else tree_map(fn, value) for key, value in tree.items()}
        if len(rest) == 1:  # the common two-tree case (params and grads), without generators
            other = rest[0]
            return {key: fn(value, other[key]) if not isinstance(value, _CONTAINERS)
                    and value is not None else tree_map(fn, value, other[key])
                    for key, value in tree.items()}
        return {key: tree_map(fn, tree[key], *(r[key] for r in rest)) for key in tree}
    if isinstance(tree, _SEQUENCES):
        mapped = [tree_map(fn, item, *(r[i] for r in rest)) for i, item in enumerate(tree)]
        return type(tree)(mapped)
    if tree is None:
        return None
    return fn(tree, *rest)


def check_argnums(argnums: Argnums, n_args: int) -> tuple[int, ...]:
    """Validate ``argnums`` against the call's positional arguments; return them as a tuple."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or len(set(nums)) != len(nums) or any(not 0 <= n < n_args for n in nums):
        raise invalid("argnums", argnums,
                      f"distinct indices of the {n_args} positional arguments")
    return nums


def check_scalar_output(shape: Sequence[int]) -> None:
    """Gradients are defined for functions returning one number; say so otherwise."""
    if tuple(shape) not in ((), (1,)):
        raise InvalidArgument(
            f"grad needs fn to return a scalar (0-D array), but it returned shape {tuple(shape)}; "
            "reduce it first, e.g. with be.sum(...) or be.mean(...)"
        )


_KIND_OF_PYTHON_NUMBER = {bool: "b", int: "i", float: "f", complex: "c"}
"""NumPy's dtype kind of a Python number, without making an array of it."""


class BackendBase:
    """Behaviour every backend shares; subclasses bind their framework's operations.

    A subclass sets ``name``, implements :meth:`available_devices`, :meth:`framework_version`
    and the array operations, and gets device/dtype resolution, ``dot``, ``grad``,
    ``logsumexp``, ``mean_squared_error``, a Python ``scan``, a no-op ``jit``/``synchronize``
    and an empty ``scope`` and ``eager`` for free.
    """

    name: ClassVar[str] = "base"
    has_jit: ClassVar[bool] = False
    compiled_scan: ClassVar[bool] = False
    jit_needs_warm_up: ClassVar[bool] = False
    data_parallel: ClassVar[bool] = False
    """These four become the same-named :class:`Capabilities` fields."""
    notes: ClassVar[tuple[str, ...]] = ()
    xp: ClassVar[Any] = None
    """The framework's Array API namespace the operations are bound from (bind_namespace)."""
    creation_xp: ClassVar[Any] = None
    """The namespace the creation functions call, where not ``xp`` (one with the standard's
    ``dtype``/``device``/``copy`` keywords at a lower cost per call)."""
    __array_api_version__: ClassVar[str] = ops.ARRAY_API_VERSION

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        self.dtype = normalize_dtype(dtype)
        self.device = resolve_device(device, self.available_devices(), self.name)
        self.__name__ = f"gradbridge.{self.name}"  # a namespace has a name (the Array API suite)
        xp = self.xp  # None in a backend that implements the creation functions itself
        self._make: Any = self.creation_xp or xp
        self._float: Any = getattr(xp, self.dtype, None)
        self._complex: Any = getattr(xp, "complex128" if self.dtype == "float64" else "complex64",
                                     None)
        self._int: Any = getattr(xp, "int64", None)
        self._dtype_of_kind: dict[str, Any] = {"b": getattr(xp, "bool", None), "f": self._float,
                                               "c": self._complex}
        """The standard's default dtype of Python data by NumPy kind (int64 for the rest),
        made once: the creation functions ask on every call."""
        class_fft = getattr(type(self), "fft", None)
        if class_fft is not None:
            self.fft: Any = self._fft_with_defaults(class_fft)

    def _fft_with_defaults(self, fft: Any) -> Any:
        """The class's fft namespace, with fftfreq/rfftfreq made in the backend's float dtype
        and on its device (the standard's defaults), as the creation functions are."""
        functions = dict(vars(fft))
        for name in ("fftfreq", "rfftfreq"):
            if name in functions:
                functions[name] = functools.partial(self._frequencies, functions[name])
        return types.SimpleNamespace(**functions)

    def _frequencies(self, fn: Callable[..., Any], n: int, /, *, d: float = 1.0,
                     dtype: Any = None, device: Any = None) -> Array:
        return fn(n, d=d, dtype=dtype or self.default_float,
                  device=self._device_or_default(device))

    @property
    def native_device(self) -> Any:
        """This backend's device as its framework spells it (what ``device=`` defaults to)."""
        return self.device

    # ------------------------------------------------ creation with the backend's defaults

    @property
    def default_float(self) -> Any:
        """The default real floating dtype: the backend's ``dtype``, as a dtype object."""
        return self._float

    @property
    def default_complex(self) -> Any:
        return self._complex

    def default_dtype_of(self, value: Any) -> Any:
        """The default dtype for Python data (a number or nested sequence), as the standard says:
        bool, the default integer (int64), the backend's float, its complex."""
        kind = _KIND_OF_PYTHON_NUMBER.get(type(value)) or np.asarray(value).dtype.kind
        return self._dtype_of_kind.get(kind, self._int)

    def _device_or_default(self, device: Any) -> Any:
        """The ``device=`` the creation functions pass: the given one, else the backend's."""
        return self.native_device if device is None else device

    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None,
                copy: bool | None = None) -> Array:
        own = hasattr(obj, "dtype") and hasattr(obj, "shape")
        if dtype is None and not own:
            dtype = self.default_dtype_of(obj)
        if device is None and not own:
            device = self.native_device
        return self._make.asarray(obj, dtype=dtype, device=device, copy=copy)

    def zeros(self, shape: int | Shape, *, dtype: Any = None, device: Any = None) -> Array:
        return self._make.zeros(shape, dtype=dtype or self._float,
                                device=self._device_or_default(device))

    def ones(self, shape: int | Shape, *, dtype: Any = None, device: Any = None) -> Array:
        return self._make.ones(shape, dtype=dtype or self._float,
                               device=self._device_or_default(device))

    def empty(self, shape: int | Shape, *, dtype: Any = None, device: Any = None) -> Array:
        return self._make.empty(shape, dtype=dtype or self._float,
                                device=self._device_or_default(device))

    def full(self, shape: int | Shape, fill_value: Any, *, dtype: Any = None,
             device: Any = None) -> Array:
        if dtype is None:
            dtype = (fill_value.dtype if hasattr(fill_value, "dtype")
                     else self.default_dtype_of(fill_value))
        return self._make.full(shape, fill_value, dtype=dtype,
                               device=self._device_or_default(device))

    def eye(self, n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None,
            device: Any = None) -> Array:
        return self._make.eye(n_rows, n_cols, k=k, dtype=dtype or self._float,
                              device=self._device_or_default(device))

    def linspace(self, start: Any, stop: Any, /, num: int, *, dtype: Any = None,
                 device: Any = None, endpoint: bool = True) -> Array:
        if dtype is None:
            complex_ends = isinstance(start, complex) or isinstance(stop, complex)
            dtype = self._complex if complex_ends else self._float
        return self._make.linspace(start, stop, num, dtype=dtype,
                                   device=self._device_or_default(device), endpoint=endpoint)

    def arange(self, start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None,
               device: Any = None) -> Array:
        if dtype is None:
            if type(start) is int and type(step) is int and (stop is None or type(stop) is int):
                dtype = self._int  # the common case, without making an array of the ends
            else:
                dtype = self.default_dtype_of([start, step] if stop is None
                                              else [start, stop, step])
        device = self._device_or_default(device)
        if stop is None and type(step) is int and step == 1:
            return self._make.arange(start, dtype=dtype, device=device)  # a cheaper path in JAX
        return self._make.arange(start, stop, step, dtype=dtype, device=device)

    def __array_namespace_info__(self) -> NamespaceInfo:
        info = self.__dict__.get("_namespace_info")
        if info is None:  # made once: it reads the backend's defaults when asked
            info = self._namespace_info = NamespaceInfo(self)
        return info

    # ------------------------------------------------------- gradbridge's own additions

    @classmethod
    def available_devices(cls) -> list[str]:
        """Devices this framework can reach on this machine, e.g. ['cpu', 'cuda:0']."""
        return ["cpu"]

    @classmethod
    def framework_version(cls) -> str:
        """Version of the framework underneath."""
        raise NotImplementedError

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(devices=tuple(self.available_devices()), has_jit=self.has_jit,
                            compiled_scan=self.compiled_scan,
                            jit_needs_warm_up=self.jit_needs_warm_up,
                            data_parallel=self.data_parallel,
                            version=self.framework_version(), notes=self.notes)

    def __repr__(self) -> str:
        return f"<gradbridge {self.name} backend device={self.device!r} dtype={self.dtype!r}>"

    # Every backend spells these the same way in terms of its own primitives.

    def dot(self, x1: Array, x2: Array) -> Array:
        be: Any = self  # the subclass supplies the primitives
        s1, s2 = tuple(x1.shape), tuple(x2.shape)
        if len(s2) != 1 or len(s1) not in (1, 2) or s1[-1] != s2[0]:
            raise InvalidArgument(
                f"dot needs a 1-D or 2-D first argument whose last axis matches a 1-D second "
                f"argument; got shapes {s1} and {s2}"
            )
        return be.matmul(x1, x2)

    def logsumexp(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        be: Any = self
        shift = be.max(x, axis=axis, keepdims=True)
        total = be.add(be.log(be.sum(be.exp(be.subtract(x, shift)), axis=axis, keepdims=True)),
                       shift)
        if keepdims:
            return total
        return be.reshape(total, _reduced_shape(tuple(x.shape), axis))

    def mean_squared_error(self, prediction: Array, target: Array) -> Array:
        be: Any = self
        return be.mean(be.pow(be.subtract(prediction, target), 2))

    def grad(self, fn: Callable[..., Array], argnums: Argnums = 0) -> Callable[..., Any]:
        be: Any = self
        value_and_grad = be.value_and_grad(fn, argnums)

        def gradient(*args: Any, **kwargs: Any) -> Any:
            return value_and_grad(*args, **kwargs)[1]

        return gradient

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    def scan(self, step: Callable[[Any], tuple[Any, Any]], carry: Any,
             length: int) -> tuple[Any, Any]:
        outputs = []
        for _ in range(length):
            carry, y = step(carry)
            outputs.append(y)
        if not outputs or outputs[0] is None:
            return carry, None
        be: Any = self
        return carry, tree_map(lambda *ys: be.stack(ys), outputs[0], *outputs[1:])

    def cond(self, predicate: Array, if_true: Callable[[Any], Any], if_false: Callable[[Any], Any],
             operand: Any) -> Any:
        return if_true(operand) if bool(predicate) else if_false(operand)

    def synchronize(self) -> None:
        return None

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def eager(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


class NamespaceInfo:
    """``__array_namespace_info__()``: the framework's own answers, with the backend's defaults
    (its float dtype, int64 indices, its device) in place of the framework's."""

    def __init__(self, backend: BackendBase) -> None:
        self._backend = backend
        self._inner = backend.xp.__array_namespace_info__()

    def capabilities(self) -> dict[str, Any]:
        return dict(self._inner.capabilities())

    def default_device(self) -> Any:
        return self._backend.native_device

    def devices(self) -> list[Any]:
        return list(self._inner.devices())

    def default_dtypes(self, *, device: Any = None) -> dict[str, Any]:
        be = self._backend
        return {"real floating": be.default_float, "complex floating": be.default_complex,
                "integral": be.xp.int64, "indexing": be.xp.int64}

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, Any]:
        return dict(self._inner.dtypes(device=device, kind=kind))


def bind_namespace(cls: type[BackendBase], guard: OneFramework) -> None:
    """Give ``cls`` every name of core/ops.py that it does not write itself, bound from its
    ``xp`` behind ``guard`` (elementwise functions behind its fixed one-or-two-array check),
    dtypes and constants as they are, and the ``linalg`` and ``fft`` extensions as namespaces."""
    xp = cls.xp
    for op in ops.MAIN:
        if not hasattr(cls, op.name):
            fixed = op.category == "elementwise" and op.name != "clip"  # clip takes keywords
            wrap = guard.elementwise if fixed else guard.op
            setattr(cls, op.name, staticmethod(wrap(getattr(xp, op.name), op.name)))
    for name in (*ops.DTYPES, *ops.CONSTANTS):
        if not hasattr(cls, name):
            setattr(cls, name, getattr(xp, name))
    for extension, table in (("linalg", ops.LINALG), ("fft", ops.FFT)):
        module = getattr(xp, extension, None)
        if module is not None and not hasattr(cls, extension):
            functions = {op.name: guard.op(getattr(module, op.name), op.name) for op in table
                         if hasattr(module, op.name)}
            setattr(cls, extension, types.SimpleNamespace(**functions))


def _reduced_shape(shape: Shape, axis: Axis) -> Shape:
    """The shape a reduction over ``axis`` leaves when ``keepdims`` is false."""
    if axis is None:
        return ()
    axes = {a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis)}
    return tuple(n for i, n in enumerate(shape) if i not in axes)
