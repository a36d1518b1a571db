"""Losses as pure functions ``loss(be, prediction, target) -> 0-D array`` (means over samples).

Prediction and target must have the same shape: a silent broadcast of (n,) against (n, 1)
would make an (n, n) loss that trains the wrong thing, so it is an error here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from gradbridge.core.backend import Array, Backend, InvalidArgument

Loss: TypeAlias = Callable[[Backend, Array, Array], Array]


def mse(be: Backend, prediction: Array, target: Array) -> Array:
    """Mean squared error ``mean((prediction - target) ** 2)``, the tutorial's loss.

    Computed by the backend's ``mean_squared_error``, which a backend may fuse into one
    operation (the NumPy backend's autodiff does: fewer array-sized temporaries per step).
    """
    _check_same_shape("mse", prediction, target)
    return be.mean_squared_error(prediction, target)


def binary_cross_entropy(be: Backend, logits: Array, target: Array) -> Array:
    """Mean binary cross-entropy of 0/1 targets given logits ``z``, stable for any ``z``.

    The stable form ``max(z, 0) - z*y + log1p(exp(-|z|))`` never exponentiates a positive
    number. ``|z|`` and ``max(z, 0) = (z + |z|) / 2`` are built from one ``where`` so their
    slopes at z = 0 agree and the gradient there is exactly sigmoid(0) - y = 0.5 - y (zero
    logits are where logistic regression starts from zero weights).
    """
    _check_same_shape("binary_cross_entropy", logits, target)
    magnitude = be.where(logits > 0, logits, -logits)
    softplus = (logits + magnitude) * 0.5 + be.log1p(be.exp(-magnitude))
    return be.mean(softplus - logits * target)


def softmax_cross_entropy(be: Backend, logits: Array, target: Array) -> Array:
    """Mean over rows of ``logsumexp(z) - sum(z * y)`` for logits (n, k) and one-hot targets."""
    _check_same_shape("softmax_cross_entropy", logits, target)
    if len(logits.shape) != 2:
        raise InvalidArgument(
            f"softmax_cross_entropy needs logits of shape (n, classes), got {tuple(logits.shape)}"
        )
    return be.mean(be.logsumexp(logits, axis=1) - be.sum(logits * target, axis=1))


LOSSES: dict[str, Loss] = {
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def get(name: str) -> Loss:
    """The loss called ``name``; an unknown name raises InvalidArgument listing the known ones."""
    if name not in LOSSES:
        raise InvalidArgument(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    return LOSSES[name]


def _check_same_shape(loss: str, prediction: Array, target: Array) -> None:
    if tuple(prediction.shape) != tuple(target.shape):
        raise InvalidArgument(
            f"{loss} needs prediction and target of the same shape; prediction has shape "
            f"{tuple(prediction.shape)}, target has shape {tuple(target.shape)}"
        )
