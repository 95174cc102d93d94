"""sklaplace.metrics: the calibration metrics against hand-computed cases.

The doctests check one value each; here the binning of the expected
calibration error (equal-width bins of the top-label confidence, a
confidence of 1 in the last bin), the column order ``classes`` gives, and
the Brier score against scikit-learn's binary one.
"""

import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from sklaplace.metrics import expected_calibration_error, multiclass_brier_score


def test_ece_keeps_neighbouring_top_bins_apart():
    """Confidences 0.9 and 0.99 fall in bins 13 and 14 of 15, not one bin.

    Bin 13 (``[13/15, 14/15)``): one correct prediction at 0.9; bin 14
    (``[14/15, 1]``): one wrong prediction at 0.99 and one correct at
    exactly 1. ECE = 1/3 |1 - 0.9| + 2/3 |1/2 - (0.99 + 1)/2|.
    """
    proba = np.array([[0.9, 0.1], [0.99, 0.01], [0.0, 1.0]])
    y = np.array([0, 1, 1])
    expected = (1 / 3) * 0.1 + (2 / 3) * abs(0.5 - 0.995)
    assert expected_calibration_error(y, proba) == pytest.approx(expected, rel=1e-12)


def test_ece_with_one_bin_is_the_gap_between_accuracy_and_mean_confidence():
    """With ``n_bins=1`` the ECE is ``|accuracy - mean confidence|``."""
    rng = np.random.RandomState(0)
    proba = rng.dirichlet(np.ones(3), size=50)
    y = rng.randint(3, size=50)
    accuracy = np.mean(proba.argmax(axis=1) == y)
    expected = abs(accuracy - proba.max(axis=1).mean())
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(expected)


def test_ece_reads_the_columns_in_the_order_of_classes():
    """``classes`` labels the columns, also when a class is absent from ``y``.

    Here ``y`` has no label 1: without ``classes`` the second column would be
    read as label 2. Every prediction is the middle column, label 1, so all
    are wrong: ECE = mean confidence = 0.7 (one bin holds them all).
    """
    proba = np.array([[0.2, 0.7, 0.1], [0.1, 0.7, 0.2]])
    y = np.array([0, 2])
    ece = expected_calibration_error(y, proba, classes=[0, 1, 2])
    assert ece == pytest.approx(0.7, rel=1e-12)
    # String labels, columns in the given (unsorted) order: every prediction
    # is "a", right for two rows of three.
    proba = np.tile([0.3, 0.7], (3, 1))
    ece = expected_calibration_error(["a", "b", "a"], proba, classes=["b", "a"])
    assert ece == pytest.approx(abs(2 / 3 - 0.7), rel=1e-12)


def test_brier_score_is_twice_scikit_learns_binary_one():
    """Two classes: the one-hot distance counts both columns' equal errors."""
    rng = np.random.RandomState(1)
    p = rng.uniform(size=40)
    y = rng.randint(2, size=40)
    proba = np.column_stack([1 - p, p])
    assert multiclass_brier_score(y, proba) == pytest.approx(
        2 * brier_score_loss(y, p), rel=1e-12
    )
    # With string labels and the columns given in reverse order.
    labels = np.array(["no", "yes"])[y]
    assert multiclass_brier_score(
        labels, proba[:, ::-1], classes=["yes", "no"]
    ) == pytest.approx(2 * brier_score_loss(y, p), rel=1e-12)


def test_a_batch_without_some_class_needs_the_classes():
    # All class 1, predicted perfectly: with classes inferred from y_true the
    # one-hot (n, 1) had broadcast against (n, 2) (Brier 1.0 instead of 0).
    y, proba = np.ones(4, dtype=int), np.tile([0.0, 1.0], (4, 1))
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match="pass classes="):
            metric(y, proba)
    assert multiclass_brier_score(y, proba, classes=[0, 1]) == 0.0
    assert expected_calibration_error(y, proba, classes=[0, 1]) == 0.0
    # Three columns, labels {0, 2}: column 1 had been read as label 2 (the
    # second row, predicted as column 1, counted as right).
    proba3 = np.array([[0.1, 0.9, 0.0], [0.1, 0.9, 0.0]])
    with pytest.raises(ValueError, match="pass classes="):
        expected_calibration_error([0, 2], proba3)
    assert expected_calibration_error([0, 2], proba3, classes=[0, 1, 2]) == 0.9


