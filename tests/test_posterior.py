import math
import re
import warnings
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

import sklaplace._posterior as posterior_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._backend import JITTER_TRIALS, NotPositiveDefiniteError, to_numpy
from sklaplace._evidence import log_marginal_likelihood
from sklaplace._kron import KronPosterior
from sklaplace._low_rank import LowRankPosterior
from sklaplace._posterior import (
    SINGULAR_RTOL,
    DiagPosterior,
    FullPosterior,
    _jittered,
    _warn_if_near_singular,
)
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import (
    bayesian_linear_regression,
    make_problem,
    rebuilt,
    traced_peak,
)


def _spd(n, seed=0):
    A = np.random.RandomState(seed).normal(size=(n, n))
    return A @ A.T + n * np.eye(n)


def test_full_posterior_against_dense_formulas():
    P = _spd(6)
    post = FullPosterior.from_precision(np, P)
    J = np.random.RandomState(1).normal(size=(4, 3, 6))
    covariance = np.linalg.inv(P)
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        J @ covariance @ np.swapaxes(J, 1, 2),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-12
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(covariance), rtol=1e-10
    )


def test_diag_posterior_equals_full_on_a_diagonal_precision():
    d = np.linspace(0.5, 3.0, 5)
    J = np.random.RandomState(2).normal(size=(3, 2, 5))
    full, diag = (
        FullPosterior.from_precision(np, np.diag(d)),
        DiagPosterior.from_precision(np, d),
    )
    np.testing.assert_allclose(
        diag.functional_variance(np, J), full.functional_variance(np, J), rtol=1e-12
    )
    np.testing.assert_allclose(
        diag.log_det_precision(), full.log_det_precision(), rtol=1e-12
    )


def test_not_positive_definite_raises():
    with pytest.raises(NotPositiveDefiniteError):
        FullPosterior.from_precision(np, np.diag([1.0, -1.0]))
    with pytest.raises(NotPositiveDefiniteError):
        DiagPosterior.from_precision(np, np.array([1.0, 0.0]))


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_evidence_of_bayesian_linear_regression_is_the_closed_form(structure):
    # For a linear-Gaussian model the Laplace evidence is exact: it must equal
    # the marginal density of y computed without any Laplace term (a wrong
    # sign or a missing 1/2 on any term moves it by more than 0.3, far above
    # the 1e-10 tolerance). Orthogonal features make P diagonal, where the
    # diagonal posterior is exact too.
    prior = np.array([0.5, 1.0, 2.0, 4.0])
    log_lik, w, P, closed_form = bayesian_linear_regression(
        prior, orthogonal=structure == "diag"
    )
    if structure == "full":
        post = FullPosterior.from_precision(np, P)
    else:
        np.testing.assert_allclose(P, np.diag(np.diag(P)), atol=1e-12)
        post = DiagPosterior.from_precision(np, np.diag(P))
    value = log_marginal_likelihood(log_lik, w, prior, post)
    np.testing.assert_allclose(value, closed_form, rtol=1e-10)


def test_evidence_with_a_flat_prior_is_the_limit_of_proper_ones():
    # A flat (zero-precision) parameter is left out of log det A, so the
    # evidence is the limit of the proper one minus 1/2 log a as a -> 0.
    # At a = 1e-6 the remaining difference is 7e-7 (it is O(a)); leaving the
    # flat entry in (log 0) or counting it with any other constant would be
    # off by 0.3 or more (atol 1e-5).
    prior = np.array([0.5, 1.0, 2.0, 0.0])
    log_lik, w, P, _ = bayesian_linear_regression(prior)
    post = FullPosterior.from_precision(np, P)
    value = log_marginal_likelihood(log_lik, w, prior, post)
    a = 1e-6
    *_, closed_form = bayesian_linear_regression(np.r_[prior[:3], a])
    np.testing.assert_allclose(value, closed_form - 0.5 * np.log(a), atol=1e-5)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_conditioning_on_zero_is_the_gaussian_conditional(structure):
    # From scratch: given theta_F = 0, the other block has precision P_RR;
    # the fixed block carries nothing (identity, log det 0).
    P = _spd(5, seed=6) if structure == "full" else np.diag([0.5, 2.0, 4.0, 9.0, 3.0])
    post = (
        FullPosterior.from_precision(np, P)
        if structure == "full"
        else DiagPosterior.from_precision(np, np.diag(P))
    )
    fixed = np.array([False, True, False, True, False])
    rest = ~fixed
    conditional = post.conditioned_on_zero(fixed)
    np.testing.assert_allclose(
        conditional.log_det_precision(),
        np.linalg.slogdet(P[np.ix_(rest, rest)])[1],
        rtol=1e-12,
    )
    variance = conditional.covariance_diagonal(np)
    np.testing.assert_allclose(
        variance[rest], np.diag(np.linalg.inv(P[np.ix_(rest, rest)])), rtol=1e-10
    )


