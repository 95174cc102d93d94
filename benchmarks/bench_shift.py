"""Out-of-distribution separation under shifts issue 14's two tasks do not use.

Each task trains on some rows and asks whether the maximum predicted
probability ranks the test rows ("in") above shifted ones ("out"): AUROC
with in = positive. Tasks: a held-out class (wine and iris trained on
classes 0-1, out = class 2; digits trained on the even digits, out = the
odd ones); the test rows scaled by 3, 10 and 100 or plus Gaussian noise of
standard deviation 3 (breast cancer, wine, digits; standardised units);
digits with each test row's (standardised) pixels shuffled. Stratified 70/30 splits with
seeds ``0..splits-1``, standardised on the training rows.

Models: the default ``LaplaceMLPClassifier(random_state=0)``, its own
plug-in MAP (the same fit with ``link_approx="map"``), ``MLPClassifier``,
``LogisticRegression`` and, with at most 800 training rows, a
``GaussianProcessClassifier``. The last column is the default's
in-distribution test log loss and its MAP's.

Run: ``python benchmarks/bench_shift.py [--splits N] [--tasks WORD ...]``
(``--tasks`` keeps the tasks whose names contain one of the words).
"""

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF, ConstantKernel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.neural_network import MLPClassifier

from sklaplace import LaplaceMLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _splits import standardised_split, timed_fit  # noqa: E402

LOADERS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
    "digits": load_digits,
}
GPC_MAX_ROWS = 800
MODELS = ["default", "MAP", "MLP", "LR", "GPC"]


def _scaled(factor):
    return lambda X, rng: factor * X


def _noisy(X, rng):
    return X + rng.normal(scale=3.0, size=X.shape)


def _shuffled(X, rng):
    return np.array([row[rng.permutation(row.size)] for row in X])


# name: (data set, training classes (None: all), shift of the test rows or
# None: the out rows are the test rows of the other classes)
TASKS = {
    "wine, class 2 held out": ("wine", (0, 1), None),
    "iris, class 2 held out": ("iris", (0, 1), None),
    "digits, odd held out": ("digits", (0, 2, 4, 6, 8), None),
    "digits, pixels shuffled": ("digits", None, _shuffled),
}
for _name in ("breast_cancer", "wine", "digits"):
    for _factor in (3, 10, 100):
        TASKS[f"{_name}, x {_factor}"] = (_name, None, _scaled(_factor))
    TASKS[f"{_name}, noise sd 3"] = (_name, None, _noisy)


def models(n_rows):
    """The models of one split, by name (GPC only up to GPC_MAX_ROWS rows)."""
    fitted = {
        "default": LaplaceMLPClassifier(random_state=0),
        "MLP": MLPClassifier((100,), alpha=1.0, max_iter=2000, random_state=0),
        "LR": LogisticRegression(max_iter=5000),
    }
    if n_rows <= GPC_MAX_ROWS:
        kernel = ConstantKernel(1.0) * RBF(1.0)
        fitted["GPC"] = GaussianProcessClassifier(kernel, random_state=0)
    return fitted


def separation(model, X_in, X_out):
    """AUROC of the maximum probability, in = positive."""
    scores = np.r_[model.predict_proba(X_in).max(1), model.predict_proba(X_out).max(1)]
    return roc_auc_score(np.r_[np.ones(len(X_in)), np.zeros(len(X_out))], scores)


@functools.cache
def fitted_split(dataset, train_classes, seed):
    """The split's standardised rows and the models fitted on its training rows.

    Cached: the tasks that shift one data set's test rows share the fits.
    """
    X, y = LOADERS[dataset](return_X_y=True)
    X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
    if train_classes is not None:
        kept = np.isin(y_train, train_classes)
        X_train, y_train = X_train[kept], y_train[kept]
    fits = models(len(y_train))
    for model in fits.values():
        timed_fit(model, X_train, y_train)
    return X_test, y_test, fits


def run_task(dataset, train_classes, shift, seed):
    """AUROC per model, and the default's and its MAP's test log loss."""
    X_test, y_test, fits = fitted_split(dataset, train_classes, seed)
    if shift is None:
        held = np.isin(y_test, train_classes)
        X_in, y_in, X_out = X_test[held], y_test[held], X_test[~held]
    else:
        X_in, y_in = X_test, y_test
        X_out = shift(X_test, np.random.RandomState(1000 + seed))
    row = {
        name: separation(model, X_in, X_out)
        for name, model in fits.items()
        if name != "default"
    }
    default, losses = fits["default"], []
    try:
        for link, name in (("probit", "default"), ("map", "MAP")):
            default.set_params(link_approx=link)  # the same fit's predictive
            row[name] = separation(default, X_in, X_out)
            losses.append(log_loss(y_in, default.predict_proba(X_in)))
    finally:  # the cached fit serves the next task with its own predictive
        default.set_params(link_approx="probit")
    return row, losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--tasks", nargs="*", default=[])
    args = parser.parse_args()
    print("| task | " + " | ".join(MODELS) + " | test log loss (default / MAP) |")
    print("|---|" + "---:|" * len(MODELS) + "---|")
    for task, (dataset, train_classes, shift) in TASKS.items():
        if args.tasks and not any(word in task for word in args.tasks):
            continue
        runs = [run_task(dataset, train_classes, shift, s) for s in range(args.splits)]
        cells = []
        for name in MODELS:
            values = [row[name] for row, _ in runs if name in row]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        losses = np.mean([loss for _, loss in runs], axis=0)
        cells.append(f"{losses[0]:.4f} / {losses[1]:.4f}")
        print(f"| {task} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
