"""Size policy, in one place: byte counts, budgets, the dense limits and "auto".

Three numbers bound what a fit may allocate, each checked *before* the
allocation so that a network too large fails at once with a message that
names the size and what to change (:class:`MemoryLimitError`), not in NumPy
or by swapping:

* ``DEFAULT_MEMORY_BUDGET``: one chunk of per-sample intermediates (Jacobian
  rows, curvature blocks, Monte Carlo draws); rows are processed in chunks
  that fit it. Newton-CG's kept CG residuals (:mod:`sklaplace._cg_basis`)
  fit it too.
* ``DENSE_MEMORY_LIMIT``: any ONE array, notably an ``n_params x n_params``
  matrix (2 GiB: 16,384 parameters in float64).
* ``FIT_MEMORY_LIMIT``: all the ``n_params x n_params`` matrices (or copies
  of the Kronecker factors) a fit holds at once, counted per solver,
  structure, prior scale and alpha (measured with ``tracemalloc``).

The ``"auto"`` settings (:mod:`sklaplace._auto`) follow two predicates of
the fit's cost. :func:`full_is_cheap`: the full posterior's dense matrices
fit ``AUTO_FULL_BUDGET`` bytes, building it costs at most
``AUTO_FULL_WORK`` multiply-adds and factorising it at most
``AUTO_FACTOR_WORK`` (else :func:`kron_is_cheap` decides between the
Kronecker factors and the diagonal). :func:`refits_are_cheap`: one gradient
costs at most ``AUTO_GRADIENT_WORK``. The docs call a network for which
both hold *small*; :func:`low_rank_is_cheap` is a third.
"""

import numpy as np

from sklaplace._evidence import EVIDENCE_BOUNDS, EVIDENCE_STARTS
from sklaplace._network import ParamLayout
from sklaplace.exceptions import MemoryLimitError

__all__ = [
    "AUTO_FULL_BUDGET",
    "AUTO_FACTOR_WORK",
    "AUTO_FULL_WORK",
    "AUTO_GRADIENT_WORK",
    "AUTO_LOW_RANK_WORK",
    "DEFAULT_MEMORY_BUDGET",
    "DENSE_MEMORY_LIMIT",
    "FIT_MEMORY_LIMIT",
    "KRON_FACTOR_COPIES",
    "KRON_HELD_COPIES",
    "check_fit_memory",
    "check_kron_memory",
    "counted_scale",
    "check_memory",
    "dense_matrices_at_peak",
    "full_is_cheap",
    "held_posteriors",
    "kron_factors_fit",
    "kron_is_cheap",
    "low_rank_is_cheap",
    "rows_within_budget",
    "refits_are_cheap",
]

#: Bytes that one chunk of per-sample intermediates may take.
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: Bytes that any ONE array may take: an ``n_params x n_params`` float64
#: matrix for 16,384 parameters, or the intermediates of a single row.
DENSE_MEMORY_LIMIT = 2 * 2**30

#: Bytes that all the ``n_params x n_params`` matrices of one fit may take
#: together (see :func:`dense_matrices_at_peak`).
FIT_MEMORY_LIMIT = 10 * 2**30

#: ``hessian_structure="auto"`` is ``"full"`` while the fit's dense matrices
#: take at most this (about 4,700 to 5,800 parameters), ``"kron"`` beyond.
#: With today's work limits below the factorising one binds first (about
#: 1,600 parameters), so this byte bound only guards a raised work limit.
AUTO_FULL_BUDGET = 2**30

#: ... and while building it takes at most this many multiply-adds:
#: ``n_samples * n_outputs * n_params**2`` for ``J' Lambda J`` (a few seconds
#: on one core). Measured: at 1e12 (4,000 rows, 10 classes, 5,110
#: parameters) the full posterior took ~20 s where ``MLPClassifier``'s whole
#: fit took 2 s.
AUTO_FULL_WORK = 1e11

#: ... and while factorising it takes at most this many (``n_params**3``,
#: about 1,600 parameters, 0.5 s on one core): a tuned fit factorises about a
#: dozen times. Measured: breast cancer with hidden (100,) (3,201 parameters)
#: took 42 s, 24 s in five eigendecompositions (MLPClassifier 0.04-0.2 s);
#: with the Kronecker posterior 0.6 s, test log loss 0.098 against 0.100.
AUTO_FACTOR_WORK = 4e9

#: Refits are cheap while one gradient takes at most this many multiply-adds
#: (``n_samples * n_params``): a default fit takes thousands of gradients and
#: Hessian-vector products (Newton-CG to 1e-6, 12-20 tuning refits). At
#: 4.4e7 (20,000 rows, 2,201 parameters) one Newton-CG MAP took 73 s and the
#: tuned fit over 10 minutes (``MLPClassifier`` 10 s); digits (1.5e6) 15 s.
AUTO_GRADIENT_WORK = 5e6

