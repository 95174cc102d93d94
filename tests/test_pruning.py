"""Pruning by magnitude, OBD and OBS."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import sklaplace._fitting as fitting_module
import sklaplace._predictive as predictive_module
import sklaplace._pruning as pruning_module
from sklaplace import LaplaceMLPClassifier, prune, saliencies
from sklaplace._posterior import SINGULAR_RTOL, FullPosterior
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import forbid_the_map_solver, traced_peak


def _iris():
    """Iris, standardised: the small multiclass set of these tests."""
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def linear_model():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    clf = LaplaceMLPClassifier(
        (), alpha=1.0, hessian="exact", prior_precision_scale=10.0, tol=1e-10
    )
    return clf.fit(X, y), X


def _objective(clf, X, y):
    """The MAP objective of logistic regression, from scratch.

    ``sum_n logaddexp(0, f_n) - y_n f_n + 1/2 theta' A theta`` with ``A``
    built from the estimator's parameters (``alpha`` on the weights,
    ``bias_prior_precision`` on the bias), not from its fitted attributes.
    """
    X1 = np.c_[X, np.ones(len(X))]
    A = np.r_[np.full(X.shape[1], clf.alpha), clf.bias_prior_precision]

    def objective(theta):
        f = X1 @ theta
        return np.sum(np.logaddexp(0.0, f) - y * f) + 0.5 * np.sum(A * theta**2)

    return objective


def _hessian(clf, X):
    """The MAP objective's Hessian of logistic regression, from scratch.

    ``X1' diag(p (1 - p)) X1 + A``: independent of the posterior (whose prior
    is scaled by ``prior_precision_scale_``) and of the fitted
    ``prior_precision_``, so pruning is checked against the objective it
    must use.
    """
    X1 = np.c_[X, np.ones(len(X))]
    p = 1.0 / (1.0 + np.exp(-X1 @ np.r_[clf.coefs_[0][:, 0], clf.intercepts_[0]]))
    A = np.r_[np.full(X.shape[1], clf.alpha), clf.bias_prior_precision]
    return (X1 * (p * (1 - p))[:, None]).T @ X1 + np.diag(A)


def test_obs_saliency_is_the_true_increase_of_the_quadratic_objective(linear_model):
    linear_model, X = linear_model
    assert linear_model.prior_precision_scale_ != 1.0  # the scale is undone
    H = _hessian(linear_model, X)
    theta = np.r_[linear_model.coefs_[0][:, 0], linear_model.intercepts_[0]]
    obs = saliencies(linear_model, method="obs")
    for q in range(8):
        # Remove weight q (d_q = -theta_q) and re-optimise the rest of
        # q(d) = 1/2 d' H d exactly: d_r = H_rr^{-1} H_rq theta_q.
        rest = np.delete(np.arange(9), q)
        d = np.zeros(9)
        d[q] = -theta[q]
        d[rest] = np.linalg.solve(H[np.ix_(rest, rest)], H[rest, q] * theta[q])
        increase = 0.5 * d @ H @ d
        np.testing.assert_allclose(obs[q], increase, rtol=1e-8)
    assert obs[8] == np.inf  # the bias is never a candidate


def test_obs_correction_is_the_constrained_minimiser(linear_model):
    linear_model, X = linear_model
    H = _hessian(linear_model, X)
    theta = np.r_[linear_model.coefs_[0][:, 0], linear_model.intercepts_[0]]
    pruned = prune(linear_model, 1 / 8, method="obs")
    q = int(np.flatnonzero(pruned.pruned_mask_)[0])
    assert q == int(np.argmin(saliencies(linear_model, method="obs")))
    rest = np.delete(np.arange(9), q)
    expected = theta.copy()
    expected[q] = 0.0
    expected[rest] += np.linalg.solve(H[np.ix_(rest, rest)], H[rest, q] * theta[q])
    new_theta = np.r_[pruned.coefs_[0][:, 0], pruned.intercepts_[0]]
    np.testing.assert_allclose(new_theta, expected, rtol=1e-8, atol=1e-12)


def test_obs_removing_several_weights_is_greedy_on_the_conditional_posterior(
    linear_model,
):
    # From scratch: with the set S already removed, the posterior conditioned
    # on theta_S = 0 has covariance (H_RR)^{-1} on the rest R and mean
    # theta_R + (H_RR)^{-1} H_RS theta_S; OBS removes, one at a time, the
    # weight of least theta_q^2 / (2 [(H_RR)^{-1}]_qq) under it.
    linear_model, X = linear_model
    H = _hessian(linear_model, X)
    theta = np.r_[linear_model.coefs_[0][:, 0], linear_model.intercepts_[0]]
    removed = []
    for _ in range(3):
        rest = np.setdiff1d(np.arange(9), removed)
        mean = theta.copy()
        mean[removed] = 0.0
        mean[rest] += np.linalg.solve(
            H[np.ix_(rest, rest)], H[np.ix_(rest, removed)] @ theta[removed]
        )
        variance = np.diag(np.linalg.inv(H[np.ix_(rest, rest)]))
        saliency = np.where(rest < 8, mean[rest] ** 2 / (2 * variance), np.inf)
        removed.append(int(rest[np.argmin(saliency)]))
    pruned = prune(linear_model, 3 / 8, method="obs")
    assert sorted(np.flatnonzero(pruned.pruned_mask_)) == sorted(removed)
    rest = np.setdiff1d(np.arange(9), removed)
    expected = theta.copy()
    expected[removed] = 0.0
    expected[rest] += np.linalg.solve(
        H[np.ix_(rest, rest)], H[np.ix_(rest, removed)] @ theta[removed]
    )
    new_theta = np.r_[pruned.coefs_[0][:, 0], pruned.intercepts_[0]]
    np.testing.assert_allclose(new_theta, expected, rtol=1e-8, atol=1e-12)
    assert np.all(new_theta[removed] == 0.0)  # exactly


def test_saliency_methods_and_default(linear_model):
    linear_model, _ = linear_model
    theta = np.r_[linear_model.coefs_[0][:, 0], linear_model.intercepts_[0]]
    np.testing.assert_array_equal(
        saliencies(linear_model, method="magnitude")[:8], np.abs(theta[:8])
    )
    np.testing.assert_array_equal(
        saliencies(linear_model), saliencies(linear_model, method="obs")
    )
    assert not np.allclose(
        saliencies(linear_model, method="obd")[:8],
        saliencies(linear_model, method="obs")[:8],
    )


def test_obd_is_half_the_curvature_times_the_squared_weight():
    # The reference is the objective itself, from scratch: its second
    # derivative along each weight by central differences (h = 1e-3, error
    # about 1e-7 relative). OBD must be 1/2 H_qq theta_q^2 to 1e-5; a missing
    # 1/2 is off by 100%, the posterior's scaled prior in H_qq (scale far
    # from 1) by more than 1e-3 on every weight.
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    clf = LaplaceMLPClassifier(
        (), alpha=1.0, hessian_structure="diag", prior_precision_scale=10.0, tol=1e-10
    ).fit(X, y)
    assert clf.prior_precision_scale_ == 10.0  # the scale is undone
    objective = _objective(clf, X, y)
    theta = np.r_[clf.coefs_[0][:, 0], clf.intercepts_[0]]
    obd = saliencies(clf, method="obd")
    h = 1e-3
    for q in range(8):
        step = np.zeros(9)
        step[q] = h
        second = (
            objective(theta + step) - 2 * objective(theta) + objective(theta - step)
        ) / h**2
        np.testing.assert_allclose(obd[q], 0.5 * second * theta[q] ** 2, rtol=1e-5)
    assert obd[8] == np.inf  # the bias is never a candidate
    # A diagonal Hessian: OBS moves no other weight, so it equals OBD.
    np.testing.assert_allclose(saliencies(clf, method="obs")[:8], obd[:8], rtol=1e-10)


@pytest.mark.parametrize("method", ["obs", "obd", "magnitude"])
def test_pruned_weights_are_zero_and_stay_zero(method, monkeypatch):
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    small = prune(clf, 0.33, method=method)
    # 4 x 5 + 5 x 3 = 35 weights: 0.33 of them is 11.55, rounded to 12.
    assert small.pruned_mask_.sum() == 12
    zeros = sum(int(np.sum(c == 0)) for c in small.coefs_)
    assert zeros == small.pruned_mask_.sum()
    proba = small.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert sum(int(np.sum(c == 0)) for c in small.coefs_) == zeros
    # The input is untouched, and the pruned weights carry no variance.
    for a, b in zip(before, clf.coefs_):
        np.testing.assert_array_equal(a, b)
    assert not hasattr(clf, "pruned_mask_")
    # The fit's likelihood and evidence no longer describe the pruned model.
    assert small.log_likelihood_ is None and small.log_marginal_likelihood_ is None
    assert small.loss_ is None and small.effective_n_parameters_ is None
    assert clf.log_likelihood_ is not None and clf.loss_ is not None
    # Pruning further counts the weights already pruned: 0.62 x 35 = 21.7
    # weights chosen in all (0.62 of the 23 left would be 14 more, 26),
    # before units left with no outgoing weight are removed whole.
    chosen = []
    whole_units = pruning_module._with_dead_units

    def spy(layout, pruned):
        chosen.append(pruned.copy())
        return whole_units(layout, pruned)

    monkeypatch.setattr(pruning_module, "_with_dead_units", spy)
    smaller = prune(small, 0.62, method=method)
    weights = ~clf._layout().bias_mask()
    assert np.sum(chosen[-1] & weights) == 22
    assert np.all(chosen[-1][small.pruned_mask_])
    np.testing.assert_array_equal(
        smaller.pruned_mask_, whole_units(clf._layout(), chosen[-1])
    )


@pytest.mark.parametrize(
    "structure", [{"hessian_structure": "kron"}, {"subset_of_weights": "last_layer"}]
)
def test_a_pruned_refit_refuses_posteriors_that_cannot_condition(structure):
    # Their evidence counted log A of every pruned parameter (4.6 nats for
    # four pruned biases at precision 0.1) and their variances the pruned
    # weights' own: refused before any work, the pruned model kept.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), alpha=1.0, random_state=0).fit(X, y)
    small = prune(clf, 0.5, method="magnitude")
    mask = small.pruned_mask_.copy()
    small.set_params(warm_start=True, **structure)

    with pytest.MonkeyPatch.context() as patched:
        forbid_the_map_solver(patched)
        with pytest.raises(ValueError, match="pruned network.*conditioned on its"):
            small.fit(X, y)
    np.testing.assert_array_equal(small.pruned_mask_, mask)
    # The structures that condition refit as before.
    small.set_params(hessian_structure="diag", subset_of_weights="all").fit(X, y)
    np.testing.assert_array_equal(small.pruned_mask_, mask)


def test_prune_rejects_bad_arguments():
    X, y = load_iris(return_X_y=True)
    clf = LaplaceMLPClassifier((), random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="fraction"):
        prune(clf, 1.5)
    with pytest.raises(ValueError, match="method"):
        prune(clf, 0.5, method="random")
    for fraction in ("0.5", None, True):
        with pytest.raises(TypeError, match="fraction must be a real number"):
            prune(clf, fraction)
    other = MLPClassifier((), max_iter=300, random_state=0).fit(X, y)
    for call in (lambda: prune(other, 0.5), lambda: saliencies(other)):
        with pytest.raises(TypeError, match="fitted LaplaceMLPClassifier, got MLP"):
            call()


@pytest.mark.parametrize(
    "structure", [{"hessian_structure": "kron"}, {"subset_of_weights": "last_layer"}]
)
def test_prune_refuses_a_posterior_of_some_parameters_or_factored(structure):
    # Neither conditions on zeroed weights (OBS and OBD read P's diagonal
    # or inverse, which they do not hold): refused, naming the structure.
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (4,), alpha=1.0, prior_precision_scale=1.0, random_state=0, **structure
    ).fit(X, y)
    calls = [lambda: prune(clf, 0.5, method="magnitude")]
    calls += [lambda m=m: saliencies(clf, method=m) for m in ("obs", "obd")]
    for call in calls:
        with pytest.raises(ValueError, match="Pruning needs the posterior of every"):
            call()
    # Magnitudes read no posterior: every structure has them.
    weights = np.r_[clf.coefs_[0].ravel(), clf.coefs_[1].ravel()]
    magnitude = saliencies(clf, method="magnitude")
    np.testing.assert_array_equal(
        np.r_[magnitude[:16], magnitude[20:32]], np.abs(weights)
    )
    assert np.all(np.isinf(np.r_[magnitude[16:20], magnitude[32:]]))


# --------------------------------------------------- re-training after pruning


def _prune_column(clf, column):
    """A copy of a linear model whose weights of ``column`` are pruned."""
    weights = np.zeros_like(clf.coefs_[0])
    weights[column] = 1.0
    mask = clf._layout().pack(np, [weights], [np.zeros_like(clf.intercepts_[0])])
    pruned = prune(clf, 0.0)
    pruned.pruned_mask_ = mask.astype(bool)
    pruned.coefs_[0][column] = 0.0
    return pruned


@pytest.mark.parametrize(
    "solver, structure", [("newton", "full"), ("lbfgs", "full"), ("lbfgs", "diag")]
)
@pytest.mark.parametrize("alpha", [0.5, "evidence"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_masked_refit_equals_a_fit_without_the_pruned_input(
    solver, structure, alpha, n_classes, monkeypatch
):
    # Pruning every weight of input j from a linear model and re-training the
    # rest is the model without column j: same MAP, posterior predictive,
    # evidence and tuned alpha. (A diagonal posterior tunes alpha on the
    # Kronecker one, whose factors cannot leave the pruned weights out: its
    # pruned refit tunes on the diagonal, and so does the reference here.)
    if structure == "diag":
        monkeypatch.setattr(fitting_module, "tuning_structure", lambda *a: "diag")
    X, y = _iris()
    keep = y < n_classes
    X, y = X[keep], y[keep]
    tol = 1e-10 if solver == "newton" else 1e-8  # L-BFGS stalls below 1e-9
    params = dict(
        alpha=alpha,
        solver=solver,
        hessian_structure=structure,
        # The held-out folds hash whole rows, so they differ once a column is
        # dropped: compare the posteriors at one scale.
        prior_precision_scale=1.0,
        tol=tol,
        max_iter=2000,
        # Seeded: from the global generator's start (whatever earlier tests
        # left) L-BFGS's stop at tol 1e-8 once left the two MAPs 1.3e-6 apart
        # (CI, session 42); from seeds 0-11, 7e-8 to 8.7e-7.
        random_state=0,
    )
    clf = LaplaceMLPClassifier((), **params).fit(X, y)
    refit = _prune_column(clf, 2).set_params(warm_start=True).fit(X, y)
    reference = LaplaceMLPClassifier((), **params).fit(np.delete(X, 2, axis=1), y)

    assert np.all(refit.coefs_[0][2] == 0.0)
    assert refit.pruned_mask_.sum() == clf.coefs_[0].shape[1]
    # The evidence's alpha is a fixed point to 0.01% (EVIDENCE_TOL), reached
    # from the pruned fit's alpha by the warm refit and from 1 and 100 by
    # the reference: their MAPs agree to about that.
    atol = 1e-6 if alpha == 0.5 else 1e-3
    rtol = 1e-6 if alpha == 0.5 else 1e-4
    np.testing.assert_allclose(
        np.delete(refit.coefs_[0], 2, axis=0), reference.coefs_[0], atol=atol
    )
    np.testing.assert_allclose(
        refit.predict_proba(X),
        reference.predict_proba(np.delete(X, 2, axis=1)),
        atol=atol,
    )
    np.testing.assert_allclose(
        refit.log_marginal_likelihood_, reference.log_marginal_likelihood_, rtol=rtol
    )
    np.testing.assert_allclose(refit.alpha_, reference.alpha_, rtol=3 * rtol)
    np.testing.assert_allclose(
        refit.log_marginal_likelihood(alpha=3.0),
        reference.log_marginal_likelihood(alpha=3.0),
        rtol=rtol,
    )


@pytest.mark.parametrize("method", ["obs", "magnitude"])
def test_warm_refit_retrains_only_the_kept_weights(method):
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    pruned = prune(clf, 0.5, method=method)
    layout = pruned._layout()
    mask = pruned.pruned_mask_.copy()
    before = layout.pack(np, pruned.coefs_, pruned.intercepts_)
    loss_before = _training_loss(pruned, X, y)
    # prune is deterministic: re-train a second copy, keep the first as it was.
    refit = prune(clf, 0.5, method=method).set_params(warm_start=True).fit(X, y)
    assert np.array_equal(refit.pruned_mask_, mask)
    theta = layout.pack(np, refit.coefs_, refit.intercepts_)
    assert np.all(theta[mask] == 0.0)
    # The kept weights moved to a stationary point of the masked objective,
    # which fits the training data better than the un-retrained weights.
    assert np.max(np.abs(theta - before)) > 1e-3
    assert refit.gradient_history_[-1] <= 1e-6
    assert refit.loss_ < loss_before
    assert np.isfinite(refit.log_marginal_likelihood_)
    # The posterior gives the pruned weights no variance.
    np.testing.assert_array_equal(refit.posterior_.covariance_diagonal(np)[mask], 1.0)
    # A cold refit discards the pruning.
    cold = refit.set_params(warm_start=False).fit(X, y)
    assert not hasattr(cold, "pruned_mask_")


def _training_loss(clf, X, y):
    """Per-sample MAP objective of ``clf``'s weights on ``(X, y)``."""
    layout = clf._layout()
    theta = layout.pack(np, clf.coefs_, clf.intercepts_)
    proba = clf.set_params(link_approx="map").predict_proba(X)
    log_lik = np.sum(np.log(proba[np.arange(len(y)), np.searchsorted(clf.classes_, y)]))
    return (-log_lik + 0.5 * np.sum(clf.prior_precision_ * theta**2)) / len(y)


