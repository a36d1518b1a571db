"""Peak memory of a hand-written training loop from ``native.py``, for comparison with ``fit``.

    python benchmarks/native_memory.py torch_autograd --n 1000000 --epochs 100

Same measure as ``memory_check.py``: the resident-set high-water mark after the loop, less the
resident size once the data exist (reset through ``/proc/self/clear_refs``). Linux only.
Careful with large epoch counts: the tutorial-style PyTorch loop grows by gigabytes.
"""

from __future__ import annotations

import argparse
import os

import machine
import native
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trainer", help="a regression trainer of native.py, e.g. torch_autograd")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    make = getattr(native, args.trainer)
    tiny = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    make(tiny, 3 * tiny + 2, 0.1)(10)  # imports and thread pools, outside the measure
    x = np.random.default_rng(0).standard_normal(args.n).astype(np.float32)
    y = 3 * x + 2
    train = make(x, y, 0.1)
    start = machine.rss_bytes()
    machine.reset_peak_rss()
    train(args.epochs)
    print(f"{args.trainer} N={args.n:.0e} epochs={args.epochs}: "
          f"peak +{(machine.peak_rss_bytes() - start) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
