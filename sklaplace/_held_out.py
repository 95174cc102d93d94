"""Held-out log losses of the posterior's prior scales: folds and validation rows.

``prior_precision_scale="cv"`` scores every row fitted on the folds of
:func:`content_folds` (each fold's MAP refitted without it, warm-started);
``"validation"`` scores the rows :func:`validation_rows` holds out at the
MAP fitted on the others. Both assign rows by a keyed hash of their
features, so that copies of a row (an integer sample weight) go together and
neither the row order nor the names of the classes change anything. The
losses of every scale come back as :class:`HeldOutLosses`, from which
:mod:`sklaplace._prior_scale` chooses.
"""

import hashlib
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sklaplace._backend import to_numpy
from sklaplace._jacobian import centring
from sklaplace._predictive import probit_from_variance
from sklaplace._prior_scale import ScaledPriorFamily
from sklaplace._warnings import ignored
from sklaplace.exceptions import LaplaceApproximationWarning

__all__ = [
    "BASIN_STANDARD_ERRORS",
    "CV_FOLDS",
    "FOLD_TOL",
    "HeldOutLosses",
    "MIN_HELD_OUT_CLASS_ROWS",
    "base_rate_loss",
    "content_folds",
    "cv_log_losses",
    "fold_follows_negative_curvature",
    "validation_log_losses",
    "validation_rows",
]

#: Folds of the held-out choice (``"cv"``): with 3, the choice on breast
#: cancer's 398 training rows was noisy enough to cost 7% of test log loss.
CV_FOLDS = 5
#: Tightest tolerance of the folds' MAPs (a looser model ``tol`` is kept;
#: ``MLPClassifier``'s ``tol``, and ``tol="auto"`` where refits are costly):
#: they only score the prior scales on a grid 1.33x apart, from the
#: full-data MAP. At the model's 1e-6 the folds took 1.1-2.1x the iterations
#: on five default fits, for test log losses within 0.0006 (the benchmark
#: report, session 22).
FOLD_TOL = 1e-4
#: Paired standard errors by which MacKay's fixed point must beat, on
#: held-out losses, a refit the evidence kept over it (another basin). The
#: folds, warm-started from each fit's MAP (at the model's ``tol``: at
#: ``FOLD_TOL`` they stayed nearer it), favour the less regularised fit,
#: whose basin all the rows shaped: over 59 such fits on nine data sets
#: (session 29) a lead of one error chose 5 fits worse on test rows and 16
#: better, of two none worse and 16 better (the nearest worse at 1.94).
BASIN_STANDARD_ERRORS = 2.0
#: A class of fewer distinct rows (of positive weight) is fitted in every
#: fold and never held out, by the folds or the validation rows: a fit
#: without one of them sees the class on a half or two thirds of its rows,
#: and the held-out losses then moderate far beyond what the fit on all of
#: them needs. With 20 classes of 2 training rows, ``"cv"`` chose the
#: grid's floor ``c = 0.01`` and a test log loss of 2.717 where the
#: evidence's ``c`` near 1 gave 2.562 (3 rows: ``c`` 0.04-0.42, 2.464
#: against 2.368); with 10 classes of 4 rows the two were even (session 55).
MIN_HELD_OUT_CLASS_ROWS = 4


def _content_hashes(X, seed):
    """Return a keyed 64-bit hash of each row's features (uint64).

    The features are hashed in single precision: data equal to round-off
    (a scaler run with another BLAS or on a GPU, a float32 copy of the same
    float64 data) must not move a row to another fold, which would change
    the held-out choice and the model with it. The label is not hashed: its
    index is the class's place in ``classes_``, so renaming the classes
    (``"a", "b"`` as ``"b", "a"``) had moved rows between folds and changed
    the chosen scale of a convex model (1e4 against 1e3 under ``"cv"``).
    """
    key = int(seed).to_bytes(8, "little")
    with np.errstate(over="ignore"):  # beyond float32's range: hashed as inf
        X = np.ascontiguousarray(X, dtype=np.float32)
    X = X + np.float32(0.0)  # -0.0 hashes as 0.0
    hashes = np.empty(X.shape[0], dtype=np.uint64)
    for i, row in enumerate(X):
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest()
        hashes[i] = int.from_bytes(digest, "little")
    return hashes


