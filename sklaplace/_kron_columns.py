"""A corrected Kronecker block under a prior its eigenbasis does not diagonalise.

A :class:`~sklaplace._kron.KronBlock` with corrected eigenvalues (EKFAC) is,
in its basis ``T = S^{-T} kron V``, ``P = T (diag(h) + diag(rho) kron I) T'``.
Another prior ``D2 = diag(d2)`` per input row, not a multiple of the fitted
one (``log_marginal_likelihood(alpha=...)`` keeps the bias prior), is ``R
kron I`` there with ``R = S' D2 S`` dense, so that

    P = T (diag(h) + R kron I) T'

is block diagonal over the columns ``j`` of ``V``: ``M_j = R + diag(h[:, j])``,
``r x r`` each. Each is decomposed, ``M_j = U_j diag(e_j) U_j'``, and the
block is exact for the same data eigenvalues ``h``: the evidence at ``d2``
is the evidence of the corrected posterior, not of a re-approximation.
Every method is the :class:`KronBlock`'s with a basis per column, ``S U_j``.
Costs ``O(c r^3)``: the eigenvalues (all the evidence needs) at once, the
bases when a prediction first needs them.
"""

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._memory import check_memory

__all__ = ["ColumnKronBlock", "log_of_positive", "vanishing"]

# A prior or a datum below this fraction of its largest is a zero of
# round-off; where both vanish (the flat softmax shift under a flat
# output-bias prior) a direction gets unit precision.
_FLAT_RTOL = 1e-12


def vanishing(values):
    """Mask of ``values`` that are zeros of round-off against their largest.

    Measured in absolute value: a negative prior is not an absent one (it
    must fail the positivity check, not pass as flat).
    """
    size = np.abs(values)
    return size <= _FLAT_RTOL * np.max(size, initial=0.0)


def log_of_positive(values):
    """``sum(log(values))``; raises if a value is not positive."""
    if not np.all(values > 0):
        raise NotPositiveDefiniteError("A Kronecker block is not positive definite.")
    return float(np.sum(np.log(values)))


