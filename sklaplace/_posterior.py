"""Laplace posteriors ``N(theta_map, P^{-1})``: full, diagonal, Kronecker, last layer.

(And the sample-space one MacKay's updates may run on,
:class:`~sklaplace._low_rank.LowRankPosterior`, structure ``"lowrank"``.)

A posterior knows only how to factor its precision ``P``, its log
determinant, and the functional variance ``J P^{-1} J'`` of the logits
(laplace-torch's split between curvature and posterior structure). Its
arrays are NumPy, so a fitted estimator pickles and predicts anywhere; each
method takes the namespace ``xp`` to compute in and moves them there.

Every structure has one interface (``n_params``, ``log_det_precision``,
``functional_variance(xp, J)`` with ``J`` over all ``n_params`` parameters,
``with_prior_change(xp, delta)`` with one ``delta`` per parameter,
``pivot_ratio``, ``covariance_diagonal``) and is chosen from
:data:`POSTERIORS` by ``hessian_structure``: :class:`FullPosterior`,
:class:`DiagPosterior`, :class:`~sklaplace._kron.KronPosterior` (and
``"lowrank"``, above); ``subset_of_weights="last_layer"`` wraps any of them
in :class:`~sklaplace._last_layer.LastLayerPosterior`. The full and
diagonal ones, the two that pruning reads, also give ``precision_diagonal``
and ``conditioned_on_zero``, and the diagonal one ``pinned`` (no variance
at pruned parameters, for their factored Jacobians).
"""

import numpy as np

from sklaplace._backend import (
    FIRST_JITTER,
    NotPositiveDefiniteError,
    add_to_diagonal,
    cholesky,
    pin_to_identity,
    plus_scaled_identity,
    solve_triangular,
    tenfold_jitters,
    to_numpy,
)
from sklaplace._curvature import (
    CURVATURE_BUILDERS,
    FACTORED_CURVATURE_BUILDERS,
    check_finite_curvature,
)
from sklaplace._jacobian import FactoredJacobian, diagonal_variance
from sklaplace._kron import KronPosterior
from sklaplace._last_layer import LastLayerPosterior, last_layer_objective
from sklaplace._low_rank import LowRankPosterior
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = [
    "DiagPosterior",
    "FullPosterior",
    "KronPosterior",
    "LastLayerPosterior",
    "POSTERIORS",
    "laplace_posterior",
]

# A pivot below this fraction of the precision's largest diagonal entry counts
# as numerically singular: the threshold of the near-singular warning (the
# first jitter tried where the Cholesky fails, FIRST_JITTER, is the same).
SINGULAR_RTOL = FIRST_JITTER


