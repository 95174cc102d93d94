"""sklaplace: a Laplace-approximation MLP classifier for scikit-learn."""

from sklaplace._estimator import LaplaceMLPClassifier
from sklaplace._functional import (
    log_posterior,
    log_posterior_grad,
    log_posterior_hessian,
    log_posterior_hvp,
)
from sklaplace._pruning import prune, saliencies

__version__ = "0.1.0"

__all__ = [
    "LaplaceMLPClassifier",
    "__version__",
    "log_posterior",
    "log_posterior_grad",
    "log_posterior_hessian",
    "log_posterior_hvp",
    "prune",
    "saliencies",
]
