"""The Laplace evidence at another prior, at a fixed MAP, at its edges.

Parameters held at zero and a prior change that overflows, each against a
dense reference from scratch (the common cases are in ``test_evidence.py``).
"""

import warnings

import numpy as np

from sklaplace._evidence_at_prior import log_evidence_at_prior
from sklaplace._network import ParamLayout
from sklaplace._posterior import FullPosterior

# Layout (2, 2, 1): weights 0-3, biases 4-5 (hidden), weights 6-7, bias 8.
_LAYOUT = ParamLayout((2, 2, 1))
_BIASES = np.array([4, 5, 8])


def _held_problem():
    """A full posterior ``P_data + scale A_old`` of layout (2, 2, 1), with
    parameters 1 and 7 held at zero (their rows and columns the identity's,
    ``theta`` 0 there), and the dense ``P_data`` of the free ones."""
    rng = np.random.RandomState(0)
    fixed = np.zeros(9, bool)
    fixed[[1, 7]] = True
    free = ~fixed
    root = rng.normal(size=(7, 7))
    data = root @ root.T + 0.5 * np.eye(7)
    old = np.where(np.isin(np.arange(9), _BIASES), 0.25, 0.5)
    scale = 2.0
    P = np.eye(9)
    P[np.ix_(free, free)] = data + scale * np.diag(old[free])
    theta = np.where(fixed, 0.0, rng.normal(size=9))
    posterior = FullPosterior(np.linalg.cholesky(P))
    return posterior, data, old, scale, theta, fixed


def _evidence_from_scratch(log_likelihood, data, new, theta, free):
    """``log p(y | theta) - (log det(P_data + A) - log det A + theta' A theta) / 2``
    over the free parameters, a flat prior left out of ``log det A``."""
    a = new[free]
    sign, log_det = np.linalg.slogdet(data + np.diag(a))
    assert sign > 0
    scatter = np.sum(a * theta[free] ** 2)
    return log_likelihood - 0.5 * (log_det - np.sum(np.log(a[a > 0])) + scatter)


def test_the_evidence_at_another_prior_leaves_held_parameters_out():
    """With parameters held at zero, the evidence at a new prior is that of
    the free parameters alone (``P_data + A_new`` restricted to them, their
    ``log det A``), from scratch, whether the new prior is proper at the held
    ones or flat there (a flat prior on a held parameter is no newly flat
    prior: not ``-inf``); a newly flat free parameter still gives ``-inf``.

    Mutants: the prior change not zeroed at the held parameters (or zeroed
    to 1), the held mask not handed on to the evidence (their ``log A``
    counted), and the free mask inverted.
    """
    posterior, data, old, scale, theta, fixed = _held_problem()
    free = ~fixed
    got = log_evidence_at_prior(
        _LAYOUT, theta, -3.0, old, posterior, scale, alpha=2.0, fixed=fixed
    )
    new = np.where(np.isin(np.arange(9), _BIASES), 0.25, 2.0)
    expected = _evidence_from_scratch(-3.0, data, new, theta, free)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # A per-parameter prior flat at the held parameters only.
    new = np.linspace(0.5, 1.3, 9)
    new[fixed] = 0.0
    got = log_evidence_at_prior(
        _LAYOUT, theta, -3.0, old, posterior, scale, alpha=new, fixed=fixed
    )
    expected = _evidence_from_scratch(-3.0, data, new, theta, free)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # ... and flat at a free one too.
    new[0] = 0.0
    got = log_evidence_at_prior(
        _LAYOUT, theta, -3.0, old, posterior, scale, alpha=new, fixed=fixed
    )
    assert got == -np.inf


def test_an_overflowing_prior_change_is_minus_infinity_without_a_warning():
    """A new weight precision of 1e300 against a posterior precision of order
    1e-12 (nearly flat: small data curvature under a small prior) overflows
    the posterior's prior change (``L^{-1} D L^{-T}``, ``L`` of order 1e-6);
    the evidence is the documented ``-inf`` (refused as not positive
    definite), with no NumPy overflow or invalid-value warning on the way.

    Mutants: the overflow or the invalid-value warning let through (either
    ``errstate`` argument dropped).
    """
    root = np.random.RandomState(1).normal(size=(9, 9))
    old = np.full(9, 1e-12)
    posterior = FullPosterior(
        np.linalg.cholesky(1e-12 * (root @ root.T) + np.diag(old))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = log_evidence_at_prior(
            _LAYOUT, np.zeros(9), -3.0, old, posterior, alpha=1e300
        )
    assert got == -np.inf
