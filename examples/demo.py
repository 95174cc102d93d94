"""sklaplace demo: the Hessian of the log posterior of a small MLP.

Run with ``python examples/demo.py`` (see the README for the one-line setup).
"""

import warnings

import numpy as np
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import log_posterior_hessian

np.set_printoptions(precision=2, suppress=True, linewidth=110)


def hessian_demo():
    """Exact, GGN and diagonal Hessians of a 2-3-1 tanh network on iris."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X[:, :2])
    y = (y == 1).astype(int)  # versicolor vs rest: not linearly separable
    mlp = MLPClassifier((3,), activation="tanh", alpha=1.0, solver="lbfgs", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    kw = dict(activation="tanh", alpha=1.0, bias_prior_precision=0.0)
    exact = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="exact", **kw)
    ggn = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="ggn", **kw)
    diag = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="diag", **kw)
    print("Hessian of the log posterior of a 2-3-1 tanh MLP on iris (13 parameters,")
    print("order [W_0.ravel(), b_0, W_1.ravel(), b_1]), at MLPClassifier's MAP:\n")
    print(exact)
    print("\neigenvalues, exact:", np.linalg.eigvalsh(exact))
    print("eigenvalues, GGN:  ", np.linalg.eigvalsh(ggn))
    print("max |exact - GGN| =", np.max(np.abs(exact - ggn)))
    print("diag == diag(GGN):", np.allclose(diag, np.diag(ggn)))
    print("exact Hessian negative definite at the MAP:", np.linalg.eigvalsh(exact).max() < 0)


if __name__ == "__main__":
    hessian_demo()
