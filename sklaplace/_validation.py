"""Input validation and up-front resource checks of LaplaceMLPClassifier.

Everything here runs before any heavy work, so that bad input fails fast with
a message that names the problem.
"""

import numpy as np
import scipy.sparse
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, validate_data

from sklaplace._backend import on_host, to_numpy
from sklaplace._memory import check_memory
from sklaplace._warnings import warn
from sklaplace.exceptions import (
    FeatureScaleWarning,
    SampleWeightScaleWarning,
    UnweightedClassWarning,
)

__all__ = [
    "check_feature_scale",
    "check_finite_rows",
    "check_weight_scale",
    "curvature_second_moments",
    "dense",
    "fit_rows",
    "hidden_sizes",
    "merge_identical_rows",
    "validate_features",
    "validate_fit_data",
]

#: A feature whose root mean square lies outside this range draws a
#: FeatureScaleWarning (all-zero features excepted): raw wine (proline about
#: 800) had test log loss 0.175 against 0.058 standardised; raw digits (pixel
#: values up to 16) fit as well as standardised.
FEATURE_SCALE_RANGE = (1e-3, 1e2)

#: The likelihood counts sample weights as repetitions, so their total is a
#: number of rows, which float64 resolves to one row up to 2**53 (one more
#: row no longer changes it, nor the prior the posterior) and below which,
#: down to 2**-53 rows, the data still move the prior beyond round-off.
#: Weights of 1e100 on one row had ended in a "flat prior" error, of 1e300
#: in NumPy overflow warnings and an unfitted network, of 1e-200 on every
#: row in probabilities of 0.5 without a word.
TOTAL_WEIGHT_RANGE = (2.0**-53, 2.0**53)

#: Weights averaging below this over the rows that count draw a
#: SampleWeightScaleWarning: they are most likely relative weights (summing
#: to 1, as AdaBoost's do), which the likelihood reads as a fraction of a
#: row each. Class-balancing and survey weights average about 1.
SMALL_MEAN_WEIGHT = 0.1


def hidden_sizes(hidden_layer_sizes):
    """Validate ``hidden_layer_sizes``; return it as a tuple of ints."""
    sizes = np.atleast_1d(np.asarray(hidden_layer_sizes))
    if sizes.size and (
        not np.issubdtype(sizes.dtype, np.integer)
        or sizes.ndim != 1
        or np.any(sizes < 1)
    ):
        raise ValueError(
            "hidden_layer_sizes must be a tuple of positive integers, got "
            f"{hidden_layer_sizes!r}."
        )
    return tuple(int(s) for s in sizes.ravel())


def validate_features(estimator, X, y="no_validation", reset=True):
    """``validate_data`` in float64, SciPy sparse input returned dense.

    The network multiplies dense arrays only (the R-operator, Jacobians and
    curvature alike), so a sparse ``X`` (a ``OneHotEncoder``'s output, say)
    is densified: ``n_samples x n_features`` float64 in memory. Arrays of
    other libraries come to the host first (:func:`on_host`).
    """
    without_y = isinstance(y, str) and y == "no_validation"
    # scikit-learn's finiteness check sums X first (its overflow silenced):
    # finite features near float64's limit of both signs summed to
    # inf - inf, with NumPy's "invalid value" RuntimeWarning.
    with np.errstate(invalid="ignore"):
        validated = validate_data(
            estimator,
            on_host(X),
            y if without_y else on_host(y),
            reset=reset,
            dtype=np.float64,
            accept_sparse=("csr", "csc", "coo"),
        )
    X, y = (validated, None) if without_y else validated
    X = dense(X)
    return X if without_y else (X, y)


def dense(X):
    """``X`` itself, or a SciPy sparse ``X`` densified within the memory limit.

    Raises
    ------
    sklaplace.exceptions.MemoryLimitError
        If the dense copy (``8 n_samples n_features`` bytes) exceeds it.
    """
    if not scipy.sparse.issparse(X):
        return X
    n_samples, n_features = X.shape
    check_memory(
        8 * n_samples * n_features,
        f"the dense copy of the {n_samples} x {n_features} sparse X",
        "Reduce the features (e.g. TruncatedSVD) or the rows per call.",
    )
    return X.toarray()


