"""``gradbridge backends``: the listing, the resolved choice with sources, and its error path."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import gradbridge as gb
from gradbridge import cli
from gradbridge.commands import backends as backends_command

FRAMEWORKS = ("numpy", "jax", "torch")


@pytest.fixture(autouse=True)
def _clean_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GRADBRIDGE_* variables and no config file, whatever the caller's shell has."""
    monkeypatch.chdir(tmp_path)
    for var in ("GRADBRIDGE_BACKEND", "GRADBRIDGE_DEVICE", "GRADBRIDGE_DTYPE"):
        monkeypatch.delenv(var, raising=False)


def _json_report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = backends_command.run(argparse.Namespace(json=True))
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    report = _json_report(capsys)
    rows = {row["name"]: row for row in report["backends"]}
    assert set(FRAMEWORKS) <= set(rows)
    for name in FRAMEWORKS:
        installed = importlib.util.find_spec(name) is not None
        assert rows[name]["installed"] is installed
        if installed:
            assert rows[name]["loadable"] is True, rows[name]["reason"]
            assert isinstance(rows[name]["version"], str) and rows[name]["version"]
            assert "cpu" in rows[name]["devices"]


def test_json_shows_defaults_and_their_source(capsys: pytest.CaptureFixture[str]) -> None:
    selected = _json_report(capsys)["selected"]
    assert selected == {
        "backend": {"value": "numpy", "source": "default"},
        "device": {"value": "cpu", "source": "default"},
        "dtype": {"value": "float32", "source": "default"},
    }


def test_json_shows_environment_source(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "torch")
    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float64")
    selected = _json_report(capsys)["selected"]
    assert selected["backend"] == {"value": "torch", "source": "environment GRADBRIDGE_BACKEND"}
    assert selected["dtype"] == {"value": "float64", "source": "environment GRADBRIDGE_DTYPE"}
    assert selected["device"]["source"] == "default"


def test_json_shows_config_file_source(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    (tmp_path / "gradbridge.toml").write_text('backend = "jax"\n')
    selected = _json_report(capsys)["selected"]
    assert selected["backend"]["value"] == "jax"
    assert selected["backend"]["source"] == f"config file {tmp_path / 'gradbridge.toml'}"


def test_table_output_names_each_backend_and_the_choice(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert backends_command.run(argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FRAMEWORKS)
    assert "default" in out


# ----------------------------------------------------- through the full command line


def test_main_backends_json(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "torch")
    assert cli.main(["backends", "--json"]) == 0
    selected = json.loads(capsys.readouterr().out)["selected"]
    assert selected["backend"] == {"value": "torch", "source": "environment GRADBRIDGE_BACKEND"}


def test_main_unknown_backend_in_environment_is_a_one_line_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "tensorflow")
    assert cli.main(["backends", "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "tensorflow" in lines[0] and "numpy" in lines[0]
    assert "environment GRADBRIDGE_BACKEND" in lines[0]
    assert "Traceback" not in captured.err


# --------------------------------------------- a bad setting: shown, with its source


def _run_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["backends", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_bad_backend_setting_is_reported_beside_everything_else(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "tensorflow")
    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float64")
    code, report, err = _run_json(capsys)
    assert code == 2
    assert {row["name"] for row in report["backends"]} >= set(FRAMEWORKS)
    backend = report["selected"]["backend"]
    assert (backend["value"], backend["source"]) == ("tensorflow",
                                                     "environment GRADBRIDGE_BACKEND")
    assert "unknown backend 'tensorflow'" in backend["error"]
    assert "unset GRADBRIDGE_BACKEND" in backend["error"]
    assert report["selected"]["dtype"] == {"value": "float64",
                                           "source": "environment GRADBRIDGE_DTYPE"}
    assert report["problems"] == [backend["error"]]
    assert err == f"error: {backend['error']}\n"


def test_bad_setting_in_config_file_names_the_file(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.gradbridge]\nbackend = "tensorflow"\n'
                                             'dtype = "float16"\n')
    code, report, err = _run_json(capsys)
    assert code == 2
    where = f"config file {tmp_path / 'pyproject.toml'}"
    for field in ("backend", "dtype"):
        assert report["selected"][field]["source"] == where
        assert f"(from {where}; change its {field} setting)" in report["selected"][field]["error"]
    assert len(report["problems"]) == 2 and len(err.splitlines()) == 1


@pytest.mark.parametrize(("text", "problem"), [
    ('backend = "numpy"\ncolour = "blue"\n', "unknown key(s) colour"),
    ("backend = \n", "is not valid TOML"),
])
def test_broken_config_file_still_lists_everything(text: str, problem: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    (tmp_path / "gradbridge.toml").write_text(text)
    code, report, err = _run_json(capsys)
    assert code == 2
    assert {row["name"] for row in report["backends"]} >= set(FRAMEWORKS)
    assert report["selected"]["backend"] == {"value": "numpy", "source": "default"}
    assert problem in report["problems"][0] and "gradbridge.toml" in err


def test_device_the_chosen_backend_lacks_is_a_bad_setting(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_DEVICE", "cuda:7")
    code, report, _ = _run_json(capsys)
    assert code == 2
    device = report["selected"]["device"]
    assert "'cuda:7' is not available to the numpy backend" in device["error"]
    assert device["error"].endswith("(from environment GRADBRIDGE_DEVICE; change or unset "
                                    "GRADBRIDGE_DEVICE)")
    assert "error" not in report["selected"]["backend"]


def test_chosen_backend_that_cannot_load_is_a_bad_setting(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    gb.register_backend("ghostly", "ghost_pkg_missing.mod:Ghost", install="pip install ghost")
    try:
        monkeypatch.setenv("GRADBRIDGE_BACKEND", "ghostly")
        code, report, _ = _run_json(capsys)
    finally:
        gb.unregister_backend("ghostly")
    assert code == 2
    error = report["selected"]["backend"]["error"]
    assert "pip install ghost" in error and "GRADBRIDGE_BACKEND" in error


def test_table_shows_the_bad_setting(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_DEVICE", "tpu")
    assert cli.main(["backends"]) == 2
    captured = capsys.readouterr()
    assert all(name in captured.out for name in FRAMEWORKS)
    assert "tpu" in captured.out and "invalid" in captured.out
    assert "GRADBRIDGE_DEVICE" in captured.err and "Traceback" not in captured.err


def test_python_dash_m_gradbridge_backends(tmp_path: Path) -> None:
    """The real entry point in a fresh process: exit codes, stdout JSON, stderr one line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRADBRIDGE_")}
    command = [sys.executable, "-m", "gradbridge", "backends", "--json"]
    good = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**base, "GRADBRIDGE_BACKEND": "torch"})
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert {row["name"] for row in report["backends"]} >= set(FRAMEWORKS)
    assert report["selected"]["backend"]["source"] == "environment GRADBRIDGE_BACKEND"

    bad = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                         env={**base, "GRADBRIDGE_BACKEND": "tensorflow"})
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["selected"]["backend"]["value"] == "tensorflow"
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_the_jax_float64_policy_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """DESIGN section 3: x64 on for the process is announced, and ``backends`` shows it."""
    pytest.importorskip("jax")
    assert backends_command.run(argparse.Namespace(json=False)) == 0
    table = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "jax: JAX's x64 mode is turned on for the process" in table
    assert "GRADBRIDGE_JAX_X64=scoped" in table
    rows = {row["name"]: row for row in _json_report(capsys)["backends"]}
    assert any("x64 mode" in note for note in rows["jax"]["notes"])
