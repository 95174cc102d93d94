import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
from scipy.special import expit, logit, softmax
from sklearn.datasets import make_classification

import sklaplace._memory as memory_module
import sklaplace._predictive as predictive_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._jacobian import FactoredJacobian
from sklaplace._likelihood import Bernoulli, Categorical
from sklaplace._predictive import (
    PREDICTIVES,
    mc_logits,
    mc_noise,
    moderated_logits,
    probit_from_variance,
    probit_logits,
)
from sklaplace._testing import mlp_logits, numerical_jacobian
from sklaplace.exceptions import MemoryLimitError
from tests.conftest import make_problem


def _expected_sigmoid(mu, var):
    # Gauss-Hermite quadrature of E[sigmoid(f)], f ~ N(mu, var).
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    return np.array(
        [
            np.sum(weights * expit(m + np.sqrt(v) * nodes)) / np.sqrt(2 * np.pi)
            for m, v in zip(mu, var)
        ]
    )


def test_binary_probit_is_close_to_the_integral():
    mu = np.linspace(-6, 6, 25)[:, None]
    var = np.linspace(0.0, 30, 25)[:, None, None]
    p = Bernoulli.proba(np, probit_logits(np, mu, var))[:, 1]
    exact = _expected_sigmoid(mu[:, 0], var[:, 0, 0])
    # MacKay's approximation is good to about 0.02 everywhere.
    assert np.max(np.abs(p - exact)) < 0.02


def test_binary_probit_constant_is_pi_over_8():
    # Where |mu| is about 2 the probit approximation with the right constant
    # is within 0.0016 of the quadrature for every variance in [4, 30], while
    # a plausible wrong constant is far off: pi/10 by at least 0.0144 and pi/7
    # by at least 0.0072. The tolerance 0.004 sits 2.5x above the right
    # error and 1.8x below the nearest wrong one.
    mu = np.repeat([-2.0, 2.0], 8)[:, None]
    var = np.tile(np.linspace(4.0, 30.0, 8), 2)[:, None, None]
    p = Bernoulli.proba(np, probit_logits(np, mu, var))[:, 1]
    exact = _expected_sigmoid(mu[:, 0], var[:, 0, 0])
    assert np.max(np.abs(p - exact)) < 0.004
    for wrong in (np.pi / 10, np.pi / 7):
        p_wrong = expit(mu[:, 0] / np.sqrt(1 + wrong * var[:, 0, 0]))
        assert np.min(np.abs(p_wrong - exact)) > 1.5 * 0.004


def test_multiclass_probit_is_the_centred_mean_field_formula():
    # From scratch: centre the logits and their covariance, scale each centred
    # logit by (1 + pi/8 S_kk)^(-1/2). Variances of order 10 make a wrong
    # constant (pi/10) move the logits by about 0.1, far above 1e-10.
    rng = np.random.RandomState(3)
    mu = rng.normal(scale=3.0, size=(6, 4))
    A = rng.normal(scale=2.0, size=(6, 4, 4))
    cov = A @ np.swapaxes(A, 1, 2)
    expected = np.empty_like(mu)
    C = np.eye(4) - np.ones((4, 4)) / 4
    for n in range(6):
        m, S = C @ mu[n], C @ cov[n] @ C
        expected[n] = m / np.sqrt(1.0 + np.pi / 8.0 * np.diag(S))
    np.testing.assert_allclose(probit_logits(np, mu, cov), expected, rtol=1e-10)


def test_monte_carlo_converges_to_the_integral():
    mu = np.array([[-2.0], [0.5], [3.0]])
    var = np.array([[[0.5]], [[4.0]], [[9.0]]])
    noise = np.random.RandomState(0).standard_normal((200_000, 1))
    p = Bernoulli.proba(np, mc_logits(np, mu, var, noise=noise))[:, 1]
    np.testing.assert_allclose(p, _expected_sigmoid(mu[:, 0], var[:, 0, 0]), atol=5e-3)