@pytest.mark.parametrize(
    "y, proba, kwargs, match",
    [
        ([0, 1], [[0.5, 0.5], [np.nan, 0.5]], {}, "NaN or infinity"),
        # A 1-D proba is one binary column: one per row, and not 3-D.
        ([0, 1, 0], [0.5, 0.5], {}, "shape"),
        ([0, 1], np.full((2, 2, 1), 0.5), {}, "shape"),
        ([0, 1, 0], [[0.5, 0.5], [0.5, 0.5]], {}, "shape"),
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], {"classes": [0, 1]}, "not in classes"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"classes": [0, 1, 2]}, "columns"),
        # No samples had given NaN with NumPy warnings (Brier) or 0.0 (ECE).
        (np.zeros(0), np.zeros((0, 2)), {"classes": [0, 1]}, "no samples"),
        # Scores that are not probabilities had been scored as if they were.
        ([0, 1], [[0.5, 0.6], [0.5, 0.5]], {}, "off by 0.1"),
        ([0, 1], [[0.4, 0.5], [0.5, 0.5]], {}, "off by 0.1"),  # short of 1 too
        ([0, 1], [[1.2, -0.2], [0.5, 0.5]], {}, r"entries in \[-0.2, 1.2\]"),
        ([0, 1], [[0.5, 0.5 + 2e-5], [0.5, 0.5]], {}, "row sum off"),
    ],
)
def test_bad_metric_input_is_refused(y, proba, kwargs, match):
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match=match):
            metric(y, np.asarray(proba), **kwargs)


@pytest.mark.parametrize("n_bins", [0, -1, 2.5, True])
def test_ece_needs_a_positive_number_of_bins(n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], np.eye(2), n_bins=n_bins)


@pytest.mark.parametrize("n_bins", [np.int64(10), np.int32(10), np.uint8(10)])
def test_ece_takes_a_numpy_integer_number_of_bins(n_bins):
    # A NumPy integer (from np.arange, a config array) is an integer: the
    # same ECE as the Python int.
    rng = np.random.RandomState(0)
    proba = rng.dirichlet(np.ones(3), size=40)
    y = rng.randint(3, size=40)
    assert expected_calibration_error(y, proba, n_bins=n_bins) == (
        expected_calibration_error(y, proba, n_bins=10)
    )


def test_more_labels_than_columns_asks_for_classes():
    # Three distinct labels, two columns, no classes given: the message says
    # so and how to fix it, not that a classes= never passed has the wrong
    # shape.
    proba = np.full((3, 2), 0.5)
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(
            ValueError, match="3 distinct labels but proba has 2 columns: pass classes="
        ):
            metric([0, 1, 2], proba)


def test_classes_must_not_repeat_a_label():
    # [0, 0, 1] had given a one-hot row with two ones: 0.25 for a perfect score.
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match="repeat"):
            metric([0, 1], proba, classes=[0, 0, 1])


def test_ece_counts_wrong_predictions_at_confidence_one():
    # Confidence 1 belongs to the last bin: two saturated wrong predictions
    # have ECE 1, and one of them beside a right one at 0.6 has
    # (|0 - 1| + |1 - 0.6|) / 2 = 0.7.
    assert expected_calibration_error([1, 0], np.array([[1.0, 0.0], [0.0, 1.0]])) == 1.0
    proba = np.array([[1.0, 0.0], [0.4, 0.6]])
    assert expected_calibration_error([1, 1], proba, classes=[0, 1]) == pytest.approx(
        0.7, rel=1e-12
    )


def test_ece_bins_are_closed_on_the_left():
    # With 5 bins, confidence 0.4 shares [0.4, 0.6) with 0.5 (one bin:
    # |1/2 - 0.45| = 0.05); in (0.2, 0.4] it would be alone (0.55).
    proba = np.array([[0.4, 0.3, 0.3], [0.5, 0.25, 0.25]])
    ece = expected_calibration_error([0, 1], proba, classes=[0, 1, 2], n_bins=5)
    assert ece == pytest.approx(0.05)


def test_a_confidence_at_a_bin_edge_opens_that_bin():
    # 0.57 is 57 / 100 in float64, but 0.57 * 100 is 56.99999999999999: a
    # scaled index put it in [0.56, 0.57) with 0.565, a wrong prediction
    # (one bin: |1/2 - 0.5675| = 0.0675). In [0.57, 0.58) it is alone:
    # (|1 - 0.57| + |0 - 0.565|) / 2.
    assert 0.57 == 57 / 100 and int(0.57 * 100) == 56
    proba = np.array([[0.43, 0.57], [0.435, 0.565]])
    ece = expected_calibration_error([1, 0], proba, classes=[0, 1], n_bins=100)
    assert ece == pytest.approx((0.43 + 0.565) / 2, rel=1e-12)


