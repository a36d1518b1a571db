"""``fit``: gradient-descent training written once for every backend, and its ``History``.

One training step is a pure function ``(params, state) -> (params, state), loss``. Full-batch
training without callbacks runs epochs in chunks: on a backend whose ``scan`` compiles into one
loop (JAX's lax.scan) a chunk is ``be.jit(scan(step))``, one compiled call for up to MAX_CHUNK
epochs; elsewhere ``scan`` is a Python loop over ``be.jit(step)`` (on NumPy a traced and
replayed step, on PyTorch eager unless torch.compile is switched on, which then compiles the
step once instead of unrolling the loop). The host looks at the losses once per chunk (one
device sync), checks them for divergence and, if it has to stop, replays from the chunk's start
to recover the last good parameters. Without callbacks the next chunk is launched before the
host looks, so on JAX (which dispatches asynchronously) the check overlaps the device's work
instead of stalling it. The compiled functions are kept across calls for the same backend,
model, loss and optimizer, so fitting the same problem again does not compile again.

Data are converted once, on the host, to the backend's dtype (not at all when they already
have it). Full-batch training keeps only the backend's copy; mini-batch training keeps only the
host copy and gathers each batch there, since the protocol indexes by integers and slices only.
Mini-batch orders come from :func:`gradbridge.core.data.epoch_order` on the host, so every
backend sees the same batches; an epoch's recorded loss is then the plain mean of its batch
losses, each computed before that batch's update.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
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

PROGRAMS_KEPT = 16
"""How many (backend, model, loss, optimizer) programs stay compiled between ``fit`` calls."""

BYTES_PER_EPOCH = 96
"""Host memory one epoch's loss costs, estimated: a float64 slot, a Python float in
``History.losses`` and its JSON text (86 measured with ``gradbridge train --json``)."""

Carry = tuple[Params, dict[str, Any]]
_Launched = tuple[Any, tuple[int, Carry], int]
"""A chunk in flight: its losses where the backend made them, its (epoch, carry) start, length."""


@dataclass
class History:
    """What a training run produced; every number is on the host.

    ``losses[i]`` is the loss of epoch ``i`` computed with the parameters at the start of that
    epoch, before its update (as the tutorial prints it); ``params`` are the final parameters
    as float64 copies and ``final_loss`` is the full-data loss of exactly those parameters.
    ``compile_s`` is the time this fit spent tracing and compiling: the warm-up calls' time
    less the epochs they executed, and exactly 0 when nothing was traced (an earlier ``fit`` of
    the same backend, model, loss and optimizer traced it already, or the backend runs eagerly);
    ``run_s`` is the training time after that and ``per_epoch_s = run_s / epochs``. The history a
    TrainingDiverged carries ends at the last finite loss, with the parameters that produced it.
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
    up to the last finite loss and the parameters that produced it. A parameter the model reads
    but ``params`` lacks, or a loss history too large for memory, is an InvalidArgument.
    """
    be = _resolve_backend(backend)
    optim.check_lr(lr)
    loss_fn = losses.get(loss) if isinstance(loss, str) else loss
    opt = optim.get(optimizer)(lr) if isinstance(optimizer, str) else optimizer
    epochs = data.check_count("epochs", epochs)
    data.check_memory(float(epochs) * BYTES_PER_EPOCH, f"epochs={epochs} (the loss history)",
                      "train for fewer epochs")
    seed = data.check_seed(seed)
    if not 0 < max_loss <= math.inf:
        raise invalid("max_loss", max_loss, "a number > 0")
    # The data in the backend's dtype, converted once (not at all when it already is); full
    # batches keep only the backend's copy, mini-batches only this one (see the runners).
    x_host, y_host = data.check_xy(x, y, dtype=be.dtype)
    n = x_host.shape[0]
    batch_size = data.check_batch_size(batch_size, n)
    if not callable(model) or not callable(loss_fn):
        raise invalid("model and loss", (model, loss_fn),
                      "functions model(be, params, x) and loss(be, prediction, target)")
    start = _host_params(params)
    program = _program(be, model, loss_fn, opt)
    largest, sample = data.largest_magnitude(x_host, y_host), x_host[:1].copy()
    runner: _Runner
    if batch_size is None or batch_size == n:
        runner = _FullBatch(program, x_host, y_host)
    else:
        runner = _MiniBatch(program, x_host, y_host, batch_size, seed)
    del x_host, y_host
    for callback in callbacks:
        if isinstance(callback, Callback):
            callback.on_train_begin()
        elif not callable(callback):
            raise invalid("callbacks", callback, "Callback objects or functions f(EpochEnd)")
    loop = _Loop(be, runner, start, epochs, callbacks, max_loss, _divergence_hint(opt, largest))
    with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, reported below
        on_backend = tree.to_backend(be, start)
        try:
            return loop.run((on_backend, opt.init(be, on_backend)))
        except KeyError as exc:
            error = _missing_params(be, model, on_backend, sample)
            if error is None:
                raise
            raise error from exc


def _divergence_hint(opt: Optimizer, largest: tuple[float, str]) -> str:
    """What to try when training diverges: scale large data, else lower the learning rate."""
    value, where = largest
    if value > data.LARGE_DATA:
        return (f"the data are large, up to {value:.3g} in {where}: standardize or scale the "
                "columns (e.g. to mean 0 and standard deviation 1) before training")
    return f"lower the learning rate (lr={opt.lr:g})"


class _ReadLog(dict[Any, Any]):
    """Parameters that note, in order, each name a model reads."""

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.read: list[Any] = []

    def __getitem__(self, key: Any) -> Any:
        if key not in self.read:
            self.read.append(key)
        return super().__getitem__(key)


def _missing_params(be: Backend, model: Model, params: Params,
                    sample: np.ndarray) -> InvalidArgument | None:
    """The error for a model reading parameters that ``params`` lacks, found by running it on
    one sample, each missing one set to 0 in turn; None when nothing is missing."""
    log, x = _ReadLog(params), be.from_host(sample)
    complete = False
    for _ in range(len(params) + 8):
        try:
            model(be, log, x)
            complete = True
            break
        except KeyError as exc:
            if not exc.args or exc.args[0] in log:
                break  # not a missing parameter: the KeyError came from elsewhere
            log[exc.args[0]] = be.zeros(())
        except Exception:  # a 0 of the wrong shape: the names read so far must do
            break
    missing = [name for name in log.read if name not in params]
    if not missing:
        return None
    needs = ", ".join(map(repr, log.read)) + ("" if complete else ", ... (at least)")
    return InvalidArgument(
        f"params lacks {', '.join(map(repr, missing))}, which the model "
        f"{getattr(model, '__name__', model)} reads; params has {', '.join(map(repr, params))}; "
        f"the model needs {needs}; add the missing ones (models.init_* make complete params)"
    )


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


class _Program:
    """The functions ``fit`` runs for one (backend, model, loss, optimizer): the training step,
    the loss on given data, and chunks of epochs, each wrapped in ``be.jit`` once.

    Kept across ``fit`` calls (see :func:`_program`), so training the same problem again, on
    any data, neither traces nor compiles again and runs warm functions from its first epoch.
    """

    def __init__(self, be: Backend, model: Model, loss_fn: Loss, opt: Optimizer) -> None:
        self.be = be

        def objective(p: Params, xb: Array, yb: Array) -> Array:
            return loss_fn(be, model(be, p, xb), yb)

        value_and_grad = be.value_and_grad(objective)

        def step(carry: Carry, xb: Array, yb: Array) -> tuple[Carry, Array]:
            params, state = carry
            value, grads = value_and_grad(params, xb, yb)
            return opt.update(be, params, grads, state), value

        self.traces = 0
        """How often a jitted function's Python body ran: once per trace where ``jit`` stages
        (JAX, NumPy), at every call where it runs eagerly."""
        counted_step = self._counted(step)
        self.step = be.jit(counted_step)
        self.stages = self.step is not counted_step  # be.jit may trace or compile: warm up
        self.evaluate = be.jit(self._counted(objective))
        self.loops_in_python = not getattr(be, "compiled_scan", False)
        self._raw_step = step
        self._chunks: dict[int, Callable[[Carry, Array, Array], tuple[Carry, Array]]] = {}

    def chunk(self, length: int) -> Callable[[Carry, Array, Array], tuple[Carry, Array]]:
        """``length`` full-batch epochs as one call returning the carry and their losses.

        Where ``scan`` is a loop the backend compiles whole (``lax.scan`` on JAX, which says so
        with ``compiled_scan = True``), the chunk is jitted as one program. Elsewhere ``scan``
        is a Python loop that a compiler such as ``torch.compile`` would unroll ``length`` times
        into one huge graph, so the step is what gets jitted and the loop stays in Python.
        """
        if length not in self._chunks:
            be = self.be
            step = self.step if self.loops_in_python else self._raw_step

            def run_chunk(carry: Carry, x: Array, y: Array) -> tuple[Carry, Array]:
                return be.scan(lambda c: step(c, x, y), carry, length)

            self._chunks[length] = (run_chunk if self.loops_in_python
                                    else be.jit(self._counted(run_chunk)))
        return self._chunks[length]

    def _counted(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, adding one to ``traces`` each time its Python body runs."""
        def body(*args: Any) -> Any:
            self.traces += 1
            return fn(*args)
        return body


