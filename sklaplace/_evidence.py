"""The Laplace log marginal likelihood (log evidence), DESIGN.md section 5.

``log Z = log p(D | theta) - 1/2 (log_det_ratio + scatter)`` with
``scatter = theta' A theta`` and ``log_det_ratio = log det P - log det A``
(laplace-torch's form of MacKay 1992, eq. 30; Bishop PRML eq. 5.175).

Parameters with zero prior precision have an improper (flat) prior; they
are left out of ``log det A``, which makes ``log Z`` defined up to a constant
that depends only on how many such parameters there are -- enough to compare
prior precisions or architectures with the same flat parameters.
"""

import numpy as np

from sklaplace._backend import to_numpy

__all__ = ["log_det_prior", "log_marginal_likelihood"]


def log_det_prior(prior_precision):
    """``log det A`` over the parameters with a proper prior (``A_i > 0``)."""
    precision = to_numpy(prior_precision)
    return float(np.sum(np.log(precision[precision > 0])))


def log_marginal_likelihood(log_likelihood, theta_map, prior_precision, posterior):
    """Laplace log evidence.

    Parameters
    ----------
    log_likelihood : float
        ``sum_n s_n log p(y_n | theta_map)``.
    theta_map : array of shape (n_params,)
    prior_precision : array of shape (n_params,)
    posterior : FullPosterior or DiagPosterior

    Returns
    -------
    log_evidence : float
    """
    theta = to_numpy(theta_map)
    scatter = float(np.sum(to_numpy(prior_precision) * theta * theta))
    log_det_ratio = posterior.log_det_precision() - log_det_prior(prior_precision)
    return float(log_likelihood) - 0.5 * (log_det_ratio + scatter)


def weight_groups(layout, per_layer):
    """Boolean masks of the weights that share one evidence-tuned ``alpha``.

    One mask over every weight (biases excluded), or one per layer.
    """
    weights = ~layout.bias_mask()
    if not per_layer:
        return [weights]
    layer = layout.layer_index()
    return [weights & (layer == i) for i in range(layout.n_layers)]


def mackay_update(covariance_diagonal, theta_map, prior_precision, groups):
    """One MacKay fixed-point update of the weight precisions.

    For each group ``g`` of weights sharing ``alpha_g``: the effective number
    of parameters ``gamma_g = W_g - alpha_g tr_g(P^{-1})`` and the update
    ``alpha_g <- gamma_g / ||theta_g||^2`` (MacKay 1992, eqs. 4.20-4.21 of
    "Bayesian interpolation"; Bishop PRML eqs. 5.178-5.179). At the fixed
    point the evidence at the current MAP is stationary in ``log alpha_g``.

    Parameters
    ----------
    covariance_diagonal : array of shape (n_params,)
        ``diag(P^{-1})`` of the Laplace posterior.
    theta_map : array of shape (n_params,)
    prior_precision : array of shape (n_params,)
        Current precisions (constant within each group).
    groups : list of ndarray of bool
        From :func:`weight_groups`.

    Returns
    -------
    alphas : ndarray of shape (n_groups,)
        Updated precisions.
    gammas : ndarray of shape (n_groups,)
        Effective numbers of parameters.
    """
    covariance = to_numpy(covariance_diagonal)
    theta = to_numpy(theta_map)
    precision = to_numpy(prior_precision)
    tiny = np.finfo(np.float64).tiny
    alphas, gammas = [], []
    for mask in groups:
        alpha = float(precision[mask][0])
        gamma = float(mask.sum() - alpha * covariance[mask].sum())
        alphas.append(max(gamma, tiny) / max(float(np.sum(theta[mask] ** 2)), tiny))
        gammas.append(gamma)
    return np.array(alphas), np.array(gammas)
