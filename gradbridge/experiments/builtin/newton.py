"""Newton's method with second derivatives from each backend's own autodiff (grad of grad).

Two problems: the tutorial's regression, whose loss is quadratic, so one Newton step from
w = b = 0 lands on the least-squares solution when the Hessian is exact; and the 1-D function
f(x) = log cosh x + 0.1 x^2 from x0 = 1, where the iterates reach 0 within rounding in five
steps (from x0 = 2, ``--set newton.x0=2``, they swing out to a cycle near +-5 instead).
The reference is written out by hand: the least-squares solution from ``np.linalg.lstsq`` and
Newton on f with its derivatives in closed form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradbridge.core.backend import invalid
from gradbridge.experiments.api import experiment

CURVATURE = 0.1
"""The quadratic term of the 1-D function, which keeps f'' >= 2 * CURVATURE everywhere."""


def check(*, steps: int, x0: float, n: int, seed: int) -> None:
    if steps < 1:
        raise invalid("newton.steps", steps, "an integer >= 1")
    if n < 2:
        raise invalid("newton.n", n, "an integer >= 2")


def reference(*, steps: int, x0: float, n: int, seed: int) -> dict[str, Any]:
    """Least squares by ``np.linalg.lstsq``; Newton on f with f' and f'' in closed form."""
    from gradbridge.experiments import seed as tutorial

    x, y = tutorial.tutorial_data(n, seed)
    (w, b), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
    point, iterates = float(x0), []
    for _ in range(steps):
        slope = np.tanh(point) + 2 * CURVATURE * point
        curvature = 1 - np.tanh(point) ** 2 + 2 * CURVATURE
        point -= slope / curvature
        iterates.append(point)
    return {"regression_step": np.array([w, b]), "iterates": np.array(iterates)}


@experiment(description="Newton's method with Hessians from autodiff: tutorial regression "
                        "in one step, then log cosh x + 0.1 x^2",
            series=["iterates"], step="iteration", reference=reference, check=check,
            seeds={"seed": "the tutorial's data (np.random.seed, as the tutorial)"})
def newton(be: Any, *, steps: int = 5, x0: float = 1.0, n: int = 100,
           seed: int = 42) -> dict[str, Any]:
    """One Newton step on the regression's (w, b), then ``steps`` on the 1-D function. (``be``
    is typed Any: the Backend protocol lists gradbridge's own methods, not the whole namespace.)"""
    import gradbridge as gb
    from gradbridge.experiments import seed as tutorial

    x_host, y_host = tutorial.tutorial_data(n, seed)
    x, y = be.from_host(x_host), be.from_host(y_host)

    def mse(theta: Any) -> Any:
        return be.mean((theta[0] * x + theta[1] - y) ** 2)

    theta = be.zeros(2)
    hessian = gb.hessian(be, mse)(theta)
    theta = theta - be.linalg.solve(hessian, be.grad(mse)(theta))

    def f(z: Any) -> Any:
        return be.log(be.cosh(z)) + CURVATURE * z ** 2

    slope = be.grad(f)
    curvature = be.grad(slope)
    point, iterates = be.asarray(x0), []
    for _ in range(steps):
        point = point - slope(point) / curvature(point)
        iterates.append(point)
    return {"regression_step": theta, "iterates": be.stack(iterates)}
