"""What the ``"auto"`` settings stand for, resolved once per fit.

:func:`resolved_params` replaces every ``"auto"`` of the estimator's
parameters by what this fit uses, from the cost predicates of
:mod:`sklaplace._memory`: where :func:`~sklaplace._memory.refits_are_cheap`
(one gradient within ``AUTO_GRADIENT_WORK``) the MAP is tight (Newton-CG to
1e-6: :func:`resolve_solver`, :func:`resolve_tol`), alpha is tuned by
refits and the prior scale on rows left out, one at a time with a full
posterior, on folds with another (:func:`resolve_tuning`), else L-BFGS stops at
``MLPClassifier``'s tolerance on 90% of the rows and alpha (two to four
fits) and the prior scale (no refit) are chosen on the other 10%, so that
each fit costs about what ``MLPClassifier``'s does; the posterior is full
where :func:`~sklaplace._memory.full_is_cheap`, else Kronecker-factored
where :func:`~sklaplace._memory.kron_is_cheap`, else diagonal
(:func:`resolve_structure`). Then the memory checks accept or refuse the
fit with all of them.
"""

from types import SimpleNamespace

from sklaplace._memory import (
    check_fit_memory,
    check_kron_memory,
    check_memory,
    counted_scale,
    full_is_cheap,
    kron_is_cheap,
    refits_are_cheap,
)

__all__ = [
    "resolve_solver",
    "resolve_structure",
    "resolve_tol",
    "resolve_tuning",
    "resolved_params",
]


def resolve_tuning(params, refits, full=False):
    """Resolve ``alpha="auto"`` and ``prior_precision_scale="auto"`` in place.

    Where refits are cheap (:func:`~sklaplace._memory.refits_are_cheap`)
    both are tuned on the data: ``alpha`` by the evidence (MacKay's refits)
    and the prior scale on every row left out in turn (``"loo"``, no refit)
    where the posterior is full, else on held-out folds (``"cv"``): taken
    out of a Kronecker-factored or diagonal precision, one row's curvature
    misjudges it. Beyond, where every refit is costly, both are chosen on
    held-out validation rows (``"validation"``: two to four fits for
    alpha, none for the scale).

    Parameters
    ----------
    params : namespace
        The estimator's parameters; ``alpha`` and ``prior_precision_scale``
        are replaced where they are ``"auto"``.
    refits : bool
        :func:`~sklaplace._memory.refits_are_cheap` for this fit.
    full : bool, default=False
        Whether the posterior is full (``hessian_structure`` resolved).

    Returns
    -------
    params : namespace
    """
    if isinstance(params.alpha, str) and params.alpha == "auto":
        params.alpha = "evidence" if refits else "validation"
    if params.prior_precision_scale == "auto":
        held_out = "loo" if full else "cv"
        params.prior_precision_scale = held_out if refits else "validation"
    return params


def resolve_structure(hessian_structure, cheap, kron_fits=True):
    """Return the structure ``"auto"`` stands for (others as they are).

    ``"full"`` where the full posterior is cheap (:func:`full_is_cheap`),
    ``"kron"`` beyond where its factors are (``kron_fits``:
    :func:`kron_is_cheap`, memory and work), ``"diag"`` beyond that (20,000
    features had been refused for a 3 GiB factor; 3,000 features took 6 s
    per diagonalisation, at every refit). The solver
    does not enter: a dense one is checked on its own by
    :func:`check_fit_memory`.
    """
    if hessian_structure != "auto":
        return hessian_structure
    return "full" if cheap else "kron" if kron_fits else "diag"


