"""The offline comparison: methods x data sets x seeds -> ACC / NMI / ARI."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..progress import tqdm
from .baselines import cluster
from .metrics import scores


def compare(
    datasets: dict[str, tuple[np.ndarray, np.ndarray]], methods: list[str], seeds: list[int], progress: bool = True
) -> pd.DataFrame:
    """One row per (data set, method, seed) with acc, nmi, ari in percent."""
    rows = []
    jobs = [(d, m, s) for d in datasets for m in methods for s in seeds]
    for name, method, seed in tqdm(jobs, desc="offline clustering", disable=not progress):
        X, y = datasets[name]
        k = len(np.unique(y))
        labels = cluster(method, X, k, seed)
        rows.append({"dataset": name, "method": method, "seed": seed, **scores(y, labels)})
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (data set, method)."""
    return results.groupby(["dataset", "method"])[["acc", "nmi", "ari"]].agg(["mean", "std"])
