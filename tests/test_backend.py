"""Backends: the engine runs under array_api_strict exactly as under NumPy.

array_api_strict rejects anything outside the Array API standard, so passing
here shows the code path has no hidden NumPy call -- the property the CuPy
backend relies on. CuPy itself is tested in test_cupy.py where available.
"""

import numpy as np
import pytest

from sklaplace import (
    LaplaceMLPClassifier,
    log_posterior,
    log_posterior_grad,
    log_posterior_hessian,
    log_posterior_hvp,
)
from sklaplace._backend import (
    GramAccumulator,
    NotPositiveDefiniteError,
    add_to_diagonal,
    cholesky,
    get_namespace,
    pin_to_identity,
    plus_scaled_identity,
    resolve_backend,
    solve_triangular,
    to_numpy,
)
from sklaplace._curvature import CURVATURE_BUILDERS, ggn_rows
from sklaplace._network import r_forward
from sklaplace._posterior import DiagPosterior, FullPosterior
from sklaplace._predictive import PREDICTIVES
from sklaplace._prior_family import ScaledPriorFamily
from tests.conftest import (
    BACKEND_CONFIGS,
    assert_cupy_backend_matches_numpy,
    make_problem,
    rebuilt,
)

xps = pytest.importorskip("array_api_strict")

STRICT_CASES = [
    ("tanh", 2, (4, 3)),
    ("softplus", 3, (4,)),
    ("relu", 3, ()),
    ("logistic", 2, (3,)),
    ("elu", 3, (4, 3)),
]


def _both(activation, n_classes, hidden):
    reference = make_problem(activation, n_classes, hidden, weighted=True)
    strict = make_problem(activation, n_classes, hidden, weighted=True, xp=xps)
    return reference, strict


def _close(strict_value, numpy_value):
    np.testing.assert_allclose(
        to_numpy(strict_value), numpy_value, rtol=1e-12, atol=1e-12
    )


def _jv(xp, obj, theta, v):
    """``J v`` by :func:`r_forward`, ``theta`` and ``v`` split into layers."""
    layers = obj.layout.layers
    return r_forward(xp, layers(xp, theta), obj.forward(theta), layers(xp, v))[0][-1]


@pytest.mark.parametrize(
    "case", STRICT_CASES, ids=lambda c: f"{c[0]}-{c[1]}cls-h{len(c[2])}"
)
def test_engine_under_array_api_strict_matches_numpy(case):
    (obj, theta), (sobj, stheta) = _both(*case)
    assert get_namespace(stheta) is xps
    v = np.random.RandomState(5).normal(size=theta.shape)
    sv = xps.asarray(v)
    # forward, backprop (gradient), R-op (J v), Jacobian
    _close(sobj.forward(stheta).logits, obj.forward(theta).logits)
    sloss, sgrad = sobj.loss_gradient(stheta)
    loss, grad = obj.loss_gradient(theta)
    _close(sloss, loss)
    _close(sgrad, grad)
    _close(_jv(xps, sobj, stheta, sv), _jv(np, obj, theta, v))
    # curvature: full exact, full GGN, both diagonals; both vector products
    for _key, curvature in CURVATURE_BUILDERS.items():
        _close(curvature(sobj, stheta), curvature(obj, theta))
    for kind in ("exact", "ggn"):
        _close(sobj.hessp(stheta, sv, kind), obj.hessp(theta, v, kind))


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_posterior_and_predictive_under_array_api_strict(n_outputs):
    rng = np.random.RandomState(0)
    A = rng.normal(size=(7, 7))
    P = A @ A.T + 7 * np.eye(7)
    J = rng.normal(size=(5, n_outputs, 7))
    mean = rng.normal(size=(5, n_outputs))
    noise = rng.standard_normal((50, n_outputs))
    for posterior, precision in (
        (FullPosterior, P),
        (DiagPosterior, np.diag(P).copy()),
    ):
        post_np = posterior.from_precision(np, precision)
        post_strict = posterior.from_precision(xps, xps.asarray(precision))
        cov = post_np.functional_variance(np, J)
        scov = post_strict.functional_variance(xps, xps.asarray(J))
        _close(scov, cov)
        for _name, predictive in PREDICTIVES.items():
            _close(
                predictive(xps, xps.asarray(mean), scov, noise=xps.asarray(noise)),
                predictive(np, mean, cov, noise=noise),
            )


