"""Approximate leave-one-out log losses of the prior scales, without refits.

``prior_precision_scale="loo"`` scores every row fitted at each scale ``c``
by the predictive of the model fitted without it, approximated at the
fit's own MAP instead of refitted (Rad & Maleki 2020; Beirami et al. 2017;
Stephenson & Broderick 2020, "approximate cross-validation"), in the
linearised model the Laplace predictive already uses. With the row's
logit Jacobian ``J_i``, its output Hessian ``Lambda_i = R_i' R_i`` and
residual ``r_i`` (the gradient of its negative log likelihood in the
logits), both for one unit of its weight, leaving it out

* moves the MAP by one Newton step, ``(P - J_i' Lambda_i J_i)^{-1} J_i' r_i``
  with ``P`` the MAP's own posterior precision (scale 1), so its logits by
  ``(I - S_i Lambda_i)^{-1} S_i r_i``, ``S_i = J_i P^{-1} J_i'``;
* takes its curvature out of the posterior: the logits' covariance becomes
  ``J_i (P(c) - J_i' Lambda_i J_i)^{-1} J_i' = (I - S_i(c) Lambda_i)^{-1}
  S_i(c)`` (Woodbury), with ``S_i(c) = J_i P(c)^{-1} J_i'``.

Both need only the ``K x K`` matrices ``S_i(c)`` the posteriors of every
scale give at once (:class:`~sklaplace._prior_family.ScaledPriorFamily`): no
fold is refitted. A row of integer weight ``k`` stands for ``k`` copies,
each left out in turn, so one unit of weight is removed and the loss
counts ``k`` times (a fractional weight below 1 is one partial row,
removed whole); the losses are those of copies and weights alike.
"""

import numpy as np

from sklaplace import _memory
from sklaplace._backend import to_numpy
from sklaplace._held_out import HeldOutLosses
from sklaplace._prior_family import ScaledPriorFamily

__all__ = ["loo_log_losses", "without_row"]


def without_row(xp, S, R):
    """``(I - S R'R)^{-1} S`` per row: ``J P^{-1} J'`` with the row's curvature out.

    Computed as ``S + S R' (I - R S R')^{-1} R S``, symmetric, with a
    ``K x K`` solve per row (Woodbury).

    Parameters
    ----------
    S : array of shape (..., K, K)
        ``J_i P^{-1} J_i'``.
    R : array of shape (..., K, K)
        Factors of the rows' output Hessians, ``Lambda_i = R_i' R_i``
        (broadcast against ``S``).

    Returns
    -------
    array of shape (..., K, K)
    """
    RS = R @ S
    inner = xp.eye(S.shape[-1], dtype=S.dtype) - RS @ xp.matrix_transpose(R)
    return S + xp.matrix_transpose(RS) @ xp.linalg.solve(inner, RS)


def _removed_weight(y_index, weight):
    """Weight each row's leave-out removes, and the weight its loss counts.

    One unit (a whole row below 1). A row whose class would have no weight
    left counts nothing: the model without it has never seen its class, as
    :func:`~sklaplace._held_out.content_folds` keeps such rows in every fold.
    """
    removed = np.minimum(weight, 1.0)
    totals = np.bincount(y_index, weight)
    alone = totals[y_index] - removed <= 0
    return removed, np.where(alone, 0.0, weight)


