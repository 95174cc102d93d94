"""The eigenvalue-corrected Kronecker posterior (EKFAC) against dense references.

The corrected eigenvalues are checked against the diagonal of the dense GGN
block (built from scratch by ``sklaplace._testing.dense_ggn``) in the block's basis, and
the corrected posterior, also under a prior its basis does not diagonalise
(``ColumnKronBlock``), against the dense matrix ``T diag(h) T' + prior``:
log det, ``J P^{-1} J'`` and the covariance diagonal.
"""

import pickle
import warnings

import numpy as np
import pytest
from scipy.linalg import block_diag

from sklaplace._backend import NotPositiveDefiniteError, to_numpy
from sklaplace._curvature import kron_eigenvalues, kron_factors
from sklaplace._curvature._ggn import backprop_bytes_per_row
from sklaplace._jacobian import logit_factors
from sklaplace._kron import KronBlock, KronPosterior
from sklaplace._kron_columns import ColumnKronBlock, vanishing
from sklaplace._likelihood import Categorical
from sklaplace._objective import NegLogPosterior
from sklaplace._posterior import laplace_posterior
from sklaplace._predictive import logit_jacobians
from sklaplace._testing import dense_ggn
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import make_problem


def _layer_blocks(obj, H):
    layout = obj.layout
    return [
        H[layout.layer_slice(i), layout.layer_slice(i)]
        for i in range(len(layout.shapes))
    ]


def _data_blocks(obj, theta):
    """The data's GGN blocks from scratch (``dense_ggn``: no curvature code shared)."""
    prior = np.asarray(obj.prior_precision)
    raw = (np.asarray(obj.X), np.asarray(obj.sample_weight), prior)
    H = dense_ggn(theta, *raw, obj.layout.layer_sizes, obj.activation)
    return _layer_blocks(obj, H - np.diag(prior))


def _basis(block):
    """``T = S^{-T} kron V``: the precision is ``T diag(E) T'``."""
    return np.kron(np.linalg.inv(block.S).T, block.V)


def _corrected(activation="tanh", n_classes=3, n_samples=25):
    obj, theta = make_problem(
        activation, n_classes, hidden=(4, 3), weighted=True, n_samples=n_samples
    )
    posterior, curvature, _ = laplace_posterior(obj, theta, "ggn", "kron")
    assert curvature == "ggn"
    return obj, theta, posterior


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "elu", "relu"])
def test_corrected_eigenvalues_are_the_ggn_diagonal_in_the_kron_basis(
    activation, n_classes
):
    obj, theta, posterior = _corrected(activation, n_classes)
    for block, dense in zip(posterior.blocks, _data_blocks(obj, theta)):
        T = np.kron(block.S, block.V)  # (S kron V)' B (S kron V)
        diagonal = np.diag(T.T @ dense @ T).reshape(block.shape)
        np.testing.assert_allclose(block.data, diagonal, rtol=1e-10, atol=1e-12)
        # KFAC's eigenvalues are another diagonal (what the test separates).
        kfac = block.mu[:, None] * block.m[None, :]
        assert np.max(np.abs(kfac - diagonal)) > 1e-3 * np.max(diagonal)


def test_one_sample_correction_equals_kfac():
    # With one sample KFAC is the exact block: its eigenvalues are the diagonal.
    obj, theta, posterior = _corrected("tanh", 3, n_samples=1)
    for block in posterior.blocks:
        np.testing.assert_allclose(
            block.data, block.mu[:, None] * block.m[None, :], rtol=1e-9, atol=1e-12
        )


def test_integer_weights_give_the_corrected_eigenvalues_of_repeated_rows():
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=12)
    counts = np.arange(12) % 3 + 1
    weighted = NegLogPosterior(
        np, obj.layout, obj.activation, Categorical, obj.X, obj.Y,
        counts.astype(float), obj.prior_precision,
    )  # fmt: skip
    rows = np.repeat(np.arange(12), counts)
    repeated = NegLogPosterior(
        np, obj.layout, obj.activation, Categorical, obj.X[rows], obj.Y[rows],
        np.ones(rows.size), obj.prior_precision,
    )  # fmt: skip
    posterior, _, _ = laplace_posterior(weighted, theta, "ggn", "kron")
    bases = [(block.S, block.V) for block in posterior.blocks]
    for left, right in zip(
        kron_eigenvalues(weighted, theta, bases),
        kron_eigenvalues(repeated, theta, bases),
    ):
        np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-14)


