"""Clustering accuracy with the Hungarian matching, beside NMI and ARI."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def clustering_accuracy(y_true, y_pred) -> float:
    """Best accuracy over one-to-one matchings of predicted clusters to classes (Hungarian)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    classes, t = np.unique(y_true, return_inverse=True)
    clusters, p = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / y_true.size)


def scores(y_true, y_pred) -> dict[str, float]:
    """ACC, NMI and ARI in percent."""
    return {
        "acc": 100 * clustering_accuracy(y_true, y_pred),
        "nmi": 100 * normalized_mutual_info_score(y_true, y_pred),
        "ari": 100 * adjusted_rand_score(y_true, y_pred),
    }
