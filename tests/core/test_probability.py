"""Bayes on every backend against closed forms computed here in plain Python and NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_backend, tolerance

from gradbridge.core import probability as pr
from gradbridge.core.backend import Backend, GradbridgeError, InvalidArgument
from gradbridge.experiments.seed import tutorial_data

TUTORIAL = {"prior": 0.01, "sensitivity": 0.95, "false_positive_rate": 0.05}
TUTORIAL_POSTERIOR = 0.16101694915254236  # the tutorial's own float64 result


def host(be: Backend, x: object) -> np.ndarray:
    return np.asarray(be.to_numpy(x), dtype=np.float64)


def bayes_reference(prior: float, sens: float, fpr: float) -> float:
    """The tutorial's formula, written out in plain Python floats."""
    return (sens * prior) / (sens * prior + fpr * (1 - prior))


# ------------------------------------------------------------------ diagnostic tests


def test_tutorial_medical_test(backend: Backend) -> None:
    # The tutorial's formula in plain Python gives its printed number bit for bit.
    assert bayes_reference(0.01, 0.95, 0.05) == TUTORIAL_POSTERIOR
    got = float(host(backend, pr.posterior(backend, **TUTORIAL)))
    # float64: same operations in the same order, so rounding-level agreement (1e-12);
    # float32: inputs and each of ~5 ops round at ~6e-8, so 1e-6 absolute is ample.
    assert got == pytest.approx(TUTORIAL_POSTERIOR, abs=1e-12 if backend.dtype == "float64"
                                else 1e-6)
    evidence = float(host(backend, pr.evidence(backend, **TUTORIAL)))
    assert evidence == pytest.approx(0.95 * 0.01 + 0.05 * 0.99, rel=tolerance(backend))


def test_vectorized_over_priors_and_inputs(backend: Backend) -> None:
    priors = np.linspace(0.0, 1.0, 11)
    expected = np.array([bayes_reference(p, 0.95, 0.05) for p in priors])
    for given in (priors, list(priors), backend.from_host(priors)):
        got = host(backend, pr.posterior(backend, given, 0.95, 0.05))
        # tolerance(be): float64 agrees to rounding, float32 to ~1e-5 relative (short op chain).
        np.testing.assert_allclose(got, expected, rtol=tolerance(backend), atol=1e-7)
    evidence = host(backend, pr.evidence(backend, priors, 0.95, 0.05))
    np.testing.assert_allclose(evidence, 0.95 * priors + 0.05 * (1 - priors),
                               rtol=tolerance(backend), atol=1e-7)


def test_arguments_broadcast(backend: Backend) -> None:
    priors = np.array([[0.001], [0.01], [0.1]])
    sens = np.array([0.8, 0.9, 0.99])
    got = host(backend, pr.posterior(backend, priors, sens, 0.02))
    expected = sens * priors / (sens * priors + 0.02 * (1 - priors))
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected, rtol=tolerance(backend))


@pytest.mark.parametrize("name", ["prior", "sensitivity", "false_positive_rate"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_probabilities_outside_unit_interval_are_rejected(name: str, value: float) -> None:
    be = make_backend("numpy", "float64")
    args = {**TUTORIAL, name: value}
    for fn in (pr.posterior, pr.evidence):
        with pytest.raises(InvalidArgument, match=rf"{name}=.*{value}.*\[0, 1\]"):
            fn(be, **args)


def test_bad_element_of_an_array_is_located_and_percentages_get_a_hint() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match=r"prior=2\.0.*element \(1,\)"):
        pr.posterior(be, [0.1, 2.0], 0.9, 0.1)
    with pytest.raises(InvalidArgument, match=r"5% is 0\.05"):
        pr.posterior(be, 0.01, 0.95, 5)


@pytest.mark.parametrize("prior, sens, fpr", [(0.0, 0.9, 0.0), (0.3, 0.0, 0.0), (1.0, 0.0, 0.4)])
def test_zero_probability_evidence_is_an_error(prior: float, sens: float, fpr: float) -> None:
    # In each case sens*prior + fpr*(1-prior) is exactly 0: a positive test cannot happen.
    be = make_backend("numpy", "float64")
    for fn in (pr.posterior, pr.evidence):
        with pytest.raises(InvalidArgument, match=r"P\(positive test\) = 0.*zero-probability"):
            fn(be, prior, sens, fpr)


def test_shapes_that_do_not_broadcast_are_named() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match=r"prior \(3,\), sensitivity \(2,\)"):
        pr.posterior(be, [0.1, 0.2, 0.3], [0.5, 0.6], 0.1)


