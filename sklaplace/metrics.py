"""Calibration metrics used by the demo, the benchmarks and the examples."""

import numbers

import numpy as np
import scipy.sparse

__all__ = ["expected_calibration_error", "multiclass_brier_score"]

#: How far a row of ``proba`` may sum from 1 (float32 round-off over many
#: classes stays well inside it; logits or unnormalised scores do not).
PROBA_SUM_ATOL = 1e-5


def expected_calibration_error(
    y_true, proba, *, classes=None, n_bins=15, sample_weight=None
):
    """Compute the expected calibration error of the top-label confidence.

    Predictions are binned by their largest probability into ``n_bins``
    equal-width bins ``[k / n_bins, (k + 1) / n_bins)``, the last one closed
    (confidence 1 belongs to it); the ECE is the bin-size-weighted mean of
    ``|accuracy - confidence|`` (Guo et al. 2017), bin sizes and means
    weighted by ``sample_weight``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the order of ``classes``; a 1-D
        array is the probability of ``classes[1]`` of two (what
        scikit-learn's scorers pass for a binary problem).
    classes : array-like of shape (n_classes,), default=None
        Labels of the columns; default ``np.unique(y_true)``, which must then
        hold one label per column (else ``ValueError``: pass the estimator's
        ``classes_`` when a batch may lack a class).
    n_bins : int, default=15
        Number of confidence bins.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each row (default 1): an integer weight
        counts as that many copies of the row.

    Returns
    -------
    ece : float
        In ``[0, 1]``; 0 is perfectly calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace.metrics import expected_calibration_error
    >>> expected_calibration_error([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]))
    0.149...
    """
    if (
        not isinstance(n_bins, numbers.Integral)
        or isinstance(n_bins, bool)
        or n_bins < 1
    ):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    y_true, proba, classes, weight = _checked(y_true, proba, classes, sample_weight)
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == y_true
    # Each confidence's bin k, the last edge k / n_bins at or below it: the
    # scaled floor, corrected against the edges themselves (int(0.57 * 100)
    # is 56, which had put a confidence of exactly 57/100 in the bin below).
    # No array of all n_bins + 1 edges: n_bins=10**18 had asked for 7 EiB.
    bins = np.clip(np.floor(confidence * n_bins), 0, n_bins - 1)
    bins = np.where((bins + 1) / n_bins <= confidence, bins + 1, bins)
    bins = np.where(bins / n_bins > confidence, bins - 1, bins)
    bins = np.clip(bins, 0, n_bins - 1)
    # Per occupied bin only (a loop over all bins took 12 s for 1e7 bins).
    # sum_b w_b / w |acc_b - conf_b| = sum_b |sum_{i in b} w_i (correct_i - conf_i)| / w
    _, members = np.unique(bins, return_inverse=True)
    gap = np.bincount(members, weights=weight * (correct - confidence))
    return float(np.sum(np.abs(gap)) / np.sum(weight))


def multiclass_brier_score(y_true, proba, *, classes=None, sample_weight=None):
    """Compute the mean squared distance between ``proba`` and one-hot labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the order of ``classes``; a 1-D
        array is the probability of ``classes[1]`` of two (what
        scikit-learn's scorers pass for a binary problem).
    classes : array-like of shape (n_classes,), default=None
        Labels of the columns; default ``np.unique(y_true)``, which must then
        hold one label per column (else ``ValueError``).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weight of each row in the mean (default 1).

    Returns
    -------
    score : float
        ``sum_n w_n sum_k (p_nk - [y_n = k])^2 / sum_n w_n``, in ``[0, 2]``.
        For two classes it is twice scikit-learn's ``brier_score_loss``,
        which counts the positive class only.

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace.metrics import multiclass_brier_score
    >>> multiclass_brier_score([0, 1], np.array([[1.0, 0.0], [0.5, 0.5]]))
    0.25
    """
    y_true, proba, classes, weight = _checked(y_true, proba, classes, sample_weight)
    onehot = (y_true[:, None] == classes[None, :]).astype(float)
    return float(np.average(np.sum((proba - onehot) ** 2, axis=1), weights=weight))


