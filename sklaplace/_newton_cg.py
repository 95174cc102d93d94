"""Truncated (Hessian-free) Newton: ``solver="newton-cg"``.

Newton's equation ``H step = -gradient`` is solved approximately by
preconditioned conjugate gradients on exact Hessian-vector products
(Pearlmutter's R-operator, :func:`~sklaplace._curvature.hessp_operator`),
inside a trust region: Steihaug-Toint CG stops on the region's boundary or
along the first direction of negative curvature, so every step decreases the
quadratic model even where ``H`` is indefinite (Steihaug 1983; Nocedal &
Wright 2006, Alg. 7.2, with the preconditioned norm of Conn, Gould & Toint
2000, Alg. 7.5.1). No ``n_params x n_params`` matrix is formed: an iteration costs a
forward pass, one backward pass for the residual terms, and about two
gradients per CG step. The held-out folds' loose refits do not follow
negative curvature (:func:`~sklaplace._held_out.fold_follows_negative_curvature`).

* Preconditioner (:mod:`~sklaplace._preconditioners`): the empirical Fisher
  diagonal plus the prior, to the power 1/2; where ``n_samples *
  n_params`` reaches :data:`KRONECKER_WORK`, the rows are at least
  :data:`KRONECKER_ROWS_PER_INPUT` per input of the widest layer and no
  parameter is fixed, each layer's Kronecker-factored GGN block plus the
  prior (KFAC), which sees the correlations of a layer's inputs and of its
  units' curvature (the diagonal again, should a block not be positive
  definite).
* Forcing term (Eisenstat-Walker style; Nocedal & Wright 2006, eq. 7.3 and
  Thm. 7.2): CG stops when ``||H step + gradient|| <= eta ||gradient||`` with
  ``eta = min(0.5, sqrt(scaled gradient))``, so early iterations take few CG
  steps and the last ones converge superlinearly; CG also stops once the
  model's next scaled gradient (the residual's largest entry) is ``tol / 2``,
  so the last solves do not over-solve (Kelley 1995, section 6.3, bounds
  the forcing term below by the final tolerance for the same reason).
* Single-precision products where ``n_samples * n_params`` exceeds
  :data:`SINGLE_PRECISION_WORK` (there float32 GEMMs are 1.1-3.7x faster;
  below it the casts cost what they save): CG needs them to a few digits
  only. Double precision where the preconditioner's spread (a diagonal
  estimate of the condition number) exceeds :data:`MAX_SINGLE_SPREAD`, and
  for the rest of the fit once a doubtful step's quadratic model,
  rechecked with one double-precision product, is off by more than
  :data:`MODEL_CHECK_RTOL`.
* The alternative, Levenberg-Marquardt damped CG on generalised
  Gauss-Newton products (Martens 2010), was measured and dropped: it needed
  6-25 times more iterations on breast cancer, iris and wine and did not
  reach ``tol=1e-8`` on digits in 500 (the GGN leaves out the residual
  term, so the end is linear, not superlinear).
* CG keeps its residuals orthogonal (full reorthogonalisation,
  :class:`~sklaplace._cg_basis.ResidualBasis`): in floating point they
  lose it within tens of steps, and CG then repeats directions. It took 2%
  of a digits fit's time and saved 2-45% of the products (digits tanh
  over twelve initial weights 2%, ELU 22%, a (16, 16) network 40-45%; the
  benchmark report, session 71). Replacing a rejected step by the model's
  minimiser in the shrunk region over CG's Krylov subspace (Gould et al.
  1999), rather than the step shortened, saved 29% more on digits tanh
  (3% fewer saved with ELU) but left a saddle less often: logistic
  networks on two circles stopped at the collapsed network in 21 of 30
  fits against 8 with reorthogonalisation alone (9 before); not kept.
* CG starts from 0. Starting it from the last boundary step, decayed
  (Martens 2010, section 4.5) or at its best multiple, was measured and
  dropped: 22% and 29% fewer products on digits, the latter 29% more on
  a (64, 64) network (the benchmark report, session 68).

The solver stops when the scaled gradient ``max_i |dL/dtheta_i| / sum_n
s_n`` is at most ``tol``, as the other solvers do.
"""

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._cg_basis import ResidualBasis
from sklaplace._curvature import (
    hessp_operator,
    single_precision_input,
    squared_inputs,
)
from sklaplace._preconditioners import KroneckerFactoring, fisher_preconditioner
from sklaplace._trust_region import TrustRegionSolver

