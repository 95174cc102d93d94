import numpy as np
import pytest
from scipy.special import expit

from sklaplace._activations import ACTIVATIONS, DERIVATIVES, SECOND_DERIVATIVES
from sklaplace._testing import numerical_derivative


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivatives_match_finite_differences(name):
    # Avoid relu's kink at 0; everything else is smooth.
    z = np.linspace(-3.1, 2.9, 25)
    phi = lambda t: ACTIVATIONS[name](np, t)  # noqa: E731
    first = np.diag(numerical_derivative(phi, z, h=1e-4))
    a = phi(z)
    np.testing.assert_allclose(DERIVATIVES[name](np, a), first, rtol=1e-8, atol=1e-10)
    second = np.diag(
        numerical_derivative(lambda t: DERIVATIVES[name](np, phi(t)), z, h=1e-4)
    )
    np.testing.assert_allclose(
        SECOND_DERIVATIVES[name](np, a), second, rtol=1e-7, atol=1e-9
    )


def _reference(name, z):
    """Activation, first and second derivative in z, written from their
    definitions with SciPy (nothing from sklaplace), exact for any z."""
    s = expit(z)
    return {
        "identity": (z, np.ones_like(z), np.zeros_like(z)),
        "logistic": (s, s * expit(-z), s * expit(-z) * (1 - 2 * s)),
        "tanh": (
            np.tanh(z),
            1 - np.tanh(z) ** 2,
            -2 * np.tanh(z) * (1 - np.tanh(z) ** 2),
        ),
        "relu": (np.maximum(z, 0.0), (z > 0).astype(float), np.zeros_like(z)),
        "softplus": (np.logaddexp(0.0, z), s, s * expit(-z)),
        "elu": (
            np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
            np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))),
            np.where(z > 0, 0.0, np.exp(np.minimum(z, 0.0))),
        ),
    }[name]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_are_finite_for_huge_inputs(name):
    # Finite is not enough: far from 0 the values must still be the
    # activation's (softplus(1e4) = 1e4, not a clipped 30), as must the
    # derivatives (softplus' = 1, logistic' = 0). The derivative test above
    # only sees |z| < 3.1.
    z = np.array([-1e4, -50.0, -35.0, 0.0, 35.0, 50.0, 1e4])
    a = ACTIVATIONS[name](np, z)
    assert np.all(np.isfinite(a))
    assert np.all(np.isfinite(DERIVATIVES[name](np, a)))
    assert np.all(np.isfinite(SECOND_DERIVATIVES[name](np, a)))
    value, first, second = _reference(name, z)
    np.testing.assert_allclose(a, value, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(DERIVATIVES[name](np, a), first, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(
        SECOND_DERIVATIVES[name](np, a), second, rtol=1e-7, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_never_overflow_or_divide_by_zero(name, dtype):
    """No activation or derivative overflows on the way, for any input.

    Values can be right while an intermediate overflows: ``1 / (1 + exp(-z))``
    is 0 at ``z = -1e4`` after ``exp(1e4) = inf``, and ELU's ``expm1(z)`` is
    inf for large positive ``z`` unless only its negative part enters. Each raises
    NumPy's overflow RuntimeWarning in a user's fit (float32 overflows
    ``exp`` from ``z = 89``). Underflow to 0 is harmless and allowed. The
    values themselves are pinned in test_activations.py; here they are
    computed with overflow, division by zero and invalid operations raising.
    """
    z = np.array([-1e4, -1e3, -90.0, -35.0, 0.0, 35.0, 90.0, 1e3, 1e4], dtype=dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        a = ACTIVATIONS[name](np, z)
        first = DERIVATIVES[name](np, a)
        second = SECOND_DERIVATIVES[name](np, a)
    for value in (a, first, second):
        assert np.all(np.isfinite(value))


def _awkward_inputs(dtype):
    """A (n, 3) grid with -0.0, subnormals, values near 0, large ones and inf."""
    tiny = np.finfo(dtype).smallest_subnormal
    magnitudes = np.r_[
        0.0, tiny, 1e-300, 1e-40, 1e-17, 1e-8, 0.5, 1.0, 3.0, 1e3, np.inf
    ]
    z = np.r_[-magnitudes, magnitudes, -0.0].astype(dtype)
    return np.tile(z[:, None], (1, 3)) * np.array([1.0, 0.5, 2.0], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_keep_the_inputs_shape_and_dtype(name, dtype):
    z = _awkward_inputs(dtype)
    with np.errstate(under="ignore"):
        a = ACTIVATIONS[name](np, z)
        for value in (a, DERIVATIVES[name](np, a), SECOND_DERIVATIVES[name](np, a)):
            assert value.shape == z.shape and value.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rewritten_activations_equal_their_formulas_to_the_bit(dtype):
    """ReLU and ELU are computed as a maximum or minimum with broadcast
    constants, the logistic and softplus with a broadcast 0, and the
    logistic's and tanh's slopes in place; each value must be its formula's,
    bit for bit, at -0.0, subnormals, the kink and inf too (a swapped
    maximum, a slope of the other branch or a sign slip differs by far
    more)."""
    z = _awkward_inputs(dtype)
    with np.errstate(under="ignore", invalid="ignore"):
        elu = np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
        logistic = np.exp(-np.logaddexp(0.0, -z))
        expected = {
            "relu": (np.where(z > 0, z, 0).astype(dtype), None, None),
            "elu": (
                elu,
                np.where(elu > 0, 1, elu + 1).astype(dtype),
                np.where(elu > 0, 0, elu + 1).astype(dtype),
            ),
            "logistic": (logistic, logistic * (1 - logistic), None),
            "tanh": (np.tanh(z), 1 - np.tanh(z) * np.tanh(z), None),
            "softplus": (np.logaddexp(0.0, z), None, None),
        }
        for name, (value, first, second) in expected.items():
            a = ACTIVATIONS[name](np, z)
            for got, want in (
                (a, value),
                (DERIVATIVES[name](np, a), first),
                (SECOND_DERIVATIVES[name](np, a), second),
            ):
                if want is not None:
                    assert got.dtype == want.dtype
                    np.testing.assert_array_equal(
                        got.view(np.uint8), want.view(np.uint8)
                    )


def _finite_inputs():
    z = _awkward_inputs(np.float64)
    return z[np.all(np.isfinite(z), axis=1)]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_and_derivatives_leave_their_input_alone(name):
    # The slopes work in place on a temporary: never on the array passed in.
    z = _finite_inputs()
    z_before = z.copy()
    a = ACTIVATIONS[name](np, z)
    a_before = a.copy()
    DERIVATIVES[name](np, a)
    SECOND_DERIVATIVES[name](np, a)
    np.testing.assert_array_equal(z, z_before)
    np.testing.assert_array_equal(a, a_before)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_stay_on_their_inputs_device(name):
    """The broadcast constants are made on the input's device: array_api_strict
    refuses to combine arrays of two devices."""
    xp = pytest.importorskip("array_api_strict")
    other = xp.Device("device1")
    z = xp.asarray(_finite_inputs(), device=other)
    a = ACTIVATIONS[name](xp, z)
    for value in (a, DERIVATIVES[name](xp, a), SECOND_DERIVATIVES[name](xp, a)):
        assert value.device == other and value.shape == z.shape
