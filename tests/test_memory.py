"""Mutation-testing additions for ``sklaplace._memory``: the boundaries of the
"auto" cost rules and of the byte checks, each pinned where a plausible
off-by-one or wrong factor would move it."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

import sklaplace._auto as auto_module
import sklaplace._fitting as fitting_module
import sklaplace._memory as memory_module
from sklaplace import LaplaceMLPClassifier
from sklaplace._curvature import exact_hessian, ggn_hessian, residual_hessian
from sklaplace._evidence import EVIDENCE_STARTS
from sklaplace._network import ParamLayout
from sklaplace.exceptions import MemoryLimitError
from tests.conftest import forbid_the_map_solver, make_problem

RNG = np.random.RandomState(0)


def _refusal_before_the_map(monkeypatch, X, hidden, **params):
    """The message of the ``MemoryLimitError`` a fit raises before its MAP."""
    forbid_the_map_solver(monkeypatch)
    y = np.arange(X.shape[0]) % 2
    with pytest.raises(MemoryLimitError) as info:
        LaplaceMLPClassifier(hidden, **params).fit(X, y)
    return str(info.value)


def test_building_the_full_posterior_admits_exactly_its_work():
    """``full_is_cheap``: building costs ``n_samples * n_outputs * n_params**2``
    multiply-adds and is cheap while that is AT MOST ``AUTO_FULL_WORK``: a
    problem exactly at the bound gets the full posterior, one row more does
    not (mutant: ``<`` for ``<=`` in the building rule survived, the existing
    boundary fell between two row counts)."""
    work = memory_module.AUTO_FULL_WORK
    n_params, n_outputs = 1000, 1
    # The factorising and byte rules hold with room to spare here.
    assert n_params**3 < memory_module.AUTO_FACTOR_WORK
    rows, rest = divmod(work, n_outputs * n_params**2)
    assert rest == 0, "choose n_params so that the bound is reached exactly"
    rows = int(rows)
    assert rows * n_outputs * n_params**2 == work
    assert memory_module.full_is_cheap(n_params, rows, n_outputs)
    assert not memory_module.full_is_cheap(n_params, rows + 1, n_outputs)


def test_the_full_posteriors_bytes_admit_exactly_the_budget(monkeypatch):
    """``full_is_cheap``: the dense matrices may take AT MOST
    ``AUTO_FULL_BUDGET`` bytes: four 100 x 100 float64 matrices (a fixed
    scale) fit a budget of exactly their bytes and not one byte less; six
    under ``"cv"`` need 1.5 times that, and a call without a scale counts as
    ``"cv"`` does (the documented default: the larger count)."""
    n = 100
    four = memory_module.dense_matrices_at_peak(None, "full", 1.0) * 8 * n**2
    six = memory_module.dense_matrices_at_peak(None, "full", "cv") * 8 * n**2
    assert six == 1.5 * four  # the counts the docs give (4 and 6)
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", four)
    assert memory_module.full_is_cheap(n, 1, 1, 1.0)
    assert not memory_module.full_is_cheap(n, 1, 1, "cv")
    assert not memory_module.full_is_cheap(n, 1, 1)  # default: "cv"
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", four - 1)
    assert not memory_module.full_is_cheap(n, 1, 1, 1.0)
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", six)
    assert memory_module.full_is_cheap(n, 1, 1, "cv")


def test_the_parameter_vector_admits_exactly_eight_bytes_per_parameter(
    monkeypatch,
):
    """The float64 parameter vector takes ``8 * n_params`` bytes: with
    ``DENSE_MEMORY_LIMIT`` exactly that the fit passes the guard (and reaches
    the solver), one byte less it is refused (mutant: ``9 * n_params``
    survived, the existing test's limit was far below both), with the one
    remedy that helps (mutants of the advice survived)."""
    forbid_the_map_solver(monkeypatch)
    X, y = RNG.normal(size=(10, 3)), np.arange(10) % 2
    n_params = (3 + 1) * 40 + 40 + 1
    clf = LaplaceMLPClassifier(
        (40,), solver="lbfgs", hessian_structure="diag", alpha=1.0
    )
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n_params - 1)
    match = f"One vector of the {n_params} "
    with pytest.raises(MemoryLimitError, match=match) as info:
        clf.fit(X, y)
    # Its remedy is a smaller network (no posterior structure helps).
    assert str(info.value).endswith(
        ". Use a smaller network (fewer hidden units or input features)."
    )
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n_params)
    with pytest.raises(AssertionError, match="the MAP solver ran"):
        clf.fit(X, y)


def test_a_last_layer_kronecker_posterior_checks_the_last_layers_factors(
    monkeypatch,
):
    """A last-layer Kronecker posterior needs only the last layer's factors:
    hidden (16,) on 3 features has a 17 x 17 last-layer input factor (2,312
    bytes): under a one-array limit of 2,100 bytes the last-layer fit is
    refused, naming that factor of layer 1, before the MAP (mutant: the
    first layer to check past the last one, so none checked, survived)."""
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 2100)
    with pytest.raises(MemoryLimitError, match="17 x 17 .* factor of layer 1"):
        memory_module.check_kron_memory((3, 16, 1), last_layer_only=True)
    message = _refusal_before_the_map(
        monkeypatch,
        RNG.normal(size=(10, 3)),
        (16,),
        subset_of_weights="last_layer",
        hessian_structure="kron",
        alpha=1.0,
        prior_precision_scale=1.0,
    )
    assert "17 x 17 float64 Kronecker factor" in message


def test_the_kronecker_factor_message_names_its_use_and_every_remedy():
    """A Kronecker factor over the limit is refused with a message naming
    what needs it (by default ``hessian_structure='kron'``) and the three
    remedies in full: a diagonal posterior, a last-layer posterior, fewer
    hidden units (mutants of the default ``use`` and of the advice text
    survived)."""
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_kron_memory((30, 20000, 1))
    message = str(info.value)
    assert "(30 -> 20000 units, for hessian_structure='kron')" in message
    assert (
        "Use hessian_structure='diag' (no matrix of a layer's width), "
        "subset_of_weights='last_layer', or fewer hidden units." in message
    )
    # A last-layer posterior is not advised to be one.
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_kron_memory((30, 20000, 1), last_layer_only=True)
    assert str(info.value).endswith(
        "Use hessian_structure='diag' (no matrix of a layer's width), "
        "or fewer hidden units."
    )


def test_the_whole_fit_message_gives_the_bytes_of_all_the_matrices(monkeypatch):
    """Over ``FIT_MEMORY_LIMIT`` (lowered here so that a 100-parameter Newton
    fit is over it) the message gives the count of matrices and their bytes
    together, ``count * 8 * n**2`` in GiB (mutant: ``count / one`` survived,
    reporting a size 10^13 times too small), and the whole remedy."""
    n = 100
    one = 8 * n * n
    count = memory_module.dense_matrices_at_peak("newton", "full")
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", (count - 1) * one)
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_fit_memory(n, "newton", "full")
    message = str(info.value)
    assert f"about {count} at once, {count * one / 2**30:.3g} GiB" in message
    assert (
        "Use hessian_structure='kron' or 'diag' and solver='lbfgs' (no "
        "n_params x n_params matrix)" in message
    )


def test_the_message_blames_only_what_holds_dense_matrices():
    """A first-order solver holds no ``n_params x n_params`` matrix: with
    L-BFGS and the full posterior the message names the posterior alone,
    not the solver (mutant: a solver missing from the table counted as
    dense, naming ``solver='lbfgs'`` too, survived: the existing check
    matched a suffix of the longer message)."""
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_fit_memory(20000, "lbfgs", "full")
    message = str(info.value)
    assert "matrices that hessian_structure='full' need for this network" in message
    assert "solver=" not in message.split(". ")[0]


def test_factorising_the_full_posterior_admits_exactly_its_work(monkeypatch):
    """``full_is_cheap``: factorising costs ``n_params**3`` and is cheap while
    that is AT MOST ``AUTO_FACTOR_WORK`` (set here to a cube, as today's
    4e9 is none, so that the bound can be met exactly): 100 parameters are
    within a bound of 100**3, 101 are not (mutant: ``<`` for ``<=`` survived
    the listed tests; the work rules here are far from binding otherwise)."""
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 100**3)
    assert memory_module.full_is_cheap(100, 1, 1)
    assert not memory_module.full_is_cheap(101, 1, 1)


@pytest.mark.parametrize("scale", [1.0, "evidence", "cv", "loo", "validation"])
def test_the_evidence_runs_and_the_cv_folds_add_their_held_matrices(scale):
    """``dense_matrices_at_peak``: under ``alpha="evidence"`` one posterior is
    held per start of the updates and two more (the earlier runs' kept ones,
    the last run's best and its last, and the run from ``HELD_OUT_START``,
    made where held-out rows choose the scale or where every run collapsed,
    so whatever the scale: it had been counted for a held-out scale only);
    ``"cv"`` also holds its two cross-validation posteriors, and so does
    ``"loo"``, which confirms its basins by folds. Pinned from the module's
    tables, so that a scale dropped from the cross-validation's count is
    caught (``"loo"`` left out had admitted a fit two posteriors over the
    limit)."""
    posterior = memory_module.POSTERIOR_DENSE_MATRICES["full"]
    held = memory_module.POSTERIOR_HELD_DENSE_MATRICES["full"]
    starts = len(memory_module.EVIDENCE_STARTS)
    cv = memory_module.CV_HELD_POSTERIORS * held if scale in ("cv", "loo") else 0
    assert memory_module.CV_HELD_POSTERIORS == 2
    count = memory_module.dense_matrices_at_peak
    assert count("lbfgs", "full", scale, "evidence") == (
        posterior + (starts + 2) * held + cv
    )
    assert count("lbfgs", "full", scale, "evidence_per_layer") == (
        posterior + (starts + 2) * held + cv
    )
    # The validation walk holds the best fit's posterior only, whatever the scale.
    assert count("lbfgs", "full", scale, "validation") == posterior + held + cv
    assert count("lbfgs", "full", scale, 1.0) == posterior + cv


@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_a_network_without_hidden_layers_counts_its_full_posterior(monkeypatch, subset):
    """Without hidden layers the last layer is the whole network
    (``subset_of_weights`` becomes ``"all"``), so a full posterior over
    20,001 parameters (one 3 GiB matrix) is refused before the MAP, whatever
    subset was asked for (mutants: ``subset_of_weights`` set to another
    value there, which skipped the posterior's dense matrices, survived)."""
    message = _refusal_before_the_map(
        monkeypatch,
        RNG.normal(size=(8, 20000)),
        (),
        hessian_structure="full",
        subset_of_weights=subset,
        solver="newton-cg",
    )
    assert "20001 x 20001" in message


def test_a_last_layer_posterior_tunes_alpha_on_all_weights_diagonal_beyond(
    monkeypatch,
):
    """The evidence tunes a last-layer posterior's alpha over every weight:
    on their Kronecker posterior where its factors are cheap, on their
    diagonal beyond. Behind 20,000 hidden units (a 3 GiB factor) a
    last-layer posterior had been refused for its tuning's factors, which
    the posterior itself does not need; its own factors are still checked."""
    for structure in ("full", "kron", "diag"):
        config = SimpleNamespace(
            hessian_structure=structure,
            subset_of_weights="last_layer",
            prior_precision_scale="cv",
            link_approx="probit",
        )
        assert fitting_module.tuning_structure(config, (3, 4, 1)) == "kron"
        assert fitting_module.tuning_structure(config, (30, 20000, 1)) == "diag"
        # Every layer's factors weigh, not the last layer's alone: behind
        # 20,000 inputs (a 3 GiB first factor; the last layer's are 9 x 9
        # and 1 x 1), and over the work bound (every factor: 1,673; the last
        # layer's: 217).
        assert fitting_module.tuning_structure(config, (20000, 8, 1)) == "diag"
        with monkeypatch.context() as patch:
            patch.setattr(memory_module, "AUTO_FACTOR_WORK", 1000)
            assert fitting_module.tuning_structure(config, (10, 5, 1)) == "diag"
    # Through fit (tests/test_reliability_memory.py: the diagonal passes the
    # guard): a last-layer Kronecker posterior's own factors are still checked.
    forbid_the_map_solver(monkeypatch)
    X, y = RNG.normal(size=(20, 30)), np.arange(20) % 2
    params = dict(subset_of_weights="last_layer", alpha="evidence")
    with pytest.raises(MemoryLimitError, match="20001 x 20001 float64 Kronecker"):
        LaplaceMLPClassifier((20000,), hessian_structure="kron", **params).fit(X, y)


def test_a_last_layer_posterior_over_the_limit_names_the_last_layer(monkeypatch):
    """A dense last-layer posterior over the one-array limit is refused with a
    message naming the last layer, how it was asked for and what to change
    (mutant of that subject text survived: the existing check matched "the
    last layer" only)."""
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 1024)
    message = _refusal_before_the_map(
        monkeypatch,
        RNG.normal(size=(10, 3)),
        (16,),
        solver="lbfgs",
        subset_of_weights="last_layer",
        hessian_structure="full",
        alpha=1.0,
        prior_precision_scale=1.0,
    )
    assert (
        "need for the last layer (subset_of_weights='last_layer'; narrow it) "
        "(17 parameters)" in message
    )


def test_a_last_layer_kronecker_posterior_leaves_wide_earlier_layers_unchecked():
    """Only the last layer's factors are built for a last-layer posterior: a
    first layer with a 20,001 x 20,001 input factor (3.2 GB, over the dense
    limit) is refused for ``"kron"`` over all weights and not for the last
    layer (mutant: every layer checked, which refused a valid last-layer fit)."""
    layer_sizes = (20000, 2, 1)
    memory_module.check_kron_memory(layer_sizes, last_layer_only=True)
    with pytest.raises(MemoryLimitError, match="20001 x 20001"):
        memory_module.check_kron_memory(layer_sizes)


def test_a_diagonal_posterior_tunes_alpha_on_kronecker_factors_that_fit():
    """MacKay's updates count the posterior variances of every weight: a
    diagonal's ``1 / P_ii`` understate them (alpha 3.2 for the Kronecker
    posterior's 0.08 on a curved boundary), so a diagonal posterior tunes
    alpha on the Kronecker posterior where its factors fit the limits, and
    on itself beyond (the structure without a matrix of a layer's width);
    a last-layer posterior on the Kronecker one of all weights where cheap
    (below); full and Kronecker posteriors on themselves."""

    def tuned_on(structure, subset="all", layer_sizes=(3, 4, 1)):
        config = SimpleNamespace(
            hessian_structure=structure,
            subset_of_weights=subset,
            prior_precision_scale="cv",
            link_approx="probit",
        )
        return fitting_module.tuning_structure(config, layer_sizes)

    assert tuned_on("diag") == "kron"
    assert tuned_on("diag", layer_sizes=(30, 20000, 1)) == "diag"  # a 3 GiB factor
    assert tuned_on("diag", "last_layer") == tuned_on("full", "last_layer") == "kron"
    assert tuned_on("full") == "full" and tuned_on("kron") == "kron"
    # A pruned refit's diagonal tunes on itself (factors cannot condition;
    # with no rows given, no sample-space posterior).
    config = SimpleNamespace(
        hessian_structure="diag",
        subset_of_weights="all",
        prior_precision_scale="cv",
        link_approx="probit",
    )
    assert fitting_module.tuning_structure(config, (3, 4, 1), pruned=True) == "diag"
    # Through fit: the diagonal posterior's alpha is the Kronecker one's,
    # refit for refit (the scale by the evidence: no held-out rows enter).
    X, y = RNG.normal(size=(60, 3)), np.arange(60) % 2
    params = dict(alpha="evidence", prior_precision_scale="evidence", random_state=0)
    diag = LaplaceMLPClassifier((4,), hessian_structure="diag", **params).fit(X, y)
    kron = LaplaceMLPClassifier((4,), hessian_structure="kron", **params).fit(X, y)
    assert diag.hessian_structure_ == "diag"
    np.testing.assert_array_equal(diag.alpha_history_, kron.alpha_history_)
    assert diag.alpha_ == kron.alpha_


def test_auto_takes_the_diagonal_where_the_kronecker_factors_exceed_the_limits():
    """``"auto"``: full where cheap, Kronecker beyond where its factors fit
    the limits, diagonal beyond that (a layer of 20,000 inputs or units
    needs a 3 GiB factor: the default had refused such data, where the
    diagonal fits). An explicit ``"kron"`` is still refused by name."""
    assert auto_module.resolve_structure("auto", True, False) == "full"
    assert auto_module.resolve_structure("auto", False, True) == "kron"
    assert auto_module.resolve_structure("auto", False, False) == "diag"
    assert auto_module.resolve_structure("kron", False, False) == "kron"
    assert memory_module.kron_factors_fit((30, 100, 1))
    assert not memory_module.kron_factors_fit((30, 20000, 1))
    # The last layer's factors only: 9 x 9 and 1 x 1 after 20,000 inputs.
    assert memory_module.kron_factors_fit((20000, 8, 1), last_layer_only=True)
    assert not memory_module.kron_factors_fit((20000, 8, 1))
    X, y = RNG.normal(size=(20, 30)), np.arange(20) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=5
        clf = LaplaceMLPClassifier((20000,), max_iter=5, random_state=0).fit(X, y)
    assert clf.hessian_structure_ == "diag"
    assert np.all(np.isfinite(clf.predict_proba(X)))
    with pytest.raises(MemoryLimitError, match="20000 x 20000 float64 Kronecker"):
        LaplaceMLPClassifier((20000,), hessian_structure="kron").fit(X, y)


def test_the_kronecker_factors_are_cheap_within_the_factorising_bound(monkeypatch):
    """``kron_is_cheap``: the factors fit the memory limits and diagonalising
    them, ``sum_l (fan_in_l + 1)^3 + fan_out_l^3``, takes at most
    ``AUTO_FACTOR_WORK`` (the full posterior's bound). Beyond, ``"auto"``
    takes the diagonal and a diagonal posterior tunes alpha on itself: on 40
    rows of 3,000 features, hidden (8,), the default had diagonalised a
    3,001 x 3,001 factor (6 s) at every refit and fold, 150-200 s a fit."""
    sizes = (10, 5, 1)  # 11^3 + 5^3 + 6^3 + 1^3 = 1,673; the last layer 217
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 1673)
    assert memory_module.kron_is_cheap(sizes)
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 1672)
    assert not memory_module.kron_is_cheap(sizes)
    assert memory_module.kron_is_cheap(sizes, last_layer_only=True)
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 216)
    assert not memory_module.kron_is_cheap(sizes, last_layer_only=True)
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 1e30)
    assert not memory_module.kron_is_cheap((30, 20000, 1))  # memory still binds
    # Through fit, 12 features, hidden (4,): 13^3 + 4^3 + 5^3 + 1^3 = 2,387
    # (the full posterior's 57^3 is far over both bounds below).
    X = np.random.RandomState(0).normal(size=(40, 12))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    params = dict(alpha="evidence", prior_precision_scale="evidence", random_state=0)
    # Off: the sample-space posterior (40 rows, 57 parameters) would tune all.
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 0)
    fitted = {}
    for bound in (2387, 2386):
        monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", bound)
        fitted[bound] = LaplaceMLPClassifier((4,), **params).fit(X, y)
        fitted[bound, "diag"] = LaplaceMLPClassifier(
            (4,), hessian_structure="diag", **params
        ).fit(X, y)
    assert fitted[2387].hessian_structure_ == "kron"
    assert fitted[2386].hessian_structure_ == "diag"
    # The diagonal's tuning: on the Kronecker factors within the bound, on
    # the diagonal beyond (the reference tunes on the diagonal by a patch).
    monkeypatch.setattr(fitting_module, "tuning_structure", lambda *a: "diag")
    on_itself = LaplaceMLPClassifier((4,), hessian_structure="diag", **params)
    on_itself.fit(X, y)
    for fit in (fitted[2386], fitted[2386, "diag"]):
        np.testing.assert_array_equal(fit.alpha_history_, on_itself.alpha_history_)
    tuned_on_kron = fitted[2387, "diag"].alpha_history_
    assert not np.array_equal(tuned_on_kron, on_itself.alpha_history_)
    np.testing.assert_array_equal(tuned_on_kron, fitted[2387].alpha_history_)


