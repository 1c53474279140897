import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from replab.clustering import PAC
from replab.clustering.metrics import clustering_accuracy, scores
from replab.clustering.pac import direct_row_update, log_row_update


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(12, 80),
    k=st.integers(2, 5),
    m=st.floats(1.01, 1.5),
    metric=st.sampled_from(["cosine", "sqeuclidean"]),
    variant=st.sampled_from(["factored", "blocked-cached", "blocked-streamed"]),
)
def test_objective_never_increases(seed, n, k, m, metric, variant):
    X = np.random.default_rng(seed).standard_normal((n, 3)) + 0.1
    algorithm = variant.split("-")[0]
    budget = 1e-4 if variant.endswith("streamed") else 64.0  # tiny budget: row blocks, not the cached matrix
    model = PAC(
        k,
        m=m,
        metric=metric,
        max_iter=15,
        min_iter=15,
        random_state=seed,
        batch_size=7,
        memory_budget_mb=budget,
        algorithm=algorithm,
    )
    J = model.fit(X).objective_history_
    assert len(J) == model.n_iter_ + 1
    assert np.all(np.diff(J) <= 1e-9 * np.abs(J[0]) + 1e-12), np.diff(J).max()


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_factored_streamed_and_cached_algorithms_agree(metric):
    X = np.random.default_rng(0).standard_normal((150, 5))
    runs = [
        PAC(4, metric=metric, random_state=1, algorithm="blocked").fit(X),
        PAC(4, metric=metric, random_state=1, algorithm="blocked", batch_size=16, memory_budget_mb=1e-3).fit(X),
        PAC(4, metric=metric, random_state=1, algorithm="factored").fit(X),
    ]
    for other in runs[1:]:
        np.testing.assert_allclose(other.probabilities_, runs[0].probabilities_, atol=1e-8)
        np.testing.assert_allclose(other.objective_history_, runs[0].objective_history_, rtol=1e-8)


def test_objective_history_matches_direct_computation():
    X = np.random.default_rng(3).standard_normal((40, 4))
    model = PAC(3, m=1.2, metric="sqeuclidean", max_iter=5, min_iter=5, random_state=0).fit(X)
    p = model.probabilities_
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    pm = p**1.2
    assert model.objective_history_[-1] == pytest.approx(np.einsum("ik,jk,ij->", pm, pm, d), rel=1e-9)


def test_identical_labels_across_seeds_on_separated_blobs():
    X, y = make_blobs(300, centers=4, cluster_std=0.5, random_state=0)
    labels = [PAC(4, metric="sqeuclidean", m=1.05, random_state=s).fit(X).labels_ for s in range(5)]
    for other in labels[1:]:
        assert clustering_accuracy(labels[0], other) == 1.0
    assert clustering_accuracy(y, labels[0]) == 1.0


def test_log_space_update_equals_direct_formula_where_finite():
    rng = np.random.default_rng(0)
    for m in (1.03, 1.1, 2.0):
        s = rng.uniform(0.5, 2.0, (50, 6))
        direct = direct_row_update(s, m)
        assert np.all(np.isfinite(direct))
        np.testing.assert_allclose(log_row_update(s, m), direct, rtol=1e-10)
    # Where the direct formula overflows, the log-space one stays a distribution.
    s = np.array([[1e-12, 1e-10, 5.0]])
    with np.errstate(all="ignore"):
        assert not np.all(np.isfinite(direct_row_update(s, 1.001)))
    p = log_row_update(s, 1.001)
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0) and p[0, 0] == pytest.approx(1.0)


def test_fitted_attributes_predict_and_pipeline():
    X, y = make_blobs(200, centers=3, cluster_std=0.6, random_state=2)
    model = make_pipeline(StandardScaler(), PAC(3, metric="sqeuclidean", random_state=0))
    labels = model.fit_predict(X)
    pac = model[-1]
    assert pac.probabilities_.shape == (200, 3) and np.allclose(pac.probabilities_.sum(1), 1)
    assert pac.n_iter_ >= 1 and pac.objective_history_.shape == (pac.n_iter_ + 1,)
    assert np.array_equal(labels, pac.labels_)
    assert (model.predict(X) == labels).mean() > 0.99
    assert scores(y, labels)["acc"] > 95
    assert PAC(3).set_params(m=1.1).get_params()["m"] == 1.1


def test_extreme_m_stays_finite():
    X = np.random.default_rng(0).standard_normal((60, 3))
    p = PAC(3, m=1.001, random_state=0, max_iter=5).fit(X).probabilities_
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1)


@pytest.mark.parametrize(
    ("params", "X", "message"),
    [
        ({}, np.array([[1.0, np.nan], [1.0, 2.0], [0.5, 1.0]]), "NaN"),
        ({}, np.array([[1.0, np.inf], [1.0, 2.0], [0.5, 1.0]]), "infinity"),
        ({"n_clusters": 1}, np.eye(4), "n_clusters must be an integer >= 2"),
        ({"n_clusters": 9}, np.eye(4) + 0.1, "n_clusters=9 is larger than the number of samples"),
        ({"m": 1.0}, np.eye(4) + 0.1, "m must be a finite number > 1"),
        ({"metric": "manhattan"}, np.eye(4) + 0.1, "metric must be one of"),
        ({"algorithm": "fast"}, np.eye(4) + 0.1, "algorithm must be one of"),
        ({}, np.array([[0.0, 0.0], [1.0, 2.0], [0.5, 1.0]]), "1 rows have zero norm"),
    ],
)
def test_bad_input(params, X, message):
    with pytest.raises(ValueError, match=message):
        PAC(**{"n_clusters": 2, **params}).fit(X)


def test_scikit_learn_estimator_checks():
    # check_estimator runs scikit-learn's API checks; those listed need behaviour PAC does not have.
    why = "scikit-learn sets n_clusters=1 here; PAC refuses fewer than 2 clusters (a ValueError, by design)"
    expected = {
        name: why
        for name in (
            "check_dont_overwrite_parameters",
            "check_methods_subset_invariance",
            "check_fit2d_1feature",
            "check_fit2d_predict1d",
        )
    }
    check_estimator(
        PAC(n_clusters=2, metric="sqeuclidean", max_iter=5, random_state=0), expected_failed_checks=expected
    )


def test_does_not_stop_at_the_near_uniform_start():
    # Nearly equidistant points (high-dimensional, weak clusters): the paper's change-only rule stops after
    # 10 sweeps with every row still uniform (ACC 0.43 here); PAC must run on until the rows commit.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 125)
    X = rng.standard_normal((1000, 384)) + 0.5 * rng.standard_normal((8, 384))[y]
    model = PAC(8, random_state=0, max_iter=300).fit(X)
    assert model.n_iter_ > 10
    assert model.probabilities_.max(axis=1).mean() > 0.9
    assert clustering_accuracy(y, model.labels_) > 0.95
