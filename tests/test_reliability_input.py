"""Reliability, bad input: a ValueError or TypeError naming the problem, early.

Every bad input must be refused by validation, before the MAP solver or the
curvature is reached: the tests replace both by functions that fail the test
if they are ever called.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import sklaplace._fitting as fitting_module
import sklaplace._laplace_fit as laplace_fit_module
import sklaplace._validation as validation_module
from sklaplace import (
    LaplaceMLPClassifier,
    log_posterior,
    log_posterior_grad,
    log_posterior_hessian,
    log_posterior_hvp,
)
from sklaplace._validation import merge_identical_rows, validate_fit_data
from sklaplace.exceptions import FeatureScaleWarning, UnweightedClassWarning

RNG = np.random.RandomState(0)
X = RNG.normal(size=(24, 3))
Y = np.arange(24) % 2
SMALL = dict(hidden_layer_sizes=(2,), max_iter=50, random_state=0)


def _with(array, index, value, dtype=float):
    array = np.array(array, dtype=dtype)
    array[index] = value
    return array


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail the test if fitting gets as far as the solver or the curvature."""

    def heavy(*args, **kwargs):
        raise AssertionError("validation let bad input through to the heavy work")

    monkeypatch.setattr(laplace_fit_module, "minimize_map", heavy)
    monkeypatch.setattr(laplace_fit_module, "laplace_posterior", heavy)
    monkeypatch.setattr(fitting_module, "laplace_posterior", heavy)


# (id, X, y, sample_weight, exception, message pattern)
BAD_DATA = [
    ("nan-X", _with(X, (0, 0), np.nan), Y, None, ValueError, "NaN"),
    ("inf-X", _with(X, (3, 1), np.inf), Y, None, ValueError, "infinity"),
    ("minus-inf-X", _with(X, (3, 1), -np.inf), Y, None, ValueError, "infinity"),
    ("nan-weight", X, Y, _with(np.ones(24), 0, np.nan), ValueError, "NaN"),
    ("inf-weight", X, Y, _with(np.ones(24), 5, np.inf), ValueError, "infinity"),
    ("empty-X", np.empty((0, 3)), np.empty(0), None, ValueError, "0 sample"),
    ("1d-X", X[:, 0], Y, None, ValueError, "Expected 2D array"),
    ("3d-X", X[:, :, None], Y, None, ValueError, "dim 3"),
    ("no-features", np.empty((24, 0)), Y, None, ValueError, "0 feature"),
    ("one-class", X, np.zeros(24), None, ValueError, "only one class"),
    ("one-sample", X[:1], Y[:1], None, ValueError, "only one class"),
    ("negative-weight", X, Y, _with(np.ones(24), 2, -1.0), ValueError, "Negative"),
    # scikit-learn 1.9 refuses them ("non-zero"); 1.8 leaves them to us.
    ("zero-weights", X, Y, np.zeros(24), ValueError, "non-zero|sum to zero"),
    ("short-weight", X, Y, np.ones(23), ValueError, "sample_weight.shape"),
    ("2d-weight", X, Y, np.ones((24, 1)), ValueError, "1D array"),
    ("short-y", X, Y[:-1], None, ValueError, "inconsistent numbers of samples"),
    ("complex-X", X + 1j, Y, None, ValueError, "Complex data not supported"),
    ("complex-weight", X, Y, np.ones(24) + 1j, ValueError, "Complex"),
    ("complex-y", X, Y + 1j, None, ValueError, "Complex"),
    ("continuous-y", X, X[:, 0], None, ValueError, "Unknown label type: continuous"),
    ("nan-y", X, _with(Y, 0, np.nan), None, ValueError, "NaN"),
    # As in LogisticRegression: an object array must hold strings.
    ("object-int-y", X, Y.astype(object), None, ValueError, "Unknown label type"),
    ("multilabel-y", X, np.c_[Y, 1 - Y], None, ValueError, "1d array"),
    ("string-X", np.full((24, 3), "a"), Y, None, ValueError, "convert string"),
    # Sparse X is densified, after the same checks.
    (
        "sparse-nan-X",
        sp.csr_matrix(_with(X, (1, 1), np.nan)),
        Y,
        None,
        ValueError,
        "NaN",
    ),
    (
        "sparse-inf-X",
        sp.csc_array(_with(X, (1, 1), np.inf)),
        Y,
        None,
        ValueError,
        "inf",
    ),
]


@pytest.mark.parametrize(
    "X_bad, y_bad, weight, error, match",
    [case[1:] for case in BAD_DATA],
    ids=[case[0] for case in BAD_DATA],
)
def test_bad_fit_data_is_refused_before_any_work(
    no_heavy_work, X_bad, y_bad, weight, error, match
):
    with pytest.raises(error, match=match):
        LaplaceMLPClassifier(**SMALL).fit(X_bad, y_bad, sample_weight=weight)


