"""Differentiation rules of linear algebra: products, inverses, determinants, decompositions.

Functions take the Array API's signatures (``be.linalg`` reaches them with traced values);
NumPy's own functions of the same name reach them too, where their signatures agree. VJPs are
written in differentiable NumPy calls, so they nest. Decompositions (``eigh``, ``svd``)
assume well-separated spectra: their gradients divide by differences of eigenvalues.
``eigh``'s gradient is symmetric (the input is taken as symmetric, as NumPy reads only one of
its triangles).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradbridge.backends.numpy.autodiff import composite, constant, detached, ndim_of, primitive
from gradbridge.core.backend import NotDifferentiable


def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _eye_like(x: Any) -> Any:
    return np.eye(x.shape[-1], dtype=x.dtype)


@primitive("matmul", np.matmul)
def matmul(x1: Any, x2: Any) -> Any:
    """``x1 @ x2`` for 1-D, 2-D and batched operands; batch broadcasting is summed back."""
    a, b = x1, x2

    def as_matrices(g: Any) -> tuple[Any, Any, Any]:
        """View 1-D operands as matmul does (a row (1, n), a column (n, 1)), and g to match."""
        a2, b2 = a, b
        if b.ndim == 1:
            b2, g = b[:, None], g[..., None]
        if a.ndim == 1:
            a2, g = a[None, :], np.expand_dims(g, -2)
        return a2, b2, g

    def grad_a(g: Any) -> Any:
        _, b2, g2 = as_matrices(g)
        ga = np.matmul(g2, _mT(b2))
        return ga[..., 0, :] if a.ndim == 1 else ga

    def grad_b(g: Any) -> Any:
        a2, _, g2 = as_matrices(g)
        gb = np.matmul(_mT(a2), g2)
        return gb[..., 0] if b.ndim == 1 else gb

    return np.matmul(a, b), (grad_a, grad_b)


@composite("tensordot", np.tensordot, np.linalg.tensordot)
def tensordot(x1: Any, x2: Any, axes: Any = 2) -> Any:
    """Sum over paired axes, as one matrix product of the rearranged operands."""
    if isinstance(axes, int):
        first, second = list(range(x1.ndim - axes, x1.ndim)), list(range(axes))
    else:
        first, second = [list(np.atleast_1d(a) % n) for a, n in zip(axes, (x1.ndim, x2.ndim),
                                                                      strict=True)]
    free1 = [i for i in range(x1.ndim) if i not in first]
    free2 = [i for i in range(x2.ndim) if i not in second]
    size = int(np.prod([x1.shape[i] for i in first]))
    a = np.reshape(np.transpose(x1, free1 + first), (-1, size))
    b = np.reshape(np.transpose(x2, second + free2), (size, -1))
    return np.reshape(a @ b, [x1.shape[i] for i in free1] + [x2.shape[i] for i in free2])


@composite("vecdot", np.vecdot, np.linalg.vecdot)
def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    return np.sum(np.conj(x1) * x2, axis=axis)


@composite("outer", np.outer, np.linalg.outer)
def outer(x1: Any, x2: Any, out: Any = None) -> Any:
    return np.reshape(x1, (-1, 1)) * np.reshape(x2, (1, -1))


@primitive("inv", np.linalg.inv)
def inv(x: Any) -> Any:
    out = np.linalg.inv(x)
    return out, (lambda g: -_mT(out) @ g @ _mT(out),)


@composite("solve", np.linalg.solve)
def solve(x1: Any, x2: Any) -> Any:
    """``x1^-1 x2``; a 1-D ``x2`` is one vector (the standard's rule, and NumPy 2's)."""
    if ndim_of(x2) == 1:
        return _solve(x1, x2[:, None])[..., 0]
    return _solve(x1, x2)


@primitive("_solve")
def _solve(a: Any, b: Any) -> Any:
    """Matrices ``a`` and right-hand sides ``b`` (..., n, k)."""
    x = np.linalg.solve(a, b)

    def grad_b(g: Any) -> Any:
        return np.linalg.solve(_mT(a), g)

    return x, (lambda g: -grad_b(g) @ _mT(x), grad_b)


@primitive("det", np.linalg.det)
def det(x: Any) -> Any:
    out = np.linalg.det(x)
    return out, (lambda g: (g * out)[..., None, None] * _mT(np.linalg.inv(x)),)


@primitive("slogdet", np.linalg.slogdet, outputs=True)
def slogdet(x: Any) -> Any:
    """Sign (no gradient) and log |det x| (gradient x^-T)."""
    out = np.linalg.slogdet(x)
    return out, (None, (lambda g: g[..., None, None] * _mT(np.linalg.inv(x)),))


@primitive("_cholesky")
def _cholesky(x: Any) -> Any:
    """The lower factor L of x = L L^T; the VJP is L^-T Phi(L^T g) L^-1, symmetrized, with Phi
    the lower triangle and half the diagonal."""
    lower = np.linalg.cholesky(x)

    def grad(g: Any) -> Any:
        phi = np.tril(_mT(lower) @ g) * (1 - 0.5 * _eye_like(lower))
        inverse = np.linalg.inv(lower)
        s = _mT(inverse) @ phi @ inverse
        return (s + _mT(s)) / 2

    return lower, (grad,)


@composite("cholesky", np.linalg.cholesky)
def cholesky(x: Any, /, *, upper: bool = False) -> Any:
    lower = _cholesky(x)
    return _mT(lower) if upper else lower


@primitive("eigh", np.linalg.eigh, outputs=True)
def eigh(x: Any, UPLO: str = "L") -> Any:
    """Eigenvalues w and eigenvectors V; VJPs V (diag(gw) + F * (V^T gV)) V^T, symmetrized,
    with F_ij = 1 / (w_j - w_i) off the diagonal."""
    out = np.linalg.eigh(x, UPLO)  # type: ignore[call-overload]
    w, v = out

    def symmetric(inside: Any) -> Any:
        full = v @ inside @ _mT(v)
        return (full + _mT(full)) / 2

    def grad_values(g: Any) -> Any:
        return symmetric(g[..., None, :] * _eye_like(v))

    def grad_vectors(g: Any) -> Any:
        gap = w[..., None, :] - w[..., :, None]
        off = 1 - _eye_like(v)
        factor = off / (gap + (1 - off))  # 1 / (w_j - w_i), 0 on the diagonal
        return symmetric(factor * (_mT(v) @ g))

    return out, ((grad_values,), (grad_vectors,))


@composite("eigvalsh", np.linalg.eigvalsh)
def eigvalsh(x: Any, UPLO: str = "L") -> Any:
    return eigh(x, UPLO)[0]


@primitive("qr", np.linalg.qr, outputs=True)
def qr(x: Any, mode: str = "reduced") -> Any:
    """Q and R of x = QR (reduced, m >= n); VJP (gQ + Q copyltu(M)) R^-T with
    M = R gR^T - gQ^T Q, where copyltu copies the lower triangle onto the upper."""
    out = np.linalg.qr(x, mode)  # type: ignore[call-overload]
    if mode != "reduced" or x.shape[-2] < x.shape[-1]:
        refusal = NotDifferentiable("qr is differentiable here with mode='reduced' and at "
                                    "least as many rows as columns")
        return out, tuple((refusal,) for _ in out)
    q, r = out

    def grad(gq: Any, gr: Any) -> Any:
        m = r @ _mT(gr) - _mT(gq) @ q
        copyltu = np.tril(m, -1) + _mT(np.tril(m, -1)) + m * _eye_like(m)
        return _mT(np.linalg.solve(r, _mT(gq + q @ copyltu)))

    return out, ((lambda g: grad(g, np.zeros(r.shape, r.dtype)),),
                 (lambda g: grad(np.zeros(q.shape, q.dtype), g),))


@primitive("svd", outputs=True)
def svd(x: Any, full_matrices: bool = True, hermitian: bool = False) -> Any:
    """U, S, Vh of x = U diag(S) Vh (reduced; distinct nonzero singular values)."""
    if full_matrices and x.shape[-2] != x.shape[-1]:
        out = np.linalg.svd(x, full_matrices, hermitian=hermitian)
        refusal = NotDifferentiable("svd is differentiable here with full_matrices=False (or "
                                    "for square matrices)")
        return out, tuple((refusal,) for _ in out)
    k = min(x.shape[-2:])
    out = np.linalg.svd(x, full_matrices=False, hermitian=hermitian)
    u, s, vh = out
    v = _mT(vh)
    eye = np.eye(k, dtype=s.dtype)

    def factor() -> Any:
        s2 = s * s
        gap = s2[..., None, :] - s2[..., :, None]
        return (1 - eye) / (gap + eye)  # 1 / (s_j^2 - s_i^2), 0 on the diagonal

    def grad_s(g: Any) -> Any:
        return u @ (g[..., None, :] * eye) @ vh

    def grad_u(g: Any) -> Any:
        j = factor() * (_mT(u) @ g)
        inside = (j + _mT(j)) * s[..., None, :]
        rest = (g - u @ (_mT(u) @ g)) / s[..., None, :]  # (I - U U^T) gU S^-1
        return u @ inside @ vh + rest @ vh

    def grad_v(gvh: Any) -> Any:
        g = _mT(gvh)
        kk = factor() * (_mT(v) @ g)
        inside = s[..., :, None] * (kk + _mT(kk))
        rest = (g - v @ (_mT(v) @ g)) / s[..., None, :]  # (I - V V^T) gV S^-1
        return u @ inside @ vh + u @ _mT(rest)

    return out, ((grad_u,), (grad_s,), (grad_v,))


@composite("svdvals", np.linalg.svdvals)
def svdvals(x: Any, /) -> Any:
    return svd(x, full_matrices=False)[1]


@composite("_numpy_svd", np.linalg.svd)
def _numpy_svd(x: Any, full_matrices: bool = True, compute_uv: bool = True,
               hermitian: bool = False) -> Any:
    """NumPy's svd: the decomposition, or the singular values alone."""
    if not compute_uv:
        return svdvals(x)
    return svd(x, full_matrices, hermitian)


