"""What ``fit_network`` hands where: the tuning's posterior structure, the
held-out scoring's shortcuts, and the fitted attributes of a rebuilt
posterior.

From a mutation round on ``sklaplace/_fitting.py`` (session 59: 56 gaps of
763 mutants); each test names the mutants it kills (mutmut's names,
``x_<function>__mutmut_<n>``). Several check, through spies, that work is
not repeated where the result would be the same.
"""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.preprocessing import StandardScaler

import sklaplace._estimator as estimator_module
import sklaplace._fitting as fitting_module
import sklaplace._laplace_fit as laplace_fit_module
import sklaplace._memory as memory_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._fitting import tuning_structure
from sklaplace._laplace_fit import LaplaceFit
from sklaplace._memory import AUTO_FACTOR_WORK, DEFAULT_MEMORY_BUDGET, FIT_MEMORY_LIMIT
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.test_fitting import _signal  # the same noisy linear labels


def _config(**changes):
    """The fields ``tuning_structure`` and the memory rules read."""
    fields = dict(
        subset_of_weights="all",
        hessian_structure="diag",
        prior_precision_scale=1.0,
        link_approx="probit",
        bias_prior_precision=1.0,
    )
    fields.update(changes)
    return SimpleNamespace(**fields)


def _factor_work(layer_sizes):
    """Diagonalising the Kronecker factors: ``sum (fan_in + 1)**3 + fan_out**3``."""
    pairs = zip(layer_sizes[:-1], layer_sizes[1:])
    return sum((fan_in + 1) ** 3 + fan_out**3 for fan_in, fan_out in pairs)


def test_the_tuning_falls_back_to_the_diagonal_where_factors_cost_too_much():
    """A diagonal posterior tunes alpha on the Kronecker posterior of all
    weights only where its factors are cheap to diagonalise (the documented
    work, worked out here); 2,000 inputs cost twice ``AUTO_FACTOR_WORK``, and
    the tuning then runs on the diagonal.

    Mutants ``x_tuning_structure__mutmut_31`` (``kron_is_cheap(...) or
    True``: the Kronecker posterior however wide the layer), ``_39``, ``_42``
    (the cost of the last layer alone) and ``_45``, ``_46`` (``"diag"``
    misspelt).
    """
    wide, narrow = (2000, 8, 2), (20, 8, 2)
    assert _factor_work(wide) > AUTO_FACTOR_WORK >= _factor_work(narrow)
    assert tuning_structure(_config(), wide) == "diag"
    assert tuning_structure(_config(), narrow) == "kron"


def test_a_last_layer_full_posterior_tunes_on_all_weights():
    """A full posterior of the last layer prices too few weights for MacKay's
    updates: they run on the sample-space posterior of all weights where its
    rows are few (5 rows x 2 outputs against 186 parameters), else on the
    Kronecker posterior of all weights, never on the full one (that is
    only for a full posterior of all weights).

    Mutants ``x_tuning_structure__mutmut_2``, ``_4`` and ``_5`` (the
    ``"last_layer"`` test never true: ``"full"`` returned), ``_13`` (``n_rows
    is None``) and ``_20``, ``_21`` (the sample-space structure misnamed).
    """
    config = _config(subset_of_weights="last_layer", hessian_structure="full")
    assert tuning_structure(config, (20, 8, 2)) == "kron"
    assert tuning_structure(config, (20, 8, 2), n_rows=5) == "lowrank"
    # All weights under a full posterior tune on it, whatever the rows.
    full = _config(hessian_structure="full")
    assert tuning_structure(full, (20, 8, 2), n_rows=5) == "full"


def test_the_held_out_folds_copies_count_in_the_tuning_factors_memory(monkeypatch):
    """The Kronecker factors MacKay's updates tune on must fit the fit's
    memory limit with the copies the scale's held-out folds hold
    (``"cv"``: two more posteriors). With the work limit lifted (at today's
    constants it binds first), a single layer of 8,500 inputs takes
    0.54 GiB of factors: 16 copies fit ``FIT_MEMORY_LIMIT`` (a fixed scale),
    20 do not (``"cv"``), and the tuning then falls back to the diagonal.

    Mutants ``x_tuning_structure__mutmut_28`` and ``_36`` (the scale not
    passed: the folds' copies not counted), ``_37``, ``_40`` and ``_41``
    (the evidence's held posteriors not counted).
    """
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", float("inf"))
    sizes = (8500, 1)
    factor_bytes = 8 * ((sizes[0] + 1) ** 2 + sizes[1] ** 2)
    # 8 factor copies, 2 per held posterior: 4 for the evidence (the earlier
    # runs' kept ones and the last run's best and last refits), and
    # "cv"'s two.
    fixed_copies, cv_copies = 8 + 2 * 4, 8 + 2 * 6
    assert fixed_copies * factor_bytes <= FIT_MEMORY_LIMIT < cv_copies * factor_bytes
    assert tuning_structure(_config(), sizes) == "kron"
    assert tuning_structure(_config(prior_precision_scale="cv"), sizes) == "diag"


