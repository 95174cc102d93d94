"""Newton-CG's preconditioners: the Fisher diagonal, or Kronecker-factored blocks.

A preconditioner ``M`` (symmetric positive definite, in CG's units of the
loss) serves CG twice: CG solves ``M z = r`` at every step, and the trust
region is measured in ``||s||_M = sqrt(s' M s)``. Both kinds offer
:meth:`solve` and :meth:`times`, and a ``spread``: ``max / min`` of ``M``'s
diagonal, a diagonal estimate of the curvature's condition number, which
decides whether single-precision products are accurate enough
(:mod:`~sklaplace._newton_cg`).

* :func:`fisher_preconditioner`: the empirical Fisher diagonal plus the
  prior (:func:`~sklaplace._curvature.fisher_diagonal`, about one
  gradient). It needed fewer Hessian-vector products than the GGN diagonal
  (which costs ``n_outputs`` gradients) on digits and on a (64, 64)
  network. Every unit keeps :data:`UNIT_FLOOR` of its layer's mean
  residual, so that a unit with none cannot stretch the trust region. The
  diagonal is taken to the power :data:`PRECONDITIONER_POWER` (1/2; Martens
  2010 uses 3/4): its full spread let the region reach far along weakly
  curved directions, where the quadratic model fails; with ELU the radius
  then see-sawed (2.2x the products on four data sets), while none (a
  round region) loses the feature scales of unstandardised inputs.
* :class:`KroneckerFactoring`: each layer's block of the GGN as KFAC's ``A
  kron G`` plus the prior, the blocks of the ``"kron"`` posterior
  (:class:`~sklaplace._kron.KronBlock`), rebuilt at every iterate, their
  eigenvalues to the power :data:`KRONECKER_POWER`. It sees what a
  diagonal cannot, the correlations of a layer's inputs and of its units'
  curvature: on 784 features (hidden (100,), W = 79,510, 8,000 rows)
  Newton-CG took 1,975 products instead of 5,532 and 168 s instead of
  308 s; where products are cheap (digits (16,)), building it costs more
  than it saves (the benchmark report, session 73). Newton-CG uses it
  from :data:`~sklaplace._newton_cg.KRONECKER_WORK`. The first layer's
  input factor and its decomposition, which depend on the data alone, are
  computed once per solve.
"""

from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace

from sklaplace._backend import to_numpy
from sklaplace._curvature import fisher_diagonal, kron_factors
from sklaplace._kron import KronBlock, row_prior

__all__ = [
    "KRONECKER_POWER",
    "PRECONDITIONER_POWER",
    "UNIT_FLOOR",
    "DiagonalPreconditioner",
    "KroneckerFactoring",
    "KroneckerPreconditioner",
    "LayerBasis",
    "Preconditioner",
    "fisher_preconditioner",
    "layer_basis",
]

#: Fraction of its layer's mean residual that every unit's preconditioner
#: entries count (:func:`~sklaplace._curvature.fisher_diagonal`'s
#: ``unit_floor``). Without it a unit with no residual (a class no row is
#: wrong about) has the prior's curvature alone, and the trust region,
#: measured in that norm, stretches far along it: with features times 1e3,
#: of 24 small problems (60 rows, alpha 1, tol 1e-8) 6 stopped unconverged
#: at 300 iterations with no hidden layer (one at 1e9 times the optimum's
#: loss), 2 with the floor (1e-3 and 1e-1: 2 too; dense Newton 0), and 13
#: -> 8 with hidden (8,) (dense Newton 10). Unscaled: 0 either way. (Measured
#: before :data:`PRECONDITIONER_POWER`, with the diagonal's full spread.)
UNIT_FLOOR = 1e-2
#: Power of the curvature diagonal in the preconditioner and the trust
#: region's norm (Martens 2010, section 4.7, raises it to 3/4).
PRECONDITIONER_POWER = 0.5
#: Power of the Kronecker-factored blocks' eigenvalues, taken as the
#: diagonal's (:class:`KroneckerPreconditioner`). Newton-CG, one thread (the
#: benchmark report, session 73): 784 features, 8,000 rows, ``tol=1e-6``,
#: powers 1 / 3/4 / 1/2: 226 / 168 / 292 s (2,296 / 1,975 / 3,732
#: products; the Fisher diagonal 308 s); a (64, 64) network on 5,000 rows,
#: ``tol=1e-8``: 26.4 / 15.3 / 14.4 s (254 / 163 / 114 iterations; the
#: diagonal 20.2 s): at full power the region reached far along weakly
#: curved directions, as the diagonal's had.
KRONECKER_POWER = 0.75