# ------------------------------------------------------------------ dead units


def _kill_unit(clf, unit):
    """A pruned copy of a one-hidden-layer ``clf`` with ``unit``'s outputs pruned."""
    layout = clf._layout()
    outgoing = [np.zeros_like(c) for c in clf.coefs_]
    outgoing[1][unit] = 1.0
    mask = layout.pack(np, outgoing, [np.zeros_like(b) for b in clf.intercepts_])
    killed = prune(clf, 0.0)
    killed.pruned_mask_ = mask.astype(bool)
    killed.coefs_[1][unit] = 0.0
    return killed


@pytest.mark.parametrize("bias_prior_precision", [1.0, 0.0])
def test_a_dead_unit_is_removed_whole_and_the_refit_equals_the_smaller_net(
    bias_prior_precision,
):
    # Once all outgoing weights of the last unit are pruned, prune masks its
    # incoming weights and bias too (nothing but the prior pins them; with a
    # flat bias prior nothing does). Re-training is then the smaller network.
    # (Two units: iris's MAPs with more often duplicate units, which leaves
    # the precision singular with a flat bias prior, dead unit or not.)
    X, y = _iris()
    params = dict(
        activation="tanh",
        alpha=1.0,
        bias_prior_precision=bias_prior_precision,
        tol=1e-10,
        max_iter=500,
    )
    clf = LaplaceMLPClassifier((2,), random_state=0, **params).fit(X, y)
    assert clf.posterior_jitter_ == 0.0
    killed = _kill_unit(clf, 1)
    removed = prune(killed, 0.0)
    coefs, intercepts = removed._layout().split(np, removed.pruned_mask_)
    assert np.all(coefs[0][:, 1]) and intercepts[0][1] and np.all(coefs[1][1])
    assert removed.pruned_mask_.sum() == 4 + 1 + 3
    assert np.all(removed.coefs_[0][:, 1] == 0) and removed.intercepts_[0][1] == 0
    # The function is unchanged (the posterior is not: it is now conditioned
    # on the dead unit's inputs too).
    removed.set_params(link_approx="map")
    killed.set_params(link_approx="map")
    np.testing.assert_allclose(
        removed.predict_proba(X), killed.predict_proba(X), rtol=1e-12, atol=1e-15
    )
    removed.set_params(link_approx="probit")

    with warnings.catch_warnings():
        warnings.simplefilter("error", LaplaceApproximationWarning)  # no jitter
        refit = removed.set_params(warm_start=True).fit(X, y)
    small = LaplaceMLPClassifier((1,), random_state=0, **params).fit(X, y)
    small.coefs_ = [clf.coefs_[0][:, :1], clf.coefs_[1][:1]]
    small.intercepts_ = [clf.intercepts_[0][:1], clf.intercepts_[1]]
    small.set_params(warm_start=True).fit(X, y)
    assert refit.posterior_jitter_ == 0.0
    np.testing.assert_allclose(refit.coefs_[0][:, :1], small.coefs_[0], atol=1e-6)
    np.testing.assert_allclose(refit.coefs_[1][:1], small.coefs_[1], atol=1e-6)
    np.testing.assert_allclose(
        refit.predict_proba(X), small.predict_proba(X), atol=1e-6
    )
    np.testing.assert_allclose(
        refit.log_marginal_likelihood_, small.log_marginal_likelihood_, rtol=1e-6
    )


