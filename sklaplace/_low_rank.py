"""The exact GGN posterior of a network with fewer data rows than parameters.

The GGN is ``G' G`` with ``G`` the stacked rows ``R_n J_n`` (``Lambda_n =
R_n' R_n``; :func:`~sklaplace._curvature.ggn_rows`): ``m = n_samples *
n_outputs`` rows (one per sample for one logit, K for K logits), so
with a diagonal prior ``A`` the posterior precision ``P = A + G' G`` is
the prior plus a rank-``m`` term. Where ``m`` is far
below ``n_params`` (a few hundred documents of thousands of terms) every
quantity the evidence and the predictive need follows from the ``m x m``
matrix ``M = I + G A^{-1} G'`` (Woodbury; matrix determinant lemma):

* ``log det P = log det A + log det M``;
* ``P^{-1} = A^{-1} - A^{-1} G' M^{-1} G A^{-1}``, so ``diag(P^{-1})`` and
  ``J P^{-1} J'`` cost ``m^2 n_params``, with no ``n_params x n_params``
  array.

This is the full posterior, exactly, where the Kronecker and diagonal ones
approximate it; their ``gamma`` (the effective number of parameters) had
come out too large on wide rows, and MacKay's ``alpha`` with it.
"""

import numpy as np

from sklaplace._backend import (
    NotPositiveDefiniteError,
    add_to_diagonal,
    cholesky,
    solve_triangular,
    tenfold_jitters,
    to_numpy,
)
from sklaplace._jacobian import diagonal_variance, jacobian_matmul

__all__ = ["LowRankPosterior"]


def _jittered_factor(xp, inner):
    """Return the Cholesky factor of ``inner + I`` (as NumPy) and the jitter added.

    Round-off can leave ``G A^{-1} G'`` indefinite where a prior is weak
    against the curvature (a bias prior of 1e-16); the smallest tenfold
    jitter that factorises it is added and returned: ``laplace_posterior``
    warns of it in the words of :attr:`LowRankPosterior.jitter_where` (a fit
    does not issue the warnings of a posterior it only tunes on).
    """
    # Where I + G A^{-1} G' (positive definite, its eigenvalues at least 1)
    # fails to factorise, its condition (about the largest curvature over
    # the weakest prior) has passed 1/eps.
    largest = 1.0 + float(xp.max(xp.abs(inner)))
    for jitter in [0.0, *tenfold_jitters(largest)[:-1]]:
        ones = xp.full((inner.shape[0],), 1.0 + jitter, dtype=inner.dtype)
        try:
            factor = cholesky(xp, add_to_diagonal(xp, inner + 0.0, ones))
            return to_numpy(factor), jitter
        except NotPositiveDefiniteError:
            pass
    raise NotPositiveDefiniteError("I + G A^-1 G' does not factorise.")


class LowRankPosterior:
    """Laplace posterior with precision ``diag(prior) + G' G``.

    Parameters
    ----------
    prior : ndarray of shape (n_params,)
        Positive diagonal ``A`` of the prior precision.
    rows : ndarray of shape (m, n_params)
        ``G``: the curvature's rows.
    xp : module, default=numpy
        Namespace the ``m x m`` Gram and its factor are computed in (held as
        NumPy, as every posterior's arrays are).
    """

    structure = "lowrank"
    accepts_factored_jacobian = True
    jitter_where = "to the sample-space matrix I + G A^-1 G'"
    pivot_what = (
        "the sample-space matrix I + G A^-1 G' has eigenvalues down to {:.2g} "
        "of their sum"
    )

    def __init__(self, prior, rows, xp=np):
        prior = to_numpy(prior)
        with np.errstate(over="ignore"):  # a prior of 1e-320: A^-1 overflows
            unusable = np.any(prior <= 0) or not np.all(np.isfinite(1.0 / prior))
        if unusable:
            raise NotPositiveDefiniteError(
                "The low-rank posterior needs a positive prior precision on "
                "every parameter."
            )
        rows = xp.asarray(rows)
        # M = I + G A^-1 G' in xp (on a GPU the m^2 n_params Gram runs there).
        inner = (rows / xp.asarray(prior)[None, :]) @ xp.permute_dims(rows, (1, 0))
        if not bool(xp.all(xp.isfinite(inner))):
            raise NotPositiveDefiniteError("I + G A^-1 G' is not finite.")
        self.prior, self.rows = prior, to_numpy(rows)
        self.inner_factor, self.jitter = _jittered_factor(xp, inner)

    @classmethod
    def from_curvature(cls, objective, rows, theta):
        """Build the posterior of ``objective`` from its :func:`ggn_rows` ``rows``.

        A fixed parameter gets a unit prior (its column of ``rows`` is zero):
        no variance once the Jacobian's fixed columns are zeroed, nothing
        added to ``log det``. A zero prior precision elsewhere (a flat bias
        prior) raises :class:`NotPositiveDefiniteError`: ``M`` needs ``A``'s
        inverse.
        """
        prior = objective.prior_precision
        if objective.fixed is not None:
            prior = objective.xp.where(objective.fixed, 1.0, prior)
        return cls(prior, rows, objective.xp)

    @property
    def n_params(self):
        """Dimension of the posterior."""
        return self.prior.shape[0]

    def log_det_precision(self):
        """``log det A + log det M``."""
        log_det_inner = 2.0 * np.sum(np.log(np.diag(self.inner_factor)))
        return float(np.sum(np.log(self.prior)) + log_det_inner)

    def covariance_diagonal(self, xp):
        """``diag(P^{-1}) = 1/a - colsums((L^{-1} G A^{-1})^2)``."""
        inverse = 1.0 / xp.asarray(self.prior)
        G = xp.asarray(self.rows)
        V = solve_triangular(
            xp, xp.asarray(self.inner_factor), G * inverse[None, :], lower=True
        )
        return inverse - xp.sum(V * V, axis=0)

    def functional_variance(self, xp, J):
        """``J_n P^{-1} J_n'`` per sample, shape (n_samples, n_outputs, n_outputs).

        The prior's ``J A^{-1} J'`` less ``U' U`` with ``U = L^{-1} G A^{-1} J'``.
        ``J`` is an array or a :class:`~sklaplace._jacobian.FactoredJacobian`.
        """
        variance = diagonal_variance(xp, J, xp.asarray(1.0 / self.prior))
        scaled = xp.asarray(self.rows / self.prior[None, :])
        projected = jacobian_matmul(xp, J, xp.permute_dims(scaled, (1, 0)))
        n_samples, n_outputs, m = projected.shape
        U = solve_triangular(
            xp,
            xp.asarray(self.inner_factor),
            xp.permute_dims(xp.reshape(projected, (-1, m)), (1, 0)),
            lower=True,
        )
        U = xp.reshape(xp.permute_dims(U, (1, 0)), (n_samples, n_outputs, m))
        return variance - U @ xp.permute_dims(U, (0, 2, 1))

    def with_prior_change(self, xp, delta):
        """Posterior with precision ``P + diag(delta)`` (a new prior, same data)."""
        return LowRankPosterior(self.prior + to_numpy(delta), self.rows, xp)

    def pivot_ratio(self):
        """Return ``1 / trace(M)``, a lower bound on ``M``'s inverse condition.

        ``M``'s eigenvalues are at least 1 and sum to its trace; the
        Woodbury forms lose about its condition's digits to round-off (a
        weak prior's, not a weakly determined direction's, as the full
        posterior's pivots measure).
        """
        L = self.inner_factor
        return float(1.0 / np.einsum("ij,ij->", L, L))
