"""Approximate leave-one-out losses (``prior_precision_scale="loo"``)."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklaplace import LaplaceMLPClassifier
from sklaplace._likelihood import likelihood_for
from sklaplace._loo import loo_log_losses, without_row
from sklaplace._posterior import FullPosterior
from sklaplace._prior_scale import PRIOR_SCALE_GRID


def _softmax(F):
    e = np.exp(F - F.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_without_row_is_the_covariance_with_the_rows_curvature_taken_out():
    rng = np.random.RandomState(0)
    n, K, W = 4, 3, 6
    J = rng.normal(size=(n, K, W))
    R = rng.normal(scale=0.5, size=(n, K, K))
    curvature = np.einsum("nkw,njk,njl,nlv->nwv", J, R, R, J)  # J' R'R J per row
    P = curvature.sum(axis=0) + np.diag(rng.uniform(0.5, 2.0, W))
    S = J @ np.linalg.inv(P) @ np.swapaxes(J, 1, 2)
    expected = [J[i] @ np.linalg.inv(P - curvature[i]) @ J[i].T for i in range(n)]
    np.testing.assert_allclose(without_row(np, S, R), expected, rtol=1e-10)


# A three-class fit written out by hand: logits, Jacobians, prior, weights.
_RNG = np.random.RandomState(3)
_N, _K, _W = 6, 3, 7
_F = _RNG.normal(size=(_N, _K))
_J = _RNG.normal(size=(_N, _K, _W))
_LABELS = np.array([0, 1, 2, 0, 1, 2])
# Class 0's only weight is row 0's: without it the class is unseen.
_WEIGHTS = np.array([1.0, 2.0, 0.5, 0.0, 1.0, 3.0])
_PRIOR = _RNG.uniform(0.5, 1.5, _W)


def _output_hessians(F):
    p = _softmax(F)
    return np.einsum("nk,kl->nkl", p, np.eye(_K)) - p[:, :, None] * p[:, None, :]


def _data_precision():
    return np.einsum("n,nkw,nkl,nlv->wv", _WEIGHTS, _J, _output_hessians(_F), _J)


def _hand_fit(xp=np):
    precision = _data_precision() + np.diag(_PRIOR)  # the posterior at scale 1
    return SimpleNamespace(
        objective=SimpleNamespace(xp=xp, likelihood=likelihood_for(_K), fixed=None),
        posterior=FullPosterior(np.linalg.cholesky(precision)),
        prior_precision=_PRIOR,
        theta=None,
    )


def _hand_jacobians(xp=np):
    def jacobians(theta, X):
        rows = X[:, 0].astype(int)
        yield xp.asarray(_F[rows]), xp.asarray(_J[rows])

    return jacobians


def _diagonal_probit(xp, mean, cov):
    # Any predictive that reads both moments; not the package's.
    return mean / xp.sqrt(1.0 + np.pi / 8.0 * xp.linalg.diagonal(cov))


def _losses_from_scratch(scales):
    """Each row left out: its curvature and residual out of the precision."""
    P_data, Lam = _data_precision(), _output_hessians(_F)
    Y = np.eye(_K)[_LABELS]
    losses = np.empty((_N, len(scales)))
    for i in range(_N):
        u = min(_WEIGHTS[i], 1.0)
        out = P_data - u * _J[i].T @ Lam[i] @ _J[i]
        residual = u * (_softmax(_F)[i] - Y[i])
        newton = np.linalg.solve(out + np.diag(_PRIOR), _J[i].T @ residual)
        mean = _F[i] + _J[i] @ newton
        for j, c in enumerate(scales):
            cov = _J[i] @ np.linalg.inv(out + c * np.diag(_PRIOR)) @ _J[i].T
            g = mean / np.sqrt(1.0 + np.pi / 8.0 * np.diag(cov))
            losses[i, j] = -(g[_LABELS[i]] - np.log(np.sum(np.exp(g))))
    return losses


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
def test_loo_losses_leave_each_row_out_of_the_map_and_the_posterior(namespace):
    xp = pytest.importorskip(namespace)
    scales = np.array([0.05, 1.0, 7.0, 300.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    result = loo_log_losses(
        _hand_fit(xp), _hand_jacobians(xp), data, scales, _diagonal_probit
    )
    np.testing.assert_allclose(result.losses, _losses_from_scratch(scales), rtol=1e-10)
    # Row 0's class would be unseen without it; row 3 has no weight.
    np.testing.assert_array_equal(result.weights, [0.0, 2.0, 0.5, 0.0, 1.0, 3.0])


def test_no_row_that_counts_gives_no_losses():
    data = (np.arange(2, dtype=float)[:, None], np.array([0, 1]), np.ones(2))
    assert loo_log_losses(_hand_fit(), _hand_jacobians(), data, [1.0], None) is None


def _logistic(scale, **kwargs):
    return LaplaceMLPClassifier(
        hidden_layer_sizes=(),
        alpha=1.0,
        bias_prior_precision=1.0,
        prior_precision_scale=scale,
        residual_variance=0.0,
        tol=1e-12,
        random_state=0,
        **kwargs,
    )


def _row_loss(clf, x, label):
    return -np.log(clf.predict_proba(x[None])[0, label])


@pytest.mark.slow
def test_loo_curve_is_close_to_refitting_without_each_row():
    # Logistic regression (no hidden layer): the left-out rows' MAPs are about
    # one Newton step away, so the approximation is close: within 4-6% of the
    # gap between the rows' losses under the model that saw them and the
    # refits' (without the step, or with its sign flipped: 97-100%, 178-186%).
    X, y = make_classification(
        40, 3, n_informative=2, n_redundant=0, flip_y=0.1, random_state=0
    )
    fitted = _logistic("loo").fit(X, y)
    path = fitted.prior_precision_scale_path_
    for index in (0, 24, 48):
        scale = PRIOR_SCALE_GRID[index]
        seen = _logistic(scale).fit(X, y)
        refits = [
            _row_loss(
                _logistic(scale).fit(np.delete(X, i, 0), np.delete(y, i)), X[i], y[i]
            )
            for i in range(len(y))
        ]
        exact = np.mean(refits)
        in_sample = np.mean([_row_loss(seen, X[i], y[i]) for i in range(len(y))])
        approx = path["loo_log_loss"][index]
        assert abs(approx - exact) < 0.1 * abs(in_sample - exact)
