"""scikit-learn's estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklaplace import LaplaceMLPClassifier

ESTIMATORS = [
    LaplaceMLPClassifier(
        (8,),
        activation="tanh",
        solver="newton",
        max_iter=100,
        tol=1e-10,
        random_state=0,
    ),
    LaplaceMLPClassifier(
        (8,),
        activation="tanh",
        solver="lbfgs",
        hessian="exact",
        max_iter=500,
        tol=1e-8,
        random_state=0,
    ),
    LaplaceMLPClassifier(
        (), bias_prior_precision=0.0, max_iter=100, tol=1e-10, random_state=0
    ),
]


@parametrize_with_checks(ESTIMATORS, xfail_strict=True)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
