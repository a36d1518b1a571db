"""Data parallelism on JAX, in one process over all its devices of the backend's platform.

A ``jax.sharding.Mesh`` with one ``batch`` axis spans the devices. Data, parameters and
optimizer state are replicated over it (``NamedSharding`` with an empty spec); inside the
compiled step each batch is constrained to be sharded along its first axis, so XLA splits the
forward and backward pass over the devices and reduces the gradient itself. The reduction is
XLA's partitioning of the same mean, so uneven shards (XLA pads them) are weighted exactly.
On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` gives N host devices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradbridge.core.backend import Array

AXIS = "batch"


@dataclass(frozen=True)
class JaxDataParallel:
    """Batches sharded over a one-axis mesh; everything else replicated on it."""

    mesh: Mesh

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(str(device) for device in self.mesh.devices.flat)

    @property
    def processes(self) -> int:
        return jax.process_count()

    @property
    def world_size(self) -> int:
        return int(self.mesh.devices.size)

    def place(self, tree: Any) -> Any:
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def averaged(self, value_and_grad: Any) -> Any:
        sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))

        def of_shards(params: Any, xb: Array, yb: Array) -> tuple[Array, Any]:
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), sharded)
            return value_and_grad(params, xb, yb)

        return of_shards

    def slowest(self, seconds: tuple[float, ...]) -> tuple[float, ...]:
        return seconds  # one process: its own clock


@functools.cache
def engine(platform: str) -> JaxDataParallel:
    """The engine over every device of ``platform`` ('cpu' or 'gpu'), one per process."""
    return JaxDataParallel(Mesh(np.array(jax.devices(platform)), (AXIS,)))
