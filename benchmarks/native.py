"""Hand-written baselines: the same training written directly in NumPy, JAX and PyTorch.

Each contestant is a factory ``make(x, y, ...) -> train`` that moves the data where it has to be
(outside the clock, as ``fit`` does before its epochs), and ``train(epochs) -> Run`` trains from
the starting parameters every call. ``Run.run_s`` covers the epochs only, with the device
synchronized before the clock is read; compilation done inside a call is reported apart in
``compile_s``. Every epoch computes the loss at the epoch's starting parameters (what
``gradbridge.fit`` records), so all contestants do the same work.

Regression (the tutorial): ``y ~ w * x + b``, mean squared error, full-batch gradient descent
from ``w = b = 0``. MLP: tanh layers, MSE; softmax regression: one linear layer, mean softmax
cross-entropy of one-hot targets; both with Adam on mini-batches drawn in one seeded order that
every contestant shares, so their trajectories agree to rounding. A ragged last batch is one
step on the rows left over. Log-det MLP: one tanh layer, softmax cross-entropy and a log-det
penalty on the first weights, full-batch gradient descent (one step per epoch).

jax and torch are imported inside the factories: importing this module costs only NumPy.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Run:
    """One training call: seconds in the epochs, compile seconds, final params, per-epoch losses."""

    run_s: float
    compile_s: float
    params: dict[str, np.ndarray]
    losses: np.ndarray


Trainer = Callable[[int], Run]


def _host(value: Any) -> np.ndarray:
    """A float64 host copy of a NumPy, JAX or torch value (torch tensors are detached first)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


# ---------------------------------------------------------------- regression: NumPy


def numpy_tutorial(x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """The tutorial's loop as a newcomer writes it: prediction, loss, two gradient means."""

    def train(epochs: int) -> Run:
        w = b = x.dtype.type(0)
        losses = np.empty(epochs)
        start = time.perf_counter()
        for epoch in range(epochs):
            prediction = w * x + b
            losses[epoch] = np.mean((prediction - y) ** 2)
            w = w - lr * np.mean(2 * (prediction - y) * x)
            b = b - lr * np.mean(2 * (prediction - y))
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {"w": _host(w), "b": _host(b)}, losses)

    return train


def numpy_analytic(x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """What a NumPy user who minds speed writes: the residual once, reductions as dot products."""
    n = x.dtype.type(x.size)

    def train(epochs: int) -> Run:
        w = b = x.dtype.type(0)
        losses = np.empty(epochs)
        start = time.perf_counter()
        for epoch in range(epochs):
            residual = w * x + b - y
            losses[epoch] = residual @ residual / n
            w = w - lr * (2 * (residual @ x) / n)
            b = b - lr * (2 * residual.sum() / n)
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {"w": _host(w), "b": _host(b)}, losses)

    return train


# ---------------------------------------------------------------- regression: JAX


@contextlib.contextmanager
def jax_precision(dtype: np.dtype) -> Iterator[None]:
    """float64 arrays in JAX need x64 switched on; scope it to this contestant's calls."""
    import jax

    with jax.enable_x64(np.dtype(dtype) == np.float64):
        yield


def _jax_device(device: str) -> Any:
    import jax

    kind, _, index = device.partition(":")
    return jax.devices("gpu" if kind == "cuda" else "cpu")[int(index or 0)]


