"""Newton vs L-BFGS: iterations to shrink the gradient 1e8-fold.

Usage: ``python benchmarks/bench_solvers.py [--hidden 8]``

Standardised breast cancer, iris, wine and digits; tanh, alpha=1. Both
solvers start from the same Glorot initialisation and run to a scaled
gradient of 1e-12 (or their iteration limit); the table gives the first
iteration at which the scaled gradient is 1e-8 times its initial value, the
total iterations and the wall time.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "iris": load_iris,
    "wine": load_wine,
    "digits": load_digits,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=8)
    args = parser.parse_args()
    print(f"hidden=({args.hidden},), tanh, alpha=1, tol=1e-12\n")
    print(
        "| dataset | solver | iterations to 1e-8 x initial gradient | "
        "total iterations | seconds |"
    )
    print("|---|---|---:|---:|---:|")
    for name, loader in DATASETS.items():
        X, y = loader(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        for solver in ("newton", "lbfgs"):
            clf = LaplaceMLPClassifier(
                (args.hidden,), solver=solver, tol=1e-12, max_iter=5000, random_state=0
            )
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(X, y)
            seconds = time.perf_counter() - start
            history = np.asarray(clf.gradient_history_)
            reached = np.flatnonzero(history <= 1e-8 * history[0])
            first = str(reached[0]) if reached.size else "not reached"
            print(f"| {name} | {solver} | {first} | {clf.n_iter_} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
