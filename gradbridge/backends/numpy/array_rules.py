"""Differentiation rules of reductions, shape manipulation, indexing and sorting.

As in ``elementwise_rules.py``: primitives with VJPs in NumPy calls (so they nest) and
composites of them. Fast paths (``expand``'s zero-stride view, ``logsumexp``'s in-place
softmax, ``mean_squared_error``'s reused residual) run only on plain NumPy values. The
``max``/``min`` reductions split the gradient equally among tied extremes.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import numpy as np

from gradbridge.backends.numpy.autodiff import (
    DISPATCH,
    PRIMITIVES,
    VJP,
    Tracer,
    composite,
    detached,
    identity,
    innermost,
    ndim_of,
    plain,
    primitive,
    shape_of,
)
from gradbridge.backends.numpy.elementwise_rules import inner
from gradbridge.core.backend import Axis, NotDifferentiable

# ----------------------------------------------------------------------------- reductions


def _reduced(shape: tuple[int, ...], axis: Axis) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes a reduction removes (normalized) and the shape it leaves with keepdims."""
    if axis is None:
        return tuple(range(len(shape))), (1,) * len(shape)
    axes = tuple(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis))
    return axes, tuple(1 if i in axes else n for i, n in enumerate(shape))


def expand(g: Any, kept: tuple[int, ...], shape: tuple[int, ...]) -> Any:
    """``g`` (a reduction's gradient, shaped ``kept``) repeated along the reduced axes to ``shape``.

    Fast path for a plain array: a read-only view with zero strides, as ``np.broadcast_to``
    returns, but built directly (half the cost of a reduction's VJP in small, fast steps).
    """
    if not isinstance(g, np.ndarray | np.generic):  # traced (grad or jit): the same view
        return np.broadcast_to(np.reshape(g, kept), shape)
    g = np.ascontiguousarray(g).reshape(kept)
    strides = tuple(0 if k != n else s for k, n, s in zip(kept, shape, g.strides, strict=True))
    view = np.ndarray(shape, g.dtype, g, strides=strides)
    view.flags.writeable = False
    return view


def _no_extras(name: str, **extras: Any) -> None:
    """Refuse NumPy keywords a reduction's rule does not differentiate (out=, where=...)."""
    given = [k for k, v in extras.items() if v is not None and v is not np._NoValue]
    if given:
        raise NotDifferentiable(f"numpy.{name} with {', '.join(given)} is not differentiable "
                                "here; call it without them")


@primitive("sum", np.sum)
def sum(x: Any, axis: Axis = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        initial: Any = None, where: Any = None) -> Any:
    """Sum over ``axis``; every summed element gets the gradient of its sum."""
    _no_extras("sum", out=out, initial=initial, where=where)
    shape, (_, kept) = x.shape, _reduced(x.shape, axis)
    if type(x) is np.ndarray and dtype is None:
        total = np.add.reduce(x, axis, keepdims=keepdims)  # type: ignore[call-overload]
    else:
        total = np.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)
    return total, (lambda g: expand(g, kept, shape),)


@primitive("mean", np.mean)
def mean(x: Any, axis: Axis = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False, where: Any = None) -> Any:
    """Mean over ``axis``: the sum's gradient divided by the number of elements averaged."""
    _no_extras("mean", dtype=dtype, out=out, where=where)
    shape, (axes, kept) = x.shape, _reduced(x.shape, axis)
    count = math.prod(shape[i] for i in axes)
    if type(x) is np.ndarray:
        total = np.add.reduce(x, axis, keepdims=keepdims)  # type: ignore[call-overload]
    else:
        total = np.sum(x, axis=axis, keepdims=keepdims)
    return total / count, (lambda g: expand(g / count, kept, shape),)


def _extremum(name: str, numpy_reduce: Any) -> Callable[..., Any]:
    """max or min over ``axis``; the gradient is shared equally among tied extremes."""

    def extremum(x: Any, axis: Axis = None, out: Any = None, keepdims: bool = False,
                 initial: Any = None, where: Any = None) -> Any:
        _no_extras(name, out=out, initial=initial, where=where)
        axes, kept = _reduced(x.shape, axis)
        out = numpy_reduce(x, axis=axis, keepdims=keepdims)

        def grad(g: Any) -> Any:
            hit = x == np.reshape(out, kept)
            share = np.reshape(g, kept) / np.sum(hit, axis=axes, keepdims=True, dtype=g.dtype)
            return np.where(hit, share, 0)

        return out, (grad,)

    extremum.__name__ = name
    return extremum


