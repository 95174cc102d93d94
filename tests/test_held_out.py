"""Held-out rows and folds (:mod:`sklaplace._held_out`): stable under round-off."""

import hashlib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import sklaplace._held_out
import sklaplace._laplace_fit as laplace_fit_module
import sklaplace._warnings as package_warnings
from sklaplace import LaplaceMLPClassifier
from sklaplace._held_out import (
    FOLD_TOL,
    HeldOutLosses,
    _content_hashes,
    base_rate_loss,
    content_folds,
    cv_log_losses,
    fold_follows_negative_curvature,
    validation_log_losses,
    validation_rows,
)
from sklaplace._likelihood import likelihood_for
from sklaplace._posterior import DiagPosterior, FullPosterior
from sklaplace._predictive import probit_logits
from sklaplace._prior_scale import _nearest_one
from sklaplace._testing import mlp_logits, numerical_jacobian
from sklaplace.exceptions import LaplaceApproximationWarning
from tests.conftest import make_problem


def test_folds_ignore_round_off():
    """Data equal to round-off (one ulp, a float32 copy) keep every row's fold."""
    rng = np.random.RandomState(0)
    X, y = rng.standard_normal((400, 5)), rng.randint(0, 3, 400)
    folds = content_folds(X, y, 5, seed=3)
    for same in (np.nextafter(X, np.inf), X.astype(np.float32), X * (1 + 1e-12)):
        np.testing.assert_array_equal(content_folds(same, y, 5, seed=3), folds)
        np.testing.assert_array_equal(
            validation_rows(same, y, 0.2, seed=3), validation_rows(X, y, 0.2, seed=3)
        )
    # Not blind to the data: a change at float32's resolution moves rows.
    assert np.sum(content_folds(X * (1 + 1e-6), y, 5, seed=3) != folds) > 200


def test_round_off_in_X_does_not_change_the_model():
    """Iris's held-out scale choice is stable under 1e-13 relative noise in X.

    Before the folds ignored round-off, this noise reshuffled them and the
    chosen scale by up to 30x (probabilities by 0.04).
    """
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    noisy = X * (1 + 1e-13 * np.random.RandomState(0).standard_normal(X.shape))
    params = dict(
        hidden_layer_sizes=(8,), solver="lbfgs", tol=1e-9, max_iter=5000, random_state=0
    )
    a = LaplaceMLPClassifier(**params).fit(X, y)
    b = LaplaceMLPClassifier(**params).fit(noisy, y)
    assert a.prior_precision_scale_ == b.prior_precision_scale_
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-6)


