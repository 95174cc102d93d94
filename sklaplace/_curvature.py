"""Curvature of the negative log posterior: full GGN, full exact, diagonals.

Every routine returns the curvature of ``L(theta)`` (prior included) and
accumulates over row chunks sized by the objective's memory budget, so that no
``n_samples x n_params`` intermediate exists at once.

The exact Hessian is ``GGN + R + A`` with the residual term
``R = sum_n sum_k r_nk d2 f_nk / dtheta2``. Because every layer's parameters
act on the layer input with a column of ones appended (see
:mod:`sklaplace._network`), each block of ``R`` is a sum over samples of
Kronecker products (Bishop 1992, "Exact calculation of the Hessian matrix
for the multilayer perceptron"): for layers ``i <= j``,

    R[(a, p), (b, k)] = sum_n ahat_i[n, a] * (ahat_j[n, b] * M_ij[n, p, k]
                                              + T_ij[n, p, b] * delta_j[n, k])

where ``M_ij = d2 Q / dz_i dz_j`` holds the second-order activation terms
(zero in the Gauss-Newton part), ``T_ij = d acts[j] / d z_i`` and
``delta_j = dQ / dz_j`` for ``Q = sum_nk r_nk f_nk``. Each block is one matrix
product over samples.
"""

from sklaplace._backend import gram
from sklaplace._network import backprop, jacobian_factor, with_ones

__all__ = [
    "CURVATURES",
    "exact_diagonal",
    "exact_hessian",
    "ggn_diagonal",
    "ggn_hessian",
]


def _itemsize(obj):
    return 8 if "64" in str(obj.X.dtype) else 4


def _factor_rows(obj, Xc, sc, theta):
    """Forward pass on a chunk and the rows of ``Lambda_n^{1/2}``."""
    fwd = obj.forward(theta, Xc)
    return fwd, obj.likelihood.hessian_factor(obj.xp, fwd.logits, sc)


def _prior_diag(obj, H):
    xp = obj.xp
    n = H.shape[0]
    return H + xp.eye(n, dtype=H.dtype) * obj.prior_precision[None, :]


def ggn_hessian(obj, theta):
    """Full generalised Gauss-Newton matrix ``sum_n J_n' Lambda_n J_n + A``.

    Formed as ``F' F`` with ``F`` the stacked rows ``R_n J_n`` (a symmetric
    rank-k update), never as ``J' (Lambda J)``.

    Returns
    -------
    H : array of shape (n_params, n_params)
    """
    xp, n_params = obj.xp, obj.layout.n_params
    n_rows = obj.layout.n_outputs if obj.layout.n_outputs > 1 else 1
    H = xp.zeros((n_params, n_params), dtype=theta.dtype)
    for Xc, _, sc in obj.row_chunks(2 * _itemsize(obj) * n_rows * n_params):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        F = jacobian_factor(xp, obj.layout, theta, fwd, factor)  # rows R_n J_n
        H = H + gram(xp, xp.reshape(F, (-1, n_params)))  # sum_n J_n' R_n' R_n J_n
    return _prior_diag(obj, H)


def _diagonal_blocks(xp, fwd, layer_diagonals):
    """``sum_n ahat_i[n, a]^2 * d_i[n, p]`` per layer, raveled and stacked."""
    return xp.concat(
        [
            xp.reshape((with_ones(xp, a) ** 2).T @ d, (-1,))
            for a, d in zip(fwd.acts, layer_diagonals)
        ]
    )


def ggn_diagonal(obj, theta):
    """Diagonal of the GGN in ``O(n_samples * n_params * n_outputs)``.

    No ``n_params x n_params`` matrix is formed (Optimal Brain Damage).

    Returns
    -------
    diag : array of shape (n_params,)
    """
    xp = obj.xp
    diag = xp.zeros_like(theta)
    bytes_per_row = (
        4 * _itemsize(obj) * obj.layout.n_outputs * max(obj.layout.layer_sizes)
    )
    for Xc, _, sc in obj.row_chunks(bytes_per_row):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        deltas = backprop(xp, obj.layout, theta, fwd, factor)
        diag = diag + _diagonal_blocks(xp, fwd, [xp.sum(d * d, axis=1) for d in deltas])
    return diag + obj.prior_precision


def _second_order_precisions(xp, weights, fwd, curvatures):
    """``D_i = d2 Q / dz_i2`` for hidden layers (Bishop 1992).

    ``D_i = diag(c_i) + diag(phi'_i) W_{i+1} D_{i+1} W_{i+1}' diag(phi'_i)``,
    with ``D_logits = 0``. The last hidden layer's ``D`` is diagonal; it is
    returned as ``None`` and ``curvatures[i]`` (its diagonal) stands for it.
    """
    n_hidden = len(curvatures)
    D = [None] * n_hidden
    for i in range(n_hidden - 2, -1, -1):
        W = weights[i + 1][:-1, :]
        below = _dense(xp, D[i + 1], curvatures[i + 1])
        slope = fwd.slopes[i]
        D[i] = slope[:, :, None] * (W @ below @ W.T) * slope[:, None, :] + _diag_embed(
            xp, curvatures[i]
        )
    return D


def _diag_embed(xp, d):
    eye = xp.eye(d.shape[1], dtype=d.dtype)
    return d[:, :, None] * eye[None, :, :]


def _dense(xp, D, curvature):
    return _diag_embed(xp, curvature) if D is None else D


