"""The default estimator on data sets no issue names, against the usual picks.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_default_sweep.py
    python benchmarks/bench_default_sweep.py --datasets iris moons --splits 5
    python benchmarks/bench_default_sweep.py --datasets wine --no-scaler
    python benchmarks/bench_default_sweep.py --activations tanh relu elu \
        --datasets iris hastie quantiles blobs_noisy flip_y tiny
    python benchmarks/bench_default_sweep.py --splits 8 --plug-in --datasets \
        small_60 small_80 small_100 small_moons small_circles small_blobs

``LaplaceMLPClassifier()`` with every default (hidden (100,), all "auto"
settings) in a ``StandardScaler`` pipeline, against ``MLPClassifier()``
(adam, ReLU), ``MLPClassifier(activation="tanh", solver="lbfgs",
alpha=1.0)`` and ``LogisticRegression``, each with ``max_iter`` raised so
that it converges. Stratified 70/30 splits (``random_state`` 0, 1, ...);
mean test log loss, accuracy and fit seconds per model. The data sets span
what the default's size rules (``sklaplace._memory``) send to each regime:
small (iris, moons, circles, imbalanced), Kronecker-factored with tuning
refits (wine, breast cancer), and no refits (digits, 20 classes); one_hot
is categorical data (six features of five levels, one-hot encoded).
``--activations`` replaces the four models by the default with each hidden
activation given. Five more data sets (``hastie``, ``quantiles``,
``blobs_noisy``, ``flip_y``, ``tiny``; run by name) were added in session 10
to check the activation measurements on data they were not chosen on; six
``small_*`` sets (60-100 rows) in session 20, for the held-out choice of the
posterior's scale where its folds hold 8-14 rows; ``noisy_xor`` and
``sine`` (run by name) in session 29, where the evidence keeps a fit that
has not found the boundary; ``checkerboard`` and ``parity`` (run by name)
in session 30, where the run from alpha 0.1 reaches another basin (the
first gains from it, the second loses), and ``wave`` (one feature, 80
training rows), where it finds the boundary the evidence's fit misses;
``noisy_logistic`` (run by name) in session 40, just under the cheap-refit
bound, where the default's refits cost the most; Breiman's ``twonorm``,
``threenorm`` and ``ringnorm`` and ``redundant_100`` (100 features, 20
redundant; run by name) in session 59; ``heavy_tails``, ``binary_interaction``,
``xor_10d``, ``30_classes`` and ``wide_400`` (400 features, 149 training
rows; run by name) in session 70.
``--tuning-frontier`` adds the default with each cheaper way of choosing
``alpha`` and the posterior's scale (``TUNING_FRONTIER``).
``--calibrated`` adds ``CalibratedClassifierCV(MLPClassifier())``.
``--plug-in`` adds the default's own MAP plug-in (``link_approx="map"``).
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_blobs,
    make_circles,
    make_classification,
    make_gaussian_quantiles,
    make_hastie_10_2,
    make_moons,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _splits import timed_fit  # noqa: E402

from sklaplace import LaplaceMLPClassifier  # noqa: E402


def one_hot_categories():
    """Six categorical features of five levels, one-hot (30 binary columns).

    1,500 rows; the log-odds are sums of indicator effects and one
    interaction, so the classes overlap (Bayes log loss well above 0).
    """
    rng = np.random.RandomState(0)
    cats = rng.randint(0, 5, size=(1500, 6))
    logit = (
        2.0 * (cats[:, 0] == 1)
        - 1.5 * (cats[:, 1] == 3)
        + 1.0 * (cats[:, 2] >= 3)
        + 2.5 * ((cats[:, 3] == 0) & (cats[:, 4] == 0))
        - 1.0
    )
    y = (rng.uniform(size=1500) < 1 / (1 + np.exp(-logit))).astype(int)
    return OneHotEncoder(sparse_output=False).fit_transform(cats), y


DATASETS = {
    "iris": lambda: load_iris(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
    "moons": lambda: make_moons(1000, noise=0.3, random_state=0),
    "circles": lambda: make_circles(1000, noise=0.2, factor=0.5, random_state=0),
    "imbalanced": lambda: make_classification(
        2000, 10, n_informative=4, weights=[0.95, 0.05], random_state=0
    ),
    "20_classes": lambda: make_classification(
        3000,
        30,
        n_informative=15,
        n_classes=20,
        n_clusters_per_class=1,
        random_state=0,
    ),
    "one_hot": one_hot_categories,
}
DEFAULT_DATASETS = list(DATASETS)


def hastie():
    X, y = make_hastie_10_2(2000, random_state=0)
    return X, (y > 0).astype(int)


DATASETS.update(
    {
        "hastie": hastie,
        "quantiles": lambda: make_gaussian_quantiles(
            n_samples=1000, n_features=4, n_classes=3, random_state=0
        ),
        "blobs_noisy": lambda: make_blobs(
            1200, n_features=6, centers=5, cluster_std=3.0, random_state=0
        ),
        "flip_y": lambda: make_classification(
            1500, 15, n_informative=6, flip_y=0.3, random_state=1
        ),
        "tiny": lambda: make_classification(60, 5, n_informative=3, random_state=2),
    }
)

# Small data (session 20; run by name with ``--splits 8``): 42-70 training
# rows, where the held-out choice of the posterior's scale is noisiest.
DATASETS.update(
    {
        "small_60": DATASETS["tiny"],  # the same 60 rows, for the 8-split runs
        "small_80": lambda: make_classification(80, 8, n_informative=4, random_state=0),
        "small_100": lambda: make_classification(
            100, 10, n_informative=5, random_state=1
        ),
        "small_moons": lambda: make_moons(80, noise=0.25, random_state=0),
        "small_circles": lambda: make_circles(
            80, noise=0.1, factor=0.5, random_state=0
        ),
        "small_blobs": lambda: make_blobs(
            90, n_features=4, centers=3, cluster_std=2.5, random_state=0
        ),
    }
)


def _flipped(y, rate, rng):
    """``y`` with a fraction ``rate`` of its binary labels flipped (by ``rng``)."""
    flip = rng.rand(len(y)) < rate
    y[flip] = 1 - y[flip]
    return y


def noisy_xor():
    """400 rows, two Gaussian features, ``x1 x2 > 0``, 10% of labels flipped."""
    rng = np.random.RandomState(0)
    X = rng.randn(400, 2)
    return X, _flipped((X[:, 0] * X[:, 1] > 0).astype(int), 0.1, rng)


def sine():
    """500 rows uniform in a square, above ``1.5 sin(2 x1)``, 10% flipped."""
    rng = np.random.RandomState(4)
    X = rng.uniform(-3, 3, (500, 2))
    return X, _flipped((X[:, 1] > 1.5 * np.sin(2 * X[:, 0])).astype(int), 0.1, rng)


def checkerboard():
    """800 rows uniform in a 4 x 4 checkerboard of unit squares, 5% flipped."""
    rng = np.random.RandomState(2)
    X = rng.uniform(-2, 2, (800, 2))
    y = ((np.floor(X[:, 0]) + np.floor(X[:, 1])) % 2).astype(int)
    return X, _flipped(y, 0.05, rng)


def parity():
    """500 rows, five Gaussian features, ``x1 x2 x3 > 0``, 10% flipped."""
    rng = np.random.RandomState(1)
    X = rng.randn(500, 5)
    return X, _flipped((X[:, 0] * X[:, 1] * X[:, 2] > 0).astype(int), 0.1, rng)


def noisy_logistic():
    """5,714 rows, nine Gaussian features, labels drawn from a logistic model.

    ``P(y = 1) = sigmoid(0.8 x1 - 0.5 x2 + 0.4 x3 x4)``: Bernoulli noise, so no
    model does better than about 0.60 nats; 4,000 training rows put a
    (100,) network at 4.4e6 multiply-adds per gradient, just under the
    cheap-refit bound (``sklaplace._memory.AUTO_GRADIENT_WORK``).
    """
    rng = np.random.RandomState(0)
    X = rng.randn(5714, 9)
    logit = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.4 * X[:, 2] * X[:, 3]
    return X, (rng.rand(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)


def wave():
    """115 rows of one Gaussian feature, ``sin(3 x) + 0.3 noise > 0``."""
    rng = np.random.RandomState(0)
    X = rng.randn(115, 1)
    return X, (np.sin(3 * X[:, 0]) + 0.3 * rng.randn(115) > 0).astype(int)


DATASETS.update(
    {
        "wave": wave,
        "noisy_xor": noisy_xor,
        "sine": sine,
        "checkerboard": checkerboard,
        "parity": parity,
        "noisy_logistic": noisy_logistic,
    }
)


def breiman(kind):
    """Breiman's (1996) ``twonorm``, ``threenorm`` or ``ringnorm``: 20 features.

    1,000 rows, half of each class. twonorm: ``N(a, I)`` against
    ``N(-a, I)``, ``a = 2 / sqrt(20)`` per feature; threenorm: an even
    mixture of ``N(a, I)`` and ``N(-a, I)`` against ``N((a, -a, a, ...), I)``;
    ringnorm: ``N(0, 4 I)`` against ``N(a, I)``, ``a = 1 / sqrt(20)``.
    """
    rng = np.random.RandomState(0)
    n, d = 1000, 20
    y = np.arange(n) % 2
    noise = rng.randn(n, d)
    a = np.full(d, 2 / np.sqrt(d))
    if kind == "twonorm":
        centre = np.where(y[:, None] == 0, a, -a)
    elif kind == "threenorm":
        alternating = a * (-1.0) ** np.arange(d)
        either = np.where(rng.rand(n, 1) < 0.5, a, -a)
        centre = np.where(y[:, None] == 0, either, alternating)
    elif kind == "ringnorm":
        noise = np.where(y[:, None] == 0, 2.0 * noise, noise)
        centre = np.where(y[:, None] == 0, 0.0, a / 2)
    else:
        raise ValueError(f"Unknown Breiman data set {kind!r}.")
    return centre + noise, y


# Session 59 (run by name): Breiman's three Gaussian sets and many
# redundant features, where "auto" is just past the cheap-refit bound.
DATASETS.update(
    {
        "twonorm": partial(breiman, "twonorm"),
        "threenorm": partial(breiman, "threenorm"),
        "ringnorm": partial(breiman, "ringnorm"),
        "redundant_100": lambda: make_classification(
            800, 100, n_informative=5, n_redundant=20, random_state=0
        ),
    }
)


def heavy_tails():
    """1,500 rows of ten Student-t features (1.5 degrees of freedom: no variance).

    ``tanh(x1) + tanh(x2) + 0.3 noise > 0``: the signal saturates, so the
    rows far out in the tails carry no more of it than those near the centre.
    """
    rng = np.random.RandomState(0)
    X = rng.standard_t(1.5, size=(1500, 10))
    signal = np.tanh(X[:, 0]) + np.tanh(X[:, 1]) + 0.3 * rng.randn(1500)
    return X, (signal > 0).astype(int)


def binary_interaction():
    """1,500 rows of 40 binary features (30% ones), labels from a logistic model.

    ``logit = 2 x1 - 2 x2 + 1.5 x3 - x4 + x5 + 3 x6 x7 - 1``: mostly linear,
    one interaction, 33 features without signal.
    """
    rng = np.random.RandomState(0)
    X = rng.binomial(1, 0.3, size=(1500, 40)).astype(float)
    logit = X[:, :5] @ np.array([2.0, -2.0, 1.5, -1.0, 1.0]) - 1.0
    logit += 3.0 * X[:, 5] * X[:, 6]
    return X, (rng.rand(1500) < 1 / (1 + np.exp(-logit))).astype(int)


def xor_10d():
    """2,000 rows of ten Gaussian features, label 1 where ``x1 x2 < 0``: XOR."""
    rng = np.random.RandomState(0)
    X = rng.randn(2000, 10)
    return X, ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)


# Session 70 (run by name): regimes no earlier set covered -- tails without
# a variance, binary features, a two-feature XOR among noise, 30 classes,
# and more features than training rows.
DATASETS.update(
    {
        "heavy_tails": heavy_tails,
        "binary_interaction": binary_interaction,
        "xor_10d": xor_10d,
        "30_classes": lambda: make_classification(
            3000,
            30,
            n_informative=15,
            n_classes=30,
            n_clusters_per_class=1,
            random_state=0,
        ),
        "wide_400": lambda: make_classification(
            214, 400, n_informative=10, random_state=0
        ),
    }
)

#: ``--tuning-frontier``: the default's cheaper ways to choose ``alpha`` and
#: the posterior's scale, each a setting a user can give.
TUNING_FRONTIER = {
    "alpha='validation', scale 'validation', lbfgs, tol 1e-4 (beyond the bound)": {
        "alpha": "validation",
        "prior_precision_scale": "validation",
        "solver": "lbfgs",
        "tol": 1e-4,
    },
    "alpha='validation', scale 'validation'": {
        "alpha": "validation",
        "prior_precision_scale": "validation",
    },
    "alpha='validation', scale 'cv'": {
        "alpha": "validation",
        "prior_precision_scale": "cv",
    },
    "scale 'loo'": {"prior_precision_scale": "loo"},
}

MODELS = {
    "LaplaceMLPClassifier()": lambda: LaplaceMLPClassifier(random_state=0),
    "MLPClassifier()": lambda: MLPClassifier(random_state=0, max_iter=500),
    "MLPClassifier(tanh, lbfgs, alpha=1)": lambda: MLPClassifier(
        activation="tanh", solver="lbfgs", alpha=1.0, random_state=0, max_iter=500
    ),
    "LogisticRegression": lambda: LogisticRegression(max_iter=2000),
}


def run(name, n_splits, scale=True):
    X, y = DATASETS[name]()
    scores = {model: [] for model in MODELS}
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.3)
    for seed in range(n_splits):
        splitter.random_state = seed
        train, test = next(splitter.split(X, y))
        for model, make in MODELS.items():
            steps = [StandardScaler(), make()] if scale else [make()]
            pipeline = make_pipeline(*steps)
            seconds = timed_fit(pipeline, X[train], y[train])
            proba = pipeline.predict_proba(X[test])
            predicted = pipeline.classes_[proba.argmax(axis=1)]
            scores[model].append(
                (
                    log_loss(y[test], proba, labels=pipeline.classes_),
                    accuracy_score(y[test], predicted),
                    seconds,
                )
            )
    for model, rows in scores.items():
        nll, accuracy, seconds = np.mean(rows, axis=0)
        print(
            f"| {name}{'' if scale else ' (raw)'} | {model} | {nll:.4f} "
            f"| {accuracy:.4f} | {seconds:.2f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--datasets", nargs="*", default=DEFAULT_DATASETS, choices=list(DATASETS)
    )
    parser.add_argument(
        "--activations",
        nargs="*",
        default=None,
        help="compare the default with these hidden activations instead",
    )
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument(
        "--plug-in",
        action="store_true",
        help="add the default's MAP plug-in (link_approx='map')",
    )
    parser.add_argument(
        "--calibrated",
        action="store_true",
        help="add CalibratedClassifierCV(MLPClassifier()) (sigmoid, 5 folds)",
    )
    parser.add_argument(
        "--tuning-frontier",
        action="store_true",
        help="add the default with each of TUNING_FRONTIER's settings",
    )
    parser.add_argument(
        "--no-scaler",
        action="store_true",
        help="fit on the raw features (what a FeatureScaleWarning costs)",
    )
    args = parser.parse_args()
    if args.activations:
        MODELS.clear()
        for activation in args.activations:
            MODELS[f"LaplaceMLPClassifier(activation={activation!r})"] = partial(
                LaplaceMLPClassifier, activation=activation, random_state=0
            )
    if args.plug_in:
        MODELS["LaplaceMLPClassifier(link_approx='map')"] = partial(
            LaplaceMLPClassifier, link_approx="map", random_state=0
        )
    if args.tuning_frontier:
        for label, settings in TUNING_FRONTIER.items():
            MODELS[f"LaplaceMLPClassifier({label})"] = partial(
                LaplaceMLPClassifier, random_state=0, **settings
            )
    if args.calibrated:
        MODELS["CalibratedClassifierCV(MLPClassifier())"] = lambda: (
            CalibratedClassifierCV(MLPClassifier(random_state=0, max_iter=500))
        )
    print(f"stratified 70/30 splits: {args.splits}; means over splits\n")
    print(
        "| data set | model | test NLL | accuracy | fit s |\n|---|---|---:|---:|---:|"
    )
    start = time.perf_counter()
    for name in args.datasets:
        run(name, args.splits, scale=not args.no_scaler)
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