def fold_follows_negative_curvature(fold_tol):
    """Whether a fold's refit to ``fold_tol`` follows negative curvature.

    A fold solved to ``FOLD_TOL`` (or looser) scores the fitted network's
    own mode, for the scale grid and the basins' screens, so its refit
    should end near the full-data MAP it starts from. That start can be
    close to a saddle of the fold's loss, and Newton-CG follows negative
    curvature to the trust region's boundary wherever conjugate gradients
    meet it, which round-off decides: on 200 rows of two moons a 1e-15
    relative change of ``X`` sent one fold from loss 54.3, near its start,
    to another basin at 40.7, the basins' arbitration turned and the
    probabilities moved by 0.61 (session 50). Such a refit stops CG where
    it meets negative curvature (:func:`~sklaplace._newton_cg.steihaug_cg`).
    The basins' confirmations, solved to the model's tighter ``tol`` so
    that each fold reaches its own optimum, follow it, as the full-data
    fits do.

    Parameters
    ----------
    fold_tol : float
        The tolerance the fold's MAP is solved to.

    Returns
    -------
    follows : bool
    """
    return fold_tol < FOLD_TOL


def content_folds(X, y_index, n_folds, seed, sample_weight=None):
    """Fold of each row, from a keyed hash of the row's features.

    Rows of identical features always share a fold, and a row's fold
    depends on its own features only (but for the class rules below), never
    on the row order or the classes' names: a
    row with integer weight ``k`` and ``k`` copies of it are held out
    together (sample weights stay equivalent to repetitions).
    Rows get fold -1 (fitted in every fold, never held out) where their
    class has fewer than :data:`MIN_HELD_OUT_CLASS_ROWS` distinct rows, or
    its weight lies wholly in one fold (that fold's MAP would not have
    seen the class: with a class of two rows in one fold the chosen scale
    fell from 1e4 to 0.13 and the test log loss rose from 0.047 to 0.085).
    Where every class is that small, no row is held out.
    """
    hashes = _content_hashes(X, seed)
    folds = (hashes % np.uint64(n_folds)).astype(int)
    folds[_small_classes(hashes, y_index, sample_weight)[y_index]] = -1
    for k in range(n_folds):
        out = folds == k
        folds[out & _unfitted_classes(out, y_index, sample_weight)[y_index]] = -1
    return folds


def _small_classes(hashes, y_index, sample_weight=None):
    """Classes with weight but fewer than ``MIN_HELD_OUT_CLASS_ROWS`` distinct rows.

    Only rows of positive weight count, and a row's copies (an integer
    weight) count once, as the folds hold them out together. Returns a bool
    per class.
    """
    weighted = np.ones(hashes.shape[0], dtype=bool)
    if sample_weight is not None:
        weighted = sample_weight > 0
    n_classes = int(np.max(y_index)) + 1 if y_index.size else 0
    pairs = np.column_stack([y_index[weighted].astype(np.uint64), hashes[weighted]])
    classes = np.unique(pairs, axis=0)[:, 0].astype(int)
    distinct = np.bincount(classes, minlength=n_classes)
    return (distinct > 0) & (distinct < MIN_HELD_OUT_CLASS_ROWS)


def _unfitted_classes(out, y_index, sample_weight=None):
    """Classes with weight in the data but none outside ``out`` (bool per class)."""
    weight = np.ones(out.shape[0]) if sample_weight is None else sample_weight
    n_classes = int(np.max(y_index)) + 1 if out.size else 0
    fitted = np.bincount(y_index[~out], weight[~out], minlength=n_classes)
    return (fitted == 0) & (np.bincount(y_index, weight, minlength=n_classes) > 0)