class FullPosterior:
    """Full-covariance Laplace posterior stored as the Cholesky factor of ``P``.

    Parameters
    ----------
    cholesky_factor : ndarray of shape (n_params, n_params)
        Lower-triangular ``L`` with ``P = L L'``.
    """

    structure = "full"
    accepts_factored_jacobian = True
    # What a near-singular warning measures (see pivot_ratio).
    pivot_what = "its smallest Cholesky pivot is {:.2g} of its largest diagonal entry"

    def __init__(self, cholesky_factor):
        self.cholesky_factor = cholesky_factor

    @classmethod
    def from_precision(cls, xp, precision):
        """Factor a precision matrix; raises :class:`NotPositiveDefiniteError`."""
        return cls(to_numpy(cholesky(xp, precision)))

    @property
    def n_params(self):
        """Dimension of the posterior."""
        return self.cholesky_factor.shape[0]

    def log_det_precision(self):
        """``log det P = 2 sum_i log L_ii``."""
        return 2.0 * float(np.sum(np.log(np.diag(self.cholesky_factor))))

    def functional_variance(self, xp, J):
        """``J_n P^{-1} J_n'`` for each sample, shape (n_samples, n_outputs, n_outputs).

        Computed as ``V' V`` with ``V = L^{-1} J'`` (one triangular solve for
        the whole batch), never by inverting ``P``. ``J`` is an array or a
        :class:`~sklaplace._jacobian.FactoredJacobian` (made dense here).
        """
        if isinstance(J, FactoredJacobian):
            J = J.dense(xp)
        n_samples, n_outputs, n_params = J.shape
        L = xp.asarray(self.cholesky_factor)
        V = solve_triangular(xp, L, xp.reshape(J, (-1, n_params)).T, lower=True)
        V = xp.reshape(V.T, (n_samples, n_outputs, n_params))
        return V @ xp.permute_dims(V, (0, 2, 1))

    def with_prior_change(self, xp, delta):
        """Posterior with precision ``P + diag(delta)`` (a new prior, same data).

        ``P + D = L (I + L^{-1} D L^{-T}) L'``: the new factor is ``L`` times
        the bracket's, and ``L L'`` is not formed again. Re-forming it had
        moved the log determinant of a nearly singular posterior by up to 2
        nats, or made it not positive definite, against exact rational
        arithmetic, which this form meets to 1e-9 (tests/test_posterior.py). Raises
        :class:`NotPositiveDefiniteError` if ``P + D`` is not positive definite.
        """
        # In ``xp``: on a GPU the W^3 solves and factorisation run there.
        # Temporaries are dropped as soon as they are used: the fit counts
        # the n_params x n_params matrices held at once (sklaplace._memory).
        L = xp.asarray(self.cholesky_factor)
        change = xp.asarray(to_numpy(delta), dtype=L.dtype)
        inverse = solve_triangular(xp, L, xp.eye(L.shape[0], dtype=L.dtype))
        inner = inverse * change[None, :]
        inner = inner @ inverse.T  # L^{-1} D L^{-T}; its lower triangle is read
        del inverse
        inner = cholesky(xp, add_to_diagonal(xp, inner, xp.ones_like(change)))
        return FullPosterior(to_numpy(L @ inner))

    def pivot_ratio(self):
        """Smallest squared Cholesky pivot over the largest diagonal of ``P``.

        ``L_ii^2`` is the precision left in direction ``i`` once the earlier
        ones are known; below ``SINGULAR_RTOL`` the variances along it, and
        anything that divides by them, are mostly round-off (condition number
        >= 1e10). ``diag(P)`` is the squared row norms of ``L``.
        """
        L = self.cholesky_factor
        return float(np.min(np.diag(L) ** 2) / np.max(self.precision_diagonal()))

    def precision_diagonal(self):
        """Return ``diag(P)``: the squared row norms of ``L`` (no ``n x n`` array)."""
        L = self.cholesky_factor
        return np.einsum("ij,ij->i", L, L)

    def conditioned_on_zero(self, fixed, released=()):
        """Posterior of the other parameters given ``theta[fixed] = 0``.

        The conditional precision is ``P`` restricted to the free block; the
        fixed block is replaced by the identity (it carries no variance once
        the Jacobian's fixed columns are zeroed, and adds 0 to ``log det``).
        ``released``: slices of a softmax's flat shifts whose unit curvature
        ``u u'`` (``1/K`` on each ``K x K`` block) is taken off first, the
        rows that ``fixed`` pins (:func:`~sklaplace._objective.flat_shift_rows`).
        If round-off leaves it indefinite (a nearly singular ``P``), the
        smallest tenfold jitter that factorises it is added, with a
        :class:`~sklaplace.exceptions.LaplaceApproximationWarning`.
        """
        L = self.cholesky_factor
        precision = L @ L.T
        for block in released:
            precision[block, block] -= 1.0 / (block.stop - block.start)
        precision = pin_to_identity(np, precision, fixed)
        try:
            return FullPosterior.from_precision(np, precision)
        except NotPositiveDefiniteError:
            # A free block of a (nearly) singular precision, rebuilt from its
            # factor, can lose definiteness to round-off.
            posterior, jitter = _jittered(np, FullPosterior, precision)
            warn(
                "The conditioned posterior precision is numerically singular; "
                f"added a jitter of {jitter:.3g} to its diagonal.",
                LaplaceApproximationWarning,
            )
            return posterior

    def covariance_diagonal(self, xp, block=256):
        """``diag(P^{-1})``: squared column norms of ``L^{-1}``.

        ``L^{-1}`` is formed ``block`` columns at a time, and each block by
        forward substitution over blocks of rows, so that no array beyond
        ``n_params x block`` is held (a triangular solve on a trailing
        sub-matrix of ``L`` copies it). ``L^{-1}`` is lower triangular:
        the columns from ``start`` on are zero above row ``start``, and
        their substitution starts there (1,210 parameters: about half the
        time of solving every column in full).
        """
        L = xp.asarray(self.cholesky_factor)
        n = L.shape[0]
        parts = []
        for start in range(0, n, block):
            width = min(block, n - start)
            # Rows start.. of the columns start..start + width of L^{-1}.
            columns = xp.zeros((n - start, width), dtype=L.dtype)
            for top in range(start, n, block):
                bottom = min(top + block, n)
                rows = slice(top - start, bottom - start)
                rhs = -(L[top:bottom, start:top] @ columns[: top - start, :])
                if top == start:  # the identity's columns, in their first rows
                    rhs = rhs + xp.eye(bottom - top, width, dtype=L.dtype)
                diagonal = L[top:bottom, top:bottom]
                columns[rows, :] = solve_triangular(xp, diagonal, rhs)
            parts.append(xp.sum(columns * columns, axis=0))
        return xp.concat(parts)


