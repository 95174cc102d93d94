"""Each fitted attribute against what the fit actually used, from scratch.

The model is Bayesian logistic regression (no hidden layer), where every
quantity has a short closed-form or from-scratch definition: the MAP by
SciPy's BFGS on the objective written here, the Hessian ``X1' diag(p (1 - p))
X1 + A``, the Laplace evidence and MacKay's ``gamma``. Nothing is read from
the estimator but the attribute under test (and ``alpha_``, whose own test is
that a fit at it reproduces everything).
"""

import numpy as np
import pytest
import scipy.optimize
from sklearn.datasets import make_classification

from sklaplace import LaplaceMLPClassifier
from tests.conftest import count_hessian_products

RNG = np.random.RandomState(11)
X = RNG.normal(size=(80, 3))
Y = (X @ np.array([1.5, -1.0, 0.5]) + 0.8 * RNG.normal(size=80) > 0).astype(int)
X1 = np.c_[X, np.ones(len(X))]
BIAS = 0.3  # bias_prior_precision
SCALE = 2.0  # prior_precision_scale: the posterior's prior is SCALE * A


def _prior(alpha):
    return np.r_[np.full(3, alpha), BIAS]


def _objective(theta, A):
    f = X1 @ theta
    return np.sum(np.logaddexp(0.0, f) - Y * f) + 0.5 * np.sum(A * theta**2)


def _map(alpha):
    A = _prior(alpha)
    return scipy.optimize.minimize(
        _objective,
        np.zeros(4),
        args=(A,),
        jac=lambda t, A: X1.T @ (1 / (1 + np.exp(-X1 @ t)) - Y) + A * t,
        method="BFGS",
        options={"gtol": 1e-11},
    ).x


def _data_hessian(theta):
    p = 1.0 / (1.0 + np.exp(-X1 @ theta))
    return (X1 * (p * (1 - p))[:, None]).T @ X1


@pytest.fixture(scope="module")
def fitted():
    clf = LaplaceMLPClassifier(
        (),
        alpha="evidence",
        bias_prior_precision=BIAS,
        prior_precision_scale=SCALE,
        tol=1e-12,
    ).fit(X, Y)
    theta = _map(clf.alpha_)
    return clf, theta


def test_alpha_is_the_alpha_of_the_final_fit(fitted):
    # The prior the final MAP used holds alpha_ exactly, and a fit with the
    # fixed alpha=alpha_ reproduces the MAP and the evidence. The next MacKay
    # update differs from alpha_ by up to 1e-4 (the stopping tolerance): an
    # exact equality is the only margin that catches reporting it instead.
    clf, _ = fitted
    np.testing.assert_array_equal(clf.prior_precision_, _prior(clf.alpha_))
    assert clf.alpha_ == clf.alpha_history_[-1][0]
    refit = LaplaceMLPClassifier(
        (),
        alpha=clf.alpha_,
        bias_prior_precision=BIAS,
        prior_precision_scale=SCALE,
        tol=1e-12,
    ).fit(X, Y)
    np.testing.assert_allclose(refit.coefs_[0], clf.coefs_[0], rtol=1e-9)
    np.testing.assert_allclose(
        refit.log_marginal_likelihood_, clf.log_marginal_likelihood_, rtol=1e-10
    )


def test_alpha_is_mackays_fixed_point(fitted):
    # alpha = gamma / ||w||^2 at the MAP of alpha itself, to the 1e-4 the
    # updates stop at; alpha = 1 (the start) is 20% or more away.
    clf, theta = fitted
    A = _prior(clf.alpha_)
    covariance = np.linalg.inv(_data_hessian(theta) + np.diag(A))
    gamma = 3 - clf.alpha_ * np.trace(covariance[:3, :3])
    np.testing.assert_allclose(clf.alpha_, gamma / np.sum(theta[:3] ** 2), rtol=2e-4)
    assert abs(np.log(clf.alpha_)) > 0.2
    np.testing.assert_allclose(clf.effective_n_parameters_, [gamma], rtol=1e-6)


def test_coefs_and_intercepts_are_the_map(fitted):
    clf, theta = fitted
    np.testing.assert_allclose(clf.coefs_[0][:, 0], theta[:3], rtol=1e-7)
    np.testing.assert_allclose(clf.intercepts_[0], theta[3:], rtol=1e-7)


