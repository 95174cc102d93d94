"""Peak memory of the full GGN at N=100000, d=20, hidden (64,), binary.

Usage: ``python benchmarks/bench_memory.py [--n-samples 100000] [--n-features 20]
[--hidden 64]``

Reports the peak of Python-tracked allocations (``tracemalloc``; NumPy
reports its buffers to it) while the GGN is formed, beside the size of the
result itself and of the N x W Jacobian that chunking avoids. For the whole
process's peak, run it under ``/usr/bin/time -v``.
"""

import argparse
import time
import tracemalloc

import numpy as np

from sklaplace._curvature import ggn_hessian
from sklaplace._likelihood import Bernoulli
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior

MIB = 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-samples", type=int, default=100_000, help="rows")
    parser.add_argument("--n-features", type=int, default=20, help="features")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    X = rng.normal(size=(args.n_samples, args.n_features))
    y = (X[:, 0] > 0).astype(float)[:, None]
    layout = ParamLayout((args.n_features, args.hidden, 1))
    theta = layout.glorot_init(rng)
    obj = NegLogPosterior(
        np,
        layout,
        "tanh",
        Bernoulli,
        X,
        y,
        np.ones(args.n_samples),
        np.full(layout.n_params, 1e-2),
    )
    data_bytes = X.nbytes + y.nbytes + obj.sample_weight.nbytes
    tracemalloc.start()
    start = time.perf_counter()
    H = ggn_hessian(obj, theta)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    w = layout.n_params
    print(f"N={args.n_samples}, d={args.n_features}, hidden=({args.hidden},), W={w}")
    print(f"data (X, y, weights), allocated before: {data_bytes / MIB:.1f} MiB")
    print(f"result W x W: {H.nbytes / MIB:.1f} MiB")
    print(
        f"an unchunked N x W Jacobian would be: {args.n_samples * w * 8 / MIB:.1f} MiB"
    )
    print(
        f"peak traced allocation while forming the GGN: {peak / MIB:.1f} MiB "
        f"(memory budget {obj.memory_budget / MIB:.0f} MiB per chunk)"
    )
    print(f"time: {seconds:.2f} s")


if __name__ == "__main__":
    main()
