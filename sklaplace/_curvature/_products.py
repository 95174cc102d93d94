"""Curvature-vector products and the cheap diagonal Newton-CG preconditions with.

Neither forms an ``n_params x n_params`` matrix: :func:`hessp_operator`
costs about two gradients per product (Pearlmutter's R-operator),
:func:`fisher_diagonal` about one gradient.
"""

import sys

from sklaplace._network import (
    Forward,
    backprop,
    r_forward,
    second_order_backprop,
    with_ones,
)

__all__ = [
    "SINGLE_PRECISION_LIMIT",
    "fisher_diagonal",
    "hessp_operator",
    "likelihood_product",
    "single_precision_input",
    "squared_inputs",
]


#: Largest magnitude of an array entering a single-precision product (the
#: sample weights scaled to at most 1): a product multiplies a few of them,
#: which should stay below float32's 3.4e38; sums over many rows can still
#: overflow, and a product that is not finite is redone in double precision.
SINGLE_PRECISION_LIMIT = 1e12
#: Magnitude below which an operand of a single-precision product is
#: flushed to zero. Products of small operands otherwise underflow to
#: subnormal float32 numbers, which made the matrix products 3-4x slower
#: (one-hot categories, ELU: a whole default fit 5x). Every operand is at
#: most :data:`SINGLE_PRECISION_LIMIT` (``v`` at most 1), so a flushed one
#: moves a term by less than 1e-8 of float32's round-off scale.
SINGLE_FLUSH = 1e-20


def hessp_operator(
    objective,
    theta,
    kind="exact",
    fwd=None,
    backprop=None,
    single_precision=False,
    single_input=None,
):
    """Return ``v -> H v`` at a fixed ``theta``, constrained as Newton uses it.

    :meth:`NegLogPosterior.hessp` with the forward pass, the backpropagated
    residuals and the output Hessian computed once, so that each product
    costs one R-forward and one R-backward pass (about two gradients). The
    product is that of :meth:`NegLogPosterior.constrained_curvature`'s
    matrix: identity rows and columns at the ``fixed`` parameters, and ``U
    U'`` added along the flat shifts ``U``, if any. No ``n_params x
    n_params`` array is formed.

    Parameters
    ----------
    objective : NegLogPosterior
    theta : array of shape (n_params,)
    kind : {"exact", "ggn"}
        ``"exact"``: Pearlmutter's R-operator on the gradient (both Hessian
        terms); ``"ggn"``: ``J' Lambda J v + A v``.
    fwd : Forward, default=None
        The forward pass at ``theta``, if the caller has it.
    backprop : tuple, default=None
        :meth:`NegLogPosterior.residual_backprop` at ``theta``, if the caller
        has it (``kind="exact"`` only).
    single_precision : bool, default=False
        Compute the likelihood's part in float32 (the prior's, the fixed
        parameters' and the flat shifts' stay in ``theta``'s precision):
        1.7-3x faster on the networks of ``benchmarks/bench_solvers.py``,
        relative error 1e-7 to 1e-6 there (more on ill-conditioned
        problems: 2e-4 measured on a separable one at alpha 1e-4), for
        solvers that need products to a few digits only (Newton-CG's
        forcing terms ask at most about 1e-4 of the residual at
        ``tol >= 1e-8``; it rechecks doubtful steps in double precision).
        The sample weights and ``v`` are scaled to at most 1 first, and the
        scale put back in ``theta``'s precision, so that
        neither underflows; where an array would leave float32's range
        (:data:`SINGLE_PRECISION_LIMIT`), or a product is not finite, the
        products are ``theta``'s precision from then on.
    single_input : array, default=None
        :func:`single_precision_input` of the training ``X``, if the caller
        keeps it for many operators (formed here otherwise).

    Returns
    -------
    hessp : callable
        Maps an array of shape ``(n_params,)`` to ``H v``.
    """
    obj = objective
    xp = obj.xp
    fwd = obj.forward(theta) if fwd is None else fwd
    deltas = second_derivative_terms = None
    if kind == "exact":
        deltas, second_derivative_terms = (
            obj.residual_backprop(theta, fwd) if backprop is None else backprop
        )
    single = None
    if single_precision:
        single = _single_precision_product(
            obj, theta, fwd, deltas, second_derivative_terms, single_input
        )
    double = None  # built when first needed: it copies every layer's input
    free = None if obj.fixed is None else 1.0 - xp.astype(obj.fixed, theta.dtype)
    flat = obj.flat_shift_operator()

    def hessp(v):
        nonlocal single, double
        v_free = v if free is None else v * free
        Hv = None if single is None else single(v_free)
        if Hv is not None and not bool(xp.all(xp.isfinite(Hv))):
            single, Hv = None, None  # overflowed in float32: full precision
        if Hv is None:
            if double is None:
                double = likelihood_product(
                    obj, theta, fwd, obj.sample_weight, deltas, second_derivative_terms
                )
            Hv = double(v_free)
        Hv = Hv + obj.prior_precision * v_free
        if free is not None:
            Hv = Hv * free + (v - v_free)  # identity at the fixed parameters
        if flat is not None:
            Hv = Hv + flat(v)
        return Hv

    return hessp


