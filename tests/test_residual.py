"""The residual variance beyond the training data: envelope, formula, and
what the estimator does with it (nothing on the data, uniform far away)."""

import warnings

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.datasets import make_classification

from sklaplace import LaplaceMLPClassifier
from sklaplace._residual import (
    DataEnvelope,
    at_twice_the_radius,
    data_envelope,
    envelope_radius,
    fit_residual,
    logit_spread,
    residual_variance,
)

X3, Y3 = make_classification(
    80, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)
# tanh: the residual is for units that saturate far from the data.
FAST = dict(
    hidden_layer_sizes=(3,),
    activation="tanh",
    prior_precision_scale=1.0,
    random_state=0,
)


def _unit_weight_radius(distance):
    """The envelope's radius for rows of weight 1, from the two farthest:
    ``min(1, n / 100)`` of a row's worth lies beyond it, the farthest row
    straddling it (interpolated linearly towards the next)."""
    farthest, next_farthest = np.sort(distance)[::-1][:2]
    return farthest - min(1.0, len(distance) / 100) * (farthest - next_farthest)


def test_envelope_from_scratch_gives_constant_features_the_median_spread():
    rng = np.random.RandomState(0)
    X = np.column_stack(
        [
            rng.normal(2.0, 3.0, 50),
            np.full(50, 7.0),
            rng.normal(size=50),
            rng.normal(0.0, 0.5, 50),
        ]
    )
    envelope = data_envelope(X, np.ones(50))
    mean, std = X.mean(axis=0), X.std(axis=0)
    np.testing.assert_allclose(envelope.mean, mean)
    varying = [0, 2, 3]
    np.testing.assert_allclose(envelope.scale[varying], std[varying])
    assert envelope.scale[1] == pytest.approx(np.median(std[varying]))
    z = (X[:, varying] - mean[varying]) / std[varying]
    np.testing.assert_allclose(
        envelope.radius, _unit_weight_radius(np.linalg.norm(z, axis=1))
    )
    # Moving only the constant feature by d moves every row by d / median
    # spread along a direction orthogonal to the data.
    shifted = X.copy()
    shifted[:, 1] += 100.0
    np.testing.assert_allclose(
        envelope.distance(shifted),
        np.hypot(envelope.distance(X), 100.0 / np.median(std[varying])),
    )


@pytest.mark.parametrize("mean", [1000.1, -1e6])
def test_a_large_feature_constant_to_round_off_is_constant(mean):
    """Spread at round-off of a large mean (to a few ulps) is no spread.

    Its computed spread (~4e-13 at 1000.1, ~1e-10 at -1e6) is round-off
    relative to the mean (the threshold is 1e-12 |mean|, of either sign);
    were it kept, that feature would be standardised by it and a shift of 1
    in it would move a row by 1e10 or more instead of by 1 (the other
    features' spread).
    """
    rng = np.random.RandomState(3)
    eps = np.finfo(np.float64).eps
    constant = mean * (1 + rng.randint(-2, 3, 50) * eps)
    assert np.ptp(constant) > 0  # not exactly constant
    X = np.column_stack([rng.normal(size=50), constant, rng.normal(size=50)])
    envelope = data_envelope(X, np.ones(50))
    std = X[:, [0, 2]].std(axis=0)
    assert envelope.scale[1] == pytest.approx(np.median(std))
    z = (X[:, [0, 2]] - X[:, [0, 2]].mean(axis=0)) / std
    np.testing.assert_allclose(
        envelope.radius, _unit_weight_radius(np.hypot(z[:, 0], z[:, 1]))
    )
    shifted = X.copy()
    shifted[:, 1] += 1.0
    np.testing.assert_allclose(
        envelope.distance(shifted),
        np.hypot(envelope.distance(X), 1.0 / np.median(std)),
        rtol=1e-9,
    )


