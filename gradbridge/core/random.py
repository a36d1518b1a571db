"""Random draws made on the host by a seeded ``numpy.random.Generator``, then moved to a backend.

Every backend gets the very same numbers for the same seed (in float32, the same numbers
rounded), which device-side generators cannot promise across frameworks. ``rng`` is a
Generator (whose state advances, as NumPy's own calls do) or an integer seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradbridge.core.backend import Array, Backend, invalid

__all__ = ["generator", "integers", "normal", "permutation", "uniform"]

Seed = np.random.Generator | int


def generator(rng: Seed) -> np.random.Generator:
    """``rng`` itself, or a new Generator seeded with it."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise invalid("rng", rng, "a numpy.random.Generator or an integer seed >= 0")
    return np.random.default_rng(int(rng))


def normal(be: Backend, rng: Seed, shape: int | tuple[int, ...], *, loc: float = 0.0,
           scale: float = 1.0) -> Array:
    """Normal draws of mean ``loc`` and standard deviation ``scale``, in the backend's dtype."""
    return be.from_host(generator(rng).normal(loc, scale, shape))


def uniform(be: Backend, rng: Seed, shape: int | tuple[int, ...], *, low: float = 0.0,
            high: float = 1.0) -> Array:
    """Uniform draws on [low, high), in the backend's dtype."""
    return be.from_host(generator(rng).uniform(low, high, shape))


def integers(be: Backend, rng: Seed, low: int, high: int,
             shape: int | tuple[int, ...]) -> Array:
    """Integers drawn uniformly from [low, high), as int64."""
    return be.from_host(generator(rng).integers(low, high, shape, dtype=np.int64))


def permutation(be: Backend, rng: Seed, n: int) -> Array:
    """A random order of 0 .. n-1 (int64): e.g. a mini-batch order."""
    order: Any = generator(rng).permutation(n)
    return be.from_host(np.asarray(order, dtype=np.int64))
