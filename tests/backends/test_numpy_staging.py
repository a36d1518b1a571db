"""The NumPy backend's ``jit``: a traced program replays exactly what eager NumPy computes.

References are the same functions run eagerly (not jitted) on the same inputs; since a replay
makes the same NumPy calls in the same order, results must be bitwise equal (tolerance 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gradbridge.backends.numpy import NumpyBackend, autodiff, staging
from gradbridge.core import losses, models, optim
from gradbridge.core.backend import tree_map

be = NumpyBackend(dtype="float64")


def assert_same(actual: Any, expected: Any) -> None:
    """Same tree, same types, same dtypes and shapes, bitwise the same numbers."""
    assert type(actual) is type(expected)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, tuple | list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, np.ndarray | np.generic):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected, strict=True)
    else:
        assert actual == expected


def training_step(model: Any, loss: str, opt: Any) -> Any:
    """fit's step, written out: one value_and_grad and one optimizer update."""
    loss_fn = losses.get(loss)
    value_and_grad = be.value_and_grad(lambda p, x, y: loss_fn(be, model(be, p, x), y))

    def step(carry: Any, x: Any, y: Any) -> Any:
        params, state = carry
        value, grads = value_and_grad(params, x, y)
        return opt.update(be, params, grads, state), value

    return step


def many_ops(p: dict[str, Any], x: Any) -> Any:
    """Operators, indexing, reductions, joins: differentiable, so also checked under grad."""
    h = np.tanh(x @ p["W"] + p["b"])
    h = be.concat([h, be.exp(-h[:, :1])], axis=1)
    s = be.stack([be.sum(h, axis=0), be.max(h, axis=0)])
    t = be.clip(be.logsumexp(s, axis=1), -1.0, 1.0)
    u = be.reshape(be.where(h > 0, h, 0.5 * h).T, (-1,))
    return be.mean(u ** 2) + be.sum(t) + be.min(be.abs(s)) + be.sum(h[1:3, [0, 2, 2]])


def in_place_ops(x: Any) -> Any:
    """Writes into arrays the function made itself, which a replay repeats in order."""
    fresh = np.zeros_like(x)
    fresh[:, 0] = x[:, 0] * 2
    fresh += x
    view = fresh[1:]
    np.multiply(view, 3.0, out=view)
    return fresh, be.sum(view)


def regression_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, 3 * x + 2 + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("model, loss, opt, params", [
    (models.linear1d, "mse", optim.sgd(0.05), {"w": np.float64(0.0), "b": np.float64(0.0)}),
    (models.mlp("tanh"), "mse", optim.adam(0.01), models.init_mlp([1, 8, 1], seed=1)),
    (models.mlp("relu"), "mse", optim.momentum(0.01), models.init_mlp([1, 8, 1], seed=2)),
])
def test_replayed_training_steps_equal_eager_ones_bitwise(model: Any, loss: str, opt: Any,
                                                          params: Any) -> None:
    step = training_step(model, loss, opt)
    staged = be.jit(step)
    x, y = regression_data(50, seed=0)
    if model is not models.linear1d:
        x = x[:, None]
    carry_eager = carry_staged = (params, opt.init(be, params))
    for _ in range(20):  # the first calls trace, the later ones replay
        carry_eager, loss_eager = step(carry_eager, x, y)
        carry_staged, loss_staged = staged(carry_staged, x, y)
        assert_same(loss_staged, loss_eager)
        assert_same(carry_staged, carry_eager)
    assert staged.reason is None and staged.programs


def test_a_replay_runs_no_autodiff_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """After tracing, a step's gradients come from the recorded NumPy calls alone."""
    staged = be.jit(training_step(models.linear1d, "mse", optim.sgd(0.1)))
    x, y = regression_data(20, seed=1)
    carry = ({"w": np.float64(0.5), "b": np.float64(0.0)}, {})
    staged(carry, x, y)
    expected = training_step(models.linear1d, "mse", optim.sgd(0.1))(carry, x, y)

    def no_tape(*args: Any) -> None:
        raise AssertionError("the autodiff tape ran during a replay")

    monkeypatch.setattr(autodiff.Tape, "__init__", no_tape)
    assert_same(staged(carry, x, y), expected)
    assert "np." in (staged.source or "") and "Tracer" not in (staged.source or "")


