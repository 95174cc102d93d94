"""The posteriors ``P(c) = P_data + c A`` of every prior scale ``c`` at once.

With ``A > 0`` on every free parameter, one eigendecomposition of
``A^{-1/2} P_data A^{-1/2} = U diag(lambda) U'`` gives ``log det P(c) =
sum log(lambda + c) + log det A`` and ``J P(c)^{-1} J' = B (lambda + c)^{-1}
B'`` with ``B = J A^{-1/2} U`` for every ``c`` at ``O(n_params)`` per output
pair, also for a last layer's full posterior. Parameters under a flat prior
(``A_i = 0``, e.g. ``bias_prior_precision=0``) do not scale: with ``F`` them
and ``W`` the others, the Schur complement ``S(c) = P_WW - P_WF P_FF^{-1}
P_FW + c A_W`` is decomposed as above, ``log det P(c) = log det P_FF + log
det S(c)`` and ``J P(c)^{-1} J' = J_F P_FF^{-1} J_F' + Jt S(c)^{-1} Jt'``
with ``Jt = J_W - J_F P_FF^{-1} P_FW`` (a flat bias prior had taken 6-8x
the fit time: 49 Cholesky factorisations per fold). A diagonal posterior
is its own eigendecomposition (``P(c) = p + (c - 1) A``, every scale in
one product); a Kronecker one is rebuilt once per scale (its blocks keep
their eigenbasis), and so is a full one with every prior flat (nothing
scales).
"""

import numpy as np

from sklaplace import _memory
from sklaplace._backend import (
    NotPositiveDefiniteError,
    add_to_diagonal,
    cholesky,
    rows_matmul,
    solve_triangular,
    to_numpy,
)
from sklaplace._jacobian import (
    FactoredJacobian,
    centred_jacobian,
    diagonal_weights,
    jacobian_matmul,
)

__all__ = ["ScaledPriorFamily", "free_prior", "scaled_posterior"]


def free_prior(prior_precision, fixed):
    """Return the prior precision with zeros at the parameters held at zero."""
    prior = to_numpy(prior_precision).astype(np.float64)
    return prior if fixed is None else np.where(to_numpy(fixed), 0.0, prior)


def scaled_posterior(posterior, prior_precision, scale, fixed=None, xp=np):
    """Return the posterior with precision ``P_data + scale * A``.

    The new factorisation is computed in ``xp`` (the fit's namespace).
    Raises :class:`NotPositiveDefiniteError` if that is not positive definite.
    """
    if scale == 1.0:
        return posterior
    change = (scale - 1.0) * free_prior(prior_precision, fixed)
    return posterior.with_prior_change(xp, change)


def _index(xp, mask):
    return xp.asarray(np.flatnonzero(mask))


def _rows_at(xp, blocks, masks):
    """Stack ``blocks[i]`` at the rows where ``masks[i]`` holds, zero elsewhere.

    The masks are disjoint, over the family's own parameters; ``blocks``
    share their column count. One ``take`` (no item assignment, which the
    array API leaves out); no copy where the first block fills every row.
    Else ``blocks`` is emptied once stacked: where the caller's list is
    their last holder, only the stack and the result are held.
    """
    if np.all(masks[0]):
        return blocks[0]
    width, dtype = blocks[0].shape[1], blocks[0].dtype
    stacked = xp.concat([*blocks, xp.zeros((1, width), dtype=dtype)], axis=0)
    sizes = [block.shape[0] for block in blocks]
    blocks.clear()
    index = np.full(masks[0].shape[0], stacked.shape[0] - 1)
    offset = 0
    for mask, size in zip(masks, sizes):
        index[mask] = offset + np.arange(size)
        offset += size
    return xp.take(stacked, xp.asarray(index), axis=0)


def _flat_block(xp, L_flat, L_weighted):
    """``(L_FF, K, log det P_FF, P_FW)``, ``K = P_FF^{-1} P_FW`` (rows of ``L``)."""
    L_ff = cholesky(xp, L_flat @ xp.permute_dims(L_flat, (1, 0)))
    P_fw = L_flat @ xp.permute_dims(L_weighted, (1, 0))
    half = solve_triangular(xp, L_ff, P_fw)
    K = solve_triangular(xp, L_ff, half, trans=True)
    log_det = 2.0 * float(xp.sum(xp.log(xp.linalg.diagonal(L_ff))))
    return L_ff, K, log_det, P_fw


