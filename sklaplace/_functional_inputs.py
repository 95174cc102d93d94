"""The functional API's inputs: MLPClassifier-layout arrays, data and prior.

:func:`network_objective` checks what the public functions of
:mod:`sklaplace._functional` are given, naming the bad argument, and builds
the negative log posterior they differentiate. As ``fit`` does, it drops
rows of weight 0 and refuses features whose curvature overflows float64.
"""

import math
from numbers import Real

import numpy as np

from sklaplace._activations import ACTIVATIONS
from sklaplace._backend import get_namespace, is_array, is_numpy_namespace, on_host
from sklaplace._likelihood import Bernoulli, Categorical
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior
from sklaplace._prior import prior_precision_vector
from sklaplace._validation import curvature_second_moments, dense

__all__ = ["finite_vector", "network_objective"]


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


def finite_vector(xp, v, dtype):
    """Return ``v`` in ``xp`` as ``dtype``: real and finite there, or a clear error."""
    message = "v must be finite (in the network's dtype)."
    return _finite_in(xp, _numeric_host(v, "v"), dtype, message)


def _check_activation(activation):
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
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
        if W.shape[1] == 0:
            raise ValueError(f"coefs[{i}] has no output units: shape {tuple(W.shape)}.")
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


def network_objective(
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
    # One dtype for every result, the promotion of X's and the weights': with
    # float32 weights and float64 X the value, gradient and diagonals had
    # come back in float64 and the full Hessians in float32.
    common = xp.result_type(X, *coefs, *intercepts)
    X = xp.astype(X, common, copy=False)
    coefs = [xp.astype(W, common, copy=False) for W in coefs]
    intercepts = [xp.astype(b, common, copy=False) for b in intercepts]
    for name, arrays in (("coefs", coefs), ("intercepts", intercepts), ("X", [X])):
        for i, a in enumerate(arrays):
            if not bool(xp.all(xp.isfinite(a))):
                where = name if name == "X" else f"{name}[{i}]"
                raise ValueError(f"{where} contains NaN or infinity.")
    layout = ParamLayout.of_coefs(coefs)
    if X.ndim != 2 or X.shape[1] != layout.layer_sizes[0]:
        raise ValueError(
            f"X must have shape (n_samples, {layout.layer_sizes[0]}), got {X.shape}."
        )
    if X.shape[0] == 0:
        raise ValueError("X holds no samples (0 rows), as fit would refuse.")
    theta = layout.pack(xp, coefs, intercepts)
    dtype = theta.dtype
    # By the output units, not likelihood_for's classes: two units are a
    # softmax over two classes (a doubled logit), not the Bernoulli.
    likelihood = Bernoulli if layout.n_outputs == 1 else Categorical
    n_classes = 2 if layout.n_outputs == 1 else layout.n_outputs
    y_host = np.asarray(_as_host(y))
    if np.iscomplexobj(y_host):  # the cast to int would drop the imaginary part
        raise TypeError(f"y must hold class indices, got dtype {y_host.dtype}.")
    if y_host.ndim != 1:
        raise ValueError(
            f"y must be 1-D, of shape ({X.shape[0]},), got shape {y_host.shape}."
        )
    if y_host.shape != (X.shape[0],):
        raise ValueError(
            f"y must hold one class index per row of X: X has {X.shape[0]} "
            f"rows, y {y_host.shape[0]} entries."
        )
    if not np.all(np.isin(y_host, np.arange(n_classes))):
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
    X, Y, sample_weight = _counted_rows(xp, X, Y, sample_weight)
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


def _counted_rows(xp, X, Y, sample_weight):
    """Return the rows of positive weight; refuse a curvature that overflows.

    As ``fit`` does: a row of weight 0 counts for nothing, however large
    (``0 * inf`` had made the exact Hessian and both diagonals NaN), and
    ``sum_n s_n X[n, j]**2``, a factor of every curvature, must be finite
    (at 1e160 the exact Hessian had been NaN, the GGN finite). Where no row
    counts, their features are zeroed instead (the log posterior is the
    prior's alone, and an array of no rows would be a shape of its own).
    """
    counted = on_host(sample_weight) > 0
    if not np.any(counted):
        X = xp.zeros_like(X)
    elif not np.all(counted):
        keep = xp.asarray(np.flatnonzero(counted))
        X, Y = xp.take(X, keep, axis=0), xp.take(Y, keep, axis=0)
        sample_weight = xp.take(sample_weight, keep, axis=0)
    curvature_second_moments(xp, X, sample_weight)
    return X, Y, sample_weight
