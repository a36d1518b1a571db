"""``fit`` against independent references: hand-written NumPy gradient descent, lstsq, the
other backends; plus divergence, callbacks, timing fields and bad input.

The NumPy reference loops below are written from the math (gradient of the MSE of a linear
model), not from gradbridge's code. Tolerances: ``tolerance(be)`` -- 1e-10 relative in
float64 (rounding and summation order only) and 1e-5 in float32 (float32 data and arithmetic
against a float64 reference over tens of steps).
"""

from __future__ import annotations

import gc
import math
import re
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import BACKENDS, make_backend, tolerance

from gradbridge.backends.numpy import NumpyBackend
from gradbridge.core import data, loop, losses, models, optim, train
from gradbridge.core.backend import Backend, Capabilities, InvalidArgument, TrainingDiverged

# Data the tests generate themselves, with true parameters unlike the tutorial's (3, 2).
RNG = np.random.default_rng(20240611)
X3 = RNG.standard_normal((64, 3))
W3_TRUE, B3_TRUE = np.array([-1.5, 0.7, 2.5]), -0.8
Y3 = X3 @ W3_TRUE + B3_TRUE + 0.3 * RNG.standard_normal(64)
X1 = RNG.standard_normal(40)
Y1 = -2.0 * X1 + 0.5 + 0.2 * RNG.standard_normal(40)


def gd_reference(x: np.ndarray, y: np.ndarray, lr: float, epochs: int,
                 batch_size: int | None = None, seed: int = 0) -> dict:
    """Linear regression by gradient descent in float64 NumPy, from the math.

    Records each epoch's loss with the parameters at the epoch's start (mini-batch: the mean of
    the batch losses) and the parameters at every epoch's start.
    """
    x2 = x.reshape(len(x), -1)
    w, b = np.zeros(x2.shape[1]), 0.0
    losses_, starts = [], []
    for epoch in range(epochs):
        starts.append((w.copy(), b))
        order = (np.arange(len(y)) if batch_size is None
                 else np.random.default_rng([seed, epoch]).permutation(len(y)))
        size = batch_size or len(y)
        batch_losses = []
        for begin in range(0, len(y), size):
            rows = order[begin:begin + size]
            residual = x2[rows] @ w + b - y[rows]
            batch_losses.append(np.mean(residual ** 2))
            w = w - lr * 2 * x2[rows].T @ residual / len(rows)
            b = b - lr * 2 * np.mean(residual)
        losses_.append(float(np.mean(batch_losses)))
    return {"losses": np.array(losses_), "w": w, "b": b, "starts": starts}


def fit_1d(be: Backend, **kwargs) -> train.History:
    return train.fit(models.linear1d, losses.mse, {"w": 0.0, "b": 0.0}, X1, Y1, backend=be,
                     **kwargs)


# ----------------------------------------------------------------------- references


@pytest.mark.parametrize("batch_size", [None, 16], ids=["full", "minibatch"])
def test_history_equals_numpy_reference(backend: Backend, batch_size: int | None) -> None:
    """Whole trajectories on every backend and dtype, full batch and mini-batch (same batches
    on every backend): each equals the float64 reference, so the backends equal each other."""
    history = fit_1d(backend, lr=0.1, epochs=12, batch_size=batch_size, seed=5)
    ref = gd_reference(X1, Y1, 0.1, 12, batch_size, seed=5)
    tol = tolerance(backend)
    np.testing.assert_allclose(history.losses, ref["losses"], rtol=tol)
    np.testing.assert_allclose(history.params["w"], ref["w"][0], rtol=tol)
    np.testing.assert_allclose(history.params["b"], ref["b"], rtol=tol)
    assert history.epochs == 12 and not history.stopped_early
    assert (history.backend, history.device, history.dtype) == (
        backend.name, backend.device, backend.dtype)
    # final_loss is the full-data loss of the final parameters, computed here from the math.
    final = np.mean((ref["w"][0] * X1 + ref["b"] - Y1) ** 2)
    assert history.final_loss == pytest.approx(final, rel=tol)
    assert all(type(v) is float for v in history.losses)
    assert history.params["w"].dtype == np.float64


