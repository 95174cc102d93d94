"""A canonical Kronecker eigenbasis inside repeated KFAC eigenvalues.

A layer's KFAC basis ``S kron V`` (:class:`~sklaplace._kron.KronBlock`) is
unique only up to rotations inside a repeated eigenvalue: of the pencil of
``A`` and the row prior (columns of ``S`` with one ``mu``), or of ``G``
(columns of ``V`` with one ``m``). KFAC's eigenvalues ``mu_i m_j`` do not
see such a rotation, but EKFAC's, the GGN's diagonal in the basis, do, and
LAPACK's rotation there follows the order of the features (or of the
classes) and round-off: balanced one-hot columns (``A`` with one eigenvalue
seven times) had moved probabilities by 0.013 and the log evidence by 0.19
nats when the columns were permuted, and by 0.006 and 0.08 nats under a
relative noise of 1e-14; relabelled classes of a symmetric design (``G``
with one eigenvalue three times) by 0.0014 and 0.02 nats (a helper's probe,
session 62). Inside each such group the basis is rotated to diagonalise
the GGN block's partial trace over the other factor
(:func:`~sklaplace._curvature.kron_tie_matrices`), which the order of the
features and classes does not change (on the one-hot columns the logit
variances then came within a factor 2 of the full posterior's, from 16
times too small); where that matrix is tied too (a symmetry of the data),
the corrected eigenvalues are averaged over the group (:func:`averaged`).

Columns of ``S`` are tied where the pencil's eigenvalue ``mu / rho``
agrees within ``TIE_RTOL`` (a property of the tied space, not of its
basis), and columns with no prior (``rho = 0``, the flat rows'
:mod:`~sklaplace._simultaneous` basis: ``A``'s eigenvectors there) where
``A``'s Rayleigh quotient ``mu / |S_i|^2``, their ``A`` eigenvalue, does;
columns of ``V`` where ``m`` does. ``mu``, ``rho`` and ``m`` are rotated
with the basis for consistency (inside a tie they agree to ``TIE_RTOL``,
so no result reads the rotation), the jitter's share of ``rho`` is
recomputed from its definition.
"""

import numpy as np

from sklaplace._curvature import kron_tie_matrices
from sklaplace._kron_columns import vanishing

__all__ = ["TIE_RTOL", "averaged", "tied_groups", "untied"]

#: Eigenvalues this close (relative) count as one. A symmetric design's
#: ties come out split by the MAP's own inexactness (3.5e-8 at ``tol`` 1e-6
#: on the relabelled classes), far above round-off; a rotation among
#: eigenvalues this close changes the prior's diagonal in the basis by at
#: most this share.
TIE_RTOL = 1e-5


def tied_groups(keys):
    """Index arrays of the columns (two or more) whose ``keys`` all agree.

    ``keys`` is a list of arrays, each with one value per column; two values
    agree where they differ by at most ``TIE_RTOL`` of the larger magnitude
    (two infinite values agree; a zero with nothing: a direction with no
    data has no corrected eigenvalue in any basis, and constant columns,
    as digits' blank pixels, would cost a pass for nothing). Columns are
    sorted by the keys, and a group runs while every key stays within that
    tolerance of the group's first column.
    """
    order = np.lexsort(keys[::-1])
    groups, current = [], [order[0]]
    for index in order[1:]:
        first = current[0]
        if all(_agree(key[first], key[index]) for key in keys):
            current.append(index)
            continue
        groups.append(current)
        current = [index]
    groups.append(current)
    return [np.sort(group) for group in groups if len(group) > 1]


def _agree(one, other):
    if np.isinf(one) or np.isinf(other):
        return one == other
    return 0 < abs(one - other) <= TIE_RTOL * max(abs(one), abs(other)) or (
        one == other != 0
    )


def untied(objective, theta, blocks):
    """``blocks`` with their bases rotated inside every tie, by one more pass.

    Returns
    -------
    blocks : list of KronBlock
        ``blocks`` themselves where no layer has a tie (and no pass is made).
    still_tied : list of tuple
        Per layer, the column groups of ``S`` and of ``V`` inside which the
        tie's matrix is tied too (a symmetry of the data): no rotation
        separates them, and :func:`averaged` makes the eigenvalues there
        free of the basis.
    """
    input_groups = [_input_ties(block) for block in blocks]
    output_groups = [_output_ties(block) for block in blocks]
    if not any(input_groups) and not any(output_groups):
        return blocks, [([], []) for _ in blocks]
    bases = [(block.S, block.V) for block in blocks]
    ties = kron_tie_matrices(objective, theta, bases, input_groups, output_groups)
    rotated, still_tied = [], []
    for block, *layer in zip(blocks, input_groups, output_groups, *ties):
        inputs, outputs, input_ties, output_ties = layer
        S, V = block.S.copy(), block.V.copy()
        mu, rho, m = block.mu.copy(), block.rho.copy(), block.m.copy()
        # The diagonals rotate with the basis: diag(R' diag(x) R) = (R * R)' x.
        left = [
            _rotate(S, columns, tie, mu, rho)
            for columns, tie in zip(inputs, input_ties)
        ]
        right = [
            _rotate(V, columns, tie, m) for columns, tie in zip(outputs, output_ties)
        ]
        rho_jitter = block.jitter * np.sum(S * S, axis=0)  # as KronBlock's own
        basis = dict(S=S, V=V, mu=mu, rho=rho, rho_jitter=rho_jitter, m=m)
        rotated.append(block.with_basis(**basis))
        still_tied.append(([c for g in left for c in g], [c for g in right for c in g]))
    return rotated, still_tied


def _rotate(basis, columns, tie, *diagonals):
    """Rotate ``basis[:, columns]`` (and ``diagonals``) to diagonalise ``tie``.

    Returns the columns among them that ``tie``'s eigenvalues still tie.
    """
    eigenvalues, R = np.linalg.eigh(tie)
    basis[:, columns] = basis[:, columns] @ R
    for values in diagonals:
        values[columns] = (R * R).T @ values[columns]
    return [columns[group] for group in tied_groups([eigenvalues])]


def averaged(data, still_tied):
    """Corrected eigenvalues averaged over each group that stays tied.

    The mean of ``h`` over a group of ``S``'s columns (for each column of
    ``V``; likewise for ``V``'s) is the trace of the GGN block on that space
    over its dimension: the same in any basis of it.
    """
    data = [h.copy() for h in data]
    for h, (inputs, outputs) in zip(data, still_tied):
        for columns in inputs:
            h[columns, :] = np.mean(h[columns, :], axis=0)
        for columns in outputs:
            h[:, columns] = np.mean(h[:, columns], axis=1)[:, None]
    return data


def _input_ties(block):
    # Eigenvalues that are round-off of the largest (a factor of rank below
    # its size: 40 rows of 784 inputs) carry no data either, as zeros.
    flat, silent = block.rho <= 0, vanishing(block.mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        pencil = np.where(flat, np.inf, np.where(silent, 0.0, block.mu / block.rho))
        rayleigh = np.where(flat, block.mu / np.sum(block.S * block.S, axis=0), 1.0)
    return tied_groups([pencil, rayleigh])


def _output_ties(block):
    return tied_groups([np.where(vanishing(block.m), 0.0, block.m)])
