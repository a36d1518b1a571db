"""The JAX backend: jax.numpy operations, jax.value_and_grad, jax.jit and lax.scan.

Operations whose jax.numpy function already has the protocol's meaning are bound directly as
class attributes, so ``be.add(x, y)`` costs what ``jnp.add(x, y)`` costs; only the operations
that differ are written out. ``backends/torch.py`` has the same methods in the same order.

float64 (``GRADBRIDGE_JAX_X64``)
    JAX computes in float32 unless its process-wide ``jax_enable_x64`` flag is on. By default
    (``process``) gradbridge turns that flag on when it makes its first JAX backend, and says
    so once in the ``gradbridge.jax`` log: a float64 backend's arrays then stay float64
    everywhere they go, operators and plain ``jnp`` calls included, and ``float64``/``int64``
    are real dtypes. A float32 backend stays float32 because every array it makes has an
    explicit float32 dtype and JAX's Python scalars are weakly typed.

    ``GRADBRIDGE_JAX_X64=scoped`` (opt-in) leaves the flag alone and runs a float64 backend's
    own calls, and the functions its ``grad``/``jit``/``scan`` return, inside the thread-local
    ``jax.enable_x64(True)``. Caveat: outside those calls and ``use_backend`` blocks JAX
    truncates float64 work to float32 (``x @ y`` even keeps the float64 label), so that mode
    logs a warning when a float64 backend is made.

Devices
    'cpu' (this process's host device), and 'cuda:N' for the N-th of ``jax.devices('gpu')``.
    Arrays made by ``from_host`` and ``asarray`` are committed to the backend's device;
    ``zeros``, ``ones``, ``full`` and the other creation functions too unless it is JAX's
    default device (there they land on it uncommitted, which saves a transfer call each).
    Operations and compiled functions run where their inputs live.

Subgradients
    ``maximum``/``minimum`` give the whole gradient at a tie to the first argument (``jnp.maximum``
    would split it 0.5/0.5). ``clip`` has gradient 1 inside ``[min, max]`` and at both bounds,
    like ``torch.clamp`` (``jnp.clip`` gives 0.5 at a bound). The ``max``/``min`` reductions
    share the gradient equally among tied elements (JAX's rule; torch's amax/amin do the same).
    ``abs`` is ``jnp.abs`` with the slope ``sign(x)`` (a jitted ``custom_jvp``, as cheap per
    call as ``jnp.abs``), so its derivative at 0 is 0, as in torch and the NumPy backend
    (``jnp.abs`` gives 1). ``maximum``/``minimum``/``clip`` are jitted too (one dispatch each,
    where their comparisons and ``where`` would cost one each eagerly).

Memory
    ``from_host`` of a host array already in the backend's dtype copies it once, into a buffer
    that only the new JAX array refers to (``_private_copy``), never aliasing the caller's
    array. Inside ``jit``, ``value_and_grad`` of a function whose other arguments hold at least
    REMAT_MIN_BYTES (the data of a full-batch fit) recomputes elementwise intermediates in the
    backward pass (``jax.checkpoint``) instead of keeping them: one array-sized temporary in
    place of two for ``fit(linear1d, mse)``. Together a full-batch fit at N = 1e7 float32 peaks
    at about 1.6 extra copies of x and y instead of 2.1.

synchronize
    JAX dispatches work asynchronously and has no call that waits for every outstanding
    computation (``jax.effects_barrier()`` waits only for side effects: it returned in 27 µs
    while a 4.6 s program it followed was still running). A device runs the programs launched
    on it in order, so ``synchronize()`` launches a trivial one on each device of the platform
    and waits for it: every program launched before has then finished.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import types
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp as jax_logsumexp

from gradbridge.backends import jax_parallel
from gradbridge.core import ops
from gradbridge.core.backend import (
    PYTHON_NUMBERS,
    Argnums,
    Array,
    Axis,
    BackendBase,
    InvalidArgument,
    OneFramework,
    bind_namespace,
    check_argnums,
    check_scalar_output,
    left_the_graph,
    matmul_shape_error,
    returned_a_number,
    tree_map,
)
from gradbridge.core.data import aligned_empty
from gradbridge.core.dispatch import maximum_ties_to_first, minimum_ties_to_first

F = TypeVar("F", bound=Callable[..., Any])

LOG = logging.getLogger("gradbridge.jax")
X64_VARIABLE = "GRADBRIDGE_JAX_X64"
X64_MODES = ("process", "scoped")

jax_parallel.join_launched_job()  # under gradbridge launch; before JAX starts (the next line)
JAX_ARRAY: type = type(jnp.zeros(()))
NATIVE: set[type] = {JAX_ARRAY, np.ndarray, float, int, bool}
"""Argument types that pass the foreign-array check at once (JaxBackend joins below); host
NumPy arrays are data that jax.numpy takes itself, so they are accepted."""


ONE_FRAMEWORK = OneFramework("jax", JAX_ARRAY, NATIVE, accepted=("numpy",))


LEFT_THE_GRAPH: dict[type[Exception], str] = {
    jax.errors.ConcretizationTypeError: "float(x) or x.item()",
    jax.errors.TracerBoolConversionError: "bool(x) (an if or while on a traced value)",
    jax.errors.TracerIntegerConversionError: "int(x), or a traced value used as an index",
    jax.errors.TracerArrayConversionError: "converting a traced value to a NumPy array "
                                           "(np.asarray, be.to_numpy)",
}
"""JAX's errors for a tracer made concrete under grad, and what the user did to cause each."""

