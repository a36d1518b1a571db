"""The pytest plugin: a ``gb_backend`` fixture over every backend x dtype (x device).

Installed with gradbridge through the ``pytest11`` entry point, so any project's tests can ask
for ``gb_backend``; a test that does not ask costs nothing, and no framework is imported until
a case needs its backend. Case ids read ``torch-cpu-float64``. Options narrow the grid:
``--gb-backends numpy,torch``, ``--gb-dtypes float64``, ``--gb-devices cpu,cuda`` (default
``cpu``, plus ``cuda`` where ``nvidia-smi`` is on the PATH). A backend that cannot load here is
skipped with the reason, or fails the test when ``GRADBRIDGE_REQUIRE_BACKENDS`` names it; an
absent device skips. CUDA cases carry the ``gradbridge_cuda`` marker.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

DTYPES = ("float32", "float64")
REQUIRE_VARIABLE = "GRADBRIDGE_REQUIRE_BACKENDS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradbridge", "gradbridge's gb_backend fixture")
    group.addoption("--gb-backends", metavar="LIST",
                    help="backends of gb_backend, e.g. numpy,torch (default: every known one)")
    group.addoption("--gb-dtypes", metavar="LIST",
                    help="dtypes of gb_backend: float32, float64 (default both)")
    group.addoption("--gb-devices", metavar="LIST",
                    help="devices of gb_backend, e.g. cpu,cuda (default cpu, and cuda where "
                         "nvidia-smi is on the PATH)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the CUDA marker and check the options once, before anything is collected."""
    config.addinivalue_line("markers", "gradbridge_cuda: a gb_backend case on a CUDA device")
    _backends(config), _devices(config), _dtypes(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that asks for ``gb_backend`` over the chosen grid."""
    if "gb_backend" not in metafunc.fixturenames:
        return
    cases = [pytest.param((name, device, dtype), id=f"{name}-{device}-{dtype}",
                          marks=[pytest.mark.gradbridge_cuda] if device != "cpu" else [])
             for name in _backends(metafunc.config) for device in _devices(metafunc.config)
             for dtype in _dtypes(metafunc.config)]
    metafunc.parametrize("gb_backend", cases, indirect=True)


@pytest.fixture
def gb_backend(request: pytest.FixtureRequest) -> Any:
    """The backend of this case, or a skip saying why it cannot run here."""
    import gradbridge as gb

    name, device, dtype = request.param
    try:
        return gb.get_backend(name, device=device, dtype=dtype)
    except gb.DeviceNotAvailable as exc:
        pytest.skip(f"no {device} device for {name} here: {exc}")
    except gb.GradbridgeError as exc:
        if name in required_backends():
            pytest.fail(f"{REQUIRE_VARIABLE} names {name}, which cannot load here: {exc}")
        pytest.skip(f"{name} not available: {exc}")


def required_backends() -> set[str]:
    """Backends that must load (GRADBRIDGE_REQUIRE_BACKENDS, comma-separated)."""
    return {n.strip() for n in os.environ.get(REQUIRE_VARIABLE, "").split(",") if n.strip()}


def _backends(config: pytest.Config) -> list[str]:
    from gradbridge.core.registry import known_specs

    known = tuple(known_specs())
    return _checked(_listed(config, "--gb-backends", known), known, "--gb-backends")


def _dtypes(config: pytest.Config) -> list[str]:
    return _checked(_listed(config, "--gb-dtypes", DTYPES), DTYPES, "--gb-dtypes")


def _devices(config: pytest.Config) -> list[str]:
    found = ("cpu", "cuda") if shutil.which("nvidia-smi") else ("cpu",)
    return _listed(config, "--gb-devices", found)


def _checked(names: list[str], known: tuple[str, ...], option: str) -> list[str]:
    """``names``, or a usage error naming the unknown ones and the valid ones."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise pytest.UsageError(f"{option}: unknown {', '.join(unknown)}; "
                                f"known: {', '.join(known)}")
    return names


def _listed(config: pytest.Config, option: str, default: tuple[str, ...]) -> list[str]:
    """An option's comma-separated values, or the default when it is not given."""
    value = config.getoption(option)
    if value is None:
        return list(default)
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    if not names:
        raise pytest.UsageError(f"{option} needs at least one value, e.g. {','.join(default)}")
    return names
