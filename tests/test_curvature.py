import numpy as np
import pytest

from sklaplace._curvature import (
    CURVATURE_BUILDERS,
    exact_diagonal,
    exact_hessian,
    ggn_diagonal,
    ggn_hessian,
)
from sklaplace._testing import dense_ggn
from tests.conftest import CASES, case_id, make_problem


@pytest.mark.parametrize("case", CASES, ids=[case_id(*c) for c in CASES])
def test_ggn_matches_dense_reference(case):
    # The reference is rebuilt from the raw arrays (its own forward pass,
    # finite-difference Jacobian and Lambda): nothing is read from ``obj``.
    activation, n_classes, hidden, weighted = case
    obj, theta, raw = make_problem(activation, n_classes, hidden, weighted, raw=True)
    G = ggn_hessian(obj, theta)
    reference = dense_ggn(
        theta,
        raw["X"],
        raw["sample_weight"],
        raw["prior_precision"],
        raw["layer_sizes"],
        raw["activation"],
    )
    np.testing.assert_allclose(G, reference, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(G, G.T)
    assert np.linalg.eigvalsh(G).min() > 0  # A is positive definite here


def test_diagonals_match_full_matrices(problem):
    obj, theta = problem
    np.testing.assert_allclose(
        ggn_diagonal(obj, theta), np.diag(ggn_hessian(obj, theta)), rtol=1e-12
    )
    np.testing.assert_allclose(
        exact_diagonal(obj, theta),
        np.diag(exact_hessian(obj, theta)),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_ggn_equals_exact_without_hidden_layer(n_classes, activation):
    obj, theta = make_problem(activation, n_classes, hidden=(), weighted=True)
    np.testing.assert_allclose(
        ggn_hessian(obj, theta), exact_hessian(obj, theta), rtol=1e-13, atol=1e-13
    )


def test_exact_differs_from_ggn_for_smooth_hidden_layers():
    obj, theta = make_problem("tanh", 3, hidden=(4, 3))
    assert np.max(np.abs(ggn_hessian(obj, theta) - exact_hessian(obj, theta))) > 1e-2


def test_logistic_regression_hessian_is_the_direct_formula():
    obj, theta, raw = make_problem("identity", 2, hidden=(), weighted=True, raw=True)
    Phi = np.hstack([raw["X"], np.ones((raw["X"].shape[0], 1))])
    p = 1 / (1 + np.exp(-(Phi @ theta)))
    weight = raw["sample_weight"]
    direct = Phi.T @ (weight[:, None] * (p * (1 - p))[:, None] * Phi)
    direct += np.diag(raw["prior_precision"])
    for kind in ("exact", "ggn"):
        np.testing.assert_allclose(
            CURVATURE_BUILDERS[kind, "full"](obj, theta), direct, rtol=1e-12
        )


@pytest.mark.parametrize("kind", sorted(CURVATURE_BUILDERS))
def test_chunking_does_not_change_the_result(kind):
    obj, theta = make_problem("softplus", 3, hidden=(4, 3), weighted=True, n_samples=37)
    small, _ = make_problem(
        "softplus", 3, hidden=(4, 3), weighted=True, n_samples=37, memory_budget=1
    )
    np.testing.assert_allclose(
        _flat(CURVATURE_BUILDERS[kind](small, theta)),
        _flat(CURVATURE_BUILDERS[kind](obj, theta)),
        rtol=1e-12,
        atol=1e-13,
    )


def _flat(curvature):
    """One array from a matrix, a vector, or factors (a tuple of lists of arrays)."""
    if isinstance(curvature, tuple):
        return np.concatenate([np.ravel(a) for part in curvature for a in part])
    return np.asarray(curvature)
