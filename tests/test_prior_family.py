"""The posterior's family over prior scales at the edges of its contract.

A last layer's family with parameters held at zero, one rebuilt per scale,
and a flat block singular to round-off, each against a dense or closed-form
reference (the common cases are in ``test_prior_scale.py``).
"""

import warnings

import numpy as np
import pytest

import sklaplace._memory
from sklaplace._last_layer import LastLayerPosterior
from sklaplace._posterior import DiagPosterior, FullPosterior
from sklaplace._prior_family import ScaledPriorFamily


def _fixed_last_layer():
    """A last layer's full posterior (4 parameters, the third held at zero).

    Three earlier parameters (prior 2, 0 (flat), 0.5) sit before it. The held
    parameter's row and column of the last layer's precision are the
    identity's (no prior, no data: decoupled), as a pruned fit's are.
    """
    rng = np.random.RandomState(0)
    root = rng.normal(size=(4, 4))
    P = root @ root.T + 4.0 * np.eye(4)
    P[2, :] = P[:, 2] = 0.0
    P[2, 2] = 1.0
    other = np.array([2.0, 0.0, 0.5])
    A = np.concatenate([other, [1.0, 0.5, 3.0, 2.0]])
    fixed = np.zeros(7, bool)
    fixed[3 + 2] = True
    posterior = LastLayerPosterior(FullPosterior(np.linalg.cholesky(P)), other)
    return posterior, P, A, fixed


def test_a_last_layer_family_with_held_parameters_equals_its_dense_precision():
    # ``fixed`` covers all parameters while the family's own block starts at
    # the last layer's offset: the held one keeps the identity (no c A) at
    # every c, the flat earlier one adds no log(c * 0). From scratch:
    # log det P(c) = slogdet(P_last + (c - 1) A_last, held entry 0) plus
    # 2 log(c) + log(2 * 0.5); the variances J_last P(c)^{-1} J_last' with
    # the held column of J zero (as its callers pass it). A family reading
    # the full-length ``fixed`` against the last layer's prior cannot even
    # be built (shapes 7 and 4); one dropping the held entry's zero would
    # scale its 3.0 and move log det by log(1 + 3 (c - 1)) (> 0.6 here).
    posterior, P, A, fixed = _fixed_last_layer()
    family = ScaledPriorFamily(posterior, A, fixed)
    assert family.all_at_once
    A_last = np.where(fixed[3:], 0.0, A[3:])
    J = np.random.RandomState(1).normal(size=(5, 2, 7))
    J[:, :, 5] = 0.0  # the held parameter's column, as callers mask it
    scales = [0.5, 1.0, 4.0]
    variances = list(family.functional_variances(np, J, scales))
    grid = family.functional_variance_grid(np, J, scales)
    for i, c in enumerate(scales):
        P_c = P + (c - 1.0) * np.diag(A_last)
        sign, log_det = np.linalg.slogdet(P_c)
        assert sign > 0
        expected_log_det = log_det + 2.0 * np.log(c) + np.log(2.0 * 0.5)
        np.testing.assert_allclose(
            family.log_det_precision(c), expected_log_det, rtol=1e-12
        )
        J_last = J[:, :, 3:]
        expected = np.einsum("nka,ab,nlb->nkl", J_last, np.linalg.inv(P_c), J_last)
        np.testing.assert_allclose(variances[i], expected, rtol=1e-10)
        np.testing.assert_allclose(grid[:, i], expected, rtol=1e-10)


def test_a_flat_block_singular_to_round_off_falls_back_to_one_posterior_per_scale():
    # L = [[1, 0, 0], [1, 1e-9, 0], [1, 1, 2]], prior (0, 0, 1): the flat
    # block P_FF = L_F L_F' = [[1, 1], [1, 1 + 1e-18]] rounds to the exactly
    # singular [[1, 1], [1, 1]], whose Cholesky factorisation fails (a zero
    # pivot), though P = L L' is positive definite. The family must not fail
    # with it: it rebuilds each scale from L (never forming P). Reference by
    # the matrix determinant lemma: v = L^{-1} e_2 = (0, 0, 1/2) exactly, so
    # (P^{-1})_22 = 1/4 and log det P(c) = 2 (log 1e-9 + log 2) +
    # log(1 + (c - 1) / 4); by Sherman-Morrison (P(c)^{-1})_22 =
    # (1/4) / (1 + (c - 1) / 4). The scales' values differ by far more than
    # the tolerances.
    L = np.array([[1.0, 0.0, 0.0], [1.0, 1e-9, 0.0], [1.0, 1.0, 2.0]])
    A = np.array([0.0, 0.0, 1.0])
    family = ScaledPriorFamily(FullPosterior(L), A)
    assert not family.all_at_once  # the improper flat block: per scale
    J = np.zeros((1, 1, 3))
    J[0, 0, 2] = 1.0
    scales = [0.5, 1.0, 3.0]
    variances = list(family.functional_variances(np, J, scales))
    for i, c in enumerate(scales):
        expected = 2.0 * (np.log(1e-9) + np.log(2.0)) + np.log1p((c - 1.0) / 4.0)
        np.testing.assert_allclose(family.log_det_precision(c), expected, rtol=1e-12)
        np.testing.assert_allclose(
            variances[i][0, 0, 0], 0.25 / (1.0 + (c - 1.0) / 4.0), rtol=1e-10
        )


