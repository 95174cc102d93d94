"""``alpha="validation"``: alpha walked by decades on held-out rows."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import sklaplace._alpha_walk
import sklaplace._estimator
import sklaplace._fitting
from sklaplace import LaplaceMLPClassifier, prune
from sklaplace._alpha_walk import (
    ALPHA_STEP,
    ALPHA_WALK_MAX_FITS,
    clearly_lower,
    walk_alpha,
    walk_fits,
)
from sklaplace._evidence import EVIDENCE_BOUNDS
from sklaplace._held_out import (
    BASIN_STANDARD_ERRORS,
    CV_FOLDS,
    HeldOutLosses,
    _heldout_log_losses,
    base_rate_loss,
    validation_rows,
)
from sklaplace._jacobian import logit_factors
from sklaplace._likelihood import likelihood_for
from sklaplace._predictive import probit_logits
from sklaplace._prior_scale import choose_prior_scale

X, Y = make_classification(
    n_samples=300, n_features=6, n_informative=3, flip_y=0.1, random_state=3
)
X = StandardScaler().fit_transform(X)


def _planted(best_log10):
    """An ``evaluate`` whose loss is least at ``10**best_log10``, and its calls."""
    calls = []

    def evaluate(alpha, previous):
        calls.append((alpha, previous))
        return f"fit at {alpha:g}", (np.log10(alpha) - best_log10) ** 2

    return evaluate, calls


@pytest.mark.parametrize(
    "best_log10, evidence_log10, tried, kept",
    [
        # The evidence agrees with the held-out rows: no step past the best.
        (2.0, 2.0, [1, 10, 100], 100),
        (-1.0, -1.0, [1, 0.1], 0.1),
        # At 10 the evidence's update (10**1.6) lies past the midpoint to
        # 100 (10**1.5): one step more; at 100 it lies back.
        (2.0, 1.6, [1, 10, 100], 100),
        # ... and short of it (10**1.4): the walk stops at 10, short of the
        # held-out optimum (the price of trusting the evidence's magnitude).
        (2.0, 1.4, [1, 10], 10),
        (-3.0, -1.6, [1, 0.1, 0.01], 0.01),  # the same, downwards
        (0.2, 0.3, [1, 10, 0.1], 1),  # neither neighbour is lower
        (-0.3, 0.3, [1, 10, 0.1], 1),
        # MacKay points up, the loss falls the other way: turned after one
        # step, then on while the loss falls, whatever the evidence says.
        (-2.0, 0.3, [1, 10, 0.1, 0.01], 0.01),
        (9.0, 9.0, [1, 10, 100, 1000], 1000),  # stopped by the fit budget
        # A failed second step ends the walk: it turns back after a failed
        # first step only.
        (1.0, 2.0, [1, 10, 100], 10),
    ],
)
def test_walk_keeps_the_alpha_of_least_held_out_loss(
    best_log10, evidence_log10, tried, kept
):
    evaluate, calls = _planted(best_log10)
    updates = []

    def direction(outcome, alpha):
        assert outcome == f"fit at {alpha:g}"  # MacKay's update at that fit
        updates.append(alpha)
        return 10.0**evidence_log10

    walk = walk_alpha(evaluate, direction)
    assert [float(a[0]) for a in walk.history] == tried
    assert [a for a, _ in calls] == tried and len(tried) <= ALPHA_WALK_MAX_FITS
    assert walk.alpha == kept and walk.best == f"fit at {kept:g}"
    assert walk.losses == [(np.log10(a) - best_log10) ** 2 for a in tried]
    assert min(walk.losses) == walk.losses[tried.index(kept)] <= walk.losses[0]
    # The evidence is asked at the first fit, then after each step the loss
    # confirmed on its side while a fit is left to make.
    up = evidence_log10 > 0
    on_its_side = [a for a in tried[1:] if (a > 1) == up]
    confirmed = (
        on_its_side[: on_its_side.index(kept) + 1] if kept in on_its_side else []
    )
    if len(tried) == ALPHA_WALK_MAX_FITS and confirmed and confirmed[-1] == tried[-1]:
        confirmed = confirmed[:-1]  # the budget is spent: not asked
    assert updates == [1] + confirmed
    # Each fit warm-starts from its neighbour towards the start.
    assert calls[0][1] is None
    for alpha, previous in calls[1:]:
        towards_start = alpha / ALPHA_STEP if alpha > 1 else alpha * ALPHA_STEP
        assert previous == f"fit at {towards_start:g}"


def test_walk_stops_at_the_bound_and_on_an_undefined_loss():
    evaluate, calls = _planted(12.0)
    walk = walk_alpha(evaluate, lambda outcome, alpha: np.inf, start=1e5)
    assert [float(a[0]) for a in walk.history] == [1e5, 1e6]  # EVIDENCE_BOUNDS
    # At the upper bound, up is no step: the walk turns at once.
    evaluate, calls = _planted(-12.0)
    walk = walk_alpha(evaluate, lambda outcome, alpha: np.inf, start=1e6)
    assert [float(a[0]) for a in walk.history] == [1e6, 1e5, 1e4, 1e3]
    walk = walk_alpha(lambda a, p: (a, np.inf if a != 1 else 1.0), lambda o, a: 2.0)
    assert walk.alpha == 1.0 and len(walk.history) == 3


@pytest.mark.parametrize(
    "budget, tried, kept", [(1, [1], 1), (2, [1, 10], 1), (3, [1, 10, 0.1], 0.1)]
)
def test_a_smaller_fit_budget_ends_the_walk_with_its_best_fit(
    monkeypatch, budget, tried, kept
):
    # MacKay points up, the loss falls down: the turn after the failed step
    # needs a third fit. A budget spent before it still returns the walk
    # (the best fit so far), not nothing.
    monkeypatch.setattr(sklaplace._alpha_walk, "ALPHA_WALK_MAX_FITS", budget)
    evaluate, calls = _planted(-1.0)
    walk = walk_alpha(evaluate, lambda outcome, alpha: 100.0)
    assert [float(a[0]) for a in walk.history] == tried
    assert walk.alpha == kept and walk.best == f"fit at {kept:g}"


@pytest.mark.parametrize("start", EVIDENCE_BOUNDS)
def test_a_walk_turned_back_at_a_bound_does_not_refit_its_start(start):
    # MacKay points away from the bound, the step that way fails, and the
    # walk turns: clipped to the bound, its next alpha is the start, tried
    # two fits before (not the last one). No alpha is fitted twice.
    low, high = EVIDENCE_BOUNDS
    evaluate, calls = _planted(-12.0 if start == low else 12.0)
    walk = walk_alpha(evaluate, lambda o, a: np.inf if start == low else 0.0, start)
    step = 10.0 if start == low else 0.1
    assert [alpha for alpha, _ in calls] == pytest.approx([start, start * step])
    assert walk.alpha == start and len(walk.history) == 2


def _fit(random_state=0, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LaplaceMLPClassifier(random_state=random_state, **params).fit(X, Y)


def _reference_walk(loss_at, up, update_at):
    """The walk's decisions, re-done on per-row losses of fixed-alpha fits
    and on MacKay's update at each (``update_at``)."""

    def clearly_lower(trial, best):
        d = trial - best
        return np.mean(d) < -np.std(d) / np.sqrt(d.size)

    tried, best = [1.0], 1.0
    sign, step, turned = (1 if up else -1), 0, False
    while len(tried) < ALPHA_WALK_MAX_FITS:
        step += 1
        alpha = 10.0 ** (sign * step)
        tried.append(alpha)
        if clearly_lower(loss_at(alpha), loss_at(best)):
            best = alpha
            # On the evidence's side, on only if its update is past the
            # midpoint (in log alpha) to the next decade.
            if not turned and sign * np.log10(update_at(alpha) / alpha) <= 0.5:
                break
        elif step == 1 and not turned:
            sign, step, turned = -sign, 0, True
        else:
            break
    return tried, best


