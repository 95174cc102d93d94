"""Kronecker-factored Laplace posterior (KFAC, EKFAC), DESIGN.md section 5b.

The precision is block diagonal over layers. Layer ``l``'s block, over its
augmented weight ``[W_l; b_l]`` of shape ``(r, c) = (fan_in + 1, fan_out)``
raveled in C order, is

    P_l = A kron G + D kron I,

with ``A`` and ``G`` the KFAC factors of the GGN
(:func:`~sklaplace._curvature.kron_factors`) and ``D = diag(d)`` the prior:
``d`` holds ``alpha_l`` on the ``fan_in`` weight rows and the bias precision
on the last (bias) row. The prior is diagonal but, in general, not a
multiple of the identity (the bias precision differs from ``alpha_l``); it
is still added EXACTLY, by simultaneous diagonalisation of ``A`` and ``D``:
with ``B = A + D = L L'``, ``L^{-1} A L^{-T} = U diag(mu) U'`` and ``S =
L^{-T} U``, ``S' A S = diag(mu)`` and ``S' D S = diag(rho)``
(``rho = 1 - mu``; ``B = 2^k A + D``, ``rho = 1 - 2^k mu``, where ``D`` is
below ``A``'s round-off); with ``G = V diag(m) V'``,

    P_l = T (diag(mu) kron diag(m) + diag(rho) kron I) T',  T = S^{-T} kron V.

So ``log det P_l = sum_ij log E_ij + c log det B`` with ``E_ij = mu_i m_j +
rho_i``, ``P_l^{-1} = (S kron V) diag(1/E) (S kron V)'``, and a prior scaled
by ``kappa`` (``D -> kappa D``, the post-hoc prior scale) only changes
``E_ij = mu_i m_j + kappa rho_i``: no new decomposition. (When ``D`` is
``alpha I`` this is the familiar ``(Q_A kron Q_G)(L_A kron L_G + alpha)``.)
A prior that is not constant along each input row (one ``alpha`` per
parameter) is replaced by its row means, with a warning.

The posterior fitted to data corrects the eigenvalues (EKFAC, George et al.
2018): in the same basis the data part ``mu_i m_j`` becomes ``h_ij``, the
GGN block's own diagonal there (:func:`~sklaplace._curvature.kron_eigenvalues`;
``A kron G`` takes a row's inputs and output curvature as independent;
inside a factor's repeated eigenvalue the basis is made canonical first,
:mod:`~sklaplace._kron_ties`).
That narrows the gap to the full posterior within layers only
(``docs/benchmarks.rst``). A prior that is not a multiple of the fitted one
is not diagonal in ``T``: such a block is a
:class:`~sklaplace._kron_columns.ColumnKronBlock` (exact, ``O(c r^3)``). A
jitter added to a singular ``B`` is numerical: a prior scale leaves it be.
A direction with neither data nor prior (a softmax's common shift of a
flat row of the last layer) gets ``E_ij = 1`` where ``S'BS = I``: for the
biases the full posterior's unit curvature, for weights about their ``A``
(the evidence then moves with the features' scale); no prediction reads it.
Any other such direction within a layer (two mirrored hidden units under
a flat bias prior) gets the same unit, and :meth:`KronPosterior.pivot_ratio`
counts it as 0, so the fit warns that the precision is nearly singular, as
the full posterior's does; a direction singular only across layers, which
the blocks leave out, it cannot see.

Every array is NumPy (the factors and their eigenvectors are small: ``r^2 +
c^2`` numbers each per layer, and ``r c`` corrected eigenvalues), so a
fitted estimator pickles anywhere; methods compute in ``xp``.
"""

import weakref

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError, tenfold_jitters, to_numpy
from sklaplace._curvature import kron_eigenvalues
from sklaplace._jacobian import FactoredJacobian
from sklaplace._kron_columns import ColumnKronBlock, log_of_positive, vanishing
from sklaplace._kron_ties import averaged, untied
from sklaplace._simultaneous import diagonalise
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = ["KronBlock", "KronPosterior"]