def test_dead_units_cascade_down_through_the_layers():
    # Hidden (4, 3): prune every output of second-layer unit 2, and first-layer
    # unit 1's weights to second-layer units 0 and 1. Unit 2 dies, taking
    # unit 1's last outgoing weight with it, so unit 1 dies too.
    X, y = _iris()
    clf = LaplaceMLPClassifier((4, 3), random_state=0).fit(X, y)
    layout = clf._layout()
    outputs = [np.zeros(c.shape, bool) for c in clf.coefs_]
    outputs[2][2] = True
    outputs[1][1, :2] = True
    biases = [np.zeros(b.shape, bool) for b in clf.intercepts_]
    killed = prune(clf, 0.0)
    killed.pruned_mask_ = layout.pack(np, outputs, biases)
    theta = np.where(
        killed.pruned_mask_, 0.0, layout.pack(np, clf.coefs_, clf.intercepts_)
    )
    killed.coefs_, killed.intercepts_ = layout.split(np, theta)
    removed = prune(killed, 0.0)

    expected_coefs = [c.copy() for c in outputs]
    expected_biases = [b.copy() for b in biases]
    expected_coefs[1][:, 2] = expected_biases[1][2] = True  # unit 2 of layer 2
    expected_coefs[0][:, 1] = expected_biases[0][1] = True  # unit 1 of layer 1
    expected = layout.pack(np, expected_coefs, expected_biases)
    np.testing.assert_array_equal(removed.pruned_mask_, expected)
    assert np.all(layout.pack(np, removed.coefs_, removed.intercepts_)[expected] == 0)
    removed.set_params(link_approx="map")
    killed.set_params(link_approx="map")
    np.testing.assert_allclose(
        removed.predict_proba(X), killed.predict_proba(X), rtol=1e-12, atol=1e-15
    )


