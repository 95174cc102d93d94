"""Mutation-testing additions for ``sklaplace._backend``: the backend
resolution (with a fake ``cupy`` module standing in for the library, so that
its device count can be set without a GPU) and the few operations the Array
API lacks, each against a plain NumPy reference."""

import sys
import types

import numpy as np
import pytest
from sklearn.base import clone

from sklaplace import LaplaceMLPClassifier
from sklaplace._backend import (
    GramAccumulator,
    NotPositiveDefiniteError,
    add_to_diagonal,
    cholesky,
    get_namespace,
    is_array,
    on_host,
    resolve_backend,
    rows_matmul,
    solve_triangular,
    to_numpy,
)

xps = pytest.importorskip("array_api_strict")


def _fake_cupy(monkeypatch, device_count):
    """Install a fake ``cupy`` whose ``cuda.runtime.getDeviceCount`` returns
    ``device_count`` (or raises it, if it is an exception) and whose arrays
    are array_api_strict's, so that the namespace it resolves to is
    recognisable."""

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    fake.empty = lambda shape: xps.empty(shape)
    # array_api_compat looks up ``cupy.ndarray`` (and caches the answer per
    # class): a class of its own, so that no real array counts as CuPy's.
    fake.ndarray = type("ndarray", (), {})
    fake.generic = type("generic", (), {})  # array_api_compat 1.9 looks it up too
    monkeypatch.setitem(sys.modules, "cupy", fake)


def test_auto_backend_is_numpy_when_cupy_imports_but_sees_no_device(monkeypatch):
    """``backend="auto"`` takes CuPy only when it imports AND a CUDA device is
    present: a CuPy that reports no device (or fails to ask the driver)
    resolves to NumPy, while ``backend="cupy"`` is refused with the reason
    and the install hint, never silently falling back."""
    numpy_xp = get_namespace(np.zeros(1))
    _fake_cupy(monkeypatch, 0)
    assert resolve_backend("auto") is numpy_xp
    with pytest.raises(ImportError, match=r"no CUDA device found.*sklaplace\[gpu\]"):
        resolve_backend("cupy")
    _fake_cupy(monkeypatch, RuntimeError("driver too old"))
    assert resolve_backend("auto") is numpy_xp
    with pytest.raises(ImportError, match=r"no CUDA device \(driver too old\)"):
        resolve_backend("cupy")
    assert resolve_backend("numpy") is numpy_xp


def test_auto_and_cupy_backends_take_the_device_when_there_is_one(monkeypatch):
    """With a CuPy that sees a device, ``"auto"`` and ``"cupy"`` both resolve
    to the namespace of CuPy's own arrays (here a fake's, array_api_strict),
    and ``"numpy"`` stays NumPy; an unknown name is refused by name."""
    _fake_cupy(monkeypatch, 1)
    assert resolve_backend("auto") is xps
    assert resolve_backend("cupy") is xps
    assert resolve_backend("numpy") is get_namespace(np.zeros(1))
    with pytest.raises(ValueError, match=r"backend must be one of .*'jax'"):
        resolve_backend("jax")


