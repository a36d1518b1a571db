"""Timings that do not mislead: compile only when something compiled, a spread beside every
median, noisy repeats marked as a contended machine in the report, the summary, the CSV files
and the plot. Spreads are synthetic where the point is how they are shown; no assertion
depends on how fast this machine is."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_backend
from matplotlib.container import ErrorbarContainer

from gradbridge.commands.compare import summary_rows
from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments import grid as grids
from gradbridge.experiments import loader, noise, report, runner
from gradbridge.experiments.builtin import timing
from gradbridge.experiments.record import Results, RunRecord

TIMING = loader.load("timing")


def test_timing_takes_at_least_five_repeats() -> None:
    assert TIMING.defaults["repeats"] == timing.MIN_REPEATS == 5
    with pytest.raises(InvalidArgument, match=r"timing.repeats=4 .*>= 5"):
        TIMING.settings({"repeats": 4})


def test_numpy_sweep_records_spread_and_its_traces_as_compile() -> None:
    be = make_backend("numpy", "float32")
    settings = TIMING.settings({"sizes": [37], "epochs": 3})  # an N nothing traced yet
    first = TIMING.run(be, settings)
    fastest, q1, median, q3, slowest = first["per_epoch_s_quantiles"][0]
    assert median == first["per_epoch_s"][0] and fastest <= q1 <= median <= q3 <= slowest
    assert sorted(first["per_epoch_s_repeats"][0]) == pytest.approx(
        [fastest, q1, median, q3, slowest])  # 5 repeats: the quartiles are repeats themselves
    assert first["compile_s"][0] > 0  # the first fit at a new N traces: compile, not run time
    assert np.isnan(TIMING.run(be, settings)["compile_s"][0])  # traced already: none


def test_a_jax_rerun_reports_no_compile() -> None:
    be = make_backend("jax", "float64")
    experiment = loader.load("mlp_gradients")
    settings = experiment.settings({"sizes": [3, 7, 1], "n": 9})  # shapes new to JAX
    _, first = runner.timed_calls(lambda: experiment.run(be, settings), be, 3)
    _, again = runner.timed_calls(lambda: experiment.run(be, settings), be, 3)
    # the first call traces and compiles (~0.1 s), far beyond the spread of cached calls
    assert first["compile_s"] is not None and first["compile_s"] > first["run_s"]
    # every program is in JAX's cache now: no compile, or noise far below the real one
    assert again["compile_s"] is None or again["compile_s"] < 0.1 * first["compile_s"]
    record = RunRecord("mlp_gradients", "jax", "cpu", "float64",
                       time={**again, "compile_s": None})
    text = report.render(results_with(record), {}, [])
    cells = row_cells(text, "| mlp_gradients | jax |")
    assert cells[7].endswith(")") and " (IQR " in cells[7]  # time: median and spread
    assert cells[8] == "-"  # compile: nothing compiled, no time printed


def results_with(*runs: RunRecord) -> Results:
    """A results document (as runner.assemble writes it) holding ``runs``."""
    grid = grids.grid_from_options(experiments=["regression", "mlp_gradients", "timing"],
                                    backends=["numpy", "jax"], dtypes=["float64"])
    return runner.assemble(grid, grid.loaded(), {}, {}, runs)


def record(experiment: str, backend: str, **fields: Any) -> RunRecord:
    return RunRecord(experiment, backend, "cpu", "float64", **fields)


def row_cells(text: str, start: str) -> list[str]:
    """The cells of the report's table row that begins with ``start``."""
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


NOISY = record("timing", "numpy", time={"run_s": 1.5, "first_s": 1.5}, outputs={
    "n": [1_000, 10_000, 100_000, 1_000_000],
    "per_epoch_s": [8e-6, 1e-5, 9e-4, 1e-4],
    "per_epoch_s_quantiles": [[7.8e-6, 7.9e-6, 8e-6, 8.1e-6, 9e-6],
                              [9e-6, 9.5e-6, 1e-5, 1.05e-5, 1.1e-5],
                              [4e-4, 5e-4, 9e-4, 1.4e-3, 2e-3],
                              [7e-5, 9.6e-5, 1e-4, 1.04e-4, 1.1e-4]],
    "per_epoch_s_repeats": [[8e-6] * 5, [1e-5] * 5, [4e-4, 5e-4, 9e-4, 1.4e-3, 2e-3],
                            [7e-5, 9.6e-5, 1e-4, 1.04e-4, 1.1e-4]],
    "compile_s": [None, None, 2e-3, None]}, settings={"repeats": 5, "epochs": 50})
