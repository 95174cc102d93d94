"""The documented scale-out path (docs/scaling.rst): a search on a dask cluster.

A ``GridSearchCV`` under joblib's dask backend, on an in-process
``dask.distributed.LocalCluster`` with two workers, must choose the same
parameters with the same scores as the serial search: the estimator is
cloned and pickled to the workers and seeds everything from
``random_state`` inside ``fit``.
"""

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from sklaplace import LaplaceMLPClassifier

distributed = pytest.importorskip("dask.distributed")  # in the test extra

X, Y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
GRID = {"alpha": [0.1, 10.0], "hidden_layer_sizes": [(), (2,)]}


def _search(n_jobs):
    estimator = LaplaceMLPClassifier(prior_precision_scale=1.0, random_state=0)
    return GridSearchCV(
        estimator, GRID, cv=3, scoring="neg_log_loss", n_jobs=n_jobs
    ).fit(X, Y)


def test_grid_search_on_a_dask_cluster_equals_the_serial_search():
    serial = _search(n_jobs=1)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
        joblib.parallel_config(backend="dask"),
    ):
        parallel = _search(n_jobs=-1)
        # The fits did run on the cluster.
        assert client.run_on_scheduler(
            lambda dask_scheduler: len(dask_scheduler.task_prefixes)
        )
    assert parallel.best_params_ == serial.best_params_
    for key in [f"split{i}_test_score" for i in range(3)] + ["mean_test_score"]:
        np.testing.assert_allclose(
            parallel.cv_results_[key], serial.cv_results_[key], rtol=1e-12
        )
    np.testing.assert_allclose(
        parallel.predict_proba(X), serial.predict_proba(X), rtol=1e-12
    )
