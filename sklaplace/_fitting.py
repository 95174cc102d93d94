"""One fit of the network: MAP, curvature and posterior, alpha fixed or tuned.

:func:`fit_network` runs steps (1)-(5) (the last: the posterior's prior
scale, :mod:`sklaplace._prior_scale`) of the estimator's ``fit`` on
validated data and returns what the estimator stores; it knows nothing of
scikit-learn's conventions (validation, warm-start state, attributes).
"""

import weakref
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import numpy as np

from sklaplace._alpha_walk import ALPHA_WALK_FALLBACK, walk_fits
from sklaplace._backend import to_numpy
from sklaplace._basins import (
    HELD_OUT_START,
    every_run_collapsed,
    kept_run,
    loo_agrees,
    overrule_by_held_out,
    strongest_indistinct_refit,
)
from sklaplace._evidence import (
    EVIDENCE_STARTS,
    mackay_update,
    tune_alpha,
    weight_groups,
)
from sklaplace._held_out import (
    CV_FOLDS,
    FOLD_TOL,
    base_rate_loss,
    content_folds,
    cv_log_losses,
    fold_follows_negative_curvature,
    validation_log_losses,
    validation_rows,
)
from sklaplace._laplace_fit import LaplaceFit, fit_laplace
from sklaplace._loo import loo_log_losses
from sklaplace._memory import counted_scale, kron_is_cheap, low_rank_is_cheap
from sklaplace._network import log_equivalent_modes
from sklaplace._objective import NegLogPosterior, ignores_its_input, warn_if_base_rate
from sklaplace._posterior import laplace_posterior
from sklaplace._predictive import (
    jacobian_chunks,
    moderated_logits,
    predictive_rows_per_chunk,
)
from sklaplace._prior import prior_precision_vector
from sklaplace._prior_scale import (
    PRIOR_SCALE_GRID,
    choose_prior_scale,
    evidence_scale,
    warn_if_weak_at_top,
)
from sklaplace._pruning import check_refit_posterior
from sklaplace._warnings import recorded, warn

__all__ = ["NetworkFit", "fit_network"]


class NetworkFit(NamedTuple):
    """Outcome of :func:`fit_network`.

    Attributes
    ----------
    fit : LaplaceFit
        The kept MAP and its posterior at the MAP's own prior.
    alpha : float, array or str
        The weight precision ``fit`` used (tuned, or the one given).
    history : list of ndarray
        Alphas of every evidence refit or walk fit (empty for a fixed alpha).
    gammas : ndarray or None
        Effective numbers of parameters (``None`` for a fixed alpha or the walk).
    refits : list of LaplaceFit
        Every MAP fit, in order (one for a fixed alpha).
    prior_scale : PriorScale
        The posterior's prior scale and the posterior built with it.
    """

    fit: LaplaceFit
    alpha: object
    history: list
    gammas: object
    refits: list
    prior_scale: object


