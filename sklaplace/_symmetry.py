"""Hidden units that coincide at a MAP, split apart before a refit starts there.

A strong prior can merge hidden units: at the evidence's start alpha=100, a
(6,) ELU network on 300 rows of three classes ended with two or three of
its units equal to a thousandth of their size (to 1e-8 at ``tol=1e-10``).
The merged point can be a saddle of a weaker prior's posterior, and a
refit warm-started there left it along those leftover differences, which
the solver's rounding set: the refit's basin followed rounding, and so did
the fit (a 1e-15 relative change of X moved the default's probabilities by
up to 0.58 on six of twelve such problems, and CuPy's fit parted from
NumPy's). Before a refit, coinciding units are now moved apart by offsets
drawn from the fit's initial weights, far larger than those differences
and summing to zero over each group (so that the network's function is
unchanged to first order): the way out is the same on every machine, and
where the units belong merged the solver merges them again. (Running a
refit again only when it had pulled merged units apart kept the same
determinism at 5-47% more fit time, against 0-15% for this.) The fit from
the starting weights, and the held-out folds' short fits, start as they
are; a warm start's weights, whose units coincide too, split nothing.
"""

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from sklaplace._backend import to_numpy
from sklaplace._network import NEGATION_CONSTANTS, SIGN_SYMMETRIC_ACTIVATIONS

__all__ = ["COINCIDE_RTOL", "SPLIT_SIZE", "coinciding_groups", "split_coinciding_units"]

#: Two hidden units coincide when their parameters (incoming weights, bias,
#: outgoing weights) differ by at most this fraction of the larger unit's
#: largest parameter. Merged units at the default ``tol`` measured up to
#: 1.3e-3 of it apart (at 1e-3, 4 of ``bench_rounding``'s 36 perturbed
#: fits still parted), the (6,) networks' distinct units 0.3 to 2 times it.
COINCIDE_RTOL = 1e-2
#: The offsets' largest entry, as a fraction of the group's largest
#: parameter: five times the widest gap still taken for a merge.
SPLIT_SIZE = 0.05


def _unit_rows(layout, theta, layer):
    """Rows of hidden ``layer``'s units: incoming weights, bias, outgoing weights."""
    layers = layout.layers(np, theta)
    return np.hstack([layers[layer].T, layers[layer + 1][:-1, :]])


def _write_unit_rows(layout, theta, layer, rows):
    layers = layout.layers(np, theta)  # views into theta
    fan_in = layers[layer].shape[0]
    layers[layer][...] = rows[:, :fan_in].T
    layers[layer + 1][:-1, :] = rows[:, fan_in:]


def coinciding_groups(rows, sign_symmetric):
    """Find the groups of units whose parameter rows coincide.

    Parameters
    ----------
    rows : ndarray of shape (n_units, n_unit_params)
        One row per unit (:func:`_unit_rows`).
    sign_symmetric : bool
        Whether a unit and its negation compute the same function (tanh):
        rows are then compared with the sign that makes their largest
        entry positive.

    Returns
    -------
    groups : list of ndarray of int
        Each group's unit indices (two or more units, not all zero).
    signs : ndarray of shape (n_units,)
        The sign each row was compared with.
    """
    signs = np.ones(len(rows))
    if sign_symmetric:
        lead = rows[np.arange(len(rows)), np.argmax(np.abs(rows), axis=1)]
        signs[lead < 0] = -1.0
    canonical = rows * signs[:, None]
    scale = np.max(np.abs(canonical), axis=1)
    n_units = len(rows)
    # Distances a block of units at a time: about 32 MiB each, whatever the
    # width (a full matrix is 128 MiB at 4,096 units).
    block_rows = max(1, 2**22 // n_units)
    heads, tails = [], []
    for start in range(0, n_units, block_rows):
        block = slice(start, start + block_rows)
        later = slice(start, None)  # each pair once (the graph is undirected)
        close = cdist(canonical[block], canonical[later], "chebyshev") <= (
            COINCIDE_RTOL * np.maximum(scale[block, None], scale[None, later])
        )
        head, tail = np.nonzero(close)
        heads.append(head + start)
        tails.append(tail + start)
    heads, tails = np.concatenate(heads), np.concatenate(tails)
    graph = coo_array((np.ones(len(heads)), (heads, tails)), shape=(n_units,) * 2)
    _, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels)
    groups = [np.flatnonzero(labels == label) for label in np.flatnonzero(counts > 1)]
    return [g for g in groups if np.max(scale[g]) > 0], signs


