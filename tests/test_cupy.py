"""CuPy backend: same numbers as NumPy, on the GPU. Skipped without CuPy + a device."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    if cupy.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device", allow_module_level=True)
except Exception as exc:  # CUDA libraries missing
    pytest.skip(f"CUDA unavailable: {exc}", allow_module_level=True)

from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sklaplace import LaplaceMLPClassifier, log_posterior_hessian  # noqa: E402
from sklaplace._backend import get_namespace, to_numpy  # noqa: E402
from sklaplace._curvature import CURVATURE_BUILDERS  # noqa: E402
from tests.conftest import make_problem  # noqa: E402


@pytest.mark.parametrize("case", [("tanh", 2, (4, 3)), ("softplus", 3, (4,))])
def test_curvature_on_gpu_matches_numpy(case):
    obj, theta = make_problem(*case, weighted=True)
    gobj, gtheta = make_problem(*case, weighted=True, xp=get_namespace(cupy.zeros(1)))
    for _key, curvature in CURVATURE_BUILDERS.items():
        np.testing.assert_allclose(
            to_numpy(curvature(gobj, gtheta)),
            curvature(obj, theta),
            rtol=1e-10,
            atol=1e-12,
        )
    loss, grad = obj.loss_gradient(theta)
    gloss, ggrad = gobj.loss_gradient(gtheta)
    np.testing.assert_allclose(to_numpy(ggrad), grad, rtol=1e-11, atol=1e-13)


def test_functional_api_returns_cupy():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(10, 3)), np.arange(10) % 2
    coefs, intercepts = (
        [rng.normal(size=(3, 4)), rng.normal(size=(4, 1))],
        [rng.normal(size=4), rng.normal(size=1)],
    )
    H = log_posterior_hessian(
        [cupy.asarray(c) for c in coefs],
        [cupy.asarray(b) for b in intercepts],
        cupy.asarray(X),
        y,
    )
    assert isinstance(H, cupy.ndarray)
    np.testing.assert_allclose(
        H.get(), log_posterior_hessian(coefs, intercepts, X, y), rtol=1e-10
    )


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris])
def test_estimator_on_gpu_matches_numpy(solver, loader):
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(hidden_layer_sizes=(8,), solver=solver, tol=1e-9, random_state=0)
    cpu = LaplaceMLPClassifier(backend="numpy", **params).fit(X, y)
    gpu = LaplaceMLPClassifier(backend="cupy", **params).fit(X, y)
    assert all(isinstance(c, np.ndarray) for c in gpu.coefs_)
    np.testing.assert_allclose(
        gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-5, atol=1e-7
    )


def test_gpu_fitted_estimator_predicts_without_cupy(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    gpu = LaplaceMLPClassifier((8,), backend="cupy", random_state=0).fit(X, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(gpu))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", gpu.predict_proba(X))
    script = f"""
import sys, pickle, numpy as np
sys.modules['cupy'] = None  # CuPy cannot be imported in this process
model = pickle.loads(open({str(path)!r}, 'rb').read())
np.testing.assert_allclose(model.predict_proba(np.load({str(tmp_path / "X.npy")!r})),
                           np.load({str(tmp_path / "expected.npy")!r}), rtol=1e-8)
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
