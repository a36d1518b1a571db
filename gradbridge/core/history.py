"""``History``: what a training run produced, every number on the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["History"]


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
    ``devices`` lists every device that computed (one per shard), ``processes`` how many
    processes ran the job and ``world_size`` how many shards each batch was split into: one
    device and one process for an ordinary run. Under ``parallel="data"`` every process returns
    the same History, its timings the slowest process's.
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
    devices: list[str]
    processes: int
    world_size: int
