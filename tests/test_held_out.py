"""Held-out rows and folds (:mod:`sklaplace._held_out`): stable under round-off."""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace._held_out import content_folds, validation_rows


def test_folds_ignore_round_off():
    """Data equal to round-off (one ulp, a float32 copy) keep every row's fold."""
    rng = np.random.RandomState(0)
    X, y = rng.standard_normal((400, 5)), rng.randint(0, 3, 400)
    folds = content_folds(X, y, 5, seed=3)
    for same in (np.nextafter(X, np.inf), X.astype(np.float32), X * (1 + 1e-12)):
        np.testing.assert_array_equal(content_folds(same, y, 5, seed=3), folds)
        np.testing.assert_array_equal(
            validation_rows(same, y, 0.2, seed=3), validation_rows(X, y, 0.2, seed=3)
        )
    # Not blind to the data: a change at float32's resolution moves rows.
    assert np.sum(content_folds(X * (1 + 1e-6), y, 5, seed=3) != folds) > 200


def test_round_off_in_X_does_not_change_the_model():
    """Iris's held-out scale choice is stable under 1e-13 relative noise in X.

    Before the folds ignored round-off, this noise reshuffled them and the
    chosen scale by up to 30x (probabilities by 0.04).
    """
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    noisy = X * (1 + 1e-13 * np.random.RandomState(0).standard_normal(X.shape))
    params = dict(
        hidden_layer_sizes=(8,), solver="lbfgs", tol=1e-9, max_iter=5000, random_state=0
    )
    a = LaplaceMLPClassifier(**params).fit(X, y)
    b = LaplaceMLPClassifier(**params).fit(noisy, y)
    assert a.prior_precision_scale_ == b.prior_precision_scale_
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-6)
