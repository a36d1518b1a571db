"""Benchmark gradbridge's ``fit`` against hand-written NumPy/JAX/PyTorch and Keras 3.

    python benchmarks/run.py --quick     # < 3 minutes on 2 CPU cores (make bench)
    python benchmarks/run.py             # every size and dtype, torch.compile (make bench-full)

Every (workload, contestant, size, dtype) runs in a fresh subprocess: its peak memory is then
its own, Keras can pick its backend (process-global), and one crash loses one row. A worker
generates the data on the host, runs the contestant once on tiny data (imports, thread pools),
resets the resident-set high-water mark, then warms up at full size (compiling) and times
``repeats`` calls; the figure is the median call's epoch time divided by the epochs. Each worker
also checks that its final parameters equal the tutorial loop's, run in float64 on the same data.
The parent measures memory bandwidth, collects rows into ``local/<machine>[-quick].json`` (not
tracked by git) and has :mod:`report` write the markdown tables and the log-log plot beside it;
``results/`` holds the runs committed on purpose (``--out benchmarks/results/...``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bandwidth
import machine
import native
import numpy as np
import report
from native import Run, Trainer

HERE = Path(__file__).resolve().parent
LR = 0.1
SEED = 0
MLP_SIZES = [32, 256, 256, 1]
MLP_BATCH = 256
MLP_LR = 1e-3
SOFTMAX_FEATURES, SOFTMAX_CLASSES = 64, 10
SOFTMAX_N = 1400
SOFTMAX_BATCH = 128
SOFTMAX_LR = 1e-2
LOGDET_SIZES = [32, 64, 10]
LOGDET_N, LOGDET_STEPS = 1024, 300
LOGDET_LR, LOGDET_LAM = 0.5, 1e-3
"""The log-det MLP: 32-64-10 tanh, full batch, plain gradient descent, penalty weight lam."""
PRIME_N = {"regression": 100, "memory": 100, "mlp": 2 * MLP_BATCH, "softmax": 2 * SOFTMAX_BATCH}
"""Samples of the tiny run that loads each contestant's framework before memory is measured."""

GRADBRIDGE = ("gradbridge-numpy", "gradbridge-jax", "gradbridge-torch")
NATIVE = tuple(native.REGRESSION)
KERAS = ("keras-jax", "keras-torch")
COMPILED = ("gradbridge-torch-compile", "torch-compile")
"""torch.compile contestants: ~20 s of compilation each, so full mode (or --torch-compile) only,
float32 at N >= 1e6, and not primed (a second shape would recompile, maybe as a dynamic one)."""
PAIRS = (("gradbridge-numpy", "numpy-analytic"), ("gradbridge-jax", "jax-scan"),
         ("gradbridge-torch", "torch-autograd"))
"""Each backend and the hand-written code its target is set against."""
MINIBATCH_PAIRS = (("gradbridge-numpy", "numpy-analytic"), ("gradbridge-jax", "jax-jit"),
                   ("gradbridge-torch", "torch-autograd"))
"""The same for the mini-batch workloads (MLP and softmax regression)."""

# Tolerances for "reached the same w and b as the tutorial loop in float64": float64 runs
# differ from it only by summation order (1e-9 relative, with room for 1e7-term sums); float32
# runs carry float32 rounding of means over up to 1e7 terms (1e-4 relative).
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


# ------------------------------------------------------------------------- workloads


