"""The prior precision vector from the estimator's alpha and bias precision."""

import numpy as np
import pytest

from sklaplace._network import ParamLayout
from sklaplace._prior import prior_precision_vector

LAYOUT = ParamLayout((2, 3, 1))  # W_0 (6), b_0 (3), W_1 (3), b_1 (1)
BIAS = np.r_[np.zeros(6), np.ones(3), np.zeros(3), np.ones(1)].astype(bool)
LAYER = np.r_[np.zeros(9), np.ones(4)].astype(int)


@pytest.mark.parametrize(
    "alpha, bias, expected",
    [
        (2, 0, np.where(BIAS, 0.0, 2.0)),
        (
            [1, 3],
            [4, 5],
            np.where(BIAS, np.array([4.0, 5.0])[LAYER], np.array([1.0, 3.0])[LAYER]),
        ),
        (np.arange(13), 7, np.arange(13.0)),  # per parameter: biases too
    ],
    ids=["scalars", "per-layer", "per-parameter"],
)
def test_integer_input_gives_a_float_precision(alpha, bias, expected):
    precision = prior_precision_vector(LAYOUT, alpha, bias)
    assert precision.dtype == np.float64 and precision.shape == (13,)
    np.testing.assert_array_equal(precision, expected)


def test_per_parameter_alpha_is_checked():
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        prior_precision_vector(LAYOUT, np.r_[-1.0, np.ones(12)], 1.0)


@pytest.mark.parametrize("which", ["alpha", "bias_prior_precision"])
def test_a_ragged_precision_is_named_in_the_error(which):
    """A ragged list, which ``np.asarray`` itself refuses, is named as such.

    NumPy raises its own ValueError there (an inhomogeneous shape); it must
    come back as the message naming the parameter and what it takes, not as
    an empty ``ValueError`` (``ValueError(None)``).
    """
    values = {"alpha": 1.0, "bias_prior_precision": 1.0, which: [1.0, [2.0, 3.0]]}
    message = f"^{which} must be a number or an array of numbers, got "
    with pytest.raises(ValueError, match=message):
        prior_precision_vector(LAYOUT, values["alpha"], values["bias_prior_precision"])


@pytest.mark.parametrize("n_values", [12, 14, 26])
def test_alpha_with_neither_one_per_layer_nor_one_per_parameter_is_refused(n_values):
    """Only exactly ``n_params`` values are per parameter; others are refused.

    13 parameters here: 12, 14 or 26 values are neither per layer (2) nor
    per parameter, and must give the ValueError naming both. Reading "at
    least n_params" as per parameter would return a vector of the wrong
    length, which fails later and far from the cause.
    """
    with pytest.raises(
        ValueError, match=r"alpha must be a scalar .* per parameter \(13\)"
    ):
        prior_precision_vector(LAYOUT, np.ones(n_values), 1.0)


@pytest.mark.parametrize("which", ["alpha", "bias_prior_precision"])
@pytest.mark.parametrize("shape", [(2, 1), (2, 2)])
def test_a_two_dimensional_per_layer_precision_is_refused(which, shape):
    """One value per layer means shape ``(n_layers,)``, not ``(n_layers, k)``.

    A check on the first dimension only lets an ``(n_layers, k)`` array
    through, whose per-layer rows then broadcast the ``(n_params,)`` result
    into a matrix (or fail in ``np.where``) instead of naming the parameter.
    """
    values = {"alpha": 1.0, "bias_prior_precision": 1.0, which: np.ones(shape)}
    with pytest.raises(
        ValueError, match=f"^{which} must be a scalar or have one value per layer"
    ):
        prior_precision_vector(LAYOUT, values["alpha"], values["bias_prior_precision"])


@pytest.mark.parametrize("which", ["alpha", "bias_prior_precision"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5], ids=["nan", "inf", "negative"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["scalar", "per-layer"])
def test_a_non_finite_or_negative_precision_is_refused(which, bad, per_layer):
    """Each of ``alpha`` and ``bias_prior_precision`` must be finite and >= 0.

    A NaN or infinite precision would make the MAP objective NaN or pin
    weights at exactly zero, and a negative one makes the prior improper
    (the loss unbounded below); each must be refused by name, per layer too
    (the second layer's value is the bad one there).
    """
    value = np.array([1.0, bad]) if per_layer else bad
    values = {"alpha": 1.0, "bias_prior_precision": 1.0, which: value}
    with pytest.raises(ValueError, match=f"^{which} must be finite and >= 0"):
        prior_precision_vector(LAYOUT, values["alpha"], values["bias_prior_precision"])


def test_boolean_precisions_read_as_zero_and_one():
    """Booleans are numbers (``True`` is 1), as NumPy and Python read them.

    A per-layer boolean mask of weight precisions switches a layer's prior
    off and on; refusing the dtype would reject ``alpha=True`` too, which
    the estimator's ``alpha >= 0`` check accepts.
    """
    precision = prior_precision_vector(LAYOUT, np.array([True, False]), True)
    layer_weight = np.r_[np.ones(9), np.zeros(4)]
    np.testing.assert_array_equal(precision, np.where(BIAS, 1.0, layer_weight))
    assert precision.dtype == np.float64


@pytest.mark.parametrize(
    "alpha, bias, expected",
    [
        (
            ["1", "2"],
            1.0,
            "alpha must be a number or an array of numbers, got ['1', '2'].",
        ),
        (
            1.0,
            "1",
            "bias_prior_precision must be a number or an array of numbers, got '1'.",
        ),
        (
            np.array([1j, 2.0]),
            1.0,
            "alpha must be a number or an array of numbers, "
            "got array([0.+1.j, 2.+0.j]).",
        ),
    ],
    ids=["string-alpha", "string-bias", "complex-alpha"],
)
def test_a_non_numeric_precision_is_refused_by_name(alpha, bias, expected):
    """Strings (which NumPy parses to a ``<U`` array) and complex numbers are
    refused with the message naming the parameter and the value given, not
    with an empty ``ValueError`` (``ValueError(None)``) nor cast to float."""
    with pytest.raises(ValueError) as info:
        prior_precision_vector(LAYOUT, alpha, bias)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    "alpha, bias, expected",
    [
        (
            np.ones(3),
            1.0,
            "alpha must be a scalar or have one value per layer (2) or per "
            "parameter (13), got shape (3,).",
        ),
        (
            1.0,
            np.ones(3),
            "bias_prior_precision must be a scalar or have one value per layer "
            "(2), got shape (3,).",
        ),
    ],
    ids=["alpha", "bias_prior_precision"],
)
def test_only_alpha_is_offered_one_value_per_parameter(alpha, bias, expected):
    """A misshapen precision's error says which shapes that parameter takes.

    ``alpha`` may be per parameter (13 here), ``bias_prior_precision`` only
    per layer (the docstring's shapes): its message must not offer a per
    parameter form it refuses ("or per parameter (None)", or stray text,
    where the message was built as for ``alpha``).
    """
    with pytest.raises(ValueError) as info:
        prior_precision_vector(LAYOUT, alpha, bias)
    assert str(info.value) == expected
