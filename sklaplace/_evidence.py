"""The Laplace log marginal likelihood (log evidence), DESIGN.md section 5.

``log Z = log p(D | theta) - 1/2 (log_det_ratio + scatter)`` with
``scatter = theta' A theta`` and ``log_det_ratio = log det P - log det A``
(laplace-torch's form of MacKay 1992, eq. 30; Bishop PRML eq. 5.175).

Parameters with zero prior precision have an improper (flat) prior; they
are left out of ``log det A``, which makes ``log Z`` defined up to a constant
that depends only on how many such parameters there are -- enough to compare
prior precisions or architectures with the same flat parameters.
"""

from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sklaplace._backend import to_numpy
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = [
    "EvidenceTuning",
    "clearly_larger",
    "log_det_prior",
    "log_evidence_from_terms",
    "log_marginal_likelihood",
    "mackay_update",
    "tune_alpha",
    "weight_groups",
]

# MacKay's updates stop when every alpha moves by less than this in log
# space (0.01%), or after this many refits. Alphas are kept inside the bounds:
# an MLP's evidence can rise without limit as one layer's weights shrink and
# the next layer's grow (the scaling symmetry of a near-linear unit).
EVIDENCE_TOL = 1e-4
EVIDENCE_MAX_UPDATES = 50
# MacKay's updates converge linearly (each step about a third of the one
# before on digits and breast cancer); where two successive steps point the
# same way and shrink by a ratio below this, the next alpha is their Aitken
# extrapolation (Steffensen's acceleration of a fixed-point iteration).
AITKEN_MAX_RATIO = 0.9
EVIDENCE_BOUNDS = (1e-6, 1e6)
# The updates cycle when their largest step has set no new low in this many
# refits and the last alpha lies within the range of those refits' alphas
# (each refit's MAP may land in another basin, so the map from alpha to its
# update need not be smooth): they stop there. A steady march to a far
# optimum (steps of one sign and size, new alphas beyond the range) goes on.
# They also stop after this many refits in a row that ran out of iterations
# short of their MAP: the evidence and MacKay's update hold at a mode only,
# and on features x1e4 every refit did (digits: 57). A refit stalled at
# ReLU kinks is as near its MAP as the solvers get: not counted.
EVIDENCE_PATIENCE = 10
# Per layer, the updates give up after this many refits in a row at which
# the layers' alphas spread apart (the largest over the smallest grew) with
# the evidence more than EVIDENCE_MARGIN below the run's best: the march to
# the degenerate limit above, whose refits grow costly as one layer's prior
# vanishes (digits, hidden (16,): 50 refits, 379 s against the scalar
# default's 26 s), and whose evidence stayed below the best on every march
# measured (the refit kept either way).
EVIDENCE_MARCH_REFITS = 3
# The refits have settled when their steps and alphas stay within this (1%)
# and the steps set no new low in this many refits: the refitted MAP moves a
# little each time (ReLU kinks), so the updates jitter at that noise floor
# instead of shrinking to EVIDENCE_TOL. A 1% step is worth at most gamma / 2
# * 1e-4 nats of log evidence (|d^2 log Z / d(log alpha)^2| <= gamma).
EVIDENCE_SETTLED = 1e-2
EVIDENCE_SETTLED_REFITS = 3
# The first fit's alpha (every group), one run of the updates from each; the
# first run is kept unless a later one at least as regularised has a larger
# evidence, counting its equivalent modes (log_equivalent_modes), by
# EVIDENCE_MARGIN (sklaplace._basins.kept_run). The evidence of a network
# has several local maxima in alpha, and MacKay's updates climb the
# nearest: from 1 the refits of a (16,) network on labels independent of
# the features settle at alpha ~0.9 (log evidence -440, test log loss 0.87
# against the base rate's 0.69), from 100 at 10-100 (-294, 0.69); on 30%
# of 600 labels flipped, hidden (32, 32), from 1 at 1.4 (-234, 0.65),
# memorising the rows, while the first fit from 10 had -84 (0.50). See the
# benchmark report. (A run from sklaplace._basins.HELD_OUT_START is weighed
# by held-out losses only.)
EVIDENCE_STARTS = (1.0, 10.0, 100.0)
# Nats by which a refit's log evidence must beat its run's last refit (the
# fixed point, or where the updates gave up) to be kept instead: "strong"
# on Kass & Raftery's (1995) scale (2 ln B > 6). Smaller differences are
# within the Laplace approximation's error and depend on which alphas the
# updates happened to visit (kept anyway, a pruned refit no longer equalled
# a fit without the pruned input). A later start's run must beat the kept
# run's refit by as much (breast cancer, hidden (16,): the run from 100
# led by 0.5-1.9 nats on five splits, test log loss 0.0988 against 0.0962).
# See the benchmark report.
EVIDENCE_MARGIN = 3.0


