"""The low-rank (sample-space) GGN posterior against dense references.

The references are built from raw arrays (``dense_ggn``: finite-difference
Jacobians of from-scratch logits), sharing nothing with the rows ``G`` the
posterior is made of.
"""

import re
import warnings

import numpy as np
import pytest

from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._curvature import ggn_rows
from sklaplace._curvature._ggn import ggn_row_chunks
from sklaplace._low_rank import LowRankPosterior
from sklaplace._testing import dense_ggn
from tests.conftest import make_problem, rebuilt


def _wide(n_classes, weighted=True, fixed=None):
    """Fewer data rows than parameters: 6 rows, 8 features, hidden (3,)."""
    obj, theta, raw = make_problem(
        n_classes=n_classes,
        hidden=(3,),
        n_samples=6,
        n_features=8,
        weighted=weighted,
        raw=True,
    )
    if fixed is not None:
        obj = rebuilt(obj, fixed=fixed)
    keys = ("X", "sample_weight", "prior_precision", "layer_sizes", "activation")
    reference = dense_ggn(theta, *[raw[key] for key in keys])
    return obj, theta, raw, reference


@pytest.mark.parametrize("n_classes", [2, 3])
def test_low_rank_posterior_is_the_full_ggn_posterior(n_classes):
    obj, theta, raw, P = _wide(n_classes)
    rows = ggn_rows(obj, theta)
    n_outputs = obj.layout.n_outputs
    assert rows.shape == (6 * n_outputs, obj.layout.n_params)
    assert rows.shape[0] < rows.shape[1]  # the regime it is for
    post = LowRankPosterior.from_curvature(obj, rows, theta)
    covariance = np.linalg.inv(P)
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-9
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(covariance), rtol=1e-9
    )
    J = np.random.RandomState(1).normal(size=(4, n_outputs, obj.layout.n_params))
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        J @ covariance @ np.swapaxes(J, 1, 2),
        rtol=1e-9,
    )
    # A new prior, the same data.
    delta = np.linspace(0.1, 2.0, obj.layout.n_params)
    changed = post.with_prior_change(np, delta)
    np.testing.assert_allclose(
        changed.log_det_precision(), np.linalg.slogdet(P + np.diag(delta))[1], rtol=1e-9
    )
    # The prior's log det alone would be far off: the data's term counts.
    assert abs(post.log_det_precision() - np.sum(np.log(raw["prior_precision"]))) > 1.0


def test_low_rank_functional_variance_takes_a_factored_jacobian():
    from sklaplace._jacobian import logit_factors

    obj, theta, _, P = _wide(3)
    post = LowRankPosterior.from_curvature(obj, ggn_rows(obj, theta), theta)
    X = np.random.RandomState(2).normal(size=(5, 8))
    ((_, factored),) = list(logit_factors(np, obj.layout, theta, obj.activation, X))
    J = factored.dense(np)
    np.testing.assert_allclose(
        post.functional_variance(np, factored),
        J @ np.linalg.inv(P) @ np.swapaxes(J, 1, 2),
        rtol=1e-9,
    )


def test_low_rank_posterior_with_fixed_parameters_is_the_conditioned_one():
    """Fixed parameters: the precision's free block, identity elsewhere."""
    n_params = make_problem(n_classes=3, hidden=(3,), n_features=8)[0].layout.n_params
    fixed = np.zeros(n_params, dtype=bool)
    fixed[[0, 5, 11]] = True
    obj, theta, _, P = _wide(3, fixed=fixed)
    post = LowRankPosterior.from_curvature(obj, ggn_rows(obj, theta), theta)
    pinned = P.copy()
    pinned[fixed, :] = 0.0
    pinned[:, fixed] = 0.0
    pinned[fixed, fixed] = 1.0
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(pinned)[1], rtol=1e-9
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(np.linalg.inv(pinned)), rtol=1e-9
    )