class DiagPosterior:
    """Diagonal Laplace posterior: one precision per parameter.

    Parameters
    ----------
    precision : ndarray of shape (n_params,)
        Positive diagonal of ``P``.
    """

    structure = "diag"
    accepts_factored_jacobian = True

    def __init__(self, precision):
        self.precision = precision

    @classmethod
    def from_precision(cls, xp, precision):
        """Check positivity; raises :class:`NotPositiveDefiniteError`."""
        precision = to_numpy(precision)
        if not np.all(np.isfinite(precision)) or np.any(precision <= 0):
            raise NotPositiveDefiniteError(
                "A diagonal precision entry is not positive."
            )
        return cls(precision)

    @property
    def n_params(self):
        """Dimension of the posterior."""
        return self.precision.shape[0]

    def log_det_precision(self):
        """``sum_i log P_ii``."""
        return float(np.sum(np.log(self.precision)))

    def functional_variance(self, xp, J):
        """``J_n diag(1/P) J_n'`` per sample, shape (n, n_outputs, n_outputs).

        ``J`` is an array or a :class:`~sklaplace._jacobian.FactoredJacobian`
        (:func:`~sklaplace._jacobian.diagonal_variance`).
        """
        return diagonal_variance(xp, J, 1.0 / xp.asarray(self.precision))

    def with_prior_change(self, xp, delta):
        """Posterior with precision ``P + diag(delta)`` (a new prior, same data)."""
        return DiagPosterior.from_precision(np, self.precision + to_numpy(delta))

    def precision_diagonal(self):
        """Return ``diag(P)`` itself."""
        return self.precision

    def pivot_ratio(self):
        """Return 1.0: ``1 / P_ii`` is exact, however small ``P_ii`` is."""
        return 1.0

    def conditioned_on_zero(self, fixed, released=()):
        """Posterior of the other parameters given ``theta[fixed] = 0``.

        ``released`` is ignored: a diagonal precision has no unit curvature
        along a softmax's flat shifts to take off.
        """
        return DiagPosterior(np.where(fixed, 1.0, self.precision))

    def pinned(self, fixed):
        """Posterior with no variance at ``fixed`` (their precision infinite).

        What zeroing ``J``'s columns there gives :meth:`functional_variance`;
        not a posterior to factor or take ``log det`` of.
        """
        return DiagPosterior(np.where(fixed, np.inf, self.precision))

    def covariance_diagonal(self, xp):
        """``1 / P_ii``."""
        return 1.0 / xp.asarray(self.precision)