#: The sample-space Gram's work (:func:`low_rank_is_cheap`; 8e9: 6 s of a 9 s fit).
AUTO_LOW_RANK_WORK = 1e9

#: ``n_params x n_params`` matrices each solver holds at once: Newton's exact
#: Hessian (its terms are built in blocks of about its own size), ``H + mu I``
#: and its Cholesky factor; the first-order and Hessian-free solvers none.
SOLVER_DENSE_MATRICES = {"newton": 5}

#: ... and each posterior structure, while it is built (the curvature, its
#: constrained copy and the factor: about 2 for one logit, 4 for K logits)
#: and while the prior scale is chosen (the factor, ``P`` and the whitened
#: ``P``'s eigenvectors, or their rows stacked and the projection made of them).
POSTERIOR_DENSE_MATRICES = {"full": 4}

#: A fitted posterior's own (its Cholesky factor), held across the next
#: refit of ``alpha="evidence"``; the earlier runs' kept posteriors (one per
#: run of the updates) are held too. The walk of ``alpha="validation"``
#: holds one: the best fit's, across the next fit.
POSTERIOR_HELD_DENSE_MATRICES = {"full": 1}

#: Posteriors held across the held-out refits of ``prior_precision_scale="cv"``:
#: the full-data posterior and the previous fold's.
CV_HELD_POSTERIORS = 2

#: Copies of every Kronecker factor a fit holds while it builds a posterior
#: (one diagonalised: it, its Cholesky factor, the transformed factor, its
#: eigenvectors; the posterior built). Measured (``tracemalloc``, 40 rows of
#: 300 or 1,000 features, hidden (2,)): 7.1-7.5 at a fixed alpha and scale.
KRON_FACTOR_COPIES = 8
#: ... and per posterior held (:func:`held_posteriors`: a block keeps its
#: factor and eigenvectors). Measured: 11.9-13.3 under ``alpha="evidence"``,
#: 15.4-16.4 with ``"cv"`` or its extra run; 6 had been counted for all fits.
KRON_HELD_COPIES = 2

_MEMORY_ADVICE = (
    "Use hessian_structure='kron' or 'diag' with solver='lbfgs' in "
    "LaplaceMLPClassifier (kind='ggn_diag' in log_posterior_hessian), or a smaller "
    "network."
)


def _gib(n_bytes):
    return f"{n_bytes / 2**30:.3g} GiB"


