"""The comparison grid: references, agreement, config validation, atomic runs, resume, kill.

References are checked against sources independent of the code that computes them:
np.linalg.lstsq, exact fractions, central finite differences and gradbridge's own models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import killed_after_the_first_run

import gradbridge as gb
from gradbridge.backends.numpy import NumpyBackend
from gradbridge.core.backend import BackendNotFound, DeviceNotAvailable, InvalidArgument
from gradbridge.experiments import grid as grids
from gradbridge.experiments import loader, memory, runner, store
from gradbridge.experiments.agreement import differences, verdict
from gradbridge.experiments.builtin import bayes, linalg, mlp_gradients, regression

REPO = Path(__file__).resolve().parents[2]
REGRESSION = {"epochs": 50, "lr": 0.1, "n": 100, "seed": 42}


def small_grid(experiments: tuple[str, ...] = ("linalg", "regression", "bayes", "mlp_gradients"),
               backends: tuple[str, ...] = ("numpy",),
               dtypes: tuple[str, ...] = ("float32", "float64")) -> grids.Grid:
    grid = grids.grid_from_options(experiments=experiments, backends=backends, dtypes=dtypes,
                                    settings={"regression": {"epochs": 5}}
                                    if "regression" in experiments else {})
    return dataclasses.replace(grid, backends_named=False)


def start(directory: Path, grid: grids.Grid) -> runner.Results:
    runner.prepare(directory, grid, resume=False, argv=["test"])
    return runner.run_grid(grid, directory)


# --------------------------------------------------------------------- agreement


def test_differences_are_normwise_relative_per_step() -> None:
    reference = {"loss": np.array([2.0, 1.0]), "w": np.array([0.0, 4.0])}
    run = {"loss": np.array([2.0, 1.1]), "w": np.array([0.0, 4.0])}
    diff = differences(run, reference, series=("loss", "w"))
    assert diff["loss"].abs == pytest.approx([0.0, 0.1])  # exact arithmetic on short decimals
    # a series is measured on its own scale: 0.1 / max|ref loss over the series| = 0.1 / 2
    assert diff["loss"].rel == pytest.approx([0.0, 0.05])
    assert diff["w"].rel == [0.0, 0.0]
    # a zero reference entry does not divide by zero: normwise over the vector
    vector = differences({"g": np.array([0.0, 2.0])}, {"g": np.array([1e-3, 2.0])})
    assert vector["g"].rel == pytest.approx([1e-3 / 2.0])
    # a trajectory crossing zero is judged on its own scale, not where it happens to be small
    crossing = differences({"x": np.array([1.0, 1e-6 + 1e-9])}, {"x": np.array([1.0, 1e-6])},
                           series=("x",))
    assert crossing["x"].rel == pytest.approx([0.0, 1e-9], rel=1e-6)


def test_non_finite_and_mismatched_runs() -> None:
    reference = {"loss": np.array([1.0, 1.0])}
    nan_diff = differences({"loss": np.array([1.0, np.nan])}, reference, series=("loss",))
    assert nan_diff["loss"].rel[1] == np.inf
    assert not verdict(nan_diff, 1e-10, series=("loss",)).agrees
    with pytest.raises(ValueError, match=r"'loss' has shape \(3,\).*\(2,\)"):
        differences({"loss": np.ones(3)}, reference)
    with pytest.raises(ValueError, match="no 'loss'"):
        differences({}, reference)


def test_verdict_names_the_output_how_much_and_from_which_step() -> None:
    reference = {"loss": np.ones(6), "x": np.ones(2)}
    run = {"loss": np.array([1, 1, 1, 1 + 2e-3, 1 + 5e-3, 1], dtype=float), "x": np.ones(2)}
    stepped = verdict(differences(run, reference, ("loss",)), 1e-4, series=("loss",),
                      step="epoch")
    assert not stepped.agrees and stepped.first_step == 3 and stepped.output == "loss"
    assert stepped.text == "loss differs by 0.005 from epoch 3"
    once = verdict(differences(run, reference), 1e-4)
    assert once.text == "loss differs by 0.005" and once.first_step is None
    off = {"loss": run["loss"], "x": np.array([1.0, 1.1])}
    both = verdict(differences(off, reference, ("loss",)), 1e-4, series=("loss",))
    assert both.text == "x differs by 0.1; loss from step 3" and both.first_step == 3
    assert verdict(differences(reference, reference), 1e-10).text == "agrees"


# --------------------------------------------------------------------- references


def test_regression_reference_follows_the_tutorial_and_reaches_least_squares() -> None:
    from gradbridge.experiments import seed

    short = regression.reference(**REGRESSION)
    x, y = seed.tutorial_data(100, 42)
    assert len(short["loss"]) == 50
    # epoch 0 starts at w = b = 0, so its loss is mean(y^2) exactly
    assert short["loss"][0] == pytest.approx(np.mean(y ** 2), rel=1e-15)
    assert short["w"][0] == 0.0 and short["b"][0] == 0.0
    # the tutorial's printed result: the line y = 3x + 2 the data were drawn from, recovered
    assert abs(short["final_w"] - 3) < 0.1 and abs(short["final_b"] - 2) < 0.1
    long = regression.reference(**{**REGRESSION, "epochs": 2000})
    (w_opt, b_opt), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
    # gradient descent on a convex quadratic converges to the least-squares solution
    assert long["final_w"] == pytest.approx(w_opt, rel=1e-10)
    assert long["final_b"] == pytest.approx(b_opt, rel=1e-10)


def test_bayes_reference_is_the_exact_fraction() -> None:
    reference = bayes.reference()
    s, f, p = Fraction(95, 100), Fraction(5, 100), Fraction(1, 100)
    exact = s * p / (s * p + f * (1 - p))  # = 95/590, the tutorial's 16.1 %
    assert float(reference["medical_test"]) == pytest.approx(float(exact), rel=1e-15)
    assert 0.01 in bayes.PRIORS.round(15)  # the tutorial's prevalence is on the curve


def test_linalg_reference_matches_the_tutorial_arithmetic() -> None:
    reference = linalg.reference()
    assert reference["dot"] == pytest.approx(1 * 0.5 + 2 * 0.3 + 3 * 0.2, rel=1e-15)
    assert reference["batch"] == pytest.approx([1.7, 4.7, 7.7], rel=1e-15)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_hand_written_backprop_matches_finite_differences(activation: str) -> None:
    params, x, y = mlp_gradients.problem((3, 5, 4, 2), 16, 3)
    # nonzero biases keep ReLU inputs off its kink at exactly 0, where a dead hidden layer
    # with zero biases would put them and finite differences would straddle the corner
    rng = np.random.default_rng(0)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) if k.startswith("b") else v
              for k, v in params.items()}
    grads = mlp_gradients.gradient_reference(params, x, y, activation)
    numeric = mlp_gradients.central_differences(
        lambda p: mlp_gradients.loss_reference(p, x, y, activation), params, 1e-6)
    # central differences with h = 1e-6 in float64: truncation ~h^2, rounding ~1e-16/h, so
    # about 1e-10 absolute; 1e-7 relative to the gradient's size leaves ample margin
    flat = mlp_gradients.flatten
    scale = np.abs(flat(grads)).max()
    assert np.abs(flat(grads) - flat(numeric)).max() <= 1e-7 * scale


def test_mlp_reference_is_the_same_function_as_models_mlp() -> None:
    params, x, y = mlp_gradients.problem((3, 6, 1), 10, 1)
    be = gb.get_backend("numpy", dtype="float64")
    from gradbridge.core import losses, models

    ours = float(losses.mse(be, models.mlp("tanh")(be, params, be.from_host(x)), be.from_host(y)))
    # the same float64 arithmetic in the same order: agreement to rounding (1e-12)
    assert mlp_gradients.loss_reference(params, x, y, "tanh") == pytest.approx(ours, rel=1e-12)


# --------------------------------------------------------------------- grid options


def test_grid_defaults_and_normalisation() -> None:
    grid = grids.grid_from_options(dtypes=["float64", "float64"], devices=["CPU"],
                                    settings={"timing": {"sizes": "1e2,2000", "repeats": "7"}},
                                    text=True)
    assert grid.experiments == tuple(loader.builtin_names())
    assert loader.builtin_names() == ["linalg", "regression", "bayes", "mlp_gradients", "newton",
                                     "timing"]
    assert {"numpy", "jax", "torch"} <= set(grid.backends)
    assert grid.devices == ("cpu",) and grid.dtypes == ("float64",)
    assert grid.settings["timing"]["sizes"] == [100, 2000]
    assert grid.settings["timing"]["repeats"] == 7
    assert grid.settings["regression"] == REGRESSION  # the defaults, from the signature
    assert grids.Grid.from_dict(json.loads(json.dumps(grid.as_dict()))) == grid


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"experiments": ["regresion"]}, InvalidArgument, "known experiments: linalg"),
    ({"backends": ["numpi"]}, BackendNotFound, "known backends:"),
    ({"dtypes": ["float16"]}, InvalidArgument, "float32, float64"),
    ({"devices": ["auto"]}, InvalidArgument, "concrete devices"),
    ({"devices": ["tpu"]}, InvalidArgument, "'cuda:N'"),
    ({"settings": {"timing": {"sizes": "1e2,ten"}}, "text": True}, InvalidArgument,
     "timing.sizes must be a list of integers; got '1e2,ten'"),
    ({"settings": {"timing": {"repeats": "0"}}, "text": True}, InvalidArgument,
     "timing.repeats=0"),
    ({"settings": {"regression": {"epochs": 0}}}, InvalidArgument, "regression.epochs=0"),
    ({"settings": {"regression": {"epoch": 3}}}, InvalidArgument,
     "unknown setting 'epoch' of experiment regression .*; its settings: epochs \\(an integer, "
     "default 50\\), lr \\(a number, default 0.1\\)"),
    ({"experiments": ["bayes"], "settings": {"regression": {"epochs": 5}}}, InvalidArgument,
     "names experiment 'regression', which is not in the grid \\(bayes\\)"),
])
def test_grid_rejects_bad_options(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        grids.grid_from_options(**options)


def test_missing_gpu_is_an_error_naming_the_devices_that_exist() -> None:
    grid = grids.Grid(("linalg",), ("numpy",), ("cuda:0",), ("float32",))
    with pytest.raises(DeviceNotAvailable, match="devices that exist: cpu"):
        grids.check_devices(grid)


# ---------------------------------------------------------------------- config files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def test_config_file_sets_the_grid(tmp_path: Path) -> None:
    config = grids.load_config(write(tmp_path, """
