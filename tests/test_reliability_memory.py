"""Reliability, memory: refuse a dense matrix over the limit before allocating it.

The limits live in one module, ``sklaplace._memory`` (``DENSE_MEMORY_LIMIT``
for one array, ``FIT_MEMORY_LIMIT`` for a whole fit's dense matrices); the
tests lower it, or use a network whose ``n_params x n_params`` matrix would be
over 3 GiB, and check with ``tracemalloc`` that nothing large was allocated.
"""

import re
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import sklaplace._fitted as fitted_module
import sklaplace._memory as memory_module
import sklaplace._predictive as predictive_module
from sklaplace import LaplaceMLPClassifier, log_posterior_hessian
from sklaplace._alpha_walk import ALPHA_WALK_MAX_FITS
from sklaplace._curvature import exact_hessian, ggn_diagonal, ggn_hessian
from sklaplace._testing import numerical_jacobian
from sklaplace.exceptions import MemoryLimitError
from tests.conftest import forbid_the_map_solver, make_problem, traced_peak

RNG = np.random.RandomState(0)
X_WIDE = RNG.normal(size=(8, 200))
Y_WIDE = np.arange(8) % 2
# 200 * 100 + 100 + 100 + 1 parameters: one 20201 x 20201 float64 matrix is
# 3.04 GiB, over the 2 GiB limit.
WIDE = dict(hidden_layer_sizes=(100,), random_state=0)
N_WIDE = 20201


def test_the_limit_is_the_documented_one():
    assert memory_module.DENSE_MEMORY_LIMIT == 2 * 2**30
    assert "2 GiB" in LaplaceMLPClassifier.__doc__
    assert "16,384 parameters" in LaplaceMLPClassifier.__doc__
    assert 8 * 16384**2 == memory_module.DENSE_MEMORY_LIMIT
    assert issubclass(MemoryLimitError, MemoryError)


@pytest.mark.parametrize(
    "solver, structure, culprits",
    [
        ("newton", "full", "solver='newton' and hessian_structure='full'"),
        ("newton", "diag", "solver='newton' need"),
        ("lbfgs", "full", "hessian_structure='full' need"),
    ],
)
def test_too_large_a_network_is_refused_before_any_allocation(
    monkeypatch, solver, structure, culprits
):
    # A first fit imports what scikit-learn loads lazily, outside the measurement.
    LaplaceMLPClassifier((), prior_precision_scale=1.0).fit(X_WIDE[:, :2], Y_WIDE)
    forbid_the_map_solver(monkeypatch)
    clf = LaplaceMLPClassifier(**WIDE, solver=solver, hessian_structure=structure)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryLimitError) as info:
            clf.fit(X_WIDE, Y_WIDE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # far below one 20201 x 20201 matrix
    message = str(info.value)
    assert f"{N_WIDE} x {N_WIDE}" in message
    assert "3.04 GiB" in message and "2 GiB" in message
    assert culprits in message
    assert "hessian_structure='kron' or 'diag'" in message
    assert "solver='lbfgs'" in message
    assert "smaller network" in message
    assert not hasattr(clf, "n_features_in_")  # the failed fit left nothing


def test_diag_lbfgs_fits_the_network_the_guard_refuses():
    clf = LaplaceMLPClassifier(
        **WIDE, solver="lbfgs", hessian_structure="diag", max_iter=50
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is small
        clf.fit(X_WIDE, Y_WIDE)
    assert clf.posterior_.n_params == N_WIDE
    proba = clf.predict_proba(X_WIDE)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.fixture
def tiny_limit(monkeypatch):
    """A 1 KiB limit: a 16-parameter network's 16 x 16 matrix (2 KiB) is over."""
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 1024)


def test_a_lowered_limit_applies_everywhere(tiny_limit):
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    with pytest.raises(MemoryLimitError, match="16 x 16"):
        LaplaceMLPClassifier((3,)).fit(X, y)
    with pytest.raises(MemoryLimitError, match="16 x 16"):
        LaplaceMLPClassifier((3,), solver="lbfgs").fit(X, y)
    clf = LaplaceMLPClassifier((3,), solver="lbfgs", hessian_structure="diag").fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_a_last_layer_posterior_over_the_limit_is_refused_before_the_map(
    tiny_limit, monkeypatch
):
    # Hidden (16,), 2 classes: 17 last-layer parameters (17 x 17 = 2.3 KiB,
    # over the 1 KiB limit), refused before the solver runs (it had been
    # refused only after the MAP); a diagonal one fits.
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    params = dict(solver="lbfgs", subset_of_weights="last_layer", alpha=1.0)
    with monkeypatch.context() as patched:
        forbid_the_map_solver(patched)
        with pytest.raises(MemoryLimitError, match="17 x 17.*the last layer"):
            LaplaceMLPClassifier(
                (16,), hessian_structure="full", prior_precision_scale=1.0, **params
            ).fit(X, y)
    clf = LaplaceMLPClassifier((16,), hessian_structure="diag", **params).fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_curvature_engine_checks_before_allocating(tiny_limit):
    obj, theta = make_problem(hidden=(4,), n_features=3)  # 21 parameters
    for curvature in (ggn_hessian, exact_hessian):
        with pytest.raises(MemoryLimitError, match="21 x 21"):
            curvature(obj, theta)
    assert ggn_diagonal(obj, theta).shape == (21,)  # no dense matrix: allowed
    coefs = [np.zeros((3, 4)), np.zeros((4, 1))]
    intercepts = [np.zeros(4), np.zeros(1)]
    X, y = RNG.normal(size=(5, 3)), np.arange(5) % 2
    with pytest.raises(MemoryLimitError, match="kind='ggn_diag'"):
        log_posterior_hessian(coefs, intercepts, X, y, kind="ggn")
    diagonal = log_posterior_hessian(coefs, intercepts, X, y, kind="ggn_diag")
    assert diagonal.shape == (21,)


def test_a_single_row_over_the_limit_is_refused(tiny_limit):
    obj, _ = make_problem()
    with pytest.raises(MemoryLimitError, match="one sample"):
        next(obj.row_chunks(bytes_per_row=2048))
    assert len(list(obj.row_chunks(bytes_per_row=512))) >= 1


def test_monte_carlo_draws_over_the_limit_are_refused():
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 3
    params = dict(n_mc_samples=10**9, link_approx="mc")
    # Choosing the prior scale on held-out folds needs the draws at fit.
    with pytest.raises(MemoryLimitError, match="1000000000 Monte Carlo draws"):
        LaplaceMLPClassifier((), **params).fit(X, y)
    clf = LaplaceMLPClassifier((), prior_precision_scale=1.0, **params).fit(X, y)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryLimitError, match="1000000000 Monte Carlo draws"):
            clf.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert np.all(np.isfinite(clf.set_params(link_approx="probit").predict_proba(X)))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("link", ["mc", "probit", "map"])
