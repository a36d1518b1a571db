"""Backend selection: each precedence layer, the source it reports, isolation, and its errors.

Precedence under test (DESIGN.md section 3): argument > innermost ``use_backend`` context >
``GRADBRIDGE_*`` environment > ``gradbridge.toml`` > ``[tool.gradbridge]`` in pyproject.toml >
defaults. Every test runs in an empty temporary directory with the environment variables
removed, so neither the repository's own files nor the caller's shell can leak in.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import gradbridge as gb
from gradbridge import config
from gradbridge.core.backend import BackendBase

ENV_VARS = ("GRADBRIDGE_BACKEND", "GRADBRIDGE_DEVICE", "GRADBRIDGE_DTYPE")


class _StubBackend(BackendBase):
    """A backend with no operations: selection only needs something constructible."""

    @classmethod
    def framework_version(cls) -> str:
        return "0"


class AlphaBackend(_StubBackend):
    name = "alpha"


class BetaBackend(_StubBackend):
    name = "beta"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Empty working directory, no GRADBRIDGE_* variables, two stub backends registered."""
    monkeypatch.chdir(tmp_path)
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    gb.register_backend("alpha", AlphaBackend)
    gb.register_backend("beta", BetaBackend)
    yield tmp_path
    gb.unregister_backend("alpha")
    gb.unregister_backend("beta")


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ each layer alone


def test_defaults_when_nothing_is_set() -> None:
    selection = gb.resolve()
    assert (selection.backend, selection.device, selection.dtype) == ("numpy", "cpu", "float32")
    assert dict(selection.sources) == {f: "default" for f in ("backend", "device", "dtype")}


def test_pyproject_tool_table_is_read(isolated: Path) -> None:
    path = _write(isolated / "pyproject.toml",
                  '[project]\nname = "x"\n\n[tool.gradbridge]\nbackend = "beta"\n'
                  'dtype = "float64"\n')
    selection = gb.resolve()
    assert (selection.backend, selection.dtype, selection.device) == ("beta", "float64", "cpu")
    assert selection.sources["backend"] == f"config file {path}"
    assert selection.sources["dtype"] == f"config file {path}"
    assert selection.sources["device"] == "default"


def test_pyproject_without_tool_table_is_ignored(isolated: Path) -> None:
    _write(isolated / "pyproject.toml", '[project]\nname = "x"\n')
    assert dict(gb.resolve().sources)["backend"] == "default"


@pytest.mark.parametrize("text", ['backend = "alpha"\n', '[gradbridge]\nbackend = "alpha"\n'],
                         ids=["top-level", "table"])
def test_gradbridge_toml_is_read(isolated: Path, text: str) -> None:
    path = _write(isolated / "gradbridge.toml", text)
    selection = gb.resolve()
    assert selection.backend == "alpha"
    assert selection.sources["backend"] == f"config file {path}"


def test_gradbridge_toml_beats_pyproject(isolated: Path) -> None:
    _write(isolated / "pyproject.toml", '[tool.gradbridge]\nbackend = "beta"\n')
    path = _write(isolated / "gradbridge.toml", 'backend = "alpha"\n')
    selection = gb.resolve()
    assert selection.backend == "alpha"
    assert selection.sources["backend"] == f"config file {path}"


def test_environment_beats_config_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(isolated / "gradbridge.toml", 'backend = "alpha"\ndtype = "float64"\n')
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "beta")
    monkeypatch.setenv("GRADBRIDGE_DEVICE", "gpu")
    selection = gb.resolve()
    assert selection.backend == "beta"
    assert selection.sources["backend"] == "environment GRADBRIDGE_BACKEND"
    # 'gpu' is an alias: resolve() spells it canonically without needing a GPU to exist.
    assert selection.device == "cuda:0"
    assert selection.sources["device"] == "environment GRADBRIDGE_DEVICE"
    # dtype is not in the environment, so the file still supplies it.
    assert selection.dtype == "float64"
    assert selection.sources["dtype"].startswith("config file ")


def test_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "")
    assert gb.resolve().sources["backend"] == "default"


