"""Jacobians, Hessians and Hessian-vector products, written once on top of any backend's ``grad``.

Each is built from reverse passes only (``be.grad``, nested for second order), so they work on
every backend whose ``grad`` nests, with that backend's own subgradients at kinks. They cost
one reverse pass per output element (Jacobian) or per input element (Hessian): meant for the
small problems where a full matrix is wanted (Newton steps, checks); ``hvp`` costs two passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradbridge.core.backend import Array, InvalidArgument, returned_a_number, tree_map
from gradbridge.core.tree import flatten

Function = Callable[..., Any]


def jacobian(be: Any, fn: Function) -> Callable[..., Array]:
    """``jac(x, *args)``: the array of d fn(x)[i...] / d x[j...], shaped fn(x).shape + x.shape.

    ``x`` is one real floating array; further arguments are passed to ``fn`` unchanged and
    not differentiated. A scalar ``fn`` gives its gradient.
    """
    def jac(x: Array, *args: Any, **kwargs: Any) -> Array:
        _check_array(be, x, "jacobian")
        out = fn(x, *args, **kwargs)
        if not hasattr(out, "shape"):
            raise returned_a_number(out)
        out_shape = tuple(out.shape)
        size = 1
        for n in out_shape:
            size *= n

        def component(i: int) -> Function:
            return lambda z, *a, **k: be.reshape(fn(z, *a, **k), (-1,))[i]

        rows = [be.grad(component(i))(x, *args, **kwargs) for i in range(size)]
        if not rows:
            return be.zeros((*out_shape, *x.shape), dtype=x.dtype)
        return be.reshape(be.stack(rows), (*out_shape, *x.shape))

    return jac


def hessian(be: Any, fn: Function) -> Callable[..., Array]:
    """``hess(x, *args)``: the matrix of second derivatives of scalar ``fn`` in array ``x``,
    shaped x.shape + x.shape: the Jacobian of ``be.grad(fn)``."""
    return jacobian(be, be.grad(fn))


def hvp(be: Any, fn: Function) -> Callable[..., Any]:
    """``product(x, v, *args)``: the Hessian of scalar ``fn`` at ``x`` times ``v`` without the
    Hessian, as the gradient of <grad fn(x), v>; ``x`` and ``v`` are arrays or trees alike."""
    gradient = be.grad(fn)

    def product(x: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
        def directional(z: Any) -> Array:
            # Paired by position and key (a framework may return a dict's keys reordered).
            terms = flatten(tree_map(lambda g, u: be.sum(g * u), gradient(z, *args, **kwargs),
                                     v))[0]
            total = None
            for term in terms:
                total = term if total is None else total + term
            if total is None:
                raise InvalidArgument("hvp needs at least one array in x; got an empty tree")
            return total

        return be.grad(directional)(x)

    return product


def _check_array(be: Any, x: Any, what: str) -> None:
    """One real floating array, or a clear error saying what was given and what to do."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise InvalidArgument(
            f"{what} differentiates one array argument, but got {type(x).__name__}; pass an "
            "array (be.asarray(...)), or use be.grad for dicts and lists of parameters")
    if not be.isdtype(x.dtype, "real floating"):
        raise InvalidArgument(
            f"{what} needs a real floating array, but got dtype {x.dtype}; convert it with "
            "be.astype(x, be.float64) (or the backend's float dtype) first")