def _with_tiny_pivot(clf):
    """``clf`` with its precision's last Cholesky pivot 1e-7 of the largest."""
    L = clf.posterior_.cholesky_factor.copy()
    L[-1, :-1] = 0.0
    L[-1, -1] = 1e-7 * np.max(np.abs(L))
    clf.posterior_ = FullPosterior(L)
    return clf


def _singular(kind):
    """A fit on iris whose posterior is singular: jittered, or of a tiny pivot."""
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    if kind == "jittered":
        clf.posterior_jitter_ = 1e-9  # as a singular precision would have left it
        return clf
    return _with_tiny_pivot(clf)


def test_obs_on_a_singular_posterior_falls_back_to_obd():
    # The warning points at the caller of prune, not inside the package. (A
    # test of its own: mutation rounds deselect it, whose wrappers add the
    # frames it counts, and keep the fallback's test below.)
    clf = _singular("jittered")  # outside: only prune's warnings are counted
    with pytest.warns(
        LaplaceApproximationWarning, match="Pruning by OBD instead"
    ) as record:
        prune(clf, 0.5, method="obs")
    assert record[0].filename == __file__


@pytest.mark.parametrize("singular", ["jittered", "tiny pivot"])
def test_obs_prunes_as_obd_where_the_posterior_is_singular(singular):
    clf = _singular(singular)
    with pytest.warns(LaplaceApproximationWarning, match="Pruning by OBD instead"):
        fallback = prune(clf, 0.5, method="obs")
    obd = prune(clf, 0.5, method="obd")
    np.testing.assert_array_equal(fallback.pruned_mask_, obd.pruned_mask_)
    for a, b in zip(fallback.coefs_, obd.coefs_):
        np.testing.assert_array_equal(a, b)