def likelihood_product(
    obj, theta, fwd, sample_weight, deltas, second_terms, first_input=None
):
    """``v -> `` the likelihood's part of ``H v``, in the precision of its inputs.

    ``J' Lambda J v`` (the GGN's) where ``deltas`` and ``second_terms`` (from
    :meth:`NegLogPosterior.residual_backprop`) are None; with them, the
    exact Hessian's (Pearlmutter's R-operator on the gradient).
    ``first_input`` is ``with_ones(fwd.acts[0])`` if the caller has it.
    """
    xp, layout = obj.xp, obj.layout
    output_hessian = obj.likelihood.output_hessian(xp, fwd.logits, sample_weight)
    if first_input is None:
        first_input = with_ones(xp, fwd.acts[0])
    # Biases inside the GEMMs.
    inputs = [first_input] + [with_ones(xp, a) for a in fwd.acts[1:]]
    weights = layout.layers(xp, theta)  # split once per operator

    def product(v):
        directions = layout.layers(xp, v)  # once for both passes
        r_pre, r_acts = r_forward(xp, weights, fwd, directions, inputs)  # J v
        r_out = output_hessian(r_pre[-1])  # Lambda J v
        # With no second-derivative terms this is J' Lambda J v (the GGN);
        # with them, plus the residual term: Pearlmutter's R{backprop}.
        return second_order_backprop(
            xp,
            weights,
            directions,
            fwd,
            deltas,
            r_pre,
            r_out,
            second_terms,
            inputs,
            r_acts,
        )

    return product


def _to_single(xp, a, limit=None):
    """Return ``a`` in float32, entries below :data:`SINGLE_FLUSH` flushed to zero.

    None where ``limit`` is given and an entry's float32 magnitude exceeds
    it (or is not a number); the magnitudes the flush reads serve the check.
    """
    a = xp.astype(a, xp.float32)
    magnitude = xp.abs(a)
    if limit is not None and not float(xp.max(magnitude)) <= limit:
        return None
    return xp.where(magnitude < SINGLE_FLUSH, xp.zeros_like(a), a)


def _peak(xp, a):
    """``max(abs(a))`` without a temporary the size of ``a``."""
    return max(float(xp.max(a)), -float(xp.min(a)))


def single_precision_input(xp, X):
    """``[X, 1]`` in float32 for the single-precision products, or None.

    Every single-precision operator multiplies it: a solver that builds one
    per iteration (Newton-CG) forms it once (re-forming it had taken 7% of
    a digits fit).

    Parameters
    ----------
    xp : module
        Array namespace of ``X``.
    X : array of shape (n_samples, n_features)
        The first layer's input.

    Returns
    -------
    single_input : array of shape (n_samples, n_features + 1) or None
        ``X`` cast to float32 (entries below :data:`SINGLE_FLUSH` flushed
        to zero) with a column of ones; None where ``X`` leaves float32's
        range (:data:`SINGLE_PRECISION_LIMIT`).
    """
    if not _peak(xp, X) <= SINGLE_PRECISION_LIMIT:
        return None
    return with_ones(xp, _to_single(xp, X))


def _single_precision_product(obj, theta, fwd, deltas, second_terms, first_input=None):
    """:func:`likelihood_product` in float32, or None if it could overflow.

    The product is linear in the sample weights (the residual terms carry
    them too) and in ``v``: both are scaled to a largest magnitude of 1,
    and the scales multiply the result in ``theta``'s precision.
    ``first_input`` is :func:`single_precision_input` of ``fwd.acts[0]``, if
    the caller has it.
    """
    xp = obj.xp
    weight_scale = float(xp.max(obj.sample_weight))
    if not weight_scale > 0:
        return None
    if first_input is None:
        first_input = single_precision_input(xp, fwd.acts[0])
        if first_input is None:
            return None
    terms = (deltas or []) + (second_terms or [])
    if weight_scale != 1.0:  # (unit weights, the common case: no copies)
        terms = [d / weight_scale for d in terms]
    single = []
    for a in [theta, fwd.logits, *fwd.acts[1:], *fwd.slopes, *terms]:
        single.append(_to_single(xp, a, SINGLE_PRECISION_LIMIT))
        if single[-1] is None:
            return None
    theta, logits, single = single[0], single[1], single[2:]
    n_acts, n_slopes = len(fwd.acts) - 1, len(fwd.slopes)
    acts, slopes = single[:n_acts], single[n_acts : n_acts + n_slopes]
    terms = single[n_acts + n_slopes :]
    n_deltas = 0 if deltas is None else len(deltas)
    product = likelihood_product(
        obj,
        theta,
        # The products read the first layer's input from ``first_input``;
        # ``acts[0]`` (a view, not read) keeps the pass complete.
        Forward(logits, [first_input[:, :-1]] + acts, slopes),
        _to_single(xp, obj.sample_weight / weight_scale),
        None if deltas is None else terms[:n_deltas],
        None if second_terms is None else terms[n_deltas:],
        first_input,
    )

    def single_product(v):
        v_scale = float(xp.max(xp.abs(v)))
        if v_scale == 0:
            return xp.zeros_like(v)  # (a NaN scale goes on, to a NaN product)
        Hv = xp.astype(product(_to_single(xp, v / v_scale)), v.dtype)
        return (weight_scale * v_scale) * Hv

    return single_product