def test_row_chunked_predictions_equal_one_block(monkeypatch, link, n_classes):
    X, y = RNG.normal(size=(30, 3)), np.arange(30) % n_classes
    clf = LaplaceMLPClassifier((2,), link_approx=link, n_mc_samples=64).fit(X, y)
    whole, logits = clf.predict_proba(X), clf.decision_function(X)
    # One row per chunk, both for the Jacobians and for the predictive.
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", 1)
    np.testing.assert_allclose(clf.predict_proba(X), whole, rtol=1e-12, atol=1e-15)
    # Predictive chunks of 7 rows, which do not divide the 30: the last,
    # shorter chunk must be predicted too.
    monkeypatch.undo()
    monkeypatch.setattr(fitted_module, "predictive_rows_per_chunk", lambda *a: 7)
    chunked = clf.predict_proba(X)
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(clf.decision_function(X), logits, rtol=1e-12, atol=1e-15)


def test_the_module_budget_reaches_every_chunked_computation(monkeypatch):
    # Copied at import, sklaplace._memory.DEFAULT_MEMORY_BUDGET had changed
    # nothing when set (the user guide lists it among the settable limits).
    X, y = RNG.normal(size=(12, 3)), np.arange(12) % 3
    clf = LaplaceMLPClassifier(
        (2,), alpha=1.0, prior_precision_scale=1.0, tol=1e-10, random_state=0
    )  # the same start: different ones may end in different minima
    whole = clf.fit(X, y).predict_proba(X)
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", 1)
    obj, _ = make_problem(n_classes=3, hidden=(2,), n_samples=5)
    assert [chunk[0].shape[0] for chunk in obj.row_chunks(64)] == [1] * 5
    assert predictive_module.predictive_rows_per_chunk("probit", 3, 1) == 1
    np.testing.assert_allclose(clf.fit(X, y).predict_proba(X), whole, rtol=1e-8)


