"""``gradbridge launch --nproc N script.py [args]``: one process per device, through torchrun.

A thin wrapper of ``python -m torch.distributed.run`` on this machine: N processes, a free
loopback port for their rendezvous, and the launcher's environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT, LOCAL_RANK) in which ``fit(..., parallel="data")`` joins the job:
PyTorch through ``torch.distributed``, JAX through ``jax.distributed`` (asked for by
``GRADBRIDGE_JAX_DISTRIBUTED=1``, which only this command sets).
When one process fails, torchrun stops the others and this exits with its non-zero status.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from typing import Any

LOOPBACK = "127.0.0.1"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "launch", help="run a script in N processes for parallel='data' (torchrun)",
        description="Run SCRIPT in --nproc processes on this machine through "
                    "torch.distributed.run, for fit(..., parallel='data') or 'gradbridge "
                    "train --parallel data' ('gradbridge launch --nproc 2 -m gradbridge "
                    "train --backend torch --parallel data').")
    parser.add_argument("--nproc", type=int, required=True,
                        help="number of processes (one per device)")
    parser.add_argument("--port", type=int, default=None,
                        help="rendezvous port on 127.0.0.1 (default: a free one)")
    parser.add_argument("-m", dest="module", action="store_true",
                        help="SCRIPT is a module, run as python -m SCRIPT")
    parser.add_argument("script", help="the Python script (or module, with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the script")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.core.backend import invalid

    if args.nproc < 1:
        raise invalid("--nproc", args.nproc, "an integer >= 1 (the number of processes)")
    if args.port is not None and not 0 < args.port < 65536:
        raise invalid("--port", args.port, "a port number from 1 to 65535")
    port = _free_port() if args.port is None else args.port
    module = ["--module"] if args.module else []
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
               str(args.nproc), "--master-addr", LOOPBACK, "--master-port", str(port),
               *module, "--", args.script, *args.args]  # after --, all is the script's
    env = {**os.environ, "GRADBRIDGE_JAX_DISTRIBUTED": "1"}  # JAX joins the job too
    status = subprocess.run(command, env=env, check=False).returncode
    if status:
        print(f"error: the job failed (exit status {status}); the failing rank's error is "
              "above", file=sys.stderr)
    return status


def _free_port() -> int:
    """A port on the loopback address that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