def test_one_rows_worth_lies_beyond_the_radius():
    """Over 100 unit weights the radius is the second-largest distance; a
    weight of 2 on a row equals the row twice. Rows at 20 and 9 of weight
    0.4 each and one at 5 of weight 1: 0.2 of the row at 5 lies beyond the
    radius, which is linear in the weight from 5 towards the nearer rows'
    largest distance ``m``: ``5 - 0.2 (5 - m)``."""
    rng = np.random.RandomState(0)
    distance = rng.uniform(0.0, 5.0, 150)
    assert envelope_radius(distance, np.ones(150)) == np.sort(distance)[-2]
    farthest_30 = np.argsort(distance)[-30:]  # the farthest row among them
    doubled = np.r_[distance, distance[farthest_30]]
    weights = np.ones(150)
    weights[farthest_30] = 2.0
    assert envelope_radius(doubled, np.ones(180)) == envelope_radius(distance, weights)
    nearer = rng.uniform(0.0, 4.0, 200)
    tail = np.r_[nearer, 20.0, 9.0, 5.0]
    tail_weights = np.r_[np.ones(200), 0.4, 0.4, 1.0]
    m = nearer.max()
    np.testing.assert_allclose(
        envelope_radius(tail, tail_weights), 5.0 - 0.2 * (5.0 - m), rtol=1e-12
    )
    # Under 100 rows' worth, 1% of the weight lies beyond: 0.5 of the
    # farthest of 50 unit rows.
    top_two = np.sort(distance[:50])[-2:]
    np.testing.assert_allclose(
        envelope_radius(distance[:50], np.ones(50)), np.mean(top_two), rtol=1e-12
    )


def test_rows_a_round_off_apart_count_as_one_distance():
    """Two rows at 5 (one a relative 1e-15 nearer) and one at 3 beyond 100
    at 1: one row's worth beyond, spread over the gap from 5 to 3, puts the
    radius at 4 whether the two are equal or not (split, it had been 5);
    1e-6 apart they are two rows, and the radius is the nearer's. On a
    symmetric grid the noise of 1e-14 leaves the radius (2.90 had become
    3.35) and the residual's variance where they were."""
    inner = np.ones(100)
    tied = np.r_[5.0, 5.0, 3.0, inner]
    weights = np.ones(103)
    assert envelope_radius(tied, weights) == 4.0
    split = np.r_[5.0, 5.0 * (1 - 1e-15), 3.0, inner]
    assert envelope_radius(split, weights) == 4.0
    apart = np.r_[5.0, 5.0 * (1 - 1e-6), 3.0, inner]
    assert envelope_radius(apart, weights) == 5.0 * (1 - 1e-6)
    grid = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)], float)
    X = np.vstack([np.repeat(grid, 12, axis=0), [[3, 0], [-3, 0], [0, 3], [0, -3]]])
    noisy = X * (1 + 1e-14 * np.random.RandomState(1).normal(size=X.shape))
    logits = lambda rows: np.tanh(rows @ np.array([[1.0], [0.5]]))  # noqa: E731
    envelope, tau2 = fit_residual("auto", X, np.ones(112), 2, logits)
    moved, moved_tau2 = fit_residual("auto", noisy, np.ones(112), 2, logits)
    assert envelope.radius == pytest.approx(2.904, abs=1e-3)
    np.testing.assert_allclose(moved.radius, envelope.radius, rtol=1e-12)
    np.testing.assert_allclose(moved_tau2, tau2, rtol=1e-9)


def test_a_far_row_of_tiny_weight_barely_moves_the_envelope_or_tau2():
    """A row of weight 1e-12 at 100 standard deviations counts as 1e-12 of a
    row: the envelope and tau2 move by about that (they had taken its
    distance as the radius); a lone outlier of weight 1 moves the radius
    only up to the next row (the nearer rows' largest distance bounds it)."""
    rng = np.random.RandomState(4)
    X = rng.normal(size=(300, 3))
    far = np.r_[X, [[100.0, -100.0, 100.0]]]
    clean, tau2 = fit_residual("auto", X, np.ones(300), 2, _curved_logits)
    tiny, tiny_tau2 = fit_residual(
        "auto", far, np.r_[np.ones(300), 1e-12], 2, _curved_logits
    )
    np.testing.assert_allclose(tiny.radius, clean.radius, rtol=1e-9)
    np.testing.assert_allclose(tiny_tau2, tau2, rtol=1e-9)
    outlier = data_envelope(far, np.ones(301))
    assert outlier.radius <= np.max(outlier.distance(X))
    assert outlier.radius < 0.1 * outlier.distance(far[-1:])[0]