_programs: OrderedDict[tuple[Any, ...], _Program] = OrderedDict()
"""The PROGRAMS_KEPT programs used last, most recent last."""


def _program(be: Backend, model: Model, loss_fn: Loss, opt: Optimizer) -> _Program:
    """The kept program for these four, or a new one kept in place of the least recently used.

    Functions and the built-in optimizers (frozen dataclasses) compare by value or identity; an
    optimizer that cannot be hashed gets a program for this fit only. A kept program refers to
    its model, loss and optimizer (and what they close over) but never to any data.
    """
    key = (be, model, loss_fn, opt)
    try:
        program = _programs.pop(key, None)
    except TypeError:
        return _Program(be, model, loss_fn, opt)
    if program is None:
        program = _Program(be, model, loss_fn, opt)
    _programs[key] = program
    while len(_programs) > PROGRAMS_KEPT:
        _programs.popitem(last=False)
    return program


class _Runner:
    """Advances (params, state) by whole epochs and brings their losses to the host."""

    def __init__(self, program: _Program) -> None:
        self.program, self.be = program, program.be

    def run(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, np.ndarray]:
        """Run epochs first_epoch .. first_epoch + length - 1; their losses in float64."""
        carry, values = self.launch(carry, first_epoch, length)
        return carry, self.fetch(values, length)

    def launch(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, Any]:
        """Start those epochs; their losses stay where the backend made them (see fetch).

        On a backend that dispatches asynchronously (JAX) this returns before the work is
        done, so the host can look at the previous chunk's losses meanwhile.
        """
        raise NotImplementedError

    def fetch(self, values: Any, length: int) -> np.ndarray:
        """The losses ``launch`` returned for ``length`` epochs, on the host in float64."""
        return np.asarray(values, dtype=np.float64)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        """Compile what the run will call, outside the clock; returns the epochs it executed."""
        raise NotImplementedError

    def full_loss(self, params: Params) -> float:
        """The loss of ``params`` on all the data."""
        raise NotImplementedError

    def _two_steps(self, carry: Carry, xb: Array, yb: Array) -> Carry:
        """Two chained steps: a step's output may have another signature than its input (NumPy
        scalars for 0-d arrays), so the second one traces too."""
        for _ in range(2):
            carry, _ = self.program.step(carry, xb, yb)
        return carry


