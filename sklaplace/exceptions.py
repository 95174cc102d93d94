"""Warnings and errors raised by sklaplace."""

__all__ = [
    "BaseRateWarning",
    "FeatureScaleWarning",
    "LaplaceApproximationWarning",
    "MemoryLimitError",
    "SampleWeightScaleWarning",
    "UnweightedClassWarning",
]


class LaplaceApproximationWarning(UserWarning):
    """The Laplace approximation could not be used as asked; a fallback was taken.

    Raised, for example, when the exact Hessian is not positive definite at
    the MAP (the GGN is used instead) or when the posterior precision is
    numerically singular (a small jitter is added). The fitted attributes
    ``curvature_`` and ``posterior_jitter_`` record what was done.

    Examples
    --------
    >>> import warnings
    >>> from sklaplace.exceptions import LaplaceApproximationWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("fell back to the GGN", LaplaceApproximationWarning)
    >>> caught[0].category.__name__
    'LaplaceApproximationWarning'
    """


class FeatureScaleWarning(UserWarning):
    """Some features lie on scales far from 1: standardise them.

    The Gaussian prior treats every weight alike, so a feature of root mean
    square 1e3 or 1e-3 is, in effect, under a prior 1e6 times weaker or
    stronger than the others, and large inputs saturate the first layer's
    bounded units or swamp its unbounded ones (and slow the fit).
    Raised by ``fit`` when a feature's root mean square is above 100 or (for
    a feature that is not all zero) below 1e-3; the fit goes on.
    ``make_pipeline(StandardScaler(), LaplaceMLPClassifier())`` avoids it.

    Examples
    --------
    >>> from sklaplace.exceptions import FeatureScaleWarning
    >>> issubclass(FeatureScaleWarning, UserWarning)
    True
    """


class SampleWeightScaleWarning(UserWarning):
    """The sample weights average far below one row each.

    The likelihood counts a weight as a number of repetitions of its row, so
    weights normalised to sum to 1 (as ``AdaBoostClassifier`` passes them)
    are one row's worth of data in all, and the prior outweighs them: on
    wine, hidden (4,), weights of ``1 / n`` left a training accuracy of 0.40.
    Raised by ``fit`` when the weights of the rows that count (identical rows
    merged, as the fit sees them) average below 0.1; the fit goes on.
    Multiply relative weights by a common factor (e.g. ``w * n / w.sum()``)
    or pass a smaller ``alpha``.

    Examples
    --------
    >>> from sklaplace.exceptions import SampleWeightScaleWarning
    >>> issubclass(SampleWeightScaleWarning, UserWarning)
    True
    """


class UnweightedClassWarning(UserWarning):
    """A class of ``y`` has rows, but all of zero ``sample_weight``.

    The class stays in ``classes_`` (as in scikit-learn's estimators), but
    no row of its own counts: its probabilities come from the prior and the
    other classes' rows alone (small near those rows, not zero; elsewhere
    what the network extrapolates). Raised by ``fit``, which goes on (one
    class alone may keep weight); drop those rows to leave the class out.

    Examples
    --------
    >>> from sklaplace.exceptions import UnweightedClassWarning
    >>> issubclass(UnweightedClassWarning, UserWarning)
    True
    """


class BaseRateWarning(UserWarning):
    """The fitted network ignores its input: it predicts the class frequencies.

    Its logits are the same on every training row (to 1e-6), so every input
    gets the same probabilities: the training rows' class frequencies where
    the fit converged. The prior (``alpha``)
    outweighed what the data show to this network: right where the labels
    do not depend on the features, but a deep logistic network on wine
    collapsed so (test log loss 1.09, where a logistic regression reaches
    0.04). Raised by ``fit``, which keeps the fit; a smaller ``alpha``, fewer
    layers or another activation may find the signal. Not raised where the
    weights leave one class alone weighted: ignoring the input is then right.

    Examples
    --------
    >>> from sklaplace.exceptions import BaseRateWarning
    >>> issubclass(BaseRateWarning, UserWarning)
    True
    """


class MemoryLimitError(MemoryError):
    """An array would exceed sklaplace's memory limit; nothing was allocated.

    Raised *before* allocating an ``n_params x n_params`` matrix (the full
    GGN or exact Hessian, Newton's Hessian, the full posterior) or a
    per-row block larger than ``sklaplace._memory.DENSE_MEMORY_LIMIT``
    bytes, and by ``fit`` before any work when all the ``n_params x
    n_params`` matrices the fit would hold at once exceed
    ``sklaplace._memory.FIT_MEMORY_LIMIT``, instead of a ``MemoryError``
    from NumPy or swapping. It is a
    :class:`MemoryError`, so code that handles NumPy's allocation failures
    handles it too. The message names the size and what to change.

    Examples
    --------
    >>> from sklaplace.exceptions import MemoryLimitError
    >>> issubclass(MemoryLimitError, MemoryError)
    True
    """
