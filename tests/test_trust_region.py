"""The Newton solvers' shared gain-ratio test and stopping rule, on a stub.

The stub objective reads its loss and gradient off the candidate itself
(``theta = [loss, gradient]``), so each case of the acceptance rule is set
up exactly: a step is accepted when ``rho = actual / predicted > 1e-4``
(``rho = -1`` where no decrease is predicted), or when the loss is flat to
``16 eps max(|L|, 1)`` and the scaled gradient falls strictly.
"""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklaplace._preconditioners import DiagonalPreconditioner
from sklaplace._trust_region import TrustRegionSolver

EPS = np.finfo(np.float64).eps


def _loss_gradient(theta, forward=None, with_backprop=False):
    values = theta if forward is None else forward
    loss, gradient = values[0], np.array([values[1]])
    return (loss, gradient, None) if with_backprop else (loss, gradient)


STUB = SimpleNamespace(
    xp=np,
    activation="tanh",
    gradient_scale=2.0,
    forward=lambda theta: theta,
    loss_gradient=_loss_gradient,
)


def _solver(loss=1.0, gradient=0.5):
    """A solver at an iterate of the given loss and gradient."""
    solver = TrustRegionSolver(STUB, tol=1e-8, max_iter=10)
    solver.start(np.array([loss, gradient]))
    return solver


def _accepts(candidate_loss, candidate_gradient, predicted, loss=1.0):
    rho, _, _, accept = _solver(loss).evaluate(
        np.array([candidate_loss, candidate_gradient]), predicted
    )
    return rho, accept


def test_start_measures_the_scaled_gradient():
    """The scaled gradient is ``max |g| / gradient_scale``."""
    solver = _solver(gradient=-0.5)
    assert solver.gradient_norm == 0.25 and solver.history == [0.25]


def test_a_step_is_accepted_on_its_gain_ratio():
    """``rho`` is the actual over the predicted decrease; accepted above 1e-4."""
    rho, accept = _accepts(1.0 - 0.05, 0.5, predicted=0.1)
    assert rho == pytest.approx(0.5, rel=1e-12) and accept
    # A thousandth of the predicted decrease is still a gain (rho = 1e-3) ...
    assert _accepts(1.0 - 1e-4, 0.5, predicted=0.1)[1]
    # ... a hundred-thousandth is not (rho = 1e-5), gradient unchanged.
    rho, accept = _accepts(1.0 - 1e-6, 0.5, predicted=0.1)
    assert rho == pytest.approx(1e-5, rel=1e-6) and not accept


def test_a_gain_ratio_of_exactly_1e_4_is_rejected():
    # The test is strict, rho > 1e-4: a loss of 1e-4 falling to 0 against a
    # predicted decrease of 1 gives rho = 1e-4 exactly (1e-4 - 0 and
    # 1e-4 / 1 are exact), far above the flat window.
    rho, accept = _accepts(0.0, 0.5, predicted=1.0, loss=1e-4)
    assert rho == 1e-4 and not accept


def test_a_real_decrease_far_short_of_the_prediction_is_not_rescued():
    # A decrease of 1e-6 (far outside the flat window, 3.6e-15 at L = 1)
    # against a predicted 0.1 (rho = 1e-5) is rejected though the gradient
    # falls: only a loss flat to round-off lets the gradient decide.
    rho, accept = _accepts(1.0 - 1e-6, 0.1, predicted=0.1)
    assert rho == pytest.approx(1e-5, rel=1e-6) and not accept


def test_a_loss_that_rises_is_rejected_even_if_the_gradient_falls():
    """A rise far above round-off (1e-9 against 3.6e-15) is never accepted."""
    assert not _accepts(1.0 + 1e-9, 0.1, predicted=0.1)[1]
    assert not _accepts(1.0 + 1e-3, 0.0, predicted=0.1)[1]


def test_a_flat_loss_is_accepted_only_where_the_gradient_falls():
    """Near the optimum the loss stops changing: the gradient decides."""
    assert _accepts(1.0, 0.1, predicted=0.1)[1]
    assert not _accepts(1.0, 0.5, predicted=0.1)[1]  # equal: no progress
    assert not _accepts(1.0, -0.5, predicted=0.1)[1]  # same norm, other sign
    assert not _accepts(1.0, 0.6, predicted=0.1)[1]
    # Flat means within 16 eps max(|L|, 1) (3.6e-15 at L = 1, 3.6e-11 at
    # L = 1e4): 4 eps passes, 64 eps does not.
    assert _accepts(1.0 + 4 * EPS, 0.1, predicted=0.1)[1]
    assert not _accepts(1.0 + 64 * EPS, 0.1, predicted=0.1)[1]
    big = 1e4
    assert _accepts(big + 4 * EPS * big, 0.1, predicted=0.1, loss=big)[1]
    assert not _accepts(big + 64 * EPS * big, 0.1, predicted=0.1, loss=big)[1]
    # Below |L| = 1 the window stays 16 eps (round-off of the sum's terms,
    # not of L): at L = 1e-3 a rise of 8 eps is flat, one of 32 eps is not.
    small = 1e-3
    assert _accepts(small + 8 * EPS, 0.1, predicted=0.1, loss=small)[1]
    assert not _accepts(small + 32 * EPS, 0.1, predicted=0.1, loss=small)[1]