def validation_rows(X, y_index, fraction, seed, sample_weight=None):
    """Rows held out for ``"validation"``, alpha's or the scale's (boolean mask).

    A row is held out when its keyed feature hash, read as a number in
    ``[0, 1)``, is below ``fraction``: about that fraction of the rows, with
    the invariances of :func:`content_folds` (copies of a row go together;
    row order changes nothing). A class whose weight would be held out
    whole is fitted instead: a hash split is not stratified, and a class of
    one row fell on the held-out side for one seed in ten, leaving a network
    that had never seen it; so is a class of fewer than
    :data:`MIN_HELD_OUT_CLASS_ROWS` distinct rows, as in the folds
    (``sample_weight``, default unit weights).
    """
    hashes = _content_hashes(X, seed)
    held = hashes / 2.0**64 < fraction
    held &= ~_small_classes(hashes, y_index, sample_weight)[y_index]
    return held & ~_unfitted_classes(held, y_index, sample_weight)[y_index]


# A held-out row far beyond the fold's data (features of 1e150) overflows
# its logits or variances; its loss is then inf, by design, not a NumPy warning.
@np.errstate(over="ignore", invalid="ignore")
def _heldout_log_losses(fold, jacobians, X, y_index, scales, predictive, probit):
    """Log loss of each of ``fold``'s held-out rows at each scale.

    With ``probit`` the moderated logits come from the centred variances of
    all scales at once (:meth:`ScaledPriorFamily.centred_variances`; the
    probit needs no more), else from ``predictive`` on each scale's full
    covariances.

    Returns an array of shape (n_rows, n_scales); ``inf`` where the scaled
    precision is not positive definite or the loss is not finite.
    """
    xp = fold.objective.xp
    fixed = fold.objective.fixed  # on the fit's device; the family indexes host arrays
    family = ScaledPriorFamily(
        fold.posterior,
        fold.prior_precision,
        None if fixed is None else to_numpy(fixed),
        xp,
        eigendecompose=len(scales) > 1,  # a walk's one scale: that posterior
    )
    likelihood = fold.objective.likelihood
    losses, start = np.full((X.shape[0], len(scales)), np.inf), 0
    for logits, J in jacobians(fold.theta, X):
        stop = start + logits.shape[0]
        rows = xp.asarray(np.arange(stop - start))
        labels = xp.asarray(y_index[start:stop])
        if probit and (family.centred_at_once or getattr(J, "ndim", 0) == 3):
            mean = logits @ centring(xp, logits.shape[1], logits.dtype)
            variances = family.centred_variances(xp, J, scales)
            # NaN columns mark scales whose precision is not positive
            # definite: skipped (their loss stays inf), never computed on.
            defined = np.isfinite(to_numpy(variances[0, 0, :]))
            moderated = (
                probit_from_variance(xp, mean, variances[:, :, i]) if ok else None
                for i, ok in enumerate(defined)
            )
        else:
            moderated = (
                None if cov is None else predictive(xp, logits, cov)
                for cov in family.functional_variances(xp, J, scales)
            )
        for i, g in enumerate(moderated):
            if g is not None:
                log_proba = likelihood.log_proba(xp, g)
                losses[start:stop, i] = -to_numpy(log_proba[rows, labels])
        start = stop
    return np.where(np.isfinite(losses), losses, np.inf)


class HeldOutLosses(NamedTuple):
    """Per-row held-out log losses of every scale, from :func:`cv_log_losses`.

    Attributes
    ----------
    losses : ndarray of shape (n_rows, n_scales)
        Each held-out row's log loss (rows with zero weight included).
    weights : ndarray of shape (n_rows,)
        Their sample weights.
    """

    losses: np.ndarray
    weights: np.ndarray

    def curve(self):
        """Held-out log loss per unit weight of each scale."""
        total = self.weights @ np.where(self.weights[:, None] > 0, self.losses, 0.0)
        return total / np.sum(self.weights)

    def at_best(self):
        """Return the losses at the scale of least held-out loss (the first of equals).

        Returns
        -------
        HeldOutLosses
            One column: each row's loss at that scale.
        """
        best = int(np.argmin(self.curve()))
        return HeldOutLosses(self.losses[:, best : best + 1], self.weights)


