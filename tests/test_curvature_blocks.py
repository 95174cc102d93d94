"""Curvature paths the networks of the other tests do not reach.

``tests/test_objective.py`` and ``tests/test_curvature.py`` check the exact
Hessian on networks of up to two hidden layers. There the second-order
precisions ``D_i`` (``second_order_precisions``) are at most one step deep
and the Jacobian ``T`` of a hidden layer with respect to one two layers below
(``KroneckerBlocks.add_residual_chunk``) never occurs; with three hidden
layers both recursions run, and the exact Hessian and its diagonal are
checked against finite differences of the gradient. Also pinned: the
residual term ``R`` alone (``residual_hessian`` without ``out``) as the
finite-difference Hessian minus the GGN built from raw data
(:func:`sklaplace._testing.dense_ggn`); the one-logit GGN and the KFAC factors
summed one row at a time (the chunking test of ``tests/test_curvature.py``
has three classes and no KFAC); KFAC's sample weights (a weight of 2 is the
row counted twice); and the error an overflowed curvature raises.
"""

import copy

import numpy as np
import pytest

from sklaplace._curvature import (
    KroneckerFactors,
    check_finite_curvature,
    exact_diagonal,
    exact_hessian,
    ggn_hessian,
    kron_factors,
    residual_hessian,
)
from sklaplace._curvature._blocks import (
    _kron_rows,
    _square_rows_product,
    _symmetric_pairs,
)
from sklaplace._network import with_ones
from sklaplace._testing import dense_ggn, numerical_derivative
from tests.conftest import make_problem

THREE_HIDDEN = (3, 4, 2)


def _assert_same_factors(actual, expected):
    """Two ``KroneckerFactors`` agree factor by factor, to rounding."""
    for part, part_expected in zip(actual, expected, strict=True):
        for factor, factor_expected in zip(part, part_expected, strict=True):
            np.testing.assert_allclose(factor, factor_expected, rtol=1e-12, atol=1e-13)


