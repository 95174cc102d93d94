"""Kronecker-factored (KFAC) curvature and posterior against dense references.

The factors are checked where KFAC is exact (one sample; every sample with
the same ``ahat ahat'`` or the same output curvature), and the posterior
against the dense matrix ``blockdiag(A kron G) + diag(prior)`` built from the
same factors: log det, solves, ``J P^{-1} J'``, the covariance diagonal,
prior changes, the flat softmax direction, and array_api_strict.
"""

import gc
import pickle
import warnings

import numpy as np
import pytest
from scipy.linalg import block_diag
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, prune
from sklaplace._backend import NotPositiveDefiniteError, to_numpy
from sklaplace._curvature import KroneckerFactors, kron_factors
from sklaplace._jacobian import FactoredJacobian, logit_factors
from sklaplace._kron import KronBlock, KronPosterior
from sklaplace._network import ParamLayout
from sklaplace._posterior import _warn_if_near_singular
from sklaplace._predictive import logit_jacobians
from sklaplace._prior import prior_precision_vector
from sklaplace._simultaneous import FLAT_SHARE, diagonalise
from sklaplace._testing import dense_ggn
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import make_problem, rebuilt

xps = pytest.importorskip("array_api_strict")


def _kron_blocks(factors):
    return block_diag(*[np.kron(A, G) for A, G in zip(*factors)])


def _data_ggn(obj, theta):
    """The data's GGN from scratch (``dense_ggn``: no curvature code shared)."""
    prior = np.asarray(obj.prior_precision)
    raw = (np.asarray(obj.X), np.asarray(obj.sample_weight), prior)
    H = dense_ggn(theta, *raw, obj.layout.layer_sizes, obj.activation)
    return H - np.diag(prior)


def _layer_blocks(layout, H):
    return [
        H[layout.layer_slice(i), layout.layer_slice(i)]
        for i in range(len(layout.shapes))
    ]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_kfac_is_the_exact_ggn_block_for_one_sample(activation, n_classes):
    obj, theta = make_problem(
        activation, n_classes, hidden=(4, 3), weighted=True, n_samples=1
    )
    factors = kron_factors(obj, theta)
    exact = _layer_blocks(obj.layout, _data_ggn(obj, theta))
    # The reference's Jacobian is by differences: 5e-12 off (entries 1e-4 to 1).
    for A, G, block in zip(*factors, exact):
        np.testing.assert_allclose(np.kron(A, G), block, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kfac_is_exact_for_a_linear_model_with_shared_inputs(n_classes):
    # Every row has the same x (so the same ahat ahat'); labels and weights
    # differ, so the output curvatures differ.
    obj, theta = make_problem("identity", n_classes, hidden=(), weighted=True)
    obj.X = np.repeat(obj.X[:1], obj.n_samples, axis=0)
    np.testing.assert_allclose(
        _kron_blocks(kron_factors(obj, theta)),
        _data_ggn(obj, theta),
        rtol=1e-10,
        atol=1e-12,
    )


def test_kfac_is_exact_where_the_output_curvature_is_shared():
    # Logistic regression at theta = 0: Lambda_n = s_n / 4 for every row.
    obj, theta = make_problem("identity", 2, hidden=(), weighted=True)
    theta = np.zeros_like(theta)
    np.testing.assert_allclose(
        _kron_blocks(kron_factors(obj, theta)),
        _data_ggn(obj, theta),
        rtol=1e-10,
        atol=1e-12,
    )


def test_kfac_differs_from_the_ggn_in_general_but_shares_its_trace_scale():
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=40)
    kron = _kron_blocks(kron_factors(obj, theta))
    ggn = _data_ggn(obj, theta)
    blocks = block_diag(*_layer_blocks(obj.layout, ggn))
    assert np.max(np.abs(kron - blocks)) > 1e-3
    assert 0.2 < np.trace(kron) / np.trace(blocks) < 5.0


def _random_factors(layout, seed=0):
    rng = np.random.RandomState(seed)
    inputs, outputs = [], []
    for r, c in layout.shapes:
        a = rng.normal(size=(r + 2, r))
        g = rng.normal(size=(c + 1, c))
        inputs.append(a.T @ a / r)
        outputs.append(g.T @ g)
    return KroneckerFactors(inputs, outputs)


LAYOUT = ParamLayout((3, 4, 3))
# Per-layer weight precisions and a different bias precision: not a multiple
# of the identity within a block.
PRIOR = prior_precision_vector(LAYOUT, [0.5, 2.0], [0.1, 3.0])


def _dense(factors, prior):
    return _kron_blocks(factors) + np.diag(prior)


def _network_jacobian(n_samples=5, seed=1):
    """Logit Jacobians of a random network of ``LAYOUT`` (outer products)."""
    rng = np.random.RandomState(seed)
    theta = rng.normal(size=LAYOUT.n_params)
    X = rng.normal(size=(n_samples, 3))
    return np.concatenate([J for _, J in logit_jacobians(np, LAYOUT, theta, "tanh", X)])


def test_kron_posterior_equals_the_dense_matrix_of_its_factors():
    factors = _random_factors(LAYOUT)
    P = _dense(factors, PRIOR)
    post = KronPosterior.from_factors(factors, PRIOR)
    covariance = np.linalg.inv(P)
    assert post.n_params == LAYOUT.n_params
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-11
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(covariance), rtol=1e-10
    )
    general = np.random.RandomState(3).normal(size=(4, 3, LAYOUT.n_params))
    network = _network_jacobian()
    for J in (general, network):  # dense path and the outer-product path
        np.testing.assert_allclose(
            post.functional_variance(np, J),
            J @ covariance @ np.swapaxes(J, 1, 2),
            rtol=1e-9,
            atol=1e-12,
        )


@pytest.mark.parametrize(
    "new_prior",
    [
        3.0 * PRIOR,  # a scale: same eigenbasis
        prior_precision_vector(LAYOUT, [1.0, 0.2], [0.0, 5.0]),  # decomposed anew
    ],
    ids=["scaled", "new"],
)
def test_prior_changes_equal_the_dense_matrix(new_prior):
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    changed = post.with_prior_change(np, new_prior - PRIOR)
    P = _dense(factors, new_prior)
    np.testing.assert_allclose(
        changed.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-11
    )
    J = _network_jacobian()
    np.testing.assert_allclose(
        changed.functional_variance(np, J),
        J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)),
        rtol=1e-9,
        atol=1e-12,
    )
    with pytest.raises(NotPositiveDefiniteError, match="negative prior"):
        post.with_prior_change(np, -2.0 * PRIOR - 50.0)