def test_many_operations_replay_bitwise() -> None:
    rng = np.random.default_rng(3)
    staged = be.jit(many_ops)
    gradient = be.jit(be.value_and_grad(many_ops))
    for _ in range(4):
        p = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
        x = rng.standard_normal((6, 3))
        assert_same(staged(p, x), many_ops(p, x))
        assert_same(gradient(p, x), be.value_and_grad(many_ops)(p, x))
    assert staged.reason is None and gradient.reason is None


def new_functions(p: dict[str, Any], x: Any) -> Any:
    """The namespace beyond the tutorial's: elementwise math, statistics, manipulation,
    indexing, sorting and linear algebra (every function here differentiable)."""
    la = be.linalg
    a = p["A"] @ be.matrix_transpose(p["A"]) + be.eye(3)
    h = be.sin(x @ p["A"]) * be.cosh(x[:, :1]) + be.atan2(x, 1.5) + be.hypot(x, 0.5)
    h = be.logaddexp(h, be.square(x)) + be.expm1(x / 4) + be.log2(be.abs(x) + 1)
    s = be.std(h, axis=0, correction=1) + be.var(h, axis=1)[:3] + be.prod(h[:2], axis=0)
    c = be.cumulative_sum(h, axis=0)[-1] + be.cumulative_prod(h[:3], axis=0)[-1]
    m = be.flip(be.roll(be.tile(h, (1, 2)), 1, axis=1), axis=0)[:, ::2]
    m = be.moveaxis(be.permute_dims(be.stack(be.unstack(m, axis=0)), (1, 0)), 0, 1)
    t = be.take(m, np.array([2, 0]), axis=1) + be.take_along_axis(m, np.array([[1, 0]]), axis=1)
    r = be.sort(be.repeat(s * c, 2)) @ be.broadcast_to(be.linspace(0, 1, 6), (6,))
    g = (la.slogdet(a)[1] + la.det(a) + be.sum(la.inv(a)) + be.sum(la.solve(a, s))
         + be.sum(la.cholesky(a)) + be.sum(la.eigh(a).eigenvalues) + la.trace(a)
         + be.sum(la.diagonal(la.pinv(a))) + la.matrix_norm(a) + la.vector_norm(s)
         + be.sum(la.cross(s, c)) + be.sum(la.outer(s, c)) + be.sum(la.matrix_power(a, 2))
         + be.sum(la.qr(a).R) + be.sum(la.svdvals(a)) + be.vecdot(s, c)
         + be.sum(be.tensordot(a, m[:3], axes=1)))
    return be.sum(t) + r + g + be.sum(be.clip(be.diff(h, axis=0), -1.0, 1.0))


def test_new_functions_and_their_gradients_replay_bitwise() -> None:
    """The allowlist follows core/ops.py: the namespace's new functions, their gradients and
    their second-order gradients replay, bitwise equal to eager calls."""
    rng = np.random.default_rng(4)
    staged = be.jit(new_functions)
    gradient = be.jit(be.value_and_grad(new_functions))
    hvp = be.jit(be.grad(lambda p, x: be.sum(be.grad(new_functions)(p, x)["A"])))
    for _ in range(3):
        p = {"A": rng.standard_normal((3, 3)) * 0.5}
        x = rng.standard_normal((4, 3))
        assert_same(staged(p, x), new_functions(p, x))
        assert_same(gradient(p, x), be.value_and_grad(new_functions)(p, x))
        assert_same(hvp(p, x), be.grad(lambda p, x: be.sum(
            be.grad(new_functions)(p, x)["A"]))(p, x))
    assert staged.reason is None and gradient.reason is None and hvp.reason is None


def test_writes_into_arrays_made_inside_replay_in_order() -> None:
    staged = be.jit(in_place_ops)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((4, 3))
        assert_same(staged(x), in_place_ops(x))
    assert staged.reason is None