__all__ = ["NewtonCGSolver", "steihaug_cg"]

#: CG steps allowed per Newton iteration, at most (and at most ``n_params``).
MAX_CG_ITER = 250
#: ``n_samples * n_params`` (a gradient's multiply-adds) beyond which the
#: Hessian-vector products are single precision: where they pay. One exact
#: product, double / single (one thread): 0.93x at 2e5 (398 rows, W = 513),
#: 1.05x at 5e5, 1.1-1.7x from 1.2e6 to 3.4e6 (digits (16,) 0.64 / 0.39
#: ms), 3.7x at 2e7. Whole Newton-CG fits to ``tol=1e-8`` on five networks
#: with 1.2e6 to 3.4e6 were 1.0-1.5x faster (digits (16,) 1.23 / 1.03 s;
#: one needed 42% more products, as float32 round-off can cost CG steps).
#: Below the bound (breast cancer's and a 1,400-row task's default fits)
#: single precision made the fit slower and moved the evidence's alpha.
SINGLE_PRECISION_WORK = 1e6
#: Largest spread of the preconditioner (``max / min`` of the curvature's
#: diagonal before the power: a diagonal estimate of the Hessian's condition
#: number) at which the products are single precision: at most 1.3e4 on the
#: benchmark networks; 1e9 on a problem where they slowed Newton-CG (sample
#: weights 1e8, alpha 6e-5). Set on the Fisher diagonal; the Kronecker
#: blocks' diagonal (KFAC plus the prior) spread 1e2-2e3 on 784 features.
MAX_SINGLE_SPREAD = 1e5
#: Largest relative error of a step's quadratic model from single-precision
#: products before the products go double precision (their own error is
#: about 1e-6: measured 1e-7 to 7e-7 on the benchmark networks).
MODEL_CHECK_RTOL = 1e-3
#: ``n_samples * n_params`` from which the preconditioner is Kronecker-factored
#: (:class:`~sklaplace._preconditioners.KroneckerFactoring`) rather than the
#: Fisher diagonal, if the rows are also at least
#: :data:`KRONECKER_ROWS_PER_INPUT` times the widest layer's inputs: where
#: products are dear enough that the blocks (a backward pass of
#: ``n_outputs`` cotangents and small decompositions per iteration, three
#: block products per CG step) buy fewer of them.
#: Newton-CG to ``tol=1e-8``, one thread (the benchmark report, session 73):
#: digits (16,) (2.2e6) 1.9x the time (1.6x fewer products); digits (64,)
#: (8.6e6) 5.1 s against 5.8 s (2.4x fewer); a (64, 64) network on 5,000
#: rows (3.7e7) 15.3 s against 20.2 s. It is above the ``"auto"`` solver's
#: bound for Newton-CG (:data:`~sklaplace._memory.AUTO_GRADIENT_WORK`), so
#: the default estimator's fits keep the diagonal.
KRONECKER_WORK = 1e7
#: Rows per input of the widest layer below which the blocks' transforms
#: (``(fan_in + 1)^2 fan_out`` multiply-adds each, against a product's ``2
#: n_samples (fan_in + 1) fan_out`` for that layer) cost too much of a
#: product: 784 features, hidden (100,), ``tol=1e-6``: 2,000 rows (2.5 per
#: input; ``tol=1e-5``, the blocks at the power 1/2) 7.3 s against the
#: diagonal's 6.7 s, 8,000 rows (10.2) 168 s against 308 s.
KRONECKER_ROWS_PER_INPUT = 10


