"""Last-layer Laplace against the Laplace of a logistic / softmax regression.

The reference is the regression on the MAP network's features, computed
here by hand from ``coefs_``, its precision and log joint written from
scratch (``sklaplace._testing``'s ``dense_ggn`` and ``mlp_logits``, which
share no code with the package; the functional API, which does, had let
a doubled output curvature pass): its precision is the last layer's
posterior precision, and the evidence, the predictive variances and the
prior changes follow from it.
"""

import pickle
import warnings

import numpy as np
import pytest
from scipy.linalg import block_diag
from scipy.special import log_expit, log_softmax
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.preprocessing import StandardScaler

from sklaplace import LaplaceMLPClassifier, prune
from sklaplace._last_layer import LastLayerPosterior
from sklaplace._posterior import DiagPosterior, FullPosterior, laplace_posterior
from sklaplace._testing import dense_ggn, mlp_logits
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import make_problem, rebuilt, record_row_chunks

ALPHA, BIAS = 0.7, 0.3


def _data(n_classes):
    if n_classes == 2:
        X, y = load_breast_cancer(return_X_y=True)
        X, y = X[::3, :6], y[::3]
    else:
        X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _fit(n_classes, structure, **params):
    X, y = _data(n_classes)
    clf = LaplaceMLPClassifier(
        (5,),
        activation="tanh",  # the reference's features
        alpha=ALPHA,
        bias_prior_precision=BIAS,
        hessian_structure=structure,
        subset_of_weights="last_layer",
        prior_precision_scale=1.0,
        tol=1e-9,
        random_state=0,
        **params,
    ).fit(X, y)
    return clf, X, y


def _features(clf, X):
    return np.tanh(X @ clf.coefs_[0] + clf.intercepts_[0])


def _regression_precision(features, W, b, alpha=ALPHA, bias=BIAS):
    """Laplace precision of the regression ``features @ W + b``, from scratch.

    ``sum_n J_n' Lambda_n J_n + A``: exact, the logits being linear in
    ``(W, b)``; ``J[n, k, (a, p)] = phihat_na [k == p]`` written out.
    """
    phi = np.hstack([features, np.ones((features.shape[0], 1))])
    J = np.stack([np.kron(row, np.eye(W.shape[1])) for row in phi])
    prior = np.r_[np.full(W.size, alpha), np.full(b.size, bias)]
    ones = np.ones(features.shape[0])
    return dense_ggn(np.r_[W.ravel(), b], features, ones, prior, W.shape, "identity", J)


def _reference_precision(clf, X, y, alpha=ALPHA, bias=BIAS):
    """Posterior precision of the regression of ``y`` on the MAP's features."""
    W, b = clf.coefs_[-1], clf.intercepts_[-1]
    return _regression_precision(_features(clf, X), W, b, alpha, bias)


def _log_joint(clf, X, y, alpha, bias):
    """``log p(D | theta) - 1/2 theta' A theta`` at the MAP, from scratch."""
    layers = list(zip(clf.coefs_, clf.intercepts_))
    theta = np.concatenate([np.r_[W.ravel(), b] for W, b in layers])
    prior = np.concatenate(
        [np.r_[np.full(W.size, alpha), np.full(b.size, bias)] for W, b in layers]
    )
    sizes = [clf.coefs_[0].shape[0]] + [W.shape[1] for W in clf.coefs_]
    logits = mlp_logits(theta, X, sizes, "tanh")
    if logits.shape[1] == 1:
        log_lik = np.sum(
            np.where(y == 1, log_expit(logits[:, 0]), log_expit(-logits[:, 0]))
        )
    else:
        log_lik = np.sum(log_softmax(logits, axis=1)[np.arange(len(y)), y])
    return log_lik - 0.5 * np.sum(prior * theta**2)


def _reference_log_evidence(clf, X, y, alpha=ALPHA, bias=BIAS):
    """The regression's Laplace evidence on the MAP's features, from scratch.

    ``log p(D | theta) - 1/2 theta' A theta`` over ALL parameters (the hidden
    layers' prior density at the MAP) plus the last layer's Occam factor,
    whose prior counts the last biases only when proper (``bias > 0``).
    """
    log_joint = _log_joint(clf, X, y, alpha, bias)
    prior_last = np.full(clf.coefs_[-1].size, alpha)
    if bias > 0:
        prior_last = np.r_[prior_last, np.full(clf.n_outputs_, bias)]
    P = _reference_precision(clf, X, y, alpha=alpha, bias=bias)
    return log_joint + 0.5 * (np.sum(np.log(prior_last)) - np.linalg.slogdet(P)[1])