def test_obs_removing_nothing_needs_no_fallback():
    # With nothing to remove (fraction 0, or no more than already pruned)
    # OBS corrects nothing, so a singular posterior calls for no warning.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0, alpha=1.0).fit(X, y)
    clf.posterior_jitter_ = 1e-9  # as a singular precision would have left it
    half = prune(clf, 0.5, method="obd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not prune(clf, 0.0, method="obs").pruned_mask_.any()
        again = prune(half, 0.5, method="obs")
    np.testing.assert_array_equal(again.pruned_mask_, half.pruned_mask_)


def test_the_pruned_posterior_is_conditioned_on_dead_units_too():
    # The precision after pruning: the identity on every masked parameter
    # (pruned weights and a dead unit's inputs and bias), no coupling to the
    # kept ones, and the fitted precision on the kept block.
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (5,), random_state=0, alpha=1.0, prior_precision_scale=1.0
    ).fit(X, y)
    small = prune(clf, 0.8, method="obd")
    mask = small.pruned_mask_
    coefs, intercepts = small._layout().split(np, mask)
    assert np.any(intercepts[0])  # a hidden unit died
    P = small.posterior_.cholesky_factor @ small.posterior_.cholesky_factor.T
    P0 = clf.posterior_.cholesky_factor @ clf.posterior_.cholesky_factor.T
    np.testing.assert_allclose(P[np.ix_(mask, ~mask)], 0.0, atol=1e-12)
    np.testing.assert_allclose(P[np.ix_(mask, mask)], np.eye(mask.sum()), atol=1e-12)
    np.testing.assert_allclose(
        P[np.ix_(~mask, ~mask)], P0[np.ix_(~mask, ~mask)], rtol=1e-10, atol=1e-10
    )


def test_obs_with_a_flat_bias_prior_and_duplicated_units_stays_accurate():
    # With bias_prior_precision=0 iris's MAP makes hidden units identical: the
    # precision is singular (jittered or, depending on the BLAS, factorised
    # with a round-off pivot). Unchecked, OBS moved weights by up to 1e6 and
    # left a chance-level classifier. (The evidence's choice of that MAP,
    # whatever held-out losses might say of it.)
    X, y = _iris()
    with pytest.warns(LaplaceApproximationWarning, match="singular"):
        clf = LaplaceMLPClassifier(
            (5,),
            bias_prior_precision=0.0,
            prior_precision_scale="evidence",
            random_state=0,
        )
        clf.fit(X, y)
    with pytest.warns(LaplaceApproximationWarning, match="Pruning by OBD instead"):
        small = prune(clf, 0.3, method="obs")
    assert small.set_params(link_approx="map").score(X, y) > 0.9


@pytest.mark.parametrize("method", ["obd", "magnitude"])
def test_prune_removes_the_weights_of_least_saliency_by_its_own_method(method):
    # Without OBS's corrections the weights removed are the lowest of the
    # method's own saliencies (4 of the 35 here, no unit left dead), which
    # are not the default OBS ranking's 4.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    lowest = np.sort(np.argsort(saliencies(clf, method=method), kind="stable")[:4])
    by_obs = np.sort(np.argsort(saliencies(clf), kind="stable")[:4])
    assert not np.array_equal(lowest, by_obs)
    small = prune(clf, 4 / 35, method=method)
    np.testing.assert_array_equal(np.flatnonzero(small.pruned_mask_), lowest)


def test_prune_can_remove_every_weight():
    # fraction=1 is in range: every weight goes (the biases stay), and the
    # network predicts from its output biases alone, the same for every row.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    empty = prune(clf, 1.0, method="magnitude")
    layout = clf._layout()
    weights = ~layout.bias_mask()
    assert empty.pruned_mask_[weights].all()
    proba = empty.predict_proba(X)
    np.testing.assert_allclose(proba, np.broadcast_to(proba[0], proba.shape))


def test_a_pruned_diagonal_refit_tunes_alpha_on_the_diagonal(monkeypatch):
    # An unpruned diagonal posterior tunes alpha on the Kronecker one; its
    # pruned refit on the diagonal, which (unlike the factors) can leave the
    # pruned weights out.
    chosen, tuning_structure = [], fitting_module.tuning_structure

    def spy(*args):
        chosen.append(tuning_structure(*args))
        return chosen[-1]

    monkeypatch.setattr(fitting_module, "tuning_structure", spy)
    X, y = _iris()
    params = dict(hessian_structure="diag", alpha="evidence", prior_precision_scale=1.0)
    clf = LaplaceMLPClassifier((), **params).fit(X, y)
    _prune_column(clf, 2).set_params(warm_start=True).fit(X, y)
    assert chosen == ["kron", "diag"]


def test_a_pruned_refits_held_out_losses_leave_the_pruned_weights_out(monkeypatch):
    """A pruned refit's held-out losses zero the pruned weights' columns.

    The held-out losses that choose a pruned refit's prior scale take the
    Jacobian with the pruned columns zeroed, as its predictions do
    (``keep``): a pruned weight is held at zero, with no uncertainty (its
    posterior variance is the prior's, 1 / alpha). Without the mask its
    columns had added variance to the held-out predictive, which the fitted
    model's own predictions leave out.
    """
    keeps, original = [], fitting_module.jacobian_chunks

    def spy(xp, layout, theta, activation, posterior, X, keep=None, **kwargs):
        keeps.append(None if keep is None else np.asarray(keep))
        return original(xp, layout, theta, activation, posterior, X, keep, **kwargs)

    monkeypatch.setattr(fitting_module, "jacobian_chunks", spy)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(alpha=1.0, prior_precision_scale="validation", random_state=0)
    clf = LaplaceMLPClassifier((3,), **params).fit(X, y)
    assert keeps and all(keep is None for keep in keeps)  # nothing pruned
    keeps.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = prune(clf, 0.3).set_params(warm_start=True).fit(X, y)
    assert pruned.pruned_mask_.any() and keeps
    for keep in keeps:
        assert keep is not None
        np.testing.assert_array_equal(keep, (~pruned.pruned_mask_).astype(float))


