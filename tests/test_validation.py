"""Input validation: the edges of each accepted range (mutation round on _validation).

Each test pins a boundary or a conversion that the rest of the suite
exercised only well inside the range: a hidden layer of one unit, float32
sample weights, a feature whose root mean square is exactly at an end of
``FEATURE_SCALE_RANGE``, the count of unnamed features and rows in the
messages, a row of weight 0 left out of the feature scales, features
below ~1e-154 each scaled by its own largest entry, and NaN named as NaN
when ``assume_finite=True`` let it through.
"""

import warnings

import numpy as np
import pytest
import sklearn

import sklaplace._validation as validation_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._validation import (
    FEATURE_SCALE_RANGE,
    SMALL_MEAN_WEIGHT,
    check_feature_scale,
    check_finite_rows,
    check_weight_scale,
    fit_rows,
    hidden_sizes,
    merge_identical_rows,
    validate_fit_data,
)
from sklaplace.exceptions import FeatureScaleWarning, SampleWeightScaleWarning
from tests.test_reliability_input import SMALL, X, Y  # the same small fit


def test_a_hidden_layer_of_one_unit_is_a_positive_integer():
    """``hidden_layer_sizes`` accepts 1: "positive" includes a one-unit layer.

    A bottleneck of one unit is a valid network (``<= 1`` or ``< 2`` in the
    check refused it as "not a tuple of positive integers").
    """
    assert hidden_sizes((1,)) == (1,)
    assert hidden_sizes((3, 1)) == (3, 1)
    assert hidden_sizes(1) == (1,)
    clf = LaplaceMLPClassifier(**{**SMALL, "hidden_layer_sizes": (1,)}).fit(X, Y)
    assert [c.shape for c in clf.coefs_] == [(3, 1), (1, 1)]
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_float32_sample_weights_fit_as_the_same_values_in_float64():
    """Weights are validated to float64, whatever dtype they come in.

    Three identical rows merge into one whose weight is their sum: summed in
    float32 (the weights' own dtype kept) it rounds differently from the
    float64 sum of the same values, and the fit moves. The fit with float32
    weights must be the fit with those values cast to float64, bit for bit.
    """
    X3, y3 = X.copy(), Y.copy()
    X3[1:3], y3[1:3] = X3[0], y3[0]
    w32 = np.random.RandomState(1).uniform(0.1, 2.0, size=24).astype(np.float32)
    w64 = w32.astype(np.float64)
    _, y_index, weight, _ = validate_fit_data(LaplaceMLPClassifier(), X3, y3, w32)
    assert weight.dtype == np.float64
    merged = merge_identical_rows(X3, y_index, weight)[2]
    assert merged.dtype == np.float64
    assert np.sum(merged) == pytest.approx(np.sum(w64), rel=1e-15)
    single = LaplaceMLPClassifier(**SMALL).fit(X3, y3, sample_weight=w32)
    double = LaplaceMLPClassifier(**SMALL).fit(X3, y3, sample_weight=w64)
    np.testing.assert_array_equal(single.predict_proba(X3), double.predict_proba(X3))
    np.testing.assert_array_equal(single.coefs_[0], double.coefs_[0])


@pytest.mark.parametrize("end", [0, 1], ids=["low", "high"])
def test_the_feature_scale_range_is_closed(end):
    """A root mean square exactly at an end of the range draws no warning.

    The message says "outside [0.001, 100]": a feature equal to 1e-3 or 100
    on both of two rows of unit weight (a root mean square of exactly that
    bound: ``x + x`` and the halving are exact, and ``sqrt(fl(x * x)) == x``
    in IEEE arithmetic) is inside; 1% beyond it is not.
    """
    bound = FEATURE_SCALE_RANGE[end]
    Xs = np.full((2, 1), bound)
    assert np.sqrt(np.mean(Xs[:, 0] ** 2)) == bound  # precondition
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureScaleWarning)
        check_feature_scale(Xs, np.ones(2))
    Xs *= 1.01 if end else 0.99
    with pytest.warns(FeatureScaleWarning, match=r"^1 feature\(s\).*\(feature 0\)"):
        check_feature_scale(Xs, np.ones(2))