@pytest.mark.parametrize("weakest", [0.0, -0.5, 1e-320])
def test_low_rank_posterior_refuses_a_prior_it_cannot_invert(weakest):
    """Zero, negative, or so small that ``1 / a`` overflows (1e-320): refused
    by name, with no NumPy overflow warning on the way."""
    import warnings

    obj, theta = make_problem(n_classes=2, hidden=(3,), n_samples=6, n_features=8)
    rows = ggn_rows(obj, theta)
    prior = np.asarray(obj.prior_precision).copy()
    prior[-1] = weakest
    message = (
        "The low-rank posterior needs a positive prior precision on every parameter."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NotPositiveDefiniteError, match=f"^{re.escape(message)}$"):
            LowRankPosterior(prior, rows)


def test_low_rank_posterior_refuses_rows_whose_gram_overflows():
    obj, theta = make_problem(n_classes=2, hidden=(3,), n_samples=6, n_features=8)
    rows = ggn_rows(obj, theta) * 1e200
    message = "I + G A^-1 G' is not finite."
    with pytest.raises(NotPositiveDefiniteError, match=f"^{re.escape(message)}$"):
        LowRankPosterior(np.asarray(obj.prior_precision), rows)


def _config(structure, subset="all", bias=0.1):
    from types import SimpleNamespace

    return SimpleNamespace(
        hessian_structure=structure,
        subset_of_weights=subset,
        prior_precision_scale="cv",
        link_approx="probit",
        bias_prior_precision=bias,
    )


def test_the_evidence_tunes_on_the_low_rank_posterior_where_it_is_cheap(monkeypatch):
    """Fewer rows than parameters: every structure but the full one tunes
    alpha on the exact GGN posterior in sample space, pruned refits too
    (their pruned columns zero); not with more rows, over the work or
    memory bound, or a bias prior below alpha's bound (1e-6)."""
    import sklaplace._fitting as fitting_module
    import sklaplace._memory as memory_module

    tuned_on = fitting_module.tuning_structure
    sizes = (30, 8, 1)  # 257 parameters
    for structure, subset in [("kron", "all"), ("diag", "all"), ("full", "last_layer")]:
        assert tuned_on(_config(structure, subset), sizes, False, 256) == "lowrank"
        assert tuned_on(_config(structure, subset), sizes, False, 257) != "lowrank"
        # A bias prior weaker than alpha's bound (1e-6): none.
        assert tuned_on(_config(structure, subset, 0.0), sizes, False, 20) != "lowrank"
        assert tuned_on(_config(structure, subset, [0.1, 0.0]), sizes, False, 20) != (
            "lowrank"
        )
        for bias, chosen in [(1e-6, True), (9.9e-7, False), ([1.0, 9.9e-7], False)]:
            low = tuned_on(_config(structure, subset, bias), sizes, False, 20)
            assert (low == "lowrank") == chosen
        assert tuned_on(_config(structure, subset), sizes) != "lowrank"  # no rows
    assert tuned_on(_config("full"), sizes, False, 20) == "full"
    # A pruned refit: its pruned columns are zero in G (exact), else itself.
    assert tuned_on(_config("diag"), sizes, True, 20) == "lowrank"
    assert tuned_on(_config("diag"), sizes, True) == "diag"
    # Three classes: three rows each (m = 3 n_rows); m^2 n_params the work.
    sizes3 = (30, 8, 3)  # 275 parameters
    assert tuned_on(_config("kron"), sizes3, False, 91) == "lowrank"
    assert tuned_on(_config("kron"), sizes3, False, 92) == "kron"
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 273**2 * 275)
    assert tuned_on(_config("kron"), sizes3, False, 91) == "lowrank"
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 273**2 * 275 - 1)
    assert tuned_on(_config("kron"), sizes3, False, 91) == "kron"
    # The rows and m x m factor of every posterior the evidence holds (2 +
    # those held_posteriors counts) within the full posterior's byte budget.
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 1e10)
    copies = 2 + memory_module.held_posteriors("cv", "evidence")
    need = copies * 8 * 273 * (275 + 273)
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", need)
    assert tuned_on(_config("kron"), sizes3, False, 91) == "lowrank"
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", need - 1)
    assert tuned_on(_config("kron"), sizes3, False, 91) == "kron"


