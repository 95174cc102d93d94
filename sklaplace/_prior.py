"""The diagonal Gaussian prior: from user parameters to a precision vector.

The prior is ``N(0, A^{-1})`` with ``A = diag(prior_precision)`` over
``theta``. ``alpha`` sets the precision of the weights (MLPClassifier's
meaning) and ``bias_prior_precision`` that of the biases; each may be a scalar
or one value per layer, and ``alpha`` may instead give one value per parameter
(biases included).
"""

import numpy as np

__all__ = ["prior_precision_vector"]


def _as_floats(value, name):
    message = f"{name} must be a number or an array of numbers, got {value!r}."
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if array.dtype.kind not in "biuf":  # strings such as "1" had been parsed
        raise ValueError(message)
    return array.astype(float)


def _per_layer(value, n_layers, name, n_params=None):
    values = _as_floats(value, name)
    if values.ndim == 0:
        return np.full(n_layers, float(values))
    if values.shape != (n_layers,):
        per_parameter = "" if n_params is None else f" or per parameter ({n_params})"
        raise ValueError(
            f"{name} must be a scalar or have one value per layer "
            f"({n_layers}){per_parameter}, got shape {values.shape}."
        )
    return values


def _check(values, name):
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {values!r}.")


def prior_precision_vector(layout, alpha, bias_prior_precision):
    """Precision of each entry of ``theta``, as a NumPy array.

    Parameters
    ----------
    layout : ParamLayout
        Parameter layout of the network.
    alpha : float or array-like of shape (n_layers,) or (n_params,)
        Precision of the weights: one value, one per layer, or one per
        parameter (then it also sets the biases). Values must be in the range
        ``[0.0, inf)``.
    bias_prior_precision : float or array-like of shape (n_layers,)
        Precision of the biases; ``0`` is a flat prior. Ignored when
        ``alpha`` is per parameter.

    Returns
    -------
    precision : ndarray of shape (n_params,)
    """
    alpha_array = _as_floats(alpha, "alpha")
    if alpha_array.ndim == 1 and alpha_array.shape[0] == layout.n_params:
        _check(alpha_array, "alpha")
        return alpha_array.copy()
    weight = _per_layer(alpha, layout.n_layers, "alpha", layout.n_params)
    bias = _per_layer(bias_prior_precision, layout.n_layers, "bias_prior_precision")
    _check(weight, "alpha")
    _check(bias, "bias_prior_precision")
    layer = layout.layer_index()
    return np.where(layout.bias_mask(), bias[layer], weight[layer])