def test_a_cupy_that_does_not_import_is_an_import_error_naming_the_cause(
    monkeypatch,
):
    """A CuPy that fails to import (``sys.modules`` entry ``None``: Python
    raises ImportError) makes ``"auto"`` NumPy and ``"cupy"`` an ImportError
    that says CuPy did not import and how to install it."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert resolve_backend("auto") is get_namespace(np.zeros(1))
    with pytest.raises(ImportError, match=r"needs CuPy, which did not import"):
        resolve_backend("cupy")


def test_get_namespace_ignores_none_and_python_scalars():
    """Python scalars and ``None`` do not take part in the namespace lookup:
    mixed with one library's arrays they give that library's namespace."""
    a = xps.asarray([1.0, 2.0])
    assert get_namespace(None, 2.0, a, 3, None) is xps
    assert get_namespace(np.zeros(2), 1, 0.5) is get_namespace(np.zeros(2))


def test_on_host_moves_only_another_librarys_arrays():
    """``on_host`` returns NumPy arrays (subclasses too), lists and other
    inputs unchanged (the same object) and converts another library's array to an equal
    NumPy array."""
    a = np.arange(3.0)
    assert on_host(a) is a
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    assert on_host(masked) is masked  # a NumPy subclass keeps its mask
    data = [[1.0, 2.0]]
    assert on_host(data) is data
    moved = on_host(xps.asarray([[1.0, 2.0], [3.0, 4.0]]))
    assert isinstance(moved, np.ndarray)
    np.testing.assert_array_equal(moved, [[1.0, 2.0], [3.0, 4.0]])
    scalar = np.float64(2.0)  # sample_weight may be a NumPy scalar
    assert on_host(scalar) is scalar


def test_dask_arrays_without_dlpack_are_computed_on_the_host():
    """Dask arrays count as arrays but have no ``__dlpack__``: ``to_numpy``
    computes them (it had raised ``AttributeError``), and the estimator
    fits and predicts on them as on NumPy, as scikit-learn's own do."""
    da = pytest.importorskip("dask.array")
    X = np.random.RandomState(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    lazy = da.from_array(X, chunks=10)
    np.testing.assert_array_equal(to_numpy(lazy), X)
    np.testing.assert_array_equal(on_host(lazy), X)
    model = LaplaceMLPClassifier(
        (4,), alpha=1.0, prior_precision_scale=1.0, random_state=0
    )
    expected = clone(model).fit(X, y).predict_proba(X)
    fitted = model.fit(lazy, da.from_array(y, chunks=10))
    np.testing.assert_array_equal(fitted.predict_proba(lazy), expected)
    np.testing.assert_array_equal(fitted.predict(lazy), np.argmax(expected, axis=1))


def test_a_cupy_array_without_array_namespace_is_an_array(monkeypatch):
    """CuPy 14's arrays have no ``__array_namespace__`` (seen on an H200,
    session 41): they are known by their class, not taken for lists (which
    the functional API handed to ``np.asarray``, which CuPy refuses)."""
    _fake_cupy(monkeypatch, 1)
    array = sys.modules["cupy"].ndarray()
    assert not hasattr(array, "__array_namespace__")
    assert is_array(array)
    assert is_array(xps.asarray([1.0])) and is_array(np.zeros(2))
    assert not is_array([[1.0, 2.0]]) and not is_array(2.0)


def test_to_numpy_of_python_scalars_is_an_array_of_their_value():
    """Python floats and ints (and NumPy scalars) come back as 0-d NumPy
    arrays of the same value."""
    for value in (2.5, 3, np.float32(1.5)):
        out = to_numpy(value)
        assert isinstance(out, np.ndarray) and out.shape == ()
        assert out == value


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_cholesky_refuses_indefinite_and_nan_matrices(xp):
    """``cholesky`` returns the lower factor of a positive-definite matrix
    and raises ``NotPositiveDefiniteError`` (a ``LinAlgError``) for an
    indefinite one and for one with a NaN, in NumPy and another namespace."""
    A = np.array([[4.0, 2.0], [2.0, 3.0]])
    L = to_numpy(cholesky(xp, xp.asarray(A)))
    np.testing.assert_allclose(L @ L.T, A, rtol=1e-14)
    assert L[0, 1] == 0.0
    with pytest.raises(NotPositiveDefiniteError):
        cholesky(xp, xp.asarray(np.array([[1.0, 2.0], [2.0, 1.0]])))
    # NumPy's (and array_api_strict's) Cholesky returns a NaN factor here
    # without raising: the NaN check must raise NotPositiveDefiniteError
    # itself, which callers catch (a plain LinAlgError escapes them).
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        cholesky(xp, xp.asarray(np.array([[np.nan, 0.0], [0.0, 1.0]])))


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_solve_triangular_solves_the_system_it_names(xp, lower, trans):
    """``solve_triangular(xp, T, B, lower=, trans=)`` solves ``T X = B``, or
    ``T.T X = B`` with ``trans``, for a lower or upper triangular ``T``,
    in NumPy (SciPy's triangular solve) and another namespace."""
    rng = np.random.default_rng(0)
    T = rng.normal(size=(5, 5)) + 5 * np.eye(5)
    T = np.tril(T) if lower else np.triu(T)
    B = rng.normal(size=(5, 2))
    X = to_numpy(
        solve_triangular(xp, xp.asarray(T), xp.asarray(B), lower=lower, trans=trans)
    )
    expected = np.linalg.solve(T.T if trans else T, B)
    np.testing.assert_allclose(X, expected, rtol=1e-12, atol=1e-12)


def test_solve_triangular_is_lower_and_untransposed_by_default():
    """The defaults are ``lower=True, trans=False``: the upper triangle of
    the given matrix is not read (SciPy) and ``L X = B`` is solved."""
    rng = np.random.default_rng(1)
    L = np.tril(rng.normal(size=(4, 4))) + 4 * np.eye(4)
    garbage = L + np.triu(rng.normal(size=(4, 4)), k=1)  # upper part not read
    B = rng.normal(size=(4, 3))
    np.testing.assert_allclose(
        solve_triangular(np, garbage, B), np.linalg.solve(L, B), rtol=1e-12
    )


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_rows_matmul_is_the_batched_product(xp):
    """``rows_matmul(xp, A, M)`` for a stack ``A`` of shape (2, 3, 4) is
    ``A @ M``, shape (2, 3, 5), entry for entry."""
    rng = np.random.default_rng(2)
    A, M = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5))
    out = to_numpy(rows_matmul(xp, xp.asarray(A), xp.asarray(M)))
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out, A @ M, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "array_api_strict"])
def test_add_to_diagonal_adds_the_values_on_the_diagonal(xp):
    """``add_to_diagonal`` returns ``H + diag(values)`` (in place on NumPy:
    the same object), leaving the off-diagonal entries as they were."""
    rng = np.random.default_rng(3)
    H0, values = rng.normal(size=(4, 4)), rng.normal(size=4)
    H = xp.asarray(H0.copy())
    out = add_to_diagonal(xp, H, xp.asarray(values))
    np.testing.assert_array_equal(to_numpy(out), H0 + np.diag(values))
    if xp is np:
        assert out is H


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_accumulator_is_the_full_symmetric_sum_beyond_one_mirror_block(
    dtype,
):
    """The NumPy accumulator (BLAS ``syrk`` into one triangle, mirrored in
    blocks of 512 rows) returns the full ``sum F.T @ F`` for ``n`` = 1,100:
    more than two mirror blocks and not a multiple of their size, so every
    block boundary and the last, partial block are checked, in the chunks'
    dtype."""
    rng = np.random.default_rng(4)
    n = 2 * 512 + 1
    chunks = [rng.normal(size=(3, n)).astype(dtype) for _ in range(2)]
    acc = GramAccumulator(np, n, dtype)
    for F in chunks:
        acc.add(F)
    G = acc.result()
    expected = sum(F.astype(np.float64).T @ F.astype(np.float64) for F in chunks)
    assert G.dtype == dtype and G.shape == (n, n)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(G, expected, rtol=rtol, atol=rtol * 10)


