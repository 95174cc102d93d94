"""alpha="evidence" against a cross-validated grid over alpha.

Usage: ``python benchmarks/bench_evidence.py [--hidden 8] [--test-size 0.3]``

For breast cancer, wine, iris and digits (standardised; one stratified
train/test split): ``LaplaceMLPClassifier(alpha="evidence")`` fitted once,
against ``GridSearchCV`` over 10 log-spaced alphas (1e-3 .. 1e3) with
stratified 5-fold CV on ``neg_log_loss``, same architecture and predictive
(probit), single process. Reports test log loss and wall time of both, and,
for the evidence fit, the test log loss and ECE of the probit and the
plug-in MAP predictive.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace.metrics import expected_calibration_error

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
    "digits": load_digits,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--test-size", type=float, default=0.3)
    args = parser.parse_args()
    hidden = (args.hidden,)
    grid_alphas = np.logspace(-3, 3, 10)
    print(
        f"hidden={hidden}, tanh, Newton, probit; test size {args.test_size}; "
        f"grid: {len(grid_alphas)} alphas x 5 folds\n"
    )
    print(
        "| dataset | evidence alpha | grid alpha | test log loss evidence | "
        "test log loss grid | ratio | time evidence s | time grid s | time ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name, loader in DATASETS.items():
        X, y = loader(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_size, stratify=y, random_state=0
        )
        base = LaplaceMLPClassifier(hidden, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            evidence = make_pipeline(
                StandardScaler(), base.set_params(alpha="evidence")
            )
            evidence.fit(X_train, y_train)
            t_evidence = time.perf_counter() - start
            start = time.perf_counter()
            grid = GridSearchCV(
                make_pipeline(
                    StandardScaler(), LaplaceMLPClassifier(hidden, random_state=0)
                ),
                {"laplacemlpclassifier__alpha": grid_alphas},
                cv=StratifiedKFold(5, shuffle=True, random_state=0),
                scoring="neg_log_loss",
            ).fit(X_train, y_train)
            t_grid = time.perf_counter() - start
        clf = evidence[-1]
        loss_evidence = log_loss(y_test, evidence.predict_proba(X_test))
        loss_grid = log_loss(y_test, grid.predict_proba(X_test))
        print(
            f"| {name} | {clf.alpha_:.4g} | "
            f"{grid.best_params_['laplacemlpclassifier__alpha']:.4g} | "
            f"{loss_evidence:.4f} | {loss_grid:.4f} | "
            f"{loss_evidence / loss_grid:.3f} | "
            f"{t_evidence:.1f} | {t_grid:.1f} | {t_evidence / t_grid:.3f} |"
        )
        links = {}
        for link in ("probit", "map"):
            clf.set_params(link_approx=link)
            proba = evidence.predict_proba(X_test)
            links[link] = (
                log_loss(y_test, proba),
                expected_calibration_error(y_test, proba),
            )
        clf.set_params(link_approx="probit")
        rows.append((name, links))
    print("\nalpha='evidence': probit vs plug-in MAP predictive on the test split\n")
    print("| dataset | log loss probit | log loss MAP | ECE probit | ECE MAP |")
    print("|---|---:|---:|---:|---:|")
    for name, links in rows:
        print(
            f"| {name} | {links['probit'][0]:.4f} | {links['map'][0]:.4f} | "
            f"{links['probit'][1]:.4f} | {links['map'][1]:.4f} |"
        )


if __name__ == "__main__":
    main()
