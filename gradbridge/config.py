"""Which backend, device and dtype to use, and where each choice came from.

Precedence, highest first: the argument to ``get_backend`` > the innermost ``use_backend``
context (a ``contextvars`` value, so threads and async tasks each see their own) >
``GRADBRIDGE_BACKEND`` / ``GRADBRIDGE_DEVICE`` / ``GRADBRIDGE_DTYPE`` > ``gradbridge.toml`` in
the working directory, or ``[tool.gradbridge]`` in ``pyproject.toml`` > the defaults
(numpy, cpu, float32).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gradbridge.core.backend import (
    Backend,
    BackendNotInstalled,
    DeviceNotAvailable,
    GradbridgeError,
    InvalidArgument,
    normalize_device,
    normalize_dtype,
    resolve_device,
)
from gradbridge.core.registry import BackendInfo, load_backend_class, spec_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FIELDS = ("backend", "device", "dtype")
DEFAULTS: dict[str, str] = {"backend": "numpy", "device": "cpu", "dtype": "float32"}
ENV_VARS: dict[str, str] = {f: f"GRADBRIDGE_{f.upper()}" for f in FIELDS}

_NO_CHOICE: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "gradbridge_selection", default=_NO_CHOICE
)
_instances: dict[tuple[str, str, str], Backend] = {}


@dataclass(frozen=True)
class Selection:
    """The resolved backend, device and dtype, and the source of each (argument, context, ...)."""

    backend: str
    device: str
    dtype: str
    sources: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {f: {"value": getattr(self, f), "source": self.sources[f]} for f in FIELDS}


def _validate(field: str, value: str) -> str:
    if field == "backend":
        return spec_for(value).name
    if field == "device":
        return normalize_device(value)
    return normalize_dtype(value)


def _read_config_file(directory: Path) -> tuple[dict[str, str], str | None]:
    """Settings from gradbridge.toml, else pyproject's [tool.gradbridge]; unknown keys fail."""
    own, pyproject = directory / "gradbridge.toml", directory / "pyproject.toml"
    if own.is_file():
        path, table = own, read_toml(own)
        table = table.get("gradbridge", table)
    elif pyproject.is_file():
        path, table = pyproject, read_toml(pyproject).get("tool", {}).get("gradbridge", {})
        if not table:
            return {}, None
    else:
        return {}, None
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise InvalidArgument(
            f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}"
        )
    return {k: str(v) for k, v in table.items()}, str(path)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (re-read only when it changes); a missing or broken one is an error
    that names the file."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise InvalidArgument(f"config file {str(path)!r} does not exist") from exc
    return _parse_toml(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parse_toml(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path} is not a TOML text file (byte {exc.start} is not UTF-8); "
                              "give the path of a UTF-8 TOML file") from exc
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: "
                              f"{os.strerror(exc.errno or 0).lower()}") from exc


def resolve(backend: str | None = None, device: str | None = None,
            dtype: str | None = None) -> Selection:
    """Resolve each of backend/device/dtype by the precedence above, remembering the source."""
    file_values, file_path = _read_config_file(Path.cwd())
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for field, (value, source) in _choices((backend, device, dtype), file_values,
                                           file_path).items():
        try:
            values[field] = _validate(field, value)
        except GradbridgeError as exc:
            raise _from_source(exc, field, source) from exc
        sources[field] = source
    return Selection(values["backend"], values["device"], values["dtype"], sources)


def diagnose(infos: Sequence[BackendInfo] = ()) -> tuple[dict[str, dict[str, str]], list[str]]:
    """What ``resolve()`` would choose, for ``gradbridge backends``: each setting's value and
    source (and ``error`` when it is bad, also where ``infos`` show the chosen backend cannot
    load or lacks the chosen device), and every problem, instead of raising at the first."""
    problems: list[str] = []
    try:
        file_values, file_path = _read_config_file(Path.cwd())
    except GradbridgeError as exc:
        problems.append(str(exc))
        file_values, file_path = {}, None
    settings: dict[str, dict[str, str]] = {}
    for field, (value, source) in _choices((None, None, None), file_values, file_path).items():
        settings[field] = {"value": value, "source": source}
        try:
            settings[field]["value"] = _validate(field, value)
        except GradbridgeError as exc:
            settings[field]["error"] = str(_from_source(exc, field, source))
            problems.append(settings[field]["error"])
    unusable = _unusable(settings, infos)
    if unusable is not None:
        field, error = unusable
        settings[field]["error"] = str(_from_source(error, field, settings[field]["source"]))
        problems.append(settings[field]["error"])
    return settings, problems


