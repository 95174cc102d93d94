"""alpha="validation" (the default beyond the cheap-refit rule) against alpha=1.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_alpha_walk.py
    python benchmarks/bench_alpha_walk.py --datasets digits --splits 1

Every data set here sends ``LaplaceMLPClassifier()`` (hidden (100,)) beyond
the cheap-refit rule of ``sklaplace._memory.refits_are_cheap`` (one gradient
over 5e6 multiply-adds), where ``alpha="auto"`` was ``1.0`` until session 15
and is now the validation walk of ``sklaplace._alpha_walk`` (two to four
L-BFGS fits). Compared: the default, the default with ``alpha=1.0`` (the
earlier default), ``MLPClassifier()`` (adam, ReLU) and
``MLPClassifier(tanh, lbfgs, alpha=1)``, in a ``StandardScaler`` pipeline,
on the stratified 70/30 splits of ``bench_default_sweep.py`` (its ``run``),
printing mean test log loss, accuracy and fit seconds.
"""

import argparse
import sys
import time
from pathlib import Path

from sklearn.datasets import make_classification, make_hastie_10_2, make_moons

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_default_sweep as sweep  # noqa: E402

from sklaplace import LaplaceMLPClassifier  # noqa: E402

DATASETS = {
    "digits": sweep.DATASETS["digits"],
    "20_classes": sweep.DATASETS["20_classes"],
    "classification_20k": lambda: make_classification(
        20000, 20, n_informative=5, n_classes=3, random_state=1
    ),
    "hastie_12k": lambda: make_hastie_10_2(12000, random_state=0),
    "moons_20k": lambda: make_moons(20000, noise=0.3, random_state=0),
}

MODELS = {
    "LaplaceMLPClassifier() (walk)": lambda: LaplaceMLPClassifier(random_state=0),
    "LaplaceMLPClassifier(alpha=1.0)": lambda: LaplaceMLPClassifier(
        alpha=1.0, random_state=0
    ),
    "MLPClassifier()": sweep.MODELS["MLPClassifier()"],
    "MLPClassifier(tanh, lbfgs, alpha=1)": sweep.MODELS[
        "MLPClassifier(tanh, lbfgs, alpha=1)"
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS)
    )
    parser.add_argument("--splits", type=int, default=3)
    args = parser.parse_args()
    sweep.DATASETS.update(DATASETS)
    sweep.MODELS.clear()
    sweep.MODELS.update(MODELS)
    print(f"stratified 70/30 splits: {args.splits}; means over splits\n")
    print(
        "| data set | model | test NLL | accuracy | fit s |\n|---|---|---:|---:|---:|"
    )
    start = time.perf_counter()
    for name in args.datasets:
        sweep.run(name, args.splits)
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
