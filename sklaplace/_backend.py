"""Array backends: the one module that knows which library is behind ``xp``.

Everything numeric in sklaplace is written against an Array-API namespace
``xp`` (NumPy, CuPy, or ``array_api_strict`` in tests). The few operations
the standard lacks -- triangular solves, a Cholesky that raises on a matrix
that is not positive definite, a symmetric rank-k update -- live here, with
one branch per library.
"""

import numpy as np
import scipy.linalg
from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_cupy_namespace,
    is_numpy_namespace,
)

__all__ = [
    "BACKENDS",
    "FIRST_JITTER",
    "JITTER_TRIALS",
    "NotPositiveDefiniteError",
    "cholesky",
    "on_host",
    "get_namespace",
    "GramAccumulator",
    "is_array",
    "is_numpy_namespace",
    "add_to_diagonal",
    "resolve_backend",
    "rows_matmul",
    "solve_triangular",
    "tenfold_jitters",
    "to_numpy",
]

BACKENDS = ("auto", "numpy", "cupy")

_CUPY_HINT = (
    "Install the GPU extra with `pip install sklaplace[gpu]` (CuPy for CUDA 13) "
    "on a machine with an NVIDIA GPU, or use backend='numpy'."
)


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """Raised by :func:`cholesky` when the matrix is not positive definite."""


def get_namespace(*arrays):
    """Return the Array-API namespace shared by ``arrays``.

    Parameters
    ----------
    *arrays : array-like
        Arrays of one library (NumPy, CuPy, array_api_strict, ...). Python
        scalars and ``None`` are ignored.

    Returns
    -------
    xp : module
        The array-API-compatible namespace.
    """
    arrays = [a for a in arrays if a is not None and not isinstance(a, float | int)]
    return array_namespace(*arrays)


def _import_cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA libraries missing
        raise ImportError(
            f"backend='cupy' needs CuPy, which did not import ({exc}). {_CUPY_HINT}"
        ) from exc
    return cupy


def _cupy_device_available():
    try:
        cupy = _import_cupy()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_backend(backend):
    """Return the namespace ``xp`` for a ``backend`` parameter value.

    Parameters
    ----------
    backend : {"auto", "numpy", "cupy"}
        ``"auto"`` picks CuPy when it imports and a CUDA device is present,
        else NumPy.

    Returns
    -------
    xp : module
        An array-API-compatible namespace.

    Raises
    ------
    ImportError
        If ``backend="cupy"`` and CuPy or a CUDA device is missing.
    """
    if backend == "numpy" or (backend == "auto" and not _cupy_device_available()):
        return get_namespace(np.empty(0))
    if backend not in ("auto", "cupy"):
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    cupy = _import_cupy()
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise ImportError(
            f"backend='cupy': no CUDA device ({exc}). {_CUPY_HINT}"
        ) from exc
    if n_devices == 0:
        raise ImportError(f"backend='cupy': no CUDA device found. {_CUPY_HINT}")
    return get_namespace(cupy.empty(0))


def to_numpy(array):
    """Return ``array`` as a NumPy array on the host (a copy if on a device)."""
    if isinstance(array, np.ndarray | np.generic | float | int):
        return np.asarray(array)
    xp = get_namespace(array)
    if is_cupy_namespace(xp):
        return array.get()
    if not hasattr(array, "__dlpack__"):  # dask: NumPy computes it
        return np.asarray(array)
    try:
        return np.from_dlpack(array)
    except BufferError:  # read-only: NumPy 2.0's DLPack cannot export it
        return np.from_dlpack(xp.asarray(array, copy=True))


def is_array(a):
    """Whether ``a`` is an array of an Array-API library (NumPy, CuPy, ...).

    CuPy 14's arrays have no ``__array_namespace__``: array_api_compat knows
    them by their class, so a ``hasattr`` test alone would take them for
    lists and hand them to ``np.asarray``, which CuPy refuses.
    """
    return is_array_api_obj(a)


