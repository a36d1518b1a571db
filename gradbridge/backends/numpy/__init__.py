"""The NumPy backend: NumPy's own functions, plus a small reverse-mode autodiff of our own.

Where NumPy's signature is the Array API's, the method *is* the NumPy function, so plain arrays
pay nothing for going through the backend. Inside ``value_and_grad`` the same calls reach
:mod:`.autodiff`'s primitives, because traced values answer NumPy's dispatch protocols.
Results are NumPy arrays, or NumPy scalars where NumPy returns those (0-D results). Every
operation refuses another framework's arrays, which NumPy would convert silently or return
(:class:`~gradbridge.core.backend.OneFramework`: one type test per argument).
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable
from typing import Any, ClassVar

import array_api_compat.numpy
import numpy as np

from gradbridge.backends.numpy import (  # the rules modules register themselves
    array_rules,
    autodiff,
    elementwise_rules,  # noqa: F401
    linalg_rules,  # noqa: F401
    staging,
)
from gradbridge.backends.numpy.autodiff import Tracer
from gradbridge.backends.numpy.staging import Symbol
from gradbridge.core.backend import (
    Argnums,
    Array,
    Axis,
    BackendBase,
    OneFramework,
    Shape,
    bind_namespace,
    matmul_shape_error,
)

__all__ = ["NumpyBackend"]

NATIVE: set[type] = {np.ndarray, np.float32, np.float64, float, int, bool, Tracer, Symbol}
"""Argument types that pass the foreign-array check at once (NumpyBackend joins below)."""


ONE_FRAMEWORK = OneFramework("numpy", np.ndarray, NATIVE, traced=Tracer)


class NumpyBackend(BackendBase):
    """NumPy on the CPU; ``value_and_grad`` by :mod:`gradbridge.backends.numpy.autodiff`."""

    name: ClassVar[str] = "numpy"
    xp: ClassVar[Any] = array_api_compat.numpy
    creation_xp: ClassVar[Any] = (np if np.lib.NumpyVersion(np.__version__) >= "2.0.0"
                                  else None)  # NumPy 2's are the standard's (device=, copy=)
    jit_needs_warm_up: ClassVar[bool] = True  # jit traces each signature once, then replays
    notes: ClassVar[tuple[str, ...]] = (
        "gradients by gradbridge's own reverse-mode autodiff (nested grad included; complex "
        "values forward only)",
        "no compiler: jit(fn) traces fn once per argument signature and replays its NumPy "
        "calls without the Python around them",
    )

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(device, dtype)
        self.float_dtype = np.dtype(self.dtype)

    @classmethod
    def framework_version(cls) -> str:
        return np.__version__

    # creation and conversion

    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None,
                copy: bool | None = None) -> Array:
        """The standard's asarray; a traced value (inside grad or a jit trace) stays traced."""
        if isinstance(obj, (Tracer, Symbol)):
            return obj if dtype is None else autodiff.cast(obj, np.dtype(dtype))
        return super().asarray(obj, dtype=dtype, device=device, copy=copy)

    def from_host(self, obj: Any) -> Array:
        if isinstance(obj, Tracer):
            return obj
        x = obj if isinstance(obj, Symbol) else np.asarray(obj)
        if x.dtype.kind == "f" and x.dtype != self.float_dtype:
            return x.astype(self.float_dtype)
        return x

    def to_numpy(self, x: Array) -> Any:
        return np.array(x)  # a traced value refuses (Tracer.__array__: it would lose its gradient)

    # elementwise arithmetic, linear algebra and shape: NumPy's signatures are the Array API's

    add = staticmethod(ONE_FRAMEWORK.binary(np.add))
    subtract = staticmethod(ONE_FRAMEWORK.binary(np.subtract))
    multiply = staticmethod(ONE_FRAMEWORK.binary(np.multiply))
    divide = staticmethod(ONE_FRAMEWORK.binary(np.divide))
    negative = staticmethod(ONE_FRAMEWORK.elementwise(np.negative))
    pow = staticmethod(ONE_FRAMEWORK.binary(np.power))
    abs = staticmethod(ONE_FRAMEWORK.elementwise(np.abs))
    sqrt = staticmethod(ONE_FRAMEWORK.elementwise(np.sqrt))
    exp = staticmethod(ONE_FRAMEWORK.elementwise(np.exp))
    log = staticmethod(ONE_FRAMEWORK.elementwise(np.log))
    log1p = staticmethod(ONE_FRAMEWORK.elementwise(np.log1p))
    tanh = staticmethod(ONE_FRAMEWORK.elementwise(np.tanh))
    maximum = staticmethod(ONE_FRAMEWORK.binary(np.maximum))
    minimum = staticmethod(ONE_FRAMEWORK.binary(np.minimum))
    where = staticmethod(ONE_FRAMEWORK.op(np.where))
    matmul = staticmethod(ONE_FRAMEWORK.binary(np.matmul, explain=matmul_shape_error))
    expand_dims = staticmethod(ONE_FRAMEWORK.op(np.expand_dims))
    concat = staticmethod(ONE_FRAMEWORK.op(np.concatenate))
    stack = staticmethod(ONE_FRAMEWORK.op(np.stack))

    # where NumPy differs: keyword-only keepdims, None bounds, fused logsumexp and MSE; reshape's
    # overloaded stubs do not match the protocol's signature for type checkers

    @ONE_FRAMEWORK.method
    def reshape(self, x: Array, /, shape: int | Shape, *, copy: bool | None = None) -> Array:
        return np.reshape(x, shape) if copy is None else np.reshape(x, shape, copy=copy)

    @ONE_FRAMEWORK.op
    def clip(self, x: Array, /, min: Any = None, max: Any = None) -> Array:
        return x if min is None and max is None else np.clip(x, min, max)

    @ONE_FRAMEWORK.method
    def matrix_transpose(self, x: Array) -> Array:
        return np.swapaxes(x, -1, -2)

    @ONE_FRAMEWORK.method
    def sum(self, x: Array, /, *, axis: Axis = None, dtype: Any = None,
            keepdims: bool = False) -> Array:
        if dtype is None:  # (traced values' sum takes no dtype)
            return np.sum(x, axis=axis, keepdims=keepdims)
        return np.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def mean(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.mean(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def max(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.max(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def min(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.min(x, axis=axis, keepdims=keepdims)

    @ONE_FRAMEWORK.method
    def logsumexp(self, x: Array, /, *, axis: Axis = None, keepdims: bool = False) -> Array:
        return array_rules.logsumexp(x, axis, keepdims)

    mean_squared_error = staticmethod(ONE_FRAMEWORK.op(array_rules.mean_squared_error))

    # autodiff

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        return autodiff.value_and_grad(fn, argnums, self.dtype)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return staging.jit(fn)

    def eager(self) -> contextlib.AbstractContextManager[Any]:
        return staging.eager()


NATIVE.add(NumpyBackend)  # methods see the backend itself as their first argument
bind_namespace(NumpyBackend, ONE_FRAMEWORK)


def _traced_to_rule(name: str, bound: Callable[..., Any]) -> Callable[..., Any]:
    """``bound`` (array-api-compat's linalg function), except that traced arguments (inside grad
    or a jit trace) go to the autodiff's rule of the same name: compat's wrappers would turn
    them into NumPy arrays first."""
    rule, plain = autodiff.PRIMITIVES[name], bound.__wrapped__  # type: ignore[attr-defined]

    @functools.wraps(plain)
    def linalg_function(*args: Any, **kwargs: Any) -> Any:
        if any(type(a) is Tracer or type(a) is Symbol for a in args):
            return rule(*args, **kwargs)
        return plain(*args, **kwargs)

    return ONE_FRAMEWORK.op(linalg_function)


NumpyBackend.linalg = types.SimpleNamespace(**{  # type: ignore[attr-defined]
    name: _traced_to_rule(name, f) if name in autodiff.PRIMITIVES else f
    for name, f in vars(NumpyBackend.linalg).items()})  # type: ignore[attr-defined]
"""The linalg extension, bound by bind_namespace, with traced values sent to the autodiff."""
