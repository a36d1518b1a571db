"""Optimizers: trajectories against ``torch.optim`` (an independent implementation) on the
same problem, purity of the update, and validation.

Comparisons are float64 on every backend: the same formulas in a different operation order
agree to ~1e-15 per step; Adam's normalisation m / sqrt(v) can amplify that a little over a
run, so trajectories are compared at 1e-9 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REQUIRED, make_backend

from gradbridge.core import models, optim, train, tree
from gradbridge.core.backend import Backend, InvalidArgument

RNG = np.random.default_rng(8)
X = RNG.standard_normal((50, 2))
Y = X @ np.array([1.2, -0.4]) - 0.6 + 0.1 * RNG.standard_normal(50)
EPOCHS = 30


def torch_module():
    """torch as the reference library; skipped when absent unless torch is a required backend."""
    if "torch" in REQUIRED:
        import torch
        return torch
    return pytest.importorskip("torch")


def torch_reference(make_optimizer) -> tuple[list[float], np.ndarray, float]:
    """Full-batch linear regression trained by a ``torch.optim`` optimizer in float64."""
    torch = torch_module()
    x, y = torch.tensor(X), torch.tensor(Y)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([w, b])
    losses = []
    for _ in range(EPOCHS):
        opt.zero_grad()
        loss = torch.mean((x @ w + b - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, w.detach().numpy().copy(), float(b.detach())


@pytest.mark.parametrize("name", ["adam", "momentum", "sgd"])
def test_trajectory_matches_torch_optim(backend64: Backend, name: str) -> None:
    torch = torch_module()
    candidates: dict[str, optim.Optimizer] = {
        "adam": optim.adam(0.05, b1=0.8, b2=0.99, eps=1e-6),
        "momentum": optim.momentum(0.05, beta=0.7), "sgd": optim.sgd(0.05)}
    ours = candidates[name]
    reference = {
        "adam": lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6),
        "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.7),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    }[name]
    history = train.fit(models.linear, "mse", models.init_linear(2), X, Y, backend=backend64,
                        optimizer=ours, epochs=EPOCHS)
    losses, w, b = torch_reference(reference)
    np.testing.assert_allclose(history.losses, losses, rtol=1e-9)
    np.testing.assert_allclose(history.params["w"], w, rtol=1e-9)
    np.testing.assert_allclose(history.params["b"], b, rtol=1e-9)


def test_adam_state_counts_steps_and_update_is_pure() -> None:
    be = make_backend("numpy", "float64")
    params = tree.to_backend(be, {"w": np.array([1.0, -2.0]), "b": np.array(0.5)})
    grads = tree.to_backend(be, {"w": np.array([0.3, 0.1]), "b": np.array(-1.0)})
    adam = optim.adam(0.1)
    state = adam.init(be, params)
    snapshot = tree.to_numpy(be, {"params": params, "state": state})
    new_params, new_state = adam.update(be, params, grads, state)
    # Inputs untouched (pure), step counted in the state.
    assert all(np.array_equal(a, b) for a, b in zip(
        *(tree.flatten(t)[0] for t in (snapshot, tree.to_numpy(be, {"params": params,
                                                                       "state": state}))),
        strict=True))
    assert float(new_state["step"]) == 1.0
    # Adam's first step moves each coordinate by lr * sign(g) (bias correction makes m/sqrt(v)
    # = g/|g| up to eps): a closed form independent of the implementation.
    np.testing.assert_allclose(new_params["w"], [1.0 - 0.1, -2.0 - 0.1], rtol=1e-7)
    np.testing.assert_allclose(new_params["b"], 0.5 + 0.1, rtol=1e-7)


@pytest.mark.parametrize(("factory", "kwargs", "message"), [
    (optim.sgd, {"lr": 0.0}, "lr=0.0"),
    (optim.sgd, {"lr": -0.1}, "lr=-0.1"),
    (optim.momentum, {"lr": 0.1, "beta": 1.0}, "beta=1.0"),
    (optim.adam, {"lr": 0.1, "b2": -0.1}, "b2=-0.1"),
    (optim.adam, {"lr": 0.1, "eps": 0.0}, "eps=0.0"),
])
def test_invalid_hyperparameters(factory, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        factory(**kwargs)


def test_get_lists_known_optimizers() -> None:
    assert optim.get("adam") is optim.adam
    with pytest.raises(InvalidArgument, match="known optimizers: sgd, momentum, adam"):
        optim.get("lbfgs")
