"""report.md, results.csv, atomic files and plots, from synthetic run records."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments import grid as grids
from gradbridge.experiments import loader, plots, report, runner, store
from gradbridge.experiments.record import Results, RunRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MEMORY = {"host_peak_rss_mb": 100.0, "host_rss_increase_mb": 1.0, "device_peak_mb": None}


def fake_run(experiment: str, backend: str, dtype: str, outputs: dict | None = None,
             reference: dict | None = None, **fields: object) -> RunRecord:
    """A run record as the runner writes it; judged against ``reference`` when given."""
    record = RunRecord(experiment, backend, "cpu", dtype, **fields)  # type: ignore[arg-type]
    if outputs is not None:
        host = {k: np.asarray(v, dtype=float) for k, v in outputs.items()}
        record.outputs = {k: v.tolist() for k, v in host.items()}
        record.memory = dict(MEMORY)
        if reference is not None:
            e = loader.load(experiment)
            runner.judge(record, host, {k: np.asarray(v, dtype=float)
                                        for k, v in reference.items()}, {}, e,
                         e.tolerances.for_dtype(dtype))
    return record


def off_by(reference: dict) -> str:
    """How much the fake backend's loss differs: 1e-3 of the loss at epoch 4 (the largest
    loss from there on, as it decreases), on the scale of the whole series (its epoch 0)."""
    loss = np.asarray(reference["loss"])
    return f"{1e-3 * loss[4] / np.abs(loss).max():.2g}"


@pytest.fixture(scope="module")
def results() -> Results:
    grid = grids.grid_from_options(experiments=["regression", "bayes", "timing"],
                                    backends=["numpy"], settings={"regression": {"epochs": 10}})
    grid = grids.Grid(grid.experiments, ("numpy", "fake", "torch"), ("cpu",),
                       ("float32", "float64"), grid.settings)
    experiments = grid.loaded()
    regression = experiments["regression"].reference_outputs(grid.settings_of("regression"))
    bayes = experiments["bayes"].reference_outputs({})
    off = {k: v.copy() for k, v in regression.items()}
    off["loss"][4:] *= 1 + 1e-3  # a backend that goes wrong at epoch 4
    runs = [
        fake_run("regression", "numpy", "float64", regression, regression,
                 time={"first_s": 1e-3, "run_s": 2e-5, "compile_s": None,
                       "run_s_quantiles": [1.8e-5, 1.9e-5, 2e-5, 2.1e-5, 2.4e-5]}),
        fake_run("regression", "fake", "float32", off, regression),
        fake_run("bayes", "numpy", "float64", bayes, bayes),
        fake_run("bayes", "fake", "float32", status="error",
                 reason="RuntimeError: broken | twice\nsecond line"),
        fake_run("regression", "torch", "float64", status="skipped",
                 reason="the torch backend needs torch, which is not installed"),
        fake_run("timing", "numpy", "float64", {
            "n": [100, 1000], "per_epoch_s": [1e-5, 4e-5], "compile_s": [np.nan, np.nan],
            "per_epoch_s_quantiles": [[1e-5] * 5, [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]],
            "per_epoch_s_repeats": [[1e-5] * 5, [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]]}),
        fake_run("timing", "fake", "float32", {
            "n": [100, 1000], "per_epoch_s": [2e-6, 3e-6], "compile_s": [0.3, 0.2],
            "per_epoch_s_quantiles": [[2e-6] * 5, [3e-6] * 5],
            "per_epoch_s_repeats": [[2e-6] * 5, [3e-6] * 5]}),
    ]
    return runner.assemble(grid, experiments, {"regression": regression, "bayes": bayes}, {},
                           runs)


def test_one_verdict_per_backend(results: Results) -> None:
    verdicts = {backend: text for backend, _, text in report.backend_verdicts(results)}
    assert verdicts["numpy"].startswith("agrees (largest relative difference")
    assert verdicts["fake"] == (f"loss differs by {off_by(results.references['regression'])} "
                                "from epoch 4 (regression, cpu, float32)")
    assert verdicts["torch"] == "skipped: the torch backend needs torch, which is not installed"


def test_failures_are_what_check_fails_on(results: Results) -> None:
    lines = report.failures(results)
    assert lines == [f"regression on fake cpu float32: loss differs by "
                     f"{off_by(results.references['regression'])} from epoch 4",
                     "bayes on fake cpu float32: error: RuntimeError: broken | twice\n"
                     "second line"]


def test_results_files_are_complete_and_strict(results: Results, tmp_path: Path) -> None:
    first = results.runs[0]
    broken = Results(results.grid, results.experiments, results.references, {},
                     [*results.runs, RunRecord(**{**first.as_dict(), "time": {
                         "run_s": np.inf}})])
    report.write_results(broken, tmp_path)

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert document["runs"][-1]["time"]["run_s"] is None  # inf became null, not Infinity
    assert document["runs"][5]["outputs"]["compile_s"] == [None, None]  # NaN too
    assert document["experiments"]["regression"]["series"] == ["loss", "w", "b"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["backend"] for r in rows] == [r.backend for r in broken.runs]
    assert rows[1]["verdict"] == (f"loss differs by {off_by(results.references['regression'])}"
                                  " from epoch 4")
    assert rows[1]["output"] == "loss" and rows[1]["first_step_beyond_tolerance"] == "4"
    finals = json.loads(rows[0]["final_outputs"])
    # series at their last epoch, scalars as they are; the 101-point posterior is left out
    assert finals["final_w"] == pytest.approx(first.outputs["final_w"])
    assert finals["loss"] == pytest.approx(first.outputs["loss"][-1])
    assert "posterior" not in json.loads(rows[2]["final_outputs"])
    timing = list(csv.DictReader((tmp_path / "timing.csv").open()))
    assert [(r["backend"], r["n"]) for r in timing] == [
        ("numpy", "100"), ("numpy", "1000"), ("fake", "100"), ("fake", "1000")]
    assert json.loads(timing[1]["per_epoch_s_repeats"]) == [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]
    assert timing[0]["compile_s"] == "" and timing[2]["compile_s"] == "0.3"


def test_report_reads_as_tables(results: Results) -> None:
    manifest = {"command": ["gradbridge", "compare"], "started": "today",
                "environment": {"cpu": {"model": "Test CPU", "count": 2}, "gpus": [],
                                "packages": {"numpy": "2.0"}}}
    text = report.render(results, manifest, [Path("regression_series.png")])
    assert "Run on Test CPU (2 CPUs), no GPU; numpy 2.0." in text
    off = off_by(results.references["regression"])
    assert f"| fake | 2 ok, 1 error | loss differs by {off} from epoch 4 (regression, cpu, " \
           "float32) |" in text
    assert "| regression | numpy | cpu | float64 | agrees | 0.0e+00 | 0.0e+00 | " \
           "20 µs (IQR 10%) | - |" in text
    assert "broken \\| twice second line" in text  # pipes escaped, one line per cell
    # the per-output table: the output that went wrong, in bold, with the epoch it began
    assert f"| fake | cpu | float32 | **{float(off):.1e} (from epoch 4)** | 0.0e+00 |" in text
    assert "| timing | regression time per epoch over data sizes | not compared |" in text
    assert "| numpy | cpu | float64 | 10 µs (IQR 0%) | 40 µs (IQR 5%) | - |" in text
    assert "| fake | cpu | float32 | 2 µs (IQR 0%) | 3 µs (IQR 0%) | 300 ms (N = 100) |" in text
    assert "| N = 100 | N = 1,000 |" in text
    assert "![regression series](regression_series.png)" in text
    assert "11 run(s) of the grid have not run yet" in text  # 3 x 3 x 2 = 18 cells, 7 runs


def test_report_has_a_place_for_explanations(results: Results) -> None:
    explained = Results(results.grid, results.experiments, results.references, {},
                        [RunRecord(**{**results.runs[1].as_dict(),
                                      "explanation": "spring.py:12 `v = ...` | differs"})])
    text = report.render(explained, {}, [])
    assert "## Where the differences start" in text
    assert "- regression on fake cpu float32: spring.py:12 `v = ...` \\| differs" in text
    assert "Where the differences start" not in report.render(results, {}, [])


def test_format_seconds() -> None:
    from gradbridge.experiments.noise import format_seconds

    assert [format_seconds(s) for s in (0, 2.5e-9, 3.2e-6, 0.0123, 4.0, None)] == [
        "0", "2.5 ns", "3.2 µs", "12.3 ms", "4 s", "-"]


def test_atomic_write_never_leaves_half_a_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    store.atomic_write(target, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(InvalidArgument, match=f"cannot write results to {target}: disk full"):
        store.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # temp file removed


def test_every_plot_is_drawn_from_records(results: Results, tmp_path: Path) -> None:
    written = plots.make_plots(results, tmp_path)
    assert [p.stem for p in written] == ["regression_series", "reference_difference", "gd_path",
                                         "posterior_prevalence", "timing"]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    # the series figure: loss, w and b over the reference, then their differences (log y);
    # exact zeros (numpy float64 vs itself) are clipped to the floor, not dropped from log axes
    figure = plots.series_figure(results, "regression")
    assert figure is not None
    loss_difference = figure.axes[3]
    assert loss_difference.get_yscale() == "log"
    numpy_line = next(line for line in loss_difference.get_lines()
                      if "numpy" in str(line.get_label()))
    assert np.all(numpy_line.get_ydata() == plots.ZERO_FLOOR)
    fake_line = next(line for line in loss_difference.get_lines()
                     if "fake" in str(line.get_label()))
    # the fake backend's loss is 1e-3 off from epoch 4, on the series' own scale
    rel = np.asarray(fake_line.get_ydata())
    assert np.all(rel[:4] == plots.ZERO_FLOOR) and np.all(rel[4:] > 1e-5)


def test_plots_skip_what_the_results_lack(results: Results, tmp_path: Path) -> None:
    only_timing = Results(results.grid, results.experiments, {}, {},
                          [r for r in results.runs if r.experiment == "timing"])
    assert [p.stem for p in plots.make_plots(only_timing, tmp_path)] == ["timing"]
