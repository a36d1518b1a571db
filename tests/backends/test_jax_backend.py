"""What only the JAX backend does: float64 precision, direct binding, ties, devices, lax.scan.

The op-by-op comparison with NumPy lives in test_conformance.py; here are the behaviours that
follow from how JAX works. References are NumPy in float64, closed-form derivatives, or the
float64 facts that float32 cannot represent (1 + 1e-10 != 1).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from gradbridge.backends.jax import JaxBackend  # noqa: E402
from gradbridge.core.backend import DeviceNotAvailable, InvalidArgument  # noqa: E402


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


needs_gpu = pytest.mark.skipif(not _has_gpu(), reason="no GPU visible to JAX")


BACKEND = JaxBackend
"""The class under test (tests/conftest.py's be32/be64 fixtures make it)."""


# ------------------------------------------------------------------------- float64
# (the x64 policies themselves, each in a fresh process: tests/backends/test_jax_x64.py)


def test_float64_results_have_float64_precision(be64: JaxBackend) -> None:
    # 1e-10 is below float32's resolution at 1 (~6e-8), so a truncated computation returns 0.
    one, tiny = be64.from_host(1.0), be64.from_host(1e-10)
    assert float(be64.subtract(be64.add(one, tiny), one)) == pytest.approx(1e-10, rel=1e-6)


def test_float64_transforms_compute_in_float64_when_called_later(be64: JaxBackend) -> None:
    """grad/jit build their functions now but trace them at the call: the call is scoped too."""
    x = be64.from_host([1.0 + 1e-10, 2.0])
    gradient = be64.grad(lambda v: be64.sum(v * v * v))
    compiled = be64.jit(lambda v: v * 3.0 - 3.0)
    g, y = gradient(x), compiled(x)
    assert g.dtype == jnp.float64 and y.dtype == jnp.float64
    # d/dv sum(v^3) = 3 v^2: closed form in float64, equal to rounding (1e-14 relative).
    np.testing.assert_allclose(np.asarray(g), 3 * np.array([1.0 + 1e-10, 2.0]) ** 2, rtol=1e-14)
    assert float(y[0]) == pytest.approx(3e-10, rel=1e-5)  # lost entirely in float32


def test_float64_scan_runs_in_float64(be64: JaxBackend) -> None:
    carry, ys = be64.scan(lambda c: (c + 1e-10, c), be64.from_host(1.0), 4)
    assert carry.dtype == jnp.float64 and ys.dtype == jnp.float64
    assert float(carry) - 1.0 == pytest.approx(4e-10, rel=1e-5)


def test_ops_are_the_jax_functions_behind_one_check(be32: JaxBackend, be64: JaxBackend) -> None:
    """Only the foreign-array check stands between the user and jnp (nothing for float64)."""
    for be in (be32, be64):
        for op in ("add", "multiply", "where"):
            assert inspect.unwrap(getattr(be, op)) is getattr(jnp, op)
            assert getattr(be, op).__wrapped__ is getattr(jnp, op)
    assert inspect.unwrap(be32.jit(_square)) is _square  # jax.jit's wrapper, no other


def _square(v: Any) -> Any:
    return v * v


# -------------------------------------------------------------------------- subgradients


@pytest.mark.parametrize(("op", "expected_first"), [("maximum", [1.0, 0.0, 1.0]),
                                                     ("minimum", [1.0, 1.0, 0.0])])
def test_ties_send_the_whole_gradient_to_the_first_argument(be32: JaxBackend, op: str,
                                                            expected_first: list[float]) -> None:
    # a = [1, 2, 3] against b = [1, 3, 2]: a tie, b larger, a larger. Closed form: the
    # derivative of the selected element is 1, of the other 0, and a tie selects a.
    a, b = be32.from_host([1.0, 2.0, 3.0]), be32.from_host([1.0, 3.0, 2.0])
    ga, gb_ = be32.grad(lambda u, v: be32.sum(getattr(be32, op)(u, v)), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(np.asarray(ga), expected_first)
    np.testing.assert_array_equal(np.asarray(gb_), 1.0 - np.asarray(expected_first))
    # jnp's own function would split the tie 0.5/0.5: the reason for the rule above.
    assert float(jax.grad(lambda u: jnp.sum(getattr(jnp, op)(u, b)))(a)[0]) == 0.5


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_propagate_nan_like_numpy(be32: JaxBackend, op: str) -> None:
    a = np.array([np.nan, 1.0, np.nan, 2.0])
    b = np.array([1.0, np.nan, np.nan, 1.0])
    got = be32.to_numpy(getattr(be32, op)(be32.from_host(a), be32.from_host(b)))
    np.testing.assert_array_equal(got, getattr(np, op)(a, b).astype(np.float32))


def test_clip_gradient_is_one_inside_and_at_both_bounds(be32: JaxBackend) -> None:
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    g = be32.grad(lambda v: be32.sum(be32.clip(v, 0.0, 1.0)))(be32.from_host(x))
    np.testing.assert_array_equal(np.asarray(g), ((x >= 0.0) & (x <= 1.0)).astype(np.float32))
    one_sided = be32.grad(lambda v: be32.sum(be32.clip(v, max=1.0)))(be32.from_host(x))
    np.testing.assert_array_equal(np.asarray(one_sided), (x <= 1.0).astype(np.float32))


def test_clip_bounds_by_keyword_match_numpy_and_refuse_a_foreign_array(be32: JaxBackend) -> None:
    """The compiled clip takes None, scalar and array bounds as np.clip does (exact: a clip
    selects values, computing none) and checks keyword bounds as it checks ``x``."""
    torch = pytest.importorskip("torch")
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
    low = np.array([0.0, 0.5, 0.0, 0.0, 0.0], np.float32)
    v = be32.from_host(x)
    np.testing.assert_array_equal(np.asarray(be32.clip(v)), x)
    np.testing.assert_array_equal(np.asarray(be32.clip(v, min=be32.from_host(low), max=1.0)),
                                  np.clip(x, low, 1.0))
    with pytest.raises(InvalidArgument, match="clip of the jax backend was given a torch"):
        be32.clip(v, max=torch.ones(5))


def test_max_reduction_shares_the_gradient_among_ties(be32: JaxBackend) -> None:
    """Documented, not forced: JAX gives each of k tied maxima 1/k."""
    g = be32.grad(lambda v: be32.max(v))(be32.from_host([1.0, 3.0, 3.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(g), [0.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_full_svd_of_a_non_square_matrix_under_a_trace(be64: JaxBackend,
                                                       shape: tuple[int, int]) -> None:
    """Traced (jit, grad), the full SVD is assembled from the reduced one and the full one's
    extra singular vectors: still a full SVD, and differentiable where jnp's has no JVP."""
    x = np.random.default_rng(1).standard_normal(shape)
    u, s, vh = (np.asarray(a) for a in jax.jit(lambda m: be64.linalg.svd(m))(be64.from_host(x)))
    k = min(shape)
    # Orthogonal factors and the reconstruction, float64 LAPACK: ~1e-15.
    np.testing.assert_allclose(u.T @ u, np.eye(shape[0]), atol=1e-12)
    np.testing.assert_allclose(vh @ vh.T, np.eye(shape[1]), atol=1e-12)
    np.testing.assert_allclose((u[:, :k] * s) @ vh[:k], x, atol=1e-12)
    grad = be64.grad(lambda m: be64.sum(be64.linalg.svd(m)[1]))(be64.from_host(x))
    left, _, right = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(np.asarray(grad), left @ right, atol=1e-12)  # d sum(s) = U V^T


def test_abs_is_jnp_abs_outside_its_kink(be32: JaxBackend) -> None:
    """The hand-written abs (slope 0 at 0) keeps jnp.abs's values and dtypes, complex and
    integer inputs included; its slope at 0 is tested on every backend in test_op_gradients."""
    for x in (jnp.asarray([-2.5, -0.0, 0.0, 3.0, jnp.inf, -jnp.inf], dtype=jnp.float32),
              jnp.asarray([-3, 0, 4], dtype=jnp.int32), jnp.asarray([3 - 4j], dtype=jnp.complex64)):
        got, expected = be32.abs(x), jnp.abs(x)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert np.isnan(float(be32.abs(jnp.asarray(jnp.nan, dtype=jnp.float32))))


# ----------------------------------------------------------------------------- devices


def test_available_devices_without_a_gpu_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_devices = jax.devices

    def no_gpu(backend: str | None = None) -> Any:
        if backend == "gpu":  # what JAX does when no GPU platform exists
            raise RuntimeError("Unknown backend: 'gpu' requested")
        return real_devices(backend)

    monkeypatch.setattr(jax, "devices", no_gpu)
    assert JaxBackend.available_devices() == ["cpu"]
    with pytest.raises(DeviceNotAvailable, match="devices that exist: cpu"):
        JaxBackend(device="cuda")


def test_cuda_devices_resolve_to_jax_gpu_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus = ["gpu-device-0", "gpu-device-1"]
    real_devices = jax.devices
    monkeypatch.setattr(jax, "devices",
                        lambda kind=None: fake_gpus if kind == "gpu" else real_devices(kind))
    assert JaxBackend.available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert JaxBackend(device="cuda:1")._device == "gpu-device-1"
    assert JaxBackend(device="gpu")._device == "gpu-device-0"  # 'gpu' and 'cuda' mean cuda:0
    assert JaxBackend(device="auto").device == "cuda:0"
    with pytest.raises(DeviceNotAvailable, match="cuda:0, cuda:1"):
        JaxBackend(device="cuda:2")


@pytest.mark.skipif(_has_gpu(), reason="checks the CPU-only error")
def test_cuda_on_a_cpu_only_machine_names_the_devices_that_exist() -> None:
    with pytest.raises(DeviceNotAvailable, match="devices that exist: cpu"):
        JaxBackend(device="cuda")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_round_trip(dtype: str) -> None:
    be = JaxBackend(device="cuda:0", dtype=dtype)
    host = np.random.default_rng(1).standard_normal((5, 3))
    x = be.from_host(host)
    assert x.devices() == {jax.devices("gpu")[0]}
    y = be.jit(lambda v: be.sum(v * v, axis=0))(x)
    assert y.devices() == {jax.devices("gpu")[0]}
    tol = 1e-10 if dtype == "float64" else 1e-5  # conftest's tolerances: rounding of each dtype
    np.testing.assert_allclose(be.to_numpy(y), (host.astype(dtype) ** 2).sum(axis=0), rtol=tol)


# ------------------------------------------------------------- conversion, autodiff, scan


def test_asarray_commits_to_the_device_and_keeps_integers(be32: JaxBackend) -> None:
    x = be32.from_host(np.array([0.1, 0.2]))  # float64 host data -> float32
    assert x.dtype == jnp.float32 and x.committed
    assert be32.from_host(np.arange(3)).dtype == jnp.int64  # integers keep their dtype (x64 on)
    assert be32.from_host([True, False]).dtype == jnp.bool_
    assert JaxBackend(dtype="float64").asarray(np.arange(3)).dtype == jnp.int64


def test_creation_functions_place_arrays_on_the_backends_device(be32: JaxBackend) -> None:
    made = [be32.zeros(2), be32.ones(2), be32.empty(2), be32.full(2, 1.5), be32.eye(2),
            be32.linspace(0.0, 1.0, 3), be32.arange(3), be32.arange(0, 3, 2),
            be32.asarray([1.0, 2.0])]
    assert all(x.devices() == {be32.native_device} for x in made)


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_matches_numpy_in_the_index_dtype(be32: JaxBackend, side: str) -> None:
    """Exact (indices) against np.searchsorted, with and without a sorter; int64 always."""
    x1 = np.array([3.0, 1.0, 2.0, 2.0], np.float32)
    x2 = np.array([0.5, 2.0, 2.5, 9.0], np.float32)
    sorter = np.argsort(x1, kind="stable")
    plain = be32.searchsorted(be32.from_host(np.sort(x1)), be32.from_host(x2), side=side)
    sorted_by = be32.searchsorted(be32.from_host(x1), be32.from_host(x2), side=side,
                                  sorter=be32.from_host(sorter))
    for got in (plain, sorted_by):
        assert got.dtype == jnp.int64
        np.testing.assert_array_equal(np.asarray(got), np.searchsorted(np.sort(x1), x2, side))


def test_to_numpy_is_a_writable_copy(be32: JaxBackend) -> None:
    x = be32.from_host([1.0, 2.0])
    out = be32.to_numpy(x)
    out[0] = 5.0  # JAX hands out read-only views; ours can be written without touching x
    assert float(x[0]) == 1.0


def test_reductions_take_axis_dtype_and_keepdims_by_keyword(be32: JaxBackend) -> None:
    """The standard's ``sum(x, /, *, axis, dtype, keepdims)``, whatever jnp's order is."""
    x = np.arange(6.0).reshape(2, 3)
    got = be32.sum(be32.from_host(x), axis=1, keepdims=True)
    np.testing.assert_array_equal(be32.to_numpy(got), x.sum(axis=1, keepdims=True))


def test_value_and_grad_inside_jit(be32: JaxBackend) -> None:
    x = np.array([0.5, -1.0, 2.0])
    step = be32.jit(be32.value_and_grad(lambda v, c: c * be32.sum(v * v), argnums=(0, 1)))
    value, (gv, gc) = step(be32.from_host(x), be32.from_host(3.0))
    # closed forms: f = c |v|^2, df/dv = 2 c v, df/dc = |v|^2; float32 rounding, 1e-6
    np.testing.assert_allclose(float(value), 3 * np.sum(x**2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gv), 6 * x, rtol=1e-6)
    np.testing.assert_allclose(float(gc), np.sum(x**2), rtol=1e-6)


def test_value_and_grad_checks_output_and_argnums(be32: JaxBackend) -> None:
    x = be32.from_host([1.0, 2.0])
    with pytest.raises(InvalidArgument, match=r"shape \(2,\)"):
        be32.value_and_grad(lambda v: v * 2.0)(x)
    with pytest.raises(InvalidArgument, match="argnums"):
        be32.value_and_grad(lambda v: be32.sum(v), argnums=1)(x)
    value, _ = be32.value_and_grad(lambda v: be32.reshape(be32.sum(v), (1,)))(x)
    assert value.shape == ()  # a (1,) output is accepted and returned as a 0-D value


def test_scan_converts_a_host_float64_carry(be32: JaxBackend) -> None:
    """lax.scan needs fixed carry dtypes: float64 host input meets float32 step outputs."""
    start = {"x": np.float64(1.0), "n": 0}
    carry, ys = be32.scan(lambda c: ({"x": c["x"] * 0.5, "n": c["n"] + 1}, None), start, 3)
    assert ys is None
    assert carry["x"].dtype == jnp.float32 and float(carry["x"]) == 0.125  # 2^-3, exact
    assert int(carry["n"]) == 3


def test_capabilities(be32: JaxBackend) -> None:
    caps = be32.capabilities
    assert caps.has_jit and caps.supports_float64
    assert caps.version == jax.__version__ and caps.devices[0] == "cpu"
    assert any("x64 mode" in note for note in caps.notes)


def test_synchronize_waits_for_launched_programs(be32: JaxBackend) -> None:
    """A program still running when synchronize() is called (about a second here; dispatch
    returns at once) is finished when it returns: a clock stopped after it reads the work."""
    power = be32.jit(lambda a: be32.linalg.matrix_power(a @ a.T, 12))
    a = be32.ones((1200, 1200)) / 1200.0
    power(a).block_until_ready()  # compiled: what follows times the program, not its tracing
    result = power(a)
    assert not result.is_ready()  # asynchronous dispatch: the test would prove nothing
    be32.synchronize()
    assert result.is_ready()
