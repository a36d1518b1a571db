"""The comparison's figures, drawn from a results document with matplotlib's Agg canvas.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot, no global backend
switch), so plotting works headless and leaves the caller's matplotlib state alone. Each
function returns None when the results hold nothing for its figure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from gradbridge.experiments import report

ZERO_FLOOR = 1e-18  # exact zeros are drawn here on log axes (below float64's 2.2e-16 spacing)
COLORS = {"numpy": "tab:blue", "jax": "tab:orange", "torch": "tab:red"}
EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
DTYPE_STYLES = {"float64": "-", "float32": "--"}
DEVICE_MARKERS = ("o", "s", "^", "D", "v")
REFERENCE_STYLE: dict[str, Any] = {"color": "black", "linewidth": 3, "alpha": 0.25}


def make_plots(results: Mapping[str, Any], directory: Path) -> list[Path]:
    """Write every figure the results have data for; return the PNG paths."""
    figures: dict[str, Callable[[Mapping[str, Any]], Figure | None]] = {
        "loss_curves": loss_curves, "gd_path": gd_path,
        "reference_difference": reference_difference,
        "posterior_prevalence": posterior_prevalence, "timing": timing,
    }
    written = []
    for name, draw in figures.items():
        figure = draw(results)
        if figure is not None:
            path = directory / f"{name}.png"
            save(figure, path)
            written.append(path)
    return written


def save(figure: Figure, path: Path) -> None:
    """Render to PNG in memory, then replace the file atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)  # constrained layout keeps legends inside
    report.atomic_write(path, buffer.getvalue())


# ------------------------------------------------------------------------ helpers


def _ok(results: Mapping[str, Any], experiment: str) -> list[Mapping[str, Any]]:
    return [r for r in results["runs"] if r["experiment"] == experiment and r["status"] == "ok"]


def _label(run: Mapping[str, Any]) -> str:
    return f"{run['backend']} {run['device']} {run['dtype']}"


