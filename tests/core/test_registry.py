"""The backend registry: listing, missing frameworks, entry-point plugins, run-time registration.

Plugins are real: a package and a ``*.dist-info`` folder written into a temporary directory put
on ``sys.path``, found by ``importlib.metadata`` exactly as an installed distribution would be.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import gradbridge as gb
from gradbridge.core import registry
from gradbridge.core.backend import BackendBase

FRAMEWORKS = ("numpy", "jax", "torch")

BACKEND_SOURCE = """
from gradbridge.core.backend import BackendBase


class {cls}(BackendBase):
    name = {name!r}

    @classmethod
    def framework_version(cls):
        return "1.0"
"""


@pytest.fixture(autouse=True)
def _no_selection_from_outside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("GRADBRIDGE_BACKEND", "GRADBRIDGE_DEVICE", "GRADBRIDGE_DTYPE"):
        monkeypatch.delenv(var, raising=False)


def _unique(prefix: str) -> str:
    """A fresh name per test: registry and selection caches outlive a test, names must not clash."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _forget_modules(package: str) -> None:
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]


# ----------------------------------------------------------------------------- listing


def test_list_backends_reports_the_built_in_three() -> None:
    infos = {info.name: info for info in gb.list_backends()}
    assert set(FRAMEWORKS) <= set(infos)
    for name in FRAMEWORKS:
        info = infos[name]
        installed = importlib.util.find_spec(name) is not None  # independent of the registry
        assert info.installed is installed, name
        assert info.source == "built-in"
        assert "pip install" in info.install
        row = info.as_dict()
        json.dumps(row)  # the CLI prints this: it must be plain JSON
        assert set(row) >= {"name", "installed", "loadable", "version", "devices", "reason"}
        if installed:
            assert info.loadable, f"{name}: {info.reason}"
            assert info.reason is None
            assert info.version and importlib.metadata.version(name) in info.version
            assert "cpu" in info.devices
        else:
            assert not info.loadable and info.version is None
            assert "pip install" in (info.reason or "")


def test_unknown_name_is_backend_not_found_listing_known_names() -> None:
    with pytest.raises(gb.BackendNotFound) as info:
        registry.spec_for("mxnet")
    assert isinstance(info.value, LookupError)
    assert all(name in str(info.value) for name in (*FRAMEWORKS, "mxnet"))


# ------------------------------------------------------------------ missing frameworks


