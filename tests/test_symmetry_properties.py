"""Properties of the coinciding-unit split that a mutation round on
``sklaplace/_symmetry.py`` found untested (session 42): the definition of
coinciding units, their independence of unit order, sign and scale, the
distance blocks of wide layers, and the split's direction, dtype and
independence of the reference's scale."""

import warnings

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from sklaplace import _symmetry
from sklaplace._symmetry import (
    COINCIDE_RTOL,
    SPLIT_SIZE,
    _unit_rows,
    _write_unit_rows,
    coinciding_groups,
    split_coinciding_units,
)
from sklaplace._testing import mlp_logits
from tests.test_symmetry import LAYOUT, merge_units


def _as_lists(groups):
    return sorted(sorted(g.tolist()) for g in groups)


@pytest.mark.parametrize("sign_symmetric", [False, True])
@pytest.mark.parametrize("c", [1e-3, 1.0, 1e3])
def test_coinciding_means_every_parameter_within_rtol_of_the_largest(c, sign_symmetric):
    """COINCIDE_RTOL's definition: two units coincide when *each* parameter
    differs by at most RTOL times the larger unit's largest parameter -- a
    max-norm, relative test, so it holds at any overall scale ``c``.
    (Kills: cdist's metric dropped (euclidean); RTOL / scale.)"""
    rng = np.random.RandomState(0)
    d = 7
    r = rng.normal(size=d)
    r[0] = 3.0  # the unit's largest parameter, positive (sign-canonical)
    s = np.abs(r).max()
    k = 3  # a coordinate other than the largest
    delta = 0.9 * COINCIDE_RTOL * s * rng.choice([-1.0, 1.0], size=d)
    delta[0] = 0.0  # keep the largest entry, so the scale is s for both
    delta[k] = -0.9 * COINCIDE_RTOL * s
    near = r + delta  # every parameter 0.9 RTOL away: coincides
    far = r.copy()
    far[k] += 1.5 * COINCIDE_RTOL * s  # one parameter 1.5 RTOL away: does not
    other = rng.normal(size=d)  # an unrelated unit
    rows = c * np.vstack([r, near, far, other])
    groups, _ = coinciding_groups(rows, sign_symmetric)
    assert _as_lists(groups) == [[0, 1]]


@pytest.mark.parametrize("c", [1e-2, 1.0, 1e2])
def test_sign_symmetric_groups_ignore_flips_and_scale(c):
    """With sign symmetry (tanh), a unit and its negation are the same unit:
    flipping any subset of units, at any scale c > 0, leaves the groups
    unchanged, and the returned signs flip with them.  (Kills: lead < 1.)"""
    rng = np.random.RandomState(1)
    base = rng.normal(size=(6, 5))
    base[3] = base[0] + 1e-7 * rng.normal(size=5)
    base[5] = base[0] + 1e-7 * rng.normal(size=5)
    base[4] = base[2] + 1e-7 * rng.normal(size=5)
    expected = [[0, 3, 5], [2, 4]]
    groups, signs = coinciding_groups(c * base, True)
    assert _as_lists(groups) == expected
    for _ in range(5):
        flip = np.where(rng.rand(6) < 0.5, -1.0, 1.0)
        groups, flipped_signs = coinciding_groups(c * base * flip[:, None], True)
        assert _as_lists(groups) == expected
        np.testing.assert_array_equal(flipped_signs, signs * flip)


def test_groups_do_not_depend_on_the_order_of_the_units():
    """Relabelling units relabels the groups (any unit, the first included).
    (Kills: the block loop starting at unit 1.)"""
    rng = np.random.RandomState(2)
    rows = rng.normal(size=(7, 4))
    rows[4] = rows[0] + 1e-8 * rng.normal(size=4)
    rows[6] = rows[1] + 1e-8 * rng.normal(size=4)
    reference = _as_lists(coinciding_groups(rows, False)[0])
    assert reference == [[0, 4], [1, 6]]
    for _ in range(10):
        perm = rng.permutation(7)
        groups, _ = coinciding_groups(rows[perm], False)
        assert _as_lists([perm[g] for g in groups]) == reference


