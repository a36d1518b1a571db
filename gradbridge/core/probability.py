"""Bayes' theorem on any backend: diagnostic tests, discrete and conjugate updates, naive Bayes.

Everything that computes on arrays goes through the Backend protocol, so each function gives
the same answer on NumPy, JAX and PyTorch. Inputs are checked on the host first (probabilities
in [0, 1], observations that are possible at all), because a NaN deep inside an array is much
harder to trace back than an error naming the argument. The functions are therefore meant for
concrete values, not for use inside ``grad`` or ``jit``. Arithmetic is spelled as ``be.*``
calls rather than operators with Python numbers, because a float64 JAX backend keeps float64
only inside its own calls (see ``backends/jax.py``).

The tutorial's medical test, in one line::

    >>> import gradbridge as gb
    >>> be = gb.get_backend("numpy", dtype="float64")
    >>> float(posterior(be, prior=0.01, sensitivity=0.95, false_positive_rate=0.05))
    0.16101694915254236
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gradbridge.core.backend import Array, Backend, GradbridgeError, InvalidArgument, invalid
from gradbridge.core.data import check_positive

# ------------------------------------------------------------------ diagnostic tests


def evidence(be: Backend, prior: Any, sensitivity: Any, false_positive_rate: Any) -> Array:
    """P(positive) = P(pos | condition) P(condition) + P(pos | no condition) P(no condition).

    Vectorized: the three arguments (numbers, lists, NumPy or backend arrays) broadcast.
    """
    p, s, f = _probabilities(be, prior=prior, sensitivity=sensitivity,
                             false_positive_rate=false_positive_rate)
    exact = functools.partial(_exact_evidence, be, prior, sensitivity, false_positive_rate)
    return _require_possible(be, _mix(be, s, f, p), "positive test", exact)


def posterior(be: Backend, prior: Any, sensitivity: Any, false_positive_rate: Any) -> Array:
    """P(condition | positive) by Bayes' theorem; vectorized like :func:`evidence`.

    Raises InvalidArgument when a positive result is impossible under the inputs
    (P(positive) = 0), since Bayes' theorem cannot condition on an event of probability zero.
    """
    p, s, f = _probabilities(be, prior=prior, sensitivity=sensitivity,
                             false_positive_rate=false_positive_rate)
    exact = functools.partial(_exact_evidence, be, prior, sensitivity, false_positive_rate)
    return be.divide(be.multiply(s, p),
                     _require_possible(be, _mix(be, s, f, p), "positive test", exact))


def sequential_update(be: Backend, prior: Any, sensitivity: Any, false_positive_rate: Any,
                      results: Sequence[bool]) -> Array:
    """Beliefs after each of several independent test results; the last row is the final one.

    Each posterior becomes the prior of the next test. A positive result has likelihoods
    (sensitivity, false_positive_rate); a negative one their complements. Returns an array of
    shape ``(len(results), *broadcast shape of the inputs)``.
    """
    if len(results) == 0:
        raise invalid("results", results, "at least one test result (True for positive)")
    for i, result in enumerate(results):
        if not isinstance(result, bool | np.bool_):
            raise invalid(f"results[{i}]", result, "True (positive) or False (negative)")
    belief, s, f = _probabilities(be, prior=prior, sensitivity=sensitivity,
                                  false_positive_rate=false_positive_rate)
    beliefs = []
    for i, positive in enumerate(results):
        if_condition, if_not = (s, f) if positive else (_complement(be, s), _complement(be, f))
        outcome = f"{'positive' if positive else 'negative'} test (results[{i}])"
        belief = be.divide(be.multiply(if_condition, belief),
                           _require_possible(be, _mix(be, if_condition, if_not, belief), outcome))
        beliefs.append(belief)
    return be.stack(beliefs)


MAX_POPULATION = 10**15
"""The largest population natural_frequencies accepts: its counts stay exact in float64."""


@dataclass(frozen=True)
class NaturalFrequencies:
    """A diagnostic test told as whole people: who has the condition, who tests positive."""

    population: int
    sick: int
    healthy: int
    true_positives: int
    false_negatives: int
    false_positives: int
    true_negatives: int

    @property
    def positives(self) -> int:
        """Everyone who tests positive, with the condition or without."""
        return self.true_positives + self.false_positives


def natural_frequencies(prior: float, sensitivity: float, false_positive_rate: float,
                        population: int = 10_000) -> NaturalFrequencies:
    """Expected counts of each outcome among ``population`` people, as whole numbers.

    Each count is rounded to the nearest integer (Python's ``round``: halves go to the even
    neighbour) one stage at a time, so the parts always add up: sick + healthy = population,
    true positives + false negatives = sick, false positives + true negatives = healthy.
    For the exact probability use :func:`posterior`; these counts are for explaining it.
    """
    population = check_population(population)
    values = {"prior": prior, "sensitivity": sensitivity,
              "false_positive_rate": false_positive_rate}
    for name, value in values.items():
        _check_probability(name, np.asarray(value, dtype=np.float64))
        if np.ndim(value) != 0:
            raise invalid(name, value, "a single probability (natural frequencies are scalar)")
    sick = round(population * float(prior))
    healthy = population - sick
    true_positives = round(sick * float(sensitivity))
    false_positives = round(healthy * float(false_positive_rate))
    return NaturalFrequencies(int(population), sick, healthy, true_positives,
                              sick - true_positives, false_positives,
                              healthy - false_positives)


def check_population(population: int, argument: str = "population") -> int:
    """A whole number of people from 1 to MAX_POPULATION, where float64 counts are exact."""
    if isinstance(population, bool) or not isinstance(population, int | np.integer) \
            or not 1 <= population <= MAX_POPULATION:
        shown = f"{population:.3g}" if isinstance(population, int) and population > 10**6 \
            else repr(population)
        raise InvalidArgument(
            f"{argument}={shown} is not valid; expected a whole number of people from 1 to "
            f"{MAX_POPULATION:,} (10^15; beyond it float64 counts are not exact)"
        )
    return int(population)


def _exact_evidence(be: Backend, prior: Any, sensitivity: Any,
                    false_positive_rate: Any) -> np.ndarray:
    """P(positive) in float64 on the host: tells an underflow in the backend's dtype from a
    truly impossible positive test."""
    p, s, f = (_to_host(be, v) for v in (prior, sensitivity, false_positive_rate))
    return s * p + f * (1 - p)


def _mix(be: Backend, if_true: Array, if_false: Array, prior: Array) -> Array:
    """Total probability: if_true * prior + if_false * (1 - prior), in the tutorial's order."""
    return be.add(be.multiply(if_true, prior), be.multiply(if_false, _complement(be, prior)))