def fisher_diagonal(
    objective, theta, fwd=None, deltas=None, unit_floor=0.0, first_squares=None
):
    """Diagonal of the empirical Fisher (floored per unit) plus the prior.

    ``sum_n s_n (dl_n / dtheta)^2 + A`` with ``l_n`` the negative log
    likelihood of row ``n`` (Martens 2010, section 4.7), squared layer by
    layer from the backpropagated residuals, so it costs about one gradient
    (the GGN diagonal costs ``n_outputs``), or one matrix product per layer
    given the gradient's own ``deltas``; an integer weight still equals
    repeated rows.

    Parameters
    ----------
    objective : NegLogPosterior
    theta : array of shape (n_params,)
    fwd : Forward, default=None
        The forward pass at ``theta``, if the caller has it.
    deltas : list of arrays, default=None
        The residuals ``s_n (dl_n / dz_i)`` backpropagated to every layer
        (:meth:`NegLogPosterior.residual_backprop`), if the caller has them.
    unit_floor : float, default=0.0
        Adds ``unit_floor * A_j * mean_k(G_k)`` to the entry of the weight
        from input ``j`` to unit ``k``, with ``A_j = sum_n s_n a_nj^2`` the
        input's second moment and ``G_k = sum_n s_n (dl_n / dz_nk)^2 / sum_n
        s_n`` the unit's: the Kronecker factors' damping term (Martens &
        Grosse 2015, section 6.3), with the layer's mean residual standing
        in for a unit's own. A unit whose rows all have zero residual (a
        class no row is wrong about, a saturated unit) then keeps the scale
        of its inputs instead of the prior's alone. Pruned units (no
        residual) count in the mean, lowering the floor of the others.
    first_squares : tuple of arrays, default=None
        :func:`squared_inputs` of the first layer's input ``X``, if the
        caller has them.

    Returns
    -------
    diag : array of shape (n_params,)
    """
    xp, layout = objective.xp, objective.layout
    fwd = objective.forward(theta) if fwd is None else fwd
    weight = objective.sample_weight
    if deltas is None:
        residual = objective.likelihood.residual(xp, fwd.logits, objective.Y, weight)
        deltas = backprop(xp, layout, theta, fwd, residual)
    # The deltas carry s_n; s_n (dl_n)^2 = (s_n dl_n)^2 / s_n (0 where s_n = 0,
    # and where 1 / s_n overflows: a weight of 2e-313 had made the whole
    # preconditioner NaN, inf times the delta's square of 0, and Newton-CG
    # stopped at its first iteration; such a row counts for nothing here).
    counted = weight > 1.0 / sys.float_info.max
    safe = xp.where(counted, weight, xp.ones_like(weight))
    inverse_weight = xp.where(counted, 1.0 / safe, xp.zeros_like(weight))
    total = xp.sum(weight)
    blocks = []
    for i, (a, delta) in enumerate(zip(fwd.acts, deltas)):
        known = i == 0 and first_squares is not None
        inputs, moments = first_squares if known else squared_inputs(xp, a, weight)
        residuals = inverse_weight[:, None] * delta**2
        block = inputs.T @ residuals
        if unit_floor:
            mean_unit = xp.mean(xp.sum(residuals, axis=0)) / total
            block = block + (unit_floor * mean_unit) * moments[:, None]
        blocks.append(xp.reshape(block, (-1,)))
    return xp.concat(blocks) + objective.prior_precision


def squared_inputs(xp, a, weight):
    """Return ``[a, 1]^2`` (entrywise) and its weighted column sums.

    The sums are ``sum_n s_n [a_n, 1]^2``, the inputs' second moments.

    What :func:`fisher_diagonal` reads of a layer's input ``a``; the first
    layer's depend on the data alone, so a solver that builds the diagonal
    at every iterate computes them once.
    """
    inputs = with_ones(xp, a) ** 2
    return inputs, inputs.T @ weight
