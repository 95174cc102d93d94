"""The logit Jacobian of an MLP in factored form, for structured posteriors.

Layer ``l``'s columns of the Jacobian ``J`` (over its augmented weight
``[W_l; b_l]``, C order) are an outer product per sample and logit,
``J[n, k, (a, p)] = ahat_l[n, a] delta_l[n, k, p]`` (``ahat_l`` the layer's
input with a 1 appended, ``delta_l`` the logit ``k`` backpropagated to the
layer's pre-activation). A Kronecker-factored, diagonal or last-layer posterior needs
only these factors: ``O(sum_l fan_in_l + n_outputs fan_out_l)`` numbers per
sample instead of ``n_outputs * n_params`` (63 MB per ten rows at 79,510
parameters and 10 classes). A product ``J M`` with a matrix over the
parameters takes a layer's factors too, where they need a third of its
dense block's multiply-adds or fewer (:meth:`FactoredJacobian.matmul`).
"""

from sklaplace import _memory
from sklaplace._backend import rows_matmul
from sklaplace._network import backprop, forward, with_ones

__all__ = [
    "FACTORED_PRODUCT_GAIN",
    "FactoredJacobian",
    "centred_jacobian",
    "centring",
    "diagonal_variance",
    "diagonal_weights",
    "jacobian_factor",
    "jacobian_matmul",
    "logit_factors",
    "seeded_chunks",
]

#: :meth:`FactoredJacobian.matmul` takes a layer through its factors where
#: the dense product needs this many times the multiply-adds (``n_outputs *
#: (fan_in + 1)`` against ``fan_in + 1 + n_outputs``). Measured break-even
#: (one thread, ``m`` of 500-1,536): about 2.6; at 2.6 both took 0.114 s, at
#: 1.7 the factors 1.2x longer, at one logit 4x (their ``n x fan_out x m``
#: intermediate), at 4.3 and 8.7 they took 2.8x and 4.7x less.
FACTORED_PRODUCT_GAIN = 3.0


class FactoredJacobian:
    """``J`` as per-layer factors ``inputs[l]`` (n, r_l) and ``deltas[l]`` (n, K, c_l).

    Accepted by the posteriors whose ``accepts_factored_jacobian`` is True in
    place of the dense array; :meth:`dense` builds the array for the others.
    """

    __slots__ = ("inputs", "deltas", "_last", "__weakref__")

    def __init__(self, inputs, deltas):
        self.inputs, self.deltas = list(inputs), list(deltas)
        self._last = None

    @property
    def shape(self):
        """Shape of the dense ``J``: (n_samples, n_outputs, n_params)."""
        n, K = self.deltas[0].shape[:2]
        width = sum(a.shape[1] * d.shape[2] for a, d in zip(self.inputs, self.deltas))
        return (n, K, width)

    def last_layer(self):
        """Return the last layer's factors (the same object at every call)."""
        if self._last is None:
            self._last = FactoredJacobian(self.inputs[-1:], self.deltas[-1:])
        return self._last

    def dense(self, xp):
        """Return the dense ``J``, shape (n_samples, n_outputs, n_params)."""
        blocks = [_layer_block(xp, a, d) for a, d in zip(self.inputs, self.deltas)]
        return xp.concat(blocks, axis=2)

    def matmul(self, xp, M):
        """Return ``J @ M``, shape (n_samples, n_outputs, m), for ``M`` (n_params, m).

        A layer whose dense product takes at least ``FACTORED_PRODUCT_GAIN``
        times the multiply-adds of the factored one goes through its
        factors: ``ahat @ M_l`` with ``M_l`` the layer's rows of ``M`` as
        ``(fan_in + 1, fan_out * m)``, then each row's ``delta`` times its
        ``(fan_out, m)`` slice, ``(fan_in + 1 + n_outputs) fan_out m`` per
        row against the dense ``n_outputs (fan_in + 1) fan_out m``; in row
        slices whose ``rows x fan_out x m`` intermediate fits a quarter of
        ``DEFAULT_MEMORY_BUDGET`` (as one copy of a chunk's dense ``J`` does;
        one row's at least, no more than ``M``). The other layers (every
        layer of one logit) take their dense block.
        """
        K = self.deltas[0].shape[1]
        m, out, start = M.shape[1], None, 0
        for a, d in zip(self.inputs, self.deltas):
            r, c = a.shape[1], d.shape[2]
            M_l = M[start : start + r * c, ...]
            start += r * c
            if K * r >= FACTORED_PRODUCT_GAIN * (r + K):
                rows = _memory.rows_within_budget(4 * 8 * c * m)
                part = _through_factors(xp, a, d, M_l, rows)
            else:
                part = rows_matmul(xp, _layer_block(xp, a, d), M_l)
            out = part if out is None else out + part
        return out


