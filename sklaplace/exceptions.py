"""Warnings raised by sklaplace when an approximation is degraded."""

__all__ = ["LaplaceApproximationWarning"]


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
