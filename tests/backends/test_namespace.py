"""Every backend is an Array API 2024.12 namespace: every name of core/ops.py, the standard's
default dtypes and devices with the backend's policy, and the issue's own example. References
are NumPy (float64) and the standard's rules, not the code under test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gradbridge.core import ops
from gradbridge.core.backend import Backend


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1].removesuffix("'>")


def test_every_function_of_the_table_is_there(backend: Backend) -> None:
    be: Any = backend
    missing = [name for name in ops.names(ops.MAIN) if not callable(getattr(be, name, None))]
    missing += [f"linalg.{name}" for name in ops.names(ops.LINALG)
                if not callable(getattr(be.linalg, name, None))]
    missing += [name for name in (*ops.DTYPES, *ops.CONSTANTS) if not hasattr(be, name)]
    assert not missing, f"{be.name} lacks {', '.join(missing)}"
    assert be.__array_api_version__ == "2024.12" and be.__name__ == f"gradbridge.{be.name}"


def test_default_dtypes_are_the_backends_policy(backend: Backend) -> None:
    be: Any = backend
    defaults = be.__array_namespace_info__().default_dtypes()
    assert _dtype_name(defaults["real floating"]) == be.dtype
    assert _dtype_name(defaults["integral"]) == "int64"
    complex_name = "complex128" if be.dtype == "float64" else "complex64"
    assert _dtype_name(defaults["complex floating"]) == complex_name


@pytest.mark.parametrize(("make", "kind"), [
    (lambda be: be.zeros(3), "float"), (lambda be: be.ones((2, 2)), "float"),
    (lambda be: be.empty(2), "float"), (lambda be: be.eye(3), "float"),
    (lambda be: be.linspace(0, 1, 5), "float"), (lambda be: be.full(2, 1.5), "float"),
    (lambda be: be.full(2, 3), "int64"), (lambda be: be.full(2, True), "bool"),
    (lambda be: be.arange(4), "int64"), (lambda be: be.arange(0.0, 1.0, 0.25), "float"),
    (lambda be: be.asarray([1.0, 2.0]), "float"), (lambda be: be.asarray([1, 2]), "int64"),
    (lambda be: be.asarray(2.5), "float"), (lambda be: be.asarray([True]), "bool"),
])
def test_creation_functions_default_to_the_standards_dtypes(backend: Backend, make: Any,
                                                           kind: str) -> None:
    """Python floats and float creation take the backend's dtype; integers int64 (the
    standard's default integer under x64), booleans bool."""
    got = _dtype_name(make(backend).dtype)
    assert got == (backend.dtype if kind == "float" else kind)


@pytest.mark.parametrize("ends", [(5,), (2, 11, 3), (5, 0, -2), (0, 2, 0.5), (1.5,), (0, 1.0)])
def test_arange_matches_numpy_in_every_form(backend: Backend, ends: tuple[Any, ...]) -> None:
    """int64 when every end is an int, else the backend's float; the values are np.arange's
    (exact: every value here is a multiple of 0.5, representable in float32)."""
    got = backend.arange(*ends)
    want = np.arange(*ends)
    assert _dtype_name(got.dtype) == ("int64" if want.dtype.kind == "i" else backend.dtype)
    np.testing.assert_array_equal(backend.to_numpy(got), want)


def test_asarray_follows_the_standard_and_from_host_the_policy(backend: Backend) -> None:
    be: Any = backend
    host = np.array([0.1, 0.2])  # float64
    assert _dtype_name(be.asarray(host).dtype) == "float64"  # an input with a dtype keeps it
    assert _dtype_name(be.from_host(host).dtype) == be.dtype  # moved in the policy dtype
    assert _dtype_name(be.asarray(host, dtype=be.float32).dtype) == "float32"
    assert _dtype_name(be.from_host(np.arange(3)).dtype) == "int64"


def test_the_issues_example_runs_the_same_on_every_backend(backend64: Backend) -> None:
    be: Any = backend64
    x = be.linspace(0, 1, 50)
    labels = be.argmax(be.stack([x, 1 - x]), axis=0)
    A = be.eye(3) + 0.1 * be.ones((3, 3))
    solution = be.linalg.solve(A, be.arange(3, dtype=be.float64))
    host_x = np.linspace(0, 1, 50)
    np.testing.assert_array_equal(be.to_numpy(labels), np.argmax([host_x, 1 - host_x], axis=0))
    host_a = np.eye(3) + 0.1
    np.testing.assert_allclose(be.to_numpy(solution), np.linalg.solve(host_a, np.arange(3.0)),
                               rtol=1e-12)  # float64, a 3x3 well-conditioned solve


@pytest.mark.parametrize("name", ["sin", "cumulative_sum", "sort", "std", "argsort", "tile"])
def test_new_functions_match_numpy(backend64: Backend, name: str) -> None:
    be: Any = backend64
    host = np.random.default_rng(1).standard_normal((3, 4))
    calls = {"sin": (lambda xp, a: xp.sin(a), np.sin),
             "cumulative_sum": (lambda xp, a: xp.cumulative_sum(a, axis=1),
                                lambda a: np.cumsum(a, axis=1)),
             "sort": (lambda xp, a: xp.sort(a, axis=0), lambda a: np.sort(a, axis=0)),
             "std": (lambda xp, a: xp.std(a, axis=1, correction=1),
                     lambda a: np.std(a, axis=1, ddof=1)),
             "argsort": (lambda xp, a: xp.argsort(a, axis=1), lambda a: np.argsort(a, axis=1)),
             "tile": (lambda xp, a: xp.tile(a, (2, 1)), lambda a: np.tile(a, (2, 1)))}
    ours, reference = calls[name]
    np.testing.assert_allclose(be.to_numpy(ours(be, be.asarray(host))), reference(host),
                               rtol=1e-12)  # float64: rounding only


def test_the_readme_example_matches_lstsq(backend: Backend) -> None:
    """examples/own_math.py (shown in the README) against numpy.linalg.lstsq on the same data."""
    import importlib.util
    from pathlib import Path

    from conftest import tolerance

    path = Path(__file__).resolve().parents[2] / "examples" / "own_math.py"
    spec = importlib.util.spec_from_file_location("own_math", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    be: Any = backend
    coefficients, rms = module.fit_polynomial(be)
    x = np.linspace(-1.0, 1.0, 200)
    y = np.sin(3.0 * x) + 0.1 * np.random.default_rng(0).normal(size=200)
    design = np.stack([x**k for k in range(4)], axis=1)
    expected, *_ = np.linalg.lstsq(design, y, rcond=None)
    # The normal equations square the condition number (~30 here): float32 keeps ~1e-4.
    rtol = 1e-10 if be.dtype == "float64" else 1e-3
    np.testing.assert_allclose(be.to_numpy(coefficients), expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(float(be.to_numpy(rms)),
                               np.sqrt(np.mean((y - design @ expected) ** 2)),
                               rtol=max(rtol, tolerance(be)))


def test_fft_frequencies_take_the_backend_dtype(backend: Backend) -> None:
    be: Any = backend
    got = be.fft.fftfreq(4, d=0.5)
    assert _dtype_name(got.dtype) == be.dtype
    np.testing.assert_allclose(be.to_numpy(got), np.fft.fftfreq(4, d=0.5))  # exact in binary
    assert _dtype_name(be.fft.rfftfreq(5).dtype) == be.dtype
