"""Deterministic file writers: the same content always gives the same bytes (so DVC hashes match)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def save_array(path: Path, array: np.ndarray) -> None:
    """``.npy`` (header + raw bytes, no timestamps; unlike ``.npz`` whose zip entries carry dates)."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def save_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_array(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
