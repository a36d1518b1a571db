"""What the registry accepts: backend names are strings, registered classes are backends, and a
class defined in a script or notebook (module ``__main__``) registers and lists like any other."""

from __future__ import annotations

import argparse
import json
import sys
import types
import uuid
from pathlib import Path

import pytest

import gradbridge as gb
from gradbridge.commands import backends as backends_command
from gradbridge.core import registry
from gradbridge.core.backend import BackendBase


@pytest.fixture(autouse=True)
def _no_selection_from_outside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("GRADBRIDGE_BACKEND", "GRADBRIDGE_DEVICE", "GRADBRIDGE_DTYPE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("call", [gb.get_backend, registry.spec_for,
                                  lambda name: gb.register_backend(name, BackendBase)])
def test_a_name_that_is_no_string_is_invalid_argument(call: object) -> None:
    with pytest.raises(gb.InvalidArgument, match="got 123 of type int"):
        call(123)  # type: ignore[operator]


@pytest.mark.parametrize("target", [dict, object, 42])
def test_register_refuses_what_is_not_a_backend(target: object) -> None:
    name = f"notabackend{uuid.uuid4().hex[:8]}"
    with pytest.raises(gb.InvalidArgument, match="BackendBase"):
        gb.register_backend(name, target)  # type: ignore[arg-type]
    assert name not in registry.known_specs()


def test_a_lazy_target_that_is_not_a_backend_is_reported(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"gbnotbackend_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"thing{uuid.uuid4().hex[:8]}"
    gb.register_backend(name, f"{module}:Thing")
    try:
        with pytest.raises(gb.InvalidArgument, match=f"{module}.Thing is not a backend"):
            gb.get_backend(name)
        assert "is not a backend" in (registry.describe(name).reason or "")
    finally:
        gb.unregister_backend(name)
        sys.modules.pop(module, None)


def _main_module_backend(monkeypatch: pytest.MonkeyPatch) -> tuple[str, type]:
    """A backend class of module ``__main__`` as a notebook has it (``__spec__`` None)."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    backend_name = f"notebook{uuid.uuid4().hex[:8]}"

    class NotebookBackend(BackendBase):
        name = backend_name

        @classmethod
        def framework_version(cls) -> str:
            return "0.1"

    NotebookBackend.__module__ = "__main__"
    gb.register_backend(backend_name, NotebookBackend)
    return backend_name, NotebookBackend


def test_a_class_from_main_lists_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    name, cls = _main_module_backend(monkeypatch)
    try:
        rows = {info.name: info for info in gb.list_backends()}
        assert (rows[name].installed, rows[name].loadable, rows[name].version) == \
            (True, True, "0.1")
        assert isinstance(gb.get_backend(name), cls)
    finally:
        gb.unregister_backend(name)


def test_gradbridge_backends_lists_a_class_from_main(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    name, _ = _main_module_backend(monkeypatch)
    try:
        assert backends_command.run(argparse.Namespace(json=True)) == 0
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["backends"]}
        assert rows[name]["loadable"] is True
        assert backends_command.run(argparse.Namespace(json=False)) == 0
        assert name in capsys.readouterr().out
    finally:
        gb.unregister_backend(name)


def test_a_backend_failing_to_describe_itself_does_not_break_the_listing() -> None:
    backend_name = f"faulty{uuid.uuid4().hex[:8]}"

    class FaultyBackend(BackendBase):
        name = backend_name

        @classmethod
        def framework_version(cls) -> str:
            raise TypeError("version lookup broke")

    gb.register_backend(backend_name, FaultyBackend)
    try:
        rows = {info.name: info for info in gb.list_backends()}
    finally:
        gb.unregister_backend(backend_name)
    assert rows[backend_name].loadable is False
    assert "version lookup broke" in (rows[backend_name].reason or "")
    assert rows["numpy"].loadable is True
