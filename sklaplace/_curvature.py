"""Curvature of the negative log posterior: full, diagonal, Kronecker-factored.

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

from typing import NamedTuple

from sklaplace._backend import GramAccumulator, add_to_diagonal
from sklaplace._memory import check_memory
from sklaplace._network import backprop, jacobian_factor, with_ones

__all__ = [
    "CURVATURES",
    "FACTORED_CURVATURES",
    "KroneckerFactors",
    "check_finite_curvature",
    "exact_diagonal",
    "exact_hessian",
    "ggn_diagonal",
    "ggn_hessian",
    "kron_factors",
]


def _itemsize(obj):
    return 8 if "64" in str(obj.X.dtype) else 4


def _check_square(obj, what):
    """Refuse an ``n_params x n_params`` matrix over the memory limit, up front."""
    n_params = obj.layout.n_params
    check_memory(
        _itemsize(obj) * n_params * n_params,
        f"The {n_params} x {n_params} {what}",
    )


def check_finite_curvature(xp, H):
    """Raise ``ValueError`` if a curvature (matrix, diagonal, factors) overflowed.

    With finite data and parameters the curvature is finite unless squared
    features or activations exceed the float range (about 1e154); nothing
    downstream (Cholesky, damping, jitter) can repair an ``inf`` or ``nan``.
    """
    arrays = [*H.inputs, *H.outputs] if isinstance(H, KroneckerFactors) else [H]
    if not all(bool(xp.all(xp.isfinite(a))) for a in arrays):
        raise ValueError(
            "The curvature of the log posterior is not finite (it overflowed): "
            "the features, or the network's activations, are too large for "
            "float64. Standardise the features (e.g. sklearn.preprocessing."
            "StandardScaler) or increase alpha."
        )


def _factor_rows(obj, Xc, sc, theta):
    """Forward pass on a chunk and the rows of ``Lambda_n^{1/2}``."""
    fwd = obj.forward(theta, Xc)
    return fwd, obj.likelihood.hessian_factor(obj.xp, fwd.logits, sc)


def ggn_hessian(obj, theta):
    """Full generalised Gauss-Newton matrix ``sum_n J_n' Lambda_n J_n + A``.

    One logit: ``F' F`` with ``F`` the stacked rows ``sqrt(Lambda_n) J_n``, a
    symmetric rank-k update (``N W^2 / 2`` multiply-adds), never
    ``J' (Lambda J)``. K logits: the rank-k update would cost K times that,
    so the blocks are formed from their Kronecker structure instead (about
    ``N W^2 / 2`` multiply-adds whatever K; see :class:`_KroneckerBlocks`).

    Returns
    -------
    H : array of shape (n_params, n_params)
    """
    xp, layout, n_params = obj.xp, obj.layout, obj.layout.n_params
    _check_square(obj, "generalised Gauss-Newton matrix")
    if layout.n_outputs > 1:
        blocks = _KroneckerBlocks()
        for Xc, _, sc in obj.row_chunks(_kronecker_bytes_per_row(obj)):
            fwd, factor = _factor_rows(obj, Xc, sc, theta)
            blocks.add_ggn_chunk(xp, fwd, backprop(xp, layout, theta, fwd, factor))
        H = blocks.add_to(xp, layout, xp.zeros((n_params, n_params), dtype=theta.dtype))
        return add_to_diagonal(xp, H, obj.prior_precision)
    n_rows = 1
    gram = GramAccumulator(xp, n_params, theta.dtype)
    for Xc, _, sc in obj.row_chunks(3 * _itemsize(obj) * n_rows * n_params):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        F = jacobian_factor(xp, obj.layout, theta, fwd, factor)  # rows R_n J_n
        gram.add(xp.reshape(F, (-1, n_params)))  # += sum_n J_n' R_n' R_n J_n
    return add_to_diagonal(xp, gram.result(), obj.prior_precision)


class KroneckerFactors(NamedTuple):
    """Kronecker factors of the GGN's diagonal blocks, one pair per layer.

    Layer ``i``'s block of ``sum_n J_n' Lambda_n J_n`` (over its augmented
    weight ``[W_i; b_i]``, C order) is approximated by ``inputs[i] kron
    outputs[i]`` (KFAC; Martens & Grosse 2015, Ritter et al. 2018):

    * ``inputs[i] = sum_n s_n ahat_n ahat_n' / sum_n s_n``, ``ahat_n`` the
      layer's input with a 1 appended (the bias is one more input row);
    * ``outputs[i] = sum_n sum_r g_nr g_nr'``, ``g_nr`` the row ``r`` of
      ``Lambda_n^{1/2}`` (which carries ``s_n``) backpropagated to the layer's
      pre-activation: exact, no Monte Carlo.

    With one sample, or when every sample has the same ``ahat ahat'`` (or
    the same ``g g'``), the product is the exact block. The prior is not
    included (the posterior adds it, see :mod:`sklaplace._kron`).
    """

    inputs: list
    outputs: list


def _kron_bytes_per_row(obj):
    """Bytes of per-row intermediates of :func:`kron_factors`."""
    sizes, n_outputs = obj.layout.layer_sizes, obj.layout.n_outputs
    numbers = sum(s + 1 for s in sizes[:-1]) + n_outputs * (sum(sizes[1:]) + 1)
    return 3 * _itemsize(obj) * numbers


def kron_factors(obj, theta):
    """KFAC factors of the GGN (prior excluded), accumulated over row chunks.

    Costs one forward pass, one backward pass of ``n_outputs`` cotangents and
    ``sum_n sum_i (fan_in_i + 1)^2 / 2 + n_outputs fan_out_i^2 / 2``
    multiply-adds (symmetric rank-k updates); no ``n_params x n_params``
    matrix.

    Returns
    -------
    factors : KroneckerFactors
    """
    xp, layout = obj.xp, obj.layout
    # [a 1]' S [a 1] = [[a' S a, a' s], [s' a, sum s]]: the Gram of the
    # weighted inputs and their weighted sums, without appending the ones.
    grams = [GramAccumulator(xp, rows - 1, theta.dtype) for rows, _ in layout.shapes]
    sums = [xp.zeros(rows - 1, dtype=theta.dtype) for rows, _ in layout.shapes]
    outputs = [GramAccumulator(xp, cols, theta.dtype) for _, cols in layout.shapes]
    for Xc, _, sc in obj.row_chunks(_kron_bytes_per_row(obj)):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        deltas = backprop(xp, layout, theta, fwd, factor)  # rows g_nr per layer
        unit = bool(xp.all(sc == 1.0))
        root = xp.sqrt(sc)[:, None]
        for i, (a, delta) in enumerate(zip(fwd.acts, deltas)):
            grams[i].add(a if unit else a * root)
            sums[i] = sums[i] + sc @ a
            outputs[i].add(xp.reshape(delta, (-1, delta.shape[-1])))
    total = obj.gradient_scale
    inputs = []
    for gram, column in zip(grams, sums):
        top = xp.concat([gram.result(), column[:, None]], axis=1)
        bottom = xp.concat([column, xp.reshape(total, (1,))])[None, :]
        inputs.append(xp.concat([top, bottom], axis=0) / total)
    return KroneckerFactors(inputs, [gram.result() for gram in outputs])


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


def _kron_rows(xp, u, w):
    """Row-wise Kronecker product: ``out[n, a * w.shape[1] + b] = u[n, a] w[n, b]``."""
    return xp.reshape(u[:, :, None] * w[:, None, :], (u.shape[0], -1))


class _KroneckerBlocks:
    """Sum curvature blocks over row chunks as matrix products.

    Each block ``(i, j)`` of ``R`` (module docstring) or of the GGN is a sum
    of contractions over samples, each one matrix product with a row-wise
    Kronecker operand:

    * ``sum_n (ahat_i kron ahat_j)[n, (a, b)] M_ij[n, (p, k)]``, kept in
      ``(a, b, p, k)`` order;
    * ``sum_n (ahat_i kron delta_j)[n, (a, k)] T_ij[n, (p, b)]``, kept in
      ``(a, k, p, b)`` order.

    The axes are permuted to the parameter order ``(a, p), (b, k)`` once, in
    :meth:`add_to`, not once per chunk.
    """

    def __init__(self):
        self.second_order, self.diagonal, self.cross, self.adjacent = {}, {}, {}, {}

    @staticmethod
    def _add(store, key, value):
        if key in store:
            store[key] += value
        else:
            store[key] = value

    def add_ggn_chunk(self, xp, fwd, deltas):
        """Accumulate GGN blocks from ``deltas[i]`` of shape (n, n_rows, fan_out_i).

        ``GGN[(a, p), (b, k)] = sum_n ahat_i[n, a] ahat_j[n, b] S_ij[n, p, k]``
        with ``S_ij = sum_r delta_i[n, r, p] delta_j[n, r, k]``.
        """
        inputs = [with_ones(xp, a) for a in fwd.acts]
        for i in range(len(inputs)):
            for j in range(i, len(inputs)):
                S = xp.permute_dims(deltas[i], (0, 2, 1)) @ deltas[j]
                S = xp.reshape(S, (S.shape[0], -1))
                self._add(
                    self.second_order,
                    (i, j),
                    _kron_rows(xp, inputs[i], inputs[j]).T @ S,
                )

    def add_residual_chunk(self, xp, layout, theta, fwd, deltas, curvatures):
        """Accumulate one chunk's contributions to every block of ``R``."""
        weights = layout.layers(xp, theta)
        D = _second_order_precisions(xp, weights, fwd, curvatures)
        inputs = [with_ones(xp, a) for a in fwd.acts]
        n_hidden = layout.n_layers - 1
        for i in range(n_hidden):
            square = _kron_rows(xp, inputs[i], inputs[i]).T
            if D[i] is None:  # D_i = diag(c_i): only ``p == k`` entries.
                self._add(self.diagonal, i, square @ curvatures[i])
            else:
                M = xp.reshape(D[i], (D[i].shape[0], -1))
                self._add(self.second_order, (i, i), square @ M)
            T = None  # d acts[j] / d z_i; None while it is diag(slopes[i]).
            for j in range(i + 1, layout.n_layers):
                left = _kron_rows(xp, inputs[i], deltas[j]).T
                if T is None:
                    self._add(self.adjacent, (i, j), left @ fwd.slopes[i])
                else:
                    self._add(
                        self.cross, (i, j), left @ xp.reshape(T, (T.shape[0], -1))
                    )
                if j == n_hidden:
                    break  # M_ij = 0 for the logits.
                W = weights[j][:-1, :]
                # G = d z_j / d z_i ;  M_ij = G D_j.
                G = fwd.slopes[i][:, :, None] * W[None, :, :] if T is None else T @ W
                M = G * curvatures[j][:, None, :] if D[j] is None else G @ D[j]
                M = xp.reshape(M, (M.shape[0], -1))
                self._add(
                    self.second_order,
                    (i, j),
                    _kron_rows(xp, inputs[i], inputs[j]).T @ M,
                )
                T = G * fwd.slopes[j][:, None, :]

    def add_to(self, xp, layout, H):
        """Add the accumulated ``R`` to ``H`` in parameter order (both triangles)."""
        shape = layout.shapes
        blocks = {}

        def add_block(key, block):
            blocks[key] = block if key not in blocks else blocks[key] + block

        for i, C in self.diagonal.items():
            A, P = shape[i]
            C = xp.permute_dims(xp.reshape(C, (A, A, P)), (0, 2, 1))  # (a, p, b)
            add_block(
                (i, i), C[:, :, :, None] * xp.eye(P, dtype=C.dtype)[None, :, None, :]
            )
        for (i, j), C in self.second_order.items():
            (A, P), (B, K) = shape[i], shape[j]
            add_block(
                (i, j), xp.permute_dims(xp.reshape(C, (A, B, P, K)), (0, 2, 1, 3))
            )
        for (i, j), C in self.cross.items():
            (A, P), (B, K) = shape[i], shape[j]
            # T has no row for the ones column (b = B - 1): it does not move.
            C = xp.permute_dims(xp.reshape(C, (A, K, P, B - 1)), (0, 2, 3, 1))
            zeros = xp.zeros((A, P, 1, K), dtype=C.dtype)
            add_block((i, j), xp.concat([C, zeros], axis=2))
        for (i, j), C in self.adjacent.items():
            (A, P), (B, K) = shape[i], shape[j]
            C = xp.permute_dims(xp.reshape(C, (A, K, P)), (0, 2, 1))  # (a, p, k)
            eye = xp.eye(P, B, dtype=C.dtype)  # b == p; the ones column b = P is 0
            add_block((i, j), C[:, :, None, :] * eye[None, :, :, None])
        for (i, j), block in blocks.items():
            rows, cols = layout.layer_slice(i), layout.layer_slice(j)
            block = xp.reshape(block, (shape[i][0] * shape[i][1], -1))
            H[rows, cols] = H[rows, cols] + block
            if i != j:
                H[cols, rows] = H[cols, rows] + block.T
        return H


