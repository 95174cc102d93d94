"""Newton-CG's preconditioners (``sklaplace._preconditioners``).

The Kronecker-factored preconditioner is checked against the dense matrix
``unit * (blockdiag(A_l kron G_l) + diag(prior))`` built with ``np.kron``
from :func:`~sklaplace._curvature.kron_factors` (whose factors
``tests/test_kron.py`` checks against the GGN from scratch); Steihaug-Toint
CG's region, measured in a full (non-diagonal) preconditioner's norm,
against that norm computed densely; and the diagonal path bit for bit
against the arithmetic it had before the preconditioners became objects.
"""

import warnings

import numpy as np
import pytest
from scipy.linalg import block_diag
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

import sklaplace._curvature._products
import sklaplace._newton_cg
import sklaplace._preconditioners
from sklaplace import LaplaceMLPClassifier, prune
from sklaplace._backend import NotPositiveDefiniteError
from sklaplace._curvature import fisher_diagonal, kron_factors, squared_inputs
from sklaplace._newton_cg import NewtonCGSolver, steihaug_cg
from sklaplace._preconditioners import (
    DiagonalPreconditioner,
    KroneckerFactoring,
    KroneckerPreconditioner,
)
from tests.conftest import make_problem


def _dense_kfac(obj, theta, unit):
    factors = kron_factors(obj, theta)
    kfac = block_diag(*[np.kron(A, G) for A, G in zip(*factors)])
    return unit * (kfac + np.diag(obj.prior_precision))


def _columns(operator, n):
    return np.stack([operator(e) for e in np.eye(n)], axis=1)


def _dense_bases(obj, theta):
    """``blockdiag(B_l kron I)``, ``B_l = A_l + diag(d_l)``: ``T T'`` of the blocks."""
    factors = kron_factors(obj, theta)
    parts, start = [], 0
    for A, G in zip(*factors):
        r, c = A.shape[0], G.shape[0]
        d = np.reshape(obj.prior_precision[start : start + r * c], (r, c))[:, 0]
        parts.append(np.kron(A + np.diag(d), np.eye(c)))
        start += r * c
    return block_diag(*parts)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kronecker_preconditioner_is_kfac_plus_the_prior(n_classes, monkeypatch):
    """At full power ``times`` is the dense matrix, ``solve`` its inverse;
    ``spread`` is its diagonal's ``max / min`` (at any power)."""
    monkeypatch.setattr(sklaplace._preconditioners, "KRONECKER_POWER", 1.0)
    obj, theta = make_problem("tanh", n_classes, (4, 3), weighted=True)
    M = KroneckerFactoring(obj).at(theta, 2.5)
    assert isinstance(M, KroneckerPreconditioner)
    dense = _dense_kfac(obj, theta, 2.5)
    n = obj.layout.n_params
    scale = np.max(np.abs(dense))
    np.testing.assert_allclose(_columns(M.times, n), dense, atol=1e-12 * scale)
    inverse = np.linalg.inv(dense)
    np.testing.assert_allclose(
        _columns(M.solve, n), inverse, atol=1e-10 * np.max(np.abs(inverse))
    )
    diagonal = np.diag(dense)
    np.testing.assert_allclose(M.spread, diagonal.max() / diagonal.min(), rtol=1e-10)


@pytest.mark.parametrize("power", [0.5, "default"])
def test_kronecker_preconditioner_takes_its_power_in_each_blocks_basis(
    monkeypatch, power
):
    """``M = T diag(c (E / c)^p) T'`` with ``P = T diag(E) T'`` (``P`` the
    dense KFAC plus prior, ``T T' = B kron I``): ``det M = det P`` (``c``
    is ``E``'s geometric mean), and at ``p = 1/2``, ``M P^{-1} M = c
    blockdiag(B_l kron I)`` for one scalar ``c``. ``M`` is symmetric,
    ``solve`` its inverse, and ``spread`` still that of ``P``'s diagonal
    (the curvature's, as for the Fisher diagonal)."""
    if power != "default":
        monkeypatch.setattr(sklaplace._preconditioners, "KRONECKER_POWER", power)
    assert 0.0 < sklaplace._preconditioners.KRONECKER_POWER < 1.0
    obj, theta = make_problem("tanh", 3, (4, 3), weighted=True)
    M = KroneckerFactoring(obj).at(theta, 2.5)
    n = obj.layout.n_params
    dense = _columns(M.times, n)
    P = _dense_kfac(obj, theta, 2.5)
    np.testing.assert_allclose(dense, dense.T, atol=1e-12 * np.max(np.abs(dense)))
    np.testing.assert_allclose(_columns(M.solve, n) @ dense, np.eye(n), atol=1e-9)
    if power == 0.5:
        product, bases = dense @ np.linalg.solve(P, dense), _dense_bases(obj, theta)
        c = np.trace(product) / np.trace(bases)
        scale = np.max(np.abs(product))
        np.testing.assert_allclose(product, c * bases, atol=1e-9 * scale)
    # Taken about the geometric mean of E, so the volume (the region's
    # scale) is kept: det M = det P.
    np.testing.assert_allclose(
        np.linalg.slogdet(dense)[1], np.linalg.slogdet(P)[1], rtol=1e-10
    )
    # Not the full-power matrix.
    assert np.max(np.abs(dense - P)) > 1e-2 * np.max(np.abs(P))
    diagonal = np.diag(P)
    np.testing.assert_allclose(M.spread, diagonal.max() / diagonal.min(), rtol=1e-10)


