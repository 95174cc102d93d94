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
A prior below ``FLAT_SHARE`` of a row's ``A`` rounds ``mu`` to 1 just the
same (``alpha`` 1e-16 beside a proper bias prior had differed from 0 by
0.089): such rows are built the same way, their columns then rotated to
diagonalise their tiny prior, exactly within them (the coupling to the
other columns, of that prior's order, is left out).
"""

import numpy as np
import scipy.linalg

__all__ = ["FLAT_SHARE", "diagonalise"]

#: A row whose prior is at most this share of its ``A`` is built as flat:
#: LAPACK resolves gaps in ``mu`` of about this size to about its size.
FLAT_SHARE = 1e-8


def diagonalise(A, d):
    """``S``, ``mu``, ``rho``, ``log det B``: ``S'AS = diag(mu)``, ``S'DS = diag(rho)``.

    Raises ``LinAlgError`` where ``B = A + diag(d)`` is singular to round-off:
    its Cholesky factor fails, or passes with a pivot so small that ``S'BS =
    I`` breaks (``mu + rho`` far from 1; a duplicated input column under a
    flat prior had given ``mu = rho = 0`` and a zero eigenvalue ``E``).
    """
    L = np.linalg.cholesky(A + np.diag(d))
    log_det_B = 2.0 * float(np.sum(np.log(np.diag(L))))
    # A negative prior is refused, not given a basis; with no row of no or
    # a tiny prior, LAPACK's basis is the only one (and no check is added).
    if np.any(d < 0) or not np.any(d <= FLAT_SHARE * np.diag(A)):
        S, mu, rho = _pencil(L, A, d)
    else:
        S, mu, rho = _by_levels(A, d)
        # As in _pencil: A nearly singular on the flat rows (a duplicated
        # input column) passes eigh with a round-off eigenvalue; S'BS is not I.
        if not np.all(
            np.abs(np.einsum("ij,ij->j", S, (A + np.diag(d)) @ S) - 1) <= 0.5
        ):
            raise np.linalg.LinAlgError("A + D is singular to round-off.")
    return S, np.clip(mu, 0.0, None), rho, log_det_B


def _by_levels(A, d):
    """``S, mu, rho`` with the rows of no prior first, then those of a tiny one.

    The lowest level present (``d = 0``, else ``d`` at most ``FLAT_SHARE``
    of the row's ``A``) gets ``A``'s eigenvectors on its rows (rotated to
    diagonalise a tiny prior there); the other rows, ``B``-orthogonal to
    them through the Schur complement of ``A``, are the next level's.
    """
    zero = d == 0
    flat = zero if np.any(zero) else d <= FLAT_SHARE * np.diag(A)
    if not np.any(flat):
        return _pencil(np.linalg.cholesky(A + np.diag(d)), A, d)
    eigenvalues, V = np.linalg.eigh(A[np.ix_(flat, flat)])
    if not eigenvalues[0] > 0:
        raise np.linalg.LinAlgError("A is singular on the rows with no prior.")
    on_flat = V / np.sqrt(eigenvalues)  # A's eigenvectors there, S'AS = I
    delta = np.zeros(len(eigenvalues))
    if not np.any(zero):  # a tiny prior: rotated to diagonalise it, S'BS = I
        delta, W = np.linalg.eigh(on_flat.T @ (d[flat][:, None] * on_flat))
        on_flat = (on_flat @ W) / np.sqrt(1.0 + delta)
    mu_flat, rho_flat = 1.0 / (1.0 + delta), delta / (1.0 + delta)
    kept = ~flat
    if not np.any(kept):
        return on_flat, mu_flat, rho_flat
    # The other columns, B-orthogonal to those: x = -A_ff^-1 A_fk y on the
    # flat rows, and y diagonalising the Schur complement with d there.
    coupling = (V / eigenvalues) @ (V.T @ A[np.ix_(flat, kept)])
    schur = A[np.ix_(kept, kept)] - A[np.ix_(kept, flat)] @ coupling
    S_kept, mu_kept, rho_kept = _by_levels(0.5 * (schur + schur.T), d[kept])
    n = int(np.sum(kept))
    S = np.zeros_like(A)
    S[np.ix_(kept, np.arange(n))] = S_kept
    S[np.ix_(flat, np.arange(n))] = -coupling @ S_kept
    S[np.ix_(flat, np.arange(n, A.shape[0]))] = on_flat
    return S, np.r_[mu_kept, mu_flat], np.r_[rho_kept, rho_flat]


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
