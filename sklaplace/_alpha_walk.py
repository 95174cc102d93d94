"""``alpha="validation"``: the weight precision chosen on held-out rows.

Where every MAP fit is costly (beyond the cheap-refit rule of
:func:`~sklaplace._memory.refits_are_cheap`), MacKay's dozen refits are
too many, and a fixed ``alpha = 1`` can be far from right: on 20,000 rows
a (100,) network overfitted at 1 (test log loss 0.25) and fitted best near
10 (0.17). The walk below spends two to four fits: from ``start`` it steps
by factors of ``ALPHA_STEP`` in the direction of MacKay's update at the
first MAP, while the held-out log loss falls, and keeps the best fit. Its
held-out loss is never worse than the first fit's.
"""

from typing import NamedTuple

import numpy as np

from sklaplace._evidence import EVIDENCE_BOUNDS

__all__ = [
    "ALPHA_STEP",
    "ALPHA_WALK_FALLBACK",
    "ALPHA_WALK_MAX_FITS",
    "AlphaWalk",
    "walk_alpha",
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


def walk_alpha(evaluate, direction, start=1.0):
    """Step alpha by decades while the held-out loss falls.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(alpha, previous) -> (outcome, loss)``: fits at ``alpha``
        (warm-started from ``previous``, the last outcome, or ``None`` for
        the first fit) and returns the held-out loss (``inf`` if undefined).
    direction : callable
        ``direction(outcome) -> float``: where the evidence points from the
        first fit (MacKay's update); the walk goes up if it is larger than
        ``start``, down otherwise.
    start : float, default=1.0

    Returns
    -------
    AlphaWalk
    """
    low, high = EVIDENCE_BOUNDS
    alpha = float(np.clip(start, low, high))
    best, best_loss = evaluate(alpha, None)
    history, losses = [np.array([alpha])], [best_loss]
    best_alpha = start_alpha = alpha
    previous = best
    sign = 1 if direction(best) > alpha else -1
    for k in range(1, ALPHA_WALK_MAX_FITS):
        # start * 10**-2 is 0.01, where repeated products drift (0.010000000000000002)
        trial_alpha = float(np.clip(start_alpha * ALPHA_STEP ** (sign * k), low, high))
        if trial_alpha == alpha:  # at a bound
            break
        alpha = trial_alpha
        previous, loss = evaluate(alpha, previous)
        history.append(np.array([alpha]))
        losses.append(loss)
        if not loss < best_loss:
            break
        best, best_loss, best_alpha = previous, loss, alpha
    return AlphaWalk(best, best_alpha, history, losses)