def test_all_features_constant_give_unit_scale_and_no_radius():
    X = np.tile([[3.0, -1.0]], (10, 1))
    envelope = data_envelope(X, np.ones(10))
    np.testing.assert_array_equal(envelope.scale, [1.0, 1.0])
    assert envelope.radius == 0.0
    assert np.all(residual_variance(envelope, 2.0, X + 5.0) == 0.0)


def test_a_change_in_a_feature_constant_in_training_moderates_the_prediction():
    """A column that never varied in training (a fixed "version" field).

    Moved far along it alone, the tanh units saturate and the linearised
    variance levels off; the residual beyond the data's envelope takes the
    prediction to uniform, as far along a varying feature.
    """
    X, y = make_classification(200, 4, random_state=0)
    X = np.c_[X, np.full(200, 3.0)]
    sharp = dict(FAST, hidden_layer_sizes=(8,), prior_precision_scale=100.0)
    clf = LaplaceMLPClassifier(**sharp).fit(X, y)
    query = np.tile(X[:1], (2, 1))
    query[0, 4] = 3.0 + 1e6
    query[1, 0] += 1e6 * X[:, 0].std()
    proba = clf.predict_proba(query)
    np.testing.assert_allclose(proba, 0.5, atol=1e-3)
    # Without the residual the constant feature's move stays confident.
    plain = LaplaceMLPClassifier(**sharp, residual_variance=0.0).fit(X, y)
    assert np.max(plain.predict_proba(query[:1])) > 0.9


def test_variance_is_zero_inside_and_cubic_beyond():
    X = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    envelope = data_envelope(X, np.ones(4))
    # Standard deviations are sqrt(1/2), so every row is at radius sqrt(2).
    np.testing.assert_allclose(envelope.radius, np.sqrt(2.0))
    tau2 = 3.0
    assert np.all(residual_variance(envelope, tau2, X) == 0.0)
    # Along an axis, distance d in input units is d * sqrt(2) scaled: twice
    # the radius is d = 2 and gives tau2; three times gives 8 tau2 (a square
    # law would give 4 tau2, a linear one 2 tau2).
    far = np.array([[2.0, 0.0], [0.0, -3.0], [0.5, 0.5]])
    np.testing.assert_allclose(residual_variance(envelope, tau2, far), [3.0, 24.0, 0.0])
    assert np.all(np.isfinite(residual_variance(envelope, tau2, far * 1e300)))


def test_unit_tau2_is_the_bare_cubic_and_huge_inputs_stay_silent():
    """``tau2 = 1`` gives ``((r - R) / R)^3``; inputs at 1e300 warn nothing.

    Rows at radius ``R`` along the axes of four points (as above): at
    ``2R`` and ``3R`` the variance is 1 and 8. Variances beyond float64
    are capped, finite and raise no RuntimeWarning.
    """
    X = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    envelope = data_envelope(X, np.ones(4))
    far = np.array([[2.0, 0.0], [0.0, -3.0], [0.5, 0.5]])
    np.testing.assert_allclose(residual_variance(envelope, 1.0, far), [1.0, 8.0, 0.0])
    np.testing.assert_array_equal(residual_variance(envelope, 0.0, far), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = residual_variance(envelope, 1.0, far * 1e300)
    assert np.all(np.isfinite(huge)) and np.all(huge[:2] > 1e100)


def test_weights_count_as_repetitions_and_zero_weight_rows_do_not_widen():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(30, 3))
    weights = rng.randint(1, 4, 30)
    weighted = data_envelope(X, weights.astype(float))
    repeated = data_envelope(np.repeat(X, weights, axis=0), np.ones(weights.sum()))
    for a, b in zip(weighted, repeated, strict=True):
        np.testing.assert_allclose(a, b)
    outlier = np.r_[X, [[50.0, 50.0, 50.0]]]
    ignored = data_envelope(outlier, np.r_[np.ones(30), 0.0])
    np.testing.assert_allclose(ignored.radius, data_envelope(X, np.ones(30)).radius)