def diagonal_weights(xp, J, inverse):
    """Per layer, ``(ahat * ahat) @ inverse_l``: ``J diag(inverse) J'`` without ``J``.

    ``J[n, k, (a, p)] = ahat[n, a] delta[n, k, p]``, so ``sum_(a, p) J_k J_l
    inverse = sum_p delta_k delta_l w_p`` with ``w = (ahat * ahat) @
    inverse_l`` (``inverse_l`` the layer's ``(fan_in + 1, fan_out)`` block):
    ``O(n_params)`` per row, no ``n_outputs * n_params`` dense ``J``.

    Returns
    -------
    weights : list of arrays of shape (n_samples, fan_out_l)
        One per layer of ``J`` (a :class:`FactoredJacobian`).
    """
    weights, start = [], 0
    for a, d in zip(J.inputs, J.deltas):
        r, c = a.shape[1], d.shape[2]
        block = xp.reshape(inverse[start : start + r * c], (r, c))
        # An input none of whose weights varies (pruned: inverse 0) adds
        # nothing, however large it is (its square times 0 would be NaN).
        silent = xp.all(block == 0.0, axis=1)
        if bool(xp.any(silent)):
            a = xp.where(silent[None, :], xp.zeros_like(a), a)
        weights.append((a * a) @ block)
        start += r * c
    return weights


def diagonal_variance(xp, J, inverse):
    """``J_n diag(inverse) J_n'`` per sample, shape (n, n_outputs, n_outputs).

    ``J`` is an array or a :class:`FactoredJacobian`, whose layers give
    ``delta diag(w) delta'`` with ``w`` their :func:`diagonal_weights` (no
    dense ``J``: a million weights' took two rows a chunk).
    """
    if isinstance(J, FactoredJacobian):
        total = 0.0
        for d, w in zip(J.deltas, diagonal_weights(xp, J, inverse)):
            total = total + (d * w[:, None, :]) @ xp.permute_dims(d, (0, 2, 1))
        return total
    return (J * inverse[None, None, :]) @ xp.permute_dims(J, (0, 2, 1))


def jacobian_factor(xp, layout, theta, fwd, cotangents):
    """Per-sample products ``J_n' U_n[r]`` as rows, shape ``(n, n_rows, n_params)``.

    With ``U_n = I`` this is the logit Jacobian ``J``; with ``U_n`` a square
    root of the output Hessian it is a factor of the GGN.

    Parameters
    ----------
    cotangents : array of shape (n_samples, n_rows, n_outputs)
    """
    deltas = backprop(xp, layout, theta, fwd, cotangents)
    inputs = [with_ones(xp, a) for a in fwd.acts]
    return FactoredJacobian(inputs, deltas).dense(xp)


def _layer_block(xp, a, d):
    """One layer's columns of the dense ``J``: ``ahat`` times ``delta`` per row."""
    n, K = d.shape[:2]
    return xp.reshape(a[:, None, :, None] * d[:, :, None, :], (n, K, -1))


def _through_factors(xp, a, d, M_l, rows):
    """One layer's ``J_l @ M_l`` from its factors, ``rows`` rows at a time."""
    n, r, c, m = a.shape[0], a.shape[1], d.shape[2], M_l.shape[1]
    block = xp.reshape(M_l, (r, c * m))
    # Slices end at n: the array API leaves a stop past the end unspecified.
    slices = [slice(s, min(s + rows, n)) for s in range(0, n, rows)]
    parts = [
        d[rows_in, ...] @ xp.reshape(a[rows_in, ...] @ block, (-1, c, m))
        for rows_in in slices
    ]
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def jacobian_matmul(xp, J, M):
    """Return ``J @ M`` over the parameters; ``J`` dense or a :class:`FactoredJacobian`.

    Shape (n_samples, n_outputs, m) for ``M`` of shape (n_params, m).
    """
    if isinstance(J, FactoredJacobian):
        return J.matmul(xp, M)
    return rows_matmul(xp, J, M)


