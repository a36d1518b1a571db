"""Callbacks: what ``fit`` calls after every epoch (logging, early stopping, user functions)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradbridge.core import data, tree
from gradbridge.core.backend import Backend, invalid
from gradbridge.core.models import Params

__all__ = ["Callback", "CallbackLike", "EarlyStopping", "EpochEnd", "LogEvery", "begin",
           "early_stopping", "log_every", "stops"]


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


def begin(callbacks: Sequence[CallbackLike]) -> None:
    """Check that every callback is a Callback or a function, and reset the Callback objects."""
    for callback in callbacks:
        if isinstance(callback, Callback):
            callback.on_train_begin()
        elif not callable(callback):
            raise invalid("callbacks", callback, "Callback objects or functions f(EpochEnd)")


def stops(callback: CallbackLike, info: EpochEnd) -> bool:
    """Run one callback; True means stop."""
    if isinstance(callback, Callback):
        return bool(callback.on_epoch_end(info))
    return bool(callback(info))


def _short(value: np.ndarray) -> str:
    if value.ndim == 0:
        return f"{float(value):.4f}"
    if value.size <= 4:
        return "[" + ", ".join(f"{float(v):.4f}" for v in value.ravel()) + "]"
    return f"<array {value.shape}>"
