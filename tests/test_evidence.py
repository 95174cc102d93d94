"""The Laplace evidence and its MacKay optimisation of alpha."""

import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.optimize
from sklearn.datasets import (
    load_breast_cancer,
    load_iris,
    make_classification,
    make_moons,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import sklaplace._evidence as evidence_module
import sklaplace._warnings as package_warnings
from sklaplace import LaplaceMLPClassifier
from sklaplace._basins import kept_run
from sklaplace._evidence import (
    EVIDENCE_BOUNDS,
    EVIDENCE_MARGIN,
    EVIDENCE_TOL,
    clearly_larger,
    log_det_prior,
    log_evidence_from_terms,
    log_marginal_likelihood,
    mackay_update,
    tune_alpha,
    weight_groups,
)
from sklaplace._evidence_at_prior import check_flat_shifts, log_evidence_at_prior
from sklaplace._network import ParamLayout, log_equivalent_modes
from sklaplace._posterior import FullPosterior
from sklaplace.exceptions import BaseRateWarning, LaplaceApproximationWarning
from tests.conftest import bayesian_linear_regression, linear_regression_data


def _scaled(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_logistic_regression_evidence_equals_direct_laplace_computation():
    X, y = _scaled(load_breast_cancer)
    X = X[:, :6]
    alpha, beta = 0.7, 0.2
    clf = LaplaceMLPClassifier(
        (), alpha=alpha, bias_prior_precision=beta, tol=1e-12
    ).fit(X, y)
    # Direct: Bayesian logistic regression on Phi = [X, 1], prior N(0, A^{-1}).
    Phi = np.hstack([X, np.ones((X.shape[0], 1))])
    A = np.r_[np.full(6, alpha), beta]

    def neg_log_posterior(w):
        f = Phi @ w
        return np.sum(np.logaddexp(0, f) - y * f) + 0.5 * np.sum(A * w * w)

    w = scipy.optimize.minimize(
        neg_log_posterior, np.zeros(7), method="BFGS", options={"gtol": 1e-10}
    ).x
    p = 1 / (1 + np.exp(-(Phi @ w)))
    H = Phi.T @ ((p * (1 - p))[:, None] * Phi) + np.diag(A)
    log_lik = np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))
    direct = (
        log_lik
        - 0.5 * np.sum(A * w * w)
        + 0.5 * np.sum(np.log(A))
        - 0.5 * np.linalg.slogdet(H)[1]
    )
    np.testing.assert_allclose(clf.log_marginal_likelihood_, direct, rtol=1e-8)
    # The prior-change path next to the MAP's own prior (at it exactly the
    # stored value is returned): the evidence moves by about 1e-9 there.
    np.testing.assert_allclose(
        clf.log_marginal_likelihood(
            alpha=alpha * (1 + 1e-9), bias_prior_precision=beta * (1 + 1e-9)
        ),
        direct,
        rtol=1e-8,
    )


