"""What only the torch backend does: autograd without leftovers, TF32, compile opt-in, devices.

The op-by-op comparison with NumPy lives in test_conformance.py; here are the behaviours that
follow from how PyTorch works. References are NumPy in float64 and closed-form derivatives.
"""

from __future__ import annotations

import gc
import warnings
import weakref
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradbridge.backends.torch import COMPILE_ENV, TorchBackend  # noqa: E402
from gradbridge.core.backend import DeviceNotAvailable, InvalidArgument  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


BACKEND = TorchBackend
"""The class under test (tests/conftest.py's be32/be64 fixtures make it)."""


@pytest.fixture
def tf32_flags() -> Any:
    """Restore the process-wide TF32 flags after a test that may change them."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield saved
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ------------------------------------------------------------------------------ autograd


def test_no_graph_outlives_value_and_grad(be32: TorchBackend) -> None:
    intermediates: list[weakref.ref[Any]] = []

    def loss(w: Any, x: Any) -> Any:
        hidden = be32.tanh(w * x)
        intermediates.append(weakref.ref(hidden))
        return be32.sum(hidden * hidden)

    value, grads = be32.value_and_grad(loss)(be32.from_host([0.5, -1.0]),
                                             be32.from_host([2.0, 3.0]))
    gc.collect()
    assert intermediates[0]() is None  # nothing holds the forward pass's tensors
    assert value.grad_fn is None and not value.requires_grad
    assert grads.grad_fn is None and not grads.requires_grad


def test_user_tensors_are_not_modified(be32: TorchBackend) -> None:
    plain = torch.tensor([1.0, 2.0])
    leaf = torch.tensor([3.0, 4.0], requires_grad=True)
    grads = be32.grad(lambda a, b: be32.sum(a * b), argnums=(0, 1))(plain, leaf)
    assert not plain.requires_grad and plain.grad is None
    assert leaf.grad is None  # autograd.grad returns gradients, it does not accumulate .grad
    # d/da sum(a*b) = b, d/db = a: closed form, exact in float32 for these small integers
    np.testing.assert_array_equal(grads[0].numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(grads[1].numpy(), [1.0, 2.0])


def test_gradient_of_a_gradient(be64: TorchBackend) -> None:
    """Nested calls keep the inner graph so the outer one can differentiate through it."""
    x = np.array([0.5, 2.0, -1.5])
    second = be64.grad(lambda v: be64.sum(be64.grad(lambda u: be64.sum(u * u * u))(v)))
    # d/dx sum(3 x^2) = 6 x: closed form, float64 rounding only (1e-14 relative)
    np.testing.assert_allclose(second(be64.from_host(x)).numpy(), 6 * x, rtol=1e-14)


def test_unused_and_constant_inputs_get_zero_gradients(be32: TorchBackend) -> None:
    x, y = be32.from_host([1.0, 2.0]), be32.from_host(3.0)
    _, (gx, gy) = be32.value_and_grad(lambda a, b: be32.sum(a * a), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx.numpy(), [2.0, 4.0])  # 2 a, exact
    np.testing.assert_array_equal(gy.numpy(), 0.0)  # b is unused: zero, not None
    value, g = be32.value_and_grad(lambda a: be32.from_host(7.0))(x)
    assert float(value) == 7.0
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])


def test_gradients_keep_dict_structure_device_and_dtype(be64: TorchBackend) -> None:
    params = {"w": np.array([1.0, -2.0]), "inner": {"b": 0.5}}
    x = be64.from_host([3.0, 4.0])
    value, grads = be64.value_and_grad(
        lambda p, v: be64.sum(p["w"] * v) + p["inner"]["b"] ** 2)(params, x)
    # f = w.x + b^2: df/dw = x, df/db = 2 b; exact in float64
    assert float(value) == 1.0 * 3.0 - 2.0 * 4.0 + 0.25
    np.testing.assert_array_equal(grads["w"].numpy(), [3.0, 4.0])
    assert float(grads["inner"]["b"]) == 1.0
    assert grads["w"].dtype == torch.float64 and grads["w"].device == torch.device("cpu")


def test_value_and_grad_checks_output_and_argnums(be32: TorchBackend) -> None:
    x = be32.from_host([1.0, 2.0])
    with pytest.raises(InvalidArgument, match=r"shape \(2,\)"):
        be32.value_and_grad(lambda v: v * 2.0)(x)
    with pytest.raises(InvalidArgument, match="argnums"):
        be32.value_and_grad(lambda v: be32.sum(v), argnums=(0, 1))(x)
    value, _ = be32.value_and_grad(lambda v: be32.reshape(be32.sum(v), 1))(x)
    assert value.shape == ()  # a (1,) output is accepted and returned as a 0-D value


def test_value_and_grad_works_under_no_grad(be32: TorchBackend) -> None:
    with torch.no_grad():
        g = be32.grad(lambda v: be32.sum(v * v))(be32.from_host([1.5]))
    assert float(g[0]) == 3.0  # 2 v, exact


def test_argnums_errors_come_at_each_call(be32: TorchBackend) -> None:
    """argnums is worked out once at wrap time, but a bad one still fails at the call, naming
    the number of arguments that call gave, as check_argnums says it."""
    x = be32.from_host([1.0, 2.0])
    for argnums in ((0, 0), (-1,), ()):
        wrapped = be32.value_and_grad(lambda v: be32.sum(v), argnums=argnums)
        with pytest.raises(InvalidArgument, match="distinct indices of the 1 positional"):
            wrapped(x)
    needs_two = be32.grad(lambda a, b: be32.sum(a * b), argnums=1)
    with pytest.raises(InvalidArgument, match="of the 1 positional"):
        needs_two(x)
    np.testing.assert_array_equal(needs_two(x, x).numpy(), [1.0, 2.0])  # d/db sum(a*b) = a


def test_fused_mean_squared_error_matches_the_formula(be64: TorchBackend) -> None:
    """torch's mse_loss stands in for mean((p - t)**2): same value, same gradients in both
    arguments (closed form 2 (p - t) / n), and a second derivative (2 / n) through it."""
    p, t = np.array([0.5, 2.0, -1.0]), np.array([1.0, -1.0, 0.5])
    value, (gp, gt) = be64.value_and_grad(be64.mean_squared_error, argnums=(0, 1))(
        be64.from_host(p), be64.from_host(t))
    # float64 rounding only: 1e-15 relative
    np.testing.assert_allclose(float(value), np.mean((p - t) ** 2), rtol=1e-15)
    np.testing.assert_allclose(gp.numpy(), 2 * (p - t) / 3, rtol=1e-15)
    np.testing.assert_allclose(gt.numpy(), -2 * (p - t) / 3, rtol=1e-15)
    curvature = be64.grad(lambda v: be64.sum(be64.grad(
        lambda u: be64.mean_squared_error(u, be64.from_host(t)))(v)))(be64.from_host(p))
    np.testing.assert_allclose(curvature.numpy(), np.full(3, 2 / 3), rtol=1e-15)
    # Shapes that must broadcast take the generic path (mse_loss would warn): (3, 1) - (3,)
    wide = be64.mean_squared_error(be64.from_host(p[:, None]), be64.from_host(t))
    np.testing.assert_allclose(float(wide), np.mean((p[:, None] - t) ** 2), rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_gradient_path_equals_torchs_public_functions(dtype: str) -> None:
    """mean_squared_error and value_and_grad call past torch's Python wrappers for plain
    tensors (see "Gradient speed"): bit for bit what mse_loss and autograd.grad give, nested
    (create_graph) included. Guards the private torch entry points across torch upgrades."""
    be = TorchBackend(dtype=dtype)
    rng = np.random.default_rng(0)
    x, y = be.from_host(rng.standard_normal(50)), be.from_host(rng.standard_normal(50))
    w0, b0 = be.from_host(0.7), be.from_host(-0.2)

    def objective(p: Any) -> Any:
        return be.mean_squared_error(p["w"] * x + p["b"], y)

    value, grads = be.value_and_grad(objective)({"w": w0, "b": b0})
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    expected = torch.nn.functional.mse_loss(w * x + b, y)
    gw, gb = torch.autograd.grad(expected, (w, b))
    assert value.dtype == expected.dtype and not value.requires_grad
    assert torch.equal(value, expected.detach())
    assert torch.equal(grads["w"], gw) and torch.equal(grads["b"], gb)
    # A gradient of a gradient: the inner call keeps its graph (create_graph=True).
    second = be.grad(lambda v: be.grad(lambda u: objective({"w": u, "b": b0}))(v))(w0)
    u = w0.clone().requires_grad_(True)
    (inner,) = torch.autograd.grad(torch.nn.functional.mse_loss(u * x + b0, y), u,
                                   create_graph=True)
    (outer,) = torch.autograd.grad(inner, u)
    assert torch.equal(second, outer)


def test_torch_function_modes_see_torchs_public_functions(be32: TorchBackend) -> None:
    """Under a torch function mode (or with tensor subclasses) the fast path is not taken:
    the mode sees torch.nn.functional.mse_loss and torch.autograd.grad, as it would in plain
    torch code."""
    seen: list[Any] = []

    class Recorder(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            seen.append(func)
            return func(*args, **(kwargs or {}))

    x = be32.from_host([1.0, 2.0, 4.0])
    with Recorder():
        value, grad = be32.value_and_grad(lambda w: be32.mean_squared_error(w * x, x))(
            be32.from_host(2.0))
    assert torch.nn.functional.mse_loss in seen and torch.autograd.grad in seen
    assert float(value) == 7.0 and float(grad) == 14.0  # mean(x^2) and 2 mean(x^2), exact


# ------------------------------------------------------------------------------ scan


def test_scan_stacks_like_a_list_of_steps(be64: TorchBackend) -> None:
    """Outputs written into one buffer equal the steps' values stacked (exact: copies)."""
    length = 2 * 1024 + 3  # crosses the blocks in which rows are viewed
    final, ys = be64.scan(lambda c: (c + 1.0, {"twice": 2.0 * c, "none": None,
                                                "pair": be64.stack([c, -c])}),
                          be64.from_host(0.0), length)
    counts = np.arange(length, dtype=np.float64)
    assert float(final) == length
    np.testing.assert_array_equal(ys["twice"].numpy(), 2.0 * counts)
    np.testing.assert_array_equal(ys["pair"].numpy(), np.stack([counts, -counts], axis=1))
    assert ys["none"] is None
    _, plain = be64.scan(lambda c: (c + 1.0, c * c), be64.from_host(0.0), length)
    np.testing.assert_array_equal(plain.numpy(), counts**2)
    assert plain.dtype == torch.float64


