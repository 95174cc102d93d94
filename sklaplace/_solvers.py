"""MAP solvers: dense Newton, Newton-CG and L-BFGS on the negative log posterior.

All stop when the *scaled* gradient ``max_i |dL/dtheta_i| / sum_n s_n`` (the
gradient of the per-sample average objective) is at most ``tol``.
"""

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from sklaplace._backend import (
    NotPositiveDefiniteError,
    cholesky,
    plus_scaled_identity,
    solve_triangular,
    to_numpy,
)
from sklaplace._curvature import check_finite_curvature, exact_hessian
from sklaplace._newton_cg import NewtonCGSolver
from sklaplace._trust_region import MapResult, TrustRegionSolver
from sklaplace._warnings import warn

__all__ = [
    "MapResult",
    "NewtonSolver",
    "SOLVERS",
    "minimize_lbfgs",
    "minimize_map",
]

#: Smallest Levenberg-Marquardt damping once one is needed: a rejection or
#: a failed Cholesky from 0 must raise it to something that doubles.
MIN_DAMPING = 1e-12


class NewtonSolver(TrustRegionSolver):
    """Newton's method with Levenberg-Marquardt trust-region damping.

    Each iteration forms the exact Hessian ``H`` (second-order backprop) and
    solves ``(H + mu I) step = -gradient`` by Cholesky. ``mu`` is raised
    until the Cholesky succeeds, so every step is a descent direction even
    where ``H`` is indefinite, far from the optimum. The step is accepted by
    the ratio ``rho`` of the actual to the predicted decrease of the loss,
    and ``mu`` is updated by Nielsen's rule (Madsen, Nielsen & Tingleff 2004,
    "Methods for non-linear least squares problems", eq. 2.21): it shrinks
    after good steps and vanishes near the optimum, where the iteration is a
    pure Newton method and converges quadratically.

    The loop is :meth:`TrustRegionSolver.solve`; every step's docstring
    says what it sets, after scikit-learn's ``_newton_solver.py``.

    Parameters
    ----------
    objective : NegLogPosterior
    tol : float
        Tolerance on the scaled gradient.
    max_iter : int
        Maximum number of Newton iterations (Hessian evaluations).
    verbose : int, default=0
        Print one line per iteration when positive.
    """

    max_trials = 60  # damping increases per iteration before giving up

    def setup(self, theta):
        """Set ``theta``, ``loss_value``, ``gradient(_norm)``, ``damping``."""
        self.start(theta)
        self.damping, self.damping_growth = None, 2.0

    def update_curvature(self):
        """Set ``hessian`` (exact, prior included) and, at first, ``damping``."""
        xp = self.objective.xp
        self.hessian = self.objective.constrained_curvature(
            exact_hessian(self.objective, self.theta)
        )
        check_finite_curvature(xp, self.hessian)  # no damping repairs an inf
        if self.damping is None:  # Nielsen's start: tau * max(diag H), tau = 1e-3
            self.damping = 1e-3 * float(
                xp.max(xp.abs(xp.linalg.diagonal(self.hessian)))
            )

    def propose(self, trial=0):
        """Set ``step = -(H + damping I)^{-1} gradient``; raise ``damping`` until PD.

        Every trial solves anew (a rejection raised the damping). Sets
        ``step`` to ``None`` if no finite damping gives a positive definite
        matrix (the damping overflowed).
        """
        xp = self.objective.xp
        factor = None
        while factor is None and np.isfinite(self.damping):
            # H, H + damping I and its factor (with the blocks that build H:
            # the five of sklaplace._memory.SOLVER_DENSE_MATRICES).
            shifted = plus_scaled_identity(xp, self.hessian, self.damping)
            try:
                factor = cholesky(xp, shifted)
            except NotPositiveDefiniteError:
                self.damping = max(2.0 * self.damping, MIN_DAMPING)
        if factor is None:
            self.step = None
            return
        half = solve_triangular(xp, factor, -self.gradient[:, None], lower=True)
        self.step = solve_triangular(xp, factor, half, lower=True, trans=True)[:, 0]

    def judge(self):
        """Accept or reject ``step`` by the gain ratio; set ``accepted``, ``damping``.

        On acceptance also sets ``theta``, ``loss_value``, ``gradient``,
        ``gradient_norm`` (:meth:`TrustRegionSolver.evaluate` judges the step).
        """
        xp = self.objective.xp
        candidate = self.theta + self.step
        # Model decrease: -(g's + s'Hs/2), with H s = -g - mu s.
        g_step = float(xp.sum(self.gradient * self.step))
        predicted = -0.5 * g_step + 0.5 * self.damping * float(
            xp.sum(self.step * self.step)
        )
        rho, loss, gradient, self.accepted = self.evaluate(candidate, predicted)
        if self.accepted:
            self.move_to(candidate, loss, gradient)
            rho = min(rho, 1.0) if rho > 0 else 1.0
            self.damping *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            self.damping_growth = 2.0
        else:
            self.damping = max(self.damping * self.damping_growth, MIN_DAMPING)
            self.damping_growth *= 2.0

    def progress(self):
        """Return the end of a verbose line: the damping."""
        return f"damping {self.damping:.2g}"