backends = ["numpy"]
dtypes = ["float64"]
experiments = ["regression", "timing"]
out = "somewhere"
check = true
[regression]
epochs = 7
lr = 0.05
[timing]
sizes = [100, 1e3]
[tolerance]
float32 = 1e-3
"""))
    assert config.grid.backends == ("numpy",) and config.grid.dtypes == ("float64",)
    assert config.grid.settings["regression"] == {**REGRESSION, "epochs": 7, "lr": 0.05}
    assert config.grid.settings["timing"]["sizes"] == [100, 1000]
    assert config.grid.tolerance == {"float32": 1e-3}
    loaded = config.grid.loaded()
    assert loaded["regression"].tolerances.float32 == 1e-3  # the file's, over the experiment's
    assert loaded["regression"].tolerances.float64 == 1e-10
    assert config.out == "somewhere" and config.check and not config.quiet


@pytest.mark.parametrize(("text", "message"), [
    ("backend = ['numpy']", "unknown key 'backend'; valid keys: backends, devices"),
    ("[timing]\nsize = [100]", r"unknown setting 'size' of experiment timing .*; its settings: "
                               r"sizes \(a list of integers"),
    ("[timing]\nsizes = 100", "timing.sizes must be a list of integers; got 100"),
    ("[timing]\nsizes = [100, 'x']", "timing.sizes must be a list of integers"),
    ("[regression]\nepochs = 2.5", "regression.epochs must be an integer; got 2.5"),
    ("[regression]\nlr = 'fast'", "regression.lr must be a number; got 'fast'"),
    ("[regression]\nlr = -1.0", "regression.lr=-1.0 is not valid"),
    ("check = 'yes'", "check must be true or false"),
    ("backends = 'numpy'", "backends must be a list of strings"),
    ("experiments = []", "experiments is empty; name at least one"),
    ("regression = 3", "unknown key 'regression'; valid keys: backends"),
    ("backends = [", "is not valid TOML"),
    ("[tolerance]\nfloat32 = 1.5", "tolerance.float32=1.5 is not valid; expected a relative"),
    ("[tolerance]\nfloat64 = 0.0", "tolerance.float64=0.0 is not valid"),
    ("[tolerance]\nfloat16 = 0.1", r"unknown key in \[tolerance\]; valid keys: float32"),
    ("experiments = ['bayes']\n[regression]\nepochs = 5", "names experiment 'regression', "
     r"which is not in the grid \(bayes\); add it to the experiments"),
])
def test_config_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        grids.load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        grids.load_config(tmp_path / "nope.toml")


# ---------------------------------------------------------------------- running


def test_grid_runs_agree_and_resume_redoes_only_missing_runs(tmp_path: Path) -> None:
    grid = small_grid()
    results = start(tmp_path, grid)
    assert len(results.runs) == 8
    for run in results.runs:
        assert run.status == "ok", run
        # NumPy backend vs the hand-written float64 reference: 1e-10 (float64) / 1e-4 (float32)
        assert run.agrees, run.verdict
    fit = next(r for r in results.runs if r.experiment == "regression" and r.dtype == "float64")
    assert len(fit.outputs["loss"]) == 5 and len(fit.differences["loss"]["rel"]) == 5
    assert fit.outputs["w"][0] == 0.0  # the path starts at w = b = 0
    assert fit.memory["host_peak_rss_mb"] > 0
    assert fit.time["run_s"] > 0 and fit.time["repeats"] == 3

    runs = tmp_path / "runs"
    before = {p.name: p.read_text() for p in runs.glob("*.json")}
    removed = "bayes__numpy__cpu__float32.json"
    (runs / removed).unlink()
    started = []
    runner.prepare(tmp_path, None, resume=True, argv=["test", "--resume"])
    resumed = runner.run_grid(grid, tmp_path,
                              on_event=lambda e: started.append(e.cell.filename)
                              if e.kind == "start" else None)
    assert started == [removed]
    after = {p.name: p.read_text() for p in runs.glob("*.json")}
    assert {k: v for k, v in after.items() if k != removed} == {
        k: v for k, v in before.items() if k != removed}
    keys = [r.cell for r in resumed.runs]
    assert len(keys) == len(set(keys)) == 8
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert len(on_disk["runs"]) == 8
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["resumed"][0]["command"] == ["test", "--resume"]


class FailingGradients(NumpyBackend):
    """A backend whose autodiff raises: its gradient runs must be recorded as errors."""

    name = "failing"

    def value_and_grad(self, fn, argnums=0):
        raise RuntimeError("no gradients today")


def test_failures_are_recorded_skips_explained_and_the_grid_goes_on(tmp_path: Path) -> None:
    gb.register_backend("failing", FailingGradients)
    gb.register_backend("ghost", "ghost_framework_that_is_not_installed.backend:Ghost",
                        install="pip install ghost-framework")
    try:
        grid = small_grid(experiments=("linalg", "mlp_gradients"),
                          backends=("failing", "ghost", "numpy"), dtypes=("float64",))
        results = start(tmp_path, grid)
    finally:
        gb.unregister_backend("failing")
        gb.unregister_backend("ghost")
    status = {(r.experiment, r.backend): r for r in results.runs}
    assert status["linalg", "failing"].status == "ok"
    assert status["mlp_gradients", "failing"].status == "error"
    assert "no gradients today" in status["mlp_gradients", "failing"].reason
    assert status["linalg", "ghost"].status == "skipped"
    assert "pip install ghost-framework" in status["linalg", "ghost"].reason
    assert status["mlp_gradients", "numpy"].status == "ok"


def test_prepare_refuses_to_mix_comparisons(tmp_path: Path) -> None:
    grid = small_grid(experiments=("linalg",), dtypes=("float64",))
    start(tmp_path, grid)
    with pytest.raises(InvalidArgument, match="already holds results; add --resume"):
        runner.prepare(tmp_path, grid, resume=False, argv=[])
    other = small_grid(experiments=("bayes",), dtypes=("float64",))
    with pytest.raises(InvalidArgument, match=r"another grid .*experiments: stored linalg, "
                                              "given bayes"):
        runner.prepare(tmp_path, other, resume=True, argv=[])
    with pytest.raises(InvalidArgument, match="nothing to resume"):
        runner.prepare(tmp_path / "empty", None, resume=True, argv=[])


def test_peak_memory_sees_an_allocation() -> None:
    be = gb.get_backend("numpy")
    with memory.PeakMemory(be) as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    # RSS counts pages in whole; 64 MiB touched must raise the peak by most of that
    assert (peak.result["host_rss_increase_mb"] or 0) >= 48
    assert peak.result["device_peak_mb"] is None  # CPU: no device allocator


def test_a_killed_comparison_leaves_valid_files_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradbridge", "compare", "--backends", "numpy",
               "--experiments", "linalg,regression,bayes,mlp_gradients,timing",
               "--set", "timing.sizes=200000", "--set", "regression.epochs=5", "--out", str(out),
               "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = killed_after_the_first_run(command, out, tmp_path, env)
    assert process.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert 1 <= len(finished) < 10, "the kill should land part-way through the grid"
    for path in out.rglob("*.json"):
        json.loads(path.read_text())  # every file it left is complete JSON
    kept = {name: (out / "runs" / name).read_text() for name in finished}

    done = subprocess.run([*command[:3], "compare", "--resume", "--out", str(out), "--quiet"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name, text in kept.items():
        assert (out / "runs" / name).read_text() == text  # finished runs were not redone
    results = json.loads((out / "results.json").read_text())
    keys = [(r["experiment"], r["backend"], r["device"], r["dtype"]) for r in results["runs"]]
    assert len(keys) == len(set(keys)) == 10  # 5 experiments x 2 dtypes, no duplicates
    assert all(r["status"] == "ok" for r in results["runs"])
    assert not list(out.rglob(f"*{store.TEMP_SUFFIX}"))
    assert (out / "report.md").is_file()
