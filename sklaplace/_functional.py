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

import math
from numbers import Real

import numpy as np

from sklaplace._activations import ACTIVATIONS
from sklaplace._backend import get_namespace, is_array, is_numpy_namespace, on_host
from sklaplace._curvature import CURVATURE_BUILDERS
from sklaplace._likelihood import Bernoulli, Categorical
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior
from sklaplace._prior import prior_precision_vector
from sklaplace._validation import dense
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


def _as_host(value):
    """Return a NumPy view of an array of any namespace, or of any array-like."""
    return np.asarray(on_host(value))


def _numeric_host(value, name):
    """``_as_host(value)`` as float64, or a TypeError naming ``name``.

    Real numbers only: a complex value would lose its imaginary part.
    """
    host = _as_host(value)
    if not (
        np.issubdtype(host.dtype, np.integer)
        or np.issubdtype(host.dtype, np.floating)
        or host.dtype == bool
    ):
        hint = " (for alpha='evidence' use LaplaceMLPClassifier)" * (name == "alpha")
        raise TypeError(
            f"{name} must be a real number or an array of them, got {value!r}{hint}."
        )
    return host.astype(np.float64)


def _finite_in(xp, array, dtype, message):
    """``array`` in ``xp`` as ``dtype``; ``ValueError(message)`` if not finite there.

    Checked after the cast: 1e39 is finite in float64 and inf in float32.
    """
    with np.errstate(over="ignore"):  # the overflow is refused just below
        cast = xp.asarray(array, dtype=dtype)
    if not bool(xp.all(xp.isfinite(cast))):
        raise ValueError(message)
    return cast


def _floating_weights(xp, coefs, intercepts):
    """Return the weights in a real floating dtype; TypeError naming a bad entry.

    Integers and booleans become float64, as scikit-learn's ``check_array``
    makes them: computed in an integer dtype, alpha, the sample weights and
    ``v`` had been truncated to integers without a word.
    """
    for name, arrays in (("coefs", coefs), ("intercepts", intercepts)):
        for i, a in enumerate(arrays):
            if not xp.isdtype(a.dtype, ("bool", "integral", "real floating")):
                raise TypeError(f"{name}[{i}] must hold real numbers, got {a.dtype}.")

    def floating(a):
        return a if xp.isdtype(a.dtype, "real floating") else xp.astype(a, xp.float64)

    return [floating(W) for W in coefs], [floating(b) for b in intercepts]


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
        )


def _check_shapes(coefs, intercepts):
    """Refuse coefs and intercepts that do not form an MLP, naming the entry."""
    if not isinstance(coefs, list | tuple) or not isinstance(intercepts, list | tuple):
        raise TypeError(
            "coefs and intercepts must be lists of arrays (as MLPClassifier's "
            f"coefs_ and intercepts_), got {type(coefs).__name__} and "
            f"{type(intercepts).__name__}."
        )
    if len(coefs) != len(intercepts) or len(coefs) == 0:
        raise ValueError(
            "coefs and intercepts must be non-empty lists of the same length, "
            f"got {len(coefs)} and {len(intercepts)}."
        )
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        for name, a in ((f"coefs[{i}]", W), (f"intercepts[{i}]", b)):
            if not hasattr(a, "shape") or not hasattr(a, "ndim"):
                raise TypeError(f"{name} must be an array, got {type(a).__name__}.")
        if W.ndim != 2:
            raise ValueError(
                f"coefs[{i}] must be 2-D, of shape (fan_in, fan_out), got shape "
                f"{tuple(W.shape)}."
            )
        if i > 0 and W.shape[0] != coefs[i - 1].shape[1]:
            raise ValueError(
                f"coefs[{i}] has shape {tuple(W.shape)} but coefs[{i - 1}] has "
                f"{coefs[i - 1].shape[1]} outputs: coefs[{i}] must have "
                f"{coefs[i - 1].shape[1]} rows for the layers to chain."
            )
        if tuple(b.shape) != (W.shape[1],):
            raise ValueError(
                f"intercepts[{i}] must have shape ({W.shape[1]},) to match "
                f"coefs[{i}] of shape {tuple(W.shape)}, got shape {tuple(b.shape)}."
            )


def _check_memory_budget(memory_budget):
    if memory_budget is None:  # the module's DEFAULT_MEMORY_BUDGET, read when used
        return
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, Real):
        raise TypeError(
            "memory_budget must be a number of bytes, got "
            f"{type(memory_budget).__name__}."
        )
    if not (memory_budget > 0 and math.isfinite(memory_budget)):
        raise ValueError(
            f"memory_budget must be a positive, finite number of bytes, got "
            f"{memory_budget!r}."
        )