def test_multivariate_converges_to_lstsq(backend: Backend) -> None:
    """Gradient descent reaches the least-squares optimum computed by numpy.linalg.lstsq."""
    history = train.fit(models.linear, "mse", models.init_linear(3), X3, Y3, backend=backend,
                        lr=0.2, epochs=150)
    design = np.column_stack([X3, np.ones(len(X3))])
    solution = np.linalg.lstsq(design, Y3, rcond=None)[0]
    # float64: GD contracts by ~0.6 per epoch, so 150 epochs leave ~1e-30 of the start error;
    # float32: the optimum is only resolvable to ~1e-6 relative, 1e-5 absolute allows for it.
    atol = 1e-9 if backend.dtype == "float64" else 1e-5
    np.testing.assert_allclose(history.params["w"], solution[:3], atol=atol)
    np.testing.assert_allclose(history.params["b"], solution[3], atol=atol)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several compiled chunks (two lengths) give the same trajectory as the reference."""
    be = make_backend("jax", "float64")
    monkeypatch.setattr(loop, "MAX_CHUNK", 4)
    history = fit_1d(be, lr=0.1, epochs=11)
    ref = gd_reference(X1, Y1, 0.1, 11)
    np.testing.assert_allclose(history.losses, ref["losses"], rtol=1e-10)
    assert loop.chunk_lengths(11, 4) == [4, 4, 3]


# ----------------------------------------------------------------- other models


def test_logistic_regression_learns(backend: Backend) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 2))
    y = (rng.random(200) < 1 / (1 + np.exp(-(x @ np.array([2.0, -1.0]) + 0.3)))).astype(float)
    history = train.fit(models.logistic, "binary_cross_entropy", models.init_linear(2), x, y,
                        backend=backend, optimizer="adam", lr=0.1, epochs=60)
    # Zero weights give logits 0, so the first loss is log 2 exactly (to rounding).
    assert history.losses[0] == pytest.approx(math.log(2), rel=tolerance(backend))
    assert history.final_loss < 0.8 * math.log(2)
    accuracy = np.mean(((x @ history.params["w"] + history.params["b"]) > 0) == (y == 1))
    assert accuracy > 0.75


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_fits_a_small_nonlinear_problem(backend64: Backend, activation: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, (48, 1))
    y = np.sin(2 * x[:, 0])
    history = train.fit(models.mlp(activation), "mse", models.init_mlp([1, 16, 1], seed=1),
                        x, y, backend=backend64, optimizer="adam", lr=0.03, epochs=150)
    assert history.final_loss < 0.25 * history.losses[0]
    assert set(history.params) == {"W0", "b0", "W1", "b1"}


def test_softmax_classifier_learns(backend32: Backend) -> None:
    rng = np.random.default_rng(5)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    labels = rng.integers(0, 3, 90)
    x = centers[labels] + 0.5 * rng.standard_normal((90, 2))
    history = train.fit(models.mlp(), "softmax_cross_entropy", models.init_mlp([2, 3], seed=0),
                        x, data.one_hot(labels, 3), backend=backend32, lr=0.5, epochs=40)
    assert history.losses[0] > 0.5 and history.final_loss < 0.2


# ------------------------------------------------------------------------ divergence


def _first_bad(losses_: np.ndarray, max_loss: float) -> int:
    return int(np.flatnonzero(~(np.isfinite(losses_) & (losses_ <= max_loss)))[0])


@pytest.mark.parametrize("mode", ["chunked", "per-epoch", "minibatch"])
def test_divergence_keeps_the_history(backend64: Backend, mode: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Too large a learning rate explodes; the error says where and keeps what was done.

    With chunks of 3 epochs, full batch at lr=10 first exceeds max_loss at epoch 5 (mid-chunk:
    replayed from the chunk's start) and mini-batch at lr=1.5 at epoch 6 (a chunk's first
    epoch: replayed from the chunk before).
    """
    batch_size, lr = (8, 1.5) if mode == "minibatch" else (None, 10.0)
    with np.errstate(all="ignore"):
        ref = gd_reference(X1, Y1, lr, 40, batch_size)
    bad = _first_bad(ref["losses"], 1e12)
    monkeypatch.setattr(loop, "MAX_CHUNK", 3)
    callbacks = [lambda info: None] if mode == "per-epoch" else []
    with pytest.raises(TrainingDiverged) as caught:
        fit_1d(backend64, lr=lr, epochs=40, batch_size=batch_size, callbacks=callbacks)
    error = caught.value
    assert error.epoch == bad > 1
    assert error.last_finite_loss == pytest.approx(ref["losses"][bad - 1], rel=1e-10)
    np.testing.assert_allclose(error.history.losses, ref["losses"][:bad], rtol=1e-10)
    w, b = ref["starts"][bad - 1]  # the parameters that produced the last finite loss
    np.testing.assert_allclose(error.history.params["w"], w[0], rtol=1e-10)
    np.testing.assert_allclose(error.history.params["b"], b, rtol=1e-10)
    assert error.history.epochs == bad
    assert f"lower the learning rate (lr={lr:g})" in str(error) and f"epoch {bad}" in str(error)


def test_divergence_at_the_first_epoch(backend32: Backend) -> None:
    with pytest.raises(TrainingDiverged) as caught:
        fit_1d(backend32, max_loss=1e-3)
    assert caught.value.epoch == 0 and caught.value.last_finite_loss is None
    assert caught.value.history.losses == []
    assert {k: float(v) for k, v in caught.value.history.params.items()} == {"w": 0.0, "b": 0.0}


