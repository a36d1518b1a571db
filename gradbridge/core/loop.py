"""The training loop under ``fit``: compiled programs, the runners that advance whole epochs,
and the pipelined epoch loop (chunking, timing, callbacks, divergence).

One training step is a pure function ``(params, state) -> (params, state), loss``. Full-batch
training without callbacks runs epochs in chunks: on a backend whose ``scan`` compiles into one
loop (``capabilities.compiled_scan``, JAX's lax.scan) a chunk is ``be.jit(scan(step))``, one
compiled call for up to MAX_CHUNK epochs; elsewhere ``scan`` is a Python loop over
``be.jit(step)`` (on NumPy a traced and replayed step, on PyTorch eager unless torch.compile is
switched on, which then compiles the step once instead of unrolling the loop).

Mini-batch training keeps the data on the backend too. Each epoch's order is drawn on the host
(:func:`gradbridge.core.data.epoch_order`, so every backend sees the same batches) and moved
as one integer array (with the compiled call that uses it, where there is one); batches are
gathered on the backend by integer indexing. With a compiled scan an epoch is one compiled
program: a scan over blocks of full batches (each block's rows gathered into one reused buffer
of about BLOCK_BYTES), the batches left over, then the ragged last batch as one more step of its
own size inside the same program, so it is exact and compiles nothing else; one program serves
every chunk length. Small problems run up to MAX_EPOCHS_PER_CALL epochs a call (``be.cond``
skips those a call does not need, so one program serves them all), and at most CALLS_IN_FLIGHT
calls are unfinished at once, so the orders held by queued calls stay bounded. Elsewhere the
jitted step is called per batch.

The host looks at the losses once per chunk (one device sync), checks them for divergence and,
if it has to stop, replays from the chunk's start to recover the last good parameters. Without
callbacks the next chunk is launched before the host looks, so on JAX (which dispatches
asynchronously) the check overlaps the device's work instead of stalling it. Programs are kept
across calls for the same backend, model, loss and optimizer, so fitting the same problem again
does not compile again.

Under ``parallel="data"`` a program is built around an engine (:mod:`gradbridge.core.parallel`):
the step's ``value_and_grad`` is the engine's, averaged over the shards of each batch, and the
data, parameters and optimizer state are placed where every shard can read them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradbridge.core import data, tree
from gradbridge.core.backend import Array, Backend, TrainingDiverged
from gradbridge.core.callbacks import CallbackLike, EpochEnd, stops
from gradbridge.core.history import History
from gradbridge.core.losses import Loss
from gradbridge.core.models import Model, Params
from gradbridge.core.optim import Optimizer
from gradbridge.core.parallel import Engine, Placement

__all__ = ["MAX_CHUNK", "PROGRAMS_KEPT", "Call", "FullBatch", "Loop", "MiniBatch", "Program",
           "Runner", "chunk_lengths", "program"]

MAX_CHUNK = 1000
"""Most epochs run between two looks at the losses (divergence checks) when nothing needs more."""

BLOCK_BYTES = 1 << 20
"""About how many bytes of rows of x and y a compiled epoch gathers at once (at least a batch).