def regression_data(n: int, dtype: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data at size n: x ~ N(0, 1), y = 3x + 2 + N(0, 0.5^2), in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = 3 * x + 2 + 0.5 * rng.standard_normal(n)
    return x.astype(dtype), y.astype(dtype)


def mlp_data(n: int, dtype: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """A smooth nonlinear target of 32 features: y = sin(x @ v) + N(0, 0.1^2), y 1-D."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, MLP_SIZES[0]))
    v = rng.standard_normal(MLP_SIZES[0]) / np.sqrt(MLP_SIZES[0])
    y = np.sin(x @ v) + 0.1 * rng.standard_normal(n)
    return x.astype(dtype), y.astype(dtype)


def labelled_data(n: int, features: int, classes: int, dtype: str,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal features and one-hot labels from a random linear teacher with Gumbel
    noise (so the classes overlap and the loss keeps falling)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    teacher = rng.standard_normal((features, classes)) / np.sqrt(features)
    labels = np.argmax(x @ teacher + rng.gumbel(size=(n, classes)), axis=1)
    return x.astype(dtype), np.eye(classes, dtype=dtype)[labels]


def softmax_data(n: int, dtype: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The softmax-regression data: 64 features, 10 classes."""
    return labelled_data(n, SOFTMAX_FEATURES, SOFTMAX_CLASSES, dtype, seed)


def logdet_data(n: int, dtype: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The log-det MLP's data: LOGDET_SIZES[0] features, LOGDET_SIZES[-1] classes."""
    return labelled_data(n, LOGDET_SIZES[0], LOGDET_SIZES[-1], dtype, seed)


def _gradbridge_run(history: Any) -> Run:
    return Run(history.run_s, history.compile_s, dict(history.params),
               np.asarray(history.losses, dtype=np.float64))


def gradbridge_regression(backend: str, x: np.ndarray, y: np.ndarray, lr: float,
                          device: str) -> Trainer:
    """The library under test: ``gradbridge.fit`` of the tutorial's line, timed by History."""
    import gradbridge as gb

    be = gb.get_backend(backend, device=device, dtype=str(x.dtype))

    def train(epochs: int) -> Run:
        return _gradbridge_run(gb.fit(gb.models.linear1d, gb.losses.mse, {"w": 0.0, "b": 0.0},
                                      x, y, backend=be, lr=lr, epochs=epochs))

    return train


def gradbridge_minibatch(backend: str, model: Any, loss: str, x: np.ndarray, y: np.ndarray,
                         params: dict[str, np.ndarray], lr: float, batch_size: int, seed: int,
                         device: str) -> Trainer:
    """``gradbridge.fit`` of ``model`` with Adam on mini-batches."""
    import gradbridge as gb

    be = gb.get_backend(backend, device=device, dtype=str(x.dtype))

    def train(epochs: int) -> Run:
        return _gradbridge_run(gb.fit(model, loss, params, x, y, backend=be,
                                      optimizer=gb.optim.adam(lr), batch_size=batch_size,
                                      epochs=epochs, seed=seed))

    return train


def regression_trainer(contestant: str, x: np.ndarray, y: np.ndarray, device: str) -> Trainer:
    """Build any regression contestant by name."""
    framework, _, variant = contestant.partition("-")
    if variant == "torch-compile":  # the torch backend's jit becomes torch.compile
        os.environ["GRADBRIDGE_TORCH_COMPILE"] = "1"
        variant = "torch"
    if framework == "gradbridge":
        return gradbridge_regression(variant, x, y, LR, device)
    if framework == "keras":
        from keras_fit import keras_fit

        return keras_fit(x, y, LR, variant)
    make = native.REGRESSION[contestant]
    return make(x, y, LR) if framework == "numpy" else make(x, y, LR, device=device)


def mlp_trainer(contestant: str, x: np.ndarray, y: np.ndarray, device: str,
                batch: int = MLP_BATCH) -> Trainer:
    """Build any MLP contestant by name; all start from the same weights and batch order."""
    import gradbridge as gb

    params = native.init_mlp(MLP_SIZES, SEED)
    framework, _, variant = contestant.partition("-")
    if framework == "gradbridge":
        return gradbridge_minibatch(variant, gb.models.mlp("tanh"), "mse", x, y, params,
                                    MLP_LR, batch, SEED, device)
    make = native.MLP[contestant]
    args = (x, y, params, MLP_LR, batch, SEED)
    return make(*args) if framework == "numpy" else make(*args, device=device)


def softmax_trainer(contestant: str, x: np.ndarray, y: np.ndarray, device: str,
                    batch: int = SOFTMAX_BATCH) -> Trainer:
    """Build any softmax-regression contestant by name; same start and batch order for all."""
    import gradbridge as gb

    params = native.init_mlp([SOFTMAX_FEATURES, SOFTMAX_CLASSES], SEED)
    framework, _, variant = contestant.partition("-")
    if framework == "gradbridge":
        return gradbridge_minibatch(variant, gb.models.mlp(), "softmax_cross_entropy", x, y,
                                    params, SOFTMAX_LR, batch, SEED, device)
    make = native.SOFTMAX[contestant]
    args = (x, y, params, SOFTMAX_LR, batch, SEED)
    return make(*args) if framework == "numpy" else make(*args, device=device)


def logdet_mlp_loss(be: Any, lam: float) -> Callable[..., Any]:
    """The log-det MLP's loss written once against the namespace ``be``: mean softmax
    cross-entropy (``gb.nn.log_softmax``) minus ``lam * logdet(W0^T W0 + I)``."""
    import gradbridge as gb

    def loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        w = p["W0"]
        z = be.matmul(be.tanh(be.matmul(x, w) + p["b0"]), p["W1"]) + p["b1"]
        cross_entropy = -be.mean(be.sum(y * gb.nn.log_softmax(be, z), axis=1))
        _, logdet = be.linalg.slogdet(be.matmul(w.mT, w) + be.eye(w.shape[1]))
        return cross_entropy - lam * logdet

    return loss


def gradbridge_logdet_mlp(backend: str, x: np.ndarray, y: np.ndarray,
                          params: dict[str, np.ndarray], lr: float, lam: float,
                          device: str) -> Trainer:
    """The log-det MLP as a user writes it: ``be.value_and_grad`` of the loss, the gradient
    step under ``be.jit``, full-batch gradient descent in a Python loop."""
    import gradbridge as gb

    be = gb.get_backend(backend, device=device, dtype=str(x.dtype))
    value_and_grad = be.value_and_grad(logdet_mlp_loss(be, lam))

    @be.jit
    def step(p: dict[str, Any], xd: Any, yd: Any) -> Any:
        value, g = value_and_grad(p, xd, yd)
        return {k: p[k] - lr * g[k] for k in p}, value

    xd, yd = be.asarray(x), be.asarray(y)

    def train(epochs: int) -> Run:
        p = {k: be.asarray(v, dtype=xd.dtype) for k, v in params.items()}
        losses = []
        be.synchronize()
        start = time.perf_counter()
        for _ in range(epochs):
            p, value = step(p, xd, yd)
            losses.append(value)
        stacked = be.stack(losses)
        be.synchronize()
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {k: np.asarray(be.to_numpy(w), dtype=np.float64)
                                for k, w in p.items()},
                   np.asarray(be.to_numpy(stacked), dtype=np.float64))

    return train


def logdet_trainer(contestant: str, x: np.ndarray, y: np.ndarray, device: str) -> Trainer:
    """Build any log-det MLP contestant by name; all start from the same weights."""
    params = native.init_mlp(LOGDET_SIZES, SEED)
    framework, _, variant = contestant.partition("-")
    if framework == "gradbridge":
        return gradbridge_logdet_mlp(variant, x, y, params, LOGDET_LR, LOGDET_LAM, device)
    make = native.LOGDET_MLP[contestant]
    args = (x, y, params, LOGDET_LR, LOGDET_LAM)
    return make(*args) if framework == "numpy" else make(*args, device=device)


WORKLOADS: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray]], Callable[..., Trainer]]]
WORKLOADS = {
    "regression": (regression_data, regression_trainer),
    "memory": (regression_data, regression_trainer),
    "mlp": (mlp_data, mlp_trainer),
    "softmax": (softmax_data, softmax_trainer),
    "logdet-mlp": (logdet_data, logdet_trainer),
}