def resolve_solver(solver, cheap):
    """Return the solver ``"auto"`` stands for (others as they are).

    ``"newton-cg"`` where refits are cheap (:func:`refits_are_cheap`): it was
    faster than dense Newton wherever a dense iteration costs more than a
    few milliseconds, reached tolerances L-BFGS did not, and bitwise-close
    MAPs for integer weights and repeated rows at a ReLU kink, where both
    others stalled apart (docs/benchmarks.rst). ``"lbfgs"`` beyond: far from
    the mode of a larger network Newton-CG took 1,900 products (10x
    ``MLPClassifier``'s time) to where L-BFGS got in 400 iterations; with
    ``max_iter=200`` each of the walk's two to four fits costs about
    ``MLPClassifier``'s 200 iterations (and warns as it does).
    """
    if solver != "auto":
        return solver
    return "newton-cg" if cheap else "lbfgs"


def resolve_tol(tol, cheap):
    """Return the tolerance ``"auto"`` stands for (a number as it is).

    1e-6 where refits are cheap (:func:`refits_are_cheap`): Newton-CG converges
    superlinearly there, and the exact posterior is taken at a tight mode.
    1e-4 beyond: ``MLPClassifier``'s default, which its L-BFGS applies to
    the same scaled gradient (SciPy's ``gtol`` on the per-sample average
    objective), so that a large network stops where ``MLPClassifier`` would.
    """
    if not (isinstance(tol, str) and tol == "auto"):
        return tol
    return 1e-6 if cheap else 1e-4


def resolved_params(estimator, layout, n_samples):
    """Return the hyper-parameters with ``"auto"`` resolved, once checked.

    Returns a namespace with the estimator's parameters in which ``solver``,
    ``tol`` and ``hessian_structure`` are the ones used
    (:func:`resolve_solver`, :func:`resolve_tol`, :func:`resolve_structure`),
    :func:`resolve_tuning` has resolved the tuning settings and
    ``subset_of_weights`` is
    ``"all"`` for a network without hidden layers (its last layer is all of
    it), after :func:`check_fit_memory` has accepted the fit with all of
    them. A last-layer posterior's matrices are its own layer's.

    Parameters
    ----------
    estimator : LaplaceMLPClassifier
    layout : ParamLayout
    n_samples : int
        Distinct training rows (weights do not count).
    """
    params = SimpleNamespace(**estimator.get_params(deep=False))
    n_params, n_outputs = layout.n_params, layout.n_outputs

    refits = refits_are_cheap(n_params, n_samples)
    # The structure's costs count the posteriors the tuning holds, as many
    # for "cv" as for "loo", which the structure then picks between.
    provisional = resolve_tuning(SimpleNamespace(**vars(params)), refits)
    scale, alpha = counted_scale(provisional), provisional.alpha
    params.solver = resolve_solver(params.solver, refits)
    params.tol = resolve_tol(params.tol, refits)
    if layout.n_layers == 1:
        params.subset_of_weights = "all"
    last_only = params.subset_of_weights == "last_layer"
    # The posterior's own parameters: a last layer's full posterior is cheap
    # behind any number of inputs.
    n_last = (layout.layer_sizes[-2] + 1) * n_outputs
    params.hessian_structure = resolve_structure(
        params.hessian_structure,
        full_is_cheap(n_last if last_only else n_params, n_samples, n_outputs, scale),
        kron_is_cheap(layout.layer_sizes, last_only, scale, alpha),
    )
    params = resolve_tuning(params, refits, params.hessian_structure == "full")
    scale = counted_scale(params)
    check_memory(
        8 * n_params,
        f"One vector of the {n_params} parameters",
        "Use a smaller network (fewer hidden units or input features).",
    )
    if params.hessian_structure == "kron":
        check_kron_memory(layout.layer_sizes, last_only, scale, params.alpha)
    dense = params.hessian_structure if params.subset_of_weights == "all" else None
    check_fit_memory(n_params, params.solver, dense, scale, params.alpha)
    if last_only:  # dense over the last layer (refused after the MAP before)
        subject = "the last layer (subset_of_weights='last_layer'; narrow it)"
        structure = params.hessian_structure
        check_fit_memory(n_last, "lbfgs", structure, scale, params.alpha, subject)
    return params