def test_a_last_layer_posterior_counts_the_held_out_scales_matrices(monkeypatch):
    """A full last-layer posterior (hidden (16,), one logit: 17 parameters,
    2,312 bytes a matrix) holds 4 matrices at once, and 2 more while
    ``prior_precision_scale="cv"`` refits its folds: under a whole-fit limit
    of 5 matrices the held-out scale is refused before the MAP, a fixed one
    is not (a mutant dropping the scale from the check survived)."""
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", 5 * 8 * 17 * 17)
    X = RNG.normal(size=(20, 3))
    params = dict(subset_of_weights="last_layer", hessian_structure="full")
    message = _refusal_before_the_map(
        monkeypatch, X, (16,), alpha=1.0, prior_precision_scale="cv", **params
    )
    assert "about 6 at once" in message and "the last layer" in message
    with pytest.raises(AssertionError, match="the MAP solver ran"):
        LaplaceMLPClassifier((16,), alpha=1.0, prior_precision_scale=1.0, **params).fit(
            X, np.arange(20) % 2
        )


def test_auto_weighs_only_the_last_layers_posterior_for_a_last_layer_posterior():
    """``"auto"`` for a last-layer posterior asks whether *its* matrices are cheap.

    20,000 inputs: the first layer's 20,000 x 20,000 factor exceeds the
    limits, so a posterior of all weights resolves to ``"diag"``. Behind 8
    hidden units and one logit the last layer has 9 parameters: its full
    posterior is cheap (it had resolved to ``"kron"``, weighed by all
    160,017 parameters). Behind 500 units and 10 classes it has 5,010,
    whose factorisation (1.3e11) is not, while its factors (501 x 501 and 10
    x 10) are: ``"kron"`` (the last-layer one had fallen to the diagonal
    when all layers' factors were weighed). A fixed alpha: no tuning on
    every layer.
    """

    def structure(sizes, subset):
        layout = ParamLayout(sizes)
        clf = LaplaceMLPClassifier(sizes[1:-1], alpha=1.0, subset_of_weights=subset)
        params = auto_module.resolved_params(clf, layout, 20)
        assert params.subset_of_weights == subset
        return params.hessian_structure

    narrow, wide = (20000, 8, 1), (20000, 500, 10)
    assert memory_module.kron_factors_fit(wide, last_layer_only=True)
    assert not memory_module.kron_factors_fit(wide)
    assert structure(narrow, "last_layer") == "full"
    assert structure(wide, "last_layer") == "kron"
    assert structure(narrow, "all") == structure(wide, "all") == "diag"