def _spy(monkeypatch, name, module=fitting_module):
    """Wrap ``module.<name>``; return the list of its calls.

    Each call that returns appends ``(args, kwargs, result)`` (one that
    raises is not recorded).
    """
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(module, name, spy)
    return calls


def test_held_out_monte_carlo_draws_are_chunked_within_the_memory_budget(
    monkeypatch,
):
    """The Monte Carlo predictive that scores the held-out rows holds
    ``(rows, n_mc_samples, n_outputs)`` draws and about three temporaries of
    that size (8 bytes each) per chunk: the rows per chunk are the most that
    fit ``DEFAULT_MEMORY_BUDGET``, counted here by hand.

    Mutant ``x_fit_network__mutmut_166`` (the chunk sized for the probit's
    ``n_outputs**2`` per row: 20 times the budget with 20 draws).
    """
    calls = _spy(monkeypatch, "moderated_logits")
    X, y = _signal()
    LaplaceMLPClassifier(
        (3,),
        alpha=1.0,
        link_approx="mc",
        n_mc_samples=20,
        prior_precision_scale="validation",
        random_state=0,
    ).fit(X, y)
    assert calls
    row_bytes = 4 * 8 * 20 * 1  # binary: one logit
    for (_, _, _, link, n_draws, _, rows), _, _ in calls:
        assert (link, n_draws) == ("mc", 20)
        assert rows * row_bytes <= DEFAULT_MEMORY_BUDGET < (rows + 1) * row_bytes


@pytest.mark.parametrize("setting", ["validation", "cv"])
def test_the_probits_held_out_losses_take_the_centred_variance_shortcut(
    monkeypatch, setting
):
    """With ``link_approx="probit"`` the held-out rows are scored from the
    centred variances of all scales at once: the predictive (which forms
    each scale's full covariances) is never called. Its losses are the
    same either way up to round-off, so only this says the shortcut is
    taken (49 scales' covariances per chunk otherwise).

    Mutants ``x_fit_network__mutmut_145``, ``_147``, ``_148`` (``probit``
    false), ``_191``, ``_197`` (``"validation"``), ``_298`` and ``_305``
    (``"cv"``): ``probit`` not passed on, the shortcut never taken.
    """
    calls = _spy(monkeypatch, "moderated_logits")
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=setting, random_state=0
    ).fit(X, y)
    assert clf.link_approx == "probit"
    assert f"{setting}_log_loss" in clf.prior_precision_scale_path_
    assert calls == []


@pytest.mark.parametrize("setting", ["cv", "loo"])
def test_held_out_rows_are_scored_on_the_centred_logits_jacobian(monkeypatch, setting):
    """The folds' and leave-one-out scores read the Jacobian of the centred
    logits, as the predictions do (``centring``: the softmax's common
    shift, whose variance is the prior's, kept out of the covariances),
    for three classes; every request for the fit's Jacobians asks for it."""
    calls = _spy(monkeypatch, "jacobian_chunks")
    X, y = make_classification(
        60, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=setting, random_state=0
    ).fit(X, y)
    assert calls
    assert all(kwargs.get("centred") is True for _, kwargs, _ in calls)


def test_the_walk_with_cv_chooses_the_scale_on_the_folds_of_the_kept_fit(
    monkeypatch,
):
    """With ``alpha="validation"`` and ``prior_precision_scale="cv"`` the walk
    scores its fits on the validation rows, but the scale is chosen by the
    folds: the path's ``cv_log_loss`` is the weighted mean, scale by scale,
    of the fold losses of the kept fit (averaged here), not the walk's
    validation losses, which only a ``"validation"`` scale reuses.

    Mutant ``x_fit_network__mutmut_395`` (``setting == "validation" or
    ...``: the walk's validation losses reused for ``"cv"``).
    """
    calls = _spy(monkeypatch, "cv_log_losses")
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,), alpha="validation", prior_precision_scale="cv", random_state=0
    ).fit(X, y)
    assert len(clf.alpha_history_) > 1  # the walk ran
    assert calls, "the folds never scored the kept fit"
    _, _, last = calls[-1]
    losses, weights = last.losses, last.weights
    mean = np.average(losses, axis=0, weights=weights)
    np.testing.assert_allclose(clf.prior_precision_scale_path_["cv_log_loss"], mean)


