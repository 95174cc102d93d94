"""Generalised Gauss-Newton curvature: full matrix, diagonal, KFAC factors.

Every routine returns the curvature of ``L(theta)`` (prior included, except
the KFAC factors) and accumulates over row chunks sized by the objective's
memory budget, so that no ``n_samples x n_params`` intermediate exists at once.
"""

from typing import NamedTuple

from sklaplace._backend import GramAccumulator, add_to_diagonal, to_numpy
from sklaplace._curvature._blocks import KroneckerBlocks
from sklaplace._jacobian import jacobian_factor
from sklaplace._memory import check_memory
from sklaplace._network import Forward, backprop, with_ones

__all__ = [
    "KroneckerFactors",
    "check_finite_curvature",
    "ggn_diagonal",
    "ggn_hessian",
    "ggn_layer_diagonals",
    "ggn_row_chunks",
    "ggn_rows",
    "kron_eigenvalues",
    "kron_factors",
    "kron_tie_matrices",
]


def itemsize(obj):
    return 8 if "64" in str(obj.X.dtype) else 4


def check_square(obj, what):
    """Refuse an ``n_params x n_params`` matrix over the memory limit, up front."""
    n_params = obj.layout.n_params
    check_memory(
        itemsize(obj) * n_params * n_params,
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


def _factor_rows(obj, Xc, sc, theta, fwd=None):
    """Forward pass on a chunk and the rows of ``Lambda_n^{1/2}``.

    ``fwd``, the chunk's rows of a forward pass at ``theta`` the caller
    has, spares the pass.
    """
    fwd = obj.forward(theta, Xc) if fwd is None else fwd
    return fwd, obj.likelihood.hessian_factor(obj.xp, fwd.logits, sc)


def _rows_of(fwd, start, stop):
    """Rows ``start:stop`` of a forward pass."""
    return Forward(
        fwd.logits[start:stop, ...],
        [a[start:stop, ...] for a in fwd.acts],
        [slope[start:stop, ...] for slope in fwd.slopes],
    )


def ggn_hessian(obj, theta):
    """Full generalised Gauss-Newton matrix ``sum_n J_n' Lambda_n J_n + A``.

    One logit: ``F' F`` with ``F`` the stacked rows ``sqrt(Lambda_n) J_n``, a
    symmetric rank-k update (``N W^2 / 2`` multiply-adds), never
    ``J' (Lambda J)``. K logits: the rank-k update would cost K times that,
    so the blocks are formed from their Kronecker structure instead (about
    ``N W^2 / 2`` multiply-adds whatever K; see :class:`KroneckerBlocks`).

    Returns
    -------
    H : array of shape (n_params, n_params)
    """
    xp, layout, n_params = obj.xp, obj.layout, obj.layout.n_params
    check_square(obj, "generalised Gauss-Newton matrix")
    if layout.n_outputs > 1:
        blocks = KroneckerBlocks()
        for Xc, _, sc in obj.row_chunks(_kronecker_bytes_per_row(obj)):
            fwd, factor = _factor_rows(obj, Xc, sc, theta)
            blocks.add_ggn_chunk(xp, fwd, backprop(xp, layout, theta, fwd, factor))
        H = blocks.add_to(xp, layout, xp.zeros((n_params, n_params), dtype=theta.dtype))
        return add_to_diagonal(xp, H, obj.prior_precision)
    gram = GramAccumulator(xp, n_params, theta.dtype)
    for F in ggn_row_chunks(obj, theta):
        gram.add(F)  # += sum_n J_n' R_n' R_n J_n
    return add_to_diagonal(xp, gram.result(), obj.prior_precision)


def ggn_row_chunks(obj, theta):
    """Yield the rows ``R_n J_n`` of ``G``, whose ``G' G`` is the GGN, by chunk.

    ``Lambda_n = R_n' R_n`` (:meth:`hessian_factor`): ``n_outputs`` rows per
    sample, each chunk of shape ``(chunk_rows * n_outputs, n_params)``.
    """
    xp, n_outputs, n_params = obj.xp, obj.layout.n_outputs, obj.layout.n_params
    # The rows and the passes that form them (the rows alone had been
    # counted: 1.4 times the budget on networks of a few parameters).
    rows = 3 * itemsize(obj) * n_outputs * n_params
    for Xc, _, sc in obj.row_chunks(rows + backprop_bytes_per_row(obj)):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        F = jacobian_factor(xp, obj.layout, theta, fwd, factor)
        yield xp.reshape(F, (-1, n_params))


def ggn_rows(obj, theta):
    """Return ``G``, all the rows of :func:`ggn_row_chunks` (no prior).

    Shape ``(n_samples * n_outputs, n_params)``; the columns of ``obj``'s
    fixed parameters are zero. The low-rank posterior's curvature
    (:class:`~sklaplace._low_rank.LowRankPosterior`).
    """
    xp = obj.xp
    G = xp.concat(list(ggn_row_chunks(obj, theta)), axis=0)
    if obj.fixed is not None:
        G = G * xp.astype(~obj.fixed, G.dtype)[None, :]
    return G


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


def backprop_bytes_per_row(obj):
    """Bytes of per-row intermediates of a forward and ``n_outputs`` backward passes.

    Those of :func:`kron_factors` and :func:`ggn_diagonal`, and beside
    their own terms, of :func:`ggn_row_chunks` (the passes that form the
    rows) and :func:`kron_eigenvalues` (and a bound for the exact
    diagonal's passes), with the likelihood's ``K x K`` Hessian factor and
    its scaled copy.
    """
    sizes, n_outputs = obj.layout.layer_sizes, obj.layout.n_outputs
    numbers = sum(s + 1 for s in sizes[:-1]) + n_outputs * (sum(sizes[1:]) + 1)
    numbers += 2 * n_outputs * n_outputs
    return 3 * itemsize(obj) * numbers


def kron_factors(obj, theta, first_inputs=None, fwd=None):
    """KFAC factors of the GGN (prior excluded), accumulated over row chunks.

    Costs one forward pass, one backward pass of ``n_outputs`` cotangents and
    ``sum_n sum_i (fan_in_i + 1)^2 / 2 + n_outputs fan_out_i^2 / 2``
    multiply-adds (symmetric rank-k updates); no ``n_params x n_params``
    matrix.

    Parameters
    ----------
    first_inputs : array, optional
        The first layer's input factor, if known: it depends on the data
        alone (``[X 1]``'s weighted Gram), so a solver that rebuilds the
        factors at every iterate computes it once (for 784 features, as many
        multiply-adds as a Hessian-vector product).
    fwd : Forward, optional
        The forward pass at ``theta`` on all rows, if the caller has it
        (784 features: half the cost of the factors).

    Returns
    -------
    factors : KroneckerFactors
    """
    xp, layout = obj.xp, obj.layout
    # [a 1]' S [a 1] = [[a' S a, a' s], [s' a, sum s]]: the Gram of the
    # weighted inputs and their weighted sums, without appending the ones.
    known = 0 if first_inputs is None else 1  # leading layers not to sum
    summed = [rows for rows, _ in layout.shapes][known:]
    grams = [None] * known + [GramAccumulator(xp, r - 1, theta.dtype) for r in summed]
    sums = [None] * known + [xp.zeros(r - 1, dtype=theta.dtype) for r in summed]
    outputs = [GramAccumulator(xp, cols, theta.dtype) for _, cols in layout.shapes]
    start = 0
    for Xc, _, sc in obj.row_chunks(backprop_bytes_per_row(obj)):
        stop = start + Xc.shape[0]
        rows = None if fwd is None else _rows_of(fwd, start, stop)
        rows, factor = _factor_rows(obj, Xc, sc, theta, rows)
        deltas = backprop(xp, layout, theta, rows, factor)  # rows g_nr per layer
        unit = bool(xp.all(sc == 1.0))
        root = xp.sqrt(sc)[:, None]
        start = stop
        for i, (a, delta) in enumerate(zip(rows.acts, deltas)):
            outputs[i].add(xp.reshape(delta, (-1, delta.shape[-1])))
            if i >= known:
                grams[i].add(a if unit else a * root)
                sums[i] = sums[i] + sc @ a
    total = obj.gradient_scale
    inputs = [] if first_inputs is None else [first_inputs]
    for gram, column in zip(grams[known:], sums[known:]):
        top = xp.concat([gram.result(), column[:, None]], axis=1)
        bottom = xp.concat([column, xp.reshape(total, (1,))])[None, :]
        inputs.append(xp.concat([top, bottom], axis=0) / total)
    return KroneckerFactors(inputs, [gram.result() for gram in outputs])


def kron_eigenvalues(obj, theta, bases):
    """Return the GGN's diagonal in each layer's Kronecker eigenbasis (EKFAC).

    For layer ``i`` with basis ``S kron V`` (``bases[i] = (S, V)``, of
    shapes ``(r, r)`` and ``(c, c)``) returns ``h`` of shape ``(r, c)``,

        h[p, q] = sum_n sum_r (S' ahat_n)[p]^2 (V' g_nr)[q]^2,

    the diagonal of ``(S kron V)' B_i (S kron V)`` with ``B_i`` the layer's
    block of ``sum_n J_n' Lambda_n J_n`` (George et al. 2018): KFAC's
    eigenvalues ``mu_p m_q`` refitted to the GGN itself, which counts the
    correlation between a row's inputs and its output curvature that ``A
    kron G`` averages away. One more pass over the rows, as
    :func:`kron_factors`; NumPy arrays.
    """
    xp = obj.xp
    h = [xp.zeros((rows, cols), dtype=theta.dtype) for rows, cols in obj.layout.shapes]
    for i, inputs, outputs in _rows_in_bases(obj, theta, bases):
        h[i] = h[i] + xp.permute_dims(inputs**2, (1, 0)) @ xp.sum(outputs**2, axis=1)
    return [to_numpy(part) for part in h]


def kron_tie_matrices(obj, theta, bases, input_groups, output_groups):
    """Covariant matrices that order the basis inside repeated KFAC eigenvalues.

    For a group ``I`` of columns of layer ``i``'s ``S`` (``input_groups[i]``,
    a list of index arrays), ``sum_n w_n (S_I' ahat_n)(S_I' ahat_n)'`` with
    ``w_n = sum_r |g_nr|^2`` the row's output curvature; for a group ``J``
    of ``V``'s columns, ``sum_n u_n sum_r (V_J' g_nr)(V_J' g_nr)'`` with ``u_n
    = |S' ahat_n|^2``: the GGN block's partial traces over the other factor
    (the weights are basis-free). A rotation ``R`` of the group's columns
    takes them to ``R' Q R``. One pass over the rows, as
    :func:`kron_eigenvalues`; NumPy arrays, one list per layer and side.
    """
    xp = obj.xp
    ties_in = [[0.0 for _ in groups] for groups in input_groups]
    ties_out = [[0.0 for _ in groups] for groups in output_groups]
    for i, inputs, outputs in _rows_in_bases(obj, theta, bases):
        if input_groups[i]:
            squares = xp.reshape(outputs**2, (outputs.shape[0], -1))
            curvature = xp.sum(squares, axis=1)[:, None]
        for k, group in enumerate(input_groups[i]):
            part = xp.take(inputs, xp.asarray(group), axis=1)
            ties_in[i][k] = ties_in[i][k] + part.T @ (part * curvature)
        if output_groups[i]:
            root = xp.sqrt(xp.sum(inputs**2, axis=1))[:, None, None]
            weighted = xp.reshape(outputs * root, (-1, outputs.shape[2]))
        for k, group in enumerate(output_groups[i]):
            part = xp.take(weighted, xp.asarray(group), axis=1)
            ties_out[i][k] = ties_out[i][k] + part.T @ part
    return (
        [[to_numpy(q) for q in layer] for layer in ties_in],
        [[to_numpy(q) for q in layer] for layer in ties_out],
    )


def _rows_in_bases(obj, theta, bases):
    """Yield ``(i, S' ahat_n, V' g_nr)`` per row chunk and layer ``i``.

    Shapes ``(n, r)`` and ``(n, n_outputs, c)``; ``bases[i] = (S, V)``.
    """
    xp, layout = obj.xp, obj.layout
    dtype = theta.dtype
    bases = [(xp.asarray(S, dtype=dtype), xp.asarray(V, dtype=dtype)) for S, V in bases]
    # Beside the passes, two layers' inputs and deltas in their bases (the
    # consumer's loop holds the last pair while the next is formed) and the
    # consumers' squares and weighted copies of one of them.
    in_basis = max(
        3 * rows + (3 * layout.n_outputs + 1) * cols for rows, cols in layout.shapes
    )
    bytes_per_row = backprop_bytes_per_row(obj) + itemsize(obj) * in_basis
    for Xc, _, sc in obj.row_chunks(bytes_per_row):
        fwd, factor = _factor_rows(obj, Xc, sc, theta)
        deltas = backprop(xp, layout, theta, fwd, factor)  # carry s_n (the factor)
        for i, (a, delta) in enumerate(zip(fwd.acts, deltas)):
            S, V = bases[i]
            yield i, with_ones(xp, a) @ S, delta @ V


def diagonal_blocks(xp, fwd, layer_diagonals):
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
    # Every layer's deltas, not the widest layer's alone (chunks had taken
    # 2.2-3.1 times the memory budget).
    for Xc, _, sc in obj.row_chunks(backprop_bytes_per_row(obj)):
        fwd = obj.forward(theta, Xc)
        diag = diag + diagonal_blocks(xp, fwd, ggn_layer_diagonals(obj, theta, fwd, sc))
    return diag + obj.prior_precision


def ggn_layer_diagonals(obj, theta, fwd, sample_weight):
    """``d_i[n, p] = sum_r delta_i[n, r, p]^2`` per layer, for one chunk.

    ``delta_i`` backpropagates the rows ``r`` of ``Lambda_n^{1/2}`` to layer
    ``i``'s pre-activation; :func:`diagonal_blocks` turns these into the
    GGN's diagonal.
    """
    xp = obj.xp
    factor = obj.likelihood.hessian_factor(xp, fwd.logits, sample_weight)
    deltas = backprop(xp, obj.layout, theta, fwd, factor)
    return [xp.sum(d * d, axis=1) for d in deltas]


def _kronecker_bytes_per_row(obj):
    """Bytes of per-row intermediates of :meth:`KroneckerBlocks.add_ggn_chunk`.

    A block between two layers multiplies the row-wise Kronecker product of
    their inputs; a layer's own block, a row block of it at a time.
    """
    sizes = obj.layout.layer_sizes
    n = len(sizes) - 1
    widest = max(
        (sizes[i] + 1) * ((sizes[j] + 1) if j > i else 1)
        + 2 * sizes[i + 1] * sizes[j + 1]
        for i in range(n)
        for j in range(i, n)
    )
    return 2 * itemsize(obj) * (widest + sizes[-1] * sum(sizes[1:]))
