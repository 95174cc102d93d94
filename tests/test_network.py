import numpy as np
import pytest

import sklaplace._jacobian as jacobian_module
import sklaplace._memory as memory_module
import sklaplace._network as network_module
from sklaplace._jacobian import jacobian_factor
from sklaplace._network import (
    ParamLayout,
    forward,
    r_forward,
    vjp,
    with_ones,
)
from sklaplace._testing import mlp_logits, numerical_jacobian
from tests.conftest import make_problem


def _differenced(obj, theta):
    """The logits' Jacobian through ``obj``'s forward pass, by differences."""
    return numerical_jacobian(lambda t: obj.forward(t).logits, theta)


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
    np.testing.assert_allclose(
        J,
        _differenced(obj, theta),
        rtol=1e-7,
        atol=1e-9,
    )


def test_adjoint_identity(problem):
    obj, theta = problem
    rng = np.random.RandomState(1)
    fwd = obj.forward(theta)
    u = rng.normal(size=fwd.logits.shape)
    v = rng.normal(size=theta.shape)
    layers = obj.layout.layers
    Jv = r_forward(np, layers(np, theta), fwd, layers(np, v))[0][-1]
    Jtu = vjp(np, obj.layout, theta, fwd, u)
    np.testing.assert_allclose(np.sum(u * Jv), Jtu @ v, rtol=1e-12)


def test_no_hidden_layer_jacobian_is_the_input():
    obj, theta = make_problem(hidden=(), n_classes=2)
    fwd = obj.forward(theta)
    J = jacobian_factor(np, obj.layout, theta, fwd, np.ones((obj.n_samples, 1, 1)))[
        :, 0, :
    ]
    np.testing.assert_allclose(J, np.hstack([obj.X, np.ones((obj.n_samples, 1))]))


def test_logit_factors_in_one_row_chunks_are_the_jacobian(monkeypatch):
    # Two hidden layers, 7 rows, 3 features: with a budget below one row's
    # factors every chunk is one row, and the chunks cover every row in
    # order; their dense J, and the last layer's factors alone, are the
    # finite-difference Jacobian (the last layer's columns for the latter).
    obj, theta = make_problem(n_classes=3, hidden=(4, 3), n_samples=7)
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", 1)
    chunks = list(
        jacobian_module.logit_factors(np, obj.layout, theta, obj.activation, obj.X)
    )
    assert [logits.shape[0] for logits, _ in chunks] == [1] * 7
    logits = np.concatenate([logits for logits, _ in chunks])
    J = np.concatenate([factors.dense(np) for _, factors in chunks])
    last = np.concatenate([factors.last_layer().dense(np) for _, factors in chunks])
    numeric = _differenced(obj, theta)
    reference = mlp_logits(theta, obj.X, obj.layout.layer_sizes, obj.activation)
    np.testing.assert_allclose(logits, reference, rtol=1e-12)
    np.testing.assert_allclose(J, numeric, rtol=1e-7, atol=1e-9)
    columns = obj.layout.layer_slice(obj.layout.n_layers - 1)
    np.testing.assert_allclose(last, numeric[:, :, columns], rtol=1e-7, atol=1e-9)
    assert chunks[0][1].last_layer().shape == (1, 3, 4 * 3)


@pytest.mark.parametrize("gain, factored_layers", [(0.0, 2), (3.0, 1), (np.inf, 0)])
def test_a_factored_jacobian_times_a_matrix_is_the_finite_difference_product(
    monkeypatch, gain, factored_layers
):
    # 19 features, hidden (10,), 4 classes (W = 244), 7 rows, M of 244
    # columns: at the default gain the first layer (4 * 20 >= 3 * (20 + 4))
    # goes through its factors, in slices of 2 rows under a budget whose
    # quarter holds two rows' 10 x 244 intermediates, the second (4 * 11 <
    # 3 * 15) through its dense block; either way, or all one way, J M is
    # the finite-difference Jacobian times M.
    obj, theta = make_problem(n_classes=4, hidden=(10,), n_samples=7, n_features=19)
    [(_, factors)] = jacobian_module.logit_factors(
        np, obj.layout, theta, obj.activation, obj.X
    )
    M = np.random.RandomState(1).normal(size=(obj.layout.n_params, obj.layout.n_params))
    monkeypatch.setattr(jacobian_module, "FACTORED_PRODUCT_GAIN", gain)
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", 2 * 4 * 8 * 10 * 244)
    calls, through = [], jacobian_module._through_factors

    def spy(xp, a, d, M_l, rows):
        calls.append(rows)
        return through(xp, a, d, M_l, rows)

    monkeypatch.setattr(jacobian_module, "_through_factors", spy)
    product = factors.matmul(np, M)
    assert len(calls) == factored_layers
    if gain == 3.0:
        assert calls == [2]
    expected = _differenced(obj, theta) @ M
    np.testing.assert_allclose(product, expected, rtol=1e-7, atol=1e-8)


