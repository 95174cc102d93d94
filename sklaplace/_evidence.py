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