def rows_within_budget(bytes_per_row):
    """Rows of a chunk whose intermediates fit the budget (at least one).

    :data:`DEFAULT_MEMORY_BUDGET` is read at each call: a changed one applies.
    """
    return max(1, DEFAULT_MEMORY_BUDGET // bytes_per_row)


def check_memory(n_bytes, what, advice=_MEMORY_ADVICE):
    """Raise :class:`MemoryLimitError` if one array of ``n_bytes`` exceeds the limit.

    Parameters
    ----------
    n_bytes : int
        Size of the array about to be allocated.
    what : str
        What the array is, for the message (e.g. "the 20000 x 20000 GGN").
    advice : str, default=_MEMORY_ADVICE
        What to change, appended to the message.
    """
    if n_bytes > DENSE_MEMORY_LIMIT:
        raise MemoryLimitError(
            f"{what} would take {_gib(n_bytes)}, more than the "
            f"{_gib(DENSE_MEMORY_LIMIT)} sklaplace allows for one array "
            f"(sklaplace._memory.DENSE_MEMORY_LIMIT). {advice}"
        )


def dense_matrices_at_peak(solver, structure, prior_precision_scale=1.0, alpha=1.0):
    """Most ``n_params x n_params`` matrices a fit holds at once.

    Parameters
    ----------
    solver : str
        The MAP solver actually used.
    structure : {"full", "kron", "diag"}
        The posterior structure actually used (of all the parameters; a
        last-layer posterior holds no ``n_params x n_params`` matrix).
    prior_precision_scale, alpha : default=1.0
        As in :func:`held_posteriors`.

    Returns
    -------
    count : int
    """
    solving = SOLVER_DENSE_MATRICES.get(solver, 0)
    count = max(solving, POSTERIOR_DENSE_MATRICES.get(structure, 0))
    held = held_posteriors(prior_precision_scale, alpha)
    return count + POSTERIOR_HELD_DENSE_MATRICES.get(structure, 0) * held


def held_posteriors(prior_precision_scale=1.0, alpha=1.0):
    """Most posteriors a fit holds while it builds another.

    ``"cv"`` refits folds holding the full-data and previous fold's ones
    (:func:`counted_scale`); ``alpha="evidence"`` (or per layer) holds the
    last refit's, the run's best so far and each earlier run's kept one, for
    every start and one more run (:data:`~sklaplace._basins.HELD_OUT_START`,
    where held-out rows choose the scale or every run collapsed);
    ``"validation"`` the best fit's.
    """
    held = 0
    if isinstance(alpha, str):
        # The earlier runs' kept ones, the last run's best and last refits,
        # with the run from HELD_OUT_START among the runs.
        held += 1 if alpha == "validation" else len(EVIDENCE_STARTS) + 2
    if prior_precision_scale in ("cv", "loo"):  # "loo"'s basins: folds confirm
        held += CV_HELD_POSTERIORS
    return held


def _culprits(solver, structure):
    needs = []
    if SOLVER_DENSE_MATRICES.get(solver, 0):
        needs.append(f"solver={solver!r}")
    if POSTERIOR_DENSE_MATRICES.get(structure, 0):
        needs.append(f"hessian_structure={structure!r}")
    return " and ".join(needs)


def check_fit_memory(
    n_params,
    solver,
    structure,
    prior_precision_scale=1.0,
    alpha=1.0,
    subject="this network",
):
    """Refuse, before any work, a fit whose dense matrices exceed the limits.

    One ``n_params x n_params`` float64 matrix must fit ``DENSE_MEMORY_LIMIT``
    and all those the fit holds at once (:func:`dense_matrices_at_peak`)
    ``FIT_MEMORY_LIMIT``. ``subject`` names whose parameters they are.
    """
    count = dense_matrices_at_peak(solver, structure, prior_precision_scale, alpha)
    if count == 0:
        return
    one = 8 * n_params * n_params
    n = n_params
    advice = (
        "Use hessian_structure='kron' or 'diag' and solver='lbfgs' (no "
        "n_params x n_params matrix), or a smaller network (fewer hidden units "
        "or input features)."
    )
    what = (
        f"The {n} x {n} float64 matrices that {_culprits(solver, structure)} "
        f"need for {subject} ({n} parameters)"
    )
    check_memory(one, what, advice)
    if count * one > FIT_MEMORY_LIMIT:
        raise MemoryLimitError(
            f"{what}: about {count} at once, {_gib(count * one)}, more than the "
            f"{_gib(FIT_MEMORY_LIMIT)} sklaplace allows for one fit "
            f"(sklaplace._memory.FIT_MEMORY_LIMIT). {advice}"
        )


def check_kron_memory(
    layer_sizes, last_layer_only=False, prior_precision_scale=1.0, alpha=1.0
):
    """Refuse, before any work, Kronecker factors that exceed the limits.

    Each layer's ``(fan_in + 1) x (fan_in + 1)`` and ``fan_out x fan_out``
    float64 factors must fit ``DENSE_MEMORY_LIMIT`` one by one, and
    ``KRON_FACTOR_COPIES`` of them all plus ``KRON_HELD_COPIES`` per
    :func:`held_posteriors` ``FIT_MEMORY_LIMIT`` (a 20,000-unit layer had
    allocated a 3 GiB factor).
    """
    held = held_posteriors(prior_precision_scale, alpha)
    copies = KRON_FACTOR_COPIES + KRON_HELD_COPIES * held
    use = "hessian_structure='kron'"
    layers = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    first = len(layers) - 1 if last_layer_only else 0
    other = "" if last_layer_only else "subset_of_weights='last_layer', "
    advice = (
        "Use hessian_structure='diag' (no matrix of a layer's width), "
        f"{other}or fewer hidden units."
    )
    total = 0
    for i, (fan_in, fan_out) in list(enumerate(layers))[first:]:
        for side in (fan_in + 1, fan_out):
            what = (
                f"The {side} x {side} float64 Kronecker factor of layer {i} "
                f"({fan_in} -> {fan_out} units, for {use})"
            )
            check_memory(8 * side * side, what, advice)
            total += 8 * side * side
    if copies * total > FIT_MEMORY_LIMIT:
        raise MemoryLimitError(
            f"The Kronecker factors for {use} take {_gib(total)}, "
            f"and a fit holds up to {copies} copies at once, more than "
            f"the {_gib(FIT_MEMORY_LIMIT)} sklaplace allows for one fit "
            f"(sklaplace._memory.FIT_MEMORY_LIMIT). {advice}"
        )


def full_is_cheap(n_params, n_samples, n_outputs, prior_precision_scale="cv"):
    """Whether ``hessian_structure="auto"`` takes the full posterior.

    Its dense matrices (built, and while the prior scale is chosen:
    :func:`dense_matrices_at_peak` without a dense solver) take at most
    ``AUTO_FULL_BUDGET`` bytes, building its curvature, ``n_samples *
    n_outputs * n_params**2`` multiply-adds, at most ``AUTO_FULL_WORK``, and
    factorising it, ``n_params**3``, at most ``AUTO_FACTOR_WORK``.

    Parameters
    ----------
    n_params : int
    n_samples : int
        Distinct training rows (``fit`` merges identical ones first, so
        integer weights and the repeated rows they stand for resolve alike;
        weights do not count: the rule is about cost).
    n_outputs : int
        Logits per row.
    prior_precision_scale : float or str, default="cv"
        ``"cv"`` holds more dense matrices (the held-out refits).
    """
    count = dense_matrices_at_peak(None, "full", prior_precision_scale)
    fits = count * 8 * n_params**2 <= AUTO_FULL_BUDGET
    factors = n_params**3 <= AUTO_FACTOR_WORK
    builds = n_samples * n_outputs * n_params**2 <= AUTO_FULL_WORK
    return fits and factors and builds


def refits_are_cheap(n_params, n_samples):
    """Whether the ``"auto"`` solver, tolerance and tuning may refit.

    One gradient, ``n_samples * n_params`` multiply-adds, takes at most
    ``AUTO_GRADIENT_WORK``: a tuned fit takes thousands of gradients and
    Hessian-vector products (Newton-CG to 1e-6, about a dozen refits).
    Rows, not weights, count (see :func:`full_is_cheap`).
    """
    return n_samples * n_params <= AUTO_GRADIENT_WORK


def counted_scale(config):
    """Return ``config.prior_precision_scale``, 1.0 with ``link_approx="map"``.

    The plug-in predictive ignores the scale: no held-out refits choose it.
    """
    return config.prior_precision_scale if config.link_approx != "map" else 1.0


def low_rank_is_cheap(config, layer_sizes, n_rows):
    """Whether MacKay's updates may run on the exact GGN posterior's rows.

    Its ``m = n_rows * n_outputs`` rows are fewer than the parameters, their
    Gram (``m**2 * n_params``) within ``AUTO_LOW_RANK_WORK``, every held
    posterior's rows and ``m x m`` factor within ``AUTO_FULL_BUDGET``, and
    the bias prior no weaker than alpha's bound (``EVIDENCE_BOUNDS``: ``I +
    G A^{-1} G'`` is as ill-conditioned as the curvature over the prior).

    Parameters
    ----------
    config : FitConfig or namespace
        Its ``bias_prior_precision`` and scale (:func:`counted_scale`).
    layer_sizes, n_rows : tuple of int, int
        The network's widths; the distinct rows the updates fit.
    """
    n_params, m = ParamLayout(layer_sizes).n_params, n_rows * layer_sizes[-1]
    copies = 2 + held_posteriors(counted_scale(config), "evidence")
    weakest = min(float(b) for b in np.ravel(config.bias_prior_precision))
    small = m < n_params and m * m * n_params <= AUTO_LOW_RANK_WORK
    held = copies * 8 * m * (n_params + m)
    return weakest >= EVIDENCE_BOUNDS[0] and small and held <= AUTO_FULL_BUDGET


def kron_factors_fit(
    layer_sizes, last_layer_only=False, prior_precision_scale=1.0, alpha=1.0
):
    """Whether :func:`check_kron_memory` accepts the Kronecker factors."""
    try:
        check_kron_memory(layer_sizes, last_layer_only, prior_precision_scale, alpha)
    except MemoryLimitError:
        return False
    return True


def kron_is_cheap(
    layer_sizes, last_layer_only=False, prior_precision_scale=1.0, alpha=1.0
):
    """Whether the ``"auto"`` rules may take the Kronecker factors.

    They fit the memory limits (:func:`kron_factors_fit`) and diagonalising
    them, ``sum_l (fan_in_l + 1)**3 + fan_out_l**3``, takes at most the full
    posterior's ``AUTO_FACTOR_WORK`` (at every refit and fold): on 40 rows
    of 3,000 features, hidden (8,), the default had taken 150-200 s.
    """
    sizes = layer_sizes[-2:] if last_layer_only else layer_sizes
    work = sum((i + 1) ** 3 + o**3 for i, o in zip(sizes[:-1], sizes[1:]))
    fits = kron_factors_fit(layer_sizes, last_layer_only, prior_precision_scale, alpha)
    return work <= AUTO_FACTOR_WORK and fits