def _jax_scan_trainer(x: np.ndarray, y: np.ndarray, lr: float, device: str,
                      step_of: Callable[[Any, Any, float], Callable[..., Any]]) -> Trainer:
    """Compile ``lax.scan`` of one epoch step over all epochs, once per epoch count."""
    import jax

    with jax_precision(x.dtype):
        placed = jax.device_put((x, y), _jax_device(device))
        zero = jax.device_put(np.zeros((), x.dtype), _jax_device(device))
    compiled: dict[int, Any] = {}

    def train(epochs: int) -> Run:
        with jax_precision(x.dtype):
            compile_s = 0.0
            if epochs not in compiled:
                def run(params: Any, data: Any) -> Any:
                    return jax.lax.scan(step_of(data[0], data[1], lr), params, None,
                                        length=epochs)

                start = time.perf_counter()
                compiled[epochs] = jax.jit(run).lower((zero, zero), placed).compile()
                compile_s = time.perf_counter() - start
            start = time.perf_counter()
            (w, b), losses = jax.block_until_ready(compiled[epochs]((zero, zero), placed))
            run_s = time.perf_counter() - start
            return Run(run_s, compile_s, {"w": _host(w), "b": _host(b)}, _host(losses))

    return train


def jax_scan(x: np.ndarray, y: np.ndarray, lr: float, device: str = "cpu") -> Trainer:
    """JAX as its documentation teaches: ``value_and_grad`` of the loss, jit, lax.scan epochs."""
    import jax
    import jax.numpy as jnp

    def step_of(xd: Any, yd: Any, rate: float) -> Callable[..., Any]:
        def loss(params: Any) -> Any:
            w, b = params
            return jnp.mean((w * xd + b - yd) ** 2)

        value_and_grad = jax.value_and_grad(loss)

        def step(params: Any, _: None) -> Any:
            value, (gw, gb) = value_and_grad(params)
            return (params[0] - rate * gw, params[1] - rate * gb), value

        return step

    return _jax_scan_trainer(x, y, lr, device, step_of)


def jax_scan_analytic(x: np.ndarray, y: np.ndarray, lr: float, device: str = "cpu") -> Trainer:
    """JAX jit + lax.scan with the gradients written out: what XLA makes of the minimal math."""
    import jax.numpy as jnp

    def step_of(xd: Any, yd: Any, rate: float) -> Callable[..., Any]:
        def step(params: Any, _: None) -> Any:
            w, b = params
            residual = w * xd + b - yd
            gw, gb = 2 * jnp.mean(residual * xd), 2 * jnp.mean(residual)
            return (w - rate * gw, b - rate * gb), jnp.mean(residual * residual)

        return step

    return _jax_scan_trainer(x, y, lr, device, step_of)


# ---------------------------------------------------------------- regression: PyTorch


def _torch_placed(x: np.ndarray, y: np.ndarray, device: str) -> tuple[Any, Any, Callable[[], None]]:
    import torch

    xd, yd = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    sync = torch.cuda.synchronize if xd.is_cuda else (lambda: None)
    return xd, yd, sync


def torch_autograd(x: np.ndarray, y: np.ndarray, lr: float, device: str = "cpu") -> Trainer:
    """PyTorch eager as its tutorials teach: leaf tensors, autograd for the gradients."""
    import torch

    xd, yd, sync = _torch_placed(x, y, device)

    def train(epochs: int) -> Run:
        w = torch.zeros((), dtype=xd.dtype, device=xd.device, requires_grad=True)
        b = torch.zeros((), dtype=xd.dtype, device=xd.device, requires_grad=True)
        losses = []
        sync()
        start = time.perf_counter()
        for _ in range(epochs):
            loss = ((w * xd + b - yd) ** 2).mean()
            gw, gb = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= lr * gw
                b -= lr * gb
            losses.append(loss.detach())
        stacked = torch.stack(losses)
        sync()
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {"w": _host(w), "b": _host(b)}, _host(stacked))

    return train


def _torch_manual_step(xd: Any, yd: Any, lr: float) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    """One step with the gradients written out; means, not ``dot``, whose float32 BLAS
    accumulation drifts by ~1e-4 over 1e7 terms (torch's reductions sum pairwise)."""

    def step(w: Any, b: Any) -> tuple[Any, Any, Any]:
        residual = w * xd + b - yd
        loss = (residual * residual).mean()
        return w - lr * 2 * (residual * xd).mean(), b - lr * 2 * residual.mean(), loss

    return step


