"""The fitted model's methods (mutation round on _fitted).

``log_marginal_likelihood`` at the fitted prior returns the stored evidence
itself, also where refactorising the posterior is not a no-op (a prior
scale other than 1); the latent Gaussian of inputs far outside the training
range is refused by name, the covariance checked as well as the mean, with
no NumPy warning on the way; a warm start resumes the evidence tuning only
from an ``alpha_`` that was tuned.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

import sklaplace._fitted
from sklaplace import LaplaceMLPClassifier
from sklaplace._testing import dense_ggn, numerical_jacobian


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X)[:103], y[:103]


@pytest.mark.parametrize("scale, bias_precision", [(0.3, 0.1), (100.0, 0.0)])
def test_the_default_arguments_give_the_stored_evidence_under_a_prior_scale(
    iris, scale, bias_precision, monkeypatch
):
    """Under a prior scale the default arguments still give the stored value.

    ``posterior_`` is built with ``scale`` times the MAP's prior, the stored
    ``log_marginal_likelihood_`` at the MAP's own prior: changing the
    posterior's prior back reaches the same value only to round-off (a few
    1e-15 to 2e-13 here, 1e-12 elsewhere), so the fitted prior -- by default
    or given explicitly -- must return the stored number, bit for bit. A
    prior 1% away is evaluated anew, and differs. Whether round-off moves
    the refactorised value is the build's, so whether the stored number is
    returned, not a refactorisation that happens to reach its bits, is
    asked of the evaluation itself (two cases: 0.3, and 100 with a flat
    bias prior; a full posterior).
    """
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (4,),
            alpha=0.5,
            bias_prior_precision=bias_precision,
            hessian_structure="full",
            prior_precision_scale=scale,
            random_state=0,
            max_iter=100,
        ).fit(X, y)
    stored = clf.log_marginal_likelihood_
    assert np.isfinite(stored)
    evaluated = []

    def spy(*args, **kwargs):
        evaluated.append(args)
        return real(*args, **kwargs)

    real = sklaplace._fitted.log_evidence_at_prior
    monkeypatch.setattr(sklaplace._fitted, "log_evidence_at_prior", spy)
    assert clf.log_marginal_likelihood() == stored
    fitted = dict(alpha=0.5, bias_prior_precision=bias_precision)
    assert clf.log_marginal_likelihood(**fitted) == stored
    assert not evaluated  # the stored number, not a refactorisation
    assert clf.log_marginal_likelihood(alpha=0.505) != stored
    assert len(evaluated) == 1
    # Evaluated beside the fitted prior, it continues into the stored value
    # (the prior scale dropped from the prior change passed the test above).
    nearby = clf.log_marginal_likelihood(alpha=0.5 * (1 + 1e-9))
    assert len(evaluated) == 2
    assert nearby == pytest.approx(stored, abs=1e-6)


@pytest.mark.parametrize("weak", ["alpha", "bias_prior_precision"])
def test_the_evidence_at_a_nearby_small_prior_is_evaluated_anew(weak):
    # Logistic regression (no hidden layer) at a weak prior of 1e-8 on the
    # weights (the bias at its default) or on the bias alone (alpha 1):
    # halving it differs from the fitted prior by 5e-9 only, which
    # np.allclose (atol 1e-8) takes for "the same prior", but the Laplace
    # evidence moves by (n / 2) log(1/2) from the prior's normalisation of
    # its n parameters alone (the data's curvature dwarfs the prior's, so
    # the log determinant and the penalty move by about 1e-8). Ignoring the
    # argument would give a change of 0.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(24, 3))
    y = (X[:, 0] + rng.normal(size=24) > 0).astype(int)  # noisy: a finite MAP
    priors = {"alpha": 1.0, weak: 1e-8}
    clf = LaplaceMLPClassifier(
        (),
        hessian_structure="full",
        prior_precision_scale=1.0,
        random_state=0,
        **priors,
    ).fit(X, y)
    n = (clf.coefs_ if weak == "alpha" else clf.intercepts_)[0].size
    change = clf.log_marginal_likelihood(**{weak: 5e-9}) - clf.log_marginal_likelihood_
    assert change == pytest.approx(0.5 * n * np.log(0.5), rel=1e-4)


X3, Y3 = np.random.RandomState(0).normal(size=(40, 3)), np.arange(40) % 3
# What overflowed is named: the latent Gaussian, checked before any link.
PATTERN = (
    r"^The logits or their covariance overflowed \(are not finite\) for 1 of 4 "
    r"samples \(rows \[2\]\)"
)


@pytest.mark.parametrize("structure", ["full", "kron"])
@pytest.mark.parametrize("hidden", [(), (3,)], ids=["no-hidden", "one-hidden"])
@pytest.mark.parametrize("method", ["predict_proba", "latent_mean_and_variance"])
def test_overflowing_predictions_raise_no_numpy_warning_on_the_way(
    hidden, structure, method
):
    """A row whose covariance overflows is refused by name, with no RuntimeWarning.

    Features 1e160 times the training scale give finite logits (about 1e160)
    but a covariance of about 1e320: the covariance is checked as well as the
    mean (the probit link could turn ``mean / sqrt(inf)`` into a probability
    of exactly 1/2 without a word), and the error names the row and what
    overflowed. The latent Gaussian is computed under ``np.errstate(over=...,
    invalid=...)`` so that this error is the only report; without it NumPy
    warns "overflow encountered" or (the Kronecker posterior's products of
    infinities) "invalid value" first. The existing test wraps the call in
    its own ``np.errstate``, so it could not see that.
    """
    clf = LaplaceMLPClassifier(
        hidden,
        alpha=1.0,
        hessian_structure=structure,
        max_iter=50,
        random_state=0,
    ).fit(X3, Y3)
    X = X3[:4].copy()
    X[2] *= 1e160
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=PATTERN):
            getattr(clf, method)(X)


def test_a_warm_start_resumes_the_evidence_only_from_a_tuned_alpha(iris):
    """Only a tuned ``alpha_`` is the evidence tuning's start on a warm refit.

    After a fit at a fixed alpha of 37, switching to ``alpha="evidence"``
    with ``warm_start=True`` keeps the MAP but starts MacKay's updates from
    ``EVIDENCE_STARTS``, as a cold fit does: 37 was the user's choice, not a
    fixed point to resume from (resuming from it made 37 the run's first
    alpha). A refit after that tuned fit does resume from its ``alpha_``.
    """
    from sklaplace._evidence import EVIDENCE_STARTS

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (3,), alpha=37.0, warm_start=True, random_state=0
        ).fit(X, y)
        assert clf.alpha_history_ == []
        clf.set_params(alpha="evidence").fit(X, y)
        first = [float(np.ravel(a)[0]) for a in clf.alpha_history_[:1]]
        assert first == [EVIDENCE_STARTS[0]]
        tuned = clf.alpha_
        clf.fit(X, y)
    assert float(np.ravel(clf.alpha_history_[0])[0]) == tuned


@pytest.mark.parametrize(
    "param, value",
    [("link_approx", "bogus"), ("n_mc_samples", 0), ("n_mc_samples", None)],
)
def test_prediction_settings_changed_after_fit_are_validated(iris, param, value):
    """``link_approx`` and ``n_mc_samples`` act at prediction, and may be set
    after ``fit`` (the demo does): a bad value is refused naming the
    parameter (it had raised ``KeyError: 'bogus'``, ``ZeroDivisionError``
    and a ``TypeError`` on ``None``), and a good one takes effect."""
    X, y = iris
    clf = LaplaceMLPClassifier((3,), alpha=1.0, prior_precision_scale=1.0)
    clf.fit(X, y).set_params(**{param: value})
    for method in (clf.predict_proba, clf.predict, clf.decision_function):
        with pytest.raises(ValueError, match=f"'{param}' parameter"):
            method(X[:2])
    clf.set_params(link_approx="map", n_mc_samples=100)
    mean, _ = clf.latent_mean_and_variance(X[:2])
    np.testing.assert_allclose(clf.decision_function(X[:2]), mean, rtol=1e-12)


class _NoPosterior:
    """Stands in for ``posterior_``: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the plug-in read posterior_.{name}")


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_the_plug_in_predicts_from_the_weights_alone(iris, structure):
    """``link_approx="map"`` is the softmax of the MAP's logits: it needs no
    Jacobian nor posterior (it had built both, so plug-in predictions cost
    what the Laplace predictive does: 13.8 s for 30,000 rows with a full
    posterior, W = 2,504). The reference is the network written out by hand;
    rows whose logits overflow are still refused by name."""
    X, y = iris
    clf = LaplaceMLPClassifier(
        (4,),
        activation="tanh",
        alpha=1.0,
        prior_precision_scale=1.0,
        hessian_structure=structure,
        link_approx="map",
        random_state=0,
    ).fit(X, y)
    clf.posterior_ = _NoPosterior()
    hidden = np.tanh(X @ clf.coefs_[0] + clf.intercepts_[0])
    logits = hidden @ clf.coefs_[1] + clf.intercepts_[1]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), expected, rtol=1e-12)
    np.testing.assert_allclose(clf.decision_function(X), logits, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.argmax(logits, axis=1))
    # Every hidden unit at tanh(10) and output weights of 1e308: logits of inf.
    clf.coefs_[0][...], clf.intercepts_[0][...], clf.coefs_[1][...] = 0.0, 10.0, 1e308
    with pytest.raises(ValueError, match="The logits overflowed"):
        clf.predict_proba(X[:2])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_tie_is_predicted_as_the_first_class(iris, n_classes):
    """Logits of exactly 0 (the output layer's weights and biases zeroed):
    every probability is 1/K, and ``predict`` takes the first of the tied
    classes, ``classes_[argmax(predict_proba)]`` as NumPy's argmax and
    scikit-learn do, with one logit as with K (mutant: ``>= 0`` for the
    binary decision, which gives the second class, survived)."""
    X, y = iris
    y = np.minimum(y, n_classes - 1)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    clf.coefs_[-1][...], clf.intercepts_[-1][...] = 0.0, 0.0
    proba = clf.predict_proba(X[:5])
    np.testing.assert_array_equal(proba, np.full((5, n_classes), 1 / n_classes))
    np.testing.assert_array_equal(clf.predict(X[:5]), np.zeros(5, dtype=int))


