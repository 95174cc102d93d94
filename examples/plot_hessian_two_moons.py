"""
==========================================================
Exact, Gauss-Newton and diagonal Hessians of a small MLP
==========================================================

A 2-3-1 network with logistic-sigmoid hidden units is fitted to the two
moons by :class:`~sklaplace.LaplaceMLPClassifier`. At its MAP we ask
:func:`~sklaplace.log_posterior_hessian` for the Hessian of the log
posterior three ways:

* ``kind="exact"``: ``-(sum_n J_n' Lambda_n J_n + sum_nk r_nk d2f_nk + A)``,
  by second-order backpropagation;
* ``kind="ggn"``: the generalised Gauss-Newton (outer-product)
  approximation, which drops the residual term ``sum_nk r_nk d2f_nk``;
* ``kind="ggn_diag"``: the diagonal of the GGN only (the approximation of
  "Optimal Brain Damage"; ``kind="exact_diag"`` is the exact Hessian's).

The network has ``2*3 + 3 + 3*1 + 1 = 13`` parameters, in the order
``theta = [W_0.ravel(), b_0, W_1.ravel(), b_1]``. The heat maps below show
the posterior precision ``P = -H`` in that order.
"""

# %%
# Fit the network
# ---------------
# ``bias_prior_precision=1.0`` (the default is 0.1); ``alpha=0.03`` is a weak
# prior on the weights. A network this small has several local optima on
# the moons (some seeds find a nearly linear boundary); ``random_state=1``
# finds a curved one.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import SymLogNorm
from sklearn.datasets import make_moons
from sklearn.inspection import DecisionBoundaryDisplay

from sklaplace import LaplaceMLPClassifier, log_posterior_hessian

X, y = make_moons(n_samples=200, noise=0.2, random_state=0)
clf = LaplaceMLPClassifier(
    hidden_layer_sizes=(3,),
    activation="logistic",
    alpha=0.03,
    bias_prior_precision=1.0,
    hessian="exact",
    prior_precision_scale=1.0,  # the classical posterior: P is the Hessian
    random_state=1,
).fit(X, y)
print(f"training accuracy {clf.score(X, y):.3f}, {clf.n_iter_} Newton iterations")
print(f"curvature used for the posterior: {clf.curvature_!r}")

fig, ax = plt.subplots(figsize=(5, 4))
DecisionBoundaryDisplay.from_estimator(
    clf, X, response_method="predict_proba", cmap="RdBu_r", alpha=0.6, ax=ax
)
ax.scatter(*X[y == 0].T, s=15, marker="o", c="w", edgecolor="k", lw=0.5, label="y=0")
ax.scatter(*X[y == 1].T, s=15, marker="^", c="k", edgecolor="w", lw=0.5, label="y=1")
ax.legend(loc="lower left")
ax.set_title("2-3-1 logistic-sigmoid network, p(y=1 | x)")
fig.tight_layout()

# %%
# Three Hessians at the MAP
# -------------------------
# The functional API takes MLPClassifier's ``coefs_``/``intercepts_`` layout,
# so the fitted estimator's attributes are passed as they are. The prior must
# be the one the estimator used: ``alpha`` on the weights and
# ``bias_prior_precision`` on the biases (the functional API's own defaults
# are MLPClassifier's, ``alpha=1e-4`` and a flat bias prior).
prior = dict(
    activation="logistic",
    alpha=clf.alpha,
    bias_prior_precision=clf.bias_prior_precision,
)
H = {
    kind: log_posterior_hessian(clf.coefs_, clf.intercepts_, X, y, kind=kind, **prior)
    for kind in ("exact", "ggn", "ggn_diag")
}
P_exact, P_ggn, P_diag = -H["exact"], -H["ggn"], np.diag(-H["ggn_diag"])