# ------------------------------------------------------------------ sequential updating


def test_sequential_update_matches_the_batch_closed_form(backend: Backend) -> None:
    prior, sens, fpr = 0.01, 0.95, 0.05
    results = [True, True, False, True]
    got = host(backend, pr.sequential_update(backend, prior, sens, fpr, results))
    # Independent tests multiply: after k positives and m negatives the odds are
    # prior odds x (sens/fpr)^k x ((1-sens)/(1-fpr))^m.
    expected = []
    for i in range(1, len(results) + 1):
        k = sum(results[:i])
        m = i - k
        a = prior * sens**k * (1 - sens) ** m
        b = (1 - prior) * fpr**k * (1 - fpr) ** m
        expected.append(a / (a + b))
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=tolerance(backend))
    assert got[0] == pytest.approx(TUTORIAL_POSTERIOR, rel=tolerance(backend))


def test_sequential_update_is_vectorized_and_order_free(backend: Backend) -> None:
    priors = np.array([0.001, 0.01, 0.2])
    one = host(backend, pr.sequential_update(backend, priors, 0.9, 0.1, [True, False]))
    other = host(backend, pr.sequential_update(backend, priors, 0.9, 0.1, [False, True]))
    assert one.shape == (2, 3)
    # Same evidence in another order: same final belief (up to rounding, tolerance(be)).
    np.testing.assert_allclose(one[-1], other[-1], rtol=tolerance(backend))


def test_sequential_update_rejects_impossible_and_malformed_results() -> None:
    be = make_backend("numpy", "float64")
    # A perfect test (sensitivity 1) on someone surely ill cannot come back negative.
    with pytest.raises(InvalidArgument, match=r"P\(negative test \(results\[1\]\)\) = 0"):
        pr.sequential_update(be, 1.0, 1.0, 0.1, [True, False])
    with pytest.raises(InvalidArgument, match=r"results\[1\]=1"):
        pr.sequential_update(be, 0.1, 0.9, 0.1, [True, 1])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="at least one"):
        pr.sequential_update(be, 0.1, 0.9, 0.1, [])


# ------------------------------------------------------------------ natural frequencies


def test_natural_frequencies_of_the_tutorial() -> None:
    counts = pr.natural_frequencies(0.01, 0.95, 0.05)
    # By hand: 1% of 10,000 = 100 ill, 95% of them = 95 positive; 9,900 healthy, 5% = 495.
    assert (counts.sick, counts.true_positives, counts.false_negatives) == (100, 95, 5)
    assert (counts.healthy, counts.false_positives, counts.true_negatives) == (9900, 495, 9405)
    assert counts.positives == 590
    assert counts.true_positives / counts.positives == pytest.approx(TUTORIAL_POSTERIOR, abs=1e-3)


@pytest.mark.parametrize("prior, sens, fpr, population", [
    (0.003, 0.87, 0.013, 10_000), (0.5, 0.5, 0.5, 7), (0.0, 1.0, 0.0, 100), (1.0, 0.99, 1.0, 1),
])
def test_natural_frequencies_add_up_and_round_to_nearest(prior: float, sens: float, fpr: float,
                                                         population: int) -> None:
    c = pr.natural_frequencies(prior, sens, fpr, population=population)
    assert c.sick + c.healthy == population
    assert c.true_positives + c.false_negatives == c.sick
    assert c.false_positives + c.true_negatives == c.healthy
    assert abs(c.sick - population * prior) <= 0.5
    assert abs(c.true_positives - c.sick * sens) <= 0.5
    assert abs(c.false_positives - c.healthy * fpr) <= 0.5


