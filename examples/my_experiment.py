"""Your own experiment: a damped spring integrated step by step, compared across frameworks.

An experiment is a function of the backend whose keyword-only parameters are its settings and
which returns its outputs by name; ``series`` are compared step by step. Run it with

    gradbridge compare --experiments examples/my_experiment.py:damped_spring --check
    gradbridge run examples/my_experiment.toml
"""

from __future__ import annotations

from typing import Any

import gradbridge as gb


@gb.experiment(description="damped spring x'' = -k x - c x', semi-implicit Euler",
               series=["position", "energy"])
def damped_spring(be: Any, *, steps: int = 300, dt: float = 0.02, stiffness: float = 4.0,
                  damping: float = 0.3, x0: float = 1.0) -> dict[str, Any]:
    """Position and mechanical energy after each step, and where the mass ends up."""
    x, v = be.asarray(x0), be.asarray(0.0)
    positions, energies = [], []
    for _ in range(steps):
        v = v + dt * (-stiffness * x - damping * v)  # velocity first: semi-implicit Euler
        x = x + dt * v
        positions.append(x)
        energies.append(0.5 * v**2 + 0.5 * stiffness * x**2)
    return {"position": be.stack(positions), "energy": be.stack(energies), "final_x": x}


if __name__ == "__main__":
    for name in ("numpy", "jax", "torch"):
        result = damped_spring(gb.get_backend(name, dtype="float64"))
        print(f"{name:6} final x {float(result['final_x']):+.12f}")
