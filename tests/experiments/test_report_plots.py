"""report.md, results.csv / timing.csv, atomic files and plots, from synthetic run records."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments import catalog, plots, report, runner
from gradbridge.experiments.catalog import Outcome, RegressionSettings, Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(experiment: str, backend: str, dtype: str, outcome: Outcome | None = None,
             reference: Outcome | None = None, **fields: object) -> dict:
    """A run record as the runner writes it; judged against ``reference`` when given."""
    record: dict = {"experiment": experiment, "backend": backend, "device": "cpu",
                    "dtype": dtype, "status": "ok"}
    if outcome is not None:
        record.update(outcome.as_dict(), wall_s=1e-3,
                      memory={"host_peak_rss_mb": 100.0, "host_rss_increase_mb": 1.0,
                              "device_peak_mb": None})
    record.update(fields)
    if reference is not None and outcome is not None:
        tolerance = Settings().tolerance.for_dtype(dtype)
        record.update(runner.judge(outcome, reference, tolerance,
                                   stepped=catalog.get(experiment).stepped))
    return record


@pytest.fixture(scope="module")
def results() -> dict:
    settings = Settings(regression=RegressionSettings(epochs=10))
    regression = catalog.regression_reference(settings)
    bayes = catalog.bayes_reference(settings)
    off = {k: v.copy() for k, v in regression.series.items()}
    off["loss"][4:] *= 1 + 1e-3  # a backend that goes wrong at epoch 4
    runs = [
        fake_run("regression", "numpy", "float64", regression, regression,
                 losses=regression.losses,
                 timing={"per_epoch_s": 2e-5, "compile_s": None,
                         "per_epoch_s_quantiles": [1.8e-5, 1.9e-5, 2e-5, 2.1e-5, 2.4e-5]}),
        fake_run("regression", "fake", "float32", Outcome(series=off, losses=off["loss"].tolist()),
                 regression),
        fake_run("bayes", "numpy", "float64", bayes, bayes),
        fake_run("bayes", "fake", "float32", status="error",
                 reason="RuntimeError: broken | twice\nsecond line"),
        fake_run("regression", "torch", "float64", status="skipped",
                 reason="the torch backend needs torch, which is not installed"),
        fake_run("timing", "numpy", "float64", Outcome(extra={
            "sizes": [100, 1000], "per_epoch_s": [1e-5, 4e-5], "compile_s": [None, None],
            "per_epoch_s_quantiles": [[1e-5] * 5, [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]],
            "epochs": 50, "repeats": 5,
            "per_epoch_s_repeats": [[1e-5] * 5, [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]]})),
        fake_run("timing", "fake", "float32", Outcome(extra={
            "sizes": [100, 1000], "per_epoch_s": [2e-6, 3e-6], "compile_s": [0.3, 0.2],
            "per_epoch_s_quantiles": [[2e-6] * 5, [3e-6] * 5], "epochs": 50, "repeats": 5,
            "per_epoch_s_repeats": [[2e-6] * 5, [3e-6] * 5]})),
    ]
    grid = runner.Grid(("regression", "bayes", "timing"), ("numpy", "fake", "torch"), ("cpu",),
                       ("float32", "float64"), settings)
    document = runner.assemble(grid, {"regression": regression, "bayes": bayes}, {})
    return {**document, "runs": runs}


def test_one_verdict_per_backend(results: dict) -> None:
    verdicts = {backend: text for backend, _, text in report.backend_verdicts(results)}
    assert verdicts["numpy"].startswith("agrees (largest relative difference")
    assert verdicts["fake"] == "differs by 0.001 from epoch 4 (regression, cpu, float32)"
    assert verdicts["torch"] == "skipped: the torch backend needs torch, which is not installed"


def test_failures_are_what_check_fails_on(results: dict) -> None:
    lines = report.failures(results)
    assert lines == ["regression on fake cpu float32: differs by 0.001 from epoch 4",
                     "bayes on fake cpu float32: error: RuntimeError: broken | twice\n"
                     "second line"]


def test_results_files_are_complete_and_strict(results: dict, tmp_path: Path) -> None:
    broken = {**results, "runs": [*results["runs"], {**results["runs"][0], "wall_s": np.inf}]}
    report.write_results(broken, tmp_path)

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert document["runs"][-1]["wall_s"] is None  # inf became null, not Infinity
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["backend"] for r in rows] == [r["backend"] for r in broken["runs"]]
    assert rows[1]["verdict"] == "differs by 0.001 from epoch 4"
    assert rows[1]["first_epoch_beyond_tolerance"] == "4"
    assert json.loads(rows[0]["final_params"]) == pytest.approx(results["runs"][0]["params"])
    timing = list(csv.DictReader((tmp_path / "timing.csv").open()))
    assert [(r["backend"], r["n"]) for r in timing] == [
        ("numpy", "100"), ("numpy", "1000"), ("fake", "100"), ("fake", "1000")]
    assert json.loads(timing[1]["per_epoch_s_repeats"]) == [4e-5, 4e-5, 4e-5, 4.2e-5, 5e-5]


def test_report_reads_as_tables(results: dict) -> None:
    manifest = {"command": ["gradbridge", "compare"], "started": "today",
                "environment": {"cpu": {"model": "Test CPU", "count": 2}, "gpus": [],
                                "packages": {"numpy": "2.0"}}}
    text = report.render(results, manifest, [Path("loss_curves.png")])
    assert "Run on Test CPU (2 CPUs), no GPU; numpy 2.0." in text
    assert "| fake | 2 ok, 1 error | differs by 0.001 from epoch 4 (regression, cpu, " \
           "float32) |" in text
    assert "| regression | numpy | cpu | float64 | agrees | 0.0e+00 | 0.0e+00 | " \
           "20 µs/epoch (IQR 10%) | - |" in text
    assert "broken \\| twice second line" in text  # pipes escaped, one line per cell
    assert "| numpy | cpu | float64 | 10 µs (IQR 0%) | 40 µs (IQR 5%) | - |" in text
    assert "| fake | cpu | float32 | 2 µs (IQR 0%) | 3 µs (IQR 0%) | 300 ms (N = 100) |" in text
    assert "| N = 100 | N = 1,000 |" in text
    assert "![Loss per epoch on every backend](loss_curves.png)" in text
    assert "11 run(s) of the grid have not run yet" in text  # 3 x 3 x 2 = 18 cells, 7 runs


def test_format_seconds() -> None:
    assert [report.format_seconds(s) for s in (0, 2.5e-9, 3.2e-6, 0.0123, 4.0, None)] == [
        "0", "2.5 ns", "3.2 µs", "12.3 ms", "4 s", "-"]


def test_atomic_write_never_leaves_half_a_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    report.atomic_write(target, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(InvalidArgument, match=f"cannot write results to {target}: disk full"):
        report.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # temp file removed


def test_every_plot_is_drawn_from_records(results: dict, tmp_path: Path) -> None:
    written = plots.make_plots(results, tmp_path)
    assert [p.stem for p in written] == ["loss_curves", "gd_path", "reference_difference",
                                         "posterior_prevalence", "timing"]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    # exact zeros (numpy float64 vs itself) are clipped to the floor, not dropped from log axes
    figure = plots.reference_difference(results)
    assert figure is not None
    left = figure.axes[0]
    numpy_line = next(line for line in left.get_lines() if "numpy" in str(line.get_label()))
    assert np.all(numpy_line.get_ydata() == plots.ZERO_FLOOR)


def test_plots_skip_what_the_results_lack(results: dict, tmp_path: Path) -> None:
    only_timing = {**results, "reference": {},
                   "runs": [r for r in results["runs"] if r["experiment"] == "timing"]}
    assert [p.stem for p in plots.make_plots(only_timing, tmp_path)] == ["timing"]
