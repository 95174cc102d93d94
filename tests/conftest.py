"""Shared fixtures: small problems as data, and array namespaces."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from sklaplace._backend import get_namespace
from sklaplace._likelihood import likelihood_for
from sklaplace._network import ParamLayout
from sklaplace._objective import NegLogPosterior
from sklaplace._prior import prior_precision_vector

# One BLAS thread for the whole session, as the docs build has (docs/conf.py):
# the suite's networks are tiny, so its BLAS calls are many and small, and a
# second thread spends more time synchronising than computing, the more so on
# a shared machine: tests/test_common.py on 2 cores another process kept busy
# took 998 s with OpenBLAS's 2 threads, 97 s with 1. One test's case depends
# on the thread count: test_round_off_does_not_send_a_fold_refit_to_another_basin
# (round-off must send the former code's fold to another basin, as 1 does).
_BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")

ACTIVATION_NAMES = ["identity", "logistic", "tanh", "relu", "softplus", "elu"]
HIDDEN = [(), (4,), (4, 3)]


def traced_peak(function):
    """tracemalloc's peak, in bytes, while ``function()`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def make_problem(
    activation="tanh",
    n_classes=2,
    hidden=(4,),
    weighted=False,
    n_samples=20,
    n_features=3,
    seed=0,
    xp=None,
    memory_budget=None,
    raw=False,
):
    """A random MLP, data and prior as a ``(NegLogPosterior, theta)`` pair (NumPy).

    With ``raw=True``, also the NumPy arrays it was built from (a dict: ``X``,
    ``y``, ``sample_weight``, ``prior_precision``, ``layer_sizes``,
    ``activation``), for references that must not read the object under test.
    """
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    likelihood = likelihood_for(n_classes)
    layout = ParamLayout((n_features, *hidden, likelihood.n_outputs(n_classes)))
    theta = rng.normal(scale=0.7, size=layout.n_params)
    weight = rng.uniform(0.5, 2.0, n_samples) if weighted else np.ones(n_samples)
    # Per-layer weight precisions and a nonzero bias precision exercise the prior.
    alpha = np.linspace(0.3, 0.9, layout.n_layers)
    precision = prior_precision_vector(layout, alpha, 0.2)
    xp = get_namespace(X) if xp is None else xp
    as_xp = lambda a: xp.asarray(a)  # noqa: E731
    Y = likelihood.encode(xp, as_xp(y), layout.n_outputs, xp.float64)
    kwargs = {} if memory_budget is None else {"memory_budget": memory_budget}
    obj = NegLogPosterior(
        xp,
        layout,
        activation,
        likelihood,
        as_xp(X),
        Y,
        as_xp(weight),
        as_xp(precision),
        **kwargs,
    )
    if raw:
        data = dict(
            X=X,
            y=y,
            sample_weight=weight,
            prior_precision=precision,
            layer_sizes=layout.layer_sizes,
            activation=activation,
        )
        return obj, as_xp(theta), data
    return obj, as_xp(theta)


def count_hessian_products(monkeypatch):
    """Count Newton-CG's Hessian-vector products: the list returned gains one each."""
    from sklaplace import _newton_cg

    calls, original = [], _newton_cg.hessp_operator

    def counting(*args, **kwargs):
        hessp = original(*args, **kwargs)

        def counted(v):
            calls.append(1)
            return hessp(v)

        return counted

    monkeypatch.setattr(_newton_cg, "hessp_operator", counting)
    return calls


def forbid_the_map_solver(monkeypatch):
    """Make the MAP solver raise: a fit that reaches it passed the checks before it."""
    from sklaplace import _laplace_fit

    def no_solve(*args, **kwargs):
        raise AssertionError(
            "the MAP solver ran: the checks before it let the fit start"
        )

    monkeypatch.setattr(_laplace_fit, "minimize_map", no_solve)


