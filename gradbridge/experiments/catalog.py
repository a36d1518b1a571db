"""The experiments ``gradbridge compare`` runs, their settings, and their float64 NumPy references.

Each experiment runs once per backend x device x dtype through the Backend protocol and
returns an :class:`Outcome`: host NumPy series, step by step, that the runner compares with
the same series from a reference written here in plain float64 NumPy, independently of every
gradbridge backend (the tutorial's own loop, closed-form Bayes, hand-written backpropagation
checked by central finite differences). The timing sweep has no reference: it measures speed.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradbridge.core.backend import Backend, InvalidArgument, invalid

if typing.TYPE_CHECKING:  # pragma: no cover
    from gradbridge.core.history import History

# ------------------------------------------------------------------------ settings


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise invalid(name, value, f"an integer >= {low}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise invalid(name, value, "a number > 0")


def _fraction(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise invalid(name, value, "a relative difference between 0 and 1, such as 1e-4")


@dataclass(frozen=True)
class RegressionSettings:
    """The tutorial's regression: y = 3x + 2 + noise, full-batch gradient descent from w = b = 0."""

    epochs: int = 50
    lr: float = 0.1
    n: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        _at_least("regression.epochs", self.epochs, 1)
        _at_least("regression.n", self.n, 2)
        _positive("regression.lr", self.lr)


@dataclass(frozen=True)
class MlpSettings:
    """Gradient of an MLP's MSE loss at its initial parameters, on seeded synthetic data."""

    sizes: tuple[int, ...] = (3, 16, 1)
    n: int = 64
    activation: str = "tanh"
    seed: int = 0
    fd_step: float = 1e-6

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise invalid("mlp_gradients.sizes", list(self.sizes),
                          "at least two positive layer widths, input first")
        _at_least("mlp_gradients.n", self.n, 1)
        if self.activation not in ("tanh", "relu"):
            raise invalid("mlp_gradients.activation", self.activation, "'tanh' or 'relu'")
        _positive("mlp_gradients.fd_step", self.fd_step)


MIN_REPEATS = 5
"""Fewest timed fits per problem: enough for a median and an interquartile range."""


@dataclass(frozen=True)
class TimingSettings:
    """The regression timed over data sizes N: median and spread of time per epoch over repeats."""

    sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000, 1_000_000)
    repeats: int = MIN_REPEATS
    epochs: int = 50
    lr: float = 0.1

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 2:
            raise invalid("timing.sizes", list(self.sizes), "data sizes of at least 2")
        _at_least("timing.repeats", self.repeats, MIN_REPEATS)
        _at_least("timing.epochs", self.epochs, 1)
        _positive("timing.lr", self.lr)


QUICK_TIMING = TimingSettings(sizes=(100, 1_000, 10_000))


@dataclass(frozen=True)
class Tolerances:
    """Largest relative difference from the float64 reference that still counts as agreement.

    float64: results differ by rounding only (~1e-16 per operation), so 1e-10 leaves room for
    other summation orders and nothing else. float32: data and parameters are rounded to
    ~6e-8; the residuals y - (w x + b) are small differences of numbers near 5, which
    amplifies that about tenfold, and sums over N points add rounding that grows with N.
    Measured on CPU with NumPy, JAX and PyTorch at the default sizes: at most 6e-7 over every
    experiment and all 50 epochs (gradient descent damps errors instead of compounding them).
    1e-4 leaves over 100x margin for larger N and GPU reduction orders, yet an operation off
    by one part in a thousand fails by a factor of ten.
    """

    float32: float = 1e-4
    float64: float = 1e-10

    def __post_init__(self) -> None:
        _fraction("tolerance.float32", self.float32)
        _fraction("tolerance.float64", self.float64)

    def for_dtype(self, dtype: str) -> float:
        return self.float64 if dtype == "float64" else self.float32


