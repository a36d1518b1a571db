"""gradbridge.testing.explain names the statement where a backend first computes something else.

The experiments live in a file written to a temporary directory; the statement each test expects
is found in that file's text by its marker comment, never taken from explain's own output. The
deliberate differences are relative perturbations of 1e-4 or 1e-3, or float32 overflow (inf
against a finite float64 value), far above rounding in either dtype.
"""

from __future__ import annotations

import importlib.util
import textwrap
from types import ModuleType

import numpy as np
import pytest
from conftest import make_backend

import gradbridge as gb
from gradbridge.core.backend import InvalidArgument
from gradbridge.testing import DEFAULT_RTOL, Divergence, explain

EXPERIMENTS = textwrap.dedent('''
    import numpy as np


    def loop(be, *, steps: int = 8):
        v = be.asarray([1.0, 2.0, 3.0])
        losses = []
        for i in range(steps):
            v = v * 0.9 + 0.1
            v = v * (1 + 1e-3 * (be.name != "numpy" and i == 4))  # born: loop
            total = be.sum(v * v)
            losses.append(total)
        return {"v": v, "loss": be.stack(losses)}


    def branch(be, *, steps: int = 8):
        v = be.asarray([1.0, 2.0, 3.0])
        for i in range(steps):
            v = v * 0.9 + 0.1
            if be.name != "numpy" and i == 4:
                v = v * (1 + 1e-3)  # born: branch
            w = v * 2.0
        return {"w": w}


    def appended(be, *, steps: int = 6):
        v, losses = be.asarray([1.0, 2.0]), []
        for i in range(steps):
            v = v * 0.5 + 1.0
            losses.append(be.sum(v) * (1 + 1e-4 * (be.name != "numpy" and i == 2)))  # born: append
        return {"loss": be.stack(losses)}


    def comprehension(be, *, steps: int = 6):
        params = {"a": be.asarray(1.0), "b": be.asarray(2.0)}
        for i in range(steps):
            params = {k: p * (1 + 1e-3 * (be.name != "numpy" and i == 3))  # born: comprehension
                      for k, p in params.items()}
        return params


    def damp(x, k, name):
        y = x * 0.5
        y = y * (1 + 1e-4 * (name != "numpy" and k == 2))  # born: helper
        return y + 1.0


    def nested(be, *, steps: int = 5):
        def step(x, k):
            return damp(x, k, be.name) * 1.0

        v = be.asarray([1.0, 4.0])
        for k in range(steps):
            v = step(v, k)
        return {"v": v}


    def argument(be, *, steps: int = 5):
        def step(x):
            return x * 0.5 + 1.0

        v = be.asarray([1.0, 4.0])
        for k in range(steps):
            v = step(v * (1 + 1e-4 * (be.name != "numpy" and k == 3)))  # born: argument
        return {"v": v}


    def overflow_operator(be):
        a = be.asarray([[1e20, 2e20], [3e20, 4e20]])
        b = be.asarray([[1.0, 0.0], [0.0, 1.0]]) * 1e20
        m = a @ b  # born: operator
        return {"m": m, "s": be.sum(m)}


    def overflow_call(be):
        x = be.asarray([1.0, 50.0, 100.0])
        y = x * 0.5
        e = be.exp(x)  # born: call
        return {"e": e / (1 + e), "y": y}


    def steered(be, *, steps: int = 20):
        x = be.asarray(1.0)
        for k in range(steps):
            x = x * 0.5 * (1 - 1e-12 * (be.name != "numpy"))
            if x < 0.25:  # born: steered
                break
        return {"x": x}


    def unstable(be, *, steps: int = 16):
        x = be.asarray(1 + 1e-6)
        for _ in range(steps):
            x = 2 * x - 1  # doubles x's distance from 1, and any difference in it
        return {"x": x}


    def regression(be, *, epochs: int = 10, lr: float = 0.1, n: int = 50):
        rng = np.random.default_rng(42)
        x_host = rng.uniform(0.0, 1.0, n)
        x, y = be.from_host(x_host), be.from_host(3 * x_host + 2 + 0.1 * rng.standard_normal(n))
        params = {"w": be.asarray(0.0), "b": be.asarray(0.0)}

        def loss(p):
            return be.mean((p["w"] * x + p["b"] - y) ** 2)

        step = be.jit(be.value_and_grad(loss))
        losses = []
        for _ in range(epochs):
            value, grads = step(params)
            params = {k: params[k] - lr * grads[k] for k in params}
            losses.append(value)
        return {"w": params["w"], "b": params["b"], "loss": be.stack(losses)}


    def converged(be, *, epochs: int = 60, lr: float = 0.5, n: int = 100):
        rng = np.random.default_rng(0)
        x = be.from_host(rng.uniform(-1.0, 1.0, n))
        y = be.from_host(3 * np.linspace(-1.0, 1.0, n) + 2)
        w, b = be.asarray(0.0), be.asarray(0.0)
        for _ in range(epochs):
            r = w * x + b - y
            dw = 2 * be.mean(r * x)  # at the optimum: sums of terms that cancel
            db = 2 * be.mean(r)
            w = w - lr * dw
            b = b - lr * db
        return {"w": w, "b": b}
''')

