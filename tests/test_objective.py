"""Gradient, exact Hessian and Hessian-vector products against finite differences."""

import re
import warnings

import numpy as np
import pytest

from sklaplace._curvature import CURVATURE_BUILDERS, exact_hessian, ggn_hessian
from sklaplace._likelihood import Categorical
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior, warn_if_base_rate
from sklaplace._prior import prior_precision_vector
from sklaplace._testing import numerical_derivative
from sklaplace.exceptions import BaseRateWarning, MemoryLimitError
from tests.conftest import make_problem, rebuilt


def _rel_err(actual, expected):
    return np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-12)


def test_gradient_matches_finite_differences(problem):
    obj, theta = problem
    _, grad = obj.loss_gradient(theta)
    numeric = numerical_derivative(obj.loss, theta)
    assert _rel_err(grad, numeric) <= 1e-6


def test_exact_hessian_matches_finite_differences(problem):
    obj, theta = problem
    H = exact_hessian(obj, theta)
    numeric = numerical_derivative(lambda t: obj.loss_gradient(t)[1], theta)
    assert _rel_err(H, numeric) <= 1e-6
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-12 * np.max(np.abs(H)))


def test_vector_products_match_matrices_and_finite_differences(problem):
    obj, theta = problem
    v = np.random.RandomState(3).normal(size=theta.shape)
    H, G = exact_hessian(obj, theta), ggn_hessian(obj, theta)
    Hv, Gv = obj.hessp(theta, v, "exact"), obj.hessp(theta, v, "ggn")
    np.testing.assert_array_equal(obj.hessp(theta, v), Hv)  # exact by default
    scale = np.max(np.abs(H @ v))
    np.testing.assert_allclose(Hv, H @ v, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(Gv, G @ v, rtol=0, atol=1e-10 * scale)
    # Directional derivative of the gradient along v.
    numeric = numerical_derivative(
        lambda s: obj.loss_gradient(theta + s[0] * v)[1], np.zeros(1)
    )[0]
    assert _rel_err(Hv, numeric) <= 1e-6


def test_the_gradients_backprop_serves_the_curvature_unchanged(problem):
    """The backward pass kept from the gradient gives the curvature's
    residual terms exactly as a new pass at the same point does, and asking
    for it changes neither the loss nor the gradient."""
    obj, theta = problem
    fwd = obj.forward(theta)
    loss, grad, kept = obj.loss_gradient(theta, fwd, with_backprop=True)
    assert (loss, list(grad)) == (obj.loss(theta), list(obj.loss_gradient(theta)[1]))
    fresh = obj.residual_backprop(theta, fwd)
    reused = obj.residual_backprop(theta, fwd, gradient_backprop=kept)
    for fresh_terms, reused_terms in zip(fresh, reused, strict=True):
        assert len(fresh_terms) == len(reused_terms)
        for a, b in zip(fresh_terms, reused_terms, strict=True):
            np.testing.assert_array_equal(a, b)
    # Kept at another point, they would give other terms: the test can tell.
    other = obj.loss_gradient(1.1 * theta, obj.forward(1.1 * theta), True)[2]
    moved = obj.residual_backprop(theta, fwd, gradient_backprop=other)
    assert not np.array_equal(moved[0][-1], fresh[0][-1])


def test_loss_is_finite_for_huge_logits():
    from tests.conftest import make_problem

    for n_classes in (2, 3):
        obj, theta = make_problem("identity", n_classes, (), n_samples=10)
        theta = theta * 1e4 / np.max(np.abs(theta))
        loss, grad = obj.loss_gradient(theta)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert np.all(np.isfinite(exact_hessian(obj, theta)))


def test_constrained_diagonal_curvature_is_one_at_fixed_parameters():
    # A diagonal curvature keeps its entries on the free parameters and gets
    # 1 on the fixed ones; nothing is added along the flat softmax shifts
    # (the last layer's diagonal entries are already positive).
    from tests.conftest import make_problem

    obj, _ = make_problem("tanh", 3, (4,))
    prior = obj.prior_precision.copy()
    prior[obj.layout.layer_slice(1)] = 0.0  # the last layer's rows: flat
    fixed = np.zeros(obj.layout.n_params, dtype=bool)
    fixed[[0, 5, obj.layout.n_params - 1]] = True
    model = (np, obj.layout, obj.activation, obj.likelihood)
    obj = NegLogPosterior(*model, obj.X, obj.Y, obj.sample_weight, prior, fixed=fixed)
    assert obj.flat_shifts() is not None
    diagonal = np.random.RandomState(0).uniform(2.0, 3.0, obj.layout.n_params)
    expected = np.where(fixed, 1.0, diagonal)
    np.testing.assert_array_equal(obj.constrained_curvature(diagonal), expected)


def test_row_chunks_are_the_largest_that_fit_the_budget():
    # A 10-byte budget holds 10 rows of 1 byte, 3 rows of 3 bytes and a
    # single row of 11 bytes (never less than a row); the chunks cover the
    # rows in order.
    from tests.conftest import make_problem

    obj, _ = make_problem(n_samples=20, weighted=True, memory_budget=10)
    for bytes_per_row, size in [(1, 10), (3, 3), (10, 1), (11, 1)]:
        chunks = list(obj.row_chunks(bytes_per_row))
        sizes = [X.shape[0] for X, _, _ in chunks]
        assert sizes == [size] * (20 // size) + ([20 % size] if 20 % size else [])
        for part, whole in zip(zip(*chunks), (obj.X, obj.Y, obj.sample_weight)):
            np.testing.assert_array_equal(np.concatenate(part), whole)


def test_a_softmax_shift_pinned_by_one_output_bias_prior_is_not_flat():
    # Only a softmax whose output biases ALL lack a prior has a flat common
    # shift; a prior on any one of them pins it, and the curvature must be
    # left as it is (adding u u' there had moved the log evidence by 0.5).
    obj, theta = make_problem("tanh", 3, (4,))
    for output_bias_prior, flat in (([0.0, 1.0, 1.0], False), ([0.0] * 3, True)):
        prior = obj.prior_precision.copy()
        prior[-3:] = output_bias_prior
        changed = rebuilt(obj, prior_precision=prior)
        assert (changed.flat_shifts() is not None) == flat
        H = CURVATURE_BUILDERS["ggn", "full"](changed, theta)
        unchanged = np.array_equal(changed.constrained_curvature(H.copy()), H)
        assert unchanged != flat


def test_a_two_logit_softmax_without_output_bias_prior_is_flat_along_their_sum():
    # A softmax over K = 2 logits (the functional API builds one for a
    # network with two outputs) ignores a common shift of both, as any
    # K >= 2 does: with no prior on the output biases the loss is constant
    # along u = (1, 1) / sqrt(2) on them, flat_shifts marks their row (the
    # last of the output layer's five) and constrained_curvature adds u u'
    # (1/2 on the 2 x 2 output-bias block).
    rng = np.random.RandomState(0)
    layout = ParamLayout((3, 4, 2))
    X, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    Y = Categorical.encode(np, y, 2, np.float64)
    prior = prior_precision_vector(layout, 0.5, 0.2)
    prior[-2:] = 0.0
    obj = NegLogPosterior(np, layout, "tanh", Categorical, X, Y, np.ones(20), prior)
    theta = rng.normal(scale=0.7, size=layout.n_params)
    u = np.zeros(layout.n_params)
    u[-2:] = 1.0 / np.sqrt(2.0)
    np.testing.assert_array_equal(obj.flat_shifts(), [False] * 4 + [True])
    # Flat indeed: the loss does not move along u, and the finite-difference
    # Hessian has no curvature there.
    for step in (-3.0, 0.5, 2.0):
        np.testing.assert_allclose(
            obj.loss(theta + step * u), obj.loss(theta), rtol=1e-12
        )
    numeric = numerical_derivative(lambda t: obj.loss_gradient(t)[1], theta)
    assert np.max(np.abs(numeric @ u)) <= 1e-6 * np.max(np.abs(numeric))
    H = exact_hessian(obj, theta)
    added = obj.constrained_curvature(H.copy()) - H
    np.testing.assert_allclose(added, np.outer(u, u), rtol=0, atol=1e-12)


def test_every_flat_row_of_the_last_layer_gets_a_unit_curvature_along_its_shift():
    """A flat prior on the last layer's weights (``alpha=0`` there) and its
    biases: moving any one row of ``[W; b]`` (one input's weights to the 3
    classes, or the 3 biases) equally in every class changes no logit
    difference, so ``L`` is flat along each row's ``u_r = 1/sqrt(3)`` there,
    and ``constrained_curvature`` adds ``sum_r u_r u_r'``, whose product
    ``flat_shift_operator`` gives. A row with a fixed entry is not flat:
    moving the others moves only some logits, and the data pin it
    (reference: the loss itself, and its finite-difference Hessian)."""
    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    layout = obj.layout
    start = layout.offsets[1]  # the output layer's [W; b]: 5 rows of 3
    prior = obj.prior_precision.copy()
    prior[start:] = 0.0
    fixed = np.zeros(layout.n_params, dtype=bool)
    fixed[start + 3 * 2 + 1] = True  # one entry of row 2
    theta[fixed] = 0.0
    obj = rebuilt(obj, prior_precision=prior, fixed=fixed)
    np.testing.assert_array_equal(obj.flat_shifts(), [1, 1, 0, 1, 1])
    U = np.zeros((layout.n_params, 5))
    for row in range(5):
        U[start + 3 * row : start + 3 * row + 3, row] = 1.0 / np.sqrt(3.0)
    numeric = numerical_derivative(lambda t: obj.loss_gradient(t)[1], theta)
    for row in range(5):
        u = U[:, row] * ~fixed
        moved = [obj.loss(theta + step * u) - obj.loss(theta) for step in (-2, 1)]
        curvature = u @ numeric @ u
        if row == 2:  # two of three logits moved: the data see it
            assert np.min(np.abs(moved)) > 1e-3 and curvature > 1e-3
        else:
            np.testing.assert_allclose(moved, 0.0, atol=1e-10)
            assert abs(curvature) <= 1e-6 * np.max(np.abs(numeric))
    flat = U[:, [0, 1, 3, 4]]
    H = exact_hessian(obj, theta)
    added = obj.constrained_curvature(H.copy()) - H
    added[fixed] = added[:, fixed] = 0.0  # pinned to the identity instead
    np.testing.assert_allclose(added, flat @ flat.T, rtol=0, atol=1e-12)
    v = np.random.RandomState(3).normal(size=layout.n_params)
    np.testing.assert_allclose(
        obj.flat_shift_operator()(v), flat @ (flat.T @ v), rtol=1e-14, atol=1e-15
    )
    # One logit: no softmax, no shift.
    binary, _ = make_problem("tanh", 2, (4,))
    flat_prior = np.where(np.arange(binary.layout.n_params) >= 16, 0.0, 1.0)
    assert rebuilt(binary, prior_precision=flat_prior).flat_shifts() is None


def test_a_row_over_the_dense_limit_is_refused_by_name(monkeypatch):
    # The refusal names what would not fit, from its first word, and both
    # sizes: 2,048 bytes of one row's intermediates against a 1 KiB limit
    # (2048 / 2**30 and 1024 / 2**30 GiB); a row at the limit is accepted.
    import sklaplace._memory as memory_module

    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 1024)
    obj, _ = make_problem()
    message = (
        "The curvature intermediates of one sample would take 1.91e-06 GiB, "
        "more than the 9.54e-07 GiB sklaplace allows for one array "
        "(sklaplace._memory.DENSE_MEMORY_LIMIT)."
    )
    with pytest.raises(MemoryLimitError, match="^" + re.escape(message)):
        next(obj.row_chunks(bytes_per_row=2048))
    X, _, _ = next(obj.row_chunks(bytes_per_row=1024))
    assert X.shape[0] >= 1


@pytest.mark.parametrize("n_classes", [2, 3])
def test_loss_is_the_weighted_negative_log_likelihood_plus_half_the_prior_quadratic(
    n_classes,
):
    """``L = -sum_n s_n log p(y_n | x_n) + theta' A theta / 2``, from raw arrays.

    Both ``loss`` and the value ``loss_gradient`` returns (the solvers judge
    steps by it) against a forward pass and likelihood written here; a
    dropped half, sign or sample weight moves it by far more than 1e-10.
    """
    from scipy.special import log_expit, log_softmax

    from sklaplace._testing import mlp_logits

    obj, theta, raw = make_problem("tanh", n_classes, (4,), weighted=True, raw=True)
    logits = mlp_logits(theta, raw["X"], raw["layer_sizes"], raw["activation"])
    y = raw["y"]
    if n_classes == 2:
        f = logits[:, 0]
        log_p = np.where(y == 1, log_expit(f), log_expit(-f))
    else:
        log_p = log_softmax(logits, axis=1)[np.arange(y.size), y]
    expected = -np.sum(raw["sample_weight"] * log_p) + 0.5 * np.sum(
        raw["prior_precision"] * theta**2
    )
    np.testing.assert_allclose(obj.loss(theta), expected, rtol=1e-10)
    np.testing.assert_allclose(obj.loss_gradient(theta)[0], expected, rtol=1e-10)


def _collapsed(n_classes=3):
    """A network that ignores its input: no output weights, distinct biases.

    Its logits are the output biases on every row: constant down each
    column, and different from one column to the next (a class-frequency
    fit, as a collapsed MAP is).
    """
    obj, theta = make_problem("tanh", n_classes, (4,), n_samples=30)
    coefs, intercepts = obj.layout.split(np, theta)
    coefs[-1][:] = 0.0
    intercepts[-1][:] = np.linspace(-1.0, 1.5, intercepts[-1].size)
    return obj, obj.layout.pack(np, coefs, intercepts)


def test_the_base_rate_warning_reads_each_logit_down_its_own_column():
    """``ignores_its_input`` measures each logit's spread over the rows.

    Logits that are constant on every row but differ between classes (2.5
    nats apart here) are a network that ignores its input; a spread taken
    over all the logits at once, on either side of the difference, reads
    them as 2.5 apart and misses it (no warning). With one varied output
    weight the network uses its input and nothing is said.
    """
    obj, theta = _collapsed(3)
    logits = obj.forward(theta).logits
    assert np.ptp(logits, axis=0).max() == 0.0 and np.ptp(logits) == 2.5
    with pytest.warns(BaseRateWarning, match="ignores its input"):
        warn_if_base_rate(obj, theta)
    coefs, intercepts = obj.layout.split(np, theta)
    coefs[-1][0, 1] = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_base_rate(obj, obj.layout.pack(np, coefs, intercepts))


def test_the_base_rate_warning_is_not_given_where_every_row_has_one_class():
    """Where every row the fit counts has one class, ignoring the input is
    the right answer (the ``UnweightedClassWarning`` says why): no
    ``BaseRateWarning``, for the same collapsed network that draws one on
    rows of three classes."""
    obj, theta = _collapsed(3)
    one_class = np.zeros_like(obj.Y)
    one_class[:, 1] = 1.0
    same = NegLogPosterior(
        np,
        obj.layout,
        obj.activation,
        obj.likelihood,
        obj.X,
        one_class,
        obj.sample_weight,
        obj.prior_precision,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_base_rate(same, theta)
    with pytest.warns(BaseRateWarning):
        warn_if_base_rate(obj, theta)


def test_the_base_rate_warning_says_what_it_found_and_what_may_help():
    """The whole message, word for word: what the network does, why, and
    the three things the user may change (each clause had been unchecked
    but for "ignores its input")."""
    obj, theta = _collapsed(2)
    message = (
        "The fitted network ignores its input: its logits are the same on "
        "every training row, so it predicts the same probabilities for every "
        "input (the class frequencies, where the fit converged). The prior "
        "(alpha) outweighs what the data show to this network: the features "
        "may carry no signal or the sample weights sum to few rows' worth, "
        "or a smaller alpha, fewer layers or another activation may fit."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_base_rate(obj, theta)
    assert [w.category for w in caught] == [BaseRateWarning]
    assert str(caught[0].message) == message


def test_a_cached_forward_pass_is_taken_not_computed_again(monkeypatch):
    """``loss``, ``loss_gradient`` and ``hessp`` given the forward pass at
    ``theta`` (``fwd``) run none of their own and return what they return
    without it, bit for bit: the trust region hands ``loss_gradient`` the
    pass it keeps for the curvature, and a second one would double the cost
    of every evaluated step. (Mutants: ``fwd`` ignored -- the same numbers,
    one forward pass more per call.)"""
    import sklaplace._objective

    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    v = np.random.RandomState(5).normal(size=theta.shape)
    fwd = obj.forward(theta)
    expected = [
        obj.loss(theta),
        *obj.loss_gradient(theta),
        obj.hessp(theta, v),
        obj.hessp(theta, v, "ggn"),
    ]
    passes, real = [], sklaplace._objective.forward
    monkeypatch.setattr(
        sklaplace._objective,
        "forward",
        lambda *args: passes.append(1) or real(*args),
    )
    cached = [
        obj.loss(theta, fwd),
        *obj.loss_gradient(theta, fwd),
        obj.hessp(theta, v, fwd=fwd),
        obj.hessp(theta, v, "ggn", fwd=fwd),
    ]
    assert passes == []
    for value, reference in zip(cached, expected):
        np.testing.assert_array_equal(value, reference)
    obj.loss(theta)  # the counter counts: without fwd, a pass is computed
    assert passes == [1]
