"""The multilayer perceptron: parameter layout, forward pass, backprop, R-op.

Conventions (DESIGN.md section 1), written once here:

* Layers ``i = 0 .. n_layers - 1``; ``acts[0] = X``; ``z_i = acts[i] @ W_i + b_i``;
  ``acts[i + 1] = phi(z_i)`` for hidden layers; the logits are ``z_{n_layers-1}``.
* ``W_i`` has shape ``(fan_in, fan_out)`` and ``b_i`` shape ``(fan_out,)``, the
  layout of ``MLPClassifier.coefs_`` / ``intercepts_``.
* ``theta = [W_0.ravel(), b_0, W_1.ravel(), b_1, ...]`` (C order). Each layer's
  slice of ``theta`` is therefore the C-order ravel of the *augmented* weight
  ``[W_i; b_i]`` of shape ``(fan_in + 1, fan_out)``, which acts on the input
  with a column of ones appended. The curvature code relies on this.
* ``J`` is the Jacobian of the logits with respect to ``theta``, of shape
  ``(n_samples, n_outputs, n_params)``.

All functions take the array namespace ``xp`` explicitly and never call NumPy
on data arrays.
"""

import math
from typing import NamedTuple

import numpy as np

from sklaplace._activations import ACTIVATIONS, DERIVATIVES

__all__ = [
    "Forward",
    "ParamLayout",
    "backprop",
    "forward",
    "log_equivalent_modes",
    "r_forward",
    "second_order_backprop",
    "vjp",
    "with_ones",
]


