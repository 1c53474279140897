"""Data sets under ``data/``, built deterministically from what packages ship (tracked by data.dvc)."""

from .build import DATA_DIR, build

__all__ = ["DATA_DIR", "build"]