A whole epoch's gather would hold one more copy of the data, in a buffer too large for the
allocator to keep (so its pages fault in again every epoch); blocks of 1 MiB stay in cache."""

CALLS_IN_FLIGHT = 2
"""Most compiled mini-batch calls launched and unfinished at once: one running while the host
draws and launches the next is all the overlap there is to have."""

CALL_FLOPS = 1 << 28
"""About how much arithmetic one compiled mini-batch call is given, in epochs: a call costs
~50 µs of host time and more of the runtime's (at N = 1,400 x 64, batch 128, one epoch a call
took 285 µs an epoch, ten a call 185), so small problems run several epochs a call."""

MAX_EPOCHS_PER_CALL = 16
"""Most epochs one compiled mini-batch call runs (epochs it skips still cost a cond each)."""

ORDERS_PER_CALL_BYTES = 1 << 18
"""Most bytes of epoch orders one compiled mini-batch call takes."""

LOSSES_PER_CHUNK = 1 << 14
"""Most batch losses one chunk holds before the host looks (bounds a mini-batch chunk)."""

PROGRAMS_KEPT = 16
"""How many (backend, model, loss, optimizer) programs stay compiled between ``fit`` calls."""

Carry = tuple[Params, dict[str, Any]]
Chunk = Callable[[Carry, Array, Array], tuple[Carry, Array]]
Epochs = Callable[[Carry, Array, Array, Array, Array], tuple[Carry, Array]]


# ------------------------------------------------------------------------ programs


class Program:
    """The functions ``fit`` runs for one (backend, model, loss, optimizer): the training step,
    the loss on given data, chunks of full-batch epochs and mini-batch epochs, each wrapped in
    ``be.jit`` once; with an ``engine``, its gradients are averaged over the shards of a batch.

    Kept across ``fit`` calls (see :func:`program`), so training the same problem again, on
    any data, neither traces nor compiles again and runs warm functions from its first epoch.
    """

    def __init__(self, be: Backend, model: Model, loss_fn: Loss, opt: Optimizer,
                 engine: Engine | None = None) -> None:
        self.be, self.engine = be, engine

        def objective(p: Params, xb: Array, yb: Array) -> Array:
            return loss_fn(be, model(be, p, xb), yb)

        value_and_grad = be.value_and_grad(objective)
        if engine is not None:
            value_and_grad = engine.averaged(value_and_grad)

        def step(carry: Carry, xb: Array, yb: Array) -> tuple[Carry, Array]:
            params, state = carry
            value, grads = value_and_grad(params, xb, yb)
            return opt.update(be, params, grads, state), value

        capabilities = be.capabilities
        self.traces = 0
        """How often a jitted function's Python body ran: once per trace where ``jit`` stages
        (JAX, NumPy), at every call where it runs eagerly."""
        self.step = be.jit(self._counted(step))
        self.evaluate = be.jit(self._counted(objective))
        self.stages = capabilities.jit_needs_warm_up
        self.loops_in_python = not capabilities.compiled_scan
        self._raw_step = step
        self._chunks: dict[int, Chunk] = {}
        self._epochs: dict[tuple[int, int], Epochs] = {}

    def chunk(self, length: int) -> Chunk:
        """``length`` full-batch epochs as one call returning the carry and their losses.

        Where ``scan`` is a loop the backend compiles whole, the chunk is jitted as one
        program. Elsewhere ``scan`` is a Python loop that a compiler such as ``torch.compile``
        would unroll ``length`` times into one huge graph, so the step is what gets jitted and
        the loop stays in Python.
        """
        if length not in self._chunks:
            be = self.be
            step = self.step if self.loops_in_python else self._raw_step

            def run_chunk(carry: Carry, x: Array, y: Array) -> tuple[Carry, Array]:
                return be.scan(lambda c: step(c, x, y), carry, length)

            self._chunks[length] = (run_chunk if self.loops_in_python
                                    else be.jit(self._counted(run_chunk)))
        return self._chunks[length]

    def epochs(self, batch_size: int, count: int) -> Epochs:
        """Up to ``count`` mini-batch epochs as one compiled call, for a backend with a
        compiled scan: ``(carry, x, y, orders, active) -> (carry, losses)``. ``orders`` holds
        ``count`` epochs' orders, one a row; the first ``active`` of them run (``be.cond``
        skips the rest), so one program serves any number of epochs up to ``count``.
        ``losses`` has a row of batch losses per epoch; rows from ``active`` on are zeros.

        In an epoch the full batches run in blocks of about BLOCK_BYTES of rows: a scan over
        the blocks gathers each block's rows of ``x`` and ``y`` in the epoch's order at once
        (into one buffer the program reuses), then scans its contiguous batches. The batches
        left over (fewer than a block) and the ragged last batch (one more step of its own
        size) follow in the same program, so it is exact and one compilation serves every
        epoch of this data shape.
        ``orders`` may be a host array: a compiled call moves it along with its launch (next to
        the data, on their device), which in a loop of launches costs a fraction of a separate
        ``from_host`` (see benchmarks/README.md).
        """
        if (batch_size, count) not in self._epochs:
            be, step = self.be, self._raw_step

            def batches(carry: Carry, x: Array, y: Array, rows: Array,
                        steps: int) -> tuple[Carry, Array]:
                """``steps`` steps on the batches of ``rows`` (steps * batch_size of them)."""
                xs = be.reshape(x[rows], (steps, batch_size, *x.shape[1:]))
                ys = be.reshape(y[rows], (steps, batch_size, *y.shape[1:]))

                def batch_step(state: tuple[Carry, Array]) -> tuple[tuple[Carry, Array], Array]:
                    inner, index = state
                    inner, value = step(inner, xs[index], ys[index])
                    return (inner, index + 1), value

                (carry, _), values = be.scan(batch_step, (carry, 0), steps)
                return carry, values

            def run_epoch(carry: Carry, x: Array, y: Array, order: Array) -> tuple[Carry, Array]:
                n, full = order.shape[0], order.shape[0] // batch_size
                per_block = max(1, min(full, BLOCK_BYTES // (batch_size * _row_bytes(be, x, y))))
                blocks, rest = divmod(full, per_block)
                block_rows = per_block * batch_size
                parts = []
                if blocks == 1:
                    carry, values = batches(carry, x, y, order[:block_rows], per_block)
                    parts.append(values)
                elif blocks > 1:
                    namespace: Any = be  # the Backend protocol lists no arange
                    offsets = namespace.arange(block_rows, dtype=order.dtype)

                    def block_step(state: tuple[Carry, Array]) -> tuple[tuple[Carry, Array], Array]:
                        inner, start = state
                        rows = order[start + offsets]
                        inner, values = batches(inner, x, y, rows, per_block)
                        return (inner, start + block_rows), values

                    (carry, _), values = be.scan(block_step, (carry, 0), blocks)
                    parts.append(be.reshape(values, (blocks * per_block,)))
                begin, end = blocks * block_rows, full * batch_size
                if rest:
                    carry, values = batches(carry, x, y, order[begin:end], rest)
                    parts.append(values)
                if end < n:
                    carry, last = step(carry, x[order[end:]], y[order[end:]])
                    parts.append(be.reshape(last, (1,)))
                return carry, parts[0] if len(parts) == 1 else be.concat(parts)

            def run_epochs(carry: Carry, x: Array, y: Array, orders: Array,
                           active: Array) -> tuple[Carry, Array]:
                if count == 1:  # nothing to skip
                    carry, values = run_epoch(carry, x, y, orders[0])
                    return carry, be.reshape(values, (1, -1))
                skipped = be.zeros((math.ceil(orders.shape[1] / batch_size),))

                def one_epoch(state: tuple[Carry, Array]) -> tuple[tuple[Carry, Array], Array]:
                    inner, index = state
                    inner, values = be.cond(index < active,
                                            lambda c: run_epoch(c, x, y, orders[index]),
                                            lambda c: (c, skipped), inner)
                    return (inner, index + 1), values

                (carry, _), values = be.scan(one_epoch, (carry, 0), count)
                return carry, values

            self._epochs[batch_size, count] = be.jit(self._counted(run_epochs))
        return self._epochs[batch_size, count]

    def place(self, tree: Any) -> Any:
        """Backend arrays moved to where the program computes (as they are on one device)."""
        return tree if self.engine is None else self.engine.place(tree)

    def _counted(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, adding one to ``traces`` each time its Python body runs."""
        def body(*args: Any) -> Any:
            self.traces += 1
            return fn(*args)
        return body