def _peak_of_fit(clf, X, y):
    """tracemalloc's peak of ``clf.fit(X, y)``, after a small fit that imports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:6], y[:6])  # imports and caches outside the measurement
        tracemalloc.start()
        try:
            clf.fit(X, y)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@pytest.mark.parametrize(
    "solver, structure, scale, alpha",
    [
        ("newton", "full", "cv", 1.0),
        ("lbfgs", "full", "evidence", "evidence"),
        ("lbfgs", "full", "cv", "evidence"),
        ("lbfgs", "full", "validation", "validation"),
        ("newton", "diag", 1.0, "evidence"),
        ("lbfgs", "kron", "cv", 1.0),
    ],
)
def test_counted_dense_matrices_bound_the_measured_peak(
    solver, structure, scale, alpha
):
    # The whole-fit guard counts the n_params x n_params matrices a fit holds
    # at once; tracemalloc measures them (plus small per-row arrays).
    X, y = RNG.normal(size=(60, 40)), np.arange(60) % 3
    clf = LaplaceMLPClassifier(
        (16,),
        solver=solver,
        hessian_structure=structure,
        prior_precision_scale=scale,
        alpha=alpha,
        max_iter=20,
        random_state=0,
    )
    n_params = 41 * 16 + 17 * 3
    one = 8 * n_params**2
    count = memory_module.dense_matrices_at_peak(solver, structure, scale, alpha)
    # MacKay's updates for a diagonal posterior run on the GGN's m = 180 rows
    # (tuning_structure's "lowrank"), outside the dense count: each posterior
    # held keeps m x (n_params + m) (low_rank_is_cheap's own budget).
    rows = 0
    if alpha == "evidence" and structure == "diag":
        m = 60 * 3
        rows = memory_module.held_posteriors(scale, alpha) * 8 * m * (n_params + m)
    peak = _peak_of_fit(clf, X, y)
    assert peak <= (count + 0.5) * one + rows
    assert peak >= 0.55 * count * one  # the count is not a loose bound


def test_auto_structure_is_full_while_it_fits_the_budget(monkeypatch):
    X, y = RNG.normal(size=(30, 3)), np.arange(30) % 3
    params = dict(solver="lbfgs", alpha=1.0, prior_precision_scale=1.0, random_state=0)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)
    assert clf.hessian_structure_ == "full"
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", 8 * 31**2)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)  # 31 parameters
    assert clf.hessian_structure_ == "kron"
    assert type(clf.posterior_).__name__ == "KronPosterior"
    # Four 31 x 31 matrices: enough for a fixed scale, not for "cv" (six).
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", 4 * 8 * 31**2)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)
    assert clf.hessian_structure_ == "full"
    params["prior_precision_scale"] = "cv"
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)
    assert clf.hessian_structure_ == "kron"


def test_full_is_bounded_by_bytes_and_by_the_work_of_building_and_factorising():
    full_is_cheap = memory_module.full_is_cheap
    # Bytes: six dense matrices under "cv" (four otherwise) within the
    # budget (checked with a budget small enough to bind before the work).
    budget = 2**22
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory_module, "AUTO_FULL_BUDGET", budget)
        n_cv, n_fixed = int((budget / 48) ** 0.5), int((budget / 32) ** 0.5)
        assert full_is_cheap(n_cv, 1, 1, "cv")
        assert not full_is_cheap(n_cv + 1, 1, 1, "cv")
        assert full_is_cheap(n_fixed, 1, 1, 1.0)
        assert not full_is_cheap(n_fixed + 1, 1, 1, 1.0)
    # Factorising: n_params^3 within AUTO_FACTOR_WORK (1,587 parameters),
    # whatever the rows.
    n_factor = round(memory_module.AUTO_FACTOR_WORK ** (1 / 3))
    while n_factor**3 > memory_module.AUTO_FACTOR_WORK:
        n_factor -= 1
    assert n_factor == 1587
    assert full_is_cheap(n_factor, 1, 1) and not full_is_cheap(n_factor + 1, 1, 1)
    # Building: rows x logits x n_params^2 multiply-adds within
    # AUTO_FULL_WORK, so rows and classes count, not only the network.
    rows = int(memory_module.AUTO_FULL_WORK / (10 * 1500**2))
    assert full_is_cheap(1500, rows, 10) and not full_is_cheap(1500, rows + 1, 10)
    assert not full_is_cheap(1500, rows, 11)
    # Measured problems: breast cancer with hidden (100,) (3,201 parameters)
    # and 4,000 rows of a 10-class network (5,110) get Kronecker factors;
    # digits with hidden (16,) (1,257 rows, 1,210 parameters) the full one.
    assert not full_is_cheap(3201, 398, 1)
    assert not full_is_cheap(5110, 4000, 10, 1.0)
    assert full_is_cheap(1210, 1257, 10)


def test_refits_are_bounded_by_the_work_of_one_gradient():
    refits_are_cheap = memory_module.refits_are_cheap
    rows = int(memory_module.AUTO_GRADIENT_WORK / 1000)
    assert refits_are_cheap(1000, rows) and not refits_are_cheap(1000, rows + 1)
    # 20,000 rows of a 2,201-parameter binary network (measured: the tuned
    # fit did not finish in 10 minutes) and 4,000 rows of a 5,110-parameter
    # one are beyond; digits (16,) and breast cancer (100,) within.
    assert not refits_are_cheap(2201, 20000)
    assert not refits_are_cheap(5110, 4000)
    assert refits_are_cheap(1210, 1257) and refits_are_cheap(3201, 398)


def test_a_mid_sized_network_gets_kron_with_the_tuning_refits(monkeypatch):
    # Its own rows, as below: the shared RNG's draw depends on which tests ran
    # first, and on some draws the evidence stops at its first fit.
    X, y = np.random.RandomState(5).normal(size=(30, 3)), np.arange(30) % 3
    # 31 parameters: one over the factorising budget.
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 31**3 - 1)
    clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    assert (clf.solver_, clf.hessian_structure_) == ("newton-cg", "kron")
    assert len(clf.alpha_history_) > 1  # MacKay's refits
    assert "cv_log_loss" in clf.prior_precision_scale_path_
    assert clf.tol_ == 1e-6
    # The other way round: a cheap full posterior, but a gradient one over
    # its budget: full posterior, L-BFGS to 1e-4, alpha by the validation
    # walk (3-4 fits) instead of MacKay's refits.
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 31**3)
    monkeypatch.setattr(memory_module, "AUTO_GRADIENT_WORK", 30 * 31 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    assert (clf.solver_, clf.hessian_structure_, clf.tol_) == ("lbfgs", "full", 1e-4)
    assert clf.effective_n_parameters_ is None  # no MacKay run
    assert 2 <= len(clf.alpha_history_) <= ALPHA_WALK_MAX_FITS
    assert "validation_log_loss" in clf.prior_precision_scale_path_


def test_a_large_network_gets_kron_lbfgs_and_the_validation_walk(monkeypatch):
    # Its own rows: on some draws of the shared RNG (other tests run first or
    # not) the evidence stops at its first fit, and the small case fails.
    X, y = np.random.RandomState(5).normal(size=(30, 3)), np.arange(30) % 3
    clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    small = (clf.solver_, clf.hessian_structure_, len(clf.alpha_history_) > 1)
    assert small == ("newton-cg", "full", True)
    assert clf.tol_ == 1e-6 and clf.gradient_history_[-1] <= 1e-6  # tol="auto"
    # 30 rows x 31 parameters: one fewer is over the gradient's limit (no
    # refits), and 31^3 over the factorising one (no full posterior).
    monkeypatch.setattr(memory_module, "AUTO_GRADIENT_WORK", 30 * 31 - 1)
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 31**3 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    assert (clf.solver_, clf.hessian_structure_) == ("lbfgs", "kron")
    # alpha by the validation walk: decades from 1, a handful of fits.
    tried = np.concatenate(clf.alpha_history_)
    assert 2 <= tried.size <= ALPHA_WALK_MAX_FITS and clf.alpha_ in tried
    decades = np.log10(tried)
    assert tried[0] == 1.0 and np.allclose(decades, np.round(decades))
    assert len(set(np.round(decades))) == tried.size
    # The scale is chosen on held-out rows the network is not fitted on.
    assert "validation_log_loss" in clf.prior_precision_scale_path_
    # tol="auto" is MLPClassifier's 1e-4 there (1e-6 would run on).
    assert clf.tol_ == 1e-4
    explicit = dict(solver="lbfgs", hessian_structure="kron", random_state=0)
    for tol, same in [(1e-4, True), (1e-6, False)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            other = LaplaceMLPClassifier((4,), tol=tol, **explicit).fit(X, y)
        assert np.array_equal(other.coefs_[0], clf.coefs_[0]) == same
    # An explicit choice is kept whatever the size.
    clf = LaplaceMLPClassifier(
        (4,), solver="newton-cg", hessian_structure="full", random_state=0
    ).fit(X, y)
    assert (clf.solver_, clf.hessian_structure_) == ("newton-cg", "full")


def test_the_whole_fit_limit_counts_every_dense_matrix(monkeypatch):
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    n_params = 21  # (3 + 1) * 4 + 5
    # Room for three 21 x 21 matrices: Newton (five) is refused, the full
    # posterior with L-BFGS and a fixed scale (four) too, kron is not.
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", 3 * 8 * n_params**2)
    with pytest.raises(MemoryLimitError, match="at once"):
        LaplaceMLPClassifier((4,), solver="newton", hessian_structure="full").fit(X, y)
    with pytest.raises(MemoryLimitError, match="FIT_MEMORY_LIMIT"):
        LaplaceMLPClassifier(
            (4,), solver="lbfgs", hessian_structure="full", prior_precision_scale=1.0
        ).fit(X, y)
    clf = LaplaceMLPClassifier((4,), solver="lbfgs", hessian_structure="kron")
    assert np.all(np.isfinite(clf.fit(X, y).predict_proba(X)))


def test_monte_carlo_draws_are_checked_for_the_limit_at_predict(tiny_limit):
    # One row's 64 draws of one logit and their temporaries (4 x 64 x 8 bytes)
    # are over the 1 KiB limit: refused at predict, before any draw; the
    # probit predictive of the same model needs no draws.
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    params = dict(link_approx="mc", n_mc_samples=64, prior_precision_scale=1.0)
    clf = LaplaceMLPClassifier((), alpha=1.0, **params).fit(X, y)
    with pytest.raises(MemoryLimitError, match="64 Monte Carlo draws"):
        clf.predict_proba(X)
    assert np.all(np.isfinite(clf.set_params(link_approx="probit").predict_proba(X)))


def test_a_float64_matrix_counts_eight_bytes_per_entry(monkeypatch):
    # The 21 x 21 float64 GGN takes 8 * 21^2 = 3528 bytes: refused one byte
    # below, built at exactly the limit.
    obj, theta = make_problem(hidden=(4,), n_features=3)  # 21 parameters
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * 21**2 - 1)
    with pytest.raises(MemoryLimitError, match="21 x 21"):
        ggn_hessian(obj, theta)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * 21**2)
    assert ggn_hessian(obj, theta).shape == (21, 21)


def test_the_whole_fit_limit_admits_exactly_its_bytes():
    # Dense Newton holds five 16,384 x 16,384 float64 matrices: 5 x 2 GiB =
    # 10 GiB, exactly FIT_MEMORY_LIMIT (and each exactly DENSE_MEMORY_LIMIT),
    # so the documented largest network is allowed; one parameter more is
    # refused (mutant: ``count * one >= FIT_MEMORY_LIMIT`` survived). The
    # check allocates nothing.
    assert memory_module.dense_matrices_at_peak("newton", "full") == 5
    assert 5 * 8 * 16384**2 == memory_module.FIT_MEMORY_LIMIT
    memory_module.check_fit_memory(16384, "newton", "full")
    with pytest.raises(MemoryLimitError, match="16385 x 16385"):
        memory_module.check_fit_memory(16385, "newton", "full")


def test_the_whole_fit_limit_message_names_this_network_and_the_remedy():
    # Mutants of the message's default subject and of its advice survived.
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_fit_memory(20000, "lbfgs", "full")
    message = str(info.value)
    assert "for this network (20000 parameters)" in message
    assert "(no n_params x n_params matrix)" in message
    assert "or a smaller network (fewer hidden units or input features)" in message


def _fit_is_refused_before_the_map(monkeypatch, n_features, hidden, **params):
    """Fit 8 rows; return the MemoryLimitError's message, or None if it started."""

    forbid_the_map_solver(monkeypatch)
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(8, n_features)), np.arange(8) % 2
    clf = LaplaceMLPClassifier(hidden, hessian_structure="full", **params)
    try:
        clf.fit(X, y)
    except MemoryLimitError as error:
        return str(error)
    except AssertionError as error:
        assert "let the fit start" in str(error)
        return None
    raise AssertionError("neither refused nor started")


