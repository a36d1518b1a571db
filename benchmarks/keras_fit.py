"""The Keras 3 contestant: ``model.fit`` on the tutorial's regression, one Keras backend a process.

Keras picks its backend once per process from ``KERAS_BACKEND`` (keras#20918), so the harness
runs this contestant in a fresh subprocess per backend and size; :func:`keras_fit` sets the
variable before Keras is first imported and refuses a process where another backend is loaded.

The model is the tutorial's: ``Dense(1)`` on one feature, weights starting at zero, SGD with the
same learning rate, MSE, ``batch_size=N`` (full batch) and no shuffling, so Keras takes exactly
the gradient-descent steps of the tutorial loop and must reach the same ``w`` and ``b``.
Per-epoch time is read by a callback between ``on_epoch_begin`` and ``on_epoch_end`` (Keras
converts the epoch's logs to Python numbers before ``on_epoch_end``, so the device is idle by
then); the fixed cost of each ``fit`` call (data adapter, callbacks) is left out, in Keras' favour.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import numpy as np
from native import Run, Trainer

BACKENDS = ("jax", "torch")


def _import_keras(backend: str, dtype: np.dtype) -> Any:
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise RuntimeError(
            f"Keras is already loaded with the {loaded.backend.backend()} backend in this "
            f"process; run the {backend} contestant in a fresh process")
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax" and dtype == np.float64:
        os.environ["JAX_ENABLE_X64"] = "1"  # Keras' own float64 on JAX needs x64 switched on
    import keras

    keras.config.set_floatx(str(dtype))
    return keras


def keras_fit(x: np.ndarray, y: np.ndarray, lr: float, backend: str) -> Trainer:
    """``train(epochs)`` runs ``model.fit(x, y, batch_size=N, epochs=epochs)`` from w = b = 0."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; expected one of {BACKENDS}")
    keras = _import_keras(backend, x.dtype)

    class EpochClock(keras.callbacks.Callback):  # type: ignore[name-defined]
        """Seconds spent inside each epoch."""

        def on_train_begin(self, logs: Any = None) -> None:
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    inputs, targets = x.reshape(-1, 1), y.reshape(-1, 1)
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    zeros = [np.zeros_like(w) for w in model.get_weights()]
    calls: list[int] = []

    def train(epochs: int) -> Run:
        model.set_weights(zeros)
        clock = EpochClock()
        history = model.fit(inputs, targets, batch_size=len(inputs), epochs=epochs,
                            shuffle=False, verbose=0, callbacks=[clock])
        # The first epoch of the first call traces (and on JAX compiles) the train step.
        compile_s = 0.0
        if not calls and epochs > 1:
            compile_s = max(0.0, clock.seconds[0] - statistics.median(clock.seconds[1:]))
        calls.append(epochs)
        kernel, bias = model.get_weights()
        return Run(sum(clock.seconds) - compile_s, compile_s,
                   {"w": np.asarray(kernel.item()), "b": np.asarray(bias.item())},
                   np.asarray(history.history["loss"], dtype=np.float64))

    return train