def test_multiclass_monte_carlo_matches_direct_average():
    rng = np.random.RandomState(1)
    mu = rng.normal(size=(4, 3))
    A = rng.normal(size=(4, 3, 3))
    cov = A @ np.swapaxes(A, 1, 2)
    noise = rng.standard_normal((5000, 3))
    logits = mc_logits(np, mu, cov, noise=noise)
    # The draws use the symmetric square root of each covariance.
    root = np.stack([np.real(scipy.linalg.sqrtm(c)) for c in cov])
    direct = np.stack(
        [softmax(mu[n] + noise @ root[n].T, axis=1).mean(axis=0) for n in range(4)]
    )
    np.testing.assert_allclose(Categorical.proba(np, logits), direct, rtol=1e-10)
    # The K moderated logits are the log of the averaged probabilities
    # themselves (normalised), not only up to a common shift.
    np.testing.assert_allclose(logits, np.log(direct), rtol=1e-10)


@pytest.mark.parametrize("name", sorted(PREDICTIVES))
def test_zero_variance_recovers_the_map(name):
    mu = np.random.RandomState(0).normal(size=(6, 3))
    cov = np.zeros((6, 3, 3))
    noise = np.random.RandomState(0).standard_normal((10, 3))
    logits = PREDICTIVES[name](np, mu, cov, noise=noise)
    np.testing.assert_allclose(
        Categorical.proba(np, logits), softmax(mu, axis=1), rtol=1e-12
    )


def test_multiclass_probit_ignores_a_common_shift():
    rng = np.random.RandomState(0)
    mu = rng.normal(size=(5, 3))
    A = rng.normal(size=(5, 3, 3))
    cov = A @ np.swapaxes(A, 1, 2)
    shift = np.ones((3, 3)) * 7.0  # variance along the common shift only
    p = Categorical.proba(np, probit_logits(np, mu + 4.0, cov + shift))
    np.testing.assert_allclose(
        p, Categorical.proba(np, probit_logits(np, mu, cov)), rtol=1e-12
    )


