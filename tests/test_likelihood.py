"""Likelihoods against from-scratch formulas (SciPy and plain NumPy).

Each quantity of ``Bernoulli`` and ``Categorical`` is checked against its
definition on moderate logits, and against its float64 limit on huge ones
(where the naive formula overflows, the reference is taken in the limit).
"""

import numpy as np
import pytest
from scipy.special import expit, log_expit, log_softmax, softmax

from sklaplace._likelihood import Bernoulli, Categorical, likelihood_for

RNG = np.random.RandomState(0)
N = 7


def _binary():
    logits = RNG.normal(scale=3.0, size=(N, 1))
    y = RNG.randint(0, 2, size=N)
    weight = RNG.uniform(0.2, 3.0, size=N)
    return logits, y, weight


def _categorical(K=4):
    logits = RNG.normal(scale=3.0, size=(N, K))
    y = RNG.randint(0, K, size=N)
    weight = RNG.uniform(0.2, 3.0, size=N)
    return logits, y, weight


def test_likelihood_for_picks_one_logit_for_two_classes():
    assert likelihood_for(2) is Bernoulli and likelihood_for(3) is Categorical
    assert Bernoulli.n_outputs(2) == 1 and Categorical.n_outputs(5) == 5


def test_bernoulli_against_definitions():
    f, y, s = _binary()
    Y = Bernoulli.encode(np, y, 1, np.float64)
    assert Y.shape == (N, 1) and Y.dtype == np.float64
    np.testing.assert_array_equal(Y[:, 0], y)
    p = expit(f[:, 0])
    np.testing.assert_allclose(
        Bernoulli.log_likelihood(np, f, Y, s),
        np.sum(s * (y * np.log(p) + (1 - y) * np.log1p(-p))),
        rtol=1e-12,
    )
    np.testing.assert_allclose(Bernoulli.mean(np, f)[:, 0], p, rtol=1e-12)
    expected = np.c_[1 - p, p]
    np.testing.assert_allclose(Bernoulli.proba(np, f), expected, rtol=1e-12)
    np.testing.assert_allclose(Bernoulli.log_proba(np, f), np.log(expected), rtol=1e-12)
    np.testing.assert_allclose(
        Bernoulli.residual(np, f, Y, s)[:, 0], s * (p - y), rtol=1e-12
    )
    U = RNG.normal(size=(N, 1))
    Lambda = s * p * (1 - p)
    np.testing.assert_allclose(
        Bernoulli.output_hessian(np, f, s)(U)[:, 0], Lambda * U[:, 0], rtol=1e-12
    )
    R = Bernoulli.hessian_factor(np, f, s)
    assert R.shape == (N, 1, 1)
    np.testing.assert_allclose(R[:, 0, 0] ** 2, Lambda, rtol=1e-12)


# 16 and 17 classes: either side of ROW_MAX_COLUMNS, where the row maximum
# is taken column by column or by one reduction.
@pytest.mark.parametrize("K", [3, 4, 16, 17, 40])
def test_categorical_against_definitions(K):
    f, y, s = _categorical(K)
    K = f.shape[1]
    Y = Categorical.encode(np, y, K, np.float64)
    np.testing.assert_array_equal(Y, np.eye(K)[y])
    p = softmax(f, axis=1)
    np.testing.assert_allclose(
        Categorical.log_likelihood(np, f, Y, s),
        np.sum(s * np.log(p[np.arange(N), y])),
        rtol=1e-12,
    )
    np.testing.assert_allclose(Categorical.proba(np, f), p, rtol=1e-12)
    np.testing.assert_allclose(Categorical.log_proba(np, f), np.log(p), rtol=1e-12)
    np.testing.assert_allclose(
        Categorical.residual(np, f, Y, s), s[:, None] * (p - np.eye(K)[y]), rtol=1e-12
    )
    U = RNG.normal(size=(N, K))
    R = Categorical.hessian_factor(np, f, s)
    for n in range(N):
        Lambda = s[n] * (np.diag(p[n]) - np.outer(p[n], p[n]))
        np.testing.assert_allclose(
            Categorical.output_hessian(np, f, s)(U)[n], Lambda @ U[n], atol=1e-12
        )
        np.testing.assert_allclose(R[n].T @ R[n], Lambda, atol=1e-12)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_bernoulli_stays_exact_for_huge_logits(sign):
    # At |f| = 800, exp(f) overflows: log p and log(1 - p) must still be
    # exact (-800 or -e^-800 = -0.0), and p (1 - p) underflow to 0, not NaN.
    f = np.array([[sign * 800.0], [sign * 30.0]])
    log_proba = Bernoulli.log_proba(np, f)
    np.testing.assert_allclose(
        log_proba, np.c_[log_expit(-f[:, 0]), log_expit(f[:, 0])], rtol=1e-12
    )
    assert np.all(np.isfinite(log_proba))
    y = np.array([1.0, 0.0])[:, None] if sign > 0 else np.array([0.0, 1.0])[:, None]
    value = Bernoulli.log_likelihood(np, f, y, np.ones(2))
    np.testing.assert_allclose(value, log_expit(-30.0), rtol=1e-12)
    R = Bernoulli.hessian_factor(np, f, np.ones(2))
    assert np.all(np.isfinite(R)) and R[0, 0, 0] == 0.0


def test_categorical_stays_exact_for_huge_logits():
    f = np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, -2000.0]])
    np.testing.assert_allclose(
        Categorical.log_proba(np, f), log_softmax(f, axis=1), rtol=1e-12, atol=0
    )
    # log p of a near-certain class stays below 0 (log1p, not log(1 + tiny)).
    assert Categorical.log_proba(np, np.array([[40.0, 0.0]]))[0, 0] < 0.0
    np.testing.assert_allclose(Categorical.proba(np, f).sum(axis=1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("K", [5, 16, 17, 30])
def test_categorical_ties_at_the_largest_logit(K):
    # Tied largest logits share the probability, whichever columns they are
    # in and however wide the row: each tie counts once in the normaliser.
    # The last row's largest logit, in the last column, alone keeps exp finite.
    f = np.tile(np.linspace(-2000.0, -1000.0, K), (4, 1))
    f[0, [0, K - 1]] = 1000.0
    f[1, [1, K // 2, K - 2]] = 7.0
    f[2, :] = 3.0
    f[3, K - 1] = 1000.0
    np.testing.assert_allclose(
        Categorical.log_proba(np, f), log_softmax(f, axis=1), rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(Categorical.proba(np, f)[0, [0, K - 1]], 0.5)


@pytest.mark.parametrize("likelihood, K", [(Bernoulli, 1), (Categorical, 4)])
def test_a_float32_network_gets_float32_targets_and_curvature(likelihood, K):
    # The functional API computes a float32 network in float32: the targets
    # must take the dtype asked for (not NumPy's default float64) and the
    # Hessian factor the logits' (an identity in float64 promoted it).
    f = RNG.normal(scale=3.0, size=(N, K)).astype(np.float32)
    y = RNG.randint(0, max(K, 2), size=N)
    s = RNG.uniform(0.2, 3.0, size=N).astype(np.float32)
    Y = likelihood.encode(np, y, K, np.float32)
    assert Y.dtype == np.float32 and Y.shape == (N, K)
    value, residual = likelihood.log_likelihood_and_residual(np, f, Y, s)
    assert value.dtype == residual.dtype == np.float32
    R = likelihood.hessian_factor(np, f, s)
    assert R.dtype == np.float32 and R.shape == (N, K, K)
    assert likelihood.output_hessian(np, f, s)(Y).dtype == np.float32
