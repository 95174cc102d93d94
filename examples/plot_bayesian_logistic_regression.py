"""
====================================================================
Bayesian logistic regression: the Hessian is Phi' Lambda Phi + A
====================================================================

With ``hidden_layer_sizes=()`` :class:`~sklaplace.LaplaceMLPClassifier` has
no hidden layer: the logit is linear in the parameters, ``f = Phi theta``,
and the model is Bayesian logistic regression (Bishop, PRML 4.5). Here the
basis is the polynomial ``[1, x, x^2]``: the features are ``[x, x^2]`` and
the network's bias plays the part of the constant ``1``.

For a linear logit the second derivative of ``f`` vanishes, so the exact
Hessian and the generalised Gauss-Newton coincide and the posterior
precision is

``P = -H = Phi' Lambda Phi + A``, with ``Lambda = diag(p_n (1 - p_n))``

(PRML eq. 4.143). This example checks that identity numerically, shows the
Laplace predictive, and then shows what happens to the conditioning of ``P``
when the prior precision goes to 0 and two features are collinear.
"""

# %%
# Data from a quadratic logit
# ---------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from sklaplace import LaplaceMLPClassifier, log_posterior_hessian
from sklaplace.exceptions import LaplaceApproximationWarning

rng = np.random.RandomState(0)
x = rng.uniform(-3, 3, size=100)
y = (rng.uniform(size=x.size) < expit(1.0 + 0.5 * x - 0.8 * x**2)).astype(int)
features = np.column_stack([x, x**2])

# ``prior_precision_scale=1.0``: the classical posterior, whose precision is
# the Hessian of the negative log posterior itself (the default rescales the
# prior part after the MAP, see the user guide).
clf = LaplaceMLPClassifier(
    hidden_layer_sizes=(),
    alpha=1.0,
    bias_prior_precision=1.0,
    prior_precision_scale=1.0,
    random_state=0,
)
clf.fit(features, y)
print("weights", clf.coefs_[0].ravel(), "bias", clf.intercepts_[0])

# %%
# The Hessian at the MAP, three ways
# ----------------------------------
# ``theta = [W_0.ravel(), b_0] = [w_x, w_xx, b]``, so the design matrix with
# the constant column LAST is ``Phi = [x, x^2, 1]``, and ``A = diag(alpha,
# alpha, bias_prior_precision)``.
Phi = np.column_stack([x, x**2, np.ones_like(x)])
theta_map = np.concatenate([clf.coefs_[0].ravel(), clf.intercepts_[0]])
p = expit(Phi @ theta_map)
A = np.diag([1.0, 1.0, 1.0])
P_formula = Phi.T @ ((p * (1 - p))[:, None] * Phi) + A

prior = dict(alpha=1.0, bias_prior_precision=1.0)
P_exact = -log_posterior_hessian(clf.coefs_, clf.intercepts_, features, y, **prior)
P_ggn = -log_posterior_hessian(
    clf.coefs_, clf.intercepts_, features, y, kind="ggn", **prior
)
L = clf.posterior_.cholesky_factor
P_fitted = L @ L.T
print("Phi' Lambda Phi + A =\n", P_formula.round(3))
for name, P in [("exact", P_exact), ("GGN", P_ggn), ("fitted L L'", P_fitted)]:
    error = np.abs(P - P_formula).max() / np.abs(P_formula).max()
    print(f"{name:>12}: max relative difference {error:.1e}")
    np.testing.assert_allclose(P, P_formula, rtol=1e-10)

# %%
# With ``bias_prior_precision=0`` the MAP is scikit-learn's
# ``LogisticRegression(C=1/alpha)``:
flat_bias = LaplaceMLPClassifier((), alpha=1.0, bias_prior_precision=0.0, tol=1e-10)
flat_bias.fit(features, y)
logreg = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(features, y)
np.testing.assert_allclose(flat_bias.coefs_[0].ravel(), logreg.coef_[0], rtol=1e-5)
np.testing.assert_allclose(flat_bias.intercepts_[0], logreg.intercept_, rtol=1e-5)

# %%
# The predictive, in and beyond the data
# --------------------------------------
# The thin lines are ``sigmoid(f)`` for 30 draws ``theta ~ N(theta_map,
# P^{-1})``; ``predict_proba`` (probit) averages over them in closed form. It
# is pulled towards 1/2, relative to the MAP's plug-in probability, where the
# draws spread most: on the flanks of the bump, near the edge of the data
# (the shaded regions have no data). Far out the quadratic term makes every
# draw confident, and both curves go to 0.
grid = np.linspace(-5, 5, 300)
grid_features = np.column_stack([grid, grid**2])
grid_Phi = np.column_stack([grid, grid**2, np.ones_like(grid)])
draws = theta_map + np.linalg.solve(L.T, rng.standard_normal((3, 30))).T

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(grid, expit(grid_Phi @ draws.T), color="tab:grey", lw=0.5, alpha=0.5)
ax.plot(grid, expit(grid_Phi @ theta_map), color="tab:blue", lw=2, label="MAP")
ax.plot(
    grid,
    clf.predict_proba(grid_features)[:, 1],
    color="tab:orange",
    lw=2,
    ls="--",
    label="Laplace (probit)",
)
ax.scatter(x, y + rng.uniform(-0.03, 0.03, x.size), s=8, color="k", label="data")
ax.axvspan(-5, -3, color="tab:grey", alpha=0.1)
ax.axvspan(3, 5, color="tab:grey", alpha=0.1)
ax.set_xlabel("x")
ax.set_ylabel("p(y = 1 | x)")
ax.set_title("Logistic regression on [1, x, x^2]; grey lines: posterior draws")
ax.legend(loc="center right")
fig.tight_layout()

