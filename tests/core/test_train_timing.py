"""``fit``'s compile_s and run_s: a trace is compile time, and only a trace is.

No assertion compares speeds: a trace is made slow on purpose (a sleep in the model, whose
Python body runs only while being traced), so where its time lands is unmistakable.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from conftest import make_backend

from gradbridge.backends.numpy import NumpyBackend
from gradbridge.core import losses, models, train
from gradbridge.core.backend import Backend

X = np.linspace(-1.0, 1.0, 16)
Y = 2.0 * X - 0.5
TRACE_S = 0.05  # far above 5 replayed epochs of 16 points


def slow_to_trace(traced: list[float]) -> Any:
    """A fresh linear model (a new program for fit) that sleeps each time its body runs."""
    def line(be: Backend, p: dict, x: Any) -> Any:
        traced.append(time.perf_counter())
        time.sleep(TRACE_S)
        return models.linear1d(be, p, x)
    return line


def test_numpy_counts_its_trace_as_compile_time_not_run_time() -> None:
    traced: list[float] = []
    history = train.fit(slow_to_trace(traced), losses.mse, {"w": 0.0, "b": 0.0}, X, Y,
                        backend=make_backend("numpy", "float64"), epochs=5)
    assert traced, "the model is traced at least once"
    assert history.compile_s >= len(traced) * TRACE_S * 0.9  # every trace is compile time
    assert history.run_s < TRACE_S  # no trace inside the timed epochs


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_refitting_the_same_problem_reports_no_compile(name: str) -> None:
    be = make_backend(name, "float32")
    line = slow_to_trace([])
    first = train.fit(line, losses.mse, {"w": 0.0, "b": 0.0}, X, Y, backend=be, epochs=5)
    again = train.fit(line, losses.mse, {"w": 1.0, "b": 0.0}, -X, Y, backend=be, epochs=5)
    assert first.compile_s > 0
    assert again.compile_s == 0.0  # a cache hit compiled nothing


class _EagerJit(NumpyBackend):
    """A jit that wraps without staging: the function's body runs at every call."""

    name = "eager-jit"

    def jit(self, fn: Any) -> Any:
        return lambda *args: fn(*args)


def test_a_jit_that_runs_eagerly_reports_no_compile() -> None:
    history = train.fit(models.linear1d, losses.mse, {"w": 0.0, "b": 0.0}, X, Y,
                        backend=_EagerJit(dtype="float64"), epochs=5)
    assert history.compile_s == 0.0 and history.run_s > 0