def _logistic_mackay_update(fit, X_fitted, alpha):
    """MacKay's ``gamma / ||w||^2`` at a logistic fit, from its posterior in NumPy."""
    Z = np.hstack([X_fitted, np.ones((X_fitted.shape[0], 1))])
    w = np.append(fit.coefs_[0][:, 0], fit.intercepts_[0])
    p = 1.0 / (1.0 + np.exp(-Z @ w))
    prior = np.append(np.full(X_fitted.shape[1], alpha), fit.bias_prior_precision)
    covariance = np.linalg.inv(Z.T @ ((p * (1 - p))[:, None] * Z) + np.diag(prior))
    gamma = X_fitted.shape[1] - alpha * np.trace(covariance[:-1, :-1])
    return gamma / np.sum(w[:-1] ** 2)


def _ask_mackay_at_every_fit(monkeypatch):
    """Make the walk ask MacKay's update at every fit it makes; return the
    list that collects ``(alpha, update, fit)``."""
    asked, walk = [], sklaplace._alpha_walk.walk_alpha

    def spy(evaluate, direction, start=1.0, better=None, hopeless=None, **kwargs):
        def evaluate_and_ask(alpha, previous):
            outcome, loss = evaluate(alpha, previous)
            asked.append((alpha, direction(outcome, alpha), outcome[0]))
            return outcome, loss

        return walk(evaluate_and_ask, direction, start, better, hopeless, **kwargs)

    monkeypatch.setattr(sklaplace._alpha_walk, "walk_alpha", spy)
    return asked


def test_walk_asks_mackays_update_at_each_fits_own_alpha(monkeypatch):
    """The update steering the walk is MacKay's at the fit it is asked of,
    with that fit's alpha (not the start's: 18.8 instead of 15.8 at 10)."""
    Xl, yl = make_classification(
        n_samples=400,
        n_features=60,
        n_informative=2,
        n_redundant=0,
        flip_y=0.1,
        random_state=0,
    )
    Xl = StandardScaler().fit_transform(Xl)
    asked = _ask_mackay_at_every_fit(monkeypatch)
    clf = LaplaceMLPClassifier(
        (),
        alpha="validation",
        prior_precision_scale="validation",
        tol=1e-10,
        random_state=0,
    ).fit(Xl, yl)
    held = validation_rows(Xl, yl, 0.1, clf._mc_seed)
    assert [alpha for alpha, _, _ in asked] == [1.0, 10.0, 0.1]
    for alpha, update, _ in asked:
        fixed = LaplaceMLPClassifier(
            (),
            alpha=alpha,
            prior_precision_scale="validation",
            tol=1e-10,
            random_state=0,
        ).fit(Xl, yl)
        reference = _logistic_mackay_update(fixed, Xl[~held], alpha)
        assert update == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize("pruned", [False, True])
def test_walk_asks_mackays_update_over_every_weight_of_a_network(monkeypatch, pruned):
    """One alpha for all weights (no biases): gamma / ||w||^2 over both layers
    of a (4,) network, from each asked fit's own posterior diagonal; on a
    pruned network's warm refit, over the weights left (pruned ones are
    fixed at 0 and count for nothing)."""
    # theta: per layer, its (fan_in + 1) x fan_out block, biases last.
    weights = np.concatenate(
        [np.ones(6 * 4), np.zeros(4), np.ones(4 * 1), np.zeros(1)]
    ).astype(bool)
    clf = _fit(hidden_layer_sizes=(4,), alpha="validation")
    if pruned:
        clf = prune(clf, 0.3, method="magnitude").set_params(warm_start=True)
        weights &= ~clf.pruned_mask_
        assert clf.pruned_mask_.any() and weights.any()
    asked = _ask_mackay_at_every_fit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
    assert len(asked) >= 2 and any(alpha != 1.0 for alpha, _, _ in asked)
    for alpha, update, fit in asked:
        theta = np.asarray(fit.theta)
        covariance = np.asarray(fit.posterior.covariance_diagonal(np))
        gamma = weights.sum() - alpha * covariance[weights].sum()
        assert update == pytest.approx(gamma / np.sum(theta[weights] ** 2), rel=1e-12)


@pytest.mark.parametrize(
    "data, n_fits",
    [
        # Up to 10 (or down to 0.1), clearly lower: there MacKay's update
        # lies short of the next decade's midpoint, so the walk stops (it
        # went on a decade further before that rule, session 16).
        (dict(n_samples=400, n_features=60, flip_y=0.1, random_state=1), 2),
        (dict(n_samples=300, n_features=5, random_state=1), 2),
        # Neither neighbour of 1 clearly lower: up, turned, kept 1.
        (dict(n_samples=400, n_features=60, flip_y=0.1, random_state=0), 3),
    ],
)
def test_logistic_walk_makes_the_decisions_of_fixed_alpha_fits(data, n_fits):
    """No hidden layer: one MAP per alpha, so the walk's warm starts change
    nothing, and its steps must be those that per-row held-out losses of
    fixed-alpha fits (same held-out rows, each at its chosen scale) call
    clearly lower -- the first one the way the evidence at the first MAP
    rises (MacKay's update)."""
    Xl, yl = make_classification(n_informative=2, n_redundant=0, **data)
    Xl = StandardScaler().fit_transform(Xl)
    common = dict(hidden_layer_sizes=(), prior_precision_scale="validation", tol=1e-10)

    def _fit(**params):
        return LaplaceMLPClassifier(random_state=0, **params).fit(Xl, yl)

    walked = _fit(alpha="validation", **common)
    held = validation_rows(Xl, yl, 0.1, walked._mc_seed)
    fits = {}

    def loss_at(alpha):
        if alpha not in fits:
            fits[alpha] = _fit(alpha=alpha, **common)
        proba = fits[alpha].predict_proba(Xl[held])
        return -np.log(proba[np.arange(held.sum()), yl[held]])

    def update_at(alpha):
        return _logistic_mackay_update(fits[alpha], Xl[~held], alpha)

    loss_at(1.0)
    first = fits[1.0]
    up = first.log_marginal_likelihood(alpha=1.01) > first.log_marginal_likelihood()
    tried, kept = _reference_walk(loss_at, up, update_at)
    assert [float(a[0]) for a in walked.alpha_history_] == pytest.approx(tried)
    assert len(tried) == n_fits and walked.alpha_ == pytest.approx(kept)
    reference = fits[min(fits, key=lambda a: abs(np.log(a / walked.alpha_)))]
    np.testing.assert_allclose(walked.coefs_[0], reference.coefs_[0], rtol=1e-6)
    assert walked.prior_precision_scale_ == reference.prior_precision_scale_