def _kronecker_bytes_per_row(obj):
    """Bytes of per-row intermediates of :meth:`_KroneckerBlocks.add_ggn_chunk`."""
    sizes = obj.layout.layer_sizes
    n = len(sizes) - 1
    widest = max(
        (sizes[i] + 1) * (sizes[j] + 1) + 2 * sizes[i + 1] * sizes[j + 1]
        for i in range(n)
        for j in range(i, n)
    )
    return 2 * _itemsize(obj) * (widest + sizes[-1] * sum(sizes[1:]))


def _residual_bytes_per_row(obj):
    """Bytes of per-row intermediates of :class:`_KroneckerBlocks`."""
    sizes = obj.layout.layer_sizes
    n = len(sizes) - 1
    widest = max(
        (sizes[i] + 1) * (sizes[j] + 1)
        + sizes[i + 1] * sizes[j + 1]
        + (sizes[i] + 1) * sizes[j + 1]
        + 2 * sizes[i + 1] * (sizes[j] + 1)
        for i in range(n)
        for j in range(i, n)
    )
    return 2 * _itemsize(obj) * (widest + sum(h * h for h in sizes[1:-1]))


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
        _check_square(obj, "exact Hessian")
        out = xp.zeros((n_params, n_params), dtype=theta.dtype)
    if obj.layout.n_layers == 1:
        return out  # Logits are linear in theta: R = 0.
    residual = _KroneckerBlocks()
    for Xc, Yc, sc in obj.row_chunks(_residual_bytes_per_row(obj)):
        fwd = obj.forward(theta, Xc)
        deltas, curvatures = obj.residual_backprop(theta, fwd, Yc, sc)
        residual.add_residual_chunk(xp, obj.layout, theta, fwd, deltas, curvatures)
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

#: Curvatures in factored form (:class:`KroneckerFactors`), by ``(hessian,
#: structure)``: KFAC exists for the GGN only.
FACTORED_CURVATURES = {("ggn", "kron"): kron_factors}