def test_the_probit_takes_a_negative_round_off_variance_as_zero():
    """The probit takes a negative centred variance as 0.

    A centred variance below 0 can only be round-off (of a huge variance
    along the common shift, ~1e16 and up, which centring cancels): it is
    taken as 0, so the logit is the centred mean itself. Unclipped, a
    variance below -8/pi makes ``1 + pi/8 v`` negative and the logit NaN;
    -3 here is below that bound and -1e-3 a round-off-sized one (kappa
    1.0002 unclipped, exactly 1 clipped: the exact comparison tells).
    """
    mean = np.array([[1.5, -0.5, -1.0], [2.0, -1.0, -1.0]])
    variance = np.array([[-3.0, 0.5, -1e-3], [0.0, 2.0, 4.0]])
    expected = mean.copy()
    expected[0, 1] /= np.sqrt(1.0 + np.pi / 8.0 * 0.5)
    expected[1, 1:] /= np.sqrt(1.0 + np.pi / 8.0 * variance[1, 1:])
    got = probit_from_variance(np, mean, variance)
    np.testing.assert_array_equal(got[0, [0, 2]], mean[0, [0, 2]])
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_the_probit_and_the_map_draw_no_monte_carlo_noise():
    """Only ``link_approx="mc"`` draws ``n_mc_samples`` normals.

    With ``n_mc_samples=10**6`` and 3 logits, drawing them for the probit
    or the MAP would take 24 MB (48 MB with the antithetic copy) for
    nothing; predicting 5 rows takes well under 1 MiB. The existing check
    (10**9 draws) tells the difference only by running out of memory on a
    machine with less than ~50 GB, and passes silently on a larger one.
    """
    rng = np.random.RandomState(0)
    mean = rng.normal(size=(5, 3))
    A = rng.normal(size=(5, 3, 3))
    cov = A @ np.swapaxes(A, 1, 2)
    for link in ("probit", "map"):
        tracemalloc.start()
        try:
            moderated_logits(np, mean, cov, link, 10**6, 0, 5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2**20, (link, peak)


def test_huge_logits_stay_finite():
    mu = np.array([[1e4], [-1e4]])
    var = np.array([[[1e8]], [[0.0]]])
    for name in PREDICTIVES:
        noise = np.random.RandomState(0).standard_normal((50, 1))
        log_p = Bernoulli.log_proba(np, PREDICTIVES[name](np, mu, var, noise=noise))
        assert np.all(np.isfinite(log_p))


def test_monte_carlo_keeps_the_map_decision_with_one_logit():
    # Antithetic draws: each pair's sigmoids sum to more than 1 exactly when
    # the mean logit is positive. Independent draws had flipped the decision
    # at 264 of these 2,000 points (wide posteriors, logits near 0).
    X, y = make_classification(200, 4, flip_y=0.3, random_state=0)
    X_new = np.random.RandomState(1).normal(scale=2.0, size=(2000, 4))
    clf = LaplaceMLPClassifier((8,), link_approx="mc", random_state=0).fit(X, y)
    mean = clf.latent_mean_and_variance(X_new)[0][:, 0]
    # An odd count adds the mean itself: its unpaired draw had decided 961
    # (one draw) and 1,035 (three) of these points against the MAP.
    for n_draws in (1000, 1, 3):
        clf.set_params(n_mc_samples=n_draws)
        np.testing.assert_array_equal(clf.predict(X_new), (mean > 0).astype(int))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probabilities_rounded_to_a_tie_far_away_keep_the_logits_decision(n_classes):
    # At 1e12 times the data's scale the probit's probabilities round to
    # exactly 1/2 (1/3) while the moderated logits (2e-18) still keep the
    # MAP's sign; predict had taken argmax of the tie: classes_[0].
    X, y = make_classification(
        150,
        2,
        n_informative=2,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=0,
    )
    clf = LaplaceMLPClassifier(
        (8,), activation="tanh", alpha=1.0, prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    directions = np.random.RandomState(1).normal(size=(40, 2))
    far = 1e12 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    proba, scores = clf.predict_proba(far), clf.decision_function(far)
    tied = np.all(proba == proba[:, :1], axis=1)
    assert tied.sum() >= 30
    decided = clf.predict(far)
    np.testing.assert_array_equal(
        decided, clf.set_params(link_approx="map").predict(far)
    )
    expected = scores > 0 if n_classes == 2 else np.argmax(scores, axis=1)
    np.testing.assert_array_equal(decided, clf.classes_[expected.astype(int)])
    assert set(decided[tied]) != {clf.classes_[0]}


def test_a_logit_of_exactly_zero_predicts_the_first_class_as_scikit_learn_does():
    # decision_function > 0 is classes_[1] (ClassifierMixin's rule), so a
    # moderated logit of 0, probabilities (1/2, 1/2), is classes_[0].
    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    clf = LaplaceMLPClassifier((), prior_precision_scale=1.0, random_state=0)
    clf.fit(X, np.where(y == 1, "yes", "no"))
    clf.coefs_[0][:] = 0.0
    clf.intercepts_[0][:] = 0.0
    assert np.all(clf.decision_function(X) == 0.0)
    assert np.all(clf.predict_proba(X) == 0.5)
    assert np.all(clf.predict(X) == "no")


def test_monte_carlo_with_a_rank_one_covariance_draws_along_its_one_direction():
    # Round-off eigenvalues below 0 of a singular covariance are clipped,
    # not rooted (NaN): the draws are mean + z (u'x) u / |u|, averaged here
    # directly.
    rng = np.random.RandomState(0)
    n, K, S = 50, 3, 64
    mean, u = rng.normal(size=(n, K)), rng.normal(size=(n, K))
    cov = u[:, :, None] * u[:, None, :]
    noise = mc_noise(np, 0, S, K)
    logits = mc_logits(np, mean, cov, noise=noise)
    coefficients = noise @ (u / np.linalg.norm(u, axis=1, keepdims=True)).T
    draws = mean[None] + coefficients[:, :, None] * u[None]  # (S, n, K)
    proba = np.exp(draws - draws.max(axis=2, keepdims=True))
    proba /= proba.sum(axis=2, keepdims=True)
    assert np.all(np.isfinite(logits))
    # Round-off eigenvalues (about 1e-16) move a draw by about 1e-8.
    np.testing.assert_allclose(logits, np.log(proba.mean(axis=0)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_draws", [1, 4, 5])
def test_monte_carlo_noise_is_antithetic_pairs_then_a_zero_row(n_draws):
    # n draws: n // 2 pairs z, -z, and for odd n one zero row (the MAP).
    z = mc_noise(np, 0, n_draws, 2)
    assert z.shape == (n_draws, 2)
    half = n_draws // 2
    np.testing.assert_array_equal(z[half : 2 * half], -z[:half])
    if n_draws % 2:
        np.testing.assert_array_equal(z[-1], 0.0)


@pytest.mark.parametrize(
    "params",
    [dict(hessian_structure="kron"), dict(subset_of_weights="last_layer")],
    ids=["kron", "last_layer"],
)
def test_factored_posteriors_never_build_the_dense_jacobian(monkeypatch, params):
    """Kronecker and last-layer posteriors take the logit Jacobian factored,
    in predictions and in the held-out choice of the scale alike: the dense
    ``n_outputs x n_params`` rows (the memory they exist to avoid) are never
    formed, and the latent covariance is the dense formula's."""
    import sklaplace._predictive as predictive_module

    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, random_state=0)
    # (No residual: it adds to the farthest training row's variance.)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, residual_variance=0.0, random_state=0, **params
    )
    dense_chunks = predictive_module.logit_jacobians
    monkeypatch.setattr(
        predictive_module,
        "logit_jacobians",
        lambda *args: pytest.fail("a dense logit Jacobian was built"),
    )
    clf.fit(X, y)  # the default scale, "cv": held-out losses on every fold
    _, cov = clf.latent_mean_and_variance(X)
    theta = clf._layout().pack(np, clf.coefs_, clf.intercepts_)
    [(_, J)] = dense_chunks(np, clf._layout(), theta, clf.activation, X)
    expected = clf.posterior_.functional_variance(np, J)
    np.testing.assert_allclose(cov, expected, rtol=1e-10, atol=1e-14)


def test_a_jacobian_row_beyond_the_memory_limit_is_named_before_any_work(
    monkeypatch,
):
    import sklaplace._memory as memory_module
    from sklaplace.exceptions import MemoryLimitError

    X, y = make_classification(30, 4, n_informative=3, n_redundant=0, random_state=0)
    clf = LaplaceMLPClassifier((3,), alpha=1.0, random_state=0).fit(X, y)
    # One row's Jacobian: 4 copies of 8-byte floats, 1 logit x 19 parameters.
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * 8 * 19 - 1)
    with pytest.raises(MemoryLimitError, match="^The logit Jacobian of one sample "):
        clf.predict_proba(X)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * 8 * 19)
    clf.predict_proba(X)