def test_centred_variances_of_a_last_layer_family_rebuilt_per_scale():
    # A last layer's diagonal posterior has no eigendecomposition: each
    # scale's posterior is rebuilt and takes J over all parameters (it picks
    # its own columns). The probit's centred variances are then
    # diag(C J_last (p + (c - 1) A_last)^{-1} J_last' C), C = I - 11'/3, from
    # scratch. Cutting J to the last layer's columns before handing it to
    # the rebuilt posterior (which cuts again) takes the wrong columns: a
    # shape error, or other parameters' variances.
    rng = np.random.RandomState(0)
    offset, W = 4, 6
    other = rng.uniform(0.5, 2.0, offset)
    p = rng.uniform(2.0, 4.0, W)
    A = np.concatenate([other, rng.uniform(0.5, 1.5, W)])
    family = ScaledPriorFamily(LastLayerPosterior(DiagPosterior(p), other), A)
    assert not family.all_at_once
    J = rng.normal(size=(5, 3, offset + W))
    scales = [0.5, 1.0, 4.0]
    centred = family.centred_variances(np, J, scales)
    assert centred.shape == (5, 3, len(scales))
    C = np.eye(3) - 1.0 / 3.0
    CJ = np.einsum("ij,njw->niw", C, J[:, :, offset:])
    for i, c in enumerate(scales):
        expected = np.einsum("nkw,w->nk", CJ * CJ, 1.0 / (p + (c - 1.0) * A[offset:]))
        np.testing.assert_allclose(centred[:, :, i], expected, rtol=1e-12)


@pytest.mark.parametrize("eigen", [False, True])
def test_one_logits_centred_variances_are_its_variances(eigen):
    # One logit has nothing to centre (C = 1): the probit's variances are
    # diag(J P(c)^{-1} J') with P(c) = P + (c - 1) A, by the eigendecomposed
    # full family (its projections centred) and by a last layer's diagonal
    # family rebuilt per scale. Centring one logit as if it were K (its
    # mean subtracted) zeroes them.
    rng = np.random.RandomState(1)
    offset, W = 4, 6
    A = rng.uniform(0.5, 1.5, offset + W)
    J = rng.normal(size=(5, 1, offset + W))
    scales = [0.5, 1.0, 4.0]
    if eigen:
        M = rng.normal(size=(offset + W, offset + W))
        P = M @ M.T + np.diag(A)
        family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A)
        assert family.all_at_once
        Js, precisions = J, [P + (c - 1.0) * np.diag(A) for c in scales]
    else:
        p = A[offset:] + rng.uniform(1.0, 3.0, W)
        posterior = LastLayerPosterior(DiagPosterior(p), A[:offset])
        family = ScaledPriorFamily(posterior, A)
        Js = J[:, :, offset:]
        precisions = [np.diag(p + (c - 1.0) * A[offset:]) for c in scales]
    centred = family.centred_variances(np, J, scales)
    for i, P_c in enumerate(precisions):
        expected = np.einsum("nkw,wv,nkv->nk", Js, np.linalg.inv(P_c), Js)
        np.testing.assert_allclose(centred[:, :, i], expected, rtol=1e-10)


def test_a_kronecker_family_builds_each_scale_once_and_keeps_it(monkeypatch):
    # Row chunks ask for the same scales again and again (the leave-one-out
    # of 40 classes rebuilt them 23,281 times); each scale's posterior is
    # built once, and each chunk's variances are those of a fresh posterior
    # at its scale. With parameters held at zero each scale's is rebuilt
    # (decomposed anew, not kept). A scale with no posterior gives None.
    from sklearn.datasets import load_iris

    from sklaplace import LaplaceMLPClassifier
    from sklaplace._kron import KronPosterior

    X, y = load_iris(return_X_y=True)
    clf = LaplaceMLPClassifier(
        (5,), alpha=1.0, hessian_structure="kron", prior_precision_scale=1.0
    ).fit(X, y)
    posterior, A = clf.posterior_, clf.prior_precision_
    assert isinstance(posterior, KronPosterior)
    scales = [0.5, 1.0, 4.0, -1e6]
    rng = np.random.RandomState(0)
    chunks = [rng.normal(size=(n, 3, A.shape[0])) for n in (2, 3, 1)]
    expected = []
    for J in chunks:
        row = [posterior.with_prior_change(np, (c - 1.0) * A) for c in scales[:3]]
        expected.append([p.functional_variance(np, J) for p in row] + [None])

    built = []
    original = KronPosterior.with_prior_change

    def spy(self, xp, delta):
        built.append(delta)
        return original(self, xp, delta)

    monkeypatch.setattr(KronPosterior, "with_prior_change", spy)
    for fixed, builds in [(None, 3), (np.arange(A.shape[0]) == 0, 3 * len(chunks))]:
        built.clear()
        family = ScaledPriorFamily(posterior, A, fixed)
        for J, want in zip(chunks, expected):
            if fixed is not None:
                J = np.where(fixed, 0.0, J)
            got = list(family.functional_variances(np, J, scales))
            assert got[3] is None  # not positive definite at -1e6
            if fixed is None:
                for g, w in zip(got[:3], want[:3]):
                    np.testing.assert_allclose(g, w, rtol=1e-12)
        # c = 1 is the posterior itself: three scales built (-1e6 raising).
        assert len(built) == builds


