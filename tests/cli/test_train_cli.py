"""``gradbridge train`` through the real entry point: JSON against independent references,
``--data`` against numpy.linalg.lstsq, the tutorial's printout, and bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKENDS, make_backend
from references import tutorial_loop

from gradbridge.cli import main


def tutorial_reference(n: int = 100, epochs: int = 50, lr: float = 0.1) -> dict:
    """The tutorial's data (legacy seed 42) and loop, in float64 NumPy."""
    legacy = np.random.RandomState(42)
    x = legacy.randn(n)
    y = 3 * x + 2 + legacy.randn(n) * 0.5
    w, b, losses = tutorial_loop(x, y, lr, epochs)
    return {"losses": losses, "w": w, "b": b, "final": float(np.mean((w * x + b - y) ** 2))}


@pytest.mark.parametrize("name", BACKENDS)
def test_json_matches_the_tutorial(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_backend(name, "float64")  # skip (or fail when required) if the framework is absent
    assert main(["train", "--backend", name, "--dtype", "float64", "--epochs", "30",
                 "--n", "60", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ref = tutorial_reference(n=60, epochs=30)
    # float64 against the same arithmetic: 1e-10 relative.
    np.testing.assert_allclose(result["losses"], ref["losses"], rtol=1e-10)
    assert result["params"]["w"] == pytest.approx(ref["w"], rel=1e-10)
    assert result["params"]["b"] == pytest.approx(ref["b"], rel=1e-10)
    assert result["final_loss"] == pytest.approx(ref["final"], rel=1e-10)
    assert {k: result[k] for k in ("backend", "device", "dtype", "epochs")} == {
        "backend": name, "device": "cpu", "dtype": "float64", "epochs": 30}
    assert set(result["timing"]) == {"compile_s", "run_s", "per_epoch_s"}


def test_default_prints_the_tutorial(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--backend", "numpy", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    ref = tutorial_reference()
    epochs = [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ")]
    assert epochs == ["epoch 0", "epoch 10", "epoch 20", "epoch 30", "epoch 40"]
    assert f"epoch 0: loss={ref['losses'][0]:.4f}" in out
    assert f"y = {ref['w']:.2f}*x + {ref['b']:.2f}" in out  # y = 2.93*x + 2.00


def test_data_csv_reaches_the_least_squares_fit(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((80, 2))
    y = x @ np.array([0.4, -1.7]) + 1.1 + 0.2 * rng.standard_normal(80)
    path = tmp_path / "points.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,target", comments="")
    assert main(["train", "--data", str(path), "--backend", "numpy", "--dtype", "float64",
                 "--epochs", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    solution = np.linalg.lstsq(np.column_stack([x, np.ones(80)]), y, rcond=None)[0]
    # savetxt writes 18 significant digits, so the CSV holds the same float64 numbers; 200
    # epochs of GD (contraction ~0.8 per epoch) reach the optimum to far below 1e-8.
    np.testing.assert_allclose(result["params"]["w"], solution[:2], atol=1e-8)
    assert result["params"]["b"] == pytest.approx(solution[2], abs=1e-8)
    assert len(result["losses"]) == 200


@pytest.mark.parametrize(("args", "message"), [
    (["--lr", "0"], "lr=0.0"),
    (["--epochs", "0"], "epochs=0"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--batch-size", "101"], "from 1 to 100"),
])
def test_bad_arguments_exit_2(args: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--backend", "numpy", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_ragged_csv_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("x,y\n1,2\n3\n")
    assert main(["train", "--data", str(path), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3" in err and err.count("\n") == 1


def test_n_with_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("1,2\n3,4\n")
    assert main(["train", "--data", str(path), "--n", "5", "--backend", "numpy"]) == 2
    assert "--n" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "100000000000"], "--n=100000000000 samples needs about"),
    (["--epochs", "1000000000000"], "epochs=1000000000000 (the loss history) needs about"),
])
def test_sizes_beyond_memory_exit_2_before_allocating(args: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--backend", "numpy", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}") and "of physical memory" in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_divergence_on_unscaled_csv_says_scale_the_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("x,y\n1e200,1\n2e200,2\n3,3\n")
    assert main(["train", "--data", str(path), "--backend", "numpy", "--dtype", "float64",
                 "--json"]) == 2
    err = capsys.readouterr().err
    assert "up to 2e+200 in x[:, 0]: standardize or scale the columns" in err
    assert "lower the learning rate" not in err and err.count("\n") == 1


def test_unknown_backend_in_environment_names_it(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRADBRIDGE_BACKEND", "tensorflow")
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'tensorflow'" in err and "unset GRADBRIDGE_BACKEND" in err


def test_memory_error_no_estimate_foresaw_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from gradbridge.commands import train as train_command

    def exhausted(args: object) -> int:
        raise MemoryError("Unable to allocate 745. GiB")

    monkeypatch.setattr(train_command, "run", exhausted)
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (Unable to allocate 745. GiB); choose smaller")
    assert err.count("\n") == 1