class ScaledPriorFamily:
    """The posteriors ``N(theta_map, P(c)^{-1})`` for every scale ``c`` at once.

    Parameters
    ----------
    posterior : FullPosterior, DiagPosterior, KronPosterior or LastLayerPosterior
        The fitted posterior, precision ``P = P_data + A``. A full one (also
        a last layer's) is eigendecomposed once (module docstring); the
        others are rebuilt per scale.
    prior_precision : array of shape (n_params,)
        ``A``, the prior precision ``posterior`` was built with.
    fixed : array of bool of shape (n_params,), default=None
        Parameters held at zero: no prior, identity precision at any ``c``.
        The Jacobians handed to the methods must have zero columns there
        (as the fit's own give them): the eigendecomposed path leaves those
        columns out, a rebuilt posterior would count them.
    xp : module, default=numpy
        The namespace of the fit: the eigendecomposition (``O(W^3)``) and
        the eigenvectors stay there; only the eigenvalues come to the host.
    variances : bool, default=True
        Whether the variances will be asked for. ``log det P(c)``, all the
        evidence reads, needs the eigenvalues alone: without eigenvectors
        the eigendecomposition takes about half the time, and no ``W x W``
        projection is formed.
    eigendecompose : bool, default=True
        Whether to eigendecompose a full posterior (``O(W^3)``, about ten
        Cholesky factorisations' worth) so that every scale costs little;
        ``False`` where one scale is asked for: its posterior is built
        instead (none at the fitted scale 1).
    """

    def __init__(
        self,
        posterior,
        prior_precision,
        fixed=None,
        xp=np,
        variances=True,
        eigendecompose=True,
    ):
        self.posterior = posterior
        self.xp = xp
        self.prior = free_prior(prior_precision, fixed)
        self._eigen = self._flat = None
        # A last layer's posterior: the earlier layers only scale their prior
        # (held at the MAP), its own full block is the family's (digits,
        # hidden (100,): 49 Cholesky factorisations per fold had taken 90 s).
        own, self.offset = posterior, 0
        if posterior.structure == "last_layer":
            own, self.offset = posterior.inner, posterior.offset
        prior = self.prior[self.offset :]
        free = np.ones(prior.shape[0], bool)
        if fixed is not None:
            free = ~np.asarray(fixed)[self.offset :]
        weighted, flat = free & (prior > 0), free & (prior == 0)
        # A Kronecker posterior whose prior is only scaled shares its
        # eigenbases: each scale's is kept (one per scale, not per row chunk:
        # 40 classes' leave-one-out had rebuilt them 23,281 times, 16% of a
        # fit). With parameters held at zero each scale decomposes anew
        # (O(r^2) floats per layer): not kept.
        held = fixed is not None and np.any(fixed)
        self._kept = {} if own.structure == "kron" and not held else None
        self._held = ~free  # the family's own parameters held at zero
        # A diagonal posterior is its own eigendecomposition: P(c)'s diagonal
        # is p + (c - 1) A, and the probit's variances at every scale are one
        # matrix product (a 4,000-word text's walk had spent 46 of 61 s
        # forming each scale's K x K variances to read their diagonals).
        self._diagonal, self._inverses = None, {}
        if own.structure == "diag" and not np.any(prior < 0):
            self._diagonal = (own, prior)
        # Nothing to scale (every prior flat), or a negative prior: per scale.
        if own.structure != "full" or np.any(prior[free] < 0) or not np.any(weighted):
            return
        if not eigendecompose:
            return
        # Beside L (the memory counts): L's rows taken only where some are
        # left out, the product whitened in place, its eigenvectors (and
        # LAPACK's workspace while eigh runs), and only where some rows are
        # flat or fixed their stack, then the projection.
        L = xp.asarray(own.cholesky_factor)
        L_w = L if np.all(weighted) else xp.take(L, _index(xp, weighted), axis=0)
        if np.any(flat):
            L_f = xp.take(L, _index(xp, flat), axis=0)
            try:
                L_ff, K, log_det, P_fw = _flat_block(xp, L_f, L_w)
            except NotPositiveDefiniteError:  # improper: rebuilt per scale
                return
        P_ww = L_w @ xp.permute_dims(L_w, (1, 0))
        del L_w
        if np.any(flat):
            P_ww -= xp.permute_dims(P_fw, (1, 0)) @ K
        root = xp.asarray(1.0 / np.sqrt(prior[weighted]))
        # A^{-1/2} (P - A) A^{-1/2} on the weighted block (the fixed block
        # of P is the identity and decoupled).
        P_ww *= root[:, None]
        P_ww *= root[None, :]
        minus_one = xp.full((P_ww.shape[0],), -1.0, dtype=P_ww.dtype)
        P_ww = add_to_diagonal(xp, P_ww, minus_one)
        if not variances:
            eigenvalues = to_numpy(xp.linalg.eigvalsh(P_ww))
            self._eigen = (weighted, eigenvalues, None)
            if np.any(flat):
                self._flat = (None, log_det)
            return
        eigenvalues, eigenvectors = xp.linalg.eigh(P_ww)
        del P_ww
        # B = Jt A^{-1/2} U = J @ projection: the whitening, the flat block's
        # Schur term and the fixed parameters (zero rows) in one matrix, so
        # that J may come factored (no dense J: _jacobian.FactoredJacobian).
        eigenvectors *= root[:, None]
        blocks = [eigenvectors]
        if np.any(flat):
            blocks.append(-(K @ eigenvectors))
            eye = xp.eye(L_ff.shape[0], dtype=L_ff.dtype)
            inverse_t = xp.permute_dims(solve_triangular(xp, L_ff, eye), (1, 0))
            self._flat = (_rows_at(xp, [inverse_t], [flat]), log_det)
        del eigenvectors  # in blocks alone, let go once stacked
        projection = _rows_at(xp, blocks, [weighted, flat])
        self._eigen = (weighted, to_numpy(eigenvalues), projection)

    @property
    def all_at_once(self):
        """Whether one eigendecomposition serves every scale."""
        return self._eigen is not None

    @property
    def centred_at_once(self):
        """Whether :meth:`centred_variances` takes every scale in one pass.

        With the eigendecomposition, or a diagonal posterior (any ``J``);
        otherwise only a dense ``J`` is accepted there.
        """
        return self._eigen is not None or self._diagonal is not None

    def log_det_precision(self, scale):
        """``log det P(c)``; NaN where ``P(c)`` is not positive definite."""
        if self._eigen is not None:
            weighted, eigenvalues, _ = self._eigen
            shifted = eigenvalues + scale
            if np.any(shifted <= 0):
                return np.nan
            # log det A over the weighted block, log det P_FF, and the earlier
            # layers' c A (proper priors only, as LastLayerPosterior counts).
            own = np.sum(np.log(self.prior[self.offset :][weighted]))
            if self._flat is not None:
                own += self._flat[1]
            other = self.prior[: self.offset]
            other = np.sum(np.log(scale * other[other > 0]))
            return float(np.sum(np.log(shifted)) + own + other)
        posterior = self._posterior_at(scale)
        return np.nan if posterior is None else posterior.log_det_precision()

    def _own_columns(self, xp, J):
        """Return ``J``'s columns of the eigendecomposed posterior's parameters."""
        if self.offset:
            return self.posterior.last_layer_jacobian(xp, J)
        return J  # a full posterior of all weights: J itself, dense or factored

    def _eigen_jacobian(self, xp, J):
        """Return ``B = Jt A^{-1/2} U`` and ``J_F L_FF^{-T}`` (or None); ``J``: own.

        ``J`` is an array or a :class:`~sklaplace._jacobian.FactoredJacobian`.
        """
        if self._eigen[2] is None:
            raise RuntimeError("This family was built with variances=False.")
        B = jacobian_matmul(xp, J, self._eigen[2])
        if self._flat is None:
            return B, None
        return B, jacobian_matmul(xp, J, self._flat[0])

    def functional_variances(self, xp, J, scales):
        """``J P(c)^{-1} J'`` for each scale.

        Parameters
        ----------
        xp : module
        J : array of shape (n_samples, n_outputs, n_params)
        scales : sequence of float

        Yields
        ------
        array of shape (n_samples, n_outputs, n_outputs) or None
            One scale's, in turn (``None`` where ``P(c)`` is not positive
            definite): only one scale's are held at a time, as all 49
            would take ``49 n K^2`` floats (0.9 GiB for 1,000 rows of 50
            classes).
        """
        if self._eigen is None:
            for c in scales:
                yield self._one_variance(xp, J, c)
            return
        eigenvalues = self._eigen[1]
        B, Q = self._eigen_jacobian(xp, self._own_columns(xp, J))
        Bt = xp.permute_dims(B, (0, 2, 1))
        constant = 0.0 if Q is None else Q @ xp.permute_dims(Q, (0, 2, 1))
        for c in scales:
            shifted = eigenvalues + c
            ok = bool(np.all(shifted > 0))
            yield (B / xp.asarray(shifted)) @ Bt + constant if ok else None

    def functional_variance_grid(self, xp, J, scales):
        """``J P(c)^{-1} J'`` at every scale at once, shape (n, n_scales, K, K).

        With the eigendecomposition one matrix product serves every scale:
        the products ``B_k * B_l`` of each row's pairs of outputs ``k <= l``
        times ``1 / (lambda + c)``, ``n K (K + 1) W / 2`` multiply-adds per
        scale in one product (one scale at a time, :meth:`functional_variances`
        takes ``n K^2 W`` in small batched products). Memory: ``n K^2 W``
        floats; callers pass few rows. NaN at the scales where ``P(c)`` is not
        positive definite.
        """
        if self._eigen is None:
            grid = list(self.functional_variances(xp, J, scales))
            defined = [v for v in grid if v is not None]
            n, K = J.shape[:2]
            dtype = defined[0].dtype if defined else xp.float64
            blank = xp.full((n, K, K), np.nan, dtype=dtype)
            return xp.stack([blank if v is None else v for v in grid], axis=1)
        eigenvalues = self._eigen[1]
        B, Q = self._eigen_jacobian(xp, self._own_columns(xp, J))
        n, K, W = B.shape
        shifted = eigenvalues[:, None] + np.asarray(scales)[None, :]
        with np.errstate(divide="ignore"):
            inverse = np.where(np.all(shifted > 0, axis=0), 1.0 / shifted, np.nan)
        # The pairs k <= l only (the matrices are symmetric), then each
        # (k, l) entry read from its pair.
        first, second = np.triu_indices(K)
        pair_of = np.zeros((K, K), dtype=np.int64)
        pair_of[first, second] = pair_of[second, first] = np.arange(first.size)
        pairs = xp.take(B, xp.asarray(first), axis=1) * xp.take(
            B, xp.asarray(second), axis=1
        )
        values = xp.reshape(
            xp.reshape(pairs, (-1, W)) @ xp.asarray(inverse), (n, first.size, -1)
        )
        grid = xp.take(values, xp.asarray(np.ravel(pair_of)), axis=1)
        grid = xp.permute_dims(xp.reshape(grid, (n, K, K, -1)), (0, 3, 1, 2))
        if Q is None:
            return grid
        return grid + (Q @ xp.permute_dims(Q, (0, 2, 1)))[:, None, :, :]

    def centred_variances(self, xp, J, scales):
        """Return the probit's variances ``diag(C J P(c)^{-1} J' C)``, all scales.

        ``C = I - 11'/K`` centres the logits
        (:func:`~sklaplace._jacobian.centring`), before the square, whether
        or not ``J`` is centred already (the fit's is: then a no-op). With the
        eigendecomposition, ``C J A^{-1/2} U = B`` gives
        them all in one matrix product, ``(B * B) @ (1 / (lambda + c))``:
        ``n K W`` multiply-adds per scale, not the ``n K^2 W`` of the full
        ``K x K`` covariances.

        Returns
        -------
        variances : array of shape (n_samples, n_outputs, n_scales)
            NaN at the scales where ``P(c)`` is not positive definite.
        """
        if self._diagonal is not None:
            return self._diagonal_centred_variances(xp, J, scales)
        if self._eigen is None:
            J = centred_jacobian(xp, J)
            columns = []
            for c in scales:
                cov = self._one_variance(xp, J, c)
                columns.append(
                    xp.full(J.shape[:2], np.nan, dtype=J.dtype)
                    if cov is None
                    else xp.linalg.diagonal(cov)
                )
            return xp.stack(columns, axis=2)
        eigenvalues = self._eigen[1]
        B, Q = self._eigen_jacobian(xp, self._own_columns(xp, J))
        # C (J M) = (C J) M: centred after the projection, on its columns.
        B = centred_jacobian(xp, B)
        shifted = eigenvalues[:, None] + np.asarray(scales)[None, :]
        with np.errstate(divide="ignore"):
            inverse = np.where(np.all(shifted > 0, axis=0), 1.0 / shifted, np.nan)
        variances = rows_matmul(xp, B * B, xp.asarray(inverse))
        if Q is None:
            return variances
        Q = centred_jacobian(xp, Q)
        return variances + xp.sum(Q * Q, axis=2)[:, :, None]

    def _diagonal_centred_variances(self, xp, J, scales):
        """:meth:`centred_variances` of a diagonal family, every scale at once.

        A dense ``J`` (a pruned fit's): ``(C J)^2 @ inverse`` over scale
        groups whose inverses fit an eighth of the memory budget. A factored
        one: per layer and scale ``(C delta)^2`` weighted by
        :func:`~sklaplace._jacobian.diagonal_weights`, no dense ``J``.
        """
        if isinstance(J, FactoredJacobian):
            own = J.last_layer() if self.offset else J
            squares = [d**2 for d in centred_jacobian(xp, own).deltas]
            columns = []
            for c in scales:
                inverse = self._diagonal_inverse([c])[0, ...]
                weights = diagonal_weights(xp, own, inverse)
                columns.append(
                    sum(
                        xp.sum(q * w[:, None, :], axis=2)
                        for q, w in zip(squares, weights)
                    )
                )
            return xp.stack(columns, axis=2)
        B = self._own_columns(xp, J)
        B = centred_jacobian(xp, B)
        squares = B * B
        # A million weights: four scales a group (64 bytes a weight and scale).
        group = _memory.rows_within_budget(64 * squares.shape[-1])
        parts = []
        for start in range(0, len(scales), group):
            inverse = self._diagonal_inverse(scales[start : start + group])
            parts.append(rows_matmul(xp, squares, inverse.T))
        return xp.concat(parts, axis=2)

    def _diagonal_inverse(self, scales):
        """``1 / diag(P(c))`` of a diagonal family, shape (n_scales, n_params).

        In the fit's namespace; NaN at the scales where an entry is not
        positive. Kept (per tuple of scales) while the kept ones fit a
        quarter of the memory budget: the row chunks ask for the same scales
        again (a 4,000-word text's 400,000 weights: 7.7 s rebuilding them for
        55 chunks). Built a scale per row (contiguous; along columns a
        million weights' took 46 s).
        """
        key = tuple(float(c) for c in scales)
        if key in self._inverses:
            return self._inverses[key]
        own, a = self._diagonal
        p = np.asarray(to_numpy(own.precision), dtype=np.float64)
        inverse = np.empty((len(key), p.shape[0]))
        for row, c in zip(inverse, key):
            np.multiply(a, c - 1.0, out=row)
            row += p
            if np.min(row) > 0:
                np.reciprocal(row, out=row)
                # Held at zero: no variance, whether J's columns there are
                # zero (dense) or not (factors know no held parameters).
                row[self._held] = 0.0
            else:
                row[:] = np.nan
        # Kept in the fit's namespace: on a GPU not copied again per chunk.
        size = sum(8 * v.shape[0] * v.shape[1] for v in self._inverses.values())
        inverse = self.xp.asarray(inverse)
        if size + 8 * inverse.shape[0] * inverse.shape[1] <= (
            _memory.DEFAULT_MEMORY_BUDGET // 4
        ):
            self._inverses[key] = inverse
        return inverse

    def _posterior_at(self, scale):
        """Return the posterior at ``scale`` (None: not positive definite)."""
        if self._kept is not None and scale in self._kept:
            return self._kept[scale]
        try:
            posterior = scaled_posterior(self.posterior, self.prior, scale, xp=self.xp)
        except NotPositiveDefiniteError:
            posterior = None
        if self._kept is not None:
            self._kept[scale] = posterior
        return posterior

    def _one_variance(self, xp, J, scale):
        posterior = self._posterior_at(scale)
        if posterior is None:
            return None
        if posterior.structure == "diag" and np.any(self._held):
            # J's held columns come unzeroed (factored): no variance there.
            posterior = posterior.pinned(self._held)
        return posterior.functional_variance(xp, J)
