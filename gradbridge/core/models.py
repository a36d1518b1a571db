"""Models as pure functions ``model(be, params, x) -> prediction`` of a dict of parameters.

Pure functions of their inputs, so JAX can compile them and every backend's autodiff can
differentiate them; initial parameters are host NumPy float64 arrays drawn from a seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np

from gradbridge.core.backend import Array, Backend, InvalidArgument, invalid

Params: TypeAlias = dict[str, Any]
Model: TypeAlias = Callable[[Backend, Params, Array], Array]

ACTIVATIONS = ("tanh", "relu")


def linear1d(be: Backend, params: Params, x: Array) -> Array:
    """The tutorial's line ``w * x + b`` for 1-D ``x``; ``w`` and ``b`` are 0-D."""
    return params["w"] * x + params["b"]


def linear(be: Backend, params: Params, x: Array) -> Array:
    """Multivariate linear regression ``x @ w + b``: x (n, d), w (d,), b 0-D -> shape (n,)."""
    return be.matmul(x, params["w"]) + params["b"]


def logistic(be: Backend, params: Params, x: Array) -> Array:
    """Logistic regression's logits ``x @ w + b``; pair with ``losses.binary_cross_entropy``."""
    return linear(be, params, x)


def mlp(activation: str = "tanh") -> Model:
    """A multilayer perceptron over params W0, b0, W1, b1, ... (activation between layers only).

    ``Wi`` has shape (fan_in, fan_out). When the last layer has one output the prediction is
    returned with shape (n,), matching 1-D targets instead of broadcasting against them.
    """
    if activation not in ACTIVATIONS:
        raise invalid("activation", activation, f"one of {', '.join(ACTIVATIONS)}")

    def act(be: Backend, h: Array) -> Array:
        return be.tanh(h) if activation == "tanh" else be.maximum(h, 0.0)

    def forward(be: Backend, params: Params, x: Array) -> Array:
        layers = _num_layers(params)
        h = x
        for i in range(layers):
            h = be.matmul(h, params[f"W{i}"]) + params[f"b{i}"]
            if i < layers - 1:
                h = act(be, h)
        if tuple(h.shape[1:]) == (1,):
            h = be.reshape(h, (h.shape[0],))
        return h

    forward.__name__ = f"mlp_{activation}"
    forward.__doc__ = f"MLP with {activation} between layers (see :func:`mlp`)."
    return forward


def _num_layers(params: Params) -> int:
    layers = 0
    while f"W{layers}" in params:
        layers += 1
    expected = {name for i in range(layers) for name in (f"W{i}", f"b{i}")}
    if layers == 0 or set(params) != expected:
        raise InvalidArgument(
            f"mlp params must be W0, b0, W1, b1, ... (as models.init_mlp makes); "
            f"got {sorted(params)}"
        )
    return layers


def init_linear(d: int) -> Params:
    """Zeros for ``linear``/``logistic`` with ``d`` features: w (d,), b 0-D, host float64."""
    return {"w": np.zeros(d), "b": np.zeros(())}


def init_mlp(sizes: Sequence[int], seed: int = 0) -> Params:
    """Glorot-normal weights and zero biases for layer widths ``sizes`` (input first), float64.

    Drawn on the host from ``numpy.random.default_rng(seed)``, so every backend starts equal.
    """
    if len(sizes) < 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in sizes):
        raise invalid("sizes", list(sizes), "at least two positive integer layer widths")
    rng = np.random.default_rng(seed)
    params: Params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        scale = np.sqrt(2.0 / (fan_in + fan_out))
        params[f"W{i}"] = rng.standard_normal((int(fan_in), int(fan_out))) * scale
        params[f"b{i}"] = np.zeros(int(fan_out))
    return params