@pytest.mark.parametrize(
    "params",
    [
        dict(alpha="evidence", prior_precision_scale="cv"),
        dict(),  # "auto": both tuned, as refits are cheap for 8 rows
    ],
    ids=["explicit", "auto"],
)
def test_the_fit_limit_counts_the_cv_and_evidence_held_matrices(monkeypatch, params):
    # 200 features, hidden (60,), 2 classes: 201 * 60 + 61 = 12,121
    # parameters, one 12,121 x 12,121 matrix 1.09 GiB. The full posterior,
    # the evidence runs' held posteriors and the cross-validation's
    # full-data and previous-fold posteriors are over FIT_MEMORY_LIMIT
    # together, not without the cross-validation's two (mutants passing no
    # or the wrong prior scale to check_fit_memory) nor without the
    # evidence's (passing no alpha): those fits were let start.
    n, one = 12121, 8 * 12121**2
    count = memory_module.dense_matrices_at_peak("newton-cg", "full", "cv", "evidence")
    no_cv = memory_module.dense_matrices_at_peak("newton-cg", "full", 1.0, "evidence")
    no_evidence = memory_module.dense_matrices_at_peak("newton-cg", "full", "cv", 1.0)
    limit = memory_module.FIT_MEMORY_LIMIT
    assert count * one > limit >= max(no_cv, no_evidence) * one  # the premise
    message = _fit_is_refused_before_the_map(monkeypatch, 200, (60,), **params)
    assert re.search(f"{n} x {n}.*about {count} at once", message)
    # With a fixed scale, or the plug-in predictive (which refits no folds:
    # its loss is the same at every scale; it had been counted as "cv"),
    # the same network fits the limit.
    for changed in (dict(prior_precision_scale=1.0), dict(link_approx="map")):
        fits = dict(params, alpha="evidence", **changed)
        assert _fit_is_refused_before_the_map(monkeypatch, 200, (60,), **fits) is None


