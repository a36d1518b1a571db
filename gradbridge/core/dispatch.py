"""Rules that every framework backend follows, written once against an array namespace ``xp``.

``xp`` is the framework's module (``jax.numpy``, ``torch``): anything with ``where`` and
``isnan``. Nothing here imports a framework; the backends pass their own namespace in.
"""

from __future__ import annotations

from typing import Any

from gradbridge.core.backend import Array


def maximum_ties_to_first(xp: Any, x1: Array, x2: Array | float) -> Array:
    """Elementwise maximum whose gradient at a tie goes wholly to ``x1``; NaN in either wins.

    ``jnp.maximum`` and ``torch.maximum`` split a tie's gradient 0.5/0.5 between the two
    arguments; selecting by comparison instead gives the documented subgradient of the
    protocol (and of the NumPy backend). ``isnan(x1)`` keeps NumPy's NaN propagation, which a
    bare ``x1 >= x2`` would lose when only ``x1`` is NaN.
    """
    return xp.where((x1 >= x2) | xp.isnan(x1), x1, x2)


def minimum_ties_to_first(xp: Any, x1: Array, x2: Array | float) -> Array:
    """Elementwise minimum whose gradient at a tie goes wholly to ``x1``; NaN in either wins."""
    return xp.where((x1 <= x2) | xp.isnan(x1), x1, x2)