def _boundary_tau(xp, p, d, preconditioner, radius):
    """Positive ``tau`` with ``||p + tau d||_M = radius``."""
    Mp, Md = preconditioner.times(p), preconditioner.times(d)
    dd = float(xp.sum(d * Md))
    pd = float(xp.sum(Mp * d))
    pp = float(xp.sum(p * Mp))
    if not dd > 0:  # the direction underflowed: stay where we are
        return 0.0
    root = float(np.sqrt(max(pd * pd + dd * (radius * radius - pp), 0.0)))
    return (root - pd) / dd


def steihaug_cg(
    xp,
    hessp,
    gradient,
    preconditioner,
    radius,
    rtol,
    max_iter,
    follow_negative_curvature=True,
    max_atol=0.0,
    basis=None,
):
    """Steihaug-Toint preconditioned CG for ``min g's + s'Hs/2, ||s||_M <= radius``.

    Nocedal & Wright (2006), Alg. 7.2 with the preconditioner ``M`` and the
    trust region measured in the ``M``-norm (Conn, Gould & Toint 2000, Alg.
    7.5.1), in which the CG iterates' norm increases monotonically.
    Without ``follow_negative_curvature``, a direction of
    negative curvature ends CG where it stands, as in line-search Newton-CG
    (Nocedal & Wright 2006, Alg. 7.1): at the last iterate, or, at the
    first direction, at the preconditioned gradient step ``-M^{-1} g``
    (shortened to the region; none where ``g`` is 0), whose length the
    positive ``M`` sets rather than the boundary; the step stays near a
    saddle instead of leaving it.

    Parameters
    ----------
    hessp : callable
        ``v -> H v``.
    gradient : array of shape (n_params,)
    preconditioner : DiagonalPreconditioner or KroneckerPreconditioner
        ``M`` (:mod:`~sklaplace._preconditioners`): solved with at every
        step, and multiplied by to measure the region (for the diagonal,
        bit for bit what ``m * v`` gave).
    radius : float
        Trust-region radius, finite.
    rtol : float
        Stop when ``||H s + g|| <= rtol ||g||`` (the forcing term).
    max_iter : int
        Maximum CG steps (Hessian-vector products).
    follow_negative_curvature : bool, default=True
        Whether a direction of negative curvature is followed to the
        boundary (Steihaug-Toint) or ends CG where it stands.
    max_atol : float, default=0.0
        Stop also when ``max |H s + g| <= max_atol`` (the solver's own
        stopping test, applied to the model's next gradient).
    basis : ResidualBasis, optional
        Keeps the residuals orthogonal
        (:class:`~sklaplace._cg_basis.ResidualBasis`, restarted with
        ``preconditioner``); without it,
        they are orthogonal only until round-off takes over.

    Returns
    -------
    step : array of shape (n_params,)
    model : float
        ``g's + s'Hs/2`` (negative: the predicted decrease is ``-model``).
    status : str
        ``"converged"``, ``"boundary"``, ``"negative curvature"``,
        ``"max_iter"`` or ``"not finite"`` (a product overflowed).
    n_products : int
        Hessian-vector products taken.
    """
    step = xp.zeros_like(gradient)
    residual = gradient  # r = H s + g
    z = preconditioner.solve(residual)
    direction = -z
    rz = float(xp.sum(residual * z))
    if basis is not None:
        basis.add(z, rz)
    target = rtol * float(xp.linalg.vector_norm(gradient))
    status, n_products = "max_iter", 0
    for _ in range(max_iter):
        Hd = hessp(direction)
        n_products += 1
        curvature = float(xp.sum(direction * Hd))
        if not np.isfinite(curvature):
            status = "not finite"
            break
        if curvature <= 0 and not follow_negative_curvature:
            status = "negative curvature"
            norm = float(xp.sqrt(xp.sum(z * preconditioner.times(z))))
            if n_products == 1 and norm > 0:  # no iterate: -M^{-1} g, inside
                t = min(1.0, radius / norm)
                step, residual = t * direction, residual + t * Hd
            break
        inside = False
        if curvature > 0:
            reaches = step + (rz / curvature) * direction
            reach = float(xp.sum(reaches * preconditioner.times(reaches)))
            inside = reach < radius * radius
        if not inside:
            # Line 7 (negative curvature) or line 11 (boundary) of Alg. 7.2:
            # follow the direction to the trust-region boundary.
            tau = _boundary_tau(xp, step, direction, preconditioner, radius)
            step, residual = step + tau * direction, residual + tau * Hd
            status = "boundary" if curvature > 0 else "negative curvature"
            break
        step, residual = reaches, residual + (rz / curvature) * Hd
        if basis is not None:
            residual = basis.orthogonalise(residual)
        if (
            float(xp.linalg.vector_norm(residual)) <= target
            or float(xp.max(xp.abs(residual))) <= max_atol
        ):
            status = "converged"
            break
        z = preconditioner.solve(residual)
        rz_next = float(xp.sum(residual * z))
        if basis is not None:
            basis.add(z, rz_next)
        direction = -z + (rz_next / rz) * direction
        rz = rz_next
    # g's + s'Hs/2 = (g's + r's)/2 with r = g + H s, kept by the recursion
    # (less, with a basis, the round-off-sized components it removed).
    model = 0.5 * float(xp.sum((gradient + residual) * step))
    return step, model, status, n_products


