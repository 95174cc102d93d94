"""
=====================================================
MAP versus Laplace predictive, near and far from data
=====================================================

A network trained by MAP gives the plug-in probability ``sigmoid(f(x,
theta_map))``, which is as confident far from the training data as in its
middle: nothing in it knows where the data were. The Laplace approximation
puts a Gaussian ``N(theta_map, P^{-1})`` on the weights; through the
linearised network the logit at ``x`` becomes ``N(mu, s2)`` with ``mu =
f(x, theta_map)`` and ``s2 = J P^{-1} J'``, and the probit approximation
(MacKay 1992; Bishop, PRML 4.5.2)

``p(y = 1 | x) = sigmoid(mu / sqrt(1 + pi s2 / 8))``

moderates the prediction where ``s2`` is large. Far from the data a tanh
network saturates and ``J P^{-1} J'`` levels off, so ``s2`` also holds a
residual variance that is zero within the training data's radius and grows
with the cube of the distance beyond it (``residual_variance``): there the
predictive tends to 1/2. Both come from the same fit:
``latent_mean_and_variance`` returns ``mu`` and ``s2``, ``predict_proba``
the probit probability (``link_approx="probit"``, the default).
"""

# %%
# Fit
# ---
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from sklearn.datasets import make_moons

from sklaplace import LaplaceMLPClassifier

X, y = make_moons(n_samples=200, noise=0.2, random_state=0)
clf = LaplaceMLPClassifier((16,), activation="tanh", alpha=0.1, random_state=0)
clf.fit(X, y)
print(f"training accuracy {clf.score(X, y):.3f}")


def plot_data(ax, size):
    """Class 0 as white circles, class 1 as black triangles."""
    ax.scatter(*X[y == 0].T, s=size, marker="o", c="w", edgecolor="k", lw=0.4)
    ax.scatter(*X[y == 1].T, s=size, marker="^", c="k", edgecolor="w", lw=0.4)


# %%
# Probability contours on a wide window
# -------------------------------------
# The data lie in about ``[-1.5, 2.5] x [-1, 1.5]`` (dashed box); the
# window is eight times wider. Outside the box the MAP is near-certain
# everywhere except on a thin band around its extended decision boundary.
# The Laplace predictive keeps most of the window between 0.05 and 0.95.
# Near the data its moderation comes from the posterior, ``J P^{-1} J'``,
# and is strongest where the MAP's boundary runs on beyond the data; there
# the tanh units saturate and that part stops growing. Beyond the training
# rows' largest (standardised) distance from their centre, the residual
# variance takes over and grows with the cube of the distance: the logit's
# standard deviation ``sqrt(s2)`` (right) rises in rings around the data.
xx, yy = np.meshgrid(np.linspace(-15, 16, 250), np.linspace(-15, 15, 250))
grid = np.column_stack([xx.ravel(), yy.ravel()])
mean, cov = clf.latent_mean_and_variance(grid)
p_map = expit(mean[:, 0]).reshape(xx.shape)
p_laplace = clf.predict_proba(grid)[:, 1].reshape(xx.shape)
std = np.sqrt(cov[:, 0, 0]).reshape(xx.shape)
for name, p in [("MAP", p_map), ("Laplace", p_laplace)]:
    share = np.mean((p > 0.05) & (p < 0.95))
    print(f"{name:>7}: 0.05 < p < 0.95 on {share:.0%} of the window")

fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
levels = [0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.99]
panels = [("MAP: sigmoid(mu)", p_map), ("Laplace (probit)", p_laplace)]
for ax, (title, p) in zip(axes, panels):
    filled = ax.contourf(xx, yy, p, levels=[0, *levels, 1], cmap="RdBu_r")
    lines = ax.contour(xx, yy, p, levels=levels, colors="k", linewidths=0.4)
    ax.clabel(lines, fontsize=6)
    ax.set_title(f"{title}: p(y=1 | x)")
