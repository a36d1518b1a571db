"""The Newton built-in: one step on the tutorial's regression lands on least squares, because
the loss is quadratic and the Hessian from grad-of-grad is exact; the 1-D iterates follow Newton
with the derivatives of log cosh x + 0.1 x^2 written out. Every backend x dtype."""

from __future__ import annotations

import math

import numpy as np
from conftest import tolerance

from gradbridge.core.backend import Backend
from gradbridge.experiments import loader
from gradbridge.experiments import seed as tutorial


def test_one_newton_step_solves_the_regression_and_the_iterates_follow_closed_form(
        backend: Backend) -> None:
    experiment = loader.load("newton")
    settings = experiment.settings({})
    outputs = experiment.run(backend, settings)
    x, y = tutorial.tutorial_data(settings["n"], settings["seed"])
    w, b = np.polyfit(x, y, 1)  # least squares by another route than the reference's lstsq
    tol = tolerance(backend) * 10  # a 2x2 solve and a mean of 100 terms in the backend's dtype
    np.testing.assert_allclose(outputs["regression_step"], [w, b], rtol=tol)
    assert abs(w - 3) < 0.2 and abs(b - 2) < 0.2  # the tutorial's line, y = 3x + 2
    point, expected = settings["x0"], []
    for _ in range(settings["steps"]):
        point -= (math.tanh(point) + 0.2 * point) / (1 - math.tanh(point) ** 2 + 0.2)
        expected.append(point)
    # iterates run to 0: relative to the first one's size, as the experiment's series are judged
    np.testing.assert_allclose(outputs["iterates"], expected, rtol=0, atol=tol)
    assert abs(expected[-1]) < 1e-20  # converged, so the check above covers the whole path
