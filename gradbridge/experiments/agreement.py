"""How far a run is from its reference, step by step, and the verdict against a tolerance.

The relative difference of a quantity at a step is normwise: ``max|x - ref| / max|ref|``
over the quantity's entries. Entries that happen to be zero in the reference (w and b at
epoch 0, a vanishing gradient entry) then do not divide by zero, and one number summarises a
whole vector. At each step the worst quantity counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Differences:
    """Largest absolute and relative difference from the reference at each step."""

    abs: list[float]
    rel: list[float]

    @property
    def worst_abs(self) -> float:
        return max(self.abs, default=0.0)

    @property
    def worst_rel(self) -> float:
        return max(self.rel, default=0.0)


def differences(series: Mapping[str, np.ndarray],
                reference: Mapping[str, np.ndarray]) -> Differences:
    """Per-step differences of every quantity the reference has; a mismatch is a ValueError."""
    (n_steps,) = {len(r) for r in reference.values()}  # every reference quantity has each step
    abs_per_step = np.zeros(n_steps)
    rel_per_step = np.zeros(n_steps)
    for name, expected in reference.items():
        if name not in series:
            raise ValueError(f"the run produced no {name!r}, which the reference has")
        got = np.asarray(series[name], dtype=float)
        want = np.asarray(expected, dtype=float)
        if got.shape != want.shape:
            raise ValueError(f"{name!r} has shape {got.shape} but the reference has shape "
                             f"{want.shape}")
        axes = tuple(range(1, want.ndim))
        gap = np.abs(got - want)
        gap = np.where(np.isnan(gap), np.inf, gap)
        worst_gap = gap.max(axis=axes) if axes else gap
        scale = np.abs(want).max(axis=axes) if axes else np.abs(want)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(worst_gap == 0, 0.0, worst_gap / scale)
        abs_per_step = np.maximum(abs_per_step, worst_gap)
        rel_per_step = np.maximum(rel_per_step, rel)
    return Differences(abs_per_step.tolist(), rel_per_step.tolist())


@dataclass(frozen=True)
class Verdict:
    """Agreement with the reference: ``agrees``, or the worst difference and where it began."""

    agrees: bool
    worst_rel: float
    worst_abs: float
    first_step: int | None  # first step (epoch) whose relative difference exceeds tolerance
    tolerance: float
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"agrees": self.agrees, "worst_rel": self.worst_rel, "worst_abs": self.worst_abs,
                "first_epoch": self.first_step, "tolerance": self.tolerance, "text": self.text}


def verdict(diff: Differences, tolerance: float, *, stepped: bool) -> Verdict:
    """'agrees' when every step is within ``tolerance``, else 'differs by X from epoch Y'."""
    beyond = [i for i, r in enumerate(diff.rel) if not r <= tolerance]
    if not beyond:
        return Verdict(True, diff.worst_rel, diff.worst_abs, None, tolerance, "agrees")
    text = f"differs by {diff.worst_rel:.2g}"
    if stepped:
        text += f" from epoch {beyond[0]}"
    return Verdict(False, diff.worst_rel, diff.worst_abs, beyond[0], tolerance, text)
