"""One MAP fit and its Laplace posterior: :func:`fit_laplace` and its record.

Steps (1)-(3) of the estimator's ``fit`` at one prior: the MAP
(:mod:`sklaplace._solvers`), the curvature there and the posterior built
from it (:mod:`sklaplace._posterior`). :mod:`sklaplace._fitting` runs it once
for a fixed alpha, once per refit where alpha is tuned, and once per
held-out fold.
"""

from typing import NamedTuple

from sklaplace._backend import to_numpy
from sklaplace._evidence import log_marginal_likelihood
from sklaplace._posterior import laplace_posterior
from sklaplace._solvers import minimize_map
from sklaplace._symmetry import split_coinciding_units
from sklaplace._warnings import recorded, warn

__all__ = ["LaplaceFit", "fit_laplace"]


class LaplaceFit(NamedTuple):
    """One MAP fit and its Laplace posterior.

    Attributes
    ----------
    objective : NegLogPosterior
        The objective fitted (``None`` once a superseded refit is freed).
    result : MapResult
        The solver's outcome.
    posterior : posterior object
        The Laplace posterior at the MAP (``None`` once freed).
    curvature : str
        The curvature the posterior used (``"exact"`` or ``"ggn"``).
    jitter : float
        The jitter its precision needed (0.0 if none).
    posterior_warnings : tuple of RecordedWarning
        The warnings building ``posterior`` issued: dropped with it where
        another posterior replaces it.
    """

    objective: object
    result: object
    posterior: object
    curvature: str
    jitter: float
    posterior_warnings: tuple = ()

    @property
    def theta(self):
        """The MAP."""
        return self.result.theta

    @property
    def out_of_iterations(self):
        """Whether ``max_iter`` stopped the solver short of the MAP."""
        return self.result.out_of_iterations

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


def fit_laplace(config, objective, theta, reference=None, follow=True):
    """(1)-(3): the MAP from ``theta``, the curvature there and its posterior.

    Given ``reference`` (weights whose units differ), hidden units that
    coincide in ``theta`` are first split along it: a refit would leave
    their saddle the way round-off points (:mod:`~sklaplace._symmetry`).
    ``follow``: whether Newton-CG follows negative curvature.
    """
    if reference is not None:
        fixed = None if objective.fixed is None else to_numpy(objective.fixed)
        theta = split_coinciding_units(
            objective.xp,
            objective.layout,
            theta,
            reference,
            objective.activation,
            fixed,
        )
    result = minimize_map(
        objective,
        theta,
        config.solver,
        config.tol,
        config.max_iter,
        config.verbose,
        follow,
    )
    with recorded() as posterior_warnings:
        posterior, curvature, jitter = laplace_posterior(
            objective,
            result.theta,
            config.hessian,
            config.hessian_structure,
            config.subset_of_weights,
        )
    for caught in posterior_warnings:
        warn(caught.message, caught.category)
    return LaplaceFit(
        objective, result, posterior, curvature, jitter, tuple(posterior_warnings)
    )