def test_a_new_signature_traces_again() -> None:
    staged = be.jit(lambda x, k: be.sum(x * k))
    for x in (np.ones(3), np.ones(4), np.ones(4, np.float32), np.ones((4, 2))[:, 0]):
        for k in (2.0, 3, np.float64(-0.5), np.int32(2), 0.0):  # four types of k
            assert_same(staged(x, k), np.sum(x * k))
    assert len(staged.programs) == staging.PROGRAMS_KEPT  # 16 signatures, the last 8 kept
    assert_same(staged(np.ones(3), 0.5), np.sum(np.ones(3) * 0.5))


def test_negative_zero_arguments_keep_their_sign() -> None:
    staged = be.jit(lambda x, k: np.divide(x, k))
    with np.errstate(divide="ignore"):
        assert_same(staged(np.ones(2), 0.0), np.full(2, np.inf))
        assert_same(staged(np.ones(2), -0.0), np.full(2, -np.inf))
    assert len(staged.programs) == 1


def control_flow(x: Any) -> Any:
    return x * 2 if be.sum(x) > 0 else x - 1


@pytest.mark.parametrize("fn, reason", [
    (control_flow, "control flow"),
    (lambda x: x * float(x[0]), "control flow"),
    (lambda x: np.asarray(x) + 1, "plain array"),
    (lambda x: x.view(np.int64), "attribute 'view'"),
    (lambda x: be.sum(x[x > 0]), "boolean mask"),
    (lambda x: np.nonzero(x > 0)[0] * 1.5, "numpy.nonzero"),
])
def test_what_a_replay_cannot_repeat_runs_eagerly(fn: Any, reason: str) -> None:
    staged = be.jit(fn)
    for x in (np.array([1.0, 2.0]), np.array([-3.0, 1.0]), np.array([4.0, -9.0])):
        assert_same(staged(x), fn(x))
    assert staged.reason is not None and reason in staged.reason
    assert not staged.programs


def test_a_swallowed_stop_still_stops_the_trace() -> None:
    def careless(x: Any) -> Any:
        try:
            scale = float(x[0])
        except Exception:  # the point: user code that catches broadly
            scale = 1.0
        return x * scale

    staged = be.jit(careless)
    for x in (np.array([2.0, 1.0]), np.array([5.0, 1.0])):
        assert_same(staged(x), x * x[0])
    assert staged.reason is not None


def test_in_place_writes_into_arguments_run_eagerly_and_once() -> None:
    def bump(x: Any) -> Any:
        x += 1.0
        return x * 2

    staged = be.jit(bump)
    x = np.zeros(3)
    assert_same(staged(x), np.full(3, 2.0))
    assert_same(x, np.ones(3))  # written once, not once per trace attempt
    assert staged.reason is not None and "argument" in staged.reason


def test_a_method_writing_into_an_argument_runs_eagerly() -> None:
    def clip_in_place(x: Any) -> Any:
        return x.clip(0.0, 1.0, out=x) * 2

    staged = be.jit(clip_in_place)
    x = np.array([-1.0, 0.5, 3.0])
    assert_same(staged(x), np.array([0.0, 1.0, 2.0]))
    assert_same(x, np.array([0.0, 0.5, 1.0]))
    assert staged.reason is not None and "argument" in staged.reason


def test_in_place_writes_into_outside_arrays_run_eagerly() -> None:
    total = np.zeros(2)

    def accumulate(x: Any) -> Any:
        np.add(total, x, out=total)
        return total * 1.0

    staged = be.jit(accumulate)
    for k in range(1, 4):
        assert_same(staged(np.ones(2)), np.full(2, float(k)))
    assert staged.reason is not None


def test_constant_outputs_are_fresh_arrays_on_every_call() -> None:
    """A gradient that does not depend on the input is a new zeros array each time."""
    staged = be.jit(be.grad(lambda p, x: be.sum(p["a"] * x), argnums=0))
    p = {"a": np.ones(3), "unused": np.ones(2)}
    first = staged(p, np.ones(3))
    first["unused"][:] = 7.0
    second = staged(p, np.ones(3))
    assert_same(second["unused"], np.zeros(2))
    third = staged(p, np.ones(3))
    assert third["unused"] is not second["unused"]


def test_arguments_it_cannot_trace_run_eagerly_each_call() -> None:
    class Scale:
        factor = 3.0

    staged = be.jit(lambda x, s: x * getattr(s, "factor", s))
    assert_same(staged(np.ones(2), Scale()), np.full(2, 3.0))
    assert not staged.programs and staged.reason is None  # eager for that call only
    assert_same(staged(np.ones(2), 2.0), np.full(2, 2.0))
    assert staged.programs