class _FullBatch(_Runner):
    """Every epoch is one step on all the data; ``length`` epochs run as one chunk call.

    The data live on the backend only: the host arrays given are not kept (on NumPy, and on
    PyTorch's CPU, the backend's arrays share their memory anyway).
    """

    def __init__(self, program: _Program, x_host: np.ndarray, y_host: np.ndarray) -> None:
        super().__init__(program)
        self.x, self.y = self.be.from_host(x_host), self.be.from_host(y_host)

    def launch(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, Any]:
        return self.program.chunk(length)(carry, self.x, self.y)

    def fetch(self, values: Any, length: int) -> np.ndarray:
        return np.asarray(self.be.to_numpy(values), dtype=np.float64).reshape(length)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        if self.program.loops_in_python:  # chunks loop over the jitted step: two steps trace it
            carry, executed = self._two_steps(carry, self.x, self.y), 2.0
        else:
            ends = [self.run(carry, 0, length)[0] for length in lengths]
            carry, executed = ends[-1], float(sum(lengths))
        self.full_loss(carry[0])  # on a step's output, as after training
        return executed

    def full_loss(self, params: Params) -> float:
        return float(self.be.to_numpy(self.program.evaluate(params, self.x, self.y)))


class _MiniBatch(_Runner):
    """Each epoch walks the data in the order ``data.epoch_order(n, seed, epoch)``.

    Batches are gathered on the host (the protocol indexes with integers and slices only) and
    moved to the backend one at a time, so the data live on the host only; the loss on all of
    it moves the whole data to the backend for that one call.
    """

    def __init__(self, program: _Program, x_host: np.ndarray, y_host: np.ndarray,
                 batch_size: int, seed: int) -> None:
        super().__init__(program)
        self.x_host, self.y_host = x_host, y_host
        self.batch_size, self.seed = batch_size, seed
        self.n = x_host.shape[0]
        self.batches_per_epoch = math.ceil(self.n / batch_size)

    def launch(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, np.ndarray]:
        be, step = self.be, self.program.step
        batches = self._batches(first_epoch, length)
        if self.program.loops_in_python:  # scan's loop pulls one batch per step
            carry, losses = be.scan(lambda c: step(c, *next(batches)), carry,
                                    length * self.batches_per_epoch)
        else:  # a compiled scan would trace one batch: loop here
            values = []
            for xb, yb in batches:
                carry, value = step(carry, xb, yb)
                values.append(value)
            losses = be.stack(values)
        batch_losses = np.asarray(be.to_numpy(losses), dtype=np.float64)
        return carry, batch_losses.reshape(length, self.batches_per_epoch).mean(axis=1)

    def _batches(self, first_epoch: int, length: int) -> Iterator[tuple[Array, Array]]:
        """The batches of the epochs first_epoch .. first_epoch + length - 1, on the backend."""
        for epoch in range(first_epoch, first_epoch + length):
            order = data.epoch_order(self.n, self.seed, epoch)
            for begin in range(0, self.n, self.batch_size):
                rows = order[begin:begin + self.batch_size]
                yield self.be.from_host(self.x_host[rows]), self.be.from_host(self.y_host[rows])

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        sizes = {self.batch_size, self.n % self.batch_size} - {0}
        ends = [self._two_steps(carry, self.be.from_host(self.x_host[:size]),
                                self.be.from_host(self.y_host[:size])) for size in sizes]
        self.full_loss(ends[-1][0])  # on a step's output, as after training
        return 2 * len(sizes) / self.batches_per_epoch

    def full_loss(self, params: Params) -> float:
        be = self.be
        value = self.program.evaluate(params, be.from_host(self.x_host), be.from_host(self.y_host))
        return float(be.to_numpy(value))


