"""``alpha="validation"``: the weight precision chosen on held-out rows.

Where every MAP fit is costly (beyond the cheap-refit rule of
:func:`~sklaplace._memory.refits_are_cheap`), MacKay's dozen refits are
too many, and a fixed ``alpha = 1`` can be far from right: on 20,000 rows
a (100,) network overfitted at 1 (test log loss 0.46) and fitted best near
10 (0.28). The walk below spends two to four fits: from ``start`` it steps
by factors of ``ALPHA_STEP`` in the direction of MacKay's update at the
first MAP (the other way if that step fails), while the held-out log loss
falls by more than its paired standard error and, on MacKay's side, while
MacKay's update at the newest MAP still lies beyond the midpoint to the
next decade or the best fit still predicts the held-out rows no better
than their class frequencies; it keeps the best fit. Its held-out loss is
never worse than the first fit's.
"""

from typing import NamedTuple

import numpy as np

from sklaplace._evidence import EVIDENCE_BOUNDS, mackay_update
from sklaplace._held_out import HeldOutLosses
from sklaplace._objective import ignores_its_input
from sklaplace._prior_scale import paired_standard_errors

__all__ = [
    "ALPHA_STEP",
    "ALPHA_WALK_FALLBACK",
    "ALPHA_WALK_MAX_FITS",
    "AlphaWalk",
    "clearly_lower",
    "walk_alpha",
    "walk_fits",
]

#: Factor between the alphas the walk tries: a decade, the resolution at
#: which the held-out loss of ~10% of the rows tells alphas apart.
ALPHA_STEP = 10.0
#: Fits at most: the start and up to three decades in one direction.
ALPHA_WALK_MAX_FITS = 4
#: The alpha fitted where no rows could be held out (too few rows).
ALPHA_WALK_FALLBACK = 1.0


class AlphaWalk(NamedTuple):
    """Outcome of :func:`walk_alpha`.

    Attributes
    ----------
    best : object
        What ``evaluate`` returned at ``alpha``.
    alpha : float
        The alpha of least held-out loss among those tried.
    history : list of ndarray
        The alphas tried, in order (each of shape (1,)).
    losses : list of float
        Their held-out losses.
    """

    best: object
    alpha: float
    history: list
    losses: list


def clearly_lower(trial, best, standard_errors=1.0):
    """Whether ``trial``'s held-out losses are below ``best``'s beyond noise.

    Both are :class:`~sklaplace._held_out.HeldOutLosses` of the same rows
    with one column (each fit's loss at its scale). ``trial`` is clearly
    lower when its mean loss is lower by more than ``standard_errors``
    paired standard errors (the rows are the same, so the error of the
    difference is small):
    among alphas the held-out rows cannot tell apart the walk keeps the one
    nearer its start (on digits, steps on smaller differences lowered the
    held-out loss and raised the test loss). A fit whose loss is undefined
    somewhere (``inf``) loses to one defined everywhere.
    """
    trial_finite = bool(np.all(np.isfinite(trial.losses)))
    if not np.all(np.isfinite(best.losses)):
        return trial_finite
    pair = HeldOutLosses(np.hstack([best.losses, trial.losses]), best.weights)
    excess, standard_error = paired_standard_errors(pair, 0)
    return trial_finite and bool(excess[1] < -standard_errors * standard_error[1])


def _points_past_midpoint(update, alpha, next_alpha):
    """Whether MacKay's ``update`` at ``alpha`` lies half-way to ``next_alpha``.

    The geometric midpoint between ``alpha`` and the next alpha the walk
    would try. Where the evidence puts its fixed point nearer ``alpha``, a
    step further is not tried: on the 5,110- and 79,510-parameter
    benchmarks and on three data sets of 3,000-20,000 rows, every such step
    had been tried and rejected by the held-out loss (measured in session
    16, docs/benchmarks.rst), at the cost of a fit.
    """
    with np.errstate(divide="ignore"):  # an update of 0 or inf is far off
        towards = np.log(update / alpha) * np.sign(np.log(next_alpha / alpha))
        return towards > 0.5 * abs(np.log(next_alpha / alpha))


