"""How far a fit moves when round-off changes: a 1e-15 relative change of X.

Usage: ``python benchmarks/bench_rounding.py [--models default mlp_lbfgs]
[--seeds 1 2 3 4 5 6] [--repeats 3] [--moons]``

Another BLAS, thread count or device (CuPy) rounds differently; this
stands in for them on one machine. For each of twelve small problems
(``make_classification(300, 8, n_informative=7, n_redundant=0)``, two and
three classes, ``random_state`` from ``--seeds``), each model is fitted on
X and on ``--repeats`` copies of X with every entry multiplied by
``1 + 1e-15 z`` (z standard normal); printed: the largest change of a
training row's probability per copy, and how many copies moved by more than
1e-3. Models: the default (hidden (6,)), the default with a fixed
``alpha=1``, and ``MLPClassifier(solver="lbfgs")`` with the same network and
prior (its ``alpha`` is ours over the row count).

``--moons`` fits the default estimator itself (hidden (100,)) with
``random_state`` 0, 1, 2 on ``make_moons(200, noise=0.3)`` drawn with each
of ``--seeds`` (session 50's probe: there a held-out fold's refit had
followed the round-off into another basin).
"""

import argparse
import warnings
from functools import partial

import numpy as np
from sklearn.datasets import make_classification, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sklaplace import LaplaceMLPClassifier

N_ROWS, HIDDEN = 300, (6,)
MODELS = {
    "default": lambda: LaplaceMLPClassifier(HIDDEN, random_state=0),
    "fixed_alpha": lambda: LaplaceMLPClassifier(HIDDEN, alpha=1.0, random_state=0),
    "mlp_lbfgs": lambda: MLPClassifier(
        HIDDEN,
        solver="lbfgs",
        alpha=1.0 / N_ROWS,
        max_iter=5000,
        tol=1e-10,
        random_state=0,
    ),
}
MOVED = 1e-3
MOONS_INITIAL_WEIGHTS = (0, 1, 2)


def largest_moves(make_model, X, y, repeats):
    """Largest change of a probability on X per perturbed copy of X."""
    rng = np.random.RandomState(0)
    proba = make_model().fit(X, y).predict_proba(X)
    moves = []
    for _ in range(repeats):
        X_rounded = X * (1 + 1e-15 * rng.standard_normal(X.shape))
        again = make_model().fit(X_rounded, y).predict_proba(X)
        moves.append(float(np.max(np.abs(again - proba))))
    return moves


def moons(seeds, repeats):
    """The default estimator on 200 rows of two moons, per initial weights."""
    print("| moons draw | random_state | largest moves | moved > 1e-3 |")
    print("|---:|---:|---|---:|")
    moved = 0
    for seed in seeds:
        X, y = make_moons(200, noise=0.3, random_state=seed)
        for state in MOONS_INITIAL_WEIGHTS:
            moves = largest_moves(
                partial(LaplaceMLPClassifier, random_state=state), X, y, repeats
            )
            these = sum(m > MOVED for m in moves)
            moved += these
            shown = ", ".join(f"{m:.1e}" for m in moves)
            print(f"| {seed} | {state} | {shown} | {these} |")
    n_fits = len(seeds) * len(MOONS_INITIAL_WEIGHTS) * repeats
    print(
        f"default on moons: {moved} of {n_fits} perturbed fits moved by more "
        f"than {MOVED:g}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moons", action="store_true", help="the default on moons")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.moons:
        moons(args.seeds, args.repeats)
        return
    print("| model | classes | seed | largest moves | moved > 1e-3 |")
    print("|---|---:|---:|---|---:|")
    totals = dict.fromkeys(args.models, 0)
    for name in args.models:
        for n_classes in (2, 3):
            for seed in args.seeds:
                X, y = make_classification(
                    N_ROWS,
                    8,
                    n_informative=7,
                    n_redundant=0,
                    n_classes=n_classes,
                    random_state=seed,
                )
                moves = largest_moves(MODELS[name], X, y, args.repeats)
                moved = sum(m > MOVED for m in moves)
                totals[name] += moved
                shown = ", ".join(f"{m:.1e}" for m in moves)
                print(f"| {name} | {n_classes} | {seed} | {shown} | {moved} |")
    n_fits = 2 * len(args.seeds) * args.repeats
    for name, moved in totals.items():
        print(f"{name}: {moved} of {n_fits} perturbed fits moved by more than 1e-3")


if __name__ == "__main__":
    main()
