"""What the two Newton solvers share: the loop, the gain ratio, the stop.

Dense Newton (:class:`~sklaplace._solvers.NewtonSolver`, damping) and
Newton-CG (:class:`~sklaplace._newton_cg.NewtonCGSolver`, a trust region)
differ in the curvature they set up and in how they propose a step; they
iterate, judge a step, measure the gradient and give up the same way, here.
"""

from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sklaplace._warnings import warn

__all__ = ["FLAT_STEP_GRADIENT_DROP", "MapResult", "TrustRegionSolver"]


#: The share by which the scaled gradient must fall for a step whose loss
#: change is round-off to count as progress (:meth:`TrustRegionSolver.evaluate`).
FLAT_STEP_GRADIENT_DROP = 0.1


class MapResult(NamedTuple):
    """Outcome of a MAP solve.

    Attributes
    ----------
    theta : array of shape (n_params,)
        The (approximate) MAP, in the objective's namespace.
    loss : float
        ``L(theta)``, summed over samples.
    gradient_norm : float
        Scaled gradient at ``theta`` (see module docstring).
    n_iter : int
        Iterations taken, a last one that found no acceptable step included
        (SciPy's L-BFGS does not count that one).
    converged : bool
        Whether ``gradient_norm <= tol``.
    gradient_history : list of float
        Scaled gradient at the start and after every iteration that moved
        (one fewer than ``n_iter + 1`` after a stall).
    loss_history : list of float
        ``L(theta) / sum_n s_n`` (scaled as the gradient) at the points of
        ``gradient_history``.
    n_hessian_products : int
        Hessian-vector products taken (``"newton-cg"``; 0 for the others).
    out_of_iterations : bool
        Whether ``max_iter`` stopped it short of ``tol`` (not a stall, where
        no step lowers the loss, e.g. at ReLU kinks).
    """

    theta: object
    loss: float
    gradient_norm: float
    n_iter: int
    converged: bool
    gradient_history: list
    loss_history: list
    n_hessian_products: int = 0
    out_of_iterations: bool = False