def _torch_loop(xd: Any, step: Callable[[Any, Any], tuple[Any, Any, Any]],
                sync: Callable[[], None]) -> Trainer:
    import torch

    def train(epochs: int) -> Run:
        with torch.inference_mode():
            w = b = torch.zeros((), dtype=xd.dtype, device=xd.device)
            losses = []
            sync()
            start = time.perf_counter()
            for _ in range(epochs):
                w, b, loss = step(w, b)
                losses.append(loss)
            stacked = torch.stack(losses)
            sync()
            run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {"w": _host(w), "b": _host(b)}, _host(stacked))

    return train


def torch_manual(x: np.ndarray, y: np.ndarray, lr: float, device: str = "cpu") -> Trainer:
    """PyTorch eager without autograd: the gradients written out, no graph recorded."""
    xd, yd, sync = _torch_placed(x, y, device)
    return _torch_loop(xd, _torch_manual_step(xd, yd, lr), sync)


def torch_compiled(x: np.ndarray, y: np.ndarray, lr: float, device: str = "cpu") -> Trainer:
    """The hand-written step under ``torch.compile`` (inductor fuses it into one loop).

    The first call compiles; its extra time over a compiled call is reported as compile_s.
    """
    import torch

    xd, yd, sync = _torch_placed(x, y, device)
    compiled_step = torch.compile(_torch_manual_step(xd, yd, lr), fullgraph=True)
    loop = _torch_loop(xd, compiled_step, sync)
    compile_s: list[float] = []

    def train(epochs: int) -> Run:
        if not compile_s:
            start = time.perf_counter()
            with torch.inference_mode():
                zero = torch.zeros((), dtype=xd.dtype, device=xd.device)
                compiled_step(zero, zero)
                sync()
            compile_s.append(time.perf_counter() - start)
            result = loop(epochs)
            result.compile_s = compile_s[0]
            return result
        return loop(epochs)

    return train


# ---------------------------------------------------------------- MLP


def init_mlp(sizes: list[int], seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform weights ``W{i}`` of shape (fan_in, fan_out), zero biases ``b{i}``."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params[f"W{i}"] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def epoch_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """One epoch's sample order, a permutation from ``default_rng([seed, epoch])``.

    The same rule as ``gradbridge.core.data.epoch_order``, so the mini-batch contestants and
    ``gradbridge.fit`` see the same batches and their trajectories can be compared. Every
    baseline draws it at the start of each epoch inside its clock, as any training loop that
    shuffles must (and as ``fit`` does): drawn ahead, outside the clock, it would leave out of
    the baseline's time a cost that ``fit``'s time includes (84 µs a draw at N = 16,384 here).
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}

# A mini-batch loss written out in each framework: (params, x batch, y batch) -> loss; NumPy's
# returns the loss and its gradients too. Every mini-batch contestant below takes one.
NumpyLoss = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray],
                     tuple[float, dict[str, np.ndarray]]]


