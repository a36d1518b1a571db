"""The tutorial's regression timed over data sizes N: the median and spread of the time per
epoch over repeated fits, after a first fit whose compilation is timed apart."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradbridge.core.backend import Backend, invalid
from gradbridge.experiments import noise
from gradbridge.experiments.api import experiment
from gradbridge.experiments.builtin.regression import check_points

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradbridge.core.history import History
    from gradbridge.experiments.record import Results, RunRecord

MIN_REPEATS = 5
"""Fewest timed fits per size: enough for a median and an interquartile range."""
QUICK_SIZES = (100, 1_000, 10_000)


def check(*, sizes: tuple[int, ...], repeats: int, epochs: int, lr: float, seed: int) -> None:
    if not sizes or min(sizes) < 2:
        raise invalid("timing.sizes", list(sizes), "data sizes of at least 2")
    if repeats < MIN_REPEATS:
        raise invalid("timing.repeats", repeats, f"an integer >= {MIN_REPEATS}")
    if epochs < 1:
        raise invalid("timing.epochs", epochs, "an integer >= 1")
    if not lr > 0:
        raise invalid("timing.lr", lr, "a number > 0")
    check_points("timing.sizes", max(sizes))


def timed_fits(fit: Callable[[], History], repeats: int) -> dict[str, Any]:
    """The first ``fit()`` for its compile time (NaN when nothing compiled), then ``repeats``
    more for the time per epoch: median, quantiles [min, q1, median, q3, max], every repeat.

    The first fit's epochs are left out of the statistics: they pay one-off costs (fresh memory,
    cold caches) that are neither compilation nor the backend's steady speed.
    """
    first = fit()
    times = [float(fit().per_epoch_s) for _ in range(repeats)]
    quantiles = [float(q) for q in np.quantile(times, [0, 0.25, 0.5, 0.75, 1])]
    return {"per_epoch_s": quantiles[2], "per_epoch_s_quantiles": quantiles,
            "per_epoch_s_repeats": times, "compile_s": first.compile_s or math.nan}


def _noisy_sizes(run: RunRecord) -> list[int]:
    return [int(n) for n, q in zip(run.outputs["n"], run.outputs["per_epoch_s_quantiles"],
                                   strict=True) if noise.noisy(q)]


def _compile(value: float | None) -> float | None:
    """A stored compile time: None (NaN in the run, null in JSON) when nothing compiled."""
    return None if value is None or math.isnan(value) else value


def section(results: Results, name: str) -> list[str]:
    """A table of the median time per epoch at each N, per backend, with its spread."""
    runs = results.ok(name)
    if not runs:
        return []
    settings = results.settings(name)
    sizes = runs[0].outputs["n"]
    from gradbridge.experiments.report import plural

    lines = ["", "## Time per epoch of the regression against N", "",
             f"Median over {plural(settings['repeats'], 'repeat')} of "
             f"{plural(settings['epochs'], 'epoch')}, after a first fit at each N that pays "
             "compilation and one-off costs, with the repeats' interquartile range (IQR) as a "
             "share of the median; the device is synchronized before clocks are read. Tracing "
             "and compiling are timed apart: the last column is the sweep's first compile and "
             "its N, '-' when nothing compiled (an earlier run had compiled the same programs, "
             "or the backend runs eagerly).", "",
             "| backend | device | dtype | " + " | ".join(f"N = {int(n):,}" for n in sizes)
             + " | compile |", "|---|---|---|" + "---|" * (len(sizes) + 1)]
    for run in runs:
        cells = [f"**{noise.timed_text(m, q)}**" if noise.noisy(q) else noise.timed_text(m, q)
                 for m, q in zip(run.outputs["per_epoch_s"], run.outputs["per_epoch_s_quantiles"],
                                 strict=True)]
        compiled = [(int(n), c) for n, c in zip(sizes, run.outputs["compile_s"], strict=True)
                    if _compile(c)]
        first = (f"{noise.format_seconds(compiled[0][1])} (N = {compiled[0][0]:,})"
                 if compiled else "-")
        lines.append(f"| {run.backend} | {run.device} | {run.dtype} | {' | '.join(cells)} | "
                     f"{first} |")
    if any(_noisy_sizes(run) for run in runs):
        lines += ["", "In bold: contended, too noisy to trust.", "", noise.CONTENDED_NOTE]
    return lines


TIMING_COLUMNS = ("backend", "device", "dtype", "n", "epochs", "repeats", "per_epoch_s_median",
                  "per_epoch_s_min", "per_epoch_s_q1", "per_epoch_s_q3", "per_epoch_s_max",
                  "noisy", "per_epoch_s_repeats", "compile_s")


def files(results: Results, name: str, directory: Path) -> list[Path]:
    """timing.csv: one row per backend, device, dtype and N."""
    from gradbridge.experiments import report, store

    rows = []
    settings = results.settings(name)
    for run in results.ok(name):
        out = run.outputs
        for i, n in enumerate(out["n"]):
            low, q1, _, q3, high = out["per_epoch_s_quantiles"][i]
            rows.append({"backend": run.backend, "device": run.device, "dtype": run.dtype,
                         "n": int(n), "epochs": settings["epochs"],
                         "repeats": settings["repeats"],
                         "per_epoch_s_median": out["per_epoch_s"][i],
                         "per_epoch_s_min": low, "per_epoch_s_q1": q1, "per_epoch_s_q3": q3,
                         "per_epoch_s_max": high,
                         "noisy": noise.noisy(out["per_epoch_s_quantiles"][i]),
                         "per_epoch_s_repeats": json.dumps(out["per_epoch_s_repeats"][i]),
                         "compile_s": _compile(out["compile_s"][i]) or ""})
    path = directory / "timing.csv"
    store.atomic_write(path, report.csv_text(TIMING_COLUMNS, rows))
    return [path]


def timing_figure(results: Results, name: str) -> Figure | None:
    """Time per epoch against N, log-log: medians with interquartile bars, noisy points hollow
    so that a contended moment does not read as the backend's speed."""
    from matplotlib.ticker import FuncFormatter

    from gradbridge.experiments import plots

    runs = results.ok(name)
    if not runs:
        return None
    figure = plots.new_figure()
    axes = figure.add_subplot()
    for run in runs:
        _timing_line(axes, run, plots.style(run, results))
    if any(_noisy_sizes(run) for run in runs):
        axes.plot([], [], linestyle="none", marker="o", color="gray", markerfacecolor="white",
                  label="hollow: repeats too noisy to trust (machine contended)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel("N (data points)")
    axes.set_ylabel("time per epoch (µs, median; log scale)")
    figure.suptitle(f"Regression time per epoch (median of {results.settings(name)['repeats']}, "
                    "bars: interquartile range; compile time excluded)", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    plots.legend(axes, len(axes.get_legend_handles_labels()[1]))
    return figure


def _timing_line(axes: Any, run: RunRecord, style: dict[str, Any]) -> None:
    """One run's medians with interquartile error bars; its noisy points drawn hollow on top."""
    sizes = run.output("n")
    median = run.output("per_epoch_s") * 1e6
    _, q1, _, q3, _ = run.output("per_epoch_s_quantiles").T * 1e6
    axes.errorbar(sizes, median, yerr=[median - q1, q3 - median], label=run.label,
                  markersize=5, linewidth=1.2, capsize=3, **style)
    hollow = np.isin(sizes, _noisy_sizes(run))
    axes.plot(sizes[hollow], median[hollow], linestyle="none", marker=style["marker"],
              markersize=8, color=style["color"], markerfacecolor="white", zorder=3)


@experiment(description="regression time per epoch over data sizes", compared=False,
            repeats=0, check=check, seeds={"seed": "the regression data at every N"},
            figures={"timing": timing_figure}, section=section, files=files)
def timing(be: Backend, *, sizes: Sequence[int] = (100, 1_000, 10_000, 100_000, 1_000_000),
           repeats: int = MIN_REPEATS, epochs: int = 50, lr: float = 0.1,
           seed: int = 42) -> dict[str, Any]:
    """Time per epoch of the regression at each N (see :func:`timed_fits`)."""
    from gradbridge.experiments import seed as tutorial

    rows = [timed_fits(functools.partial(tutorial.run_regression, be, epochs=epochs, lr=lr, n=n,
                                         seed=seed), repeats) for n in sizes]
    return {"n": list(sizes), **{key: [row[key] for row in rows] for key in rows[0]}}