def record_row_chunks(monkeypatch):
    """Record the rows of every chunk the objective yields: a list of sizes."""
    sizes, row_chunks = [], NegLogPosterior.row_chunks

    def counted(self, bytes_per_row):
        for chunk in row_chunks(self, bytes_per_row):
            sizes.append(chunk[0].shape[0])
            yield chunk

    monkeypatch.setattr(NegLogPosterior, "row_chunks", counted)
    return sizes


def rebuilt(obj, sample_weight=None, prior_precision=None, fixed=None):
    """``obj``'s NegLogPosterior again (its memory budget too), with other
    weights, prior or fixed mask."""
    return NegLogPosterior(
        obj.xp,
        obj.layout,
        obj.activation,
        obj.likelihood,
        obj.X,
        obj.Y,
        obj.sample_weight if sample_weight is None else sample_weight,
        obj.prior_precision if prior_precision is None else prior_precision,
        fixed=fixed,
        memory_budget=obj.memory_budget,
    )


def case_id(activation, n_classes, hidden, weighted):
    depth = f"h{len(hidden)}"
    return f"{activation}-{n_classes}cls-{depth}-{'sw' if weighted else 'nosw'}"


CASES = [
    (a, k, h, w)
    for a in ACTIVATION_NAMES
    for k in (2, 3)
    for h in HIDDEN
    for w in (False, True)
]


@pytest.fixture(params=CASES, ids=[case_id(*c) for c in CASES])
def problem(request):
    activation, n_classes, hidden, weighted = request.param
    obj, theta = make_problem(activation, n_classes, hidden, weighted)
    if activation == "relu":
        # Finite differences must not cross a kink: keep pre-activations away from 0.
        fwd = obj.forward(theta)
        for i in range(len(hidden)):
            z = (
                fwd.acts[i] @ obj.layout.layers(np, theta)[i][:-1]
                + obj.layout.layers(np, theta)[i][-1]
            )
            assert np.min(np.abs(z)) > 1e-3, "relu fixture too close to a kink"
    return obj, theta


def linear_regression_data(n_features, noise=0.5, n=30, seed=4, orthogonal=False):
    """Features ``Phi`` and targets ``y = Phi w + e`` of a linear-Gaussian model."""
    rng = np.random.RandomState(seed)
    Phi = rng.normal(size=(n, n_features))
    if orthogonal:  # Phi' Phi diagonal: then so is the posterior precision
        Phi = np.linalg.qr(Phi)[0] * np.arange(1.0, n_features + 1)
    y = Phi @ rng.normal(size=n_features) + noise * rng.normal(size=n)
    return Phi, y


def bayesian_linear_regression(prior, noise=0.5, data=None, **kwargs):
    """Bayesian linear regression, where the Laplace posterior is exact.

    A closed-form model for the evidence code: ``y = Phi w + e``, ``e ~
    N(0, noise^2 I)``, ``w ~ N(0, diag(prior)^{-1})``. ``data`` is ``(Phi,
    y)`` (default: :func:`linear_regression_data` with ``kwargs``).

    Returns
    -------
    log_lik : float
        ``log p(y | w_map)``.
    w : ndarray
        The MAP (the posterior mean), from the normal equations.
    P : ndarray
        The posterior precision ``Phi' Phi / noise^2 + diag(prior)``.
    evidence : float or None
        ``log N(y | 0, noise^2 I + Phi diag(prior)^{-1} Phi')``, computed
        with no Laplace term; ``None`` when a prior precision is 0 (improper).
    """
    Phi, y = (
        linear_regression_data(prior.shape[0], noise, **kwargs)
        if data is None
        else data
    )
    n = y.shape[0]
    P = Phi.T @ Phi / noise**2 + np.diag(prior)
    w = np.linalg.solve(P, Phi.T @ y / noise**2)
    log_lik = scipy.stats.norm.logpdf(y, Phi @ w, noise).sum()
    evidence = None
    if np.all(prior > 0):
        cov = noise**2 * np.eye(n) + Phi @ np.diag(1.0 / prior) @ Phi.T
        evidence = scipy.stats.multivariate_normal.logpdf(y, np.zeros(n), cov)
    return log_lik, w, P, evidence


