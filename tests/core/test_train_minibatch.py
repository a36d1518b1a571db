"""Mini-batch ``fit``: the ragged last batch against a hand-written NumPy softmax regression,
and JAX's compiled epoch program traced once whatever the number of epochs or chunk lengths.

The reference below is written from the math (the gradient of the mean softmax cross-entropy
of a linear layer is ``x.T @ (softmax(z) - y) / m`` for a batch of m rows), not from
gradbridge's code. Tolerances: 1e-12 relative in float64 (a dozen steps of rounding only).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import make_backend

from gradbridge.backends.numpy import NumpyBackend
from gradbridge.core import loop, losses, models, optim, train
from gradbridge.core.backend import Backend, Capabilities

RNG = np.random.default_rng(7)
N, FEATURES, CLASSES, BATCH = 11, 3, 4, 4  # batches of 4, 4 and a ragged 3
X = RNG.standard_normal((N, FEATURES))
Y = np.eye(CLASSES)[RNG.integers(0, CLASSES, N)]
START = {"W0": 0.3 * RNG.standard_normal((FEATURES, CLASSES)), "b0": np.zeros(CLASSES)}


def softmax_sgd_reference(lr: float, epochs: int, seed: int,
                          batch: int = BATCH) -> dict[str, Any]:
    """Softmax regression by plain SGD in float64 NumPy; each epoch's loss is the mean of its
    batch losses, each taken before that batch's update."""
    w, b = START["W0"].copy(), START["b0"].copy()
    epoch_losses = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(N)
        batch_losses = []
        for begin in range(0, N, batch):
            rows = order[begin:begin + batch]
            z = X[rows] @ w + b
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            batch_losses.append(-np.mean(np.sum(Y[rows] * np.log(p), axis=1)))
            upstream = (p - Y[rows]) / len(rows)  # the ragged batch divides by its own 3
            w, b = w - lr * X[rows].T @ upstream, b - lr * upstream.sum(axis=0)
        epoch_losses.append(np.mean(batch_losses))
    return {"losses": np.array(epoch_losses), "W0": w, "b0": b}


class _CompiledScanNumpy(NumpyBackend):
    """NumPy in float64 claiming a compiled scan, so fit takes the one-program-per-epoch path
    (there run eagerly), which JAX takes compiled."""

    name = "numpy-compiled-scan"

    def __init__(self) -> None:
        super().__init__(dtype="float64")

    @property
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities, compiled_scan=True)


def _assert_matches_reference(be: Backend, batch: int = BATCH) -> None:
    history = train.fit(models.mlp(), "softmax_cross_entropy", START, X, Y, backend=be,
                        lr=0.5, epochs=3, batch_size=batch, seed=2)
    ref = softmax_sgd_reference(0.5, 3, seed=2, batch=batch)
    # float64, 9 steps of rounding: 1e-12 relative.
    np.testing.assert_allclose(history.losses, ref["losses"], rtol=1e-12)
    np.testing.assert_allclose(history.params["W0"], ref["W0"], rtol=1e-12)
    np.testing.assert_allclose(history.params["b0"], ref["b0"], rtol=1e-12, atol=1e-15)


def test_ragged_last_batch_gives_the_exact_gradient(backend64: Backend) -> None:
    _assert_matches_reference(backend64)


def test_one_program_per_epoch_path_is_exact_too() -> None:
    """The path JAX compiles, run eagerly by NumPy: scan over full batches, then the ragged."""
    _assert_matches_reference(_CompiledScanNumpy())


ROW_BYTES = (FEATURES + CLASSES) * 8
"""Bytes of one float64 row of X and Y, which sets how many batches a block of rows holds."""


