"""The JAX backend's memory savings, and that they change no result.

``asarray`` copies a host array once, into a buffer no one else holds (``jax.device_put`` would
alias a suitably aligned caller's array, writeable or not); a traced ``value_and_grad`` over
large data recomputes elementwise intermediates instead of keeping them (``jax.checkpoint``).
Compiled sizes come from XLA's own ``memory_analysis`` of a program lowered from shapes only,
so no large array is ever allocated here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from gradbridge.backends import jax as jax_backend  # noqa: E402
from gradbridge.backends.jax import REMAT_MIN_BYTES, JaxBackend  # noqa: E402
from gradbridge.core import models, optim  # noqa: E402

BACKEND = JaxBackend
"""The class under test (tests/conftest.py's be32/be64 fixtures make it)."""


def _aligned(n: int, dtype: Any, alignment: int = 64) -> np.ndarray:
    """A writeable array whose data start on an ``alignment``-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + n * itemsize].view(dtype)


# ------------------------------------------------------------------------- asarray


@pytest.mark.parametrize("layout", ["aligned", "default", "strided", "fortran"])
def test_asarray_never_aliases_the_callers_array(be32: JaxBackend, layout: str) -> None:
    """Writing to the host array afterwards leaves the backend's array as it was."""
    base = _aligned(4096, np.float32) if layout == "aligned" else np.empty(4096, np.float32)
    base[:] = np.arange(4096)
    host = {"aligned": base, "default": base, "strided": base[::2],
            "fortran": np.asfortranarray(base.reshape(64, 64))}[layout]
    expected = host.copy()
    array = be32.from_host(host)
    host[...] = -1.0
    np.testing.assert_array_equal(be32.to_numpy(array), expected)
    assert array.dtype == jnp.float32 and array.shape == expected.shape


def test_asarray_float64_never_aliases_either(be64: JaxBackend) -> None:
    host = _aligned(1024, np.float64)
    host[:] = 1 + 1e-10  # not representable in float32
    array = be64.from_host(host)
    host[:] = 0.0
    assert array.dtype == jnp.float64
    np.testing.assert_array_equal(be64.to_numpy(array), np.full(1024, 1 + 1e-10))


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 3), (3, 4)])
def test_asarray_matches_jnp_asarray(be32: JaxBackend, shape: tuple[int, ...]) -> None:
    """Same values, dtype, shape, weak type and committed device as jnp.asarray's result."""
    host = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    ours = be32.from_host(host)
    theirs = jnp.asarray(host, dtype=jnp.float32, device=jax.devices("cpu")[0])
    assert (ours.dtype, ours.shape, ours.weak_type) == (theirs.dtype, theirs.shape,
                                                        theirs.weak_type)
    assert ours.committed and ours.devices() == theirs.devices()
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_asarray_other_dtypes_take_jnp_asarray(be32: JaxBackend) -> None:
    """Conversions (float64 -> float32, integers) are left to jnp.asarray, as before."""
    assert be32.from_host(np.array([1.5, 2.5])).dtype == jnp.float32
    assert be32.from_host(np.array([1, 2], dtype=np.int64)).dtype == jnp.int64  # x64 is on
    assert be32.from_host([True, False]).dtype == jnp.bool_


# ------------------------------------------------------------------------- value_and_grad


def _step(be: JaxBackend) -> Any:
    """A full-batch SGD step of the tutorial's line, as fit builds it (mse on linear1d)."""
    sgd = optim.get("sgd")(0.1)

    def objective(p: Any, x: Any, y: Any) -> Any:
        return be.mean_squared_error(models.linear1d(be, p, x), y)

    value_and_grad = be.value_and_grad(objective)

    def step(p: Any, x: Any, y: Any) -> Any:
        value, grads = value_and_grad(p, x, y)
        return sgd.update(be, p, grads, {})[0], value

    return be.jit(step)


def _temp_bytes(be: JaxBackend, n: int) -> int | None:
    """XLA's temporary bytes for one step on n float32 samples (compiled from shapes only)."""
    p = {"w": jax.ShapeDtypeStruct((), jnp.float32), "b": jax.ShapeDtypeStruct((), jnp.float32)}
    data = jax.ShapeDtypeStruct((n,), jnp.float32)
    analysis = _step(be).lower(p, data, data).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def test_large_data_step_keeps_one_array_sized_temporary(be32: JaxBackend) -> None:
    n = REMAT_MIN_BYTES // 8 + 1024  # x and y together just above the threshold
    temp = _temp_bytes(be32, n)
    if temp is None:
        pytest.skip("this XLA reports no memory analysis")
    assert temp < 1.5 * 4 * n  # one float32 array of n (was two: residual and its cotangent)


def test_rematerialized_gradients_equal_the_plain_ones(be32: JaxBackend) -> None:
    """The same step on the same data, with and without recomputation, agrees."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    y = (3 * x + 2 + 0.5 * rng.standard_normal(1000)).astype(np.float32)
    p = {"w": be32.from_host(0.3), "b": be32.from_host(-0.2)}
    step = _step(be32)
    plain = step(p, be32.from_host(x), be32.from_host(y))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jax_backend, "REMAT_MIN_BYTES", 0)
        remat = _step(be32)(p, be32.from_host(x), be32.from_host(y))
    # float32 sums of 1000 terms, fused differently: 1e-6 relative
    np.testing.assert_allclose(float(remat[1]), float(plain[1]), rtol=1e-6)
    for name in ("w", "b"):
        np.testing.assert_allclose(float(remat[0][name]), float(plain[0][name]), rtol=1e-6)


def test_rematerialized_path_keeps_argnums_and_python_arguments(be32: JaxBackend) -> None:
    """Arguments not differentiated may be Python values used in Python control flow."""
    def loss(v: Any, c: Any, squared: bool) -> Any:
        return c * be32.sum(v * v) if squared else c * be32.sum(v)

    x = np.array([0.5, -1.0, 2.0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jax_backend, "REMAT_MIN_BYTES", 0)
        both = be32.jit(lambda v, c: be32.value_and_grad(loss, argnums=(0, 1))(v, c, True))
        value, (gv, gc) = both(be32.from_host(x), be32.from_host(3.0))
        one = be32.jit(lambda v, c: be32.value_and_grad(loss)(v, c, squared=False))
        value1, g1 = one(be32.from_host(x), be32.from_host(3.0))
    np.testing.assert_allclose(float(value), 3 * np.sum(x**2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gv), 6 * x, rtol=1e-6)
    np.testing.assert_allclose(float(gc), np.sum(x**2), rtol=1e-6)
    np.testing.assert_allclose(float(value1), 3 * np.sum(x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g1), np.full(3, 3.0), rtol=1e-6)
