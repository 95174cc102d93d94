"""Slow, obviously correct references that the fast code is tested against.

Shipped with the package so that tests, examples and users can check any
derivative: 4th-order central finite differences, and dense curvature built
from an explicit Jacobian.
"""

import numpy as np

from sklaplace._backend import to_numpy

__all__ = ["dense_ggn", "numerical_derivative", "numerical_jacobian"]


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


def numerical_jacobian(obj, theta, h=1e-4):
    """Logit Jacobian ``J``, shape (n_samples, n_outputs, n_params), by differences."""
    derivative = numerical_derivative(lambda t: obj.forward(t).logits, theta, h)
    return np.moveaxis(derivative, 0, -1)


def dense_ggn(obj, theta, J=None):
    """``sum_n J_n' Lambda_n J_n + A`` from a dense Jacobian (default: numerical)."""
    J = numerical_jacobian(obj, theta) if J is None else J
    logits = to_numpy(obj.forward(theta).logits)
    weight = to_numpy(obj.sample_weight)
    n_outputs = logits.shape[1]
    H = np.diag(to_numpy(obj.prior_precision)).astype(np.float64)
    for n in range(J.shape[0]):
        Lambda = np.zeros((n_outputs, n_outputs))
        for k in range(n_outputs):
            unit = np.zeros((1, n_outputs))
            unit[0, k] = 1.0
            Lambda[:, k] = to_numpy(
                obj.likelihood.hessian_matvec(
                    np, logits[n : n + 1], weight[n : n + 1], unit
                )
            )[0]
        H += J[n].T @ Lambda @ J[n]
    return H
