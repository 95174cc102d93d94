"""Predictive approximations: from the logit Gaussian to class probabilities.

Each function maps the linearised (GLM) predictive ``f ~ N(mean, cov)`` of
the logits to *moderated logits* ``g`` such that the class probabilities are
``sigmoid(g)`` (one logit) or ``softmax(g)`` (K logits). Returning logits
rather than probabilities keeps ``log p`` accurate in the tails and gives
``decision_function`` for free: it ranks exactly like ``predict_proba``.
"""

import math

import numpy as np

from sklaplace import _memory
from sklaplace._backend import to_numpy
from sklaplace._jacobian import (
    centring,
    jacobian_factor,
    logit_factors,
    seeded_chunks,
)
from sklaplace._memory import check_memory
from sklaplace._network import forward

__all__ = [
    "PREDICTIVES",
    "jacobian_chunks",
    "latent_gaussian",
    "logit_jacobians",
    "map_logits",
    "mc_noise",
    "mc_logits",
    "moderated_logits",
    "plug_in_logits",
    "predictive_rows_per_chunk",
    "probit_from_variance",
    "probit_logits",
]


def _dense_jacobian_rows(layout, n_params=None):
    """Rows of a chunk whose dense Jacobians fit ``DEFAULT_MEMORY_BUDGET``.

    ``n_params``: the columns of ``J`` built (default: every parameter's).
    """
    n_params = layout.n_params if n_params is None else n_params
    bytes_per_row = 4 * 8 * layout.n_outputs * n_params
    check_memory(bytes_per_row, "The logit Jacobian of one sample")
    return _memory.rows_within_budget(bytes_per_row)


def logit_jacobians(xp, layout, theta, activation, X, keep=None, centred=False):
    """Yield the logits and their Jacobian ``J`` in row chunks.

    Rows are processed in chunks whose Jacobians fit ``DEFAULT_MEMORY_BUDGET``.

    Parameters
    ----------
    xp : module
        Array namespace to compute in.
    layout : ParamLayout
    theta : array of shape (n_params,)
    activation : str
    X : ndarray of shape (n_samples, n_features)
    keep : array of shape (n_params,), default=None
        1.0 for kept parameters, 0.0 for pruned ones (their columns of ``J``
        are zeroed: no uncertainty).
    centred : bool, default=False
        Whether ``J`` is the centred logits' ``C J``
        (:func:`~sklaplace._jacobian.centring`).

    Yields
    ------
    logits : array of shape (n_chunk, n_outputs)
    J : array of shape (n_chunk, n_outputs, n_params)
    """
    rows = _dense_jacobian_rows(layout)
    for fwd, seeds in seeded_chunks(xp, layout, theta, activation, X, rows, centred):
        J = jacobian_factor(xp, layout, theta, fwd, seeds)
        yield fwd.logits, (J if keep is None else J * keep)


def jacobian_chunks(
    xp, layout, theta, activation, posterior, X, keep=None, centred=False
):
    """Return the row chunks' logits and Jacobians in the form ``posterior`` takes.

    Every posterior takes ``J`` factored
    (:func:`~sklaplace._jacobian.logit_factors`: no dense ``J``, whose rows
    hold ``n_outputs * n_params`` numbers each; a full posterior builds it
    chunk by chunk for its triangular solves, and the prior-scale family
    projects the factors without it); a pruned network (``keep``, whose
    columns are zeroed) the dense ``J`` of :func:`logit_jacobians` (see it
    for the other parameters), but with a diagonal posterior, whose readers
    give the pruned parameters no variance (:meth:`DiagPosterior.pinned`,
    the prior-scale family) and take ``J`` factored, columns not zeroed.

    Returns
    -------
    chunks : iterator of (logits, J)
        ``J`` dense or a :class:`~sklaplace._jacobian.FactoredJacobian`.
    """
    factored = getattr(posterior, "accepts_factored_jacobian", False)
    # A diagonal posterior's readers pin the pruned parameters themselves
    # (DiagPosterior.pinned): its J stays factored (a pruned 79,510-weight
    # refit's leave-one-out had taken 145 s with the dense one, against 13).
    if factored and (keep is None or posterior.structure == "diag"):
        # A full posterior, also a last layer's, builds the dense J of its
        # parameters for its own projections: chunks whose J fits the budget
        # (a last layer's of 30 classes had taken 3.5 GB for 1,253 rows).
        own = posterior.inner if posterior.structure == "last_layer" else posterior
        rows = None
        if own.structure == "full":
            rows = _dense_jacobian_rows(layout, own.n_params)
        return logit_factors(xp, layout, theta, activation, X, rows, centred)
    return logit_jacobians(xp, layout, theta, activation, X, keep, centred)