# Mutation round (session 57).
def test_binary_log_probabilities_have_a_column_per_class(iris):
    """With two classes ``predict_log_proba`` has two columns, the logs of
    ``predict_proba``'s (one logit, two classes: the Bernoulli's)."""
    X, y = iris
    y = (y > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    log_proba = clf.predict_log_proba(X[:10])
    assert log_proba.shape == (10, 2)
    np.testing.assert_allclose(
        np.exp(log_proba), clf.predict_proba(X[:10]), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e308])
def test_the_plug_ins_non_finite_logits_are_named_with_no_numpy_warning(iris, value):
    """The plug-in (``link_approx="map"``) refuses non-finite logits as the
    Laplace predictive does: NaN or infinity let through by
    ``assume_finite=True`` is named as such, finite features of 1e308 signed
    as the first logit's weights (whose sum overflows to infinity) as an
    overflow of the logits, each with its row and no NumPy warning on the
    way."""
    import sklearn

    X, y = iris
    clf = LaplaceMLPClassifier(
        (),
        alpha=1.0,
        prior_precision_scale=1.0,
        link_approx="map",
        random_state=0,
    ).fit(X, y)
    bad = X[:4].copy()
    bad[2] = value * np.sign(clf.coefs_[0][:, 0])
    if np.isfinite(value):
        message = r"^The logits overflowed \(are not finite\) for 1 of 4 samples "
    else:
        message = r"^X contains NaN or infinity in 1 row\(s\) \(rows \[2\]\)"
    with sklearn.config_context(assume_finite=True), warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=message):
            clf.predict_proba(bad)


