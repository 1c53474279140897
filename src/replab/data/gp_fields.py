"""Sampled Gaussian-random-field ensembles for the Schrödinger PCA experiment, one per profile.

The generation parameters are fixed here (not in params.yaml) because ``data/`` is a versioned input:
the notebook reads them back from each ensemble's ``meta.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..spectral.fields import FilteredNoiseField, paraboloid_variance
from .arrays import load_array, save_array, save_json

# The note's calibration set-up: variance 1 - r^2/R^2 with R = 0.4 n, Gaussian filter of width 2 px.
ENSEMBLES = {
    "tiny": {"grid": 31, "n_samples": 500, "filter_width": 2.0, "radius_fraction": 0.4, "seed": 11},
    "laptop": {"grid": 61, "n_samples": 2000, "filter_width": 2.0, "radius_fraction": 0.4, "seed": 12},
    "paper": {"grid": 101, "n_samples": 2000, "filter_width": 2.0, "radius_fraction": 0.4, "seed": 13},
}


def field_model(meta: dict) -> FilteredNoiseField:
    shape = (meta["grid"], meta["grid"])
    return FilteredNoiseField(paraboloid_variance(shape, meta["radius_fraction"]), meta["filter_width"])


def build(out: Path) -> None:
    for name, meta in ENSEMBLES.items():
        folder = out / name
        folder.mkdir(parents=True)
        model = field_model(meta)
        save_array(folder / "samples.npy", model.sample(meta["n_samples"], np.random.default_rng(meta["seed"])))
        save_json(folder / "meta.json", {**meta, "correlation_length": model.correlation_length})


def load(data_dir: Path, profile: str) -> tuple[np.ndarray, dict, FilteredNoiseField]:
    """``(samples (n, grid, grid) float32, meta, field model)`` of one ensemble."""
    folder = Path(data_dir) / "gp_fields" / profile
    if not folder.exists():
        raise FileNotFoundError(f"{folder} missing: run `replab data build` (or `make data`)")
    meta = json.loads((folder / "meta.json").read_text())
    return load_array(folder / "samples.npy"), meta, field_model(meta)