def test_monte_carlo_draws_beyond_the_memory_limit_are_named_with_advice(
    monkeypatch,
):
    import sklaplace._memory as memory_module
    from sklaplace.exceptions import MemoryLimitError

    X, y = make_classification(30, 4, n_informative=3, n_redundant=0, random_state=0)
    clf = LaplaceMLPClassifier(
        (3,), alpha=1.0, link_approx="mc", n_mc_samples=100, random_state=0
    ).fit(X, y)
    # One row's draws: 4 copies of 8-byte floats, 100 draws x 1 logit.
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * 8 * 100 - 1)
    with pytest.raises(MemoryLimitError) as raised:
        clf.predict_proba(X)
    message = str(raised.value)
    assert message.startswith("The 100 Monte Carlo draws of one sample would take")
    assert message.endswith("Use a smaller n_mc_samples or link_approx='probit'.")
    # The probit holds no draws; at the limit the draws fit.
    clf.set_params(link_approx="probit").predict_proba(X)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 4 * 8 * 100)
    clf.set_params(link_approx="mc").predict_proba(X)


def test_logit_jacobian_chunks_take_as_many_rows_as_the_budget_holds(monkeypatch):
    # One row's dense Jacobian is counted four times over in float64: layers
    # (3, 4, 3), K = 3 logits, 4 * 4 + 5 * 3 = 31 parameters, so
    # 4 * 8 * 3 * 31 = 2976 bytes a row. A budget of two rows' bytes makes
    # chunks of 2 (7 rows: 2, 2, 2, 1); one byte less, chunks of 1. The
    # chunks, in order, are the one-block Jacobian (up to round-off).
    obj, theta = make_problem(n_classes=3, hidden=(4,), n_samples=7)
    args = (np, obj.layout, theta, obj.activation, obj.X)
    [(whole_logits, whole_J)] = predictive_module.logit_jacobians(*args)
    assert whole_J.shape == (7, 3, 31)
    for budget, sizes in [(2 * 2976, [2, 2, 2, 1]), (2 * 2976 - 1, [1] * 7)]:
        monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
        chunks = list(predictive_module.logit_jacobians(*args))
        assert [J.shape[0] for _, J in chunks] == sizes
        J = np.concatenate([J for _, J in chunks])
        logits = np.concatenate([logits for logits, _ in chunks])
        np.testing.assert_allclose(J, whole_J, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(logits, whole_logits, rtol=1e-12, atol=1e-14)
    # The same per-row count bounds one row: at 2976 bytes it fits, one less not.
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 2976)
    next(predictive_module.logit_jacobians(*args))
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 2975)
    with pytest.raises(MemoryLimitError, match="^The logit Jacobian of one sample "):
        next(predictive_module.logit_jacobians(*args))