def _checked(y_true, proba, classes, sample_weight):
    """Validate the metrics' input; return ``(y_true, proba, classes, weight)``.

    A column-to-label mismatch must not pass silently: with ``classes``
    inferred from a batch that lacks a class, a perfect binary prediction
    had a Brier score of 1 (a broadcast) and a 3-class ECE counted a wrong
    prediction as right.
    """
    y_true = np.asarray(y_true)
    given = proba = _real_array(proba, "proba")  # messages quote what was given
    if proba.ndim == 1:
        # A binary scorer's column: the probability of the second class.
        # np.size: a scalar classes counts one (its shape is refused below).
        n_labels = np.size(_labels(y_true, "y_true") if classes is None else classes)
        if n_labels > 2:
            raise ValueError(
                "A 1-D proba is the probability of classes[1] of two classes; "
                f"there are {n_labels}: pass the (n_samples, n_classes) table."
            )
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or y_true.ndim != 1 or proba.shape[0] != y_true.shape[0]:
        raise ValueError(
            "proba must be of shape (n_samples, n_classes) or (n_samples,) and "
            f"y_true of shape (n_samples,); got {given.shape} and {y_true.shape}."
        )
    if proba.shape[0] == 0:
        raise ValueError("proba and y_true hold no samples.")
    if proba.shape[1] == 0:
        raise ValueError("proba has no columns: it must hold one per class.")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba contains NaN or infinity.")
    off = np.max(np.abs(np.sum(proba, axis=1) - 1.0))
    if np.any(proba < 0) or np.any(proba > 1) or off > PROBA_SUM_ATOL:
        raise ValueError(
            "proba must hold probabilities: entries in [0, 1], each row summing "
            # Digits enough to show 1 + 1e-6 outside [0, 1] (".3g" gave "1").
            f"to 1 (to {PROBA_SUM_ATOL:g}); got entries in [{given.min():.10g}, "
            f"{given.max():.10g}] and a row sum off by {off:.3g}."
        )
    if classes is None:
        classes = _labels(y_true, "y_true")
        if classes.shape[0] != proba.shape[1]:
            raise ValueError(
                f"y_true holds {classes.shape[0]} distinct labels but proba has "
                f"{proba.shape[1]} columns: pass classes= (the estimator's "
                "classes_) to say which label each column is."
            )
    classes = np.asarray(classes)
    if classes.shape != (proba.shape[1],):
        raise ValueError(
            f"classes must name the {proba.shape[1]} columns of proba, got "
            f"shape {classes.shape}."
        )
    if _labels(classes, "classes").shape[0] != classes.shape[0]:
        raise ValueError(f"classes must not repeat a label, got {classes}.")
    unknown = ~np.isin(y_true, classes)
    if np.any(unknown):
        raise ValueError(
            f"y_true holds labels not in classes: {np.unique(y_true[unknown])[:5]}."
        )
    return y_true, proba, classes, _weights(sample_weight, y_true.shape[0])


def _weights(sample_weight, n_samples):
    """Return the rows' weights as floats (ones for ``None``), checked."""
    if sample_weight is None:
        return np.ones(n_samples)
    weight = _real_array(sample_weight, "sample_weight")
    if weight.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must be of shape ({n_samples},), one weight per "
            f"row, got {weight.shape}."
        )
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    if not np.max(weight) > 0:
        raise ValueError("sample_weight sums to zero: no row is counted.")
    # The metrics are ratios of weighted sums: a power of two brings the
    # largest weight to [0.5, 1) exactly, so that weights near 1e307, finite
    # each, do not overflow their sum (the metrics had been NaN).
    return np.ldexp(weight, -np.frexp(np.max(weight))[1])


def _real_array(values, name):
    """Return ``values`` as a float array; an error names ``name`` where it fails."""
    if scipy.sparse.issparse(values):
        raise TypeError(f"{name} must be a dense array, got a sparse matrix.")
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular array: {error}") from error
    if np.iscomplexobj(array):  # float() would drop the imaginary part
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    try:
        return array.astype(float)
    except (TypeError, ValueError) as error:  # strings, dicts, objects
        raise TypeError(
            f"{name} must hold real numbers, got dtype {array.dtype}."
        ) from error


def _labels(values, name):
    """Return the sorted distinct labels of ``values``; name ``name`` if they fail."""
    try:
        return np.unique(values)
    except TypeError as error:  # labels of types that do not compare
        raise TypeError(
            f"{name} must hold labels of one comparable type: {error}"
        ) from error