"""A sweep whose N = 1e5 point sits above its own N = 1e6, its repeats spread by 100%; at
N = 1e6 the repeats agree (IQR 8%) but the fastest beat them by 30%: slowed, all but one."""
CLEAN_REGRESSION = record("regression", "jax", time={
    "run_s": 2e-6, "run_s_quantiles": [1.8e-6, 1.9e-6, 2e-6, 2.1e-6, 3e-6], "compile_s": 0.2})
NOISY_REGRESSION = record("regression", "numpy", time={
    "run_s": 1e-5, "run_s_quantiles": [7e-6, 8e-6, 1e-5, 1.6e-5, 2e-5], "compile_s": None})


def test_noisy_timings_are_marked_as_a_contended_machine() -> None:
    results = results_with(CLEAN_REGRESSION, NOISY_REGRESSION, NOISY)
    text = report.render(results, {}, [])
    assert row_cells(text, "| numpy | cpu | float64 |")[3:] == [
        "8 µs (IQR 2%)", "10 µs (IQR 10%)", "**900 µs (IQR 100%, contended)**",
        "**100 µs (IQR 8%, contended)**", "2 ms (N = 100,000)"]
    assert row_cells(text, "| regression | numpy |")[7] == "10 µs (IQR 80%, contended)"
    assert row_cells(text, "| regression | jax |")[7:9] == ["2 µs (IQR 10%)", "200 ms"]
    assert "In bold: contended" in text
    assert text.count(noise.CONTENDED_NOTE) == 2  # under the runs, and under the sweep's table
    times = {(row[0], row[1]): row[-1] for row in summary_rows(results)[1]}
    assert times == {("regression", "jax"): "2 µs (IQR 10%)",
                     ("regression", "numpy"): "10 µs (IQR 80%, contended)",
                     ("timing", "numpy"): "1.5 s"}
    assert "ontended" not in report.render(results_with(CLEAN_REGRESSION), {}, [])


def test_csv_files_carry_median_quartiles_and_noise(tmp_path: Path) -> None:
    report.write_results(results_with(NOISY_REGRESSION, NOISY), tmp_path)
    rows = list(csv.DictReader((tmp_path / "timing.csv").open()))
    spread = ("per_epoch_s_median", "per_epoch_s_min", "per_epoch_s_q1", "per_epoch_s_q3",
              "per_epoch_s_max", "noisy")
    assert [[r[c] for c in spread] for r in rows[2:]] == [
        ["0.0009", "0.0004", "0.0005", "0.0014", "0.002", "True"],
        ["0.0001", "7e-05", "9.6e-05", "0.000104", "0.00011", "True"]]
    assert rows[1]["noisy"] == "False"
    runs = list(csv.DictReader((tmp_path / "results.csv").open()))
    spread = ("run_s", *report.SPREAD_COLUMNS, "noisy", "compile_s")
    assert [runs[0][c] for c in spread] == ["1e-05", "7e-06", "8e-06", "1.6e-05", "2e-05",
                                            "True", ""]


def test_the_plot_shows_spread_and_draws_noisy_points_hollow() -> None:
    figure = timing.timing_figure(results_with(NOISY), "timing")
    assert figure is not None
    axes = figure.axes[0]
    bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_yerr
    hollow = [line for line in axes.get_lines() if line.get_markerfacecolor() == "white"
              and len(line.get_xdata()) > 0]
    assert [list(line.get_xdata()) for line in hollow] == [[100_000, 1_000_000]]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any("noisy" in entry and "contended" in entry for entry in legend)