def centring(xp, n_outputs, dtype):
    """``C = I - 11'/K`` for K logits (a softmax ignores a common shift); 1 for one.

    Backprop seeded with ``C`` in place of ``I`` gives the Jacobian of the
    centred logits, ``C J`` (``centred=True`` in :func:`logit_factors` and
    :func:`~sklaplace._predictive.logit_jacobians`), at no extra cost. The
    prior alone sets the posterior's variance along the softmax's common
    shifts (each last-layer input's weights to every class moved together,
    and the output biases): up to ``1 / (alpha c)``, or ``1 / (b c)`` with
    ``b`` the bias precision. Centred after the square, ``C (J P^{-1} J')
    C``, that variance's round-off swamped what a softmax sees (``alpha``
    and ``prior_precision_scale`` 1e-6: logit variances of 3.6e12 around
    centred ones of 0.27, 0.5% of which moved with the rows predicted beside
    them); centred before, it never enters.
    """
    if n_outputs == 1:
        return xp.ones((1, 1), dtype=dtype)
    return xp.eye(n_outputs, dtype=dtype) - 1.0 / n_outputs


def seeded_chunks(xp, layout, theta, activation, X, rows, centred):
    """Yield each chunk of ``rows`` rows' forward pass and backprop seeds.

    Parameters
    ----------
    xp : module
    layout : ParamLayout
    theta : array of shape (n_params,)
    activation : str
    X : array of shape (n_samples, n_features)
    rows : int
        Rows per chunk.
    centred : bool
        Seed with ``C`` (:func:`centring`) rather than ``I``.

    Yields
    ------
    fwd : Forward
        The chunk's forward pass.
    seeds : array of shape (n_chunk, K, K)
        Each row's ``I`` or ``C``: backprop from them gives the logits'
        Jacobian ``J`` or the centred logits' ``C J``, factored or dense.
    """
    K = layout.n_outputs
    seed = centring(xp, K, theta.dtype) if centred else xp.eye(K, dtype=theta.dtype)
    for start in range(0, X.shape[0], rows):
        Xc = xp.asarray(X[start : min(start + rows, X.shape[0]), ...])
        fwd = forward(xp, layout, theta, Xc, activation)
        yield fwd, xp.broadcast_to(seed[None, :, :], (Xc.shape[0], K, K))


def centred_jacobian(xp, J):
    """``C J`` of a ``J`` already formed, dense or factored; ``J`` for one logit.

    For the projections of ``J`` (``J M``, whose class axis is ``J``'s) and
    Jacobians made without ``centred=True`` (see :func:`centring`).
    """
    if J.shape[1] == 1:
        return J
    if isinstance(J, FactoredJacobian):
        deltas = [d - xp.mean(d, axis=1, keepdims=True) for d in J.deltas]
        return FactoredJacobian(J.inputs, deltas)
    return J - xp.mean(J, axis=1, keepdims=True)


def logit_factors(xp, layout, theta, activation, X, max_rows=None, centred=False):
    """Yield the logits and their :class:`FactoredJacobian` in row chunks.

    The chunks' factors fit ``DEFAULT_MEMORY_BUDGET``; at most ``max_rows``
    rows a chunk where its consumer builds the dense ``J`` (default: no bound).
    ``centred=True``: the factors of ``C J``, the centred logits' (see
    :func:`centring`).

    Yields
    ------
    logits : array of shape (n_chunk, n_outputs)
    J : FactoredJacobian
    """
    K = layout.n_outputs
    numbers = sum(r + K * c for r, c in layout.shapes) + 2 * K * K
    rows = _memory.rows_within_budget(3 * 8 * numbers)
    rows = rows if max_rows is None else min(rows, max_rows)
    for fwd, seeds in seeded_chunks(xp, layout, theta, activation, X, rows, centred):
        deltas = backprop(xp, layout, theta, fwd, seeds)
        inputs = [with_ones(xp, a) for a in fwd.acts]
        yield fwd.logits, FactoredJacobian(inputs, deltas)
