"""Time the curvature engine against the floor for any full GGN.

Usage: ``python benchmarks/bench_curvature.py [--n-samples 5000] [--repeat 3]
[--backend numpy|cupy]``

Problem: N samples, d=50 features, hidden (64, 64), tanh, binary (W=7489).
The floor is BLAS ``dsyrk`` (the symmetric rank-N update) of a random N x W
matrix; a plain ``J.T @ (w[:, None] * J)`` is shown too. Prints a Markdown
table of best-of-``repeat`` wall times and the ratios the targets are set on.
With ``--backend cupy`` everything runs on the GPU and the reference is a bare
CuPy ``J.T @ (w[:, None] * J)`` of the same shape (the GPU target: GGN and
exact Hessian within 2x of it); times are taken after a device synchronise.
"""

import argparse
import os
import platform
import time

import numpy as np
import scipy.linalg

from sklaplace._backend import resolve_backend
from sklaplace._curvature import exact_hessian, ggn_diagonal, ggn_hessian
from sklaplace._likelihood import Bernoulli
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior


def best_time(func, repeat, sync=lambda: None):
    func()  # warm-up (first-touch allocation, CUDA kernels' compilation)
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def make_objective(n_samples, n_features=50, hidden=(64, 64), seed=0, xp=None):
    xp = np if xp is None else xp
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = (X[:, 0] + 0.5 * rng.normal(size=n_samples) > 0).astype(float)
    layout = ParamLayout((n_features, *hidden, 1))
    theta = layout.glorot_init(rng)
    obj = NegLogPosterior(
        xp,
        layout,
        "tanh",
        Bernoulli,
        xp.asarray(X),
        xp.asarray(y[:, None]),
        xp.ones(n_samples, dtype=xp.float64),
        xp.full(layout.n_params, 1e-2),
    )
    return obj, xp.asarray(theta)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    args = parser.parse_args()
    xp = resolve_backend(args.backend)
    sync = lambda: None  # noqa: E731
    if args.backend == "cupy":
        import cupy

        sync = cupy.cuda.Device().synchronize
    obj, theta = make_objective(args.n_samples, xp=xp)
    n, w = args.n_samples, obj.layout.n_params
    J = xp.asarray(np.random.RandomState(1).normal(size=(n, w)))
    weights = xp.asarray(np.random.RandomState(2).uniform(size=n))
    v = xp.asarray(np.random.RandomState(3).normal(size=w))
    plain = "plain J.T @ (w * J)"
    if args.backend == "numpy":
        reference = "floor: dsyrk of random N x W"
        rows = {reference: lambda: scipy.linalg.blas.dsyrk(1.0, J.T)}
    else:
        reference = plain
        rows = {}
    rows.update(
        {
            plain: lambda: J.T @ (weights[:, None] * J),
            "full GGN": lambda: ggn_hessian(obj, theta),
            "full exact Hessian": lambda: exact_hessian(obj, theta),
            "gradient": lambda: obj.loss_gradient(theta),
            "diagonal GGN": lambda: ggn_diagonal(obj, theta),
            "exact HVP": lambda: obj.hessp(theta, v, "exact"),
            "GGN-vector product": lambda: obj.hessp(theta, v, "ggn"),
        }
    )
    # Cheap operations are timed over more repeats: a few ms is noisy.
    cheap = {"gradient", "diagonal GGN", "exact HVP", "GGN-vector product"}
    t = {
        name: best_time(f, max(args.repeat, 30) if name in cheap else args.repeat, sync)
        for name, f in rows.items()
    }
    print(
        f"N={n}, d=50, hidden=(64, 64), tanh, binary, W={w}; backend {args.backend}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, best of {args.repeat}\n"
    )
    print("| quantity | seconds |\n|---|---:|")
    for name, seconds in t.items():
        print(f"| {name} | {seconds:.4f} |")
    ggn_target = 1.5 if args.backend == "numpy" else 2.0
    ratios = [
        (f"GGN / {reference}", t["full GGN"] / t[reference], ggn_target),
        ("exact / GGN", t["full exact Hessian"] / t["full GGN"], 3.0),
        ("diagonal / gradient", t["diagonal GGN"] / t["gradient"], 2.0),
        ("exact HVP / gradient", t["exact HVP"] / t["gradient"], 3.0),
    ]
    if args.backend == "cupy":
        ratios.insert(
            1, (f"exact / {reference}", t["full exact Hessian"] / t[reference], 2.0)
        )
    print("\n| ratio | measured | target |\n|---|---:|---:|")
    for name, value, target in ratios:
        status = "ok" if value <= target else "MISSED"
        print(f"| {name} | {value:.2f} | <= {target} ({status}) |")


if __name__ == "__main__":
    main()