def _dense_precision(posterior, row_priors=None):
    """``T (diag(h) + R kron I) T'`` per block, ``R = S' diag(d) S``."""
    blocks = []
    for i, block in enumerate(posterior.blocks):
        source = getattr(block, "source", block)
        d = source.row_prior if row_priors is None else row_priors[i]
        r, c = source.shape
        R = source.S.T @ (d[:, None] * source.S)
        inner = np.diag(source.data.ravel()) + np.kron(R, np.eye(c))
        T = _basis(source)
        blocks.append(T @ inner @ T.T)
    return block_diag(*blocks)


def _assert_is_dense(posterior, P, obj, theta):
    covariance = np.linalg.inv(P)
    np.testing.assert_allclose(
        posterior.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-10
    )
    np.testing.assert_allclose(
        posterior.covariance_diagonal(np), np.diag(covariance), rtol=1e-9
    )
    (_, J), *_ = logit_jacobians(np, obj.layout, theta, obj.activation, obj.X[:6])
    (_, F), *_ = logit_factors(np, obj.layout, theta, obj.activation, obj.X[:6])
    general = np.random.RandomState(3).normal(size=(4, J.shape[1], P.shape[0]))
    for jacobian, dense in ((J, J), (F, J), (general, general)):
        np.testing.assert_allclose(
            posterior.functional_variance(np, jacobian),
            dense @ covariance @ np.swapaxes(dense, 1, 2),
            rtol=1e-8,
            atol=1e-12,
        )


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_the_corrected_posterior_is_its_dense_matrix(scale):
    obj, theta, posterior = _corrected()
    scaled = posterior.with_prior_change(np, (scale - 1.0) * obj.prior_precision)
    priors = [scale * b.row_prior for b in posterior.blocks]
    P = _dense_precision(posterior, priors)
    _assert_is_dense(scaled, P, obj, theta)


def test_a_prior_its_basis_does_not_diagonalise_gives_the_exact_column_block():
    # log_marginal_likelihood(alpha=...) keeps the bias prior: not a multiple.
    obj, theta, posterior = _corrected()
    layout = obj.layout
    factor = np.array([2.5, 0.3, 4.0])[layout.layer_index()]
    new = np.where(layout.bias_mask(), 1.0, factor) * obj.prior_precision
    changed = posterior.with_prior_change(np, new - obj.prior_precision)
    assert all(isinstance(b, ColumnKronBlock) for b in changed.blocks)
    priors = [
        new[obj.layout.layer_slice(i)].reshape(b.shape)[:, 0]
        for i, b in enumerate(posterior.blocks)
    ]
    P = _dense_precision(posterior, priors)
    _assert_is_dense(changed, P, obj, theta)
    # A scale of the column block, and a return to the fitted prior.
    tripled = changed.with_prior_change(np, 2.0 * new)
    _assert_is_dense(
        tripled, _dense_precision(posterior, [3 * d for d in priors]), obj, theta
    )
    back = changed.with_prior_change(np, obj.prior_precision - new)
    assert back.log_det_precision() == pytest.approx(
        posterior.log_det_precision(), rel=1e-12
    )