def validate_fit_data(estimator, X, y, sample_weight):
    """Validate ``fit``'s input; return ``(X, y_index, sample_weight, classes)``.

    ``y_index`` holds class indices into ``classes``. Weight 0 equals dropping
    the row, but a class whose rows all have weight 0 stays in ``classes``,
    with a warning, even where one class alone keeps weight (a bootstrap of a
    few rows in ``BaggingClassifier`` draws such weights; scikit-learn's
    classifiers fit them too).
    """
    X, y = validate_features(estimator, X, y)
    check_classification_targets(y)
    sample_weight = _check_sample_weight(
        on_host(sample_weight), X, dtype=np.float64, ensure_non_negative=True
    )
    with np.errstate(over="ignore"):  # an overflowing total: refused below
        total = np.sum(sample_weight)
    if not total > 0:
        raise ValueError("sample_weight must not sum to zero: no sample would count.")
    check_feature_scale(X, sample_weight, getattr(estimator, "feature_names_in_", None))
    low, high = TOTAL_WEIGHT_RANGE
    if not low <= total <= high:
        # Merged rows would carry the total's weight, and every curvature
        # scales with it.
        raise ValueError(
            f"sample_weight sums to {total:.3g} rows' worth, "
            + (
                f"more than float64 counts to one row ({high:.3g}): divide"
                if total > high
                else f"numerically zero (under {low:.3g}): the prior would "
                "be the posterior to round-off. Multiply"
            )
            + " the weights by a common factor (only their ratios and the "
            "prior's strength relative to them matter)."
        )
    classes, y_index = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            "LaplaceMLPClassifier needs samples of at least 2 classes in the "
            "data, but the data contain only one class: "
            f"{classes[:1].tolist()[0]!r}."
        )
    weighted = classes[np.bincount(y_index, sample_weight) > 0]
    if weighted.shape[0] < classes.shape[0]:
        # The class stays in classes_ (as scikit-learn keeps it), but only
        # the prior and the softmax's normalisation inform its logit.
        unweighted = np.setdiff1d(classes, weighted).tolist()
        warn(
            f"Classes {unweighted} have rows in y but zero total sample_weight: "
            "no row of theirs counts, so their probabilities come from the prior "
            "and the other classes' rows alone (small near those rows, not zero; "
            "elsewhere what the network extrapolates). Drop those rows to leave "
            "the classes out of classes_ (where a meta-estimator draws such "
            "weights, as BaggingClassifier's small bootstraps do, this warning "
            "can be ignored).",
            UnweightedClassWarning,
        )
    return X, y_index, sample_weight, classes


def fit_rows(estimator, X, y, sample_weight):
    """Return the rows a fit sees: validated, identical ones merged, weights checked.

    :func:`validate_fit_data`, then :func:`merge_identical_rows` (an integer
    weight equals repeated rows, in any order), then
    :func:`check_weight_scale` on the merged rows.

    Returns
    -------
    X, y_index, sample_weight, classes
    """
    X, y_index, sample_weight, classes = validate_fit_data(
        estimator, X, y, sample_weight
    )
    X, y_index, sample_weight = merge_identical_rows(X, y_index, sample_weight)
    check_weight_scale(sample_weight)
    return X, y_index, sample_weight, classes


def check_weight_scale(sample_weight):
    """Warn where the weights of the rows that count average below one row.

    :class:`~sklaplace.exceptions.SampleWeightScaleWarning` below
    ``SMALL_MEAN_WEIGHT``. Judged on the rows after
    :func:`merge_identical_rows`, as the fit sees them: ten copies of a row
    at weight 0.05 are that row at 0.5.
    """
    counted = np.count_nonzero(sample_weight)
    total = np.sum(sample_weight)
    if total < SMALL_MEAN_WEIGHT * counted:
        warn(
            f"sample_weight averages {total / counted:.3g} over the {counted} "
            f"distinct rows of positive weight: {total:.3g} rows' worth in all, "
            "as the likelihood counts weights as repetitions, against which the "
            "prior (alpha) weighs more. If the weights are relative (e.g. "
            "normalised to sum to 1), multiply them by a common factor, e.g. "
            "w * n / w.sum().",
            SampleWeightScaleWarning,
        )


