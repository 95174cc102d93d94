import numpy as np
import pytest

from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._evidence import log_marginal_likelihood
from sklaplace._posterior import DiagPosterior, FullPosterior


def _spd(n, seed=0):
    A = np.random.RandomState(seed).normal(size=(n, n))
    return A @ A.T + n * np.eye(n)


def test_full_posterior_against_dense_formulas():
    P = _spd(6)
    post = FullPosterior.from_precision(np, P)
    J = np.random.RandomState(1).normal(size=(4, 3, 6))
    covariance = np.linalg.inv(P)
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        J @ covariance @ np.swapaxes(J, 1, 2),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-12
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(covariance), rtol=1e-10
    )


def test_diag_posterior_equals_full_on_a_diagonal_precision():
    d = np.linspace(0.5, 3.0, 5)
    J = np.random.RandomState(2).normal(size=(3, 2, 5))
    full, diag = (
        FullPosterior.from_precision(np, np.diag(d)),
        DiagPosterior.from_precision(np, d),
    )
    np.testing.assert_allclose(
        diag.functional_variance(np, J), full.functional_variance(np, J), rtol=1e-12
    )
    np.testing.assert_allclose(
        diag.log_det_precision(), full.log_det_precision(), rtol=1e-12
    )


def test_not_positive_definite_raises():
    with pytest.raises(NotPositiveDefiniteError):
        FullPosterior.from_precision(np, np.diag([1.0, -1.0]))
    with pytest.raises(NotPositiveDefiniteError):
        DiagPosterior.from_precision(np, np.array([1.0, 0.0]))


def test_evidence_of_a_gaussian_model_is_exact():
    # For a linear-Gaussian model the Laplace evidence is exact: compare with
    # the closed form N(y | 0, K^{-1}-free) via the same terms built by hand.
    P = _spd(4, seed=3)
    prior = np.array([0.5, 1.0, 2.0, 0.0])  # the last parameter has a flat prior
    theta = np.array([0.1, -0.2, 0.3, 0.4])
    post = FullPosterior.from_precision(np, P)
    value = log_marginal_likelihood(-3.0, theta, prior, post)
    expected = -3.0 - 0.5 * (
        np.linalg.slogdet(P)[1] - np.sum(np.log(prior[:3])) + np.sum(prior * theta**2)
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)