def test_a_flat_softmax_direction_stays_flat_and_out_of_the_predictions():
    # No output-bias prior: the common shift of the three logits has neither
    # data nor prior; both blocks give it unit precision (as KronBlock
    # does), and the centred variances equal the constrained dense ones.
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=30)
    layout = obj.layout
    obj.prior_precision = np.where(layout.bias_mask(), 0.0, 0.5) + np.where(
        layout.bias_mask() & (layout.layer_index() == 0), 0.2, 0.0
    )
    posterior, _, _ = laplace_posterior(obj, theta, "ggn", "kron")
    # Under a flat bias prior only a prior that varies over the input rows
    # (per parameter, constant along each row) is not a multiple.
    rows = np.ones(layout.shapes[1])
    rows[:-1] = np.linspace(0.5, 3.0, rows.shape[0] - 1)[:, None]
    first = np.where(layout.bias_mask(), 1.0, 3.0)[layout.layer_slice(0)]
    factor = np.concatenate([first, rows.ravel()])
    new = factor * obj.prior_precision
    changed = posterior.with_prior_change(np, new - obj.prior_precision)
    assert isinstance(changed.blocks[1], ColumnKronBlock)
    (_, J), *_ = logit_jacobians(np, layout, theta, "tanh", obj.X)
    centring = np.eye(3) - 1.0 / 3.0
    for post, prior in ((posterior, obj.prior_precision), (changed, new)):
        priors = [
            prior[layout.layer_slice(i)].reshape(b.shape)[:, 0]
            for i, b in enumerate(posterior.blocks)
        ]
        P = obj.constrained_curvature(_dense_precision(posterior, priors))
        ours = centring @ post.functional_variance(np, J) @ centring
        dense = centring @ (J @ np.linalg.solve(P, np.swapaxes(J, 1, 2))) @ centring
        np.testing.assert_allclose(ours, dense, rtol=1e-8, atol=1e-10)
        # The flat direction's unit precision, as constrained_curvature adds.
        np.testing.assert_allclose(
            post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-10
        )


def test_the_corrected_posterior_under_array_api_strict_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    obj, theta, posterior = _corrected()
    sobj, stheta = make_problem(
        "tanh", 3, hidden=(4, 3), weighted=True, n_samples=25, xp=xps
    )
    bases = [(block.S, block.V) for block in posterior.blocks]
    for ours, theirs in zip(
        kron_eigenvalues(obj, theta, bases), kron_eigenvalues(sobj, stheta, bases)
    ):
        np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-14)
    layout = obj.layout
    new = np.where(layout.bias_mask(), 1.0, 2.0) * obj.prior_precision
    changed = posterior.with_prior_change(np, new - obj.prior_precision)
    (_, J), *_ = logit_jacobians(np, layout, theta, "tanh", obj.X[:5])
    (_, F), *_ = logit_factors(xps, layout, stheta, "tanh", sobj.X[:5, ...])
    for post in (posterior, changed):
        for jacobian in (xps.asarray(J), F):
            np.testing.assert_allclose(
                to_numpy(post.functional_variance(xps, jacobian)),
                post.functional_variance(np, J),
                rtol=1e-11,
                atol=1e-14,
            )
        np.testing.assert_allclose(
            to_numpy(post.covariance_diagonal(xps)),
            post.covariance_diagonal(np),
            rtol=1e-12,
        )


def test_corrected_eigenvalues_accumulate_over_row_chunks():
    # A memory budget of four rows splits the pass into seven chunks: the
    # corrected eigenvalues are the same sums as in one chunk.
    whole, theta = make_problem("tanh", 3, hidden=(4, 3), weighted=True, n_samples=25)
    posterior, _, _ = laplace_posterior(whole, theta, "ggn", "kron")
    bases = [(b.S, b.V) for b in posterior.blocks]
    budget = 4 * backprop_bytes_per_row(whole)
    chunked, _ = make_problem(
        "tanh", 3, hidden=(4, 3), weighted=True, n_samples=25, memory_budget=budget
    )
    assert len(list(chunked.row_chunks(backprop_bytes_per_row(chunked)))) > 1
    for ours, reference in zip(
        kron_eigenvalues(chunked, theta, bases), kron_eigenvalues(whole, theta, bases)
    ):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-14)


