"""Data parallelism on JAX, in one process over all its devices of the backend's platform.

A ``jax.sharding.Mesh`` with one ``batch`` axis spans the devices. Data, parameters and
optimizer state are replicated over it (``NamedSharding`` with an empty spec); inside the
compiled step each batch is constrained to be sharded along its first axis, so XLA splits the
forward and backward pass over the devices and reduces the gradient itself. The reduction is
XLA's partitioning of the same mean, so uneven shards (XLA pads them) are weighted exactly.
On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` gives N host devices.

Under ``gradbridge launch`` (which sets ``GRADBRIDGE_JAX_DISTRIBUTED=1`` beside torchrun's
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) the first JAX backend joins the job through
``jax.distributed.initialize`` (its coordinator on MASTER_PORT + 1; gloo collectives on CPU),
and the mesh spans every process's devices: the same program, with XLA's collectives between
processes. Each process passes the same host data; replicated arrays are assembled from it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradbridge.core.backend import Array, InvalidArgument

AXIS = "batch"
DISTRIBUTED_VARIABLE = "GRADBRIDGE_JAX_DISTRIBUTED"


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
        replicated = NamedSharding(self.mesh, PartitionSpec())
        if jax.process_count() == 1:
            return jax.device_put(tree, replicated)

        def assembled(leaf: Any) -> Any:  # from this process's copy, the same on every one
            host = np.asarray(leaf)
            return jax.make_array_from_callback(host.shape, replicated, lambda index: host[index])

        return jax.tree_util.tree_map(assembled, tree)

    def averaged(self, value_and_grad: Any) -> Any:
        sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))

        def of_shards(params: Any, xb: Array, yb: Array) -> tuple[Array, Any]:
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), sharded)
            return value_and_grad(params, xb, yb)

        return of_shards

    def slowest(self, seconds: tuple[float, ...]) -> tuple[float, ...]:
        if jax.process_count() == 1:
            return seconds
        from jax.experimental import multihost_utils

        every = multihost_utils.process_allgather(np.asarray(seconds, dtype=np.float64))
        return tuple(float(value) for value in np.max(every, axis=0))


def join_launched_job() -> None:
    """Join the job of ``gradbridge launch`` (once, before JAX starts); elsewhere do nothing."""
    if os.environ.get(DISTRIBUTED_VARIABLE) != "1" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = f"{os.environ['MASTER_ADDR']}:{int(os.environ['MASTER_PORT']) + 1}"
    jax.distributed.initialize(address, int(os.environ["WORLD_SIZE"]),
                               int(os.environ["RANK"]))


def engine(platform: str) -> JaxDataParallel:
    """The engine over every device of ``platform`` ('cpu' or 'gpu') of every process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > jax.process_count():
        raise InvalidArgument(
            f"this process is one of WORLD_SIZE={world} started by a launcher, but JAX did not "
            "join them (only gradbridge launch starts jax.distributed): run it with "
            "'gradbridge launch --nproc N script.py', or as one process over its devices")
    return _engine(platform)


@functools.cache
def _engine(platform: str) -> JaxDataParallel:
    """One engine per platform, so programs built on it are kept across fits."""
    return JaxDataParallel(Mesh(np.array(jax.devices(platform)), (AXIS,)))