def _mlp_numpy_loss(xb_dtype: Any) -> NumpyLoss:
    """Backpropagation through tanh layers to the MSE, written out."""
    dtype = xb_dtype.type

    def loss_and_grads(p: dict[str, np.ndarray], xb: np.ndarray,
                       yb: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        layers = len(p) // 2
        activations = [xb]
        for i in range(layers - 1):
            activations.append(np.tanh(activations[-1] @ p[f"W{i}"] + p[f"b{i}"]))
        residual = activations[-1] @ p[f"W{layers - 1}"] + p[f"b{layers - 1}"] - yb
        upstream = 2 * residual / dtype(residual.size)
        grads: dict[str, np.ndarray] = {}
        for i in reversed(range(layers)):
            grads[f"W{i}"] = activations[i].T @ upstream
            grads[f"b{i}"] = upstream.sum(axis=0)
            if i:
                upstream = (upstream @ p[f"W{i}"].T) * (1 - activations[i] ** 2)
        return float(np.mean(residual**2)), grads

    return loss_and_grads


def _softmax_numpy_loss(p: dict[str, np.ndarray], xb: np.ndarray,
                        yb: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean softmax cross-entropy of one linear layer; its gradient is x.T (softmax - y) / m."""
    z = xb @ p["W0"] + p["b0"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - np.sum(z * yb, axis=1)))
    upstream = (e / total - yb) / z.dtype.type(len(xb))
    return loss, {"W0": xb.T @ upstream, "b0": upstream.sum(axis=0)}


def _numpy_minibatch(loss_and_grads: NumpyLoss, x: np.ndarray, y: np.ndarray,
                     params: dict[str, np.ndarray], lr: float, batch_size: int,
                     seed: int) -> Trainer:
    """Adam over the batches of each epoch's ``epoch_order``, on analytic gradients, in NumPy."""

    def train(epochs: int) -> Run:
        p = {k: v.astype(x.dtype) for k, v in params.items()}
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v = {k: np.zeros_like(w) for k, w in p.items()}
        losses = np.empty(epochs)
        t = 0
        start = time.perf_counter()
        for epoch in range(epochs):
            order, batch_losses = epoch_order(len(x), epoch, seed), []
            for first in range(0, len(x), batch_size):
                index = order[first:first + batch_size]
                loss, grads = loss_and_grads(p, x[index], y[index])
                batch_losses.append(loss)
                t += 1
                for k in p:
                    m[k] = ADAM["b1"] * m[k] + (1 - ADAM["b1"]) * grads[k]
                    v[k] = ADAM["b2"] * v[k] + (1 - ADAM["b2"]) * grads[k] ** 2
                    m_hat = m[k] / (1 - ADAM["b1"] ** t)
                    v_hat = v[k] / (1 - ADAM["b2"] ** t)
                    p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + ADAM["eps"])
            losses[epoch] = np.mean(batch_losses)
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {k: _host(w) for k, w in p.items()}, losses)

    return train


def numpy_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
              batch_size: int, seed: int) -> Trainer:
    """Backpropagation and Adam written out in NumPy."""
    return _numpy_minibatch(_mlp_numpy_loss(x.dtype), x, y.reshape(-1, 1), params, lr,
                            batch_size, seed)


def numpy_softmax(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                  batch_size: int, seed: int) -> Trainer:
    """Softmax regression: its gradient and Adam written out in NumPy."""
    return _numpy_minibatch(_softmax_numpy_loss, x, y, params, lr, batch_size, seed)


def _jax_mlp_loss(p: dict[str, Any], xb: Any, yb: Any) -> Any:
    import jax.numpy as jnp

    layers = len(p) // 2
    h = xb
    for i in range(layers - 1):
        h = jnp.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
    return jnp.mean((h @ p[f"W{layers - 1}"] + p[f"b{layers - 1}"] - yb) ** 2)


def _jax_softmax_loss(p: dict[str, Any], xb: Any, yb: Any) -> Any:
    import jax
    import jax.numpy as jnp

    z = xb @ p["W0"] + p["b0"]
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(z * yb, axis=1))


