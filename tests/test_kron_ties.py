"""The Kronecker basis inside repeated KFAC eigenvalues (``sklaplace._kron_ties``).

Where ``A``'s pencil or ``G`` repeats an eigenvalue, EKFAC's corrected
eigenvalues depend on the basis chosen inside it. The references: the
GGN block itself (``ggn_hessian``, tested against differences elsewhere)
for the tie matrices, and the estimator's own invariances (feature order,
class labels, round-off), which LAPACK's basis broke by 1e-3 to 1e-2 in
probability and 0.02 to 0.19 nats of evidence.
"""

import warnings

import numpy as np
import pytest

from sklaplace import LaplaceMLPClassifier
from sklaplace._curvature import (
    ggn_hessian,
    kron_eigenvalues,
    kron_factors,
    kron_tie_matrices,
)
from sklaplace._kron import KronPosterior
from sklaplace._kron_ties import TIE_RTOL, averaged, tied_groups, untied
from tests.conftest import make_problem


def _one_hot_problem():
    """Balanced one-hot columns (``A`` ties 7 eigenvalues), labels by category."""
    rng = np.random.RandomState(3)
    category = np.repeat(np.arange(8), 10)
    X = np.eye(8)[category]
    rate = rng.uniform(0.05, 0.95, 8)[category]
    y = (rng.uniform(size=80) < rate).astype(int)
    return X, y


