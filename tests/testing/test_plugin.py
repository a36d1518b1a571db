"""The pytest plugin, run as a user would: a subprocess pytest over a test file of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_TEST = '''
import gradbridge as gb


def test_dot_is_the_tutorials(gb_backend):
    x = gb_backend.asarray([1.0, 2.0, 3.0])
    w = gb_backend.asarray([0.5, 0.3, 0.2])
    gb.testing.assert_close(gb_backend.dot(x, w), gb_backend.asarray(1.7))


def test_without_the_fixture():
    pass
'''


def _pytest(tmp_path: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest over the user's file in a fresh interpreter; GRADBRIDGE_* from ``env`` only."""
    (tmp_path / "test_user.py").write_text(USER_TEST)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRADBRIDGE_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rs", str(tmp_path / "test_user.py"), *options],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**clean, **env}, check=False)


def test_the_fixture_runs_every_backend_and_dtype_with_readable_ids(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--collect-only", "--gb-devices", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    expected = {f"test_dot_is_the_tutorials[{b}-cpu-{d}]"
                for b in ("numpy", "jax", "torch") for d in ("float32", "float64")}
    assert expected <= ids and "test_without_the_fixture" in ids


def test_options_narrow_the_grid_and_the_cases_pass(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--gb-backends", "numpy,torch", "--gb-dtypes", "float64",
                   "--gb-devices", "cpu", "-rA")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {line.split("::")[-1] for line in done.stdout.splitlines()
              if line.startswith("PASSED")}
    assert passed == {"test_dot_is_the_tutorials[numpy-cpu-float64]",
                      "test_dot_is_the_tutorials[torch-cpu-float64]", "test_without_the_fixture"}


def test_an_unknown_name_in_an_option_is_a_usage_error(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--gb-backends", "numpy,tensorflo")
    assert done.returncode == 4  # pytest's usage error
    assert "--gb-backends: unknown tensorflo; known: numpy, jax, torch" in done.stderr


def test_a_missing_device_skips_and_a_required_backend_that_cannot_load_fails(
        tmp_path: Path) -> None:
    skipped = _pytest(tmp_path, "--gb-backends", "numpy", "--gb-devices", "cuda")
    assert skipped.returncode == 0 and "no cuda device for numpy here" in skipped.stdout
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "broken_backend.py").write_text("raise ImportError('no such framework')\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        import gradbridge as gb
        gb.register_backend("broken", "broken_backend:Backend", requires="broken_backend")
    """))
    env = {"PYTHONPATH": str(plugin_dir)}
    required = _pytest(tmp_path, "--gb-backends", "broken", "--gb-dtypes", "float64",
                       "--gb-devices", "cpu", GRADBRIDGE_REQUIRE_BACKENDS="broken", **env)
    assert required.returncode == 1
    assert "GRADBRIDGE_REQUIRE_BACKENDS names broken, which cannot load here" in required.stdout
    optional = _pytest(tmp_path, "--gb-backends", "broken", "--gb-dtypes", "float64",
                       "--gb-devices", "cpu", **env)
    assert optional.returncode == 0 and "broken not available" in optional.stdout


def test_the_plugin_imports_no_framework_until_used(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(textwrap.dedent("""
        import sys

        def test_plain():
            assert "jax" not in sys.modules and "torch" not in sys.modules
    """))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRADBRIDGE_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           str(tmp_path / "test_plain.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env=clean, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run([sys.executable, "-m", "pytest", "--trace-config", "--co", "-q",
                             str(tmp_path / "test_plain.py")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env=clean, check=False)
    assert "gradbridge.testing.plugin" in listed.stdout  # loaded through the entry point


@pytest.mark.parametrize("option", ["--gb-dtypes", "--gb-devices"])
def test_an_empty_option_is_a_usage_error(tmp_path: Path, option: str) -> None:
    done = _pytest(tmp_path, option, ",")
    assert done.returncode == 4 and f"{option} needs at least one value" in done.stderr