def test_values_beyond_float32_hash_silently_as_infinity():
    """Features beyond float32's range are hashed as inf, with no warning."""
    X = np.array([[1e300, 1.0], [-1e300, 2.0], [3.0, 4.0]])
    infinite = np.array([[np.inf, 1.0], [-np.inf, 2.0], [3.0, 4.0]])
    y = np.array([0, 1, 0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        folds = content_folds(X, y, 5, seed=1)
        rows = validation_rows(X, y, 0.5, seed=1)
    np.testing.assert_array_equal(folds, content_folds(infinite, y, 5, seed=1))
    np.testing.assert_array_equal(rows, validation_rows(infinite, y, 0.5, seed=1))


def test_curve_is_the_weighted_mean_over_rows_of_positive_weight():
    """A row of zero weight counts for nothing, even where its loss is inf.

    (``0 * inf`` is NaN: such a row must be left out, not multiplied by 0.)
    """
    losses = np.array([[1.0, 4.0], [3.0, 2.0], [np.inf, np.inf], [np.nan, 7.0]])
    weights = np.array([1.0, 3.0, 0.0, 0.0])
    curve = HeldOutLosses(losses, weights).curve()
    np.testing.assert_allclose(curve, [(1.0 + 9.0) / 4.0, (4.0 + 6.0) / 4.0])


def _fold_fit_stub():
    """A fold's fit that scores nothing itself (the test gives the Jacobians)."""
    return SimpleNamespace(
        objective=SimpleNamespace(xp=np, fixed=None, likelihood=None),
        posterior=SimpleNamespace(structure="diag"),
        prior_precision=np.ones(2),
        theta=None,
    )


def test_a_folds_solver_and_posterior_warnings_stay_inside_the_search():
    """The full-data fit has already warned: a fold's refit does not repeat it.

    Each fold's refit warns (ConvergenceWarning, LaplaceApproximationWarning);
    ``cv_log_losses`` raises neither, and still scores every fold.
    """
    fold_fit = _fold_fit_stub()
    trained = []

    def fit_fold(train):
        trained.append(train)
        package_warnings.warn("fold solver", ConvergenceWarning)
        package_warnings.warn("fold posterior", LaplaceApproximationWarning)
        return fold_fit

    def jacobians(theta, X):
        return iter(())  # no rows scored: every loss stays inf

    X, y = np.arange(12.0).reshape(6, 2), np.zeros(6, dtype=int)
    folds = np.arange(6) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cv_log_losses(
            fit_fold, jacobians, (X, y, np.ones(6)), folds, [1.0], None
        )
    assert len(trained) == 3 and result.losses.shape == (6, 1)


def test_a_class_in_one_fold_is_fitted_in_every_fold():
    # Class 2 has four rows, as many as a class needs to be held out at all
    # (MIN_HELD_OUT_CLASS_ROWS); all four share a fold for about one seed
    # in 125.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(200, 2)), np.r_[rng.randint(0, 2, 196), 2, 2, 2, 2]
    # With weight 0 class 2 has nothing to lose: its rows keep the hash's
    # folds (the reference: the plain hash), which show where the rule acts.
    unweighted = np.r_[np.ones(196), np.zeros(4)]
    together = 0
    for seed in range(1000):
        hashed = (_content_hashes(X, seed) % np.uint64(5)).astype(int)
        folds = content_folds(X, y, 5, seed)
        np.testing.assert_array_equal(folds[:196], hashed[:196])
        if np.all(hashed[196:] == hashed[196]):
            together += 1
            np.testing.assert_array_equal(folds[196:], [-1] * 4)
            np.testing.assert_array_equal(
                content_folds(X, y, 5, seed, sample_weight=unweighted), hashed
            )
        else:
            np.testing.assert_array_equal(folds[196:], hashed[196:])
    assert 2 <= together <= 20


def test_a_class_of_fewer_than_four_distinct_rows_is_never_held_out():
    # Class 2 has three distinct rows, one of them copied: the folds and the
    # validation rows (half of the rows) fit it always.
    rng = np.random.RandomState(1)
    X = np.r_[rng.normal(size=(60, 2)), [[9.0, 9.0]] * 3, [[8.0, 8.0], [7.0, 7.0]]]
    y = np.r_[np.arange(60) % 2, [2] * 5]
    for seed in range(20):
        hashed = (_content_hashes(X, seed) % np.uint64(5)).astype(int)
        folds = content_folds(X, y, 5, seed)
        np.testing.assert_array_equal(folds[60:], [-1] * 5)
        np.testing.assert_array_equal(folds[:60], hashed[:60])
        held = validation_rows(X, y, 0.5, seed)
        assert not np.any(held[60:]) and 15 < np.sum(held[:60]) < 45
    # A fourth distinct row makes the class large enough to be scored, and
    # weight 0 on two rows small again.
    X4, y4 = np.r_[X, [[6.0, 6.0]]], np.r_[y, 2]
    weight = np.r_[np.ones(63), 0.0, 0.0, 1.0]
    for seed in range(20):
        hashed = (_content_hashes(X4, seed) % np.uint64(5)).astype(int)
        if len(set(hashed[60:])) > 1:
            folds = content_folds(X4, y4, 5, seed)
            np.testing.assert_array_equal(folds[60:], hashed[60:])
        folds = content_folds(X4, y4, 5, seed, sample_weight=weight)
        np.testing.assert_array_equal(folds[60:], [-1] * 6)


def test_rows_of_weight_zero_do_not_count_towards_a_class_held_out():
    # Only rows of positive weight count towards MIN_HELD_OUT_CLASS_ROWS, in
    # the validation split as in the folds: class 2 (three weighted rows and
    # a fourth of weight 0) and class 3 (one weighted row, two of weight 0)
    # are small, and every row of a small class is fitted, its rows of
    # weight 0 too.
    rng = np.random.RandomState(1)
    X = rng.normal(size=(67, 2))
    y = np.r_[np.arange(60) % 2, [2] * 4, [3] * 3]
    weight = np.r_[np.ones(63), 0.0, 1.0, 0.0, 0.0]
    for seed in range(20):
        folds = content_folds(X, y, 5, seed, sample_weight=weight)
        np.testing.assert_array_equal(folds[60:], [-1] * 7)
        held = validation_rows(X, y, 0.5, seed, sample_weight=weight)
        assert not np.any(held[60:]) and 15 < np.sum(held[:60]) < 45
    # At unit weight the fourth row makes class 2 large enough to be held out.
    assert any(np.any(validation_rows(X, y, 0.5, seed)[60:64]) for seed in range(20))


def test_the_whole_class_rule_does_not_depend_on_the_scale_of_the_weights():
    # Scaling every weight by c weighs the data against the prior; it moves
    # no row across the folds or the split. Class 2's four rows lie wholly in
    # one fold for seed 385 and on the held-out side for seed 7: at weight 0.1
    # each (0.4 in all) or 1e-6 they are fitted, as at unit weight.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 2)), np.r_[np.arange(56) % 2, 2, 2, 2, 2]
    hashed = (_content_hashes(X, 385) % np.uint64(5)).astype(int)
    assert np.all(hashed[56:] == hashed[56])  # the premise: one fold
    assert np.all(_content_hashes(X, 7)[56:] / 2.0**64 < 0.5)  # all held out
    unit_held = validation_rows(X, y, 0.5, 7)
    for scale in (1.0, 0.1, 1e-6):
        weight = np.full(60, scale)
        folds = content_folds(X, y, 5, 385, sample_weight=weight)
        np.testing.assert_array_equal(folds[56:], [-1] * 4)
        np.testing.assert_array_equal(folds[:56], hashed[:56])
        held = validation_rows(X, y, 0.5, 7, sample_weight=weight)
        np.testing.assert_array_equal(held, unit_held)
        assert not np.any(held[56:])


def test_a_rows_fold_is_its_full_64_bit_keyed_digest_modulo_the_folds():
    # The hash keeps all 64 bits of the seed-keyed BLAKE2b digest of the
    # row's float32 bytes (uint64): held in float64, hashes above 2**53 lose
    # their low bits, and digest mod 5 (the fold) with them.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(50, 3)), np.arange(50) % 2
    key = (7).to_bytes(8, "little")
    digests = [
        int.from_bytes(
            hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest(), "little"
        )
        for row in X.astype(np.float32)
    ]
    hashes = _content_hashes(X, 7)
    assert hashes.dtype == np.uint64
    assert [int(h) for h in hashes] == digests
    np.testing.assert_array_equal(
        content_folds(X, y, 5, seed=7), [d % 5 for d in digests]
    )


def test_the_scale_does_not_depend_on_where_the_folds_put_a_rare_class():
    # Class 2 has two rows; for random_state=5 the folds put both in one
    # fold, whose MAP never saw the class: c fell from 1e4 to 0.13.
    rng = np.random.RandomState(0)
    X = np.r_[
        rng.randn(30, 2) + [3, 0], rng.randn(30, 2) + [-3, 0], rng.randn(2, 2) + [0, 4]
    ]
    y = np.r_[np.zeros(30, int), np.ones(30, int), [2, 2]]
    scales = [
        LaplaceMLPClassifier((4,), alpha=1.0, random_state=seed)
        .fit(X, y)
        .prior_precision_scale_
        for seed in (0, 5)
    ]
    assert scales == [1e4, 1e4]


def test_the_curve_is_the_loss_per_unit_of_held_out_weight():
    # Weights 0.5 and 2 (a third row of weight 0 and infinite loss) sum to
    # 2.5, not to the row count.
    losses = np.array([[1.0, 4.0], [3.0, 2.0], [np.inf, 5.0]])
    weights = np.array([0.5, 2.0, 0.0])
    expected = [(0.5 * 1.0 + 2.0 * 3.0) / 2.5, (0.5 * 4.0 + 2.0 * 2.0) / 2.5]
    np.testing.assert_allclose(
        HeldOutLosses(losses, weights).curve(), expected, rtol=1e-12
    )


def test_negative_zero_keeps_every_rows_fold():
    # -0.0 == 0.0: a sign of zero left by a scaler or a negation must not
    # move a row to another fold or across the validation split.
    rng = np.random.RandomState(0)
    X = rng.randint(-2, 3, size=(300, 4)).astype(float)
    y = rng.randint(0, 3, 300)
    X_negative = np.where(X == 0.0, -0.0, X)
    assert np.sum(np.signbit(X_negative) & (X_negative == 0)) > 100
    np.testing.assert_array_equal(
        content_folds(X_negative, y, 5, seed=3), content_folds(X, y, 5, seed=3)
    )
    np.testing.assert_array_equal(
        validation_rows(X_negative, y, 0.2, seed=3),
        validation_rows(X, y, 0.2, seed=3),
    )


@pytest.mark.parametrize("probit", [True, False])
def test_a_row_whose_loss_is_not_finite_loses_at_every_scale(probit):
    # Row 0's first logit overflowed to inf: centred and softmaxed it gives
    # inf - inf, a NaN loss. _heldout_log_losses documents "inf where ... the
    # loss is not finite": a NaN kept there would make the curve NaN at every
    # scale (curve() sums every row of positive weight) and the choice of
    # the scale crash (_nearest_one's min of NaNs ties nothing).
    rng = np.random.RandomState(0)
    logits = np.array([[np.inf, 0.0, 0.0], [1.0, 0.0, -1.0], [0.5, -0.2, 0.1]])
    J = rng.normal(size=(3, 3, 2))
    fit = SimpleNamespace(
        objective=SimpleNamespace(xp=np, likelihood=likelihood_for(3), fixed=None),
        posterior=FullPosterior(np.linalg.cholesky(np.array([[2.0, 0.5], [0.5, 1.0]]))),
        prior_precision=np.ones(2),
        theta=np.zeros(2),
    )

    def jacobians(theta, X):
        yield logits, J

    held_out = (np.zeros((3, 1)), np.array([1, 0, 2]), np.ones(3))
    scales = np.array([0.5, 1.0, 4.0])
    with np.errstate(invalid="ignore"):
        losses = validation_log_losses(
            fit, jacobians, held_out, scales, probit_logits, probit=probit
        )
    assert not np.any(np.isnan(losses.losses))
    assert np.all(losses.losses[0] == np.inf)
    assert np.all(np.isfinite(losses.losses[1:]))
    curve = losses.curve()
    assert np.all(curve == np.inf)  # a row of positive weight lost everywhere
    assert _nearest_one(scales, curve) == 1  # ties go to the scale nearest 1


def test_rows_of_any_magnitude_spread_over_the_folds():
    # Features of order 1e-9 (unscaled physical units) are as distinct in
    # single precision as standardised ones: their rows must spread over
    # the folds and the validation split like any others, not share one
    # hash (which would put each class in one fold: never held out).
    rng = np.random.RandomState(0)
    X, y = 1e-9 * rng.standard_normal((300, 4)), rng.randint(0, 2, 300)
    counts = np.bincount(content_folds(X, y, 5, seed=3) + 1, minlength=6)
    assert counts[0] == 0  # no row left out of every fold
    assert np.all((counts[1:] > 30) & (counts[1:] < 90))  # about 60 each
    assert 30 < np.sum(validation_rows(X, y, 0.2, seed=3)) < 90


def test_no_rows_give_no_folds_and_no_held_out_rows():
    X, y = np.empty((0, 3)), np.empty(0, dtype=int)
    assert content_folds(X, y, 5, seed=0).shape == (0,)
    assert validation_rows(X, y, 0.2, seed=0).shape == (0,)


def test_base_rate_loss_of_a_class_without_fitted_rows_warns_nothing():
    # Class 2 has no fitted weight: its frequency is 0, its log -inf, with
    # no RuntimeWarning (divide by zero) reaching the caller, whether a
    # held-out row has that class (inf) or none does (finite).
    fitted = (None, np.array([0, 1, 1, 2]), np.array([1.0, 1.0, 2.0, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lost = base_rate_loss(fitted, (None, np.array([2]), np.ones(1)), 3)
        kept = base_rate_loss(fitted, (None, np.array([0, 1]), np.ones(2)), 3)
    assert lost == np.inf
    assert kept == pytest.approx(-(np.log(0.25) + np.log(0.75)) / 2, rel=1e-12)


def test_a_folds_other_warnings_still_reach_the_caller():
    # Only the repeats of the full fit's warnings (solver, posterior) are
    # silenced; anything else a fold raises is news and is not swallowed.
    fold_fit = _fold_fit_stub()

    def fit_fold(train):
        package_warnings.warn("fold solver", ConvergenceWarning)
        package_warnings.warn("fold posterior", LaplaceApproximationWarning)
        package_warnings.warn("fold data", UserWarning)
        return fold_fit

    X, y = np.arange(12.0).reshape(6, 2), np.zeros(6, dtype=int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cv_log_losses(
            fit_fold,
            lambda t, X: iter(()),
            (X, y, np.ones(6)),
            np.arange(6) % 3,
            [1.0],
            None,
        )
    assert [str(w.message) for w in caught] == ["fold data"] * 3


# A binary model (one logit) with three parameters, the last one pruned
# (held at zero: no prior, identity precision, a zero Jacobian column, as
# the estimator's jacobians give it). Its data precision on the two free
# parameters and its prior precision 4 (alpha > 1) are set by hand. Row i
# of the data is the number i, which ``_rows_jacobians`` looks up.
_P_DATA = np.array([[2.0, 0.3], [0.3, 1.0]])
_PRIOR = np.full(3, 4.0)
_LOGITS = np.array([[1.5], [-0.4], [0.7], [2.5]])
_J = np.concatenate(
    [np.random.RandomState(1).normal(size=(4, 1, 2)), np.zeros((4, 1, 1))], axis=2
)
_LABELS = np.array([1, 0, 0, 1])
_ROWS = np.arange(4.0)[:, None]


def _pruned_binary_fit(xp=np):
    precision = np.eye(3)
    precision[:2, :2] = _P_DATA + np.diag(_PRIOR[:2])  # the posterior at scale 1
    return SimpleNamespace(
        objective=SimpleNamespace(
            xp=xp,
            likelihood=likelihood_for(2),
            fixed=xp.asarray(np.array([False, False, True])),
        ),
        posterior=FullPosterior(np.linalg.cholesky(precision)),
        prior_precision=_PRIOR,
        theta=None,
    )


def _rows_jacobians(theta, X, xp=np):
    rows = X[:, 0].astype(int)
    yield xp.asarray(_LOGITS[rows]), xp.asarray(_J[rows])


def _probit_losses_from_scratch(scales):
    """-log p(y) of the probit ``f / sqrt(1 + pi/8 var)`` at each scale."""
    losses = np.empty((len(_LABELS), len(scales)))
    J = _J[:, 0, :2]
    for i, c in enumerate(scales):
        covariance = np.linalg.inv(_P_DATA + c * np.diag(_PRIOR[:2]))
        variance = np.einsum("np,pq,nq->n", J, covariance, J)
        g = _LOGITS[:, 0] / np.sqrt(1.0 + np.pi / 8.0 * variance)
        losses[:, i] = np.logaddexp(0.0, np.where(_LABELS == 1, -g, g))
    return losses


def _never_called(xp, mean, cov):
    raise AssertionError("the probit's fast path needs no covariances")


@pytest.mark.parametrize("probit", [True, False])
def test_held_out_losses_of_a_pruned_fit_scale_the_free_parameters_only(probit):
    # The pruned parameter has no prior: P(c) = P_data + c A on the free
    # block, the identity on the pruned one, positive definite at every
    # c > 0. Scaling its A as well (1 + (c - 1) 4 < 0 for c < 3/4) would
    # leave scales 0.1 and 0.5 without a posterior (an inf loss).
    scales = [0.1, 0.5, 1.0, 3.0]
    losses = validation_log_losses(
        _pruned_binary_fit(),
        _rows_jacobians,
        (_ROWS, _LABELS, np.ones(4)),
        scales,
        probit_logits,
        probit,
    ).losses
    np.testing.assert_allclose(losses, _probit_losses_from_scratch(scales), rtol=1e-10)


def test_the_probit_scores_every_scale_from_the_centred_variances_alone():
    # With probit=True (and a dense J) neither validation_log_losses nor
    # cv_log_losses (two folds, each scored at the same fit) asks
    # ``predictive`` for each scale's full covariances.
    scales = [0.5, 2.0, 30.0]
    fit, data = _pruned_binary_fit(), (_ROWS, _LABELS, np.ones(4))
    expected = _probit_losses_from_scratch(scales)
    got = validation_log_losses(fit, _rows_jacobians, data, scales, _never_called, True)
    np.testing.assert_allclose(got.losses, expected, rtol=1e-10)
    folds = np.array([0, 0, 1, 1])
    got = cv_log_losses(
        lambda train: fit, _rows_jacobians, data, folds, scales, _never_called, True
    )
    np.testing.assert_allclose(got.losses, expected, rtol=1e-10)


def test_held_out_losses_use_the_given_predictive_by_default():
    # probit defaults to False: ``predictive`` moderates the logits. The
    # plug-in (the MAP's logits, whatever the covariance) gives each row
    # its plain logistic loss at every scale, not the probit's.
    scales = [0.5, 2.0]
    plug_in = lambda xp, mean, cov: mean  # noqa: E731
    plain = np.logaddexp(0.0, np.where(_LABELS == 1, -1.0, 1.0) * _LOGITS[:, 0])
    expected = np.repeat(plain[:, None], 2, axis=1)
    fit, data = _pruned_binary_fit(), (_ROWS, _LABELS, np.ones(4))
    got = validation_log_losses(fit, _rows_jacobians, data, scales, plug_in)
    np.testing.assert_allclose(got.losses, expected, rtol=1e-12)
    folds = np.array([0, 1, 0, 1])
    got = cv_log_losses(
        lambda train: fit, _rows_jacobians, data, folds, scales, plug_in
    )
    np.testing.assert_allclose(got.losses[[0, 2, 1, 3]], expected, rtol=1e-12)


def test_held_out_rows_of_little_weight_are_still_scored():
    # Weights normalised to sum to one (any held-out total below one) are
    # weights like any others: the rows are scored, and the loss per unit
    # weight is that of unit weights.
    scales = [0.5, 2.0]
    fit = _pruned_binary_fit()
    unit, small = (
        validation_log_losses(
            fit, _rows_jacobians, (_ROWS, _LABELS, w), scales, probit_logits
        )
        for w in (np.ones(4), np.full(4, 0.05))
    )
    assert small is not None
    np.testing.assert_allclose(small.curve(), unit.curve(), rtol=1e-12)


def test_the_scaled_family_is_built_in_the_fits_namespace(monkeypatch):
    # The eigendecomposition of the posterior (O(W^3)) stays in the fit's
    # namespace (on its device with CuPy), not on the host.
    xps = pytest.importorskip("array_api_strict")
    families, original = [], sklaplace._held_out.ScaledPriorFamily

    def spy(*args, **kwargs):
        families.append(original(*args, **kwargs))
        return families[-1]

    monkeypatch.setattr(sklaplace._held_out, "ScaledPriorFamily", spy)
    scales = [0.5, 2.0]
    got = validation_log_losses(
        _pruned_binary_fit(xps),
        lambda theta, X: _rows_jacobians(theta, X, xps),
        (_ROWS, _LABELS, np.ones(4)),
        scales,
        probit_logits,
        True,
    )
    np.testing.assert_allclose(
        got.losses, _probit_losses_from_scratch(scales), rtol=1e-10
    )
    [family] = families
    assert family.xp is xps
    assert not isinstance(family._eigen[2], np.ndarray)  # eigenvectors stay in xps


def _binary_probit_losses(precision_at, scales):
    """-log p(y) of ``f / sqrt(1 + pi/8 J P(c)^{-1} J')``; inf if ``P(c)`` is not PD."""
    losses = np.full((len(_LABELS), len(scales)), np.inf)
    J = _J[:, 0, :2]
    for i, c in enumerate(scales):
        P = precision_at(c)
        if np.min(np.linalg.eigvalsh(P)) <= 0:
            continue
        variance = np.einsum("np,pq,nq->n", J, np.linalg.inv(P), J)
        g = _LOGITS[:, 0] / np.sqrt(1.0 + np.pi / 8.0 * variance)
        losses[:, i] = np.logaddexp(0.0, np.where(_LABELS == 1, -g, g))
    return losses


def test_the_probit_scores_a_diagonal_posteriors_scales_from_centred_variances():
    """A posterior rebuilt per scale (diagonal) also takes the probit's fast path.

    With a dense ``J`` the centred variances serve the probit whatever the
    posterior: ``predictive`` (the full ``K x K`` covariances) is never
    called, by either function. The losses match the probit on
    ``diag(P_data) + c A`` over the free parameters, from scratch.
    """
    fit = SimpleNamespace(
        objective=SimpleNamespace(
            xp=np, likelihood=likelihood_for(2), fixed=np.array([False, False, True])
        ),
        posterior=DiagPosterior(np.r_[np.diag(_P_DATA) + _PRIOR[:2], 1.0]),
        prior_precision=_PRIOR,
        theta=None,
    )

    scales = [0.5, 2.0, 30.0]
    expected = _binary_probit_losses(
        lambda c: np.diag(np.diag(_P_DATA) + c * _PRIOR[:2]), scales
    )
    _assert_both_score_the_probit(fit, scales, np.array([0, 0, 1, 1]), expected)


def _assert_both_score_the_probit(fit, scales, folds, expected):
    """Validation rows and the ``folds`` (``fit`` for each) give ``expected``
    per row and scale, never calling ``predictive`` (the fast path); the
    folds' losses come in their held-out rows' order."""
    data = (_ROWS, _LABELS, np.ones(4))
    got = validation_log_losses(fit, _rows_jacobians, data, scales, _never_called, True)
    np.testing.assert_allclose(got.losses, expected, rtol=1e-10)
    got = cv_log_losses(
        lambda train: fit, _rows_jacobians, data, folds, scales, _never_called, True
    )
    order = np.argsort(folds, kind="stable")
    np.testing.assert_allclose(got.losses, expected[order], rtol=1e-10)


def test_one_row_chunks_are_scored_and_an_indefinite_scale_loses():
    """The rows' Jacobians may come one row per chunk (a chunk's last row).

    Scale -0.5 leaves ``P_data - 2 I`` indefinite: its column is inf, the
    others the probit's losses from scratch, chunk by chunk as for the
    whole block.
    """
    fit = _pruned_binary_fit()

    def one_row_chunks(theta, X):
        for i in X[:, 0].astype(int):
            yield _LOGITS[i : i + 1], _J[i : i + 1]

    scales = [-0.5, 0.5, 2.0]
    expected = _binary_probit_losses(
        lambda c: _P_DATA + c * np.diag(_PRIOR[:2]), scales
    )
    assert np.all(expected[:, 0] == np.inf) and np.all(np.isfinite(expected[:, 1:]))
    data = (_ROWS, _LABELS, np.ones(4))
    for probit in (True, False):
        got = validation_log_losses(
            fit, one_row_chunks, data, scales, probit_logits, probit
        )
        np.testing.assert_allclose(got.losses, expected, rtol=1e-10)


def _from_scratch(raw, theta, X):
    """The logits at ``X`` and their Jacobian, by differences of ``mlp_logits``."""

    def logits(t):
        return mlp_logits(t, X, raw["layer_sizes"], raw["activation"])

    return logits(theta), numerical_jacobian(logits, theta)


def test_a_last_layer_full_posterior_scores_factored_jacobians_by_the_probit():
    """A last layer's full posterior, with factored ``J``, takes the fast path.

    The estimator gives a last-layer posterior factored Jacobians; its full
    block is eigendecomposed once (``all_at_once``), so the probit needs no
    ``predictive``. Three classes: the losses are the probit's on centred
    logits, ``C f / sqrt(1 + pi/8 diag(C J P(c)^{-1} J' C))``, with
    ``P(c) = P(1) + (c - 1) A`` on the last layer's block, computed densely
    from the network's ``J`` by differences of ``mlp_logits``.
    """
    from sklaplace._jacobian import logit_factors
    from sklaplace._posterior import laplace_posterior
    from sklaplace._prior_scale import ScaledPriorFamily

    obj, theta, raw = make_problem("tanh", 3, hidden=(4,), n_samples=12, raw=True)
    post, _, _ = laplace_posterior(obj, theta, "ggn", "full", "last_layer")
    prior, offset, layout = np.asarray(obj.prior_precision), post.offset, obj.layout
    fit = SimpleNamespace(
        objective=obj, posterior=post, prior_precision=prior, theta=theta
    )
    assert ScaledPriorFamily(post, prior).all_at_once
    X, y = np.asarray(obj.X)[:5], np.arange(5) % 3

    def factored(theta, X):
        return logit_factors(np, layout, theta, "tanh", X)

    scales = [0.3, 1.0, 7.0]
    got = validation_log_losses(
        fit, factored, (X, y, np.ones(5)), scales, _never_called, True
    )
    logits, J = _from_scratch(raw, theta, X)
    J = J[:, :, offset:]
    L = post.inner.cholesky_factor
    C = np.eye(3) - 1.0 / 3.0
    expected = np.empty((5, len(scales)))
    for i, c in enumerate(scales):
        P = L @ L.T + (c - 1.0) * np.diag(prior[offset:])
        CJ = C @ J
        variance = np.einsum("nkp,pq,nkq->nk", CJ, np.linalg.inv(P), CJ)
        g = (logits @ C) / np.sqrt(1.0 + np.pi / 8.0 * variance)
        log_p = g - np.log(np.sum(np.exp(g), axis=1, keepdims=True))
        expected[:, i] = -log_p[np.arange(5), y]
    np.testing.assert_allclose(got.losses, expected, rtol=1e-8)


def test_a_diagonal_fits_probit_losses_come_from_the_factors_at_once(monkeypatch):
    """A diagonal posterior takes the Jacobian's factors, all scales in one pass.

    Its held-out probit losses never ask for per-scale covariances (the
    route that took 46 of 61 s on a 4,000-word text), and equal the losses
    from the dense ``J``'s centred variances from scratch (``J`` by
    differences of ``mlp_logits``: the package's own Jacobians share the
    backpropagation the factors come from).
    """
    from sklaplace._jacobian import logit_factors
    from sklaplace._prior_family import ScaledPriorFamily

    obj, theta, raw = make_problem("tanh", 3, hidden=(4,), n_samples=12, raw=True)
    layout, W = obj.layout, obj.layout.n_params
    prior = np.asarray(obj.prior_precision)
    p = prior + np.random.RandomState(0).uniform(0.1, 2.0, W)
    fit = SimpleNamespace(
        objective=obj, posterior=DiagPosterior(p), prior_precision=prior, theta=theta
    )
    X, y = np.asarray(obj.X)[:5], np.arange(5) % 3

    def per_scale(*args, **kwargs):
        raise AssertionError("a diagonal family's probit needs no covariances")

    monkeypatch.setattr(ScaledPriorFamily, "functional_variances", per_scale)
    scales = [0.3, 1.0, 7.0]
    got = validation_log_losses(
        fit,
        lambda theta, X: logit_factors(np, layout, theta, "tanh", X),
        (X, y, np.ones(5)),
        scales,
        _never_called,
        True,
    )
    logits, J = _from_scratch(raw, theta, X)
    C = np.eye(3) - 1.0 / 3.0
    expected = np.empty((5, len(scales)))
    for i, c in enumerate(scales):
        CJ = C @ J
        variance = np.einsum("nkp,p,nkp->nk", CJ, 1.0 / (p + (c - 1.0) * prior), CJ)
        g = (logits @ C) / np.sqrt(1.0 + np.pi / 8.0 * variance)
        log_p = g - np.log(np.sum(np.exp(g), axis=1, keepdims=True))
        expected[:, i] = -log_p[np.arange(5), y]
    np.testing.assert_allclose(got.losses, expected, rtol=1e-8)


@pytest.mark.parametrize("scales", [[1.0], [0.5, 2.0]])
def test_held_out_covariances_leave_out_the_common_shifts_prior_variance(scales):
    """The covariances a held-out predictive gets (every route but the
    probit's all-at-once one) from the centred logits' Jacobian, ``C J``,
    as the fit makes them (``jacobian_chunks(..., centred=True)``).
    Softmax regression under a prior of precision 1e-10: its curvature is
    zero along the logits' common shifts (each input's weights to every
    class, the biases), so their variance is 1e10 / ``c``, which a softmax
    cannot see. The reference leaves those directions out of the inverse;
    the covariances centred after the square, as they had been, are off by
    their round-off (about 1e-6), far beyond the tolerance."""
    from sklaplace._predictive import logit_jacobians
    from sklaplace._testing import mlp_logits, numerical_jacobian

    obj, theta = make_problem("identity", 3, hidden=(), n_samples=30)
    X, sizes = np.asarray(obj.X), obj.layout.layer_sizes
    J = numerical_jacobian(lambda t: mlp_logits(t, X, sizes, "identity"), theta, 1.0)
    p = np.exp(mlp_logits(theta, X, sizes, "identity"))
    p /= p.sum(axis=1, keepdims=True)
    curvature = np.einsum("nk,nkw,nkv->wv", p, J, J) - np.einsum(
        "nk,nkw,nl,nlv->wv", p, J, p, J
    )
    prior = np.full(obj.layout.n_params, 1e-10)
    posterior = FullPosterior(np.linalg.cholesky(curvature + np.diag(prior)))
    fit = SimpleNamespace(
        objective=obj, posterior=posterior, prior_precision=prior, theta=theta
    )
    values, vectors = np.linalg.eigh(curvature)
    seen = values > 1e-8 * values.max()
    assert np.sum(~seen) == 4  # the shifts: three inputs' and the biases'
    vectors, values = vectors[:, seen], values[seen]
    received = []

    def recording(xp, mean, cov):
        received.append(np.asarray(cov))
        return mean

    held_out = X[:6], np.arange(6) % 3, np.ones(6)
    validation_log_losses(
        fit,
        lambda theta, X: logit_jacobians(
            np, obj.layout, theta, "identity", X, centred=True
        ),
        held_out,
        scales,
        recording,
    )
    Jc = J[:6] - J[:6].mean(axis=1, keepdims=True)
    C = np.eye(3) - 1.0 / 3.0
    for c, cov in zip(scales, received, strict=True):
        inverse = (vectors / (values + c * 1e-10)) @ vectors.T
        expected = Jc @ inverse @ np.swapaxes(Jc, 1, 2)
        np.testing.assert_allclose(C @ cov @ C, expected, rtol=1e-9, atol=1e-10)
        raw = (
            J[:6]
            @ np.linalg.inv(curvature + c * np.diag(prior))
            @ np.swapaxes(J[:6], 1, 2)
        )
        assert np.max(np.abs(C @ raw @ C - expected)) > 1e-8


def test_rows_of_fold_minus_one_are_fitted_in_every_fold_and_never_held_out():
    # cv_log_losses: "rows of fold -1 are never held out" (content_folds
    # gives -1 to a class that one fold would hold out whole): every fold's
    # fit sees them, and no fold scores them.
    stub = _fold_fit_stub()
    trained = []

    def fit_fold(train):
        trained.append(train.copy())
        return stub

    X, y = np.arange(16.0).reshape(8, 2), np.zeros(8, dtype=int)
    folds = np.array([0, 1, 2, -1, 0, 1, 2, -1])
    weight = np.arange(1.0, 9.0)
    result = cv_log_losses(
        fit_fold, lambda t, X: iter(()), (X, y, weight), folds, [1.0], None
    )
    expected_train = [
        [False, True, True, True, False, True, True, True],
        [True, False, True, True, True, False, True, True],
        [True, True, False, True, True, True, False, True],
    ]
    assert [t.tolist() for t in trained] == expected_train
    # Held out: rows 0, 4 (fold 0), 1, 5, 2, 6; never rows 3 and 7.
    np.testing.assert_array_equal(result.weights, [1.0, 5.0, 2.0, 6.0, 3.0, 7.0])


def test_at_best_takes_the_first_of_equal_scales():
    # Columns 0 and 2 have the same mean loss (2.0) with different rows:
    # the first is taken, as documented, with its own rows' losses.
    losses = np.array([[1.0, 3.0, 2.5], [3.0, 3.0, 1.5]])
    best = HeldOutLosses(losses, np.ones(2)).at_best()
    np.testing.assert_array_equal(best.losses, [[1.0], [3.0]])


def test_a_zero_weight_row_moves_no_other_row_across_folds_or_the_split():
    # A row of weight 0 is no row: adding one (of a rare class, in another
    # fold or on the other side of the split) must leave every other row's
    # fold and validation side as without it. The whole-class rule counts
    # weight, not rows: a rare class's two unit-weight rows held out
    # together stay fitted (fold -1) though a zero-weight row of theirs is
    # fitted elsewhere.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    y = np.r_[rng.randint(0, 2, 57), 2, 2, 2]
    weight = np.r_[np.ones(59), 0.0]
    acted = 0
    for seed in range(40):
        with_row = content_folds(X, y, 5, seed, sample_weight=weight)
        without = content_folds(X[:59], y[:59], 5, seed, sample_weight=weight[:59])
        np.testing.assert_array_equal(with_row[:59], without)
        acted += without[57] == -1
        held = validation_rows(X, y, 0.5, seed, sample_weight=weight)
        np.testing.assert_array_equal(
            held[:59], validation_rows(X[:59], y[:59], 0.5, seed, weight[:59])
        )
    assert acted >= 4  # the rule acted on class 2 for several seeds


def test_the_folds_and_the_split_do_not_depend_on_the_class_names():
    # The folds and the split hash a row's features only: renaming the
    # classes (their indices permuted) moves no row, and rows equal but for
    # the label go together. The class's index had been hashed, and classes
    # renamed in another sort order changed the model.
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(300, 3)), rng.randint(3, size=300)
    for seed in range(3):
        folds = content_folds(X, y, 5, seed)
        held = validation_rows(X, y, 0.2, seed)
        for order in ([1, 0, 2], [2, 0, 1], [0, 2, 1]):
            renamed = np.array(order)[y]
            np.testing.assert_array_equal(content_folds(X, renamed, 5, seed), folds)
            np.testing.assert_array_equal(validation_rows(X, renamed, 0.2, seed), held)
    Xd, yd = np.r_[X, X], np.r_[np.zeros(300, int), np.ones(300, int)]
    folds = content_folds(Xd, yd, 5, seed=0)
    np.testing.assert_array_equal(folds[:300], folds[300:])
    held = validation_rows(Xd, yd, 0.5, seed=0)
    np.testing.assert_array_equal(held[:300], held[300:])
    assert 0.3 < np.mean(held) < 0.7  # about half the rows, not all or none


def test_a_held_out_row_of_zero_predictive_variance_is_scored():
    # A row whose Jacobian is zero on every parameter has predictive variance
    # exactly 0: the probit leaves its logit as it is, and its loss is the
    # plain logistic loss at every scale (not inf: only a NaN variance marks
    # a scale without a posterior). The other rows: the probit from scratch.
    P_data, prior = np.array([[2.0, 0.3], [0.3, 1.0]]), np.full(2, 4.0)
    logits = np.array([[1.5], [-0.4], [0.7]])
    J = np.random.RandomState(1).normal(size=(3, 1, 2))
    J[0] = 0.0
    labels = np.array([1, 0, 1])
    fit = SimpleNamespace(
        objective=SimpleNamespace(xp=np, likelihood=likelihood_for(2), fixed=None),
        posterior=FullPosterior(np.linalg.cholesky(P_data + np.diag(prior))),
        prior_precision=prior,
        theta=None,
    )
    scales = [0.5, 2.0]
    expected = np.empty((3, 2))
    for i, c in enumerate(scales):
        cov = np.linalg.inv(P_data + c * np.diag(prior))
        variance = np.einsum("np,pq,nq->n", J[:, 0], cov, J[:, 0])
        g = logits[:, 0] / np.sqrt(1.0 + np.pi / 8.0 * variance)
        expected[:, i] = np.logaddexp(0.0, np.where(labels == 1, -g, g))
    np.testing.assert_allclose(expected[0], np.logaddexp(0.0, -1.5), rtol=1e-14)

    def jacobians(theta, X):
        yield logits, J

    got = validation_log_losses(
        fit, jacobians, (np.zeros((3, 1)), labels, np.ones(3)), scales, None, True
    )
    np.testing.assert_allclose(got.losses, expected, rtol=1e-10)


def test_loose_folds_do_not_follow_negative_curvature_tight_ones_do(monkeypatch):
    """Folds solved to ``FOLD_TOL`` score the fit's own mode and stop CG
    where it meets negative curvature; the basins' confirmations (at the
    model's ``tol``) and every full-data fit follow it."""
    assert not fold_follows_negative_curvature(FOLD_TOL)
    assert fold_follows_negative_curvature(np.nextafter(FOLD_TOL, 0))
    calls = []
    real = laplace_fit_module.minimize_map

    def spy(objective, theta, solver, tol, max_iter, verbose=0, follow=True):
        calls.append((objective.n_samples, tol, follow))
        return real(objective, theta, solver, tol, max_iter, verbose, follow)

    monkeypatch.setattr(laplace_fit_module, "minimize_map", spy)
    X, y = make_moons(200, noise=0.3, random_state=0)
    LaplaceMLPClassifier((8,), prior_precision_scale="cv", random_state=0).fit(X, y)
    full = {follow for n, _, follow in calls if n == len(y)}
    folds = [(tol, follow) for n, tol, follow in calls if n < len(y)]
    assert full == {True}
    assert {follow for tol, follow in folds if tol >= FOLD_TOL} == {False}
    assert {follow for tol, follow in folds if tol < FOLD_TOL} == {True}


@pytest.mark.slow
def test_round_off_does_not_send_a_fold_refit_to_another_basin():
    # Session 50's probe: a 1e-15 relative change of X let one fold's refit
    # follow the negative curvature of a saddle near its start (loss 54.3
    # -> 40.7), the run from alpha 0.1 then beat the kept fit by 2.4 paired
    # errors instead of 1.98, and the probabilities moved by 0.61 (alpha_
    # 0.293 against 0.074). Round-off also moves the full-data fit itself:
    # on a SkylakeX kernel with one BLAS thread (session 58) its Newton-CG
    # iterates part at iteration 40 for equal losses (0.231543 against
    # 0.231550) and alpha_ moves 2.5% (0.0744 to 0.0726), the probabilities
    # 0.038; elsewhere not at all. The bounds separate that from the basin
    # change (a factor of 4 in alpha_, 0.61 in probability).
    X, y = make_moons(200, noise=0.3, random_state=0)
    X_rounded = X * (1 + 1e-15 * np.random.RandomState(7).standard_normal(X.shape))
    fit = LaplaceMLPClassifier(random_state=2).fit(X, y)
    again = LaplaceMLPClassifier(random_state=2).fit(X_rounded, y)
    assert again.alpha_ == pytest.approx(fit.alpha_, rel=0.1)
    np.testing.assert_allclose(again.predict_proba(X), fit.predict_proba(X), atol=0.1)


def test_the_whole_class_rule_counts_weight_not_rows():
    """A class whose weight one fold or the split would hold out whole is fitted.

    Class 2's four distinct rows share one fold (for the first seed that puts
    them there) or fall on the held-out side of the split (for another), and
    its fifth row lies elsewhere. At unit weight the fifth keeps the class
    seen and the four are held out; at weight 0 on the fifth the class's
    whole weight would be held out, so the four are fitted instead.
    """
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 2)), np.r_[np.arange(55) % 2, [2] * 5]
    weight = np.r_[np.ones(59), 0.0]

    def fold_of(seed):
        return (_content_hashes(X, seed) % np.uint64(5)).astype(int)

    def one_fold_but_the_fifth(seed):
        hashed = fold_of(seed)
        return len(set(hashed[55:59])) == 1 and hashed[59] != hashed[55]

    fold_seed = next(s for s in range(10_000) if one_fold_but_the_fifth(s))
    hashed = fold_of(fold_seed)
    np.testing.assert_array_equal(content_folds(X, y, 5, fold_seed), hashed)
    folds = content_folds(X, y, 5, fold_seed, sample_weight=weight)
    np.testing.assert_array_equal(folds[55:59], [-1] * 4)
    np.testing.assert_array_equal(folds[:55], hashed[:55])
    assert folds[59] == hashed[59]  # its own fold, where it weighs nothing

    def share(seed):
        return _content_hashes(X, seed) / 2.0**64

    split_seed = next(
        s
        for s in range(10_000)
        if np.all(share(s)[55:59] < 0.5) and share(s)[59] >= 0.5
    )
    assert np.all(validation_rows(X, y, 0.5, split_seed)[55:59])
    held = validation_rows(X, y, 0.5, split_seed, sample_weight=weight)
    assert not np.any(held[55:])
    np.testing.assert_array_equal(held[:55], share(split_seed)[:55] < 0.5)


def test_base_rate_loss_of_the_last_class_without_fitted_rows_is_infinite():
    """A held-out row of the last class, absent from the fitted rows, costs inf.

    The fitted rows' class counts span all ``n_classes``, not only the
    classes they contain: the last class's frequency is 0, not out of range.
    """
    fitted = (None, np.array([0, 1, 1]), np.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lost = base_rate_loss(fitted, (None, np.array([1, 2]), np.ones(2)), 3)
    assert lost == np.inf


def _fitted_folds(weight, folds):
    """The training masks ``cv_log_losses`` fits, and what it returns."""
    stub, trained = _fold_fit_stub(), []

    def fit_fold(train):
        trained.append(train.copy())
        return stub

    X, y = np.arange(2.0 * len(folds)).reshape(-1, 2), np.zeros(len(folds), int)
    result = cv_log_losses(
        fit_fold, lambda t, X: iter(()), (X, y, weight), folds, [1.0], None
    )
    return trained, result


def test_a_fold_is_scored_where_both_of_its_sides_have_any_positive_weight():
    """Folds of weight below one are scored; a side of zero weight skips its fold.

    Weights of 0.1 (each side of every fold below 1) score all three folds.
    A fold whose held-out rows weigh nothing (the first) is not fitted, the
    later folds still are, and where all the weight lies in one fold no fold
    has weight on both sides: None, with no fit.
    """
    folds = np.arange(6) % 3
    trained, result = _fitted_folds(np.full(6, 0.1), folds)
    assert [t.tolist() for t in trained] == [(folds != k).tolist() for k in range(3)]
    np.testing.assert_array_equal(result.weights, np.full(6, 0.1))
    trained, result = _fitted_folds(np.where(folds == 0, 0.0, 1.0), folds)
    assert [t.tolist() for t in trained] == [(folds != k).tolist() for k in (1, 2)]
    assert result.losses.shape == (4, 1)
    trained, result = _fitted_folds(np.where(folds == 0, 1.0, 0.0), folds)
    assert trained == [] and result is None


def test_held_out_rows_of_zero_weight_give_no_losses():
    """Held-out rows that weigh nothing in all give None, not a curve of 0 / 0."""
    got = validation_log_losses(
        _pruned_binary_fit(),
        _rows_jacobians,
        (_ROWS, _LABELS, np.zeros(4)),
        [0.5, 2.0],
        probit_logits,
    )
    assert got is None


@pytest.mark.parametrize("scales", [[2.0], [0.3]])
def test_the_probit_of_one_scale_takes_the_centred_variances_of_a_dense_jacobian(
    scales,
):
    # One scale (alpha's walk scores its fit at one scale): the full
    # posterior is not eigendecomposed, so its family cannot take every
    # scale at once; with a dense J the probit still needs only the centred
    # variances, never ``predictive``'s full covariances. The losses: the
    # probit on P_data + c A over the free parameters, from scratch.
    expected = _probit_losses_from_scratch(scales)
    _assert_both_score_the_probit(
        _pruned_binary_fit(), scales, np.array([0, 1, 0, 1]), expected
    )