def test_logit_spread_centres_the_softmax_logits():
    rng = np.random.RandomState(2)
    logits = rng.normal(size=(40, 3))
    # A common shift per row changes no probability and no spread.
    shifted = logits + rng.normal(scale=10.0, size=(40, 1))
    centred = logits - logits.mean(axis=1, keepdims=True)
    expected = np.mean(np.var(centred, axis=0))
    np.testing.assert_allclose(logit_spread(shifted, np.ones(40)), expected)
    one = logits[:, :1]
    np.testing.assert_allclose(logit_spread(one, np.ones(40)), np.var(one))


def test_the_centre_is_within_round_off_relative_to_the_radius():
    """A row within ``1e-8 R`` of the mean has no direction; beyond, it moves.

    With ``R = 10`` (standardised; scales 2 and 0.5 here) the threshold is
    ``1e-7``: a row at ``5e-8`` is dropped (an absolute ``1e-8`` or ``1e-8 /
    R`` would keep it), one at ``2e-7`` is moved out to ``2 R`` along its
    own direction like any other row, and zero-weight rows are dropped.
    """
    envelope = DataEnvelope(np.array([1.0, -1.0]), np.array([2.0, 0.5]), 10.0)
    offsets = np.array([[1e-7, 0.0], [0.0, 1e-7], [6.0, 2.0], [6.0, 2.0]])
    X = envelope.mean + offsets  # standardised: 5e-8, 2e-7, 5, 5
    np.testing.assert_allclose(envelope.distance(X), [5e-8, 2e-7, 5.0, 5.0])
    rows, weights = at_twice_the_radius(envelope, X, np.array([1.0, 2.0, 3.0, 0.0]))
    np.testing.assert_array_equal(weights, [2.0, 3.0])
    expected = envelope.mean + np.array([[0.0, 10.0], [24.0, 8.0]])
    np.testing.assert_allclose(rows, expected, rtol=1e-12)
    np.testing.assert_allclose(envelope.distance(rows), [20.0, 20.0])


def test_a_radius_of_exactly_one_or_zero_is_no_special_case():
    """Two values of one feature lie at standardised distance exactly 1.

    With ``R = 1`` the formula applies as for any radius: at 3 the variance
    is ``tau2 ((3 - 1) / 1)^3 = 8 tau2``; under ``"auto"`` tau2 is the
    spread of the logits at the rows moved to ``2R``: ``x^2 + x`` at -2 and
    2 is 2 and 6, variance 4. Identical rows (``R = 0``, no direction to
    move along) get no residual, silently, whatever tau2.
    """
    X = np.array([[-1.0], [1.0], [1.0], [-1.0]])
    envelope = data_envelope(X, np.ones(4))
    assert envelope.radius == 1.0
    far = np.array([[3.0], [0.5]])
    np.testing.assert_allclose(residual_variance(envelope, 2.0, far), [16.0, 0.0])
    _, tau2 = fit_residual("auto", X, np.ones(4), 2, lambda rows: rows**2 + rows)
    np.testing.assert_allclose(tau2, 4.0, rtol=1e-12)
    same = np.tile([[3.0, -1.0]], (5, 1))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        flat, tau2 = fit_residual("auto", same, np.ones(5), 2, _curved_logits)
        assert flat.radius == 0.0 and tau2 == 0.0
        variance = residual_variance(flat, 2.0, np.array([[30.0, 4.0], [3.0, -1.0]]))
    np.testing.assert_array_equal(variance, 0.0)


def _curved_logits(rows):
    """A fixed logit map that neither levels off nor is linear."""
    return np.column_stack([rows[:, 0] * np.abs(rows[:, 1]), np.tanh(rows[:, 2])])


