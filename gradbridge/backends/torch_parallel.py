"""Data parallelism on PyTorch: one process per device, joined by ``torch.distributed``.

The process group starts from the launcher's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``, set by ``torchrun`` or ``gradbridge launch``): gloo on CPU,
NCCL on CUDA. Every rank holds the same data and parameters and takes its contiguous share of
every batch (sizes differ by at most one); its loss and gradients, weighted by its share of the
batch, are summed over the ranks in one all-reduce, which gives every rank the whole batch's
mean exactly and bit-for-bit the same. The group's timeout (``GRADBRIDGE_PARALLEL_TIMEOUT``
seconds) bounds how long a rank waits for one that has failed.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gradbridge.core.backend import Array, InvalidArgument, tree_map

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_VARIABLE = "GRADBRIDGE_PARALLEL_TIMEOUT"
TIMEOUT_S = 120.0
"""How long a collective waits for the other ranks before the job fails (default)."""


@dataclass(frozen=True)
class TorchDataParallel:
    """This rank's share of every batch; gradients summed over the process group."""

    rank: int
    world_size: int
    devices: tuple[str, ...]

    @property
    def processes(self) -> int:
        return self.world_size

    def place(self, tree: Any) -> Any:
        return tree  # every rank already holds its own copy on its device

    def averaged(self, value_and_grad: Any) -> Any:
        rank, world = self.rank, self.world_size

        def of_shards(params: Any, xb: Array, yb: Array) -> tuple[Array, Any]:
            m = xb.shape[0]
            begin, end = rank * m // world, (rank + 1) * m // world
            value, grads = value_and_grad(params, xb[begin:end], yb[begin:end])
            leaves: list[torch.Tensor] = []
            tree_map(leaves.append, grads)
            flat = torch.cat([value.reshape(1), *(leaf.reshape(-1) for leaf in leaves)])
            flat = flat * ((end - begin) / m)
            dist.all_reduce(flat)
            sizes = [1, *(leaf.numel() for leaf in leaves)]
            parts = iter(torch.split(flat, sizes))
            total = next(parts).reshape(value.shape)
            return total, tree_map(lambda leaf: next(parts).reshape(leaf.shape), grads)

        return of_shards

    def slowest(self, seconds: tuple[float, ...]) -> tuple[float, ...]:
        clock = torch.tensor(seconds, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            clock = clock.cuda()
        dist.all_reduce(clock, op=dist.ReduceOp.MAX)
        return tuple(clock.cpu().tolist())


def engine(device: torch.device) -> TorchDataParallel:
    """The engine of this launched process, joining (once) the process group of its job."""
    if not dist.is_available():
        raise InvalidArgument("parallel='data' needs torch.distributed, which this PyTorch "
                              "build lacks; install a build with distributed support")
    if not dist.is_initialized():
        missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
        if missing:
            raise InvalidArgument(
                f"parallel='data' on torch runs one process per device, started by a "
                f"launcher, but {', '.join(missing)} not set: start the script with "
                "'gradbridge launch --nproc N script.py' or 'torchrun --nproc-per-node N "
                "script.py'")
        _check_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=_timeout()))
        atexit.register(_leave)
    return _engine(str(device))


@functools.cache
def _engine(device: str) -> TorchDataParallel:
    """One engine per process (and device), so programs built on it are kept across fits."""
    devices: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(devices, device)
    return TorchDataParallel(dist.get_rank(), dist.get_world_size(), tuple(devices))


def _leave() -> None:
    """Leave the group at exit: a gloo group torn down with the interpreter aborts the process
    (``terminate called without an active exception``) and so fails the job."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _check_device(device: torch.device) -> None:
    """On CUDA each rank needs its own GPU: the one its LOCAL_RANK names."""
    if device.type != "cuda":
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index not in (None, local):
        raise InvalidArgument(
            f"rank with LOCAL_RANK={local} was given device cuda:{device.index}; each process "
            f"needs its own GPU: make its backend with device=f\"cuda:{{LOCAL_RANK}}\"")
    torch.cuda.set_device(local)


def _timeout() -> float:
    """The collective timeout in seconds, from GRADBRIDGE_PARALLEL_TIMEOUT or the default."""
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidArgument(f"environment variable {TIMEOUT_VARIABLE}={text!r} is not "
                              "valid; expected a number of seconds > 0")
    return value