# The methods a float64 backend in the scoped x64 mode runs inside jax.enable_x64(True); grad,
# value_and_grad and jit scope the functions they return instead (building them computes nothing).
X64_SCOPED: tuple[str, ...] = (
    "asarray", "from_host", "to_numpy", "zeros", "ones", "full", "empty", "eye", "linspace",
    "arange",
    "add", "subtract", "multiply", "divide", "negative", "pow", "abs", "sqrt", "exp", "log",
    "log1p", "tanh", "maximum", "minimum", "where", "clip",
    "matmul", "matrix_transpose", "dot",
    "sum", "mean", "max", "min", "logsumexp", "reshape", "expand_dims", "concat", "stack",
    "scan",
)


@jax.custom_jvp
def _abs(x: Array) -> Array:
    """``jnp.abs`` whose derivative is ``sign(x)``: 0 at 0 (see ``_abs_jvp``)."""
    return jnp.abs(x)


@_abs.defjvp
def _abs_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    """d|x| = sign(x) dx, Re(conj(sign(x)) dx) for complex x; integers carry no tangent."""
    (x,), (dx,) = primals, tangents
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.abs(x), dx
    slope = jnp.sign(x)
    if jnp.iscomplexobj(x):
        return jnp.abs(x), jnp.real(jnp.conj(slope) * dx)
    return jnp.abs(x), slope * dx


_maximum = jax.jit(functools.partial(maximum_ties_to_first, jnp))
"""The tie-to-first maximum compiled: one dispatch, where its three eager jnp calls cost
three (the gradient is the same: jit traces the same calls)."""
_minimum = jax.jit(functools.partial(minimum_ties_to_first, jnp))


@jax.jit
def _clip(x: Array, low: Any, high: Any) -> Array:
    """Clip built from the tie-to-first maximum/minimum, so the gradient is 1 at a bound too;
    a None bound (an empty pytree to jit) is left out."""
    if low is not None:
        x = maximum_ties_to_first(jnp, x, low)
    if high is not None:
        x = minimum_ties_to_first(jnp, x, high)
    return x


@functools.partial(jax.jit, static_argnames=("side", "dtype"))
def _searchsorted(x1: Array, x2: Array, sorter: Array | None, *, side: str, dtype: Any) -> Array:
    """``jnp.searchsorted`` in ``dtype``, compiled: one dispatch instead of two."""
    return jnp.searchsorted(x1, x2, side=side, sorter=sorter).astype(dtype)