def test_a_full_posteriors_factored_chunks_take_the_dense_jacobians_rows(monkeypatch):
    # A full posterior takes J factored but builds the dense J of each chunk
    # for its triangular solves: its chunks hold as many rows as the dense
    # J's budget (2,976 bytes a row, as above); a Kronecker posterior's, as
    # many as the factors' (3 x 8 bytes for 4 + 3 x 4 + 5 + 3 x 3 + 2 x 3^2
    # numbers a row: 5 rows).
    obj, theta = make_problem(n_classes=3, hidden=(4,), n_samples=7)
    args = (np, obj.layout, theta, obj.activation)
    [(_, whole_J)] = predictive_module.logit_jacobians(*args, obj.X)
    monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", 2 * 2976)
    full = SimpleNamespace(
        structure="full", accepts_factored_jacobian=True, n_params=theta.shape[0]
    )
    chunks = list(predictive_module.jacobian_chunks(*args, full, obj.X))
    assert [J.shape[0] for _, J in chunks] == [2, 2, 2, 1]
    assert all(isinstance(J, FactoredJacobian) for _, J in chunks)
    kron = SimpleNamespace(structure="kron", accepts_factored_jacobian=True)
    chunks_kron = list(predictive_module.jacobian_chunks(*args, kron, obj.X))
    assert [J.shape[0] for _, J in chunks_kron] == [5, 2]
    # A last layer's full posterior builds the J of its 5 x 3 parameters:
    # 1,440 bytes a row, 4 rows (not the factors' 5).
    inner = SimpleNamespace(structure="full", n_params=15)
    last = SimpleNamespace(
        structure="last_layer", inner=inner, accepts_factored_jacobian=True
    )
    chunks_last = list(predictive_module.jacobian_chunks(*args, last, obj.X))
    assert [J.shape[0] for _, J in chunks_last] == [4, 3]
    dense = np.concatenate([J.dense(np) for _, J in chunks])
    np.testing.assert_allclose(dense, whole_J, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "link, n_mc_samples, bytes_per_row",
    # K = 3 logits, 4 float64 copies: K x K numbers a row for the probit and
    # the MAP (the covariance), n_mc_samples x K for Monte Carlo (the draws).
    [
        ("probit", 10, 4 * 8 * 3 * 3),
        ("map", 10, 4 * 8 * 3 * 3),
        ("mc", 10, 4 * 8 * 3 * 10),
    ],
)
def test_predictive_chunks_take_as_many_rows_as_the_budget_holds(
    monkeypatch, link, n_mc_samples, bytes_per_row
):
    rows_per_chunk = predictive_module.predictive_rows_per_chunk
    for budget, rows in [(5 * bytes_per_row, 5), (5 * bytes_per_row - 1, 4), (1, 1)]:
        monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
        assert rows_per_chunk(link, 3, n_mc_samples) == rows
    # Monte Carlo's draws of one row are checked against the dense limit.
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", bytes_per_row)
    assert rows_per_chunk(link, 3, n_mc_samples) == 1
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", bytes_per_row - 1)
    if link == "mc":
        with pytest.raises(
            MemoryLimitError, match="^The 10 Monte Carlo draws of one sample "
        ):
            rows_per_chunk(link, 3, n_mc_samples)
    else:
        assert rows_per_chunk(link, 3, n_mc_samples) == 1


