"""Test log loss and accuracy against the fraction of weights pruned.

Usage: ``python benchmarks/bench_pruning.py [--hidden 16] [--splits 10]``

Breast cancer and digits, standardised, ``--splits`` stratified 70/30 splits
(seeds 0, 1, ...; the network's ``random_state`` is the split's seed). Per
split: one LaplaceMLPClassifier fit, then ``sklaplace.prune`` by magnitude,
OBD and OBS at increasing fractions, scored twice: as pruned (OBS corrects
the kept weights, the others leave them) and after re-training the kept
weights (a ``warm_start=True`` refit, pruned weights held at zero).
Predictions use the MAP plug-in (``link_approx="map"``) so the comparison is
about the weights. Prints the mean curves over splits, then the paired
differences at 50% (mean, standard error, splits where the first is no
worse) and the re-training cost.
"""

import argparse
import time
import warnings

import numpy as np
from _splits import standardised_split
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss

from sklaplace import LaplaceMLPClassifier, prune

FRACTIONS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METHODS = ("magnitude", "obd", "obs")
STAGES = ("pruned", "retrained")


def one_split(loader, hidden, seed):
    """Scores of every (stage, method, fraction) on one split."""
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
    clf = LaplaceMLPClassifier(
        hidden, "tanh", alpha=1.0, link_approx="map", random_state=seed
    )
    clf.fit(X_train, y_train)

    def score(model):
        return (
            log_loss(y_test, model.predict_proba(X_test), labels=clf.classes_),
            accuracy_score(y_test, model.predict(X_test)),
        )

    scores, cost = {}, {}
    for method in METHODS:
        for fraction in FRACTIONS:
            pruned = prune(clf, fraction, method=method)
            scores["pruned", method, fraction] = score(pruned)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                pruned.set_params(warm_start=True).fit(X_train, y_train)
            cost[method, fraction] = (time.perf_counter() - start, pruned.n_iter_)
            scores["retrained", method, fraction] = score(pruned)
    return scores, cost


def paired(losses, first, second):
    """Mean and standard error of ``first - second``, and the splits where <= 0."""
    difference = np.array(losses[first]) - np.array(losses[second])
    stderr = difference.std(ddof=1) / np.sqrt(len(difference))
    return difference.mean(), stderr, int(np.sum(difference <= 0))


def report(name, loader, hidden, seeds):
    runs = [one_split(loader, hidden, seed) for seed in seeds]
    n = len(runs)
    print(f"\n{name}, hidden={hidden}, {n} splits: mean test log loss / accuracy\n")
    print("| stage | fraction pruned | " + " | ".join(METHODS) + " |")
    print("|---|---:|" + "---:|" * len(METHODS))
    for stage in STAGES:
        for fraction in FRACTIONS:
            cells = []
            for method in METHODS:
                values = np.array([s[stage, method, fraction] for s, _ in runs])
                cells.append(f"{values[:, 0].mean():.4f} / {values[:, 1].mean():.3f}")
            print(f"| {stage} | {fraction:.1f} | " + " | ".join(cells) + " |")
    print(f"\n{name}: paired test log loss differences at 50% over {n} splits\n")
    print("| stage | pair | mean difference | standard error | splits no worse |")
    print("|---|---|---:|---:|---:|")
    for stage in STAGES:
        losses = {m: [s[stage, m, 0.5][0] for s, _ in runs] for m in METHODS}
        for first, second in (("obs", "obd"), ("obd", "magnitude")):
            mean, stderr, wins = paired(losses, first, second)
            print(
                f"| {stage} | {first} - {second} | {mean:+.4f} | {stderr:.4f} | "
                f"{wins}/{n} |"
            )
    print(f"\n{name}: re-training at 50% (warm start), mean over splits\n")
    print("| method | Newton iterations | seconds |")
    print("|---|---:|---:|")
    for method in METHODS:
        seconds, iterations = np.mean([c[method, 0.5] for _, c in runs], axis=0)
        print(f"| {method} | {iterations:.1f} | {seconds:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    for name, loader in (
        ("breast_cancer", load_breast_cancer),
        ("digits", load_digits),
    ):
        report(name, loader, (args.hidden,), range(args.splits))


if __name__ == "__main__":
    main()