# hidden (4,) on 3 features, one logit: factors 4 x 4 and 4 x 4 (layer 0),
# 5 x 5 and 1 x 1 (layer 1), in float64.
KRON_SIZES = (3, 4, 1)
KRON_TOTAL = 8 * (4**2 + 4**2 + 5**2 + 1**2)
KRON_LAST = 8 * (5**2 + 1**2)  # the last layer's alone


def _held(scale, alpha):
    """Posteriors held, from the module's constants (not its functions)."""
    held = 0
    if alpha == "validation":
        held += 1
    elif isinstance(alpha, str):
        held += len(EVIDENCE_STARTS) + 2
    if scale in ("cv", "loo"):  # "loo" confirms its basins by folds
        held += memory_module.CV_HELD_POSTERIORS
    return held


def _copies(scale, alpha):
    held = _held(scale, alpha)
    return memory_module.KRON_FACTOR_COPIES + memory_module.KRON_HELD_COPIES * held


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("scale", [1.0, "cv", "loo"])
@pytest.mark.parametrize("alpha", [1.0, "validation", "evidence"])
def test_the_kronecker_rules_count_the_posteriors_alpha_and_the_scale_hold(
    monkeypatch, alpha, scale, last
):
    """``kron_factors_fit`` and ``kron_is_cheap`` take the Kronecker factors
    (every layer's, or the last layer's) while ``KRON_FACTOR_COPIES`` of them
    plus ``KRON_HELD_COPIES`` per held posterior (the evidence's runs, the
    validation walk's best fit, the cross-validation's two) fit
    ``FIT_MEMORY_LIMIT``: exactly at that many bytes they are taken, one
    byte less they are not (mutants: the scale or alpha dropped or replaced
    in ``kron_factors_fit``'s check or in ``kron_is_cheap``'s call of it, so
    the held copies went uncounted, survived)."""
    need = _copies(scale, alpha) * (KRON_LAST if last else KRON_TOTAL)
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need)
    assert memory_module.kron_factors_fit(KRON_SIZES, last, scale, alpha)
    assert memory_module.kron_is_cheap(KRON_SIZES, last, scale, alpha)
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need - 1)
    assert not memory_module.kron_factors_fit(KRON_SIZES, last, scale, alpha)
    assert not memory_module.kron_is_cheap(KRON_SIZES, last, scale, alpha)


