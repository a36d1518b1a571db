"""Data parallelism in real processes on loopback: two PyTorch gloo ranks started by
``torch.distributed.run`` against one process, two JAX processes (``jax.distributed``) under
``gradbridge launch``, a rank that fails, and ``gradbridge train --parallel data``.

Everything runs in subprocesses, so no process group or launcher variable reaches this test
process. The reference is the same fit in one process (tests/core/test_train* check that one
against NumPy). Each rank computes its half of every batch and the halves' weighted gradients
are summed, which reorders float64 sums only: 1e-12 relative.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
import numpy as np
import gradbridge as gb

rng = np.random.default_rng(5)
x, y = rng.standard_normal((23, 3)), rng.standard_normal(23)
start = {"w": 0.1 * rng.standard_normal(3), "b": 0.5}
fail_at = int(os.environ.get("FAIL_AT_EPOCH", "-1"))

def fail(info):
    if os.environ.get("RANK") == "1" and info.epoch == fail_at:
        raise RuntimeError("rank 1 gives up on purpose")

be = gb.get_backend(os.environ.get("TEST_BACKEND", "torch"), dtype="float64")
out = {}
for batch_size in (None, 6):  # full batch (12 + 11 rows); 6, 6, 6, 5 (3 + 3, ..., 3 + 2)
    h = gb.fit(gb.models.linear, "mse", start, x, y, backend=be, epochs=5, lr=0.05,
               optimizer="adam", batch_size=batch_size, callbacks=[fail],
               parallel=sys.argv[1] or None)
    out[str(batch_size)] = {"losses": h.losses, "w": h.params["w"].tolist(),
                            "b": float(h.params["b"]), "final_loss": h.final_loss,
                            "devices": h.devices, "processes": h.processes,
                            "world_size": h.world_size, "run_s": h.run_s}
with open(os.path.join(sys.argv[2] if len(sys.argv) > 2 else ".",
                       f"rank{os.environ.get('RANK', 'alone')}.json"), "w") as f:
    json.dump(out, f)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "PYTHONPATH": str(ROOT), "GRADBRIDGE_PARALLEL_TIMEOUT": "30", **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("launch")
    script = folder / "train_mine.py"
    script.write_text(SCRIPT)
    alone = subprocess.run([sys.executable, str(script), "", str(folder)], env=_env(),
                           capture_output=True, text=True, timeout=60, check=False)
    assert alone.returncode == 0, alone.stderr
    ranks = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script),
         "data", str(folder)],
        env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert ranks.returncode == 0, ranks.stderr
    return {name: json.loads((folder / f"rank{name}.json").read_text())
            for name in ("alone", "0", "1")}


@pytest.mark.parametrize("batch_size", ["None", "6"])
def test_two_gloo_ranks_equal_one_process(runs: dict[str, Any], batch_size: str) -> None:
    one = runs["alone"][batch_size]
    for rank in ("0", "1"):
        two = runs[rank][batch_size]
        # float64, sums split over two ranks: rounding only, 1e-12 relative
        for key in ("losses", "w", "b", "final_loss"):
            np.testing.assert_allclose(two[key], one[key], rtol=1e-12, atol=1e-14, err_msg=key)
        assert (two["devices"], two["processes"], two["world_size"]) == (["cpu", "cpu"], 2, 2)
    assert runs["0"][batch_size] == runs["1"][batch_size]  # every rank: the same History
    assert (one["devices"], one["processes"], one["world_size"]) == (["cpu"], 1, 1)


def test_jax_two_processes_under_launch_equal_one(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    script = tmp_path / "train_mine.py"
    script.write_text(SCRIPT)
    env = _env(TEST_BACKEND="jax", JAX_PLATFORMS="cpu")
    alone = subprocess.run([sys.executable, str(script), "", str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    launched = subprocess.run(
        [sys.executable, "-m", "gradbridge", "launch", "--nproc", "2", str(script), "data",
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=90, check=False)
    assert alone.returncode == 0 and launched.returncode == 0, launched.stderr
    runs = {name: json.loads((tmp_path / f"rank{name}.json").read_text())
            for name in ("alone", "0", "1")}
    for batch_size in ("None", "6"):
        one = runs["alone"][batch_size]
        for rank in ("0", "1"):
            two = runs[rank][batch_size]
            # float64, XLA's sums split over two processes (gloo): rounding only
            for key in ("losses", "w", "b", "final_loss"):
                np.testing.assert_allclose(two[key], one[key], rtol=1e-12, atol=1e-14)
            assert (two["processes"], two["world_size"]) == (2, 2)
            assert len(two["devices"]) == 2
        assert runs["0"][batch_size] == runs["1"][batch_size]  # the same History everywhere


def test_jax_under_plain_torchrun_says_to_use_gradbridge_launch() -> None:
    pytest.importorskip("jax")
    # the launcher's variables without GRADBRIDGE_JAX_DISTRIBUTED: what torchrun gives a rank
    env = {**_env(JAX_PLATFORMS="cpu"), "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "gradbridge", "train", "--backend", "jax",
                           "--parallel", "data"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "only gradbridge launch starts jax.distributed" in done.stderr


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    script = tmp_path / "train_mine.py"
    script.write_text(SCRIPT)
    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradbridge", "launch", "--nproc", "2", str(script), "data",
         str(tmp_path)],
        env=_env(FAIL_AT_EPOCH="2"), capture_output=True, text=True, timeout=90, check=False)
    elapsed = time.perf_counter() - tic
    assert done.returncode != 0
    assert elapsed < 60  # rank 0 waits in an all-reduce: torchrun must end it, not a hang
    assert "rank 1 gives up on purpose" in done.stderr
    assert "error: the job failed" in done.stderr
    assert not list(tmp_path.glob("rank*.json"))  # neither rank finished


def test_train_cli_under_launch_prints_once_and_equals_one_process() -> None:
    common = ["train", "--backend", "torch", "--dtype", "float64", "--epochs", "6",
              "--n", "40", "--batch-size", "10", "--json"]
    alone = subprocess.run([sys.executable, "-m", "gradbridge", *common], env=_env(),
                           capture_output=True, text=True, timeout=60, check=False)
    launched = subprocess.run(
        [sys.executable, "-m", "gradbridge", "launch", "--nproc", "2", "-m", "gradbridge",
         *common, "--parallel", "data"],
        env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert alone.returncode == 0 and launched.returncode == 0, launched.stderr
    lines = launched.stdout.strip().splitlines()
    assert len(lines) == 1  # only rank 0 prints
    one, two = json.loads(alone.stdout), json.loads(lines[0])
    # float64, batches of 10 split 5 + 5 over two ranks: rounding only
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-12)
    np.testing.assert_allclose([two["params"]["w"], two["params"]["b"]],
                               [one["params"]["w"], one["params"]["b"]], rtol=1e-12)
    assert (two["processes"], two["world_size"]) == (2, 2)


def test_unknown_parallel_flag_lists_the_valid_values(capsys: pytest.CaptureFixture[str]) -> None:
    from gradbridge.cli import main

    assert main(["train", "--backend", "numpy", "--parallel", "model", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "parallel='model' is not valid; expected one of 'data'" in captured.err


def test_torch_without_a_launcher_says_how_to_launch(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from gradbridge.cli import main

    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["train", "--backend", "torch", "--parallel", "data"]) == 2
    err = capsys.readouterr().err
    assert "gradbridge launch --nproc N" in err and err.count("\n") == 1  # one error line