def test_a_per_parameter_prior_is_replaced_by_row_means_with_a_warning():
    prior = PRIOR * np.linspace(0.5, 1.5, LAYOUT.n_params)
    with pytest.warns(UserWarning, match="row means"):
        post = KronPosterior.from_factors(_random_factors(LAYOUT), prior)
    # The posterior of the prior whose every row holds that row's mean (no
    # warning: constant by row); a row's max or first entry would differ.
    row_means = np.concatenate(
        [
            np.repeat(prior[LAYOUT.layer_slice(i)].reshape(r, c).mean(axis=1), c)
            for i, (r, c) in enumerate(LAYOUT.shapes)
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = KronPosterior.from_factors(_random_factors(LAYOUT), row_means)
    assert post.log_det_precision() == pytest.approx(
        means.log_det_precision(), rel=1e-12
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), means.covariance_diagonal(np), rtol=1e-12
    )


def test_successive_prior_changes_compose():
    # Each change is relative to the posterior it is applied to: a scale of
    # 2 then of 3 (the eigenbasis kept both times) is the dense matrix of 6
    # times the prior, as is a new prior followed by a scale.
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    new = prior_precision_vector(LAYOUT, [1.0, 0.2], [0.5, 5.0])
    for steps in ([2.0 * PRIOR, 6.0 * PRIOR], [new, 3.0 * new]):
        changed, prior = post, PRIOR
        for target in steps:
            changed, prior = changed.with_prior_change(np, target - prior), target
        P = _dense(factors, steps[-1])
        np.testing.assert_allclose(
            changed.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-11
        )
        np.testing.assert_allclose(
            changed.covariance_diagonal(np), np.diag(np.linalg.inv(P)), rtol=1e-9
        )


def test_flat_softmax_direction_gets_unit_precision_and_no_prediction_changes():
    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=30)
    layout = obj.layout
    obj.prior_precision = prior_precision_vector(layout, [0.5, 0.7], [0.2, 0.0])
    factors = kron_factors(obj, theta)
    post = KronPosterior.from_factors(factors, obj.prior_precision)
    # The dense precision is singular along the common shift of the output
    # biases; the full posterior adds u u' there (constrained_curvature).
    P = obj.constrained_curvature(_dense(factors, obj.prior_precision))
    J = np.concatenate(
        [J for _, J in logit_jacobians(np, layout, theta, "tanh", obj.X)]
    )
    centring = np.eye(3) - 1.0 / 3.0
    ours = centring @ post.functional_variance(np, J) @ centring
    dense = centring @ (J @ np.linalg.solve(P, np.swapaxes(J, 1, 2))) @ centring
    np.testing.assert_allclose(ours, dense, rtol=1e-8, atol=1e-10)
    assert np.isfinite(post.log_det_precision())


def test_kron_posterior_under_array_api_strict_matches_numpy():
    obj, theta = make_problem("tanh", 3, hidden=(4,), weighted=True)
    sobj, stheta = make_problem("tanh", 3, hidden=(4,), weighted=True, xp=xps)
    factors, strict = kron_factors(obj, theta), kron_factors(sobj, stheta)
    for ours, theirs in zip([*factors[0], *factors[1]], [*strict[0], *strict[1]]):
        np.testing.assert_allclose(to_numpy(theirs), ours, rtol=1e-12, atol=1e-14)
    post = KronPosterior.from_factors(factors, obj.prior_precision)
    J = np.concatenate(
        [J for _, J in logit_jacobians(np, obj.layout, theta, "tanh", obj.X)]
    )
    general = np.random.RandomState(0).normal(size=J.shape)
    for jac in (J, general):
        np.testing.assert_allclose(
            to_numpy(post.functional_variance(xps, xps.asarray(jac))),
            post.functional_variance(np, jac),
            rtol=1e-12,
            atol=1e-14,
        )
    np.testing.assert_allclose(
        to_numpy(post.covariance_diagonal(xps)), post.covariance_diagonal(np)
    )


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_kron_evidence_is_stationary_at_the_evidence_alpha():
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (4,),
        alpha="evidence",
        hessian_structure="kron",
        prior_precision_scale=1.0,
        tol=1e-10,
        random_state=0,
    ).fit(X, y)
    assert clf.hessian_structure_ == "kron"
    alpha, step = clf.alpha_, 1e-4

    def slope(a):
        up = clf.log_marginal_likelihood(alpha=a * np.exp(step))
        down = clf.log_marginal_likelihood(alpha=a * np.exp(-step))
        return (up - down) / (2 * step)

    assert abs(slope(alpha)) < 1e-3
    assert abs(slope(4 * alpha)) > 0.1


def test_kron_estimator_pickles_and_predicts_like_its_posterior():
    X, y = _iris()
    clf = LaplaceMLPClassifier((5,), hessian_structure="kron", random_state=0)
    clf.fit(X, y)
    assert type(clf.posterior_) is KronPosterior
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), proba)
    for link in ("mc", "map"):
        other = clone.set_params(link_approx=link).predict_proba(X)
        assert np.all(np.isfinite(other))
    mean, cov = clf.latent_mean_and_variance(X[:3])
    assert cov.shape == (3, 3, 3)
    assert np.all(np.linalg.eigvalsh(cov) > -1e-10)


def test_pruning_refuses_kron_naming_the_supported_structures():
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (4,), hessian_structure="kron", prior_precision_scale=1.0, random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match="'full' or 'diag'"):
        prune(clf, 0.5)


def test_hessian_exact_with_kron_uses_the_ggn_with_a_warning():
    X, y = _iris()
    clf = LaplaceMLPClassifier(
        (3,),
        hessian="exact",
        hessian_structure="kron",
        prior_precision_scale=1.0,
        random_state=0,
    )
    with pytest.warns(UserWarning, match="GGN only") as record:
        clf.fit(X, y)
    assert clf.curvature_ == "ggn"
    # A tighter tol cannot help here: the advice is the settings that do.
    (message,) = [str(w.message) for w in record if "GGN only" in str(w.message)]
    assert "hessian='ggn'" in message and "tol" not in message


@pytest.mark.slow
def test_kron_scales_where_full_is_refused():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 200)), np.arange(60) % 3
    clf = LaplaceMLPClassifier(
        (100,), solver="lbfgs", hessian_structure="kron", max_iter=30
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.posterior_.n_params == 200 * 100 + 100 + 101 * 3
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_scaled_posteriors_share_the_transformed_jacobian_correctly():
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    J, other = _network_jacobian(seed=1), _network_jacobian(seed=2)
    for scale in (1.0, 3.0, 0.1):
        scaled = post.with_prior_change(np, (scale - 1.0) * PRIOR)
        P = _dense(factors, scale * PRIOR)
        for jac in (J, other, J):  # alternate: the cache must follow J
            np.testing.assert_allclose(
                scaled.functional_variance(np, jac),
                jac @ np.linalg.solve(P, np.swapaxes(jac, 1, 2)),
                rtol=1e-9,
                atol=1e-12,
            )
    assert post.blocks[0]._cache is scaled.blocks[0]._cache


def test_a_block_in_another_basis_or_with_other_outputs_keeps_its_own_cache():
    """``with_basis`` and ``with_outputs`` give blocks that transform ``J``
    otherwise: read from the first block's cache (which ``scaled`` copies
    share), the old transform would meet the new eigenvalues. The same
    posterior in a permuted output basis gives the first block's variances;
    another output factor gives those of a block built from it."""
    factors = _random_factors(LAYOUT)
    block = KronPosterior.from_factors(factors, PRIOR).blocks[0]
    J = _network_jacobian(seed=1)
    (r, c), (n, K) = block.shape, J.shape[:2]
    Jb = np.reshape(J[:, :, : r * c], (n, K, r, c))
    expected = block.functional_variance(np, J, Jb)  # cached for J
    order = np.arange(c)[::-1]
    assert np.ptp(block.m) > 1e-3 * np.max(block.m)  # distinct: the order counts
    permuted = block.with_basis(V=block.V[:, order], m=block.m[order])
    np.testing.assert_allclose(
        permuted.functional_variance(np, J, Jb), expected, rtol=1e-10
    )
    G = factors.outputs[0] + np.diag(np.arange(1.0, c + 1.0))
    assert block.jitter == 0.0
    fresh = KronBlock(block.inputs, G, block.row_prior)
    np.testing.assert_allclose(
        block.with_outputs(G).functional_variance(np, J, Jb),
        fresh.functional_variance(np, J, Jb),
        rtol=1e-10,
    )
    assert not np.allclose(fresh.functional_variance(np, J, Jb), expected)


def test_factored_jacobian_gives_the_dense_jacobian_and_the_same_variances():
    obj, theta = make_problem("tanh", 3, hidden=(4, 3), weighted=True, n_samples=9)
    layout = obj.layout
    (_, J), *_ = logit_jacobians(np, layout, theta, "tanh", obj.X)
    (_, F), *_ = logit_factors(np, layout, theta, "tanh", obj.X)
    np.testing.assert_allclose(F.dense(np), J, rtol=1e-14)
    assert F.shape == J.shape
    post = KronPosterior.from_factors(kron_factors(obj, theta), obj.prior_precision)
    for scale in (1.0, 7.0):
        scaled = post.with_prior_change(np, (scale - 1.0) * obj.prior_precision)
        np.testing.assert_allclose(
            scaled.functional_variance(np, F),
            scaled.functional_variance(np, J),
            rtol=1e-11,
            atol=1e-14,
        )
    sobj, stheta = make_problem(
        "tanh", 3, hidden=(4, 3), weighted=True, n_samples=9, xp=xps
    )
    (_, SF), *_ = logit_factors(xps, layout, stheta, "tanh", sobj.X)
    np.testing.assert_allclose(
        to_numpy(post.functional_variance(xps, SF)),
        post.functional_variance(np, F),
        rtol=1e-12,
        atol=1e-14,
    )


def test_the_default_estimator_fits_an_image_sized_network():
    # 784 inputs, 100 hidden units, 10 classes: 79,510 parameters, whose full
    # matrix (47 GiB) the memory guard would refuse; "auto" picks kron.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 784)), np.arange(40) % 10
    clf = LaplaceMLPClassifier(max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.hessian_structure_ == "kron"
    assert clf.posterior_.n_params == 79_510
    proba = clf.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_layer_without_any_prior_gets_unit_precision_on_its_flat_direction():
    """No prior on a softmax layer: ``A kron G`` is singular along ``1``.

    Every row of ``[W; b]`` has the common shift ``1 / sqrt(3)`` in ``G``'s
    null space and no prior; the posterior adds unit precision there (the
    module docstring), so its precision is ``A kron (G + 11'/3)``.
    """
    rng = np.random.RandomState(5)
    a = rng.normal(size=(6, 4))
    A = a.T @ a / 4
    C = np.eye(3) - 1.0 / 3.0
    g = rng.normal(size=(4, 3))
    G = C @ g.T @ g @ C  # rank 2, null space the common shift
    post = KronPosterior.from_factors(KroneckerFactors([A], [G]), np.zeros(12))
    P = np.kron(A, G + 1.0 / 3.0)
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-10
    )
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(np.linalg.inv(P)), rtol=1e-9
    )


