"""Everything gradbridge claims about CUDA, checked in one run on a machine with an NVIDIA GPU.

    make gpu-check                     # PYTHONPATH=. python3 benchmarks/gpu_check.py
    python3 benchmarks/gpu_check.py --out DIR --budget 480

Four steps, each with its share of the time budget (8 minutes in all by default), each
recorded whether it passes or not: the ``gpu``-marked tests and the ``gb_backend`` cases on
``cuda``; ``gradbridge compare`` for torch and JAX on ``cpu`` and ``cuda`` with ``--check``;
the benchmark suite's gradbridge and hand-written JAX and PyTorch rows on ``cuda``, full-batch
regression and the mini-batch pairs (softmax regression, MLP) with their target ratios;
``benchmarks/parallel.py`` on ``cuda`` (the MLP over 1 and all GPUs, ``parallel="data"``). Needs no
install (``PYTHONPATH=.``), only the frameworks. Writes ``docs/results/gpu-<device-name>/``:
``summary.md`` (what ran, pass or fail, the machine), the logs, the comparison's
``report.md``/``results.json``/``manifest.json`` and the benchmark's ``bench.json``/``bench.md``.
Exits 1 if a step failed, 2 without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_CONTESTANTS = "gradbridge-jax,jax-scan,jax-jit,gradbridge-torch,torch-autograd"
"""The JAX and PyTorch rows on cuda: full-batch regression (jax-scan) and the mini-batch
softmax and MLP pairs (jax-jit), each against the hand-written code its target is set by."""
REQUIRED_MODULES = ("array_api_compat",)
"""Pure-Python dependencies that a bare GPU machine may lack (PYTHONPATH=. installs nothing)."""
SHARES = {"tests": 0.35, "compare": 0.25, "bench": 0.25, "parallel": 0.15}
"""Fractions of the budget each step may take before it is stopped (and recorded as such)."""


def gpu_name() -> str | None:
    """The first CUDA device's name as PyTorch or JAX sees it, or None without one."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    try:
        import jax

        return str(jax.devices("gpu")[0].device_kind)
    except (ImportError, RuntimeError, IndexError):
        return None


def gpu_count() -> int:
    """How many CUDA devices PyTorch sees (the data-parallel row runs over all of them)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except ImportError:
        return 1


def slug(name: str) -> str:
    """'NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_step(name: str, command: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run one step with PYTHONPATH=. and a time limit; its output goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
            status = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped at its limit of {timeout:.0f} s"
    seconds = time.perf_counter() - start
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    print(f"{name}: {status} in {seconds:.0f} s", flush=True)
    return {"step": name, "command": " ".join(command), "status": status,
            "seconds": round(seconds, 1), "tail": tail}


def steps(out: Path, budget: float, scratch: Path) -> list[dict[str, Any]]:
    """The four checks, in order; each keeps its own share of the budget."""
    python = sys.executable
    tests = [python, "-m", "pytest", "-m", "gpu or gradbridge_cuda", "-q", "-p",
             "no:cacheprovider", "tests"]
    records = [run_step("gpu tests", tests, out / "pytest.log", budget * SHARES["tests"])]
    compare_dir = scratch / "compare"
    records.append(run_step(
        "compare", [python, "-m", "gradbridge", "compare", "--backends", "torch,jax",
                    "--devices", "cpu,cuda", "--set", "timing.sizes=100,1000,10000", "--check",
                    "--quiet",
                    "--out", str(compare_dir)],
        out / "compare.log", budget * SHARES["compare"]))
    for name in ("report.md", "results.json", "manifest.json"):
        if (compare_dir / name).is_file():
            shutil.copy(compare_dir / name, out / f"compare-{name}")
    bench_json = scratch / "bench.json"
    records.append(run_step(
        "benchmarks", [python, "benchmarks/run.py", "--quick", "--device", "cuda",
                       "--no-keras", "--contestants", BENCH_CONTESTANTS, "--out",
                       str(bench_json)],
        out / "bench.log", budget * SHARES["bench"]))
    for found, name in ((bench_json, "bench.json"), (bench_json.with_suffix(".md"), "bench.md")):
        if found.is_file():
            shutil.copy(found, out / name)
    parallel_json = scratch / "parallel.json"
    workers = ",".join(sorted({"1", str(gpu_count())}, key=int))
    records.append(run_step(
        "data parallel", [python, "benchmarks/parallel.py", "--device", "cuda", "--workers",
                          workers, "--out", str(parallel_json)],
        out / "parallel.log", budget * SHARES["parallel"]))
    for found, name in ((parallel_json.with_suffix(".md"), "parallel.md"),
                        (parallel_json.with_suffix(".png"), "parallel.png")):
        if found.is_file():
            shutil.copy(found, out / name)
    return records


def summary(device: str, records: list[dict[str, Any]]) -> str:
    """summary.md: the GPU, each step's command, status, time and last lines."""
    lines = [f"# gradbridge GPU check on {device}", "",
             f"Run {time.strftime('%Y-%m-%dT%H:%M:%S%z')}, python {sys.version.split()[0]}.", "",
             "| step | status | seconds | command |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['status']} | {r['seconds']} | `{r['command']}` |"
              for r in records]
    for r in records:
        lines += ["", f"## {r['step']}: last lines", "", "```", *r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output folder "
                        "(default docs/results/gpu-<device-name>/)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all four steps together (default 480)")
    args = parser.parse_args(argv)
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {', '.join(missing)} not installed here (gradbridge needs it); pip "
              "install array-api-compat, or carry its wheel to an offline machine",
              file=sys.stderr)
        return 2
    device = gpu_name()
    if device is None:
        print("error: no CUDA GPU is visible to PyTorch or JAX here; run make gpu-check on a "
              "machine with one", file=sys.stderr)
        return 2
    out = args.out or ROOT / "docs" / "results" / f"gpu-{slug(device)}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        records = steps(out, args.budget, Path(scratch))
    (out / "summary.md").write_text(summary(device, records), encoding="utf-8")
    (out / "steps.json").write_text(json.dumps({"device": device, "steps": records}, indent=1),
                                    encoding="utf-8")
    print(f"wrote {out}")
    return 0 if all(r["status"] == "passed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
