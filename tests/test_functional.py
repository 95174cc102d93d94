import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sklaplace import (
    log_posterior,
    log_posterior_grad,
    log_posterior_hessian,
    log_posterior_hvp,
)
from sklaplace._testing import dense_ggn, numerical_derivative
from tests.conftest import record_row_chunks


def _all_four(v):
    """The four functions, each with its extra arguments (``v`` for the product)."""
    return [
        (log_posterior, ()),
        (log_posterior_grad, ()),
        (log_posterior_hessian, ()),
        (log_posterior_hvp, (v,)),
    ]


@pytest.fixture(scope="module", params=[2, 3], ids=["binary", "3cls"])
def fitted_mlp(request):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if request.param == 2:
        y = (y == 2).astype(int)
    mlp = MLPClassifier(
        (5,), activation="tanh", alpha=0.1, solver="lbfgs", max_iter=50, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    return mlp, X, y


def test_value_is_minus_n_times_mlpclassifier_objective(fitted_mlp):
    mlp, X, y = fitted_mlp
    kw = dict(activation="tanh", alpha=0.1, bias_prior_precision=0.0)
    value = log_posterior(mlp.coefs_, mlp.intercepts_, X, y, **kw)
    penalty = 0.5 * 0.1 * sum(np.sum(W**2) for W in mlp.coefs_)
    expected = -(log_loss(y, mlp.predict_proba(X), normalize=False) + penalty)
    np.testing.assert_allclose(value, expected, rtol=1e-10)


def test_derivatives_are_of_the_log_posterior(fitted_mlp):
    mlp, X, y = fitted_mlp
    kw = dict(activation="tanh", alpha=0.1, bias_prior_precision=0.5)
    theta = np.concatenate(
        [a.ravel() for pair in zip(mlp.coefs_, mlp.intercepts_) for a in pair]
    )
    sizes = [(W.shape, b.shape) for W, b in zip(mlp.coefs_, mlp.intercepts_)]

    def unpack(t):
        coefs, intercepts, start = [], [], 0
        for ws, bs in sizes:
            coefs.append(t[start : start + np.prod(ws)].reshape(ws))
            start += np.prod(ws)
            intercepts.append(t[start : start + bs[0]])
            start += bs[0]
        return coefs, intercepts

    grad = log_posterior_grad(mlp.coefs_, mlp.intercepts_, X, y, **kw)
    np.testing.assert_allclose(
        grad,
        numerical_derivative(lambda t: log_posterior(*unpack(t), X, y, **kw), theta),
        rtol=1e-6,
        atol=1e-7,
    )
    H = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="exact", **kw)
    G = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="ggn", **kw)
    d = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="ggn_diag", **kw)
    e = log_posterior_hessian(
        mlp.coefs_, mlp.intercepts_, X, y, kind="exact_diag", **kw
    )
    np.testing.assert_allclose(
        H,
        numerical_derivative(
            lambda t: log_posterior_grad(*unpack(t), X, y, **kw), theta
        ),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(d, np.diag(G))
    np.testing.assert_allclose(e, np.diag(H), rtol=1e-10, atol=1e-12)
    # tanh: the exact diagonal differs from the GGN's (else "exact_diag"
    # silently returning the GGN's would pass).
    assert np.max(np.abs(e - d)) > 1e-3
    assert (
        np.linalg.eigvalsh(G).max() < 0
    )  # the GGN of the LOG posterior is negative definite
    v = np.random.RandomState(0).normal(size=theta.shape)
    for kind, M in (("exact", H), ("ggn", G)):
        np.testing.assert_allclose(
            log_posterior_hvp(mlp.coefs_, mlp.intercepts_, X, y, v, kind=kind, **kw),
            M @ v,
            rtol=1e-10,
            atol=1e-10,
        )


def test_sample_weight_is_row_repetition():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(8, 2)), np.array([0, 1] * 4)
    coefs, intercepts = (
        [rng.normal(size=(2, 3)), rng.normal(size=(3, 1))],
        [rng.normal(size=3), rng.normal(size=1)],
    )
    w = np.array([1, 2, 0, 1, 3, 1, 1, 2])
    Xr, yr = np.repeat(X, w, axis=0), np.repeat(y, w)
    kw = dict(activation="softplus", alpha=0.3)
    for f in (log_posterior, log_posterior_grad, log_posterior_hessian):
        np.testing.assert_allclose(
            f(coefs, intercepts, X, y, sample_weight=w, **kw),
            f(coefs, intercepts, Xr, yr, **kw),
            rtol=1e-12,
        )
    v = rng.normal(size=13)
    for kind in ("exact", "ggn"):
        np.testing.assert_allclose(
            log_posterior_hvp(
                coefs, intercepts, X, y, v, kind=kind, sample_weight=w, **kw
            ),
            log_posterior_hvp(coefs, intercepts, Xr, yr, v, kind=kind, **kw),
            rtol=1e-12,
        )


