"""Exact Bayesian predictive of logistic regression, for reference.

Usage: ``python benchmarks/bench_bayes_reference.py [--splits 5] [--draws 200000]``

Does averaging over the posterior beat the plug-in MAP on these datasets at
all, or is it only the Laplace approximation that falls short? For a model
with no hidden layer (Bayesian logistic / softmax regression, weight prior
precision ``alpha`` tuned by the evidence, bias prior precision 1) the
exact posterior predictive can be computed by self-normalised importance
sampling: draws from a multivariate t (5 degrees of freedom) centred at the
MAP with scale 1.5 times the Laplace standard deviations (shape 1.5^2 times
the Laplace covariance), weighted by
``p(theta | D) / q(theta)``. Reports the mean test log loss over
``--splits`` stratified 70/30 splits of the plug-in MAP, the Laplace probit
and Monte Carlo predictives, and the importance-sampled exact predictive,
with the smallest effective sample size over the splits.
"""

import argparse
import warnings

import numpy as np
from _splits import standardised_split
from scipy.special import log_softmax
from scipy.stats import multivariate_t
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.metrics import log_loss

from sklaplace import LaplaceMLPClassifier

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
}
BATCH = 20_000


def log_proba(clf, thetas, X):
    """Class log probabilities of a linear model, one slice per draw."""
    n_features, n_outputs = clf.coefs_[0].shape
    W = thetas.reshape(len(thetas), n_features + 1, n_outputs)  # [W; b] layout
    logits = np.einsum("nd,sdk->snk", np.c_[X, np.ones(len(X))], W)
    if n_outputs == 1:
        logits = np.concatenate([np.zeros_like(logits), logits], axis=2)
    return log_softmax(logits, axis=2)


def exact_predictive(clf, X_train, y_index, X_test, n_draws, rng):
    """Importance-sampled posterior predictive and its effective sample size."""
    layout = clf._layout()
    theta = layout.pack(np, clf.coefs_, clf.intercepts_)
    L = clf.posterior_.cholesky_factor
    shape = 1.5**2 * np.linalg.inv(L @ L.T)
    proposal = multivariate_t(loc=theta, shape=shape, df=5, seed=rng)
    draws = proposal.rvs(n_draws)
    log_weights, proba = np.empty(n_draws), 0.0
    for start in range(0, n_draws, BATCH):
        batch = draws[start : start + BATCH]
        log_lik = log_proba(clf, batch, X_train)[:, np.arange(len(y_index)), y_index]
        log_prior = -0.5 * np.sum(clf.prior_precision_ * batch**2, axis=1)
        log_weights[start : start + BATCH] = (
            log_lik.sum(axis=1) + log_prior - proposal.logpdf(batch)
        )
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    for start in range(0, n_draws, BATCH):
        batch = draws[start : start + BATCH]
        proba = proba + np.einsum(
            "s,snk->nk",
            weights[start : start + BATCH],
            np.exp(log_proba(clf, batch, X_test)),
        )
    return proba, 1.0 / np.sum(weights**2)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--draws", type=int, default=200_000)
    args = parser.parse_args()
    print(
        f"no hidden layer, alpha='evidence'; mean test log loss "
        f"over {args.splits} splits; {args.draws} importance draws\n"
    )
    print("| dataset | alpha | MAP | probit | mc | exact (IS) | min ESS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for name, loader in DATASETS.items():
        X, y = loader(return_X_y=True)
        rows = []
        for seed in range(args.splits):
            X_train, X_test, y_train, y_test = standardised_split(X, y, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = LaplaceMLPClassifier((), alpha="evidence", tol=1e-10)
                clf.fit(X_train, y_train)
            row = [clf.alpha_]
            for link in ("map", "probit", "mc"):
                proba = clf.set_params(link_approx=link).predict_proba(X_test)
                row.append(log_loss(y_test, proba))
            y_index = np.searchsorted(clf.classes_, y_train)
            proba, ess = exact_predictive(
                clf, X_train, y_index, X_test, args.draws, rng
            )
            rows.append(row + [log_loss(y_test, proba), ess])
        rows = np.array(rows)
        mean = rows.mean(axis=0)
        print(
            f"| {name} | {np.exp(np.log(rows[:, 0]).mean()):.3g} | {mean[1]:.4f} | "
            f"{mean[2]:.4f} | {mean[3]:.4f} | {mean[4]:.4f} | {rows[:, 5].min():.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
