"""Curvature-vector products and the cheap diagonal Newton-CG preconditions with.

Neither forms an ``n_params x n_params`` matrix: :func:`hessp_operator`
costs about two gradients per product (Pearlmutter's R-operator),
:func:`fisher_diagonal` about one gradient.
"""

from sklaplace._network import backprop, r_forward, second_order_backprop, with_ones

__all__ = ["fisher_diagonal", "hessp_operator"]


def hessp_operator(objective, theta, kind="exact", fwd=None, backprop=None):
    """Return ``v -> H v`` at a fixed ``theta``, constrained as Newton uses it.

    :meth:`NegLogPosterior.hessp` with the forward pass, the backpropagated
    residuals and the output Hessian computed once, so that each product
    costs one R-forward and one R-backward pass (about two gradients). The
    product is that of :meth:`NegLogPosterior.constrained_curvature`'s
    matrix: identity rows and columns at the ``fixed`` parameters, and ``u
    u'`` added along the flat direction ``u``, if any. No ``n_params x
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

    Returns
    -------
    hessp : callable
        Maps an array of shape ``(n_params,)`` to ``H v``.
    """
    obj = objective
    xp, layout = obj.xp, obj.layout
    fwd = obj.forward(theta) if fwd is None else fwd
    output_hessian = obj.likelihood.output_hessian(xp, fwd.logits, obj.sample_weight)
    inputs = [with_ones(xp, a) for a in fwd.acts]  # biases inside the GEMMs
    deltas = second_derivative_terms = None
    if kind == "exact":
        deltas, second_derivative_terms = (
            obj.residual_backprop(theta, fwd) if backprop is None else backprop
        )
    free = None if obj.fixed is None else 1.0 - xp.astype(obj.fixed, theta.dtype)
    flat = obj.flat_direction()

    def hessp(v):
        v_free = v if free is None else v * free
        r_pre, r_acts = r_forward(xp, layout, theta, fwd, v_free, inputs)  # J v
        r_out = output_hessian(r_pre[-1])  # Lambda J v
        # With no second-derivative terms this is J' Lambda J v (the GGN);
        # with them, plus the residual term: Pearlmutter's R{backprop}.
        Hv = second_order_backprop(
            xp,
            layout,
            theta,
            v_free,
            fwd,
            deltas,
            r_pre,
            r_out,
            second_derivative_terms,
            inputs,
            r_acts,
        )
        Hv = Hv + obj.prior_precision * v_free
        if free is not None:
            Hv = Hv * free + (v - v_free)  # identity at the fixed parameters
        if flat is not None:
            Hv = Hv + flat * xp.sum(flat * v)
        return Hv

    return hessp


def fisher_diagonal(objective, theta, fwd=None, deltas=None):
    """Diagonal of the empirical Fisher plus the prior: the CG preconditioner.

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
    # The deltas carry s_n; s_n (dl_n)^2 = (s_n dl_n)^2 / s_n (0 where s_n = 0).
    safe = xp.where(weight > 0, weight, xp.ones_like(weight))
    inverse_weight = xp.where(weight > 0, 1.0 / safe, xp.zeros_like(weight))
    squares = [
        xp.reshape(
            (with_ones(xp, a) ** 2).T @ (inverse_weight[:, None] * delta * delta),
            (-1,),
        )
        for a, delta in zip(fwd.acts, deltas)
    ]
    return xp.concat(squares) + objective.prior_precision