def _jax_minibatch(loss: Callable[..., Any], x: np.ndarray, y: np.ndarray,
                   params: dict[str, np.ndarray], lr: float, batch_size: int, seed: int,
                   device: str) -> Trainer:
    """JAX: the data on the device once, each epoch one jitted call gathering its batches by
    the epoch's order and running lax.scan over the full ones, then the ragged last batch in
    the same program; Adam written out."""
    import jax
    import jax.numpy as jnp

    value_and_grad = jax.value_and_grad(loss)
    full = len(x) // batch_size

    def step(carry: Any, batch: Any) -> Any:
        p, m, v, t = carry
        value, g = value_and_grad(p, *batch)
        t = t + 1
        m = jax.tree.map(lambda a, b: ADAM["b1"] * a + (1 - ADAM["b1"]) * b, m, g)
        v = jax.tree.map(lambda a, b: ADAM["b2"] * a + (1 - ADAM["b2"]) * b * b, v, g)
        c1, c2 = 1 - ADAM["b1"] ** t, 1 - ADAM["b2"] ** t
        p = jax.tree.map(
            lambda w, a, b: w - lr * (a / c1) / (jnp.sqrt(b / c2) + ADAM["eps"]), p, m, v)
        return (p, m, v, t), value

    def epoch(state: Any, data: Any, order: Any) -> Any:
        head = order[:full * batch_size]
        xs = data[0][head].reshape(full, batch_size, *data[0].shape[1:])
        ys = data[1][head].reshape(full, batch_size, *data[1].shape[1:])
        state, values = jax.lax.scan(step, state, (xs, ys))
        if full * batch_size < len(x):
            tail = order[full * batch_size:]
            state, last = step(state, (data[0][tail], data[1][tail]))
            values = jnp.concatenate([values, last[None]])
        return state, jnp.mean(values)

    with jax_precision(x.dtype):
        place = _jax_device(device)
        data = jax.device_put((x, y), place)
        compiled = jax.jit(epoch)

    def train(epochs: int) -> Run:
        with jax_precision(x.dtype):
            p = jax.device_put({k: w.astype(x.dtype) for k, w in params.items()}, place)
            zeros = jax.tree.map(jnp.zeros_like, p)
            state = (p, zeros, zeros, jnp.zeros((), x.dtype))
            start = time.perf_counter()
            lowered = compiled.lower(state, data, epoch_order(len(x), 0, seed)).compile()
            compile_s = time.perf_counter() - start
            losses = []
            start = time.perf_counter()
            for e in range(epochs):  # the host order travels with the call
                state, value = lowered(state, data, epoch_order(len(x), e, seed))
                losses.append(value)
            jax.block_until_ready(state)
            run_s = time.perf_counter() - start
            return Run(run_s, compile_s, {k: _host(w) for k, w in state[0].items()},
                       _host(jnp.stack(losses)))

    return train


def jax_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
            batch_size: int, seed: int, device: str = "cpu") -> Trainer:
    """JAX: jit of one whole epoch, lax.scan over its mini-batches, Adam written out."""
    return _jax_minibatch(_jax_mlp_loss, x, y.reshape(-1, 1), params, lr, batch_size, seed,
                          device)


def jax_softmax(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                batch_size: int, seed: int, device: str = "cpu") -> Trainer:
    """JAX softmax regression: jit of one whole epoch, lax.scan over its mini-batches."""
    return _jax_minibatch(_jax_softmax_loss, x, y, params, lr, batch_size, seed, device)


def _torch_mlp_loss(p: dict[str, Any], xb: Any, yb: Any) -> Any:
    import torch

    layers = len(p) // 2
    h = xb
    for i in range(layers - 1):
        h = torch.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
    return ((h @ p[f"W{layers - 1}"] + p[f"b{layers - 1}"] - yb) ** 2).mean()


def _torch_softmax_loss(p: dict[str, Any], xb: Any, yb: Any) -> Any:
    z = xb @ p["W0"] + p["b0"]
    return (z.logsumexp(dim=1) - (z * yb).sum(dim=1)).mean()