#: Posterior class of each ``hessian_structure``; ``subset_of_weights=
#: "last_layer"`` wraps it in :class:`LastLayerPosterior`.
POSTERIORS = {
    "full": FullPosterior,
    "diag": DiagPosterior,
    "kron": KronPosterior,
    "lowrank": LowRankPosterior,
}


# What makes a posterior precision (nearly) singular, and its cures: a
# weight's curvature grows with its feature's squared scale, so features on
# scales 1e5 apart give curvatures 1e10 apart.
_SINGULAR_ADVICE = (
    "Standardised features (a weight's curvature grows with the square of its "
    "feature's scale), a larger alpha or bias_prior_precision, or fewer hidden "
    "units avoid this."
)


def _warn_if_near_singular(posterior):
    """Warn when a factorisation succeeded with a tiny pivot (see ``pivot_ratio``).

    The warning names what the ratio measures in the posterior's own words,
    its ``pivot_what``.
    """
    ratio = posterior.pivot_ratio()
    if ratio < SINGULAR_RTOL:
        smallest = posterior.pivot_what  # the class's own measure
        warn(
            f"The posterior precision is nearly singular ({smallest.format(ratio)}): "
            "variances along the weakly determined directions are dominated by "
            f"round-off. {_SINGULAR_ADVICE}",
            LaplaceApproximationWarning,
        )


def _jittered(xp, posterior_class, precision, total_weight=0.0):
    """Factorise ``precision + jitter I`` for the smallest tenfold jitter that works.

    A precision zero to round-off against the data's total weight has no
    scale to jitter by: refused (the jitter had been 2e-308, the variances
    1e308, overflowing in every prediction).
    """
    diagonal = precision if precision.ndim == 1 else xp.linalg.diagonal(precision)
    largest = float(xp.max(xp.abs(diagonal)))
    if np.isfinite(largest) and not largest > np.finfo(np.float64).eps * total_weight:
        raise ValueError(
            "The posterior precision is zero to round-off (largest diagonal "
            f"entry {largest:.3g}): the data determine none of the parameters at "
            "the MAP and the prior is flat, so the Laplace posterior does not "
            "exist. This happens when the network separates the data and its "
            "units saturate; use alpha > 0 or alpha='evidence'."
        )
    for jitter in tenfold_jitters(largest):
        jittered = plus_scaled_identity(xp, precision, jitter)
        try:
            return posterior_class.from_precision(xp, jittered), jitter
        except NotPositiveDefiniteError:
            pass
    raise NotPositiveDefiniteError(
        f"The posterior precision is not positive definite even with a jitter of "
        f"{jitter:.3g} on its diagonal."
    )