def test_conditioning_a_singular_full_posterior_jitters_with_a_warning():
    from sklaplace.exceptions import LaplaceApproximationWarning

    # A factor with a zero pivot: L L' is singular, so the conditional
    # precision cannot be factorised as it is (a nearly singular posterior,
    # rebuilt from its factor, can lose definiteness the same way).
    post = FullPosterior(np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    fixed = np.array([False, False, True])
    with pytest.raises(NotPositiveDefiniteError):
        FullPosterior.from_precision(np, post.cholesky_factor @ post.cholesky_factor.T)
    with pytest.warns(LaplaceApproximationWarning) as caught:
        conditional = post.conditioned_on_zero(fixed)
    L = conditional.cholesky_factor
    P = L @ L.T
    np.testing.assert_allclose(P[2, 2], 1.0)  # the fixed entry: identity
    # The smallest tenfold jitter that works: tiny against the entries.
    jitter = P[0, 0] - 1.0
    assert 0 < jitter < 1e-6
    assert str(caught[0].message) == (
        "The conditioned posterior precision is numerically singular; added a "
        f"jitter of {jitter:.3g} to its diagonal."
    )
    assert np.all(np.isfinite(conditional.covariance_diagonal(np)))


def _random_spd(n, seed=0):
    M = np.random.RandomState(seed).normal(size=(n, n))
    return M @ M.T + 0.5 * np.eye(n)


@pytest.mark.parametrize("block", [1, 3, 4, 512])
def test_full_covariance_diagonal_is_right_in_every_column_block(block):
    # Networks beyond 256 parameters take several blocks of L^{-1}'s columns,
    # each solved below its first row.
    P = _random_spd(10)
    posterior = FullPosterior(np.linalg.cholesky(P))
    np.testing.assert_allclose(
        posterior.covariance_diagonal(np, block=block),
        np.diag(np.linalg.inv(P)),
        rtol=1e-10,
    )


def test_full_covariance_diagonal_holds_no_second_square_matrix():
    # A triangular solve on a trailing sub-matrix of L copies it (SciPy
    # wants contiguous arrays): about n^2 floats at the second block. The
    # substitution by blocks of rows holds a few n x block arrays.
    n, block = 1200, 100
    L = np.linalg.cholesky(_random_spd(n))
    posterior = FullPosterior(L)
    peak = traced_peak(lambda: posterior.covariance_diagonal(np, block=block))
    assert peak < 0.35 * 8 * n * n


def test_full_pivot_ratio_is_the_smallest_pivot_over_the_largest_diagonal():
    # Pivots 1 and the Schur complement 0.1; largest diagonal b^2 + 0.1: a
    # ratio of about 1e-11, which the near-singular warning must report.
    b = 1e5
    P = np.array([[1.0, b], [b, b * b + 0.1]])
    schur = P[1, 1] - P[0, 1] ** 2 / P[0, 0]
    posterior = FullPosterior(np.linalg.cholesky(P))
    expected = min(P[0, 0], schur) / np.max(np.diag(P))
    assert posterior.pivot_ratio() == pytest.approx(expected, rel=1e-4)
    with pytest.warns(LaplaceApproximationWarning, match="nearly singular"):
        _warn_if_near_singular(posterior)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_the_first_jitter_is_relative_to_the_largest_diagonal_entry(scale):
    # An exactly singular PSD precision with a tenfold spread of its
    # diagonal: any positive jitter makes it definite, so the first one
    # tried is kept: SINGULAR_RTOL times the largest diagonal entry (the
    # documented start, laplace_posterior step 3), and it scales with P.
    # An absolute 1e-10 gives the same jitter at scale 1 only.
    u = np.array([1.0, 3.0, -2.0])
    P = scale * np.outer(u, u)  # rank one, largest diagonal 9 * scale
    posterior, jitter = _jittered(np, FullPosterior, P, total_weight=1.0)
    expected = SINGULAR_RTOL * 9.0 * scale + np.finfo(np.float64).tiny
    np.testing.assert_allclose(jitter, expected, rtol=1e-12)
    L = posterior.cholesky_factor
    np.testing.assert_allclose(L @ L.T, P + jitter * np.eye(3), rtol=1e-12, atol=0)
    # The diagonal posterior: a zero entry gets the same relative jitter.
    d = scale * np.array([4.0, 0.0, 9.0])
    diag, jitter = _jittered(np, DiagPosterior, d, 1.0)
    np.testing.assert_allclose(jitter, expected, rtol=1e-12)
    np.testing.assert_allclose(diag.precision, d + jitter)


def test_the_jitter_grows_tenfold_from_its_first_try():
    # diag(1, -5e-10): 1e-10 (the first try, relative to the largest diagonal
    # entry) does not make it definite, 1e-9 does, and so is the jitter.
    _, jitter = _jittered(np, FullPosterior, np.diag([1.0, -5e-10]))
    assert jitter == pytest.approx(1e-9, rel=1e-12)


def test_a_precision_zero_to_round_off_is_judged_against_the_total_weight():
    # A curvature scales with the data's total weight: a largest diagonal
    # entry of 1e-14 is zero to round-off for 1,000 rows' worth (eps x 1e3 =
    # 2.2e-13) and refused, while 1e-12 is not and gets a jitter.
    with pytest.raises(ValueError) as raised:
        _jittered(np, DiagPosterior, np.array([1e-14, 0.0]), total_weight=1e3)
    assert str(raised.value) == (
        "The posterior precision is zero to round-off (largest diagonal entry "
        "1e-14): the data determine none of the parameters at the MAP and the "
        "prior is flat, so the Laplace posterior does not exist. This happens "
        "when the network separates the data and its units saturate; use "
        "alpha > 0 or alpha='evidence'."
    )
    _, jitter = _jittered(np, DiagPosterior, np.array([1e-12, 0.0]), total_weight=1e3)
    assert 0 < jitter < 1e-12


def test_laplace_posterior_judges_round_off_against_the_total_weight(monkeypatch):
    # Weights of 1e6 scale every curvature by 1e6: a curvature whose largest
    # entry is 1e-10 is zero to round-off against that total (not against
    # the row count, where it would pass as tiny but real and be jittered).
    obj, theta = make_problem("tanh", 2, (3,))
    heavy = rebuilt(obj, sample_weight=1e6 * obj.sample_weight)
    tiny = np.zeros((obj.layout.n_params,) * 2)
    tiny[0, 0] = 1e-10
    builders = dict(posterior_module.CURVATURE_BUILDERS)
    builders["ggn", "full"] = lambda objective, theta: tiny.copy()
    monkeypatch.setattr(posterior_module, "CURVATURE_BUILDERS", builders)
    with pytest.raises(ValueError, match="zero to round-off"):
        posterior_module.laplace_posterior(heavy, theta, "ggn", "full")


def _exact_log_det(matrix):
    """``log det`` of a matrix of exact binary fractions, by integer elimination.

    Bareiss's fraction-free elimination on the matrix scaled to integers:
    no round-off, so a reference that shares nothing with the code checked.
    """
    n = len(matrix)
    scale = 1
    for row in matrix:
        for entry in row:
            scale = math.lcm(scale, entry.denominator)
    A = [[int(entry * scale) for entry in row] for row in matrix]
    previous = 1
    for k in range(n - 1):
        assert A[k][k] > 0  # positive definite: no pivoting needed
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                A[i][j] = (A[i][j] * A[k][k] - A[i][k] * A[k][j]) // previous
        previous = A[k][k]
    return math.log(A[n - 1][n - 1]) - n * math.log(scale)


def test_a_prior_change_of_a_nearly_singular_posterior_keeps_its_log_det():
    """``P + D`` is factored as ``L chol(I + L^{-1} D L^{-T})``: re-forming
    ``L L'`` and factoring again (the former way) moved this log determinant
    (eigenvalues 1e-9 to 1e3) by 2e-5, a nearly singular fitted posterior's
    by up to 2 nats; against exact rational arithmetic it is now within
    1e-9."""
    rng = np.random.RandomState(0)
    n = 12
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    L = np.linalg.cholesky((Q * np.logspace(-9, 3, n)) @ Q.T)
    delta = np.where(np.arange(n) % 3 == 0, 0.0, 1e-9)
    exact = [[Fraction(float(x)) for x in row] for row in L]
    precision = [
        [
            sum(exact[i][k] * exact[j][k] for k in range(n))
            + (Fraction(float(delta[i])) if i == j else 0)
            for j in range(n)
        ]
        for i in range(n)
    ]
    expected = _exact_log_det(precision)
    changed = FullPosterior(L).with_prior_change(np, delta)
    assert abs(changed.log_det_precision() - expected) < 1e-9
    reformed = np.linalg.cholesky(L @ L.T + np.diag(delta))
    assert abs(2 * np.sum(np.log(np.diag(reformed))) - expected) > 1e-6
    np.testing.assert_allclose(
        changed.cholesky_factor @ changed.cholesky_factor.T,
        L @ L.T + np.diag(delta),
        atol=1e-12,
    )


def test_a_precision_no_jitter_can_rescue_says_the_last_jitter_tried():
    # Unit diagonal, off-diagonal 1e30: an eigenvalue of 1 - 1e30, far beyond
    # the largest jitter, 1e-10 of the largest diagonal entry times 10^29.
    precision = np.array([[1.0, 1e30], [1e30, 1.0]])
    with pytest.raises(NotPositiveDefiniteError) as raised:
        _jittered(np, FullPosterior, precision)
    last = SINGULAR_RTOL * 10.0 ** (JITTER_TRIALS - 1)
    assert str(raised.value) == (
        "The posterior precision is not positive definite even with a jitter "
        f"of {last:.3g} on its diagonal."
    )


def test_the_near_singular_warning_gives_the_pivot_ratio_and_what_helps():
    # Squared pivots 1 and 1e-12 against a largest diagonal entry of 1.
    posterior = FullPosterior.from_precision(np, np.diag([1.0, 1e-12]))
    with pytest.warns(LaplaceApproximationWarning) as caught:
        _warn_if_near_singular(posterior)
    assert str(caught[0].message) == (
        "The posterior precision is nearly singular (its smallest Cholesky "
        "pivot is 1e-12 of its largest diagonal entry): variances along the "
        "weakly determined directions are dominated by round-off. "
        + posterior_module._SINGULAR_ADVICE
    )


def test_a_diagonal_precision_that_is_not_positive_is_named():
    for bad in (np.array([1.0, 0.0]), np.array([1.0, np.nan])):
        with pytest.raises(NotPositiveDefiniteError) as raised:
            DiagPosterior.from_precision(np, bad)
        assert str(raised.value) == "A diagonal precision entry is not positive."


@pytest.mark.parametrize(
    "structure, said",
    [
        (
            "kron",
            "The Kronecker factorisation exists for the GGN only; the posterior "
            "uses the generalised Gauss-Newton matrix instead (curvature_='ggn'). "
            "Pass hessian='ggn', or hessian_structure='full' for the exact Hessian.",
        ),
        (
            "full",
            "The exact Hessian is not positive definite at the MAP (the optimiser "
            "stopped where the loss is not locally convex); the posterior uses the "
            "generalised Gauss-Newton matrix instead (curvature_='ggn'). Tighter "
            "tol or hessian='ggn' avoids this.",
        ),
    ],
)
def test_the_exact_hessians_fallback_says_why_and_what_avoids_it(structure, said):
    with pytest.warns(LaplaceApproximationWarning) as caught:
        posterior_module._warn_exact_fallback(structure)
    assert str(caught[0].message) == said


@pytest.mark.parametrize("hessian", ["ggn", "exact"])
def test_a_jittered_posterior_reports_the_curvature_it_factorised(monkeypatch, hessian):
    # A singular GGN (a zero row and column: a parameter no row moves and
    # no prior holds) is factorised with a jitter; the curvature reported
    # (curvature_) is the GGN's, whichever was asked for.
    obj, theta = make_problem("tanh", 2, (3,))
    singular = np.diag(np.r_[0.0, np.ones(obj.layout.n_params - 1)])
    builders = dict(posterior_module.CURVATURE_BUILDERS)
    builders["ggn", "full"] = lambda objective, theta: singular.copy()
    builders["exact", "full"] = lambda objective, theta: singular.copy()
    monkeypatch.setattr(posterior_module, "CURVATURE_BUILDERS", builders)
    with pytest.warns(LaplaceApproximationWarning, match="added a jitter"):
        posterior, kind, jitter = posterior_module.laplace_posterior(
            obj, theta, hessian, "full"
        )
    assert kind == "ggn" and jitter > 0
    L = posterior.cholesky_factor
    np.testing.assert_allclose(L @ L.T, singular + jitter * np.eye(len(singular)))


def test_the_near_singular_warning_names_what_each_structure_has():
    """A full posterior's smallest Cholesky pivot, a Kronecker one's smallest
    eigenvalue in a layer (it has no Cholesky factor), with the ratio."""
    full = object.__new__(FullPosterior)
    full.pivot_ratio = lambda: 3e-12
    kron = object.__new__(KronPosterior)
    kron.pivot_ratio = lambda: 4e-12
    with pytest.warns(LaplaceApproximationWarning) as record:
        _warn_if_near_singular(full)
        _warn_if_near_singular(kron)
    first, second = (str(w.message) for w in record)
    assert "smallest Cholesky pivot is 3e-12 of its largest diagonal" in first
    assert "a layer's smallest eigenvalue is 4e-12 of its largest" in second
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_near_singular(SimpleNamespace(pivot_ratio=lambda: 1e-9))


@pytest.mark.parametrize("structure", ["full", "kron"])
def test_a_jitter_is_always_announced(structure):
    """A feature that is zero on every row, with no prior: its weights have
    neither data nor prior, so the precision is singular and a jitter is
    added, full or Kronecker (whose factor's jitter had gone unannounced)."""
    rng = np.random.RandomState(0)
    X = np.c_[rng.randn(30, 2), np.zeros(30)]
    y = (X[:, 0] > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (4,),
        hessian_structure=structure,
        alpha=0.0,
        bias_prior_precision=0.0,
        random_state=0,
    )
    with pytest.warns(LaplaceApproximationWarning, match="added a jitter") as record:
        clf.fit(X, y)
    assert clf.posterior_jitter_ > 0
    assert f"{clf.posterior_jitter_:.3g}" in " ".join(str(w.message) for w in record)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_last_layer_of_a_network_without_hidden_layers_keeps_its_fixed_weights(
    structure,
):
    """Without hidden layers the last layer is the whole network, and
    ``subset="last_layer"`` takes the plain path: the pruned (``fixed``)
    weights keep the identity block, so ``log det P`` is that of the free
    block of the unpruned precision (dense NumPy here) and the fixed
    variances are 1. Routing a one-layer network through the last-layer
    objective (``n_layers > 0``) drops ``fixed``: log det off by 0.5 (full)
    or 2.6 (diag), fixed variances 0.2-1.3."""
    obj, theta = make_problem("tanh", 2, hidden=(), n_samples=30)
    fixed = np.zeros(obj.layout.n_params, dtype=bool)
    fixed[[0, 2]] = True
    theta = np.where(fixed, 0.0, theta)
    # The unpruned precision at the same point, densified here.
    whole, _, _ = posterior_module.laplace_posterior(obj, theta, "ggn", structure)
    if structure == "full":
        P = whole.cholesky_factor @ whole.cholesky_factor.T
    else:
        P = np.diag(whole.precision)
    free = ~fixed
    expected = np.linalg.slogdet(P[np.ix_(free, free)])[1]
    pruned = rebuilt(obj, fixed=fixed)
    posterior, curvature, jitter = posterior_module.laplace_posterior(
        pruned, theta, "ggn", structure, "last_layer"
    )
    assert curvature == "ggn" and jitter == 0.0
    np.testing.assert_allclose(posterior.log_det_precision(), expected, rtol=1e-10)
    variance = np.asarray(posterior.covariance_diagonal(np))
    np.testing.assert_allclose(variance[fixed], 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        variance[free], np.diag(np.linalg.inv(P[np.ix_(free, free)])), rtol=1e-8
    )


@pytest.mark.parametrize("structure, bad", [("full", np.inf), ("diag", np.nan)])
def test_a_curvature_that_overflowed_raises_instead_of_being_jittered(
    monkeypatch, structure, bad
):
    """``laplace_posterior`` documents a ``ValueError`` for a curvature that
    is not finite (nothing downstream can repair an ``inf`` or ``nan``). A
    version that does not check it sends the matrix on to the Cholesky and
    the jitter loop, which end in a ``NotPositiveDefiniteError`` (or a
    posterior of ``nan``) that names no cause."""
    obj, theta = make_problem("tanh", 2, (3,))
    n = obj.layout.n_params
    curvature = np.eye(n) if structure == "full" else np.ones(n)
    if structure == "full":
        curvature[1, 1] = bad
    else:
        curvature[1] = bad
    builders = dict(posterior_module.CURVATURE_BUILDERS)
    builders["ggn", structure] = lambda objective, theta: curvature.copy()
    monkeypatch.setattr(posterior_module, "CURVATURE_BUILDERS", builders)
    with pytest.raises(ValueError, match="not finite \\(it overflowed\\)"):
        posterior_module.laplace_posterior(obj, theta, "ggn", structure)


def test_a_diagonal_prior_change_to_a_non_positive_precision_is_refused():
    """A diagonal posterior's prior change checks positivity as a full one's
    Cholesky does, so the evidence at such a prior is ``-inf``, not the log
    of a negative number (NaN)."""
    from sklaplace._evidence_at_prior import log_evidence_at_prior
    from sklaplace._network import ParamLayout

    post = DiagPosterior.from_precision(np, np.array([2.0, 3.0]))
    changed = post.with_prior_change(np, np.array([0.5, -1.0]))
    np.testing.assert_array_equal(changed.precision, [2.5, 2.0])
    with pytest.raises(
        NotPositiveDefiniteError, match="^A diagonal precision entry is not positive.$"
    ):
        post.with_prior_change(np, np.array([-2.5, 0.0]))
    # Data curvature (-0.5, 1) under the prior (2.5, 2): alpha 0.1 leaves the
    # weight's precision at -0.5 + 0.25 < 0.
    old_prior = np.array([2.5, 2.0])
    fitted = DiagPosterior.from_precision(np, np.array([-0.5, 1.0]) + old_prior)
    evidence = log_evidence_at_prior(
        ParamLayout((1, 1)), np.zeros(2), -1.0, old_prior, fitted, alpha=0.1
    )
    assert evidence == -np.inf


@pytest.mark.parametrize(
    "cls, said",
    [
        (KronPosterior, "a layer's smallest eigenvalue is 4e-12 of its largest"),
        (
            LowRankPosterior,
            (
                "the sample-space matrix I + G A^-1 G' has eigenvalues down to "
                "4e-12 of their sum"
            ),
        ),
    ],
)
def test_the_near_singular_warning_names_each_structures_measure_in_full(cls, said):
    """The Kronecker posterior's smallest eigenvalue and the sample-space
    posterior's eigenvalues against their sum, in the warning's whole text
    (mutants: the sample-space text never looked up, so it read as a
    Cholesky pivot, and the Kronecker text wrapped in other characters,
    survived a substring check)."""
    posterior = object.__new__(cls)
    posterior.pivot_ratio = lambda: 4e-12
    with pytest.warns(LaplaceApproximationWarning) as caught:
        _warn_if_near_singular(posterior)
    assert str(caught[0].message) == (
        f"The posterior precision is nearly singular ({said}): variances along "
        "the weakly determined directions are dominated by round-off. "
        + posterior_module._SINGULAR_ADVICE
    )


def test_a_pivot_ratio_of_exactly_1e_10_is_not_near_singular():
    """The warning is for ratios below 1e-10 (the docstring's bound): at it,
    silence; just below it, the warning (mutant ``<=`` survived: the tests'
    ratios were 3e-12, 4e-12 and 1e-9)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_near_singular(SimpleNamespace(pivot_ratio=lambda: 1e-10))
    with pytest.warns(LaplaceApproximationWarning, match=re.escape("is 1e-10 of")):
        _warn_if_near_singular(
            SimpleNamespace(
                pivot_ratio=lambda: 0.99999e-10, pivot_what=FullPosterior.pivot_what
            )
        )


def test_a_kronecker_jitter_is_warned_in_full(monkeypatch):
    """A Kronecker factor's jitter is announced with where it went, in the
    warning's whole text (mutants of the default ``"to a Kronecker factor's
    prior"``, kept for posteriors with no ``jitter_where``, survived: the
    tests matched "added a jitter" and the value only)."""
    import sklaplace._kron as kron_module
    from sklaplace._posterior import laplace_posterior

    real = kron_module._diagonalise_with_jitter
    monkeypatch.setattr(
        kron_module,
        "_diagonalise_with_jitter",
        lambda A, d: (real(A, d + 1e-3)[0], 1e-3),
    )
    obj, theta = make_problem(n_classes=3, hidden=(3,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, kind, jitter = laplace_posterior(obj, theta, "ggn", "kron")
    assert kind == "ggn" and jitter == 1e-3
    assert [str(w.message) for w in caught] == [
        "The posterior precision is numerically singular; added a jitter of "
        "0.001 to a Kronecker factor's prior (posterior_jitter_). "
        + posterior_module._SINGULAR_ADVICE
    ]


def test_an_indefinite_exact_hessian_falls_back_to_the_ggns_posterior_once(
    monkeypatch,
):
    """Exact Hessian indefinite, GGN positive definite: one fallback warning,
    and the posterior is the GGN's, unjittered (mutants that warned on the
    GGN's failure instead, never warned, jittered the exact Hessian instead
    of trying the GGN, or tried a misspelt GGN survived: the tests' exact and
    GGN curvatures were the same singular matrix)."""
    obj, theta = make_problem("tanh", 2, (3,))  # one logit: no flat direction
    n = obj.layout.n_params
    ggn = np.diag(np.linspace(1.0, 2.0, n))
    exact = np.diag(np.r_[-1.0, np.ones(n - 1)])
    builders = dict(posterior_module.CURVATURE_BUILDERS)
    builders["ggn", "full"] = lambda objective, theta: ggn.copy()
    builders["exact", "full"] = lambda objective, theta: exact.copy()
    monkeypatch.setattr(posterior_module, "CURVATURE_BUILDERS", builders)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        posterior, kind, jitter = posterior_module.laplace_posterior(
            obj, theta, "exact", "full"
        )
    assert (kind, jitter) == ("ggn", 0.0)
    assert [str(w.message) for w in caught] == [
        "The exact Hessian is not positive definite at the MAP (the optimiser "
        "stopped where the loss is not locally convex); the posterior uses the "
        "generalised Gauss-Newton matrix instead (curvature_='ggn'). Tighter "
        "tol or hessian='ggn' avoids this."
    ]
    L = posterior.cholesky_factor
    np.testing.assert_allclose(L @ L.T, ggn, rtol=1e-14)


def test_a_dense_jitter_is_warned_in_full(monkeypatch):
    """A singular full GGN (one zero row and column, the rest the identity)
    is jittered by 1e-10 of its largest diagonal entry, 1e-10 (the first
    try works), and the warning says so in full, "to its diagonal" included
    (mutants of that phrase survived a match on "added a jitter")."""
    obj, theta = make_problem("tanh", 2, (3,))
    singular = np.diag(np.r_[0.0, np.ones(obj.layout.n_params - 1)])
    builders = dict(posterior_module.CURVATURE_BUILDERS)
    builders["ggn", "full"] = lambda objective, theta: singular.copy()
    monkeypatch.setattr(posterior_module, "CURVATURE_BUILDERS", builders)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, kind, jitter = posterior_module.laplace_posterior(obj, theta, "ggn", "full")
    assert kind == "ggn" and jitter == pytest.approx(1e-10, rel=1e-12)
    assert [str(w.message) for w in caught] == [
        "The posterior precision is numerically singular; added a jitter of "
        "1e-10 to its diagonal (posterior_jitter_). "
        + posterior_module._SINGULAR_ADVICE
    ]


def test_a_last_layer_posterior_warns_in_its_inner_posteriors_words():
    """A last-layer posterior's near-singular warning and jitter say what its
    inner posterior measures and where its jitter went: a Kronecker last
    layer's smallest eigenvalue, not a Cholesky pivot it does not have."""
    from sklaplace._last_layer import LastLayerPosterior

    inner = object.__new__(KronPosterior)
    inner.pivot_ratio = lambda: 4e-12
    posterior = LastLayerPosterior(inner, np.ones(3))
    assert posterior.jitter_where == "to a Kronecker factor's prior"
    with pytest.warns(LaplaceApproximationWarning) as record:
        _warn_if_near_singular(posterior)
    assert "(a layer's smallest eigenvalue is 4e-12 of its largest)" in str(
        record[0].message
    )


