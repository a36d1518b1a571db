"""Your own code tested on every backend x dtype by gradbridge's pytest fixture:
``pytest examples/test_my_experiment.py`` (ids such as ``torch-cpu-float32``)."""

from my_experiment import damped_spring

import gradbridge as gb


def test_damped_spring_agrees_with_numpy_float64(gb_backend):
    mine = gb_backend.to_numpy(damped_spring(gb_backend, steps=50)["position"])
    ref = damped_spring(gb.get_backend("numpy", dtype="float64"), steps=50)["position"]
    gb.testing.assert_close(mine.astype("float64"), ref, rtol=1e-4, atol=1e-6)