names = (
    [f"W0[{i},{j}]" for i in range(2) for j in range(3)]
    + [f"b0[{j}]" for j in range(3)]
    + [f"W1[{i},0]" for i in range(3)]
    + ["b1[0]"]
)
panels = {
    "exact: -H": P_exact,
    "GGN": P_ggn,
    "diagonal of the GGN": P_diag,
    "exact - GGN (residual term)": P_exact - P_ggn,
}
# Entries span four orders of magnitude: a symmetric log scale shows them all.
norm = SymLogNorm(linthresh=0.05, vmin=-250, vmax=250)
fig, axes = plt.subplots(1, 4, figsize=(17, 4.6), constrained_layout=True)
for ax, (title, P) in zip(axes, panels.items()):
    image = ax.imshow(P, cmap="RdBu_r", norm=norm)
    ax.set_title(title)
    ax.set_xticks(range(13), names, rotation=90, fontsize=7)
    ax.set_yticks(range(13), names, fontsize=7)
fig.colorbar(
    image,
    ax=axes,
    shrink=0.8,
    ticks=[-100, -10, -1, -0.1, 0, 0.1, 1, 10, 100],
    label="entry of the posterior precision (symmetric log scale)",
)

# %%
# The residual term ``sum_nk r_nk d2f_nk / dtheta2`` has a fixed sparsity
# pattern. The logit ``f = sum_j W1[j] sigmoid(x @ W0[:, j] + b0[j]) + b1`` is
# linear in the output layer, so the term vanishes on the ``W1``/``b1`` block,
# and no second derivative mixes two different hidden units. What is left are
# three small blocks, one per hidden unit: its input weights and bias among
# themselves and with its own output weight. The GGN misses exactly these
# entries. They are a few per cent of the largest entry, but they change
# the posterior variances ``diag(P^{-1})`` by up to a factor of about two:
residual = P_exact - P_ggn
same_unit = np.zeros((13, 13), dtype=bool)
for j in range(3):
    unit = [j, 3 + j, 6 + j, 9 + j]  # W0[0, j], W0[1, j], b0[j], W1[j, 0]
    same_unit[np.ix_(unit, unit)] = True
np.testing.assert_allclose(residual[~same_unit], 0.0, atol=1e-10)
np.testing.assert_allclose(residual[9:, 9:], 0.0, atol=1e-10)
print(f"max |exact - GGN| / max |GGN| = {np.abs(residual).max() / P_ggn.max():.3f}")
ratio = np.diag(np.linalg.inv(P_exact)) / np.diag(np.linalg.inv(P_ggn))
print("posterior variance, exact / GGN:")
for name, value in zip(names, ratio):
    print(f"  {name:8s} {value:.2f}")
np.testing.assert_allclose(np.diag(P_ggn), -H["ggn_diag"], rtol=1e-12)

# %%
# Spectra and positive definiteness
# ---------------------------------
# The Laplace approximation needs a positive-definite precision. The GGN is
# positive definite whenever the prior is (its smallest eigenvalue is at
# least ``min(alpha, bias_prior_precision)``); the exact ``-H`` need not be
# away from a minimum, but at this MAP it is, so ``hessian="exact"`` was
# used without a fallback (``curvature_ == "exact"``).
eig = {
    "exact": np.linalg.eigvalsh(P_exact),
    "GGN": np.linalg.eigvalsh(P_ggn),
    "diag": np.sort(-H["ggn_diag"]),
}
for kind, values in eig.items():
    print(f"{kind:>5}: smallest eigenvalue {values[0]:.4f}, largest {values[-1]:.1f}")

fig, ax = plt.subplots(figsize=(6, 4))
for (kind, values), marker in zip(eig.items(), "osd"):
    ax.semilogy(range(1, 14), values, marker=marker, label=kind)
ax.axhline(0.03, color="grey", linestyle=":", label="alpha = 0.03")
ax.set_xlabel("eigenvalue index (ascending)")
ax.set_ylabel("eigenvalue of the posterior precision")
ax.set_title("Spectra at the MAP (diag: its entries)")
ax.legend()
fig.tight_layout()

# The example's check: the negative exact Hessian is positive definite at the
# MAP, and the fitted posterior is exactly that matrix (P = L L').
assert eig["exact"][0] > 0
assert clf.curvature_ == "exact"
L = clf.posterior_.cholesky_factor
np.testing.assert_allclose(L @ L.T, P_exact, rtol=1e-10, atol=1e-10)
