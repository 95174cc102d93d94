"""Whole fits on the GPU (``backend="cupy"``) against NumPy on the same machine.

Usage: ``python benchmarks/bench_gpu_fit.py [--backends numpy cupy]
[--problems engine image] [--n-samples 50000]``

Problems:

* ``engine``: the curvature benchmark's shape -- N rows (default 50,000;
  70% train), d=50, hidden (64, 64), tanh, binary (W=7,489);
  ``make_classification(n_informative=20, random_state=0)``.
* ``image``: issue 13's problem (20,000 x 784, 10 classes, hidden (100,),
  W=79,510; :func:`_splits.image_scale_problem`).

Each is fitted with the default estimator (``"auto"`` picks the solver,
curvature structure and prior scale), with ``solver="newton-cg"`` on the full
GGN posterior where W allows (engine), and with 10 iterations of dense Newton
(engine; the per-iteration cost of the full-Hessian solver); the image
problem also with ``solver="newton-cg"`` (issue 15's 784 features). Prints fit and
``predict_proba`` wall seconds (after a device synchronise), iterations, test
log loss and accuracy, and MLPClassifier (adam, CPU) for reference. The
``predict_proba`` time is taken after one call on 10 rows (CuPy compiles its
kernels on first use).
"""

import argparse
import os
import time

import numpy as np
from _splits import image_scale_problem, timed_fit
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier


def engine_problem(n_samples):
    """``n_samples`` rows x 50 features, binary; 70/30 split, standardised."""
    X, y = make_classification(
        n_samples, 50, n_informative=20, n_redundant=10, random_state=0
    )
    n_train = int(0.7 * n_samples)
    scaler = StandardScaler().fit(X[:n_train])
    return (
        scaler.transform(X[:n_train]),
        scaler.transform(X[n_train:]),
        y[:n_train],
        y[n_train:],
    )


CONFIGS = {
    "engine": {
        "default": dict(hidden_layer_sizes=(64, 64)),
        "newton-cg, full": dict(
            hidden_layer_sizes=(64, 64), solver="newton-cg", hessian_structure="full"
        ),
        "newton, full, 10 it": dict(
            hidden_layer_sizes=(64, 64),
            solver="newton",
            hessian_structure="full",
            alpha=1.0,
            prior_precision_scale=1.0,
            max_iter=10,
        ),
    },
    "image": {"default": dict(), "newton-cg": dict(solver="newton-cg")},
}
MLP_HIDDEN = {"engine": (64, 64), "image": (100,)}


def synchronise(backend):
    if backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["numpy", "cupy"])
    parser.add_argument("--problems", nargs="+", default=["engine", "image"])
    parser.add_argument("--n-samples", type=int, default=50000)
    parser.add_argument(
        "--models", nargs="+", default=None, help="model names (default: all)"
    )
    parser.add_argument("--no-mlp", action="store_true", help="skip MLPClassifier")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, numpy {np.__version__}\n")
    print(
        "| problem | model | backend | fit s | predict_proba s | iterations "
        "| chose | test log loss | accuracy |\n"
        "|---|---|---|---:|---:|---:|---|---:|---:|"
    )
    for problem in args.problems:
        X_train, X_test, y_train, y_test = (
            engine_problem(args.n_samples)
            if problem == "engine"
            else image_scale_problem()
        )
        if not args.no_mlp:
            mlp = MLPClassifier(MLP_HIDDEN[problem], random_state=0)
            seconds = timed_fit(mlp, X_train, y_train)
            proba = mlp.predict_proba(X_test)
            print(
                f"| {problem} | MLPClassifier (adam) | numpy | {seconds:.2f} | - "
                f"| {mlp.n_iter_} | - | {log_loss(y_test, proba):.4f} "
                f"| {accuracy_score(y_test, mlp.classes_[proba.argmax(1)]):.4f} |",
                flush=True,
            )
        for name, params in CONFIGS[problem].items():
            if args.models is not None and name not in args.models:
                continue
            for backend in args.backends:
                model = LaplaceMLPClassifier(backend=backend, random_state=0, **params)
                seconds = timed_fit(model, X_train, y_train)
                model.predict_proba(X_test[:10])  # first calls compile kernels
                synchronise(backend)
                start = time.perf_counter()
                proba = model.predict_proba(X_test)
                synchronise(backend)
                predict_seconds = time.perf_counter() - start
                chose = (
                    f"{model.solver_}, {model.hessian_structure_}, "
                    f"scale {model.prior_precision_scale_:.3g}"
                )
                accuracy = accuracy_score(y_test, model.classes_[proba.argmax(1)])
                print(
                    f"| {problem} | {name} | {backend} | {seconds:.2f} "
                    f"| {predict_seconds:.2f} | {model.n_iter_} | {chose} "
                    f"| {log_loss(y_test, proba):.4f} | {accuracy:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
