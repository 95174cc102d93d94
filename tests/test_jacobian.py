"""The factored logit Jacobian (:mod:`sklaplace._jacobian`) against differences.

The references are central finite differences of
:func:`sklaplace._testing.mlp_logits`, a forward pass written from the
documented parameter layout that shares no code with the network module.
``tests/test_network.py`` covers the products of networks with hidden layers;
here: a network without one, the diagonal variance and its pruned inputs,
the row bound of ``logit_factors``, float32 factors and the centred logits'
factors.
"""

import numpy as np
import pytest

from sklaplace._jacobian import diagonal_variance, logit_factors
from sklaplace._network import ParamLayout
from sklaplace._testing import mlp_logits, numerical_jacobian


def _jacobian(theta, X, layer_sizes, activation="tanh"):
    """``d logits / d theta``, shape (n, n_outputs, n_params), by differences."""
    return numerical_jacobian(
        lambda t: mlp_logits(t, X, layer_sizes, activation), theta
    )


def _network(layer_sizes, n_samples=7, seed=0):
    """A random ``(layout, theta, X)`` of the given layer sizes."""
    rng = np.random.RandomState(seed)
    layout = ParamLayout(layer_sizes)
    theta = rng.normal(scale=0.7, size=layout.n_params)
    X = rng.normal(size=(n_samples, layer_sizes[0]))
    return layout, theta, X


def _factors(layout, theta, X, **kwargs):
    """The one chunk of ``logit_factors`` at the default budget."""
    [(logits, factors)] = logit_factors(np, layout, theta, "tanh", X, **kwargs)
    return logits, factors


def test_a_network_without_hidden_layers_has_a_factored_product():
    """One layer (logits linear in theta): ``J M`` is the differences' product."""
    sizes = (3, 4)
    layout, theta, X = _network(sizes)
    _, factors = _factors(layout, theta, X)
    M = np.random.RandomState(1).normal(size=(layout.n_params, 5))
    expected = _jacobian(theta, X, sizes) @ M
    np.testing.assert_allclose(factors.matmul(np, M), expected, rtol=1e-7, atol=1e-9)


def test_diagonal_variance_of_three_layers_is_j_diag_j_transposed():
    """Each layer's weights read their own entries of the diagonal, to the last."""
    sizes = (3, 4, 3, 3)
    layout, theta, X = _network(sizes)
    inverse = np.random.RandomState(2).uniform(0.1, 2.0, layout.n_params)
    J = _jacobian(theta, X, sizes)
    expected = np.einsum("nkp,p,nlp->nkl", J, inverse, J)
    _, factors = _factors(layout, theta, X)
    np.testing.assert_allclose(
        diagonal_variance(np, factors, inverse), expected, rtol=1e-7, atol=1e-10
    )
    np.testing.assert_allclose(
        diagonal_variance(np, factors.dense(np), inverse),
        expected,
        rtol=1e-7,
        atol=1e-10,
    )


def test_a_pruned_input_adds_no_variance_however_large_it_is():
    """An input whose weights have zero variance drops out, even at 1e200.

    Its square overflows to inf, and inf times a zero variance is NaN: the
    variance must be the one of the network without that input.
    """
    sizes = (3, 4, 3)
    layout, theta, X = _network(sizes)
    X[::2, 0] = 1e200
    theta[:4] = 0.0  # input 0's weights (row 0 of W_0), pruned
    inverse = np.random.RandomState(2).uniform(0.1, 2.0, layout.n_params)
    inverse[:4] = 0.0
    _, factors = _factors(layout, theta, X)
    variance = diagonal_variance(np, factors, inverse)
    # The same network without input 0.
    kept = np.arange(4, layout.n_params)
    J = _jacobian(theta[kept], X[:, 1:], (2, 4, 3))
    expected = np.einsum("nkp,p,nlp->nkl", J, inverse[kept], J)
    assert variance.dtype == np.float64
    np.testing.assert_allclose(variance, expected, rtol=1e-7, atol=1e-10)


def test_logit_factors_take_at_most_max_rows_a_chunk():
    """``max_rows`` bounds the chunks below the budget's; they cover every row."""
    sizes = (3, 4, 3)
    layout, theta, X = _network(sizes)
    chunks = list(logit_factors(np, layout, theta, "tanh", X, max_rows=2))
    assert [logits.shape[0] for logits, _ in chunks] == [2, 2, 2, 1]
    J = np.concatenate([factors.dense(np) for _, factors in chunks])
    np.testing.assert_allclose(J, _jacobian(theta, X, sizes), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("n_outputs", [3, 1])
def test_float32_factors_stay_float32(centred, n_outputs):
    """float32 weights and rows give float32 logits and factors (no float64
    eye, nor centring seed), the dense ``J`` of ``logit_jacobians`` too."""
    from sklaplace._predictive import logit_jacobians

    sizes = (3, 4, n_outputs)
    layout, theta, X = _network(sizes)
    theta32, X32 = theta.astype(np.float32), X.astype(np.float32)
    logits, factors = _factors(layout, theta32, X32, centred=centred)
    assert logits.dtype == np.float32
    for part in factors.inputs + factors.deltas:
        assert part.dtype == np.float32
    [(_, J)] = logit_jacobians(np, layout, theta32, "tanh", X32, centred=centred)
    assert J.dtype == np.float32
    expected = _jacobian(theta, X, sizes)
    if centred and n_outputs > 1:
        expected = expected - expected.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(factors.dense(np), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(J, expected, rtol=1e-4, atol=1e-5)


def test_centred_factors_are_the_centred_logits_jacobian():
    """``centred=True`` seeds backprop with ``C = I - 11'/K``: the factors
    of ``C J``, the Jacobian of the logits less their mean over the classes,
    here against differences of those centred logits (three classes, two
    hidden layers), with every row's ``C J`` summing to zero over the
    classes; one logit is left as it is. So is the dense ``J`` of
    :func:`~sklaplace._predictive.logit_jacobians`, also as
    ``jacobian_chunks`` gives it to a pruned network."""
    from sklaplace._predictive import jacobian_chunks, logit_jacobians

    sizes = (3, 4, 5, 3)
    layout, theta, X = _network(sizes)

    def centred_logits(t):
        logits = mlp_logits(t, X, sizes, "tanh")
        return logits - logits.mean(axis=1, keepdims=True)

    expected = numerical_jacobian(centred_logits, theta)
    _, factors = _factors(layout, theta, X, centred=True)
    dense = factors.dense(np)
    np.testing.assert_allclose(dense, expected, rtol=1e-7, atol=1e-9)
    assert np.max(np.abs(dense.sum(axis=1))) < 1e-12
    [(_, J)] = logit_jacobians(np, layout, theta, "tanh", X, centred=True)
    np.testing.assert_allclose(J, dense, rtol=1e-12, atol=1e-14)
    # A pruned network's dense chunks too (no posterior takes factors here).
    keep = (np.random.RandomState(2).uniform(size=layout.n_params) < 0.6) * 1.0
    [(_, J)] = jacobian_chunks(np, layout, theta, "tanh", None, X, keep, True)
    np.testing.assert_allclose(J, dense * keep, rtol=1e-12, atol=1e-14)
    # The uncentred factors are not centred (the test's reach).
    assert np.max(np.abs(_factors(layout, theta, X)[1].dense(np).sum(axis=1))) > 0.1
    one = (3, 4, 1)
    layout, theta, X = _network(one)
    np.testing.assert_array_equal(
        _factors(layout, theta, X, centred=True)[1].dense(np),
        _factors(layout, theta, X)[1].dense(np),
    )
