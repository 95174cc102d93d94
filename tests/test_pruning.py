"""Pruning by magnitude, OBD and OBS."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, prune, saliencies


@pytest.fixture(scope="module")
def linear_model():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    return LaplaceMLPClassifier((), hessian="exact", tol=1e-10).fit(X, y)


def _hessian(clf):
    L = clf.posterior_.cholesky_factor
    return L @ L.T


def test_obs_saliency_is_the_true_increase_of_the_quadratic_objective(linear_model):
    H = _hessian(linear_model)
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
    H = _hessian(linear_model)
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


def test_obd_is_the_true_increase_for_a_diagonal_hessian():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    clf = LaplaceMLPClassifier((), hessian_structure="diag").fit(X, y)
    h = clf.posterior_.precision
    theta = np.r_[clf.coefs_[0][:, 0], clf.intercepts_[0]]
    obd, obs = saliencies(clf, method="obd"), saliencies(clf, method="obs")
    np.testing.assert_allclose(obd[:8], 0.5 * h[:8] * theta[:8] ** 2, rtol=1e-12)
    np.testing.assert_allclose(obs[:8], obd[:8], rtol=1e-10)


@pytest.mark.parametrize("method", ["obs", "obd", "magnitude"])
def test_pruned_weights_are_zero_and_stay_zero(method):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier((5,), random_state=0).fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    small = prune(clf, 0.4, method=method)
    n_weights = 4 * 5 + 5 * 3
    assert small.pruned_mask_.sum() == round(0.4 * n_weights)
    zeros = sum(int(np.sum(c == 0)) for c in small.coefs_)
    assert zeros == small.pruned_mask_.sum()
    proba = small.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert sum(int(np.sum(c == 0)) for c in small.coefs_) == zeros
    # The input is untouched, and the pruned weights carry no variance.
    for a, b in zip(before, clf.coefs_):
        np.testing.assert_array_equal(a, b)
    assert not hasattr(clf, "pruned_mask_")
    # Pruning further counts the weights already pruned.
    smaller = prune(small, 0.6, method=method)
    assert smaller.pruned_mask_.sum() == round(0.6 * n_weights)
    assert np.all(smaller.pruned_mask_[small.pruned_mask_])


def test_prune_rejects_bad_arguments():
    X, y = load_iris(return_X_y=True)
    clf = LaplaceMLPClassifier((), random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="fraction"):
        prune(clf, 1.5)
    with pytest.raises(ValueError, match="method"):
        prune(clf, 0.5, method="random")