def test_obs_on_a_direction_of_vast_variance_leaks_no_overflow():
    # A feature that is 0 but in one row (1e-90), no prior on the weights:
    # the diagonal posterior's variance there is about 5e236, whose square
    # overflowed in the OBS update (a fuzzer's find).
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    X[:, 1] = 0.0
    X[0, 1] = 1e-90
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the feature's scale, said at fit
        clf = LaplaceMLPClassifier(
            (),
            alpha=0.0,
            hessian_structure="diag",
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
    assert 1.0 / np.min(clf.posterior_.precision) > 1e200  # the premise
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pruned = prune(clf, 0.5, method="obs")
    assert np.all(np.isfinite(pruned.predict_proba(X)))


def test_repruning_counts_only_weights_as_already_pruned():
    # `fraction` counts the already pruned WEIGHTS; a dead unit's bias is
    # masked too but is not a weight, so it must not reduce how many more
    # weights are removed (counted, one weight fewer would be).
    X, y = _iris()
    clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    layout = clf._layout()
    weights = ~layout.bias_mask()
    # Kill hidden unit 0: prune all its outgoing weights; prune(., 0.0) then
    # masks its incoming weights and its bias as well.
    killed = prune(clf, 0.0)
    outputs = [np.zeros(c.shape, bool) for c in clf.coefs_]
    outputs[1][0] = True
    killed.pruned_mask_ = layout.pack(
        np, outputs, [np.zeros(b.shape, bool) for b in clf.intercepts_]
    )
    dead = prune(killed, 0.0, method="magnitude")
    assert np.sum(dead.pruned_mask_ & weights) == 3 + 4
    assert np.sum(dead.pruned_mask_ & ~weights) == 1  # the dead unit's bias
    # Half of the 28 weights counting the 7 already pruned: 7 more, the 7 of
    # least magnitude among the candidates (none of them kills another unit).
    order = np.argsort(saliencies(dead, method="magnitude"), kind="stable")
    half = prune(dead, 0.5, method="magnitude")
    assert np.sum(half.pruned_mask_ & weights) == 14
    assert np.all(half.pruned_mask_[order[:7]])


@pytest.mark.parametrize("method", ["obs", "obd", "magnitude"])
def test_a_diagonal_posterior_prunes_without_a_square_matrix(method):
    """A diagonal ``H`` is pruned in ``O(W)`` memory; for a full one only OBS
    needs ``H`` itself (OBD reads its diagonal, magnitude the weights).

    The default's posterior is diagonal on networks too large for a full
    one, where the dense ``diag(H)``, its inverse and OBS's rank-one updates
    (``W^2`` floats each) had taken 6.7 s for W = 2,201 and cannot exist at
    W = 79,510. On a diagonal ``H`` OBS is OBD: each correction moves only
    the removed weight. Here W = 3,001: a ``W x W`` array is 72 MB, against a
    peak of about 1 MB for the vectors.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 28))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    clf = LaplaceMLPClassifier(
        (100,),
        alpha=1.0,
        hessian_structure="diag",
        prior_precision_scale=3.0,
        max_iter=20,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    square = 8 * clf.prior_precision_.shape[0] ** 2
    prune(clf, 0.1, method=method)  # imports and caches outside the measurement
    assert traced_peak(lambda: saliencies(clf, method=method)) < square / 20
    assert traced_peak(lambda: prune(clf, 0.5, method=method)) < square / 20
    obd = prune(clf, 0.5, method="obd")
    pruned = prune(clf, 0.5, method=method)
    if method == "obs":  # the same removals and the same remaining weights
        for mine, reference in zip(
            pruned.coefs_ + pruned.intercepts_, obd.coefs_ + obd.intercepts_
        ):
            np.testing.assert_array_equal(mine, reference)


def test_obd_saliencies_of_a_full_posterior_form_no_square_matrix():
    """OBD reads ``diag(H)``, the factor's squared row norms plus the undone
    prior scale: no ``L L'`` (W^3 and W^2 floats; twice per prune)."""
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (40,), alpha=1.0, prior_precision_scale=3.0, random_state=0
    ).fit(X, y)
    L = clf.posterior_.cholesky_factor
    H = L @ L.T + np.diag((1.0 - 3.0) * clf.prior_precision_)
    theta = np.concatenate(
        [
            clf.coefs_[0].ravel(),
            clf.intercepts_[0],
            clf.coefs_[1].ravel(),
            clf.intercepts_[1],
        ]
    )
    expected = 0.5 * np.diag(H) * theta**2
    obd = saliencies(clf, method="obd")
    weights = np.isfinite(obd)
    np.testing.assert_allclose(obd[weights], expected[weights], rtol=1e-10)
    square = 8 * L.shape[0] ** 2
    assert traced_peak(lambda: saliencies(clf, method="obd")) < square / 4
    assert traced_peak(lambda: saliencies(clf, method="magnitude")) < square / 4


def test_a_pruned_diagonal_posterior_predicts_from_the_factored_jacobian():
    """A pruned parameter carries no variance: ``cov = J diag(keep / P) J'``.

    The reference differentiates a hand-written network by central
    differences. The pruned diagonal posterior is read with the factored
    Jacobian (their precision infinite), as the unpruned one is: the dense
    ``J`` it had built (``n K W`` floats; 13x slower on 5 classes) is not
    formed.
    """
    X, y = _iris()
    X = np.tile(X, (14, 1))  # 2,100 rows
    clf = LaplaceMLPClassifier(
        (40,),
        activation="tanh",
        alpha=1.0,
        hessian_structure="diag",
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X[:150], y)
    pruned = prune(clf, 0.5, method="obd")
    (W0, W1), (b0, b1) = pruned.coefs_, pruned.intercepts_
    theta = np.concatenate([np.r_[W0, b0[None]].ravel(), np.r_[W1, b1[None]].ravel()])

    def logits(t, rows):
        first = t[: 5 * 40].reshape(5, 40)
        second = t[5 * 40 :].reshape(41, 3)
        hidden = np.tanh(rows @ first[:4] + first[4])
        return hidden @ second[:40] + second[40]

    rows = X[:20]
    step = 1e-6
    J = np.stack(
        [
            (logits(theta + step * e, rows) - logits(theta - step * e, rows))
            / (2 * step)
            for e in np.eye(theta.shape[0])
        ],
        axis=2,
    )
    keep = ~pruned.pruned_mask_
    expected = (J * (keep / pruned.posterior_.precision)) @ J.transpose(0, 2, 1)
    _, cov = pruned.latent_mean_and_variance(rows)
    np.testing.assert_allclose(cov, expected, rtol=1e-6, atol=1e-9)
    dense = 8 * X.shape[0] * 3 * theta.shape[0]  # the dense J of every row
    pruned.predict_proba(X[:5])
    # Peaks here: 7.1 MB (the unpruned posterior's too), against 50 MB with J.
    assert traced_peak(lambda: pruned.predict_proba(X)) < dense


