"""Likelihoods on logits: Bernoulli (one logit) and categorical (K logits).

Each likelihood works on ``logits`` of shape ``(n_samples, n_outputs)`` and
targets ``Y`` of the same shape (0/1 for Bernoulli, one-hot for categorical),
with per-sample weights ``sample_weight`` of shape ``(n_samples,)``. All
quantities are SUMMED over samples. Every formula is written to stay finite
for logits of any size (no ``log(sigmoid(f))``, no unshifted ``exp``).
"""

from sklaplace._backend import is_numpy_namespace

__all__ = ["Bernoulli", "Categorical", "likelihood_for"]

#: Widest row whose largest entry :func:`_row_max` takes column by column
#: (NumPy only). NumPy reduces a short last axis slowly; over 1,797 rows
#: the column loop took 5 / 23 / 79 us at 3 / 10 / 32 classes against
#: ``max``'s 66 / 74 / 97 us, and lost beyond about 16 columns (or below
#: 200 rows, by 1 us).
ROW_MAX_COLUMNS = 16


def _row_sum(xp, a):
    """``sum(a, axis=1, keepdims=True)`` as a matrix-vector product.

    NumPy sums a short last axis row by row: over 1,797 rows of 10 classes
    38 us, against 5 us for the product (6-16x faster from 3 to 64 classes).
    """
    return a @ xp.ones((a.shape[1], 1), dtype=a.dtype)


def _row_max(xp, a):
    """``max(a, axis=1, keepdims=True)``, column by column for narrow NumPy ``a``.

    Elsewhere (a GPU) one reduction is one kernel where the loop would
    launch one per column.
    """
    if a.shape[1] > ROW_MAX_COLUMNS or not is_numpy_namespace(xp):
        return xp.max(a, axis=1, keepdims=True)
    top = a[:, :1]
    for k in range(1, a.shape[1]):
        top = xp.maximum(top, a[:, k : k + 1])
    return top


def _log_sigmoid(xp, f):
    return -xp.logaddexp(xp.zeros_like(f), -f)


class Bernoulli:
    """Bernoulli likelihood on one logit: ``log p(y|f) = y f - log(1 + e^f)``."""

    #: The link from the logit to the probability, as MLPClassifier names it.
    out_activation = "logistic"

    @staticmethod
    def n_outputs(n_classes):
        """Return the number of logits for ``n_classes`` classes (always 1)."""
        return 1

    @staticmethod
    def encode(xp, y, n_outputs, dtype):
        """Targets ``Y`` of shape ``(n_samples, 1)`` from class indices ``y``."""
        return xp.astype(xp.reshape(y, (-1, 1)), dtype)

    @staticmethod
    def log_likelihood(xp, logits, Y, sample_weight):
        """``sum_n s_n (y_n f_n - logaddexp(0, f_n))``."""
        per_sample = Y * logits - xp.logaddexp(xp.zeros_like(logits), logits)
        return xp.sum(sample_weight * per_sample[:, 0])

    @staticmethod
    def mean(xp, logits):
        """``sigmoid(f)``, shape ``(n_samples, 1)``."""
        return xp.exp(_log_sigmoid(xp, logits))

    @staticmethod
    def log_proba(xp, logits):
        """Log class probabilities ``[log(1 - p), log p]``, shape ``(n_samples, 2)``."""
        return xp.concat([_log_sigmoid(xp, -logits), _log_sigmoid(xp, logits)], axis=1)

    @classmethod
    def proba(cls, xp, logits):
        """Class probabilities ``[1 - p, p]``, shape ``(n_samples, 2)``."""
        return xp.exp(cls.log_proba(xp, logits))

    @classmethod
    def residual(cls, xp, logits, Y, sample_weight):
        """``s_n (p_n - y_n)``: gradient of the negative log likelihood in ``f``."""
        return sample_weight[:, None] * (cls.mean(xp, logits) - Y)

    @classmethod
    def log_likelihood_and_residual(cls, xp, logits, Y, sample_weight):
        """:meth:`log_likelihood` and :meth:`residual` (one logit: cheap apart)."""
        return (
            cls.log_likelihood(xp, logits, Y, sample_weight),
            cls.residual(xp, logits, Y, sample_weight),
        )

    @staticmethod
    def _variance(xp, logits):
        # p (1 - p) = exp(log_sigmoid(f) + log_sigmoid(-f)): no cancellation.
        return xp.exp(_log_sigmoid(xp, logits) + _log_sigmoid(xp, -logits))

    @classmethod
    def output_hessian(cls, xp, logits, sample_weight):
        """``U -> Lambda U``, ``Lambda_n = s_n p_n (1 - p_n)``, ``U`` (n, 1)."""
        weight = sample_weight[:, None] * cls._variance(xp, logits)
        return lambda U: weight * U

    @classmethod
    def hessian_factor(cls, xp, logits, sample_weight):
        """Rows ``R_n`` of shape ``(n_samples, 1, 1)`` with ``Lambda_n = R_n' R_n``."""
        return xp.sqrt(sample_weight[:, None] * cls._variance(xp, logits))[:, :, None]


