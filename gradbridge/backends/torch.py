"""The PyTorch backend: torch operations, torch.autograd, CPU and CUDA devices.

Operations whose torch function already has the protocol's meaning are bound directly as
class attributes, so ``be.add(x, y)`` costs what ``torch.add(x, y)`` costs; only the operations
that differ (``dim``/``keepdim`` for ``axis``/``keepdims``, ``clip`` without bounds, tuple
shapes) are written out. ``backends/jax.py`` has the same methods in the same order.

Gradients
    ``value_and_grad`` differentiates detached copies of the chosen arguments with
    ``torch.autograd.grad``: the caller's tensors are never modified (their ``requires_grad``
    included), and the value and gradients come back detached, so no autograd graph outlives
    the call. Called inside another ``value_and_grad`` of this backend (a gradient of a
    gradient), it builds the inner graph with ``create_graph=True`` and returns attached
    results, so that the outer call can differentiate through them.

jit
    Eager by default (``jit`` returns ``fn``): ``torch.compile`` costs seconds per function
    (~4 s for ``fit``'s step on 2 CPU cores), more than most runs. Set
    ``GRADBRIDGE_TORCH_COMPILE=1`` before the backend is built to make ``jit`` return
    ``torch.compile(fn)`` (compiled lazily, on its first call); ``capabilities.has_jit``
    reports which of the two is in force.

scan
    A Python loop, as in :class:`BackendBase`, that writes each step's output into a buffer
    allocated at the first step instead of stacking the steps' tensors at the end: kept alive
    between steps that allocate and free large temporaries, small tensors fragment the C heap
    and peak memory grew with the number of steps. Under torch.compile, compile the step, not
    the loop (``fit`` does): compiling the loop would unroll it.

Gradient speed
    ``value_and_grad`` validates ``argnums`` once, when it wraps ``fn``, and skips what is
    not needed per call (``enable_grad`` when grad mode is on, reshaping a 0-D value);
    ``mean_squared_error`` is torch's fused ``mse_loss``. At small N a step is mostly Python
    overhead, so for plain tensors outside torch.compile both skip torch's Python wrappers and
    make the call those wrappers end in: ``torch._C._nn.mse_loss``, and the autograd engine
    seeded with ones as ``torch.autograd.grad`` seeds it (~25% of a 100-sample ``fit`` epoch).
    Tensor subclasses, torch function modes, non-float values and compiling go through
    ``torch.nn.functional.mse_loss`` and ``torch.autograd.grad`` themselves.

Devices and TF32
    'cpu', and 'cuda:N' for each GPU ``torch.cuda`` sees. On CUDA, a float64 backend or one
    built with ``parity=True`` sets ``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32`` to False so that float32 matmuls and convolutions run
    in full float32. These flags are process-wide: all other torch code in the process is then
    full precision too (slower on Ampere and newer GPUs). On CPU nothing is touched.

Subgradients
    ``maximum``/``minimum`` give the whole gradient at a tie to the first argument
    (``torch.maximum`` would split it 0.5/0.5). ``clip`` is ``torch.clamp``: gradient 1 inside
    ``[min, max]`` and at both bounds. The ``max``/``min`` reductions are ``torch.amax``/``amin``,
    which share the gradient equally among tied elements (as JAX does; ``torch.max(x, dim)``
    would give it all to one index).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import array_api_compat.numpy
import array_api_compat.torch
import numpy as np
import torch
from array_api_compat.common._aliases import UniqueAllResult

from gradbridge.core.backend import (
    PYTHON_NUMBERS,
    Argnums,
    Array,
    Axis,
    BackendBase,
    Capabilities,
    InvalidArgument,
    OneFramework,
    Shape,
    bind_namespace,
    check_argnums,
    check_scalar_output,
    invalid,
    left_the_graph,
    matmul_shape_error,
    returned_a_number,
    tree_map,
)
from gradbridge.core.dispatch import maximum_ties_to_first, minimum_ties_to_first

COMPILE_ENV = "GRADBRIDGE_TORCH_COMPILE"
ROW_BLOCK = 1024
"""Rows of a scan's output viewed at once (each view is a small tensor object of its own)."""

