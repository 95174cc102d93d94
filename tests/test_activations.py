import numpy as np
import pytest

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


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_are_finite_for_huge_inputs(name):
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    a = ACTIVATIONS[name](np, z)
    assert np.all(np.isfinite(a))
    assert np.all(np.isfinite(DERIVATIVES[name](np, a)))
    assert np.all(np.isfinite(SECOND_DERIVATIVES[name](np, a)))