def test_the_binary_decision_function_is_the_one_moderated_logit(iris):
    """With two classes ``decision_function`` is one score per sample, the
    moderated logit of ``classes_[1]``: ``logit(p_1)`` of ``predict_proba``."""
    from scipy.special import logit

    X, y = iris
    y = (y > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    scores = clf.decision_function(X[:10])
    assert scores.shape == (10,)
    proba = clf.predict_proba(X[:10])
    np.testing.assert_allclose(scores, logit(proba[:, 1]), rtol=1e-8, atol=1e-10)


def test_a_pruned_refits_evidence_is_continuous_at_its_own_prior(iris):
    """After pruning and a warm refit, the evidence at a prior 1e-9 away
    from the fitted one is the stored evidence to 1e-6: the pruned weights
    (held at zero) are not in the model, so their prior does not enter.
    Counting them moves it by nats."""
    from sklaplace import prune

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (4,),
            alpha=0.5,
            hessian_structure="diag",
            prior_precision_scale=1.0,
            warm_start=True,
            random_state=0,
        ).fit(X, y)
        pruned = prune(clf, 0.4, method="magnitude").fit(X, y)
    assert pruned.pruned_mask_.any()
    stored = pruned.log_marginal_likelihood_
    nearby = pruned.log_marginal_likelihood(alpha=0.5 * (1 + 1e-9))
    assert nearby != stored  # evaluated anew
    assert nearby == pytest.approx(stored, abs=1e-6)