def test_the_walk_scores_each_fit_on_the_validation_rows_once(monkeypatch):
    """With ``alpha="validation"`` and a ``"validation"`` scale, the kept
    walk fit's held-out losses on the scale grid serve the scale's choice
    too: the validation rows are scored once per fit of the walk, never
    again for the kept one (the same losses, at the cost of a second pass).

    Mutants ``x_fit_network__mutmut_253`` to ``_256``, ``_389``, ``_393``,
    ``_396`` to ``_401`` (the walk's losses of the kept fit not stored or
    not reused: scored again, or a crash).
    """
    calls = _spy(monkeypatch, "validation_log_losses")
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,), alpha="validation", prior_precision_scale="validation", random_state=0
    ).fit(X, y)
    assert len(clf.alpha_history_) > 1
    assert "validation_log_loss" in clf.prior_precision_scale_path_
    assert len(calls) == len(clf.alpha_history_)  # one per walk fit


def test_a_ggn_full_posterior_is_not_built_again_for_the_kept_refit(monkeypatch):
    """MacKay's updates tune alpha on the GGN posterior of all weights; where
    that is the posterior asked for (``hessian="ggn"``, a full posterior of
    all weights) the kept refit's own posterior serves, and none is built
    again (a dense factorisation more, the same posterior).

    Mutants ``x_fit_network__mutmut_454``, ``_461``, ``_462`` (the tuning's
    ``hessian`` misnamed) and ``_455``, ``_463``, ``_464`` (its
    ``subset_of_weights``): always unlike the one asked for, so rebuilt.
    """
    calls = _spy(monkeypatch, "laplace_posterior")
    X, y = _signal()
    params = dict(alpha="evidence", prior_precision_scale=1.0, random_state=0)
    LaplaceMLPClassifier((3,), hessian="ggn", hessian_structure="full", **params).fit(
        X, y
    )
    assert calls == []
    # An exact Hessian is built for the kept refit (the spy sees it); it may
    # fall back to the GGN where it is not positive definite (a warning).
    exact = LaplaceMLPClassifier(
        (3,), hessian="exact", hessian_structure="full", **params
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LaplaceApproximationWarning)
        exact.fit(X, y)
    assert [args[2:] for args, _, _ in calls] == [("exact", "full", "all")]


def test_the_jitter_reported_is_that_of_the_posterior_built_for_the_kept_refit(
    monkeypatch,
):
    """A diagonal posterior asked for is built for the kept refit after
    MacKay's updates tuned alpha on another; ``posterior_jitter_`` must
    describe the posterior built, not the tuning one. A spy marks the
    rebuilt posterior's jitter (0.25, a value no tuning posterior reports
    here: they are not singular) and the fitted attribute must carry it.

    Mutants ``x_fit_network__mutmut_561`` (``jitter=None``) and ``_565``
    (the tuning posterior's jitter kept).
    """
    build = fitting_module.laplace_posterior

    def marked(*args, **kwargs):
        posterior, curvature, _ = build(*args, **kwargs)
        return posterior, curvature, 0.25

    monkeypatch.setattr(fitting_module, "laplace_posterior", marked)
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,),
        alpha="evidence",
        hessian_structure="diag",
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X, y)
    assert clf.posterior_jitter_ == 0.25


def test_the_cv_screen_asks_leave_one_out_losses_of_a_full_posterior(monkeypatch):
    """With ``"cv"`` and a full posterior, a challenger of the evidence's
    choice is weighed on the folds only where leave-one-out agrees: those
    losses are leave-one-out's (each row out of the MAP by one Newton step),
    not the folds' again.

    Mutants ``x_fit_network__mutmut_648``, ``_651`` to ``_653`` (the
    screen's ``how="loo"`` dropped or misspelt: the folds screen
    themselves).
    """
    calls = _spy(monkeypatch, "loo_log_losses")
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,),
        alpha="evidence",
        prior_precision_scale="cv",
        hessian_structure="full",
        random_state=0,
    ).fit(X, y)
    assert "cv_log_loss" in clf.prior_precision_scale_path_
    assert calls  # the screen's, for the kept fit and its challengers


