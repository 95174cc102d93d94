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
