"""The train/test splits and data sets the benchmark scripts share."""

import time
import warnings

from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def standardised_split(X, y, seed):
    """Stratified 70/30 split, standardised with the training part's scaler.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
    """
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def image_scale_problem():
    """Issue 13's 784-feature problem: 20,000 train and 5,000 test rows.

    ``make_classification(n_samples=25000, n_features=784, n_informative=60,
    n_redundant=100, n_classes=10, n_clusters_per_class=2, random_state=0)``,
    standardised with the training rows' scaler.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
    """
    X, y = make_classification(
        n_samples=25000,
        n_features=784,
        n_informative=60,
        n_redundant=100,
        n_classes=10,
        n_clusters_per_class=2,
        random_state=0,
    )
    scaler = StandardScaler().fit(X[:20000])
    return (
        scaler.transform(X[:20000]),
        scaler.transform(X[20000:]),
        y[:20000],
        y[20000:],
    )


def timed_fit(model, X, y):
    """Fit ``model`` (its ConvergenceWarning silenced); return the wall seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return time.perf_counter() - start