def test_scan_keeps_no_step_output_alive(be32: TorchBackend) -> None:
    """Each step's own output tensor is released once copied, so a long scan holds one buffer
    rather than one small tensor per step (which fragmented the heap): during any step, at most
    the previous step's output (still bound in the loop) is alive."""
    outputs: list[weakref.ref[Any]] = []
    alive: list[int] = []

    def step(c: Any) -> tuple[Any, Any]:
        alive.append(sum(ref() is not None for ref in outputs))
        y = c * 2.0
        outputs.append(weakref.ref(y))
        return c + 1.0, y

    _, ys = be32.scan(step, be32.from_host(0.0), 50)
    assert max(alive) <= 1
    np.testing.assert_array_equal(ys.numpy(), 2.0 * np.arange(50))


def test_gradients_flow_through_scan_outputs(be64: TorchBackend) -> None:
    """Outputs that carry a graph (some steps only) are assigned so autograd sees them:
    ys = [c_i * a for 2 < c_i < 5 else c_i] for c_i = 1..6, so d sum(ys)/da = 3 + 4."""
    def total(a: Any) -> Any:
        def step(c: Any) -> tuple[Any, Any]:
            c = c + 1.0
            return c, (c * a if 2.0 < float(c) < 5.0 else c.detach())

        _, ys = be64.scan(step, be64.from_host(0.0), 6)
        return be64.sum(ys)

    value, gradient = be64.value_and_grad(total)(be64.from_host(2.0))
    assert float(value) == 1 + 2 + 6 + 8 + 5 + 6 and float(gradient) == 7.0