def test_distance_blocks_are_bounded_and_each_pair_is_computed_once(monkeypatch):
    """The block loop's purpose: about 32 MiB of distances at a time
    (<= 2**22 entries per block) and each pair once, up to the diagonal
    blocks' lower halves (<= n (n + 1) / 2 + 2**21 entries in all).
    A resource property, not a result.  (Kills: larger blocks, a block
    running to the end, blocks stepping one unit, `later` from unit 0.)"""
    n, d = 3000, 4
    budget = n * (n + 1) // 2 + 2**21
    computed = []

    def counting_cdist(a, b, *args, **kwargs):
        computed.append(len(a) * len(b))
        assert len(a) * len(b) <= 2**22, "a distance block over 32 MiB"
        assert sum(computed) <= budget, "pairs computed more than once"
        return cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(_symmetry, "cdist", counting_cdist)
    rows = np.random.RandomState(4).normal(size=(n, d))
    coinciding_groups(rows, True)
    assert sum(computed) >= n * (n + 1) // 2  # every pair was looked at


def _full_matrix_groups(rows, sign_symmetric):
    """The definition, with one full distance matrix (no blocks)."""
    signs = np.ones(len(rows))
    if sign_symmetric:
        lead = rows[np.arange(len(rows)), np.argmax(np.abs(rows), axis=1)]
        signs[lead < 0] = -1.0
    canonical = rows * signs[:, None]
    scale = np.abs(canonical).max(axis=1)
    close = cdist(canonical, canonical, "chebyshev") <= COINCIDE_RTOL * np.maximum(
        scale[:, None], scale[None, :]
    )
    _, labels = connected_components(close, directed=False)
    groups = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    return [g for g in groups if len(g) > 1 and scale[g].max() > 0]


@pytest.mark.parametrize("sign_symmetric", [False, True])
def test_block_loop_finds_the_groups_of_a_full_distance_matrix(sign_symmetric):
    """Wide layers (more than 2048 units, so several distance blocks, the last
    one partial): the groups are those of the full distance matrix, including
    groups whose units lie in different blocks and the first and last unit.
    (Kills: head/tail offsets, block/later slices, the loop's start.)"""
    rng = np.random.RandomState(3)
    n, d = 3000, 8
    rows = rng.normal(size=(n, d))
    planted = [[0, 1500, 2999], [7, 2800], [1397, 1398], [2100, 2101, 60], [2900, 2951]]
    for group in planted:
        for u in group[1:]:
            sign = -1.0 if sign_symmetric and u % 2 else 1.0
            rows[u] = sign * (rows[group[0]] + 1e-7 * rng.normal(size=d))
    groups, _ = coinciding_groups(rows, sign_symmetric)
    expected = _as_lists(_full_matrix_groups(rows, sign_symmetric))
    assert all(sorted(g) in expected for g in planted)
    assert _as_lists(groups) == expected


def _three_coinciding(seed, activation):
    """Units 1, 3 and 4 of the first hidden layer coinciding, 4 negated for
    tanh."""
    rng = np.random.RandomState(seed)
    theta = rng.normal(size=LAYOUT.n_params)
    negated = (4,) if activation == "tanh" else ()
    return merge_units(theta, 0, [1, 3, 4], rng, negated=negated)


def _negate_unit(theta, layer, unit, activation):
    """The same network with hidden ``layer``'s ``unit`` negated: for the
    logistic, phi(-z) = 1 - phi(z), the next biases take its outgoing
    weights."""
    theta = theta.copy()
    rows = _unit_rows(LAYOUT, theta, layer)
    outgoing = rows[unit, -LAYOUT.layer_sizes[layer + 2] :].copy()
    rows[unit] *= -1.0
    _write_unit_rows(LAYOUT, theta, layer, rows)
    LAYOUT.layers(np, theta)[layer + 1][-1, :] += NEGATED[activation] * outgoing
    return theta


#: phi(-z) = NEGATED - phi(z): the logistic's 1, tanh's 0 (odd), written here
#: (the package's own constants had let a wrong one pass the whole file).
NEGATED = {"logistic": 1.0, "tanh": 0.0}


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_sign_symmetric_split_commutes_with_negating_a_unit(activation):
    """For tanh/logistic a unit and its negation (with the logistic's next
    biases shifted) are one network, so negating a coinciding unit in theta
    and in the reference negates its split and changes nothing else:
    split(N theta, N ref) == N split(theta, ref).
    (Kills: sign_symmetric forced off / inverted / not passed on; for the
    logistic, the next biases' share of the split left out.)"""
    rng = np.random.RandomState(0)
    theta = merge_units(rng.normal(size=LAYOUT.n_params), 0, [1, 3, 4], rng)
    reference = LAYOUT.glorot_init(np.random.RandomState(1))
    # The negation is a symmetry of the network (mlp_logits, from scratch).
    X = rng.normal(size=(7, LAYOUT.layer_sizes[0]))
    np.testing.assert_allclose(
        mlp_logits(
            _negate_unit(theta, 0, 4, activation), X, LAYOUT.layer_sizes, activation
        ),
        mlp_logits(theta, X, LAYOUT.layer_sizes, activation),
        rtol=1e-12,
        atol=1e-12,
    )
    split = split_coinciding_units(np, LAYOUT, theta, reference, activation)
    assert not np.array_equal(
        _unit_rows(LAYOUT, split, 0)[4], _unit_rows(LAYOUT, theta, 0)[4]
    )
    negated = split_coinciding_units(
        np,
        LAYOUT,
        _negate_unit(theta, 0, 4, activation),
        _negate_unit(reference, 0, 4, activation),
        activation,
    )
    np.testing.assert_allclose(
        negated, _negate_unit(split, 0, 4, activation), rtol=0, atol=1e-12
    )