def test_a_diagonal_family_gives_every_scale_at_once(monkeypatch):
    # A diagonal posterior is its own eigendecomposition: P(c) = p + (c - 1) a.
    # Its variances at every scale (the probit's centred ones in groups of
    # scales, the K x K ones per scale) equal sums over the parameters from
    # scratch, with a parameter held at zero (identity precision, zero
    # columns of J, as callers pass them) and a data part negative on one
    # entry (an exact Hessian's), where the two smallest scales are not
    # positive definite: NaN and None there. Budgets small enough for one or
    # two scales a group (two groups kept at most) change nothing.
    import sklaplace._memory

    rng = np.random.RandomState(0)
    W, K = 7, 3
    a = rng.uniform(0.5, 2.0, W)
    a[4] = 0.0  # held at zero
    data = rng.uniform(0.1, 3.0, W)
    data[2] = -0.4  # p + (c - 1) a = data + c a: negative below c = 0.4 / a[2]
    p = data + a
    p[4] = 1.0
    fixed = np.arange(W) == 4
    J = rng.normal(size=(5, K, W))
    J[:, :, 4] = 0.0
    scales = [0.01, 0.1, 1.0, 3.0, 100.0]
    C = np.eye(K) - 1.0 / K
    expected = []
    for c in scales:
        P_c = p + (c - 1.0) * np.where(fixed, 0.0, a)
        if np.all(P_c > 0):
            expected.append(np.einsum("nkw,w,nlw->nkl", J, 1.0 / P_c, J))
        else:
            expected.append(None)
    assert [e is None for e in expected] == [True, True, False, False, False]
    for budget in (sklaplace._memory.DEFAULT_MEMORY_BUDGET, 64 * W, 128 * W):
        monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", budget)
        family = ScaledPriorFamily(DiagPosterior(p), a, fixed)
        for _ in range(2):  # the second time from what was kept, if any
            centred = family.centred_variances(np, J, scales)
            variances = list(family.functional_variances(np, J, scales))
            for i, want in enumerate(expected):
                if want is None:
                    assert np.all(np.isnan(centred[:, :, i])) and variances[i] is None
                    continue
                centred_want = np.einsum("ij,njl,lk->nik", C, want, C)
                np.testing.assert_allclose(
                    centred[:, :, i],
                    np.diagonal(centred_want, axis1=1, axis2=2),
                    rtol=1e-12,
                )
                np.testing.assert_allclose(variances[i], want, rtol=1e-12)
        kept = sum(v.nbytes for v in family._inverses.values())
        assert kept <= budget // 4


@pytest.mark.parametrize("last_layer", [False, True])
def test_a_diagonal_family_takes_the_jacobians_factors(last_layer):
    # A diagonal posterior (of all weights, or of a last layer) and its
    # family take J factored: the K x K variances and the probit's centred
    # variances at every scale equal those of the dense J (from the factors'
    # own dense form, which tests/test_kron.py checks against finite
    # differences) to round-off, and those from scratch. A scale with a
    # non-positive entry (an exact Hessian's negative data part) is NaN.
    from sklaplace._jacobian import logit_factors
    from tests.conftest import make_problem

    obj, theta = make_problem("tanh", 3, hidden=(4, 3), n_samples=12)
    layout, X = obj.layout, np.asarray(obj.X)[:6]
    [(_, factors)] = logit_factors(np, layout, theta, "tanh", X)
    dense = factors.dense(np)
    rng = np.random.RandomState(0)
    W = layout.n_params
    a = rng.uniform(0.5, 2.0, W)
    data = rng.uniform(0.1, 3.0, W)
    data[-1] = -0.2  # not positive definite below c = 0.2 / a[-1]
    offset = W - (layout.layer_sizes[-2] + 1) * layout.layer_sizes[-1]
    if last_layer:
        posterior = LastLayerPosterior(
            DiagPosterior(data[offset:] + a[offset:]), a[:offset]
        )
        own = slice(offset, W)
    else:
        posterior, own = DiagPosterior(data + a), slice(0, W)
    scales = [0.01, 0.5, 1.0, 20.0]
    family = ScaledPriorFamily(posterior, a)
    C = np.eye(3) - 1.0 / 3.0
    centred = family.centred_variances(np, factors, scales)
    np.testing.assert_allclose(
        centred, family.centred_variances(np, dense, scales), rtol=1e-12
    )
    variances = list(family.functional_variances(np, factors, scales))
    for i, c in enumerate(scales):
        P_c = data[own] + c * a[own]
        if not np.all(P_c > 0):
            assert variances[i] is None and np.all(np.isnan(centred[:, :, i]))
            continue
        J = dense[:, :, own]
        want = np.einsum("nkw,w,nlw->nkl", J, 1.0 / P_c, J)
        np.testing.assert_allclose(variances[i], want, rtol=1e-10)
        centred_want = np.diagonal(C @ want @ C, axis1=1, axis2=2)
        np.testing.assert_allclose(centred[:, :, i], centred_want, rtol=1e-10)
    assert variances[0] is None  # c = 0.01: the negative entry
    # Parameters held at zero (a pruned fit's identity precision there): the
    # factors, which know nothing of them, give the zeroed dense J's.
    if not last_layer:
        held = np.zeros(W, bool)
        held[[1, 7]] = True
        family = ScaledPriorFamily(posterior.conditioned_on_zero(held), a, held)
        zeroed = np.where(held, 0.0, dense)
        np.testing.assert_allclose(
            family.centred_variances(np, factors, scales),
            family.centred_variances(np, zeroed, scales),
            rtol=1e-12,
        )


@pytest.mark.parametrize("flat", [False, True])
def test_a_family_for_the_evidence_alone_takes_no_eigenvectors(flat, monkeypatch):
    """``variances=False``: ``log det P(c)`` from the eigenvalues alone.

    What ``prior_precision_scale="evidence"`` reads; the eigenvectors and the
    ``W x W`` projection took about half of its family's time (W = 2,605:
    2.2 -> 1.1 s). Against ``slogdet`` from scratch, with and without a flat
    block; asking for variances is refused, not answered from nothing.
    """
    rng = np.random.RandomState(2)
    root = rng.normal(size=(6, 6))
    P = root @ root.T + 3.0 * np.eye(6)
    A = np.array([1.0, 0.5, 2.0, 0.0 if flat else 1.5, 3.0, 0.7])

    def no_eigenvectors(*args, **kwargs):
        raise AssertionError("eigh computed eigenvectors")

    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A)
    monkeypatch.setattr(np.linalg, "eigh", no_eigenvectors)
    alone = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A, variances=False)
    assert alone.all_at_once
    for c in [0.3, 1.0, 7.0]:
        sign, expected = np.linalg.slogdet(P + (c - 1.0) * np.diag(A))
        assert sign > 0
        np.testing.assert_allclose(alone.log_det_precision(c), expected, rtol=1e-12)
        np.testing.assert_allclose(
            alone.log_det_precision(c), family.log_det_precision(c), rtol=1e-12
        )
    with pytest.raises(RuntimeError, match="variances=False"):
        next(alone.functional_variances(np, rng.normal(size=(2, 1, 6)), [1.0]))