def _svd(x: Array, /, *, full_matrices: bool = True) -> Any:
    """``jnp.linalg.svd``, differentiable with the standard's default ``full_matrices=True`` on
    a non-square matrix too, where JAX has no JVP: the min(m, n) singular vectors that the
    values determine come from the reduced decomposition, the rest (which no gradient fixes)
    from the full one as constants, with gradient 0, as torch gives them."""
    rows, columns = x.shape[-2:]
    if not full_matrices or rows == columns or not isinstance(x, jax.core.Tracer):
        return jnp.linalg.svd(x, full_matrices=full_matrices)
    reduced: Any = jnp.linalg.svd(x, full_matrices=False)
    full: Any = jnp.linalg.svd(jax.lax.stop_gradient(x), full_matrices=True)
    k = min(rows, columns)
    if rows > columns:
        return reduced._replace(U=jnp.concatenate([reduced.U, full.U[..., k:]], axis=-1))
    return reduced._replace(Vh=jnp.concatenate([reduced.Vh, full.Vh[..., k:, :]], axis=-2))


class JaxBackend(BackendBase):
    """gradbridge on JAX: CPU or CUDA, float32 or float64, compiled with jax.jit."""

    name: ClassVar[str] = "jax"
    xp: ClassVar[Any] = jnp
    has_jit: ClassVar[bool] = True
    compiled_scan: ClassVar[bool] = True
    """``scan`` is lax.scan: under ``jit`` a whole loop compiles into one program, so ``fit``
    jits whole chunks of epochs (elsewhere it jits the step and loops in Python)."""
    jit_needs_warm_up: ClassVar[bool] = True
    data_parallel: ClassVar[bool] = True
    """``fit(..., parallel="data")`` shards batches over this platform's devices
    (backends/jax_parallel.py)."""
    notes: ClassVar[tuple[str, ...]] = (
        "JAX's x64 mode is turned on for the process when the first JAX backend is made, so "
        "float64 is float64 everywhere (GRADBRIDGE_JAX_X64=scoped limits it to gradbridge's "
        "calls, where plain JAX code outside them truncates float64 to float32)",
        "maximum/minimum send the gradient at ties to the first argument",
    )

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(device, dtype)
        self._device = (jax.local_devices(backend="cpu")[0] if self.device == "cpu"
                        else _gpus()[int(self.device.removeprefix("cuda:"))])
        self._is_default_device = self._device == jax.devices()[0]
        self.x64_mode = x64_mode()
        scoped = self.x64_mode == "scoped" and self.dtype == "float64"
        if self.x64_mode == "process":
            enable_process_x64()
        elif scoped:
            LOG.warning("float64 JAX backend in the scoped x64 mode (%s=scoped): plain JAX "
                        "code outside gradbridge's calls and use_backend blocks computes its "
                        "arrays in float32", X64_VARIABLE)
        self._dtype = jnp.dtype(self.dtype)
        self._scoped: Callable[[F], F] = _in_x64 if scoped else _as_is
        if scoped:
            for method in {*X64_SCOPED, *ops.names(ops.MAIN)}:
                setattr(self, method, _in_x64(getattr(self, method)))
            for extension in ("linalg", "fft"):
                functions = vars(getattr(self, extension))
                setattr(self, extension, types.SimpleNamespace(
                    **{name: _in_x64(fn) for name, fn in functions.items()}))

    @classmethod
    def available_devices(cls) -> list[str]:
        return ["cpu", *(f"cuda:{index}" for index in range(len(_gpus())))]

    @classmethod
    def framework_version(cls) -> str:
        return str(jax.__version__)

    # creation and conversion

    @property
    def native_device(self) -> Any:
        return self._device

    def _device_or_default(self, device: Any) -> Any:
        """None (JAX's default placement) where the backend's device is JAX's default device:
        the array lands there all the same, and ``device=`` would cost a transfer call."""
        if device is None:
            if self._is_default_device and jax.config.jax_default_device is None:  # type: ignore[attr-defined]
                return None
            return self._device
        return device

    def from_host(self, obj: Any) -> Array:
        if not isinstance(obj, jax.Array):
            obj = np.asarray(obj)
        dtype = self._dtype if jnp.issubdtype(obj.dtype, jnp.floating) else None
        if (dtype is not None and isinstance(obj, np.ndarray) and obj.dtype == dtype
                and self._device.platform == "cpu"):  # see _private_copy
            return jax.device_put(_private_copy(obj), self._device, may_alias=True)
        return jnp.asarray(obj, dtype=dtype, device=self._device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(x)  # a writable copy: JAX exposes its buffers read-only

    # elementwise arithmetic

    # add, exp, where, ... are jnp's own, bound by bind_namespace; only what differs is here.

    abs = staticmethod(ONE_FRAMEWORK.op(jax.jit(_abs)))  # jnp.abs has slope 1 at 0; DESIGN: 0

    maximum = staticmethod(ONE_FRAMEWORK.elementwise(_maximum, "maximum"))  # ties to x1
    minimum = staticmethod(ONE_FRAMEWORK.elementwise(_minimum, "minimum"))

    @staticmethod
    def clip(x: Array, /, min: Any = None, max: Any = None) -> Array:
        """``_clip``, with ``min`` and ``max`` checked as ``x`` is however they are passed."""
        if (x.__class__ not in NATIVE or min.__class__ not in NATIVE
                or max.__class__ not in NATIVE):
            ONE_FRAMEWORK.refuse("clip", (x, min, max))
        return _clip(x, min, max)

    # linear algebra

    matmul = staticmethod(ONE_FRAMEWORK.binary(jnp.matmul, explain=matmul_shape_error))
    matrix_transpose = staticmethod(ONE_FRAMEWORK.op(jnp.matrix_transpose))

    # reductions and shape

    @ONE_FRAMEWORK.method
    def sum(self, x: Array, /, *, axis: Axis = None, dtype: Any = None,
            keepdims: bool = False) -> Array:
        return jnp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def mean(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.mean(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def max(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.max(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def min(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.min(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def logsumexp(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return jax_logsumexp(x, axis=axis, keepdims=keepdims)

    reshape = staticmethod(ONE_FRAMEWORK.op(jnp.reshape))
    expand_dims = staticmethod(ONE_FRAMEWORK.op(jnp.expand_dims))

    @ONE_FRAMEWORK.op
    def concat(self, arrays: Sequence[Array], /, axis: int | None = 0) -> Array:
        return jnp.concatenate(arrays, axis=axis)

    stack = staticmethod(ONE_FRAMEWORK.op(jnp.stack))

    @ONE_FRAMEWORK.op
    def searchsorted(self, x1: Array, x2: Array, /, *, side: str = "left",
                     sorter: Array | None = None) -> Array:
        """The standard's index dtype: jnp picks int32 for small inputs (jax.numpy fails the
        suite's test for it)."""
        indexing = self.__array_namespace_info__().default_dtypes()["indexing"]
        return _searchsorted(x1, x2, sorter, side=side, dtype=indexing)

    # autodiff, compilation, loops, timing

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        def scalar_fn(*args: Any, **kwargs: Any) -> Array:
            value = fn(*args, **kwargs)
            if type(value) in PYTHON_NUMBERS:
                raise returned_a_number(value)
            check_scalar_output(jnp.shape(value))
            return jnp.reshape(value, ())

        transformed = jax.value_and_grad(scalar_fn, argnums)

        def value_and_gradient(*args: Any, **kwargs: Any) -> tuple[Array, Any]:
            nums = check_argnums(argnums, len(args))
            try:
                if _worth_rematerializing(args, kwargs, nums):
                    value, grads = _rematerialized_value_and_grad(scalar_fn, args, kwargs, nums)
                    return value, grads[0] if isinstance(argnums, int) else grads
                return transformed(*args, **kwargs)
            except tuple(LEFT_THE_GRAPH) as exc:
                raise left_the_graph(LEFT_THE_GRAPH[type(exc)]) from exc

        return self._scoped(value_and_gradient)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._scoped(jax.jit(fn))

    def scan(self, step: Callable[[Any], tuple[Any, Any]], carry: Any,
             length: int) -> tuple[Any, Any]:
        """lax.scan over ``step(carry) -> (carry, y)``; floating carries take the backend dtype.

        lax.scan needs the carry's dtypes to stay fixed, so a host float64 start value in a
        float32 backend (or the reverse) is converted first rather than rejected. JAX arrays
        keep their placement (a carry replicated over a mesh stays so) and host numbers take
        none.
        """
        return jax.lax.scan(lambda c, _: step(c), tree_map(self._carry_start, carry), None,
                            length=length)

    def cond(self, predicate: Array, if_true: Callable[[Any], Any], if_false: Callable[[Any], Any],
             operand: Any) -> Any:
        """lax.cond: traced, it compiles both branches and runs the one chosen."""
        return jax.lax.cond(predicate, if_true, if_false, operand)

    def _carry_start(self, leaf: Any) -> Array:
        """A carry leaf with the backend's float dtype; host numbers stay uncommitted, so that
        inside a program sharded over a mesh they pin nothing to one device."""
        value = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
        return jnp.asarray(value, dtype=self._dtype if jnp.issubdtype(value.dtype, jnp.floating)
                           else None)

    def synchronize(self) -> None:
        """Wait for the programs launched on every device of this platform (see the module's
        docstring): a trivial program launched after them on each finishes after them."""
        jax.effects_barrier()
        for device in jax.local_devices(backend=self._device.platform):
            _after_queued_work(jax.device_put(np.zeros((), np.int32), device)).block_until_ready()

    def data_parallel_engine(self) -> Any:
        """The mesh over every device of this backend's platform (backends/jax_parallel.py)."""
        return jax_parallel.engine(self._device.platform)

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which plain JAX code (operators included) computes in the backend's dtype.

        Only the scoped x64 mode needs one: for a float64 backend there it is
        ``jax.enable_x64(True)``, for this thread and this block only; otherwise nothing to do.
        """
        if self.x64_mode == "scoped" and self.dtype == "float64":
            return jax.enable_x64(True)
        return contextlib.nullcontext()

    def eager(self) -> contextlib.AbstractContextManager[Any]:
        return jax.disable_jit()


NATIVE.add(JaxBackend)  # methods see the backend itself as their first argument
bind_namespace(JaxBackend, ONE_FRAMEWORK)
vars(JaxBackend)["linalg"].svd = ONE_FRAMEWORK.op(_svd)  # see _svd: differentiable when full


def x64_mode() -> str:
    """The float64 policy asked for by GRADBRIDGE_JAX_X64: 'process' (default) or 'scoped'."""
    mode = os.environ.get(X64_VARIABLE, "").strip().lower() or "process"
    if mode not in X64_MODES:
        raise InvalidArgument(f"{X64_VARIABLE}={os.environ[X64_VARIABLE]!r} (environment "
                              f"variable) is not valid; expected one of {', '.join(X64_MODES)}")
    return mode


def enable_process_x64() -> None:
    """Turn on JAX's x64 mode for the process if it is off, and say so in the log."""
    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
        LOG.info("turned on JAX's x64 mode for this process: float64 and int64 are real dtypes "
                 "and float64 backends compute in float64 everywhere; float32 backends stay "
                 "float32 (set %s=scoped to keep x64 to gradbridge's calls)", X64_VARIABLE)


def _gpus() -> list[Any]:
    """JAX's GPU devices; ``jax.devices('gpu')`` raises RuntimeError when there are none."""
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


@jax.jit
def _after_queued_work(marker: Array) -> Array:
    """A program with nothing to do, which its device runs after the ones launched before."""
    return marker + 1


def _private_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` in a fresh buffer aligned as XLA's CPU client needs
    (:data:`gradbridge.core.data.HOST_ALIGNMENT`).

    Why: ``jnp.asarray(host_array, device=cpu)`` first transfers the host array and then runs a
    conversion that writes a second device buffer, so for a moment the data exist twice more
    (1.5 to 1.8 extra copies of x and y at the start of a full-batch fit of N = 1e7). Copied
    here once, into memory aligned as XLA's CPU client needs, ``jax.device_put`` wraps the copy
    instead of copying it again: one extra copy in all.

    Safety: ``jax.device_put`` aliases any suitably aligned NumPy buffer on the CPU, writeable
    ones included and even with ``may_alias=False`` (jax-ml/jax#37830), so a user's array must
    never reach it: a later write to that array would change the "immutable" JAX array. This
    buffer is made here and returned to ``from_host`` only; the JAX array holds the last reference
    to it, and NumPy views of a JAX array are read-only. Were the buffer not aliased (another
    JAX version or alignment rule), ``device_put`` copies it: still correct, one copy more.
    """
    copy = aligned_empty(array.shape, array.dtype)
    np.copyto(copy, array)
    return copy


REMAT_POLICY = jax.checkpoint_policies.dots_saveable
"""What a rematerialized ``value_and_grad`` keeps from its forward pass for the backward pass:
the outputs of matrix products only; everything elementwise is recomputed (see
:func:`_rematerialized_value_and_grad`)."""

REMAT_MIN_BYTES = 32 * 2**20
"""Rematerialize only when the arguments not differentiated (the data) hold at least this much.

Measured on the 2-vCPU machine (linear1d, MSE, one thread): recomputing costs 1.1-1.2x per
epoch while the data fit in cache (N <= 1e6 float32, 8 MB), and is even or faster at N = 1e7
(80 MB), where one array-sized temporary fewer saves as much DRAM traffic as recomputing adds."""


def _worth_rematerializing(args: tuple[Any, ...], kwargs: dict[str, Any],
                           nums: tuple[int, ...]) -> bool:
    """Whether a call is traced (inside ``jit``, ``scan`` or another transform) and the
    arguments that are not differentiated hold at least REMAT_MIN_BYTES of arrays."""
    leaves = jax.tree.leaves((args, kwargs))
    if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return False
    data = jax.tree.leaves(([arg for i, arg in enumerate(args) if i not in nums], kwargs))
    held = sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
               for leaf in data if hasattr(leaf, "shape") and hasattr(leaf, "dtype"))
    return held >= REMAT_MIN_BYTES


def _rematerialized_value_and_grad(scalar_fn: Callable[..., Array], args: tuple[Any, ...],
                                   kwargs: dict[str, Any],
                                   nums: tuple[int, ...]) -> tuple[Array, tuple[Any, ...]]:
    """``jax.value_and_grad(scalar_fn, nums)(*args, **kwargs)`` through ``jax.checkpoint``.

    Why: in a compiled full-batch step on data x (n,) the residual ``w * x + b - y`` feeds both
    the loss and the backward pass, so XLA writes it, and the scaled cotangent ``2 r / n``, to
    two array-sized temporaries (one more copy of x and y). Checkpointed, the forward pass only
    reduces (fused, no temporary) and the backward pass recomputes the residual from x and y, so
    one array-sized temporary is left. ``REMAT_POLICY`` still saves matrix products, so a model
    built on matmul is not multiplied out twice; recomputing elementwise work reads the data
    once more, and XLA fuses it. Only traced calls on large data take this path (see
    :func:`_worth_rematerializing`): eagerly nothing is fused, so it would only add work (and
    retrace ``scalar_fn`` on every call), and on data that fit in cache it costs time.

    The arguments that are not differentiated (data, Python flags) are closed over, not passed
    to ``jax.checkpoint``, which would otherwise trace them too.
    """
    def of_chosen(*chosen: Any) -> Array:
        full = list(args)
        for index, value in zip(nums, chosen, strict=True):
            full[index] = value
        return scalar_fn(*full, **kwargs)

    remat = jax.checkpoint(of_chosen, policy=REMAT_POLICY)
    value, grads = jax.value_and_grad(remat, tuple(range(len(nums))))(*(args[i] for i in nums))
    return value, tuple(grads)


def _in_x64(fn: F) -> F:
    """``fn`` run inside ``jax.enable_x64(True)``; the global flag is left as it was."""
    @functools.wraps(fn)
    def run_in_x64(*args: Any, **kwargs: Any) -> Any:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return run_in_x64  # type: ignore[return-value]


def _as_is(fn: F) -> F:
    """The float32 scope: nothing to add."""
    return fn