def test_a_negated_copy_is_a_different_unit_without_sign_symmetry():
    """For ELU, -u is not u: a negated copy is not split with u's group.
    (Kills: sign_symmetric inverted.)"""
    rng = np.random.RandomState(0)
    theta = merge_units(
        rng.normal(size=LAYOUT.n_params), 0, [1, 3, 4], rng, negated=(4,)
    )
    reference = LAYOUT.glorot_init(np.random.RandomState(1))
    split = split_coinciding_units(np, LAYOUT, theta, reference, "elu")
    before, after = _unit_rows(LAYOUT, theta, 0), _unit_rows(LAYOUT, split, 0)
    np.testing.assert_array_equal(after[[0, 2, 4]], before[[0, 2, 4]])
    assert not np.array_equal(after[[1, 3]], before[[1, 3]])


def test_units_coinciding_only_in_a_later_layer_are_split():
    """Every hidden layer is searched: distinct units in the first hidden
    layer do not stop the second's coinciding units from being split, by
    SPLIT_SIZE times their largest parameter with zero-sum offsets.
    (Kills: `continue` -> `break` after a layer without groups.)"""
    rng = np.random.RandomState(5)
    theta = merge_units(
        LAYOUT.glorot_init(rng) + 0.1 * rng.normal(size=LAYOUT.n_params), 1, [0, 2], rng
    )
    assert coinciding_groups(_unit_rows(LAYOUT, theta, 0), False)[0] == []
    reference = LAYOUT.glorot_init(np.random.RandomState(6))
    split = split_coinciding_units(np, LAYOUT, theta, reference, "elu")
    offsets = _unit_rows(LAYOUT, split, 1) - _unit_rows(LAYOUT, theta, 1)
    largest = np.abs(_unit_rows(LAYOUT, theta, 1)[[0, 2]]).max()
    np.testing.assert_allclose(np.abs(offsets).max(), SPLIT_SIZE * largest, rtol=1e-9)
    np.testing.assert_allclose(offsets.sum(axis=0), 0.0, atol=1e-15)
    np.testing.assert_array_equal(offsets[[1, 3]], 0.0)


def test_a_group_the_reference_cannot_split_does_not_stop_the_others():
    """Groups are split independently: a group whose reference units
    coincide too (left as it is) does not keep a later group from being
    split.  (Kills: `continue` -> `break` in the group loop.)"""
    rng = np.random.RandomState(7)
    theta = merge_units(rng.normal(size=LAYOUT.n_params), 0, [0, 2], rng)
    theta = merge_units(theta, 0, [1, 3], rng)
    reference = merge_units(
        LAYOUT.glorot_init(np.random.RandomState(8)), 0, [0, 2], rng
    )
    groups, _ = coinciding_groups(_unit_rows(LAYOUT, theta, 0), False)
    assert [g.tolist() for g in groups] == [[0, 2], [1, 3]]
    split = split_coinciding_units(np, LAYOUT, theta, reference, "elu")
    before, after = _unit_rows(LAYOUT, theta, 0), _unit_rows(LAYOUT, split, 0)
    np.testing.assert_array_equal(after[[0, 2, 4]], before[[0, 2, 4]])
    assert np.all(np.any(after[[1, 3]] != before[[1, 3]], axis=1))


@pytest.mark.parametrize("activation", ["elu", "tanh"])
@pytest.mark.parametrize("c", [1e-3, 1e3])
def test_the_split_depends_on_the_references_directions_not_its_scale(activation, c):
    """Offsets are normalised by the reference's own spread, and whether the
    reference's units coincide is a relative test: split(theta, c ref) ==
    split(theta, ref) for every c > 0.  (Kills: RTOL / max in the
    warm-start test.)"""
    theta = _three_coinciding(9, activation)
    reference = LAYOUT.glorot_init(np.random.RandomState(10))
    split = split_coinciding_units(np, LAYOUT, theta, reference, activation)
    assert split is not theta
    scaled = split_coinciding_units(np, LAYOUT, theta, c * reference, activation)
    np.testing.assert_allclose(scaled, split, rtol=0, atol=1e-12)