@pytest.mark.parametrize(
    "scale, link", [("cv", "probit"), ("loo", "probit"), ("loo", "mc"), ("cv", "mc")]
)
def test_a_pruned_diagonal_refit_scores_held_out_rows_from_the_factors(
    monkeypatch, scale, link
):
    """A diagonal posterior's held-out losses take ``J`` factored, the pruned
    parameters pinned (no variance), not the dense ``J`` with their columns
    zeroed (a pruned 79,510-weight refit's leave-one-out: 145 s against
    13 s unpruned). The same losses as the dense path, which never runs."""
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (6,),
        hessian_structure="diag",
        alpha=1.0,
        prior_precision_scale=scale,
        link_approx=link,
        n_mc_samples=20,
        random_state=0,
    ).fit(X, y)
    small = prune(clf, 0.4, method="obd").set_params(warm_start=True)
    dense = predictive_module.logit_jacobians

    def dense_chunks(xp, layout, theta, activation, posterior, X, keep=None, **kw):
        return dense(xp, layout, theta, activation, X, keep, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(fitting_module, "jacobian_chunks", dense_chunks)
        reference = copy.deepcopy(small).fit(X, y)
        monkeypatch.undo()

        def no_dense(*args, **kwargs):
            raise AssertionError("the dense Jacobian was built")

        monkeypatch.setattr(predictive_module, "logit_jacobians", no_dense)
        refit = copy.deepcopy(small).fit(X, y)
    assert refit.prior_precision_scale_ == reference.prior_precision_scale_
    key = f"{scale}_log_loss"
    np.testing.assert_allclose(
        refit.prior_precision_scale_path_[key],
        reference.prior_precision_scale_path_[key],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        refit.predict_proba(X), reference.predict_proba(X), rtol=1e-10
    )


def test_a_huge_value_of_an_input_whose_weights_are_all_pruned_changes_nothing():
    # Pinned (pruned) parameters have an inverse precision of 0; an input all
    # of whose weights are pinned contributes nothing to the variance, however
    # large: its square (inf at 1e160) times 0 would be NaN, and the
    # prediction refused, where the dense J with its columns zeroed answers.
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (4,),
        hessian_structure="diag",
        alpha=1.0,
        prior_precision_scale=1.0,
        residual_variance=0.0,
        random_state=0,
    ).fit(X, y)
    pruned = prune(clf, 0.3, method="magnitude")
    assert np.all(pruned.coefs_[0][2] == 0)  # the premise: input 2 is cut off
    rows = np.array([[0.3, -0.2, 0.0], [0.3, -0.2, 1e160], [0.3, -0.2, 2e154]])
    mean, cov = pruned.latent_mean_and_variance(rows)
    np.testing.assert_allclose(mean, mean[[0, 0, 0]], rtol=1e-15)
    np.testing.assert_allclose(cov, cov[[0, 0, 0]], rtol=1e-15)
    proba = pruned.predict_proba(rows)
    np.testing.assert_allclose(proba, proba[[0, 0, 0]], rtol=1e-15)


def test_prune_breaks_ties_of_saliency_by_position_in_theta(monkeypatch):
    # Pins argsort(kind="stable") in prune (_pruning.py:337; kind=None or no
    # kind survived): weights of equal saliency are removed in the order of
    # theta, whatever sort NumPy dispatches to. The 35 weights of an iris
    # (5,) network set to magnitudes 0.1, 0.2 and 0.3 (many ties); removing
    # 15 takes every 0.1 and the first 0.2s in theta's order. An unstable
    # sort (NumPy's SIMD quicksort) picks other 0.2s.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    rng = np.random.RandomState(0)
    clf.coefs_ = [
        rng.choice([-0.3, -0.2, -0.1, 0.1, 0.2, 0.3], size=c.shape) for c in clf.coefs_
    ]
    layout = clf._layout()
    weights = ~layout.bias_mask()
    magnitude = np.abs(layout.pack(np, clf.coefs_, clf.intercepts_))
    below = np.flatnonzero(weights & (magnitude < 0.15))
    tied = np.flatnonzero(weights & np.isclose(magnitude, 0.2))
    n_remove = 15
    assert below.size < n_remove < below.size + tied.size  # the cut splits a tie
    expected = np.sort(np.r_[below, tied[: n_remove - below.size]])
    chosen, whole_units = [], pruning_module._with_dead_units

    def spy(layout, pruned):
        chosen.append(pruned.copy())
        return whole_units(layout, pruned)

    monkeypatch.setattr(pruning_module, "_with_dead_units", spy)
    prune(clf, n_remove / 35, method="magnitude")
    np.testing.assert_array_equal(np.flatnonzero(chosen[-1]), expected)


def test_obs_falls_back_to_obd_exactly_below_the_fits_singular_threshold(
    monkeypatch,
):
    # Pins `ratio >= SINGULAR_RTOL` in _obs_is_reliable (`>` survived): the
    # fit warns of a nearly singular precision when its pivot ratio is
    # < SINGULAR_RTOL (_posterior.py), and prune falls back on exactly such
    # Hessians (the pivot ratio of the one OBS inverts, factored as a
    # FullPosterior). At the threshold itself OBS runs, silently; one ulp
    # below, it warns and prunes by OBD.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), hessian_structure="full", random_state=0)
    clf.fit(X, y)
    obs, obd = prune(clf, 0.5, method="obs"), prune(clf, 0.5, method="obd")
    assert not np.array_equal(obs.pruned_mask_, obd.pruned_mask_)
    factored = pruning_module.FullPosterior
    monkeypatch.setattr(factored, "pivot_ratio", lambda self: SINGULAR_RTOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LaplaceApproximationWarning)
        at = prune(clf, 0.5, method="obs")
    np.testing.assert_array_equal(at.pruned_mask_, obs.pruned_mask_)
    below = np.nextafter(SINGULAR_RTOL, 0.0)
    monkeypatch.setattr(factored, "pivot_ratio", lambda self: below)
    with pytest.warns(LaplaceApproximationWarning, match="Pruning by OBD instead"):
        fallback = prune(clf, 0.5, method="obs")
    np.testing.assert_array_equal(fallback.pruned_mask_, obd.pruned_mask_)


