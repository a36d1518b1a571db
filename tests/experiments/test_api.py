"""The experiment API: settings from the signature, the decorator's metadata, what a run
returns, and the default reference (the same function on NumPy float64)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments import loader
from gradbridge.experiments.api import Experiment, ExperimentError

REPO = Path(__file__).resolve().parents[2]


@gb.experiment(description="geometric decay", series=["x"], tolerances={"float32": 1e-3})
def decay(be: Any, *, steps: int = 4, rate: float = 0.5, label: str = "a", exact: bool = False,
          sizes: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    x, path = be.asarray(1.0), []
    for _ in range(steps):
        x = x * rate
        path.append(x)
    return {"x": be.stack(path), "total": sum(sizes)}


def plain(be: Any, *, n: int = 3) -> dict[str, Any]:
    return {"ones": be.ones(n)}


DECAY = Experiment.from_function(decay, "decay", "test_api.py")


def test_settings_come_from_the_signature_with_their_types() -> None:
    assert DECAY.defaults == {"steps": 4, "rate": 0.5, "label": "a", "exact": False,
                              "sizes": (1, 2)}
    assert DECAY.settings({}) == {"steps": 4, "rate": 0.5, "label": "a", "exact": False,
                                  "sizes": [1, 2]}  # JSON-ready: lists
    given = DECAY.settings({"steps": 7.0, "rate": 1, "label": "b", "exact": True,
                            "sizes": [3]})
    assert given == {"steps": 7, "rate": 1.0, "label": "b", "exact": True, "sizes": [3]}
    assert isinstance(given["rate"], float) and isinstance(given["steps"], int)
    parsed = DECAY.settings({"steps": "1e1", "rate": "0.25", "exact": "true", "sizes": "4,5"},
                            text=True)
    assert parsed == {"steps": 10, "rate": 0.25, "label": "a", "exact": True, "sizes": [4, 5]}
    assert DECAY.arguments(parsed)["sizes"] == (4, 5)  # a tuple default gets a tuple


@pytest.mark.parametrize(("given", "text", "message"), [
    ({"step": 3}, False, "unknown setting 'step' of experiment decay; its settings: steps "
                         r"\(an integer, default 4\), rate \(a number, default 0.5\)"),
    ({"steps": 2.5}, False, r"decay.steps must be an integer; got 2.5; its settings: steps"),
    ({"steps": True}, False, "decay.steps must be an integer; got True"),
    ({"rate": "fast"}, False, "decay.rate must be a number; got 'fast'"),
    ({"exact": 1}, False, "decay.exact must be true or false; got 1"),
    ({"label": 3}, False, "decay.label must be a string; got 3"),
    ({"sizes": [1, 2.5]}, False, r"decay.sizes must be a list of integers; got \[1, 2.5\]"),
    ({"steps": "many"}, True, "decay.steps must be an integer; got 'many'"),
    ({"exact": "maybe"}, True, "decay.exact must be true or false; got 'maybe'"),
])
def test_bad_settings_name_the_key_and_list_the_valid_ones(given: dict, text: bool,
                                                           message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        DECAY.settings(given, text=text)


def test_the_decorator_adds_metadata_and_leaves_the_function_callable() -> None:
    assert DECAY.description == "geometric decay" and DECAY.series == ("x",)
    assert DECAY.tolerances.float32 == 1e-3 and DECAY.tolerances.float64 == 1e-10
    be = gb.get_backend("numpy", dtype="float64")
    assert float(decay(be)["x"][-1]) == 0.5 ** 4  # still the user's own function
    bare = Experiment.from_function(plain, "plain", "here")
    assert bare.series == () and bare.reference is None and bare.compared
    with pytest.raises(InvalidArgument, match=r"tolerance\.float32=2\.0 is not valid"):
        gb.experiment(tolerances={"float32": 2.0})
    with pytest.raises(InvalidArgument, match="unknown dtype 'float16'; give float32"):
        gb.experiment(tolerances={"float16": 1e-2})
    one = Experiment.from_function(gb.experiment(series="x")(plain), "one", "here")
    assert one.series == ("x",)  # a single name, not its letters


def test_a_run_returns_host_float64_and_the_default_reference_is_numpy_float64() -> None:
    be = gb.get_backend("numpy", dtype="float32")
    outputs = DECAY.run(be, DECAY.settings({"steps": 3, "sizes": [2, 5]}))
    assert outputs["x"].dtype == np.float64 and outputs["x"].shape == (3,)
    np.testing.assert_array_equal(outputs["x"], [0.5, 0.25, 0.125])  # powers of 2: exact
    assert outputs["total"] == 7
    reference = DECAY.reference_outputs(DECAY.settings({"rate": 0.1}))
    # float64 arithmetic: 0.1 ** k to rounding (a few ulps), unlike float32's 1e-8
    np.testing.assert_allclose(reference["x"], 0.1 ** np.arange(1, 5), rtol=1e-15)


@pytest.mark.parametrize(("fn", "message"), [
    (lambda: 3, "it must take the backend as its first positional parameter"),
    (lambda be, n=3: {}, "parameter 'n' must be keyword-only with a default"),
    (lambda be, *, n: {}, "parameter 'n' must be keyword-only with a default"),
    (lambda be, *, n=None: {}, "setting 'n' has default None; settings are numbers"),
    (lambda be, **kw: {}, "parameter 'kw' must be keyword-only"),
    (3, "it is a int, not a function"),
])
def test_wrong_signatures_say_how_to_write_one(fn: Any, message: str) -> None:
    with pytest.raises(ExperimentError, match=f"^f.py: g is not an experiment: {message}.*; "
                                              r"write it as def g\(be, \*, steps: int = 100"):
        Experiment.from_function(fn, "g", "f.py")


@pytest.mark.parametrize(("result", "message"), [
    (3, "returned a int, not a mapping of output names to arrays or numbers"),
    ({}, "returned an empty mapping"),
    ({"x": "text"}, "output 'x' of f\\(\\) is not an array or number"),
    ({"y": 1.0}, "returned no x, named as series; it returned y"),
    ({"x": 1.0}, "output 'x' of f\\(\\) is a series but has no step axis"),
])
def test_results_that_are_not_outputs_are_errors(result: Any, message: str) -> None:
    experiment = Experiment.from_function(gb.experiment(series=["x"])(lambda be: result), "f",
                                          "f.py")
    with pytest.raises(ExperimentError, match=f"^f.py: .*{message}"):
        experiment.run(gb.get_backend("numpy"), {})


def test_every_builtin_is_an_experiment_module() -> None:
    for name in loader.builtin_names():
        experiment = loader.load(name)
        assert experiment.name == name and experiment.description
        assert experiment.settings({}) is not None  # its defaults pass its own checks


def test_the_export_imports_no_framework() -> None:
    code = ("import sys, gradbridge as gb; gb.experiment; "
            "print(sorted(m for m in ('jax', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""}, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
