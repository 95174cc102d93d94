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
    "best_log10, up, expected, n_fits",
    [
        (2.0, True, 100.0, 4),  # up two decades, one past to see it rise
        (-1.0, False, 0.1, 3),
        (0.2, True, 1.0, 2),  # MacKay points up, the loss does not fall
        (-0.3, True, 1.0, 2),  # ... nor where the best lies the other way
        (9.0, True, 1000.0, ALPHA_WALK_MAX_FITS),  # stopped by the fit budget
    ],
)
def test_walk_keeps_the_alpha_of_least_held_out_loss(best_log10, up, expected, n_fits):
    evaluate, calls = _planted(best_log10)
    walk = walk_alpha(evaluate, lambda outcome: 2.0 if up else 0.5)
    assert walk.alpha == pytest.approx(expected)
    assert walk.best == f"fit at {expected:g}"
    assert len(calls) == len(walk.history) == len(walk.losses) == n_fits
    tried = np.concatenate(walk.history)
    np.testing.assert_allclose(tried[1:] / tried[:-1], ALPHA_STEP ** (1 if up else -1))
    # Never worse than the first fit; each fit warm-starts from the last one.
    assert min(walk.losses) == walk.losses[list(tried).index(walk.alpha)]
    assert walk.losses[list(tried).index(walk.alpha)] <= walk.losses[0]
    assert calls[0][1] is None
    assert [p for _, p in calls[1:]] == [f"fit at {a:g}" for a, _ in calls[:-1]]


def test_walk_stops_at_the_bound_and_on_an_undefined_loss():
    evaluate, calls = _planted(12.0)
    walk = walk_alpha(evaluate, lambda outcome: np.inf, start=1e5)
    assert [float(a[0]) for a in walk.history] == [1e5, 1e6]  # EVIDENCE_BOUNDS
    walk = walk_alpha(lambda a, p: (a, np.inf if a > 1 else 1.0), lambda o: 2.0)
    assert walk.alpha == 1.0 and len(walk.history) == 2


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


def test_network_walk_beats_or_matches_its_start_on_the_held_out_rows():
    common = dict(hidden_layer_sizes=(8,), prior_precision_scale="validation")
    walked = _fit(alpha="validation", **common)
    assert walked.alpha_ in [float(a[0]) for a in walked.alpha_history_]
    assert walked.alpha_history_[0][0] == 1.0
    # The start's own fit, on the same rows (the held-out hash is seeded the
    # same way), predicts the held-out rows no better.
    start = _fit(alpha=1.0, **common)
    path = "validation_log_loss"
    assert np.min(walked.prior_precision_scale_path_[path]) <= np.min(
        start.prior_precision_scale_path_[path]
    )
    assert walked.n_iter_ > start.n_iter_  # the walk's fits are all counted


def test_too_few_rows_to_hold_out_fall_back_to_alpha_one():
    # Two rows, one per class: neither can be held out (its class would go
    # unfitted), so there is no held-out loss to walk on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = LaplaceMLPClassifier((2,), alpha="validation", random_state=0)
        tiny.fit(X[:2], np.array([0, 1]))
    assert tiny.alpha_ == 1.0 and tiny.alpha_history_ == []


def test_warm_refit_resumes_the_walk_from_the_fitted_alpha():
    clf = _fit(hidden_layer_sizes=(4,), alpha="validation", warm_start=True)
    first = clf.alpha_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
    assert clf.alpha_history_[0][0] == first


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