@pytest.mark.parametrize("subset", ["all", "last_layer"])
@pytest.mark.parametrize(
    "scale, link, counted",
    [(1.0, "probit", 1.0), ("cv", "probit", "cv"), ("cv", "map", 1.0)],
)
def test_the_tuning_structure_counts_the_evidences_held_kronecker_copies(
    monkeypatch, subset, scale, link, counted
):
    """MacKay's updates (``tuning_structure``) run on the Kronecker
    posterior of every weight only where its factors fit with the copies
    the evidence's refits hold (one per start and two more, and the
    cross-validation's two where held-out refits choose the scale: not with
    the plug-in predictive); one byte under that, on the diagonal (mutants:
    the tuning's alpha ``"evidence"`` replaced by ``None`` or dropped, which
    counted no held posterior, survived)."""
    config = SimpleNamespace(
        hessian_structure="diag",
        subset_of_weights=subset,
        prior_precision_scale=scale,
        link_approx=link,
    )
    need = _copies(counted, "evidence") * KRON_TOTAL
    assert need > _copies(counted, 1.0) * KRON_TOTAL  # the held copies weigh
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need)
    assert fitting_module.tuning_structure(config, KRON_SIZES) == "kron"
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need - 1)
    assert fitting_module.tuning_structure(config, KRON_SIZES) == "diag"