def test_zero_rows_give_an_empty_variance():
    post = KronPosterior.from_factors(_random_factors(LAYOUT), PRIOR)
    J = np.zeros((0, 3, LAYOUT.n_params))
    assert post.functional_variance(np, J).shape == (0, 3, 3)


def test_no_prior_change_keeps_a_jittered_block_without_prior():
    """A flat prior on collinear inputs needs a jitter, which counts as prior.

    ``A`` of rank 1 and no prior: ``A + D`` is singular and the block adds
    the smallest working jitter to ``d``. A change of 0 (the prior scale
    applied to a zero prior) must keep that posterior as it is, jitter
    included. (The dense ``A kron G + jitter I`` has condition ~1e10: its
    log det checks the block to 1e-6 only.)
    """
    rng = np.random.RandomState(6)
    x = rng.normal(size=3)
    g = rng.normal(size=(3, 2))
    factors = KroneckerFactors([np.outer(x, x)], [g.T @ g])
    post = KronPosterior.from_factors(factors, np.zeros(6))
    assert post.jitter > 0
    P = np.kron(np.outer(x, x), g.T @ g) + post.jitter * np.eye(6)
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-6
    )
    kept = post.with_prior_change(np, np.zeros(6))
    assert kept.log_det_precision() == pytest.approx(post.log_det_precision())
    np.testing.assert_allclose(
        kept.covariance_diagonal(np), post.covariance_diagonal(np), rtol=1e-12
    )


def test_the_posterior_jitter_is_its_largest_blocks():
    # One layer on collinear inputs without a prior needs a jitter, the other
    # none; in either order the posterior reports the jittered one's.
    rng = np.random.RandomState(6)
    x, g = rng.normal(size=3), rng.normal(size=(3, 2))
    A, G = _one_layer_factors(0, 3, 2, 1.0)
    jittered = (np.outer(x, x), g.T @ g, np.zeros(6))
    plain = (A, G, np.ones(6))
    for first, second in ((jittered, plain), (plain, jittered)):
        post = KronPosterior.from_factors(
            KroneckerFactors([first[0], second[0]], [first[1], second[1]]),
            np.r_[first[2], second[2]],
        )
        jitters = [block.jitter for block in post.blocks]
        assert min(jitters) == 0 < max(jitters) == post.jitter


def _one_layer_factors(seed, n_inputs, n_outputs, output_scale):
    rng = np.random.RandomState(seed)
    A = rng.normal(size=(n_inputs, n_inputs))
    G = rng.normal(size=(n_outputs, n_outputs))
    return A @ A.T, output_scale * (G @ G.T)


def test_the_kron_pivot_ratio_is_its_worst_layers():
    # A layer whose data swamp the prior (factor scale 1e14) is nearly
    # singular; the two-layer posterior reports that layer's ratio.
    A1, G1 = _one_layer_factors(0, 3, 2, 1.0)
    A2, G2 = _one_layer_factors(1, 3, 2, 1e14)
    prior = np.ones(6)
    both = KronPosterior.from_factors(
        KroneckerFactors([A1, A2], [G1, G2]), np.r_[prior, prior]
    )
    first = KronPosterior.from_factors(KroneckerFactors([A1], [G1]), prior)
    second = KronPosterior.from_factors(KroneckerFactors([A2], [G2]), prior)
    assert second.pivot_ratio() < first.pivot_ratio()
    assert both.pivot_ratio() == min(first.pivot_ratio(), second.pivot_ratio())


def _singular_output_factor(seed, null):
    """A random ``G`` (``3 x 3``, rank 2) whose null vector is ``null``.

    ``null=None``: one output unit with no data, ``G = [[0]]``.
    """
    if null is None:
        return np.zeros((1, 1))
    null = np.asarray(null)
    g = np.random.RandomState(seed).normal(size=(4, 3))
    C = np.eye(3) - np.outer(null, null) / (null @ null)
    return C @ g.T @ g @ C


@pytest.mark.parametrize(
    "null, last, pinned",
    [
        ([1.0, 1.0, 1.0], True, True),  # a softmax's common shift: the convention
        ([1.0, 1.0, 1.0], False, False),  # the same in a hidden layer
        ([1.0, 0.0, 0.0], True, False),  # an output unit with no data
        (None, True, False),  # a Bernoulli logit has no shift: V = [[1]] is not one
    ],
    ids=["softmax shift", "hidden layer", "another direction", "one output"],
)
def test_a_flat_direction_is_singular_unless_it_is_the_softmaxs_shift(
    null, last, pinned
):
    """No data and no prior on a direction: the precision is singular there.

    Two mirrored hidden units under a flat bias prior leave their biases'
    common move with no data; the unit eigenvalue put there had passed
    without the warning the full posterior gives. Only a softmax's common
    shift in the last layer is pinned by convention. The layer: 2 inputs
    and a bias row with no prior, 3 units (1 for one output); the other
    layer's factors are proper.
    """
    rng = np.random.RandomState(3)
    a = rng.normal(size=(8, 3))
    A = a.T @ a / 8
    G = _singular_output_factor(4, null)
    c = G.shape[0]
    A_other, G_other = _one_layer_factors(5, 3, 3, 1.0)
    prior = np.r_[np.ones(2 * c), np.zeros(c)]  # weights' rows 1, the bias row flat
    layers = [(A, G, prior), (A_other, G_other, np.ones(9))][:: -1 if last else 1]
    post = KronPosterior.from_factors(
        KroneckerFactors([A for A, _, _ in layers], [G for _, G, _ in layers]),
        np.concatenate([d for _, _, d in layers]),
    )
    flat = post.blocks[-1 if last else 0].flat()
    assert flat.sum() == 1 and flat[-1].sum() == 1  # on the bias row only
    # The block's dense precision is singular: its unit there is a convention.
    dense = np.kron(A, G) + np.diag(prior)
    eigenvalues = np.linalg.eigvalsh(dense)
    assert abs(eigenvalues[0]) < 1e-12 * eigenvalues[-1] < eigenvalues[1] * 1e-6
    assert np.isfinite(post.log_det_precision())
    # Corrected (EKFAC, here with KFAC's own values) and under another
    # prior on the layer's weight rows: a ColumnKronBlock, the same verdict.
    corrected = KronPosterior(
        [b.corrected(b.mu[:, None] * b.m[None, :]) for b in post.blocks],
        post.prior_precision,
    )
    start = 9 if last else 0
    change = np.zeros(9 + 3 * c)
    change[start : start + c] = 1.0  # the first weight row
    changed = corrected.with_prior_change(np, change)
    assert type(changed.blocks[-1 if last else 0]).__name__ == "ColumnKronBlock"
    for posterior in (post, corrected, changed):
        if pinned:
            assert posterior.pivot_ratio() > 1e-3
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                _warn_if_near_singular(posterior)
        else:
            assert posterior.pivot_ratio() == 0.0
            with pytest.warns(LaplaceApproximationWarning, match="nearly singular"):
                _warn_if_near_singular(posterior)