def _zero_sum_over_free(offsets, free):
    """``offsets`` with each column's mean over its free entries taken out.

    Fixed entries get no offset; the others still sum to zero over the
    group, so the network's function stays unchanged to first order.
    """
    offsets = np.where(free, offsets, 0.0)
    counts = np.sum(free, axis=0)
    means = np.sum(offsets, axis=0) / np.maximum(counts, 1)
    return np.where(free & (counts > 1), offsets - means, 0.0)


def split_coinciding_units(xp, layout, theta, reference, activation, fixed=None):
    """Move coinciding hidden units of ``theta`` apart along ``reference``'s.

    Within each group of coinciding units (:func:`coinciding_groups`), unit
    ``i`` moves by ``SPLIT_SIZE`` times the group's largest parameter along
    ``reference``'s unit ``i`` less the group's mean of them: offsets that
    sum to zero over the group and depend on ``reference`` alone. Where some
    entries are fixed, each coordinate's offsets are centred over the free
    ones (the largest may then exceed that size). A negated logistic unit
    feeds the next layer ``1 - phi(z)``, so the next layer's biases take
    back the constant its outgoing offsets add; into a fixed next bias its
    outgoing weights do not move. (Moving
    only the groups whose offsets meet negative curvature, ``d' H d < 0``,
    was tried: on the (6,) network that parted, ``d' H d`` was positive
    while the refit's way out crossed the Hessian's negative directions,
    and the fits followed round-off again.)

    Parameters
    ----------
    xp : module
        Array namespace of ``theta``.
    layout : ParamLayout
    theta : array of shape (n_params,)
        A MAP that a refit is about to start from.
    reference : ndarray of shape (n_params,)
        Weights whose units differ, e.g. the fit's initial ones.
    activation : str
    fixed : ndarray of bool of shape (n_params,), default=None
        Parameters held at zero: they do not move.

    Returns
    -------
    theta : array of shape (n_params,)
        ``theta`` itself where no units coincide, else a moved copy.
    """
    if activation == "identity":  # any mixing of its units is a symmetry
        return theta
    host, moved = None, False
    sign_symmetric = activation in SIGN_SYMMETRIC_ACTIVATIONS
    for layer in range(layout.n_layers - 1):
        if host is None:
            host = np.array(to_numpy(theta), dtype=np.float64)
        rows = _unit_rows(layout, host, layer)
        groups, signs = coinciding_groups(rows, sign_symmetric)
        if not groups:
            continue
        directions = _unit_rows(layout, reference, layer) * signs[:, None]
        free = np.ones_like(rows, dtype=bool)
        shift = np.zeros(rows.shape[1] - layout.layer_sizes[layer] - 1)
        constant = NEGATION_CONSTANTS.get(activation, 0.0)
        if fixed is not None:
            free = _unit_rows(layout, fixed, layer) == 0
        if fixed is not None and constant:
            # A fixed next bias cannot take a negated unit's constant back:
            # that unit's outgoing weight into it does not move.
            next_fixed = layout.layers(np, fixed)[layer + 1][-1, :] != 0
            columns = len(free[0]) - len(shift) + np.flatnonzero(next_fixed)
            free[np.ix_(signs < 0, columns)] = False
        for group in groups:
            spread = directions[group] - np.mean(directions[group], axis=0)
            largest = np.max(np.abs(spread))
            if largest <= COINCIDE_RTOL * np.max(np.abs(directions[group])):
                continue  # the reference's units coincide too (a warm start)
            size = SPLIT_SIZE * np.max(np.abs(rows[group]))
            offsets = signs[group, None] * _zero_sum_over_free(
                size * spread / largest, free[group]
            )
            rows[group] += offsets
            # A negated logistic unit feeds the next layer 1 - phi(z): its
            # outgoing offsets also add a constant there, taken back here.
            negated = signs[group] < 0
            shift += np.sum(offsets[negated, -len(shift) :], axis=0)
            moved = True
        _write_unit_rows(layout, host, layer, rows)
        layout.layers(np, host)[layer + 1][-1, :] -= constant * shift  # a view
    return xp.asarray(host, dtype=theta.dtype) if moved else theta