def _auto_structure(layout, n_samples=20, **params):
    clf = LaplaceMLPClassifier(layout.layer_sizes[1:-1], **params)
    return auto_module.resolved_params(clf, layout, n_samples).hessian_structure


@pytest.mark.parametrize(
    "alpha, scale, copies",
    [("evidence", 1.0, 18), ("validation", 1.0, 10), (1.0, "cv", 12)],
)
def test_auto_counts_the_held_kronecker_copies_of_the_fits_alpha_and_scale(
    monkeypatch, alpha, scale, copies
):
    """``"auto"`` takes the Kronecker factors only where the copies that the
    fit's alpha and prior scale hold fit ``FIT_MEMORY_LIMIT``: 8 copies while
    a posterior is built, 2 per posterior held (5 under ``"evidence"``, 1
    under ``"validation"``, 2 while ``"cv"`` refits its folds). With the
    limit one byte under the copies the fit holds (and the full posterior
    not cheap), it resolves to ``"diag"``, and a fixed alpha and scale (8
    copies) to ``"kron"``. Mutants passing ``kron_is_cheap`` no scale, no
    alpha, or the alpha as the scale counted 8 copies, resolved to
    ``"kron"`` and raised in ``check_kron_memory``."""
    assert copies == (
        memory_module.KRON_FACTOR_COPIES
        + memory_module.KRON_HELD_COPIES * memory_module.held_posteriors(scale, alpha)
    )
    monkeypatch.setattr(memory_module, "AUTO_FULL_WORK", 0)  # full is not cheap
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", copies * KRON_TOTAL - 1)
    layout = ParamLayout(KRON_SIZES)
    fixed = _auto_structure(layout, alpha=1.0, prior_precision_scale=1.0)
    assert fixed == "kron"
    held = _auto_structure(layout, alpha=alpha, prior_precision_scale=scale)
    assert held == "diag"


def test_residual_term_alone_refuses_a_square_matrix_over_the_memory_limit(
    monkeypatch,
):
    """``residual_hessian`` without ``out`` allocates the ``n_params x
    n_params`` matrix itself, so it checks it against ``DENSE_MEMORY_LIMIT``
    first: refused one byte below ``8 n_params**2``, built at exactly that.
    (Mutant: the ``check_square`` dropped -- the matrix was allocated whatever
    the limit.) Given ``out``, the caller owns the matrix: no check."""
    obj, theta = make_problem("tanh", 3, (4,))
    n = obj.layout.n_params
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n * n - 1)
    with pytest.raises(MemoryLimitError, match=f"{n} x {n} exact Hessian"):
        residual_hessian(obj, theta)
    out = np.zeros((n, n))
    assert residual_hessian(obj, theta, out=out).shape == (n, n)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n * n)
    assert residual_hessian(obj, theta).shape == (n, n)


