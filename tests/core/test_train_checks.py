"""What ``fit`` refuses or explains before or instead of a confusing failure: sizes beyond
memory (estimated up front), parameters the model needs but was not given, and divergence
caused by unscaled data rather than by the learning rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_backend

from gradbridge.core import data, models, train
from gradbridge.core.backend import Backend, InvalidArgument, TrainingDiverged

X = np.linspace(-1.0, 1.0, 8)
Y = 2.0 * X + 1.0


def test_epochs_beyond_memory_are_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    be = make_backend("numpy", "float64")
    monkeypatch.setattr(data, "physical_memory", lambda: 2**20)
    with pytest.raises(InvalidArgument) as info:
        train.fit(models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y, backend=be,
                  epochs=100_000)
    assert str(info.value) == (
        "epochs=100000 (the loss history) needs about 9.2 MiB of memory, more than this "
        "machine's 1.0 MiB of physical memory; train for fewer epochs")


def test_a_trillion_epochs_fail_at_once_not_with_memory_error() -> None:
    with pytest.raises(InvalidArgument, match=r"epochs=1000000000000 .* TiB of memory"):
        train.fit(models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y,
                  backend=make_backend("numpy", "float64"), epochs=10**12)


def test_generated_data_beyond_memory_are_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"n=100000000000 samples .*choose a smaller n"):
        data.make_linear(10**11, [1.0, 2.0], 0.0)


def test_physical_memory_is_known_here() -> None:
    assert (data.physical_memory() or 0) > 2**28


def test_missing_parameter_is_named_with_the_given_and_needed_ones(backend32: Backend) -> None:
    with pytest.raises(InvalidArgument) as info:
        train.fit(models.linear, "mse", {"w": np.zeros(1)}, X[:, None], Y, backend=backend32,
                  epochs=2)
    assert str(info.value).startswith(
        "params lacks 'b', which the model linear reads; params has 'w'; the model needs "
        "'w', 'b'; add the missing ones")


def test_a_key_error_of_the_model_itself_is_not_blamed_on_params() -> None:
    def broken(be: Backend, params: dict, x: object) -> object:
        return {}["elsewhere"]

    with pytest.raises(KeyError, match="elsewhere"):
        train.fit(broken, "mse", {"w": 0.0}, X, Y, backend=make_backend("numpy", "float64"))


@pytest.mark.parametrize(("scale_x", "scale_y", "where"), [
    (1e6, 1.0, "1e+06 in x[:, 1]"), (1.0, 1e7, "3e+07 in y")])
def test_divergence_of_large_data_says_scale_them(scale_x: float, scale_y: float,
                                                  where: str) -> None:
    x = np.column_stack([X, X * scale_x])
    with pytest.raises(TrainingDiverged) as info:
        train.fit(models.linear, "mse", models.init_linear(2), x, Y * scale_y,
                  backend=make_backend("numpy", "float64"), epochs=20)
    assert f"the data are large, up to {where}: standardize or scale the columns" in \
        info.value.hint
    assert "learning rate" not in str(info.value)


def test_largest_magnitude_names_the_column() -> None:
    x = np.array([[1.0, -9e3], [2.0, 3.0]])
    assert data.largest_magnitude(x, np.array([1.0, 2.0])) == (9e3, "x[:, 1]")
    assert data.largest_magnitude(np.zeros((3, 0)), np.array([1.0, -5.0, 2.0])) == (5.0, "y")


def test_csv_beyond_memory_is_refused_before_reading(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n" + "1.5,2.5\n" * 1000)
    monkeypatch.setattr(data, "physical_memory", lambda: 2**16)
    with pytest.raises(InvalidArgument, match=r"rows\.csv \(7\.8 KiB of CSV\) needs about "
                                              r"93\.8 KiB of memory, more than this machine's "
                                              r"64\.0 KiB"):
        data.load_csv(path)