@dataclass(frozen=True)
class Settings:
    """Everything an experiment's numbers depend on besides backend, device and dtype."""

    regression: RegressionSettings = field(default_factory=RegressionSettings)
    mlp_gradients: MlpSettings = field(default_factory=MlpSettings)
    timing: TimingSettings = field(default_factory=TimingSettings)
    tolerance: Tolerances = field(default_factory=Tolerances)

    def as_dict(self) -> dict[str, Any]:
        return {section.name: dataclasses.asdict(getattr(self, section.name))
                for section in dataclasses.fields(self)}

    def flat(self, uses: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``{"section.key": value}`` (tuples as lists, as in JSON); only ``uses`` if given."""
        values = {f"{section}.{key}": list(v) if isinstance(v, tuple) else v
                  for section, table in self.as_dict().items() for key, v in table.items()}
        return {k: v for k, v in values.items() if uses is None or _covers(uses, k)}


def _covers(uses: tuple[str, ...], setting: str) -> bool:
    """Whether ``setting`` ("section.key") is among ``uses`` (sections or "section.key")."""
    return any(setting == u or setting.startswith(f"{u}.") for u in uses)


SECTIONS: dict[str, type] = {"regression": RegressionSettings, "mlp_gradients": MlpSettings,
                             "timing": TimingSettings, "tolerance": Tolerances}


def settings_from_mapping(tables: Mapping[str, Any]) -> Settings:
    """Build Settings from ``{section: {key: value}}`` (a TOML file's tables), checking each key.

    Unknown keys and values of the wrong type raise InvalidArgument naming the key and
    listing the valid ones, so a typo in a config file never silently runs the defaults.
    """
    parts = {}
    for section, table in tables.items():
        cls = SECTIONS[section]
        if not isinstance(table, Mapping):
            raise InvalidArgument(f"[{section}] must be a table of settings, got {table!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in table:
            if key not in names:
                raise InvalidArgument(f"unknown key {key!r} in [{section}]; valid keys: "
                                      f"{', '.join(names)}")
        parts[section] = cls(**{key: _typed(f"{section}.{key}", value, hints[key])
                                for key, value in table.items()})
    return Settings(**parts)


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (int, float, str, tuple[int, ...]), or an error naming it."""
    if hint is int or hint is float:
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                hint is int and not integral):
            kind = "an integer" if hint is int else "a number"
            raise InvalidArgument(f"{name} must be {kind}; got {value!r} "
                                  f"({type(value).__name__})")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise InvalidArgument(f"{name} must be a string; got {value!r} "
                                  f"({type(value).__name__})")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise InvalidArgument(f"{name} must be a list of integers; got {value!r} "
                                  f"({type(value).__name__})")
        return tuple(_typed(f"{name}[{i}]", item, int) for i, item in enumerate(value))
    raise TypeError(f"no conversion for settings type {hint!r}")  # a bug here, not user input


# ------------------------------------------------------------------------ outcomes


@dataclass
class Outcome:
    """What one experiment produced, on the host.

    ``series`` maps a quantity to an array whose first axis is the step (the epoch, or a
    single step for one-shot experiments); those are what gets compared with the reference.
    ``alternates`` (references only) are further references, e.g. finite differences.
    """

    series: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    alternates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays become nested lists."""
        return {
            "series": {k: np.asarray(v, dtype=float).tolist() for k, v in self.series.items()},
            "params": self.params, "losses": self.losses, "timing": self.timing,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class Experiment:
    """One experiment: how to run it on a backend and, if it is compared, its reference."""

    name: str
    title: str
    run: Callable[[Backend, Settings], Outcome]
    reference: Callable[[Settings], Outcome] | None
    stepped: bool  # the series' steps are epochs
    uses: tuple[str, ...] = ()  # the settings its numbers depend on: sections or "section.key"

    @property
    def compared(self) -> bool:
        return self.reference is not None


def _host_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON-ready numbers / nested lists."""
    return {k: np.asarray(v, dtype=float).tolist() for k, v in params.items()}


# ----------------------------------------------------------------- linear algebra

FEATURES = np.array([1.0, 2.0, 3.0])
WEIGHTS = np.array([0.5, 0.3, 0.2])
DATASET = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def linalg_reference(settings: Settings) -> Outcome:
    """The tutorial's dot product, batch of predictions and transpose, in plain NumPy."""
    return Outcome(series={"dot": np.array([FEATURES @ WEIGHTS]),
                           "batch": (DATASET @ WEIGHTS)[None, :], "transpose": DATASET.T[None]})


def linalg_run(be: Backend, settings: Settings) -> Outcome:
    from gradbridge.experiments import seed

    values = seed.linear_algebra(be)
    return Outcome(series={"dot": np.array([float(values["dot"])]),
                           "batch": np.asarray(values["batch"], dtype=float)[None, :],
                           "transpose": np.asarray(values["transpose"], dtype=float)[None]})


# ---------------------------------------------------------------------- regression


def regression_reference(settings: Settings) -> Outcome:
    """The tutorial's gradient-descent loop in float64 NumPy, recording every epoch.

    Like the tutorial's print, epoch k's loss, w and b are those at the start of epoch k.
    Also returns the MSE's quadratic coefficients, from which plots draw its contour.
    """
    from gradbridge.experiments import seed

    s = settings.regression
    x, y = seed.tutorial_data(s.n, s.seed)
    w, b = float(seed.SEED["w0"]), float(seed.SEED["b0"])
    rows = []
    for _ in range(s.epochs):
        residual = w * x + b - y
        rows.append((np.mean(residual ** 2), w, b))
        dw, db = np.mean(2 * residual * x), np.mean(2 * residual)
        w, b = w - s.lr * dw, b - s.lr * db
    table = np.array(rows)
    moments = {"xx": np.mean(x * x), "x": np.mean(x), "xy": np.mean(x * y), "y": np.mean(y),
               "yy": np.mean(y * y)}
    return Outcome(series={"loss": table[:, 0], "w": table[:, 1], "b": table[:, 2]},
                   params={"w": w, "b": b}, losses=table[:, 0].tolist(),
                   extra={"mse_moments": {k: float(v) for k, v in moments.items()}})


def regression_run(be: Backend, settings: Settings) -> Outcome:
    """The tutorial's regression through ``fit``: timed without callbacks, then its (w, b) path.

    A callback makes ``fit`` stop after every epoch, which would slow the timed runs; so the
    path comes from another, identical run that records it.
    """
    from gradbridge.experiments import seed

    s = settings.regression
    history, timing = timed_fits(
        functools.partial(seed.run_regression, be, epochs=s.epochs, lr=s.lr, n=s.n, seed=s.seed),
        MIN_REPEATS)
    path: list[tuple[float, float]] = []
    seed.run_regression(be, epochs=s.epochs, lr=s.lr, n=s.n, seed=s.seed,
                        callbacks=[_record_path(path)])
    losses = np.asarray(history.losses, dtype=float)
    return Outcome(series={"loss": losses, "w": np.array([w for w, _ in path]),
                           "b": np.array([b for _, b in path])},
                   params=_host_params(history.params), losses=losses.tolist(),
                   timing=timing)


def timed_fits(fit: Callable[[], History], repeats: int) -> tuple[History, dict[str, Any]]:
    """The first ``fit()`` for its compile time (None when nothing compiled), then ``repeats``
    more for the time per epoch: median, quantiles [min, q1, median, q3, max], every repeat.

    The first fit's epochs are left out of the statistics: they pay one-off costs (fresh memory,
    cold caches) that are neither compilation nor the backend's steady speed.
    """
    first = fit()
    times = [float(fit().per_epoch_s) for _ in range(repeats)]
    quantiles = [float(q) for q in np.quantile(times, [0, 0.25, 0.5, 0.75, 1])]
    return first, {"per_epoch_s": quantiles[2], "per_epoch_s_quantiles": quantiles,
                   "per_epoch_s_repeats": times, "compile_s": first.compile_s or None}


def _record_path(path: list[tuple[float, float]]) -> Callable[[Any], None]:
    """A fit callback recording (w, b) at the start of each epoch, where its loss is taken."""
    def callback(info: Any) -> None:
        params = info.host_params()
        path.append((float(params["w"]), float(params["b"])))
    return callback


# --------------------------------------------------------------------------- Bayes

PRIORS = np.geomspace(1e-4, 1.0, 101)  # prevalence 0.01% .. 100%, includes 0.01 exactly
SENSITIVITY, FALSE_POSITIVE_RATE, PREVALENCE = 0.95, 0.05, 0.01


def bayes_reference(settings: Settings) -> Outcome:
    """The medical test and posterior-vs-prevalence curve by Bayes' theorem in closed form."""
    def posterior(prior: np.ndarray) -> np.ndarray:
        joint = SENSITIVITY * prior
        return joint / (joint + FALSE_POSITIVE_RATE * (1 - prior))

    return Outcome(series={"medical_test": posterior(np.array([PREVALENCE])),
                           "posterior": posterior(PRIORS)[None, :]},
                   extra={"priors": PRIORS.tolist()})


def bayes_run(be: Backend, settings: Settings) -> Outcome:
    from gradbridge.core import probability
    from gradbridge.experiments import seed

    curve = probability.posterior(be, be.from_host(PRIORS), SENSITIVITY, FALSE_POSITIVE_RATE)
    return Outcome(series={"medical_test": np.array([float(seed.medical_test(be))]),
                           "posterior": np.asarray(be.to_numpy(curve), dtype=float)[None, :]},
                   extra={"priors": PRIORS.tolist()})


# ------------------------------------------------------------------- MLP gradients


def mlp_problem(s: MlpSettings) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Initial parameters and seeded data (x (n, d), y = sin of a random projection)."""
    from gradbridge.core import models

    rng = np.random.default_rng(s.seed)
    x = rng.standard_normal((s.n, s.sizes[0]))
    y = np.sin(x @ rng.standard_normal((s.sizes[0], s.sizes[-1])))
    if s.sizes[-1] == 1:
        y = y[:, 0]  # models.mlp returns (n,) for one output
    return models.init_mlp(list(s.sizes), s.seed), x, y


def _mlp_forward(params: Mapping[str, np.ndarray], x: np.ndarray,
                 activation: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Hand-written forward pass: output, each layer's input and pre-activation."""
    inputs, pre = [], []
    h = x
    layers = len(params) // 2
    for i in range(layers):
        inputs.append(h)
        z = h @ params[f"W{i}"] + params[f"b{i}"]
        pre.append(z)
        h = z if i == layers - 1 else (np.tanh(z) if activation == "tanh" else np.maximum(z, 0))
    return h, inputs, pre


def mlp_loss_reference(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                       activation: str) -> float:
    """MSE of the hand-written MLP, float64."""
    out, _, _ = _mlp_forward(params, x, activation)
    return float(np.mean((out.reshape(y.shape) - y) ** 2))


def mlp_gradient_reference(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                           activation: str) -> dict[str, np.ndarray]:
    """Backpropagation written out by hand for the MLP's MSE loss, float64."""
    out, inputs, pre = _mlp_forward(params, x, activation)
    upstream = 2 * (out - y.reshape(out.shape)) / y.size  # d loss / d output
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(len(inputs))):
        if i < len(inputs) - 1:
            slope = 1 - np.tanh(pre[i]) ** 2 if activation == "tanh" else (pre[i] > 0) * 1.0
            upstream = upstream * slope
        grads[f"W{i}"] = inputs[i].T @ upstream
        grads[f"b{i}"] = upstream.sum(axis=0)
        upstream = upstream @ params[f"W{i}"].T
    return grads