# Noise features: the walk leaves alpha=1 for a network (to 10).
XN, YN = make_classification(
    n_samples=600, n_features=60, n_informative=2, n_redundant=0, random_state=0
)
XN = StandardScaler().fit_transform(XN)


def test_network_walk_scores_each_fit_at_the_models_own_scale():
    common = dict(hidden_layer_sizes=(4,), random_state=0)
    kept = {}
    for scale in ["validation", 100.0]:
        walked = LaplaceMLPClassifier(
            alpha="validation", prior_precision_scale=scale, **common
        ).fit(XN, YN)
        tried = [float(a[0]) for a in walked.alpha_history_]
        assert tried[:2] == [1.0, 10.0] and walked.alpha_ in tried
        kept[scale] = walked
    # Its first fit is the fixed alpha=1 fit, on the same held-out rows.
    start = LaplaceMLPClassifier(
        alpha=1.0, prior_precision_scale="validation", **common
    ).fit(XN, YN)
    path = "validation_log_loss"
    np.testing.assert_array_equal(
        kept["validation"].prior_precision_scale_path_["scales"],
        start.prior_precision_scale_path_["scales"],
    )
    assert np.min(kept["validation"].prior_precision_scale_path_[path]) < np.min(
        start.prior_precision_scale_path_[path]
    )
    assert kept["validation"].n_iter_ > start.n_iter_  # every fit is counted
    assert kept[100.0].prior_precision_scale_ == 100.0


@pytest.mark.parametrize("setting", [2.0, "evidence"])
def test_each_walk_fit_is_scored_at_the_scale_the_model_would_use(monkeypatch, setting):
    # A fixed scale scores every fit the walk tries at that scale alone;
    # "evidence" at that fit's own scale of largest evidence.
    seen, original = [], sklaplace._fitting.validation_log_losses

    def spy(fit, jacobians, rows, scales, *args, **kwargs):
        expected = setting
        if setting == "evidence":
            expected = choose_prior_scale("evidence", fit).scale
        seen.append((np.asarray(scales, dtype=float), expected))
        return original(fit, jacobians, rows, scales, *args, **kwargs)

    monkeypatch.setattr(sklaplace._fitting, "validation_log_losses", spy)
    LaplaceMLPClassifier(
        (3,), alpha="validation", prior_precision_scale=setting, random_state=0
    ).fit(X[:60], Y[:60])
    assert len(seen) >= 2  # one per fit tried
    for scales, expected in seen:
        np.testing.assert_allclose(scales, [expected], rtol=1e-12)


def test_only_the_kept_walk_fit_holds_a_posterior(monkeypatch):
    # Every other fit the walk tried, the last one included, is freed.
    networks, original = [], sklaplace._estimator.fit_network

    def spy(*args, **kwargs):
        networks.append(original(*args, **kwargs))
        return networks[-1]

    monkeypatch.setattr(sklaplace._estimator, "fit_network", spy)
    for seed in range(3):
        LaplaceMLPClassifier(
            (3,), alpha="validation", prior_precision_scale=1.0, random_state=seed
        ).fit(X[:60], Y[:60])
    for network in networks:
        others = [r for r in network.refits if r is not network.fit]
        assert others and all(r.posterior is r.objective is None for r in others)


def test_a_warm_walk_from_per_layer_alphas_starts_at_their_geometric_mean():
    clf = LaplaceMLPClassifier(
        (3,), alpha="validation", prior_precision_scale=1.0, random_state=0
    ).fit(X[:60], Y[:60])
    clf.alpha_ = np.array([0.01, 1e4])  # as per layer; geometric mean 10
    clf.set_params(alpha="validation", warm_start=True).fit(X[:60], Y[:60])
    assert float(np.ravel(clf.alpha_history_[0])[0]) == pytest.approx(10.0, rel=1e-12)


