"""Find an experiment by reference: a built-in name, ``path/file.py:fn`` or ``package.module:fn``.

A user's file is imported once per process (by its resolved path), and only the user's own code
runs; anything wrong with it (missing, a syntax error, an exception while importing, no such
function, a wrong signature) is one :class:`ExperimentError` naming the file and the function.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import traceback
from pathlib import Path
from types import ModuleType

from gradbridge.experiments.api import Experiment, ExperimentError

BUILTIN_PACKAGE = "gradbridge.experiments.builtin"
_files: dict[Path, ModuleType] = {}


def builtin_names() -> list[str]:
    """The built-in experiments, one module each, in the order they are listed and run."""
    from gradbridge.experiments import builtin

    found = {m.name for m in pkgutil.iter_modules(builtin.__path__)}
    return [name for name in builtin.ORDER if name in found] + sorted(found - set(builtin.ORDER))


def canonical(reference: str) -> str:
    """The reference as stored in a grid: file paths made absolute, so a resume finds them."""
    module, _, function = reference.rpartition(":")
    if module.endswith(".py"):
        return f"{Path(module).expanduser().resolve()}:{function}"
    return reference.strip()


def load(reference: str) -> Experiment:
    """The experiment that ``reference`` names; unknown names list the built-in ones."""
    reference = reference.strip()
    if ":" not in reference:
        if reference not in builtin_names():
            raise ExperimentError(
                f"unknown experiment {reference!r}; known experiments: "
                f"{', '.join(builtin_names())}; or name your own as path/file.py:function or "
                "package.module:function")
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{reference}")
        return _function(module, reference, f"built-in experiment {reference}")
    source, _, function = reference.rpartition(":")
    if not source or not function.isidentifier():
        raise ExperimentError(f"experiment {reference!r} is not valid; write path/file.py:function "
                              "or package.module:function")
    if source.endswith(".py"):
        return _function(_import_file(Path(source)), function, source)
    try:
        module = importlib.import_module(source)
    except ImportError as exc:
        raise ExperimentError(f"cannot import module {source} for experiment {function}: {exc}; "
                              "check the name, or give the file as path/file.py:"
                              f"{function}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ExperimentError(f"{source}: importing it raised {_brief(exc)}") from exc
    return _function(module, function, source)


def _import_file(path: Path) -> ModuleType:
    """Import the user's file once (later calls reuse it); its failures become one error."""
    resolved = path.expanduser().resolve()
    if resolved in _files:
        return _files[resolved]
    if not resolved.is_file():
        raise ExperimentError(f"experiment file {path} does not exist"
                              + ("" if resolved.parent.is_dir() else
                                 f" (no directory {resolved.parent})"))
    name = f"gradbridge_user_{abs(hash(str(resolved))):x}_{resolved.stem}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    assert spec is not None and spec.loader is not None  # a .py path always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise ExperimentError(f"{path}: syntax error on line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:  # whatever the user's code raised while importing
        del sys.modules[name]
        raise ExperimentError(f"{path}: importing it raised {_brief(exc)}") from exc
    _files[resolved] = module
    return module


def _function(module: ModuleType, function: str, where: str) -> Experiment:
    if not hasattr(module, function):
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise ExperimentError(f"{where}: no function {function!r}; it defines "
                              f"{', '.join(defined) or 'no functions'}")
    return Experiment.from_function(getattr(module, function), function, where)


def _brief(exc: BaseException) -> str:
    """'ZeroDivisionError: division by zero (line 7)': the exception and the user's line."""
    frames = traceback.extract_tb(exc.__traceback__)
    line = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{line}"
