"""Pruning with the Hessian: magnitude, Optimal Brain Damage, Optimal Brain Surgeon.

All three rank the WEIGHTS (biases are never ranked or chosen) of a fitted
:class:`~sklaplace.LaplaceMLPClassifier` by the increase of the MAP objective
``L`` a removal would cause, under the quadratic model ``L(theta_map + d) ~
L(theta_map) + 1/2 d' H d`` with ``H`` the Hessian of ``L`` at the MAP: the
posterior precision with its prior scale undone (``prior_precision_scale_``
1, the MAP's own prior; the curvature the estimator was fitted with):

* magnitude: ``|theta_q|``;
* OBD (LeCun et al. 1989): ``1/2 H_qq theta_q^2`` -- the increase when the
  other weights stay put (exact for a diagonal ``H``);
* OBS (Hassibi & Stork 1993): ``theta_q^2 / (2 [H^{-1}]_qq)`` -- the increase
  when the other weights move optimally, by ``-theta_q / [H^{-1}]_qq H^{-1}
  e_q``. That move is the mean of the Laplace posterior conditioned on
  ``theta_q = 0``, so OBS prunes one weight at a time, updating ``H^{-1}`` to
  the conditional covariance after each removal.

A hidden unit left with no outgoing weight no longer affects the output; it is
removed whole (its incoming weights and bias are zeroed and masked too), since
nothing but their prior would pin them down -- and with ``alpha=0`` or
``bias_prior_precision=0`` nothing would.

The pruned estimator's posterior is the Laplace posterior conditioned on the
masked parameters (pruned weights and dead units) being zero: its precision
is the posterior's (at its prior scale) restricted to the kept parameters.
Refitting it with ``warm_start=True`` re-trains the kept parameters with the
masked ones held at zero (see ``NegLogPosterior``'s ``fixed``).
"""

import copy
import numbers

import numpy as np

from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._fitted import FittedLaplaceMixin
from sklaplace._objective import flat_shift_rows, shift_blocks
from sklaplace._posterior import SINGULAR_RTOL, FullPosterior
from sklaplace._warnings import warn
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = ["PRUNING_METHODS", "check_refit_posterior", "prune", "saliencies"]

PRUNING_METHODS = ("obs", "obd", "magnitude")


def check_refit_posterior(hessian_structure, subset_of_weights):
    """Refuse a pruned refit's posterior that cannot condition on the mask.

    A Kronecker-factored or last-layer posterior's log determinant and
    variances would count the pruned parameters (the evidence was off by
    ``log A`` of each pruned one).

    Raises
    ------
    ValueError
        For ``hessian_structure="kron"`` or ``subset_of_weights="last_layer"``.
    """
    if hessian_structure == "kron" or subset_of_weights == "last_layer":
        raise ValueError(
            "A pruned network (pruned_mask_, refitted with warm_start=True) needs "
            "a posterior conditioned on its pruned weights being zero, which "
            f"hessian_structure={hessian_structure!r} with "
            f"subset_of_weights={subset_of_weights!r} cannot give: use "
            "hessian_structure='full' or 'diag' with subset_of_weights='all', or "
            "refit from scratch (warm_start=False)."
        )


def _theta(estimator):
    layout = estimator._layout()
    return layout.pack(np, estimator.coefs_, estimator.intercepts_), layout


def _unscale(estimator):
    """Return what undoes the posterior's prior scale on the diagonal of ``H``."""
    return (1.0 - estimator.prior_precision_scale_) * np.where(
        _pruned(estimator), 0.0, estimator.prior_precision_
    )


def _hessian(estimator):
    """Return the MAP objective's Hessian ``H`` (a full posterior's; ``O(W^3)``)."""
    L = estimator.posterior_.cholesky_factor
    H = L @ L.T
    H[np.diag_indices_from(H)] += _unscale(estimator)
    return H


def _hessian_diagonal(estimator):
    """Return ``diag(H)`` with no ``W x W`` array."""
    return estimator.posterior_.precision_diagonal() + _unscale(estimator)