def laplace_posterior(objective, theta_map, hessian, structure, subset="all"):
    """Curvature at the MAP, factorised once, with documented fallbacks.

    1. The requested curvature (``"exact"`` or ``"ggn"``) in the requested
       structure (``"full"``, ``"diag"``, ``"kron"`` or ``"lowrank"``, the
       tuning's sample-space one) is factorised; a
       full one whose smallest squared Cholesky pivot is below ``1e-10`` of
       its largest diagonal entry (see ``FullPosterior.pivot_ratio``) is
       kept, with a :class:`LaplaceApproximationWarning`.
    2. If the exact Hessian is not positive definite there (the MAP found
       numerically need not be a strict minimum of a network's loss), a
       :class:`LaplaceApproximationWarning` is raised and the GGN is used.
       The Kronecker factorisation exists for the GGN only: ``"exact"``
       with ``"kron"`` uses the GGN, with the same warning.
    3. If the GGN itself is numerically singular (e.g. ``alpha=0`` with
       redundant units), a jitter ``delta * I`` is added, starting at
       ``1e-10`` of the largest diagonal entry and growing tenfold until the
       factorisation succeeds, with a warning (the Kronecker posterior adds
       it to a layer's prior the same way).

    With ``subset="last_layer"`` all this applies to the last layer on the
    MAP's features (:func:`~sklaplace._last_layer.last_layer_objective`),
    where the exact Hessian is the GGN, and the result is wrapped in a
    :class:`LastLayerPosterior`.

    A curvature that is not finite (it overflowed) raises ``ValueError``.

    Returns
    -------
    posterior : FullPosterior, DiagPosterior, KronPosterior, LowRankPosterior
        or LastLayerPosterior
    curvature : str
        The curvature actually used: ``"exact"`` or ``"ggn"``.
    jitter : float
        The jitter added (0.0 if none).
    """
    if subset == "last_layer" and objective.layout.n_layers > 1:
        sub, offset = last_layer_objective(objective, theta_map)
        # The logits are linear in the last layer: its exact Hessian is its
        # GGN, which every structure has (no Kronecker fallback warning).
        posterior, _, jitter = laplace_posterior(
            sub, theta_map[offset:], "ggn", structure
        )
        other = to_numpy(objective.prior_precision[:offset])
        return LastLayerPosterior(posterior, other), hessian, jitter
    xp = objective.xp
    posterior_class = POSTERIORS[structure]
    kinds = ["exact", "ggn"] if hessian == "exact" else ["ggn"]
    for kind in kinds:
        builders = {**CURVATURE_BUILDERS, **FACTORED_CURVATURE_BUILDERS}
        if (kind, structure) not in builders:
            _warn_exact_fallback(structure)
            continue
        curvature = builders[kind, structure](objective, theta_map)
        check_finite_curvature(xp, curvature)
        # A full or diagonal curvature is constrained once, here: the jitter
        # below starts from this same matrix (constraining it again, in
        # place, had added the flat softmax direction twice).
        dense = hasattr(posterior_class, "from_precision")  # not Kronecker factors
        if dense:
            curvature = objective.constrained_curvature(curvature)
        try:
            posterior = (
                posterior_class.from_precision(xp, curvature)
                if dense
                else posterior_class.from_curvature(objective, curvature, theta_map)
            )
        except NotPositiveDefiniteError:
            if kind == "exact":
                _warn_exact_fallback(structure)
            continue
        jitter = getattr(posterior, "jitter", 0.0)  # a Kronecker factor's
        if jitter > 0.0:
            _warn_jitter(jitter, posterior.jitter_where)
        else:
            _warn_if_near_singular(posterior)
        return posterior, kind, jitter
    if not hasattr(posterior_class, "from_precision"):  # jittered its own way
        raise NotPositiveDefiniteError(
            f"The {structure!r} posterior's precision is not positive definite."
        )
    total_weight = float(objective.gradient_scale)
    posterior, jitter = _jittered(xp, posterior_class, curvature, total_weight)
    _warn_jitter(jitter, "to its diagonal")
    return posterior, "ggn", jitter


def _warn_jitter(jitter, where):
    warn(
        "The posterior precision is numerically singular; added a jitter of "
        f"{jitter:.3g} {where} (posterior_jitter_). {_SINGULAR_ADVICE}",
        LaplaceApproximationWarning,
    )


def _warn_exact_fallback(structure):
    factored = structure in ("kron", "lowrank")  # GGN forms only
    reason = {
        "kron": "the Kronecker factorisation exists for the GGN only",
        "lowrank": "the sample-space posterior exists for the GGN only",
    }.get(
        structure,
        "the exact Hessian is not positive definite at the MAP (the "
        "optimiser stopped where the loss is not locally convex)",
    )
    remedy = (
        "Pass hessian='ggn', or hessian_structure='full' for the exact Hessian"
        if factored
        else "Tighter tol or hessian='ggn' avoids this"
    )
    warn(
        f"{reason[0].upper()}{reason[1:]}; the posterior uses the generalised "
        f"Gauss-Newton matrix instead (curvature_='ggn'). {remedy}.",
        LaplaceApproximationWarning,
    )
