"""Reliability, bad input: a ValueError or TypeError naming the problem, early.

Every bad input must be refused by validation, before the MAP solver or the
curvature is reached: the tests replace both by functions that fail the test
if they are ever called.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

import sklaplace._fitting as fitting_module
from sklaplace import LaplaceMLPClassifier

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

    monkeypatch.setattr(fitting_module, "minimize_map", heavy)
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
    (
        "one-weighted-class",
        X,
        Y,
        (Y == 0).astype(float),
        ValueError,
        "positive sample_weight",
    ),
    ("negative-weight", X, Y, _with(np.ones(24), 2, -1.0), ValueError, "Negative"),
    ("zero-weights", X, Y, np.zeros(24), ValueError, "non-zero"),
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
    ("csr-X", sp.csr_matrix(X), Y, None, TypeError, r"dense data is required.*toarray"),
    ("csc-X", sp.csc_array(X), Y, None, TypeError, r"dense data is required.*toarray"),
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
    ("hidden_layer_sizes", (0,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (-2,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (3, 0), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (2.5,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", ("3",), "hidden_layer_sizes"),
    ("hidden_layer_sizes", ((3, 2),), "hidden_layer_sizes"),
    ("hidden_layer_sizes", (np.nan,), "hidden_layer_sizes"),
    ("hidden_layer_sizes", 3, "hidden_layer_sizes"),
    ("hidden_layer_sizes", None, "hidden_layer_sizes"),
    ("alpha", -1.0, "alpha"),
    ("alpha", np.nan, "alpha"),
    ("alpha", np.inf, "alpha"),
    ("alpha", 1 + 1j, "alpha"),
    ("alpha", "evidenc", "alpha"),
    ("alpha", [1.0, 2.0, 3.0], r"alpha must be a scalar or have one value per layer"),
    ("alpha", [[1.0, 2.0]], "alpha"),
    ("alpha", [1.0, -1.0], r"alpha must be finite and >= 0"),
    ("alpha", [1.0, np.nan], r"alpha must be finite and >= 0"),
    ("alpha", [1.0, np.inf], r"alpha must be finite and >= 0"),
    ("bias_prior_precision", -1.0, "bias_prior_precision"),
    ("bias_prior_precision", np.nan, "bias_prior_precision"),
    ("bias_prior_precision", "flat", "bias_prior_precision"),
    ("bias_prior_precision", [1.0, 2.0, 3.0], "bias_prior_precision must be a scalar"),
    ("bias_prior_precision", [1.0, -1.0], "bias_prior_precision must be finite"),
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
    ("sparse", sp.csr_matrix(X), TypeError, "toarray"),
]


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba"])
@pytest.mark.parametrize(
    "X_bad, error, match",
    [case[1:] for case in BAD_PREDICT],
    ids=[case[0] for case in BAD_PREDICT],
)
def test_bad_predict_input_is_refused(fitted, method, X_bad, error, match):
    with pytest.raises(error, match=match):
        getattr(fitted, method)(X_bad)


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        LaplaceMLPClassifier().predict_proba(X)


def test_sparse_message_says_how_to_densify():
    # scikit-learn's own message is clear: a TypeError that names .toarray().
    with pytest.raises(TypeError) as info:
        LaplaceMLPClassifier(**SMALL).fit(sp.csr_matrix(X), Y)
    assert "Sparse data was passed" in str(info.value)
    assert ".toarray()" in str(info.value)
    dense = LaplaceMLPClassifier(**SMALL).fit(sp.csr_matrix(X).toarray(), Y)
    np.testing.assert_array_equal(
        dense.predict(X), LaplaceMLPClassifier(**SMALL).fit(X, Y).predict(X)
    )


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