class ParamLayout:
    """Shapes and offsets of the layers' parameters inside ``theta``.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, *hidden_layer_sizes, n_outputs)``.
    """

    def __init__(self, layer_sizes):
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.n_layers = len(self.layer_sizes) - 1
        self.shapes = [
            (fan_in + 1, fan_out)
            for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:])
        ]
        sizes = [rows * cols for rows, cols in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.n_params = self.offsets[-1]

    @classmethod
    def of_coefs(cls, coefs):
        """Return the layout of the weight matrices ``coefs`` (``coefs_``'s shapes)."""
        return cls([coefs[0].shape[0]] + [c.shape[1] for c in coefs])

    @property
    def n_outputs(self):
        """Number of logits."""
        return self.layer_sizes[-1]

    def layer_slice(self, i):
        """Slice of layer ``i``'s parameters (weights then bias) in ``theta``."""
        return slice(self.offsets[i], self.offsets[i + 1])

    def layers(self, xp, theta):
        """Augmented weights ``[W_i; b_i]``, each of shape ``(fan_in + 1, fan_out)``."""
        return [
            xp.reshape(theta[self.layer_slice(i)], shape)
            for i, shape in enumerate(self.shapes)
        ]

    def split(self, xp, theta):
        """Return ``(coefs, intercepts)`` lists in MLPClassifier layout."""
        layers = self.layers(xp, theta)
        return [Wb[:-1, :] for Wb in layers], [Wb[-1, :] for Wb in layers]

    def pack(self, xp, coefs, intercepts):
        """Flatten MLPClassifier-layout ``coefs`` and ``intercepts`` into ``theta``."""
        parts = []
        for coef, intercept in zip(coefs, intercepts, strict=True):
            parts += [xp.reshape(coef, (-1,)), xp.reshape(intercept, (-1,))]
        return xp.concat(parts)

    def bias_mask(self):
        """Boolean NumPy mask of the bias entries of ``theta``."""
        mask = np.zeros(self.n_params, dtype=bool)
        for i, (_, cols) in enumerate(self.shapes):
            mask[self.offsets[i + 1] - cols : self.offsets[i + 1]] = True
        return mask

    def layer_index(self):
        """NumPy array giving the layer of each entry of ``theta``."""
        return np.repeat(np.arange(self.n_layers), np.diff(self.offsets))

    def glorot_init(self, random_state):
        """Glorot-uniform weights and zero biases, as a NumPy ``theta``.

        The draw depends only on the layer sizes and ``random_state``, never
        on the data (sample-weight equivalence needs this).
        """
        theta = np.zeros(self.n_params)
        for i, (rows, cols) in enumerate(self.shapes):
            fan_in = rows - 1
            bound = np.sqrt(6.0 / (fan_in + cols))
            start = self.offsets[i]
            theta[start : start + fan_in * cols] = random_state.uniform(
                -bound, bound, fan_in * cols
            )
        return theta


def with_ones(xp, a):
    """Append a column of ones: the input seen by an augmented weight."""
    return xp.concat([a, xp.ones((a.shape[0], 1), dtype=a.dtype)], axis=1)


def through_weights(delta, Wb):
    """``delta @ W.T``: a cotangent taken back through ``Wb``'s weight rows.

    With one output unit (a binary model's logit) the product is an outer
    product, which broadcasting computes exactly and 2-3x faster than a GEMM
    whose inner dimension is 1 (OpenBLAS; 1,400 rows, 100 units: 116 against
    378 us).
    """
    if Wb.shape[1] == 1:
        return delta * Wb[:-1, 0]
    return delta @ Wb[:-1, :].T


def through_two_weights(xp, delta, Wb, other, Vb):
    """``delta @ W.T + other @ V.T``: two cotangents taken back at once.

    With one output unit, one matrix product of the stacked cotangents and
    weight rows (inner dimension 2) instead of two outer products and their
    sum: OpenBLAS, 1,724 rows and 100 units, 77 against 1,043 us in float64,
    37 against 175 us in float32 (an exact Hessian-vector product of that
    network 16-20% faster). With more outputs, two products, which were as
    fast as the stacked one or faster (digits' ten classes: 5% slower
    stacked).
    """
    if Wb.shape[1] == 1:
        stacked = xp.concat([delta, other], axis=1)
        return stacked @ xp.concat([Wb[:-1, :], Vb[:-1, :]], axis=1).T
    out = delta @ Wb[:-1, :].T
    out += other @ Vb[:-1, :].T
    return out


class Forward(NamedTuple):
    """Forward-pass cache.

    Attributes
    ----------
    logits : array of shape (n_samples, n_outputs)
    acts : list of arrays
        ``acts[i]`` is the input of layer ``i`` (``acts[0]`` is ``X``).
    slopes : list of arrays
        ``slopes[i] = phi'(z_i)`` for each hidden layer ``i``.
    """

    logits: object
    acts: list
    slopes: list


def forward(xp, layout, theta, X, activation, with_slopes=True):
    """Forward pass; returns a :class:`Forward` cache.

    ``with_slopes=False`` leaves ``slopes`` empty: the logits alone need no
    derivative (ELU's had taken a third of a plug-in prediction).
    """
    phi, dphi = ACTIVATIONS[activation], DERIVATIVES[activation]
    acts, slopes = [X], []
    weights = layout.layers(xp, theta)
    for i, Wb in enumerate(weights):
        z = acts[i] @ Wb[:-1, :] + Wb[-1, :]
        if i == layout.n_layers - 1:
            return Forward(z, acts, slopes)
        a = phi(xp, z)
        acts.append(a)
        if with_slopes:
            slopes.append(dphi(xp, a))


def backprop(xp, layout, theta, fwd, cotangent, return_backs=False):
    """Backpropagate a cotangent of the logits to every layer's pre-activation.

    Parameters
    ----------
    cotangent : array of shape (n_samples, n_outputs) or (n_samples, n_rows, n_outputs)
        ``u`` in ``d(u . logits) / d z_i``; the 3-d form backpropagates
        ``n_rows`` cotangents per sample at once.
    return_backs : bool, default=False
        Also return ``backs[i] = delta_{i+1} @ W_{i+1}.T`` (the cotangent of
        the hidden activation ``acts[i + 1]``) for each hidden layer.

    Returns
    -------
    deltas : list of arrays
        ``deltas[i]`` has the cotangent's leading shape and ``fan_out_i`` last.
    backs : list of arrays
        Only when ``return_backs``.
    """
    weights = layout.layers(xp, theta)
    deltas, backs = [cotangent], []
    for i in range(layout.n_layers - 1, 0, -1):
        slope = fwd.slopes[i - 1]
        if cotangent.ndim == 3:
            slope = slope[:, None, :]
        backs.append(through_weights(deltas[-1], weights[i]))
        deltas.append(backs[-1] * slope)
    if return_backs:
        return deltas[::-1], backs[::-1]
    return deltas[::-1]


def _layer_gradient(xp, a, delta):
    """Flat ``[a.T @ delta; sum(delta)]`` for one layer."""
    grad = xp.concat([a.T @ delta, xp.sum(delta, axis=0)[None, :]], axis=0)
    return xp.reshape(grad, (-1,))


def vjp(xp, layout, theta, fwd, cotangent, deltas=None):
    """Vector-Jacobian product ``sum_n J_n' u_n`` (backprop), shape ``(n_params,)``.

    ``deltas`` may be passed when already computed by :func:`backprop`.
    """
    if deltas is None:
        deltas = backprop(xp, layout, theta, fwd, cotangent)
    return xp.concat([_layer_gradient(xp, a, d) for a, d in zip(fwd.acts, deltas)])


def r_forward(xp, weights, fwd, directions, inputs=None):
    """Pearlmutter's R-operator, forward: ``R{z_i}`` and ``R{a_i}`` of every layer.

    Parameters
    ----------
    xp : module
        Array namespace of the arrays.
    weights : list of arrays
        ``layout.layers(xp, theta)``: each layer's ``[W_i; b_i]``. An
        operator applied many times at one ``theta`` splits it once.
    fwd : Forward
        The forward pass at ``theta`` (its ``slopes`` are read).
    directions : list of arrays
        ``layout.layers(xp, v)`` for the direction ``v``, split once for
        this pass and :func:`second_order_backprop`.
    inputs : list of arrays, default=None
        ``with_ones(fwd.acts[i])`` for every layer, when already formed (an
        operator applied many times at one ``theta`` forms them once, so
        that each layer's bias enters its matrix product).

    Returns
    -------
    r_pre : list of arrays
        ``r_pre[i]`` is the directional derivative of ``z_i`` along ``v``, of
        shape ``(n_samples, fan_out_i)``; ``r_pre[-1] = J v``.
    r_acts : list of arrays
        ``r_acts[i] = phi'(z_i) * r_pre[i]`` for each hidden layer (what
        :func:`second_order_backprop` needs again).
    """
    if inputs is None:
        inputs = [with_ones(xp, a) for a in fwd.acts]
    r_pre, r_acts = [], []
    for i, (Wb, Vb) in enumerate(zip(weights, directions)):
        r_z = inputs[i] @ Vb
        if r_acts:
            r_z += r_acts[-1] @ Wb[:-1, :]
        r_pre.append(r_z)
        if i < len(weights) - 1:
            r_acts.append(fwd.slopes[i] * r_z)
    return r_pre, r_acts


def second_order_backprop(
    xp,
    weights,
    directions,
    fwd,
    deltas,
    r_pre,
    r_out,
    second_derivative_terms,
    inputs,
    r_acts,
):
    """Pearlmutter's R-operator, backward: ``R{dL/dtheta}`` along ``v``.

    Parameters
    ----------
    xp : module
        Array namespace of the arrays.
    weights, directions : list of arrays
        ``layout.layers`` of ``theta`` and of ``v``, as passed to
        :func:`r_forward`.
    fwd : Forward
        The forward pass at ``theta`` (its ``slopes`` are read).
    deltas : list of arrays
        Backpropagated residuals at ``theta`` (the gradient's deltas).
    r_pre : list of arrays
        :func:`r_forward`'s first result (``R{z_i}`` along ``v``).
    r_out : array of shape (n_samples, n_outputs)
        ``R{delta_out} = Lambda J v`` (the output Hessian applied to ``J v``).
    second_derivative_terms : list of arrays or None
        ``phi''(z_i) * (delta_{i+1} @ W_{i+1}.T)`` per hidden layer. ``None``
        gives the Gauss-Newton product ``J' Lambda J v``; a list gives the
        exact Hessian product (Pearlmutter 1994, eqs. for R{backprop}).
    inputs : list of arrays
        ``with_ones(fwd.acts[i])``, as passed to :func:`r_forward`.
    r_acts : list of arrays
        :func:`r_forward`'s second result: ``R{a_i}`` of each hidden layer.

    Returns
    -------
    Hv : array of shape (n_params,)
        Likelihood part of the Hessian-vector product (no prior).
    """
    exact = second_derivative_terms is not None
    r_delta, blocks = r_out, []
    # Every product below is a fresh array, so the updates are in place.
    for i in range(len(weights) - 1, -1, -1):
        block = inputs[i].T @ r_delta  # [a' R{delta}; sum R{delta}]
        if exact and i > 0:
            # The layer's input moves along v too: R{a_i}' delta_i (no bias row).
            block[:-1, :] += r_acts[i - 1].T @ deltas[i]
        blocks.append(xp.reshape(block, (-1,)))
        if i == 0:
            break
        if exact:
            r_back = through_two_weights(
                xp, r_delta, weights[i], deltas[i], directions[i]
            )
        else:
            r_back = through_weights(r_delta, weights[i])
        r_back *= fwd.slopes[i - 1]
        if exact:
            r_back += second_derivative_terms[i - 1] * r_pre[i - 1]
        r_delta = r_back
    return xp.concat(blocks[::-1])


#: ``c`` in ``phi(-z) = c - phi(z)``, for the activations where flipping the
#: signs of a unit's incoming weights, its bias and its outgoing weights gives
#: the same network: tanh (odd, ``c = 0``) and the logistic (``c = 1``, with
#: the next layer's bias shifted by the outgoing weights, whose prior then
#: moves the density a little).
NEGATION_CONSTANTS = {"logistic": 1.0, "tanh": 0.0}
SIGN_SYMMETRIC_ACTIVATIONS = frozenset(NEGATION_CONSTANTS)


def log_equivalent_modes(layer_sizes, activation):
    """Log of the number of posterior modes equivalent to one with distinct units.

    Permuting the ``M`` units of a hidden layer (and, for a sign-symmetric
    activation, flipping a unit's signs) maps a MAP to another of the same
    posterior density (the logistic's: nearly the same), so the posterior
    has ``prod M! 2^M`` equivalent modes where the Laplace approximation
    sees one (Bishop 2006, section 5.7.2; MacKay 1992). The factor cancels
    between two fits of the same network, but not against a network that
    ignores its input, whose units all coincide at zero: its mode is one.
    Units near zero in a fitted network coincide too, so the count is an
    upper bound there (a review measured about 164 of the 433 nats of a
    (100,) network with 32 well-determined units). ``"identity"`` counts
    no modes: any invertible mixing of its units is a symmetry, so its
    modes are not isolated.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, *hidden_layer_sizes, n_outputs)``.
    activation : str

    Returns
    -------
    log_modes : float
    """
    if activation == "identity":
        return 0.0
    flips = math.log(2.0) if activation in SIGN_SYMMETRIC_ACTIVATIONS else 0.0
    return sum(math.lgamma(m + 1) + m * flips for m in layer_sizes[1:-1])