class _Loop:
    """The epoch loop around a runner: chunking, timing, callbacks and divergence."""

    def __init__(self, be: Backend, runner: _Runner, template: Params, epochs: int,
                 callbacks: Sequence[CallbackLike], max_loss: float, hint: str) -> None:
        self.be, self.runner, self.template, self.epochs = be, runner, template, epochs
        self.callbacks, self.max_loss, self.hint = callbacks, max_loss, hint
        self.lengths = [1] * epochs if callbacks else _chunk_lengths(epochs)
        self.losses = np.empty(epochs)  # filled chunk by chunk; Python floats once it's over
        self.done = 0  # epochs whose losses are in self.losses

    def run(self, carry: Carry) -> History:
        be, program = self.be, self.runner.program
        warm_s, warm_epochs, traces = 0.0, 0.0, program.traces
        if program.stages:
            tic = time.perf_counter()
            warm_epochs = self.runner.warm_up(carry, set(self.lengths))
            be.synchronize()
            warm_s = time.perf_counter() - tic
        traced, traces = program.traces > traces, program.traces
        epoch, previous = 0, (0, carry)
        stopped = False
        tic = time.perf_counter()
        pending: _Launched | None = None  # launched, losses not yet checked (see launch)
        for length in self.lengths:
            chunk_start = (epoch, carry)
            carry, values = self.runner.launch(carry, epoch, length)
            if pending is not None:  # the previous chunk, checked while this one runs
                previous = self._check(pending, previous, tic)
            pending, epoch = (values, chunk_start, length), epoch + length
            if self.callbacks:  # they look at every epoch before the next one starts
                previous, pending = self._check(pending, previous, tic), None
                info = EpochEnd(epoch - 1, float(self.losses[epoch - 1]),
                                self._in_order(chunk_start[1][0]), self._in_order(carry[0]), be)
                if any([_call(callback, info) for callback in self.callbacks]):
                    stopped = epoch < self.epochs
                    break
        if pending is not None:
            self._check(pending, previous, tic)
        be.synchronize()
        run_s = time.perf_counter() - tic
        per_epoch_s = run_s / epoch
        # Bodies that ran again while timed run eagerly, so their warm-up compiled nothing (unless
        # jit replays their side effects, as torch.compile does: it says has_jit).
        compiled = traced and (program.traces == traces or be.capabilities.has_jit)
        compile_s = max(0.0, warm_s - warm_epochs * per_epoch_s) if compiled else 0.0
        return self._history(carry[0], stopped, compile_s, run_s,
                             self.runner.full_loss(carry[0]))

    def _check(self, launched: _Launched, previous: tuple[int, Carry],
               tic: float) -> tuple[int, Carry]:
        """Keep a launched chunk's losses, or raise TrainingDiverged at its first bad one;
        returns the chunk's start, the next chunk's ``previous``."""
        device_values, chunk_start, length = launched
        values = self.runner.fetch(device_values, length)
        bad = np.flatnonzero(~(np.isfinite(values) & (values <= self.max_loss)))
        if bad.size:
            self._record(values[:bad[0]])
            raise self._diverged(chunk_start[0] + int(bad[0]), float(values[bad[0]]),
                                 previous, chunk_start, time.perf_counter() - tic)
        self._record(values)
        return chunk_start

    def _diverged(self, bad_epoch: int, bad_loss: float, previous: tuple[int, Carry],
                  chunk_start: tuple[int, Carry], run_s: float) -> TrainingDiverged:
        """Replay from the latest saved carry to the parameters of the last finite loss."""
        good_epoch = bad_epoch - 1
        start_epoch, carry = chunk_start if good_epoch >= chunk_start[0] else previous
        if good_epoch > start_epoch:
            carry, _ = self.runner.run(carry, start_epoch, good_epoch - start_epoch)
        losses = self._losses()
        last = losses[-1] if losses else None
        history = self._history(carry[0], False, 0.0, run_s,
                                math.nan if last is None else last)
        why = ("is not finite" if not math.isfinite(bad_loss)
               else f"exceeds max_loss={self.max_loss:g}")
        before = (f"the last good loss was {last:.6g} at epoch {good_epoch}" if last is not None
                  else "the starting parameters already give this loss")
        return TrainingDiverged(
            f"training diverged at epoch {bad_epoch}: the loss {bad_loss:.6g} {why}; {before}",
            epoch=bad_epoch, last_finite_loss=last, history=history,
            hint=self.hint,
        )

    def _in_order(self, params: Params) -> Params:
        """``params`` with the caller's key order (JAX hands dicts back with sorted keys)."""
        return tree.tree_map(lambda _, leaf: leaf, self.template, params)

    def _record(self, values: np.ndarray) -> None:
        """Keep the losses of the epochs just run."""
        self.losses[self.done:self.done + len(values)] = values
        self.done += len(values)

    def _losses(self) -> list[float]:
        """Every epoch's loss so far, as Python floats."""
        return self.losses[:self.done].tolist()

    def _history(self, params: Params, stopped: bool, compile_s: float, run_s: float,
                 final_loss: float) -> History:
        be, losses = self.be, self._losses()
        epochs = len(losses)
        return History(
            losses=losses,
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
