"""One framework per call (DESIGN section 3), driven by core/ops.py: every function of every
backend refuses another framework's array with gradbridge's message, in whichever argument it
comes, and the guard's fast paths hand every call through unchanged (NumPy as reference)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.core import ops

FROM_SIZES = {"arange", "empty", "eye", "full", "linspace", "ones", "zeros", "fftfreq",
              "rfftfreq", "__array_namespace_info__"}
"""Functions of sizes and scalars, with no array argument to refuse."""
CONVERTING = {"asarray"}
"""Conversion is asarray's job: it takes host data of any kind."""
FOREIGN = {
    "numpy": lambda: np.ones(3, np.float32),
    "jax": lambda: pytest.importorskip("jax.numpy").ones(3),
    "torch": lambda: pytest.importorskip("torch").ones(3),
}


def functions(be: Any) -> list[tuple[str, Any, ops.Op]]:
    """Every function of the tables that takes arrays: (name, the backend's function, op)."""
    found = [(op.name, getattr(be, op.name), op) for op in ops.MAIN]
    for extension, table in (("linalg", ops.LINALG), ("fft", ops.FFT)):
        namespace = getattr(be, extension, None)
        found += [(f"{extension}.{op.name}", getattr(namespace, op.name), op) for op in table
                  if hasattr(namespace, op.name)]
    return [(name, fn, op) for name, fn, op in found
            if op.name not in FROM_SIZES | CONVERTING]


SEVERAL_ARRAYS = {"broadcast_arrays", "meshgrid", "result_type", "searchsorted", "take",
                  "take_along_axis"}
"""Functions beyond the elementwise ones whose second argument may be an array too."""


def calls_with(mine: Any, foreign: Any, op: ops.Op) -> list[tuple[Any, ...]]:
    """Argument lists with the foreign array in each place an array can stand."""
    positions = max(op.differentiable, default=0) + 1
    if op.category == "elementwise" or op.name in SEVERAL_ARRAYS:
        positions = max(positions, 2)
    calls = [(mine,) * i + (foreign,) + (mine,) * (positions - 1 - i) for i in range(positions)]
    if op.name in ("concat", "stack"):
        calls.append(([mine, foreign],))
    return calls


@pytest.fixture(params=["numpy", "jax", "torch"])
def be(request: pytest.FixtureRequest) -> Any:
    from conftest import make_backend

    return make_backend(request.param, "float32")


PAIRS = [(mine, other) for mine in ("numpy", "jax", "torch") for other in FOREIGN
         if other != mine and (mine, other) != ("jax", "numpy")]
"""(backend, foreign framework): not its own arrays, nor host data it takes (NumPy, for JAX)."""


@pytest.mark.parametrize(("framework", "other"), PAIRS, ids=[f"{m}-{o}" for m, o in PAIRS])
def test_every_function_refuses_another_frameworks_array(framework: str, other: str) -> None:
    """Checked before the framework sees it: NumPy would convert it silently, torch and JAX
    answer with TypeErrors of their own. JAX takes host NumPy arrays as data."""
    from conftest import make_backend

    be = make_backend(framework, "float32")
    foreign, mine = FOREIGN[other](), be.from_host([1.0, 2.0, 3.0])
    let_through = []
    for name, fn, op in functions(be):
        for args in calls_with(mine, foreign, op):
            try:
                fn(*args)
            except gb.InvalidArgument as exc:
                message = str(exc)
                assert f"{be.name} backend" in message and f"{other} array" in message, message
                continue
            except Exception as exc:  # the framework's own error: the guard let it through
                let_through.append(f"{name}{tuple(type(a).__name__ for a in args)}: {exc!r}")
                continue
            let_through.append(f"{name}{tuple(type(a).__name__ for a in args)}: no error")
    assert not let_through, "\n".join(let_through)


def test_a_refused_type_is_never_remembered_as_harmless(be: Any) -> None:
    """The guard remembers the harmless types it meets (dtypes, strings); foreign ones stay
    refused however often they come."""
    other = "torch" if be.name != "torch" else "numpy"
    foreign = FOREIGN[other]()
    be.isdtype(be.float32, "real floating")  # a dtype and a string: remembered as harmless
    for _ in range(3):
        with pytest.raises(gb.InvalidArgument, match=f"given a {other} array"):
            be.sin(foreign)
        with pytest.raises(gb.InvalidArgument, match=f"given a {other} array"):
            be.reshape(foreign, (3,))


def test_the_fast_paths_hand_every_call_through(be: Any) -> None:
    """No argument, one, two, three or more, keywords, lists: the results NumPy gives."""
    host = np.array([0.5, -1.5, 2.0])
    x = be.asarray(host)

    def same(got: Any, expected: Any) -> None:
        np.testing.assert_allclose(be.to_numpy(got), expected, rtol=1e-6)  # float32 rounding

    assert list(be.meshgrid()) == []  # no argument at all
    same(be.sin(x), np.sin(host))
    same(be.atan2(x, 2.0), np.arctan2(host, 2.0))  # one array and a Python number
    same(be.roll(x, 1), np.roll(host, 1))
    same(be.cumulative_sum(x, axis=0), np.cumsum(host))  # one array and a keyword
    same(be.moveaxis(be.reshape(x, (1, 3)), 0, 1), host.reshape(3, 1))  # three positional
    same(be.where(x > 0, x, -x), np.abs(host))
    same(be.concat([x, x], axis=0), np.concatenate([host, host]))
    same(be.linalg.vector_norm(x, ord=1), np.abs(host).sum())
    with pytest.raises(TypeError):  # the framework's own error for a bad call stands
        be.sin(x, x, x)