FLOAT64 = [("jax", "float64"), ("torch", "float64")]
FLOAT32 = [("jax", "float32"), ("torch", "float32")]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("explain") / "my_experiments.py"
    path.write_text(EXPERIMENTS)
    spec = importlib.util.spec_from_file_location("my_experiments", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marked(tag: str) -> int:
    """The line of the experiment file that carries ``# born: tag``."""
    lines = EXPERIMENTS.splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.endswith(f"# born: {tag}"))


@pytest.mark.parametrize(("name", "dtype"), FLOAT64 + FLOAT32)
def test_a_loop_is_blamed_on_the_line_and_iteration_where_the_difference_is_born(
        experiments: ModuleType, name: str, dtype: str) -> None:
    found = explain(experiments.loop, make_backend(name, dtype))
    assert found is not None
    assert (found.file, found.line) == (experiments.__file__, marked("loop"))  # not a later line
    assert (found.variable, found.execution) == ("v", 5)  # the 5th iteration's
    assert found.difference == pytest.approx(1e-3, rel=1e-3)  # 1e-3 up to float32 rounding
    assert found.tolerance == DEFAULT_RTOL[dtype]  # the less precise dtype's
    assert (found.backend, found.reference) == (f"{name}-cpu-{dtype}", "numpy-cpu-float64")
    assert str(found).startswith(f"{experiments.__file__}:{marked('loop')} (5th execution) `v = ")


def test_a_branch_only_one_backend_runs_is_blamed_on_its_statement(
        experiments: ModuleType) -> None:
    found = explain(experiments.branch, make_backend("torch", "float64"))
    assert found is not None
    assert (found.line, found.execution, found.variable) == (marked("branch"), 1, "v")
    assert found.source == "v = v * (1 + 1e-3)"  # the statement, without its comment


def test_an_in_place_append_counts(experiments: ModuleType) -> None:
    found = explain(experiments.appended, make_backend("jax", "float64"))
    assert found is not None
    assert (found.line, found.execution, found.variable) == (marked("append"), 3, "losses")
    assert found.difference == pytest.approx(1e-4, rel=1e-6)  # float64: rounding is 1e-16


def test_a_comprehension_is_part_of_its_statement(experiments: ModuleType) -> None:
    found = explain(experiments.comprehension, make_backend("torch", "float64"))
    assert found is not None  # the 4th iteration's statement, not the comprehension's frame
    assert (found.line, found.execution, found.variable) == (marked("comprehension"), 4,
                                                             "params")


@pytest.mark.parametrize("function", ["nested", "argument"])
def test_functions_of_the_users_file_are_followed(experiments: ModuleType,
                                                  function: str) -> None:
    found = explain(getattr(experiments, function), make_backend("torch", "float64"))
    assert found is not None
    if function == "nested":  # born inside a helper, not at the calls that carry it out
        assert (found.line, found.execution, found.variable) == (marked("helper"), 3, "y")
    else:  # born in the arguments of a call: the calling statement
        assert (found.line, found.execution) == (marked("argument"), 4)
        assert found.variable == "<expression>" and "an argument it passes" in str(found)
    assert found.difference == pytest.approx(1e-4, rel=1e-6)  # float64: rounding is 1e-16


@pytest.mark.parametrize(("function", "tag", "variable"),
                         [("overflow_operator", "operator", "m"),
                          ("overflow_call", "call", "e")])
def test_operators_and_namespace_calls_are_blamed_where_float32_overflows(
        experiments: ModuleType, function: str, tag: str, variable: str) -> None:
    for name, dtype in FLOAT32:
        found = explain(getattr(experiments, function), make_backend(name, dtype))
        assert found is not None, name
        assert (found.line, found.execution, found.variable) == (marked(tag), 1, variable)
        assert found.difference == float("inf")  # inf against ~1e40 or ~2.7e43


