"""The NumPy backend: NumPy's own functions, plus a small reverse-mode autodiff of our own.

Where NumPy's signature is the Array API's, the method *is* the NumPy function, so plain arrays
pay nothing for going through the backend. Inside ``value_and_grad`` the same calls reach
:mod:`.autodiff`'s primitives, because traced values answer NumPy's dispatch protocols.
Results are NumPy arrays, or NumPy scalars where NumPy returns those (0-D results). Every
operation refuses another framework's arrays, which NumPy would convert silently or return
(:func:`~gradbridge.core.backend.refusing_foreign`: one set lookup per argument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from gradbridge.backends.numpy import autodiff, staging
from gradbridge.backends.numpy.autodiff import Tracer
from gradbridge.backends.numpy.staging import Symbol
from gradbridge.core.backend import (
    Argnums,
    Array,
    Axis,
    BackendBase,
    Shape,
    matmul_shape_error,
    refusing_foreign,
    refusing_foreign_method,
)

__all__ = ["NumpyBackend"]

NATIVE: set[type] = {np.ndarray, np.float32, np.float64, float, int, bool, Tracer, Symbol}
"""Argument types that pass the foreign-array check at once (NumpyBackend joins below)."""


def _numpy_only_method(method: Callable[..., Any]) -> Callable[..., Any]:
    return refusing_foreign_method(method, "numpy", np.ndarray, NATIVE)


def _numpy_binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    return refusing_foreign(fn, "numpy", np.ndarray, NATIVE, binary=True)


def _numpy_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    return refusing_foreign(fn, "numpy", np.ndarray, NATIVE)


class NumpyBackend(BackendBase):
    """NumPy on the CPU; ``value_and_grad`` by :mod:`gradbridge.backends.numpy.autodiff`."""

    name: ClassVar[str] = "numpy"
    notes: ClassVar[tuple[str, ...]] = (
        "gradients by gradbridge's own reverse-mode autodiff (first order)",
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

    def asarray(self, obj: Any) -> Array:
        """An array of ``obj``; floating input takes the backend's dtype, others keep theirs."""
        if isinstance(obj, Tracer):
            return obj
        x = obj if isinstance(obj, Symbol) else np.asarray(obj)
        if x.dtype.kind == "f" and x.dtype != self.float_dtype:
            return x.astype(self.float_dtype)
        return x

    def to_numpy(self, x: Array) -> Any:
        return np.array(x)  # a traced value refuses (Tracer.__array__: it would lose its gradient)

    def zeros(self, shape: int | Shape) -> Array:
        return np.zeros(shape, dtype=self.float_dtype)

    def ones(self, shape: int | Shape) -> Array:
        return np.ones(shape, dtype=self.float_dtype)

    def full(self, shape: int | Shape, fill_value: float) -> Array:
        return np.full(shape, fill_value, dtype=self.float_dtype)

    # elementwise arithmetic, linear algebra and shape: NumPy's signatures are the Array API's

    add = staticmethod(_numpy_binary(np.add))
    subtract = staticmethod(_numpy_binary(np.subtract))
    multiply = staticmethod(_numpy_binary(np.multiply))
    divide = staticmethod(_numpy_binary(np.divide))
    negative = staticmethod(_numpy_only(np.negative))
    pow = staticmethod(_numpy_binary(np.power))
    abs = staticmethod(_numpy_only(np.abs))
    sqrt = staticmethod(_numpy_only(np.sqrt))
    exp = staticmethod(_numpy_only(np.exp))
    log = staticmethod(_numpy_only(np.log))
    log1p = staticmethod(_numpy_only(np.log1p))
    tanh = staticmethod(_numpy_only(np.tanh))
    maximum = staticmethod(_numpy_binary(np.maximum))
    minimum = staticmethod(_numpy_binary(np.minimum))
    where = staticmethod(_numpy_only(np.where))
    matmul = staticmethod(refusing_foreign(
        np.matmul, "numpy", np.ndarray, NATIVE, binary=True, explain=matmul_shape_error))
    expand_dims = staticmethod(_numpy_only(np.expand_dims))
    concat = staticmethod(_numpy_only(np.concatenate))
    stack = staticmethod(_numpy_only(np.stack))

    # where NumPy differs: keyword-only keepdims, None bounds, fused logsumexp and MSE; reshape's
    # overloaded stubs do not match the protocol's signature for type checkers

    @_numpy_only_method
    def reshape(self, x: Array, shape: int | Shape) -> Array:
        return np.reshape(x, shape)

    @_numpy_only
    def clip(self, x: Array, min: float | None = None, max: float | None = None) -> Array:
        return x if min is None and max is None else np.clip(x, min, max)

    @_numpy_only_method
    def matrix_transpose(self, x: Array) -> Array:
        return np.swapaxes(x, -1, -2)

    @_numpy_only_method
    def sum(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.sum(x, axis=axis, keepdims=keepdims)

    @_numpy_only_method
    def mean(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.mean(x, axis=axis, keepdims=keepdims)

    @_numpy_only_method
    def max(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.max(x, axis=axis, keepdims=keepdims)

    @_numpy_only_method
    def min(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return np.min(x, axis=axis, keepdims=keepdims)

    @_numpy_only_method
    def logsumexp(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return autodiff.logsumexp(x, axis, keepdims)

    mean_squared_error = staticmethod(_numpy_only(autodiff.mean_squared_error))

    # autodiff

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        return autodiff.value_and_grad(fn, argnums, self.dtype)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return staging.jit(fn)


NATIVE.add(NumpyBackend)  # methods see the backend itself as their first argument