def test_a_walk_turned_from_a_collapsed_fit_refits_from_the_initial_weights():
    # (2, 2, 2) logistic units collapse at alpha 1 and 10 (logits the same on
    # every row); warm-started from that MAP, which has no gradient to leave
    # by, the turned fit at 0.1 collapsed too. From the initial weights it
    # separates two blobs, as a fixed alpha=0.1 does.
    from sklearn.datasets import make_blobs

    Xb, yb = make_blobs(n_samples=300, random_state=0)
    Xb = StandardScaler().fit_transform(Xb)
    Xb, yb = Xb[yb != 2], yb[yb != 2]
    kw = dict(hidden_layer_sizes=(2, 2, 2), activation="logistic", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collapsed = LaplaceMLPClassifier(alpha=1.0, **kw).fit(Xb, yb)
        walked = LaplaceMLPClassifier(alpha="validation", **kw).fit(Xb, yb)
    assert np.ptp(collapsed.decision_function(Xb)) < 1e-6  # the start collapses
    assert [float(a[0]) for a in walked.alpha_history_][:3] == [1.0, 10.0, 0.1]
    assert walked.alpha_ < 1.0
    assert np.mean(walked.predict(Xb) == yb) > 0.95


def test_too_few_rows_to_hold_out_fall_back_to_alpha_one():
    # Two rows, one per class: neither can be held out (its class would go
    # unfitted), so there is no held-out loss to walk on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = LaplaceMLPClassifier((2,), alpha="validation", random_state=0)
        tiny.fit(X[:2], np.array([0, 1]))
    assert tiny.alpha_ == 1.0 and tiny.alpha_history_ == []


def test_warm_refit_resumes_the_walk_from_the_fitted_alpha_on_the_same_rows():
    # A RandomState draws other held-out rows on every cold fit, but a warm
    # refit must keep them (its MAP was fitted on the others).
    rng = np.random.RandomState(0)
    clf = LaplaceMLPClassifier(
        (4,), alpha="validation", warm_start=True, random_state=rng
    ).fit(XN, YN)
    first, seed = clf.alpha_, clf._mc_seed
    assert first != 1.0
    clf.fit(XN, YN)
    assert clf.alpha_history_[0][0] == first and clf._mc_seed == seed
    clf.set_params(warm_start=False).fit(XN, YN)
    assert clf._mc_seed != seed


def test_a_warm_refit_on_the_same_rows_keeps_the_walks_alpha():
    """Refitting unchanged data warm resumes the walk where it stopped (it
    had turned and walked from 0.1 to 0.001, moving probabilities by 0.34)."""
    from sklearn.datasets import make_blobs

    Xb, yb = make_blobs(n_samples=30, random_state=0, n_features=2)
    Xb = StandardScaler().fit_transform(Xb)
    clf = LaplaceMLPClassifier(
        (8,),
        activation="tanh",
        alpha="validation",
        prior_precision_scale="validation",
        warm_start=True,
        random_state=0,
    ).fit(Xb, yb)
    alpha, proba = clf.alpha_, clf.predict_proba(Xb)
    assert [float(a[0]) for a in clf.alpha_history_] == [1.0, 0.1]
    for _ in range(2):
        clf.fit(Xb, yb)
        assert clf.alpha_ == alpha
        np.testing.assert_allclose(clf.predict_proba(Xb), proba, atol=1e-6)


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_a_warm_refit_does_not_take_a_step_the_walk_rejected(solver):
    """The walk stopped at 1 because the held-out rows rejected 0.1 and 10
    (MacKay's update at 1, 0.30, lies past the midpoint to 0.1); the warm
    refit re-tried 0.1 from the MAP at 1 without splitting its merged units
    as the cold walk had (its reference was that MAP itself, and its first
    fit took no step), reached another basin and kept it: probabilities
    moved by 0.45 on unchanged data (a solver probe, session 63)."""
    from sklearn.datasets import make_moons

    Xm, ym = make_moons(120, noise=0.3, random_state=0)
    clf = LaplaceMLPClassifier(
        (5,),
        alpha="validation",
        solver=solver,
        prior_precision_scale=1.0,
        max_iter=3000,
        warm_start=True,
        random_state=0,
    ).fit(Xm, ym)
    assert [float(a[0]) for a in clf.alpha_history_] == [1.0, 0.1, 10.0]
    alpha, proba = clf.alpha_, clf.predict_proba(Xm)
    clf.fit(Xm, ym)
    assert clf.alpha_ == alpha
    np.testing.assert_allclose(clf.predict_proba(Xm), proba, atol=1e-6)


def test_integer_weights_equal_repeated_rows():
    weight = np.where(np.arange(len(Y)) % 4 == 0, 2.0, 1.0)
    repeated = np.repeat(np.arange(len(Y)), weight.astype(int))
    common = dict(hidden_layer_sizes=(4,), alpha="validation", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = LaplaceMLPClassifier(**common).fit(X, Y, sample_weight=weight)
        copies = LaplaceMLPClassifier(**common).fit(X[repeated], Y[repeated])
    assert weighted.alpha_ == copies.alpha_
    np.testing.assert_allclose(
        weighted.predict_proba(X), copies.predict_proba(X), rtol=1e-6, atol=1e-9
    )


def test_array_alphas_are_not_mistaken_for_the_walk():
    # An ndarray alpha compared with "validation" element by element raised
    # "truth value of an array is ambiguous" (refitting a per-layer alpha_).
    per_layer = _fit(hidden_layer_sizes=(4,), alpha="evidence_per_layer")
    refit = _fit(hidden_layer_sizes=(4,), alpha=per_layer.alpha_)
    np.testing.assert_array_equal(refit.alpha_, per_layer.alpha_)
    assert refit.alpha_history_ == []
    two = _fit(hidden_layer_sizes=(4,), alpha=np.array([1.0, 2.0]))
    np.testing.assert_array_equal(two.alpha_, [1.0, 2.0])


def _tried(walk):
    return [float(a[0]) for a in walk.history]


def test_walk_clips_its_start_and_its_steps_into_the_evidence_bounds():
    low, high = EVIDENCE_BOUNDS
    walk = walk_alpha(_planted(-12.0)[0], lambda outcome, alpha: 0.0, start=low / 100)
    # Down is no step: turned at once.
    assert _tried(walk) == pytest.approx([low, 1e-5], rel=1e-12)
    walk = walk_alpha(
        _planted(12.0)[0], lambda outcome, alpha: np.inf, start=high * 100
    )
    assert _tried(walk)[0] == high
    walk = walk_alpha(_planted(-12.0)[0], lambda outcome, alpha: 0.0, start=low * 10)
    assert _tried(walk) == [low * 10, low] and walk.alpha == low


def test_walk_goes_down_when_mackay_points_at_the_start():
    # "up first if it is larger than start, down otherwise": a tie goes down;
    # at 0.1 the same update (1.0) lies back up: no further step.
    walk = walk_alpha(_planted(-1.0)[0], lambda outcome, alpha: 1.0)
    assert _tried(walk) == [1.0, 0.1] and walk.alpha == 0.1


@pytest.mark.parametrize(
    "update, tried",
    # Exactly at the midpoint is not past it.
    [(10**1.49, [1, 10]), (10 * 10**0.5, [1, 10]), (10**1.51, [1, 10, 100])],
)
def test_walk_steps_on_only_past_the_midpoint_of_the_next_step(update, tried):
    walk = walk_alpha(_planted(3.0)[0], lambda outcome, alpha: update)
    assert _tried(walk) == tried


@pytest.mark.parametrize(
    "base_rate, tried",
    [
        # Losses 2.25, 1, 0.25, 0 at 1, 10, 100, 1000. The best fit's loss
        # (at 10: 1) above the base rate: no better than class frequencies,
        # so MacKay's update, short of the midpoint to 100, does not stop
        # the walk; at 100 (0.25) it does again.
        (0.9, [1, 10, 100]),
        (1.0, [1, 10, 100]),  # equal is no better
        (0.2, [1, 10, 100, 1000]),  # still no better at 100
        (1.1, [1, 10]),  # below it at 10: the update stops the walk there
    ],
)
def test_walk_steps_on_while_the_best_fit_is_no_better_than_the_base_rate(
    base_rate, tried
):
    evaluate, _ = _planted(3.0)
    walk = walk_alpha(
        lambda alpha, previous: (alpha, evaluate(alpha, previous)[1] / 4.0),
        lambda outcome, alpha: 10**1.4,  # short of the midpoint to 100
        hopeless=lambda loss: loss >= base_rate,
    )
    assert _tried(walk) == tried


def test_the_estimators_walk_judges_fits_against_the_held_out_base_rate(
    monkeypatch,
):
    # The walk is given hopeless(loss): the mean held-out loss at least that
    # of predicting the fitted rows' class frequencies for the held-out rows.
    captured, walk = {}, sklaplace._alpha_walk.walk_alpha

    def spy(*args, hopeless=None, **kwargs):
        captured["hopeless"] = hopeless
        return walk(*args, hopeless=hopeless, **kwargs)

    monkeypatch.setattr(sklaplace._alpha_walk, "walk_alpha", spy)
    clf = _fit(hidden_layer_sizes=(), alpha="validation")
    held = validation_rows(X, Y, 0.1, clf._mc_seed)
    frequency = np.bincount(Y[~held], minlength=2) / np.sum(~held)
    base_rate = -np.mean(np.log(frequency[Y[held]]))
    n_held = int(np.sum(held))

    def at(mean_loss):
        return HeldOutLosses(np.full((n_held, 1), mean_loss), np.ones(n_held))

    assert captured["hopeless"](at(base_rate * (1 + 1e-9)))
    assert not captured["hopeless"](at(base_rate * (1 - 1e-9)))


def test_base_rate_loss_predicts_the_fitted_rows_class_frequencies():
    # Weighted frequencies 0.25 / 0.75 of the fitted rows; a held-out class
    # the fitted rows lack costs inf.
    fitted = (None, np.array([0, 1, 1]), np.array([1.0, 1.0, 2.0]))
    held_out = (None, np.array([0, 1]), np.array([1.0, 3.0]))
    expected = -(np.log(0.25) + 3 * np.log(0.75)) / 4
    assert base_rate_loss(fitted, held_out, 2) == pytest.approx(expected, rel=1e-12)
    assert base_rate_loss(fitted, (None, np.array([2]), np.ones(1)), 3) == np.inf


def test_walk_needs_a_lower_loss_to_move():
    # An equal loss (or one undefined everywhere) is no step down: the start
    # is kept after one step each way.
    for loss in (0.5, np.inf):
        walk = walk_alpha(lambda a, p, loss=loss: (a, loss), lambda outcome, alpha: 2.0)
        assert _tried(walk) == [1.0, 10.0, 0.1] and walk.alpha == 1.0


def test_clearly_lower_needs_more_than_one_paired_standard_error():
    weights = np.ones(4)

    def losses(*values):
        return HeldOutLosses(np.array(values, dtype=float)[:, None], weights)

    best = losses(1.0, 1.0, 1.0, 1.0)
    # Differences -0.2 each: mean -0.2, no spread: clearly lower.
    assert clearly_lower(losses(0.8, 0.8, 0.8, 0.8), best)
    # Mean -0.05 with differences (-0.4, 0.2, 0.2, -0.2)... spread 0.26,
    # standard error 0.13 > 0.05: not clearly lower, though lower on average.
    assert not clearly_lower(losses(0.6, 1.2, 1.2, 0.8), best)
    assert not clearly_lower(losses(1.0, 1.0, 1.0, 1.0), best)  # a tie
    # Zero-weight rows do not count; an undefined loss loses to a defined one.
    zero = HeldOutLosses(np.array([[0.8], [0.8], [0.8], [50.0]]), np.r_[1, 1, 1, 0.0])
    assert clearly_lower(zero, HeldOutLosses(best.losses, np.r_[1, 1, 1, 0.0]))
    assert not clearly_lower(losses(0.1, 0.1, 0.1, np.inf), best)
    assert clearly_lower(best, losses(0.1, 0.1, 0.1, np.inf))
    # ... also on a row of zero weight, which the paired statistics skip.
    undefined = HeldOutLosses(np.array([[0.1], [0.1], [0.1], [np.inf]]), zero.weights)
    assert not clearly_lower(undefined, HeldOutLosses(best.losses, zero.weights))
    # Differences (-0.4, 0.1, -0.4, 0.1): mean -0.15, standard error 0.125, a
    # lead of 1.2 errors; the arbitration between basins asks for two.
    trial = losses(0.6, 1.1, 0.6, 1.1)
    assert clearly_lower(trial, best) and clearly_lower(trial, best, 1.19)
    assert not clearly_lower(trial, best, 1.21)
    assert not clearly_lower(trial, best, BASIN_STANDARD_ERRORS)


def test_plug_in_walk_does_not_depend_on_the_prior_scale_setting():
    # link_approx="map": the held-out loss is the plug-in's, the same at every
    # prior scale, so the walk (same held-out rows) tries and keeps the same
    # alphas whatever prior_precision_scale is (a start whose walk takes
    # three fits).
    walks = [
        _fit(
            random_state=3,
            hidden_layer_sizes=(4,),
            alpha="validation",
            link_approx="map",
            prior_precision_scale=setting,
        )
        for setting in ("validation", "evidence", 100.0)
    ]
    tried = [[float(a[0]) for a in w.alpha_history_] for w in walks]
    assert tried[0][0] == 1.0 and len(tried[0]) >= 3
    assert tried[1] == tried[0] and tried[2] == tried[0]
    assert all(w.alpha_ == walks[0].alpha_ for w in walks)
    assert walks[2].prior_precision_scale_ == 100.0


def test_walk_with_the_evidence_choosing_the_prior_scale():
    # Each fit is scored on the held-out rows at the scale its evidence gives.
    clf = _fit(
        random_state=3,
        hidden_layer_sizes=(4,),
        alpha="validation",
        prior_precision_scale="evidence",
    )
    tried = [float(a[0]) for a in clf.alpha_history_]
    assert tried[0] == 1.0 and 3 <= len(tried) <= ALPHA_WALK_MAX_FITS
    assert clf.alpha_ in tried and clf.effective_n_parameters_ is None
    assert "log_marginal_likelihood" in clf.prior_precision_scale_path_


def test_walk_raises_the_kept_fits_warnings_once():
    # Every fit stops at max_iter; only the kept one's warning is raised.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LaplaceMLPClassifier(
            (4,), alpha="validation", solver="lbfgs", max_iter=2, random_state=2
        ).fit(XN, YN)
    assert len(clf.alpha_history_) >= 2
    assert [w.category for w in caught] == [ConvergenceWarning]


# Mutation round (session 28): of two fits undefined somewhere, neither is
# clearly lower.
def _losses(values):
    values = np.asarray(values, dtype=float)
    return HeldOutLosses(values[:, None], np.ones(values.shape[0]))


def test_an_undefined_trial_is_never_clearly_lower_than_an_undefined_best():
    best = _losses([0.3, np.inf, 0.2])
    # Undefined elsewhere, far lower where defined: still undefined, loses.
    assert not clearly_lower(_losses([np.inf, 0.01, 0.01]), best)
    assert not clearly_lower(_losses([0.01, np.inf, 0.01]), best)
    # Defined everywhere: wins against the undefined best, whatever its mean.
    assert clearly_lower(_losses([5.0, 5.0, 5.0]), best)


# Mutation round (session 37): the midpoint rule away from alpha 1, the
# warm starts of walk_fits, its base-rate tie, an update of 0.
def _loss_least_at(best_log10):
    """An ``evaluate`` whose loss is ``(log10 alpha - best_log10)^2``."""

    def evaluate(alpha, previous):
        return alpha, (np.log10(alpha) - best_log10) ** 2

    return evaluate


@pytest.mark.parametrize(
    "start, best_log10, update_log10, tried",
    [
        # Up from 1e-3 (the next alphas 0.01 and 0.1 both below 1): at 0.01
        # the update 10**-1.4 lies past the midpoint to 0.1 (10**-1.5).
        (1e-3, -1.0, -1.4, [1e-3, 1e-2, 1e-1]),
        # Down from 1e3: at 100 the update 10**1.4 lies past the midpoint to
        # 10 (10**1.5 from above).
        (1e3, 1.0, 1.4, [1e3, 1e2, 1e1]),
    ],
)
def test_the_midpoint_rule_reads_the_direction_of_the_step_not_of_alpha_one(
    start, best_log10, update_log10, tried
):
    """A warm refit starts the walk at its fitted alpha, so its steps can lie
    all on one side of 1. The midpoint to the next alpha is measured in the
    direction of the step (``next / alpha``): a sign taken from where the
    alphas lie relative to 1 (``next * alpha``) reads the update as pointing
    back and stops the walk one decade short of the held-out optimum."""
    walk = walk_alpha(
        _loss_least_at(best_log10), lambda o, a: 10.0**update_log10, start
    )
    assert [float(a[0]) for a in walk.history] == pytest.approx(tried, rel=1e-12)
    assert walk.alpha == pytest.approx(tried[-1], rel=1e-12)


@pytest.mark.parametrize(
    "best_log10, update_log10, hopeless, tried",
    [
        # The update short of the midpoint to 0.01 (10**-1.5): no step, though
        # the loss would fall there (a cold walk from 0.1 would step).
        (-3.0, -1.4, False, [0.1]),
        # Past the midpoint to 1: the step up fails, and no turn follows
        # (a cold walk would turn down to 0.01 and on to 1e-4).
        (-3.0, -0.4, False, [0.1, 1.0]),
        # Past it towards 0.01, and the loss falls: the walk goes on as usual
        # (to 1e-4, where the loss rises again).
        (-3.0, -1.6, False, [0.1, 0.01, 0.001, 1e-4]),
        # A hopeless first fit: MacKay's update does not steer, the walk steps.
        (-3.0, -1.4, True, [0.1, 0.01, 0.001, 1e-4]),
    ],
)
def test_a_resumed_walk_steps_only_where_mackay_asks_and_never_turns(
    best_log10, update_log10, hopeless, tried
):
    """A warm refit resumes from the alpha its walk chose, which stopped
    there by the walk's rules: its first step needs MacKay's update past
    the midpoint (unless the fit is hopeless), and a failed step is final.
    Walks with ``resumed=False`` from the same start step and turn."""
    update = 10.0**update_log10
    # At 0.1 the update given; past it, one decade further the same way.
    onwards = 10.0 ** np.sign(update_log10 + 1)
    walk = walk_alpha(
        _loss_least_at(best_log10),
        lambda o, a: update if a == 0.1 else a * onwards,
        0.1,
        hopeless=lambda loss: hopeless,
        resumed=True,
    )
    assert [float(a[0]) for a in walk.history] == pytest.approx(tried, rel=1e-12)
    expected = [(np.log10(a) - best_log10) ** 2 for a in tried]
    assert walk.losses == pytest.approx(expected, rel=1e-12)
    cold = walk_alpha(
        _loss_least_at(best_log10), lambda o, a: update, 0.1, resumed=False
    )
    assert len(cold.history) > 1


def test_an_update_of_zero_or_infinity_is_far_off_without_a_warning():
    """MacKay's update at an accepted fit can be 0 or inf (documented: "far
    off"): 0 stops an upward walk, inf carries it on, and neither leaks
    NumPy's divide-by-zero warning from ``log(0)``."""
    updates = {1.0: 1e3}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stopped = walk_alpha(_loss_least_at(3.0), lambda o, a: updates.get(a, 0.0))
        carried = walk_alpha(_loss_least_at(3.0), lambda o, a: updates.get(a, np.inf))
    assert [float(a[0]) for a in stopped.history] == [1.0, 10.0]
    assert [float(a[0]) for a in carried.history] == [1.0, 10.0, 100.0, 1000.0]


def _scripted_fits(thetas, mean_losses, collapsed=()):
    """``fit_at`` and ``held_out_loss`` for :func:`walk_fits`: the fit at
    ``alpha`` has parameters ``thetas[alpha]``, a zero posterior variance
    (MacKay's update ``n / ||theta||^2``) and held-out losses of mean
    ``mean_losses[alpha]`` on four rows (a constant difference between two
    fits: clearly lower whenever it is negative); its logits on two rows
    differ, or are equal (it ignores its input) at the alphas in
    ``collapsed``. ``calls`` records each fit's alpha and the parameters it
    started from."""
    calls = []

    def fit_at(alpha, theta):
        calls.append((alpha, np.array(theta)))
        logits = np.array([[0.3], [0.3 if alpha in collapsed else 1.3]])
        fit = SimpleNamespace(
            alpha=alpha,
            theta=np.array(thetas[alpha]),
            posterior=SimpleNamespace(covariance_diagonal=lambda xp: np.zeros(2)),
            objective=SimpleNamespace(
                xp=np, forward=lambda theta: SimpleNamespace(logits=logits)
            ),
        )
        return fit, [f"warning at {alpha:g}"]

    def held_out_loss(fit):
        return HeldOutLosses(np.full((4, 1), mean_losses[fit.alpha]), np.ones(4))

    return fit_at, held_out_loss, calls


def test_each_walk_fit_starts_from_its_neighbour_towards_the_start():
    """``walk_fits`` warm-starts the first fit from the given parameters and
    each later one from the fit of the adjacent alpha towards the start (the
    last accepted one), not from the initial parameters again: on a network
    a cold start can land in another basin. Updates ``2 / ||theta||^2``: 4 at
    1 (up), 100 at 10 (past the midpoint to 100); the loss rises at 100."""
    thetas = {1.0: [0.5, 0.5], 10.0: [0.1, 0.1], 100.0: [0.3, 0.3]}
    fit_at, held_out_loss, calls = _scripted_fits(
        thetas, {1.0: 1.0, 10.0: 0.5, 100.0: 0.75}
    )
    initial = np.array([7.0, 7.0])
    groups = [np.array([True, True])]
    fit, alpha, history, kept = walk_fits(
        fit_at, held_out_loss, initial, None, groups, np, 10.0
    )
    assert [a for a, _ in calls] == [1.0, 10.0, 100.0]
    np.testing.assert_array_equal(calls[0][1], initial)
    np.testing.assert_array_equal(calls[1][1], thetas[1.0])
    np.testing.assert_array_equal(calls[2][1], thetas[10.0])
    assert alpha == 10.0 and fit.alpha == 10.0 and kept == ["warning at 10"]
    assert [float(a[0]) for a in history] == [1.0, 10.0, 100.0]


def test_a_walk_fit_next_to_a_collapsed_one_starts_from_the_initial_parameters():
    """The fit at 1 ignores its input (a collapsed MAP, whose weights have no
    gradient to leave by); MacKay's update (2 / 0.5 = 4) points up, the loss
    rises at 10, and the turned fit at 0.1 starts from the initial
    parameters, not from the collapsed fit's. Where the fit at 1 is not
    collapsed, the same walk warm-starts 0.1 from it."""
    thetas = {1.0: [0.5, 0.5], 10.0: [0.1, 0.1], 0.1: [0.7, 0.7], 0.01: [0.9, 0.9]}
    losses = {1.0: 1.0, 10.0: 2.0, 0.1: 0.5, 0.01: 0.6}
    groups = [np.array([True, True])]
    for collapsed, start_of_0_1 in [((1.0,), [0.2, -0.2]), ((), [0.5, 0.5])]:
        fit_at, held_out_loss, calls = _scripted_fits(thetas, losses, collapsed)
        initial = np.array([0.2, -0.2])
        walk_fits(fit_at, held_out_loss, initial, None, groups, np, np.inf)
        assert [a for a, _ in calls][:3] == [1.0, 10.0, 0.1]
        np.testing.assert_array_equal(calls[2][1], start_of_0_1)


@pytest.mark.parametrize(
    "base_rate, tried", [(0.5, [1, 10, 100]), (np.nextafter(0.5, 1.0), [1, 10])]
)
def test_walk_fits_steps_on_while_the_best_loss_equals_the_base_rate(base_rate, tried):
    """A loss "no lower than the base rate" includes an equal one: a best fit
    whose mean held-out loss is exactly the base rate (0.5) does not let
    MacKay's update (4 at 10, short of the midpoint to 100) stop the walk;
    against a base rate one float above that loss, the update stops it."""
    thetas = {1.0: [0.5, 0.5], 10.0: [0.5, 0.5], 100.0: [0.5, 0.5]}
    fit_at, held_out_loss, calls = _scripted_fits(
        thetas, {1.0: 1.0, 10.0: 0.5, 100.0: 0.75}
    )
    groups = [np.array([True, True])]
    walk_fits(fit_at, held_out_loss, np.zeros(2), None, groups, np, base_rate)
    assert [a for a, _ in calls] == tried


def test_the_scales_folds_refit_on_the_walks_rows_and_never_on_its_held_out_rows(
    monkeypatch,
):
    """With alpha="validation" the network is fitted on the rows the walk
    does not hold out; the prior scale's folds ("cv") then refit on subsets
    of THOSE rows. Each fold's rows are read off the fits themselves (row
    bytes, no index arithmetic): every fold fits a strict subset of the
    walk's rows, every walk row is fitted by at least CV_FOLDS - 1 folds,
    and no held-out validation row enters any fold. Mutant: the folds'
    boolean mask over the walk's rows turned into indices of all of ``X``
    (``np.flatnonzero(train)`` for ``fit_rows[train]``), which fits the
    folds on held-out rows."""
    fitted, original = [], sklaplace._fitting.fit_laplace

    def fit_laplace(config, objective, theta, *reference):
        fitted.append({row.tobytes() for row in np.asarray(objective.X)})
        return original(config, objective, theta, *reference)

    monkeypatch.setattr(sklaplace._fitting, "fit_laplace", fit_laplace)
    clf = _fit(hidden_layer_sizes=(3,), alpha="validation", prior_precision_scale="cv")
    every_row = {row.tobytes() for row in X}
    walk_rows = max(fitted, key=len)
    held_out = every_row - walk_rows
    assert 0 < len(held_out) < 0.5 * len(every_row)  # the walk held rows out
    folds = [rows for rows in fitted if len(rows) < len(walk_rows)]
    assert len(folds) >= CV_FOLDS - 1 and clf.prior_precision_scale_path_ is not None
    for rows in folds:
        assert rows < walk_rows
        assert not rows & held_out
    counts = [sum(row in rows for rows in folds) for row in walk_rows]
    assert min(counts) >= len(folds) - 1


def test_leave_one_out_scores_exactly_the_walks_rows(monkeypatch):
    """With alpha="validation" and prior_precision_scale="loo" the scale's
    leave-one-out losses take each row out of the MAP and the posterior it
    was fitted into: they must score the walk's fitted rows, every one and
    no held-out validation row (which no fit has seen: "leaving it out"
    would downdate curvature it never added). Rows are compared by their
    bytes, read off the fits and the scored data. Mutant: all of ``X``
    (``data``) passed to ``loo_log_losses`` instead of ``fit_data``."""
    fitted, scored = [], []
    fit_laplace = sklaplace._fitting.fit_laplace
    loo_log_losses = sklaplace._fitting.loo_log_losses

    def spy_fit(config, objective, theta, *reference):
        fitted.append(frozenset(row.tobytes() for row in np.asarray(objective.X)))
        return fit_laplace(config, objective, theta, *reference)

    def spy_loo(fit, jacobians, data, *args):
        scored.append(frozenset(row.tobytes() for row in data[0]))
        assert len(scored[-1]) == data[0].shape[0]  # distinct rows
        return loo_log_losses(fit, jacobians, data, *args)

    monkeypatch.setattr(sklaplace._fitting, "fit_laplace", spy_fit)
    monkeypatch.setattr(sklaplace._fitting, "loo_log_losses", spy_loo)
    clf = _fit(hidden_layer_sizes=(3,), alpha="validation", prior_precision_scale="loo")
    assert len(set(fitted)) == 1  # every walk fit on the same rows
    (rows,) = set(fitted)
    assert 0 < len(rows) < X.shape[0]  # the walk held rows out
    assert scored and all(part == rows for part in scored)
    assert "loo_log_loss" in clf.prior_precision_scale_path_


def test_walk_does_not_ask_mackays_update_at_a_bound():
    """``direction`` is "not asked where no step is left (a bound, the fit
    budget)": each ask is a posterior covariance diagonal. Walking up from a
    decade below the upper bound with the held-out loss falling all the way,
    the fit at the bound is kept without asking MacKay's update there; the
    only ask is the one at the start that picks the way. (Mutant: the
    ``next_alpha == alpha`` test dropped -- the same decisions, but an
    update was computed at the bound for nothing.)"""
    high = EVIDENCE_BOUNDS[1]
    asked = []

    def direction(outcome, alpha):
        asked.append(alpha)
        return np.inf

    def evaluate(alpha, previous):
        return alpha, -np.log10(alpha)  # lower and lower going up

    walk = walk_alpha(evaluate, direction, start=high / 10)
    assert [float(a[0]) for a in walk.history] == [high / 10, high]
    assert walk.alpha == high
    assert asked == [high / 10]


@pytest.mark.parametrize("seed", range(40))
def test_any_losses_and_updates_end_the_walk_within_its_budget(seed):
    # Losses, ties and MacKay's updates at random, starts at and near the
    # bounds: no alpha is fitted twice, the budget holds, and the kept fit
    # has the least loss of all tried (a rejected fit was no lower than the
    # best of its time, which only falls).
    rng = np.random.default_rng(seed)
    low, high = EVIDENCE_BOUNDS
    start = rng.choice([low, low * 10, 1.0, high / 10, high, 10 ** rng.uniform(-6, 6)])
    losses = {}

    def evaluate(alpha, previous):
        assert alpha not in losses
        losses[alpha] = float(rng.choice([0.0, 1.0, rng.uniform()]))
        return alpha, losses[alpha]

    def direction(outcome, alpha):
        return float(rng.choice([0.0, np.inf, alpha, 10 ** rng.uniform(-8, 8)]))

    walk = walk_alpha(evaluate, direction, start=start)
    assert 1 <= len(losses) == len(walk.history) <= ALPHA_WALK_MAX_FITS
    assert losses[walk.alpha] == min(losses.values()) == min(walk.losses)


@pytest.mark.parametrize("setting", [1.0, 2.0, "evidence"])
def test_a_walk_scored_at_one_scale_takes_no_eigendecomposition(monkeypatch, setting):
    """One scale per walk fit: its posterior (the fit's own at scale 1), not
    the eigendecomposition that serves 49 at once (``eigh``, failing here,
    about ten Cholesky factorisations; ``"evidence"`` finds its scale from
    eigenvalues alone). Its losses are the grid's at that scale: below."""

    def no_eigenvectors(*args, **kwargs):
        raise AssertionError("eigh computed eigenvectors")

    monkeypatch.setattr(np.linalg, "eigh", no_eigenvectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        walked = LaplaceMLPClassifier(
            (5,), alpha="validation", prior_precision_scale=setting, random_state=0
        ).fit(X[:150], Y[:150])
    assert len(walked.alpha_history_) >= 2


@pytest.mark.parametrize("scale", [1.0, 0.3, 40.0])
def test_one_scales_held_out_losses_are_the_grids_at_that_scale(scale):
    # The posterior at one scale (a Cholesky factor) against the
    # eigendecomposition of every scale: the same log losses, row by row.
    clf = LaplaceMLPClassifier((5,), alpha=1.0, prior_precision_scale=1.0)
    clf.fit(X[:150], Y[:150])
    fit = SimpleNamespace(
        theta=clf._layout().pack(np, clf.coefs_, clf.intercepts_),
        posterior=clf.posterior_,
        prior_precision=clf.prior_precision_,
        objective=SimpleNamespace(xp=np, fixed=None, likelihood=likelihood_for(2)),
    )
    layout = clf._layout()

    def jacobians(theta, rows):
        return logit_factors(np, layout, theta, clf.activation, rows)

    rows, labels = X[150:], Y[150:]
    grid = np.array(sorted({0.1, scale, 1.0, 10.0}))
    for probit in (True, False):
        one = _heldout_log_losses(
            fit, jacobians, rows, labels, [scale], probit_logits, probit
        )
        every = _heldout_log_losses(
            fit, jacobians, rows, labels, grid, probit_logits, probit
        )
        np.testing.assert_allclose(one[:, 0], every[:, grid == scale][:, 0], rtol=1e-10)


def test_the_kept_walk_fits_losses_choose_its_scale_without_a_second_pass(
    monkeypatch,
):
    # alpha="validation" with the scale on the same rows (the default beyond
    # the cheap-refit rule): each fit tried is scored once on the grid, and
    # the kept fit's scores choose its scale (they had been computed again).
    calls, original = [], sklaplace._fitting.validation_log_losses

    def spy(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(sklaplace._fitting, "validation_log_losses", spy)
    clf = LaplaceMLPClassifier(
        (4,), alpha="validation", prior_precision_scale="validation", random_state=0
    ).fit(XN, YN)
    assert len(calls) == len(clf.alpha_history_) >= 2
    kept = [
        c
        for c in calls
        if np.array_equal(
            c.curve(), clf.prior_precision_scale_path_["validation_log_loss"]
        )
    ]
    assert len(kept) == 1


@pytest.mark.parametrize("seed, tol", [(0, 1e-2), (0, 1e6), (2, 1e-2)])
def test_the_scale_is_chosen_on_the_kept_walk_fits_own_losses(monkeypatch, seed, tol):
    # The kept fit is the last one tried (seed 0, tol 1e-2), the first (tol
    # 1e6: no fit takes a step, and all share the start's weights), or one
    # whose weights are its neighbour's (seed 2: a fit with no step). Its
    # own losses, and no other fit's, choose the scale: a cache keyed on
    # the weights' identity had handed seed 2 another fit's (scale 100
    # instead of 7.5).
    seen, original = [], sklaplace._fitting.validation_log_losses

    def spy(fit, *args, **kwargs):
        seen.append((float(fit.prior_precision[0]), original(fit, *args, **kwargs)))
        return seen[-1][1]

    monkeypatch.setattr(sklaplace._fitting, "validation_log_losses", spy)
    rng = np.random.RandomState(seed)
    X = rng.randn(400, 4)
    y = (X[:, 0] - X[:, 1] + rng.randn(400) > 0).astype(int) + (X[:, 2] > 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (5,),
            alpha="validation",
            prior_precision_scale="validation",
            solver="newton-cg",
            tol=tol,
            hessian_structure="diag",
            random_state=seed,
        ).fit(X, y)
    kept = [losses for alpha, losses in seen if alpha == clf.alpha_]
    assert len(kept) == 1 and len(seen) == len(clf.alpha_history_) >= 3
    np.testing.assert_array_equal(
        clf.prior_precision_scale_path_["validation_log_loss"], kept[0].curve()
    )