def test_the_flat_window_is_16_eps_and_closed():
    """At ``L = 1`` a rise of exactly ``16 eps`` is still flat (the window is
    closed), one of ``17 eps`` is not: each difference is exact in float64,
    so only the rule decides (a window of ``< 16 eps`` or of ``17 eps``
    fails it)."""
    assert _accepts(1.0 + 16 * EPS, 0.1, predicted=0.1)[1]
    assert not _accepts(1.0 + 17 * EPS, 0.1, predicted=0.1)[1]
    # The same for a fall far short of the prediction (rho about 4e-15).
    assert _accepts(1.0 - 16 * EPS, 0.1, predicted=1.0)[1]
    assert not _accepts(1.0 - 17 * EPS, 0.1, predicted=1.0)[1]


def test_without_a_predicted_decrease_rho_is_minus_one():
    """``predicted <= 0``: no division; only a flat, better step passes."""
    for predicted in (0.0, -0.1):
        rho, accept = _accepts(1.0, 0.1, predicted)
        assert rho == -1.0 and accept
        rho, accept = _accepts(1.0 + 0.05, 0.1, predicted)
        assert rho == -1.0 and not accept


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_loss_is_rejected(bad):
    """Overflow at the candidate rejects it, whatever its gradient, with the
    worst gain ratio, so that a trust region shrinks (a NaN ratio had left
    Newton-CG's region as it was, and the same step was retried)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rho, accept = _accepts(bad, 0.0, predicted=0.1)
    assert not accept and rho == -np.inf


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_gradient_is_rejected_with_a_lower_loss(bad):
    """A candidate whose loss falls but whose gradient overflowed is refused
    like a non-finite loss (the overflow no longer warns, so nothing else
    would say so; accepted, its NaN norm would never meet ``tol``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho, accept = _accepts(1.0 - 0.05, bad, predicted=0.1)
    assert not accept and rho == -np.inf


def _kept_backprop_stub():
    def loss_gradient(theta, fwd=None, with_backprop=False):
        values = _loss_gradient(theta, fwd)
        return (*values, ("backprop at", theta[0])) if with_backprop else values

    return SimpleNamespace(**{**vars(STUB), "loss_gradient": loss_gradient})


def test_a_rejected_candidate_leaves_the_kept_backprop():
    """The iterate keeps its own backward pass when a candidate is refused:
    the next curvature is built at the iterate, not at the candidate."""
    solver = TrustRegionSolver(_kept_backprop_stub(), tol=1e-8, max_iter=10)
    solver.keeps_backprop = True
    solver.start(np.array([1.0, 0.5]))
    *_, accepted = solver.evaluate(np.array([2.0, 0.1]), predicted=0.5)
    assert not accepted and solver.candidate_backprop == ("backprop at", 2.0)
    assert solver.gradient_backprop == ("backprop at", 1.0)


def test_a_solver_whose_curvature_forms_its_own_pass_keeps_none():
    # Dense Newton forms its own: keeping one would only hold memory.
    solver = TrustRegionSolver(_kept_backprop_stub(), tol=1e-8, max_iter=10)
    solver.start(np.array([1.0, 0.5]))
    solver.evaluate(np.array([0.5, 0.1]), predicted=0.5)
    assert solver.gradient_backprop is None and solver.candidate_backprop is None


def test_a_candidate_that_overflows_is_rejected_without_numpy_warnings():
    """The objective overflows at a long step (features of 1e150): the
    candidate is refused by its non-finite loss, and NumPy's warnings of
    the overflow, thousands per fit, do not reach the user."""

    def overflowing(theta, forward=None, with_backprop=False):
        big = np.float64(1e300)
        values = big * big - big * big, np.array([big * big])  # inf - inf: NaN
        return (*values, None) if with_backprop else values

    solver = TrustRegionSolver(
        SimpleNamespace(**{**vars(STUB), "loss_gradient": overflowing}),
        tol=1e-8,
        max_iter=10,
    )
    solver.loss_value, solver.gradient_norm, solver.scale = 1.0, 0.25, 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho, _, _, accept = solver.evaluate(np.array([0.0, 0.0]), 0.1)
    assert not accept and rho == -np.inf


def test_newton_cg_shrinks_its_region_after_a_nan_loss():
    """The ratio of a NaN loss shrinks Newton-CG's region to a quarter of the
    step, as an infinite loss's does (a NaN ratio had left it as it was, and
    the same step was retried until the solver gave up)."""
    from sklaplace._newton_cg import NewtonCGSolver

    solver = object.__new__(NewtonCGSolver)  # only the region's state
    solver.objective = STUB
    solver.preconditioner = DiagonalPreconditioner(np.ones(2))
    for bad in (np.nan, np.inf):
        solver.step, solver.radius = np.array([3.0, 4.0]), 5.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rho = _accepts(bad, 0.0, predicted=0.1)[0]
        solver.update_region(rho)
        assert solver.radius == pytest.approx(1.25, rel=1e-12)


def test_the_warning_says_why_the_solver_stopped():
    """Stalled: no progress at iteration n; else max_iter; none if converged."""
    solver = _solver()
    solver.check_convergence()
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration 3"):
        solver.warn_if_not_converged(3, stalled=True)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=10"):
        solver.warn_if_not_converged(10, stalled=False)
    done = _solver(gradient=1e-9)
    done.check_convergence()
    assert done.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done.warn_if_not_converged(2, stalled=True)


def test_a_step_lost_in_round_off_is_one_that_leaves_theta_as_it_is():
    """Negligible means ``theta + step == theta`` in float64: at ``theta = 1``
    a step of ``eps / 2`` rounds away (ties to even), but ``-eps / 2`` does
    not (the spacing below 1 is ``eps / 2``), so only the first stalls."""
    solver = _solver()
    solver.theta, solver.step = np.array([1.0]), np.array([EPS / 2])
    assert solver.step_is_negligible()
    solver.step = np.array([-EPS / 2])
    assert not solver.step_is_negligible()
    solver.step = None
    assert solver.step_is_negligible()


@pytest.mark.parametrize("keeps_backprop", [True, False])
def test_each_point_costs_one_forward_pass(keeps_backprop):
    """The loss and gradient at the start and at a candidate take the forward
    pass just computed there (kept for the curvature): computing it again
    would double every evaluation's cost. Where the solver keeps the
    gradient's backward pass (Newton-CG's), it follows the iterate; dense
    Newton's curvature forms its own, and none is kept."""
    passes = []

    def forward(theta):
        passes.append(theta)
        return theta

    def loss_gradient(theta, fwd=None, with_backprop=False):
        values = _loss_gradient(theta, forward(theta) if fwd is None else fwd)
        return (*values, ("backprop at", theta[0])) if with_backprop else values

    solver = TrustRegionSolver(
        SimpleNamespace(
            **{**vars(STUB), "forward": forward, "loss_gradient": loss_gradient}
        ),
        tol=1e-8,
        max_iter=10,
    )
    solver.keeps_backprop = keeps_backprop  # True: as Newton-CG's
    kept = (lambda at: ("backprop at", at)) if keeps_backprop else (lambda at: None)
    solver.start(np.array([1.0, 0.5]))
    assert len(passes) == 1 and solver.forward is passes[0]
    assert solver.gradient_backprop == kept(1.0)
    _, loss, gradient, accepted = solver.evaluate(np.array([0.5, 0.1]), predicted=0.5)
    assert len(passes) == 2 and solver.candidate_forward is passes[1]
    assert accepted and solver.candidate_backprop == kept(0.5)
    solver.move_to(passes[1], loss, gradient)
    assert solver.gradient_backprop == kept(0.5)


class _Scripted(TrustRegionSolver):
    """Each trial proposes the same ``step`` (the loss falls by exactly
    ``-step[0]``); only trial ``accept_at`` is taken. Curvature updates are
    counted, and one past ``max_iter`` raises: a loop that would not stop
    fails at once rather than hanging the test run."""

    name = "Scripted"
    max_trials = 3

    def __init__(self, *args, accept_at=0, step=(-0.5, -0.5), **kwargs):
        super().__init__(*args, **kwargs)
        self.accept_at, self.trials = accept_at, []
        self.fixed_step, self.updates = np.asarray(step), 0

    def setup(self, theta):
        self.start(theta)

    def update_curvature(self):
        self.updates += 1
        if self.updates > self.max_iter:
            raise RuntimeError("an iteration past max_iter")

    def propose(self, trial):
        self.trial = trial
        self.trials.append(trial)
        self.step = self.fixed_step  # by default to loss 0.5, gradient 0

    def judge(self):
        candidate = self.theta + self.step
        predicted = -float(self.step[0])
        _, loss, gradient, accept = self.evaluate(candidate, predicted)
        self.accepted = accept and self.trial == self.accept_at
        if self.accepted:
            self.move_to(candidate, loss, gradient)

    def progress(self):
        return ""


def test_a_scaled_gradient_equal_to_tol_has_converged():
    # max |g| / gradient_scale = 0.5 / 2 = 0.25: converged at tol = 0.25.
    solver = _Scripted(STUB, tol=0.25, max_iter=5, accept_at=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = solver.solve(np.array([1.0, 0.5]))
    assert result.converged and result.n_iter == 0 and solver.trials == []


def test_the_last_of_max_trials_is_tried():
    solver = _Scripted(STUB, tol=1e-8, max_iter=5, accept_at=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = solver.solve(np.array([1.0, 0.5]))
    assert solver.trials == [0, 1, 2]
    assert result.converged and result.n_iter == 1 and result.loss == 0.5


class _Idle(_Scripted):
    """Proposes a step too small to change ``theta``; records any judgement."""

    def propose(self, trial):
        self.trials.append(trial)
        self.step = np.zeros(2)

    def judge(self):
        self.judged = True
        self.accepted = False


def test_a_step_that_cannot_change_theta_stalls_at_once():
    """A step lost in round-off is not judged: the iteration stalls, which is
    not running out of iterations, and the warning says so."""
    solver = _Idle(STUB, tol=1e-8, max_iter=5, accept_at=0)
    solver.judged = False
    with pytest.warns(ConvergenceWarning, match="made no progress at iteration 1"):
        result = solver.solve(np.array([1.0, 0.5]))
    assert solver.trials == [0] and not solver.judged
    assert result.n_iter == 1 and not result.converged
    assert len(result.gradient_history) == result.n_iter  # no point was added
    assert not result.out_of_iterations


def test_the_solvers_are_quiet_unless_asked(capsys):
    solver = _Scripted(STUB, tol=1e-8, max_iter=5, accept_at=0)
    assert solver.solve(np.array([1.0, 0.5])).converged
    assert capsys.readouterr().out == ""


KINKS = (
    "ReLU's loss has kinks, where Newton steps stall above the minimum: "
    "activation='elu' (no kinks) or solver='lbfgs' may go lower."
)
COMMON = (
    "Increase max_iter, standardise the features if they are not, "
    "increase alpha, or try solver='lbfgs'."
)


@pytest.mark.parametrize(
    "activation, stalled, advice",
    [("relu", True, KINKS), ("relu", False, COMMON), ("tanh", True, COMMON)],
    # Ids without the advice's text: "lbfgs" in an id had let the mutation
    # script's default ``-k "not lbfgs"`` deselect the test.
    ids=["relu-stalled", "relu-out-of-iterations", "tanh-stalled"],
)
def test_the_warning_advises_what_may_help(activation, stalled, advice):
    """Only a ReLU network that stalled is told about kinks (and ELU); else
    the common advice, the same for every solver. It ends the message."""
    solver = TrustRegionSolver(
        SimpleNamespace(**{**vars(STUB), "activation": activation}), 1e-8, 10
    )
    solver.start(np.array([1.0, 0.5]))
    solver.check_convergence()
    with pytest.warns(ConvergenceWarning) as caught:
        solver.warn_if_not_converged(3, stalled=stalled)
    assert str(caught[0].message).endswith(
        f"(scaled gradient 0.25 > tol=1e-08). {advice}"
    )


def test_a_solver_that_converges_takes_no_further_iteration():
    """The first step lands on a zero gradient (scaled gradient 0 <= tol):
    the solver stops after that one iteration, with one curvature update and
    two points in its history, though ``max_iter`` allows five.
    (Kills: ``and`` -> ``or`` in the loop's condition, which had gone on to
    iterate after convergence.)"""
    solver = _Scripted(STUB, tol=1e-8, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = solver.solve(np.array([1.0, 0.5]))
    assert solver.updates == 1
    assert result.converged and result.n_iter == 1
    assert result.gradient_history == [0.25, 0.0]
    assert result.loss == 0.5 and not result.out_of_iterations


def test_max_iter_bounds_a_solver_that_never_converges():
    """Every step lowers the loss by 0.25 and leaves the scaled gradient at
    0.25 > tol: the solver stops after exactly ``max_iter = 3`` iterations
    (loss 1 - 3 * 0.25 = 0.25), runs out of iterations rather than stalls,
    and says so. (Kills: ``and`` -> ``or`` in the loop's condition, which
    had never stopped.)"""
    solver = _Scripted(STUB, tol=1e-8, max_iter=3, step=[-0.25, 0.0])
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=3"):
        result = solver.solve(np.array([1.0, 0.5]))
    assert solver.updates == 3 and result.n_iter == 3
    assert result.loss == 0.25 and not result.converged
    assert result.out_of_iterations
    assert result.gradient_history == [0.25] * 4
