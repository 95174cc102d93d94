"""How many posterior modes a fitted network's Laplace evidence stands for.

Permuting a hidden layer's units (and flipping their signs, for an odd
activation) maps a MAP to an equivalent one, so each refit's evidence counts
those modes (:func:`~sklaplace._network.log_equivalent_modes`): without
them, MacKay's run that collapsed to the base rate beat fitted ones. Every
unit's permutations are an upper bound, which cancels between two fitted
networks of one architecture; against a collapsed network, whose single mode
is exact, :func:`kept_run` counts only the fitted network's distinct units.
"""

import numpy as np

from sklaplace._evidence import clearly_larger
from sklaplace._network import log_equivalent_modes
from sklaplace._objective import ignores_its_input

__all__ = [
    "DISTINCT_UNIT_DISTANCE",
    "distinct_units",
    "kept_run",
    "log_modes",
    "unit_distances",
]

#: Posterior standard deviations (Mahalanobis, under the GGN precision)
#: between a unit's weights and zero beyond which the unit is distinct: the
#: modes its permutations make are then apart, not one blurred mode.
DISTINCT_UNIT_DISTANCE = 2.0


def unit_distances(objective, theta):
    """Squared posterior distance of each hidden unit's weights from zero.

    A unit's weights (its incoming column with its bias, and its outgoing
    row) are ``theta_u``; setting them to zero moves the parameters by
    ``theta_u' P theta_u``, in squared posterior standard deviations, ``P``
    the GGN posterior precision at ``theta`` (one product per unit).

    Returns
    -------
    distances : list of ndarray
        One array of shape (n_units,) per hidden layer.
    """
    xp, layout = objective.xp, objective.layout
    fwd = objective.forward(theta)
    index = np.arange(layout.n_params)
    distances = []
    for layer in range(1, layout.n_layers):
        shapes = layout.shapes[layer - 1 : layer + 1]
        incoming = index[layout.layer_slice(layer - 1)].reshape(shapes[0])
        outgoing = index[layout.layer_slice(layer)].reshape(shapes[1])
        layer_distances = np.empty(layout.layer_sizes[layer])
        for unit in range(layer_distances.size):
            mask = np.zeros(layout.n_params)
            mask[np.concatenate([incoming[:, unit], outgoing[unit, :]])] = 1.0
            v = theta * xp.asarray(mask, dtype=theta.dtype)
            product = objective.hessp(theta, v, "ggn", fwd)
            layer_distances[unit] = float(xp.sum(v * product))
        distances.append(layer_distances)
    return distances


def distinct_units(objective, theta):
    """Hidden units per layer whose weights are distinct from zero.

    A unit is distinct when its weights lie more than
    ``DISTINCT_UNIT_DISTANCE`` posterior standard deviations from zero
    (:func:`unit_distances`). Units within that of zero coincide with one
    another, so permuting them makes no new mode.

    Returns
    -------
    counts : list of int
        One per hidden layer.
    """
    return [
        int(np.sum(d > DISTINCT_UNIT_DISTANCE**2))
        for d in unit_distances(objective, theta)
    ]


def log_modes(objective, theta, distinct=False):
    """Log of the modes the Laplace evidence of the MAP ``theta`` stands for.

    One for a network that ignores its input (its units all sit at zero);
    else one per order and sign of every unit, or with ``distinct`` of its
    distinct units only (:func:`distinct_units`).
    """
    if ignores_its_input(objective, theta):
        return 0.0
    units = distinct_units(objective, theta) if distinct else None
    return log_equivalent_modes(
        objective.layout.layer_sizes, objective.activation, units
    )


def kept_run(tunings):
    """Index of the evidence run to keep: the first, unless another's is clearly larger.

    As within a run, smaller leads than ``EVIDENCE_MARGIN`` are the
    approximation's error. Each run's evidence counts every unit's modes
    (:func:`log_modes`); against a collapsed rival a fitted run counts its
    distinct units' only. On labels drawn independently of 10 features a
    (100,) network's run from alpha = 1 fitted the noise with 30 distinct
    units: counting all 100 gave it 364 nats, and a lead of 182 over the
    collapsed run from 100, where its distinct units give 133 and a deficit
    of 48 (test log loss 0.61 against the base rate's 0.574).

    Parameters
    ----------
    tunings : list of EvidenceTuning
        One per run, first the run from alpha = 1; ``fit`` with its
        ``objective``.

    Returns
    -------
    int
    """

    def evidence(tuning, rival):
        fit = tuning.fit
        if ignores_its_input(rival.fit.objective, rival.fit.theta):
            tight = log_modes(fit.objective, fit.theta, distinct=True)
            return tuning.evidence - log_modes(fit.objective, fit.theta) + tight
        return tuning.evidence

    kept = 0
    for i, tuning in enumerate(tunings[1:], start=1):
        if clearly_larger(
            evidence(tuning, tunings[kept]), evidence(tunings[kept], tuning)
        ):
            kept = i
    return kept
