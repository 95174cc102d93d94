"""Leave-one-out logit covariances of diagonal and Kronecker posteriors.

:func:`~sklaplace._loo.without_row` takes a row's curvature
``J_i' Lambda_i J_i`` out of the posterior precision by Woodbury: exact for
the full posterior, whose precision holds that term. A diagonal posterior
holds only its diagonal, and a Kronecker one (EKFAC) only its diagonal in
each layer's eigenbasis (the corrected eigenvalues ``h``). Taken out whole,
the row's curvature had left an indefinite precision for some rows: negative
left-out variances, which the probit clamps to 0, so overconfident losses
(on two moons with a diagonal posterior the scale fell to the grid's floor).

Here the row's part is taken out as the posterior holds it. In the basis
where the posterior is diagonal, with eigenvalues ``E`` and the row's
Jacobian ``B`` there, the precision without the row is
``E - sum_m (R_i B_i)_m^2`` (elementwise, ``Lambda_i = R_i' R_i``): positive
where ``E`` holds the data's own diagonal, of which the row's term is one
summand. A layer's ``B`` is an outer product per output,
``u_n kron v_nk`` (``u = ahat S``, ``v = delta V``; ``S = V = I`` for a
diagonal posterior), so its ``n_params`` weights per row come from the
factors, with no dense ``J``.
"""

import numpy as np

from sklaplace._jacobian import FactoredJacobian
from sklaplace._kron import KronBlock

__all__ = ["holds_rows_diagonally", "variances_without_rows"]


def holds_rows_diagonally(posterior):
    """Whether :func:`variances_without_rows` applies to ``posterior``.

    A diagonal posterior, or a Kronecker one of eigenbasis blocks (a
    column-wise block, for a prior that is not a multiple of the fitted one,
    is not diagonal in one basis), either over the last layer or over all.
    """
    own = posterior.inner if posterior.structure == "last_layer" else posterior
    if own.structure == "kron":
        return all(type(block) is KronBlock for block in own.blocks)
    return own.structure == "diag"


def variances_without_rows(xp, posterior, J, R):
    """``J_i P_{-i}^{-1} J_i'`` per row, ``P_{-i}`` the posterior without row ``i``.

    Parameters
    ----------
    posterior : posterior object
        Diagonal or Kronecker (:func:`holds_rows_diagonally`), at the prior
        scale wanted.
    J : array of shape (n, K, n_params) or FactoredJacobian
        The rows' logit Jacobians.
    R : array of shape (n, K, K)
        Factors of the rows' output Hessians, ``Lambda_i = R_i' R_i``, for
        the weight each leave-out removes.

    Returns
    -------
    array of shape (n, K, K)
        NaN for a row whose precision without it is not positive.
    """
    if posterior.structure == "last_layer":
        own = J.last_layer() if isinstance(J, FactoredJacobian) else None
        J = own if own is not None else J[:, :, posterior.offset :]
        posterior = posterior.inner
    total, positive = 0.0, True
    for part in _diagonal_bases(xp, posterior, J):
        variance, ok = _without_row(xp, *part, R)
        total, positive = total + variance, positive & ok
    return xp.where(positive[:, None, None], total, xp.full_like(total, np.nan))


def _diagonal_bases(xp, posterior, J):
    """Per layer, the rows' Jacobian in the posterior's eigenbasis and ``E``.

    Yields ``(u, v, E)`` with ``u`` (n, r), ``v`` (n, K, c) and ``E`` (r, c)
    for a factored ``J``, or ``(B, None, E)`` with ``B`` (n, K, W) and ``E``
    (W,) for a dense one.
    """
    n, K = J.shape[:2]
    if posterior.structure == "diag":
        precision = xp.asarray(posterior.precision)
        if not isinstance(J, FactoredJacobian):
            yield J, None, precision
            return
        start = 0
        for a, d in zip(J.inputs, J.deltas):
            r, c = a.shape[1], d.shape[2]
            yield a, d, xp.reshape(precision[start : start + r * c], (r, c))
            start += r * c
        return
    factored = isinstance(J, FactoredJacobian)
    if factored:
        factors = zip(J.inputs, J.deltas, strict=True)
        layers = list(zip(posterior.blocks, factors, strict=True))
    else:
        layers = list(posterior._slices())
    for block, layer in layers:
        S, V = xp.asarray(block.S), xp.asarray(block.V)
        E = xp.asarray(block.eigenvalues())
        if factored:
            a, d = layer
            yield a @ S, d @ V, E
            continue
        Jb = xp.reshape(J[:, :, layer], (n, K, *block.shape))
        B = (xp.permute_dims(S, (1, 0)) @ Jb) @ V
        yield xp.reshape(B, (n, K, -1)), None, xp.reshape(E, (-1,))


def _without_row(xp, u, v, E, R):
    """One layer's ``B diag(1 / (E - g_i)) B'`` per row, and where it is defined.

    ``g_i = sum_m (R_i B_i)_m^2``, the row's term of the diagonal. With the
    factors ``B[k, (a, p)] = u_a v_kp``, ``g_i[a, p] = u_a^2 q_p`` with
    ``q = sum_m (R_i v_i)_m^2``, and the product is ``v diag(w) v'`` with
    ``w_p = sum_a u_a^2 / (E_ap - u_a^2 q_p)``.
    """
    if v is None:  # dense: u is B
        RB = R @ u
        remaining = E[None, :] - xp.sum(RB * RB, axis=1)
        ok = xp.all(remaining > 0, axis=1)
        inverse = 1.0 / xp.where(remaining > 0, remaining, xp.ones_like(remaining))
        return (u * inverse[:, None, :]) @ xp.permute_dims(u, (0, 2, 1)), ok
    Rv = R @ v
    q = xp.sum(Rv * Rv, axis=1)  # (n, c)
    squares = u * u  # (n, r)
    remaining = E[None, :, :] - squares[:, :, None] * q[:, None, :]
    ok = xp.all(remaining > 0, axis=(1, 2))
    inverse = 1.0 / xp.where(remaining > 0, remaining, xp.ones_like(remaining))
    weights = xp.sum(squares[:, :, None] * inverse, axis=1)  # (n, c)
    return (v * weights[:, None, :]) @ xp.permute_dims(v, (0, 2, 1)), ok
