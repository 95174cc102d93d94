"""Metamorphic relations: two fits or two predictions that must agree.

Each test changes the problem in a way whose effect on the answer is known
whatever the answer is (a relabelling, a reparameterisation, a common scale
of the data and the prior, a split of the rows predicted) and checks that
effect. Exact relations need a unique optimum: no hidden layer (a convex
problem) or, with hidden layers, a warm start from the transformed MAP
(``n_iter_ == 0`` then says the solver agreed it is the mode). Hyper-
parameters are fixed (``alpha``, ``prior_precision_scale``) unless the test
is about their tuning: held-out folds and validation rows are chosen by a
hash of each row's features and label index, which these changes move by
design. Row order, duplicated rows and sample weights as counts are
``test_reliability_properties.py``'s.
"""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.datasets import make_classification

import sklaplace._memory as _memory
from sklaplace import (
    LaplaceMLPClassifier,
    log_posterior,
    log_posterior_grad,
    log_posterior_hessian,
    prune,
    saliencies,
)
from sklaplace._testing import dense_ggn, mlp_logits, numerical_derivative

# A tight Newton MAP: relations then hold to ~1e-10, far below the 1e-2 to
# 1e-1 that a wrong answer moves a probability by on these problems.
FIXED = dict(
    hidden_layer_sizes=(),
    alpha=1.0,
    bias_prior_precision=0.1,
    prior_precision_scale=1.0,
    residual_variance=0.0,
    solver="newton",
    tol=1e-10,
    random_state=0,
)
STRUCTURES = ["full", "diag", "kron"]


