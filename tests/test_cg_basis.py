"""CG with its residuals kept orthogonal (``_cg_basis.ResidualBasis``).

The references are dense: ``H`` itself for the residuals and the model, and
the Gram matrix of the kept rows for their orthonormality.
"""

import numpy as np
import pytest

import sklaplace._cg_basis
import sklaplace._memory
from sklaplace._cg_basis import ResidualBasis
from sklaplace._newton_cg import NewtonCGSolver, steihaug_cg
from sklaplace._preconditioners import DiagonalPreconditioner as D
from tests.conftest import make_problem


def _ill_conditioned(n=80, seed=0):
    """Positive definite, condition number 1e6: CG's residuals lose their
    orthogonality in floating point well before ``n`` steps."""
    rng = np.random.RandomState(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    H = Q @ np.diag(np.logspace(-3, 3, n)) @ Q.T
    return H, rng.normal(size=n), rng.uniform(0.5, 2.0, n)


def _normalised_residuals(H, g, m, n_steps):
    """Plain CG's residuals, normalised as the basis keeps them."""
    rows, step = [], np.zeros_like(g)
    residual, z = g, g / m
    direction, rz = -z, g @ z
    for _ in range(n_steps):
        rows.append(z / np.sqrt(rz))
        Hd = H @ direction
        a = rz / (direction @ Hd)
        step, residual = step + a * direction, residual + a * Hd
        z = residual / m
        rz, previous = residual @ z, rz
        direction = -z + (rz / previous) * direction
    return np.array(rows)


def test_the_kept_residuals_stay_m_orthonormal_where_plain_cgs_do_not():
    H, g, m = _ill_conditioned()
    basis = ResidualBasis(np, g, 60).restart(D(m))
    _, _, status, n = steihaug_cg(
        np, H.__matmul__, g, D(m), 1e9, 1e-14, 60, basis=basis
    )
    assert status == "max_iter" and n == 60 and basis.n_kept == 60
    V = basis.rows[:60]
    np.testing.assert_allclose(V @ np.diag(m) @ V.T, np.eye(60), atol=1e-8)
    plain = _normalised_residuals(H, g, m, 60)
    np.testing.assert_allclose(plain[:3], V[:3], rtol=1e-8)  # the same start
    assert np.abs(plain @ np.diag(m) @ plain.T - np.eye(60)).max() > 0.1


def test_reorthogonalised_cg_solves_to_the_forcing_term_within_n_steps():
    """As in exact arithmetic: ``n`` steps at most, the step's true residual
    ``||H s + g||`` at the forcing term and its model exact; plain CG, after
    as many steps, is still above ``||g||`` here."""
    H, g, m = _ill_conditioned()
    rtol = 1e-8
    basis = ResidualBasis(np, g, 500).restart(D(m))
    step, model, status, n = steihaug_cg(
        np, H.__matmul__, g, D(m), 1e9, rtol, 500, basis=basis
    )
    assert status == "converged" and n <= len(g)
    assert np.linalg.norm(H @ step + g) <= 2 * rtol * np.linalg.norm(g)
    np.testing.assert_allclose(model, g @ step + 0.5 * step @ H @ step, rtol=1e-8)
    plain, _, plain_status, _ = steihaug_cg(np, H.__matmul__, g, D(m), 1e9, rtol, n)
    assert plain_status == "max_iter"
    assert np.linalg.norm(H @ plain + g) > np.linalg.norm(g)


def test_orthogonalise_removes_exactly_the_kept_residuals_components():
    """``r - sum_i (v_i' r) M v_i``: ``M^{-1}``-orthogonal to every kept
    residual, and changed only within their span."""
    rng = np.random.RandomState(1)
    m = rng.uniform(0.5, 2.0, 9)
    basis = ResidualBasis(np, m, 5).restart(D(m))
    residuals = rng.normal(size=(3, 9))
    for r in residuals:  # orthogonalised first, as CG's would be
        r = basis.orthogonalise(r)
        basis.add(r / m, r @ (r / m))
    r = rng.normal(size=9)
    out = basis.orthogonalise(r)
    np.testing.assert_allclose(residuals @ (out / m), 0.0, atol=1e-12)
    removed = r - out
    coefficients = np.linalg.lstsq(residuals.T, removed, rcond=None)[0]
    np.testing.assert_allclose(residuals.T @ coefficients, removed, atol=1e-12)


def test_rows_past_the_memory_budget_are_not_kept(monkeypatch):
    """Two rows' worth of budget (read when the basis is made): two are
    kept, and 60 steps' later residuals are ``M^{-1}``-orthogonal to those
    two (to round-off; up to 0.78 in cosine had they not been
    orthogonalised once the rows were full)."""
    H, g, m = _ill_conditioned()
    monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", 2 * 8 * len(g))
    basis = ResidualBasis(np, g, 60).restart(D(m))
    later = []
    real = ResidualBasis.orthogonalise

    def recording(self, residual):
        later.append(real(self, residual))
        return later[-1]

    monkeypatch.setattr(ResidualBasis, "orthogonalise", recording)
    steihaug_cg(np, H.__matmul__, g, D(m), 1e9, 1e-14, 60, basis=basis)
    assert basis.rows.shape == (2, len(g)) and basis.n_kept == 2
    assert len(later) == 60
    kept = basis.rows * m  # the residuals, unit length in the M^{-1} norm
    # later[0] is the second kept residual itself; from the third on:
    cosines = [np.abs(kept @ (r / m)).max() / np.sqrt(r @ (r / m)) for r in later[1:]]
    assert max(cosines) < 1e-10


def test_a_residual_with_no_length_is_not_kept():
    """``r' z`` of 0 (CG landed on the solution) or not a number: nothing is
    kept (``z / sqrt(0)`` would put a row of NaN in the basis, and every
    later residual would turn NaN)."""
    _, g, m = _ill_conditioned(n=6)
    basis = ResidualBasis(np, g, 4).restart(D(m))
    basis.add(np.zeros_like(g), 0.0)
    basis.add(np.full_like(g, np.nan), float("nan"))
    assert basis.n_kept == 0
    basis.add(g / m, float(g @ (g / m)))
    assert basis.n_kept == 1
    assert np.all(np.isfinite(basis.orthogonalise(g)))


@pytest.mark.parametrize("dtype, rows", [(np.float64, 7), (np.float32, 14)])
def test_the_basis_takes_the_residuals_dtype_and_counts_its_bytes(
    dtype, rows, monkeypatch
):
    """Rows of the residual's dtype, as many as the budget holds of them:
    seven float64 rows' worth holds seven, or fourteen of float32."""
    n_params = 10
    monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", 7 * 8 * n_params)
    basis = ResidualBasis(np, np.zeros(n_params, dtype=dtype), 100)
    assert basis.rows.dtype == dtype and basis.rows.shape == (rows, n_params)


def test_newton_cg_keeps_its_residuals_orthogonal_in_its_own_norm(monkeypatch):
    """The solver hands CG a basis restarted with the preconditioner it
    solves with: every interior CG step orthogonalises."""
    calls = []
    real = ResidualBasis.orthogonalise

    def counting(self, residual):
        calls.append((self.n_kept, self.preconditioner))
        return real(self, residual)

    monkeypatch.setattr(sklaplace._cg_basis.ResidualBasis, "orthogonalise", counting)
    obj, theta = make_problem("tanh", 3, (5,), n_samples=60, n_features=4, seed=2)
    solver = NewtonCGSolver(obj, tol=1e-8, max_iter=100)
    result = solver.solve(theta)
    assert result.converged and len(calls) > 0 and max(n for n, _ in calls) > 1
    assert calls[-1][1] is solver.preconditioner
