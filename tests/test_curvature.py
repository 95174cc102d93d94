import copy
import warnings

import numpy as np
import pytest

import sklaplace._curvature._products as products_module
import sklaplace._memory as memory_module
import sklaplace._network as network_module
from sklaplace._backend import get_namespace
from sklaplace._curvature import (
    CURVATURE_BUILDERS,
    check_finite_curvature,
    exact_diagonal,
    exact_hessian,
    fisher_diagonal,
    ggn_diagonal,
    ggn_hessian,
    ggn_rows,
    hessp_operator,
    kron_eigenvalues,
    kron_factors,
    residual_hessian,
)
from sklaplace._curvature._ggn import ggn_row_chunks
from sklaplace._curvature._products import SINGLE_FLUSH, SINGLE_PRECISION_LIMIT
from sklaplace._likelihood import likelihood_for
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior
from sklaplace._testing import dense_ggn, mlp_logits
from sklaplace.exceptions import MemoryLimitError
from tests.conftest import CASES, case_id, make_problem, rebuilt, traced_peak


def _raw_ggn(raw, theta):
    """The dense GGN (prior included) rebuilt from ``make_problem``'s raw arrays."""
    keys = ("X", "sample_weight", "prior_precision", "layer_sizes", "activation")
    return dense_ggn(theta, *[raw[key] for key in keys])


@pytest.mark.parametrize("case", CASES, ids=[case_id(*c) for c in CASES])
def test_ggn_matches_dense_reference(case):
    # The reference is rebuilt from the raw arrays (its own forward pass,
    # finite-difference Jacobian and Lambda): nothing is read from ``obj``.
    activation, n_classes, hidden, weighted = case
    obj, theta, raw = make_problem(activation, n_classes, hidden, weighted, raw=True)
    G = ggn_hessian(obj, theta)
    np.testing.assert_allclose(G, _raw_ggn(raw, theta), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(G, G.T)
    assert np.linalg.eigvalsh(G).min() > 0  # A is positive definite here


def test_diagonals_match_full_matrices(problem):
    obj, theta = problem
    np.testing.assert_allclose(
        ggn_diagonal(obj, theta), np.diag(ggn_hessian(obj, theta)), rtol=1e-12
    )
    np.testing.assert_allclose(
        exact_diagonal(obj, theta),
        np.diag(exact_hessian(obj, theta)),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_ggn_equals_exact_without_hidden_layer(n_classes, activation):
    obj, theta = make_problem(activation, n_classes, hidden=(), weighted=True)
    np.testing.assert_allclose(
        ggn_hessian(obj, theta), exact_hessian(obj, theta), rtol=1e-13, atol=1e-13
    )


def test_exact_differs_from_ggn_for_smooth_hidden_layers():
    obj, theta = make_problem("tanh", 3, hidden=(4, 3))
    assert np.max(np.abs(ggn_hessian(obj, theta) - exact_hessian(obj, theta))) > 1e-2


def test_logistic_regression_hessian_is_the_direct_formula():
    obj, theta, raw = make_problem("identity", 2, hidden=(), weighted=True, raw=True)
    Phi = np.hstack([raw["X"], np.ones((raw["X"].shape[0], 1))])
    p = 1 / (1 + np.exp(-(Phi @ theta)))
    weight = raw["sample_weight"]
    direct = Phi.T @ (weight[:, None] * (p * (1 - p))[:, None] * Phi)
    direct += np.diag(raw["prior_precision"])
    for kind in ("exact", "ggn"):
        np.testing.assert_allclose(
            CURVATURE_BUILDERS[kind, "full"](obj, theta), direct, rtol=1e-12
        )


@pytest.mark.parametrize("kind", sorted(CURVATURE_BUILDERS))
def test_chunking_does_not_change_the_result(kind):
    obj, theta = make_problem("softplus", 3, hidden=(4, 3), weighted=True, n_samples=37)
    small, _ = make_problem(
        "softplus", 3, hidden=(4, 3), weighted=True, n_samples=37, memory_budget=1
    )
    np.testing.assert_allclose(
        _flat(CURVATURE_BUILDERS[kind](small, theta)),
        _flat(CURVATURE_BUILDERS[kind](obj, theta)),
        rtol=1e-12,
        atol=1e-13,
    )


def _flat(curvature):
    """One array from a matrix, a vector, or factors (a tuple of lists of arrays)."""
    if isinstance(curvature, tuple):
        return np.concatenate([np.ravel(a) for part in curvature for a in part])
    return np.asarray(curvature)


def _copy_as(obj, dtype, fixed=None):
    """``obj`` with its data, weights and prior in ``dtype``, ``fixed`` fixed."""
    other = copy.copy(obj)
    for name in ("X", "Y", "sample_weight", "prior_precision"):
        setattr(other, name, getattr(obj, name).astype(dtype))
    other.fixed = fixed
    other._free = None if fixed is None else (~fixed).astype(dtype)
    return other


@pytest.mark.parametrize("n_classes", [2, 3])
def test_float32_ggn_its_rows_and_kronecker_pieces_stay_float32(n_classes):
    # Accumulators built without theta's dtype would be NumPy's float64 and
    # promote the curvature (twice the memory the estimates allow for); the
    # values still match float64 to float32 round-off.
    obj, theta = make_problem(n_classes=n_classes, hidden=(4,))
    fixed = np.zeros(obj.layout.n_params, dtype=bool)
    fixed[[0, 5]] = True
    single, theta32 = _copy_as(obj, np.float32, fixed), theta.astype(np.float32)
    close = dict(rtol=1e-4, atol=1e-5)

    H = ggn_hessian(single, theta32)
    assert H.dtype == np.float32
    np.testing.assert_allclose(H, ggn_hessian(obj, theta), **close)

    G = ggn_rows(single, theta32)
    assert G.dtype == np.float32
    assert np.all(G[:, fixed] == 0)

    factors = kron_factors(single, theta32)
    reference = kron_factors(obj, theta)
    for got, want in zip(
        factors.inputs + factors.outputs, reference.inputs + reference.outputs
    ):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, **close)

    # float64 bases are cast to theta's precision, as is the result.
    bases = [(np.eye(rows), np.eye(cols)) for rows, cols in obj.layout.shapes]
    for got, want in zip(
        kron_eigenvalues(single, theta32, bases), kron_eigenvalues(obj, theta, bases)
    ):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, **close)