# Mutation round (session 37): moderated_logits itself, whose Monte Carlo
# draws and row chunks were pinned only through the estimator.
def _gaussian_logits(n, K, seed):
    rng = np.random.RandomState(seed)
    mean = rng.normal(scale=2.0, size=(n, K))
    A = rng.normal(size=(n, K, K))
    return mean, A @ np.swapaxes(A, 1, 2)


@pytest.mark.parametrize("K", [1, 3])
def test_moderated_logits_average_n_mc_samples_seeded_draws_in_every_chunk(K):
    """Monte Carlo in chunks of 2 rows (7 rows: 2, 2, 2, 1) is the link
    averaged over ``n_mc_samples`` draws ``mean + z S^{1/2}`` (symmetric
    root), ``z`` the antithetic standard normals seeded by ``seed`` (4 pairs
    ``z, -z`` and a zero row for 9 draws), computed here directly. One draw
    (the MAP), unseeded draws, or chunks that skip or repeat rows differ by
    far more than round-off."""
    n, n_draws, seed = 7, 9, 5
    mean, cov = _gaussian_logits(n, K, 0)
    half = np.random.RandomState(seed).standard_normal((n_draws // 2, K))
    z = np.vstack([half, -half, np.zeros((1, K))])
    expected = np.empty((n, K))
    for i in range(n):
        draws = mean[i] + z @ np.real(scipy.linalg.sqrtm(cov[i]))
        if K == 1:
            expected[i] = logit(np.mean(expit(draws[:, 0])))
        else:
            expected[i] = np.log(np.mean(softmax(draws, axis=1), axis=0))
    logits = moderated_logits(np, mean, cov, "mc", n_draws, seed, 2)
    assert logits.shape == (n, K)
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-12)
    # The MAP alone is far off: the test tells one draw from nine.
    assert np.max(np.abs(mean - expected)) > 0.1


def test_moderated_logits_of_the_probit_and_the_map_ignore_the_draws():
    """The probit (the centred mean-field formula, computed here) and the MAP
    (the mean) in chunks of 3 rows, whatever ``n_mc_samples`` and ``seed``."""
    mean, cov = _gaussian_logits(7, 3, 1)
    C = np.eye(3) - 1.0 / 3
    centred = np.einsum("jk,nkl,lm->njm", C, cov, C)
    kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * np.diagonal(centred, axis1=1, axis2=2))
    for n_mc_samples, seed in [(1, 0), (50, 3)]:
        probit = moderated_logits(np, mean, cov, "probit", n_mc_samples, seed, 3)
        np.testing.assert_allclose(probit, kappa * (mean @ C), rtol=1e-12)
        plug_in = moderated_logits(np, mean, cov, "map", n_mc_samples, seed, 3)
        np.testing.assert_array_equal(plug_in, mean)