def _data(n_classes, n_features=4, seed=0):
    X, y = make_classification(
        n_samples=60,
        n_features=n_features,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    X_test = 2.0 * np.random.RandomState(seed + 1).normal(size=(20, n_features))
    return X, y, X_test


def _fit(X, y, sample_weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LaplaceMLPClassifier(**{**FIXED, **params}).fit(
            X, y, sample_weight=sample_weight
        )


def _theta(clf):
    return np.concatenate(
        [np.r_[W.ravel(), b] for W, b in zip(clf.coefs_, clf.intercepts_)]
    )


def _warm_refit(clf, X, y, coefs, intercepts):
    """Refit a copy of ``clf`` from the given weights (its MAP, transformed)."""
    moved = copy.deepcopy(clf).set_params(warm_start=True)
    moved.coefs_, moved.intercepts_ = coefs, intercepts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return moved.fit(X, y)


def _assert_same_model(one, X_one, other, X_other):
    """The same probabilities on corresponding rows, and the same evidence."""
    np.testing.assert_allclose(
        one.predict_proba(X_one), other.predict_proba(X_other), atol=1e-8
    )
    np.testing.assert_allclose(
        one.log_marginal_likelihood_, other.log_marginal_likelihood_, atol=1e-7
    )


# --- relabelling the classes ---------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize(
    "tuning",
    [
        {},
        {"alpha": "evidence", "prior_precision_scale": "evidence"},
        {"prior_precision_scale": "cv"},
        {"prior_precision_scale": "validation"},
        {"alpha": "validation"},
    ],
)
def test_relabelling_the_classes_permutes_the_probability_columns(
    n_classes, structure, tuning
):
    """Renaming the classes permutes the probability columns.

    Class values are names: a permutation of them (as strings, in another
    sort order) permutes ``classes_`` and the columns of ``predict_proba``
    and leaves the evidence alone (binary: the single logit changes sign,
    ``p -> 1 - p``). Pins that no class is a reference class anywhere: the
    prior on the output units, the centring of the probit, the evidence
    tuning of alpha and of the prior scale, and the held-out rows of the
    folds and the validation split (hashed on the features: the class's
    index in ``classes_`` had moved rows between folds, and the chosen
    scale with them).
    """
    X, y, X_test = _data(n_classes)
    names = np.array(["zeta", "alpha", "mu"])[:n_classes]  # sorted: 1, 2, 0 / 1, 0
    base = _fit(X, y, hessian_structure=structure, **tuning)
    renamed = _fit(X, names[y], hessian_structure=structure, **tuning)
    column = [list(renamed.classes_).index(name) for name in names]
    for link in ["probit", "map"]:
        base.set_params(link_approx=link)
        renamed.set_params(link_approx=link)
        np.testing.assert_allclose(
            renamed.predict_proba(X_test)[:, column],
            base.predict_proba(X_test),
            atol=1e-8,
        )
        np.testing.assert_array_equal(
            renamed.predict(X_test), names[base.predict(X_test)]
        )
    np.testing.assert_allclose(
        renamed.log_marginal_likelihood_, base.log_marginal_likelihood_, atol=1e-7
    )
    np.testing.assert_allclose(renamed.alpha_, base.alpha_, rtol=1e-6)
    np.testing.assert_allclose(
        renamed.prior_precision_scale_, base.prior_precision_scale_, rtol=1e-12
    )


@pytest.mark.parametrize(
    "n_classes, link",
    [(2, "probit"), (2, "mc"), (2, "map"), (3, "probit"), (3, "map")],
)
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_relabelling_the_classes_of_a_hidden_network_is_an_exact_symmetry(
    n_classes, link, structure, subset
):
    """Relabelling the classes of a hidden network is an exact symmetry.

    With a hidden layer the relabelled problem's MAP is the old one with the
    last layer's columns permuted (binary: negated; the prior is even):
    started there, the solver stays (no iteration) and the probability
    columns are permuted (binary: ``p -> 1 - p``, Monte Carlo's antithetic
    draws included), the decision function too, and the evidence and the
    residual's variance (a spread of centred logits) are unchanged. (Monte
    Carlo with K logits draws per logit position: equal only in law.)
    """
    X, y, X_test = _data(n_classes)
    base = _fit(
        X,
        y,
        hidden_layer_sizes=(3,),
        activation="tanh",
        hessian_structure=structure,
        subset_of_weights=subset,
        link_approx=link,
        n_mc_samples=101,
        residual_variance="auto",
    )
    W, b = base.coefs_[-1], base.intercepts_[-1]
    if n_classes == 2:
        new_label, last = np.array([1, 0]), (-W, -b)
    else:
        new_label = np.array([2, 0, 1])  # old class j is called new_label[j]
        old = np.argsort(new_label)  # new class i was old class old[i]
        last = (W[:, old], b[old])
    moved = _warm_refit(
        base,
        X,
        new_label[y],
        base.coefs_[:-1] + [last[0]],
        base.intercepts_[:-1] + [last[1]],
    )
    assert moved.n_iter_ == 0
    np.testing.assert_allclose(
        moved.predict_proba(X_test)[:, new_label],
        base.predict_proba(X_test),
        atol=1e-12,
    )
    scores, moved_scores = (
        base.decision_function(X_test),
        moved.decision_function(X_test),
    )
    if n_classes == 2:
        np.testing.assert_allclose(moved_scores, -scores, atol=1e-10)
    else:
        np.testing.assert_allclose(moved_scores[:, new_label], scores, atol=1e-10)
    assert moved.residual_variance_ == pytest.approx(base.residual_variance_, rel=1e-12)
    np.testing.assert_allclose(
        moved.log_marginal_likelihood_, base.log_marginal_likelihood_, atol=1e-10
    )


# --- permutations of features and hidden units ----------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_permuting_the_features_changes_nothing_without_a_hidden_layer(
    n_classes, structure
):
    """Permuted features change nothing without a hidden layer.

    Logistic regression's columns have no order: fitted and predicted on
    permuted features, probabilities (with the residual's standardised
    distance switched on), evidence and the permuted weights agree. Pins the
    per-feature bookkeeping (Kronecker input factor, data envelope).
    """
    X, y, X_test = _data(n_classes)
    order = np.array([2, 0, 3, 1])
    params = dict(hessian_structure=structure, residual_variance=1.0)
    base = _fit(X, y, **params)
    permuted = _fit(X[:, order], y, **params)
    np.testing.assert_allclose(permuted.coefs_[0], base.coefs_[0][order], atol=1e-8)
    _assert_same_model(permuted, 3.0 * X_test[:, order], base, 3.0 * X_test)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_permuting_hidden_units_and_input_rows_is_an_exact_symmetry(
    n_classes, structure, subset
):
    """Permuting hidden units and features is an exact symmetry.

    Hidden units and input features have no order: the MAP with its hidden
    units (and its first layer's input rows, with the features) permuted is
    the permuted problem's MAP (the solver takes no step from it), and the
    posterior, the predictions, the residual and the evidence are the same.
    Pins that no curvature structure, the last-layer posterior or the
    residual depends on a unit's or a feature's position.
    """
    X, y, X_test = _data(n_classes)
    base = _fit(
        X,
        y,
        hidden_layer_sizes=(4, 3),
        activation="tanh",
        hessian_structure=structure,
        subset_of_weights=subset,
        residual_variance="auto",
    )
    features, first, second = (
        np.array([3, 1, 0, 2]),
        np.array([2, 0, 3, 1]),
        np.array([1, 2, 0]),
    )
    W, b = base.coefs_, base.intercepts_
    moved = _warm_refit(
        base,
        X[:, features],
        y,
        [W[0][features][:, first], W[1][first][:, second], W[2][second]],
        [b[0][first], b[1][second], b[2]],
    )
    assert moved.n_iter_ == 0
    np.testing.assert_allclose(
        moved.predict_proba(X_test[:, features]), base.predict_proba(X_test), atol=1e-12
    )
    assert moved.residual_variance_ == pytest.approx(base.residual_variance_, rel=1e-12)
    np.testing.assert_allclose(
        moved.log_marginal_likelihood_, base.log_marginal_likelihood_, atol=1e-10
    )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("method", ["obs", "obd", "magnitude"])