def test_a_prior_varying_slightly_within_a_row_is_still_replaced_with_a_warning():
    A, G = _one_layer_factors(0, 3, 2, 1.0)
    prior = np.ones(6)
    prior[1] += 1e-6  # row 0 holds 1 and 1 + 1e-6: not one precision
    with pytest.warns(UserWarning, match="row means"):
        KronPosterior.from_factors(KroneckerFactors([A], [G]), prior)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KronPosterior.from_factors(KroneckerFactors([A], [G]), np.ones(6))


def test_a_block_jitter_grows_tenfold_until_the_factor_is_definite():
    # A = diag(1, -1e-6), as float32 round-off can leave it, and no prior:
    # 1e-10 is not enough, and the smallest tenfold step from it that makes
    # A + jitter I definite is 1e-5.
    from sklaplace._kron import KronBlock

    A = np.diag([1.0, -1e-6])
    block = KronBlock(A, np.eye(2), np.zeros(2))
    assert block.jitter == pytest.approx(1e-5, rel=1e-9)
    # The search starts at 1e-10 of the factor's scale: enough for -1e-11.
    shallow = KronBlock(np.diag([1.0, -1e-11]), np.eye(2), np.zeros(2))
    assert shallow.jitter == pytest.approx(1e-10, rel=1e-9)


def test_a_duplicated_input_under_a_flat_prior_gets_a_jitter_not_an_error():
    # The first layer's input factor is singular (column 2 repeats column 0)
    # and its prior flat, yet its Cholesky factor passed by round-off with a
    # tiny pivot: the eigenvalue along the difference of the two columns came
    # out 0 and fit raised an internal NotPositiveDefiniteError. It now gets
    # the jitter a failed factor gets, with the warning that says so.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 2))
    X = np.hstack([X, X[:, :1]])
    y = (X[:, 0] + 0.8 * rng.normal(size=100) > 0).astype(int)
    clf = LaplaceMLPClassifier(
        (3,),
        activation="tanh",
        alpha=[0.0, 1.0],
        bias_prior_precision=[0.0, 1.0],
        hessian_structure="kron",
        prior_precision_scale=1.0,
        random_state=0,
    )
    with pytest.warns(LaplaceApproximationWarning, match="added a jitter"):
        clf.fit(X, y)
    first, second = (block.jitter for block in clf.posterior_.blocks)
    assert clf.posterior_jitter_ == first > 0 == second
    assert np.all(clf.posterior_.blocks[0].eigenvalues() > 0)
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_the_input_factor_is_the_weighted_gram_of_the_inputs_with_a_one():
    # A = sum_n s_n [x_n 1][x_n 1]' / sum_n s_n, from the raw arrays, for
    # weights of which some are exactly 1 (the unit-weight shortcut must
    # apply only where every weight is 1).
    obj, theta, raw = make_problem("tanh", 3, (4,), n_samples=12, raw=True)
    weight = raw["sample_weight"].copy()
    weight[: len(weight) // 2] = 1.0
    weight[len(weight) // 2 :] = np.linspace(0.5, 2.0, len(weight) - len(weight) // 2)
    obj = rebuilt(obj, sample_weight=weight)
    X1 = np.c_[raw["X"], np.ones(len(weight))]
    expected = (X1 * weight[:, None]).T @ X1 / weight.sum()
    got = kron_factors(obj, theta).inputs[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(4, 128), (70, 3)], ids=["wide-out", "r70"])
def test_the_outer_product_check_reads_every_input_row_of_a_small_layer(shape):
    """A Jacobian block that is an outer product except on input row 1.

    Up to 127 input rows the check reads them all (``step = r // 64`` is 1
    whatever the outputs): this block is not an outer product, so it takes
    the dense transform and gives the dense ``J P^{-1} J'``. A check of
    every other row (or of a step set by the outputs) skips row 1 and
    returns the variance of the outer product's fit instead.
    """
    r, c = shape
    rng = np.random.RandomState(7)
    a = rng.normal(size=(r + 3, r))
    g = rng.normal(size=(c + 2, c))
    factors = KroneckerFactors([a.T @ a / r], [g.T @ g / c])
    prior = np.ones(r * c)
    post = KronPosterior.from_factors(factors, prior)
    ahat = np.c_[rng.normal(size=(3, r - 1)), np.ones(3)]
    delta = rng.normal(size=(3, 2, c))
    Jb = ahat[:, None, :, None] * delta[:, :, None, :]
    Jb[:, :, 1, :] += rng.normal(size=(3, 2, c))  # row 1 alone breaks it
    J = Jb.reshape(3, 2, r * c)
    P = _dense(factors, prior)
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)),
        rtol=1e-9,
        atol=1e-12,
    )