def test_missing_builtin_framework_gives_the_pip_line() -> None:
    """A fresh interpreter where torch cannot be found (sys.modules['torch'] = None)."""
    script = textwrap.dedent("""
        import json, sys
        sys.modules["torch"] = None
        import gradbridge as gb
        from gradbridge.core import registry
        try:
            gb.get_backend("torch")
            error = None
        except gb.BackendNotInstalled as exc:
            error = [str(exc), isinstance(exc, ImportError)]
        print(json.dumps({"error": error, "torch": registry.describe("torch").as_dict(),
                          "numpy": registry.describe("numpy").as_dict()}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["error"] is not None, "get_backend('torch') did not raise BackendNotInstalled"
    message, is_import_error = result["error"]
    assert is_import_error
    assert "pip install" in message and "torch" in message
    assert result["torch"]["installed"] is False
    assert result["torch"]["loadable"] is False
    assert "pip install" in result["torch"]["reason"]
    assert result["numpy"]["loadable"] is True  # one missing framework harms no other backend


def test_registered_backend_with_missing_package_raises_not_installed() -> None:
    name = _unique("ghost")
    gb.register_backend(name, "ghost_pkg_missing.mod:GhostBackend", install="pip install ghost")
    try:
        assert name in registry.known_specs()
        with pytest.raises(gb.BackendNotInstalled, match="pip install ghost"):
            gb.get_backend(name)
        info = registry.describe(name)
        assert (info.installed, info.loadable) == (False, False)
        assert "pip install ghost" in (info.reason or "")
    finally:
        gb.unregister_backend(name)


def test_backend_module_failing_to_import_is_reported(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    package = _unique("gbbroken_")
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "impl.py").write_text("import ghost_dependency_missing_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _unique("broken")
    gb.register_backend(name, f"{package}.impl:Broken", install="pip install broken")
    try:
        with pytest.raises(gb.BackendNotInstalled) as info:
            gb.get_backend(name)
        assert "ghost_dependency_missing_xyz" in str(info.value)
        assert "pip install broken" in str(info.value)
    finally:
        gb.unregister_backend(name)
        _forget_modules(package)


# ------------------------------------------------------------------ run-time registration


def test_register_and_unregister_a_class() -> None:
    name = backend_name = _unique("runtime")

    class RuntimeBackend(BackendBase):
        name = backend_name

        @classmethod
        def framework_version(cls) -> str:
            return "2.5"

    gb.register_backend(name, RuntimeBackend)
    try:
        be = gb.get_backend(name, dtype="float64")
        assert isinstance(be, RuntimeBackend)
        assert (be.device, be.dtype) == ("cpu", "float64")
        info = registry.describe(name)
        assert (info.loadable, info.version, info.source) == (True, "2.5", "run-time")
    finally:
        gb.unregister_backend(name)
    assert name not in registry.known_specs()
    with pytest.raises(gb.BackendNotFound):
        gb.get_backend(name)


@pytest.mark.parametrize("layout", ["package.module", "top-level module"])
def test_register_a_lazy_target_string(layout: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    package, name = _unique("gblazy_"), _unique("lazy")
    if layout == "package.module":
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "impl.py").write_text(
            BACKEND_SOURCE.format(cls="LazyBackend", name=name))
        module = f"{package}.impl"
    else:
        (tmp_path / f"{package}.py").write_text(BACKEND_SOURCE.format(cls="LazyBackend",
                                                                     name=name))
        module = package
    monkeypatch.syspath_prepend(str(tmp_path))
    gb.register_backend(name, f"{module}:LazyBackend")
    try:
        assert module not in sys.modules  # registering imports nothing
        be = gb.get_backend(name)
        assert type(be).__module__ == module
        assert type(be).__name__ == "LazyBackend"
    finally:
        gb.unregister_backend(name)
        _forget_modules(package)


# ---------------------------------------------------------------------------- plugins


@dataclass(frozen=True)
class Plugin:
    package: str
    distribution: str
    first: str  # backend name of <package>.first:FirstBackend
    second: str  # backend name of <package>.second:SecondBackend


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugin]:
    """An installed-looking distribution declaring two backends in group gradbridge.backends."""
    package = _unique("gbplug_")
    made = Plugin(package, package.replace("_", "-"), _unique("first"), _unique("second"))
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "first.py").write_text(
        BACKEND_SOURCE.format(cls="FirstBackend", name=made.first))
    (tmp_path / package / "second.py").write_text(
        BACKEND_SOURCE.format(cls="SecondBackend", name=made.second))
    dist_info = tmp_path / f"{package}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {made.distribution}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\n"
        f"{made.first} = {package}.first:FirstBackend\n"
        f"{made.second} = {package}.second:SecondBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield made
    _forget_modules(package)
    importlib.invalidate_caches()


def test_plugin_is_listed_without_being_imported(plugin: Plugin) -> None:
    specs = registry.known_specs()
    assert {plugin.first, plugin.second} <= set(specs)
    assert specs[plugin.first].source == f"plugin ({plugin.distribution})"
    assert plugin.package not in sys.modules
    with pytest.raises(gb.BackendNotFound) as info:
        gb.get_backend("no-such-backend")
    assert plugin.first in str(info.value)


def test_only_the_requested_plugin_is_imported(plugin: Plugin) -> None:
    be = gb.get_backend(plugin.first, dtype="float64")
    assert type(be).__module__ == f"{plugin.package}.first"
    assert (be.name, be.dtype) == (plugin.first, "float64")
    assert f"{plugin.package}.first" in sys.modules
    assert f"{plugin.package}.second" not in sys.modules


def test_plugin_appears_in_list_backends(plugin: Plugin) -> None:
    infos = {info.name: info for info in gb.list_backends()}
    row = infos[plugin.second]
    assert (row.loadable, row.version, row.devices) == (True, "1.0", ("cpu",))
    assert row.source == f"plugin ({plugin.distribution})"
    assert row.install == f"pip install {plugin.distribution}"


def test_plugin_disappears_when_uninstalled(plugin: Plugin, tmp_path: Path) -> None:
    assert plugin.first in registry.known_specs()
    shutil.rmtree(tmp_path / f"{plugin.package}-1.0.dist-info")  # what pip uninstall removes
    importlib.invalidate_caches()
    assert plugin.first not in registry.known_specs()
