"""``fit(..., parallel="data")``: its checks, the placement History records, and JAX over four
host devices against one device.

The JAX runs happen in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``, so the flag never reaches this test
process. The reference is the same fit on one device, whose correctness tests/core/test_train*
establish against NumPy; sharding only reorders the sums, so float64 losses and parameters
agree to 1e-12 relative (rounding of a few dozen steps, many orders above float64's 1e-16).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradbridge as gb
from gradbridge.core import parallel
from gradbridge.core.backend import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
X = np.linspace(-1.0, 1.0, 23)
Y = 3.0 * X + 2.0
FOUR = parallel.Placement(("cpu:0", "cpu:1", "cpu:2", "cpu:3"), 1, 4)


def test_numpy_refuses_and_suggests_jax_or_torch() -> None:
    with pytest.raises(InvalidArgument, match=r"numpy backend.*backend='jax'.*backend='torch'"):
        gb.fit(gb.models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y, backend="numpy",
               parallel="data")


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"parallel='model'.*'data', or None"):
        gb.fit(gb.models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y, backend="numpy",
               parallel="model")


@pytest.mark.parametrize(("n", "batch_size", "message"), [
    (23, 3, r"batch_size=3 cannot be split over world_size=4"),
    (3, None, r"full batch of n=3 cannot be split over world_size=4"),
    (18, 8, r"last batch of every epoch has 2 samples \(n=18, batch_size=8\).*world_size=4"),
])
def test_batches_that_cannot_be_split_name_both_numbers(n: int, batch_size: int | None,
                                                        message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parallel.check_batches(FOUR, n, batch_size)


def test_batches_every_shard_can_share_pass() -> None:
    for n, batch_size in ((22, 8), (24, 8), (20, 8), (4, None)):  # last batches 6, 8, 4, 4
        parallel.check_batches(FOUR, n, batch_size)


def test_single_device_history_records_one_device_one_process() -> None:
    history = gb.fit(gb.models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y, backend="numpy",
                     epochs=2)
    assert (history.devices, history.processes, history.world_size) == (["cpu"], 1, 1)


def test_jax_in_this_process_is_a_mesh_of_its_one_device() -> None:
    pytest.importorskip("jax")
    be = gb.get_backend("jax", dtype="float64")
    runs = [gb.fit(gb.models.linear1d, "mse", {"w": 0.0, "b": 0.0}, X, Y, backend=be,
                   epochs=3, batch_size=8, parallel=mode) for mode in (None, "data")]
    # one shard: the same program up to a sharding annotation, so float64 rounding at most
    np.testing.assert_allclose(runs[1].losses, runs[0].losses, rtol=1e-12)
    assert (runs[1].devices, runs[1].processes, runs[1].world_size) == (["cpu:0"], 1, 1)


JAX_SCRIPT = """
import json, sys
import numpy as np
import gradbridge as gb

rng = np.random.default_rng(3)
x, y = rng.standard_normal((23, 3)), rng.standard_normal(23)
start = {"w": 0.1 * rng.standard_normal(3), "b": 0.5}
be = gb.get_backend("jax", dtype="float64")
out = {}
for batch_size in (None, 8, 6):  # full; 8, 8, 7; 6, 6, 6, 5 (uneven shards and last batch)
    for optimizer in ("sgd", "adam"):
        runs = [gb.fit(gb.models.linear, "mse", start, x, y, backend=be, epochs=4,
                       batch_size=batch_size, optimizer=optimizer, lr=0.05, parallel=mode)
                for mode in (None, "data")]
        out[f"{batch_size}-{optimizer}"] = [
            {"losses": h.losses, "w": h.params["w"].tolist(), "b": h.params["b"].tolist(),
             "final_loss": h.final_loss, "devices": h.devices, "processes": h.processes,
             "world_size": h.world_size} for h in runs]
from gradbridge.core import loop, optim, tree
program = list(loop._programs.values())[-1]  # the data-parallel Adam program, used last
params = tree.to_backend(be, start)
carry = program.place((params, optim.get("adam")(0.05).init(be, params)))
xb, yb = program.place((be.from_host(x[:6]), be.from_host(y[:6])))
out["step_hlo"] = program.step.lower(carry, xb, yb).compile().as_text()
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def four_devices() -> dict[str, Any]:
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("case", ["None-sgd", "None-adam", "8-sgd", "8-adam", "6-sgd", "6-adam"])
def test_jax_four_devices_equal_one(four_devices: dict[str, Any], case: str) -> None:
    one, four = four_devices[case]
    # float64, a few steps whose sums XLA splits over 4 shards: rounding only, ~1e-12 relative
    for key in ("losses", "w", "b", "final_loss"):
        np.testing.assert_allclose(four[key], one[key], rtol=1e-12, atol=1e-14, err_msg=key)
    assert one["devices"] == ["cpu"] and one["world_size"] == 1
    assert four["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert (four["processes"], four["world_size"]) == (1, 4)


def test_jax_step_is_split_over_the_devices(four_devices: dict[str, Any]) -> None:
    # equal losses alone would also hold for a replicated (unsplit) step: the compiled step
    # must reduce partial gradients across the 4 devices
    assert "all-reduce" in four_devices["step_hlo"]