@pytest.mark.parametrize("structure", ["full", "diag"])
@pytest.mark.parametrize("hessian", ["ggn", "exact"])
def test_evidence_slope_in_log_alpha_is_mackays_at_the_kept_refit(structure, hessian):
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier(
        (4,),
        alpha="evidence",
        hessian=hessian,
        hessian_structure=structure,
        prior_precision_scale=1.0,
        tol=1e-10,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an exact Hessian may fall back to the GGN
        clf.fit(X, y)
    alpha = clf.alpha_
    assert len(clf.alpha_history_) >= 2
    step = 1e-4

    def slope(a):
        up = clf.log_marginal_likelihood(alpha=a * np.exp(step))
        down = clf.log_marginal_likelihood(alpha=a * np.exp(-step))
        return (up - down) / (2 * step)

    # At a fixed MAP, d log Z / d log alpha = (gamma - alpha ||w||^2) / 2,
    # which MacKay's update sets to zero on the GGN. The exact Hessian's
    # posterior is kept but alpha is tuned on the GGN: there the slope is
    # -39, and the refactorised exact posterior's round-off allows 1e-4 (the
    # GGN's gamma in its place is off by 39).
    norm = sum(float(np.sum(c**2)) for c in clf.coefs_)
    expected = 0.5 * (clf.effective_n_parameters_[0] - alpha * norm)
    np.testing.assert_allclose(slope(alpha), expected, rtol=1e-4, atol=1e-6)
    assert abs(slope(4 * alpha) - expected) > 0.1


def _iris_evidence_fit(monkeypatch, on_refit):
    """The iris (4,) ``alpha="evidence"`` fit of the tests below, with
    ``on_refit(fit)`` called on every refit's ``fit_laplace`` result."""
    import sklaplace._fitting as fitting_module

    original = fitting_module.fit_laplace

    def hooked(config, objective, theta, *reference):
        fit = original(config, objective, theta, *reference)
        on_refit(fit)
        return fit

    monkeypatch.setattr(fitting_module, "fit_laplace", hooked)
    X, y = _scaled(load_iris)
    return LaplaceMLPClassifier(
        (4,),
        activation="tanh",  # the figures in the docstrings below
        alpha="evidence",
        hessian="ggn",
        hessian_structure="full",
        prior_precision_scale=1.0,
        tol=1e-10,
        random_state=0,
    ).fit(X, y)


@pytest.mark.parametrize("margin", [0.1, None], ids=["small-margin", "default"])
def test_a_refit_whose_evidence_beats_the_fixed_point_by_the_margin_is_kept(
    monkeypatch, margin
):
    """On iris the evidence along MacKay's refits from alpha = 100 peaks at
    the third (alpha 0.094, log evidence -25.43) and ends at the fixed point
    (alpha 0.176, -25.99). Each run keeps its fixed point unless a refit beats
    it by more than ``EVIDENCE_MARGIN`` nats (0.56 here: kept with a margin
    of 0.1, not with the default 3). Across runs a later run's kept refit
    must beat the kept one by the margin at alphas at least as large
    (kept_run): the peak, less regularised than the run from 1's fixed
    point, is not kept even where it leads by more than the margin.
    """
    import sklaplace._fitting as fitting_module

    if margin is not None:
        monkeypatch.setattr(evidence_module, "EVIDENCE_MARGIN", margin)
    margin = evidence_module.EVIDENCE_MARGIN
    ranked = []

    def spy(tunings, collapsed=None):
        ranked.append(tunings)
        return kept_run(tunings, collapsed)

    monkeypatch.setattr(fitting_module, "kept_run", spy)
    seen = []
    clf = _iris_evidence_fit(
        monkeypatch, lambda fit: seen.append((fit.log_evidence(), fit.prior_precision))
    )
    evidence = np.array([e for e, _ in seen])
    weights = ~ParamLayout((4, 4, 3)).bias_mask()
    alphas = np.array([np.asarray(p)[weights][0] for _, p in seen])
    starts = [int(np.flatnonzero(alphas == a)[0]) for a in (1.0, 10.0, 100.0)]
    assert starts[0] == 0 and sorted(starts) == starts
    kept = []
    for run in np.split(np.arange(len(seen)), starts[1:]):
        best, last = run[np.argmax(evidence[run])], run[-1]
        kept.append(best if evidence[best] > evidence[last] + margin else last)
    (tunings,) = ranked
    assert [start + t.kept for start, t in zip(starts, tunings)] == kept
    expected = kept[0]
    for i in kept[1:]:
        if alphas[i] >= alphas[expected] and evidence[i] > evidence[expected] + margin:
            expected = i
    if margin < 0.5:
        peak = starts[2] + 2
        assert kept[2] == peak  # the run from 100 keeps its peak, not its fixed point
        assert evidence[peak] > evidence[kept[0]] + margin
        assert alphas[peak] < alphas[kept[0]] and expected == kept[0]
    else:
        assert kept == [starts[1] - 1, starts[2] - 1, len(seen) - 1]  # fixed points
    assert clf.log_marginal_likelihood_ == pytest.approx(evidence[expected], rel=1e-12)
    np.testing.assert_array_equal(clf.prior_precision_, np.asarray(seen[expected][1]))


class _RefitTag(UserWarning):
    """A warning each refit raises, naming its index."""


def test_a_kept_refit_reports_its_own_warnings_and_gammas(monkeypatch):
    """With the iris peak kept (margin 0.1, as above; it is neither a run's
    first nor its last refit) the fit re-emits that refit's warnings alone,
    and ``effective_n_parameters_`` is MacKay's gamma at its MAP."""
    monkeypatch.setattr(evidence_module, "EVIDENCE_MARGIN", 0.1)
    seen = []

    def tagging(fit):
        seen.append(fit)
        package_warnings.warn(f"refit {len(seen) - 1}", _RefitTag)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = _iris_evidence_fit(monkeypatch, tagging)
    kept = [
        i
        for i, fit in enumerate(seen)
        if np.array_equal(np.asarray(fit.prior_precision), clf.prior_precision_)
    ]
    assert len(kept) == 1 and 0 < kept[0] < len(seen) - 1
    tags = [str(w.message) for w in caught if w.category is _RefitTag]
    assert tags == [f"refit {kept[0]}"]
    fit = seen[kept[0]]
    groups = weight_groups(fit.objective.layout, False)
    _, gammas = mackay_update(
        fit.posterior.covariance_diagonal(np), fit.theta, [clf.alpha_], groups
    )
    np.testing.assert_allclose(clf.effective_n_parameters_, gammas, rtol=1e-12)


def test_evidence_prefers_its_alpha_over_far_ones():
    X, y = _scaled(load_breast_cancer)
    clf = LaplaceMLPClassifier(
        (4,), alpha="evidence", prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    best = clf.log_marginal_likelihood(alpha=clf.alpha_)
    assert best == clf.log_marginal_likelihood_  # the stored value, at its prior
    # The prior-change path beside it (alpha moved by 1e-9: about 1e-9 nats).
    near = clf.log_marginal_likelihood(alpha=clf.alpha_ * (1 + 1e-9))
    np.testing.assert_allclose(near, best, rtol=1e-8)
    for factor in (1e-2, 1e-1, 10.0, 100.0):
        assert clf.log_marginal_likelihood(alpha=clf.alpha_ * factor) < best


def test_fixed_alpha_records_itself():
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier((3,), alpha=0.5, random_state=0).fit(X, y)
    assert clf.alpha_ == 0.5
    assert clf.alpha_history_ == [] and clf.effective_n_parameters_ is None


def test_evidence_at_a_per_parameter_alpha_uses_its_bias_entries():
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    n_params = clf.prior_precision_.shape[0]
    bias = np.zeros(n_params, bool)
    bias[4 * 4 : 4 * 4 + 4] = True
    bias[-3:] = True
    per_parameter = np.where(bias, 5.0, 1.0)
    np.testing.assert_allclose(
        clf.log_marginal_likelihood(alpha=per_parameter),
        clf.log_marginal_likelihood(alpha=1.0, bias_prior_precision=5.0),
        rtol=1e-12,
    )


def test_unconverged_evidence_keeps_the_alpha_of_its_last_refit(monkeypatch):
    from sklaplace import _evidence

    monkeypatch.setattr(_evidence, "EVIDENCE_MAX_UPDATES", 3)
    X, y = _scaled(load_iris)
    with pytest.warns(Warning, match="did not converge"):
        clf = LaplaceMLPClassifier((4,), alpha="evidence", random_state=0).fit(X, y)
    assert clf.alpha_ == clf.alpha_history_[-1][0]
    # Recomputed beside alpha_ (at it exactly, the stored value is returned).
    np.testing.assert_allclose(
        clf.log_marginal_likelihood(alpha=clf.alpha_ * (1 + 1e-9)),
        clf.log_marginal_likelihood_,
        rtol=1e-8,
    )


def test_pruned_estimator_has_no_evidence():
    from sklaplace import prune

    X, y = _scaled(load_iris)
    pruned = prune(LaplaceMLPClassifier((4,), random_state=0).fit(X, y), 0.5)
    with pytest.raises(ValueError, match="pruned"):
        pruned.log_marginal_likelihood()


def test_the_evidence_at_a_newly_flat_prior_is_its_limit_minus_infinity():
    """A flat parameter is left out of ``log det A``: at ``alpha=0`` that had
    given a finite value above every positive alpha's (a review: +25.9
    against -75 at the fitted alpha), which a grid from 0 then picked. The
    evidence falls without bound as alpha falls to 0; 0 gives that limit.
    A prior flat in the fit too keeps its value."""
    X, y = _scaled(load_breast_cancer)
    clf = LaplaceMLPClassifier(
        (4,),
        alpha=1.0,
        bias_prior_precision=0.5,
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X[:200], y[:200])
    curve = [clf.log_marginal_likelihood(alpha=a) for a in (1e-4, 1e-8, 1e-12)]
    assert curve[0] > curve[1] > curve[2]
    assert curve[1] - curve[2] > 0.5 * 60 * np.log(1e4) - 60  # W/2 log alpha
    assert clf.log_marginal_likelihood(alpha=0.0) == -np.inf
    assert clf.log_marginal_likelihood(bias_prior_precision=0.0) == -np.inf
    assert clf.log_marginal_likelihood(alpha=np.array([1.0, 0.0])) == -np.inf
    flat_biases = LaplaceMLPClassifier(
        (4,),
        alpha=1.0,
        bias_prior_precision=0.0,
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X[:200], y[:200])
    assert np.isfinite(flat_biases.log_marginal_likelihood(bias_prior_precision=0.0))
    assert np.isfinite(flat_biases.log_marginal_likelihood(alpha=0.5))


def test_the_fitted_prior_passed_explicitly_gives_the_stored_evidence():
    """On a nearly singular posterior (a flat bias prior, three classes, one
    of three rows) refactorising it at the same prior had moved the
    evidence by 0.7 nats (a review's probe): the fitted prior, however
    given, returns ``log_marginal_likelihood_``."""
    X, y = _scaled(load_iris)
    X, y = X[:103], y[:103]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LaplaceApproximationWarning)
        clf = LaplaceMLPClassifier(
            (4,),
            alpha=0.05,
            bias_prior_precision=0.0,
            solver="lbfgs",
            hessian_structure="full",
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
    stored = clf.log_marginal_likelihood_
    assert clf.log_marginal_likelihood(alpha=0.05) == stored
    assert (
        clf.log_marginal_likelihood(alpha=[0.05, 0.05], bias_prior_precision=0)
        == stored
    )
    assert clf.log_marginal_likelihood(alpha=0.06) != stored


def test_output_biases_made_flat_give_the_limit_and_made_proper_ask_for_a_refit():
    # Proper to flat is the evidence's limit as the bias precision falls to
    # 0, -inf (it had been refused with the other way until session 61);
    # flat to proper needs the posterior without the unit curvature it
    # gives the biases' shift under a flat prior: a refit.
    X, y = _scaled(load_iris)
    clf = LaplaceMLPClassifier((), bias_prior_precision=1.0, random_state=0).fit(X, y)
    assert clf.log_marginal_likelihood(bias_prior_precision=0.0) == -np.inf
    assert np.isfinite(clf.log_marginal_likelihood(bias_prior_precision=2.0))
    clf.set_params(bias_prior_precision=0.0).fit(X, y)
    with pytest.raises(ValueError, match="refit"):
        clf.log_marginal_likelihood(bias_prior_precision=1.0)


def _mackay_fixed_point(Phi, y, groups, tol=1e-12):
    """Iterate mackay_update on Bayesian linear regression, refitting exactly."""
    alphas = np.ones(len(groups))
    for _ in range(1000):
        prior = np.select(groups, alphas)
        _, w, P, _ = bayesian_linear_regression(prior, data=(Phi, y))
        new, gammas = mackay_update(np.diag(np.linalg.inv(P)), w, alphas, groups)
        if np.max(np.abs(np.log(new / alphas))) < tol:
            return new, gammas
        alphas = new
    raise AssertionError("MacKay's updates did not converge")


def test_mackay_fixed_point_maximises_the_closed_form_evidence():
    # For Bayesian linear regression the Laplace evidence is exact and the
    # MAP is refitted exactly, so MacKay's fixed point is the maximiser of
    # the closed-form log N(y | 0, noise^2 I + Phi A^{-1} Phi') over the two
    # groups' alphas (found here by Nelder-Mead, to 4e-8). Measured margin:
    # gamma without the alpha factor (W - tr P^{-1}) converges 0.3% away,
    # 3000x the 1e-6 tolerance.
    Phi, y = linear_regression_data(5, n=40, seed=7)
    Phi[:, :2] *= 3.0
    groups = [np.arange(5) < 2, np.arange(5) >= 2]
    alphas, _ = _mackay_fixed_point(Phi, y, groups)

    def negative_evidence(log_alphas):
        prior = np.select(groups, np.exp(log_alphas))
        return -bayesian_linear_regression(prior, data=(Phi, y))[3]

    best = scipy.optimize.minimize(
        negative_evidence,
        np.zeros(2),
        method="Nelder-Mead",
        options=dict(xatol=1e-10, fatol=1e-14, maxiter=4000),
    )
    np.testing.assert_allclose(alphas, np.exp(best.x), rtol=1e-6)


def test_mackay_gamma_is_the_eigenvalue_sum():
    # gamma = W - alpha tr(P^{-1}) equals sum_i l_i / (l_i + alpha) over the
    # eigenvalues l_i of the data term Phi' Phi / noise^2 (Bishop PRML 3.91):
    # a second formula that shares nothing with the first.
    Phi, y = linear_regression_data(4, n=25, seed=2)
    alpha = 1.7
    _, w, P, _ = bayesian_linear_regression(np.full(4, alpha), data=(Phi, y))
    groups = [np.ones(4, bool)]
    updated, gammas = mackay_update(
        np.diag(np.linalg.inv(P)), w, np.array([alpha]), groups
    )
    eigenvalues = np.linalg.eigvalsh(Phi.T @ Phi / 0.5**2)
    gamma = np.sum(eigenvalues / (eigenvalues + alpha))
    np.testing.assert_allclose(gammas, [gamma], rtol=1e-12)
    np.testing.assert_allclose(updated, [gamma / np.sum(w**2)], rtol=1e-12)


def test_a_negative_gamma_takes_the_em_update_with_the_same_fixed_point():
    """An indefinite data curvature can put the posterior's variance above
    the prior's (``gamma < 0``): MacKay's ``gamma / ||w||^2`` would be
    negative (it had been clipped to the lower bound); the EM form
    ``W / (||w||^2 + tr P^{-1})`` is used, whose fixed point is MacKay's."""
    theta = np.array([1.0, -1.0, 1.0, 1.0, 0.0])  # ||w||^2 = 4 on the group
    group = [np.array([True, True, True, True, False])]
    alpha = np.array([1.0])
    # Variances 2 (above the prior's 1/alpha): gamma = 4 - 8 = -4.
    updated, gammas = mackay_update(np.full(5, 2.0), theta, alpha, group)
    assert gammas[0] == -4.0
    assert updated[0] == pytest.approx(4 / (4 + 8), rel=1e-14)
    # Variances 0.5: gamma = 2 > 0, MacKay's own update 2 / 4.
    updated, gammas = mackay_update(np.full(5, 0.5), theta, alpha, group)
    assert (gammas[0], updated[0]) == (2.0, 0.5)
    # A fixed point of one form is a fixed point of the other: at alpha =
    # 0.8 with trace 1.0, gamma = 4 - 0.8 = 3.2 and 3.2 / 4 = 4 / (4 + 1).
    updated, _ = mackay_update(np.full(5, 0.25), theta, np.array([0.8]), group)
    assert updated[0] == pytest.approx(4 / (4 + 1.0), rel=1e-14) == 0.8
    # Negative by round-off only (a group the data do not reach): MacKay's.
    variance = np.full(5, 1.0 + 1e-12)
    updated, gammas = mackay_update(variance, theta, alpha, group)
    assert -1e-10 < gammas[0] < 0 and updated[0] < 1e-300


def test_mackay_update_keeps_the_alpha_of_an_empty_group():
    # Layer sizes 3 -> 2 -> 1: 8 first-layer and 3 second-layer parameters.
    layout = ParamLayout((3, 2, 1))
    rng = np.random.default_rng(0)
    theta = rng.normal(size=layout.n_params)
    variance = rng.uniform(0.01, 0.2, size=layout.n_params)
    alphas = np.array([2.0, 0.5])
    # Every output weight fixed (prune would also remove the dead units; this
    # is the bare update): that group is empty and keeps its alpha, and the
    # other is updated as if it were alone.
    fixed = ~layout.bias_mask() & (layout.layer_index() == 1)
    groups = weight_groups(layout, per_layer=True, fixed=fixed)
    assert not groups[1].any() and groups[0].sum() == 6
    updated, gammas = mackay_update(variance, theta, alphas, groups)
    assert updated[1] == alphas[1] and gammas[1] == 0.0
    alone, _ = mackay_update(variance, theta, alphas[:1], groups[:1])
    assert updated[0] == alone[0]


def _tune_linear_regression(Phi, y, groups):
    """tune_alpha on Bayesian linear regression, each refit exact."""
    fits = []

    def fit_laplace(alphas, theta):
        prior = np.select(groups, alphas)
        _, w, P, _ = bayesian_linear_regression(prior, data=(Phi, y))
        fits.append(
            SimpleNamespace(
                theta=w, posterior=P, prior_precision=prior, out_of_iterations=False
            )
        )
        return fits[-1]

    tuning = tune_alpha(
        fit_laplace,
        groups,
        np.zeros(Phi.shape[1]),
        lambda P: np.diag(np.linalg.inv(P)),
    )
    return tuning, fits


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_refit_without_a_finite_evidence_is_never_kept(bad):
    # The first refit's evidence is not finite, the others' equal: a NaN had
    # compared false and stayed kept, an inf had won.
    Phi, y = linear_regression_data(5, n=40, seed=7)
    fits = []

    def fit_laplace(alphas, theta):
        _, w, P, _ = bayesian_linear_regression(np.full(5, alphas[0]), data=(Phi, y))
        fits.append(SimpleNamespace(theta=w, posterior=P, out_of_iterations=False))
        return fits[-1]

    tuning = tune_alpha(
        fit_laplace,
        [np.ones(5, bool)],
        np.zeros(5),
        lambda P: np.diag(np.linalg.inv(P)),
        evidence=lambda fit: bad if fit is fits[0] else -1.0,
    )
    assert len(fits) > 2 and tuning.fit is fits[-1]


def test_tune_alpha_iterates_mackay_and_stops_at_the_first_small_step(monkeypatch):
    Phi, y = linear_regression_data(5, n=40, seed=7)
    Phi[:, :2] *= 3.0
    groups = [np.arange(5) < 2, np.arange(5) >= 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged, inside the bounds: silent
        tuning, fits = _tune_linear_regression(Phi, y, groups)
    history = tuning.history
    np.testing.assert_array_equal(history[0], np.ones(2))
    assert len(history) == len(fits) >= 3
    steps, last, extrapolated = [], None, 0
    for i, fit in enumerate(fits):
        np.testing.assert_array_equal(
            fit.prior_precision, np.select(groups, history[i])
        )
        covariance = np.diag(np.linalg.inv(fit.posterior))
        update, gammas = mackay_update(covariance, fit.theta, history[i], groups)
        step = np.log(update / history[i])
        steps.append(np.max(np.abs(step)))
        if i + 1 == len(history):
            break
        # Each next alpha is MacKay's update, or, after two plain steps the
        # same way shrinking by a ratio q < 0.9, Aitken's extrapolation of
        # them: log alpha + step q / (1 - q).
        expected = update
        if last is not None and np.all((step / last > 0) & (step / last < 0.9)):
            q = step / last
            expected = update * np.exp(step * q / (1 - q))
            extrapolated += 1
            last = None
        else:
            last = step
        np.testing.assert_allclose(history[i + 1], expected, rtol=1e-12)
    assert extrapolated >= 1
    # Stopped at the first step below the tolerance, and reports the alphas
    # (and gammas) of the last fit, not the update it did not make.
    assert steps[-1] < EVIDENCE_TOL <= min(steps[:-1])
    np.testing.assert_array_equal(tuning.alpha, history[-1])
    assert tuning.fit is fits[-1]
    np.testing.assert_array_equal(tuning.gammas, gammas)
    # The fixed point it approaches maximises the closed-form evidence
    # (test_mackay_fixed_point_maximises_the_closed_form_evidence).
    best, _ = _mackay_fixed_point(Phi, y, groups)
    np.testing.assert_allclose(tuning.alpha, best, rtol=1e-3)
    # Plain MacKay (no extrapolation) reaches the same point, in no fewer
    # refits (here, exact linear regression, as many; 7 against 5 on digits).
    monkeypatch.setattr(evidence_module, "AITKEN_MAX_RATIO", 0.0)
    plain, plain_fits = _tune_linear_regression(Phi, y, groups)
    assert len(plain_fits) >= len(fits)
    assert not np.array_equal(plain.history[2], history[2])  # it did extrapolate
    np.testing.assert_allclose(plain.alpha, best, rtol=1e-3)


@pytest.mark.parametrize("n_groups", [1, 2])
def test_tune_alpha_warns_at_a_bound(n_groups):
    # y = 0: the MAP is 0 and the evidence grows without limit with alpha.
    Phi, _ = linear_regression_data(4, n=20)
    groups = np.array_split(np.arange(4), n_groups)
    groups = [np.isin(np.arange(4), g) for g in groups]
    advice = "Prefer a fixed alpha" if n_groups == 1 else "alpha='evidence' or a"
    with pytest.warns(LaplaceApproximationWarning, match=advice):
        tuning, _ = _tune_linear_regression(Phi, np.zeros(20), groups)
    np.testing.assert_array_equal(tuning.alpha, EVIDENCE_BOUNDS[1])


def test_tune_alpha_keeps_the_last_fit_when_it_does_not_converge(monkeypatch):
    monkeypatch.setattr(evidence_module, "EVIDENCE_MAX_UPDATES", 2)
    Phi, y = linear_regression_data(5, n=40, seed=7)
    groups = [np.ones(5, bool)]
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 refits"):
        tuning, fits = _tune_linear_regression(Phi, y, groups)
    assert len(fits) == len(tuning.history) == 2
    np.testing.assert_array_equal(tuning.alpha, tuning.history[-1])
    assert tuning.fit is fits[-1]


def test_evidence_at_another_prior_from_scratch():
    # One weight and one bias (layout 1 -> 1): P = P_data + c A_old; the
    # evidence at A_new uses P_data + A_new, computed here by hand.
    layout = ParamLayout((1, 1))
    P_data = np.array([[3.0, 1.0], [1.0, 2.0]])
    old, scale = np.array([0.5, 0.25]), 4.0
    theta = np.array([0.7, -0.3])
    posterior = FullPosterior.from_precision(np, P_data + scale * np.diag(old))
    value = log_evidence_at_prior(layout, theta, -5.0, old, posterior, scale, alpha=2.0)
    new = np.array([2.0, 0.25])  # the bias keeps its precision
    expected = -5.0 - 0.5 * (
        np.linalg.slogdet(P_data + np.diag(new))[1]
        - np.sum(np.log(new))
        + np.sum(new * theta**2)
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    # The default posterior scale is 1 (the MAP's own prior).
    at_one = FullPosterior.from_precision(np, P_data + np.diag(old))
    np.testing.assert_allclose(
        log_evidence_at_prior(layout, theta, -5.0, old, at_one, alpha=2.0),
        expected,
        rtol=1e-12,
    )


def test_evidence_where_the_new_precision_is_not_positive_definite():
    # P_data = diag(1, -1) (an indefinite exact Hessian): with the old prior
    # (2, 2) the posterior is positive definite, with no prior it is not.
    layout = ParamLayout((1, 1))
    old = np.array([2.0, 2.0])
    posterior = FullPosterior.from_precision(np, np.diag([1.0, -1.0]) + np.diag(old))
    value = log_evidence_at_prior(
        layout,
        np.zeros(2),
        -1.0,
        old,
        posterior,
        1.0,
        alpha=0.0,
        bias_prior_precision=0.0,
    )
    assert value == -np.inf


def test_refits_on_the_way_to_alpha_do_not_repeat_their_warnings():
    # Each of MacKay's refits stops at max_iter=2 short of tol=1e-12; only
    # the kept (last) refit's ConvergenceWarning describes the fitted model,
    # once. (At the default tol the last warm-started refit may converge.)
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LaplaceMLPClassifier(
            (4,),
            solver="newton-cg",
            max_iter=2,
            tol=1e-12,
            alpha="evidence",
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
    solver = [w for w in caught if "Newton-CG solver" in str(w.message)]
    assert len(clf.alpha_history_) > 2  # several refits, each unconverged
    assert len(solver) == 1 and issubclass(solver[0].category, ConvergenceWarning)


def _fits_with_update(update, out_of_iterations=lambda index: False):
    """A ``fit_laplace`` whose refit at ``alpha`` has MacKay update ``update(alpha)``.

    Four weights with posterior variances ``1 / (2 alpha)`` (so ``gamma =
    2``) and all equal to ``s`` with ``1 / (2 s^2) = update(alpha)``;
    refit ``i`` (from 0) ran out of iterations if ``out_of_iterations(i)``.
    """
    fits = []

    def fit_laplace(alphas, theta):
        alpha = float(alphas[0])
        s = np.sqrt(0.5 / update(alpha))
        fits.append(
            SimpleNamespace(
                theta=np.full(4, s),
                posterior=np.full(4, 0.5 / alpha),
                prior_precision=np.full(4, alpha),
                out_of_iterations=out_of_iterations(len(fits)),
            )
        )
        return fits[-1]

    return fits, fit_laplace


def _three_cycle(alpha):
    """A MacKay update map with a 3-cycle: alpha -> 3 below 2.5, 4 below 3.5,
    else 2 (refits that land in other basins make the map jump)."""
    return 3.0 if alpha < 2.5 else 4.0 if alpha < 3.5 else 2.0


def test_tune_alpha_stops_when_the_refits_cycle():
    # Refits that land in other basins make the update map jump: here
    # alpha -> 3 below 2.5, 4 below 3.5, else 2, a 3-cycle. From alpha = 1:
    # plain steps 1 -> 3 -> 4 shrink (log 3, log 4/3), so Aitken extrapolates
    # to 4.43; its update, 2, is a larger step than the one it extrapolated
    # (0.80 > 0.29), so the updates stay plain from then on: 2, 3, 4, 2, ...
    # The smallest step (log 4/3, at the second refit) is not beaten in the
    # next EVIDENCE_PATIENCE refits, and the loop stops there, not after 50.
    fits, fit_laplace = _fits_with_update(_three_cycle)
    with pytest.warns(ConvergenceWarning, match="no smaller step in 10 refits"):
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    history = [float(a[0]) for a in tuning.history]
    assert len(fits) == len(history) == 2 + evidence_module.EVIDENCE_PATIENCE
    np.testing.assert_allclose(history[:2], [1.0, 3.0])
    q = np.log(4 / 3) / np.log(3)
    np.testing.assert_allclose(history[2], 4 * np.exp(np.log(4 / 3) * q / (1 - q)))
    # plain after it (to round-off: the update is recovered from theta)
    np.testing.assert_allclose(history[3:], [_three_cycle(a) for a in history[2:-1]])
    assert tuning.fit is fits[-1] and tuning.alpha[0] == history[-1]


def test_a_cycle_found_at_the_last_refit_is_named_a_cycle(monkeypatch):
    # The 3-cycle above, with the refits capped where the cycle rule fires:
    # the warning names the cycle, not the cap.
    monkeypatch.setattr(
        evidence_module, "EVIDENCE_MAX_UPDATES", 2 + evidence_module.EVIDENCE_PATIENCE
    )
    fits, fit_laplace = _fits_with_update(
        lambda a: 3.0 if a < 2.5 else 4.0 if a < 3.5 else 2.0
    )
    with pytest.warns(ConvergenceWarning, match="no smaller step in 10 refits"):
        tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == evidence_module.EVIDENCE_MAX_UPDATES


def test_tune_alpha_stops_quietly_when_the_refits_settle():
    # At ReLU kinks each refit's MAP moves a little, so the updates jitter
    # below 1% of alpha instead of shrinking to EVIDENCE_TOL: steps of
    # 0.004, 0.006, 0.008, 0.009 (alternating in sign, so never Aitken's)
    # after the first. The smallest is not beaten in EVIDENCE_SETTLED_REFITS
    # refits and all of them are below EVIDENCE_SETTLED: settled, no warning,
    # the last refit kept -- where the cycle rule would have run 10 refits
    # more and warned.
    logs = np.cumsum([0.0, np.log(2.0), -0.004, 0.006, -0.008, 0.009, -0.009])
    script = np.exp(logs)

    def update(alpha):
        k = int(np.argmin(np.abs(np.log(script) - np.log(alpha))))
        assert np.isclose(script[k], alpha, rtol=1e-9)  # only scripted alphas
        return script[k + 1]

    fits, fit_laplace = _fits_with_update(update)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 2 + evidence_module.EVIDENCE_SETTLED_REFITS == 5
    np.testing.assert_allclose([a[0] for a in tuning.history], script[:5])
    assert tuning.fit is fits[-1] and tuning.alpha[0] == tuning.history[-1][0]
    # Steps of 2% that stop shrinking have not settled: the cycle rule, and
    # its warning, still apply.
    wide = np.exp(np.cumsum([0.0, np.log(2.0)] + [0.02, -0.02] * 10))

    def wide_update(alpha):
        k = int(np.argmin(np.abs(np.log(wide) - np.log(alpha))))
        return wide[k + 1]

    fits, fit_laplace = _fits_with_update(wide_update)
    with pytest.warns(ConvergenceWarning, match="the refits cycle"):
        tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)


def test_tune_alpha_lets_a_steady_march_go_on():
    # alpha -> alpha / 2 at every refit: steps of one size (no new low after
    # the first) but every alpha new, beyond the range of the ones before; not
    # a cycle, so the updates go on past EVIDENCE_PATIENCE refits, to the
    # lower bound (1e-6 after 20 halvings), where the bound's warning says so.
    fits, fit_laplace = _fits_with_update(lambda alpha: alpha / 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 21 > 2 + evidence_module.EVIDENCE_PATIENCE
    assert tuning.alpha[0] == EVIDENCE_BOUNDS[0]
    assert [w.category for w in caught] == [LaplaceApproximationWarning]


def test_tune_alpha_stops_after_patience_refits_out_of_iterations():
    # The march above, but every refit runs out of iterations short of its
    # MAP (as on features x1e4): the updates stop after EVIDENCE_PATIENCE
    # refits in a row, and say why.
    fits, fit_laplace = _fits_with_update(lambda a: a / 2, lambda index: True)
    with pytest.warns(
        ConvergenceWarning, match="last 10 refits ran out of iterations"
    ) as w:
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == evidence_module.EVIDENCE_PATIENCE == 10
    assert "Standardise the features, increase max_iter" in str(w[0].message)
    assert tuning.fit is fits[-1]
    # A refit that does not (it converged, or stalled at a ReLU kink, as near
    # its MAP as the solvers get) restarts the count: with every ninth one
    # so (never ten in a row) the march goes on to the bound.
    fits, fit_laplace = _fits_with_update(lambda a: a / 2, lambda i: i % 9 != 8)
    with pytest.warns(LaplaceApproximationWarning):
        tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 21


def test_a_network_that_ignores_its_input_ends_the_evidence_updates():
    # No feature varies: the hidden units carry nothing and the Laplace
    # evidence is flat in alpha; the updates tossed alpha about (0.74 and
    # 1.72 in turn) until the cycle rule gave up with a warning. A network
    # that ignores its input sits where its weights' gradient vanishes, so
    # no refit can leave it: each run stops at its first fit, converged; the
    # only warning is that the fit predicts the base rate.
    X = np.ones((100, 3))
    y = np.r_[np.zeros(70), np.ones(30)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LaplaceMLPClassifier((16,), random_state=0).fit(X, y)
    assert [w.category for w in caught] == [BaseRateWarning]
    assert len(clf.alpha_history_) == 1
    np.testing.assert_allclose(clf.predict_proba(X[:1]), [[0.7, 0.3]], atol=0.01)


def test_tune_alpha_stops_at_a_collapsed_fit():
    # A scripted run whose updates would move on: the second fit is
    # collapsed, so the run stops there, converged (no warning).
    fits = []

    def fit_laplace(alphas, theta):
        fits.append(float(alphas[0]))
        return SimpleNamespace(
            theta=np.full(2, float(len(fits))),  # every update moves alpha
            posterior=np.full(2, 0.5 / alphas[0]),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=False,
            collapsed=len(fits) == 2,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuning = tune_alpha(
            fit_laplace,
            [np.ones(2, dtype=bool)],
            np.ones(2),
            lambda posterior: posterior,
            start=1.0,
            evidence=lambda fit: 0.0,
            collapsed=lambda fit: fit.collapsed,
        )
    assert len(fits) == 2 and len(tuning.history) == 2


def test_default_arguments_give_the_fitted_evidence_on_a_nearly_singular_fit():
    # alpha=0 on a ReLU net: the posterior is nearly singular (fit warns);
    # refactorising it had given -inf where the fit's evidence is finite.
    X, y = make_classification(
        120,
        5,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (1,),
            activation="relu",
            alpha=0.0,
            prior_precision_scale=1.0,
            max_iter=100,
            random_state=0,
        ).fit(X, y)
    assert np.isfinite(clf.log_marginal_likelihood_)
    assert clf.log_marginal_likelihood() == clf.log_marginal_likelihood_


def test_the_evidence_run_of_larger_evidence_is_kept(monkeypatch):
    # Labels independent of the features: from alpha = 1 MacKay's refits
    # settle in a basin that fits the noise (log evidence about -314), from
    # 100 in one whose network ignores its input (about -210), from 10 at
    # alpha 10.5 in one nearly constant (about -213, 28 nats above the run
    # from 100's once its equivalent modes are counted, as the fit counts
    # them). The default keeps the run from 10, at alphas above the run from
    # 1's and of clearly larger evidence, and is that run's fit exactly.
    import sklaplace._fitting as fitting_module

    rng = np.random.RandomState(0)
    X, y = rng.randn(300, 10), rng.randint(0, 2, 300)
    X_new, y_new = rng.randn(4000, 10), rng.randint(0, 2, 4000)
    params = dict(hidden_layer_sizes=(16,), prior_precision_scale=1.0, random_state=0)
    single = {}
    with warnings.catch_warnings():
        # Where the network is nearly constant the evidence is flat in alpha:
        # the updates wander (and say so).
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Each run alone (a run that collapses alone makes no run from 0.1).
        monkeypatch.setattr(fitting_module, "every_run_collapsed", lambda t: False)
        for start in (1.0, 10.0, 100.0):
            monkeypatch.setattr(fitting_module, "EVIDENCE_STARTS", (start,))
            single[start] = LaplaceMLPClassifier(**params).fit(X, y)
        monkeypatch.undo()
        every = LaplaceMLPClassifier(**params).fit(X, y)
    evidence = {start: clf.log_marginal_likelihood_ for start, clf in single.items()}
    modes = log_equivalent_modes((10, 16, 1), "elu")
    assert evidence[100.0] > evidence[1.0] + 50
    assert evidence[10.0] < evidence[100.0] < evidence[10.0] + modes - 20
    kept = single[10.0]
    assert every.log_marginal_likelihood_ == evidence[10.0]
    assert every.alpha_history_ == kept.alpha_history_
    np.testing.assert_array_equal(every.predict_proba(X), kept.predict_proba(X))
    # Every run's refits count in n_iter_.
    assert every.n_iter_ == sum(clf.n_iter_ for clf in single.values())
    # The noise-fitting run is confident on its training rows and loses on
    # fresh ones (0.83 a row); the kept one is within 0.02 of the base rate
    # (0.714 against 0.700; the run from 100 predicts it).
    fresh = {t: log_loss(y_new, clf.predict_proba(X_new)) for t, clf in single.items()}
    base_rate = log_loss(y_new, np.full(len(y_new), y.mean()))
    kept_fresh = log_loss(y_new, every.predict_proba(X_new))
    assert np.abs(single[1.0].predict_proba(X)[:, 1] - y.mean()).max() > 0.3
    assert fresh[1.0] > base_rate + 0.1 and kept_fresh < fresh[1.0] - 0.1
    assert abs(fresh[100.0] - base_rate) < 1e-3 and kept_fresh - base_rate < 0.02


def test_on_noisy_labels_the_run_from_10_is_kept_and_fresh_rows_agree(monkeypatch):
    """30% of the labels flipped, 300 rows, hidden (16,): of MacKay's runs
    from 1 and 100 the evidence keeps one settled at alpha 2.2, fitting much
    of the noise; the first fit from 10 has a clearly larger evidence at a
    larger alpha and is kept (its own updates lead back down). On 4,700
    fresh rows its log loss is 0.486 against 0.510 for the fit with the
    starts 1 and 100 only, more than three paired standard errors apart."""
    import sklaplace._fitting as fitting_module

    X, y = make_classification(5000, 10, flip_y=0.3, random_state=0)
    X, X_new, y, y_new = X[:300], X[300:], y[:300], y[300:]
    clf = LaplaceMLPClassifier((16,), random_state=0).fit(X, y)
    assert clf.alpha_history_[0][0] == clf.alpha_ == 10.0
    monkeypatch.setattr(fitting_module, "EVIDENCE_STARTS", (1.0, 100.0))
    two = LaplaceMLPClassifier((16,), random_state=0).fit(X, y)
    assert two.alpha_ < 5.0
    assert two.log_marginal_likelihood_ < clf.log_marginal_likelihood_ - EVIDENCE_MARGIN

    def row_losses(model):
        proba = model.predict_proba(X_new)[np.arange(len(y_new)), y_new]
        return -np.log(proba)

    gain = row_losses(two) - row_losses(clf)
    assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(len(gain))


def test_the_run_from_1_is_kept_unless_another_has_clearly_larger_evidence(
    monkeypatch,
):
    """Breast cancer (issue 14's split 0, hidden (16,)): the runs from alpha
    = 10 and 100 end 0.58 and 0.87 nats above the run from 1, within the
    Laplace approximation's error (``EVIDENCE_MARGIN``, 3 nats), so the
    default keeps the run from 1 (on the protocol's five splits its test log
    loss was 0.0962 against the run from 100's 0.0988). Both settle at
    alphas a little below the run from 1's (1.17 and 1.20 against 1.22), so
    neither would be kept without the margin either (kept_run); at the run
    from 1's alpha the margin alone decides."""
    import sklaplace._fitting as fitting_module

    X, y = load_breast_cancer(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    X = StandardScaler().fit_transform(X)
    params = dict(hidden_layer_sizes=(16,), prior_precision_scale=1.0, random_state=0)
    single = {}
    for start in (1.0, 10.0, 100.0):
        monkeypatch.setattr(fitting_module, "EVIDENCE_STARTS", (start,))
        single[start] = LaplaceMLPClassifier(**params).fit(X, y)
    monkeypatch.undo()
    for start in (10.0, 100.0):
        gap = (
            single[start].log_marginal_likelihood_
            - single[1.0].log_marginal_likelihood_
        )
        assert 0.5 < gap < evidence_module.EVIDENCE_MARGIN
        assert abs(single[start].alpha_ - single[1.0].alpha_) > 1e-3  # two fits
    ranked = []  # the runs the evidence ranks, as the fit passes them

    def spy(tunings, collapsed=None):
        ranked.append(tunings)
        return kept_run(tunings, collapsed)

    monkeypatch.setattr(fitting_module, "kept_run", spy)
    both = LaplaceMLPClassifier(**params).fit(X, y)
    kept = single[1.0]
    assert both.alpha_history_ == kept.alpha_history_
    assert both.log_marginal_likelihood_ == kept.log_marginal_likelihood_
    np.testing.assert_array_equal(both.predict_proba(X), kept.predict_proba(X))
    # Without the margin the same two runs rank the other way. (Not a refit
    # with EVIDENCE_MARGIN = 0: within each run the margin also decides
    # which refit is kept, and that changed the runs with some BLAS kernels.)
    (runs,) = ranked
    assert [float(run.history[0][0]) for run in runs] == [1.0, 10.0, 100.0]
    assert kept_run(runs) == 0
    assert runs[1].alpha < runs[0].alpha and runs[2].alpha < runs[0].alpha
    # At the run from 1's alpha the run from 100 would stay behind the
    # margin, and lead without it.
    level = [runs[0], runs[2]._replace(alpha=runs[0].alpha)]
    assert kept_run(level) == 0
    monkeypatch.setattr(evidence_module, "EVIDENCE_MARGIN", 0.0)
    assert kept_run(runs) == 0 and kept_run(level) == 1


@pytest.mark.parametrize(
    "layer_sizes, activation, modes",
    [
        ((4, 3, 2), "tanh", 3 * 2 * 1 * 2**3),
        ((4, 3, 2), "logistic", 3 * 2 * 1 * 2**3),
        ((4, 3, 2), "relu", 3 * 2 * 1),
        ((4, 3, 2), "elu", 3 * 2 * 1),
        ((4, 3, 2), "softplus", 3 * 2 * 1),
        ((4, 3, 2), "identity", 1),
        ((5, 4, 2, 1), "relu", (4 * 3 * 2) * 2),
        ((5, 4, 2, 1), "tanh", (4 * 3 * 2 * 2**4) * (2 * 2**2)),
        ((5, 1), "tanh", 1),
    ],
)
def test_log_equivalent_modes_counts_unit_orders_and_sign_flips(
    layer_sizes, activation, modes
):
    assert log_equivalent_modes(layer_sizes, activation) == (
        pytest.approx(np.log(modes), rel=1e-12)
    )


def test_a_collapsed_run_loses_to_a_fitted_one_within_the_fitted_runs_modes(
    monkeypatch,
):
    """On a weak, imbalanced signal MacKay's run from alpha = 100 ends in a
    network that ignores its input (the base rate), with a Laplace evidence
    5.8 nats above the fixed point of the run from 1, which fits the signal.
    The fitted network's posterior has 8! equivalent modes (10.6 nats: ELU
    has no sign flips) where the Laplace evidence counts one, the collapsed
    one's one: of those two runs the fitted one is kept. The run from 10
    fits the signal too, 10 nats above the run from 1 at a larger alpha,
    and the default keeps it."""
    import sklaplace._fitting as fitting_module

    X, y = make_classification(
        2000, 10, n_informative=4, weights=[0.95, 0.05], random_state=0
    )
    X, y = StandardScaler().fit_transform(X[:400]), y[:400]
    params = dict(hidden_layer_sizes=(8,), prior_precision_scale=1.0, random_state=1)
    single, ranked = {}, []

    def spy(tunings, collapsed=None):
        ranked.append((tunings, collapsed))
        return kept_run(tunings, collapsed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Each run alone (a run that collapses alone makes no run from 0.1).
        monkeypatch.setattr(fitting_module, "every_run_collapsed", lambda t: False)
        for start in (1.0, 10.0, 100.0):
            monkeypatch.setattr(fitting_module, "EVIDENCE_STARTS", (start,))
            single[start] = LaplaceMLPClassifier(**params).fit(X, y)
        monkeypatch.undo()
        monkeypatch.setattr(fitting_module, "kept_run", spy)
        every = LaplaceMLPClassifier(**params).fit(X, y)
    collapsed = single[100.0]
    assert np.ptp(collapsed.predict_proba(X)[:, 1]) <= 1e-6
    for fitted in (single[1.0], single[10.0]):
        assert np.ptp(fitted.predict_proba(X)[:, 1]) > 0.5
    evidence = {t: clf.log_marginal_likelihood_ for t, clf in single.items()}
    gap = evidence[100.0] - evidence[1.0]
    assert EVIDENCE_MARGIN < gap < log_equivalent_modes((10, 8, 1), "elu")
    (tunings, is_collapsed), *_ = ranked
    assert kept_run(tunings[::2], is_collapsed) == 0  # the modes decide
    assert evidence[10.0] > evidence[1.0] + EVIDENCE_MARGIN
    assert single[10.0].alpha_ > single[1.0].alpha_
    assert every.alpha_history_ == single[10.0].alpha_history_
    np.testing.assert_array_equal(every.predict_proba(X), single[10.0].predict_proba(X))


@pytest.mark.slow
def test_the_default_learns_an_imbalanced_signal_instead_of_the_base_rate():
    """The user-facing failure the modes fix: on 420 training rows with 5%
    positives the default (hidden (100,)) predicted the base rate (test log
    loss 0.2146, the base rate's own), its collapsed run from alpha = 100
    having the larger Laplace evidence; it now gives 0.092."""
    X, y = make_classification(
        600, 10, n_informative=4, weights=[0.95, 0.05], random_state=0
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(random_state=0).fit(
            scaler.transform(X_train), y_train
        )
    proba = clf.predict_proba(scaler.transform(X_test))
    base_rate = np.tile([1 - y_train.mean(), y_train.mean()], (len(y_test), 1))
    assert log_loss(y_test, proba) < 0.75 * log_loss(y_test, base_rate)


#: Two groups of two weights each (per-layer alphas of a scripted fit).
TWO_GROUPS = [np.arange(4) < 2, np.arange(4) >= 2]


def _two_group_fits(update):
    """A ``fit_laplace`` on :data:`TWO_GROUPS` with MacKay update ``update``.

    ``update(alphas) -> alphas``: posterior variances ``1 / (2 alpha)``
    (``gamma = 1`` per group) and weights ``s`` with ``1 / (2 s^2)`` the
    update. Returns the list the refits' alphas are appended to, and the
    function.
    """
    refits = []

    def fit_laplace(alphas, theta):
        target = update(alphas)
        refits.append(np.array(alphas, dtype=float))
        return SimpleNamespace(
            theta=np.repeat(np.sqrt(0.5 / target), 2),
            posterior=np.repeat(0.5 / alphas, 2),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=False,
        )

    return refits, fit_laplace


def test_tune_alpha_extrapolates_each_group_that_converges_linearly():
    # Two groups (per layer): the first's updates oscillate towards 2
    # (ratio -0.1, never Aitken's), the second's creep towards 5 (ratio
    # 0.8: plain updates would need over 30 refits to a step below
    # EVIDENCE_TOL). Aitken's extrapolation is exact for a map linear in
    # log alpha, so extrapolating the second group alone ends the loop
    # within a few refits, at both fixed points.
    def update(log_alpha):
        return np.array(
            [
                np.log(2.0) - 0.1 * (log_alpha[0] - np.log(2.0)),
                np.log(5.0) + 0.8 * (log_alpha[1] - np.log(5.0)),
            ]
        )

    refits, fit_laplace = _two_group_fits(lambda a: np.exp(update(np.log(a))))
    tuning = tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    assert len(refits) <= 8
    np.testing.assert_allclose(tuning.alpha, [2.0, 5.0], rtol=1e-3)


def _log_linear(fixed_point, ratio):
    """A MacKay update linear in log alpha, its steps shrinking by ``ratio``."""
    return lambda a: fixed_point * (a / fixed_point) ** ratio


def _nearly_log_linear(fixed_point):
    """Steps shrinking by about one half, not exactly (Aitken is not exact)."""

    def update(a):
        x = np.log(a / fixed_point)
        return fixed_point * np.exp(0.5 * x + 0.3 * x**2)

    return update


def _extrapolated(history, update, group):
    """Refits whose alpha (of ``group``) is not the plain update of the last."""
    return [
        i
        for i in range(1, len(history))
        if not np.isclose(history[i][group], update(history[i - 1][group]), rtol=1e-12)
    ]


@pytest.mark.parametrize("ratio, extrapolated", [(0.85, True), (0.95, False)])
def test_aitken_extrapolates_steps_that_shrink_by_less_than_0_9(ratio, extrapolated):
    # Two plain steps shrinking by 0.85 are extrapolated: exact for a map
    # linear in log alpha, the third alpha is the fixed point 5. At 0.95
    # (too close to 1 for Aitken to be safe) the third is the plain update.
    update = _log_linear(5.0, ratio)
    fits, fit_laplace = _fits_with_update(update)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 0.95 is slow
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    history = [float(a[0]) for a in tuning.history]
    np.testing.assert_allclose(history[1], update(1.0), rtol=1e-12)
    expected = 5.0 if extrapolated else update(history[1])
    np.testing.assert_allclose(history[2], expected, rtol=1e-9)


def test_an_overshooting_group_stops_only_its_own_extrapolation():
    # Group 0 runs the 3-cycle of test_tune_alpha_stops_when_the_refits_cycle
    # (extrapolated at the third refit, then overshoots); group 1 converges
    # nearly linearly and is still extrapolated after group 0 has stopped.
    def cycle(a):
        return 3.0 if a < 2.5 else 4.0 if a < 3.5 else 2.0

    smooth = _nearly_log_linear(5.0)
    refits, fit_laplace = _two_group_fits(
        lambda a: np.array([cycle(a[0]), smooth(a[1])])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # group 0 cycles
        tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    assert _extrapolated(refits, cycle, 0) == [2]
    assert any(i > 3 for i in _extrapolated(refits, smooth, 1))


def test_a_group_pinned_at_a_bound_does_not_delay_another_groups_extrapolation():
    # Group 0 jumps to the upper bound and stays: its steps are exactly 0,
    # no linear convergence to extrapolate. Group 1 jumps from 1 to 10, then
    # converges to 5 by a ratio of 0.5 in log alpha: its first step back
    # turns, the next shrinks by 0.5, so its fourth alpha is Aitken's, 5.
    half_way = _log_linear(5.0, 0.5)
    refits, fit_laplace = _two_group_fits(
        lambda a: np.array([1e7, 10.0 if a[1] < 1.5 else half_way(a[1])])
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    refits = np.array(refits)
    np.testing.assert_allclose(refits[1:, 0], EVIDENCE_BOUNDS[1])
    np.testing.assert_allclose(refits[:3, 1], [1.0, 10.0, 10 * np.sqrt(0.5)])
    np.testing.assert_allclose(refits[3, 1], 5.0, rtol=1e-9)
    assert len(refits) == 4  # its update there is 5 itself: converged
    # One group at a bound is enough for the bound's warning.
    assert any(w.category is LaplaceApproximationWarning for w in caught)


def _scripted_steps(steps):
    """Run the updates along ``alpha = exp(cumsum(steps))`` until they settle
    (no warning); return the script, the fits and the tuning."""
    script = np.exp(np.cumsum([0.0, *steps]))

    def update(alpha):
        k = int(np.argmin(np.abs(np.log(script / alpha))))
        return script[k + 1]

    fits, fit_laplace = _fits_with_update(update)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # settled: no warning
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    return script, fits, tuning


def test_a_steady_march_of_small_steps_has_not_settled():
    """Steps of 0.8%, all the same way and not shrinking (no Aitken), are
    small and set no new low, yet alpha marches on: the last four refits'
    alphas span 2.4%, beyond the 1% band of a jitter, so the updates go on
    and warn when they give up (per layer, a march carried on by Aitken's
    jumps had settled quietly, and each warm refit moved alpha further)."""
    fits, fit_laplace = _fits_with_update(lambda alpha: alpha * np.exp(0.008))
    with pytest.warns(ConvergenceWarning, match="in 50 refits"):
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == evidence_module.EVIDENCE_MAX_UPDATES
    assert tuning.fixed_point is None


def test_settled_needs_the_last_four_steps_below_one_percent():
    # Steps after the first: 0.005 (the smallest), 0.02, 0.008, 0.009,
    # 0.007, 0.006, alternating in sign (never Aitken's). The updates have
    # settled once the last four steps are all below 1% (EVIDENCE_SETTLED_
    # REFITS): five refits after the smallest, at the seventh fit, not at
    # the sixth (whose last four steps include the 2% one).
    steps = [np.log(2.0), -0.005, 0.02, -0.008, 0.009, -0.007, 0.006, -0.0065]
    script, fits, tuning = _scripted_steps(steps)
    assert len(fits) == 7
    np.testing.assert_allclose([a[0] for a in tuning.history], script[:7])


def test_settled_needs_no_new_low_in_the_last_settled_refits():
    # Steps after the first: 0.008, then 0.005 (a new low), 0.007, 0.006,
    # 0.0065, alternating in sign (never Aitken's). From the fifth fit on the
    # last four steps are all below 1%, but there the low is only two refits
    # old: settled only when it is EVIDENCE_SETTLED_REFITS (3) refits old, at
    # the sixth fit (``since_smallest >= EVIDENCE_SETTLED_REFITS - 1`` had
    # stopped at the fifth: the window test above cannot tell them apart).
    steps = [np.log(2.0), -0.008, 0.005, -0.007, 0.006, -0.0065, 0.0062, -0.0063]
    script, fits, tuning = _scripted_steps(steps)
    assert evidence_module.EVIDENCE_SETTLED_REFITS == 3
    assert len(fits) == 6
    np.testing.assert_allclose([a[0] for a in tuning.history], script[:6])


def test_two_plain_steps_follow_each_extrapolation():
    # An extrapolation needs two new plain steps: the step before it must
    # not pair with the one after it, so no two refits in a row are
    # extrapolated.
    update = _nearly_log_linear(5.0)
    refits, fit_laplace = _two_group_fits(lambda a: update(np.asarray(a)))
    tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    index = _extrapolated(refits, update, 0)
    assert len(index) >= 2 and np.all(np.diff(index) >= 2), index


def test_a_group_not_extrapolated_is_not_judged_to_overshoot():
    # Group 0 takes scripted steps 1 -> 2 -> 1.8 -> 3 (no steady ratio), then
    # converges to 4; group 1 converges to 5 and is extrapolated at the
    # third refit, when group 0's step was plain. Group 0's next step is
    # larger, but it was not extrapolated, so that is no overshoot: it is
    # extrapolated later, once it converges linearly.
    smooth0, smooth1 = _nearly_log_linear(4.0), _nearly_log_linear(5.0)

    def group0(a):
        for before, after in ((1.0, 2.0), (2.0, 1.8), (1.8, 3.0)):
            if np.isclose(a, before, rtol=1e-12):
                return after
        return smooth0(a)

    refits, fit_laplace = _two_group_fits(
        lambda a: np.array([group0(a[0]), smooth1(a[1])])
    )
    tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    assert _extrapolated(refits, smooth1, 1)[0] == 2
    assert any(i > 3 for i in _extrapolated(refits, group0, 0))


def test_a_per_layer_warm_refit_resumes_the_evidence_from_its_alphas():
    # One run, from the fitted per-layer alphas (not from each of
    # EVIDENCE_STARTS).
    # (Per layer both runs march apart after their best refit, and say so.)
    X, y = make_moons(300, noise=0.3, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier(
        (4,), alpha="evidence_per_layer", prior_precision_scale=1.0, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="spread apart"):
        clf.fit(X, y)
    start = np.array(clf.alpha_, dtype=float)
    assert start.shape == (2,) and abs(np.log(start[1] / start[0])) > 1.0
    with pytest.warns(ConvergenceWarning, match="spread apart"):
        clf.set_params(warm_start=True).fit(X, y)
    np.testing.assert_allclose(clf.alpha_history_[0], start, rtol=1e-12)


def test_clearly_larger_means_by_more_than_the_margin_of_three_nats():
    # A lead of 3.5 nats is clear, one of exactly 3 or 2.9 is not (a margin
    # of 6, 2 ln B > 6 mistaken for ln B, would refuse 3.5).
    assert clearly_larger(-100.0 + 3.5, -100.0)
    assert not clearly_larger(-100.0 + 3.0, -100.0)
    assert not clearly_larger(-100.0 + 2.9, -100.0)


def test_a_negative_gamma_within_round_off_of_the_groups_size_takes_mackays_update():
    # gamma = 4 - 4 (1 + 5e-9) = -2e-8 lies above -1e-8 * 4, round-off for a
    # group of four weights: MacKay's update (to about 0), not the EM form
    # (0.5), which a tolerance not scaled by the group's size would take.
    theta = np.array([1.0, -1.0, 1.0, 1.0, 0.0])
    group = [np.array([True, True, True, True, False])]
    updated, gammas = mackay_update(
        np.full(5, 1.0 + 5e-9), theta, np.array([1.0]), group
    )
    assert -4e-8 < gammas[0] < -1e-8
    assert updated[0] < 1e-300


def test_the_exact_posteriors_own_jitter_is_reported(monkeypatch):
    """Alpha is tuned on the GGN, the exact posterior built after: its
    jitter, not the tuning fit's, is ``posterior_jitter_``."""
    import sklaplace._fitting as fitting_module

    original = fitting_module.laplace_posterior

    def tagged(objective, theta, hessian, *args, **kwargs):
        posterior, curvature, jitter = original(
            objective, theta, hessian, *args, **kwargs
        )
        return posterior, curvature, (1.25e-9 if hessian == "exact" else jitter)

    monkeypatch.setattr(fitting_module, "laplace_posterior", tagged)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (4,),
            hessian="exact",
            alpha="evidence",
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
    assert clf.posterior_jitter_ == 1.25e-9


def _pruned_breast_cancer_fit():
    from sklaplace import prune

    X, y = load_breast_cancer(return_X_y=True)
    X, y = StandardScaler().fit_transform(X)[:200], y[:200]
    params = dict(alpha=1.0, prior_precision_scale=1.0, random_state=0)
    clf = LaplaceMLPClassifier((4,), **params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prune(clf, 0.3).set_params(warm_start=True).fit(X, y)


def test_the_evidence_of_a_pruned_model_at_flat_priors():
    """Flat biases are newly flat free parameters: ``-inf``. A flat prior on
    the pruned weights alone changes nothing: they are held at zero, not
    priced by the prior."""
    clf = _pruned_breast_cancer_fit()
    assert clf.pruned_mask_.any()
    assert clf.log_marginal_likelihood(bias_prior_precision=0.0) == -np.inf
    pruned_flat = np.where(clf.pruned_mask_, 0.0, clf.prior_precision_)
    assert clf.log_marginal_likelihood(alpha=pruned_flat) == pytest.approx(
        clf.log_marginal_likelihood_, rel=1e-10
    )


def test_the_fitted_prior_gives_the_stored_evidence_at_a_prior_scale():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier(
        (4,), alpha=0.5, prior_precision_scale=0.3, random_state=0
    ).fit(X, y)
    assert clf.log_marginal_likelihood(alpha=0.5) == clf.log_marginal_likelihood_
    assert clf.log_marginal_likelihood(alpha=[0.5, 0.5]) == (
        clf.log_marginal_likelihood_
    )


@pytest.mark.parametrize("short_of_its_map", [False, True])
def test_a_refit_kept_short_of_its_map_is_resumed_at_its_alpha(short_of_its_map):
    """A scripted run: the first refit's evidence is 6 nats above the last
    (the fixed point, alpha 2), so it is kept. Where ``max_iter`` stopped it
    short of its MAP (where the Laplace evidence and posterior do not hold;
    a default fit on 350 rows had kept such a refit and re-emitted its
    solver's ``ConvergenceWarning``) it is resumed from its weights at its
    alpha, and that refit is kept."""
    fits = []

    def fit_laplace(alphas, theta):
        fits.append((float(alphas[0]), float(theta[0])))
        return SimpleNamespace(  # MacKay's update gives 2 from any alpha
            theta=np.full(2, np.sqrt(0.25)),
            posterior=np.full(2, 0.5 / alphas[0]),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=short_of_its_map and len(fits) == 1,
            index=len(fits) - 1,
        )

    tuning = tune_alpha(
        fit_laplace,
        [np.ones(2, dtype=bool)],
        np.full(2, 3.0),
        lambda posterior: posterior,
        start=1.0,
        evidence=lambda fit: [-10.0, -16.0, -9.0][fit.index],
    )
    if short_of_its_map:
        assert fits == [(1.0, 3.0), (2.0, 0.5), (1.0, 0.5)]  # resumed at 1
        assert tuning.fit.index == 2 and tuning.kept == 2
        assert tuning.evidence == -9.0
        assert [float(a[0]) for a in tuning.history] == [1.0, 2.0, 1.0]
    else:
        assert fits == [(1.0, 3.0), (2.0, 0.5)]
        assert tuning.fit.index == 0 and tuning.evidence == -10.0


# Mutation round (session 28): the evidence at another prior (no refit).
def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_a_new_prior_whose_precision_is_indefinite_gives_minus_infinity():
    X, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LaplaceMLPClassifier(
            (3,),
            hessian="exact",
            hessian_structure="full",
            alpha=1.0,
            bias_prior_precision=1.0,
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
    L = clf.posterior_.cholesky_factor
    old = clf.prior_precision_
    new = np.where(old == 1.0, 0.1, old)  # weights' alpha 1 -> 0.1, biases kept
    assert np.array_equal(np.unique(old), [1.0])
    # Independent check: P - A_old + A_new is indefinite (exact Hessian).
    assert np.linalg.eigvalsh(L @ L.T - np.diag(old) + np.diag(new))[0] < -0.1
    assert clf.log_marginal_likelihood(alpha=0.1) == -np.inf
    assert np.isfinite(clf.log_marginal_likelihood(alpha=1.0))


def test_one_output_bias_made_flat_by_a_per_parameter_alpha_is_minus_infinity():
    # Not every output bias flat: no switch of the flat direction (no error);
    # the evidence's limit as that one precision falls to 0 is -inf.
    X, y = _iris()
    clf = LaplaceMLPClassifier((), bias_prior_precision=1.0, random_state=0).fit(X, y)
    prior = np.asarray(clf.prior_precision_, dtype=float)
    flat = prior.copy()
    flat[-1] = 0.0
    assert clf.log_marginal_likelihood(alpha=flat) == -np.inf
    small = [prior.copy() for _ in range(2)]
    small[0][-1], small[1][-1] = 1e-4, 1e-8
    values = [clf.log_marginal_likelihood(alpha=a) for a in small]
    # Falling without bound: 1/2 log a from log det A, log det P ~ unchanged
    # (the data fix that bias) - by hand, 0.5 log(1e-8 / 1e-4) = -4.61.
    assert np.all(np.isfinite(values))
    assert values[1] - values[0] == pytest.approx(0.5 * np.log(1e-4), abs=0.01)


def test_fixed_parameters_are_left_out_of_log_det_a():
    # (Unit-level; tests/test_pruning.py's masked-refit test also catches
    # dropping `fixed` in log_marginal_likelihood, but only end to end.)
    # Three parameters, the second held at zero (pruned) with a prior
    # precision of 2.5 (log 2.5 = 0.92 nats, a difference log det A would
    # show: at a precision of 1 its log is 0 and leaving it in goes unseen).
    # The posterior has the identity there. By hand: the evidence of the
    # model of the two free parameters alone.
    P_free = np.array([[3.0, 0.4], [0.4, 2.0]])
    P = np.eye(3)
    P[np.ix_([0, 2], [0, 2])] = P_free
    prior = np.array([0.5, 2.5, 0.8])
    theta = np.array([0.7, 0.0, -0.3])
    fixed = np.array([False, True, False])
    free = ~fixed
    expected = -5.0 - 0.5 * (
        np.linalg.slogdet(P_free)[1]
        - np.sum(np.log(prior[free]))
        + np.sum(prior[free] * theta[free] ** 2)
    )
    posterior = FullPosterior.from_precision(np, P)
    value = log_marginal_likelihood(-5.0, theta, prior, posterior, fixed)
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_a_mackay_update_within_round_off_of_zero_is_still_positive():
    # gamma = -2e-8 (round-off for a group of four): MacKay's update is
    # clamped to the smallest positive float, not gamma / ||w||^2 < 0 (the
    # docstring's updates are precisions, positive; tune_alpha takes their
    # log).
    theta = np.array([1.0, -1.0, 1.0, 1.0, 0.0])
    group = [np.array([True, True, True, True, False])]
    updated, gammas = mackay_update(
        np.full(5, 1.0 + 5e-9), theta, np.array([1.0]), group
    )
    assert gammas[0] < 0
    assert 0 < updated[0] < 1e-300


def test_a_cycle_is_found_while_another_group_sits_at_a_bound():
    # Per layer: group 0 is pinned at the upper bound (its alpha equals the
    # smallest and largest of the window: within their range), group 1 runs
    # the 3-cycle of test_tune_alpha_stops_when_the_refits_cycle. The cycle
    # rule fires as with one group (after 2 + EVIDENCE_PATIENCE refits), not
    # after EVIDENCE_MAX_UPDATES (a strict "<" at the window's low end never
    # lets a pinned group lie in range).
    def cycle(a):
        return 3.0 if a < 2.5 else 4.0 if a < 3.5 else 2.0

    refits, fit_laplace = _two_group_fits(lambda a: np.array([1e7, cycle(a[1])]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    assert len(refits) == 2 + evidence_module.EVIDENCE_PATIENCE
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert len(messages) == 1 and "no smaller step in 10 refits" in messages[0]


def test_the_cycle_warning_names_the_range_of_the_last_patience_refits():
    # The 3-cycle: the warning's range is the smallest and largest alpha of
    # the last EVIDENCE_PATIENCE refits (its "from ... to ..." read back).
    fits, fit_laplace = _fits_with_update(_three_cycle)
    with pytest.warns(ConvergenceWarning, match="the refits cycle") as caught:
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    last = [float(a[0]) for a in tuning.history[-evidence_module.EVIDENCE_PATIENCE :]]
    message = next(str(w.message) for w in caught if "cycle" in str(w.message))
    low, high = map(float, re.search(r"from (\S+) to ([^)\s]+)\)", message).groups())
    np.testing.assert_allclose([low, high], [min(last), max(last)], rtol=1e-3)
    # The extrapolated alpha (4.43, the third refit) is among them.
    assert high > 4.4


@pytest.mark.parametrize("peak", [True, False], ids=["earlier-refit", "last-refit"])
def test_the_convergence_warning_says_which_refit_is_kept(peak):
    # The 3-cycle gives up with a warning. With the second refit's evidence
    # 10 nats above the others (clearly larger than the last refit's) it is
    # kept, and the warning says "refit of largest evidence"; with equal
    # evidence the last refit is kept, and the warning says so.
    fits, fit_laplace = _fits_with_update(_three_cycle)
    with pytest.warns(ConvergenceWarning, match="the refits cycle") as caught:
        tuning = tune_alpha(
            fit_laplace,
            [np.ones(4, bool)],
            np.zeros(4),
            lambda v: v,
            evidence=lambda fit: 0.0 if peak and len(fits) == 2 else -10.0,  # refit 1
        )
    message = next(str(w.message) for w in caught if "cycle" in str(w.message))
    if peak:
        assert tuning.fit is fits[1]
        assert "the refit of largest evidence is kept (alpha [3.])" in message
    else:
        assert tuning.fit is fits[-1]
        assert "the last refit is kept" in message


def test_the_convergence_warnings_give_their_reason_and_advice_in_full():
    # Refits out of iterations (the march of
    # test_tune_alpha_stops_after_patience_refits_out_of_iterations) and the
    # cap on refits: each warning ends with its advice, as a sentence.
    fits, fit_laplace = _fits_with_update(lambda a: a / 2, lambda index: True)
    with pytest.warns(ConvergenceWarning) as caught:
        tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    message = str(caught[0].message)
    assert "short of their MAP, where the evidence does not hold)" in message
    assert message.endswith(
        "Standardise the features, increase max_iter or use a fixed alpha."
    )
    fits, fit_laplace = _fits_with_update(lambda a: a / 2)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(evidence_module, "EVIDENCE_MAX_UPDATES", 3)
        with pytest.warns(ConvergenceWarning) as caught:
            tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    message = str(caught[0].message)
    assert "did not converge in 3 refits" in message
    assert message.endswith("Use a fixed alpha.")


@pytest.mark.parametrize("n_groups", [1, 2])
def test_the_bound_warning_ends_with_its_advice(n_groups):
    # alpha -> 1e7 from any alpha: at the upper bound at the second refit.
    if n_groups == 1:
        groups, (_, fit_laplace) = [np.ones(4, bool)], _fits_with_update(lambda a: 1e7)
    else:
        update = lambda a: np.full(2, 1e7)  # noqa: E731
        groups, (_, fit_laplace) = TWO_GROUPS, _two_group_fits(update)
    with pytest.warns(LaplaceApproximationWarning) as caught:
        tune_alpha(fit_laplace, groups, np.zeros(4), lambda v: v)
    message = str(caught[0].message)
    assert message.startswith("The evidence drove alpha to a bound of")
    assert (
        "): MacKay's updates head for a degenerate limit (e.g. one layer's "
        "weights vanishing" in message
    )
    advice = "a fixed alpha" if n_groups == 1 else "alpha='evidence' or a fixed alpha"
    assert message.endswith(f"Prefer {advice}.")


def test_an_extrapolation_past_a_bound_is_clipped_to_it():
    # Log-linear updates towards 1e7 with ratio 0.5: plain steps 1 -> 3162
    # -> 1.8e5 (inside the bounds), whose Aitken extrapolation is 1e7,
    # outside: every refit's alpha lies within EVIDENCE_BOUNDS ("Alphas are
    # kept inside the bounds"), the third at the upper bound.
    update = lambda a: 1e7 * (a / 1e7) ** 0.5  # noqa: E731
    fits, fit_laplace = _fits_with_update(update)
    with pytest.warns(LaplaceApproximationWarning, match="bound"):
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    history = np.array([float(a[0]) for a in tuning.history])
    np.testing.assert_allclose(history[:2], [1.0, update(1.0)], rtol=1e-12)
    assert np.all((EVIDENCE_BOUNDS[0] <= history) & (history <= EVIDENCE_BOUNDS[1]))
    assert history[2] == EVIDENCE_BOUNDS[1]


def test_of_refits_of_equal_evidence_the_first_is_kept():
    # "first of equals": the second and third refits tie, 10 nats above the
    # last; the second is kept.
    fits, fit_laplace = _fits_with_update(
        lambda a: 3.0 if a < 2.5 else 4.0 if a < 3.5 else 2.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tuning = tune_alpha(
            fit_laplace,
            [np.ones(4, bool)],
            np.zeros(4),
            lambda v: v,
            evidence=lambda fit: 0.0 if len(fits) in (2, 3) else -10.0,  # refits 1, 2
        )
    assert tuning.fit is fits[1] and tuning.kept == 1


# Mutation round (session 32): tune_alpha's stopping rules, the output-bias
# check.
def _scripted(log_alphas):
    """A ``fit_laplace`` (:func:`_fits_with_update`) whose refit ``i`` has the
    MacKay update ``exp(log_alphas[i + 1])``, whatever its alpha."""
    script = np.exp(log_alphas)
    count = []

    def update(alpha):
        count.append(alpha)
        return script[len(count)]

    return _fits_with_update(update)


# Log alphas: the first step (0.1) is the smallest, every later one larger and
# of the opposite sign to the one before (never Aitken's). Refit 10 is the
# first where the cycle rule can fire; its alpha (log 0.5 or 2.5) lies within
# the range of refits 0-9 only thanks to refit 0 (low end) or refit 9 (high).
_CYCLE_2_TO_9 = [1.0, 2.0] * 4
_CYCLE_AFTER = [1.0, 2.0] * 20


@pytest.mark.parametrize(
    "log_alphas",
    [
        [0.0, 0.1, *_CYCLE_2_TO_9, 0.5, 2.0, *_CYCLE_AFTER],
        [0.0, 0.1, *_CYCLE_2_TO_9[:-1], 3.0, 2.5, 1.0, *_CYCLE_AFTER],
    ],
    ids=["low-end-from-refit-0", "high-end-from-refit-9"],
)
def test_the_cycle_window_is_the_ten_refits_before_the_last(log_alphas):
    fits, fit_laplace = _scripted(log_alphas)
    with pytest.warns(ConvergenceWarning, match="the refits cycle") as caught:
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 1 + evidence_module.EVIDENCE_PATIENCE == 11
    np.testing.assert_allclose(np.log([a[0] for a in tuning.history]), log_alphas[:11])
    message = next(str(w.message) for w in caught if "cycle" in str(w.message))
    assert message.endswith("Use a fixed alpha.")


def test_the_cycle_window_leaves_out_the_eleventh_refit_back():
    # Refit 10's alpha (log 2.5) lies above the range of refits 0-9; refit
    # 11's (log 0.05) within that of refits 0-10 only thanks to refit 0, not
    # of refits 1-10: the updates go on; refit 12's (log 1.5) is in range.
    log_alphas = [0.0, 0.1, *_CYCLE_2_TO_9[::-1], 2.5, 0.05, 1.5, *_CYCLE_AFTER]
    fits, fit_laplace = _scripted(log_alphas)
    with pytest.warns(ConvergenceWarning, match="the refits cycle"):
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 13
    np.testing.assert_allclose(np.log([a[0] for a in tuning.history]), log_alphas[:13])


@pytest.mark.parametrize("end", ["low", "high"])
def test_the_cycle_window_range_is_each_groups_own(end):
    # Per layer: group 0 cycles in log alpha [-2, -1], group 1 in [1, 2]. At
    # refit 10 one group's alpha leaves its own range (group 1 to log 0.5,
    # below its low but above group 0's; or group 0 to -0.5, above its high
    # but below group 1's): not a cycle. At refit 11 both are back in range.
    low = [-1.5, -1.4, *[-1.0, -2.0] * 4]
    high = [1.5, 1.6, *[1.0, 2.0] * 4]
    if end == "low":
        low += [-1.5, -1.8, -1.0]
        high += [0.5, 1.5, 1.0]
    else:
        low += [-0.5, -1.5, -1.0]
        high += [1.5, 1.8, 1.0]
    logs = np.array([low + [-1.0, -2.0] * 20, high + [1.0, 2.0] * 20]).T
    count = []

    def update(alphas):
        count.append(alphas)
        return np.exp(logs[len(count)])

    refits, fit_laplace = _two_group_fits(update)
    with pytest.warns(ConvergenceWarning, match="the refits cycle"):
        tuning = tune_alpha(
            fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v, start=np.exp(logs[0])
        )
    assert len(refits) == 12
    np.testing.assert_allclose(np.log(tuning.history), logs[:12])


def test_a_refit_that_reaches_its_map_restarts_the_count_from_zero():
    # The halving march of test_tune_alpha_stops_after_patience_refits_out_of_
    # iterations, with only the first refit reaching its MAP: the next ten run
    # out of iterations, and the updates stop after those ten (11 refits).
    fits, fit_laplace = _fits_with_update(lambda a: a / 2, lambda index: index > 0)
    with pytest.warns(ConvergenceWarning, match="last 10 refits ran out"):
        tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 11


def test_a_group_moving_after_a_pinned_step_raises_no_warning():
    # Per layer: group 0 starts at the upper bound and its update (1e7) is
    # clipped there, a step of exactly 0; at the second refit it moves to
    # 1e5. The ratio of its steps divides by zero, which must not surface as
    # a RuntimeWarning: the updates stop quietly at alphas (1e5, 2).
    count = []

    def update(alphas):
        count.append(alphas)
        return np.array([1e7 if len(count) == 1 else 1e5, 2.0])

    refits, fit_laplace = _two_group_fits(update)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuning = tune_alpha(
            fit_laplace,
            TWO_GROUPS,
            np.zeros(4),
            lambda v: v,
            start=np.array([1e6, 1.0]),
        )
    assert len(refits) == 3
    np.testing.assert_allclose(tuning.alpha, [1e5, 2.0])


@pytest.mark.parametrize("n_outputs", [2, 3])
def test_switching_a_last_layer_row_flat_is_refused_with_its_reason_in_full(
    n_outputs,
):
    # Two or more logits (a softmax): the full message, for any K > 1.
    layout = ParamLayout((2, n_outputs))
    proper = np.ones(layout.n_params)
    flat = np.where(np.arange(layout.n_params) >= layout.n_params - n_outputs, 0, 1.0)
    message = (
        "Switching the last layer's prior between flat (0) and proper changes "
        "which directions the posterior treats as flat (the softmax's common "
        "shifts); refit with the new alpha or bias_prior_precision instead."
    )
    # The same for one input's weights to every class (a weight row of the
    # output layer [W; b], rows of K entries), and between two flat sets.
    weights_flat = np.where(np.arange(layout.n_params) < n_outputs, 0, 1.0)
    switches = [(proper, flat), (flat, proper), (proper, weights_flat)]
    for old, new in switches + [(flat, weights_flat)]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            check_flat_shifts(layout, old, new)
    check_flat_shifts(layout, proper, 2 * proper)  # no switch: accepted
    check_flat_shifts(layout, weights_flat, 2 * weights_flat)
    check_flat_shifts(ParamLayout((2, 1)), np.ones(3), np.r_[1.0, 1, 0])
    # A row with a fixed entry is pinned by the data either way: no switch.
    fixed = np.zeros(layout.n_params, bool)
    fixed[0] = True
    check_flat_shifts(layout, proper, weights_flat, fixed)


_THREE_CLASSES = make_classification(
    90, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)


def test_a_hidden_layers_biases_may_switch_between_flat_and_proper():
    # Only the K > 1 output biases' prior may not switch between flat and
    # proper (the posterior's flat direction depends on it); the hidden
    # layer's biases may. Layout (2, 3, 3): hidden biases 6-8, output
    # biases 18-20, here flat throughout.
    layout = ParamLayout((2, 3, 3))
    flat = np.ones(layout.n_params)
    flat[[6, 7, 8, 18, 19, 20]] = 0.0
    hidden_proper = flat.copy()
    hidden_proper[[6, 7, 8]] = 1.0
    check_flat_shifts(layout, flat, hidden_proper)
    check_flat_shifts(layout, hidden_proper, flat)
    # And through the estimator: fitted with every bias flat (3 classes),
    # the evidence at a proper hidden-bias prior is the Laplace evidence of
    # P_data + A_new, from scratch from the full posterior (P_data = P -
    # A_old at prior_precision_scale=1); a refusal raises instead.
    clf = LaplaceMLPClassifier(
        (3,),
        activation="tanh",
        alpha=1.0,
        bias_prior_precision=0.0,
        hessian_structure="full",
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(*_THREE_CLASSES)
    old = clf.prior_precision_
    new = old.copy()
    new[12:15] = 2.0  # the hidden biases (after the 4 x 3 weights)
    assert np.all(old[[12, 13, 14, 24, 25, 26]] == 0.0)
    theta = np.concatenate(
        [np.r_[W.ravel(), b] for W, b in zip(clf.coefs_, clf.intercepts_)]
    )
    L = clf.posterior_.cholesky_factor
    sign, log_det = np.linalg.slogdet(L @ L.T - np.diag(old) + np.diag(new))
    assert sign > 0
    expected = clf.log_likelihood_ - 0.5 * (
        log_det - np.sum(np.log(new[new > 0])) + np.sum(new * theta**2)
    )
    got = clf.log_marginal_likelihood(bias_prior_precision=[2.0, 0.0])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("hidden", [(), (4,)])
def test_a_last_layer_made_flat_has_evidence_minus_infinity_not_a_refusal(hidden):
    # Three classes, a proper prior fitted: the evidence at alpha -> 0 falls
    # without bound (half log alpha for each weight the data determine), so
    # alpha=0 gives its limit, -inf, as it does for any parameter made flat;
    # so does a flat output-bias prior. Only the way back, flat to proper,
    # needs a refit (the posterior's unit curvature along the shifts).
    def fitted(alpha):
        return LaplaceMLPClassifier(
            hidden,
            alpha=alpha,
            hessian_structure="full",
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(*_THREE_CLASSES)

    clf = fitted(1.0)
    curve = [clf.log_marginal_likelihood(alpha=a) for a in (1e-2, 1e-6, 1e-10)]
    assert curve[0] > curve[1] > curve[2] > -np.inf
    assert clf.log_marginal_likelihood(alpha=0.0) == -np.inf
    assert clf.log_marginal_likelihood(bias_prior_precision=0.0) == -np.inf
    with pytest.raises(ValueError, match="refit with the new alpha"):
        fitted(0.0).log_marginal_likelihood(alpha=1.0)


def test_making_any_one_output_bias_proper_is_a_switch():
    # From a flat prior on all 3 output biases (18-20 of layout (2, 3, 3)),
    # a per-parameter prior that makes any one of them proper leaves the
    # output biases no longer all flat: refused, whichever one it is (the
    # first and the last included: a slice one short at either end misses
    # one).
    layout = ParamLayout((2, 3, 3))
    flat = np.ones(layout.n_params)
    flat[[18, 19, 20]] = 0.0
    for index in (18, 19, 20):
        new = flat.copy()
        new[index] = 1.0
        with pytest.raises(ValueError, match="refit with the new"):
            check_flat_shifts(layout, flat, new)


# Mutation round (session 33): the rest of tune_alpha (its return, the bound
# warning's text).
@pytest.mark.parametrize("n_groups", [1, 2])
def test_the_bound_warning_gives_its_causes_in_full(n_groups):
    # alpha -> 1e7 from any alpha: at the upper bound at the second refit,
    # converged there, so the bound's warning is the only one; its text in
    # full (test_the_bound_warning_ends_with_its_advice reads its two ends).
    if n_groups == 1:
        groups, (_, fit_laplace) = [np.ones(4, bool)], _fits_with_update(lambda a: 1e7)
        shown, advice = "[1000000.]", "a fixed alpha"
    else:
        update = lambda a: np.full(2, 1e7)  # noqa: E731
        groups, (_, fit_laplace) = TWO_GROUPS, _two_group_fits(update)
        shown, advice = "[1000000. 1000000.]", "alpha='evidence' or a fixed alpha"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune_alpha(fit_laplace, groups, np.zeros(4), lambda v: v)
    assert [w.category for w in caught] == [LaplaceApproximationWarning]
    assert str(caught[0].message) == (
        f"The evidence drove alpha to a bound of (1e-06, 1000000.0) ({shown}): "
        "MacKay's updates head for a degenerate limit (e.g. one layer's weights "
        "vanishing while the next layer's grow, separable data, or data that "
        "say little: features with no signal, or a sample_weight summing to few "
        "rows' worth, as the likelihood counts weights as repetitions), where "
        f"the evidence need not be larger. Prefer {advice}."
    )


def test_only_a_run_that_converged_names_its_fixed_point():
    # The held-out losses weigh a run's fixed point (its last refit) only
    # where the updates converged (sklaplace._fitting's challengers): a run
    # that gave up, at a cycle or at the cap on refits, has none.
    _, fit_laplace = _fits_with_update(_three_cycle)
    with pytest.warns(ConvergenceWarning, match="the refits cycle"):
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert tuning.fixed_point is None
    _, fit_laplace = _fits_with_update(lambda a: a / 2)  # the halving march
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(evidence_module, "EVIDENCE_MAX_UPDATES", 2)
        with pytest.warns(ConvergenceWarning, match="did not converge in 2 refits"):
            tuning = tune_alpha(
                fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v
            )
    assert tuning.fixed_point is None
    # Converged: MacKay's update gives 2 from any alpha, so the second
    # refit's step is 0, and it is the fixed point (index 1).
    fits, fit_laplace = _fits_with_update(lambda a: 2.0)
    tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert len(fits) == 2 and tuning.fixed_point == tuning.kept == 1


def _non_convergence_then_bound(caught):
    """The two messages of updates that gave up at a bound, checked in order."""
    assert [w.category for w in caught] == [
        ConvergenceWarning,
        LaplaceApproximationWarning,
    ]
    return tuple(str(w.message) for w in caught)


def _first_kept_of_a_cycle(update):
    """``tune_alpha`` on scripted fits whose MacKay update is ``update(alpha)``
    and whose first fit has the largest evidence: it is kept, no fixed point.
    Returns the fits and the two warnings' messages."""
    fits, fit_laplace = _fits_with_update(update)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(
            fit_laplace,
            [np.ones(4, bool)],
            np.zeros(4),
            lambda v: v,
            evidence=lambda fit: 0.0 if fit is fits[0] else -10.0,
        )
    assert tuning.fit is fits[0] and tuning.fixed_point is None
    return (fits, *_non_convergence_then_bound(caught))


def test_updates_that_give_up_after_a_bound_name_the_bound_as_the_cause():
    # The refits cycle between alpha 1 and the upper bound and the refit
    # kept (of largest evidence) lies inside: the updates gave up for the
    # bound, which both warnings name (the advice had been to standardise or
    # raise max_iter, and the bound's warning had looked at the kept alpha
    # only, which per layer left a two-layer walk to 1e-6 unmentioned).
    fits, cycle, bound = _first_kept_of_a_cycle(lambda a: 1e7 if a < 1e5 else 1.0)
    assert "the refits cycle among alphas from 1 to 1e+06" in cycle
    assert cycle.endswith(
        "is kept (alpha [1.]). They reached a bound of alpha (next warning): "
        "prefer a fixed alpha."
    )
    last_at_bound = len(fits) - 1 if len(fits) % 2 == 0 else len(fits) - 2
    assert bound.startswith(
        "The evidence drove alpha to a bound of (1e-06, 1000000.0) "
        f"(refit {last_at_bound}: [1000000.]; refit kept: [1.]): MacKay's updates"
    )
    assert bound.endswith("Prefer a fixed alpha.")
    # Converged inside after a refit at the bound: no word of the bound.
    fits, fit_laplace = _fits_with_update(lambda a: 1e7 if a < 1.5 else 2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(fit_laplace, [np.ones(4, bool)], np.zeros(4), lambda v: v)
    assert [f.prior_precision[0] for f in fits] == [1.0, 1e6, 2.0]
    assert caught == [] and tuning.fixed_point == 2


def test_per_layer_refits_out_of_iterations_also_advise_the_scalar_evidence():
    # Per layer the refits run out of iterations on the way to a degenerate
    # limit, where a larger max_iter only reaches the bound: the advice
    # names the scalar evidence too (one group: test_the_convergence_
    # warnings_give_their_reason_and_advice_in_full).
    def fit_laplace(alphas, theta):
        target = np.array([alphas[0] / 2, alphas[1] * 2])  # one falls, one rises
        return SimpleNamespace(
            theta=np.repeat(np.sqrt(0.5 / target), 2),
            posterior=np.repeat(0.5 / alphas, 2),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=True,
        )

    with pytest.warns(ConvergenceWarning) as caught:
        tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    assert str(caught[0].message).endswith(
        "Standardise the features, increase max_iter or use a fixed alpha "
        "(or alpha='evidence')."
    )


def test_the_bounds_warning_shows_the_last_refit_at_the_bound(monkeypatch):
    """The bound's warning shows the last refit at the bound, index and alphas.

    Per layer, one group's update leaves for the upper bound at once while
    the other's doubles at every refit (a march: no cycle, no Aitken), and
    the updates give up at the cap on refits (5 here). Every refit after
    the first lies at the bound, each with another alpha for the second
    group: the warning names the last of them (another refit at the bound,
    the second or the last but one, had shown alphas that were not the
    last refit's).
    """
    monkeypatch.setattr(evidence_module, "EVIDENCE_MAX_UPDATES", 5)

    def fit_laplace(alphas, theta):
        target = np.array([1e7, alphas[1] * 2])  # MacKay's update per group
        return SimpleNamespace(
            theta=np.repeat(np.sqrt(0.5 / target), 2),
            posterior=np.repeat(0.5 / alphas, 2),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=False,
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v)
    history = np.array(tuning.history)
    np.testing.assert_allclose(history[:, 1], [1.0, 2.0, 4.0, 8.0, 16.0])
    np.testing.assert_array_equal(history[1:, 0], EVIDENCE_BOUNDS[1])
    cycle, bound = _non_convergence_then_bound(caught)
    assert "did not converge in 5 refits" in cycle
    assert cycle.endswith(
        "They reached a bound of alpha (next warning): prefer alpha='evidence' "
        "or a fixed alpha."
    )
    shown = f"(refit 4: {tuning.history[4]}; refit kept: {tuning.alpha}):"
    assert "1.6e+01" in shown  # the last refit's second alpha, 16
    assert bound.startswith(
        f"The evidence drove alpha to a bound of {EVIDENCE_BOUNDS} {shown}"
    )
    assert bound.endswith("Prefer alpha='evidence' or a fixed alpha.")


def test_held_parameters_and_flat_priors_both_leave_log_det_a():
    """``log det A`` counts the parameters with a proper prior (``A_i > 0``)
    that are not held at zero, both rules at once: with ``fixed`` given, a
    flat-prior bias (``bias_prior_precision=0``) must still be left out.
    Precisions (2, 0, 3, 5), the third held: ``log 2 + log 5``. Mutant:
    ``counted = ~fixed`` (for ``&=``) counted the flat one, ``log 0 = -inf``,
    and a pruned fit's evidence with flat biases became ``-inf``."""
    precision = np.array([2.0, 0.0, 3.0, 5.0])
    fixed = np.array([False, False, True, False])
    expected = np.log(2.0) + np.log(5.0)
    with np.errstate(divide="ignore"):
        got = log_det_prior(precision, fixed)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-12)
    # Through the evidence: the held parameter is zero, the flat one not.
    theta = np.array([0.5, -1.0, 0.0, 0.2])
    log_det_p = 1.7
    with np.errstate(divide="ignore"):
        log_z = log_evidence_from_terms(-3.0, theta, precision, log_det_p, fixed)
    scatter = 2.0 * 0.25 + 5.0 * 0.04
    assert log_z == pytest.approx(-3.0 - 0.5 * (log_det_p - expected + scatter))


@pytest.mark.parametrize(
    "factors, fall, stops",
    [
        ((4.0, 0.25), 4.0, True),  # the march: spreading apart, far below the best
        ((4.0, 4.0), 4.0, False),  # far below, both groups together: no spread
        ((4.0, 0.25), 0.3, False),  # spreading, but within the margin of the best
        ((4.0, 0.25), -4.0, False),  # spreading towards a limit of larger evidence
        # Both falling, by 2 and by 8: log(max / min) grows by log 4 a refit
        # while max - min shrinks (a spread of alpha itself saw no march).
        ((0.5, 0.125), 4.0, True),
    ],
)
def test_tune_alpha_gives_up_where_the_layers_alphas_march_apart(factors, fall, stops):
    # Per layer the updates can march to the scaling symmetry's limit, one
    # layer's alpha rising (x4 per refit here) as another's falls (/4),
    # their refits ever costlier (digits: 50 refits, 379 s). Where they
    # spread (in log alpha) at EVIDENCE_MARCH_REFITS refits in a row, each
    # more than EVIDENCE_MARGIN below the best evidence (refit 1's here), the
    # updates give up and keep the best; otherwise they go on to the bound
    # (4^10 > 1e6), as before.
    march = evidence_module.EVIDENCE_MARCH_REFITS
    refits, fit_laplace = _two_group_fits(lambda a: a * np.array(factors))

    def evidence(fit):  # scripted by refit: 0 at refit 1, then `fall` a refit
        k = len(refits) - 1
        return -abs(k - 1) * fall if k else -fall

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(
            fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v, 1.0, evidence
        )
    if stops:
        spreads = [np.log(r.max() / r.min()) for r in refits]
        assert np.all(np.diff(spreads) > 0)  # the log spread grows every refit
        assert len(refits) == 2 + march
        np.testing.assert_allclose(tuning.alpha, factors)  # refit 1's
        assert tuning.fixed_point is None  # gave up: no fixed point to weigh
        [warned] = caught
        assert warned.category is ConvergenceWarning
        assert "spread apart" in str(warned.message)
    else:
        assert len(refits) >= 10
        assert not any("spread apart" in str(w.message) for w in caught)


def test_a_march_interrupted_by_one_refit_counts_again_from_zero():
    # As above (x4 and /4 per refit, the evidence 4 nats a refit below refit
    # 1's), but the update at refit EVIDENCE_MARCH_REFITS turns back (/4 and
    # x4): the next refit's spread shrinks, it does not march, and the count
    # restarts ("refits in a row"). Refits 2..march march (march - 1),
    # refit march + 1 does not, refits march + 2..2 march + 1 march: the
    # updates give up after 2 march + 2 refits, not after march + 3 (a count
    # that was not reset).
    march = evidence_module.EVIDENCE_MARCH_REFITS

    def update(alphas):
        back = len(refits) == march  # refit `march` (not yet appended)
        return alphas * (np.array([0.25, 4.0]) if back else np.array([4.0, 0.25]))

    refits, fit_laplace = _two_group_fits(update)

    def evidence(fit):  # 0 at refit 1, then 4 nats lower a refit
        k = len(refits) - 1
        return -abs(k - 1) * 4.0 if k else -4.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_alpha(
            fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v, 1.0, evidence
        )
    assert len(refits) == 2 * march + 2
    np.testing.assert_allclose(tuning.alpha, [4.0, 0.25])
    [warned] = caught
    assert warned.category is ConvergenceWarning
    assert f"spread apart at each of the last {march} refits" in str(warned.message)


def test_a_kept_refit_short_of_its_map_is_resumed_from_its_own_weights():
    """The first refit (alpha 1) stops short of its MAP with weights
    (0.5, -0.5) and evidence 6 nats above the fixed point's (alpha 2,
    weights (-0.5, 0.5): MacKay's update is 2 from both). It is resumed at
    its alpha from its own weights, not from the last refit's: a version
    that restarts from the last MAP passes (-0.5, 0.5)."""
    calls = []
    thetas = [np.array([0.5, -0.5]), np.array([-0.5, 0.5]), np.array([0.5, -0.5])]

    def fit_laplace(alphas, theta):
        index = len(calls)
        calls.append((float(alphas[0]), tuple(np.asarray(theta, float))))
        return SimpleNamespace(
            theta=thetas[index],
            posterior=np.full(2, 0.5 / alphas[0]),
            prior_precision=np.repeat(alphas, 2),
            out_of_iterations=index == 0,
            index=index,
        )

    tuning = tune_alpha(
        fit_laplace,
        [np.ones(2, dtype=bool)],
        np.full(2, 3.0),
        lambda posterior: posterior,
        evidence=lambda fit: [-10.0, -16.0, -9.0][fit.index],
    )
    assert [a for a, _ in calls] == [1.0, 2.0, 1.0]
    assert calls[1][1] == (0.5, -0.5)  # each refit starts from the last MAP
    assert calls[2][1] == (0.5, -0.5)  # the resumed one from its own weights
    assert tuning.fit.index == 2 and tuning.evidence == -9.0


def test_updates_that_give_up_after_the_lower_bound_name_it_as_the_cause():
    """The refits cycle between alpha 1 and the lower bound 1e-6 (MacKay's
    update is 1e-7 above 1e-5, else 1) and the refit kept (of largest
    evidence, alpha 1) lies inside: the updates gave up for the bound, which
    both warnings name, with the last refit at 1e-6 read off the scripted
    fits. A version that looks for the upper bound only (``isin(a,
    EVIDENCE_BOUNDS[1:])``) says nothing of the bound."""
    fits, cycle, bound = _first_kept_of_a_cycle(lambda a: 1e-7 if a > 1e-5 else 1.0)
    alphas = [float(f.prior_precision[0]) for f in fits]
    assert all(a == 1e-6 or abs(a - 1.0) < 1e-12 for a in alphas)  # clipped: exact
    last_at_bound = max(i for i, a in enumerate(alphas) if a == 1e-6)
    assert cycle.endswith(
        "is kept (alpha [1.]). They reached a bound of alpha (next warning): "
        "prefer a fixed alpha."
    )
    assert bound.startswith(
        "The evidence drove alpha to a bound of (1e-06, 1000000.0) "
        f"(refit {last_at_bound}: [1.e-06]; refit kept: [1.]): MacKay's updates"
    )


def test_a_group_whose_weights_all_sit_at_zero_gets_a_finite_update_quietly():
    """A collapsed refit's weights sit exactly at zero (``||theta_g||^2 =
    0``): MacKay's update ``gamma / ||theta_g||^2`` has no finite value, and
    the update divides by ``tiny`` instead: finite, far above the upper
    bound (gamma = 2 here, from posterior variances 1 / (2 alpha)), with no
    warning, whether the alphas come as an array (tune_alpha) or a list of
    floats (the alpha walk's direction). Dividing by the norm itself gives
    inf with a RuntimeWarning that fit() passes on, or ZeroDivisionError."""
    theta = np.r_[np.zeros(4), 0.5, -0.5]
    groups = [np.arange(6) < 4, np.arange(6) >= 4]
    for alphas in (np.array([2.0, 1.0]), [2.0, 1.0]):
        covariance = np.repeat(0.5 / np.asarray(alphas), [4, 2])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            updated, gammas = mackay_update(covariance, theta, alphas, groups)
        np.testing.assert_allclose(gammas, [2.0, 1.0], rtol=1e-12)
        assert np.isfinite(updated[0]) and updated[0] > EVIDENCE_BOUNDS[1]
        np.testing.assert_allclose(updated[1], 1.0 / 0.5, rtol=1e-12)


def test_groups_far_apart_settle_each_within_its_own_band():
    """The settled rule's 1% band spans each group's alphas, not the groups'.

    Two groups jitter at the noise floor as in
    ``test_tune_alpha_stops_quietly_when_the_refits_settle``, one at five
    times the other's alpha: they settle quietly at the fifth fit, as one
    group does (the span across the groups, log 5, is no jitter).
    """
    logs = np.cumsum([0.0, np.log(2.0), -0.004, 0.006, -0.008, 0.009, -0.009])
    script = np.exp(logs)

    def update(alphas):
        k = int(np.argmin(np.abs(np.log(script) - np.log(alphas[0]))))
        assert np.isclose(script[k], alphas[0], rtol=1e-9)  # only scripted alphas
        return np.array([script[k + 1], 5.0 * script[k + 1]])

    refits, fit_laplace = _two_group_fits(update)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuning = tune_alpha(
            fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v, np.array([1.0, 5.0])
        )
    assert len(refits) == 2 + evidence_module.EVIDENCE_SETTLED_REFITS == 5
    np.testing.assert_allclose(tuning.history, np.c_[script[:5], 5.0 * script[:5]])
    assert tuning.fixed_point == 4


def test_the_march_warning_gives_its_reason_and_advice_in_full():
    """The march's ConvergenceWarning names its cause and ends with its advice.

    The march of ``test_tune_alpha_gives_up_where_the_layers_alphas_march_apart``
    (one layer's alpha x4 a refit, the other's /4, the evidence falling 4
    nats a refit after the first).
    """
    refits, fit_laplace = _two_group_fits(lambda a: a * np.array([4.0, 0.25]))

    def evidence(fit):
        return -4.0 * abs(len(refits) - 2)

    with pytest.warns(ConvergenceWarning) as caught:
        tune_alpha(fit_laplace, TWO_GROUPS, np.zeros(4), lambda v: v, 1.0, evidence)
    message = str(caught[0].message)
    march = evidence_module.EVIDENCE_MARCH_REFITS
    assert (
        f"(the layers' alphas spread apart at each of the last {march} refits, "
        "their evidence far below the best: towards the degenerate limit)"
    ) in message
    assert message.endswith("Prefer alpha='evidence' or a fixed alpha.")