def _torch_minibatch(loss: Callable[..., Any], x: np.ndarray, y: np.ndarray,
                     params: dict[str, np.ndarray], lr: float, batch_size: int, seed: int,
                     device: str) -> Trainer:
    """PyTorch eager: data on the device once, batches gathered there, autograd,
    ``torch.optim.Adam``; losses stay on the device until the run ends."""
    import torch

    xd, yd, sync = _torch_placed(x, y, device)

    def train(epochs: int) -> Run:
        p = {k: torch.tensor(w, dtype=xd.dtype, device=xd.device, requires_grad=True)
             for k, w in params.items()}
        optimizer = torch.optim.Adam(p.values(), lr=lr, betas=(ADAM["b1"], ADAM["b2"]),
                                     eps=ADAM["eps"])
        losses = []
        sync()
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.from_numpy(epoch_order(len(x), epoch, seed)).to(xd.device)
            batch_losses = []
            for first in range(0, len(x), batch_size):
                index = order[first:first + batch_size]
                value = loss(p, xd[index], yd[index])
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                batch_losses.append(value.detach())
            losses.append(torch.stack(batch_losses).mean())
        stacked = torch.stack(losses)
        sync()
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {k: _host(w) for k, w in p.items()}, _host(stacked))

    return train


def torch_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
              batch_size: int, seed: int, device: str = "cpu") -> Trainer:
    """PyTorch eager: autograd through the layers, ``torch.optim.Adam``."""
    return _torch_minibatch(_torch_mlp_loss, x, y.reshape(-1, 1), params, lr, batch_size,
                            seed, device)


def torch_softmax(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                  batch_size: int, seed: int, device: str = "cpu") -> Trainer:
    """PyTorch eager softmax regression: autograd, ``torch.optim.Adam``."""
    return _torch_minibatch(_torch_softmax_loss, x, y, params, lr, batch_size, seed, device)


# ---------------------------------------------------------------- log-det MLP
# One tanh hidden layer, mean softmax cross-entropy of one-hot targets, plus the penalty
# ``-lam * logdet(W0^T W0 + I)`` on the first layer's weights; full-batch gradient descent, one
# step per epoch, the loss recorded at each step's starting parameters.


def _logdet_mlp_numpy_loss(lam: float) -> NumpyLoss:
    """The loss and its gradients written out; d logdet(W^T W + I) / dW = 2 W (W^T W + I)^-1."""

    def loss_and_grads(p: dict[str, np.ndarray], xb: np.ndarray,
                       yb: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        w = p["W0"]
        h = np.tanh(xb @ w + p["b0"])
        z = h @ p["W1"] + p["b1"]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        gram = w.T @ w + np.eye(w.shape[1], dtype=w.dtype)
        _, logdet = np.linalg.slogdet(gram)
        loss = float(np.mean(np.log(total[:, 0]) - np.sum(z * yb, axis=1)) - lam * logdet)
        upstream = (e / total - yb) / z.dtype.type(len(xb))
        hidden = (upstream @ p["W1"].T) * (1 - h**2)
        # gram is symmetric, so solve(gram, w.T).T = w gram^-1
        penalty = -2 * lam * np.linalg.solve(gram, w.T).T
        return loss, {"W0": xb.T @ hidden + penalty, "b0": hidden.sum(axis=0),
                      "W1": h.T @ upstream, "b1": upstream.sum(axis=0)}

    return loss_and_grads


def numpy_logdet_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                     lam: float) -> Trainer:
    """Full-batch gradient descent on the analytic gradients, in NumPy."""
    loss_and_grads = _logdet_mlp_numpy_loss(lam)

    def train(epochs: int) -> Run:
        p = {k: v.astype(x.dtype) for k, v in params.items()}
        losses = np.empty(epochs)
        start = time.perf_counter()
        for epoch in range(epochs):
            losses[epoch], grads = loss_and_grads(p, x, y)
            p = {k: p[k] - lr * grads[k] for k in p}
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {k: _host(w) for k, w in p.items()}, losses)

    return train


