"""The tutorial's linear algebra: a neuron's dot product, a batch of three, a transpose."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradbridge.core.backend import Backend
from gradbridge.experiments.api import experiment

FEATURES = [1.0, 2.0, 3.0]
WEIGHTS = [0.5, 0.3, 0.2]
DATASET = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]


def reference() -> dict[str, Any]:
    """The same products written out in plain NumPy float64."""
    dataset = np.array(DATASET)
    return {"dot": np.array(FEATURES) @ np.array(WEIGHTS), "batch": dataset @ np.array(WEIGHTS),
            "transpose": dataset.T}


@experiment(description="dot product and batch matmul (tutorial)", reference=reference,
            repeats=3)
def linalg(be: Backend) -> dict[str, Any]:
    from gradbridge.experiments import seed

    values = seed.linear_algebra(be)
    return {"dot": values["dot"], "batch": values["batch"], "transpose": values["transpose"]}