# ---------------------------------------------------------------------------- worker


def agreement(job: dict[str, Any], x: np.ndarray, y: np.ndarray, last: Run) -> dict[str, Any]:
    """Compare final w, b and the losses with the tutorial loop run in float64 on the same data."""
    reference = native.numpy_tutorial(x.astype(np.float64), y.astype(np.float64),
                                      LR)(job["epochs"])
    errors = [abs(float(last.params[k]) - float(reference.params[k]))
              / max(1.0, abs(float(reference.params[k]))) for k in ("w", "b")]
    errors.append(float(np.max(np.abs(last.losses - reference.losses)
                               / np.maximum(1.0, np.abs(reference.losses)))))
    return {"w": float(last.params["w"]), "b": float(last.params["b"]),
            "reference_w": float(reference.params["w"]),
            "reference_b": float(reference.params["b"]),
            "max_rel_error": max(errors), "agrees": max(errors) <= TOLERANCE[job["dtype"]]}


def mlp_summary(x: np.ndarray, y: np.ndarray, last: Run) -> dict[str, Any]:
    """Full-data MSE of the final MLP, computed on the host in float64 for every contestant."""
    p, h = last.params, x.astype(np.float64)
    layers = len(p) // 2
    for i in range(layers - 1):
        h = np.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
    prediction = (h @ p[f"W{layers - 1}"] + p[f"b{layers - 1}"]).reshape(-1)
    return {"final_loss": float(np.mean((prediction - y) ** 2)),
            "first_epoch_loss": float(last.losses[0]),
            "params_digest": [float(np.sum(p[k])) for k in sorted(p)]}


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this process and return its row (called in a fresh subprocess)."""
    make_data, make_trainer = WORKLOADS[job["workload"]]
    name, device, epochs = job["contestant"], job["device"], job["epochs"]
    if job["prime"]:
        make_trainer(name, *make_data(PRIME_N[job["workload"]], job["dtype"]), device)(2)
    x, y = make_data(job["n"], job["dtype"])
    gc.collect()
    peak_resettable = machine.reset_peak_rss()
    rss_before = machine.rss_bytes()  # after the reset: the peak from here on is >= it
    trainer = make_trainer(name, x, y, device)

    tic = time.perf_counter()
    first = trainer(epochs)
    first_call_s = time.perf_counter() - tic
    runs, walls = [], []
    for _ in range(job["repeats"]):
        tic = time.perf_counter()
        runs.append(trainer(epochs))
        walls.append(time.perf_counter() - tic)
    # VmHWM is synced from per-thread RSS counters in batches (up to 64 pages a thread), so it
    # can read a few hundred KiB under the VmRSS taken just after the reset: a growth of 0
    peak_extra = max(machine.peak_rss_bytes() - rss_before, 0)
    data_bytes = x.nbytes + y.nbytes

    run_s = [r.run_s for r in runs] or [first.run_s]
    row = {
        **job,
        "per_epoch_s": statistics.median(run_s) / epochs,
        "best_epoch_s": min(run_s) / epochs,
        "run_s": run_s,
        "wall_s": walls or [first_call_s],
        "first_call_s": first_call_s,
        "compile_s": first.compile_s,
        "compile_s_later": statistics.median(r.compile_s for r in runs) if runs else None,
        "peak_extra_bytes": peak_extra,
        "peak_resettable": peak_resettable,
        "data_bytes": data_bytes,
        "extra_copies": peak_extra / data_bytes,
    }
    last = runs[-1] if runs else first
    if job["workload"] == "regression":
        row.update(agreement(job, x, y, last))
    elif job["workload"] == "mlp":
        row.update(mlp_summary(x, y, last))
    return row


def measure_pair(job: dict[str, Any]) -> dict[str, Any]:
    """Time gradbridge and its hand-written counterpart in turns in one process.

    Separate processes meet different background load on a shared machine; alternating the two
    contestants call by call exposes both to the same load, so the median of the per-round
    ratios is the robust figure for a target. Memory is not measured here. ``of`` names the
    workload (regression unless given), ``batch`` a mini-batch workload's batch size.
    """
    ours, theirs = job["contestant"].split(" vs ")
    make_data, make_trainer = WORKLOADS[job.get("of", "regression")]
    x, y = make_data(job["n"], job["dtype"])
    extra = {"batch": job["batch"]} if "batch" in job else {}
    trainers = [make_trainer(c, x, y, job["device"], **extra) for c in (ours, theirs)]
    seconds: list[list[float]] = [[], []]
    last: list[Run] = [trainer(job["epochs"]) for trainer in trainers]  # warm-up: compile, page in
    for round_ in range(job["repeats"]):
        # ABBA: the side that runs first in a round measured ~2% slower (same code on both
        # sides, 21 rounds), so each side goes first in every other round.
        for side in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            last[side] = trainers[side](job["epochs"])
            seconds[side].append(last[side].run_s)
    ratios = [a / b for a, b in zip(*seconds, strict=True)]
    row = {**job, "ours_s": seconds[0], "theirs_s": seconds[1],
           "per_epoch_s": statistics.median(seconds[0]) / job["epochs"],
           "theirs_per_epoch_s": statistics.median(seconds[1]) / job["epochs"],
           "ratio": statistics.median(ratios)}
    if "batch" in job or job["workload"] == "paired-model":  # same steps: same losses
        ours_losses, theirs_losses = last[0].losses, last[1].losses
        row["max_loss_rel_diff"] = float(np.max(np.abs(ours_losses - theirs_losses)
                                                / np.abs(theirs_losses)))
    return row


def worker_main(spec: str, out: str) -> None:
    """Entry point of a worker subprocess: measure one job, write its row as JSON to ``out``."""
    job = json.loads(spec)
    if job["workload"] == "bandwidth":
        row = {**job, **bandwidth.measure(job["n"])}
    elif job["workload"] in ("paired", "paired-minibatch", "paired-model"):
        row = measure_pair(job)
    else:
        row = measure(job)
    Path(out).write_text(json.dumps(row))


# ---------------------------------------------------------------------------- parent


def plan(quick: bool, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The jobs of one suite run, cheapest first within each workload."""
    device, repeats = args.device, args.repeats or 5
    if quick:
        sizes = {"float32": [100, 10_000, 1_000_000, 10_000_000]}
        epochs = {100: 1000, 10_000: 200, 1_000_000: 10, 10_000_000: 3}
        keras_sizes, keras_epochs = [100, 1_000_000], {100: 50, 1_000_000: 3}
        memory_n, mlp_n, mlp_epochs = 10_000, 2048, 2
    else:
        sizes = {d: [100, 10_000, 1_000_000, 10_000_000] for d in ("float32", "float64")}
        epochs = {100: 5000, 10_000: 1000, 1_000_000: 30, 10_000_000: 5}
        keras_sizes, keras_epochs = [100, 10_000, 1_000_000], {100: 200, 10_000: 100,
                                                                1_000_000: 5}
        memory_n, mlp_n, mlp_epochs = 1_000_000, 16_384, 3
    regression = [c for c in GRADBRIDGE + NATIVE if c not in COMPILED]
    if quick:  # context rows that no target depends on
        regression = [c for c in regression if c not in ("numpy-tutorial", "jax-scan-analytic")]
    compiled = args.torch_compile if args.torch_compile is not None else not quick
    wanted = set(args.contestants.split(",")) if args.contestants else None

    def job(workload: str, contestant: str, n: int, dtype: str, e: int, r: int,
            prime: bool = True) -> dict[str, Any]:
        return {"workload": workload, "contestant": contestant, "n": n, "dtype": dtype,
                "epochs": e, "repeats": r, "device": device, "prime": prime}

    jobs = []
    for dtype, ns in sizes.items():
        for n in ns:
            jobs += [job("regression", c, n, dtype, epochs[n], repeats) for c in regression]
            if compiled and dtype == "float32" and n >= 1_000_000:  # the target's sizes
                jobs += [job("regression", c, n, dtype, epochs[n], repeats, prime=False)
                         for c in COMPILED]
            if dtype == "float32" and n in keras_sizes and not args.no_keras:
                jobs += [job("regression", c, n, dtype, keras_epochs[n], repeats) for c in KERAS]
    for dtype, ns in sizes.items():
        for n in ns:
            jobs += [job("paired", f"{ours} vs {theirs}", n, dtype, epochs[n], repeats, False)
                     for ours, theirs in PAIRS]
    for c in GRADBRIDGE:
        jobs += [job("memory", c, memory_n, "float32", e, 0) for e in (100, 10_000)]
    for c in (*GRADBRIDGE, *native.MLP):
        jobs.append(job("mlp", c, mlp_n, "float32", mlp_epochs, repeats))
    jobs += minibatch_jobs(quick, mlp_n, device, repeats)
    jobs += [{"workload": "paired-model", "of": "logdet-mlp", "contestant": f"{ours} vs {theirs}",
              "n": LOGDET_N, "dtype": "float32", "epochs": LOGDET_STEPS, "repeats": repeats,
              "device": device, "prime": False} for ours, theirs in MINIBATCH_PAIRS]
    workloads = set(args.workloads.split(",")) if args.workloads else None
    return [j for j in jobs
            if (wanted is None or set(j["contestant"].split(" vs ")) <= wanted)
            and (workloads is None or j["workload"] in workloads)]


