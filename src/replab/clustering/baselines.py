"""The comparison methods, each by name: ``cluster(name, X, n_clusters, seed) -> labels``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .pac import PAC


def _kmeans(X, k, seed, n_init=10):
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=n_init, random_state=seed).fit_predict(X)


def _gmm(X, k, seed):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(k, covariance_type="diag", random_state=seed, reg_covar=1e-4).fit_predict(X)


def _spectral(X, k, seed):
    from sklearn.cluster import SpectralClustering

    neighbours = min(10, X.shape[0] - 1)
    model = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=neighbours, random_state=seed)
    return model.fit_predict(X)


def _ward(X, k, seed):
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(k, linkage="ward").fit_predict(X)


def fuzzy_cmeans(X, k, seed, m=2.0):
    """scikit-fuzzy's fuzzy c-means: ``(labels, centres, memberships (N, K))``."""
    from skfuzzy.cluster import cmeans

    centres, u, *_ = cmeans(X.T, k, m, error=1e-5, maxiter=300, seed=seed)
    return u.argmax(axis=0), centres, u.T


def _pac(metric: str, m: float) -> Callable:
    def run(X, k, seed):
        return PAC(k, m=m, metric=metric, random_state=seed).fit(X).labels_

    return run


METHODS: dict[str, Callable] = {
    "PAC (cosine, m=1.03)": _pac("cosine", 1.03),
    "PAC (cosine, m=1.1)": _pac("cosine", 1.1),
    "PAC (sq. Euclidean, m=1.03)": _pac("sqeuclidean", 1.03),
    "k-means (n_init=10)": _kmeans,
    "k-means (n_init=1)": lambda X, k, seed: _kmeans(X, k, seed, n_init=1),
    "GMM (diagonal)": _gmm,
    "spectral (kNN)": _spectral,
    "Ward": _ward,
    "fuzzy c-means (m=2)": lambda X, k, seed: fuzzy_cmeans(X, k, seed)[0],
}


def cluster(name: str, X: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {list(METHODS)}")
    return np.asarray(METHODS[name](X, n_clusters, seed))
