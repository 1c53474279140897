"""Sparse operators for Schrödinger PCA: grid Laplacians, graph Laplacians, the Hamiltonian."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def grid_laplacian(shape: Sequence[int], spacing: Sequence[float] | None = None) -> sp.csr_matrix:
    """Positive semi-definite ``-Lap`` on a regular grid: unit spacing (or ``spacing`` per axis), Dirichlet
    (zero) outside.

    The (2d+1)-point stencil: 2d on the diagonal, -1 for each axis neighbour (each axis divided by its
    spacing squared). Points are ordered as ``np.ravel`` orders them (C order).
    """
    shape = tuple(int(n) for n in shape)
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise ValueError(f"grid shape must have 1 to 3 positive sizes, got {shape}")
    spacing = (1.0,) * len(shape) if spacing is None else tuple(float(s) for s in spacing)
    ops = []
    for axis, n in enumerate(shape):
        second_diff = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
        second_diff = second_diff / spacing[axis] ** 2
        factors = [sp.identity(m, format="csr") for m in shape]
        factors[axis] = second_diff
        term = factors[0]
        for f in factors[1:]:
            term = sp.kron(term, f, format="csr")
        ops.append(term)
    return sp.csr_matrix(sum(ops[1:], ops[0]))


def graph_laplacian(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """``L = D - A`` of a symmetric, non-negative adjacency matrix."""
    from scipy.sparse.csgraph import laplacian

    adjacency = sp.csr_matrix(adjacency, dtype=float)
    if adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adjacency.shape}")
    if abs(adjacency - adjacency.T).max() > 1e-12:
        raise ValueError("adjacency must be symmetric")
    return sp.csr_matrix(laplacian(adjacency))


def hamiltonian(scaled_variances: np.ndarray, laplacian: sp.spmatrix, c: float) -> sp.csr_matrix:
    """``H = (c/4) (S L + L S) - S`` with ``S = diag(scaled_variances)`` and ``L = -Lap`` (PSD).

    This is the note's ``-(c/2) * 1/2 (S Lap + Lap S) + V`` with ``V = -S``: symmetric, and its
    lowest eigenvectors are the leading principal components.
    """
    s = sp.diags(np.asarray(scaled_variances, dtype=float).ravel())
    lap = sp.csr_matrix(laplacian, dtype=float)
    return sp.csr_matrix((c / 4.0) * (s @ lap + lap @ s) - s)


def spectrum_lower_bound(scaled_variances: np.ndarray, laplacian: sp.spmatrix, c: float) -> float:
    """A guaranteed lower bound on the eigenvalues of :func:`hamiltonian`.

    Split ``L = L0 + diag(r)`` with ``L0`` having zero row sums and edge weights ``w_ij = -L_ij``. Then
    ``x'(S L0 + L0 S)x = sum_edges w_ij [(S_i + S_j)(x_i - x_j)^2 + (S_i - S_j)(x_i^2 - x_j^2)]``; bounding
    the second term (and the first where a weight is negative, as cotangent weights can be) and the
    ``diag(r)`` part node by node gives the bound. A shift below it makes ``H - sigma I`` positive definite:
    no eigenvalue lies below it.
    """
    s = np.asarray(scaled_variances, dtype=float).ravel()
    coo = sp.coo_matrix(laplacian)
    off = coo.row != coo.col
    rows, cols, w = coo.row[off], coo.col[off], -coo.data[off]
    per_edge = np.abs(w) * np.abs(s[rows] - s[cols]) + np.where(w < 0, 2 * np.abs(w) * (s[rows] + s[cols]), 0.0)
    spread = np.bincount(rows, weights=per_edge, minlength=s.size)
    row_sums = np.asarray(sp.csr_matrix(laplacian).sum(axis=1)).ravel()
    spread += 2 * np.clip(-row_sums * s, 0.0, None)
    return float(-s.max() - (c / 4.0) * spread.max(initial=0.0))