# ------------------------------------------------------------------------- callbacks


def test_log_every_prints_like_the_tutorial() -> None:
    """Printed every 3 epochs: the epoch's loss and the parameters after its update."""
    be = make_backend("numpy", "float64")
    lines: list[str] = []
    fit_1d(be, lr=0.1, epochs=8, callbacks=[train.log_every(3, printer=lines.append)])
    ref = gd_reference(X1, Y1, 0.1, 8)
    assert [int(n) for n in re.findall(r"^epoch (\d+):", "\n".join(lines), re.M)] == [0, 3, 6]
    for line, epoch in zip(lines, [0, 3, 6], strict=True):
        values = dict(re.findall(r"(\w+)=(-?[\d.]+)", line))
        w_after, b_after = ref["starts"][epoch + 1]
        assert float(values["loss"]) == pytest.approx(ref["losses"][epoch], abs=5e-5)
        assert float(values["w"]) == pytest.approx(w_after[0], abs=5e-5)
        assert float(values["b"]) == pytest.approx(b_after, abs=5e-5)


def test_early_stopping_stops_on_a_plateau(backend: Backend) -> None:
    history = fit_1d(backend, lr=0.1, epochs=400,
                     callbacks=[train.early_stopping(patience=3, min_delta=1e-4)])
    assert history.stopped_early and history.epochs < 400
    # Independent check of the rule on the recorded losses: the last 3 epochs did not improve
    # on the best before them by more than min_delta, and training did not stop earlier.
    best = min(history.losses[:-3])
    assert all(loss >= best - 1e-4 for loss in history.losses[-3:])


def test_callbacks_see_the_parameters_of_each_loss() -> None:
    """info.params produced info.loss; info.updated_params are the next epoch's start."""
    be = make_backend("torch", "float64")
    seen: list[train.EpochEnd] = []
    fit_1d(be, lr=0.1, epochs=4, callbacks=[seen.append])
    ref = gd_reference(X1, Y1, 0.1, 5)
    for info in seen:
        assert float(info.host_params()["w"]) == pytest.approx(ref["starts"][info.epoch][0][0])
        assert float(info.host_params(updated=True)["b"]) == pytest.approx(
            ref["starts"][info.epoch + 1][1])
        # torch keeps no autograd graph between steps.
        for tensor in (*info.params.values(), *info.updated_params.values()):
            assert tensor.grad_fn is None and not tensor.requires_grad


# ------------------------------------------------------------------------ timing


@pytest.mark.parametrize("name", BACKENDS)
def test_timing_fields(name: str) -> None:
    be = make_backend(name, "float32")

    def line(backend: Backend, p: dict, x: object) -> object:  # new: nothing compiled yet
        return models.linear1d(backend, p, x)

    history = train.fit(line, losses.mse, {"w": 0.0, "b": 0.0}, X1, Y1, backend=be, epochs=20)
    assert history.run_s > 0 and history.per_epoch_s == pytest.approx(history.run_s / 20)
    if name in ("numpy", "jax") or be.capabilities.has_jit:  # NumPy's jit traces: compile time
        assert history.compile_s > 0
    else:
        assert history.compile_s == 0.0


# ------------------------------------------------------------- compilation and memory


def test_refitting_the_same_problem_compiles_nothing_again() -> None:
    """The compiled functions are kept per (backend, model, loss, optimizer): a second fit
    (new data of the same shapes, another start) traces the model not once more, and equals
    the reference; on JAX the model runs only while being traced."""
    be = make_backend("jax", "float64")
    traced: list[int] = []

    def line(backend: Backend, p: dict, x: object) -> object:
        traced.append(1)
        return models.linear1d(backend, p, x)

    sgd = optim.sgd(0.1)
    train.fit(line, "mse", {"w": 0.0, "b": 0.0}, X1, Y1, backend=be, optimizer=sgd, epochs=7)
    first = len(traced)
    history = train.fit(line, "mse", {"w": 0.0, "b": 0.0}, -X1, Y1, backend=be,
                        optimizer=optim.sgd(0.1), epochs=7)
    assert first > 0 and len(traced) == first
    np.testing.assert_allclose(history.losses, gd_reference(-X1, Y1, 0.1, 7)["losses"],
                               rtol=1e-10)


class _CountingJit(NumpyBackend):
    """NumPy in float64, whose ``jit`` counts how often each function it wrapped is called."""

    name = "counting-jit"

    def __init__(self, compiled_scan: bool) -> None:
        super().__init__(dtype="float64")
        self._compiled_scan = compiled_scan
        self.calls: dict[int, int] = {}

    @property
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities, compiled_scan=self._compiled_scan)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        key = len(self.calls)
        self.calls[key] = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[key] += 1
            return fn(*args, **kwargs)

        return counted