@pytest.mark.parametrize("n_classes", [2, 3])  # rank-k update; Kronecker blocks
@pytest.mark.parametrize("build", [ggn_hessian, exact_hessian])
def test_a_square_curvature_is_refused_one_byte_over_the_memory_limit(
    monkeypatch, n_classes, build
):
    """The ``n_params x n_params`` float64 matrix takes ``8 n_params**2``
    bytes: with ``DENSE_MEMORY_LIMIT`` one byte less the GGN (and the exact
    Hessian built on it) is refused before it is allocated, at exactly that
    it is built. (Mutant: ``check_square`` counting ``8 n_params`` bytes --
    a matrix n_params times over the limit was let through.)"""
    obj, theta = make_problem("tanh", n_classes, (4,))
    n = obj.layout.n_params
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n * n - 1)
    with pytest.raises(MemoryLimitError, match=f"The {n} x {n} generalised"):
        build(obj, theta)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * n * n)
    assert build(obj, theta).shape == (n, n)


@pytest.mark.parametrize(
    "sizes, solver, alpha, held",
    [
        ((3, 16, 1), "lbfgs", "validation", 1),
        ((1, 100, 10), "newton", "evidence", len(EVIDENCE_STARTS) + 2),
    ],
    ids=["validation", "evidence-newton"],
)
def test_a_last_layer_posterior_counts_its_own_and_its_held_matrices(
    monkeypatch, sizes, solver, alpha, held
):
    """A full last-layer posterior holds dense matrices of the last layer's
    parameters only, its own and one per posterior ``alpha``'s tuning holds:
    the validation walk's best fit (hidden (16,), one logit: 4 + 1 of
    17 x 17), or the evidence runs' (hidden (100,) on one input, ten
    classes: 4 + 4 of 1,010 x 1,010 of 1,210 parameters). A dense Newton
    solver holds its 5 of ALL the parameters, checked as such, before the
    posterior exists. At exactly the posterior's bytes ``resolved_params``
    accepts the fit, one byte less it refuses it naming the last layer and
    the posterior's count (mutants: the last-layer check counting no alpha,
    4 matrices; or charged the solver's 5 as well, which refused the fit at
    the limit and blamed ``solver='newton'``)."""
    layout = ParamLayout(sizes)
    n_last = (sizes[1] + 1) * sizes[2]
    count = (
        memory_module.POSTERIOR_DENSE_MATRICES["full"]
        + memory_module.POSTERIOR_HELD_DENSE_MATRICES["full"] * held
    )
    limit = count * 8 * n_last**2
    solver_matrices = memory_module.SOLVER_DENSE_MATRICES.get(solver, 0)
    assert solver_matrices * 8 * layout.n_params**2 <= limit
    clf = LaplaceMLPClassifier(
        sizes[1:-1],
        solver=solver,
        subset_of_weights="last_layer",
        hessian_structure="full",
        alpha=alpha,
        prior_precision_scale=1.0,
    )
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", limit)
    params = auto_module.resolved_params(clf, layout, 20)
    assert (params.solver, params.subset_of_weights) == (solver, "last_layer")
    assert params.hessian_structure == "full"
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", limit - 1)
    with pytest.raises(MemoryLimitError, match=f"about {count} at once") as info:
        auto_module.resolved_params(clf, layout, 20)
    message = str(info.value)
    assert "the last layer (subset_of_weights='last_layer'" in message
    assert "that hessian_structure='full' need" in message


def test_the_plug_in_predictive_counts_no_held_out_posteriors_for_auto(monkeypatch):
    """``link_approx="map"`` ignores the prior scale, so no held-out refits
    hold posteriors: ``"auto"``'s byte rule for the full posterior counts
    its 4 dense matrices, not ``"cv"``'s 6. With ``AUTO_FULL_BUDGET`` at
    exactly 4 matrices of the 21 parameters, a ``"cv"`` fit resolves to the
    full posterior under the plug-in predictive and to the Kronecker one
    under probit (mutant: the raw ``"cv"`` passed to ``full_is_cheap``,
    which took the Kronecker posterior for both)."""
    layout = ParamLayout((3, 4, 1))
    n = layout.n_params
    four = memory_module.POSTERIOR_DENSE_MATRICES["full"] * 8 * n * n
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", four)

    def structure(link):
        clf = LaplaceMLPClassifier(
            (4,),
            hessian_structure="auto",
            link_approx=link,
            prior_precision_scale="cv",
            alpha=1.0,
        )
        return auto_module.resolved_params(clf, layout, 20).hessian_structure

    assert structure("map") == "full"
    assert structure("probit") == "kron"


def test_a_kronecker_posterior_tunes_alpha_on_itself_past_the_cheap_bounds(
    monkeypatch,
):
    """A ``"kron"`` posterior over all weights tunes alpha on itself even where
    the ``"auto"`` rules would not take Kronecker factors (over the
    factorising work bound) and no sample-space posterior is cheap; a
    diagonal one there tunes on its diagonal (mutants: ``own == "kron"``
    misspelt, so a Kronecker fit fell through to the diagonal, survived)."""

    def tuned_on(structure, n_rows=None):
        config = SimpleNamespace(
            hessian_structure=structure,
            subset_of_weights="all",
            prior_precision_scale="cv",
            link_approx="probit",
            bias_prior_precision=1.0,
        )
        return fitting_module.tuning_structure(config, (10, 5, 1), False, n_rows)

    # (10, 5, 1): 61 parameters; factorising work (11^3 + 5^3) + (6^3 + 1) =
    # 1,673 multiply-adds, over a bound of 1,000.
    monkeypatch.setattr(memory_module, "AUTO_FACTOR_WORK", 1000)
    assert tuned_on("kron") == "kron"
    assert tuned_on("kron", n_rows=61) == "kron"  # m = 61 rows: not fewer
    assert tuned_on("diag") == "diag"  # the bound does bite
    assert tuned_on("kron", n_rows=60) == "lowrank"  # and fewer rows do


def test_the_message_names_each_holder_of_dense_matrices_joined():
    """The refusal names what holds the dense matrices: a dense Newton
    solver and the full posterior both (``solver='newton' and
    hessian_structure='full'``), the solver alone under a diagonal
    posterior, which holds none (mutants: the solver looked up by another
    key, so never named; a structure missing from the table counted as
    dense, naming ``hessian_structure='diag'``; the joining text)."""
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_fit_memory(20000, "newton", "full")
    assert "matrices that solver='newton' and hessian_structure='full' need" in str(
        info.value
    )
    with pytest.raises(MemoryLimitError) as info:
        memory_module.check_fit_memory(20000, "newton", "diag")
    message = str(info.value)
    assert "matrices that solver='newton' need for this network" in message
    # The one-array refusal gives the remedy too.
    assert message.endswith(
        "Use hessian_structure='kron' or 'diag' and solver='lbfgs' (no n_params "
        "x n_params matrix), or a smaller network (fewer hidden units or input "
        "features)."
    )