def _residual_block(xp, a_i, a_j, M, T, delta_j):
    """One block of ``R`` (module docstring formula) for layers ``i <= j``.

    ``M`` or ``T`` may be ``None`` (a zero term). ``T`` excludes the ones
    column: the bias input does not move.
    """
    n, n_in_j = a_j.shape
    B = 0
    if M is not None:
        B = a_j[:, None, :, None] * M[:, :, None, :]
    if T is not None:
        T_hat = xp.concat([T, xp.zeros((n, T.shape[1], 1), dtype=T.dtype)], axis=2)
        B = B + T_hat[:, :, :, None] * delta_j[:, None, None, :]
    rows = a_i.shape[1] * B.shape[1]
    return xp.reshape(a_i.T @ xp.reshape(B, (n, -1)), (rows, -1))


def _diagonal_residual_block(xp, a, curvature):
    """Block ``(i, i)`` when ``D_i = diag(c)``.

    ``R[(a, p), (b, k)] = [p == k] sum_n a[n, a] a[n, b] c[n, p]``.
    """
    n, n_in = a.shape
    n_units = curvature.shape[1]
    weighted = xp.reshape(a[:, :, None] * curvature[:, None, :], (n, -1))
    C = xp.reshape(weighted.T @ a, (n_in, n_units, n_in))
    eye = xp.eye(n_units, dtype=a.dtype)
    return xp.reshape(
        C[:, :, :, None] * eye[None, :, None, :], (n_in * n_units, n_in * n_units)
    )


def _residual_hessian_chunk(obj, theta, fwd, Yc, sc, H):
    """Add this chunk's residual term ``R`` to ``H`` (upper blocks, mirrored)."""
    xp, layout = obj.xp, obj.layout
    weights = layout.layers(xp, theta)
    deltas, curvatures = obj.residual_backprop(theta, fwd, Yc, sc)
    D = _second_order_precisions(xp, weights, fwd, curvatures)
    inputs = [with_ones(xp, a) for a in fwd.acts]
    n_hidden = layout.n_layers - 1
    for i in range(n_hidden):
        rows = layout.layer_slice(i)
        if D[i] is None:
            block = _diagonal_residual_block(xp, inputs[i], curvatures[i])
        else:
            block = _residual_block(xp, inputs[i], inputs[i], D[i], None, deltas[i])
        H[rows, rows] = H[rows, rows] + block
        T = None
        for j in range(i + 1, layout.n_layers):
            # T = d acts[j] / d z_i ;  G = d z_j / d z_i ;  M = G D_j.
            T = (
                _diag_embed(xp, fwd.slopes[i])
                if T is None
                else (T @ weights[j - 1][:-1, :]) * fwd.slopes[j - 1][:, None, :]
            )
            M = None
            if j < n_hidden:
                G = T @ weights[j][:-1, :]
                M = G * curvatures[j][:, None, :] if D[j] is None else G @ D[j]
            block = _residual_block(xp, inputs[i], inputs[j], M, T, deltas[j])
            cols = layout.layer_slice(j)
            H[rows, cols] = H[rows, cols] + block
            H[cols, rows] = H[cols, rows] + block.T
    return H


def _residual_bytes_per_row(obj):
    sizes = obj.layout.layer_sizes
    widest = max(
        sizes[i + 1] * (sizes[j] + 1) * sizes[j + 1]
        for i in range(len(sizes) - 1)
        for j in range(i, len(sizes) - 1)
    )
    return 3 * _itemsize(obj) * widest


def exact_hessian(obj, theta):
    """Full exact Hessian ``GGN + R + A`` of ``L`` (second-order backprop).

    Returns
    -------
    H : array of shape (n_params, n_params)
    """
    H = ggn_hessian(obj, theta)
    if obj.layout.n_layers == 1:
        return H  # Logits are linear in theta: R = 0.
    for Xc, Yc, sc in obj.row_chunks(_residual_bytes_per_row(obj)):
        H = _residual_hessian_chunk(obj, theta, obj.forward(theta, Xc), Yc, sc, H)
    return H


def exact_diagonal(obj, theta):
    """Diagonal of the exact Hessian: GGN diagonal plus ``diag(R)``.

    Costs ``O(n_samples * n_params * max_width)`` (the ``D_i`` recursion needs
    dense per-sample ``h x h`` blocks), still without any ``W x W`` matrix.

    Returns
    -------
    diag : array of shape (n_params,)
    """
    xp, layout = obj.xp, obj.layout
    diag = ggn_diagonal(obj, theta)
    if layout.n_layers == 1:
        return diag
    weights = layout.layers(xp, theta)
    width = max(layout.layer_sizes[1:-1])
    for Xc, Yc, sc in obj.row_chunks(4 * _itemsize(obj) * width * width):
        fwd = obj.forward(theta, Xc)
        _, curvatures = obj.residual_backprop(theta, fwd, Yc, sc)
        D = _second_order_precisions(xp, weights, fwd, curvatures)
        layer_diagonals = [
            c if Di is None else xp.linalg.diagonal(Di) for Di, c in zip(D, curvatures)
        ]
        layer_diagonals.append(xp.zeros_like(fwd.logits))  # logits: no R term
        diag = diag + _diagonal_blocks(xp, fwd, layer_diagonals)
    return diag


CURVATURES = {
    ("ggn", "full"): ggn_hessian,
    ("exact", "full"): exact_hessian,
    ("ggn", "diag"): ggn_diagonal,
    ("exact", "diag"): exact_diagonal,
}