def test_a_sample_without_any_jacobian_takes_the_fast_path_silently():
    # A row whose delta vanishes (a ReLU layer dead on that sample) has a
    # zero Jacobian block: its a is 0 (no 0 / 0) and the outer-product
    # path applies to every row, without a RuntimeWarning.
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    J = _network_jacobian()
    J[0] = 0.0
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        variance = post.functional_variance(np, J)
    P = _dense(factors, PRIOR)
    np.testing.assert_allclose(
        variance, J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(variance[0], 0.0)


def test_the_cache_does_not_mistake_a_freed_jacobian_for_another():
    """The block caches the transform of ``J`` by a weak reference to it.

    A Jacobian that was freed leaves a dead reference; a later call with
    another Jacobian, dense or factored, must not be served its transform
    (other rows: other variances). Checked in both orders against the
    dense ``J P^{-1} J'``.
    """
    obj, theta = make_problem("tanh", 3, hidden=(4, 3), weighted=True, n_samples=9)
    layout = obj.layout
    factors = kron_factors(obj, theta)
    post = KronPosterior.from_factors(factors, obj.prior_precision)
    P = _dense(factors, obj.prior_precision)

    def dense_variance(J):
        return J @ np.linalg.solve(P, np.swapaxes(J, 1, 2))

    def jacobians(rows):
        (_, J), *_ = logit_jacobians(np, layout, theta, "tanh", obj.X[rows])
        (_, F), *_ = logit_factors(np, layout, theta, "tanh", obj.X[rows])
        return J, F

    for factored_first in (True, False):
        J, F = jacobians(slice(0, 5))
        earlier = F if factored_first else J
        del J, F
        post.functional_variance(np, earlier)
        del earlier  # frees it: the cache holds a dead reference
        gc.collect()
        J, F = jacobians(slice(5, 9))
        later = J if factored_first else F
        np.testing.assert_allclose(
            post.functional_variance(np, later),
            dense_variance(J),
            rtol=1e-9,
            atol=1e-12,
        )


def test_a_prior_negative_on_one_row_only_is_refused_not_jittered():
    """``A + D`` indefinite through ONE negative row of the prior (the other
    rows positive) is refused as a negative prior, like an all-negative one.

    The jitter is for singular factors; added here it grows until ``A + D``
    is definite and the block of an indefinite precision (dense smallest
    eigenvalue below 0) is accepted. A check for a prior negative on every
    row (``all`` for ``any``) lets this one through.
    """
    A, G = _one_layer_factors(0, 3, 2, 1.0)
    factors = KroneckerFactors([A], [G])
    d = np.array([-5.0, 1.0, 1.0])  # weight row 0 negative, the rest positive
    prior = np.repeat(d, 2)
    assert np.linalg.eigvalsh(A + np.diag(d))[0] < 0  # indefinite, not singular
    assert np.linalg.eigvalsh(_dense(factors, prior))[0] < 0
    with pytest.raises(NotPositiveDefiniteError, match="negative prior"):
        KronPosterior.from_factors(factors, prior)
    # The same through a prior change of a KFAC posterior (a new decomposition).
    post = KronPosterior.from_factors(factors, np.ones(6))
    with pytest.raises(NotPositiveDefiniteError, match="negative prior"):
        post.with_prior_change(np, prior - 1.0)


def test_a_constant_negative_row_prior_is_row_constant_without_a_warning():
    """A negative prior constant along each row is no per-parameter prior.

    Row constancy is measured against the row's largest ABSOLUTE value: the
    mean of three ``-0.1`` (or ``-0.7``) misses it by an ulp, which is
    round-off against ``|d|``. Measured against the signed maximum (a
    negative number, so the floor ``1e-300``), the ulp reads as a spread and
    the row-means warning fires for a prior that has none. The posterior is
    positive definite here (large factors) and exact: the dense log det.
    """
    A, G = _one_layer_factors(5, 3, 3, 10.0)
    factors = KroneckerFactors([10.0 * A], [G])
    prior = np.full(9, -0.1)
    rows = prior.reshape(3, 3)
    assert np.max(np.abs(rows - rows.mean(axis=1)[:, None])) > 0  # an ulp
    P = _dense(factors, prior)
    assert np.linalg.eigvalsh(P)[0] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post = KronPosterior.from_factors(factors, prior)
    np.testing.assert_allclose(
        post.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-10
    )
    # A change that lands on -0.7 per row (an ulp off its row mean) is silent.
    post = KronPosterior.from_factors(factors, np.ones(9))
    delta = np.full(9, -1.7)
    rows = (np.ones(9) + delta).reshape(3, 3)
    assert np.max(np.abs(rows - rows.mean(axis=1)[:, None])) > 0
    P = _dense(factors, np.ones(9) + delta)
    assert np.linalg.eigvalsh(P)[0] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", LaplaceApproximationWarning)
        changed = post.with_prior_change(np, delta)
    np.testing.assert_allclose(
        changed.log_det_precision(), np.linalg.slogdet(P)[1], rtol=1e-10
    )


def test_an_output_factor_with_a_negative_round_off_eigenvalue_counts_it_as_zero():
    """``G``'s eigenvalues are clipped at 0: ``E_ij = mu_i max(m_j, 0) + rho_i``.

    ``G`` is a sum of positive semi-definite output curvatures; a softmax's
    is singular along the common shift, where round-off (float32 factors,
    long sums) can leave a small negative eigenvalue, here ``-2e-14`` of
    the largest. Times a large input factor (``A ~ 1e8``, inputs of size
    ``1e4``) and under a small prior (``1e-6``), an unclipped ``m`` makes
    ``E = mu m + rho`` negative (about ``-1e-6``): a posterior that cannot
    be built. Clipped, it is the precision of the PSD ``G`` (that eigenvalue
    0), whose log det ``sum_ij log(a_i m_j + d)`` is known in closed form
    for a diagonal ``A`` and a constant prior ``d``.
    """
    rng = np.random.RandomState(4)
    a = np.array([1e8, 3e8, 1.0])  # two inputs of size 1e4, then the bias row
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    m = np.array([-2e-14, 1.0, 2.0])  # the common shift, left slightly negative
    G = Q @ np.diag(m) @ Q.T
    G = 0.5 * (G + G.T)
    assert np.linalg.eigvalsh(G)[0] < -1e-14  # the round-off survives in G
    d = 1e-6
    post = KronPosterior.from_factors(
        KroneckerFactors([np.diag(a)], [G]), np.full(9, d)
    )
    exact = np.sum(np.log(a[:, None] * np.maximum(m, 0.0)[None, :] + d))
    np.testing.assert_allclose(post.log_det_precision(), exact, rtol=1e-8)
    (block,) = post.blocks
    assert np.all(block.eigenvalues() > 0)


ROW_MEANS_MESSAGE = (
    "The Kronecker-factored posterior adds the prior per input row of each "
    "layer; a prior precision that varies across a row's outputs (alpha given "
    "per parameter) is replaced by its row means."
)


def test_a_prior_varying_along_the_rows_of_any_layer_warns():
    # Only the first of the two layers gets a per-parameter prior (at the
    # fit) or change (after it): the warning is for any layer so
    # approximated, not only the last one.
    varying = PRIOR.copy()
    varying[LAYOUT.layer_slice(0)] *= np.linspace(0.5, 1.5, 16)
    with pytest.warns(LaplaceApproximationWarning) as record:
        KronPosterior.from_factors(_random_factors(LAYOUT), varying)
    assert [str(w.message) for w in record] == [ROW_MEANS_MESSAGE]
    post = KronPosterior.from_factors(_random_factors(LAYOUT), PRIOR)
    with pytest.warns(LaplaceApproximationWarning) as record:
        post.with_prior_change(np, varying - PRIOR)
    assert [str(w.message) for w in record] == [ROW_MEANS_MESSAGE]


@pytest.mark.parametrize("size", [1e-8, 1.0, 1e4])
def test_a_row_is_constant_relative_to_its_own_prior(size):
    # A spread of 1e-6 of the prior within a row is a per-parameter prior
    # at any size (1e-14 absolute at 1e-8); a spread of a few ulps is
    # round-off at any size (2e-12 absolute at 1e4): no warning.
    A, G = _one_layer_factors(0, 3, 2, 1.0)
    factors = KroneckerFactors([A], [G])
    varying = np.full(6, size)
    varying[1] *= 1 + 1e-6
    with pytest.warns(LaplaceApproximationWarning, match="row means"):
        KronPosterior.from_factors(factors, varying)
    rounded = size * (1 + np.array([0, 2, 0, -1, 1, 0]) * np.finfo(float).eps)
    assert np.ptp(rounded) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KronPosterior.from_factors(factors, rounded)


def test_a_factor_that_no_jitter_makes_definite_names_the_last_one_tried():
    # A = diag(1, -1e30) without prior: the jitter grows tenfold from 1e-10
    # (of the largest diagonal entry, 1) 30 times, to 1e18, and fails.
    from sklaplace._kron import KronBlock

    with pytest.raises(NotPositiveDefiniteError) as info:
        KronBlock(np.diag([1.0, -1e30]), np.eye(2), np.zeros(2))
    assert str(info.value) == (
        "A Kronecker factor plus its prior is not positive definite even with a "
        "jitter of 1e+18."
    )


def test_the_kron_posterior_names_what_it_cannot_do():
    # Taking a little more than the prior away from a layer whose output
    # factor is singular leaves negative eigenvalues where the data have
    # none (not flat: the fitted prior was there). Taking exactly the prior
    # away leaves zeros whose sign is the BLAS's round-off (positive with
    # OPENBLAS_CORETYPE=Sandybridge), so the test does not.
    rng = np.random.RandomState(5)
    a, g = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    C = np.eye(3) - 1.0 / 3.0
    factors = KroneckerFactors([a.T @ a / 4], [C @ g.T @ g @ C])
    post = KronPosterior.from_factors(factors, np.ones(12))
    with pytest.raises(NotPositiveDefiniteError) as info:
        post.with_prior_change(np, -1.05 * np.ones(12))
    assert str(info.value) == (
        "The Kronecker-factored precision is not positive definite."
    )


def test_a_negative_prior_is_refused_not_jittered():
    """``A + D`` indefinite (a prior below ``-lambda_min(A)``) is not singular:
    the jitter for singular factors had made it positive definite, and the
    posterior of an indefinite precision (smallest eigenvalue -0.5) had
    predicted. A negative prior that leaves ``A + D`` and the block positive
    definite (one output, ``G > 0``) is exact: the dense log det."""
    rng = np.random.RandomState(5)
    a, g = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    A, C = a.T @ a / 4, np.eye(3) - 1.0 / 3.0
    post = KronPosterior.from_factors(
        KroneckerFactors([A], [C @ g.T @ g @ C]), np.ones(12)
    )
    assert np.linalg.eigvalsh(A)[0] < 0.5  # A - 0.5 I is indefinite
    assert np.linalg.eigvalsh(np.kron(A, C @ g.T @ g @ C) - 0.5 * np.eye(12))[0] < 0
    with pytest.raises(NotPositiveDefiniteError, match="negative prior"):
        post.with_prior_change(np, -1.5 * np.ones(12))
    binary = KronPosterior.from_factors(
        KroneckerFactors([A], [np.eye(1) * 40.0]), np.ones(4)
    )
    shifted = binary.with_prior_change(np, -1.05 * np.ones(4))  # prior -0.05
    dense = np.kron(A, np.eye(1) * 40.0) - 0.05 * np.eye(4)
    assert np.linalg.eigvalsh(dense)[0] > 0
    np.testing.assert_allclose(
        shifted.log_det_precision(), np.linalg.slogdet(dense)[1], rtol=1e-12
    )


def test_no_change_to_a_layer_without_prior_is_silent_and_keeps_the_block():
    # The prior scale applied to a zero prior is a change of 0: the block is
    # kept (kappa 1, same eigenbasis), with no 0 / 0 on the way.
    rng = np.random.RandomState(5)
    a, g = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    factors = KroneckerFactors([a.T @ a / 4], [g.T @ g])
    post = KronPosterior.from_factors(factors, np.zeros(12))
    assert post.jitter == 0.0
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        kept = post.with_prior_change(np, np.zeros(12))
    (block,) = kept.blocks
    assert block.S is post.blocks[0].S
    np.testing.assert_allclose(
        kept.log_det_precision(),
        np.linalg.slogdet(np.kron(a.T @ a / 4, g.T @ g))[1],
        rtol=1e-10,
    )


def test_a_prior_far_below_unscaled_inputs_is_added_exactly():
    """A prior ``1e-14`` of the input factor's largest entry, away from 1.

    Inputs of size ``1e4`` (``A ~ 1e8``) and a prior ``1e-6`` as small as
    the output factor: ``P = A kron G + D kron I`` is well conditioned, but
    ``A + D`` holds the prior below ``A``'s round-off. ``B = 2^k A + D``
    with ``2^k ~ prior / largest`` (and ``mu`` divided back by ``2^k``)
    gives the dense ``P``'s log determinant, solve, diagonal of ``P^{-1}``
    and ``J P^{-1} J'`` to round-off. Plausible slips each miss by far more
    than the tolerance: ``A + D`` unbalanced (a threshold ``1e-6 /
    largest``: 0.8% on ``diag(P^{-1})``), ``2^k ~ prior * largest`` (1.5%,
    the same as ``prior / largest`` only where ``largest ~ 1``, as in the
    small-total-weight test), ``mu`` times ``2^k`` (a factor 4).
    """
    rng = np.random.RandomState(0)
    r, c, n, size, t = 4, 3, 30, 1e4, 1e-6
    ahat = np.c_[size * rng.normal(size=(n, r - 1)), np.ones(n)]
    A = ahat.T @ ahat / n
    g = rng.normal(size=(c + 2, c))
    G = (g.T @ g / c) * t / size**2
    prior = np.repeat(t * np.array([1.0, 1.0, 1.0, 0.1]), c)  # bias: a tenth
    factors = KroneckerFactors([A], [G])
    P = _dense(factors, prior)
    assert np.max(prior) < 1e-13 * np.max(np.diag(A)) and np.linalg.cond(P) < 1e3
    post = KronPosterior.from_factors(factors, prior)
    assert post.blocks[0].jitter == 0.0
    assert abs(post.log_det_precision() - np.linalg.slogdet(P)[1]) < 1e-9
    inverse = np.linalg.inv(P)
    np.testing.assert_allclose(
        post.covariance_diagonal(np), np.diag(inverse), rtol=1e-10
    )
    J = rng.normal(size=(5, 2, r * c))  # dense: not an outer product
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        J @ inverse @ np.swapaxes(J, 1, 2),
        rtol=1e-10,
    )


