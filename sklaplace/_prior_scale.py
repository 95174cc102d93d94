"""The posterior's prior precision, chosen after the MAP (DESIGN.md 5c).

At a fixed MAP the Laplace precision is ``P(c) = P_data + c A``: the data part
``P_data = P - A`` of the fitted posterior is kept and only the prior ``A``
(the MAP's: ``alpha`` on the weights, ``bias_prior_precision`` on the biases)
is scaled by ``c``. The MAP is not refitted, so the MAP's weight decay and the
posterior's prior precision become two numbers (laplace-torch's post-hoc
prior precision). ``c`` is chosen on a log grid by

* ``"evidence"``: the Laplace log evidence at the fixed MAP;
* ``"cv"``: the held-out log loss of the predictive, over
  :data:`~sklaplace._held_out.CV_FOLDS` folds whose MAPs are warm-started
  from the MAP of the rows fitted (the losses: :mod:`sklaplace._held_out`);
* ``"loo"``: the approximate leave-one-out log loss of the predictive at
  the MAP of every row, with no refit (:mod:`sklaplace._loo`);
* ``"validation"``: the log loss of the predictive on a held-out fraction
  of the rows, at the MAP fitted on the others, which stays the model (as
  scikit-learn's early stopping keeps its validation rows out: a warm refit
  on every row cost up to twice the time and gained nothing measurable on
  five tabular problems). Used where refits are costly:
  at the evidence's scale the Kronecker-factored posterior of a large
  network over-moderated tabular data (test log loss 0.138 against 0.081
  for the held-out choice on 3,000 rows; the benchmark report has the
  figures).

``"cv"`` and ``"loo"`` take the smallest scale within one paired standard error of the
best, but not below 1 unless the best is, nor more than a decade below the
best (:func:`one_standard_error_choice`);
``"validation"``, whose one split has a far wider standard error, the best.

A full posterior's ``P(c)`` for every ``c`` comes from one eigendecomposition
(:class:`~sklaplace._prior_family.ScaledPriorFamily`).
"""

from typing import NamedTuple

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError, to_numpy
from sklaplace._evidence import log_evidence_from_terms
from sklaplace._prior_family import ScaledPriorFamily, scaled_posterior
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = [
    "MAX_WALK_FACTOR",
    "PRIOR_SCALE_GRID",
    "PriorScale",
    "ScaledPriorFamily",
    "choose_prior_scale",
    "evidence_scale",
    "one_standard_error_choice",
    "paired_standard_errors",
    "warn_if_weak_at_top",
    "log_evidence_curve",
    "scaled_posterior",
]

#: Candidate scales ``c``: 49 values from 1e-2 to 1e4, a factor 1.33 apart.
PRIOR_SCALE_GRID = np.logspace(-2.0, 4.0, 49)
#: Weight prior precision ``c alpha`` at the grid's top below which a scale
#: chosen there warns (:func:`warn_if_weak_at_top`): ``alpha`` below 0.01.
#: On two moons with little noise (300 rows, hidden (16,)) the predictive's
#: log loss on fresh rows against its plug-in's was 0.217 / 0.006 at
#: ``alpha=1e-4``, 0.050 / 0.003 at 1e-3, 0.007 / 0.005 at 1e-2 and equal
#: at 0.1 (breast cancer's grid search example chooses the top at 0.1 and
#: 0.3, where nothing is wrong).
WEAK_TOP_PRECISION = 1e2
#: Factor below the best scale beyond which ``"cv"``'s one-standard-error
#: walk does not go (a decade). Where the held-out rows are few their
#: standard error is wide: on six data sets of 42-70 training rows the walk
#: ran up to 3.4 decades down (from a best of 1e4 to 4.2), and stopping it
#: at a decade lowered the test log loss on five (benchmark report,
#: "A decade at most"). Where they are more, the walk corrects a held-out
#: best that lies a few times too high (breast cancer, hidden (16,): the
#: walk went 0.5-0.9 decades) and the bound changes nothing.
MAX_WALK_FACTOR = 10.0


def log_evidence_curve(log_likelihood, theta_map, family, scales):
    """Laplace log evidence at the fixed MAP for each prior scale ``c``.

    ``log Z(c) = log p(D | theta) - 1/2 (log det P(c) - log det(c A) + c
    theta' A theta)`` (the formula of :mod:`sklaplace._evidence`), ``-inf``
    where ``P(c)`` is not positive definite.
    """
    curve = []
    for c in scales:
        log_det = family.log_det_precision(c)
        if np.isnan(log_det):
            curve.append(-np.inf)
            continue
        curve.append(
            log_evidence_from_terms(
                log_likelihood, theta_map, c * family.prior, log_det
            )
        )
    return np.array(curve)


