"""solver="newton" (dense, Levenberg-Marquardt damping) and solver="lbfgs".

Newton-CG has its own file (``tests/test_newton_cg.py``); the gain-ratio
test both Newton solvers share is in ``tests/test_trust_region.py``. Here the
damping rule of dense Newton is checked against Nielsen's rule computed from
the dense Hessian, and both solvers' results against the objective itself.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import sklaplace._solvers
from sklaplace import LaplaceMLPClassifier
from sklaplace._curvature import exact_hessian
from sklaplace._solvers import NewtonSolver, minimize_map
from tests.conftest import make_problem


def _newton_at_start(obj, theta):
    """A dense Newton solver at ``theta`` with its Hessian and first damping."""
    solver = NewtonSolver(obj, tol=1e-8, max_iter=10)
    solver.setup(theta)
    solver.update_curvature()
    return solver


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_result_describes_the_returned_iterate(solver):
    """``converged``, the scaled gradient and the loss are those of ``theta``.

    The scaled gradient and the loss are recomputed from the objective at
    the returned ``theta``; the history has the start and one entry per
    iteration, the last being the returned one.
    """
    tol = 1e-6
    obj, theta = make_problem("softplus", 3, (4,), n_samples=40)
    with warnings.catch_warnings():
        # An unknown SciPy option would warn (OptimizeWarning), a stop short of
        # tol would raise a ConvergenceWarning: neither may happen here.
        warnings.simplefilter("error")
        result = minimize_map(obj, theta, solver, tol, 200)
    assert result.converged is True
    loss, gradient = obj.loss_gradient(result.theta)
    scaled = np.max(np.abs(gradient)) / obj.gradient_scale
    np.testing.assert_allclose(result.gradient_norm, scaled, rtol=1e-12)
    assert result.gradient_norm <= tol
    np.testing.assert_allclose(result.loss, float(loss), rtol=1e-12)
    assert len(result.gradient_history) == result.n_iter + 1
    assert result.gradient_history[-1] == pytest.approx(result.gradient_norm)
    start = np.max(np.abs(obj.loss_gradient(theta)[1])) / obj.gradient_scale
    assert result.gradient_history[0] == pytest.approx(start, rel=1e-12)


def test_newton_stalled_at_round_off_warns_of_no_progress():
    """With an unreachable tol Newton stops at round-off of the minimum.

    Once no damping gives a step that changes ``theta`` or lowers the loss,
    the warning must say that it made no progress, not that it ran out of
    iterations (it stops long before ``max_iter``).
    """
    obj, theta = make_problem("softplus", 2, (5,), n_samples=40)
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration"):
        result = minimize_map(obj, theta, "newton", 1e-300, 200)
    assert result.converged is False and result.n_iter < 200
    assert result.gradient_norm < 1e-12  # at the minimum, to round-off


def test_newton_stops_at_a_relu_kink_instead_of_creeping_up_the_loss():
    """A ReLU network whose MAP sits on a kink (a helper's case: 80 rows,
    hidden (5,), weighted): past iteration 32 no step lowers the loss, and
    dense Newton had accepted 168 of its next 168 steps, each raising the
    loss by round-off while the gradient fell by 1e-12 of itself, to
    ``max_iter`` ("did not converge", out of iterations). It now stops
    there with "made no progress", the loss never rising along the way."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.5 * rng.normal(size=80) > 0.3).astype(int)
    weight = rng.uniform(0.5, 2.0, 80)
    clf = LaplaceMLPClassifier(
        (5,),
        activation="relu",
        alpha=0.3,
        bias_prior_precision=0.3,
        solver="newton",
        prior_precision_scale=1.0,
        tol=1e-9,
        random_state=1,
        max_iter=200,
    )
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration"):
        clf.fit(X, y, sample_weight=weight)
    assert clf.n_iter_ < 60
    assert np.all(np.diff(clf.loss_curve_) <= 0.0)