# A group's effective number of parameters below -this x its size is
# negative beyond round-off: its data curvature is indefinite (mackay_update).
NEGATIVE_GAMMA_RTOL = 1e-8


def clearly_larger(evidence, reference):
    """Whether ``evidence`` beats ``reference`` by more than ``EVIDENCE_MARGIN``."""
    return evidence > reference + EVIDENCE_MARGIN


def log_det_prior(prior_precision, fixed=None):
    """``log det A`` over the free parameters with a proper prior (``A_i > 0``)."""
    precision = to_numpy(prior_precision)
    counted = precision > 0
    if fixed is not None:
        counted &= ~to_numpy(fixed)
    return float(np.sum(np.log(precision[counted])))


def log_evidence_from_terms(
    log_likelihood, theta_map, prior_precision, log_det_precision, fixed=None
):
    """Laplace log evidence from ``log det P``, a float.

    The parameters are those of :func:`log_marginal_likelihood`, with the
    posterior replaced by its ``log_det_precision`` (a float).
    """
    theta = to_numpy(theta_map)
    scatter = float(np.sum(to_numpy(prior_precision) * theta * theta))
    log_det_ratio = log_det_precision - log_det_prior(prior_precision, fixed)
    return float(log_likelihood) - 0.5 * (log_det_ratio + scatter)


def log_marginal_likelihood(
    log_likelihood, theta_map, prior_precision, posterior, fixed=None
):
    """Laplace log evidence.

    Parameters held at zero (``fixed``, e.g. pruned weights) are not part of
    the model: they add nothing to the scatter (they are zero), nor to
    ``log det P`` (the posterior has the identity there), nor to ``log det A``.

    Parameters
    ----------
    log_likelihood : float
        ``sum_n s_n log p(y_n | theta_map)``.
    theta_map : array of shape (n_params,)
    prior_precision : array of shape (n_params,)
    posterior : FullPosterior or DiagPosterior
    fixed : array of bool of shape (n_params,), default=None

    Returns
    -------
    log_evidence : float
    """
    return log_evidence_from_terms(
        log_likelihood, theta_map, prior_precision, posterior.log_det_precision(), fixed
    )


def weight_groups(layout, per_layer, fixed=None):
    """Boolean masks of the weights that share one evidence-tuned ``alpha``.

    One mask over every weight (biases and ``fixed`` weights excluded), or
    one per layer.
    """
    weights = ~layout.bias_mask()
    if fixed is not None:
        weights &= ~np.asarray(fixed)
    if not per_layer:
        return [weights]
    layer = layout.layer_index()
    return [weights & (layer == i) for i in range(layout.n_layers)]