def test_a_scale_just_beyond_the_range_reads_as_beyond_it():
    """A root mean square of 100.75 is shown as 100.8, not "1e+02" (which
    reads as inside ``[0.001, 100]``); 1.003e-3 below the low end likewise."""
    with pytest.warns(FeatureScaleWarning, match=r": 100\.8 \(feature 0\)"):
        check_feature_scale(np.full((2, 1), 100.75), np.ones(2))
    with pytest.warns(FeatureScaleWarning, match=r": 0\.000997 \(feature 0\)"):
        check_feature_scale(np.full((2, 1), 0.000997), np.ones(2))


def test_a_dataframes_odd_feature_is_named_by_its_column():
    """``fit`` on a DataFrame names the column (its position had been
    shown beside ``feature_names_in_``); an array's by its position."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"age": [30.0, 40.0, 50.0, 60.0], "income": [2e4, 3e4, 4e4, 5e4]}
    )
    y = np.array([0, 1, 0, 1])
    fit = LaplaceMLPClassifier((2,), alpha=1.0, max_iter=1).fit
    for data, named in [(frame, "'income'"), (frame.to_numpy(), "1")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(data, y)
        shown = [str(w.message) for w in caught if w.category is FeatureScaleWarning]
        assert len(shown) == 1
        assert f"(feature {named})" in shown[0]
        assert "age" not in shown[0]  # rms 47.4: inside the range


@pytest.mark.parametrize("scale", [1 / len(Y), 1e-4])
def test_weights_averaging_far_below_one_row_warn_with_the_remedy(scale):
    """Weights normalised to sum to 1 (AdaBoost's), or scaled down alike,
    are a fraction of a row each to the likelihood: ``fit`` warns, names the
    rows' worth they add up to, and goes on."""
    weights = np.full(len(Y), scale)
    with pytest.warns(SampleWeightScaleWarning) as caught:
        fit_rows(LaplaceMLPClassifier(), X, Y, weights)
    assert [str(w.message) for w in caught] == [
        f"sample_weight averages {scale:.3g} over the {len(Y)} distinct rows of "
        f"positive weight: {scale * len(Y):.3g} rows' worth in all, as the "
        "likelihood counts weights as repetitions, against which the prior "
        "(alpha) weighs more. If the weights are relative (e.g. normalised to "
        "sum to 1), multiply them by a common factor, e.g. w * n / w.sum()."
    ]


def test_weights_just_above_the_mean_threshold_or_beside_zeros_do_not_warn():
    """A mean weight of 0.125 (above ``SMALL_MEAN_WEIGHT``, 0.1) does not
    warn and 0.09 does; rows of weight 0 do not count in the mean (two unit
    weights, one per class, among 24 rows average 1, not 0.083)."""
    assert SMALL_MEAN_WEIGHT == 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleWeightScaleWarning)
        fit_rows(LaplaceMLPClassifier(), X, Y, np.full(len(Y), 0.125))
        two = np.r_[1.0, 1.0, np.zeros(len(Y) - 2)]  # rows 0 and 1: both classes
        fit_rows(LaplaceMLPClassifier(), X, Y, two)
    with pytest.warns(SampleWeightScaleWarning):
        fit_rows(LaplaceMLPClassifier(), X, Y, np.full(len(Y), 0.09))


def test_the_weight_scale_is_judged_on_the_merged_rows():
    """Ten copies of each row at weight 0.05 are each row at 0.5, and fit
    alike bit for bit: neither warns. Ten copies at 0.005 (0.05 a row) warn,
    naming the 24 distinct rows."""
    tenfold_X, tenfold_Y = np.repeat(X, 10, axis=0), np.repeat(Y, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleWeightScaleWarning)
        copies = fit_rows(
            LaplaceMLPClassifier(), tenfold_X, tenfold_Y, np.full(240, 0.05)
        )
        once = fit_rows(LaplaceMLPClassifier(), X, Y, np.full(24, 0.5))
    for a, b in zip(copies, once):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(SampleWeightScaleWarning, match="over the 24 distinct rows"):
        fit_rows(LaplaceMLPClassifier(), tenfold_X, tenfold_Y, np.full(240, 0.005))


