import numpy as np
import pytest

from replab.clustering.frozen import BASELINES, FrozenDPAC, FrozenDPACConfig, compare_on_features


def blobs(n_per=40, k=3, d=12, seed=0):
    """``k`` separated unit-norm clusters in ``d`` dimensions (frozen 'embeddings')."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 3
    x = np.concatenate([c + rng.standard_normal((n_per, d)) for c in centres])
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), n_per)


def tiny(**changes):
    base = dict(n_clusters=3, hidden_dim=32, feature_dim=16, projection_dim=16, epochs=15, batch_size=60, lr=3e-3)
    return FrozenDPACConfig(**{**base, **changes})


@pytest.mark.parametrize(("views", "target"), [("noise", "frozen"), ("neighbours", "frozen"), ("noise", "trunk")])
def test_heads_learn_separated_clusters(views, target):
    x, y = blobs()
    model = FrozenDPAC(tiny(views=views, n_neighbours=5, target_features=target)).fit(x)
    from replab.clustering.metrics import clustering_accuracy

    assert clustering_accuracy(y, model.labels_) > 0.9
    assert model.predict_proba(x).shape == (120, 3) and np.allclose(model.predict_proba(x).sum(1), 1, atol=1e-5)
    assert model.transform(x).shape == (120, 16)
    assert len(model.history_.loss) == 15 and model.history_.clusters_used[-1] == 3


def test_fit_is_deterministic_and_warmup_is_infonce_only():
    x, _ = blobs(seed=1)
    a = FrozenDPAC(tiny(warmup_epochs=2, epochs=2)).fit(x)
    b = FrozenDPAC(tiny(warmup_epochs=2, epochs=2)).fit(x)
    assert a.history_.loss == b.history_.loss
    assert a.history_.phase == ["simclr", "simclr", "dpac", "dpac"]
    assert np.isnan(a.history_.kl[0]) and not np.isnan(a.history_.kl[2])
    c = FrozenDPAC(tiny(warmup_epochs=2, epochs=2, seed=1)).fit(x)
    assert c.history_.loss != a.history_.loss


def test_neighbour_views_pair_each_sample_with_a_neighbour():
    from replab.clustering.frozen import _nearest_neighbours

    x, y = blobs(n_per=30)
    nn_index = _nearest_neighbours(x, 4).numpy()
    assert nn_index.shape == (90, 4)
    assert not (nn_index == np.arange(90)[:, None]).any()  # never the sample itself
    assert (y[nn_index] == y[:, None]).mean() > 0.95  # separated clusters: neighbours share the class


def test_compare_on_features_rows_and_bad_input():
    x, y = blobs(n_per=20)
    rows, histories = compare_on_features(x, y, tiny(epochs=3), seeds=[0, 1], progress=False)
    assert {r["method"] for r in rows} == {"DPAC head", *BASELINES}
    assert len(rows) == 10 and set(histories) == {0, 1}
    assert all(0 <= r["acc"] <= 100 for r in rows)
    with pytest.raises(ValueError, match="finite"):
        FrozenDPAC(tiny()).fit(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="views"):
        FrozenDPACConfig(views="crops")
    with pytest.raises(ValueError, match="target_features"):
        FrozenDPACConfig(target_features="pixels")


def test_summarise_takes_the_strongest_kmeans_as_baseline():
    import pandas as pd

    from replab.clustering.frozen import summarise

    rows = []
    for seed, accs in enumerate([(80, 70, 74, 72, 60), (84, 72, 76, 70, 62)]):
        for method, acc in zip(["DPAC head", *BASELINES], accs):
            rows.append({"setting": "a", "method": method, "seed": seed, "acc": acc})
    out = summarise(pd.DataFrame(rows)).loc["a"]
    assert out["baseline"] == "k-means (n_init=10), standardised"
    assert out["baseline mean"] == 75 and out["gain"] == 7 and out["seeds"] == 2
    assert out["gain std"] == pytest.approx(np.std([6, 8], ddof=1))  # paired: per-seed gains 6 and 8
    assert out["gain over offline PAC"] == 21
    assert out["DPAC head std"] == pytest.approx(2.828, abs=1e-3)