def test_gram_accumulator_keeps_its_own_dtype_whatever_the_chunks():
    """A float32 chunk added to a float64 accumulator is summed in float64 (it
    had chosen ``ssyrk``, which cast the result to float32 for good), and a
    float64 chunk to a float32 one in float32."""
    rng = np.random.default_rng(6)
    chunks = [rng.normal(size=(4, 5)) for _ in range(3)]
    for dtype, other in [(np.float64, np.float32), (np.float32, np.float64)]:
        acc = GramAccumulator(np, 5, dtype)
        for i, F in enumerate(chunks):
            acc.add(F.astype(other if i == 1 else dtype))
        G = acc.result()
        cast = [F.astype(other if i == 1 else dtype) for i, F in enumerate(chunks)]
        expected = sum(F.astype(np.float64).T @ F.astype(np.float64) for F in cast)
        assert G.dtype == dtype
        rtol = 1e-13 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(G, expected, rtol=rtol, atol=rtol)


def test_gram_accumulator_in_another_namespace_is_the_plain_product():
    """Outside NumPy the accumulator sums plain products ``F.T @ F`` in the
    chunks' namespace and dtype."""
    rng = np.random.default_rng(5)
    chunks = [rng.normal(size=(3, 6)) for _ in range(2)]
    acc = GramAccumulator(xps, 6, xps.float64)
    for F in chunks:
        acc.add(xps.asarray(F))
    G = acc.result()
    assert get_namespace(G) is xps
    np.testing.assert_allclose(
        to_numpy(G), sum(F.T @ F for F in chunks), rtol=1e-13, atol=1e-13
    )
