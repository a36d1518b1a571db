"""``gradbridge compare`` and ``gradbridge run``: exit codes, files, checks and plugins."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradbridge as gb
from gradbridge.cli import main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--backends", "numpy", "--experiments", "linalg,regression", "--set",
         "regression.epochs=5"]


def test_compare_writes_every_output_and_a_summary(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compare", *SMALL, "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "agreement with each experiment's reference" in printed  # the summary table
    assert f"report: {out / 'report.md'}" in printed
    for name in ("results.json", "results.csv", "report.md", "manifest.json",
                 "regression_series.png", "gd_path.png", "reference_difference.png"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["grid"]["backends"] == ["numpy"]
    assert manifest["environment"]["cpu"]["count"] == os.cpu_count()
    assert "numpy" in manifest["environment"]["packages"]
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 4  # 2 experiments x 1 backend x 1 device x 2 dtypes


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *SMALL, "--dtypes", "float64", "--out", str(tmp_path / "q"),
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("argv", "message"), [
    (["--devices", "cuda"], "devices that exist: cpu"),
    (["--backends", "numpy,numpi"], "unknown backend 'numpi'; known backends:"),
    (["--experiments", "nope"], "unknown experiment 'nope'; known experiments: linalg"),
    (["--set", "timing.sizes=100,many"], "timing.sizes must be a list of integers; got "
     "'100,many' (--set)"),
    (["--set", "timing.sizes=1e12", "--experiments", "timing"],
     "timing.sizes N = 1,000,000,000,000 (128 bytes per data point) needs about 116.4 TiB"),
    (["--set", "regression.epochs=5", "--experiments", "bayes"], "--set names experiment "
     "'regression', which is not in the grid (bayes); add it to the experiments"),
    (["--set", "regression.epochs"], "--set 'regression.epochs' is not valid; write --set "
     "EXPERIMENT.KEY=VALUE"),
    (["--set", "regression.epochs=many"], "regression.epochs must be an integer; got 'many'"),
])
def test_bad_grids_exit_2_with_one_line(argv: list[str], message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["compare", "--backends", "numpy", "--out", str(tmp_path / "x")]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "runs").exists()  # validated before anything ran


def test_out_with_results_needs_resume_and_resume_keeps_its_grid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["compare", *SMALL, "--dtypes", "float64", "--out", out, "--quiet"]) == 0
    assert main(["compare", *SMALL, "--dtypes", "float64", "--out", out]) == 2
    assert "already holds results; add --resume" in capsys.readouterr().err
    assert main(["compare", "--backends", "numpy", "--out", out, "--resume"]) == 2
    assert "holds a comparison of another grid" in capsys.readouterr().err
    assert main(["compare", "--out", out, "--resume", "--quiet", "--check"]) == 0


def test_resume_without_out_lists_finished_comparisons_instead_of_redoing_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--resume"]) == 2
    assert "found nothing to resume" in capsys.readouterr().err
    assert main(["compare", *SMALL, "--dtypes", "float64", "--quiet"]) == 0
    (started,) = (tmp_path / "results").iterdir()
    assert main(["compare", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --resume without --out found no unfinished comparison: every one "
                   f"in results/ has finished ({started.name}); pass --out DIR to redo the "
                   "failed runs of one, or start a new comparison\n")


def test_errors_fail_the_command_even_quiet_and_named_backends_must_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gb.register_backend("ghost", "ghost_framework_that_is_not_installed.backend:Ghost",
                        install="pip install ghost-framework")
    try:
        base = ["compare", "--backends", "numpy,ghost", "--experiments", "linalg", "--dtypes",
                "float64", "--quiet"]
        assert main([*base, "--out", str(tmp_path / "a")]) == 1
        first = capsys.readouterr()
        assert main([*base, "--out", str(tmp_path / "b"), "--check"]) == 1
        second = capsys.readouterr().err
    finally:
        gb.unregister_backend("ghost")
    assert first.out == ""
    assert first.err.startswith("failed: linalg on ghost cpu float64: error: the ghost backend "
                                "cannot load: ") and first.err.count("\n") == 1
    assert second.startswith("check failed:\n  linalg on ghost cpu float64: error: the ghost")
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["status"] for r in results["runs"]] == ["ok", "error"]


def test_unwritable_or_corrupt_paths_are_one_error_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["compare", "--backends", "numpy", "--experiments", "linalg", "--dtypes", "float64",
            "--quiet"]
    (tmp_path / "file").write_text("")
    assert main([*base, "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == (f"error: cannot write results to {tmp_path / 'file'}: "
                                       "it is a file, not a directory; choose another --out\n")
    with monkeypatch.context() as patch:  # as root, a chmod'ed directory would stay writable
        patch.setattr(os, "mkdir", lambda *a, **k: (_ for _ in ()).throw(
            OSError(errno.EROFS, "Read-only file system")))
        assert main([*base, "--out", str(tmp_path / "ro" / "out")]) == 2
    runs = tmp_path / "ro" / "out" / "runs"
    assert capsys.readouterr().err == (f"error: cannot write results to {runs}: read-only file "
                                       "system; choose another --out\n")
    out = tmp_path / "done"
    assert main([*base, "--out", str(out)]) == 0
    (out / "manifest.json").write_text("")
    assert main(["compare", "--resume", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"error: {out / 'manifest.json'} is corrupt (not valid "
                                       "JSON), so its comparison cannot be resumed; start a "
                                       "new one with another --out\n")


def write_wrong_plugin(root: Path) -> None:
    """An installed-looking distribution whose entry point adds a NumPy backend with a bad mean."""
    package = root / "gb_wrong_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "backend.py").write_text(textwrap.dedent('''
        from gradbridge.backends.numpy import NumpyBackend


        class WrongMeanBackend(NumpyBackend):
            """NumPy, except that every mean comes out 0.1% too large."""

            name = "wrongmean"

            def mean(self, x, axis=None, keepdims=False):
                return super().mean(x, axis=axis, keepdims=keepdims) * 1.001

            def mean_squared_error(self, prediction, target):
                return super().mean_squared_error(prediction, target) * 1.001
    '''))
    info = root / "gb_wrong_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gb-wrong-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[gradbridge.backends]\nwrongmean = gb_wrong_plugin.backend:WrongMeanBackend\n")


def test_check_fails_for_a_wrong_backend_registered_as_a_plugin(tmp_path: Path) -> None:
    write_wrong_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gradbridge", "compare", "--backends", "numpy,wrongmean",
         "--experiments", "linalg,regression", "--dtypes", "float64", "--set",
         "regression.epochs=5",
         "--out", str(out), "--check"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    # the mean is 0.1% off, so the loss differs by 1e-3 relative from the very first epoch
    assert "regression on wrongmean cpu float64: loss differs by 0.001 from epoch 0" \
        in done.stderr
    report = (out / "report.md").read_text()
    assert "| numpy | 2 ok | agrees" in report
    assert "| wrongmean | 2 ok | loss differs by 0.001 from epoch 0 (regression, cpu, " \
           "float64) |" in report
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["environment"]["backends"]["wrongmean"]["source"] == \
        "plugin (gb-wrong-plugin)"


@pytest.mark.parametrize("example", ["quick.toml", "float64_parity.toml"])
def test_example_configs_run(example: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(REPO / "examples" / example), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    grid = results["grid"]
    cells = (len(grid["experiments"]) * len(grid["backends"]) * len(grid["devices"])
             * len(grid["dtypes"]))
    assert len(results["runs"]) == cells
    assert all(run["status"] in ("ok", "skipped") for run in results["runs"])
    assert all(run["verdict"]["agrees"] for run in results["runs"] if run.get("verdict"))


def test_run_names_a_binary_config_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "plot.toml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert main(["run", str(config)]) == 2
    assert capsys.readouterr().err == (f"error: {config} is not a TOML text file (byte 0 is "
                                       "not UTF-8); give the path of a UTF-8 TOML file\n")


def test_run_rejects_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('backends = ["numpy"]\nepoch = 5\n')
    assert main(["run", str(config)]) == 2
    assert "unknown key 'epoch'; valid keys: backends, devices, dtypes, experiments, out" in \
        capsys.readouterr().err