def test_pack_refuses_coefs_and_intercepts_of_different_lengths():
    layout = ParamLayout((3, 4, 2))
    coefs = [np.ones((3, 4)), np.ones((4, 2))]
    with pytest.raises(ValueError):
        layout.pack(np, coefs, [np.zeros(4)])


def test_glorot_init_draws_distinct_weights_across_the_interval():
    # Symmetry breaking: every weight its own draw from U(-b, b), b =
    # sqrt(6 / (fan_in + fan_out)), filling the interval (at seed 0: below
    # -b/2 and above b/2 in each layer).
    layout = ParamLayout((5, 7, 3))
    theta = layout.glorot_init(np.random.RandomState(0))
    weights = theta[~layout.bias_mask()]
    assert np.unique(weights).size == weights.size == 5 * 7 + 7 * 3
    for i, (fan_in, fan_out) in enumerate([(5, 7), (7, 3)]):
        bound = np.sqrt(6 / (fan_in + fan_out))
        W = layout.split(np, theta)[0][i]
        assert np.max(np.abs(W)) <= bound
        assert np.min(W) < -bound / 2 and np.max(W) > bound / 2


def test_glorot_bound_is_sqrt_6_over_fan_in_plus_fan_out_to_the_draw():
    # b = sqrt(6 / (fan_in + fan_out)) with fan_in the number of inputs; the
    # augmented weight [W; b] has fan_in + 1 rows, and sqrt(6 / (rows +
    # fan_out)) is only 0.3% smaller here, inside the old test's "<= b".
    # 6,000 draws of U(-b, b) reach within 1e-3 b of the bound (at seed 0
    # and for all but 0.25% of seeds); a bound 0.3% smaller cannot.
    fan_in, fan_out = 100, 60
    layout = ParamLayout((fan_in, fan_out, 1))
    W = layout.split(np, layout.glorot_init(np.random.RandomState(0)))[0][0]
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.max(np.abs(W)) <= bound
    assert np.max(np.abs(W)) > (1.0 - 1e-3) * bound
    # Symmetric about 0 and uniform: mean |w| is b / 2 (standard error
    # b / sqrt(12 * 6000), about 0.004 b).
    np.testing.assert_allclose(np.mean(np.abs(W)), bound / 2, rtol=0.02)


def test_logit_factors_take_as_many_rows_as_the_budget_holds(monkeypatch):
    # A chunk of rows holds, per row, each layer's input (fan_in + 1) and
    # deltas (K * fan_out) and the K x K identity twice, all float64 and
    # counted three times over: layers (3, 4, 3, 3), K = 3, give
    # (4 + 3 * 4) + (5 + 3 * 3) + (4 + 3 * 3) + 2 * 9 = 61 numbers,
    # 3 * 8 * 61 = 1464 bytes a row. A budget of two rows' bytes makes
    # chunks of 2 (7 rows: 2, 2, 2, 1); one byte less, chunks of 1.
    obj, theta = make_problem(n_classes=3, hidden=(4, 3), n_samples=7)
    for budget, sizes in [(2 * 1464, [2, 2, 2, 1]), (2 * 1464 - 1, [1] * 7)]:
        monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
        chunks = jacobian_module.logit_factors(
            np, obj.layout, theta, obj.activation, obj.X
        )
        assert [logits.shape[0] for logits, _ in chunks] == sizes


@pytest.mark.parametrize("activation", ["elu", "tanh", "relu"])
def test_a_forward_pass_without_slopes_gives_the_same_logits(activation):
    # The plug-in predictive asks for the logits alone: no derivative is
    # computed, and the logits are the reference network's.
    rng = np.random.RandomState(3)
    layout = ParamLayout((3, 5, 4, 2))
    theta = rng.normal(size=layout.n_params)
    X = rng.normal(size=(7, 3))
    full = forward(np, layout, theta, X, activation)
    bare = forward(np, layout, theta, X, activation, with_slopes=False)
    assert len(full.slopes) == 2 and bare.slopes == []
    np.testing.assert_array_equal(bare.logits, full.logits)
    np.testing.assert_allclose(
        bare.logits, mlp_logits(theta, X, (3, 5, 4, 2), activation), rtol=1e-12
    )