def _geometric_mean(values):
    """``exp(mean(log(values)))`` of positive values."""
    xp = array_namespace(values)
    return float(xp.exp(xp.mean(xp.log(values))))


class Preconditioner:
    """``M``, symmetric positive definite: what CG solves with and measures by.

    Subclasses set ``spread`` and implement ``_apply(v, inverse)``.
    """

    def solve(self, r):
        """Return ``M^{-1} r``.

        Parameters
        ----------
        r : array of shape (n_params,)

        Returns
        -------
        array of shape (n_params,)
        """
        return self._apply(r, inverse=True)

    def times(self, v):
        """Return ``M v``.

        Parameters
        ----------
        v : array of shape (n_params,)

        Returns
        -------
        array of shape (n_params,)
        """
        return self._apply(v, inverse=False)


class DiagonalPreconditioner(Preconditioner):
    """``M = diag(m)``.

    Parameters
    ----------
    m : array of shape (n_params,)
        Positive diagonal.
    spread : float, optional
        The curvature's ``max / min`` if ``m`` is a power of it; by default
        ``m``'s own.
    """

    def __init__(self, m, spread=None):
        self.m = m
        if spread is None:
            xp = array_namespace(m)
            spread = float(xp.max(m) / xp.min(m))
        self.spread = spread

    def _apply(self, v, inverse):
        return v / self.m if inverse else self.m * v


def fisher_preconditioner(obj, theta, fwd, deltas, unit, first_squares=None):
    """Return the Fisher diagonal, floored per unit, plus the prior, to the power 1/2.

    Parameters
    ----------
    obj : NegLogPosterior
    theta : array of shape (n_params,)
    fwd : Forward
        The forward pass at ``theta``.
    deltas : list of arrays
        The residuals backpropagated to every layer at ``theta``.
    unit : float
        CG's unit of the loss (``1 / L(theta_0)``).
    first_squares : tuple of arrays, optional
        :func:`~sklaplace._curvature.squared_inputs` of ``X``, which a
        solve computes once.

    Returns
    -------
    DiagonalPreconditioner
    """
    xp = obj.xp
    fisher = fisher_diagonal(
        obj, theta, fwd, deltas, unit_floor=UNIT_FLOOR, first_squares=first_squares
    )
    m = unit * obj.constrained_curvature(fisher)
    # A parameter no row moves and no prior holds (e.g. a weight from an
    # all-zero feature under a flat prior) has m = 0: floor it so that M
    # stays definite.
    m = xp.maximum(m, 1e-10 * xp.max(m))
    spread = float(xp.max(m) / xp.min(m))
    # c (m / c)^PRECONDITIONER_POWER about the geometric mean c, which keeps
    # the region's scale.
    centre = _geometric_mean(m)
    return DiagonalPreconditioner(centre * (m / centre) ** PRECONDITIONER_POWER, spread)