# (parameter, bad value, message pattern); each raises at fit, never at __init__.
BAD_PARAMS = [
    # A string in a list had come back as NumPy's "could not convert string".
    ("alpha", [1.0, "evidence"], "alpha must be a number or an array of numbers"),
    ("bias_prior_precision", [0.1, "a"], "bias_prior_precision must be a number"),
    # Numbers as strings had been parsed: refused like any other string.
    ("alpha", ["1", "2"], "alpha must be a number or an array of numbers"),
    ("bias_prior_precision", ["0.1"], "bias_prior_precision must be a number"),
    ("hidden_layer_sizes", (0,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (-2,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (3, 0), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (2.5,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", ("3",), "hidden_layer_sizes"),
    ("hidden_layer_sizes", ((3, 2),), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (np.nan,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", 0, "hidden_layer_sizes"),
    ("hidden_layer_sizes", 2.0, "hidden_layer_sizes"),
    ("hidden_layer_sizes", None, "hidden_layer_sizes"),
    ("alpha", -1.0, "alpha"),
    ("alpha", np.nan, "alpha"),
    ("alpha", np.inf, "alpha"),
    ("alpha", 1 + 1j, "alpha"),
    ("alpha", "evidenc", "alpha"),
    ("alpha", [1.0, 2.0, 3.0], r"one value per layer \(\d+\) or per parameter \(\d+\)"),
    ("alpha", [[1.0, 2.0]], "alpha"),
    ("alpha", [1.0, -1.0], r"alpha must be finite and >= 0"),
    ("alpha", [1.0, np.nan], r"alpha must be finite and >= 0"),
    ("alpha", [1.0, np.inf], r"alpha must be finite and >= 0"),
    ("bias_prior_precision", -1.0, "bias_prior_precision"),
    ("bias_prior_precision", np.nan, "bias_prior_precision"),
    ("bias_prior_precision", "flat", "bias_prior_precision"),
    ("bias_prior_precision", [1.0, 2.0, 3.0], "bias_prior_precision must be a scalar"),
    ("bias_prior_precision", [1.0, -1.0], "bias_prior_precision must be finite"),
    ("prior_precision_scale", 0.0, "prior_precision_scale"),
    ("prior_precision_scale", -1.0, "prior_precision_scale"),
    ("validation_fraction", 0.0, "validation_fraction"),
    ("validation_fraction", 1.0, "validation_fraction"),
    ("residual_variance", -1.0, "residual_variance"),
    ("tol", 0.0, "tol"),
    ("tol", -1e-6, "tol"),
    ("tol", np.nan, "tol"),
    ("n_mc_samples", 0, "n_mc_samples"),
    ("n_mc_samples", -5, "n_mc_samples"),
    ("n_mc_samples", 2.5, "n_mc_samples"),
    ("max_iter", 0, "max_iter"),
    ("max_iter", 1.5, "max_iter"),
    ("activation", "sigmoid", "activation"),
    ("solver", "adam", "solver"),
    ("hessian", "kfac", "hessian"),
    ("hessian_structure", "lowrank", "hessian_structure"),
    ("subset_of_weights", "subnetwork", "subset_of_weights"),
    ("link_approx", "laplace", "link_approx"),
    ("backend", "torch", "backend"),
    ("random_state", "seed", "random_state"),
    ("warm_start", "yes", "warm_start"),
]


@pytest.mark.parametrize(
    "name, value, match",
    BAD_PARAMS,
    ids=[f"{name}={value!r}" for name, value, _ in BAD_PARAMS],
)
def test_bad_parameter_is_refused_at_fit_not_init(no_heavy_work, name, value, match):
    clf = LaplaceMLPClassifier(**{**SMALL, name: value})  # __init__ never checks
    assert clf.get_params()[name] is value
    with pytest.raises((ValueError, TypeError), match=match):
        clf.fit(X, Y)
    assert not hasattr(clf, "n_features_in_")  # nothing half-fitted is left


@pytest.mark.parametrize("value", [0, -1])
def test_an_int_hidden_layer_size_below_1_is_an_invalid_parameter(value):
    """An int ``hidden_layer_sizes`` is one layer of at least 1 unit: below
    that, scikit-learn's ``InvalidParameterError`` naming the parameter, as
    for every other constrained parameter (an interval from 0 had passed 0
    on to a plain ``ValueError`` deeper in)."""
    clf = LaplaceMLPClassifier(**{**SMALL, "hidden_layer_sizes": value})
    with pytest.raises(InvalidParameterError, match="'hidden_layer_sizes'"):
        clf.fit(X, Y)


def test_an_int_is_one_hidden_layer_as_in_mlpclassifier():
    # MLPClassifier(hidden_layer_sizes=3) is a network of one layer of 3.
    as_int = LaplaceMLPClassifier(**{**SMALL, "hidden_layer_sizes": 3}).fit(X, Y)
    as_tuple = LaplaceMLPClassifier(**{**SMALL, "hidden_layer_sizes": (3,)}).fit(X, Y)
    assert [c.shape for c in as_int.coefs_] == [(X.shape[1], 3), (3, 1)]
    np.testing.assert_array_equal(as_int.predict_proba(X), as_tuple.predict_proba(X))


@pytest.fixture(scope="module")
def fitted():
    return LaplaceMLPClassifier(**SMALL).fit(X, Y)


BAD_PREDICT = [
    ("too-few-features", X[:, :2], ValueError, "X has 2 features, but"),
    ("too-many-features", np.c_[X, X], ValueError, "X has 6 features, but"),
    ("nan", _with(X, (1, 1), np.nan), ValueError, "NaN"),
    ("inf", _with(X, (1, 1), np.inf), ValueError, "infinity"),
    ("complex", X + 1j, ValueError, "Complex data not supported"),
    ("1d", X[0], ValueError, "Expected 2D array"),
    ("empty", np.empty((0, 3)), ValueError, "0 sample"),
    ("sparse-nan", sp.csr_matrix(_with(X, (1, 1), np.nan)), ValueError, "NaN"),
]


@pytest.mark.parametrize(
    "method",
    [
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "latent_mean_and_variance",
    ],
)
@pytest.mark.parametrize(
    "X_bad, error, match",
    [case[1:] for case in BAD_PREDICT],
    ids=[case[0] for case in BAD_PREDICT],
)
def test_bad_predict_input_is_refused(fitted, method, X_bad, error, match):
    with pytest.raises(error, match=match):
        getattr(fitted, method)(X_bad)


def test_a_class_of_zero_total_weight_warns_and_stays_in_classes():
    """Its output has no data: the probability is the prior's, so fit says so
    (with a warning of its own class, which a user can filter).

    The other classes' fit is that of the data without its rows, up to the
    softmax's extra logit (it pushes that logit down, not the others' apart).
    """
    y = np.arange(24) % 3
    weight = np.where(y == 2, 0.0, 1.0)
    params = dict(hidden_layer_sizes=(3,), alpha=1.0, random_state=0)
    with pytest.warns(UnweightedClassWarning, match=r"Classes \[2\] have rows in y"):
        clf = LaplaceMLPClassifier(**params).fit(X, y, sample_weight=weight)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (24, 3)
    # String labels are named too; every class weighted: no warning.
    labels = np.array(["a", "b", "c"])[y]
    with pytest.warns(UnweightedClassWarning, match=r"Classes \['c'\]"):
        LaplaceMLPClassifier(**params).fit(X, labels, sample_weight=weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        LaplaceMLPClassifier(**params).fit(X, y, sample_weight=weight + 0.5)


@pytest.mark.parametrize("kept", [0, 1])
def test_one_weighted_class_fits_and_predicts_that_class(kept):
    """Weights that leave one class (a small bootstrap's counts in
    ``BaggingClassifier``) fit, as scikit-learn's classifiers do: the other
    class warns and keeps only the prior's probability.

    They had been refused as the one-class case, which broke
    ``BaggingClassifier(max_samples=0.1)`` on imbalanced rows.
    """
    weight = (Y == kept).astype(float)
    params = dict(hidden_layer_sizes=(3,), alpha=1.0, random_state=0)
    with pytest.warns(UnweightedClassWarning, match=rf"Classes \[{1 - kept}\]"):
        clf = LaplaceMLPClassifier(**params).fit(X, Y, sample_weight=weight)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba))
    assert np.all(proba[:, kept] > 0.8)  # the only class the weights inform
    np.testing.assert_array_equal(clf.predict(X), np.full(24, kept))
    # Under a tuned alpha the network ignores its input, rightly: no
    # BaseRateWarning's advice (a smaller alpha, no signal) beside this one.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LaplaceMLPClassifier((3,), random_state=0).fit(X, Y, sample_weight=weight)
    assert [w.category for w in caught] == [UnweightedClassWarning]


def test_bagging_small_bootstraps_of_imbalanced_rows_fit():
    from sklearn.ensemble import BaggingClassifier

    y = np.where(np.arange(60) % 10 == 0, 1, 0)  # 10% of class 1
    x = np.random.RandomState(1).normal(size=(60, 3)) + y[:, None]
    bagging = BaggingClassifier(
        LaplaceMLPClassifier((2,), alpha=1.0, max_iter=50, random_state=0),
        n_estimators=6,
        max_samples=0.1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnweightedClassWarning)
        bagging.fit(x, y)
    # Some bootstrap of 6 rows drew class 0 alone (the case once refused).
    drawn = [np.bincount(y[rows], minlength=2) for rows in bagging.estimators_samples_]
    assert any(counts[1] == 0 for counts in drawn)
    proba = bagging.predict_proba(x)
    assert np.all(np.isfinite(proba)) and proba.shape == (60, 2)


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        LaplaceMLPClassifier().predict_proba(X)


THREE = np.arange(24) % 3
LABELS = [
    ("strings", np.array(["no", "yes"])[Y]),
    ("object-strings", np.array(["no", "yes"], dtype=object)[Y]),
    ("floats", Y.astype(float)),
    ("float-32", Y.astype(np.float32)),
    ("negative-ints", np.array([-7, 3])[Y]),
    ("bools", Y.astype(bool)),
    ("three-strings", np.array(["a", "b", "c"])[THREE]),
    ("three-floats", np.array([0.0, 1.0, 2.0])[THREE]),
    ("three-objects", np.array(["x", "y", "z"], dtype=object)[THREE]),
]


@pytest.mark.parametrize("labels", [c[1] for c in LABELS], ids=[c[0] for c in LABELS])
def test_any_discrete_labels_give_the_integer_coded_answer(labels):
    codes = np.unique(labels, return_inverse=True)[1]
    clf = LaplaceMLPClassifier(**SMALL).fit(X, labels)
    reference = LaplaceMLPClassifier(**SMALL).fit(X, codes)
    np.testing.assert_array_equal(clf.classes_, np.unique(labels))
    # Same class order, same model: labels are only names.
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    predicted = clf.predict(X)
    assert predicted.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(predicted, clf.classes_[reference.predict(X)])


# ----------------------------------------------------------- functional API

FUNCTIONS = {
    "log_posterior": lambda c, b, **kw: log_posterior(c, b, FX, FY, **kw),
    "log_posterior_grad": lambda c, b, **kw: log_posterior_grad(c, b, FX, FY, **kw),
    "log_posterior_hessian": lambda c, b, **kw: log_posterior_hessian(
        c, b, FX, FY, **kw
    ),
    "log_posterior_hvp": lambda c, b, **kw: log_posterior_hvp(
        c,
        b,
        FX,
        FY,
        np.ones(sum(np.size(w) for w in c) + sum(np.size(i) for i in b)),
        **kw,
    ),
}
FX, FY = RNG.normal(size=(6, 3)), np.arange(6) % 2
GOOD_COEFS = [np.ones((3, 4)), np.ones((4, 1))]
GOOD_INTERCEPTS = [np.ones(4), np.ones(1)]

# (id, coefs, intercepts, exception, message pattern)
BAD_NETWORKS = [
    (
        "coefs-do-not-chain",
        [np.ones((3, 4)), np.ones((2, 1))],
        GOOD_INTERCEPTS,
        ValueError,
        r"coefs\[1\] has shape \(2, 1\) but coefs\[0\] has 4 outputs",
    ),
    (
        "third-layer-does-not-chain",
        [np.ones((3, 4)), np.ones((4, 2)), np.ones((3, 1))],
        [np.ones(4), np.ones(2), np.ones(1)],
        ValueError,
        r"^coefs\[2\] has shape \(3, 1\) but coefs\[1\] has 2 outputs: "
        r"coefs\[2\] must have 2 rows for the layers to chain\.$",
    ),
    (
        "intercept-does-not-match",
        GOOD_COEFS,
        [np.ones(6), np.ones(1)],
        ValueError,
        r"intercepts\[0\] must have shape \(4,\)",
    ),
    (
        "2d-intercept",
        GOOD_COEFS,
        [np.ones((4, 1)), np.ones(1)],
        ValueError,
        r"intercepts\[0\] must have shape \(4,\)",
    ),
    (
        "1d-coef",
        [np.ones((3, 4)), np.ones(4)],
        GOOD_INTERCEPTS,
        ValueError,
        r"coefs\[1\] must be 2-D",
    ),
    (
        "nan-coef",
        [GOOD_COEFS[0], _with(GOOD_COEFS[1], (2, 0), np.nan)],
        GOOD_INTERCEPTS,
        ValueError,
        r"coefs\[1\] contains NaN or infinity",
    ),
    (
        "inf-coef",
        [_with(GOOD_COEFS[0], (0, 0), np.inf), GOOD_COEFS[1]],
        GOOD_INTERCEPTS,
        ValueError,
        r"coefs\[0\] contains NaN or infinity",
    ),
    (
        "nan-intercept",
        GOOD_COEFS,
        [GOOD_INTERCEPTS[0], _with(np.ones(1), 0, np.nan)],
        ValueError,
        r"intercepts\[1\] contains NaN or infinity",
    ),
    (
        "inf-intercept",
        GOOD_COEFS,
        [_with(np.ones(4), 3, -np.inf), np.ones(1)],
        ValueError,
        r"intercepts\[0\] contains NaN or infinity",
    ),
    (
        "fewer-intercepts",
        GOOD_COEFS,
        GOOD_INTERCEPTS[:1],
        ValueError,
        "same length, got 2 and 1",
    ),
    ("empty", [], [], ValueError, "non-empty"),
    (
        "array-not-list",
        np.ones((3, 1)),
        np.ones(1),
        TypeError,
        r"^coefs and intercepts must be lists of arrays \(as MLPClassifier's "
        r"coefs_ and intercepts_\), got ndarray and ndarray\.$",
    ),
    (
        "list-entry",
        [[[1.0], [1.0], [1.0]]],
        [np.ones(1)],
        TypeError,
        r"^coefs\[0\] must be an array, got list\.$",
    ),
]


@pytest.fixture
def no_functional_work(monkeypatch):
    """Fail the test if the functional API gets as far as the objective."""
    import sklaplace._functional_inputs as inputs_module

    def heavy(*args, **kwargs):
        raise AssertionError("bad network reached the objective")

    monkeypatch.setattr(inputs_module, "NegLogPosterior", heavy)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@pytest.mark.parametrize(
    "coefs, intercepts, error, match",
    [case[1:] for case in BAD_NETWORKS],
    ids=[case[0] for case in BAD_NETWORKS],
)
def test_functional_api_refuses_a_bad_network_before_any_work(
    no_functional_work, function, coefs, intercepts, error, match
):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(error, match=match):
            FUNCTIONS[function](coefs, intercepts)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_functional_api_refuses_non_finite_X(no_functional_work, function):
    # Each function of the parameter (the body had called log_posterior alone).
    X = _with(FX, (1, 2), np.nan)
    args = [GOOD_COEFS, GOOD_INTERCEPTS, X, FY]
    if function == "log_posterior_hvp":
        args.append(np.ones(sum(w.size for w in GOOD_COEFS + GOOD_INTERCEPTS)))
    called = {
        f.__name__: f
        for f in (
            log_posterior,
            log_posterior_grad,
            log_posterior_hessian,
            log_posterior_hvp,
        )
    }
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        called[function](*args)


def test_good_network_passes_the_checks():
    for function in FUNCTIONS.values():
        assert np.all(np.isfinite(function(GOOD_COEFS, GOOD_INTERCEPTS)))


@pytest.mark.parametrize(
    "budget, error",
    [
        (0, ValueError),
        (-1, ValueError),
        (0.0, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        ("256MB", TypeError),
        (True, TypeError),
    ],
)
def test_memory_budget_must_be_positive(no_functional_work, budget, error):
    match = "^memory_budget must be a positive, finite number of bytes, got "
    if error is TypeError:
        match = (
            rf"^memory_budget must be a number of bytes, got {type(budget).__name__}"
        )
    with pytest.raises(error, match=match):
        log_posterior_hessian(GOOD_COEFS, GOOD_INTERCEPTS, FX, FY, memory_budget=budget)


# ------------------------------------------------ features too large to fit


@pytest.mark.parametrize("hidden", [(), (2,), (3, 2)])
@pytest.mark.parametrize("scale", [1e300, 1e160])
def test_features_too_large_are_refused_alike_with_or_without_hidden_layers(
    no_heavy_work, hidden, scale
):
    # One validation for every architecture: sum_n s_n x_nj^2 overflows, so
    # any curvature would; no fit starts (and no overflow warning is raised).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            ValueError, match=r"curvature .* not finite \(it overflows\)"
        ):
            LaplaceMLPClassifier(hidden, random_state=0).fit(scale * X, Y)


def test_large_weights_overflow_the_feature_check_too(no_heavy_work):
    # sample_weight enters the sums: features of scale 10 with weights whose
    # total (1.2e308) float64 still holds.
    with pytest.raises(ValueError, match=r"exceeds float64 for 3 feature"):
        LaplaceMLPClassifier(**SMALL).fit(10.0 * X, Y, sample_weight=np.full(24, 5e306))


def test_weights_whose_total_overflows_are_refused(no_heavy_work):
    # Small features keep sum(w x^2) finite; two identical rows of weight
    # 1e308 had merged into one of infinite weight (a ZeroDivisionError in
    # Newton-CG, or a "flat prior" message with alpha=1).
    Xs, weight = 0.01 * X.copy(), np.ones(24)
    Xs[1], weight[:2] = Xs[0], 1e308
    y = Y.copy()
    y[1] = y[0]
    with pytest.raises(ValueError, match="more than float64 counts to one row"):
        LaplaceMLPClassifier(**SMALL).fit(Xs, y, sample_weight=weight)


@pytest.mark.parametrize(
    "weight, problem",
    [
        # One row of 1e100 had ended in a "flat prior" error, of 1e300 in
        # NumPy overflow warnings and an unfitted network: beyond 2**53 rows'
        # worth float64 no longer counts one row more.
        (_with(np.ones(24), 0, 1e300), "1e\\+300 rows' worth, more than float64"),
        (_with(np.ones(24), 0, 2.0**53), "more than float64 counts to one row"),
        # 1e-200 on every row had given probabilities of 0.5 without a word.
        (np.full(24, 1e-200), "2.4e-199 rows' worth, numerically zero"),
        (np.full(24, 2.0**-53 / 25), "numerically zero"),
    ],
)
def test_weights_that_float64_cannot_weigh_against_the_prior_are_refused(
    no_heavy_work, weight, problem
):
    with pytest.raises(ValueError, match=problem):
        LaplaceMLPClassifier(**SMALL).fit(X, Y, sample_weight=weight)


def test_weights_just_inside_the_range_float64_can_weigh_are_fitted():
    # The range's ends themselves: a total of 2**53 and of 2**-53 rows.
    for weight in (_with(np.ones(24), 0, 2.0**53 - 23), np.full(24, 2.0**-53 / 24)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fits' own warnings
            clf = LaplaceMLPClassifier(**SMALL).fit(X, Y, sample_weight=weight)
        assert np.all(np.isfinite(clf.predict_proba(X)))


# ------------------------------------------------ features far from unit scale


def test_features_far_from_unit_scale_draw_a_warning_that_names_them():
    # Root mean squares 1e3 (feature 1) and 1e-5 (feature 2); feature 0 is
    # standard normal and not named. The fit goes on.
    Xs = X * np.array([1.0, 1e3, 1e-5])
    with pytest.warns(FeatureScaleWarning, match=r"2 feature\(s\)") as caught:
        clf = LaplaceMLPClassifier(**SMALL).fit(Xs, Y)
    assert np.all(np.isfinite(clf.predict_proba(Xs)))
    message = str(caught[0].message)
    assert "(feature 1)" in message and "(feature 2)" in message
    assert "(feature 0)" not in message and "StandardScaler" in message
    assert "weaker prior" in message and "stronger prior" in message


@pytest.mark.parametrize(
    "factor, said, unsaid", [(1e4, "weaker", "stronger"), (1e-4, "stronger", "weaker")]
)
def test_the_feature_scale_warning_says_what_its_direction_does(factor, said, unsaid):
    # Features all too small had been told that large inputs saturate.
    from sklaplace._validation import check_feature_scale

    with pytest.warns(FeatureScaleWarning) as caught:
        check_feature_scale(X * factor, np.ones(len(X)))
    message = str(caught[0].message)
    assert f"{said} prior" in message and f"{unsaid} prior" not in message


def test_an_all_zero_column_does_not_make_a_large_feature_read_as_tiny():
    # One feature 1e4 times too large beside an all-zero column: the warning
    # names the large feature and says what a large one does, nothing about
    # tiny ones. An all-zero column is not badly scaled (its root mean square,
    # 0, is excepted from the range), so it must not add the "tiny" effect
    # either (as the effects taken over every column, zero ones included,
    # would).
    from sklaplace._validation import check_feature_scale

    Xs = np.c_[X[:, 0] * 1e4, np.zeros(len(X)), X[:, 1]]
    with pytest.warns(FeatureScaleWarning) as caught:
        check_feature_scale(Xs, np.ones(len(Xs)))
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("1 feature(s) have a root mean square outside")
    assert "(feature 0)" in message and "(feature 1)" not in message
    assert "weaker prior" in message
    assert "stronger prior" not in message


@pytest.mark.parametrize("factor", [1e-158, 1e-161, -3e-162, 1e-170, -1e-300])
def test_a_feature_whose_squares_underflow_is_named_with_its_scale(factor):
    # Below ~1e-154 a feature's squares underflow (subnormal, then 0): it had
    # read as an all-zero column (no warning) or with a wrong root mean
    # square (3e-162: 14% off). In the message it is the column's scaled by
    # the factor, to four digits (weighted: row 0 weighs twice). A negative
    # factor scales the column's magnitudes: no entry is positive.
    from sklaplace._validation import check_feature_scale

    Xs = np.c_[X[:, 0], np.abs(X[:, 1]) * factor]
    weight = np.r_[2.0, np.ones(len(X) - 1)]
    with pytest.warns(FeatureScaleWarning, match=r"1 feature\(s\)") as caught:
        check_feature_scale(Xs, weight)
    message = str(caught[0].message)
    expected = np.sqrt(np.sum(weight * X[:, 1] ** 2) / np.sum(weight)) * abs(factor)
    assert f"{expected:.4g} (feature 1)" in message and "stronger prior" in message
    assert "(feature 0)" not in message


def test_all_zero_weights_are_refused_by_our_own_check(monkeypatch):
    # scikit-learn 1.9 refuses all-zero sample weights itself ("non-zero"),
    # so under it the project's own "must not sum to zero" check never ran
    # and ``total > 0`` could become ``total >= 0`` unseen; scikit-learn 1.8
    # (still supported) leaves them to us. Its lenient validation, emulated:
    # our message, raised before the feature-scale check divides by the zero
    # total (which would give a RuntimeWarning, then the "numerically zero"
    # error).
    def lenient(sample_weight, X, dtype=None, ensure_non_negative=False):
        weight = np.asarray(sample_weight, dtype=dtype)
        assert ensure_non_negative and weight.shape == (X.shape[0],)
        return weight

    monkeypatch.setattr(validation_module, "_check_sample_weight", lenient)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="must not sum to zero"):
            validate_fit_data(LaplaceMLPClassifier(), X, Y, np.zeros(len(X)))
        # The emulation lets valid weights through unchanged.
        weight = validate_fit_data(LaplaceMLPClassifier(), X, Y, np.ones(len(X)))[2]
    np.testing.assert_array_equal(weight, np.ones(len(X)))


def test_unit_scale_zero_columns_and_zero_weight_rows_draw_no_warning():
    # An all-zero column is not badly scaled, and a row of weight 0 is not
    # fitted (it equals dropping the row), so its huge value does not count.
    Xs = np.c_[X, np.zeros(len(X))]
    Xs[0, 0] = 1e6
    weight = np.r_[0.0, np.ones(len(X) - 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureScaleWarning)
        LaplaceMLPClassifier(**SMALL).fit(Xs, Y, sample_weight=weight)
    with pytest.warns(FeatureScaleWarning, match="feature 0"):
        LaplaceMLPClassifier(**SMALL).fit(Xs, Y)


@pytest.mark.parametrize("weight", [1e-8, 1e6])
def test_the_feature_scale_ignores_a_weight_factor_common_to_all_rows(weight):
    # Only the weights' ratios weigh the rows: unit-scale features never warn.
    from sklaplace._validation import check_feature_scale

    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureScaleWarning)
        check_feature_scale(X, np.full(len(X), weight))


def test_the_feature_scale_weighs_rows_as_the_fit_does():
    # Half the rows are 1e4 times larger but weigh 1e-12: the weighted root
    # mean square is about 1 (no warning); unweighted it would be about 7e3.
    from sklaplace._validation import check_feature_scale

    Xs = np.random.RandomState(0).normal(size=(20, 2))
    Xs[:10] *= 1e4
    weight = np.r_[np.full(10, 1e-12), np.ones(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureScaleWarning)
        check_feature_scale(Xs, weight)
    with pytest.warns(FeatureScaleWarning):
        check_feature_scale(Xs, np.ones(20))


def test_a_class_with_a_small_total_weight_is_still_a_class():
    """Any positive weight counts: a class whose rows weigh 0.24 in all is kept.

    Only a class of weight exactly 0 is dropped (it equals dropping its rows),
    so a problem whose second class weighs less than one row is still binary.
    """
    from sklaplace._validation import validate_fit_data

    weight = np.where(Y == 1, 0.02, 1.0)  # 12 rows of class 1: 0.24 in all
    _, y_index, sample_weight, classes = validate_fit_data(
        LaplaceMLPClassifier(), X, Y, weight
    )
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_array_equal(y_index, Y)
    np.testing.assert_array_equal(sample_weight, weight)


@pytest.mark.parametrize("n_odd, more", [(1, None), (3, None), (5, "and 2 more")])
def test_the_feature_scale_warning_counts_the_features_it_does_not_name(n_odd, more):
    """The warning names three features and counts the rest ("and 2 more")."""
    from sklaplace._validation import check_feature_scale

    Xs = np.c_[X, X] * np.r_[np.full(n_odd, 1e4), np.ones(6 - n_odd)]
    with pytest.warns(FeatureScaleWarning, match=rf"^{n_odd} feature\(s\)") as caught:
        check_feature_scale(Xs, np.ones(len(Xs)))
    message = str(caught[0].message)
    assert message.count("(feature ") == min(n_odd, 3)
    if more is None:
        assert " more" not in message
    else:
        assert f"(feature 2) {more}." in message


def test_non_finite_rows_are_named_across_all_arrays():
    """``check_finite_rows`` names the rows where any array is not finite.

    Rows 1 (``inf`` in a 2-D array) and 4 (``nan`` in a 3-D one) of 6; more
    than five rows are listed as the first five and ``...``; finite arrays
    pass.
    """
    from sklaplace._validation import check_finite_rows

    logits, cov = np.ones((6, 2)), np.ones((6, 2, 2))
    check_finite_rows(np, "logits", logits, cov)
    logits[1, 0], cov[4, 1, 1] = np.inf, np.nan
    pattern = (
        r"The logits overflowed \(are not finite\) for 2 of 6 samples "
        r"\(rows \[1, 4\]\):"
    )
    with pytest.raises(ValueError, match=pattern):
        check_finite_rows(np, "logits", logits, cov)
    with pytest.raises(
        ValueError, match=r"for 6 of 6 samples \(rows \[0, 1, 2, 3, 4\], \.\.\.\)"
    ):
        check_finite_rows(np, "probabilities", np.full((6, 1), np.nan))


def test_identical_rows_merge_into_one_canonical_weighted_row():
    X = np.array([[1.0, 2.0], [0.5, -1.0], [1.0, 2.0], [1.0, 2.0], [3.0, 0.0]])
    y = np.array([0, 1, 0, 1, 0])
    weight = np.array([1.0, 2.0, 0.5, 4.0, 0.0])
    merged = merge_identical_rows(X, y, weight)
    # (1, 2) with label 0 twice: one row of weight 1.5; with label 1: its
    # own row; the weight-0 row is dropped.
    as_set = {(tuple(x), int(label), w) for x, label, w in zip(*merged, strict=True)}
    assert as_set == {((1.0, 2.0), 0, 1.5), ((1.0, 2.0), 1, 4.0), ((0.5, -1.0), 1, 2.0)}
    # -0.0 equals 0.0 (np.round(-0.1) gives -0.0): the rows merge.
    signed = merge_identical_rows(
        np.array([[0.0, 1.0], [-0.0, 1.0]]), np.array([0, 0]), np.ones(2)
    )
    assert signed[0].shape == (1, 2) and signed[2][0] == 2.0
    # Any order of the rows gives the same arrays in the same order.
    order = [4, 3, 1, 0, 2]
    for a, b in zip(merged, merge_identical_rows(X[order], y[order], weight[order])):
        np.testing.assert_array_equal(a, b)


def test_non_finite_moderated_logits_are_refused_naming_the_rows(fitted, monkeypatch):
    """The predictive's own output is checked too, after the logits' Gaussian.

    Finite logits and covariances give finite moderated logits with every
    link in exact arithmetic, so a stand-in predictive returns an ``inf`` in
    row 2 and a ``nan`` in row 5: every method that goes through it refuses
    them, naming those rows of the 24 and what overflowed; the latent
    Gaussian, which does not, is unaffected.
    """
    import sklaplace._fitted as fitted_module

    original = fitted_module.moderated_logits

    def overflowing(*args, **kwargs):
        logits = np.array(original(*args, **kwargs))
        logits[2, 0], logits[5, 0] = np.inf, np.nan
        return logits

    monkeypatch.setattr(fitted_module, "moderated_logits", overflowing)
    pattern = (
        r"^The moderated logits overflowed \(are not finite\) for 2 of 24 "
        r"samples \(rows \[2, 5\]\):"
    )
    for method in (
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
    ):
        with pytest.raises(ValueError, match=pattern):
            getattr(fitted, method)(X)
    assert np.all(np.isfinite(fitted.latent_mean_and_variance(X)[0]))


@pytest.mark.parametrize(
    "n_bad, listed", [(5, "[0, 1, 2, 3, 4]"), (6, "[0, 1, 2, 3, 4], ...")]
)
def test_the_overflow_error_lists_five_features_and_marks_more(n_bad, listed):
    """Five overflowing columns are listed in full; a sixth adds ``, ...``."""
    from sklaplace._validation import check_feature_scale

    Xs = np.c_[X, X, X][:, :7] * np.r_[np.full(n_bad, 1e200), np.ones(7 - n_bad)]
    largest = f"{np.max(np.abs(Xs)):.3g}"
    expected = (
        f"for {n_bad} feature(s) (columns {listed}; largest |X| = {largest}). "
        "Standardise the features"
    )
    with pytest.raises(ValueError) as caught:
        check_feature_scale(Xs, np.ones(len(Xs)))
    assert expected in str(caught.value)


def test_the_feature_scale_warning_text_in_full():
    """The whole message of one feature too large and one too small."""
    from sklaplace._validation import check_feature_scale

    Xs = X * np.array([1.0, 1e4, 1e-4])
    rms = np.sqrt(np.mean(Xs**2, axis=0))  # unit weights: the plain RMS
    expected = (
        "2 feature(s) have a root mean square outside [0.001, 100]: "
        f"{rms[1]:.4g} (feature 1), {rms[2]:.4g} (feature 2). The prior treats "
        "every weight alike: a large feature is in effect under a far weaker "
        "prior and saturates or swamps the first layer; a tiny one is in effect "
        "under a far stronger prior, which can flatten the fit to the base rate. "
        "Standardise the features, e.g. "
        "make_pipeline(StandardScaler(), LaplaceMLPClassifier())."
    )
    with pytest.warns(FeatureScaleWarning) as caught:
        check_feature_scale(Xs, np.ones(len(Xs)))
    assert [str(w.message) for w in caught] == [expected]


@pytest.mark.parametrize(
    "weight, expected",
    [
        (
            _with(np.ones(24), 0, 1e300),
            "sample_weight sums to 1e+300 rows' worth, more than float64 counts "
            f"to one row ({2.0**53:.3g}): divide the weights",
        ),
        (
            np.full(24, 1e-200),
            "sample_weight sums to 2.4e-199 rows' worth, numerically zero (under "
            f"{2.0**-53:.3g}): the prior would be the posterior to round-off. "
            "Multiply the weights",
        ),
    ],
    ids=["too-large", "too-small"],
)
def test_the_total_weight_error_in_full(no_heavy_work, weight, expected):
    remedy = (
        " by a common factor (only their ratios and the prior's strength "
        "relative to them matter)."
    )
    with pytest.raises(ValueError) as caught:
        LaplaceMLPClassifier(**SMALL).fit(X, Y, sample_weight=weight)
    assert str(caught.value) == expected + remedy


def test_a_total_weight_that_overflows_is_refused_without_a_numpy_warning(
    no_heavy_work,
):
    # Two weights of 1e308 sum to inf: the ValueError, not NumPy's overflow
    # RuntimeWarning on the way to it (the feature-scale check, which runs
    # first, had summed them outside np.errstate).
    weight = _with(np.ones(24), [0, 1], 1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="sums to inf rows' worth, more than"):
            LaplaceMLPClassifier(**SMALL).fit(0.01 * X, Y, sample_weight=weight)


def test_the_zero_weight_class_warning_in_full():
    from sklaplace._validation import validate_fit_data

    y = np.arange(24) % 3
    with pytest.warns(UnweightedClassWarning) as caught:
        validate_fit_data(LaplaceMLPClassifier(), X, y, np.where(y == 2, 0.0, 1.0))
    assert [str(w.message) for w in caught] == [
        "Classes [2] have rows in y but zero total sample_weight: no row of theirs "
        "counts, so their probabilities come from the prior and the other classes' "
        "rows alone (small near those rows, not zero; elsewhere what the network "
        "extrapolates). Drop those rows to leave the classes out of classes_ "
        "(where a meta-estimator draws such weights, as BaggingClassifier's small "
        "bootstraps do, this warning can be ignored)."
    ]