def _synthetic_block(d=(0.7, 0.0, 1.3, 0.0, 0.4), c=3, seed=0, input_scale=1.0):
    """A KronBlock of random factors with the row prior ``d``, and random ``h``."""
    rng = np.random.RandomState(seed)
    X, Y = input_scale * rng.normal(size=(40, len(d))), rng.normal(size=(40, c))
    block = KronBlock(X.T @ X / 40, Y.T @ Y, np.asarray(d, dtype=float))
    assert block.jitter == 0.0
    return block, rng.uniform(0.5, 2.0, size=block.shape)


def _dense_block(block, h, d):
    """``T (diag(h) + S' D S kron I) T'`` with ``T = S^{-T} kron V``."""
    R = block.S.T @ (d[:, None] * block.S)
    inner = np.diag(h.ravel()) + np.kron(R, np.eye(block.shape[1]))
    return _basis(block) @ inner @ _basis(block).T


def _column_log_det(block, h, d):
    """The log det of ``_dense_block(block, h, d)``, one column at a time.

    ``sum_j log det(S' D S + diag(h_j)) - 2 c log |det S|``: each column's
    matrix is far better conditioned than the dense one in the basis ``T``.
    """
    R = block.S.T @ (d[:, None] * block.S)
    columns = [np.linalg.slogdet(R + np.diag(h_j)) for h_j in h.T]
    assert all(sign > 0 for sign, _ in columns)
    log_det_S = np.linalg.slogdet(block.S)[1]
    return sum(value for _, value in columns) - 2 * h.shape[1] * log_det_S


def test_corrected_flat_directions_are_where_prior_and_data_both_vanish():
    # On a direction without prior the corrected eigenvalue is h itself,
    # however small, and 1 only where h vanishes too (KFAC's m is not read).
    block, h = _synthetic_block()
    free = np.flatnonzero(block.rho <= 1e-12 * block.rho.max())
    assert free.size == 2 and np.all(block.m > 1e-3 * block.m.max())
    h[free[0], :] *= 1e-8
    h[free[1], 1] = 0.0
    E = block.corrected(h).eigenvalues()
    np.testing.assert_allclose(E[free[0]], h[free[0]], rtol=1e-12)
    assert E[free[1], 1] == 1.0
    mask = np.ones(h.shape, dtype=bool)
    mask[free[1], 1] = False
    np.testing.assert_allclose(E[mask], (h + block.rho[:, None])[mask], rtol=1e-12)


@pytest.mark.parametrize(
    "new_prior, no_data_column",
    [
        ((2.0, 0.0, 0.5, 0.0, 3.0), False),  # no prior on two rows, small data
        ((2e-13, 1e-13, 5e-14, 1.5e-13, 3e-13), True),  # weak prior, no data
    ],
    ids=["small-data", "weak-prior-no-data"],
)
def test_column_block_keeps_small_genuine_eigenvalues(new_prior, no_data_column):
    # Neither a column with little data under a prior with zeros, nor a
    # column without data (a dead unit) under a weak prior, is flat: the
    # log det is the dense one (a threshold on the block's largest
    # eigenvalue had made them 1, +129 nats on a dead ReLU unit).
    block, h = _synthetic_block(d=(0.7, 0.5, 1.3, 0.9, 0.4))
    h[:, 0] = 0.0 if no_data_column else 1e-8 * h[:, 0]
    d2 = np.asarray(new_prior)
    column = ColumnKronBlock(block.corrected(h), d2)
    P = _dense_block(block, h, d2)  # condition ~1e13: its log det to ~1e-5
    np.testing.assert_allclose(column.log_det(), np.linalg.slogdet(P)[1], rtol=1e-4)
    # Column by column, well conditioned: to round-off.
    assert column.log_det() == pytest.approx(_column_log_det(block, h, d2), rel=1e-8)


