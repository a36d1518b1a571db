"""``fit``: gradient-descent training written once for every backend, and its ``History``.

One training step is a pure function ``(params, state) -> (params, state), loss``. Full-batch
training without callbacks runs epochs in chunks through ``be.jit(scan(step))``, so JAX compiles
a whole chunk of epochs into one call while NumPy and PyTorch run ``BackendBase.scan``'s Python
loop. The host looks at the losses once per chunk (one device sync), checks them for divergence
and, if it has to stop, replays from the chunk's start to recover the last good parameters.

Mini-batch orders come from :func:`gradbridge.core.data.epoch_order` on the host, so every
backend sees the same batches; an epoch's recorded loss is then the plain mean of its batch
losses, each computed before that batch's update.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradbridge.core import data, losses, optim, tree
from gradbridge.core.backend import Array, Backend, InvalidArgument, TrainingDiverged, invalid
from gradbridge.core.losses import Loss
from gradbridge.core.models import Model, Params
from gradbridge.core.optim import Optimizer

__all__ = ["Callback", "CallbackLike", "EarlyStopping", "EpochEnd", "History", "LogEvery",
           "early_stopping", "fit", "log_every"]

MAX_CHUNK = 1000
"""Most epochs run between two looks at the losses (divergence checks) when nothing needs more."""

Carry = tuple[Params, dict[str, Any]]


@dataclass
class History:
    """What a training run produced; every number is on the host.

    ``losses[i]`` is the loss of epoch ``i`` computed with the parameters at the start of that
    epoch, before its update (as the tutorial prints it); ``params`` are the final parameters
    as float64 copies and ``final_loss`` is the full-data loss of exactly those parameters.
    ``compile_s`` is the time spent tracing and compiling (0 on backends without ``jit``): the
    warm-up calls' time less the epochs they executed; ``run_s`` is the training time after
    compilation and ``per_epoch_s = run_s / epochs``. The history a TrainingDiverged carries
    ends at the last finite loss, with the parameters that produced it.
    """

    losses: list[float]
    params: dict[str, Any]
    epochs: int
    stopped_early: bool
    compile_s: float
    run_s: float
    per_epoch_s: float
    backend: str
    device: str
    dtype: str
    final_loss: float


# ------------------------------------------------------------------------ callbacks


@dataclass(frozen=True)
class EpochEnd:
    """What a callback sees after each epoch, on the backend: the epoch's loss, the parameters
    that loss was computed with (the epoch's start) and the parameters after its update."""

    epoch: int
    loss: float
    params: Params
    updated_params: Params
    backend: Backend

    def host_params(self, updated: bool = False) -> Params:
        """The epoch's starting (or, with ``updated``, its final) parameters as NumPy arrays."""
        return tree.to_numpy(self.backend, self.updated_params if updated else self.params)


class Callback:
    """Hook into ``fit`` once per epoch; ``on_epoch_end`` returns True to stop training.

    A plain function ``f(info: EpochEnd)`` works as a callback too (a true result stops).
    Callbacks need Python control after every epoch, so passing any makes ``fit`` run one
    epoch per compiled call instead of whole chunks.
    """

    def on_train_begin(self) -> None:
        """Reset any state, so that one callback object can serve several runs."""

    def on_epoch_end(self, info: EpochEnd) -> bool:
        return False


CallbackLike = Callback | Callable[[EpochEnd], Any]


class LogEvery(Callback):
    """Every ``every`` epochs (0, every, 2*every, ...) print the epoch's loss and the parameters
    after its update, as the tutorial's loop prints them."""

    def __init__(self, every: int, printer: Callable[[str], Any] = print) -> None:
        self.every = data.check_count("every", every)
        self.printer = printer

    def on_epoch_end(self, info: EpochEnd) -> bool:
        if info.epoch % self.every == 0:
            shown = ", ".join(f"{name}={_short(value)}"
                              for name, value in tree.named_leaves(info.host_params(updated=True)))
            self.printer(f"epoch {info.epoch}: loss={info.loss:.4f}, {shown}")
        return False


class EarlyStopping(Callback):
    """Stop once the loss has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = data.check_count("patience", patience)
        if not min_delta >= 0:
            raise invalid("min_delta", min_delta, "a number >= 0")
        self.min_delta = float(min_delta)
        self.on_train_begin()

    def on_train_begin(self) -> None:
        self.best = math.inf
        self.waited = 0

    def on_epoch_end(self, info: EpochEnd) -> bool:
        if info.loss < self.best - self.min_delta:
            self.best, self.waited = info.loss, 0
        else:
            self.waited += 1
        return self.waited >= self.patience


def log_every(every: int, printer: Callable[[str], Any] = print) -> LogEvery:
    """A callback printing ``epoch k: loss=..., w=..., b=...`` every ``every`` epochs."""
    return LogEvery(every, printer)


def early_stopping(patience: int, min_delta: float = 0.0) -> EarlyStopping:
    """A callback stopping training when the loss stops improving."""
    return EarlyStopping(patience, min_delta)


def _short(value: np.ndarray) -> str:
    if value.ndim == 0:
        return f"{float(value):.4f}"
    if value.size <= 4:
        return "[" + ", ".join(f"{float(v):.4f}" for v in value.ravel()) + "]"
    return f"<array {value.shape}>"


# ------------------------------------------------------------------------ fit


def fit(model: Model, loss: Loss | str, params: Params, x: Any, y: Any, *,
        backend: Backend | str | None = None, optimizer: Optimizer | str = "sgd",
        lr: float = 0.1, epochs: int = 50, batch_size: int | None = None, seed: int = 0,
        callbacks: Sequence[CallbackLike] = (), max_loss: float = 1e12) -> History:
    """Train ``model`` on host data ``x``, ``y`` by minimizing ``loss``; return its History.

    ``params`` is a dict of host arrays or numbers (the starting point, copied). ``optimizer``
    is a name (``"sgd"``, ``"momentum"``, ``"adam"``, built with ``lr``) or an Optimizer object,
    which brings its own learning rate. ``batch_size=None`` (or N) trains on the full batch;
    smaller batches follow ``data.epoch_order(n, seed, epoch)``. ``callbacks`` (Callback objects
    or functions of an EpochEnd) run after every epoch and may stop training early.
    A non-finite loss or one above ``max_loss`` raises TrainingDiverged carrying the history
    up to the last finite loss and the parameters that produced it.
    """
    be = _resolve_backend(backend)
    optim.check_lr(lr)
    loss_fn = losses.get(loss) if isinstance(loss, str) else loss
    opt = optim.get(optimizer)(lr) if isinstance(optimizer, str) else optimizer
    epochs = data.check_count("epochs", epochs)
    seed = data.check_seed(seed)
    if not 0 < max_loss <= math.inf:
        raise invalid("max_loss", max_loss, "a number > 0")
    x_host, y_host = data.check_xy(x, y)
    n = x_host.shape[0]
    batch_size = data.check_batch_size(batch_size, n)
    if not callable(model) or not callable(loss_fn):
        raise invalid("model and loss", (model, loss_fn),
                      "functions model(be, params, x) and loss(be, prediction, target)")
    start = _host_params(params)

    def objective(p: Params, xb: Array, yb: Array) -> Array:
        return loss_fn(be, model(be, p, xb), yb)

    runner: _Runner
    if batch_size is None or batch_size == n:
        runner = _FullBatch(be, objective, opt, x_host, y_host)
    else:
        runner = _MiniBatch(be, objective, opt, x_host, y_host, batch_size, seed)
    for callback in callbacks:
        if isinstance(callback, Callback):
            callback.on_train_begin()
        elif not callable(callback):
            raise invalid("callbacks", callback, "Callback objects or functions f(EpochEnd)")
    loop = _Loop(be, runner, start, epochs, callbacks, max_loss, opt)
    with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, reported below
        on_backend = tree.to_backend(be, start)
        return loop.run((on_backend, opt.init(be, on_backend)))


def _host_params(params: Params) -> Params:
    """A float64 host copy of the starting parameters, each leaf checked to be finite."""
    try:
        host = tree.tree_map(lambda v: np.array(v, dtype=np.float64), params)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"params must be a dict of numbers or arrays: {exc}") from exc
    if not isinstance(host, dict) or not host:
        raise invalid("params", params, "a non-empty dict of arrays or numbers")
    for name, value in tree.named_leaves(host):
        if not np.all(np.isfinite(value)):
            raise InvalidArgument(f"params[{name!r}] contains NaN or inf; start from finite values")
    return host


def _resolve_backend(backend: Backend | str | None) -> Backend:
    if backend is None or isinstance(backend, str):
        from gradbridge.config import get_backend

        return get_backend(backend)
    return backend


class _Runner:
    """Advances (params, state) by whole epochs and brings their losses to the host."""

    def __init__(self, be: Backend, objective: Callable[..., Array], opt: Optimizer,
                 x_host: np.ndarray, y_host: np.ndarray) -> None:
        self.be, self.x_host, self.y_host = be, x_host, y_host
        self.x, self.y = be.asarray(x_host), be.asarray(y_host)
        value_and_grad = be.value_and_grad(objective)

        def step(carry: Carry, xb: Array, yb: Array) -> tuple[Carry, Array]:
            params, state = carry
            value, grads = value_and_grad(params, xb, yb)
            return opt.update(be, params, grads, state), value

        self.step = step
        self.evaluate = be.jit(objective)

    def run(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, np.ndarray]:
        """Run epochs first_epoch .. first_epoch + length - 1; their losses in float64."""
        raise NotImplementedError

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        """Compile what the run will call, outside the clock; returns the epochs it executed."""
        raise NotImplementedError

    def full_loss(self, params: Params) -> float:
        """The loss of ``params`` on all the data."""
        return float(self.be.to_numpy(self.evaluate(params, self.x, self.y)))


class _FullBatch(_Runner):
    """Every epoch is one step on all the data; ``length`` epochs run as one jitted scan."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.chunks: dict[int, Callable[..., tuple[Carry, Array]]] = {}

    def chunk(self, length: int) -> Callable[..., tuple[Carry, Array]]:
        if length not in self.chunks:
            step, be = self.step, self.be

            def run_chunk(carry: Carry, x: Array, y: Array) -> tuple[Carry, Array]:
                return be.scan(lambda c: step(c, x, y), carry, length)

            self.chunks[length] = be.jit(run_chunk)
        return self.chunks[length]

    def run(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, np.ndarray]:
        carry, values = self.chunk(length)(carry, self.x, self.y)
        return carry, np.asarray(self.be.to_numpy(values), dtype=np.float64).reshape(length)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        for length in lengths:
            self.run(carry, 0, length)
        self.full_loss(carry[0])
        return float(sum(lengths))


class _MiniBatch(_Runner):
    """Each epoch walks the data in the order ``data.epoch_order(n, seed, epoch)``."""

    def __init__(self, be: Backend, objective: Callable[..., Array], opt: Optimizer,
                 x_host: np.ndarray, y_host: np.ndarray, batch_size: int, seed: int) -> None:
        super().__init__(be, objective, opt, x_host, y_host)
        self.batch_size, self.seed = batch_size, seed
        self.batch_step = be.jit(self.step)
        self.n = x_host.shape[0]
        self.batches_per_epoch = math.ceil(self.n / batch_size)

    def run(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, np.ndarray]:
        be, values = self.be, []
        for epoch in range(first_epoch, first_epoch + length):
            order = data.epoch_order(self.n, self.seed, epoch)
            for begin in range(0, self.n, self.batch_size):
                rows = order[begin:begin + self.batch_size]
                carry, value = self.batch_step(carry, be.asarray(self.x_host[rows]),
                                               be.asarray(self.y_host[rows]))
                values.append(value)
        batch_losses = np.asarray(be.to_numpy(be.stack(values)), dtype=np.float64)
        return carry, batch_losses.reshape(length, self.batches_per_epoch).mean(axis=1)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        sizes = {self.batch_size, self.n % self.batch_size} - {0}
        for size in sizes:
            self.batch_step(carry, self.be.asarray(self.x_host[:size]),
                            self.be.asarray(self.y_host[:size]))
        self.full_loss(carry[0])
        return len(sizes) / self.batches_per_epoch


class _Loop:
    """The epoch loop around a runner: chunking, timing, callbacks and divergence."""

    def __init__(self, be: Backend, runner: _Runner, template: Params, epochs: int,
                 callbacks: Sequence[CallbackLike], max_loss: float, opt: Optimizer) -> None:
        self.be, self.runner, self.template, self.epochs = be, runner, template, epochs
        self.callbacks, self.max_loss, self.opt = callbacks, max_loss, opt
        self.lengths = [1] * epochs if callbacks else _chunk_lengths(epochs)
        self.losses: list[float] = []

    def run(self, carry: Carry) -> History:
        be = self.be
        warm_s, warm_epochs = 0.0, 0.0
        if be.capabilities.has_jit:
            tic = time.perf_counter()
            warm_epochs = self.runner.warm_up(carry, set(self.lengths))
            be.synchronize()
            warm_s = time.perf_counter() - tic
        epoch, previous = 0, (0, carry)
        stopped = False
        tic = time.perf_counter()
        for length in self.lengths:
            chunk_start = (epoch, carry)
            start_params = self._in_order(carry[0])
            carry, values = self.runner.run(carry, epoch, length)
            bad = np.flatnonzero(~(np.isfinite(values) & (values <= self.max_loss)))
            if bad.size:
                self.losses += values[:bad[0]].tolist()
                raise self._diverged(epoch + int(bad[0]), float(values[bad[0]]),
                                     previous, chunk_start, time.perf_counter() - tic)
            self.losses += values.tolist()
            previous, epoch = chunk_start, epoch + length
            if self.callbacks:
                info = EpochEnd(epoch - 1, self.losses[-1], start_params,
                                self._in_order(carry[0]), be)
                if any([_call(callback, info) for callback in self.callbacks]):
                    stopped = epoch < self.epochs
                    break
        be.synchronize()
        run_s = time.perf_counter() - tic
        per_epoch_s = run_s / epoch
        compile_s = max(0.0, warm_s - warm_epochs * per_epoch_s)
        return self._history(carry[0], stopped, compile_s, run_s,
                             self.runner.full_loss(carry[0]))

    def _diverged(self, bad_epoch: int, bad_loss: float, previous: tuple[int, Carry],
                  chunk_start: tuple[int, Carry], run_s: float) -> TrainingDiverged:
        """Replay from the latest saved carry to the parameters of the last finite loss."""
        good_epoch = bad_epoch - 1
        start_epoch, carry = chunk_start if good_epoch >= chunk_start[0] else previous
        if good_epoch > start_epoch:
            carry, _ = self.runner.run(carry, start_epoch, good_epoch - start_epoch)
        last = self.losses[-1] if self.losses else None
        history = self._history(carry[0], False, 0.0, run_s,
                                math.nan if last is None else last)
        why = ("is not finite" if not math.isfinite(bad_loss)
               else f"exceeds max_loss={self.max_loss:g}")
        before = (f"the last good loss was {last:.6g} at epoch {good_epoch}" if last is not None
                  else "the starting parameters already give this loss")
        return TrainingDiverged(
            f"training diverged at epoch {bad_epoch}: the loss {bad_loss:.6g} {why}; {before}",
            epoch=bad_epoch, last_finite_loss=last, history=history,
            hint=f"lower the learning rate (lr={self.opt.lr:g})",
        )

    def _in_order(self, params: Params) -> Params:
        """``params`` with the caller's key order (JAX hands dicts back with sorted keys)."""
        return tree.tree_map(lambda _, leaf: leaf, self.template, params)

    def _history(self, params: Params, stopped: bool, compile_s: float, run_s: float,
                 final_loss: float) -> History:
        be, epochs = self.be, len(self.losses)
        return History(
            losses=list(self.losses),
            params=tree.tree_map(lambda v: np.array(v, dtype=np.float64),
                                 tree.to_numpy(be, self._in_order(params))),
            epochs=epochs, stopped_early=stopped, compile_s=compile_s, run_s=run_s,
            per_epoch_s=run_s / epochs if epochs else 0.0,
            backend=be.name, device=be.device, dtype=be.dtype, final_loss=final_loss,
        )


def _call(callback: CallbackLike, info: EpochEnd) -> bool:
    """Run one callback; True means stop."""
    if isinstance(callback, Callback):
        return bool(callback.on_epoch_end(info))
    return bool(callback(info))


def _chunk_lengths(epochs: int) -> list[int]:
    """Split ``epochs`` into nearly equal chunks of at most MAX_CHUNK (at most two lengths)."""
    count = math.ceil(epochs / MAX_CHUNK)
    base, extra = divmod(epochs, count)
    return [base + 1] * extra + [base] * (count - extra)
