"""The train/test splits the benchmark scripts share."""

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