max = primitive("max", np.max, np.amax)(_extremum("max", np.max))
min = primitive("min", np.min, np.amin)(_extremum("min", np.min))


@primitive("prod", np.prod)
def prod(x: Any, axis: Axis = None, dtype: Any = None, out: Any = None,
         keepdims: bool = False, initial: Any = None, where: Any = None) -> Any:
    """Product over ``axis``; each element's gradient is the product of the others (from
    exclusive products on both sides, so zeros are fine)."""
    _no_extras("prod", dtype=dtype, out=out, initial=initial, where=where)
    axes, kept = _reduced(x.shape, axis)

    def grad(g: Any) -> Any:
        rest = [i for i in range(x.ndim) if i not in axes]
        moved = np.transpose(x, rest + list(axes))
        flat = np.reshape(moved, (*moved.shape[:len(rest)], -1))
        ones = np.ones((*flat.shape[:-1], 1), dtype=x.dtype)
        before = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        after = np.flip(np.cumprod(np.flip(np.concatenate([flat[..., 1:], ones], axis=-1),
                                           axis=-1), axis=-1), axis=-1)
        others = np.transpose(np.reshape(before * after, moved.shape),
                              np.argsort(rest + list(axes)))
        return np.reshape(g, kept) * others

    return np.prod(x, axis=axis, keepdims=keepdims), (grad,)


@composite("var", np.var)
def var(x: Any, axis: Axis = None, dtype: Any = None, out: Any = None, ddof: float = 0,
        keepdims: bool = False, *, where: Any = None, mean: Any = None,
        correction: Any = None) -> Any:
    """The mean squared deviation with ``ddof`` (the standard's ``correction``) subtracted
    from the count."""
    _no_extras("var", dtype=dtype, out=out, where=where, mean=mean)
    axes, _ = _reduced(x.shape, axis)
    count = math.prod(x.shape[i] for i in axes) - (ddof if correction is None else correction)
    centered = x - np.mean(x, axis=axis, keepdims=True)
    return np.sum(centered * centered, axis=axis, keepdims=keepdims) / count


@composite("std", np.std)
def std(x: Any, axis: Axis = None, dtype: Any = None, out: Any = None, ddof: float = 0,
        keepdims: bool = False, *, where: Any = None, mean: Any = None,
        correction: Any = None) -> Any:
    return np.sqrt(var(x, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                       correction=correction))


@primitive("cumulative_sum", np.cumsum)
def cumsum(x: Any, axis: int | None = None, dtype: Any = None, out: Any = None) -> Any:
    """Running sums along ``axis`` (None: of the flattened array); the gradient is the reversed
    running sum of ``g``."""
    _no_extras("cumsum", dtype=dtype, out=out)
    shape, along = x.shape, (0 if axis is None else axis)

    def grad(g: Any) -> Any:
        return np.reshape(np.flip(np.cumsum(np.flip(g, along), along), along), shape)

    return np.cumsum(x, axis), (grad,)


@composite("cumulative_prod", np.cumprod)
def cumprod(x: Any, axis: int | None = None, dtype: Any = None, out: Any = None) -> Any:
    """Running products along ``axis``, as products of the running ones: exact where x has
    zeros (a division by x would not be)."""
    _no_extras("cumprod", dtype=dtype, out=out)
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    pieces = np.unstack(x, axis=axis)
    return np.stack(list(accumulate(pieces, np.multiply)), axis=axis)


def _cumulative(running: Any) -> Callable[..., Any]:
    """The standard's cumulative_sum / cumulative_prod (``include_initial``) on NumPy's."""
    start = 0 if running is np.cumsum else 1

    def cumulative(x: Any, /, *, axis: int | None = None, dtype: Any = None,
                   include_initial: bool = False) -> Any:
        if axis is None:
            x, axis = np.reshape(x, -1), 0
        out = running(x, axis=axis, dtype=dtype)
        if not include_initial:
            return out
        first = list(out.shape)
        first[axis] = 1
        return np.concatenate([np.full(first, start, dtype=out.dtype), out], axis=axis)

    return cumulative


DISPATCH[np.cumulative_sum] = _cumulative(np.cumsum)
DISPATCH[np.cumulative_prod] = _cumulative(np.cumprod)


