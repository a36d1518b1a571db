"""A user's own experiment through ``gradbridge compare`` and ``gradbridge run``: agreement and
disagreement across backends, settings, broken files, resume after a kill, the shipped example,
and the built-ins still reproducing the tutorial. Grids are small (a few steps, one dtype where
two are not needed) to keep the file fast."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from conftest import killed_after_the_first_run

from gradbridge.cli import main
from gradbridge.experiments import loader

REPO = Path(__file__).resolve().parents[2]
ALL = ["--backends", "numpy,jax,torch"]

SPRING = '''
import gradbridge as gb

@gb.experiment(series=["position"])
def spring(be, *, steps: int = 20, dt: float = 0.05, lean: float = 0.0):
    x, v, path = be.asarray(1.0), be.asarray(0.0), []
    for _ in range(steps):
        push = lean if be.name == "torch" else 0.0  # a backend-dependent branch
        v = v + dt * (-4.0 * x - 0.3 * v + push)
        x = x + dt * v
        path.append(x)
    return {"position": be.stack(path), "final": x}
'''


def user_file(tmp_path: Path, source: str = SPRING, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def compare(*argv: str) -> int:
    return main(["compare", *argv, "--quiet"])


def test_a_user_experiment_agrees_on_every_backend(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    out = tmp_path / "out"
    assert compare("--experiments", f"{path}:spring", *ALL, "--out", str(out),
                   "--set", "spring.steps=12", "--check") == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs)  # 3 backends x 2 dtypes
    for run in runs:
        assert run["settings"] == {"steps": 12, "dt": 0.05, "lean": 0.0}
        assert len(run["outputs"]["position"]) == len(run["differences"]["position"]["rel"]) == 12
        # against the same loop on NumPy float64: 1e-10 in float64, 1e-4 in float32 (12 steps)
        assert run["verdict"]["agrees"], run["verdict"]
        assert run["time"]["run_s"] > 0 and run["memory"]["host_peak_rss_mb"] > 0
    assert results["experiments"]["spring"]["series"] == ["position"]
    report = (out / "report.md").read_text()
    assert "## spring: every output against the reference" in report
    for name in ("spring_series.png", "reference_difference.png", "results.csv"):
        assert (out / name).is_file(), name


def test_a_backend_that_computes_something_else_fails_the_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = user_file(tmp_path)
    out = tmp_path / "out"
    assert compare("--experiments", f"{path}:spring", *ALL, "--dtypes", "float64",
                   "--set", "spring.lean=0.01", "--out", str(out), "--check") == 1
    err = capsys.readouterr().err
    # torch is pushed by 0.01 * dt from step 0: the final position differs most (relative to
    # its own small size), and the trajectory from its first step
    assert "spring on torch cpu float64: final differs by" in err
    assert "; position from step 0" in err
    assert "numpy cpu float64" not in err and "jax cpu float64" not in err
    report = (out / "report.md").read_text()
    assert "| torch | 1 ok | final differs by" in report
    assert "| torch | cpu | float64 | **" in report and "(from step 0)** |" in report


def test_explain_names_the_statement_where_the_difference_is_born(tmp_path: Path) -> None:
    """--explain reruns the disagreeing run beside NumPy float64: torch's own branch sets
    ``push`` (line 8 of the file, 1st iteration) before any other value differs."""
    path = user_file(tmp_path)
    out = tmp_path / "out"
    assert compare("--experiments", f"{path}:spring", "--backends", "numpy,torch", "--dtypes",
                   "float64", "--set", "spring.lean=0.01", "--set", "spring.steps=6",
                   "--out", str(out), "--explain") == 0
    runs = {r["backend"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs["numpy"]["explanation"] is None  # it agrees: nothing to explain
    explanation = runs["torch"]["explanation"]
    line = SPRING.splitlines().index(
        '        push = lean if be.name == "torch" else 0.0  # a backend-dependent branch') + 1
    assert f"mine.py:{line}" in explanation and "push" in explanation, explanation
    assert "1st execution" in explanation, explanation
    assert f"mine.py:{line}" in (out / "report.md").read_text()


def test_settings_of_a_user_experiment_are_validated(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = user_file(tmp_path)
    base = ["--experiments", f"{path}:spring", "--backends", "numpy", "--out",
            str(tmp_path / "x")]
    assert compare(*base, "--set", "spring.stepz=3") == 2
    assert capsys.readouterr().err == (
        "error: unknown setting 'stepz' of experiment spring (--set); its settings: steps "
        "(an integer, default 20), dt (a number, default 0.05), lean (a number, default "
        "0.0)\n")
    assert compare(*base, "--set", "spring.steps=2.5") == 2
    assert "error: spring.steps must be an integer; got '2.5' (--set)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # validated before anything was written


BROKEN = {
    "syntax": ("def spring(be, *, steps: int = 3)\n    return {}\n",
               "{path}: syntax error on line 1: expected ':'"),
    "raises": ("import math\nmath.sqrt(-1)\n",
               "{path}: importing it raised ValueError: math domain error (line 2)"),
    "missing function": ("def other(be):\n    return {'x': 1.0}\n",
                         "{path}: no function 'spring'; it defines other"),
    "signature": ("def spring(be, steps=3):\n    return {'x': 1.0}\n",
                  "{path}: spring is not an experiment: parameter 'steps' must be keyword-only"),
    "not a mapping": ("def spring(be, *, steps: int = 3):\n    return [1.0, 2.0]\n",
                      "{path}: spring() returned a list, not a mapping of output names"),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_file_is_one_error_line(broken: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    source, message = BROKEN[broken]
    path = user_file(tmp_path, source, name=f"{broken.replace(' ', '_')}.py")
    assert compare("--experiments", f"{path}:spring", "--backends", "numpy",
                   "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(path=path)}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_code_that_raises_names_its_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    source = SPRING.replace("        x = x + dt * v\n",
                            "        x = x + dt * v\n"
                            "        assert be.name != lean_on, 'refused here'\n").replace(
        "lean: float = 0.0", "lean: float = 0.0, lean_on: str = ''")
    path = user_file(tmp_path, source)
    line = source.splitlines().index("        assert be.name != lean_on, 'refused here'") + 1
    base = ["--experiments", f"{path}:spring", "--backends", "numpy,torch", "--dtypes",
            "float64"]
    # on one backend: that run is an error naming the line, the rest of the grid goes on
    assert compare(*base, "--set", "spring.lean_on=torch", "--out", str(tmp_path / "a")) == 1
    assert capsys.readouterr().err.startswith(
        f"failed: spring on torch cpu float64: error: AssertionError: refused here "
        f"(mine.py:{line}); see")
    # in the reference itself (NumPy float64): nothing can be compared, one error line
    assert compare(*base, "--set", "spring.lean_on=numpy", "--out", str(tmp_path / "b")) == 2
    assert capsys.readouterr().err == (f"error: {path}: the reference run of spring (NumPy "
                                       f"float64) raised AssertionError: refused here "
                                       f"(mine.py:{line})\n")


def test_a_missing_file_or_module_is_one_error_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert compare("--experiments", f"{tmp_path / 'nope.py'}:spring") == 2
    assert capsys.readouterr().err == f"error: experiment file {tmp_path / 'nope.py'} does not " \
                                      "exist\n"
    assert compare("--experiments", "no_such_package_here.mod:spring") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot import module no_such_package_here.mod for experiment "
                          "spring: No module named 'no_such_package_here'")


def test_a_module_experiment_and_a_file_imported_once(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "imports.txt"
    package = tmp_path / "site" / "userpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "physics.py").write_text(
        f"open({str(counter)!r}, 'a').write('imported\\n')\n" + textwrap.dedent(SPRING))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    user_file(tmp_path, f"open({str(counter)!r}, 'a').write('file\\n')\n" + SPRING)
    monkeypatch.chdir(tmp_path)
    assert compare("--experiments", "userpkg.physics:spring", "--backends", "numpy",
                   "--dtypes", "float64", "--out", "a", "--check") == 0
    assert compare("--experiments", "mine.py:spring", "--backends", "numpy,torch",
                   "--out", "b", "--check") == 0  # 4 runs and a reference
    assert compare("--experiments", "mine.py:spring", "--backends", "numpy,torch",
                   "--out", "b", "--resume") == 0
    # the module once, and the file once for all its runs and the resume in this process
    assert counter.read_text() == "imported\nfile\n"


def test_a_killed_user_comparison_resumes_without_redoing_runs(tmp_path: Path) -> None:
    slow = SPRING.replace("@gb.experiment(series=[\"position\"])",
                          "@gb.experiment(series=[\"position\"], repeats=0)").replace(
        "    return {", "    import time; time.sleep(0.3)\n    return {")
    path = user_file(tmp_path, slow)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradbridge", "compare", "--experiments", f"{path}:spring",
               "--backends", "numpy", "--set", "spring.steps=5", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed_after_the_first_run(command, out, tmp_path, env)
    finished = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(finished) == 1, "the kill should land part-way through the grid"
    for file in out.rglob("*.json"):
        json.loads(file.read_text())  # every file it left is complete JSON
    kept = {name: (out / "runs" / name).read_text() for name in finished}
    done = subprocess.run([*command[:3], "compare", "--resume", "--out", str(out), "--check",
                           "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for name, text in kept.items():
        assert (out / "runs" / name).read_text() == text  # finished runs were not redone
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 and all(r["verdict"]["agrees"] for r in results["runs"])


def test_resume_redoes_the_runs_of_a_changed_file(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = user_file(tmp_path)
    out = str(tmp_path / "out")
    base = ["--experiments", f"{path}:spring", "--backends", "numpy", "--dtypes", "float64",
            "--out", out]
    assert compare(*base) == 0
    path.write_text(path.read_text().replace("0.3 * v", "0.5 * v"))  # the user edits the model
    # a new process would import the edited file; this one forgets the old import to act so
    loader._files.clear()
    assert main(["compare", "--resume", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "was made by another version of the experiment's code; running it again" in err
    (run,) = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert run["verdict"]["agrees"]  # the new code against its new reference
    # a setting the stored grid has but the edited function lost: said, not "corrupt"
    path.write_text(path.read_text().replace(", lean: float = 0.0", "").replace(
        "push = lean if", "push = 0.0 if"))
    loader._files.clear()
    assert main(["compare", "--resume", "--out", out]) == 2
    assert capsys.readouterr().err.startswith("error: unknown setting 'lean' of experiment "
                                              "spring (the stored grid); its settings: steps")


def test_the_shipped_example_and_its_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = tmp_path / "small.toml"
    config.write_text((REPO / "examples" / "my_experiment.toml").read_text()
                      .replace("steps = 300", "steps = 40")
                      .replace('"my_experiment.py:', f'"{REPO / "examples"}/my_experiment.py:'))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 6
    for run in results["runs"]:
        assert run["settings"]["steps"] == 40 and run["settings"]["damping"] == 0.3
        assert run["verdict"]["agrees"], run["verdict"]  # 1e-10 float64, 1e-4 float32
    # the integrator itself, against the damped oscillator's closed form x(t) = e^(-g t)
    # (cos w t + g / w sin w t), g = c / 2, w = sqrt(k - g^2): semi-implicit Euler is first
    # order, so with dt = 0.02 over 40 steps it stays within a few 1e-2
    g, w = 0.3 / 2, math.sqrt(4.0 - 0.15 ** 2)
    t = 0.02 * np.arange(1, 41)
    exact = np.exp(-g * t) * (np.cos(w * t) + g / w * np.sin(w * t))
    position = np.array(results["reference"]["damped_spring"]["position"])
    assert np.abs(position - exact).max() < 0.03
    assert (REPO / "examples" / "my_experiment.toml").read_text().count("my_experiment.py") == 2


def test_the_readme_fixture_test_runs_on_every_backend_and_dtype(tmp_path: Path) -> None:
    plugin = [] if any(p.value == "gradbridge.testing.plugin"
                       for p in entry_points(group="pytest11")) else ["-p",
                                                                     "gradbridge.testing.plugin"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin,
         str(REPO / "examples" / "test_my_experiment.py"), "--gb-backends", "numpy", "-v"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path, capture_output=True,
        text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout  # float32 and float64
    assert "[numpy-cpu-float32] PASSED" in done.stdout


def test_config_files_take_a_table_per_user_experiment(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    user_file(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text('backends = ["numpy"]\ndtypes = ["float64"]\n'
                      'experiments = ["mine.py:spring"]\n[spring]\nsteps = 3\n')
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--check"]) == 0
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["settings"]["steps"] == 3 and len(run["outputs"]["position"]) == 3
    config.write_text('experiments = ["mine.py:spring"]\n[spring]\nsteps = "many"\n')
    assert main(["run", str(config)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {config}: spring.steps must be an "
                                              "integer; got 'many'")


def test_the_builtins_still_reproduce_the_tutorial(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert compare("--experiments", "linalg,regression,bayes", *ALL, "--dtypes", "float32",
                   "--out", str(out), "--check") == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 9  # the tutorial's float32, on every backend
    for run in runs:
        # the tutorial's printed numbers, to 1e-6 (float32 rounding of 3-term sums)
        if run["experiment"] == "linalg":
            assert run["outputs"]["dot"] == pytest.approx(1.7, rel=1e-6)
        elif run["experiment"] == "regression":
            assert abs(run["outputs"]["final_w"] - 3) < 0.1
            assert abs(run["outputs"]["final_b"] - 2) < 0.1
        else:
            assert round(100 * run["outputs"]["medical_test"], 1) == 16.1


ORCHESTRATION = ["gradbridge/experiments/grid.py", "gradbridge/experiments/runner.py",
                 "gradbridge/experiments/memory.py", "gradbridge/experiments/report.py",
                 "gradbridge/experiments/plots.py", "gradbridge/experiments/store.py",
                 "gradbridge/experiments/record.py", "gradbridge/experiments/agreement.py",
                 "gradbridge/commands/compare.py", "gradbridge/commands/run.py"]
"""The modules that run, store and show experiments (cli.py is left out: ``gradbridge bayes`` is
a subcommand of its own, not the experiment)."""


@pytest.mark.parametrize("path", ORCHESTRATION)
def test_runner_report_plots_and_cli_never_name_an_experiment(path: str) -> None:
    words = re.compile(r"\b(" + "|".join(loader.builtin_names()) + r")\b")
    tree = ast.parse((REPO / path).read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant)}
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:  # prose may say "timing"; code and messages may not
                named |= set(words.findall(node.value))
        elif isinstance(node, ast.Name):
            named |= set(words.findall(node.id))
        elif isinstance(node, ast.Attribute):
            named |= set(words.findall(node.attr))
        elif isinstance(node, ast.alias):
            named |= set(words.findall(node.name))
    assert not named, f"{path} names the experiments {sorted(named)}"