def test_jitting_twice_is_one_staged_function() -> None:
    staged = be.jit(lambda x: x + 1)
    assert be.jit(staged) is staged


def test_grad_inside_jit_and_tree_outputs() -> None:
    def losses_and_grads(p: Any, x: Any) -> Any:
        value, grads = be.value_and_grad(lambda q: be.mean((q["w"] * x - 1.0) ** 2))(p)
        return [value, tree_map(lambda g: g * 2, grads), (None, 1, "label")]

    staged = be.jit(losses_and_grads)
    for w in (0.5, 1.5):
        p = {"w": np.array([w, -w])}
        assert_same(staged(p, np.arange(2.0)), losses_and_grads(p, np.arange(2.0)))


def test_a_chain_of_elementwise_operations_allocates_one_array() -> None:
    """Single-use values are written into the next line, so NumPy reuses the temporaries
    (its elision of temporaries >= 256 KiB), as hand-written ``w * x + b - y`` does."""
    import tracemalloc

    staged = be.jit(lambda w, b, x, y: ((w * x + b) - y) * 0.5)
    x, y = regression_data(200_000, seed=4)  # 1.6 MB each
    w, b = np.float64(3.0), np.float64(2.0)
    staged(w, b, x, y)
    tracemalloc.start()
    try:
        result = staged(w, b, x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_same(result, ((w * x + b) - y) * 0.5)
    assert peak < 1.25 * x.nbytes  # one array-sized result; eager NumPy calls would make four


def test_threads_share_a_staged_function() -> None:
    """Traces and replays from several threads at once (fit's programs are shared)."""
    from concurrent.futures import ThreadPoolExecutor

    staged = be.jit(training_step(models.linear1d, "mse", optim.sgd(0.05)))
    step = training_step(models.linear1d, "mse", optim.sgd(0.05))

    def train(n: int) -> tuple[Any, Any]:
        x, y = regression_data(n, seed=n)
        carry_staged = carry_eager = ({"w": np.float64(0.0), "b": np.float64(0.0)}, {})
        for _ in range(30):
            carry_staged, _ = staged(carry_staged, x, y)
            carry_eager, _ = step(carry_eager, x, y)
        return carry_staged, carry_eager

    with ThreadPoolExecutor(4) as pool:
        for staged_carry, eager_carry in pool.map(train, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]):
            assert_same(staged_carry, eager_carry)


@pytest.mark.parametrize("model, loss, optimizer, batch_size", [
    (models.linear, "mse", "sgd", None),
    (models.logistic, "binary_cross_entropy", "momentum", None),
    (models.mlp("tanh"), "mse", "adam", 16),
    (models.mlp("relu"), "softmax_cross_entropy", "adam", None),
])
def test_fit_replays_every_built_in_problem(model: Any, loss: str, optimizer: str,
                                            batch_size: int | None) -> None:
    """A change that made fit's step fall back to eager would only show as lost speed."""
    from gradbridge.core import train

    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3))
    targets = {"mse": x @ np.array([1.0, -2.0, 0.5]), "binary_cross_entropy":
               (x[:, 0] > 0).astype(float), "softmax_cross_entropy": np.eye(3)[x.argmax(1)]}
    outputs = 3 if loss == "softmax_cross_entropy" else 1
    params = (models.init_mlp([3, 8, outputs]) if model not in (models.linear, models.logistic)
              else models.init_linear(3))
    train.fit(model, loss, params, x, targets[loss], backend=be, optimizer=optimizer,
              lr=0.01, epochs=3, batch_size=batch_size)
    program = train._program(be, model, losses.get(loss), optim.get(optimizer)(0.01))
    assert program.step.reason is None and program.step.programs


# --------------------------------------------- what the trace cannot see runs eagerly, once