def test_the_first_layers_kept_factor_serves_every_later_iterate(monkeypatch):
    """The first layer's input factor and basis are kept from the first
    iterate; everything that depends on ``theta`` (its ``G``, the other
    layers' factors) is new at the next: the same matrix as a fresh build."""
    monkeypatch.setattr(sklaplace._preconditioners, "KRONECKER_POWER", 1.0)
    obj, theta = make_problem("tanh", 3, (4, 3), weighted=True)
    factoring = KroneckerFactoring(obj)
    factoring.at(theta, 1.0)
    later = theta + np.random.RandomState(0).normal(scale=0.5, size=theta.shape)
    M = factoring.at(later, 1.0)
    dense = _dense_kfac(obj, later, 1.0)
    n = obj.layout.n_params
    np.testing.assert_allclose(
        _columns(M.times, n), dense, atol=1e-12 * np.max(np.abs(dense))
    )
    # ... and not the first iterate's matrix.
    assert np.max(np.abs(dense - _dense_kfac(obj, theta, 1.0))) > 1e-3 * np.max(dense)


def test_a_prior_varying_along_a_row_counts_by_its_row_means(monkeypatch):
    """One alpha per parameter: each block's prior is its rows' means, as
    the ``"kron"`` posterior's is (no warning: a preconditioner)."""
    monkeypatch.setattr(sklaplace._preconditioners, "KRONECKER_POWER", 1.0)
    obj, theta = make_problem("tanh", 3, (4,), weighted=True)
    prior = np.random.RandomState(2).uniform(0.1, 3.0, obj.layout.n_params)
    obj.prior_precision = prior
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M = KroneckerFactoring(obj).at(theta, 1.0)
    means = []
    for i, (r, c) in enumerate(obj.layout.shapes):
        rows = np.reshape(prior[obj.layout.layer_slice(i)], (r, c))
        means.append(np.repeat(rows.mean(axis=1), c))
    factors = kron_factors(obj, theta)
    expected = block_diag(*[np.kron(A, G) for A, G in zip(*factors)])
    expected += np.diag(np.concatenate(means))
    times = _columns(M.times, obj.layout.n_params)
    np.testing.assert_allclose(times, expected, atol=1e-12 * np.max(expected))


def test_later_iterates_reuse_the_first_layers_input_factor(monkeypatch):
    """From the second iterate on, ``kron_factors`` is handed the first
    layer's input factor of the first (it is the data's: summing it again
    costs what a product does on 784 features), and the iterate's forward
    pass where the solver has it (no pass of its own)."""
    obj, theta = make_problem("tanh", 3, (4, 3), weighted=True)
    seen, passes = [], []
    real = sklaplace._preconditioners.kron_factors

    def spy(objective, point, first_inputs=None, fwd=None):
        seen.append(first_inputs)
        passes.append(fwd)
        return real(objective, point, first_inputs, fwd)

    monkeypatch.setattr(sklaplace._preconditioners, "kron_factors", spy)
    factoring = KroneckerFactoring(obj)
    first = factoring.at(theta, 1.0)
    fwd = obj.forward(theta + 0.1)
    factoring.at(theta + 0.1, 1.0, fwd)
    assert seen[0] is None and seen[1] is factoring.first[0]
    assert len(passes) == 2 and passes[0] is None and passes[1] is fwd
    np.testing.assert_allclose(seen[1], kron_factors(obj, theta).inputs[0])
    assert isinstance(first, KroneckerPreconditioner)