@pytest.mark.parametrize("gain", [0.0, np.inf], ids=["factors", "dense blocks"])
def test_a_factored_product_over_two_hidden_layers_takes_each_layers_rows_of_m(
    monkeypatch, gain
):
    # Pins `start += r * c` in matmul (_jacobian.py:86; `start = r * c`
    # survived: with two layers the second starts at the first's width
    # either way, with three the third read the second's rows of M). Hidden
    # (4, 3), 3 classes: J M is the finite-difference Jacobian times M,
    # every layer through its factors or through its dense block.
    obj, theta = make_problem(n_classes=3, hidden=(4, 3), n_samples=7)
    [(_, factors)] = jacobian_module.logit_factors(
        np, obj.layout, theta, obj.activation, obj.X
    )
    M = np.random.RandomState(1).normal(size=(obj.layout.n_params, 5))
    monkeypatch.setattr(jacobian_module, "FACTORED_PRODUCT_GAIN", gain)
    expected = _differenced(obj, theta) @ M
    np.testing.assert_allclose(factors.matmul(np, M), expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("budget, rows", [(None, 30), (1, 1)])
def test_a_layer_at_the_gain_goes_through_its_factors_in_slices_of_rows(
    monkeypatch, budget, rows
):
    # 5 features, hidden (2,), 6 classes, 30 rows (more than the first
    # layer's 6 inputs). The first layer is at the gain exactly (6 * 6 = 3 *
    # (6 + 6)): it goes through its factors (">= gain", _jacobian.py:87;
    # `>` survived), the second (6 * 3 < 3 * 9) through its dense block. At
    # the default budget in one slice of all 30 rows (parts[0],
    # _jacobian.py:139; parts[1] survived; and n is the rows, a.shape[0],
    # _jacobian.py:131: a.shape[1] = 6 survived, cutting the slices at 6
    # rows); below one row's intermediate in slices of one row (max(1, ...),
    # _jacobian.py:88; max(2, ...) survived). Either way J M is the
    # finite-difference Jacobian times M.
    obj, theta = make_problem(n_classes=6, hidden=(2,), n_samples=30, n_features=5)
    [(_, factors)] = jacobian_module.logit_factors(
        np, obj.layout, theta, obj.activation, obj.X
    )
    M = np.random.RandomState(1).normal(size=(obj.layout.n_params, 4))
    if budget is not None:
        monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
    calls, through = [], jacobian_module._through_factors

    def spy(xp, a, d, M_l, rows):
        calls.append(min(rows, a.shape[0]))
        return through(xp, a, d, M_l, rows)

    monkeypatch.setattr(jacobian_module, "_through_factors", spy)
    product = factors.matmul(np, M)
    assert calls == [rows]
    assert product.shape == (30, 6, 4)
    expected = _differenced(obj, theta) @ M
    np.testing.assert_allclose(product, expected, rtol=1e-7, atol=1e-8)


# Mutation round (session 58): the layer inputs r_forward is given.
@pytest.mark.parametrize("hidden", [(), (4,), (4, 3)])
def test_r_forward_reuses_the_layer_inputs_it_is_given(monkeypatch, hidden):
    """``r_forward(..., inputs=...)`` must use the given ``[a_i, 1]`` matrices rather
    than form them again (the point of the argument: an operator applied many
    times at one ``theta`` forms them once), and still return ``J v``, checked
    against a central difference of a from-scratch forward pass."""
    obj, theta, raw = make_problem("tanh", 3, hidden, raw=True)
    fwd = obj.forward(theta)
    inputs = [with_ones(np, a) for a in fwd.acts]
    v = np.random.RandomState(1).normal(size=theta.shape)

    def formed_again(xp, a):
        raise AssertionError("r_forward formed a layer input it was given")

    monkeypatch.setattr(network_module, "with_ones", formed_again)
    layers = obj.layout.layers
    Jv = r_forward(np, layers(np, theta), fwd, layers(np, v), inputs)[0][-1]

    def logits(t):
        return mlp_logits(t, raw["X"], raw["layer_sizes"], raw["activation"])

    h = 1e-5
    reference = (logits(theta + h * v) - logits(theta - h * v)) / (2 * h)
    np.testing.assert_allclose(Jv, reference, rtol=1e-6, atol=1e-8)