def _low_rank_config(scale=1.0, link="probit", bias=1.0):
    return SimpleNamespace(
        bias_prior_precision=bias, prior_precision_scale=scale, link_approx=link
    )


# (10, 5, 3): 73 parameters and 3 logits a row.
LOW_RANK_SIZES = (10, 5, 3)


def test_the_sample_space_posterior_needs_fewer_rows_than_parameters(monkeypatch):
    """``low_rank_is_cheap``: the posterior's ``m = n_rows * n_outputs`` rows
    (3 logits a row here) must be fewer than the 73 parameters: 24 rows (72)
    are, 25 (75) are not, however loose the work and byte bounds (mutant:
    ``n_rows / n_outputs`` rows survived; the existing cases had one logit)."""
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 1e30)
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", 1e30)
    n_params = ParamLayout(LOW_RANK_SIZES).n_params
    assert 24 * 3 < n_params < 25 * 3
    cheap = memory_module.low_rank_is_cheap
    assert cheap(_low_rank_config(), LOW_RANK_SIZES, 24)
    assert not cheap(_low_rank_config(), LOW_RANK_SIZES, 25)


def test_the_sample_space_gram_admits_exactly_its_work(monkeypatch):
    """``low_rank_is_cheap``: the Gram of the ``m`` rows costs ``m**2 *
    n_params`` multiply-adds and is cheap while that is AT MOST
    ``AUTO_LOW_RANK_WORK`` (set here to exactly that: 20 rows of 3 logits,
    73 parameters); one less, it is not (mutants: ``m**2 / n_params``,
    ``n_params`` alone and ``<`` survived)."""
    monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", 1e30)
    m, n_params = 20 * 3, ParamLayout(LOW_RANK_SIZES).n_params
    cheap = memory_module.low_rank_is_cheap
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", m * m * n_params)
    assert cheap(_low_rank_config(), LOW_RANK_SIZES, 20)
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", m * m * n_params - 1)
    assert not cheap(_low_rank_config(), LOW_RANK_SIZES, 20)


def test_the_sample_space_posterior_admits_a_bias_prior_at_alphas_bound():
    """MacKay's updates keep alpha within ``EVIDENCE_BOUNDS``: a bias prior
    exactly at the lower bound is as conditioned as alpha may make the
    weights, so it is admitted; one just below it is not (mutant: ``>``
    survived)."""
    bound = memory_module.EVIDENCE_BOUNDS[0]
    cheap = memory_module.low_rank_is_cheap
    assert cheap(_low_rank_config(bias=bound), LOW_RANK_SIZES, 5)
    assert not cheap(_low_rank_config(bias=bound * (1 - 1e-9)), LOW_RANK_SIZES, 5)
    assert not cheap(_low_rank_config(bias=[1.0, bound / 2]), LOW_RANK_SIZES, 5)