def test_newton_accepted_step_updates_the_damping_by_nielsens_rule():
    """The first damped step: Nielsen's start, the step, the gain-ratio update.

    Starting damping ``1e-3 max|diag H|`` (doubled until ``H + mu I`` is
    positive definite); the step solves ``(H + mu I) s =
    -g``; ``rho`` is the actual decrease over the quadratic model's ``-(g's +
    s'Hs/2)``, both computed here from the dense Hessian, and an accepted
    step multiplies ``mu`` by ``max(1/3, 1 - (2 min(rho, 1) - 1)^3)``.
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    H = obj.constrained_curvature(exact_hessian(obj, theta))
    loss, g = obj.loss_gradient(theta)
    solver = _newton_at_start(obj, theta)
    start = 1e-3 * np.max(np.abs(np.diag(H)))
    np.testing.assert_allclose(solver.damping, start, rtol=1e-12)
    solver.propose(0)  # raises the damping until H + mu I is PD
    mu, s = solver.damping, solver.step
    assert mu >= start and np.linalg.eigvalsh(H + mu * np.eye(H.shape[0]))[0] > 0
    np.testing.assert_allclose((H + mu * np.eye(H.shape[0])) @ s, -g, atol=1e-10)
    solver.judge()
    actual = float(loss) - float(obj.loss(theta + s))
    rho = actual / -(g @ s + 0.5 * s @ H @ s)
    assert solver.accepted and rho > 1e-4
    expected = mu * max(1.0 / 3.0, 1.0 - (2.0 * min(rho, 1.0) - 1.0) ** 3)
    np.testing.assert_allclose(solver.damping, expected, rtol=1e-8)
    assert solver.damping_growth == 2.0
    np.testing.assert_array_equal(solver.theta, theta + s)


def test_newton_rejected_step_multiplies_the_damping_by_a_doubling_factor():
    """A rejected step leaves ``theta`` and sets ``mu *= nu``, ``nu *= 2``.

    Nielsen's rule on rejection, from ``nu = 2``: a small damping grows by
    2, 4, 8, ... (it is not reset to some floor).
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    loss = solver.loss_value
    solver.damping = 1e-3
    solver.step = 5.0 * solver.gradient  # uphill: the loss rises
    for expected, growth in [(2e-3, 4.0), (8e-3, 8.0), (6.4e-2, 16.0)]:
        solver.judge()
        assert not solver.accepted
        np.testing.assert_allclose(solver.damping, expected, rtol=1e-12)
        assert solver.damping_growth == growth
    assert solver.loss_value == loss
    np.testing.assert_array_equal(solver.theta, theta)


def test_newton_doubles_the_damping_until_the_shifted_hessian_factorises():
    # H = -I: H + mu I is positive definite for mu > 1 only; from 0.3,
    # doubling gives 0.6, then 1.2, the first above 1, and the step solves
    # (H + mu I) s = -g: s = -g / (mu - 1).
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    solver.hessian = -np.eye(solver.hessian.shape[0])
    solver.damping = 0.3
    solver.propose(0)
    np.testing.assert_allclose(solver.damping, 1.2, rtol=1e-12)
    np.testing.assert_allclose(solver.step, -solver.gradient / 0.2, rtol=1e-10)


def test_newton_starting_damping_is_scaled_by_the_largest_diagonal_magnitude():
    # Nielsen's start 1e-3 max_i |H_ii| where the diagonal's largest
    # magnitude is a negative entry (tanh, far from the optimum: -7.4
    # against a largest positive 2.0): 3.6 times 1e-3 max_i H_ii.
    obj, theta = make_problem("tanh", 2, (4,), n_samples=20, seed=3)
    theta = 3.0 * theta
    diag = np.diag(obj.constrained_curvature(exact_hessian(obj, theta)))
    assert -diag.min() > 2.0 * diag.max()  # the case this test is about
    solver = _newton_at_start(obj, theta)
    np.testing.assert_allclose(solver.damping, 1e-3 * np.max(np.abs(diag)), rtol=1e-12)