@pytest.mark.parametrize("scale", [1.0, "evidence"])
def test_the_fit_limit_counts_the_run_made_where_every_evidence_run_collapsed(
    monkeypatch, scale
):
    # Where every run of MacKay's updates collapsed, one more runs from
    # HELD_OUT_START whatever the scale, and every run's kept posterior is
    # held: 4 + 5 matrices of 12,525 x 12,525 (1.17 GiB each, 200 features,
    # hidden (62,)) are over FIT_MEMORY_LIMIT, where the count without that
    # run (4 + 4) would let the fit start.
    n, one = 12525, 8 * 12525**2
    count = memory_module.dense_matrices_at_peak("newton-cg", "full", scale, "evidence")
    held = memory_module.POSTERIOR_HELD_DENSE_MATRICES["full"]
    assert count * one > memory_module.FIT_MEMORY_LIMIT >= (count - held) * one
    params = dict(alpha="evidence", prior_precision_scale=scale)
    message = _fit_is_refused_before_the_map(monkeypatch, 200, (62,), **params)
    assert re.search(f"{n} x {n}.*about {count} at once", message)


def _binary_network(rng, dtype):
    X = rng.normal(size=(12, 3)).astype(dtype)
    y = np.arange(12) % 2
    coefs = [
        rng.normal(size=(3, 4)).astype(dtype),
        rng.normal(size=(4, 1)).astype(dtype),
    ]
    intercepts = [rng.normal(size=4).astype(dtype), rng.normal(size=1).astype(dtype)]
    return coefs, intercepts, X, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_ggn_summed_over_row_chunks_is_the_one_chunk_ggn(dtype):
    # One logit: the GGN is a BLAS syrk per row chunk into one buffer
    # (GramAccumulator). With a one-byte budget every row is its own chunk;
    # the sum must still be over all of them (mutant: ``syrk(..., c=None)``,
    # keeping the last chunk only, survived: the chunked tests used 3
    # classes, whose GGN is built from Kronecker blocks). Checked against
    # -(J' Lambda J + A) computed here.
    coefs, intercepts, X, y = _binary_network(np.random.RandomState(0), dtype)
    kw = dict(activation="tanh", alpha=0.5, bias_prior_precision=0.1, kind="ggn")
    one_chunk = log_posterior_hessian(coefs, intercepts, X, y, **kw)
    per_row = log_posterior_hessian(coefs, intercepts, X, y, memory_budget=1, **kw)
    assert one_chunk.dtype == per_row.dtype == dtype
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(per_row, one_chunk, rtol=rtol, atol=rtol)
    # The reference, in float64: J_n by differences of the logit.
    W0, W1 = (c.astype(np.float64) for c in coefs)
    b0, b1 = (b.astype(np.float64) for b in intercepts)
    X64 = X.astype(np.float64)
    theta = np.concatenate([W0.ravel(), b0, W1.ravel(), b1])

    def logits(t):
        w0, c0 = t[:12].reshape(3, 4), t[12:16]
        w1, c1 = t[16:20].reshape(4, 1), t[20:21]
        return (np.tanh(X64 @ w0 + c0) @ w1 + c1)[:, 0]

    J = numerical_jacobian(logits, theta)
    p = 1.0 / (1.0 + np.exp(-logits(theta)))
    A = np.r_[np.full(12, 0.5), np.full(4, 0.1), np.full(4, 0.5), 0.1]
    expected = -(J.T @ (J * (p * (1 - p))[:, None]) + np.diag(A))
    tol = 1e-7 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(per_row, expected, rtol=tol, atol=tol)