# ------------------------------------------------------------------------------ jit


def test_jit_is_eager_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    be = TorchBackend()
    assert be.jit(_square) is _square and not be.capabilities.has_jit


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own imports, on first use
@pytest.mark.parametrize("value", ["1", "true", " TRUE "])
def test_compile_opt_in_sets_has_jit(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(COMPILE_ENV, value)
    be = TorchBackend()
    assert be.capabilities.has_jit
    assert be.jit(_square) is not _square  # torch.compile's lazy wrapper; compiles on first call


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_compile_opt_out(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(COMPILE_ENV, value)
    assert not TorchBackend().capabilities.has_jit


def test_compile_env_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMPILE_ENV, "yes please")
    with pytest.raises(InvalidArgument, match=COMPILE_ENV):
        TorchBackend()


def _square(v: Any) -> Any:
    return v * v


# -------------------------------------------------------------------------- subgradients


@pytest.mark.parametrize(("op", "expected_first"), [("maximum", [1.0, 0.0, 1.0]),
                                                     ("minimum", [1.0, 1.0, 0.0])])
def test_ties_send_the_whole_gradient_to_the_first_argument(be32: TorchBackend, op: str,
                                                            expected_first: list[float]) -> None:
    # a = [1, 2, 3] against b = [1, 3, 2]: a tie, b larger, a larger. Closed form: the
    # derivative of the selected element is 1, of the other 0, and a tie selects a.
    a, b = be32.from_host([1.0, 2.0, 3.0]), be32.from_host([1.0, 3.0, 2.0])
    ga, gb_ = be32.grad(lambda u, v: be32.sum(getattr(be32, op)(u, v)), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(ga.numpy(), expected_first)
    np.testing.assert_array_equal(gb_.numpy(), 1.0 - np.asarray(expected_first))
    # torch's own function would split the tie 0.5/0.5: the reason for the rule above.
    u = a.clone().requires_grad_(True)
    getattr(torch, op)(u, b).sum().backward()
    assert float(u.grad[0]) == 0.5


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_propagate_nan_like_numpy(be32: TorchBackend, op: str) -> None:
    a = np.array([np.nan, 1.0, np.nan, 2.0])
    b = np.array([1.0, np.nan, np.nan, 1.0])
    got = be32.to_numpy(getattr(be32, op)(be32.from_host(a), be32.from_host(b)))
    np.testing.assert_array_equal(got, getattr(np, op)(a, b).astype(np.float32))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_without_a_gradient_select_as_the_tie_rule_does(be64: TorchBackend,
                                                                       op: str) -> None:
    """Tensors that need no gradient take torch's own function: the same selection as the
    rule (the first of equal values, so -0.0 against 0.0 keeps the first's sign; NaN wins),
    checked against that rule in NumPy, sign bits included; integers promote as NumPy does."""
    a = np.array([-0.0, 0.0, np.nan, 1.0, 2.0, 3.0])
    b = np.array([0.0, -0.0, 1.0, np.nan, 2.0, -1.0])
    first = (a >= b) if op == "maximum" else (a <= b)
    want = np.where(first | np.isnan(a), a, b)
    got = getattr(be64, op)(be64.from_host(a), be64.from_host(b)).numpy()
    np.testing.assert_array_equal(got, want)  # selections: exact
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    small, unsigned = np.array([1, 5], np.int8), np.array([200, 3], np.uint8)
    mixed = getattr(be64, op)(be64.from_host(small), be64.from_host(unsigned)).numpy()
    assert mixed.dtype == np.int16
    np.testing.assert_array_equal(mixed, getattr(np, op)(small, unsigned))


def test_can_cast_asked_twice_answers_as_numpy(be32: TorchBackend) -> None:
    """The remembered answers are NumPy's rule for the standard's dtypes, from a dtype or a
    tensor, the first time and the second."""
    names = ["bool", "int8", "uint8", "int16", "int32", "int64", "float32", "float64"]
    for _ in range(2):
        for a in names:
            for b in names:
                want = bool(np.can_cast(np.dtype(a), np.dtype(b)))
                assert be32.can_cast(getattr(torch, a), getattr(torch, b)) == want, (a, b)
        assert be32.can_cast(torch.zeros(2, dtype=torch.int8), torch.uint8) is False


def test_clip_gradient_is_one_inside_and_at_both_bounds(be32: TorchBackend) -> None:
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    g = be32.grad(lambda v: be32.sum(be32.clip(v, 0.0, 1.0)))(be32.from_host(x))
    np.testing.assert_array_equal(g.numpy(), ((x >= 0.0) & (x <= 1.0)).astype(np.float32))
    one_sided = be32.grad(lambda v: be32.sum(be32.clip(v, min=0.0)))(be32.from_host(x))
    np.testing.assert_array_equal(one_sided.numpy(), (x >= 0.0).astype(np.float32))
    unbounded = be32.from_host(x)
    assert be32.clip(unbounded) is unbounded  # torch.clamp would refuse two missing bounds


def test_clip_with_a_tensor_bound_beside_a_number(be64: TorchBackend) -> None:
    """torch.clamp refuses (Tensor, Tensor, float); the Array API allows mixing them."""
    x, low = np.array([-2.0, 0.1, 0.7, 3.0]), np.array([-1.0, 0.2, -1.0, 0.0])
    for got, expected in [(be64.clip(be64.from_host(x), be64.from_host(low), 1.0),
                           np.clip(x, low, 1.0)),
                          (be64.clip(be64.from_host(x), -0.5, be64.from_host(low + 1.0)),
                           np.clip(x, -0.5, low + 1.0))]:
        np.testing.assert_array_equal(got.numpy(), expected)  # selections: exact


def test_a_scalar_first_argument_of_maximum_and_minimum(be32: TorchBackend) -> None:
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    for op in ("maximum", "minimum"):
        got = getattr(be32, op)(0.5, be32.from_host(x))
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), getattr(np, op)(np.float32(0.5), x))
    as_float = be32.maximum(0.5, be32.asarray([0, 1, 2]))  # int array, float scalar: float
    np.testing.assert_array_equal(as_float.numpy(), [0.5, 1.0, 2.0])


