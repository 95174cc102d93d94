"""Logit variance beyond the training data: a residual of dormant units.

A tanh (or logistic) network saturates far from its data, so its logits and
their Laplace variance ``J P^{-1} J'`` level off: the predictive stays as
confident a long way out as on the data. Following Kristiadi, Hein and
Hennig (2021, "An infinite-feature extension for Bayesian ReLU nets that
fixes their asymptotic overconfidence"), each logit gets an extra term
``g(x)`` made of infinitely many ReLU units of the input's radius that are
*dormant on the training data*:

``g(x) = integral over t > R of v_t max(0, r(x) - t) dt``, ``v_t`` white
noise of intensity ``sigma^2``,

with ``r(x)`` the distance of ``x`` from the centre of the training inputs
(each feature standardised by its training spread) and ``R`` the radius
within which all training rows lie but the farthest one's worth of weight
(1% of it under 100 rows' worth; :func:`envelope_radius`). Every unit is
zero on those rows, so the
likelihood does not see them: the MAP is unchanged and their posterior is
their prior, whatever the approximation used for the network (the one
row's worth left out informs them little; left in, a single outlying row
had set ``R`` and switched the residual off up to its distance).
Their variance is

``Var g(x) = sigma^2 (r - R)^3 / 3 = tau^2 ((r - R) / R)^3`` for ``r > R``

and 0 inside the data's envelope, so predictions there are untouched
(the farthest training row's worth excepted) while the predictive tends to
uniform far away. ``tau^2``, the
residual's variance at twice the data's radius, is by default the spread
(variance) of the MAP's logits *there*: over the training rows moved out
along their own directions to twice the radius. At that distance the model
is then as unsure of a logit as the logit varies at that distance, which
keeps pace with logits that level off (tanh) and with logits that grow
linearly (ReLU) alike. (With K >= 3 logits the spread is that of the
centred logits, which is all the softmax sees, while ``tau^2`` is added to
each raw logit; the centred logits receive ``(K - 1) / K`` of it.)
"""

from typing import NamedTuple

import numpy as np

__all__ = [
    "DataEnvelope",
    "at_twice_the_radius",
    "data_envelope",
    "envelope_radius",
    "fit_residual",
    "logit_spread",
    "residual_variance",
]

# The variance is capped so that it stays finite while it can: at the
# larger of 1e300 (near float64's limit, so that it outgrows the
# linearised variance, which grows with the square of the distance) and
# the square of 1e3 times the row's largest logit (so that, in standard
# deviations, it swamps the logits by 1e3: a probability within about
# 1e-3 of uniform). Where the cube and that square both overflow (logits
# beyond about 1e151) the variance is inf and the predictive refuses the
# row. (A cap on the distance instead, 1e50, let the linearised variance
# overtake it beyond 1e75 training radii: ReLU networks were confident
# again there. 1e300 alone did from about 1e148 radii, where ReLU and ELU
# logits approached 1e150: up to 0.67 from uniform on iris, largest
# probability 0.82 at 1e149 radii on two moons.)
_MAX_VARIANCE = 1e300
_SWAMPING = 1e3

#: The envelope leaves out the farthest row's worth of training weight, or
#: 1% of the weight where that is less. With the largest distance instead,
#: one training row at 30 standard deviations (two moons, 300 rows) took
#: the AUROC of the 5x box from 0.85 to 0.31, and a row of weight 1e-12
#: moved the radius as a whole row did. Issue 14's protocol, the same fits:
#: moons' box 0.851 -> 0.864 (0.308 -> 0.846 with the outlier); test log
#: loss breast cancer 0.0962 -> 0.0963, digits 0.0786 -> 0.0789, wine
#: unchanged; digits 0-4 vs 5-9 AUROC 0.9432 -> 0.9420.
OUTLYING_WEIGHT = 1.0
OUTLYING_FRACTION = 0.01
#: Rows' distances this close (relative) count as one (:func:`envelope_radius`):
#: far above a norm's round-off, far below a gap between real rows.
TIED_DISTANCE_RTOL = 1e-9