class ColumnKronBlock:
    """A corrected :class:`~sklaplace._kron.KronBlock` with the row prior ``d2``.

    Parameters
    ----------
    source : KronBlock
        A block with corrected eigenvalues (``source.data`` is not ``None``).
    row_prior : ndarray of shape (r,)
        ``d2``, the new prior per input row.

    Attributes
    ----------
    bases : ndarray of shape (c, r, r)
        ``S U_j`` per column ``j`` of ``V`` (formed on first use).
    values : ndarray of shape (r, c)
        ``e_j`` as columns; 1 on flat directions.
    """

    def __init__(self, source, row_prior):
        self.source = source
        self.row_prior = np.asarray(row_prior, dtype=np.float64)
        self.jitter = 0.0
        self.V = source.V
        S = source.S
        # The source's jitter stays, unscaled and counted as prior (KronBlock).
        self._prior = self.row_prior + source.jitter
        self._R = S.T @ (self._prior[:, None] * S)
        self._n_flat = self._count_flat()
        # Eigenvalues one column at a time: the evidence needs no more, and
        # the c bases (c r^2 numbers, 0.5 GB for 784 inputs and 100 units)
        # are formed only when a prediction asks for them.
        self.values = self._unit_on_flat(
            np.stack(
                [np.linalg.eigvalsh(self._column(j)) for j in range(self.shape[1])]
            )
        )
        self._bases = None

    def _column(self, j):
        """``M_j = R + diag(h[:, j])``."""
        return self._R + np.diag(self.source.data[:, j])

    def _count_flat(self):
        """Directions of each ``M_j`` with neither prior nor data, shape (c,).

        As in :class:`KronBlock`, each part is measured against its own
        scale: the prior vanishes on ``x`` with ``S x`` on the rows whose
        ``d2`` is a zero of round-off; there, the data ``diag(h[:, j])``
        must vanish too (a weak prior on a column without data is not flat).
        """
        d, h = self._prior, self.source.data
        no_prior = vanishing(d)
        if not np.any(no_prior):
            return np.zeros(self.shape[1], dtype=int)
        free, _ = np.linalg.qr(
            np.linalg.solve(self.source.S, np.eye(d.size)[:, no_prior])
        )
        data = np.einsum("pz,pj,py->jzy", free, h, free)  # free' diag(h_j) free
        tiny = _FLAT_RTOL * np.max(np.abs(h), initial=0.0)
        return np.sum(np.linalg.eigvalsh(data) <= tiny, axis=1)

    def _unit_on_flat(self, e):
        """``e`` (c, r), ascending per column, as (r, c) with 1 on flat directions.

        ``M_j`` is the sum of two positive semi-definite parts, so its
        flat directions are its smallest eigenvalues (zeros of round-off).
        """
        e = e.copy()
        for j, count in enumerate(self._n_flat):
            e[j, :count] = 1.0
        return e.T

    @property
    def bases(self):
        """``S U_j`` per column ``j``, shape (c, r, r) (computed once).

        ``values`` stay those of the evidence (``eigvalsh``; ``eigh``'s agree
        to round-off), so a prediction does not move the log det.
        """
        if self._bases is None:
            r, c = self.shape
            # The stack of M_j, its eigenvectors and the bases: three at once.
            check_memory(
                3 * 8 * c * r * r, f"The {c} bases ({r} x {r}) of a Kronecker block"
            )
            _, U = np.linalg.eigh(np.stack([self._column(j) for j in range(c)]))
            self._bases = self.source.S @ U
        return self._bases

    @property
    def shape(self):
        """``(r, c)``: the augmented weight's shape."""
        return self.source.shape

    def eigenvalues(self):
        """``e`` of shape (r, c): the eigenvalues of every ``M_j``."""
        return self.values

    def flat(self):
        """Mask of the entries of ``values`` set to 1 on flat directions, (r, c)."""
        return np.arange(self.shape[0])[:, None] < self._n_flat[None, :]

    def with_row_prior(self, d):
        """Return the source block's data with the row prior ``d``."""
        return self.source.with_row_prior(d)

    def log_det(self):
        """``log det P_l = sum log e + c log det B`` (``det(T T') = det(B)^c``)."""
        return log_of_positive(self.values) + self.shape[1] * self.source.log_det_B

    def _arrays(self, xp):
        return xp.asarray(self.bases), xp.asarray(self.values), xp.asarray(self.V)

    def functional_variance(self, xp, J, Jb):
        """``J_l P_l^{-1} J_l'`` for a block ``Jb`` of shape (n, K, r, c)."""
        bases, values, V = self._arrays(xp)
        n, K, r, c = Jb.shape
        columns = xp.permute_dims(xp.reshape(Jb @ V, (n * K, r, c)), (2, 0, 1))
        scaled = (columns @ bases) / xp.sqrt(xp.permute_dims(values, (1, 0)))[
            :, None, :
        ]
        scaled = xp.reshape(scaled, (c, n, K, r))
        return xp.sum(scaled @ xp.permute_dims(scaled, (0, 1, 3, 2)), axis=0)

    def functional_variance_factored(self, xp, J, ahat, delta):
        """``J_l P_l^{-1} J_l'`` from ``ahat`` (n, r) and ``delta`` (n, K, c)."""
        bases, values, V = self._arrays(xp)
        projected = ahat @ bases  # (c, n, r)
        weights = (projected * projected) @ xp.permute_dims(1.0 / values, (1, 0))[
            :, :, None
        ]  # (c, n, 1)
        weights = xp.permute_dims(weights[:, :, 0], (1, 0))  # (n, c)
        d_t = delta @ V
        return (d_t * weights[:, None, :]) @ xp.permute_dims(d_t, (0, 2, 1))

    def covariance_diagonal(self, xp):
        """``diag(P_l^{-1})`` as (r, c)."""
        bases, values, V = self._arrays(xp)
        inverse = xp.permute_dims(1.0 / values, (1, 0))[:, :, None]  # (c, r, 1)
        per_column = xp.permute_dims(((bases * bases) @ inverse)[:, :, 0], (1, 0))
        return per_column @ xp.permute_dims(V * V, (1, 0))