@pytest.mark.parametrize("structure", ["kron", "diag"])
def test_a_kronecker_or_diagonal_fit_tunes_alpha_as_the_full_posterior_does(structure):
    """Wide rows (30 rows, 40 features, hidden (6,): 253 parameters): the
    evidence's refits under a Kronecker or diagonal posterior run on the
    exact GGN, so alpha's path is the full posterior's (its own had been
    another: the Kronecker and diagonal evidences approximate it)."""
    from sklaplace import LaplaceMLPClassifier

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 40))
    y = (X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=30) > 0).astype(int)
    params = dict(alpha="evidence", prior_precision_scale=1.0, random_state=0)
    full = LaplaceMLPClassifier((6,), hessian_structure="full", **params).fit(X, y)
    other = LaplaceMLPClassifier((6,), hessian_structure=structure, **params).fit(X, y)
    assert other.hessian_structure_ == structure
    assert len(full.alpha_history_) > 2
    np.testing.assert_allclose(other.alpha_history_, full.alpha_history_, rtol=1e-6)
    np.testing.assert_allclose(other.alpha_, full.alpha_, rtol=1e-6)


def test_an_indefinite_sample_space_matrix_is_jittered_tenfold():
    """Round-off can leave ``G A^{-1} G'`` indefinite where a prior is weak
    (its condition about the curvature over the prior): jitters from 1e-10
    of the largest entry, tenfold, until ``I + G A^{-1} G' + jitter I``
    factorises. Here an eigenvalue of -2 needs a jitter above 1: 6e-10 x
    10^10 = 6 (the largest entry is 5, plus the identity's 1)."""
    from sklaplace._low_rank import _jittered_factor

    factor, jitter = _jittered_factor(np, np.diag([-2.0, 5.0]))
    assert jitter == pytest.approx(6.0, rel=1e-12)
    np.testing.assert_allclose(factor @ factor.T, np.diag([5.0, 12.0]), rtol=1e-12)
    factor, jitter = _jittered_factor(np, np.diag([0.0, 5.0]))  # positive: none
    assert jitter == 0.0


def test_a_sample_space_jitter_is_warned_by_name(monkeypatch):
    """The posterior's jitter warning names the matrix jittered (it had
    fallen to the dense matrices' fallback: ``AttributeError``)."""
    import warnings

    import sklaplace._low_rank as low_rank_module
    from sklaplace._posterior import laplace_posterior
    from sklaplace.exceptions import LaplaceApproximationWarning

    real = low_rank_module._jittered_factor
    monkeypatch.setattr(
        low_rank_module,
        "_jittered_factor",
        lambda xp, inner: (real(xp, inner)[0], 1e-3),
    )
    obj, theta, _, _ = _wide(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post, _, jitter = laplace_posterior(obj, theta, "ggn", "lowrank")
    assert jitter == post.jitter == 1e-3
    assert [w.category for w in caught] == [LaplaceApproximationWarning]
    assert "jitter of 0.001 to the sample-space matrix I + G A^-1 G'" in str(
        caught[0].message
    )


@pytest.mark.parametrize("structure", ["kron", "diag"])
@pytest.mark.parametrize("bias", [1e-16, [0.1, 1e-16]])
def test_a_bias_prior_below_alphas_bound_tunes_as_before(monkeypatch, structure, bias):
    """``bias_prior_precision`` 1e-16 (or one layer's): the updates do not run
    in sample space, whose matrix is then ill-conditioned (jittered, alpha
    1.6% off the full posterior's), but as they did before it (where the fit
    had raised ``AttributeError``)."""
    import sklaplace._memory as memory_module
    from sklaplace import LaplaceMLPClassifier

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 40))
    y = (X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=30) > 0).astype(int)
    params = dict(
        hessian_structure=structure,
        alpha="evidence",
        prior_precision_scale=1.0,
        bias_prior_precision=bias,
        random_state=0,
    )
    clf = LaplaceMLPClassifier((6,), **params).fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 0)  # as before
    before = LaplaceMLPClassifier((6,), **params).fit(X, y)
    np.testing.assert_array_equal(clf.alpha_history_, before.alpha_history_)