def _kron_fit(X, y, **params):
    params = (
        dict(
            hidden_layer_sizes=(),
            alpha=0.01,
            bias_prior_precision=0.1,
            hessian_structure="kron",
            prior_precision_scale=1.0,
            random_state=0,
        )
        | params
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LaplaceMLPClassifier(**params).fit(X, y)


def _variances(clf, X):
    _, cov = clf.latent_mean_and_variance(X)
    return np.diagonal(cov, axis1=1, axis2=2)


def test_permuting_balanced_one_hot_columns_changes_nothing():
    # LAPACK's basis: probabilities 1.3e-2 apart, a logit variance 135%,
    # the evidence 0.19 nats; the solver's tolerance leaves about 2e-6.
    X, y = _one_hot_problem()
    order = np.array([5, 2, 1, 3, 0, 6, 7, 4])
    test = np.eye(8)
    base, permuted = _kron_fit(X, y), _kron_fit(X[:, order], y)
    np.testing.assert_allclose(
        permuted.predict_proba(test[:, order]), base.predict_proba(test), atol=1e-5
    )
    np.testing.assert_allclose(
        _variances(permuted, test[:, order]), _variances(base, test), rtol=1e-4
    )
    assert permuted.log_marginal_likelihood_ == pytest.approx(
        base.log_marginal_likelihood_, abs=1e-4
    )


def test_round_off_in_the_inputs_does_not_rotate_a_tied_basis():
    # A relative noise of 1e-14 had moved probabilities by 5.7e-3 and the
    # evidence by 0.08 nats (LAPACK's basis follows the round-off).
    X, y = _one_hot_problem()
    noisy = X * (1.0 + 1e-14 * np.random.RandomState(1).normal(size=X.shape))
    test = np.eye(8)
    base, moved = _kron_fit(X, y), _kron_fit(noisy, y)
    np.testing.assert_allclose(
        moved.predict_proba(test), base.predict_proba(test), atol=1e-10
    )
    assert moved.log_marginal_likelihood_ == pytest.approx(
        base.log_marginal_likelihood_, abs=1e-8
    )


def test_relabelling_the_classes_of_a_symmetric_design_permutes_the_columns():
    # Each of 4 categories has 7 rows of its own class and 1 of each other:
    # G repeats an eigenvalue three times (split by the MAP's own 3.5e-8),
    # and so do the tie matrices, a symmetry that no rotation separates.
    # LAPACK's basis: probabilities 1.4e-3 apart, 0.02 nats.
    X = np.repeat(np.eye(4), 10, axis=0)
    y = np.concatenate([[c] * 7 + [k for k in range(4) if k != c] for c in range(4)])
    relabel = np.array([2, 0, 3, 1])
    test = np.eye(4) + 0.3 * np.arange(4)[:, None] * np.eye(4)[::-1]
    params = dict(alpha=0.5)
    base, relabelled = _kron_fit(X, y, **params), _kron_fit(X, relabel[y], **params)
    np.testing.assert_allclose(
        relabelled.predict_proba(test)[:, relabel], base.predict_proba(test), atol=1e-5
    )
    assert relabelled.log_marginal_likelihood_ == pytest.approx(
        base.log_marginal_likelihood_, abs=1e-4
    )


def test_tied_groups_agree_relatively_and_never_at_zero():
    values = np.array([2.0, 1.0, 1.0 + 0.5 * TIE_RTOL, 2.0 + 1e-3, np.inf, np.inf])
    values = np.r_[values, 0.0, 0.0, 1e-300, 1.0 + 3 * TIE_RTOL, 2.0]
    groups = tied_groups([values])
    assert [list(g) for g in groups] == [[1, 2], [0, 10], [4, 5]]
    # A second key splits what the first ties.
    other = np.ones(11)
    other[2] = 5.0
    assert [list(g) for g in tied_groups([values, other])] == [[0, 10], [4, 5]]


def test_the_tie_matrices_are_the_ggn_blocks_partial_traces():
    """``Q_I`` is the trace over ``V``'s index of ``(S_I kron V)' B (S_I kron
    V)``, ``Q_J`` the trace over ``S``'s of ``(S kron V_J)' B (S kron V_J)``,
    for any groups, ``B`` the layer's GGN block from the dense GGN."""
    obj, theta = make_problem("tanh", 3, hidden=(4, 3), weighted=True, n_samples=25)
    factors = kron_factors(obj, theta)
    posterior = KronPosterior.from_factors(factors, obj.prior_precision)
    dense = ggn_hessian(obj, theta) - np.diag(obj.prior_precision)
    layout = obj.layout
    inputs = [[np.array([0, 2]), np.array([1, 3])], [np.array([1, 2, 4])], []]
    outputs = [[np.array([0, 3])], [], [np.array([0, 1, 2])]]
    bases = [(b.S, b.V) for b in posterior.blocks]
    ties_in, ties_out = kron_tie_matrices(obj, theta, bases, inputs, outputs)
    for i, (S, V) in enumerate(bases):
        block = dense[layout.layer_slice(i), layout.layer_slice(i)]
        r, c = S.shape[0], V.shape[0]
        for group, tie in zip(inputs[i], ties_in[i]):
            T = np.kron(S[:, group], V)
            M = (T.T @ block @ T).reshape(len(group), c, len(group), c)
            expected = np.einsum("ajbj->ab", M)
            atol = 1e-12 * np.max(np.abs(expected))  # the softmax's shift: 0
            np.testing.assert_allclose(tie, expected, rtol=1e-10, atol=atol)
        for group, tie in zip(outputs[i], ties_out[i]):
            T = np.kron(S, V[:, group])
            M = (T.T @ block @ T).reshape(r, len(group), r, len(group))
            expected = np.einsum("iaib->ab", M)
            atol = 1e-12 * np.max(np.abs(expected))
            np.testing.assert_allclose(tie, expected, rtol=1e-10, atol=atol)


def test_untied_makes_no_pass_without_a_tie_and_touches_only_the_tied(monkeypatch):
    # Random data tie nothing: no pass, the blocks themselves. A tie made
    # on the second layer's G (its m set equal) rotates that V alone.
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=30)
    factors = kron_factors(obj, theta)
    posterior = KronPosterior.from_factors(factors, obj.prior_precision)
    import sklaplace._kron_ties as ties_module

    calls = []
    original = ties_module.kron_tie_matrices
    spy = lambda *args: calls.append(1) or original(*args)  # noqa: E731
    monkeypatch.setattr(ties_module, "kron_tie_matrices", spy)
    blocks, still = untied(obj, theta, posterior.blocks)
    assert blocks is posterior.blocks and not calls
    assert all(not a and not b for a, b in still)
    tied = [posterior.blocks[0], posterior.blocks[1].with_basis(m=np.full(3, 2.0))]
    blocks, still = untied(obj, theta, tied)
    assert len(calls) == 1
    np.testing.assert_array_equal(blocks[0].S, tied[0].S)
    np.testing.assert_array_equal(blocks[1].S, tied[1].S)
    assert not np.allclose(np.abs(blocks[1].V), np.abs(tied[1].V))  # rotated