class DataEnvelope(NamedTuple):
    """Where the training inputs lie.

    Attributes
    ----------
    mean : ndarray of shape (n_features,)
        Weighted mean of the training rows.
    scale : ndarray of shape (n_features,)
        Weighted standard deviation per feature, positive. A feature constant
        on the training rows has no spread to measure moves by: it gets the
        median spread of the others (1 where all are constant; after a
        ``StandardScaler``, which leaves such a feature at unit scale, both
        are 1), so that any change in it moves a row away from every
        training row. (Its weights' posterior is their prior, but tanh units
        saturate: along such a feature alone the linearised variance levels
        off and the prediction stays as confident as on the data.)
    radius : float
        Standardised distance from ``mean`` within which the training rows
        lie but the farthest row's worth of weight (:func:`envelope_radius`).
    """

    mean: np.ndarray
    scale: np.ndarray
    radius: float

    def distance(self, X):
        """Standardised distance of each row of ``X`` from the training mean."""
        # (A scale of 0, from an envelope pickled before constant features
        # had one, leaves that feature out, as it then did.)
        inverse = np.divide(
            1.0, self.scale, out=np.zeros_like(self.scale), where=self.scale > 0
        )
        with np.errstate(over="ignore"):
            return np.linalg.norm((X - self.mean) * inverse, axis=1)


def data_envelope(X, sample_weight):
    """Return the :class:`DataEnvelope` of the rows of ``X`` of positive weight.

    Weights count as repetitions (an integer weight equals repeated rows).
    """
    seen = sample_weight > 0
    X, w = X[seen], sample_weight[seen]
    mean = w @ X / np.sum(w)
    scale = np.sqrt(w @ (X - mean) ** 2 / np.sum(w))
    # A feature whose spread is round-off of its mean is constant.
    spread = scale > 1e-12 * np.maximum(np.abs(mean), 1.0)
    unit = float(np.median(scale[spread])) if np.any(spread) else 1.0
    envelope = DataEnvelope(mean, np.where(spread, scale, unit), 0.0)
    return envelope._replace(radius=envelope_radius(envelope.distance(X), w))


def envelope_radius(distance, weight):
    """Return the distance beyond which lies one row's worth of the weight.

    ``OUTLYING_WEIGHT`` (one row) or ``OUTLYING_FRACTION`` of the total,
    whichever is less, lies beyond the radius. The radius is linear in the
    weight between the rows' distances (a row's weight spans from its own
    distance to the next nearer one), so it moves continuously with the
    weights: a row of weight 1e-12 moves it by about 1e-12 of a gap,
    however far out it lies. Rows at one distance count as one, their
    weights summed, so an integer weight equals repeated rows; so do rows
    within ``TIED_DISTANCE_RTOL`` of one another (rows at one distance in
    exact arithmetic, as a symmetric grid's, come out a round-off apart,
    which had moved the radius across a gap: 2.90 against 3.35 on a grid
    under a relative noise of 1e-14). The price of
    continuity: moving a row of small weight outward can lower the radius
    (its weight then spans a wider gap; [5, 4.95, 4] weighted [1, 0.2, 1]
    among 199 nearer unit rows give 4.95, with the 0.2 moved to 7 4.2).

    Parameters
    ----------
    distance : ndarray of shape (n_rows,)
    weight : ndarray of shape (n_rows,)
        Positive.

    Returns
    -------
    radius : float
    """
    order = np.argsort(distance, kind="stable")[::-1]  # farthest first
    distance, weight = distance[order], weight[order]
    # A new distance where one falls below the one before by more than the
    # tolerance (a run of round-off apart is one, at its farthest).
    new = np.r_[True, distance[1:] < distance[:-1] * (1.0 - TIED_DISTANCE_RTOL)]
    weight = np.add.reduceat(weight, np.flatnonzero(new))
    distance = distance[new]
    outside = min(OUTLYING_WEIGHT, OUTLYING_FRACTION * np.sum(weight))
    # After the weight of every row out to one, the radius is the next row's.
    spent = np.r_[0.0, np.cumsum(weight)]
    return float(np.interp(outside, spent, np.r_[distance, distance[-1]]))