@pytest.mark.parametrize(
    "rms, shown",
    [
        (100.04, "100.04"),
        (100.0004, "100.0004"),
        (0.00099996, "0.00099996"),
        (np.nextafter(100.0, np.inf), "100.00000000000001"),
        (np.nextafter(0.001, 0.0), "0.0009999999999999998"),
    ],
)
def test_a_scale_beyond_the_range_never_reads_as_its_bound(rms, shown):
    """Four digits show 100.04 as "100" and 0.00099996 as "0.001", the
    bounds themselves: the value gets as many digits as it takes, up to
    the seventeen that tell the next double from the bound."""
    with pytest.warns(FeatureScaleWarning, match=rf": {shown} \(feature 0\)"):
        check_feature_scale(np.full((2, 1), rms), np.ones(2))


def test_features_whose_squares_underflow_are_each_scaled_by_their_own_peak():
    """Two features below ~1e-154, 165 decades apart: each root mean square
    comes from its own column scaled by its own largest entry. Scaled by
    the larger column's, the smaller one's squares underflow to 0 and it
    read as an all-zero column, unnamed (mutant: the peak over every
    underflowed column, ``axis=None``, passed the whole suite)."""
    tiny, subnormal = 1e-155, 1e-320  # 1e-320 is itself subnormal
    Xs = np.c_[np.ones(4), np.full(4, tiny), np.full(4, subnormal)]
    with pytest.warns(FeatureScaleWarning) as caught:
        check_feature_scale(Xs, np.ones(4))
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("2 feature(s) have a root mean square outside")
    assert f"{tiny:.4g} (feature 1), {subnormal:.4g} (feature 2)." in message


def test_four_odd_features_name_three_and_count_one_more():
    """Four badly scaled features: three named, "and 1 more" for the fourth.

    (The existing test covers 1, 3 and 5; with ``> 4`` in place of ``> 3``
    the fourth feature went unmentioned.)
    """
    Xs = np.c_[X, X] * np.r_[np.full(4, 1e4), np.ones(2)]
    with pytest.warns(FeatureScaleWarning, match=r"^4 feature\(s\)") as caught:
        check_feature_scale(Xs, np.ones(len(Xs)))
    message = str(caught[0].message)
    assert message.count("(feature ") == 3
    assert "(feature 2) and 1 more." in message


def test_exactly_five_non_finite_rows_are_listed_without_an_ellipsis():
    """Five bad rows are all listed, with no ``, ...`` (it marks a sixth and more)."""
    logits = np.ones((8, 2))
    logits[[0, 2, 3, 5, 7], 1] = np.nan
    with pytest.raises(ValueError) as caught:
        check_finite_rows(np, "logits", logits)
    assert "for 5 of 8 samples (rows [0, 2, 3, 5, 7]):" in str(caught.value)