def test_newton_raises_a_zero_damping_until_the_shifted_hessian_factorises(
    monkeypatch,
):
    # H = -I with a damping of 0: floored at 1e-12, then doubled (exactly in
    # floating point) to the first value above 1, 2^40 1e-12, and the step
    # solves (H + mu I) s = -g. The factorisations are counted so that a
    # damping stuck at 0 (2 * 0 = 0) fails instead of looping for ever.
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    solver.hessian = -np.eye(solver.hessian.shape[0])
    solver.damping = 0.0
    calls = []
    cholesky = sklaplace._solvers.cholesky

    def counted(xp, A):
        calls.append(1)
        if len(calls) > 200:
            raise RuntimeError("the damping does not grow")
        return cholesky(xp, A)

    monkeypatch.setattr(sklaplace._solvers, "cholesky", counted)
    solver.propose(0)
    mu = 1e-12 * 2.0**40
    assert solver.damping == mu and len(calls) == 42
    np.testing.assert_allclose(solver.step, -solver.gradient / (mu - 1), rtol=1e-10)


def test_newton_rejection_floors_a_zero_damping():
    # A damping that underflowed to 0 still grows after a rejected step
    # (else every trial would propose the same step): floored at 1e-12,
    # then Nielsen's doubling factor.
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    solver.damping = 0.0
    solver.step = 5.0 * solver.gradient  # uphill: rejected
    solver.judge()
    assert not solver.accepted and solver.damping == 1e-12
    solver.judge()
    assert solver.damping == 4e-12


def test_newton_refuses_an_overflowed_hessian(monkeypatch):
    # No damping repairs an inf in H: the curvature's clear ValueError, not
    # a damping doubled to inf and a "no progress" ConvergenceWarning.
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)

    def overflowed(objective, theta):
        H = exact_hessian(objective, theta)
        H[0, 0] = np.inf
        return H

    monkeypatch.setattr(sklaplace._solvers, "exact_hessian", overflowed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ValueError, match=r"not finite \(it overflowed\)"):
            minimize_map(obj, theta, "newton", 1e-8, 10)


def test_newton_acceptance_restarts_the_doubling_and_counts_a_flat_gain_as_full():
    """Nielsen's rule after rejections: an accepted step resets ``nu`` to 2.

    The gain-ratio test is stubbed. After two rejections (``nu = 8``) an
    accepted step of ``rho = 1/2`` leaves ``mu`` (factor ``1 - 0^3``) and
    resets ``nu``, so the next rejection doubles ``mu``. A step accepted at
    ``rho <= 0`` (the loss flat to round-off, the gradient lower) counts as
    ``rho = 1``: ``mu / 3``.
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    loss, gradient = solver.loss_value, solver.gradient
    solver.step, solver.damping = np.zeros_like(gradient), 1.0

    def judge(rho, accepted):
        # What evaluate would set.
        solver.candidate_forward = solver.forward
        solver.candidate_backprop = solver.gradient_backprop
        solver.evaluate = lambda candidate, predicted: (rho, loss, gradient, accepted)
        solver.judge()

    judge(-1.0, False)
    judge(-1.0, False)  # damping 1 -> 2 -> 8
    assert solver.damping_growth == 8.0
    judge(0.5, True)
    np.testing.assert_allclose(solver.damping, 8.0, rtol=1e-12)
    assert solver.damping_growth == 2.0
    judge(-1.0, False)
    np.testing.assert_allclose(solver.damping, 16.0, rtol=1e-12)
    judge(-0.5, True)
    np.testing.assert_allclose(solver.damping, 16.0 / 3.0, rtol=1e-12)


def test_newton_gives_up_when_the_damping_overflows():
    """No acceptable step even at the largest damping: a warning, not a crash.

    The gain-ratio test is stubbed to reject every step; with an exact zero
    in ``theta`` the shrinking steps never stop changing it, so the damping
    (``mu *= nu``, ``nu *= 2``) overflows within the iteration's trials and
    no finite damping is left. The solver must stop there, at the start.
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    theta = theta.copy()
    theta[0] = 0.0
    solver = NewtonSolver(obj, tol=1e-8, max_iter=10)
    solver.evaluate = lambda candidate, predicted: (-1.0, np.inf, None, False)
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration 1"):
        result = solver.solve(theta)
    assert not np.isfinite(solver.damping) and solver.step is None
    assert result.n_iter == 1 and result.converged is False
    np.testing.assert_array_equal(result.theta, theta)


