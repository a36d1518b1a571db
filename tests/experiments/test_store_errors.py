"""What a comparison stores and how it fails: run files checked on resume, errors and skips
that fail, memory refused up front, unwritable paths, corrupt files, and file modes."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import gradbridge as gb
from gradbridge.backends.numpy import NumpyBackend
from gradbridge.commands.compare import execute
from gradbridge.config import read_toml
from gradbridge.core import data
from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments import grid as grids
from gradbridge.experiments import loader, report, runner, store
from gradbridge.experiments.api import Tolerances
from gradbridge.experiments.record import Results, RunRecord


def grid_of(experiments: tuple[str, ...] = ("linalg", "regression"),
            backends: tuple[str, ...] = ("numpy",), epochs: int = 5,
            named: bool = False) -> grids.Grid:
    settings = {name: loader.load(name).settings({"epochs": epochs} if name == "regression"
                                                 else {}) for name in experiments}
    return grids.Grid(experiments, backends, ("cpu",), ("float64",), settings, named)


def start(directory: Path, grid: grids.Grid) -> Results:
    runner.prepare(directory, grid, resume=False, argv=["test"])
    return runner.run_grid(grid, directory)


def resume(directory: Path, grid: grids.Grid) -> tuple[Results, list[runner.Event]]:
    events: list[runner.Event] = []
    runner.prepare(directory, None, resume=True, argv=["test", "--resume"])
    return runner.run_grid(grid, directory, on_event=events.append), events


class FailingGradients(NumpyBackend):
    """NumPy whose autodiff raises: every gradient run ends in an error."""

    name = "failing"

    def value_and_grad(self, fn, argnums=0):
        raise RuntimeError("no gradients today")


@pytest.fixture
def ghost() -> Iterator[str]:
    """A registered backend whose framework is not installed: it can never load."""
    gb.register_backend("ghost", "ghost_framework_that_is_not_installed.backend:Ghost",
                        install="pip install ghost-framework")
    yield "ghost"
    gb.unregister_backend("ghost")


# ------------------------------------------------------------- failures are failures


def test_a_named_backend_that_cannot_load_is_an_error(tmp_path: Path, ghost: str) -> None:
    results = start(tmp_path, grid_of(("linalg",), ("numpy", ghost), named=True))
    run = next(r for r in results.runs if r.backend == ghost)
    assert run.status == "error"
    assert "the ghost backend cannot load" in run.reason
    assert "pip install ghost-framework" in run.reason
    assert report.failures(results) == report.errors(results) == [
        f"linalg on ghost cpu float64: error: {run.reason}"]


def test_an_unnamed_backend_that_cannot_load_is_skipped(tmp_path: Path, ghost: str) -> None:
    results = start(tmp_path, grid_of(("linalg",), ("numpy", ghost)))
    assert [r.status for r in results.runs] == ["ok", "skipped"]
    assert report.failures(results) == []  # the default grid tries every known backend


def test_a_grid_in_which_nothing_ran_fails_without_check(tmp_path: Path, ghost: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    code = execute(grid_of(("linalg",), (ghost,)), out=str(tmp_path), resume=False,
                   check=False, quiet=True)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("failed: nothing ran: none of the grid's 1 runs finished "
                          "(1 skipped, 0 in error)")
    assert str(tmp_path / "report.md") in err


def test_a_skipped_run_of_a_named_backend_fails_the_check() -> None:
    skipped = RunRecord("linalg", "torch", "mps", "float64", status="skipped",
                        reason="torch on mps does not support float64")
    ok = RunRecord("linalg", "torch", "mps", "float32")
    grid = grid_of(("linalg",), ("torch",), named=True)
    results = Results({**grid.as_dict(), "dtypes": ["float32", "float64"]}, grid.loaded(),
                      runs=[ok, skipped])
    assert report.failures(results) == ["linalg on torch mps float64: skipped although torch "
                                        "was named: torch on mps does not support float64"]
    assert report.errors(results) == []  # a check failure, not an error
    results.grid["backends_named"] = False
    assert report.failures(results) == []


def test_errored_runs_exit_1_with_one_line_even_quiet(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    gb.register_backend("failing", FailingGradients)
    try:
        code = execute(grid_of(("linalg", "mlp_gradients"), ("failing",), named=True),
                       out=str(tmp_path), resume=False, check=False, quiet=True)
    finally:
        gb.unregister_backend("failing")
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    # the reason names the experiment's own line the error passed through
    assert re.fullmatch(r"failed: mlp_gradients on failing cpu float64: error: RuntimeError: no "
                        r"gradients today \(mlp_gradients\.py:\d+\); see "
                        + re.escape(str(tmp_path / "report.md")) + "\n", captured.err)


# ------------------------------------------------------------------ memory up front


def test_sizes_beyond_memory_are_refused_before_anything_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = grids.Grid(("timing",), ("numpy",), ("cpu",), ("float64",),
                       {"timing": {**grid_of(("timing",)).settings["timing"],
                                   "sizes": [100, 10**12]}})
    with pytest.raises(InvalidArgument, match=(
            r"timing.sizes N = 1,000,000,000,000 \(128 bytes per data point\) needs about "
            r"116\.4 TiB of memory, more than this machine's .* of physical memory; "
            "choose a smaller size")):
        runner.prepare(tmp_path / "out", grid, resume=False, argv=[])
    assert not (tmp_path / "out").exists()
    regression = loader.load("regression")
    monkeypatch.setattr(data, "physical_memory", lambda: 100 * 128)
    regression.settings({"n": 100})  # n = 100 points fit exactly
    monkeypatch.setattr(data, "physical_memory", lambda: 100 * 128 - 1)
    with pytest.raises(InvalidArgument, match=r"regression\.n N = 100 \(128 bytes"):
        regression.settings({"n": 100})


# ------------------------------------------------------------------ stored run files


def test_a_run_file_made_with_other_settings_is_redone(tmp_path: Path) -> None:
    start(tmp_path, grid_of(epochs=5))
    kept = (tmp_path / "runs" / "linalg__numpy__cpu__float64.json").read_text()
    # the manifest is rewritten to the 7-epoch grid, as if the run files came from elsewhere
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["grid"] = grid_of(epochs=7).as_dict()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    results, events = resume(tmp_path, grid_of(epochs=7))
    redo = [e for e in events if e.kind == "redo"]
    assert [e.cell.experiment for e in redo] == ["regression"]
    assert redo[0].status == (f"{tmp_path / 'runs' / 'regression__numpy__cpu__float64.json'} "
                              "was made with other settings (epochs: stored 5, given 7); "
                              "running it again")
    regression = next(r for r in results.runs if r.experiment == "regression")
    assert len(regression.outputs["loss"]) == 7 and regression.settings["epochs"] == 7
    assert (tmp_path / "runs" / "linalg__numpy__cpu__float64.json").read_text() == kept


@pytest.mark.parametrize(("junk", "why"), [
    ("[]", "is not a run record of this cell"), ("{", "is unreadable or not valid JSON"),
    ("", "is unreadable or not valid JSON"), ("\xff\xfe", "is unreadable or not valid JSON"),
    ('{"status": "ok"}', "is not a run record of this cell"),
    ('{"experiment": "linalg", "backend": "numpy", "device": "cpu", "dtype": "float64", '
     '"status": "ok", "losses": []}', "is not a run record of this cell"),
])
def test_a_junk_run_file_is_redone(junk: str, why: str, tmp_path: Path) -> None:
    start(tmp_path, grid_of(("linalg",)))
    path = tmp_path / "runs" / "linalg__numpy__cpu__float64.json"
    path.write_text(junk, encoding="latin-1")
    results, events = resume(tmp_path, grid_of(("linalg",)))
    assert [e.status for e in events if e.kind == "redo"] == [f"{path} {why}; running it again"]
    assert [r.status for r in results.runs] == ["ok"]
    assert json.loads(path.read_text())["experiment"] == "linalg"


def test_resuming_another_grid_names_what_differs(tmp_path: Path) -> None:
    start(tmp_path, grid_of(("linalg",), epochs=5))
    other = grid_of(("linalg", "regression"), epochs=50)
    with pytest.raises(InvalidArgument, match=(
            r"another grid \(experiments: stored linalg, given linalg,regression; "
            r"regression.epochs: stored None, given 50.*\)")):
        runner.prepare(tmp_path, other, resume=True, argv=[])


@pytest.mark.parametrize(("text", "what"), [("", "not valid JSON"), ("[]", "no valid grid"),
                                            ('{"grid": {"experiments": 1}}', "no valid grid")])
def test_a_corrupt_manifest_is_named_on_resume(text: str, what: str, tmp_path: Path) -> None:
    start(tmp_path, grid_of(("linalg",)))
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(InvalidArgument, match=(
            f"{tmp_path / 'manifest.json'} is corrupt \\({what}\\), so its comparison cannot "
            "be resumed; start a new one with another --out")):
        runner.prepare(tmp_path, None, resume=True, argv=[])


def test_resume_without_out_never_picks_a_finished_comparison(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = Path("results")
    start(root / "finished", grid_of(("linalg",)))
    runner.prepare(root / "interrupted", grid_of(("linalg",)), resume=False, argv=[])
    os.utime(root / "finished", (2e9, 2e9))  # the finished one is the newest
    assert store.output_directory(None, resume=True) == root / "interrupted"
    resume(root / "interrupted", grid_of(("linalg",)))
    with pytest.raises(InvalidArgument, match=(
            r"found no unfinished comparison: every one in results/ has finished "
            r"\(finished, interrupted\); pass --out DIR")):
        store.output_directory(None, resume=True)


# --------------------------------------------------------------- unwritable paths


@pytest.mark.parametrize(("call", "code", "why"), [
    ("mkdir", errno.EROFS, "read-only file system"),
    ("replace", errno.EROFS, "read-only file system"),
    ("fsync", errno.ENOSPC, "no space left on device"),
    ("open", errno.EACCES, "permission denied"),
])
def test_unwritable_results_name_the_path_and_the_fix(call: str, code: int, why: str,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, fail)  # as root, chmod would not stop the writes
    target = tmp_path / "out" / "results.json"
    where = target.parent if call == "mkdir" else target
    with pytest.raises(InvalidArgument, match=(
            f"^cannot write results to {where}: {why}; choose another --out$")):
        store.atomic_write(target, "{}")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ([] if call == "mkdir" else ["out"])


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("mine")
    with pytest.raises(InvalidArgument, match=(
            f"cannot write results to {out}: it is a file, not a directory; choose another")):
        runner.prepare(out, grid_of(("linalg",)), resume=False, argv=[])
    with pytest.raises(InvalidArgument, match=(
            f"cannot write results to {out / 'deeper'}: a file stands where a directory is "
            "needed; choose another --out")):
        store.make_directory(out / "deeper")
    assert out.read_text() == "mine"


def test_result_files_follow_the_umask(tmp_path: Path) -> None:
    def mode(umask: int) -> int:
        previous = os.umask(umask)
        try:
            store.atomic_write(tmp_path / f"{umask:o}.json", "{}")
        finally:
            os.umask(previous)
        return stat.S_IMODE((tmp_path / f"{umask:o}.json").stat().st_mode)

    assert mode(0o022) == 0o644
    assert mode(0o077) == 0o600
    assert mode(0o002) == 0o664


# ---------------------------------------------------------------------- config files


def test_an_undecodable_config_file_is_named(tmp_path: Path) -> None:
    binary = tmp_path / "config.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InvalidArgument, match=(
            f"{binary} is not a TOML text file \\(byte 0 is not UTF-8\\); give the path of a "
            "UTF-8 TOML file")):
        read_toml(binary)
    with pytest.raises(InvalidArgument, match=f"cannot read config file {tmp_path}: is a dir"):
        read_toml(tmp_path)


def test_tolerances_are_fractions() -> None:
    for value in (0.0, 1.0, 2.5, -1e-4):
        with pytest.raises(InvalidArgument, match=f"tolerance.float32={value!r} is not valid; "
                                                  "expected a relative difference between 0"):
            Tolerances(float32=value)
    assert Tolerances(float64=0.5).float64 == 0.5