def test_the_rows_are_the_same_in_any_number_of_chunks():
    """``ggn_rows`` stacks row chunks sized by the memory budget: a budget of
    a few rows gives the rows of one chunk, in order (mutants that took every
    row per chunk, or stacked the chunks side by side, survived one chunk)."""
    for n_classes in (2, 3):
        obj, theta = make_problem(n_classes=n_classes, hidden=(3,), n_samples=7)
        small, _ = make_problem(
            n_classes=n_classes, hidden=(3,), n_samples=7, memory_budget=1
        )
        one = ggn_rows(obj, theta)
        assert sum(1 for _ in small.row_chunks(1)) == 7
        np.testing.assert_allclose(ggn_rows(small, theta), one, rtol=1e-12, atol=1e-15)


def test_the_pivot_ratio_is_one_over_the_sample_space_matrixs_trace():
    """``1 / trace(I + G A^{-1} G')``: its eigenvalues are at least 1, so this
    bounds its inverse condition from below (the near-singular warning's
    measure for the Woodbury forms)."""
    obj, theta, _, _ = _wide(2)
    G = ggn_rows(obj, theta)
    post = LowRankPosterior.from_curvature(obj, G, theta)
    prior = np.asarray(obj.prior_precision)
    M = np.eye(G.shape[0]) + (G / prior) @ G.T
    assert post.pivot_ratio() == pytest.approx(1.0 / np.trace(M), rel=1e-12)
    assert post.pivot_ratio() <= 1.0 / np.linalg.cond(M)


def test_a_pruned_diagonal_refit_tunes_alpha_as_the_pruned_full_one():
    """A pruned ``"diag"`` refit's updates run in sample space with the pruned
    columns zero: the full posterior's conditional, so the alpha path of
    the pruned full refit (its own diagonal's had been another)."""
    from sklaplace import LaplaceMLPClassifier, prune

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 40))
    y = (X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=30) > 0).astype(int)
    params = dict(alpha="evidence", prior_precision_scale=1.0, random_state=0)
    base = LaplaceMLPClassifier((6,), hessian_structure="full", **params).fit(X, y)
    refits = {}
    for structure in ("full", "diag"):
        pruned = prune(base, 0.3, method="magnitude")
        pruned.set_params(hessian_structure=structure, warm_start=True)
        refits[structure] = pruned.fit(X, y)
    assert np.array_equal(refits["full"].pruned_mask_, refits["diag"].pruned_mask_)
    assert refits["diag"].hessian_structure_ == "diag"
    np.testing.assert_allclose(
        refits["diag"].alpha_history_, refits["full"].alpha_history_, rtol=1e-6
    )