@composite("pinv", np.linalg.pinv)
def pinv(x: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """V diag(1/s) U^T over the singular values above ``rtol`` times the largest."""
    cutoff = rtol if rtol is not None else rcond
    if cutoff is None:
        cutoff = max(x.shape[-2:]) * np.finfo(x.dtype).eps
    u, s, vh = svd(x, full_matrices=False)
    plain_s = detached(s)
    keep = plain_s > cutoff * np.max(plain_s, axis=-1, keepdims=True)
    inverse = np.where(keep, 1 / np.where(keep, s, 1), 0)
    return _mT(vh) @ (inverse[..., :, None] * _mT(u))


@composite("matrix_power", np.linalg.matrix_power)
def matrix_power(x: Any, n: int) -> Any:
    """Repeated squaring; a negative power of the inverse."""
    if n < 0:
        x, n = np.linalg.inv(x), -n
    result = None
    while n:
        if n & 1:
            result = x if result is None else result @ x
        n >>= 1
        if n:
            x = x @ x
    if result is None:  # x ** 0: the identity, whatever x is
        return np.broadcast_to(_eye_like(x), x.shape).copy()
    return result


@composite("diagonal", np.diagonal, np.linalg.diagonal)
def diagonal(x: Any, offset: int = 0, axis1: int = -2, axis2: int = -1) -> Any:
    """The ``offset`` diagonal of the matrices over the last two axes."""
    if (axis1 % x.ndim, axis2 % x.ndim) != (x.ndim - 2, x.ndim - 1):
        x = np.moveaxis(x, (axis1, axis2), (-2, -1))
    rows, cols = x.shape[-2:]
    length = max(0, min(rows + min(offset, 0), cols - max(offset, 0)))
    steps = np.arange(length)
    return x[..., steps - min(offset, 0), steps + max(offset, 0)]


@composite("trace", np.trace, np.linalg.trace)
def trace(x: Any, offset: int = 0, axis1: int = -2, axis2: int = -1, dtype: Any = None,
          out: Any = None) -> Any:
    return np.sum(diagonal(x, offset, axis1, axis2), axis=-1)


@composite("cross", np.cross, np.linalg.cross)
def cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """The cross product of 3-vectors along ``axis``."""
    a, b = np.moveaxis(x1, axis, -1), np.moveaxis(x2, axis, -1)
    parts = [a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
             a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
             a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]]
    return np.moveaxis(np.stack(parts, axis=-1), -1, axis)