def test_natural_frequencies_validate() -> None:
    for population in (0, -5, 2.5, True):
        with pytest.raises(InvalidArgument, match="population"):
            pr.natural_frequencies(0.1, 0.9, 0.1, population=population)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"sensitivity=1\.2"):
        pr.natural_frequencies(0.1, 1.2, 0.1)
    with pytest.raises(InvalidArgument, match="single probability"):
        pr.natural_frequencies([0.1, 0.2], 0.9, 0.1)  # type: ignore[arg-type]


# ------------------------------------------------------------- discrete Bayes on a grid


GRID = (np.arange(1000) + 0.5) / 1000  # midpoints of 1,000 bins of a coin's bias in (0, 1)


def coin_flips(n: int = 1000, bias: float = 0.3, seed: int = 7) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < bias).astype(np.float64)


def test_grid_posterior_of_a_coin_does_not_underflow(backend: Backend) -> None:
    flips = coin_flips()
    heads, tails = flips.sum(), (1 - flips).sum()
    per_flip = np.where(flips[:, None] == 1, np.log(GRID), np.log1p(-GRID))  # (1000, 1000)
    # Multiplying the 1,000 likelihoods directly underflows to exactly 0 in float32 for every
    # hypothesis: that is the failure log space avoids.
    assert not np.exp(per_flip.astype(np.float32)).prod(axis=0, dtype=np.float32).any()

    log_post = host(backend, pr.log_posterior(backend, np.zeros(1000), per_flip))
    # Reference: uniform prior x binomial likelihood = Beta(1 + heads, 1 + tails) density,
    # its closed-form log written with the counts, normalized on the grid in float64.
    ref = heads * np.log(GRID) + tails * np.log1p(-GRID)
    ref = np.exp(ref - ref.max())
    ref /= ref.sum()
    got = np.exp(log_post)
    assert np.isfinite(log_post).all()
    # float64: 1,000-term sums of logs (~-600) in another order: ~1e-12 relative; 1e-9 on
    # probabilities leaves room. float32: each summed log carries ~|sum| x 6e-8 x sqrt(1000)
    # ~ 1e-3 of rounding, so probabilities agree to a few 1e-3 relative; compare at 1e-2.
    rtol = 1e-9 if backend.dtype == "float64" else 1e-2
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * ref.max())
    assert got.sum() == pytest.approx(1.0, rel=tolerance(backend) * 10)
    # The grid posterior's mean and variance are the conjugate Beta's (midpoint rule on a
    # smooth density that vanishes at both ends: error far below 1e-6).
    beta = pr.beta_binomial_update(1, 1, heads, tails)
    mean = float((GRID * got).sum())
    variance = float(((GRID - mean) ** 2 * got).sum())
    assert mean == pytest.approx(beta.mean, rel=1e-6 if backend.dtype == "float64" else 1e-4)
    assert variance == pytest.approx(beta.variance,
                                     rel=1e-6 if backend.dtype == "float64" else 1e-2)


def test_log_posterior_normalizes_and_accepts_summed_likelihoods(backend: Backend) -> None:
    log_prior = np.log(np.array([0.2, 0.3, 0.5]))
    log_lik = np.array([-1.0, -2.0, -0.5])
    expected = log_prior + log_lik - np.log(np.exp(log_prior + log_lik).sum())
    got = host(backend, pr.log_posterior(backend, log_prior, log_lik))
    np.testing.assert_allclose(got, expected, rtol=tolerance(backend))
    # An unnormalized prior (shifted by a constant) gives the same posterior.
    shifted = host(backend, pr.log_posterior(backend, log_prior + 40.0, log_lik))
    np.testing.assert_allclose(shifted, expected, rtol=tolerance(backend) * 10)
    # A hypothesis ruled out by the prior (-inf) stays impossible without NaNs elsewhere.
    ruled_out = host(backend, pr.log_posterior(backend, [0.0, -np.inf, 0.0], log_lik))
    assert ruled_out[1] == -np.inf and np.isfinite(ruled_out[[0, 2]]).all()


def test_log_posterior_errors() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match=r"\(3,\) and \(5, 2\)"):
        pr.log_posterior(be, np.zeros(3), np.zeros((5, 2)))
    with pytest.raises(InvalidArgument, match="every hypothesis has probability zero"):
        pr.log_posterior(be, [-np.inf, -np.inf], [0.0, 0.0])


