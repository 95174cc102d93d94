"""Curvature-vector products and the cheap diagonal Newton-CG preconditions with.

Neither forms an ``n_params x n_params`` matrix: :func:`hessp_operator`
costs about two gradients per product (Pearlmutter's R-operator),
:func:`fisher_diagonal` about one gradient.
"""

from sklaplace._network import backprop, jvp, second_order_backprop, vjp, with_ones

__all__ = ["fisher_diagonal", "hessp_operator"]


def hessp_operator(objective, theta, kind="exact"):
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

    Returns
    -------
    hessp : callable
        Maps an array of shape ``(n_params,)`` to ``H v``.
    """
    obj = objective
    xp, layout = obj.xp, obj.layout
    fwd = obj.forward(theta)
    output_hessian = obj.likelihood.output_hessian(xp, fwd.logits, obj.sample_weight)
    deltas = second_derivative_terms = None
    if kind == "exact":
        deltas, second_derivative_terms = obj.residual_backprop(theta, fwd)
    free = None if obj.fixed is None else 1.0 - xp.astype(obj.fixed, theta.dtype)
    flat = obj.flat_direction()

    def hessp(v):
        v_free = v if free is None else v * free
        r_pre = jvp(xp, layout, theta, fwd, v_free)  # J v
        r_out = output_hessian(r_pre[-1])  # Lambda J v
        if second_derivative_terms is None:
            Hv = vjp(xp, layout, theta, fwd, r_out)  # J' Lambda J v
        else:  # plus the residual term: Pearlmutter's R{backprop}
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
            )
        Hv = Hv + obj.prior_precision * v_free
        if free is not None:
            Hv = Hv * free + (v - v_free)  # identity at the fixed parameters
        if flat is not None:
            Hv = Hv + flat * xp.sum(flat * v)
        return Hv

    return hessp


def fisher_diagonal(objective, theta):
    """Diagonal of the empirical Fisher plus the prior: the CG preconditioner.

    ``sum_n s_n (dl_n / dtheta)^2 + A`` with ``l_n`` the negative log
    likelihood of row ``n`` (Martens 2010, section 4.7): one backward pass
    of the residuals computed with ``sqrt(s_n)``, squared layer by layer, so
    it costs about one gradient (the GGN diagonal costs ``n_outputs``) and an
    integer weight still equals repeated rows.

    Returns
    -------
    diag : array of shape (n_params,)
    """
    xp, layout = objective.xp, objective.layout
    fwd = objective.forward(theta)
    residual = objective.likelihood.residual(
        xp, fwd.logits, objective.Y, xp.sqrt(objective.sample_weight)
    )
    deltas = backprop(xp, layout, theta, fwd, residual)
    squares = [
        xp.reshape((with_ones(xp, a) ** 2).T @ (delta * delta), (-1,))
        for a, delta in zip(fwd.acts, deltas)
    ]
    return xp.concat(squares) + objective.prior_precision