def test_a_full_posterior_under_array_api_strict_matches_numpy():
    """Every read of a full posterior runs in the fit's namespace (on a GPU,
    there) and gives NumPy's numbers: covariance diagonal, functional
    variance and a prior change."""
    xps = pytest.importorskip("array_api_strict")
    P = _spd(5, seed=3)
    J = np.random.RandomState(4).normal(size=(3, 2, 5))
    delta = np.linspace(0.5, 1.5, 5)
    results = []
    for xp in (np, xps):
        post = FullPosterior.from_precision(xp, xp.asarray(P))
        changed = post.with_prior_change(xp, delta)
        results.append(
            [
                to_numpy(post.covariance_diagonal(xp)),
                to_numpy(post.functional_variance(xp, xp.asarray(J))),
                changed.cholesky_factor @ changed.cholesky_factor.T,
            ]
        )
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    variance, functional, changed = results[0]
    # The dense references: P^{-1}'s diagonal, J P^{-1} J'.
    covariance = np.linalg.inv(P)
    np.testing.assert_allclose(variance, np.diag(covariance), rtol=1e-10)
    np.testing.assert_allclose(
        functional, J @ covariance @ np.swapaxes(J, 1, 2), rtol=1e-10
    )
    np.testing.assert_allclose(changed, P + np.diag(delta), rtol=1e-12)


