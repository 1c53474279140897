"""scikit-learn's bundled data sets (no download): digits, iris, wine, breast_cancer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .arrays import load_array, save_array, save_json

NAMES = ("digits", "iris", "wine", "breast_cancer")


def build(out: Path) -> None:
    from sklearn import datasets

    for name in NAMES:
        bunch = getattr(datasets, f"load_{name}")()
        folder = out / name
        folder.mkdir(parents=True)
        save_array(folder / "X.npy", bunch.data.astype(np.float64))
        save_array(folder / "y.npy", bunch.target.astype(np.int64))
        save_json(
            folder / "meta.json",
            {
                "source": f"sklearn.datasets.load_{name}",
                "n_samples": int(bunch.data.shape[0]),
                "n_features": int(bunch.data.shape[1]),
                "target_names": [str(t) for t in bunch.target_names],
            },
        )


def load(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a built set."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; available: {NAMES}")
    folder = Path(data_dir) / "sklearn" / name
    return load_array(folder / "X.npy"), load_array(folder / "y.npy")