VALUE_SHAPED = [
    (lambda l, x: be.sum(x) / np.intersect1d(l, x).shape[0], "intersect1d"),
    (lambda l, x: np.setdiff1d(l, x) * 2.0, "setdiff1d"),
    (lambda l, x: np.union1d(l, x) - 1.0, "union1d"),
    (lambda l, x: np.setxor1d(l, x) * 0.5, "setxor1d"),
    (lambda l, x: np.unique_values(x) + 1.0, "unique_values"),
    (lambda l, x: np.flatnonzero(l > x) + 0.5, "flatnonzero"),
    (lambda l, x: np.compress(l > x, x) * 2.0, "compress"),
    (lambda l, x: np.extract(l > x, x) - 1.0, "extract"),
    (lambda l, x: np.trim_zeros(np.maximum(l - x, 0.0)) * 3.0, "trim_zeros"),
    (lambda l, x: np.argwhere(l > x) * 2, "argwhere"),
    (lambda l, x: np.unique(l) + be.sum(x), "unique"),
    (lambda l, x: np.nonzero(l > x)[0] * 1.5, "nonzero"),
    (lambda l, x: np.where(l > x)[0] + 1, "where"),
    (lambda l, x: np.repeat(x, (l > 1.5).astype(int)) * 2.0, "repeat"),
    (lambda l, x: be.sum(x[l > x]), "boolean mask"),
]


@pytest.mark.parametrize("fn, name", VALUE_SHAPED, ids=[n for _, n in VALUE_SHAPED])
def test_results_shaped_by_values_run_eagerly_and_stay_right(fn: Any, name: str) -> None:
    """The first call's shape must not come back on later calls with other values."""
    staged = be.jit(fn)
    for l, x in ([[1.0, 2.0, 3.0], [2.0, 0.0, 3.0]], [[1.0, 2.0, 2.0], [2.0, 6.0, 7.0]],
                 [[4.0, 2.0, 0.0], [1.0, 2.0, 3.0]], [[2.0, 2.0, 2.0], [2.0, 1.0, 0.0]]):
        assert_same(staged(np.array(l), np.array(x)), fn(np.array(l), np.array(x)))
    assert staged.reason is not None and name in staged.reason
    assert not staged.programs


def test_functions_not_known_to_be_shape_static_stop_the_trace_by_name() -> None:
    staged = be.jit(lambda x: np.histogram(x, bins=3)[0] * 1.0)
    x = np.array([0.0, 1.0, 1.0, 2.0])
    assert_same(staged(x), np.histogram(x, bins=3)[0] * 1.0)
    assert staged.reason is not None and "numpy.histogram" in staged.reason


def test_shape_static_functions_still_replay() -> None:
    def sorted_and_joined(x: Any, y: Any) -> Any:
        s = np.sort(x) + np.argsort(y)
        z = np.concatenate([np.transpose(np.stack([s, y])), np.broadcast_to(y[:, None], (3, 2))],
                           axis=1)
        return np.clip(np.where(z > 0, z, -z), 0.5, 2.5) @ np.ones(4), np.einsum("ij->j", z)

    staged = be.jit(sorted_and_joined)
    rng = np.random.default_rng(7)
    for _ in range(3):
        x, y = rng.standard_normal(3), rng.standard_normal(3)
        assert_same(staged(x, y), sorted_and_joined(x, y))
    assert staged.reason is None and len(staged.programs) == 1


def test_a_failed_signature_leaves_other_signatures_traced() -> None:
    def masked_when_long(x: Any) -> Any:
        return be.sum(x[x > 0]) if x.shape[0] > 2 else x * 2.0

    staged = be.jit(masked_when_long)
    long, short = np.array([1.0, -2.0, 3.0]), np.array([1.0, -2.0])
    assert_same(staged(long), masked_when_long(long))
    assert staged.reason is not None and "boolean mask" in staged.reason
    for _ in range(2):
        assert_same(staged(short), masked_when_long(short))
        assert_same(staged(-long), masked_when_long(-long))
    assert len(staged.programs) == 1  # the short signature traced; the long one runs eagerly


def test_a_fallback_runs_the_function_once_per_call() -> None:
    calls: list[int] = []

    def logged(l: Any, x: Any) -> Any:
        calls.append(len(calls))
        return be.sum(x) / np.intersect1d(l, x).shape[0]

    staged = be.jit(logged)
    for k in range(1, 4):
        l, x = np.arange(5.0), np.arange(3.0) + k  # 3, 3 and 2 values in common
        assert_same(staged(l, x), logged(l, x))
        assert len(calls) == 2 * k  # once by the jitted function, once by the eager reference


