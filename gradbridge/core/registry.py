"""Backend names -> lazy loaders: the built-in three and entry-point plugins.

Nothing here imports a framework until a backend is asked for by name, so that
``import gradbridge`` stays cheap and a missing framework only matters when it is used.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from gradbridge.core.backend import (
    Backend,
    BackendBase,
    BackendNotFound,
    BackendNotInstalled,
    InvalidArgument,
)

ENTRY_POINT_GROUP = "gradbridge.backends"

PROTOCOL_MEMBERS: tuple[str, ...] = ("name", *(m for m in vars(Backend) if not m.startswith("_")))
"""What a class outside BackendBase must define to be a backend (instances add device, dtype)."""


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it needs: enough to list it without importing it."""

    name: str
    target: str  # "package.module:ClassName"
    requires: str  # the framework's import name
    install: str  # the pip line that adds it
    source: str = "built-in"


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``list_backends()``: whether a backend can run here, and if not, why."""

    name: str
    installed: bool
    loadable: bool
    version: str | None
    devices: tuple[str, ...]
    reason: str | None
    install: str
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "installed": self.installed, "loadable": self.loadable,
            "version": self.version, "devices": list(self.devices), "reason": self.reason,
            "install": self.install, "source": self.source, "notes": list(self.notes),
        }


BUILTIN: dict[str, BackendSpec] = {
    "numpy": BackendSpec("numpy", "gradbridge.backends.numpy:NumpyBackend", "numpy",
                         "pip install gradbridge"),
    "jax": BackendSpec("jax", "gradbridge.backends.jax:JaxBackend", "jax",
                       "pip install 'gradbridge[jax]'  (or: pip install jax)"),
    "torch": BackendSpec("torch", "gradbridge.backends.torch:TorchBackend", "torch",
                         "pip install 'gradbridge[torch]'  (or: pip install torch)"),
}

_runtime: dict[str, BackendSpec] = {}
_loaded: dict[str, type] = {}


def register_backend(name: str, target: str | type, *, requires: str = "",
                     install: str = "") -> None:
    """Add a backend at run time (tests, notebooks); ``target`` is a class or 'module:Class'.

    A class must be a backend (see :func:`_check_backend_class`); one defined in a script or a
    notebook (module ``__main__``) registers like any other.
    """
    _check_name(name)
    if not isinstance(target, str):
        _loaded[name] = _check_backend_class(target, f"register_backend({name!r}, ...)")
        target = f"{target.__module__}:{target.__qualname__}"
    _runtime[name] = BackendSpec(name, target, requires or _top_package(target),
                                 install or "(registered at run time)", "run-time")


def _check_backend_class(cls: Any, where: str) -> type:
    """Return ``cls`` if it is a backend (a BackendBase subclass or a class with every
    protocol member), else raise InvalidArgument saying what is missing."""
    if not isinstance(cls, type):
        raise InvalidArgument(f"{where}: {cls!r} is not a class; give a backend class (a "
                              "subclass of gradbridge.core.backend.BackendBase) or "
                              "'module:Class'")
    if issubclass(cls, BackendBase):
        return cls
    missing = [member for member in PROTOCOL_MEMBERS if not hasattr(cls, member)]
    if missing:
        raise InvalidArgument(
            f"{where}: {cls.__module__}.{cls.__qualname__} is not a backend: it is no subclass "
            f"of gradbridge.core.backend.BackendBase and lacks {', '.join(missing[:5])}"
            f"{' and more' if len(missing) > 5 else ''}; subclass BackendBase"
        )
    return cls


def _check_name(name: object) -> None:
    """Backend names are strings; anything else is InvalidArgument naming its value and type."""
    if not isinstance(name, str):
        raise InvalidArgument(f"a backend name must be a string such as 'numpy', got {name!r} "
                              f"of type {type(name).__name__}")


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend`."""
    _runtime.pop(name, None)
    _loaded.pop(name, None)


def _top_package(target: str) -> str:
    """The importable top-level package of a 'package.module:Class' target."""
    return target.partition(":")[0].split(".")[0]


def _plugin_specs() -> dict[str, BackendSpec]:
    """Backends that installed distributions declare; scanned again once sys.path or one of
    its folders changes (an install or uninstall touches the folder), else served from cache."""
    return dict(_plugin_specs_on(tuple((entry, _mtime(entry)) for entry in sys.path)))


def _mtime(folder: str) -> int:
    try:
        return os.stat(folder or ".").st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=4)
def _plugin_specs_on(path: tuple[tuple[str, int], ...]) -> dict[str, BackendSpec]:
    import importlib.metadata  # only here: it pulls in email, csv and more at import time

    specs = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else _top_package(ep.value)
        specs[ep.name] = BackendSpec(ep.name, ep.value, _top_package(ep.value),
                                     f"pip install {dist}", f"plugin ({dist})")
    return specs


def known_specs() -> dict[str, BackendSpec]:
    """Every backend name gradbridge knows: built-in, then plugins, then run-time registrations."""
    return {**BUILTIN, **_plugin_specs(), **_runtime}


def spec_for(name: str) -> BackendSpec:
    """The spec for ``name``, or BackendNotFound listing the names that exist."""
    _check_name(name)
    specs = known_specs()
    key = name.strip().lower()
    if key not in specs:
        raise BackendNotFound(
            f"unknown backend {name!r}; known backends: {', '.join(sorted(specs))}"
        )
    return specs[key]


def load_backend_class(name: str) -> type:
    """Import the backend's module (and so its framework) on first use; cached afterwards."""
    spec = spec_for(name)
    if spec.name in _loaded:
        return _loaded[spec.name]
    if not _importable(spec.requires):
        raise BackendNotInstalled(
            f"the {spec.name} backend needs {spec.requires}, which is not installed; "
            f"install it with: {spec.install}"
        )
    module_name, _, attr = spec.target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BackendNotInstalled(
            f"the {spec.name} backend could not be loaded from {spec.target} ({exc}); "
            f"reinstall it with: {spec.install}"
        ) from exc
    _loaded[spec.name] = _check_backend_class(cls, f"the {spec.name} backend ({spec.target})")
    return cls


def _importable(module: str) -> bool:
    """Whether ``module`` is imported or can be; ``__main__`` of a script or notebook (whose
    ``__spec__`` is None, which makes find_spec raise ValueError) is already imported."""
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def describe(name: str) -> BackendInfo:
    """Load one backend if possible and report version, devices, or why it cannot run."""
    spec = spec_for(name)
    installed = _importable(spec.requires)
    try:
        cls: Any = load_backend_class(name)
        return BackendInfo(spec.name, True, True, cls.framework_version(),
                           tuple(cls.available_devices()), None, spec.install, spec.source,
                           tuple(getattr(cls, "notes", ())))
    except Exception as exc:  # a broken plugin must not break the listing of the others
        return BackendInfo(spec.name, installed, False, None, (), str(exc), spec.install,
                           spec.source)


def list_backends() -> list[BackendInfo]:
    """Every known backend with installed / version / devices / why not loadable.

    This imports each installed framework, since only the framework can say which devices it
    sees; selecting a backend for work never calls it.
    """
    return [describe(name) for name in known_specs()]
