"""Smoke test of the benchmark suite: correctness of the baselines and of the harness, not speed.

The hand-written baselines are what gradbridge is measured against, so they must train the
same model: each regression baseline must reach the w, b (and record the losses) of the
tutorial's loop, written again below from the math. Tolerances: 1e-10 relative in float64
(summation order only); 1e-5 in float32 (float32 rounding over 30 short steps on 64 points,
against a float64 reference). The MLP baselines (hand-written backprop in NumPy, autodiff in
JAX and torch) must agree with each other in float64 to 1e-9 relative (two Adam steps on 512
points; Adam's division by sqrt(v) amplifies rounding a little); so must the softmax-regression
baselines and ``gradbridge.fit`` of the same problem, ragged last batch included. The log-det
MLP's analytic NumPy gradient is checked against central differences (1e-6 relative), and its
six contestants (hand-written and gradbridge on each backend) must end at the same losses and
weights in float64 (1e-9 relative). No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import native  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from references import tutorial_loop  # noqa: E402

from gradbridge.core import models  # noqa: E402

EPOCHS, LR = 30, 0.1
FRAMEWORK = {"numpy": "numpy", "jax": "jax", "torch": "torch", "gradbridge": "numpy",
             "keras": "keras"}


def needs(contestant: str) -> None:
    """Skip a contestant whose framework is not installed (gradbridge-<b> needs backend b)."""
    framework, _, variant = contestant.partition("-")
    module = variant if framework == "gradbridge" else FRAMEWORK[framework]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def tutorial_points(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(n)
    return x, -1.5 * x + 0.25 + 0.3 * rng.standard_normal(n)


BASELINES = [c for c in native.REGRESSION if c != "torch-compile"]  # compile: ~20 s, full mode


def results_document(rows: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    """A run.py results document around ``rows``, on a made-up machine, for the report."""
    return {"machine": {"cpu": "test cpu", "cpus": 1, "gpus": [], "platform": "test",
                        "versions": {"numpy": np.__version__}},
            "mode": "quick", "started": "now", "duration_s": 1.0, "command": "pytest",
            "bandwidth": {"read_GBps": 10.0, "dot_GBps": 10.0, "sum_GBps": 9.0,
                          "copy_GBps": 8.0, "array_bytes": 2.0**20},
            "settings": {"mlp_sizes": [4, 8, 1], "mlp_batch": 256, "mlp_lr": 1e-3, **settings},
            "rows": rows}


def assert_trained_alike(results: dict[str, Any]) -> None:
    """Every contestant's parameters and losses equal the analytic NumPy one's (float64,
    1e-9 relative: only rounding order differs), and that one learns."""
    reference = results.pop("numpy-analytic")
    for name, result in results.items():
        for key, value in reference.params.items():
            np.testing.assert_allclose(result.params[key], value, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {key}")
        np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-9, err_msg=name)
    assert reference.losses[-1] < reference.losses[0]  # it learns


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("contestant", BASELINES)
def test_regression_baseline_reaches_the_tutorial_parameters(contestant: str, dtype: str,
                                                              rtol: float) -> None:
    needs(contestant)
    x, y = tutorial_points()
    w, b, losses = tutorial_loop(x, y, LR, EPOCHS)
    make = native.REGRESSION[contestant]
    result = make(x.astype(dtype), y.astype(dtype), LR)(EPOCHS)
    assert float(result.params["w"]) == pytest.approx(w, rel=rtol, abs=rtol)
    assert float(result.params["b"]) == pytest.approx(b, rel=rtol, abs=rtol)
    np.testing.assert_allclose(result.losses, losses, rtol=rtol)
    assert result.run_s > 0


def test_mlp_baselines_agree_with_each_other() -> None:
    for framework in ("jax", "torch"):
        if importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} is not installed")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 4))
    y = np.tanh(x @ rng.standard_normal(4))
    params = native.init_mlp([4, 16, 16, 1], seed=1)
    results = {name: make(x, y, params, 1e-2, 64, 5)(2) for name, make in native.MLP.items()}
    assert_trained_alike(results)


def test_softmax_baselines_and_fit_agree_with_each_other() -> None:
    """Analytic NumPy, JAX and torch autodiff and gradbridge's fit: 2 epochs of Adam on 100
    points in batches of 32 (the last one ragged, 4 rows), float64, 1e-9 relative."""
    for framework in ("jax", "torch"):
        if importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} is not installed")
    x, y = run.softmax_data(100, "float64")
    params = native.init_mlp([x.shape[1], y.shape[1]], seed=2)
    results = {name: make(x, y, params, 1e-2, 32, 5)(2) for name, make in native.SOFTMAX.items()}
    results["gradbridge-numpy"] = run.gradbridge_minibatch(
        "numpy", models.mlp(), "softmax_cross_entropy", x, y, params, 1e-2, 32, 5, "cpu")(2)
    assert_trained_alike(results)


def test_logdet_mlp_analytic_gradient_matches_finite_differences() -> None:
    """Every entry of the NumPy baseline's gradient, the penalty's 2 W (W^T W + I)^-1 term
    included (lam = 0.5 makes it as large as the cross-entropy's), against central differences
    with step 1e-6: truncation ~1e-12 and rounding ~1e-10 of values near 1, so 1e-6 relative
    (with 1e-8 absolute for entries near zero) can only fail on a wrong formula."""
    x, y = run.labelled_data(12, 3, 4, "float64", seed=4)
    params = native.init_mlp([3, 5, 4], seed=6)
    params["b0"] = np.linspace(-0.3, 0.3, 5)  # nonzero biases exercise their gradients fully
    loss_and_grads = native._logdet_mlp_numpy_loss(0.5)
    _, grads = loss_and_grads(params, x, y)
    step = 1e-6
    for key, value in params.items():
        numeric = np.empty_like(value)
        for index in np.ndindex(value.shape):
            shifted = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in params.items()}
                moved[key][index] += sign * step
                shifted.append(loss_and_grads(moved, x, y)[0])
            numeric[index] = (shifted[0] - shifted[1]) / (2 * step)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8, err_msg=key)


def test_logdet_mlp_contestants_agree_with_each_other() -> None:
    """Hand-written NumPy, JAX and torch and gradbridge on all three backends: 20 full-batch
    steps of the benchmark's 32-64-10 model on 64 points, float64. Only summation order and
    the frameworks' LU factorizations differ, so losses and weights agree to 1e-9 relative."""
    x, y = run.logdet_data(64, "float64", seed=3)
    names = [*native.LOGDET_MLP, *run.GRADBRIDGE]
    for name in names:
        needs(name)
    results = {name: run.logdet_trainer(name, x, y, "cpu")(20) for name in names}
    assert_trained_alike(results)


def test_logdet_mlp_pair_is_measured_and_reported(tmp_path: Path) -> None:
    """A tiny paired log-det MLP job, then its section of the report."""
    row = run.measure_pair({"workload": "paired-model", "of": "logdet-mlp", "n": 64,
                            "contestant": "gradbridge-numpy vs numpy-analytic",
                            "dtype": "float64", "epochs": 5, "repeats": 1, "device": "cpu",
                            "prime": False})
    # Same start, same steps, float64: the two runs' losses agree to rounding.
    assert row["max_loss_rel_diff"] < 1e-9 and row["ratio"] > 0
    results = results_document([row], logdet_mlp={
        "sizes": run.LOGDET_SIZES, "lr": run.LOGDET_LR, "lam": run.LOGDET_LAM})
    text = Path(report.write(results, tmp_path / "smoke")["markdown"]).read_text()
    assert "## Log-det MLP (paired, same process)" in text
    assert "| logdet-mlp | 64 | float64 | 5 | gradbridge-numpy vs numpy-analytic |" in text


def test_mlp_batches_follow_gradbridges_order() -> None:
    """The MLP baselines walk the batches in fit's order, so their runs are comparable."""
    from gradbridge.core import data

    for n in (50, data.SHUFFLE_IN_PLACE_MIN + 7):  # both of fit's ways of drawing an order
        for epoch in range(3):
            np.testing.assert_array_equal(native.epoch_order(n, epoch, seed=4),
                                          data.epoch_order(n, 4, epoch))


def tiny_job(contestant: str, workload: str = "regression") -> dict:
    n = 2 * run.MLP_BATCH if workload == "mlp" else 100
    return {"workload": workload, "contestant": contestant, "n": n, "dtype": "float64",
            "epochs": 3, "repeats": 1, "device": "cpu", "prime": False}


def test_harness_runs_every_contestant_and_reports(tmp_path: Path) -> None:
    """One tiny job per contestant that needs no Keras, in this process, then the report."""
    rows = []
    for contestant in (*run.GRADBRIDGE, *BASELINES):
        needs(contestant)
        rows.append(run.measure(tiny_job(contestant)))
        row = rows[-1]
        assert row["agrees"], row  # float64 against the tutorial loop, 1e-9 (run.TOLERANCE)
        assert row["per_epoch_s"] > 0 and row["peak_extra_bytes"] >= 0
    for contestant in ("gradbridge-numpy", "numpy-analytic"):
        rows.append(run.measure(tiny_job(contestant, "mlp")))
    # Same weights, same batches: fit's MLP ends where the hand-written one does (1e-9).
    assert rows[-2]["final_loss"] == pytest.approx(rows[-1]["final_loss"], rel=1e-9)
    results = results_document(rows)
    written = report.write(results, tmp_path / "smoke")
    text = Path(written["markdown"]).read_text()
    assert "gradbridge-numpy / numpy-analytic" in text and "## Targets" in text
    assert Path(written["plot"]).stat().st_size > 0


def test_minibatch_pairs_are_measured_and_reported(tmp_path: Path) -> None:
    """A tiny paired softmax job (ragged batches) per pair of one backend, then its section,
    its targets and its plot in the report."""
    rows = []
    for batch in (64, 128):
        rows.append(run.measure_pair({
            "workload": "paired-minibatch", "of": "softmax", "n": 300, "batch": batch,
            "contestant": "gradbridge-numpy vs numpy-analytic", "dtype": "float64",
            "epochs": 2, "repeats": 1, "device": "cpu", "prime": False}))
        # Same start, same batches, float64: the two runs' losses agree to rounding.
        assert rows[-1]["max_loss_rel_diff"] < 1e-9 and rows[-1]["ratio"] > 0
    results = results_document(rows, softmax={"features": 64, "classes": 10, "lr": 1e-2})
    written = report.write(results, tmp_path / "smoke")
    text = Path(written["markdown"]).read_text()
    assert "## Mini-batch training" in text
    assert "gradbridge-numpy <= 1.50x hand-written on every mini-batch row" in text
    assert Path(written["minibatch_plot"]).stat().st_size > 0


def test_a_job_runs_in_its_own_process() -> None:
    row = run.run_job(tiny_job("numpy-analytic"), timeout_s=60)
    assert "error" not in row, row.get("error")
    assert row["agrees"] and row["peak_resettable"] in (True, False)
    json.dumps(row)  # the row is plain JSON


def test_gpu_check_names_its_folder_and_refuses_without_a_gpu(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import gpu_check

    assert gpu_check.slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_check.slug("Tesla V100-SXM2-16GB") == "tesla-v100-sxm2-16gb"
    if gpu_check.gpu_name() is not None:
        return  # a GPU machine runs the real check with make gpu-check, not here
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 2
    assert capsys.readouterr().err.startswith("error: no CUDA GPU is visible")
    assert not (tmp_path / "gpu").exists()


def test_gpu_check_summary_reports_each_step() -> None:
    import gpu_check

    records = [{"step": "gpu tests", "command": "pytest -m gpu", "status": "passed",
                "seconds": 12.0, "tail": ["5 passed"]},
               {"step": "compare", "command": "gradbridge compare", "status": "failed (exit 1)",
                "seconds": 3.0, "tail": ["check failed"]}]
    text = gpu_check.summary("NVIDIA H200", records)
    assert text.startswith("# gradbridge GPU check on NVIDIA H200")
    assert "| compare | failed (exit 1) | 3.0 | `gradbridge compare` |" in text
    assert "check failed" in text
