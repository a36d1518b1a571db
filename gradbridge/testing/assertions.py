"""``assert_close`` compares arrays of any framework with a tolerance taken from their dtype;
``assert_backends_agree`` runs one function on several backends and compares the results. Both
say where the worst element is, both values there and the tolerance used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_RTOL: dict[str, float] = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-3}
"""Relative tolerance by dtype when none is given: rounding only in float64 (1e-10 leaves room
for other summation orders); float32 carries ~6e-8 per operation, 1e-5 covers short chains.
Integer and boolean arrays must be equal."""

__all__ = ["DEFAULT_RTOL", "assert_backends_agree", "assert_close"]


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of an array of any framework (torch tensors detached and moved first)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch, read without importing torch
        x = x.detach().cpu()
    return np.asarray(x)


def assert_close(actual: Any, desired: Any, *, rtol: float | None = None,
                 atol: float = 0.0) -> None:
    """Assert equal shape and dtype, and ``|actual - desired| <= atol + rtol * |desired|``
    elementwise; ``rtol`` defaults from the dtype (DEFAULT_RTOL)."""
    got, want = to_host(actual), to_host(desired)
    if got.shape != want.shape:
        raise AssertionError(f"shapes differ: actual {got.shape}, desired {want.shape}")
    if got.dtype != want.dtype:
        raise AssertionError(f"dtypes differ: actual {got.dtype}, desired {want.dtype}")
    tolerance = DEFAULT_RTOL.get(got.dtype.name, 0.0) if rtol is None else rtol
    if got.dtype.kind in "biu" or got.size == 0:
        if not np.array_equal(got, want):
            raise AssertionError(_worst(got, want, tolerance, atol))
        return
    wide, wide_want = got.astype(np.float64), want.astype(np.float64)
    same = (wide == wide_want) | (np.isnan(wide) & np.isnan(wide_want))  # inf == inf, nan ~ nan
    with np.errstate(invalid="ignore"):  # inf - inf: covered by ``same``
        close = same | (np.abs(wide - wide_want) <= atol + tolerance * np.abs(wide_want))
    if not np.all(close):
        raise AssertionError(_worst(got, want, tolerance, atol))


def _worst(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str:
    """Where the two differ most, both values there, and how many elements are off."""
    with np.errstate(invalid="ignore"):
        difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
    difference = np.where(np.isnan(difference) & (got != want), np.inf,
                          np.nan_to_num(difference, nan=0.0))
    index = np.unravel_index(int(np.argmax(difference)), got.shape) if got.ndim else ()
    scale = abs(float(want[index])) if np.isfinite(want[index]) else 0.0
    relative = float(difference[index]) / scale if scale else float("inf")
    off = int(np.count_nonzero(difference > atol + rtol * np.abs(want.astype(np.float64))))
    return (f"{off} of {got.size} elements differ beyond rtol={rtol:g}, atol={atol:g}; worst at "
            f"index {tuple(int(i) for i in index)}: actual {got[index]!r}, desired "
            f"{want[index]!r} (relative difference {relative:.3g})")


def assert_backends_agree(fn: Callable[..., Any], *args: Any,
                          backends: Sequence[str] | None = None, dtype: str = "float64",
                          rtol: float | None = None) -> dict[str, Any]:
    """Run ``fn(be, *args)`` on each backend (default: every one that loads here) and assert
    that every result, or every entry of a mapping or sequence of results, is close to the
    first backend's. Returns the host results by backend name."""
    import gradbridge as gb

    names = list(backends) if backends is not None else [
        info.name for info in gb.list_backends() if info.loadable]
    if len(names) < 2:
        raise AssertionError(f"assert_backends_agree needs two backends or more; got {names}")
    results = {name: _host_tree(fn(gb.get_backend(name, dtype=dtype), *args)) for name in names}
    first, expected = names[0], dict(_leaves(results[names[0]]))
    for name in names[1:]:
        got = dict(_leaves(results[name]))
        if got.keys() != expected.keys():
            raise AssertionError(f"{name} returned the outputs {sorted(got)}, {first} "
                                 f"returned {sorted(expected)}")
        for key, value in got.items():
            try:
                assert_close(value, expected[key], rtol=rtol)
            except AssertionError as exc:
                where = f" in output {key!r}" if key else ""
                raise AssertionError(f"{name} differs from {first}{where}: {exc}") from None
    return results


def _host_tree(result: Any) -> Any:
    """A result with each array copied to the host (mappings and sequences kept)."""
    if isinstance(result, Mapping):
        return {key: _host_tree(value) for key, value in result.items()}
    if isinstance(result, (list, tuple)):
        return [_host_tree(value) for value in result]
    return to_host(result)


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """(path, array) pairs of a host result tree, e.g. ('loss', ...), ('grads.w', ...)."""
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items()
                for leaf in _leaves(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(tree, list):
        return [leaf for i, value in enumerate(tree)
                for leaf in _leaves(value, f"{prefix}[{i}]")]
    return [(prefix, tree)]