def jax_logdet_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                   lam: float, device: str = "cpu") -> Trainer:
    """JAX as its documentation teaches: ``value_and_grad`` of the loss, the step jitted."""
    import jax
    import jax.numpy as jnp

    def loss(p: dict[str, Any], xd: Any, yd: Any) -> Any:
        w = p["W0"]
        z = jnp.tanh(xd @ w + p["b0"]) @ p["W1"] + p["b1"]
        _, logdet = jnp.linalg.slogdet(w.T @ w + jnp.eye(w.shape[1], dtype=w.dtype))
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(z * yd, axis=1)) - lam * logdet

    value_and_grad = jax.value_and_grad(loss)

    @jax.jit
    def step(p: dict[str, Any], xd: Any, yd: Any) -> Any:
        value, g = value_and_grad(p, xd, yd)
        return jax.tree.map(lambda w, d: w - lr * d, p, g), value

    with jax_precision(x.dtype):
        place = _jax_device(device)
        data = jax.device_put((x, y), place)

    def train(epochs: int) -> Run:
        with jax_precision(x.dtype):
            p = jax.device_put({k: w.astype(x.dtype) for k, w in params.items()}, place)
            losses = []
            start = time.perf_counter()
            for _ in range(epochs):
                p, value = step(p, *data)
                losses.append(value)
            jax.block_until_ready(p)
            run_s = time.perf_counter() - start
            return Run(run_s, 0.0, {k: _host(w) for k, w in p.items()},
                       _host(jnp.stack(losses)))

    return train


def torch_logdet_mlp(x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], lr: float,
                     lam: float, device: str = "cpu") -> Trainer:
    """PyTorch eager as its tutorials teach: autograd, the update under ``no_grad``."""
    import torch

    xd, yd, sync = _torch_placed(x, y, device)
    eye = torch.eye(params["W0"].shape[1], dtype=xd.dtype, device=xd.device)

    def train(epochs: int) -> Run:
        p = {k: torch.tensor(w, dtype=xd.dtype, device=xd.device, requires_grad=True)
             for k, w in params.items()}
        losses = []
        sync()
        start = time.perf_counter()
        for _ in range(epochs):
            w = p["W0"]
            z = torch.tanh(xd @ w + p["b0"]) @ p["W1"] + p["b1"]
            _, logdet = torch.linalg.slogdet(w.mT @ w + eye)
            value = (z.logsumexp(dim=1) - (z * yd).sum(dim=1)).mean() - lam * logdet
            grads = torch.autograd.grad(value, list(p.values()))
            with torch.no_grad():
                for weight, g in zip(p.values(), grads, strict=True):
                    weight -= lr * g
            losses.append(value.detach())
        stacked = torch.stack(losses)
        sync()
        run_s = time.perf_counter() - start
        return Run(run_s, 0.0, {k: _host(w) for k, w in p.items()}, _host(stacked))

    return train


REGRESSION: dict[str, Callable[..., Trainer]] = {
    "numpy-tutorial": numpy_tutorial,
    "numpy-analytic": numpy_analytic,
    "jax-scan": jax_scan,
    "jax-scan-analytic": jax_scan_analytic,
    "torch-autograd": torch_autograd,
    "torch-manual": torch_manual,
    "torch-compile": torch_compiled,
}
"""Regression contestants by name: ``make(x, y, lr[, device]) -> train``."""

MLP: dict[str, Callable[..., Trainer]] = {
    "numpy-analytic": numpy_mlp,
    "jax-jit": jax_mlp,
    "torch-autograd": torch_mlp,
}
"""MLP contestants by name: ``make(x, y, params, lr, batch_size, seed[, device]) -> train``."""

SOFTMAX: dict[str, Callable[..., Trainer]] = {
    "numpy-analytic": numpy_softmax,
    "jax-jit": jax_softmax,
    "torch-autograd": torch_softmax,
}
"""Softmax-regression contestants by name, called as the MLP ones."""

LOGDET_MLP: dict[str, Callable[..., Trainer]] = {
    "numpy-analytic": numpy_logdet_mlp,
    "jax-jit": jax_logdet_mlp,
    "torch-autograd": torch_logdet_mlp,
}
"""Log-det MLP contestants by name: ``make(x, y, params, lr, lam[, device]) -> train``."""