def test_a_fallback_at_control_flow_runs_the_function_once() -> None:
    calls: list[float] = []

    def logged(x: Any) -> Any:
        y = x * 2.0
        calls.append(1.0)
        return y if be.sum(y) > 0 else -y

    staged = be.jit(logged)
    assert_same(staged(np.array([1.0, -3.0])), np.array([-2.0, 6.0]))
    assert calls == [1.0]
    assert staged.reason is not None and "control flow" in staged.reason


def sgd_step(params: dict[str, Any], x: Any, y: Any, lr: float) -> Any:
    value, grads = be.value_and_grad(
        lambda p: be.mean((p["w"] * x + p["b"] - y) ** 2))(params)
    return {k: params[k] - lr * grads[k] for k in params}, value


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_learning_rate_sweep_traces_once(dtype: Any) -> None:
    """Python numbers are inputs of the program (in float32, still weak scalars)."""
    staged = be.jit(sgd_step)
    x, y = (a.astype(dtype) for a in regression_data(30, seed=2))
    params = {"w": np.zeros(1, dtype), "b": np.zeros(1, dtype)}
    for lr in np.linspace(0.001, 0.3, 20).tolist():
        assert_same(staged(params, x, y, lr), sgd_step(params, x, y, lr))
    assert staged.reason is None and len(staged.programs) == 1


def test_python_numbers_in_python_arithmetic_are_traced() -> None:
    def scaled(x: Any, k: int, lr: float) -> Any:
        return x[k] * (1 - lr) ** 2 + k // 2, -lr

    staged = be.jit(scaled)
    x = np.arange(12.0).reshape(4, 3)
    for k, lr in [(0, 0.5), (1, 0.25), (3, -2.0), (2, 1e-3)]:
        assert_same(staged(x, k, lr), scaled(x, k, lr))
    assert staged.reason is None and len(staged.programs) == 1


def test_a_python_number_that_sets_a_shape_becomes_part_of_the_signature() -> None:
    staged = be.jit(lambda x, n: np.reshape(x, (n, -1)) * 2.0)
    for n in (1, 2, 4, 2):
        assert_same(staged(np.arange(4.0), n), np.reshape(np.arange(4.0), (n, -1)) * 2.0)
    assert staged.reason is not None and "numpy.reshape" in staged.reason
    assert len(staged.programs) == 2  # n = 1 ran eagerly (and found out), then one per value


def test_python_numbers_that_steer_python_trace_once_per_value() -> None:
    calls: list[float] = []

    def decayed(x: Any, lr: float) -> Any:
        calls.append(lr)
        return x * math.exp(-lr) if lr > 0 else x

    staged = be.jit(decayed)
    sweep = [0.5, -1.0, 0.25, 0.5, -0.0, 0.0]
    for lr in sweep:
        assert_same(staged(np.ones(3), lr), decayed(np.ones(3), lr))
    assert calls == [v for lr in sweep for v in (lr, lr)]  # once jitted, once eagerly
    assert len(staged.programs) == 5  # the first call ran eagerly, each later value traced
    assert_same(staged(np.ones(3), 0.25), decayed(np.ones(3), 0.25))
    assert len(calls) == 2 * len(sweep) + 1  # a replay: only the eager reference ran


def test_bools_are_part_of_the_signature() -> None:
    staged = be.jit(lambda x, double: x * 2.0 if double else x + 1.0)
    for flag in (True, False, True):
        assert_same(staged(np.ones(2), flag), np.ones(2) * 2.0 if flag else np.ones(2) + 1.0)
    assert staged.reason is None and len(staged.programs) == 2


def test_printing_a_traced_value_runs_eagerly_and_prints_once_per_call(
        capsys: pytest.CaptureFixture[str]) -> None:
    def noisy(x: Any) -> Any:
        print("total", be.sum(x))
        return x * 2.0

    staged = be.jit(noisy)
    for k in range(3):
        assert_same(staged(np.full(2, float(k))), np.full(2, 2.0 * k))
    assert capsys.readouterr().out.splitlines() == ["total 0.0", "total 2.0", "total 4.0"]
    assert staged.reason is not None and "text" in staged.reason