def mackay_update(covariance_diagonal, theta_map, alphas, groups):
    """One MacKay fixed-point update of the weight precisions.

    For each group ``g`` of weights sharing ``alpha_g``: the effective number
    of parameters ``gamma_g = W_g - alpha_g tr_g(P^{-1})`` and the update
    ``alpha_g <- gamma_g / ||theta_g||^2`` (MacKay 1992, eqs. 4.20-4.21 of
    "Bayesian interpolation"; Bishop PRML eqs. 5.178-5.179). At the fixed
    point the evidence at the current MAP is stationary in ``log alpha_g``.
    ``gamma_g`` lies in ``[0, W_g]`` where the data curvature is positive
    semi-definite (the GGN); an exact Hessian can make it negative, and then
    the update is the EM form ``W_g / (||theta_g||^2 + tr_g(P^{-1}))``,
    positive, with the same fixed point (a review found ``hessian="exact"``
    driving alpha to its lower bound with ``gamma`` at -49).

    Parameters
    ----------
    covariance_diagonal : array of shape (n_params,)
        ``diag(P^{-1})`` of the Laplace posterior.
    theta_map : array of shape (n_params,)
    alphas : array of shape (n_groups,)
        Current precision of each group.
    groups : list of ndarray of bool
        From :func:`weight_groups`.

    Returns
    -------
    alphas : ndarray of shape (n_groups,)
        Updated precisions (unchanged for an empty group, e.g. a layer
        pruned away).
    gammas : ndarray of shape (n_groups,)
        Effective numbers of parameters.
    """
    covariance = to_numpy(covariance_diagonal)
    theta = to_numpy(theta_map)
    tiny = np.finfo(np.float64).tiny
    updated, gammas = [], []
    for alpha, mask in zip(alphas, groups):
        n, trace = int(mask.sum()), float(covariance[mask].sum())
        gamma = n - alpha * trace
        norm = float(np.sum(theta[mask] ** 2))
        if not mask.any():
            updated.append(alpha)
        elif gamma < -NEGATIVE_GAMMA_RTOL * n:
            # Only an indefinite (exact) data Hessian puts the posterior's
            # variance above the prior's: MacKay's update would be negative.
            # The EM form has the same fixed point and stays positive.
            updated.append(n / (norm + trace))
        else:
            updated.append(max(gamma, tiny) / max(norm, tiny))
        gammas.append(gamma)
    return np.array(updated, dtype=np.float64), np.array(gammas)


class EvidenceTuning(NamedTuple):
    """Outcome of :func:`tune_alpha`.

    Attributes
    ----------
    fit : object
        What ``fit_laplace`` returned for the kept alphas: the last refit,
        or one of evidence larger by over ``EVIDENCE_MARGIN``.
    alpha : ndarray of shape (n_groups,)
        The kept alphas.
    history : list of ndarray
        Alphas of every refit, the first being all ``start``.
    gammas : ndarray of shape (n_groups,)
        Effective numbers of parameters at the kept refit.
    kept : int
        Index of the kept refit in ``history``.
    evidence : float or None
        Its log evidence, as ``evidence`` scored it (None without one).
    fixed_point : int or None
        Index in ``history`` of the updates' last refit (before a kept
        refit is resumed), where they converged; None where they gave up.
    """

    fit: object
    alpha: object
    history: list
    gammas: object
    kept: int
    evidence: object  # float, or None without an evidence
    fixed_point: object = None


