"""The JAX backend: jax.numpy operations, jax.value_and_grad, jax.jit and lax.scan.

Operations whose jax.numpy function already has the protocol's meaning are bound directly as
class attributes, so ``be.add(x, y)`` costs what ``jnp.add(x, y)`` costs; only the operations
that differ are written out. ``backends/torch.py`` has the same methods in the same order.

float64
    JAX computes in float32 unless its global ``jax_enable_x64`` flag is on, and flipping that
    flag changes all other JAX code in the process. A float64 ``JaxBackend`` leaves the flag as
    it is and runs each of its own calls inside ``with jax.enable_x64(True):`` instead (a
    thread-local context manager in the JAX installed here): every array operation,
    ``asarray``, ``scan``, and the functions returned by ``grad``, ``value_and_grad`` and
    ``jit`` (so they are traced, compiled and run in float64). The wrapping is applied once, in
    ``__init__``; a float32 backend keeps the directly bound functions and pays nothing.

    Limit: the arrays a float64 backend returns are real float64 arrays, but outside
    gradbridge's calls x64 is off again, and there JAX treats them inconsistently: some
    operations keep float64 (``x + y`` of two float64 arrays) while others silently return
    float32 with a UserWarning (reductions such as ``jnp.sum``, arithmetic with a Python or
    NumPy scalar such as ``2.0 * x``; ``x @ y`` may even keep the float64 dtype but compute in
    float32). So do float64 arithmetic through ``be.*`` calls, inside functions given to
    ``be.jit`` / ``be.grad`` / ``be.scan``, or inside ``with be.scope():`` (the same
    ``jax.enable_x64(True)`` block, for the code inside it only). ``to_numpy`` returns float64
    host arrays. Integers follow JAX's rule for the mode: int64 input becomes int32 under
    float32 and stays int64 under float64.

Devices
    'cpu', and 'cuda:N' for the N-th of ``jax.devices('gpu')``. Arrays made by ``asarray``,
    ``zeros``, ``ones`` and ``full`` are committed to the backend's device; operations and
    compiled functions run where their inputs live.

Subgradients
    ``maximum``/``minimum`` give the whole gradient at a tie to the first argument (``jnp.maximum``
    would split it 0.5/0.5). ``clip`` has gradient 1 inside ``[min, max]`` and at both bounds,
    like ``torch.clamp`` (``jnp.clip`` gives 0.5 at a bound). The ``max``/``min`` reductions
    share the gradient equally among tied elements (JAX's rule; torch's amax/amin do the same).
    ``abs`` is ``jnp.abs`` itself, whose derivative at 0 is 1 (torch and the NumPy backend
    give 0); kept for speed, since it only matters exactly at 0.

synchronize
    JAX dispatches work asynchronously and has no call that waits for every outstanding
    computation without holding its arrays. ``synchronize()`` calls ``jax.effects_barrier()``
    (waits for the side effects of dispatched functions); for honest timings, also call
    ``jax.block_until_ready(result)`` on the outputs being timed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp as jax_logsumexp

from gradbridge.core.backend import (
    Argnums,
    Array,
    Axis,
    BackendBase,
    Shape,
    check_argnums,
    check_scalar_output,
    tree_map,
)
from gradbridge.core.dispatch import maximum_ties_to_first, minimum_ties_to_first

F = TypeVar("F", bound=Callable[..., Any])

# The methods a float64 backend runs inside jax.enable_x64(True); grad, value_and_grad and jit
# scope the functions they return instead (building a transform computes nothing).
X64_SCOPED: tuple[str, ...] = (
    "asarray", "to_numpy", "zeros", "ones", "full",
    "add", "subtract", "multiply", "divide", "negative", "pow", "abs", "sqrt", "exp", "log",
    "log1p", "tanh", "maximum", "minimum", "where", "clip",
    "matmul", "matrix_transpose", "dot",
    "sum", "mean", "max", "min", "logsumexp", "reshape", "expand_dims", "concat", "stack",
    "scan",
)


class JaxBackend(BackendBase):
    """gradbridge on JAX: CPU or CUDA, float32 or scoped float64, compiled with jax.jit."""

    name: ClassVar[str] = "jax"
    has_jit: ClassVar[bool] = True
    compiled_scan: ClassVar[bool] = True
    """``scan`` is lax.scan: under ``jit`` a whole loop compiles into one program, so ``fit``
    jits whole chunks of epochs (elsewhere it jits the step and loops in Python)."""
    notes: ClassVar[tuple[str, ...]] = (
        "float64 runs gradbridge's calls inside jax.enable_x64(True) without changing the "
        "global flag; plain JAX code outside them may truncate float64 results to float32",
        "maximum/minimum send the gradient at ties to the first argument",
    )

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(device, dtype)
        self._device = (jax.devices("cpu")[0] if self.device == "cpu"
                        else _gpus()[int(self.device.removeprefix("cuda:"))])
        self._dtype = jnp.dtype(self.dtype)
        self._scoped: Callable[[F], F] = _in_x64 if self.dtype == "float64" else _as_is
        if self.dtype == "float64":
            for method in X64_SCOPED:
                setattr(self, method, _in_x64(getattr(self, method)))

    @classmethod
    def available_devices(cls) -> list[str]:
        return ["cpu", *(f"cuda:{index}" for index in range(len(_gpus())))]

    @classmethod
    def framework_version(cls) -> str:
        return str(jax.__version__)

    # creation and conversion

    def asarray(self, obj: Any) -> Array:
        if not isinstance(obj, jax.Array):
            obj = np.asarray(obj)
        dtype = self._dtype if jnp.issubdtype(obj.dtype, jnp.floating) else None
        return jnp.asarray(obj, dtype=dtype, device=self._device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.array(x)  # a writable copy: JAX exposes its buffers read-only

    def zeros(self, shape: int | Shape) -> Array:
        return jnp.zeros(shape, dtype=self._dtype, device=self._device)

    def ones(self, shape: int | Shape) -> Array:
        return jnp.ones(shape, dtype=self._dtype, device=self._device)

    def full(self, shape: int | Shape, fill_value: float) -> Array:
        return jnp.full(shape, fill_value, dtype=self._dtype, device=self._device)

    # elementwise arithmetic

    add = staticmethod(jnp.add)
    subtract = staticmethod(jnp.subtract)
    multiply = staticmethod(jnp.multiply)
    divide = staticmethod(jnp.divide)
    negative = staticmethod(jnp.negative)
    pow = staticmethod(jnp.pow)
    abs = staticmethod(jnp.abs)
    sqrt = staticmethod(jnp.sqrt)
    exp = staticmethod(jnp.exp)
    log = staticmethod(jnp.log)
    log1p = staticmethod(jnp.log1p)
    tanh = staticmethod(jnp.tanh)

    def maximum(self, x1: Array, x2: Array | float) -> Array:
        return maximum_ties_to_first(jnp, x1, x2)

    def minimum(self, x1: Array, x2: Array | float) -> Array:
        return minimum_ties_to_first(jnp, x1, x2)

    where = staticmethod(jnp.where)

    def clip(self, x: Array, min: float | None = None, max: float | None = None) -> Array:
        """Built from the tie-to-first maximum/minimum, so the gradient is 1 at a bound too."""
        if min is not None:
            x = self.maximum(x, min)
        if max is not None:
            x = self.minimum(x, max)
        return x

    # linear algebra

    matmul = staticmethod(jnp.matmul)
    matrix_transpose = staticmethod(jnp.matrix_transpose)

    # reductions and shape (written out: jnp's third positional parameter is not keepdims)

    def sum(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.mean(x, axis=axis, keepdims=keepdims)

    def max(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.max(x, axis=axis, keepdims=keepdims)

    def min(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return jnp.min(x, axis=axis, keepdims=keepdims)

    def logsumexp(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return jax_logsumexp(x, axis=axis, keepdims=keepdims)

    reshape = staticmethod(jnp.reshape)
    expand_dims = staticmethod(jnp.expand_dims)

    def concat(self, arrays: Sequence[Array], axis: int = 0) -> Array:
        return jnp.concatenate(arrays, axis=axis)

    stack = staticmethod(jnp.stack)

    # autodiff, compilation, loops, timing

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        def scalar_fn(*args: Any, **kwargs: Any) -> Array:
            value = fn(*args, **kwargs)
            check_scalar_output(jnp.shape(value))
            return jnp.reshape(value, ())

        transformed = jax.value_and_grad(scalar_fn, argnums)

        def value_and_gradient(*args: Any, **kwargs: Any) -> tuple[Array, Any]:
            check_argnums(argnums, len(args))
            return transformed(*args, **kwargs)

        return self._scoped(value_and_gradient)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._scoped(jax.jit(fn))

    def scan(self, step: Callable[[Any], tuple[Any, Any]], carry: Any,
             length: int) -> tuple[Any, Any]:
        """lax.scan over ``step(carry) -> (carry, y)``; floating carries take the backend dtype.

        lax.scan needs the carry's dtypes to stay fixed, so a host float64 start value in a
        float32 backend (or the reverse) is converted first rather than rejected.
        """
        return jax.lax.scan(lambda c, _: step(c), tree_map(self.asarray, carry), None,
                            length=length)

    def synchronize(self) -> None:
        jax.effects_barrier()

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which plain JAX code (operators included) computes in the backend's dtype.

        For float64 this is ``jax.enable_x64(True)``, for this thread and this block only; for
        float32 there is nothing to do. Use it around eager code that works on a float64
        backend's arrays outside ``be.*`` calls, e.g. ``with be.scope(): y = x @ w + b``.
        """
        return jax.enable_x64(True) if self.dtype == "float64" else contextlib.nullcontext()


def _gpus() -> list[Any]:
    """JAX's GPU devices; ``jax.devices('gpu')`` raises RuntimeError when there are none."""
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


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
