"""How far is MacKay's fixed point from the alpha that maximises the evidence?

Usage: ``python benchmarks/bench_evidence_refit.py [--hidden 8] [--splits 5]``

MacKay's update makes the Laplace evidence stationary at the CURRENT MAP; it
neglects how the MAP's curvature moves with alpha. This script measures what
that costs. Per dataset and split (the 70/30 splits of
``bench_evidence.py``): fit ``alpha="evidence"``, then refit at 21 alphas
from 1/32 to 32 times the fixed point (steps of sqrt(2)), each warm-started
from the fixed point's MAP, and record the refit's log evidence and test log
loss (probit). Reports the mean test log loss at the fixed point and at the
sweep's evidence maximum, how many splits have that maximum at an end of the
sweep (then it is only a lower bound), and how many have an evidence curve
with more than one interior local maximum (refits landing in other local
optima of the network's loss).
"""

import argparse
import copy
import warnings

import numpy as np
from _splits import standardised_split
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.metrics import log_loss

from sklaplace import LaplaceMLPClassifier

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
    "digits": load_digits,
}
FACTORS = np.geomspace(1 / 32, 32.0, 21)


def one_split(loader, hidden, seed):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
    fixed_point = LaplaceMLPClassifier(
        hidden, activation="tanh", alpha="evidence", random_state=seed
    )
    fixed_point.fit(X_train, y_train)
    evidence, loss = [], []
    for factor in FACTORS:
        refit = copy.deepcopy(fixed_point).set_params(
            alpha=fixed_point.alpha_ * factor, warm_start=True
        )
        refit.fit(X_train, y_train)
        evidence.append(refit.log_marginal_likelihood_)
        loss.append(log_loss(y_test, refit.predict_proba(X_test)))
    evidence = np.array(evidence)
    best = int(np.argmax(evidence))
    inner = evidence[1:-1]
    n_local_maxima = int(np.sum((inner > evidence[:-2]) & (inner > evidence[2:])))
    return {
        "alpha fixed point": fixed_point.alpha_,
        "alpha best": fixed_point.alpha_ * FACTORS[best],
        "loss fixed point": log_loss(y_test, fixed_point.predict_proba(X_test)),
        "loss best": loss[best],
        "evidence gain": evidence[best] - fixed_point.log_marginal_likelihood_,
        "at an end": best in (0, len(FACTORS) - 1),
        "multimodal": n_local_maxima > 1,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    hidden = (args.hidden,)
    print(
        f"hidden={hidden}, tanh, Newton, probit; {args.splits} splits (70/30); "
        f"refits at {FACTORS[0]:g}..{FACTORS[-1]:g} x the fixed point's alpha\n"
    )
    print(
        "| dataset | alpha fixed point | alpha max evidence | log evidence gain | "
        "test log loss fixed point | test log loss max evidence | "
        "splits with the maximum at an end | splits with several maxima |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, loader in DATASETS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = [one_split(loader, hidden, seed) for seed in range(args.splits)]
        r = {key: np.array([row[key] for row in rows]) for key in rows[0]}
        print(
            f"| {name} | {np.exp(np.log(r['alpha fixed point']).mean()):.3g} | "
            f"{np.exp(np.log(r['alpha best']).mean()):.3g} | "
            f"{r['evidence gain'].mean():.2f} | {r['loss fixed point'].mean():.4f} | "
            f"{r['loss best'].mean():.4f} | {int(r['at an end'].sum())}/{len(rows)} | "
            f"{int(r['multimodal'].sum())}/{len(rows)} |"
        )
    print("\n(alphas: geometric means over splits; losses and gains: means)")


if __name__ == "__main__":
    main()