def test_a_block_that_is_not_positive_definite_leaves_the_solve_diagonal(
    monkeypatch,
):
    """Should a Kronecker block fail (``NotPositiveDefiniteError``), the
    solve goes on with the Fisher diagonal, and stays with it."""
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_WORK", 0)
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_ROWS_PER_INPUT", 0)

    def failing(self, theta, unit, fwd=None):
        raise NotPositiveDefiniteError("a block")

    monkeypatch.setattr(KroneckerFactoring, "at", failing)
    obj, theta = make_problem("tanh", 3, (4,), n_samples=40)
    solver = NewtonCGSolver(obj, tol=1e-8, max_iter=100)
    result = solver.solve(theta)
    assert result.converged and solver.kronecker is None
    assert isinstance(solver.preconditioner, DiagonalPreconditioner)


@pytest.mark.parametrize("budget", [None, "three rows"])
def test_kron_factors_from_a_given_forward_pass_equal_their_own(budget):
    """``kron_factors(..., fwd=)`` takes each row chunk's rows of the given
    pass: the same factors as its own passes, in one chunk or in chunks of
    three rows (a slice that started each chunk at row 0 would not be)."""
    obj, theta = make_problem("tanh", 3, (4, 3), weighted=True, n_samples=20)
    if budget is not None:
        from sklaplace._curvature._ggn import backprop_bytes_per_row

        obj.memory_budget = 3 * backprop_bytes_per_row(obj)
    own = kron_factors(obj, theta)
    given = kron_factors(obj, theta, fwd=obj.forward(theta))
    for mine, theirs in zip(
        [*own.inputs, *own.outputs], [*given.inputs, *given.outputs]
    ):
        np.testing.assert_allclose(theirs, mine, rtol=1e-12, atol=1e-14)


def test_diagonal_preconditioner_solves_and_multiplies_by_its_diagonal():
    m = np.array([4.0, 1.0, 0.25])
    M = DiagonalPreconditioner(m)
    np.testing.assert_array_equal(M.solve(np.ones(3)), 1.0 / m)
    np.testing.assert_array_equal(M.times(np.ones(3)), m)
    assert M.spread == 16.0
    assert DiagonalPreconditioner(m, spread=256.0).spread == 256.0


class _Dense:
    """A full symmetric positive definite preconditioner, by dense algebra."""

    def __init__(self, M):
        self.M = M

    def solve(self, r):
        return np.linalg.solve(self.M, r)

    def times(self, v):
        return self.M @ v


def _spd(rng, n, spread=10.0):
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    return Q @ np.diag(np.geomspace(1.0, spread, n)) @ Q.T


def test_steihaug_cg_measures_its_region_in_a_full_preconditioners_norm():
    """Inside the region CG solves ``H s = -g``; with a smaller radius it
    stops on the boundary of ``s' M s = radius^2`` for the full ``M`` (not
    of its diagonal, nor of the 2-norm), with the model ``g's + s'Hs/2``."""
    rng = np.random.RandomState(3)
    H, M, g = _spd(rng, 6, 50.0), _spd(rng, 6, 20.0), rng.normal(size=6)
    newton = np.linalg.solve(H, -g)
    reach = np.sqrt(newton @ M @ newton)
    step, _, status, _ = steihaug_cg(
        np, H.__matmul__, g, _Dense(M), 2 * reach, 1e-12, 50
    )
    assert status == "converged"
    np.testing.assert_allclose(step, newton, rtol=1e-9)
    for radius in (0.3 * reach, 0.8 * reach):
        step, model, status, _ = steihaug_cg(
            np, H.__matmul__, g, _Dense(M), radius, 1e-12, 50
        )
        assert status == "boundary"
        np.testing.assert_allclose(np.sqrt(step @ M @ step), radius, rtol=1e-10)
        np.testing.assert_allclose(model, g @ step + 0.5 * step @ H @ step, rtol=1e-10)


def test_steihaug_cg_follows_negative_curvature_to_a_full_norms_boundary():
    rng = np.random.RandomState(4)
    H = _spd(rng, 5, 10.0) - 3.0 * np.eye(5)  # indefinite
    M, g = _spd(rng, 5, 5.0), rng.normal(size=5)
    step, model, status, _ = steihaug_cg(np, H.__matmul__, g, _Dense(M), 0.7, 1e-12, 50)
    assert status in ("negative curvature", "boundary")
    np.testing.assert_allclose(np.sqrt(step @ M @ step), 0.7, rtol=1e-10)
    assert model < 0