def test_lbfgs_verbose_prints_each_iterates_scaled_gradient(capsys):
    """``verbose`` prints one line per L-BFGS iteration: its loss and gradient.

    The scaled gradient printed on line ``i`` is that of iterate ``i`` (entry
    ``i`` of the history, entry 0 being the start); the loss of the last
    line is the returned one.
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    result = minimize_map(obj, theta, "lbfgs", 1e-6, 200, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == result.n_iter > 1
    for line, expected in zip(lines, result.gradient_history[1:]):
        assert line.startswith("L-BFGS iter: loss ")
        printed = float(line.split("scaled gradient ")[1])
        np.testing.assert_allclose(printed, expected, rtol=1e-3)
    loss = float(lines[-1].split("loss ")[1].split(",")[0])
    np.testing.assert_allclose(loss, result.loss, rtol=1e-9)


def test_lbfgs_runs_max_iter_iterations_before_giving_up():
    """``max_iter`` caps the iterations, not the evaluation budget.

    From a far start the line searches take extra evaluations (about 27 in
    15 iterations here): a budget of ``max_iter`` evaluations would stop
    early.
    """
    obj, theta = make_problem("elu", 3, (4, 3), n_samples=40)
    with pytest.warns(ConvergenceWarning, match="L-BFGS did not converge after 15"):
        result = minimize_map(obj, 10.0 * theta, "lbfgs", 1e-14, 15)
    assert result.n_iter == 15 and not result.converged
    assert len(result.gradient_history) == 16


def test_lbfgs_stops_at_the_first_iterate_whose_scaled_gradient_is_below_tol():
    # SciPy's gtol is on the unscaled gradient: tol times the total weight
    # (200 rows here), or it would go on 200 times tighter than tol.
    obj, theta = make_problem("tanh", 2, (3,), n_samples=200)
    result = minimize_map(obj, theta, "lbfgs", 1e-4, 500)
    history = result.gradient_history
    assert result.converged and history[-1] <= 1e-4 < min(history[:-1])


def test_lbfgs_says_when_its_line_search_stalls_at_a_relu_kink():
    """A line search that finds no lower loss is not a lack of iterations.

    A 30-3-1 ReLU network on breast cancer: L-BFGS stops long before
    ``max_iter`` at a kink; the warning says so and does not advise more
    iterations (the earlier wording did, quoting SciPy's bare "ABNORMAL: ").
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from sklaplace import LaplaceMLPClassifier

    X, y = load_breast_cancer(return_X_y=True)
    clf = LaplaceMLPClassifier(
        (3,),
        activation="relu",
        solver="lbfgs",
        alpha=0.1,
        prior_precision_scale=1.0,
        max_iter=1000,
        random_state=0,
    )
    with pytest.warns(
        ConvergenceWarning, match="line search finding no lower loss"
    ) as w:
        clf.fit(StandardScaler().fit_transform(X), y)
    assert clf.n_iter_ < 1000
    message = str(w[0].message)
    assert "ReLU's loss has kinks" in message and "max_iter" not in message


def _xor_problem(n=60):
    X = np.random.RandomState(0).normal(size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def _one_fit(hidden, **params):
    """A classifier that fits once (alpha and the prior scale fixed)."""
    from sklaplace import LaplaceMLPClassifier

    return LaplaceMLPClassifier(
        hidden, alpha=1.0, prior_precision_scale=1.0, random_state=0, **params
    )


@pytest.mark.parametrize("solver", ["newton", "newton-cg"])
def test_newton_solvers_stop_after_max_iter_iterations(solver):
    # scikit-learn's contract: n_iter_ <= max_iter (one fit: alpha and the
    # prior scale fixed, so n_iter_ counts that fit alone).
    X, y = _xor_problem()
    clf = _one_fit((5,), solver=solver, max_iter=2, tol=1e-14)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2


def test_a_relu_fit_out_of_iterations_is_advised_more_iterations():
    # Running out of max_iter is not a stall at a kink: the advice is
    # max_iter's, not the ReLU one.
    X, y = _xor_problem(40)
    clf = _one_fit((4,), activation="relu", solver="newton", max_iter=1, tol=1e-12)
    with pytest.warns(ConvergenceWarning) as record:
        clf.fit(X, y)
    messages = [str(w.message) for w in record if w.category is ConvergenceWarning]
    assert any("max_iter=1" in m for m in messages)
    assert not any("ReLU's loss has kinks" in m for m in messages)


def test_running_out_of_iterations_is_told_from_a_stall():
    # max_iter stops Newton-CG and L-BFGS short of tol: out of iterations;
    # a Newton-CG that can no longer lower the loss (tol below round-off)
    # stalled, and a converged solve is neither.
    obj, theta = make_problem("tanh", 2, (4,), n_samples=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in ("newton-cg", "lbfgs", "newton"):
            assert minimize_map(obj, theta, solver, 1e-12, 2).out_of_iterations
            assert not minimize_map(obj, theta, solver, 1e-6, 500).out_of_iterations
        stalled = minimize_map(obj, theta, "newton-cg", 1e-300, 500)
    assert stalled.n_iter < 500 and not stalled.converged
    assert not stalled.out_of_iterations


@pytest.mark.parametrize("max_iter", [1, 3])
def test_lbfgs_few_iterations_are_not_cut_short_by_the_evaluation_budget(max_iter):
    # The budget of loss evaluations grows with max_iter from a floor (20
    # beyond 4 per iteration): a handful of iterations from a far start,
    # whose line searches take several evaluations each, still all run.
    obj, theta = make_problem("elu", 3, (4, 3), n_samples=40)
    with pytest.warns(ConvergenceWarning, match=f"after {max_iter} iterations"):
        result = minimize_map(obj, 10.0 * theta, "lbfgs", 1e-14, max_iter)
    assert result.n_iter == max_iter and result.out_of_iterations


def _scipy_stopped(monkeypatch, status, message):
    """Make SciPy's L-BFGS-B return at once with ``status``, every gradient
    entry 0.5."""
    import scipy.optimize

    def stopped(fun, x0, **kwargs):
        _, gradient = fun(x0)
        return scipy.optimize.OptimizeResult(
            x=x0, fun=1.0, jac=np.full_like(gradient, 0.5), nit=7,
            status=status, message=message,
        )  # fmt: skip

    monkeypatch.setattr(scipy.optimize, "minimize", stopped)


@pytest.mark.parametrize(
    "status, activation, reason, advice",
    [
        (
            1,
            "relu",
            "did not converge after 7 iterations",
            "Increase max_iter, standardise the features if they are not, or try "
            "solver='newton-cg'.",
        ),
        (
            2,
            "relu",
            "stopped after 7 iterations, its line search finding no lower loss "
            "(ABNORMAL)",
            "ReLU's loss has kinks, where line searches stall above the minimum: "
            "activation='elu' (no kinks) may go lower.",
        ),
        (
            2,
            "tanh",
            "stopped after 7 iterations, its line search finding no lower loss "
            "(ABNORMAL)",
            "Standardise the features, increase alpha or try solver='newton-cg'.",
        ),
    ],
)
def test_lbfgs_warning_says_why_it_stopped_and_what_may_help(
    monkeypatch, status, activation, reason, advice
):
    """SciPy's status 1 is out of iterations; any other unconverged stop is
    its line search's (SciPy's bare "ABNORMAL: " quoted without its colon),
    where more iterations do not help and only ReLU is told about kinks."""
    obj, theta = make_problem(activation, 2, (3,), n_samples=20)
    _scipy_stopped(monkeypatch, status, "ABNORMAL: ")
    with pytest.warns(ConvergenceWarning) as caught:
        result = minimize_map(obj, theta, "lbfgs", 1e-8, 100)
    # A scaled gradient of 0.5 / 20 rows.
    assert str(caught[0].message) == (
        f"L-BFGS {reason}; scaled gradient 0.025 > tol=1e-08. {advice}"
    )
    assert not result.converged and result.n_iter == 7
    assert result.out_of_iterations is (status == 1)


def test_lbfgs_scaled_gradient_equal_to_tol_has_converged(monkeypatch):
    # "At most tol", as for the Newton solvers: SciPy stops where the scaled
    # max-norm is exactly tol (0.5 / 20 rows, computed the same way).
    obj, theta = make_problem("tanh", 2, (3,), n_samples=20)
    _scipy_stopped(monkeypatch, 0, "CONVERGENCE")
    tol = 0.5 / float(obj.gradient_scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = minimize_map(obj, theta, "lbfgs", tol, 100)
    assert result.converged and not result.out_of_iterations


@pytest.mark.parametrize(
    "solver, prefix",
    [("newton", "Newton iter 1: "), ("newton-cg", "Newton-CG iter 1: "),
     ("lbfgs", "L-BFGS iter: ")],
)  # fmt: skip
def test_each_solver_prints_only_when_asked(capsys, solver, prefix):
    from sklaplace._solvers import SOLVERS

    obj, theta = make_problem("tanh", 2, (3,), n_samples=30)
    SOLVERS[solver](obj, theta, 1e-6, 50)  # the solver's own default
    minimize_map(obj, theta, solver, 1e-6, 50)
    assert capsys.readouterr().out == ""
    minimize_map(obj, theta, solver, 1e-6, 50, verbose=1)
    assert capsys.readouterr().out.startswith(prefix)


def test_newton_acceptance_at_an_exactly_flat_gain_divides_the_damping_by_three():
    """A step accepted with ``rho == 0`` exactly counts as ``rho = 1``: ``mu / 3``.

    Near the optimum the loss often does not change at all in floating point
    (``actual == 0.0``, so ``rho == 0.0``) while the gradient falls: the gain
    ratio test accepts the step, and Nielsen's update must shrink the damping
    as for a full gain. Counting the exact zero as ``rho = 0`` instead gives
    the factor ``1 - (2 * 0 - 1)^3 = 2``: the damping doubles on every such
    step (a mutant ``rho >= 0`` survived; only ``rho < 0`` was tested).
    """
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    solver = _newton_at_start(obj, theta)
    loss, gradient = solver.loss_value, solver.gradient
    solver.step, solver.damping = np.zeros_like(gradient), 6.0
    # What evaluate would set.
    solver.candidate_forward = solver.forward
    solver.candidate_backprop = solver.gradient_backprop
    solver.evaluate = lambda candidate, predicted: (0.0, loss, gradient, True)
    solver.judge()
    assert solver.accepted
    np.testing.assert_allclose(solver.damping, 2.0, rtol=1e-12)
    assert solver.damping_growth == 2.0


def test_newton_cg_follows_negative_curvature_unless_told_not_to():
    """``minimize_map`` and ``SOLVERS["newton-cg"]`` follow negative curvature
    by default (their documented ``True``): from a start where CG meets it,
    their results are the followed solve's, exactly, and the other path's
    differ by far more (mutants that made either default ``False`` survived:
    every caller in the package passes the flag)."""
    from sklaplace._solvers import SOLVERS

    obj, theta = make_problem(hidden=(8,), n_samples=30, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        explicit = {
            follow: minimize_map(
                obj, theta, "newton-cg", 1e-4, 30, follow_negative_curvature=follow
            ).theta
            for follow in (True, False)
        }
        defaults = [
            minimize_map(obj, theta, "newton-cg", 1e-4, 30).theta,
            SOLVERS["newton-cg"](obj, theta, 1e-4, 30).theta,
        ]
    assert np.max(np.abs(explicit[True] - explicit[False])) > 1e-3
    for default in defaults:
        np.testing.assert_array_equal(default, explicit[True])
