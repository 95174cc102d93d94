"""``alpha="validation"``: alpha walked by decades on held-out rows."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace._alpha_walk import ALPHA_STEP, ALPHA_WALK_MAX_FITS, walk_alpha

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
    "best_log10, up, tried, kept",
    [
        (2.0, True, [1, 10, 100, 1000], 100),  # one past the best to see it rise
        (-1.0, False, [1, 0.1, 0.01], 0.1),
        (0.2, True, [1, 10, 0.1], 1),  # neither neighbour is lower
        (-0.3, True, [1, 10, 0.1], 1),
        # MacKay points up, the loss falls the other way: turned after one step.
        (-2.0, True, [1, 10, 0.1, 0.01], 0.01),
        (9.0, True, [1, 10, 100, 1000], 1000),  # stopped by the fit budget
    ],
)
def test_walk_keeps_the_alpha_of_least_held_out_loss(best_log10, up, tried, kept):
    evaluate, calls = _planted(best_log10)
    walk = walk_alpha(evaluate, lambda outcome: 2.0 if up else 0.5)
    assert [float(a[0]) for a in walk.history] == tried
    assert [a for a, _ in calls] == tried and len(tried) <= ALPHA_WALK_MAX_FITS
    assert walk.alpha == kept and walk.best == f"fit at {kept:g}"
    assert walk.losses == [(np.log10(a) - best_log10) ** 2 for a in tried]
    assert min(walk.losses) == walk.losses[tried.index(kept)] <= walk.losses[0]
    # Each fit warm-starts from its neighbour towards the start.
    assert calls[0][1] is None
    for alpha, previous in calls[1:]:
        towards_start = alpha / ALPHA_STEP if alpha > 1 else alpha * ALPHA_STEP
        assert previous == f"fit at {towards_start:g}"


def test_walk_stops_at_the_bound_and_on_an_undefined_loss():
    evaluate, calls = _planted(12.0)
    walk = walk_alpha(evaluate, lambda outcome: np.inf, start=1e5)
    assert [float(a[0]) for a in walk.history] == [1e5, 1e6]  # EVIDENCE_BOUNDS
    # At the upper bound, up is no step: the walk turns at once.
    evaluate, calls = _planted(-12.0)
    walk = walk_alpha(evaluate, lambda outcome: np.inf, start=1e6)
    assert [float(a[0]) for a in walk.history] == [1e6, 1e5, 1e4, 1e3]
    walk = walk_alpha(lambda a, p: (a, np.inf if a != 1 else 1.0), lambda o: 2.0)
    assert walk.alpha == 1.0 and len(walk.history) == 3


def _fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LaplaceMLPClassifier(random_state=0, **params).fit(X, Y)


@pytest.mark.parametrize(
    "data, n_fits",
    [
        (dict(n_samples=80, n_features=20, random_state=1), 3),  # up to 10
        (dict(n_samples=60, n_features=10, random_state=1), 4),  # down to 0.01
    ],
)
def test_logistic_alpha_is_the_fixed_alpha_of_least_validation_loss(data, n_fits):
    """No hidden layer: one MAP per alpha, so the walk's warm starts change
    nothing, and the walk must keep the fixed-alpha fit (same held-out rows)
    whose best validation loss is least -- and go the way the evidence at
    the first MAP rises (MacKay's update)."""
    Xl, yl = make_classification(n_informative=2, n_redundant=0, **data)
    Xl = StandardScaler().fit_transform(Xl)
    common = dict(hidden_layer_sizes=(), prior_precision_scale="validation", tol=1e-10)

    def _fit(**params):
        return LaplaceMLPClassifier(random_state=0, **params).fit(Xl, yl)

    walked = _fit(alpha="validation", **common)
    tried = [float(a[0]) for a in walked.alpha_history_]
    assert len(tried) == n_fits
    fixed = {a: _fit(alpha=a, **common) for a in tried}
    losses = [
        np.min(fixed[a].prior_precision_scale_path_["validation_log_loss"])
        for a in tried
    ]
    assert walked.alpha_ == tried[int(np.argmin(losses))]
    # It stopped at the first alpha whose loss did not fall.
    assert all(np.diff(losses[:-1]) < 0) and losses[-1] >= min(losses)
    kept = fixed[walked.alpha_]
    np.testing.assert_allclose(walked.coefs_[0], kept.coefs_[0], rtol=1e-6)
    assert walked.prior_precision_scale_ == kept.prior_precision_scale_
    first = fixed[1.0]
    rises = first.log_marginal_likelihood(alpha=1.01) > first.log_marginal_likelihood()
    assert (tried[1] > 1.0) == rises


# Noise features on few rows: the walk leaves alpha=1 for a network (to 10).
XN, YN = make_classification(
    n_samples=80, n_features=20, n_informative=2, n_redundant=0, random_state=1
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
