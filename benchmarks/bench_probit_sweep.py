"""Probit and Monte Carlo predictive against the plug-in MAP, over alpha.

Usage: ``python benchmarks/bench_probit_sweep.py [--hidden 8] [--splits 5]``

Is the Laplace predictive's loss against the MAP a matter of tuning alpha?
For breast cancer, wine, iris and digits (standardised, ``--splits``
stratified 70/30 splits), a LaplaceMLPClassifier with no hidden layer
(Bayesian logistic regression, where the Laplace approximation is the
textbook one) and one with ``--hidden`` tanh units is fitted at each alpha of
a log-spaced sweep; the table gives the mean test log loss of the plug-in
MAP, the probit and the Monte Carlo predictive of the same fit.
"""

import argparse
import warnings

import numpy as np
from _splits import standardised_split
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.metrics import log_loss

from sklaplace import LaplaceMLPClassifier

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
    "digits": load_digits,
}
ALPHAS = np.logspace(-2, 2, 5)
LINKS = ("map", "probit", "mc")


def sweep(loader, hidden, seeds):
    """Mean test log loss per (alpha, link) over the splits."""
    X, y = loader(return_X_y=True)
    losses = {}
    for seed in seeds:
        X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
        for alpha in ALPHAS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = LaplaceMLPClassifier(
                    hidden, "tanh", alpha=alpha, random_state=seed
                )
                clf.fit(X_train, y_train)
            for link in LINKS:
                proba = clf.set_params(link_approx=link).predict_proba(X_test)
                losses.setdefault((alpha, link), []).append(log_loss(y_test, proba))
    return {key: float(np.mean(values)) for key, values in losses.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    print(
        f"mean test log loss over {args.splits} splits: MAP / probit / mc (same fit)\n"
    )
    print("| dataset | hidden | " + " | ".join(f"alpha={a:g}" for a in ALPHAS) + " |")
    print("|---|---|" + "---:|" * len(ALPHAS))
    for name, loader in DATASETS.items():
        for hidden in ((), (args.hidden,)):
            losses = sweep(loader, hidden, range(args.splits))
            cells = [
                " / ".join(f"{losses[alpha, link]:.3f}" for link in LINKS)
                for alpha in ALPHAS
            ]
            print(f"| {name} | {hidden} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
