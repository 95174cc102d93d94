"""Public functional API: the log posterior of any MLP and its derivatives.

These functions answer "what is the Hessian of the log posterior of this
network on these data?" without fitting anything. ``coefs`` and
``intercepts`` use MLPClassifier's layout, so a fitted ``MLPClassifier``'s
own ``coefs_`` and ``intercepts_`` can be passed as they are.

Conventions shared by every function here:

* One output unit means a Bernoulli likelihood (``y`` in {0, 1}); ``K > 1``
  output units mean a categorical likelihood (``y`` in {0, ..., K - 1}).
* The value is ``sum_n s_n log p(y_n | f_n) - 1/2 theta' A theta`` (no
  normalising constants), where ``A`` is diagonal: ``alpha`` on the weights,
  ``bias_prior_precision`` on the biases.
* Gradients, Hessians and vectors use the flat parameter order
  ``theta = [W_0.ravel(), b_0, W_1.ravel(), b_1, ...]`` (C order).
* Derivatives are those of the LOG posterior: the Hessian is negative
  definite at a strict mode, and its negative is the posterior precision.
* Outputs are arrays of the coefficients' namespace (NumPy, CuPy, ...).
"""

import numpy as np

from sklaplace._curvature import CURVATURE_BUILDERS, check_finite_curvature
from sklaplace._functional_inputs import finite_vector, network_objective
from sklaplace._warnings import warn

__all__ = [
    "log_posterior",
    "log_posterior_grad",
    "log_posterior_hessian",
    "log_posterior_hvp",
]

_HESSIAN_KINDS = {
    "exact": ("exact", "full"),
    "ggn": ("ggn", "full"),
    "exact_diag": ("exact", "diag"),
    "ggn_diag": ("ggn", "diag"),
}
#: Former names, still accepted with a FutureWarning: "diag" was the GGN's
#: diagonal, while the estimator's ``hessian_structure="diag"`` is the
#: diagonal of whichever curvature ``hessian`` names.
_RENAMED_KINDS = {"diag": "ggn_diag"}


_PARAMETERS_DOC = """coefs : list of arrays
        ``coefs[i]`` of shape ``(fan_in_i, fan_out_i)``, as
        ``MLPClassifier.coefs_``. The last layer has 1 unit (binary) or K.
    intercepts : list of arrays
        ``intercepts[i]`` of shape ``(fan_out_i,)``, as
        ``MLPClassifier.intercepts_``.
    X : array-like of shape (n_samples, n_features)
        Inputs: an array of the coefficients' namespace, or (with NumPy
        coefficients) anything ``np.asarray`` takes, another library's
        array (copied to the host) or a SciPy sparse matrix (densified).
    y : array-like of shape (n_samples,)
        Class indices: 0/1 with one output unit, 0..K-1 with K units."""

_KEYWORDS_DOC = """activation : str, default="relu"
        Hidden-layer activation: "identity", "logistic", "tanh", "relu",
        "softplus" or "elu".
    alpha : float or array-like, default=1e-4
        Prior precision of the weights: a scalar, one value per layer, or one
        value per parameter (then biases too). Values must be in the range
        ``[0.0, inf)``. MLPClassifier's ``alpha`` has this meaning.
    bias_prior_precision : float or array-like of shape (n_layers,), default=0.0
        Prior precision of the biases (0 is a flat prior, MLPClassifier's
        convention). Values must be in the range ``[0.0, inf)``.
    sample_weight : array-like of shape (n_samples,), default=None
        Per-sample weights ``s_n`` multiplying each log likelihood term."""


def log_posterior(
    coefs,
    intercepts,
    X,
    y,
    *,
    activation="relu",
    alpha=1e-4,
    bias_prior_precision=0.0,
    sample_weight=None,
):
    obj, theta = network_objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite(obj.xp, -obj.loss(theta), "value")


def log_posterior_grad(
    coefs,
    intercepts,
    X,
    y,
    *,
    activation="relu",
    alpha=1e-4,
    bias_prior_precision=0.0,
    sample_weight=None,
):
    obj, theta = network_objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite(obj.xp, -obj.loss_gradient(theta)[1], "gradient")


def log_posterior_hessian(
    coefs,
    intercepts,
    X,
    y,
    *,
    kind="exact",
    activation="relu",
    alpha=1e-4,
    bias_prior_precision=0.0,
    sample_weight=None,
    memory_budget=None,
):
    if isinstance(kind, str) and kind in _RENAMED_KINDS:
        warn(
            f"kind={kind!r} is renamed kind={_RENAMED_KINDS[kind]!r} (the "
            "diagonal of the generalised Gauss-Newton matrix; 'exact_diag' is "
            f"the exact Hessian's diagonal); {kind!r} will be removed in a "
            "future release.",
            FutureWarning,
        )
        kind = _RENAMED_KINDS[kind]
    if not isinstance(kind, str) or kind not in _HESSIAN_KINDS:
        raise ValueError(f"kind must be one of {sorted(_HESSIAN_KINDS)}, got {kind!r}.")
    obj, theta = network_objective(
        coefs,
        intercepts,
        X,
        y,
        activation,
        alpha,
        bias_prior_precision,
        sample_weight,
        memory_budget,
    )
    with np.errstate(over="ignore", invalid="ignore"):
        hessian = -CURVATURE_BUILDERS[_HESSIAN_KINDS[kind]](obj, theta)
    check_finite_curvature(obj.xp, hessian)
    return hessian