def _last_layer_jacobian(clf, X):
    """``J[n, k, (a, p)] = phihat_na [k == p]`` over the last layer."""
    phi = np.hstack([_features(clf, X), np.ones((X.shape[0], 1))])
    K = clf.n_outputs_
    return np.stack([np.kron(row, np.eye(K)) for row in phi])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_full_last_layer_is_the_laplace_of_the_regression_on_the_features(n_classes):
    clf, X, y = _fit(n_classes, "full")
    post = clf.posterior_
    assert isinstance(post, LastLayerPosterior)
    assert clf.subset_of_weights_ == "last_layer" and clf.hessian_structure_ == "full"
    n_params = sum(c.size for c in clf.coefs_) + sum(b.size for b in clf.intercepts_)
    assert post.n_params == n_params
    P = _reference_precision(clf, X, y)
    L = post.inner.cholesky_factor
    np.testing.assert_allclose(L @ L.T, P, rtol=1e-8, atol=1e-8)
    # Predictive variances: J_last P^{-1} J_last' on the training rows.
    J = _last_layer_jacobian(clf, X[:7])
    _, cov = clf.latent_mean_and_variance(X[:7])
    np.testing.assert_allclose(
        cov, J @ np.linalg.solve(P, np.swapaxes(J, 1, 2)), rtol=1e-7, atol=1e-10
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_last_layer_evidence_is_the_regression_evidence_plus_the_feature_prior(
    n_classes,
):
    clf, X, y = _fit(n_classes, "full")
    np.testing.assert_allclose(
        clf.log_marginal_likelihood_, _reference_log_evidence(clf, X, y), rtol=1e-9
    )
    # At another prior (no refit): the same formula with the new prior.
    np.testing.assert_allclose(
        clf.log_marginal_likelihood(alpha=2.0, bias_prior_precision=0.5),
        _reference_log_evidence(clf, X, y, alpha=2.0, bias=0.5),
        rtol=1e-9,
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_diag_and_kron_last_layer_use_the_regression_curvature(n_classes):
    diag, X, y = _fit(n_classes, "diag")
    P = _reference_precision(diag, X, y)
    np.testing.assert_allclose(diag.posterior_.inner.precision, np.diag(P), rtol=1e-8)
    kron, X, y = _fit(n_classes, "kron")
    (block,) = kron.posterior_.inner.blocks
    phi = np.hstack([_features(kron, X), np.ones((X.shape[0], 1))])
    np.testing.assert_allclose(block.inputs, phi.T @ phi / len(X), rtol=1e-9)
    # Output factor: sum_n Lambda_n of the regression's likelihood.
    logits = _features(kron, X) @ kron.coefs_[-1] + kron.intercepts_[-1]
    if n_classes == 2:
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        G = np.array([[np.sum(p * (1 - p))]])
    else:
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        G = np.diag(p.sum(axis=0)) - p.T @ p
    np.testing.assert_allclose(block.outputs, G, rtol=1e-9, atol=1e-12)


def test_last_layer_takes_full_length_jacobians_and_prior_changes():
    clf, X, _ = _fit(3, "kron")
    post = clf.posterior_
    J = np.random.RandomState(0).normal(size=(4, 3, post.n_params))
    np.testing.assert_allclose(
        post.functional_variance(np, J),
        post.inner.functional_variance(np, J[:, :, post.offset :]),
    )
    delta = np.linspace(0.1, 1.0, post.n_params)
    with pytest.warns(LaplaceApproximationWarning, match="row means"):
        changed = post.with_prior_change(np, delta)  # varies along the rows
    np.testing.assert_allclose(
        changed.other_prior, post.other_prior + delta[: post.offset]
    )
    assert changed.inner.n_params == post.inner.n_params
    diagonal = post.covariance_diagonal(np)
    assert diagonal.shape == (post.n_params,)
    np.testing.assert_allclose(diagonal[: post.offset], 1.0 / post.other_prior)


def test_the_evidence_tunes_alpha_on_every_weight_for_a_last_layer_posterior():
    """The last-layer evidence gives the hidden weights no Occam factor, so
    MacKay's updates on it had let alpha drift down (0.13-0.25 where the
    whole network's evidence gives 9.6 on a 3-class task; test log loss
    0.76 against 0.51). Alpha is tuned on the Kronecker posterior of every
    weight, exactly as that fit tunes it, and the last layer's posterior is
    built at the kept MAP; its evidence's slope is MacKay's at that MAP."""
    X, y = _data(3)
    params = dict(
        activation="tanh",  # the reference's features
        alpha="evidence",
        bias_prior_precision=BIAS,
        prior_precision_scale=1.0,
        random_state=0,
    )
    last = LaplaceMLPClassifier(
        (4,), subset_of_weights="last_layer", hessian_structure="full", **params
    ).fit(X, y)
    every = LaplaceMLPClassifier((4,), hessian_structure="kron", **params).fit(X, y)
    assert last.alpha_history_ == every.alpha_history_
    for a, b in zip(last.coefs_, every.coefs_):
        np.testing.assert_array_equal(a, b)
    assert isinstance(last.posterior_, LastLayerPosterior)
    assert last.posterior_.inner.structure == "full"
    np.testing.assert_allclose(
        last.log_marginal_likelihood_,
        _reference_log_evidence(last, X, y, last.alpha_),
        rtol=1e-9,
    )
    step = 1e-4

    def slope(a):
        up = last.log_marginal_likelihood(alpha=a * np.exp(step))
        down = last.log_marginal_likelihood(alpha=a * np.exp(-step))
        return (up - down) / (2 * step)

    # d log Z / d log alpha = (gamma - alpha ||w||^2) / 2 at this MAP, with
    # the last-layer posterior's gamma (the hidden weights count 0).
    norm = sum(float(np.sum(c**2)) for c in last.coefs_)
    expected = 0.5 * (last.effective_n_parameters_[0] - last.alpha_ * norm)
    np.testing.assert_allclose(slope(last.alpha_), expected, rtol=1e-5, atol=1e-5)


def test_without_hidden_layers_the_last_layer_is_all_of_it():
    X, y = _data(3)
    clf = LaplaceMLPClassifier(
        (), subset_of_weights="last_layer", prior_precision_scale=1.0
    ).fit(X, y)
    assert clf.subset_of_weights_ == "all"
    assert clf.posterior_.structure == "full"


def test_last_layer_pickles_and_refuses_pruning():
    clf, X, _ = _fit(3, "full")
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="subset_of_weights='all'"):
        prune(clf, 0.5)


@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_factored_and_dense_jacobians_agree_for_the_last_layer(structure):
    from sklaplace._jacobian import logit_factors
    from sklaplace._predictive import logit_jacobians

    clf, X, _ = _fit(3, structure)
    layout, theta = clf._layout(), clf._layout().pack(np, clf.coefs_, clf.intercepts_)
    (_, J), *_ = logit_jacobians(np, layout, theta, "tanh", X[:8])
    (_, F), *_ = logit_factors(np, layout, theta, "tanh", X[:8])
    np.testing.assert_allclose(
        clf.posterior_.functional_variance(np, F),
        clf.posterior_.functional_variance(np, J),
        rtol=1e-10,
        atol=1e-14,
    )


def test_flat_bias_prior_leaves_the_hidden_biases_out_of_the_evidence():
    """With ``bias_prior_precision=0`` the evidence is still the regression's.

    The hidden biases then have no prior: neither their (improper) density
    nor a ``log 0`` enters ``log det P``. The reference is the binary
    regression's Laplace evidence on the features, with the last layer's
    proper prior (its weights) only.
    """
    X, y = _data(2)
    clf = LaplaceMLPClassifier(
        (5,),
        activation="tanh",  # the reference's features
        alpha=ALPHA,
        bias_prior_precision=0.0,
        hessian_structure="full",
        subset_of_weights="last_layer",
        prior_precision_scale=1.0,
        tol=1e-9,
        random_state=0,
    ).fit(X, y)
    expected = _reference_log_evidence(clf, X, y, bias=0.0)
    np.testing.assert_allclose(clf.log_marginal_likelihood_, expected, rtol=1e-9)


def test_two_hidden_layers_use_the_last_hidden_layers_features():
    """The features are the last hidden layer's, not the first's.

    With hidden layers (5, 4) the posterior precision is the Hessian of the
    regression on ``tanh(tanh(X W1 + b1) W2 + b2)``, computed here by hand.
    """
    X, y = _data(3)
    clf = LaplaceMLPClassifier(
        (5, 4),
        activation="tanh",  # the features computed by hand below
        alpha=ALPHA,
        bias_prior_precision=BIAS,
        subset_of_weights="last_layer",
        prior_precision_scale=1.0,
        random_state=0,
    ).fit(X, y)
    (W1, W2, W3), (b1, b2, b3) = clf.coefs_, clf.intercepts_
    features = np.tanh(np.tanh(X @ W1 + b1) @ W2 + b2)
    P = _regression_precision(features, W3, b3)
    L = clf.posterior_.inner.cholesky_factor
    np.testing.assert_allclose(L @ L.T, P, rtol=1e-8, atol=1e-8)


def test_covariance_diagonal_is_the_prior_variance_before_the_last_layer():
    """``1 / A_i`` before the last layer (``inf`` for a flat prior, silently)
    and the last layer's own variances after it."""
    prior = np.array([4.0, 0.0, 0.5])
    post = LastLayerPosterior(DiagPosterior(np.array([2.0, 8.0])), prior)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        diagonal = post.covariance_diagonal(np)
    np.testing.assert_array_equal(diagonal, [0.25, np.inf, 2.0, 0.5, 0.125])


@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_the_last_layers_exact_hessian_is_its_ggn_in_every_structure(structure):
    # The logits are linear in the last layer's weights: hessian="exact"
    # gives the GGN's posterior, reported as exact, with no fallback warning
    # (kron had warned that its factorisation exists for the GGN only).
    X, y = _data(3)
    params = dict(
        hidden_layer_sizes=(4,),
        subset_of_weights="last_layer",
        hessian_structure=structure,
        alpha=1.0,
        prior_precision_scale=1.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = LaplaceMLPClassifier(hessian="exact", **params).fit(X, y)
    ggn = LaplaceMLPClassifier(hessian="ggn", **params).fit(X, y)
    assert exact.curvature_ == "exact" and ggn.curvature_ == "ggn"
    np.testing.assert_array_equal(exact.predict_proba(X), ggn.predict_proba(X))
    assert exact.log_marginal_likelihood_ == ggn.log_marginal_likelihood_


def test_a_jittered_last_layer_reports_its_jitter():
    """A last layer whose precision is singular reports the jitter it got.

    Four rows, six tanh units: the last layer's input factor ``phi' phi``
    (7 x 7 with the bias) has rank 4, and with a flat prior on the last
    layer its Kronecker block needs a jitter. The wrapper's ``jitter`` is
    the one ``laplace_posterior`` reports (what becomes
    ``posterior_jitter_``), positive; a wrapper that reported 0.0 whatever
    its posterior (as the no-jitter test alone allows) fails here.
    """
    obj, theta = make_problem("tanh", 3, hidden=(6,), n_samples=4)
    prior = np.array(obj.prior_precision, dtype=float)
    n_last = (6 + 1) * 3
    prior[-n_last:] = 0.0
    flat = rebuilt(obj, prior_precision=prior)
    with pytest.warns(LaplaceApproximationWarning, match="added a jitter"):
        post, _, jitter = laplace_posterior(flat, theta, "ggn", "kron", "last_layer")
    assert isinstance(post, LastLayerPosterior) and post.offset == prior.size - n_last
    assert jitter > 0
    assert post.jitter == jitter


def test_the_last_layers_pivot_ratio_is_its_posteriors():
    """``pivot_ratio`` is the last layer's posterior's.

    ``min L_ii^2 / max P_ii`` of the last layer's precision, from NumPy's
    Cholesky factor here. The precision is nearly
    singular (two columns of ``B`` almost equal), so the ratio is ~1e-9,
    far from 1 (what a wrapper that ignored its posterior would report);
    the earlier parameters' prior plays no part.
    """
    rng = np.random.RandomState(0)
    B = rng.normal(size=(6, 4))
    B[:, 3] = B[:, 2] + 1e-4 * rng.normal(size=6)
    P = B.T @ B
    L = np.linalg.cholesky(P)
    expected = np.min(np.diag(L) ** 2) / np.max(np.diag(P))
    assert expected < 1e-6
    post = LastLayerPosterior(
        FullPosterior.from_precision(np, P), np.array([1e-9, 5.0])
    )
    assert post.pivot_ratio() == pytest.approx(expected, rel=1e-6)


def test_a_last_layer_posterior_without_jitter_reports_zero():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    for structure in ("full", "diag"):
        clf = LaplaceMLPClassifier(
            (4,),
            subset_of_weights="last_layer",
            hessian_structure=structure,
            prior_precision_scale=1.0,
            random_state=0,
        ).fit(X, y)
        assert clf.posterior_jitter_ == 0.0
        assert clf.posterior_.jitter == 0.0


@pytest.mark.parametrize("structure", ["full", "diag", "kron"])
def test_the_memory_budget_reaches_the_last_layers_row_chunks(monkeypatch, structure):
    """The last layer's objective keeps the network's ``memory_budget``.

    Its curvature is summed over row chunks sized by that budget; every
    chunking gives the same posterior, so only the chunks themselves tell
    a budget dropped on the way (the default's): one row each under a
    one-byte budget, all 10 rows in one chunk under the default.
    """
    from sklaplace._posterior import laplace_posterior

    sizes = record_row_chunks(monkeypatch)
    small, theta = make_problem("tanh", 3, hidden=(4,), n_samples=10, memory_budget=1)
    post, _, _ = laplace_posterior(small, theta, "ggn", structure, "last_layer")
    assert isinstance(post, LastLayerPosterior)
    assert sizes and set(sizes) == {1} and sum(sizes) % 10 == 0
    sizes.clear()
    default, theta = make_problem("tanh", 3, hidden=(4,), n_samples=10)
    laplace_posterior(default, theta, "ggn", structure, "last_layer")
    assert sizes and set(sizes) == {10}


def test_a_last_layer_kron_posterior_transforms_each_jacobian_once_for_all_scales(
    monkeypatch,
):
    """A Kronecker last layer serves every prior scale from one transform of ``J``.

    The held-out choice evaluates ``J P(c)^{-1} J'`` at up to 49 scales on
    the same ``J``; the Kronecker blocks cache ``J``'s transform to their
    eigenbasis by the identity of ``J``, so the last-layer wrapper must hand
    them ``J`` itself (a fresh slice of the dense ``J``, or a dense copy of
    the factored one, is a new object at every call: one transform per
    scale), and the factored one must keep one last-layer object (a new
    one per ``last_layer()`` call is freed after each use). Counted here
    over three scales, dense and factored, with each scale's variances
    checked against the dense covariance: the unscaled posterior's, from its
    blocks' eigenbases, with the prior's change added to its inverse.
    """
    from sklaplace._jacobian import logit_factors
    from sklaplace._kron import KronBlock
    from sklaplace._posterior import laplace_posterior
    from sklaplace._predictive import logit_jacobians

    obj, theta = make_problem("tanh", 3, hidden=(4,), n_samples=12)
    post, _, _ = laplace_posterior(obj, theta, "ggn", "kron", "last_layer")
    assert post.inner.structure == "kron"
    prior, offset = np.asarray(obj.prior_precision), post.offset
    (_, J), *_ = logit_jacobians(np, obj.layout, theta, "tanh", obj.X[:6])
    (_, F), *_ = logit_factors(np, obj.layout, theta, "tanh", obj.X[:6])
    assert F.last_layer() is F.last_layer()
    # P(1)^{-1} per block: (S kron V) diag(1/E) (S kron V)'.
    unscaled = block_diag(
        *[
            (T := np.kron(block.S, block.V))
            @ np.diag(1.0 / block.eigenvalues().ravel())
            @ T.T
            for block in post.inner.blocks
        ]
    )
    calls, dense_calls = [], []
    cached, transformed = KronBlock._cached, KronBlock._transformed

    def counted(self, jacobian, transform):
        def counted_transform():
            calls.append(jacobian)
            return transform()

        return cached(self, jacobian, counted_transform)

    def counted_dense(self, xp, Jb):
        dense_calls.append(Jb.shape)
        return transformed(self, xp, Jb)

    monkeypatch.setattr(KronBlock, "_cached", counted)
    monkeypatch.setattr(KronBlock, "_transformed", counted_dense)
    for jacobian, dense_transforms in ((J, 1), (F, 0)):  # factored: no dense step
        calls.clear()
        dense_calls.clear()
        for scale in (1.0, 3.0, 0.1):
            scaled = post.with_prior_change(np, (scale - 1.0) * prior)
            change = np.diag((scale - 1.0) * prior[offset:])
            covariance = np.linalg.inv(np.linalg.inv(unscaled) + change)
            J_last = J[:, :, offset:]
            np.testing.assert_allclose(
                scaled.functional_variance(np, jacobian),
                J_last @ covariance @ np.swapaxes(J_last, 1, 2),
                rtol=1e-9,
                atol=1e-12,
            )
        assert len(calls) == len(post.inner.blocks)  # once, at the first scale
        assert len(dense_calls) == dense_transforms


def test_a_negative_zero_prior_before_the_last_layer_has_infinite_variance():
    """``-0.0`` is a flat prior too: its variance is ``+inf``, not ``-inf``.

    ``bias_prior_precision=-0.0`` passes the estimator's check (``>= 0``) and
    reaches ``other_prior`` as ``-0.0``; ``1 / -0.0`` is ``-inf``, so the
    flat entries must be chosen by ``A > 0``, not by ``A >= 0``.
    """
    prior = np.array([4.0, -0.0, 0.5])
    post = LastLayerPosterior(DiagPosterior(np.array([2.0, 8.0])), prior)
    with np.errstate(all="raise"):
        diagonal = post.covariance_diagonal(np)
    np.testing.assert_array_equal(diagonal, [0.25, np.inf, 2.0, 0.5, 0.125])