def test_control_flow_steered_by_a_differing_value_is_reported_as_such(
        experiments: ModuleType) -> None:
    found = explain(experiments.steered, make_backend("torch", "float64"))
    assert found is not None
    # at the 2nd `if`, x = 0.25 * (1 - 2e-12) breaks on torch while x = 0.25 goes on on NumPy
    assert (found.line, found.execution, found.variable) == (marked("steered"), 2,
                                                             "<control flow>")
    assert "control flow differs after this statement" in str(found)
    assert found.difference < 1e-10  # every value before agreed (they differ by ~2e-12)


@pytest.mark.parametrize(("name", "dtype"), [("numpy", "float64"), *FLOAT64])
@pytest.mark.parametrize("function", ["regression", "converged"])
def test_agreeing_backends_give_none(experiments: ModuleType, function: str, name: str,
                                     dtype: str) -> None:
    assert explain(getattr(experiments, function), make_backend(name, dtype)) is None


@pytest.mark.parametrize(("name", "dtype"), [("numpy", "float32"), *FLOAT32])
@pytest.mark.parametrize("function", ["regression", "converged"])
def test_float32_rounding_is_not_blamed(experiments: ModuleType, function: str, name: str,
                                        dtype: str) -> None:
    fn, be = getattr(experiments, function), make_backend(name, dtype)
    single, double = fn(be), fn(gb.get_backend("numpy", dtype="float64"))
    gaps = [np.max(np.abs(be.to_numpy(single[k]) - double[k]) / np.abs(double[k]))
            for k in double]
    assert 0 < max(gaps) < 1e-3  # the runs do differ, by float32 rounding (~1e-7 to 1e-5)
    assert explain(fn, be) is None


def test_a_difference_only_carried_and_amplified_is_not_blamed_where_it_crosses(
        experiments: ModuleType) -> None:
    be = make_backend("torch", "float32")
    single, double = experiments.unstable(be), experiments.unstable(
        gb.get_backend("numpy", dtype="float64"))
    gap = abs(float(be.to_numpy(single["x"])) - float(double["x"])) / float(double["x"])
    assert gap > 10 * DEFAULT_RTOL["float32"]  # 1 + 1e-6's rounding (~5e-8) doubled 16 times
    assert explain(experiments.unstable, be) is None  # no statement adds more than rounding


def test_rtol_is_the_callers_when_given(experiments: ModuleType) -> None:
    be = make_backend("torch", "float64")
    assert explain(experiments.appended, be, rtol=1e-3) is None  # the 1e-4 is within 1e-3
    found = explain(experiments.appended, be, rtol=1e-5)
    assert found is not None and found.tolerance == 1e-5


@pytest.mark.parametrize("name", ["numpy", "jax", "torch"])
def test_eager_runs_jitted_functions_as_written(name: str) -> None:
    be = make_backend(name, "float64")
    runs = []

    def double(x: object) -> object:
        runs.append(1)
        return x * 2.0  # type: ignore[operator]

    jitted = be.jit(double)
    jitted(be.asarray([1.0, 2.0]))  # traced (NumPy, JAX) before the block
    before = len(runs)
    with be.eager():
        results = [be.to_numpy(jitted(be.asarray([1.0, 2.0]))) for _ in range(3)]
    assert len(runs) - before == 3  # the Python body ran on every call
    np.testing.assert_array_equal(results[-1], [2.0, 4.0])  # exact: doubling


def test_a_function_without_a_source_file_is_refused() -> None:
    namespace: dict[str, object] = {}
    exec("def made(be):\n    return {'x': be.asarray(1.0)}\n", namespace)
    with pytest.raises(InvalidArgument, match=r"'made' is not defined in a source file "
                                              r"\(<string>\); define the experiment in a .py"):
        explain(namespace["made"], "numpy")  # type: ignore[arg-type]


def test_str_reads_as_one_line() -> None:
    found = Divergence("f.py", 12, "x = y * 2", "x", 12, 3.2e-3, 1e-5, "torch-cpu-float32",
                       "numpy-cpu-float64")
    assert str(found) == ("f.py:12 (12th execution) `x = y * 2`: x differs by 3.2e-03 "
                          "(tolerance 1e-05) between torch-cpu-float32 and numpy-cpu-float64")
    ordinals = [str(Divergence("f.py", 1, "s", "x", n, 1.0, 1.0, "a", "b")).split("(")[1]
                for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)]
    assert [o.split()[0] for o in ordinals] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