BATCH_SWEEP = (32, 128, 512, 2048, 4096)
"""Softmax batch sizes swept at N = SWEEP_N (full mode)."""
SWEEP_N = 16_384
N_SWEEP = (SOFTMAX_N, 14_000, 140_000)
"""Softmax sizes swept at batch SOFTMAX_BATCH (full mode)."""


def minibatch_jobs(quick: bool, mlp_n: int, device: str, repeats: int) -> list[dict[str, Any]]:
    """Paired mini-batch rows, each backend against its hand-written counterpart: softmax
    regression (1,400 x 64, batch 128) and the MLP at ``mlp_n``; full mode adds the batch and
    N sweeps."""
    cases = [("softmax", SOFTMAX_N, SOFTMAX_BATCH), ("mlp", mlp_n, MLP_BATCH)]
    if not quick:
        cases += [("softmax", SWEEP_N, b) for b in BATCH_SWEEP]
        cases += [("softmax", n, SOFTMAX_BATCH) for n in N_SWEEP]
    jobs = []
    for of, n, batch in sorted(set(cases), key=lambda case: (case[0], case[2], case[1])):
        steps = -(-n // batch)
        # softmax: about 4,000 steps a call (2 to 50 epochs); the MLP's steps cost ~50x more
        epochs = max(2, min(50, 4000 // steps)) if of == "softmax" else 2 if quick else 3
        jobs += [{"workload": "paired-minibatch", "of": of, "contestant": f"{ours} vs {theirs}",
                  "n": n, "batch": batch, "dtype": "float32", "epochs": epochs,
                  "repeats": repeats, "device": device, "prime": False}
                 for ours, theirs in MINIBATCH_PAIRS]
    return jobs


def thread_env(threads: int) -> dict[str, str]:
    """Environment capping every framework's intra-op threads (OpenMP, BLAS, XLA's Eigen pool);
    0 leaves each framework its default."""
    if threads == 0:
        return {}
    count = str(threads)
    env = {name: count for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return env


def run_job(job: dict[str, Any], timeout_s: float, threads: int = 0) -> dict[str, Any]:
    """Run one job in a fresh interpreter; a failure becomes a row with ``error`` set."""
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3",
               **thread_env(threads)}
        try:
            done = subprocess.run(
                [sys.executable, str(HERE / "run.py"), "--worker", json.dumps(job), str(out)],
                capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            return {**job, "error": f"timed out after {timeout_s:.0f} s"}
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {**job, "error": " | ".join(tail) or f"exit status {done.returncode}"}
        row: dict[str, Any] = json.loads(out.read_text())
    row["job_s"] = time.perf_counter() - tic
    return row


def describe_row(row: dict[str, Any]) -> str:
    head = f"{row['workload']:<10} {row['contestant']:<19} n={row['n']:<9} {row['dtype']:<7}"
    if "batch" in row:
        head += f" {row['of']} batch {row['batch']}"
    elif "of" in row:
        head += f" {row['of']}"
    if "error" in row:
        return f"{head} ERROR {row['error'][:200]}"
    if row["workload"].startswith("paired"):
        return (f"{head} {row['per_epoch_s'] * 1e6:12.1f} vs {row['theirs_per_epoch_s'] * 1e6:.1f}"
                f" us/epoch: ratio {row['ratio']:.2f}  ({row['job_s']:.1f} s)")
    agree = {True: "ok", False: "DIFFERS", None: "-"}[row.get("agrees")]
    return (f"{head} {row['per_epoch_s'] * 1e6:12.1f} us/epoch  compile {row['compile_s']:.2f} s"
            f"  peak +{row['peak_extra_bytes'] / 2**20:.0f} MiB  {agree}  ({row['job_s']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, epochs (< 3 min)")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/local/"
                        "<machine>[-quick].json, untracked; results/ is for committed runs)")
    parser.add_argument("--contestants", help="comma-separated names to run (default: all)")
    parser.add_argument("--workloads", help="comma-separated workloads to run, e.g. "
                        "paired-minibatch (default: all)")
    parser.add_argument("--repeats", type=int, help="timed repeats per job (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for jax/torch")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras contestants")
    parser.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="include torch.compile (default: in full mode only; ~20 s each)")
    parser.add_argument("--threads", type=int,
                        help="threads per framework, 0 = each framework's default (default: 1 "
                             "with --quick, which keeps a busy 2-core machine's timings stable; "
                             "0 otherwise)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per job")
    parser.add_argument("--worker", nargs=2, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0

    started, load_start = time.time(), os.getloadavg()
    info = machine.describe()
    print(f"machine: {info['cpu']} x {info['cpus']}, GPUs: {info['gpus'] or 'none'}")
    print(f"versions: {info['versions']}")
    if args.threads is None:
        args.threads = 1 if args.quick else 0
    memory = run_job({"workload": "bandwidth", "contestant": "numpy", "dtype": "float64",
                      "n": bandwidth.DEFAULT_BYTES // (2 if args.quick else 1)},
                     args.timeout, args.threads)
    if "error" in memory:
        raise SystemExit(f"measuring the memory bandwidth failed: {memory['error']}")
    print(f"memory bandwidth: read {memory['read_GBps']:.1f} GB/s, copy {memory['copy_GBps']:.1f}")
    rows = []
    for job in plan(args.quick, args):
        rows.append(run_job(job, args.timeout, args.threads))
        print(describe_row(rows[-1]), flush=True)
    results: dict[str, Any] = {
        "machine": info, "slug": machine.slug(info), "mode": "quick" if args.quick else "full",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started, "bandwidth": memory,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "settings": {"lr": LR, "seed": SEED, "mlp_sizes": MLP_SIZES, "mlp_batch": MLP_BATCH,
                     "mlp_lr": MLP_LR, "tolerance": TOLERANCE, "device": args.device,
                     "softmax": {"features": SOFTMAX_FEATURES, "classes": SOFTMAX_CLASSES,
                                 "lr": SOFTMAX_LR},
                     "logdet_mlp": {"sizes": LOGDET_SIZES, "lr": LOGDET_LR,
                                    "lam": LOGDET_LAM},
                     "threads": args.threads or "framework default",
                     "load_average_note": "os.getloadavg() at start and end: other processes "
                                          "competing for the CPUs inflate and scatter times"},
        "rows": rows,
    }
    out = args.out or HERE / "local" / (
        results["slug"] + ("-quick" if args.quick else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    written = report.write(results, out.with_suffix(""))
    print(Path(written["markdown"]).read_text())
    print(f"wrote {out}, {written['markdown']}, {written['plot']} "
          f"in {results['duration_s']:.0f} s")
    failed = sum("error" in row for row in rows)
    if failed:  # a suite with failed jobs is not a result to quote
        print(f"{failed} of {len(rows)} jobs ended in an error (the ERROR lines above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
