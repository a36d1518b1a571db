"""``fit``: gradient-descent training written once for every backend.

``fit`` checks its arguments, converts the data once on the host to the backend's dtype (not
at all when they already have it), and hands them to the loop (:mod:`gradbridge.core.loop`),
which moves them to the backend once and runs the epochs. The callbacks and the ``History``
it returns live in :mod:`gradbridge.core.callbacks` and :mod:`gradbridge.core.history`, and
are importable from here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradbridge.core import callbacks as callbacks_
from gradbridge.core import data, losses, optim, tree
from gradbridge.core import parallel as _parallel
from gradbridge.core.backend import Backend, InvalidArgument, invalid
from gradbridge.core.callbacks import (
    Callback,
    CallbackLike,
    EarlyStopping,
    EpochEnd,
    LogEvery,
    early_stopping,
    log_every,
)
from gradbridge.core.history import History
from gradbridge.core.loop import FullBatch, Loop, MiniBatch, Runner
from gradbridge.core.loop import program as _program  # tests look kept programs up here
from gradbridge.core.losses import Loss
from gradbridge.core.models import Model, Params
from gradbridge.core.optim import Optimizer

__all__ = ["Callback", "CallbackLike", "EarlyStopping", "EpochEnd", "History", "LogEvery",
           "early_stopping", "fit", "log_every"]

BYTES_PER_EPOCH = 96
"""Host memory one epoch's loss costs, estimated: a float64 slot, a Python float in
``History.losses`` and its JSON text (86 measured with ``gradbridge train --json``)."""


def fit(model: Model, loss: Loss | str, params: Params, x: Any, y: Any, *,
        backend: Backend | str | None = None, optimizer: Optimizer | str = "sgd",
        lr: float = 0.1, epochs: int = 50, batch_size: int | None = None, seed: int = 0,
        callbacks: Sequence[CallbackLike] = (), max_loss: float = 1e12,
        parallel: str | None = None) -> History:
    """Train ``model`` on host data ``x``, ``y`` by minimizing ``loss``; return its History.

    ``params`` is a dict of host arrays or numbers (the starting point, copied). ``optimizer``
    is a name (``"sgd"``, ``"momentum"``, ``"adam"``, built with ``lr``) or an Optimizer object,
    which brings its own learning rate. ``batch_size=None`` (or N) trains on the full batch;
    smaller batches follow ``data.epoch_order(n, seed, epoch)``. ``callbacks`` (Callback objects
    or functions of an EpochEnd) run after every epoch and may stop training early.
    A non-finite loss or one above ``max_loss`` raises TrainingDiverged carrying the history
    up to the last finite loss and the parameters that produced it. A parameter the model reads
    but ``params`` lacks, or a loss history too large for memory, is an InvalidArgument.
    ``parallel="data"`` splits every batch over the backend's devices or processes and averages
    the shards' gradients, weighted by their sizes (JAX: this process's devices; PyTorch: the
    processes of a torchrun or ``gradbridge launch`` job, each given the same data); the losses
    equal a single-device run to rounding. A loss other than a mean over samples is exact on
    JAX only (PyTorch averages the shards' losses).
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
    # The data in the backend's dtype, converted once (not at all when it already is); the
    # runner moves them to the backend and keeps only that copy.
    x_host, y_host = data.check_xy(x, y, dtype=be.dtype)
    n = x_host.shape[0]
    batch_size = data.check_batch_size(batch_size, n)
    engine = _parallel.engine(be, parallel)
    placement = _parallel.single(be) if engine is None else _parallel.Placement.of(engine)
    _parallel.check_batches(placement, n, batch_size)
    if not callable(model) or not callable(loss_fn):
        raise invalid("model and loss", (model, loss_fn),
                      "functions model(be, params, x) and loss(be, prediction, target)")
    start = _host_params(params)
    program = _program(be, model, loss_fn, opt, engine)
    largest, sample = data.largest_magnitude(x_host, y_host), x_host[:1].copy()
    runner: Runner
    if batch_size is None or batch_size == n:
        runner = FullBatch(program, x_host, y_host)
    else:
        runner = MiniBatch(program, x_host, y_host, batch_size, seed)
    del x_host, y_host
    callbacks_.begin(callbacks)
    loop = Loop(be, runner, start, epochs, callbacks, max_loss, _divergence_hint(opt, largest),
                placement)
    with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, reported below
        on_backend = tree.to_backend(be, start)
        try:
            return loop.run(program.place((on_backend, opt.init(be, on_backend))))
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