def test_the_defaults_are_mlpclassifiers_alpha_and_a_flat_bias_prior():
    """``alpha=1e-4`` (``MLPClassifier``'s) and ``bias_prior_precision=0``
    by default in all four functions: the same numbers as when passed, and
    not those of another prior."""
    rng = np.random.RandomState(1)
    X, y = rng.normal(size=(6, 2)), np.array([0, 1, 2] * 2)
    coefs = [rng.normal(size=(2, 3)), rng.normal(size=(3, 3))]
    intercepts = [rng.normal(size=3), rng.normal(size=3)]
    v = rng.normal(size=21)
    explicit = dict(alpha=1e-4, bias_prior_precision=0.0)
    other = dict(alpha=1e-4, bias_prior_precision=1.0)
    for f, args in _all_four(v):
        default = f(coefs, intercepts, X, y, *args)
        np.testing.assert_array_equal(
            default, f(coefs, intercepts, X, y, *args, **explicit)
        )
        assert not np.allclose(default, f(coefs, intercepts, X, y, *args, **other))
        assert not np.allclose(
            default, f(coefs, intercepts, X, y, *args, alpha=1.0001), rtol=1e-6
        )


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(activation="sigmoid"), "activation"),
        (dict(kind="kfac"), "kind"),
        (dict(alpha=-1.0), "alpha"),
        (dict(bias_prior_precision=[1.0, 2.0, 3.0]), "bias_prior_precision"),
        # NaN and inf weights had come back as the log posterior itself, a
        # negative one as a NaN GGN.
        (
            dict(sample_weight=[1.0, np.nan, 1.0]),
            r"finite \(in the network.s dtype\) and non-negative",
        ),
        (
            dict(sample_weight=[1.0, np.inf, 1.0]),
            r"finite \(in the network.s dtype\) and non-negative",
        ),
        (
            dict(sample_weight=[1.0, -1.0, 1.0]),
            r"finite \(in the network.s dtype\) and non-negative",
        ),
    ],
)
def test_bad_arguments_raise(bad, match):
    X, y = np.zeros((3, 2)), np.array([0, 1, 0])
    coefs, intercepts = [np.zeros((2, 2)), np.zeros((2, 1))], [np.zeros(2), np.zeros(1)]
    with pytest.raises(ValueError, match=match):
        log_posterior_hessian(coefs, intercepts, X, y, **bad)


@pytest.mark.parametrize("n_outputs, bad_label", [(1, 2), (3, 3), (3, -1)])
@pytest.mark.parametrize(
    "function",
    [log_posterior, log_posterior_grad, log_posterior_hessian, log_posterior_hvp],
)
def test_labels_outside_the_outputs_classes_are_refused(function, n_outputs, bad_label):
    # A label K one-hot encodes to a row of zeros, which would drop out of
    # every sum silently: 0..K-1 only (0 and 1 for one logit).
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, bad_label])
    coefs = [np.zeros((2, 2)), np.zeros((2, n_outputs))]
    intercepts = [np.zeros(2), np.zeros(n_outputs)]
    args = (np.zeros(2 * 2 + 2 + 2 * n_outputs + n_outputs),)
    args = args if function is log_posterior_hvp else ()
    top = max(n_outputs, 2) - 1
    with pytest.raises(ValueError, match=f"0..{top}"):
        function(coefs, intercepts, X, y, *args)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(y=np.array([[0], [1], [0]])), r"y must be 1-D, of shape \(3,\)"),
        (
            dict(X=np.zeros((0, 2)), y=np.zeros(0, int)),
            r"^X holds no samples \(0 rows\), as fit would refuse\.$",
        ),
        (dict(activation=["relu"]), "activation must be one of"),
        (dict(kind=["exact"]), "kind must be one of"),
        (dict(coefs=[np.zeros((2, 2)), np.zeros((2, 0))]), r"coefs\[1\] has no output"),
    ],
)
def test_odd_arguments_are_refused_naming_them(change, match):
    """A column ``y``, no rows, a list where a name belongs, a layer of no
    units: each had given a message about something else (class indices,
    ``unhashable type: 'list'``) or a value for no data."""
    args = dict(
        coefs=[np.zeros((2, 2)), np.zeros((2, 1))],
        intercepts=[np.zeros(2), np.zeros(1)],
        X=np.zeros((3, 2)),
        y=np.array([0, 1, 0]),
    )
    args.update(change)
    if args["coefs"][-1].shape[1] == 0:
        args["intercepts"] = [np.zeros(2), np.zeros(0)]
    with pytest.raises(ValueError, match=match):
        log_posterior_hessian(**args)


@pytest.mark.parametrize("kind", ["exact", "ggn", "exact_diag", "ggn_diag"])
def test_a_row_of_weight_zero_counts_for_nothing_however_large(kind):
    """A row of weight 0 at 1e200 is dropped, as ``fit`` drops it: the
    Hessian is the one without the row (``0 * inf`` had made the exact one
    and both diagonals NaN). At 1e160 with weight 1 the curvature overflows
    (``x**2`` is 1e320): refused, where the exact Hessian had been NaN and
    the GGN finite."""
    rng = np.random.RandomState(0)
    coefs, intercepts, X, y = _small_network(rng)
    far = np.r_[X, np.full((1, 3), 1e200)]
    y_far = np.r_[y, 0]
    weight = np.r_[np.ones(len(y)), 0.0]
    kw = dict(activation="tanh", kind=kind)
    with_row = log_posterior_hessian(
        coefs, intercepts, far, y_far, sample_weight=weight, **kw
    )
    without = log_posterior_hessian(coefs, intercepts, X, y, **kw)
    np.testing.assert_array_equal(with_row, without)
    with pytest.raises(ValueError, match="curvature of the log posterior is not"):
        log_posterior_hessian(
            coefs, intercepts, np.r_[X[:-1], np.full((1, 3), 1e160)], y, **kw
        )