def test_saliencies_and_pruning_follow_a_permutation_of_hidden_units(n_classes, method):
    """Saliencies and pruning follow a permutation of hidden units.

    The saliency of a weight is the weight's, not its position's: with the
    hidden units permuted the saliencies are permuted, and pruning removes
    the same weights, leaving the same predictions.
    """
    X, y, _ = _data(n_classes)
    base = _fit(
        X, y, hidden_layer_sizes=(4,), activation="tanh", hessian_structure="full"
    )
    order = np.array([2, 0, 3, 1])
    W, b = base.coefs_, base.intercepts_
    moved = _warm_refit(base, X, y, [W[0][:, order], W[1][order]], [b[0][order], b[1]])
    m = W[1].shape[1]
    index = np.arange(_theta(base).size)
    permutation = np.r_[
        index[:16].reshape(4, 4)[:, order].ravel(),
        index[16:20][order],
        index[20 : 20 + 4 * m].reshape(4, m)[order].ravel(),
        index[20 + 4 * m :],
    ]
    np.testing.assert_allclose(
        saliencies(moved, method=method),
        saliencies(base, method=method)[permutation],
        rtol=1e-8,
    )
    small, small_moved = (
        prune(base, 0.5, method=method),
        prune(moved, 0.5, method=method),
    )
    np.testing.assert_array_equal(
        small_moved.pruned_mask_, small.pruned_mask_[permutation]
    )
    np.testing.assert_allclose(
        small_moved.predict_proba(X), small.predict_proba(X), atol=1e-12
    )


# --- the data and the prior scaled together -------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("subset", ["all", "last_layer"])
@pytest.mark.parametrize("c", [1e-3, 1e3])
def test_scaling_sample_weights_and_prior_together_scales_the_posterior(
    n_classes, structure, subset, c
):
    """Weights and prior scaled by c: same MAP, precision times c.

    ``s -> c s`` with ``A -> c A`` multiplies the MAP objective by ``c``:
    the MAP, its solver path and ``loss_`` are unchanged, the posterior
    precision is ``c`` times the old one (logit covariance ``/ c``),
    ``log_likelihood_`` is ``c`` times the old one and the evidence is
    ``lml + (c - 1) (log_lik - theta'A theta / 2)`` (the ``c^W`` of the two
    determinants cancel). Pins every place that must use the weights'
    total relatively, not absolutely (tolerances, jitters, factors).
    """
    X, y, X_test = _data(n_classes)
    params = dict(
        hidden_layer_sizes=(3,),
        activation="tanh",
        hessian_structure=structure,
        subset_of_weights=subset,
    )
    base = _fit(X, y, **params)
    scaled = _fit(
        X, y, np.full(y.shape, c), **params, alpha=c, bias_prior_precision=0.1 * c
    )
    mean, cov = base.latent_mean_and_variance(X_test)
    scaled_mean, scaled_cov = scaled.latent_mean_and_variance(X_test)
    assert scaled.n_iter_ == base.n_iter_
    np.testing.assert_allclose(scaled_mean, mean, atol=1e-10)
    np.testing.assert_allclose(c * scaled_cov, cov, rtol=1e-8, atol=1e-10 * np.max(cov))
    assert scaled.loss_ == pytest.approx(base.loss_, rel=1e-10)
    assert scaled.log_likelihood_ == pytest.approx(c * base.log_likelihood_, rel=1e-10)
    log_joint = base.log_likelihood_ - 0.5 * base.prior_precision_ @ _theta(base) ** 2
    assert scaled.log_marginal_likelihood_ == pytest.approx(
        base.log_marginal_likelihood_ + (c - 1.0) * log_joint, abs=1e-7 * max(1.0, c)
    )


