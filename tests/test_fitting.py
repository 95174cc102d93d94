"""fit_network's configuration: what one fit reads, resolved once."""

import copy
import math
import warnings
from dataclasses import FrozenInstanceError, fields, replace
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import (
    load_iris,
    load_wine,
    make_circles,
    make_classification,
    make_moons,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import sklaplace._estimator as estimator_module
import sklaplace._fitting as fitting_module
import sklaplace._laplace_fit
import sklaplace._warnings as package_warnings
from sklaplace import LaplaceMLPClassifier
from sklaplace._fit_config import FitConfig
from sklaplace._held_out import MIN_HELD_OUT_CLASS_ROWS, validation_rows
from sklaplace._likelihood import Bernoulli, likelihood_for
from sklaplace._network import ParamLayout
from sklaplace._objective import (
    CONSTANT_OUTPUT_SPREAD,
    NegLogPosterior,
    ignores_its_input,
)
from sklaplace._posterior import SINGULAR_RTOL
from sklaplace._symmetry import COINCIDE_RTOL, coinciding_groups
from sklaplace.exceptions import (
    BaseRateWarning,
    SampleWeightScaleWarning,
)
from tests.conftest import make_problem


def _resolved(**changes):
    """Every FitConfig field resolved (no "auto"), as the estimator would."""
    params = LaplaceMLPClassifier().get_params(deep=False)
    params.update(
        alpha=1.0,
        solver="lbfgs",
        tol=1e-5,
        hessian_structure="full",
        prior_precision_scale=1.0,
    )
    params.update(changes)
    return SimpleNamespace(**params)


# The parameters whose default is "auto" and that the fit reads.
AUTO_FIELDS = ["alpha", "hessian_structure", "prior_precision_scale", "solver", "tol"]


def test_config_fields_are_estimator_parameters():
    # Every field has the estimator parameter's name, so from_params reads the
    # resolved value and not a look-alike.
    names = set(LaplaceMLPClassifier().get_params(deep=False))
    assert {f.name for f in fields(FitConfig)} <= names


def test_config_takes_its_fields_only_and_is_frozen():
    config = FitConfig.from_params(_resolved(tol=1e-3, backend="numpy"))
    assert config.tol == 1e-3 and config.solver == "lbfgs"
    assert not hasattr(config, "backend")  # read by the estimator, not the fit
    with pytest.raises(FrozenInstanceError):
        config.tol = 1.0
    assert replace(config, tol=1.0).tol == 1.0


def test_every_auto_default_is_a_field_the_config_checks():
    defaults = LaplaceMLPClassifier().get_params()
    autos = [f.name for f in fields(FitConfig) if str(defaults[f.name]) == "auto"]
    assert sorted(autos) == AUTO_FIELDS


@pytest.mark.parametrize("name", AUTO_FIELDS)
def test_config_refuses_an_unresolved_auto(name):
    # One "auto" alone (tol too) is refused by name; none left passes.
    assert FitConfig.from_params(_resolved()).tol == 1e-5
    message = rf"^Resolve 'auto' before fitting: \['{name}'\]\.$"
    with pytest.raises(ValueError, match=message):
        FitConfig.from_params(_resolved(**{name: "auto"}))


def test_fit_reads_the_config_it_was_given(monkeypatch):
    # The estimator hands fit_network a FitConfig with the resolved values.
    import sklaplace._estimator as estimator_module

    seen = []
    fit_network = estimator_module.fit_network

    def spy(config, *args, **kwargs):
        seen.append(config)
        return fit_network(config, *args, **kwargs)

    monkeypatch.setattr(estimator_module, "fit_network", spy)
    X = np.random.RandomState(0).normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = LaplaceMLPClassifier((3,), alpha=1.0, prior_precision_scale=1.0)
    clf.fit(X, y)
    (config,) = seen
    assert isinstance(config, FitConfig)
    assert config.alpha == 1.0 and config.activation == clf.activation
    assert config.hessian_structure == clf.hessian_structure_
    assert config.solver == clf.solver_


def _two_blobs(n_samples=40, seed=0):
    """Two standardised features; labels with noise (not separable)."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 2))
    return X, (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n_samples) > 0).astype(int)


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_reaches_the_solver(capsys, verbose):
    """``verbose=1`` prints one line per Newton iteration; ``verbose=0`` none."""
    X, y = _two_blobs()
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, solver="newton", prior_precision_scale=1.0, verbose=verbose
    ).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == (clf.n_iter_ if verbose else 0)
    assert all(line.startswith("Newton iter ") for line in lines)


def test_evidence_per_layer_fits_the_map_of_each_layers_alpha():
    """The kept MAP is stationary under the per-layer ``alpha_`` it reports.

    The gradient of the log posterior with one tuned precision per layer,
    from the public :func:`~sklaplace.log_posterior_grad`, vanishes (to the
    solver's tolerance) at the fitted weights; the tuned precisions differ,
    so a MAP fitted with any single one of them would not be stationary.
    """
    from sklaplace import log_posterior_grad

    X, y = make_moons(100, noise=0.3, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier(
        (4,),
        alpha="evidence_per_layer",
        solver="newton",
        tol=1e-8,
        prior_precision_scale=1.0,
        random_state=0,
    )
    # The updates march apart after the refit of largest evidence, kept.
    with pytest.warns(ConvergenceWarning, match="spread apart"):
        clf.fit(X, y)
    alpha = np.asarray(clf.alpha_)
    # An interior alpha (no bound), with the layers' alphas far apart.
    assert alpha.shape == (2,) and np.all((alpha > 1e-5) & (alpha < 1e5))
    assert abs(np.log(alpha[1] / alpha[0])) > 1.0
    gradient = log_posterior_grad(
        clf.coefs_,
        clf.intercepts_,
        X,
        y,
        activation=clf.activation,
        alpha=alpha,
        bias_prior_precision=clf.bias_prior_precision,
    )
    assert np.max(np.abs(gradient)) / X.shape[0] <= 1e-6


def test_an_empty_pruning_mask_leaves_the_validation_choice_unchanged():
    """A warm refit holding no parameter fixed equals one without a mask.

    With ``prior_precision_scale="validation"`` the held-out Jacobians of a
    pruned network have the pruned columns zeroed; a mask that prunes
    nothing must give the unpruned held-out losses, scale and predictions.
    """
    X, y = _two_blobs(60)
    params = dict(
        alpha=1.0, prior_precision_scale="validation", solver="newton", random_state=0
    )
    clf = LaplaceMLPClassifier((3,), tol=1e-10, **params).fit(X, y)
    plain = copy.deepcopy(clf).set_params(warm_start=True).fit(X, y)
    masked = copy.deepcopy(clf).set_params(warm_start=True)
    masked.pruned_mask_ = np.zeros(clf._layout().n_params, dtype=bool)
    masked.fit(X, y)
    assert masked.prior_precision_scale_ == plain.prior_precision_scale_
    for key, value in plain.prior_precision_scale_path_.items():
        np.testing.assert_allclose(
            masked.prior_precision_scale_path_[key], value, rtol=1e-8
        )
    np.testing.assert_allclose(
        masked.predict_proba(X), plain.predict_proba(X), rtol=0, atol=1e-10
    )


def test_a_fit_that_ignores_its_input_says_it_predicts_the_base_rate():
    """A collapsed fit warns (``BaseRateWarning``, at the caller's line).

    Wine, standardised, hidden (8,) x 8 of logistic units at alpha 1: every
    unit goes to zero and each row gets the class frequencies (a helper's
    probe, session 36: test log loss 1.09 where a logistic regression gets
    0.04), which had passed without a word. The same data with hidden (8,)
    uses its input and does not warn.
    """
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(activation="logistic", alpha=1.0, prior_precision_scale=1.0)
    with pytest.warns(BaseRateWarning, match="ignores its input") as caught:
        deep = LaplaceMLPClassifier((8,) * 8, random_state=0, **params).fit(X, y)
    assert caught[0].filename == __file__
    proba = deep.predict_proba(X)
    np.testing.assert_allclose(proba, np.broadcast_to(proba[0], proba.shape))
    np.testing.assert_allclose(proba[0], np.bincount(y) / y.size, atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseRateWarning)
        LaplaceMLPClassifier((8,), random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_network_ignores_its_input_when_its_logits_spread_at_most_1e_6(n_classes):
    obj, theta, raw = make_problem("tanh", n_classes, (4,), n_samples=30, raw=True)
    X, (fan_in, fan_out) = raw["X"], obj.layout.shapes[1]
    start = obj.layout.offsets[1]
    output_weights = slice(start, start + (fan_in - 1) * fan_out)

    def spread(theta):  # an independent forward pass: max - min of any logit
        W1, W2 = obj.layout.layers(np, theta)
        logits = np.tanh(X @ W1[:-1] + W1[-1]) @ W2[:-1] + W2[-1]
        return np.max(np.ptp(logits, axis=0))

    unit = spread(theta)
    assert unit > 1e-3 and not ignores_its_input(obj, theta)
    # The logits are linear in the output weights: scale them to a spread of
    # half and twice the documented 1e-6, and to ten times it.
    assert CONSTANT_OUTPUT_SPREAD == 1e-6
    for factor, expected in [(0.5, True), (2.0, False), (10.0, False), (0.0, True)]:
        scaled = theta.copy()
        scaled[output_weights] *= factor * 1e-6 / unit
        assert ignores_its_input(obj, scaled) is expected
        assert bool(spread(scaled) <= CONSTANT_OUTPUT_SPREAD) is expected


def test_a_network_with_one_input_dependent_logit_does_not_ignore_its_input():
    # Three classes: two logits constant over the rows, the third not.
    obj, theta = make_problem("tanh", 3, (4,), n_samples=30)
    (fan_in, fan_out), start = obj.layout.shapes[1], obj.layout.offsets[1]
    W2 = theta[start : start + (fan_in - 1) * fan_out].reshape(fan_in - 1, fan_out)
    for column in range(fan_out):
        varied = theta.copy()
        weights = varied[start : start + (fan_in - 1) * fan_out]
        weights.reshape(fan_in - 1, fan_out)[:] = 0.0
        weights.reshape(fan_in - 1, fan_out)[:, column] = W2[:, column]
        assert not ignores_its_input(obj, varied)


def test_validation_scores_a_monte_carlo_predictive_on_the_held_out_rows():
    """``"validation"`` with ``link_approx="mc"`` scores the MC predictive.

    Only the probit takes the centred-variance shortcut; any other
    predictive's held-out losses come from the predictive itself, and the
    scale is chosen on them (not by the evidence).
    """
    X, y = _two_blobs(60)
    clf = LaplaceMLPClassifier(
        (3,),
        alpha=1.0,
        link_approx="mc",
        n_mc_samples=20,
        prior_precision_scale="validation",
        random_state=0,
    ).fit(X, y)
    path = clf.prior_precision_scale_path_
    assert "validation_log_loss" in path and "log_marginal_likelihood" not in path
    assert np.all(np.isfinite(path["validation_log_loss"]))
    assert clf.prior_precision_scale_ in path["scales"]


def test_validation_holds_out_rows_whose_weights_sum_to_under_one_row():
    """Positive weight on both sides is enough to hold rows out.

    Weights of 0.01 a row (0.6 rows' worth in all) change only the units of
    the weights: the held-out rows still choose the scale (``fit`` warns of
    the weights' scale).
    """
    X, y = _two_blobs(60)
    clf = LaplaceMLPClassifier(
        (3,), alpha=0.01, prior_precision_scale="validation", random_state=0
    )
    with pytest.warns(SampleWeightScaleWarning, match="averages 0.01"):
        clf.fit(X, y, sample_weight=np.full(60, 0.01))
    path = clf.prior_precision_scale_path_
    assert "validation_log_loss" in path and "log_marginal_likelihood" not in path


def test_validation_holding_out_no_row_leaves_the_scale_to_the_evidence_quietly():
    """Nothing held out: the fit is ``"evidence"``'s, with no warning.

    A fraction of 1e-9 holds out none of 20 rows (each is held out with
    probability 1e-9): every row is fitted, the evidence chooses the scale,
    and alpha's tuning runs no extra start for held-out losses to weigh
    (there are none), so it makes the same refits as ``"evidence"``.
    """
    X, y = _two_blobs(20)
    params = dict(alpha="evidence", validation_fraction=1e-9, random_state=0)
    by_evidence = LaplaceMLPClassifier(
        (3,), prior_precision_scale="evidence", **params
    ).fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LaplaceMLPClassifier(
            (3,), prior_precision_scale="validation", **params
        ).fit(X, y)
    assert [str(w.message) for w in caught] == []
    assert set(clf.prior_precision_scale_path_) == {
        "scales",
        "log_marginal_likelihood",
    }
    assert clf.prior_precision_scale_ == by_evidence.prior_precision_scale_
    np.testing.assert_array_equal(clf.coefs_[0], by_evidence.coefs_[0])
    assert clf.alpha_ == by_evidence.alpha_
    assert clf.n_iter_ == by_evidence.n_iter_


def test_a_warm_start_resumes_a_tuned_alpha_only_where_its_size_fits():
    """A warm start's tuned ``alpha_`` is the tuning's one start when its size
    fits the new tuning: a scalar resumes as per-layer alpha (one value per
    layer); a per-layer alpha does not resume as one scalar, which starts
    from 1 afresh (and does not fail on the size)."""
    X, y = _two_blobs(60)
    clf = LaplaceMLPClassifier(
        (3,), alpha="evidence", warm_start=True, random_state=0
    ).fit(X, y)
    scalar = clf.alpha_
    clf.set_params(alpha="evidence_per_layer").fit(X, y)
    np.testing.assert_array_equal(clf.alpha_history_[0], [scalar, scalar])
    assert np.size(clf.alpha_) == 2
    clf.set_params(alpha="evidence").fit(X, y)
    np.testing.assert_array_equal(clf.alpha_history_[0], [1.0])


def _noise_labels(n_samples=40, seed=0):
    """Two features and labels independent of them (no signal to fit)."""
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n_samples, 2)), rng.randint(0, 2, n_samples)


def _signal(n_samples=60, seed=0):
    """Two standard-normal features; noisy labels that depend on them."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 2))
    return X, (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n_samples) > 0).astype(int)


def test_the_evidence_counts_a_fitted_networks_modes_and_a_collapsed_ones_one(
    monkeypatch,
):
    """Each refit's evidence, as MacKay's runs compare it, adds the log count
    of equivalent modes: ``log(M! 2^M)`` for a tanh layer of ``M`` units, and
    nothing (one mode) for a network that ignores its input.

    On labels independent of the features the run from alpha 100 collapses
    (the base rate) and the run from 1 does not, so both cases are scored;
    the count is written out here (3 units: ``3! 2^3 = 48``), not taken from
    ``log_equivalent_modes``.
    """
    scored, tune_alpha = [], fitting_module.tune_alpha

    def spy(refit, groups, theta, covariance, start, evidence, *args, **kwargs):
        def recorded(fit):
            value = evidence(fit)
            scored.append((fit.log_evidence(), fit.objective, fit.theta, value))
            return value

        return tune_alpha(
            refit, groups, theta, covariance, start, recorded, *args, **kwargs
        )

    monkeypatch.setattr(fitting_module, "tune_alpha", spy)
    X, y = _noise_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LaplaceMLPClassifier(
            (3,), activation="tanh", prior_precision_scale=1.0, random_state=0
        ).fit(X, y)
    collapsed = [ignores_its_input(obj, theta) for _, obj, theta, _ in scored]
    assert any(collapsed) and not all(collapsed)
    modes = math.log(math.factorial(3) * 2**3)
    for (laplace, _, _, value), flat in zip(scored, collapsed):
        assert value == pytest.approx(laplace + (0.0 if flat else modes), abs=1e-9)


def test_validation_with_a_monte_carlo_predictive_is_reproducible():
    """``"validation"`` scores the Monte Carlo predictive on common random
    numbers seeded by ``random_state``: two fits with the same seed give the
    same held-out losses, scale and predictions, to the bit."""
    X, y = _signal()
    params = dict(
        alpha=1.0,
        link_approx="mc",
        n_mc_samples=20,
        prior_precision_scale="validation",
        random_state=0,
    )
    one = LaplaceMLPClassifier((3,), **params).fit(X, y)
    two = LaplaceMLPClassifier((3,), **params).fit(X, y)
    for key, value in one.prior_precision_scale_path_.items():
        np.testing.assert_array_equal(two.prior_precision_scale_path_[key], value)
    assert two.prior_precision_scale_ == one.prior_precision_scale_
    np.testing.assert_array_equal(two.predict_proba(X), one.predict_proba(X))


def test_where_every_evidence_run_collapses_one_from_a_weaker_prior_is_weighed():
    """On 120 rows of two circles a logistic network collapses (ignores its
    input) at alpha 1 and 100, and a collapsed network stays so (its weights
    have no gradient at 0): with the scale chosen by the evidence, where no
    held-out run from 0.1 follows, the fit had been the base rate (test log
    loss 0.693) at a log evidence 36 nats below a fit at 0.1. A run from 0.1
    now follows where every run collapsed, and the evidence weighs it."""
    X, y = make_circles(120, noise=0.1, factor=0.5, random_state=0)
    params = dict(activation="logistic", prior_precision_scale="evidence")
    collapsed = LaplaceMLPClassifier(alpha=1.0, **params, random_state=0)
    with pytest.warns(BaseRateWarning, match="ignores its input"):
        collapsed.fit(X, y)
    assert np.ptp(collapsed.predict_proba(X)[:, 1]) < 1e-4
    clf = LaplaceMLPClassifier(**params, random_state=0).fit(X, y)
    assert clf.alpha_history_[0] == 0.1  # the kept run started from 0.1
    assert clf.log_marginal_likelihood_ > collapsed.log_marginal_likelihood_ + 30
    X_test, y_test = make_circles(400, noise=0.1, factor=0.5, random_state=1)
    assert clf.score(X_test, y_test) > 0.9
    # Where a run does not collapse (ELU, the same data) the evidence ranks
    # the two runs as before: the run from 1 is kept.
    elu = LaplaceMLPClassifier(prior_precision_scale="evidence", random_state=0)
    assert elu.fit(X, y).alpha_history_[0] == 1.0


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_leave_one_out_screens_the_folds_only_with_a_full_posterior(
    monkeypatch, structure
):
    """A row's curvature taken out of a Kronecker or diagonal precision
    misjudges its leave-one-out loss: only a full posterior's screens the
    challengers the folds weigh (``"cv"``)."""
    screens = []
    overrule = fitting_module.overrule_by_held_out

    def recording(kept, challengers, held_out, tol, agrees=None):
        screens.append(agrees)
        return overrule(kept, challengers, held_out, tol, agrees)

    monkeypatch.setattr(fitting_module, "overrule_by_held_out", recording)
    X, y = make_moons(80, noise=0.3, random_state=0)
    LaplaceMLPClassifier(
        (4,),
        alpha="evidence",
        prior_precision_scale="cv",
        hessian_structure=structure,
        random_state=0,
    ).fit(X, y)
    assert len(screens) == 1
    assert (screens[0] is not None) == (structure == "full")


def test_tfidf_rows_under_a_diagonal_posterior_do_not_collapse_to_the_base_rate():
    """TF-IDF rows of three topics (200 documents, 2,608 terms, hidden (8,)),
    where the evidence on a diagonal posterior prefers a network that ignores
    its input (alpha 100). The folds judge it far worse than the run from
    1's fixed point (alpha 4.28), but leave-one-out losses, with a row's
    curvature taken out of the diagonal precision, had vetoed the switch:
    test log loss 1.0986 (the base rate) against 0.429 now."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(3000)]
    docs = []
    for i in range(350):  # 30 random words, 5 of the topic's 10
        topic = [f"w{i % 3 * 10 + j}" for j in rng.integers(0, 10, 5)]
        docs.append(" ".join(rng.choice(vocabulary, 30).tolist() + topic))
    y = np.arange(350) % 3
    train = np.arange(350) < 200
    tfidf = TfidfVectorizer().fit(np.array(docs)[train])
    X = tfidf.transform(docs).toarray()
    clf = LaplaceMLPClassifier((8,), hessian_structure="diag", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseRateWarning)
        clf.fit(X[train], y[train])
    assert np.ptp(clf.predict_proba(X[train])[:, 0]) > 0.5  # input-dependent
    assert log_loss(y[~train], clf.predict_proba(X[~train])) < 0.6


def test_an_exact_hessian_posterior_tunes_alpha_on_the_ggn():
    """MacKay's updates run on the GGN whatever ``hessian`` is asked for.

    The exact Hessian need not be PSD (it gave gamma -3,000), so the
    evidence's tuning of alpha runs on the GGN posterior and the exact one
    is built for the kept fit only: an ``hessian="exact"`` fit keeps the
    same alphas, refit for refit, and the same weights as the GGN fit,
    while its posterior (the exact Hessian's) differs from the GGN's.
    """
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(alpha="evidence", prior_precision_scale=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = LaplaceMLPClassifier((4,), hessian="exact", **params).fit(X, y)
        ggn = LaplaceMLPClassifier((4,), hessian="ggn", **params).fit(X, y)
    assert len(ggn.alpha_history_) > 1
    np.testing.assert_array_equal(exact.alpha_history_, ggn.alpha_history_)
    for a, b in zip(exact.coefs_, ggn.coefs_):
        np.testing.assert_array_equal(a, b)
    # The posteriors asked for differ (else the test could not tell them apart).
    assert not np.allclose(
        exact.posterior_.covariance_diagonal(np),
        ggn.posterior_.covariance_diagonal(np),
        rtol=1e-6,
    )


def _logistic_regression_on_0_and_1(weight):
    """One feature, 0 on one row and 1 on the other: logits ``0`` and ``weight``."""
    likelihood = likelihood_for(2)
    layout = ParamLayout((1, 1))
    X, y = np.array([[0.0], [1.0]]), np.array([0, 1])
    Y = likelihood.encode(np, y, 1, np.float64)
    obj = NegLogPosterior(
        np, layout, "identity", likelihood, X, Y, np.ones(2), np.ones(2)
    )
    theta = layout.pack(np, [np.array([[weight]])], [np.zeros(1)])
    np.testing.assert_array_equal(obj.forward(theta).logits[:, 0], [0.0, weight])
    return obj, theta


def test_a_spread_of_exactly_1e_6_still_ignores_the_input():
    """The documented bound is inclusive: logits spread *at most* 1e-6 apart.

    Logits ``0`` and ``w`` on two rows spread by ``w`` exactly (no round-off
    in ``w - 0``): ``w = 1e-6`` is a network that ignores its input, the
    next float above is not.
    """
    assert CONSTANT_OUTPUT_SPREAD == 1e-6
    assert ignores_its_input(*_logistic_regression_on_0_and_1(1e-6))
    above = np.nextafter(1e-6, 1.0)
    assert not ignores_its_input(*_logistic_regression_on_0_and_1(above))


def _three_classes(n_per_class=15, seed=0):
    """Three noisy Gaussian blobs in two features."""
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0], [1.5, 0.5], [0.5, 1.5]])
    X = np.vstack([c + rng.normal(size=(n_per_class, 2)) for c in centres])
    return X, np.repeat(np.arange(3), n_per_class)


@pytest.mark.parametrize("setting", ["cv", "loo"])
def test_held_out_losses_weigh_each_row_by_its_sample_weight(monkeypatch, setting):
    """``"cv"`` and ``"loo"`` weigh each held-out row's loss by its sample weight.

    The rows and weights handed to the held-out losses are the user's, row
    for row (the estimator merges identical rows into weights, so
    repetitions cannot tell); unit weights there averaged the losses as if
    unweighted.
    """
    seen = []
    for name in ("cv_log_losses", "loo_log_losses"):
        original = getattr(fitting_module, name)

        def spy(*args, _original=original, **kwargs):
            seen.append(args[2])  # the (X, y_index, sample_weight) of the rows
            return _original(*args, **kwargs)

        monkeypatch.setattr(fitting_module, name, spy)
    X, y = _three_classes()
    w = np.random.RandomState(1).uniform(0.5, 3.0, size=y.shape[0])
    LaplaceMLPClassifier(
        (3,), alpha=1.0, prior_precision_scale=setting, random_state=0
    ).fit(X, y, sample_weight=w)
    assert seen
    for X_seen, y_seen, w_seen in seen:
        assert X_seen.shape == X.shape
        # Each distinct row keeps its label and weight, whatever the row order.
        index = {tuple(row): n for n, row in enumerate(X)}
        rows = [index[tuple(row)] for row in X_seen]
        np.testing.assert_array_equal(y_seen, y[rows])
        np.testing.assert_allclose(w_seen, w[rows], rtol=1e-15)


def test_validation_scores_the_mc_predictive_with_the_fits_seed(monkeypatch):
    """The MC draws that score the held-out rows are seeded by the fit's seed.

    The seed that also chose the validation rows, so that ``random_state``
    governs them: a fixed seed of 0 gave every ``random_state`` the same
    draws.
    """
    seeds = {"rows": [], "draws": []}
    rows, draws = fitting_module.validation_rows, fitting_module.moderated_logits

    def spy_rows(X, y, fraction, seed, *args, **kwargs):
        seeds["rows"].append(seed)
        return rows(X, y, fraction, seed, *args, **kwargs)

    def spy_draws(xp, mean, cov, link, n_draws, seed, rows_):
        seeds["draws"].append(seed)
        return draws(xp, mean, cov, link, n_draws, seed, rows_)

    monkeypatch.setattr(fitting_module, "validation_rows", spy_rows)
    monkeypatch.setattr(fitting_module, "moderated_logits", spy_draws)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    for random_state in (3, 7):
        seeds["rows"].clear()
        seeds["draws"].clear()
        LaplaceMLPClassifier(
            (3,),
            alpha=1.0,
            link_approx="mc",
            n_mc_samples=10,
            prior_precision_scale="validation",
            random_state=random_state,
        ).fit(X, y)
        assert seeds["draws"], "the held-out rows were not scored by draws"
        assert len(set(seeds["rows"])) == 1
        assert set(seeds["draws"]) == set(seeds["rows"])
        assert seeds["rows"][0] != 0


@pytest.mark.parametrize("alpha", ["evidence", "validation"])
def test_only_the_kept_refit_keeps_its_posterior_and_objective(monkeypatch, alpha):
    """Every MAP fit but the kept one is stored as its solver record alone.

    No posterior, no objective: each dense posterior factor and data copy of
    a superseded refit is freed. Keeping them held one
    ``n_params x n_params`` factor per refit.
    """
    outcomes = []
    fit_network = fitting_module.fit_network

    def spy(*args, **kwargs):
        outcomes.append(fit_network(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(estimator_module, "fit_network", spy)
    X, y = _two_blobs()
    LaplaceMLPClassifier(
        (3,), alpha=alpha, prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    (network,) = outcomes
    kept = [r for r in network.refits if r is network.fit]
    assert len(kept) <= 1
    assert len(network.refits) > 1  # (one fit alone, at a fixed alpha, tests nothing)
    for refit in network.refits:
        if refit is not network.fit:
            assert refit.posterior is None and refit.objective is None
            assert refit.result is not None


def test_a_superseded_refits_warning_is_recorded_not_raised(monkeypatch):
    """A superseded refit's warning is recorded whatever the caller's filters.

    Only the kept refit's warnings are re-emitted: under an ``"error"``
    filter for a warning that only a superseded refit gives (the walk's
    second, at alpha 0.1; it keeps alpha 1), the fit completes. Recorded
    under the caller's filters instead, that warning raised out of that
    refit and aborted the fit.
    """
    calls = []
    fit_laplace = fitting_module.fit_laplace

    def second_warns(*args, **kwargs):
        calls.append(None)
        if len(calls) == 2:
            package_warnings.warn("a superseded refit only", UserWarning)
        return fit_laplace(*args, **kwargs)

    monkeypatch.setattr(fitting_module, "fit_laplace", second_warns)
    X, y = _two_blobs()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="a superseded refit only")
        clf = LaplaceMLPClassifier(
            (3,), alpha="validation", prior_precision_scale=1.0, random_state=0
        ).fit(X, y)
    assert len(calls) > 1 and len(clf.alpha_history_) > 1


def test_a_refit_splitting_coinciding_units_leaves_fixed_parameters_at_zero():
    """Splitting coinciding units moves no parameter held at zero.

    After ``fit_laplace`` from a start whose hidden units coincide, given a
    reference, every fixed (pruned) entry of the MAP is exactly 0. Split
    without the mask, the two coinciding units' pruned input weights moved
    off zero (by +-SPLIT_SIZE times the largest weight) and the solver,
    which holds fixed entries where they start, kept them there.
    """
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] + 0.3 * rng.normal(size=30) > 0).astype(int)
    layout = ParamLayout([2, 3, 1])
    coefs = [
        np.array([[0.5, 0.5, -0.3], [0.0, 0.0, 0.2]]),
        np.array([[0.4], [0.4], [0.3]]),
    ]
    intercepts = [np.array([0.1, 0.1, 0.0]), np.zeros(1)]
    theta = layout.pack(np, coefs, intercepts)  # units 0 and 1 coincide
    fixed = theta == 0  # their second input weight, and two biases, pruned
    objective = NegLogPosterior(
        np,
        layout,
        "tanh",
        Bernoulli,
        X,
        Bernoulli.encode(np, y, 1, np.float64),
        np.ones(30),
        np.ones(theta.shape[0]),
        fixed=fixed,
    )
    config = SimpleNamespace(
        solver="lbfgs",
        tol=1e-6,
        max_iter=200,
        verbose=0,
        hessian="ggn",
        hessian_structure="full",
        subset_of_weights="all",
    )
    fit = fitting_module.fit_laplace(
        config, objective, theta, rng.normal(size=theta.shape)
    )
    assert np.all(fit.theta[fixed] == 0.0)
    assert np.all(fit.theta[~fixed] != 0.0)


def test_the_tuning_posteriors_warnings_leave_with_it(monkeypatch):
    """MacKay's updates tune alpha on a Kronecker posterior of all weights;
    a diagonal or last-layer posterior asked for is then built for the kept
    refit, and only its own warnings describe the model. Here the tuning
    posteriors are nearly singular (a spy sees it) and the diagonal one
    cannot be (its pivot ratio is 1), nor is the last layer's."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    y = (X[:, 0] > 0).astype(int)
    X[:, 0] += 3 * (2 * y - 1)  # separable
    build = sklaplace._laplace_fit.laplace_posterior
    ratios = []  # of every posterior fit_laplace builds: tuning and folds

    def spy(objective, theta, hessian, structure, subset="all"):
        built = build(objective, theta, hessian, structure, subset)
        ratios.append(built[0].pivot_ratio())
        return built

    monkeypatch.setattr(sklaplace._laplace_fit, "laplace_posterior", spy)
    for structure, subset in [("diag", "all"), ("full", "last_layer")]:
        ratios.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = LaplaceMLPClassifier(
                (8,),
                alpha="evidence",
                bias_prior_precision=0.0,
                hessian_structure=structure,
                subset_of_weights=subset,
                random_state=0,
            ).fit(X, y)
        assert min(ratios) < SINGULAR_RTOL  # a tuning posterior warned
        assert clf.posterior_.pivot_ratio() >= SINGULAR_RTOL
        assert "nearly singular" not in " ".join(str(w.message) for w in caught)


def test_refits_split_coinciding_units_by_the_networks_own_activation(monkeypatch):
    """Which units coincide depends on the activation (tanh's units also up
    to sign, identity's in any mix): every refit from an earlier MAP passes
    the objective's own (``activation=None`` there had survived every test
    of the splitting itself)."""
    split = sklaplace._laplace_fit.split_coinciding_units
    seen = []

    def spy(xp, layout, theta, reference, activation, fixed=None):
        seen.append(activation)
        return split(xp, layout, theta, reference, activation, fixed)

    monkeypatch.setattr(sklaplace._laplace_fit, "split_coinciding_units", spy)
    X, y = make_moons(60, noise=0.3, random_state=0)
    for activation in ["tanh", "identity"]:
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LaplaceMLPClassifier(
                (3,), activation=activation, alpha="evidence", random_state=0
            ).fit(X, y)
        assert seen and set(seen) == {activation}


def test_the_fit_from_the_starting_weights_starts_exactly_there(monkeypatch):
    """The first fit starts from the weights it is handed, bit for bit: only
    a refit from an earlier MAP splits coinciding units (along the starting
    weights).

    The start's four hidden units form a chain: each is 0.8% (of the largest
    parameter, 1) from the next along one coordinate, so all four are one
    group of coinciding units (COINCIDE_RTOL 1%), while the outer two lie
    1.2% from the group's mean, so that a split along these same weights
    would move them. A fixed alpha and scale: one fit, whose solver must
    start at the given weights.

    Mutant (_fitting, fit_network): ``fit_at`` passes the starting weights
    as the split's reference to the first fit too (``None if (theta is
    start) and False else initial``): the chain is split before the solver
    starts.
    """
    layout = ParamLayout([2, 4, 1])
    base = np.array([1.0, 0.5, 0.2, 0.6])  # w_in1, w_in2, bias, w_out
    rows = base + np.outer(np.arange(4), [0.0, 0.008, 0.0, 0.0])
    groups, _ = coinciding_groups(rows, True)
    assert [list(g) for g in groups] == [[0, 1, 2, 3]]
    spread = np.max(np.abs(rows - rows.mean(axis=0)))
    assert spread > COINCIDE_RTOL * np.max(np.abs(rows))
    start = layout.pack(np, [rows[:, :2].T, rows[:, 3:]], [rows[:, 2], np.zeros(1)])

    fit_network = estimator_module.fit_network

    def from_the_chain(config, xp, layout_, likelihood, data, theta, *rest):
        return fit_network(
            config, xp, layout_, likelihood, data, xp.asarray(start), *rest
        )

    starts = []
    minimize_map = sklaplace._laplace_fit.minimize_map

    def spy(objective, theta, *args):
        starts.append(np.array(theta, copy=True))
        return minimize_map(objective, theta, *args)

    monkeypatch.setattr(estimator_module, "fit_network", from_the_chain)
    monkeypatch.setattr(sklaplace._laplace_fit, "minimize_map", spy)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] + 0.3 * rng.normal(size=30) > 0).astype(int)
    LaplaceMLPClassifier(
        (4,), activation="tanh", alpha=1.0, prior_precision_scale=1.0
    ).fit(X, y)
    assert len(starts) == 1
    np.testing.assert_array_equal(starts[0], start)


# Mutation round (session 58): fit_network's held-out rows read the weights;
# the estimator drops rows of zero weight before calling it, so these tests
# hand them to fit_network itself (a row of zero weight is no row).
def _a_small_class(n_large=40, seed=2):
    """Class 0 of ``n_large`` rows; class 1 of ``MIN_HELD_OUT_CLASS_ROWS - 1``
    distinct rows, too few for the folds or the validation split to hold
    any of them out."""
    rng = np.random.RandomState(seed)
    n_small = MIN_HELD_OUT_CLASS_ROWS - 1
    X = np.r_[rng.normal(size=(n_large, 2)), rng.normal(2.0, 1.0, (n_small, 2))]
    y = np.r_[np.zeros(n_large, int), np.ones(n_small, int)]
    return X, y


@pytest.mark.parametrize("scale", ["cv", "validation"])
def test_zero_weight_rows_handed_to_fit_network_change_no_held_out_loss(
    monkeypatch, scale
):
    """Rows of zero weight appended to ``fit_network``'s data leave the
    held-out log loss at every prior scale as it was: the small class keeps
    its three weighted rows fitted (counted as rows, twelve zero-weight
    ones of that class made it large enough to hold its weighted rows out,
    and the losses then scored them)."""
    X, y = _a_small_class()
    ghosts = np.random.RandomState(1).normal(2.0, 1.0, (12, 2))
    fit_network = estimator_module.fit_network

    def padded(config, xp, layout, likelihood, data, *rest):
        X_fit, y_fit, w_fit = data
        data = (
            np.r_[X_fit, ghosts],
            np.r_[y_fit, np.ones(len(ghosts), dtype=y_fit.dtype)],
            np.r_[w_fit, np.zeros(len(ghosts))],
        )
        return fit_network(config, xp, layout, likelihood, data, *rest)

    params = dict(
        hidden_layer_sizes=(3,),
        alpha=1.0,
        hessian_structure="full",
        prior_precision_scale=scale,
        # Its seed's split, were the ghosts counted as rows, holds out one
        # of the small class's weighted rows (as do the folds).
        random_state=4,
    )
    key = f"{scale}_log_loss"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = LaplaceMLPClassifier(**params).fit(X, y)
        monkeypatch.setattr(estimator_module, "fit_network", padded)
        ghosted = LaplaceMLPClassifier(**params).fit(X, y)
    # The zero-weight rows change the solver's sums, so the MAP moves
    # within its tolerance (about 1e-6 relative here); scoring the small
    # class's rows moves the losses by their own size.
    curve = plain.prior_precision_scale_path_[key]
    assert np.all(np.isfinite(curve))
    np.testing.assert_allclose(
        ghosted.prior_precision_scale_path_[key], curve, rtol=1e-4
    )
    np.testing.assert_allclose(ghosted.coefs_[0], plain.coefs_[0], rtol=1e-4)


def test_validation_curve_is_the_held_out_rows_weighted_log_loss():
    # At the chosen scale the path's validation loss is the log loss of the
    # fitted model's own predict_proba on the held-out rows, weighted by
    # their sample weights (the model is fitted on the other rows only, and
    # no residual is added). Counting each held-out row once instead moves
    # it by several percent.
    X, y = make_classification(
        80, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=1
    )
    w = np.random.RandomState(2).uniform(0.2, 4.0, size=y.shape[0])
    clf = LaplaceMLPClassifier(
        (5,),
        alpha=1.0,
        prior_precision_scale="validation",
        validation_fraction=0.3,
        residual_variance=0.0,
        random_state=0,
    ).fit(X, y, sample_weight=w)
    held = validation_rows(X, y, 0.3, clf._mc_seed, w)
    assert 10 <= held.sum() <= 40
    path = clf.prior_precision_scale_path_
    at = int(np.flatnonzero(path["scales"] == clf.prior_precision_scale_)[0])
    proba = clf.predict_proba(X[held])
    losses = -np.log(proba[np.arange(held.sum()), y[held]])
    reference = np.sum(w[held] * losses) / np.sum(w[held])
    np.testing.assert_allclose(path["validation_log_loss"][at], reference, rtol=1e-6)
    unweighted = np.mean(losses)
    assert abs(unweighted - reference) > 1e-3 * reference  # the two differ here
