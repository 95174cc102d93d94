"""
=====================================================
Choosing the hidden-layer width by the evidence
=====================================================

The Laplace log marginal likelihood (the *evidence*) scores a network on the
training data alone: it trades the fit (the log likelihood at the MAP)
against the volume the posterior occupies relative to the prior. Here
``LaplaceMLPClassifier(alpha="evidence")`` tunes the weight prior by
MacKay's updates for each hidden-layer width, and the evidence of each width
is set beside its 5-fold cross-validated log loss, which costs five more fits
per width.
"""

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier

X, y = load_wine(return_X_y=True)
widths = [1, 2, 4, 8, 12]
evidence, cv_log_loss = [], []
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # convergence notes on the smallest nets
    for width in widths:
        model = make_pipeline(
            StandardScaler(),
            LaplaceMLPClassifier((width,), alpha="evidence", random_state=0),
        )
        model.fit(X, y)
        evidence.append(model[-1].log_marginal_likelihood_)
        scores = cross_val_score(
            model,
            X,
            y,
            scoring="neg_log_loss",
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        )
        cv_log_loss.append(-scores.mean())
print(f"{len(widths) * 6} fits in {time.perf_counter() - start:.1f} s")
for width, z, loss in zip(widths, evidence, cv_log_loss):
    print(f"width {width:2d}: log evidence {z:8.2f}   CV log loss {loss:.4f}")

# %%
# The evidence and the cross-validated log loss side by side.
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(widths, evidence, "o-", color="tab:blue")
ax.set_xlabel("hidden units")
ax.set_ylabel("log evidence", color="tab:blue")
ax2 = ax.twinx()
ax2.plot(widths, cv_log_loss, "s--", color="tab:red")
ax2.set_ylabel("5-fold CV log loss", color="tab:red")
best_evidence = widths[int(np.argmax(evidence))]
best_cv = widths[int(np.argmin(cv_log_loss))]
ax.set_title(f"wine: evidence picks {best_evidence} units, CV picks {best_cv}")
fig.tight_layout()

# %%
# The width the evidence picks is within a few hundredths of the best
# cross-validated log loss, from one fit per width instead of six.
chosen = cv_log_loss[widths.index(best_evidence)]
print(
    f"CV log loss of the evidence's choice: {chosen:.4f} (best {min(cv_log_loss):.4f})"
)
assert chosen <= min(cv_log_loss) + 0.05
