"""The posterior's family over prior scales at the edges of its contract.

A last layer's family with parameters held at zero, one rebuilt per scale,
and a flat block singular to round-off, each against a dense or closed-form
reference (the common cases are in ``test_prior_scale.py``).
"""

import numpy as np
import pytest

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
