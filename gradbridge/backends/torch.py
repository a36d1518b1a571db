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
    Eager by default (``jit`` returns ``fn``): ``torch.compile`` costs ~20 s per function on a
    small machine, more than most runs. Set ``GRADBRIDGE_TORCH_COMPILE=1`` before the backend is
    built to make ``jit`` return ``torch.compile(fn)`` (compiled lazily, on its first call);
    ``capabilities.has_jit`` reports which of the two is in force. ``scan`` is
    :class:`BackendBase`'s Python loop.

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

import contextvars
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch

from gradbridge.core.backend import (
    Argnums,
    Array,
    Axis,
    BackendBase,
    Capabilities,
    Shape,
    check_argnums,
    check_scalar_output,
    invalid,
    tree_map,
)
from gradbridge.core.dispatch import maximum_ties_to_first, minimum_ties_to_first

COMPILE_ENV = "GRADBRIDGE_TORCH_COMPILE"

# True while a value_and_grad of this backend runs its function: a call made then is nested.
_differentiating: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gradbridge_torch_differentiating", default=False
)


class TorchBackend(BackendBase):
    """gradbridge on PyTorch: CPU or CUDA, float32 or float64, eager unless compile is asked."""

    name: ClassVar[str] = "torch"
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
        return replace(super().capabilities, has_jit=self._compile)

    # creation and conversion

    def asarray(self, obj: Any) -> Array:
        if not isinstance(obj, torch.Tensor):
            host = np.asarray(obj)
            if any(stride < 0 for stride in host.strides):  # torch cannot view reversed memory
                host = host.copy()
            obj = torch.as_tensor(host)
        dtype = self._dtype if obj.is_floating_point() else obj.dtype
        return obj.to(device=self._device, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", copy=True).numpy()
        return np.array(x)

    def zeros(self, shape: int | Shape) -> Array:
        return torch.zeros(_as_shape(shape), dtype=self._dtype, device=self._device)

    def ones(self, shape: int | Shape) -> Array:
        return torch.ones(_as_shape(shape), dtype=self._dtype, device=self._device)

    def full(self, shape: int | Shape, fill_value: float) -> Array:
        return torch.full(_as_shape(shape), fill_value, dtype=self._dtype, device=self._device)

    # elementwise arithmetic

    add = staticmethod(torch.add)
    subtract = staticmethod(torch.subtract)
    multiply = staticmethod(torch.multiply)
    divide = staticmethod(torch.divide)
    negative = staticmethod(torch.negative)
    pow = staticmethod(torch.pow)
    abs = staticmethod(torch.abs)
    sqrt = staticmethod(torch.sqrt)
    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    log1p = staticmethod(torch.log1p)
    tanh = staticmethod(torch.tanh)

    def maximum(self, x1: Array, x2: Array | float) -> Array:
        return maximum_ties_to_first(torch, x1, x2)

    def minimum(self, x1: Array, x2: Array | float) -> Array:
        return minimum_ties_to_first(torch, x1, x2)

    where = staticmethod(torch.where)

    def clip(self, x: Array, min: float | None = None, max: float | None = None) -> Array:
        """torch.clamp, which refuses two missing bounds; the Array API returns x then."""
        if min is None and max is None:
            return x
        return torch.clamp(x, min, max)

    # linear algebra

    matmul = staticmethod(torch.matmul)

    def matrix_transpose(self, x: Array) -> Array:
        return x.mT

    # reductions and shape (torch says dim/keepdim)

    # A whole-array reduction takes torch's short path: dim=None costs ~25% more per call.

    def sum(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        if axis is None and not keepdims:
            return torch.sum(x)
        return torch.sum(x, dim=axis, keepdim=keepdims)

    def mean(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        if axis is None and not keepdims:
            return torch.mean(x)
        return torch.mean(x, dim=axis, keepdim=keepdims)

    def max(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.amax(x, dim=_dims(x, axis), keepdim=keepdims)

    def min(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.amin(x, dim=_dims(x, axis), keepdim=keepdims)

    def logsumexp(self, x: Array, axis: Axis = None, keepdims: bool = False) -> Array:
        return torch.logsumexp(x, dim=_dims(x, axis), keepdim=keepdims)

    def reshape(self, x: Array, shape: int | Shape) -> Array:
        return torch.reshape(x, _as_shape(shape))

    def expand_dims(self, x: Array, axis: int) -> Array:
        return torch.unsqueeze(x, axis)

    def concat(self, arrays: Sequence[Array], axis: int = 0) -> Array:
        return torch.cat(list(arrays), dim=axis)

    def stack(self, arrays: Sequence[Array], axis: int = 0) -> Array:
        return torch.stack(list(arrays), dim=axis)

    # autodiff, compilation, loops (scan: BackendBase's Python loop), timing

    def value_and_grad(self, fn: Callable[..., Array],
                       argnums: Argnums = 0) -> Callable[..., tuple[Array, Any]]:
        def value_and_gradient(*args: Any, **kwargs: Any) -> tuple[Array, Any]:
            nums = check_argnums(argnums, len(args))
            nested = _differentiating.get()
            leaves: list[torch.Tensor] = []

            def track(x: Any) -> torch.Tensor:
                tensor = x if isinstance(x, torch.Tensor) else self.asarray(x)
                if not (nested and tensor.requires_grad):
                    tensor = tensor.detach().requires_grad_(True)
                leaves.append(tensor)
                return tensor

            args = tuple(tree_map(track, a) if i in nums else a for i, a in enumerate(args))
            token = _differentiating.set(True)
            try:
                with torch.enable_grad():
                    value = torch.as_tensor(fn(*args, **kwargs))
                    check_scalar_output(value.shape)
                    grads = (torch.autograd.grad(value, leaves, create_graph=nested,
                                                 materialize_grads=True)
                             if value.requires_grad else
                             tuple(torch.zeros_like(leaf) for leaf in leaves))
            finally:
                _differentiating.reset(token)
            value = value.reshape(())
            if not nested:
                value = value.detach()
            flat = iter(grads)
            structured = tuple(tree_map(lambda _: next(flat), args[n]) for n in nums)
            return value, structured[0] if isinstance(argnums, int) else structured

        return value_and_gradient

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(fn) if self._compile else fn

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)


def _compile_requested() -> bool:
    """Read GRADBRIDGE_TORCH_COMPILE: '1'/'true' compiles, '0'/'false'/unset stays eager."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value not in ("", "0", "false", "1", "true"):
        raise invalid(COMPILE_ENV, value,
                      "'1' or 'true' to compile, '0', 'false' or unset to stay eager")
    return value in ("1", "true")


def _as_shape(shape: int | Shape) -> Shape:
    """torch wants a tuple where the Array API also accepts a bare int."""
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _dims(x: torch.Tensor, axis: Axis) -> int | tuple[int, ...]:
    """The Array API's axis=None (all axes) as a dim torch's amax/amin/logsumexp accept."""
    return tuple(range(x.ndim)) if axis is None else axis