def test_a_kfac_block_of_a_singular_input_factor_stays_positive_definite():
    """``S' A S = diag(mu)`` of a positive semi-definite ``A``: ``mu >= 0``.

    A duplicated input makes ``A`` exactly singular; under a prior ``1e-12``
    of ``A`` (``B = 2^k A + D``) the null direction's ``mu`` is round-off
    over ``2^k`` (about ``1e-4``). Left negative, times an output curvature
    of ``1e5``, it made ``E = mu m + rho`` negative (-5): a KFAC posterior
    whose log determinant and every prior scale raised
    ``NotPositiveDefiniteError``. Clipped, ``E >= rho``.
    """
    rng = np.random.RandomState(0)
    x = rng.normal(size=(20, 2))
    ahat = np.c_[x[:, 0], x[:, 0], x[:, 1], np.ones(20)]  # input 0 twice
    A = ahat.T @ ahat / 20
    G = np.diag([1e5, 1.0])
    prior = np.full(8, 1e-12)
    post = KronPosterior.from_factors(KroneckerFactors([A], [G]), prior)
    (block,) = post.blocks
    assert np.all(block.mu >= 0.0)
    assert np.all(block.eigenvalues() >= block.rho[:, None] * (1 - 1e-12))
    assert np.isfinite(post.log_det_precision())
    scaled = post.with_prior_change(np, prior)  # scale 2: must not raise
    assert np.all(to_numpy(scaled.covariance_diagonal(np)) > 0)


def test_the_prior_scales_transform_a_jacobian_once_per_block(monkeypatch):
    """The scaled posteriors share the eigenbasis and the transform of ``J``.

    The prior scale's search evaluates ``J P(c)^{-1} J'`` at many ``c`` on
    the same ``J``: each block transforms it once (``(S kron V)' J``), the
    scaled copies reuse it through the shared cache, and the variances
    equal the dense ones at every scale. A cache that never stores, or is
    never read, recomputes the transform at every scale (49 per fold).
    """
    calls = []
    transformed = KronBlock._transformed

    def counted(self, xp, Jb):
        calls.append(self.shape)
        return transformed(self, xp, Jb)

    monkeypatch.setattr(KronBlock, "_transformed", counted)
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    J = _network_jacobian()
    for scale in (1.0, 3.0, 0.1, 10.0):
        scaled = post.with_prior_change(np, (scale - 1.0) * PRIOR)
        P = _dense(factors, scale * PRIOR)
        np.testing.assert_allclose(
            scaled.functional_variance(np, J),
            J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)),
            rtol=1e-9,
            atol=1e-12,
        )
    assert calls == [block.shape for block in post.blocks]