def test_plug_in_logits_chunks_take_as_many_rows_as_the_budget_holds(monkeypatch):
    # Pins max(1, ...) in plug_in_logits (_predictive.py:121; max(2, ...)
    # survived). The forward pass holds two float64 copies of every layer's
    # width: layers (3, 4, 3), 2 * 8 * 10 = 160 bytes a row. A budget of two
    # rows' bytes makes chunks of 2 (7 rows: 2, 2, 2, 1); one byte less, or
    # a budget below one row, chunks of 1 (never 0 rows, never 2 rows past
    # the budget). The chunks' logits are the one-pass logits.
    obj, theta = make_problem(n_classes=3, hidden=(4,), n_samples=7)
    args = (np, obj.layout, theta, obj.activation, obj.X)
    whole = predictive_module.plug_in_logits(*args)
    sizes, forward = [], predictive_module.forward

    def spy(xp, layout, theta, X, *rest, **kwargs):
        sizes.append(X.shape[0])
        return forward(xp, layout, theta, X, *rest, **kwargs)

    monkeypatch.setattr(predictive_module, "forward", spy)
    cases = [(2 * 160, [2, 2, 2, 1]), (2 * 160 - 1, [1] * 7), (1, [1] * 7)]
    for budget, expected in cases:
        monkeypatch.setattr(memory_module, "DEFAULT_MEMORY_BUDGET", budget)
        sizes.clear()
        logits = predictive_module.plug_in_logits(*args)
        assert sizes == expected
        np.testing.assert_allclose(logits, whole, rtol=1e-14, atol=1e-15)


# Mutation round (session 57): a pruning mask in latent_gaussian, and the
# plug-in's forward pass.
def _difference_jacobian(layout, theta, X):
    # A linear network, written out independently: linear in each parameter,
    # so unit steps are exact up to round-off of the logits' size.
    def logits(t):
        return mlp_logits(t, X, layout.layer_sizes, "identity")

    return numerical_jacobian(logits, theta, h=1.0)  # (n, K, n_params)


@pytest.mark.parametrize("structure", ["diag", "full"])
def test_a_pruning_mask_gives_the_pruned_parameters_no_variance(structure):
    """With ``keep`` (0 at pruned parameters) the latent covariance is that
    of the kept parameters alone, ``J_k Sigma_kk J_k'`` with ``Sigma`` the
    posterior covariance (the inverse of its precision), computed here from
    a difference Jacobian of a linear 3-logit network. Ignoring the mask,
    or pinning the kept parameters instead, is far off; so is dividing the
    Jacobian by the mask (infinite)."""
    from sklaplace._network import ParamLayout
    from sklaplace._posterior import DiagPosterior, FullPosterior
    from sklaplace._predictive import latent_gaussian

    rng = np.random.RandomState(0)
    layout = ParamLayout((3, 3))
    theta = rng.normal(size=layout.n_params)
    X = rng.normal(size=(5, 3))
    keep = (rng.uniform(size=layout.n_params) < 0.6).astype(np.float64)
    assert 0 < keep.sum() < layout.n_params
    if structure == "diag":
        precision = rng.uniform(0.5, 2.0, layout.n_params)
        posterior, covariance = DiagPosterior(precision), np.diag(1.0 / precision)
    else:
        A = rng.normal(size=(layout.n_params, layout.n_params))
        precision = A @ A.T + np.eye(layout.n_params)
        posterior = FullPosterior(np.linalg.cholesky(precision))
        covariance = np.linalg.inv(precision)
    J = _difference_jacobian(layout, theta, X)
    kept = keep == 1.0
    Jk = J[:, :, kept]
    expected = Jk @ covariance[np.ix_(kept, kept)] @ np.swapaxes(Jk, 1, 2)
    mean, cov = latent_gaussian(np, layout, theta, "identity", posterior, X, keep)
    # The logits of a linear network are J theta.
    np.testing.assert_allclose(mean, J @ theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-9, atol=1e-12)
    # The unpruned covariance differs by far more than the tolerance.
    unpruned = J @ covariance @ np.swapaxes(J, 1, 2)
    assert np.max(np.abs(unpruned - expected)) > 0.1


