import numpy as np

from sklaplace._network import ParamLayout, jacobian_factor, jvp, vjp
from sklaplace._testing import numerical_jacobian
from tests.conftest import make_problem


def test_layout_matches_mlpclassifier_order():
    layout = ParamLayout((3, 4, 2))
    coefs = [np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)]
    intercepts = [np.arange(4.0) + 100, np.arange(2.0) + 200]
    theta = layout.pack(np, coefs, intercepts)
    expected = np.concatenate(
        [coefs[0].ravel(), intercepts[0], coefs[1].ravel(), intercepts[1]]
    )
    np.testing.assert_array_equal(theta, expected)
    back_coefs, back_intercepts = layout.split(np, theta)
    for a, b in zip(coefs + intercepts, back_coefs + back_intercepts):
        np.testing.assert_array_equal(a, b)
    assert layout.n_params == 3 * 4 + 4 + 4 * 2 + 2
    assert layout.bias_mask().sum() == 6


def test_glorot_init_is_seeded_and_bounded():
    layout = ParamLayout((5, 7, 1))
    a = layout.glorot_init(np.random.RandomState(0))
    b = layout.glorot_init(np.random.RandomState(0))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[layout.bias_mask()] == 0)
    assert np.max(np.abs(a[:35])) <= np.sqrt(6 / 12)


def test_jacobian_matches_finite_differences(problem):
    obj, theta = problem
    fwd = obj.forward(theta)
    n, k = fwd.logits.shape
    eye = np.broadcast_to(np.eye(k), (n, k, k))
    J = jacobian_factor(np, obj.layout, theta, fwd, eye)
    np.testing.assert_allclose(J, numerical_jacobian(obj, theta), rtol=1e-7, atol=1e-9)


def test_adjoint_identity(problem):
    obj, theta = problem
    rng = np.random.RandomState(1)
    fwd = obj.forward(theta)
    u = rng.normal(size=fwd.logits.shape)
    v = rng.normal(size=theta.shape)
    Jv = jvp(np, obj.layout, theta, fwd, v)[-1]
    Jtu = vjp(np, obj.layout, theta, fwd, u)
    np.testing.assert_allclose(np.sum(u * Jv), Jtu @ v, rtol=1e-12)


def test_no_hidden_layer_jacobian_is_the_input():
    obj, theta = make_problem(hidden=(), n_classes=2)
    fwd = obj.forward(theta)
    J = jacobian_factor(np, obj.layout, theta, fwd, np.ones((obj.n_samples, 1, 1)))[
        :, 0, :
    ]
    np.testing.assert_allclose(J, np.hstack([obj.X, np.ones((obj.n_samples, 1))]))
