"""Writing your own math once: a least-squares polynomial through noisy samples of sin(3x),
by the normal equations, on NumPy, JAX and PyTorch.

    python examples/own_math.py
"""

from __future__ import annotations

from typing import Any

import gradbridge as gb


def fit_polynomial(be: Any, degree: int = 3, n: int = 200, seed: int = 0) -> tuple[Any, Any]:
    """The coefficients (lowest power first) and the root-mean-square residual."""
    x = be.linspace(-1.0, 1.0, n)
    y = be.sin(3.0 * x) + 0.1 * gb.random.normal(be, seed, n)  # the same noise on every backend
    design = be.stack([x**k for k in range(degree + 1)], axis=1)  # (n, degree + 1)
    gram, moment = be.matrix_transpose(design) @ design, be.matrix_transpose(design) @ y
    coefficients = be.linalg.solve(gram, moment)
    residual = y - design @ coefficients
    return coefficients, be.sqrt(be.mean(residual**2))


if __name__ == "__main__":
    for name in ("numpy", "jax", "torch"):
        be = gb.get_backend(name, dtype="float64")
        coefficients, rms = fit_polynomial(be)
        print(f"{name:6} coefficients {be.to_numpy(coefficients).round(6)}  "
              f"rms {float(be.to_numpy(rms)):.6f}")
