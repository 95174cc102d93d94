"""Hidden-layer activations and their first and second derivatives.

As in :mod:`sklearn.neural_network._base`, each derivative is written in
terms of the activation's OUTPUT ``a = phi(z)``, so the forward pass need not
keep the pre-activations. Every function takes the namespace ``xp`` first.

Constants enter as 0-d arrays (:func:`_constant`), broadcast;
ELU and its slope are a ``maximum`` and a ``minimum`` rather than a
``where``; tanh's and the logistic's slopes work in place. On a wide layer
each full-size temporary costs about as much as the arithmetic (the
benchmark report, session 66); every value other than a NaN is the same,
to the bit, as the plain formulas give.
"""

from array_api_compat import device

__all__ = ["ACTIVATIONS", "DERIVATIVES", "SECOND_DERIVATIVES"]


def _constant(xp, value, like):
    """``value`` as a 0-d array of ``like``'s dtype on its device (broadcast)."""
    return xp.full((), value, dtype=like.dtype, device=device(like))


def _identity(xp, z):
    return z


def _logistic(xp, z):
    # exp(-logaddexp(0, -z)) is sigmoid(z) without overflow for any z.
    return xp.exp(-xp.logaddexp(_constant(xp, 0.0, z), -z))


def _tanh(xp, z):
    return xp.tanh(z)


def _relu(xp, z):
    return xp.maximum(z, _constant(xp, 0.0, z))


def _softplus(xp, z):
    return xp.logaddexp(_constant(xp, 0.0, z), z)


def _elu(xp, z):
    # expm1 of the negative part only: no overflow for large positive z. The
    # larger of z and expm1(min(z, 0)) is z for z > 0 and expm1(z) >= z else.
    return xp.maximum(z, xp.expm1(xp.minimum(z, _constant(xp, 0.0, z))))


ACTIVATIONS = {
    "identity": _identity,
    "logistic": _logistic,
    "tanh": _tanh,
    "relu": _relu,
    "softplus": _softplus,
    "elu": _elu,
}


def _softplus_sigmoid(xp, a):
    # For a = softplus(z): sigmoid(z) = 1 - exp(-a), accurate for tiny a too.
    return -xp.expm1(-a)


#: ReLU outputs at most this are treated as on the kink (slope 0). A MAP of a
#: ReLU network often lies ON a kink (some pre-activation exactly 0 in exact
#: arithmetic), where a solver that stalls there leaves it anywhere within
#: about 1e-11 of 0 (measured), depending on the order of summation; without
#: the margin the Jacobian, and with it the posterior and alpha="evidence",
#: would flip with rounding (e.g. between integer sample weights and repeated
#: rows). Pre-activations of standardised data are O(1).
RELU_KINK = 1e-8


def _logistic_slope(xp, a):
    slope = 1 - a
    slope *= a  # a (1 - a), with one full-size temporary
    return slope


def _tanh_slope(xp, a):
    # 1 - a^2 (the same bits): `1 - slope` would allocate a second array.
    slope = a * a
    slope *= -1
    slope += 1
    return slope


DERIVATIVES = {
    "identity": lambda xp, a: xp.ones_like(a),
    "logistic": _logistic_slope,
    "tanh": _tanh_slope,
    "relu": lambda xp, a: xp.astype(a > RELU_KINK, a.dtype),
    "softplus": _softplus_sigmoid,
    # For a = elu(z) <= 0, a = exp(z) - 1, so exp(z) = a + 1 (<= 1); 1 for a > 0.
    "elu": lambda xp, a: xp.minimum(a + 1, _constant(xp, 1.0, a)),
}


def _softplus_second(xp, a):
    s = _softplus_sigmoid(xp, a)
    return s * (1 - s)


SECOND_DERIVATIVES = {
    "identity": lambda xp, a: xp.zeros_like(a),
    "logistic": lambda xp, a: a * (1 - a) * (1 - 2 * a),
    "tanh": lambda xp, a: -2 * a * (1 - a * a),
    # Zero almost everywhere; the kink at 0 has measure zero.
    "relu": lambda xp, a: xp.zeros_like(a),
    "softplus": _softplus_second,
    # Continuous first derivative; the second jumps from 1 to 0 at z = 0.
    "elu": lambda xp, a: xp.where(a > 0, _constant(xp, 0.0, a), a + 1),
}
