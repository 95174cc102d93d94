"""sklaplace demo: the Hessian of the log posterior, and a Laplace MLP.

Run with ``python examples/demo.py`` (see the README for the one-line setup).
Part 1 prints the exact, GGN and diagonal Hessians of a tiny network; part 2
fits LaplaceMLPClassifier on the breast-cancer data and compares its test
accuracy, log loss, Brier score and expected calibration error with its own
classical (prior scale 1) posterior, MLPClassifier and LogisticRegression;
part 3 trains on digits 0-4 and asks how well the max probability separates
the unseen digits 5-9 (AUROC, in = 0-4); part 4 trains on two moons and asks
the same of points in a box five times as wide, where the residual variance
beyond the data makes the default's predictive tend to uniform.
"""

import copy
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, log_posterior_hessian
from sklaplace.metrics import expected_calibration_error, multiclass_brier_score

np.set_printoptions(precision=2, suppress=True, linewidth=110)


def hessian_demo():
    """Exact, GGN and diagonal Hessians of a 2-3-1 tanh network on iris."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X[:, :2])
    y = (y == 1).astype(int)  # versicolor vs rest: not linearly separable
    mlp = MLPClassifier(
        (3,), activation="tanh", alpha=1.0, solver="lbfgs", random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    kw = dict(activation="tanh", alpha=1.0, bias_prior_precision=0.0)
    exact = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="exact", **kw)
    ggn = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="ggn", **kw)
    diag = log_posterior_hessian(
        mlp.coefs_, mlp.intercepts_, X, y, kind="ggn_diag", **kw
    )
    print("Hessian of the log posterior of a 2-3-1 tanh MLP on iris (13 parameters,")
    print("order [W_0.ravel(), b_0, W_1.ravel(), b_1]), at MLPClassifier's MAP:\n")
    print(exact)
    print("\neigenvalues, exact:", np.linalg.eigvalsh(exact))
    print("eigenvalues, GGN:  ", np.linalg.eigvalsh(ggn))
    print("max |exact - GGN| =", np.max(np.abs(exact - ggn)))
    print("diag == diag(GGN):", np.allclose(diag, np.diag(ggn)))
    print(
        "exact Hessian negative definite at the MAP:",
        np.linalg.eigvalsh(exact).max() < 0,
    )


def classifier_demo():
    """Test scores of the Laplace MLP beside MLPClassifier and LogisticRegression."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    hidden, alpha = (16,), 1.0
    models = {
        "LaplaceMLPClassifier (default)": LaplaceMLPClassifier(hidden, random_state=0),
        "  same, prior scale 1 (classical)": LaplaceMLPClassifier(
            hidden, random_state=0, prior_precision_scale=1.0
        ),
        "  same, MAP plug-in": LaplaceMLPClassifier(
            hidden, random_state=0, link_approx="map"
        ),
        "MLPClassifier (16 tanh, alpha=1)": MLPClassifier(
            hidden,
            activation="tanh",
            alpha=alpha,
            solver="lbfgs",
            max_iter=2000,
            random_state=0,
        ),
        "LogisticRegression": LogisticRegression(max_iter=5000),
    }
    print("\nBreast cancer, 50% test split, standardised features:\n")
    print(f"{'model':34s} {'accuracy':>8s} {'log loss':>9s} {'Brier':>7s} {'ECE':>7s}")
    for name, model in models.items():
        pipe = make_pipeline(StandardScaler(), model).fit(X_train, y_train)
        proba = pipe.predict_proba(X_test)
        print(
            f"{name:34s} {accuracy_score(y_test, pipe.predict(X_test)):8.4f} "
            f"{log_loss(y_test, proba):9.4f} "
            f"{multiclass_brier_score(y_test, proba, classes=pipe.classes_):7.4f} "
            f"{expected_calibration_error(y_test, proba, classes=pipe.classes_):7.4f}"
        )


def out_of_distribution_demo():
    """Digits 0-4 in, 5-9 out: how well the max probability separates them."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    seen = y_train < 5
    laplace = LaplaceMLPClassifier((16,), random_state=0).fit(
        X_train[seen], y_train[seen]
    )
    plug_in = copy.deepcopy(laplace).set_params(link_approx="map")  # same fit
    mlp = MLPClassifier((16,), activation="tanh", random_state=0, max_iter=1000)
    mlp.fit(X_train[seen], y_train[seen])
    inside = y_test < 5
    labels = inside.astype(int)
    print(
        "\nDigits: trained on 0-4; AUROC of max probability, 0-4 (in) vs 5-9 (out):\n"
    )
    for name, model in [
        ("LaplaceMLPClassifier (default)", laplace),
        ("  its MAP network, plug-in", plug_in),
        ("MLPClassifier", mlp),
    ]:
        score = model.predict_proba(X_test).max(axis=1)
        print(f"{name:34s} {roc_auc_score(labels, score):.4f}")


def far_from_data_demo():
    """Two moons in, a box five times as wide out: confidence far from the data."""
    X, y = make_moons(500, noise=0.3, random_state=0)
    low, high = X.min(axis=0), X.max(axis=0)
    centre, width = (low + high) / 2, 5 * (high - low)
    box = np.random.RandomState(0).uniform(
        centre - width / 2, centre + width / 2, size=(2000, 2)
    )
    X_train, X_test, y_train, _ = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    labels = np.r_[np.ones(len(X_test)), np.zeros(len(box))]
    print(
        "\nTwo moons; AUROC of max probability, test points (in) vs a box five "
        "times as wide (out):\n"
    )
    for name, model in [
        ("LaplaceMLPClassifier (default)", LaplaceMLPClassifier((16,), random_state=0)),
        (
            "  same, no residual variance",
            LaplaceMLPClassifier((16,), random_state=0, residual_variance=0.0),
        ),
        (
            "MLPClassifier",
            MLPClassifier((16,), activation="tanh", random_state=0, max_iter=2000),
        ),
    ]:
        pipe = make_pipeline(StandardScaler(), model).fit(X_train, y_train)
        score = np.r_[pipe.predict_proba(X_test), pipe.predict_proba(box)].max(axis=1)
        print(f"{name:34s} {roc_auc_score(labels, score):.4f}")


if __name__ == "__main__":
    hessian_demo()
    classifier_demo()
    out_of_distribution_demo()
    far_from_data_demo()
