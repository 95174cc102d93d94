"""The public docstrings against the code they describe.

Every parameter of a public callable is documented, in signature order,
with the default the signature has; every fitted attribute the estimator
sets is in its ``Attributes`` section and every documented one is set. The
sections are read with a small numpydoc parser written here, so the test
needs nothing beyond the test extras.
"""

import ast
import inspect
import re
import warnings

import numpy as np
import pytest

import sklaplace
import sklaplace.metrics
from sklaplace import LaplaceMLPClassifier, prune

_ENTRY = re.compile(r"^(\w+)\s*:\s*(.*)$")


def _section(doc, title):
    """The ``name : type`` entries of a numpydoc section, in order."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index(title) + 2  # past the title and its underline
    entries = {}
    for line, after in zip(lines[start:], [*lines[start + 1 :], ""]):
        if set(after) == {"-"}:  # the next section's title
            break
        match = _ENTRY.match(line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def _documented_default(type_text):
    match = re.search(r"default=(.+)$", type_text)
    return None if match is None else ast.literal_eval(match.group(1).strip())


PUBLIC_CALLABLES = [
    LaplaceMLPClassifier,
    *(getattr(sklaplace, name) for name in sklaplace.__all__[2:]),
    *(getattr(sklaplace.metrics, name) for name in sklaplace.metrics.__all__),
    *(
        getattr(LaplaceMLPClassifier, name)
        for name in (
            "fit",
            "predict",
            "predict_proba",
            "predict_log_proba",
            "decision_function",
            "latent_mean_and_variance",
            "log_marginal_likelihood",
        )
    ),
]


@pytest.mark.parametrize("obj", PUBLIC_CALLABLES, ids=lambda obj: obj.__qualname__)
def test_every_parameter_is_documented_with_its_default(obj):
    signature = inspect.signature(obj)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    documented = _section(obj.__doc__, "Parameters")
    assert list(documented) == [p.name for p in params]
    for p in params:
        default = _documented_default(documented[p.name])
        if p.default is inspect.Parameter.empty:
            assert default is None, p.name
        else:
            assert default == p.default, p.name


def _fitted_attributes(estimator):
    return {k for k in vars(estimator) if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize(
    "params, n_classes, frame",
    [
        ({}, 3, True),
        ({"alpha": 1.0, "prior_precision_scale": 1.0}, 2, True),
        ({"solver": "lbfgs", "hessian_structure": "diag"}, 3, False),
        ({"hessian_structure": "kron", "subset_of_weights": "last_layer"}, 3, False),
    ],
)
def test_the_fitted_attributes_are_the_documented_ones(params, n_classes, frame):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4))
    y = np.arange(60) % n_classes
    if frame:
        X = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    estimator = LaplaceMLPClassifier((3,), random_state=0, max_iter=50, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X, y)
    documented = set(_section(LaplaceMLPClassifier.__doc__, "Attributes"))
    # As in scikit-learn, feature names are kept only from a DataFrame.
    expected = documented if frame else documented - {"feature_names_in_"}
    # The pruned mask exists only on an estimator prune() returns.
    assert _fitted_attributes(estimator) == expected - {"pruned_mask_"}
    if params.get("subset_of_weights") == "last_layer":
        return  # pruning needs every parameter's posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = prune(estimator, 0.2)
    assert _fitted_attributes(pruned) == expected