@pytest.mark.parametrize("backend", ["numpy-compiled-scan", "jax"])
@pytest.mark.parametrize(("block_bytes", "layout"), [
    (1, "five blocks of one batch"),
    (4 * ROW_BYTES, "two blocks of two batches, one batch left over"),
    (1 << 20, "one block of all five full batches"),
])
def test_epochs_gathered_in_blocks_are_exact(monkeypatch: pytest.MonkeyPatch, backend: str,
                                             block_bytes: int, layout: str) -> None:
    """Batches of 2 from 11 rows: five full batches and a ragged one of 1, gathered a block
    at a time however the blocks fall, give the reference's steps exactly."""
    monkeypatch.setattr(loop, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(loop, "_programs", type(loop._programs)())  # compile for this size
    be = _CompiledScanNumpy() if backend == "numpy-compiled-scan" else make_backend("jax",
                                                                                      "float64")
    _assert_matches_reference(be, batch=2)


def test_at_most_two_compiled_calls_are_unfinished(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner waits for the oldest launched call before drawing more orders, and the
    losses it fetched while waiting are the ones the loop records."""
    be = make_backend("jax", "float64")
    seen: list[int] = []
    original = loop.MiniBatch._wait_for_room

    def recorded(self: loop.MiniBatch) -> None:
        original(self)
        seen.append(len(self._in_flight))

    monkeypatch.setattr(loop, "MAX_EPOCHS_PER_CALL", 1)  # a call per epoch: six calls
    monkeypatch.setattr(loop.MiniBatch, "_wait_for_room", recorded)
    history = train.fit(models.mlp(), "softmax_cross_entropy", START, X, Y, backend=be,
                        lr=0.5, epochs=6, batch_size=BATCH, seed=2)
    assert max(seen) == loop.CALLS_IN_FLIGHT - 1 and len(seen) >= 6
    # float64 on JAX against the float64 NumPy reference: 1e-12 relative.
    np.testing.assert_allclose(history.losses, softmax_sgd_reference(0.5, 6, 2)["losses"],
                               rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy-compiled-scan", "jax"])
def test_calls_of_several_epochs_skip_the_ones_they_do_not_need(
        monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Four epochs a call: 7 epochs run as a call of 4 and a call of 3 (one skipped), and
    with a callback every epoch is a call of its own (three skipped); all exact."""
    monkeypatch.setattr(loop, "MAX_EPOCHS_PER_CALL", 4)
    be = _CompiledScanNumpy() if backend == "numpy-compiled-scan" else make_backend("jax",
                                                                                      "float64")
    ref = softmax_sgd_reference(0.5, 7, 2)
    seen: list[int] = []
    for callbacks in ([], [lambda info: seen.append(info.epoch)]):
        history = train.fit(models.mlp(), "softmax_cross_entropy", START, X, Y, backend=be,
                            lr=0.5, epochs=7, batch_size=BATCH, seed=2, callbacks=callbacks)
        # float64 against the float64 NumPy reference: 1e-12 relative.
        np.testing.assert_allclose(history.losses, ref["losses"], rtol=1e-12)
        np.testing.assert_allclose(history.params["W0"], ref["W0"], rtol=1e-12)
    assert seen == list(range(7))


def test_small_problems_run_several_epochs_a_call() -> None:
    """The epochs a call follow the shapes: many for a small problem, one for a large one,
    never past the limits."""
    be = make_backend("jax", "float32")
    program = loop.program(be, models.mlp(), losses.softmax_cross_entropy, optim.sgd(0.1))

    def per_call(n: int, features: int) -> int:
        runner = loop.MiniBatch(program, np.zeros((n, features), np.float32),
                                np.zeros((n, 2), np.float32), 8, 0)
        return runner._epochs_per_call({"W0": np.zeros((features, 2)), "b0": np.zeros(2)})

    assert per_call(100, 3) == loop.MAX_EPOCHS_PER_CALL
    assert per_call(1_000_000, 3) == 1
    many = per_call(20_000, 3)  # bounded by the orders' bytes: 2**18 / (20,000 * 4) = 3
    assert many == loop.ORDERS_PER_CALL_BYTES // (20_000 * 4) == 3


def test_jax_compiles_one_epoch_program_for_every_chunk_length(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The model runs only while JAX traces: one epoch program (a full batch and the ragged
    one) and the full-data loss, however many epochs and chunks of whichever lengths follow."""
    be = make_backend("jax", "float64")
    traced: list[int] = []

    def recorded(backend: Backend, p: dict, x: Any) -> Any:
        traced.append(x.shape[0])
        return models.mlp()(backend, p, x)

    monkeypatch.setattr(loop, "MAX_CHUNK", 3)
    runs = {}
    for epochs in (1, 7, 5):  # chunks [1], [3, 2, 2], [3, 2]
        runs[epochs] = train.fit(recorded, "softmax_cross_entropy", START, X, Y, backend=be,
                                 lr=0.5, epochs=epochs, batch_size=BATCH, seed=2)
    assert sorted(traced) == [N % BATCH, BATCH, N]
    # float64 on JAX against the float64 NumPy reference: 1e-12 relative.
    np.testing.assert_allclose(runs[7].losses, softmax_sgd_reference(0.5, 7, 2)["losses"],
                               rtol=1e-12)
    assert runs[5].compile_s == 0.0 < runs[1].compile_s


def test_batches_are_gathered_from_data_moved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data cross to the backend once per fit (plus one integer order per epoch), not
    once per batch."""
    be = make_backend("torch", "float64")
    moved: list[tuple[int, ...]] = []

    def recording(name: str) -> Any:
        method = getattr(type(be), name)

        def record(self: Backend, obj: Any, **kwargs: Any) -> Any:
            moved.append(np.shape(obj))
            return method(self, obj, **kwargs)

        return record

    for name in ("from_host", "asarray"):
        monkeypatch.setattr(type(be), name, recording(name))
    train.fit(models.mlp(), "softmax_cross_entropy", START, X, Y, backend=be, lr=0.5,
              epochs=4, batch_size=BATCH)
    assert sorted(shape for shape in moved if shape in (X.shape, Y.shape)) == sorted(
        [X.shape, Y.shape])
    assert moved.count((N,)) == 4  # one order per epoch (eager torch runs no warm-up)