def plug_in_logits(xp, layout, theta, activation, X):
    """Logits at ``theta``, in row chunks whose activations fit the budget.

    The plug-in predictive's: no Jacobian, no derivative of the activations.
    """
    bytes_per_row = 2 * 8 * sum(layout.layer_sizes)  # the layers' inputs, z
    rows = _memory.rows_within_budget(bytes_per_row)
    return xp.concat(
        [
            forward(
                xp,
                layout,
                theta,
                xp.asarray(X[start : min(start + rows, X.shape[0]), ...]),
                activation,
                with_slopes=False,
            ).logits
            for start in range(0, X.shape[0], rows)
        ]
    )


def latent_gaussian(
    xp, layout, theta, activation, posterior, X, keep=None, centred=False
):
    """Linearised (GLM) predictive of the logits, in row batches.

    ``mean = f(x, theta)`` and ``cov = J P^{-1} J'`` with ``J`` the logit
    Jacobian at ``x`` (see :func:`logit_jacobians` for the parameters). A
    posterior that accepts the Jacobian in factored form gets it so
    (:func:`jacobian_chunks`): Kronecker and last-layer ones without the
    dense ``J``, a full one builds it chunk by chunk. ``centred=True``
    gives ``C cov C`` for K logits (``C = I - 11'/K``), computed from ``C J``
    (:func:`~sklaplace._jacobian.centring`): all a softmax sees of the
    covariance, and free of the round-off of the common shift's variance.

    Returns
    -------
    mean : array of shape (n_samples, n_outputs)
    cov : array of shape (n_samples, n_outputs, n_outputs)
    """
    if keep is not None and posterior.structure == "diag":
        # Zeroing the pruned columns of J is giving them no variance: the
        # factored J serves, with no dense one (13x faster on 5 classes).
        posterior, keep = posterior.pinned(to_numpy(keep) == 0.0), None
    means, covs = [], []
    chunks = jacobian_chunks(xp, layout, theta, activation, posterior, X, keep, centred)
    for logits, J in chunks:
        means.append(logits)
        covs.append(posterior.functional_variance(xp, J))
    return xp.concat(means), xp.concat(covs)


# MacKay (1992) / Bishop PRML eq. (4.153): sigmoid(a) ~ Phi(sqrt(pi/8) a), so
# E[sigmoid(f)] ~ sigmoid(kappa mu) with kappa = (1 + pi s2 / 8)^(-1/2).
_PROBIT_SCALE = math.pi / 8.0


def map_logits(xp, mean, cov, **kwargs):
    """Plug-in MAP: ``g = mean`` (the uncertainty is ignored)."""
    return mean


def probit_from_variance(xp, centred_mean, centred_variance):
    """``g = kappa * mean`` from the centred logits' means and variances."""
    variance = xp.maximum(centred_variance, xp.zeros_like(centred_variance))
    return centred_mean / xp.sqrt(1.0 + _PROBIT_SCALE * variance)  # round-off only


def probit_logits(xp, mean, cov, **kwargs):
    """Probit approximation: ``g = kappa * mean``.

    One logit: ``kappa = 1 / sqrt(1 + pi/8 var)`` (Bishop PRML 4.5.2).
    K logits (mean-field): ``g_k = kappa_k * mean_k`` on CENTRED logits: a
    softmax ignores a common shift, so both the mean and the covariance are
    projected with ``C = I - 11'/K`` first; raw per-class variances would
    push every prediction towards uniform. Only the diagonal of ``C cov C``
    enters (:func:`probit_from_variance`).
    """
    C = centring(xp, mean.shape[1], mean.dtype)
    cov = C[None, :, :] @ cov @ C[None, :, :]
    return probit_from_variance(xp, mean @ C, xp.linalg.diagonal(cov))


def _logsumexp(xp, a, axis):
    peak = xp.max(a, axis=axis, keepdims=True)
    return xp.squeeze(peak, axis=axis) + xp.log(xp.sum(xp.exp(a - peak), axis=axis))