class KroneckerPreconditioner(Preconditioner):
    """KFAC plus the prior, to a power in each block's basis.

    ``P = unit * blockdiag_l(A_l kron G_l + diag(d_l) kron I)``: each block
    ``P_l = T diag(E) T'`` in its basis ``T = S^{-T} kron V``
    (:class:`~sklaplace._kron.KronBlock`) becomes ``M_l = T diag(c (E /
    c)^p) T'``, ``p`` = :data:`KRONECKER_POWER` and ``c`` the geometric
    mean of all blocks' ``E``, as the diagonal preconditioner's power is
    taken (so ``det M = det P``; at ``p = 1/2``, ``M P^{-1} M = c
    blockdiag(B_l kron I)`` with ``B_l = A_l + diag(d_l)``, where no jitter
    or balancing entered ``B_l``). A solve or a product is four small
    matrix products per layer, on its ``(fan_in + 1, fan_out)`` weight
    matrix.

    Parameters
    ----------
    xp : namespace
    blocks : list of KronBlock
        One per layer, in ``theta``'s order.
    bases : list of LayerBasis
        Each block's ``S`` and ``S^{-1}`` (:func:`layer_basis`).
    unit : float
        Multiplies every block (CG's unit of the loss).
    """

    def __init__(self, xp, blocks, bases, unit):
        self.xp, self.parts, start = xp, [], 0
        diagonals = []
        eigenvalues = [unit * block.eigenvalues() for block in blocks]
        centre = _geometric_mean(np.concatenate([E.ravel() for E in eigenvalues]))
        for block, basis, E in zip(blocks, bases, eigenvalues, strict=True):
            r, c = block.shape
            # The block's diagonal before the power, for the spread:
            # diag(T E T')[a, j] = sum_pq (S^{-T})_ap^2 E_pq V_jq^2.
            diagonals.append(basis.inverse.T**2 @ E @ (block.V**2).T)
            E = centre * (E / centre) ** KRONECKER_POWER
            V, E = xp.asarray(block.V), xp.asarray(E)
            part = slice(start, start + r * c)
            self.parts.append((part, (r, c), basis.S, basis.S_inv, V, E))
            start += r * c
        self.spread = max(float(np.max(d)) for d in diagonals) / min(
            float(np.min(d)) for d in diagonals
        )

    def _apply(self, v, inverse):
        xp, pieces = self.xp, []
        for part, shape, S, S_inv, V, E in self.parts:
            X, Vt = xp.reshape(v[part], shape), xp.permute_dims(V, (1, 0))
            if inverse:  # (S kron V) diag(1/E) (S kron V)'
                X = S @ ((xp.permute_dims(S, (1, 0)) @ X @ V) / E) @ Vt
            else:  # (S^{-T} kron V) diag(E) (S^{-1} kron V')
                X = xp.permute_dims(S_inv, (1, 0)) @ ((S_inv @ X @ V) * E) @ Vt
            pieces.append(xp.reshape(X, (-1,)))
        return xp.concat(pieces)


class LayerBasis(NamedTuple):
    """A block's ``S`` and ``S^{-1}`` in ``xp``, and ``S^{-1}`` in NumPy."""

    S: object
    S_inv: object
    inverse: np.ndarray


def layer_basis(xp, block):
    """Return the :class:`LayerBasis` of a :class:`~sklaplace._kron.KronBlock`."""
    inverse = np.linalg.inv(block.S)
    return LayerBasis(xp.asarray(block.S), xp.asarray(inverse), inverse)


class KroneckerFactoring:
    """Builds :class:`KroneckerPreconditioner` at each iterate of one solve.

    The first layer's input factor ``A_1`` (the weighted Gram of ``[X 1]``)
    and its decomposition with the prior depend on the data alone: they are
    computed at the first iterate and kept (for 784 features, the Gram costs
    what a Hessian-vector product does, the decomposition more). A prior
    that varies along a row of a layer is replaced by its row means (this is
    a preconditioner: no warning).

    Parameters
    ----------
    obj : NegLogPosterior
        Without fixed parameters.
    """

    def __init__(self, obj):
        self.obj = obj
        self.first = None  # (A_1 in xp, its KronBlock, its LayerBasis)

    def at(self, theta, unit, fwd=None):
        """Return the preconditioner at ``theta`` in CG's ``unit`` of the loss.

        ``fwd``, the forward pass at ``theta``, spares the factors' own.
        """
        obj, xp = self.obj, self.obj.xp
        prior = to_numpy(obj.prior_precision)
        first_inputs = None if self.first is None else self.first[0]
        factors = kron_factors(obj, theta, first_inputs, fwd)
        blocks, bases, start = [], [], 0
        for i, (A, G) in enumerate(zip(factors.inputs, factors.outputs, strict=True)):
            G = to_numpy(G)
            r, c = A.shape[0], G.shape[0]
            if i == 0 and self.first is not None:
                block, basis = self.first[1].with_outputs(G), self.first[2]
            else:
                d, _ = row_prior(prior[start : start + r * c], (r, c))
                block = KronBlock(to_numpy(A), G, d)
                basis = layer_basis(xp, block)
                if i == 0:
                    self.first = (A, block, basis)
            blocks.append(block)
            bases.append(basis)
            start += r * c
        return KroneckerPreconditioner(xp, blocks, bases, unit)