def test_context_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "beta")
    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float64")
    with gb.use_backend("alpha") as be:
        assert isinstance(be, AlphaBackend)
        selection = gb.resolve()
        assert selection.backend == "alpha"
        assert selection.sources["backend"] == "use_backend context"
        assert selection.dtype == "float64"
        assert selection.sources["dtype"] == "environment GRADBRIDGE_DTYPE"
    assert gb.resolve().backend == "beta"


def test_argument_beats_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float64")
    with gb.use_backend("alpha", dtype="float32"):
        selection = gb.resolve("beta", dtype="float64")
        assert (selection.backend, selection.dtype) == ("beta", "float64")
        assert selection.sources["backend"] == selection.sources["dtype"] == "argument"
        assert selection.sources["device"] == "default"
        be = gb.get_backend("beta")
        assert isinstance(be, BetaBackend)
        assert be.dtype == "float32"  # the context's dtype, not the environment's


# ---------------------------------------------------------------------------- contexts


def test_nested_contexts_override_only_what_they_name() -> None:
    with gb.use_backend("alpha", dtype="float64"):
        with gb.use_backend(dtype="float32") as inner:
            assert (inner.name, inner.dtype) == ("alpha", "float32")
            with gb.use_backend("beta") as innermost:
                assert (innermost.name, innermost.dtype) == ("beta", "float32")
        outer = gb.resolve()
        assert (outer.backend, outer.dtype) == ("alpha", "float64")
    assert dict(gb.resolve().sources)["backend"] == "default"


def test_context_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), gb.use_backend("alpha"):
        raise RuntimeError("boom")
    assert gb.resolve().backend == "numpy"


