"""The modes a network's Laplace evidence stands for (``sklaplace._modes``)."""

import math
import warnings

import numpy as np
import pytest

import sklaplace._fitting as fitting_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._evidence import EVIDENCE_MARGIN
from sklaplace._modes import DISTINCT_UNIT_DISTANCE, distinct_units, unit_distances
from sklaplace._network import ParamLayout, log_equivalent_modes
from tests.conftest import make_problem


@pytest.mark.parametrize(
    "layer_sizes, activation, distinct, modes",
    [
        ((4, 3, 2), "tanh", [3], 3 * 2 * 1 * 2**3),
        ((4, 3, 2), "tanh", [2], 3 * 2 * 2**2),
        ((4, 3, 2), "tanh", [0], 1),
        ((4, 3, 2), "elu", [1], 3),
        ((5, 4, 2, 1), "relu", [1, 2], 4 * (2 * 1)),
        ((5, 4, 2, 1), "logistic", [2, 1], (4 * 3 * 2**2) * (2 * 2)),
        ((4, 3, 2), "identity", [3], 1),
    ],
)
def test_only_distinct_units_make_new_modes(layer_sizes, activation, distinct, modes):
    # M! / (M - m)! orders of the m distinct units among M, 2^m signs.
    assert log_equivalent_modes(layer_sizes, activation, distinct) == (
        pytest.approx(math.log(modes), rel=1e-12, abs=1e-12)
    )


def _plain_logits(theta, layer_sizes, X):
    """A tanh MLP written out, sharing nothing with the package's network."""
    a, start = X, 0
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        size = (fan_in + 1) * fan_out
        Wb = theta[start : start + size].reshape(fan_in + 1, fan_out)
        start += size
        z = a @ Wb[:-1] + Wb[-1]
        a = np.tanh(z) if i < len(layer_sizes) - 2 else z
    return a


def test_distinct_units_lie_beyond_two_posterior_deviations_from_zero():
    """Against a dense GGN from central differences of a written-out network:
    ``theta_u' P theta_u`` for each unit's weights, counted above 4, in two
    hidden layers of a weighted three-class problem whose units are scaled
    to lie on both sides of the threshold."""
    obj, theta, raw = make_problem(
        "tanh", 3, (6, 4), weighted=True, n_samples=40, seed=3, raw=True
    )
    sizes = raw["layer_sizes"]
    layout = ParamLayout(sizes)
    theta = 2.0 * np.array(theta)  # units well determined at full size
    index = np.arange(layout.n_params)
    units = []
    for layer in (1, 2):
        incoming = index[layout.layer_slice(layer - 1)].reshape(
            layout.shapes[layer - 1]
        )
        outgoing = index[layout.layer_slice(layer)].reshape(layout.shapes[layer])
        units += [
            np.concatenate([incoming[:, u], outgoing[u, :]])
            for u in range(sizes[layer])
        ]
    # Shrink units towards zero by different factors (one to exactly zero).
    for u, factor in zip(units, [0.0, 0.05, 1.0, 1.0, 0.1, 1.0, 0.0, 1.0, 1.0, 0.15]):
        theta[u] *= factor

    X, w = raw["X"], raw["sample_weight"]
    h = 1e-6
    J = np.stack(
        [
            (
                _plain_logits(theta + h * e, sizes, X)
                - _plain_logits(theta - h * e, sizes, X)
            )
            / (2 * h)
            for e in np.eye(layout.n_params)
        ],
        axis=-1,
    )  # (n, K, n_params)
    logits = _plain_logits(theta, sizes, X)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    Lambda = w[:, None, None] * (
        np.einsum("nk,kl->nkl", p, np.eye(3)) - p[:, :, None] * p[:, None, :]
    )
    P = np.einsum("nka,nkl,nlb->ab", J, Lambda, J) + np.diag(raw["prior_precision"])
    distances = []
    for u in units:
        v = np.zeros_like(theta)
        v[u] = theta[u]
        distances.append(v @ P @ v)
    distances = np.array(distances)
    threshold = DISTINCT_UNIT_DISTANCE**2
    # The case is sharp: units on both sides, none near the threshold.
    assert np.all(np.abs(distances - threshold) > 0.05 * threshold)
    expected = [
        int(np.sum(distances[:6] > threshold)),
        int(np.sum(distances[6:] > threshold)),
    ]
    assert 0 < expected[0] < 6 and 0 < expected[1] < 4
    assert distinct_units(obj, obj.xp.asarray(theta)) == expected
    # Each distance, to the differences' accuracy (the bias row left out
    # of a unit, or the exact Hessian for the GGN, moves them by far more).
    measured = np.concatenate(unit_distances(obj, obj.xp.asarray(theta)))
    np.testing.assert_allclose(measured, distances, rtol=1e-6, atol=1e-9)


def test_against_a_collapsed_run_a_fitted_one_counts_its_distinct_units(
    monkeypatch,
):
    """Labels drawn independently of 10 features, hidden (100,): MacKay's
    run from alpha = 1 fits the noise, the run from 100 collapses to the
    base rate with the larger Laplace evidence, yet every unit's 100!
    orders would put the fitted run clearly ahead. Only its distinct units'
    orders count against the collapsed run's single mode: the default
    keeps the base rate."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(420, 10)), rng.choice(2, 420, p=[0.7, 0.3])
    params = dict(hidden_layer_sizes=(100,), prior_precision_scale=1.0, random_state=0)
    single = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in (1.0, 100.0):
            monkeypatch.setattr(fitting_module, "EVIDENCE_STARTS", (start,))
            single[start] = LaplaceMLPClassifier(**params).fit(X, y)
        monkeypatch.undo()
        both = LaplaceMLPClassifier(**params).fit(X, y)
    fitted, collapsed = single[1.0], single[100.0]
    assert np.ptp(fitted.predict_proba(X)[:, 1]) > 0.5
    assert np.ptp(collapsed.predict_proba(X)[:, 1]) <= 1e-6
    every_unit = log_equivalent_modes((10, 100, 1), "elu")
    lead = fitted.log_marginal_likelihood_ + every_unit
    assert lead > collapsed.log_marginal_likelihood_ + EVIDENCE_MARGIN
    assert both.alpha_history_ == collapsed.alpha_history_
    np.testing.assert_array_equal(both.predict_proba(X), collapsed.predict_proba(X))


def test_a_unit_counts_beyond_four_squared_deviations(monkeypatch):
    import sklaplace._modes as modes_module

    layers = [np.array([0.0, 1.9, 2.5, 3.9, 4.0, 4.1, 100.0]), np.array([3.0, 5.0])]
    monkeypatch.setattr(modes_module, "unit_distances", lambda obj, theta: layers)
    assert distinct_units(None, None) == [2, 1]