def test_n_iter_counts_every_map_fits_iterations_once(monkeypatch):
    """``n_iter_`` sums the solver iterations of every MAP fit of alpha's
    tuning, each once: the spy adds up what each fit reports. A record of
    a superseded refit replaced by another's counted that one twice.

    Mutants ``x_fit_network__mutmut_681`` and ``_682`` (``refits[+1]`` or
    ``refits[-2]`` for ``refits[-1]`` where the last refit is not kept).
    """
    calls = _spy(monkeypatch, "fit_laplace")
    networks = _spy(monkeypatch, "fit_network", estimator_module)
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,), alpha="evidence", prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    n_iters = [fit.result.n_iter for _, _, fit in calls]
    assert clf.n_iter_ == sum(n_iters)
    # The case the mutants need: the last refit is not kept, and its count
    # differs from the second's and the last but one's.
    ((_, _, network),) = networks
    assert calls[-1][2] is not network.fit
    assert n_iters[-1] not in (n_iters[1], n_iters[-2])


def test_a_kronecker_posterior_of_all_weights_tunes_on_itself():
    """A Kronecker posterior of all weights asked for is the one MacKay's
    updates run on, however costly its factors (the user chose it); only
    for a last-layer Kronecker posterior, which prices too few weights, do
    the factors' cost (2,000 inputs: over ``AUTO_FACTOR_WORK``) send the
    tuning to the diagonal of all weights.

    Mutants ``x_tuning_structure__mutmut_24`` (``last_layer and own ==
    "kron"``), ``_26`` and ``_27`` (``"kron"`` misspelt).
    """
    wide = (2000, 8, 2)
    assert _factor_work(wide) > AUTO_FACTOR_WORK
    kron = _config(hessian_structure="kron")
    assert tuning_structure(kron, wide) == "kron"
    assert tuning_structure(kron, (20, 8, 2)) == "kron"
    last = _config(hessian_structure="kron", subset_of_weights="last_layer")
    assert tuning_structure(last, wide) == "diag"


def test_an_exact_posterior_built_for_the_kept_refit_reports_its_curvature():
    """``curvature_`` names the curvature of the posterior built for the
    kept refit: MacKay's updates tune alpha on the GGN, and the exact
    Hessian asked for, positive definite at this MAP (iris, Newton to
    ``tol=1e-8``), is built afterwards: ``"exact"``, not the tuning
    posterior's ``"ggn"``.

    Mutants ``x_fit_network__mutmut_560`` (``curvature=None``) and ``_564``
    (the tuning posterior's curvature kept).
    """
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier(
        (3,),
        hessian="exact",
        alpha="evidence",
        prior_precision_scale=1.0,
        solver="newton",
        tol=1e-8,
        random_state=0,
    )
    with warnings.catch_warnings():
        # A fallback to the GGN would warn: none is expected here.
        warnings.simplefilter("error", LaplaceApproximationWarning)
        clf.fit(X, y)
    assert len(clf.alpha_history_) > 1
    assert clf.curvature_ == "exact"


def test_leave_one_out_scores_the_kept_evidence_choice_once(monkeypatch):
    """With ``"loo"`` the screen's leave-one-out losses of the fit the
    evidence keeps also choose its scale: that fit's leave-one-out losses
    are computed once (the same losses again cost one more pass).

    Mutant ``x_fit_network__mutmut_671`` (``evidence_choice[1]``, the
    alpha, compared with the fit: the screen's losses always dropped).
    """
    calls = _spy(monkeypatch, "loo_log_losses")  # holds the fits: no id reused
    networks = _spy(monkeypatch, "fit_network", estimator_module)
    screens = _spy(monkeypatch, "overrule_by_held_out")
    X, y = _signal()
    clf = LaplaceMLPClassifier(
        (3,), alpha="evidence", prior_precision_scale="loo", random_state=0
    ).fit(X, y)
    assert "loo_log_loss" in clf.prior_precision_scale_path_
    # A challenger was screened (else the kept fit's losses are computed
    # once whatever the code) and the evidence's choice stayed.
    ((args, _, (kept, scale_losses)),) = screens
    assert scale_losses is not None and kept is args[0]
    ((_, _, network),) = networks
    assert sum(args[0] is network.fit for args, _, _ in calls) == 1