def test_context_in_one_thread_is_invisible_to_another() -> None:
    inside = threading.Barrier(3, timeout=10)  # all three threads are in their places
    done = threading.Barrier(3, timeout=10)  # all three have looked; contexts may now close
    seen: dict[str, str] = {}
    errors: list[BaseException] = []

    def look(label: str, context: str | None) -> None:
        try:
            with gb.use_backend(context) if context else contextlib.nullcontext():
                inside.wait()
                seen[label] = gb.resolve().backend
                done.wait()
        except BaseException as exc:  # a thread cannot fail the test itself: report below
            errors.append(exc)

    threads = [threading.Thread(target=look, args=args)
               for args in (("alpha", "alpha"), ("beta", "beta"), ("outside", None))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    assert seen == {"alpha": "alpha", "beta": "beta", "outside": "numpy"}
    assert gb.resolve().backend == "numpy"


def test_context_in_one_async_task_is_invisible_to_another() -> None:
    async def main() -> tuple[str, ...]:
        entered = {"alpha": asyncio.Event(), "beta": asyncio.Event()}

        async def in_context(name: str, other: str) -> str:
            with gb.use_backend(name):
                entered[name].set()
                await entered[other].wait()  # the other task is inside its own context now
                return gb.resolve().backend

        async def outside() -> str:
            await entered["alpha"].wait()
            await entered["beta"].wait()
            return gb.resolve().backend

        return tuple(await asyncio.gather(in_context("alpha", "beta"),
                                          in_context("beta", "alpha"), outside()))

    assert asyncio.run(main()) == ("alpha", "beta", "numpy")


# ------------------------------------------------------------------------------ errors


def test_unknown_key_in_config_file_lists_valid_keys(isolated: Path) -> None:
    _write(isolated / "gradbridge.toml", 'backnd = "alpha"\n')
    with pytest.raises(gb.InvalidArgument) as info:
        gb.resolve()
    message = str(info.value)
    assert "backnd" in message
    assert all(key in message for key in ("backend", "device", "dtype"))
    assert "gradbridge.toml" in message


def test_unknown_key_in_pyproject_table_is_an_error(isolated: Path) -> None:
    _write(isolated / "pyproject.toml", '[tool.gradbridge]\nprecision = "float64"\n')
    with pytest.raises(gb.InvalidArgument, match="precision"):
        gb.resolve()


def test_invalid_toml_names_the_file(isolated: Path) -> None:
    _write(isolated / "gradbridge.toml", "backend = \n")
    with pytest.raises(gb.InvalidArgument) as info:
        gb.resolve()
    assert "gradbridge.toml" in str(info.value)
    assert "TOML" in str(info.value)


@pytest.mark.parametrize("where", ["argument", "environment", "context"])
def test_unknown_backend_lists_the_known_ones(where: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(gb.BackendNotFound) as info:
        if where == "argument":
            gb.get_backend("tensorflow")
        elif where == "environment":
            monkeypatch.setenv("GRADBRIDGE_BACKEND", "tensorflow")
            gb.resolve()
        else:
            with gb.use_backend("tensorflow"):
                pass
    message = str(info.value)
    assert "tensorflow" in message
    assert all(name in message for name in ("numpy", "jax", "torch"))


def test_bad_dtype_names_value_and_accepted_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(gb.InvalidArgument) as info:
        gb.resolve(dtype="float16")
    message = str(info.value)
    assert all(word in message for word in ("float16", "float32", "float64"))

    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float16")
    with pytest.raises(gb.InvalidArgument) as info:
        gb.resolve()
    assert "GRADBRIDGE_DTYPE" in str(info.value)  # says where the bad value came from


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda:-1"])
def test_bad_device_string_is_rejected(device: str) -> None:
    with pytest.raises(gb.InvalidArgument) as info:
        gb.resolve(device=device)
    assert device in str(info.value)
    assert "cpu" in str(info.value)


@pytest.mark.parametrize("device", ["cpu", "CPU", " cpu ", "gpu", "cuda", "cuda:1", "auto"])
def test_device_spellings(device: str) -> None:
    expected = {"gpu": "cuda:0", "cuda": "cuda:0"}.get(device.strip().lower(),
                                                      device.strip().lower())
    assert gb.resolve(device=device).device == expected


def test_missing_device_lists_the_ones_that_exist() -> None:
    with pytest.raises(gb.DeviceNotAvailable) as info:
        gb.get_backend("alpha", device="cuda")
    assert "cpu" in str(info.value)


def test_numpy_has_no_cuda_device() -> None:
    with pytest.raises(gb.DeviceNotAvailable) as info:
        gb.get_backend("numpy", device="cuda")
    assert "cpu" in str(info.value)
    assert "cuda" in str(info.value)


def test_auto_device_falls_back_to_cpu_without_a_gpu() -> None:
    assert gb.get_backend("alpha", device="auto").device == "cpu"


# ------------------------------------------------------------------------------ caching


def test_get_backend_caches_instances() -> None:
    first = gb.get_backend("numpy", dtype="float64")
    assert gb.get_backend("numpy", dtype="float64") is first
    assert gb.get_backend("NumPy", device="cpu", dtype="float64") is first
    other = gb.get_backend("numpy", dtype="float32")
    assert other is not first
    assert (other.name, other.device, other.dtype) == ("numpy", "cpu", "float32")
    with gb.use_backend("numpy", dtype="float64") as be:
        assert be is first


# ----------------------------------------------- errors name where the value came from


def test_unknown_backend_from_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "tensorflow")
    with pytest.raises(gb.BackendNotFound, match="from environment GRADBRIDGE_BACKEND; "
                                                  "change or unset GRADBRIDGE_BACKEND"):
        gb.get_backend()


def test_unknown_backend_from_config_file_names_the_file(isolated: Path) -> None:
    path = _write(isolated / "pyproject.toml", '[tool.gradbridge]\nbackend = "tensorflow"\n')
    with pytest.raises(gb.BackendNotFound) as info:
        gb.resolve()
    assert f"(from config file {path}; change its backend setting)" in str(info.value)


def test_unavailable_device_from_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_DEVICE", "cuda:7")
    with pytest.raises(gb.DeviceNotAvailable, match="from environment GRADBRIDGE_DEVICE"):
        gb.get_backend("alpha")


def test_diagnose_reports_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADBRIDGE_DTYPE", "float16")
    settings, problems = config.diagnose()
    assert settings["backend"] == {"value": "numpy", "source": "default"}
    assert settings["dtype"]["value"] == "float16"
    assert problems == [settings["dtype"]["error"]] and "GRADBRIDGE_DTYPE" in problems[0]


def test_bad_use_backend_argument_names_it() -> None:
    with pytest.raises(gb.BackendNotFound, match=r"\(from use_backend argument\)"), \
            gb.use_backend("tensorflow"):
        pass
