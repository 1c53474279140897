"""Gaussian random fields with a known covariance: white noise smoothed by a Gaussian filter,
multiplied by a spatially varying standard deviation. Samples and the exact covariance come from
the same filter, so the covariance eigendecomposition is a true ground truth for the samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as sla
from scipy import ndimage


def paraboloid_variance(shape: Sequence[int], radius_fraction: float = 0.4) -> np.ndarray:
    """``max(1 - r^2 / R^2, 0)`` centred on the grid, ``R = radius_fraction * min(shape)``."""
    shape = tuple(int(n) for n in shape)
    radius = radius_fraction * min(shape)
    axes = [np.arange(n) - (n - 1) / 2 for n in shape]
    r2 = sum(np.meshgrid(*[a**2 for a in axes], indexing="ij"))
    return np.clip(1.0 - r2 / radius**2, 0.0, None)


def disc_variance(shape: Sequence[int], radius_fraction: float = 0.3, floor: float = 0.05) -> np.ndarray:
    """A sharp-edged profile: 1 inside a centred disc (ball) of radius ``radius_fraction * min(shape)``,
    ``floor`` outside."""
    shape = tuple(int(n) for n in shape)
    radius = radius_fraction * min(shape)
    axes = [np.arange(n) - (n - 1) / 2 for n in shape]
    r2 = sum(np.meshgrid(*[a**2 for a in axes], indexing="ij"))
    return np.where(r2 < radius**2, 1.0, float(floor))


@dataclass(frozen=True)
class FilteredNoiseField:
    """Field ``sigma(x) * (g * w)(x)``: white noise ``w`` on a grid padded by the filter radius, a
    Gaussian filter ``g`` of width ``filter_width`` px (truncated at 4 widths, normalised so the smoothed
    noise has unit variance), and ``sigma = sqrt(variance)``.

    The smoothed noise has correlation ``~ exp(-|x-y|^2 / (4 s^2))``: correlation length ``l = sqrt(2) s``.
    """

    variance: np.ndarray
    filter_width: float

    def __post_init__(self):
        if self.filter_width <= 0:
            raise ValueError(f"filter_width must be positive, got {self.filter_width}")
        if np.any(np.asarray(self.variance) < 0):
            raise ValueError("variance must be non-negative")

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(self.variance)

    @property
    def correlation_length(self) -> float:
        return math.sqrt(2.0) * self.filter_width

    @property
    def radius(self) -> int:
        return int(math.ceil(4 * self.filter_width))

    def kernel(self) -> np.ndarray:
        """1-D filter taps, normalised to unit sum of squares (the d-D filter is their product)."""
        k = np.arange(-self.radius, self.radius + 1)
        g = np.exp(-(k**2) / (2 * self.filter_width**2))
        return g / np.sqrt(np.sum(g**2))

    def filter_matrix(self, n: int) -> np.ndarray:
        """``(n, n + 2 radius)`` matrix: smoothed[i] = sum_j F[i, j] noise_padded[j] along one axis."""
        g, r = self.kernel(), self.radius
        f = np.zeros((n, n + 2 * r))
        for i in range(n):
            f[i, i : i + 2 * r + 1] = g
        return f

    def sample(self, n_samples: int, rng: np.random.Generator | int | None = None, dtype=np.float32) -> np.ndarray:
        """``(n_samples, *shape)`` independent fields."""
        rng = np.random.default_rng(rng)
        g, r = self.kernel(), self.radius
        sigma = np.sqrt(np.asarray(self.variance, dtype=float))
        out = np.empty((n_samples, *self.shape), dtype=dtype)
        chunk = max(1, 2_000_000 // int(np.prod([n + 2 * r for n in self.shape])))
        for start in range(0, n_samples, chunk):
            stop = min(n_samples, start + chunk)
            smooth = rng.standard_normal((stop - start, *[n + 2 * r for n in self.shape]))
            for axis in range(1, smooth.ndim):
                smooth = ndimage.correlate1d(smooth, g, axis=axis, mode="constant")
                smooth = np.take(smooth, np.arange(r, smooth.shape[axis] - r), axis=axis)
            out[start:stop] = sigma * smooth
        return out

    def covariance_operator(self) -> sla.LinearOperator:
        """Exact covariance ``diag(sigma) (K_1 x ... x K_d) diag(sigma)`` as a matrix-free operator."""
        sigma = np.sqrt(np.asarray(self.variance, dtype=float))
        factors = [f @ f.T for f in (self.filter_matrix(n) for n in self.shape)]
        shape = self.shape

        def matvec(v):
            x = (sigma * np.reshape(v, shape)).copy()
            for axis, k in enumerate(factors):
                x = np.moveaxis(np.tensordot(k, x, axes=([1], [axis])), 0, axis)
            return (sigma * x).ravel()

        n = int(np.prod(shape))
        return sla.LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=float)

    def covariance_matrix(self) -> np.ndarray:
        """Dense exact covariance (small grids only)."""
        sigma = np.sqrt(np.asarray(self.variance, dtype=float)).ravel()
        k = np.ones((1, 1))
        for n in self.shape:
            f = self.filter_matrix(n)
            k = np.kron(k, f @ f.T)
        return sigma[:, None] * k * sigma[None, :]

    def principal_components(self, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact top eigenpairs of the covariance: ``(eigenvalues descending, components (k, n_points))``."""
        op = self.covariance_operator()
        v0 = np.random.default_rng(seed).standard_normal(op.shape[0])
        values, vectors = sla.eigsh(op, k=n_components, which="LA", v0=v0)
        order = np.argsort(values)[::-1]
        return values[order], vectors[:, order].T
