"""
=====================================================
Choosing the prior precision by cross-validation
=====================================================

:class:`~sklaplace.LaplaceMLPClassifier` is an ordinary scikit-learn
estimator: it goes into a :class:`~sklearn.pipeline.Pipeline` after a
:class:`~sklearn.preprocessing.StandardScaler`, and
:class:`~sklearn.model_selection.GridSearchCV` tunes its parameters, here
the weight prior precision ``alpha``, by the cross-validated log loss
(``scoring="neg_log_loss"``), with fits run in parallel (``n_jobs=2``).

``alpha`` sets both the MAP (through the penalty ``alpha/2 ||W||^2``) and the
width of the Laplace posterior, hence how much the probit predictive
moderates. To see what the moderation is worth on this data, the grid also
includes ``link_approx``: ``"probit"`` (the Laplace predictive, the default)
and ``"map"`` (the same fitted network's plug-in probabilities).
"""

# %%
# The search
# ----------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)

pipe = make_pipeline(
    StandardScaler(), LaplaceMLPClassifier((8,), activation="tanh", random_state=0)
)
alphas = np.logspace(-2, 3, 11)
search = GridSearchCV(
    pipe,
    param_grid={
        "laplacemlpclassifier__alpha": alphas,
        "laplacemlpclassifier__link_approx": ["probit", "map"],
    },
    scoring="neg_log_loss",
    cv=StratifiedKFold(5, shuffle=True, random_state=0),
    n_jobs=2,
)
search.fit(X_train, y_train)
print("best parameters:", search.best_params_)
print(f"best CV log loss: {-search.best_score_:.4f}")

# %%
# Cross-validated log loss against alpha
# --------------------------------------
results = search.cv_results_
curves = {}
fig, ax = plt.subplots(figsize=(7, 4.5))
for link, color in [("probit", "tab:orange"), ("map", "tab:blue")]:
    rows = results["param_laplacemlpclassifier__link_approx"] == link
    loss = -results["mean_test_score"][rows]
    spread = results["std_test_score"][rows]
    curves[link] = loss
    ax.errorbar(
        alphas,
        loss,
        yerr=spread,
        marker="o",
        capsize=3,
        color=color,
        label=f'link_approx="{link}"',
    )
    best = np.argmin(loss)
    ax.plot(alphas[best], loss[best], "*", ms=16, color=color, mec="k")
    print(
        f"{link:>6}: best alpha {alphas[best]:g}, CV log loss {loss[best]:.4f} "
        f"(alpha=1: {loss[alphas == 1.0][0]:.4f})"
    )
ax.set_xscale("log")
ax.set_ylim(0, 0.7)
ax.set_xlabel("alpha (prior precision of the weights)")
ax.set_ylabel("5-fold CV log loss (mean, std over folds)")
ax.set_title("Breast cancer, 8 tanh units: the star marks each curve's best")
ax.legend(loc="upper center")
fig.tight_layout()

# %%
# What the search found
# ---------------------
# Both curves have the usual shape: a small ``alpha`` overfits (and, for the
# probit, gives a wide posterior that moderates every prediction), a large
# one underfits. The probit curve's minimum lies at a stronger prior than
# the MAP curve's (``alpha`` 3.2 against 1 in this run): at ``alpha=1`` the
# posterior is wide enough to over-moderate, and a stronger prior narrows
# it. On this data set the moderation does not pay off in-distribution: the
# plug-in MAP probabilities have the lower cross-validated log loss from
# ``alpha=0.03`` up, and the best MAP beats the best probit (the reliability
# diagrams in :ref:`sphx_glr_auto_examples_plot_reliability_diagrams.py`
# show the same: the MAP network is already calibrated); at the overfitting
# end (``alpha=0.01``) the two are close. The Laplace predictive earns its
# keep away from the data; see
# :ref:`sphx_glr_auto_examples_plot_predictive_uncertainty.py`.
#
# ``search.best_estimator_`` is the whole pipeline refitted on the training
# set with the best parameters; it scores the held-out test set:
test_loss = log_loss(y_test, search.predict_proba(X_test))
print(f"held-out log loss of the refitted best pipeline: {test_loss:.4f}")

# The example's checks.
optimum = {link: alphas[np.argmin(loss)] for link, loss in curves.items()}
assert optimum["probit"] >= optimum["map"]  # the probit: a stronger prior
assert np.all((curves["map"] <= curves["probit"] + 1e-3)[alphas > 0.02])
assert curves["map"].min() < curves["probit"].min()
assert test_loss < 0.15