def test_an_outer_product_block_takes_the_fast_path_whatever_its_rows():
    """A Jacobian block ``ahat kron delta`` is transformed as two factors.

    ``(S' ahat, V' delta)``, ``O(r^2 + K c^2)`` per sample, not the dense
    ``S' Jb V``: also where an input is 0 on a sample (a ReLU unit off) and
    where ``delta`` is small (``|delta|^2 < 1``). ``delta`` is read from the
    bias row (``ahat = 1``) and ``ahat`` is ``Jb``'s projection on it over
    ``|delta|^2``; another row (0 on some sample), an unnormalised
    projection or a misfit measured against nothing sends such blocks to
    the dense transform (the same variances, ``r + c`` times the work).
    The variances equal the dense ``J P^{-1} J'``.
    """
    factors = _random_factors(LAYOUT)
    post = KronPosterior.from_factors(factors, PRIOR)
    block = post.blocks[0]
    r, c = block.shape
    rng = np.random.RandomState(3)
    ahat = np.c_[rng.normal(size=(6, r - 1)), np.ones(6)]
    ahat[0, 1] = ahat[1, r - 2] = 0.0  # inputs off on two samples
    delta = rng.normal(size=(6, 3, c))
    delta[2] *= 1e-3
    Jb = ahat[:, None, :, None] * delta[:, :, None, :]
    value = block._transformed(np, Jb)
    assert isinstance(value, tuple)
    np.testing.assert_allclose(value[0], ahat @ block.S, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(value[1], delta @ block.V, rtol=1e-12, atol=1e-14)
    J = Jb.reshape(6, 3, r * c)
    P = _dense(factors, PRIOR)[: r * c, : r * c]
    np.testing.assert_allclose(
        block.functional_variance(np, J, Jb),
        J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)),
        rtol=1e-9,
        atol=1e-12,
    )


def test_kron_functional_variance_skips_the_offset_columns():
    """``offset`` (a last-layer posterior's other parameters) skips the
    Jacobian's leading columns: ``[other | J]`` at offset 7 has ``J``'s
    variance."""
    post = KronPosterior.from_factors(_random_factors(LAYOUT), PRIOR)
    J = _network_jacobian()
    other = np.random.RandomState(4).normal(size=(*J.shape[:2], 7))
    np.testing.assert_allclose(
        post.functional_variance(np, np.concatenate([other, J], axis=2), offset=7),
        post.functional_variance(np, J),
        rtol=1e-12,
        atol=1e-15,
    )


def test_a_factored_jacobian_of_other_layers_is_refused_not_truncated():
    """A :class:`FactoredJacobian` must hold one factor pair per block: one
    with a layer fewer (the first two of three) is refused with a
    ``ValueError``, not summed over the layers it has (which returned those
    layers' share of the variance as if it were all of it)."""
    obj, theta = make_problem("tanh", 3, hidden=(4, 3), weighted=True, n_samples=5)
    post = KronPosterior.from_factors(kron_factors(obj, theta), obj.prior_precision)
    (_, F), *_ = logit_factors(np, obj.layout, theta, "tanh", obj.X)
    assert len(post.blocks) == len(F.inputs) == 3
    short = FactoredJacobian(F.inputs[:2], F.deltas[:2])
    with pytest.raises(ValueError, match="shorter than"):  # a strict zip's
        post.functional_variance(np, short)


def test_a_jitter_is_relative_to_the_factor_plus_its_prior():
    """The jitter's search starts from a fraction of ``B = A + D``'s largest
    diagonal entry, the prior's included, so it scales with the block:
    ``A = diag(1, -3e-6)`` (float32 round-off) with the prior 1 on its first
    row and none on the second gets a jitter within ten times what it needs
    (``3e-6``), and the same block and prior times ``s`` get ``s`` times
    that jitter. Measured against ``A - D`` (0 on that row: the search
    starts from the smallest float and never gets there) the block was
    refused; a start at the fraction OVER the scale put the scaled blocks'
    jitters on another tenfold grid."""
    A, d = np.diag([1.0, -3e-6]), np.array([1.0, 0.0])
    block = KronBlock(A, np.eye(2), d)
    assert 3e-6 < block.jitter <= 3e-5
    assert np.all(block.eigenvalues() > 0)
    assert np.linalg.eigvalsh(A + np.diag(block.row_prior))[0] > 0
    for s in (2.0, 1e3):
        scaled = KronBlock(s * A, np.eye(2), s * d)
        assert scaled.jitter == pytest.approx(s * block.jitter, rel=1e-9)


def test_eigenvalues_given_at_construction_are_the_corrected_ones():
    """``KronBlock(..., data=h)`` holds the data eigenvalues ``h`` as
    :meth:`KronBlock.corrected` does: ``E = h + rho`` in the same basis, not
    KFAC's ``mu m + rho`` (the argument had been dropped)."""
    A, G = _one_layer_factors(0, 3, 2, 1.0)
    d = np.array([0.5, 0.5, 2.0])
    kfac = KronBlock(A, G, d)
    h = np.random.RandomState(1).uniform(0.5, 2.0, size=kfac.shape)
    given = KronBlock(A, G, d, data=h)
    np.testing.assert_allclose(given.eigenvalues(), h + kfac.rho[:, None], rtol=1e-12)
    np.testing.assert_allclose(
        given.eigenvalues(), kfac.corrected(h).eigenvalues(), rtol=1e-12
    )
    assert np.max(np.abs(given.eigenvalues() - kfac.eigenvalues())) > 0.1