@pytest.mark.parametrize("compiled_scan", [False, True])
def test_what_fit_compiles_follows_the_backends_scan(compiled_scan: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose scan compiles whole loops gets one compiled call per chunk of epochs;
    any other (a Python loop, which torch.compile would unroll) gets the step compiled and
    called once per epoch. Both give the reference trajectory."""
    be = _CountingJit(compiled_scan)
    monkeypatch.setattr(loop, "MAX_CHUNK", 4)  # 9 epochs: chunks of 3
    history = fit_1d(be, lr=0.1, epochs=9)
    np.testing.assert_allclose(history.losses, gd_reference(X1, Y1, 0.1, 9)["losses"],
                               rtol=1e-10)
    most = max(be.calls.values())  # the busiest jitted function: the chunk or the step
    assert most == (3 + 1 if compiled_scan else 9 + 2)  # + the untimed warm-up's calls


def _recording_check_xy(monkeypatch: pytest.MonkeyPatch) -> list[weakref.ref]:
    """Weak references to every array ``data.check_xy`` hands to fit."""
    made: list[weakref.ref] = []
    check_xy = data.check_xy

    def recording(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        arrays = check_xy(*args, **kwargs)  # type: ignore[arg-type]
        made.extend(weakref.ref(a) for a in arrays)
        return arrays

    monkeypatch.setattr(data, "check_xy", recording)
    return made


def test_full_batch_training_keeps_no_host_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """float64 data for a float32 JAX backend: converted once on the host, moved to the device,
    and that host copy is gone while training runs; after fit nothing holds the data (the
    compiled functions kept for the next fit included)."""
    made = _recording_check_xy(monkeypatch)
    alive_while_training: list[bool] = []

    def look(info: train.EpochEnd) -> None:
        gc.collect()
        alive_while_training.append(any(ref() is not None for ref in made))

    fit_1d(make_backend("jax", "float32"), epochs=3, callbacks=[look])
    assert len(made) == 2 and alive_while_training == [False] * 3
    x, y = X1.copy(), Y1.copy()  # the NumPy backend computes on the caller's arrays directly
    history = train.fit(models.linear1d, "mse", {"w": 0.0, "b": 0.0}, x, y,
                        backend=make_backend("numpy", "float64"), epochs=3)
    assert history.epochs == 3
    given = [weakref.ref(x), weakref.ref(y)]
    del x, y
    gc.collect()
    assert [ref() for ref in given] == [None, None]


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0.0}, "lr=0.0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"lr": float("nan")}, "lr=nan"),
    ({"epochs": 0}, "epochs=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 41}, "from 1 to 40"),
    ({"optimizer": "rmsprop"}, "known optimizers: sgd, momentum, adam"),
    ({"seed": -1}, "seed=-1"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        fit_1d(make_backend("numpy", "float64"), **kwargs)


def test_bad_data() -> None:
    be = make_backend("numpy", "float64")
    start = {"w": 0.0, "b": 0.0}
    with pytest.raises(InvalidArgument, match=r"x has shape \(40,\), y has shape \(39,\)"):
        train.fit(models.linear1d, "mse", start, X1, Y1[:-1], backend=be)
    x_nan = X1.copy()
    x_nan[7] = np.nan
    with pytest.raises(InvalidArgument, match="x contains nan at index 7"):
        train.fit(models.linear1d, "mse", start, x_nan, Y1, backend=be)
    with pytest.raises(InvalidArgument, match="empty"):
        train.fit(models.linear1d, "mse", start, [], [], backend=be)
    with pytest.raises(InvalidArgument, match="known losses: mse, binary_cross_entropy"):
        train.fit(models.linear1d, "hinge", start, X1, Y1, backend=be)
    with pytest.raises(InvalidArgument, match=r"params\['w'\] contains NaN"):
        train.fit(models.linear1d, "mse", {"w": np.nan, "b": 0.0}, X1, Y1, backend=be)
    # A model whose output shape does not match y is named, not silently broadcast.
    with pytest.raises(InvalidArgument, match=r"shape \(40, 1\), target has shape \(40,\)"):
        train.fit(models.linear, "mse", {"w": np.zeros((1, 1)), "b": 0.0}, X1[:, None], Y1,
                  backend=be, epochs=1)


def test_optimizer_object_brings_its_learning_rate() -> None:
    be = make_backend("numpy", "float64")
    history = fit_1d(be, optimizer=optim.sgd(0.05), epochs=5)
    np.testing.assert_allclose(history.losses, gd_reference(X1, Y1, 0.05, 5)["losses"],
                               rtol=1e-10)
