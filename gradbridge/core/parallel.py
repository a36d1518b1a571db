"""Data-parallel training: what ``fit(..., parallel="data")`` asks of a backend, and its checks.

A backend whose ``capabilities.data_parallel`` is true hands ``fit`` an :class:`Engine` built on
its framework's own distributed machinery (``backends/jax_parallel.py``: one process over a
``jax.sharding`` mesh; ``backends/torch_parallel.py``: one ``torch.distributed`` process per
device). The engine turns the whole batch's ``value_and_grad`` into one computed from each
device's shard and averaged with the shards weighted by their sizes, so the result equals the
single-device one to rounding; the loop, the batch orders and the optimizer stay the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gradbridge.core.backend import Array, Backend, InvalidArgument, invalid
from gradbridge.core.models import Params

__all__ = ["MODES", "Engine", "Placement", "check_batches", "engine", "is_main_process",
           "single"]

MODES = ("data",)
"""The values ``fit(parallel=...)`` accepts besides None (one device)."""

ValueAndGrad = Callable[[Params, Array, Array], tuple[Array, Params]]


@dataclass(frozen=True)
class Placement:
    """Where a run computed: every device used, the processes and the number of shards."""

    devices: tuple[str, ...]
    processes: int
    world_size: int

    @classmethod
    def of(cls, engine: Engine) -> Placement:
        return cls(tuple(engine.devices), engine.processes, engine.world_size)


@runtime_checkable
class Engine(Protocol):
    """A backend's data-parallel engine; hashable, so programs using it are kept across fits."""

    @property
    def devices(self) -> tuple[str, ...]:
        """Every device computing a shard, in shard order."""
    @property
    def processes(self) -> int: ...
    @property
    def world_size(self) -> int:
        """How many shards each batch is split into."""

    def place(self, tree: Any) -> Any:
        """Arrays of the backend moved to where every shard can read them (data, parameters
        and optimizer state are replicated over this process's devices)."""

    def averaged(self, value_and_grad: ValueAndGrad) -> ValueAndGrad:
        """``value_and_grad`` of the whole batch, computed from each device's shard of it."""

    def slowest(self, seconds: tuple[float, ...]) -> tuple[float, ...]:
        """Timings every process agrees on: each the largest over the processes."""


@runtime_checkable
class SupportsDataParallel(Protocol):
    """A backend that builds an :class:`Engine` (its ``capabilities.data_parallel`` says so)."""

    def data_parallel_engine(self) -> Engine: ...


def single(be: Backend) -> Placement:
    """The placement of an ordinary run: the backend's device, one process."""
    return Placement((be.device,), 1, 1)


def engine(be: Backend, parallel: str | None) -> Engine | None:
    """The engine for ``fit(parallel=...)``: None for one device, else the backend's own."""
    if parallel is None:
        return None
    if parallel not in MODES:
        raise invalid("parallel", parallel,
                      f"one of {', '.join(map(repr, MODES))}, or None for one device")
    if not be.capabilities.data_parallel or not isinstance(be, SupportsDataParallel):
        raise InvalidArgument(
            f"parallel={parallel!r} needs a framework with a distributed engine, which the "
            f"{be.name} backend has not; use backend='jax' (one process over all its devices) "
            "or backend='torch' (one process per device, started by torchrun or "
            "gradbridge launch)")
    return be.data_parallel_engine()


def check_batches(placement: Placement, n: int, batch_size: int | None) -> None:
    """Every batch, the ragged last one too, must give each of the world's shards a sample."""
    world = placement.world_size
    size = n if batch_size is None else batch_size
    if size < world:
        what = f"batch_size={size}" if batch_size is not None else f"the full batch of n={n}"
        raise InvalidArgument(
            f"{what} cannot be split over world_size={world} devices: each needs at least one "
            f"sample of every batch; use a batch_size of at least {world}, or fewer devices")
    last = n % size
    if 0 < last < world:
        raise InvalidArgument(
            f"the last batch of every epoch has {last} samples (n={n}, batch_size={size}), "
            f"fewer than world_size={world} devices: choose a batch_size that leaves 0 or at "
            f"least {world} samples for the last batch")


def is_main_process() -> bool:
    """Whether this process is rank 0 of a launched job (or not launched): the one that prints
    and writes files."""
    return os.environ.get("RANK", "0") == "0"