def on_host(a):
    """Return ``a`` as NumPy if it is another library's array (CuPy, array_api_strict).

    Anything else (NumPy, lists, DataFrames, SciPy sparse) is returned as
    it is, for scikit-learn's validation. The estimator moves its data to
    the ``backend`` itself; under ``array_api_dispatch`` scikit-learn's
    validation had passed NumPy dtypes to such an array's namespace and
    failed with "'dtype' must be a dtype".
    """
    if is_array(a) and not isinstance(a, np.ndarray | np.generic):
        return to_numpy(a)
    return a


#: A matrix that fails to factorise gets this fraction of its largest
#: diagonal entry on its diagonal first, raised tenfold: ``JITTER_TRIALS``
#: jitters at most, 1e-10 -> 1e19 of it, past the largest eigenvalue of any
#: finite positive semidefinite matrix (a loop that tries no jitter first
#: takes the first ``JITTER_TRIALS - 1``: 30 attempts in all).
FIRST_JITTER = 1e-10
JITTER_TRIALS = 30


def tenfold_jitters(largest):
    """Return the jitters to try, smallest first: ``FIRST_JITTER * largest``, tenfold.

    ``largest`` is the matrix's largest diagonal entry (the smallest normal
    float is added, so that a zero matrix still gets a positive jitter).
    """
    first = FIRST_JITTER * largest + np.finfo(np.float64).tiny
    return [first * 10.0**k for k in range(JITTER_TRIALS)]


def cholesky(xp, A):
    """Lower Cholesky factor of a symmetric positive-definite matrix.

    Parameters
    ----------
    xp : module
        Array namespace of ``A``.
    A : array of shape (n, n)
        Symmetric matrix.

    Returns
    -------
    L : array of shape (n, n)
        Lower-triangular, ``A = L @ L.T``.

    Raises
    ------
    NotPositiveDefiniteError
        If ``A`` is not (numerically) positive definite. CuPy leaves a
        failed factorisation's trailing block as it was (finite numbers, no
        error) unless its ``linalg`` error state is "raise", so that is set
        here; a NaN factor (from NaN input) is checked for in any namespace.
    """
    try:
        if is_cupy_namespace(xp):
            import cupyx

            with cupyx.errstate(linalg="raise"):
                L = xp.linalg.cholesky(A)
        else:
            L = xp.linalg.cholesky(A)
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefiniteError(str(exc)) from exc
    if not bool(xp.all(xp.isfinite(xp.linalg.diagonal(L)))):
        raise NotPositiveDefiniteError("Matrix is not positive definite.")
    return L


def solve_triangular(xp, L, B, *, lower=True, trans=False):
    """Solve ``L X = B`` (or ``L.T X = B`` when ``trans``) for triangular ``L``."""
    if is_numpy_namespace(xp):
        return scipy.linalg.solve_triangular(
            L, B, lower=lower, trans=1 if trans else 0, check_finite=False
        )
    if is_cupy_namespace(xp):
        from cupyx.scipy.linalg import solve_triangular as cupy_solve_triangular

        return cupy_solve_triangular(L, B, lower=lower, trans=1 if trans else 0)
    # Any other namespace (array_api_strict in tests): a general solve is
    # slower but standard.
    return xp.linalg.solve(L.T if trans else L, B)


def rows_matmul(xp, A, M):
    """Return ``A @ M`` for a stack ``A`` of shape ``(..., k)``: one matrix product.

    A batched product of many short matrices reads ``M`` once per matrix:
    251 held-out rows' ``10 x 1,210`` Jacobians against a ``1,210 x 1,210``
    eigenbasis took 0.60 s batched and 0.17 s as one ``2,510``-row product
    (NumPy with OpenBLAS, one thread).
    """
    rows = xp.reshape(A, (-1, A.shape[-1])) @ M
    return xp.reshape(rows, (*A.shape[:-1], M.shape[-1]))