def test_beta_binomial_update_closed_form() -> None:
    post = pr.beta_binomial_update(2, 3, successes=7, failures=4)
    assert (post.alpha, post.beta) == (9.0, 7.0)
    assert post.mean == 9 / 16
    assert post.variance == pytest.approx(9 * 7 / (16**2 * 17), rel=1e-15)
    for bad in ({"alpha": 0}, {"beta": -1}, {"successes": -1}, {"failures": float("nan")}):
        args = {"alpha": 1, "beta": 1, "successes": 3, "failures": 2, **bad}
        with pytest.raises(InvalidArgument, match=next(iter(bad))):
            pr.beta_binomial_update(**args)


# ------------------------------------------------------- Bayesian linear regression


def reference_posterior(X: np.ndarray, y: np.ndarray, prior_var: float,
                        noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed form: precision X^T X / s2 + I / t2; mean = precision^-1 X^T y / s2."""
    precision = X.T @ X / noise_var + np.eye(X.shape[1]) / prior_var
    return (np.linalg.solve(precision, X.T @ y / noise_var),
            np.linalg.solve(precision, np.eye(X.shape[1])))


def test_bayesian_linear_regression_closed_form(backend: Backend) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([-1.5, 0.7, 2.0]) + 0.3 * rng.normal(size=60)
    mean, cov = pr.bayesian_linear_regression(backend, X, y, prior_var=4.0, noise_var=0.09)
    ref_mean, ref_cov = reference_posterior(X, y, 4.0, 0.09)
    # float64: X^T X and X^T y are 60-term sums in another order: ~1e-14 relative, then a
    # well-conditioned 3x3 solve, so tolerance(be). float32: the sums carry ~1e-6 relative
    # error, amplified by the condition number (~3) of the precision: 1e-4.
    rtol = tolerance(backend) if backend.dtype == "float64" else 1e-4
    np.testing.assert_allclose(host(backend, mean), ref_mean, rtol=rtol)
    np.testing.assert_allclose(host(backend, cov), ref_cov, rtol=rtol, atol=rtol * 1e-3)
    got_cov = host(backend, cov)
    np.testing.assert_array_equal(got_cov, got_cov.T)
    assert (np.linalg.eigvalsh(got_cov) > 0).all()


def test_bayesian_regression_on_the_tutorial_data_recovers_the_line(backend: Backend) -> None:
    x, y = tutorial_data()
    design = np.column_stack([x, np.ones_like(x)])
    mean, cov = pr.bayesian_linear_regression(backend, design, y, prior_var=100.0,
                                              noise_var=0.25)
    w, b = host(backend, mean)
    assert abs(w - 3) < 0.1 and abs(b - 2) < 0.1  # the design card's bound
    # With a broad prior the posterior mean is the least-squares fit (prior shrinkage ~1e-5).
    lstsq = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose([w, b], lstsq, rtol=1e-4)
    # Its spread is the noise over sqrt(n): about 0.05 for each parameter here.
    assert np.sqrt(np.diag(host(backend, cov))) == pytest.approx([0.05, 0.05], rel=0.2)


def test_bayesian_regression_validates() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match=r"X \(10, 2\) and y \(9,\)"):
        pr.bayesian_linear_regression(be, np.ones((10, 2)), np.ones(9), 1.0, 1.0)
    with pytest.raises(InvalidArgument, match="noise_var=0"):
        pr.bayesian_linear_regression(be, np.ones((10, 2)), np.ones(10), 1.0, 0)
    with pytest.raises(InvalidArgument, match="NaN or inf"):
        pr.bayesian_linear_regression(be, np.full((3, 1), np.nan), np.ones(3), 1.0, 1.0)


# ------------------------------------------------------------------ naive Bayes


TOY_TRAIN = (["win money now", "win a prize now", "lunch at noon", "money for lunch"],
             ["spam", "spam", "ham", "ham"])


def test_naive_bayes_matches_hand_computed_toy(backend: Backend) -> None:
    model = pr.NaiveBayes(backend).fit(*TOY_TRAIN)
    # By hand, add-one smoothing. Vocabulary (9 words): a at for lunch money noon now prize win.
    # spam words (7): win 2, money 1, now 2, a 1, prize 1 -> P(w|spam) = (count + 1) / (7 + 9)
    # ham words (6): lunch 2, at 1, noon 1, money 1, for 1 -> P(w|ham) = (count + 1) / (6 + 9)
    # "win lunch now money" (+ an unknown word, ignored); priors 1/2 each.
    spam = math.log(1 / 2) + math.log(3 / 16) + math.log(1 / 16) + math.log(3 / 16) \
        + math.log(2 / 16)
    ham = math.log(1 / 2) + math.log(1 / 15) + math.log(3 / 15) + math.log(1 / 15) \
        + math.log(2 / 15)
    norm = math.log(math.exp(spam) + math.exp(ham))
    expected = [ham - norm, spam - norm]  # columns in sorted class order: ham, spam
    assert model.classes_ == ("ham", "spam")
    assert sorted(model.vocabulary_) == ["a", "at", "for", "lunch", "money", "noon", "now",
                                         "prize", "win"]
    got = host(backend, model.predict_log_proba(["Win lunch NOW, money! zebra"]))
    np.testing.assert_allclose(got, [expected], rtol=tolerance(backend))
    assert model.predict(["Win lunch NOW, money! zebra"]) == ["spam"]
    # A message of unknown words only is decided by the class priors (1/2 each).
    np.testing.assert_allclose(np.exp(host(backend, model.predict_log_proba(["zebra"]))),
                               [[0.5, 0.5]], rtol=tolerance(backend))


def test_spam_corpus_is_shipped_with_a_fixed_split() -> None:
    train, test = pr.load_spam_corpus()
    assert len(train.texts) + len(test.texts) >= 300
    assert len(test.texts) >= 60
    for part in (train, test):
        assert len(part.texts) == len(part.labels)
        assert set(part.labels) == {"spam", "ham"}
        assert all(text.strip() for text in part.texts)
    assert not set(train.texts) & set(test.texts)


@pytest.fixture(scope="module")
def spam_reference() -> tuple[list[str], np.ndarray]:
    """Predictions and log-probabilities of the NumPy backend in float64, for comparisons."""
    train, test = pr.load_spam_corpus()
    model = pr.NaiveBayes(make_backend("numpy", "float64")).fit(*train)
    return model.predict(test.texts), host(model.be, model.predict_log_proba(test.texts))


def test_spam_filter_accuracy_and_agreement_across_backends(
        backend: Backend, spam_reference: tuple[list[str], np.ndarray]) -> None:
    train, test = pr.load_spam_corpus()
    model = pr.NaiveBayes(backend).fit(*train)
    accuracy = model.accuracy(*test)
    assert accuracy > 0.85  # chance (always "ham") is 58/94 ~ 0.62 on the test split
    # Every backend and dtype makes the same decisions as NumPy float64 ...
    reference_labels, reference_log_proba = spam_reference
    assert model.predict(test.texts) == reference_labels
    # ... with the same log-probabilities: tolerance(be) relative, and an absolute floor of
    # tolerance(be) x |largest joint log-probability (~100)| for values that cancel to ~0.
    got = host(backend, model.predict_log_proba(test.texts))
    np.testing.assert_allclose(got, reference_log_proba, rtol=tolerance(backend),
                               atol=tolerance(backend) * 100)


def test_naive_bayes_errors() -> None:
    be = make_backend("numpy", "float64")
    with pytest.raises(InvalidArgument, match="3 texts and 2 labels"):
        pr.NaiveBayes(be).fit(["a", "b", "c"], ["x", "y"])
    with pytest.raises(InvalidArgument, match="two different classes"):
        pr.NaiveBayes(be).fit(["a", "b"], ["x", "x"])
    with pytest.raises(InvalidArgument, match="alpha=0"):
        pr.NaiveBayes(be, alpha=0)
    with pytest.raises(InvalidArgument, match="texts"):
        pr.NaiveBayes(be).fit("just one string", ["x"])
    with pytest.raises(GradbridgeError, match="not fitted"):
        pr.NaiveBayes(be).predict(["hello"])


def test_tokenize_lowercases_words_and_numbers() -> None:
    assert pr.tokenize("Win £500 NOW! Call 0800-123") == ["win", "500", "now", "call", "0800",
                                                         "123"]