def test_a_float32_full_posterior_stays_float32():
    """A float32 curvature (tests/test_curvature.py keeps it float32: half
    the memory) gives a float32 factor, and its prior change and covariance
    diagonal stay float32, within float32 round-off of the float64 dense
    references (mutants that built the change, the identity or the unit
    columns in NumPy's default float64 promoted them to float64: twice the
    memory of the n_params x n_params temporaries)."""
    P = _spd(6, seed=7)
    delta = np.linspace(0.5, 1.5, 6)
    post = FullPosterior.from_precision(np, P.astype(np.float32))
    assert post.cholesky_factor.dtype == np.float32
    changed = post.with_prior_change(np, delta)
    assert changed.cholesky_factor.dtype == np.float32
    L = changed.cholesky_factor.astype(np.float64)
    np.testing.assert_allclose(L @ L.T, P + np.diag(delta), rtol=1e-5, atol=1e-5)
    variance = post.covariance_diagonal(np, block=4)
    assert variance.dtype == np.float32
    np.testing.assert_allclose(variance, np.diag(np.linalg.inv(P)), rtol=1e-5)


def test_a_diagonal_posteriors_pivot_ratio_is_one_however_small_an_entry():
    """``1 / P_ii`` is exact: the ratio is 1 (a smallest squared pivot over
    the largest diagonal entry is at most 1), whatever the spread of the
    precision, which a pruning warning reports (mutant: 2.0). A full
    posterior of the same precision has the ratio of its spread."""
    d = np.array([1e-12, 1.0, 4.0])
    assert DiagPosterior.from_precision(np, d).pivot_ratio() == 1.0
    full = FullPosterior.from_precision(np, np.diag(d))
    assert full.pivot_ratio() == pytest.approx(1e-12 / 4.0, rel=1e-12)