def test_ece_costs_only_the_bins_that_hold_a_row():
    # Ten million bins and two rows, one right at 0.9, one wrong at 0.8
    # (a loop over every bin took 12 s here).
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    ece = expected_calibration_error([0, 0], proba, classes=[0, 1], n_bins=10**7)
    assert ece == pytest.approx((0.1 + 0.8) / 2, rel=1e-12)


def test_probabilities_within_float32_round_off_of_summing_to_one_are_scored():
    proba = np.full((4, 100), 0.01, dtype=np.float32)  # sums to 1 in float32
    assert abs(float(proba.astype(float).sum(axis=1)[0]) - 1.0) > 1e-8
    y = np.arange(4)
    expected = np.mean(np.sum((proba.astype(float) - np.eye(100)[y]) ** 2, axis=1))
    assert multiclass_brier_score(y, proba, classes=np.arange(100)) == expected


def test_ece_has_15_bins_by_default():
    # Confidences 0.86 and 0.87 fall in bins 12 and 13 of 15 (12.9, 13.05)
    # but share bin 13 of 16 (13.76, 13.92). One right, one wrong:
    # 15 bins: (|1 - 0.86| + |0 - 0.87|) / 2 = 0.505; one bin: |1/2 - 0.865|.
    proba = np.array([[0.86, 0.14], [0.87, 0.13]])
    assert expected_calibration_error([0, 1], proba) == pytest.approx(0.505, rel=1e-12)
    assert expected_calibration_error([0, 1], proba, n_bins=16) == pytest.approx(
        0.365, rel=1e-12
    )


def test_proba_of_object_dtype_is_read_as_numbers():
    # An object array of floats (as a DataFrame of mixed columns gives) is
    # scored as the float array: Brier (2 * 0.1^2 + 2 * 0.2^2) / 2 = 0.05,
    # ECE (the docstring's case) |1 - 0.9| / 2 + |1 - 0.8| / 2 = 0.15.
    proba = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=object)
    assert multiclass_brier_score([0, 1], proba) == pytest.approx(0.05, rel=1e-12)
    assert expected_calibration_error([0, 1], proba) == pytest.approx(0.15, rel=1e-12)


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_complex_proba_is_refused_not_cast_to_its_real_part(metric):
    # Its real part is a valid prediction: casting had scored it with only a
    # ComplexWarning, the imaginary part dropped.
    proba = np.array([[0.9 + 0.5j, 0.1], [0.2, 0.8]])
    with pytest.raises(TypeError, match=r"proba must hold real numbers.*complex"):
        metric([0, 1], proba)


_SHAPE = (
    "proba must be of shape (n_samples, n_classes) or (n_samples,) and y_true "
    "of shape (n_samples,); got {} and {}."
)
_RANGE = (
    "proba must hold probabilities: entries in [0, 1], each row summing to 1 "
    "(to 1e-05); got entries in [{}] and a row sum off by {}."
)


@pytest.mark.parametrize(
    "y, proba, kwargs, message",
    [
        ([0, 1], [[0.5, 0.5], [np.nan, 0.5]], {}, "proba contains NaN or infinity."),
        ([0, 1, 0], [[0.5, 0.5], [0.5, 0.5]], {}, _SHAPE.format("(2, 2)", "(3,)")),
        # y_true as a column: the same rows, but 2-D (would broadcast
        # against the predictions, every row compared with every label).
        ([[0], [1]], [[0.5, 0.5], [0.5, 0.5]], {}, _SHAPE.format("(2, 2)", "(2, 1)")),
        (
            np.zeros(0),
            np.zeros((0, 2)),
            {"classes": [0, 1]},
            "proba and y_true hold no samples.",
        ),
        ([0, 1], [[0.5, 0.6], [0.5, 0.5]], {}, _RANGE.format("0.5, 0.6", "0.1")),
        (
            [1, 1],
            [[0.0, 1.0], [0.0, 1.0]],
            {},
            "y_true holds 1 distinct labels but proba has 2 columns: pass "
            "classes= (the estimator's classes_) to say which label each "
            "column is.",
        ),
        # Six unknown labels: the message names the first five.
        (
            np.arange(8),
            np.full((8, 2), 0.5),
            {"classes": [0, 1]},
            "y_true holds labels not in classes: [2 3 4 5 6].",
        ),
    ],
)
def test_bad_metric_input_is_refused_with_the_full_message(y, proba, kwargs, message):
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            metric(y, np.asarray(proba), **kwargs)