def _record_iterations(evaluated, history, losses, scale, verbose):
    """Return a callback recording the scaled gradient and loss of each iterate.

    SciPy calls it once per iteration; the last evaluation is the new iterate.
    """

    def callback(intermediate_result):
        history.append(evaluated[-1])
        losses.append(float(intermediate_result.fun) / scale)
        if verbose:
            print(
                f"L-BFGS iter: loss {intermediate_result.fun:.10g}, "
                f"scaled gradient {history[-1]:.3e}"
            )

    return callback


def minimize_lbfgs(objective, theta, tol, max_iter, verbose=0):
    """L-BFGS-B (SciPy); only ``theta`` and the gradient cross to the host.

    Returns
    -------
    result : MapResult
    """
    xp = objective.xp
    scale = float(objective.gradient_scale)
    evaluated = []  # scaled gradient at every evaluation, line searches included

    def loss_gradient(theta_host):
        # The line search's trial points may overflow the logits (features of
        # 1e150); SciPy rejects their non-finite loss, and NumPy's warnings
        # of it (thousands per fit) would only flood the user.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, gradient = objective.loss_gradient(
                xp.asarray(theta_host, dtype=theta.dtype)
            )
        gradient = to_numpy(gradient).astype(np.float64)
        evaluated.append(float(np.max(np.abs(gradient))) / scale)
        return float(loss), gradient

    start_loss, start_gradient = objective.loss_gradient(theta)
    history = [float(np.max(np.abs(to_numpy(start_gradient)))) / scale]
    losses = [float(start_loss) / scale]

    result = scipy.optimize.minimize(
        loss_gradient,
        to_numpy(theta).astype(np.float64),
        method="L-BFGS-B",
        jac=True,
        options={
            "maxiter": max_iter,
            "maxfun": 4 * max_iter + 20,
            "gtol": tol * scale,
            # Never stop on the loss change: only the gradient says "stationary".
            "ftol": 0.0,
            "maxcor": 20,
        },
        callback=_record_iterations(evaluated, history, losses, scale, verbose),
    )
    gradient_norm = float(np.max(np.abs(result.jac))) / scale
    converged = gradient_norm <= tol
    if not converged:
        # SciPy's status 1: out of iterations; otherwise its line search found
        # no lower loss ("ABNORMAL"), where more iterations do not help.
        if result.status == 1:
            reason = f"did not converge after {result.nit} iterations"
            advice = (
                "Increase max_iter, standardise the features if they are not, "
                "or try solver='newton-cg'"
            )
        else:
            reason = (
                f"stopped after {result.nit} iterations, its line search finding "
                f"no lower loss ({result.message.strip(': ')})"
            )
            advice = (
                "ReLU's loss has kinks, where line searches stall above the "
                "minimum: activation='elu' (no kinks) may go lower"
                if objective.activation == "relu"
                else "Standardise the features, increase alpha or try "
                "solver='newton-cg'"
            )
        warn(
            f"L-BFGS {reason}; scaled gradient {gradient_norm:.3g} > tol={tol:g}. "
            f"{advice}.",
            ConvergenceWarning,
        )
    return MapResult(
        xp.asarray(result.x, dtype=theta.dtype),
        float(result.fun),
        gradient_norm,
        int(result.nit),
        converged,
        history,
        losses,
        out_of_iterations=not converged and result.status == 1,
    )


def _newton(objective, theta, tol, max_iter, verbose=0):
    return NewtonSolver(objective, tol, max_iter, verbose).solve(theta)


def _newton_cg(objective, theta, tol, max_iter, verbose=0, follow=True):
    return NewtonCGSolver(objective, tol, max_iter, verbose, follow).solve(theta)


SOLVERS = {"newton": _newton, "newton-cg": _newton_cg, "lbfgs": minimize_lbfgs}


def minimize_map(
    objective, theta, solver, tol, max_iter, verbose=0, follow_negative_curvature=True
):
    """Find the MAP with the named solver; return a :class:`MapResult`.

    ``follow_negative_curvature`` is Newton-CG's (:class:`NewtonCGSolver`);
    the other solvers ignore it.
    """
    if solver == "newton-cg":
        follow = follow_negative_curvature
        return _newton_cg(objective, theta, tol, max_iter, verbose, follow)
    return SOLVERS[solver](objective, theta, tol, max_iter, verbose)
