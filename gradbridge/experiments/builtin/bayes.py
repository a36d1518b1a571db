"""The tutorial's medical test, and the posterior against prevalence, by Bayes' theorem."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradbridge.core.backend import Backend
from gradbridge.experiments.api import experiment

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradbridge.experiments.record import Results

PRIORS = np.geomspace(1e-4, 1.0, 101)  # prevalence 0.01% .. 100%, includes 0.01 exactly
SENSITIVITY, FALSE_POSITIVE_RATE, PREVALENCE = 0.95, 0.05, 0.01


def reference() -> dict[str, Any]:
    """Bayes' theorem in closed form, float64."""
    def posterior(prior: np.ndarray) -> np.ndarray:
        joint = SENSITIVITY * prior
        return joint / (joint + FALSE_POSITIVE_RATE * (1 - prior))

    return {"medical_test": posterior(np.array(PREVALENCE)), "posterior": posterior(PRIORS)}


def posterior_prevalence(results: Results, name: str) -> Figure | None:
    """P(disease | positive) against prevalence, with the tutorial's case marked."""
    from gradbridge.experiments import plots

    reference_curve = results.reference(name, "posterior")
    medical_test = results.reference(name, "medical_test")
    runs = results.ok(name)
    if reference_curve is None or medical_test is None or not runs:
        return None
    figure = plots.new_figure()
    axes = figure.add_subplot()
    axes.plot(PRIORS, reference_curve, label="closed form (float64)", **plots.REFERENCE_STYLE)
    for i, run in enumerate(runs):
        axes.plot(PRIORS, run.output("posterior"), label=run.label, markersize=4,
                  markevery=(i % 8, 8), linewidth=1, **plots.style(run, results))
    point = float(medical_test)
    axes.plot([PREVALENCE], [point], "k*", markersize=14, zorder=5)
    axes.annotate(f"tutorial: prevalence 1%\nP(disease | positive) = {point:.3f}",
                  (PREVALENCE, point), xytext=(1.5e-4, 0.45), fontsize=9,
                  arrowprops={"arrowstyle": "->", "color": "black"})
    axes.set_xscale("log")
    axes.set_xlabel("prevalence P(disease) (log scale)")
    axes.set_ylabel("P(disease | positive test)")
    axes.set_ylim(0, 1.02)
    axes.set_title("Bayes: a 95%-sensitive test with 5% false positives")
    axes.grid(True, which="both", alpha=0.3)
    plots.legend(axes, len(runs) + 1)
    return figure


@experiment(description="medical test and posterior vs prevalence (tutorial)",
            reference=reference, figures={"posterior_prevalence": posterior_prevalence})
def bayes(be: Backend) -> dict[str, Any]:
    from gradbridge.core import probability
    from gradbridge.experiments import seed

    curve = probability.posterior(be, be.from_host(PRIORS), SENSITIVITY, FALSE_POSITIVE_RATE)
    return {"medical_test": seed.medical_test(be), "posterior": curve}
