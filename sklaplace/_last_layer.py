"""Last-layer Laplace: the posterior of the last layer given the MAP's features.

With ``subset_of_weights="last_layer"`` (laplace-torch's vocabulary) the
hidden layers stay at the MAP and their last activations ``phi(x)`` are fixed
features; the posterior is the exact Laplace approximation of the last layer,
a Bayesian logistic (one logit) or softmax regression on ``phi`` with the
MAP's prior on that layer. The logits are linear in the last layer, so its
GGN IS its Hessian; any structure (full, diag, kron) applies to it.

:class:`LastLayerPosterior` wraps that posterior so that callers stay
structure-agnostic: it takes Jacobians and prior changes over ALL the
parameters (``n_params`` long) and uses the last layer's slice. For the
evidence, the other parameters are hyperparameters held at the MAP: they
add their log prior density (``log det P`` counts their prior precision, so
the ``log det A`` of the evidence cancels it) and no Occam factor.
"""

import numpy as np

from sklaplace._backend import to_numpy
from sklaplace._evidence import log_det_prior
from sklaplace._jacobian import FactoredJacobian
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior

__all__ = ["LastLayerPosterior", "last_layer_objective"]


def last_layer_objective(objective, theta_map):
    """Return the last layer's negative log posterior on the MAP's features.

    Returns
    -------
    objective : NegLogPosterior
        A one-layer network (identity activation) on ``phi(X)``, with the
        data, weights and the last layer's slice of the prior.
    offset : int
        Where the last layer starts in ``theta``.
    """
    xp, layout = objective.xp, objective.layout
    features = objective.forward(theta_map).acts[-1]
    sub_layout = ParamLayout(layout.layer_sizes[-2:])
    offset = layout.offsets[-2]
    sub = NegLogPosterior(
        xp,
        sub_layout,
        "identity",
        objective.likelihood,
        features,
        objective.Y,
        objective.sample_weight,
        objective.prior_precision[offset:],
        memory_budget=objective.memory_budget,
    )
    return sub, offset


class LastLayerPosterior:
    """Posterior over the last layer; the other parameters fixed at the MAP.

    Parameters
    ----------
    inner : FullPosterior, DiagPosterior or KronPosterior
        Posterior of the last layer's parameters.
    other_prior : ndarray of shape (offset,)
        Prior precision of the parameters before the last layer.
    """

    structure = "last_layer"
    accepts_factored_jacobian = True

    def __init__(self, inner, other_prior):
        self.inner = inner
        self.other_prior = np.asarray(to_numpy(other_prior), dtype=np.float64)

    @property
    def offset(self):
        """Index of the last layer's first parameter in ``theta``."""
        return self.other_prior.shape[0]

    @property
    def n_params(self):
        """Number of parameters of the whole network."""
        return self.offset + self.inner.n_params

    @property
    def jitter(self):
        """Jitter of the last layer's posterior (0.0 if none)."""
        return getattr(self.inner, "jitter", 0.0)

    def log_det_precision(self):
        """``log det P_last + log det A_other`` (flat priors left out)."""
        return self.inner.log_det_precision() + log_det_prior(self.other_prior)

    def functional_variance(self, xp, J):
        """``J_last P_last^{-1} J_last'``; ``J`` over all parameters.

        ``J`` is an array or a :class:`~sklaplace._jacobian.FactoredJacobian`
        (of which only the last layer's factors are used).
        """
        if isinstance(J, FactoredJacobian):  # every inner posterior takes factors
            return self.inner.functional_variance(xp, J.last_layer())
        if self.inner.structure != "kron":
            return self.inner.functional_variance(xp, J[:, :, self.offset :])
        # it caches by J: pass J itself
        return self.inner.functional_variance(xp, J, offset=self.offset)

    def last_layer_jacobian(self, xp, J):
        """Return the last layer's columns of ``J`` (array or factored) as an array."""
        if isinstance(J, FactoredJacobian):
            return J.last_layer().dense(xp)
        return J[:, :, self.offset :]

    def with_prior_change(self, xp, delta):
        """Posterior with prior ``A + diag(delta)``; ``delta`` over all parameters."""
        delta = to_numpy(delta)
        return LastLayerPosterior(
            self.inner.with_prior_change(xp, delta[self.offset :]),
            self.other_prior + delta[: self.offset],
        )

    def pivot_ratio(self):
        """Return the last layer's (see its posterior)."""
        return self.inner.pivot_ratio()

    @property
    def pivot_what(self):
        """What :meth:`pivot_ratio` measures: the last layer's posterior's."""
        return self.inner.pivot_what

    @property
    def jitter_where(self):
        """Where :attr:`jitter` went: the last layer's posterior's."""
        return self.inner.jitter_where

    def covariance_diagonal(self, xp):
        """``diag(P^{-1})``: the last layer's, and the prior variance elsewhere.

        The other parameters are held at the MAP; their prior variance ``1 /
        A_i`` (``inf`` for a flat prior) makes MacKay's effective number of
        parameters count the last layer only.
        """
        prior = self.other_prior
        with np.errstate(divide="ignore"):
            other = np.where(prior > 0, 1.0 / prior, np.inf)
        return xp.concat([xp.asarray(other), self.inner.covariance_diagonal(xp)])