class NewtonCGSolver(TrustRegionSolver):
    """Trust-region Newton-CG on exact Hessian-vector products (Steihaug-Toint).

    Where the Hessian is indefinite, CG follows the first direction of negative
    curvature to the trust-region boundary (unless
    ``follow_negative_curvature`` is False: the held-out folds' refits); near
    the optimum the region is inactive and the iteration is an inexact Newton
    method. The region is measured in the preconditioner's norm ``||s||_M =
    sqrt(s' M s)``; its first radius, ``sqrt(L(theta_0))``, allows a step whose
    model decrease is of the order of the loss itself (``||s||_M^2 ~ s'Hs``).
    After a poor step the radius shrinks to a quarter of the step's norm; a
    rejected step is shortened along its own direction (:meth:`backtrack`)
    rather than recomputed, so rejections cost no Hessian-vector products.
    Radius update: Nocedal & Wright (2006), Alg. 4.1. A step is accepted when
    the ratio of the actual to the predicted decrease exceeds 1e-4.

    The loop is :meth:`TrustRegionSolver.solve`; every step's docstring
    says what it sets.

    Parameters
    ----------
    objective : NegLogPosterior
    tol : float
        Tolerance on the scaled gradient.
    max_iter : int
        Maximum Newton iterations (outer iterations, each one CG solve).
    verbose : int, default=0
        Print one line per iteration when positive.
    follow_negative_curvature : bool, default=True
        Whether CG follows negative curvature to the region's boundary (out
        of a saddle) or stops where it meets it (:func:`steihaug_cg`).
    """

    name = "Newton-CG"
    max_trials = 30  # rejected steps per iteration before giving up
    keeps_backprop = True  # the residual terms of the products

    def __init__(
        self, objective, tol, max_iter, verbose=0, follow_negative_curvature=True
    ):
        super().__init__(objective, tol, max_iter, verbose)
        self.follow_negative_curvature = follow_negative_curvature

    def setup(self, theta):
        """Set ``theta``, ``loss_value``, ``gradient(_norm)``, ``radius``.

        Also the solve's state: products, CG's basis, the products' precision.
        """
        obj = self.objective
        self.start(theta)
        self.n_products = 0
        self.max_cg = min(MAX_CG_ITER, obj.layout.n_params)
        self.basis = ResidualBasis(obj.xp, theta, self.max_cg)
        # CG works on L / L(theta_0), so that products neither underflow nor
        # overflow whatever the scale of the weights (1e-300 to 1e300); the
        # first radius, 1 in those units, is sqrt(L(theta_0)).
        tiny = np.finfo(np.float64).tiny
        self.unit = 1.0 / max(abs(self.loss_value), tiny)
        self.radius = 1.0
        # Products are GEMM-bound (and single precision pays) only on
        # networks large enough; below, casting costs what it saves.
        work = obj.n_samples * obj.layout.n_params
        self.single_allowed, self.fresh_solve = work > SINGLE_PRECISION_WORK, False
        # [X, 1] in float32, formed at the first single-precision iteration,
        # and [X, 1]^2 with its column sums, at the first Fisher diagonal.
        self.single_input = self.first_squares = None
        # Kronecker-factored blocks where products are dear enough to repay
        # them, and no fixed parameter (the identity's rows) breaks a block.
        widest = max(rows for rows, _ in obj.layout.shapes)
        kronecker = (
            work >= KRONECKER_WORK
            and obj.n_samples >= KRONECKER_ROWS_PER_INPUT * widest
            and obj.fixed is None
        )
        self.kronecker = KroneckerFactoring(obj) if kronecker else None

    def update_curvature(self):
        """Set ``hessp`` at ``theta``, the ``preconditioner``, and CG's stops.

        CG's stops are ``rtol`` (the forcing term) and ``max_atol`` (the
        stopping test on the model's next gradient).
        """
        obj, xp = self.objective, self.objective.xp
        # The step's evaluation (one forward and one backward pass) serves
        # the products and the preconditioner.
        self.backprop = backprop = obj.residual_backprop(
            self.theta, self.forward, gradient_backprop=self.gradient_backprop
        )
        self.preconditioner = None
        if self.kronecker is not None:
            try:
                self.preconditioner = self.kronecker.at(
                    self.theta, self.unit, self.forward
                )
            except NotPositiveDefiniteError:  # the diagonal for the solve
                self.kronecker = None
        if self.preconditioner is None:
            if self.first_squares is None:  # the data's alone: once a solve
                self.first_squares = squared_inputs(xp, obj.X, obj.sample_weight)
            squares = self.first_squares
            self.preconditioner = fisher_preconditioner(
                obj, self.theta, self.forward, backprop[0], self.unit, squares
            )
        # Single-precision products while the curvature's spread is moderate:
        # their round-off, relative to the largest curvature, must stay small
        # against the smallest.
        spread = self.preconditioner.spread
        self.single_precision = self.single_allowed and spread <= MAX_SINGLE_SPREAD
        if self.single_precision and self.single_input is None:
            # Every later single-precision operator multiplies it.
            self.single_input = single_precision_input(xp, obj.X)
            if self.single_input is None:  # X leaves float32's range
                self.single_allowed = self.single_precision = False
        self.hessp = hessp_operator(
            obj,
            self.theta,
            "exact",
            self.forward,
            backprop,
            single_precision=self.single_precision,
            single_input=self.single_input,
        )
        # Eisenstat-Walker style forcing term (Nocedal & Wright 2006, eq. 7.3).
        # CG also stops where the quadratic model's next gradient, the
        # residual H s + g, has its largest entry at tol / 2 when scaled: the
        # stopping test itself. (A 2-norm bound on the residual that implies
        # it asks up to sqrt(n_params) times more: 13% more products over 24
        # default fits of six data sets.)
        self.rtol = min(0.5, float(np.sqrt(self.gradient_norm)))
        self.max_atol = 0.5 * self.tol * self.scale * self.unit

    def inner_solve(self):
        """Set ``step``, ``model`` and ``cg_status`` by Steihaug-Toint CG.

        CG's residuals are kept orthogonal (:mod:`~sklaplace._cg_basis`).
        """
        xp, unit, hessp = self.objective.xp, self.unit, self.hessp
        self.step, model, self.cg_status, n = steihaug_cg(
            xp,
            lambda v: unit * hessp(v),
            unit * self.gradient,
            self.preconditioner,
            self.radius,
            self.rtol,
            self.max_cg,
            self.follow_negative_curvature,
            self.max_atol,
            self.basis.restart(self.preconditioner),
        )
        self.model = model / unit
        self.n_products += n

    def step_norm(self):
        """Length of ``step`` in the region's norm, ``sqrt(s' M s)``."""
        xp, step = self.objective.xp, self.step
        return float(xp.sqrt(xp.sum(step * self.preconditioner.times(step))))

    def update_region(self, rho):
        """Shrink ``radius`` after a poor step, grow it after a good boundary step."""
        norm = self.step_norm()
        if rho < 0.25:
            self.radius = 0.25 * norm
        elif rho > 0.75 and norm >= 0.99 * self.radius:
            self.radius = 2.0 * self.radius

    def backtrack(self):
        """Shorten ``step`` to the shrunk ``radius``; set ``step`` and ``model``.

        After a rejected step no new CG solve is needed: along ``t s`` the
        model is ``t g's + t^2 s'Hs / 2``, known from the last solve
        (backtracking inside the trust region; Nocedal & Yuan 1998,
        "Combining trust region and line search techniques"). Every CG
        iterate is a descent direction (``g's < 0``), so a short enough step
        is accepted.
        """
        xp = self.objective.xp
        norm = self.step_norm()
        if not norm > 0.0:
            # The step's squares underflowed (alpha 1e300: each parameter's
            # step ~1e-300): its length reads 0, so it is dropped and the
            # solver stalls, as where no step changes theta.
            self.step = None
            return
        t = self.radius / norm
        g_step = float(xp.sum(self.gradient * self.step))
        curvature = 2.0 * (self.model - g_step)  # s'Hs
        self.step = t * self.step
        self.model = t * g_step + 0.5 * t * t * curvature

    def propose(self, trial):
        """Set ``step`` and ``model``: a CG solve first, then shorter steps."""
        self.step_from_cg = trial == 0 or self.fresh_solve
        if self.step_from_cg:
            self.fresh_solve = False
            self.inner_solve()
        else:
            self.backtrack()

    def judge(self):
        """Evaluate ``theta + step``; set ``accepted`` (and the iterate), ``radius``.

        A doubtful step (a poor ``rho``, or CG's exit along negative
        curvature) fresh from CG on single-precision products is checked
        with one double-precision product: if the quadratic model's value
        at the step was off by more than :data:`MODEL_CHECK_RTOL`, single
        precision is not enough for this problem (round-off relative to the
        largest curvature rivals the smallest: spurious negative curvature,
        steps that fail). The products are double precision from then on;
        a step that was not accepted is solved again at the same radius.
        """
        candidate = self.theta + self.step
        rho, loss, gradient, self.accepted = self.evaluate(candidate, -self.model)
        # Only a step fresh from CG: a shortened one has the same model, scaled.
        doubtful = rho < 0.25 or self.cg_status == "negative curvature"
        fresh = self.step_from_cg and self.single_precision
        if fresh and doubtful and self._model_is_off():
            self.single_allowed = self.single_precision = False
            self.single_input = None
            self.hessp = self.double_hessp
            if not self.accepted:
                self.fresh_solve = True
                return
        self.update_region(rho)
        if self.accepted:
            self.move_to(candidate, loss, gradient)

    def _model_is_off(self):
        """Whether ``model`` differs from ``g's + s'Hs/2`` in double precision.

        Sets ``double_hessp``, the double-precision operator at ``theta``.
        """
        xp, obj = self.objective.xp, self.objective
        self.double_hessp = hessp_operator(
            obj, self.theta, "exact", self.forward, self.backprop
        )
        self.n_products += 1
        step = self.step
        model = float(xp.sum(self.gradient * step)) + 0.5 * float(
            xp.sum(step * self.double_hessp(step))
        )
        return abs(model - self.model) > MODEL_CHECK_RTOL * abs(model)

    def progress(self):
        """Return the end of a verbose line: how CG ended, the products so far."""
        return f"CG {self.cg_status} ({self.n_products} Hessian-vector products so far)"