def test_kron_posterior_scales_with_a_small_total_weight_like_full_and_diag():
    """The relation above at a small total weight, Kronecker posterior.

    As the test above at ``c = 1e-12`` (a total weight of 6e-11 rows, inside
    the documented ``[2**-53, 2**53]``): the Kronecker input factor is an
    average over the rows and the prior is not, so the prior fell below the
    factor's round-off and a variance came out 17% off, the evidence 15 nats
    (session 36; full and diagonal posteriors held to ~1e-5). ``B = 2^k A +
    D`` keeps it to ~1e-5 too.
    """
    X, y, X_test = _data(3)
    c = 1e-12
    params = dict(hidden_layer_sizes=(3,), activation="tanh", hessian_structure="kron")
    base = _fit(X, y, **params)
    scaled = _fit(
        X, y, np.full(y.shape, c), **params, alpha=c, bias_prior_precision=0.1 * c
    )
    _, cov = base.latent_mean_and_variance(X_test)
    _, scaled_cov = scaled.latent_mean_and_variance(X_test)
    np.testing.assert_allclose(c * scaled_cov, cov, rtol=1e-3, atol=1e-3 * np.max(cov))
    log_joint = base.log_likelihood_ - 0.5 * base.prior_precision_ @ _theta(base) ** 2
    assert scaled.log_marginal_likelihood_ == pytest.approx(
        base.log_marginal_likelihood_ + (c - 1.0) * log_joint, abs=1e-3
    )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_a_last_layer_posterior_is_logistic_regression_on_the_maps_features(
    n_classes, structure, scale
):
    """A last-layer posterior is logistic regression on the MAP's features.

    ``subset_of_weights="last_layer"`` is, by definition, Bayesian logistic
    (softmax) regression on the MAP network's last hidden features, the
    other layers fixed: a model without hidden layer fitted on those features
    (started at the last layer's weights, where it takes no step) predicts
    the same probabilities (Monte Carlo included: the seed is drawn first
    from ``random_state``), and its evidence differs only by the other
    layers' ``-theta'A theta / 2`` (their posterior is their prior), at the
    fitted prior and at another ``alpha``.
    """
    X, y, X_test = _data(n_classes)
    params = dict(
        activation="tanh",
        alpha=0.7,
        bias_prior_precision=0.2,
        hessian_structure=structure,
        prior_precision_scale=scale,
        n_mc_samples=101,
    )
    deep = _fit(X, y, hidden_layer_sizes=(3,), subset_of_weights="last_layer", **params)
    features = lambda a: np.tanh(a @ deep.coefs_[0] + deep.intercepts_[0])  # noqa: E731
    shallow = _warm_refit(
        _fit(features(X), y, **params),
        features(X),
        y,
        [deep.coefs_[1].copy()],
        [deep.intercepts_[1].copy()],
    )
    assert shallow.n_iter_ == 0
    for link in ["probit", "mc"]:
        deep.set_params(link_approx=link)
        shallow.set_params(link_approx=link)
        np.testing.assert_allclose(
            shallow.predict_proba(features(X_test)),
            deep.predict_proba(X_test),
            atol=1e-12,
        )

    def first_layer_scatter(alpha):
        W, b = deep.coefs_[0], deep.intercepts_[0]
        return 0.5 * (alpha * np.sum(W**2) + 0.2 * np.sum(b**2))

    assert deep.log_marginal_likelihood_ == pytest.approx(
        shallow.log_marginal_likelihood_ - first_layer_scatter(0.7), abs=1e-10
    )
    assert deep.log_marginal_likelihood(alpha=2.0) == pytest.approx(
        shallow.log_marginal_likelihood(alpha=2.0) - first_layer_scatter(2.0), abs=1e-10
    )


