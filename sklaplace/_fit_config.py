"""The hyper-parameters one fit reads, every ``"auto"`` resolved."""

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """The hyper-parameters one fit reads, every ``"auto"`` resolved.

    Built once per ``fit`` by :meth:`from_params`; :func:`fit_network`
    reads these fields and nothing else of the estimator (which stays free
    to hold whatever else it likes).

    Attributes
    ----------
    activation : str
        Hidden-layer activation (a key of ``ACTIVATIONS``).
    alpha : float, array of shape (n_layers,) or (n_params,) or {"evidence", \
            "evidence_per_layer", "validation"}
        The weight prior precision, or how it is tuned (the evidence, or
        the walk on held-out rows).
    bias_prior_precision : float or array of shape (n_layers,)
        The bias prior precision.
    solver : {"lbfgs", "newton", "newton-cg"}
        The MAP solver.
    tol : float
        Tolerance on the scaled gradient.
    max_iter : int
        The solver's iteration cap (per MAP fit).
    verbose : int
        The solver's verbosity.
    hessian : {"ggn", "exact"}
        The curvature the posterior is built from.
    hessian_structure : {"full", "kron", "diag"}
        The posterior's structure.
    subset_of_weights : {"all", "last_layer"}
        The weights the posterior covers.
    prior_precision_scale : float or {"cv", "evidence", "loo", "validation"}
        The posterior's prior scale, or how it is chosen.
    validation_fraction : float
        Fraction of the rows ``"validation"`` holds out (alpha or the scale).
    link_approx : str
        Predictive approximation (a key of ``PREDICTIVES``), used by the
        held-out choice of the prior scale.
    n_mc_samples : int
        Monte Carlo draws of ``link_approx="mc"``.
    """

    activation: str
    alpha: float | np.ndarray | str
    bias_prior_precision: float | np.ndarray
    solver: str
    tol: float
    max_iter: int
    verbose: int
    hessian: str
    hessian_structure: str
    subset_of_weights: str
    prior_precision_scale: float | str
    validation_fraction: float
    link_approx: str
    n_mc_samples: int

    @classmethod
    def from_params(cls, params):
        """Take this config's fields from resolved parameters.

        Parameters
        ----------
        params : object
            Any object with one attribute per field, ``"auto"`` already
            resolved (:func:`~sklaplace._auto.resolved_params`); other
            attributes are ignored.

        Returns
        -------
        FitConfig
        """
        unresolved = [
            f.name
            for f in fields(cls)
            if isinstance(getattr(params, f.name), str)
            and getattr(params, f.name) == "auto"
        ]
        if unresolved:
            raise ValueError(f"Resolve 'auto' before fitting: {unresolved}.")
        return cls(**{f.name: getattr(params, f.name) for f in fields(cls)})
