"""Calibration metrics used by the demo, the benchmarks and the examples."""

import numpy as np

__all__ = ["expected_calibration_error", "multiclass_brier_score"]


def expected_calibration_error(y_true, proba, *, classes=None, n_bins=15):
    """Compute the expected calibration error of the top-label confidence.

    Predictions are binned by their largest probability into ``n_bins``
    equal-width bins; the ECE is the bin-size-weighted mean of
    ``|accuracy - confidence|`` (Guo et al. 2017).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,), default=None
        Labels of the columns; default ``np.unique(y_true)``.
    n_bins : int, default=15
        Number of confidence bins.

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
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=float)
    classes = np.unique(y_true) if classes is None else np.asarray(classes)
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(
                correct[members].mean() - confidence[members].mean()
            )
    return float(ece)


def multiclass_brier_score(y_true, proba, *, classes=None):
    """Compute the mean squared distance between ``proba`` and one-hot labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,), default=None
        Labels of the columns; default ``np.unique(y_true)``.

    Returns
    -------
    score : float
        ``mean_n sum_k (p_nk - [y_n = k])^2``, in ``[0, 2]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklaplace.metrics import multiclass_brier_score
    >>> multiclass_brier_score([0, 1], np.array([[1.0, 0.0], [0.5, 0.5]]))
    0.25
    """
    y_true = np.asarray(y_true)
    classes = np.unique(y_true) if classes is None else np.asarray(classes)
    onehot = (y_true[:, None] == classes[None, :]).astype(float)
    return float(np.mean(np.sum((np.asarray(proba) - onehot) ** 2, axis=1)))