def test_a_reference_with_zero_units_splits_nothing_and_stays_finite():
    """A reference that cannot tell the group's units apart -- here because
    they are zero in it (an all-zero initialisation) -- moves nothing and
    never yields NaN weights.  (Kills: `<=` -> `<` in the warm-start test,
    which divides 0 by 0.)"""
    rng = np.random.RandomState(11)
    theta = merge_units(rng.normal(size=LAYOUT.n_params), 0, [1, 3], rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        split = split_coinciding_units(
            np, LAYOUT, theta, np.zeros(LAYOUT.n_params), "elu"
        )
    assert np.all(np.isfinite(split))
    assert split is theta


@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_each_unit_moves_along_its_reference_unit_less_the_groups_mean(activation):
    """The documented direction: (in sign-canonical coordinates) unit i moves
    by kappa * (ref_i - mean_group ref), with one kappa > 0 for the group,
    kappa * max|ref_i - mean| = SPLIT_SIZE * the group's largest parameter.
    (Kills: `rows[group] -= offsets`.)"""
    theta = _three_coinciding(12, activation)
    reference = LAYOUT.glorot_init(np.random.RandomState(13))
    split = split_coinciding_units(np, LAYOUT, theta, reference, activation)
    group = [1, 3, 4]
    signs = np.array([1.0, 1.0, -1.0 if activation == "tanh" else 1.0])[:, None]
    rows = _unit_rows(LAYOUT, theta, 0)[group]
    moved = (_unit_rows(LAYOUT, split, 0)[group] - rows) * signs
    directions = _unit_rows(LAYOUT, reference, 0)[group] * signs
    spread = directions - directions.mean(axis=0)
    kappa = SPLIT_SIZE * np.abs(rows).max() / np.abs(spread).max()
    np.testing.assert_allclose(moved, kappa * spread, rtol=1e-7, atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_a_float32_theta_is_split_in_float64_and_stays_float32(seed):
    """The split keeps theta's dtype, and a float32 theta is split exactly as
    its float64 value, rounded once to float32 (the host arithmetic is float64
    whatever the fit's dtype).  (Kills: the result's dtype dropped; the
    host copy's float64 dtype dropped, where a rounding shows.)"""
    rng = np.random.RandomState(seed)
    theta = merge_units(rng.normal(size=LAYOUT.n_params), 0, [1, 3, 4], rng).astype(
        np.float32
    )
    reference = LAYOUT.glorot_init(np.random.RandomState(100 + seed))
    split = split_coinciding_units(np, LAYOUT, theta, reference, "elu")
    assert split.dtype == np.float32
    in64 = split_coinciding_units(
        np, LAYOUT, theta.astype(np.float64), reference, "elu"
    )
    np.testing.assert_array_equal(split, in64.astype(np.float32))


@pytest.mark.parametrize("sign_symmetric", [False, True])
def test_units_exactly_rtol_apart_coincide(sign_symmetric):
    """COINCIDE_RTOL's "at most" of the larger unit's largest parameter is
    inclusive: rows 100 and 99 (1 apart, 1e-2 * 100 = 1.0 exactly in
    float64) coincide; -40 and -38.5 (1.5 apart, 0.4 allowed) do not.
    (Kills: `<=` -> `<` in the distance test.)"""
    assert COINCIDE_RTOL * 100.0 == 1.0
    rows = np.array([[100.0, 3.0], [99.0, 3.0], [-40.0, 7.0], [-38.5, 7.0]])
    groups, _ = coinciding_groups(rows, sign_symmetric)
    assert _as_lists(groups) == [[0, 1]]


def test_distance_blocks_are_as_large_as_the_budget_allows(monkeypatch):
    """Each block holds as many units as fit in 2**22 distances, so a wide
    layer takes a handful of cdist calls, not one per unit: 3000 units in
    blocks of 2**22 // 3000 = 1398 rows, three calls.  (Kills: a block
    size of ``2 * 22 // n_units``, one unit per call.)"""
    n, d = 3000, 4
    calls = []

    def counting_cdist(a, b, *args, **kwargs):
        calls.append(len(a))
        return cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(_symmetry, "cdist", counting_cdist)
    coinciding_groups(np.random.RandomState(4).normal(size=(n, d)), False)
    assert calls == [1398, 1398, 204]