@pytest.mark.parametrize("correction", [0, 1, 1.5, 2.25])
def test_std_with_a_fractional_correction(be64: TorchBackend, correction: float) -> None:
    """array-api-compat's std refuses a non-integer correction; the standard allows it."""
    x = np.random.default_rng(0).standard_normal((3, 5))
    got = be64.std(be64.from_host(x), axis=1, correction=correction, keepdims=True)
    # NumPy's ddof is the standard's correction; float64 sums of 5 terms: ~1e-15.
    np.testing.assert_allclose(got.numpy(), np.std(x, axis=1, ddof=correction, keepdims=True),
                               rtol=1e-12)


def test_asarray_of_a_tensor_keeps_its_graph_without_a_warning(be64: TorchBackend) -> None:
    x = be64.from_host([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when asarray's requires_grad is implicit
        grad = be64.grad(lambda v: be64.sum(be64.asarray(v, copy=True) * v))(x)
    np.testing.assert_array_equal(grad.numpy(), [2.0, 4.0])  # d/dv sum(v^2) = 2v, exact


def test_max_reduction_shares_the_gradient_among_ties(be32: TorchBackend) -> None:
    """Documented, not forced: torch.amax gives each of k tied maxima 1/k (as JAX does)."""
    g = be32.grad(lambda v: be32.max(v))(be32.from_host([1.0, 3.0, 3.0, 2.0]))
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.5, 0.5, 0.0])