def _spied_fit_laplace(monkeypatch, follow=None):
    """``fit_laplace`` on stand-ins that record what they are handed.

    The split, the MAP solver and the posterior are replaced by spies (the
    posterior issues one warning, as a jitter would); returns the fit and
    what each spy saw.
    """
    seen = {}

    def split(xp, layout, theta, reference, activation, fixed=None):
        seen["split"] = (layout, activation, fixed)
        return theta

    def solve(objective, theta, solver, tol, max_iter, verbose=0, follow=True):
        seen["solve"] = (solver, tol, max_iter, verbose, follow)
        return SimpleNamespace(theta=theta, loss=3.0, out_of_iterations=False)

    def posterior(objective, theta_map, hessian, structure, subset="all"):
        seen["posterior"] = (hessian, structure, subset)
        warn("a jitter of 0.5 was added", LaplaceApproximationWarning)
        return "the posterior", "ggn", 0.5

    monkeypatch.setattr(laplace_fit_module, "split_coinciding_units", split)
    monkeypatch.setattr(laplace_fit_module, "minimize_map", solve)
    monkeypatch.setattr(laplace_fit_module, "laplace_posterior", posterior)
    config = SimpleNamespace(
        solver="newton-cg",
        tol=1e-7,
        max_iter=17,
        verbose=2,
        hessian="exact",
        hessian_structure="kron",
        subset_of_weights="last_layer",
    )
    fixed = np.array([False, True, False])
    objective = SimpleNamespace(
        xp=np, layout="the layout", activation="logistic", fixed=fixed
    )
    args = () if follow is None else (follow,)
    with pytest.warns(LaplaceApproximationWarning, match="a jitter of 0.5 was added"):
        fit = laplace_fit_module.fit_laplace(
            config, objective, np.zeros(3), np.ones(3), *args
        )
    return fit, seen


@pytest.mark.parametrize("follow", [None, True, False])
def test_fit_laplace_hands_its_settings_to_the_split_solver_and_posterior(
    monkeypatch, follow
):
    """``fit_laplace`` splits coinciding units with the objective's
    activation and its parameters held at zero, runs the solver with the
    config's settings and ``follow`` (by default: follow negative
    curvature), builds the posterior with the config's curvature, structure
    and subset, issues the posterior's warnings again in their own words
    and category, and records the curvature and those warnings.

    Mutants of ``sklaplace/_laplace_fit.py``: ``x_fit_laplace__mutmut_1``
    (``follow=False`` by default), ``_3``, ``_5``, ``_7``, ``_14``, ``_20``
    (no held parameters handed to the split), ``_13``, ``_19`` (no
    activation), ``_27``, ``_34`` (no verbosity), ``_28``, ``_35`` (no
    ``follow``), ``_41``, ``_46`` (no subset: all weights), ``_47``,
    ``_48`` (the warning issued again without its text or category),
    ``_54`` (no curvature), ``_62`` (no warnings recorded).
    """
    fit, seen = _spied_fit_laplace(monkeypatch, follow)
    layout, activation, fixed = seen["split"]
    assert (layout, activation) == ("the layout", "logistic")
    np.testing.assert_array_equal(fixed, [False, True, False])
    expected_follow = True if follow is None else follow
    assert seen["solve"] == ("newton-cg", 1e-7, 17, 2, expected_follow)
    assert seen["posterior"] == ("exact", "kron", "last_layer")
    assert (fit.posterior, fit.curvature, fit.jitter) == ("the posterior", "ggn", 0.5)
    assert [(w.message, w.category) for w in fit.posterior_warnings] == [
        ("a jitter of 0.5 was added", LaplaceApproximationWarning)
    ]


def test_a_fits_log_evidence_leaves_out_the_parameters_held_at_zero():
    """``LaplaceFit.log_evidence`` of a pruned fit counts ``log det A`` over
    the free parameters with a proper prior only, from scratch:
    ``log p(y | theta) - (log det P - log det A_free + theta' A theta) / 2``.

    Mutants ``xǁLaplaceFitǁlog_evidence__mutmut_5`` and ``_10`` (no held
    parameters handed on: the held ones' ``log A`` counted, here
    ``log 4 + log 9``).
    """
    prior = np.array([2.0, 4.0, 0.5, 9.0, 0.0])  # the last one flat
    fixed = np.array([False, True, False, True, False])
    theta = np.array([0.3, 0.0, -1.2, 0.0, 0.7])
    prior_term = 0.5 * np.sum(prior * theta**2)

    class Objective:
        def prior_term(self, t):
            return 0.5 * np.sum(prior * t**2)

    objective = Objective()
    objective.prior_precision, objective.fixed = prior, fixed
    posterior = SimpleNamespace(log_det_precision=lambda: 1.75)
    loss = 10.0  # negative log likelihood plus the prior term
    fit = LaplaceFit(
        objective,
        SimpleNamespace(theta=theta, loss=loss, out_of_iterations=False),
        posterior,
        "ggn",
        0.0,
    )
    log_likelihood = -(loss - prior_term)
    log_det_free = np.log(2.0) + np.log(0.5)
    want = log_likelihood - 0.5 * (1.75 - log_det_free + np.sum(prior * theta**2))
    assert fit.log_evidence() == pytest.approx(want, rel=1e-12)
