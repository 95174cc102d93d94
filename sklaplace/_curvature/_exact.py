"""Exact Hessian of the negative log posterior: full matrix and diagonal.

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

from sklaplace._curvature._blocks import KroneckerBlocks, second_order_precisions
from sklaplace._curvature._ggn import (
    backprop_bytes_per_row,
    check_square,
    diagonal_blocks,
    ggn_diagonal,
    ggn_hessian,
    ggn_layer_diagonals,
    itemsize,
)

__all__ = ["exact_diagonal", "exact_hessian", "residual_hessian"]


def _residual_bytes_per_row(obj):
    """Bytes of per-row intermediates of :class:`KroneckerBlocks`.

    A layer's own block is summed a row block of its inputs at a time.
    """
    sizes = obj.layout.layer_sizes
    n = len(sizes) - 1
    widest = max(
        (sizes[i] + 1) * ((sizes[j] + 1) if j > i else 1)
        + sizes[i + 1] * sizes[j + 1]
        + (sizes[i] + 1) * sizes[j + 1]
        + 2 * sizes[i + 1] * (sizes[j] + 1)
        for i in range(n)
        for j in range(i, n)
    )
    return 2 * itemsize(obj) * (widest + sum(h * h for h in sizes[1:-1]))


def residual_hessian(obj, theta, out=None):
    """Second-order term ``R = sum_nk r_nk d2 f_nk / dtheta2``, added to ``out``.

    Parameters
    ----------
    out : array of shape (n_params, n_params), default=None
        Matrix to add ``R`` to (updated and returned); zeros by default.

    Returns
    -------
    R : array of shape (n_params, n_params)
        ``out + R``.
    """
    xp, n_params = obj.xp, obj.layout.n_params
    if out is None:
        check_square(obj, "exact Hessian")
        out = xp.zeros((n_params, n_params), dtype=theta.dtype)
    if obj.layout.n_layers == 1:
        return out  # Logits are linear in theta: R = 0.
    residual = KroneckerBlocks()
    for Xc, Yc, sc in obj.row_chunks(_residual_bytes_per_row(obj)):
        fwd = obj.forward(theta, Xc)
        deltas, second_derivative_terms = obj.residual_backprop(theta, fwd, Yc, sc)
        residual.add_residual_chunk(
            xp, obj.layout, theta, fwd, deltas, second_derivative_terms
        )
    return residual.add_to(xp, obj.layout, out)


def exact_hessian(obj, theta):
    """Full exact Hessian ``GGN + R + A`` of ``L`` (second-order backprop).

    Returns
    -------
    H : array of shape (n_params, n_params)
    """
    return residual_hessian(obj, theta, out=ggn_hessian(obj, theta))


def exact_diagonal(obj, theta):
    """Diagonal of the exact Hessian: GGN diagonal plus ``diag(R)``.

    Costs ``O(n_samples * n_params * max_width)`` (the ``D_i`` recursion needs
    dense per-sample ``h x h`` blocks), still without any ``W x W`` matrix.
    One forward pass per chunk serves both terms.

    Returns
    -------
    diag : array of shape (n_params,)
    """
    xp, layout = obj.xp, obj.layout
    if layout.n_layers == 1:
        return ggn_diagonal(obj, theta)  # Logits are linear in theta: R = 0.
    weights = layout.layers(xp, theta)
    # The forward and backward passes beside every hidden layer's D_i block
    # (the widest block alone had been counted: this loop's chunks took 1.9
    # times the memory budget). The GGN's deltas are reduced to per-layer
    # terms (kept through the residual's pass) before that pass, which
    # the estimate's factor 3 covers: the larger of the two passes is
    # counted.
    blocks = sum(h * h for h in layout.layer_sizes[1:-1])
    bytes_per_row = backprop_bytes_per_row(obj) + 4 * itemsize(obj) * blocks
    diag = xp.zeros_like(theta)
    for Xc, Yc, sc in obj.row_chunks(bytes_per_row):
        fwd = obj.forward(theta, Xc)
        layer_diagonals = ggn_layer_diagonals(obj, theta, fwd, sc)
        _, second_derivative_terms = obj.residual_backprop(theta, fwd, Yc, sc)
        D = second_order_precisions(xp, weights, fwd, second_derivative_terms)
        for i, (Di, c) in enumerate(zip(D, second_derivative_terms, strict=True)):
            layer_diagonals[i] = layer_diagonals[i] + (
                c if Di is None else xp.linalg.diagonal(Di)
            )  # the logits' layer has no R term
        diag = diag + diagonal_blocks(xp, fwd, layer_diagonals)
    return diag + obj.prior_precision
