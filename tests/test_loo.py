"""Approximate leave-one-out losses (``prior_precision_scale="loo"``)."""

import tracemalloc
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_classification

import sklaplace._memory
from sklaplace import LaplaceMLPClassifier
from sklaplace._likelihood import likelihood_for
from sklaplace._loo import loo_log_losses, without_row
from sklaplace._posterior import DiagPosterior, FullPosterior
from sklaplace._prior_scale import PRIOR_SCALE_GRID


def _softmax(F):
    e = np.exp(F - F.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_without_row_is_the_covariance_with_the_rows_curvature_taken_out():
    rng = np.random.RandomState(0)
    n, K, W = 4, 3, 6
    J = rng.normal(size=(n, K, W))
    R = rng.normal(scale=0.5, size=(n, K, K))
    curvature = np.einsum("nkw,njk,njl,nlv->nwv", J, R, R, J)  # J' R'R J per row
    P = curvature.sum(axis=0) + np.diag(rng.uniform(0.5, 2.0, W))
    S = J @ np.linalg.inv(P) @ np.swapaxes(J, 1, 2)
    expected = [J[i] @ np.linalg.inv(P - curvature[i]) @ J[i].T for i in range(n)]
    np.testing.assert_allclose(without_row(np, S, R), expected, rtol=1e-10)


# A three-class fit written out by hand: logits, Jacobians, prior, weights.
_RNG = np.random.RandomState(3)
_N, _K, _W = 6, 3, 7
_F = _RNG.normal(size=(_N, _K))
_J = _RNG.normal(size=(_N, _K, _W))
_LABELS = np.array([0, 1, 2, 0, 1, 2])
# Class 0's only weight is row 0's: without it the class is unseen.
_WEIGHTS = np.array([1.0, 2.0, 0.5, 0.0, 1.0, 3.0])
_PRIOR = _RNG.uniform(0.5, 1.5, _W)
_LAYOUT = SimpleNamespace(n_outputs=_K)  # what the objective tells of the network


def _output_hessians(F):
    p = _softmax(F)
    return np.einsum("nk,kl->nkl", p, np.eye(_K)) - p[:, :, None] * p[:, None, :]


def _data_precision():
    return np.einsum("n,nkw,nkl,nlv->wv", _WEIGHTS, _J, _output_hessians(_F), _J)


def _hand_fit(xp=np):
    precision = _data_precision() + np.diag(_PRIOR)  # the posterior at scale 1
    return SimpleNamespace(
        objective=SimpleNamespace(
            xp=xp, likelihood=likelihood_for(_K), fixed=None, layout=_LAYOUT
        ),
        posterior=FullPosterior(np.linalg.cholesky(precision)),
        prior_precision=_PRIOR,
        theta=None,
    )


def _hand_jacobians(xp=np):
    def jacobians(theta, X):
        rows = X[:, 0].astype(int)
        yield xp.asarray(_F[rows]), xp.asarray(_J[rows])

    return jacobians


def _diagonal_probit(xp, mean, cov):
    # Any predictive that reads both moments, not the package's; blind to a
    # common shift of the logits, as a softmax's are (the losses come from
    # the centred covariance, loo_log_losses' contract), so centred here.
    K = mean.shape[-1]
    C = xp.asarray(np.eye(K) - 1.0 / K if K > 1 else np.eye(1))  # one logit: as is
    variance = xp.linalg.diagonal(C @ cov @ C)
    return (mean @ C) / xp.sqrt(1.0 + np.pi / 8.0 * variance)


def _losses_from_scratch(scales, rows=None, weights=_WEIGHTS, J=_J, prior=_PRIOR):
    """Each row left out: its curvature and residual out of the precision.

    ``rows`` (default: all) are scored, each removing ``min(weight, 1)``;
    the MAP's precision is the fit's (``_WEIGHTS`` on every row).
    """
    rows = np.arange(_N) if rows is None else rows
    Lam = _output_hessians(_F)
    P_data = np.einsum("n,nkw,nkl,nlv->wv", _WEIGHTS, J, Lam, J)
    Y = np.eye(_K)[_LABELS]
    losses = np.empty((len(rows), len(scales)))
    for r, (i, w) in enumerate(zip(rows, weights)):
        u = min(w, 1.0)
        out = P_data - u * J[i].T @ Lam[i] @ J[i]
        residual = u * (_softmax(_F)[i] - Y[i])
        newton = np.linalg.solve(out + np.diag(prior), J[i].T @ residual)
        mean = _F[i] + J[i] @ newton
        for j, c in enumerate(scales):
            cov = J[i] @ np.linalg.inv(out + c * np.diag(prior)) @ J[i].T
            g = _diagonal_probit(np, mean[None, :], cov[None, :, :])[0]
            losses[r, j] = -(g[_LABELS[i]] - np.log(np.sum(np.exp(g))))
    return losses


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
def test_loo_losses_leave_each_row_out_of_the_map_and_the_posterior(namespace):
    xp = pytest.importorskip(namespace)
    scales = np.array([0.05, 1.0, 7.0, 300.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    result = loo_log_losses(
        _hand_fit(xp), _hand_jacobians(xp), data, scales, _diagonal_probit
    )
    np.testing.assert_allclose(result.losses, _losses_from_scratch(scales), rtol=1e-10)
    # Row 0's class would be unseen without it; row 3 has no weight.
    np.testing.assert_array_equal(result.weights, [0.0, 2.0, 0.5, 0.0, 1.0, 3.0])


def test_no_row_that_counts_gives_no_losses():
    data = (np.arange(2, dtype=float)[:, None], np.array([0, 1]), np.ones(2))
    assert loo_log_losses(_hand_fit(), _hand_jacobians(), data, [1.0], None) is None


def test_a_row_counts_while_its_class_keeps_any_weight_without_it():
    # Class 0: rows 0 and 3 of the hand fit, 0.5 each: leaving either out
    # keeps the other's 0.5, so both count; class 1's only row weighs 0.
    # The rows that count weigh 1.0 in all: still losses, not None.
    rows, weights = np.array([0, 3, 1]), np.array([0.5, 0.5, 0.0])
    scales = np.array([0.05, 1.0, 7.0])
    data = (rows[:, None].astype(float), _LABELS[rows], weights)
    result = loo_log_losses(
        _hand_fit(), _hand_jacobians(), data, scales, _diagonal_probit
    )
    assert result is not None
    np.testing.assert_array_equal(result.weights, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(
        result.losses[:2],
        _losses_from_scratch(scales, rows[:2], weights[:2]),
        rtol=1e-10,
    )
    # Two whole rows of one class: each leaves the other's 1.0 behind.
    rows, weights = np.array([1, 4]), np.array([1.0, 1.0])
    data = (rows[:, None].astype(float), _LABELS[rows], weights)
    result = loo_log_losses(
        _hand_fit(), _hand_jacobians(), data, scales, _diagonal_probit
    )
    np.testing.assert_array_equal(result.weights, [1.0, 1.0])


def test_a_lone_row_of_weight_two_counts_as_two_copies():
    # Row 0 is class 0's only row, of weight 2: two copies, each left out
    # with the other still seen, so it counts (twice), as the two copies
    # given as rows of weight 1 do; the curves agree to round-off. Judged
    # alone by its whole weight instead of the one copy it removes, it
    # would drop out, a difference of the order of its loss.
    rows, weights = np.array([0, 1, 2, 4, 5]), np.array([2.0, 1.0, 1.0, 1.0, 1.0])
    copies = np.r_[0, rows]
    scales = np.array([0.05, 1.0, 7.0])
    weighted, repeated = (
        loo_log_losses(
            _hand_fit(),
            _hand_jacobians(),
            (r[:, None].astype(float), _LABELS[r], w),
            scales,
            _diagonal_probit,
        )
        for r, w in ((rows, weights), (copies, np.ones(6)))
    )
    np.testing.assert_array_equal(weighted.weights, weights)
    np.testing.assert_allclose(weighted.curve(), repeated.curve(), rtol=1e-10)


def test_parameters_held_at_zero_do_not_scale_their_prior():
    # Parameter 0 is held at zero (pruned): its Jacobian column is zeroed,
    # its precision block the identity, and its prior -- 10, so that
    # scaling it would make P(c) indefinite below c = 0.9 -- is not the
    # family's. The reference drops the parameter altogether.
    fixed = np.zeros(_W, bool)
    fixed[0] = True
    J = _J.copy()
    J[:, :, 0] = 0.0
    prior = _PRIOR.copy()
    prior[0] = 10.0
    P_data = np.einsum("n,nkw,nkl,nlv->wv", _WEIGHTS, J, _output_hessians(_F), J)
    precision = P_data + np.diag(np.where(fixed, 1.0, prior))
    fit = SimpleNamespace(
        objective=SimpleNamespace(
            xp=np, likelihood=likelihood_for(_K), fixed=fixed, layout=_LAYOUT
        ),
        posterior=FullPosterior(np.linalg.cholesky(precision)),
        prior_precision=prior,
        theta=None,
    )

    def jacobians(theta, X):
        rows = X[:, 0].astype(int)
        yield _F[rows], J[rows]

    scales = np.array([0.05, 0.5, 1.0, 7.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    result = loo_log_losses(fit, jacobians, data, scales, _diagonal_probit)
    expected = _losses_from_scratch(scales, J=J[:, :, 1:], prior=prior[1:])
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-10)


def test_scales_not_positive_definite_give_inf_and_no_warnings():
    # At -1e6 no precision is positive definite; at -0.3 some rows' left-out
    # covariances have negative variances (the probit's square root is NaN).
    scales = np.array([-1e6, -0.3, 1.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")
        result = loo_log_losses(
            _hand_fit(), _hand_jacobians(), data, scales, _diagonal_probit
        )
    losses = result.losses
    assert np.all(np.isposinf(losses[:, 0]))
    assert np.any(np.isposinf(losses[:, 1])) and np.all(~np.isnan(losses))
    with np.errstate(all="ignore"):
        expected = _losses_from_scratch(scales[1:])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(losses[:, 1:][finite], expected[finite], rtol=1e-10)
    np.testing.assert_array_equal(np.isposinf(losses[:, 1:]), ~finite)


def _finite_moments_only(xp, mean, cov):
    # A Monte Carlo link factors each covariance (eigh fails on NaN): refuse
    # what it would refuse.
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    return _diagonal_probit(xp, mean, cov)


def test_a_link_is_never_given_the_moments_of_a_singular_precision():
    # At -1e6 every left-out precision is indefinite and the moments NaN;
    # those rows' losses are inf and the link never sees them.
    scales = np.array([-1e6, 1.0, 7.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    result = loo_log_losses(
        _hand_fit(), _hand_jacobians(), data, scales, _finite_moments_only
    )
    assert np.all(np.isposinf(result.losses[:, 0]))
    np.testing.assert_allclose(
        result.losses[:, 1:], _losses_from_scratch(scales[1:]), rtol=1e-10
    )


def test_exact_hessian_with_monte_carlo_link_fits():
    # Found by a probe: the exact Hessian's left-out precisions can be
    # singular, and the Monte Carlo link's eigh raised LinAlgError on them.
    X, y = make_classification(
        90, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    for scale in ("auto", "loo"):
        clf = LaplaceMLPClassifier(
            (8,),
            hessian="exact",
            link_approx="mc",
            n_mc_samples=200,
            prior_precision_scale=scale,
            random_state=0,
        ).fit(X, y)
        assert np.all(np.isfinite(clf.predict_proba(X)))


def test_rows_are_scored_in_chunks_each_row_once(monkeypatch):
    # A budget of a few rows' K x K matrices: several chunks, each row in
    # exactly one of them, and the losses those of a single chunk.
    scales = np.array([0.05, 1.0, 7.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    whole = loo_log_losses(
        _hand_fit(), _hand_jacobians(), data, scales, _diagonal_probit
    )
    seen = []

    def recording(theta, X):
        seen.append(X[:, 0].astype(int))
        yield from _hand_jacobians()(theta, X)

    monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", 40_000)
    result = loo_log_losses(_hand_fit(), recording, data, scales, _diagonal_probit)
    scored = np.concatenate(seen)
    assert len(seen) > 1
    np.testing.assert_array_equal(np.sort(scored), np.arange(_N))
    np.testing.assert_array_equal(result.losses, whole.losses)


def _scored_within_budget(monkeypatch, posterior, F, J, labels, budget):
    """``loo_log_losses`` of a stub fit under ``budget``: result, peak, chunks."""
    n, K, W = J.shape
    fit = SimpleNamespace(
        objective=SimpleNamespace(
            xp=np,
            likelihood=likelihood_for(K),
            fixed=None,
            layout=SimpleNamespace(n_outputs=K),
        ),
        posterior=posterior,
        prior_precision=np.ones(W),
        theta=None,
    )
    seen = []

    def jacobians(theta, X):
        rows = X[:, 0].astype(int)
        seen.append(rows.size)
        yield F[rows], J[rows]

    data = (np.arange(n, dtype=float)[:, None], labels, np.ones(n))
    monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", budget)
    tracemalloc.start()
    try:
        result = loo_log_losses(
            fit, jacobians, data, PRIOR_SCALE_GRID, _diagonal_probit
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(np.isfinite(result.losses))
    return result, peak, len(seen)


@pytest.mark.parametrize("W", [20, 2])
def test_rows_are_chunked_to_the_memory_budget(monkeypatch, W):
    # Ten classes, 49 scales, 400 rows: all at once the rows' K x K matrices
    # at every scale and their output pairs take about 36 MB. The chunks are
    # sized to a quarter of a 16 MB budget: the call's peak stays below half
    # of it (about 0.2; chunks sized for K rather than K^2: about 0.9). With
    # two parameters the matrices at every scale dominate (about 0.16;
    # chunks sized for 49 parameters at two scales: about 0.94).
    rng = np.random.RandomState(0)
    n, K = 400, 10
    F, J = rng.normal(size=(n, K)), rng.normal(size=(n, K, W)) / np.sqrt(W)
    root = rng.normal(size=(W, W))
    precision = root @ root.T + n * np.eye(W)
    posterior = FullPosterior(np.linalg.cholesky(precision))
    budget = 16_000_000
    _, peak, _ = _scored_within_budget(
        monkeypatch, posterior, F, J, rng.randint(0, K, n), budget
    )
    assert peak < budget / 2


def test_a_family_without_one_eigendecomposition_takes_larger_chunks(monkeypatch):
    # One posterior per scale (here diagonal) holds J's K x W per row and two
    # transforms of it, not the K^2 x W output pairs: with ten classes its
    # chunks are larger (with one or two, smaller: 3 W a row, the safe side)
    # (fewer per-scale overheads; 40 classes' Kronecker family had taken one
    # row per chunk) and its peak still stays below half the budget.
    rng = np.random.RandomState(0)
    n, K, W = 200, 10, 400
    F, J = rng.normal(size=(n, K)), rng.normal(size=(n, K, W)) / np.sqrt(W)
    precision = rng.uniform(n, 2 * n, W)
    budget, counts = 16_000_000, {}
    for name, posterior in [
        ("full", FullPosterior(np.diag(np.sqrt(precision)))),
        ("diag", DiagPosterior(precision)),
    ]:
        _, peak, counts[name] = _scored_within_budget(
            monkeypatch, posterior, F, J, np.arange(n) % K, budget
        )
        assert peak < budget / 2
    assert counts["diag"] < counts["full"]


def _logistic(scale, **kwargs):
    return LaplaceMLPClassifier(
        hidden_layer_sizes=(),
        alpha=1.0,
        bias_prior_precision=1.0,
        prior_precision_scale=scale,
        residual_variance=0.0,
        tol=1e-12,
        random_state=0,
        **kwargs,
    )


def _row_loss(clf, x, label):
    return -np.log(clf.predict_proba(x[None])[0, label])


@pytest.mark.slow
def test_loo_curve_is_close_to_refitting_without_each_row():
    # Logistic regression (no hidden layer): the left-out rows' MAPs are about
    # one Newton step away, so the approximation is close: within 4-6% of the
    # gap between the rows' losses under the model that saw them and the
    # refits' (without the step, or with its sign flipped: 97-100%, 178-186%).
    X, y = make_classification(
        40, 3, n_informative=2, n_redundant=0, flip_y=0.1, random_state=0
    )
    fitted = _logistic("loo").fit(X, y)
    path = fitted.prior_precision_scale_path_
    for index in (0, 24, 48):
        scale = PRIOR_SCALE_GRID[index]
        seen = _logistic(scale).fit(X, y)
        refits = [
            _row_loss(
                _logistic(scale).fit(np.delete(X, i, 0), np.delete(y, i)), X[i], y[i]
            )
            for i in range(len(y))
        ]
        exact = np.mean(refits)
        in_sample = np.mean([_row_loss(seen, X[i], y[i]) for i in range(len(y))])
        approx = path["loo_log_loss"][index]
        assert abs(approx - exact) < 0.1 * abs(in_sample - exact)


def test_rows_the_jacobians_split_further_are_each_scored():
    # jacobian_chunks sizes its own chunks: a chunk of rows may come back in
    # pieces (here one row at a time), every piece scored in its place.
    scales = np.array([0.05, 1.0, 7.0])
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    whole = loo_log_losses(
        _hand_fit(), _hand_jacobians(), data, scales, _diagonal_probit
    )

    def one_row_at_a_time(theta, X):
        for i in range(X.shape[0]):
            yield from _hand_jacobians()(theta, X[i : i + 1])

    split = loo_log_losses(
        _hand_fit(), one_row_at_a_time, data, scales, _diagonal_probit
    )
    np.testing.assert_array_equal(split.losses, whole.losses)


def test_a_row_with_non_finite_moments_scores_inf_alone():
    """A row whose left-out mean is not finite scores inf at every scale while
    every other row keeps its from-scratch loss: finiteness is judged per row
    and scale, not over the whole chunk.

    Row 2's logits are NaN (its residual, curvature and so its left-out mean
    and covariance are NaN); the posterior is the hand fit's, so the other
    rows' losses do not depend on row 2's logits. Judging the means over all
    rows at once (``xp.all(..., axis=None)``, mutants _left_out_losses 73/75)
    made every row inf.
    """
    scales = np.array([0.05, 1.0, 7.0])
    F = _F.copy()
    F[2] = np.nan

    def jacobians(theta, X):
        rows = X[:, 0].astype(int)
        for _, J in _hand_jacobians()(theta, X):
            yield F[rows], J

    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    result = loo_log_losses(_hand_fit(), jacobians, data, scales, _diagonal_probit)
    assert np.all(np.isposinf(result.losses[2]))
    others = np.delete(np.arange(_N), 2)
    np.testing.assert_allclose(
        result.losses[others], _losses_from_scratch(scales)[others], rtol=1e-10
    )


def _diagonal_hand_fit():
    """``_hand_fit`` with its precision's diagonal: one posterior per scale."""
    fit = _hand_fit()
    fit.posterior = DiagPosterior(np.diag(_data_precision()) + _PRIOR)
    return fit


@pytest.mark.parametrize(
    "make_fit, bytes_a_row",
    [
        (_hand_fit, lambda n_scales: 8 * (_K * _K * _W + 8 * _K * _K * n_scales)),
        (_diagonal_hand_fit, lambda n_scales: 8 * _K * (3 * _W + 8 * _K * n_scales)),
    ],
    ids=["every scale at once", "one posterior per scale"],
)
def test_loo_chunks_take_as_many_rows_as_a_quarter_budget_holds(
    monkeypatch, make_fit, bytes_a_row
):
    """Rows are scored in chunks of exactly ``budget // (4 * per_row)`` rows,
    ``per_row`` the docstring's bytes (8 each): where one eigendecomposition
    serves every scale, the ``K^2 W`` output pairs, else (a diagonal
    posterior) ``J``'s ``K W`` and two transforms of it; and ``8 K^2`` per
    scale (the MAP's scale included). A budget of two rows' quarter makes
    chunks of 2, one byte less chunks of 1.

    A fifth of the budget instead of a quarter (mutant _row_chunks 23), or
    ``4 W`` a row for one posterior per scale (mutant _row_chunks 5), made
    chunks of 1 at the larger budget; the losses are the same either way.
    """
    scales = np.array([0.05, 1.0, 7.0])
    per_row = bytes_a_row(scales.size + 1)  # the MAP's own scale first
    data = (np.arange(_N, dtype=float)[:, None], _LABELS, _WEIGHTS)
    whole = loo_log_losses(
        make_fit(), _hand_jacobians(), data, scales, _diagonal_probit
    )
    for budget, sizes in [(4 * 2 * per_row, [2, 2, 2]), (4 * 2 * per_row - 1, [1] * 6)]:
        seen = []

        def recording(theta, X, seen=seen):
            seen.append(X.shape[0])
            yield from _hand_jacobians()(theta, X)

        monkeypatch.setattr(sklaplace._memory, "DEFAULT_MEMORY_BUDGET", budget)
        result = loo_log_losses(make_fit(), recording, data, scales, _diagonal_probit)
        assert seen == sizes
        np.testing.assert_allclose(result.losses, whole.losses, rtol=1e-12)


def test_left_out_covariances_leave_out_the_common_shifts_prior_variance():
    """The left-out covariances come from the centred logits' ``C J``, as
    the fit makes them (``jacobian_chunks(..., centred=True)``):
    softmax regression under a prior of precision 1e-10 has variance 1e10 /
    ``c`` along the logits' common shifts, where neither the data nor a
    softmax see. Reference: each row's curvature out of the precision and
    those directions out of its inverse; centring after the square, as the
    covariances had been, is off by the 1e10 variance's round-off."""
    from sklaplace._predictive import logit_jacobians
    from sklaplace._testing import mlp_logits, numerical_jacobian
    from tests.conftest import make_problem

    obj, theta, raw = make_problem("identity", 3, hidden=(), n_samples=30, raw=True)
    X, sizes = raw["X"], raw["layer_sizes"]
    J = numerical_jacobian(lambda t: mlp_logits(t, X, sizes, "identity"), theta, 1.0)
    p = _softmax(mlp_logits(theta, X, sizes, "identity"))
    Lam = np.einsum("nk,kl->nkl", p, np.eye(3)) - p[:, :, None] * p[:, None, :]
    rows = np.einsum("nkw,nkl,nlv->nwv", J, Lam, J)
    prior = np.full(obj.layout.n_params, 1e-10)
    fit = SimpleNamespace(
        objective=obj,
        posterior=FullPosterior(np.linalg.cholesky(rows.sum(0) + np.diag(prior))),
        prior_precision=prior,
        theta=theta,
    )
    received = []

    def recording(xp, mean, cov):
        received.append(np.asarray(cov))
        return mean

    scales = [0.5, 2.0]
    data = (X[:5], raw["y"][:5], np.ones(5))
    jacobians = lambda theta, X: logit_jacobians(  # noqa: E731
        np, obj.layout, theta, "identity", X, centred=True
    )
    loo_log_losses(fit, jacobians, data, scales, recording)
    (got,) = received
    got = got.reshape(5, len(scales), 3, 3)
    C = np.eye(3) - 1.0 / 3.0
    for i in range(5):
        values, vectors = np.linalg.eigh(rows.sum(0) - rows[i])
        seen = values > 1e-8 * values.max()
        assert np.sum(~seen) == 4  # the shifts: three inputs' and the biases'
        vectors, values = vectors[:, seen], values[seen]
        Jc = C @ J[i]
        for j, c in enumerate(scales):
            inverse = (vectors / (values + c * 1e-10)) @ vectors.T
            expected = Jc @ inverse @ Jc.T
            np.testing.assert_allclose(
                C @ got[i, j] @ C, expected, rtol=1e-9, atol=1e-10
            )


def test_without_row_keeps_float32():
    """``without_row`` of float32 matrices stays float32, with the float64
    values to float32's resolution (mutants without_row 5 and 7: a
    default-dtype identity promoted the result to float64)."""
    rng = np.random.RandomState(1)
    n, K, W = 3, 3, 5
    J = rng.normal(size=(n, K, W))
    R = rng.normal(scale=0.5, size=(n, K, K))
    curvature = np.einsum("nkw,njk,njl,nlv->nwv", J, R, R, J)
    P = curvature.sum(axis=0) + np.diag(rng.uniform(0.5, 2.0, W))
    S = J @ np.linalg.inv(P) @ np.swapaxes(J, 1, 2)
    expected = [J[i] @ np.linalg.inv(P - curvature[i]) @ J[i].T for i in range(n)]
    out = without_row(np, S.astype(np.float32), R.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