def _hessian_by_differences(obj, theta):
    """Finite differences of the gradient, symmetrised."""
    H = numerical_derivative(lambda t: obj.loss_gradient(t)[1], theta)
    return (H + H.T) / 2


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "logistic", "softplus"])
def test_exact_curvature_of_three_hidden_layers(activation, n_classes):
    obj, theta = make_problem(activation, n_classes, THREE_HIDDEN, weighted=True)
    numeric = _hessian_by_differences(obj, theta)
    scale = np.max(np.abs(numeric))
    H = exact_hessian(obj, theta)
    np.testing.assert_allclose(H, numeric, rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(
        exact_diagonal(obj, theta), np.diag(numeric), rtol=0, atol=1e-7 * scale
    )


@pytest.mark.parametrize("hidden", [(4,), THREE_HIDDEN], ids=["h1", "h3"])
def test_residual_term_alone_is_the_hessian_minus_the_ggn(hidden):
    obj, theta, raw = make_problem("tanh", 3, hidden, weighted=True, raw=True)
    keys = ("X", "sample_weight", "prior_precision", "layer_sizes", "activation")
    ggn = dense_ggn(theta, *[raw[key] for key in keys])
    expected = _hessian_by_differences(obj, theta) - ggn
    R = residual_hessian(obj, theta)
    assert np.max(np.abs(expected)) > 1e-2  # the term is not negligible here
    np.testing.assert_allclose(R, expected, rtol=0, atol=1e-7 * np.max(np.abs(ggn)))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_ggn_and_kfac_summed_one_row_at_a_time(n_classes):
    args = ("tanh", n_classes, (4, 3))
    obj, theta = make_problem(*args, weighted=True, n_samples=9)
    small, _ = make_problem(*args, weighted=True, n_samples=9, memory_budget=1)
    np.testing.assert_allclose(
        ggn_hessian(small, theta), ggn_hessian(obj, theta), rtol=1e-12, atol=1e-13
    )
    _assert_same_factors(kron_factors(small, theta), kron_factors(obj, theta))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kfac_weight_two_is_the_row_counted_twice(n_classes):
    obj, theta = make_problem("tanh", n_classes, (4,), n_samples=8)
    twice = copy.copy(obj)
    twice.X, twice.Y = np.concatenate([obj.X, obj.X]), np.concatenate([obj.Y, obj.Y])
    twice.sample_weight = np.ones(2 * obj.n_samples)
    obj.sample_weight = np.full(obj.n_samples, 2.0)
    _assert_same_factors(kron_factors(obj, theta), kron_factors(twice, theta))


def test_an_overflowed_curvature_names_the_problem_and_the_remedy():
    finite = np.eye(3)
    overflowed = np.eye(3)
    overflowed[1, 1] = np.inf
    factors = KroneckerFactors([finite, finite], [finite, np.diag([1.0, np.nan, 1.0])])
    for curvature in (overflowed, np.diag(overflowed), factors):
        with pytest.raises(ValueError, match=r"not finite \(it overflowed\)") as info:
            check_finite_curvature(np, curvature)
        assert "Standardise the features" in str(info.value)
        assert "increase alpha" in str(info.value)
    check_finite_curvature(np, KroneckerFactors([finite], [finite]))


@pytest.mark.parametrize("kind", ["exact", "exact_diag"])
def test_float32_exact_curvature_of_three_hidden_layers_stays_float32(kind):
    """float32 in, float32 out for the exact Hessian's residual blocks too.

    Under array_api_strict a float64 piece (an identity or a zero block built
    without the input's dtype) promotes a block, and writing it into the
    float32 Hessian is refused: three hidden layers reach every kind of
    block (diagonal, adjacent, cross and dense second-order ``D_i``).
    """
    xps = pytest.importorskip("array_api_strict")
    from sklaplace import log_posterior_hessian

    rng = np.random.RandomState(0)
    sizes = (3, *THREE_HIDDEN, 3)
    X = rng.normal(size=(12, sizes[0])).astype(np.float32)
    y = np.arange(12) % 3
    coefs = [
        rng.normal(size=(a, b)).astype(np.float32)
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    intercepts = [rng.normal(size=b).astype(np.float32) for b in sizes[1:]]
    strict = lambda arrays: [xps.asarray(a) for a in arrays]  # noqa: E731
    options = dict(kind=kind, activation="tanh", alpha=0.5)
    H = log_posterior_hessian(
        strict(coefs), strict(intercepts), xps.asarray(X), y, **options
    )
    assert H.dtype == xps.float32
    reference = log_posterior_hessian(
        [c.astype(np.float64) for c in coefs],
        [b.astype(np.float64) for b in intercepts],
        X.astype(np.float64),
        y,
        **options,
    )
    scale = np.max(np.abs(reference))
    np.testing.assert_allclose(np.asarray(H), reference, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("symmetric", [False, True])
def test_square_rows_product_is_the_row_kronecker_square_times_m(symmetric):
    # Only the pairs a <= b (and p <= k of a symmetric M) are multiplied;
    # the result must still be every row of _kron_rows(u, u).T @ M, so a
    # mirrored pair written to the wrong place, or a (p, k) column mapped
    # to another pair, changes entries by O(1).
    rng = np.random.default_rng(0)
    u = rng.standard_normal((9, 4))
    if symmetric:
        F = rng.standard_normal((9, 3, 3))
        M = np.reshape(F + np.transpose(F, (0, 2, 1)), (9, 9))
        P = 3
    else:
        M, P = rng.standard_normal((9, 5)), None
    actual = _square_rows_product(np, u, M, P)
    np.testing.assert_allclose(actual, _kron_rows(np, u, u).T @ M, rtol=1e-12)


@pytest.mark.parametrize("P", [1, 2, 5])
def test_symmetric_pairs_take_each_unordered_pair_once(P):
    # upper lists p * P + k for p <= k (no pair twice: the products of a
    # pair taken twice would be summed twice nowhere, but cost twice);
    # full sends (p, k) and (k, p) to the position of that pair.
    upper, full = _symmetric_pairs(P)
    expected = [p * P + k for p in range(P) for k in range(p, P)]
    assert sorted(upper.tolist()) == expected
    for p in range(P):
        for k in range(P):
            assert upper[full[p * P + k]] == min(p, k) * P + max(p, k)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kfac_weights_of_one_beside_others_are_still_weights(n_classes):
    # kron_factors skips scaling a chunk's inputs when every weight is 1;
    # a chunk where only some rows weigh exactly 1 must still be weighted:
    # a row of weight 3 is that row counted three times.
    obj, theta = make_problem("tanh", n_classes, (4,), n_samples=8)
    weight = np.where(np.arange(obj.n_samples) % 2 == 0, 1.0, 3.0)
    repeats = weight.astype(int)
    counted = copy.copy(obj)
    counted.X = np.repeat(obj.X, repeats, axis=0)
    counted.Y = np.repeat(obj.Y, repeats, axis=0)
    counted.sample_weight = np.ones(int(repeats.sum()))
    obj.sample_weight = weight
    factors, expected = kron_factors(obj, theta), kron_factors(counted, theta)
    for part, part_expected in zip(factors, expected, strict=True):
        for factor, factor_expected in zip(part, part_expected, strict=True):
            np.testing.assert_allclose(factor, factor_expected, rtol=1e-12, atol=1e-13)
    # And against the formula: A_i = sum_n s_n ahat_n ahat_n' / sum_n s_n.
    for A, a in zip(factors.inputs, obj.forward(theta).acts, strict=True):
        ahat = with_ones(np, a)
        reference = (ahat * weight[:, None]).T @ ahat / weight.sum()
        np.testing.assert_allclose(A, reference, rtol=1e-12, atol=1e-13)