class PriorScale(NamedTuple):
    """Outcome of :func:`choose_prior_scale`.

    Attributes
    ----------
    scale : float
        The chosen ``c``.
    posterior : FullPosterior or DiagPosterior
        The posterior with precision ``P_data + c A``.
    path : dict or None
        ``{"scales": grid, "log_marginal_likelihood": curve}`` for
        ``"evidence"``, ``{"scales": grid, "cv_log_loss": curve,
        "cv_standard_error": errors}`` for ``"cv"`` (``validation_`` in place
        of ``cv_`` for ``"validation"``); ``None`` for a fixed scale.
    """

    scale: float
    posterior: object
    path: object


def _nearest_one(scales, scores):
    """Index of the best (lowest) score; ties go to the scale nearest 1."""
    best = np.min(scores)
    tied = np.flatnonzero(scores <= best + 1e-12 * max(abs(best), 1.0))
    return int(tied[np.argmin(np.abs(np.log(np.asarray(scales)[tied])))])


def paired_standard_errors(held_out, best):
    """Mean excess loss over scale ``best`` and its standard error, per scale.

    The rows are paired (each held-out row is scored at every scale), so the
    error of a difference is far smaller than that of either loss. Weights
    count as repetitions: the number of rows is the total weight.

    Returns
    -------
    excess, standard_error : ndarrays of shape (n_scales,)
    """
    w = held_out.weights
    seen = w > 0
    w, n = w[seen], np.sum(w[seen])
    with np.errstate(invalid="ignore"):  # inf - inf where a scale failed
        d = held_out.losses[seen] - held_out.losses[seen, best][:, None]
        d = np.where(np.isnan(d), np.inf, d)
        excess = w @ d / n
        spread = w @ (d - excess) ** 2 / n
    return excess, np.sqrt(spread / n)


def one_standard_error_choice(scales, held_out):
    """Index of the smallest scale within one standard error of the best.

    Not below 1, unless the best is, nor below the best over
    ``MAX_WALK_FACTOR`` (``scales`` ascend). The best scale minimises the
    held-out log loss; walking down from it, a smaller scale (a wider
    posterior) is kept while its mean excess loss over the best is at most
    one paired standard error: among predictives the held-out data cannot
    tell apart, the most uncertain one (the one-standard-error rule, Hastie
    et al. 2009, 7.10). The walk stops at the first scale of at least 1, the
    classical posterior on the default grid: a posterior wider than the
    MAP's own prior gives needs the best scale itself to lie below 1 (on
    42-70 rows, where one standard error is wide, walking on to ``c =
    0.01-0.06`` had raised the test log loss). It also stops at the first
    scale of at least the best over ``MAX_WALK_FACTOR``: on those rows a
    standard error spans decades of the grid, and walking them had raised
    the test log loss too.
    """
    best = _nearest_one(scales, held_out.curve())
    excess, standard_error = paired_standard_errors(held_out, best)
    # The first scale of at least 1 and the first of at least a decade
    # below the best (round-off kept off both grid points).
    one = np.searchsorted(scales, 1.0 - 1e-12)
    decade = np.searchsorted(scales, scales[best] / MAX_WALK_FACTOR * (1 - 1e-12))
    widest = min(best, int(max(one, decade)))
    chosen = best
    while chosen > widest and excess[chosen - 1] <= standard_error[chosen - 1]:
        chosen -= 1
    return chosen, standard_error


def choose_prior_scale(setting, fit, held_out=None, scales=PRIOR_SCALE_GRID):
    """Choose the posterior's prior scale and build that posterior.

    Parameters
    ----------
    setting : float or {"evidence", "cv", "loo", "validation"}
        A fixed scale, or how to choose one.
    fit : LaplaceFit
        The MAP and its posterior.
    held_out : callable, default=None
        ``held_out(scales) -> HeldOutLosses or None``: the held-out losses
        of ``"cv"`` (:func:`~sklaplace._held_out.cv_log_losses` with its data
        bound), of ``"loo"`` (:func:`~sklaplace._loo.loo_log_losses`) or of
        ``"validation"``
        (:func:`~sklaplace._held_out.validation_log_losses`). Where it returns
        ``None`` the evidence chooses instead.
    scales : sequence of float, default=PRIOR_SCALE_GRID

    Returns
    -------
    PriorScale
    """
    xp, fixed = fit.objective.xp, fit.objective.fixed
    fixed = None if fixed is None else to_numpy(fixed)
    if not isinstance(setting, str):
        return _at_scale(fit, float(setting), None, fixed, xp)
    scales = np.asarray(scales, dtype=np.float64)
    losses = held_out(scales) if setting in ("cv", "loo", "validation") else None
    if losses is not None and not np.any(np.isfinite(losses.curve())):
        warn(
            f"The held-out log loss of prior_precision_scale={setting!r} is "
            "infinite at every scale (a held-out row given probability 0); the "
            "Laplace evidence chooses the scale instead.",
            LaplaceApproximationWarning,
        )
        losses = None
    if losses is not None:
        if setting in ("cv", "loo"):
            index, standard_error = one_standard_error_choice(scales, losses)
        else:
            # One split of ~10% of the rows: its standard error is wide, and
            # walking down by it over-moderated (test log loss 0.133 against
            # the best scale's 0.113 on 3,000 tabular rows): take the best.
            index = _nearest_one(scales, losses.curve())
            standard_error = paired_standard_errors(losses, index)[1]
        scale = float(scales[index])
        path = {
            "scales": scales,
            f"{setting}_log_loss": losses.curve(),
            f"{setting}_standard_error": standard_error,
        }
    else:
        scale, path = evidence_scale(fit, scales)
    return _at_scale(fit, scale, path, fixed, xp)