def test_tau2_counts_weights_as_repetitions_and_skips_the_centre():
    rng = np.random.RandomState(3)
    X = rng.normal(size=(25, 3))
    weights = rng.randint(1, 4, 25).astype(float)
    _, weighted = fit_residual("auto", X, weights, 2, _curved_logits)
    repeated_X = np.repeat(X, weights.astype(int), axis=0)
    _, repeated = fit_residual(
        "auto", repeated_X, np.ones(len(repeated_X)), 2, _curved_logits
    )
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12)
    # A zero-weight outlier moves neither the envelope nor tau2; a row at
    # the mean has no direction to move along and is left out.
    extra = np.r_[X, [[40.0, -40.0, 40.0]]]
    _, ignored = fit_residual("auto", extra, np.r_[weights, 0.0], 2, _curved_logits)
    np.testing.assert_allclose(ignored, weighted, rtol=1e-12)
    # (Over 100 rows' worth: one row's worth lies beyond the radius, with
    # the centre row or without it.)
    symmetric = np.r_[X, -X, 2 * X, -2 * X, [[0.0, 0.0, 0.0]]]
    centre = fit_residual("auto", symmetric, np.ones(101), 2, _curved_logits)[1]
    without = fit_residual("auto", symmetric[:100], np.ones(100), 2, _curved_logits)[1]
    np.testing.assert_allclose(centre, without, rtol=1e-12)
    assert fit_residual("auto", X, weights, 1, _curved_logits)[1] == 0.0
    assert fit_residual(2.5, X, weights, 2, _curved_logits)[1] == 2.5


def test_estimator_is_unchanged_on_the_data_and_uniform_far_away():
    auto = LaplaceMLPClassifier(**FAST).fit(X3, Y3)
    off = LaplaceMLPClassifier(**FAST, residual_variance=0.0).fit(X3, Y3)
    assert off.residual_variance_ == 0.0
    # tau2 is the spread of the MAP logits at twice the data's radius: on
    # the training rows moved out along their directions from the mean (in
    # standardised units) to twice the radius, here from the MAP plug-in's
    # decision function (the logits themselves).
    plug_in = LaplaceMLPClassifier(**FAST, link_approx="map").fit(X3, Y3)
    centre, spread = X3.mean(axis=0), X3.std(axis=0)
    distance = np.linalg.norm((X3 - centre) / spread, axis=1)
    radius = _unit_weight_radius(distance)
    assert auto.data_envelope_.radius == pytest.approx(radius, rel=1e-12)
    moved = centre + (X3 - centre) * (2 * radius / distance)[:, None]
    assert np.allclose(np.linalg.norm((moved - centre) / spread, axis=1), 2 * radius)
    expected = logit_spread(plug_in.decision_function(moved), np.ones(len(X3)))
    np.testing.assert_allclose(auto.residual_variance_, expected, rtol=1e-10)
    assert auto.residual_variance_ > 0.1
    # Unchanged within the envelope; the farthest row, beyond it, is moderated.
    inside = distance <= radius
    assert np.sum(~inside) == 1
    np.testing.assert_array_equal(
        auto.predict_proba(X3[inside]), off.predict_proba(X3[inside])
    )
    assert np.max(auto.predict_proba(X3[~inside])) < np.max(
        off.predict_proba(X3[~inside])
    )
    far = 1e3 * np.sign(X3[:5] - X3.mean(axis=0))
    p_auto, p_off = auto.predict_proba(far), off.predict_proba(far)
    # Without the residual the saturated network stays confident far away.
    assert np.max(p_off, axis=1).min() > 0.6
    np.testing.assert_allclose(p_auto, 1 / 3, atol=0.01)
    # The added variance is the formula's, on the diagonal of every row.
    _, cov_auto = auto.latent_mean_and_variance(far)
    _, cov_off = off.latent_mean_and_variance(far)
    added = residual_variance(auto.data_envelope_, auto.residual_variance_, far)
    np.testing.assert_allclose(
        cov_auto - cov_off, added[:, None, None] * np.eye(3), rtol=1e-12
    )
    assert np.all(np.isfinite(auto.predict_proba(X3[:3] * 1e300)))
    # Rows whose features' sum is inf - inf (scikit-learn's finiteness
    # check sums X first) are uniform too, without NumPy's RuntimeWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = auto.predict_proba(np.r_[np.abs(X3), -np.abs(X3)] * 1e307)
    np.testing.assert_allclose(huge, 1 / 3, atol=0.01)