def test_overflowing_logits_and_vectors_are_refused():
    """ReLU weights of 1e200 on unit inputs: the logits overflow, and the log
    posterior had been NaN (``inf - inf``); a NaN or infinite ``v`` gave
    NaN Hessian-vector products."""
    X, y = np.ones((2, 1)), np.array([0, 1])
    coefs, intercepts = (
        [np.full((1, 1), 1e200), np.full((1, 1), 1e200)],
        [
            np.zeros(1),
            np.zeros(1),
        ],
    )
    with pytest.raises(ValueError, match="logits overflow"):
        log_posterior(coefs, intercepts, X, y, activation="relu")
    small = [np.ones((1, 1)), np.ones((1, 1))]
    for v in ([np.nan, 0, 0, 0], [np.inf, 0, 0, 0]):
        with pytest.raises(ValueError, match=r"^v must be finite \(in the network"):
            log_posterior_hvp(small, intercepts, X, y, np.array(v))


def test_former_kind_diag_warns_and_gives_the_ggn_diagonal(fitted_mlp):
    mlp, X, y = fitted_mlp
    kw = dict(activation="tanh", alpha=0.1)
    expected = log_posterior_hessian(
        mlp.coefs_, mlp.intercepts_, X, y, kind="ggn_diag", **kw
    )
    with pytest.warns(FutureWarning, match="kind='ggn_diag'"):
        d = log_posterior_hessian(mlp.coefs_, mlp.intercepts_, X, y, kind="diag", **kw)
    np.testing.assert_array_equal(d, expected)


def test_labels_out_of_range_raise():
    with pytest.raises(ValueError, match="class indices"):
        log_posterior(
            [np.zeros((2, 1))], [np.zeros(1)], np.zeros((3, 2)), np.array([0, 1, 2])
        )


def _small_network(rng, dtype=np.float64):
    """A 3-4-3 tanh network and 10 rows of data, as ``dtype`` arrays."""
    X, y = rng.normal(size=(10, 3)).astype(dtype), np.arange(10) % 3
    coefs = [
        rng.normal(size=(3, 4)).astype(dtype),
        rng.normal(size=(4, 3)).astype(dtype),
    ]
    intercepts = [rng.normal(size=4).astype(dtype), rng.normal(size=3).astype(dtype)]
    return coefs, intercepts, X, y


def test_float32_in_float32_out_and_no_weights_are_unit_weights():
    """A float32 network is computed in float32, with or without ``sample_weight``.

    ``sample_weight=None`` means weight 1 on every row: the same numbers and
    dtype as ``np.ones``; and float32 results agree with float64 ones to
    float32 precision.
    """
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0), np.float32)
    kw = dict(activation="tanh", alpha=0.5, bias_prior_precision=0.1)
    v = np.random.RandomState(1).normal(size=31).astype(np.float32)
    as64 = lambda arrays: [a.astype(np.float64) for a in arrays]  # noqa: E731
    for f, extra in _all_four(v):
        value = f(coefs, intercepts, X, y, *extra, **kw)
        unit = f(coefs, intercepts, X, y, *extra, sample_weight=np.ones(10), **kw)
        assert value.dtype == unit.dtype == np.float32
        np.testing.assert_array_equal(value, unit)
        double = f(
            as64(coefs),
            as64(intercepts),
            X.astype(np.float64),
            y,
            *[e.astype(np.float64) for e in extra],
            **kw,
        )
        np.testing.assert_allclose(value, double, rtol=1e-4, atol=1e-4)


def test_a_one_byte_memory_budget_sums_one_row_at_a_time():
    """The smallest positive budget is valid: one row per chunk, same Hessian."""
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    for kind in ("exact", "ggn", "ggn_diag"):
        np.testing.assert_allclose(
            log_posterior_hessian(coefs, intercepts, X, y, kind=kind, memory_budget=1),
            log_posterior_hessian(coefs, intercepts, X, y, kind=kind),
            rtol=1e-12,
            atol=1e-12,
        )


def test_with_numpy_weights_any_x_np_asarray_takes_is_taken():
    """With NumPy weights, another library's ``X`` (dask, array_api_strict)
    is copied to the host, a SciPy sparse ``X`` densified and a NumPy
    subclass (a masked array) made a plain array, as ``np.asarray``
    and the estimator take them: each had raised (mixed namespaces, "dtype
    object" for the sparse matrix, a broadcast error for the masked array)."""
    from scipy import sparse

    da = pytest.importorskip("dask.array")
    xps = pytest.importorskip("array_api_strict")
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    w = np.arange(1.0, 11.0)
    expected = log_posterior_grad(coefs, intercepts, X, y, sample_weight=w)
    for X_like in (
        da.from_array(X, chunks=4),
        xps.asarray(X),
        sparse.csr_array(X),
        np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool)),
    ):
        np.testing.assert_array_equal(
            log_posterior_grad(coefs, intercepts, X_like, y, sample_weight=w),
            expected,
        )


def test_another_librarys_network_with_a_numpy_x_is_refused():
    """The network of a non-NumPy library and a NumPy ``X`` raise TypeError
    (the computation would run in the network's namespace, which need not
    take NumPy arrays). The other way round, with NumPy weights, ``X`` is
    anything ``np.asarray`` takes, another library's arrays included
    (``test_with_numpy_weights_any_x_np_asarray_takes_is_taken``)."""
    xps = pytest.importorskip("array_api_strict")
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    strict = lambda arrays: [xps.asarray(a) for a in arrays]  # noqa: E731
    with pytest.raises(TypeError, match="Multiple namespaces"):
        log_posterior_grad(strict(coefs), strict(intercepts), X, y)


