"""Scaling of ``fit(..., parallel="data")``: time per epoch of the MLP mini-batch workload
against the number of JAX devices (one process), JAX processes and PyTorch processes (the
latter two through gradbridge launch).

    PYTHONPATH=. python benchmarks/parallel.py                      # 1, 2, 4 on cpu
    PYTHONPATH=. python benchmarks/parallel.py --frameworks jax-processes
    PYTHONPATH=. python benchmarks/parallel.py --workers 1,2 --device cuda

Each count runs in a fresh process (XLA's host-device flag and process groups cannot change
inside one): JAX gets ``XLA_FLAGS=--xla_force_host_platform_device_count=K`` on CPU, PyTorch
runs K processes through ``gradbridge launch``; 1 is an ordinary fit (``parallel=None``) and
the baseline of the speed-ups. Every PyTorch process gets ``--torch-threads`` threads
(``OMP_NUM_THREADS``, 1 by default: K processes then use K cores, and a second thread per
process only contends for 2 busy cores); XLA keeps its own thread pool.
Writes ``benchmarks/local/parallel-<machine>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import machine
import native
from run import MLP_BATCH, MLP_LR, MLP_SIZES, SEED, mlp_data

ROOT = Path(__file__).resolve().parent.parent


def worker(framework: str, device: str, n: int, epochs: int, repeats: int, parallel: str,
           out: str) -> None:
    """Inside one launched job: fit once to compile, then ``repeats`` timed fits."""
    import gradbridge as gb
    from gradbridge.core.parallel import is_main_process

    if device == "cuda":  # each launched process its own GPU
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    be = gb.get_backend(framework, device=device, dtype="float32")
    x, y = mlp_data(n, "float32")
    params = native.init_mlp(MLP_SIZES, SEED)
    mode = parallel or None

    def one_fit() -> Any:
        return gb.fit(gb.models.mlp("tanh"), "mse", params, x, y, backend=be,
                      optimizer="adam", lr=MLP_LR, epochs=epochs, batch_size=MLP_BATCH,
                      seed=SEED, parallel=mode)

    one_fit()  # compile (JAX) and warm the thread pools outside the clock
    runs = [one_fit() for _ in range(repeats)]
    if is_main_process():
        Path(out).write_text(json.dumps({
            "per_epoch_s": [h.per_epoch_s for h in runs], "final_loss": runs[-1].final_loss,
            "devices": runs[-1].devices, "processes": runs[-1].processes,
            "world_size": runs[-1].world_size}))


def measure(framework: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row: ``workers`` devices (JAX) or processes (PyTorch), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if framework == "torch":
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    parallel = "data" if workers > 1 else ""
    launched = framework in ("torch", "jax-processes") and workers > 1
    with tempfile.TemporaryDirectory() as scratch:
        out = str(Path(scratch) / "row.json")
        job = [__file__, "--worker", framework.removesuffix("-processes"), "--device",
               args.device, "--n", str(args.n),
               "--epochs", str(args.epochs), "--repeats", str(args.repeats),
               "--parallel", parallel, "--row", out]
        if framework == "jax" and args.device == "cpu":
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={workers}"
        elif framework == "jax":  # the mesh spans every visible GPU: show it ``workers``
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(workers)))
        if launched:
            command = [sys.executable, "-m", "gradbridge", "launch", "--nproc", str(workers),
                       *job]
        else:
            command = [sys.executable, *job]
        subprocess.run(command, env=env, check=True, timeout=600)
        row: dict[str, Any] = json.loads(Path(out).read_text())
    row.update(framework=framework, workers=workers,
               median_epoch_s=statistics.median(row["per_epoch_s"]))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: time per epoch, speed-up and efficiency against 1 of the same framework."""
    lines = ["| framework | workers | devices | ms per epoch (median) | speed-up | efficiency |",
             "|---|---|---|---|---|---|"]
    base = {row["framework"]: row["median_epoch_s"] for row in rows if row["workers"] == 1}
    for row in rows:
        speedup = base[row["framework"]] / row["median_epoch_s"]
        lines.append(f"| {row['framework']} | {row['workers']} | {', '.join(row['devices'])} | "
                     f"{row['median_epoch_s'] * 1e3:.1f} | {speedup:.2f} | "
                     f"{speedup / row['workers']:.0%} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Time per epoch against workers, one line per framework."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for framework in sorted({row["framework"] for row in rows}):
        mine = [row for row in rows if row["framework"] == framework]
        axes.plot([row["workers"] for row in mine],
                  [row["median_epoch_s"] * 1e3 for row in mine], marker="o", label=framework)
    axes.set_xlabel("devices (jax) / processes (torch)")
    axes.set_ylabel("ms per epoch (median)")
    axes.set_title("MLP mini-batch, parallel='data'")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--frameworks", default="jax,torch",
                        help="jax (devices of one process), jax-processes, torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", default="", help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.device, args.n, args.epochs, args.repeats, args.parallel,
               args.row)
        return
    info = machine.describe()
    rows = [measure(framework, int(count), args) for framework in args.frameworks.split(",")
            for count in args.workers.split(",")]
    out = args.out or ROOT / "benchmarks" / "local" / f"parallel-{machine.slug(info)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"n": args.n, "batch": MLP_BATCH, "sizes": MLP_SIZES, "epochs": args.epochs,
                "repeats": args.repeats, "device": args.device, "dtype": "float32",
                "torch_threads": args.torch_threads}
    out.write_text(json.dumps({"machine": info, "settings": settings, "rows": rows}, indent=1))
    text = table(rows)
    out.with_suffix(".md").write_text(f"{text}\n\nsettings: {json.dumps(settings)}\n")
    plot(rows, out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
