"""solver="newton-cg": truncated Newton on exact Hessian-vector products."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import sklaplace._curvature._products
import sklaplace._newton_cg
import sklaplace._objective
import sklaplace._preconditioners
from sklaplace import LaplaceMLPClassifier, prune
from sklaplace._backend import to_numpy
from sklaplace._curvature import (
    exact_hessian,
    fisher_diagonal,
    ggn_diagonal,
    ggn_hessian,
    hessp_operator,
)
from sklaplace._curvature._products import (
    SINGLE_PRECISION_LIMIT,
    _single_precision_product,
    _to_single,
)
from sklaplace._newton_cg import NewtonCGSolver, steihaug_cg
from sklaplace._objective import NegLogPosterior
from sklaplace._preconditioners import DiagonalPreconditioner as D
from sklaplace._solvers import minimize_map
from sklaplace.exceptions import FeatureScaleWarning
from tests.conftest import count_hessian_products, make_problem


def _scaled(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _theta(clf):
    return clf._layout().pack(np, clf.coefs_, clf.intercepts_)


def _replaced(obj, **changes):
    """``obj`` (NumPy) with some of its data, prior or ``fixed`` replaced."""
    fields = dict(
        X=obj.X,
        Y=obj.Y,
        sample_weight=obj.sample_weight,
        prior_precision=obj.prior_precision,
        fixed=obj.fixed,
    )
    fields.update(changes)
    return NegLogPosterior(np, obj.layout, obj.activation, obj.likelihood, **fields)


def _row_gradients(obj, theta):
    """Yield ``(s_n, g_n)``: each row's weight and likelihood gradient, from a
    one-row objective with unit weight and no prior."""
    for n in range(obj.n_samples):
        row = _replaced(
            obj,
            X=obj.X[n : n + 1],
            Y=obj.Y[n : n + 1],
            sample_weight=np.ones(1),
            prior_precision=np.zeros_like(obj.prior_precision),
        )
        yield obj.sample_weight[n], row.loss_gradient(theta)[1]


def _row_fisher(obj, theta):
    """The prior plus ``sum_n s_n g_n**2`` (:func:`_row_gradients`)."""
    fisher = obj.prior_precision.copy()
    for s_n, gradient in _row_gradients(obj, theta):
        fisher += s_n * gradient**2
    return fisher


@pytest.mark.parametrize("kind", ["exact", "ggn"])
@pytest.mark.parametrize(
    "n_classes, bias_precision, masked",
    [(2, 0.2, False), (3, 0.0, False), (3, 0.2, True)],
    ids=["binary", "flat-softmax", "masked"],
)
def test_hessp_operator_equals_the_constrained_dense_matrix(
    kind, n_classes, bias_precision, masked
):
    obj, theta = make_problem("tanh", n_classes, (4, 3), weighted=True)
    prior = obj.prior_precision.copy()
    prior[obj.layout.bias_mask()] = bias_precision
    fixed = None
    if masked:
        fixed = np.zeros(obj.layout.n_params, dtype=bool)
        fixed[[0, 5, 17]] = True
        theta[fixed] = 0.0
    obj = _replaced(obj, prior_precision=prior, fixed=fixed)
    assert (obj.flat_shifts() is not None) == (bias_precision == 0)
    dense = {"exact": exact_hessian, "ggn": ggn_hessian}[kind]
    H = obj.constrained_curvature(dense(obj, theta))
    hessp = hessp_operator(obj, theta, kind)
    V = np.random.RandomState(1).normal(size=(obj.layout.n_params, 3))
    for v in V.T:
        np.testing.assert_allclose(hessp(v), H @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fisher_diagonal_is_the_weighted_sum_of_squared_row_gradients(n_classes):
    # Reference: each row's likelihood gradient from a one-row objective with
    # unit weight and no prior, squared and weighted; rows of weight 0 add
    # nothing (the preconditioner's 1/s_n must not divide by zero there).
    obj, theta = make_problem("tanh", n_classes, (4, 3), weighted=True)
    weight = obj.sample_weight.copy()
    weight[[2, 7]] = 0.0
    obj = _replaced(obj, sample_weight=weight)
    expected = _row_fisher(obj, theta)
    np.testing.assert_allclose(fisher_diagonal(obj, theta), expected, rtol=1e-12)
    # The solver's path: the forward pass and the gradient's deltas reused.
    fwd = obj.forward(theta)
    deltas, _ = obj.residual_backprop(theta, fwd)
    np.testing.assert_allclose(
        fisher_diagonal(obj, theta, fwd, deltas), expected, rtol=1e-12
    )
    # Not the GGN diagonal (a plausible mix-up), which differs here.
    assert not np.allclose(ggn_diagonal(obj, theta), expected, rtol=1e-3)


def test_steihaug_cg_solves_inside_and_stops_on_the_boundary():
    rng = np.random.RandomState(0)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    g = rng.normal(size=6)
    m = rng.uniform(0.5, 2.0, 6)
    # Positive definite, large radius: the Newton step.
    H = Q @ np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) @ Q.T
    step, model, status, n = steihaug_cg(np, lambda v: H @ v, g, D(m), 1e6, 1e-12, 50)
    assert status == "converged" and n <= 6
    np.testing.assert_allclose(step, np.linalg.solve(H, -g), rtol=1e-9)
    np.testing.assert_allclose(model, g @ step + 0.5 * step @ H @ step)
    # Indefinite: the step ends on the boundary ||s||_M = radius and the
    # model still decreases.
    H = Q @ np.diag([-1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) @ Q.T
    step, model, status, _ = steihaug_cg(np, lambda v: H @ v, g, D(m), 0.7, 1e-12, 50)
    assert status in ("negative curvature", "boundary")
    np.testing.assert_allclose(np.sqrt(np.sum(m * step * step)), 0.7)
    # Along a direction of negative curvature CG exits on the boundary
    # however large the region (Steihaug's exit).
    H = np.diag([-1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    g = np.array([1.0, 0, 0, 0, 0, 0])
    step, model, status, n = steihaug_cg(
        np, lambda v: H @ v, g, D(np.ones(6)), 50.0, 1e-12, 50
    )
    assert status == "negative curvature" and n == 1
    np.testing.assert_allclose(step, [-50.0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(model, g @ step + 0.5 * step @ H @ step)
    assert model < 0


def test_steihaug_cg_with_zero_curvature_goes_to_the_boundary():
    """``d'Hd = 0`` is not positive: Alg. 7.2's exit to the boundary (line 7).

    A zero Hessian (the model is linear): the first direction ``-M^{-1} g``
    is followed to ``||s||_M = radius``, and the status says why.
    """
    g, m = np.array([1.0, -2.0, 0.5]), np.array([2.0, 1.0, 4.0])
    step, model, status, n = steihaug_cg(
        np, lambda v: np.zeros_like(v), g, D(m), 3.0, 1e-12, 10
    )
    assert status == "negative curvature" and n == 1
    direction = -g / m
    expected = 3.0 * direction / np.sqrt(np.sum(m * direction**2))
    np.testing.assert_allclose(step, expected, rtol=1e-12)
    np.testing.assert_allclose(model, g @ step, rtol=1e-12)


def test_backtrack_shortens_the_step_to_the_radius_with_its_quadratic_model():
    """After a rejection the step is ``t s`` with ``||t s||_M = radius`` and
    the model ``g'(t s) + (t s)' H (t s) / 2``, from the dense ``H`` here
    (the solver itself knows ``s'Hs`` only through the last model)."""
    from sklaplace._newton_cg import NewtonCGSolver

    rng = np.random.RandomState(7)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    H = Q @ np.diag([-1.0, 0.5, 2.0, 3.0]) @ Q.T
    g, s, m = rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2.0, 4)
    solver = NewtonCGSolver(SimpleNamespace(xp=np), tol=1e-8, max_iter=10)
    solver.gradient, solver.step, solver.preconditioner = g, s, D(m)
    solver.model = g @ s + 0.5 * s @ H @ s
    solver.radius = 0.3 * np.sqrt(np.sum(m * s * s))
    solver.backtrack()
    np.testing.assert_allclose(solver.step, 0.3 * s, rtol=1e-12)
    short = 0.3 * s
    np.testing.assert_allclose(
        solver.model, g @ short + 0.5 * short @ H @ short, rtol=1e-12
    )


def test_backtrack_of_a_step_that_underflowed_leaves_no_step():
    """A step of ~1e-300 per parameter has ``s'Ms = 0`` in float64: no
    shorter step exists, so none is proposed (the solver then stalls) rather
    than a division by zero (``alpha=1e300``'s fold refits had raised
    ZeroDivisionError)."""
    from sklaplace._newton_cg import NewtonCGSolver

    solver = NewtonCGSolver(SimpleNamespace(xp=np), tol=1e-8, max_iter=10)
    solver.gradient, solver.preconditioner = np.ones(3), D(np.ones(3))
    solver.step, solver.model, solver.radius = np.full(3, -1e-170), -1e-170, 0.0
    solver.backtrack()
    assert solver.step is None
    solver.step = np.full(3, -1e-150)  # s'Ms = 3e-300: shortened as usual
    solver.model, solver.radius = 3 * -1e-150, 1e-150
    solver.backtrack()
    np.testing.assert_allclose(solver.step, np.full(3, -1e-150 / np.sqrt(3)))