def fit_network(
    config,
    xp,
    layout,
    likelihood,
    data,
    theta,
    fixed,
    seed=0,
    evidence_start=None,
    split_reference=None,
):
    """Fit the MAP and its Laplace posterior, tuning alpha and the prior scale.

    Parameters
    ----------
    config : FitConfig
        The hyper-parameters, ``"auto"`` resolved.
    xp : module
        Array namespace to compute in.
    layout : ParamLayout
    likelihood : object
        From :func:`~sklaplace._likelihood.likelihood_for`.
    data : tuple
        ``(X, y_index, sample_weight)``, validated NumPy arrays. With
        ``prior_precision_scale="validation"`` or ``alpha="validation"`` the
        network is fitted on the rows
        :func:`~sklaplace._held_out.validation_rows` does not hold out, and
        the held-out ones choose the scale or alpha (no refit on them).
    theta : array of shape (n_params,)
        Starting point, in ``xp``.
    fixed : ndarray of bool of shape (n_params,) or None
        Parameters held at zero.
    seed : int, default=0
        Seeds the held-out folds and validation rows and the Monte Carlo
        draws of the prior scale's choice.
    evidence_start : float or ndarray of shape (n_groups,), default=None
        A warm start's tuned alpha: MacKay's updates resume from it alone
        (one run, in the basin of the fit being resumed) instead of running
        from each of ``EVIDENCE_STARTS``; the walk starts from it.
    split_reference : ndarray of shape (n_params,), default=None
        Weights whose hidden units differ, along which a refit from a MAP
        splits the units that coincide there (:mod:`~sklaplace._symmetry`);
        a warm start's own MAP cannot serve (its units coincide too).
        None: ``theta``.

    Returns
    -------
    NetworkFit
    """
    if fixed is not None:
        check_refit_posterior(config.hessian_structure, config.subset_of_weights)
    X, y_index, sample_weight = data
    fit_rows = np.arange(X.shape[0])
    held_out_rows = None
    # The plug-in predictive (link_approx="map") does not depend on the
    # prior scale, so held-out losses cannot choose it: the evidence does,
    # and no rows are held out for it (below and in held_out); alpha's walk
    # still holds them out.
    by_held_out = config.link_approx != "map"
    by_validation = config.prior_precision_scale == "validation" and by_held_out
    walks = isinstance(config.alpha, str) and config.alpha == "validation"
    if by_validation or walks:
        held = validation_rows(
            X, y_index, config.validation_fraction, seed, sample_weight
        )
        # Too few rows to hold any out with weight on both sides: the
        # evidence chooses instead (choose_prior_scale's fallback).
        if np.sum(sample_weight[held]) > 0 and np.sum(sample_weight[~held]) > 0:
            held_out_rows = (X[held], y_index[held], sample_weight[held])
            fit_rows = np.flatnonzero(~held)
    fit_data = (X[fit_rows], y_index[fit_rows], sample_weight[fit_rows])
    Y = likelihood.encode(xp, xp.asarray(y_index), layout.n_outputs, xp.float64)
    fixed_xp = None if fixed is None else xp.asarray(fixed)

    def objective(prior, rows):
        return NegLogPosterior(
            xp,
            layout,
            config.activation,
            likelihood,
            xp.asarray(X[rows]),
            xp.take(Y, xp.asarray(rows), axis=0),
            xp.asarray(sample_weight[rows]),
            xp.asarray(prior),
            fixed=fixed_xp,
        )

    refits, refit_warnings, kept_warnings = [], [], []
    grid, scale_losses = np.asarray(PRIOR_SCALE_GRID, dtype=np.float64), None

    # A refit from an earlier MAP splits its merged units along the reference
    # (_symmetry); the fit from the starting weights starts where it is told.
    start = theta
    reference = to_numpy(theta) if split_reference is None else split_reference

    def fit_at(alpha, theta, settings=config):
        prior = prior_precision_vector(layout, alpha, config.bias_prior_precision)
        # A fit that took no step returns its start: a MAP all the same.
        from_a_map = theta is not start or any(r.theta is start for r in refits)
        if refits:
            # A superseded refit keeps its solver record only: its posterior
            # (a dense n_params x n_params factor) and data copy are freed.
            refits[-1] = refits[-1]._replace(objective=None, posterior=None)
        # Only the kept refit's warnings describe the fitted model; those of
        # the refits on the way to alpha would repeat once per refit.
        with recorded() as caught:
            refits.append(
                fit_laplace(
                    settings,
                    objective(prior, fit_rows),
                    theta,
                    reference if from_a_map else None,
                )
            )
        kept_warnings[:] = caught
        refit_warnings.append(caught)
        return refits[-1]

    # Held-out losses of a fit's predictive at each prior scale, for (4)
    # with alpha="validation" and for (5).
    keep = None if fixed is None else xp.asarray((~fixed).astype(np.float64))
    link, n_draws = config.link_approx, config.n_mc_samples
    probit = link == "probit"

    def jacobians(fit):  # (theta, X) -> chunks of logits and J, fit's posterior's
        # Of the centred logits: what the predictive reads (see centring).
        activation, posterior = config.activation, fit.posterior
        return lambda theta, X_out: jacobian_chunks(
            xp, layout, theta, activation, posterior, X_out, keep, centred=True
        )

    def predictive(xp, mean, cov):
        rows = predictive_rows_per_chunk(link, layout.n_outputs, n_draws)
        return moderated_logits(xp, mean, cov, link, n_draws, seed, rows)

    def validation_losses(fit, scales):
        return validation_log_losses(
            fit,
            jacobians(fit),
            held_out_rows,
            scales,
            predictive,
            probit,
        )

    # Whether held-out losses choose the scale (nothing held out for
    # "validation": the evidence chooses).
    setting = config.prior_precision_scale
    scaled_on_held_out = by_held_out and (
        setting in ("cv", "loo")
        or (setting == "validation" and held_out_rows is not None)
    )

    def weigh(fit, fold_tol, confirm=False):
        # MacKay's basins (_basins): screened at FOLD_TOL, confirmed at tol.
        # Leave-one-out screens but folds confirm: at each fit's own MAP it
        # favours the less regularised (synthetic task, split 4: test log
        # loss 0.350 against 0.272 where it decided).
        how = "cv" if confirm and setting == "loo" else setting
        return held_out(fit, grid, fold_tol, how)

    # id(posterior) -> (a weak reference to it, the grid's losses): (5) reads
    # the kept fit's. A posterior is its fit's own (a fit that took no step
    # can share its start's theta); weakly held, a rejected fit's is freed.
    walk_grid_losses = {}

    def walk_loss(fit):
        # Held-out loss at the scale the model would use with this fit; for
        # "cv" and "validation", the scale of least held-out loss.
        scales = grid
        if not by_held_out:  # the plug-in's loss is the same at every scale
            scales = np.ones(1)
        elif not isinstance(setting, str):
            scales = np.array([float(setting)])
        elif setting == "evidence":
            scales = np.array([evidence_scale(fit)[0]])  # no posterior built
        losses = validation_losses(fit, scales)
        if scales is grid:
            walk_grid_losses[id(fit.posterior)] = (weakref.ref(fit.posterior), losses)
        return losses.at_best()

    def held_out(fit, scales, fold_tol=FOLD_TOL, how=setting):
        # Held-out losses of fit's predictive at each prior scale, for (5)
        # and the arbitration after (4); None where none are asked for.
        if not scaled_on_held_out:
            return None
        if how == "validation":
            return validation_losses(fit, scales)
        if how == "loo":  # no refit: fold_tol does not apply
            return loo_log_losses(fit, jacobians(fit), fit_data, scales, predictive)
        prior = to_numpy(fit.prior_precision)
        fold_config = replace(config, tol=max(config.tol, fold_tol))
        follow = fold_follows_negative_curvature(fold_config.tol)
        return cv_log_losses(
            lambda train: fit_laplace(
                fold_config, objective(prior, fit_rows[train]), fit.theta, None, follow
            ),
            jacobians(fit),
            fit_data,
            content_folds(fit_data[0], fit_data[1], CV_FOLDS, seed, fit_data[2]),
            scales,
            predictive,
            probit,
        )

    if walks and held_out_rows is None:
        # Nothing held out (too few rows): the walk has no loss to follow.
        config, walks = replace(config, alpha=ALPHA_WALK_FALLBACK), False
    if not isinstance(config.alpha, str):
        fit = fit_at(config.alpha, theta)
        alpha, history, gammas = config.alpha, [], None
    elif walks:  # (4) alpha by decades on held-out rows
        fit, alpha, history, kept_warnings = walk_fits(
            lambda a, t: (fit_at(a, t), kept_warnings[:]),
            walk_loss,
            theta,
            evidence_start,
            weight_groups(layout, False, fixed),
            xp,
            base_rate_loss(fit_data, held_out_rows, max(layout.n_outputs, 2)),
        )
        gammas = None
        scored, losses = walk_grid_losses.get(id(fit.posterior), (None, None))
        if setting == "validation" and scored is not None and scored() is fit.posterior:
            scale_losses = losses  # the kept fit's, scored on the walk's grid
    else:  # (4) MacKay's fixed point over alpha, from each start
        groups = weight_groups(layout, config.alpha == "evidence_per_layer", fixed)
        scalar = len(groups) == 1
        sizes = (1, len(groups))  # a warm start's tuned alpha, if it fits
        resumed = evidence_start is not None and np.size(evidence_start) in sizes
        starts = (evidence_start,) if resumed else EVIDENCE_STARTS
        # Each refit's evidence counts its equivalent modes: a network that
        # ignores its input has one, any other one per order and sign of its
        # units (without them a collapsed run's base rate beat fitted ones).
        distinct = log_equivalent_modes(layout.layer_sizes, config.activation)

        def collapsed(fit):
            return ignores_its_input(fit.objective, fit.theta)

        def evidence(fit, record):
            record.append(fit.log_evidence() + (0.0 if collapsed(fit) else distinct))
            return record[-1]

        # MacKay's updates need a PSD curvature (GGN; exact gave gamma -3,000)
        # and the variances of every weight alpha prices (tuning_structure);
        # the posterior asked for is built for the kept fit (below).
        structure = tuning_structure(
            config, layout.layer_sizes, fixed is not None, len(fit_rows)
        )
        tuning_config = replace(
            config, hessian="ggn", subset_of_weights="all", hessian_structure=structure
        )
        # One more run weighed by held-out losses (_basins), by the evidence too
        # where every run collapsed (its weights have no gradient at 0, so it
        # stays so); a resumed fit stays in its basin.
        runs, evidences = [], []  # evidences: each run's, refit by refit
        for start in starts + (HELD_OUT_START,):
            if len(runs) == len(starts):  # the extra run: whether, and ranked
                flat = every_run_collapsed([run[0] for run in runs])
                ranked = len(starts) + flat
                if resumed or not (scaled_on_held_out or flat):
                    break
            first = len(refits)
            evidences.append([])
            with recorded() as caught:
                tuning = tune_alpha(
                    lambda a, t: fit_at(float(a[0]) if scalar else a, t, tuning_config),
                    groups,
                    theta,
                    lambda posterior: posterior.covariance_diagonal(xp),
                    start,
                    partial(evidence, record=evidences[-1]),
                    collapsed,
                )
            runs.append((tuning, caught, first))  # caught: the updates' own

        def tuned(run, index):
            # A run's refit with the posterior asked for, alpha, gamma, warnings.
            tuning, caught, first = run
            fit, alphas, gammas = refits[first + index], tuning.history[index], None
            alpha = float(alphas[0]) if scalar else alphas
            if index == tuning.kept:
                fit, gammas = tuning.fit, tuning.gammas
            if fit.objective is None:
                prior = prior_precision_vector(
                    layout, alpha, config.bias_prior_precision
                )
                fit = fit._replace(objective=objective(prior, fit_rows))
            # The posterior's own warnings last, from the posterior kept.
            warned = [
                w
                for w in refit_warnings[first + index]
                if w not in fit.posterior_warnings
            ]
            if fit.posterior is None or tuning_config != config:
                structure = (config.hessian_structure, config.subset_of_weights)
                with recorded() as rebuilt:
                    p, c, j = laplace_posterior(
                        fit.objective, fit.theta, config.hessian, *structure
                    )
                fit = fit._replace(
                    posterior=p,
                    curvature=c,
                    jitter=j,
                    posterior_warnings=tuple(rebuilt),
                )
                gammas = None
            if gammas is None:  # under the posterior kept (may be < 0)
                covariance = fit.posterior.covariance_diagonal(xp)
                gammas = mackay_update(covariance, fit.theta, alphas, groups)[1]
            warned = warned + caught + list(fit.posterior_warnings)
            warned = {(w.category, str(w.message)): w for w in warned}  # once each
            return fit, alpha, tuning.history, gammas, list(warned.values())

        kept = kept_run([run[0] for run in runs[:ranked]], collapsed)
        # Held-out losses can overrule the evidence's choice in favour of the
        # fixed point of the first run or of the extra one.
        challengers = [
            partial(tuned, run, run[0].fixed_point)
            for run in [runs[0], *runs[len(starts) :]]
            if run[0].fixed_point is not None  # None where the updates gave up
            and (run is not runs[kept] or run[0].fixed_point != run[0].kept)
        ]
        # Then the kept run's most regularised refit whose evidence ties with
        # the kept one's (_basins).
        if scalar:  # "most regularised" orders one alpha
            tuning, _, first = runs[kept]
            run_refits = refits[first : first + len(tuning.history)]
            converged = [not refit.out_of_iterations for refit in run_refits]
            strongest = strongest_indistinct_refit(tuning, evidences[kept], converged)
            if strongest is not None:
                challengers.append(partial(tuned, runs[kept], strongest))
        evidence_choice = tuned(runs[kept], runs[kept][0].kept)
        # Warm folds favour a basin that memorises their rows: leave-one-out
        # must agree first ("loo" screens by it already), where it can judge:
        # taken out of a Kronecker or diagonal precision, a row's curvature
        # misjudges it (TF-IDF rows, a diagonal posterior: it kept a network
        # ignoring its input, 1.110 on the folds, against a fit at 0.553).
        agrees = None
        if setting == "cv" and config.hessian_structure == "full":
            agrees = loo_agrees(lambda fit: held_out(fit, grid, how="loo"))
        kept_fit, scale_losses = overrule_by_held_out(
            evidence_choice, challengers, weigh, config.tol, agrees
        )
        fit, alpha, history, gammas, kept_warnings = kept_fit
        if setting == "loo" and fit is not evidence_choice[0]:
            scale_losses = None  # the folds' that confirmed it: its own below
    if refits[-1] is not fit:  # the last fit tried, not kept
        refits[-1] = refits[-1]._replace(objective=None, posterior=None)
    for caught in kept_warnings:
        warn(caught.message, caught.category)
    warn_if_base_rate(fit.objective, fit.theta)

    # (5) the posterior's prior precision, at the fixed MAP
    scale = choose_prior_scale(
        config.prior_precision_scale,
        fit,
        lambda scales: held_out(fit, scales) if scale_losses is None else scale_losses,
    )
    if by_held_out:  # the plug-in (link_approx='map') ignores the scale
        warn_if_weak_at_top(scale, config.alpha)
    return NetworkFit(fit, alpha, history, gammas, refits, scale)