def test_cg_preconditioned_by_the_hessian_itself_takes_one_step():
    rng = np.random.RandomState(5)
    H, g = _spd(rng, 8, 1e4), rng.normal(size=8)
    step, _, status, n = steihaug_cg(np, H.__matmul__, g, _Dense(H), 1e9, 1e-10, 8)
    assert (status, n) == ("converged", 1)
    np.testing.assert_allclose(step, np.linalg.solve(H, -g), rtol=1e-8)


@pytest.mark.parametrize(
    "work_offset, rows_offset, kronecker",
    [(0, 0, True), (1, 0, False), (0, 1e-9, False)],
    ids=["both bounds met", "too little work", "too few rows per input"],
)
def test_newton_cg_is_kronecker_preconditioned_from_its_bounds(
    monkeypatch, work_offset, rows_offset, kronecker
):
    """``n_samples * n_params`` at :data:`KRONECKER_WORK` or beyond, and at
    least :data:`KRONECKER_ROWS_PER_INPUT` rows per input of the widest
    layer (here the hidden layer's 8 units and bias): the Kronecker-factored
    preconditioner; short of either bound, the Fisher diagonal."""
    obj, theta = make_problem("tanh", 3, (8, 4), n_samples=45)
    work = obj.n_samples * obj.layout.n_params
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_WORK", work + work_offset)
    # 5 rows per input, or just over: the bound is on the widest layer's
    # inputs (9), not its units (8, which 5.0...01 rows per unit would pass).
    per_input = obj.n_samples / 9 + rows_offset
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_ROWS_PER_INPUT", per_input)
    solver = NewtonCGSolver(obj, tol=1e-8, max_iter=10)
    solver.setup(theta)
    solver.update_curvature()
    kind = KroneckerPreconditioner if kronecker else DiagonalPreconditioner
    assert isinstance(solver.preconditioner, kind)


def test_a_masked_refit_keeps_the_fisher_diagonal(monkeypatch):
    """Fixed (pruned) parameters are the identity's rows in the curvature,
    which KFAC's blocks cannot hold: the masked refit keeps the diagonal, and
    its pruned weights stay zero."""
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_WORK", 0)
    monkeypatch.setattr(sklaplace._newton_cg, "KRONECKER_ROWS_PER_INPUT", 0)
    kinds = []
    real = NewtonCGSolver.update_curvature

    def recording(self):
        real(self)
        kinds.append(type(self.preconditioner))

    monkeypatch.setattr(NewtonCGSolver, "update_curvature", recording)
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LaplaceMLPClassifier(
        (5,), alpha=1.0, solver="newton-cg", prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    assert set(kinds) == {KroneckerPreconditioner}
    kinds.clear()
    pruned = prune(clf, 0.5, method="magnitude")
    refit = pruned.set_params(warm_start=True, tol=1e-10).fit(X, y)
    assert set(kinds) == {DiagonalPreconditioner}
    theta = np.concatenate([c.ravel() for c in refit.coefs_])
    weights = np.concatenate([c.ravel() for c in pruned.coefs_])
    assert np.all(theta[weights == 0.0] == 0.0)
    assert refit.gradient_history_[-1] <= 1e-10


def test_the_fisher_diagonal_reads_the_first_layers_squares_once_a_solve(monkeypatch):
    """The first layer's squared inputs and their moments are the data's:
    a solve forms them once, and the diagonal from them is the one that
    forms its own, to the bit (a stale or another layer's pair would move
    the unit floor's entries by O(1))."""
    obj, theta = make_problem("tanh", 3, (4, 3), weighted=True)
    fwd = obj.forward(theta)
    deltas = obj.residual_backprop(theta, fwd)[0]
    squares = squared_inputs(np, obj.X, obj.sample_weight)
    floor = sklaplace._preconditioners.UNIT_FLOOR
    np.testing.assert_array_equal(
        fisher_diagonal(obj, theta, fwd, deltas, floor, first_squares=squares),
        fisher_diagonal(obj, theta, fwd, deltas, floor),
    )
    calls = []
    real = squared_inputs

    def counting(xp, a, weight):
        calls.append(a)
        return real(xp, a, weight)

    # Counted where the solver forms them and where the diagonal would.
    monkeypatch.setattr(sklaplace._newton_cg, "squared_inputs", counting)
    monkeypatch.setattr(sklaplace._curvature._products, "squared_inputs", counting)
    result = NewtonCGSolver(obj, 1e-10, 50).solve(theta)
    of_x = [a for a in calls if a is obj.X]
    assert result.n_iter > 2 and len(of_x) == 1
    # and each later layer's, once an iterate
    assert len(calls) == 1 + (obj.layout.n_layers - 1) * result.n_iter