def test_float32_ggn_under_another_namespace_stays_float32():
    # "float32 in, float32 out" (tests/test_functional.py checks it on NumPy)
    # also where add_to_diagonal builds the diagonal matrix, i.e. any
    # namespace but NumPy's and CuPy's (mutant: ``xp.eye(n)`` without the
    # dtype, a float64 identity that promotes the result, survived).
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.RandomState(0)
    for n_classes in (2, 3):
        X = rng.normal(size=(10, 3)).astype(np.float32)
        y = np.arange(10) % n_classes
        n_out = 1 if n_classes == 2 else n_classes
        coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, n_out))]
        intercepts = [rng.normal(size=4), rng.normal(size=n_out)]
        coefs = [c.astype(np.float32) for c in coefs]
        intercepts = [b.astype(np.float32) for b in intercepts]
        strict = lambda arrays: [xps.asarray(a) for a in arrays]  # noqa: E731
        H = log_posterior_hessian(
            strict(coefs), strict(intercepts), xps.asarray(X), y, kind="ggn", alpha=0.5
        )
        assert H.dtype == xps.float32
        reference = log_posterior_hessian(
            coefs, intercepts, X, y, kind="ggn", alpha=0.5
        )
        np.testing.assert_allclose(np.asarray(H), reference, rtol=1e-5, atol=1e-5)