@primitive("logsumexp")
def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) shifted by the maximum so it cannot overflow; its VJP is softmax * g."""
    axes, kept = _reduced(x.shape, axis)
    shift = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0)  # rows that are all -inf (or hold +inf)
    if type(shift) is Tracer:  # an outer grad records: no gradient flows through the shift
        shift = detached(shift)
    total_exp = np.sum(np.exp(x - shift), axis=axis, keepdims=True)
    total = np.log(total_exp) + shift

    def grad(g: Any) -> Any:
        if plain(g, x):
            return _softmax_times_fused(g, x, shift, total_exp, kept)
        return np.exp(x - total) * np.reshape(g, kept)

    out = total if keepdims else np.reshape(total, [n for i, n in enumerate(x.shape)
                                                    if i not in axes])
    return out, (grad,)


def _softmax_times_fused(g: Any, x: Any, shift: Any, total_exp: Any,
                         kept: tuple[int, ...]) -> Any:
    """``exp(x - shift) / total_exp * g`` with one array-sized temporary, written in place."""
    softmax = np.subtract(x, shift)
    np.exp(softmax, out=softmax)
    softmax *= np.reshape(g, kept) / total_exp
    return softmax


@composite("mean_squared_error")
def mean_squared_error(prediction: Any, target: Any) -> Any:
    """The mean over all elements of ``(prediction - target) ** 2``, as one recorded operation
    (whether the target is traced too decides whether its residual may be reused)."""
    tape = innermost((prediction, target))
    shared = tape is not None and type(target) is Tracer and target.tape is tape
    return _squared_error(prediction, target, shared)


@primitive("_squared_error")
def _squared_error(prediction: Any, target: Any, shared: bool) -> Any:
    """The textbook VJP is ``2 g r / n`` for the residual ``r``; on plain arrays the fast path
    computes the loss as ``r . r / n`` and scales that same residual in place (only this
    operation holds it, unless the target's VJP needs it too) instead of building the
    square's and the mean's temporaries."""
    residual = np.subtract(prediction, target)
    count = residual.size
    fast = plain(residual)
    loss = inner(residual, residual) / count if fast else np.sum(residual * residual) / count

    def grad_prediction(g: Any) -> Any:
        if fast and plain(g) and not shared:
            return _mse_grad_fused(g, residual, count)
        return residual * (2 * g / count)

    return loss, (grad_prediction, lambda g: residual * (-2 * g / count))


def _mse_grad_fused(g: Any, residual: Any, count: int) -> Any:
    """``residual * (2 g / count)``, written into the residual when it is an array."""
    factor = 2 * g / count
    if not residual.ndim:
        return residual * factor
    return np.multiply(residual, factor, out=residual)


# ------------------------------------------------------------------------------- shape


@primitive("reshape", np.reshape)
def reshape(x: Any, shape: Any = None, order: str = "C", *, newshape: Any = None,
            copy: bool | None = None) -> Any:
    old = x.shape
    return np.reshape(x, shape if newshape is None else newshape), (
        lambda g: np.reshape(g, old),)


@primitive("expand_dims", np.expand_dims)
def expand_dims(x: Any, axis: Any) -> Any:
    old = x.shape
    return np.expand_dims(x, axis), (lambda g: np.reshape(g, old),)


@primitive("squeeze", np.squeeze)
def squeeze(x: Any, axis: Any = None) -> Any:
    old = x.shape
    return np.squeeze(x, axis), (lambda g: np.reshape(g, old),)


@primitive("permute_dims", np.transpose, np.permute_dims)
def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    inverse = None if axes is None else tuple(int(i) for i in
                                              np.argsort([ax % x.ndim for ax in axes]))
    return np.transpose(x, axes), (lambda g: np.transpose(g, inverse),)


@primitive("swapaxes", np.swapaxes)
def swapaxes(x: Any, axis1: int, axis2: int) -> Any:
    return np.swapaxes(x, axis1, axis2), (lambda g: np.swapaxes(g, axis1, axis2),)


@primitive("matrix_transpose", np.matrix_transpose, np.linalg.matrix_transpose)
def matrix_transpose(x: Any) -> Any:
    return np.swapaxes(x, -1, -2), (lambda g: np.swapaxes(g, -1, -2),)


@primitive("moveaxis", np.moveaxis)
def moveaxis(x: Any, source: Any, destination: Any) -> Any:
    return np.moveaxis(x, source, destination), (
        lambda g: np.moveaxis(g, destination, source),)


@primitive("flip", np.flip)
def flip(x: Any, axis: Any = None) -> Any:
    return np.flip(x, axis), (lambda g: np.flip(g, axis),)


@primitive("roll", np.roll)
def roll(x: Any, shift: Any, axis: Any = None) -> Any:
    back = tuple(-s for s in shift) if isinstance(shift, tuple | list) else -shift
    return np.roll(x, shift, axis), (lambda g: np.roll(g, back, axis),)


@primitive("broadcast_to", np.broadcast_to)
def broadcast_to(x: Any, shape: Any, subok: bool = False) -> Any:
    return np.broadcast_to(x, shape), (identity,)  # the engine sums the stretched axes back


@composite("broadcast_arrays", np.broadcast_arrays)
def broadcast_arrays(*arrays: Any, subok: bool = False) -> Any:
    shape = np.broadcast_shapes(*(shape_of(a) for a in arrays))
    return tuple(np.broadcast_to(a, shape) for a in arrays)


@composite("meshgrid", np.meshgrid)
def meshgrid(*arrays: Any, indexing: str = "xy", **kwargs: Any) -> tuple[Any, ...]:
    """Each 1-D input spread along its own axis of the grid (the first two swapped for "xy")."""
    sizes = [shape_of(a)[0] for a in arrays]
    axes = list(range(len(arrays)))
    if indexing == "xy" and len(arrays) > 1:
        axes[0], axes[1] = 1, 0
    shape = [sizes[axes.index(i)] for i in range(len(arrays))]
    return tuple(np.broadcast_to(np.reshape(a, [-1 if i == axis else 1
                                                for i in range(len(arrays))]), shape)
                 for a, axis in zip(arrays, axes, strict=True))


@primitive("concat", np.concatenate)
def concat(arrays: Sequence[Any], axis: int | None = 0, out: Any = None, **kwargs: Any) -> Any:
    """Join along ``axis`` (``None``: flattened); each input gets its slice of the gradient."""
    _no_extras("concatenate", out=out)
    if axis is None:
        shapes = [shape_of(a) for a in arrays]
        out = np.concatenate([np.reshape(a, -1) for a in arrays])
        stops = list(accumulate(math.prod(s) for s in shapes))
        return out, ([_piece(0, stop - math.prod(s), stop, s)
                      for s, stop in zip(shapes, stops, strict=True)],)
    out = np.concatenate(arrays, axis=axis)
    ax = axis % out.ndim
    sizes = [shape_of(a)[ax] for a in arrays]
    stops = list(accumulate(sizes))
    return out, ([_piece(ax, stop - n, stop) for n, stop in zip(sizes, stops, strict=True)],)


def _piece(axis: int, start: int, stop: int, shape: Any = None) -> VJP:
    """The VJP of one input of a concatenation: its slice of ``g`` (reshaped when flattened)."""
    index = (slice(None),) * axis + (slice(start, stop),)
    if shape is None:
        return lambda g: g[index]
    return lambda g: np.reshape(g[index], shape)


@composite("stack", np.stack)
def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, **kwargs: Any) -> Any:
    _no_extras("stack", out=out)
    ndim = ndim_of(arrays[0]) + 1
    return np.concatenate([np.expand_dims(a, axis % ndim) for a in arrays], axis=axis)


@composite("unstack", np.unstack)
def unstack(x: Any, /, *, axis: int = 0) -> tuple[Any, ...]:
    lead = (slice(None),) * (axis % x.ndim)
    return tuple(x[(*lead, i)] for i in range(x.shape[axis]))


@composite("tile", np.tile)
def tile(x: Any, reps: Any) -> Any:
    """Each axis of ``x`` repeated whole ``reps`` times: a broadcast and a reshape."""
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    ndim = builtins.max(x.ndim, len(reps))
    shape = (1,) * (ndim - x.ndim) + x.shape
    reps = (1,) * (ndim - len(reps)) + reps
    spread = np.reshape(x, [n for d in shape for n in (1, d)])
    tiled = np.broadcast_to(spread, [n for pair in zip(reps, shape, strict=True) for n in pair])
    return np.reshape(tiled, [r * d for r, d in zip(reps, shape, strict=True)])


@composite("repeat", np.repeat)
def repeat(x: Any, repeats: Any, axis: int | None = None) -> Any:
    """Each element repeated along ``axis`` (None: flattened first); gradients add back up."""
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    axis %= x.ndim
    if isinstance(repeats, int | np.integer):
        spread = np.expand_dims(x, axis + 1)
        shape = (*x.shape[:axis + 1], int(repeats), *x.shape[axis + 1:])
        merged = (*x.shape[:axis], x.shape[axis] * int(repeats), *x.shape[axis + 1:])
        return np.reshape(np.broadcast_to(spread, shape), merged)
    indices = np.repeat(np.arange(x.shape[axis]), detached(repeats))
    return x[(slice(None),) * axis + (indices,)]


@composite("diff", np.diff)
def diff(x: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue,
         append: Any = np._NoValue) -> Any:
    """Differences of neighbours along ``axis``, ``n`` times; prepended and appended values
    join the array first."""
    parts = [p for p in (prepend, x, append) if p is not np._NoValue]
    if len(parts) > 1:
        shape = list(x.shape)
        shape[axis] = 1
        parts = [p if p is x or ndim_of(p) else np.broadcast_to(p, shape) for p in parts]
        x = np.concatenate(parts, axis=axis)
    lead = (slice(None),) * (axis % x.ndim)
    for _ in range(n):
        x = x[(*lead, slice(1, None))] - x[(*lead, slice(None, -1))]
    return x


@primitive("tril", np.tril)
def tril(x: Any, k: int = 0) -> Any:
    return np.tril(x, k), (lambda g: np.tril(g, k),)


@primitive("triu", np.triu)
def triu(x: Any, k: int = 0) -> Any:
    return np.triu(x, k), (lambda g: np.triu(g, k),)


# ---------------------------------------------------------------------------- indexing


def _plain_key(key: Any) -> Any:
    """An index with no traced part (integer arrays and masks carry no gradient)."""
    if isinstance(key, tuple):
        return tuple(detached(k) for k in key)
    return detached(key)


def _is_basic_index(key: Any) -> bool:
    """Integers, slices, None and Ellipsis select each element at most once."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, int | np.integer | slice | type(None) | type(Ellipsis))
               and not isinstance(k, bool) for k in parts)