def _unusable(settings: Mapping[str, Mapping[str, str]],
              infos: Sequence[BackendInfo]) -> tuple[str, GradbridgeError] | None:
    """The field and error where the chosen backend cannot load here or lacks the device."""
    info = next((i for i in infos if i.name == settings["backend"]["value"]), None)
    if info is None or "error" in settings["device"]:
        return None
    if not info.loadable:
        return "backend", BackendNotInstalled(info.reason or f"{info.name} cannot load here")
    try:
        resolve_device(settings["device"]["value"], info.devices, info.name)
    except DeviceNotAvailable as exc:
        return "device", exc
    return None


def _choices(explicit: tuple[str | None, ...], file_values: Mapping[str, str],
             file_path: str | None) -> dict[str, tuple[str, str]]:
    """Each field's winning (value, source) by precedence, before validation."""
    context = _context.get()
    chosen = {}
    for field, given in zip(FIELDS, explicit, strict=True):
        layers = [
            (given, "argument"),
            (context.get(field), "use_backend context"),
            (os.environ.get(ENV_VARS[field]) or None, f"environment {ENV_VARS[field]}"),
            (file_values.get(field), f"config file {file_path}"),
            (DEFAULTS[field], "default"),
        ]
        chosen[field] = next((v, s) for v, s in layers if v is not None)
    return chosen


def _from_source(exc: GradbridgeError, field: str, source: str) -> GradbridgeError:
    """The same kind of error, saying where the bad value came from and where to fix it."""
    if source.startswith("environment "):
        where = f"{source}; change or unset {ENV_VARS[field]}"
    elif source.startswith("config file "):
        where = f"{source}; change its {field} setting"
    else:
        where = source
    return type(exc)(f"{exc} (from {where})")


def get_backend(name: str | None = None, *, device: str | None = None,
                dtype: str | None = None) -> Backend:
    """The backend to compute with; each part resolved by the precedence in this module.

    Instances are cached per (backend, device, dtype), so calling this at the edge of a
    program is cheap; hold the result instead of calling it inside hot loops.
    """
    selection = resolve(name, device, dtype)
    key = (selection.backend, selection.device, selection.dtype)
    if key not in _instances:
        try:
            cls = load_backend_class(selection.backend)
        except GradbridgeError as exc:
            raise _from_source(exc, "backend", selection.sources["backend"]) from exc
        try:
            _instances[key] = cls(device=selection.device, dtype=selection.dtype)
        except DeviceNotAvailable as exc:
            raise _from_source(exc, "device", selection.sources["device"]) from exc
    return _instances[key]


@contextlib.contextmanager
def use_backend(name: str | None = None, *, device: str | None = None,
                dtype: str | None = None) -> Iterator[Backend]:
    """Within the block, ``get_backend()`` defaults to these choices (innermost block wins).

    Only the parts given are overridden, so ``use_backend(dtype="float64")`` inside
    ``use_backend("jax")`` means JAX in float64. The choice is per thread and per async task.
    The block also runs inside the backend's ``scope()``, so plain framework code written in
    it (operators on JAX float64 arrays, say) keeps the backend's precision.
    """
    given = {"backend": name, "device": device, "dtype": dtype}
    merged = dict(_context.get())
    for field, value in given.items():
        if value is not None:
            try:
                merged[field] = _validate(field, value)
            except GradbridgeError as exc:
                raise _from_source(exc, field, "use_backend argument") from exc
    token = _context.set(merged)
    try:
        backend = get_backend()
        with backend.scope():
            yield backend
    finally:
        _context.reset(token)