def central_differences(loss: Callable[[dict[str, np.ndarray]], float],
                        params: Mapping[str, np.ndarray], step: float) -> dict[str, np.ndarray]:
    """(loss(p + h e_i) - loss(p - h e_i)) / 2h for every parameter entry, float64."""
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value, dtype=float)
        for index in np.ndindex(value.shape):
            shifted = {k: np.array(v, dtype=float) for k, v in params.items()}
            shifted[name][index] = value[index] + step
            up = loss(shifted)
            shifted[name][index] = value[index] - step
            grad[index] = (up - loss(shifted)) / (2 * step)
        grads[name] = grad
    return grads


def flatten(tree: Mapping[str, Any]) -> np.ndarray:
    """Concatenate a dict of arrays in sorted key order, as float64."""
    return np.concatenate([np.asarray(tree[k], dtype=float).ravel() for k in sorted(tree)])


def mlp_reference(settings: Settings) -> Outcome:
    s = settings.mlp_gradients
    params, x, y = mlp_problem(s)
    grads = mlp_gradient_reference(params, x, y, s.activation)
    numeric = central_differences(lambda p: mlp_loss_reference(p, x, y, s.activation), params,
                                  s.fd_step)
    loss = mlp_loss_reference(params, x, y, s.activation)
    return Outcome(series={"loss": np.array([loss]), "gradient": flatten(grads)[None, :]},
                   losses=[loss],
                   alternates={"finite differences": {"gradient": flatten(numeric)[None, :]}})