def test_integer_and_boolean_inputs_equal_their_float_values():
    """Integer and boolean ``X`` compute as their float values, in any namespace.

    A strict namespace promotes no integer against a float and takes no
    ``isfinite`` of booleans: both had raised TypeError there.
    """
    xps = pytest.importorskip("array_api_strict")
    coefs, intercepts, _, y = _small_network(np.random.RandomState(0))
    rng = np.random.RandomState(1)
    integers = rng.randint(-2, 3, size=(y.shape[0], coefs[0].shape[0]))
    v = rng.normal(size=sum(c.size for c in coefs) + sum(b.size for b in intercepts))
    strict = lambda arrays: [xps.asarray(a) for a in arrays]  # noqa: E731
    for X in (integers, integers > 0):
        floats = X.astype(np.float64)
        expected = log_posterior_grad(coefs, intercepts, floats, y)
        product = log_posterior_hvp(coefs, intercepts, floats, y, v)
        np.testing.assert_array_equal(
            log_posterior_grad(coefs, intercepts, X, y), expected
        )
        got = log_posterior_grad(strict(coefs), strict(intercepts), xps.asarray(X), y)
        assert got.dtype == xps.float64
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-15)
        got = log_posterior_hvp(
            strict(coefs), strict(intercepts), xps.asarray(X), y, xps.asarray(v)
        )
        np.testing.assert_allclose(np.asarray(got), product, rtol=1e-13, atol=1e-15)


def test_integer_weights_compute_as_their_float_values():
    """Integer or boolean coefs and intercepts compute in float64, in any
    namespace: computed in their own dtype, a fractional alpha, bias prior
    precision, sample weight and ``v`` had been truncated to integers (1.5
    to 1, 0.5 to 0) without a word. Complex weights are refused by name."""
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.RandomState(3)
    X, y = rng.normal(size=(8, 2)), np.array([0, 1, 2, 1] * 2)
    coefs = [rng.randint(-2, 3, size=(2, 3)), rng.randint(-2, 3, size=(3, 3))]
    intercepts = [rng.randint(-2, 3, size=3), rng.randint(-1, 1, size=3) > 0]
    floats = [c.astype(np.float64) for c in coefs]
    float_intercepts = [b.astype(np.float64) for b in intercepts]
    v = np.full(21, 0.5)
    kw = dict(alpha=1.5, bias_prior_precision=0.5, sample_weight=np.full(8, 0.5))
    for f, args in _all_four(v):
        expected = f(floats, float_intercepts, X, y, *args, **kw)
        got = f(coefs, intercepts, X, y, *args, **kw)
        assert np.asarray(got).dtype == np.float64
        np.testing.assert_array_equal(got, expected)
    strict = [xps.asarray(c) for c in coefs], [xps.asarray(b) for b in intercepts]
    got = log_posterior_grad(*strict, xps.asarray(X), y, **kw)
    np.testing.assert_allclose(
        np.asarray(got), log_posterior_grad(floats, float_intercepts, X, y, **kw)
    )
    complex_coefs = [floats[0] + 1j, floats[1]]
    with pytest.raises(TypeError, match=r"coefs\[0\] must hold real numbers"):
        log_posterior(complex_coefs, float_intercepts, X, y)


def test_array_likes_are_taken_and_a_tuning_string_is_refused():
    pd = pytest.importorskip("pandas")
    xps = pytest.importorskip("array_api_strict")
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    w = np.arange(1.0, 11.0)
    v = np.random.RandomState(1).normal(size=sum(c.size for c in coefs) + 7)
    expected = log_posterior_grad(coefs, intercepts, X, y, sample_weight=w)
    np.testing.assert_array_equal(
        log_posterior_grad(
            coefs, intercepts, X, pd.Series(y), sample_weight=pd.Series(w)
        ),
        expected,
    )
    product = log_posterior_hvp(coefs, intercepts, X, y, v)
    np.testing.assert_array_equal(
        log_posterior_hvp(coefs, intercepts, X, y, list(v)), product
    )
    # X as a list or a DataFrame, as scikit-learn takes it (a list had
    # raised array_api_compat's "list is not a supported array type").
    for X_like in (X.tolist(), pd.DataFrame(X)):
        np.testing.assert_array_equal(
            log_posterior_grad(coefs, intercepts, X_like, y, sample_weight=w),
            expected,
        )
    # A NumPy v with another namespace's network is converted, not mixed.
    strict = [xps.asarray(a) for a in coefs], [xps.asarray(b) for b in intercepts]
    np.testing.assert_allclose(
        np.asarray(log_posterior_hvp(*strict, xps.asarray(X), y, v)), product
    )
    with pytest.raises(
        TypeError, match="alpha must be a real number.*LaplaceMLPClassifier"
    ):
        log_posterior(coefs, intercepts, X, y, alpha="evidence")


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_values_that_overflow_the_networks_dtype_or_are_complex_are_refused():
    # 1e39 is finite in float64 and inf in float32: checked after the cast
    # (a float32 network had returned -inf and an all-NaN gradient), and
    # refused without NumPy's "overflow encountered in cast" besides.
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0), np.float32)
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        log_posterior(coefs, intercepts, X, y, sample_weight=np.full(10, 1e39))
    with pytest.raises(ValueError, match="alpha and bias_prior_precision"):
        log_posterior(coefs, intercepts, X, y, alpha=1e39)
    # A complex value would lose its imaginary part.
    with pytest.raises(TypeError, match="sample_weight must be a real number"):
        log_posterior(coefs, intercepts, X, y, sample_weight=np.ones(10) + 1j)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        log_posterior(coefs, intercepts, X, y, alpha=1.0 + 1j)
    hint = r" \(for alpha='evidence' use LaplaceMLPClassifier\)\.$"
    with pytest.raises(TypeError, match=r"^alpha must be a real number.*" + hint):
        log_posterior(coefs, intercepts, X, y, alpha="evidence")
    with pytest.raises(TypeError, match=r"got 'a'\.$"):  # the hint is alpha's
        log_posterior(coefs, intercepts, X, y, bias_prior_precision="a")
    for bad_X in (X + 1j, np.full(X.shape, "a")):
        with pytest.raises(TypeError, match="X must hold real numbers"):
            log_posterior(coefs, intercepts, bad_X, y)
    # v, the same way: named in both errors.
    with pytest.raises(ValueError, match=r"^v must be finite \(in the network's dtype"):
        log_posterior_hvp(coefs, intercepts, X, y, np.full(31, 1e39))
    with pytest.raises(TypeError, match=r"^v must be a real number"):
        log_posterior_hvp(coefs, intercepts, X, y, np.ones(31) + 1j)


