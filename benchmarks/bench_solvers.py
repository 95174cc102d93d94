"""MAP solvers: Newton-CG vs dense Newton vs L-BFGS, wall time and iterations.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_solvers.py
    python benchmarks/bench_solvers.py --parts small mid default
    python benchmarks/bench_solvers.py --parts big   # heavy: W = 79,510
    python benchmarks/bench_solvers.py --parts big --backend cupy   # on a GPU

Every fit is ``LaplaceMLPClassifier`` with tanh, ``alpha=1``, the same
Glorot initialisation (``random_state=0``), ``hessian_structure="diag"`` and
``prior_precision_scale=1.0`` (so that neither the posterior nor the held-out
refits of the default prior scale enter the time), except in ``default``.

Parts:

* ``small``: standardised breast cancer, iris, wine, hidden (8,), tol 1e-8:
  iterations until the scaled gradient is 1e-8 times its initial value,
  total iterations, Hessian-vector products and wall time.
* ``mid``: tol 1e-8 on ``make_classification(n_samples=5000, n_features=50,
  n_informative=20, random_state=0)`` standardised with hidden (64, 64) (W =
  7,489), and standardised digits with hidden (16,) (W = 1,210). L-BFGS gets
  ``max_iter=3000``; dense Newton is capped at ``--newton-cap`` iterations
  (11.5 s each at W = 7,489), so it reports its time per iteration.
* ``big``: the structures benchmark's problem (20,000 rows of 784 features,
  10 classes, hidden (100,), W = 79,510) to tol 1e-6, Newton-CG vs L-BFGS
  (dense Newton cannot hold the 79,510 x 79,510 matrix).
* ``default``: the DEFAULT estimator (``LaplaceMLPClassifier()``: hidden
  (100,), every default, posterior included) against ``MLPClassifier((100,),
  activation="tanh", solver="lbfgs", alpha=1.0)`` on the first 4,000 rows of
  ``make_classification(n_samples=5000, n_features=40, n_informative=20,
  n_classes=10, random_state=0)`` (W = 5,110), fit wall time.

``--backend cupy`` runs the small, mid and big parts' fits on a GPU.
``--repeat N`` reports the best of N wall times of each fit of the small and
mid parts (the fits are deterministic: only the time varies), which a
verdict between two solvers within 10% of each other needs (one run of the
digits fits measured Newton-CG 0.72 s against L-BFGS's 0.73 s, another
0.79 s against 0.74 s).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _splits import image_scale_problem, timed_fit  # noqa: E402

HEADER = (
    "| problem | solver | converged | iterations to 1e-8 x initial gradient | "
    "iterations | Hessian-vector products | final scaled gradient | seconds |\n"
    "|---|---|---|---:|---:|---:|---:|---:|"
)


def _standardised(X, y):
    return StandardScaler().fit_transform(X), y


def _fit(name, X, y, hidden, solver, tol, max_iter, backend="numpy", repeat=1):
    seconds = np.inf
    for _ in range(repeat):
        clf = LaplaceMLPClassifier(
            hidden,
            activation="tanh",
            alpha=1.0,
            solver=solver,
            tol=tol,
            max_iter=max_iter,
            hessian_structure="diag",
            prior_precision_scale=1.0,
            backend=backend,
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X, y)
        seconds = min(seconds, time.perf_counter() - start)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    history = np.asarray(clf.gradient_history_)
    reached = np.flatnonzero(history <= 1e-8 * history[0])
    first = str(reached[0]) if reached.size else "not reached"
    print(
        f"| {name} | {solver} | {'yes' if converged else 'no'} | {first} | "
        f"{clf.n_iter_} | {clf.n_hessian_products_} | {history[-1]:.2e} | "
        f"{seconds:.2f} |",
        flush=True,
    )


def part_small(backend, repeat):
    print("\n== small: hidden (8,), tanh, alpha=1, tol=1e-8\n\n" + HEADER)
    for name, loader in [
        ("breast_cancer", load_breast_cancer),
        ("iris", load_iris),
        ("wine", load_wine),
    ]:
        X, y = _standardised(*loader(return_X_y=True))
        for solver in ("newton-cg", "newton", "lbfgs"):
            _fit(name, X, y, (8,), solver, 1e-8, 5000, backend, repeat)


def part_mid(newton_cap, backend, repeat):
    print("\n== mid: tanh, alpha=1, tol=1e-8\n\n" + HEADER)
    X, y = make_classification(
        n_samples=5000, n_features=50, n_informative=20, random_state=0
    )
    problems = [
        ("make_classification (64, 64), W=7489", *_standardised(X, y), (64, 64)),
        ("digits (16,), W=1210", *_standardised(*load_digits(return_X_y=True)), (16,)),
    ]
    for name, X, y, hidden in problems:
        for solver, max_iter in [
            ("newton-cg", 1000),
            ("lbfgs", 3000),
            ("newton", newton_cap),
        ]:
            _fit(name, X, y, hidden, solver, 1e-8, max_iter, backend, repeat)


def part_big(caps, backend):
    print("\n== big: 20,000 x 784, 10 classes, hidden (100,), W=79510, tol=1e-6\n")
    print(HEADER)
    X, _, y, _ = image_scale_problem()
    for solver, max_iter in zip(("newton-cg", "lbfgs"), caps):
        _fit("784 features (100,)", X, y, (100,), solver, 1e-6, max_iter, backend)


def part_default():
    print("\n== default estimator vs MLPClassifier, 4,000 rows, W=5110\n")
    X, y = make_classification(
        n_samples=5000, n_features=40, n_informative=20, n_classes=10, random_state=0
    )
    X, y = X[:4000], y[:4000]
    models = {
        "MLPClassifier((100,), tanh, lbfgs, alpha=1)": MLPClassifier(
            (100,), activation="tanh", solver="lbfgs", alpha=1.0, random_state=0
        ),
        "LaplaceMLPClassifier() (defaults)": LaplaceMLPClassifier(random_state=0),
    }
    print("| model | fit seconds | details |\n|---|---:|---|")
    for name, model in models.items():
        seconds = timed_fit(model, X, y)
        details = f"n_iter_={model.n_iter_}"
        if hasattr(model, "solver_"):
            details += (
                f", solver_={model.solver_}, n_hessian_products_="
                f"{model.n_hessian_products_}, hessian_structure_="
                f"{getattr(model, 'hessian_structure_', 'full')}, final scaled "
                f"gradient {model.gradient_history_[-1]:.2e}"
            )
        print(f"| {name} | {seconds:.1f} | {details} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["small", "mid", "default"],
        choices=["small", "mid", "big", "default"],
    )
    parser.add_argument("--newton-cap", type=int, default=3)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="best of this many wall times per fit (small and mid parts)",
    )
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument(
        "--big-caps",
        type=int,
        nargs=2,
        default=[1000, 20000],
        help="max_iter of newton-cg and lbfgs in the big part",
    )
    args = parser.parse_args()
    if args.backend != "numpy" and "default" in args.parts:
        parser.error("--backend applies to the small, mid and big parts only")
    for part in args.parts:
        if part == "mid":
            part_mid(args.newton_cap, args.backend, args.repeat)
        elif part == "big":
            part_big(args.big_caps, args.backend)
        elif part == "small":
            part_small(args.backend, args.repeat)
        else:
            part_default()


if __name__ == "__main__":
    main()