# --- reparameterisations of the inputs (no hidden layer: convex) ----------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_an_all_zero_feature_changes_nothing_and_prunes_away(n_classes, structure):
    """An all-zero feature changes nothing, and prunes away.

    A feature that is 0 on every row gives its weights no data: their MAP
    is 0 and their posterior is their prior, which cancels from the evidence
    (``log alpha - log alpha``), and on test rows where it is also 0 no
    prediction changes; pruning exactly those weights changes nothing either,
    and a warm refit after it has the evidence of the unpruned fit.
    """
    X, y, X_test = _data(n_classes)
    zero = lambda a: np.c_[a, np.zeros(len(a))]  # noqa: E731
    base = _fit(X, y, hessian_structure=structure, alpha=2.5)  # log alpha != 0
    wider = _fit(zero(X), y, hessian_structure=structure, alpha=2.5)
    np.testing.assert_allclose(wider.coefs_[0][-1], 0.0, atol=1e-10)
    _assert_same_model(wider, zero(X_test), base, X_test)
    if structure == "kron":
        return  # a pruned network refits full or diagonal posteriors only
    n_outputs = wider.coefs_[0].shape[1]
    for method in ["obs", "obd", "magnitude"]:
        small = prune(wider, n_outputs / wider.coefs_[0].size, method=method)
        assert (
            np.all(small.coefs_[0][-1] == 0)
            and small.pruned_mask_[4 * n_outputs : 5 * n_outputs].all()
        )
        np.testing.assert_allclose(
            small.predict_proba(zero(X_test)),
            wider.predict_proba(zero(X_test)),
            atol=1e-12,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = small.set_params(warm_start=True).fit(zero(X), y)
        np.testing.assert_allclose(
            again.log_marginal_likelihood_, wider.log_marginal_likelihood_, atol=1e-9
        )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", ["full", "kron"])
def test_a_duplicated_feature_is_the_feature_under_half_its_prior(n_classes, structure):
    """A duplicated feature is the feature under half its prior.

    Two copies of a feature, each weight under ``N(0, 1/alpha)``, act as one
    weight (their sum) under ``N(0, 2/alpha)``; the difference is pinned by
    its prior alone and invisible to rows with equal copies. So the model is
    the one-copy model with a per-parameter alpha halved on that feature:
    equal predictions and evidence. (A diagonal posterior drops the copies'
    perfect correlation: the relation does not hold for it, by design.)
    """
    X, y, X_test = _data(n_classes)
    n_outputs = 1 if n_classes == 2 else n_classes
    twice = lambda a: np.c_[a, a[:, 0]]  # noqa: E731
    doubled = _fit(twice(X), y, hessian_structure=structure)
    weights = np.ones((4, n_outputs))
    weights[0] = 0.5
    alpha = np.r_[weights.ravel(), np.full(n_outputs, 0.1)]  # per parameter, biases too
    halved = _fit(X, y, hessian_structure=structure, alpha=alpha)
    _assert_same_model(doubled, twice(X_test), halved, X_test)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_a_rescaled_feature_under_a_rescaled_prior_is_the_same_model(
    n_classes, structure
):
    """A rescaled feature under a rescaled prior is the same model.

    ``x_j -> s x_j`` with that feature's weights' precision ``alpha -> s^2
    alpha`` is the substitution ``w -> w / s``: the same predictive (the
    residual's distance standardises features, so it is unchanged too) and,
    the Jacobian's ``s^-2`` per weight cancelling between the two log
    determinants, the same evidence.
    """
    X, y, X_test = _data(n_classes)
    n_outputs = 1 if n_classes == 2 else n_classes
    s = 10.0
    stretch = lambda a: a * np.array([1.0, s, 1.0, 1.0])  # noqa: E731
    weights = np.ones((4, n_outputs))
    weights[1] = s**2
    alpha = np.r_[weights.ravel(), np.full(n_outputs, 0.1)]
    params = dict(hessian_structure=structure, residual_variance=1.0)
    base = _fit(X, y, **params)
    stretched = _fit(stretch(X), y, **params, alpha=alpha)
    _assert_same_model(stretched, stretch(3.0 * X_test), base, 3.0 * X_test)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", ["full", "kron"])
def test_translating_the_features_under_a_flat_bias_prior_is_the_same_model(
    n_classes, structure
):
    """Translated features under a flat bias prior: the same model.

    ``x -> x + t`` with a flat bias prior is the substitution ``b -> b - t W``
    (unit Jacobian, the prior on ``W`` untouched): same predictive (the
    residual's envelope is centred, so translation-free too) and same
    evidence. (A diagonal posterior is not invariant under this shear.)
    """
    X, y, X_test = _data(n_classes)
    t = np.array([3.0, -2.0, 0.5, 1.0])
    params = dict(
        hessian_structure=structure, bias_prior_precision=0.0, residual_variance=1.0
    )
    base = _fit(X, y, **params)
    moved = _fit(X + t, y, **params)
    _assert_same_model(moved, 3.0 * X_test + t, base, 3.0 * X_test)


# --- one model, predictions asked for in different ways --------------------------


@pytest.mark.parametrize("hidden", [(), (5,)])
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_a_rows_prediction_does_not_depend_on_the_other_rows(
    hidden, structure, subset, monkeypatch
):
    """A row's prediction does not depend on the other rows.

    Every link's prediction of a row is a function of that row: single
    rows, a subset, and chunks of one row (a memory budget of 1 byte) give
    the rows of the full batch. Also, for every link, ``predict`` is the
    argmax of ``predict_proba``, ``predict_log_proba`` its log and
    ``predict_proba`` the softmax (sigmoid) of ``decision_function``.
    """
    X, y, _ = _data(3)
    X_test = 3.0 * np.random.RandomState(5).normal(size=(12, 4))
    clf = _fit(
        X,
        y,
        hidden_layer_sizes=hidden,
        activation="tanh",
        hessian_structure=structure,
        subset_of_weights=subset,
        residual_variance="auto",
        n_mc_samples=101,
    )
    for link in ["probit", "mc", "map"]:
        clf.set_params(link_approx=link)
        proba = clf.predict_proba(X_test)
        single = np.vstack([clf.predict_proba(X_test[i : i + 1]) for i in range(12)])
        np.testing.assert_allclose(single, proba, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            clf.predict_proba(X_test[3:7]), proba[3:7], rtol=1e-12
        )
        with monkeypatch.context() as patch:
            patch.setattr(_memory, "DEFAULT_MEMORY_BUDGET", 1)
            np.testing.assert_allclose(
                clf.predict_proba(X_test), proba, rtol=1e-12, atol=1e-15
            )
        np.testing.assert_array_equal(
            clf.predict(X_test), clf.classes_[np.argmax(proba, axis=1)]
        )
        np.testing.assert_allclose(
            np.exp(clf.predict_log_proba(X_test)), proba, rtol=1e-12
        )
        scores = clf.decision_function(X_test)
        softmax = np.exp(scores - scores.max(axis=1, keepdims=True))
        np.testing.assert_allclose(
            softmax / softmax.sum(axis=1, keepdims=True), proba, rtol=1e-12
        )


@pytest.mark.parametrize("structure", ["full", "kron"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_a_weak_priors_rows_do_not_depend_on_the_other_rows(structure, subset):
    """Under a prior of precision 1e-12 (``alpha`` and the scale 1e-6) the
    posterior's variance along the logits' common shift is 1e12, which a
    softmax ignores. Its round-off had swamped the variance that counts
    (0.27 of 3.6e12, session 60's fuzzing): a row's probabilities moved
    by 1e-5 (probit) to 5e-5 (Monte Carlo) with the rows predicted beside
    it. Centred before the square, they are the batch's to round-off: up
    to 3.3e-13 (NumPy 2.0's BLAS, the last layer's full posterior; 4e-14
    with NumPy 2.4), against 7.4e-12 to 4.3e-5 before."""
    X, y, _ = _data(3)
    X_test = np.random.RandomState(5).normal(size=(6, 4))
    clf = _fit(
        X,
        y,
        hidden_layer_sizes=(8,),
        activation="softplus",
        alpha=1e-6,
        bias_prior_precision=1e4,
        prior_precision_scale=1e-6,
        hessian_structure=structure,
        subset_of_weights=subset,
        solver="lbfgs",
        max_iter=30,
        n_mc_samples=51,
    )
    for link in ["probit", "mc"]:
        clf.set_params(link_approx=link)
        proba = clf.predict_proba(X_test)
        single = np.vstack([clf.predict_proba(X_test[i : i + 1]) for i in range(6)])
        np.testing.assert_allclose(single, proba, rtol=0, atol=2e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_one_monte_carlo_draw_is_the_plug_in_map(n_classes):
    """One Monte Carlo draw is the plug-in MAP.

    An odd draw count adds a draw of 0 (the mean): with one draw the
    Monte Carlo predictive is exactly the plug-in MAP's.
    """
    X, y, X_test = _data(n_classes)
    clf = _fit(
        X, y, hidden_layer_sizes=(3,), activation="tanh", residual_variance="auto"
    )
    mc = clf.set_params(link_approx="mc", n_mc_samples=1).predict_proba(3.0 * X_test)
    plug_in = clf.set_params(link_approx="map").predict_proba(3.0 * X_test)
    np.testing.assert_allclose(mc, plug_in, rtol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_container_of_x_does_not_change_the_fit(n_classes):
    """The container of X does not change the fit.

    float32 (against its exact float64 values), Fortran order, a DataFrame
    and CSR / CSC matrices hold the same numbers: the same fit and the same
    predictions, to round-off.
    """
    X, y, X_test = _data(n_classes)
    X = X.astype(np.float32).astype(np.float64)  # exactly representable in float32
    params = dict(hidden_layer_sizes=(3,), activation="tanh", residual_variance="auto")
    base = _fit(X, y, **params)
    proba = base.predict_proba(X_test)
    for container in [
        X.astype(np.float32),
        np.asfortranarray(X),
        pd.DataFrame(X),
        scipy.sparse.csr_matrix(X),
        scipy.sparse.csc_matrix(X),
    ]:
        other = _fit(container, y, **params)
        np.testing.assert_allclose(
            other.predict_proba(X_test), proba, rtol=1e-12, atol=1e-15
        )
        assert other.log_marginal_likelihood_ == pytest.approx(
            base.log_marginal_likelihood_, rel=1e-13
        )
    np.testing.assert_allclose(
        base.predict_proba(X_test.astype(np.float32)),
        base.predict_proba(X_test.astype(np.float32).astype(np.float64)),
        rtol=1e-15,
    )


# --- the functional API and the evidence at another prior -----------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("hessian", ["ggn", "exact"])
@pytest.mark.parametrize("structure", ["full", "diag"])
@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_the_functional_api_gives_the_estimators_posterior(
    n_classes, hessian, structure, scale
):
    """The functional API gives the estimator's posterior.

    At the fitted MAP the functional API's gradient vanishes, its value is
    ``log_likelihood_ - theta'A theta / 2``, and the posterior precision is
    its data Hessian (prior 0) plus ``prior_precision_scale_`` times the
    prior (its diagonal for ``"diag"``); both agree with references of
    their own.
    """
    X, y, _ = _data(n_classes)
    clf = _fit(
        X,
        y,
        hidden_layer_sizes=(3,),
        activation="softplus",
        hessian=hessian,
        hessian_structure=structure,
        prior_precision_scale=scale,
    )
    index = np.searchsorted(clf.classes_, y)
    prior = dict(activation="softplus", alpha=1.0, bias_prior_precision=0.1)
    theta = _theta(clf)
    A = _prior_by_hand([4, 3, 1 if n_classes == 2 else n_classes])  # written out
    value = log_posterior(clf.coefs_, clf.intercepts_, X, index, **prior)
    assert float(value) == pytest.approx(
        clf.log_likelihood_ - 0.5 * A @ theta**2, rel=1e-12
    )
    gradient = log_posterior_grad(clf.coefs_, clf.intercepts_, X, index, **prior)
    assert np.max(np.abs(gradient)) < 1e-8 * y.size
    kind = hessian if structure == "full" else f"{hessian}_diag"
    data = -np.asarray(
        log_posterior_hessian(
            clf.coefs_,
            clf.intercepts_,
            X,
            index,
            kind=kind,
            activation="softplus",
            alpha=0.0,
            bias_prior_precision=0.0,
        )
    )
    if structure == "full":
        L = clf.posterior_.cholesky_factor
        expected, actual = data + scale * np.diag(A), L @ L.T
    else:
        expected, actual = data + scale * A, clf.posterior_.precision
    np.testing.assert_allclose(
        actual, expected, rtol=1e-10, atol=1e-12 * np.max(expected)
    )
    # And the posterior against references of its own: dense_ggn (GGN) or
    # second differences of a log likelihood on mlp_logits (exact). The GGN's
    # data term doubled, the exact diagonal's residual term halved, or the
    # weights' and biases' priors swapped fail this part (the functional
    # API's, which shares the curvature code, had passed all three).
    sizes = [4, 3, 1 if n_classes == 2 else n_classes]

    def negative_log_likelihood(t):
        f = mlp_logits(t, X, sizes, "softplus")
        if f.shape[1] == 1:
            return -np.sum(index * f[:, 0] - np.logaddexp(0.0, f[:, 0]))
        return -np.sum(f[np.arange(len(y)), index] - np.logaddexp.reduce(f, axis=1))

    if hessian == "ggn":
        data = dense_ggn(theta, X, np.ones(len(y)), np.zeros_like(A), sizes, "softplus")
    else:

        def gradient(t):
            return numerical_derivative(negative_log_likelihood, t, h=1e-3)

        data = numerical_derivative(gradient, theta, h=1e-3)
        data = 0.5 * (data + data.T)
    expected = data + scale * np.diag(A)
    if structure == "full":
        L = clf.posterior_.cholesky_factor
        actual = L @ L.T
    else:
        expected, actual = np.diag(expected), clf.posterior_.precision
    # Second differences with h = 1e-3: good to about 1e-6 of the largest entry.
    np.testing.assert_allclose(
        actual, expected, rtol=1e-6, atol=1e-7 * np.max(np.abs(expected))
    )


def _prior_by_hand(sizes, alpha=1.0, bias=0.1):
    """The prior precision vector in the documented layout, written out."""
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        parts += [np.full(fan_in * fan_out, alpha), np.full(fan_out, bias)]
    return np.concatenate(parts)


@pytest.mark.parametrize(
    "hidden, subset", [((), "all"), ((3,), "all"), ((3,), "last_layer")]
)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_the_evidence_at_another_prior_does_not_depend_on_the_prior_scale(
    hidden, structure, subset
):
    """The evidence at another prior ignores the posterior's prior scale.

    The MAP and the data curvature do not depend on
    ``prior_precision_scale``, so neither does the evidence at any other
    prior (``log_marginal_likelihood(alpha=...)``), although one posterior
    holds ``P_data + A`` and the other ``P_data + 5 A``; and it is continuous
    into the stored value at the fitted prior (a different code path).
    """
    X, y, _ = _data(3)
    params = dict(
        hidden_layer_sizes=hidden,
        activation="tanh",
        hessian_structure=structure,
        subset_of_weights=subset,
    )
    one, five = _fit(X, y, **params), _fit(X, y, **params, prior_precision_scale=5.0)
    for alpha in [0.3, 2.0]:
        assert five.log_marginal_likelihood(alpha=alpha) == pytest.approx(
            one.log_marginal_likelihood(alpha=alpha), abs=1e-10
        )
    for clf in (one, five):
        assert clf.log_marginal_likelihood(alpha=1.0 + 1e-9) == pytest.approx(
            clf.log_marginal_likelihood_, abs=1e-7
        )
        assert clf.log_marginal_likelihood(
            bias_prior_precision=0.1 + 1e-9
        ) == pytest.approx(clf.log_marginal_likelihood_, abs=1e-7)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_one_prior_written_three_ways_is_one_fit(n_classes, structure):
    """One prior written three ways is one fit.

    A scalar alpha and bias precision, the same per layer, and the
    per-parameter vector written out in the documented layout are one
    prior: bit-for-bit one fit (the vector had been read back from the
    scalar fit's ``prior_precision_``: weights' and biases' priors swapped
    passed).
    """
    X, y, X_test = _data(n_classes)
    params = dict(
        hidden_layer_sizes=(3,), activation="tanh", hessian_structure=structure
    )
    scalar = _fit(X, y, **params, alpha=0.7, bias_prior_precision=0.2)
    layers = _fit(X, y, **params, alpha=[0.7, 0.7], bias_prior_precision=[0.2, 0.2])
    K = 1 if n_classes == 2 else n_classes
    by_hand = _prior_by_hand([4, 3, K], alpha=0.7, bias=0.2)
    vector = _fit(X, y, **params, alpha=by_hand)
    np.testing.assert_array_equal(scalar.prior_precision_, by_hand)
    for other in (layers, vector):
        np.testing.assert_array_equal(
            other.predict_proba(X_test), scalar.predict_proba(X_test)
        )
        assert other.log_marginal_likelihood_ == scalar.log_marginal_likelihood_
