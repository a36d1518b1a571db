"""The tutorial's regression: y = 3x + 2 + noise, full-batch gradient descent from w = b = 0.

Series per epoch: the loss, w and b at the start of the epoch (as the tutorial prints them);
the reference is the tutorial's own loop in float64 NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradbridge.core import data
from gradbridge.core.backend import Backend, invalid
from gradbridge.experiments.api import experiment

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradbridge.experiments.record import Results

BYTES_PER_POINT = 128
"""Memory per data point that a run may hold at its peak. Measured for the timing sweep at
N = 2e6 in float64 on CPU (x, y and one epoch's work arrays): NumPy 36, JAX 78, PyTorch 92."""


def check_points(setting: str, n: int) -> None:
    """Refuse up front a data size whose arrays cannot fit in this machine's memory."""
    data.check_memory(float(n) * BYTES_PER_POINT,
                      f"{setting} N = {n:,} ({BYTES_PER_POINT} bytes per data point)",
                      "choose a smaller size")


def check(*, epochs: int, lr: float, n: int, seed: int) -> None:
    if epochs < 1:
        raise invalid("regression.epochs", epochs, "an integer >= 1")
    if n < 2:
        raise invalid("regression.n", n, "an integer >= 2")
    if not lr > 0:
        raise invalid("regression.lr", lr, "a number > 0")
    check_points("regression.n", n)


def reference(*, epochs: int, lr: float, n: int, seed: int) -> dict[str, Any]:
    """The tutorial's gradient-descent loop in float64 NumPy, recording every epoch."""
    from gradbridge.experiments import seed as tutorial

    x, y = tutorial.tutorial_data(n, seed)
    w, b = float(tutorial.SEED["w0"]), float(tutorial.SEED["b0"])
    rows = []
    for _ in range(epochs):
        residual = w * x + b - y
        rows.append((np.mean(residual ** 2), w, b))
        dw, db = np.mean(2 * residual * x), np.mean(2 * residual)
        w, b = w - lr * dw, b - lr * db
    table = np.array(rows)
    return {"loss": table[:, 0], "w": table[:, 1], "b": table[:, 2], "final_w": w,
            "final_b": b}


def gd_path(results: Results, name: str) -> Figure | None:
    """The (w, b) path of gradient descent over the contour of the MSE."""
    from gradbridge.experiments import plots
    from gradbridge.experiments import seed as tutorial

    w_ref, b_ref = results.reference(name, "w"), results.reference(name, "b")
    if w_ref is None or b_ref is None:
        return None
    settings = results.settings(name)
    x, y = tutorial.tutorial_data(settings["n"], settings["seed"])
    # the least-squares optimum solves the 2x2 normal equations of the quadratic MSE
    w_opt, b_opt = np.linalg.solve([[np.mean(x * x), np.mean(x)], [np.mean(x), 1.0]],
                                   [np.mean(x * y), np.mean(y)])
    w_lo, w_hi = min(w_ref.min(), w_opt) - 0.6, max(w_ref.max(), w_opt) + 0.6
    b_lo, b_hi = min(b_ref.min(), b_opt) - 0.6, max(b_ref.max(), b_opt) + 0.6
    w_grid, b_grid = np.meshgrid(np.linspace(w_lo, w_hi, 200), np.linspace(b_lo, b_hi, 200))
    xx, xm, xy, ym, yy = (np.mean(v) for v in (x * x, x, x * y, y, y * y))
    mse = (w_grid ** 2 * xx + 2 * w_grid * b_grid * xm + b_grid ** 2 - 2 * w_grid * xy
           - 2 * b_grid * ym + yy)  # the MSE expanded in the data's moments
    figure = plots.new_figure(7.5, 5.6)
    axes = figure.add_subplot()
    levels = np.geomspace(max(mse.min(), 1e-3), mse.max(), 14)
    contour = axes.contour(w_grid, b_grid, mse, levels=levels, cmap="viridis", linewidths=0.8)
    axes.clabel(contour, fontsize=7, fmt="%.2g")
    axes.plot(w_ref, b_ref, label="float64 NumPy reference", **plots.REFERENCE_STYLE)
    runs = results.ok(name)
    for i, run in enumerate(runs):
        axes.plot(run.output("w"), run.output("b"), label=run.label, markersize=3,
                  markevery=(i % 4, 4), linewidth=1, **plots.style(run, results))
    axes.plot([w_ref[0]], [b_ref[0]], "k*", markersize=12, label="start (w = b = 0)")
    axes.plot([w_opt], [b_opt], "kX", markersize=10,
              label=f"least-squares optimum ({w_opt:.2f}, {b_opt:.2f})")
    axes.set_xlabel("w (slope)")
    axes.set_ylabel("b (intercept)")
    axes.set_title("Gradient-descent path of (w, b) over the MSE contour")
    plots.legend(axes, len(runs) + 3)
    return figure


@experiment(description="linear regression by gradient descent (tutorial)",
            series=["loss", "w", "b"], step="epoch", reference=reference, check=check,
            seeds={"seed": "the data, x and noise (np.random.seed, as the tutorial)"},
            figures={"gd_path": gd_path})
def regression(be: Backend, *, epochs: int = 50, lr: float = 0.1, n: int = 100,
               seed: int = 42) -> dict[str, Any]:
    """The tutorial's fit through ``gradbridge.fit``, recording (w, b) at each epoch's start."""
    from gradbridge.experiments import seed as tutorial

    path: list[tuple[float, float]] = []

    def record(info: Any) -> None:
        params = info.host_params()
        path.append((float(params["w"]), float(params["b"])))

    history = tutorial.run_regression(be, epochs=epochs, lr=lr, n=n, seed=seed,
                                      callbacks=[record])
    return {"loss": np.asarray(history.losses, dtype=float), "w": [w for w, _ in path],
            "b": [b for _, b in path], "final_w": be.to_numpy(history.params["w"]),
            "final_b": be.to_numpy(history.params["b"])}