def test_obs_checks_the_hessian_it_inverts_not_the_scaled_posterior():
    """OBS inverts the objective's Hessian (prior scale 1). Under a vanishing
    prior (``alpha=1e-8``, no bias prior) the posterior at the chosen scale
    (1e4) is well enough conditioned (pivot ratio above ``SINGULAR_RTOL``)
    while that Hessian is not (a reference: its own Cholesky factor from
    NumPy, the prior shift undone by hand): prune warns and prunes by OBD
    (its removals exactly), as its docstring says."""
    X, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (4,), alpha=1e-8, bias_prior_precision=0.0, random_state=0
        ).fit(X, y)
    assert clf.prior_precision_scale_ > 1 and clf.posterior_jitter_ == 0.0
    assert clf.posterior_.pivot_ratio() >= SINGULAR_RTOL
    L = clf.posterior_.cholesky_factor
    H = L @ L.T - np.diag((clf.prior_precision_scale_ - 1) * clf.prior_precision_)
    pivots = np.diag(np.linalg.cholesky(H)) ** 2
    assert np.min(pivots) / np.max(np.diag(H)) < SINGULAR_RTOL
    with pytest.warns(LaplaceApproximationWarning, match="Pruning by OBD instead"):
        pruned = prune(clf, 0.3)
    obd = prune(clf, 0.3, method="obd")
    np.testing.assert_array_equal(pruned.pruned_mask_, obd.pruned_mask_)
    np.testing.assert_array_equal(pruned.coefs_[0], obd.coefs_[0])


def test_the_pruned_copy_shares_no_fitted_state_with_its_estimator():
    # Pins copy.deepcopy in prune (_pruning.py:342; copy.copy survived): the
    # copy holds none of the estimator's arrays, lists or dicts (a shallow
    # copy shared prior_precision_, classes_, alpha_history_,
    # gradient_history_ and prior_precision_scale_path_), so changing the
    # pruned model in place leaves the estimator as it was.
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    before = copy.deepcopy(clf)
    small = prune(clf, 0.5, method="magnitude")
    for name, value in vars(clf).items():
        other = getattr(small, name, None)
        if isinstance(value, (np.ndarray, list, dict)):
            assert other is not value, name
        if isinstance(value, np.ndarray) and isinstance(other, np.ndarray):
            assert not np.shares_memory(other, value), name
    small.prior_precision_[:] = 0.0
    small.alpha_history_.append(-1.0)
    np.testing.assert_array_equal(clf.prior_precision_, before.prior_precision_)
    assert clf.alpha_history_ == before.alpha_history_


def test_a_flat_row_that_loses_a_weight_loses_its_unit_curvature():
    """Softmax regression, 3 classes, ``alpha=0``: each input's weights to
    the 3 classes are flat along their common shift, which the posterior
    pins with ``u u'`` (1/3 on the row's 3 x 3 block). Once ``prune``
    removes one of a row's weights the data pin the other two (moving them
    moves two logits of three), so the conditioned posterior must not keep
    that 1/3, as a fit with the pruned mask does not add it. Reference: the
    GGN at the MAP plus the prior from scratch (``dense_ggn``; the functional
    API shares the curvature builders), with ``u u'`` on the rows left
    whole, restricted to the kept parameters."""
    from sklearn.datasets import make_blobs

    from sklaplace._testing import dense_ggn

    X, y = make_blobs(90, centers=3, n_features=2, cluster_std=3.0, random_state=0)
    clf = LaplaceMLPClassifier(
        (),
        alpha=0.0,
        hessian_structure="full",
        prior_precision_scale=1.0,
        tol=1e-10,
        random_state=0,
    ).fit(X, y)
    pruned = prune(clf, 1 / 6, method="magnitude")  # one weight of six
    mask = pruned.pruned_mask_
    assert mask.sum() == 1 and mask[:6].any()  # a weight, not a bias
    theta = np.r_[clf.coefs_[0].ravel(), clf.intercepts_[0]]
    prior = np.r_[np.zeros(6), np.full(3, clf.bias_prior_precision)]
    P = dense_ggn(theta, X, np.ones(len(X)), prior, (2, 3), clf.activation)
    whole = [row for row in range(2) if not mask[3 * row : 3 * row + 3].any()]
    for row in whole:
        P[3 * row : 3 * row + 3, 3 * row : 3 * row + 3] += 1 / 3
    kept = ~mask
    L = pruned.posterior_.cholesky_factor
    np.testing.assert_allclose(
        (L @ L.T)[np.ix_(kept, kept)], P[np.ix_(kept, kept)], rtol=1e-7, atol=1e-7
    )  # the reference's Jacobian is by differences


def test_obs_removes_a_flat_rows_weight_for_free_by_shifting_the_row():
    """Softmax regression, 3 classes, ``alpha=0``: each input's weights are
    defined up to their common shift, so shifting a row by minus one of its
    weights zeroes it and moves no prediction: OBS's exact saliency there is
    0, and pruning one weight per row must leave every probability as it
    was (the unit curvature the posterior gives the shift, read as data,
    had cost saliencies of 0.08-0.72 and moved probabilities by 5e-3).
    After that the data pin the rows: the next removal has a positive
    saliency, and the conditioned posterior equals a fit's with the mask
    (tested above)."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(90, centers=3, n_features=2, cluster_std=3.0, random_state=0)
    clf = LaplaceMLPClassifier(
        (),
        alpha=0.0,
        hessian_structure="full",
        prior_precision_scale=1.0,
        link_approx="map",
        tol=1e-10,
        random_state=0,
    ).fit(X, y)
    weights = np.arange(9) < 6  # [W; b]: 2 rows of 3 weights, then the biases
    np.testing.assert_array_equal(saliencies(clf, method="obs")[weights], 0.0)
    pruned = prune(clf, 2 / 6, method="obs")
    removed = pruned.pruned_mask_[weights].reshape(2, 3)
    np.testing.assert_array_equal(removed.sum(axis=1), [1, 1])  # one a row
    np.testing.assert_allclose(
        pruned.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12
    )
    assert np.all(saliencies(pruned, method="obs")[weights & ~pruned.pruned_mask_] > 0)
    # Going on from there in one call or two is the same OBS: the one call's
    # covariance must have lost the released rows' unit curvature, as the
    # pruned copy's posterior has (kept, the two differed by 1.2e-3).
    for fraction in (3 / 6, 4 / 6):
        once, twice = prune(clf, fraction, method="obs"), prune(pruned, fraction)
        np.testing.assert_array_equal(once.pruned_mask_, twice.pruned_mask_)
        for a, b in zip(once.coefs_, twice.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
