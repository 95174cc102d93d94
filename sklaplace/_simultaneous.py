"""A Kronecker factor and its row prior diagonalised together.

For one layer's input factor ``A`` (``r x r``) and the prior ``d`` of its
``r`` input rows, ``S`` with ``S' B S = I`` for ``B = A + diag(d)``,
``S' A S = diag(mu)`` and ``S' diag(d) S = diag(rho)`` (so ``mu + rho =
1``): the basis :class:`~sklaplace._kron.KronBlock` works in.

Rows with no prior (``d = 0``, a flat prior) make ``mu = 1`` a repeated
eigenvalue: every vector on those rows alone has it, and LAPACK's basis
inside that space is arbitrary, and with it the EKFAC eigenvalues measured
in that basis (a reordering of the features had moved probabilities by up
to 0.11, and ``alpha=0`` had differed from ``alpha=1e-12`` by up to 0.28:
a session-61 probe). There the basis is the limit of a vanishing, equal
prior on those rows: ``A``'s own eigenvectors on them, and the other
columns ``B``-orthogonal to them (through the Schur complement of ``A``).
"""

import numpy as np
import scipy.linalg

__all__ = ["diagonalise"]


def diagonalise(A, d):
    """``S``, ``mu``, ``rho``, ``log det B``: ``S'AS = diag(mu)``, ``S'DS = diag(rho)``.

    Raises ``LinAlgError`` where ``B = A + diag(d)`` is singular to round-off:
    its Cholesky factor fails, or passes with a pivot so small that ``S'BS =
    I`` breaks (``mu + rho`` far from 1; a duplicated input column under a
    flat prior had given ``mu = rho = 0`` and a zero eigenvalue ``E``).
    """
    L = np.linalg.cholesky(A + np.diag(d))
    log_det_B = 2.0 * float(np.sum(np.log(np.diag(L))))
    flat = d == 0
    if not np.any(flat):
        S, mu, rho = _pencil(L, A, d)
        return S, np.clip(mu, 0.0, None), rho, log_det_B
    kept = ~flat
    eigenvalues, V = np.linalg.eigh(A[np.ix_(flat, flat)])
    if not eigenvalues[0] > 0:
        raise np.linalg.LinAlgError("A is singular on the rows with no prior.")
    on_flat = V / np.sqrt(eigenvalues)  # A's eigenvectors there, S'AS = I
    # The other columns, B-orthogonal to those: x = -A_ff^-1 A_fk y on the
    # flat rows, and y diagonalising the Schur complement with d there.
    coupling = (V / eigenvalues) @ (V.T @ A[np.ix_(flat, kept)])
    schur = A[np.ix_(kept, kept)] - A[np.ix_(kept, flat)] @ coupling
    schur = 0.5 * (schur + schur.T)
    S_kept, mu_kept, rho_kept = _pencil(
        np.linalg.cholesky(schur + np.diag(d[kept])), schur, d[kept]
    )
    n = int(np.sum(kept))
    S = np.zeros_like(A)
    S[np.ix_(kept, np.arange(n))] = S_kept
    S[np.ix_(flat, np.arange(n))] = -coupling @ S_kept
    S[np.ix_(flat, np.arange(n, A.shape[0]))] = on_flat
    mu = np.r_[mu_kept, np.ones(A.shape[0] - n)]
    rho = np.r_[rho_kept, np.zeros(A.shape[0] - n)]
    # As in _pencil: A nearly singular on the flat rows (a duplicated input
    # column) passes eigh with a round-off eigenvalue; then S'BS is not I.
    if not np.all(np.abs(np.einsum("ij,ij->j", S, (A + np.diag(d)) @ S) - 1.0) <= 0.5):
        raise np.linalg.LinAlgError("A + D is singular to round-off.")
    return S, np.clip(mu, 0.0, None), rho, log_det_B


def _pencil(L, A, d):
    """``S, mu, rho`` of ``A`` and ``diag(d)`` from ``L L' = A + diag(d)``."""
    half = scipy.linalg.solve_triangular(L, A, lower=True)
    C = scipy.linalg.solve_triangular(L, half.T, lower=True)  # L^-1 A L^-T
    mu, U = np.linalg.eigh(0.5 * (C + C.T))
    S = scipy.linalg.solve_triangular(L, U, lower=True, trans=1)
    rho = (S * S).T @ d  # diag(S' D S)
    if not np.all(np.abs(mu + rho - 1.0) <= 0.5):
        raise np.linalg.LinAlgError("A + D is singular to round-off.")
    return S, mu, rho
