"""gradbridge: the math of machine learning written once, run on NumPy, JAX or PyTorch.

    >>> import gradbridge as gb
    >>> be = gb.get_backend("numpy", dtype="float64")
    >>> float(be.dot(be.asarray([1.0, 2.0, 3.0]), be.asarray([0.5, 0.3, 0.2])))
    1.7

Importing gradbridge imports neither JAX nor PyTorch; a backend's framework loads the first
time that backend is asked for. The learning and probability modules load on first use too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradbridge.config import Selection, get_backend, resolve, use_backend
from gradbridge.core.backend import (
    Backend,
    BackendNotFound,
    BackendNotInstalled,
    Capabilities,
    DeviceNotAvailable,
    GradbridgeError,
    InvalidArgument,
    NotDifferentiable,
    TrainingDiverged,
)
from gradbridge.core.registry import list_backends, register_backend, unregister_backend

__version__ = "0.1.0"

# Public names that live in modules loaded on first access (PEP 562), keeping import cheap.
_LAZY: dict[str, str] = {
    "models": "gradbridge.core.models",
    "nn": "gradbridge.core.nn",
    "losses": "gradbridge.core.losses",
    "optim": "gradbridge.core.optim",
    "probability": "gradbridge.core.probability",
    "random": "gradbridge.core.random",
    "tree": "gradbridge.core.tree",
    "data": "gradbridge.core.data",
    "fit": "gradbridge.core.train",
    "History": "gradbridge.core.history",
    "testing": "gradbridge.testing",
    "experiment": "gradbridge.experiments.api",
    "jacobian": "gradbridge.core.derivatives",
    "hessian": "gradbridge.core.derivatives",
    "hvp": "gradbridge.core.derivatives",
}

if TYPE_CHECKING:  # pragma: no cover
    from gradbridge import testing
    from gradbridge.core import data, losses, models, nn, optim, probability, random, tree
    from gradbridge.core.derivatives import hessian, hvp, jacobian
    from gradbridge.core.history import History
    from gradbridge.core.train import fit
    from gradbridge.experiments.api import experiment


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gradbridge' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "Backend", "BackendNotFound", "BackendNotInstalled", "Capabilities", "DeviceNotAvailable",
    "GradbridgeError", "History", "InvalidArgument", "NotDifferentiable", "Selection",
    "TrainingDiverged",
    "data", "experiment", "fit", "get_backend", "hessian", "hvp", "jacobian", "list_backends",
    "losses", "models", "nn", "optim",
    "probability", "random", "register_backend", "resolve", "testing", "tree",
    "unregister_backend", "use_backend",
]