@pytest.mark.parametrize("side", ["inputs", "outputs"])
def test_untied_ends_in_one_basis_whatever_rotation_it_starts_from(side):
    """A tie made on every column of one side (``mu`` and ``rho``, or ``m``,
    set equal) and that side's basis rotated by a random orthogonal ``R``
    first: the rotated basis ends where the original does (up to signs)
    and the corrected eigenvalues agree. Rotating by ``R'`` instead of
    diagonalising the tie's matrix, or not at all, ends elsewhere."""
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=30, weighted=True)
    posterior = KronPosterior.from_factors(
        kron_factors(obj, theta), obj.prior_precision
    )
    block, second = posterior.blocks
    r, c = block.shape
    size = r if side == "inputs" else c
    R = np.linalg.qr(np.random.RandomState(2).normal(size=(size, size)))[0]
    if side == "inputs":
        tie = dict(mu=np.full(r, 0.5), rho=np.full(r, 0.5))
        starts = [block.with_basis(**tie), block.with_basis(S=block.S @ R, **tie)]
    else:
        starts = [block.with_basis(m=np.full(c, 2.0))]
        starts.append(starts[0].with_basis(V=block.V @ R))
    ends = [untied(obj, theta, [start, second])[0][0] for start in starts]
    one, other = ((e.S if side == "inputs" else e.V) for e in ends)
    np.testing.assert_allclose(np.abs(one), np.abs(other), atol=1e-8)
    h = [
        kron_eigenvalues(obj, theta, [(e.S, e.V), (second.S, second.V)])[0]
        for e in ends
    ]
    np.testing.assert_allclose(h[0], h[1], rtol=1e-8, atol=1e-12 * np.max(h[0]))


def test_averaged_makes_the_eigenvalues_free_of_the_basis_inside_a_group():
    h = np.arange(12.0).reshape(4, 3) ** 2
    out = averaged([h], [([np.array([1, 3])], [np.array([0, 2])])])[0]
    expected = h.copy()
    expected[[1, 3], :] = h[[1, 3], :].mean(axis=0)
    expected[:, [0, 2]] = expected[:, [0, 2]].mean(axis=1)[:, None]
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(h, np.arange(12.0).reshape(4, 3) ** 2)  # a copy


def test_a_rotated_block_keeps_its_diagonals_and_the_ggns_diagonal():
    """Balanced one-hot inputs into hidden (3,), three classes: the first
    layer's ``A`` ties. After the rotation ``S' B S = I`` (``B = A +
    diag(d)``), ``S' A S`` and ``S' diag(d) S`` are diagonal, to
    ``TIE_RTOL`` of their largest entry, with ``mu`` and ``rho`` on their
    diagonals (``rho`` summed over a tie instead of rotated: 7 times too
    large), and the corrected eigenvalues are the GGN block's diagonal in
    the rotated basis."""
    from sklaplace._likelihood import Categorical
    from sklaplace._network import ParamLayout
    from sklaplace._objective import NegLogPosterior
    from sklaplace._prior import prior_precision_vector

    X, _ = _one_hot_problem()
    y = np.random.RandomState(4).randint(0, 3, size=len(X))
    layout = ParamLayout((8, 3, 3))
    theta = np.random.RandomState(5).normal(scale=0.7, size=layout.n_params)
    prior = prior_precision_vector(layout, 0.5, 0.2)
    Y = Categorical.encode(np, y, 3, np.float64)
    obj = NegLogPosterior(np, layout, "tanh", Categorical, X, Y, np.ones(80), prior)
    factors = kron_factors(obj, theta)
    posterior = KronPosterior.from_curvature(obj, factors, theta)
    dense = ggn_hessian(obj, theta) - np.diag(prior)
    first = KronPosterior.from_factors(factors, prior).blocks[0]
    assert len(tied_groups([first.mu / first.rho, first.mu])) == 1  # a tie
    for i, block in enumerate(posterior.blocks):
        A, G = factors.inputs[i], factors.outputs[i]
        S, V, d = block.S, block.V, block.row_prior
        B = A + np.diag(d)
        np.testing.assert_allclose(S.T @ B @ S, np.eye(len(d)), atol=1e-10)
        pairs = ((S.T @ A @ S, block.mu), (S.T @ (d[:, None] * S), block.rho))
        for matrix, diagonal in pairs:
            scale = np.max(np.abs(matrix))
            np.testing.assert_allclose(np.diag(matrix), diagonal, atol=1e-12 * scale)
            off = matrix - np.diag(np.diag(matrix))
            assert np.max(np.abs(off)) <= TIE_RTOL * scale
        np.testing.assert_allclose(V.T @ V, np.eye(V.shape[0]), atol=1e-12)
        atol = 1e-12 * np.max(block.m)
        np.testing.assert_allclose(np.diag(V.T @ G @ V), block.m, atol=atol)
        T = np.kron(S, V)
        layer = dense[layout.layer_slice(i), layout.layer_slice(i)]
        expected = np.diag(T.T @ layer @ T).reshape(block.shape)
        np.testing.assert_allclose(block.data, expected, rtol=1e-10, atol=1e-12)


