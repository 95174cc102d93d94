"""CG's residuals kept orthogonal: full reorthogonalisation.

Preconditioned CG's residuals are orthogonal in the ``M^{-1}`` inner
product in exact arithmetic; in floating point they lose it within tens of
steps (one CG solve of a digits fit, hidden (16,): the normalised residuals
were 0.6 from orthonormal by 20 steps; the benchmark report, session 71),
and CG then needs more steps for the same forcing term, as if it searched
directions it had already searched. :class:`ResidualBasis` keeps the
normalised preconditioned residuals and orthogonalises each new residual
against them, as the Lanczos method with full reorthogonalisation does
(Golub & Van Loan 2013, section 10.3.1; Saad 2003, section 6.7.1, for CG's
residuals as the Lanczos vectors).
"""

import numpy as np
from array_api_compat import device

from sklaplace import _memory

__all__ = ["ResidualBasis"]


class ResidualBasis:
    """CG's residuals so far, for orthogonalising the next against them.

    Keeps ``v_i = z_i / sqrt(r_i' z_i)`` with ``z_i = M^{-1} r_i``: the
    residuals ``r_i`` normalised in the ``M^{-1}`` inner product (``v_i' M
    v_j = delta_ij``), as rows of one array allocated for the solver and
    reused by each CG solve (:meth:`restart`). It holds as many rows as CG
    may take steps, up to :data:`~sklaplace._memory.DEFAULT_MEMORY_BUDGET`
    (read when the basis is made); later residuals are orthogonalised
    against the kept ones only.

    Parameters
    ----------
    xp : namespace
        The residuals' array namespace.
    like : array of shape (n_params,)
        A residual-shaped array: the rows take its dtype and device.
    max_vectors : int
        Residuals one CG solve may produce (rows to allocate), at most.
    """

    def __init__(self, xp, like, max_vectors):
        n_params = like.shape[0]
        bytes_per_row = xp.finfo(like.dtype).bits // 8 * n_params
        n_rows = min(max_vectors, _memory.rows_within_budget(bytes_per_row))
        self.rows = xp.empty((n_rows, n_params), dtype=like.dtype, device=device(like))
        self.preconditioner, self.n_kept = None, 0

    def restart(self, preconditioner):
        """Forget the kept residuals; the next solve's preconditioner is ``M``.

        Parameters
        ----------
        preconditioner : DiagonalPreconditioner or KroneckerPreconditioner
            ``M`` (:mod:`~sklaplace._preconditioners`).

        Returns
        -------
        self : ResidualBasis
        """
        self.preconditioner, self.n_kept = preconditioner, 0
        return self

    def add(self, z, rz):
        """Keep the residual ``r`` whose ``z = M^{-1} r`` and ``r' z`` are given.

        Parameters
        ----------
        z : array of shape (n_params,)
        rz : float
            ``r' z``; a residual with none (zero or not finite) is not kept.
        """
        if self.n_kept < self.rows.shape[0] and rz > 0:
            self.rows[self.n_kept, :] = z / float(np.sqrt(rz))
            self.n_kept += 1

    def orthogonalise(self, residual):
        """Return ``residual`` less its ``M^{-1}``-components along the kept ones.

        ``r - sum_i (v_i' r) M v_i``, with ``v_i' r`` the ``M^{-1}`` inner
        product of ``r`` with the ``i``-th normalised residual.

        Parameters
        ----------
        residual : array of shape (n_params,)

        Returns
        -------
        residual : array of shape (n_params,)
        """
        kept = self.rows[: self.n_kept, :]
        return residual - self.preconditioner.times((kept @ residual) @ kept)