# ReLU's L-BFGS fit stalls at a kink (its warning says so); the MAP is not
# what this test is about.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_an_unbounded_network_stays_uncertain_until_its_logits_overflow(activation):
    """Far away a probability is uniform or the row is refused, never confident.

    A ReLU or ELU network's logit and its linearised standard deviation
    both grow linearly far away; only the residual's cubic term keeps the
    predictive uniform. Capping the distance at 1e50 radii (instead of the
    variance) had made it confident again from 1e80 on; capping the
    variance at 1e300 whatever the logits, from about 1e148 on (up to 0.67
    from uniform until the logits overflowed near 1e154).
    Every half decade from 1e8 to 1e200 is checked; logits that overflow
    raise, without NumPy's RuntimeWarning.
    """
    clf = LaplaceMLPClassifier((3,), activation=activation, solver="lbfgs")
    clf.set_params(random_state=0).fit(X3, Y3)
    direction = np.sign(X3[:2] - X3.mean(axis=0))
    refused = []
    for exponent in np.arange(8.0, 200.5, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                proba = clf.predict_proba(10.0**exponent * direction)
            except ValueError as error:
                assert "not finite" in str(error)
                refused.append(exponent)
                continue
        np.testing.assert_allclose(proba, 1 / 3, atol=0.01)
    assert refused and refused[0] > 130  # uniform well past the data
    np.testing.assert_array_equal(refused, np.arange(refused[0], 200.5, 0.5))
    # Answered until the logits pass 1e147, where 1e300 alone stops
    # swamping them (refusing from there would be too early).
    mean, _ = clf.latent_mean_and_variance(10.0 ** (refused[0] - 0.5) * direction)
    assert np.max(np.abs(mean)) > 1e147


@pytest.mark.parametrize("residual", ["auto", 2.0])
def test_linear_model_gets_no_residual_under_auto(residual):
    clf = LaplaceMLPClassifier(
        (), prior_precision_scale=1.0, residual_variance=residual
    ).fit(X3, Y3)
    assert clf.residual_variance_ == (0.0 if residual == "auto" else 2.0)


def test_probabilities_beyond_the_data_match_the_probit_by_hand():
    clf = LaplaceMLPClassifier(**FAST, residual_variance=5.0).fit(X3, Y3)
    point = X3[:1] * 4.0
    mean, cov = clf.latent_mean_and_variance(point)
    centring = np.eye(3) - 1 / 3
    mu, var = mean[0] @ centring, np.diag(centring @ cov[0] @ centring)
    expected = softmax(mu / np.sqrt(1 + np.pi / 8 * var))
    np.testing.assert_allclose(clf.predict_proba(point)[0], expected, rtol=1e-10)


def test_a_feature_of_small_but_real_spread_keeps_its_own_scale():
    # A column 1000 + 1e-4 noise varies (1e-7 of its mean): its scale is its
    # own weighted standard deviation, not the median spread that a
    # constant feature gets.
    rng = np.random.RandomState(0)
    X = np.c_[rng.normal(size=50), 1000.0 + 1e-4 * rng.normal(size=50)]
    envelope = data_envelope(X, np.ones(50))
    np.testing.assert_allclose(envelope.scale, X.std(axis=0), rtol=1e-8)


def test_a_zero_scale_from_an_old_pickle_leaves_its_feature_out_of_the_distance():
    mean = np.array([1.0, -2.0, 0.5])
    scale = np.array([2.0, 0.0, 0.5])  # feature 1: an envelope pickled before
    envelope = DataEnvelope(mean, scale, 1.5)
    X = np.array([[3.0, 7.0, 1.5], [1.0, -2.0, 0.5], [-1.0, 100.0, 0.0]])
    # By hand: sqrt(((x0 - 1) / 2)^2 + ((x2 - 0.5) / 0.5)^2), feature 1 ignored.
    expected = np.array([np.sqrt(1.0 + 4.0), 0.0, np.sqrt(1.0 + 1.0)])
    np.testing.assert_allclose(envelope.distance(X), expected, rtol=1e-14, atol=0)
    variance = residual_variance(envelope, 2.0, X)
    assert np.all(np.isfinite(variance))
    np.testing.assert_allclose(
        variance, 2.0 * np.maximum(expected / 1.5 - 1.0, 0.0) ** 3, rtol=1e-13
    )


def test_a_cube_beyond_float64_is_capped_silently():
    # At 1e120 radii the distance is finite but its cube is not: the
    # variance is the cap, with no overflow warning (distances that are
    # themselves inf, at 1e300, do not exercise the cube's overflow).
    X = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    envelope = data_envelope(X, np.ones(4))
    far = np.array([[1e120, 0.0], [0.0, -3e150]])
    assert np.all(np.isfinite(envelope.distance(far)))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        variance = residual_variance(envelope, 0.5, far)
    np.testing.assert_array_equal(variance, 1e300)


def test_the_cap_swamps_each_rows_largest_logit_by_1e3():
    """The cap is the larger of 1e300 and ``(1e3 max_k |logit_k|)^2``.

    Rows 1e120 radii out (the cube overflows): logits of 1e148 or -1e148
    (either sign counts) cap the variance at ``(1e151)^2``; 0.9e147 leaves
    the cap at 1e300 and 1.1e147 lifts it just above; logits of 1e152,
    whose bound overflows, get ``inf`` (the predictive refuses the row);
    a cube below the cap is the same whatever the logits.
    """
    X = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    envelope = data_envelope(X, np.ones(4))
    far = np.array([[1e120, 0.0]] * 5 + [[3.0, 0.0]])
    logits = np.array(
        [[0.0, 1e148], [-1e148, 0.0], [0.9e147, 0.0], [0.0, -1.1e147], [1e152, 0.0]]
        + [[0.0, 1e152]]
    )
    with np.errstate(over="raise"):
        variance = residual_variance(envelope, 0.5, far, logits)
    np.testing.assert_allclose(
        variance[:4], [1e302, 1e302, 1e300, 1.21e300], rtol=1e-12
    )
    np.testing.assert_array_equal(variance[4], np.inf)
    np.testing.assert_allclose(variance[5], 0.5 * 2.0**3, rtol=1e-12)
    # float32 logits (at most about 3e38) keep the 1e300 floor, which
    # overflows float32.
    single = np.array([[1e30, 0.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        residual_variance(envelope, 0.5, far[:2], single), 1e300
    )


def test_logit_spread_centres_two_logits_too():
    # Any K > 1 logits are centred per row: two logits (l, -l) + s_n, with
    # a common shift s_n per row, spread as l; uncentred they would not.
    rng = np.random.RandomState(4)
    half = rng.normal(size=30)
    logits = np.column_stack([half, -half]) + rng.normal(scale=5.0, size=(30, 1))
    np.testing.assert_allclose(logit_spread(logits, np.ones(30)), np.var(half))


def test_the_round_off_floor_of_a_feature_near_zero_is_1e_12():
    # Round-off of a mean of at most 1 is ~1e-16: a spread of 1.5e-12 about
    # 0 is real (its own scale), one of 5e-13 is taken as none (the median
    # spread of the two others).
    rng = np.random.RandomState(5)
    z = rng.normal(size=40)
    z = (z - z.mean()) / z.std()
    X = np.column_stack([rng.normal(size=40), 1.5e-12 * z, 5e-13 * z])
    envelope = data_envelope(X, np.ones(40))
    np.testing.assert_allclose(envelope.scale[1], 1.5e-12, rtol=1e-9)
    assert envelope.scale[2] == pytest.approx(np.median([X[:, 0].std(), 1.5e-12]))


def test_a_zero_scale_is_left_out_whatever_a_reused_buffer_held():
    # np.divide(..., where=scale > 0) leaves the other entries of its output
    # as they were: they must be zeros, not whatever the memory held. A freed
    # buffer of the same size holding other numbers, which NumPy hands out
    # again, must not reach the distance (the pickled-envelope test above
    # passed with out=None: its memory happened to be zero).
    mean, scale = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.0, 0.5])
    envelope = DataEnvelope(mean, scale, 1.5)
    X = np.array([[3.0, 7.0, 1.5], [-1.0, 100.0, 0.0]])
    # By hand: sqrt(((x0 - 1) / 2)^2 + ((x2 - 0.5) / 0.5)^2).
    expected = np.array([np.sqrt(5.0), np.sqrt(2.0)])
    for dirt in (7.0, -3.0, 1e10):
        np.full_like(scale, dirt)  # freed at once, its buffer free for reuse
        np.testing.assert_allclose(envelope.distance(X), expected, rtol=1e-14, atol=0)


def test_a_spread_of_exactly_the_round_off_floor_is_none():
    # A column +-1e-12 about 0 has a weighted std of exactly 1e-12, the floor
    # 1e-12 * max(|mean|, 1): a spread must exceed it to be real, so the
    # column gets the median spread of the others (the first column's, 1).
    X = np.array([[-1.0, -1e-12], [1.0, 1e-12]])
    envelope = data_envelope(X, np.ones(2))
    np.testing.assert_array_equal(envelope.scale, [1.0, 1.0])


def test_a_row_exactly_1e_8_radii_from_the_mean_has_no_direction():
    # Rows within 1e-8 radii of the mean, the bound included, are dropped:
    # at 1e-8 and at 0 here; the row at 3e-8 is moved out to 2 radii.
    envelope = DataEnvelope(np.zeros(2), np.ones(2), 1.0)
    X = np.array([[1e-8, 0.0], [0.0, 3e-8], [0.0, 0.0]])
    rows, weights = at_twice_the_radius(envelope, X, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(rows, [[0.0, 2.0]], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(weights, [2.0])


def test_a_zero_weight_row_between_the_two_farthest_does_not_set_the_radius():
    """Under 100 rows' worth, half of the farthest of 50 unit rows lies
    beyond the radius: it is midway to the second-farthest. A zero-weight
    row between the two spends no weight and must not stand in for the
    second-farthest (kept among the envelope's rows, the interpolation ran
    from the farthest towards it instead)."""
    rng = np.random.RandomState(2)
    X = rng.normal(size=(50, 3))
    clean = data_envelope(X, np.ones(50))
    d1, d2 = np.sort(clean.distance(X))[-2:][::-1]
    np.testing.assert_allclose(clean.radius, (d1 + d2) / 2, rtol=1e-12)
    farthest = X[np.argmax(clean.distance(X))]
    dz = d2 + 0.75 * (d1 - d2)  # the zero-weight row's distance
    between = clean.mean + (farthest - clean.mean) * dz / d1
    envelope = data_envelope(np.r_[X, [between]], np.r_[np.ones(50), 0.0])
    np.testing.assert_allclose(envelope.distance(between[None]), [dz], rtol=1e-12)
    assert d1 - d2 > 0.1  # the mistaken radius, (d1 + dz) / 2, is apart
    np.testing.assert_allclose(envelope.radius, (d1 + d2) / 2, rtol=1e-12)


def test_the_fitted_envelope_is_the_weighted_mean_and_spread():
    # data_envelope_'s mean and scale are the sample-weighted mean and
    # standard deviation of the training rows (an integer weight counts as
    # repeated rows); unweighted they are off by tenths here. (Comparing a
    # weighted fit with a repeated one cannot see this: fit merges repeated
    # rows into one weighted row before anything else.)
    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    w = np.random.RandomState(0).uniform(0.0, 5.0, size=y.shape[0]) ** 2
    clf = LaplaceMLPClassifier(
        (4,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    ).fit(X, y, sample_weight=w)
    mean = np.average(X, axis=0, weights=w)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    np.testing.assert_allclose(clf.data_envelope_.mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(clf.data_envelope_.scale, scale, rtol=1e-10)
    assert np.max(np.abs(X.mean(axis=0) - mean) / scale) > 0.05  # weights matter