def test_the_auto_rules_count_rows_not_their_weights():
    # The cheap-refit and full-posterior rules are about cost, which rows
    # set and weights do not: weights of 1e5 on every row (the data weighed
    # 1e5 times against the prior) resolve every "auto" setting alike.
    X, y = RNG.normal(size=(100, 3)), np.arange(100) % 2
    settings = []
    for weight in (1.0, 1e5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the heavy weights' own warnings
            clf = LaplaceMLPClassifier((4,), random_state=0).fit(
                X, y, sample_weight=np.full(100, weight)
            )
        settings.append(
            (
                clf.solver_,
                clf.tol_,
                clf.hessian_structure_,
                clf.subset_of_weights_,
                clf.effective_n_parameters_ is None,  # the walk's, not MacKay's
            )
        )
    assert settings[0] == settings[1] == ("newton-cg", 1e-6, "full", "all", False)


def test_a_kronecker_factor_over_the_limit_is_refused_before_any_work(monkeypatch):
    """A hidden layer of 20,000 units under the Kronecker posterior: its
    20,000 x 20,000 output factor (2.98 GiB) had passed the dense check and
    been allocated after the MAP; a review found (10**6,) failing after 50 s
    with NumPy's own MemoryError. ("auto" takes the diagonal there since
    session 34: tests/test_memory.py.)"""
    forbid_the_map_solver(monkeypatch)
    X, y = RNG.normal(size=(20, 30)), np.arange(20) % 2
    clf = LaplaceMLPClassifier((20000,), hessian_structure="kron")
    with pytest.raises(MemoryLimitError) as info:
        clf.fit(X, y)
    message = str(info.value)
    assert "20000 x 20000 float64 Kronecker factor of layer 0" in message
    assert "(30 -> 20000 units" in message and "2.98 GiB" in message
    assert "hessian_structure='diag'" in message
    assert not hasattr(clf, "n_features_in_")


def test_the_kronecker_factors_count_against_the_whole_fit_limit(
    tiny_limit, monkeypatch
):
    # Hidden (16,) on 3 features: factors of 4 x 4 and 16 x 16 (layer 0) and
    # 17 x 17 and 1 x 1 (layer 1). With a 1 KiB limit the 16 x 16 (2 KiB) is
    # the first over it; with one of 3 KiB each fits, and the copies a fit
    # holds (KRON_FACTOR_COPIES at a fixed alpha and scale) of the 4.5 KiB in
    # all are over a whole-fit limit one byte short of them; at it they fit.
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    params = dict(hessian_structure="kron", alpha=1.0, prior_precision_scale=1.0)
    with pytest.raises(MemoryLimitError, match="16 x 16 float64 Kronecker factor"):
        LaplaceMLPClassifier((16,), **params).fit(X, y)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 3 * 1024)
    total = 8 * (4**2 + 16**2 + 17**2 + 1**2)
    copies = memory_module.KRON_FACTOR_COPIES
    assert copies == 8
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", copies * total - 1)
    with pytest.raises(MemoryLimitError, match=f"up to {copies} copies"):
        LaplaceMLPClassifier((16,), **params).fit(X, y)
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", copies * total)
    clf = LaplaceMLPClassifier((16,), **params).fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))
    # The last layer's alone: 17 x 17 and 1 x 1.
    last = dict(params, subset_of_weights="last_layer")
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", copies * 8 * (17**2 + 1))
    LaplaceMLPClassifier((16,), **last).fit(X, y)
    # Each posterior held across a refit or fold keeps two copies more:
    # the evidence's five, and two more with "cv", are over that limit.
    held = memory_module.KRON_HELD_COPIES
    assert held == 2
    for scale, n_held in [(1.0, 5), ("cv", 7)]:
        tuned = dict(params, alpha="evidence", prior_precision_scale=scale)
        assert memory_module.held_posteriors(scale, "evidence") == n_held
        need = (copies + held * n_held) * total
        monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need - 1)
        with pytest.raises(MemoryLimitError, match=f"up to {need // total} copies"):
            LaplaceMLPClassifier((16,), **tuned).fit(X, y)
    # With the plug-in predictive no folds are refit: the evidence's count.
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", (copies + 5 * held) * total)
    tuned = dict(params, alpha="evidence", prior_precision_scale="cv")
    LaplaceMLPClassifier((16,), link_approx="map", **tuned).fit(X, y)


