"""Test log loss and accuracy against the fraction of weights pruned.

Usage: ``python benchmarks/bench_pruning.py [--hidden 16]``

Breast cancer and digits, standardised, one stratified 70/30 split; one
LaplaceMLPClassifier fit per dataset, then ``sklaplace.prune`` by magnitude,
OBD and OBS at increasing fractions (no retraining; OBS corrects the kept
weights). Prints one Markdown table per dataset; predictions use the MAP
plug-in (``link_approx="map"``) so the comparison is about the weights.
"""

import argparse
import time

from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, prune

FRACTIONS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METHODS = ("magnitude", "obd", "obs")


def curves(loader, hidden):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    clf = LaplaceMLPClassifier(hidden, link_approx="map", random_state=0).fit(
        X_train, y_train
    )
    table = {}
    for method in METHODS:
        start = time.perf_counter()
        for fraction in FRACTIONS:
            pruned = prune(clf, fraction, method=method)
            proba = pruned.predict_proba(X_test)
            table[method, fraction] = (
                log_loss(y_test, proba, labels=clf.classes_),
                accuracy_score(y_test, pruned.predict(X_test)),
            )
        table[method, "seconds"] = time.perf_counter() - start
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=16)
    args = parser.parse_args()
    for name, loader in (
        ("breast_cancer", load_breast_cancer),
        ("digits", load_digits),
    ):
        table = curves(loader, (args.hidden,))
        print(f"\n{name}, hidden=({args.hidden},): test log loss / accuracy\n")
        print("| fraction pruned | " + " | ".join(METHODS) + " |")
        print("|---:|" + "---:|" * len(METHODS))
        for fraction in FRACTIONS:
            cells = [
                f"{table[m, fraction][0]:.4f} / {table[m, fraction][1]:.3f}"
                for m in METHODS
            ]
            print(f"| {fraction:.1f} | " + " | ".join(cells) + " |")
        print(
            "| seconds (all fractions) | "
            + " | ".join(f"{table[m, 'seconds']:.2f}" for m in METHODS)
            + " |"
        )


if __name__ == "__main__":
    main()