def tune_alpha(
    fit_laplace,
    groups,
    theta,
    covariance_diagonal,
    start=1.0,
    evidence=None,
    collapsed=None,
):
    """MacKay's fixed point: refit, update the alphas, until they settle.

    Two successive updates of a group's alpha the same way, shrinking by a
    ratio ``q`` below ``AITKEN_MAX_RATIO`` (linear convergence), are followed
    by their Aitken extrapolation ``log alpha + step q / (1 - q)``; an
    extrapolation whose next update is larger than the step it extrapolated
    overshot (the refits are not a smooth fixed-point map: a 3-cycle on
    unscaled breast cancer ran all 50 refits), and that group's updates stay
    plain from then on. The loop stops when MacKay's own update at the last
    MAP is below ``EVIDENCE_TOL``, or when the updates have settled at the
    refits' noise floor (the last ``EVIDENCE_SETTLED_REFITS + 1`` steps
    below ``EVIDENCE_SETTLED``, none a new low, and as many refits' alphas
    within that band), or at a ``collapsed`` fit;
    it gives up with a
    :class:`ConvergenceWarning` after
    ``EVIDENCE_MAX_UPDATES`` refits, when the updates cycle (the largest
    step has set no new low in ``EVIDENCE_PATIENCE`` refits and the last
    alpha lies within their range), when ``EVIDENCE_PATIENCE`` refits in
    a row ran out of iterations short of their MAP, or when the groups'
    alphas spread apart at ``EVIDENCE_MARCH_REFITS`` refits in a row, each
    more than ``EVIDENCE_MARGIN`` below the best in evidence.

    Given ``evidence``, a refit whose evidence beats the last refit's by
    more than ``EVIDENCE_MARGIN`` nats is kept instead (the largest; resumed
    at its alpha if ``max_iter`` had stopped it short of its MAP): MacKay's
    update takes the Hessian as fixed while alpha moves it and the MAP, so
    the updates need not climb the evidence. On a one-hot task (1,050 rows,
    hidden (100,)) it peaked at the second refit (alpha 13.5, log evidence
    -641) and fell at every update to the fixed point (alpha 3.8, -891;
    test log loss 0.75 against 0.60).

    Parameters
    ----------
    fit_laplace : callable
        ``fit_laplace(alphas, theta) -> fit`` fits the MAP from ``theta`` and
        its posterior for the given group alphas; ``fit`` must have
        attributes ``theta``, ``posterior``, ``prior_precision`` and
        ``out_of_iterations`` (whether ``max_iter`` stopped its solver).
    groups : list of ndarray of bool
        From :func:`weight_groups`.
    theta : array of shape (n_params,)
        Starting point of the first fit; each refit starts from the last MAP.
    covariance_diagonal : callable
        ``covariance_diagonal(posterior) -> diag(P^{-1})``.
    start : float or ndarray of shape (n_groups,), default=1.0
        The first fit's alpha (every group).
    evidence : callable, default=None
        ``evidence(fit) -> float``, the log evidence that ranks the refits;
        if None, the last refit is kept.
    collapsed : callable, default=None
        ``collapsed(fit) -> bool``: whether the fit's network ignores its
        input. The updates stop there, converged: its weights sit at zero,
        where their gradient vanishes, so every refit stays there and its
        evidence does not depend on alpha (the updates had cycled between
        1.8 and 99 on labels independent of the features).

    Returns
    -------
    tuning : EvidenceTuning
    """
    alpha = np.full(len(groups), start, dtype=np.float64)
    history, last_step = [], None
    # Per group: whether its updates may still be extrapolated, and the
    # step an extrapolation of it followed.
    accelerate = np.ones(len(groups), dtype=bool)
    extrapolated = None
    smallest, since_smallest, converged, sizes = np.inf, 0, False, []
    stop, best, short = None, None, 0  # why the updates gave up; refits short
    marching, previous = 0, None  # refits marching apart; the last refit

    def refit(alpha, theta):
        """Fit at ``alpha``; return its tuning record and MacKay's update."""
        fit = fit_laplace(alpha, theta)
        history.append(alpha.copy())
        new_alpha, gammas = mackay_update(
            covariance_diagonal(fit.posterior), fit.theta, alpha, groups
        )
        score = None if evidence is None else float(evidence(fit))
        if score is not None and not np.isfinite(score):
            score = -np.inf  # a refit without a finite evidence never wins
        return EvidenceTuning(
            fit, history[-1], None, gammas, len(history) - 1, score
        ), new_alpha

    for _ in range(EVIDENCE_MAX_UPDATES):
        last, new_alpha = refit(alpha, theta)
        fit, score = last.fit, last.evidence
        theta, short = fit.theta, short + 1 if fit.out_of_iterations else 0
        if best is None or score is None or score > best.evidence:  # first of equals
            best = last
        marching = marching + 1 if _marches_apart(previous, last, best) else 0
        previous = last
        if collapsed is not None and collapsed(fit):
            converged = True
            break
        new_alpha = np.clip(new_alpha, *EVIDENCE_BOUNDS)
        step = np.log(new_alpha / alpha)
        size = np.max(np.abs(step))
        if size < EVIDENCE_TOL:
            converged = True
            break
        if extrapolated is not None:
            accelerate &= ~(np.abs(step) > extrapolated)  # those that overshot
        if size < smallest:
            smallest, since_smallest = size, 0
        else:
            since_smallest += 1
        sizes.append(size)
        # Steps and alphas in a band: extrapolations that march do not settle.
        recent = slice(-EVIDENCE_SETTLED_REFITS - 1, None)
        spread = max(*sizes[recent], np.max(np.ptp(np.log(history[recent]), axis=0)))
        if since_smallest >= EVIDENCE_SETTLED_REFITS and spread < EVIDENCE_SETTLED:
            converged = True  # settled at the refits' noise floor
            break
        window = history[-EVIDENCE_PATIENCE - 1 : -1]
        if since_smallest >= EVIDENCE_PATIENCE and np.all(
            (np.min(window, axis=0) <= alpha) & (alpha <= np.max(window, axis=0))
        ):
            stop = (
                f"(no smaller step in {EVIDENCE_PATIENCE} refits: the refits cycle "
                f"among alphas from {np.min(history[-EVIDENCE_PATIENCE:]):.4g} to "
                f"{np.max(history[-EVIDENCE_PATIENCE:]):.4g})",
                "Use a fixed alpha",
            )
            break
        if short >= EVIDENCE_PATIENCE:
            stop = (
                f"(the last {short} refits ran out of iterations short of their "
                "MAP, where the evidence does not hold)",
                "Standardise the features, increase max_iter or use a fixed alpha"
                # Per layer the refits grow hard on the way to a degenerate
                # limit (one layer's alpha falling as another's rises), where
                # more iterations only reach the bound (session 34's probes).
                + " (or alpha='evidence')" * (len(groups) > 1),
            )
            break
        if marching >= EVIDENCE_MARCH_REFITS:
            stop = (
                f"(the layers' alphas spread apart at each of the last {marching} "
                "refits, their evidence far below the best: towards the degenerate "
                "limit)",
                "Prefer alpha='evidence' or a fixed alpha",
            )
            break
        alpha, ratio, extrapolated = new_alpha, None, None
        if last_step is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = step / last_step
        linear = np.zeros(len(groups), dtype=bool)
        if ratio is not None:
            linear = accelerate & (ratio > 0) & (ratio < AITKEN_MAX_RATIO)
        if np.any(linear):
            # Two steps the same way, shrinking by a steady ratio: linear
            # convergence, whose limit Aitken's delta-squared extrapolates
            # (log alpha + step q / (1 - q)), for each group converging so
            # (per layer, one can while another oscillates); the next two
            # steps are plain.
            q = np.where(linear, ratio, 0.0)
            alpha = np.clip(alpha * np.exp(step * q / (1 - q)), *EVIDENCE_BOUNDS)
            last_step = None
            extrapolated = np.where(linear, np.abs(step), np.inf)
        else:
            last_step = step
    if score is None or not clearly_larger(best.evidence, last.evidence):
        best = last
    elif best.fit.out_of_iterations:
        # Kept on the way, but stopped short of its MAP, where the evidence
        # and the posterior hold: resumed there at its alpha (one more refit).
        best = refit(best.alpha, best.fit.theta)[0]
    alpha = best.alpha
    prefer = "alpha='evidence' or a fixed alpha" if len(groups) > 1 else "a fixed alpha"
    # Updates that gave up after a refit at a bound gave up for the bound (its
    # refits run out of iterations), though the refit kept may lie inside.
    at_bound = [i for i, a in enumerate(history) if np.any(np.isin(a, EVIDENCE_BOUNDS))]
    bounded = [] if converged else at_bound
    if not converged:
        reason, advice = stop or (
            f"in {EVIDENCE_MAX_UPDATES} refits",
            "Use a fixed alpha",
        )
        if bounded:
            advice = f"They reached a bound of alpha (next warning): prefer {prefer}"
        warn(
            f"The evidence updates of alpha did not converge {reason}; the "
            f"{'last refit' if best is last else 'refit of largest evidence'} "
            f"is kept (alpha {alpha}). {advice}.",
            ConvergenceWarning,
        )
    if np.any(np.isin(alpha, EVIDENCE_BOUNDS)) or bounded:
        shown = alpha
        if bounded:
            shown = f"refit {bounded[-1]}: {history[bounded[-1]]}; refit kept: {alpha}"
        warn(
            f"The evidence drove alpha to a bound of {EVIDENCE_BOUNDS} ({shown}): "
            "MacKay's updates head for a degenerate limit (e.g. one layer's weights "
            "vanishing while the next layer's grow, separable data, or data that "
            "say little: features with no signal, or a sample_weight summing to few "
            "rows' worth, as the likelihood counts weights as repetitions), where "
            f"the evidence need not be larger. Prefer {prefer}.",
            LaplaceApproximationWarning,
        )
    return best._replace(history=history, fixed_point=last.kept if converged else None)


def _marches_apart(previous, last, best):
    """Whether ``last``'s alphas spread beyond ``previous``'s, far below ``best``.

    The spread is ``log(max alpha / min alpha)`` over the groups (one layer's
    prior tightening while another's loosens; never with one group); far
    below is by more than ``EVIDENCE_MARGIN`` in log evidence.
    """
    if previous is None or last.evidence is None:
        return False
    spread = [np.ptp(np.log(t.alpha)) for t in (previous, last)]
    return bool(spread[1] > spread[0] and clearly_larger(best.evidence, last.evidence))