fig.colorbar(filled, ax=axes[:2], shrink=0.8, label="p(y = 1 | x)")
image = axes[2].contourf(xx, yy, np.log10(std), levels=20, cmap="viridis")
fig.colorbar(image, ax=axes[2], shrink=0.8, label="log10 sqrt(s2)")
axes[2].set_title("standard deviation of the logit")
for ax in axes:
    plot_data(ax, size=2)
    ax.add_patch(plt.Rectangle((-1.5, -1), 4, 2.5, fill=False, ls="--", lw=0.8))
    ax.set_aspect("equal")

# %%
# The same, zoomed in on the data
# -------------------------------
# Near the data the two agree about the decision boundary (``predict`` is
# the argmax of the moderated probability, and the probit never moves a
# probability across 1/2); the Laplace contours are wider apart where the
# boundary is uncertain.
zx, zy = np.meshgrid(np.linspace(-2, 3, 200), np.linspace(-1.5, 2, 200))
zoom = np.column_stack([zx.ravel(), zy.ravel()])
zoom_mean, _ = clf.latent_mean_and_variance(zoom)
zoom_panels = [
    ("MAP", expit(zoom_mean[:, 0])),
    ("Laplace (probit)", clf.predict_proba(zoom)[:, 1]),
]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
for ax, (title, p) in zip(axes, zoom_panels):
    ax.contourf(zx, zy, p.reshape(zx.shape), levels=[0, *levels, 1], cmap="RdBu_r")
    lines = ax.contour(
        zx, zy, p.reshape(zx.shape), levels=levels, colors="k", linewidths=0.4
    )
    ax.clabel(lines, fontsize=7)
    plot_data(ax, size=14)
    ax.set_title(f"{title}: p(y=1 | x)")
    ax.set_aspect("equal")

# %%
# Confidence along rays leaving the data
# --------------------------------------
# The top-class probability ``max(p, 1 - p)`` at distance ``r`` from the
# centre of the data, in 8 directions: the MAP's goes to 1, the Laplace
# predictive's falls back towards 1/2 once the ray has left the data.
centre = X.mean(axis=0)
radii = np.linspace(0, 40, 200)
fig, ax = plt.subplots(figsize=(7, 4))
far_map, far_laplace = [], []
for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
    ray = centre + radii[:, None] * np.array([np.cos(angle), np.sin(angle)])
    ray_mean, _ = clf.latent_mean_and_variance(ray)
    conf_map = np.maximum(expit(ray_mean[:, 0]), expit(-ray_mean[:, 0]))
    conf_laplace = clf.predict_proba(ray).max(axis=1)
    ax.plot(radii, conf_map, color="tab:blue", lw=1)
    ax.plot(radii, conf_laplace, color="tab:orange", lw=1)
    far_map.append(conf_map[-1])
    far_laplace.append(conf_laplace[-1])
ax.plot([], [], color="tab:blue", label="MAP")
ax.plot([], [], color="tab:orange", label="Laplace (probit)")
ax.axvspan(0, 2, color="grey", alpha=0.15, label="data")
ax.set_xlabel("distance from the centre of the data")
ax.set_ylabel("max(p, 1 - p)")
ax.set_ylim(0.45, 1.02)
ax.legend(loc="lower right")
fig.tight_layout()

far_map, far_laplace = np.array(far_map), np.array(far_laplace)
print("confidence at distance 40, MAP:    ", far_map.round(4))
print("confidence at distance 40, Laplace:", far_laplace.round(3))

# The example's check: at distance 40 the MAP is certain in every direction,
# the Laplace predictive close to 1/2, and on the training data the two
# agree on the class of every point.
assert far_map.min() > 0.999
assert far_laplace.max() < 0.6
assert np.all(far_laplace < far_map)
train_mean, _ = clf.latent_mean_and_variance(X)
assert np.array_equal(clf.predict(X), (train_mean[:, 0] > 0).astype(int))
