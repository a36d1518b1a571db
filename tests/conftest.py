"""Shared fixtures: the conformance suite runs on every backend, dtype and (when present) GPU.

``GRADBRIDGE_REQUIRE_BACKENDS=numpy,jax,torch`` turns a backend that cannot load from a skip
into a failure, so CI cannot pass by quietly skipping a framework.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import gradbridge as gb
from gradbridge.core.backend import Backend, DeviceNotAvailable, GradbridgeError

PLUGIN = "gradbridge.testing.plugin"
if not any(point.value == PLUGIN for point in entry_points(group="pytest11")):
    pytest_plugins = [PLUGIN]  # a checkout run without installing (PYTHONPATH=., make gpu-check)

BACKENDS = ("numpy", "jax", "torch")
REQUIRED = {n.strip() for n in os.environ.get("GRADBRIDGE_REQUIRE_BACKENDS", "").split(",") if n}


def make_backend(name: str, dtype: str, device: str = "cpu") -> Backend:
    """Load a backend for a test; skip (or fail when required) if its framework is missing."""
    try:
        return gb.get_backend(name, device=device, dtype=dtype)
    except DeviceNotAvailable:
        pytest.skip(f"no {device} device for {name} here")
    except GradbridgeError as exc:
        if name in REQUIRED:
            pytest.fail(f"required backend {name} failed to load: {exc}")
        pytest.skip(f"{name} not available: {exc}")


def _params(dtypes: tuple[str, ...]) -> list:
    params = [pytest.param((n, d, "cpu"), id=f"{n}-{d}") for n in BACKENDS for d in dtypes]
    params += [pytest.param((n, d, "cuda"), id=f"{n}-{d}-cuda", marks=pytest.mark.gpu)
               for n in ("jax", "torch") for d in dtypes]
    return params


@pytest.fixture
def backend(gb_backend: Backend) -> Backend:
    """Every backend x dtype (x CUDA where present): gradbridge's own pytest plugin's
    ``gb_backend``, so the plugin users get is the one these tests run on."""
    return gb_backend


@pytest.fixture(params=_params(("float64",)))
def backend64(request: pytest.FixtureRequest) -> Backend:
    """Every backend in float64: for comparisons at ~1e-10."""
    return make_backend(*request.param[:2], device=request.param[2])


@pytest.fixture(params=_params(("float32",)))
def backend32(request: pytest.FixtureRequest) -> Backend:
    """Every backend in float32: for comparisons at ~1e-5."""
    return make_backend(*request.param[:2], device=request.param[2])


def tolerance(be: Backend) -> float:
    """Relative tolerance for comparing a backend's result to a float64 NumPy reference.

    float64 results agree to rounding (1e-10 leaves room for different summation orders);
    float32 results carry ~6e-8 relative rounding per op, so 1e-5 covers short op chains.
    """
    return 1e-10 if be.dtype == "float64" else 1e-5


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """With GRADBRIDGE_REQUIRE_BACKENDS set (CI), a skip is a failure unless the test is `gpu`.

    A skipped backend test would let CI pass without exercising a framework; only the GPU
    tests may skip, on a machine without a GPU.
    """
    outcome = yield
    report = outcome.get_result()
    expected_failure = hasattr(report, "wasxfail")  # a strict xfail is a documented gap, run
    on_gpu = any(item.get_closest_marker(m) for m in ("gpu", "gradbridge_cuda"))
    if REQUIRED and report.skipped and not expected_failure and not on_gpu:
        report.outcome = "failed"
        report.longrepr = f"skipped while GRADBRIDGE_REQUIRE_BACKENDS is set: {report.longrepr}"


@pytest.fixture(scope="module")
def be32(request: pytest.FixtureRequest) -> Any:
    """The test module's BACKEND class in float32, on the CPU (for one backend's own tests)."""
    return request.module.BACKEND(dtype="float32")


@pytest.fixture(scope="module")
def be64(request: pytest.FixtureRequest) -> Any:
    """The test module's BACKEND class in float64, on the CPU."""
    return request.module.BACKEND(dtype="float64")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying why tests were skipped, grouped by reason (GPU tests on a CPU machine)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        grouped = "; ".join(f"{count} {reason}" for reason, count in
                            sorted(reasons.items(), key=lambda item: -item[1]))
        terminalreporter.write_line(f"skipped: {grouped}")


def killed_after_the_first_run(command: list[str], out: Path, cwd: Path,
                               env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a ``compare`` in a subprocess and SIGKILL it as soon as its first run file exists
    in ``out`` (or after 60 s): a comparison cut off part-way, for the resume tests."""
    process = subprocess.Popen(command, env=env, cwd=cwd)
    deadline = time.monotonic() + 60
    while not any((out / "runs").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process