def test_column_block_flat_test_is_scale_free_on_small_inputs():
    # Inputs of scale 1e-3, no new prior on rows 1 and 3: there S^{-1} e_z
    # has a squared norm of about 1e-6, so whether a direction is flat must
    # be judged in an orthonormal basis of the prior's null space. Column
    # 0's data are 1e-9 of the others', genuine: no direction is flat. With
    # that basis left unnormalised two eigenvalues near 1e-9 become 1 and
    # the log det moves by about 41 nats (tolerance 1e-8 relative).
    block, h = _synthetic_block(input_scale=1e-3)
    h[:, 0] *= 1e-9
    d2 = np.array([2.0, 0.0, 0.5, 0.0, 3.0])
    column = ColumnKronBlock(block.corrected(h), d2)
    assert column.log_det() == pytest.approx(_column_log_det(block, h, d2), rel=1e-8)


def test_column_block_keeps_the_sources_jitter_as_prior():
    # A jittered block (a duplicated input, no weight prior) with data on
    # every direction: the jitter stays on the duplicate's direction as
    # prior, M_j = S' (d2 + jitter) S + diag(h_j). Without it that
    # eigenvalue is h instead of h + 1: at least 0.4 nats per column against
    # 1e-8 of a log det of about -40.
    block, _ = _jittered_block()
    h = np.random.RandomState(1).uniform(0.5, 2.0, size=block.shape)
    d2 = np.array([0.0, 0.5, 0.0, 0.0, 0.3])  # none on the duplicate
    column = ColumnKronBlock(block.corrected(h), d2)
    expected = _column_log_det(block, h, d2 + block.jitter)
    assert column.log_det() == pytest.approx(expected, rel=1e-8)


def test_column_block_without_any_prior_is_flat_only_where_the_data_vanish():
    # Built directly with no prior on any row (with_row_prior would take the
    # scaled path): M_j = diag(h_j), and a direction whose datum vanishes
    # has neither prior nor data, so it is flat (unit precision, the module
    # docstring); every other eigenvalue is h itself.
    block, h = _synthetic_block(d=(0.7, 0.5, 1.3, 0.9, 0.4))
    h[1, 0] = h[3, 0] = h[2, 2] = 0.0
    column = ColumnKronBlock(block.corrected(h), np.zeros(5))
    expected = np.where(h == 0.0, 1.0, h)
    np.testing.assert_allclose(
        np.sort(column.eigenvalues(), axis=0), np.sort(expected, axis=0), rtol=1e-12
    )
    reference = np.sum(np.log(expected)) - 2 * 3 * np.linalg.slogdet(block.S)[1]
    assert column.log_det() == pytest.approx(reference, rel=1e-10)


def test_vanishing_is_relative_to_the_largest_absolute_value():
    # 1.5e-12 is round-off against the largest size 2 (a negative entry),
    # not against the largest signed value 1.
    values = np.array([-2.0, 1.5e-12, 1.0, 0.0])
    np.testing.assert_array_equal(vanishing(values), [False, True, False, True])


def test_an_indefinite_prior_change_through_the_column_block_raises():
    # A negative weight prior keeping the bias prior: not a multiple, and
    # indefinite; its negative eigenvalues must not pass as flat.
    obj, theta, posterior = _corrected()
    new = np.where(obj.layout.bias_mask(), 1.0, -50.0) * obj.prior_precision
    with pytest.raises(NotPositiveDefiniteError, match="^The Kronecker-factored"):
        posterior.with_prior_change(np, new - obj.prior_precision)


def test_a_zero_prior_keeps_the_basis_and_a_zero_eigenvalue_raises():
    block, h = _synthetic_block()
    zero = block.corrected(h).with_row_prior(np.zeros(block.shape[0]))
    assert isinstance(zero, KronBlock) and zero.kappa == 0.0
    np.testing.assert_allclose(zero.eigenvalues(), h, rtol=1e-12)
    h[0, 2] = 0.0  # data vanish where the removed prior was
    posterior = KronPosterior([block.corrected(h)], np.repeat(block.row_prior, 3))
    with pytest.raises(NotPositiveDefiniteError, match="^The Kronecker-factored"):
        posterior.with_prior_change(np, -posterior.prior_precision)