# mse_loss's reduction is an int at run time (torch's stub says str); omitted it means 'none'.
_mse_loss: Callable[..., torch.Tensor] = torch._C._nn.mse_loss
_MEAN = torch.nn._reduction.get_enum("mean")
_has_torch_function = torch._C._has_torch_function
_has_torch_function_variadic = torch._C._has_torch_function_variadic
# torch.autograd.grad's own call into the autograd engine; where this torch lacks it (or
# is_compiling), the public functions are called instead (see _grad, mean_squared_error).
_run_backward: Callable[..., tuple[torch.Tensor | None, ...]] | None = getattr(
    torch.autograd.graph, "_engine_run_backward", None)
_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", lambda: True)

NATIVE: set[type] = {torch.Tensor, torch.nn.Parameter, float, int, bool}
"""Argument types that pass the foreign-array check at once (TorchBackend joins below)."""


ONE_FRAMEWORK = OneFramework("torch", torch.Tensor, NATIVE)


LEAVING_THE_GRAPH: dict[Any, str] = {
    torch.Tensor.__float__: "float(x)", torch.Tensor.__int__: "int(x)",
    torch.Tensor.__index__: "using a traced value as an index",
    torch.Tensor.__complex__: "complex(x)",
    torch.Tensor.__bool__: "bool(x) (an if or while on a traced value)",
    torch.Tensor.item: "x.item()", torch.Tensor.tolist: "x.tolist()",
    torch.Tensor.numpy: "x.numpy()", torch.Tensor.__array__: "np.asarray(x)",
}
"""Tensor methods that turn a tensor into a number or a host array, and how a user spells each."""


class _GraphGuard(torch.overrides.TorchFunctionMode):
    """Raises NotDifferentiable when a tensor that needs a gradient leaves the graph."""

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in LEAVING_THE_GRAPH and getattr(args[0], "requires_grad", False):
            raise left_the_graph(LEAVING_THE_GRAPH[func])
        return func(*args, **(kwargs or {}))


# True while a value_and_grad of this backend runs its function: a call made then is nested.
_differentiating: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gradbridge_torch_differentiating", default=False
)


def _ties_to_first(plain: Callable[[Array, Array], Array],
                   with_gradient: Callable[[Any, Any, Any], Array]) -> Callable[..., Array]:
    """The tie-to-first extremum ``with_gradient`` where a gradient can flow; ``plain``
    (``torch.maximum``/``torch.minimum``, one call) where none can: two plain tensors that need
    none, where both give the same values, ties and signed zeros included (torch keeps the
    first of equal values too)."""

    def extremum(x1: Array | float, x2: Array | float) -> Array:
        if (x1.__class__ is torch.Tensor and x2.__class__ is torch.Tensor
                and not (x1.requires_grad or x2.requires_grad)):
            return plain(x1, x2)
        return with_gradient(torch, _tensor_first(x1, x2), x2)

    extremum.__name__ = plain.__name__
    return extremum


_maximum = _ties_to_first(torch.maximum, maximum_ties_to_first)
_minimum = _ties_to_first(torch.minimum, minimum_ties_to_first)