def test_the_full_hessian_beyond_1024_parameters_is_the_closed_form():
    # Bayesian logistic regression with 1,101 parameters: the GGN and the
    # exact Hessian (equal for a linear model) are -(Xh' diag(s p (1 - p)) Xh
    # + A). The dense accumulator mirrors its triangle in blocks of 512 rows,
    # so only models beyond 1,024 parameters reach a third block.
    from scipy.special import expit

    rng = np.random.RandomState(0)
    n, d = 40, 1100
    X = rng.normal(size=(n, d))
    y = rng.randint(0, 2, n)
    weight = rng.uniform(0.5, 2.0, n)
    coef, intercept = rng.normal(scale=0.05, size=(d, 1)), np.array([0.3])
    Xh = np.hstack([X, np.ones((n, 1))])
    p = expit(Xh @ np.concatenate([coef[:, 0], intercept]))
    prior = np.concatenate([np.full(d, 0.5), [0.2]])
    expected = -((Xh.T * (weight * p * (1 - p))) @ Xh + np.diag(prior))
    for kind in ("ggn", "exact"):
        H = log_posterior_hessian(
            [coef],
            [intercept],
            X,
            y,
            kind=kind,
            activation="tanh",
            alpha=0.5,
            bias_prior_precision=0.2,
            sample_weight=weight,
        )
        np.testing.assert_allclose(H, expected, rtol=1e-10, atol=1e-10)


def test_the_functional_api_takes_a_boolean_X():
    rng = np.random.RandomState(0)
    coefs = [rng.normal(size=(3, 2)), rng.normal(size=(2, 1))]
    intercepts = [rng.normal(size=2), rng.normal(size=1)]
    X_bool = rng.rand(10, 3) > 0.5
    y = np.arange(10) % 2
    assert log_posterior(coefs, intercepts, X_bool, y) == log_posterior(
        coefs, intercepts, X_bool.astype(np.float64), y
    )


def test_shape_errors_name_the_shape_expected():
    """Each refusal of a wrong shape states the right one in full: the
    feature count (the first layer's input, not its output), the row count
    of ``y`` and ``sample_weight`` and the parameter count of ``v``; a
    one-dimensional ``X`` or an array in place of the intercepts' list is
    refused by name, not by an ``IndexError`` further on."""
    rng = np.random.RandomState(2)
    X, y = rng.normal(size=(6, 2)), np.array([0, 1, 2] * 2)
    coefs = [rng.normal(size=(2, 4)), rng.normal(size=(4, 3))]
    intercepts = [rng.normal(size=4), rng.normal(size=3)]
    v = rng.normal(size=27)
    cases = [
        (
            (coefs, intercepts, X[:, :1], y),
            {},
            r"X must have shape \(n_samples, 2\), got \(6, 1\)\.$",
        ),
        (
            (coefs, intercepts, X[:, 0], y),
            {},
            r"X must have shape \(n_samples, 2\), got \(6,\)\.$",
        ),
        (
            (coefs, intercepts, X, y[:5]),
            {},
            r"^y must hold one class index per row of X: X has 6 rows, y 5 entries\.$",
        ),
        (
            (coefs, intercepts, X, np.array([0, 1, 2, 3, 0, 1])),
            {},
            r"^y must hold 6 class indices in 0\.\.2\.$",
        ),
        (
            (coefs, intercepts, X, y),
            dict(sample_weight=np.ones(5)),
            r"^sample_weight must have shape \(6,\)\.$",
        ),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            log_posterior(*args, **kwargs)
    with pytest.raises(ValueError, match=r"^v must have shape \(27,\), got \(26,\)\.$"):
        log_posterior_hvp(coefs, intercepts, X, y, v[:-1])
    with pytest.raises(TypeError, match="coefs and intercepts must be lists of arrays"):
        log_posterior(coefs, np.zeros(3), X, y)


@pytest.mark.parametrize("index", [0, 1])
def test_complex_intercepts_are_refused_by_name(index):
    """A complex intercept is refused as ``intercepts[i]``, not under another name.

    The existing test refuses complex ``coefs[0]``; the intercepts' entry of
    the same loop names its own list and index.
    """
    rng = np.random.RandomState(3)
    X, y = rng.normal(size=(8, 2)), np.array([0, 1, 2, 1] * 2)
    coefs = [rng.normal(size=(2, 3)), rng.normal(size=(3, 3))]
    intercepts = [rng.normal(size=3), rng.normal(size=3)]
    intercepts[index] = intercepts[index] + 1j
    message = rf"^intercepts\[{index}\] must hold real numbers, got complex128\.$"
    with pytest.raises(TypeError, match=message):
        log_posterior(coefs, intercepts, X, y)


@pytest.mark.parametrize("kind", ["exact", "ggn", "ggn_diag"])
def test_the_memory_budget_reaches_the_row_chunks(monkeypatch, kind):
    """``memory_budget`` sets the rows per chunk of the curvature's sums.

    The existing test compares a one-byte budget's Hessian with the
    default's, which agree whether or not the budget is passed on to the
    objective; here the chunks themselves are counted: one row each under
    one byte, all 10 rows in one chunk under the default budget.
    """
    from sklaplace import log_posterior_hessian

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(10, 3)), np.arange(10) % 3
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 3))]
    intercepts = [rng.normal(size=4), rng.normal(size=3)]
    sizes = record_row_chunks(monkeypatch)
    log_posterior_hessian(coefs, intercepts, X, y, kind=kind, memory_budget=1)
    assert sizes and set(sizes) == {1} and sum(sizes) % 10 == 0
    sizes.clear()
    log_posterior_hessian(coefs, intercepts, X, y, kind=kind)
    assert sizes and set(sizes) == {10}


