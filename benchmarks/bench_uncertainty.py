"""Predictive quality in and out of distribution, against the baselines.

Protocol (issue 14): hidden (16,), tanh, float64; stratified 70/30 splits
with seeds 0..4 (digits 0..2), standardised on the training rows. Data sets:
breast cancer, wine, digits and ``make_classification(n_samples=2000,
n_features=20, n_informative=5, class_sep=0.8, random_state=0)``. OOD: (i)
digits trained on classes 0-4, in = test rows 0-4, out = test rows 5-9; (ii)
``make_moons(500, noise=0.3, random_state=0)``, out = 2000 points uniform in a
box 5x as wide per axis as the data range, same centre
(``RandomState(1000 + s)``). AUROC with in = positive, score = max
probability. ECE: 15 equal-width bins on the max probability.

Run: ``python benchmarks/bench_uncertainty.py [--quick] [--plot PATH] [--models
NAME ...] [--datasets NAME ...] [--no-ood]`` (``--models`` keeps the models
whose names contain one of the words).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_wine,
    make_classification,
    make_moons,
)
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace.metrics import expected_calibration_error, multiclass_brier_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _splits import standardised_split  # noqa: E402

HIDDEN = (16,)
#: Model names must contain one of these (``--models``); empty: every model.
ONLY = []


def synthetic():
    return make_classification(
        n_samples=2000, n_features=20, n_informative=5, class_sep=0.8, random_state=0
    )


DATASETS = {
    "breast_cancer": (lambda: load_breast_cancer(return_X_y=True), 5),
    "wine": (lambda: load_wine(return_X_y=True), 5),
    "digits": (lambda: load_digits(return_X_y=True), 3),
    "synthetic": (synthetic, 5),
}


def models(dataset):
    """The estimators compared, as name -> factory."""
    mlp = dict(hidden_layer_sizes=HIDDEN, activation="tanh", random_state=0)
    out = {
        "sklaplace default": lambda: LaplaceMLPClassifier(HIDDEN, random_state=0),
        "sklaplace scale=cv (the default before session 77)": lambda: (
            LaplaceMLPClassifier(HIDDEN, random_state=0, prior_precision_scale="cv")
        ),
        "sklaplace default, no residual": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, residual_variance=0.0
        ),
        "sklaplace scale=evidence": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, prior_precision_scale="evidence"
        ),
        "sklaplace scale=1 (classical)": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, prior_precision_scale=1.0
        ),
        "sklaplace MAP plug-in": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, link_approx="map"
        ),
        "sklaplace alpha=evidence, cv scale": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, alpha="evidence"
        ),
        # The cheapest tuning, for the fit-time frontier: no refit at all
        # (alpha=1, scale by the evidence at the MAP; "scale=evidence" above
        # keeps MacKay's refits of alpha).
        "sklaplace alpha=1, scale=evidence": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, alpha=1.0, prior_precision_scale="evidence"
        ),
        # ... and with the scale by leave-one-out (session 38): no refit either.
        "sklaplace alpha=1, scale=loo": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, alpha=1.0, prior_precision_scale="loo"
        ),
        "sklaplace scale=loo": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, prior_precision_scale="loo"
        ),
        # Cheaper tunings, for the fit-time frontier (session 16): held-out
        # rows instead of five refitted folds, or alpha walked on them.
        "sklaplace alpha=evidence, scale=validation": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, alpha="evidence", prior_precision_scale="validation"
        ),
        "sklaplace alpha=validation, scale=validation": lambda: LaplaceMLPClassifier(
            HIDDEN,
            random_state=0,
            alpha="validation",
            prior_precision_scale="validation",
        ),
        "sklaplace alpha=validation, scale=cv": lambda: LaplaceMLPClassifier(
            HIDDEN, random_state=0, alpha="validation", prior_precision_scale="cv"
        ),
        # Other hidden activations with every other default (session 12).
        "sklaplace activation=relu": lambda: LaplaceMLPClassifier(
            HIDDEN, activation="relu", random_state=0
        ),
        "sklaplace activation=elu": lambda: LaplaceMLPClassifier(
            HIDDEN, activation="elu", random_state=0
        ),
        "sklaplace activation=elu, MAP plug-in": lambda: LaplaceMLPClassifier(
            HIDDEN, activation="elu", random_state=0, link_approx="map"
        ),
        # Softplus, smooth everywhere and unbounded above (session 19).
        "sklaplace activation=softplus": lambda: LaplaceMLPClassifier(
            HIDDEN, activation="softplus", random_state=0
        ),
        "MLPClassifier": lambda: MLPClassifier(**mlp),
        "MLPClassifier + temperature": lambda: CalibratedClassifierCV(
            MLPClassifier(**mlp), method="temperature", cv=3, ensemble=False
        ),
        "LogisticRegression": lambda: LogisticRegression(max_iter=5000),
    }
    if dataset != "digits":  # one-vs-rest GPC on 1257 x 64 x 10 is too slow
        out["GaussianProcessClassifier"] = lambda: GaussianProcessClassifier(
            1.0 * RBF(1.0), random_state=0
        )
    if ONLY:
        out = {k: v for k, v in out.items() if any(o in k for o in ONLY)}
    return out


def fit_timed(factory, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = factory().fit(X, y)
        return model, time.perf_counter() - start


def in_distribution(quick):
    rows = []
    for name, (load, n_splits) in DATASETS.items():
        X, y = load()
        for seed in range(1 if quick else n_splits):
            X_tr, X_te, y_tr, y_te = standardised_split(X, y, seed)
            for model_name, factory in models(name).items():
                model, seconds = fit_timed(factory, X_tr, y_tr)
                proba = model.predict_proba(X_te)
                rows.append(
                    dict(
                        dataset=name,
                        seed=seed,
                        model=model_name,
                        nll=log_loss(y_te, proba, labels=model.classes_),
                        ece=expected_calibration_error(
                            y_te, proba, classes=model.classes_
                        ),
                        brier=multiclass_brier_score(
                            y_te, proba, classes=model.classes_
                        ),
                        accuracy=accuracy_score(y_te, model.predict(X_te)),
                        seconds=seconds,
                    )
                )
                print(rows[-1], flush=True)
    return rows


def digits_ood(seed):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = standardised_split(X, y, seed)
    return X_tr[y_tr < 5], y_tr[y_tr < 5], X_te[y_te < 5], X_te[y_te >= 5]


def moons_ood(seed):
    X, y = make_moons(500, noise=0.3, random_state=0)
    X_tr, X_te, y_tr, _ = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    low, high = X.min(axis=0), X.max(axis=0)
    centre, width = (low + high) / 2, 5 * (high - low)
    box = np.random.RandomState(1000 + seed).uniform(
        centre - width / 2, centre + width / 2, size=(2000, 2)
    )
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), y_tr, scaler.transform(X_te), scaler.transform(box)


def auroc(model, X_in, X_out):
    score_in = model.predict_proba(X_in).max(axis=1)
    score_out = model.predict_proba(X_out).max(axis=1)
    labels = np.r_[np.ones(len(score_in)), np.zeros(len(score_out))]
    return roc_auc_score(labels, np.r_[score_in, score_out])


OOD_TASKS = {"digits 0-4 vs 5-9": (digits_ood, 3), "moons vs 5x box": (moons_ood, 5)}


def out_of_distribution(quick):
    rows = []
    for task, (make, n_splits) in OOD_TASKS.items():
        for seed in range(1 if quick else n_splits):
            X_tr, y_tr, X_in, X_out = make(seed)
            for model_name, factory in models("ood").items():
                if "GaussianProcess" in model_name and task.startswith("digits"):
                    continue
                model, seconds = fit_timed(factory, X_tr, y_tr)
                rows.append(
                    dict(
                        task=task,
                        seed=seed,
                        model=model_name,
                        auroc=auroc(model, X_in, X_out),
                        seconds=seconds,
                    )
                )
                print(rows[-1], flush=True)
    return rows


def tradeoff_plot(path):
    """NLL (in distribution) vs AUROC as the posterior's prior scale varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X_tr, y_tr, X_in, X_out = digits_ood(0)
    X, y = load_digits(return_X_y=True)
    _, _, _, y_te = standardised_split(X, y, 0)
    y_in = y_te[y_te < 5]
    model, _ = fit_timed(
        lambda: LaplaceMLPClassifier(HIDDEN, random_state=0), X_tr, y_tr
    )
    chosen, base = model.prior_precision_scale_, model.posterior_
    scales = np.logspace(-2, 4, 25)
    nll, aur = [], []
    for scale in scales:  # same MAP, the posterior at another prior scale
        change = (scale - chosen) * model.prior_precision_
        model.posterior_ = base.with_prior_change(np, change)
        nll.append(log_loss(y_in, model.predict_proba(X_in), labels=model.classes_))
        aur.append(auroc(model, X_in, X_out))
    model.set_params(link_approx="map")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = ax.scatter(nll, aur, c=np.log10(scales), cmap="viridis")
    fig.colorbar(points, label="log10 prior precision scale c")
    ax.axhline(auroc(model, X_in, X_out), color="grey", ls="--", label="MAP plug-in")
    ax.axvline(
        log_loss(y_in, model.predict_proba(X_in), labels=model.classes_),
        color="grey",
        ls=":",
    )
    ax.set_xlabel("test NLL, digits 0-4")
    ax.set_ylabel("AUROC, 0-4 (in) vs 5-9 (out)")
    ax.set_title(f"Digits, split 0: 'cv' chose c = {chosen:.3g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def summarise(rows, key, metrics):
    groups = {}
    for row in rows:
        groups.setdefault((row[key], row["model"]), []).append(row)
    for (group, model), members in groups.items():
        means = "  ".join(
            f"{m} {np.mean([r[m] for r in members]):.4f}" for m in metrics
        )
        print(f"{group:22s} {model:36s} {means}  (n={len(members)})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one split each")
    parser.add_argument("--plot", help="write the NLL-vs-AUROC trade-off plot here")
    parser.add_argument(
        "--models",
        nargs="+",
        default=[],
        help="run the models whose names contain these",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        choices=list(DATASETS),
        help="in-distribution data sets to run",
    )
    parser.add_argument("--no-ood", action="store_true", help="skip the OOD tasks")
    args = parser.parse_args()
    ONLY.extend(args.models)
    if args.datasets is not None:
        for name in set(DATASETS) - set(args.datasets):
            del DATASETS[name]
    if args.plot:
        tradeoff_plot(args.plot)
    rows = in_distribution(args.quick)
    ood = [] if args.no_ood else out_of_distribution(args.quick)
    print("\nIn distribution (means over splits):")
    summarise(rows, "dataset", ["nll", "ece", "brier", "accuracy", "seconds"])
    print("\nOut of distribution (means over splits):")
    summarise(ood, "task", ["auroc", "seconds"])


if __name__ == "__main__":
    main()
