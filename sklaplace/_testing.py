"""Slow, obviously correct references that the fast code is tested against.

Shipped with the package so that tests, examples and users can check any
derivative: 4th-order central finite differences, an MLP forward pass written
from the documented parameter layout, and the dense GGN built from raw data
(nothing read from the objects under test).
"""

import numpy as np

from sklaplace._backend import to_numpy

__all__ = ["dense_ggn", "mlp_logits", "numerical_derivative", "numerical_jacobian"]


def numerical_derivative(func, x, h=1e-4):
    """4th-order central difference of ``func`` at ``x`` along each coordinate.

    Parameters
    ----------
    func : callable
        Maps an ndarray of shape (n,) to a scalar or an ndarray.
    x : ndarray of shape (n,)
        Point, in float64.
    h : float, default=1e-4
        Step.

    Returns
    -------
    derivative : ndarray of shape (n, *func(x).shape)
        ``derivative[i] = d func / d x_i``.
    """
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for i in range(x.shape[0]):

        def at(step, i=i):
            shifted = x.copy()
            shifted[i] += step
            return np.asarray(to_numpy(func(shifted)), dtype=np.float64)

        rows.append((-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h))
    return np.stack(rows)


def numerical_jacobian(logits, theta, h=1e-4):
    """Jacobian of ``logits`` at ``theta`` by :func:`numerical_derivative`.

    Parameters
    ----------
    logits : callable
        Maps parameters of shape (n_params,) to logits of shape
        (n_samples, n_outputs) or (n_samples,), e.g. ``lambda t:
        obj.forward(t).logits`` or :func:`mlp_logits` with the data bound.
    theta : ndarray of shape (n_params,)
        Point, in float64.
    h : float, default=1e-4
        Step.

    Returns
    -------
    jacobian : ndarray of shape (*logits(theta).shape, n_params)
        ``jacobian[..., p] = d logits / d theta_p``.
    """
    return np.moveaxis(numerical_derivative(logits, theta, h), 0, -1)


_ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "elu": lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0.0)) - 1.0),
}


def mlp_logits(theta, X, layer_sizes, activation):
    """Logits of an MLP, written from the documented parameter layout alone.

    ``theta = [W_0.ravel() (C order), b_0, W_1.ravel(), b_1, ...]`` with
    ``W_i`` of shape ``(layer_sizes[i], layer_sizes[i + 1])``. Shares no code
    with :mod:`sklaplace._network`.

    Parameters
    ----------
    theta : ndarray of shape (n_params,)
    X : ndarray of shape (n_samples, layer_sizes[0])
    layer_sizes : sequence of int
        Inputs, hidden units, outputs.
    activation : {"identity", "logistic", "tanh", "relu", "softplus", "elu"}

    Returns
    -------
    logits : ndarray of shape (n_samples, layer_sizes[-1])
    """
    theta = np.asarray(theta, dtype=np.float64)
    a, start = np.asarray(X, dtype=np.float64), 0
    n_layers = len(layer_sizes) - 1
    for i in range(n_layers):
        fan_in, fan_out = layer_sizes[i], layer_sizes[i + 1]
        W = theta[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
        start += fan_in * fan_out
        b = theta[start : start + fan_out]
        start += fan_out
        z = a @ W + b
        a = z if i == n_layers - 1 else _ACTIVATIONS[activation](z)
    if start != theta.shape[0]:
        raise ValueError(f"theta has {theta.shape[0]} entries, the layout {start}.")
    return a


def dense_ggn(
    theta, X, sample_weight, prior_precision, layer_sizes, activation, J=None
):
    """``sum_n J_n' Lambda_n J_n + A`` from raw data and from-scratch formulas.

    Nothing is read from the objects under test: the logits come from
    :func:`mlp_logits`, ``J`` (unless given) from finite differences of
    them, and ``Lambda_n`` from its definition, ``s_n p_n (1 - p_n)`` for one
    logit and ``s_n (diag p_n - p_n p_n')`` for K logits.

    Parameters
    ----------
    theta : ndarray of shape (n_params,)
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,)
    prior_precision : ndarray of shape (n_params,)
        The diagonal of ``A``.
    layer_sizes : sequence of int
    activation : str
    J : ndarray of shape (n_samples, n_outputs, n_params), default=None
        Logit Jacobian; by finite differences of :func:`mlp_logits` if None.

    Returns
    -------
    ggn : ndarray of shape (n_params, n_params)
    """
    theta = np.asarray(theta, dtype=np.float64)

    def logits_at(t):
        return mlp_logits(t, X, layer_sizes, activation)

    if J is None:
        J = np.moveaxis(numerical_derivative(logits_at, theta), 0, -1)
    logits = logits_at(theta)
    H = np.diag(np.asarray(prior_precision, dtype=np.float64))
    for n in range(logits.shape[0]):
        f = logits[n]
        if f.shape[0] == 1:
            p = 1.0 / (1.0 + np.exp(-f[0]))
            Lambda = np.array([[p * (1.0 - p)]])
        else:
            p = np.exp(f - f.max())
            p /= p.sum()
            Lambda = np.diag(p) - np.outer(p, p)
        H += sample_weight[n] * J[n].T @ Lambda @ J[n]
    return H
