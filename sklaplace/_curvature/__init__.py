"""Curvature of the negative log posterior: matrices, diagonals, factors, products.

The one home of the curvature ``H`` of ``L(theta)`` in every form the
package uses:

* :mod:`~sklaplace._curvature._ggn` -- the generalised Gauss-Newton matrix
  ``sum_n J_n' Lambda_n J_n + A``, its diagonal, its rows ``Lambda_n^{1/2}
  J_n``, its KFAC factors and their eigenvalue correction;
* :mod:`~sklaplace._curvature._exact` -- the exact Hessian ``GGN + R + A``
  and its diagonal (second-order backprop, Bishop 1992);
* :mod:`~sklaplace._curvature._blocks` -- the per-layer-pair block sums both
  of those use;
* :mod:`~sklaplace._curvature._products` -- ``v -> H v`` without a matrix,
  and the empirical Fisher diagonal (what Newton-CG uses).

The two tables map ``(hessian, structure)`` to the function that builds the
curvature: :data:`CURVATURE_BUILDERS` (a matrix or a diagonal) and
:data:`FACTORED_CURVATURE_BUILDERS` (:class:`KroneckerFactors`); the posterior
looks them up.
"""

from sklaplace._curvature._exact import exact_diagonal, exact_hessian, residual_hessian
from sklaplace._curvature._ggn import (
    KroneckerFactors,
    check_finite_curvature,
    ggn_diagonal,
    ggn_hessian,
    ggn_rows,
    kron_eigenvalues,
    kron_factors,
    kron_tie_matrices,
)
from sklaplace._curvature._products import (
    fisher_diagonal,
    hessp_operator,
    likelihood_product,
    single_precision_input,
    squared_inputs,
)

__all__ = [
    "CURVATURE_BUILDERS",
    "FACTORED_CURVATURE_BUILDERS",
    "KroneckerFactors",
    "check_finite_curvature",
    "exact_diagonal",
    "exact_hessian",
    "fisher_diagonal",
    "ggn_diagonal",
    "ggn_hessian",
    "ggn_rows",
    "hessp_operator",
    "kron_eigenvalues",
    "kron_factors",
    "kron_tie_matrices",
    "likelihood_product",
    "residual_hessian",
    "single_precision_input",
    "squared_inputs",
]

#: Functions ``(objective, theta) -> H`` by ``(hessian, structure)``: the
#: full matrix or its diagonal, prior included.
CURVATURE_BUILDERS = {
    ("ggn", "full"): ggn_hessian,
    ("exact", "full"): exact_hessian,
    ("ggn", "diag"): ggn_diagonal,
    ("exact", "diag"): exact_diagonal,
}

#: Functions ``(objective, theta) -> factors`` by ``(hessian, structure)``:
#: the curvature in factored form, the GGN's only: KFAC's
#: :class:`KroneckerFactors`, or the rows ``G`` with ``G' G`` the GGN.
FACTORED_CURVATURE_BUILDERS = {
    ("ggn", "kron"): kron_factors,
    ("ggn", "lowrank"): ggn_rows,
}
