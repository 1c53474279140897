"""Variances (or modes) known only at anchor points of a coarse sub-grid, brought to the fine grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.interpolate import RegularGridInterpolator


def anchor_axes(grid_shape: Sequence[int], spacing: int, offset: int = 0) -> list[np.ndarray]:
    """Fine-grid indices of the anchors along each axis: ``offset, offset + spacing, ...``."""
    if spacing < 1:
        raise ValueError(f"anchor spacing must be >= 1, got {spacing}")
    axes = [np.arange(offset, n, spacing) for n in grid_shape]
    if any(len(a) < 2 for a in axes):
        raise ValueError(f"spacing {spacing} leaves fewer than 2 anchors along an axis of grid {tuple(grid_shape)}")
    return axes


def take_anchors(fields: np.ndarray, axes: Sequence[np.ndarray]) -> np.ndarray:
    """Values of ``fields`` (``(n_samples, *grid)`` or ``grid``) at the anchor sub-grid."""
    lead = fields.ndim - len(axes)
    return fields[(slice(None),) * lead + np.ix_(*axes)]


def interpolate_to_grid(
    anchor_values: np.ndarray, axes: Sequence[np.ndarray], grid_shape: Sequence[int], method: str = "cubic"
) -> np.ndarray:
    """Interpolate values on the anchor sub-grid (shape ``[len(a) for a in axes]``, optionally with a
    leading batch axis) to every point of ``grid_shape``; beyond the last anchor it extrapolates."""
    anchor_values = np.asarray(anchor_values, dtype=float)
    core = tuple(len(a) for a in axes)
    batched = anchor_values.shape != core
    if anchor_values.shape[-len(core) :] != core or anchor_values.ndim > len(core) + 1:
        raise ValueError(f"anchor values have shape {anchor_values.shape}, expected {core} or (batch, *{core})")
    if method == "cubic" and min(core) < 4:
        method = "linear"  # cubic needs four anchors per axis
    values = anchor_values if batched else anchor_values[None]
    points = np.stack(np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij"), axis=-1)
    values = np.moveaxis(values, 0, -1)
    interp = RegularGridInterpolator(
        [a.astype(float) for a in axes], values, method=method, bounds_error=False, fill_value=None
    )
    out = np.moveaxis(interp(points.reshape(-1, len(core))), -1, 0).reshape(-1, *grid_shape)
    return out if batched else out[0]


def variances_from_anchors(
    anchor_variances: np.ndarray, axes: Sequence[np.ndarray], grid_shape: Sequence[int], method: str = "cubic"
) -> np.ndarray:
    """Fine-grid variances from anchor variances: interpolated, negatives from overshoot clipped to 0."""
    anchor_variances = np.asarray(anchor_variances, dtype=float)
    if np.any(anchor_variances < 0) or not np.all(np.isfinite(anchor_variances)):
        raise ValueError("anchor variances must be finite and non-negative")
    return np.clip(interpolate_to_grid(anchor_variances, axes, grid_shape, method), 0.0, None)
