"""Reliability, concurrency and state.

* Several threads predicting with one fitted estimator get the serial answer.
* Fits in several threads leave the process's warning filters as they were
  and every fit's warnings reach the user.
* A fit that raises, anywhere and with any exception (``KeyboardInterrupt``
  included), leaves the estimator exactly as it was before the call.
* A refit with other parameters equals a fresh estimator with them.
"""

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import sklaplace._estimator as estimator_module
import sklaplace._laplace_fit as laplace_fit_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._pruning import prune

X, Y = make_classification(
    120, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)
X_OTHER, Y_OTHER = make_classification(80, 6, n_informative=3, random_state=1)
PARAMS = dict(hidden_layer_sizes=(4,), random_state=0)


@pytest.mark.parametrize("link", ["probit", "mc", "map"])
@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_threads_predict_like_a_single_thread(link, structure):
    clf = LaplaceMLPClassifier(
        **PARAMS, link_approx=link, hessian_structure=structure, n_mc_samples=200
    ).fit(X, Y)
    methods = ["predict_proba", "predict_log_proba", "predict", "decision_function"]
    # Overlapping, differently sized batches, so no two calls see the same X.
    batches = [X[start : start + 7 + start % 11] for start in range(0, 110, 5)]
    jobs = [(method, batch) for method in methods for batch in batches]
    serial = [getattr(clf, method)(batch) for method, batch in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda job: getattr(clf, job[0])(job[1]), jobs))
    for expected, got in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("alpha", [1.0, "evidence"])
def test_fits_in_threads_keep_the_warning_filters_and_every_warning(alpha):
    # A fit holds back its refits' warnings; warnings.catch_warnings, which it
    # had used, swaps process-wide state, so fits in threads had left
    # "always" and "ignore" filters installed and lost each other's warnings.
    def fit(k):  # every other fit stops after one iteration, and warns
        clf = LaplaceMLPClassifier(
            (4,), alpha=alpha, max_iter=1 + 199 * (k % 2), random_state=k
        )
        return clf.fit(X[:60], Y[:60])

    def issued(record):
        return sorted((w.category.__name__, str(w.message)) for w in record)

    with warnings.catch_warnings(record=True) as serial:
        warnings.simplefilter("always")
        for k in range(16):
            fit(k)
    with warnings.catch_warnings(record=True) as threaded:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(fit, range(16)))
        assert warnings.filters == before
    assert issued(threaded) == issued(serial)
    stopped = [w for w in serial if issubclass(w.category, ConvergenceWarning)]
    assert len(stopped) >= 8  # at least one per fit cut short


def _state(estimator):
    return copy.deepcopy(vars(estimator))


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, list | tuple | np.ndarray):  # tuple: data_envelope_
            for a, b in zip(value, after[key], strict=True):
                np.testing.assert_array_equal(a, b)
        elif isinstance(value, dict):  # prior_precision_scale_path_
            _assert_same_state(value, after[key])
        elif hasattr(value, "__dict__"):  # the posterior object
            _assert_same_state(vars(value), vars(after[key]))
        else:
            assert after[key] == value or (value != value and after[key] != after[key])


class Interrupt(Exception):
    pass


# Where to inject the failure: the solver, the posterior, the evidence (the
# last step before the attributes are assigned), and the assignment itself.
STAGES = {  # where each stage of fit is looked up
    "solver": (laplace_fit_module, "minimize_map"),
    "posterior": (laplace_fit_module, "laplace_posterior"),
    "evidence": (laplace_fit_module, "log_marginal_likelihood"),
    # to_numpy is first called by fit_residual, before any attribute is set;
    # deepcopy only at alpha_, with classes_ to prior_precision_ already set.
    "residual": (estimator_module, "to_numpy"),
    "assignment": (estimator_module, "deepcopy"),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_a_failed_refit_leaves_the_previous_fit_intact(monkeypatch, stage, exception):
    clf = LaplaceMLPClassifier(**PARAMS).fit(X, Y)
    before, proba = _state(clf), clf.predict_proba(X)

    def fail(*args, **kwargs):
        raise exception("injected")

    monkeypatch.setattr(*STAGES[stage], fail)
    # New data with other features and classes: validate_data has already
    # reset n_features_in_ when the failure strikes.
    with pytest.raises(exception, match="injected"):
        clf.set_params(hidden_layer_sizes=(2,)).fit(X_OTHER, Y_OTHER)
    monkeypatch.undo()
    clf.set_params(hidden_layer_sizes=(4,))  # the parameter we changed
    _assert_same_state(before, _state(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_failed_first_fit_leaves_the_estimator_unfitted(monkeypatch, stage):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*STAGES[stage], fail)
    clf = LaplaceMLPClassifier(**PARAMS)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, Y)
    monkeypatch.undo()
    assert vars(clf) == vars(LaplaceMLPClassifier(**PARAMS))
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_a_failed_warm_refit_keeps_the_map_to_start_from(monkeypatch):
    clf = LaplaceMLPClassifier(**PARAMS, warm_start=True).fit(X, Y)
    reference = copy.deepcopy(clf).fit(X[:100], Y[:100])
    monkeypatch.setattr(laplace_fit_module, "laplace_posterior", _raise_interrupt)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X[:100], Y[:100])
    monkeypatch.undo()
    np.testing.assert_array_equal(
        clf.fit(X[:100], Y[:100]).predict_proba(X), reference.predict_proba(X)
    )


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


CHANGES = [
    dict(hidden_layer_sizes=(2, 3)),
    dict(hidden_layer_sizes=()),
    dict(activation="logistic"),
    dict(alpha=0.1, bias_prior_precision=0.0),
    dict(alpha="evidence"),
    dict(solver="lbfgs", hessian="exact"),
    dict(hessian_structure="diag", link_approx="mc"),
    dict(random_state=3),
]


@pytest.fixture(scope="module")
def pruned_on_other_data():
    """A fitted, then pruned, estimator on other data (copied by each test)."""
    fitted = LaplaceMLPClassifier(**PARAMS).fit(X_OTHER, Y_OTHER)
    return prune(fitted, 0.3)  # a refit must also drop the pruning


@pytest.mark.parametrize("change", CHANGES, ids=[str(c) for c in CHANGES])
def test_refit_with_other_parameters_equals_a_fresh_fit(change, pruned_on_other_data):
    fresh = clone(LaplaceMLPClassifier(**PARAMS)).set_params(**change).fit(X, Y)
    refit = copy.deepcopy(pruned_on_other_data)
    assert hasattr(refit, "pruned_mask_")
    refit.set_params(**change).fit(X, Y)
    assert not hasattr(refit, "pruned_mask_")
    assert vars(refit).keys() == vars(fresh).keys()
    for a, b in zip(refit.coefs_ + refit.intercepts_, fresh.coefs_ + fresh.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(refit.predict_proba(X), fresh.predict_proba(X))
    assert refit.log_marginal_likelihood_ == fresh.log_marginal_likelihood_