def merge_identical_rows(X, y_index, sample_weight):
    """Merge identical ``(x, y)`` rows into one row of their summed weight.

    The log posterior depends on the rows only through each distinct row's
    total weight, so this changes no result in exact arithmetic; in floating
    point it makes the fit depend on the data only through that multiset:
    rows of weight 0 are dropped and the distinct rows are put in one
    canonical order (by their bytes, then label). Integer sample weights and
    repeated rows, and any order of the rows, then give bit-for-bit the same
    fit with every solver, converged or not (L-BFGS at ReLU kinks,
    ``max_iter`` reached), where summation in another order would move an
    unconverged fit by far more than round-off.

    Returns
    -------
    X, y_index, sample_weight : ndarrays
        The distinct rows of positive weight, sorted, and their weights.
    """
    positive = sample_weight > 0
    if not positive.all():
        X, y_index, sample_weight = (
            X[positive],
            y_index[positive],
            sample_weight[positive],
        )
    X = np.ascontiguousarray(X) + 0.0  # -0.0 becomes 0.0: equal rows, equal bytes
    # One opaque item per row: sorting these compares bytes (memcmp), several
    # times faster than np.unique(X, axis=0) on wide X (0.5 s against 3 s on
    # 60,000 x 784).
    row_bytes = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, row_rank = np.unique(row_bytes, return_inverse=True)
    # Copies of a row sorted by weight too: their sum is then rounded alike
    # in any row order (0.1 + 0.2 + 0.3 is not 0.3 + 0.2 + 0.1 in floats).
    order = np.lexsort((sample_weight, y_index, row_rank))
    row_rank, y_sorted = row_rank[order], y_index[order]
    starts = np.flatnonzero(
        np.concatenate([[True], (np.diff(row_rank) != 0) | (np.diff(y_sorted) != 0)])
    )
    weight = np.add.reduceat(sample_weight[order], starts)
    first = order[starts]
    return X[first], y_index[first], weight


def check_feature_scale(X, sample_weight, names=None):
    """Refuse features too large for float64 curvature; warn about odd scales.

    Every curvature sums ``s_n x_nj^2`` (times bounded factors) over the rows:
    where that overflows, the Hessian of any network, with or without hidden
    layers, is not finite and no solver can repair it. One check for every
    architecture, so that all refuse the same data with the same message.
    A feature whose root mean square (weighted as the fit weighs the rows)
    lies outside ``FEATURE_SCALE_RANGE`` draws a
    :class:`~sklaplace.exceptions.FeatureScaleWarning`, which names it by
    ``names`` (a DataFrame's columns) where given, else by its position.
    """
    # A row of weight 0 is as if dropped (the fit merges it away), however
    # large its features: 0 * inf would otherwise count as an overflow.
    counted = sample_weight > 0
    if not np.all(counted):  # (a copy of X only where rows are dropped)
        X, sample_weight = X[counted], sample_weight[counted]
    second_moments = curvature_second_moments(np, X, sample_weight)
    with np.errstate(over="ignore"):
        total = np.sum(sample_weight)  # an overflowing total: the caller refuses it
    rms = np.sqrt(second_moments / total)
    # A feature below ~1e-154 has squares that underflow (to subnormals or
    # 0): its root mean square, from it scaled by its largest magnitude.
    underflowed = np.flatnonzero(rms < np.sqrt(np.finfo(np.float64).tiny))
    if underflowed.size:
        columns = X[:, underflowed]
        peak = np.max(np.abs(columns), axis=0, initial=0.0)
        unit = columns / np.where(peak > 0, peak, 1.0)
        rms[underflowed] = peak * np.sqrt(
            curvature_second_moments(np, unit, sample_weight) / total
        )
    low, high = FEATURE_SCALE_RANGE
    odd = np.flatnonzero((rms > high) | ((rms < low) & (rms > 0)))
    if odd.size:
        shown = ", ".join(
            f"{_beyond(rms[j], high if rms[j] > high else low)} "
            + (f"(feature {j})" if names is None else f"(feature '{names[j]}')")
            for j in odd[:3]
        )
        more = f" and {odd.size - 3} more" if odd.size > 3 else ""
        # Say what each direction does: tiny features had read as "large".
        effects = []
        if np.any(rms[odd] > high):
            effects.append(
                "a large feature is in effect under a far weaker prior and "
                "saturates or swamps the first layer"
            )
        if np.any(rms[odd] < low):
            effects.append(
                "a tiny one is in effect under a far stronger prior, which can "
                "flatten the fit to the base rate"
            )
        warn(
            f"{odd.size} feature(s) have a root mean square outside "
            f"[{low:g}, {high:g}]: {shown}{more}. The prior treats every weight "
            f"alike: {'; '.join(effects)}. Standardise the features, e.g. "
            "make_pipeline(StandardScaler(), LaplaceMLPClassifier()).",
            FeatureScaleWarning,
        )


