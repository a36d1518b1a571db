"""Independent references shared by several test files: plain float64 NumPy, no gradbridge."""

from __future__ import annotations

import numpy as np


def tutorial_loop(x: np.ndarray, y: np.ndarray, lr: float,
                  epochs: int) -> tuple[float, float, list[float]]:
    """Gradient descent on mean((w x + b - y)^2) from w = b = 0, float64, loss before update."""
    w = b = 0.0
    recorded = []
    for _ in range(epochs):
        error = w * x + b - y
        recorded.append(float(np.mean(error**2)))
        w, b = w - lr * float(np.mean(2 * error * x)), b - lr * float(np.mean(2 * error))
    return w, b, recorded