def test_a_float32_ggn_is_refused_only_beyond_four_bytes_per_entry(monkeypatch):
    # The square matrix is n_params**2 float32 entries: with the limit at
    # exactly that size it is built, one byte less it is refused, naming it.
    obj, theta = make_problem(n_classes=2, hidden=(4,))
    single, theta32 = _copy_as(obj, np.float32), theta.astype(np.float32)
    n_params = obj.layout.n_params
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * n_params**2)
    assert ggn_hessian(single, theta32).shape == (n_params, n_params)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * n_params**2 - 1)
    match = f"^The {n_params} x {n_params} generalised Gauss-Newton matrix "
    with pytest.raises(MemoryLimitError, match=match):
        ggn_hessian(single, theta32)


@pytest.mark.parametrize("single_precision", [False, True])
def test_float32_hessian_products_with_fixed_parameters_stay_float32(
    single_precision,
):
    # The mask of the free parameters takes theta's dtype: a float64 mask
    # would promote every product (and Newton-CG's iterates) to float64.
    obj, theta = make_problem(n_classes=3, hidden=(4,))
    fixed = np.zeros(obj.layout.n_params, dtype=bool)
    fixed[[0, 5]] = True
    single, theta32 = _copy_as(obj, np.float32, fixed), theta.astype(np.float32)
    v = np.linspace(-1.0, 1.0, obj.layout.n_params)
    hessp = hessp_operator(single, theta32, single_precision=single_precision)
    Hv = hessp(v.astype(np.float32))
    assert Hv.dtype == np.float32
    reference = hessp_operator(_copy_as(obj, np.float64, fixed), theta)
    np.testing.assert_allclose(Hv, reference(v), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(Hv[fixed], v[fixed].astype(np.float32))


def test_curvature_products_reuse_the_callers_forward_pass_and_residuals():
    # Given the forward pass (and the residuals) at theta, neither the
    # products nor the Fisher diagonal redo them: Newton-CG passes them to
    # save a pass per iteration.
    obj, theta = make_problem(n_classes=3, hidden=(4,))
    fwd = obj.forward(theta)
    backprop = obj.residual_backprop(theta, fwd)
    v = np.linspace(-1.0, 1.0, obj.layout.n_params)
    expected_Hv = hessp_operator(obj, theta)(v)
    expected_diag = fisher_diagonal(obj, theta)

    def recomputed(*args, **kwargs):
        raise AssertionError("recomputed what the caller passed")

    obj.forward = obj.residual_backprop = recomputed
    Hv = hessp_operator(obj, theta, fwd=fwd, backprop=backprop)(v)
    np.testing.assert_allclose(Hv, expected_Hv, rtol=1e-12, atol=1e-12)
    diag = fisher_diagonal(obj, theta, fwd=fwd, deltas=backprop[0])
    np.testing.assert_allclose(diag, expected_diag, rtol=1e-12, atol=1e-12)


def test_an_overflowed_curvature_is_refused_with_the_whole_message():
    # The message is what a user acts on: every clause, and its capitals
    # (it opens the sentence; StandardScaler is a class name), is kept.
    curvature = np.eye(2)
    curvature[0, 1] = np.nan
    with pytest.raises(ValueError) as info:
        check_finite_curvature(np, curvature)
    assert str(info.value) == (
        "The curvature of the log posterior is not finite (it overflowed): "
        "the features, or the network's activations, are too large for "
        "float64. Standardise the features (e.g. sklearn.preprocessing."
        "StandardScaler) or increase alpha."
    )


def _hessian_of(loss, theta, h=1e-4):
    """Central second differences of a scalar ``loss``, upper triangle mirrored."""
    n = theta.shape[0]
    H, steps = np.empty((n, n)), h * np.eye(n)
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (
                loss(theta + steps[i] + steps[j])
                - loss(theta + steps[i] - steps[j])
                - loss(theta - steps[i] + steps[j])
                + loss(theta - steps[i] - steps[j])
            ) / (4 * h * h)
    return H


def test_the_residual_term_alone_is_the_hessian_minus_the_ggn_in_thetas_dtype():
    """Without ``out``, ``R`` starts from zeros of theta's dtype: ``H - GGN``.

    ``H`` is the finite-difference Hessian of a softmax cross-entropy loss
    written here from :func:`mlp_logits`, ``GGN`` the raw-data
    :func:`dense_ggn` (their prior terms cancel); float32 stays float32.
    """
    obj, theta, raw = make_problem("tanh", 3, (4, 3), weighted=True, raw=True)
    keys = ("X", "sample_weight", "prior_precision", "layer_sizes", "activation")
    X, weight, precision, sizes, activation = [raw[key] for key in keys]
    onehot = np.eye(3)[raw["y"]]

    def loss(t):
        f = mlp_logits(t, X, sizes, activation)
        nll = np.logaddexp.reduce(f, axis=1) - np.sum(onehot * f, axis=1)
        return weight @ nll + 0.5 * t @ (precision * t)

    expected = _hessian_of(loss, theta) - _raw_ggn(raw, theta)
    scale = np.max(np.abs(expected))
    assert scale > 1e-2  # the residual term is not negligible here
    for dtype, tolerance in [(np.float64, 1e-5), (np.float32, 1e-4)]:
        R = residual_hessian(_copy_as(obj, dtype), theta.astype(dtype))
        assert R.dtype == dtype
        np.testing.assert_allclose(R, expected, rtol=0, atol=tolerance * scale)


def _residual_term_into_its_own_output(obj, theta):
    n_params = obj.layout.n_params
    return residual_hessian(obj, theta, out=np.zeros((n_params, n_params)))


def _row_chunks_consumed(obj, theta):
    """Every chunk of the GGN's rows, as a consumer that keeps none sees them."""
    for _ in ggn_row_chunks(obj, theta):
        pass


def _eigenvalues_in_unit_bases(obj, theta):
    bases = [(np.eye(rows), np.eye(cols)) for rows, cols in obj.layout.shapes]
    return kron_eigenvalues(obj, theta, bases)


_BUDGET_BUILDS = [
    ggn_diagonal,
    exact_diagonal,
    kron_factors,
    ggn_hessian,
    exact_hessian,
    _residual_term_into_its_own_output,
    _eigenvalues_in_unit_bases,
]
_BUDGET_NETWORKS = [
    ((4, 3), 2, 3),
    ((4, 3), 3, 3),
    ((6, 6), 2, 3),
    ((6, 6), 3, 3),
    ((4,), 10, 3),
    ((4,), 3, 64),
]
_BUDGET_CASES = [(b, *net) for b in _BUDGET_BUILDS for net in _BUDGET_NETWORKS] + [
    # The K-logit rows of G beside the passes that form them, on networks
    # of few parameters (the rows alone counted: 1.15-1.32 times).
    (_row_chunks_consumed, (1,), 3, 1),
    (_row_chunks_consumed, (2,), 3, 2),
    # One logit, a wide hidden layer: its activations and deltas are most
    # of a row's intermediates (the eigenvalues' had not been counted).
    (ggn_diagonal, (10,), 2, 1),
    (_eigenvalues_in_unit_bases, (40,), 2, 3),
    (_eigenvalues_in_unit_bases, (1, 30), 2, 2),
    # A few parameters: the passes outweigh the rows of G (not counted,
    # 1.3-1.4 times the budget).
    (ggn_hessian, (1,), 2, 1),
    (ggn_hessian, (2,), 2, 2),
    (ggn_hessian, (4,), 2, 1),
    # Three logits next to a one-unit layer: the Kronecker rows of a layer
    # pair and its second-order rows are similar in size.
    (ggn_hessian, (4, 1), 3, 1),
    (ggn_hessian, (1, 4), 3, 2),
]


#: Builds whose output is ``O(n_params)``: their peak is a chunk's
#: intermediates (a matrix output's own temporaries hide a chunk's).
_BUILDS_OF_SMALL_OUTPUT = [
    ggn_diagonal,
    exact_diagonal,
    _eigenvalues_in_unit_bases,
    _row_chunks_consumed,
]


@pytest.mark.parametrize(
    "build, hidden, n_classes, n_features",
    _BUDGET_CASES,
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_a_curvatures_row_chunks_fit_the_memory_budget(
    build, hidden, n_classes, n_features
):
    """A chunk's per-sample intermediates take at most ``memory_budget``.

    2,000 rows under a 50 kB budget: the traced peak exceeds that of one row
    a chunk by no more than the budget (the 2,000 rows in one chunk exceed it
    many times); the output, the same in both, cancels. Counting one layer's
    deltas or one ``D_i`` block only had let the diagonals' chunks take 2-3
    times the budget, and leaving out the likelihood's ``K x K`` factor
    1.1 times at ten classes. Builds of a small output also take at least an
    eighth of the budget, so an estimate many times a row's bytes fails.
    """
    budget = 50_000
    problem = dict(n_classes=n_classes, hidden=hidden, n_features=n_features)
    one_row, theta = make_problem("tanh", memory_budget=1, **problem)
    many, _ = make_problem("tanh", n_samples=2000, memory_budget=budget, **problem)
    build(one_row, theta)  # first-call allocations
    baseline = traced_peak(lambda: build(one_row, theta))
    peak = traced_peak(lambda: build(many, theta))
    assert peak - baseline <= budget
    if build in _BUILDS_OF_SMALL_OUTPUT:
        # Nor needlessly small chunks: these builds took 0.19-0.75 of the
        # budget; an estimate many times the bytes a row takes (gross
        # overcounts only) gives many more chunks than needed.
        assert peak - baseline >= budget / 8


def _data_ggn(raw, theta):
    """``sum_n J_n' Lambda_n J_n`` from the raw arrays (the prior taken out)."""
    return _raw_ggn(raw, theta) - np.diag(raw["prior_precision"])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_ggn_rows_over_many_chunks_are_a_square_root_of_the_data_ggn(n_classes):
    """One row per chunk: ``G`` stacks every sample's rows, ``G' G`` is the GGN.

    A fixed parameter's column is zero and leaves the others as they are.
    """
    obj, theta, raw = make_problem(
        "tanh", n_classes, (4, 3), weighted=True, memory_budget=1, raw=True
    )
    n_outputs, n_params = obj.layout.n_outputs, obj.layout.n_params
    G = ggn_rows(obj, theta)
    assert G.shape == (obj.n_samples * n_outputs, n_params)
    expected = _data_ggn(raw, theta)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(G.T @ G, expected, rtol=0, atol=1e-7 * scale)

    fixed = np.zeros(n_params, dtype=bool)
    fixed[[1, n_params - 2]] = True
    G_fixed = ggn_rows(rebuilt(obj, fixed=fixed), theta)
    np.testing.assert_array_equal(G_fixed[:, fixed], 0.0)
    np.testing.assert_allclose(G_fixed[:, ~fixed], G[:, ~fixed], rtol=1e-12, atol=1e-15)


def _orthogonal(rng, size):
    Q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    return Q


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kron_eigenvalues_over_many_chunks_are_the_ggn_diagonal_in_the_basis(
    n_classes,
):
    """``h_i = diag((S kron V)' B_i (S kron V))``, ``B_i`` layer i's GGN block.

    Random orthogonal bases, weighted samples, one row per chunk; ``B_i`` is
    read from the dense GGN of the raw data.
    """
    obj, theta, raw = make_problem(
        "tanh", n_classes, (4, 3), weighted=True, memory_budget=1, raw=True
    )
    rng = np.random.RandomState(1)
    bases = [(_orthogonal(rng, r), _orthogonal(rng, c)) for r, c in obj.layout.shapes]
    ggn = _data_ggn(raw, theta)
    scale = np.max(np.abs(ggn))
    got = kron_eigenvalues(obj, theta, bases)
    for i, ((S, V), h) in enumerate(zip(bases, got, strict=True)):
        block = ggn[obj.layout.layer_slice(i), obj.layout.layer_slice(i)]
        Q = np.kron(S, V)
        expected = np.diag(Q.T @ block @ Q).reshape(S.shape[0], V.shape[0])
        np.testing.assert_allclose(h, expected, rtol=0, atol=1e-7 * scale)


# Mutation round (session 58) on the Hessian-vector products: their cost
# rules and the single-precision path's edges.
def _objective_on(X, y, sample_weight, prior_precision, hidden=(), activation="tanh"):
    """A binary ``NegLogPosterior`` on the given NumPy arrays."""
    xp = get_namespace(X)
    likelihood = likelihood_for(2)
    layout = ParamLayout((X.shape[1], *hidden, likelihood.n_outputs(2)))
    Y = likelihood.encode(xp, xp.asarray(y), layout.n_outputs, xp.float64)
    precision = np.broadcast_to(prior_precision, (layout.n_params,)).copy()
    return NegLogPosterior(
        xp, layout, activation, likelihood, X, Y, sample_weight, precision
    )


def _reference_product(obj, theta, raw, v, kind):
    """``H v`` from references that do not go through the R-operator: the
    dense GGN rebuilt from raw data, or a central difference of the gradient."""
    if kind == "ggn":
        return _raw_ggn(raw, theta) @ v
    h = 1e-5
    return (
        obj.loss_gradient(theta + h * v)[1] - obj.loss_gradient(theta - h * v)[1]
    ) / (2 * h)


@pytest.mark.parametrize("single_precision", [False, True])
@pytest.mark.parametrize("kind", ["exact", "ggn"])
def test_hessp_operator_forms_the_layer_inputs_once(
    monkeypatch, kind, single_precision
):
    """The operator forms every layer's ``[a_i, 1]`` once (its first product
    at the latest) and no product after that forms one again, neither in the
    R-forward nor in the R-backward pass (each would copy ``X``); the products
    still match an independent reference."""
    obj, theta, raw = make_problem("tanh", 3, (4, 3), weighted=True, raw=True)
    rng = np.random.RandomState(2)
    hessp = hessp_operator(obj, theta, kind=kind, single_precision=single_precision)
    hessp(rng.normal(size=theta.shape))  # builds the operator's lazy parts

    def formed_again(xp, a):
        raise AssertionError("a Hessian-vector product formed a layer input again")

    monkeypatch.setattr(network_module, "with_ones", formed_again)
    monkeypatch.setattr(products_module, "with_ones", formed_again)
    v = rng.normal(size=theta.shape)
    Hv = hessp(v)
    monkeypatch.undo()
    reference = _reference_product(obj, theta, raw, v, kind)
    rtol = 1e-4 if single_precision else 1e-6
    scale = np.max(np.abs(reference))
    np.testing.assert_allclose(Hv, reference, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kind", ["exact", "ggn"])
def test_single_precision_with_all_weights_zero_is_the_prior_without_warnings(kind):
    """With every sample weight zero the likelihood has no curvature: ``H v``
    is ``A v`` exactly, and the single-precision operator must see that the
    weights cannot be scaled to 1 (no 0 / 0, no floating-point warning)."""
    obj, theta = make_problem("tanh", 2, (4,))
    zero = rebuilt(obj, sample_weight=np.zeros(obj.n_samples))
    v = np.random.RandomState(3).normal(size=theta.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Hv = hessp_operator(zero, theta, kind=kind, single_precision=True)(v)
    np.testing.assert_allclose(Hv, obj.prior_precision * v, rtol=1e-15, atol=0)


def test_an_array_at_the_single_precision_limit_still_uses_float32(monkeypatch):
    """``SINGLE_PRECISION_LIMIT`` is the largest magnitude allowed into a
    float32 product, so a parameter of exactly that magnitude keeps the
    single-precision product. The parameter is a weight from an input that is
    zero on every row, so that nothing else grows with it; the product is
    checked against the dense GGN."""
    rng = np.random.RandomState(4)
    X = rng.normal(size=(12, 3))
    X[:, 0] = 0.0
    y = np.arange(12) % 2
    weight = np.ones(12)
    obj = _objective_on(X, y, weight, 0.5, hidden=(4,))
    theta = rng.normal(scale=0.7, size=obj.layout.n_params)
    theta[0] = SINGLE_PRECISION_LIMIT  # W_0[0, 0]: acts on the zero column
    dtypes, original = [], products_module.likelihood_product

    def recording(obj, theta, *args):
        dtypes.append(theta.dtype)
        return original(obj, theta, *args)

    monkeypatch.setattr(products_module, "likelihood_product", recording)
    v = rng.normal(size=theta.shape)
    Hv = hessp_operator(obj, theta, kind="ggn", single_precision=True)(v)
    assert np.float32 in dtypes
    G = dense_ggn(theta, X, weight, obj.prior_precision, obj.layout.layer_sizes, "tanh")
    reference = G @ v
    scale = np.max(np.abs(reference))
    np.testing.assert_allclose(Hv, reference, rtol=1e-4, atol=1e-4 * scale)


def test_a_weight_at_the_flush_threshold_is_not_flushed():
    """Operands are flushed to zero only *below* ``SINGLE_FLUSH``: a row whose
    relative sample weight is exactly the threshold still contributes its
    ``s_n p_n (1 - p_n) x_n x_n' v`` to the float32 product. The other row has
    a zero input, so along the weights (and with no prior) that row's term is
    all there is, computed by hand here."""
    X = np.array([[0.0, 0.0], [0.8, -1.3]])
    weight = np.array([1.0, SINGLE_FLUSH])
    obj = _objective_on(X, np.array([0, 1]), weight, 0.0)
    theta = np.array([0.4, 0.9, -0.2])  # W_0 (2 x 1), then b_0
    v = np.array([0.7, -0.5, 0.0])  # along the weights only
    Hv = hessp_operator(obj, theta, kind="ggn", single_precision=True)(v)
    x = np.append(X[1], 1.0)
    p = 1.0 / (1.0 + np.exp(-(x @ theta)))
    reference = weight[1] * p * (1.0 - p) * x * (x @ v)
    assert np.all(reference != 0)
    np.testing.assert_allclose(Hv, reference, rtol=1e-5, atol=0)