def test_a_huge_alpha_gives_the_base_rate_with_warnings_not_an_exception():
    """``alpha=1e300`` lies in the documented range ``[0, inf)``: the fit
    ends at the prior's mode (the class frequencies) with warnings."""
    X, y = make_blobs(60, centers=2, random_state=0)
    X = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier((3,), alpha=1e300, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X[:3]), 0.5, atol=1e-12)


@pytest.fixture(params=["fisher", "kronecker"])
def preconditioner(request, monkeypatch):
    """Run a test with each of Newton-CG's preconditioners (by their bounds)."""
    bound = np.inf if request.param == "fisher" else 0
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_WORK", bound)
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_ROWS_PER_INPUT", 0)
    return request.param


def test_binary_no_hidden_layer_reaches_logistic_regressions_map(preconditioner):
    X, y = _scaled(load_breast_cancer)
    alpha = 0.5
    clf = LaplaceMLPClassifier(
        (),
        alpha=alpha,
        bias_prior_precision=0.0,
        solver="newton-cg",
        tol=1e-12,
        prior_precision_scale=1.0,
    ).fit(X, y)
    lr = LogisticRegression(
        C=1 / alpha, solver="newton-cholesky", tol=1e-14, max_iter=1000
    ).fit(X, y)
    np.testing.assert_allclose(clf.coefs_[0][:, 0], lr.coef_[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(clf.intercepts_[0], lr.intercept_, rtol=0, atol=1e-8)
    assert clf.solver_ == "newton-cg" and clf.n_hessian_products_ > 0


def test_multiclass_no_hidden_layer_reaches_logistic_regressions_map(preconditioner):
    X, y = _scaled(load_iris)
    alpha = 0.3
    clf = LaplaceMLPClassifier(
        (),
        alpha=alpha,
        bias_prior_precision=0.0,
        solver="newton-cg",
        tol=1e-12,
        prior_precision_scale=1.0,
    ).fit(X, y)
    lr = LogisticRegression(
        C=1 / alpha, solver="newton-cholesky", tol=1e-14, max_iter=1000
    ).fit(X, y)
    np.testing.assert_allclose(clf.coefs_[0], lr.coef_.T, rtol=0, atol=1e-8)
    # Unpenalised softmax intercepts are defined up to a common shift.
    b, b_lr = clf.intercepts_[0], lr.intercept_
    np.testing.assert_allclose(b - b.mean(), b_lr - b_lr.mean(), rtol=0, atol=1e-8)


def test_a_start_with_negative_curvature_still_converges(preconditioner):
    obj, _ = make_problem("tanh", 3, (6,), n_samples=60, n_features=4, seed=3)
    theta = np.random.RandomState(7).normal(scale=2.0, size=obj.layout.n_params)
    eigenvalues = np.linalg.eigvalsh(
        obj.constrained_curvature(exact_hessian(obj, theta))
    )
    assert eigenvalues[0] < 0  # the exact Hessian is indefinite at the start
    result = minimize_map(obj, theta, "newton-cg", 1e-10, 200)
    assert result.converged and result.gradient_norm <= 1e-10
    assert result.loss < float(obj.loss(theta))
    H = obj.constrained_curvature(exact_hessian(obj, result.theta))
    assert np.linalg.eigvalsh(H)[0] > 0  # a strict local minimum


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-10])
def test_tol_is_honoured(tol, preconditioner):
    obj, theta = make_problem("softplus", 2, (5,), n_samples=80, n_features=4)
    result = minimize_map(obj, theta, "newton-cg", tol, 200)
    assert result.converged
    assert result.gradient_norm <= tol
    assert result.gradient_history[-1] == result.gradient_norm
    assert len(result.gradient_history) == result.n_iter + 1
    # It stops at the first iterate below tol, not later.
    assert all(g > tol for g in result.gradient_history[:-1])


def test_max_iter_raises_the_convergence_warning():
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier(
        (5,), alpha=1.0, solver="newton-cg", max_iter=2, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        clf.fit(X, y)
    assert clf.n_iter_ >= 2


def test_integer_weights_equal_repeated_rows(preconditioner):
    X, y = _scaled(load_iris)
    rng = np.random.RandomState(0)
    weights = rng.randint(0, 4, size=X.shape[0])
    params = dict(
        hidden_layer_sizes=(4,),
        alpha=1.0,
        solver="newton-cg",
        tol=1e-10,
        prior_precision_scale=1.0,
        random_state=0,
    )
    weighted = LaplaceMLPClassifier(**params).fit(X, y, sample_weight=weights)
    repeated = LaplaceMLPClassifier(**params).fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights)
    )
    np.testing.assert_allclose(_theta(weighted), _theta(repeated), atol=1e-9)
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-9
    )
    assert weighted.n_iter_ == repeated.n_iter_


def test_warm_start_resumes_from_the_previous_map():
    X, y = _scaled(load_breast_cancer)
    params = dict(
        alpha=1.0, solver="newton-cg", prior_precision_scale=1.0, random_state=0
    )
    clf = LaplaceMLPClassifier((6,), warm_start=True, **params).fit(X, y)
    cold_iterations = clf.n_iter_
    clf.fit(X, y)  # already at the MAP
    assert clf.n_iter_ == 0
    # A small change of the data: a few steps from the previous MAP.
    weights = np.ones(X.shape[0])
    weights[:10] = 2.0
    clf.fit(X, y, sample_weight=weights)
    assert 0 < clf.n_iter_ < cold_iterations
    assert clf.gradient_history_[-1] <= clf.tol_


def test_masked_refit_keeps_pruned_weights_at_zero():
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier(
        (5,), alpha=1.0, solver="newton-cg", prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    pruned = prune(clf, 0.5, method="magnitude")
    mask = pruned.pruned_mask_.copy()
    before = _theta(pruned)
    refit = pruned.set_params(warm_start=True, tol=1e-10).fit(X, y)
    theta = _theta(refit)
    assert np.array_equal(refit.pruned_mask_, mask)
    assert np.all(theta[mask] == 0.0)
    assert np.max(np.abs(theta - before)) > 1e-3  # the kept weights re-trained
    assert refit.gradient_history_[-1] <= 1e-10
    assert refit.n_hessian_products_ > 0


def test_default_solver_resolves_to_newton_cg():
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    )
    assert clf.solver == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.solver_ == "newton-cg"
    assert clf.n_hessian_products_ > 0
    lbfgs = clf.set_params(solver="lbfgs").fit(X, y)
    assert lbfgs.solver_ == "lbfgs" and lbfgs.n_hessian_products_ == 0


def test_newton_cg_under_array_api_strict_matches_numpy(preconditioner):
    xps = pytest.importorskip("array_api_strict")
    obj, theta = make_problem("tanh", 3, (4,), weighted=True, n_samples=40)
    sobj, stheta = make_problem("tanh", 3, (4,), weighted=True, n_samples=40, xp=xps)
    result = minimize_map(obj, theta, "newton-cg", 1e-9, 100)
    strict = minimize_map(sobj, stheta, "newton-cg", 1e-9, 100)
    assert strict.converged and strict.n_iter == result.n_iter
    assert strict.n_hessian_products == result.n_hessian_products
    np.testing.assert_allclose(
        np.asarray(to_numpy(strict.theta)), result.theta, rtol=1e-8, atol=1e-10
    )