def mc_logits(xp, mean, cov, *, noise, **kwargs):
    """Monte Carlo: average the link over logits drawn from ``N(mean, cov)``.

    Parameters
    ----------
    noise : array of shape (n_mc_samples, n_outputs)
        Standard normal draws shared by every row (common random numbers), so
        each row's result does not depend on which other rows are predicted.

    Returns
    -------
    g : array of shape (n_samples, n_outputs)
        ``logit(mean_s sigmoid(f_s))`` for one logit; ``log(mean_s
        softmax(f_s))`` for K logits.
    """
    n_draws = noise.shape[0]
    # Symmetric square root of each row's covariance (PSD; may be singular).
    eigenvalues, eigenvectors = xp.linalg.eigh(cov)
    eigenvalues = xp.maximum(eigenvalues, xp.zeros_like(eigenvalues))
    root = (eigenvectors * xp.sqrt(eigenvalues)[:, None, :]) @ xp.permute_dims(
        eigenvectors, (0, 2, 1)
    )
    # (n, K, S), draws last: reductions over a short last axis (K) were half
    # of the time (digits: 59 -> 31 ms per 250 rows); root is symmetric.
    draws = mean[:, :, None] + root @ xp.permute_dims(noise, (1, 0))
    # Not the likelihood's log_proba: its log1p form (and the Bernoulli's
    # two columns) took 45% more time and 1.3-1.75 times the memory these
    # chunks are sized for, for an accuracy the average over draws loses.
    log_n = math.log(n_draws)
    if mean.shape[1] == 1:
        zero = xp.zeros_like(draws)
        log_p1 = _logsumexp(xp, -xp.logaddexp(zero, -draws), axis=2) - log_n
        log_p0 = _logsumexp(xp, -xp.logaddexp(zero, draws), axis=2) - log_n
        return log_p1 - log_p0
    log_softmax = draws - _logsumexp(xp, draws, axis=1)[:, None, :]
    return _logsumexp(xp, log_softmax, axis=2) - log_n


PREDICTIVES = {"probit": probit_logits, "mc": mc_logits, "map": map_logits}


def predictive_rows_per_chunk(link_approx, n_outputs, n_mc_samples):
    """Rows per chunk of :func:`moderated_logits` within the memory budget.

    Monte Carlo holds ``(rows, n_mc_samples, n_outputs)`` draws and about
    three temporaries of that size; one row that alone exceeds the dense
    limit raises :class:`~sklaplace.exceptions.MemoryLimitError` here,
    before any work.
    """
    mc = link_approx == "mc"
    bytes_per_row = 8 * 4 * n_outputs * (n_mc_samples if mc else n_outputs)
    if mc:
        check_memory(
            bytes_per_row,
            f"The {n_mc_samples} Monte Carlo draws of one sample",
            "Use a smaller n_mc_samples or link_approx='probit'.",
        )
    return _memory.rows_within_budget(bytes_per_row)


def mc_noise(xp, seed, n_draws, n_outputs):
    """Draw ``(n_draws, n_outputs)`` standard normals seeded by ``seed``.

    Antithetic: the draws come in pairs ``z, -z``, and an odd count adds a
    draw of 0 (the mean itself). The pairs cancel the odd part of the link's
    error, and with one logit they keep the MAP's decision: ``sigmoid(m + x)
    + sigmoid(m - x) > 1`` exactly when ``m > 0`` (and ``sigmoid(m) > 1/2``),
    where independent draws had flipped 264 of 2,000 far-away points.
    """
    half = np.random.RandomState(seed).standard_normal((n_draws // 2, n_outputs))
    zero = np.zeros((n_draws % 2, n_outputs))
    return xp.asarray(np.concatenate([half, -half, zero]))


def moderated_logits(xp, mean, cov, link_approx, n_mc_samples, seed, rows):
    """Logits whose link is the predictive, row chunk by row chunk.

    Parameters
    ----------
    mean, cov : arrays of shape (n, K) and (n, K, K)
        From :func:`latent_gaussian`.
    link_approx : {"probit", "mc", "map"}
    n_mc_samples : int
        Draws for ``"mc"``.
    seed : int
        Seeds the draws: common random numbers fixed at fit, so every row
        sees the same draws, predictions are deterministic and a row's does
        not depend on the others.
    rows : int
        From :func:`predictive_rows_per_chunk`.

    Returns
    -------
    logits : array of shape (n, K)
    """
    n_draws = n_mc_samples if link_approx == "mc" else 1
    noise, predictive = (
        mc_noise(xp, seed, n_draws, mean.shape[1]),
        PREDICTIVES[link_approx],
    )
    n = mean.shape[0]
    return xp.concat(
        [
            predictive(
                xp,
                mean[i : min(i + rows, n), ...],
                cov[i : min(i + rows, n), ...],
                noise=noise,
            )
            for i in range(0, n, rows)
        ]
    )
