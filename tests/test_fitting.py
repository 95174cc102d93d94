"""fit_network's configuration: what one fit reads, resolved once."""

from dataclasses import FrozenInstanceError, fields, replace
from types import SimpleNamespace

import numpy as np
import pytest

from sklaplace import LaplaceMLPClassifier
from sklaplace._fitting import FitConfig


def _resolved(**changes):
    params = LaplaceMLPClassifier().get_params(deep=False)
    params.update(
        alpha=1.0, solver="lbfgs", hessian_structure="full", prior_precision_scale=1.0
    )
    params.update(changes)
    return SimpleNamespace(**params)


def test_config_fields_are_estimator_parameters():
    # Every field has the estimator parameter's name, so from_params reads the
    # resolved value and not a look-alike.
    names = set(LaplaceMLPClassifier().get_params(deep=False))
    assert {f.name for f in fields(FitConfig)} <= names


def test_config_takes_its_fields_only_and_is_frozen():
    config = FitConfig.from_params(_resolved(tol=1e-3, backend="numpy"))
    assert config.tol == 1e-3 and config.solver == "lbfgs"
    assert not hasattr(config, "backend")  # read by the estimator, not the fit
    with pytest.raises(FrozenInstanceError):
        config.tol = 1.0
    assert replace(config, tol=1.0).tol == 1.0


@pytest.mark.parametrize(
    "name", ["alpha", "solver", "hessian_structure", "prior_precision_scale"]
)
def test_config_refuses_an_unresolved_auto(name):
    with pytest.raises(ValueError, match=name):
        FitConfig.from_params(_resolved(**{name: "auto"}))


def test_fit_reads_the_config_it_was_given(monkeypatch):
    # The estimator hands fit_network a FitConfig with the resolved values.
    import sklaplace._estimator as estimator_module

    seen = []
    fit_network = estimator_module.fit_network

    def spy(config, *args, **kwargs):
        seen.append(config)
        return fit_network(config, *args, **kwargs)

    monkeypatch.setattr(estimator_module, "fit_network", spy)
    X = np.random.RandomState(0).normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = LaplaceMLPClassifier((3,), alpha=1.0, prior_precision_scale=1.0)
    clf.fit(X, y)
    (config,) = seen
    assert isinstance(config, FitConfig)
    assert config.alpha == 1.0 and config.activation == clf.activation
    assert config.hessian_structure == clf.hessian_structure_
    assert config.solver == clf.solver_
