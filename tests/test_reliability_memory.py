"""Reliability, memory: refuse a dense matrix over the limit before allocating it.

The limits live in one module, ``sklaplace._memory`` (``DENSE_MEMORY_LIMIT``
for one array, ``FIT_MEMORY_LIMIT`` for a whole fit's dense matrices); the
tests lower it, or use a network whose ``n_params x n_params`` matrix would be
over 3 GiB, and check with ``tracemalloc`` that nothing large was allocated.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import sklaplace._fitting as fitting_module
import sklaplace._memory as memory_module
import sklaplace._predictive as predictive_module
from sklaplace import LaplaceMLPClassifier, log_posterior_hessian
from sklaplace._curvature import exact_hessian, ggn_diagonal, ggn_hessian
from sklaplace.exceptions import MemoryLimitError
from tests.conftest import make_problem

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
    def heavy(*args, **kwargs):
        raise AssertionError("the guard let the fit start")

    # A first fit imports what scikit-learn loads lazily, outside the measurement.
    LaplaceMLPClassifier((), prior_precision_scale=1.0).fit(X_WIDE[:, :2], Y_WIDE)
    monkeypatch.setattr(fitting_module, "minimize_map", heavy)
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


@pytest.mark.parametrize("link", ["mc", "probit", "map"])
def test_row_chunked_predictions_equal_one_block(monkeypatch, link):
    X, y = RNG.normal(size=(30, 3)), np.arange(30) % 3
    clf = LaplaceMLPClassifier((2,), link_approx=link, n_mc_samples=64).fit(X, y)
    whole = clf.predict_proba(X)
    # One row per chunk, both for the Jacobians and for the predictive.
    monkeypatch.setattr(predictive_module, "DEFAULT_MEMORY_BUDGET", 1)
    np.testing.assert_allclose(clf.predict_proba(X), whole, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "solver, structure, scale, alpha",
    [
        ("newton", "full", "cv", 1.0),
        ("lbfgs", "full", "evidence", "evidence"),
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:6], y[:6])  # imports and caches outside the measurement
        tracemalloc.start()
        try:
            clf.fit(X, y)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak <= (count + 0.5) * one
    assert peak >= 0.55 * count * one  # the count is not a loose bound


def test_auto_structure_is_full_while_it_fits_the_budget(monkeypatch):
    X, y = RNG.normal(size=(30, 3)), np.arange(30) % 3
    params = dict(solver="lbfgs", prior_precision_scale=1.0, random_state=0)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)
    assert clf.hessian_structure_ == "full"
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", 8 * 31**2)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)  # 31 parameters
    assert clf.hessian_structure_ == "kron"
    assert type(clf.posterior_).__name__ == "KronPosterior"


def test_small_is_bounded_by_bytes_and_by_the_work_of_building_the_posterior():
    is_small = memory_module.is_small
    # Bytes: six dense matrices under "cv" (four otherwise) within 1 GiB.
    budget = memory_module.AUTO_FULL_BUDGET
    n_cv = int((budget / 48) ** 0.5)  # 4,729
    n_fixed = int((budget / 32) ** 0.5)  # 5,792
    assert is_small(n_cv, 1, 1, "cv") and not is_small(n_cv + 1, 1, 1, "cv")
    assert is_small(n_fixed, 1, 1, 1.0) and not is_small(n_fixed + 1, 1, 1, 1.0)
    # Work of the posterior: rows x logits x n_params^2 multiply-adds within
    # AUTO_FULL_WORK, so rows and classes count, not only the network.
    rows = int(memory_module.AUTO_FULL_WORK / (10 * 3000**2))
    assert rows * 3000 <= memory_module.AUTO_GRADIENT_WORK  # not the binding one
    assert is_small(3000, rows, 10) and not is_small(3000, rows + 1, 10)
    assert not is_small(3000, rows, 11)
    # Work of a gradient: rows x n_params within AUTO_GRADIENT_WORK (binding
    # for one logit: 5,000 x 1,000 is 5e9 for the posterior, well within).
    rows = int(memory_module.AUTO_GRADIENT_WORK / 1000)
    assert rows * 1000**2 <= memory_module.AUTO_FULL_WORK
    assert is_small(1000, rows, 1) and not is_small(1000, rows + 1, 1)
    # Measured problems: 4,000 rows, 10 classes, 5,110 parameters (issue 15)
    # and 20,000 rows of a 2,201-parameter binary network are large; digits
    # with hidden (16,) (1,257 rows, 1,210 parameters) is small.
    assert not is_small(5110, 4000, 10, 1.0)
    assert not is_small(2201, 20000, 1)
    assert is_small(1210, 1257, 10)


def test_a_large_network_gets_kron_lbfgs_and_no_refits(monkeypatch):
    X, y = RNG.normal(size=(30, 3)), np.arange(30) % 3
    clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    small = (clf.solver_, clf.hessian_structure_, len(clf.alpha_history_) > 1)
    assert small == ("newton-cg", "full", True)
    assert clf.tol_ == 1e-6 and clf.gradient_history_[-1] <= 1e-6  # tol="auto"
    # 30 rows x 3 logits x 31^2 multiply-adds: one fewer is over the limit.
    monkeypatch.setattr(memory_module, "AUTO_FULL_WORK", 30 * 3 * 31**2 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    assert (clf.solver_, clf.hessian_structure_) == ("lbfgs", "kron")
    assert clf.alpha_ == 1.0 and clf.alpha_history_ == []  # no refits
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