@pytest.mark.parametrize("gain", [0.0, np.inf], ids=["factors", "dense blocks"])
def test_a_factored_jacobians_product_under_array_api_strict(monkeypatch, gain):
    # Every layer through its factors or every layer's dense block: the
    # same J M as NumPy's dense product. The budget's quarter holds three
    # rows' 4 x 244 intermediates of the second layer (slices of 3, 3, 1:
    # the last ends at the last row) and one row's 10 x 244 of the first.
    import sklaplace._jacobian as jacobian_module

    obj, theta = make_problem(n_classes=4, hidden=(10,), n_samples=7, n_features=19)
    M = np.random.RandomState(1).normal(size=(obj.layout.n_params,) * 2)
    [(_, factors)] = jacobian_module.logit_factors(
        np, obj.layout, theta, obj.activation, obj.X
    )
    [(_, strict)] = jacobian_module.logit_factors(
        xps, obj.layout, xps.asarray(theta), obj.activation, xps.asarray(obj.X)
    )
    monkeypatch.setattr(jacobian_module, "FACTORED_PRODUCT_GAIN", gain)
    monkeypatch.setattr(
        jacobian_module._memory, "DEFAULT_MEMORY_BUDGET", 3 * 4 * 8 * 4 * 244
    )
    expected = np.einsum("nkp,pm->nkm", factors.dense(np), M)
    _close(strict.matmul(xps, xps.asarray(M)), expected)


def test_functional_api_returns_the_input_namespace():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(10, 3)), np.arange(10) % 3
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 3))]
    intercepts = [rng.normal(size=4), rng.normal(size=3)]
    s = lambda arrays: [xps.asarray(a) for a in arrays]  # noqa: E731
    kw = dict(activation="tanh", alpha=0.5, bias_prior_precision=0.1)
    v = rng.normal(size=12 + 4 + 12 + 3)
    pairs = [
        (
            log_posterior(s(coefs), s(intercepts), xps.asarray(X), y, **kw),
            log_posterior(coefs, intercepts, X, y, **kw),
        ),
        (
            log_posterior_grad(s(coefs), s(intercepts), xps.asarray(X), y, **kw),
            log_posterior_grad(coefs, intercepts, X, y, **kw),
        ),
        (
            log_posterior_hvp(
                s(coefs), s(intercepts), xps.asarray(X), y, xps.asarray(v), **kw
            ),
            log_posterior_hvp(coefs, intercepts, X, y, v, **kw),
        ),
    ]
    for kind in ("exact", "ggn", "exact_diag", "ggn_diag"):
        pairs.append(
            (
                log_posterior_hessian(
                    s(coefs), s(intercepts), xps.asarray(X), y, kind=kind, **kw
                ),
                log_posterior_hessian(coefs, intercepts, X, y, kind=kind, **kw),
            )
        )
    for strict_value, numpy_value in pairs:
        assert get_namespace(strict_value) is xps
        _close(strict_value, numpy_value)


def test_resolve_backend():
    assert get_namespace(np.zeros(1)) is resolve_backend("numpy")
    assert resolve_backend("auto") is not None
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("jax")


def test_cupy_backend_without_cupy_says_how_to_install():
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here")
    except Exception:
        pass
    with pytest.raises(ImportError, match=r"sklaplace\[gpu\]"):
        resolve_backend("cupy")


def test_to_numpy_copies_an_array_dlpack_cannot_export(monkeypatch):
    """NumPy 2.0's DLPack refuses a read-only array (``BufferError``; 2.1 and
    later export it): ``to_numpy`` then exports a real copy, with the same
    values, not another view of the read-only buffer (refused again)."""
    base = np.array([[1.0, 2.0], [3.0, 4.0]])
    base.flags.writeable = False
    a = xps.asarray(base)
    from_dlpack = np.from_dlpack

    def refuse_read_only(x):
        # Refuses base's read-only buffer, as NumPy 2.0 does (whose own
        # imports are all read-only, so the flag of the output cannot tell).
        out = from_dlpack(x)
        if np.shares_memory(out, base):
            raise BufferError("Cannot export readonly array")
        return out

    monkeypatch.setattr(np, "from_dlpack", refuse_read_only)
    out = to_numpy(a)
    np.testing.assert_array_equal(out, base)
    assert not np.shares_memory(out, base)


