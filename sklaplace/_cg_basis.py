"""CG's residuals kept orthogonal: full reorthogonalisation.

Preconditioned CG's residuals are orthogonal in the ``M^{-1}`` inner
product in exact arithmetic; in floating point they lose it within tens of
steps (on digits, hidden (16,), the normalised residuals of one solve were
0.6 from orthonormal by 20 steps), and CG then needs more steps for the same
forcing term, as if it searched directions it had already searched.
:class:`ResidualBasis` keeps the normalised preconditioned residuals and
orthogonalises each new residual against them, as the Lanczos method with
full reorthogonalisation does (Golub & Van Loan 2013, section 10.3.1;
Saad 2003, section 6.7.3, for the equivalence of CG's residuals and the
Lanczos vectors).
"""

import numpy as np

from sklaplace._memory import DEFAULT_MEMORY_BUDGET

__all__ = ["ResidualBasis"]


class ResidualBasis:
    """CG's residuals so far, for orthogonalising the next against them.

    Keeps ``v_i = z_i / sqrt(r_i' z_i)`` with ``z_i = M^{-1} r_i``: the
    residuals ``r_i`` normalised in the ``M^{-1}`` inner product (``v_i' M
    v_j = delta_ij``), as rows of an array allocated once per solve. Rows
    stop being kept once they would pass
    :data:`~sklaplace._memory.DEFAULT_MEMORY_BUDGET`; later residuals are
    orthogonalised against the kept ones only.

    Parameters
    ----------
    xp : namespace
        The residuals' array namespace.
    m : array of shape (n_params,)
        The preconditioner's positive diagonal ``M``.
    max_vectors : int
        Residuals CG may produce (rows to allocate), at most.
    """

    def __init__(self, xp, m, max_vectors):
        self.m = m
        n_params = m.shape[0]
        budget = max(1, DEFAULT_MEMORY_BUDGET // (8 * n_params))
        self.rows = xp.empty((min(max_vectors, budget), n_params), dtype=m.dtype)
        self.n_kept = 0

    def add(self, z, rz):
        """Keep the residual whose ``z = M^{-1} r`` and ``r' z`` are given."""
        if self.n_kept < self.rows.shape[0] and rz > 0:
            self.rows[self.n_kept, :] = z / float(np.sqrt(rz))
            self.n_kept += 1

    def orthogonalise(self, residual):
        """Return ``residual`` less its ``M^{-1}``-components along the kept ones.

        ``r - sum_i (v_i' r) M v_i``, with ``v_i' r`` the ``M^{-1}`` inner
        product of ``r`` with the ``i``-th normalised residual.
        """
        kept = self.rows[: self.n_kept, :]
        return residual - self.m * ((kept @ residual) @ kept)