def test_the_centred_covariance_leaves_out_the_common_shifts_prior_variance():
    """``latent_gaussian(centred=True)`` is ``C J Sigma J' C``, computed from
    ``C J``: a linear 3-logit network whose precision is 1e-12 along the
    common shifts of the logits (each input's weights to every class, and
    the biases: the directions a softmax cannot see) and O(1) elsewhere.
    The reference drops those directions from ``Sigma`` (``C J`` is zero
    along them); centring after the square, as the predictions had, is off
    by the 1e12 variance's round-off, far beyond the tolerance."""
    from sklaplace._network import ParamLayout
    from sklaplace._posterior import FullPosterior
    from sklaplace._predictive import latent_gaussian

    rng = np.random.RandomState(0)
    layout = ParamLayout((3, 3))  # W (3 x 3, C order), then b
    theta = rng.normal(size=layout.n_params)
    X = rng.normal(size=(5, 3))
    shifts = np.zeros((layout.n_params, 4))
    for j in range(4):  # input j's three weights (j < 3), or the three biases
        shifts[3 * j : 3 * j + 3, j] = 1.0 / np.sqrt(3.0)
    basis = np.linalg.qr(np.c_[shifts, rng.normal(size=(layout.n_params, 8))])[0]
    seen = basis[:, 4:]  # orthonormal, orthogonal to the shifts
    values = rng.uniform(0.5, 2.0, seen.shape[1])
    precision = (seen * values) @ seen.T + 1e-12 * shifts @ shifts.T
    posterior = FullPosterior(np.linalg.cholesky(precision))
    J = _difference_jacobian(layout, theta, X)
    Jc = J - J.mean(axis=1, keepdims=True)
    expected = Jc @ ((seen / values) @ seen.T) @ np.swapaxes(Jc, 1, 2)
    _, cov = latent_gaussian(np, layout, theta, "identity", posterior, X, centred=True)
    np.testing.assert_allclose(cov, expected, rtol=1e-9, atol=1e-10)
    _, raw = latent_gaussian(np, layout, theta, "identity", posterior, X)
    assert np.min(np.diagonal(raw, axis1=1, axis2=2)) > 1e11
    C = np.eye(3) - 1.0 / 3.0
    assert np.max(np.abs(C @ raw @ C - expected)) > 1e-7


def test_the_plug_in_logits_take_no_derivative_of_the_activations(monkeypatch):
    """``plug_in_logits`` runs the forward pass without the activations'
    derivatives (ELU's had taken a third of a plug-in prediction): with the
    derivative made to fail it still gives the logits, those of the forward
    pass that does compute it."""
    import sklaplace._network as network_module

    obj, theta = make_problem(activation="elu", n_classes=3, hidden=(4,), n_samples=7)
    args = (np, obj.layout, theta, obj.activation, obj.X)
    expected = network_module.forward(*args[:3], obj.X, "elu").logits

    def no_derivative(xp, a):
        raise AssertionError("the plug-in took the activation's derivative")

    monkeypatch.setitem(network_module.DERIVATIVES, "elu", no_derivative)
    np.testing.assert_allclose(
        predictive_module.plug_in_logits(*args), expected, rtol=1e-14, atol=1e-15
    )


def test_a_pruned_diagonal_posterior_takes_the_jacobian_factored():
    """With a pruning mask a diagonal posterior still takes ``J`` factored,
    columns not zeroed (its readers pin the pruned parameters themselves; the
    dense ``J`` had made a pruned refit's leave-one-out 11x slower), while a
    full one takes the dense ``J`` with the pruned columns zeroed."""
    obj, theta = make_problem(n_classes=3, hidden=(4,), n_samples=7)
    args = (np, obj.layout, theta, obj.activation)
    [(_, whole_J)] = predictive_module.logit_jacobians(*args, obj.X)
    keep = np.ones(theta.shape[0])
    keep[::3] = 0.0
    diag = SimpleNamespace(structure="diag", accepts_factored_jacobian=True)
    chunks = list(predictive_module.jacobian_chunks(*args, diag, obj.X, keep))
    assert all(isinstance(J, FactoredJacobian) for _, J in chunks)
    dense = np.concatenate([J.dense(np) for _, J in chunks])
    np.testing.assert_allclose(dense, whole_J, rtol=1e-12, atol=1e-14)
    full = SimpleNamespace(
        structure="full", accepts_factored_jacobian=True, n_params=theta.shape[0]
    )
    chunks = list(predictive_module.jacobian_chunks(*args, full, obj.X, keep))
    J = np.concatenate([J for _, J in chunks])
    np.testing.assert_allclose(J, whole_J * keep, rtol=1e-12, atol=1e-14)