# ------------------------------------------------------------------------------ devices


def test_tf32_flags_untouched_on_cpu(tf32_flags: Any) -> None:
    TorchBackend(dtype="float64")
    TorchBackend(dtype="float32", parity=True)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32_flags


def test_cuda_devices_resolve_to_torch_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert TorchBackend.available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert TorchBackend(device="cuda:1")._device == torch.device("cuda", 1)
    assert TorchBackend(device="gpu")._device == torch.device("cuda", 0)
    assert TorchBackend(device="auto").device == "cuda:0"
    with pytest.raises(DeviceNotAvailable, match="cuda:0, cuda:1"):
        TorchBackend(device="cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_on_a_cpu_only_machine_names_the_devices_that_exist() -> None:
    with pytest.raises(DeviceNotAvailable, match="devices that exist: cpu"):
        TorchBackend(device="cuda")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_round_trip(dtype: str, tf32_flags: Any) -> None:
    be = TorchBackend(device="cuda:0", dtype=dtype, parity=True)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    host = np.random.default_rng(1).standard_normal((5, 3))
    x = be.from_host(host)
    assert x.device == torch.device("cuda", 0)
    value, grads = be.value_and_grad(lambda v: be.sum(v @ be.matrix_transpose(v)))(x)
    be.synchronize()
    ref = host.astype(dtype).astype(np.float64)
    tol = 1e-10 if dtype == "float64" else 1e-5  # conftest's tolerances: rounding of each dtype
    # f = sum(V V^T) = |column sums|^2, df/dV = 2 * (row of column sums): closed form
    np.testing.assert_allclose(float(value), np.sum(ref @ ref.T), rtol=tol)
    np.testing.assert_allclose(be.to_numpy(grads), 2 * np.tile(ref.sum(axis=0), (5, 1)),
                               rtol=tol)
    assert grads.device == torch.device("cuda", 0)


def test_synchronize_is_a_no_op_on_cpu(be32: TorchBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(device: Any = None) -> None:
        raise AssertionError("torch.cuda.synchronize called for a CPU backend")

    monkeypatch.setattr(torch.cuda, "synchronize", fail)
    be32.synchronize()


# ----------------------------------------------------------------------------- conversion


def test_asarray_keeps_python_floats_exact_in_float64(be64: TorchBackend) -> None:
    """torch.as_tensor([0.1]) would round through float32; ours goes through float64."""
    assert float(be64.from_host([0.1])[0]) == 0.1


def test_asarray_dtypes_and_reversed_memory(be32: TorchBackend) -> None:
    assert be32.from_host(np.array([0.1, 0.2])).dtype == torch.float32
    assert be32.from_host(np.arange(3)).dtype == torch.int64  # integers keep their dtype
    assert be32.from_host([True, False]).dtype == torch.bool
    reversed_view = np.arange(4.0)[::-1]  # negative strides, which torch cannot view
    np.testing.assert_array_equal(be32.to_numpy(be32.from_host(reversed_view)), [3, 2, 1, 0])


def test_to_numpy_copies_and_detaches(be32: TorchBackend) -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    out = be32.to_numpy(x * 1.0)
    out[0] = 5.0
    assert float(x.detach()[0]) == 1.0


def test_shapes_given_as_a_bare_int(be32: TorchBackend) -> None:
    assert be32.full(3, 2.0).shape == (3,) and be32.zeros(2).shape == (2,)
    assert be32.reshape(be32.ones((2, 3)), 6).shape == (6,)


def test_logsumexp_over_all_axes(be64: TorchBackend) -> None:
    """torch.logsumexp has no dim=None; the backend supplies every axis."""
    x = np.random.default_rng(2).standard_normal((2, 3))
    got = be64.logsumexp(be64.from_host(x), keepdims=True)
    assert got.shape == (1, 1)
    np.testing.assert_allclose(got.numpy(), np.log(np.sum(np.exp(x))), rtol=1e-12)  # float64


def test_capabilities(be32: TorchBackend) -> None:
    caps = be32.capabilities
    assert caps.supports_float64 and caps.version == str(torch.__version__)
    assert caps.devices[0] == "cpu" and any("TF32" in note for note in caps.notes)


def test_scan_rejects_a_step_output_of_another_shape() -> None:
    """Writing into a preallocated buffer must not broadcast a smaller output silently."""
    be = TorchBackend("cpu", "float32")
    shapes = iter([(3,), (1,)])

    def step(carry: int) -> tuple[int, object]:
        return carry + 1, be.zeros(next(shapes))

    with pytest.raises(InvalidArgument, match=r"step 1 returned shape \(1,\)"):
        be.scan(step, 0, 2)