def test_monte_carlo_predictions_are_those_of_the_fits_seed(iris):
    """Monte Carlo predictions use the draws seeded at fit: the same on
    every call, and a row's the same whatever rows are predicted with it
    (unseeded draws differ from call to call by far more than round-off
    with 6 draws)."""
    X, y = iris
    clf = LaplaceMLPClassifier(
        (3,),
        alpha=1.0,
        prior_precision_scale=1.0,
        link_approx="mc",
        n_mc_samples=6,
        random_state=0,
    ).fit(X, y)
    proba = clf.predict_proba(X[:8])
    np.testing.assert_array_equal(clf.predict_proba(X[:8]), proba)
    for i in (0, 5):
        np.testing.assert_allclose(
            clf.predict_proba(X[i : i + 1])[0], proba[i], rtol=1e-12, atol=1e-15
        )


def test_a_pruned_estimators_latent_covariance_leaves_out_the_pruned_weights(iris):
    """A pruned estimator's latent covariance is that of its kept parameters
    alone: ``sum_p J_p J_p' / P_pp`` over the kept ``p`` of its diagonal
    posterior, ``J`` by unit-step differences of the network written out by
    hand (exact here: with the identity activation each logit is linear in
    any one parameter). Counting the pruned weights, or pruning the kept
    ones instead, is far off."""
    from sklaplace import prune

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (4,),
            activation="identity",
            alpha=0.5,
            hessian_structure="diag",
            prior_precision_scale=1.0,
            residual_variance=0.0,
            random_state=0,
        ).fit(X, y)
        pruned = prune(clf, 0.4, method="magnitude")
    kept = ~pruned.pruned_mask_
    # The kept precisions from scratch: the GGN's diagonal at the MAP that
    # prune started from (no refit), the prior written out.
    layers = list(zip(clf.coefs_, clf.intercepts_))
    theta0 = np.concatenate([np.r_[W.ravel(), b] for W, b in layers])
    bias = clf.bias_prior_precision
    prior = np.r_[
        np.full(16, 0.5), np.full(4, bias), np.full(12, 0.5), np.full(3, bias)
    ]
    ones = np.ones(len(y))
    P0 = np.diag(dense_ggn(theta0, X, ones, prior, [4, 4, 3], "identity"))
    np.testing.assert_allclose(pruned.posterior_.precision[kept], P0[kept], rtol=1e-6)
    X = X[:6]
    layout = pruned._layout()
    theta = layout.pack(np, pruned.coefs_, pruned.intercepts_)

    def logits(t):
        (W1, W2), (b1, b2) = layout.split(np, t)
        return (X @ W1 + b1) @ W2 + b2

    J = numerical_jacobian(logits, theta, h=1.0)  # exact: linear in each parameter
    assert kept.any() and not kept.all()
    variance = np.where(kept, 1.0 / pruned.posterior_.precision, 0.0)
    expected = np.einsum("nkp,p,nlp->nkl", J, variance, J)
    mean, cov = pruned.latent_mean_and_variance(X)
    np.testing.assert_allclose(mean, logits(theta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-8, atol=1e-12)
    unpruned = np.einsum("nkp,p,nlp->nkl", J, 1.0 / pruned.posterior_.precision, J)
    assert np.max(np.abs(unpruned - expected)) > 0.1 * np.max(np.abs(expected))


def test_the_residual_variance_adds_to_every_logits_variance(iris):
    """``latent_mean_and_variance`` adds the residual variance ``v(x) I`` to
    the linearised covariance: against the same estimator with no residual
    (``residual_variance_ = 0``) the covariance grows by a nonnegative
    multiple of the identity, positive for an input far outside the data and
    growing with the distance."""
    import copy

    X, y = iris
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=1.0, residual_variance=1.0
    ).fit(X, y)
    assert clf.residual_variance_ > 0
    X_new = np.vstack([X[:3], 5.0 * X[3:4], 10.0 * X[3:4]])
    without = copy.deepcopy(clf)
    without.residual_variance_ = 0.0
    mean, cov = clf.latent_mean_and_variance(X_new)
    mean0, cov0 = without.latent_mean_and_variance(X_new)
    np.testing.assert_array_equal(mean, mean0)
    added = cov - cov0
    v = added[:, 0, 0]
    np.testing.assert_allclose(
        added, v[:, None, None] * np.eye(3), rtol=1e-10, atol=1e-10 * np.max(v)
    )
    assert np.all(v >= 0.0)
    assert 0.0 < v[3] < v[4]


def test_the_latent_moments_refuse_inputs_of_another_width(iris):
    # Checked against the fitted width, not refitted to it.
    X, y = iris
    clf = LaplaceMLPClassifier((3,), alpha=1.0, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but"):
        clf.latent_mean_and_variance(X[:, :2])
    assert clf.n_features_in_ == X.shape[1]
    mean, cov = clf.latent_mean_and_variance(X[:3])
    assert mean.shape == (3, 3) and cov.shape == (3, 3, 3)