def at_twice_the_radius(envelope, X, sample_weight):
    """Move the rows of ``X`` out along their own directions to twice the radius.

    Row ``x`` at standardised distance ``r > 0`` from the training mean
    becomes ``mean + (x - mean) 2 R / r``, at distance ``2 R``; rows at the
    mean (within round-off of it: no direction) and of zero weight are
    dropped.

    Returns
    -------
    rows : ndarray of shape (n_kept, n_features)
    weights : ndarray of shape (n_kept,)
    """
    distance = envelope.distance(X)
    kept = (distance > 1e-8 * envelope.radius) & (sample_weight > 0)
    stretch = 2.0 * envelope.radius / distance[kept]
    rows = envelope.mean + (X[kept] - envelope.mean) * stretch[:, None]
    return rows, sample_weight[kept]


def logit_spread(logits, sample_weight):
    """Weighted variance of the MAP's logits over the training rows.

    For K logits the softmax ignores a common shift, so each row's logits
    are centred first and the per-class variances averaged.
    """
    if logits.shape[1] > 1:
        logits = logits - logits.mean(axis=1, keepdims=True)
    w = sample_weight / np.sum(sample_weight)
    centred = logits - w @ logits
    return float(np.mean(w @ centred**2))


def residual_variance(envelope, tau2, X, logits=None):
    """``tau2 ((r - R) / R)^3`` beyond the envelope, 0 inside it.

    Capped at the larger of 1e300 and ``(1e3 max_k |logit_k|)^2`` per row,
    so that finite inputs give a finite variance that swamps the logits
    (a near-uniform predictive) until that bound overflows.

    Parameters
    ----------
    envelope : DataEnvelope
    tau2 : float
        The residual's variance at twice the data's radius.
    X : ndarray of shape (n_samples, n_features)
    logits : ndarray of shape (n_samples, n_outputs), default=None
        The rows' logits at the MAP; ``None`` counts them as zero (the cap
        is 1e300).

    Returns
    -------
    variance : ndarray of shape (n_samples,)
        Added to the variance of every logit (independently per logit);
        ``inf`` where the logits exceed about 1e151 and the cubic overflowed.
    """
    if tau2 == 0.0 or envelope.radius == 0.0:
        return np.zeros(X.shape[0])
    beyond = np.maximum(envelope.distance(X) / envelope.radius - 1.0, 0.0)
    # In float64 whatever the logits' dtype: 1e300 overflows float32.
    largest = 0.0 if logits is None else np.max(np.abs(logits), axis=1)
    largest = np.asarray(largest, dtype=np.float64)
    with np.errstate(over="ignore"):
        variance = tau2 * beyond**3
        cap = np.maximum(_MAX_VARIANCE, (_SWAMPING * largest) ** 2)
    return np.minimum(variance, cap)


def fit_residual(setting, X, sample_weight, n_layers, map_logits):
    """Return the training data's envelope and the residual's ``tau2`` for a fit.

    Parameters
    ----------
    setting : float or "auto"
        The estimator's ``residual_variance``.
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,)
    n_layers : int
        Layers of weights; 1 is a linear model, whose logit's posterior
        variance already grows with the square of the distance: no residual
        under ``"auto"``.
    map_logits : callable
        ``map_logits(rows) -> ndarray of shape (n_rows, n_outputs)``, the
        MAP's logits on ``rows`` (called only when ``"auto"`` needs them, on
        the rows :func:`at_twice_the_radius` gives).

    Returns
    -------
    envelope : DataEnvelope
    tau2 : float
    """
    envelope = data_envelope(X, sample_weight)
    if setting != "auto":
        return envelope, float(setting)
    if n_layers == 1 or envelope.radius == 0.0:
        return envelope, 0.0
    rows, weights = at_twice_the_radius(envelope, X, sample_weight)
    return envelope, logit_spread(map_logits(rows), weights)