def _style(run: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """Colour by backend, line style by dtype, marker by device: the same in every figure."""
    backends = list(results["grid"]["backends"])
    others = [b for b in backends if b not in COLORS]
    color = COLORS.get(run["backend"]) or EXTRA_COLORS[others.index(run["backend"])
                                                        % len(EXTRA_COLORS)]
    devices = list(results["grid"]["devices"])
    marker = DEVICE_MARKERS[devices.index(run["device"]) % len(DEVICE_MARKERS)]
    return {"color": color, "linestyle": DTYPE_STYLES.get(run["dtype"], ":"), "marker": marker}


def _new_figure(width: float = 7.5, height: float = 4.8) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _legend(axes: Any, count: int) -> None:
    """A legend beside the axes when it is long, inside otherwise."""
    if count > 5:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        axes.legend(fontsize=8)


# ------------------------------------------------------------------------ figures


def loss_curves(results: Mapping[str, Any]) -> Figure | None:
    """Regression loss per epoch, every run over the reference (log y)."""
    runs = _ok(results, "regression")
    reference = results["reference"].get("regression")
    if not runs or reference is None:
        return None
    figure = _new_figure()
    axes = figure.add_subplot()
    losses = reference["series"]["loss"]
    axes.plot(range(len(losses)), losses, label="float64 NumPy reference", **REFERENCE_STYLE)
    for i, run in enumerate(runs):
        style = _style(run, results)
        axes.plot(range(len(run["losses"])), run["losses"], label=_label(run), markersize=4,
                  markevery=(i % 5, 5), linewidth=1.2, **style)
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean squared error (log scale)")
    axes.set_title("Regression loss per epoch (agreeing runs lie on top of each other)")
    axes.grid(True, which="both", alpha=0.3)
    _legend(axes, len(runs) + 1)
    return figure


def gd_path(results: Mapping[str, Any]) -> Figure | None:
    """The (w, b) path of gradient descent over the contour of the MSE."""
    reference = results["reference"].get("regression")
    if reference is None:
        return None
    moments = reference["extra"]["mse_moments"]
    w_ref, b_ref = np.array(reference["series"]["w"]), np.array(reference["series"]["b"])
    # the least-squares optimum solves the 2x2 normal equations of the quadratic MSE
    w_opt, b_opt = np.linalg.solve([[moments["xx"], moments["x"]], [moments["x"], 1.0]],
                                   [moments["xy"], moments["y"]])
    w_lo, w_hi = min(w_ref.min(), w_opt) - 0.6, max(w_ref.max(), w_opt) + 0.6
    b_lo, b_hi = min(b_ref.min(), b_opt) - 0.6, max(b_ref.max(), b_opt) + 0.6
    w_grid, b_grid = np.meshgrid(np.linspace(w_lo, w_hi, 200), np.linspace(b_lo, b_hi, 200))
    mse = (w_grid ** 2 * moments["xx"] + 2 * w_grid * b_grid * moments["x"] + b_grid ** 2
           - 2 * w_grid * moments["xy"] - 2 * b_grid * moments["y"] + moments["yy"])
    figure = _new_figure(7.5, 5.6)
    axes = figure.add_subplot()
    levels = np.geomspace(max(mse.min(), 1e-3), mse.max(), 14)
    contour = axes.contour(w_grid, b_grid, mse, levels=levels, cmap="viridis", linewidths=0.8)
    axes.clabel(contour, fontsize=7, fmt="%.2g")
    axes.plot(w_ref, b_ref, label="float64 NumPy reference", **REFERENCE_STYLE)
    runs = [r for r in _ok(results, "regression") if "w" in r["series"]]
    for i, run in enumerate(runs):
        style = _style(run, results)
        axes.plot(run["series"]["w"], run["series"]["b"], label=_label(run), markersize=3,
                  markevery=(i % 4, 4), linewidth=1, **style)
    axes.plot([w_ref[0]], [b_ref[0]], "k*", markersize=12, label="start (w = b = 0)")
    axes.plot([w_opt], [b_opt], "kX", markersize=10,
              label=f"least-squares optimum ({w_opt:.2f}, {b_opt:.2f})")
    axes.set_xlabel("w (slope)")
    axes.set_ylabel("b (intercept)")
    axes.set_title("Gradient-descent path of (w, b) over the MSE contour")
    _legend(axes, len(runs) + 3)
    return figure


def reference_difference(results: Mapping[str, Any]) -> Figure | None:
    """Relative difference from the reference: per epoch (regression) and worst per experiment."""
    compared = [r for r in results["runs"] if r["status"] == "ok" and r.get("differences")]
    if not compared:
        return None
    figure = _new_figure(11, 4.8)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    tolerance = results["tolerance"]
    stepped = [r for r in compared if r["experiment"] == "regression"]
    for i, run in enumerate(stepped):
        rel = np.maximum(np.array(run["differences"]["rel"], dtype=float), ZERO_FLOOR)
        left.plot(range(len(rel)), rel, label=_label(run), markersize=4,
                  markevery=(i % 5, 5), linewidth=1.2, **_style(run, results))
    for dtype, value in tolerance.items():
        for axes in (left, right):
            axes.axhline(value, color="gray", linestyle=DTYPE_STYLES.get(dtype, ":"),
                         linewidth=1)
        right.annotate(f"{dtype} tolerance", (1.0, value), xycoords=("axes fraction", "data"),
                       xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=7,
                       color="gray")
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("relative difference from reference (log)")
    left.set_title("Regression, per epoch")
    left.set_ylim(ZERO_FLOOR / 5, None)
    left.yaxis.set_major_formatter(FuncFormatter(_difference_tick))
    left.grid(True, which="major", alpha=0.3)
    if stepped:
        _legend(left, 3)
    experiments = [e for e in results["grid"]["experiments"]
                   if any(r["experiment"] == e for r in compared)]
    backends = list(results["grid"]["backends"])
    for run in compared:
        x = experiments.index(run["experiment"])
        offset = (backends.index(run["backend"]) - (len(backends) - 1) / 2) * 0.12
        style = _style(run, results)
        right.plot([x + offset], [max(_finite(run["verdict"]["worst_rel"]), ZERO_FLOOR)],
                   marker=style["marker"], color=style["color"], markersize=7,
                   markerfacecolor="white" if run["dtype"] == "float32" else style["color"],
                   linestyle="none")
    right.set_yscale("log")
    right.set_xticks(range(len(experiments)), experiments, rotation=20, fontsize=8)
    right.set_xlim(-0.5, len(experiments) - 0.5)
    right.set_ylabel("largest relative difference (log)")
    right.set_title("Worst over the run, per experiment\n(filled: float64, open: float32)",
                    fontsize=10)
    right.set_ylim(ZERO_FLOOR / 5, None)
    right.yaxis.set_major_formatter(FuncFormatter(_difference_tick))
    right.grid(True, axis="y", alpha=0.3)
    figure.suptitle("Relative difference from the float64 NumPy reference (exact zeros are "
                    f"drawn at {ZERO_FLOOR:.0e}, below float64 resolution)", fontsize=10)
    return figure


def _difference_tick(value: float, _: Any) -> str:
    """Powers of ten as 1e-12 and the floor where exact zeros are drawn as 'exact 0'."""
    return "exact 0" if np.isclose(value, ZERO_FLOOR, rtol=1e-6, atol=0) else f"{value:.0e}"


def _finite(value: Any) -> float:
    return 1e300 if value is None else float(value)  # null in JSON = not finite


def posterior_prevalence(results: Mapping[str, Any]) -> Figure | None:
    """P(disease | positive) against prevalence, with the tutorial's case marked."""
    reference = results["reference"].get("bayes")
    if reference is None:
        return None
    priors = np.array(reference["extra"]["priors"])
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(priors, reference["series"]["posterior"][0], label="closed form (float64)",
              **REFERENCE_STYLE)
    runs = _ok(results, "bayes")
    for i, run in enumerate(runs):
        style = _style(run, results)
        axes.plot(priors, run["series"]["posterior"][0], label=_label(run), markersize=4,
                  markevery=(i % 8, 8), linewidth=1, **style)
    point = reference["series"]["medical_test"][0]
    axes.plot([0.01], [point], "k*", markersize=14, zorder=5)
    axes.annotate(f"tutorial: prevalence 1%\nP(disease | positive) = {point:.3f}",
                  (0.01, point), xytext=(1.5e-4, 0.45), fontsize=9,
                  arrowprops={"arrowstyle": "->", "color": "black"})
    axes.set_xscale("log")
    axes.set_xlabel("prevalence P(disease) (log scale)")
    axes.set_ylabel("P(disease | positive test)")
    axes.set_ylim(0, 1.02)
    axes.set_title("Bayes: a 95%-sensitive test with 5% false positives")
    axes.grid(True, which="both", alpha=0.3)
    _legend(axes, len(runs) + 1)
    return figure


def timing(results: Mapping[str, Any]) -> Figure | None:
    """Regression time per epoch against N, log-log: medians with interquartile bars, noisy
    points hollow so that a contended moment does not read as the backend's speed."""
    runs = _ok(results, "timing")
    if not runs:
        return None
    figure = _new_figure()
    axes = figure.add_subplot()
    for run in runs:
        _timing_line(axes, run, _style(run, results))
    if any(report.noisy_sizes(run["extra"]) for run in runs):
        axes.plot([], [], linestyle="none", marker="o", color="gray", markerfacecolor="white",
                  label="hollow: repeats too noisy to trust (machine contended)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel("N (data points)")
    axes.set_ylabel("time per epoch (µs, median; log scale)")
    figure.suptitle(f"Regression time per epoch (median of {runs[0]['extra']['repeats']}, "
                    "bars: interquartile range; compile time excluded)", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    _legend(axes, len(axes.get_legend_handles_labels()[1]))
    return figure


def _timing_line(axes: Any, run: Mapping[str, Any], style: dict[str, Any]) -> None:
    """One run's medians with interquartile error bars; its noisy points drawn hollow on top."""
    extra = run["extra"]
    sizes = np.array(extra["sizes"])
    median = np.array(extra["per_epoch_s"]) * 1e6
    _, q1, _, q3, _ = np.array(extra["per_epoch_s_quantiles"]).T * 1e6
    axes.errorbar(sizes, median, yerr=[median - q1, q3 - median], label=_label(run),
                  markersize=5, linewidth=1.2, capsize=3, **style)
    hollow = np.isin(sizes, report.noisy_sizes(extra))
    axes.plot(sizes[hollow], median[hollow], linestyle="none", marker=style["marker"],
              markersize=8, color=style["color"], markerfacecolor="white", zorder=3)