def test_likelihood_loss_and_evidence(fitted):
    # Each is off by more than 0.1 with a term dropped (the prior term of
    # the loss, a log det of the evidence); the tolerance is 1e-8 relative.
    clf, theta = fitted
    A = _prior(clf.alpha_)
    f = X1 @ theta
    log_lik = np.sum(Y * f - np.logaddexp(0.0, f))
    np.testing.assert_allclose(clf.log_likelihood_, log_lik, rtol=1e-8)
    np.testing.assert_allclose(clf.loss_, _objective(theta, A) / len(Y), rtol=1e-8)
    P = _data_hessian(theta) + np.diag(A)
    evidence = (
        log_lik
        - 0.5 * np.sum(A * theta**2)
        + 0.5 * np.sum(np.log(A))
        - 0.5 * np.linalg.slogdet(P)[1]
    )
    np.testing.assert_allclose(clf.log_marginal_likelihood_, evidence, rtol=1e-8)


def test_posterior_has_the_scaled_prior(fitted):
    # The posterior precision is H_data + SCALE * A (SCALE = 2: using A alone
    # moves the diagonal by alpha_ and BIAS, far above the tolerance).
    clf, theta = fitted
    assert clf.prior_precision_scale_ == SCALE
    assert clf.prior_precision_scale_path_ is None
    assert clf.curvature_ == "ggn" and clf.posterior_jitter_ == 0.0
    L = clf.posterior_.cholesky_factor
    expected = _data_hessian(theta) + SCALE * np.diag(_prior(clf.alpha_))
    np.testing.assert_allclose(L @ L.T, expected, rtol=1e-7)


def test_shapes_and_counts(fitted):
    clf, _ = fitted
    assert clf.n_features_in_ == 3 and clf.n_outputs_ == 1
    assert clf.n_layers_ == 2 and clf.out_activation_ == "logistic"
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.n_iter_ >= len(clf.alpha_history_) >= 2
    assert clf.tol_ == 1e-12 and clf.gradient_history_[-1] <= clf.tol_


def test_a_cupy_model_predicts_without_cupy(fitted, monkeypatch):
    # A model fitted with backend="cupy" still predicts where CuPy does not
    # import (on NumPy): the logits' mean x1' theta and variance
    # x1' P^{-1} x1 with P = H_data + SCALE * A (training rows: no residual
    # variance beyond the data).
    import copy

    import sklaplace._backend

    def no_cupy():
        raise ImportError("CuPy is not installed here")

    clf, theta = fitted
    clf = copy.copy(clf)
    clf.backend = "cupy"
    monkeypatch.setattr(sklaplace._backend, "_import_cupy", no_cupy)
    mean, cov = clf.latent_mean_and_variance(X[:5])
    P = _data_hessian(theta) + SCALE * np.diag(_prior(clf.alpha_))
    variance = np.einsum("ni,ij,nj->n", X1[:5], np.linalg.inv(P), X1[:5])
    np.testing.assert_allclose(mean[:, 0], X1[:5] @ theta, rtol=1e-6)
    np.testing.assert_allclose(cov[:, 0, 0], variance, rtol=1e-6)


