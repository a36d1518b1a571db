"""Peak memory of ``gradbridge.fit``: flat in the number of epochs, at most two extra data copies.

    python benchmarks/memory_check.py                       # N = 1e6 growth, N = 1e7 copies
    python benchmarks/memory_check.py --quick               # N = 1e4 growth, N = 1e6 copies
    python benchmarks/memory_check.py --backends torch --epochs 100,10000
    python benchmarks/memory_check.py --quick --batch-size 128 --epochs 10,100,1000  # mini-batch
    python benchmarks/memory_check.py --batch-size 128 --features 8   # x of shape (n, 8)

Issue 6's two memory targets, checked apart from the timing suite (``run.py``):

- growth: the peak of a fit of 100, 1,000 and 10,000 epochs on the same data must not grow
  with the epochs (a per-epoch leak or a fragmenting heap shows here);
- copies: the peak of a fit's extra memory divided by the bytes of x and y (float32, 10 epochs)
  must stay at or below 2. The data are made first, and only what ``fit`` adds counts.

Each figure comes from a fresh interpreter that trains once on 100 points first (imports,
thread pools, JIT machinery), makes the data, resets the resident-set high-water mark
(``/proc/self/clear_refs``) and subtracts the resident size at that moment from the peak after
``fit``; RSS counts NumPy's, XLA's and PyTorch's allocators alike. One intra-op thread per
framework, as in ``run.py --quick``. Linux only.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

HERE = Path(__file__).resolve().parent
BACKENDS = ("numpy", "jax", "torch")
COPIES_EPOCHS = 10
GROWTH_LIMIT_MIB = 8.0
"""Growth from the shortest to the longest fit still counted as flat (allocator noise)."""
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def regression_data(n: int, dtype: str = "float32",
                    features: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's line y = 3x + 2 + noise at size n, in ``dtype`` (as ``run.py`` makes it);
    with several ``features``, x of shape (n, features) and y = 3 * (sum of x) + 2 + noise."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n if features == 1 else (n, features))
    y = 3 * (x if features == 1 else x.sum(axis=1)) + 2 + 0.5 * rng.standard_normal(n)
    return x.astype(dtype), y.astype(dtype)


def measure(backend: str, n: int, epochs: int, dtype: str, batch_size: int | None = None,
            features: int = 1) -> dict[str, Any]:
    """Peak extra resident memory of one fit (mini-batch with ``batch_size``), in this process
    (run in a fresh one)."""
    import gradbridge as gb

    be = gb.get_backend(backend, dtype=dtype)
    model, start = ((gb.models.linear1d, {"w": 0.0, "b": 0.0}) if features == 1
                    else (gb.models.linear, {"w": np.zeros(features), "b": 0.0}))

    def train(x: np.ndarray, y: np.ndarray, count: int) -> Any:
        size = None if batch_size is None else min(batch_size, len(x) // 2)
        return gb.fit(model, gb.losses.mse, start, x, y, backend=be, lr=0.1 / features,
                      epochs=count, batch_size=size)

    train(*regression_data(100, dtype, features), 2)
    x, y = regression_data(n, dtype, features)
    gc.collect()
    before = machine.rss_bytes()
    resettable = machine.reset_peak_rss()
    tic = time.perf_counter()
    history = train(x, y, epochs)
    wall_s = time.perf_counter() - tic
    extra = machine.peak_rss_bytes() - before
    return {"backend": backend, "n": n, "epochs": epochs, "dtype": dtype, "batch_size": batch_size,
            "features": features,
            "peak_extra_mib": extra / 2**20, "copies": extra / (x.nbytes + y.nbytes),
            "resettable": resettable, "wall_s": wall_s, "final_loss": history.final_loss}


def run_fresh(backend: str, n: int, epochs: int, dtype: str, timeout_s: float,
              batch_size: int | None = None, features: int = 1) -> dict[str, Any]:
    """``measure`` in a new interpreter; a failure comes back as a row with ``error``."""
    spec = json.dumps([backend, n, epochs, dtype, batch_size, features])
    env = {**__import__("os").environ, "PYTHONWARNINGS": "ignore", **THREAD_ENV}
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", spec],
                              capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "n": n, "epochs": epochs, "error": f"timed out ({timeout_s} s)"}
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"backend": backend, "n": n, "epochs": epochs, "error": tail}
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def table(rows: list[dict[str, Any]], growth_n: int, copies_n: int) -> str:
    """Markdown: each fit's peak, then each backend's verdict on both targets."""
    lines = ["| backend | N | epochs | peak extra MiB | copies of x and y | wall s |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['n']:.0e} | {row['epochs']} | error: "
                         f"{row['error'][:120]} | | |")
            continue
        lines.append(f"| {row['backend']} | {row['n']:.0e} | {row['epochs']:,} | "
                     f"{row['peak_extra_mib']:,.1f} | {row['copies']:.2f} | {row['wall_s']:.1f} |")
    lines += ["", "| backend | target | met | measured |", "|---|---|---|---|"]
    for backend in dict.fromkeys(row["backend"] for row in rows):
        ok = [r for r in rows if r["backend"] == backend and "error" not in r]
        growth = sorted((r for r in ok if r["n"] == growth_n), key=lambda r: r["epochs"])
        if len(growth) >= 2:
            first, last = growth[0], growth[-1]
            grew = last["peak_extra_mib"] - first["peak_extra_mib"]
            lines.append(f"| {backend} | peak flat in epochs (N={growth_n:.0e}) | "
                         f"{'yes' if grew <= GROWTH_LIMIT_MIB else '**no**'} | "
                         f"{first['peak_extra_mib']:.1f} MiB at {first['epochs']:,} -> "
                         f"{last['peak_extra_mib']:.1f} MiB at {last['epochs']:,} epochs "
                         f"(allowed growth {GROWTH_LIMIT_MIB:g} MiB) |")
        copies = [r for r in ok if r["n"] == copies_n and r["epochs"] == COPIES_EPOCHS]
        if copies:
            c = copies[0]["copies"]
            lines.append(f"| {backend} | <= 2 extra copies (N={copies_n:.0e} float32) | "
                         f"{'yes' if c <= 2 else '**no**'} | {c:.2f} copies |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e4 growth, N = 1e6 copies")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--epochs", default="100,1000,10000", help="epoch counts for growth")
    parser.add_argument("--growth-n", type=int, help="samples for growth (default 1e6)")
    parser.add_argument("--copies-n", type=int, help="samples for copies (default 1e7)")
    parser.add_argument("--batch-size", type=int, help="train on mini-batches of this size "
                        "(default: full batch)")
    parser.add_argument("--features", type=int, default=1,
                        help="columns of x (default 1: the tutorial's line, x of shape (n,))")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per fit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(*json.loads(args.worker))))
        return 0
    growth_n = args.growth_n or (10_000 if args.quick else 1_000_000)
    copies_n = args.copies_n or (1_000_000 if args.quick else 10_000_000)
    epochs = [int(e) for e in args.epochs.split(",")]
    info = machine.describe()
    print(f"machine: {info['cpu']} x {info['cpus']}, GPUs: {info['gpus'] or 'none'}; "
          f"{info['platform']}; one thread per framework; "
          + (f"mini-batches of {args.batch_size}" if args.batch_size else "full batch")
          + f"; {args.features} feature(s)")
    print(f"versions: {info['versions']}")
    rows = []
    for backend in args.backends.split(","):
        plan = [(growth_n, e) for e in epochs] + [(copies_n, COPIES_EPOCHS)]
        for n, count in plan:
            rows.append(run_fresh(backend, n, count, "float32", args.timeout, args.batch_size,
                                  args.features))
            row = rows[-1]
            print(f"  {backend:<6} n={n:<9} epochs={count:<6} "
                  + (f"error {row['error']}" if "error" in row else
                     f"peak +{row['peak_extra_mib']:.1f} MiB ({row['copies']:.2f} copies), "
                     f"{row['wall_s']:.1f} s"), flush=True)
    print()
    print(table(rows, growth_n, copies_n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