# Estimator configurations that between them take every path of fit and
# predict (solvers, curvatures, posterior structures, prior-scale choices,
# predictives). The backend tests fit each on another namespace and compare
# with NumPy. Fixed alpha where the evidence updates would only add time.
BACKEND_CONFIGS = {
    "default": dict(),
    "newton-cg": dict(solver="newton-cg", alpha=1.0),
    "exact-newton-full": dict(
        solver="newton", hessian="exact", hessian_structure="full", alpha=1.0
    ),
    # What "auto" gives a large network: alpha and the scale on held-out rows.
    "kron-lbfgs-validation": dict(
        hessian_structure="kron",
        solver="lbfgs",
        alpha="validation",
        prior_precision_scale="validation",
    ),
    "diag-evidence-alpha": dict(hessian_structure="diag", solver="newton"),
    "cv-scale": dict(alpha=1.0, prior_precision_scale="cv"),
    "last-layer-mc": dict(
        subset_of_weights="last_layer", link_approx="mc", n_mc_samples=200, alpha=1.0
    ),
    # Pruned by magnitude, then refitted warm (the default scale: "cv").
    "pruned-refit-cv": dict(alpha=1.0, hessian_structure="full"),
    # The scales' family with a flat block (its Schur complement) and a last
    # layer's full posterior (session 36).
    "flat-bias-cv": dict(alpha=1.0, bias_prior_precision=0.0),
    "last-layer-full-cv": dict(
        subset_of_weights="last_layer", hessian_structure="full", alpha=1.0
    ),
    # The scale by approximate leave-one-out (session 38), the default's and
    # a last layer's: no refit, every row's Jacobian through the family.
    "loo-scale": dict(alpha=1.0, prior_precision_scale="loo"),
    "last-layer-loo": dict(
        subset_of_weights="last_layer", alpha=1.0, prior_precision_scale="loo"
    ),
}


def assert_cupy_backend_matches_numpy(config, n_classes, shape, hidden, rtol):
    """Fit ``BACKEND_CONFIGS[config]`` with ``backend="numpy"`` and "cupy"; compare.

    ``rtol`` bounds alpha's and the probabilities' relative differences; the
    chosen solver, structure, curvature and prior scale must be identical.
    The test decides what ``backend="cupy"`` resolves to (CuPy, or
    array_api_strict by monkeypatching). A tight ``tol``: the namespaces
    sum in other orders, and a loose stop would amplify that.
    """
    from sklaplace import LaplaceMLPClassifier

    n_samples, n_features = shape
    X, y = make_classification(
        n_samples,
        n_features,
        n_informative=n_features - 1,
        n_redundant=0,
        n_classes=n_classes,
        random_state=1,
    )
    params = (
        dict(hidden_layer_sizes=hidden, tol=1e-10, max_iter=1000, random_state=0)
        | BACKEND_CONFIGS[config]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LaplaceMLPClassifier(backend="numpy", **params).fit(X, y)
        other = LaplaceMLPClassifier(backend="cupy", **params).fit(X, y)
        if config.startswith("pruned"):
            from sklaplace import prune

            reference, other = (
                prune(fitted, 0.5, method="magnitude")
                .set_params(warm_start=True)
                .fit(X, y)
                for fitted in (reference, other)
            )
    for name in ("solver_", "hessian_structure_", "curvature_"):
        assert getattr(other, name) == getattr(reference, name), name
    assert all(isinstance(c, np.ndarray) for c in other.coefs_)
    np.testing.assert_allclose(other.alpha_, reference.alpha_, rtol=rtol)
    assert other.prior_precision_scale_ == reference.prior_precision_scale_
    np.testing.assert_allclose(
        other.predict_proba(X), reference.predict_proba(X), rtol=rtol, atol=1e-10
    )