def _recording_fits(monkeypatch):
    """Record every MAP fit of ``fit_network`` (each one's ``LaplaceFit``)."""
    import sklaplace._fitting as fitting_module

    fits, original = [], fitting_module.fit_laplace

    def recording(*args, **kwargs):
        fits.append(original(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(fitting_module, "fit_laplace", recording)
    return fits


def test_counts_and_histories_add_up_over_every_map_fit(monkeypatch):
    # The evidence refits the network; a fixed prior scale adds no fold
    # refits. The products, iterations and gradient history are those of
    # every MAP fit, not the last one's (which starts at a converged MAP).
    products = count_hessian_products(monkeypatch)
    fits = _recording_fits(monkeypatch)
    clf = LaplaceMLPClassifier(
        (4,),
        activation="tanh",
        alpha="evidence",
        solver="newton-cg",
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X, Y)
    assert len(fits) > 2 and fits[-1].result.n_iter < clf.n_iter_
    assert clf.n_hessian_products_ == len(products) > 0
    assert clf.n_iter_ == sum(fit.result.n_iter for fit in fits)
    assert len(clf.gradient_history_) == clf.n_iter_ + len(fits)
    assert len(clf.loss_curve_) == len(clf.gradient_history_)


@pytest.mark.parametrize("solver", ["newton-cg", "newton", "lbfgs"])
def test_the_loss_curve_is_the_objective_along_each_solve(solver):
    # A warm refit at another alpha starts at the first MAP: its curve begins
    # at the objective there under the new prior (2.28; the first fit's own
    # prior gives 0.25), falls at every iteration (to round-off) and ends at
    # the new MAP's objective, each per sample as loss_ (a sum is 80 times
    # larger).
    clf = LaplaceMLPClassifier(
        (),
        alpha=1.0,
        bias_prior_precision=BIAS,
        prior_precision_scale=SCALE,
        solver=solver,
        tol=1e-9,
        max_iter=1000,
    ).fit(X, Y)
    start = np.r_[clf.coefs_[0][:, 0], clf.intercepts_[0]]
    assert clf.loss_curve_[-1] == pytest.approx(clf.loss_, rel=1e-12)
    clf.set_params(alpha=30.0, warm_start=True).fit(X, Y)
    theta = np.r_[clf.coefs_[0][:, 0], clf.intercepts_[0]]
    curve = np.asarray(clf.loss_curve_)
    assert len(curve) == len(clf.gradient_history_) == clf.n_iter_ + 1
    first, last = (_objective(t, _prior(30.0)) / len(Y) for t in (start, theta))
    np.testing.assert_allclose(curve[[0, -1]], [first, last], rtol=1e-10)
    assert np.all(np.diff(curve) <= 1e-14 * curve[1:])  # a rise within round-off


def test_the_posterior_jitter_is_the_kept_fits(monkeypatch):
    # alpha's walk keeps a fit before the last one it tries. Each fit's
    # jitter is tagged with its number (a stand-in: tuned fits rarely need
    # one), so the attribute says which fit it was read from.
    fits = _recording_fits(monkeypatch)
    import sklaplace._fitting as fitting_module

    recording = fitting_module.fit_laplace

    def tagged(*args, **kwargs):
        fit = recording(*args, **kwargs)
        fits[-1] = fit._replace(jitter=len(fits) * 1e-12)
        return fits[-1]

    monkeypatch.setattr(fitting_module, "fit_laplace", tagged)
    clf = LaplaceMLPClassifier(
        (4,), alpha="validation", prior_precision_scale=1.0, random_state=0
    ).fit(X, Y)
    theta = np.concatenate(
        [np.r_[c.ravel(), b] for c, b in zip(clf.coefs_, clf.intercepts_)]
    )
    kept = [i for i, fit in enumerate(fits) if np.array_equal(fit.theta, theta)]
    assert len(kept) == 1 and kept[0] < len(fits) - 1
    assert clf.posterior_jitter_ == fits[kept[0]].jitter


def test_the_evidence_of_a_pruned_estimator_is_refused_with_the_remedy(fitted):
    # prune() drops the log likelihood (it needs the data): the evidence at
    # any prior, the fitted one included, is refused, not computed from None.
    from sklaplace import prune

    clf, _ = fitted
    pruned = prune(clf, 0.25)
    assert pruned.log_likelihood_ is None
    expected = (
        "The log evidence of a pruned estimator is not available: it needs the "
        "training data. Refit with warm_start=True (it re-trains the kept "
        "weights and keeps the pruned ones at zero) to get it."
    )
    for kwargs in ({}, {"alpha": 1.0}):
        with pytest.raises(ValueError) as caught:
            pruned.log_marginal_likelihood(**kwargs)
        assert str(caught.value) == expected
    assert np.isfinite(clf.log_marginal_likelihood(alpha=1.0))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_layer_count_and_output_link_name_what_mlpclassifier_names(n_classes):
    # Code written against MLPClassifier's attributes reads the same values.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    y = Y if n_classes == 2 else np.digitize(X[:, 0], [-0.5, 0.5])
    ours = LaplaceMLPClassifier((3, 2), alpha=1.0, prior_precision_scale=1.0).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        theirs = MLPClassifier((3, 2), max_iter=1).fit(X, y)
    assert ours.n_layers_ == theirs.n_layers_ == 4
    assert ours.out_activation_ == theirs.out_activation_


def test_loss_is_per_unit_of_sample_weight():
    # loss_ = L(theta_map) / sum(sample_weight); by the row count instead it
    # is off by the mean weight (here about 2.4, far beyond the tolerance).
    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    w = np.random.RandomState(0).uniform(0.5, 4.0, size=y.shape[0])
    clf = LaplaceMLPClassifier(
        (), alpha=0.5, prior_precision_scale=1.0, random_state=0
    ).fit(X, y, sample_weight=w)
    theta = np.r_[clf.coefs_[0].ravel(), clf.intercepts_[0]]
    f = X @ clf.coefs_[0][:, 0] + clf.intercepts_[0][0]
    log_lik = np.sum(w * (y * f - np.logaddexp(0.0, f)))
    objective = -log_lik + 0.5 * np.sum(clf.prior_precision_ * theta**2)
    np.testing.assert_allclose(clf.log_likelihood_, log_lik, rtol=1e-10)
    np.testing.assert_allclose(clf.loss_, objective / w.sum(), rtol=1e-10)
    assert abs(w.sum() / len(w) - 1.0) > 0.5  # the two conventions differ
