"""
=================================================
Reliability diagrams on the breast-cancer data
=================================================

A reliability diagram bins the predictions by their confidence (the largest
predicted probability) and plots, per bin, the fraction that is correct. A
calibrated classifier lies on the diagonal; bars below it are
overconfident, bars above it underconfident. The expected calibration error
(:func:`sklaplace.metrics.expected_calibration_error`, Guo et al. 2017) is
the bin-size-weighted mean distance of the bars from the diagonal.

We compare, on out-of-fold predictions of 5-fold cross-validation over all
569 samples of :func:`~sklearn.datasets.load_breast_cancer`:

* ``MLPClassifier``, a tanh network with 8 hidden units and ``alpha=1``
  (the MAP alone);
* the same wrapped in ``CalibratedClassifierCV(method="temperature")``
  (temperature scaling, added in scikit-learn 1.8; with the default
  ``cv=5`` and ``ensemble="auto"`` it averages five network-and-temperature
  pairs, each calibrated on its held-out fold);
* ``GaussianProcessClassifier`` with an RBF kernel (scikit-learn's own
  Laplace approximation, for a Gaussian process). Its hyper-parameters are
  fixed at about the values its marginal-likelihood optimiser finds on these
  folds (amplitude 15-60, length scale 10-17); optimising them in every
  fold would take most of this example's time;
* :class:`~sklaplace.LaplaceMLPClassifier` with the same network and
  ``alpha``, and, from the same fits, its own MAP's plug-in probability
  ``sigmoid(mu)`` from ``latent_mean_and_variance``.
"""

# %%
# Out-of-fold probabilities
# -------------------------
# Each model sees the same folds; the features are standardised inside each
# training fold by a pipeline.
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF, ConstantKernel
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier
from sklaplace.metrics import expected_calibration_error

X, y = load_breast_cancer(return_X_y=True)


def mlp():
    return MLPClassifier(
        (8,),
        activation="tanh",
        alpha=1.0,
        solver="lbfgs",
        max_iter=2000,
        random_state=0,
    )


models = {
    "MLPClassifier": mlp(),
    "MLP + temperature scaling": CalibratedClassifierCV(mlp(), method="temperature"),
    "GaussianProcessClassifier": GaussianProcessClassifier(
        ConstantKernel(20.0**2) * RBF(12.0), optimizer=None
    ),
    "LaplaceMLPClassifier": LaplaceMLPClassifier(
        (8,), activation="tanh", alpha=1.0, random_state=0
    ),
}
proba = {name: np.zeros((len(y), 2)) for name in models}
proba["LaplaceMLPClassifier, MAP link"] = np.zeros((len(y), 2))

folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
for train, test in folds.split(X, y):
    for name, model in models.items():
        pipe = make_pipeline(StandardScaler(), clone(model)).fit(X[train], y[train])
        proba[name][test] = pipe.predict_proba(X[test])
        if name == "LaplaceMLPClassifier":
            mean, _ = pipe[-1].latent_mean_and_variance(pipe[0].transform(X[test]))
            p_map = expit(mean[:, 0])
            proba["LaplaceMLPClassifier, MAP link"][test] = np.c_[1 - p_map, p_map]

# %%
# Scores
# ------
n_bins = 15  # expected_calibration_error's default
summary = {}
for name, p in proba.items():
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    summary[name] = dict(
        ece=expected_calibration_error(y, p, n_bins=n_bins),
        log_loss=log_loss(y, p),
        accuracy=correct.mean(),
        confidence=confidence.mean(),
    )
    print(
        f"{name:32s} ECE {summary[name]['ece']:.4f}  log loss "
        f"{summary[name]['log_loss']:.4f}  accuracy {correct.mean():.4f}  "
        f"mean confidence {confidence.mean():.4f}"
    )

# %%
# Reliability diagrams
# --------------------
# Top row: the fraction correct per confidence bin (bars), and the bin's
# mean confidence (red marks, close to the diagonal). A bar above its red
# mark is an underconfident bin, one below it an overconfident bin.
# Bottom row: how many predictions fall in each bin (log scale). The bins
# are ``expected_calibration_error``'s: 15 equal-width bins of ``[0, 1]``,
# of which a binary problem uses only those above 1/2.
edges = np.linspace(0, 1, n_bins + 1)
fig, axes = plt.subplots(
    2,
    len(proba),
    figsize=(4 * len(proba), 6.5),
    sharex=True,
    gridspec_kw=dict(height_ratios=[3, 1]),
)
for (name, p), (ax, ax_count) in zip(proba.items(), axes.T):
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    used = counts > 0
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins)[used] / counts[used]
    mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins)[used]
    mean_conf /= counts[used]
    # The diagram is the metric: its weighted gaps add up to the ECE.
    ece = np.sum(counts[used] / len(y) * np.abs(accuracy - mean_conf))
    np.testing.assert_allclose(ece, summary[name]["ece"], rtol=1e-12)

    left, width = edges[:-1][used], 1 / n_bins
    ax.bar(left, accuracy, width, align="edge", edgecolor="k", label="accuracy")
    ax.hlines(
        mean_conf,
        left,
        left + width,
        color="tab:red",
        lw=2.5,
        label="mean confidence in the bin",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(7 / 15, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name}\nECE {ece:.3f}, log loss {summary[name]['log_loss']:.3f}")
    ax_count.bar(left, counts[used], width, align="edge", color="tab:grey")
    ax_count.set_yscale("log")
    ax_count.set_xlabel("confidence max_k p_k")
axes[0, 0].set_ylabel("fraction correct")
axes[1, 0].set_ylabel("predictions")
axes[0, 0].legend(loc="upper left")
fig.tight_layout()

# %%
# What the numbers say
# --------------------
# On this data set, at ``alpha=1``, the MAP network is already well
# calibrated, and temperature scaling changes little. The Laplace predictive
# moderates every prediction towards 1/2 (the probit never increases a
# confidence). Its posterior's prior precision is chosen on rows left out
# (``prior_precision_scale="auto"``: approximate leave-one-out with this full
# posterior), and among the scales those rows cannot tell apart it takes the
# most cautious one: here that leaves it slightly
# *underconfident*, its mean confidence below its accuracy, for about the
# log loss and ECE of its own MAP. Its accuracy is
# the MAP's, since for two classes the probit never moves a probability
# across 1/2. What the moderation buys shows away from the training data:
# see :ref:`sphx_glr_auto_examples_plot_predictive_uncertainty.py`. The
# Gaussian process is also a little underconfident here.
laplace = summary["LaplaceMLPClassifier"]
laplace_map = summary["LaplaceMLPClassifier, MAP link"]
assert laplace["confidence"] < laplace["accuracy"]  # underconfident
assert abs(laplace["log_loss"] - laplace_map["log_loss"]) < 0.01
assert laplace["accuracy"] == laplace_map["accuracy"]
assert all(s["accuracy"] > 0.95 and s["ece"] < 0.1 for s in summary.values())
