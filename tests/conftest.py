"""Shared fixtures: small problems as data, and array namespaces."""

import numpy as np
import pytest

from sklaplace._backend import get_namespace
from sklaplace._likelihood import likelihood_for
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior
from sklaplace._prior import prior_precision_vector

ACTIVATION_NAMES = ["identity", "logistic", "tanh", "relu", "softplus"]
HIDDEN = [(), (4,), (4, 3)]


def make_problem(
    activation="tanh",
    n_classes=2,
    hidden=(4,),
    weighted=False,
    n_samples=20,
    n_features=3,
    seed=0,
    xp=None,
    memory_budget=None,
):
    """A random MLP, data and prior as a ``(NegLogPosterior, theta)`` pair (NumPy)."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    likelihood = likelihood_for(n_classes)
    layout = ParamLayout((n_features, *hidden, likelihood.n_outputs(n_classes)))
    theta = rng.normal(scale=0.7, size=layout.n_params)
    weight = rng.uniform(0.5, 2.0, n_samples) if weighted else np.ones(n_samples)
    # Per-layer weight precisions and a nonzero bias precision exercise the prior.
    alpha = np.linspace(0.3, 0.9, layout.n_layers)
    precision = prior_precision_vector(layout, alpha, 0.2)
    xp = get_namespace(X) if xp is None else xp
    as_xp = lambda a: xp.asarray(a)  # noqa: E731
    Y = likelihood.encode(xp, as_xp(y), layout.n_outputs, xp.float64)
    kwargs = {} if memory_budget is None else {"memory_budget": memory_budget}
    obj = NegLogPosterior(
        xp,
        layout,
        activation,
        likelihood,
        as_xp(X),
        Y,
        as_xp(weight),
        as_xp(precision),
        **kwargs,
    )
    return obj, as_xp(theta)


def case_id(activation, n_classes, hidden, weighted):
    depth = f"h{len(hidden)}"
    return f"{activation}-{n_classes}cls-{depth}-{'sw' if weighted else 'nosw'}"


CASES = [
    (a, k, h, w)
    for a in ACTIVATION_NAMES
    for k in (2, 3)
    for h in HIDDEN
    for w in (False, True)
]


@pytest.fixture(params=CASES, ids=[case_id(*c) for c in CASES])
def problem(request):
    activation, n_classes, hidden, weighted = request.param
    obj, theta = make_problem(activation, n_classes, hidden, weighted)
    if activation == "relu":
        # Finite differences must not cross a kink: keep pre-activations away from 0.
        fwd = obj.forward(theta)
        for i in range(len(hidden)):
            z = (
                fwd.acts[i] @ obj.layout.layers(np, theta)[i][:-1]
                + obj.layout.layers(np, theta)[i][-1]
            )
            assert np.min(np.abs(z)) > 1e-3, "relu fixture too close to a kink"
    return obj, theta