def _complement(be: Backend, p: Array) -> Array:
    """1 - p, as a backend call (see the module docstring on JAX float64)."""
    return be.subtract(be.ones(()), p)


def _probabilities(be: Backend, **named: Any) -> list[Array]:
    """Check each named value is a probability (elementwise) and the shapes broadcast."""
    host = {name: _to_host(be, value) for name, value in named.items()}
    for name, values in host.items():
        _check_probability(name, values)
    try:
        np.broadcast_shapes(*(v.shape for v in host.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {v.shape}" for name, v in host.items())
        raise InvalidArgument(f"the shapes do not broadcast together: {shapes}") from None
    return [be.from_host(values) for values in host.values()]


def _check_probability(name: str, values: np.ndarray) -> None:
    """Raise InvalidArgument naming the first element outside [0, 1] (NaN included)."""
    bad = ~((values >= 0) & (values <= 1))  # also catches NaN
    if not bad.any():
        return
    value = float(values[bad].flat[0])
    where = "" if values.ndim == 0 else f" (element {tuple(int(i) for i in np.argwhere(bad)[0])})"
    hint = f"; a percentage? {value:g}% is {value / 100:g}" if 1 < value <= 100 else ""
    raise invalid(name, value, f"a probability in [0, 1]{where}{hint}")


def _require_possible(be: Backend, probability: Array, outcome: str,
                      exact: Callable[[], np.ndarray] | None = None) -> Array:
    """Return P(outcome) unchanged, or raise if the outcome is impossible (anywhere in it);
    ``exact`` (P(outcome) in float64) tells an underflow of the backend's dtype apart."""
    host = np.asarray(be.to_numpy(probability))
    impossible = ~(host > 0)
    if not impossible.any():
        return probability
    in_float64 = np.broadcast_to(exact(), host.shape) if exact else np.zeros(host.shape)
    underflow = impossible & (in_float64 > 0)
    if underflow.any():
        raise _underflow_error(be, outcome, _element(host, underflow),
                               float(in_float64[underflow][0]))
    raise InvalidArgument(
        f"P({outcome}) = 0{_element(host, impossible)}: the observation is impossible under "
        "these inputs, and Bayes' theorem cannot condition on a zero-probability event. A "
        "positive test needs sensitivity > 0 with prior > 0, or false_positive_rate > 0 with "
        "prior < 1; a negative test needs sensitivity < 1 with prior > 0, or "
        "false_positive_rate < 1 with prior < 1"
    )


def _element(host: np.ndarray, mask: np.ndarray) -> str:
    """' at element (i, ...)' of the first true entry of ``mask``; nothing for a 0-D array."""
    return "" if host.ndim == 0 else f" at element {tuple(int(i) for i in np.argwhere(mask)[0])}"


def _underflow_error(be: Backend, outcome: str, where: str, value: float) -> InvalidArgument:
    """P(outcome) is 0 in the backend's dtype only because its inputs are too small for it."""
    smallest = float(np.finfo(be.dtype).smallest_subnormal)
    return InvalidArgument(
        f"P({outcome}) = 0{where} in {be.dtype}, but it is {value:.3g} in float64: the inputs "
        f"underflow to 0 in {be.dtype} (its smallest positive number is {smallest:.2g}), so "
        "the event only looks impossible; compute in float64 (--dtype float64 on the command "
        "line, dtype='float64' in get_backend)"
    )


def _to_host(be: Backend, value: Any) -> np.ndarray:
    """A float64 host copy of a number, sequence, NumPy array or backend array."""
    if isinstance(value, int | float | list | tuple | np.ndarray | np.generic):
        return np.asarray(value, dtype=np.float64)
    return np.asarray(be.to_numpy(value), dtype=np.float64)


# ------------------------------------------------------ discrete and conjugate updates


def log_posterior(be: Backend, log_prior: Any, log_likelihoods: Any) -> Array:
    """Normalized log posterior over k hypotheses, computed in log space so nothing underflows.

    ``log_prior`` has shape (k,) (it need not be normalized; -inf rules a hypothesis out);
    ``log_likelihoods`` has shape (k,) or (n, k): log p(observation i | hypothesis j), summed
    over the n observations. A product of 1,000 likelihoods near 0.5 is ~1e-301, which float32
    flushes to zero; the sum of their logs is an ordinary number.
    """
    prior, loglik = be.from_host(log_prior), be.from_host(log_likelihoods)
    prior_shape, loglik_shape = tuple(prior.shape), tuple(loglik.shape)
    if len(prior_shape) != 1 or len(loglik_shape) not in (1, 2) \
            or loglik_shape[-1] != prior_shape[0]:
        raise InvalidArgument(
            "log_posterior needs log_prior of shape (k,) and log_likelihoods of shape (k,) or "
            f"(n, k); got {prior_shape} and {loglik_shape}"
        )
    if len(loglik_shape) == 2:
        loglik = be.sum(loglik, axis=0)
    unnormalized = be.add(prior, loglik)
    best = float(be.to_numpy(be.max(unnormalized)))
    if not np.isfinite(best):
        raise InvalidArgument(
            f"the largest unnormalized log posterior is {best}: every hypothesis has "
            "probability zero after these observations, or the inputs hold NaN or +inf; "
            "check log_prior and log_likelihoods"
        )
    log_evidence = be.logsumexp(unnormalized)
    return be.subtract(unnormalized, log_evidence)


@dataclass(frozen=True)
class BetaPosterior:
    """A Beta(alpha, beta) belief about a success probability, e.g. a coin's bias."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        """alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def variance(self) -> float:
        """alpha beta / ((alpha + beta)^2 (alpha + beta + 1)); shrinks like 1/n with data."""
        total = self.alpha + self.beta
        return self.alpha * self.beta / (total * total * (total + 1))


def beta_binomial_update(alpha: float, beta: float, successes: float,
                         failures: float) -> BetaPosterior:
    """Beta prior + binomial data -> Beta(alpha + successes, beta + failures), exactly.

    The conjugate shortcut needs no grid and no backend: the data enter only through counts.
    ``beta_binomial_update(1, 1, ...)`` starts from the uniform prior.
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        check_positive(name, value)
    for name, value in (("successes", successes), ("failures", failures)):
        check_positive(name, value, "a finite count >= 0", allow_zero=True)
    return BetaPosterior(float(alpha + successes), float(beta + failures))


# --------------------------------------------------------- Bayesian linear regression


def bayesian_linear_regression(be: Backend, X: Any, y: Any, prior_var: float,
                               noise_var: float) -> tuple[Array, Array]:
    """Posterior (mean, covariance) of w in y = X w + noise, noise ~ N(0, noise_var).

    Prior w ~ N(0, prior_var I). The posterior is Gaussian with precision
    A = X^T X / noise_var + I / prior_var, covariance A^-1 and mean A^-1 X^T y / noise_var.
    X^T X and X^T y, the O(n d^2) part, run on the backend; the d x d solve runs on the host in
    float64 with NumPy (the protocol has no solver, and for the small d of this model the solve
    is tiny). Add a column of ones to X for an intercept. Returns backend arrays (d,), (d, d).
    """
    for name, value in (("prior_var", prior_var), ("noise_var", noise_var)):
        check_positive(name, value, "a finite variance > 0")
    xs, ys = be.from_host(X), be.from_host(y)
    if len(xs.shape) == 1:
        xs = be.reshape(xs, (-1, 1))
    x_shape, y_shape = tuple(xs.shape), tuple(ys.shape)
    if len(x_shape) != 2 or y_shape != (x_shape[0],) or x_shape[0] == 0:
        raise InvalidArgument(
            f"X must have shape (n, d) and y shape (n,) with n >= 1; got X {x_shape} and "
            f"y {y_shape}"
        )
    xt = be.matrix_transpose(xs)
    gram = be.to_numpy(be.matmul(xt, xs)).astype(np.float64)
    moment = be.to_numpy(be.matmul(xt, ys)).astype(np.float64)
    if not (np.isfinite(gram).all() and np.isfinite(moment).all()):
        raise InvalidArgument("X and y must be finite numbers (found NaN or inf)")
    precision = gram / noise_var + np.eye(x_shape[1]) / prior_var
    cov = np.linalg.solve(precision, np.eye(x_shape[1]))
    mean = np.linalg.solve(precision, moment / noise_var)
    return be.from_host(mean), be.from_host((cov + cov.T) / 2)


# ------------------------------------------------------------------ naive Bayes text


TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case runs of letters and digits: "Win £500 NOW!" -> ['win', '500', 'now']."""
    return TOKEN.findall(text.lower())


class NaiveBayes:
    """Multinomial naive Bayes over word counts, with Laplace (add-alpha) smoothing.

    Training counts words on the host; the class log-likelihoods and every prediction are
    computed on the backend in log space (a count matrix times a log-likelihood matrix), so the
    classifier runs, and agrees, on every backend. Words never seen in training are ignored.

        >>> model = NaiveBayes(be).fit(train.texts, train.labels)   # doctest: +SKIP
        >>> model.accuracy(test.texts, test.labels)                 # doctest: +SKIP
    """

    def __init__(self, be: Backend, alpha: float = 1.0) -> None:
        check_positive("alpha", alpha, "a finite smoothing count > 0 (1 is Laplace)")
        self.be = be
        self.alpha = float(alpha)
        self.classes_: tuple[str, ...] = ()
        self.vocabulary_: dict[str, int] = {}
        self.log_prior_: Array = None
        self.log_likelihood_: Array = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> NaiveBayes:
        """Learn class frequencies and smoothed per-class word probabilities; returns self."""
        _check_texts(texts, labels)
        self.classes_ = tuple(sorted(set(labels)))
        if len(self.classes_) < 2:
            raise invalid("labels", self.classes_, "at least two different classes")
        self.vocabulary_ = {word: i for i, word in
                            enumerate(sorted({w for t in texts for w in tokenize(t)}))}
        be = self.be
        onehot = be.from_host(np.array([[label == c for c in self.classes_] for label in labels],
                                     dtype=np.float64))
        word_counts = be.matmul(be.matrix_transpose(onehot), self._counts(texts))  # (k, V)
        smoothed = be.add(word_counts, self.alpha)
        self.log_likelihood_ = be.subtract(be.log(smoothed),
                                           be.log(be.sum(smoothed, axis=1, keepdims=True)))
        self.log_prior_ = be.subtract(be.log(be.sum(onehot, axis=0)), float(np.log(len(labels))))
        return self

    def predict_log_proba(self, texts: Sequence[str]) -> Array:
        """log P(class | text) for each text, shape (n, k), columns in ``classes_`` order."""
        if not self.classes_:
            raise GradbridgeError("this NaiveBayes is not fitted yet; call fit(texts, labels)")
        _check_texts(texts)
        be = self.be
        joint = be.add(be.matmul(self._counts(texts), be.matrix_transpose(self.log_likelihood_)),
                       self.log_prior_)
        return be.subtract(joint, be.logsumexp(joint, axis=1, keepdims=True))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable class of each text (ties go to the first class in order)."""
        best = np.argmax(self.be.to_numpy(self.predict_log_proba(texts)), axis=1)
        return [self.classes_[i] for i in best]

    def accuracy(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """Fraction of texts whose predicted class equals the label."""
        _check_texts(texts, labels)
        return float(np.mean([p == t for p, t in zip(self.predict(texts), labels, strict=True)]))

    def _counts(self, texts: Sequence[str]) -> Array:
        """Word-count matrix (n, V) over the training vocabulary, on the backend."""
        counts = np.zeros((len(texts), len(self.vocabulary_)))
        for row, text in enumerate(texts):
            for word in tokenize(text):
                column = self.vocabulary_.get(word)
                if column is not None:
                    counts[row, column] += 1
        return self.be.from_host(counts)


def _check_texts(texts: Sequence[str], labels: Sequence[str] | None = None) -> None:
    if isinstance(texts, str) or len(texts) == 0:
        raise invalid("texts", texts, "a non-empty sequence of strings")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise invalid(f"texts[{i}]", text, "a string")
    if labels is not None and len(labels) != len(texts):
        raise InvalidArgument(
            f"texts and labels must have the same length; got {len(texts)} texts and "
            f"{len(labels)} labels"
        )


class LabeledTexts(NamedTuple):
    """Messages and their labels, in the same order."""

    texts: list[str]
    labels: list[str]


def load_spam_corpus() -> tuple[LabeledTexts, LabeledTexts]:
    """The shipped SMS-style corpus as its fixed (train, test) split; labels 'spam' and 'ham'.

    The messages were written for gradbridge (template sentences with varied fillers, including
    hard cases such as ham that mentions prizes or money); the file is
    ``gradbridge/data/spam_corpus.tsv`` with columns split, label, text.
    """
    resource = importlib.resources.files("gradbridge") / "data" / "spam_corpus.tsv"
    reader = csv.DictReader(io.StringIO(resource.read_text(encoding="utf-8")),
                            delimiter="\t", quoting=csv.QUOTE_NONE)
    parts: dict[str, LabeledTexts] = {"train": LabeledTexts([], []),
                                      "test": LabeledTexts([], [])}
    for row in reader:
        parts[row["split"]].texts.append(row["text"])
        parts[row["split"]].labels.append(row["label"])
    return parts["train"], parts["test"]