def test_a_row_of_weight_zero_is_dropped_however_large_its_features():
    """Weight 0 equals dropping the row, also where its squares overflow.

    A row of weight 0 with a feature of 1e200 (``x * x`` is ``inf``, and ``0 *
    inf`` is NaN) had made the feature-scale check refuse the data as
    overflowing. It must neither raise nor draw any warning, and the fit must
    equal the fit without the row, bit for bit.
    """
    Xs = X.copy()
    Xs[0, 0] = 1e200
    weight = np.r_[0.0, np.ones(len(X) - 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_feature_scale(Xs, weight)
    dropped = LaplaceMLPClassifier(**SMALL).fit(X[1:], Y[1:])
    weighted = LaplaceMLPClassifier(**SMALL).fit(Xs, Y, sample_weight=weight)
    np.testing.assert_array_equal(weighted.coefs_[0], dropped.coefs_[0])
    np.testing.assert_array_equal(
        weighted.predict_proba(X[1:]), dropped.predict_proba(X[1:])
    )
    # A row of positive weight with that feature is still refused by name.
    with pytest.raises(ValueError, match=r"not finite .*columns \[0\]"):
        check_feature_scale(Xs, np.ones(len(X)))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_features_under_assume_finite_are_named_as_such(value):
    """``sklearn.set_config(assume_finite=True)`` skips scikit-learn's check
    for NaN and infinity: ``fit`` and ``predict_proba`` name them (and the
    row) where they had reported an overflow of too-large features."""
    clf = LaplaceMLPClassifier(**SMALL).fit(X, Y)
    bad = X.copy()
    bad[2, 1] = value
    message = r"X contains NaN or infinity in 1 row\(s\) \(rows \[2\]\)"
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(ValueError, match=message):
            LaplaceMLPClassifier(**SMALL).fit(bad, Y)
        with pytest.raises(ValueError, match=message):
            clf.predict_proba(bad)
        # Finite inputs still fit and predict as without the setting.
        np.testing.assert_array_equal(
            LaplaceMLPClassifier(**SMALL).fit(X, Y).predict_proba(X),
            clf.predict_proba(X),
        )


@pytest.mark.parametrize(
    "bad_rows, listed",
    [
        ([0, 2, 3, 5, 7], "rows [0, 2, 3, 5, 7]); "),
        ([0, 1, 2, 3, 5, 7], "rows [0, 1, 2, 3, 5], ...); "),
    ],
    ids=["five rows: all listed", "six rows: five and an ellipsis"],
)
def test_non_finite_inputs_name_five_rows_and_mark_more(bad_rows, listed):
    """NaN in the inputs behind non-finite outputs: the first five rows named.

    ``check_finite_rows(..., inputs=X)`` checks ``X`` first: five bad rows
    are all listed, a sixth adds ``, ...`` (``rows[:6]``, ``>= 5`` or
    ``> 6`` in its place listed six, or marked five, or left six unmarked),
    and the message names ``assume_finite=True`` as what let them through.
    """
    X = np.ones((8, 3))
    X[bad_rows, 1] = np.nan
    logits = np.ones((8, 2))
    logits[bad_rows, 0] = np.nan
    with pytest.raises(ValueError) as caught:
        check_finite_rows(np, "logits", logits, inputs=X)
    message = str(caught.value)
    assert message.startswith(
        f"X contains NaN or infinity in {len(bad_rows)} row(s) ({listed}"
    )
    assert message.endswith("scikit-learn's assume_finite=True skipped its own check.")
    # Through the feature-scale check (its squares overflow) alike.
    with pytest.raises(ValueError) as caught:
        check_feature_scale(X, np.ones(8))
    assert str(caught.value) == message


def test_overflow_messages_say_what_to_do():
    """The overflow messages keep their advice, word for word.

    Outputs that overflow with finite inputs: scale ``X`` as for fit, or use
    ``alpha > 0``; features whose squares overflow: ``StandardScaler``.
    """
    logits = np.ones((3, 2))
    logits[1, 0] = np.inf
    with pytest.raises(ValueError) as caught:
        check_finite_rows(np, "logits", logits, inputs=np.ones((3, 2)))
    message = str(caught.value)
    assert message == (
        "The logits overflowed (are not finite) for 1 of 3 samples (rows [1]): "
        "their features are too large in magnitude for float64 (scale X as it "
        "was scaled for fit), or the posterior's variances overflow (a flat "
        "prior, alpha=0, on data the network separates: use alpha > 0)."
    )
    X = np.ones((4, 2))
    X[0, 1] = 1e200
    with pytest.raises(ValueError) as caught:
        check_feature_scale(X, np.ones(4))
    message = str(caught.value)
    assert message.startswith(
        "The curvature of the log posterior is not finite (it overflows): "
    )
    assert message.endswith("(e.g. sklearn.preprocessing.StandardScaler).")


def test_copies_of_a_row_sum_their_float_weights_alike_in_any_order():
    # 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit: the merged
    # weight (and with it every fit) must not depend on the rows' order.
    X3 = np.zeros((3, 2))
    y_index = np.zeros(3, dtype=int)
    weights = [
        merge_identical_rows(X3, y_index, np.array(w))[2]
        for w in ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.3, 0.1])
    ]
    assert (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1  # the premise
    assert weights[0][0] == weights[1][0] == weights[2][0]


def test_a_bad_hidden_layer_size_is_refused_in_full_words():
    """The message of ``hidden_sizes`` is its own sentence, word for word.

    The estimator's tests match only "hidden_layer_sizes", which any garbled
    message (one wrapped in stray characters, say) still contains.
    """
    with pytest.raises(
        ValueError,
        match=r"^hidden_layer_sizes must be a tuple of positive integers, "
        r"got \(3, 0\)\.$",
    ):
        hidden_sizes((3, 0))


def test_all_zero_weights_are_refused_in_full_words(monkeypatch):
    """Where scikit-learn lets all-zero weights through (1.8 does; emulated
    as in tests/test_reliability_input.py), the project's own message is
    the whole message: "must not sum to zero" alone matched a garbled one."""

    def lenient(sample_weight, X, dtype=None, ensure_non_negative=False):
        return np.asarray(sample_weight, dtype=dtype)

    monkeypatch.setattr(validation_module, "_check_sample_weight", lenient)
    with pytest.raises(
        ValueError,
        match=r"^sample_weight must not sum to zero: no sample would count\.$",
    ):
        validate_fit_data(LaplaceMLPClassifier(), X, Y, np.zeros(len(X)))


def test_one_class_is_refused_naming_the_class_in_full_words():
    """Labels of one class: the whole message, naming the estimator and the
    class (its repr: a string label quoted). "only one class" alone matched
    a message with the estimator's name in other case or wrapped in junk."""
    with pytest.raises(
        ValueError,
        match=r"^LaplaceMLPClassifier needs samples of at least 2 classes in "
        r"the data, but the data contain only one class: 'cat'\.$",
    ):
        validate_fit_data(LaplaceMLPClassifier(), X, np.full(len(X), "cat"), None)


def test_a_mean_weight_of_exactly_the_threshold_does_not_warn():
    """``SMALL_MEAN_WEIGHT`` is the lowest mean that draws no warning:
    weights "averaging below" it warn, a mean equal to it does not (``<=`` in
    place of ``<`` warned about it), one ulp below it does. Rows of weight 0
    count in neither the total nor the mean."""
    at = np.array([SMALL_MEAN_WEIGHT, 0.0, SMALL_MEAN_WEIGHT])
    assert np.sum(at) == SMALL_MEAN_WEIGHT * 2  # the premise: an exact tie
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleWeightScaleWarning)
        check_weight_scale(at)
    just_below = np.nextafter(SMALL_MEAN_WEIGHT, 0.0)
    below = np.array([just_below, 0.0, just_below])
    assert np.sum(below) < SMALL_MEAN_WEIGHT * 2  # exact: a doubling
    with pytest.warns(SampleWeightScaleWarning, match=r"^sample_weight averages 0\.1 "):
        check_weight_scale(below)


def test_an_overflow_from_the_weights_is_told_apart_per_feature():
    """Whether the features alone overflow is judged per feature (column).

    Two columns of 1e154 on one row: each sums to 1e308 squared, finite, so
    only the weight of 10 makes them overflow, and the advice is to rescale
    sample_weight. Their squares summed over both columns (``axis=None``), or
    along the row (``axis=1``), are 2e308, infinite: that had advised
    standardising features that do not overflow. The message, word for word.
    """
    X = np.array([[1e154, 1e154], [1.0, 1.0]])
    assert np.all(np.isfinite(np.sum(X**2, axis=0)))  # the premise
    with pytest.raises(ValueError) as caught:
        check_feature_scale(X, np.array([10.0, 1.0]))
    assert str(caught.value) == (
        "The curvature of the log posterior is not finite (it overflows): "
        "sum_n sample_weight_n * X[n, j]**2 exceeds float64 for 2 feature(s) "
        "(columns [0, 1]; largest |X| = 1e+154). The features alone do not "
        "overflow: rescale sample_weight (largest 10)."
    )
