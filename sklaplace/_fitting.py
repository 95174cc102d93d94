"""One fit of the network: MAP, curvature and posterior, alpha fixed or tuned.

:func:`fit_network` runs steps (1)-(5) of the estimator's ``fit`` on
validated data and returns what the estimator stores; it knows nothing of
scikit-learn's conventions (validation, warm-start state, attributes).
"""

from typing import NamedTuple

from sklaplace._evidence import log_marginal_likelihood, tune_alpha, weight_groups
from sklaplace._objective import NegLogPosterior
from sklaplace._posterior import laplace_posterior
from sklaplace._prior import prior_precision_vector
from sklaplace._solvers import minimize_map

__all__ = ["LaplaceFit", "NetworkFit", "fit_network"]


class LaplaceFit(NamedTuple):
    """One MAP fit and its Laplace posterior."""

    objective: object
    result: object
    posterior: object
    curvature: str
    jitter: float

    @property
    def theta(self):
        """The MAP."""
        return self.result.theta

    @property
    def prior_precision(self):
        """The prior precision vector of the fit."""
        return self.objective.prior_precision

    @property
    def log_likelihood(self):
        """``sum_n s_n log p(y_n | theta_map)``."""
        return -(self.result.loss - float(self.objective.prior_term(self.theta)))

    def log_evidence(self):
        """Laplace log evidence (parameters held at zero left out)."""
        return log_marginal_likelihood(
            self.log_likelihood,
            self.theta,
            self.prior_precision,
            self.posterior,
            self.objective.fixed,
        )


class NetworkFit(NamedTuple):
    """Outcome of :func:`fit_network`.

    Attributes
    ----------
    fit : LaplaceFit
        The final MAP and posterior.
    alpha : float, array or str
        The weight precision ``fit`` used (tuned, or the one given).
    history : list of ndarray
        Alphas of every evidence refit (empty for a fixed alpha).
    gammas : ndarray or None
        Effective numbers of parameters (``None`` for a fixed alpha).
    refits : list of LaplaceFit
        Every MAP fit, in order (one for a fixed alpha).
    """

    fit: LaplaceFit
    alpha: object
    history: list
    gammas: object
    refits: list


def fit_network(params, xp, layout, likelihood, data, theta, fixed):
    """Fit the MAP and its Laplace posterior, tuning alpha if asked.

    Parameters
    ----------
    params : LaplaceMLPClassifier
        Read for its hyper-parameters only (``alpha``,
        ``bias_prior_precision``, ``activation``, ``solver``, ``tol``,
        ``max_iter``, ``verbose``, ``hessian``, ``hessian_structure``).
    xp : module
        Array namespace to compute in.
    layout : ParamLayout
    likelihood : object
        From :func:`~sklaplace._likelihood.likelihood_for`.
    data : tuple
        ``(X, y_index, sample_weight)``, validated NumPy arrays.
    theta : array of shape (n_params,)
        Starting point, in ``xp``.
    fixed : ndarray of bool of shape (n_params,) or None
        Parameters held at zero.

    Returns
    -------
    NetworkFit
    """
    X, y_index, sample_weight = data
    Y = likelihood.encode(xp, xp.asarray(y_index), layout.n_outputs, xp.float64)
    refits = []

    def fit_laplace(alpha, theta):  # (1)-(3): MAP, curvature, posterior
        prior = prior_precision_vector(layout, alpha, params.bias_prior_precision)
        objective = NegLogPosterior(
            xp,
            layout,
            params.activation,
            likelihood,
            xp.asarray(X),
            Y,
            xp.asarray(sample_weight),
            xp.asarray(prior),
            fixed=None if fixed is None else xp.asarray(fixed),
        )
        result = minimize_map(
            objective, theta, params.solver, params.tol, params.max_iter, params.verbose
        )
        posterior, curvature, jitter = laplace_posterior(
            objective, result.theta, params.hessian, params.hessian_structure
        )
        refits.append(LaplaceFit(objective, result, posterior, curvature, jitter))
        return refits[-1]

    if not isinstance(params.alpha, str):
        fit = fit_laplace(params.alpha, theta)
        return NetworkFit(fit, params.alpha, [], None, refits)
    # (4) MacKay's fixed point over alpha
    groups = weight_groups(layout, params.alpha == "evidence_per_layer", fixed)
    scalar = len(groups) == 1
    tuning = tune_alpha(
        lambda a, t: fit_laplace(float(a[0]) if scalar else a, t),
        groups,
        theta,
        lambda posterior: posterior.covariance_diagonal(xp),
    )
    alpha = float(tuning.alpha[0]) if scalar else tuning.alpha
    return NetworkFit(tuning.fit, alpha, tuning.history, tuning.gammas, refits)
