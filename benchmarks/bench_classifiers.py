"""Predictive quality of LaplaceMLPClassifier beside MLPClassifier and LR.

Usage: ``python benchmarks/bench_classifiers.py [--hidden 16] [--alpha 1.0]
[--solver newton]``

Breast cancer, iris, wine and digits; features standardised inside each
fold; stratified 5-fold CV. Reports mean test accuracy, log loss, Brier
score (multiclass form), expected calibration error (15 bins) and fit time.
The Laplace model is fitted once per fold; its three predictive
approximations (probit, mc, map) are read off that one fit. MLPClassifier has
the same architecture and ``alpha`` (its loss is ours divided by n_samples
when biases are unpenalised) and the L-BFGS solver.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace.metrics import expected_calibration_error, multiclass_brier_score

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "iris": load_iris,
    "wine": load_wine,
    "digits": load_digits,
}


def scores(y, proba, classes):
    return {
        "accuracy": accuracy_score(y, classes[np.argmax(proba, axis=1)]),
        "log_loss": log_loss(y, proba, labels=classes),
        "brier": multiclass_brier_score(y, proba, classes=classes),
        "ece": expected_calibration_error(y, proba, classes=classes),
    }


def evaluate(name, hidden, alpha, solver):
    X, y = DATASETS[name](return_X_y=True)
    models = {
        # The classical posterior (prior scale 1) that the report's table
        # measured; bench_uncertainty.py measures the default.
        "laplace": LaplaceMLPClassifier(
            hidden,
            alpha=alpha,
            solver=solver,
            random_state=0,
            prior_precision_scale=1.0,
        ),
        "mlp": MLPClassifier(
            hidden,
            activation="tanh",
            alpha=alpha,
            solver="lbfgs",
            max_iter=2000,
            random_state=0,
        ),
        "logistic": LogisticRegression(max_iter=5000),
    }
    rows = {}
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
    for train, test in folds:
        scaler = StandardScaler().fit(X[train])
        X_train, X_test = scaler.transform(X[train]), scaler.transform(X[test])
        for label, model in models.items():
            model = clone(model)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X_train, y[train])
            seconds = time.perf_counter() - start
            links = ["probit", "mc", "map"] if label == "laplace" else [None]
            for link in links:
                if link is not None:
                    model.set_params(link_approx=link)
                key = f"laplace {link}" if link else label
                row = scores(y[test], model.predict_proba(X_test), model.classes_)
                row["fit_s"] = seconds
                rows.setdefault(key, []).append(row)
    return {
        key: {m: float(np.mean([r[m] for r in folds_])) for m in folds_[0]}
        for key, folds_ in rows.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=16, help="hidden units")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight decay")
    parser.add_argument(
        "--solver", default="newton", help="LaplaceMLPClassifier's MAP solver"
    )
    args = parser.parse_args()
    hidden = (args.hidden,)
    print(
        f"hidden={hidden}, tanh, alpha={args.alpha}, solver={args.solver}; "
        "stratified 5-fold CV means\n"
    )
    print("| dataset | model | accuracy | log loss | Brier | ECE | fit s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in DATASETS:
        for key, r in evaluate(name, hidden, args.alpha, args.solver).items():
            print(
                f"| {name} | {key} | {r['accuracy']:.4f} | {r['log_loss']:.4f} | "
                f"{r['brier']:.4f} | {r['ece']:.4f} | {r['fit_s']:.3f} |"
            )


if __name__ == "__main__":
    main()