@pytest.mark.parametrize(
    "n_classes, n_outputs, n_params, per_row",
    # Three float64 copies of the rows (3 x 8 x K x P bytes) and the
    # passes' numbers, three copies each: the layers' inputs with their
    # ones (9 + 4), K deltas of the hidden layer and the logits and K more
    # (K (3 + K + 1)), the likelihood's K x K factor twice (2 K^2).
    [(2, 1, 31, 744 + 3 * 8 * (13 + 5 + 2)), (3, 3, 39, 2808 + 3 * 8 * (13 + 21 + 18))],
)
def test_ggn_row_chunks_take_as_many_rows_as_the_budget_holds(
    n_classes, n_outputs, n_params, per_row
):
    """A chunk of ``ggn_row_chunks`` holds as many rows as fit the objective's
    memory budget at three float64 copies of a row's ``n_outputs x n_params``
    block (8 features, hidden (3,): 27 + 4 K parameters) beside the passes
    that form it (their traced peak is checked against the budget in
    ``tests/test_curvature.py``), in order: 7 rows in chunks of 3
    (budget 3 rows' bytes) or 2 (one byte less). Mutants that sized the
    chunks at 4 copies or divided instead of multiplying survived (the rows
    alone are the same whatever the chunking)."""
    whole, theta = make_problem(
        n_classes=n_classes, hidden=(3,), n_samples=7, n_features=8
    )
    assert (whole.layout.n_outputs, whole.layout.n_params) == (n_outputs, n_params)
    G = ggn_rows(whole, theta)
    for budget, sizes in [(3 * per_row, [3, 3, 1]), (3 * per_row - 1, [2, 2, 2, 1])]:
        obj, _ = make_problem(
            n_classes=n_classes,
            hidden=(3,),
            n_samples=7,
            n_features=8,
            memory_budget=budget,
        )
        chunks = list(ggn_row_chunks(obj, theta))
        assert [c.shape for c in chunks] == [(s * n_outputs, n_params) for s in sizes]
        np.testing.assert_allclose(np.concatenate(chunks), G, rtol=1e-12, atol=1e-15)