def curvature_second_moments(xp, X, sample_weight):
    """Return ``sum_n s_n X[n, j]**2`` per feature; refuse it where it overflows.

    A factor of every curvature (the estimator's and the functional API's
    alike): where it is not finite in ``X``'s dtype, no Hessian is. ``X`` and
    ``sample_weight`` in namespace ``xp``, rows of weight 0 already dropped
    (``0 * inf`` would count as an overflow).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        second_moments = xp.sum(sample_weight[:, None] * (X * X), axis=0)
    finite = to_numpy(xp.isfinite(second_moments))
    if not np.all(finite):
        host = to_numpy(X)
        _refuse_non_finite_inputs(host)
        bad = np.flatnonzero(~finite)
        with np.errstate(over="ignore"):
            features_overflow = not np.all(np.isfinite(np.sum(host[:, bad] ** 2, 0)))
        advice = (
            "Standardise the features (e.g. sklearn.preprocessing.StandardScaler)"
            if features_overflow
            else "The features alone do not overflow: rescale sample_weight "
            f"(largest {float(xp.max(sample_weight)):.3g})"
        )
        raise ValueError(
            "The curvature of the log posterior is not finite (it overflows): "
            f"sum_n sample_weight_n * X[n, j]**2 exceeds {host.dtype} for "
            f"{bad.size} feature(s) (columns {bad[:5].tolist()}"
            f"{', ...' if bad.size > 5 else ''}; largest |X| = "
            f"{np.max(np.abs(host)):.3g}). {advice}."
        )
    return second_moments


def _beyond(value, bound):
    """``value`` in four digits or more, as many as it takes not to read as ``bound``.

    (100.75 in two had read as "1e+02", 100.04 in four as "100": inside the
    range the message names.) Seventeen significant digits tell any two
    doubles apart.
    """
    for digits in range(4, 17):
        text = f"{value:.{digits}g}"
        if float(text) != bound:
            return text
    return f"{value:.17g}"


def _refuse_non_finite_inputs(X):
    """Name NaN or infinity in ``X``, which scikit-learn checks unless told not to.

    Under ``sklearn.set_config(assume_finite=True)`` they reach the network,
    and were reported as an overflow of finite features.
    """
    rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
    if rows.size:
        raise ValueError(
            f"X contains NaN or infinity in {rows.size} row(s) (rows "
            f"{rows[:5].tolist()}{', ...' if rows.size > 5 else ''}); "
            "scikit-learn's assume_finite=True skipped its own check."
        )


def check_finite_rows(xp, what, *arrays, inputs=None):
    """Raise ``ValueError`` naming the rows where any of ``arrays`` is not finite.

    With validated (finite) inputs this happens only when the network's
    outputs overflow float64, i.e. for inputs far outside the training range.
    ``inputs``, the host ``X`` the arrays come from, is checked first in
    that case, for NaN and infinity left in it by ``assume_finite=True``.
    """
    bad = None
    for a in arrays:
        rows = ~xp.all(xp.isfinite(xp.reshape(a, (a.shape[0], -1))), axis=1)
        bad = rows if bad is None else bad | rows
    if bool(xp.any(bad)):
        if inputs is not None:
            _refuse_non_finite_inputs(inputs)
        index = np.flatnonzero(to_numpy(bad))
        raise ValueError(
            f"The {what} overflowed (are not finite) for {index.size} of "
            f"{bad.shape[0]} samples (rows {index[:5].tolist()}"
            f"{', ...' if index.size > 5 else ''}): their features are too large "
            "in magnitude for float64 (scale X as it was scaled for fit), or the "
            "posterior's variances overflow (a flat prior, alpha=0, on data the "
            "network separates: use alpha > 0)."
        )
