import numpy as np
import pytest

from replab.clustering import datasets
from replab.clustering.baselines import METHODS, cluster, fuzzy_cmeans
from replab.clustering.experiments import compare, summarise
from replab.clustering.metrics import clustering_accuracy, scores

from ..conftest import ROOT

DATA = ROOT / "data"
needs_data = pytest.mark.skipif(not (DATA / "wordnet").exists(), reason="data/ not built: run `make data`")


def test_hungarian_accuracy_is_permutation_invariant():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert clustering_accuracy(y, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(4 / 6)
    s = scores(y, np.array([1, 1, 2, 2, 0, 0]))
    assert s == pytest.approx({"acc": 100.0, "nmi": 100.0, "ari": 100.0})
    with pytest.raises(ValueError, match="differ in shape"):
        clustering_accuracy(y, y[:3])


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_clusters_separated_blobs(name):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(120, centers=3, cluster_std=0.4, random_state=1)
    labels = cluster(name, X, 3, seed=0)
    assert labels.shape == (120,)
    if "fuzzy" not in name:
        assert clustering_accuracy(y, labels) > 0.95, name


def test_fuzzy_cmeans_returns_memberships():
    X = np.random.default_rng(0).standard_normal((50, 3))
    labels, centres, u = fuzzy_cmeans(X, 4, seed=0)
    assert centres.shape == (4, 3) and u.shape == (50, 4) and np.allclose(u.sum(1), 1)
    with pytest.raises(ValueError, match="unknown method"):
        cluster("dbscan", X, 2, 0)


@needs_data
def test_wordnet_sample_is_balanced_and_deterministic():
    texts, y = datasets.wordnet_sample(DATA, n_classes=4, per_class=25, seed=3)
    assert len(texts) == 100 and np.bincount(y).tolist() == [25] * 4
    assert datasets.wordnet_sample(DATA, 4, 25, 3)[0] == texts


@needs_data
def test_loaders_and_comparison_table():
    data = {name: datasets.load(name, DATA, n_samples=60) for name in ("iris", "moons", "anisotropic_blobs")}
    assert abs(data["iris"][0].mean()) < 1e-9  # standardised
    results = compare(data, ["k-means (n_init=10)", "PAC (cosine, m=1.03)"], [0, 1], progress=False)
    assert len(results) == 3 * 2 * 2
    table = summarise(results)
    assert ("acc", "mean") in table.columns and table.loc[("iris", "k-means (n_init=10)"), ("acc", "mean")] > 60
    with pytest.raises(ValueError, match="unknown data set"):
        datasets.load("cifar", DATA)


@needs_data
def test_sentence_embeddings_come_from_the_packaged_encoder():
    emb = datasets.embed_sentences(["a small dog", "a young dog", "a tax on imports"])
    assert emb.shape == (3, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
