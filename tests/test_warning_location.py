"""Every warning names the caller's line, not a line inside sklaplace.

A warning's ``filename`` is what the user sees first ("file:line:
ConvergenceWarning: ..."). Raised deep inside ``fit`` -- in a solver, a
refit of the evidence's tuning or the posterior -- it must point at the
user's own call (or at the scikit-learn tool that called ``fit``).
"""

import os
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import sklaplace
from sklaplace import LaplaceMLPClassifier, _warnings, log_posterior_hessian
from sklaplace.exceptions import (
    BaseRateWarning,
    FeatureScaleWarning,
    LaplaceApproximationWarning,
    SampleWeightScaleWarning,
    UnweightedClassWarning,
)

X, Y = make_classification(60, 4, n_informative=3, n_redundant=0, random_state=0)
PACKAGE_DIR = os.path.dirname(os.path.abspath(sklaplace.__file__)) + os.sep
FIXED = dict(alpha=1.0, prior_precision_scale=1.0, random_state=0)


def _only_from_here(record, category):
    caught = [w for w in record if issubclass(w.category, category)]
    assert caught, f"no {category.__name__}"
    assert [w.filename for w in caught] == [__file__] * len(caught)


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton"])
def test_solver_convergence_warnings_point_at_the_fit_call(solver):
    clf = LaplaceMLPClassifier((3,), solver=solver, max_iter=1, **FIXED)
    with pytest.warns(ConvergenceWarning) as record:
        clf.fit(X, Y)
    _only_from_here(record, ConvergenceWarning)


def test_warnings_of_the_kept_evidence_refit_point_at_the_fit_call():
    # Re-emitted after MacKay's refits (only the kept refit's warnings); the
    # tolerance is out of reach, so every refit warns.
    clf = LaplaceMLPClassifier(
        (3,), alpha="evidence", solver="lbfgs", max_iter=2, tol=1e-15, random_state=0
    )
    with pytest.warns(ConvergenceWarning) as record:
        clf.fit(X, Y)
    _only_from_here(record, ConvergenceWarning)


@pytest.mark.parametrize("alpha", [1.0, "evidence"])
def test_a_filter_on_the_callers_module_silences_the_fits_warnings(alpha):
    # A refit's warnings are held back and issued again once a refit is
    # kept; issued with the file's path for module, they had escaped a
    # filter on the caller's module (as MLPClassifier's do not).
    clf = LaplaceMLPClassifier((3,), alpha=alpha, max_iter=1, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ConvergenceWarning, module=__name__)
        clf.fit(X, Y)
    assert not [w for w in record if issubclass(w.category, ConvergenceWarning)]
    with pytest.warns(ConvergenceWarning) as record:  # not silenced otherwise
        clf.fit(X, Y)
    _only_from_here(record, ConvergenceWarning)


def test_input_warnings_point_at_the_fit_call():
    with pytest.warns(FeatureScaleWarning) as record:
        LaplaceMLPClassifier((3,), **FIXED).fit(X * [1.0, 300.0, 1.0, 1.0], Y)
    _only_from_here(record, FeatureScaleWarning)


def test_functional_api_warnings_point_at_the_call():
    coefs = [np.zeros((4, 3)), np.zeros((3, 1))]
    intercepts = [np.zeros(3), np.zeros(1)]
    with pytest.warns(FutureWarning) as record:
        log_posterior_hessian(coefs, intercepts, X, Y, kind="diag")
    _only_from_here(record, FutureWarning)


def test_inside_a_pipeline_the_warning_points_outside_the_package():
    pipe = make_pipeline(
        FunctionTransformer(), LaplaceMLPClassifier((3,), max_iter=1, **FIXED)
    )
    with pytest.warns(ConvergenceWarning) as record:
        pipe.fit(X, Y)
    files = {w.filename for w in record if issubclass(w.category, ConvergenceWarning)}
    assert files and not any(f.startswith(PACKAGE_DIR) for f in files)


def test_only_files_inside_the_package_directory_are_passed_over():
    """``warn`` passes over files UNDER the package's directory only.

    A sibling whose path merely starts with the same characters
    (``.../sklaplace_plugin/m.py``, ``.../sklaplace_script.py``: a user's
    code) is the caller and must be named; a prefix without the trailing
    separator passed those over too.
    """
    package = os.path.dirname(os.path.abspath(sklaplace.__file__))
    assert _warnings._passed_over(os.path.join(package, "_fitting.py"))
    assert not _warnings._passed_over(package + "_plugin" + os.sep + "m.py")
    assert not _warnings._passed_over(package + "_script.py")


@pytest.mark.parametrize(
    "category",
    [
        LaplaceApproximationWarning,
        FeatureScaleWarning,
        UnweightedClassWarning,
        BaseRateWarning,
        SampleWeightScaleWarning,
    ],
)
def test_sklaplace_warnings_are_user_warnings(category):
    """Every warning of the package is a ``UserWarning``, as the docstrings'
    examples assume: ``simplefilter("error", UserWarning)`` raises it (a
    ``RuntimeWarning`` or bare ``Warning`` base slips through such filters).
    """
    assert issubclass(category, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(category):
            warnings.warn("message", category, stacklevel=1)


def test_held_back_warnings_go_to_the_innermost_handler_that_takes_them():
    """``recorded`` keeps a thread's warnings in order; ``ignored`` drops its
    categories (subclasses too) and passes the others outwards; outside
    both, a warning is issued from the caller's line."""
    issue = _warnings.warn
    with _warnings.recorded() as outer:
        issue("a", FeatureScaleWarning)
        with _warnings.ignored(ConvergenceWarning, LaplaceApproximationWarning):
            issue("dropped", ConvergenceWarning)
            issue("passed on", BaseRateWarning)
            with _warnings.recorded() as inner:
                issue("inner", ConvergenceWarning)
            issue("dropped too", LaplaceApproximationWarning)
        issue("b", ConvergenceWarning)
    assert outer == [
        ("a", FeatureScaleWarning),
        ("passed on", BaseRateWarning),
        ("b", ConvergenceWarning),
    ]
    assert inner == [("inner", ConvergenceWarning)]
    with pytest.warns(FeatureScaleWarning, match="^out$") as record:
        issue("out", FeatureScaleWarning)
    assert [w.filename for w in record] == [__file__]