def _released_shifts(layout, prior, before, after):
    """Blocks of the last layer's rows flat before pruning and pinned after.

    A row with a flat prior has a unit curvature along its softmax shift
    (:func:`~sklaplace._objective.flat_shift_rows`); once one of its entries
    is pruned the data pin the others, and the conditioned posterior drops it.
    """
    still = _flat_blocks(layout, prior, after)
    return [
        block for block in _flat_blocks(layout, prior, before) if block not in still
    ]


def _pruned(estimator):
    mask = getattr(estimator, "pruned_mask_", None)
    return np.zeros(estimator.prior_precision_.shape[0], bool) if mask is None else mask


def _check(estimator, method, *, reads_posterior=True):
    """Refuse what pruning cannot use; ``reads_posterior``: check the structure.

    Magnitudes read no posterior, so their saliencies serve any structure;
    a pruned copy needs one it can condition on its zeroed weights.
    """
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(estimator, FittedLaplaceMixin):
        raise TypeError(
            "Pruning needs a fitted LaplaceMLPClassifier, got "
            f"{type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    if method not in PRUNING_METHODS:
        raise ValueError(f"method must be one of {PRUNING_METHODS}, got {method!r}.")
    if reads_posterior and estimator.posterior_.structure not in ("full", "diag"):
        raise ValueError(
            "Pruning needs the posterior of every parameter, full or diagonal: "
            "it supports hessian_structure='full' or 'diag' with "
            "subset_of_weights='all', not this estimator's "
            f"{estimator.posterior_.structure!r} posterior."
        )


def saliencies(estimator, *, method="obs"):
    """Saliency of every parameter of a fitted LaplaceMLPClassifier.

    The OBS saliencies divide by posterior variances: on a singular or
    nearly singular posterior (see :func:`prune`) they are dominated by
    round-off, and no fallback is applied here.

    Parameters
    ----------
    estimator : LaplaceMLPClassifier
        A fitted estimator.
    method : {"obs", "obd", "magnitude"}, default="obs"
        ``|theta_q|`` (magnitude), ``1/2 H_qq theta_q^2`` (OBD, the other
        weights fixed) or ``theta_q^2 / (2 [H^{-1}]_qq)`` (OBS, the other
        weights moved optimally), with ``H`` the MAP objective's Hessian: the
        posterior precision at ``prior_precision_scale_`` 1.

    Returns
    -------
    saliency : ndarray of shape (n_params,)
        In the order of ``theta``; ``inf`` for biases and already pruned
        weights (they are never candidates).

    Raises
    ------
    ValueError
        For ``"obs"`` and ``"obd"``, where the posterior is not of every
        parameter, full or diagonal (Kronecker-factored or last-layer):
        they read its precision. Magnitudes serve any fitted estimator.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklaplace import LaplaceMLPClassifier, saliencies
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LaplaceMLPClassifier((), random_state=0).fit(X, y)
    >>> saliencies(clf, method="obs").shape
    (15,)
    """
    _check(estimator, method, reads_posterior=method != "magnitude")
    theta, layout = _theta(estimator)
    candidates = ~layout.bias_mask() & ~_pruned(estimator)
    if method == "magnitude":
        values = np.abs(theta)
    elif method == "obd" or _obs_is_obd(estimator):
        values = 0.5 * _hessian_diagonal(estimator) * theta**2
    else:
        covariance = _conditional_covariance(_hessian(estimator), _pruned(estimator))
        blocks = _flat_blocks(layout, estimator.prior_precision_, _pruned(estimator))
        return _obs_saliency(theta, np.diag(covariance), candidates, blocks)
    return np.where(candidates, values, np.inf)


def _obs_is_obd(estimator):
    """Return whether ``H`` is diagonal: OBS's correction moves no other weight.

    ``[H^{-1}]_qq = 1 / H_qq`` and conditioning leaves the other variances
    as they were, so OBS's saliencies and one-at-a-time removals are OBD's
    (and take no ``W x W`` array, which a network too large for a full
    posterior could not hold).
    """
    return estimator.posterior_.structure == "diag"


def _obs_saliency(theta, variance, candidates, flat_blocks=()):
    """``theta_q^2 / (2 [H^{-1}]_qq)`` for candidates, ``inf`` elsewhere.

    0 for candidates in ``flat_blocks`` (:func:`_flat_blocks`).
    """
    saliency = np.full_like(theta, np.inf)
    np.divide(theta**2, 2.0 * variance, out=saliency, where=candidates)
    for block in flat_blocks:
        saliency[block] = np.where(candidates[block], 0.0, saliency[block])
    return saliency


def _flat_blocks(layout, prior, pruned):
    """Rows of the last layer whose weights a shift of the row removes for free.

    A row with a flat prior, none of it pruned, is defined up to its softmax
    shift (:func:`~sklaplace._objective.flat_shift_rows`): moving the row by
    minus one of its weights zeroes that weight and changes no prediction
    and no prior, so its exact OBS saliency is 0 (the posterior's unit
    curvature along the shift is a convention, not data).
    """
    flat = flat_shift_rows(layout, prior, pruned)
    return [] if flat is None else shift_blocks(layout, np.flatnonzero(flat))


def _conditional_covariance(H, fixed):
    """``H^{-1}`` of the free block (zero rows/columns for ``fixed`` entries)."""
    free = ~fixed
    covariance = np.zeros_like(H)
    covariance[np.ix_(free, free)] = np.linalg.inv(H[np.ix_(free, free)])
    return covariance


def _obs_remove(theta, covariance, n_remove, candidates, flat_blocks=None):
    """Remove ``n_remove`` weights one at a time with OBS corrections.

    ``covariance`` is updated in place to the conditional covariance.
    ``flat_blocks(removed)``: :func:`_flat_blocks` with ``removed`` pruned
    too. A weight in one goes first, by its row's shift; the data then pin
    the rest of the row, and its unit curvature ``u u'`` is taken off the
    covariance (Sherman-Morrison), as the pruned copy's posterior does.
    """
    removed = np.zeros_like(candidates)
    for _ in range(n_remove):
        blocks = [] if flat_blocks is None else flat_blocks(removed)
        variance = np.diag(covariance)
        saliency = _obs_saliency(theta, variance, candidates & ~removed, blocks)
        q = int(np.argmin(saliency))
        block = next((b for b in blocks if b.start <= q < b.stop), None)
        column = covariance[:, q].copy()
        if block is None:
            # Hassibi & Stork (1993), eq. 5: delta = -theta_q / [H^-1]_qq H^-1 e_q.
            theta = theta - theta[q] / column[q] * column
        else:
            theta = theta.copy()
            theta[block] -= theta[q]  # the row's shift: no logit difference moves
        theta[q] = 0.0  # exactly, not up to round-off
        # Conditioning on theta_q = 0: H^-1 <- H^-1 - H^-1 e_q e_q' H^-1 / [H^-1]_qq.
        # (divided first: variances near 1e237 would overflow when squared)
        covariance -= np.outer(column, column / column[q])
        covariance[q, :] = 0.0
        covariance[:, q] = 0.0
        removed[q] = True
        if block is not None:
            _release(covariance, block, q)
    return theta, removed


def _release(covariance, block, q):
    """Take a row's unit curvature ``u u'`` off ``covariance``, in place.

    ``u = 1/sqrt(K)`` on the row's entries but the pruned ``q``:
    ``(H - u u')^{-1} = S + S u u' S / (1 - u' S u)``. ``1 - u' S u`` is
    ``1 / (1 + v)``, ``v`` the data's variance along the rest of the row,
    computed with an error of about ``eps`` times ``H``'s condition number
    (up to 1e10 where OBS runs): below ``SINGULAR_RTOL`` the data leave
    that direction flat to round-off, and the unit curvature is kept here
    (the pruned copy's posterior, which takes it off, says so if that
    leaves it singular).
    """
    u = np.zeros(covariance.shape[0])
    u[block] = 1.0 / np.sqrt(block.stop - block.start)
    u[q] = 0.0
    Su = covariance @ u
    denominator = 1.0 - u @ Su
    if denominator > SINGULAR_RTOL:
        covariance += np.outer(Su, Su / denominator)


def _with_dead_units(layout, pruned):
    """``pruned`` plus the incoming weights and bias of every dead hidden unit.

    A unit is dead when all its outgoing weights are pruned; removing its
    inputs can kill units of the layer below, so layers go top-down.
    """
    mask = pruned.copy()
    layers = layout.layers(np, mask)  # views into mask: [W_i; b_i]
    for i in range(layout.n_layers - 2, -1, -1):
        dead = np.all(layers[i + 1][:-1, :], axis=1)  # row j: unit j's outputs
        layers[i][:, dead] = True
    return mask


def _obs_is_reliable(estimator, hessian):
    """Warn and return False when ``hessian``, OBS's ``H``, is (nearly) singular.

    OBS's correction ``-theta_q / [H^-1]_qq H^-1 e_q`` divides by variances;
    along (nearly) null directions of ``H`` those are set by the jitter or by
    round-off, and the correction can move the weights by orders of magnitude.
    ``H`` is the objective's Hessian (prior scale 1), not the posterior at
    ``prior_precision_scale_``, whose larger prior can hide a null direction
    (iris, ``alpha=1e-8``, no bias prior: the posterior's pivot ratio 5e-9,
    the Hessian's 1.5e-11, and OBS had run).
    """
    jitter = getattr(estimator, "posterior_jitter_", 0.0)
    try:
        ratio = FullPosterior.from_precision(np, hessian).pivot_ratio()
    except NotPositiveDefiniteError:
        ratio = 0.0
    if jitter == 0.0 and ratio >= SINGULAR_RTOL:
        return True
    warn(
        "The posterior precision is singular or nearly so at prior scale 1, "
        f"where OBS inverts it (posterior_jitter_={jitter:.3g}, smallest "
        f"Cholesky pivot {ratio:.2g} of its largest diagonal entry): OBS's "
        "correction would move the weights along its null directions by "
        "amounts set by round-off. Pruning by OBD instead. A positive alpha "
        "and bias_prior_precision make the precision non-singular.",
        LaplaceApproximationWarning,
    )
    return False


def prune(estimator, fraction, *, method="obs"):
    """Return a copy of a fitted estimator with a fraction of its weights removed.

    Parameters
    ----------
    estimator : LaplaceMLPClassifier
        A fitted estimator; it is left unchanged.
    fraction : float
        Fraction of the WEIGHTS (biases are not counted) to remove, counting
        any already pruned. Values must be in the range ``[0.0, 1.0]``.
    method : {"obs", "obd", "magnitude"}, default="obs"
        ``"obs"`` removes weights one at a time by OBS saliency and corrects
        the remaining parameters optimally after each removal; ``"obd"`` and
        ``"magnitude"`` remove the lowest-saliency weights at once and leave
        the others as they are. OBS needs ``H^{-1}`` of the objective's
        Hessian (prior scale 1): where that is singular or nearly so
        (``posterior_jitter_ > 0``, or its smallest Cholesky pivot below
        1e-10 of its largest diagonal entry, as where a fit warns the
        precision is nearly singular) it falls back to OBD with a
        :class:`~sklaplace.exceptions.LaplaceApproximationWarning`.
        On a diagonal posterior OBS is OBD (each correction moves only the
        removed weight), in ``O(n_params)`` time and memory.

    Returns
    -------
    pruned : LaplaceMLPClassifier
        A fitted copy whose pruned weights are exactly zero in ``coefs_``,
        marked in ``pruned_mask_`` (ndarray of bool of shape (n_params,), in
        the order of ``theta``). Hidden units left with no outgoing weight are
        removed whole (incoming weights and bias too, which leaves the MAP
        predictions as they are), so more than ``fraction`` of the weights can
        end up zero. The posterior's precision is that of the Laplace
        posterior conditioned on the masked parameters being zero (for
        ``"obs"`` the remaining parameters, biases included, also move to the
        mean conditioned on the removed weights being zero; the other methods
        leave them where they were).
        ``log_marginal_likelihood_``, ``log_likelihood_``, ``loss_`` and
        ``effective_n_parameters_`` are set to ``None``: recomputing them
        needs the training data (the solver's records, ``n_iter_`` and the
        like, stay those of the fit it was pruned from).

    Raises
    ------
    TypeError
        If ``estimator`` is not a :class:`~sklaplace.LaplaceMLPClassifier`,
        or ``fraction`` is not a real number.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    ValueError
        If ``method`` is unknown, ``fraction`` lies outside ``[0, 1]``, or
        the posterior is neither full nor diagonal over every parameter
        (Kronecker, low-rank or last layer), for every method: the pruned
        copy's posterior is conditioned on its zeroed weights
        (:func:`saliencies` with ``"magnitude"`` reads no posterior and
        accepts any).

    Notes
    -----
    To re-train the kept weights, refit the copy with ``warm_start=True``:
    Newton (or L-BFGS) starts from the pruned weights, the pruned ones stay
    exactly zero, and the posterior and the log evidence are recomputed at the
    new MAP on the kept parameters (LeCun et al.'s prune-then-retrain loop).
    A refit with ``warm_start=False`` discards the pruning.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sklaplace import LaplaceMLPClassifier, prune
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LaplaceMLPClassifier((4,), random_state=0).fit(X, y)
    >>> small = prune(clf, 0.5, method="obs")
    >>> # 14 of the 28 weights (more where a unit is left with no outgoing weight):
    >>> bool(np.sum(small.coefs_[0] == 0) + np.sum(small.coefs_[1] == 0) >= 14)
    True
    >>> retrained = small.set_params(warm_start=True).fit(X, y)
    >>> # the refit keeps exactly the pruned weights at zero
    >>> pairs = zip(retrained.coefs_, small.coefs_)
    >>> all(np.array_equal(r == 0, s == 0) for r, s in pairs)
    True
    """
    _check(estimator, method)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"fraction must be a real number, got {fraction!r}.")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
    theta, layout = _theta(estimator)
    weights = ~layout.bias_mask()
    already = _pruned(estimator)
    n_already = int(np.sum(already & weights))
    n_remove = max(int(round(fraction * weights.sum())) - n_already, 0)
    candidates = weights & ~already
    if method == "obs" and (_obs_is_obd(estimator) or not n_remove):
        method = "obd"  # the same removals (none: the same weights), no H^-1
    hessian = _hessian(estimator) if method == "obs" else None
    if method == "obs" and not _obs_is_reliable(estimator, hessian):
        method = "obd"
    if method == "obs":
        covariance = _conditional_covariance(hessian, already)
        prior = estimator.prior_precision_
        flat = lambda removed: _flat_blocks(layout, prior, already | removed)  # noqa: E731
        theta, removed = _obs_remove(theta, covariance, n_remove, candidates, flat)
    else:
        order = np.argsort(saliencies(estimator, method=method), kind="stable")
        removed = np.zeros_like(weights)
        removed[order[:n_remove]] = True
    pruned = _with_dead_units(layout, already | removed)
    theta = np.where(pruned, 0.0, theta)
    result = copy.deepcopy(estimator)
    coefs, intercepts = layout.split(np, theta)
    result.coefs_ = [np.array(c) for c in coefs]
    result.intercepts_ = [np.array(b) for b in intercepts]
    released = _released_shifts(layout, estimator.prior_precision_, already, pruned)
    result.posterior_ = estimator.posterior_.conditioned_on_zero(pruned, released)
    result.pruned_mask_ = pruned
    # What the data would have to recompute is not left describing the
    # unpruned network.
    result.log_marginal_likelihood_ = result.log_likelihood_ = None
    result.loss_ = result.effective_n_parameters_ = None
    return result