def _smallest_budget(monkeypatch, config, n_rows):
    """The least ``AUTO_FULL_BUDGET`` at which ``low_rank_is_cheap`` holds."""
    monkeypatch.setattr(memory_module, "AUTO_LOW_RANK_WORK", 1e30)
    lo, hi = 0, 2**40  # not cheap at lo, cheap at hi

    def cheap(budget):
        monkeypatch.setattr(memory_module, "AUTO_FULL_BUDGET", budget)
        return memory_module.low_rank_is_cheap(config, LOW_RANK_SIZES, n_rows)

    assert not cheap(lo) and cheap(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cheap(mid) else (mid, hi)
    return hi


def test_the_sample_space_posterior_counts_every_held_posteriors_bytes(monkeypatch):
    """``low_rank_is_cheap``'s byte rule, found by bisection on
    ``AUTO_FULL_BUDGET``: what it admits is a whole number of posteriors,
    each its ``m x n_params`` rows and ``m x m`` factor in float64 (``8 m
    (n_params + m)`` bytes, 20 rows of 3 logits here), exactly at that
    many bytes; at least the one built and those the evidence's runs hold
    (:func:`held_posteriors`); and ``"cv"`` adds its held-out posteriors'
    bytes, unless the plug-in predictive ignores the scale (mutants: the
    bytes per copy miscounted, ``<`` for ``<=``, the evidence's or the
    scale's held posteriors dropped)."""
    m = 20 * 3
    one = 8 * m * (ParamLayout(LOW_RANK_SIZES).n_params + m)
    need = {
        key: _smallest_budget(monkeypatch, _low_rank_config(*key), 20)
        for key in [(1.0, "probit"), ("cv", "probit"), ("cv", "map")]
    }
    held = memory_module.held_posteriors
    for budget in need.values():
        assert budget % one == 0
    assert need[1.0, "probit"] // one >= 1 + held(1.0, "evidence")
    assert need["cv", "probit"] - need[1.0, "probit"] == one * (
        held("cv", "evidence") - held(1.0, "evidence")
    )
    assert need["cv", "map"] == need[1.0, "probit"]


def test_refits_are_cheap_admits_exactly_one_gradients_work(monkeypatch):
    """``refits_are_cheap``: one gradient costs ``n_samples * n_params``
    multiply-adds and refits are cheap while that is AT MOST
    ``AUTO_GRADIENT_WORK`` (set here to exactly that); one row more, they
    are not (mutants: ``n_samples / n_params`` and ``<`` survived)."""
    monkeypatch.setattr(memory_module, "AUTO_GRADIENT_WORK", 300 * 73)
    assert memory_module.refits_are_cheap(73, 300)
    assert not memory_module.refits_are_cheap(73, 301)


def test_auto_solver_and_tolerance_follow_whether_refits_are_cheap():
    """``"auto"``: Newton-CG to a tolerance tighter than ``MLPClassifier``'s
    where refits are cheap, L-BFGS to ``MLPClassifier``'s own default
    beyond; explicit settings pass as they are, and ``"auto"`` for the
    structure takes the Kronecker factors unless told they do not fit
    (mutants: either branch always taken, the names or values changed)."""
    mlp_tol = MLPClassifier().tol
    assert auto_module.resolve_solver("auto", True) == "newton-cg"
    assert auto_module.resolve_solver("auto", False) == "lbfgs"
    assert auto_module.resolve_solver("newton", False) == "newton"
    assert auto_module.resolve_tol("auto", False) == mlp_tol
    assert auto_module.resolve_tol("auto", True) < mlp_tol
    assert auto_module.resolve_tol(1e-3, True) == 1e-3
    assert auto_module.resolve_structure("auto", False) == "kron"
    # Through resolved_params: the rows decide, for the tuning too.
    layout = ParamLayout((3, 4, 1))
    clf = LaplaceMLPClassifier((4,))
    work = memory_module.AUTO_GRADIENT_WORK
    few, many = 20, int(work // layout.n_params) + 1
    assert memory_module.refits_are_cheap(layout.n_params, few)
    assert not memory_module.refits_are_cheap(layout.n_params, many)
    cheap = auto_module.resolved_params(clf, layout, few)
    dear = auto_module.resolved_params(clf, layout, many)
    assert (cheap.solver, cheap.tol) == (
        "newton-cg",
        auto_module.resolve_tol("auto", True),
    )
    assert cheap.hessian_structure == "full"
    assert (cheap.alpha, cheap.prior_precision_scale) == ("evidence", "loo")
    # Folds where leave-one-out would misjudge a row (an approximate precision).
    kron = LaplaceMLPClassifier((4,), hessian_structure="kron")
    assert auto_module.resolved_params(kron, layout, few).prior_precision_scale == "cv"
    assert (dear.solver, dear.tol) == ("lbfgs", mlp_tol)
    assert (dear.alpha, dear.prior_precision_scale) == ("validation", "validation")


def test_an_explicit_kronecker_posterior_counts_its_held_copies(monkeypatch):
    """``hessian_structure="kron"`` asked for by name is checked with the
    copies its alpha and scale hold (the evidence's runs and the
    cross-validation's posteriors, every layer's factors): at exactly
    those bytes ``resolved_params`` accepts the fit, one byte less it
    refuses it (mutants: the scale or alpha dropped or passed in another
    place, which counted fewer copies or the last layer's factors only)."""
    layout = ParamLayout(KRON_SIZES)
    clf = LaplaceMLPClassifier(
        (4,),
        hessian_structure="kron",
        solver="lbfgs",
        alpha="evidence",
        prior_precision_scale="cv",
    )
    need = _copies("cv", "evidence") * KRON_TOTAL
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need)
    assert auto_module.resolved_params(clf, layout, 20).hessian_structure == "kron"
    monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", need - 1)
    copies = _copies("cv", "evidence")
    with pytest.raises(MemoryLimitError, match=f"up to {copies} copies at once"):
        auto_module.resolved_params(clf, layout, 20)


def test_a_dense_fit_counts_its_solvers_and_held_matrices(monkeypatch):
    """``resolved_params`` checks a dense fit with everything it holds at
    once: Newton's matrices under a diagonal posterior (which holds none),
    and the full posterior's with those the evidence's runs and the
    cross-validation hold (counted by :func:`dense_matrices_at_peak`): at
    exactly those bytes accepted, one byte less refused (mutants: the
    solver, scale or alpha left out of the check)."""
    layout = ParamLayout((3, 4, 1))
    one = 8 * layout.n_params**2
    cases = [
        ("newton", "diag", 1.0, 1.0),
        ("lbfgs", "full", "cv", "evidence"),
    ]
    for solver, structure, scale, alpha in cases:
        clf = LaplaceMLPClassifier(
            (4,),
            solver=solver,
            hessian_structure=structure,
            alpha=alpha,
            prior_precision_scale=scale,
        )
        count = memory_module.dense_matrices_at_peak(solver, structure, scale, alpha)
        assert count > 0
        monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", count * one)
        auto_module.resolved_params(clf, layout, 20)
        monkeypatch.setattr(memory_module, "FIT_MEMORY_LIMIT", count * one - 1)
        with pytest.raises(MemoryLimitError, match=f"about {count} at once"):
            auto_module.resolved_params(clf, layout, 20)


def test_a_kronecker_factor_admits_exactly_its_float64_bytes(monkeypatch):
    """Each Kronecker factor is checked as one float64 array of ``8 side**2``
    bytes: the last layer's 17 x 17 input factor behind hidden (16,) passes
    a one-array limit of exactly its bytes and is refused one byte below
    (mutant: 9 bytes an entry survived, the existing limit far from both)."""
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * 17 * 17)
    memory_module.check_kron_memory((3, 16, 1), last_layer_only=True)
    monkeypatch.setattr(memory_module, "DENSE_MEMORY_LIMIT", 8 * 17 * 17 - 1)
    with pytest.raises(MemoryLimitError, match="17 x 17 float64 Kronecker factor"):
        memory_module.check_kron_memory((3, 16, 1), last_layer_only=True)


def test_building_the_full_posterior_counts_every_logit(monkeypatch):
    """``full_is_cheap``: building ``J' Lambda J`` costs ``n_samples *
    n_outputs * n_params**2``: with ``AUTO_FULL_WORK`` exactly that for 50
    rows of 3 logits and 100 parameters, 50 rows are cheap and 51 are not
    (mutant: ``n_samples / n_outputs`` survived; the existing boundary had
    one logit)."""
    monkeypatch.setattr(memory_module, "AUTO_FULL_WORK", 50 * 3 * 100**2)
    assert memory_module.full_is_cheap(100, 50, 3)
    assert not memory_module.full_is_cheap(100, 51, 3)