@pytest.mark.parametrize("flat", [False, True])
def test_a_family_for_the_evidence_alone_refuses_every_variance_in_words(flat):
    """A family built with ``variances=False`` refuses the K x K variances,
    their grid and the probit's centred variances with one exact message.

    It has the eigenvalues alone (no projection to answer from), with and
    without a flat block; each of the three ways in raises RuntimeError whose
    whole text names the setting.

    Mutant (_prior_family, _eigen_jacobian): the message padded
    ("XXThis family was built with variances=False.XX"), which the existing
    ``match="variances=False"`` (a search) still accepts.
    """
    rng = np.random.RandomState(2)
    root = rng.normal(size=(6, 6))
    P = root @ root.T + 3.0 * np.eye(6)
    A = np.array([1.0, 0.5, 2.0, 0.0 if flat else 1.5, 3.0, 0.7])
    alone = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A, variances=False)
    assert alone.all_at_once
    J = rng.normal(size=(2, 3, 6))
    message = r"^This family was built with variances=False\.$"
    with pytest.raises(RuntimeError, match=message):
        next(alone.functional_variances(np, J, [1.0]))
    with pytest.raises(RuntimeError, match=message):
        alone.functional_variance_grid(np, J, [0.5, 1.0])
    with pytest.raises(RuntimeError, match=message):
        alone.centred_variances(np, J, [0.5, 1.0])


# Mutation round (session 57): a full posterior with a flat block of several
# correlated parameters, its variances, the earlier layers' prior of a last
# layer, the edges of positive definiteness, held parameters' factored
# columns and the per-scale posterior's namespace.


def _flat_block_posterior(indefinite=False):
    """A full posterior of 7 parameters: 3 flat (1, 3, 6), 1 held (5).

    The flat block ``P_FF`` is a dense 3 x 3 matrix (its Cholesky factor is
    not diagonal, so ``L_FF^{-1}`` and ``L_FF^{-T}`` differ); the held
    parameter's row and column are the identity's. ``indefinite``: the data
    part has a negative direction on parameter 0 (an exact Hessian's), so
    ``P(c)`` is not positive definite below some ``c``.
    """
    rng = np.random.RandomState(3)
    root = rng.normal(size=(7, 7))
    data = 0.2 * (root @ root.T) + 0.5 * np.eye(7)
    A = np.array([1.5, 0.0, 0.8, 0.0, 2.5, 0.0, 0.0])
    fixed = np.arange(7) == 5
    if indefinite:
        data[0, 0] -= 0.5 * data[0, 0] + 1.0
    P = data + np.diag(A)
    P[5, :] = P[:, 5] = 0.0
    P[5, 5] = 1.0
    return P, A, fixed


def _dense_variances(P_c, J, K):
    """``J P(c)^{-1} J'`` and the probit's centred ``diag(C J P(c)^{-1} J' C)``."""
    V = np.einsum("nka,ab,nlb->nkl", J, np.linalg.inv(P_c), J)
    C = np.eye(K) - 1.0 / K
    return V, np.diagonal(C @ V @ C, axis1=1, axis2=2)


