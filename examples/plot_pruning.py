"""
=====================================================
Pruning with the Hessian: magnitude, OBD and OBS
=====================================================

A trained network's Hessian says which weights it can lose. Optimal Brain
Damage (LeCun et al. 1989) ranks weight ``q`` by ``1/2 H_qq theta_q^2``, the
loss increase if it alone is set to zero; Optimal Brain Surgeon (Hassibi &
Stork 1993) by ``theta_q^2 / (2 [H^-1]_qq)``, the increase when the other
weights move to make up for it, and it moves them. Magnitude pruning, the
baseline, drops the smallest ``|theta_q|``.

:func:`sklaplace.prune` removes a fraction of the weights of a fitted
:class:`~sklaplace.LaplaceMLPClassifier` and returns a new estimator whose
pruned weights are exactly zero; refitting that copy with ``warm_start=True``
re-trains the kept weights, holding the pruned ones at zero. Here: test log
loss and accuracy on breast cancer against the fraction pruned, as pruned
(solid) and re-trained (dashed).
"""

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, prune

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)


def score(model):
    return (
        log_loss(y_test, model.predict_proba(X_test)),
        accuracy_score(y_test, model.predict(X_test)),
    )


start = time.perf_counter()
clf = LaplaceMLPClassifier(
    (16,),
    activation="tanh",
    alpha=1.0,
    bias_prior_precision=1.0,
    link_approx="map",
    random_state=0,
)
clf.fit(X_train, y_train)
fractions = np.round(np.linspace(0.0, 0.9, 10), 1)
methods = ["magnitude", "obd", "obs"]
curves = {}  # (method, stage) -> [(log loss, accuracy) per fraction]
steps = {}  # method -> Newton steps of each re-training
for method in methods:
    for fraction in fractions:
        pruned = prune(clf, fraction, method=method)
        curves.setdefault((method, "pruned"), []).append(score(pruned))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pruned.set_params(warm_start=True).fit(X_train, y_train)
        curves.setdefault((method, "retrained"), []).append(score(pruned))
        steps.setdefault(method, []).append(pruned.n_iter_)
print(f"1 fit, 30 prunings and 30 re-trainings in {time.perf_counter() - start:.1f} s")
half = list(fractions).index(0.5)
for method in methods:
    print(
        f"{method:>9} at 50%: test log loss {curves[method, 'pruned'][half][0]:.4f} "
        f"as pruned, {curves[method, 'retrained'][half][0]:.4f} re-trained in "
        f"{steps[method][half]} Newton steps"
    )

# %%
# Solid: as pruned. Dashed: after re-training the kept weights.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
colors = {"magnitude": "tab:gray", "obd": "tab:blue", "obs": "tab:red"}
for method in methods:
    for stage, style in (("pruned", "-"), ("retrained", "--")):
        values = np.array(curves[method, stage])
        label = f"{method} ({stage})"
        for ax, column in zip(axes, (0, 1)):
            ax.plot(
                fractions,
                values[:, column],
                style,
                color=colors[method],
                marker="o",
                markersize=3,
                label=label,
            )
axes[0].set_ylabel("test log loss")
axes[1].set_ylabel("test accuracy")
for ax in axes:
    ax.set_xlabel("fraction of weights pruned")
axes[0].set_yscale("log")
axes[1].legend(fontsize=7)
fig.suptitle("breast cancer, 30-16-1 tanh network")
fig.tight_layout()

# %%
# On one split of 171 test points the three are within noise of each other
# up to 70% (the benchmarks average ten splits: at 50%, OBS < OBD <
# magnitude on breast cancer and digits). Beyond that OBS's correction keeps
# the network close to the pruned optimum and is clearly best without
# re-training; re-training is what rescues magnitude and OBD pruning there
# (it lowers their loss at 80% and cuts it by a half or more at 90%).
as_pruned = {m: np.array(curves[m, "pruned"])[:, 0] for m in methods}
retrained = {m: np.array(curves[m, "retrained"])[:, 0] for m in methods}
for fraction in (0.8, 0.9):
    i = list(fractions).index(fraction)
    assert as_pruned["obs"][i] < min(as_pruned["obd"][i], as_pruned["magnitude"][i])
    for method in ("magnitude", "obd"):
        cut = 0.5 if fraction == 0.9 else 1.0
        assert retrained[method][i] < cut * as_pruned[method][i]
