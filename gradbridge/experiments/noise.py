"""Timings that do not mislead: durations in readable units, the spread of repeats, and whether
that spread says the machine was busy (contended) while they ran."""

from __future__ import annotations

from collections.abc import Sequence

NOISY_SPREAD = 0.25
"""How far, as a fraction of their median, a timing's repeats may spread before it is noisy."""

CONTENDED = "contended"
CONTENDED_NOTE = (
    f"**Contended**: the repeats of a timing marked so spread by more than {NOISY_SPREAD:.0%} "
    "of their median (interquartile range), or the fastest beat the median by more than that: "
    "the machine was busy with other work (processes competing for its CPUs or GPU) while "
    "they ran, so they tell about that moment more than about the backend. Rerun them on an "
    "idle machine before comparing them.")


def format_seconds(seconds: float | None) -> str:
    """A duration in the unit that reads best: ns, µs, ms or s."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def spread(quantiles: Sequence[float]) -> float:
    """The interquartile range of a timing's repeats over their median; ``quantiles`` are
    [min, q1, median, q3, max]."""
    _, q1, median, q3, _ = quantiles
    return (q3 - q1) / median if median > 0 else 0.0


def noisy(quantiles: Sequence[float]) -> bool:
    """Whether the repeats say the machine was contended: they spread widely, or most of them
    ran well slower than the fastest (contention only ever slows a run down)."""
    fastest, _, median, _, _ = quantiles
    return spread(quantiles) > NOISY_SPREAD or fastest < (1 - NOISY_SPREAD) * median


def timed_text(seconds: float, quantiles: Sequence[float] | None, unit: str = "") -> str:
    """'11 µs/epoch (IQR 9%)', saying 'contended' when the repeats are noisy."""
    text = f"{format_seconds(seconds)}{unit}"
    if quantiles is None:  # a single measurement
        return text
    mark = f", {CONTENDED}" if noisy(quantiles) else ""
    return f"{text} (IQR {spread(quantiles):.0%}{mark})"