def test_the_input_ties_are_the_pencils_whatever_basis_lapack_gave():
    """Row prior (1, 1, 1, 4), a bias row's own, and ``A`` whose pencil has
    the eigenvalue 2 three times: every rotation of that eigenspace is a
    valid basis (``S'BS = I``, ``S'AS`` diagonal), and each finds the same
    tie of three. (A Rayleigh key ``mu / |S_i|^2`` on these columns split
    it one way in LAPACK's basis and not at all in others.)"""
    from sklaplace._kron import KronBlock
    from sklaplace._kron_ties import _input_ties

    d = np.array([1.0, 1.0, 1.0, 4.0])
    u = np.array([1.0, 2.0, 0.5, 0.0]) / np.sqrt(5.25)
    A = np.sqrt(d)[:, None] * (2.0 * np.eye(4) + 3.0 * np.outer(u, u)) * np.sqrt(d)
    block = KronBlock(A, np.eye(2), d)
    [tie] = tied_groups([block.mu / block.rho])
    assert len(tie) == 3
    for seed in range(3):
        R = np.linalg.qr(np.random.RandomState(seed).normal(size=(3, 3)))[0]
        S = block.S.copy()
        S[:, tie] = S[:, tie] @ R
        np.testing.assert_allclose(S.T @ A @ S, np.diag(block.mu), atol=1e-12)
        groups = _input_ties(block.with_basis(S=S))
        assert [list(g) for g in groups] == [list(tie)]
    assert [list(g) for g in _input_ties(block)] == [list(tie)]


def test_inputs_tie_on_the_pencils_eigenvalue_not_on_its_complement():
    """``mu`` 0.3 and 0.7 (``rho`` 0.7 and 0.3) are distinct eigenvalues,
    ``mu * rho`` of both 0.21; two columns of 0.5 tie, columns with no data
    (``mu`` round-off of the largest, 1e-17 apart by 1e-6) tie with nothing,
    and rows with no prior only where ``A``'s own eigenvalue on them, ``mu
    / |S_i|^2``, agrees."""
    from sklaplace._kron import KronBlock
    from sklaplace._kron_ties import _input_ties

    block = KronBlock(np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), np.eye(2), np.ones(6))
    mu = np.array([0.3, 0.7, 0.5, 0.5, 1e-17, 1e-17 * (1 + 1e-6)])
    S = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    tied = _input_ties(block.with_basis(S=S, mu=mu, rho=1.0 - mu))
    assert [list(g) for g in tied] == [[2, 3]]
    # No prior on the last three: ties where their A eigenvalues agree.
    mu, rho = np.array([0.3, 0.7, 1.0, 1.0, 1.0, 0.5]), np.r_[0.7, 0.3, 0, 0, 0, 0.5]
    S = np.diag([1.0, 1.0, 0.5, 0.5, 0.25, 1.0])  # A eigenvalues 4, 4, 16
    tied = _input_ties(block.with_basis(S=S, mu=mu, rho=rho))
    assert [list(g) for g in tied] == [[2, 3]]
    # KronBlock's own basis of flat rows whose A (rotated: S not diagonal)
    # has the eigenvalues 10, 5, 10, 15, without a warning from the 0 priors.
    R = np.linalg.qr(np.random.RandomState(0).normal(size=(4, 4)))[0]
    A = np.zeros((6, 6))
    A[:4, :4] = R @ np.diag([10.0, 5.0, 10.0, 15.0]) @ R.T
    A[4:, 4:] = np.diag([1.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block = KronBlock(A, np.eye(2), np.r_[0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
        [tie] = _input_ties(block)
    S = block.S[:, tie]
    assert len(tie) == 2
    np.testing.assert_allclose(A @ S, 10.0 * S, atol=1e-12)


def test_outputs_tie_on_gs_eigenvalue_and_not_at_its_round_off():
    from sklaplace._kron import KronBlock
    from sklaplace._kron_ties import _output_ties

    block = KronBlock(np.eye(2), np.eye(5), np.ones(2))
    m = np.array([2.0, 0.5, 1e-17, 2.0 * (1 + 1e-7), 1e-17 * (1 + 1e-6)])
    assert [list(g) for g in _output_ties(block.with_basis(m=m))] == [[0, 3]]