def _objective(
    coefs,
    intercepts,
    X,
    y,
    activation,
    alpha,
    bias_prior_precision,
    sample_weight,
    memory_budget=None,
):
    """Build the objective and ``theta`` from MLPClassifier-layout arrays."""
    _check_shapes(coefs, intercepts)
    _check_activation(activation)
    _check_memory_budget(memory_budget)
    X = dense(X)  # as the estimator densifies a sparse X
    if not is_array(X) or (
        is_numpy_namespace(get_namespace(*coefs, *intercepts))
        and type(X) is not np.ndarray
    ):
        # A list, DataFrame, masked array or dask array, with NumPy weights
        X = _as_host(X)
    xp = get_namespace(X, *coefs, *intercepts)
    coefs, intercepts = _floating_weights(xp, coefs, intercepts)
    if not xp.isdtype(X.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}.")
    if not xp.isdtype(X.dtype, "real floating"):
        # Strict namespaces neither promote integers against floats nor take
        # isfinite of booleans: compute in the network's dtype.
        X = xp.astype(X, xp.result_type(*coefs, *intercepts))
    for name, arrays in (("coefs", coefs), ("intercepts", intercepts), ("X", [X])):
        for i, a in enumerate(arrays):
            if not bool(xp.all(xp.isfinite(a))):
                where = name if name == "X" else f"{name}[{i}]"
                raise ValueError(f"{where} contains NaN or infinity.")
    layout = ParamLayout([coefs[0].shape[0]] + [c.shape[1] for c in coefs])
    if X.ndim != 2 or X.shape[1] != layout.layer_sizes[0]:
        raise ValueError(
            f"X must have shape (n_samples, {layout.layer_sizes[0]}), got {X.shape}."
        )
    theta = layout.pack(xp, coefs, intercepts)
    dtype = theta.dtype
    likelihood = Bernoulli if layout.n_outputs == 1 else Categorical
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    y_host = np.asarray(_as_host(y))
    if y_host.shape != (X.shape[0],) or not np.all(
        np.isin(y_host, np.arange(n_classes))
    ):
        raise ValueError(
            f"y must hold {X.shape[0]} class indices in 0..{n_classes - 1}."
        )
    Y = likelihood.encode(
        xp, xp.asarray(y_host.astype(np.int64)), layout.n_outputs, dtype
    )
    if sample_weight is None:
        sample_weight = xp.ones(X.shape[0], dtype=dtype)
    else:
        weight = _numeric_host(sample_weight, "sample_weight")
        if weight.shape != (X.shape[0],):
            raise ValueError(f"sample_weight must have shape ({X.shape[0]},).")
        # NaN and inf had come back as the log posterior, a negative weight
        # as a NaN GGN (the square root of its curvature).
        message = (
            "sample_weight must be finite (in the network's dtype) and non-negative."
        )
        if np.any(weight < 0):
            raise ValueError(message)
        sample_weight = _finite_in(xp, weight, dtype, message)
    precision = prior_precision_vector(
        layout,
        _numeric_host(alpha, "alpha"),
        _numeric_host(bias_prior_precision, "bias_prior_precision"),
    )
    precision = _finite_in(
        xp,
        precision,
        dtype,
        "alpha and bias_prior_precision must be finite in the network's dtype.",
    )
    obj = NegLogPosterior(
        xp,
        layout,
        activation,
        likelihood,
        X,
        Y,
        sample_weight,
        precision,
        memory_budget,
    )
    return obj, theta


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
    obj, theta = _objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    return -obj.loss(theta)


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
    obj, theta = _objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    return -obj.loss_gradient(theta)[1]


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
    if kind in _RENAMED_KINDS:
        warn(
            f"kind={kind!r} is renamed kind={_RENAMED_KINDS[kind]!r} (the "
            "diagonal of the generalised Gauss-Newton matrix; 'exact_diag' is "
            f"the exact Hessian's diagonal); {kind!r} will be removed in a "
            "future release.",
            FutureWarning,
        )
        kind = _RENAMED_KINDS[kind]
    if kind not in _HESSIAN_KINDS:
        raise ValueError(f"kind must be one of {sorted(_HESSIAN_KINDS)}, got {kind!r}.")
    obj, theta = _objective(
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
    return -CURVATURE_BUILDERS[_HESSIAN_KINDS[kind]](obj, theta)


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
    if kind not in ("exact", "ggn"):
        raise ValueError(f"kind must be 'exact' or 'ggn', got {kind!r}.")
    obj, theta = _objective(
        coefs, intercepts, X, y, activation, alpha, bias_prior_precision, sample_weight
    )
    # In the namespace of theta, whatever v came as (a list, NumPy).
    v = obj.xp.asarray(_numeric_host(v, "v"), dtype=theta.dtype)
    if v.shape != theta.shape:
        raise ValueError(f"v must have shape ({theta.shape[0]},), got {v.shape}.")
    return -obj.hessp(theta, v, kind)


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
        In the namespace of the coefficients.

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