def _network():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(10, 3)), np.arange(10) % 3
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 3))]
    intercepts = [rng.normal(size=4), rng.normal(size=3)]
    return coefs, intercepts, X, y


@pytest.mark.parametrize("which", ["coefs", "intercepts"])
def test_weights_of_two_namespaces_are_refused(which):
    """Coefs of one array library and intercepts of another raise TypeError.

    The existing test mixes ``X`` with all the weights; the namespace must
    be taken from the coefs and the intercepts alike (either left out of it,
    the other library's arrays failed later, with another error).
    """
    xps = pytest.importorskip("array_api_strict")
    coefs, intercepts, X, y = _network()
    arrays = {"coefs": coefs, "intercepts": intercepts}
    arrays[which] = [xps.asarray(a) for a in arrays[which]]
    with pytest.raises(TypeError, match="Multiple namespaces"):
        log_posterior(arrays["coefs"], arrays["intercepts"], X, y)


def test_bad_precisions_and_weights_are_named_word_for_word():
    """The refusals of a bias precision and of sample weights name what is wrong.

    A string bias precision is a TypeError naming ``bias_prior_precision``;
    an infinite sample weight or precision is refused with its own message.
    """
    coefs, intercepts, X, y = _network()
    with pytest.raises(
        TypeError,
        match=r"^bias_prior_precision must be a real number or an array of "
        r"them, got 'a'\.$",
    ):
        log_posterior(coefs, intercepts, X, y, bias_prior_precision="a")
    weight = np.ones(10)
    weight[3] = np.inf
    with pytest.raises(
        ValueError,
        match=r"^sample_weight must be finite \(in the network's dtype\) and "
        r"non-negative\.$",
    ):
        log_posterior(coefs, intercepts, X, y, sample_weight=weight)
    with pytest.raises(
        ValueError,
        match=r"^alpha and bias_prior_precision must be finite in the network's "
        r"dtype\.$",
    ):
        log_posterior(
            [c.astype(np.float32) for c in coefs],
            [b.astype(np.float32) for b in intercepts],
            X.astype(np.float32),
            y,
            alpha=1e39,
        )


def test_boolean_sample_weights_are_their_zero_one_values():
    """A boolean ``sample_weight`` weighs each row 0 or 1.

    The same numbers as the True rows alone (weights as repetitions). A check
    that accepted only integer and floating dtypes refused it with a
    TypeError, although a boolean ``X`` is taken.
    """
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    w = np.array([True, False, True, True, False, True, False, True, True, True])
    v = np.random.RandomState(1).normal(size=31)
    kw = dict(activation="tanh", alpha=0.5, bias_prior_precision=0.1)
    for f, extra in _all_four(v):
        np.testing.assert_allclose(
            f(coefs, intercepts, X, y, *extra, sample_weight=w, **kw),
            f(coefs, intercepts, X[w], y[w], *extra, **kw),
            rtol=1e-12,
            atol=1e-14,
        )


def test_an_integer_X_computes_in_a_float32_networks_dtype():
    """With float32 weights, an integer ``X`` is cast to float32, not float64.

    The results are float32 and equal to those of ``X.astype(float32)``.
    Cast to float64 instead, ``X @ W`` promoted every result to float64.
    """
    coefs, intercepts, _, y = _small_network(np.random.RandomState(0), np.float32)
    X = np.random.RandomState(2).randint(-2, 3, size=(10, 3))
    v = np.random.RandomState(1).normal(size=31).astype(np.float32)
    for f, extra in _all_four(v):
        got = f(coefs, intercepts, X, y, *extra)
        assert got.dtype == np.float32, f.__name__
        np.testing.assert_array_equal(
            got, f(coefs, intercepts, X.astype(np.float32), y, *extra)
        )


@pytest.mark.parametrize("kind", ["exact", "ggn", "exact_diag", "ggn_diag"])
def test_float32_weights_and_float64_X_compute_in_float64(kind):
    """Every result is in the promotion of X's and the weights' dtypes.

    float32 weights with a float64 ``X`` give float64 results equal to
    those of the same weights cast to float64. The full Hessians had been
    allocated in the weights' float32 (relative error 6e-8), while the
    value, gradient and diagonals came back in float64.
    """
    coefs, intercepts, _, y = _small_network(np.random.RandomState(0), np.float32)
    X = np.random.RandomState(2).normal(size=(10, 3))
    v = np.random.RandomState(1).normal(size=31)
    as64 = lambda arrays: [a.astype(np.float64) for a in arrays]  # noqa: E731
    for f, extra in _all_four(v):
        kw = {"kind": kind} if f is log_posterior_hessian else {}
        got = f(coefs, intercepts, X, y, *extra, **kw)
        assert got.dtype == np.float64, f.__name__
        np.testing.assert_allclose(
            got,
            f(as64(coefs), as64(intercepts), X, y, *extra, **kw),
            rtol=1e-13,
            atol=1e-15,
        )