@pytest.mark.parametrize(
    "params",
    [
        dict(alpha=1.0, prior_precision_scale=1.0),
        dict(alpha="evidence", prior_precision_scale=1.0),
        dict(alpha="evidence", prior_precision_scale="cv"),
    ],
    ids=["fixed", "evidence", "evidence+cv"],
)
def test_a_kronecker_fit_holds_at_most_the_copies_counted(params):
    # tracemalloc's peak of a fit whose 301 x 301 input factor dominates
    # (40 rows, 300 features, hidden (2,)), in copies of all the factors, is
    # within the count for its alpha and scale (6 had been counted for all:
    # the evidence's fits held 11.9 to 16.4).
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 300))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    total = 8 * (301**2 + 2**2 + 3**2 + 1**2)
    clf = LaplaceMLPClassifier(
        (2,), hessian_structure="kron", solver="lbfgs", max_iter=30, **params
    )
    scale, alpha = params["prior_precision_scale"], params["alpha"]
    held = memory_module.held_posteriors(scale, alpha)
    counted = memory_module.KRON_FACTOR_COPIES + memory_module.KRON_HELD_COPIES * held
    peak = _peak_of_fit(clf, X, y)
    assert peak <= counted * total
    if isinstance(alpha, str):
        assert peak > 6 * total  # the old count's shortfall


def test_a_parameter_vector_over_the_limit_is_refused_before_initialisation():
    X, y = RNG.normal(size=(10, 30)), np.arange(10) % 2
    with pytest.raises(MemoryLimitError, match="One vector of the 68719476737"):
        LaplaceMLPClassifier((2**31,)).fit(X, y)


@pytest.mark.parametrize("alpha", ["evidence", "evidence_per_layer", 1.0])
def test_a_last_layer_posterior_behind_a_wide_layer_tunes_on_the_diagonal(
    monkeypatch, alpha
):
    # The evidence tunes alpha over every weight: on their Kronecker factors
    # where those are cheap, on their diagonal beyond. Behind 20,000 hidden
    # units (a 3 GiB factor) a diagonal last-layer posterior had been refused
    # for its tuning's factors; it now passes the guard, as with a fixed alpha.
    forbid_the_map_solver(monkeypatch)
    X, y = RNG.normal(size=(20, 30)), np.arange(20) % 2
    clf = LaplaceMLPClassifier(
        (20000,), subset_of_weights="last_layer", hessian_structure="diag", alpha=alpha
    )
    with pytest.raises(AssertionError, match="the MAP solver ran"):
        clf.fit(X, y)


def test_an_evidence_fit_of_every_weight_with_a_diagonal_needs_no_kron_factor(
    monkeypatch,
):
    # Only a last-layer posterior tuned on every weight needs the Kronecker
    # factors: this fit passes the guard and reaches the solver.
    forbid_the_map_solver(monkeypatch)
    X, y = RNG.normal(size=(20, 30)), np.arange(20) % 2
    clf = LaplaceMLPClassifier(
        (20000,), hessian_structure="diag", alpha="evidence", solver="lbfgs"
    )
    with pytest.raises(AssertionError, match="the MAP solver ran"):
        clf.fit(X, y)


def test_a_last_layers_full_posterior_predicts_within_the_budget(monkeypatch):
    # It builds the dense Jacobian of the last layer's parameters, K (h + 1)
    # columns a row: its chunks must be sized for that J, as a full
    # posterior's of every weight are (they were sized for the factors
    # alone, K times smaller: 30 classes had taken 3.5 GB for 1,253 rows).
    # Here the J of all rows is 185 MiB; with a 1 MiB budget the peak was
    # 10.2 MiB and is 4.1 MiB, most of it the (600, 20, 20) covariances.
    X = RNG.normal(size=(600, 10))
    y = np.arange(600) % 20
    clf = LaplaceMLPClassifier(
        (100,),
        alpha=1.0,
        prior_precision_scale=1.0,
        subset_of_weights="last_layer",
        hessian_structure="full",
        max_iter=5,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    whole = clf.predict_proba(X)
    budget = 1 << 20
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
    clf.predict_proba(X[:3])
    assert traced_peak(lambda: clf.predict_proba(X)) < 6 * budget
    np.testing.assert_allclose(clf.predict_proba(X), whole, rtol=1e-10)


def test_plug_in_predictions_are_row_chunked_within_the_budget(monkeypatch):
    # The plug-in's forward pass holds each layer's activations: in row
    # chunks whose activations fit the budget, as the Laplace predictive's
    # Jacobians are (one pass over every row had peaked at 2.4 GB for
    # 200,000 rows of a (500,) network). The same logits, to round-off.
    X = RNG.normal(size=(20000, 8))
    y = (X[:, 0] > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (100,),
        alpha=1.0,
        prior_precision_scale=1.0,
        hessian_structure="diag",
        link_approx="map",
        max_iter=5,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:300], y[:300])
    whole = clf.decision_function(X)
    budget = 1 << 20
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
    # The activations of every row: 16 MB; the logits themselves 0.16 MB.
    # Clean: 1.6 budgets; chunks twice the budget peak at 3.0.
    assert traced_peak(lambda: clf.decision_function(X)) < 2 * budget
    np.testing.assert_allclose(clf.decision_function(X), whole, rtol=1e-12, atol=1e-15)