def mlp_run(be: Backend, settings: Settings) -> Outcome:
    from gradbridge.core import losses, models

    s = settings.mlp_gradients
    params, x, y = mlp_problem(s)
    model = models.mlp(s.activation)
    xb, yb = be.from_host(x), be.from_host(y)

    def loss_fn(p: dict[str, Any]) -> Any:
        return losses.mse(be, model(be, p, xb), yb)

    gradient = be.jit(be.value_and_grad(loss_fn))  # one compiled program where there is jit
    value, grads = gradient({k: be.from_host(v) for k, v in params.items()})
    loss = float(be.to_numpy(value))
    host = {k: be.to_numpy(g) for k, g in grads.items()}
    return Outcome(series={"loss": np.array([loss]), "gradient": flatten(host)[None, :]},
                   losses=[loss])


# -------------------------------------------------------------------------- timing


def timing_run(be: Backend, settings: Settings) -> Outcome:
    """Time per epoch of the regression at each N (see :func:`timed_fits`), a list per key."""
    from gradbridge.experiments import seed

    s = settings.timing
    start = time.perf_counter()
    rows = [timed_fits(functools.partial(seed.run_regression, be, epochs=s.epochs, lr=s.lr, n=n,
                                         seed=settings.regression.seed), s.repeats)[1]
            for n in s.sizes]
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    return Outcome(timing={"run_s": time.perf_counter() - start},
                   extra={"sizes": list(s.sizes), **columns, "epochs": s.epochs,
                          "repeats": s.repeats})


# ------------------------------------------------------------------------- catalog

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("linalg", "dot product and batch matmul (tutorial)", linalg_run,
               linalg_reference, stepped=False, uses=("tolerance",)),
    Experiment("regression", "linear regression by gradient descent (tutorial)",
               regression_run, regression_reference, stepped=True,
               uses=("regression", "tolerance")),
    Experiment("bayes", "medical test and posterior vs prevalence (tutorial)", bayes_run,
               bayes_reference, stepped=False, uses=("tolerance",)),
    Experiment("mlp_gradients", "MLP loss gradient vs hand-written backprop", mlp_run,
               mlp_reference, stepped=False, uses=("mlp_gradients", "tolerance")),
    Experiment("timing", "regression time per epoch over data sizes", timing_run, None,
               stepped=False, uses=("timing", "regression.seed")),
)}


def users_of(setting: str) -> list[str]:
    """The experiments whose numbers depend on ``setting`` ("section.key")."""
    return [e.name for e in EXPERIMENTS.values() if _covers(e.uses, setting)]


def get(name: str) -> Experiment:
    """The experiment called ``name``; unknown names list the known ones."""
    if name not in EXPERIMENTS:
        raise InvalidArgument(f"unknown experiment {name!r}; known experiments: "
                              f"{', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
