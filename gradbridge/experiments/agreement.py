"""How far a run is from its reference, output by output and step by step, and the verdict.

The relative difference of an output is normwise: ``max|x - ref| / max|ref|`` over its entries.
For a series it is taken at each step, over that step's entries, and divided by ``max|ref|`` over
the whole series: a trajectory that crosses zero (a position, a velocity) then does not blow up
where it happens to be small, and the step at which a difference first exceeds tolerance is
where it has grown large on the trajectory's own scale. Entries that happen to be zero in the
reference do not divide by zero. A NaN where the reference has a number is an infinite
difference.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Differences:
    """Largest absolute and relative difference of one output from the reference, per step
    (a single step for an output that is not a series)."""

    abs: list[float]
    rel: list[float]

    @property
    def worst_abs(self) -> float:
        return max(self.abs, default=0.0)

    @property
    def worst_rel(self) -> float:
        return max(self.rel, default=0.0)


def output_differences(got: np.ndarray, want: np.ndarray, *, series: bool) -> Differences:
    """One output's differences; a shape mismatch is a ValueError naming both shapes."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} but the reference has shape {want.shape}")
    if not series:
        got, want = got.reshape(1, -1), want.reshape(1, -1)
    axes = tuple(range(1, want.ndim))
    gap = np.abs(got - want)
    gap = np.where(np.isnan(gap), np.inf, gap)
    worst_gap = gap.max(axis=axes, initial=0.0) if axes else gap
    scale = np.abs(want).max(initial=0.0)  # the whole series' (or output's) size
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(worst_gap == 0, 0.0, worst_gap / scale)
    return Differences(worst_gap.tolist(), rel.tolist())


def differences(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                series: Collection[str] = ()) -> dict[str, Differences]:
    """Differences of every output the reference has; a missing or misshapen one is a ValueError.
    """
    result = {}
    for name, expected in reference.items():
        if name not in outputs:
            raise ValueError(f"the run produced no {name!r}, which the reference has")
        try:
            result[name] = output_differences(outputs[name], expected, series=name in series)
        except ValueError as exc:
            raise ValueError(f"{name!r} has {exc}") from None
    return result


@dataclass(frozen=True)
class Verdict:
    """Agreement with the reference: ``agrees``, or the worst output, by how much, from when."""

    agrees: bool
    worst_rel: float
    worst_abs: float
    output: str | None  # the output that differs most (None when all agree)
    first_step: int | None  # the first step beyond tolerance of a series, if one differs
    tolerance: float
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"agrees": self.agrees, "worst_rel": self.worst_rel, "worst_abs": self.worst_abs,
                "output": self.output, "first_step": self.first_step,
                "tolerance": self.tolerance, "text": self.text}


def verdict(diffs: Mapping[str, Differences], tolerance: float, *,
            series: Collection[str] = (), step: str = "step") -> Verdict:
    """'agrees' when every output is within ``tolerance`` at every step, else
    '<output> differs by X from <step> Y' for the output that differs most (and, when that is
    not a series, the series that differs first: '...; <series> from <step> Y')."""
    worst_rel = max((d.worst_rel for d in diffs.values()), default=0.0)
    worst_abs = max((d.worst_abs for d in diffs.values()), default=0.0)
    beyond = {name: [i for i, r in enumerate(d.rel) if not r <= tolerance]
              for name, d in diffs.items()}
    differing = [name for name, steps in beyond.items() if steps]
    if not differing:
        return Verdict(True, worst_rel, worst_abs, None, None, tolerance, "agrees")
    name = max(differing, key=lambda n: diffs[n].worst_rel)
    text = f"{name} differs by {diffs[name].worst_rel:.2g}"
    stepped = [n for n in differing if n in series]
    first = None
    if name in series:
        first = beyond[name][0]
        text += f" from {step} {first}"
    elif stepped:  # say where the trajectories part, too
        earliest = min(stepped, key=lambda n: beyond[n][0])
        first = beyond[earliest][0]
        text += f"; {earliest} from {step} {first}"
    return Verdict(False, worst_rel, worst_abs, name, first, tolerance, text)
