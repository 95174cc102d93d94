"""The MAP objective: the negative log posterior of an MLP classifier.

``L(theta) = -sum_n s_n log p(y_n | f_n(theta)) + 1/2 theta' A theta``, with the
likelihood SUMMED over samples (not averaged), sample weights ``s_n`` and a
diagonal prior precision ``A`` (see :mod:`sklaplace._prior`). This is
``n_samples`` times MLPClassifier's loss when ``A`` holds ``alpha`` on the
weights and 0 on the biases. ``L`` is minus the log posterior up to a constant,
so its Hessian is the posterior precision at a mode.
"""

import numpy as np

from sklaplace import _memory
from sklaplace._activations import SECOND_DERIVATIVES
from sklaplace._backend import pin_to_identity, to_numpy
from sklaplace._curvature import likelihood_product
from sklaplace._memory import check_memory
from sklaplace._network import backprop, forward, vjp
from sklaplace._warnings import warn
from sklaplace.exceptions import BaseRateWarning

__all__ = [
    "CONSTANT_OUTPUT_SPREAD",
    "NegLogPosterior",
    "flat_shift_rows",
    "ignores_its_input",
    "shift_blocks",
    "warn_if_base_rate",
]


class NegLogPosterior:
    """Negative log posterior ``L(theta)`` of an MLP on fixed data.

    Parameters
    ----------
    xp : module
        Array namespace of all arrays below.
    layout : ParamLayout
        Parameter layout (DESIGN.md section 1).
    activation : str
        Hidden activation, a key of ``ACTIVATIONS``.
    likelihood : {Bernoulli, Categorical}
        Likelihood class from :mod:`sklaplace._likelihood`.
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples, n_outputs)
        Encoded targets (see ``likelihood.encode``).
    sample_weight : array of shape (n_samples,)
    prior_precision : array of shape (n_params,)
    memory_budget : int, default=None
        Bytes allowed for one chunk of per-sample intermediates when forming
        curvature matrices; rows are processed in chunks that fit it. None:
        ``sklaplace._memory.DEFAULT_MEMORY_BUDGET`` as it is at construction.
    fixed : array of bool of shape (n_params,), default=None
        Parameters held at zero (pruned weights, dead units): the gradient
        is zero there and :meth:`constrained_curvature` decouples them (unit
        precision, no coupling), so solvers never move them; the predictive
        zeroes their Jacobian columns. ``theta`` must be zero at these
        entries.

    Notes
    -----
    Evaluating the objective never mutates it: ``theta`` is always passed in.
    """

    def __init__(
        self,
        xp,
        layout,
        activation,
        likelihood,
        X,
        Y,
        sample_weight,
        prior_precision,
        memory_budget=None,
        fixed=None,
    ):
        self.xp = xp
        self.layout = layout
        self.activation = activation
        self.likelihood = likelihood
        self.X, self.Y, self.sample_weight = X, Y, sample_weight
        self.prior_precision = prior_precision
        # Read at construction, not import: the module constant can be set.
        self.memory_budget = (
            _memory.DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        )
        self.fixed = fixed
        # 1.0 on the free parameters, 0.0 on the fixed ones.
        self._free = None if fixed is None else 1.0 - xp.astype(fixed, X.dtype)

    @property
    def n_samples(self):
        """Number of rows of ``X``."""
        return self.X.shape[0]

    def forward(self, theta, X=None):
        """Forward cache at ``theta`` (on ``X``, default the training data)."""
        return forward(
            self.xp, self.layout, theta, self.X if X is None else X, self.activation
        )

    @property
    def gradient_scale(self):
        """``sum_n s_n``: gradients divided by it are per-sample averages."""
        return self.xp.sum(self.sample_weight)

    def flat_shifts(self):
        """Return the last layer's rows along whose common shift ``L`` is flat.

        See :func:`flat_shift_rows`: a NumPy bool array over the rows of the
        last layer's ``[W; b]``, or ``None`` if no row is flat.
        """
        return flat_shift_rows(self.layout, self.prior_precision, self.fixed)

    def flat_shift_operator(self):
        """Return ``v -> U U' v`` for the :meth:`flat_shifts`' unit directions.

        ``U`` has one column per flat row ``r``, ``1/sqrt(K)`` on that row's
        K parameters, so ``U U' v`` is each flat row's mean of ``v`` on the
        row (``None`` if no row is flat).
        """
        flat = self.flat_shifts()
        if flat is None:
            return None
        xp, layout = self.xp, self.layout
        start, (n_rows, K) = layout.offsets[-2], layout.shapes[-1]
        mask = xp.asarray(flat[:, None].astype(float), dtype=self.prior_precision.dtype)

        def product(v):
            rows = xp.reshape(v[start:], (n_rows, K))
            means = xp.broadcast_to(
                mask * xp.mean(rows, axis=1, keepdims=True), (n_rows, K)
            )
            return xp.concat([xp.zeros_like(v[:start]), xp.reshape(means, (-1,))])

        return product

    def constrained_curvature(self, H):
        """Return the curvature ``H`` as Newton and the posterior use it.

        Two constraints no data can pin down are made explicit: ``U U'`` is
        added along the :meth:`flat_shifts`' unit directions ``U``, if any,
        and the rows and columns of ``fixed`` parameters become those of the
        identity (no step, no variance, nothing added to ``log det``). A
        diagonal ``H`` (shape ``(n_params,)``) gets ones at the fixed entries
        only: its entries on the last layer are already positive. A full ``H`` may be
        overwritten (NumPy and CuPy never copy it: each ``n x n`` copy is
        ``8 n^2`` bytes), so pass a fresh curvature.
        """
        xp, free = self.xp, self._free
        if H.ndim == 1:
            return H if free is None else H * free + (1.0 - free)
        if free is not None:
            H = pin_to_identity(xp, H, self.fixed)
        flat = self.flat_shifts()
        if flat is not None:
            # u u' with u = 1/sqrt(K) on a flat row's K parameters: 1/K on
            # that row's K x K block.
            K = self.layout.n_outputs
            for block in shift_blocks(self.layout, np.flatnonzero(flat)):
                H[block, block] = H[block, block] + 1.0 / K
        return H

    def prior_term(self, theta):
        """``1/2 theta' A theta``."""
        return 0.5 * self.xp.sum(self.prior_precision * theta * theta)

    def loss(self, theta, fwd=None):
        """``L(theta)``; ``fwd`` may be a cached :meth:`forward` at ``theta``."""
        fwd = self.forward(theta) if fwd is None else fwd
        log_lik = self.likelihood.log_likelihood(
            self.xp, fwd.logits, self.Y, self.sample_weight
        )
        return -log_lik + self.prior_term(theta)

    def loss_gradient(self, theta, fwd=None, with_backprop=False):
        """Return ``(L(theta), dL/dtheta)``, and the backward pass if asked.

        Parameters
        ----------
        theta : array of shape (n_params,)
        fwd : Forward, default=None
            The forward pass at ``theta``, if the caller has it.
        with_backprop : bool, default=False
            Also return the gradient's backward pass.

        Returns
        -------
        loss : float
        gradient : array of shape (n_params,)
        backprop : tuple of lists of arrays
            Only with ``with_backprop``: ``(deltas, backs)`` of
            :func:`~sklaplace._network.backprop`, from which
            :meth:`residual_backprop` at ``theta`` needs no new pass.
        """
        xp, layout = self.xp, self.layout
        fwd = self.forward(theta) if fwd is None else fwd
        log_lik, residual = self.likelihood.log_likelihood_and_residual(
            xp, fwd.logits, self.Y, self.sample_weight
        )
        deltas, backs = backprop(xp, layout, theta, fwd, residual, return_backs=True)
        grad = (
            vjp(xp, layout, theta, fwd, residual, deltas) + self.prior_precision * theta
        )
        if self._free is not None:
            grad = grad * self._free
        loss = -log_lik + self.prior_term(theta)
        return (loss, grad, (deltas, backs)) if with_backprop else (loss, grad)

    def hessp(self, theta, v, kind="exact", fwd=None):
        """Hessian-vector product ``H v`` of ``L`` at ``theta``.

        Parameters
        ----------
        theta, v : array of shape (n_params,)
        kind : {"exact", "ggn"}
            ``"exact"`` is Pearlmutter's R-operator on the gradient (both
            Hessian terms); ``"ggn"`` is ``J' Lambda J v + A v``.
        """
        fwd = self.forward(theta) if fwd is None else fwd
        terms = self.residual_backprop(theta, fwd) if kind == "exact" else (None, None)
        product = likelihood_product(self, theta, fwd, self.sample_weight, *terms)
        return product(v) + self.prior_precision * v

    def residual_backprop(
        self, theta, fwd, Y=None, sample_weight=None, gradient_backprop=None
    ):
        """Backpropagated residuals and second-order activation terms.

        ``gradient_backprop`` is :meth:`loss_gradient`'s ``(deltas, backs)``
        at ``theta``, if the caller has it (it carries the training ``Y``
        and weights, so it cannot come with others).

        Returns
        -------
        deltas : list of arrays
            ``dL_lik / dz_i`` per layer, shape ``(n_samples, fan_out_i)``.
        second_derivative_terms : list of arrays
            ``phi''(z_i) * (delta_{i+1} @ W_{i+1}.T)`` per hidden layer: the
            diagonal second-order term of the exact Hessian in ``z_i``.
        """
        xp, layout = self.xp, self.layout
        if gradient_backprop is not None and not (Y is None and sample_weight is None):
            raise ValueError(
                "gradient_backprop is the training data's: no Y or weights"
            )
        if gradient_backprop is None:
            Y = self.Y if Y is None else Y
            if sample_weight is None:
                sample_weight = self.sample_weight
            residual = self.likelihood.residual(xp, fwd.logits, Y, sample_weight)
            gradient_backprop = backprop(
                xp, layout, theta, fwd, residual, return_backs=True
            )
        deltas, backs = gradient_backprop
        second = SECOND_DERIVATIVES[self.activation]
        second_derivative_terms = [
            second(xp, a) * back for a, back in zip(fwd.acts[1:], backs)
        ]
        return deltas, second_derivative_terms

    def row_chunks(self, bytes_per_row):
        """Yield ``(X, Y, sample_weight)`` row chunks that fit the memory budget.

        Raises :class:`MemoryLimitError` if a single row's intermediates
        exceed ``DENSE_MEMORY_LIMIT`` (a chunk is never smaller than a row).
        """
        check_memory(bytes_per_row, "The curvature intermediates of one sample")
        rows = max(1, int(self.memory_budget // max(bytes_per_row, 1)))
        for start in range(0, self.n_samples, rows):
            stop = min(start + rows, self.n_samples)
            yield (
                self.X[start:stop, ...],
                self.Y[start:stop, ...],
                self.sample_weight[start:stop],
            )


#: Largest spread of a logit over the rows (max - min, in nats) of a network
#: that ignores its input: its probabilities move by less than 1e-6.
CONSTANT_OUTPUT_SPREAD = 1e-6


def flat_shift_rows(layout, prior_precision, fixed=None):
    """Rows of the last layer's ``[W; b]`` along whose common shift nothing pins ``L``.

    A softmax ignores a common shift of its K logits, so moving one row of
    the last layer (one input's weights to every class, or the K output
    biases) by the same amount in every class changes no prediction. Where
    the row's prior precision is zero on all K entries (``alpha=0`` for a
    weight row, ``bias_prior_precision=0`` for the bias row) and none of
    them is ``fixed``, neither data nor prior determine that shift and the
    posterior precision is singular along it: Newton steps and the posterior
    add a unit curvature there (``u u'``, ``u = 1/sqrt(K)`` on the row), a
    direction the centred logits, and so every prediction, never see.

    Parameters
    ----------
    layout : ParamLayout
    prior_precision : array of shape (n_params,)
        The prior precision ``A`` (any namespace).
    fixed : array of bool of shape (n_params,), default=None
        Parameters held at zero.

    Returns
    -------
    flat : ndarray of bool of shape (n_rows,) or None
        NumPy, over the ``n_rows = fan_in + 1`` rows of the last layer;
        ``None`` for one logit or where no row is flat.
    """
    K = layout.n_outputs
    if K < 2:
        return None
    last, shape = layout.layer_slice(layout.n_layers - 1), layout.shapes[-1]
    flat = np.all(np.reshape(to_numpy(prior_precision)[last], shape) == 0, axis=1)
    if fixed is not None:
        flat &= ~np.any(np.reshape(to_numpy(fixed)[last], shape), axis=1)
    return flat if np.any(flat) else None


def shift_blocks(layout, rows):
    """Slices of ``theta`` holding the last layer's ``rows`` (K entries each)."""
    start, K = layout.offsets[-2], layout.n_outputs
    return [slice(start + row * K, start + (row + 1) * K) for row in rows]


def ignores_its_input(objective, theta):
    """Whether the network's logits are the same on every row it is fitted to.

    Such a network is a MAP collapsed under a strong prior; measured, all
    its hidden units sit at zero, so its posterior mode is one, not one per
    order and sign of its units
    (:func:`~sklaplace._network.log_equivalent_modes`).
    """
    xp = objective.xp
    logits = objective.forward(theta).logits
    spread = xp.max(logits, axis=0) - xp.min(logits, axis=0)
    return float(xp.max(spread)) <= CONSTANT_OUTPUT_SPREAD


def warn_if_base_rate(objective, theta):
    """Warn where the fitted network ignores its input (:class:`BaseRateWarning`).

    Not where every row counted has one class (weights that leave one class
    weighted: :class:`~sklaplace.exceptions.UnweightedClassWarning` says
    so), since ignoring the input is then the fit's right answer.
    """
    Y = objective.Y
    if bool(objective.xp.all(Y == Y[:1, ...])):
        return
    if ignores_its_input(objective, theta):
        warn(
            "The fitted network ignores its input: its logits are the same on "
            "every training row, so it predicts the same probabilities for every "
            "input (the class frequencies, where the fit converged). The prior "
            "(alpha) outweighs what the data show to this network: the features "
            "may carry no signal or the sample weights sum to few rows' worth, "
            "or a smaller alpha, fewer layers or another activation may fit.",
            BaseRateWarning,
        )
