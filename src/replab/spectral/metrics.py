"""Comparing estimated principal subspaces and spectra with the truth."""

from __future__ import annotations

import numpy as np


def orthonormal_rows(components: np.ndarray) -> np.ndarray:
    """Orthonormalise the rows (QR), keeping their order and span."""
    q, _ = np.linalg.qr(np.asarray(components, dtype=float).T)
    return q.T


def subspace_overlap(
    estimate: np.ndarray,
    truth: np.ndarray,
    k: int,
    truth_eigenvalues: np.ndarray | None = None,
    degeneracy_tol: float = 0.0,
) -> float:
    """Share of the estimated top-``k`` subspace that lies in the true top-``k`` subspace:
    ``|U_k' V_k|_F^2 / k`` (1: identical subspaces, ``k/n`` for random ones).

    Rows of ``estimate`` and ``truth`` are orthonormal components, best first. Where the truth has
    degenerate eigenvalues its top-``k`` subspace is not defined; with ``truth_eigenvalues`` and
    ``degeneracy_tol > 0`` the true subspace is widened to every eigenvector whose eigenvalue lies
    within ``degeneracy_tol * eigenvalue[0]`` of the ``k``-th (so ``truth`` needs spare rows).
    """
    if not 1 <= k <= len(estimate):
        raise ValueError(f"k={k} must be between 1 and the number of estimated components ({len(estimate)})")
    width = k
    if degeneracy_tol > 0:
        if truth_eigenvalues is None:
            raise ValueError("degeneracy_tol needs truth_eigenvalues")
        ev = np.asarray(truth_eigenvalues, dtype=float)
        width = int(np.sum(ev >= ev[k - 1] - degeneracy_tol * ev[0]))
        if width >= len(truth):
            raise ValueError(f"the degenerate level at k={k} reaches past the {len(truth)} true components given")
    u, v = np.asarray(truth[:width]), np.asarray(estimate[:k])
    return float(np.sum((v @ u.T) ** 2) / k)


def overlap_curve(estimate, truth, ks, truth_eigenvalues=None, degeneracy_tol=0.0) -> list[float]:
    return [subspace_overlap(estimate, truth, k, truth_eigenvalues, degeneracy_tol) for k in ks]


def relative_spectrum(values: np.ndarray) -> np.ndarray:
    """Eigenvalues divided by the largest (PCA) — or energies mapped to ``-E / -E_0`` (Schrödinger)."""
    values = np.asarray(values, dtype=float)
    return values / values[0]


def spectrum_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Largest absolute difference of relative spectra over the common length."""
    n = min(len(estimate), len(truth))
    return float(np.max(np.abs(relative_spectrum(estimate[:n]) - relative_spectrum(truth[:n]))))