def log_posterior_hvp(
    coefs,
    intercepts,
    X,
    y,
    v,
    *,
    kind="exact",
    activation="relu",
    alpha=1e-4,
    bias_prior_precision=0.0,
    sample_weight=None,
):
    if not isinstance(kind, str) or kind not in ("exact", "ggn"):
        raise ValueError(f"kind must be 'exact' or 'ggn', got {kind!r}.")
    obj, theta = network_objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    # In the namespace of theta, whatever v came as (a list, NumPy).
    v = finite_vector(obj.xp, v, theta.dtype)
    if v.shape != theta.shape:
        raise ValueError(f"v must have shape ({theta.shape[0]},), got {v.shape}.")
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite(obj.xp, -obj.hessp(theta, v, kind), "Hessian-vector product")


def _finite(xp, value, what):
    """Return ``value``; raise ``ValueError`` where an entry overflowed.

    The log posterior had been NaN (``inf - inf``) or ``-inf``, and its
    derivatives NaN or infinite, where a term overflows the network's dtype.
    """
    if not bool(xp.all(xp.isfinite(value))):
        raise ValueError(
            f"The log posterior's {what} is not finite: the network's logits "
            "overflow its dtype, or the prior term (alpha * theta**2) or the "
            "weighted rows do. Standardise the features, or shrink the weights, "
            "alpha or sample_weight."
        )
    return value


log_posterior.__doc__ = f"""Log posterior of an MLP classifier, up to a constant.

    ``sum_n s_n log p(y_n | f_n) - 1/2 theta' A theta`` with no normalising
    constants (the parameter layout: the user guide's "Parameter layout").

    Parameters
    ----------
    {_PARAMETERS_DOC}
    {_KEYWORDS_DOC}

    Returns
    -------
    value : 0-d array
        In the namespace of the coefficients (with NumPy, a ``numpy.float64``
        scalar).

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace import log_posterior
    >>> X = np.array([[0.0], [1.0]]); y = np.array([0, 1])
    >>> coefs, intercepts = [np.zeros((1, 1))], [np.zeros(1)]
    >>> float(log_posterior(coefs, intercepts, X, y))  # 2 log(1/2)
    -1.386...
    """

log_posterior_grad.__doc__ = f"""Gradient of :func:`log_posterior` in ``theta``.

    Computed by backpropagation: ``-sum_n J_n' r_n - A theta`` with the
    residual ``r_n = s_n (p_n - y_n)``.

    Parameters
    ----------
    {_PARAMETERS_DOC}
    {_KEYWORDS_DOC}

    Returns
    -------
    grad : array of shape (n_params,)
        In the order ``[W_0.ravel(), b_0, W_1.ravel(), b_1, ...]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace import log_posterior_grad
    >>> X = np.array([[0.0], [1.0]]); y = np.array([1, 1])
    >>> log_posterior_grad([np.zeros((1, 1))], [np.zeros(1)], X, y)
    array([0.5, 1. ])
    """

log_posterior_hessian.__doc__ = f"""Hessian of :func:`log_posterior` in ``theta``.

    Parameters
    ----------
    {_PARAMETERS_DOC}
    kind : {{"exact", "ggn", "exact_diag", "ggn_diag"}}, default="exact"
        ``"exact"``: both terms, ``-(sum_n J_n' Lambda_n J_n + sum_nk r_nk
        d2f_nk + A)``, by second-order backprop. ``"ggn"``: the generalised
        Gauss-Newton (outer-product) approximation ``-(sum_n J_n' Lambda_n J_n
        + A)``, negative definite whenever ``A`` is positive definite.
        ``"ggn_diag"`` and ``"exact_diag"``: the diagonal of ``"ggn"`` or of
        ``"exact"`` as a vector, computed without any ``n_params x n_params``
        matrix (``O(n_samples * n_params)`` for the GGN's). The former name
        ``"diag"`` (the GGN's diagonal) still works, with a ``FutureWarning``.
    {_KEYWORDS_DOC}
    memory_budget : int, default=None
        Bytes one chunk of per-sample intermediates may take; rows are summed
        in chunks that fit it. None: ``sklaplace._memory.DEFAULT_MEMORY_BUDGET``
        (256 MiB) as it is at the call.

    Returns
    -------
    hessian : array of shape (n_params, n_params), or (n_params,) for a diagonal
        In the order ``[W_0.ravel(), b_0, W_1.ravel(), b_1, ...]``. Its negative
        is the Laplace posterior precision at a mode.

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace import log_posterior_hessian
    >>> X = np.array([[0.0], [1.0]]); y = np.array([0, 1])
    >>> log_posterior_hessian([np.zeros((1, 1))], [np.zeros(1)], X, y, alpha=1.0)
    array([[-1.25, -0.25],
           [-0.25, -0.5 ]])
    """

log_posterior_hvp.__doc__ = f"""Hessian-vector product of :func:`log_posterior`.

    Pearlmutter's R-operator: about two gradients' cost, no matrix formed.

    Parameters
    ----------
    {_PARAMETERS_DOC}
    v : array of shape (n_params,)
        Direction, in the order of ``theta``.
    kind : {{"exact", "ggn"}}, default="exact"
        Exact Hessian product or generalised Gauss-Newton product
        (``Jv -> Lambda Jv -> J' Lambda Jv``), prior included.
    {_KEYWORDS_DOC}

    Returns
    -------
    hv : array of shape (n_params,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace import log_posterior_hvp
    >>> X = np.array([[0.0], [1.0]]); y = np.array([0, 1])
    >>> log_posterior_hvp([np.zeros((1, 1))], [np.zeros(1)], X, y, np.array([1.0, 0.0]),
    ...                   alpha=1.0)
    array([-1.25, -0.25])
    """