def test_the_sample_space_posterior_falls_back_to_the_ggn_by_name():
    """``hessian="exact"`` with the sample-space posterior: it exists for the
    GGN only, so the GGN's is built (``curvature_ == "ggn"``) with a warning
    that says so in full, and the remedy a factored posterior's (mutants of
    the ``"lowrank"`` reason and of its remedy's test survived: only the
    Kronecker and full texts were asserted)."""
    from sklaplace._posterior import laplace_posterior
    from sklaplace.exceptions import LaplaceApproximationWarning

    obj, theta = make_problem(n_classes=3, hidden=(3,), n_samples=6, n_features=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post, kind, jitter = laplace_posterior(obj, theta, "exact", "lowrank")
    assert isinstance(post, LowRankPosterior) and kind == "ggn" and jitter == 0.0
    assert [w.category for w in caught] == [LaplaceApproximationWarning]
    assert str(caught[0].message) == (
        "The sample-space posterior exists for the GGN only; the posterior "
        "uses the generalised Gauss-Newton matrix instead (curvature_='ggn'). "
        "Pass hessian='ggn', or hessian_structure='full' for the exact Hessian."
    )


def test_a_sample_space_jitter_is_warned_in_full(monkeypatch):
    """The jitter warning's whole text, with the sample-space matrix named
    (the existing test checks a substring from "jitter of" on: a mutant
    that lower-cased the sentence's first word survived everywhere)."""
    import sklaplace._low_rank as low_rank_module
    import sklaplace._posterior as posterior_module
    from sklaplace._posterior import laplace_posterior

    real = low_rank_module._jittered_factor
    monkeypatch.setattr(
        low_rank_module,
        "_jittered_factor",
        lambda xp, inner: (real(xp, inner)[0], 1e-3),
    )
    obj, theta = make_problem(n_classes=3, hidden=(3,), n_samples=6, n_features=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        laplace_posterior(obj, theta, "ggn", "lowrank")
    assert [str(w.message) for w in caught] == [
        "The posterior precision is numerically singular; added a jitter of "
        "0.001 to the sample-space matrix I + G A^-1 G' (posterior_jitter_). "
        + posterior_module._SINGULAR_ADVICE
    ]


def test_a_sample_space_posterior_it_cannot_build_is_refused_not_jittered():
    """A prior with a zero entry: the sample-space posterior, which has no
    dense precision to jitter, is refused by name through
    ``laplace_posterior`` (mutants that skipped the refusal, and went on to
    the dense jitter with no precision to jitter, or emptied its message,
    survived: the refusal was tested on the class alone)."""
    from sklaplace._posterior import laplace_posterior

    obj, theta = make_problem(n_classes=2, hidden=(3,), n_samples=6, n_features=8)
    prior = np.asarray(obj.prior_precision).copy()
    prior[-1] = 0.0
    message = "The 'lowrank' posterior's precision is not positive definite."
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NotPositiveDefiniteError) as raised:
            laplace_posterior(
                rebuilt(obj, prior_precision=prior), theta, "ggn", "lowrank"
            )
    assert str(raised.value) == message


def test_a_prior_whose_inverse_is_finite_is_accepted_however_small():
    """The refusal is of a prior whose inverse overflows, not of any tiny one:
    ``a = 1e-308`` (``1/a = 1e308``, finite; ``2/a`` is not) on a parameter
    the data do not touch (its column of ``G`` zero) gives that parameter
    the prior's variance ``1e308`` and ``log det`` its ``log a``, the others
    what a unit prior there gives (a mutant that tested ``2/a`` refused it)."""
    obj, theta = make_problem(n_classes=2, hidden=(3,), n_samples=6, n_features=8)
    rows = np.array(ggn_rows(obj, theta))
    rows[:, -1] = 0.0
    unit_prior, tiny_prior = (np.asarray(obj.prior_precision).copy() for _ in "ab")
    unit_prior[-1], tiny_prior[-1] = 1.0, 1e-308
    unit = LowRankPosterior(unit_prior, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = LowRankPosterior(tiny_prior, rows)
        variance = tiny.covariance_diagonal(np)
    assert variance[-1] == pytest.approx(1e308, rel=1e-12)
    np.testing.assert_allclose(
        variance[:-1], unit.covariance_diagonal(np)[:-1], rtol=1e-12
    )
    np.testing.assert_allclose(
        tiny.log_det_precision(),
        unit.log_det_precision() + np.log(1e-308),
        rtol=1e-12,
    )


def test_a_sample_space_matrix_no_jitter_factorises_is_refused_by_name():
    """After the last tenfold jitter, a matrix that still does not factorise
    (a NaN: the constructor refuses a non-finite one before it gets here, so
    only a direct caller sees this) raises with the matrix named (mutants of
    the message survived: no test reached the end of the jitter ladder)."""
    from sklaplace._low_rank import _jittered_factor

    message = "I + G A^-1 G' does not factorise."
    for inner in (np.array([[np.nan]]), np.diag([-np.inf, 1.0])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf
            with pytest.raises(NotPositiveDefiniteError) as raised:
                _jittered_factor(np, inner)
        assert str(raised.value) == message


def test_a_prior_change_factorises_in_the_posteriors_namespace(monkeypatch):
    """``with_prior_change(xp, delta)`` builds the new sample-space matrix
    and its factor in ``xp`` (on a GPU the ``m^2 n_params`` Gram runs
    there), as the first posterior did, with the same numbers as NumPy's
    (a mutant that dropped ``xp`` computed it in NumPy, unnoticed: the
    results are held as NumPy either way)."""
    xps = pytest.importorskip("array_api_strict")
    import sklaplace._low_rank as low_rank_module

    real, namespaces = low_rank_module.cholesky, []

    def recording(xp, A):
        namespaces.append(xp)
        return real(xp, A)

    monkeypatch.setattr(low_rank_module, "cholesky", recording)
    obj, theta = make_problem(n_classes=3, hidden=(3,), n_samples=6, n_features=8)
    rows, prior = ggn_rows(obj, theta), np.asarray(obj.prior_precision)
    delta = np.linspace(0.1, 2.0, prior.shape[0])
    post = LowRankPosterior(prior, xps.asarray(rows), xps)
    assert namespaces == [xps]
    changed = post.with_prior_change(xps, xps.asarray(delta))
    assert namespaces == [xps, xps]
    reference = LowRankPosterior(prior + delta, rows)
    np.testing.assert_allclose(
        changed.log_det_precision(), reference.log_det_precision(), rtol=1e-12
    )