def warn_if_weak_at_top(prior_scale, alpha):
    """Warn where a scale chosen at the grid's top leaves a weak prior.

    With a fixed ``alpha`` below 0.01 the grid's largest ``c`` gives the
    weights a prior precision ``c alpha`` below :data:`WEAK_TOP_PRECISION`, and a
    choice there says the held-out rows (or the evidence) want a narrower
    posterior than any on the grid. With ``MLPClassifier``'s
    ``alpha=1e-4`` on two moons with little noise the predictive's test log
    loss was 0.215 against the plug-in MAP's 0.003, and on breast cancer
    0.176 against ``alpha=1``'s 0.090. Extending the grid did not serve:
    folds refitted from a MAP that memorised their rows chose ever larger
    scales (breast cancer: 0.411; the benchmark report, "A small fixed alpha
    and the prior scale's grid"). A :class:`LaplaceApproximationWarning`
    says so and advises a stronger prior.

    Parameters
    ----------
    prior_scale : PriorScale
        The choice, from :func:`choose_prior_scale`.
    alpha : float, sequence of float or str
        The fit's ``alpha`` (a string, tuned, does not warn).
    """
    if prior_scale.path is None or isinstance(alpha, str):
        return
    top = float(prior_scale.path["scales"][-1])
    smallest = float(np.min(alpha))
    weak = 0 < smallest and top * smallest < WEAK_TOP_PRECISION
    if weak and prior_scale.scale >= top:
        warn(
            f"The posterior's prior scale was chosen at the top of its grid "
            f"(prior_precision_scale_={top:g}), where alpha={smallest:g} still "
            f"gives the weights a prior precision of {top * smallest:.3g} only: "
            "the predictive may be far less confident than the data support. "
            "The prior is likely too weak (MLPClassifier's alpha=1e-4 is): "
            "leave alpha to the evidence (alpha='auto') or fix a larger one.",
            LaplaceApproximationWarning,
        )


def evidence_scale(fit, scales=PRIOR_SCALE_GRID):
    """Return the scale of largest Laplace evidence at ``fit``'s MAP, and its path.

    The eigenvalues of one decomposition give every scale's ``log det``
    (:class:`ScaledPriorFamily` without variances); no posterior is built.
    """
    fixed = fit.objective.fixed
    fixed = None if fixed is None else to_numpy(fixed)
    family = ScaledPriorFamily(
        fit.posterior, fit.prior_precision, fixed, fit.objective.xp, variances=False
    )
    scales = np.asarray(scales, dtype=np.float64)
    curve = log_evidence_curve(fit.log_likelihood, fit.theta, family, scales)
    scale = float(scales[_nearest_one(scales, -curve)])
    return scale, {"scales": scales, "log_marginal_likelihood": curve}


def _at_scale(fit, scale, path, fixed, xp):
    """Return the :class:`PriorScale` of ``scale``, else of 1 with a warning.

    A chosen scale can fail to factorise where its eigenvalues said positive
    definite (a pivot at round-off); a fixed scale below 1 can leave an
    exact Hessian's indefinite data part uncovered (the fit checked it at
    scale 1 only; ``NotPositiveDefiniteError`` had escaped ``fit``).
    """
    try:
        posterior = scaled_posterior(
            fit.posterior, fit.prior_precision, scale, fixed, xp
        )
    except NotPositiveDefiniteError:
        hint = ""
        if fit.curvature == "exact" and scale < 1.0:
            hint = (
                " (the exact Hessian's data part is indefinite there; "
                "hessian='ggn' is positive semi-definite at every scale)"
            )
        warn(
            f"The posterior precision at the prior scale {scale:.3g} is not "
            f"numerically positive definite{hint}; the posterior at scale 1 (the "
            "MAP's own prior) is used instead.",
            LaplaceApproximationWarning,
        )
        scale, posterior = 1.0, fit.posterior
    return PriorScale(scale, posterior, path)