@pytest.mark.parametrize(
    "row, shown", [([-1e-6, 1.0], "[-1e-06, 1]"), ([1.0 + 1e-6, 0.0], "[0, 1.000001]")]
)
def test_entries_outside_0_1_are_refused_even_where_the_row_sums_to_1(row, shown):
    # Each row sums to 1 within PROBA_SUM_ATOL (off by 1e-6): only the range
    # check, on either side, refuses them, and the message shows the entry
    # outside [0, 1] (to three digits 1 + 1e-6 had read as 1).
    proba = np.array([row, [0.5, 0.5]])
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match=re.escape(f"entries in {shown} and")):
            metric([0, 1], proba)


@pytest.mark.parametrize(
    "proba, error, match",
    [
        (
            np.zeros((2, 0)),
            ValueError,
            "^proba has no columns: it must hold one per class\\.$",
        ),
        ("sparse", TypeError, "proba must be a dense array"),
        ({"a": 1}, TypeError, "proba must hold real numbers, got dtype object"),
        ("abc", TypeError, "proba must hold real numbers, got dtype <U3"),
        ([[1.0, 0.0], [1.0]], ValueError, "proba must be a rectangular array"),
    ],
)
@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_proba_that_is_not_a_table_of_numbers_is_refused_by_name(
    metric, proba, error, match
):
    """They had met NumPy's own errors (a reduction over no columns, "setting
    an array element with a sequence", "could not convert string")."""
    if isinstance(proba, str) and proba == "sparse":
        import scipy.sparse

        proba = scipy.sparse.csr_matrix(np.eye(2))
    with pytest.raises(error, match=match):
        metric([0, 1], proba)


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_labels_that_do_not_compare_are_refused_by_name(metric):
    with pytest.raises(TypeError, match="classes must hold labels of one comparable"):
        metric([0, 1], np.eye(2), classes=[None, 1])
    with pytest.raises(TypeError, match="y_true must hold labels of one comparable"):
        metric(np.array([None, 1], dtype=object), np.eye(2))


def test_low_confidences_keep_their_own_bins():
    """Twenty classes put top-label confidences in bins 0 and 1 of 10: a
    row right at 0.06 (gap +0.94) and one wrong at 0.15 (gap -0.15) are
    alone in their bins, (0.94 + 0.15) / 2; merged they would cancel to
    |0.94 - 0.15| / 2 (a mutant shifted the bins by one, and the clip at
    bin 0 merged them)."""
    proba = np.full((2, 20), 0.0)
    proba[0, 0], proba[0, 1:] = 0.06, 0.94 / 19
    proba[1, 1], proba[1, [0, *range(2, 20)]] = 0.15, 0.85 / 19
    ece = expected_calibration_error([0, 0], proba, classes=np.arange(20), n_bins=10)
    assert ece == pytest.approx((0.94 + 0.15) / 2, rel=1e-12)


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_a_binary_column_is_the_probability_of_the_second_class(metric):
    """scikit-learn's binary scorers pass ``P(classes[1])`` as a 1-D array;
    it scores as the two-column table (it had been refused for its shape)."""
    rng = np.random.RandomState(3)
    p = rng.uniform(size=30)
    y = np.array(["no", "yes"])[rng.randint(2, size=30)]
    table = np.column_stack([1 - p, p])
    assert metric(y, p) == metric(y, table)
    # The second class of the classes given, not of the sorted labels.
    assert metric(y, p, classes=["yes", "no"]) == metric(y, table[:, ::-1])
    assert metric(y, p, classes=["yes", "no"]) != metric(y, p)


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_integer_sample_weights_count_as_repeated_rows(metric):
    rng = np.random.RandomState(4)
    proba = rng.dirichlet(np.ones(3), size=25)
    y = rng.randint(3, size=25)
    weight = rng.randint(0, 4, size=25)
    repeated = np.repeat(np.arange(25), weight)
    expected = metric(y[repeated], proba[repeated], classes=[0, 1, 2])
    got = metric(y, proba, classes=[0, 1, 2], sample_weight=weight)
    assert got == pytest.approx(expected, rel=1e-12)
    # ... and differ from the unweighted score (the weights are read).
    assert abs(got - metric(y, proba)) > 1e-3
    # Only their ratios matter, also where they sum to less than 1.
    assert metric(y, proba, sample_weight=weight / 7) == pytest.approx(got, rel=1e-12)
    tiny = weight / (10 * weight.sum())
    assert metric(y, proba, sample_weight=tiny) == pytest.approx(got, rel=1e-12)
    # ... and where each is finite but their sum is not (the metrics had
    # been NaN, with an overflow warning).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = metric(y, proba, sample_weight=weight * 1e307)
    assert huge == pytest.approx(got, rel=1e-12)