class TrustRegionSolver:
    """Base of the Newton solvers: the loop, gain-ratio test and stopping rule.

    A subclass provides ``setup(theta)`` (calling :meth:`start`),
    ``update_curvature()``, ``propose(trial)`` (set ``step``: trial 0 after
    a curvature update, later ones after a rejection), ``judge()`` (set
    ``accepted``, and move on acceptance) and ``progress()`` (the end of a
    verbose line), and the class attributes ``name`` and ``max_trials``.

    Parameters
    ----------
    objective : NegLogPosterior
    tol : float
        Tolerance on the scaled gradient ``max_i |dL/dtheta_i| / sum_n s_n``.
    max_iter : int
        Maximum Newton iterations.
    verbose : int, default=0
        Print one line per iteration when positive.
    """

    name = "Newton"
    n_products = 0  # Hessian-vector products (Newton-CG counts its own)
    #: Whether the curvature set-up reads the gradient's backward pass, so
    #: that it is kept with each point (Newton-CG's does; dense Newton's
    #: forms its own).
    keeps_backprop = False

    def __init__(self, objective, tol, max_iter, verbose=0):
        self.objective = objective
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose

    def start(self, theta):
        """Set ``theta``, ``forward``, ``loss_value``, ``gradient(_norm)``, histories.

        ``forward`` is the forward pass at ``theta`` and ``gradient_backprop``
        the gradient's backpropagated residuals there (None unless
        ``keeps_backprop``), kept for the curvature the next iteration
        builds.
        """
        obj = self.objective
        self.theta = theta
        self.scale = float(obj.gradient_scale)
        self.forward = obj.forward(theta)
        self.loss_value, self.gradient, self.gradient_backprop = self._loss_gradient(
            theta, self.forward
        )
        self.loss_value = float(self.loss_value)
        self.gradient_norm = self._scaled_norm(self.gradient)
        self.history = [self.gradient_norm]
        self.losses = [self.loss_value / self.scale]

    def _loss_gradient(self, theta, fwd):
        """``(loss, gradient, backward pass or None)`` at ``theta``."""
        if self.keeps_backprop:
            return self.objective.loss_gradient(theta, fwd, with_backprop=True)
        return (*self.objective.loss_gradient(theta, fwd), None)

    def _scaled_norm(self, gradient):
        xp = self.objective.xp
        return float(xp.max(xp.abs(gradient))) / self.scale

    def evaluate(self, candidate, predicted):
        """Loss at ``candidate`` against the ``predicted`` decrease.

        Returns ``(rho, loss, gradient, accept)``: ``rho`` is the actual over
        the predicted decrease (``-inf`` where the loss or the gradient is
        not finite), and
        the step is accepted when ``rho > 1e-4``.
        Sets ``candidate_forward`` and ``candidate_backprop``, the forward
        pass and the gradient's backpropagated residuals at ``candidate``
        (None unless ``keeps_backprop``).
        Near the optimum the loss may stop changing in floating point; a step
        is then accepted when the gradient falls by at least
        ``FLAT_STEP_GRADIENT_DROP`` (a Newton step near a smooth optimum
        cuts it far more; at a ReLU kink, where it barely moves, dense
        Newton had accepted 2,968 steps in a row that each raised the loss
        by round-off, to ``max_iter``, instead of stopping at the kink).
        """
        # A long step may overflow the logits (features of 1e150): the loss
        # is then not finite and the step rejected below, so NumPy's
        # warnings of it would only flood the user (thousands per fit).
        with np.errstate(over="ignore", invalid="ignore"):
            self.candidate_forward = self.objective.forward(candidate)
            loss, gradient, self.candidate_backprop = self._loss_gradient(
                candidate, self.candidate_forward
            )
        loss, gradient_norm = float(loss), self._scaled_norm(gradient)
        actual = self.loss_value - loss
        rounding = 16 * np.finfo(np.float64).eps * max(abs(self.loss_value), 1.0)
        rho = actual / predicted if predicted > 0 else -1.0
        finite = bool(np.isfinite(loss) and np.isfinite(gradient_norm))
        if not finite:
            # The worst of ratios, so the region shrinks: a NaN loss had
            # given a NaN ratio, which neither shrank nor grew it, and
            # Newton-CG had retried the same step until it gave up. (A
            # gradient that overflowed no longer warns, so it is refused here.)
            rho = -np.inf
        flat_but_better = (
            abs(actual) <= rounding
            and gradient_norm < (1.0 - FLAT_STEP_GRADIENT_DROP) * self.gradient_norm
        )
        accept = finite and (rho > 1e-4 or flat_but_better)
        return rho, loss, gradient, accept

    def move_to(self, candidate, loss, gradient):
        """Make ``candidate`` (the last one evaluated) the iterate."""
        self.theta, self.loss_value, self.gradient = candidate, loss, gradient
        self.forward = self.candidate_forward
        self.gradient_backprop = self.candidate_backprop
        self.gradient_norm = self._scaled_norm(gradient)

    def check_convergence(self):
        """Set ``converged``."""
        self.converged = self.gradient_norm <= self.tol

    def warn_if_not_converged(self, n_iter, stalled):
        """Raise the solvers' common :class:`ConvergenceWarning` if not converged.

        A stall of a ReLU network says why: its loss has kinks, where the
        quadratic model fails (see the benchmark report), and more
        iterations do not help.
        """
        if self.converged:
            return
        reason = (
            f"made no progress at iteration {n_iter}"
            if stalled
            else f"did not converge in max_iter={self.max_iter} iterations"
        )
        kinks = stalled and self.objective.activation == "relu"
        advice = (
            "ReLU's loss has kinks, where Newton steps stall above the minimum: "
            "activation='elu' (no kinks) or solver='lbfgs' may go lower"
            if kinks
            else "Increase max_iter, standardise the features if they are not, "
            "increase alpha, or try solver='lbfgs'"
        )
        warn(
            f"{self.name} solver {reason} (scaled gradient "
            f"{self.gradient_norm:.3g} > tol={self.tol:g}). {advice}.",
            ConvergenceWarning,
        )

    def step_is_negligible(self):
        """Whether there is no ``step`` or it no longer changes ``theta``.

        Where the loss is not smooth (a ReLU kink at the optimum) every step
        is rejected and shortened; once ``theta + step == theta`` in floating
        point (or no step exists) no trial can make progress.
        """
        if self.step is None:
            return True
        return bool(self.objective.xp.all(self.theta + self.step == self.theta))

    def solve(self, theta):
        """Run the iterations from ``theta``.

        Returns
        -------
        result : MapResult
        """
        self.setup(theta)  # 1. loss, gradient, the solver's own state
        self.check_convergence()
        n_iter, stalled = 0, False
        while not self.converged and n_iter < self.max_iter:
            n_iter += 1
            self.update_curvature()  # 2. the curvature at theta
            self.accepted = False
            for trial in range(self.max_trials):
                self.propose(trial)  # 3. a step
                if self.step_is_negligible():
                    break
                self.judge()  # 4. gain ratio: accept or not
                if self.accepted:
                    break
            if not self.accepted:
                stalled = True
                break
            self.history.append(self.gradient_norm)
            self.losses.append(self.loss_value / self.scale)
            self.check_convergence()  # 5. scaled gradient <= tol
            if self.verbose:
                print(
                    f"{self.name} iter {n_iter}: loss {self.loss_value:.10g}, "
                    f"scaled gradient {self.gradient_norm:.3e}, {self.progress()}"
                )
        self.warn_if_not_converged(n_iter, stalled)
        return MapResult(
            self.theta,
            self.loss_value,
            self.gradient_norm,
            n_iter,
            self.converged,
            self.history,
            self.losses,
            self.n_products,
            not (self.converged or stalled),
        )