# A prior below this fraction of A's largest entry: 2^k A + D is factorised.
_BALANCE_RTOL = 1e-6
_NOT_PD = "A Kronecker factor plus its prior is not positive definite"


def row_prior(prior, shape):
    """Per-input-row prior ``d`` of a block and whether it was constant by row."""
    rows = np.reshape(prior, shape)
    d = rows.mean(axis=1)
    spread = np.max(np.abs(rows - d[:, None])) if rows.size else 0.0
    return d, bool(spread <= 1e-12 * max(np.max(np.abs(rows)), 1e-300))


def _diagonalise_with_jitter(A, d):
    """Return :func:`~sklaplace._simultaneous.diagonalise` of ``A``, ``d + j``; ``j``.

    The jitter ``j`` is 0.0 or the smallest of the first 29 of ``B``'s
    :func:`~sklaplace._backend.tenfold_jitters` that works; none for a
    negative ``d``.
    """
    # A prior below A's round-off (weights and alpha times 1e-12: a variance
    # 17% off) goes against 2^k A instead, exactly: S' A S = diag(mu / 2^k).
    largest, prior = float(np.max(np.diag(A), initial=0.0)), float(np.max(d))
    small = 0.0 < prior < _BALANCE_RTOL * largest
    power = 2.0 ** round(np.log2(prior / largest)) if small else 1.0
    A = power * A if small else A  # no copy of A otherwise (memory counts)
    largest_of_B = max(float(np.max(np.diag(A) + d)), 0.0)
    for jitter in [0.0, *tenfold_jitters(largest_of_B)[:-1]]:
        try:
            S, mu, rho, log_det_B = diagonalise(A, d + jitter)
            return (S, mu / power, rho, log_det_B), jitter
        except np.linalg.LinAlgError:
            if np.any(d < 0.0):  # indefinite, not singular: jitter would hide it
                raise NotPositiveDefiniteError(_NOT_PD + ": negative prior.") from None
    raise NotPositiveDefiniteError(f"{_NOT_PD} even with a jitter of {jitter:.3g}.")


def _output_basis(G):
    """Eigenvalues (clipped at 0) and eigenvectors of the output factor ``G``."""
    m, V = np.linalg.eigh(G)
    return np.maximum(m, 0.0), V