def test_steihaug_cg_stops_at_max_iter_on_the_krylov_minimiser():
    """After k CG steps the step minimises the model on the k-th Krylov space.

    Reference: preconditioned CG's k-th iterate minimises ``g's + s'Hs/2``
    over ``span{z, (M^-1 H) z, ...}`` with ``z = M^-1 g``, solved here as a
    k x k system; one step more or fewer moves the step by O(1).
    """
    rng = np.random.RandomState(4)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    H = Q @ np.diag([0.5, 1.0, 2.0, 4.0, 8.0, 16.0]) @ Q.T
    g, m = rng.normal(size=6), rng.uniform(0.5, 2.0, 6)
    for k in (1, 2, 3):
        step, model, status, n = steihaug_cg(
            np, lambda v: H @ v, g, D(m), 1e6, 1e-14, k
        )
        assert status == "max_iter" and n == k
        basis = [g / m]
        for _ in range(k - 1):
            basis.append(H @ basis[-1] / m)
        K = np.stack(basis, axis=1)
        expected = K @ np.linalg.solve(K.T @ H @ K, -K.T @ g)
        np.testing.assert_allclose(step, expected, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(model, g @ step + 0.5 * step @ H @ step)


def _region_solver(radius, step_norm):
    """A Newton-CG solver whose last step has M-norm ``step_norm``."""
    from sklaplace._newton_cg import NewtonCGSolver

    solver = NewtonCGSolver(SimpleNamespace(xp=np), tol=1e-8, max_iter=10)
    solver.preconditioner = D(np.array([4.0, 1.0]))
    # (0.2, 0.3) has M-norm sqrt(4 * 0.04 + 0.09) = 0.5 (its 2-norm is 0.36).
    solver.step = np.array([0.2, 0.3]) * step_norm / 0.5
    solver.radius = radius
    return solver


@pytest.mark.parametrize(
    "rho, radius, step_norm, expected",
    [
        (0.9, 4.0, 4.0, 8.0),  # good step on the boundary: doubled
        (0.9, 4.0, 2.0, 4.0),  # good step inside the region: kept
        (0.9, 0.25, 0.25, 0.5),  # on the boundary, radius below 1: doubled
        (0.9, 0.25, 0.2, 0.25),  # inside, radius below 1: kept
        (0.5, 4.0, 4.0, 4.0),  # fair step: kept
        (0.1, 4.0, 2.0, 0.5),  # poor step: a quarter of the step's norm
        (0.25, 4.0, 2.0, 4.0),  # exactly 1/4: kept (shrunk only below 1/4)
        (0.75, 4.0, 4.0, 4.0),  # exactly 3/4 on the boundary: kept (grown above)
        (-1.0, 0.25, 0.25, 0.0625),
    ],
)
def test_trust_region_radius_update(rho, radius, step_norm, expected):
    """The radius follows Nocedal & Wright's Alg. 4.1 in the M-norm."""
    solver = _region_solver(radius, step_norm)
    solver.update_region(rho)
    assert solver.radius == pytest.approx(expected, rel=1e-12)


def test_a_stalled_iteration_warns_of_no_progress():
    """With an unreachable tol the iterates stall at round-off of the minimum.

    Newton-CG reaches the MAP to round-off (scaled gradient ~1e-17), then no
    step changes ``theta`` or lowers the loss: it must stop there and say so,
    not run on to ``max_iter``.
    """
    obj, theta = make_problem("softplus", 2, (5,), n_samples=40)
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration"):
        result = minimize_map(obj, theta, "newton-cg", 1e-300, 200)
    assert not result.converged and result.n_iter < 200
    assert result.gradient_norm < 1e-12  # at the minimum, to round-off
    np.testing.assert_allclose(
        result.gradient_norm,
        np.max(np.abs(obj.loss_gradient(result.theta)[1])) / obj.gradient_scale,
    )


def test_verbose_prints_one_line_per_iteration(capsys):
    """``verbose`` reports each iteration's number, loss and scaled gradient."""
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    result = minimize_map(obj, theta, "newton-cg", 1e-8, 100, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == result.n_iter > 1
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"Newton-CG iter {i}: loss ")
    # The last line reports the returned iterate (its own, recomputed loss).
    loss = float(lines[-1].split("loss ")[1].split(",")[0])
    np.testing.assert_allclose(loss, float(obj.loss(result.theta)), rtol=1e-9)
    minimize_map(obj, theta, "newton-cg", 1e-8, 100)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("single", [False, True], ids=["double", "single"])
def test_hessian_products_are_counted(monkeypatch, single):
    """``n_hessian_products`` is the number of calls to the Hessian operator,
    the double-precision recheck of a doubtful single-precision step's model
    included."""
    from sklaplace import _newton_cg

    rechecks, original_check = [], _newton_cg.NewtonCGSolver._model_is_off

    def counted_check(self):
        rechecks.append(1)
        return original_check(self)

    calls = count_hessian_products(monkeypatch)
    monkeypatch.setattr(_newton_cg.NewtonCGSolver, "_model_is_off", counted_check)
    if single:  # single precision at any size, each recheck finding it off
        monkeypatch.setattr(_newton_cg, "SINGLE_PRECISION_WORK", 0)
        monkeypatch.setattr(_newton_cg, "MODEL_CHECK_RTOL", 0.0)
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    result = minimize_map(obj, theta, "newton-cg", 1e-10, 100)
    assert result.converged and result.n_hessian_products == len(calls) > 0
    assert (len(rechecks) > 0) == single


def _row_unit_floor(obj, theta, fraction):
    """``fisher_diagonal``'s ``unit_floor`` term from one-row gradients alone.

    A row's gradient on unit ``k``'s bias is ``dl_n / dz_nk``, and on the
    weight from input ``j`` it is ``a_nj dl_n / dz_nk``: the inputs are read
    off as their ratio, at the unit with the largest bias gradient.
    """
    total = float(np.sum(obj.sample_weight))
    zeros = np.zeros_like(obj.prior_precision)
    coefs, _ = obj.layout.split(np, zeros)
    inputs = [np.zeros(c.shape[0] + 1) for c in coefs]  # sum_n s_n a_nj^2, then 1
    units = [np.zeros(c.shape[1]) for c in coefs]  # sum_n s_n (dl_n / dz_nk)^2
    for s_n, gradient in _row_gradients(obj, theta):
        weights, biases = obj.layout.split(np, gradient)
        for layer, (dW, db) in enumerate(zip(weights, biases)):
            k = np.argmax(np.abs(db))
            a = dW[:, k] / db[k]
            inputs[layer] += s_n * np.r_[a**2, 1.0]
            units[layer] += s_n * db**2
    floors = [
        fraction * np.mean(g) / total * np.outer(A, np.ones_like(g))
        for A, g in zip(inputs, units)
    ]
    return obj.layout.pack(np, [f[:-1] for f in floors], [f[-1] for f in floors])


def test_preconditioner_is_the_fisher_diagonal_plus_unit_floor_and_prior():
    """``m`` is the Fisher diagonal, the unit floor and the prior over ``L(theta_0)``.

    The references sum each row's squared likelihood gradient (one-row
    objectives, as above). A bias under a flat prior whose unit feeds nothing
    has no Fisher curvature: the unit floor gives it its layer's (a fixed
    1e-10 of the largest entry, or the Fisher alone, would be wrong).
    """
    from sklaplace._newton_cg import NewtonCGSolver
    from sklaplace._preconditioners import PRECONDITIONER_POWER, UNIT_FLOOR

    obj, theta = make_problem("tanh", 2, (4, 3), weighted=True)
    prior = obj.prior_precision.copy()
    prior[obj.layout.bias_mask()] = 0.0
    obj = _replaced(obj, prior_precision=prior)
    coefs, intercepts = obj.layout.split(np, theta)
    coefs[1][0] = 0.0  # first-layer unit 0 feeds nothing
    theta = obj.layout.pack(np, coefs, intercepts)
    dead = [np.zeros_like(c) for c in coefs], [np.zeros_like(b) for b in intercepts]
    dead[1][0][0] = 1.0
    dead = obj.layout.pack(np, *dead).astype(bool)
    fisher = _row_fisher(obj, theta)
    assert np.all(fisher[dead] == 0.0) and np.all(fisher[~dead] > 0.0)
    floor = _row_unit_floor(obj, theta, UNIT_FLOOR)
    curvature = (fisher + floor) / float(obj.loss(theta))
    assert np.all(curvature[dead] > 1e-6 * np.max(curvature))
    # Raised to the power about its geometric mean, which stays put.
    centre = np.exp(np.mean(np.log(curvature)))
    expected = centre * (curvature / centre) ** PRECONDITIONER_POWER
    assert 0.0 < PRECONDITIONER_POWER < 1.0
    solver = NewtonCGSolver(obj, tol=1e-8, max_iter=10)
    solver.setup(theta)
    solver.update_curvature()
    np.testing.assert_allclose(solver.preconditioner.m, expected, rtol=1e-10)


def test_preconditioner_is_floored_where_nothing_gives_curvature():
    """An all-zero feature under a flat prior: its weights' curvature is 1e-10
    of the largest entry (not 0, which would make ``M`` singular), and ``m``
    that to the preconditioner's power. The spread is the floored diagonal's,
    1e10, read with no division by zero (NumPy's RuntimeWarning at every
    Newton-CG iteration, where the spread was read before the floor)."""
    from sklaplace._newton_cg import NewtonCGSolver
    from sklaplace._preconditioners import PRECONDITIONER_POWER

    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    X = obj.X.copy()
    X[:, 0] = 0.0
    zeros = np.zeros_like(theta)
    coefs, intercepts = obj.layout.split(np, zeros)
    coefs[0][0] = 1.0  # the weights out of feature 0
    silent = obj.layout.pack(np, coefs, intercepts).astype(bool)
    prior = obj.prior_precision.copy()
    prior[silent] = 0.0
    obj = _replaced(obj, X=X, prior_precision=prior)
    solver = NewtonCGSolver(obj, tol=1e-8, max_iter=10)
    solver.setup(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solver.update_curvature()
    np.testing.assert_allclose(solver.preconditioner.spread, 1e10, rtol=1e-9)
    m = solver.preconditioner.m
    floor = 1e-10**PRECONDITIONER_POWER * np.max(m)
    np.testing.assert_allclose(m[silent], floor, rtol=1e-9)
    assert np.all(m[~silent] > 1e-6 * np.max(m))


def test_forcing_term_is_the_square_root_of_the_scaled_gradient_capped_at_half():
    # rtol = min(0.5, sqrt(g_s)) (tol sets max_atol, not rtol): checked at
    # iterates with sqrt(g_s) above 0.5, between 0.1 and 0.5, and below 0.1.
    from sklaplace._newton_cg import NewtonCGSolver

    obj, start = make_problem("tanh", 3, (4,), n_samples=40, weighted=True)
    total = float(np.sum(obj.sample_weight))
    ranges = set()
    for stop in [None, 0.2, 0.05, 0.02, 0.005, 1e-3]:
        theta = start
        if stop is not None:
            theta = minimize_map(obj, start, "newton-cg", stop, 100).theta
        scaled = float(np.max(np.abs(obj.loss_gradient(theta)[1]))) / total
        solver = NewtonCGSolver(obj, tol=1e-14, max_iter=10)
        solver.setup(theta)
        solver.update_curvature()
        expected = min(0.5, np.sqrt(scaled))
        np.testing.assert_allclose(solver.rtol, expected, rtol=1e-10)
        ranges.add(0 if expected == 0.5 else 1 if expected > 0.1 else 2)
    assert ranges == {0, 1, 2}


def test_cg_stops_at_the_first_iterate_whose_residual_meets_max_atol():
    """CG's second stopping test is on the residual's largest entry.

    Reference: the residuals ``H s_k + g`` of the iterates ``s_k`` that
    ``max_iter = k`` returns, computed with the dense ``H``. CG must stop at
    the first ``k`` whose residual's largest entry is at most ``max_atol``
    (here well before the 2-norm test, whose ``rtol`` is negligible), and
    ``max_atol = 0`` must leave the 2-norm test alone.
    """
    rng = np.random.RandomState(7)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    H = Q @ np.diag(np.logspace(-2, 2, 40)) @ Q.T
    g, m = rng.normal(size=40), np.ones(40)
    peaks = []
    for k in range(1, 40):
        step = steihaug_cg(np, lambda v: H @ v, g, D(m), 1e6, 1e-14, k)[0]
        peaks.append(np.max(np.abs(H @ step + g)))
    assert peaks[4] < peaks[3]  # a max_atol between them stops CG at step 5
    max_atol = 0.5 * (peaks[3] + peaks[4])
    first = next(k for k, peak in enumerate(peaks, 1) if peak <= max_atol)
    step, _, status, n = steihaug_cg(
        np, lambda v: H @ v, g, D(m), 1e6, 1e-14, 40, max_atol=max_atol
    )
    assert (status, n) == ("converged", first)
    assert np.max(np.abs(H @ step + g)) <= max_atol
    assert steihaug_cg(np, lambda v: H @ v, g, D(m), 1e6, 1e-14, 40)[3] > first


def test_forcing_term_stops_cg_where_the_next_gradient_meets_half_tol():
    """The solver's CG stops where the model's next scaled gradient is ``tol / 2``.

    The residual ``H s + g`` is the quadratic model's next gradient, so
    ``max_atol`` is ``tol S / 2`` (``S`` the total weight) in CG's units
    (the loss divided by its first value). Reference: the dense Hessian's
    residual after the solver's first CG solve, and the solve one product
    shorter, which must not meet it; ``rtol`` is ``min(0.5, sqrt(g_s))``.
    """
    from sklaplace._newton_cg import NewtonCGSolver

    obj, theta = make_problem("tanh", 2, (4, 3), weighted=True)
    theta = minimize_map(obj, theta, "newton-cg", 1e-4, 100).theta
    g = obj.loss_gradient(theta)[1]
    total = np.sum(obj.sample_weight)
    scaled = np.max(np.abs(g)) / total
    tol = 0.05 * scaled
    solver = NewtonCGSolver(obj, tol=tol, max_iter=10)
    solver.setup(theta)
    solver.update_curvature()
    np.testing.assert_allclose(solver.rtol, min(0.5, np.sqrt(scaled)), rtol=1e-10)
    np.testing.assert_allclose(
        solver.max_atol, 0.5 * tol * total * solver.unit, rtol=1e-10
    )
    solver.radius = 1e6  # the region is not what stops CG here
    solver.inner_solve()
    assert solver.cg_status == "converged"
    # The Hessian the solver's CG sees, column by column.
    H = np.column_stack([solver.hessp(e) for e in np.eye(theta.shape[0])])
    next_gradient = np.max(np.abs(H @ solver.step + g)) / total
    assert next_gradient <= 0.5 * tol * (1 + 1e-6)
    n = solver.n_products
    shorter = steihaug_cg(
        np,
        lambda v: solver.unit * (H @ v),
        solver.unit * g,
        solver.preconditioner,
        1e6,
        solver.rtol,
        n - 1,
    )[0]
    assert np.max(np.abs(H @ shorter + g)) / total > 0.5 * tol


@pytest.mark.parametrize("kind", ["exact", "ggn"])
@pytest.mark.parametrize(
    "n_classes, masked, flat", [(2, False, False), (3, True, False), (3, False, True)]
)
def test_single_precision_products_agree_with_double_to_float32_round_off(
    kind, n_classes, masked, flat
):
    obj, theta = make_problem("tanh", n_classes, (6, 4), weighted=True, n_samples=50)
    fixed = None
    if masked:
        fixed = np.zeros(obj.layout.n_params, dtype=bool)
        fixed[[0, 5, 17]] = True
        theta[fixed] = 0.0
    prior = obj.prior_precision.copy()
    if flat:  # a flat bias prior with K classes: the softmax's flat shift
        prior[obj.layout.bias_mask()] = 0.0
    obj = _replaced(obj, fixed=fixed, prior_precision=prior)
    assert (obj.flat_shifts() is not None) == flat
    double = hessp_operator(obj, theta, kind)
    single = hessp_operator(obj, theta, kind, single_precision=True)
    H = obj.constrained_curvature(
        {"exact": exact_hessian, "ggn": ggn_hessian}[kind](obj, theta)
    )
    for v in np.random.RandomState(1).normal(size=(3, obj.layout.n_params)):
        error = np.linalg.norm(single(v) - H @ v) / np.linalg.norm(H @ v)
        assert 0 < error < 1e-5  # float32's round-off, not float64's
        np.testing.assert_allclose(double(v), H @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "weight, v_scale", [(1e-300, 1.0), (1.0, 1e-200), (1e250, 1e-40), (2.0, 1.0)]
)
def test_single_precision_products_scale_weights_and_direction_first(weight, v_scale):
    # Unscaled, 1e-300 and 1e-200 underflow float32 (the product would be 0).
    # At 2, within float32's range, the residual terms (which carry the
    # weights) must be scaled with the weights all the same.
    obj, theta = make_problem("tanh", 3, (5,), n_samples=30)
    # The prior scaled with the weights: no flat direction (which is added in
    # double precision and would hide the likelihood's part).
    obj = _replaced(
        obj,
        sample_weight=np.full(30, weight),
        prior_precision=weight * obj.prior_precision,
    )
    assert obj.flat_shifts() is None
    v = v_scale * np.random.RandomState(2).normal(size=obj.layout.n_params)
    exact = hessp_operator(obj, theta)(v)
    single = hessp_operator(obj, theta, single_precision=True)(v)
    peak = np.max(np.abs(exact))  # norms of 1e-200 vectors underflow
    assert peak > 0
    error = np.linalg.norm((single - exact) / peak)
    # float32's round-off (not 0: the double-precision fallback was not taken)
    assert 0 < error <= 1e-5 * np.linalg.norm(exact / peak)


@pytest.mark.parametrize("single_precision", [False, True])
def test_the_operator_is_the_exact_hessian_unless_asked_for_the_ggn(single_precision):
    """``hessp_operator``'s default kind is the exact Hessian (both terms),
    against the dense exact Hessian and not the GGN, which differs here by
    far more than float32's round-off."""
    obj, theta = make_problem("tanh", 3, (5,), n_samples=30)
    v = np.random.RandomState(4).normal(size=obj.layout.n_params)
    H, G = exact_hessian(obj, theta) @ v, ggn_hessian(obj, theta) @ v
    assert np.linalg.norm(H - G) > 1e-2 * np.linalg.norm(H)
    default = hessp_operator(obj, theta, single_precision=single_precision)(v)
    assert np.linalg.norm(default - H) <= 1e-5 * np.linalg.norm(H)
    ggn = hessp_operator(obj, theta, "ggn", single_precision=single_precision)(v)
    assert np.linalg.norm(ggn - G) <= 1e-5 * np.linalg.norm(G)


def test_single_precision_products_of_a_zero_and_a_unit_peak_direction():
    """The direction is scaled by its largest magnitude first: a zero
    direction has the zero product (not 0/0's NaN), and one whose peak is
    exactly 1 (a coordinate vector, or a CG direction that happens to be)
    is multiplied like any other, to float32's round-off."""
    obj, theta = make_problem("tanh", 3, (5,), n_samples=30)
    single = hessp_operator(obj, theta, single_precision=True)
    exact = hessp_operator(obj, theta)
    zero = single(np.zeros(obj.layout.n_params))
    assert np.all(zero == 0.0)
    v = np.random.RandomState(3).uniform(-1.0, 1.0, obj.layout.n_params)
    v[7] = 1.0
    for direction in (v, np.eye(obj.layout.n_params)[7]):
        reference = exact(direction)
        error = np.linalg.norm(single(direction) - reference)
        assert 0 < error <= 1e-5 * np.linalg.norm(reference)


@pytest.mark.parametrize("features", ["signed", "negative"])
def test_single_precision_falls_back_to_double_beyond_float32s_range(features):
    obj, theta = make_problem("tanh", 2, (4,), n_samples=20)
    # Features of 1e20 (or all of -1e13, beyond the range check's limit in
    # magnitude only): float32 would overflow in the first layer's products.
    if features == "signed":
        big, factor = _replaced(obj, X=obj.X * 1e20), 1e-20
    else:
        big, factor = _replaced(obj, X=-np.abs(obj.X) * 1e13), 1e-13
    theta = theta * factor
    v = np.random.RandomState(3).normal(size=obj.layout.n_params)
    np.testing.assert_array_equal(
        hessp_operator(big, theta, single_precision=True)(v),
        hessp_operator(big, theta)(v),
    )


@pytest.mark.parametrize("entry", [-2e12, 2e12, np.nan])
def test_single_precision_falls_back_on_an_iterate_beyond_its_limit(entry):
    """An operand of the product (here the last bias, so the logits too)
    past ``SINGLE_PRECISION_LIMIT`` in magnitude, of either sign, or not a
    number: the double-precision product, bit for bit; just inside the
    limit, float32's."""
    obj, theta = make_problem("tanh", 3, (4,), n_samples=20)
    v = np.random.RandomState(3).normal(size=obj.layout.n_params)
    far = theta.copy()
    far[-1] = entry
    np.testing.assert_array_equal(
        hessp_operator(obj, far, single_precision=True)(v),
        hessp_operator(obj, far)(v),
    )
    near = theta.copy()
    near[-1] = 0.5 * SINGLE_PRECISION_LIMIT
    single = hessp_operator(obj, near, single_precision=True)(v)
    assert not np.array_equal(single, hessp_operator(obj, near)(v))


def test_a_nan_operand_leaves_no_single_precision_operator():
    # Not left to the product's own non-finite check: the operator is not
    # built (a NaN compared with the limit is not within it).
    assert _to_single(np, np.array([1.0, np.nan]), SINGLE_PRECISION_LIMIT) is None
    assert _to_single(np, np.array([1.0, -2e12]), SINGLE_PRECISION_LIMIT) is None
    flushed = _to_single(np, np.array([1e-21, -3.0]), SINGLE_PRECISION_LIMIT)
    np.testing.assert_array_equal(flushed, np.array([0.0, -3.0], dtype=np.float32))
    obj, theta = make_problem("tanh", 3, (4,), n_samples=20)
    theta[-1] = np.nan
    fwd = obj.forward(theta)
    deltas, terms = obj.residual_backprop(theta, fwd)
    assert _single_precision_product(obj, theta, fwd, deltas, terms) is None


def _large_enough_for_single_precision(monkeypatch):
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", 0)


def _count_calls(monkeypatch, owner, name):
    """Replace ``owner.name`` by a wrapper that records its calls; return them."""
    calls, real = [], getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_newton_cg_beyond_float32s_range_looks_at_x_once(monkeypatch):
    """Features beyond float32's range: the solver finds it once, at its
    first single-precision iteration, and stays in double precision (no
    float32 operator, no double-precision model checks): its iterates are
    those of a solve with single precision never allowed."""
    _large_enough_for_single_precision(monkeypatch)
    obj, theta = make_problem("tanh", 3, (6,), n_samples=80, n_features=4, seed=3)
    big = _replaced(obj, X=obj.X * 1e20)
    theta = theta * 1e-20
    products = sklaplace._curvature._products
    looks = _count_calls(monkeypatch, sklaplace._newton_cg, "single_precision_input")
    monkeypatch.setattr(
        products,
        "_single_precision_product",
        lambda *args, **kwargs: pytest.fail("a float32 operator beyond its range"),
    )
    solver = NewtonCGSolver(big, 1e-10, 300)
    result = solver.solve(theta)
    assert looks == [1] and not solver.single_allowed and result.n_iter > 1
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", np.inf)
    double = minimize_map(big, theta, "newton-cg", 1e-10, 300)
    np.testing.assert_array_equal(result.theta, double.theta)


@pytest.mark.parametrize("kronecker", [False, True])
def test_newton_cg_takes_one_forward_and_one_backward_pass_per_point(
    monkeypatch, kronecker
):
    """Each evaluated point's forward pass and the gradient's backward pass
    serve its loss and gradient, the curvature, the preconditioner (the
    Kronecker factors too) and the products: as many of each as points, not
    one more per iteration. ``[X, 1]`` in float32 is formed once a solve,
    not once an operator."""
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", 0)
    if kronecker:
        monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_WORK", 0)
        monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_ROWS_PER_INPUT", 0)
    obj, theta = make_problem("tanh", 3, (6,), n_samples=80, n_features=4, seed=3)
    evaluations = _count_calls(monkeypatch, obj, "loss_gradient")
    forwards = _count_calls(monkeypatch, sklaplace._objective, "forward")
    backwards = _count_calls(monkeypatch, sklaplace._objective, "backprop")
    inputs = [  # the solver's and the operator's own
        _count_calls(monkeypatch, module, "single_precision_input")
        for module in (sklaplace._newton_cg, sklaplace._curvature._products)
    ]
    solver = NewtonCGSolver(obj, 1e-10, 300)
    result = solver.solve(theta)
    assert result.converged and result.n_iter > 2 and solver.single_precision
    assert (solver.kronecker is not None) == kronecker
    assert len(forwards) == len(backwards) == len(evaluations) > result.n_iter
    assert sum(map(len, inputs)) == 1


def test_single_precision_newton_cg_reaches_the_double_precision_map(monkeypatch):
    obj, theta = make_problem("tanh", 3, (6,), n_samples=80, n_features=4, seed=3)
    double = minimize_map(obj, theta, "newton-cg", 1e-10, 300)
    _large_enough_for_single_precision(monkeypatch)
    products = sklaplace._curvature._products
    real, built = products._single_precision_product, []

    def counted(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(products, "_single_precision_product", counted)
    single = minimize_map(obj, theta, "newton-cg", 1e-10, 300)
    assert built and all(operator is not None for operator in built)
    assert double.converged and single.converged
    np.testing.assert_allclose(single.theta, double.theta, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss_scale", [1.0, 1e-6])
def test_newton_cg_goes_double_precision_when_the_single_model_is_off(
    monkeypatch, loss_scale
):
    """A single-precision product that is wrong (here: of the wrong sign, so
    CG sees negative curvature everywhere) makes a doubtful first step;
    its model, rechecked with a double-precision product, is off, and the
    products are double from then on: one single-precision operator built,
    and the fit ends at the double-precision MAP. The check is relative to
    the model's size: with the weights and prior scaled by 1e-6 (the same
    MAP) the model is off by less than 1e-3 in absolute terms."""
    _large_enough_for_single_precision(monkeypatch)
    products = sklaplace._curvature._products
    real = products._single_precision_product
    calls = []

    def wrong(*args, **kwargs):
        product = real(*args, **kwargs)
        calls.append(1)
        return None if product is None else (lambda v: -product(v))

    monkeypatch.setattr(products, "_single_precision_product", wrong)
    obj, theta = make_problem("tanh", 3, (6,), n_samples=80, n_features=4, seed=3)
    obj = _replaced(
        obj,
        sample_weight=loss_scale * obj.sample_weight,
        prior_precision=loss_scale * obj.prior_precision,
    )
    result = minimize_map(obj, theta, "newton-cg", 1e-10, 300)
    monkeypatch.setattr(products, "_single_precision_product", real)
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", np.inf)
    double = minimize_map(obj, theta, "newton-cg", 1e-10, 300)
    assert len(calls) == 1 and result.converged
    np.testing.assert_allclose(result.theta, double.theta, rtol=1e-6, atol=1e-8)


def test_newton_cg_stays_double_precision_on_small_networks(monkeypatch):
    # Below SINGLE_PRECISION_WORK the single-precision operator is never built.
    monkeypatch.setattr(
        sklaplace._curvature._products,
        "_single_precision_product",
        lambda *args, **kwargs: pytest.fail("single precision on a small network"),
    )
    obj, theta = make_problem("tanh", 3, (6,), n_samples=80, n_features=4, seed=3)
    assert (
        obj.n_samples * obj.layout.n_params < sklaplace._newton_cg.SINGLE_PRECISION_WORK
    )
    assert minimize_map(obj, theta, "newton-cg", 1e-10, 300).converged


def test_single_precision_newton_cg_under_array_api_strict(monkeypatch):
    # The casts, scales and checks run on any array namespace.
    xps = pytest.importorskip("array_api_strict")
    _large_enough_for_single_precision(monkeypatch)
    obj, theta = make_problem("tanh", 3, (4,), weighted=True, n_samples=40)
    sobj, stheta = make_problem("tanh", 3, (4,), weighted=True, n_samples=40, xp=xps)
    v = np.random.RandomState(4).normal(size=obj.layout.n_params)
    single = hessp_operator(obj, theta, single_precision=True)(v)
    strict = hessp_operator(sobj, stheta, single_precision=True)(xps.asarray(v))
    strict = np.asarray(to_numpy(strict))
    # The same float32 arithmetic as NumPy's, not double precision.
    np.testing.assert_allclose(strict, single, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(strict - hessp_operator(obj, theta)(v))) > 0
    result = minimize_map(obj, theta, "newton-cg", 1e-9, 100)
    strict = minimize_map(sobj, stheta, "newton-cg", 1e-9, 100)
    assert strict.converged and result.converged
    np.testing.assert_allclose(
        np.asarray(to_numpy(strict.theta)), result.theta, rtol=1e-6, atol=1e-8
    )


def test_a_nan_direction_gives_a_nan_product_in_single_precision():
    # Not zeros: CG must see "not finite" and stop.
    obj, theta = make_problem("tanh", 3, (5,), n_samples=30)
    v = np.ones(obj.layout.n_params)
    v[3] = np.nan
    with np.errstate(invalid="ignore"):
        product = hessp_operator(obj, theta, single_precision=True)(v)
        double = hessp_operator(obj, theta)(v)
    # NaN wherever the double-precision product has one (not only where the
    # prior's term puts v's NaN).
    assert np.sum(np.isnan(double)) > 1
    np.testing.assert_array_equal(np.isnan(product), np.isnan(double))


def test_badly_scaled_features_with_a_class_no_row_is_wrong_about_converge():
    """Features times 1e3 saturate the starting logits; class 1's weights then
    have no residual and only the prior's curvature. Without the unit floor
    the trust region stretched along them and Newton-CG stopped at max_iter
    with the loss 1e9 times the optimum; dense Newton is the reference."""
    X, y = make_blobs(60, 4, centers=3, random_state=2)
    params = dict(
        hidden_layer_sizes=(),
        alpha=1.0,
        tol=1e-8,
        max_iter=300,
        hessian_structure="diag",
        prior_precision_scale=1.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureScaleWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        cg = LaplaceMLPClassifier(solver="newton-cg", **params).fit(1e3 * X, y)
        dense = LaplaceMLPClassifier(solver="newton", **params).fit(1e3 * X, y)
    np.testing.assert_allclose(cg.loss_, dense.loss_, rtol=1e-6)


def test_cg_may_take_as_many_steps_as_there_are_parameters():
    # In exact arithmetic CG solves H s = -g in at most n_params steps, so
    # Newton-CG allows that many: on a logistic regression (4 parameters,
    # a generic positive definite H) the capped CG reaches the Newton step.
    obj, theta = make_problem("tanh", 2, (), n_samples=30)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=10)
    solver.setup(theta)
    H = exact_hessian(obj, theta)
    gradient = obj.loss_gradient(theta)[1]
    step, _, status, n_products = steihaug_cg(
        np,
        lambda v: H @ v,
        gradient,
        D(np.ones(obj.layout.n_params)),
        1e10,
        1e-14,
        solver.max_cg,
    )
    assert status == "converged" and n_products <= obj.layout.n_params == 4
    np.testing.assert_allclose(step, -np.linalg.solve(H, gradient), rtol=1e-8)


def test_a_direction_that_underflowed_stays_where_it_is():
    """``_boundary_tau`` along a zero direction: no step (``tau = 0``), not a
    division by ``d'Md = 0``."""
    from sklaplace._newton_cg import _boundary_tau

    p, m = np.array([0.3, -0.2]), np.array([2.0, 1.0])
    assert _boundary_tau(np, p, np.zeros(2), D(m), 1.0) == 0.0


def test_steihaug_cg_stops_on_a_product_that_overflowed():
    """A non-finite ``d'Hd`` ends CG at once with the step taken so far (none)."""
    g, m = np.array([1.0, -2.0]), np.ones(2)
    step, model, status, n = steihaug_cg(
        np, lambda v: np.array([np.inf, 0.0]), g, D(m), 10.0, 1e-12, 10
    )
    assert status == "not finite" and n == 1
    np.testing.assert_array_equal(step, np.zeros(2))
    assert model == 0.0


def test_steihaug_cg_says_boundary_for_weak_positive_curvature():
    """``0 < d'Hd < 1`` is positive curvature: a step that leaves the region
    is cut at the boundary (line 11 of Alg. 7.2), not labelled negative."""
    g, m = np.array([1.0, 0.0]), np.ones(2)
    # d = -g, d'Hd = 0.5; the Newton step (-2, 0) is outside radius 0.1.
    step, model, status, n = steihaug_cg(np, lambda v: 0.5 * v, g, D(m), 0.1, 1e-12, 10)
    assert status == "boundary" and n == 1
    np.testing.assert_allclose(step, [-0.1, 0.0], rtol=1e-12)
    np.testing.assert_allclose(model, -0.1 + 0.5 * 0.5 * 0.01, rtol=1e-12)


def test_steihaug_cg_with_rtol_zero_stops_at_an_exact_solution():
    """A residual of exactly zero meets ``rtol = 0``: converged after one
    product on ``H = I`` (not a further, empty direction)."""
    g, m = np.array([1.0, -2.0, 0.5]), np.ones(3)
    step, model, status, n = steihaug_cg(np, lambda v: v, g, D(m), 1e6, 0.0, 10)
    assert status == "converged" and n == 1
    np.testing.assert_array_equal(step, -g)
    np.testing.assert_allclose(model, -0.5 * g @ g, rtol=1e-12)


def _solver_at_start(monkeypatch=None, single=False):
    """A Newton-CG solver set up at ``make_problem``'s start, curvature built."""
    obj, theta = make_problem("tanh", 3, (5,), n_samples=60, n_features=4, seed=2)
    if single:
        monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", 0)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=50)
    solver.setup(theta)
    solver.update_curvature()
    return obj, solver


def test_the_first_trust_region_allows_a_model_decrease_of_the_loss():
    """The first radius is ``sqrt(L(theta_0))`` in the preconditioner's norm
    (1 in the units CG works in): from a start far from the MAP the first
    CG step ends on that boundary."""
    obj, solver = _solver_at_start()
    solver.propose(0)
    assert solver.cg_status in ("boundary", "negative curvature")
    loss = float(obj.loss(solver.theta))
    # The preconditioner in the loss's units.
    m_original = solver.preconditioner.m / solver.unit
    norm = np.sqrt(np.sum(m_original * solver.step**2))
    np.testing.assert_allclose(norm, np.sqrt(loss), rtol=1e-9)


def test_a_rejected_step_is_shortened_without_new_products():
    """After a rejection (a smaller radius) the next trial scales the same step
    and its model, with no Hessian-vector product (the class docstring)."""
    obj, solver = _solver_at_start()
    solver.propose(0)
    first, products = solver.step.copy(), solver.n_products
    solver.radius *= 0.25
    solver.propose(1)
    assert solver.n_products == products
    t = solver.step @ first / (first @ first)
    assert 0 < t < 1
    np.testing.assert_allclose(solver.step, t * first, rtol=1e-12)
    H = solver.hessp
    expected = solver.gradient @ solver.step + 0.5 * solver.step @ H(solver.step)
    np.testing.assert_allclose(solver.model, expected, rtol=1e-8)


@pytest.mark.parametrize("offset, single", [(-1, True), (0, False)])
def test_single_precision_starts_beyond_its_work_bound(monkeypatch, offset, single):
    """Single-precision products are allowed where ``n_samples * n_params``
    exceeds ``SINGLE_PRECISION_WORK`` (and not at the bound itself)."""
    obj, theta = make_problem("tanh", 3, (5,), n_samples=60, n_features=4, seed=2)
    work = obj.n_samples * obj.layout.n_params
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", work + offset)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=50)
    solver.setup(theta)
    solver.update_curvature()
    assert solver.single_allowed is single and solver.single_precision is single


def test_single_precision_stops_where_the_preconditioner_spreads_too_far(
    monkeypatch,
):
    """``max(m) / min(m)`` of the curvature diagonal (before the power) above
    ``MAX_SINGLE_SPREAD`` keeps the products double precision."""
    obj, solver = _solver_at_start(monkeypatch, single=True)
    power = sklaplace._preconditioners.PRECONDITIONER_POWER
    m = solver.preconditioner.m
    spread = (np.max(m) / np.min(m)) ** (1.0 / power)
    assert spread > 10  # the bounds below are far apart
    for bound, single in [(1.01 * spread, True), (0.99 * spread, False)]:
        monkeypatch.setattr(sklaplace._newton_cg, "MAX_SINGLE_SPREAD", bound)
        solver.update_curvature()
        assert bool(solver.single_precision) is single


def test_the_model_check_compares_with_a_double_precision_product():
    """``_model_is_off``: the step's model ``g's + s'Hs/2`` recomputed with one
    double-precision product; off means by more than ``MODEL_CHECK_RTOL``."""
    obj, solver = _solver_at_start()
    solver.propose(0)
    s, g = solver.step, solver.gradient
    exact = g @ s + 0.5 * s @ exact_hessian(obj, solver.theta) @ s
    assert abs(0.5 * s @ exact_hessian(obj, solver.theta) @ s) > 0.01 * abs(exact)
    products = solver.n_products
    solver.model = exact * (1 + 1e-6)
    assert not solver._model_is_off() and solver.n_products == products + 1
    solver.model = exact * (1 + 1e-2)
    assert solver._model_is_off()
    solver.model = exact * (1 - 1e-2)
    assert solver._model_is_off()


@pytest.mark.parametrize(
    "status, rho, checked",
    [
        ("negative curvature", 0.5, True),  # doubtful by its exit
        ("boundary", 0.5, False),  # a fair step: trusted
        ("converged", 0.5, False),
        ("boundary", 0.1, True),  # doubtful by its gain ratio
        ("converged", 0.1, True),
    ],
)
def test_only_a_doubtful_single_precision_step_is_rechecked(
    monkeypatch, status, rho, checked
):
    """A fresh single-precision step is rechecked in double precision when
    its gain ratio is below 1/4 or CG left along negative curvature."""
    obj, solver = _solver_at_start(monkeypatch, single=True)
    assert solver.single_precision
    solver.propose(0)  # a step fresh from CG, replaced by a short descent step
    solver.step = -1e-3 * solver.gradient / np.max(np.abs(solver.gradient))
    actual = float(obj.loss(solver.theta)) - float(obj.loss(solver.theta + solver.step))
    assert actual > 0
    solver.model = -actual / rho  # sets the gain ratio
    solver.cg_status = status
    calls = []
    monkeypatch.setattr(
        NewtonCGSolver, "_model_is_off", lambda self: calls.append(1) or False
    )
    solver.judge()
    assert bool(calls) is checked


def test_cg_takes_at_most_as_many_steps_as_there_are_parameters():
    """In exact arithmetic CG ends within ``n_params`` steps, so Newton-CG
    caps each solve there (``min(MAX_CG_ITER, n_params)``): asked for an exact
    solve (``rtol = max_atol = 0``, a radius no step reaches) on a logistic regression
    of 4 parameters, CG stops after 4 products. (Mutant: the cap at
    ``MAX_CG_ITER`` alone -- CG chased round-off for 40 products.)"""
    obj, theta = make_problem("tanh", 2, (), n_samples=30)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=10)
    solver.setup(theta)
    solver.update_curvature()
    solver.rtol, solver.max_atol, solver.radius = 0.0, 0.0, 1e10
    solver.inner_solve()
    assert obj.layout.n_params == 4
    assert solver.n_products == 4 and solver.cg_status == "max_iter"


def test_a_shortened_single_precision_step_is_not_rechecked(monkeypatch):
    """Only a step fresh from CG is rechecked in double precision (the
    ``judge`` docstring): a step shortened by :meth:`backtrack` has the same
    model, scaled, so even when doubtful (gain ratio 0.1, CG's exit along
    negative curvature) it costs no product. (Mutant: ``fresh`` without
    ``step_from_cg`` -- every doubtful trial of a single-precision iteration
    was rechecked, one more product each.)"""
    monkeypatch.setattr(sklaplace._newton_cg, "SINGLE_PRECISION_WORK", 0)
    obj, theta = make_problem("tanh", 3, (5,), n_samples=60, n_features=4, seed=2)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=50)
    solver.setup(theta)
    solver.update_curvature()
    assert solver.single_precision
    solver.propose(0)
    solver.radius *= 0.25
    solver.propose(1)  # backtracked: no CG solve
    assert not solver.step_from_cg
    solver.step = -1e-3 * solver.gradient / np.max(np.abs(solver.gradient))
    actual = float(obj.loss(solver.theta)) - float(obj.loss(solver.theta + solver.step))
    assert actual > 0
    solver.model = -actual / 0.1  # gain ratio 0.1: doubtful
    solver.cg_status = "negative curvature"
    calls = []
    monkeypatch.setattr(
        NewtonCGSolver, "_model_is_off", lambda self: calls.append(1) or False
    )
    solver.judge()
    assert calls == []


@pytest.mark.parametrize("kind", ["exact", "ggn"])
def test_a_single_precision_product_that_overflows_is_redone_in_double(kind):
    """Every array entering the float32 product is within the range check
    (features 1e8, weights 1e12 and 1e-8, logits near 0), yet ``H v``
    (about 1e40: two hidden units of output weights +-1e12 cancel in the
    logit but not in the Jacobian) is beyond float32: the non-finite single
    product is discarded and the product redone -- and kept -- in double
    precision, equal to the double-precision operator's. (Mutant: the
    finiteness check dropped -- ``inf``/``nan`` came back.)"""
    obj, _ = make_problem("tanh", 2, (2,), n_samples=20)
    rng = np.random.RandomState(0)
    w = rng.normal(size=3) * 1e-8
    theta = obj.layout.pack(
        np,
        [np.stack([w, w], axis=1), np.array([[1e12], [-1e12]])],
        [np.zeros(2), np.zeros(1)],
    )
    big = NegLogPosterior(
        np,
        obj.layout,
        obj.activation,
        obj.likelihood,
        obj.X * 1e8,
        obj.Y,
        sample_weight=obj.sample_weight,
        prior_precision=obj.prior_precision,
    )
    assert np.max(np.abs(big.forward(theta).logits)) < 1e-3
    v = rng.normal(size=obj.layout.n_params)
    double = hessp_operator(big, theta, kind)
    expected = double(v)
    assert np.max(np.abs(expected)) > 1e39  # beyond float32's 3.4e38
    single = hessp_operator(big, theta, kind, single_precision=True)
    with np.errstate(over="ignore", invalid="ignore"):
        first = single(v)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(single(v), expected)  # double from then on


@pytest.mark.parametrize("kind", ["exact", "ggn"])
def test_flat_softmax_with_a_fixed_output_bias_matches_the_constrained_matrix(kind):
    """``hessp_operator``'s product is that of ``constrained_curvature``'s
    matrix also where both constraints meet: a flat prior on the whole
    output layer (every row's common shift flat) with one output bias among
    the ``fixed`` parameters, which leaves that row's shift to the data.
    The dense matrix pins the fixed rows and columns to the identity and
    adds ``u u'`` on the other rows' blocks. Reference: the dense exact
    Hessian / GGN, constrained, times ``v``. (Mutants: the fixed row's
    shift added too, or the flat rows' dropped.)"""
    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    prior = obj.prior_precision.copy()
    prior[obj.layout.layer_slice(1)] = 0.0
    fixed = np.zeros(obj.layout.n_params, dtype=bool)
    fixed[[0, obj.layout.n_params - 1]] = True  # a weight and an output bias
    theta[fixed] = 0.0
    obj = NegLogPosterior(
        np,
        obj.layout,
        obj.activation,
        obj.likelihood,
        obj.X,
        obj.Y,
        sample_weight=obj.sample_weight,
        prior_precision=prior,
        fixed=fixed,
    )
    np.testing.assert_array_equal(obj.flat_shifts(), [True] * 4 + [False])
    dense = {"exact": exact_hessian, "ggn": ggn_hessian}[kind]
    H = obj.constrained_curvature(dense(obj, theta))
    hessp = hessp_operator(obj, theta, kind)
    for v in np.random.RandomState(1).normal(size=(3, obj.layout.n_params)):
        np.testing.assert_allclose(hessp(v), H @ v, rtol=1e-10, atol=1e-10)


def test_fisher_diagonal_with_zero_weight_rows_does_not_divide_by_zero():
    """Rows of weight 0 add nothing to the Fisher diagonal and its ``1 /
    s_n`` is never evaluated at ``s_n = 0`` (no ``RuntimeWarning``: divide by
    zero, which a user with zero sample weights would see on every Newton-CG
    iteration). Reference: the same objective with those rows removed.
    (Mutant: ``safe = weight`` -- the same values, but ``1 / 0`` computed
    and warned about.)"""
    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    weight = obj.sample_weight.copy()
    weight[[2, 7]] = 0.0
    keep = weight > 0

    def objective(rows, w):
        return NegLogPosterior(
            np,
            obj.layout,
            obj.activation,
            obj.likelihood,
            obj.X[rows],
            obj.Y[rows],
            sample_weight=w,
            prior_precision=obj.prior_precision,
        )

    zeroed = objective(slice(None), weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag = fisher_diagonal(zeroed, theta, unit_floor=1e-2)
    expected = fisher_diagonal(objective(keep, weight[keep]), theta, unit_floor=1e-2)
    np.testing.assert_allclose(diag, expected, rtol=1e-12)
    # A weight whose inverse overflows (2e-313) counts as none: 1 / s_n was
    # inf, times the delta's square of 0, a NaN preconditioner, and Newton-CG
    # had stopped at once with the network untrained.
    weight[[2, 7]] = np.exp(-720.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        subnormal = objective(slice(None), weight)
        diag = fisher_diagonal(subnormal, theta, unit_floor=1e-2)
    np.testing.assert_allclose(diag, expected, rtol=1e-12)


def test_a_subnormal_sample_weight_fits_as_a_dropped_row():
    X, y = make_blobs(60, centers=2, n_features=3, random_state=0)
    weight = np.ones(60)
    weight[0] = np.exp(-720.0)
    params = dict(alpha=1.0, prior_precision_scale=1.0, solver="newton-cg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = LaplaceMLPClassifier((4,), random_state=0, **params)
        tiny.fit(X, y, sample_weight=weight)
    dropped = LaplaceMLPClassifier((4,), random_state=0, **params)
    dropped.fit(X[1:], y[1:])
    np.testing.assert_allclose(tiny.coefs_[0], dropped.coefs_[0], atol=1e-8)


def test_cg_that_does_not_follow_negative_curvature_stops_where_it_meets_it():
    """Without ``follow_negative_curvature``, CG ends at its last iterate
    where a direction has negative curvature, inside the region, where
    Steihaug-Toint goes on to the boundary; at the first direction it takes
    ``-g / m``, shortened to the region."""
    H = np.diag([1.0, -0.5, 2.0])
    g, m = np.array([1.0, 0.3, 0.0]), np.ones(3)

    def cg(radius, follow):
        return steihaug_cg(np, H.__matmul__, g, D(m), radius, 1e-12, 10, follow)

    # By hand: the first direction -g has curvature 1 - 0.045 > 0, its
    # minimiser along it is t = 1.09 / 0.955; the next direction's is negative.
    first = -g * (g @ g) / (g @ H @ g)
    step, model, status, n = cg(10.0, False)
    assert (status, n) == ("negative curvature", 2)
    np.testing.assert_allclose(step, first, rtol=1e-12)
    np.testing.assert_allclose(model, g @ step + step @ H @ step / 2, rtol=1e-12)
    followed, _, status, _ = cg(10.0, True)
    assert status == "negative curvature"
    np.testing.assert_allclose(np.linalg.norm(followed), 10.0, rtol=1e-12)
    # Negative curvature at once: -g / m, whole or shortened to the region
    # in the m-norm (m not uniform, so neither -g nor the 2-norm passes).
    H, m = np.diag([-1.0, -2.0, 0.5]), np.array([2.0, 0.5, 1.0])
    z = g / m
    shortened = -z * 0.5 / np.sqrt(m @ (z * z))
    for radius, expected in [(10.0, -z), (0.5, shortened)]:
        step, model, status, n = cg(radius, False)
        assert (status, n) == ("negative curvature", 1)
        np.testing.assert_allclose(step, expected, rtol=1e-12)
        np.testing.assert_allclose(model, g @ step + step @ H @ step / 2, rtol=1e-12)
    # Zero curvature counts as negative: d'Hd = 1 - 1 along -g, no boundary.
    flat = np.diag([1.0, -1.0])
    step, _, status, _ = steihaug_cg(
        np, flat.__matmul__, np.ones(2), D(np.ones(2)), 10.0, 1e-12, 5, False
    )
    assert status == "negative curvature"
    np.testing.assert_allclose(step, -np.ones(2), rtol=1e-12)
    # No gradient: no step (the 0 / 0 of the shortening is not taken).
    step, model, status, _ = steihaug_cg(
        np, H.__matmul__, 0 * g, D(m), 1.0, 0.1, 5, False
    )
    assert status == "negative curvature" and not np.any(step) and model == 0.0


def test_newton_cg_passes_on_whether_it_follows_negative_curvature(monkeypatch):
    """The solver's and ``minimize_map``'s flag reaches every CG solve: from
    a start where the followed solves meet negative curvature, the others
    stop there and take another path (the held-out folds' refits)."""
    obj, theta = make_problem(hidden=(8,), n_samples=30, seed=3)
    real = sklaplace._newton_cg.steihaug_cg
    flags, results = [], {}

    def recording(*args):
        flags.append(args[7])  # follow_negative_curvature
        return real(*args)

    monkeypatch.setattr(sklaplace._newton_cg, "steihaug_cg", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for follow in (True, False):
            flags.clear()
            solver = NewtonCGSolver(obj, 1e-4, 30, follow_negative_curvature=follow)
            results[follow] = solver.solve(theta)
            assert flags and set(flags) == {follow}
            flags.clear()
            again = minimize_map(
                obj, theta, "newton-cg", 1e-4, 30, follow_negative_curvature=follow
            )
            assert flags and set(flags) == {follow}
            np.testing.assert_array_equal(again.theta, results[follow].theta)
    assert np.max(np.abs(results[True].theta - results[False].theta)) > 1e-3


def test_an_iteration_reuses_its_forward_pass_and_residual_backprop(monkeypatch):
    """The curvature at an iterate costs one backward pass of the residuals
    and no forward pass (the module docstring's cost of an iteration): the
    step's forward pass and that one backward pass serve the preconditioner
    and the Hessian-vector products, and the double-precision model check
    reuses both too. Counted on the objective (``forward``,
    ``residual_backprop``) and on the Fisher diagonal's own backward pass.
    (Mutants: ``None`` passed for the forward pass or the residuals to
    ``fisher_diagonal`` or ``hessp_operator``, in ``update_curvature`` or
    ``_model_is_off`` -- the same numbers, each at the cost of a pass more.)
    """
    products = sklaplace._curvature._products
    obj, theta = make_problem("tanh", 3, (5,), n_samples=60, n_features=4, seed=2)
    solver = NewtonCGSolver(obj, tol=1e-10, max_iter=50)
    solver.setup(theta)
    passes = {"forward": 0, "residual_backprop": 0, "fisher backprop": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            passes[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(obj, "forward", counted("forward", obj.forward))
    monkeypatch.setattr(
        obj, "residual_backprop", counted("residual_backprop", obj.residual_backprop)
    )
    monkeypatch.setattr(
        products, "backprop", counted("fisher backprop", products.backprop)
    )
    solver.update_curvature()
    assert passes == {"forward": 0, "residual_backprop": 1, "fisher backprop": 0}
    solver.propose(0)  # a CG solve: Hessian-vector products only
    assert solver.n_products > 0
    assert not solver._model_is_off()  # double precision: the model agrees
    assert passes == {"forward": 0, "residual_backprop": 1, "fisher backprop": 0}


def test_single_precision_products_of_directions_whose_peak_is_negative():
    """The direction is scaled by its largest *magnitude*: one whose entries
    are all at most 0 (``-e_i``, or CG's first direction ``-M^{-1} g`` where
    ``g >= 0``), or whose largest entry is a tiny positive one beside large
    negative ones, is multiplied like any other, to float32's round-off (not
    0, not a NaN, and without falling back to double precision)."""
    obj, theta = make_problem("tanh", 3, (5,), n_samples=30)
    single = hessp_operator(obj, theta, single_precision=True)
    exact = hessp_operator(obj, theta)
    n = obj.layout.n_params
    v = np.random.RandomState(3).uniform(-1.0, 1.0, n)
    tiny_peak = -np.abs(v)
    tiny_peak[4] = 1e-30
    for direction in (-np.eye(n)[7], -np.abs(v), tiny_peak):
        reference = exact(direction)
        assert np.linalg.norm(reference) > 0
        error = np.linalg.norm(single(direction) - reference)
        assert 0 < error <= 1e-5 * np.linalg.norm(reference)


def test_steihaug_cg_stops_at_the_first_step_meeting_the_forcing_term():
    # The forcing term is ||H s + g||_2 <= rtol ||g||_2 (Nocedal & Wright
    # eq. 7.3): CG stops at the first iterate that meets it, not later (a
    # max-norm on the right, up to sqrt(n) smaller, over-solves every solve).
    rng = np.random.RandomState(0)
    n = 40
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    H = Q @ np.diag(np.geomspace(1.0, 1e2, n)) @ Q.T
    g = rng.normal(size=n)
    m = rng.uniform(0.5, 2.0, n)
    rtol, target = 0.1, 0.1 * np.linalg.norm(g)
    assert np.max(np.abs(g)) < 0.5 * np.linalg.norm(g)  # the norms differ here

    def solve(max_iter):
        return steihaug_cg(np, lambda v: H @ v, g, D(m), 1e6, rtol, max_iter)

    step, _, status, k = solve(n)
    assert status == "converged" and k > 2
    assert np.linalg.norm(H @ step + g) <= target
    # One step fewer has not met it yet: CG did not go on past it.
    earlier, _, status, _ = solve(k - 1)
    assert status == "max_iter"
    assert np.linalg.norm(H @ earlier + g) > target
