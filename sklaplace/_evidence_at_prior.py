"""The Laplace evidence at another prior, at a fixed MAP (no refit).

``LaplaceMLPClassifier.log_marginal_likelihood(alpha=...)``: the posterior's
data part is kept and only its prior changes, so the evidence of
:mod:`sklaplace._evidence` can be plotted against ``alpha`` after one fit.
"""

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError, get_namespace
from sklaplace._evidence import log_marginal_likelihood
from sklaplace._objective import flat_shift_rows
from sklaplace._prior import prior_precision_vector

__all__ = ["check_flat_shifts", "log_evidence_at_prior", "replace_prior"]


def replace_prior(layout, prior_precision, alpha=None, bias_prior_precision=None):
    """Return the prior precision vector with its weights' or biases' part replaced.

    Parameters
    ----------
    layout : ParamLayout
    prior_precision : ndarray of shape (n_params,)
        The current prior precision.
    alpha : float or array-like of shape (n_layers,) or (n_params,), default=None
        New weight precision (as the estimator's ``alpha``); ``None`` keeps
        the weights' part. One value per parameter replaces everything.
    bias_prior_precision : float or array-like of shape (n_layers,), default=None
        New bias precision; ``None`` keeps the biases' part.

    Returns
    -------
    prior_precision : ndarray of shape (n_params,)
    """
    old = np.asarray(prior_precision, dtype=np.float64)
    new = prior_precision_vector(
        layout,
        1.0 if alpha is None else alpha,
        1.0 if bias_prior_precision is None else bias_prior_precision,
    )
    per_parameter = np.ndim(alpha) == 1 and len(alpha) == layout.n_params
    bias = layout.bias_mask()
    if alpha is None:
        new[~bias] = old[~bias]
    if bias_prior_precision is None and not per_parameter:
        new[bias] = old[bias]
    return new


def check_flat_shifts(layout, old, new, fixed=None):
    """Refuse a prior change that makes a softmax's common shift flat, or not.

    With K logits, a row of the last layer (one input's weights to every
    class, or the output biases) with a flat prior on all K entries has a
    flat common shift, which the posterior pins with a unit curvature
    (:func:`~sklaplace._objective.flat_shift_rows`); a posterior built one
    way cannot be changed into the other by a prior change alone.

    Parameters
    ----------
    layout : ParamLayout
    old, new : ndarray of shape (n_params,)
        The fitted prior precision and the one asked for.
    fixed : ndarray of bool of shape (n_params,), default=None
        Parameters held at zero (a row with one is never flat).

    Raises
    ------
    ValueError
        If the flat rows differ.
    """
    before = flat_shift_rows(layout, old, fixed)
    after = flat_shift_rows(layout, new, fixed)
    if (before is None) != (after is None) or (
        before is not None and not np.array_equal(before, after)
    ):
        raise ValueError(
            "Switching the last layer's prior between flat (0) and proper "
            "changes which directions the posterior treats as flat (the "
            "softmax's common shifts); refit with the new alpha or "
            "bias_prior_precision instead."
        )


def log_evidence_at_prior(
    layout,
    theta_map,
    log_likelihood,
    prior_precision,
    posterior,
    posterior_scale=1.0,
    alpha=None,
    bias_prior_precision=None,
    fixed=None,
):
    """Laplace log evidence at another prior, at a fixed MAP (no refit).

    The posterior's data part is kept and only its prior changes: the new
    precision is ``P - posterior_scale * A_old + A_new``.

    Parameters
    ----------
    layout : ParamLayout
    theta_map : ndarray of shape (n_params,)
    log_likelihood : float
        ``sum_n s_n log p(y_n | theta_map)``.
    prior_precision : ndarray of shape (n_params,)
        The MAP's prior precision ``A_old``.
    posterior : posterior object
        With precision ``P_data + posterior_scale * A_old``; must offer
        ``with_prior_change``.
    posterior_scale : float, default=1.0
        The scale of the prior inside ``posterior``.
    alpha, bias_prior_precision : default=None
        The new prior, as in :func:`replace_prior`.
    fixed : ndarray of bool of shape (n_params,), default=None
        Parameters held at zero (left out, see :func:`log_marginal_likelihood`).

    Returns
    -------
    log_evidence : float
        ``-inf`` if the new posterior precision is not positive definite, or
        if the new prior is flat on a parameter the old one was not.
    """
    old = np.asarray(prior_precision, dtype=np.float64)
    new = replace_prior(layout, old, alpha, bias_prior_precision)
    free = np.ones(old.shape, dtype=bool) if fixed is None else ~np.asarray(fixed)
    if np.any(free & (old > 0) & (new == 0)):
        # A flat parameter is left out of log det A, which gives a finite
        # value at 0 above every positive precision's (a review: +25.9
        # against -75 at the fitted alpha); the evidence falls without bound
        # as a precision falls to 0, and that limit is what compares. Before
        # the shifts' check: a row made flat is such a limit too.
        return -np.inf
    check_flat_shifts(layout, old, new, fixed)
    change = new - posterior_scale * old
    change = change if fixed is None else np.where(fixed, 0.0, change)
    try:
        # A change of 1e300 overflows the bracket, which is then refused as
        # not positive definite: the -inf documented, not NumPy's warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            changed = posterior.with_prior_change(get_namespace(theta_map), change)
    except NotPositiveDefiniteError:
        return -np.inf
    return log_marginal_likelihood(log_likelihood, theta_map, new, changed, fixed)