@pytest.mark.parametrize(
    "d", [[0.0, 0.5, 0.0, 2.0, 0.0, 0.0], [0.0] * 6], ids=["some flat", "all flat"]
)
def test_rows_without_a_prior_get_the_basis_of_a_vanishing_prior(d):
    """Rows with ``d = 0`` make ``mu = 1`` a repeated eigenvalue, inside which
    LAPACK's basis is arbitrary, and so were the EKFAC eigenvalues measured
    in it (``diag(S' M S)`` for the data's ``M``). The basis is that of the
    limit of an equal prior ``eps`` on those rows. Reference: the same
    diagonalisation with ``eps = 1e-7`` there (within ``O(eps)``); LAPACK's
    basis, read at ``eps = 0``, had been 0.3 off."""
    rng = np.random.RandomState(0)
    a = rng.normal(size=(40, 6))
    A, d = a.T @ a / 40, np.array(d)
    M = rng.normal(size=(6, 6))
    M = M + M.T
    S, mu, rho, log_det_B = diagonalise(A, d)
    B = A + np.diag(d)
    np.testing.assert_allclose(S.T @ B @ S, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(S.T @ A @ S, np.diag(mu), atol=1e-12)
    np.testing.assert_allclose(S.T @ np.diag(d) @ S, np.diag(rho), atol=1e-12)
    np.testing.assert_allclose(log_det_B, np.linalg.slogdet(B)[1], rtol=1e-12)
    S_eps, mu_eps, _, _ = diagonalise(A, d + 1e-7 * (d == 0))
    np.testing.assert_allclose(mu, mu_eps, atol=1e-6)
    np.testing.assert_allclose(
        np.sort(np.diag(S.T @ M @ S)), np.sort(np.diag(S_eps.T @ M @ S_eps)), atol=1e-5
    )
    # A prior of 1e-14 there rounds mu to 1 all the same (LAPACK's basis had
    # been 0.3 off again): within O(1e-14) of the limit, its own prior
    # diagonal.
    tiny = d + 1e-14 * (d == 0)
    S_tiny, mu_tiny, rho_tiny, _ = diagonalise(A, tiny)
    np.testing.assert_allclose(
        S_tiny.T @ (A + np.diag(tiny)) @ S_tiny, np.eye(6), atol=1e-12
    )
    np.testing.assert_allclose(
        S_tiny.T @ np.diag(tiny) @ S_tiny, np.diag(rho_tiny), atol=1e-13
    )
    np.testing.assert_allclose(
        np.sort(np.diag(S.T @ M @ S)),
        np.sort(np.diag(S_tiny.T @ M @ S_tiny)),
        atol=1e-10,
    )


@pytest.mark.parametrize("bias_prior", [None, 1.0, 0.0])
def test_a_kronecker_posterior_at_a_flat_prior_is_the_limit_of_a_vanishing_one(
    bias_prior,
):
    """Softmax regression, 5 classes, the Kronecker posterior, the weights'
    prior 0 (the biases' the same, proper or flat): the probabilities are
    those at ``alpha`` 1e-10 to ``O(1e-10)``, and at 1e-16 reordering the
    features moves none. They had differed by 0.28 (every prior 0), and
    with a proper bias prior ``alpha`` 1e-16 by 0.089 from 0 and 0.13 with
    the features reordered: the EKFAC eigenvalues of rows of no or tiny
    prior were measured in an arbitrary basis."""
    X, y = _five_blobs()

    def proba(alpha, columns=(0, 1, 2)):
        bias = alpha if bias_prior is None else bias_prior
        clf = LaplaceMLPClassifier(
            (),
            alpha=alpha,
            bias_prior_precision=bias,
            hessian_structure="kron",
            prior_precision_scale=1.0,
            solver="newton",
            tol=1e-10,
            random_state=0,
        )
        Xc = X[:, list(columns)]
        with warnings.catch_warnings():  # tiny priors: nearly singular, it says
            warnings.simplefilter("ignore", LaplaceApproximationWarning)
            return clf.fit(Xc, y).predict_proba(np.r_[Xc, 3 * Xc])

    np.testing.assert_allclose(proba(0.0), proba(1e-10), atol=1e-7)
    np.testing.assert_allclose(proba(1e-16), proba(1e-16, (2, 0, 1)), atol=1e-8)


def _five_blobs():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(200, centers=5, n_features=3, cluster_std=3.0, random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_the_basis_of_rows_with_no_or_tiny_prior_does_not_depend_on_their_order(
    scale,
):
    """Three levels of prior at once (three rows of none, two of a tiny one
    that differs between them, two proper), ``A`` of scale 1 or 1e6: the
    EKFAC eigenvalues' basis, read through ``diag(S' M S)`` for a symmetric
    ``M``, is the same whatever the rows' order (an arbitrary basis inside a
    repeated ``mu`` changes with it). Within the tiny rows' columns the
    tiny prior is diagonal, and the columns are ``B``-normalised exactly
    even at the threshold (``d`` 0.9 ``FLAT_SHARE`` of ``A``)."""
    rng = np.random.RandomState(1)
    a = rng.normal(size=(50, 7))
    A = scale * a.T @ a / 50
    cases = [
        (tiny, np.r_[0.0, tiny, 0.0, 0.5, 0.3 * tiny, 0.0, 2.0])
        for tiny in (1e-14, 0.9 * FLAT_SHARE)
    ]
    # No row of none: the tiny ones are the first level, rotated by a prior
    # of 1e-8 of their A (a normalisation off by that much shows).
    tiny = 0.5 * FLAT_SHARE
    cases.append((tiny, np.r_[tiny, tiny, 0.3 * tiny, 0.5, 0.3 * tiny, 0.7, 2.0]))
    for tiny, share in cases:
        d = np.diag(A) * share
        M = rng.normal(size=(7, 7))
        M = M + M.T
        S, mu, rho, _ = diagonalise(A, d)
        B = A + np.diag(d)
        # The tiny rows' columns exactly normalised; the tiny prior's part
        # left out elsewhere is of its order (the module docstring).
        own = (rho > 0) & (rho < 1e-6)  # the tiny rows' columns
        assert own.sum() == np.sum((share > 0) & (share < 1e-6))
        np.testing.assert_allclose(S.T @ B @ S, np.eye(7), atol=1e-12 + 10 * tiny)
        np.testing.assert_allclose(np.diag(S.T @ A @ S), mu, rtol=0, atol=1e-12)
        if tiny < 1e-10 or share[0] > 0:  # else a row may fall a level
            normalised = np.diag(S.T @ B @ S)[own]
            np.testing.assert_allclose(normalised, 1.0, rtol=0, atol=1e-12)
            block = S[:, own].T @ np.diag(d) @ S[:, own]
            np.testing.assert_allclose(
                block, np.diag(rho[own]), rtol=1e-10, atol=1e-10 * np.max(rho[own])
            )
        for order in (rng.permutation(7), np.arange(7)[::-1]):
            S_p, _, _, _ = diagonalise(A[np.ix_(order, order)], d[order])
            np.testing.assert_allclose(
                np.sort(np.diag(S_p.T @ M[np.ix_(order, order)] @ S_p)),
                np.sort(np.diag(S.T @ M @ S)),
                rtol=1e-7,
                atol=1e-10,
            )


def test_a_negative_row_prior_is_diagonalised_not_taken_for_a_tiny_one():
    # A negative prior that leaves A + D positive definite (a prior scale's
    # change may): the pencil's exact basis, not the tiny prior's shortcut.
    rng = np.random.RandomState(2)
    a = rng.normal(size=(40, 5))
    A = a.T @ a / 40
    d = np.r_[-0.2, 0.0, 0.4, 0.0, 1.0] * np.min(np.linalg.eigvalsh(A))
    S, mu, rho, _ = diagonalise(A, d)
    np.testing.assert_allclose(S.T @ (A + np.diag(d)) @ S, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(S.T @ A @ S, np.diag(mu), atol=1e-12)
    np.testing.assert_allclose(S.T @ np.diag(d) @ S, np.diag(rho), atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_rows_whose_prior_is_exactly_the_flat_share_are_built_as_flat(scale):
    """The threshold is inclusive ("at most ``FLAT_SHARE`` of a row's ``A``"):
    two rows whose prior is exactly ``FLAT_SHARE`` of their ``A`` (no row of
    none) get the basis of the tiny level, which does not depend on the
    rows' order (``diag(S' M S)`` the same to round-off, 3e-14 measured),
    where LAPACK's basis inside their nearly repeated ``mu`` moved it by
    about 1e-6.

    Mutants: ``d < FLAT_SHARE * diag(A)`` for ``<=`` in ``diagonalise`` (the
    rows go to the pencil) or in ``_by_levels`` (no level found there).
    """
    rng = np.random.RandomState(1)
    a = rng.normal(size=(50, 7))
    A = scale * a.T @ a / 50
    share = np.r_[FLAT_SHARE, FLAT_SHARE, 0.3, 0.5, FLAT_SHARE, 0.7, 2.0]
    d = np.diag(A) * share  # the same product the threshold is compared with
    M = rng.normal(size=(7, 7))
    M = M + M.T
    S, mu, rho, _ = diagonalise(A, d)
    B = A + np.diag(d)
    # The tiny prior's coupling to the other columns, of its order, is left
    # out (the module docstring).
    np.testing.assert_allclose(S.T @ B @ S, np.eye(7), atol=1e-12 + 10 * FLAT_SHARE)
    want = np.sort(np.diag(S.T @ M @ S))
    for order in [rng.permutation(7) for _ in range(5)] + [np.arange(7)[::-1]]:
        S_p, _, _, _ = diagonalise(A[np.ix_(order, order)], d[order])
        np.testing.assert_allclose(
            np.sort(np.diag(S_p.T @ M[np.ix_(order, order)] @ S_p)),
            want,
            rtol=1e-9,
            atol=1e-12 * np.max(np.abs(want)),
        )


def test_a_basis_broken_by_round_off_is_refused_and_the_block_jittered():
    """``A = diag(1, -3e-6)`` (float32 round-off) and a prior one ulp above
    ``3e-6`` on its second row: ``B = A + D`` is 4e-22 there, singular to
    round-off; its Cholesky factor passes, but ``S' B S = I`` breaks
    (``mu + rho`` is 0 there, not 1). ``diagonalise`` refuses it and the
    block is jittered instead.

    Mutant ``x__pencil__mutmut_42`` (``mu + rho`` within 1.5 of 1, not 0.5):
    the broken basis was taken, unjittered.
    """
    A = np.diag([1.0, -3e-6])
    d = np.array([1.0, 3e-6 + np.spacing(3e-6)])
    with pytest.raises(np.linalg.LinAlgError):
        diagonalise(A, d)
    block = KronBlock(A, np.eye(2), d)
    assert block.jitter > 0
    assert np.linalg.eigvalsh(A + np.diag(block.row_prior))[0] > 0