class Categorical:
    """Categorical (softmax) likelihood on K logits: ``f_y - logsumexp(f)``."""

    #: The link from the logits to the probabilities, as MLPClassifier names it.
    out_activation = "softmax"

    @staticmethod
    def n_outputs(n_classes):
        """Return the number of logits for ``n_classes`` classes (``n_classes``)."""
        return n_classes

    @staticmethod
    def encode(xp, y, n_outputs, dtype):
        """One-hot targets of shape ``(n_samples, n_outputs)``."""
        classes = xp.arange(n_outputs, dtype=y.dtype)
        return xp.astype(xp.reshape(y, (-1, 1)) == classes, dtype)

    @staticmethod
    def _log_softmax(xp, logits):
        shifted = logits - _row_max(xp, logits)
        # logsumexp(shifted) = log1p(others): with the largest logit's 1
        # taken out of the sum, a probability near 1 keeps its log below 0.
        top = shifted == 0
        zero = xp.zeros_like(shifted)
        others = _row_sum(xp, xp.where(top, zero, xp.exp(shifted)))
        ties = _row_sum(xp, xp.astype(top, shifted.dtype)) - 1.0
        return shifted - xp.log1p(others + ties)

    @classmethod
    def log_proba(cls, xp, logits):
        """``log softmax(f)``, shape ``(n_samples, n_outputs)``."""
        return cls._log_softmax(xp, logits)

    @classmethod
    def proba(cls, xp, logits):
        """``softmax(f)``, shape ``(n_samples, n_outputs)``."""
        return xp.exp(cls._log_softmax(xp, logits))

    @classmethod
    def log_likelihood_and_residual(cls, xp, logits, Y, sample_weight):
        """:meth:`log_likelihood` and :meth:`residual` from one log-softmax."""
        log_p = cls._log_softmax(xp, logits)
        value = xp.sum(sample_weight * _row_sum(xp, Y * log_p)[:, 0])
        return value, sample_weight[:, None] * (xp.exp(log_p) - Y)

    @classmethod
    def log_likelihood(cls, xp, logits, Y, sample_weight):
        """``sum_n s_n (f_{n,y_n} - logsumexp(f_n))``."""
        return cls.log_likelihood_and_residual(xp, logits, Y, sample_weight)[0]

    @classmethod
    def residual(cls, xp, logits, Y, sample_weight):
        """``s_n (p_n - y_n)``: gradient of the negative log likelihood in ``f``."""
        return cls.log_likelihood_and_residual(xp, logits, Y, sample_weight)[1]

    @classmethod
    def output_hessian(cls, xp, logits, sample_weight):
        """``U -> Lambda U``, ``Lambda_n = s_n (diag p_n - p_n p_n')``, at fixed logits.

        The probabilities are computed once, for repeated products.
        """
        p = cls.proba(xp, logits)
        weighted = sample_weight[:, None] * p

        def matvec(U):
            return weighted * (U - _row_sum(xp, p * U))

        return matvec

    @classmethod
    def hessian_factor(cls, xp, logits, sample_weight):
        """Rows ``R_n`` of shape ``(n_samples, K, K)`` with ``Lambda_n = R_n' R_n``.

        Row ``k`` is ``sqrt(s_n p_nk) (e_k - p_n)``: since ``sum_k p_nk = 1``,
        ``sum_k p_k (e_k - p)(e_k - p)' = diag(p) - p p'``.
        """
        p = cls.proba(xp, logits)
        n_outputs = p.shape[1]
        eye = xp.eye(n_outputs, dtype=p.dtype)
        scale = xp.sqrt(sample_weight[:, None] * p)
        return scale[:, :, None] * (eye[None, :, :] - p[:, None, :])


def likelihood_for(n_classes):
    """Bernoulli with one logit for two classes, categorical otherwise."""
    return Bernoulli if n_classes == 2 else Categorical
