"""Activations and helpers of neural networks, written once against the namespace.

Each is a pure function ``f(be, x, ...)`` built from operations every backend differentiates,
in a form that neither overflows nor loses precision for large inputs, so the same call gives
the same values and gradients on NumPy, JAX and PyTorch.
"""

from __future__ import annotations

from typing import Any

from gradbridge.core.backend import Array, Backend, invalid

__all__ = ["log_softmax", "one_hot", "relu", "sigmoid", "softmax", "softplus"]


def relu(be: Backend, x: Array) -> Array:
    """max(x, 0); its gradient at 0 is 0, as in torch and JAX."""
    return be.where(x > 0, x, 0.0)


def sigmoid(be: Backend, x: Array) -> Array:
    """1 / (1 + exp(-x)) as exp(-softplus(-x)): no overflow, and full relative precision
    where the result is tiny (1 - tanh would cancel there)."""
    return be.exp(-softplus(be, -x))


def softplus(be: Backend, x: Array) -> Array:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): exact for large |x|."""
    magnitude = be.abs(x)
    return (x + magnitude) * 0.5 + be.log1p(be.exp(-magnitude))


def log_softmax(be: Backend, x: Array, axis: int = -1) -> Array:
    """x - logsumexp(x) along ``axis``: the log of softmax without under- or overflow."""
    return x - be.logsumexp(x, axis=axis, keepdims=True)


def softmax(be: Backend, x: Array, axis: int = -1) -> Array:
    """exp(x) / sum(exp(x)) along ``axis``, through log_softmax (stable for large x)."""
    return be.exp(log_softmax(be, x, axis))


def one_hot(be: Backend, labels: Array, num_classes: int) -> Array:
    """Rows of the identity for integer ``labels`` (any shape): shape ``(*labels.shape,
    num_classes)`` in the backend's float dtype."""
    namespace: Any = be
    if not namespace.isdtype(labels.dtype, "integral"):
        raise invalid("labels", f"an array of {labels.dtype}", "integer class labels")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise invalid("num_classes", num_classes, "an integer >= 1")
    classes = namespace.arange(num_classes, dtype=labels.dtype)
    hits = namespace.expand_dims(labels, axis=-1) == classes
    return namespace.astype(hits, namespace.default_float)