@composite("vector_norm", np.linalg.vector_norm)
def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:
    """The ``ord``-norm over ``axis`` (all axes: None)."""
    magnitude = np.abs(x)
    if ord == np.inf:
        return np.max(magnitude, axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(magnitude, axis=axis, keepdims=keepdims)
    if ord == 0:
        return np.sum(magnitude != 0, axis=axis, keepdims=keepdims).astype(x.dtype)
    if ord == 2:
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    return np.sum(magnitude**ord, axis=axis, keepdims=keepdims) ** (1 / ord)


@composite("matrix_norm", np.linalg.matrix_norm)
def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:
    """Frobenius, nuclear, spectral (2, -2) and induced (1, -1, inf, -inf) norms."""
    if ord == "fro":
        out = np.sqrt(np.sum(x * x, axis=(-2, -1)))
    elif ord in ("nuc", 2, -2):
        s = svdvals(x)
        out = np.sum(s, axis=-1) if ord == "nuc" else (np.max if ord == 2 else np.min)(s, -1)
    elif ord in (1, -1, np.inf, -np.inf):
        sums = np.sum(np.abs(x), axis=-2 if ord in (1, -1) else -1)
        out = (np.max if ord > 0 else np.min)(sums, axis=-1)
    else:
        raise NotDifferentiable(f"matrix_norm with ord={ord!r} is not differentiable here")
    return np.expand_dims(out, (-2, -1)) if keepdims else out


@composite("norm", np.linalg.norm)
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """NumPy's norm: a matrix norm over two axes (or of a 2-D array), else a vector norm."""
    if (axis is None and x.ndim == 2) or (isinstance(axis, tuple) and len(axis) == 2):
        matrix = x if axis is None else np.moveaxis(x, axis, (-2, -1))
        out = matrix_norm(matrix, ord="fro" if ord is None else ord)
        if keepdims:
            out = np.reshape(out, [1 if axis is None or i in [a % x.ndim for a in axis] else n
                                   for i, n in enumerate(x.shape)])
        return out
    return vector_norm(x, axis=axis, keepdims=keepdims, ord=2 if ord is None else ord)


constant("matrix_rank", np.linalg.matrix_rank)