def base_rate_loss(fitted, held_out, n_classes):
    """Held-out log loss of predicting the fitted rows' class frequencies.

    Parameters
    ----------
    fitted, held_out : tuple
        ``(X, y_index, sample_weight)`` of the rows fitted and held out.
    n_classes : int

    Returns
    -------
    float
        Per unit held-out weight; ``inf`` if a held-out class has none.
    """
    _, y_fit, w_fit = fitted
    _, y_out, w_out = held_out
    counts = np.bincount(y_fit, weights=w_fit, minlength=n_classes)
    with np.errstate(divide="ignore"):
        log_frequency = np.log(counts / np.sum(counts))
    return float(-(w_out @ log_frequency[y_out]) / np.sum(w_out))


def cv_log_losses(fit_fold, jacobians, data, folds, scales, predictive, probit=False):
    """Held-out log loss of every row at each prior scale, over the folds.

    Parameters
    ----------
    fit_fold : callable
        ``fit_fold(train) -> LaplaceFit`` fits the MAP and its posterior on
        the rows where the boolean mask ``train`` is True.
    jacobians : callable
        ``jacobians(theta, X)`` yields ``(logits, J)`` row chunks, ``J`` of
        the centred logits for K classes (``jacobian_chunks(...,
        centred=True)``: ``predictive`` sees no common shift of the logits,
        and that shift's variance, the prior's, would bring its round-off).
    data : tuple
        ``(X, y_index, sample_weight)``, NumPy arrays.
    folds : ndarray of int of shape (n_samples,)
        From :func:`content_folds`; rows of fold -1 are never held out.
    scales : sequence of float
    predictive : callable
        ``predictive(xp, mean, cov) -> moderated logits``.
    probit : bool, default=False
        Whether ``predictive`` is the probit (then only the centred
        variances are computed, for all scales at once).

    Returns
    -------
    HeldOutLosses or None
        ``None`` if no fold has weight on both sides (too little data).
    """
    X, y_index, weight = data
    losses, weights = [], []
    for k in np.unique(folds[folds >= 0]):
        out = folds == k
        if not (np.sum(weight[out]) > 0 and np.sum(weight[~out]) > 0):
            continue
        # The full-data fit already warned about its own solver and
        # posterior; a fold's warnings would repeat them.
        with ignored(ConvergenceWarning, LaplaceApproximationWarning):
            fold = fit_fold(~out)
        losses.append(
            _heldout_log_losses(
                fold, jacobians, X[out], y_index[out], scales, predictive, probit
            )
        )
        weights.append(weight[out])
    if not losses:
        return None
    return HeldOutLosses(np.concatenate(losses), np.concatenate(weights))


def validation_log_losses(fit, jacobians, held_out, scales, predictive, probit=False):
    """Log loss of every held-out row at each prior scale, for one fit.

    Parameters
    ----------
    fit : LaplaceFit
        The MAP and posterior, fitted without the held-out rows.
    jacobians, scales, predictive, probit
        As in :func:`cv_log_losses`.
    held_out : tuple
        ``(X, y_index, sample_weight)`` of the held-out rows, NumPy arrays.

    Returns
    -------
    HeldOutLosses or None
        ``None`` if the held-out rows have no weight.
    """
    X, y_index, weight = held_out
    if not np.sum(weight) > 0:
        return None
    losses = _heldout_log_losses(fit, jacobians, X, y_index, scales, predictive, probit)
    return HeldOutLosses(losses, weight)