def test_without_a_total_weight_only_an_exactly_zero_precision_is_refused():
    """``_jittered``'s default total weight is 0 (the conditioned posterior's
    call): a precision exactly zero is refused (a jitter of 2e-308 had given
    variances of 1e308), one that is tiny but positive is jittered relative
    to it, and one whose relative jitter underflows to 0 still gets the
    smallest normal number, not a jitter of zero or below (mutants: a
    default weight of 1 refused 1e-20; ``>=`` accepted the zero; ``- tiny``
    made the first jitter negative and every tenfold one with it)."""
    refused = r"zero to round-off \(largest diagonal entry 0\)"
    with pytest.raises(ValueError, match=refused):
        _jittered(np, DiagPosterior, np.zeros(3))
    tiny = np.finfo(np.float64).tiny
    posterior, jitter = _jittered(np, DiagPosterior, np.array([1e-20, 0.0]))
    assert jitter == SINGULAR_RTOL * 1e-20 + tiny
    np.testing.assert_array_equal(posterior.precision, [1e-20 + jitter, jitter])
    # 1e-315 * 1e-10 underflows to 0: the jitter is the smallest normal number.
    assert SINGULAR_RTOL * 1e-315 == 0.0
    posterior, jitter = _jittered(np, DiagPosterior, np.array([1e-315, 0.0]))
    assert jitter == tiny
    assert np.all(posterior.precision > 0)