# %%
# Vanishing prior precision and collinear features
# ------------------------------------------------
# Now let ``alpha = bias_prior_precision`` go to 0, once with the features
# ``[x, x^2]`` and once with ``x^2`` duplicated, ``[x, x^2, x^2]``. The
# duplicated pair has a direction ``v = (0, 1, -1, 0) / sqrt(2)`` with
# ``Phi v = 0``: the likelihood is flat along it, ``P v = alpha v``, and the
# smallest eigenvalue of ``P`` is exactly ``alpha`` -- the prior alone keeps
# the posterior proper, and ``cond(P)`` grows like ``1 / alpha``. Without the
# duplicate the data pin every direction and both curves level off.
alphas = np.logspace(2, -8, 11)
spectra = {}
for label, X in [
    ("[x, x^2]", features),
    ("[x, x^2, x^2]", np.column_stack([features, x**2])),
]:
    eigenvalues = []
    for alpha in alphas:
        model = LaplaceMLPClassifier(
            (),
            alpha=alpha,
            bias_prior_precision=alpha,
            prior_precision_scale=1.0,
            random_state=0,
        )
        factor = model.fit(X, y).posterior_.cholesky_factor
        eigenvalues.append(np.linalg.eigvalsh(factor @ factor.T))
    spectra[label] = np.array(eigenvalues)
    print(
        f"{label:>14}: alpha=1e-8 -> smallest eigenvalue "
        f"{eigenvalues[-1][0]:.3g}, condition number "
        f"{eigenvalues[-1][-1] / eigenvalues[-1][0]:.3g}"
    )

fig, (ax_min, ax_cond) = plt.subplots(1, 2, figsize=(10, 4))
for label, values in spectra.items():
    ax_min.loglog(alphas, values[:, 0], marker="o", label=label)
    ax_cond.loglog(alphas, values[:, -1] / values[:, 0], marker="o", label=label)
ax_min.loglog(alphas, alphas, color="k", ls=":", label="alpha")
ax_min.set_ylabel("smallest eigenvalue of P")
ax_cond.set_ylabel("condition number of P")
for ax in (ax_min, ax_cond):
    ax.set_xlabel("alpha = bias_prior_precision")
    ax.invert_xaxis()
    ax.legend()
fig.tight_layout()

# The example's check: with the duplicate, the smallest eigenvalue IS alpha;
# without it, it tends to a positive limit (the data term's smallest).
np.testing.assert_allclose(spectra["[x, x^2, x^2]"][:, 0], alphas, rtol=1e-4)
assert spectra["[x, x^2]"][-1, 0] > 1.0

# %%
# At ``alpha = 0`` the precision of the duplicated model is singular: the
# likelihood says nothing about how the weight of ``x^2`` is split between
# the two copies. In floating point its Cholesky factorisation may fail or may
# succeed with a tiny pivot, depending on rounding. The estimator does not
# return NaNs either way, and says what it did with a
# :class:`~sklaplace.exceptions.LaplaceApproximationWarning`: when the
# factorisation fails it adds a small jitter to the diagonal and records it in
# ``posterior_jitter_``; when it succeeds with a squared pivot ``L_ii^2``
# below ``1e-10`` of the largest diagonal entry it keeps the factor and
# warns. The flat direction does not change any prediction (``Phi v = 0``):
# the Laplace predictive equals that of the model without the duplicate.
duplicated = np.column_stack([features, x**2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", LaplaceApproximationWarning)
    singular = LaplaceMLPClassifier(
        (), alpha=0.0, bias_prior_precision=0.0, random_state=0
    ).fit(duplicated, y)
for w in caught:
    if issubclass(w.category, LaplaceApproximationWarning):
        print("LaplaceApproximationWarning:", w.message)
print(f"posterior_jitter_ = {singular.posterior_jitter_:.3g}")
unique = LaplaceMLPClassifier((), alpha=0.0, bias_prior_precision=0.0, random_state=0)
unique.fit(features, y)
np.testing.assert_allclose(
    singular.predict_proba(np.column_stack([grid_features, grid**2])),
    unique.predict_proba(grid_features),
    atol=1e-4,  # a tiny pivot costs some digits in J P^{-1} J'
)
