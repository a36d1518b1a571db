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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gradbridge.core.backend import (
    Backend,
    InvalidArgument,
    normalize_device,
    normalize_dtype,
)
from gradbridge.core.registry import load_backend_class, spec_for

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


def resolve(backend: str | None = None, device: str | None = None,
            dtype: str | None = None) -> Selection:
    """Resolve each of backend/device/dtype by the precedence above, remembering the source."""
    explicit = {"backend": backend, "device": device, "dtype": dtype}
    context = _context.get()
    file_values, file_path = _read_config_file(Path.cwd())
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for field in FIELDS:
        layers = [
            (explicit[field], "argument"),
            (context.get(field), "use_backend context"),
            (os.environ.get(ENV_VARS[field]) or None, f"environment {ENV_VARS[field]}"),
            (file_values.get(field), f"config file {file_path}"),
            (DEFAULTS[field], "default"),
        ]
        value, source = next((v, s) for v, s in layers if v is not None)
        try:
            values[field] = _validate(field, value)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc} (from {source})") from exc
        sources[field] = source
    return Selection(values["backend"], values["device"], values["dtype"], sources)


def get_backend(name: str | None = None, *, device: str | None = None,
                dtype: str | None = None) -> Backend:
    """The backend to compute with; each part resolved by the precedence in this module.

    Instances are cached per (backend, device, dtype), so calling this at the edge of a
    program is cheap; hold the result instead of calling it inside hot loops.
    """
    selection = resolve(name, device, dtype)
    key = (selection.backend, selection.device, selection.dtype)
    if key not in _instances:
        cls = load_backend_class(selection.backend)
        _instances[key] = cls(device=selection.device, dtype=selection.dtype)
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
    merged = {**_context.get(), **{k: _validate(k, v) for k, v in given.items() if v is not None}}
    token = _context.set(merged)
    try:
        backend = get_backend()
        with backend.scope():
            yield backend
    finally:
        _context.reset(token)