def add_to_diagonal(xp, H, values):
    """Return ``H + diag(values)``, in place where the library allows it.

    NumPy and CuPy update the diagonal in place (no ``n x n`` temporary);
    other namespaces build the diagonal matrix.
    """
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        index = xp.arange(H.shape[0])
        H[index, index] += values
        return H
    return H + xp.eye(H.shape[0], dtype=H.dtype) * values[None, :]


def plus_scaled_identity(xp, A, scale):
    """Return a new array ``A + scale * I`` (``A + scale`` for a vector ``A``).

    One copy of ``A`` with ``scale`` added to its diagonal: no ``n x n``
    identity matrix is built.
    """
    if A.ndim == 1:
        return A + scale
    n = A.shape[0]
    return add_to_diagonal(
        xp, xp.asarray(A, copy=True), xp.full((n,), scale, dtype=A.dtype)
    )


def pin_to_identity(xp, H, fixed):
    """Return ``H`` with the rows and columns at ``fixed`` set to the identity's.

    NumPy and CuPy overwrite ``H`` in place (no ``n x n`` temporary); other
    namespaces multiply by the mask. ``fixed`` is a boolean vector.
    """
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        index = xp.nonzero(fixed)[0]
        H[index, :] = 0.0
        H[:, index] = 0.0
        H[index, index] = 1.0
        return H
    free = 1.0 - xp.astype(fixed, H.dtype)
    return add_to_diagonal(xp, H * (free[:, None] * free[None, :]), 1.0 - free)


class GramAccumulator:
    """Accumulate ``sum_chunks F.T @ F`` for row chunks ``F`` of shape (rows, n).

    On NumPy each chunk is one BLAS ``syrk`` into the upper triangle of a
    Fortran-ordered buffer (half the flops of a general product, no
    temporaries), and the triangle is mirrored once, in :meth:`result`.
    Elsewhere (CuPy's cuBLAS, array_api_strict) it is a plain matrix product.

    Parameters
    ----------
    xp : module
        Array namespace.
    n : int
        Number of columns of each chunk.
    dtype : dtype
        Floating dtype of the result.
    """

    def __init__(self, xp, n, dtype):
        self.xp = xp
        self.use_syrk = is_numpy_namespace(xp) and dtype in (np.float64, np.float32)
        if self.use_syrk:
            self.gram = np.zeros((n, n), dtype=dtype, order="F")
        else:
            self.gram = xp.zeros((n, n), dtype=dtype)

    def add(self, F):
        """Add ``F.T @ F`` for a chunk ``F`` of shape (rows, n)."""
        if self.use_syrk:
            # The result's dtype decides: a float32 chunk had chosen ssyrk,
            # which cast a float64 result down for good.
            double = self.gram.dtype == np.float64
            syrk = scipy.linalg.blas.dsyrk if double else scipy.linalg.blas.ssyrk
            F = F if F.dtype == self.gram.dtype else F.astype(self.gram.dtype)
            # F is C-ordered, so F.T is Fortran-ordered: no copy of F.
            self.gram = syrk(1.0, F.T, beta=1.0, c=self.gram, overwrite_c=1, lower=0)
        else:
            self.gram = self.gram + F.T @ F

    def result(self):
        """Return the full symmetric matrix."""
        if not self.use_syrk:
            return self.gram
        # Mirror the upper triangle in place, one block of rows at a time, so
        # that no second n x n array is allocated.
        G, n, step = self.gram, self.gram.shape[0], 512
        for start in range(step, n, step):
            stop = min(start + step, n)
            G[start:stop, :start] = G[:start, start:stop].T
        for start in range(0, n, step):
            stop = min(start + step, n)
            block = G[start:stop, start:stop]
            G[start:stop, start:stop] = np.triu(block) + np.triu(block, k=1).T
        return G