class KronBlock:
    """One layer's block in its eigenbasis ``T``: KFAC's, or EKFAC's once corrected.

    ``A kron G + diag(d) kron I``, or ``T (diag(h) + diag(rho) kron I) T'``
    after :meth:`corrected`.

    Parameters
    ----------
    inputs : ndarray of shape (r, r)
        ``A``.
    outputs : ndarray of shape (c, c)
        ``G``.
    row_prior : ndarray of shape (r,)
        ``d``.
    data : ndarray of shape (r, c), default=None
        The corrected data eigenvalues ``h`` in this block's basis (EKFAC);
        ``None`` keeps KFAC's ``mu_i m_j``. Use :meth:`corrected`: ``h``
        depends on the basis computed here.

    Attributes
    ----------
    S, mu, rho : ndarrays of shape (r, r), (r,), (r,)
        Simultaneous diagonalisation of ``A`` and ``diag(d)`` (module docstring).
    V, m : ndarrays of shape (c, c), (c,)
        Eigendecomposition of ``G``.
    log_det_B : float
        ``log det B``, ``B = A + diag(d)`` (``2^k A + diag(d)``: see below).
    jitter : float
        Added to ``d`` where ``A + diag(d)`` was singular (0.0 otherwise).
    kappa : float
        Scale of the prior relative to ``d`` (1 at construction).
    """

    def __init__(self, inputs, outputs, row_prior, data=None):
        self.data = data
        self.inputs, self.outputs = inputs, outputs
        self.m, self.V = _output_basis(outputs)
        diagonalised, self.jitter = _diagonalise_with_jitter(inputs, row_prior)
        self.S, self.mu, self.rho, self.log_det_B = diagonalised
        self.row_prior = row_prior + self.jitter
        # The jitter's share of rho, diag(S' jitter S): kappa leaves it alone.
        self.rho_jitter = self.jitter * np.sum(self.S * self.S, axis=0)
        self.kappa = 1.0
        self._cache = [None]  # shared with the scaled copies (same eigenbasis)

    @property
    def shape(self):
        """``(r, c)``: the augmented weight's shape."""
        return (self.S.shape[0], self.V.shape[0])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = [None]  # a weak reference does not pickle
        return state

    def __setstate__(self, state):
        # A block pickled before the eigenvalue correction holds KFAC's (and
        # scaled its jitter with the prior).
        self.__dict__.update({"data": None, "rho_jitter": 0.0, **state})

    def scaled(self, kappa):
        """Return this block with the prior ``kappa * d`` (same eigenbasis)."""
        return self._copy(kappa=float(kappa))

    def corrected(self, data):
        """Return this block with the data eigenvalues ``data`` (EKFAC)."""
        return self._copy(data=np.asarray(data, dtype=np.float64))

    def with_outputs(self, outputs):
        """Return this block (KFAC) with the output factor ``G`` replaced.

        ``A``, the prior and their decomposition are kept: a solver whose
        first layer's inputs are the data rebuilds only ``G`` there.
        """
        m, V = _output_basis(outputs)
        return self._copy(_cache=[None], outputs=outputs, m=m, V=V)

    def with_basis(self, **basis):
        """Return this block in another basis (``S``, ``V`` and their diagonals).

        For :func:`~sklaplace._kron_ties.untied`, before :meth:`corrected`.
        """
        return self._copy(_cache=[None], **basis)

    def _copy(self, **changes):
        new = object.__new__(KronBlock)
        new.__dict__.update({**self.__dict__, **changes})
        return new

    def with_row_prior(self, d):
        """Return this block's data with the prior ``d`` per input row.

        A multiple of the block's own prior keeps the eigenbasis; any other
        prior decomposes ``A + diag(d)`` anew (KFAC), or, for corrected
        eigenvalues that belong to this basis, gives a
        :class:`~sklaplace._kron_columns.ColumnKronBlock`.
        """
        base = self.row_prior - self.jitter
        kappa = float(d @ base / (base @ base)) if np.any(base) else 0.0
        # A prior scaled by s arrives as A + (s - 1) A: its round-off is of
        # the size of A, not of s A (1e-16 / s relative), hence the second term.
        misfit = np.abs(d - kappa * base)
        multiple = np.all(misfit <= 1e-9 * np.abs(d) + 1e-14 * np.abs(base))
        if multiple and (kappa > 0 or not np.any(d)):
            return self.scaled(kappa if np.any(base) else 1.0)
        if self.data is None:
            return KronBlock(self.inputs, self.outputs, d)
        return ColumnKronBlock(self, d)

    def _data(self):
        """Return the data part of ``E``: ``mu_i m_j`` (KFAC) or ``h_ij``, (r, c)."""
        return self.mu[:, None] * self.m[None, :] if self.data is None else self.data

    def flat(self):
        """Mask of the directions with no prior and no data, shape (r, c)."""
        kfac = self.data is None
        no_data = vanishing(self.m)[None, :] if kfac else vanishing(self.data)
        return vanishing(self.rho)[:, None] & no_data  # the fitted prior's: not kappa's

    def eigenvalues(self):
        """``E_ij = mu_i m_j + kappa rho_i`` (or ``h_ij + kappa rho_i``), shape (r, c).

        1 on :meth:`flat` directions.
        """
        rho = self.kappa * (self.rho - self.rho_jitter) + self.rho_jitter
        return np.where(self.flat(), 1.0, self._data() + rho[:, None])

    def log_det(self):
        """``log det P_l`` (see the module docstring)."""
        # T = S^{-T} kron V: det(T T') = det(B)^c det(V V')^r = det(B)^c; the
        # prior scale kappa multiplies D (not B), so it enters E only.
        return log_of_positive(self.eigenvalues()) + self.shape[1] * self.log_det_B

    def _transformed(self, xp, Jb):
        """``(S kron V)' J`` per output row, as ``(a_t, d_t)`` or a dense array.

        A Jacobian block of the network is an outer product per sample and
        output, ``ahat_n kron delta_nk`` (its bias row is ``delta_nk``
        itself); then ``(S kron V)' J = (S' ahat) kron (V' delta)`` costs
        ``O(r^2 + K c^2)`` per sample. Any other ``J`` is transformed densely.
        """
        S, V = xp.asarray(self.S), xp.asarray(self.V)
        delta = Jb[:, :, -1, :]  # bias row: ahat = 1
        norm = xp.sum(delta * delta, axis=(1, 2))
        a = xp.sum(Jb * delta[:, :, None, :], axis=(1, 3))
        positive = norm > 0
        a = a / xp.where(positive, norm, xp.ones_like(norm))[:, None]
        # Check the outer product on every ``step``-th input row (all of
        # them for small layers): a Jacobian that is not one differs from its
        # fit almost everywhere, and the check stays cheap for wide inputs.
        step = max(1, Jb.shape[2] // 64)
        sub = Jb[:, :, ::step, :]
        fit = a[:, None, ::step, None] * delta[:, :, None, :]
        misfit = xp.max(xp.abs(sub - fit)) if Jb.size else 0.0
        scale = xp.max(xp.abs(sub)) if Jb.size else 0.0
        if float(misfit) <= 1e-12 * float(scale):
            return (a @ S, delta @ V)
        return (xp.permute_dims(S, (1, 0)) @ Jb) @ V

    def _cached(self, J, transform):
        """``transform()``, reused while ``J`` is the same object.

        The prior scale's search evaluates ``J P(c)^{-1} J'`` for many ``c``
        on the same ``J``; the scaled blocks share the eigenbasis and this
        cache (a weak reference to ``J``: nothing is kept alive).
        """
        cache = self._cache[0]
        if cache is not None and cache[0]() is J:
            return cache[1]
        value = transform()
        try:
            self._cache[0] = (weakref.ref(J), value)
        except TypeError:  # a namespace whose arrays take no weak reference
            pass
        return value

    def functional_variance(self, xp, J, Jb):
        """``J_l P_l^{-1} J_l'`` for a block ``Jb`` of shape (n, K, r, c) of ``J``."""
        value = self._cached(J, lambda: self._transformed(xp, Jb))
        return self._variance(xp, value, Jb.shape[:2])

    def functional_variance_factored(self, xp, J, ahat, delta):
        """``J_l P_l^{-1} J_l'`` from the layer's factors of ``J`` (a FactoredJacobian).

        ``ahat`` (n, r) and ``delta`` (n, K, c): ``(S kron V)' J = (S' ahat)
        kron (V' delta)``, ``O(r^2 + K c^2 + r c)`` per sample.
        """
        S, V = xp.asarray(self.S), xp.asarray(self.V)
        value = self._cached(J, lambda: (ahat @ S, delta @ V))
        return self._variance(xp, value, delta.shape[:2])

    def _variance(self, xp, value, leading):
        inverse = xp.asarray(1.0 / self.eigenvalues())
        if isinstance(value, tuple):
            a_t, d_t = value
            weights = (a_t * a_t) @ inverse  # (n, c)
            return (d_t * weights[:, None, :]) @ xp.permute_dims(d_t, (0, 2, 1))
        n, K = leading
        scaled = xp.reshape(value * xp.sqrt(inverse), (n, K, -1))
        return scaled @ xp.permute_dims(scaled, (0, 2, 1))

    def covariance_diagonal(self, xp):
        """``diag(P_l^{-1})`` as (r, c): ``(S * S) (1/E) (V * V)'``."""
        S, V = xp.asarray(self.S), xp.asarray(self.V)
        inverse = xp.asarray(1.0 / self.eigenvalues())
        return (S * S) @ inverse @ xp.permute_dims(V * V, (1, 0))


class KronPosterior:
    """Kronecker-factored Laplace posterior: one :class:`KronBlock` per layer.

    Same interface as :class:`~sklaplace._posterior.FullPosterior`; no dense matrix.

    Parameters
    ----------
    blocks : list of KronBlock
        In the order of the layers (and of ``theta``).
    prior_precision : ndarray of shape (n_params,)
        The prior the blocks hold (per parameter, NumPy).
    """

    structure = "kron"
    accepts_factored_jacobian = True
    jitter_where = "to a Kronecker factor's prior"  # the texts of its warnings
    pivot_what = "a layer's smallest eigenvalue is {:.2g} of its largest"

    def __init__(self, blocks, prior_precision):
        self.blocks = blocks
        self.prior_precision = prior_precision

    @classmethod
    def from_curvature(cls, objective, factors, theta):
        """Posterior of ``objective`` at ``theta``: KFAC's basis, EKFAC's eigenvalues.

        One more pass over the rows refits each block's eigenvalues to the
        GGN's diagonal in its basis (module docstring), after another where
        a factor repeats an eigenvalue (:func:`~sklaplace._kron_ties.untied`).
        """
        posterior = cls.from_factors(factors, objective.prior_precision)
        blocks, still_tied = untied(objective, theta, posterior.blocks)
        data = kron_eigenvalues(objective, theta, [(b.S, b.V) for b in blocks])
        data = averaged(data, still_tied)
        blocks = [b.corrected(h) for b, h in zip(blocks, data, strict=True)]
        return cls(blocks, posterior.prior_precision)

    @classmethod
    def from_factors(cls, factors, prior_precision):
        """Build from :class:`~sklaplace._curvature.KroneckerFactors` and ``A``."""
        prior = to_numpy(prior_precision).astype(np.float64)
        inputs = [to_numpy(A) for A in factors.inputs]
        outputs = [to_numpy(G) for G in factors.outputs]
        return cls(_blocks(inputs, outputs, prior), prior)

    @property
    def n_params(self):
        """Dimension of the posterior."""
        return sum(r * c for r, c in (b.shape for b in self.blocks))

    @property
    def jitter(self):
        """Largest jitter a block's ``A + D`` needed (0.0 if none)."""
        return max(b.jitter for b in self.blocks)

    def _slices(self, start=0):
        for block in self.blocks:
            r, c = block.shape
            yield block, slice(start, start + r * c)
            start += r * c

    def log_det_precision(self):
        """``log det P``: the sum over the layers' blocks."""
        return float(sum(b.log_det() for b in self.blocks))

    def functional_variance(self, xp, J, offset=0):
        """``J_n P^{-1} J_n'`` per sample, shape (n_samples, n_outputs, n_outputs).

        ``J`` has shape (n_samples, n_outputs, offset + n_params), or is a
        :class:`~sklaplace._jacobian.FactoredJacobian` of the same layers
        (no dense ``J``: the fast path). Each layer's columns are transformed
        to its eigenbasis (see :meth:`KronBlock._transformed`), once per
        ``J`` for all the prior scales that share the eigenbasis. ``offset``
        skips the leading columns (a last-layer posterior's other parameters).
        """
        n, K = J.shape[:2]
        if isinstance(J, FactoredJacobian):
            total = 0.0
            for block, a, d in zip(self.blocks, J.inputs, J.deltas, strict=True):
                total = total + block.functional_variance_factored(xp, J, a, d)
            return total
        total = xp.zeros((n, K, K), dtype=J.dtype)
        for block, part in self._slices(offset):
            Jb = xp.reshape(J[:, :, part], (n, K, *block.shape))
            total = total + block.functional_variance(xp, J, Jb)
        return total

    def covariance_diagonal(self, xp):
        """``diag(P^{-1})``, shape (n_params,)."""
        return xp.concat(
            [xp.reshape(b.covariance_diagonal(xp), (-1,)) for b in self.blocks]
        )

    def with_prior_change(self, xp, delta):
        """Posterior with prior ``A + diag(delta)`` (same data).

        A block whose new prior is a multiple of its old one keeps its
        eigenbasis (``O(r c)``); any other change decomposes the block anew
        (``O(r^3 + c^3)``; ``O(c r^3)`` with corrected eigenvalues, see
        :meth:`KronBlock.with_row_prior`). Raises
        :class:`NotPositiveDefiniteError` where not positive definite.
        """
        prior = self.prior_precision + to_numpy(delta)
        blocks, approximated = [], False
        for block, part in self._slices():
            d, exact = row_prior(prior[part], block.shape)
            # Warn where this change brings the approximation, not on every
            # scale of a per-parameter prior that the fit already warned of.
            approximated |= (
                not exact and row_prior(self.prior_precision[part], block.shape)[1]
            )
            new = block.with_row_prior(d)
            if not np.all(new.eigenvalues() > 0):
                raise NotPositiveDefiniteError(
                    "The Kronecker-factored precision is not positive definite."
                )
            blocks.append(new)
        if approximated:
            _warn_row_means()
        return KronPosterior(blocks, prior)

    def pivot_ratio(self):
        """Smallest over largest eigenvalue ``E`` within a block, over the blocks.

        The analogue of the full posterior's pivot ratio in the eigenbasis
        (the conditioning of ``B = A + D`` aside). A flat direction counts as
        0 (the block is singular there; its unit ``E`` is a convention)
        unless it is a softmax's common shift in the last layer, which the
        full posterior pins by the same convention (two mirrored hidden units
        under a flat bias prior had passed silently, where the full
        posterior warns). Directions singular only across layers are not in
        the blocks.
        """
        ratios = []
        for index, block in enumerate(self.blocks):
            E, unpinned = block.eigenvalues(), block.flat()
            if index == len(self.blocks) - 1:
                unpinned = unpinned & ~_common_shift(block.V)[None, :]
            ratios.append(float(np.min(np.where(unpinned, 0.0, E)) / np.max(E)))
        return min(ratios)


def _common_shift(V):
    """Mask of the columns of ``V`` along ``1 / sqrt(c)``: a softmax's shift.

    One output unit (a Bernoulli logit) has none.
    """
    c = V.shape[0]
    if c < 2:
        return np.zeros(c, dtype=bool)
    # A cosine within 1e-8 of 1: angles up to 1.4e-4. Round-off turns an
    # eigenvector that far only where G's next eigenvalue is below about
    # 1e-12 of its largest, and that direction's small E warns anyway.
    return np.abs(np.sum(V, axis=0)) / np.sqrt(c) >= 1.0 - 1e-8


def _blocks(inputs, outputs, prior):
    """One :class:`KronBlock` per layer, warning if a prior is not row-constant."""
    blocks, start, approximated = [], 0, False
    for A, G in zip(inputs, outputs):
        r, c = A.shape[0], G.shape[0]
        d, exact = row_prior(prior[start : start + r * c], (r, c))
        approximated |= not exact
        blocks.append(KronBlock(A, G, d))
        start += r * c
    if approximated:
        _warn_row_means()
    return blocks


def _warn_row_means():
    warn(
        "The Kronecker-factored posterior adds the prior per input row of "
        "each layer; a prior precision that varies across a row's outputs "
        "(alpha given per parameter) is replaced by its row means.",
        LaplaceApproximationWarning,
    )