@primitive("__getitem__")
def getitem(x: Any, key: Any) -> Any:
    """``x[key]`` (integers, slices, integer arrays, masks); the VJP adds the gradient back
    into zeros shaped like ``x``."""
    key = _plain_key(key)
    shape = x.shape
    return x[key], (lambda g: scatter_add(g, key, shape),)


@primitive("scatter_add")
def scatter_add(g: Any, key: Any, shape: tuple[int, ...]) -> Any:
    """Zeros of ``shape`` with ``g`` added at ``key`` (repeated indices add up): the linear map
    whose VJP is ``x[key]``, so that indexing nests."""
    if type(g) is Tracer:  # an outer grad's value: its own scatter_add records it
        out = PRIMITIVES["scatter_add"](g, key, shape)
    else:
        out = np.zeros_like(g, shape=shape)
        if _is_basic_index(key):
            out[key] = g
        else:
            np.add.at(out, key, g)
    return out, (lambda gg: gg[key],)


@composite("take", np.take)
def take(x: Any, indices: Any, axis: int | None = None, out: Any = None,
         mode: str = "raise") -> Any:
    _no_extras("take", out=out)
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    return x[(slice(None),) * (axis % x.ndim) + (detached(indices),)]


@composite("take_along_axis", np.take_along_axis)
def take_along_axis(x: Any, indices: Any, axis: int | None = -1) -> Any:
    """``x`` picked at ``indices`` along ``axis``, the other axes matched by broadcasting."""
    indices = detached(indices)
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    axis %= x.ndim
    key = tuple(indices if i == axis else
                np.arange(n).reshape([-1 if j == i else 1 for j in range(x.ndim)])
                for i, n in enumerate(x.shape))
    return x[key]


@primitive("sort", np.sort)
def sort(x: Any, axis: int | None = -1, kind: Any = None, order: Any = None, *,
         stable: Any = None) -> Any:
    """The sorted values: the input picked in argsort's (stable) order; the gradient is
    picked back in the inverse order (a gather, no scatter)."""
    shape = x.shape
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    ranks = np.argsort(x, axis=axis, kind="stable")
    inverse = np.argsort(ranks, axis=axis)
    return np.take_along_axis(x, ranks, axis), (
        lambda g: np.reshape(np.take_along_axis(g, inverse, axis), shape),)