@pytest.mark.parametrize(
    "weight, message",
    [
        (
            [1.0, 1.0],
            "sample_weight must be of shape (3,), one weight per row, got (2,).",
        ),
        ([1.0, -1.0, 1.0], "sample_weight must be finite and non-negative."),
        ([1.0, np.nan, 1.0], "sample_weight must be finite and non-negative."),
        ([0.0, 0.0, 0.0], "sample_weight sums to zero: no row is counted."),
    ],
)
@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_bad_sample_weights_are_refused_by_name(metric, weight, message):
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metric([0, 1, 1], proba, sample_weight=weight)


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_sample_weights_that_are_not_numbers_are_refused_by_name(metric):
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(TypeError, match="^sample_weight must hold real numbers"):
        metric([0, 1], proba, sample_weight=["a", "b"])


@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_the_metrics_serve_as_weighted_scorers_on_a_binary_problem(metric):
    """``make_scorer`` in ``cross_validate``, weights routed to the scorer:
    each fold's score is the metric of that fold's rows and weights."""
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import KFold, cross_validate

    rng = np.random.RandomState(5)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    weight = rng.randint(1, 4, size=60).astype(float)
    folds = KFold(3)
    scorer = make_scorer(metric, response_method="predict_proba")
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = scorer.set_score_request(sample_weight=True)
        model = LogisticRegression().set_fit_request(sample_weight=False)
        result = cross_validate(
            model,
            X,
            y,
            cv=folds,
            scoring=scorer,
            params={"sample_weight": weight},
            return_estimator=True,
        )
    for (_, test), fitted, score in zip(
        folds.split(X), result["estimator"], result["test_score"]
    ):
        positive = fitted.predict_proba(X[test])[:, 1]
        assert score == metric(y[test], positive, sample_weight=weight[test])


@pytest.mark.parametrize(
    "y, proba, kwargs, message",
    [
        # The shape and entries given, not the two-column table made of them.
        ([0, 1, 0], [0.5, 0.5], {}, _SHAPE.format("(2,)", "(3,)")),
        ([0, 1], [1.5, 0.2], {}, _RANGE.format("0.2, 1.5", "0")),
        (
            [0, 1, 2],
            [0.5, 0.5, 0.5],
            {},
            "A 1-D proba is the probability of classes[1] of two classes; there "
            "are 3: pass the (n_samples, n_classes) table.",
        ),
        (
            [0, 1],
            [0.5, 0.5],
            {"classes": [0, 1, 2]},
            "A 1-D proba is the probability of classes[1] of two classes; there "
            "are 3: pass the (n_samples, n_classes) table.",
        ),
    ],
)
def test_a_bad_binary_column_is_refused_in_its_own_terms(y, proba, kwargs, message):
    for metric in (multiclass_brier_score, expected_calibration_error):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            metric(y, np.asarray(proba), **kwargs)


def test_a_confidence_of_one_shares_the_last_bin():
    """Confidence 1 closes the last bin, ``[14/15, 1]``: a wrong row at 1
    (gap -1) and a right one at 0.95 (gap +0.05) share it, |0.05 - 1| / 2;
    in a bin of its own the gaps would not offset, (0.05 + 1) / 2 (a
    mutant that dropped the clip's upper bound survived)."""
    proba = np.array([[0.95, 0.05], [0.0, 1.0]])
    ece = expected_calibration_error([0, 0], proba, classes=[0, 1])
    assert ece == pytest.approx(abs(0.05 - 1.0) / 2, rel=1e-12)


def test_ece_with_more_bins_than_memory_puts_each_confidence_in_its_own_bin():
    """``n_bins=10**18`` allocates no edges (it had asked for 7 EiB): each
    distinct confidence has its own bin, so the ECE is the mean of
    ``|correct - confidence|`` (computed here directly)."""
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.45, 0.55]])
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    expected = np.mean(np.abs(correct - confidence))
    assert expected_calibration_error(y, proba, n_bins=10**18) == pytest.approx(
        expected, rel=1e-12
    )


def test_a_scalar_classes_with_a_1d_proba_is_refused_by_name():
    with pytest.raises(ValueError, match="classes must name the 2 columns of proba"):
        expected_calibration_error([0, 1, 1], [0.9, 0.8, 0.7], classes=1)