@pytest.mark.parametrize("scale", [1e-6, 1e-8, 1e-11])
def test_a_small_prior_scale_keeps_the_eigenbasis(scale):
    # (s - 1) A added to A leaves round-off of the size of A, 1e-16 / s of
    # s A: a small scale is still a multiple (the same basis, not a
    # ColumnKronBlock, which at 1e-8 had been built and pickled with the
    # estimator). The log det is as accurate as that round-off allows:
    # measured 4e-12, 3e-10 and 8e-8 relative at 1e-6, 1e-8 and 1e-11.
    obj, theta, posterior = _corrected()
    scaled = posterior.with_prior_change(np, (scale - 1.0) * obj.prior_precision)
    assert all(isinstance(b, KronBlock) for b in scaled.blocks)
    priors = [scale * b.row_prior for b in posterior.blocks]
    np.testing.assert_allclose(
        scaled.log_det_precision(),
        _log_det_precision(posterior, priors),
        rtol=min(1e-6, 1e-16 / scale),
    )


def _log_det_precision(posterior, row_priors):
    """``log det`` of :func:`_dense_precision`'s ``T inner T'``, accurately.

    ``log det inner + 2 log |det T|``: at a tiny prior the precision's
    condition reaches 1e13, and ``slogdet`` of the formed product had
    drifted 2.8e-6 (relative) with the LAPACK build; ``inner``, a diagonal
    plus a small Kronecker term, factorises accurately once equilibrated.
    """
    total = 0.0
    for block, d in zip(posterior.blocks, row_priors):
        source = getattr(block, "source", block)
        r, c = source.shape
        R = source.S.T @ (d[:, None] * source.S)
        inner = np.diag(source.data.ravel()) + np.kron(R, np.eye(c))
        scale = np.sqrt(np.diag(inner))
        L = np.linalg.cholesky(inner / np.outer(scale, scale))
        log_det_inner = 2 * np.sum(np.log(scale)) + 2 * np.sum(np.log(np.diag(L)))
        # T = S^{-T} kron V: log |det T| = r log |det V| - c log |det S|.
        log_det_basis = (
            r * np.linalg.slogdet(source.V)[1] - c * np.linalg.slogdet(source.S)[1]
        )
        total += log_det_inner + 2 * log_det_basis
    return total


def test_a_negative_prior_is_not_flat():
    # A negative prior on a column without data (a dead unit) makes M_j
    # indefinite: it must raise, not pass as a direction without prior.
    block, h = _synthetic_block(d=(0.7, 0.5, 1.3, 0.9, 0.4))
    h[:, 0] = 0.0
    column = ColumnKronBlock(block.corrected(h), np.array([-0.2, 0.5, 1.3, 0.9, 0.4]))
    with pytest.raises(NotPositiveDefiniteError, match="^A Kronecker block is not"):
        column.log_det()


def test_the_column_blocks_flat_directions_are_the_priors_null_space():
    # With the fitted prior itself, the column block is the corrected block:
    # R = diag(rho), and a direction without prior whose datum vanishes in
    # one column is flat there and only there. The prior's null space in
    # the basis is S^{-1} e_Z (coordinate directions), not S' e_Z.
    block, h = _synthetic_block()
    free = np.flatnonzero(block.rho <= 1e-12 * block.rho.max())
    h[free[0], 1] = 0.0
    corrected = block.corrected(h)
    column = ColumnKronBlock(corrected, block.row_prior)
    assert list(column._n_flat) == [0, 1, 0]
    assert column.log_det() == pytest.approx(corrected.log_det(), rel=1e-12)


def test_a_block_pickled_before_the_correction_keeps_kfac_eigenvalues():
    block, h = _synthetic_block()
    state = block.__getstate__()
    del state["data"]  # what a KronBlock pickled before the correction holds
    old = object.__new__(KronBlock)
    old.__setstate__(state)
    np.testing.assert_allclose(old.eigenvalues(), block.eigenvalues(), rtol=0)
    again = pickle.loads(pickle.dumps(block.corrected(h)))
    np.testing.assert_allclose(again.data, h, rtol=0)