def tuning_structure(config, layer_sizes, pruned=False, n_rows=None):
    """Return the posterior structure MacKay's updates of alpha run on.

    They count each weight's posterior variance ``(P^{-1})_ii`` (``gamma``)
    over every weight alpha prices: a last-layer posterior prices too few
    (alpha drifted to 0.13) and a diagonal's ``1 / P_ii`` understate the
    variances, so ``gamma`` and alpha come out too large (alpha 3.2 where the
    Kronecker posterior's is 0.08 on a curved boundary: test log loss 0.167
    against 0.025, hidden (100,), three splits). So every structure but the
    full one tunes on the exact GGN posterior in sample space where its
    ``n_rows`` rows make it cheap
    (:func:`~sklaplace._memory.low_rank_is_cheap`; sonar, hidden (100,),
    five splits: the Kronecker posterior's evidence had chosen alpha 5-10,
    test log loss 0.454 against 0.411), else a diagonal or last layer on the Kronecker
    posterior of all weights where cheap
    (:func:`~sklaplace._memory.kron_is_cheap`), else on their diagonal; the
    posterior asked for is built for the kept fit. A pruned refit tunes on
    the sample-space posterior (its pruned columns zero) or on its own:
    Kronecker factors cannot leave the pruned weights out.

    Parameters
    ----------
    config : FitConfig or namespace
        Its resolved ``hessian_structure`` and ``subset_of_weights``.
    layer_sizes : tuple of int
        The network's layer widths, inputs first.
    pruned : bool, default=False
        Whether some weights are held at zero (a pruned estimator's refit).
    n_rows : int, default=None
        Distinct rows the updates fit (``None``: no low-rank posterior).
    """
    last_layer = config.subset_of_weights == "last_layer"
    own = config.hessian_structure
    if not last_layer and own == "full":
        return own
    if n_rows is not None and low_rank_is_cheap(config, layer_sizes, n_rows):
        return "lowrank"
    if pruned or (not last_layer and own == "kron"):
        return own
    scale = counted_scale(config)
    return "kron" if kron_is_cheap(layer_sizes, False, scale, "evidence") else "diag"
