"""Optimizers as pure updates ``update(be, params, grads, state) -> (params, state)``.

State is a dict of arrays (Adam's step count included), so a whole training chunk compiles
under ``jit`` + ``scan`` and nothing hides in Python attributes between steps. The update
formulas follow ``torch.optim`` (SGD with momentum without dampening; Adam with bias
correction), so trajectories can be checked against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias

from gradbridge.core.backend import Backend, InvalidArgument, invalid, tree_map
from gradbridge.core.data import check_positive

Params: TypeAlias = dict[str, Any]
State: TypeAlias = dict[str, Any]


class Optimizer(Protocol):
    """What ``fit`` needs from an optimizer: a name, its learning rate, init and update."""

    @property
    def name(self) -> str: ...

    @property
    def lr(self) -> float: ...

    def init(self, be: Backend, params: Params) -> State: ...

    def update(self, be: Backend, params: Params, grads: Params,
               state: State) -> tuple[Params, State]: ...


def _zeros_like(be: Backend, params: Params) -> Params:
    return tree_map(lambda p: be.zeros(tuple(p.shape)), params)


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent ``p <- p - lr * g``: the tutorial's update."""

    lr: float
    name: ClassVar[str] = "sgd"

    def init(self, be: Backend, params: Params) -> State:
        return {}

    def update(self, be: Backend, params: Params, grads: Params,
               state: State) -> tuple[Params, State]:
        return tree_map(lambda p, g: p - self.lr * g, params, grads), state


@dataclass(frozen=True)
class Momentum:
    """Heavy-ball momentum ``v <- beta * v + g; p <- p - lr * v`` (torch's SGD(momentum=beta))."""

    lr: float
    beta: float = 0.9
    name: ClassVar[str] = "momentum"

    def init(self, be: Backend, params: Params) -> State:
        return {"velocity": _zeros_like(be, params)}

    def update(self, be: Backend, params: Params, grads: Params,
               state: State) -> tuple[Params, State]:
        velocity = tree_map(lambda v, g: self.beta * v + g, state["velocity"], grads)
        params = tree_map(lambda p, v: p - self.lr * v, params, velocity)
        return params, {"velocity": velocity}


@dataclass(frozen=True)
class Adam:
    """Adam with bias correction, in the same arithmetic order as ``torch.optim.Adam``."""

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"

    def init(self, be: Backend, params: Params) -> State:
        return {"m": _zeros_like(be, params), "v": _zeros_like(be, params),
                "step": be.zeros(())}

    def update(self, be: Backend, params: Params, grads: Params,
               state: State) -> tuple[Params, State]:
        step = state["step"] + 1.0
        m = tree_map(lambda m, g: self.b1 * m + (1.0 - self.b1) * g, state["m"], grads)
        v = tree_map(lambda v, g: self.b2 * v + (1.0 - self.b2) * g * g, state["v"], grads)
        correction1 = 1.0 - be.pow(be.full((), self.b1), step)
        sqrt_correction2 = be.sqrt(1.0 - be.pow(be.full((), self.b2), step))
        step_size = self.lr / correction1
        params = tree_map(
            lambda p, m, v: p - step_size * (m / (be.sqrt(v) / sqrt_correction2 + self.eps)),
            params, m, v,
        )
        return params, {"m": m, "v": v, "step": step}


def sgd(lr: float) -> SGD:
    """Plain gradient descent with learning rate ``lr`` (> 0)."""
    return SGD(check_lr(lr))


def momentum(lr: float, beta: float = 0.9) -> Momentum:
    """Gradient descent with heavy-ball momentum ``beta`` in [0, 1)."""
    _check_fraction("beta", beta)
    return Momentum(check_lr(lr), beta)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Adam:
    """Adam (Kingma & Ba) with decay rates ``b1``, ``b2`` in [0, 1) and ``eps`` > 0."""
    _check_fraction("b1", b1)
    _check_fraction("b2", b2)
    if not eps > 0:
        raise invalid("eps", eps, "a number > 0")
    return Adam(check_lr(lr), b1, b2, eps)


OPTIMIZERS: dict[str, Callable[[float], Optimizer]] = {
    "sgd": sgd, "momentum": momentum, "adam": adam,
}


def get(name: str) -> Callable[[float], Optimizer]:
    """The optimizer factory called ``name`` (call it with the learning rate)."""
    if name not in OPTIMIZERS:
        raise InvalidArgument(
            f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}"
        )
    return OPTIMIZERS[name]


def check_lr(lr: float) -> float:
    """Learning rates are finite numbers > 0."""
    return check_positive("lr", lr, "a finite number > 0 (e.g. 0.1)")


def _check_fraction(argument: str, value: float) -> None:
    if not 0 <= value < 1:
        raise invalid(argument, value, "a number in [0, 1)")
