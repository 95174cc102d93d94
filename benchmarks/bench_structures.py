"""Posterior structures: the default estimator at scale, KFAC cost, closeness to full.

Usage::

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python benchmarks/bench_structures.py
    python benchmarks/bench_structures.py --parts closeness curvature width
    python benchmarks/bench_structures.py --parts scale --models mlp laplace_default

``--models`` picks models of the ``scale`` part (``laplace_newton_cg``, the
default before the size rule, took more than 35 minutes on this problem
when measured; see the report).

Parts (all by default):

* ``scale``: N=20,000 train / 5,000 test rows of ``make_classification(
  n_samples=25000, n_features=784, n_informative=60, n_redundant=100,
  n_classes=10, n_clusters_per_class=2, random_state=0)``, standardised.
  ``MLPClassifier((100,), activation="tanh", solver="lbfgs", alpha=1.0,
  max_iter=200)`` against the default ``LaplaceMLPClassifier()`` (W =
  79,510): wall time of fit + ``predict_proba`` on the test rows, peak
  resident memory, accuracy; also with ``solver="lbfgs"`` (to ``tol`` and
  to MLPClassifier's own stopping rule) and with the held-out prior scale
  ``prior_precision_scale="cv"``. Each model runs in its own process,
  so each peak RSS is its own.
* ``curvature``: the Kronecker factors at W = 79,510 on the same 20,000 rows
  against one gradient evaluation, with where the time goes (and the
  eigenvalue correction's pass over the rows, EKFAC).
* ``closeness``: breast cancer and digits (standardised, stratified 70/30,
  hidden (16,), three splits): every structure (full, kron, diag; all weights
  and last layer) at the classical prior scale (1) and the same MAP; mean
  ``|p - p_full|`` of the probit predictive, test NLL, log evidence, time.
* ``width``: digits, hidden (16,), (64,), (256,): fit time and posterior
  size per structure as the width grows (full only where it is allowed).
* ``tabular``: the large-network default on tabular data (20 features,
  3,000-20,000 rows, hidden (100,), W = 2,201: *large* for ``"auto"``),
  its prior scale chosen on held-out rows against the evidence's scale and
  ``MLPClassifier``: test NLL, accuracy, fit time.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _splits import image_scale_problem, standardised_split, timed_fit  # noqa: E402

from sklaplace import LaplaceMLPClassifier  # noqa: E402
from sklaplace._curvature import kron_eigenvalues, kron_factors  # noqa: E402
from sklaplace._jacobian import logit_factors  # noqa: E402
from sklaplace._kron import KronPosterior  # noqa: E402
from sklaplace._likelihood import Categorical  # noqa: E402
from sklaplace._network import ParamLayout, backprop  # noqa: E402
from sklaplace._objective import NegLogPosterior  # noqa: E402
from sklaplace._prior_scale import PRIOR_SCALE_GRID, ScaledPriorFamily  # noqa: E402
from sklaplace.exceptions import MemoryLimitError  # noqa: E402

GIB = 2**30


def _peak_rss():
    """Peak resident set size of this process, in bytes (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _models():
    return {
        "mlp": lambda: MLPClassifier(
            (100,), activation="tanh", solver="lbfgs", alpha=1.0, max_iter=200
        ),
        # At this size "auto" is L-BFGS, kron and MLPClassifier's stopping
        # rule (gtol 1e-4 on the mean loss's gradient).
        "laplace_default": lambda: LaplaceMLPClassifier(),
        # The default until session 15 (alpha=1 where refits are costly).
        "laplace_alpha1": lambda: LaplaceMLPClassifier(alpha=1.0),
        "laplace_lbfgs_tol1e-6": lambda: LaplaceMLPClassifier(solver="lbfgs", tol=1e-6),
        "laplace_newton_cg": lambda: LaplaceMLPClassifier(solver="newton-cg", tol=1e-6),
        "laplace_cv": lambda: LaplaceMLPClassifier(prior_precision_scale="cv"),
    }


def run_one(name):
    """Fit and predict one model of the ``scale`` part; print one JSON line."""
    X_train, X_test, y_train, y_test = image_scale_problem()
    model = _models()[name]()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    fitted = time.perf_counter()
    proba = model.predict_proba(X_test)
    done = time.perf_counter()
    record = {
        "model": name,
        "fit_s": fitted - start,
        "predict_s": done - fitted,
        "total_s": done - start,
        "accuracy": accuracy_score(y_test, model.classes_[proba.argmax(axis=1)]),
        "nll": log_loss(y_test, proba, labels=model.classes_),
        "peak_rss_gib": _peak_rss() / GIB,
    }
    for attribute in (
        "alpha_",
        "hessian_structure_",
        "solver_",
        "prior_precision_scale_",
        "n_iter_",
    ):
        if hasattr(model, attribute):
            value = getattr(model, attribute)
            record[attribute] = value if isinstance(value, str) else float(value)
    print(json.dumps(record))


def part_scale(names=None):
    print("== scale: N=20,000 x 784, 10 classes, hidden (100,) (W = 79,510)")
    rows = []
    for name in names or _models():
        out = subprocess.run(
            [sys.executable, __file__, "--one", name],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(lines[-1]))
        print(json.dumps(rows[-1]))
    mlp = next((r for r in rows if r["model"] == "mlp"), None)
    for r in rows:
        if mlp is not None and r is not mlp:
            print(
                f"{r['model']}: {r['total_s'] / mlp['total_s']:.2f}x the MLP's wall "
                f"time, accuracy {r['accuracy'] - mlp['accuracy']:+.4f} vs the MLP, "
                f"peak RSS {r['peak_rss_gib']:.2f} GiB"
            )


def _timed(func, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def part_curvature():
    print("== curvature: KFAC factors vs one gradient, W = 79,510, N = 20,000")
    X, _, y, _ = image_scale_problem()
    layout = ParamLayout((784, 100, 10))
    rng = np.random.RandomState(0)
    theta = layout.glorot_init(rng)
    Y = Categorical.encode(np, y, 10, np.float64)
    prior = np.ones(layout.n_params)
    obj = NegLogPosterior(np, layout, "tanh", Categorical, X, Y, np.ones(len(X)), prior)
    gradient = _timed(lambda: obj.loss_gradient(theta))
    kron = _timed(lambda: kron_factors(obj, theta))
    forward = _timed(lambda: obj.forward(theta))
    fwd = obj.forward(theta)
    factor = Categorical.hessian_factor(np, fwd.logits, obj.sample_weight)
    back = _timed(lambda: backprop(np, layout, theta, fwd, factor))
    ones = np.hstack([X, np.ones((len(X), 1))])
    gram_input = _timed(lambda: ones.T @ ones)
    deltas = backprop(np, layout, theta, fwd, factor)
    flat = deltas[0].reshape(-1, 100)
    gram_output = _timed(lambda: flat.T @ flat)
    # Downstream of the factors: the eigendecompositions (with the prior),
    # the 49-point evidence curve of the prior scale, and J P^{-1} J' of
    # 5,000 rows through the factored Jacobian.
    factors = kron_factors(obj, theta)
    decompose = _timed(lambda: KronPosterior.from_factors(factors, prior), 1)
    bases = [(b.S, b.V) for b in KronPosterior.from_factors(factors, prior).blocks]
    correction = _timed(lambda: kron_eigenvalues(obj, theta, bases), 1)
    post = KronPosterior.from_curvature(obj, factors, theta)
    family = ScaledPriorFamily(post, prior)
    curve = _timed(lambda: [family.log_det_precision(c) for c in PRIOR_SCALE_GRID], 1)
    X_test = X[:5000]

    def variances():
        for _, J in logit_factors(np, layout, theta, "tanh", X_test):
            post.functional_variance(np, J)

    predictive = _timed(variances, 1)
    print(
        json.dumps(
            {
                "gradient_s": gradient,
                "kron_factors_s": kron,
                "ratio": kron / gradient,
                "forward_s": forward,
                "backprop_K_cotangents_s": back,
                "input_gram_785x785_s": gram_input,
                "output_gram_100x100_s": gram_output,
                "eigendecompositions_s": decompose,
                "eigenvalue_correction_s": correction,
                "evidence_curve_49_scales_s": curve,
                "functional_variance_5000_rows_s": predictive,
            }
        )
    )


STRUCTURES = [
    ("full", "all"),
    ("kron", "all"),
    ("diag", "all"),
    ("full", "last_layer"),
    ("kron", "last_layer"),
    ("diag", "last_layer"),
]


def part_closeness(n_splits=3):
    print("== closeness to full: hidden (16,), prior scale 1, same MAP")
    for loader in (load_breast_cancer, load_digits):
        X, y = loader(return_X_y=True)
        table = {s: [] for s in STRUCTURES}
        for seed in range(n_splits):
            X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
            probas = {}
            for structure, subset in STRUCTURES:
                clf = LaplaceMLPClassifier(
                    (16,),
                    alpha=1.0,
                    solver="lbfgs",
                    hessian_structure=structure,
                    subset_of_weights=subset,
                    prior_precision_scale=1.0,
                    max_iter=1000,
                    random_state=seed,
                )
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(X_train, y_train)
                proba = clf.predict_proba(X_test)
                elapsed = time.perf_counter() - start
                probas[structure, subset] = proba
                table[structure, subset].append(
                    (
                        log_loss(y_test, proba, labels=clf.classes_),
                        clf.log_marginal_likelihood_,
                        elapsed,
                        proba,
                    )
                )
            full = probas["full", "all"]
            for key in STRUCTURES:
                nll, evidence, elapsed, proba = table[key][-1]
                table[key][-1] = (
                    nll,
                    evidence,
                    elapsed,
                    float(np.mean(np.abs(proba - full))),
                )
        print(f"-- {loader.__name__[5:]} ({n_splits} splits; mean over splits)")
        print("structure        subset      |p-p_full|   NLL     log evidence  time s")
        for key in STRUCTURES:
            values = np.array(table[key])
            distance = values[:, 3].mean()
            print(
                f"{key[0]:<16} {key[1]:<11} {distance:9.5f}  "
                f"{values[:, 0].mean():7.4f}  {values[:, 1].mean():12.2f}  "
                f"{values[:, 2].mean():6.2f}"
            )
        kron = np.array(table["kron", "all"])[:, 3]
        diag = np.array(table["diag", "all"])[:, 3]
        print(
            "kron closer to full than diag on every split:",
            bool(np.all(kron <= diag)),
        )


def part_width():
    print("== width: digits, fit time and posterior size per structure")
    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = standardised_split(X, y, 0)
    for width in (16, 64, 256):
        for structure in ("full", "kron", "diag"):
            clf = LaplaceMLPClassifier(
                (width,),
                alpha=1.0,
                solver="lbfgs",
                hessian_structure=structure,
                prior_precision_scale=1.0,
                max_iter=300,
                random_state=0,
            )
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(X_train, y_train)
            except MemoryLimitError as error:
                print(f"width {width:4d}  {structure:5s}  refused: {error!s:.60}")
                continue
            elapsed = time.perf_counter() - start
            post = clf.posterior_
            if structure == "full":
                size = post.cholesky_factor.nbytes
            elif structure == "diag":
                size = post.precision.nbytes
            else:
                size = sum(b.S.nbytes + b.V.nbytes for b in post.blocks)
            print(
                f"width {width:4d}  W {post.n_params:6d}  {structure:5s}  "
                f"fit {elapsed:6.2f} s  posterior {size / 2**20:8.3f} MiB"
            )


TABULAR_CASES = [(3000, 0), (3000, 1), (3000, 2), (10000, 0), (20000, 0)]


def part_tabular():
    """The large-network default on tabular data: alpha's walk vs alpha=1."""
    print(
        "== tabular: make_classification(n + 5000, 20 features, 8 informative), "
        "first n rows to train, 5,000 to test; hidden (100,) (W = 2,201, large)\n"
    )
    print(
        "| rows | seed | model | chosen c | fit s | test NLL | accuracy |\n"
        "|---:|---:|---|---:|---:|---:|---:|"
    )
    totals = {}
    for n, seed in TABULAR_CASES:
        X, y = make_classification(
            n_samples=n + 5000, n_features=20, n_informative=8, random_state=seed
        )
        X = StandardScaler().fit_transform(X)
        X_train, y_train, X_test, y_test = X[:n], y[:n], X[n:], y[n:]
        models = {
            "MLPClassifier": _models()["mlp"](),
            "default (validation)": LaplaceMLPClassifier(random_state=0),
            # The large default before session 15 (the validation walk of alpha).
            "alpha=1": LaplaceMLPClassifier(alpha=1.0, random_state=0),
        }
        for name, model in models.items():
            seconds = timed_fit(model, X_train, y_train)
            proba = model.predict_proba(X_test)
            nll = log_loss(y_test, proba)
            totals.setdefault(name, []).append(nll)
            scale = getattr(model, "prior_precision_scale_", None)
            print(
                f"| {n} | {seed} | {name} | "
                f"{'' if scale is None else f'{scale:.3g}'} | {seconds:.2f} | "
                f"{nll:.4f} | {accuracy_score(y_test, proba.argmax(axis=1)):.4f} |",
                flush=True,
            )
    for name, nlls in totals.items():
        print(f"mean test NLL, {name}: {np.mean(nlls):.4f}")


PARTS = {
    "scale": part_scale,
    "curvature": part_curvature,
    "closeness": part_closeness,
    "width": part_width,
    "tabular": part_tabular,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument(
        "--models", nargs="*", default=None, help="models of the scale part"
    )
    args = parser.parse_args()
    if args.one:
        run_one(args.one)
        return
    for part in args.parts:
        if part == "scale":
            part_scale(args.models)
        else:
            PARTS[part]()


if __name__ == "__main__":
    main()