def loo_log_losses(fit, jacobians, data, scales, predictive):
    """Approximate leave-one-out log loss of every row at each prior scale.

    Parameters
    ----------
    fit : LaplaceFit
        The MAP and its posterior at the prior it was fitted with (scale 1),
        on the rows of ``data``.
    jacobians : callable
        ``jacobians(theta, X)`` yields ``(logits, J)`` row chunks, ``J`` of
        the centred logits for K classes (as
        :func:`~sklaplace._held_out.cv_log_losses` takes them).
    data : tuple
        ``(X, y_index, sample_weight)`` of the rows fitted, NumPy arrays.
    scales : sequence of float
    predictive : callable
        ``predictive(xp, mean, cov) -> moderated logits``.

    Returns
    -------
    HeldOutLosses or None
        ``inf`` where a scale's precision is not positive definite or the
        loss is not finite (at a positive scale the precision without a row,
        ``P_data`` less that row's curvature plus ``c A``, stays positive
        definite); ``None`` if no row counts.
    """
    X, y_index, weight = data
    removed, counted = _removed_weight(y_index, weight)
    if not np.sum(counted) > 0:
        return None
    xp, objective = fit.objective.xp, fit.objective
    fixed = None if objective.fixed is None else to_numpy(objective.fixed)
    family = ScaledPriorFamily(fit.posterior, fit.prior_precision, fixed, xp)
    likelihood = objective.likelihood
    # The MAP's own scale first: its posterior moves the mean.
    grid = np.concatenate([[1.0], np.asarray(scales, dtype=np.float64)])
    losses = np.empty((X.shape[0], grid.size - 1))
    n_outputs = objective.layout.n_outputs
    n_params = fit.prior_precision.shape[0]
    chunks = _row_chunks(X.shape[0], n_outputs, n_params, grid.size, family.all_at_once)
    for chunk in chunks:  # each may come back in smaller chunks still
        start = chunk.start
        for logits, J in jacobians(fit.theta, X[chunk]):
            rows = slice(start, start + logits.shape[0])
            start = rows.stop
            losses[rows] = _left_out_losses(
                xp,
                likelihood,
                family,
                grid,
                logits,
                J,
                removed[rows],
                y_index[rows],
                predictive,
            )
    losses = np.where(np.isfinite(losses), losses, np.inf)
    return HeldOutLosses(losses, counted)


def _left_out_losses(
    xp, likelihood, family, grid, logits, J, removed, labels, predictive
):
    """Rows' left-out log losses at ``grid[1:]`` (``grid[0]``: the MAP's scale)."""
    unit = xp.asarray(removed, dtype=logits.dtype)
    Y = likelihood.encode(xp, xp.asarray(labels), logits.shape[1], logits.dtype)
    R = likelihood.hessian_factor(xp, logits, unit)[:, None, :, :]
    residual = likelihood.residual(xp, logits, Y, unit)[:, None, :, None]
    with np.errstate(all="ignore"):  # non-finite losses are inf, below
        S = family.functional_variance_grid(xp, J, grid)
        own = without_row(xp, S[:, :1, ...], R)
        mean = logits + (own @ residual)[:, 0, :, 0]
        covariance = without_row(xp, S[:, 1:, ...], R)
        n, n_scales, K = covariance.shape[:3]
        mean = xp.broadcast_to(mean[:, None, :], (n, n_scales, K))
        # Without a row an exact (indefinite) Hessian's precision can be
        # singular: NaN moments, which a Monte Carlo link cannot factor.
        # Such a row's loss is infinite; the link sees zeros in its place.
        finite = xp.all(xp.isfinite(mean), axis=-1) & xp.all(
            xp.isfinite(covariance), axis=(-2, -1)
        )
        mean = xp.where(finite[..., None], mean, xp.zeros_like(mean))
        covariance = xp.where(
            finite[..., None, None], covariance, xp.zeros_like(covariance)
        )
        moderated = predictive(
            xp, xp.reshape(mean, (-1, K)), xp.reshape(covariance, (-1, K, K))
        )
        log_proba = xp.reshape(likelihood.log_proba(xp, moderated), (n, n_scales, -1))
    losses = -to_numpy(log_proba)[np.arange(n), :, labels]
    return np.where(to_numpy(finite), losses, np.inf)


def _row_chunks(n_rows, n_outputs, n_params, n_scales, all_at_once=True):
    """Row slices whose ``K x K`` matrices at every scale fit a quarter budget.

    Per row: the ``K^2 n_params`` output pairs of
    :meth:`~sklaplace._prior_family.ScaledPriorFamily.functional_variance_grid`
    where one eigendecomposition serves every scale (``all_at_once``), else
    (one posterior per scale) ``J``'s ``K n_params`` and two transforms of
    it, and a few ``K^2`` matrices per scale either way. (Sized for ``K^2``,
    40 classes' Kronecker family took one row per chunk, each chunk paying
    per-scale overheads.)
    """
    width = n_outputs if all_at_once else 3
    per_row = 8 * n_outputs * (width * n_params + 8 * n_outputs * n_scales)
    rows = _memory.rows_within_budget(4 * per_row)
    return [slice(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]
