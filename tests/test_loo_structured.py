"""A row left out of a diagonal or Kronecker posterior, as that posterior holds it."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklaplace import LaplaceMLPClassifier
from sklaplace._jacobian import FactoredJacobian
from sklaplace._likelihood import likelihood_for
from sklaplace._loo_structured import holds_rows_diagonally, variances_without_rows
from sklaplace._posterior import DiagPosterior
from sklaplace._predictive import jacobian_chunks

X, Y = make_classification(
    80, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)


def _fitted(structure, subset="all", hidden=(4,)):
    return LaplaceMLPClassifier(
        hidden,
        alpha=0.5,
        hessian_structure=structure,
        subset_of_weights=subset,
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X, Y)


def _rows(clf, n=30):
    """The first ``n`` rows' factored Jacobians and output-Hessian factors."""
    layout = clf._layout()
    theta = layout.pack(np, clf.coefs_, clf.intercepts_)
    (logits, J), *_ = jacobian_chunks(
        np, layout, theta, clf._activation, clf.posterior_, X[:n]
    )
    assert isinstance(J, FactoredJacobian)
    return J, likelihood_for(3).hessian_factor(np, logits, np.ones(n))


@pytest.mark.parametrize("structure", ["diag", "kron"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_factored_and_dense_jacobians_give_the_same_covariances(structure, subset):
    clf = _fitted(structure, subset)
    J, R = _rows(clf)
    factored = variances_without_rows(np, clf.posterior_, J, R)
    dense = variances_without_rows(np, clf.posterior_, J.dense(np), R)
    assert np.all(np.isfinite(factored))
    np.testing.assert_allclose(factored, dense, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("hidden", [(4,), (4, 3)])
def test_a_diagonal_posterior_of_a_network_matches_the_dense_formula(hidden):
    # Two or three layers, factored Jacobians: each row's J diag(1 / (p - g))
    # J' with g its own diag(J' Lambda J), written out densely.
    clf = _fitted("diag", hidden=hidden)
    J, R = _rows(clf)
    Jd, Lam = J.dense(np), np.swapaxes(R, 1, 2) @ R
    g = np.einsum("nkw,nkl,nlw->nw", Jd, Lam, Jd)
    expected = np.einsum(
        "nkw,nw,nlw->nkl", Jd, 1.0 / (clf.posterior_.precision - g), Jd
    )
    got = variances_without_rows(np, clf.posterior_, J, R)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_which_posteriors_hold_rows_on_their_diagonal():
    assert not holds_rows_diagonally(_fitted("full").posterior_)
    assert not holds_rows_diagonally(_fitted("full", "last_layer").posterior_)
    for structure in ["diag", "kron"]:
        for subset in ["all", "last_layer"]:
            assert holds_rows_diagonally(_fitted(structure, subset).posterior_)
    # A prior that is not a multiple of the fitted one makes column-wise
    # Kronecker blocks, diagonal in no one basis.
    posterior = _fitted("kron").posterior_
    change = np.zeros(posterior.n_params)
    change[:4] = 3.0  # the first input row of the first layer (4 units)
    assert not holds_rows_diagonally(posterior.with_prior_change(np, change))


def test_a_row_whose_precision_without_it_is_not_positive_gets_nan():
    # One logit, two parameters, Lambda = 1: g = J^2 per parameter. Row 0
    # leaves 0.75 and 0.5 (defined, below 1), row 1 exactly 0, row 2 less.
    precision = np.array([1.0, 1.5])
    J = np.array([[[0.5, 1.0]], [[1.0, 0.5]], [[2.0, 0.0]]])
    R = np.ones((3, 1, 1))
    got = variances_without_rows(np, DiagPosterior(precision), J, R)
    assert got[0, 0, 0] == pytest.approx(0.25 / 0.75 + 1.0 / 0.5, rel=1e-12)
    assert np.isnan(got[1, 0, 0]) and np.isnan(got[2, 0, 0])


def test_a_row_that_one_layer_cannot_lose_gets_nan_whatever_the_others():
    # Factored, two layers of one input and one unit: row 1 takes all of
    # layer 2's precision (and leaves half of layer 1's), row 0 leaves some
    # in both.
    inputs = [np.array([[1.0], [1.0]]), np.array([[1.0], [1.0]])]
    deltas = [np.array([[[1.0]], [[1.0]]]), np.array([[[0.5]], [[2.0]]])]
    J = FactoredJacobian(inputs, deltas)
    got = variances_without_rows(
        np, DiagPosterior(np.array([2.0, 4.0])), J, np.ones((2, 1, 1))
    )
    assert got[0, 0, 0] == pytest.approx(1.0 / 1.0 + 0.25 / 3.75, rel=1e-12)
    assert np.isnan(got[1, 0, 0])