class TorchBackend(BackendBase):
    """gradbridge on PyTorch: CPU or CUDA, float32 or float64, eager unless compile is asked."""

    name: ClassVar[str] = "torch"
    xp: ClassVar[Any] = array_api_compat.torch
    data_parallel: ClassVar[bool] = True
    """``fit(..., parallel="data")`` runs one process per device under a launcher
    (backends/torch_parallel.py)."""
    notes: ClassVar[tuple[str, ...]] = (
        f"jit is eager unless {COMPILE_ENV}=1 is set when the backend is built",
        "on CUDA, float64 or parity=True turns TF32 off for the whole process",
        "maximum/minimum send the gradient at ties to the first argument",
    )

    def __init__(self, device: str = "cpu", dtype: str = "float32", *,
                 parity: bool = False) -> None:
        super().__init__(device, dtype)
        self._device = torch.device(self.device)
        self._dtype: torch.dtype = getattr(torch, self.dtype)
        self._compile = _compile_requested()
        if self._device.type == "cuda" and (self.dtype == "float64" or parity):
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    @classmethod
    def available_devices(cls) -> list[str]:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return ["cpu", *(f"cuda:{index}" for index in range(gpus))]

    @classmethod
    def framework_version(cls) -> str:
        return str(torch.__version__)

    @property
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities, has_jit=self._compile,
                       jit_needs_warm_up=self._compile)

    # creation and conversion

    @property
    def native_device(self) -> Any:
        return self._device

    def from_host(self, obj: Any) -> Array:
        if not isinstance(obj, torch.Tensor):
            host = np.asarray(obj)
            if any(stride < 0 for stride in host.strides):  # torch cannot view reversed memory
                host = host.copy()
            obj = torch.as_tensor(host)
        dtype = self._dtype if obj.is_floating_point() else obj.dtype
        return obj.to(device=self._device, dtype=dtype)

    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None,
                copy: bool | None = None) -> Array:
        """A tensor keeps its graph (``asarray`` is differentiable): torch.asarray is told so,
        since left unspecified it warns that its default changed."""
        if isinstance(obj, torch.Tensor):
            return torch.asarray(obj, dtype=dtype, device=obj.device if device is None else device,
                                 copy=copy, requires_grad=obj.requires_grad)
        return super().asarray(obj, dtype=dtype, device=device, copy=copy)

    def to_numpy(self, x: Array) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            if x.requires_grad and _differentiating.get():
                raise left_the_graph("be.to_numpy(x)")
            return x.detach().to("cpu", copy=True).numpy()
        return np.array(x)

    # elementwise arithmetic

    add = staticmethod(ONE_FRAMEWORK.binary(torch.add))
    subtract = staticmethod(ONE_FRAMEWORK.binary(torch.subtract))
    multiply = staticmethod(ONE_FRAMEWORK.binary(torch.multiply))
    divide = staticmethod(ONE_FRAMEWORK.binary(torch.divide))
    negative = staticmethod(ONE_FRAMEWORK.elementwise(torch.negative))
    pow = staticmethod(ONE_FRAMEWORK.binary(torch.pow))
    abs = staticmethod(ONE_FRAMEWORK.elementwise(torch.abs))
    sqrt = staticmethod(ONE_FRAMEWORK.elementwise(torch.sqrt))
    exp = staticmethod(ONE_FRAMEWORK.elementwise(torch.exp))
    log = staticmethod(ONE_FRAMEWORK.elementwise(torch.log))
    log1p = staticmethod(ONE_FRAMEWORK.elementwise(torch.log1p))
    tanh = staticmethod(ONE_FRAMEWORK.elementwise(torch.tanh))

    maximum = staticmethod(ONE_FRAMEWORK.elementwise(_maximum, "maximum"))
    minimum = staticmethod(ONE_FRAMEWORK.elementwise(_minimum, "minimum"))

    where = staticmethod(ONE_FRAMEWORK.op(torch.where))

    @ONE_FRAMEWORK.op
    def floor_divide(self, x1: Array | float, x2: Array | float) -> Array:
        """Piecewise constant, so its gradient is 0 (DESIGN section 2), where torch's backward
        raises ("derivative for aten::floor_divide is not implemented"): no graph through it."""
        return self.xp.floor_divide(_constant(x1), _constant(x2))

    @ONE_FRAMEWORK.op
    def clip(self, x: Array, /, min: Any = None, max: Any = None) -> Array:
        """torch.clamp, which refuses two missing bounds (the Array API returns x then) and a
        tensor bound beside a number (made a tensor like x here)."""
        if min is None and max is None:
            return x
        if isinstance(min, torch.Tensor) != isinstance(max, torch.Tensor) and None not in (
                min, max):
            min, max = (bound if isinstance(bound, torch.Tensor)
                        else torch.as_tensor(bound, dtype=x.dtype, device=x.device)
                        for bound in (min, max))
        return torch.clamp(x, min, max)

    # linear algebra

    matmul = staticmethod(ONE_FRAMEWORK.binary(torch.matmul, explain=matmul_shape_error))

    @ONE_FRAMEWORK.method
    def matrix_transpose(self, x: Array) -> Array:
        return x.mT

    # reductions and shape (torch says dim/keepdim)

    # A whole-array reduction takes torch's short path: dim=None costs ~25% more per call.

    @ONE_FRAMEWORK.method
    def sum(self, x: Array, /, *, axis: Axis = None, dtype: Any = None,
            keepdims: bool = False) -> Array:
        if axis is None and not keepdims and dtype is None and x.is_floating_point():
            return torch.sum(x)
        return self.xp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def mean(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        if axis is None and not keepdims:
            return torch.mean(x)
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def std(self, x: Array, /, *, axis: Axis = None, correction: float = 0.0,
            keepdims: bool = False) -> Array:
        """array-api-compat's std, which refuses a fractional correction (torch's std does);
        the square root of var, which takes one, then."""
        if float(correction).is_integer():
            return self.xp.std(x, axis=axis, correction=correction, keepdims=keepdims)
        return torch.sqrt(self.xp.var(x, axis=axis, correction=correction, keepdims=keepdims))

    @ONE_FRAMEWORK.method
    def max(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.amax(x, dim=_dims(x, axis), keepdim=keepdims)

    @ONE_FRAMEWORK.method
    def min(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.amin(x, dim=_dims(x, axis), keepdim=keepdims)

    @ONE_FRAMEWORK.method
    def logsumexp(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.logsumexp(x, dim=_dims(x, axis), keepdim=keepdims)

    @ONE_FRAMEWORK.op
    def mean_squared_error(self, prediction: Array, target: Array) -> Array:
        """torch's fused ``mse_loss`` (one kernel forward, one backward) when the two tensors
        agree in shape and dtype; the generic mean of squares when they must broadcast."""
        if (isinstance(prediction, torch.Tensor) and isinstance(target, torch.Tensor)
                and prediction.shape == target.shape and prediction.dtype == target.dtype):
            if _is_compiling() or _has_torch_function_variadic(prediction, target):
                return torch.nn.functional.mse_loss(prediction, target)
            # What mse_loss calls once its Python checks pass (equal shapes broadcast to
            # themselves): a third of its cost per call at small N.
            return _mse_loss(prediction, target, _MEAN)
        return super().mean_squared_error(prediction, target)

    @ONE_FRAMEWORK.method
    def reshape(self, x: Array, /, shape: int | Shape, *, copy: bool | None = None) -> Array:
        if copy is None:
            return torch.reshape(x, _as_shape(shape))
        return self.xp.reshape(x, _as_shape(shape), copy=copy)

    @ONE_FRAMEWORK.method
    def expand_dims(self, x: Array, /, axis: int = 0) -> Array:
        return torch.unsqueeze(x, axis)

    @ONE_FRAMEWORK.op
    def concat(self, arrays: Sequence[Array], /, axis: int | None = 0) -> Array:
        if axis is None:  # the standard's flattening concat
            return self.xp.concat(arrays, axis=None)
        return torch.cat(list(arrays), dim=axis)

    stack = staticmethod(ONE_FRAMEWORK.op(torch.stack))  # takes axis= as the standard says

    @ONE_FRAMEWORK.method
    def unique_all(self, x: Array, /) -> Any:
        """The standard's four results; array_api_compat.torch has none (torch.unique gives no
        first-occurrence indices): those are the least flat position of each value."""
        values, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
        counts[torch.isnan(values)] = 1  # torch counts 0 for NaN (pytorch issue 94106)
        positions = torch.arange(x.numel(), device=x.device)
        first = torch.full_like(values, x.numel(), dtype=torch.int64).scatter_reduce_(
            0, inverse.reshape(-1), positions, reduce="amin")
        return UniqueAllResult(values, first, inverse.reshape(x.shape), counts)

    # data types

    @ONE_FRAMEWORK.op
    def can_cast(self, from_: Any, to: Any, /) -> bool:
        """The standard's rule (the promotion lattice leads to ``to``), by NumPy's namespace:
        torch.can_cast also allows casts within a kind, such as int8 to uint8."""
        source = from_.dtype if isinstance(from_, torch.Tensor) else from_
        known = _CASTS.get((source, to))
        if known is None:
            known = _CASTS[source, to] = bool(array_api_compat.numpy.can_cast(  # type: ignore[attr-defined]
                _numpy_dtype(source), _numpy_dtype(to)))
        return known

    # autodiff, compilation, loops, timing

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        nums, least_args = _argnums_plan(argnums)
        single = isinstance(argnums, int)
        from_host = self.from_host
        guarded = [True]  # the first call runs under _GraphGuard (see _differentiate)

        def value_and_gradient(*args: Any, **kwargs: Any) -> tuple[Array, Any]:
            if len(args) < least_args:
                check_argnums(argnums, len(args))  # raises the standard InvalidArgument
            nested = _differentiating.get()
            leaves: list[torch.Tensor] = []

            def track(x: Any) -> torch.Tensor:
                tensor = x if isinstance(x, torch.Tensor) else from_host(x)
                if not (nested and tensor.requires_grad):
                    tensor = tensor.detach().requires_grad_(True)
                leaves.append(tensor)
                return tensor

            tracked = list(args)
            for n in nums:
                tracked[n] = _map(track, tracked[n])
            token = _differentiating.set(True)
            try:
                guard, guarded[0] = guarded[0], False
                if torch.is_grad_enabled():
                    value, grads = _differentiate(fn, tracked, kwargs, leaves, nested, guard)
                else:
                    with torch.enable_grad():
                        value, grads = _differentiate(fn, tracked, kwargs, leaves, nested, guard)
            finally:
                _differentiating.reset(token)
            if value.ndim:
                value = value.reshape(())
            if not nested:
                value = value.detach()
            flat = iter(grads)
            if single:
                return value, _map(lambda _: next(flat), tracked[nums[0]])
            return value, tuple(_map(lambda _: next(flat), tracked[n]) for n in nums)

        return value_and_gradient

    def scan(self, step: Callable[[Any], tuple[Any, Any]], carry: Any,
             length: int) -> tuple[Any, Any]:
        """A Python loop like BackendBase's, writing each ``y`` into outputs allocated once.

        Keeping one small tensor per step alive until a final stack, while every step allocates
        and frees data-sized temporaries, fragments the C heap: a 10,000-epoch ``fit`` at
        N = 1e6 peaked at ~9x the memory of a 100-epoch one. One buffer per output leaf, sized at
        the first step, keeps the peak flat. A tensor ``y`` outside autograd is copied into a
        row view, made ROW_BLOCK rows at a time (a third of the cost of ``out[i] = y``); once a
        ``y`` carries a graph, rows are assigned, which autograd records. Every step's ``y``
        must have the first one's structure and shapes (as ``lax.scan`` requires); a first
        ``y`` of None gives None.
        """
        outputs: Any = None
        rows: Sequence[torch.Tensor] = ()
        row_shape: Any = None
        copy_rows = False
        for i in range(length):
            carry, y = step(carry)
            if i == 0 and y is not None:
                outputs = tree_map(lambda leaf: self._stacked_buffer(leaf, length), y)
                copy_rows = isinstance(y, torch.Tensor)
                row_shape = y.shape if copy_rows else None
            if copy_rows:
                if not getattr(y, "requires_grad", True):
                    if y.shape != row_shape:  # copy_ would broadcast it silently
                        raise InvalidArgument(
                            f"scan: step {i} returned shape {tuple(y.shape)}, but the first "
                            f"step returned {tuple(row_shape)}; every step's output "
                            "must have the same shape")
                    if i % ROW_BLOCK == 0:
                        rows = outputs[i:i + ROW_BLOCK].unbind(0)
                    rows[i % ROW_BLOCK].copy_(y)
                    continue
                copy_rows = False  # views made without a graph cannot take one
            if isinstance(outputs, torch.Tensor):
                outputs[i] = y
            elif outputs is not None:
                tree_map(functools.partial(_write_row, i), outputs, y)
        return carry, outputs

    def _stacked_buffer(self, leaf: Any, length: int) -> torch.Tensor:
        """Room for ``length`` values shaped like ``leaf``, in its dtype, on its device."""
        first = leaf if isinstance(leaf, torch.Tensor) else self.from_host(leaf)
        return torch.empty((length, *first.shape), dtype=first.dtype, device=first.device)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(fn) if self._compile else fn

    def eager(self) -> contextlib.AbstractContextManager[Any]:
        if self._compile:
            return torch.compiler.set_stance("force_eager")
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def data_parallel_engine(self) -> Any:
        """This launched process's share of the job (backends/torch_parallel.py)."""
        from gradbridge.backends import torch_parallel

        return torch_parallel.engine(self._device)


NATIVE.add(TorchBackend)  # methods see the backend itself as their first argument
bind_namespace(TorchBackend, ONE_FRAMEWORK)


def _compile_requested() -> bool:
    """Read GRADBRIDGE_TORCH_COMPILE: '1'/'true' compiles, '0'/'false'/unset stays eager."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value not in ("", "0", "false", "1", "true"):
        raise invalid(COMPILE_ENV, value,
                      "'1' or 'true' to compile, '0', 'false' or unset to stay eager")
    return value in ("1", "true")


def _argnums_plan(argnums: Argnums) -> tuple[tuple[int, ...], int]:
    """``argnums`` as a tuple and the fewest positional arguments a call needs, worked out once
    per ``value_and_grad``; an argnums no call can satisfy needs more arguments than any call
    has, so every call raises ``check_argnums``' error, as it would have on its own."""
    try:
        nums = check_argnums(argnums, sys.maxsize)
    except (InvalidArgument, TypeError):
        return (), sys.maxsize
    return nums, max(nums) + 1


def _write_row(i: int, out: torch.Tensor, leaf: Any) -> None:
    """``out[i] = leaf``: one step's output into its scan buffer (autograd records the copy)."""
    out[i] = leaf


def _map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """``tree_map(fn, tree)`` with the commonest argument, a lone tensor, handled directly."""
    return fn(tree) if isinstance(tree, torch.Tensor) else tree_map(fn, tree)


def _differentiate(fn: Callable[..., Array], args: list[Any], kwargs: dict[str, Any],
                   leaves: list[torch.Tensor], nested: bool,
                   guard: bool) -> tuple[torch.Tensor, list[Any]]:
    """``fn``'s value and its gradient with respect to each of ``leaves`` (zeros where unused),
    with the graph kept for an outer differentiation when ``nested``.

    With ``guard`` (the first call of each gradient function), ``fn`` runs under _GraphGuard,
    so ``float(x)``, ``x.item()`` and the like raise NotDifferentiable instead of silently
    giving a zero gradient; later calls skip it, since a torch function mode costs every
    operation a Python call.
    """
    if guard and not _is_compiling():
        with _GraphGuard():
            value = fn(*args, **kwargs)
    else:
        value = fn(*args, **kwargs)
    if type(value) in PYTHON_NUMBERS:
        raise returned_a_number(value)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if value.ndim:
        check_scalar_output(value.shape)
    if not value.requires_grad:
        return value, [torch.zeros_like(leaf) for leaf in leaves]
    grads = _grad(value, leaves, nested)
    return value, [torch.zeros_like(leaf, requires_grad=nested) if g is None else g
                   for g, leaf in zip(grads, leaves, strict=True)]


def _grad(value: torch.Tensor, leaves: list[torch.Tensor],
          nested: bool) -> Sequence[torch.Tensor | None]:
    """``torch.autograd.grad(value, leaves, create_graph=nested, allow_unused=True)``.

    For a real scalar ``value`` and plain tensors outside torch.compile, what that call does
    once its Python checks pass: seed the backward with ones and run the engine, without the
    ~15 us of argument handling per call (about 15% of a 100-sample ``fit`` epoch). Every other
    case (no leaves, tensor subclasses or torch function modes, non-float values, compiling)
    goes through ``torch.autograd.grad`` itself, with its own errors.
    """
    if (_run_backward is None or not leaves or _is_compiling()
            or _has_torch_function((value, *leaves)) or not value.dtype.is_floating_point
            or value.is_nested):
        return torch.autograd.grad(value, leaves, create_graph=nested, allow_unused=True)
    seed = torch.ones_like(value, memory_format=torch.preserve_format)
    return _run_backward((value,), (seed,), nested, nested, tuple(leaves), True,
                         accumulate_grad=False)


def _constant(x: Any) -> Any:
    """``x`` cut from the autograd graph if it is in one."""
    return x.detach() if getattr(x, "requires_grad", False) else x


def _tensor_first(x1: Any, x2: Any) -> Any:
    """A Python-number ``x1`` as a tensor like ``x2`` (torch.isnan takes tensors only), in the
    dtype the two promote to; anything else as it is."""
    if isinstance(x1, torch.Tensor) or not isinstance(x2, torch.Tensor):
        return x1
    return torch.as_tensor(x1, dtype=torch.result_type(x2, x1), device=x2.device)


def _as_shape(shape: int | Shape) -> Shape:
    """torch wants a tuple where the Array API also accepts a bare int."""
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _dims(x: torch.Tensor, axis: Axis) -> int | tuple[int, ...]:
    """The Array API's axis=None (all axes) as a dim torch's amax/amin/logsumexp accept."""
    return tuple(range(x.ndim)) if axis is None else axis


_CASTS: dict[tuple[Any, Any], bool] = {}
"""can_cast's answers by (from, to) dtype: the rule is fixed, and asking NumPy costs ~1 µs."""


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of the same name (every dtype of the standard has one)."""
    return np.dtype(str(dtype).removeprefix("torch."))
