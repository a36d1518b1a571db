"""The comparison's figures, drawn from the results with matplotlib's Agg canvas.

For every experiment with series outputs, ``<name>_series.png``: each series of every run over
the reference, and below it the difference from the reference per step (log y); for the whole
grid, ``reference_difference.png``: each run's worst difference per experiment. Experiments add
their own figures as metadata. Figures are ``matplotlib.figure.Figure`` objects (no pyplot, no
global backend switch), so plotting works headless and leaves the caller's state alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from gradbridge.experiments import store
from gradbridge.experiments.record import Results, RunRecord

ZERO_FLOOR = 1e-18  # exact zeros are drawn here on log axes (below float64's 2.2e-16 spacing)
COLORS = {"numpy": "tab:blue", "jax": "tab:orange", "torch": "tab:red"}
EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
DTYPE_STYLES = {"float64": "-", "float32": "--"}
DEVICE_MARKERS = ("o", "s", "^", "D", "v")
REFERENCE_STYLE: dict[str, Any] = {"color": "black", "linewidth": 3, "alpha": 0.25}


def make_plots(results: Results, directory: Path) -> list[Path]:
    """Write every figure the results have data for; return the PNG paths."""
    figures: list[tuple[str, Figure | None]] = [
        (f"{name}_series", series_figure(results, name)) for name in results.experiments]
    figures.append(("reference_difference", reference_difference(results)))
    for name, experiment in results.experiments.items():
        figures += [(stem, draw(results, name)) for stem, draw in experiment.figures.items()]
    written = []
    for stem, figure in figures:
        if figure is not None:
            path = directory / f"{stem}.png"
            save(figure, path)
            written.append(path)
    return written


def save(figure: Figure, path: Path) -> None:
    """Render to PNG in memory, then replace the file atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)  # constrained layout keeps legends inside
    store.atomic_write(path, buffer.getvalue())


# ------------------------------------------------------------------------ helpers


def style(run: RunRecord, results: Results) -> dict[str, Any]:
    """Colour by backend, line style by dtype, marker by device: the same in every figure."""
    backends = results.backends
    others = [b for b in backends if b not in COLORS]
    color = COLORS.get(run.backend) or EXTRA_COLORS[others.index(run.backend)
                                                    % len(EXTRA_COLORS)]
    devices = list(results.grid["devices"])
    marker = DEVICE_MARKERS[devices.index(run.device) % len(DEVICE_MARKERS)]
    return {"color": color, "linestyle": DTYPE_STYLES.get(run.dtype, ":"), "marker": marker}


def new_figure(width: float = 7.5, height: float = 4.8) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def legend(axes: Any, count: int) -> None:
    """A legend beside the axes when it is long, inside otherwise."""
    if count > 5:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        axes.legend(fontsize=8)


def difference_axis(axes: Any) -> None:
    """A log axis of relative differences on which exact zeros read 'exact 0'."""
    axes.set_yscale("log")
    axes.set_ylim(ZERO_FLOOR / 5, None)
    axes.yaxis.set_major_formatter(FuncFormatter(_difference_tick))
    axes.grid(True, which="major", alpha=0.3)


def _difference_tick(value: float, _: Any) -> str:
    """Powers of ten as 1e-12 and the floor where exact zeros are drawn as 'exact 0'."""
    return "exact 0" if np.isclose(value, ZERO_FLOOR, rtol=1e-6, atol=0) else f"{value:.0e}"


def _per_step(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """A series as one number per step: itself, or the norm of each step's entries."""
    if values.ndim <= 1:
        return values, False
    return np.sqrt((values.reshape(len(values), -1) ** 2).sum(axis=1)), True


def _floored(values: Any) -> np.ndarray:
    array = np.array([np.inf if v is None else v for v in values], dtype=float)
    return np.maximum(array, ZERO_FLOOR)


# ------------------------------------------------------------------------ figures


def series_figure(results: Results, name: str) -> Figure | None:
    """Each series output of ``name``: every run over the reference, then its difference from
    the reference per step (log y) with the tolerances."""
    experiment = results.experiments[name]
    runs = [r for r in results.ok(name) if all(s in r.outputs for s in experiment.series)]
    if not experiment.series or not runs:
        return None
    columns = len(experiment.series)
    figure = new_figure(max(5.5 * columns, 7.5), 7.0)
    axes = np.array(figure.subplots(2, columns, squeeze=False, sharex="col"))
    for column, output in enumerate(experiment.series):
        top, bottom = axes[0, column], axes[1, column]
        reference = results.reference(name, output)
        if reference is not None:
            values, normed = _per_step(reference)
            top.plot(range(len(values)), values, label="reference", **REFERENCE_STYLE)
        for i, run in enumerate(runs):
            values, normed = _per_step(run.output(output))
            top.plot(range(len(values)), values, label=run.label, markersize=3,
                     markevery=(i % 7, 7), linewidth=1.1, **style(run, results))
            rel = run.differences.get(output, {}).get("rel")
            if rel:
                bottom.plot(range(len(rel)), _floored(rel), label=run.label, markersize=3,
                            markevery=(i % 7, 7), linewidth=1.1, **style(run, results))
        top.set_title(f"{'‖' + output + '‖' if normed else output} per {experiment.step}")
        top.grid(True, alpha=0.3)
        if experiment.compared:
            for dtype in results.grid["dtypes"]:
                bottom.axhline(results.tolerance(name, dtype), color="gray", linewidth=1,
                               linestyle=DTYPE_STYLES.get(dtype, ":"))
        difference_axis(bottom)
        bottom.set_xlabel(experiment.step)
        bottom.set_ylabel("relative difference from reference")
    legend(axes[0, -1], len(runs) + 1)
    figure.suptitle(f"{name}: every backend over the reference, and how far from it "
                    f"(grey: tolerances; exact zeros drawn at {ZERO_FLOOR:.0e})", fontsize=10)
    return figure


def reference_difference(results: Results) -> Figure | None:
    """Each run's largest relative difference from its reference, per experiment (log y)."""
    compared = [r for r in results.ok() if r.verdict]
    if not compared:
        return None
    figure = new_figure(max(6.0, 1.4 * len(results.experiments) + 3), 4.8)
    axes = figure.add_subplot()
    experiments = [e for e in results.experiments if any(r.experiment == e for r in compared)]
    backends = results.backends
    for run in compared:
        assert run.verdict is not None
        x = experiments.index(run.experiment)
        offset = (backends.index(run.backend) - (len(backends) - 1) / 2) * 0.12
        look = style(run, results)
        worst = run.verdict["worst_rel"]
        axes.plot([x + offset], [max(np.inf if worst is None else worst, ZERO_FLOOR)],
                  marker=look["marker"], color=look["color"], markersize=7,
                  markerfacecolor="white" if run.dtype == "float32" else look["color"],
                  linestyle="none", label=run.backend)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(unique.values(), unique.keys(), fontsize=8)
    axes.set_xticks(range(len(experiments)), experiments, rotation=20, fontsize=8)
    axes.set_xlim(-0.5, len(experiments) - 0.5)
    axes.set_ylabel("largest relative difference (log)")
    difference_axis(axes)
    axes.set_title("Worst difference from the reference over each run\n(filled: float64, "
                   f"open: float32; exact zeros drawn at {ZERO_FLOOR:.0e})", fontsize=10)
    return figure