def walk_alpha(
    evaluate, direction, start=1.0, better=None, hopeless=None, resumed=False
):
    """Step alpha by decades while the held-out loss falls.

    The first step goes the way of ``direction``; if it does not lower the
    loss, one step the other way is tried (MacKay's update at a MAP that is
    not tight can point the wrong way), and the walk goes on that way while
    the loss falls. On the first way, the walk goes on while the loss falls
    and MacKay's update at the fit just accepted lies past the midpoint to
    the next alpha. At most ``ALPHA_WALK_MAX_FITS`` fits.

    A ``resumed`` walk (a warm refit's, from the alpha a walk chose) steps
    only where MacKay's update at its first fit lies past the midpoint (or
    that fit is hopeless), and never turns: the walk that chose ``start``
    stopped there by these rules, and a turn (or a step MacKay's update did
    not ask for) had carried a refit on the same rows two decades on (30 rows
    of three blobs: 0.1 to 0.001, probabilities moved by 0.34), so that
    refitting on unchanged data changed the model.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(alpha, previous) -> (outcome, loss)``: fits at ``alpha``
        (warm-started from ``previous``, the outcome of the adjacent alpha
        towards ``start``, or ``None`` for the first fit) and returns its
        held-out loss, in whatever form ``better`` compares.
    direction : callable
        ``direction(outcome, alpha) -> float``: MacKay's update at the fit
        ``outcome`` made at ``alpha``. The walk goes up first if the first
        fit's is larger than ``start``, down otherwise; after a step the
        loss confirmed (not after a turn), it steps again only if the new
        fit's update lies more than half-way (in log alpha) to the next
        alpha (:func:`_points_past_midpoint`); not asked where no step is
        left (a bound, the fit budget).
    start : float, default=1.0
    better : callable, default=None
        ``better(loss, best_loss) -> bool``, whether a step lowers the loss;
        ``None``: ``loss < best_loss`` (numbers, ``inf`` if undefined).
    hopeless : callable, default=None
        ``hopeless(loss) -> bool``, whether a fit predicts the held-out rows
        no better than their class frequencies would. MacKay's update at
        such a MAP does not steer: after a step that lowered the loss the
        walk steps on while the best fit is hopeless. On 16,000 rows of 200
        features and 10 classes a (100,) tanh network at alpha 10 (train
        accuracy 0.93) lost 2.53 nats per held-out row against the base
        rate's 2.30, its update short of the midpoint to 100, where the
        test log loss is 1.12 (2.49 at 10). ``None``: never.

    resumed : bool, default=False
        Whether the walk resumes from a warm refit's fitted ``start``.

    Returns
    -------
    AlphaWalk
    """
    better = (lambda loss, best: loss < best) if better is None else better
    low, high = EVIDENCE_BOUNDS
    start = float(np.clip(start, low, high))
    first, first_loss = evaluate(start, None)
    history, losses = [np.array([start])], [first_loss]
    best, best_loss, best_alpha = first, first_loss, start
    update = direction(first, start)
    sign = 1 if update > start else -1
    step, previous, turned = 0, first, False

    def step_to(step):
        # start * 10.0**-2 is 0.01; repeated products drift (0.010000000000000002).
        return float(np.clip(start * ALPHA_STEP ** (sign * step), low, high))

    if resumed and not (
        (hopeless is not None and hopeless(first_loss))
        or _points_past_midpoint(update, start, step_to(1))
    ):
        return AlphaWalk(best, best_alpha, history, losses)

    # A pass fits once, or meets a bound (once a way at most) and turns or
    # stops: the passes are bounded whatever ``better`` and ``direction`` say.
    for _ in range(ALPHA_WALK_MAX_FITS + 1):
        if len(history) == ALPHA_WALK_MAX_FITS:
            break
        step += 1
        alpha = step_to(step)
        improved = False
        if all(alpha != tried[0] for tried in history):  # else: at a bound
            outcome, loss = evaluate(alpha, previous)
            history.append(np.array([alpha]))
            losses.append(loss)
            if better(loss, best_loss):
                best, best_loss, best_alpha = outcome, loss, alpha
                previous, improved = outcome, True
            del outcome  # a rejected fit is not held across the next one
        if improved:
            first = None  # no turn after a step that helped: not held
            next_alpha = step_to(step + 1)
            if next_alpha == alpha or len(history) == ALPHA_WALK_MAX_FITS:
                break  # at a bound or out of fits: no need to ask
            if (
                turned
                or (hopeless is not None and hopeless(best_loss))
                or _points_past_midpoint(direction(best, alpha), alpha, next_alpha)
            ):
                continue
            break
        if step == 1 and not (turned or resumed):  # it failed: the other way
            sign, step, previous, turned = -sign, 0, first, True
            continue
        break
    return AlphaWalk(best, best_alpha, history, losses)


def walk_fits(fit_at, held_out_loss, theta, start, groups, xp, base_rate):
    """``alpha="validation"``: :func:`walk_alpha` on fits.

    ``fit_at(alpha, theta) -> (fit, warnings)`` fits from ``theta`` (a
    neighbour's MAP, or the initial ``theta`` where that one collapsed);
    ``held_out_loss(fit)`` scores a fit; MacKay's update at a fit steers
    the walk unless the fit's loss is no lower than ``base_rate``; a warm
    refit's ``start`` (per-layer alphas: their geometric mean) replaces 1,
    and the walk resumes from it (``walk_alpha``'s ``resumed``).
    Returns the kept fit, its alpha, the alphas tried and the kept fit's
    warnings.
    """

    def evaluate(alpha, previous):
        # A collapsed MAP has no gradient to leave by: warm-started from it, a
        # fit at a smaller alpha stays collapsed, so it starts afresh (as at a
        # larger alpha, where it would stay collapsed either way).
        warm = previous is not None and not ignores_its_input(
            previous[0].objective, previous[0].theta
        )
        outcome = fit_at(alpha, previous[0].theta if warm else theta)
        return outcome, held_out_loss(outcome[0])

    resumed = start is not None
    if not resumed:
        start = 1.0
    else:  # per-layer alphas: their geometric mean
        start = np.ravel(start)
        start = float(start[0] if start.size == 1 else np.exp(np.mean(np.log(start))))

    def direction(outcome, alpha):
        fit = outcome[0]
        covariance = fit.posterior.covariance_diagonal(xp)
        return float(mackay_update(covariance, fit.theta, [alpha], groups)[0][0])

    walk = walk_alpha(
        evaluate,
        direction,
        start,
        better=clearly_lower,
        hopeless=lambda loss: loss.curve()[0] >= base_rate,
        resumed=resumed,
    )
    (fit, kept), alpha = walk.best, walk.alpha
    return fit, alpha, walk.history, kept