@pytest.mark.parametrize("shape", [(31, 1), (31, 2), ()])
def test_a_v_of_another_rank_is_refused_by_its_shape(shape):
    """``v`` must be exactly ``(n_params,)``, whatever its rank.

    A column ``(n_params, 1)``, a matrix or a scalar is a ValueError stating
    the shape expected. A check on the first dimension alone let a column
    through (to an error from deep inside) and failed on a scalar with an
    IndexError.
    """
    coefs, intercepts, X, y = _small_network(np.random.RandomState(0))
    v = np.ones(shape)
    with pytest.raises(
        ValueError, match=rf"^v must have shape \(31,\), got {re_shape(shape)}\.$"
    ):
        log_posterior_hvp(coefs, intercepts, X, y, v)


def re_shape(shape):
    """``shape`` as a regular expression matching its tuple's repr."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def _overflowing_network(scale):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 2)), np.array([0, 1, 2, 1, 0])
    coefs = [rng.normal(size=(2, 3)) * scale, rng.normal(size=(3, 3)) * scale]
    return coefs, [rng.normal(size=3), rng.normal(size=3)], X, y


@pytest.mark.parametrize(
    "derivative, what",
    [
        (lambda *a, **k: log_posterior_grad(*a, **k), "gradient"),
        (lambda *a, **k: log_posterior_hessian(*a, kind="exact", **k), "curvature"),
        (lambda *a, **k: log_posterior_hessian(*a, kind="ggn", **k), "curvature"),
        (
            lambda *a, **k: log_posterior_hessian(*a, kind="exact_diag", **k),
            "curvature",
        ),
        (lambda *a, **k: log_posterior_hessian(*a, kind="ggn_diag", **k), "curvature"),
        (
            lambda *a, **k: log_posterior_hvp(*a, np.ones(21), **k),
            "Hessian-vector product",
        ),
        (
            lambda *a, **k: log_posterior_hvp(*a, np.ones(21), kind="ggn", **k),
            "Hessian-vector product",
        ),
    ],
)
def test_derivatives_where_the_logits_overflow_are_refused_not_nan(derivative, what):
    """ReLU weights of 1e160: ``log_posterior`` refused the overflowing
    logits, but its gradient, Hessians and products came back all NaN (with
    NumPy's overflow warnings only: the refusal now comes without them)."""
    args = _overflowing_network(1e160)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=f"{what} (of the log posterior )?is not"):
            derivative(*args, activation="relu")
    finite = derivative(*_overflowing_network(1.0), activation="relu")
    assert np.all(np.isfinite(finite))


def test_a_log_posterior_or_gradient_that_overflows_to_infinity_is_refused():
    """The prior term ``alpha theta**2 / 2`` overflowed to ``-inf`` (tanh
    weights of 1e160, or ``alpha=1e308``), which came back as the value, and
    as infinite entries of the gradient."""
    coefs, intercepts, X, y = _overflowing_network(1.0)
    big = [c * 1e160 for c in coefs]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NumPy overflow besides
        with pytest.raises(ValueError, match="value is not finite"):
            log_posterior(big, intercepts, X, y, activation="tanh")
        with pytest.raises(ValueError, match="value is not finite"):
            log_posterior(coefs, intercepts, X, y, alpha=1e308)
        with pytest.raises(ValueError, match="gradient is not finite"):
            log_posterior_grad(coefs, intercepts, X, y, alpha=1e308)
    assert np.isfinite(log_posterior(coefs, intercepts, X, y, alpha=1e300))


def test_rows_that_all_weigh_zero_count_for_nothing_however_large():
    """With every weight 0 the log posterior is the prior's alone, a row at
    1e200 included (it had refused the call: ``0 * inf``)."""
    coefs, intercepts, X, y = _overflowing_network(1.0)
    X[1] = 1e200
    kw = dict(sample_weight=np.zeros(5), alpha=0.3, bias_prior_precision=0.2)
    # By hand: -(alpha/2) |W|^2 - (beta/2) |b|^2; the Hessian -diag(alpha or beta).
    weights = np.concatenate([c.ravel() for c in coefs])
    biases = np.concatenate(intercepts)
    value = -0.15 * weights @ weights - 0.1 * biases @ biases
    np.testing.assert_allclose(
        log_posterior(coefs, intercepts, X, y, **kw), value, rtol=1e-14
    )
    # Layout per layer: weights row by row with the bias row last.
    diagonal = np.concatenate(
        [np.r_[np.full(c.size, 0.3), np.full(c.shape[1], 0.2)] for c in coefs]
    )
    hessian = log_posterior_hessian(coefs, intercepts, X, y, **kw)
    np.testing.assert_allclose(hessian, -np.diag(diagonal), atol=1e-300)


def test_an_overflow_of_the_weighted_second_moments_names_the_weights():
    """``sum_n s_n X[n, j]**2`` overflows with weights of 1e308 on features
    of order 1: the message had said to standardise the features."""
    coefs, intercepts, X, y = _overflowing_network(1.0)
    with pytest.raises(ValueError, match=r"rescale sample_weight \(largest 1e\+308\)"):
        log_posterior_grad(coefs, intercepts, X, y, sample_weight=np.full(5, 1e308))
    with pytest.raises(ValueError, match="Standardise the features"):
        log_posterior_grad(coefs, intercepts, X * 1e160, y)