@pytest.mark.parametrize("indefinite", [False, True])
def test_a_flat_block_of_several_parameters_gives_every_scale_from_scratch(
    indefinite,
):
    """With several flat parameters whose block is a dense matrix, the
    eigendecomposed family's ``log det P(c)``, K x K variances (one scale at a
    time and as a grid) and the probit's centred variances equal ``slogdet``
    and ``inv`` of ``P + (c - 1) A`` from scratch (the held parameter's row
    the identity's, its column of ``J`` zero). Where ``P(c)`` is not
    positive definite (an indefinite data part, small ``c``) the log
    determinant is NaN, the variances None or NaN, and no warning is raised.

    Mutants: the Schur complement's ``K = L_FF^{-T} L_FF^{-1} P_FW`` with the
    second solve untransposed; the flat block's constant term
    ``J_F P_FF^{-1} J_F'`` dropped or mis-transposed in
    :meth:`functional_variances`; the positive-definiteness check of
    ``log det`` dropped (NaN with a RuntimeWarning) or moved to 1.
    """
    import warnings

    P, A, fixed = _flat_block_posterior(indefinite)
    A_free = np.where(fixed, 0.0, A)
    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A, fixed)
    assert family.all_at_once
    K = 3
    J = np.random.RandomState(4).normal(size=(4, K, 7))
    J[:, :, 5] = 0.0
    scales = [0.05, 0.3, 1.0, 6.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        variances = list(family.functional_variances(np, J, scales))
        grid = family.functional_variance_grid(np, J, scales)
        centred = family.centred_variances(np, J, scales)
        log_dets = [family.log_det_precision(c) for c in scales]
    defined = []
    for i, c in enumerate(scales):
        P_c = P + (c - 1.0) * np.diag(A_free)
        sign, log_det = np.linalg.slogdet(P_c)
        defined.append(sign > 0)
        if sign <= 0:
            assert np.isnan(log_dets[i]) and variances[i] is None
            assert np.all(np.isnan(grid[:, i])) and np.all(np.isnan(centred[:, :, i]))
            continue
        np.testing.assert_allclose(log_dets[i], log_det, rtol=1e-12)
        V, centred_want = _dense_variances(P_c, J, K)
        np.testing.assert_allclose(variances[i], V, rtol=1e-10)
        np.testing.assert_allclose(grid[:, i], V, rtol=1e-10)
        np.testing.assert_allclose(centred[:, :, i], centred_want, rtol=1e-10)
    assert defined == ([False, False, True, True] if indefinite else [True] * 4)


def test_a_last_layer_full_family_takes_the_jacobians_factors():
    """A last layer's full posterior, eigendecomposed, takes ``J`` factored:
    its K x K variances, their grid and the probit's centred variances equal
    those from scratch of the dense ``J``'s last-layer columns, and its
    ``log det P(c)`` counts the earlier layers' prior as ``c A_other`` (here
    of product 6, so ``c / A_other`` would be 2 log 6 off).

    Mutants: the namespace not handed on to the last layer's columns of a
    factored ``J`` in :meth:`functional_variances`; ``log(scale * other)``
    turned into ``log(scale / other)``.
    """
    from sklaplace._jacobian import logit_factors
    from tests.conftest import make_problem

    obj, theta = make_problem("tanh", 3, hidden=(4, 3), n_samples=12)
    layout, X = obj.layout, np.asarray(obj.X)[:5]
    [(_, factors)] = logit_factors(np, layout, theta, "tanh", X)
    dense = factors.dense(np)
    W = layout.n_params
    offset = W - (layout.layer_sizes[-2] + 1) * layout.layer_sizes[-1]
    rng = np.random.RandomState(5)
    other = rng.uniform(0.5, 2.0, offset)
    other[[0, 1, 2]] = [2.0, 3.0, 0.0]  # a flat earlier parameter adds nothing
    other[3:] = 1.0
    a = rng.uniform(0.5, 2.0, W - offset)
    root = rng.normal(size=(W - offset, W - offset))
    P = 0.3 * (root @ root.T) + np.diag(a)
    posterior = LastLayerPosterior(FullPosterior(np.linalg.cholesky(P)), other)
    family = ScaledPriorFamily(posterior, np.concatenate([other, a]))
    assert family.all_at_once
    scales = [0.2, 1.0, 5.0]
    variances = list(family.functional_variances(np, factors, scales))
    grid = family.functional_variance_grid(np, factors, scales)
    centred = family.centred_variances(np, factors, scales)
    J = dense[:, :, offset:]
    for i, c in enumerate(scales):
        P_c = P + (c - 1.0) * np.diag(a)
        sign, log_det = np.linalg.slogdet(P_c)
        assert sign > 0
        # The earlier layers' block of P(c) is diag(c A_other), flat ones out.
        expected = log_det + (offset - 1) * np.log(c) + np.log(2.0 * 3.0)
        np.testing.assert_allclose(family.log_det_precision(c), expected, rtol=1e-12)
        V, centred_want = _dense_variances(P_c, J, 3)
        np.testing.assert_allclose(variances[i], V, rtol=1e-10)
        np.testing.assert_allclose(grid[:, i], V, rtol=1e-10)
        np.testing.assert_allclose(centred[:, :, i], centred_want, rtol=1e-10)


def test_a_diagonal_family_at_a_scale_with_a_zero_entry_has_no_variances():
    """Where ``P(c) = p + (c - 1) a`` has an entry exactly 0 (``c = 0.5`` here,
    in exact binary arithmetic) it is singular, not positive definite: the
    probit's centred variances are NaN there, as the K x K variances are None
    and ``log det`` is NaN; the other scales' equal sums from scratch.

    Mutants: the positivity check of the diagonal inverse made ``>= 0`` (an
    infinite variance instead of NaN); the per-scale ``log det``'s None
    check dropped (an AttributeError on the missing posterior).
    """
    rng = np.random.RandomState(6)
    W, K = 5, 3
    a = rng.uniform(0.5, 2.0, W)
    data = rng.uniform(0.5, 2.0, W)
    a[1], data[1] = 1.0, -0.5  # p = 0.5, and 0.5 + (0.5 - 1) * 1 = 0
    p = data + a
    family = ScaledPriorFamily(DiagPosterior(p), a)
    J = rng.normal(size=(4, K, W))
    scales = [0.5, 0.75, 2.0]
    centred = family.centred_variances(np, J, scales)
    variances = list(family.functional_variances(np, J, scales))
    assert np.all(np.isnan(centred[:, :, 0])) and variances[0] is None
    assert np.isnan(family.log_det_precision(0.5))
    C = np.eye(K) - 1.0 / K
    for i, c in enumerate(scales[1:], start=1):
        P_c = data + c * a
        V = np.einsum("nkw,w,nlw->nkl", J, 1.0 / P_c, J)
        np.testing.assert_allclose(variances[i], V, rtol=1e-12)
        np.testing.assert_allclose(
            centred[:, :, i], np.diagonal(C @ V @ C, axis1=1, axis2=2), rtol=1e-12
        )
        np.testing.assert_allclose(
            family.log_det_precision(c), np.sum(np.log(P_c)), rtol=1e-12
        )


def test_a_diagonal_family_gives_held_parameters_no_variance_from_the_factors():
    """The K x K variances of a diagonal family with parameters held at zero
    take ``J`` factored (the factors know nothing of the held parameters, so
    their columns come unzeroed) and equal those of the dense ``J`` with the
    held columns zeroed, at every scale, and those from scratch.

    Mutants: the held parameters' pinning of a diagonal posterior skipped
    (its structure misnamed, its mask dropped or not handed on).
    """
    from sklaplace._jacobian import logit_factors
    from tests.conftest import make_problem

    obj, theta = make_problem("tanh", 3, hidden=(4, 3), n_samples=12)
    layout, X = obj.layout, np.asarray(obj.X)[:5]
    [(_, factors)] = logit_factors(np, layout, theta, "tanh", X)
    dense = factors.dense(np)
    W = layout.n_params
    rng = np.random.RandomState(7)
    a = rng.uniform(0.5, 2.0, W)
    data = rng.uniform(0.1, 3.0, W)
    held = np.zeros(W, bool)
    held[[1, 7, W - 2]] = True
    posterior = DiagPosterior(data + a).conditioned_on_zero(held)
    family = ScaledPriorFamily(posterior, a, held)
    zeroed = np.where(held, 0.0, dense)
    assert np.any(dense[:, :, held] != 0.0)
    scales = [0.3, 1.0, 4.0]
    got = list(family.functional_variances(np, factors, scales))
    for i, c in enumerate(scales):
        P_c = data + c * a
        want = np.einsum("nkw,w,nlw->nkl", zeroed, 1.0 / P_c, zeroed)
        np.testing.assert_allclose(got[i], want, rtol=1e-10)


def test_a_grid_of_a_family_rebuilt_per_scale_is_nan_where_undefined():
    """A family with no eigendecomposition (diagonal here) gives the grid of
    K x K variances, shape (n, n_scales, K, K), scale by scale: equal to the
    sums from scratch where ``P(c)`` is positive definite, NaN where not,
    whether several, one or none of the scales are defined.

    Mutants: every line of the per-scale grid (its list, the blank's shape,
    value and dtype, the stacking axis and which scales get the blank).
    """
    rng = np.random.RandomState(8)
    W, K, n = 6, 3, 4
    a = rng.uniform(0.5, 2.0, W)
    data = rng.uniform(0.2, 2.0, W)
    data[3] = -0.3  # P(c) not positive definite below c = 0.3 / a[3]
    family = ScaledPriorFamily(DiagPosterior(data + a), a)
    assert not family.all_at_once
    J = rng.normal(size=(n, K, W))
    for scales in ([0.01, 1.0, 3.0], [2.0, 0.01], [0.01, 0.02], [0.5]):
        grid = family.functional_variance_grid(np, J, scales)
        assert grid.shape == (n, len(scales), K, K) and grid.dtype == np.float64
        for i, c in enumerate(scales):
            P_c = data + c * a
            if np.any(P_c <= 0):
                assert np.all(np.isnan(grid[:, i]))
                continue
            want = np.einsum("nkw,w,nlw->nkl", J, 1.0 / P_c, J)
            np.testing.assert_allclose(grid[:, i], want, rtol=1e-12)


def test_a_family_rebuilt_per_scale_builds_each_posterior_in_the_fits_namespace(
    monkeypatch,
):
    """Each scale's posterior of a family with no eigendecomposition is
    factorised in the fit's namespace (on its device with CuPy), not on the
    host, and its log determinant equals ``slogdet`` from scratch.

    Mutant: the namespace not handed on to :func:`scaled_posterior` (which
    then factorises in NumPy).
    """
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.RandomState(9)
    root = rng.normal(size=(5, 5))
    P = root @ root.T + 2.0 * np.eye(5)
    A = rng.uniform(0.5, 1.5, 5)
    namespaces, original = [], FullPosterior.with_prior_change

    def spy(self, xp, delta):
        namespaces.append(xp)
        return original(self, xp, delta)

    monkeypatch.setattr(FullPosterior, "with_prior_change", spy)
    family = ScaledPriorFamily(
        FullPosterior(np.linalg.cholesky(P)), A, xp=xps, eigendecompose=False
    )
    assert not family.all_at_once
    for c in (0.5, 3.0):
        sign, expected = np.linalg.slogdet(P + (c - 1.0) * np.diag(A))
        np.testing.assert_allclose(family.log_det_precision(c), expected, rtol=1e-12)
    assert namespaces == [xps, xps]


def _diagonal_centred_reference(J, p, a, scales):
    """``diag(C J P(c)^-1 J' C)``, scales last; ``P(c) = diag(p + (c - 1) a)``."""
    C = np.eye(J.shape[1]) - 1.0 / J.shape[1]
    return np.stack(
        [
            np.diagonal(
                C @ np.einsum("nkw,w,nlw->nkl", J, 1.0 / (p + (c - 1.0) * a), J) @ C,
                axis1=1,
                axis2=2,
            )
            for c in scales
        ],
        axis=2,
    )


def _diagonal_problem(seed, n_rows):
    """A diagonal posterior ``p``, prior ``a`` (7 parameters), a Jacobian of
    ``n_rows`` rows and 3 logits, seven scales and their centred variances
    from :func:`_diagonal_centred_reference`."""
    rng = np.random.RandomState(seed)
    a = rng.uniform(0.5, 2.0, 7)
    p = rng.uniform(0.5, 3.0, 7) + a
    J = rng.normal(size=(n_rows, 3, 7))
    scales = [0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    return a, p, J, scales, _diagonal_centred_reference(J, p, a, scales)


def test_a_diagonal_familys_kept_inverses_fit_a_quarter_of_any_budget(monkeypatch):
    """However the memory budget groups the scales (one to several a group,
    the kept groups filling a quarter of it or not exactly), the inverses a
    diagonal family keeps take at most a quarter of the budget, and the
    probit's centred variances, asked twice, equal those from scratch.

    Mutants: the size of a new group of inverses undercounted (``8 n / W``
    or ``8 W / n`` bytes instead of ``8 n W``), which keeps groups past the
    quarter.
    """
    a, p, J, scales, want = _diagonal_problem(10, 3)
    W = p.shape[0]
    for budget in range(64 * W, 400 * W, 8 * W):
        monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", budget)
        family = ScaledPriorFamily(DiagPosterior(p), a)
        for _ in range(2):
            got = family.centred_variances(np, J, scales)
            np.testing.assert_allclose(got, want, rtol=1e-12)
        kept = sum(v.nbytes for v in family._inverses.values())
        assert kept <= budget // 4


def test_centred_variances_of_a_full_family_rebuilt_per_scale():
    """A full posterior not eigendecomposed (one scale asked for) gives the
    probit's centred variances scale by scale: ``diag(C J P(c)^{-1} J' C)``
    from scratch where ``P(c)`` is positive definite, NaN where it is not
    (an indefinite data part at a small scale).

    Mutants: every line of the per-scale centred variances (the centring's
    size, the centred ``J``, each scale's posterior, which scales get NaN).
    """
    P, A, fixed = _flat_block_posterior(indefinite=True)
    P, A = P[:5, :5], A[:5]  # no held parameter: 2 flat, 3 weighted
    family = ScaledPriorFamily(
        FullPosterior(np.linalg.cholesky(P)), A, eigendecompose=False
    )
    assert not family.all_at_once and not family.centred_at_once
    K = 4
    J = np.random.RandomState(11).normal(size=(3, K, 5))
    scales = [0.05, 1.0, 6.0]
    centred = family.centred_variances(np, J, scales)
    assert centred.shape == (3, K, len(scales))
    for i, c in enumerate(scales):
        P_c = P + (c - 1.0) * np.diag(A)
        if np.linalg.slogdet(P_c)[0] <= 0:
            assert i == 0 and np.all(np.isnan(centred[:, :, i]))
            continue
        _, want = _dense_variances(P_c, J, K)
        np.testing.assert_allclose(centred[:, :, i], want, rtol=1e-10)


def test_held_parameters_keep_the_identity_precision_at_every_scale():
    """A posterior scaled to ``P_data + c A`` leaves the held parameters'
    identity precision alone (they have no prior), both where the scaled
    posterior is built directly (with ``fixed``) and in a family rebuilt per
    scale: ``log det`` equals ``slogdet`` of ``P + (c - 1) A`` with ``A``
    zero at the held parameters, from scratch (each held entry scaled would
    add ``log(1 + (c - 1) A_i)``).

    Mutants: ``fixed`` not handed on to :func:`free_prior` in
    :func:`scaled_posterior`; the held parameters' prior set to 1, not 0.
    """
    from sklaplace._prior_family import scaled_posterior

    P, A, fixed = _flat_block_posterior()
    A = np.where(A > 0, A, 0.7)  # a proper prior everywhere, held one included
    A_free = np.where(fixed, 0.0, A)
    posterior = FullPosterior(np.linalg.cholesky(P))
    assert scaled_posterior(posterior, A, 1.0, fixed) is posterior
    rng = np.random.RandomState(12)
    p = rng.uniform(0.5, 2.0, 7) + A_free  # a positive data part
    p[fixed] = 1.0
    family = ScaledPriorFamily(DiagPosterior(p), A, fixed)
    for c in (0.5, 3.0):
        scaled = scaled_posterior(posterior, A, c, fixed)
        sign, expected = np.linalg.slogdet(P + (c - 1.0) * np.diag(A_free))
        assert sign > 0
        np.testing.assert_allclose(scaled.log_det_precision(), expected, rtol=1e-12)
        np.testing.assert_allclose(
            family.log_det_precision(c),
            np.sum(np.log(p + (c - 1.0) * A_free)),
            rtol=1e-12,
        )


def test_a_full_family_gives_held_parameters_no_variance_from_the_factors():
    """An eigendecomposed full family with parameters held at zero and flat
    biases takes ``J`` factored (its held columns unzeroed: the factors know
    nothing of them): the K x K variances, their grid and the probit's
    centred variances equal those from scratch of the dense ``J`` with the
    held columns zeroed, at every scale.

    Mutants: the rows of the projection at the held parameters not zero
    (pointing at a real row of the stack instead of its zero row).
    """
    from sklaplace._jacobian import logit_factors
    from tests.conftest import make_problem

    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=12)
    layout, X = obj.layout, np.asarray(obj.X)[:4]
    [(_, factors)] = logit_factors(np, layout, theta, "tanh", X)
    dense = factors.dense(np)
    W = layout.n_params
    rng = np.random.RandomState(13)
    A = np.where(layout.bias_mask(), 0.0, rng.uniform(0.5, 2.0, W))
    held = np.zeros(W, bool)
    held[[0, 5, W - 5]] = True
    root = rng.normal(size=(W, W))
    P = 0.1 * (root @ root.T) + np.diag(A) + 0.2 * np.eye(W)
    P[held, :] = P[:, held] = 0.0
    P[held, held] = 1.0
    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A, held)
    assert family.all_at_once
    zeroed = np.where(held, 0.0, dense)
    assert np.any(dense[:, :, held] != 0.0)
    scales = [0.4, 2.0]
    variances = list(family.functional_variances(np, factors, scales))
    grid = family.functional_variance_grid(np, factors, scales)
    centred = family.centred_variances(np, factors, scales)
    for i, c in enumerate(scales):
        P_c = P + (c - 1.0) * np.diag(np.where(held, 0.0, A))
        V, centred_want = _dense_variances(P_c, zeroed, 3)
        np.testing.assert_allclose(variances[i], V, rtol=1e-9)
        np.testing.assert_allclose(grid[:, i], V, rtol=1e-9)
        np.testing.assert_allclose(centred[:, :, i], centred_want, rtol=1e-9)


