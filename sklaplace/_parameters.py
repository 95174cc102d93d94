"""The values each parameter of LaplaceMLPClassifier accepts.

scikit-learn checks them (``_parameter_constraints``) before ``fit`` does
anything; kept apart from the input checks of :mod:`sklaplace._validation`,
which the fitted model's methods import, as these name the solvers, links
and backends.
"""

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions

from sklaplace._activations import ACTIVATIONS
from sklaplace._backend import BACKENDS
from sklaplace._predictive import PREDICTIVES
from sklaplace._solvers import SOLVERS

__all__ = ["PARAMETER_CONSTRAINTS"]

#: Each parameter's accepted values, in scikit-learn's constraint language.
PARAMETER_CONSTRAINTS = {
    "hidden_layer_sizes": [
        "array-like",
        Interval(Integral, 1, None, closed="left"),
    ],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "alpha": [
        Interval(Real, 0, None, closed="left"),
        "array-like",
        StrOptions({"auto", "evidence", "evidence_per_layer", "validation"}),
    ],
    "bias_prior_precision": [Interval(Real, 0, None, closed="left"), "array-like"],
    "solver": [StrOptions({"auto", *SOLVERS})],
    "hessian": [StrOptions({"ggn", "exact"})],
    "hessian_structure": [StrOptions({"auto", "full", "kron", "diag"})],
    "subset_of_weights": [StrOptions({"all", "last_layer"})],
    "prior_precision_scale": [
        Interval(Real, 0, None, closed="neither"),
        StrOptions({"auto", "cv", "evidence", "loo", "validation"}),
    ],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "residual_variance": [
        Interval(Real, 0, None, closed="left"),
        StrOptions({"auto"}),
    ],
    "link_approx": [StrOptions(set(PREDICTIVES))],
    "n_mc_samples": [Interval(Integral, 1, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "warm_start": ["boolean"],
    "backend": [StrOptions(set(BACKENDS))],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}