def test_a_kind_that_is_not_a_string_and_complex_labels_are_refused():
    """The product took ``kind=np.array("exact")``, which the Hessian
    refuses, and met NumPy's "truth value ... ambiguous" for an array of
    two; complex labels lost their imaginary part with a ComplexWarning."""
    coefs, intercepts, X, y = _overflowing_network(1.0)
    for kind in (np.array("exact"), np.array(["exact", "ggn"])):
        with pytest.raises(ValueError, match="kind must be 'exact' or 'ggn'"):
            log_posterior_hvp(coefs, intercepts, X, y, np.ones(21), kind=kind)
    with pytest.raises(TypeError, match="y must hold class indices, got dtype"):
        log_posterior(coefs, intercepts, X, y + 0j)


@pytest.mark.parametrize("single", ["coefs", "intercepts"])
def test_weights_of_mixed_float_dtypes_compute_in_their_promotion(single):
    """float32 coefs with float64 intercepts (or the reverse) compute in float64.

    The dtype must come from the coefs and the intercepts alike. An integer
    ``X`` cast to the dtype of one of them alone (float32) loses 2**24 + 1,
    which float32 rounds to 2**24; a float32 ``X`` computed in the promotion
    of ``X`` and one of them alone came back in float32. Both must give the
    results of the same values all in float64, bit for bit.
    """
    coefs, intercepts, _, y = _network()
    coefs[0][0] *= 1e-7  # the large feature adds about 1 to each unit
    arrays = {"coefs": coefs, "intercepts": intercepts}
    arrays[single] = [a.astype(np.float32) for a in arrays[single]]
    as64 = lambda arrays: [a.astype(np.float64) for a in arrays]  # noqa: E731
    rng = np.random.RandomState(2)
    X_int = rng.randint(-2, 3, size=(10, 3))
    X_int[:, 0] = 2**24 + 1
    assert int(np.float32(2**24 + 1)) == 2**24  # the premise
    X_32 = rng.normal(size=(10, 3)).astype(np.float32)
    v = rng.normal(size=31)
    kw = dict(activation="identity")
    for X in (X_int, X_32):
        for f, extra in _all_four(v):
            got = f(arrays["coefs"], arrays["intercepts"], X, y, *extra, **kw)
            assert got.dtype == np.float64, (f.__name__, X.dtype)
            expected = f(
                as64(arrays["coefs"]),
                as64(arrays["intercepts"]),
                X.astype(np.float64),
                y,
                *extra,
                **kw,
            )
            np.testing.assert_array_equal(got, expected, err_msg=f.__name__)


def test_an_entry_with_a_shape_but_no_ndim_is_not_an_array():
    """An entry must have both ``shape`` and ``ndim`` to be taken as an array.

    With either attribute alone (``and`` in place of ``or`` in the check) it
    went on to fail with an AttributeError in place of the TypeError that
    names the entry.
    """
    from types import SimpleNamespace

    coefs, intercepts, X, y = _network()
    shape_only = [SimpleNamespace(shape=(3, 4)), coefs[1]]
    with pytest.raises(
        TypeError, match=r"^coefs\[0\] must be an array, got SimpleNamespace\.$"
    ):
        log_posterior(shape_only, intercepts, X, y)
    ndim_only = [intercepts[0], SimpleNamespace(ndim=1)]
    with pytest.raises(
        TypeError, match=r"^intercepts\[1\] must be an array, got SimpleNamespace\.$"
    ):
        log_posterior(coefs, ndim_only, X, y)


def test_a_log_posterior_whose_logits_overflow_is_refused_without_numpy_warnings():
    """ReLU weights of 1e160 overflow the logits, and the log likelihood is
    then ``inf - inf``: ``log_posterior`` refuses it with its own
    ``ValueError`` and no NumPy "invalid value" warning besides (as its
    derivatives do), and the same network at scale 1 has a finite value."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="value is not finite"):
            log_posterior(*_overflowing_network(1e160), activation="relu")
    assert np.isfinite(log_posterior(*_overflowing_network(1.0), activation="relu"))


def test_two_output_units_are_a_softmax_over_two_classes():
    # The likelihood follows the output units: two are the categorical's (a
    # refactoring had sent them to likelihood_for(2), the Bernoulli, which
    # read the first logit alone: -1.18 where the softmax gives -3.05, a
    # gradient not of that value, and a Hessian that failed to reshape).
    X, y = np.array([[0.0], [1.0], [2.0]]), np.array([0, 1, 1])
    coefs, intercepts = [np.array([[1.0, -1.0]])], [np.array([0.5, 0.0])]
    flat = dict(alpha=0.0, bias_prior_precision=0.0)
    F = X @ coefs[0] + intercepts[0]
    log_p = F - np.logaddexp.reduce(F, axis=1, keepdims=True)
    expected = np.sum(log_p[np.arange(3), y])
    value = float(log_posterior(coefs, intercepts, X, y, **flat))
    assert value == pytest.approx(expected, rel=1e-12)
    theta = np.r_[coefs[0].ravel(), intercepts[0]]
    H = dense_ggn(theta, X, np.ones(3), np.zeros(4), (1, 2), "identity")
    np.testing.assert_allclose(
        log_posterior_hessian(coefs, intercepts, X, y, **flat), -H, atol=1e-7
    )