def test_a_full_family_with_every_prior_flat_does_not_scale():
    """With every prior flat (``alpha=0``, ``bias_prior_precision=0``) nothing
    scales: at any ``c`` the log determinant is that of ``P`` itself and the
    K x K and the probit's centred variances are ``J P^{-1} J'`` from scratch
    (no eigendecomposition of an empty block is attempted).

    Mutant: the ``or`` before "no weighted parameter" made ``and`` (then an
    empty eigendecomposition whose centred variances fail to reshape).
    """
    rng = np.random.RandomState(14)
    root = rng.normal(size=(4, 4))
    P = root @ root.T + np.eye(4)
    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), np.zeros(4))
    J = rng.normal(size=(2, 3, 4))
    V, centred_want = _dense_variances(P, J, 3)
    scales = [0.5, 3.0]
    centred = family.centred_variances(np, J, scales)
    variances = list(family.functional_variances(np, J, scales))
    for i, c in enumerate(scales):
        np.testing.assert_allclose(
            family.log_det_precision(c), np.linalg.slogdet(P)[1], rtol=1e-12
        )
        np.testing.assert_allclose(variances[i], V, rtol=1e-10)
        np.testing.assert_allclose(centred[:, :, i], centred_want, rtol=1e-10)


def test_a_scale_where_the_precision_is_singular_is_undefined_silently():
    """At a scale ``c`` where ``P(c) = P_data + c A`` has an exactly zero
    eigenvalue (``P_data``'s -0.75 on parameter 0, ``A = 1``, ``c = 0.75``)
    ``P(c)`` is singular, not positive definite: ``log det`` is NaN, the
    variances None or NaN, with no warning; the other scales are the dense
    inverse's.

    Mutants: ``shifted < 0`` (log det -inf), ``shifted >= 0`` in
    functional_variances, functional_variance_grid and centred_variances
    (infinite variances), and ``np.errstate(divide=None)`` in the last two
    (a divide-by-zero warning).
    """
    rng = np.random.RandomState(4)
    K = 3
    P = np.diag([0.25, 2.0, 4.0])  # P(1): data part diag(-0.75, 1, 3)
    A = np.ones(3)
    J = rng.normal(size=(4, K, 3))
    scales = [0.75, 2.0]
    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A)
    assert family.all_at_once
    P_2 = P + (2.0 - 1.0) * np.diag(A)
    want = J @ np.linalg.inv(P_2) @ np.swapaxes(J, 1, 2)
    C = np.eye(K) - 1.0 / K
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(family.log_det_precision(0.75))
        np.testing.assert_allclose(
            family.log_det_precision(2.0), np.linalg.slogdet(P_2)[1], rtol=1e-12
        )
        variances = list(family.functional_variances(np, J, scales))
        grid = family.functional_variance_grid(np, J, scales)
        centred = family.centred_variances(np, J, scales)
    assert variances[0] is None
    np.testing.assert_allclose(variances[1], want, rtol=1e-12)
    assert np.all(np.isnan(grid[:, 0]))
    np.testing.assert_allclose(grid[:, 1], want, rtol=1e-12)
    assert np.all(np.isnan(centred[:, :, 0]))
    np.testing.assert_allclose(
        centred[:, :, 1],
        np.diagonal(C @ want @ C, axis1=1, axis2=2),
        rtol=1e-12,
    )


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_a_negative_prior_entry_scales_with_the_others(structure):
    """A prior negative on one parameter (``P(c)`` still positive definite at
    the scales asked) is neither weighted nor flat: the family scales it
    with the others, as the dense ``P_data + c A`` does.

    Mutant: the negative-prior check dropped (``np.any(None)``): the full
    family eigendecomposed the weighted block alone, leaving that
    parameter out of ``log det`` and the variances.
    """
    rng = np.random.RandomState(6)
    W, K = 5, 2
    A = rng.uniform(0.5, 2.0, W)
    A[1] = -0.3
    root = rng.normal(size=(W, W))
    P_data = root @ root.T + 5.0 * np.eye(W)
    if structure == "diag":
        P_data = np.diag(np.diag(P_data))
    P = P_data + np.diag(A)
    posterior = (
        FullPosterior(np.linalg.cholesky(P))
        if structure == "full"
        else DiagPosterior(np.diag(P).copy())
    )
    J = rng.normal(size=(3, K, W))
    scales = [0.5, 2.0, 4.0]
    family = ScaledPriorFamily(posterior, A)
    variances = list(family.functional_variances(np, J, scales))
    for c, got in zip(scales, variances):
        P_c = P_data + c * np.diag(A)
        np.testing.assert_allclose(
            family.log_det_precision(c), np.linalg.slogdet(P_c)[1], rtol=1e-10
        )
        np.testing.assert_allclose(
            got, J @ np.linalg.inv(P_c) @ np.swapaxes(J, 1, 2), rtol=1e-10
        )


def test_a_diagonal_family_groups_scales_and_keeps_every_group_that_fits(
    monkeypatch,
):
    """The probit's centred variances take ``budget // (64 W)`` scales a
    group, and each group's inverses (``8 n W`` bytes) are kept while the
    kept ones fit a quarter of the budget, the last exactly: at a budget of
    ``128 W`` (groups of 2, 112 bytes each, a quarter of 224) the first two
    groups are kept, the others not.

    Mutants: groups sized by ``65 W`` or by ``K`` (the Jacobian's outputs)
    instead of ``64 W``; the kept ones' or a new group's bytes overcounted
    (``9 n W``, ``8 W^2``), ``<`` for ``<=``, a fifth of the budget: a group
    that fits is not kept (only what is kept, never the values, changes).
    """
    a, p, J, scales, want = _diagonal_problem(11, 2)
    W = p.shape[0]
    monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", 128 * W)
    family = ScaledPriorFamily(DiagPosterior(p), a)
    got = family.centred_variances(np, J, scales)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert list(family._inverses) == [(0.2, 0.5), (1.0, 2.0)]