def _jittered_block():
    """A KronBlock whose ``A + D`` is singular (a duplicated input, no
    weight prior): it needs a jitter, which is numerical, not prior."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3))
    inputs = np.hstack([X, X[:, :1], np.ones((30, 1))])
    Y = rng.normal(size=(30, 2))
    block = KronBlock(inputs.T @ inputs / 30, Y.T @ Y, np.array([0, 0, 0, 0, 0.1]))
    assert block.jitter > 0
    # No data along the duplicate's null direction (mu = 0), as a fit gives.
    h = rng.uniform(0.5, 2.0, size=block.shape)
    return block, np.where(block.mu[:, None] > 1e-8, h, 0.0)


@pytest.mark.parametrize("corrected", [False, True], ids=["kfac", "ekfac"])
def test_a_prior_scale_leaves_the_jitter_alone(corrected):
    # kappa scales D, not the jitter added for round-off: scaling it too had
    # moved the log det by -1/2 log kappa per jittered direction (a probe:
    # 64 x ln 2 = 44 nats on doubling a bias prior).
    block, h = _jittered_block()
    block = block.corrected(h) if corrected else block
    d = block.row_prior - block.jitter
    r, c = block.shape
    if corrected:
        data = _basis(block) @ np.diag(h.ravel()) @ _basis(block).T
    else:
        data = np.kron(block.inputs, block.outputs)
    for kappa in (2.0, 0.5):
        prior = np.kron(np.diag(kappa * d + block.jitter), np.eye(c))
        np.testing.assert_allclose(
            block.scaled(kappa).log_det(),
            np.linalg.slogdet(data + prior)[1],
            rtol=1e-5,  # jittered directions: condition ~1e11
        )
    if corrected:  # a prior that is not a multiple keeps the jitter too
        assert isinstance(
            block.with_row_prior(np.array([0, 0.5, 0, 0, 0.3])), ColumnKronBlock
        )
        d2 = np.array([0, 0.5, 0, 0, 0.3])  # still none on the duplicate
        prior = np.kron(np.diag(d2 + block.jitter), np.eye(c))
        np.testing.assert_allclose(
            block.with_row_prior(d2).log_det(),
            np.linalg.slogdet(data + prior)[1],
            rtol=1e-5,  # jittered directions: condition ~1e11
        )


def test_a_prior_change_that_varies_along_the_rows_warns():
    # The Kronecker posterior holds one prior per input row: a per-parameter
    # prior is replaced by its row means, with the warning fit gives; a scale
    # of a posterior fitted that way does not warn again.
    obj, theta, posterior = _corrected()
    varying = obj.prior_precision * np.linspace(0.5, 1.5, obj.layout.n_params)
    with pytest.warns(LaplaceApproximationWarning, match="row means"):
        posterior.with_prior_change(np, varying - obj.prior_precision)
    with pytest.warns(LaplaceApproximationWarning, match="row means"):
        fitted = KronPosterior.from_factors(kron_factors(obj, theta), varying)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.with_prior_change(np, 2.0 * varying)


@pytest.mark.parametrize("scale", [1e-14, 1e-8, 1.0, 1e8, 0.0])
def test_a_column_block_at_a_multiple_of_the_fitted_prior_is_the_scaled_block(scale):
    # With s d (the fitted prior's multiple) and s h, M_j = s (diag(rho) +
    # diag(h_j)): the column block is the scaled corrected block whatever s,
    # flat directions included. Its thresholds are relative to the data's
    # own scale, not absolute (1e-12 against tiny data had made every
    # direction without prior flat). scale=0 is a layer without data (a dead
    # ReLU layer): h = 0 exactly, and every direction without prior is flat,
    # as in KronBlock.
    block, h = _synthetic_block()
    free = np.flatnonzero(block.rho <= 1e-12 * block.rho.max())
    assert free.size == 2
    h[free[0], 1] = 0.0  # no prior and no data: flat in column 1 only
    s = scale if scale > 0 else 1.0
    data = scale * h
    corrected = block.corrected(data)
    column = ColumnKronBlock(corrected, s * block.row_prior)
    reference = corrected.scaled(s)
    expected_flat = [2, 2, 2] if scale == 0 else [0, 1, 0]
    assert list(column._n_flat) == expected_flat
    np.testing.assert_allclose(
        np.sort(column.eigenvalues(), axis=0),
        np.sort(reference.eigenvalues(), axis=0),
        rtol=1e-9,
    )
    assert column.log_det() == pytest.approx(reference.log_det(), rel=1e-10, abs=1e-8)


def test_an_exact_zero_eigenvalue_raises_from_the_log_det():
    # log_of_positive's contract: a value that is not positive raises, zero
    # included (log 0 = -inf would give an evidence of +inf). Without prior
    # (kappa = 0) a datum that vanishes where the prior was is E = 0 exactly;
    # with a positive prior on every row it is not flat.
    block, h = _synthetic_block(d=(0.7, 0.5, 1.3, 0.9, 0.4))
    h[0, 2] = 0.0
    zero = block.corrected(h).scaled(0.0)
    assert zero.eigenvalues()[0, 2] == 0.0 and np.all(zero.eigenvalues() >= 0)
    with pytest.raises(
        NotPositiveDefiniteError, match="Kronecker block is not positive definite"
    ):
        zero.log_det()


def test_a_prior_change_through_column_blocks_adds_no_jitter():
    # KronPosterior.jitter is the largest jitter a block's A + D needed, 0.0
    # if none: the column blocks decompose no A + D, so a posterior without
    # jitter keeps none after a prior change that is not a multiple.
    obj, theta, posterior = _corrected()
    assert posterior.jitter == 0.0
    layout = obj.layout
    new = np.where(layout.bias_mask(), 1.0, 2.5) * obj.prior_precision
    changed = posterior.with_prior_change(np, new - obj.prior_precision)
    assert all(isinstance(b, ColumnKronBlock) for b in changed.blocks)
    assert changed.jitter == 0.0


def test_a_block_pickled_before_the_jitter_was_split_off_scales_it_with_the_prior():
    # A KronBlock pickled before the correction holds neither the corrected
    # eigenvalues nor the jitter's share of rho: its eigenvalues are KFAC's
    # and a prior scale kappa multiplies all of rho, jitter included
    # (E = mu m + kappa rho), as it then did.
    block, _ = _jittered_block()
    state = block.__getstate__()
    del state["data"], state["rho_jitter"]
    old = object.__new__(KronBlock)
    old.__setstate__(state)
    kfac = block.mu[:, None] * block.m[None, :]
    for kappa in (1.0, 2.0, 0.5):
        np.testing.assert_allclose(
            old.scaled(kappa).eigenvalues(),
            kfac + kappa * block.rho[:, None],
            rtol=1e-12,
        )


@pytest.mark.parametrize("corrected", [False, True], ids=["kfac", "ekfac"])
def test_a_multiple_of_a_jittered_blocks_prior_keeps_its_basis_and_jitter(corrected):
    # The multiple is judged on the prior without the jitter: twice d is a
    # scale (kappa 2, the same S), not a new prior to decompose anew (a new
    # jitter, KFAC) or a ColumnKronBlock (EKFAC).
    block, h = _jittered_block()
    block = block.corrected(h) if corrected else block
    d = block.row_prior - block.jitter
    doubled = block.with_row_prior(2.0 * d)
    assert isinstance(doubled, KronBlock)
    assert doubled.kappa == pytest.approx(2.0, rel=1e-12)
    assert doubled.S is block.S and doubled.jitter == block.jitter
    c = block.shape[1]
    if corrected:
        data = _basis(block) @ np.diag(h.ravel()) @ _basis(block).T
    else:
        data = np.kron(block.inputs, block.outputs)
    prior = np.kron(np.diag(2.0 * d + block.jitter), np.eye(c))
    np.testing.assert_allclose(
        doubled.log_det(),
        np.linalg.slogdet(data + prior)[1],
        rtol=1e-5,  # jittered directions: condition ~1e11
    )