def test_to_numpy_round_trip():
    a = xps.asarray([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(to_numpy(a), [[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(to_numpy(np.float64(2.0)), np.ndarray)


def _with_fixed(obj, xp, fixed, flat_output_bias=False):
    prior = obj.prior_precision
    if flat_output_bias:  # the softmax's flat direction is then unpinned
        n_outputs = obj.layout.n_outputs
        keep = np.arange(obj.layout.n_params) < obj.layout.n_params - n_outputs
        prior = prior * xp.asarray(keep.astype(np.float64))
    return rebuilt(obj, prior_precision=prior, fixed=xp.asarray(fixed))


@pytest.mark.parametrize("flat_output_bias", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_fixed_parameters_under_array_api_strict(n_classes, flat_output_bias):
    # Held-at-zero parameters (pruning): zero gradient, identity rows and
    # columns in the curvature Newton and the posterior use, same in both;
    # with a flat output-bias prior and K > 1 logits, 1/K more on the output
    # biases' K x K block (u u' along the softmax's flat direction).
    (obj, theta), (sobj, stheta) = _both("tanh", n_classes, (3,))
    fixed = np.zeros(theta.shape[0], bool)
    fixed[[0, 4, 7]] = True
    theta = np.where(fixed, 0.0, theta)
    stheta = xps.asarray(theta)
    obj = _with_fixed(obj, np, fixed, flat_output_bias)
    sobj = _with_fixed(sobj, xps, fixed, flat_output_bias)
    K = obj.layout.n_outputs
    flat = np.zeros((theta.shape[0], theta.shape[0]))
    if flat_output_bias and K > 1:
        flat[-K:, -K:] = 1.0 / K
    _, grad = obj.loss_gradient(theta)
    assert np.all(grad[fixed] == 0.0) and np.all(grad[~fixed] != 0.0)
    _close(sobj.loss_gradient(stheta)[1], grad)
    for (_kind, structure), curvature in CURVATURE_BUILDERS.items():
        H = curvature(obj, theta)
        constrained = obj.constrained_curvature(np.array(H, copy=True))
        _close(sobj.constrained_curvature(curvature(sobj, stheta)), constrained)
        if structure == "diag":
            np.testing.assert_array_equal(constrained[fixed], 1.0)
            np.testing.assert_array_equal(constrained[~fixed], H[~fixed])
        else:
            free = ~fixed
            np.testing.assert_array_equal(constrained[np.ix_(fixed, fixed)], np.eye(3))
            assert np.all(constrained[np.ix_(fixed, free)] == 0.0)
            np.testing.assert_allclose(
                constrained[np.ix_(free, free)],
                (H + flat)[np.ix_(free, free)],
                rtol=1e-15,
            )


def test_pin_to_identity_in_place_on_numpy_and_by_mask_elsewhere():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(6, 6))
    fixed = np.array([False, True, False, False, True, False])
    expected = H.copy()
    expected[fixed, :] = 0.0
    expected[:, fixed] = 0.0
    expected[fixed, fixed] = 1.0
    result = pin_to_identity(np, H, fixed)
    assert result is H  # no n x n copy on NumPy
    np.testing.assert_array_equal(result, expected)
    H_strict = xps.asarray(rng.normal(size=(6, 6)))
    expected = to_numpy(H_strict).copy()
    expected[fixed, :] = 0.0
    expected[:, fixed] = 0.0
    expected[fixed, fixed] = 1.0
    result = pin_to_identity(xps, H_strict, xps.asarray(fixed))
    np.testing.assert_array_equal(to_numpy(result), expected)


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_plus_scaled_identity_returns_a_new_array(xp):
    A = xp.asarray(np.arange(9.0).reshape(3, 3))
    shifted = plus_scaled_identity(xp, A, 0.5)
    np.testing.assert_array_equal(
        to_numpy(shifted), np.arange(9.0).reshape(3, 3) + 0.5 * np.eye(3)
    )
    np.testing.assert_array_equal(
        to_numpy(A), np.arange(9.0).reshape(3, 3)
    )  # untouched
    v = xp.asarray([1.0, 2.0])
    np.testing.assert_array_equal(
        to_numpy(plus_scaled_identity(xp, v, 0.5)), [1.5, 2.5]
    )


@pytest.fixture
def strict_backend(monkeypatch):
    """Make the estimator's ``backend="cupy"`` mean ``array_api_strict``.

    Every array of fit and predict then lives in a namespace that rejects
    anything outside the standard: a hidden NumPy call fails here, on CI,
    as it would fail on a GPU. array_api_strict lets NumPy convert its
    arrays implicitly (``np.asarray``, a NumPy array indexed by one), which
    CuPy refuses: refused here too (a pruned refit's held-out choice had
    indexed host arrays with a device mask).
    """
    from array_api_strict._array_object import Array

    import sklaplace._estimator
    import sklaplace._fitted

    def refuse(self, *args, **kwargs):
        raise TypeError("implicit host conversion (CuPy refuses it)")

    monkeypatch.setattr(Array, "__array__", refuse)
    monkeypatch.setattr(Array, "__buffer__", refuse, raising=False)

    def resolve(backend):
        return xps if backend == "cupy" else resolve_backend(backend)

    monkeypatch.setattr(sklaplace._estimator, "resolve_backend", resolve)
    monkeypatch.setattr(sklaplace._fitted, "resolve_backend", resolve)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("config", list(BACKEND_CONFIGS), ids=str)
def test_estimator_under_array_api_strict_matches_numpy(
    strict_backend, config, n_classes
):
    # Both run NumPy underneath (BLAS syrk against a plain product): 1e-7 is
    # the solver's reach, far below what a wrong term in any path moves.
    assert_cupy_backend_matches_numpy(config, n_classes, (120, 5), (5,), rtol=1e-7)


def test_the_estimator_takes_another_librarys_arrays_under_dispatch():
    """Under scikit-learn's ``array_api_dispatch`` an array_api_strict ``X``
    had failed inside ``check_array`` ("'dtype' must be a dtype"): such
    arrays come to the host first, and the fit and predictions are those of
    the NumPy input."""
    import sklearn

    X, y = np.random.RandomState(0).normal(size=(40, 3)), np.arange(40) % 2
    w = np.arange(1.0, 41.0)
    params = dict(
        hidden_layer_sizes=(2,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    )
    expected = LaplaceMLPClassifier(**params).fit(X, y, sample_weight=w)
    with sklearn.config_context(array_api_dispatch=True):
        clf = LaplaceMLPClassifier(**params).fit(
            xps.asarray(X), xps.asarray(y), sample_weight=xps.asarray(w)
        )
        proba = clf.predict_proba(xps.asarray(X))
        score = clf.score(xps.asarray(X), xps.asarray(y))
    np.testing.assert_array_equal(proba, expected.predict_proba(X))
    assert score == expected.score(X, y)


def test_another_librarys_labels_come_to_the_host_without_dispatch(strict_backend):
    """``y`` (and ``X``, ``sample_weight``) of a library that refuses
    NumPy's implicit conversion, as CuPy does, are moved to the host
    explicitly: the fit and predictions are those of the NumPy input."""
    X, y = np.random.RandomState(0).normal(size=(40, 3)), np.arange(40) % 2
    w = np.arange(1.0, 41.0)
    params = dict(
        hidden_layer_sizes=(2,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    )
    expected = LaplaceMLPClassifier(**params).fit(X, y, sample_weight=w)
    clf = LaplaceMLPClassifier(**params).fit(
        xps.asarray(X), xps.asarray(y), sample_weight=xps.asarray(w)
    )
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    np.testing.assert_array_equal(
        clf.predict_proba(xps.asarray(X)), expected.predict_proba(X)
    )


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_cholesky_refuses_a_nan_in_only_the_last_pivot(xp):
    # A NaN confined to the last diagonal entry leaves the leading pivots
    # finite: every pivot must be checked, not any one.
    A = np.eye(3)
    A[2, 2] = np.nan
    with pytest.raises(NotPositiveDefiniteError):
        cholesky(xp, xp.asarray(A))


def test_add_to_diagonal_keeps_float32_in_another_namespace():
    # Outside NumPy/CuPy the diagonal matrix is built: in H's dtype, so a
    # float32 precision stays float32.
    H0 = np.arange(9.0).reshape(3, 3).astype(np.float32)
    values = np.array([1.0, 2.0, 3.0], np.float32)
    out = add_to_diagonal(xps, xps.asarray(H0), xps.asarray(values))
    assert out.dtype == xps.float32
    np.testing.assert_array_equal(to_numpy(out), H0 + np.diag(values))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_sample_space_posterior_under_array_api_strict_matches_numpy(
    strict_backend, n_classes
):
    """The sample-space posterior's Gram and factor are computed in the fit's
    namespace (a GPU's; held as NumPy): the same log det, covariance
    diagonal, functional variance and prior change as NumPy's."""
    from sklaplace._jacobian import logit_factors
    from sklaplace._low_rank import LowRankPosterior

    shape = dict(n_classes=n_classes, hidden=(3,), n_samples=6, n_features=8)
    change = np.linspace(0.1, 2.0, 31 if n_classes == 2 else 39)
    X = np.random.RandomState(2).normal(size=(5, 8))
    results = []
    for xp in (np, xps):
        obj, theta = make_problem(**shape, xp=xp)
        post = LowRankPosterior.from_curvature(obj, ggn_rows(obj, theta), theta)
        assert post.n_params == change.shape[0]
        ((_, F),) = logit_factors(xp, obj.layout, theta, obj.activation, xp.asarray(X))
        results.append(
            [
                post.log_det_precision(),
                post.with_prior_change(xp, change).log_det_precision(),
                to_numpy(post.covariance_diagonal(xp)),
                to_numpy(post.functional_variance(xp, F)),
            ]
        )
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("structure", ["diag", "kron"])
def test_a_wide_evidence_fit_tunes_in_sample_space_under_array_api_strict(
    strict_backend, structure, monkeypatch
):
    """30 rows of 40 features, hidden (6,): MacKay's refits run on the
    sample-space posterior (fewer GGN rows than parameters), built in the
    fit's namespace, and tune alpha as under NumPy (the tall data of the
    other backend tests never reach it)."""
    import sklaplace._low_rank as low_rank_module

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 40))
    y = (X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=30) > 0).astype(int)
    namespaces, build = [], low_rank_module.LowRankPosterior.__init__

    def recording(self, prior, rows, xp=np):
        namespaces.append(xp)
        build(self, prior, rows, xp)

    monkeypatch.setattr(low_rank_module.LowRankPosterior, "__init__", recording)
    params = dict(hessian_structure=structure, prior_precision_scale=1.0, tol=1e-10)
    fits = {}
    for backend in ("numpy", "cupy"):  # "cupy" is array_api_strict here
        del namespaces[:]
        fits[backend] = LaplaceMLPClassifier(
            (6,), alpha="evidence", backend=backend, random_state=0, **params
        ).fit(X, y)
        assert namespaces
        assert all((xp is xps) == (backend == "cupy") for xp in namespaces)
    reference, other = fits["numpy"], fits["cupy"]
    assert len(reference.alpha_history_) > 2
    np.testing.assert_allclose(
        other.alpha_history_, reference.alpha_history_, rtol=1e-7
    )
    np.testing.assert_allclose(
        other.predict_proba(X), reference.predict_proba(X), rtol=1e-7, atol=1e-10
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_pinned_sample_space_rows_under_array_api_strict(n_classes):
    """``ggn_rows`` of an objective with held-at-zero parameters under
    array_api_strict: zero columns where fixed, NumPy's rows elsewhere, in
    the data's dtype (a mutant that cast the mask with ``dtype=None``,
    which NumPy takes for float64 and the standard refuses, survived the
    NumPy-only tests)."""
    rows = {}
    for xp in (np, xps):
        obj, theta = make_problem(
            n_classes=n_classes, hidden=(3,), n_samples=6, n_features=8, xp=xp
        )
        fixed = np.zeros(obj.layout.n_params, dtype=bool)
        fixed[[0, 5, 11]] = True
        G = ggn_rows(rebuilt(obj, fixed=xp.asarray(fixed)), theta)
        assert G.dtype == xp.float64
        rows[xp] = to_numpy(G)
    free, theta = make_problem(
        n_classes=n_classes, hidden=(3,), n_samples=6, n_features=8
    )
    unpinned = ggn_rows(free, theta)
    np.testing.assert_array_equal(rows[np][:, fixed], 0.0)
    np.testing.assert_allclose(rows[np][:, ~fixed], unpinned[:, ~fixed], rtol=1e-13)
    np.testing.assert_allclose(rows[xps], rows[np], rtol=1e-12, atol=1e-15)


def test_a_family_rebuilt_per_scale_marks_undefined_scales_under_array_api_strict():
    """Under array_api_strict a family rebuilt per scale gives the probit's
    centred variances, NaN at a scale whose precision is not positive
    definite.

    A full posterior whose prior has a negative entry is not eigendecomposed:
    each scale's posterior is rebuilt, and P(c) = P_data + c A stops being
    positive definite for large c. The centred variances
    diag(C J P(c)^{-1} J' C), C = I - 11'/3, equal a dense NumPy inverse of
    P + (c - 1) A at the defined scales, and are NaN at the undefined one.

    Mutant (_prior_family, centred_variances): the NaN column filled with
    ``None`` (NumPy turns it into NaN; array_api_strict and CuPy refuse it).
    """
    rng = np.random.RandomState(0)
    W, K = 5, 3
    root = rng.normal(size=(W, W))
    P = root @ root.T + 4.0 * np.eye(W)
    A = np.array([1.0, 0.5, -0.4, 2.0, 0.7])
    family = ScaledPriorFamily(FullPosterior(np.linalg.cholesky(P)), A, xp=xps)
    assert not family.all_at_once and not family.centred_at_once
    J = rng.normal(size=(4, K, W))
    scales = [0.5, 1.0, 3.0, 1e3]
    expected, C = [], np.eye(K) - 1.0 / K
    for c in scales:
        P_c = P + (c - 1.0) * np.diag(A)
        if np.all(np.linalg.eigvalsh(P_c) > 0):
            cov = np.einsum("ij,njw,wv,nlv,lk->nik", C, J, np.linalg.inv(P_c), J, C)
            expected.append(np.diagonal(cov, axis1=1, axis2=2))
        else:
            expected.append(None)
    assert [e is None for e in expected] == [False, False, False, True]
    centred = to_numpy(family.centred_variances(xps, xps.asarray(J), scales))
    assert centred.shape == (4, K, len(scales))
    for i, want in enumerate(expected):
        if want is None:
            assert np.all(np.isnan(centred[:, :, i]))
        else:
            np.testing.assert_allclose(centred[:, :, i], want, rtol=1e-10)


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_plus_scaled_identity_keeps_float32(xp):
    """A float32 matrix plus a (Python float) multiple of the identity stays
    float32 in every namespace, with NumPy's float32 values: the added
    diagonal is built in the matrix's dtype (array_api_strict promotes a
    float32 matrix plus a default-dtype diagonal to float64)."""
    A0 = np.arange(9.0, dtype=np.float32).reshape(3, 3)
    out = plus_scaled_identity(xp, xp.asarray(A0), 0.5)
    assert out.dtype == xp.float32
    np.testing.assert_array_equal(
        to_numpy(out), A0 + np.float32(0.5) * np.eye(3, dtype=np.float32)
    )


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_solve_triangular_passes_a_nan_through_in_every_namespace(xp):
    """A NaN in the right-hand side gives NaN in the solution's column (the
    other column solved as usual) and no error, in NumPy as in another
    namespace (whose general solve checks nothing): callers test the
    result, and NumPy must not raise where the other backends do not."""
    L = np.array([[2.0, 0.0], [1.0, 3.0]])
    B = np.array([[np.nan, 1.0], [1.0, 2.0]])
    X = to_numpy(solve_triangular(xp, xp.asarray(L), xp.asarray(B)))
    assert np.all(np.isnan(X[:, 0]))
    np.testing.assert_allclose(X[:, 1], np.linalg.solve(L, B[:, 1]), rtol=1e-14)


def test_a_float32_gram_in_another_namespace_stays_float32():
    """Outside NumPy a float32 accumulator of float32 chunks returns a float32
    Gram matrix, equal to NumPy's float32 products: its zero start is in the
    asked dtype (a default-dtype start had promoted the sum to float64)."""
    rng = np.random.default_rng(7)
    chunks = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)]
    acc = GramAccumulator(xps, 4, xps.float32)
    for F in chunks:
        acc.add(xps.asarray(F))
    G = acc.result()
    assert G.dtype == xps.float32
    np.testing.assert_allclose(
        to_numpy(G), sum(F.T @ F for F in chunks), rtol=1e-6, atol=1e-6
    )