def _row_bytes(be: Backend, x: Array, y: Array) -> int:
    """Bytes of one row of ``x`` and of ``y`` together (both floating)."""
    namespace: Any = be  # the Backend protocol lists no finfo
    return sum(math.prod(a.shape[1:]) * namespace.finfo(a.dtype).bits // 8 for a in (x, y))


_programs: OrderedDict[tuple[Any, ...], Program] = OrderedDict()
"""The PROGRAMS_KEPT programs used last, most recent last."""


def program(be: Backend, model: Model, loss_fn: Loss, opt: Optimizer,
            engine: Engine | None = None) -> Program:
    """The kept program for these four (and engine), or a new one kept in place of the least
    recently used.

    Functions and the built-in optimizers (frozen dataclasses) compare by value or identity; an
    optimizer that cannot be hashed gets a program for this fit only. A kept program refers to
    its model, loss and optimizer (and what they close over) but never to any data.
    """
    key = (be, model, loss_fn, opt, engine)
    try:
        kept = _programs.pop(key, None)
    except TypeError:
        return Program(be, model, loss_fn, opt, engine)
    if kept is None:
        kept = Program(be, model, loss_fn, opt, engine)
    _programs[key] = kept
    while len(_programs) > PROGRAMS_KEPT:
        _programs.popitem(last=False)
    return kept


# ------------------------------------------------------------------------- runners


class Runner:
    """Advances (params, state) by whole epochs and brings their losses to the host.

    The data live on the backend only, moved there once: the host arrays given are not kept
    (on NumPy, and on PyTorch's CPU, the backend's arrays share their memory anyway).
    """

    losses_per_epoch = 1
    """How many losses one epoch leaves for the host to fetch."""

    def __init__(self, program: Program, x_host: np.ndarray, y_host: np.ndarray) -> None:
        self.program, self.be = program, program.be
        self.x, self.y = program.place((self.be.from_host(x_host), self.be.from_host(y_host)))

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
        return np.asarray(self.be.to_numpy(values), dtype=np.float64).reshape(length)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        """Compile what the run will call, outside the clock; returns the epochs it executed."""
        raise NotImplementedError

    def full_loss(self, params: Params) -> float:
        """The loss of ``params`` on all the data."""
        return float(self.be.to_numpy(self.program.evaluate(params, self.x, self.y)))

    def _two_steps(self, carry: Carry, xb: Array, yb: Array) -> Carry:
        """Two chained steps: a step's output may have another signature than its input (NumPy
        scalars for 0-d arrays), so the second one traces too."""
        for _ in range(2):
            carry, _ = self.program.step(carry, xb, yb)
        return carry


class FullBatch(Runner):
    """Every epoch is one step on all the data; ``length`` epochs run as one chunk call."""

    def launch(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, Any]:
        return self.program.chunk(length)(carry, self.x, self.y)

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        if self.program.loops_in_python:  # chunks loop over the jitted step: two steps trace it
            carry, executed = self._two_steps(carry, self.x, self.y), 2.0
        else:
            ends = [self.run(carry, 0, length)[0] for length in lengths]
            carry, executed = ends[-1], float(sum(lengths))
        self.full_loss(carry[0])  # on a step's output, as after training
        return executed


@dataclass
class Call:
    """One launched compiled mini-batch call: its batch losses, on the backend until fetched
    (then in float64 on the host), and how many epochs of it ran."""

    losses: Any
    epochs: int


class MiniBatch(Runner):
    """Each epoch walks the data in the order ``data.epoch_order(n, seed, epoch)``, moved to the
    backend as one integer array per epoch; batches are gathered there. An epoch's loss is the
    plain mean of its batch losses, taken on the host in float64."""

    def __init__(self, program: Program, x_host: np.ndarray, y_host: np.ndarray,
                 batch_size: int, seed: int) -> None:
        super().__init__(program, x_host, y_host)
        self.batch_size, self.seed = batch_size, seed
        self.n = x_host.shape[0]
        self.losses_per_epoch = math.ceil(self.n / batch_size)
        self._in_flight: deque[Call] = deque()
        """Launched compiled calls not known to be finished, oldest first."""

    def launch(self, carry: Carry, first_epoch: int, length: int) -> tuple[Carry, Any]:
        epochs = range(first_epoch, first_epoch + length)
        if self.program.loops_in_python:  # scan's loop pulls one batch per step
            step, batches = self.program.step, self._batches(epochs)
            return self.be.scan(lambda c: step(c, *next(batches)), carry,
                                length * self.losses_per_epoch)
        count = self._epochs_per_call(carry[0])
        run_epochs, calls = self.program.epochs(self.batch_size, count), []
        for begin in range(first_epoch, first_epoch + length, count):
            active = min(count, first_epoch + length - begin)
            self._wait_for_room()
            # the host orders go with the compiled call (see Program.epochs)
            carry, losses = run_epochs(carry, self.x, self.y,
                                       self._orders(begin, active, count), active)
            calls.append(Call(losses, active))
            self._in_flight.append(calls[-1])
        return carry, calls

    def fetch(self, values: Any, length: int) -> np.ndarray:
        if isinstance(values, list):  # the Calls of launch
            host = np.concatenate([self._on_host(call.losses).reshape(
                -1, self.losses_per_epoch)[:call.epochs] for call in values])
        else:
            host = self._on_host(values)
        return host.reshape(length, self.losses_per_epoch).mean(axis=1)

    def _on_host(self, losses: Any) -> np.ndarray:
        """Batch losses in float64 on the host, fetched unless they already are."""
        return np.asarray(losses if isinstance(losses, np.ndarray) else self.be.to_numpy(losses),
                          dtype=np.float64)

    def _epochs_per_call(self, params: Params) -> int:
        """How many epochs one compiled call runs: about CALL_FLOPS of arithmetic (6 per
        sample and parameter, forward and backward), at most MAX_EPOCHS_PER_CALL and
        ORDERS_PER_CALL_BYTES of orders. A function of the shapes alone, so the same fit always
        runs the same program."""
        size = sum(math.prod(leaf.shape) for leaf in tree.flatten(params)[0])
        order_bytes = self.n * data.index_dtype(self.n).itemsize
        return max(1, min(MAX_EPOCHS_PER_CALL, CALL_FLOPS // (6 * self.n * max(size, 1)),
                          ORDERS_PER_CALL_BYTES // order_bytes))

    def _orders(self, first_epoch: int, active: int, count: int) -> np.ndarray:
        """The orders of epochs first_epoch .. first_epoch + active - 1 as the rows of a
        (count, n) host array; rows past ``active`` (skipped by the call) are zeros."""
        if count == 1:  # a view of the order, so a large one stays aligned (see epoch_order)
            return data.epoch_order(self.n, self.seed, first_epoch)[None]
        orders = np.zeros((count, self.n), dtype=data.index_dtype(self.n))
        for row in range(active):
            orders[row] = data.epoch_order(self.n, self.seed, first_epoch + row)
        return orders

    def _wait_for_room(self) -> None:
        """Block until fewer than CALLS_IN_FLIGHT launched calls are unfinished, fetching the
        oldest one's losses to the host (its Call keeps them for ``fetch``).

        Each unfinished call holds its orders (one integer per sample and epoch, as large as
        the data when a sample is one float32 feature and target), and asynchronous dispatch
        would otherwise run ahead by up to a whole chunk of epochs.
        """
        while len(self._in_flight) >= CALLS_IN_FLIGHT:
            call = self._in_flight.popleft()
            call.losses = self._on_host(call.losses)

    def _order(self, epoch: int) -> Array:
        """This epoch's sample order, on the backend's device (integers keep their dtype)."""
        return self.be.from_host(data.epoch_order(self.n, self.seed, epoch))

    def _batches(self, epochs: range) -> Iterator[tuple[Array, Array]]:
        """The batches of these epochs, gathered on the backend; an epoch's order is let go
        before the next one is drawn."""
        for epoch in epochs:
            order = self._order(epoch)
            for begin in range(0, self.n, self.batch_size):
                rows = order[begin:begin + self.batch_size]
                yield self.x[rows], self.y[rows]
            del order, rows

    def warm_up(self, carry: Carry, lengths: set[int]) -> float:
        if self.program.loops_in_python:  # both batch sizes' steps, traced twice each
            first = self._order(0)
            sizes = {self.batch_size, self.n % self.batch_size} - {0}
            ends = [self._two_steps(carry, self.x[first[:size]], self.y[first[:size]])
                    for size in sizes]
            carry, executed = ends[-1], 2 * len(sizes) / self.losses_per_epoch
        else:  # two chained calls of one epoch: the second sees a step's output, as the run
            carry = self.run(self.run(carry, 0, 1)[0], 1, 1)[0]  # will; one program for all
            executed = 2.0
        self.full_loss(carry[0])  # on a step's output, as after training
        return executed


# --------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class Launched:
    """A chunk started by ``Runner.launch`` whose losses the host has not looked at yet."""

    first_epoch: int
    start: Carry
    length: int
    values: Any
    """Its losses, where the backend made them."""


@dataclass(frozen=True)
class Saved:
    """A carry the loop keeps to replay from, and the epoch it starts."""

    epoch: int
    carry: Carry


class Loop:
    """The epoch loop around a runner: chunking, timing, callbacks and divergence."""

    def __init__(self, be: Backend, runner: Runner, template: Params, epochs: int,
                 callbacks: Sequence[CallbackLike], max_loss: float, hint: str,
                 placement: Placement) -> None:
        self.be, self.runner, self.template, self.epochs = be, runner, template, epochs
        self.callbacks, self.max_loss, self.hint = callbacks, max_loss, hint
        self.placement = placement
        most = max(1, min(MAX_CHUNK, LOSSES_PER_CHUNK // runner.losses_per_epoch))
        self.lengths = [1] * epochs if callbacks else chunk_lengths(epochs, most)
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
        epoch, previous = 0, Saved(0, carry)
        stopped = False
        tic = time.perf_counter()
        pending: Launched | None = None  # launched, losses not yet checked (see launch)
        for length in self.lengths:
            start = carry
            carry, values = self.runner.launch(carry, epoch, length)
            if pending is not None:  # the previous chunk, checked while this one runs
                previous = self._check(pending, previous, tic)
            pending, epoch = Launched(epoch, start, length, values), epoch + length
            if self.callbacks:  # they look at every epoch before the next one starts
                previous, pending = self._check(pending, previous, tic), None
                info = EpochEnd(epoch - 1, float(self.losses[epoch - 1]),
                                self._in_order(start[0]), self._in_order(carry[0]), be)
                if any([stops(callback, info) for callback in self.callbacks]):
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

    def _check(self, launched: Launched, previous: Saved, tic: float) -> Saved:
        """Keep a launched chunk's losses, or raise TrainingDiverged at its first bad one;
        returns the chunk's start, the next chunk's ``previous``."""
        values = self.runner.fetch(launched.values, launched.length)
        bad = np.flatnonzero(~(np.isfinite(values) & (values <= self.max_loss)))
        start = Saved(launched.first_epoch, launched.start)
        if bad.size:
            self._record(values[:bad[0]])
            raise self._diverged(start.epoch + int(bad[0]), float(values[bad[0]]),
                                 previous, start, time.perf_counter() - tic)
        self._record(values)
        return start

    def _diverged(self, bad_epoch: int, bad_loss: float, previous: Saved, start: Saved,
                  run_s: float) -> TrainingDiverged:
        """Replay from the latest saved carry to the parameters of the last finite loss."""
        good_epoch = bad_epoch - 1
        saved = start if good_epoch >= start.epoch else previous
        carry = saved.carry
        if good_epoch > saved.epoch:
            carry, _ = self.runner.run(carry, saved.epoch, good_epoch - saved.epoch)
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
        engine = self.runner.program.engine
        if engine is not None:
            compile_s, run_s = engine.slowest((compile_s, run_s))
        return History(
            losses=losses,
            params=tree.tree_map(lambda v: np.array(v, dtype=np.float64),
                                 tree.to_numpy(be, self._in_order(params))),
            epochs=epochs, stopped_early=stopped, compile_s=compile_s, run_s=run_s,
            per_epoch_s=run_s / epochs if epochs else 0.0,
            backend=be.name, device=be.device, dtype=be.dtype, final_loss=final_loss,
            devices=list(self.placement.devices), processes=self.placement.processes,
            world_size=self.placement.world_size,
        )


def chunk_lengths(epochs: int, most: int) -> list[int]:
    """Split ``epochs`` into nearly equal chunks of at most ``most`` (at most two lengths)."""
    count = math.ceil(epochs / most)
    base, extra = divmod(epochs, count)
    return [base + 1] * extra + [base] * (count - extra)
